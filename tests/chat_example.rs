//! The chat example's contract (`docs/example-chat.md`), over real sockets, with the
//! official Rust client (`convex` 0.10.4): what tests, benchmarks and users of the example
//! rely on.
//!
//! The app is the example's own code (`examples/chat/app.rs`), started in-process on
//! loopback ports picked by the system and a temporary data folder.

#[allow(dead_code)] // helpers only the example's `main` uses
#[path = "../examples/chat/app.rs"]
mod chat;
mod chat_support;

use std::collections::BTreeMap;

use chat_support::{call, http, local_google, sign_in_with_google, test_keys, within, PATIENCE};
use conflux::auth::AuthSetup;
use conflux::{ServeConfig, Server};
use convex::{ConvexClient, FunctionResult, Value};
use futures::StreamExt;
use serde_json::json;

/// The example app as `main` builds it, on a fresh data folder, with a fixed signing key
/// (no provider: the sign-in functions exist, nobody can sign in).
async fn start_chat(data: &tempfile::TempDir) -> Server {
    let (private_key, jwks) = test_keys();
    chat::chat_app()
        .auth(AuthSetup::new().signing_keys(private_key, jwks))
        .start(&ServeConfig::for_tests(data.path()))
        .await
        .expect("the chat example starts")
}

/// The official Rust client, each call bounded by the patience: a call the server never
/// answers fails the test naming the call, instead of hanging it.
struct Client(ConvexClient);

impl Client {
    async fn subscribe(
        &mut self,
        path: &str,
        args: BTreeMap<String, Value>,
    ) -> anyhow::Result<convex::QuerySubscription> {
        let what = format!("subscribing to {path}");
        within(&what, self.0.subscribe(path, args)).await
    }

    async fn query(
        &mut self,
        path: &str,
        args: BTreeMap<String, Value>,
    ) -> anyhow::Result<FunctionResult> {
        within(&format!("the query {path}"), self.0.query(path, args)).await
    }

    async fn mutation(
        &mut self,
        path: &str,
        args: BTreeMap<String, Value>,
    ) -> anyhow::Result<FunctionResult> {
        within(&format!("the mutation {path}"), self.0.mutation(path, args)).await
    }

    async fn set_auth(&mut self, token: Option<String>) {
        within("setting the client's token", self.0.set_auth(token)).await
    }
}

async fn rust_client(server: &Server) -> Client {
    let client = within(
        "connecting the Rust client",
        ConvexClient::new(server.client_url()),
    )
    .await
    .expect("the official Rust client connects");
    Client(client)
}

/// Stop the server (bounded by the patience too).
async fn stop(server: Server) {
    within("the server's shutdown", server.shutdown()).await;
}

/// Close the client, then stop the server. In this order on purpose: `convex` 0.10.4's
/// WebSocket worker spins forever without yielding when its connection fails after its
/// client was dropped (it waits for a reconnect request on a closed channel, which is
/// always ready), and that task then keeps the test's runtime from shutting down. Closing
/// the client while its connection is healthy ends the worker cleanly.
async fn finish(client: Client, server: Server) {
    drop(client);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    stop(server).await;
}

fn string_args(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), Value::String(value.to_string())))
        .collect()
}

/// A message as `messages:list` returns it.
#[derive(Debug, PartialEq)]
struct Message {
    id: String,
    author: String,
    body: String,
    channel: String,
    creation_time: f64,
}

fn messages(result: &FunctionResult) -> Vec<Message> {
    let FunctionResult::Value(Value::Array(items)) = result else {
        panic!("messages:list returns a list, got {result:?}");
    };
    items
        .iter()
        .map(|item| {
            let Value::Object(fields) = item else {
                panic!("a message is an object, got {item:?}");
            };
            let text = |name: &str| match fields.get(name) {
                Some(Value::String(text)) => text.clone(),
                other => panic!("message field `{name}` is {other:?} in {fields:?}"),
            };
            let creation_time = match fields.get("_creationTime") {
                Some(Value::Float64(time)) => *time,
                other => panic!("`_creationTime` is {other:?}"),
            };
            Message {
                id: text("_id"),
                author: text("author"),
                body: text("body"),
                channel: text("channel"),
                creation_time,
            }
        })
        .collect()
}

