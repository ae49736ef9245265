//! Run with: cargo run -p herald --example leader_election
//!
//! Three nodes compete for one lease. The leader heartbeats; when it stops (it
//! "crashes" after a few rounds of work) its lease lapses after the TTL and
//! another node takes over. Every piece of work carries the leader's fencing
//! revision, and the guarded resource (`check_fence`) refuses a stale one, so a
//! leader that paused past its TTL cannot act after it was replaced.

use std::time::Duration;

use herald::{Bus, ErrorKind, Kv};

const TTL: Duration = Duration::from_millis(600);

async fn node(kv: Kv, name: &'static str, crash_after: u32) -> Result<(), herald::Error> {
    loop {
        let mut lease = match kv.lease("leader", name, TTL).await {
            Ok(lease) => lease,
            Err(err) if err.kind() == ErrorKind::WrongExpectedSeq => {
                tokio::time::sleep(TTL / 4).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        println!("{name}: leader at revision {}", lease.revision());
        for round in 1..=crash_after {
            // Work for the leader: the resource checks the fencing revision first.
            kv.check_fence("leader", lease.revision()).await?;
            println!("{name}: round {round} of leader work (fence {})", lease.revision());
            tokio::time::sleep(TTL / 3).await;
            lease.heartbeat().await?;
        }
        println!("{name}: crashes without releasing; the lease lapses in {TTL:?}");
        let stale = lease.revision();
        std::mem::drop(tokio::spawn(async move {
            // Simulates a process that is gone: the lease is neither released nor renewed.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(lease);
        }));
        tokio::time::sleep(TTL * 3).await;
        match kv.check_fence("leader", stale).await {
            Err(err) if err.kind() == ErrorKind::LeaseLost => println!("{name}: back, but fenced off: {err}"),
            other => println!("{name}: back: {other:?}"),
        }
        return Ok(());
    }
}

#[tokio::main]
async fn main() -> Result<(), herald::Error> {
    let dir = tempfile::tempdir()?;
    let bus = Bus::open(dir.path()).await?;
    let kv = bus.kv("election").open().await?;
    let nodes = [("node-a", 3), ("node-b", 3), ("node-c", 3)];
    let tasks: Vec<_> = nodes
        .into_iter()
        .map(|(name, rounds)| tokio::spawn(node(kv.clone(), name, rounds)))
        .collect();
    for task in tasks {
        task.await.expect("node task")?;
    }
    Ok(())
}
