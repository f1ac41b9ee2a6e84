//! The wire format, checked against the exact JSON the official clients send and expect,
//! and against the Rust client's own encoder and decoder (`convex_sync_types` 0.10.4).

use conflux_common::ErrorCode;
use proptest::prelude::*;
use serde_json::{json, Value as Json};

use super::decode::parse_client_message_with_limit;
use super::*;

const SESSION: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

fn parse(text: &str) -> ClientMessage {
    parse_client_message(text).unwrap_or_else(|err| panic!("{text} should parse: {err}"))
}

fn parse_json(json: Json) -> ClientMessage {
    parse(&json.to_string())
}

fn parse_error(json: Json) -> Error {
    match parse_client_message(&json.to_string()) {
        Ok(message) => panic!("{json} should be refused, got {message:?}"),
        Err(err) => err,
    }
}

fn ts(value: u64) -> Ts {
    Ts::new(value).expect("small timestamps are valid")
}

fn object(json: Json) -> Map<String, Json> {
    match json {
        Json::Object(map) => map,
        other => panic!("{other} is not an object"),
    }
}

fn wire(message: &ServerMessage) -> Json {
    message.to_json().expect("server messages encode")
}

// ---- timestamps ---------------------------------------------------------------------------

#[test]
fn timestamps_are_base64_of_eight_little_endian_bytes() {
    assert_eq!(Ts::ZERO.encode(), "AAAAAAAAAAA=");
    assert_eq!(ts(1000).encode(), "6AMAAAAAAAA=");
    assert_eq!(Ts::MAX.encode(), "/////////38=");
    assert_eq!(Ts::decode("6AMAAAAAAAA=").expect("valid"), ts(1000));
    assert_eq!(Ts::decode("/////////38=").expect("valid"), Ts::MAX);
}

#[test]
fn timestamp_decoder_accepts_the_url_safe_alphabet_like_npm() {
    assert_eq!(Ts::decode("_________38=").expect("url-safe"), Ts::MAX);
    assert_eq!(
        Ts::decode("-AMAAAAAAAA=").expect("url-safe"),
        Ts::decode("+AMAAAAAAAA=").expect("standard")
    );
}

#[test]
fn timestamp_decoder_refuses_wrong_lengths_and_values_the_rust_client_cannot_hold() {
    for (text, expected) in [
        ("AAAAAAAAAAA", "not valid padded base64"),
        ("AAAA", "decodes to 3 bytes"),
        ("AAAAAAAAAAAAAAA=", "decodes to 11 bytes"),
        ("AAAAAAAAAAAAAAAA", "decodes to 12 bytes"),
        ("AAAAAAAA AAA=", "not valid padded base64"),
        ("//////////8=", "larger than the largest timestamp"),
        ("AAAAAAAAAIA=", "larger than the largest timestamp"),
    ] {
        let err = Ts::decode(text).expect_err(text);
        assert_eq!(err.code(), ErrorCode::BadRequest);
        assert!(
            err.message().contains(expected),
            "{text}: {}",
            err.message()
        );
    }
    assert!(Ts::new(i64::MAX as u64 + 1).is_err());
}

proptest! {
    #[test]
    fn every_timestamp_round_trips(value in 0..=i64::MAX as u64) {
        let ts = Ts::new(value).expect("in range");
        let text = ts.encode();
        prop_assert_eq!(text.len(), 12);
        prop_assert_eq!(Ts::decode(&text).expect("round trip"), ts);
    }

    #[test]
    fn no_text_makes_the_decoder_panic(text in ".{0,200}") {
        let _ = parse_client_message(&text);
    }

    #[test]
    fn no_json_shape_makes_the_decoder_panic(
        message_type in prop::sample::select(vec![
            "Connect", "ModifyQuerySet", "Mutation", "Action", "Authenticate", "Event", "X",
        ]),
        field in prop::sample::select(vec![
            "sessionId", "connectionCount", "baseVersion", "newVersion", "modifications",
            "requestId", "udfPath", "args", "tokenType", "value", "maxObservedTimestamp",
            "clientTs", "eventType", "lastCloseReason",
        ]),
        value in arbitrary_json(),
    ) {
        let mut message = json!({
            "type": message_type, "sessionId": SESSION, "connectionCount": 0,
            "baseVersion": 0, "newVersion": 1,
            "modifications": [{"type": "Add", "queryId": 0, "udfPath": "m:f", "args": [{}]}],
            "requestId": 0, "udfPath": "m:f", "args": [{}], "tokenType": "User", "value": "t",
            "eventType": "e", "event": null,
        });
        message[field] = value;
        let _ = parse_client_message(&message.to_string());
    }
}

