//! Subjects, subject patterns and stream names, with NATS's rules.
//!
//! A [`Subject`] is what a message is published to: dot-separated, non-empty
//! tokens with no whitespace, no control or format characters and no
//! wildcards. Format characters (Unicode's `Cf`: bidirectional overrides
//! and isolates, direction marks, zero-width spaces and joiners, the BOM,
//! tags…) are invisible or reorder the text around them, so they would let
//! two subjects that look the same differ, or one read as another in a log
//! or a terminal. A [`Pattern`] is what streams,
//! consumers and subscriptions match with: the same tokens, where `*` stands for
//! exactly one token and a final `>` for one or more trailing tokens.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// 512 bytes: long enough for KV keys under `$kv.<bucket>.` and aggregate ids,
/// short enough that per-subject index keys stay a small fraction of a page.
pub const MAX_SUBJECT_LEN: usize = 512;

/// 64 characters: stream and consumer names appear in subjects (`$dlq.<stream>.<consumer>`)
/// and in URLs, so they stay short.
pub const MAX_NAME_LEN: usize = 64;

/// The text-newtype plumbing shared by validated names: display, debug,
/// `AsRef<str>`, conversions from and to strings (through `new`, so they
/// validate).
macro_rules! text_newtype {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), &self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(value: &str) -> Result<Self, Error> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(value: String) -> Result<Self, Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0.to_string()
            }
        }
    };
}
pub(crate) use text_newtype;

text_newtype!(Subject);
text_newtype!(Pattern);
text_newtype!(StreamName);

/// Whether `c` is a format character (Unicode's general category `Cf`, as of
/// Unicode 16): U+00AD soft hyphen, Arabic and Syriac marks, U+180E, the
/// zero-width spaces, joiners and direction marks U+200B–U+200F, the
/// bidirectional embeddings and overrides U+202A–U+202E, U+2060–U+2064, the
/// isolates and deprecated format controls U+2066–U+206F, the BOM U+FEFF,
/// the interlinear annotation controls U+FFF9–U+FFFB, and some
/// supplementary-plane ones (Egyptian hieroglyph and shorthand format
/// controls, musical beams, tags).
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

fn check_token_chars(input: &str, what: &str) -> Result<(), Error> {
    if input.is_empty() {
        return Err(Error::new(ErrorKind::InvalidSubject, format!("{what} is empty")));
    }
    if input.len() > MAX_SUBJECT_LEN {
        return Err(Error::new(
            ErrorKind::InvalidSubject,
            format!(
                "{what} `{}…` is {} bytes, over the limit of {MAX_SUBJECT_LEN}",
                &input[..input.floor_char_boundary(32)],
                input.len()
            ),
        ));
    }
    if let Some(c) = input
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || is_format(*c))
    {
        return Err(Error::new(
            ErrorKind::InvalidSubject,
            format!("{what} `{}` contains the character {c:?}", input.escape_debug()),
        ));
    }
    if input.split('.').any(str::is_empty) {
        return Err(Error::new(
            ErrorKind::InvalidSubject,
            format!("{what} `{input}` has an empty token"),
        ));
    }
    Ok(())
}

/// A validated subject to publish to, such as `orders.created`.
///
/// # Examples
///
/// ```
/// use herald_core::Subject;
///
/// let subject = Subject::new("orders.created")?;
/// assert_eq!(subject.tokens().count(), 2);
/// assert!(Subject::new("orders.*").is_err());
/// assert!(Subject::new("orders..created").is_err());
/// # Ok::<(), herald_core::Error>(())
/// ```
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(
        value_type = String,
        example = "orders.created",
        description = "A subject to publish to: dot-separated tokens, no wildcards."
    )
)]
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(Arc<str>);

impl Subject {
    /// Validates `subject`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidSubject`] when it is empty, too long, has an empty token,
    /// whitespace, a control or format character (see the module's overview) or
    /// a wildcard (`*`, `>`).
    pub fn new(subject: impl AsRef<str>) -> Result<Self, Error> {
        let s = subject.as_ref();
        check_token_chars(s, "subject")?;
        if s.contains(['*', '>']) {
            return Err(Error::new(
                ErrorKind::InvalidSubject,
                format!("subject `{s}` contains a wildcard; wildcards are for patterns, not for publishing"),
            ));
        }
        Ok(Self(Arc::from(s)))
    }

    /// The subject as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dot-separated tokens.
    pub fn tokens(&self) -> std::str::Split<'_, char> {
        self.0.split('.')
    }

    /// The first token, which names the stream a first publish creates.
    pub fn first_token(&self) -> &str {
        self.tokens()
            .next()
            .expect("a validated subject has at least one token")
    }

    /// Whether the subject is reserved for Herald's own streams (starts with `$`).
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with('$')
    }
}

