//! One sync socket: a reader task, a processing loop and a writer task.
//!
//! ```text
//!  WebSocket ──▶ reader ──(bounded inbox)──▶ processing loop ──(bounded outbox)──▶ writer ──▶ WebSocket
//!                 parse, client timeout        SocketState, auth, queries,          pings, slow-client
//!                                              mutations (one at a time),           timeout
//!                                              actions (concurrent)
//! ```
//!
//! Why three tasks: reading, deciding and writing must not wait for each other. A client
//! that stops reading must not stop the server from noticing its `Authenticate` or its
//! departure, and a query that takes a while must not stop the socket from answering
//! pings. The processing loop owns all the per-socket state, so nothing is locked.
//!
//! # Back-pressure and coalescing
//!
//! Outgoing messages go through an outbox of [`SyncConfig::outbox_messages`] frames. The
//! loop computes the next `Transition` only when the outbox has room and nothing else is
//! waiting: while a client reads slowly, result changes accumulate as a counter on the
//! socket's [`Signal`] (the shared live queries never wait for a socket) and the next
//! `Transition` carries only the latest result of each query. A writer blocked for
//! [`SyncConfig::slow_client_timeout`] on one frame disconnects the client. Per socket at
//! most the outbox, one coalesced `Transition` and the responses to the client's own
//! (bounded) requests are ever buffered; [`SyncMetrics`](crate::SyncMetrics) records the
//! high-water mark.
//!
//! # Ordering
//!
//! - Client messages are handled strictly in arrival order. An `Authenticate` is
//!   validated before the next message is even looked at, and no new `Transition` is
//!   planned meanwhile, so the `ModifyQuerySet` that follows runs with the new identity.
//!   Messages the client already sent are handled before a `Transition` is planned, and
//!   the first `Transition` of a connection waits (at most [`FIRST_TRANSITION_GRACE`])
//!   for the first `ModifyQuerySet`: the official clients send `Connect`,
//!   `Authenticate`, `ModifyQuerySet` back to back, and the first `Transition` then
//!   confirms the identity and carries the signed-in results together. No query of the
//!   connection is ever evaluated with the identity that `Authenticate` replaced.
//! - The first `Transition` of a connection also waits for the mutations received before
//!   it to be answered. After a reconnect the clients resend their unanswered mutations
//!   right behind `ModifyQuerySet`; a first `Transition` at a timestamp past a resent
//!   mutation's original commit would otherwise reach the client before the answer to the
//!   resend, and the Rust client 0.10.4 treats that late answer as a protocol error
//!   ("Invalid request id from server") and reconnects, repeatedly while updates flow.
//! - Mutations run one at a time in arrival order (a queue of
//!   [`SyncConfig::max_queued_mutations`]), exactly once per `(sessionId, requestId)`;
//!   each success is answered with `MutationResponse` and then a `Transition` whose
//!   `endVersion.ts` reaches its commit timestamp. A `ConvexError` failure is also
//!   followed by a `Transition`, because the Rust client resolves those only then.
//! - Actions run concurrently, at most [`SyncConfig::max_inflight_actions`] at once.
//! - All queries of a `Transition` hold at one snapshot
//!   ([`SubscriptionManager::consistent_results`](crate::SubscriptionManager)).
//!
//! # Identity changes
//!
//! - A token for the user and sign-in session already in place (a refresh) moves the
//!   identity version (the client needs that confirmation) but runs no query again: the
//!   shared live queries are keyed by the identity's cache key, which did not change.
//! - A rejected token: `AuthError{authUpdateAttempted: true, baseVersion: <that
//!   Authenticate's baseVersion>}`, then the socket closes without a close code.
//! - A token that expires while in use: `AuthError{error: "Convex token identity
//!   expired", authUpdateAttempted: false}`, then close.
//! - A sign-in session that ends ([`TokenValidator::session_events`]): the socket drops
//!   the identity at once (the in-flight `Transition` is abandoned, queued mutations and
//!   running actions are cancelled) and sends `AuthError{authUpdateAttempted: false}`
//!   then closes, exactly as for an expired token. Why this message: the npm client's
//!   `AuthenticationManager.onAuthError` answers it by stopping the socket and fetching a
//!   token with `forceRefreshToken: true`; after a sign-out the fetcher has none, so the
//!   client clears its auth, reports `isAuthenticated: false` and reconnects signed out.
//!   If the client was still waiting for confirmation of a token it ignores that
//!   message, but the close makes it reconnect and re-send the token, which the validator
//!   now refuses (`authUpdateAttempted: true`), leading to the same signed-out end. The
//!   server cannot move the identity version itself (only the client announces
//!   versions), so silently re-running the queries signed out would leave the client
//!   believing it is signed in: that is why the socket closes instead.
//!
//! # Errors and closing (spec §1.3)
//!
//! `FatalError` only for what a reconnect cannot fix (malformed JSON, unknown message
//! type, wrong field types, version mismatches, a query set over the limit, a frame over
//! the size limit), then a close frame without a code. Internal failures close with 1011
//! `InternalServerError`, overload with 1013 and the error code as reason,
//! [`SyncState::disconnect_all`] with 1001. Requests over the in-flight limits, and
//! requests beyond the socket's rate limit (a token bucket, see `rate_limit`), get a
//! failed response naming the limit; the socket stays open. While more than
//! [`PENDING_BEFORE_PAUSING_READS`] messages wait for a client that does not read them,
//! its next messages are not read either (TCP slows it down) so that refusals cannot pile
//! up without bound.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use conflux_common::{Error, ErrorCode, Identity, SessionEnded, TokenValidator, UserIdentity};
use conflux_db::Timestamp;
use conflux_functions::runner::{ActionOutcome, Caller, MutationKey, MutationOutcome};
use conflux_functions::{FunctionRunner, LogLines};
use conflux_values::{Object, Value};
use futures::future::BoxFuture;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::Value as Json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::protocol::{
    self, parse_client_message_with_limit, ActionResponse, AuthError, AuthToken, Authenticate,
    ClientMessage, FatalError, FunctionArgs, FunctionFailure, FunctionRequest, IdentityVersion,
    MutationResponse, QueryId, RequestId, ServerMessage, SessionId, Ts,
};
use crate::rate_limit::TokenBucket;
use crate::server::{Hub, SyncConfig, SyncState};
use crate::state::{PlannedQuery, QueryResult, QuerySpec, SocketState, TransitionPlan};
use crate::subscriptions::{QueryHandle, Signal};

