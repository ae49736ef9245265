//! Reading a stream's history in bounded pages: forward from a point, and
//! finding where its last N (matching) messages begin.

use std::collections::VecDeque;

use herald::{Bus, Message, Pattern, ReadFrom, ReadRange, StreamInfo};

/// 100 messages: one read's page. Memory stays bounded by a page whatever the
/// stream's length, and a page of large payloads still fits a server's frame.
const PAGE: usize = 100;

/// Reads `stream` forward from `from`, matching `filter`, handing each message
/// to `each` until it has had `count` (all, when `None`) or the stream's end.
///
/// # Errors
///
/// The read's (`StreamNotFound`, …) or what `each` returns.
pub(crate) async fn read_forward(
    bus: &Bus,
    stream: &str,
    from: ReadFrom,
    filter: Option<&Pattern>,
    count: Option<u64>,
    mut each: impl FnMut(&Message) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut from = from;
    let mut left = count.unwrap_or(u64::MAX);
    while left > 0 {
        let limit = usize::try_from(left).map_or(PAGE, |left| left.min(PAGE));
        let page = bus.read(stream, range(from, filter, limit)).await?;
        for message in &page {
            each(message)?;
        }
        left -= page.len() as u64;
        // A short page is the end: a read scans to the end to fill its page.
        match page.last() {
            Some(last) if page.len() == limit => from = ReadFrom::Seq(last.seq + 1),
            _ => break,
        }
    }
    Ok(())
}

/// The seq at which the last `n` messages of the stream matching `filter`
/// begin, as of `info`; the next seq to be written when there are none (or
/// `n` is 0).
///
/// Looks back in windows that double in size from the head, keeping only the
/// seqs it may still need, so it reads about as much as it returns.
///
/// # Errors
///
/// `StreamNotFound` and other read errors.
pub(crate) async fn start_of_last(
    bus: &Bus,
    info: &StreamInfo,
    filter: Option<&Pattern>,
    n: u64,
) -> anyhow::Result<u64> {
    let stream = info.config.name.as_str();
    let (first, head) = (info.state.first_seq, info.state.last_seq);
    let mut start_of_found = head + 1;
    if n == 0 || head < first {
        return Ok(start_of_found);
    }
    let (mut found, mut end, mut width) = (0, head, n);
    loop {
        let start = end.saturating_sub(width - 1).max(first);
        let seqs = last_seqs_between(bus, stream, filter, start, end, n - found).await?;
        found += seqs.len() as u64;
        if let Some(earliest) = seqs.front() {
            start_of_found = *earliest;
        }
        if found >= n || start == first {
            return Ok(start_of_found);
        }
        end = start - 1;
        width = width.saturating_mul(2);
    }
}

/// The last `keep` seqs matching `filter` in `start..=end`, oldest first.
async fn last_seqs_between(
    bus: &Bus,
    stream: &str,
    filter: Option<&Pattern>,
    start: u64,
    end: u64,
    keep: u64,
) -> anyhow::Result<VecDeque<u64>> {
    let mut seqs = VecDeque::new();
    let mut from = start;
    loop {
        let page = bus.read(stream, range(ReadFrom::Seq(from), filter, PAGE)).await?;
        for message in page.iter().take_while(|m| m.seq <= end) {
            seqs.push_back(message.seq);
            if seqs.len() as u64 > keep {
                seqs.pop_front();
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE && last.seq < end => from = last.seq + 1,
            _ => return Ok(seqs),
        }
    }
}

fn range(from: ReadFrom, filter: Option<&Pattern>, limit: usize) -> ReadRange {
    ReadRange {
        from,
        filter: filter.into_iter().cloned().collect(),
        limit,
    }
}