/// A validated subject pattern, such as `orders.*` or `orders.>`.
///
/// `*` matches exactly one token and `>`, allowed only as the last token, one or
/// more trailing tokens. A pattern without wildcards matches only itself.
///
/// # Examples
///
/// ```
/// use herald_core::{Pattern, Subject};
///
/// let pattern = Pattern::new("orders.>")?;
/// assert!(pattern.matches(&Subject::new("orders.created")?));
/// assert!(pattern.matches(&Subject::new("orders.eu.created")?));
/// assert!(!pattern.matches(&Subject::new("orders")?));
/// # Ok::<(), herald_core::Error>(())
/// ```
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(
        value_type = String,
        example = "orders.>",
        description = "A subject pattern: `*` matches one token, a final `>` one or more."
    )
)]
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(Arc<str>);

impl Pattern {
    /// Validates `pattern`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidSubject`] when it is empty, too long, has an empty token,
    /// whitespace, a control or format character, a wildcard inside a token
    /// (`a*`), or a `>` that is not last.
    pub fn new(pattern: impl AsRef<str>) -> Result<Self, Error> {
        let p = pattern.as_ref();
        check_token_chars(p, "pattern")?;
        let count = p.split('.').count();
        for (i, token) in p.split('.').enumerate() {
            let wild = token.contains(['*', '>']);
            if wild && token != "*" && token != ">" {
                return Err(Error::new(
                    ErrorKind::InvalidSubject,
                    format!("pattern `{p}`: a wildcard must be a whole token, not part of `{token}`"),
                ));
            }
            if token == ">" && i + 1 != count {
                return Err(Error::new(
                    ErrorKind::InvalidSubject,
                    format!("pattern `{p}`: `>` may only be the last token"),
                ));
            }
        }
        Ok(Self(Arc::from(p)))
    }

    /// The pattern as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern has a wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.0.split('.').any(|t| t == "*" || t == ">")
    }

    /// Whether `subject` matches this pattern.
    pub fn matches(&self, subject: &Subject) -> bool {
        self.matches_str(subject.as_str())
    }

    /// Whether the (already valid) subject text matches this pattern.
    pub fn matches_str(&self, subject: &str) -> bool {
        let mut subject_tokens = subject.split('.');
        for token in self.0.split('.') {
            match token {
                ">" => return subject_tokens.next().is_some(),
                "*" => {
                    if subject_tokens.next().is_none() {
                        return false;
                    }
                }
                literal => {
                    if subject_tokens.next() != Some(literal) {
                        return false;
                    }
                }
            }
        }
        subject_tokens.next().is_none()
    }

    /// Whether some subject matches both patterns.
    ///
    /// # Examples
    ///
    /// ```
    /// use herald_core::Pattern;
    ///
    /// assert!(Pattern::new("a.*")?.overlaps(&Pattern::new("a.>")?));
    /// assert!(!Pattern::new("a.*")?.overlaps(&Pattern::new("a.b.c")?));
    /// # Ok::<(), herald_core::Error>(())
    /// ```
    pub fn overlaps(&self, other: &Pattern) -> bool {
        let a: Vec<&str> = self.0.split('.').collect();
        let b: Vec<&str> = other.0.split('.').collect();
        let mut i = 0;
        loop {
            match (a.get(i), b.get(i)) {
                (None, None) => return true,
                (Some(&">"), Some(_)) | (Some(_), Some(&">")) => return true,
                (Some(x), Some(y)) => {
                    if *x != "*" && *y != "*" && x != y {
                        return false;
                    }
                }
                _ => return false,
            }
            i += 1;
        }
    }

    /// Whether every subject that matches `self` also matches `other`.
    pub fn is_subset_of(&self, other: &Pattern) -> bool {
        let a: Vec<&str> = self.0.split('.').collect();
        let b: Vec<&str> = other.0.split('.').collect();
        for (i, y) in b.iter().enumerate() {
            match (a.get(i), *y) {
                (Some(_), ">") => return true,
                (Some(&">"), _) => return false,
                (Some(_), "*") => {}
                (Some(x), y) => {
                    if *x != y {
                        return false;
                    }
                }
                (None, _) => return false,
            }
        }
        a.len() == b.len()
    }
}

impl From<Subject> for Pattern {
    fn from(subject: Subject) -> Self {
        Pattern(subject.0)
    }
}

/// 140 characters: a reserved name such as `$dlq-<stream>-<consumer>` holds two
/// ordinary names.
pub const MAX_RESERVED_NAME_LEN: usize = 2 * MAX_NAME_LEN + 12;

