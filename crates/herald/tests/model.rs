//! Model-based property test of the embedded store: random publishes, purges,
//! limit changes and per-subject compaction against a plain in-memory model,
//! TTL expiry (deletions from the middle) on streams with and without the
//! per-subject history index. After every
//! operation the stream, each subject's last message and history, and the
//! stream info must match the model exactly.

// Test code: an unwrap that fails is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use std::time::Duration;

use herald::{Bus, Engine, ManualClock, Pattern, Purge, ReadRange, StreamConfig, Subject};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Publish(u8),
    Batch(Vec<u8>),
    PurgeSubject(u8, Option<u8>),
    PurgeBefore(u8),
    MaxMsgs(u8),
    /// Publish with a TTL of this many ticks (deletes from the middle later).
    PublishTtl(u8, u8),
    /// One second passes and retention runs.
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..3).prop_map(Op::Publish),
        2 => prop::collection::vec(0u8..3, 1..6).prop_map(Op::Batch),
        1 => (0u8..3, prop::option::of(0u8..40)).prop_map(|(s, b)| Op::PurgeSubject(s, b)),
        1 => (0u8..40).prop_map(Op::PurgeBefore),
        1 => (0u8..12).prop_map(Op::MaxMsgs),
        5 => (0u8..3, 1u8..4).prop_map(|(s, t)| Op::PublishTtl(s, t)),
        3 => Just(Op::Tick),
    ]
}

/// The model: seq → subject index of every message held, the tick each
/// expires at (if any), the last seq and the current tick.
#[derive(Default)]
struct Model {
    held: BTreeMap<u64, u8>,
    expires: BTreeMap<u64, u64>,
    last_seq: u64,
    tick: u64,
}

impl Model {
    fn append(&mut self, subject: u8, max_msgs: Option<u64>, per_subject: Option<u64>) {
        self.last_seq += 1;
        self.held.insert(self.last_seq, subject);
        if let Some(max) = per_subject {
            let of: Vec<u64> = self
                .held
                .iter()
                .filter(|(_, s)| **s == subject)
                .map(|(q, _)| *q)
                .collect();
            for q in &of[..of.len().saturating_sub(max as usize)] {
                self.held.remove(q);
            }
        }
        self.trim(max_msgs);
    }

    fn trim(&mut self, max_msgs: Option<u64>) {
        if let Some(max) = max_msgs {
            while self.held.len() as u64 > max {
                let first = *self.held.keys().next().unwrap();
                self.held.remove(&first);
            }
        }
    }
}

fn subject(s: u8) -> String {
    format!("m.s{s}")
}

