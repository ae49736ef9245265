//! What to run: the targets (a system in one mode), the workloads, and their sizes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

/// One system in one mode: a column of the results table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Embedded Herald, streams fsynced before a publish returns (the default).
    HeraldDurable,
    /// Embedded Herald, `Durability::Relaxed` streams (flushed every 100 ms).
    HeraldRelaxed,
    /// nats-server with `sync_interval: always`: the fair match for Herald's default.
    NatsAlways,
    /// nats-server with its default sync interval (two minutes).
    NatsDefault,
    /// Herald's facade on the herald-nats backend, against a nats-server with
    /// `sync_interval: always`: what Herald's layer costs over JetStream.
    HeraldNats,
}

impl Target {
    /// Every target, in column order.
    pub const ALL: [Target; 5] = [
        Target::HeraldDurable,
        Target::NatsAlways,
        Target::HeraldRelaxed,
        Target::NatsDefault,
        Target::HeraldNats,
    ];

    /// The column heading.
    pub fn label(self) -> &'static str {
        match self {
            Target::HeraldDurable => "Herald durable",
            Target::HeraldRelaxed => "Herald relaxed",
            Target::NatsAlways => "NATS sync=always",
            Target::NatsDefault => "NATS default",
            Target::HeraldNats => "Herald on NATS",
        }
    }

    /// The NATS column a Herald column is compared with.
    pub fn peer(self) -> Option<Target> {
        match self {
            Target::HeraldDurable => Some(Target::NatsAlways),
            Target::HeraldRelaxed => Some(Target::NatsDefault),
            Target::HeraldNats => Some(Target::NatsAlways),
            Target::NatsAlways | Target::NatsDefault => None,
        }
    }

    /// The name on the command line and in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Target::HeraldDurable => "herald-durable",
            Target::HeraldRelaxed => "herald-relaxed",
            Target::NatsAlways => "nats-always",
            Target::NatsDefault => "nats-default",
            Target::HeraldNats => "herald-nats",
        }
    }
}

/// A workload of the list, (a) to (g).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// (a) One publisher, each publish acknowledged before the next.
    A,
    /// (b) 16 concurrent publishers.
    B16,
    /// (b) 64 concurrent publishers.
    B64,
    /// (c) Batches of 100 (Herald `publish_batch`; NATS: 100 pipelined publishes, then their acks).
    C100,
    /// (c) Batches of 1,000.
    C1000,
    /// (d) One durable consumer catching up on N messages, taking batches
    /// (Herald: one `ack_all` per batch; NATS: an ack per message).
    D,
    /// (d1) The same catch-up the simple way: the next message, its ack
    /// awaited, then the next.
    D1,
    /// (e) A 4-member group sharing N messages, taking batches as (d).
    E,
    /// (f) Publish-to-delivery latency at a fixed rate below saturation.
    F,
    /// (g) Publish-to-receive latency on a live subscription, 50 msgs/s.
    G50,
    /// (g) The same at 2,000 msgs/s.
    G2000,
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Workload; 11] = [
        Workload::A,
        Workload::B16,
        Workload::B64,
        Workload::C100,
        Workload::C1000,
        Workload::D,
        Workload::D1,
        Workload::E,
        Workload::F,
        Workload::G50,
        Workload::G2000,
    ];

    /// Its stream's name (and subject prefix) on both systems.
    pub fn key(self) -> &'static str {
        match self {
            Workload::A => "a",
            Workload::B16 => "b16",
            Workload::B64 => "b64",
            Workload::C100 => "c100",
            Workload::C1000 => "c1000",
            Workload::D => "d",
            Workload::D1 => "d1",
            Workload::E => "e",
            Workload::F => "f",
            Workload::G50 => "g50",
            Workload::G2000 => "g2000",
        }
    }

    /// The row heading.
    pub fn title(self) -> &'static str {
        match self {
            Workload::A => "(a) 1 publisher",
            Workload::B16 => "(b) 16 publishers",
            Workload::B64 => "(b) 64 publishers",
            Workload::C100 => "(c) batches of 100",
            Workload::C1000 => "(c) batches of 1,000",
            Workload::D => "(d) 1 consumer catching up",
            Workload::D1 => "(d1) catching up, plain loop",
            Workload::E => "(e) 4-member group",
            Workload::F => "(f) publish-to-delivery",
            Workload::G50 => "(g) live, 50 msgs/s",
            Workload::G2000 => "(g) live, 2,000 msgs/s",
        }
    }

    /// The fixed publish rate of (g), messages per second.
    pub fn live_rate(self) -> Option<u64> {
        match self {
            Workload::G50 => Some(50),
            Workload::G2000 => Some(2000),
            _ => None,
        }
    }

    /// Publishers of (a) and (b).
    pub fn publishers(self) -> usize {
        match self {
            Workload::B16 => 16,
            Workload::B64 => 64,
            _ => 1,
        }
    }

    /// Messages per call of (c).
    pub fn batch(self) -> usize {
        match self {
            Workload::C100 => 100,
            Workload::C1000 => 1000,
            _ => 1,
        }
    }
}

