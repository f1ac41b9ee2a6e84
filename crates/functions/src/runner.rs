//! The function runner: looks functions up, validates arguments, runs them in the right
//! kind of transaction, retries conflicting mutations, and renders failures for clients.
//!
//! Every entry point returns an *outcome* rather than a bare `Result`: callers (the sync
//! worker, the HTTP API, actions) need the log lines and, for queries, the read set and the
//! snapshot timestamp even when the function failed, because a failed query is still a
//! subscription that must be re-run when what it read changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conflux_common::{knobs, Error, ErrorCode, Identity, Result};
use conflux_db::{Database, IndexRange, ReadSet, Timestamp, Transaction};
use conflux_values::{Object, Value};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::context::{ActionCtx, Deadline, Env, LogLines, MutationCtx, QueryCtx};
use crate::path::UdfPath;
use crate::registry::{FunctionDef, FunctionKind, Handler, Registry, Visibility};

/// The system table that makes mutations exactly-once across reconnects.
pub const SESSION_REQUESTS_TABLE: &str = "_session_requests";
/// Its index on `(sessionId, requestId)`.
pub const SESSION_REQUESTS_INDEX: &str = "by_session_request";

/// The system tables the runner needs; the app adds them to its schema.
pub fn system_tables() -> Vec<conflux_db::TableDef> {
    vec![conflux_db::TableDef::system(SESSION_REQUESTS_TABLE)
        .index(SESSION_REQUESTS_INDEX, &["sessionId", "requestId"])]
}

/// Who is calling: a client over the network, or another function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A client (WebSocket or HTTP API): only public functions are visible.
    Client,
    /// Another function (an action, an HTTP action, the server itself).
    Internal,
}

/// Identifies one mutation request of one client session, for exactly-once execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutationKey {
    /// The client's session id (a UUID).
    pub session_id: String,
    /// The request id within the session.
    pub request_id: u32,
}

/// The result of running a query.
#[derive(Debug)]
pub struct QueryOutcome {
    /// The value, or why it failed.
    pub result: Result<Value>,
    /// `console.log` output.
    pub log_lines: LogLines,
    /// What the query read; `None` when it never started (unknown function, bad args).
    pub read_set: Option<ReadSet>,
    /// The snapshot it ran at.
    pub ts: Timestamp,
}

/// The result of running a mutation.
#[derive(Debug)]
pub struct MutationOutcome {
    /// The value, or why it failed.
    pub result: Result<Value>,
    /// The commit timestamp of a successful mutation (for a resent request, a timestamp at
    /// or after the original commit).
    pub ts: Option<Timestamp>,
    /// `console.log` output.
    pub log_lines: LogLines,
}

/// The result of running an action.
#[derive(Debug)]
pub struct ActionOutcome {
    /// The value, or why it failed.
    pub result: Result<Value>,
    /// `console.log` output.
    pub log_lines: LogLines,
}

/// A failure as a client receives it: `errorMessage` and, for user errors, `errorData`.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionFailure {
    /// The `errorMessage` text.
    pub message: String,
    /// The `errorData` (Convex JSON), for `ConvexError`s only.
    pub data: Option<serde_json::Value>,
}

/// Options of a [`FunctionRunner`].
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Send error details to clients (development).
    pub dev_mode: bool,
    /// Environment variables visible to functions.
    pub env: std::collections::BTreeMap<String, String>,
    /// Function-time limit of queries and mutations.
    pub time_limit: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            dev_mode: false,
            env: Default::default(),
            time_limit: Duration::from_millis(*knobs::FUNCTION_TIME_LIMIT_MS),
        }
    }
}

struct Inner {
    db: Database,
    registry: Registry,
    env: Env,
    dev_mode: bool,
    time_limit: Duration,
    blocking_slots: Semaphore,
    request_counter: AtomicU64,
    executions: AtomicU64,
}

