//! The function runtime as an app developer relies on it.
#![allow(clippy::unwrap_used)] // test set-up: a failure here is a broken test, not bad input

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conflux_common::{Error, ErrorCode, Identity, UserIdentity};
use conflux_db::{Database, IndexRange, Order, Schema, TableDef};
use conflux_functions::{
    forget_session_requests, system_tables, v, Caller, FunctionRunner, MutationKey, Object,
    Registry, RunnerOptions, Value,
};
use conflux_values::object;

fn schema() -> Schema {
    let mut schema = Schema::new()
        .table(TableDef::new("messages").index("by_channel", &["channel"]))
        .table(TableDef::new("counters").index("by_name", &["name"]));
    for table in system_tables() {
        schema = schema.table(table);
    }
    schema
}

fn registry(runs: Arc<AtomicU32>) -> Registry {
    let mut r = Registry::new();
    r.query(
        "messages:list",
        v::object([("channel", v::optional(v::string()))]),
        |ctx, args| {
            let channel = args
                .get("channel")
                .and_then(Value::as_str)
                .unwrap_or("general")
                .to_string();
            let docs = ctx
                .db()
                .query("messages")?
                .with_index("by_channel", IndexRange::new().eq("channel", channel))?
                .order(Order::Asc)
                .collect()?;
            Ok(Value::Array(docs.iter().map(|d| d.to_value()).collect()))
        },
    )
    .unwrap();
    r.mutation(
        "messages:send",
        v::object([
            ("body", v::required(v::string())),
            ("channel", v::optional(v::string())),
        ]),
        |ctx, args| {
            let body = args.get("body").and_then(Value::as_str).unwrap_or_default();
            if body.is_empty() {
                return Err(Error::user(
                    "message body is empty",
                    serde_json::json!({"code": "BadBody"}),
                ));
            }
            let author = match ctx.auth() {
                Identity::User(user) => user.subject.clone(),
                Identity::Anonymous => "anonymous".into(),
            };
            let channel = args
                .get("channel")
                .and_then(Value::as_str)
                .unwrap_or("general")
                .to_string();
            let id = ctx.db().insert(
                "messages",
                object! {"body" => body, "channel" => channel, "author" => author},
            )?;
            Ok(Value::String(id.to_string()))
        },
    )
    .unwrap();
    r.mutation("counters:increment", v::no_args(), move |ctx, _args| {
        runs.fetch_add(1, Ordering::SeqCst);
        let mut db = ctx.db();
        let existing = db
            .query("counters")?
            .with_index("by_name", IndexRange::new().eq("name", "hits"))?
            .first()?;
        let next = match existing {
            Some(doc) => {
                let n = doc.value.get("n").and_then(Value::as_f64).unwrap_or(0.0) + 1.0;
                db.patch(&doc.id, object! {"n" => n})?;
                n
            }
            None => {
                db.insert("counters", object! {"name" => "hits", "n" => 1.0})?;
                1.0
            }
        };
        Ok(Value::Float64(next))
    })
    .unwrap();
    r.register(
        "secret:read",
        conflux_functions::Visibility::Internal,
        v::no_args(),
        conflux_functions::registry::Handler::Query(Arc::new(|_ctx, _args| {
            Ok(Value::String("internal".into()))
        })),
    )
    .unwrap();
    r.query("slow:loop", v::no_args(), |ctx, _args| loop {
        ctx.db().query("messages")?.first()?;
        std::thread::sleep(Duration::from_millis(20));
    })
    .unwrap();
    r.action(
        "messages:sendTwice",
        v::object([("body", v::string())]),
        |ctx, args| async move {
            ctx.run_mutation("messages:send", args.clone()).await?;
            ctx.run_mutation("messages:send", args).await?;
            let value = ctx.run_query("secret:read", Object::new()).await?;
            ctx.log("sent twice");
            Ok(value)
        },
    )
    .unwrap();
    r
}

fn runner(dir: &std::path::Path, options: RunnerOptions) -> (FunctionRunner, Arc<AtomicU32>) {
    let db = Database::open_sled(dir, schema()).unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    (
        FunctionRunner::new(db, registry(runs.clone()), options),
        runs,
    )
}

