//! Typed events, CloudEvents, and event-sourced aggregates with optimistic
//! concurrency and snapshots.

use herald::events::from_cloudevent;
use herald::sourcing::CommandError;
use herald::{Aggregate, ErrorKind, Event, Meta, Purge, Repository, Subject};
use serde::{Deserialize, Serialize};

use crate::TestBus;

/// A bank account: the aggregate of these tests.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Whether it was opened.
    pub open: bool,
    /// Its balance.
    pub balance: i64,
}

/// What happens to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccountEvent {
    /// Opened for an owner.
    Opened {
        /// Account id.
        id: String,
        /// Its owner.
        owner: String,
    },
    /// Money in.
    Deposited {
        /// Account id.
        id: String,
        /// How much.
        amount: i64,
    },
    /// Money out.
    Withdrew {
        /// Account id.
        id: String,
        /// How much.
        amount: i64,
    },
}

impl Event for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            AccountEvent::Opened { .. } => "account.opened",
            AccountEvent::Deposited { .. } => "account.deposited",
            AccountEvent::Withdrew { .. } => "account.withdrew",
        }
        .to_string()
    }

    fn subject(&self) -> String {
        let (AccountEvent::Opened { id, .. } | AccountEvent::Deposited { id, .. } | AccountEvent::Withdrew { id, .. }) =
            self;
        format!("accounts.{id}")
    }

    fn aggregate_id(&self) -> Option<String> {
        self.subject().strip_prefix("accounts.").map(str::to_string)
    }
}

/// What an account is asked to do.
#[derive(Debug, Clone)]
pub enum AccountCommand {
    /// Open it.
    Open(String, String),
    /// Put money in.
    Deposit(String, i64),
    /// Take money out.
    Withdraw(String, i64),
}

/// Why an account refuses.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Aggregate for Account {
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = Refused;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { .. } => self.open = true,
            AccountEvent::Deposited { amount, .. } => self.balance += amount,
            AccountEvent::Withdrew { amount, .. } => self.balance -= amount,
        }
    }

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, Refused> {
        match command {
            AccountCommand::Open(..) if self.open => Err(Refused("already open".into())),
            AccountCommand::Open(id, owner) => Ok(vec![AccountEvent::Opened { id, owner }]),
            _ if !self.open => Err(Refused("not open".into())),
            AccountCommand::Deposit(id, amount) => Ok(vec![AccountEvent::Deposited { id, amount }]),
            AccountCommand::Withdraw(_, amount) if amount > self.balance => Err(Refused("insufficient funds".into())),
            AccountCommand::Withdraw(id, amount) => Ok(vec![AccountEvent::Withdrew { id, amount }]),
        }
    }
}

fn deposit(id: &str, amount: i64) -> AccountCommand {
    AccountCommand::Deposit(id.to_string(), amount)
}

