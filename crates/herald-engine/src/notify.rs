//! Wake-ups: after each commit the writer publishes every touched stream's new
//! last sequence; readers wait on it instead of polling.
//!
//! Only the head moves through these channels, never payloads: every reader
//! reads the log at its own pace, so a slow one cannot lose data.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// One watch channel per stream id, holding the stream's last sequence.
#[derive(Debug)]
pub(crate) struct Notifier {
    heads: Mutex<HashMap<u32, watch::Sender<u64>>>,
    /// Bumped after every commit that appended anywhere, for subscribers that
    /// follow many streams.
    commits: watch::Sender<u64>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            heads: Mutex::default(),
            commits: watch::channel(0).0,
        }
    }
}

impl Notifier {
    /// Announces `last_seq` as the head of stream `id`; wakes every waiter.
    pub(crate) fn publish(&self, id: u32, last_seq: u64) {
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        match heads.get(&id) {
            Some(tx) => {
                tx.send_replace(last_seq);
            }
            None => {
                heads.insert(id, watch::channel(last_seq).0);
            }
        }
    }

    /// A receiver of stream `id`'s head, starting from `current` if the stream
    /// has not been announced yet.
    pub(crate) fn subscribe(&self, id: u32, current: u64) -> watch::Receiver<u64> {
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        heads.entry(id).or_insert_with(|| watch::channel(current).0).subscribe()
    }

    /// Announces that a commit appended to some stream.
    pub(crate) fn committed(&self) {
        self.commits.send_modify(|n| *n += 1);
    }

    /// A receiver of the commit counter.
    pub(crate) fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Drops the channel of a deleted stream; its receivers see it closed.
    pub(crate) fn forget(&self, id: u32) {
        self.heads.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}