/// How long the first `Transition` of a connection waits for the first `ModifyQuerySet`
/// (the official clients send it right after `Connect` and `Authenticate`).
pub const FIRST_TRANSITION_GRACE: Duration = Duration::from_millis(50);
/// Client messages parsed but not yet handled; a full inbox stops the reader (and so the
/// client, through TCP flow control).
const INBOX_MESSAGES: usize = 16;
/// Messages waiting for the outbox above which the client's next messages are not read
/// until it takes some (a client that floods requests and never reads the answers).
const PENDING_BEFORE_PAUSING_READS: usize = 256;
/// Frames larger than this are parsed on the blocking pool, off the reactor.
const PARSE_INLINE_MAX_BYTES: usize = 64 * 1024;
/// After the server closed, how long to keep reading until the client answers the close.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Longest wait for the last messages (an error, the close frame) to be written.
const FINAL_FLUSH_MAX: Duration = Duration::from_secs(5);
/// Ended sessions remembered while a token is being validated.
const ENDED_DURING_AUTH_MAX: usize = 256;
/// The text of an `AuthError` for an identity whose token expired (the reference's).
pub const IDENTITY_EXPIRED: &str = "Convex token identity expired";
/// The text of an `AuthError` for an identity whose sign-in session ended.
pub const SESSION_ENDED: &str =
    "Convex token identity expired: its sign-in session ended (signed out or revoked); sign in \
     again";

/// Something to write to the client.
enum Outgoing {
    Text(String),
    Close(Option<CloseFrame>),
}

impl Outgoing {
    fn bytes(&self) -> usize {
        match self {
            Outgoing::Text(text) => text.len(),
            Outgoing::Close(_) => 0,
        }
    }
}

/// What the reader hands the processing loop.
enum Inbound {
    Message(ClientMessage),
    Invalid(Error),
    Closed,
    TimedOut,
}

struct MutationJob {
    request_id: RequestId,
    udf_path: String,
    args: conflux_common::Result<Object>,
    identity: Identity,
    key: Option<MutationKey>,
}

struct MutationDone {
    request_id: RequestId,
    outcome: MutationOutcome,
}

struct AuthAttempt {
    base_version: IdentityVersion,
    token: String,
    result: conflux_common::Result<UserIdentity>,
}

/// A transition being computed: its plan, whether it must be sent even if it carries
/// nothing new, and (once done) the snapshot and the results.
type TransitionJob = BoxFuture<'static, ComputedTransition>;

struct ComputedTransition {
    plan: TransitionPlan,
    required: bool,
    results: conflux_common::Result<(Timestamp, Vec<Arc<QueryResult>>)>,
}

/// Messages waiting for one socket, and the endpoint's high-water marks.
struct Backlog {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    hub: Arc<Hub>,
}

impl Backlog {
    fn added(&self, bytes: usize) {
        let messages = self.messages.fetch_add(1, Ordering::AcqRel) + 1;
        let total = self.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.hub
            .backlog_high_water_messages
            .fetch_max(messages, Ordering::AcqRel);
        self.hub
            .backlog_high_water_bytes
            .fetch_max(total, Ordering::AcqRel);
    }