fn alice() -> Identity {
    Identity::User(Arc::new(UserIdentity {
        token_identifier: "https://idp|alice".into(),
        subject: "alice".into(),
        issuer: "https://idp".into(),
        attributes: Default::default(),
        expires_at_secs: None,
        session_id: None,
    }))
}

#[tokio::test]
async fn a_mutation_is_visible_to_the_next_query_and_records_its_author() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _) = runner(dir.path(), RunnerOptions::default());
    let sent = runner
        .run_mutation(
            "messages:send",
            object! {"body" => "hi"},
            alice(),
            Caller::Client,
            None,
        )
        .await;
    let ts = sent.ts.expect("a committed mutation has a timestamp");
    assert!(sent.result.is_ok());
    let listed = runner
        .run_query(
            "messages:list",
            Object::new(),
            Identity::Anonymous,
            Caller::Client,
            None,
        )
        .await;
    assert!(listed.ts >= ts, "the query runs at or after the commit");
    let Value::Array(messages) = listed.result.unwrap() else {
        panic!("messages:list returns an array")
    };
    assert_eq!(messages.len(), 1);
    let Value::Object(first) = &messages[0] else {
        panic!("a message is an object")
    };
    assert_eq!(first.get("author"), Some(&Value::from("alice")));
    assert!(listed.read_set.is_some(), "a query reports what it read");
}

#[tokio::test]
async fn wrong_arguments_are_rejected_with_the_path_and_the_expected_type() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _) = runner(dir.path(), RunnerOptions::default());
    let outcome = runner
        .run_mutation(
            "messages:send",
            object! {"body" => 42.0},
            Identity::Anonymous,
            Caller::Client,
            None,
        )
        .await;
    let err = outcome.result.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ArgumentValidation);
    assert!(err.message().contains("messages:send"), "{err}");
    assert!(err.message().contains(".body"), "{err}");
    assert!(outcome.ts.is_none(), "nothing was committed");
}

#[tokio::test]
async fn a_user_error_reaches_the_client_with_its_data_in_both_modes() {
    for dev_mode in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let options = RunnerOptions {
            dev_mode,
            ..RunnerOptions::default()
        };
        let (runner, _) = runner(dir.path(), options);
        let outcome = runner
            .run_mutation(
                "messages:send",
                object! {"body" => ""},
                Identity::Anonymous,
                Caller::Client,
                None,
            )
            .await;
        let err = outcome.result.unwrap_err();
        let failure = runner.failure(&err);
        assert_eq!(failure.data, Some(serde_json::json!({"code": "BadBody"})));
        assert!(
            failure.message.contains("message body is empty"),
            "{failure:?}"
        );
    }
}

#[tokio::test]
async fn internal_functions_are_invisible_to_clients_but_callable_from_actions() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _) = runner(dir.path(), RunnerOptions::default());
    let from_client = runner
        .run_query(
            "secret:read",
            Object::new(),
            Identity::Anonymous,
            Caller::Client,
            None,
        )
        .await;
    let err = from_client.result.unwrap_err();
    assert!(
        err.message()
            .contains("Could not find public function for 'secret:read'"),
        "{err}"
    );
    let action = runner
        .run_action(
            "messages:sendTwice",
            object! {"body" => "hey"},
            alice(),
            Caller::Client,
        )
        .await;
    assert_eq!(action.result.unwrap(), Value::from("internal"));
    assert_eq!(action.log_lines.lines(), ["[LOG] sent twice"]);
    let listed = runner
        .run_query(
            "messages:list",
            Object::new(),
            Identity::Anonymous,
            Caller::Client,
            None,
        )
        .await;
    assert!(matches!(listed.result.unwrap(), Value::Array(m) if m.len() == 2));
}

#[tokio::test]
async fn calling_a_function_as_the_wrong_kind_says_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _) = runner(dir.path(), RunnerOptions::default());
    let outcome = runner
        .run_query(
            "messages:send",
            Object::new(),
            Identity::Anonymous,
            Caller::Client,
            None,
        )
        .await;
    let err = outcome.result.unwrap_err();
    assert!(err.message().contains("defined as Mutation"), "{err}");
}

