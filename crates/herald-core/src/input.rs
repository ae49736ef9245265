//! Reading what people and programs send: JSON bodies and frames, query
//! strings. The types that travel in them refuse unknown fields, so a typo
//! never falls back to a default; this module turns what the parser says into
//! Herald's own words: where in the input (`config.max_deliver`), what was
//! wrong, and the nearest known field or value when one is obviously meant.

use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind};

/// Parses `bytes` as JSON into `T`, strictly.
///
/// `what` names the input for the message ("body", "frame").
///
/// # Errors
///
/// `InvalidRequest`, saying where and what, in words a user of the HTTP API
/// or the protocol can act on.
pub fn from_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| invalid_input(what, &e.path().to_string(), &e.into_inner().to_string()))?;
    deserializer
        .end()
        .map_err(|e| invalid_input(what, ".", &e.to_string()))?;
    Ok(value)
}

/// Parses a JSON value into `T`, strictly (as [`from_json`]).
///
/// # Errors
///
/// `InvalidRequest`, as [`from_json`].
pub fn from_value<T: DeserializeOwned>(what: &str, value: serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| invalid_input(what, &e.path().to_string(), &e.into_inner().to_string()))
}

/// Deserializes `T` from any serde deserializer (a query string's, say),
/// with the error in Herald's words.
///
/// # Errors
///
/// `InvalidRequest`, as [`from_json`].
pub fn from_deserializer<'de, T, D>(what: &str, deserializer: D) -> Result<T, Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    serde_path_to_error::deserialize(deserializer)
        .map_err(|e| invalid_input(what, &e.path().to_string(), &e.into_inner().to_string()))
}

/// 128: how deep lists and objects may nest in JSON input, serde_json's own
/// bound (it keeps a hostile input from overflowing the parser's stack).
pub const MAX_JSON_DEPTH: usize = 128;

/// An `InvalidRequest` for a parser's complaint `message` at `path` in `what`.
pub fn invalid_input(what: &str, path: &str, message: &str) -> Error {
    let message = strip_position(message);
    if message == "recursion limit exceeded" {
        // The path would be the 128 steps down; the depth says it all.
        return Error::new(
            ErrorKind::InvalidRequest,
            format!("{what}: nested too deeply: lists and objects go {MAX_JSON_DEPTH} levels deep at most"),
        );
    }
    let said = describe(message);
    // The path ends in the unknown field itself, which the sentence names;
    // `?` stands for a place the parser could not name.
    let mut segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty() && *s != "?").collect();
    let unknown_field = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    if unknown_field.is_some() && segments.last().copied() == unknown_field {
        segments.pop();
    }
    let message = match segments.as_slice() {
        [] => format!("{what}: {said}"),
        path => format!("{what}, in `{}`: {said}", path.join(".")),
    };
    Error::new(ErrorKind::InvalidRequest, message)
}

/// serde_json ends its messages with where in the text it was; the path says
/// it better, and a single-line body makes line 1 noise.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) if message[at + 9..].split(" column ").all(|n| n.parse::<u64>().is_ok()) => &message[..at],
        _ => message,
    }
}

/// The parser's sentence in Herald's words.
fn describe(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return unknown("field", rest, "known fields");
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return unknown("value", rest, "expected");
    }
    if message.starts_with("EOF while parsing") {
        return "the JSON ends too soon".to_owned();
    }
    if message.starts_with("expected value") || message.starts_with("expected ident") {
        return "not valid JSON".to_owned();
    }
    if message.starts_with("trailing characters") {
        return "more text after the JSON value".to_owned();
    }
    // Number parsing's own words (query strings and path parameters).
    match message {
        "invalid digit found in string" => return "not a whole number".to_owned(),
        "cannot parse integer from empty string" => return "empty; give a whole number".to_owned(),
        "number too large to fit in target type" => return "too large a number".to_owned(),
        "provided string was not `true` or `false`" => return "expected true or false".to_owned(),
        _ => {}
    }
    // "invalid type: string \"x\", expected u64" -> "expected a whole number, found string \"x\"".
    let mismatch = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.split_once(", expected "));
    match mismatch {
        Some((found, expected)) => format!("expected {}, found {}", plain_type(expected), plain_found(found)),
        None => message.to_owned(),
    }
}