    fn written(&self, bytes: usize) {
        self.messages.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Counts a socket as open while alive.
struct OpenSocket(Arc<Hub>);

impl OpenSocket {
    fn new(hub: Arc<Hub>) -> OpenSocket {
        hub.open_sockets.fetch_add(1, Ordering::AcqRel);
        Hub::bump(&hub.sockets_accepted);
        OpenSocket(hub)
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.open_sockets.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serve one upgraded sync socket until it closes.
pub(crate) async fn run_socket(socket: WebSocket, sync: SyncState, client: String) {
    let _open = OpenSocket::new(sync.hub.clone());
    tracing::debug!(%client, "sync socket open");
    let config = sync.config.clone();
    let (sink, stream) = socket.split();
    let backlog = Arc::new(Backlog {
        messages: AtomicUsize::new(0),
        bytes: AtomicUsize::new(0),
        hub: sync.hub.clone(),
    });
    let (outbox_tx, outbox_rx) = mpsc::channel(config.outbox_messages.max(1));
    let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_MESSAGES);
    let mut writer = tokio::spawn(write_loop(
        sink,
        outbox_rx,
        config.clone(),
        backlog.clone(),
        sync.hub.clone(),
    ));
    let mut reader = tokio::spawn(read_loop(
        stream,
        inbox_tx,
        config.max_message_bytes,
        config.client_timeout,
    ));
    let (jobs_tx, jobs_rx) = mpsc::channel(config.max_queued_mutations.max(1));
    let (done_tx, done_rx) = mpsc::channel(config.max_queued_mutations.max(1) + 1);
    tokio::spawn(mutation_loop(sync.runner.clone(), jobs_rx, done_tx));

    let worker = Worker::new(sync, inbox_rx, outbox_tx, backlog, jobs_tx, done_rx);
    worker.run().await;

    // The outbox sender is gone: the writer sends what is left (the close frame last) and
    // ends; then the reader gets a moment to see the client's answer to the close.
    if tokio::time::timeout(FINAL_FLUSH_MAX, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    if tokio::time::timeout(CLOSE_LINGER, &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
    tracing::debug!(%client, "sync socket closed");
}

/// The query a socket holds for one of its query ids.
struct SocketQuery {
    spec: Arc<QuerySpec>,
    handle: Arc<QueryHandle>,
}

struct Worker {
    sync: SyncState,
    state: SocketState,
    connected: bool,
    session: Option<SessionId>,
    clock_skew: Option<i64>,
    first_transition_hold: Option<Instant>,
    queries: HashMap<QueryId, SocketQuery>,
    queries_identity: String,
    signal: Arc<Signal>,
    raised: u64,
    force_transition: bool,
    transition: Option<TransitionJob>,
    pending: VecDeque<Outgoing>,
    outbox: mpsc::Sender<Outgoing>,
    backlog: Arc<Backlog>,
    inbox: mpsc::Receiver<Inbound>,
    mutations: Option<mpsc::Sender<MutationJob>>,
    mutation_results: mpsc::Receiver<MutationDone>,
    actions: JoinSet<(RequestId, ActionOutcome)>,
    action_slots: Arc<Semaphore>,
    rate_limit: Option<TokenBucket>,
    /// Mutations queued or running for this socket.
    mutations_in_flight: usize,
    /// Whether a `Transition` went out on this connection.
    transition_sent: bool,
    pending_auth: Option<BoxFuture<'static, AuthAttempt>>,
    ended_during_auth: Vec<String>,
    token: Option<String>,
    expiry: Option<Instant>,
    session_events: Option<broadcast::Receiver<SessionEnded>>,
    revalidation: Option<BoxFuture<'static, conflux_common::Result<UserIdentity>>>,
    disconnect: watch::Receiver<u64>,
    stopping: bool,
    flush_on_stop: bool,
}

impl Worker {
    fn new(
        sync: SyncState,
        inbox: mpsc::Receiver<Inbound>,
        outbox: mpsc::Sender<Outgoing>,
        backlog: Arc<Backlog>,
        mutations: mpsc::Sender<MutationJob>,
        mutation_results: mpsc::Receiver<MutationDone>,
    ) -> Worker {
        let mut disconnect = sync.hub.disconnect.subscribe();
        disconnect.borrow_and_update();
        let session_events = sync
            .token_validator
            .as_ref()
            .and_then(|validator| validator.session_events());
        let action_slots = Arc::new(Semaphore::new(sync.config.max_inflight_actions));
        let rate_limit = TokenBucket::new(
            sync.config.rate_limit_per_second,
            sync.config.rate_limit_burst,
            std::time::Instant::now(),
        );
        let state = SocketState::with_max_queries(sync.config.max_queries);
        Worker {
            sync,
            state,
            connected: false,
            session: None,
            clock_skew: None,
            first_transition_hold: None,
            queries: HashMap::new(),
            queries_identity: String::new(),
            signal: Arc::new(Signal::new()),
            raised: 0,
            force_transition: false,
            transition: None,
            pending: VecDeque::new(),
            outbox,
            backlog,
            inbox,
            mutations: Some(mutations),
            mutation_results,
            actions: JoinSet::new(),
            action_slots,
            rate_limit,
            mutations_in_flight: 0,
            transition_sent: false,
            pending_auth: None,
            ended_during_auth: Vec::new(),
            token: None,
            expiry: None,
            session_events,
            revalidation: None,
            disconnect,
            stopping: false,
            flush_on_stop: true,
        }
    }

    async fn run(mut self) {
        while !self.stopping {
            self.maybe_start_transition();
            let hold = self.first_transition_hold;
            tokio::select! {
                _ = self.disconnect.changed() => self.going_away(),
                event = recv_session(&mut self.session_events) => self.on_session_event(event),
                attempt = poll_slot(&mut self.pending_auth) => self.on_auth_attempt(attempt),
                checked = poll_slot(&mut self.revalidation) => self.on_revalidated(checked),
                inbound = self.inbox.recv(),
                    if self.pending_auth.is_none()
                        && self.pending.len() < PENDING_BEFORE_PAUSING_READS =>
                {
                    self.on_inbound(inbound.unwrap_or(Inbound::Closed));
                }
                Some(done) = self.mutation_results.recv() => self.on_mutation_done(done),
                Some(joined) = self.actions.join_next(), if !self.actions.is_empty() => {
                    self.on_action_done(joined);
                }
                computed = poll_slot(&mut self.transition) => self.on_transition_computed(computed),
                raised = self.signal.wait() => self.on_results_changed(raised),
                permit = self.outbox.clone().reserve_owned(), if !self.pending.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(outgoing) = self.pending.pop_front() {
                            permit.send(outgoing);
                        }
                    }
                    Err(_) => self.writer_gone(),
                },
                _ = self.outbox.closed() => self.writer_gone(),
                _ = sleep_until_opt(self.expiry) => self.identity_expired(),
                _ = sleep_until_opt(hold) => self.first_transition_hold = None,
            }
        }
        self.finish().await;
    }

    /// Stop everything that could still act for this socket, then hand the last messages
    /// to the writer.
    async fn finish(mut self) {
        self.transition = None;
        self.pending_auth = None;
        self.revalidation = None;
        // Queued mutations are dropped (the mutation task sees the closed result channel
        // before starting the next one); the one running completes on its own.
        self.mutations = None;
        self.mutation_results.close();
        self.actions.abort_all();
        if !self.flush_on_stop {
            return;
        }
        let deadline = Instant::now() + self.sync.config.slow_client_timeout.min(FINAL_FLUSH_MAX);
        while let Some(outgoing) = self.pending.pop_front() {
            match tokio::time::timeout_at(deadline, self.outbox.send(outgoing)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Sending
    // ---------------------------------------------------------------------------------

    fn push(&mut self, message: ServerMessage) {
        match message.to_json_text() {
            Ok(text) => {
                self.backlog.added(text.len());
                self.pending.push_back(Outgoing::Text(text));
            }
            Err(err) => {
                tracing::error!(
                    message = message.type_name(),
                    "could not encode a sync message: {err}"
                );
                self.close_with(internal_close_frame(&err));
            }
        }
    }

    /// Queue a close frame after whatever is pending and stop.
    fn close_with(&mut self, frame: Option<CloseFrame>) {
        let close = Outgoing::Close(frame);
        self.backlog.added(close.bytes());
        self.pending.push_back(close);
        self.stopping = true;
    }

    fn fatal(&mut self, err: Error) {
        Hub::bump(&self.sync.hub.fatal_errors);
        tracing::info!("closing a sync socket after a protocol error: {err}");
        self.push(ServerMessage::FatalError(FatalError {
            error: err.client_message(self.sync.dev_mode),
        }));
        self.close_with(None);
    }

    fn fail_internal(&mut self, err: Error) {
        tracing::error!("sync socket failed: {err}");
        self.close_with(internal_close_frame(&err));
    }

    fn writer_gone(&mut self) {
        self.flush_on_stop = false;
        self.stopping = true;
    }

    fn stop_quietly(&mut self) {
        self.flush_on_stop = false;
        self.stopping = true;
    }

    fn going_away(&mut self) {
        self.close_with(Some(CloseFrame {
            code: 1001,
            reason: Utf8Bytes::from_static("GoingAway"),
        }));
    }

    // ---------------------------------------------------------------------------------
    // Transitions
    // ---------------------------------------------------------------------------------

    fn maybe_start_transition(&mut self) {
        let idle = self.transition.is_none()
            && self.pending_auth.is_none()
            && self.connected
            && !self.stopping
            && self.first_transition_hold.is_none()
            && (self.transition_sent || self.mutations_in_flight == 0)
            && self.pending.is_empty()
            && self.outbox.capacity() > 0
            && self.inbox.is_empty();
        if !idle {
            return;
        }
        if self.raised == 0 && !self.force_transition && !self.state.transition_needed() {
            return;
        }
        let min_ts = self.state.min_transition_ts();
        let plan = match self.state.plan_transition(min_ts) {
            Ok(plan) => plan,
            Err(err) => return self.fail_internal(err),
        };
        self.raised = 0;
        let required = std::mem::take(&mut self.force_transition);
        let handles: Vec<Arc<QueryHandle>> = plan
            .queries()
            .iter()
            .map(|planned| self.handle_for(planned, plan.identity()))
            .collect();
        let manager = self.sync.subscriptions.clone();
        let min_ts = match Timestamp::new(min_ts.get()) {
            Ok(ts) => ts,
            Err(err) => return self.fail_internal(err),
        };
        self.transition = Some(Box::pin(async move {
            let results = manager.consistent_results(&handles, min_ts).await;
            ComputedTransition {
                plan,
                required,
                results,
            }
        }));
    }

    /// Shared results of this socket's queries changed `raised` times since the last
    /// look. Changes not yet sent are folded into the next transition.
    fn on_results_changed(&mut self, raised: u64) {
        let folded = if self.raised > 0 {
            raised
        } else {
            raised.saturating_sub(1)
        };
        if folded > 0 {
            self.sync
                .hub
                .coalesced_updates
                .fetch_add(folded, Ordering::Relaxed);
        }
        self.raised += raised;
    }

    fn handle_for(&mut self, planned: &PlannedQuery, identity: &Identity) -> Arc<QueryHandle> {
        if let Some(query) = self.queries.get(&planned.query_id) {
            if Arc::ptr_eq(&query.spec, &planned.spec) {
                return query.handle.clone();
            }
        }
        // Only reachable if the bookkeeping below missed a change; subscribe now.
        let handle = Arc::new(self.sync.subscriptions.subscribe_with_signal(
            &planned.spec.udf_path,
            &planned.spec.args,
            identity,
            self.signal.clone(),
        ));
        self.queries.insert(
            planned.query_id,
            SocketQuery {
                spec: planned.spec.clone(),
                handle: handle.clone(),
            },
        );
        handle
    }

    /// Make the socket's live queries match its query set and identity.
    fn reconcile_queries(&mut self) {
        let identity = self.state.identity().clone();
        let key = identity.cache_key();
        if key != self.queries_identity {
            self.queries.clear();
            self.queries_identity = key;
        }
        let specs: Vec<(QueryId, Arc<QuerySpec>)> = self
            .state
            .query_specs()
            .map(|(id, spec)| (id, spec.clone()))
            .collect();
        let wanted: HashMap<QueryId, &Arc<QuerySpec>> =
            specs.iter().map(|(id, spec)| (*id, spec)).collect();
        self.queries.retain(|id, query| {
            wanted
                .get(id)
                .is_some_and(|spec| Arc::ptr_eq(spec, &query.spec))
        });
        for (id, spec) in specs {
            if self.queries.contains_key(&id) {
                continue;
            }
            let handle = self.sync.subscriptions.subscribe_with_signal(
                &spec.udf_path,
                &spec.args,
                &identity,
                self.signal.clone(),
            );
            self.queries.insert(
                id,
                SocketQuery {
                    spec,
                    handle: Arc::new(handle),
                },
            );
        }
    }

    fn on_transition_computed(&mut self, computed: ComputedTransition) {
        let ComputedTransition {
            mut plan,
            required,
            results,
        } = computed;
        let (ts, results) = match results {
            Ok(computed) => computed,
            Err(err) => return self.fail_internal(err),
        };
        if !required && self.state.transition_is_empty(&plan, &results) {
            // Woken by a change the client already has (e.g. the first result of a query
            // that the transition being computed already carried).
            return;
        }
        let committed = Ts::new(ts.as_u64())
            .and_then(|ts| plan.raise_ts(ts))
            .and_then(|()| self.state.commit_transition(plan, results));
        let mut transition = match committed {
            Ok(transition) => transition,
            Err(err) => return self.fail_internal(err),
        };
        transition.client_clock_skew = self.clock_skew;
        transition.server_ts = Ts::new(Timestamp::now().as_u64()).ok();
        Hub::bump(&self.sync.hub.transitions);
        self.transition_sent = true;
        self.push(ServerMessage::Transition(transition));
    }

    // ---------------------------------------------------------------------------------
    // Client messages
    // ---------------------------------------------------------------------------------

    fn on_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Closed => self.stop_quietly(),
            Inbound::TimedOut => {
                Hub::bump(&self.sync.hub.clients_timed_out);
                tracing::info!(
                    timeout_ms = self.sync.config.client_timeout.as_millis() as u64,
                    "dropping a sync client that sent nothing (not even a pong) for too long"
                );
                self.stop_quietly();
            }
            Inbound::Invalid(err) => self.fatal(err),
            Inbound::Message(message) => self.on_message(message),
        }
    }

    fn on_message(&mut self, message: ClientMessage) {
        if !self.connected && !matches!(message, ClientMessage::Connect(_)) {
            return self.fatal(Error::bad_request(format!(
                "the first message on a sync connection must be Connect, but {} came first",
                message.type_name()
            )));
        }
        match message {
            ClientMessage::Connect(connect) => {
                if self.connected {
                    return self.fatal(Error::bad_request(
                        "Connect was already received on this connection; a client sends it \
                         once, as its first message",
                    ));
                }
                self.connected = true;
                self.session = Some(connect.session_id);
                self.clock_skew = connect
                    .client_ts
                    .filter(|client_ms| *client_ms > 0)
                    .map(|client_ms| client_ms - now_ms());
                self.first_transition_hold = Some(Instant::now() + FIRST_TRANSITION_GRACE);
                tracing::debug!(
                    session = %connect.session_id,
                    connection_count = connect.connection_count,
                    last_close_reason = connect.last_close_reason.as_deref().unwrap_or("null"),
                    "sync client connected"
                );
            }
            ClientMessage::ModifyQuerySet(change) => {
                self.first_transition_hold = None;
                match self.state.modify_query_set(change) {
                    Ok(_) => self.reconcile_queries(),
                    Err(err) => self.fatal(err),
                }
            }
            ClientMessage::Mutation(request) => self.on_mutation(request),
            ClientMessage::Action(request) => self.on_action(request),
            ClientMessage::Authenticate(authenticate) => self.on_authenticate(authenticate),
            ClientMessage::Event(event) => {
                tracing::trace!(event_type = %event.event_type, "client event");
            }
        }
    }

    /// `Some(error)` when this request exceeds the socket's rate limit.
    fn over_rate_limit(&mut self) -> Option<Error> {
        let bucket = self.rate_limit.as_mut()?;
        if bucket.try_take(std::time::Instant::now()) {
            return None;
        }
        Hub::bump(&self.sync.hub.rate_limited);
        Some(Error::new(
            ErrorCode::RateLimited,
            format!(
                "Too many requests on this connection: more than {} mutations and actions per \
                 second (CONFLUX_SYNC_RATE_LIMIT_PER_SECOND, bursts of {}, \
                 CONFLUX_SYNC_RATE_LIMIT_BURST); this request did not run, send it again later",
                self.sync.config.rate_limit_per_second, self.sync.config.rate_limit_burst
            ),
        ))
    }

    fn on_mutation(&mut self, request: FunctionRequest) {
        Hub::bump(&self.sync.hub.mutations);
        if let Some(err) = self.over_rate_limit() {
            let failure = self.failure(&err);
            return self.push(ServerMessage::MutationResponse(MutationResponse {
                request_id: request.request_id,
                outcome: protocol::MutationOutcome::Failure(failure),
                log_lines: Vec::new(),
            }));
        }
        let key = self.session.map(|session| MutationKey {
            session_id: session.to_string(),
            request_id: request.request_id.0,
        });
        let job = MutationJob {
            request_id: request.request_id,
            udf_path: request.udf_path.as_str().to_string(),
            args: args_object(request.args),
            identity: self.state.identity().clone(),
            key,
        };
        let Some(mutations) = &self.mutations else {
            return;
        };
        match mutations.try_send(job) {
            Ok(()) => self.mutations_in_flight += 1,
            Err(mpsc::error::TrySendError::Full(job)) => {
                let err = Error::new(
                    ErrorCode::Overloaded,
                    format!(
                        "Too many mutations are waiting on this connection (the limit is {}, \
                         CONFLUX_SYNC_MAX_QUEUED_MUTATIONS_COUNT); wait for earlier mutations \
                         to finish before sending more",
                        self.sync.config.max_queued_mutations
                    ),
                );
                let failure = self.failure(&err);
                self.push(ServerMessage::MutationResponse(MutationResponse {
                    request_id: job.request_id,
                    outcome: protocol::MutationOutcome::Failure(failure),
                    log_lines: Vec::new(),
                }));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.fail_internal(Error::internal("the mutation queue of a socket stopped"));
            }
        }
    }

    fn on_action(&mut self, request: FunctionRequest) {
        Hub::bump(&self.sync.hub.actions);
        if let Some(err) = self.over_rate_limit() {
            let failure = self.failure(&err);
            return self.push(ServerMessage::ActionResponse(ActionResponse {
                request_id: request.request_id,
                outcome: Err(failure),
                log_lines: Vec::new(),
            }));
        }
        let permit = match self.action_slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let err = Error::new(
                    ErrorCode::Overloaded,
                    format!(
                        "Too many actions are running for this connection (the limit is {}, \
                         CONFLUX_SYNC_MAX_INFLIGHT_ACTIONS_COUNT); wait for earlier actions to \
                         finish before starting more",
                        self.sync.config.max_inflight_actions
                    ),
                );
                let failure = self.failure(&err);
                return self.push(ServerMessage::ActionResponse(ActionResponse {
                    request_id: request.request_id,
                    outcome: Err(failure),
                    log_lines: Vec::new(),
                }));
            }
        };
        let runner = self.sync.runner.clone();
        let identity = self.state.identity().clone();
        let request_id = request.request_id;
        let path = request.udf_path.as_str().to_string();
        let args = args_object(request.args);
        self.actions.spawn(async move {
            let _permit = permit;
            let outcome = match args {
                Ok(args) => {
                    runner
                        .run_action(&path, args, identity, Caller::Client)
                        .await
                }
                Err(err) => ActionOutcome {
                    result: Err(err),
                    log_lines: LogLines::default(),
                },
            };
            (request_id, outcome)
        });
    }

    fn on_mutation_done(&mut self, done: MutationDone) {
        self.mutations_in_flight = self.mutations_in_flight.saturating_sub(1);
        let log_lines = done.outcome.log_lines.into_vec();
        let outcome = match done.outcome.result {
            Ok(value) => {
                let ts = done
                    .outcome
                    .ts
                    .unwrap_or_else(|| self.sync.runner.database().latest_ts());
                let ts = match Ts::new(ts.as_u64()) {
                    Ok(ts) => ts,
                    Err(err) => return self.fail_internal(err),
                };
                self.state.record_mutation_ts(ts);
                // A Transition must follow the response even when one covering `ts` went
                // out before it: both clients resolve a mutation only on a Transition
                // received after its response.
                self.force_transition = true;
                protocol::MutationOutcome::Success {
                    value: value.to_convex_json(),
                    ts,
                }
            }
            Err(err) => {
                let failure = self.failure(&err);
                if failure.error_data.is_some() {
                    // The Rust client resolves a ConvexError failure on the next Transition.
                    self.force_transition = true;
                }
                protocol::MutationOutcome::Failure(failure)
            }
        };
        self.push(ServerMessage::MutationResponse(MutationResponse {
            request_id: done.request_id,
            outcome,
            log_lines,
        }));
    }

    fn on_action_done(
        &mut self,
        joined: Result<(RequestId, ActionOutcome), tokio::task::JoinError>,
    ) {
        let (request_id, outcome) = match joined {
            Ok(done) => done,
            Err(err) if err.is_cancelled() => return,
            Err(err) => {
                return self.fail_internal(Error::internal(format!("an action task failed: {err}")))
            }
        };
        let outcome_json = match outcome.result {
            Ok(value) => Ok(value.to_convex_json()),
            Err(err) => Err(self.failure(&err)),
        };
        self.push(ServerMessage::ActionResponse(ActionResponse {
            request_id,
            outcome: outcome_json,
            log_lines: outcome.log_lines.into_vec(),
        }));
    }

    fn failure(&self, err: &Error) -> FunctionFailure {
        let failure = self.sync.runner.failure(err);
        FunctionFailure {
            message: failure.message,
            error_data: failure.data,
        }
    }

    // ---------------------------------------------------------------------------------
    // Identity
    // ---------------------------------------------------------------------------------

    fn on_authenticate(&mut self, authenticate: Authenticate) {
        let base_version = authenticate.base_version;
        if let Err(err) = self.state.check_identity_base(base_version) {
            return self.fatal(err);
        }
        match authenticate.token {
            AuthToken::None => {
                if let Err(err) = self.state.set_identity(base_version, Identity::Anonymous) {
                    return self.fatal(err);
                }
                self.token = None;
                self.expiry = None;
                self.reconcile_queries();
            }
            AuthToken::User { value } => {
                let validator = self.sync.token_validator.clone();
                let delay = self.sync.auth_validation_delay;
                self.ended_during_auth.clear();
                self.pending_auth = Some(Box::pin(async move {
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
                    }
                    let result = validate(validator.as_deref(), &value).await;
                    AuthAttempt {
                        base_version,
                        token: value,
                        result,
                    }
                }));
            }
            AuthToken::Admin { .. } => {
                let err = Error::new(
                    ErrorCode::Unauthenticated,
                    "Admin keys are not accepted on the sync endpoint of this deployment; \
                     authenticate with a user token",
                );
                self.reject_token(base_version, err);
            }
        }
    }

    fn on_auth_attempt(&mut self, attempt: AuthAttempt) {
        let user = match attempt.result {
            Ok(user) => user,
            Err(err) => return self.reject_token(attempt.base_version, err),
        };
        if user.is_expired_at(now_secs()) {
            let err = Error::new(
                ErrorCode::TokenExpired,
                "Could not validate token: Token expired",
            );
            return self.reject_token(attempt.base_version, err);
        }
        if let Some(session) = &user.session_id {
            if self.ended_during_auth.contains(session) {
                let err = Error::new(
                    ErrorCode::SessionEnded,
                    "The sign-in session of this token has ended; sign in again",
                );
                return self.reject_token(attempt.base_version, err);
            }
        }
        self.ended_during_auth.clear();
        let refresh = self.state.identity().user().is_some_and(|current| {
            current.token_identifier == user.token_identifier
                && current.session_id == user.session_id
                && current.attributes == user.attributes
        });
        let expiry = user.expires_at_secs.map(instant_at_unix_secs);
        if let Err(err) = self
            .state
            .set_identity(attempt.base_version, Identity::User(Arc::new(user)))
        {
            return self.fatal(err);
        }
        if refresh {
            Hub::bump(&self.sync.hub.identity_refreshes);
        }
        self.token = Some(attempt.token);
        self.expiry = expiry;
        self.reconcile_queries();
    }

    fn reject_token(&mut self, base_version: IdentityVersion, err: Error) {
        Hub::bump(&self.sync.hub.auth_rejections);
        tracing::info!("refused the token of an Authenticate: {err}");
        self.push(ServerMessage::AuthError(AuthError {
            error: err.client_message(self.sync.dev_mode),
            base_version,
            auth_update_attempted: true,
        }));
        self.close_with(None);
    }

    /// Drop the identity in use and tell the client, which then refreshes its token (and
    /// ends up signed out if it has none). See the module docs for why it closes.
    fn lose_identity(&mut self, text: &str) {
        self.transition = None;
        self.mutations = None;
        self.mutation_results.close();
        self.actions.abort_all();
        self.expiry = None;
        self.push(ServerMessage::AuthError(AuthError {
            error: text.to_string(),
            base_version: self.state.received_identity_version(),
            auth_update_attempted: false,
        }));
        self.close_with(None);
    }

    fn identity_expired(&mut self) {
        Hub::bump(&self.sync.hub.identities_expired);
        tracing::info!("the token of a sync connection's identity expired");
        self.lose_identity(IDENTITY_EXPIRED);
    }

    fn current_session(&self) -> Option<&str> {
        self.state
            .identity()
            .user()
            .and_then(|user| user.session_id.as_deref())
    }

    fn on_session_event(&mut self, event: Result<SessionEnded, RecvError>) {
        match event {
            Ok(ended) => {
                if self.pending_auth.is_some()
                    && self.ended_during_auth.len() < ENDED_DURING_AUTH_MAX
                {
                    self.ended_during_auth.push(ended.session_id.clone());
                }
                if self.current_session() == Some(ended.session_id.as_str()) {
                    Hub::bump(&self.sync.hub.sessions_ended);
                    tracing::info!("the sign-in session of a sync connection ended");
                    self.lose_identity(SESSION_ENDED);
                }
            }
            Err(RecvError::Lagged(missed)) => {
                // Some ended sessions went by unseen: ask the validator about ours.
                tracing::warn!(
                    missed,
                    "missed ended-session events; checking this connection's token"
                );
                if self.current_session().is_some() {
                    if let (Some(validator), Some(token)) =
                        (self.sync.token_validator.clone(), self.token.clone())
                    {
                        self.revalidation =
                            Some(Box::pin(async move { validator.validate(&token).await }));
                    }
                }
            }
            Err(RecvError::Closed) => self.session_events = None,
        }
    }

    fn on_revalidated(&mut self, checked: conflux_common::Result<UserIdentity>) {
        if let Err(err) = checked {
            if err.code().is_auth() {
                Hub::bump(&self.sync.hub.sessions_ended);
                self.lose_identity(SESSION_ENDED);
            }
        }
    }
}

async fn validate(
    validator: Option<&dyn TokenValidator>,
    token: &str,
) -> conflux_common::Result<UserIdentity> {
    match validator {
        Some(validator) => validator.validate(token).await,
        None => Err(Error::new(
            ErrorCode::NoAuthProvider,
            "No auth provider found matching the given token (no providers configured). Turn on \
             the built-in sign-in with `App::auth`, or trust an issuer with \
             `App::token_providers`.",
        )),
    }
}

/// The arguments of a request as a value.
fn args_object(args: FunctionArgs) -> conflux_common::Result<Object> {
    match Value::from_convex_json(&Json::Object(args.into_object()))? {
        Value::Object(object) => Ok(object),
        other => Err(Error::bad_request(format!(
            "function arguments must be an object, got {}",
            other.type_name()
        ))),
    }
}

fn internal_close_frame(err: &Error) -> Option<CloseFrame> {
    let (code, reason) = match err.code() {
        ErrorCode::Overloaded
        | ErrorCode::RateLimited
        | ErrorCode::OccConflict
        | ErrorCode::StorageUnavailable
        | ErrorCode::FunctionTimeout
        | ErrorCode::RequestTimeout => (1013, err.code().as_str()),
        _ => (1011, "InternalServerError"),
    };
    Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    })
}

