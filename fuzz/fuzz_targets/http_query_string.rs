//! The function HTTP API as plain HTTP callers reach it: query strings
//! (`GET /api/query?path=..&args=..&format=..`), percent-encoded function paths
//! (`POST /api/run/<module>/<function>`) and JSON bodies, driven in-process through the
//! routes of `client_api_routes` over an in-memory database.
//!
//! Input, two modes chosen by the first line:
//!
//! - `args` then the arguments text: the target puts the text, percent-encoded, into the
//!   `args` parameter of a `GET /api/query` for the echo query, and into the body of a
//!   `POST /api/run/messages/echo`. Oracle: when the text is a Convex JSON object (or the
//!   legacy `[{...}]`), both answer 200 with exactly those arguments; otherwise both answer
//!   400. What goes into the URL comes back.
//! - `<METHOD> <request target>` then a body: sent as it is. Oracle: the answer is never a
//!   500 (a hostile URL or body is the caller's error, not the server's), and every error
//!   answer is the `{"code", "message"}` JSON body.

#![no_main]

use std::sync::LazyLock;

use axum::body::Body;
use conflux_db::{Database, Schema, TableDef};
use conflux_functions::runner::{system_tables, RunnerOptions};
use conflux_functions::{v, FunctionRunner, Registry, Value};
use conflux_fuzz::{block_on, first_line, text};
use conflux_http::{client_api_routes, ClientApiState};
use http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value as Json;
use tower::ServiceExt;

fn build_api() -> conflux_common::Result<axum::Router> {
    let mut schema =
        Schema::new().table(TableDef::new("messages").index("by_channel", &["channel"]));
    for table in system_tables() {
        schema = schema.table(table);
    }
    let db = Database::open_in_memory(schema)?;
    let mut registry = Registry::new();
    registry.query("messages:echo", v::any(), |_ctx, args| {
        Ok(Value::Object(args))
    })?;
    registry.query(
        "messages:list",
        v::object([("channel", v::optional(v::string()))]),
        |ctx, _args| {
            let messages = ctx.db().query("messages")?.take(10)?;
            Ok(Value::Array(
                messages.iter().map(|m| m.to_value()).collect(),
            ))
        },
    )?;
    let runner = FunctionRunner::new(db, registry, RunnerOptions::default());
    Ok(client_api_routes(ClientApiState {
        runner,
        token_validator: None,
        dev_mode: true,
    }))
}

static API: LazyLock<axum::Router> = LazyLock::new(|| match build_api() {
    Ok(api) => api,
    Err(err) => panic!("the client API under test cannot be built: {err}"),
});

/// Send `request` and return the status and the body parsed as JSON (`Null` if it is not).
fn send(request: Request<Body>) -> (StatusCode, Json) {
    block_on(async {
        let response = match API.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = match axum::body::to_bytes(response.into_body(), usize::MAX).await {
            Ok(bytes) => bytes,
            Err(err) => panic!("an in-memory response body cannot be read: {err}"),
        };
        (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
    })
}

/// The arguments the API must accept for `text`, if any: an object or `[object]` of valid
/// Convex JSON.
fn expected_args(text: &str) -> Option<Value> {
    let json: Json = serde_json::from_str(text).ok()?;
    let object = match json {
        Json::Object(_) => json,
        Json::Array(mut items) if items.len() == 1 && items[0].is_object() => items.remove(0),
        _ => return None,
    };
    match Value::from_convex_json(&object).ok()? {
        value @ Value::Object(_) => Some(value),
        _ => None,
    }
}

fn check_echo(status: StatusCode, body: &Json, expected: &Option<Value>, how: &str) {
    match expected {
        Some(args) => {
            assert_eq!(status, StatusCode::OK, "{how}: valid args refused: {body}");
            assert_eq!(body["status"], "success", "{how}: {body}");
            let echoed = Value::from_convex_json(&body["value"])
                .unwrap_or_else(|err| panic!("{how}: the echo is not Convex JSON: {err}"));
            assert_eq!(&echoed, args, "{how}: the arguments came back changed");
        }
        None => {
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{how}: invalid args: {body}"
            );
            assert!(
                body["code"].is_string() && body["message"].is_string(),
                "{how}: {body}"
            );
        }
    }
}

fn args_mode(args: &str) {
    let expected = expected_args(args);
    let encoded = utf8_percent_encode(args, NON_ALPHANUMERIC);
    let uri = format!("/api/query?path=messages%3Aecho&format=convex_encoded_json&args={encoded}");
    let request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .body(Body::empty())
        .unwrap_or_else(|err| panic!("a percent-encoded query string is a valid URI: {err}"));
    let (status, body) = send(request);
    check_echo(status, &body, &expected, "GET /api/query");

    // The same arguments in a JSON body of /api/run/: only when they are JSON at all.
    let Ok(json) = serde_json::from_str::<Json>(args) else {
        return;
    };
    let body = serde_json::json!({"args": json, "format": "convex_encoded_json"}).to_string();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/run/messages/echo")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|err| panic!("a fixed request is valid: {err}"));
    let (status, body) = send(request);
    check_echo(status, &body, &expected, "POST /api/run/messages/echo");
}

fn raw_mode(request_line: &str, body: &str) {
    let Some((method, target)) = request_line.split_once(' ') else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let mut builder = Request::builder().method(method.clone()).uri(target);
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    let Ok(request) = builder.body(Body::from(body.to_owned())) else {
        return;
    };
    let (status, json) = send(request);
    assert!(
        status.as_u16() < 500 || status.as_u16() == conflux_http::STATUS_UDF_FAILED,
        "{method} {target} answered {status}: {json}"
    );
    if status.is_client_error() && status != StatusCode::NOT_FOUND {
        assert!(
            json["code"].is_string() && json["message"].is_string(),
            "{method} {target} answered {status} without the error body: {json}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let input = text(data);
    let (line, rest) = first_line(&input);
    if line == "args" {
        args_mode(rest);
    } else {
        raw_mode(line, rest);
    }
});
