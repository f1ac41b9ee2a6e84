//! Shared live queries: one execution and one cached result per distinct subscription.
//!
//! Why this exists: a chat room with a thousand members means a thousand sockets subscribed
//! to the same `messages:list` with the same arguments. Running that query a thousand times
//! after every message would make the commit rate of a deployment depend on its audience.
//! The [`SubscriptionManager`] keys every subscription by (canonical function path,
//! canonical arguments, [`Identity::cache_key`]); identical subscriptions share one *entry*,
//! whatever transport they came from (a WebSocket, the in-process embedded handle, a
//! benchmark).
//!
//! # An entry
//!
//! Each entry keeps the latest result of its query, the snapshot timestamp `ts` it was
//! read at, and a database [`Subscription`] on the read set of that run. A result read at
//! `ts` stays the right answer for every later snapshot until the first commit that writes
//! into the read set: it is *valid* on `[ts, invalidated_at)`. One task per entry (its
//! driver) waits for that invalidation, re-runs the query **once** at the newest snapshot
//! and fans the new result out to every subscriber. A re-run whose result is identical to
//! the previous one is not fanned out; it is counted as a spurious re-run
//! ([`SubscriptionMetrics::spurious_reruns`]).
//!
//! Fan-out never waits for a subscriber: each subscriber owns a `Signal` (a counter and
//! a [`tokio::sync::Notify`]); the driver bumps it and moves on. A socket whose client
//! reads slowly therefore never delays the driver, other sockets, or the commit path; it
//! simply finds several bumps folded into one when it looks next.
//!
//! # Consistent snapshots across entries
//!
//! A socket must move *all* its queries to one timestamp in one `Transition`, but its
//! entries were run at different timestamps by different drivers. Because a result is
//! valid on an interval, `SubscriptionManager::consistent_results` can pick a target
//! timestamp (the newest of: what the socket must reach, the newest entry result, and the
//! newest commit whose invalidations have all been delivered) and check that every entry's
//! interval contains it. Entries that are stale at the target are being re-run by their
//! drivers; the socket waits for those runs and tries again at the newer target. Under a
//! write rate that keeps beating the re-runs, after a few rounds the stale entries are run
//! once more pinned at exactly the target snapshot (counted in
//! [`SubscriptionMetrics::pinned_executions`]), so a Transition is always produced.
//!
//! "All invalidations delivered up to `t`" comes from the database's commit watch: the
//! committer notifies the subscription index before it publishes a timestamp there, so once
//! the watch shows `t`, an entry whose subscription has not fired is valid at `t`.
//!
//! # In-process subscriptions
//!
//! [`SubscriptionManager::subscribe`] returns a [`LiveQuery`] whose
//! [`next`](LiveQuery::next) yields each new result; the facade's embedded handle is built
//! on it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use conflux_common::{Error, ErrorCode, Identity, Result};
use conflux_db::{Subscription, Timestamp};
use conflux_functions::runner::Caller;
use conflux_functions::{FunctionRunner, LogLines};
use conflux_values::{Object, Value};
use parking_lot::Mutex;
use serde_json::{Map, Value as Json};
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;

use crate::protocol::{FunctionArgs, FunctionFailure};
use crate::state::{QueryResult, ResultFingerprint};
use crate::udf_path::UdfPath;

/// Rounds of "wait for the stale entries and retry at a newer timestamp" before the stale
/// entries are run pinned at the target timestamp.
const MAX_CHASE_ROUNDS: usize = 3;

/// What makes two subscriptions the same: the canonical function path, the arguments in
/// canonical JSON (keys sorted at every level) and the caller's [`Identity::cache_key`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueryKey {
    /// The query function.
    pub udf_path: UdfPath,
    /// The arguments as canonical Convex JSON text.
    pub args: String,
    /// Who the query runs as ([`Identity::cache_key`]; empty for anonymous callers).
    pub identity: String,
}

