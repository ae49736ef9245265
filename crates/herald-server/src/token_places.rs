//! How many long-lived connections one access token holds at once:
//! WebSocket sessions and live tails, the requests that keep a connection
//! for as long as the client likes ([`Limits::max_connections_per_token`](crate::Limits::max_connections_per_token)).
//! A client that leaks sessions, or one token's holder opening them by the
//! thousand, then uses up its own share and not the server's connections.
//!
//! Requests that end by themselves (everything else, long-poll fetches
//! included: they wait 60 s at most) take no place.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use herald_core::{Error, ErrorKind};

use crate::auth::Caller;
use crate::lock;

/// The places each token holds, and how many it may.
#[derive(Debug)]
pub(crate) struct TokenPlaces {
    most: Option<NonZeroUsize>,
    held: Mutex<HashMap<String, usize>>,
}

/// One place a token holds, given back when dropped (with the session or
/// the tail that holds it).
#[derive(Debug)]
pub(crate) struct TokenPlace {
    places: Arc<TokenPlaces>,
    token: String,
}

impl TokenPlaces {
    pub(crate) fn new(most: Option<NonZeroUsize>) -> TokenPlaces {
        TokenPlaces {
            most,
            held: Mutex::default(),
        }
    }

    /// A place for `caller`'s token; `None` when nothing is counted (no
    /// limit, or a server without tokens).
    ///
    /// # Errors
    ///
    /// `InvalidRequest` when the token holds as many places as it may.
    pub(crate) fn take(self: &Arc<Self>, caller: &Caller) -> Result<Option<TokenPlace>, Error> {
        let (Some(most), Some(token)) = (self.most, caller.token_name()) else {
            return Ok(None);
        };
        let mut held = lock(&self.held);
        let count = held.entry(token.to_owned()).or_insert(0);
        if *count >= most.get() {
            tracing::warn!(token, peer = %caller.peer(), most, "connection refused: the token holds its share");
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "token `{token}` already holds {most} WebSocket sessions and live tails, the most one token may \
                     hold at once (the server's max_connections_per_token); close one first"
                ),
            ));
        }
        *count += 1;
        Ok(Some(TokenPlace {
            places: self.clone(),
            token: token.to_owned(),
        }))
    }
}

impl Drop for TokenPlace {
    fn drop(&mut self) {
        let mut held = lock(&self.places.held);
        if let Some(count) = held.get_mut(&self.token) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.token);
            }
        }
    }
}