/// Runs functions. Cheap to clone.
#[derive(Clone)]
pub struct FunctionRunner {
    inner: Arc<Inner>,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn join_error(err: tokio::task::JoinError) -> Error {
    if err.is_panic() {
        Error::internal("the function panicked").with_detail(format!("{err}"))
    } else {
        Error::internal(format!("the function was cancelled: {err}"))
    }
}

impl FunctionRunner {
    /// A runner over `db` with the functions of `registry`.
    ///
    /// Inside a Tokio runtime this also starts the background cleanup of old mutation
    /// records (see [`forget_session_requests`](crate::forget_session_requests)), which
    /// stops when the last clone of the runner is dropped.
    pub fn new(db: Database, registry: Registry, options: RunnerOptions) -> Self {
        let runner = FunctionRunner {
            inner: Arc::new(Inner {
                db,
                registry,
                env: Arc::new(options.env),
                dev_mode: options.dev_mode,
                time_limit: options.time_limit,
                blocking_slots: Semaphore::new(*knobs::FUNCTION_MAX_CONCURRENT_COUNT),
                request_counter: AtomicU64::new(0),
                executions: AtomicU64::new(0),
            }),
        };
        let weak = Arc::downgrade(&runner.inner);
        crate::forget::spawn(move || weak.upgrade().map(|inner| inner.db.clone()));
        runner
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// The registered functions.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Whether error details go to clients.
    pub fn dev_mode(&self) -> bool {
        self.inner.dev_mode
    }

    /// Environment variables visible to functions.
    pub fn env(&self) -> &Env {
        &self.inner.env
    }

    /// How many query and mutation executions ran so far (for benchmarks and tests that
    /// prove work is shared).
    pub fn executions(&self) -> u64 {
        self.inner.executions.load(Ordering::Relaxed)
    }

    fn lookup(&self, path: &str, kind: FunctionKind, caller: Caller) -> Result<&FunctionDef> {
        let canonical = UdfPath::parse(path)?;
        let not_found = || {
            Error::new(
                ErrorCode::FunctionNotFound,
                format!(
                    "Could not find public function for '{canonical}'. Did you forget to register it on the App?"
                ),
            )
        };
        let def = self.inner.registry.get(&canonical).ok_or_else(not_found)?;
        if caller == Caller::Client && def.visibility == Visibility::Internal {
            return Err(not_found());
        }
        if def.kind() != kind {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!(
                    "Trying to execute {canonical} as {}, but it is defined as {}.",
                    capitalize(kind.as_str()),
                    capitalize(def.kind().as_str())
                ),
            ));
        }
        Ok(def)
    }

    fn validate_args(&self, def: &FunctionDef, args: &Object) -> Result<()> {
        let db = &self.inner.db;
        let resolve = |id: &conflux_values::DocumentId| db.table_name_of(id);
        def.args
            .validate(&Value::Object(args.clone()), &resolve)
            .map_err(|err| {
                Error::new(
                    ErrorCode::ArgumentValidation,
                    format!(
                        "ArgumentValidationError for `{}`: {}",
                        def.path,
                        err.message()
                    ),
                )
            })
    }

    /// Run a query at `ts` (the latest snapshot when `None`).
    pub async fn run_query(
        &self,
        path: &str,
        args: Object,
        identity: Identity,
        caller: Caller,
        ts: Option<Timestamp>,
    ) -> QueryOutcome {
        let started = Instant::now();
        let outcome = self.query_unlogged(path, args, identity, caller, ts).await;
        self.log_run(path, FunctionKind::Query, &outcome.result, started);
        outcome
    }

    /// One line per function run with its duration: `info` in dev mode (a developer
    /// watches every run), `debug` otherwise (a busy deployment runs thousands a second).
    fn log_run(&self, path: &str, kind: FunctionKind, result: &Result<Value>, started: Instant) {
        let outcome = match result {
            Ok(_) => "success",
            Err(err) => err.code().as_str(),
        };
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        if self.inner.dev_mode {
            tracing::info!(
                path,
                kind = kind.as_str(),
                outcome,
                duration_ms,
                "function run"
            );
        } else {
            tracing::debug!(
                path,
                kind = kind.as_str(),
                outcome,
                duration_ms,
                "function run"
            );
        }
    }

    async fn query_unlogged(
        &self,
        path: &str,
        args: Object,
        identity: Identity,
        caller: Caller,
        ts: Option<Timestamp>,
    ) -> QueryOutcome {
        let snapshot_ts = ts.unwrap_or_else(|| self.inner.db.latest_ts());
        let failed = |err: Error| QueryOutcome {
            result: Err(err),
            log_lines: LogLines::default(),
            read_set: None,
            ts: snapshot_ts,
        };
        let def = match self.lookup(path, FunctionKind::Query, caller) {
            Ok(def) => def.clone(),
            Err(err) => return failed(err),
        };
        if let Err(err) = self.validate_args(&def, &args) {
            return failed(err);
        }
        let Handler::Query(handler) = def.handler else {
            return failed(Error::internal("registry kind mismatch"));
        };
        let tx = match self.inner.db.begin_at(snapshot_ts) {
            Ok(tx) => tx,
            Err(err) => return failed(err),
        };
        let _slot = match self.inner.blocking_slots.acquire().await {
            Ok(slot) => slot,
            Err(err) => return failed(Error::internal(err)),
        };
        self.inner.executions.fetch_add(1, Ordering::Relaxed);
        let env = self.inner.env.clone();
        let time_limit = self.inner.time_limit;
        let joined = tokio::task::spawn_blocking(move || {
            let mut tx = tx;
            let mut log = LogLines::default();
            let deadline = Deadline::new(time_limit);
            let result = {
                let mut ctx = QueryCtx {
                    tx: &mut tx,
                    identity: &identity,
                    log: &mut log,
                    deadline: &deadline,
                    env: &env,
                    now_ms: now_ms(),
                };
                handler(&mut ctx, args)
            };
            (result, log, tx.into_read_set())
        })
        .await;
        match joined {
            Ok((result, log_lines, read_set)) => QueryOutcome {
                result,
                log_lines,
                read_set: Some(read_set),
                ts: snapshot_ts,
            },
            Err(err) => failed(join_error(err)),
        }
    }

