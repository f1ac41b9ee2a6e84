//! The small chat app Conflux is measured with, declared with the `conflux::App` facade
//! exactly as a user would write it.
//!
//! A `messages` table with a `by_channel` index, a query for the latest messages of a
//! channel, a mutation that sends one, and a `counters` table whose increment mutation is
//! the contention workload. The loopback target serves it with [`App::start`] (the same
//! assembly as `conflux serve`: sync WebSocket, shared live queries, function runner, sled
//! with one `fsync` per commit group) and the in-process target opens it with
//! [`App::embed`].

use std::path::Path;

use conflux::{App, Embedded, IndexRange, Order, ServeConfig, TableDef, Value};
use conflux_common::{Error, Identity, Result};
use conflux_functions::FunctionRunner;
use conflux_values::validator::v;
use conflux_values::Object;

/// The query: the latest `limit` messages of `channel`, newest first.
pub const LIST: &str = "messages:list";
/// The mutation: insert one message.
pub const SEND: &str = "messages:send";
/// The mutation: increment the counter `key` (read, then patch: the OCC workload).
pub const INCREMENT: &str = "counters:increment";

/// The table of messages.
const MESSAGES: &str = "messages";
/// The table of counters.
const COUNTERS: &str = "counters";

fn string_arg<'a>(args: &'a Object, name: &str) -> Result<&'a str> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad_request(format!("the argument `{name}` must be a string")))
}

/// The chat app.
pub fn app() -> App {
    App::new("bench-chat")
        .table(TableDef::new(MESSAGES).index("by_channel", &["channel"]))
        .table(TableDef::new(COUNTERS).index("by_key", &["key"]))
        .query(
            LIST,
            v::object([("channel", v::string()), ("limit", v::number())]),
            |ctx, args| {
                let channel = string_arg(&args, "channel")?.to_string();
                let limit = args.get("limit").and_then(Value::as_f64).unwrap_or(100.0);
                let latest = ctx
                    .db()
                    .query(MESSAGES)?
                    .with_index("by_channel", IndexRange::new().eq("channel", channel))?
                    .order(Order::Desc)
                    .take(limit.clamp(1.0, 1000.0) as usize)?;
                Ok(Value::Array(
                    latest.iter().map(|doc| doc.to_value()).collect(),
                ))
            },
        )
        .mutation(
            SEND,
            v::object([
                ("channel", v::string()),
                ("seq", v::number()),
                ("t", v::number()),
                ("author", v::string()),
                ("body", v::string()),
            ]),
            |ctx, args| {
                ctx.db().insert(MESSAGES, args)?;
                Ok(Value::Null)
            },
        )
        .mutation(INCREMENT, v::object([("key", v::string())]), |ctx, args| {
            let key = string_arg(&args, "key")?.to_string();
            let mut db = ctx.db();
            let existing = db
                .query(COUNTERS)?
                .with_index("by_key", IndexRange::new().eq("key", key.clone()))?
                .first()?;
            match existing {
                Some(doc) => {
                    let n = doc.value.get("n").and_then(Value::as_f64).unwrap_or(0.0) + 1.0;
                    let mut fields = Object::new();
                    fields.insert("n".into(), Value::Float64(n))?;
                    db.patch(&doc.id, fields)?;
                    Ok(Value::Float64(n))
                }
                None => {
                    let mut fields = Object::new();
                    fields.insert("key".into(), Value::String(key))?;
                    fields.insert("n".into(), Value::Float64(1.0))?;
                    db.insert(COUNTERS, fields)?;
                    Ok(Value::Float64(1.0))
                }
            }
        })
}

/// How the benchmark serves the app: loopback, the given client port (0 picks one), a free
/// site port, data in `dir`, production mode (no error details to clients).
pub fn serve_config(dir: &Path, port: u16) -> ServeConfig {
    ServeConfig {
        port,
        site_port: 0,
        dev: Some(false),
        ..ServeConfig::for_tests(dir)
    }
}

/// The sync URL of a server whose client origin is `client_url` (`http://127.0.0.1:p`).
pub fn sync_url(client_url: &str) -> String {
    format!("{}/api/sync", client_url.replacen("http://", "ws://", 1))
}

/// Open the app in-process on a data folder.
pub async fn embed(dir: &Path) -> Result<Embedded> {
    app().embed(dir).await
}

/// Create counters `k0..k{keys}` at zero, a thousand per transaction (setup, not measured).
pub async fn seed_counters(runner: &FunctionRunner, keys: usize) -> Result<()> {
    let db = runner.database();
    for chunk_start in (0..keys).step_by(1000) {
        let mut tx = db.begin();
        for key in chunk_start..(chunk_start + 1000).min(keys) {
            let mut fields = Object::new();
            fields.insert("key".into(), Value::String(counter_key(key)))?;
            fields.insert("n".into(), Value::Float64(0.0))?;
            tx.insert(COUNTERS, fields)?;
        }
        db.commit(tx).await?;
    }
    Ok(())
}

/// The name of counter `key`.
pub fn counter_key(key: usize) -> String {
    format!("k{key}")
}

/// Run the increment mutation in process (used by the in-process target).
pub async fn increment_in_process(app: &Embedded, key: usize) -> Result<()> {
    let mut args = Object::new();
    args.insert("key".into(), Value::String(counter_key(key)))?;
    app.mutation(INCREMENT, args, Identity::Anonymous)
        .await
        .map(|_| ())
}