/// Counters of a [`SubscriptionManager`], for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionMetrics {
    /// Query executions started by the manager (first runs, re-runs and pinned runs).
    pub executions: u64,
    /// Re-runs after an invalidation.
    pub reruns: u64,
    /// Re-runs whose result was identical to the previous one (not fanned out).
    pub spurious_reruns: u64,
    /// Runs pinned at a socket's target timestamp because the shared result kept being
    /// overtaken by new commits.
    pub pinned_executions: u64,
    /// Distinct live subscriptions (shared entries) right now.
    pub entries: usize,
    /// Subscribers across all entries right now.
    pub subscribers: usize,
}

#[derive(Debug, Default)]
struct Counters {
    executions: AtomicU64,
    reruns: AtomicU64,
    spurious_reruns: AtomicU64,
    pinned_executions: AtomicU64,
}

/// A wake-up flag owned by one subscriber (a socket, or a [`LiveQuery`]). Entries raise it
/// without ever waiting; the owner collects every raise since it last looked in one go.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicU64,
    notify: Notify,
}

impl Signal {
    /// A signal that was never raised.
    pub(crate) fn new() -> Signal {
        Signal::default()
    }

    /// Record one more change and wake the owner if it waits. Never blocks.
    pub(crate) fn raise(&self) {
        self.raised.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// Wait until the signal was raised at least once since the last call; returns how
    /// many raises are folded into this wake-up.
    pub(crate) async fn wait(&self) -> u64 {
        loop {
            let raised = self.raised.swap(0, Ordering::AcqRel);
            if raised > 0 {
                return raised;
            }
            self.notify.notified().await;
        }
    }
}

/// One result of an entry: what the query returned, the snapshot it read, and the
/// database subscription on what it read (none when the query never reached the
/// database, e.g. an unknown function: such a result never changes).
#[derive(Debug)]
struct Snapshot {
    result: Arc<QueryResult>,
    ts: Timestamp,
    subscription: Option<Arc<Subscription>>,
}

impl Snapshot {
    /// Whether this result is the answer at snapshot `ts`. Only meaningful once the
    /// commit watch has reached `ts` (every invalidation up to `ts` delivered).
    fn valid_at(&self, ts: Timestamp) -> bool {
        if self.ts > ts {
            return false;
        }
        match &self.subscription {
            None => true,
            Some(subscription) => match subscription.invalidated_at() {
                None => true,
                Some(invalidated) => invalidated > ts,
            },
        }
    }
}

#[derive(Debug, Default)]
struct EntryState {
    current: Option<Arc<Snapshot>>,
    /// Why the entry cannot produce results any more (the database shut down).
    closed: Option<Error>,
    subscribers: HashMap<u64, Arc<Signal>>,
    driver: Option<AbortHandle>,
}

/// A shared live query.
#[derive(Debug)]
struct Entry {
    key: QueryKey,
    /// The arguments as a value, or why they are not valid Convex JSON.
    args: std::result::Result<Object, Error>,
    /// The identity the query runs as (the first subscriber's; every subscriber of the
    /// entry has the same cache key).
    identity: Identity,
    state: Mutex<EntryState>,
    /// Counts completed runs (stored results), for sockets waiting for a fresh one.
    runs: watch::Sender<u64>,
}

impl Entry {
    fn current(&self) -> Option<Arc<Snapshot>> {
        self.state.lock().current.clone()
    }

    fn closed(&self) -> Option<Error> {
        self.state.lock().closed.clone()
    }
}

struct Inner {
    runner: FunctionRunner,
    entries: Mutex<HashMap<QueryKey, Arc<Entry>>>,
    counters: Counters,
    next_subscriber: AtomicU64,
}

/// Shares query executions between identical subscriptions and keeps their results
/// live. See the module docs. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct SubscriptionManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SubscriptionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionManager")
            .field("metrics", &self.metrics())
            .finish()
    }
}

/// A subscriber's hold on a shared entry; dropping it unsubscribes (and drops the entry,
/// stopping its driver, when it was the last subscriber).
pub(crate) struct QueryHandle {
    inner: Arc<Inner>,
    entry: Arc<Entry>,
    subscriber: u64,
}

impl std::fmt::Debug for QueryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryHandle")
            .field("key", &self.entry.key)
            .field("subscriber", &self.subscriber)
            .finish()
    }
}

