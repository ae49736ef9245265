//! The conformance suite through a Herald server on 127.0.0.1:0 and the remote
//! client: the same bodies as embedded, over the WebSocket protocol. Every
//! test runs on real time (the network and the server's timers are real).

/// Promises the remote client cannot keep; each marked test must still fail.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "an_unanswered_request_times_out",
        "a remote responder's answer is sent without waiting for the server, so a late answer is dropped there, not refused",
    ),
    (
        "a_payload_over_the_default_limit_is_dead_lettered",
        "the server takes no payload over its own limit (1 MiB unless configured); the engine behind it passes embedded",
    ),
];

async fn bus() -> herald_testkit::TestBus {
    herald_testkit::TestBus::remote().await.with_unsupported(UNSUPPORTED)
}

herald_testkit::conformance_tests!(real_time bus);