/// A validated stream (or consumer) name: 1 to 64 of `A-Z a-z 0-9 _ -`, with an
/// optional leading `$` that marks Herald's own streams (dead letters, KV).
///
/// # Examples
///
/// ```
/// use herald_core::StreamName;
///
/// assert!(StreamName::new("orders").is_ok());
/// assert!(StreamName::new("orders.eu").is_err());
/// assert!(StreamName::new("$dlq-orders-billing")?.is_reserved());
/// # Ok::<(), herald_core::Error>(())
/// ```
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(
        value_type = String,
        example = "orders",
        description = "A stream name: 1 to 64 of `A-Z a-z 0-9 _ -` (Herald's own streams start with `$`)."
    )
)]
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName(Arc<str>);

/// Checks a name of a stream, consumer or bucket; `what` names it in the error.
pub(crate) fn check_name(name: &str, what: &str) -> Result<(), Error> {
    let (body, max) = match name.strip_prefix('$') {
        // Herald's own names embed a stream and a consumer name.
        Some(body) => (body, MAX_RESERVED_NAME_LEN),
        None => (name, MAX_NAME_LEN),
    };
    if body.is_empty() || body.len() > max {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!("{what} name `{}` must be 1 to {max} characters", name.escape_debug()),
        ));
    }
    if let Some(c) = body
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "{what} name `{}` contains {c:?}; only letters, digits, `_` and `-` are allowed",
                name.escape_debug()
            ),
        ));
    }
    Ok(())
}