async fn poll_slot<T>(slot: &mut Option<BoxFuture<'static, T>>) -> T {
    match slot.as_mut() {
        Some(future) => {
            let output = future.await;
            *slot = None;
            output
        }
        None => std::future::pending().await,
    }
}

async fn recv_session(
    events: &mut Option<broadcast::Receiver<SessionEnded>>,
) -> Result<SessionEnded, RecvError> {
    match events.as_mut() {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The monotonic instant at which the wall clock reaches `secs` since the Unix epoch.
fn instant_at_unix_secs(secs: u64) -> Instant {
    let now = SystemTime::now();
    let at = UNIX_EPOCH + Duration::from_secs(secs);
    match at.duration_since(now) {
        Ok(left) => Instant::now() + left,
        Err(_) => Instant::now(),
    }
}

// -------------------------------------------------------------------------------------
// The mutation queue
// -------------------------------------------------------------------------------------

async fn mutation_loop(
    runner: FunctionRunner,
    mut jobs: mpsc::Receiver<MutationJob>,
    done: mpsc::Sender<MutationDone>,
) {
    while let Some(job) = jobs.recv().await {
        if done.is_closed() {
            break;
        }
        let outcome = match job.args {
            Ok(args) => {
                runner
                    .run_mutation(&job.udf_path, args, job.identity, Caller::Client, job.key)
                    .await
            }
            Err(err) => MutationOutcome {
                result: Err(err),
                ts: None,
                log_lines: LogLines::default(),
            },
        };
        let finished = MutationDone {
            request_id: job.request_id,
            outcome,
        };
        if done.send(finished).await.is_err() {
            break;
        }
    }
}

// -------------------------------------------------------------------------------------
// Reader and writer
// -------------------------------------------------------------------------------------

async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    inbox: mpsc::Sender<Inbound>,
    max_bytes: usize,
    client_timeout: Duration,
) {
    let mut delivering = true;
    loop {
        let next = match tokio::time::timeout(client_timeout, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                if delivering {
                    let _ = inbox.send(Inbound::TimedOut).await;
                }
                return;
            }
        };
        let (inbound, last) = match next {
            None | Some(Ok(Message::Close(_))) => (Inbound::Closed, true),
            Some(Err(err)) => (read_error(&err.to_string(), max_bytes), true),
            Some(Ok(Message::Text(text))) => (parse(text, max_bytes).await, false),
            Some(Ok(Message::Binary(_))) => (
                Inbound::Invalid(Error::bad_request(
                    "binary WebSocket frames are not part of the sync protocol; send each \
                     message as a JSON text frame",
                )),
                false,
            ),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
        };
        let invalid = matches!(inbound, Inbound::Invalid(_));
        if delivering && inbox.send(inbound).await.is_err() {
            delivering = false;
        }
        if last {
            return;
        }
        if invalid {
            // The socket closes after a protocol error; keep reading (and discarding) so
            // the client's answer to the close frame is seen.
            delivering = false;
        }
    }
}

