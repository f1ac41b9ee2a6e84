//! What a function sees: the database (read-only in queries), the caller's identity,
//! a console that becomes `logLines`, and, in actions, the other functions.
//!
//! The database handles check the function-time limit at every call. A query or mutation is
//! synchronous Rust, so it cannot be preempted; a runaway loop that never touches the
//! database is the one thing the limit cannot stop, and the docs say so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use conflux_common::{Error, ErrorCode, Identity, Result};
use conflux_db::{Document, Query, Transaction};
use conflux_values::{DocumentId, Object, Value};
use parking_lot::Mutex;

use crate::runner::{Caller, FunctionRunner};

/// Log lines of one function run, in the `"[LEVEL] message"` form the clients print.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogLines(Vec<String>);

/// Most log lines kept per function run; later lines are dropped with a note.
const MAX_LOG_LINES: usize = 256;

impl LogLines {
    /// Append a line at `level` (`LOG`, `INFO`, `WARN`, `ERROR`, `DEBUG`).
    pub fn push(&mut self, level: &str, message: &str) {
        if self.0.len() < MAX_LOG_LINES {
            self.0.push(format!("[{level}] {message}"));
        } else if self.0.len() == MAX_LOG_LINES {
            self.0.push(format!(
                "[WARN] log limit of {MAX_LOG_LINES} lines reached; later lines dropped"
            ));
        }
    }

    /// The lines.
    pub fn lines(&self) -> &[String] {
        &self.0
    }

    /// Take the lines out.
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }

    pub(crate) fn extend(&mut self, other: LogLines) {
        for line in other.0 {
            if self.0.len() <= MAX_LOG_LINES {
                self.0.push(line);
            }
        }
    }
}

/// Deployment environment variables functions may read (`CONVEX_SITE_URL`, ...).
pub type Env = Arc<BTreeMap<String, String>>;

pub(crate) struct Deadline {
    started: Instant,
    limit: std::time::Duration,
}

impl Deadline {
    pub(crate) fn new(limit: std::time::Duration) -> Self {
        Deadline {
            started: Instant::now(),
            limit,
        }
    }

    fn check(&self) -> Result<()> {
        if self.started.elapsed() > self.limit {
            return Err(Error::new(
                ErrorCode::FunctionTimeout,
                format!(
                    "Function ran longer than its limit of {} ms (FUNCTION_TIME_LIMIT_MS); make it read less or split the work",
                    self.limit.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

/// Read-only database access for queries.
pub struct DbReader<'a> {
    tx: &'a mut Transaction,
    deadline: &'a Deadline,
}

impl DbReader<'_> {
    /// Fetch a document by id (`None` if it does not exist at this snapshot).
    pub fn get(&mut self, id: &DocumentId) -> Result<Option<Document>> {
        self.deadline.check()?;
        self.tx.get(id)
    }

    /// Start a query on `table`.
    pub fn query(&mut self, table: &str) -> Result<Query<'_>> {
        self.deadline.check()?;
        self.tx.query(table)
    }
}

/// Read-write database access for mutations.
pub struct DbWriter<'a> {
    tx: &'a mut Transaction,
    deadline: &'a Deadline,
}

impl DbWriter<'_> {
    /// Fetch a document by id.
    pub fn get(&mut self, id: &DocumentId) -> Result<Option<Document>> {
        self.deadline.check()?;
        self.tx.get(id)
    }

    /// Start a query on `table`.
    pub fn query(&mut self, table: &str) -> Result<Query<'_>> {
        self.deadline.check()?;
        self.tx.query(table)
    }

    /// Insert a document; returns its id.
    pub fn insert(&mut self, table: &str, value: Object) -> Result<DocumentId> {
        self.deadline.check()?;
        self.tx.insert(table, value)
    }

    /// Shallow-merge `fields` into a document.
    pub fn patch(&mut self, id: &DocumentId, fields: Object) -> Result<()> {
        self.deadline.check()?;
        self.tx.patch(id, fields)
    }

    /// Replace a document's fields.
    pub fn replace(&mut self, id: &DocumentId, value: Object) -> Result<()> {
        self.deadline.check()?;
        self.tx.replace(id, value)
    }

    /// Delete a document.
    pub fn delete(&mut self, id: &DocumentId) -> Result<()> {
        self.deadline.check()?;
        self.tx.delete(id)
    }
}

