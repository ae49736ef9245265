//! Live subscriptions on the facade.

use std::fmt;

use futures_core::Stream;
use herald_core::{LiveSubscription, Message, Result};

/// A live subscription to a subject pattern across streams. Not durable: it
/// lives as long as this handle.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let bus = herald::Bus::memory()?;
/// bus.publish("orders.created", "before").await?;
/// let mut tail = bus.subscribe_from("orders.>", herald::ReadFrom::Seq(1)).await?;
/// bus.publish("orders.paid", "after").await?;
/// assert_eq!(&tail.next().await?.payload[..], b"before");
/// assert_eq!(&tail.next().await?.payload[..], b"after");
/// # Ok::<(), herald::Error>(())
/// # })?;
/// # Ok::<(), herald::Error>(())
/// ```
pub struct Subscription {
    inner: Box<dyn LiveSubscription>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(inner: Box<dyn LiveSubscription>) -> Self {
        Self { inner }
    }

    /// The next matching message, waiting for one.
    ///
    /// # Errors
    ///
    /// `Lagged` when messages were deleted before this subscriber read them (the
    /// error's detail says how many and where it resumes; keep calling `next`);
    /// `Closed`.
    pub async fn next(&mut self) -> Result<Message> {
        self.inner.next().await
    }

    /// The messages as a stream; `Lagged` arrives as an item and the stream goes on.
    pub fn into_stream(self) -> impl Stream<Item = Result<Message>> + Send + 'static {
        futures_util::stream::unfold(self, |mut sub| async move {
            let item = sub.next().await;
            Some((item, sub))
        })
    }
}
