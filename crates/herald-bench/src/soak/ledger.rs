//! What the server acknowledged, and the check that it still holds it.
//!
//! Every publish the server acknowledged is recorded by (stream, seq) with
//! what identifies its message: the publisher and its counter (the message id
//! is `p<publisher>-<n>`) and the payload's length (the payload is drawn from
//! a generator seeded by the same two numbers, so it is not kept). After each
//! restart every recorded seq is read back and compared: a message that is
//! missing, holds another id, or whose payload differs is acked-lost.
//!
//! KV keys are recorded the same way: each write stores a counter that only
//! grows, so a key that reads back below the highest acknowledged counter
//! lost an acknowledged write.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;

use bytes::Bytes;
use herald::{Bus, ErrorKind, Message, ReadRange};

use crate::BenchResult;

/// Messages read back per call while checking.
const CHECK_CHUNK: usize = 2_000;

/// One acknowledged message, without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// The publishing task.
    pub publisher: u16,
    /// Its counter in that task.
    pub n: u64,
    /// Payload bytes.
    pub len: u32,
}

impl Acked {
    /// Its message id.
    pub fn id(&self) -> String {
        format!("p{}-{}", self.publisher, self.n)
    }

    /// Its payload: `len` bytes drawn from a generator seeded by the id's
    /// numbers, so the checker can draw it again.
    pub fn payload(&self) -> Bytes {
        let mut rng = fastrand::Rng::with_seed((u64::from(self.publisher) << 48) ^ self.n ^ 0x5eed_5eed);
        let mut bytes = vec![0u8; self.len as usize];
        rng.fill(&mut bytes);
        Bytes::from(bytes)
    }
}

/// What is wrong with an acknowledged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No message at its seq.
    Missing,
    /// Another message at its seq (that one's id).
    OtherId(String),
    /// Its id at its seq, with another payload.
    Corrupt,
    /// A KV key reads back below the counter an acknowledged write stored
    /// (what it holds, or `None` for no value).
    KvBehind(Option<u64>),
}

/// An acknowledged write the server no longer holds as acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The stream (or KV key).
    pub place: String,
    /// Its seq (or the acknowledged counter for a KV key).
    pub seq: u64,
    /// The message id (or the KV key).
    pub id: String,
    /// What is wrong.
    pub fault: Fault,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fault {
            Fault::Missing => write!(f, "{} seq {} ({}) is missing", self.place, self.seq, self.id),
            Fault::OtherId(other) => write!(f, "{} seq {} ({}) holds {other} instead", self.place, self.seq, self.id),
            Fault::Corrupt => write!(f, "{} seq {} ({}) has another payload", self.place, self.seq, self.id),
            Fault::KvBehind(held) => write!(
                f,
                "KV key {} holds {} below the acknowledged {}",
                self.id,
                held.map_or("nothing".to_string(), |v| v.to_string()),
                self.seq
            ),
        }
    }
}

/// Every acknowledged publish and KV write so far. Shared by the load tasks.
#[derive(Debug, Default)]
pub struct Ledger {
    streams: Mutex<BTreeMap<String, BTreeMap<u64, Acked>>>,
    kv: Mutex<HashMap<String, u64>>,
}