async fn run(ops: Vec<Op>, indexed: bool, per_subject: Option<u64>) {
    let clock = ManualClock::starting_now();
    let bus = Bus::from_engine(Engine::builder().memory().clock(clock.clone()).open().unwrap());
    let mut config = StreamConfig::new("m").unwrap().subject_index(indexed);
    if let Some(n) = per_subject {
        config = config.max_msgs_per_subject(n);
    }
    bus.create_stream(config.clone()).await.unwrap();
    let mut model = Model::default();
    let mut max_msgs = None;
    for op in ops {
        match op {
            Op::Publish(s) => {
                let ack = bus.publish(subject(s), "x").await.unwrap();
                model.append(s, max_msgs, per_subject);
                assert_eq!(ack.seq, model.last_seq);
            }
            Op::Batch(subjects) => {
                let batch = subjects
                    .iter()
                    .map(|s| herald::OutgoingMessage::new(Subject::new(subject(*s)).unwrap(), "b"))
                    .collect();
                bus.publish_batch(batch).await.unwrap();
                for s in subjects {
                    model.append(s, max_msgs, per_subject);
                }
            }
            Op::PurgeSubject(s, before) => {
                let mut purge = Purge::subject(Subject::new(subject(s)).unwrap());
                if let Some(b) = before {
                    purge = purge.before(u64::from(b));
                }
                let n = bus.purge_stream("m", purge).await.unwrap();
                let gone: Vec<u64> = model
                    .held
                    .iter()
                    .filter(|(q, x)| **x == s && before.is_none_or(|b| **q < u64::from(b)))
                    .map(|(q, _)| *q)
                    .collect();
                assert_eq!(n, gone.len() as u64);
                for q in gone {
                    model.held.remove(&q);
                }
            }
            Op::PurgeBefore(b) => {
                let n = bus.purge_stream("m", Purge::all().before(u64::from(b))).await.unwrap();
                let gone: Vec<u64> = model.held.keys().copied().filter(|q| *q < u64::from(b)).collect();
                assert_eq!(n, gone.len() as u64);
                for q in gone {
                    model.held.remove(&q);
                }
            }
            Op::PublishTtl(s, ticks) => {
                let msg = herald::OutgoingMessage::new(Subject::new(subject(s)).unwrap(), "t")
                    .ttl(Duration::from_secs(u64::from(ticks)));
                bus.publish_message(msg).await.unwrap();
                model.append(s, max_msgs, per_subject);
                model.expires.insert(model.last_seq, model.tick + u64::from(ticks));
            }
            Op::Tick => {
                clock.advance(Duration::from_secs(1));
                bus.enforce_retention().await.unwrap();
                model.tick += 1;
                let due: Vec<u64> = model
                    .expires
                    .iter()
                    .filter(|(_, t)| **t <= model.tick)
                    .map(|(q, _)| *q)
                    .collect();
                for q in due {
                    model.expires.remove(&q);
                    model.held.remove(&q);
                }
            }
            Op::MaxMsgs(n) => {
                max_msgs = (n > 0).then_some(u64::from(n));
                bus.update_stream(config.clone().max_msgs(u64::from(n))).await.unwrap();
                model.trim(max_msgs);
            }
        }
        check(&bus, &model, indexed || per_subject.is_some()).await;
    }
}

async fn check(bus: &Bus, model: &Model, indexed: bool) {
    let held: Vec<u64> = bus
        .read("m", ReadRange::from_seq(1, 10_000))
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(held, model.held.keys().copied().collect::<Vec<_>>());
    let info = bus.stream_info("m").await.unwrap().state;
    let mut distinct: Vec<u8> = model.held.values().copied().collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(info.messages, model.held.len() as u64);
    assert_eq!(info.subjects, distinct.len() as u64);
    assert_eq!(info.last_seq, model.last_seq);
    assert_eq!(
        info.first_seq,
        model.held.keys().next().copied().unwrap_or(model.last_seq + 1)
    );
    for s in 0..4u8 {
        let of: Vec<u64> = model.held.iter().filter(|(_, x)| **x == s).map(|(q, _)| *q).collect();
        match bus.last("m", subject(s)).await {
            Ok(m) => assert_eq!(Some(m.seq), of.last().copied(), "last of s{s}"),
            Err(_) => assert!(of.is_empty(), "s{s} has {of:?} but no last"),
        }
        let filtered = ReadRange::from_seq(1, 10_000).filter(Pattern::new(subject(s)).unwrap());
        let by_filter: Vec<u64> = bus.read("m", filtered).await.unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(by_filter, of);
        if indexed {
            let history: Vec<u64> = bus
                .read_subject("m", subject(s), 1, 10_000)
                .await
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect();
            assert_eq!(history, of, "history of s{s}");
            if let Some(mid) = of.get(of.len() / 2) {
                let tail: Vec<u64> = bus
                    .read_subject("m", subject(s), *mid, 2)
                    .await
                    .unwrap()
                    .iter()
                    .map(|m| m.seq)
                    .collect();
                let expected: Vec<u64> = of.iter().copied().filter(|q| q >= mid).take(2).collect();
                assert_eq!(tail, expected, "history of s{s} from {mid}");
            }
        }
    }
}

fn block_on(f: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn a_stream_without_the_subject_index_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        block_on(run(ops, false, None));
    }

    #[test]
    fn a_stream_with_the_subject_index_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        block_on(run(ops, true, None));
    }

    #[test]
    fn per_subject_compaction_matches_the_model(ops in prop::collection::vec(op(), 1..60), keep in 1u64..4) {
        block_on(run(ops, false, Some(keep)));
    }
}