impl Drop for QueryHandle {
    fn drop(&mut self) {
        let mut entries = self.inner.entries.lock();
        let mut state = self.entry.state.lock();
        state.subscribers.remove(&self.subscriber);
        if state.subscribers.is_empty() {
            if let Some(driver) = state.driver.take() {
                driver.abort();
            }
            let same = entries
                .get(&self.entry.key)
                .is_some_and(|entry| Arc::ptr_eq(entry, &self.entry));
            if same {
                entries.remove(&self.entry.key);
            }
        }
    }
}

impl SubscriptionManager {
    /// A manager running queries through `runner`.
    pub fn new(runner: FunctionRunner) -> SubscriptionManager {
        SubscriptionManager {
            inner: Arc::new(Inner {
                runner,
                entries: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                next_subscriber: AtomicU64::new(0),
            }),
        }
    }

    /// The runner queries execute on.
    pub fn runner(&self) -> &FunctionRunner {
        &self.inner.runner
    }

    /// The counters so far.
    pub fn metrics(&self) -> SubscriptionMetrics {
        let counters = &self.inner.counters;
        let (entries, subscribers) = {
            let entries = self.inner.entries.lock();
            let subscribers = entries
                .values()
                .map(|entry| entry.state.lock().subscribers.len())
                .sum();
            (entries.len(), subscribers)
        };
        SubscriptionMetrics {
            executions: counters.executions.load(Ordering::Relaxed),
            reruns: counters.reruns.load(Ordering::Relaxed),
            spurious_reruns: counters.spurious_reruns.load(Ordering::Relaxed),
            pinned_executions: counters.pinned_executions.load(Ordering::Relaxed),
            entries,
            subscribers,
        }
    }

    /// Subscribe in process to the query `udf_path` with `args`, running as `identity`.
    ///
    /// The path is canonicalized like a client's (`messages` is `messages:default`); an
    /// invalid path is a [`ErrorCode::BadRequest`]. A query that fails (unknown function,
    /// invalid arguments, a thrown error) is still a live subscription whose results are
    /// failures. Must be called inside a Tokio runtime (the entry's driver is spawned).
    ///
    /// ```no_run
    /// # async fn story(manager: &conflux_sync::SubscriptionManager) -> conflux_common::Result<()> {
    /// use conflux_common::Identity;
    /// use conflux_values::Object;
    ///
    /// let mut live = manager.subscribe("messages:list", Object::new(), Identity::Anonymous)?;
    /// let first = live.next().await?; // the current result
    /// let later = live.next().await?; // the next different result, after a commit
    /// # let _ = (first, later); Ok(()) }
    /// ```
    pub fn subscribe(&self, udf_path: &str, args: Object, identity: Identity) -> Result<LiveQuery> {
        let udf_path = UdfPath::parse(udf_path)?;
        let Json::Object(map) = Value::Object(args).to_convex_json() else {
            return Err(Error::internal("an object did not encode as a JSON object"));
        };
        let args = FunctionArgs::new(map);
        let signal = Arc::new(Signal::new());
        let handle = self.subscribe_with_signal(&udf_path, &args, &identity, signal.clone());
        Ok(LiveQuery {
            handle,
            signal,
            last: None,
        })
    }

    /// Subscribe `signal` to the entry for `(udf_path, args, identity)`, creating the entry
    /// (and starting its driver) if it is new. The signal is raised at once when the entry
    /// already holds a result, and after every change of it.
    pub(crate) fn subscribe_with_signal(
        &self,
        udf_path: &UdfPath,
        args: &FunctionArgs,
        identity: &Identity,
        signal: Arc<Signal>,
    ) -> QueryHandle {
        let key = QueryKey {
            udf_path: udf_path.clone(),
            args: canonical_json_object(args.as_object()),
            identity: identity.cache_key(),
        };
        let subscriber = self.inner.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.inner.entries.lock();
        let entry = match entries.get(&key) {
            Some(entry) => entry.clone(),
            None => {
                let args = Value::from_convex_json(&Json::Object(args.as_object().clone()))
                    .and_then(|value| match value {
                        Value::Object(object) => Ok(object),
                        other => Err(Error::bad_request(format!(
                            "query arguments must be an object, got {}",
                            other.type_name()
                        ))),
                    });
                let entry = Arc::new(Entry {
                    key: key.clone(),
                    args,
                    identity: identity.clone(),
                    state: Mutex::new(EntryState::default()),
                    runs: watch::channel(0).0,
                });
                let driver = tokio::spawn(drive(Arc::downgrade(&self.inner), entry.clone()));
                entry.state.lock().driver = Some(driver.abort_handle());
                entries.insert(key, entry.clone());
                entry
            }
        };
        {
            let mut state = entry.state.lock();
            state.subscribers.insert(subscriber, signal.clone());
            if state.current.is_some() || state.closed.is_some() {
                signal.raise();
            }
        }
        drop(entries);
        QueryHandle {
            inner: self.inner.clone(),
            entry,
            subscriber,
        }
    }

