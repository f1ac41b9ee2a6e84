//! Shared pieces of the HTTP tests: a small in-memory function runner, a token validator,
//! servers on 127.0.0.1 port 0, and a raw HTTP/1.1 client for requests a well-behaved
//! client library refuses to send.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use conflux_common::{Error, ErrorCode, Identity, TokenValidator, UserIdentity};
use conflux_http::{
    handler, ActionRunner, Caller, HttpActionHandler, HttpRouter, RunningServer, ServerConfig,
    SiteRoutes,
};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A deployment with one counter: `counter:get` (query), `counter:add` (mutation, args
/// `{"by": n}`), and `auth:whoami` (action returning the caller's subject or null).
#[derive(Default)]
pub struct CounterRunner {
    count: AtomicI64,
}

#[async_trait]
impl ActionRunner for CounterRunner {
    async fn run_query(
        &self,
        _caller: &Caller,
        path: &str,
        _args: Json,
    ) -> conflux_common::Result<Json> {
        match path {
            "counter:get" => Ok(json!(self.count.load(Ordering::SeqCst))),
            other => Err(not_found(other)),
        }
    }

    async fn run_mutation(
        &self,
        _caller: &Caller,
        path: &str,
        args: Json,
    ) -> conflux_common::Result<Json> {
        match path {
            "counter:add" => {
                let by = args["by"].as_i64().ok_or_else(|| {
                    Error::new(ErrorCode::ArgumentValidation, "`by` must be a number")
                })?;
                Ok(json!(self.count.fetch_add(by, Ordering::SeqCst) + by))
            }
            other => Err(not_found(other)),
        }
    }

    async fn run_action(
        &self,
        caller: &Caller,
        path: &str,
        _args: Json,
    ) -> conflux_common::Result<Json> {
        match path {
            "auth:whoami" => Ok(match caller.identity()? {
                Identity::Anonymous => Json::Null,
                Identity::User(user) => json!(user.subject),
            }),
            other => Err(not_found(other)),
        }
    }
}

fn not_found(path: &str) -> Error {
    Error::new(
        ErrorCode::FunctionNotFound,
        format!("Could not find public function for '{path}'."),
    )
}

/// Accepts the token `alice-token` as user `alice`; rejects every other token.
pub struct AliceOnly;

#[async_trait]
impl TokenValidator for AliceOnly {
    async fn validate(&self, token: &str) -> conflux_common::Result<UserIdentity> {
        if token == "alice-token" {
            Ok(UserIdentity {
                token_identifier: "https://issuer.test|alice".into(),
                subject: "alice".into(),
                issuer: "https://issuer.test".into(),
                attributes: serde_json::Map::new(),
                expires_at_secs: None,
                session_id: None,
            })
        } else {
            Err(Error::new(
                ErrorCode::TokenSignatureInvalid,
                "Could not verify the token's signature",
            ))
        }
    }
}

/// A handler answering 200 with `text`.
pub fn text(text: &'static str) -> HttpActionHandler {
    handler(move |_req, _ctx| async move { Ok(http::Response::new(Bytes::from(text))) })
}

/// Listeners on 127.0.0.1 with free ports.
pub fn test_config(dev_mode: bool) -> ServerConfig {
    ServerConfig {
        client_port: 0,
        site_port: 0,
        dev_mode,
        ..ServerConfig::default()
    }
}

/// The client API the facade would provide, reduced to `POST /api/echo`.
pub fn echo_api() -> axum::Router {
    axum::Router::new().route(
        "/api/echo",
        axum::routing::post(|body: Bytes| async move { body }),
    )
}

/// Start a server with `router` on the site, the echo API on the client API origin.
pub async fn serve(router: HttpRouter, config: ServerConfig) -> RunningServer {
    let site = SiteRoutes {
        router: Arc::new(router),
        runner: Arc::new(CounterRunner::default()),
        token_validator: Some(Arc::new(AliceOnly)),
    };
    conflux_http::start(config, echo_api(), site)
        .await
        .expect("the test server starts on free ports")
}

/// `http://<addr>`.
pub fn base(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Send `request` as is on a new connection and read until the server closes it.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the test server");
    stream.write_all(request).await.expect("send the request");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes))
        .await
        .expect("the server answers within 5 s")
        .expect("read the response");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    RawResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}
