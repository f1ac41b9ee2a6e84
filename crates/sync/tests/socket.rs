//! The sync socket as a client experiences it, driven frame by frame: identity changes,
//! mutations and their transitions, limits, keep-alive, hostile frames, a client that
//! never reads, and shared query executions. The official clients are driven in
//! `rust_client.rs` and `npm_client.rs`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conflux_common::Identity;
use conflux_functions::Object;
use serde_json::{json, Value as Json};
use support::{decode_ts, now_secs, Ending, RawClient, TestServer, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const ZERO_TS: &str = "AAAAAAAAAAA=";

/// Poll `check` until it holds, or panic with `what` after `PATIENCE`.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn query_updated(transition: &Json, query_id: u32) -> Option<&Json> {
    transition["modifications"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["type"] == "QueryUpdated" && m["queryId"] == query_id)
        .map(|m| &m["value"])
}

/// The next result of query `query_id`, skipping transitions that do not carry one.
async fn next_value(client: &mut RawClient, query_id: u32) -> Json {
    loop {
        let transition = client.next_of("Transition").await;
        if let Some(value) = query_updated(&transition, query_id) {
            return value.clone();
        }
    }
}

// ------------------------------------------------------------------------------------
// Identity
// ------------------------------------------------------------------------------------

#[tokio::test]
async fn signing_in_at_connect_confirms_the_identity_and_the_signed_in_results_together() {
    // The validation delay widens the window in which a naive server would run the
    // query signed out.
    let server = TestServer::start_with(|sync| {
        sync.auth_validation_delay = Some(Duration::from_millis(300));
    })
    .await;
    let mut client = RawClient::connect(&server).await;
    client.authenticate(0, "user:alice:s1").await;
    client
        .subscribe(0, &[(0, "identity:whoami", json!({}))])
        .await;

    let first = client.next().await;
    assert_eq!(first["type"], "Transition");
    assert_eq!(
        first["startVersion"],
        json!({"querySet": 0, "identity": 0, "ts": ZERO_TS})
    );
    assert_eq!(first["endVersion"]["querySet"], 1);
    assert_eq!(
        first["endVersion"]["identity"], 1,
        "the identity is confirmed"
    );
    assert_eq!(query_updated(&first, 0), Some(&json!("alice")));
    assert_eq!(
        server.executions(),
        1,
        "the query ran once, signed in; never with the anonymous identity"
    );
}

#[tokio::test]
async fn a_refreshed_token_for_the_same_session_moves_the_identity_version_without_rerunning() {
    let server = TestServer::start().await;
    let mut client = RawClient::connect(&server).await;
    client.authenticate(0, "user:alice:s1").await;
    client
        .subscribe(
            0,
            &[
                (0, "identity:whoami", json!({})),
                (1, "messages:list", json!({})),
            ],
        )
        .await;
    let first = client.next_of("Transition").await;
    assert_eq!(query_updated(&first, 0), Some(&json!("alice")));
    let executions = server.executions();
    assert_eq!(executions, 2);

    let refreshed = format!("user:alice:s1:{}:refreshed", now_secs() + 3600);
    client.authenticate(1, &refreshed).await;
    let confirmation = client.next_of("Transition").await;
    assert_eq!(confirmation["startVersion"]["identity"], 1);
    assert_eq!(confirmation["endVersion"]["identity"], 2);
    assert_eq!(
        confirmation["modifications"],
        json!([]),
        "nothing changed for the queries"
    );
    assert_eq!(server.executions(), executions, "no query ran again");
    assert_eq!(server.sync.metrics().identity_refreshes, 1);
}