/// Typed events carry an envelope in headers and map to and from CloudEvents.
pub async fn typed_events_carry_an_envelope_and_map_to_cloudevents(bus: &TestBus) {
    let mut events = bus.subscribe_events::<AccountEvent>("accounts.>", None).await.unwrap();
    let opened = AccountEvent::Opened {
        id: "a1".into(),
        owner: "ann".into(),
    };
    let meta = Meta {
        id: Some("evt-1".into()),
        correlation_id: Some("signup-77".into()),
        causation_id: Some("cmd-5".into()),
    };
    bus.publish_event_with(&opened, &meta).await.unwrap();
    let envelope = events.next().await.unwrap();
    assert_eq!(envelope.event, opened);
    assert_eq!(
        (envelope.id.as_str(), envelope.event_type.as_str()),
        ("evt-1", "account.opened")
    );
    assert_eq!(envelope.subject.as_str(), "accounts.a1");
    assert_eq!(envelope.correlation_id.as_deref(), Some("signup-77"));
    assert_eq!(envelope.causation_id.as_deref(), Some("cmd-5"));

    let next = Meta::caused_by(&envelope);
    assert_eq!(
        (next.correlation_id.as_deref(), next.causation_id.as_deref()),
        (Some("signup-77"), Some("evt-1"))
    );

    let ce = envelope.to_cloudevent().unwrap();
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], "evt-1");
    assert_eq!(ce["type"], "account.opened");
    assert_eq!(ce["subject"], "accounts.a1");
    assert_eq!(ce["source"], "/herald/streams/accounts");
    assert_eq!(ce["datacontenttype"], "application/json");
    assert_eq!(ce["data"]["owner"], "ann");
    assert_eq!(ce["correlationid"], "signup-77");
    assert!(ce["time"].as_str().unwrap().ends_with('Z'));

    // Back in: a CloudEvent from elsewhere becomes a message with the same meaning.
    let mut incoming = ce.clone();
    incoming["id"] = "evt-2".into();
    bus.publish_message(from_cloudevent(&incoming).unwrap()).await.unwrap();
    let again = events.next().await.unwrap();
    assert_eq!((again.event, again.id.as_str()), (opened, "evt-2"));
    assert_eq!(again.correlation_id.as_deref(), Some("signup-77"));

    let mut bad = ce;
    bad.as_object_mut().unwrap().remove("type");
    assert_eq!(from_cloudevent(&bad).unwrap_err().kind(), ErrorKind::InvalidRequest);
    // A message that is not this event type is a typed error, and the subscription goes on.
    bus.publish("accounts.a1", "not json").await.unwrap();
    assert_eq!(events.next().await.unwrap_err().kind(), ErrorKind::InvalidRequest);
}

/// A user removed: the event a typed subscription below asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserDeleted {
    id: String,
}

impl Event for UserDeleted {
    fn event_type(&self) -> String {
        "user.deleted".into()
    }

    fn subject(&self) -> String {
        format!("shop.users.{}", self.id)
    }
}

/// An order taken: the same JSON shape as [`UserDeleted`], another type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    id: String,
}

impl Event for OrderPlaced {
    fn event_type(&self) -> String {
        "order.placed".into()
    }

    fn subject(&self) -> String {
        format!("shop.orders.{}", self.id)
    }
}

/// A typed subscription never yields a message of another event type, even
/// one that decodes as its own: it is a typed error, and the subscription
/// goes on.
pub async fn a_typed_subscription_yields_no_event_of_another_type(bus: &TestBus) {
    let mut deleted = bus.subscribe_events::<UserDeleted>("shop.>", None).await.unwrap();
    bus.publish_event(&OrderPlaced { id: "o1".into() }).await.unwrap();
    bus.publish_event(&UserDeleted { id: "u1".into() }).await.unwrap();
    match deleted.next().await {
        Err(err) => {
            assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
            assert!(err.to_string().contains("order.placed"), "{err}");
        }
        Ok(envelope) => panic!("an order came out as {envelope:?}"),
    }
    let envelope = deleted.next().await.unwrap();
    assert_eq!(envelope.event, UserDeleted { id: "u1".into() });
    assert_eq!(envelope.event_type, "user.deleted");
}

