//! `herald tail STREAM`: a stream's messages from a seq, a time or its last
//! N, optionally of some subjects, and with `--follow` the new ones as they
//! arrive.

use herald::{Bus, Pattern, ReadFrom, StreamInfo};

use crate::client::{ClientArgs, until_interrupted};
use crate::{history, output, sub, units};

/// How many messages `tail` shows when told neither where to start nor how many.
const DEFAULT_LAST: u64 = 10;

#[derive(Debug, clap::Args)]
pub(crate) struct Tail {
    /// The stream to read
    stream: String,
    /// Starts at this seq
    #[arg(long, value_name = "SEQ", group = "start")]
    from_seq: Option<u64>,
    /// Starts at this time: RFC 3339 (2025-01-31T12:00:00Z) or a duration ago (10m, 2h)
    #[arg(long, value_name = "TIME", group = "start", value_parser = units::parse_when)]
    since: Option<units::When>,
    /// Starts at the last N messages (the default, with N = 10)
    #[arg(long, value_name = "N", group = "start")]
    last: Option<u64>,
    /// Only messages whose subject matches this pattern
    #[arg(long, value_name = "PATTERN")]
    subject: Option<String>,
    /// Keeps following new messages until interrupted
    #[arg(long, short = 'f')]
    follow: bool,
    /// Stops after N messages
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs `herald tail`.
///
/// # Errors
///
/// `StreamNotFound`, an invalid pattern, a lost connection, or stdout gone.
pub(crate) async fn run(args: Tail) -> anyhow::Result<()> {
    let filter = args.subject.as_deref().map(Pattern::new).transpose()?;
    args.client
        .session(async |bus: &Bus| {
            let info = bus.stream_info(&args.stream).await?;
            let from = start(bus, &args, &info, filter.as_ref()).await?;
            if args.follow {
                follow(bus, &args, &info, filter, from).await
            } else {
                let json = args.client.json;
                history::read_forward(bus, &args.stream, from, filter.as_ref(), args.count, |m| {
                    output::message(m, json)
                })
                .await
            }
        })
        .await
}

/// Where reading starts, from the flags.
async fn start(bus: &Bus, args: &Tail, info: &StreamInfo, filter: Option<&Pattern>) -> anyhow::Result<ReadFrom> {
    if let Some(seq) = args.from_seq {
        // Before the first message held is the first message held (and no lag).
        return Ok(ReadFrom::Seq(seq.max(info.state.first_seq)));
    }
    if let Some(since) = args.since {
        return Ok(ReadFrom::Time(since.at(bus.now())));
    }
    let last = args.last.unwrap_or(DEFAULT_LAST);
    Ok(ReadFrom::Seq(history::start_of_last(bus, info, filter, last).await?))
}

/// Replays from `from`, then follows: one live subscription does both, so
/// nothing written meanwhile is missed.
async fn follow(
    bus: &Bus,
    args: &Tail,
    info: &StreamInfo,
    filter: Option<Pattern>,
    from: ReadFrom,
) -> anyhow::Result<()> {
    // A subscription follows one pattern across streams: the subject filter,
    // else the stream's one pattern, else everything, keeping this stream's.
    let pattern = match (filter, info.config.subjects.as_slice()) {
        (Some(filter), _) => filter,
        (None, [only]) => only.clone(),
        (None, _) => Pattern::new(">")?,
    };
    let subscription = bus.subscribe_from(pattern.as_str(), from).await?;
    output::note(format_args!("following {}", args.stream));
    let stream = info.config.name.clone();
    until_interrupted(sub::print_live(
        subscription,
        args.count,
        move |m| m.stream == stream,
        args.client.json,
    ))
    .await
}
