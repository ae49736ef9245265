//! `herald sub PATTERN`: a live subscription, printing each message as it
//! arrives until interrupted or `--count` messages.

use herald::{Bus, ErrorKind, Message, Subscription};

use crate::client::{ClientArgs, until_interrupted};
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Sub {
    /// The subject pattern to follow, across streams (`orders.*`, `orders.>`)
    pattern: String,
    /// Stops after N messages (default: runs until interrupted)
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs `herald sub`.
///
/// # Errors
///
/// `InvalidSubject`, a lost connection, or stdout gone.
pub(crate) async fn run(args: Sub) -> anyhow::Result<()> {
    let json = args.client.json;
    args.client
        .session(async |bus: &Bus| {
            let subscription = bus.subscribe(&args.pattern).await?;
            // Scripts and tests wait for this line before they publish.
            output::note(format_args!("subscribed to {}", args.pattern));
            until_interrupted(print_live(subscription, args.count, |_| true, json)).await
        })
        .await
}

/// Prints the messages of `subscription` that `keep` accepts until `count`
/// of them (for ever when `None`). A lag (messages deleted before they were
/// read) is noted on stderr and the subscription carries on.
///
/// # Errors
///
/// `Closed` when the bus goes away, or stdout gone.
pub(crate) async fn print_live(
    mut subscription: Subscription,
    count: Option<u64>,
    keep: impl Fn(&Message) -> bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut left = count.unwrap_or(u64::MAX);
    while left > 0 {
        match subscription.next().await {
            Ok(message) if keep(&message) => {
                output::message(&message, json)?;
                left -= 1;
            }
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::Lagged => output::note(format_args!("warning: {err}")),
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}
