//! `herald consumers`: list, inspect, create, delete and reset durable consumers.

use std::num::NonZeroU32;
use std::time::Duration;

use herald::{Bus, ConsumerInfo, DeadLetter, Pattern, ReadFrom, StartPolicy};

use crate::client::ClientArgs;
use crate::output;
use crate::table::{Align, Table, details};
use crate::units::{When, format_duration, format_time, parse_duration, parse_when};

#[derive(Debug, clap::Args)]
pub(crate) struct Consumers {
    #[command(subcommand)]
    command: ConsumersCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum ConsumersCommand {
    /// Lists a stream's consumers with their progress
    Ls {
        /// The stream
        stream: String,
    },
    /// Shows a consumer's settings and progress
    Info {
        /// The stream
        stream: String,
        /// The consumer
        name: String,
    },
    /// Creates a consumer (nothing changes if it exists with the same settings)
    Create(Create),
    /// Deletes a consumer and its progress (its dead letters stay)
    Rm {
        /// The stream
        stream: String,
        /// The consumer
        name: String,
    },
    /// Moves a consumer to start again from a seq or a time; leases are dropped
    Reset(Reset),
}

#[derive(Debug, clap::Args)]
struct Create {
    /// The stream it reads
    stream: String,
    /// Its name
    name: String,
    /// Only messages matching this pattern (repeat, or separate with commas, for more)
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    filter: Vec<String>,
    /// How long a delivery is leased before it comes back (default 30s)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    ack_wait: Option<Duration>,
    /// Dead-letters a message after N deliveries (default: never)
    #[arg(long, value_name = "N")]
    max_deliver: Option<NonZeroU32>,
    /// The lease of each successive delivery, comma-separated (1s,5s,30s)
    #[arg(long, value_name = "DURATIONS", value_delimiter = ',', value_parser = parse_duration)]
    backoff: Vec<Duration>,
    /// At most N messages in flight at once (default 1000)
    #[arg(long, value_name = "N")]
    max_ack_pending: Option<NonZeroU32>,
    /// Where it starts
    #[arg(long, value_enum, default_value_t = StartArg::All, conflicts_with_all = ["start_seq", "start_time"])]
    start: StartArg,
    /// Starts at this seq
    #[arg(long, value_name = "SEQ", conflicts_with = "start_time")]
    start_seq: Option<u64>,
    /// Starts at this time: RFC 3339 or a duration ago (10m)
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    start_time: Option<When>,
    /// Drops messages past --max-deliver instead of keeping them as dead letters
    #[arg(long)]
    discard_dead_letters: bool,
}

/// [`StartPolicy`]'s flag values (seq and time have their own flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StartArg {
    /// From the first message held
    All,
    /// From the next message published
    New,
    /// From the last message of each subject
    LastPerSubject,
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("to").required(true))]
struct Reset {
    /// The stream
    stream: String,
    /// The consumer
    name: String,
    /// Starts again at this seq
    #[arg(long, value_name = "SEQ", group = "to")]
    to_seq: Option<u64>,
    /// Starts again at this time: RFC 3339 or a duration ago (10m)
    #[arg(long, value_name = "TIME", group = "to", value_parser = parse_when)]
    to_time: Option<When>,
}

/// Runs `herald consumers …`.
///
/// # Errors
///
/// `StreamNotFound`, `ConsumerNotFound`, invalid settings, a lost connection,
/// or stdout gone.
pub(crate) async fn run(args: Consumers) -> anyhow::Result<()> {
    let json = args.client.json;
    args.client
        .session(async |bus: &Bus| match &args.command {
            ConsumersCommand::Ls { stream } => list(&bus.consumers(stream).await?, json),
            ConsumersCommand::Info { stream, name } => show(&bus.consumer_info(stream, name).await?, json),
            ConsumersCommand::Create(create) => show(&self::create(bus, create).await?, json),
            ConsumersCommand::Rm { stream, name } => {
                bus.delete_consumer(stream, name).await?;
                output::done(
                    json,
                    serde_json::json!({ "stream": stream, "deleted": name }),
                    format_args!("deleted consumer {name} of {stream}"),
                )
            }
            ConsumersCommand::Reset(reset) => {
                let to = match (reset.to_seq, reset.to_time) {
                    (Some(seq), _) => ReadFrom::Seq(seq),
                    (None, Some(time)) => ReadFrom::Time(time.at(bus.now())),
                    (None, None) => anyhow::bail!("say where to start again: --to-seq or --to-time"),
                };
                let consumer = bus.bind_consumer(&reset.stream, &reset.name).await?;
                show(&consumer.reset(to).await?, json)
            }
        })
        .await
}

