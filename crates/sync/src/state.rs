//! The version bookkeeping of one sync connection, as a pure state machine.
//!
//! Why it is separate from the socket worker: the clients check versions to the bit. The
//! npm client throws (and is stuck for good) when a `Transition` does not start exactly at
//! the version it holds; the Rust client reconnects. Getting this right is a matter of
//! bookkeeping, not of I/O, so it lives here where every rule is a unit test:
//!
//! - `current` is the version last sent in a `Transition` (`{0, 0, 0}` on a fresh socket);
//!   every `Transition` starts there.
//! - `received` versions are what the client announced (`ModifyQuerySet.newVersion`,
//!   `Authenticate.baseVersion + 1`); a message built on any other base is refused with the
//!   reference server's text (`Base version 3 passed up doesn't match the current version
//!   2`).
//! - A `Transition` ends at the received versions captured when its queries started to
//!   run, and at a timestamp that never goes backwards and covers every mutation already
//!   reported on the socket (read-your-writes).
//! - The query set is keyed by the client's query ids: adding an id twice or removing an
//!   unknown id is an error, and the set is capped at
//!   [`conflux_common::knobs::SYNC_MAX_QUERIES_COUNT`].
//! - A result identical to the one last sent for a query is not sent again; removals are
//!   sent before updates, so an id removed and added again ends up with its new result.
//!
//! Queries run between [`SocketState::plan_transition`] and
//! [`SocketState::commit_transition`] while the socket keeps receiving messages; the plan
//! remembers which version of each query it ran, so a result computed for a query the
//! client has since removed or replaced is never sent under its id.
//!
//! ```
//! use std::sync::Arc;
//! use conflux_sync::protocol::{parse_client_message, ClientMessage, Ts};
//! use conflux_sync::state::{QueryResult, SocketState};
//!
//! let mut state = SocketState::new();
//! let ClientMessage::ModifyQuerySet(change) = parse_client_message(
//!     r#"{"type":"ModifyQuerySet","baseVersion":0,"newVersion":1,
//!         "modifications":[{"type":"Add","queryId":0,"udfPath":"messages:list","args":[{}]}]}"#,
//! )? else { unreachable!() };
//! state.modify_query_set(change)?;
//!
//! let plan = state.plan_transition(Ts::new(7)?)?;
//! let results = plan
//!     .queries()
//!     .iter()
//!     .map(|_query| QueryResult::success(serde_json::json!([]), vec![], None).map(Arc::new))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let transition = state.commit_transition(plan, results)?;
//! assert_eq!(transition.end_version.query_set.0, 1);
//! assert_eq!(transition.modifications.len(), 1);
//! # Ok::<(), conflux_common::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;

use conflux_common::{knobs, Error, ErrorCode, Identity, Result};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::protocol::{
    FunctionArgs, FunctionFailure, IdentityVersion, ModifyQuerySet, QueryId, QuerySetModification,
    QuerySetVersion, StateModification, StateVersion, Transition, Ts,
};
use crate::udf_path::UdfPath;

/// What a subscribed query runs: the function, its arguments and the journal the client
/// passed.
#[derive(Clone, Debug, PartialEq)]
pub struct QuerySpec {
    /// The query function.
    pub udf_path: UdfPath,
    /// Its arguments.
    pub args: FunctionArgs,
    /// The pagination journal the client sent with the subscription, if any.
    pub journal: Option<String>,
    /// The component path, if any (dashboard only).
    pub component_path: Option<String>,
}

/// Which incarnation of a query id a result belongs to: a new generation starts each time
/// an id is added, so results computed for an earlier incarnation are recognised as stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryGeneration(u64);

/// A SHA-256 digest of a query result (value or error, log lines and journal), used to
/// skip resending a result the client already has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResultFingerprint([u8; 32]);

/// The outcome of running a query once, ready to be sent to any number of clients.
///
/// The fingerprint is computed once on construction, so a result shared by many
/// subscriptions is hashed once rather than once per socket.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    outcome: Result<Json, FunctionFailure>,
    log_lines: Vec<String>,
    journal: Option<String>,
    fingerprint: ResultFingerprint,
}