#[tokio::test]
async fn signing_in_later_moves_every_query_to_the_new_identity_in_one_transition() {
    let server = TestServer::start().await;
    let mut client = RawClient::connect(&server).await;
    client
        .subscribe(
            0,
            &[
                (0, "identity:whoami", json!({})),
                (1, "identity:whoami", json!({"unused": 1})),
            ],
        )
        .await;
    // `unused` is not in the validator: the second query fails, but it is a live query
    // all the same and must move with the first.
    let first = client.next_of("Transition").await;
    assert_eq!(query_updated(&first, 0), Some(&json!(null)));

    client.authenticate(0, "user:bob:s9").await;
    let signed_in = client.next_of("Transition").await;
    assert_eq!(signed_in["endVersion"]["identity"], 1);
    assert_eq!(query_updated(&signed_in, 0), Some(&json!("bob")));
    let failed_again = signed_in["modifications"]
        .as_array()
        .expect("modifications")
        .iter()
        .any(|m| m["type"] == "QueryFailed" && m["queryId"] == 1);
    assert!(
        failed_again,
        "the other query was re-run as bob in the same transition: {signed_in}"
    );

    client
        .send(json!({"type": "Authenticate", "tokenType": "None", "baseVersion": 1}))
        .await;
    let signed_out = client.next_of("Transition").await;
    assert_eq!(signed_out["endVersion"]["identity"], 2);
    assert_eq!(query_updated(&signed_out, 0), Some(&json!(null)));
}

#[tokio::test]
async fn a_rejected_token_gets_auth_error_with_its_base_version_and_the_socket_closes() {
    let server = TestServer::start().await;
    let mut client = RawClient::connect(&server).await;
    client.authenticate(0, "forged-token").await;
    client
        .subscribe(0, &[(0, "identity:whoami", json!({}))])
        .await;

    let mut seen = Vec::new();
    let ending = client.ending(&mut seen).await;
    assert_eq!(
        seen,
        vec![json!({
            "type": "AuthError",
            "error": "Could not verify the token's signature",
            "baseVersion": 0,
            "authUpdateAttempted": true,
        })]
    );
    assert_eq!(ending, Ending::Closed(None), "closed without a close code");
    assert_eq!(
        server.executions(),
        0,
        "the subscription after the refused token never ran"
    );
    assert_eq!(server.sync.metrics().auth_rejections, 1);
}

#[tokio::test]
async fn a_token_that_expires_while_in_use_ends_with_auth_error_not_attempted() {
    let server = TestServer::start().await;
    let mut client = RawClient::connect(&server).await;
    // Two to three seconds of life: enough for the first Transition even on a busy
    // machine (with `+ 1` the token could expire within milliseconds of signing in).
    let token = format!("user:alice:s1:{}", now_secs() + 3);
    client.authenticate(0, &token).await;
    client
        .subscribe(0, &[(0, "identity:whoami", json!({}))])
        .await;
    let first = client.next_of("Transition").await;
    assert_eq!(query_updated(&first, 0), Some(&json!("alice")));

    let mut seen = Vec::new();
    let ending = client.ending(&mut seen).await;
    assert_eq!(
        seen,
        vec![json!({
            "type": "AuthError",
            "error": "Convex token identity expired",
            "baseVersion": 1,
            "authUpdateAttempted": false,
        })]
    );
    assert_eq!(ending, Ending::Closed(None));
    assert_eq!(server.sync.metrics().identities_expired, 1);
}

