//! What this process handed out of one consumer: a lease per delivery, until
//! it is settled or runs out, then a record kept a while for late settles.
//!
//! Every operation costs O(log n) in what is held now, never in what was
//! settled before: leases run out from a deadline-ordered heap and records
//! are forgotten from a time-ordered one, both looked at only from the front.
//! A settled or extended lease leaves its old heap entry behind; an entry is
//! checked against its record when it reaches the front.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use herald_core::ConsumerName;

/// How long after its lease ran out a record is kept for a late settle.
const GRACE: Duration = Duration::from_secs(120);

/// One delivery handed to a member.
pub(crate) struct Lease {
    /// The delivery count Herald reports for it.
    pub(crate) deliveries: u32,
    /// JetStream's ack subject for it (emptied once settled).
    pub(crate) reply: async_nats::Subject,
    pub(crate) member: ConsumerName,
    pub(crate) until: Instant,
    pub(crate) settled: Option<Settled>,
}

/// How a lease was settled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// By an ack: the holder's repeated ack is done again.
    Acked,
    /// By a nak or a term: nothing settles it again.
    Other,
}

#[derive(Default)]
pub(crate) struct Leases {
    records: HashMap<u64, Lease>,
    /// Deadlines of leases, soonest first (entries of leases settled or
    /// extended since are stale).
    running: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Unsettled leases not yet run out.
    held: usize,
    /// When a record may be forgotten; a record extended since is put back.
    forget: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Per seq, deliveries JetStream counted that reached no member of this
    /// process (prefetched, then handed back unseen): not Herald deliveries.
    unseen: HashMap<u64, u32>,
    /// The highest seq handed to a member of this process.
    highest: u64,
}

impl Leases {
    /// Lets run-out leases go and forgets records past their grace.
    pub(crate) fn tick(&mut self, now: Instant) {
        while let Some(&Reverse((until, seq))) = self.running.peek() {
            if until > now {
                break;
            }
            self.running.pop();
            if self
                .records
                .get(&seq)
                .is_some_and(|r| r.settled.is_none() && r.until == until)
            {
                self.held -= 1;
            }
        }
        while let Some(&Reverse((at, seq))) = self.forget.peek() {
            if at > now {
                break;
            }
            self.forget.pop();
            if let Some(record) = self.records.get(&seq) {
                let expires = record.until + GRACE;
                if expires <= now {
                    if record.settled.is_none() && record.until > now {
                        self.held -= 1;
                    }
                    self.records.remove(&seq);
                } else {
                    self.forget.push(Reverse((expires, seq)));
                }
            }
        }
    }

    /// Whether the record's lease is unsettled and not yet run out.
    fn running(record: &Lease, now: Instant) -> bool {
        record.settled.is_none() && record.until > now
    }