fn read_error(text: &str, max_bytes: usize) -> Inbound {
    if text.contains("Space limit exceeded") {
        Inbound::Invalid(Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "the message is larger than the limit of {max_bytes} bytes \
                 (CONFLUX_SYNC_MAX_MESSAGE_BYTES); send smaller arguments ({text})"
            ),
        ))
    } else if text.contains("UTF-8") {
        Inbound::Invalid(Error::bad_request(format!(
            "a text frame is not valid UTF-8 ({text}); send each message as JSON text"
        )))
    } else {
        tracing::debug!("sync socket read failed: {text}");
        Inbound::Closed
    }
}

async fn parse(text: Utf8Bytes, max_bytes: usize) -> Inbound {
    let parsed = if text.len() <= PARSE_INLINE_MAX_BYTES {
        parse_client_message_with_limit(text.as_str(), max_bytes)
    } else {
        match tokio::task::spawn_blocking(move || {
            parse_client_message_with_limit(text.as_str(), max_bytes)
        })
        .await
        {
            Ok(parsed) => parsed,
            Err(err) => Err(Error::internal(format!("parsing a message failed: {err}"))),
        }
    };
    match parsed {
        Ok(message) => Inbound::Message(message),
        Err(err) => Inbound::Invalid(err),
    }
}

