//! The fuzz targets: each takes any bytes, must not panic, and checks what
//! holds of the input it accepts. The stable driver ([`super::run`]) and
//! libFuzzer (`fuzz/fuzz_targets/`) call the same functions.

use herald_core::{ConsumerName, Pattern, StreamName, Subject};

/// A WebSocket text frame, read as a session reads it
/// ([`herald_server::fuzzing::ws_frame`]).
pub fn ws_frame(data: &[u8]) {
    herald_server::fuzzing::ws_frame(data);
}

/// Frames, one a line, run as a WebSocket session on a bus in memory
/// ([`herald_server::fuzzing::ws_session`]).
pub fn ws_session(data: &[u8]) {
    herald_server::fuzzing::ws_session(data);
}

/// A JSON body, read as every route that takes one reads it
/// ([`herald_server::fuzzing::http_body`]).
pub fn http_body(data: &[u8]) {
    herald_server::fuzzing::http_body(data);
}

/// Up to two lines of text, each tried as a subject, a pattern, a stream
/// name and a consumer name; then the two patterns against each other.
pub fn subject(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first, second) = text.split_once('\n').unwrap_or((&text, ""));
    for line in [first, second] {
        one_subject(line);
        one_pattern(line);
        names(line);
    }
    if let (Ok(a), Ok(b)) = (Pattern::new(first), Pattern::new(second)) {
        two_patterns(&a, &b);
    }
}

/// A `herald serve` config file, read as `serve` reads it: refused with a
/// TOML error, or read whole, each token's digest as written.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match herald_cli::config::parse(text) {
        Ok(config) => config,
        Err(error) => {
            assert!(!error.to_string().is_empty(), "a refusal says why");
            return;
        }
    };
    let written: Written = toml::from_str(text).expect("a config that was read has its tokens");
    assert_eq!(written.tokens.len(), config.tokens.len());
    for (token, written) in config.tokens.iter().zip(&written.tokens) {
        assert_eq!(
            hex(&token.sha256),
            written.sha256.to_ascii_lowercase(),
            "token `{}`: the digest read is not the one written",
            token.name
        );
    }
}

/// The tokens' digests as the config file writes them, and nothing else.
#[derive(serde::Deserialize)]
struct Written {
    #[serde(default)]
    tokens: Vec<WrittenToken>,
}

#[derive(serde::Deserialize)]
struct WrittenToken {
    sha256: String,
}

/// What the engine stores, as a damaged or foreign data file could hold it:
/// the bytes go to every decoder of stored values
/// ([`herald_engine::fuzzing`]).
pub fn record(data: &[u8]) {
    herald_engine::fuzzing::message_record(data);
    herald_engine::fuzzing::stream_state(data);
    herald_engine::fuzzing::stream_meta(data);
    herald_engine::fuzzing::consumer_record(data);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A subject that is valid reads back as written, matches itself as a
/// pattern and survives JSON.
fn one_subject(text: &str) {
    let Ok(subject) = Subject::new(text) else {
        return;
    };
    assert_eq!(subject.to_string(), text);
    assert!(!subject.first_token().is_empty());
    let json = serde_json::to_string(&subject).expect("a subject encodes");
    let back: Subject = serde_json::from_str(&json).expect("a subject reads back");
    assert_eq!(back, subject);
    let pattern = Pattern::new(text).expect("a valid subject is a valid pattern");
    assert!(!pattern.is_wildcard(), "`{text}` has no wildcard");
    assert!(pattern.matches(&subject), "`{text}` does not match itself");
    assert!(Pattern::from(subject.clone()).matches(&subject));
}

/// A pattern that is valid reads back as written, matches the subjects made
/// from it by filling in its wildcards, and no subject one token short or
/// (without `>`) one token long.
fn one_pattern(text: &str) {
    let Ok(pattern) = Pattern::new(text) else {
        return;
    };
    assert_eq!(pattern.to_string(), text);
    let json = serde_json::to_string(&pattern).expect("a pattern encodes");
    let back: Pattern = serde_json::from_str(&json).expect("a pattern reads back");
    assert_eq!(back, pattern);
    assert!(pattern.overlaps(&pattern) && pattern.is_subset_of(&pattern));
    let everything = Pattern::new(">").expect("`>` is a pattern");
    assert!(pattern.is_subset_of(&everything) && pattern.overlaps(&everything));
    if !pattern.is_wildcard() {
        Subject::new(text).expect("a pattern without wildcards is a subject");
    }
    let ends_open = text == ">" || text.ends_with(".>");
    for subject in filled_in(&pattern) {
        assert!(pattern.matches(&subject), "`{pattern}` does not match `{subject}`");
        assert!(pattern.overlaps(&Pattern::from(subject.clone())));
        let longer = format!("{subject}.x");
        if let Ok(longer) = Subject::new(&longer) {
            assert_eq!(pattern.matches(&longer), ends_open, "`{pattern}` and `{longer}`");
        }
        if let Some((shorter, _)) = subject.as_str().rsplit_once('.') {
            let shorter = Subject::new(shorter).expect("a subject's prefix of whole tokens is a subject");
            // A token short: `*` and `>` each need one, literals their own.
            let literal_or_star = pattern.as_str().split('.').filter(|t| *t != ">").count();
            if subject.tokens().count() == literal_or_star + usize::from(ends_open) {
                assert!(!pattern.matches(&shorter), "`{pattern}` matches `{shorter}`");
            }
        }
    }
}

/// Subjects a pattern must match: each `*` and `>` filled in with one
/// token, and `>` also with two. Those over the length limit are left out.
fn filled_in(pattern: &Pattern) -> Vec<Subject> {
    let fill = |gt: &str| {
        let tokens: Vec<&str> = pattern
            .as_str()
            .split('.')
            .map(|t| match t {
                "*" => "x",
                ">" => gt,
                literal => literal,
            })
            .collect();
        Subject::new(tokens.join(".")).ok()
    };
    [fill("x"), fill("x.y")].into_iter().flatten().collect()
}

/// Two valid patterns: `overlaps` is symmetric, a subject matching both
/// means they overlap, and a subset's subjects match its superset.
fn two_patterns(a: &Pattern, b: &Pattern) {
    assert_eq!(a.overlaps(b), b.overlaps(a), "`{a}` and `{b}`");
    for (x, y) in [(a, b), (b, a)] {
        for subject in filled_in(x) {
            if y.matches(&subject) {
                assert!(x.overlaps(y), "`{x}` and `{y}` both match `{subject}`");
            } else {
                assert!(
                    !x.is_subset_of(y),
                    "`{x}` is a subset of `{y}`, which misses `{subject}`"
                );
            }
        }
    }
}

/// A valid stream or consumer name reads back as written, in text and JSON,
/// and a stream's default patterns are valid patterns.
fn names(text: &str) {
    if let Ok(stream) = StreamName::new(text) {
        assert_eq!(stream.to_string(), text);
        let json = serde_json::to_string(&stream).expect("a stream name encodes");
        assert_eq!(serde_json::from_str::<StreamName>(&json).expect("reads back"), stream);
        for pattern in stream.default_patterns() {
            let valid = Pattern::new(pattern.as_str()).expect("a default pattern is valid");
            assert_eq!(valid, pattern);
        }
    }
    if let Ok(consumer) = ConsumerName::new(text) {
        assert_eq!(consumer.to_string(), text);
        assert!(StreamName::new(text).is_ok(), "a consumer name is also a stream name");
        let json = serde_json::to_string(&consumer).expect("a consumer name encodes");
        assert_eq!(
            serde_json::from_str::<ConsumerName>(&json).expect("reads back"),
            consumer
        );
    }
}