fn arbitrary_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e20f64..1e20).prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Json::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|map| Json::Object(map.into_iter().collect())),
        ]
    })
}

// ---- client messages as the official clients send them -----------------------------------

#[test]
fn npm_first_connect_is_understood() {
    // npm 1.48: `{...reconnectMetadata, type, sessionId, maxObservedTimestamp: undefined}`.
    let message = parse(&format!(
        r#"{{"connectionCount":0,"lastCloseReason":"InitialConnect","clientTs":1733312345678,"type":"Connect","sessionId":"{SESSION}"}}"#
    ));
    let ClientMessage::Connect(connect) = message else {
        panic!("Connect")
    };
    assert_eq!(connect.session_id.to_string(), SESSION);
    assert_eq!(connect.connection_count, 0);
    assert_eq!(connect.last_close_reason.as_deref(), Some("InitialConnect"));
    assert_eq!(connect.max_observed_timestamp, None);
    assert_eq!(connect.client_ts, Some(1_733_312_345_678));
}

#[test]
fn npm_reconnect_carries_the_highest_timestamp_it_saw() {
    let message = parse_json(json!({
        "connectionCount": 3, "lastCloseReason": null, "clientTs": 1733312345999u64,
        "type": "Connect", "sessionId": SESSION, "maxObservedTimestamp": "6AMAAAAAAAA=",
    }));
    let ClientMessage::Connect(connect) = message else {
        panic!("Connect")
    };
    assert_eq!(connect.connection_count, 3);
    assert_eq!(connect.last_close_reason, None);
    assert_eq!(connect.max_observed_timestamp, Some(ts(1000)));
}

#[test]
fn npm_subscriptions_and_unsubscriptions_are_understood() {
    let message = parse(
        r#"{"type":"ModifyQuerySet","baseVersion":0,"newVersion":1,"modifications":[
            {"type":"Add","queryId":0,"udfPath":"messages:list","args":[{"channel":"general"}]},
            {"type":"Add","queryId":1,"udfPath":"dir/file:count","args":[{}],"journal":null},
            {"type":"Remove","queryId":7}]}"#,
    );
    let ClientMessage::ModifyQuerySet(change) = message else {
        panic!("ModifyQuerySet")
    };
    assert_eq!(change.base_version, QuerySetVersion(0));
    assert_eq!(change.new_version, QuerySetVersion(1));
    let [QuerySetModification::Add(first), QuerySetModification::Add(second), QuerySetModification::Remove { query_id }] =
        change.modifications.as_slice()
    else {
        panic!("two adds and a remove: {:?}", change.modifications)
    };
    assert_eq!(first.query_id, QueryId(0));
    assert_eq!(first.udf_path.as_str(), "messages:list");
    assert_eq!(first.args.as_object()["channel"], "general");
    assert_eq!(first.journal, None);
    assert_eq!(second.udf_path.as_str(), "dir/file:count");
    assert_eq!(*query_id, QueryId(7));
}