impl QueryResult {
    /// A successful run returning `value` (Convex JSON).
    pub fn success(value: Json, log_lines: Vec<String>, journal: Option<String>) -> Result<Self> {
        QueryResult::new(Ok(value), log_lines, journal)
    }

    /// A failed run.
    pub fn failure(
        failure: FunctionFailure,
        log_lines: Vec<String>,
        journal: Option<String>,
    ) -> Result<Self> {
        QueryResult::new(Err(failure), log_lines, journal)
    }

    fn new(
        outcome: Result<Json, FunctionFailure>,
        log_lines: Vec<String>,
        journal: Option<String>,
    ) -> Result<Self> {
        #[derive(serde::Serialize)]
        struct Hashed<'a> {
            value: Option<&'a Json>,
            error_message: Option<&'a str>,
            error_data: Option<&'a Json>,
            log_lines: &'a [String],
            journal: &'a Option<String>,
        }
        let hashed = match &outcome {
            Ok(value) => Hashed {
                value: Some(value),
                error_message: None,
                error_data: None,
                log_lines: &log_lines,
                journal: &journal,
            },
            Err(failure) => Hashed {
                value: None,
                error_message: Some(&failure.message),
                error_data: failure.error_data.as_ref(),
                log_lines: &log_lines,
                journal: &journal,
            },
        };
        let mut hasher = HashWriter(Sha256::new());
        serde_json::to_writer(&mut hasher, &hashed).map_err(Error::internal)?;
        let fingerprint = ResultFingerprint(hasher.0.finalize().into());
        Ok(QueryResult {
            outcome,
            log_lines,
            journal,
            fingerprint,
        })
    }

    /// The digest that decides whether a client already has this result.
    pub fn fingerprint(&self) -> ResultFingerprint {
        self.fingerprint
    }

    /// The value or the failure.
    pub fn outcome(&self) -> Result<&Json, &FunctionFailure> {
        self.outcome.as_ref()
    }

    /// The modification that delivers this result for `query_id`.
    pub fn to_modification(&self, query_id: QueryId) -> StateModification {
        match &self.outcome {
            Ok(value) => StateModification::QueryUpdated {
                query_id,
                value: value.clone(),
                log_lines: self.log_lines.clone(),
                journal: self.journal.clone(),
            },
            Err(failure) => StateModification::QueryFailed {
                query_id,
                error_message: failure.message.clone(),
                error_data: failure.error_data.clone(),
                log_lines: self.log_lines.clone(),
                journal: self.journal.clone(),
            },
        }
    }
}

struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One query a [`TransitionPlan`] must run.
#[derive(Clone, Debug)]
pub struct PlannedQuery {
    /// The client's id.
    pub query_id: QueryId,
    /// The incarnation of the id this run is for.
    pub generation: QueryGeneration,
    /// What to run.
    pub spec: Arc<QuerySpec>,
}

/// A transition in the making: the versions it goes between, the identity and the queries
/// to run at its timestamp. Hand it back with the results to
/// [`SocketState::commit_transition`].
#[derive(Debug)]
pub struct TransitionPlan {
    start: StateVersion,
    end: StateVersion,
    identity: Identity,
    queries: Vec<PlannedQuery>,
    removals: Vec<(QueryId, QuerySetVersion)>,
}

impl TransitionPlan {
    /// The version the client holds now.
    pub fn start(&self) -> StateVersion {
        self.start
    }

    /// The version the client will hold afterwards.
    pub fn end(&self) -> StateVersion {
        self.end
    }

    /// The identity the queries must run as (the one of `end().identity`).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The queries to run at `end().ts`, in query-id order.
    pub fn queries(&self) -> &[PlannedQuery] {
        &self.queries
    }

    /// Move the end timestamp forward to `ts`, the snapshot the results were actually
    /// read at. The planned timestamp is a lower bound (the client's current timestamp and
    /// every mutation already reported); the worker learns the final one only once the
    /// queries have run. Moving it backwards is refused (an internal error).
    pub fn raise_ts(&mut self, ts: Ts) -> Result<()> {
        if ts < self.end.ts {
            return Err(Error::internal(format!(
                "a transition planned at {} cannot end at the earlier timestamp {ts}",
                self.end.ts
            )));
        }
        self.end.ts = ts;
        Ok(())
    }
}