#[tokio::test]
async fn an_ended_sign_in_session_drops_the_identity_within_100_ms() {
    let server = TestServer::start().await;
    let mut alice = RawClient::connect(&server).await;
    alice.authenticate(0, "user:alice:s1").await;
    alice
        .subscribe(0, &[(0, "identity:whoami", json!({}))])
        .await;
    assert_eq!(
        query_updated(&alice.next_of("Transition").await, 0),
        Some(&json!("alice"))
    );
    let mut carol = RawClient::connect(&server).await;
    carol.authenticate(0, "user:carol:s2").await;
    carol
        .subscribe(0, &[(0, "identity:whoami", json!({}))])
        .await;
    assert_eq!(
        query_updated(&carol.next_of("Transition").await, 0),
        Some(&json!("carol"))
    );

    let ended_at = Instant::now();
    server.tokens.end_session("s1");
    let error = alice.next().await;
    let elapsed = ended_at.elapsed();
    assert_eq!(
        error,
        json!({
            "type": "AuthError",
            "error": conflux_sync::SESSION_ENDED,
            "baseVersion": 1,
            "authUpdateAttempted": false,
        })
    );
    assert!(
        elapsed < Duration::from_millis(100),
        "the identity was dropped after {elapsed:?}"
    );
    assert_eq!(alice.ending(&mut Vec::new()).await, Ending::Closed(None));

    // Another session is not affected.
    carol
        .mutation(0, "messages:send", json!({"body": "still here"}))
        .await;
    let response = carol.next_of("MutationResponse").await;
    assert_eq!(response["success"], true);
    assert_eq!(server.sync.metrics().sessions_ended, 1);
}

// ------------------------------------------------------------------------------------
// Mutations and transitions
// ------------------------------------------------------------------------------------

#[tokio::test]
async fn every_successful_mutation_is_followed_by_a_transition_that_reaches_its_timestamp() {
    let server = TestServer::start().await;
    let mut client = RawClient::connect(&server).await;
    client.subscribe(0, &[]).await;
    let first = client.next_of("Transition").await;
    assert_eq!(first["endVersion"]["querySet"], 1);

    client
        .mutation(0, "messages:send", json!({"body": "hi"}))
        .await;
    let response = client.next().await;
    assert_eq!(response["type"], "MutationResponse");
    assert_eq!(response["requestId"], 0);
    assert_eq!(response["success"], true);
    let commit_ts = decode_ts(response["ts"].as_str().expect("a commit timestamp"));
    let transition = client.next().await;
    assert_eq!(
        transition["type"], "Transition",
        "a transition follows, even with no query"
    );
    assert_eq!(transition["startVersion"], first["endVersion"]);
    let end_ts = decode_ts(transition["endVersion"]["ts"].as_str().expect("ts"));
    assert!(end_ts >= commit_ts, "the transition reaches the mutation");

    // A ConvexError failure is answered at once with its data, and a transition follows
    // too (the Rust client resolves such failures only then).
    client.mutation(1, "messages:fail", json!({})).await;
    let failed = client.next().await;
    assert_eq!(failed["type"], "MutationResponse");
    assert_eq!(failed["success"], false);
    assert_eq!(failed["errorData"], json!({"code": 42}));
    assert!(failed.get("ts").is_none());
    assert_eq!(client.next().await["type"], "Transition");
}

