//! Requests a server must survive: malformed paths, oversized bodies, slow headers, slow
//! handlers, and a shutdown with requests in flight.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{base, raw, serve, test_config, text};
use conflux_http::{handler, Route, RouteMethod, RouterBuilder, ServerConfig, ShutdownOutcome};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn hello_router() -> conflux_http::HttpRouter {
    let mut builder = RouterBuilder::new();
    builder
        .route(Route::new(RouteMethod::Get, "/hello", text("hello")))
        .route(Route::new(
            RouteMethod::Post,
            "/upload",
            handler(|req, _ctx| async move {
                Ok(http::Response::new(Bytes::from(format!(
                    "{} bytes",
                    req.body.len()
                ))))
            }),
        ))
        .route(Route::new(
            RouteMethod::Get,
            "/slow",
            handler(|_req, _ctx| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Ok(http::Response::new(Bytes::from("finally")))
            }),
        ));
    builder.build().expect("valid routes")
}

fn json_body(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON ({err}): {text:?}"))
}

#[tokio::test]
async fn malformed_paths_get_400_with_the_reason_and_the_server_keeps_serving() {
    let server = serve(hello_router(), test_config(false)).await;
    let site = server.site_addr();

    let response = raw(
        site,
        b"GET /hello%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 400);
    assert!(
        response.head.contains("content-type: application/json"),
        "{}",
        response.head
    );
    assert_eq!(
        json_body(&response.body),
        json!({
            "code": "BadRequest",
            "message": "The request path `/hello%zz` is not valid: `%zz` is not a percent-escape \
                        (`%` must be followed by two hexadecimal digits; write a literal `%` as `%25`)."
        })
    );

    let response = raw(
        server.client_addr(),
        b"GET /http/caf%C3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(
        json_body(&response.body)["message"],
        "The request path `/http/caf%C3` is not valid: it does not decode to UTF-8. \
         Percent-escapes in a path must encode UTF-8 text."
    );

    // Raw bytes that are not even a valid request target are refused by the parser.
    let response = raw(
        site,
        b"GET /caf\xC3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 400);

    let response = raw(
        site,
        b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((response.status, response.body.as_str()), (200, "hello"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_doubled_slash_is_tolerated_on_both_origins() {
    let server = serve(hello_router(), test_config(false)).await;
    let response = raw(
        server.site_addr(),
        b"GET //hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((response.status, response.body.as_str()), (200, "hello"));
    let response = raw(
        server.client_addr(),
        b"POST //api//echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nping",
    )
    .await;
    assert_eq!((response.status, response.body.as_str()), (200, "ping"));
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_body_gets_413_naming_the_limit_and_its_knob() {
    let config = ServerConfig {
        max_body_bytes: 1000,
        ..test_config(false)
    };
    let server = serve(hello_router(), config).await;
    let http = reqwest::Client::new();
    let expected = json!({
        "code": "PayloadTooLarge",
        "message": "The request body is larger than the limit of 1000 bytes (HTTP_MAX_BODY_BYTES). \
                    Send a smaller body, or raise the limit by setting CONFLUX_HTTP_MAX_BODY_BYTES."
    });

    for url in [
        format!("{}/upload", base(server.site_addr())),
        format!("{}/api/echo", base(server.client_addr())),
    ] {
        let response = http
            .post(&url)
            .body(vec![b'x'; 5000])
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), 413, "{url}");
        assert_eq!(
            json_body(&response.text().await.expect("body")),
            expected,
            "{url}"
        );
        let response = http
            .post(&url)
            .body(vec![b'x'; 1000])
            .send()
            .await
            .expect("answered");
        assert_eq!(
            response.status().as_u16(),
            200,
            "exactly the limit is accepted: {url}"
        );
    }

    // A chunked body declares no length: it is counted as it arrives.
    let chunk = "x".repeat(600);
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let response = raw(server.site_addr(), request.as_bytes()).await;
    assert_eq!(response.status, 413);
    assert_eq!(json_body(&response.body), expected);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_stalling_in_its_headers_is_disconnected_while_others_are_served() {
    let config = ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        ..test_config(false)
    };
    let server = serve(hello_router(), config).await;
    let mut slow = TcpStream::connect(server.site_addr())
        .await
        .expect("connect");
    slow.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("send a partial header");
    let stalled_at = Instant::now();

    // While the slow client stalls, others are served.
    let response = raw(
        server.site_addr(),
        b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((response.status, response.body.as_str()), (200, "hello"));

    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest))
        .await
        .expect("the server closes the stalled connection")
        .expect("a clean close");
    let waited = stalled_at.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed too early: {waited:?}"
    );
    assert!(
        rest.is_empty() || String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 408"),
        "no response but a timeout: {:?}",
        String::from_utf8_lossy(&rest)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_past_the_time_limit_gets_503_with_the_knob() {
    let config = ServerConfig {
        request_timeout: Duration::from_millis(100),
        ..test_config(false)
    };
    let server = serve(hello_router(), config).await;
    let response = reqwest::get(format!("{}/slow", base(server.site_addr())))
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        json_body(&response.text().await.expect("body")),
        json!({
            "code": "RequestTimeout",
            "message": "The request was not answered within 100 ms (HTTP_REQUEST_TIMEOUT_MS) and \
                        was stopped. Retry later, or raise the limit by setting \
                        CONFLUX_HTTP_REQUEST_TIMEOUT_MS if this request needs longer."
        })
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_then_refuses_connections() {
    let server = serve(hello_router(), test_config(false)).await;
    let site = server.site_addr();
    let in_flight = tokio::spawn(reqwest::get(format!("http://{site}/slow")));
    // Let the request reach its handler.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.shutdown().await, ShutdownOutcome::Graceful);
    let response = in_flight
        .await
        .expect("the task ran")
        .expect("the request was answered");
    assert_eq!(response.text().await.expect("body"), "finally");
    assert!(
        TcpStream::connect(site).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn shutdown_closes_connections_still_busy_at_the_deadline() {
    let config = ServerConfig {
        shutdown_timeout: Duration::from_millis(50),
        ..test_config(false)
    };
    let server = serve(hello_router(), config).await;
    let in_flight = tokio::spawn(reqwest::get(format!("http://{}/slow", server.site_addr())));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.shutdown().await,
        ShutdownOutcome::Forced {
            open_connections: 1
        }
    );
    assert!(
        in_flight.await.expect("the task ran").is_err(),
        "the connection was closed"
    );
}