/// The context of a query.
pub struct QueryCtx<'a> {
    pub(crate) tx: &'a mut Transaction,
    pub(crate) identity: &'a Identity,
    pub(crate) log: &'a mut LogLines,
    pub(crate) deadline: &'a Deadline,
    pub(crate) env: &'a Env,
    pub(crate) now_ms: f64,
}

impl QueryCtx<'_> {
    /// The database, read-only, at this query's snapshot.
    pub fn db(&mut self) -> DbReader<'_> {
        DbReader {
            tx: self.tx,
            deadline: self.deadline,
        }
    }

    /// The caller.
    pub fn auth(&self) -> &Identity {
        self.identity
    }

    /// Write a log line (`console.log`), returned to the client as a log line.
    pub fn log(&mut self, message: impl AsRef<str>) {
        self.log.push("LOG", message.as_ref());
    }

    /// An environment variable of the deployment (`CONVEX_SITE_URL`, ...).
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// The time the function started, in ms since the Unix epoch. Fixed for the whole
    /// run so that the function stays deterministic.
    pub fn now_ms(&self) -> f64 {
        self.now_ms
    }
}

/// The context of a mutation.
pub struct MutationCtx<'a> {
    pub(crate) tx: &'a mut Transaction,
    pub(crate) identity: &'a Identity,
    pub(crate) log: &'a mut LogLines,
    pub(crate) deadline: &'a Deadline,
    pub(crate) env: &'a Env,
    pub(crate) now_ms: f64,
}

impl MutationCtx<'_> {
    /// The database, read-write, in this mutation's transaction.
    pub fn db(&mut self) -> DbWriter<'_> {
        DbWriter {
            tx: self.tx,
            deadline: self.deadline,
        }
    }

    /// The caller.
    pub fn auth(&self) -> &Identity {
        self.identity
    }

    /// Write a log line.
    pub fn log(&mut self, message: impl AsRef<str>) {
        self.log.push("LOG", message.as_ref());
    }

    /// An environment variable of the deployment.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// The time the function started, in ms since the Unix epoch.
    pub fn now_ms(&self) -> f64 {
        self.now_ms
    }
}

/// The context of an action: cheap to clone, may be moved into spawned tasks.
#[derive(Clone)]
pub struct ActionCtx {
    pub(crate) runner: FunctionRunner,
    pub(crate) identity: Identity,
    pub(crate) log: Arc<Mutex<LogLines>>,
}

impl ActionCtx {
    /// The caller.
    pub fn auth(&self) -> &Identity {
        &self.identity
    }

    /// Write a log line.
    pub fn log(&self, message: impl AsRef<str>) {
        self.log.lock().push("LOG", message.as_ref());
    }

    /// An environment variable of the deployment.
    pub fn env(&self, name: &str) -> Option<String> {
        self.runner.env().get(name).cloned()
    }

    /// Run a query (public or internal) as the same caller, at the latest snapshot.
    pub async fn run_query(&self, path: &str, args: Object) -> Result<Value> {
        let outcome = self
            .runner
            .run_query(path, args, self.identity.clone(), Caller::Internal, None)
            .await;
        self.log.lock().extend(outcome.log_lines);
        outcome.result
    }

    /// Run a mutation (public or internal) as the same caller.
    pub async fn run_mutation(&self, path: &str, args: Object) -> Result<Value> {
        let outcome = self
            .runner
            .run_mutation(path, args, self.identity.clone(), Caller::Internal, None)
            .await;
        self.log.lock().extend(outcome.log_lines);
        outcome.result
    }

    /// Run another action as the same caller.
    pub async fn run_action(&self, path: &str, args: Object) -> Result<Value> {
        let outcome =
            Box::pin(
                self.runner
                    .run_action(path, args, self.identity.clone(), Caller::Internal),
            )
            .await;
        self.log.lock().extend(outcome.log_lines);
        outcome.result
    }

    /// Run a mutation as an explicit identity (used by the built-in sign-in, which acts for
    /// users it is signing in).
    pub async fn run_mutation_as(
        &self,
        path: &str,
        args: Object,
        identity: Identity,
    ) -> Result<Value> {
        let outcome = self
            .runner
            .run_mutation(path, args, identity, Caller::Internal, None)
            .await;
        self.log.lock().extend(outcome.log_lines);
        outcome.result
    }

    /// The runner, for code that needs the database handle (e.g. the sign-in layer).
    pub fn runner(&self) -> &FunctionRunner {
        &self.runner
    }
}
