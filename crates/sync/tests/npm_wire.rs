//! The wire format against the npm client's own protocol code (`convex` 1.48.0): the
//! messages its `LocalSyncState` and encoder produce are understood, in the order it sends
//! them, and every server message this crate writes is accepted by its
//! `parseServerMessage` and `RemoteQuerySet`.

use std::sync::Arc;
use std::time::Duration;

use conflux_common::Identity;
use conflux_sync::protocol::{
    parse_client_message, ActionResponse, AuthError, AuthToken, ClientMessage, FatalError,
    FunctionFailure, IdentityVersion, MutationOutcome, MutationResponse, QueryId,
    QuerySetModification, RequestId, ServerMessage, StateModification, StateVersion, Transition,
    Ts,
};
use conflux_sync::state::{QueryResult, SocketState};
use conflux_sync::udf_path::UdfPath;
use conflux_testkit::node::{event_name, NpmClients};
use serde_json::{json, Value as Json};

const TIMEOUT: Duration = Duration::from_secs(30);

fn ts(value: u64) -> Ts {
    Ts::new(value).expect("valid timestamp")
}

#[tokio::test]
async fn every_message_npm_sends_is_understood_in_the_order_it_sends_them() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let events = npm
        .run("wire-check", &["unused", "client"], TIMEOUT)
        .await
        .expect("the npm encoder runs");

    let mut sent = std::collections::BTreeMap::new();
    for event in events
        .iter()
        .filter(|event| event_name(event) == "clientMessage")
    {
        let name = event["name"].as_str().expect("named").to_string();
        let text = event["text"].as_str().expect("text");
        let message = parse_client_message(text)
            .unwrap_or_else(|err| panic!("npm's {name} message {text} is refused: {err}"));
        sent.insert(name, message);
    }
    let message = |name: &str| {
        sent.get(name)
            .unwrap_or_else(|| panic!("npm sent no {name}"))
            .clone()
    };

    let ClientMessage::Connect(first) = message("firstConnect") else {
        panic!("Connect")
    };
    assert_eq!(first.connection_count, 0);
    assert_eq!(first.last_close_reason.as_deref(), Some("InitialConnect"));
    assert_eq!(first.max_observed_timestamp, None);
    assert!(
        first.client_ts.is_some_and(|ms| ms > 0),
        "npm sends its clock"
    );
    let ClientMessage::Connect(again) = message("reconnect") else {
        panic!("Connect")
    };
    assert_eq!(
        again.session_id, first.session_id,
        "npm keeps its session across sockets"
    );
    assert_eq!(again.last_close_reason, None);
    assert_eq!(again.max_observed_timestamp, Some(ts(1000)));
    let ClientMessage::Connect(at_max) = message("reconnectAtMaxTs") else {
        panic!("Connect")
    };
    assert_eq!(at_max.max_observed_timestamp, Some(Ts::MAX));

    let ClientMessage::ModifyQuerySet(subscribe) = message("subscribeDefaultExport") else {
        panic!("ModifyQuerySet")
    };
    let QuerySetModification::Add(add) = &subscribe.modifications[0] else {
        panic!("Add")
    };
    assert_eq!(add.udf_path.as_str(), "messages:default");
    assert_eq!(
        add.args.as_object()["limit"],
        json!({"$integer": "CgAAAAAAAAA="})
    );
    assert_eq!(add.journal, None);

    let ClientMessage::Mutation(mutation) = message("mutation") else {
        panic!("Mutation")
    };
    assert_eq!(
        Json::Object(mutation.args.as_object().clone()),
        json!({"body": "hi", "data": {"$bytes": "AQID"}, "n": {"$integer": "BQAAAAAAAAA="},
               "x": {"$float": "AAAAAAAA+H8="}})
    );
    let ClientMessage::Action(action) = message("action") else {
        panic!("Action")
    };
    assert_eq!(
        action.udf_path.as_str(),
        "messages:default",
        "npm sends action paths as written"
    );
    let ClientMessage::Authenticate(admin) = message("adminAuthenticate") else {
        panic!("Auth")
    };
    let AuthToken::Admin {
        impersonating: Some(attributes),
        ..
    } = admin.token
    else {
        panic!("Admin")
    };
    assert_eq!(attributes["tokenIdentifier"], "https://idp|u1");
    assert_eq!(message("networkRecoveryEvent").type_name(), "Event");

    // One connection's worth of changes, in npm's order, is accepted by the state machine.
    let mut state = SocketState::new();
    for name in [
        "subscribeDefaultExport",
        "subscribeJsPath",
        "unsubscribe",
        "authenticate",
    ] {
        apply(&mut state, name, message(name));
    }
    assert_eq!(state.query_count(), 1);
    // After a reconnect npm starts from version 0 again: Authenticate, then the whole query
    // set (with `journal: null`), then later changes.
    let mut state = SocketState::new();
    for name in [
        "reconnectAuthenticate",
        "reconnectQuerySet",
        "resumedQuerySet",
        "resumedAuthenticate",
        "adminAuthenticate",
        "signOut",
    ] {
        apply(&mut state, name, message(name));
    }
    assert_eq!(state.received_identity_version(), IdentityVersion(4));
    assert_eq!(state.query_count(), 2);

    // npm's spelling of function paths is ours.
    for event in events
        .iter()
        .filter(|event| event_name(event) == "canonical")
    {
        let input = event["input"].as_str().expect("input");
        let ours = UdfPath::parse(input).unwrap_or_else(|err| panic!("{input}: {err}"));
        assert_eq!(ours.as_str(), event["output"], "{input}");
    }
}

