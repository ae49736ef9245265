//! `herald consume STREAM CONSUMER`: works through a durable consumer,
//! printing each delivery and settling each fetched batch in one call (ack
//! by default).

use std::time::Duration;

use herald::{Bus, Consumer, ErrorKind, Received, Settle};

use crate::client::{ClientArgs, until_interrupted};
use crate::{output, units};

/// 30 s: how long one fetch waits when no `--wait` was given; the loop then
/// simply fetches again.
const FETCH_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub(crate) struct Consume {
    /// The stream the consumer reads
    stream: String,
    /// The durable consumer's name
    consumer: String,
    /// Stops after N deliveries (default: runs until interrupted)
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Fetches up to N deliveries at a time
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Naks each delivery instead of acking it (it comes back at once, or is
    /// dead-lettered past the consumer's max deliveries)
    #[arg(long, conflicts_with = "term")]
    nak: bool,
    /// Dead-letters each delivery at once instead of acking it, with this reason
    #[arg(long, value_name = "REASON")]
    term: Option<String>,
    /// Stops once nothing has come for this long (default: waits for ever)
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    wait: Option<Duration>,
    /// Creates the consumer (all messages, default settings) if it is missing
    #[arg(long)]
    create: bool,
    /// Consumes as this member of the consumer's group
    #[arg(long, value_name = "NAME")]
    member: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs `herald consume`.
///
/// # Errors
///
/// `StreamNotFound`, `ConsumerNotFound` (without `--create`), a lost
/// connection, or stdout gone.
pub(crate) async fn run(args: Consume) -> anyhow::Result<()> {
    args.client
        .session(async |bus: &Bus| {
            let consumer = bind(bus, &args).await?;
            until_interrupted(consume(&consumer, &args)).await
        })
        .await
}

async fn bind(bus: &Bus, args: &Consume) -> anyhow::Result<Consumer> {
    let consumer = match bus.bind_consumer(&args.stream, &args.consumer).await {
        Ok(consumer) => consumer,
        Err(err) if err.kind() == ErrorKind::ConsumerNotFound && args.create => {
            bus.consumer(&args.stream, &args.consumer).create().await?
        }
        Err(err) => return Err(err.into()),
    };
    Ok(match &args.member {
        Some(member) => consumer.member(member)?,
        None => consumer,
    })
}

async fn consume(consumer: &Consumer, args: &Consume) -> anyhow::Result<()> {
    let mut left = args.count.unwrap_or(u64::MAX);
    while left > 0 {
        // Never lease more than will be printed: the rest would wait out their lease.
        let max = u64::from(args.batch).min(left);
        let batch = consumer
            .fetch(usize::try_from(max).unwrap_or(1), args.wait.unwrap_or(FETCH_WAIT))
            .await?;
        if batch.is_empty() && args.wait.is_some() {
            break;
        }
        for received in &batch {
            output::delivery(received, args.client.json)?;
        }
        settle(consumer, &batch, args).await?;
        left = left.saturating_sub(u64::try_from(batch.len()).unwrap_or(u64::MAX));
    }
    Ok(())
}

/// Acks, naks or terms a fetched batch in one call; a lease that ran out
/// first is a warning (the message comes back), not the end.
async fn settle(consumer: &Consumer, batch: &[Received], args: &Consume) -> anyhow::Result<()> {
    let how = if args.nak {
        Settle::Nak { delay: Duration::ZERO }
    } else if let Some(reason) = &args.term {
        Settle::Term { reason: reason.clone() }
    } else {
        Settle::Ack
    };
    let outcomes = consumer
        .settle_all(batch.iter().map(|received| (received, how.clone())))
        .await?;
    for outcome in outcomes {
        match outcome {
            Err(err) if err.kind() == ErrorKind::LeaseLost => output::note(format_args!("warning: {err}")),
            outcome => outcome?,
        }
    }
    Ok(())
}
