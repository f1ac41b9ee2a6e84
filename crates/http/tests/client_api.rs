//! The client API origin as browser apps and the sync client use it: CORS for apps on
//! another origin, and WebSocket upgrades passing through the server's request pipeline.

mod common;

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use common::{base, serve, test_config, text, CounterRunner};
use conflux_http::{Route, RouteMethod, RouterBuilder, ShutdownOutcome, SiteRoutes};
use futures::{SinkExt, StreamExt};

fn hello_router() -> conflux_http::HttpRouter {
    let mut builder = RouterBuilder::new();
    builder.route(Route::new(RouteMethod::Get, "/hello", text("hello")));
    builder.build().expect("valid routes")
}

#[tokio::test]
async fn a_browser_app_on_another_origin_passes_the_cors_preflight() {
    let server = serve(hello_router(), test_config(false)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/echo", base(server.client_addr()));
    let preflight = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization,convex-client",
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(preflight.status().as_u16(), 200);
    let header = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some("http://localhost:5173")
    );
    assert_eq!(
        header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(header("access-control-max-age").as_deref(), Some("86400"));
    assert_eq!(
        header("access-control-allow-headers").as_deref(),
        Some("content-type,authorization,convex-client")
    );
    assert_eq!(
        header("access-control-allow-methods").as_deref(),
        Some("POST")
    );

    let response = http
        .post(&url)
        .header("origin", "http://localhost:5173")
        .body("hi")
        .send()
        .await
        .expect("answered");
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://localhost:5173")
    );
    assert_eq!(response.text().await.expect("body"), "hi");

    // HTTP actions answer CORS themselves: the site gets no automatic CORS headers.
    let response = http
        .get(format!("{}/hello", base(server.site_addr())))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .expect("answered");
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    server.shutdown().await;
}

async fn echo_once(mut socket: WebSocket) {
    if let Some(Ok(Message::Text(text))) = socket.recv().await {
        // The peer may already be gone; nothing to do then.
        let _ = socket.send(Message::Text(text)).await;
    }
}

#[tokio::test]
async fn a_websocket_on_the_client_api_is_upgraded_through_the_server() {
    let api = axum::Router::new().route(
        "/api/sync",
        axum::routing::get(
            |upgrade: WebSocketUpgrade| async move { upgrade.on_upgrade(echo_once) },
        ),
    );
    let site = SiteRoutes {
        router: Arc::new(hello_router()),
        runner: Arc::new(CounterRunner::default()),
        token_validator: None,
    };
    let server = conflux_http::start(test_config(false), api, site)
        .await
        .expect("the server starts");
    // A doubled slash, as some clients build it from a base URL ending in `/`.
    let url = format!("ws://{}//api/sync", server.client_addr());
    let (mut socket, response) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("the upgrade succeeds");
    assert_eq!(response.status().as_u16(), 101);
    socket
        .send(tokio_tungstenite::tungstenite::Message::text("ping"))
        .await
        .expect("send");
    let echoed = socket.next().await.expect("a reply").expect("a frame");
    assert_eq!(echoed.into_text().expect("text").as_str(), "ping");
    assert_eq!(server.shutdown().await, ShutdownOutcome::Graceful);
}