impl StreamName {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`] when it is empty, longer than 64 characters or has a
    /// character other than letters, digits, `_` and `-` (after an optional leading `$`).
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name = name.as_ref();
        check_name(name, "stream")?;
        Ok(Self(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name is reserved for Herald's own streams (starts with `$`).
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with('$')
    }

    /// The default patterns a stream of this name captures: `name` and `name.>`.
    pub fn default_patterns(&self) -> Vec<Pattern> {
        vec![Pattern(self.0.clone()), Pattern(Arc::from(format!("{}.>", self.0)))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("c".to_string()),
            "[a-z0-9_-]{1,6}"
        ]
    }

    fn subject() -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 1..5).prop_map(|t| t.join("."))
    }

    fn pattern() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop_oneof![3 => token(), 1 => Just("*".to_string())], 1..5),
            any::<bool>(),
        )
            .prop_map(|(mut t, tail)| {
                if tail {
                    t.push(">".to_string());
                }
                t.join(".")
            })
    }

    /// Matching by brute force over token lists, as a reference for `matches`.
    fn reference_match(pattern: &str, subject: &str) -> bool {
        let p: Vec<&str> = pattern.split('.').collect();
        let s: Vec<&str> = subject.split('.').collect();
        if p.last() == Some(&">") {
            let fixed = &p[..p.len() - 1];
            s.len() > fixed.len() && fixed.iter().zip(&s).all(|(p, s)| *p == "*" || p == s)
        } else {
            p.len() == s.len() && p.iter().zip(&s).all(|(p, s)| *p == "*" || p == s)
        }
    }

    proptest! {
        #[test]
        fn generated_subjects_and_patterns_are_valid(s in subject(), p in pattern()) {
            prop_assert!(Subject::new(&s).is_ok());
            prop_assert!(Pattern::new(&p).is_ok());
        }

        #[test]
        fn matching_agrees_with_the_reference(s in subject(), p in pattern()) {
            let pat = Pattern::new(&p).unwrap();
            prop_assert_eq!(pat.matches(&Subject::new(&s).unwrap()), reference_match(&p, &s));
        }

        #[test]
        fn a_subject_matched_by_two_patterns_means_they_overlap(s in subject(), a in pattern(), b in pattern()) {
            let subj = Subject::new(&s).unwrap();
            let (pa, pb) = (Pattern::new(&a).unwrap(), Pattern::new(&b).unwrap());
            if pa.matches(&subj) && pb.matches(&subj) {
                prop_assert!(pa.overlaps(&pb));
                prop_assert!(pb.overlaps(&pa));
            }
        }

        #[test]
        fn subset_patterns_match_only_what_the_superset_matches(s in subject(), a in pattern(), b in pattern()) {
            let subj = Subject::new(&s).unwrap();
            let (pa, pb) = (Pattern::new(&a).unwrap(), Pattern::new(&b).unwrap());
            if pa.is_subset_of(&pb) && pa.matches(&subj) {
                prop_assert!(pb.matches(&subj));
            }
        }

        #[test]
        fn a_literal_pattern_matches_exactly_its_subject(s in subject(), t in subject()) {
            let p = Pattern::new(&s).unwrap();
            prop_assert_eq!(p.matches(&Subject::new(&t).unwrap()), s == t);
        }

        #[test]
        fn subjects_with_an_empty_token_are_rejected(a in subject(), b in subject()) {
            let bad = format!("{a}..{b}");
            prop_assert_eq!(Subject::new(&bad).unwrap_err().kind(), ErrorKind::InvalidSubject);
            let (leading, trailing) = (format!(".{a}"), format!("{a}."));
            prop_assert!(Subject::new(&leading).is_err());
            prop_assert!(Subject::new(&trailing).is_err());
            prop_assert!(Pattern::new(&bad).is_err());
        }

        #[test]
        fn subjects_with_whitespace_or_wildcards_are_rejected(a in subject(), c in prop::sample::select(vec![" ", "\t", "\n", "*", ">"])) {
            let bad = format!("{a}{c}");
            prop_assert_eq!(Subject::new(&bad).unwrap_err().kind(), ErrorKind::InvalidSubject);
        }

        #[test]
        fn partial_wildcard_tokens_are_rejected(a in "[a-z]{1,4}") {
            for bad in [format!("x.{a}*"), format!("x.>{a}"), format!("x.>.{a}")] {
                prop_assert!(Pattern::new(&bad).is_err());
            }
        }

        #[test]
        fn subject_serde_round_trips(s in subject()) {
            let subj = Subject::new(&s).unwrap();
            let json = serde_json::to_string(&subj).unwrap();
            prop_assert_eq!(serde_json::from_str::<Subject>(&json).unwrap(), subj);
        }
    }

    #[test]
    fn control_and_format_characters_are_rejected_in_subjects_and_patterns() {
        let refused = [
            '\u{0}',
            '\u{7}',
            '\u{1B}',
            '\u{7F}',
            '\u{85}',
            '\u{9F}', // control
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}', // embeddings, overrides
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}', // isolates
            '\u{200E}',
            '\u{200F}',
            '\u{061C}', // direction marks
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}', // invisible
            '\u{2028}',
            '\u{2029}',
            '\u{3000}', // separators (whitespace)
            '\u{E0041}',
            '\u{1343F}', // tags, supplementary-plane format
        ];
        for c in refused {
            for text in [
                format!("orders.{c}created"),
                format!("{c}orders"),
                format!("orders.x{c}"),
            ] {
                let err = Subject::new(&text).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::InvalidSubject, "{c:?}");
                assert!(err.to_string().contains("contains the character"), "{err}");
                assert_eq!(
                    Pattern::new(&text).unwrap_err().kind(),
                    ErrorKind::InvalidSubject,
                    "{c:?}"
                );
                let pattern = format!("{text}.>");
                assert!(Pattern::new(&pattern).is_err(), "{c:?}");
                assert!(
                    serde_json::from_value::<Subject>(serde_json::json!(text)).is_err(),
                    "{c:?}"
                );
            }
        }
        // The message shows the character escaped, not doing its work.
        let err = Subject::new("user.\u{202E}txt.exe").unwrap_err();
        assert!(err.to_string().contains("\\u{202e}"), "{err}");
        // Letters of any script, symbols and emoji stay allowed.
        for fine in [
            "orders.créé",
            "заказы.новый",
            "注文.作成",
            "ضبط.طلب",
            "events.🚀",
            "a-b_c.~!@#%",
        ] {
            assert!(Subject::new(fine).is_ok(), "{fine}");
            assert!(Pattern::new(format!("{fine}.*")).is_ok(), "{fine}");
        }
    }

    #[test]
    fn the_format_table_is_exactly_unicodes_cf_category_at_the_edges() {
        for (inside, outside) in [
            ('\u{00AD}', '\u{00AC}'),
            ('\u{200B}', '\u{200A}'),
            ('\u{202E}', '\u{202F}'),
            ('\u{206F}', '\u{2070}'),
            ('\u{2064}', '\u{2065}'),
            ('\u{FFFB}', '\u{FFFC}'),
            ('\u{E007F}', '\u{E0080}'),
        ] {
            assert!(is_format(inside), "{inside:?}");
            assert!(!is_format(outside), "{outside:?}");
        }
    }

    #[test]
    fn over_long_subjects_are_rejected() {
        let long = "a".repeat(MAX_SUBJECT_LEN + 1);
        let err = Subject::new(&long).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSubject);
        assert!(err.to_string().contains("over the limit"), "{err}");
        assert!(Subject::new("a".repeat(MAX_SUBJECT_LEN)).is_ok());
    }

    #[test]
    fn deserializing_an_invalid_subject_fails() {
        assert!(serde_json::from_str::<Subject>("\"a..b\"").is_err());
        assert!(serde_json::from_str::<StreamName>("\"a.b\"").is_err());
    }

    #[test]
    fn stream_names_follow_the_rules() {
        assert!(StreamName::new("orders_v2-eu").is_ok());
        for bad in ["", "a.b", "a b", "a*", "$", &"x".repeat(65)] {
            assert_eq!(
                StreamName::new(bad).unwrap_err().kind(),
                ErrorKind::InvalidName,
                "{bad}"
            );
        }
        let names: Vec<String> = StreamName::new("orders")
            .unwrap()
            .default_patterns()
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(names, ["orders", "orders.>"]);
    }
}