    /// Run a mutation, re-running it on optimistic-concurrency conflicts. With a
    /// [`MutationKey`], a request already applied returns its stored result instead of
    /// running again.
    pub async fn run_mutation(
        &self,
        path: &str,
        args: Object,
        identity: Identity,
        caller: Caller,
        key: Option<MutationKey>,
    ) -> MutationOutcome {
        let started = Instant::now();
        let outcome = self
            .mutation_unlogged(path, args, identity, caller, key)
            .await;
        self.log_run(path, FunctionKind::Mutation, &outcome.result, started);
        outcome
    }

    async fn mutation_unlogged(
        &self,
        path: &str,
        args: Object,
        identity: Identity,
        caller: Caller,
        key: Option<MutationKey>,
    ) -> MutationOutcome {
        let failed = |err: Error, log_lines: LogLines| MutationOutcome {
            result: Err(err),
            ts: None,
            log_lines,
        };
        let def = match self.lookup(path, FunctionKind::Mutation, caller) {
            Ok(def) => def.clone(),
            Err(err) => return failed(err, LogLines::default()),
        };
        if let Err(err) = self.validate_args(&def, &args) {
            return failed(err, LogLines::default());
        }
        let Handler::Mutation(handler) = def.handler else {
            return failed(
                Error::internal("registry kind mismatch"),
                LogLines::default(),
            );
        };
        let max_retries = *knobs::MUTATION_MAX_RETRIES_COUNT;
        let mut attempt: u32 = 0;
        loop {
            let tx = self.inner.db.begin();
            let _slot = match self.inner.blocking_slots.acquire().await {
                Ok(slot) => slot,
                Err(err) => return failed(Error::internal(err), LogLines::default()),
            };
            self.inner.executions.fetch_add(1, Ordering::Relaxed);
            let env = self.inner.env.clone();
            let time_limit = self.inner.time_limit;
            let handler = handler.clone();
            let args = args.clone();
            let identity = identity.clone();
            let key = key.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let mut tx = tx;
                let mut log = LogLines::default();
                if let Some(key) = &key {
                    match lookup_session_request(&mut tx, key) {
                        Ok(Some(stored)) => return (Ok(Applied::Earlier(stored)), log, tx),
                        Ok(None) => {}
                        Err(err) => return (Err(err), log, tx),
                    }
                }
                let deadline = Deadline::new(time_limit);
                let result = {
                    let mut ctx = MutationCtx {
                        tx: &mut tx,
                        identity: &identity,
                        log: &mut log,
                        deadline: &deadline,
                        env: &env,
                        now_ms: now_ms(),
                    };
                    handler(&mut ctx, args)
                };
                let result = match (result, &key) {
                    (Ok(value), Some(key)) => {
                        record_session_request(&mut tx, key, &value).map(|()| Applied::Now(value))
                    }
                    (Ok(value), None) => Ok(Applied::Now(value)),
                    (Err(err), _) => Err(err),
                };
                (result, log, tx)
            })
            .await;
            drop(_slot);
            let (result, log_lines, tx) = match joined {
                Ok(parts) => parts,
                Err(err) => return failed(join_error(err), LogLines::default()),
            };
            let value = match result {
                Ok(Applied::Now(value)) => value,
                Ok(Applied::Earlier(value)) => {
                    tracing::info!(
                        path = %def.path,
                        "mutation already executed for this session and request id, so skipping it"
                    );
                    return MutationOutcome {
                        result: Ok(value),
                        ts: Some(self.inner.db.latest_ts()),
                        log_lines,
                    };
                }
                Err(err) => return failed(err, log_lines),
            };
            match self.inner.db.commit(tx).await {
                Ok(ts) => {
                    return MutationOutcome {
                        result: Ok(value),
                        ts: Some(ts),
                        log_lines,
                    }
                }
                Err(err) if err.code() == ErrorCode::OccConflict && attempt < max_retries => {
                    attempt += 1;
                    let base = *knobs::MUTATION_RETRY_BASE_MS;
                    let backoff = base.saturating_mul(1u64 << attempt.min(10));
                    let jitter = rand_jitter(backoff);
                    tracing::debug!(path = %def.path, attempt, "mutation conflicted; re-running");
                    tokio::time::sleep(Duration::from_millis(backoff / 2 + jitter)).await;
                }
                Err(err) => return failed(err, log_lines),
            }
        }
    }

    /// Run an action.
    pub async fn run_action(
        &self,
        path: &str,
        args: Object,
        identity: Identity,
        caller: Caller,
    ) -> ActionOutcome {
        let started = Instant::now();
        let outcome = self.action_unlogged(path, args, identity, caller).await;
        self.log_run(path, FunctionKind::Action, &outcome.result, started);
        outcome
    }

    async fn action_unlogged(
        &self,
        path: &str,
        args: Object,
        identity: Identity,
        caller: Caller,
    ) -> ActionOutcome {
        let def = match self.lookup(path, FunctionKind::Action, caller) {
            Ok(def) => def.clone(),
            Err(err) => {
                return ActionOutcome {
                    result: Err(err),
                    log_lines: LogLines::default(),
                }
            }
        };
        if let Err(err) = self.validate_args(&def, &args) {
            return ActionOutcome {
                result: Err(err),
                log_lines: LogLines::default(),
            };
        }
        let Handler::Action(handler) = def.handler else {
            return ActionOutcome {
                result: Err(Error::internal("registry kind mismatch")),
                log_lines: LogLines::default(),
            };
        };
        let log = Arc::new(Mutex::new(LogLines::default()));
        let ctx = ActionCtx {
            runner: self.clone(),
            identity,
            log: log.clone(),
        };
        // Run on its own task so a panicking action becomes an error, not a dead socket.
        let result = match tokio::spawn(handler(ctx, args)).await {
            Ok(result) => result,
            Err(err) => Err(join_error(err)),
        };
        let log_lines = std::mem::take(&mut *log.lock());
        ActionOutcome { result, log_lines }
    }

    /// Render a failure the way clients expect it: `[Request ID: …] Server Error`, followed
    /// (in dev mode, or for errors that are safe to show) by the error itself; user errors
    /// always carry their data.
    pub fn failure(&self, err: &Error) -> FunctionFailure {
        let request_id = self.inner.request_counter.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{:016x}", request_id ^ 0x9e37_79b9_7f4a_7c15);
        let header = format!("[Request ID: {request_id}] Server Error");
        let message = match err.code() {
            ErrorCode::UserError => {
                if self.inner.dev_mode {
                    format!("{header}\nUncaught ConvexError: {}", err.message())
                } else {
                    err.message().to_string()
                }
            }
            ErrorCode::Internal => {
                tracing::error!(request_id = %request_id, error = %err, "function failed");
                if self.inner.dev_mode {
                    format!("{header}\nUncaught Error: {}", err.client_message(true))
                } else {
                    header
                }
            }
            _ => format!(
                "{header}\nUncaught Error: {}",
                err.client_message(self.inner.dev_mode)
            ),
        };
        FunctionFailure {
            message,
            data: err.data().cloned(),
        }
    }
}