#[tokio::test]
async fn concurrent_increments_conflict_and_are_retried_until_every_one_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, runs) = runner(dir.path(), RunnerOptions::default());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let runner = runner.clone();
        tasks.push(tokio::spawn(async move {
            runner
                .run_mutation(
                    "counters:increment",
                    Object::new(),
                    Identity::Anonymous,
                    Caller::Client,
                    None,
                )
                .await
                .result
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().unwrap().as_f64().unwrap());
    }
    results.sort_by(f64::total_cmp);
    let expected: Vec<f64> = (1..=20).map(f64::from).collect();
    assert_eq!(
        results, expected,
        "serializable: each increment saw the one before"
    );
    assert!(runs.load(Ordering::SeqCst) >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutation_records_are_kept_for_the_retention_and_then_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, runs) = runner(dir.path(), RunnerOptions::default());
    let send = |request_id: u32| {
        let runner = runner.clone();
        async move {
            runner
                .run_mutation(
                    "counters:increment",
                    Object::new(),
                    Identity::Anonymous,
                    Caller::Client,
                    Some(MutationKey {
                        session_id: "5b0f1d2e-8d7b-4a53-9f1e-3c2b1a0d9e8f".into(),
                        request_id,
                    }),
                )
                .await
                .result
                .unwrap()
        }
    };
    assert_eq!(send(1).await, Value::Float64(1.0));
    let db = runner.database();

    // Within the retention the record stays and a resend is answered from it.
    let kept = forget_session_requests(db, Duration::from_secs(3600), 10)
        .await
        .unwrap();
    assert_eq!(kept, 0);
    assert_eq!(send(1).await, Value::Float64(1.0));
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // Once it is older than the retention it is deleted, in batches.
    for request_id in 2..=6 {
        send(request_id).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let forgotten = forget_session_requests(db, Duration::ZERO, 2)
        .await
        .unwrap();
    assert_eq!(forgotten, 6, "every record, two per transaction");
    let mut tx = db.begin();
    let left = tx.query("_session_requests").unwrap().collect().unwrap();
    assert!(left.is_empty(), "{left:?}");
    // A resend after that runs the mutation again: the documented trade-off.
    assert_eq!(send(1).await, Value::Float64(7.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_resent_with_the_same_session_and_request_id_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, runs) = runner(dir.path(), RunnerOptions::default());
    let key = MutationKey {
        session_id: "2f1c9a0e-8d7b-4a53-9f1e-3c2b1a0d9e8f".into(),
        request_id: 7,
    };
    let first = runner
        .run_mutation(
            "counters:increment",
            Object::new(),
            Identity::Anonymous,
            Caller::Client,
            Some(key.clone()),
        )
        .await;
    let again = runner
        .run_mutation(
            "counters:increment",
            Object::new(),
            Identity::Anonymous,
            Caller::Client,
            Some(key),
        )
        .await;
    assert_eq!(first.result.unwrap(), Value::Float64(1.0));
    assert_eq!(
        again.result.unwrap(),
        Value::Float64(1.0),
        "the stored result"
    );
    assert!(again.ts.unwrap() >= first.ts.unwrap());
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
}

#[tokio::test]
async fn a_query_past_its_time_limit_fails_with_a_timeout_naming_the_knob() {
    let dir = tempfile::tempdir().unwrap();
    let options = RunnerOptions {
        time_limit: Duration::from_millis(100),
        ..RunnerOptions::default()
    };
    let (runner, _) = runner(dir.path(), options);
    let outcome = runner
        .run_query(
            "slow:loop",
            Object::new(),
            Identity::Anonymous,
            Caller::Client,
            None,
        )
        .await;
    let err = outcome.result.unwrap_err();
    assert_eq!(err.code(), ErrorCode::FunctionTimeout);
    assert!(err.message().contains("FUNCTION_TIME_LIMIT_MS"), "{err}");
}

#[tokio::test]
async fn an_unknown_function_and_a_malformed_path_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _) = runner(dir.path(), RunnerOptions::default());
    let missing = runner
        .run_query(
            "nope:list",
            Object::new(),
            Identity::Anonymous,
            Caller::Client,
            None,
        )
        .await;
    assert_eq!(
        missing.result.unwrap_err().code(),
        ErrorCode::FunctionNotFound
    );
    let malformed = runner
        .run_query(
            "../x:y",
            Object::new(),
            Identity::Anonymous,
            Caller::Client,
            None,
        )
        .await;
    assert_eq!(malformed.result.unwrap_err().code(), ErrorCode::BadRequest);
}