#[derive(Debug)]
struct QueryEntry {
    spec: Arc<QuerySpec>,
    generation: QueryGeneration,
    /// Whether a plan has picked this query up, so a result for it may have reached the
    /// client and a removal must be announced with `QueryRemoved`.
    may_be_on_client: bool,
    last_sent: Option<ResultFingerprint>,
}

/// The versions, identity and query set of one connection. See the module docs.
#[derive(Debug)]
pub struct SocketState {
    current: StateVersion,
    received_query_set: QuerySetVersion,
    received_identity: IdentityVersion,
    identity: Identity,
    queries: BTreeMap<QueryId, QueryEntry>,
    /// Removed queries the client may hold a result for, with the query-set version that
    /// removed them; announced in the next transition.
    removed: BTreeMap<QueryId, QuerySetVersion>,
    next_generation: u64,
    /// The highest mutation timestamp reported on this connection.
    max_mutation_ts: Ts,
    max_queries: usize,
}

impl Default for SocketState {
    fn default() -> Self {
        SocketState::new()
    }
}

impl SocketState {
    /// A fresh connection: version `{0, 0, 0}`, anonymous, no queries, at most
    /// [`knobs::SYNC_MAX_QUERIES_COUNT`] queries.
    pub fn new() -> SocketState {
        SocketState::with_max_queries(*knobs::SYNC_MAX_QUERIES_COUNT)
    }

    /// A fresh connection with its own cap on the number of queries.
    pub fn with_max_queries(max_queries: usize) -> SocketState {
        SocketState {
            current: StateVersion::INITIAL,
            received_query_set: QuerySetVersion(0),
            received_identity: IdentityVersion(0),
            identity: Identity::Anonymous,
            queries: BTreeMap::new(),
            removed: BTreeMap::new(),
            next_generation: 0,
            max_mutation_ts: Ts::ZERO,
            max_queries,
        }
    }

    /// The version last sent to the client (where the next `Transition` starts).
    pub fn current_version(&self) -> StateVersion {
        self.current
    }

    /// The last query-set version the client announced.
    pub fn received_query_set_version(&self) -> QuerySetVersion {
        self.received_query_set
    }

    /// The last identity version the client announced.
    pub fn received_identity_version(&self) -> IdentityVersion {
        self.received_identity
    }

    /// The identity of the connection (as of the last accepted `Authenticate`).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// How many queries the client is subscribed to.
    pub fn query_count(&self) -> usize {
        self.queries.len()
    }