#[test]
fn mutation_paths_are_canonicalized_because_npm_sends_them_as_written() {
    let message = parse(
        r#"{"type":"Mutation","requestId":0,"udfPath":"messages","args":[{"body":"hi","n":{"$integer":"BQAAAAAAAAA="}}]}"#,
    );
    let ClientMessage::Mutation(mutation) = message else {
        panic!("Mutation")
    };
    assert_eq!(mutation.request_id, RequestId(0));
    assert_eq!(mutation.udf_path.as_str(), "messages:default");
    assert_eq!(
        mutation.args.as_object()["n"],
        json!({"$integer": "BQAAAAAAAAA="}),
        "Convex JSON is kept as sent for the values layer"
    );
    let message =
        parse(r#"{"type":"Action","requestId":4,"udfPath":"ai.js:summarize","args":[{}]}"#);
    let ClientMessage::Action(action) = message else {
        panic!("Action")
    };
    assert_eq!(action.udf_path.as_str(), "ai:summarize");
    assert_eq!(action.request_id, RequestId(4));
}

#[test]
fn every_authenticate_variant_is_understood() {
    let user =
        parse(r#"{"type":"Authenticate","baseVersion":0,"tokenType":"User","value":"eyJ.a.b"}"#);
    assert_eq!(
        user,
        ClientMessage::Authenticate(Authenticate {
            base_version: IdentityVersion(0),
            token: AuthToken::User {
                value: "eyJ.a.b".into()
            },
        })
    );
    let none = parse(r#"{"type":"Authenticate","baseVersion":1,"tokenType":"None"}"#);
    assert_eq!(
        none,
        ClientMessage::Authenticate(Authenticate {
            base_version: IdentityVersion(1),
            token: AuthToken::None,
        })
    );
    let attributes = json!({"tokenIdentifier": "https://idp|u1", "name": "Ada"});
    for field in ["impersonating", "acting_as"] {
        let mut message =
            json!({"type": "Authenticate", "baseVersion": 2, "tokenType": "Admin", "value": "key"});
        message[field] = attributes.clone();
        assert_eq!(
            parse_json(message),
            ClientMessage::Authenticate(Authenticate {
                base_version: IdentityVersion(2),
                token: AuthToken::Admin {
                    value: "key".into(),
                    impersonating: Some(object(attributes.clone())),
                },
            }),
            "{field}"
        );
    }
}

#[test]
fn telemetry_events_are_understood() {
    let message = parse(
        r#"{"type":"Event","eventType":"NetworkRecoveryReconnect","event":{"timeSavedMs":1200}}"#,
    );
    assert_eq!(
        message,
        ClientMessage::Event(ClientEvent {
            event_type: "NetworkRecoveryReconnect".into(),
            event: json!({"timeSavedMs": 1200}),
        })
    );
}

#[test]
fn unknown_fields_are_ignored_so_newer_clients_keep_working() {
    let message = parse(
        r#"{"type":"Action","requestId":1,"udfPath":"a:b","args":[{}],"futureField":{"x":1}}"#,
    );
    assert_eq!(message.type_name(), "Action");
}

#[test]
fn client_messages_written_by_this_crate_read_back_identically() {
    let messages = [
        parse_json(
            json!({"type": "Connect", "sessionId": SESSION, "connectionCount": 1,
            "lastCloseReason": "InactiveServer", "maxObservedTimestamp": "6AMAAAAAAAA=", "clientTs": 5}),
        ),
        parse_json(
            json!({"type": "ModifyQuerySet", "baseVersion": 1, "newVersion": 2, "modifications": [
            {"type": "Add", "queryId": 3, "udfPath": "a/b:c", "args": [{"k": [1, "x"]}], "journal": "j", "componentPath": "cp"},
            {"type": "Remove", "queryId": 1}]}),
        ),
        parse_json(
            json!({"type": "Mutation", "requestId": 9, "udfPath": "m:f", "args": [{"a": null}]}),
        ),
        parse_json(
            json!({"type": "Action", "requestId": 10, "udfPath": "m:g", "args": [{}], "componentPath": "c"}),
        ),
        parse_json(
            json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "Admin", "value": "k",
            "impersonating": {"subject": "s", "issuer": "i"}}),
        ),
        parse_json(json!({"type": "Authenticate", "baseVersion": 3, "tokenType": "None"})),
        parse_json(json!({"type": "Event", "eventType": "ClientConnect", "event": {"marks": []}})),
    ];
    for message in messages {
        let text = message.to_json_text().expect("client messages encode");
        assert_eq!(parse(&text), message, "{text}");
    }
}

// ---- refusals -----------------------------------------------------------------------------

fn assert_refused(json: Json, code: ErrorCode, expected: &str) {
    let err = parse_error(json.clone());
    assert_eq!(err.code(), code, "{json}: {err}");
    assert_eq!(err.message(), expected, "{json}");
}

#[test]
fn a_wrong_field_is_named_with_its_full_path() {
    assert_refused(
        json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
            {"type": "Remove", "queryId": 0},
            {"type": "Remove", "queryId": 1},
            {"type": "Add", "queryId": "2", "udfPath": "m:f", "args": [{}]}]}),
        ErrorCode::BadRequest,
        "ModifyQuerySet.modifications[2].queryId: expected an unsigned 32-bit integer, got a string",
    );
}