/// Apply the query-set or identity change of npm's message `name` to `state`.
fn apply(state: &mut SocketState, name: &str, message: ClientMessage) {
    let applied = match message {
        ClientMessage::ModifyQuerySet(change) => state.modify_query_set(change).map(|_| ()),
        ClientMessage::Authenticate(authenticate) => state
            .set_identity(authenticate.base_version, Identity::Anonymous)
            .map(|_| ()),
        other => panic!("{name} is not a state change: {other:?}"),
    };
    if let Err(err) = applied {
        panic!("npm's {name} is refused by the state machine: {err}");
    }
}

#[tokio::test]
async fn every_message_this_server_sends_is_accepted_by_npm() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let mut client = npm
        .spawn("wire-check", &["unused", "server"])
        .expect("starts");
    let mut deliver = async |message: &ServerMessage| {
        let text = message.to_json_text().expect("encodes");
        client.send(&json!({ "text": text })).await.expect("sent");
        client.next_event(TIMEOUT).await.expect("npm answers")
    };

    // A client subscribes to two queries; the first transition carries both results.
    let mut state = SocketState::new();
    let ClientMessage::ModifyQuerySet(change) = parse_client_message(
        r#"{"type":"ModifyQuerySet","baseVersion":0,"newVersion":1,"modifications":[
            {"type":"Add","queryId":0,"udfPath":"messages:list","args":[{}]},
            {"type":"Add","queryId":1,"udfPath":"messages:count","args":[{}]}]}"#,
    )
    .expect("parses") else {
        panic!("ModifyQuerySet")
    };
    state.modify_query_set(change).expect("applies");
    let plan = state.plan_transition(ts(1_000)).expect("plan");
    let results = vec![
        Arc::new(
            QueryResult::success(
                json!([{"body": "hi", "n": {"$integer": "BQAAAAAAAAA="}, "raw": {"$bytes": "AQI="},
                        "nan": {"$float": "AAAAAAAA+H8="}}]),
                vec!["[LOG] 'listed'".into()],
                None,
            )
            .expect("result"),
        ),
        Arc::new(
            QueryResult::failure(
                FunctionFailure {
                    message: "Uncaught ConvexError: slow down".into(),
                    error_data: Some(json!({"code": {"$integer": "KgAAAAAAAAA="}})),
                },
                vec![],
                None,
            )
            .expect("result"),
        ),
    ];
    let mut transition = state.commit_transition(plan, results).expect("commit");
    transition.server_ts = Some(ts(1_733_312_345_678_901_234));
    transition.client_clock_skew = Some(-40);
    let seen = deliver(&ServerMessage::Transition(transition)).await;
    assert_eq!(event_name(&seen), "Transition", "{seen}");
    assert_eq!(seen["ts"], "1000");
    assert_eq!(
        seen["endVersion"],
        json!({"querySet": 1, "identity": 0, "ts": "1000"})
    );
    assert_eq!(
        seen["results"]["0"],
        json!({"success": true, "logLines": ["[LOG] 'listed'"],
               "value": [{"body": "hi", "n": {"$integer": "BQAAAAAAAAA="}, "raw": {"$bytes": "AQI="},
                          "nan": {"$float": "AAAAAAAA+H8="}}]})
    );
    assert_eq!(
        seen["results"]["1"],
        json!({"success": false, "errorMessage": "Uncaught ConvexError: slow down",
               "errorData": {"code": {"$integer": "KgAAAAAAAAA="}}, "logLines": []})
    );
    // A JS number: nanoseconds lose their last digits, which npm's `serverTs / 1e6` ignores.
    assert_eq!(
        seen["serverTs"].as_f64(),
        Some(1_733_312_345_678_901_234u64 as f64)
    );
    assert_eq!(seen["clientClockSkew"], -40);

    // A mutation result, then the transition that reaches its timestamp.
    let response = deliver(&ServerMessage::MutationResponse(MutationResponse {
        request_id: RequestId(0),
        outcome: MutationOutcome::Success {
            value: json!({"$integer": "AQAAAAAAAAA="}),
            ts: ts(2_000),
        },
        log_lines: vec![],
    }))
    .await;
    assert_eq!(
        response,
        json!({"event": "MutationResponse", "requestId": 0, "success": true,
               "result": {"$integer": "AQAAAAAAAAA="}, "ts": "2000", "logLines": []})
    );
    state.record_mutation_ts(ts(2_000));
    let plan = state
        .plan_transition(state.min_transition_ts())
        .expect("plan");
    let results = plan
        .queries()
        .iter()
        .map(|_| Arc::new(QueryResult::success(json!(null), vec![], None).expect("result")))
        .collect();
    let removal = state.commit_transition(plan, results).expect("commit");
    let seen = deliver(&ServerMessage::Transition(removal)).await;
    assert_eq!(seen["ts"], "2000", "{seen}");
    assert_eq!(seen["results"]["0"]["value"], Json::Null);

    let failed = deliver(&ServerMessage::MutationResponse(MutationResponse {
        request_id: RequestId(1),
        outcome: MutationOutcome::Failure(FunctionFailure {
            message: "Uncaught Error: no".into(),
            error_data: None,
        }),
        log_lines: vec!["[ERROR] 'no'".into()],
    }))
    .await;
    assert_eq!(failed["success"], false);
    assert_eq!(failed["result"], "Uncaught Error: no");
    assert!(
        failed.get("errorData").is_none(),
        "a plain error is not a ConvexError: {failed}"
    );

    let action = deliver(&ServerMessage::ActionResponse(ActionResponse {
        request_id: RequestId(2),
        outcome: Err(FunctionFailure {
            message: "Uncaught ConvexError: taken".into(),
            error_data: Some(json!("taken")),
        }),
        log_lines: vec![],
    }))
    .await;
    assert_eq!(action["errorData"], "taken");

    let auth = deliver(&ServerMessage::AuthError(AuthError {
        error: "Convex token identity expired".into(),
        base_version: IdentityVersion(0),
        auth_update_attempted: false,
    }))
    .await;
    assert_eq!(auth["message"]["authUpdateAttempted"], false);
    let fatal = deliver(&ServerMessage::FatalError(FatalError {
        error: "bad".into(),
    }))
    .await;
    assert_eq!(fatal["message"]["error"], "bad");
    assert_eq!(event_name(&deliver(&ServerMessage::Ping).await), "Ping");

    // Why the state machine exists: npm refuses a transition that does not start exactly
    // at the version it holds.
    let skipped = deliver(&ServerMessage::Transition(Transition {
        start_version: StateVersion::INITIAL,
        end_version: StateVersion::INITIAL,
        modifications: vec![StateModification::QueryRemoved {
            query_id: QueryId(0),
        }],
        client_clock_skew: None,
        server_ts: None,
    }))
    .await;
    assert_eq!(event_name(&skipped), "rejected");
    assert!(
        skipped["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Invalid start version")),
        "{skipped}"
    );

    client
        .finish(TIMEOUT)
        .await
        .expect("the npm decoder ends cleanly");
}
