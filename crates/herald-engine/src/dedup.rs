//! The duplicate window: message ids seen recently, per stream, in memory.
//!
//! Ids are kept in memory only; on open the window is rebuilt from the tail of
//! each stream (messages carry a flag saying whether their id was the
//! publisher's), so a restart keeps dedup working for retried publishes.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use herald_core::Timestamp;

/// The ids a stream has seen inside its window, with the seq each got.
#[derive(Debug, Default)]
pub(crate) struct DedupWindow {
    ids: HashMap<String, u64>,
    /// Insertion order, for pruning: (time seen, id).
    order: VecDeque<(Timestamp, String)>,
}

impl DedupWindow {
    /// Forgets ids seen before `now - window`.
    pub(crate) fn prune(&mut self, now: Timestamp, window: Duration) {
        let cutoff = now.saturating_sub(window);
        while let Some((time, _)) = self.order.front() {
            if *time >= cutoff {
                break;
            }
            let (_, id) = self.order.pop_front().expect("front exists");
            self.ids.remove(&id);
        }
    }

    /// The seq of `id` if it was seen inside the window.
    pub(crate) fn get(&self, id: &str) -> Option<u64> {
        self.ids.get(id).copied()
    }

    /// Remembers `id` as stored at `seq` at `time`.
    pub(crate) fn insert(&mut self, id: &str, seq: u64, time: Timestamp) {
        if self.ids.insert(id.to_string(), seq).is_none() {
            self.order.push_back((time, id.to_string()));
        }
    }

    /// How many ids are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_forgotten_after_the_window() {
        let mut w = DedupWindow::default();
        let t0 = Timestamp(1_000_000_000_000);
        w.insert("a", 1, t0);
        w.insert("b", 2, t0.saturating_add(Duration::from_secs(5)));
        w.prune(t0.saturating_add(Duration::from_secs(10)), Duration::from_secs(8));
        assert_eq!(w.get("a"), None);
        assert_eq!(w.get("b"), Some(2));
        assert_eq!(w.len(), 1);
    }
}