#[test]
fn numbers_outside_the_protocol_ranges_are_refused() {
    for (value, described) in [
        (json!(-1), "the number -1"),
        (json!(1.5), "the number 1.5"),
        (json!(4_294_967_296u64), "the number 4294967296"),
        (json!(null), "null"),
        (json!(true), "the boolean true"),
    ] {
        assert_refused(
            json!({"type": "Mutation", "requestId": value, "udfPath": "m:f", "args": [{}]}),
            ErrorCode::BadRequest,
            &format!("Mutation.requestId: expected an unsigned 32-bit integer, got {described}"),
        );
    }
}

#[test]
fn missing_fields_are_named() {
    assert_refused(
        json!({"type": "Mutation", "udfPath": "m:f", "args": [{}]}),
        ErrorCode::BadRequest,
        "Mutation.requestId: required field is missing",
    );
    assert_refused(
        json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1}),
        ErrorCode::BadRequest,
        "ModifyQuerySet.modifications: required field is missing",
    );
    assert_refused(
        json!({"sessionId": SESSION}),
        ErrorCode::BadRequest,
        "message.type: required field is missing",
    );
}

#[test]
fn arguments_must_be_one_object_in_an_array() {
    let request =
        |args: Json| json!({"type": "Mutation", "requestId": 1, "udfPath": "m:f", "args": args});
    assert_refused(
        request(json!({"body": "hi"})),
        ErrorCode::BadRequest,
        "Mutation.args: expected an array holding exactly one object (the function's arguments), got an object",
    );
    assert_refused(
        request(json!([{}, {}])),
        ErrorCode::BadRequest,
        "Mutation.args: expected an array holding exactly one object (the function's arguments), got an array of 2 elements",
    );
    assert_refused(
        request(json!([])),
        ErrorCode::BadRequest,
        "Mutation.args: expected an array holding exactly one object (the function's arguments), got an array of 0 elements",
    );
    assert_refused(
        request(json!(["hi"])),
        ErrorCode::BadRequest,
        "Mutation.args[0]: expected an object (the function's arguments), got a string",
    );
}

#[test]
fn unknown_types_are_refused_with_the_list_of_known_ones() {
    assert_refused(
        json!({"type": "Subscribe"}),
        ErrorCode::BadRequest,
        "message.type: unknown message type \"Subscribe\"; a client may send Connect, ModifyQuerySet, Mutation, Action, Authenticate, Event",
    );
    assert_refused(
        json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [{"type": "Replace", "queryId": 1}]}),
        ErrorCode::BadRequest,
        "ModifyQuerySet.modifications[0].type: unknown modification type \"Replace\"; expected \"Add\" or \"Remove\"",
    );
    assert_refused(
        json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "Bearer", "value": "x"}),
        ErrorCode::BadRequest,
        "Authenticate.tokenType: unknown token type \"Bearer\"; expected \"User\", \"Admin\" or \"None\"",
    );
}

#[test]
fn bad_session_ids_timestamps_and_paths_are_explained() {
    assert_refused(
        json!({"type": "Connect", "sessionId": "not-a-uuid", "connectionCount": 0}),
        ErrorCode::BadRequest,
        "Connect.sessionId: expected a UUID such as \"3f2504e0-4f89-41d3-9a0c-0305e82c3301\", got \"not-a-uuid\"",
    );
    let err = parse_error(
        json!({"type": "Connect", "sessionId": SESSION, "connectionCount": 0,
        "maxObservedTimestamp": "AAAA"}),
    );
    assert!(
        err.message()
            .starts_with("Connect.maxObservedTimestamp: expected a timestamp as base64"),
        "{}",
        err.message()
    );
    assert_refused(
        json!({"type": "Connect", "sessionId": SESSION, "connectionCount": 0, "maxObservedTimestamp": 1000}),
        ErrorCode::BadRequest,
        "Connect.maxObservedTimestamp: expected a timestamp string (base64 of 8 little-endian bytes), got the number 1000",
    );
    let err =
        parse_error(json!({"type": "Action", "requestId": 0, "udfPath": "a b:c", "args": [{}]}));
    assert_eq!(err.code(), ErrorCode::BadRequest);
    assert!(
        err.message()
            .starts_with("Action.udfPath: invalid function path \"a b:c\""),
        "{}",
        err.message()
    );
}

