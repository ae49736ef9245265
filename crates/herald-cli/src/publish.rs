//! `herald pub SUBJECT [PAYLOAD]`: publishes one message and prints its ack.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use herald::{Bus, ErrorKind, OutgoingMessage, PublishAck, Subject};

use crate::client::ClientArgs;
use crate::{output, units};

#[derive(Debug, clap::Args)]
pub(crate) struct Pub {
    /// The subject to publish to (it picks the stream)
    subject: String,
    /// The payload; without it (or with `-`) the payload is read from stdin
    #[arg(conflicts_with = "file")]
    payload: Option<String>,
    /// Reads the payload from this file
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// A header, NAME=VALUE (repeat for more)
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The message id: publishing the same id again inside the stream's
    /// duplicate window writes nothing and reports a duplicate
    #[arg(long)]
    id: Option<String>,
    /// Publishes only if the stream's last seq is N (0: the stream is empty)
    #[arg(long, value_name = "N")]
    expect_last_seq: Option<u64>,
    /// The payload's media type (application/json, …)
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,
    /// Deletes the message this long after it is stored (30s, 1h, …)
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    ttl: Option<Duration>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs `herald pub`.
///
/// # Errors
///
/// An unreadable payload, an invalid subject, or the publish's error
/// (`WrongExpectedSeq`, `PayloadTooLarge`, …).
pub(crate) async fn run(args: Pub) -> anyhow::Result<()> {
    let payload = read_payload(args.payload.clone(), args.file.clone()).await?;
    let message = message(&args, payload)?;
    let json = args.client.json;
    args.client
        .session(async |bus: &Bus| match bus.publish_message(message).await {
            Ok(ack) => print_ack(&ack, json),
            // The stream comes first (always, with `serve --no-auto-create`).
            Err(err) if err.kind() == ErrorKind::SubjectConflict => {
                bail!("{err}; create a stream that captures it first: herald streams create NAME --subjects PATTERN")
            }
            Err(err) => Err(err.into()),
        })
        .await
}

fn message(args: &Pub, payload: Vec<u8>) -> anyhow::Result<OutgoingMessage> {
    let mut message = OutgoingMessage::new(Subject::new(&args.subject)?, payload);
    for (name, value) in &args.headers {
        message = message.header(name, value);
    }
    if let Some(id) = &args.id {
        message = message.id(id);
    }
    if let Some(seq) = args.expect_last_seq {
        message = message.expect_last_seq(seq);
    }
    if let Some(content_type) = &args.content_type {
        message = message.content_type(content_type);
    }
    if let Some(ttl) = args.ttl {
        message = message.ttl(ttl);
    }
    Ok(message)
}

/// The argument, the file, or stdin (read off the runtime's threads).
async fn read_payload(argument: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    match (argument, file) {
        (Some(text), _) if text != "-" => Ok(text.into_bytes()),
        (_, Some(path)) => tokio::task::spawn_blocking(move || {
            std::fs::read(&path).with_context(|| format!("reading the payload from {}", path.display()))
        })
        .await
        .context("reading the payload")?,
        _ => tokio::task::spawn_blocking(|| {
            let mut payload = Vec::new();
            std::io::stdin()
                .read_to_end(&mut payload)
                .context("reading the payload from stdin")?;
            Ok(payload)
        })
        .await
        .context("reading the payload")?,
    }
}

fn print_ack(ack: &PublishAck, json: bool) -> anyhow::Result<()> {
    if json {
        output::document(ack)
    } else if ack.duplicate {
        output::line(format_args!(
            "duplicate: {} seq {} already holds this id; nothing written",
            ack.stream, ack.seq
        ))
    } else {
        output::line(format_args!("published to {} at seq {}", ack.stream, ack.seq))
    }
}

fn parse_header(text: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = text
        .split_once('=')
        .with_context(|| format!("`{text}` is not a header; write it NAME=VALUE"))?;
    Ok((name.trim().to_owned(), value.to_owned()))
}