/// An aggregate is rebuilt from its events; refused commands append nothing.
pub async fn an_aggregate_is_rebuilt_from_its_events(bus: &TestBus) {
    let repo = Repository::<Account>::open(bus, "bank").await.unwrap();
    assert_eq!(repo.load("acct1").await.unwrap().version, 0);
    repo.execute("acct1", AccountCommand::Open("acct1".into(), "ann".into()))
        .await
        .unwrap();
    repo.execute("acct2", AccountCommand::Open("acct2".into(), "bo".into()))
        .await
        .unwrap();
    repo.execute("acct1", deposit("acct1", 100)).await.unwrap();
    let stored = repo
        .execute("acct1", AccountCommand::Withdraw("acct1".into(), 30))
        .await
        .unwrap();
    let loaded = repo.load("acct1").await.unwrap();
    assert_eq!(
        loaded.state,
        Account {
            open: true,
            balance: 70
        }
    );
    assert_eq!(loaded.version, stored[0].seq);
    assert_eq!(
        loaded.version, 4,
        "versions are stream seqs; acct2's event sits between"
    );

    match repo
        .execute("acct1", AccountCommand::Withdraw("acct1".into(), 1000))
        .await
    {
        Err(CommandError::Rejected(Refused(reason))) => assert_eq!(reason, "insufficient funds"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        repo.load("acct1").await.unwrap().version,
        4,
        "a refused command appends nothing"
    );
    assert_eq!(kind_of(repo.load("a.b").await), ErrorKind::InvalidSubject);
    assert_eq!(
        kind_of(Repository::<Account>::open(bus, "$bank").await),
        ErrorKind::InvalidName
    );
    bus.create_stream(herald::StreamConfig::new("plain").unwrap())
        .await
        .unwrap();
    assert_eq!(
        kind_of(Repository::<Account>::open(bus, "plain").await),
        ErrorKind::InvalidConfig,
        "aggregates need the subject index"
    );
}

fn kind_of<T: std::fmt::Debug>(r: herald::Result<T>) -> ErrorKind {
    r.unwrap_err().kind()
}

/// An append from a stale version fails with the actual version and writes nothing.
pub async fn an_append_with_a_stale_version_fails_with_the_actual_version(bus: &TestBus) {
    let repo = Repository::<Account>::open(bus, "bank").await.unwrap();
    repo.execute("acct1", AccountCommand::Open("acct1".into(), "ann".into()))
        .await
        .unwrap();
    let first = repo.load("acct1").await.unwrap();
    let second = repo.load("acct1").await.unwrap();
    let won = repo
        .append(
            first,
            vec![AccountEvent::Deposited {
                id: "acct1".into(),
                amount: 5,
            }],
            &Meta::default(),
        )
        .await
        .unwrap();
    let err = repo
        .append(
            second,
            vec![AccountEvent::Deposited {
                id: "acct1".into(),
                amount: 7,
            }],
            &Meta::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongExpectedSeq);
    let conflict: CommandError<Refused> = CommandError::Bus(err);
    assert_eq!(
        conflict.conflict_version(),
        Some(won[0].seq),
        "the error carries the actual version"
    );
    assert_eq!(
        repo.load("acct1").await.unwrap().state.balance,
        5,
        "the loser wrote nothing"
    );
}

/// Concurrent commands on one aggregate all land when retried on conflict.
pub async fn commands_racing_on_one_aggregate_are_retried_on_conflict(bus: &TestBus) {
    let repo = std::sync::Arc::new(Repository::<Account>::open(bus, "bank").await.unwrap());
    repo.execute("acct1", AccountCommand::Open("acct1".into(), "ann".into()))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            repo.execute_with_retry("acct1", 50, || deposit("acct1", 10)).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let loaded = repo.load("acct1").await.unwrap();
    assert_eq!(loaded.state.balance, 80, "every deposit landed exactly once");
}

/// Loading starts from the snapshot: events before it are no longer needed.
pub async fn an_aggregate_loads_from_its_snapshot(bus: &TestBus) {
    let kv = bus.kv("bank-snapshots").open().await.unwrap();
    let repo = Repository::<Account>::open(bus, "bank")
        .await
        .unwrap()
        .with_snapshots(kv.clone(), 3);
    repo.execute("acct1", AccountCommand::Open("acct1".into(), "ann".into()))
        .await
        .unwrap();
    for _ in 0..4 {
        repo.execute("acct1", deposit("acct1", 25)).await.unwrap();
    }
    let snapshot = kv.get("acct1").await.unwrap().expect("a snapshot was taken");
    let (version, state): (u64, Account) = serde_json::from_slice(&snapshot.value).unwrap();
    assert_eq!((version, state.balance), (3, 50));
    // Drop the events the snapshot covers: loading must not need them.
    let subject = Subject::new("bank.acct1").unwrap();
    bus.purge_stream("bank", Purge::subject(subject).before(version + 1))
        .await
        .unwrap();
    let loaded = repo.load("acct1").await.unwrap();
    assert_eq!((loaded.state.balance, loaded.version), (100, 5));
}