    /// Leases a delivery of `seq`, replacing any earlier record of it.
    pub(crate) fn lease(&mut self, seq: u64, lease: Lease, now: Instant) {
        // Run-out leases are let go first, so `held` counts what it should.
        self.tick(now);
        if let Some(old) = self.records.get(&seq)
            && Self::running(old, now)
        {
            self.held -= 1;
        }
        if lease.until > now {
            self.held += 1;
        }
        self.running.push(Reverse((lease.until, seq)));
        self.forget.push(Reverse((lease.until + GRACE, seq)));
        self.records.insert(seq, lease);
        self.highest = self.highest.max(seq);
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Lease> {
        self.records.get(&seq)
    }

    /// Marks the lease of `seq` settled.
    pub(crate) fn settle(&mut self, seq: u64, how: Settled, now: Instant) {
        self.tick(now);
        if let Some(record) = self.records.get_mut(&seq)
            && record.settled.is_none()
        {
            if record.until > now {
                self.held -= 1;
            }
            record.settled = Some(how);
            record.until = now;
            record.reply = async_nats::Subject::from_static("");
        }
        if how == Settled::Acked {
            self.unseen.remove(&seq);
        }
    }

    /// `seq` is settled for good (termed): its unseen deliveries no longer matter.
    pub(crate) fn done(&mut self, seq: u64) {
        self.unseen.remove(&seq);
    }

    /// Extends an unsettled lease to `until`.
    pub(crate) fn extend(&mut self, seq: u64, until: Instant, now: Instant) {
        self.tick(now);
        if let Some(record) = self.records.get_mut(&seq)
            && record.settled.is_none()
        {
            let was = record.until > now;
            record.until = until;
            match (was, until > now) {
                (false, true) => self.held += 1,
                (true, false) => self.held -= 1,
                _ => {}
            }
            self.running.push(Reverse((until, seq)));
        }
    }

    /// Leases held now (unsettled, not run out).
    pub(crate) fn in_flight(&mut self, now: Instant) -> usize {
        self.tick(now);
        self.held
    }

    /// Leases held now, per member (a walk of the deadlines; for info only).
    pub(crate) fn per_member(&mut self, now: Instant) -> HashMap<ConsumerName, u64> {
        self.tick(now);
        let mut held: HashMap<ConsumerName, u64> = HashMap::new();
        for Reverse((until, seq)) in &self.running {
            if let Some(record) = self.records.get(seq)
                && record.until == *until
                && Self::running(record, now)
            {
                *held.entry(record.member.clone()).or_default() += 1;
            }
        }
        held
    }

    /// A delivery of `seq` went back to JetStream without reaching a member.
    pub(crate) fn handed_back_unseen(&mut self, seq: u64) {
        *self.unseen.entry(seq).or_default() += 1;
    }

    /// JetStream's delivery count of `seq` less the deliveries no member saw.
    pub(crate) fn herald_deliveries(&self, seq: u64, jetstream: u32) -> u32 {
        let unseen = self.unseen.get(&seq).copied().unwrap_or(0);
        jetstream.saturating_sub(unseen).max(1)
    }

    /// JetStream's delivery counts started again (a reset): nothing unseen is left to subtract.
    pub(crate) fn forget_unseen(&mut self) {
        self.unseen.clear();
    }

    /// The highest seq handed to a member of this process.
    pub(crate) fn highest(&self) -> u64 {
        self.highest
    }

    /// Forgets everything (the consumer was reset).
    pub(crate) fn clear(&mut self) {
        *self = Leases::default();
    }

    #[cfg(test)]
    fn records(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(member: &str, until: Instant) -> Lease {
        Lease {
            deliveries: 1,
            reply: async_nats::Subject::from_static("$JS.ACK.s.c.1.1.1.1.0"),
            member: ConsumerName::new(member).unwrap(),
            until,
            settled: None,
        }
    }

    #[test]
    fn a_lease_is_held_until_it_runs_out_or_is_settled() {
        let t0 = Instant::now();
        let mut leases = Leases::default();
        leases.lease(1, lease("a", t0 + Duration::from_secs(10)), t0);
        leases.lease(2, lease("b", t0 + Duration::from_secs(20)), t0);
        assert_eq!(leases.in_flight(t0), 2);
        leases.settle(2, Settled::Acked, t0);
        assert_eq!(leases.in_flight(t0), 1);
        assert_eq!(leases.in_flight(t0 + Duration::from_secs(10)), 0);
        // The records stay for late settles.
        assert!(leases.get(1).is_some() && leases.get(2).is_some());
    }

    #[test]
    fn an_extended_lease_runs_to_its_new_deadline_and_is_kept_for_its_grace() {
        let t0 = Instant::now();
        let mut leases = Leases::default();
        leases.lease(1, lease("a", t0 + Duration::from_secs(10)), t0);
        leases.extend(1, t0 + Duration::from_secs(300), t0);
        assert_eq!(leases.in_flight(t0 + Duration::from_secs(200)), 1);
        // Past the first deadline's grace, but not the extended one's.
        leases.tick(t0 + Duration::from_secs(10) + GRACE);
        assert!(leases.get(1).is_some());
        leases.tick(t0 + Duration::from_secs(300) + GRACE);
        assert!(leases.get(1).is_none());
    }

    #[test]
    fn settled_records_are_forgotten_so_the_table_does_not_grow_with_history() {
        let t0 = Instant::now();
        let mut leases = Leases::default();
        for seq in 1..=10_000u64 {
            let now = t0 + Duration::from_millis(seq);
            leases.lease(seq, lease("a", now + Duration::from_secs(30)), now);
            leases.settle(seq, Settled::Acked, now);
            leases.tick(now);
        }
        assert_eq!(leases.records(), 10_000);
        leases.tick(t0 + Duration::from_secs(40) + GRACE);
        assert_eq!(leases.records(), 0);
        assert!(leases.forget.is_empty() && leases.running.is_empty());
    }

    #[test]
    fn a_redelivery_replaces_the_record_and_counts_only_what_members_saw() {
        let t0 = Instant::now();
        let mut leases = Leases::default();
        leases.lease(7, lease("a", t0 + Duration::from_secs(10)), t0);
        leases.handed_back_unseen(7);
        let mut again = lease("b", t0 + Duration::from_secs(30));
        again.deliveries = 2;
        leases.lease(7, again, t0 + Duration::from_secs(11));
        assert_eq!(leases.in_flight(t0 + Duration::from_secs(15)), 1);
        assert_eq!(
            leases.per_member(t0 + Duration::from_secs(15))[&ConsumerName::new("b").unwrap()],
            1
        );
        assert_eq!(leases.herald_deliveries(7, 3), 2);
        leases.settle(7, Settled::Acked, t0 + Duration::from_secs(16));
        assert_eq!(leases.herald_deliveries(7, 3), 3);
        assert_eq!(leases.in_flight(t0 + Duration::from_secs(16)), 0);
    }

    #[test]
    fn the_count_held_stays_exact_through_run_out_replaced_and_extended_leases() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut leases = Leases::default();
        leases.lease(1, lease("a", at(10)), t0);
        leases.lease(2, lease("a", at(10)), t0);
        // Seq 2 was extended twice; seq 1 ran out unnoticed, then came again.
        leases.extend(2, at(50), at(5));
        leases.extend(2, at(60), at(6));
        leases.lease(1, lease("b", at(40)), at(20));
        assert_eq!(leases.in_flight(at(30)), 2);
        leases.settle(2, Settled::Other, at(31));
        assert_eq!(leases.in_flight(at(31)), 1);
        assert_eq!(leases.in_flight(at(45)), 0);
        assert_eq!(leases.in_flight(at(70)), 0);
    }
}