/// "`subjct`, expected one of `subject`, `before_seq`" (or "expected `a` or
/// `b`", or "there are no fields") as "unknown field `subjct` (did you mean
/// `subject`?); known fields: `subject`, `before_seq`".
fn unknown(noun: &str, rest: &str, list_label: &str) -> String {
    let (name, expected) = rest.split_once(", ").unwrap_or((rest, ""));
    let known: Vec<&str> = expected
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, name)| name)
        .collect();
    let mut said = format!("unknown {noun} {name}");
    let bare = name.trim_matches('`');
    if let Some(near) = nearest(bare, &known) {
        said.push_str(&format!(" (did you mean `{near}`?)"));
    }
    if known.is_empty() {
        said.push_str(&format!("; no {noun}s are accepted here"));
    } else {
        let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        said.push_str(&format!("; {list_label}: {}", list.join(", ")));
    }
    said
}

/// The known name `typed` was most likely meant to be: the closest within a
/// third of its length in edits (at least one), else one it begins (`wait`
/// for `wait_ms`).
fn nearest<'a>(typed: &str, known: &[&'a str]) -> Option<&'a str> {
    let allowed = (typed.chars().count() / 3).max(1);
    let close = known
        .iter()
        .map(|k| (edit_distance(typed, k), *k))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    close.or_else(|| {
        let mut begun = known.iter().filter(|k| typed.len() >= 3 && k.starts_with(typed));
        match (begun.next(), begun.next()) {
            (Some(only), None) => Some(*only),
            _ => None,
        }
    })
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Rust's names for what was expected, as a user of JSON would say them.
fn plain_type(expected: &str) -> String {
    let words = [
        ("a nonzero u64", "a whole number of at least 1"),
        ("a nonzero u32", "a whole number of at least 1"),
        ("u64", "a whole number"),
        ("u32", "a whole number"),
        ("u16", "a whole number"),
        ("u8", "a whole number"),
        ("usize", "a whole number"),
        ("i64", "a number"),
        ("a boolean", "true or false"),
        ("struct Duration", "a duration {\"secs\": …, \"nanos\": …}"),
        ("a sequence", "a list"),
    ];
    for (rust, plain) in words {
        if expected == rust {
            return plain.to_owned();
        }
    }
    expected
        .strip_prefix("struct ")
        .or_else(|| expected.strip_prefix("enum "))
        .map_or_else(|| expected.to_owned(), |name| format!("an object ({name})"))
}

/// serde's names for what was found.
fn plain_found(found: &str) -> String {
    match found {
        "unit value" => "null".to_owned(),
        "map" => "an object".to_owned(),
        "sequence" => "a list".to_owned(),
        "unit variant" => "a single word".to_owned(),
        found => found.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        config: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        max_deliver: Option<u32>,
        subject: Option<String>,
    }

    fn message<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        let err = from_json::<T>("body", json.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        err.message().to_owned()
    }

    #[test]
    fn an_unknown_field_is_named_with_where_it_is_and_the_nearest_known_one() {
        let said = message::<Outer>(r#"{"config": {"max_delivr": 3}}"#);
        assert_eq!(
            said,
            "body, in `config`: unknown field `max_delivr` (did you mean `max_deliver`?); \
             known fields: `max_deliver`, `subject`"
        );
        let said = message::<Inner>(r#"{"keep": 1}"#);
        assert_eq!(
            said,
            "body: unknown field `keep`; known fields: `max_deliver`, `subject`"
        );
    }

    #[test]
    fn parser_words_become_plain_ones() {
        assert_eq!(
            message::<Inner>(r#"{"max_deliver": "three"}"#),
            "body, in `max_deliver`: expected a whole number, found string \"three\""
        );
        assert_eq!(message::<Inner>(r#"{"subject": "a""#), "body: the JSON ends too soon");
        assert_eq!(message::<Inner>("nonsense"), "body: not valid JSON");
        assert_eq!(message::<Inner>("{} x"), "body: more text after the JSON value");
        let said = message::<Inner>(r#"{"max_deliver": 1} 2"#);
        assert!(!said.contains("line"), "{said}");
    }

    #[test]
    fn deep_nesting_is_said_in_a_sentence_not_a_path() {
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let said = message::<serde_json::Value>(&deep);
        assert_eq!(
            said,
            "body: nested too deeply: lists and objects go 128 levels deep at most"
        );
    }

    #[test]
    fn nearest_names_are_close_ones_only() {
        assert_eq!(nearest("subjct", &["subject", "before_seq"]), Some("subject"));
        assert_eq!(nearest("keep", &["all", "subject", "before_seq"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
