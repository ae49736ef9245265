//! Dead letters: where a consumer's given-up messages go, what a letter
//! carries, and which consumer a dead-letter stream belongs to
//! (docs/semantics.md, "Dead letters").

use crate::backend::StreamBackend;
use crate::consumer::ConsumerName;
use crate::error::{Error, ErrorKind};
use crate::message::{Message, OutgoingMessage};
use crate::stream::StreamConfig;
use crate::subject::{StreamName, Subject};

/// The headers a dead letter carries about where it came from, and the
/// bounds that keep them small enough to always be written.
pub mod dlq {
    /// The stream it came from.
    pub const STREAM: &str = "herald-dlq-stream";
    /// Its seq there.
    pub const SEQ: &str = "herald-dlq-seq";
    /// Its original subject (a replay republishes to it).
    pub const SUBJECT: &str = "herald-dlq-subject";
    /// The consumer that gave up on it.
    pub const CONSUMER: &str = "herald-dlq-consumer";
    /// How many times it was delivered.
    pub const DELIVERIES: &str = "herald-dlq-deliveries";
    /// Why: `max_deliver` reached, or the reason given to `term`, on one
    /// line (each control character a space) and cut to [`MAX_REASON_BYTES`].
    pub const REASON: &str = "herald-dlq-reason";

    /// 1 KiB: a reason explains, it does not carry the failed input; a
    /// longer one is cut there, on a character boundary, so that the
    /// letter's own headers stay within [`ADDED_HEADER_BYTES`].
    pub const MAX_REASON_BYTES: usize = 1024;

    /// 2 KiB: what a letter's `herald-dlq-*` headers may add on top of the
    /// message's own [`MAX_HEADER_BYTES`](crate::MAX_HEADER_BYTES). At most
    /// about 1.9 KiB (names, a reserved stream name, a full subject, a
    /// consumer name, two numbers and a full reason), so a message whose
    /// headers fill the limit can still be dead-lettered with all of them.
    /// Only dead-letter subjects (`$dlq.…`, `$dlqr.…`) get the allowance.
    pub const ADDED_HEADER_BYTES: usize = 2 * 1024;
}

/// The dead-letter stream and subject of a consumer: `$dlq-<stream>-<consumer>`
/// and `$dlq.<stream>.<consumer>`; for a consumer on one of Herald's own
/// (`$`) streams, `$dlqr-…` and `$dlqr.…` with the stream's `$` dropped, so
/// the two families never share a name.
///
/// # Errors
///
/// [`crate::ErrorKind::InvalidName`] when the stream's name would be over the
/// limit (a long consumer name on a long-named stream), which
/// [`ConsumerConfig::validate_on`] refuses when such a consumer is created.
pub fn dead_letter_names(stream: &StreamName, consumer: &ConsumerName) -> Result<(StreamName, String), Error> {
    let (family, body) = dead_letter_family(stream);
    let name = StreamName::new(format!("${family}-{body}-{consumer}")).map_err(|_| {
        Error::new(
            crate::ErrorKind::InvalidName,
            format!(
                "consumer `{consumer}` on stream `{stream}`: its dead-letter stream `${family}-{body}-{consumer}` \
                 would be over the {} characters a stream name may have; give it a shorter name, or discard its \
                 dead letters",
                crate::MAX_RESERVED_NAME_LEN
            ),
        )
    })?;
    Ok((name, format!("${family}.{body}.{consumer}")))
}

/// The name of a consumer's dead-letter stream, if it can have one (the
/// names of a dead-letter stream's own consumers' streams can outgrow the
/// name limit; such a stream was never created).
pub fn dead_letter_stream(stream: &StreamName, consumer: &ConsumerName) -> Option<StreamName> {
    let (family, body) = dead_letter_family(stream);
    StreamName::new(format!("${family}-{body}-{consumer}")).ok()
}

/// `dlq` and the stream's name, or `dlqr` and the name without its `$`.
fn dead_letter_family(stream: &StreamName) -> (&'static str, &str) {
    match stream.as_str().strip_prefix('$') {
        Some(body) => ("dlqr", body),
        None => ("dlq", stream.as_str()),
    }
}

/// Whether `subject` is a dead-letter subject, whose headers may exceed
/// [`MAX_HEADER_BYTES`](crate::MAX_HEADER_BYTES) by [`dlq::ADDED_HEADER_BYTES`].
pub fn is_dead_letter_subject(subject: &str) -> bool {
    subject.starts_with("$dlq.") || subject.starts_with("$dlqr.")
}