#[tokio::test]
async fn mutations_of_one_socket_run_one_at_a_time_in_arrival_order() {
    let server = TestServer::start().await;
    let mut client = RawClient::connect(&server).await;
    client
        .subscribe(0, &[(0, "messages:list", json!({}))])
        .await;
    client.next_of("Transition").await;
    for n in 0..6u32 {
        let path = if n == 2 {
            "messages:slowSend"
        } else {
            "messages:send"
        };
        client
            .mutation(n, path, json!({"body": format!("m{n}")}))
            .await;
    }
    let mut answered = Vec::new();
    let mut last_ts = 0;
    let mut list = Json::Null;
    while answered.len() < 6 || list.as_array().map_or(0, Vec::len) < 6 {
        let message = client.next().await;
        match message["type"].as_str() {
            Some("MutationResponse") => {
                assert_eq!(message["success"], true, "{message}");
                let ts = decode_ts(message["ts"].as_str().expect("ts"));
                assert!(ts > last_ts, "commit timestamps follow arrival order");
                last_ts = ts;
                answered.push(message["requestId"].as_u64().expect("id"));
            }
            Some("Transition") => {
                if let Some(value) = query_updated(&message, 0) {
                    list = value.clone();
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(answered, vec![0, 1, 2, 3, 4, 5]);
    let bodies: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    assert_eq!(bodies, vec!["m0", "m1", "m2", "m3", "m4", "m5"]);
}

#[tokio::test]
async fn a_mutation_resent_with_the_same_session_and_request_id_is_applied_once() {
    let server = TestServer::start().await;
    // The npm client keeps its session id across sockets and resends unanswered
    // mutations with their request ids after a reconnect.
    let session = uuid::Uuid::new_v4().to_string();
    let mut first = RawClient::open(&server).await;
    first.session = session.clone();
    first.send_connect().await;
    first
        .mutation(3, "messages:send", json!({"body": "once"}))
        .await;
    let applied = first.next_of("MutationResponse").await;
    assert_eq!(applied["success"], true);
    drop(first);

    let mut second = RawClient::open(&server).await;
    second.session = session;
    second.send_connect().await;
    second
        .mutation(3, "messages:send", json!({"body": "once"}))
        .await;
    let repeated = second.next_of("MutationResponse").await;
    assert_eq!(repeated["success"], true);
    assert_eq!(
        repeated["result"], applied["result"],
        "the stored result (the same document id) comes back"
    );
    let applied_ts = decode_ts(applied["ts"].as_str().expect("ts"));
    assert!(decode_ts(repeated["ts"].as_str().expect("ts")) >= applied_ts);

    // Another session with the same request id is another mutation.
    let mut other = RawClient::connect(&server).await;
    other
        .mutation(3, "messages:send", json!({"body": "other"}))
        .await;
    assert_eq!(other.next_of("MutationResponse").await["success"], true);
    other.subscribe(0, &[(0, "messages:list", json!({}))]).await;
    let list = next_value(&mut other, 0).await;
    let bodies: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    assert_eq!(bodies, vec!["once", "other"]);
}

#[tokio::test]
async fn all_queries_of_a_socket_move_together_to_one_snapshot() {
    let server = Arc::new(TestServer::start().await);
    let mut client = RawClient::connect(&server).await;
    client
        .subscribe(
            0,
            &[
                (0, "messages:list", json!({})),
                (1, "messages:count", json!({})),
            ],
        )
        .await;
    let mut version = json!({"querySet": 0, "identity": 0, "ts": ZERO_TS});
    let first = client.next_of("Transition").await;
    assert_eq!(first["startVersion"], version);
    version = first["endVersion"].clone();
    assert_eq!(query_updated(&first, 0), Some(&json!([])));
    assert_eq!(query_updated(&first, 1), Some(&json!(0.0)));
    let writer = {
        let server = server.clone();
        tokio::spawn(async move {
            for n in 0..25 {
                server
                    .mutate("messages:send", json!({"body": format!("n{n}")}))
                    .await;
            }
        })
    };
    let (mut list_len, mut count) = (Some(0.0), Some(0.0));
    let mut transitions = 0;
    while count != Some(25.0) {
        let transition = client.next_of("Transition").await;
        assert_eq!(
            transition["startVersion"], version,
            "transitions chain exactly"
        );
        version = transition["endVersion"].clone();
        if let Some(list) = query_updated(&transition, 0) {
            list_len = Some(list.as_array().expect("a list").len() as f64);
        }
        if let Some(value) = query_updated(&transition, 1) {
            count = value.as_f64();
        }
        assert_eq!(
            list_len, count,
            "the list and the count describe the same snapshot: {transition}"
        );
        transitions += 1;
    }
    writer.await.expect("the writer finishes");
    assert!(transitions >= 1);
}

// ------------------------------------------------------------------------------------
// Sharing
// ------------------------------------------------------------------------------------

#[tokio::test]
async fn a_thousand_subscriptions_to_one_query_run_it_once_per_write() {
    let server = TestServer::start().await;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        let mut client = RawClient::connect(&server).await;
        client
            .subscribe(0, &[(0, "messages:list", json!({}))])
            .await;
        assert_eq!(
            query_updated(&client.next_of("Transition").await, 0),
            Some(&json!([]))
        );
        sockets.push(client);
    }
    let manager = server.sync.subscriptions.clone();
    let mut live = Vec::new();
    for _ in 0..996 {
        let mut query = manager
            .subscribe("messages:list", Object::new(), Identity::Anonymous)
            .expect("a valid path");
        let first = query.next().await.expect("a first result");
        assert_eq!(first.result.outcome().ok(), Some(&json!([])));
        live.push(query);
    }
    let before = manager.metrics();
    assert_eq!(before.entries, 1, "one shared entry");
    assert_eq!(before.subscribers, 1000);
    assert_eq!(before.executions, 1, "the first run was shared too");

    server
        .mutate("messages:send", json!({"body": "to everyone"}))
        .await;
    for client in &mut sockets {
        let update = client.next_of("Transition").await;
        let list = query_updated(&update, 0).expect("the new list");
        assert_eq!(list[0]["body"], "to everyone");
    }
    for query in &mut live {
        let update = query.next().await.expect("the new result");
        assert_eq!(
            update.result.outcome().ok().map(|v| &v[0]["body"]),
            Some(&json!("to everyone"))
        );
    }
    let after = manager.metrics();
    assert_eq!(
        after.executions - before.executions,
        1,
        "one write, one run"
    );
    assert_eq!(after.reruns, 1);
    assert_eq!(after.pinned_executions, 0);
}

#[tokio::test]
async fn a_rerun_with_an_identical_result_is_not_sent_and_is_counted_as_spurious() {
    let server = TestServer::start().await;
    let mut client = RawClient::connect(&server).await;
    client
        .subscribe(0, &[(0, "messages:hasAny", json!({}))])
        .await;
    assert_eq!(
        query_updated(&client.next_of("Transition").await, 0),
        Some(&json!(false))
    );
    server.mutate("messages:send", json!({"body": "a"})).await;
    assert_eq!(
        query_updated(&client.next_of("Transition").await, 0),
        Some(&json!(true))
    );
    server.mutate("messages:send", json!({"body": "b"})).await;
    eventually("the second re-run happened", || {
        server.sync.subscriptions.metrics().reruns == 2
    })
    .await;
    assert_eq!(server.sync.subscriptions.metrics().spurious_reruns, 1);
    assert_eq!(
        client.next_within(Duration::from_millis(300)).await,
        None,
        "an unchanged result is not sent again"
    );
}

// ------------------------------------------------------------------------------------
// Limits, keep-alive, hostile frames
// ------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_over_the_in_flight_limits_fail_with_a_message_naming_the_limit() {
    let server = TestServer::start_with(|sync| {
        sync.config.max_inflight_actions = 1;
        sync.config.max_queued_mutations = 1;
    })
    .await;
    let mut client = RawClient::connect(&server).await;
    client.action(0, "actions:sleep", json!({"ms": 300})).await;
    client.action(1, "actions:sleep", json!({"ms": 0})).await;
    let refused = client.next_of("ActionResponse").await;
    assert_eq!(refused["requestId"], 1);
    assert_eq!(refused["success"], false);
    let text = refused["result"].as_str().expect("a message");
    assert!(text.contains("Too many actions"), "{text}");
    assert!(
        text.contains("CONFLUX_SYNC_MAX_INFLIGHT_ACTIONS_COUNT"),
        "{text}"
    );
    let finished = client.next_of("ActionResponse").await;
    assert_eq!(finished["requestId"], 0);
    assert_eq!(finished["result"], "slept");

    let started = server.probe.slow_send_started.notified();
    tokio::pin!(started);
    started.as_mut().enable();
    client
        .mutation(2, "messages:slowSend", json!({"body": "slow"}))
        .await;
    started.await;
    client
        .mutation(3, "messages:send", json!({"body": "queued"}))
        .await;
    client
        .mutation(4, "messages:send", json!({"body": "one too many"}))
        .await;
    let refused = client.next_of("MutationResponse").await;
    assert_eq!(refused["requestId"], 4);
    assert_eq!(refused["success"], false);
    assert!(refused["result"]
        .as_str()
        .expect("a message")
        .contains("CONFLUX_SYNC_MAX_QUEUED_MUTATIONS_COUNT"));
    assert_eq!(client.next_of("MutationResponse").await["requestId"], 2);
    assert_eq!(client.next_of("MutationResponse").await["requestId"], 3);
}

#[tokio::test]
async fn an_idle_socket_gets_pings_and_a_silent_client_is_dropped() {
    let server = TestServer::start_with(|sync| {
        sync.config.ping_interval = Duration::from_millis(100);
        sync.config.ws_ping_interval = Duration::from_millis(80);
        sync.config.client_timeout = Duration::from_millis(400);
    })
    .await;
    let mut idle = RawClient::connect(&server).await;
    idle.subscribe(0, &[]).await;
    idle.next_of("Transition").await;
    // Reading answers the WebSocket pings, which keeps the client alive.
    assert_eq!(idle.next_within(Duration::from_millis(700)).await, None);
    assert!(idle.pings >= 3, "application pings: {}", idle.pings);
    assert!(idle.ws_pings >= 3, "WebSocket pings: {}", idle.ws_pings);

    let _silent = RawClient::connect(&server).await; // never reads, never answers a ping
    eventually("the silent client is dropped", || {
        server.sync.metrics().clients_timed_out == 1
    })
    .await;
    assert_eq!(
        server.sync.metrics().open_sockets,
        1,
        "the idle client stays"
    );
}

#[tokio::test]
async fn the_sync_path_must_carry_a_version_and_an_upgrade() {
    let server = TestServer::start().await;
    let get = |path: &'static str| {
        let addr = server.url().trim_start_matches("http://").to_string();
        async move {
            let mut stream = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut response = String::new();
            stream.read_to_string(&mut response).await.expect("read");
            response
        }
    };
    let response = get("/api/latest/sync").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.contains("\"code\":\"InvalidVersion\""),
        "{response}"
    );
    assert!(
        response.contains("expected a semantic version"),
        "{response}"
    );

    let response = get("/api/1.48.0/sync").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.contains("only accepts WebSocket upgrades"),
        "{response}"
    );

    // Both spellings upgrade.
    let mut rust_path = RawClient::open_path(&server, "/api/sync").await;
    rust_path.send_connect().await;
    rust_path.subscribe(0, &[]).await;
    assert_eq!(rust_path.next().await["type"], "Transition");
}

