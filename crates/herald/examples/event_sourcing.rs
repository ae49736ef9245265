//! Run with: cargo run -p herald --example event_sourcing
//!
//! A shopping cart as an event-sourced aggregate: commands become events,
//! appended with the version they were decided on. A second writer deciding on
//! a stale version is refused with the actual version, and `execute_with_retry`
//! reloads and decides again. A processor keeps a read model (CQRS).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::processor::HandlerError;
use herald::{Aggregate, Bus, Envelope, Event, Meta, Repository};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum CartEvent {
    ItemAdded { cart: String, sku: String, qty: u32 },
    CheckedOut { cart: String },
}

impl Event for CartEvent {
    fn event_type(&self) -> String {
        match self {
            CartEvent::ItemAdded { .. } => "cart.item_added".into(),
            CartEvent::CheckedOut { .. } => "cart.checked_out".into(),
        }
    }
    fn subject(&self) -> String {
        let (CartEvent::ItemAdded { cart, .. } | CartEvent::CheckedOut { cart }) = self;
        format!("carts.{cart}")
    }
}

enum CartCommand {
    Add(String, u32),
    Checkout,
}

#[derive(Debug, Default)]
struct Cart {
    id: String,
    items: BTreeMap<String, u32>,
    checked_out: bool,
}

#[derive(Debug)]
struct CartError(&'static str);
impl std::fmt::Display for CartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for CartError {}

impl Aggregate for Cart {
    type Event = CartEvent;
    type Command = (String, CartCommand);
    type Error = CartError;

    fn apply(&mut self, event: &CartEvent) {
        match event {
            CartEvent::ItemAdded { cart, sku, qty } => {
                self.id = cart.clone();
                *self.items.entry(sku.clone()).or_default() += qty;
            }
            CartEvent::CheckedOut { .. } => self.checked_out = true,
        }
    }

    fn handle(&self, (cart, command): (String, CartCommand)) -> Result<Vec<CartEvent>, CartError> {
        if self.checked_out {
            return Err(CartError("the cart is checked out"));
        }
        Ok(match command {
            CartCommand::Add(sku, qty) => vec![CartEvent::ItemAdded { cart, sku, qty }],
            CartCommand::Checkout if self.items.is_empty() => return Err(CartError("the cart is empty")),
            CartCommand::Checkout => vec![CartEvent::CheckedOut { cart }],
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let bus = Bus::open(dir.path()).await?;
    let carts = Repository::<Cart>::open(&bus, "carts").await?;

    // The query side: items per cart, kept by a processor.
    let read_model = Arc::new(Mutex::new(BTreeMap::<String, u32>::new()));
    let projection = bus
        .processor("carts", "item-counts")
        .route("carts.*", {
            let read_model = read_model.clone();
            move |delivery| {
                let read_model = read_model.clone();
                async move {
                    let envelope = Envelope::<CartEvent>::from_message(delivery.message)?;
                    if let CartEvent::ItemAdded { cart, qty, .. } = envelope.event {
                        *read_model.lock().expect("read model").entry(cart).or_default() += qty;
                    }
                    Ok::<(), HandlerError>(())
                }
            }
        })
        .start()
        .await?;

    let add = |sku: &str, qty| ("c1".to_string(), CartCommand::Add(sku.to_string(), qty));
    carts.execute("c1", add("apple", 3)).await?;
    carts.execute("c1", add("pear", 1)).await?;

    // Two writers decide on the same version; the second is refused.
    let a = carts.load("c1").await?;
    let b = carts.load("c1").await?;
    let event = |sku: &str| CartEvent::ItemAdded {
        cart: "c1".into(),
        sku: sku.into(),
        qty: 1,
    };
    carts.append(a, vec![event("plum")], &Meta::default()).await?;
    match carts.append(b, vec![event("fig")], &Meta::default()).await {
        Err(err) => println!("stale writer refused: {err}"),
        Ok(_) => println!("unexpected: the stale writer won"),
    }
    // With retry, the command is decided again on the fresh state.
    carts.execute_with_retry("c1", 5, || add("fig", 2)).await?;
    carts.execute("c1", ("c1".to_string(), CartCommand::Checkout)).await?;
    if let Err(err) = carts.execute("c1", add("kiwi", 1)).await {
        println!("after checkout: {err}");
    }
    let cart = carts.load("c1").await?;
    println!(
        "cart {} at version {}: {:?}, checked out: {}",
        cart.state.id, cart.version, cart.state.items, cart.state.checked_out
    );

    while projection.lag().await? > 0 || projection.stats().processed < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("read model: {:?}", read_model.lock().expect("read model"));
    projection.shutdown().await?;
    Ok(())
}