/// The dead letter of `message`, given up on by `consumer` of `stream`
/// after `deliveries` deliveries: its payload, content type and every
/// header, plus the `herald-dlq-*` ones, with `reason` on one line and cut
/// to [`dlq::MAX_REASON_BYTES`]. Its id is derived from the origin, so a
/// retried dead-lettering is stored once.
///
/// # Errors
///
/// [`ErrorKind::InvalidName`] when the consumer can have no dead-letter
/// stream (see [`dead_letter_names`]).
pub fn dead_letter(
    stream: &StreamName,
    consumer: &ConsumerName,
    message: &Message,
    deliveries: u32,
    reason: &str,
) -> Result<OutgoingMessage, Error> {
    let (_, subject) = dead_letter_names(stream, consumer)?;
    let mut letter = OutgoingMessage::new(Subject::new(subject)?, message.payload.clone())
        .id(format!("dlq:{stream}:{consumer}:{}", message.seq));
    letter.headers = message.headers.clone();
    letter.content_type = message.content_type.clone();
    Ok(letter
        .header(dlq::STREAM, stream.as_str())
        .header(dlq::SEQ, message.seq.to_string())
        .header(dlq::SUBJECT, message.subject.as_str())
        .header(dlq::CONSUMER, consumer.as_str())
        .header(dlq::DELIVERIES, deliveries.to_string())
        .header(dlq::REASON, reason_header(reason)))
}

/// Raises the `max_payload` of the dead-letter stream of `consumer` on
/// `stream` to its origin's, after it refused a letter as too large: it was
/// made with the default, or the origin's limit was raised since. Returns
/// whether it was raised (so that the letter is worth writing again).
///
/// # Errors
///
/// Every error of reading either stream or updating the dead-letter stream.
pub async fn widen_dead_letter_stream<B: StreamBackend + ?Sized>(
    backend: &B,
    stream: &StreamName,
    consumer: &ConsumerName,
) -> Result<bool, Error> {
    let (name, _) = dead_letter_names(stream, consumer)?;
    let origin = backend.stream_info(stream).await?.config.max_payload;
    let mut dead_letters = backend.stream_info(&name).await?.config;
    if dead_letters.max_payload >= origin {
        return Ok(false);
    }
    dead_letters.max_payload = origin;
    backend.update_stream(dead_letters).await?;
    Ok(true)
}