    /// Results for `handles` that all hold at one snapshot timestamp, at least `min_ts`
    /// and as new as the results allow. Returns the timestamp and one result per handle,
    /// in order. See the module docs for the algorithm.
    pub(crate) async fn consistent_results(
        &self,
        handles: &[Arc<QueryHandle>],
        min_ts: Timestamp,
    ) -> Result<(Timestamp, Vec<Arc<QueryResult>>)> {
        let runner = &self.inner.runner;
        let mut commits = runner.database().commit_watch();
        let mut target = min_ts.max(*commits.borrow_and_update());
        let mut round = 0;
        loop {
            // Every entry needs its first result before anything can be compared.
            for handle in handles {
                wait_for_first_result(&handle.entry).await?;
            }
            for handle in handles {
                if let Some(snapshot) = handle.entry.current() {
                    target = target.max(snapshot.ts);
                }
            }
            // Every invalidation up to `target` must have been delivered.
            commits
                .wait_for(|published| *published >= target)
                .await
                .map_err(|_| database_closed())?;
            let mut results = Vec::with_capacity(handles.len());
            let mut stale = Vec::new();
            for (index, handle) in handles.iter().enumerate() {
                let mut runs = handle.entry.runs.subscribe();
                runs.borrow_and_update();
                match handle.entry.current() {
                    Some(snapshot) if snapshot.valid_at(target) => {
                        results.push(Some(snapshot.result.clone()));
                    }
                    _ => {
                        results.push(None);
                        stale.push((index, runs));
                    }
                }
            }
            if stale.is_empty() {
                let results = results.into_iter().flatten().collect();
                return Ok((target, results));
            }
            if round >= MAX_CHASE_ROUNDS {
                for (index, _) in stale {
                    let snapshot = self.execute(&handles[index].entry, Some(target)).await?;
                    self.inner
                        .counters
                        .pinned_executions
                        .fetch_add(1, Ordering::Relaxed);
                    results[index] = Some(snapshot.result);
                }
                let results = results.into_iter().flatten().collect();
                return Ok((target, results));
            }
            round += 1;
            // The drivers of the stale entries are re-running them; wait for those runs.
            for (index, mut runs) in stale {
                let entry = &handles[index].entry;
                if let Some(err) = entry.closed() {
                    return Err(err);
                }
                let fresh = entry
                    .current()
                    .is_some_and(|snapshot| snapshot.ts > target || snapshot.valid_at(target));
                if !fresh && runs.changed().await.is_err() {
                    return Err(database_closed());
                }
            }
        }
    }

    /// Run the entry's query at `ts` (the newest snapshot when `None`).
    async fn execute(&self, entry: &Entry, ts: Option<Timestamp>) -> Result<Snapshot> {
        execute(&self.inner, entry, ts).await
    }
}

fn database_closed() -> Error {
    Error::new(
        ErrorCode::StorageUnavailable,
        "the database shut down; live queries stopped",
    )
}

async fn wait_for_first_result(entry: &Entry) -> Result<()> {
    let mut runs = entry.runs.subscribe();
    loop {
        {
            let state = entry.state.lock();
            if let Some(err) = &state.closed {
                return Err(err.clone());
            }
            if state.current.is_some() {
                return Ok(());
            }
        }
        if runs.changed().await.is_err() {
            return Err(database_closed());
        }
    }
}