/// The benchmark's command line.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// A smoke run of well under a minute: small counts, one round.
    #[arg(long)]
    pub quick: bool,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 256)]
    pub payload: usize,
    /// Upper bound on messages per publishing workload (a)-(c) per round
    /// [default: 200,000 for (b), 1/40 of it for (a), 5x and 10x for (c); quick: 1/100].
    #[arg(long)]
    pub messages: Option<u64>,
    /// Time cap per publishing workload and round, in seconds [default: 8; quick: 1].
    #[arg(long)]
    pub seconds: Option<f64>,
    /// N for the consuming workloads (d), (d1) and (e) [default: 200,000; quick: 4,000].
    #[arg(long)]
    pub consume: Option<u64>,
    /// Publish rate of (f), messages per second.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Messages of (f) per round [default: 5 s at the rate; quick: 0.4 s].
    #[arg(long)]
    pub latency_messages: Option<u64>,
    /// Seconds of messages of each (g) live workload per round, at its own
    /// rate [default: 5; quick: 1].
    #[arg(long)]
    pub live_seconds: Option<f64>,
    /// Rounds; the targets take turns within each, so a slow spell of a shared
    /// disk lands on every column [default: 2; quick: 1].
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Only these targets (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub targets: Vec<Target>,
    /// Only these workloads (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workloads: Vec<Workload>,
    /// Where the table, JSON and chart go.
    #[arg(long, default_value = "target/herald-bench")]
    pub out: PathBuf,
    /// Where the data directories go (the disk measured) [default: the system temp dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// What was asked for, or all when nothing was.
fn pick<T: Clone>(given: &[T], all: &[T]) -> Vec<T> {
    if given.is_empty() { all.to_vec() } else { given.to_vec() }
}

/// The sizes of one round, resolved from the options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The options it came from.
    pub options: Options,
    /// Targets to run, in column order.
    pub targets: Vec<Target>,
    /// Workloads to run, in row order.
    pub workloads: Vec<Workload>,
    /// Rounds.
    pub rounds: u32,
    /// Time cap of a publishing workload.
    pub seconds: f64,
    /// N of (d), (d1) and (e).
    pub consume: u64,
    /// Messages of (f).
    pub latency_messages: u64,
    /// Seconds of messages of each (g).
    #[serde(default)]
    pub live_seconds: f64,
    /// Messages of (b); (a) gets 1/40, (c) 5x and 10x.
    pub messages: u64,
}

impl Plan {
    /// Resolves the defaults.
    pub fn new(options: Options) -> Plan {
        let quick = options.quick;
        let mut targets = pick(&options.targets, &Target::ALL);
        targets.sort();
        targets.dedup();
        targets.sort_by_key(|t| Target::ALL.iter().position(|a| a == t));
        let mut workloads = pick(&options.workloads, &Workload::ALL);
        workloads.sort();
        workloads.dedup();
        Plan {
            targets,
            workloads,
            rounds: options.rounds.unwrap_or(if quick { 1 } else { 2 }).max(1),
            seconds: options.seconds.unwrap_or(if quick { 1.0 } else { 8.0 }),
            consume: options.consume.unwrap_or(if quick { 4_000 } else { 200_000 }).max(1),
            latency_messages: options
                .latency_messages
                .unwrap_or(options.rate.max(1) * if quick { 2 } else { 25 } / 5)
                .max(1),
            live_seconds: options.live_seconds.unwrap_or(if quick { 1.0 } else { 5.0 }),
            messages: options.messages.unwrap_or(if quick { 2_000 } else { 200_000 }).max(40),
            options,
        }
    }

    /// The message cap of a publishing workload in one round.
    pub fn cap(&self, workload: Workload) -> u64 {
        match workload {
            Workload::A => self.messages / 40,
            Workload::C100 => self.messages * 5,
            Workload::C1000 => self.messages * 10,
            _ => self.messages,
        }
    }

    /// Messages of a (g) workload in one round: its seconds at its rate.
    pub fn live_messages(&self, workload: Workload) -> u64 {
        let rate = workload.live_rate().unwrap_or(1);
        ((rate as f64 * self.live_seconds).round() as u64).max(1)
    }

    /// The time cap of a publishing workload in one round.
    pub fn deadline(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.05))
    }
}
