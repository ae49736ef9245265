//! The conformance suite against herald-nats, each test on a fresh nats-server
//! (`sync_interval: always`, its own store, a free port). Every test runs on
//! real time: leases, backoff and expiry run on the server's clock.

/// Promises JetStream cannot keep; docs/nats.md lists them with the rest of
/// the differences. Each marked test still runs and must fail.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "fresh_messages_come_before_redeliveries",
        "JetStream hands out due redeliveries before messages never delivered",
    ),
    (
        "interest_retention_deletes_once_every_consumer_acked",
        "an interest stream with no consumer drops what is published; Herald keeps it for the first consumer",
    ),
    (
        "a_payload_over_the_default_limit_is_dead_lettered",
        "nats-server takes no message over its max_payload (1 MiB unless configured), so no stream holds one",
    ),
    (
        "an_unanswered_request_times_out",
        "a core NATS reply is fire-and-forget: a responder answering after the requester gave up is not told so",
    ),
];

async fn bus() -> herald_testkit::TestBus {
    herald_testkit::TestBus::nats().await.with_unsupported(UNSUPPORTED)
}

herald_testkit::conformance_tests!(real_time bus);