/// Run `entry`'s query once and subscribe to what it read. Fails only if the result
/// cannot be encoded for clients (an internal error).
async fn execute(inner: &Inner, entry: &Entry, ts: Option<Timestamp>) -> Result<Snapshot> {
    let runner = &inner.runner;
    let args = match &entry.args {
        Ok(args) => args.clone(),
        Err(err) => {
            return Ok(Snapshot {
                result: failure_result(runner, err, LogLines::default())?,
                ts: ts.unwrap_or_else(|| runner.database().latest_ts()),
                subscription: None,
            })
        }
    };
    inner.counters.executions.fetch_add(1, Ordering::Relaxed);
    let outcome = runner
        .run_query(
            entry.key.udf_path.as_str(),
            args,
            entry.identity.clone(),
            Caller::Client,
            ts,
        )
        .await;
    let result = match outcome.result {
        Ok(value) => Arc::new(QueryResult::success(
            value.to_convex_json(),
            outcome.log_lines.into_vec(),
            None,
        )?),
        Err(err) => failure_result(runner, &err, outcome.log_lines)?,
    };
    let subscription = outcome.read_set.map(|read_set| {
        Arc::new(
            runner
                .database()
                .subscriptions()
                .subscribe(read_set, outcome.ts),
        )
    });
    Ok(Snapshot {
        result,
        ts: outcome.ts,
        subscription,
    })
}

fn failure_result(
    runner: &FunctionRunner,
    err: &Error,
    log_lines: LogLines,
) -> Result<Arc<QueryResult>> {
    let failure = runner.failure(err);
    let failure = FunctionFailure {
        message: failure.message,
        error_data: failure.data,
    };
    Ok(Arc::new(QueryResult::failure(
        failure,
        log_lines.into_vec(),
        None,
    )?))
}

