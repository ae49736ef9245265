//! `herald streams`: list, inspect, create, delete and purge streams.

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use herald::{
    Bus, ConsumerName, Discard, Durability, ErrorKind, Pattern, Purge, Retention, StreamConfig, StreamInfo, StreamName,
    Subject,
};
use herald_core::{MAX_PAYLOAD_LIMIT, dead_letter_names};
use serde::Serialize;

use crate::client::ClientArgs;
use crate::table::{Align, Table, details};
use crate::units::{format_duration, format_size, format_time, parse_duration, parse_size, parse_size_within};
use crate::{history, output};

#[derive(Debug, clap::Args)]
pub(crate) struct Streams {
    #[command(subcommand)]
    command: StreamsCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum StreamsCommand {
    /// Lists every stream with its size and consumers
    Ls,
    /// Shows a stream's settings and state
    Info {
        /// The stream
        name: String,
    },
    /// Creates a stream (nothing changes if it exists with the same settings)
    Create(Create),
    /// Deletes a stream with its messages and consumers; says what went,
    /// and which of its dead-letter streams stayed
    Rm {
        /// The stream
        name: String,
    },
    /// Deletes a stream's messages: all, or one subject's, or all but the last N
    Purge(PurgeArgs),
}

#[derive(Debug, clap::Args)]
struct Create {
    /// The stream's name
    name: String,
    /// The subject patterns it captures, comma-separated (default: NAME and NAME.>)
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    subjects: Vec<String>,
    /// Keeps at most N messages
    #[arg(long, value_name = "N")]
    max_msgs: Option<NonZeroU64>,
    /// Keeps at most this many bytes (1073741824, 512MiB, 1GiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_bytes: Option<NonZeroU64>,
    /// Deletes messages older than this (1h, 7d)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_age: Option<Duration>,
    /// Keeps at most N messages per subject (1: the last value of each)
    #[arg(long, value_name = "N")]
    max_msgs_per_subject: Option<NonZeroU64>,
    /// The largest payload accepted (default 1MiB, at most 64MiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_max_payload)]
    max_payload: Option<NonZeroU32>,
    /// What else deletes messages besides the limits
    #[arg(long, value_enum, default_value_t = RetentionArg::Limits)]
    retention: RetentionArg,
    /// What a publish over a limit does: delete the oldest, or be refused
    #[arg(long, value_enum, default_value_t = DiscardArg::Old)]
    discard: DiscardArg,
    /// How long message ids are remembered for dedup (default 2m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "no_dedup")]
    duplicate_window: Option<Duration>,
    /// Turns dedup off
    #[arg(long)]
    no_dedup: bool,
    /// Acknowledges publishes before the fsync (synced within 100 ms)
    #[arg(long)]
    relaxed: bool,
    /// Keeps a per-subject history index (fixed at creation)
    #[arg(long)]
    subject_index: bool,
}

/// [`Retention`] as a flag's value.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum RetentionArg {
    /// Only the limits delete
    Limits,
    /// A message goes once every consumer acked it
    Interest,
    /// A message goes once one consumer acked it
    WorkQueue,
}

/// [`Discard`] as a flag's value.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DiscardArg {
    /// Delete the oldest messages to make room
    Old,
    /// Refuse the new message
    New,
}

#[derive(Debug, clap::Args)]
struct PurgeArgs {
    /// The stream
    name: String,
    /// Only messages of this subject
    #[arg(long, value_name = "SUBJECT")]
    subject: Option<String>,
    /// Keeps the last N messages (of the subject, with --subject)
    #[arg(long, value_name = "N")]
    keep: Option<u64>,
}

/// Runs `herald streams …`.
///
/// # Errors
///
/// `StreamNotFound`, invalid settings, a lost connection, or stdout gone.
pub(crate) async fn run(args: Streams) -> anyhow::Result<()> {
    let json = args.client.json;
    args.client
        .session(async |bus: &Bus| match &args.command {
            StreamsCommand::Ls => list(bus, json).await,
            StreamsCommand::Info { name } => show(bus, bus.stream_info(name).await?, json).await,
            StreamsCommand::Create(create) => show(bus, bus.create_stream(config(create)?).await?, json).await,
            StreamsCommand::Rm { name } => {
                let removed = remove(bus, name).await?;
                output::done(json, serde_json::to_value(&removed)?, removed.text())
            }
            StreamsCommand::Purge(purge_args) => {
                let purged = purge(bus, purge_args).await?;
                let name = &purge_args.name;
                output::done(
                    json,
                    serde_json::json!({ "stream": name, "purged": purged }),
                    format!("purged {purged} messages from {name}"),
                )
            }
        })
        .await
}

/// A stream as `streams ls`, `info` and `create` print it: the JSON document
/// is this, and the tables are made from it, so the two never disagree.
#[derive(Serialize)]
struct StreamView {
    #[serde(flatten)]
    info: StreamInfo,
    /// The names of its consumers.
    consumers: Vec<String>,
}

