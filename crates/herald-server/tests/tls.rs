//! TLS: the server on `wss://` with a certificate from PEM files, and the
//! remote client trusting its CA. (The files in tests/tls are a test CA and a
//! certificate for localhost and 127.0.0.1, valid until 2126; test use only.)
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use herald::{Bus, ConnectOptions, ErrorKind};
use herald_server::{Server, TlsConfig};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tls").join(name)
}

async fn tls_server() -> (std::net::SocketAddr, Bus) {
    let tls = TlsConfig::from_pem_files(fixture("server.pem"), fixture("server.key")).unwrap();
    let hosted = Bus::memory().unwrap();
    (common::start(Server::new(hosted.clone()).tls(tls)).await, hosted)
}

#[tokio::test]
async fn the_remote_client_publishes_and_subscribes_over_wss() {
    let (addr, hosted) = tls_server().await;
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("wss://{host}:{}/v1/ws", addr.port());
        let remote = Bus::connect_with(ConnectOptions::new(url).ca_file(fixture("ca.pem")))
            .await
            .unwrap();
        let mut live = remote
            .subscribe_from("secure.>", herald::ReadFrom::Seq(1))
            .await
            .unwrap();
        remote
            .publish(format!("secure.{}", host.replace('.', "-")), "sealed")
            .await
            .unwrap();
        assert_eq!(live.next().await.unwrap().payload, "sealed".as_bytes());
    }
    assert_eq!(hosted.stream_info("secure").await.unwrap().state.messages, 2);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_or_speaks_plain_text_gets_nothing() {
    let (addr, hosted) = tls_server().await;
    // The system roots do not include the test CA.
    let untrusted = Bus::connect(format!("wss://localhost:{}/v1/ws", addr.port()))
        .await
        .unwrap_err();
    assert_eq!(untrusted.kind(), ErrorKind::Closed);
    assert!(
        untrusted.to_string().to_lowercase().contains("certificate"),
        "{untrusted}"
    );
    // Plain WebSocket to a TLS port: the handshake never completes.
    let plain = Bus::connect(format!("ws://{addr}/v1/ws")).await.unwrap_err();
    assert_eq!(plain.kind(), ErrorKind::Closed, "{plain}");
    assert_eq!(hosted.streams().await.unwrap().len(), 0);
    // Neither ws:// nor wss://: refused before anything is sent.
    let scheme = Bus::connect(format!("http://{addr}/v1/ws")).await.unwrap_err();
    assert_eq!(scheme.kind(), ErrorKind::InvalidRequest, "{scheme}");
}

#[test]
fn a_key_that_is_not_a_key_is_a_config_error() {
    let err = TlsConfig::from_pem_files(fixture("server.pem"), fixture("server.pem")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("server.pem"), "{err}");
}
