//! Run with: cargo run -p herald --example request_reply
//!
//! A price service answers requests on `prices.*` (two instances share the
//! load); a client asks for quotes with a timeout, and a request to a subject
//! nobody serves fails at once with `NoResponders`.

use std::time::Duration;

use herald::{Bus, ErrorKind, Reply};

#[tokio::main]
async fn main() -> Result<(), herald::Error> {
    let bus = Bus::memory()?;
    let mut instances = Vec::new();
    for instance in ["east", "west"] {
        instances.push(
            bus.serve("prices.*", move |req| async move {
                let symbol = req.subject.as_str().trim_start_matches("prices.").to_uppercase();
                let price = symbol.bytes().map(u64::from).sum::<u64>() as f64 / 10.0;
                Reply::new(format!("{symbol} {price:.2}")).header("served-by", instance)
            })
            .await?,
        );
    }
    for symbol in ["acme", "globex", "initech", "umbrella"] {
        let reply = bus
            .request(format!("prices.{symbol}"), "", Duration::from_secs(1))
            .await?;
        println!(
            "{} (from {})",
            String::from_utf8_lossy(&reply.payload),
            reply.headers["served-by"]
        );
    }
    let started = std::time::Instant::now();
    match bus.request("weather.today", "", Duration::from_secs(10)).await {
        Err(err) if err.kind() == ErrorKind::NoResponders => {
            println!("weather.today: {err} (after {:?}, not 10 s)", started.elapsed());
        }
        other => println!("weather.today: unexpected {other:?}"),
    }
    Ok(())
}