impl StreamView {
    async fn of(bus: &Bus, info: StreamInfo) -> anyhow::Result<StreamView> {
        let consumers = bus.consumers(info.config.name.as_str()).await?;
        let consumers = consumers.iter().map(|c| c.config.name.to_string()).collect();
        Ok(StreamView { info, consumers })
    }
}

async fn list(bus: &Bus, json: bool) -> anyhow::Result<()> {
    let mut streams = Vec::new();
    for info in bus.streams().await? {
        streams.push(StreamView::of(bus, info).await?);
    }
    if json {
        return output::document(&streams);
    }
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("SUBJECTS", Align::Left),
        ("MESSAGES", Align::Right),
        ("BYTES", Align::Right),
        ("FIRST", Align::Right),
        ("LAST", Align::Right),
        ("CONSUMERS", Align::Right),
    ]);
    for StreamView { info, consumers } in &streams {
        let state = &info.state;
        table.row(vec![
            info.config.name.to_string(),
            subjects(info),
            state.messages.to_string(),
            format_size(state.bytes),
            state.first_seq.to_string(),
            state.last_seq.to_string(),
            consumers.len().to_string(),
        ]);
    }
    output::text(&table.render())
}

async fn show(bus: &Bus, info: StreamInfo, json: bool) -> anyhow::Result<()> {
    let view = StreamView::of(bus, info).await?;
    if json {
        return output::document(&view);
    }
    let StreamView { info, consumers } = &view;
    let (config, state) = (&info.config, &info.state);
    let limit = |n: Option<NonZeroU64>| n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    output::text(&details(&[
        ("name", config.name.to_string()),
        ("subjects", subjects(info)),
        ("created", format_time(info.created)),
        ("messages", state.messages.to_string()),
        ("bytes", format_size(state.bytes)),
        ("first", seq_at(state.first_seq, state.first_time)),
        ("last", seq_at(state.last_seq, state.last_time)),
        ("distinct subjects", state.subjects.to_string()),
        ("deleted", state.deleted.to_string()),
        ("max msgs", limit(config.max_msgs)),
        (
            "max bytes",
            config
                .max_bytes
                .map_or_else(|| "unlimited".to_owned(), |n| format_size(n.get())),
        ),
        (
            "max age",
            config.max_age.map_or_else(|| "unlimited".to_owned(), format_duration),
        ),
        ("max msgs per subject", limit(config.max_msgs_per_subject)),
        ("max payload", format_size(u64::from(config.max_payload.get()))),
        ("retention", output::variant(&config.retention)),
        ("discard", output::variant(&config.discard)),
        (
            "duplicate window",
            config
                .duplicate_window
                .map_or_else(|| "off".to_owned(), format_duration),
        ),
        ("durability", output::variant(&config.durability)),
        ("subject index", subject_index(config)),
        ("consumers", output::joined(consumers, ", ", "none")),
    ]))
}

/// The `subject_index` setting as the JSON has it; where it is off but
/// `max_msgs_per_subject` keeps the index anyway, the cell says so.
fn subject_index(config: &StreamConfig) -> String {
    if config.indexes_subjects() && !config.subject_index {
        format!("{} (kept anyway: max msgs per subject needs it)", config.subject_index)
    } else {
        config.subject_index.to_string()
    }
}

/// What `streams rm` deleted, in both forms: the JSON document is this, and
/// the line is made from it.
#[derive(Serialize)]
struct Removed {
    /// The stream.
    deleted: String,
    /// How many messages it held.
    messages: u64,
    /// Its consumers.
    consumers: Vec<String>,
    /// Its dead-letter streams that went with it.
    dead_letters_deleted: Vec<DeadLetterStream>,
    /// Its dead-letter streams that are still there.
    dead_letters_kept: Vec<DeadLetterStream>,
}

/// A consumer's dead-letter stream (its consumer may be gone already).
#[derive(Serialize)]
struct DeadLetterStream {
    stream: String,
    consumer: String,
    messages: u64,
}

impl Removed {
    fn text(&self) -> String {
        let listed = |streams: &[DeadLetterStream]| {
            let each: Vec<String> = streams
                .iter()
                .map(|d| format!("{} ({})", d.stream, count(d.messages, "message")))
                .collect();
            each.join(", ")
        };
        let mut text = format!(
            "deleted stream {}: {}; {}",
            self.deleted,
            count(self.messages, "message"),
            match self.consumers.as_slice() {
                [] => "no consumers".to_owned(),
                names => format!("consumers {}", names.join(", ")),
            }
        );
        if !self.dead_letters_deleted.is_empty() {
            text.push_str(&format!("; dead-letter streams {}", listed(&self.dead_letters_deleted)));
        }
        if let [first, ..] = self.dead_letters_kept.as_slice() {
            text.push_str(&format!(
                "\nkept its dead-letter streams {}; `herald streams rm '{}'` deletes one",
                listed(&self.dead_letters_kept),
                first.stream
            ));
        }
        text
    }
}

