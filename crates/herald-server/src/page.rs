//! Pages of messages that fit a frame: a read or a fetch asks the backend a
//! chunk at a time and stops once the page holds [`PAGE_BYTES`], however
//! large a `limit` or `max` the client asked for (docs/protocol.md, "Pages").

use std::sync::Arc;
use std::time::Duration;

use herald_core::wire::{MAX_FETCH_WAIT, PAGE_BYTES, page_size};
use herald_core::{
    Backend, ConsumerName, Delivery, Error, ErrorKind, Message, ReadFrom, ReadRange, Result, StreamName, Subject,
};
use tokio::sync::watch;

use crate::release::Owed;

/// The first chunk asked of the backend holds at most this many messages;
/// later chunks are sized by what the first ones weighed.
const FIRST_CHUNK: usize = 64;

/// Messages of a range read, from its start, until `range.limit` or a full page.
pub(crate) async fn read_range(
    backend: &dyn Backend,
    stream: &StreamName,
    range: ReadRange,
    max_payload: usize,
) -> Result<Vec<Message>> {
    let mut page = Page::new(range.limit, max_payload);
    while let Some(want) = page.want {
        let from = page.after.map_or(range.from, |seq| ReadFrom::Seq(seq + 1));
        let chunk = ReadRange {
            from,
            filter: range.filter.clone(),
            limit: want,
        };
        let chunk = backend.read_range(stream, chunk).await;
        page.add(chunk, page_size, |m| m.seq)?;
    }
    Ok(page.items)
}

/// Messages of one subject from `from_seq`, until `limit` or a full page.
pub(crate) async fn read_subject(
    backend: &dyn Backend,
    stream: &StreamName,
    subject: &Subject,
    from_seq: u64,
    limit: usize,
    max_payload: usize,
) -> Result<Vec<Message>> {
    let mut page = Page::new(limit, max_payload);
    while let Some(want) = page.want {
        let from = page.after.map_or(from_seq, |seq| seq + 1);
        let chunk = backend.read_subject(stream, subject, from, want).await;
        page.add(chunk, page_size, |m| m.seq)?;
    }
    Ok(page.items)
}

/// The longest wait a fetch may ask for, from its `wait_ms`.
pub(crate) fn fetch_wait(wait_ms: u64) -> Result<Duration> {
    let wait = Duration::from_millis(wait_ms);
    if wait > MAX_FETCH_WAIT {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "wait_ms is at most {} (a minute); to wait longer, fetch again",
                MAX_FETCH_WAIT.as_millis()
            ),
        ));
    }
    Ok(wait)
}

