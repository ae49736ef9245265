//! `herald dlq`: a consumer's dead letters: list, replay to their original
//! subjects, or delete.

use herald::{Bus, ErrorKind, Message, dlq};
use herald_core::wire::WireMessage;

use crate::client::ClientArgs;
use crate::output;
use crate::table::{Align, Table};

/// 60 characters: the widest a reason or payload cell gets in `dlq ls`.
const CELL: usize = 60;

#[derive(Debug, clap::Args)]
pub(crate) struct Dlq {
    #[command(subcommand)]
    command: DlqCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCommand {
    /// Lists a consumer's dead letters, oldest first
    Ls {
        /// The stream
        stream: String,
        /// The consumer
        consumer: String,
        /// Shows at most N
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
    },
    /// Publishes every dead letter again to its original subject, and removes it
    Replay {
        /// The stream
        stream: String,
        /// The consumer
        consumer: String,
    },
    /// Deletes every dead letter of a consumer
    Purge {
        /// The stream
        stream: String,
        /// The consumer
        consumer: String,
    },
}

/// Runs `herald dlq …`.
///
/// # Errors
///
/// `StreamNotFound`, `ConsumerNotFound`, a failed replay, a lost connection,
/// or stdout gone.
pub(crate) async fn run(args: Dlq) -> anyhow::Result<()> {
    let json = args.client.json;
    args.client
        .session(async |bus: &Bus| match &args.command {
            DlqCommand::Ls {
                stream,
                consumer,
                limit,
            } => {
                let letters = explain(bus, stream, consumer, bus.dead_letters(stream, consumer, *limit).await).await?;
                list(&letters, json)
            }
            DlqCommand::Replay { stream, consumer } => {
                let replayed = explain(bus, stream, consumer, bus.replay_dead_letters(stream, consumer).await).await?;
                done(json, "replayed", replayed, stream, consumer)
            }
            DlqCommand::Purge { stream, consumer } => {
                let purged = explain(bus, stream, consumer, bus.purge_dead_letters(stream, consumer).await).await?;
                done(json, "purged", purged, stream, consumer)
            }
        })
        .await
}

/// A missing dead-letter stream says little on its own: name the missing
/// stream or consumer instead, or say that the consumer keeps no dead letters.
async fn explain<T>(bus: &Bus, stream: &str, consumer: &str, result: herald::Result<T>) -> anyhow::Result<T> {
    match result {
        Err(err) if err.kind() == ErrorKind::StreamNotFound => {
            bus.bind_consumer(stream, consumer).await?;
            anyhow::bail!("consumer {consumer} of {stream} keeps no dead letters (it discards them)")
        }
        result => Ok(result?),
    }
}

fn done(json: bool, verb: &str, n: u64, stream: &str, consumer: &str) -> anyhow::Result<()> {
    output::done(
        json,
        serde_json::json!({ "stream": stream, "consumer": consumer, verb: n }),
        format_args!("{verb} {n} dead letters of {consumer} on {stream}"),
    )
}

fn list(letters: &[Message], json: bool) -> anyhow::Result<()> {
    if json {
        let letters: Vec<WireMessage> = letters.iter().map(WireMessage::from).collect();
        return output::document(&letters);
    }
    let mut table = Table::new(&[
        ("SEQ", Align::Right),
        ("FROM SEQ", Align::Right),
        ("SUBJECT", Align::Left),
        ("DELIVERIES", Align::Right),
        ("REASON", Align::Left),
        ("PAYLOAD", Align::Left),
    ]);
    for letter in letters {
        let header = |name: &str| letter.headers.get(name).cloned().unwrap_or_default();
        table.row(vec![
            letter.seq.to_string(),
            header(dlq::SEQ),
            header(dlq::SUBJECT),
            header(dlq::DELIVERIES),
            output::clip(&header(dlq::REASON), CELL),
            output::clip(&output::payload(&letter.payload), CELL),
        ]);
    }
    output::text(&table.render())
}