enum Applied {
    Now(Value),
    Earlier(Value),
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn rand_jitter(range_ms: u64) -> u64 {
    if range_ms == 0 {
        return 0;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    nanos % range_ms
}

fn lookup_session_request(tx: &mut Transaction, key: &MutationKey) -> Result<Option<Value>> {
    let found = tx
        .query(SESSION_REQUESTS_TABLE)?
        .with_index(
            SESSION_REQUESTS_INDEX,
            IndexRange::new()
                .eq("sessionId", Value::String(key.session_id.clone()))
                .eq("requestId", Value::Float64(key.request_id as f64)),
        )?
        .first()?;
    match found {
        Some(doc) => {
            let stored = doc
                .value
                .get("result")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::internal("session request record without a result"))?;
            let json: serde_json::Value = serde_json::from_str(stored).map_err(|err| {
                Error::internal(format!("stored mutation result unreadable: {err}"))
            })?;
            Ok(Some(Value::from_convex_json(&json)?))
        }
        None => Ok(None),
    }
}

fn record_session_request(tx: &mut Transaction, key: &MutationKey, value: &Value) -> Result<()> {
    // The result is stored as text: a mutation may return a value nested deeper than a
    // document allows, and the record only has to give it back verbatim.
    let mut record = Object::new();
    record.insert("sessionId".into(), Value::String(key.session_id.clone()))?;
    record.insert("requestId".into(), Value::Float64(key.request_id as f64))?;
    record.insert(
        "result".into(),
        Value::String(value.to_convex_json().to_string()),
    )?;
    tx.insert(SESSION_REQUESTS_TABLE, record)?;
    Ok(())
}