async fn create(bus: &Bus, args: &Create) -> anyhow::Result<ConsumerInfo> {
    let mut builder = bus.consumer(&args.stream, &args.name).start(start(bus, args)?);
    for pattern in &args.filter {
        builder = builder.filter(pattern);
    }
    if let Some(ack_wait) = args.ack_wait {
        builder = builder.ack_wait(ack_wait);
    }
    if let Some(n) = args.max_deliver {
        builder = builder.max_deliver(n.get());
    }
    if !args.backoff.is_empty() {
        builder = builder.backoff(args.backoff.iter().copied());
    }
    if let Some(n) = args.max_ack_pending {
        builder = builder.max_ack_pending(n.get());
    }
    if args.discard_dead_letters {
        builder = builder.dead_letter(DeadLetter::Discard);
    }
    Ok(builder.create().await?.info().await?)
}

fn start(bus: &Bus, args: &Create) -> anyhow::Result<StartPolicy> {
    Ok(match (args.start_seq, args.start_time, args.start) {
        (Some(seq), _, _) => StartPolicy::FromSeq(seq),
        (None, Some(time), _) => StartPolicy::FromTime(time.at(bus.now())),
        (None, None, StartArg::All) => StartPolicy::All,
        (None, None, StartArg::New) => StartPolicy::New,
        (None, None, StartArg::LastPerSubject) => StartPolicy::LastPerSubject,
    })
}

fn list(consumers: &[ConsumerInfo], json: bool) -> anyhow::Result<()> {
    if json {
        return output::document(&consumers);
    }
    let mut table = Table::new(&[
        ("STREAM", Align::Left),
        ("NAME", Align::Left),
        ("FILTER", Align::Left),
        ("PENDING", Align::Right),
        ("IN FLIGHT", Align::Right),
        ("ACK FLOOR", Align::Right),
        ("LAG", Align::Right),
        ("DEAD", Align::Right),
    ]);
    for info in consumers {
        table.row(vec![
            info.stream.to_string(),
            info.config.name.to_string(),
            filters(info),
            info.pending.to_string(),
            info.in_flight.to_string(),
            info.ack_floor.to_string(),
            lag(info),
            info.dead_lettered.to_string(),
        ]);
    }
    output::text(&table.render())
}

fn show(info: &ConsumerInfo, json: bool) -> anyhow::Result<()> {
    if json {
        return output::document(info);
    }
    let config = &info.config;
    let members: Vec<String> = info
        .members
        .iter()
        .map(|m| {
            format!(
                "{} ({} in flight, seen {})",
                m.name,
                m.in_flight,
                format_time(m.last_seen)
            )
        })
        .collect();
    let backoff: Vec<String> = config.backoff.iter().copied().map(format_duration).collect();
    output::text(&details(&[
        ("stream", info.stream.to_string()),
        ("name", config.name.to_string()),
        ("filter", filters(info)),
        ("start", start_name(config.start)),
        ("ack wait", format_duration(config.ack_wait)),
        (
            "max deliver",
            config
                .max_deliver
                .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
        ),
        ("backoff", output::joined(&backoff, ",", "none")),
        ("max ack pending", config.max_ack_pending.to_string()),
        ("dead letters", output::variant(&config.dead_letter)),
        ("ack floor", info.ack_floor.to_string()),
        ("next seq", info.next_seq.to_string()),
        ("pending", info.pending.to_string()),
        ("in flight", info.in_flight.to_string()),
        ("lag", lag(info)),
        ("delivered", info.delivered.to_string()),
        ("redelivered", info.redelivered.to_string()),
        ("dead-lettered", info.dead_lettered.to_string()),
        ("members", output::joined(&members, "; ", "none")),
    ]))
}

fn filters(info: &ConsumerInfo) -> String {
    let patterns: Vec<&str> = info.config.filters.iter().map(Pattern::as_str).collect();
    output::joined(&patterns, ",", "all")
}

/// The age of the oldest unacked message, or `-` when nothing is owed.
fn lag(info: &ConsumerInfo) -> String {
    info.oldest_unacked_age.map_or_else(|| "-".to_owned(), format_duration)
}

fn start_name(start: StartPolicy) -> String {
    match start {
        StartPolicy::FromSeq(seq) => format!("seq {seq}"),
        StartPolicy::FromTime(time) => format!("time {}", format_time(time)),
        other => output::variant(&other),
    }
}