async fn next(subscription: &mut convex::QuerySubscription) -> FunctionResult {
    tokio::time::timeout(PATIENCE, subscription.next())
        .await
        .expect("a new result within the patience")
        .expect("the subscription stays open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_message_appears_live_for_a_subscriber_as_author_webhook() {
    let data = tempfile::tempdir().expect("a temporary data folder");
    let server = start_chat(&data).await;
    let mut client = rust_client(&server).await;
    let mut general = client
        .subscribe("messages:list", BTreeMap::new())
        .await
        .expect("subscribed to messages:list");
    assert_eq!(messages(&next(&mut general).await), vec![]);

    let response = http()
        .post(format!("{}/messages", server.site_url()))
        .json(&json!({"body": "deploy finished"}))
        .send()
        .await
        .expect("the site origin answers");
    assert_eq!(
        response.status().as_u16(),
        201,
        "POST /messages creates a message"
    );
    let created: serde_json::Value = response.json().await.expect("a JSON answer");
    let id = created["id"]
        .as_str()
        .expect("the answer is {id}")
        .to_owned();

    let live = messages(&next(&mut general).await);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].id, id);
    assert_eq!(live[0].author, "webhook");
    assert_eq!(live[0].body, "deploy finished");
    assert_eq!(live[0].channel, "general");
    finish(client, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_must_be_1_to_2000_characters_or_the_mutation_fails_with_bad_body() {
    let data = tempfile::tempdir().expect("a temporary data folder");
    let server = start_chat(&data).await;
    let mut client = rust_client(&server).await;
    let too_long = "x".repeat(2001);
    for body in ["", too_long.as_str()] {
        let result = client
            .mutation("messages:send", string_args(&[("body", body)]))
            .await
            .expect("the mutation answers");
        let FunctionResult::ConvexError(error) = &result else {
            panic!(
                "a body of {} characters must fail with a ConvexError, got {result:?}",
                body.len()
            );
        };
        let expected: BTreeMap<String, Value> =
            [("code".to_string(), Value::String("BadBody".into()))].into();
        assert_eq!(error.data, Value::Object(expected), "{error:?}");
    }

    let longest = "y".repeat(2000);
    let sent = client
        .mutation(
            "messages:send",
            string_args(&[("body", &longest), ("channel", "long")]),
        )
        .await
        .expect("the mutation answers");
    let FunctionResult::Value(Value::String(id)) = sent else {
        panic!("messages:send returns the new message's id, got {sent:?}");
    };
    let list = client
        .query("messages:list", string_args(&[("channel", "long")]))
        .await
        .expect("the query answers");
    let stored = messages(&list);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    assert_eq!(stored[0].author, "anonymous", "nobody is signed in");
    assert_eq!(stored[0].body.chars().count(), 2000);
    finish(client, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_is_null_when_signed_out() {
    let data = tempfile::tempdir().expect("a temporary data folder");
    let server = start_chat(&data).await;
    let mut client = rust_client(&server).await;
    let viewer = client
        .query("users:viewer", BTreeMap::new())
        .await
        .expect("the query answers");
    assert_eq!(viewer, FunctionResult::Value(Value::Null));
    finish(client, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_lists_its_newest_100_messages_oldest_first() {
    let data = tempfile::tempdir().expect("a temporary data folder");
    let server = start_chat(&data).await;
    let mut client = rust_client(&server).await;
    for n in 1..=105 {
        let result = client
            .mutation(
                "messages:send",
                string_args(&[("body", &format!("busy {n}")), ("channel", "busy")]),
            )
            .await
            .expect("the mutation answers");
        assert!(matches!(result, FunctionResult::Value(_)), "{result:?}");
    }
    client
        .mutation("messages:send", string_args(&[("body", "elsewhere")]))
        .await
        .expect("the mutation answers");

    let busy = messages(
        &client
            .query("messages:list", string_args(&[("channel", "busy")]))
            .await
            .expect("the query answers"),
    );
    let bodies: Vec<String> = busy.iter().map(|m| m.body.clone()).collect();
    let expected: Vec<String> = (6..=105).map(|n| format!("busy {n}")).collect();
    assert_eq!(bodies, expected, "the newest 100, oldest first");
    assert!(busy
        .windows(2)
        .all(|pair| pair[0].creation_time < pair[1].creation_time));

    let general = messages(
        &client
            .query("messages:list", BTreeMap::new())
            .await
            .expect("the query answers"),
    );
    let bodies: Vec<&str> = general.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, vec!["elsewhere"], "the default channel is general");
    finish(client, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_answers_on_the_site_origin_and_under_http_on_the_client_origin() {
    let data = tempfile::tempdir().expect("a temporary data folder");
    let server = start_chat(&data).await;
    let http = http();
    for url in [
        format!("{}/messages", server.site_url()),
        format!("{}/http/messages", server.client_url()),
    ] {
        let response = http
            .post(&url)
            .json(&json!({"body": format!("via {url}"), "channel": "hooks"}))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 201, "POST {url}");
    }
    let listed = call(
        server.client_url(),
        "query",
        "messages:list",
        json!({"channel": "hooks"}),
        None,
    )
    .await;
    let authors: Vec<&str> = listed["value"]
        .as_array()
        .expect("a list of messages")
        .iter()
        .map(|m| m["author"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(authors, vec!["webhook", "webhook"], "{listed}");

    // A body that is not a message is refused with the reason.
    let refused = http
        .post(format!("{}/messages", server.site_url()))
        .body("not json")
        .send()
        .await
        .expect("the server answers");
    assert_eq!(refused.status().as_u16(), 400);
    let reason = refused.text().await.unwrap_or_default();
    assert!(reason.contains("must be JSON"), "{reason}");
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_on_the_wrong_origin_is_a_404_that_names_the_right_url() {
    let data = tempfile::tempdir().expect("a temporary data folder");
    let server = start_chat(&data).await;
    let response = http()
        .post(format!("{}/messages", server.client_url()))
        .json(&json!({"body": "lost"}))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 404);
    let explanation = response.text().await.unwrap_or_default();
    assert!(
        explanation.contains(&format!("{}/messages", server.site_url())),
        "the 404 names the site URL to use: {explanation}"
    );
    assert!(
        explanation.contains(&format!("{}/http/messages", server.client_url())),
        "and the same route on the client origin: {explanation}"
    );
    stop(server).await;
}

/// With the built front-end served by the example and no `SITE_URL`, a Google sign-in ends
/// on the site origin, where the page that started it lives; the signed-in user is then
/// the viewer and the author of what they send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_site_url_sign_in_returns_to_the_site_origin_serving_the_app() {
    let data = tempfile::tempdir().expect("a temporary data folder");
    let site_port = chat_support::free_port();
    let site = format!("http://127.0.0.1:{site_port}");
    let google = local_google(&site).await;
    let (private_key, jwks) = test_keys();
    let auth = AuthSetup::from_vars([
        ("AUTH_GOOGLE_ID", chat_support::GOOGLE_CLIENT_ID.to_owned()),
        (
            "AUTH_GOOGLE_SECRET",
            chat_support::GOOGLE_CLIENT_SECRET.to_owned(),
        ),
        ("AUTH_GOOGLE_ISSUER", google.issuer()),
        ("JWT_PRIVATE_KEY", private_key),
        ("JWKS", jwks),
    ])
    .expect("a valid sign-in configuration");
    assert!(!auth.has_site_url());
    let config = ServeConfig {
        site_port,
        ..ServeConfig::for_tests(data.path())
    };
    let server = chat::chat_app()
        .auth(auth.site_url_defaults_to_site_origin())
        .start(&config)
        .await
        .expect("the chat example starts");
    assert_eq!(server.site_url(), site);

    let signed_in = within(
        "the Google sign-in",
        sign_in_with_google(server.client_url()),
    )
    .await;
    assert_eq!(
        signed_in.landing.origin().ascii_serialization(),
        site,
        "sign-in ended at {}",
        signed_in.landing
    );

    let mut client = rust_client(&server).await;
    client.set_auth(Some(signed_in.token.clone())).await;
    let viewer = client
        .query("users:viewer", BTreeMap::new())
        .await
        .expect("the query answers");
    let FunctionResult::Value(Value::Object(viewer)) = viewer else {
        panic!("users:viewer returns the signed-in user, got {viewer:?}");
    };
    assert_eq!(
        viewer.get("name"),
        Some(&Value::String("Ada Lovelace".into()))
    );
    assert_eq!(
        viewer.get("email"),
        Some(&Value::String("ada@example.com".into()))
    );
    client
        .mutation(
            "messages:send",
            string_args(&[("body", "hello, I am signed in")]),
        )
        .await
        .expect("the mutation answers");
    let listed = messages(
        &client
            .query("messages:list", BTreeMap::new())
            .await
            .expect("the query answers"),
    );
    assert_eq!(
        listed.last().map(|m| m.author.as_str()),
        Some("Ada Lovelace")
    );
    finish(client, server).await;
    within("the local provider's shutdown", google.shutdown()).await;
}
