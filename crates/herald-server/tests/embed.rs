//! Herald's routes nested in an application's own axum router.
#![allow(clippy::unwrap_used)]

mod common;

use axum::routing::get;
use herald::Bus;

#[tokio::test]
async fn the_router_nests_in_an_existing_axum_app() {
    let hosted = Bus::memory().unwrap();
    let app = axum::Router::new()
        .route("/", get(|| async { "the app's own page" }))
        .nest("/events", herald_server::Server::new(hosted.clone()).router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    assert_eq!(common::get(addr, "/", &[]).await.text(), "the app's own page");
    assert_eq!(common::get(addr, "/events/healthz", &[]).await.text(), "ok");
    let remote = Bus::connect(format!("ws://{addr}/events/v1/ws")).await.unwrap();
    remote
        .publish("orders.created", "through the nested routes")
        .await
        .unwrap();
    let streams = common::get(addr, "/events/v1/streams", &[]).await;
    assert_eq!(streams.status, 200, "{}", streams.text());
    assert_eq!(streams.json()[0]["config"]["name"], "orders");
    assert_eq!(hosted.stream_info("orders").await.unwrap().state.messages, 1);
}