/// Up to `max` deliveries, waiting up to `wait` for the first, until a full
/// page. Only the first chunk waits; the rest take what is ready.
///
/// The wait ends early with `Closed` once `stop` turns true (the server is
/// stopping, or the session asking is gone). Deliveries fetched are owed to
/// the caller in the returned [`Owed`]; dropped half-way, this gives back
/// what it had leased.
pub(crate) async fn fetch(
    backend: &Arc<dyn Backend>,
    (stream, consumer, member): (&StreamName, &ConsumerName, &ConsumerName),
    max: usize,
    wait: Duration,
    max_payload: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<(Vec<Delivery>, Owed)> {
    let mut owed = Owed::new(backend, stream, consumer);
    let mut page = Page::new(max, max_payload);
    while let Some(want) = page.want {
        let chunk = if page.after.is_none() {
            tokio::select! {
                chunk = backend.fetch(stream, consumer, member, want, wait) => chunk,
                () = stopped(&mut stop) => return Err(Error::new(
                    ErrorKind::Closed,
                    "the server is stopping (or this session is closing): fetch again once reconnected",
                )),
            }
        } else {
            backend.fetch(stream, consumer, member, want, Duration::ZERO).await
        };
        if let Ok(chunk) = &chunk {
            owed.add(chunk);
        }
        page.add(chunk, |d| page_size(&d.message), |d| d.message.seq)?;
    }
    Ok((page.items, owed))
}

/// Resolves once `stop` turns true; never, if nobody can set it (a router
/// nested in an app, which owns the server's life).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A page being filled a chunk at a time: `want` says how many to ask for
/// next (none once `limit` items, a short chunk meaning nothing more to read,
/// or [`PAGE_BYTES`]), `after` the seq of the last item so far.
struct Page<T> {
    items: Vec<T>,
    limit: usize,
    bytes: usize,
    want: Option<usize>,
    after: Option<u64>,
}

impl<T> Page<T> {
    fn new(limit: usize, max_payload: usize) -> Page<T> {
        // The first chunk could be all messages of the largest payload.
        let first = (PAGE_BYTES / max_payload.max(1)).clamp(1, FIRST_CHUNK);
        Page {
            items: Vec::new(),
            limit,
            bytes: 0,
            want: Some(limit.min(first)),
            after: None,
        }
    }

    /// Takes a chunk in whole: nothing read is dropped, since fetched
    /// deliveries are leased. An error after the first chunk ends the page
    /// with what it holds (the next call meets the error again).
    fn add(&mut self, chunk: Result<Vec<T>>, size: impl Fn(&T) -> usize, seq: impl Fn(&T) -> u64) -> Result<()> {
        let asked = self.want.take().unwrap_or(0);
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(_) if !self.items.is_empty() => return Ok(()),
            Err(err) => return Err(err),
        };
        let ended = chunk.len() < asked;
        for item in chunk {
            self.bytes += size(&item);
            self.after = Some(seq(&item));
            self.items.push(item);
        }
        let left = self.limit.saturating_sub(self.items.len());
        if !ended && left > 0 && self.bytes < PAGE_BYTES {
            // Room left in the page, in messages as heavy as the ones so far.
            let average = (self.bytes / self.items.len()).max(1);
            self.want = Some(((PAGE_BYTES - self.bytes) / average).clamp(1, left));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use herald_core::{Error, ErrorKind};

    use super::*;

    /// Fills a page from a source of `total` items of `each` bytes; returns
    /// the page and the chunk sizes asked for.
    fn run(total: u64, each: usize, limit: usize, max_payload: usize) -> (Vec<u64>, Vec<usize>) {
        let mut page = Page::new(limit, max_payload);
        let mut asked = Vec::new();
        while let Some(want) = page.want {
            asked.push(want);
            let start = page.after.map_or(1, |s| s + 1);
            page.add(Ok((start..=total).take(want).collect()), |_| each, |s| *s)
                .unwrap();
        }
        (page.items, asked)
    }

    #[test]
    fn small_messages_fill_the_limit_in_two_chunks() {
        let (page, asked) = run(10_000, 100, 5_000, 1024 * 1024);
        assert_eq!(page, (1..=5_000).collect::<Vec<_>>());
        assert_eq!(asked, vec![4, 4_996]);
    }

    #[test]
    fn large_messages_stop_at_the_page_size() {
        let mib = 1024 * 1024;
        let (page, _) = run(100, mib, 100, mib);
        assert_eq!(page, (1..=4).collect::<Vec<_>>());
        assert!(page.len() * mib >= PAGE_BYTES, "a cut page reaches PAGE_BYTES");
    }

    #[test]
    fn the_end_of_the_stream_ends_the_page_below_its_size() {
        let (page, asked) = run(10, 100, 1_000, 1024);
        assert_eq!(page.len(), 10);
        assert_eq!(asked, vec![64]);
    }

    #[test]
    fn an_error_after_the_first_chunk_returns_what_was_read() {
        let gone = || Error::new(ErrorKind::Storage, "gone");
        let mut page = Page::new(100, 1024 * 1024);
        page.add(Ok(vec![1_u64, 2, 3, 4]), |_| 10, |s| *s).unwrap();
        assert_eq!(page.want, Some(96));
        page.add(Err(gone()), |_| 10, |s| *s).unwrap();
        assert_eq!((page.items, page.want), (vec![1, 2, 3, 4], None));

        let mut first = Page::<u64>::new(100, 1024);
        assert!(
            first.add(Err(gone()), |_| 10, |s| *s).is_err(),
            "an error before anything was read is the answer"
        );
    }
}
