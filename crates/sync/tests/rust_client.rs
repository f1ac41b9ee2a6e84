//! The official Rust client, `convex` 0.10.4 (`default-features = false`), against a real
//! Conflux server: live queries, mutations with read-your-writes, actions, `ConvexError`
//! data, auth, and reconnecting after the server closes the socket.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use convex::{ConvexClient, ConvexClientBuilder, FunctionResult, Value, WebSocketState};
use futures::StreamExt;
use support::{TestServer, PATIENCE};
use tokio::sync::mpsc;

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), Value::String(value.to_string())))
        .collect()
}

fn bodies(result: &FunctionResult) -> Vec<String> {
    let FunctionResult::Value(Value::Array(items)) = result else {
        panic!("expected a list of messages, got {result:?}");
    };
    items
        .iter()
        .map(|item| match item {
            Value::Object(fields) => match fields.get("body") {
                Some(Value::String(body)) => body.clone(),
                other => panic!("a message without a body: {other:?}"),
            },
            other => panic!("expected a message object, got {other:?}"),
        })
        .collect()
}

async fn next_result(subscription: &mut convex::QuerySubscription) -> FunctionResult {
    tokio::time::timeout(PATIENCE, subscription.next())
        .await
        .expect("a result within the patience")
        .expect("the subscription is open")
}

async fn client(server: &TestServer) -> ConvexClient {
    ConvexClient::new(&server.url())
        .await
        .expect("the client starts")
}

#[tokio::test]
async fn a_subscriber_sees_another_clients_mutation_live() {
    let server = TestServer::start().await;
    let mut reader = client(&server).await;
    let mut writer = client(&server).await;
    let mut messages = reader
        .subscribe("messages:list", BTreeMap::new())
        .await
        .expect("subscribed");
    assert_eq!(
        bodies(&next_result(&mut messages).await),
        Vec::<String>::new()
    );

    let sent = writer
        .mutation("messages:send", args(&[("body", "hello from the writer")]))
        .await
        .expect("the mutation completes");
    assert!(
        matches!(sent, FunctionResult::Value(Value::String(_))),
        "{sent:?}"
    );
    assert_eq!(
        bodies(&next_result(&mut messages).await),
        vec!["hello from the writer"]
    );
}

#[tokio::test]
async fn a_mutation_returns_its_result_and_the_writer_reads_its_own_write() {
    let server = TestServer::start().await;
    let mut client = client(&server).await;
    let mut messages = client
        .subscribe("messages:list", BTreeMap::new())
        .await
        .expect("subscribed");
    assert!(bodies(&next_result(&mut messages).await).is_empty());

    let id = client
        .mutation("messages:send", args(&[("body", "mine")]))
        .await
        .expect("the mutation completes");
    let FunctionResult::Value(Value::String(id)) = id else {
        panic!("the mutation returns the new document's id, got {id:?}")
    };
    assert!(!id.is_empty());
    // The mutation resolved only after a Transition at or after its commit: the query
    // already shows the message.
    let after = client
        .query("messages:list", BTreeMap::new())
        .await
        .expect("the query answers");
    assert_eq!(bodies(&after), vec!["mine"]);
    assert_eq!(bodies(&next_result(&mut messages).await), vec!["mine"]);
}

#[tokio::test]
async fn actions_and_convex_errors_reach_the_rust_client() {
    let server = TestServer::start().await;
    let mut client = client(&server).await;
    let shouted = client
        .action("actions:shout", args(&[("text", "quiet please")]))
        .await
        .expect("the action completes");
    assert_eq!(
        shouted,
        FunctionResult::Value(Value::String("QUIET PLEASE".into()))
    );

    let failed = client
        .mutation("messages:fail", BTreeMap::new())
        .await
        .expect("the mutation completes");
    let FunctionResult::ConvexError(error) = failed else {
        panic!("expected a ConvexError, got {failed:?}")
    };
    assert!(
        error.message.contains("this message cannot be sent"),
        "{}",
        error.message
    );
    let mut data = BTreeMap::new();
    data.insert("code".to_string(), Value::Float64(42.0));
    assert_eq!(error.data, Value::Object(data));

    let missing = client
        .query("messages:nope", BTreeMap::new())
        .await
        .expect("the query answers");
    let FunctionResult::ErrorMessage(message) = missing else {
        panic!("expected an error message, got {missing:?}")
    };
    assert!(
        message.contains("Could not find public function for 'messages:nope'"),
        "{message}"
    );
}

#[tokio::test]
async fn auth_is_set_and_cleared_and_a_rejected_token_never_signs_anyone_in() {
    let server = TestServer::start().await;
    let mut alice = client(&server).await;
    alice.set_auth(Some("user:alice:s1".to_string())).await;
    let mut who = alice
        .subscribe("identity:whoami", BTreeMap::new())
        .await
        .expect("subscribed");
    assert_eq!(
        next_result(&mut who).await,
        FunctionResult::Value(Value::String("alice".into()))
    );
    alice.set_auth(None).await;
    assert_eq!(
        next_result(&mut who).await,
        FunctionResult::Value(Value::Null),
        "signed out, the query runs again as nobody"
    );

    let mut mallory = client(&server).await;
    mallory.set_auth(Some("forged".to_string())).await;
    let mut mallory_is = mallory
        .subscribe("identity:whoami", BTreeMap::new())
        .await
        .expect("subscribed");
    // The server refuses the token and closes; the Rust client keeps retrying it with a
    // growing back-off. No result is ever computed for its connections meanwhile.
    let nothing = tokio::time::timeout(Duration::from_millis(800), mallory_is.next()).await;
    assert!(
        nothing.is_err(),
        "no result with a refused token: {nothing:?}"
    );
    assert!(server.sync.metrics().auth_rejections >= 1);
}

#[tokio::test]
async fn the_client_reconnects_after_the_server_closes_its_socket() {
    let server = TestServer::start().await;
    let (states_tx, mut states) = mpsc::channel(16);
    let mut reader = ConvexClientBuilder::new(&server.url())
        .with_on_state_change(states_tx)
        .build()
        .await
        .expect("the client starts");
    let mut messages = reader
        .subscribe("messages:list", BTreeMap::new())
        .await
        .expect("subscribed");
    assert!(bodies(&next_result(&mut messages).await).is_empty());
    let mut connected = 0;
    while connected == 0 {
        match tokio::time::timeout(PATIENCE, states.recv()).await {
            Ok(Some(WebSocketState::Connected)) => connected += 1,
            Ok(Some(WebSocketState::Connecting)) => {}
            other => panic!("no Connected state: {other:?}"),
        }
    }

    server.sync.disconnect_all();
    let mut reconnected = false;
    while !reconnected {
        match tokio::time::timeout(PATIENCE, states.recv()).await {
            Ok(Some(WebSocketState::Connected)) => reconnected = true,
            Ok(Some(WebSocketState::Connecting)) => {}
            other => panic!("the client did not reconnect: {other:?}"),
        }
    }
    server
        .mutate(
            "messages:send",
            serde_json::json!({"body": "after the restart"}),
        )
        .await;
    assert_eq!(
        bodies(&next_result(&mut messages).await),
        vec!["after the restart"]
    );
}