/// `reason` as a header: on one line, each control character (line breaks,
/// tabs) a space, since NATS headers cannot carry line breaks; then cut to at
/// most [`dlq::MAX_REASON_BYTES`] on a character boundary.
fn reason_header(reason: &str) -> String {
    let mut line: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut end = line.len().min(dlq::MAX_REASON_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.truncate(end);
    line
}

/// Checks that `existing`, a stream of the name of the dead-letter stream of
/// `consumer` on `stream`, is that consumer's: it captures exactly its
/// dead-letter subject. Names may hold `-`, so `a-b` + `c` and `a` + `b-c`
/// both name `$dlq-a-b-c`; their subjects (`$dlq.a-b.c`, `$dlq.a.b-c`) differ.
///
/// # Errors
///
/// [`ErrorKind::InvalidName`] naming the consumer whose dead letters the
/// stream holds, when it is another's.
pub fn check_dead_letter_owner(
    stream: &StreamName,
    consumer: &ConsumerName,
    existing: &StreamConfig,
) -> Result<(), Error> {
    if owns_dead_letter_stream(stream, consumer, existing) {
        return Ok(());
    }
    let holder = match existing.subjects.as_slice() {
        [only] => dead_letter_holder(only.as_str()),
        _ => None,
    };
    let holder = holder.map_or_else(
        || "another consumer's dead letters".to_string(),
        |(stream, consumer)| format!("the dead letters of consumer `{consumer}` on stream `{stream}`"),
    );
    Err(Error::new(
        ErrorKind::InvalidName,
        format!(
            "consumer `{consumer}` on stream `{stream}`: its dead-letter stream `{}` already holds {holder}; \
             give this consumer another name, or discard its dead letters",
            existing.name
        ),
    ))
}

/// Whether `existing` is the dead-letter stream of `consumer` on `stream`:
/// what deleting `stream` may delete with it.
pub fn owns_dead_letter_stream(stream: &StreamName, consumer: &ConsumerName, existing: &StreamConfig) -> bool {
    let Ok((name, subject)) = dead_letter_names(stream, consumer) else {
        return false;
    };
    existing.name == name && matches!(existing.subjects.as_slice(), [only] if only.as_str() == subject)
}

/// The stream and consumer a dead-letter subject belongs to.
fn dead_letter_holder(subject: &str) -> Option<(String, &str)> {
    let mut tokens = subject.split('.');
    let stream = match tokens.next()? {
        "$dlq" => tokens.next()?.to_string(),
        "$dlqr" => format!("${}", tokens.next()?),
        _ => return None,
    };
    let consumer = tokens.next()?;
    tokens.next().is_none().then_some((stream, consumer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_HEADER_BYTES;
    use crate::message::Timestamp;

    fn message_with_headers(headers: usize) -> Message {
        Message {
            stream: StreamName::new("s".repeat(64)).unwrap(),
            seq: u64::MAX,
            subject: Subject::new(format!("s.{}", "x".repeat(510))).unwrap(),
            id: "id".into(),
            time: Timestamp(0),
            headers: [("big".to_string(), "h".repeat(headers - "big".len() - 2))].into(),
            payload: crate::Bytes::from_static(b"p"),
            content_type: None,
            expires: None,
        }
    }

    #[test]
    fn a_letter_of_a_message_with_full_headers_and_a_long_reason_is_valid() {
        let message = message_with_headers(MAX_HEADER_BYTES);
        // As long as a stream and a consumer with dead letters can be named.
        let stream = StreamName::new(format!("${}", "s".repeat(64))).unwrap();
        let consumer = ConsumerName::new("c".repeat(64)).unwrap();
        let reason = "é".repeat(dlq::MAX_REASON_BYTES);
        let letter = dead_letter(&stream, &consumer, &message, u32::MAX, &reason).unwrap();
        letter.validate().unwrap();
        assert_eq!(letter.headers["big"], message.headers["big"]);
        assert_eq!(letter.headers[dlq::REASON].len(), dlq::MAX_REASON_BYTES);
        assert!(letter.header_bytes() - MAX_HEADER_BYTES < dlq::ADDED_HEADER_BYTES);
        // The allowance is the letter's alone.
        let mut plain = OutgoingMessage::new(message.subject.clone(), "p");
        plain.headers = letter.headers.clone();
        assert_eq!(plain.validate().unwrap_err().kind(), ErrorKind::HeadersTooLarge);
    }

    #[test]
    fn a_reason_is_one_line_cut_on_a_character_boundary() {
        assert_eq!(reason_header("short"), "short");
        assert_eq!(reason_header("a\r\nb\tc\u{85}d"), "a  b c d");
        let long = format!("x{}", "é".repeat(dlq::MAX_REASON_BYTES));
        let cut = reason_header(&long);
        assert_eq!(cut.len(), dlq::MAX_REASON_BYTES - 1);
        assert!(long.starts_with(&cut));
    }

    #[test]
    fn a_dead_letter_stream_belongs_only_to_the_consumer_of_its_subject() {
        let name = |n: &str| StreamName::new(n).unwrap();
        let consumer = |n: &str| ConsumerName::new(n).unwrap();
        let (dlq_name, subject) = dead_letter_names(&name("a-b"), &consumer("c")).unwrap();
        let existing = StreamConfig::with_name(dlq_name).subjects([subject]).unwrap();
        assert!(owns_dead_letter_stream(&name("a-b"), &consumer("c"), &existing));
        assert!(!owns_dead_letter_stream(&name("a"), &consumer("b-c"), &existing));
        let err = check_dead_letter_owner(&name("a"), &consumer("b-c"), &existing).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName);
        assert!(err.to_string().contains("consumer `c` on stream `a-b`"), "{err}");
        assert_eq!(dead_letter_holder("$dlqr.kv-a.w"), Some(("$kv-a".to_string(), "w")));
    }

    #[test]
    fn a_dead_letter_name_over_the_limit_is_an_invalid_name_not_a_panic() {
        let stream = StreamName::new(format!("${}", "s".repeat(140))).unwrap();
        let err = dead_letter_names(&stream, &ConsumerName::new("c").unwrap()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidName);
        assert!(err.to_string().contains("give it a shorter name"), "{err}");
    }

    #[test]
    fn dead_letter_names_exist_for_user_and_reserved_streams_and_never_collide() {
        let consumer = ConsumerName::new("c".repeat(64)).unwrap();
        let user = StreamName::new("s".repeat(64)).unwrap();
        let reserved = StreamName::new(format!("${}", "s".repeat(64))).unwrap();
        let (user_dlq, user_subject) = dead_letter_names(&user, &consumer).unwrap();
        let (reserved_dlq, reserved_subject) = dead_letter_names(&reserved, &consumer).unwrap();
        assert!(user_dlq.is_reserved() && reserved_dlq.is_reserved());
        assert_ne!(user_dlq, reserved_dlq);
        assert_ne!(user_subject, reserved_subject);
        assert_eq!(
            dead_letter_names(&StreamName::new("$kv-a").unwrap(), &ConsumerName::new("w").unwrap())
                .unwrap()
                .1,
            "$dlqr.kv-a.w"
        );
    }
}