/// Outcome of one check of everything acknowledged.
#[derive(Debug, Default)]
pub struct Checked {
    /// Acknowledged messages and KV keys compared.
    pub compared: u64,
    /// What failed the comparison.
    pub losses: Vec<Loss>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ledger {
    /// Records that `stream` acknowledged `acked` at `seq`; false if another
    /// message was acknowledged at that seq before (two acks, one seq).
    pub fn record(&self, stream: &str, seq: u64, acked: Acked) -> bool {
        let mut streams = lock(&self.streams);
        let entries = streams.entry(stream.to_string()).or_default();
        match entries.insert(seq, acked) {
            Some(before) if before != acked => {
                entries.insert(seq, before);
                false
            }
            _ => true,
        }
    }

    /// Records that a KV write storing counter `value` in `key` was acknowledged.
    pub fn record_kv(&self, key: &str, value: u64) {
        let mut kv = lock(&self.kv);
        let highest = kv.entry(key.to_string()).or_insert(0);
        *highest = (*highest).max(value);
    }

    /// The highest acknowledged seq of a stream.
    pub fn head(&self, stream: &str) -> Option<u64> {
        lock(&self.streams).get(stream)?.last_key_value().map(|(seq, _)| *seq)
    }

    /// What was acknowledged at `seq` of `stream`.
    pub fn get(&self, stream: &str, seq: u64) -> Option<Acked> {
        lock(&self.streams).get(stream)?.get(&seq).copied()
    }

    /// Acknowledged publishes so far.
    pub fn len(&self) -> u64 {
        lock(&self.streams).values().map(|s| s.len() as u64).sum()
    }

    /// Whether nothing was acknowledged yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries of `stream` from `from` to `to`, both included.
    fn range(&self, stream: &str, from: u64, to: u64) -> Vec<(u64, Acked)> {
        lock(&self.streams)
            .get(stream)
            .map(|s| s.range(from..=to).map(|(seq, a)| (*seq, *a)).collect())
            .unwrap_or_default()
    }

    /// Reads back through `bus` what `scope` asks of everything acknowledged
    /// before the call, and every KV key, and compares them. Publishes
    /// acknowledged meanwhile wait for the next check.
    ///
    /// # Errors
    ///
    /// A read failed (the check could not be made, which is not a loss).
    pub async fn check(&self, bus: &Bus, scope: Scope<'_>) -> BenchResult<Checked> {
        let heads: Vec<(String, u64)> = lock(&self.streams)
            .iter()
            .filter_map(|(stream, s)| Some((stream.clone(), *s.last_key_value()?.0)))
            .collect();
        let mut outcome = Checked::default();
        match scope {
            Scope::Everything => {
                for (stream, head) in heads {
                    self.check_range(bus, &stream, 1, head, &mut outcome).await?;
                }
            }
            Scope::Rolling(progress) => {
                for (stream, head) in heads {
                    let (checked, cursor) = progress.0.get(&stream).copied().unwrap_or((0, 1));
                    self.check_range(bus, &stream, checked + 1, head, &mut outcome).await?;
                    // Then a slice of what earlier checks covered, where the last
                    // slice ended, at least as long as what was new.
                    let mut next = cursor;
                    if checked > 0 {
                        let slice = (head - checked).max(MIN_ROLLING_SLICE);
                        let to = (cursor + slice - 1).min(checked);
                        self.check_range(bus, &stream, cursor, to, &mut outcome).await?;
                        next = if to >= checked { 1 } else { to + 1 };
                    }
                    progress.0.insert(stream, (head, next));
                }
            }
        }
        let kv: Vec<(String, u64)> = lock(&self.kv).iter().map(|(k, v)| (k.clone(), *v)).collect();
        if !kv.is_empty() {
            let bucket = bus.kv(super::load::KV_BUCKET).open().await?;
            for (key, acked) in kv {
                let held = match bucket.get(&key).await {
                    Ok(entry) => entry.and_then(|e| std::str::from_utf8(&e.value).ok()?.parse::<u64>().ok()),
                    Err(err) if err.kind() == ErrorKind::MessageNotFound => None,
                    Err(err) => return Err(err.into()),
                };
                outcome.compared += 1;
                if held.is_none_or(|v| v < acked) {
                    outcome.losses.push(Loss {
                        place: super::load::KV_BUCKET.to_string(),
                        seq: acked,
                        id: key,
                        fault: Fault::KvBehind(held),
                    });
                }
            }
        }
        Ok(outcome)
    }

    /// Reads seqs `from..=to` of `stream` back and compares what was
    /// acknowledged among them.
    async fn check_range(
        &self,
        bus: &Bus,
        stream: &str,
        mut from: u64,
        to: u64,
        outcome: &mut Checked,
    ) -> BenchResult<()> {
        while from <= to {
            let messages = bus.read(stream, ReadRange::from_seq(from, CHECK_CHUNK)).await?;
            // A short read covers everything up to `to`; a full one up to its
            // last message.
            let covered = match messages.last() {
                Some(last) if messages.len() == CHECK_CHUNK => last.seq.min(to),
                _ => to,
            };
            let expected = self.range(stream, from, covered);
            outcome.compared += expected.len() as u64;
            outcome.losses.extend(compare(stream, &expected, &messages));
            from = covered + 1;
        }
        Ok(())
    }
}

/// The shortest slice of earlier checked seqs a rolling check reads again.
const MIN_ROLLING_SLICE: u64 = 20_000;

/// What a check reads back.
#[derive(Debug)]
pub enum Scope<'a> {
    /// Every acknowledged message.
    Everything,
    /// What is new since the last rolling check, in full, and a slice of
    /// what came before (at least as long, where the last slice ended,
    /// wrapping around): a check whose cost does not grow with the run,
    /// which reads every message again now and then.
    Rolling(&'a mut Progress),
}

/// Where rolling checks are: per stream, the head the last one checked up
/// to and where its next slice of older seqs starts.
#[derive(Debug, Default)]
pub struct Progress(HashMap<String, (u64, u64)>);

/// Compares acknowledged entries (by seq) with the messages a read returned
/// for the same seqs; what does not match.
pub fn compare(stream: &str, expected: &[(u64, Acked)], found: &[Message]) -> Vec<Loss> {
    let by_seq: HashMap<u64, &Message> = found.iter().map(|m| (m.seq, m)).collect();
    let mut losses = Vec::new();
    for (seq, acked) in expected {
        let id = acked.id();
        let fault = match by_seq.get(seq) {
            None => Fault::Missing,
            Some(m) if m.id != id => Fault::OtherId(m.id.clone()),
            Some(m) if m.payload != acked.payload() => Fault::Corrupt,
            Some(_) => continue,
        };
        losses.push(Loss {
            place: stream.to_string(),
            seq: *seq,
            id,
            fault,
        });
    }
    losses
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use herald::{OutgoingMessage, Subject};

    use super::*;

    fn acked(n: u64) -> Acked {
        Acked {
            publisher: 3,
            n,
            len: 40 + n as u32,
        }
    }

    /// The messages a memory bus stores for `entries`, published in order.
    async fn stored(entries: &[Acked]) -> (Bus, Vec<Message>) {
        let bus = Bus::memory().unwrap();
        for a in entries {
            let message = OutgoingMessage::new(Subject::new("orders.1").unwrap(), a.payload()).id(a.id());
            bus.publish_message(message).await.unwrap();
        }
        let messages = bus.read("orders", ReadRange::from_seq(1, 100)).await.unwrap();
        (bus, messages)
    }

    #[tokio::test]
    async fn intact_messages_pass() {
        let entries = [acked(1), acked(2), acked(3)];
        let (_, messages) = stored(&entries).await;
        let expected: Vec<(u64, Acked)> = (1..).zip(entries).collect();
        assert_eq!(compare("orders", &expected, &messages), vec![]);
    }

    #[tokio::test]
    async fn a_missing_acknowledged_message_is_a_loss() {
        let entries = [acked(1), acked(2), acked(3)];
        let (_, mut messages) = stored(&entries).await;
        messages.remove(1);
        let expected: Vec<(u64, Acked)> = (1..).zip(entries).collect();
        let losses = compare("orders", &expected, &messages);
        assert_eq!(losses.len(), 1);
        assert_eq!(losses[0].seq, 2);
        assert_eq!(losses[0].fault, Fault::Missing);
        assert_eq!(losses[0].to_string(), "orders seq 2 (p3-2) is missing");
    }

    #[tokio::test]
    async fn another_id_or_payload_at_an_acknowledged_seq_is_a_loss() {
        let entries = [acked(1), acked(2)];
        let (_, mut messages) = stored(&entries).await;
        messages[0].id = "p9-9".to_string();
        messages[1].payload = Bytes::from_static(b"torn");
        let expected: Vec<(u64, Acked)> = (1..).zip(entries).collect();
        let faults: Vec<Fault> = compare("orders", &expected, &messages)
            .into_iter()
            .map(|l| l.fault)
            .collect();
        assert_eq!(faults, vec![Fault::OtherId("p9-9".to_string()), Fault::Corrupt]);
    }

    #[tokio::test]
    async fn the_check_reads_back_every_acknowledged_publish_and_kv_write() {
        let entries = [acked(1), acked(2), acked(3)];
        let (bus, _) = stored(&entries).await;
        let ledger = Ledger::default();
        for (seq, a) in (1..).zip(entries) {
            assert!(ledger.record("orders", seq, a));
        }
        let kv = bus.kv(super::super::load::KV_BUCKET).open().await.unwrap();
        kv.put("own-1", "5").await.unwrap();
        ledger.record_kv("own-1", 5);
        let checked = ledger.check(&bus, Scope::Everything).await.unwrap();
        assert_eq!((checked.compared, checked.losses.len()), (4, 0));
        let mut progress = Progress::default();
        let checked = ledger.check(&bus, Scope::Rolling(&mut progress)).await.unwrap();
        assert_eq!((checked.compared, checked.losses.len()), (4, 0));

        // An acknowledged seq the stream never got, and a key that went back:
        // the rolling check reads the new seq and every key.
        assert!(ledger.record("orders", 4, acked(4)));
        ledger.record_kv("own-1", 6);
        let checked = ledger.check(&bus, Scope::Rolling(&mut progress)).await.unwrap();
        let faults: Vec<Fault> = checked.losses.into_iter().map(|l| l.fault).collect();
        assert_eq!(faults, vec![Fault::Missing, Fault::KvBehind(Some(5))]);
        assert_eq!(
            checked.compared,
            1 + 3 + 1,
            "the new seq, the older ones again, the key"
        );
        let checked = ledger.check(&bus, Scope::Everything).await.unwrap();
        assert_eq!(checked.losses.len(), 2);
    }

    #[test]
    fn a_second_ack_for_one_seq_is_refused() {
        let ledger = Ledger::default();
        assert!(ledger.record("orders", 1, acked(1)));
        assert!(
            ledger.record("orders", 1, acked(1)),
            "the same message again (a duplicate) is fine"
        );
        assert!(!ledger.record("orders", 1, acked(2)));
        assert_eq!(ledger.get("orders", 1), Some(acked(1)));
        assert_eq!(ledger.head("orders"), Some(1));
    }
}