/// The driver of one entry: run, publish, wait for the invalidation, run again.
async fn drive(inner: Weak<Inner>, entry: Arc<Entry>) {
    let mut commits = match inner.upgrade() {
        Some(manager) => manager.runner.database().commit_watch(),
        None => return,
    };
    let mut first = true;
    loop {
        let Some(manager) = inner.upgrade() else {
            return;
        };
        let snapshot = match execute(&manager, &entry, None).await {
            Ok(snapshot) => Arc::new(snapshot),
            Err(err) => {
                tracing::error!(key = ?entry.key, "a live query cannot produce results: {err}");
                close_entry(&entry, err);
                return;
            }
        };
        let subscription = snapshot.subscription.clone();
        let new_fingerprint = snapshot.result.fingerprint();
        let signals: Vec<Arc<Signal>> = {
            let mut state = entry.state.lock();
            let previous: Option<ResultFingerprint> =
                state.current.as_ref().map(|old| old.result.fingerprint());
            state.current = Some(snapshot);
            if previous == Some(new_fingerprint) {
                Vec::new()
            } else {
                state.subscribers.values().cloned().collect()
            }
        };
        if !first {
            manager.counters.reruns.fetch_add(1, Ordering::Relaxed);
            if signals.is_empty() {
                manager
                    .counters
                    .spurious_reruns
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(manager);
        entry.runs.send_modify(|runs| *runs += 1);
        for signal in signals {
            signal.raise();
        }
        first = false;
        let Some(subscription) = subscription else {
            // Nothing was read (e.g. an unknown function): the result never changes.
            return;
        };
        let Some(invalidated_at) = subscription.invalidated().await else {
            close_entry(&entry, database_closed());
            return;
        };
        // The committer appends a commit to the write log just before it publishes it, so
        // a subscription can fire for a commit that new snapshots cannot see yet. Re-run
        // only once it is visible; otherwise the re-run would read the old data again.
        if commits
            .wait_for(|published| *published >= invalidated_at)
            .await
            .is_err()
        {
            close_entry(&entry, database_closed());
            return;
        }
    }
}

/// Mark `entry` as unable to produce results and wake everyone waiting on it.
fn close_entry(entry: &Entry, err: Error) {
    let signals: Vec<Arc<Signal>> = {
        let mut state = entry.state.lock();
        state.closed = Some(err);
        state.subscribers.values().cloned().collect()
    };
    entry.runs.send_modify(|runs| *runs += 1);
    for signal in signals {
        signal.raise();
    }
}

/// A live query in process: each [`next`](LiveQuery::next) returns a result different
/// from the previous one. Dropping it unsubscribes.
#[derive(Debug)]
pub struct LiveQuery {
    handle: QueryHandle,
    signal: Arc<Signal>,
    last: Option<ResultFingerprint>,
}

/// One result of a [`LiveQuery`].
#[derive(Clone, Debug)]
pub struct LiveUpdate {
    /// The snapshot the result was read at.
    pub ts: Timestamp,
    /// The result as clients receive it (Convex JSON value, or the rendered failure).
    pub result: Arc<QueryResult>,
}

impl LiveUpdate {
    /// The returned value, decoded, or the failure as a client would see it.
    pub fn value(&self) -> std::result::Result<Value, FunctionFailure> {
        match self.result.outcome() {
            Ok(json) => Value::from_convex_json(json).map_err(|err| FunctionFailure {
                message: err.message().to_string(),
                error_data: None,
            }),
            Err(failure) => Err(failure.clone()),
        }
    }
}

impl LiveQuery {
    /// The key this query is shared under.
    pub fn key(&self) -> &QueryKey {
        &self.handle.entry.key
    }

    /// The latest result, if the first run finished.
    pub fn current(&self) -> Option<LiveUpdate> {
        self.handle.entry.current().map(|snapshot| LiveUpdate {
            ts: snapshot.ts,
            result: snapshot.result.clone(),
        })
    }

    /// Wait for a result different from the one returned last (the first call returns
    /// the current result as soon as there is one). Fails with
    /// [`ErrorCode::StorageUnavailable`] once the database shut down.
    pub async fn next(&mut self) -> Result<LiveUpdate> {
        loop {
            if let Some(err) = self.handle.entry.closed() {
                return Err(err);
            }
            if let Some(update) = self.current() {
                let fingerprint = update.result.fingerprint();
                if self.last != Some(fingerprint) {
                    self.last = Some(fingerprint);
                    return Ok(update);
                }
            }
            self.signal.wait().await;
        }
    }
}

/// The canonical JSON text of an argument object: keys sorted at every level, no spaces.
/// Two clients that send the same arguments in different key orders share one entry.
pub(crate) fn canonical_json_object(object: &Map<String, Json>) -> String {
    let mut out = String::new();
    write_object(&mut out, object);
    out
}

fn write_object(out: &mut String, object: &Map<String, Json>) {
    let mut keys: Vec<&String> = object.keys().collect();
    keys.sort();
    out.push('{');
    for (index, key) in keys.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        if let Some(value) = object.get(key) {
            write_json(out, value);
        }
    }
    out.push('}');
}

fn write_json(out: &mut String, value: &Json) {
    match value {
        Json::Object(object) => write_object(out, object),
        Json::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Json::String(text) => write_string(out, text),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn write_string(out: &mut String, text: &str) {
    let _ = write!(out, "{}", Json::String(text.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_order_does_not_split_subscriptions() {
        let a: Map<String, Json> =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":"s"}}"#)
                .expect("valid JSON");
        let b: Map<String, Json> =
            serde_json::from_str(r#"{"a":{"x":"s","y":[1,{"c":3,"d":2}]},"b":1}"#)
                .expect("valid JSON");
        assert_eq!(canonical_json_object(&a), canonical_json_object(&b));
        assert_eq!(
            canonical_json_object(&a),
            r#"{"a":{"x":"s","y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }

    #[tokio::test]
    async fn a_signal_folds_raises_into_one_wake_up() {
        let signal = Arc::new(Signal::new());
        signal.raise();
        signal.raise();
        signal.raise();
        assert_eq!(signal.wait().await, 3);
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.wait().await }
        });
        tokio::task::yield_now().await;
        signal.raise();
        assert_eq!(waiter.await.ok(), Some(1));
    }
}