/// The text of an application-level ping.
const PING_TEXT: &str = r#"{"type":"Ping"}"#;

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbox: mpsc::Receiver<Outgoing>,
    config: SyncConfig,
    backlog: Arc<Backlog>,
    hub: Arc<Hub>,
) {
    let ws_ping_every = config.ws_ping_interval.max(Duration::from_millis(10));
    let mut ws_ping = tokio::time::interval_at(Instant::now() + ws_ping_every, ws_ping_every);
    ws_ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut app_ping_at = Instant::now() + config.ping_interval;
    loop {
        let (message, counted, application, last) = tokio::select! {
            outgoing = outbox.recv() => match outgoing {
                None => break,
                Some(Outgoing::Text(text)) => {
                    let bytes = text.len();
                    (Message::Text(text.into()), Some(bytes), true, false)
                }
                Some(Outgoing::Close(frame)) => (Message::Close(frame), Some(0), false, true),
            },
            _ = ws_ping.tick() => (Message::Ping(Default::default()), None, false, false),
            _ = tokio::time::sleep_until(app_ping_at) => {
                (Message::Text(Utf8Bytes::from_static(PING_TEXT)), None, true, false)
            }
        };
        let sent = tokio::time::timeout(config.slow_client_timeout, sink.send(message)).await;
        if let Some(bytes) = counted {
            backlog.written(bytes);
        }
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::debug!("sync socket write failed: {err}");
                break;
            }
            Err(_) => {
                Hub::bump(&hub.slow_clients_disconnected);
                tracing::warn!(
                    timeout_ms = config.slow_client_timeout.as_millis() as u64,
                    "disconnecting a sync client that stopped reading"
                );
                break;
            }
        }
        if application {
            app_ping_at = Instant::now() + config.ping_interval;
        }
        if last {
            break;
        }
    }
}