/// `n thing` or `n things`.
fn count(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// Deletes a stream, and finds out what went with it: its dead-letter
/// streams are looked for before and after, so the report says what the
/// backend did rather than what it might do.
async fn remove(bus: &Bus, name: &str) -> anyhow::Result<Removed> {
    let info = bus.stream_info(name).await?;
    let stream = &info.config.name;
    let consumers = bus.consumers(stream.as_str()).await?;
    let mut letters = Vec::new();
    for other in bus.streams().await? {
        if let Some(consumer) = dead_letters_of(stream, &other.config) {
            letters.push(DeadLetterStream {
                stream: other.config.name.to_string(),
                consumer,
                messages: other.state.messages,
            });
        }
    }
    bus.delete_stream(stream.as_str()).await?;
    let (mut deleted, mut kept) = (Vec::new(), Vec::new());
    for mut letter in letters {
        match bus.stream_info(&letter.stream).await {
            Err(err) if err.kind() == ErrorKind::StreamNotFound => deleted.push(letter),
            Ok(info) => {
                letter.messages = info.state.messages;
                kept.push(letter);
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(Removed {
        deleted: stream.to_string(),
        messages: info.state.messages,
        consumers: consumers.iter().map(|c| c.config.name.to_string()).collect(),
        dead_letters_deleted: deleted,
        dead_letters_kept: kept,
    })
}

/// The consumer whose dead letters `config` holds, if it is one of `stream`'s
/// dead-letter streams (`$dlq-orders-billing` capturing `$dlq.orders.billing`),
/// whether or not that consumer still exists.
fn dead_letters_of(stream: &StreamName, config: &StreamConfig) -> Option<String> {
    let [subject] = config.subjects.as_slice() else {
        return None;
    };
    // Stream names hold no dots: the last token is the consumer.
    let (_, consumer) = subject.as_str().rsplit_once('.')?;
    let consumer = ConsumerName::new(consumer).ok()?;
    let (dlq, dlq_subject) = dead_letter_names(stream, &consumer).ok()?;
    (dlq == config.name && dlq_subject == subject.as_str()).then(|| consumer.to_string())
}

fn subjects(info: &StreamInfo) -> String {
    let patterns: Vec<&str> = info.config.subjects.iter().map(Pattern::as_str).collect();
    patterns.join(",")
}

fn seq_at(seq: u64, time: Option<herald::Timestamp>) -> String {
    match time {
        Some(time) => format!("{seq} at {}", format_time(time)),
        None => seq.to_string(),
    }
}

fn config(args: &Create) -> anyhow::Result<StreamConfig> {
    let mut config = StreamConfig::new(&args.name)?;
    if !args.subjects.is_empty() {
        config = config.subjects(&args.subjects)?;
    }
    config.max_msgs = args.max_msgs;
    config.max_bytes = args.max_bytes;
    config.max_age = args.max_age;
    config.max_msgs_per_subject = args.max_msgs_per_subject;
    if let Some(bytes) = args.max_payload {
        config = config.max_payload(bytes);
    }
    config = config
        .retention(match args.retention {
            RetentionArg::Limits => Retention::Limits,
            RetentionArg::Interest => Retention::Interest,
            RetentionArg::WorkQueue => Retention::WorkQueue,
        })
        .discard(match args.discard {
            DiscardArg::Old => Discard::Old,
            DiscardArg::New => Discard::New,
        })
        .subject_index(args.subject_index);
    if args.no_dedup {
        config = config.duplicate_window(None);
    } else if let Some(window) = args.duplicate_window {
        config = config.duplicate_window(Some(window));
    }
    if args.relaxed {
        config = config.durability(Durability::Relaxed);
    }
    Ok(config)
}

/// `--max-payload`: a size no larger than a stream accepts.
fn parse_max_payload(text: &str) -> anyhow::Result<NonZeroU32> {
    parse_size_within(text, MAX_PAYLOAD_LIMIT.into(), "a stream accepts")
}

/// Purges what the flags select; `--keep N` keeps the last N of what would go.
async fn purge(bus: &Bus, args: &PurgeArgs) -> anyhow::Result<u64> {
    let subject = args.subject.as_deref().map(Subject::new).transpose()?;
    let mut purge = subject.clone().map_or_else(Purge::all, Purge::subject);
    if let Some(keep) = args.keep {
        let filter = subject.map(Pattern::new).transpose()?;
        let info = bus.stream_info(&args.name).await?;
        let first_kept = history::start_of_last(bus, &info, filter.as_ref(), keep).await?;
        purge = purge.before(first_kept);
    }
    Ok(bus.purge_stream(&args.name, purge).await?)
}
