//! Answers to requests that never reach the router. hyper answers a request
//! it cannot read by itself — 400 for a malformed request line or header,
//! 414 for a target too long, 431 for a head over
//! [`Limits::max_header_bytes`](crate::Limits::max_header_bytes) or with too
//! many headers — with a bare head and no body. [`typed`] recognises such an
//! answer on its way to the socket and gives the one to send in its place:
//! the same status carrying the error object, as every other failure does
//! (docs/http.md).
//!
//! hyper writes such an answer alone, as a head declaring
//! `content-length: 0`; the server's own 400, 414 and 431 answers always
//! carry a JSON body, so the two are never confused.

use axum::http::StatusCode;
use herald_core::{Error, ErrorKind};

/// How many headers a request may have: hyper's own bound, left as it is
/// so that hyper keeps them on the stack.
pub(crate) const MAX_HEADERS: usize = 100;

/// The answer to send instead of `written`, when `written` is hyper's bare
/// answer to a request it could not read; `max_header_bytes` is the limit
/// the server set, for the message.
pub(crate) fn typed(written: &[u8], max_header_bytes: usize) -> Option<Vec<u8>> {
    let head = written.strip_prefix(b"HTTP/1.1 ")?.strip_suffix(b"\r\n\r\n")?;
    let head = std::str::from_utf8(head).ok()?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status: u16 = status_line.get(..3)?.parse().ok()?;
    let bare = headers
        .split("\r\n")
        .any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    if !bare || headers.contains("\r\n\r\n") {
        return None;
    }
    let error = match status {
        400 => Error::new(
            ErrorKind::InvalidRequest,
            "the request is not valid HTTP/1.1: its request line or a header could not be read",
        ),
        414 => Error::new(
            ErrorKind::InvalidRequest,
            "the request's target (path and query) is too long",
        ),
        431 => Error::new(
            ErrorKind::HeadersTooLarge,
            format!(
                "the request's head is over the server's limits: {max_header_bytes} bytes for the request line \
                 and headers together, and {MAX_HEADERS} headers"
            ),
        ),
        _ => return None,
    };
    let status = StatusCode::from_u16(status).ok()?;
    let body = serde_json::to_vec(&crate::wire_error(&error)).ok()?;
    let mut answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    // hyper's other headers (its `date`), minus what is said above.
    for line in headers.split("\r\n") {
        let name = line.split(':').next().unwrap_or_default().trim();
        let said = ["content-length", "content-type", "connection"];
        if !line.is_empty() && !said.iter().any(|s| name.eq_ignore_ascii_case(s)) {
            answer.push_str(line);
            answer.push_str("\r\n");
        }
    }
    answer.push_str("\r\n");
    let mut answer = answer.into_bytes();
    answer.extend_from_slice(&body);
    Some(answer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn split(answer: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(answer.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn hypers_bare_answers_get_the_error_object() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 08 Dec 2026 03:00:00 GMT\r\n\r\n";
        let (head, error) = split(&typed(bare, 16384).unwrap());
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\ndate: Tue, 08 Dec 2026 03:00:00 GMT"), "{head}");
        assert!(head.contains("\r\ncontent-type: application/json\r\n"), "{head}");
        assert_eq!(error["code"], 1006);
        assert!(error["message"].as_str().unwrap().contains("16384 bytes"), "{error}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, serde_json::to_vec(&error).unwrap().len());

        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(split(&typed(bare, 16384).unwrap()).1["code"], 1004);
        let bare = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(split(&typed(bare, 16384).unwrap()).1["code"], 1004);
    }

    #[test]
    fn the_servers_own_answers_pass_unchanged() {
        let written: &[&[u8]] = &[
            // An answer with a body, however it is cut into writes.
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 70\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            // Other statuses, and what is no head at all.
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"{\"code\":1004}",
            b"0\r\n\r\n",
            b"",
        ];
        for bytes in written {
            assert_eq!(typed(bytes, 16384), None, "{}", String::from_utf8_lossy(bytes));
        }
    }
}
