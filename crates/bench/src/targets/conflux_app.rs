//! The small chat app Conflux is measured with, and the server that serves it.
//!
//! The app is what a user would write first: a `messages` table with a `by_channel`
//! index, a query for the latest messages of a channel, a mutation that sends one, and a
//! `counters` table whose increment mutation is the contention workload. It is built
//! directly on the crates (`conflux-db`, `conflux-functions`, `conflux-sync`,
//! `conflux-http`) so that the measurement covers exactly the production code paths: the
//! sync WebSocket, the shared live queries, the function runner with its retries, and
//! sled with one `fsync` per commit group.

use std::path::Path;
use std::sync::Arc;

use conflux_common::{Error, Identity, Result, TokenValidator};
use conflux_db::{Database, IndexRange, Order, Schema, TableDef};
use conflux_functions::runner::Caller;
use conflux_functions::{system_tables, v, FunctionRunner, Registry, RunnerOptions, Value};
use conflux_http::{
    client_api_routes, ClientApiState, FunctionRunnerActions, HttpRouter, RunningServer,
    ServerConfig, SiteRoutes,
};
use conflux_sync::{sync_routes, SyncState};
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

/// The app's schema: messages by channel, counters by key, and the runner's system tables.
pub fn schema() -> Schema {
    let mut schema = Schema::new()
        .table(TableDef::new(MESSAGES).index("by_channel", &["channel"]))
        .table(TableDef::new(COUNTERS).index("by_key", &["key"]));
    for table in system_tables() {
        schema = schema.table(table);
    }
    schema
}

fn string_arg<'a>(args: &'a Object, name: &str) -> Result<&'a str> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad_request(format!("the argument `{name}` must be a string")))
}

/// The app's functions.
pub fn registry() -> Result<Registry> {
    let mut registry = Registry::new();
    registry.query(
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
            Ok(Value::Array(latest.iter().map(|doc| doc.to_value()).collect()))
        },
    )?;
    registry.mutation(
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
    )?;
    registry.mutation(INCREMENT, v::object([("key", v::string())]), |ctx, args| {
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
    })?;
    Ok(registry)
}

/// The app on a sled database in `dir`: the function runner holding it.
pub fn open(dir: &Path) -> Result<FunctionRunner> {
    let db = Database::open_sled(dir, schema())?;
    Ok(FunctionRunner::new(db, registry()?, RunnerOptions::default()))
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
pub async fn increment_in_process(runner: &FunctionRunner, key: usize) -> Result<()> {
    let mut args = Object::new();
    args.insert("key".into(), Value::String(counter_key(key)))?;
    runner
        .run_mutation(INCREMENT, args, Identity::Anonymous, Caller::Client, None)
        .await
        .result
        .map(|_| ())
}

/// A Conflux server on 127.0.0.1: the sync WebSocket and the function HTTP API.
pub struct ConfluxServer {
    /// The listeners.
    pub server: RunningServer,
    /// The sync endpoint's state (its counters and live queries).
    pub sync: SyncState,
}

impl ConfluxServer {
    /// Serve `runner` on `port` (0 picks one), validating `Authenticate` tokens with
    /// `token_validator`. Must run inside the Tokio runtime that will serve it.
    pub async fn start(
        runner: FunctionRunner,
        port: u16,
        token_validator: Option<Arc<dyn TokenValidator>>,
    ) -> Result<ConfluxServer> {
        let sync = SyncState::new(runner.clone(), token_validator.clone(), false);
        let routes = sync_routes(sync.clone()).merge(client_api_routes(ClientApiState {
            runner: runner.clone(),
            token_validator: token_validator.clone(),
            dev_mode: false,
        }));
        let config = ServerConfig {
            client_port: port,
            site_port: 0,
            ..ServerConfig::default()
        };
        let site = SiteRoutes {
            router: Arc::new(HttpRouter::empty()),
            runner: Arc::new(FunctionRunnerActions::new(runner)),
            token_validator,
        };
        let server = conflux_http::bind(config).await?.serve(routes, site);
        Ok(ConfluxServer { server, sync })
    }

    /// The sync URL clients connect to.
    pub fn sync_url(&self) -> String {
        format!("ws://{}/api/sync", self.server.client_addr())
    }
}