/// One hostile conversation: the frames to send and what the `FatalError` must say.
struct Hostile {
    name: &'static str,
    frames: Vec<Message>,
    expect: &'static str,
}

fn text(json: Json) -> Message {
    Message::Text(json.to_string().into())
}

fn connect_frame() -> Message {
    text(json!({
        "type": "Connect",
        "sessionId": uuid::Uuid::new_v4().to_string(),
        "connectionCount": 0,
        "lastCloseReason": "InitialConnect",
    }))
}

#[tokio::test]
async fn hostile_frames_get_a_clear_fatal_error_and_the_server_keeps_serving() {
    let limit = 2 * 1024 * 1024;
    let server = TestServer::start_with(|sync| sync.config.max_message_bytes = limit).await;
    let many: Vec<Json> = (0..10_000)
        .map(|id| json!({"type": "Add", "queryId": id, "udfPath": "messages:list", "args": [{}]}))
        .collect();
    let oversized = format!(
        r#"{{"type":"Mutation","requestId":0,"udfPath":"messages:send","args":[{{"body":"{}"}}]}}"#,
        "x".repeat(limit + 1000)
    );
    let cases = vec![
        Hostile {
            name: "invalid JSON",
            frames: vec![
                connect_frame(),
                Message::Text(r#"{"type": "Mutation", "#.into()),
            ],
            expect: "not valid JSON",
        },
        Hostile {
            name: "unknown type",
            frames: vec![connect_frame(), text(json!({"type": "Subscribe"}))],
            expect: "unknown message type",
        },
        Hostile {
            name: "wrong field type",
            frames: vec![
                connect_frame(),
                text(
                    json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
                    "modifications": [{"type": "Add", "queryId": "zero", "udfPath": "messages:list", "args": [{}]}]}),
                ),
            ],
            expect: "modifications[0].queryId: expected an unsigned 32-bit integer",
        },
        Hostile {
            name: "arguments that are not one object",
            frames: vec![
                connect_frame(),
                text(
                    json!({"type": "Mutation", "requestId": 0, "udfPath": "messages:send", "args": [1, 2]}),
                ),
            ],
            expect: "args",
        },
        Hostile {
            name: "a message before Connect",
            frames: vec![text(
                json!({"type": "Mutation", "requestId": 0, "udfPath": "messages:send", "args": [{"body": "x"}]}),
            )],
            expect: "must be Connect",
        },
        Hostile {
            name: "Connect twice",
            frames: vec![connect_frame(), connect_frame()],
            expect: "Connect was already received",
        },
        Hostile {
            name: "a query-set base version from the future",
            frames: vec![
                connect_frame(),
                text(
                    json!({"type": "ModifyQuerySet", "baseVersion": 5, "newVersion": 6, "modifications": []}),
                ),
            ],
            expect: "Base version 5 passed up doesn't match the current version 0",
        },
        Hostile {
            name: "a query-set version that does not move forward",
            frames: vec![
                connect_frame(),
                text(
                    json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 0, "modifications": []}),
                ),
            ],
            expect: "must be greater than baseVersion",
        },
        Hostile {
            name: "removing a query that is not there",
            frames: vec![
                connect_frame(),
                text(
                    json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
                    "modifications": [{"type": "Remove", "queryId": 9}]}),
                ),
            ],
            expect: "query id 9 is not in the query set",
        },
        Hostile {
            name: "an identity base version from the future",
            frames: vec![
                connect_frame(),
                text(json!({"type": "Authenticate", "tokenType": "None", "baseVersion": 3})),
            ],
            expect:
                "Base identity version 3 passed up doesn't match the current identity version 0",
        },
        Hostile {
            name: "a binary frame",
            frames: vec![connect_frame(), Message::Binary(vec![1u8, 2, 3].into())],
            expect: "binary WebSocket frames are not part of the sync protocol",
        },
        Hostile {
            name: "a frame over the size limit",
            frames: vec![connect_frame(), Message::Text(oversized.into())],
            expect: "more than the limit of 2097152 bytes",
        },
        Hostile {
            name: "10,000 subscriptions in one message",
            frames: vec![
                connect_frame(),
                text(
                    json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": many}),
                ),
            ],
            expect: "more than 1024 queries",
        },
    ];
    let count = cases.len() as u64;
    for case in cases {
        let mut client = RawClient::open(&server).await;
        for frame in case.frames {
            client.send_frame(frame).await;
        }
        let mut seen = Vec::new();
        let ending = client.ending(&mut seen).await;
        let fatal: Vec<&Json> = seen.iter().filter(|m| m["type"] == "FatalError").collect();
        assert_eq!(
            fatal.len(),
            1,
            "{}: one FatalError, got {seen:?}",
            case.name
        );
        let error = fatal[0]["error"].as_str().expect("error text");
        assert!(
            error.contains(case.expect),
            "{}: the error {error:?} should say {:?}",
            case.name,
            case.expect
        );
        assert_eq!(
            ending,
            Ending::Closed(None),
            "{}: closed without a code",
            case.name
        );
    }
    let metrics = server.sync.metrics();
    assert_eq!(metrics.fatal_errors, count);
    assert_eq!(
        metrics.subscriptions.executions, 0,
        "no hostile frame ran a query"
    );

    let mut fine = RawClient::connect(&server).await;
    fine.subscribe(0, &[(0, "messages:count", json!({}))]).await;
    assert_eq!(
        query_updated(&fine.next_of("Transition").await, 0),
        Some(&json!(0.0))
    );
}

