//! The recording bus users test their own code with.

use herald::recording::{decode, record};
use herald::{ErrorKind, OutgoingMessage, Subject};

use super::sourcing::AccountEvent;
use crate::TestBus;

/// What is published through a recording bus is kept for assertions; what is
/// refused is not.
pub async fn a_recording_bus_keeps_what_was_published(bus: &TestBus) {
    let (recorded_bus, recording) = record(bus.backend().clone());
    recorded_bus.publish("orders.created", "o1").await.unwrap();
    let event = AccountEvent::Deposited {
        id: "a1".into(),
        amount: 5,
    };
    recorded_bus.publish_event(&event).await.unwrap();
    let keyed = OutgoingMessage::new(Subject::new("orders.paid").unwrap(), "o1").id("pay-o1");
    recorded_bus
        .publish_batch(vec![
            keyed.clone(),
            OutgoingMessage::new(Subject::new("orders.paid").unwrap(), "o2"),
        ])
        .await
        .unwrap();
    recorded_bus.publish_message(keyed).await.unwrap();
    let too_big = OutgoingMessage::new(Subject::new("orders.big").unwrap(), vec![0u8; 2 << 20]);
    assert_eq!(
        recorded_bus.publish_message(too_big).await.unwrap_err().kind(),
        ErrorKind::PayloadTooLarge
    );

    let all = recording.published();
    assert_eq!(all.len(), 5, "refused publishes are not recorded");
    assert_eq!(recording.published_to("orders.paid").unwrap().len(), 3);
    assert!(all[4].ack.duplicate, "a deduplicated publish is recorded with its ack");
    assert_eq!(
        recording.events::<AccountEvent>("accounts.>").unwrap(),
        vec![event.clone()]
    );
    assert_eq!(decode::<AccountEvent>(&all[1]).unwrap(), event);
    // Another event type of the same shape is not taken for this one.
    let mut forged = OutgoingMessage::new(Subject::new("accounts.a1").unwrap(), all[1].message.payload.clone());
    forged.headers = all[1].message.headers.clone();
    forged
        .headers
        .insert(herald::events::TYPE_HEADER.into(), "loan.deposited".into());
    recorded_bus.publish_message(forged).await.unwrap();
    let forged = recording.published().pop().unwrap();
    assert_eq!(
        decode::<AccountEvent>(&forged).unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    assert_eq!(
        recording.events::<AccountEvent>("accounts.>").unwrap(),
        vec![event.clone()],
        "nor listed with it"
    );
    // It is the real bus underneath: what was recorded is also stored.
    assert_eq!(bus.stream_info("orders").await.unwrap().state.messages, 3);
    recording.clear();
    assert!(recording.published().is_empty());
}