    /// The subscribed queries, in query-id order.
    pub fn queries(&self) -> impl Iterator<Item = (QueryId, &QuerySpec)> + '_ {
        self.queries
            .iter()
            .map(|(id, entry)| (*id, entry.spec.as_ref()))
    }

    /// The subscribed queries with their shared specs, in query-id order. A query id that
    /// was removed and added again gets a new spec, so comparing the `Arc`s (with
    /// [`Arc::ptr_eq`]) tells a re-added query from the one that was there before.
    pub fn query_specs(&self) -> impl Iterator<Item = (QueryId, &Arc<QuerySpec>)> + '_ {
        self.queries.iter().map(|(id, entry)| (*id, &entry.spec))
    }

    /// Apply a `ModifyQuerySet`. All or nothing: on error the query set is unchanged.
    ///
    /// Errors: [`ErrorCode::BaseVersionMismatch`] when `baseVersion` is not the last
    /// received version; [`ErrorCode::BadRequest`] when `newVersion` does not move forward,
    /// an id is added twice or an unknown id removed; [`ErrorCode::LimitExceeded`] when the
    /// set would exceed the query limit.
    pub fn modify_query_set(&mut self, change: ModifyQuerySet) -> Result<QuerySetVersion> {
        if change.base_version != self.received_query_set {
            return Err(Error::new(
                ErrorCode::BaseVersionMismatch,
                format!(
                    "Base version {} passed up doesn't match the current version {}",
                    change.base_version, self.received_query_set
                ),
            ));
        }
        if change.new_version <= change.base_version {
            return Err(Error::bad_request(format!(
                "ModifyQuerySet.newVersion: {} must be greater than baseVersion {}",
                change.new_version, change.base_version
            )));
        }
        // Check the whole change against the ids it would leave before touching anything.
        let mut ids: BTreeSet<QueryId> = self.queries.keys().copied().collect();
        for (index, modification) in change.modifications.iter().enumerate() {
            match modification {
                QuerySetModification::Add(add) => {
                    if !ids.insert(add.query_id) {
                        return Err(Error::bad_request(format!(
                            "ModifyQuerySet.modifications[{index}]: query id {} is already in \
                             the query set; remove it before adding it again",
                            add.query_id
                        )));
                    }
                }
                QuerySetModification::Remove { query_id } => {
                    if !ids.remove(query_id) {
                        return Err(Error::bad_request(format!(
                            "ModifyQuerySet.modifications[{index}]: query id {query_id} is not \
                             in the query set"
                        )));
                    }
                }
            }
            if ids.len() > self.max_queries {
                return Err(Error::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "the query set would hold more than {} queries, the limit per connection \
                         (CONFLUX_SYNC_MAX_QUERIES_COUNT); unsubscribe from queries that are no \
                         longer needed",
                        self.max_queries
                    ),
                ));
            }
        }
        for modification in change.modifications {
            match modification {
                QuerySetModification::Add(add) => {
                    let generation = QueryGeneration(self.next_generation);
                    self.next_generation += 1;
                    let spec = QuerySpec {
                        udf_path: add.udf_path,
                        args: add.args,
                        journal: add.journal,
                        component_path: add.component_path,
                    };
                    self.queries.insert(
                        add.query_id,
                        QueryEntry {
                            spec: Arc::new(spec),
                            generation,
                            may_be_on_client: false,
                            last_sent: None,
                        },
                    );
                }
                QuerySetModification::Remove { query_id } => {
                    if let Some(entry) = self.queries.remove(&query_id) {
                        if entry.may_be_on_client {
                            self.removed.insert(query_id, change.new_version);
                        }
                    }
                }
            }
        }
        self.received_query_set = change.new_version;
        Ok(change.new_version)
    }

    /// Check an `Authenticate`'s `baseVersion` before its token is validated, so a version
    /// error is reported as such rather than as an authentication failure.
    pub fn check_identity_base(&self, base_version: IdentityVersion) -> Result<()> {
        if base_version != self.received_identity {
            return Err(Error::new(
                ErrorCode::BaseVersionMismatch,
                format!(
                    "Base identity version {base_version} passed up doesn't match the current \
                     identity version {}",
                    self.received_identity
                ),
            ));
        }
        Ok(())
    }

    /// Accept the identity of a successful `Authenticate` built on `base_version`; returns
    /// the new identity version (`base_version + 1`) that the next transition confirms.
    pub fn set_identity(
        &mut self,
        base_version: IdentityVersion,
        identity: Identity,
    ) -> Result<IdentityVersion> {
        self.check_identity_base(base_version)?;
        let next = base_version.0.checked_add(1).ok_or_else(|| {
            Error::bad_request("Authenticate.baseVersion: the identity version cannot grow further")
        })?;
        self.received_identity = IdentityVersion(next);
        self.identity = identity;
        Ok(self.received_identity)
    }

    /// Remember that a mutation committed at `ts` was reported to the client: transitions
    /// from now on must reach `ts`.
    pub fn record_mutation_ts(&mut self, ts: Ts) {
        self.max_mutation_ts = self.max_mutation_ts.max(ts);
    }

    /// The lowest timestamp the next transition may end at.
    pub fn min_transition_ts(&self) -> Ts {
        self.current.ts.max(self.max_mutation_ts)
    }

    /// Whether the client is owed a transition even if no query result changed: a
    /// query-set or identity change to acknowledge, a removal to announce, or a reported
    /// mutation whose timestamp the client has not reached.
    pub fn transition_needed(&self) -> bool {
        self.received_query_set != self.current.query_set
            || self.received_identity != self.current.identity
            || self.max_mutation_ts > self.current.ts
            || !self.removed.is_empty()
    }

    /// Start a transition whose queries run at snapshot `ts`.
    ///
    /// Fails (as an internal error: it is a bug in the caller) if `ts` is below
    /// [`SocketState::min_transition_ts`].
    pub fn plan_transition(&mut self, ts: Ts) -> Result<TransitionPlan> {
        if ts < self.current.ts {
            return Err(Error::internal(format!(
                "a transition may not move the timestamp backwards (from {} to {ts})",
                self.current.ts
            )));
        }
        if ts < self.max_mutation_ts {
            return Err(Error::internal(format!(
                "a transition at {ts} would not reach the mutation already reported at {}",
                self.max_mutation_ts
            )));
        }
        let mut queries = Vec::with_capacity(self.queries.len());
        for (query_id, entry) in &mut self.queries {
            entry.may_be_on_client = true;
            queries.push(PlannedQuery {
                query_id: *query_id,
                generation: entry.generation,
                spec: Arc::clone(&entry.spec),
            });
        }
        Ok(TransitionPlan {
            start: self.current,
            end: StateVersion {
                query_set: self.received_query_set,
                identity: self.received_identity,
                ts,
            },
            identity: self.identity.clone(),
            queries,
            removals: self
                .removed
                .iter()
                .map(|(id, version)| (*id, *version))
                .collect(),
        })
    }

    /// Whether committing `plan` with `results` would tell the client nothing: no version
    /// to acknowledge, no removal, no mutation timestamp to reach and no result it does
    /// not already have. Such a plan can be dropped instead of sending a `Transition` that
    /// only moves the timestamp (the state is untouched either way).
    pub fn transition_is_empty(&self, plan: &TransitionPlan, results: &[Arc<QueryResult>]) -> bool {
        if plan.start != self.current
            || plan.end.query_set != self.current.query_set
            || plan.end.identity != self.current.identity
            || !plan.removals.is_empty()
            || self.max_mutation_ts > self.current.ts
        {
            return false;
        }
        plan.queries.iter().zip(results).all(|(planned, result)| {
            match self.queries.get(&planned.query_id) {
                Some(entry) if entry.generation == planned.generation => {
                    entry.last_sent == Some(result.fingerprint())
                }
                // Removed or replaced since the plan: nothing would be sent for it.
                _ => true,
            }
        })
    }

    /// Finish a transition with one result per planned query (in the plan's order) and
    /// return the message to send. Results the client already has, and results for query
    /// ids removed or replaced since the plan was made, are left out.
    pub fn commit_transition(
        &mut self,
        plan: TransitionPlan,
        results: Vec<Arc<QueryResult>>,
    ) -> Result<Transition> {
        if plan.start != self.current {
            return Err(Error::internal(format!(
                "a transition planned from {} cannot be committed at {}; plan it again",
                plan.start, self.current
            )));
        }
        if results.len() != plan.queries.len() {
            return Err(Error::internal(format!(
                "a transition planned {} queries but received {} results",
                plan.queries.len(),
                results.len()
            )));
        }
        let mut modifications = Vec::new();
        for (query_id, removed_at) in plan.removals {
            // Announce the removal unless the id was removed again later (it then stays
            // pending for the next transition, with its newer version).
            if self.removed.get(&query_id) == Some(&removed_at) {
                self.removed.remove(&query_id);
            }
            modifications.push(StateModification::QueryRemoved { query_id });
        }
        for (planned, result) in plan.queries.iter().zip(results) {
            let Some(entry) = self.queries.get_mut(&planned.query_id) else {
                continue;
            };
            if entry.generation != planned.generation {
                continue;
            }
            if entry.last_sent == Some(result.fingerprint()) {
                continue;
            }
            entry.last_sent = Some(result.fingerprint());
            modifications.push(result.to_modification(planned.query_id));
        }
        self.current = plan.end;
        Ok(Transition {
            start_version: plan.start,
            end_version: plan.end,
            modifications,
            client_clock_skew: None,
            server_ts: None,
        })
    }
}

#[cfg(test)]
mod tests;