// ------------------------------------------------------------------------------------
// A client that never reads
// ------------------------------------------------------------------------------------

/// A socket with a tiny receive buffer whose owner subscribes to a large result and then
/// never reads.
async fn slow_reader(
    server: &TestServer,
    padding: usize,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use futures::SinkExt;
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    let addr: std::net::SocketAddr = server
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let stream = socket.connect(addr).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url("/api/1.48.0/sync"), stream)
        .await
        .expect("the upgrade succeeds");
    let messages = [
        json!({"type": "Connect", "sessionId": uuid::Uuid::new_v4().to_string(),
               "connectionCount": 0, "lastCloseReason": "InitialConnect"}),
        json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
               "modifications": [{"type": "Add", "queryId": 0, "udfPath": "messages:bulky",
                                  "args": [{"padding": padding}]}]}),
    ];
    for message in messages {
        ws.send(Message::Text(message.to_string().into()))
            .await
            .expect("sent");
    }
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_neither_slows_the_others_nor_grows_the_server_buffers() {
    let server = Arc::new(
        TestServer::start_with(|sync| {
            sync.config.slow_client_timeout = Duration::from_millis(1500);
        })
        .await,
    );
    let outbox = server.sync.config.outbox_messages;
    let padding = 1_000_000;
    let _slow = slow_reader(&server, padding).await;

    let mut fast = Vec::new();
    for _ in 0..100 {
        let mut client = RawClient::connect(&server).await;
        client
            .subscribe(0, &[(0, "messages:count", json!({}))])
            .await;
        assert_eq!(
            query_updated(&client.next_of("Transition").await, 0),
            Some(&json!(0.0))
        );
        fast.push(client);
    }

    let mut slowest = Duration::ZERO;
    for n in 1..=12u32 {
        let written = Instant::now();
        server
            .mutate("messages:send", json!({"body": format!("m{n}")}))
            .await;
        for client in &mut fast {
            loop {
                let update = client.next_of("Transition").await;
                if query_updated(&update, 0) == Some(&json!(f64::from(n))) {
                    break;
                }
            }
        }
        slowest = slowest.max(written.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(3),
        "100 clients got every update, the slowest round took {slowest:?}"
    );

    // Keep writing until the slow client's kernel buffers are full and its writer has
    // waited past the slow-client timeout.
    let deadline = Instant::now() + PATIENCE;
    let mut n = 12;
    while server.sync.metrics().slow_clients_disconnected == 0 {
        assert!(
            Instant::now() < deadline,
            "the client that never reads was not disconnected: {:?}",
            server.sync.metrics()
        );
        n += 1;
        server
            .mutate("messages:send", json!({"body": format!("m{n}")}))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("the slow socket is closed", || {
        server.sync.metrics().open_sockets == 100
    })
    .await;
    let metrics = server.sync.metrics();
    println!("slowest round for 100 readers: {slowest:?}; {metrics:?}");
    // Per socket at most: the outbox, one coalesced transition waiting for room, and the
    // frame being written.
    assert!(
        metrics.backlog_high_water_messages <= outbox + 2,
        "at most {} messages waited for one socket, saw {}",
        outbox + 2,
        metrics.backlog_high_water_messages
    );
    assert!(
        metrics.backlog_high_water_bytes <= (outbox + 2) * (padding + 1000),
        "at most {} bytes waited for one socket, saw {}",
        (outbox + 2) * (padding + 1000),
        metrics.backlog_high_water_bytes
    );
    assert!(
        metrics.coalesced_updates >= 1,
        "the slow client's updates were coalesced: {metrics:?}"
    );
}