#[test]
fn long_input_is_never_echoed_in_full() {
    let huge = "x".repeat(10_000);
    let err = parse_error(json!({"type": huge}));
    assert!(err.message().len() < 300, "{}", err.message());
    assert!(err.message().contains("(10000 bytes)"), "{}", err.message());
}

#[test]
fn malformed_json_and_non_objects_are_refused() {
    let err = parse_client_message("{\"type\": \"Connect\"").expect_err("truncated");
    assert_eq!(err.code(), ErrorCode::BadRequest);
    assert!(
        err.message()
            .starts_with("the message is not valid JSON: EOF"),
        "{}",
        err.message()
    );
    assert_refused(
        json!([1, 2]),
        ErrorCode::BadRequest,
        "message: expected a JSON object, got an array of 2 elements",
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = parse_client_message(&deep).expect_err("too deep");
    assert!(
        err.message().contains("recursion limit exceeded"),
        "{}",
        err.message()
    );
}

#[test]
fn oversized_messages_are_refused_before_parsing() {
    let text = format!(
        r#"{{"type":"Mutation","requestId":0,"udfPath":"m:f","args":[{{"blob":"{}"}}]}}"#,
        "x".repeat(2_000)
    );
    let err = parse_client_message_with_limit(&text, 1_024).expect_err("too large");
    assert_eq!(err.code(), ErrorCode::LimitExceeded);
    assert_eq!(
        err.message(),
        format!(
            "the message is {} bytes, more than the limit of 1024 bytes \
             (CONFLUX_SYNC_MAX_MESSAGE_BYTES); send smaller arguments",
            text.len()
        )
    );
    assert!(parse_client_message_with_limit(&text, text.len()).is_ok());
}

// ---- server messages as the clients expect them ------------------------------------------

#[test]
fn a_transition_carries_every_field_the_clients_require() {
    let message = ServerMessage::Transition(Transition {
        start_version: StateVersion::INITIAL,
        end_version: StateVersion {
            query_set: QuerySetVersion(1),
            identity: IdentityVersion(0),
            ts: ts(1000),
        },
        modifications: vec![
            StateModification::QueryUpdated {
                query_id: QueryId(0),
                value: json!([{"body": "hi", "n": {"$integer": "BQAAAAAAAAA="}}]),
                log_lines: vec![],
                journal: None,
            },
            StateModification::QueryFailed {
                query_id: QueryId(1),
                error_message: "Uncaught Error: boom".into(),
                error_data: None,
                log_lines: vec!["[LOG] 'hello'".into()],
                journal: None,
            },
            StateModification::QueryFailed {
                query_id: QueryId(2),
                error_message: "Uncaught ConvexError: nope".into(),
                error_data: Some(json!({"code": 42})),
                log_lines: vec![],
                journal: Some("j1".into()),
            },
            StateModification::QueryRemoved {
                query_id: QueryId(3),
            },
        ],
        client_clock_skew: Some(-12),
        server_ts: Some(ts(1_733_312_345_678_901_234)),
    });
    assert_eq!(
        wire(&message),
        json!({
            "type": "Transition",
            "startVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
            "endVersion": {"querySet": 1, "identity": 0, "ts": "6AMAAAAAAAA="},
            "modifications": [
                {"type": "QueryUpdated", "queryId": 0,
                 "value": [{"body": "hi", "n": {"$integer": "BQAAAAAAAAA="}}],
                 "logLines": [], "journal": null},
                {"type": "QueryFailed", "queryId": 1, "errorMessage": "Uncaught Error: boom",
                 "logLines": ["[LOG] 'hello'"], "journal": null},
                {"type": "QueryFailed", "queryId": 2, "errorMessage": "Uncaught ConvexError: nope",
                 "errorData": {"code": 42}, "logLines": [], "journal": "j1"},
                {"type": "QueryRemoved", "queryId": 3},
            ],
            "clientClockSkew": -12,
            "serverTs": 1_733_312_345_678_901_234u64,
        })
    );
    let text = message.to_json_text().expect("encodes");
    assert!(
        text.contains(r#""serverTs":1733312345678901234"#),
        "integer, never 1.7e18: {text}"
    );
}

#[test]
fn optional_transition_fields_are_omitted_when_unknown() {
    let message = ServerMessage::Transition(Transition {
        start_version: StateVersion::INITIAL,
        end_version: StateVersion::INITIAL,
        modifications: vec![],
        client_clock_skew: None,
        server_ts: None,
    });
    assert_eq!(
        wire(&message),
        json!({
            "type": "Transition",
            "startVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
            "endVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
            "modifications": [],
        })
    );
}

#[test]
fn mutation_and_action_responses_match_the_clients_types() {
    let success = ServerMessage::MutationResponse(MutationResponse {
        request_id: RequestId(3),
        outcome: MutationOutcome::Success {
            value: json!(null),
            ts: ts(1000),
        },
        log_lines: vec!["[INFO] 'saved'".into()],
    });
    assert_eq!(
        wire(&success),
        json!({"type": "MutationResponse", "requestId": 3, "success": true, "result": null,
               "ts": "6AMAAAAAAAA=", "logLines": ["[INFO] 'saved'"]})
    );
    let failure = ServerMessage::MutationResponse(MutationResponse {
        request_id: RequestId(4),
        outcome: MutationOutcome::Failure(FunctionFailure {
            message: "Uncaught Error: nope".into(),
            error_data: None,
        }),
        log_lines: vec![],
    });
    assert_eq!(
        wire(&failure),
        json!({"type": "MutationResponse", "requestId": 4, "success": false,
               "result": "Uncaught Error: nope", "logLines": []})
    );
    let convex_error = ServerMessage::ActionResponse(ActionResponse {
        request_id: RequestId(5),
        outcome: Err(FunctionFailure {
            message: "Uncaught ConvexError: taken".into(),
            error_data: Some(json!("taken")),
        }),
        log_lines: vec![],
    });
    assert_eq!(
        wire(&convex_error),
        json!({"type": "ActionResponse", "requestId": 5, "success": false,
               "result": "Uncaught ConvexError: taken", "errorData": "taken", "logLines": []})
    );
    let action = ServerMessage::ActionResponse(ActionResponse {
        request_id: RequestId(6),
        outcome: Ok(json!({"$integer": "AQAAAAAAAAA="})),
        log_lines: vec![],
    });
    assert_eq!(
        wire(&action),
        json!({"type": "ActionResponse", "requestId": 6, "success": true,
               "result": {"$integer": "AQAAAAAAAAA="}, "logLines": []})
    );
}

#[test]
fn auth_errors_fatal_errors_and_pings_match_the_clients_types() {
    let auth = ServerMessage::AuthError(AuthError {
        error: "Could not validate token: Token expired 3 seconds ago".into(),
        base_version: IdentityVersion(0),
        auth_update_attempted: true,
    });
    assert_eq!(
        wire(&auth),
        json!({"type": "AuthError", "error": "Could not validate token: Token expired 3 seconds ago",
               "baseVersion": 0, "authUpdateAttempted": true})
    );
    let fatal = ServerMessage::FatalError(FatalError {
        error: "Base version 3 passed up doesn't match the current version 2".into(),
    });
    assert_eq!(
        wire(&fatal),
        json!({"type": "FatalError", "error": "Base version 3 passed up doesn't match the current version 2"})
    );
    assert_eq!(
        ServerMessage::Ping.to_json_text().expect("encodes"),
        r#"{"type":"Ping"}"#
    );
}

// ---- the official Rust client's own encoder and decoder -----------------------------------

mod rust_client {
    use std::str::FromStr;

    use convex_sync_types as sync;

    use super::*;

    fn encoded(message: sync::ClientMessage) -> String {
        Json::try_from(message)
            .expect("the Rust client encodes its messages")
            .to_string()
    }

    fn decoded(message: &ServerMessage) -> sync::ServerMessage<convex::Value> {
        let text = message.to_json_text().expect("encodes");
        let json: Json = serde_json::from_str(&text).expect("valid JSON");
        sync::ServerMessage::try_from(json)
            .unwrap_or_else(|err| panic!("the Rust client refuses {text}: {err:#}"))
    }

    fn udf(path: &str) -> sync::UdfPath {
        sync::UdfPath::from_str(path).expect("valid path")
    }

    fn rust_ts(value: u64) -> sync::Timestamp {
        sync::Timestamp::try_from(value).expect("valid timestamp")
    }

    fn args(json: Json) -> sync::types::SerializedArgs {
        sync::types::SerializedArgs::from_args(vec![json]).expect("valid args")
    }

    #[test]
    fn every_message_the_rust_client_sends_is_understood() {
        let session = uuid::Uuid::parse_str(SESSION).expect("uuid");
        let connect = parse(&encoded(sync::ClientMessage::Connect {
            session_id: sync::SessionId::new(session),
            connection_count: 2,
            last_close_reason: "InactiveServer".into(),
            max_observed_timestamp: Some(rust_ts(1000)),
            client_ts: Some(0),
        }));
        assert_eq!(
            connect,
            ClientMessage::Connect(Connect {
                session_id: SessionId(session),
                connection_count: 2,
                last_close_reason: Some("InactiveServer".into()),
                max_observed_timestamp: Some(ts(1000)),
                client_ts: Some(0),
            })
        );

        let modify = parse(&encoded(sync::ClientMessage::ModifyQuerySet {
            base_version: 0,
            new_version: 1,
            modifications: vec![
                sync::QuerySetModification::Add(sync::Query {
                    query_id: sync::QueryId::new(0),
                    udf_path: udf("messages:list"),
                    args: args(json!({"n": {"$integer": "BQAAAAAAAAA="}})),
                    journal: None,
                    component_path: None,
                }),
                sync::QuerySetModification::Remove {
                    query_id: sync::QueryId::new(4),
                },
            ],
        }));
        let ClientMessage::ModifyQuerySet(change) = modify else {
            panic!("ModifyQuerySet")
        };
        assert_eq!(change.new_version, QuerySetVersion(1));
        let QuerySetModification::Add(add) = &change.modifications[0] else {
            panic!("Add")
        };
        assert_eq!(add.udf_path.as_str(), "messages:list");
        assert_eq!(
            add.args.as_object()["n"],
            json!({"$integer": "BQAAAAAAAAA="})
        );
        assert_eq!(
            change.modifications[1],
            QuerySetModification::Remove {
                query_id: QueryId(4)
            }
        );

        // The Rust client sends paths as the caller wrote them.
        let mutation = parse(&encoded(sync::ClientMessage::Mutation {
            request_id: 7,
            udf_path: udf("messages.js"),
            args: args(json!({})),
            component_path: None,
        }));
        let ClientMessage::Mutation(mutation) = mutation else {
            panic!("Mutation")
        };
        assert_eq!(mutation.udf_path.as_str(), "messages:default");
        assert_eq!(mutation.request_id, RequestId(7));

        let action = parse(&encoded(sync::ClientMessage::Action {
            request_id: 8,
            udf_path: udf("jobs:run"),
            args: args(json!({"x": 1})),
            component_path: None,
        }));
        assert_eq!(action.type_name(), "Action");

        let user = parse(&encoded(sync::ClientMessage::Authenticate {
            base_version: 0,
            token: sync::AuthenticationToken::User("eyJ.a.b".into()),
        }));
        assert_eq!(
            user,
            ClientMessage::Authenticate(Authenticate {
                base_version: IdentityVersion(0),
                token: AuthToken::User {
                    value: "eyJ.a.b".into()
                },
            })
        );
        let signed_out = parse(&encoded(sync::ClientMessage::Authenticate {
            base_version: 1,
            token: sync::AuthenticationToken::None,
        }));
        assert_eq!(
            signed_out,
            ClientMessage::Authenticate(Authenticate {
                base_version: IdentityVersion(1),
                token: AuthToken::None,
            })
        );
        let acting_as = sync::UserIdentityAttributes {
            token_identifier: sync::UserIdentifier::construct("https://idp", "u1"),
            name: Some("Ada".into()),
            ..Default::default()
        };
        let admin = parse(&encoded(sync::ClientMessage::Authenticate {
            base_version: 0,
            token: sync::AuthenticationToken::Admin("admin-key".into(), Some(acting_as)),
        }));
        let ClientMessage::Authenticate(Authenticate {
            token:
                AuthToken::Admin {
                    value,
                    impersonating: Some(attributes),
                },
            ..
        }) = admin
        else {
            panic!("admin with acting_as: {admin:?}")
        };
        assert_eq!(value, "admin-key");
        assert_eq!(attributes["tokenIdentifier"], "https://idp|u1");
        assert_eq!(attributes["name"], "Ada");
    }

    #[test]
    fn every_message_this_server_sends_is_accepted_by_the_rust_client() {
        let transition = decoded(&ServerMessage::Transition(Transition {
            start_version: StateVersion::INITIAL,
            end_version: StateVersion {
                query_set: QuerySetVersion(1),
                identity: IdentityVersion(1),
                ts: Ts::MAX,
            },
            modifications: vec![
                StateModification::QueryUpdated {
                    query_id: QueryId(0),
                    value: json!({"n": {"$integer": "BQAAAAAAAAA="}}),
                    log_lines: vec![],
                    journal: None,
                },
                StateModification::QueryFailed {
                    query_id: QueryId(1),
                    error_message: "Uncaught ConvexError: x".into(),
                    error_data: Some(json!({"code": 42})),
                    log_lines: vec![],
                    journal: None,
                },
                StateModification::QueryRemoved {
                    query_id: QueryId(2),
                },
            ],
            client_clock_skew: None,
            server_ts: Some(ts(1_733_312_345_678_901_234)),
        }));
        let sync::ServerMessage::Transition {
            start_version,
            end_version,
            modifications,
            server_ts,
            ..
        } = transition
        else {
            panic!("Transition")
        };
        assert_eq!(start_version, sync::StateVersion::initial());
        assert_eq!(end_version.ts, rust_ts(i64::MAX as u64));
        assert_eq!((end_version.query_set, end_version.identity), (1, 1));
        assert_eq!(server_ts, Some(rust_ts(1_733_312_345_678_901_234)));
        assert_eq!(modifications.len(), 3);
        match &modifications[0] {
            sync::StateModification::QueryUpdated { value, .. } => {
                let expected: convex::Value =
                    convex::Value::Object([("n".to_string(), convex::Value::Int64(5))].into());
                assert_eq!(value, &expected);
            }
            other => panic!("QueryUpdated expected, got {other:?}"),
        }
        assert!(matches!(
            &modifications[1],
            sync::StateModification::QueryFailed {
                error_data: Some(_),
                ..
            }
        ));

        let mutation = decoded(&ServerMessage::MutationResponse(MutationResponse {
            request_id: RequestId(3),
            outcome: MutationOutcome::Success {
                value: json!("ok"),
                ts: ts(1000),
            },
            log_lines: vec![],
        }));
        assert!(matches!(
            mutation,
            sync::ServerMessage::MutationResponse { request_id: 3, result: Ok(_), ts: Some(t), .. }
                if t == rust_ts(1000)
        ));
        let failed = decoded(&ServerMessage::MutationResponse(MutationResponse {
            request_id: RequestId(4),
            outcome: MutationOutcome::Failure(FunctionFailure {
                message: "boom".into(),
                error_data: None,
            }),
            log_lines: vec![],
        }));
        assert!(matches!(
            failed,
            sync::ServerMessage::MutationResponse {
                result: Err(sync::ErrorPayload::Message(_)),
                ts: None,
                ..
            }
        ));
        let action = decoded(&ServerMessage::ActionResponse(ActionResponse {
            request_id: RequestId(5),
            outcome: Err(FunctionFailure {
                message: "taken".into(),
                error_data: Some(json!("taken")),
            }),
            log_lines: vec!["[LOG] 'x'".into()],
        }));
        assert!(matches!(
            action,
            sync::ServerMessage::ActionResponse {
                result: Err(sync::ErrorPayload::ErrorData { .. }),
                ..
            }
        ));
        let auth = decoded(&ServerMessage::AuthError(AuthError {
            error: "expired".into(),
            base_version: IdentityVersion(2),
            auth_update_attempted: false,
        }));
        assert!(matches!(
            auth,
            sync::ServerMessage::AuthError {
                base_version: Some(2),
                auth_update_attempted: Some(false),
                ..
            }
        ));
        let fatal = decoded(&ServerMessage::FatalError(FatalError {
            error: "bad".into(),
        }));
        assert!(matches!(fatal, sync::ServerMessage::FatalError { .. }));
        assert!(matches!(
            decoded(&ServerMessage::Ping),
            sync::ServerMessage::Ping
        ));
    }
}
