//! The sync endpoint: the routes that upgrade to the WebSocket, the state they share, and
//! the counters an operator (or a test) reads.
//!
//! Why a module of its own: the HTTP server (`conflux-http`) knows nothing about the sync
//! protocol; the facade merges [`sync_routes`] into the client API router it hands to
//! `conflux_http::bind(..).serve(client_api_routes, site)`. Everything a socket needs
//! (the function runner, the token validator, the shared [`SubscriptionManager`], the
//! limits) travels in [`SyncState`].
//!
//! Endpoints, as the official clients use them:
//!
//! - `GET /api/sync`: the Rust client (`Convex-Client: rust-0.10.4`);
//! - `GET /api/<semver>/sync`: npm puts its version in the path (`/api/1.48.0/sync`); a
//!   segment that is not a semantic version is answered `400 InvalidVersion`.
//!
//! Text frames only, no subprotocol. A request to either path without a WebSocket upgrade
//! gets a `400` that says so.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use conflux_common::{knobs, Error, ErrorCode, TokenValidator};
use conflux_functions::FunctionRunner;
use tokio::sync::watch;

use crate::subscriptions::{SubscriptionManager, SubscriptionMetrics};
use crate::worker;

/// The header the Rust client (and the reference's other clients) name themselves in.
const CLIENT_HEADER: &str = "convex-client";

/// The limits and timers of sync sockets. [`Default`] reads the knobs (and so the
/// `CONFLUX_SYNC_*` environment variables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// Largest message accepted from a client (`SYNC_MAX_MESSAGE_BYTES`).
    pub max_message_bytes: usize,
    /// Most queries one socket may subscribe to (`SYNC_MAX_QUERIES_COUNT`).
    pub max_queries: usize,
    /// Most mutations waiting on one socket (`SYNC_MAX_QUEUED_MUTATIONS_COUNT`).
    pub max_queued_mutations: usize,
    /// Most actions running at once for one socket (`SYNC_MAX_INFLIGHT_ACTIONS_COUNT`).
    pub max_inflight_actions: usize,
    /// An application `Ping` goes out after this much silence (`SYNC_PING_INTERVAL_MS`).
    pub ping_interval: Duration,
    /// WebSocket ping frames go out this often (`SYNC_WS_PING_INTERVAL_MS`).
    pub ws_ping_interval: Duration,
    /// A client that sent nothing, not even a pong, for this long is dropped
    /// (`SYNC_CLIENT_TIMEOUT_MS`).
    pub client_timeout: Duration,
    /// Messages buffered per socket before updates are coalesced
    /// (`SYNC_OUTBOX_MESSAGES_COUNT`).
    pub outbox_messages: usize,
    /// A client that has not taken a message for this long while one waits is
    /// disconnected (`SYNC_SLOW_CLIENT_TIMEOUT_MS`).
    pub slow_client_timeout: Duration,
    /// Requests (mutations and actions) per second one socket may send on average; 0
    /// for no limit (`SYNC_RATE_LIMIT_PER_SECOND`).
    pub rate_limit_per_second: u64,
    /// Requests one socket may send at once above that rate (`SYNC_RATE_LIMIT_BURST`).
    pub rate_limit_burst: u64,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            max_message_bytes: *knobs::SYNC_MAX_MESSAGE_BYTES,
            max_queries: *knobs::SYNC_MAX_QUERIES_COUNT,
            max_queued_mutations: *knobs::SYNC_MAX_QUEUED_MUTATIONS_COUNT,
            max_inflight_actions: *knobs::SYNC_MAX_INFLIGHT_ACTIONS_COUNT,
            ping_interval: Duration::from_millis(*knobs::SYNC_PING_INTERVAL_MS),
            ws_ping_interval: Duration::from_millis(*knobs::SYNC_WS_PING_INTERVAL_MS),
            client_timeout: Duration::from_millis(*knobs::SYNC_CLIENT_TIMEOUT_MS),
            outbox_messages: *knobs::SYNC_OUTBOX_MESSAGES_COUNT,
            slow_client_timeout: Duration::from_millis(*knobs::SYNC_SLOW_CLIENT_TIMEOUT_MS),
            rate_limit_per_second: *knobs::SYNC_RATE_LIMIT_PER_SECOND,
            rate_limit_burst: *knobs::SYNC_RATE_LIMIT_BURST,
        }
    }
}

/// Counters of the sync endpoint since it started, for operators, tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncMetrics {
    /// Sockets open right now.
    pub open_sockets: usize,
    /// Sockets accepted so far.
    pub sockets_accepted: u64,
    /// `Transition`s sent.
    pub transitions: u64,
    /// Result changes that reached a client folded into a later `Transition` together
    /// with others, instead of one `Transition` each (a slow reader gets only the latest
    /// result of each query).
    pub coalesced_updates: u64,
    /// The most messages ever waiting for one socket at once (queued, and the one being
    /// written): the outbox bound plus at most one coalesced `Transition` and the
    /// responses of its own requests.
    pub backlog_high_water_messages: usize,
    /// The most bytes ever waiting for one socket at once (same scope as
    /// `backlog_high_water_messages`).
    pub backlog_high_water_bytes: usize,
    /// Sockets disconnected because their client did not take messages for
    /// [`SyncConfig::slow_client_timeout`].
    pub slow_clients_disconnected: u64,
    /// Sockets dropped because their client was silent for [`SyncConfig::client_timeout`].
    pub clients_timed_out: u64,
    /// `FatalError`s sent (malformed or out-of-protocol messages).
    pub fatal_errors: u64,
    /// `Authenticate` messages whose token was refused.
    pub auth_rejections: u64,
    /// Accepted tokens for the identity already in place (same user and session): the
    /// identity version moved, no query ran again.
    pub identity_refreshes: u64,
    /// Sockets that lost their identity because its sign-in session ended.
    pub sessions_ended: u64,
    /// Sockets that lost their identity because its token expired.
    pub identities_expired: u64,
    /// Mutations received.
    pub mutations: u64,
    /// Actions received.
    pub actions: u64,
    /// Mutations and actions refused because their socket exceeded the request rate
    /// limit ([`SyncConfig::rate_limit_per_second`]).
    pub rate_limited: u64,
    /// The shared live queries.
    pub subscriptions: SubscriptionMetrics,
}

/// Shared by every socket of one endpoint: the counters and the "disconnect everyone"
/// signal.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) open_sockets: AtomicUsize,
    pub(crate) sockets_accepted: AtomicU64,
    pub(crate) transitions: AtomicU64,
    pub(crate) coalesced_updates: AtomicU64,
    pub(crate) backlog_high_water_messages: AtomicUsize,
    pub(crate) backlog_high_water_bytes: AtomicUsize,
    pub(crate) slow_clients_disconnected: AtomicU64,
    pub(crate) clients_timed_out: AtomicU64,
    pub(crate) fatal_errors: AtomicU64,
    pub(crate) auth_rejections: AtomicU64,
    pub(crate) identity_refreshes: AtomicU64,
    pub(crate) sessions_ended: AtomicU64,
    pub(crate) identities_expired: AtomicU64,
    pub(crate) mutations: AtomicU64,
    pub(crate) actions: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) disconnect: watch::Sender<u64>,
}

impl Hub {
    fn new() -> Hub {
        Hub {
            open_sockets: AtomicUsize::new(0),
            sockets_accepted: AtomicU64::new(0),
            transitions: AtomicU64::new(0),
            coalesced_updates: AtomicU64::new(0),
            backlog_high_water_messages: AtomicUsize::new(0),
            backlog_high_water_bytes: AtomicUsize::new(0),
            slow_clients_disconnected: AtomicU64::new(0),
            clients_timed_out: AtomicU64::new(0),
            fatal_errors: AtomicU64::new(0),
            auth_rejections: AtomicU64::new(0),
            identity_refreshes: AtomicU64::new(0),
            sessions_ended: AtomicU64::new(0),
            identities_expired: AtomicU64::new(0),
            mutations: AtomicU64::new(0),
            actions: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            disconnect: watch::channel(0).0,
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything a sync socket needs. Clone it freely (the parts are shared).
///
/// ```no_run
/// # fn story(runner: conflux_functions::FunctionRunner) {
/// use conflux_sync::{sync_routes, SyncState};
///
/// let sync = SyncState::new(runner, None, false);
/// let client_api: axum::Router = sync_routes(sync.clone());
/// // conflux_http::bind(config).await?.serve(client_api.merge(other_routes), site)
/// # let _ = client_api; }
/// ```
#[derive(Clone)]
pub struct SyncState {
    /// Runs queries, mutations and actions.
    pub runner: FunctionRunner,
    /// Turns `Authenticate` tokens into identities; `None` refuses every token.
    pub token_validator: Option<Arc<dyn TokenValidator>>,
    /// Error details go to clients (development).
    pub dev_mode: bool,
    /// The live queries, shared by every socket (and by in-process subscribers).
    pub subscriptions: Arc<SubscriptionManager>,
    /// Limits and timers.
    pub config: SyncConfig,
    /// Test knob: wait this long before validating each `Authenticate` token, to widen
    /// the window of the sign-in race so that tests reproduce it deterministically. Keep
    /// `None` in production.
    pub auth_validation_delay: Option<Duration>,
    pub(crate) hub: Arc<Hub>,
}

impl std::fmt::Debug for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncState")
            .field("dev_mode", &self.dev_mode)
            .field("has_token_validator", &self.token_validator.is_some())
            .field("config", &self.config)
            .field("auth_validation_delay", &self.auth_validation_delay)
            .finish()
    }
}

impl SyncState {
    /// The state of a sync endpoint over `runner`, with a fresh [`SubscriptionManager`]
    /// and the limits of the knobs.
    pub fn new(
        runner: FunctionRunner,
        token_validator: Option<Arc<dyn TokenValidator>>,
        dev_mode: bool,
    ) -> SyncState {
        SyncState {
            subscriptions: Arc::new(SubscriptionManager::new(runner.clone())),
            runner,
            token_validator,
            dev_mode,
            config: SyncConfig::default(),
            auth_validation_delay: None,
            hub: Arc::new(Hub::new()),
        }
    }

    /// The counters so far.
    pub fn metrics(&self) -> SyncMetrics {
        let hub = &self.hub;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SyncMetrics {
            open_sockets: hub.open_sockets.load(Ordering::Relaxed),
            sockets_accepted: load(&hub.sockets_accepted),
            transitions: load(&hub.transitions),
            coalesced_updates: load(&hub.coalesced_updates),
            backlog_high_water_messages: hub.backlog_high_water_messages.load(Ordering::Relaxed),
            backlog_high_water_bytes: hub.backlog_high_water_bytes.load(Ordering::Relaxed),
            slow_clients_disconnected: load(&hub.slow_clients_disconnected),
            clients_timed_out: load(&hub.clients_timed_out),
            fatal_errors: load(&hub.fatal_errors),
            auth_rejections: load(&hub.auth_rejections),
            identity_refreshes: load(&hub.identity_refreshes),
            sessions_ended: load(&hub.sessions_ended),
            identities_expired: load(&hub.identities_expired),
            mutations: load(&hub.mutations),
            actions: load(&hub.actions),
            rate_limited: load(&hub.rate_limited),
            subscriptions: self.subscriptions.metrics(),
        }
    }

    /// Close every open socket with code 1001 (going away), as a restart would; clients
    /// reconnect and resend what is unanswered. Used at shutdown, and by tests of
    /// reconnects.
    pub fn disconnect_all(&self) {
        self.hub
            .disconnect
            .send_modify(|generation| *generation += 1);
    }
}

/// The sync routes: `GET /api/sync` and `GET /api/<semver>/sync`. Merge them into the
/// client API router.
pub fn sync_routes(state: SyncState) -> Router {
    Router::new()
        .route("/api/sync", get(unversioned))
        .route("/api/{version}/sync", get(versioned))
        .with_state(state)
}

async fn unversioned(
    State(state): State<SyncState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    accept(state, None, &headers, upgrade)
}

async fn versioned(
    State(state): State<SyncState>,
    Path(version): Path<String>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if !is_semver(&version) {
        let shown: String = version.chars().take(64).collect();
        let err = Error::new(
            ErrorCode::InvalidVersion,
            format!(
                "`{shown}` in /api/{shown}/sync is not a client version: expected a semantic \
                 version such as 1.48.0 (/api/1.48.0/sync), or use /api/sync"
            ),
        );
        return error_response(&err, state.dev_mode);
    }
    accept(state, Some(version), &headers, upgrade)
}

fn accept(
    state: SyncState,
    path_version: Option<String>,
    headers: &HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let err = Error::bad_request(format!(
                "the sync endpoint only accepts WebSocket upgrades (GET with `Upgrade: \
                 websocket`): {rejection}"
            ));
            return error_response(&err, state.dev_mode);
        }
    };
    let client = headers
        .get(CLIENT_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.chars().take(64).collect::<String>())
        .or_else(|| path_version.map(|version| format!("npm-{version}")))
        .unwrap_or_else(|| "unknown".to_string());
    // The transport accepts somewhat more than the protocol limit so that a frame just
    // over the limit is read whole and answered with a clear `FatalError`; only frames
    // far beyond it are cut off by the WebSocket layer itself.
    let limit = state.config.max_message_bytes;
    let transport_limit = limit.saturating_mul(2).max(limit.saturating_add(1 << 16));
    upgrade
        .read_buffer_size(*knobs::SYNC_READ_BUFFER_BYTES)
        .max_message_size(transport_limit)
        .max_frame_size(transport_limit)
        .on_failed_upgrade(|err| tracing::debug!("sync upgrade failed: {err}"))
        .on_upgrade(move |socket| worker::run_socket(socket, state, client))
}

/// The JSON error body of the client API: `{"code": "...", "message": "..."}`.
fn error_response(err: &Error, dev_mode: bool) -> Response {
    let status =
        StatusCode::from_u16(err.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({
        "code": err.code().as_str(),
        "message": err.client_message(dev_mode),
    });
    (status, axum::Json(body)).into_response()
}

/// `MAJOR.MINOR.PATCH` with optional `-prerelease` and `+build`, as semver.org defines
/// the identifiers (no leading zeros in numbers).
fn is_semver(text: &str) -> bool {
    let (rest, build) = match text.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (text, None),
    };
    let (core, prerelease) = match rest.split_once('-') {
        Some((core, prerelease)) => (core, Some(prerelease)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let number_ok = |part: &&str| {
        !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part.len() == 1 || !part.starts_with('0'))
    };
    let identifiers_ok = |text: &str| {
        text.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    };
    numbers.len() == 3
        && numbers.iter().all(number_ok)
        && prerelease.is_none_or(identifiers_ok)
        && build.is_none_or(identifiers_ok)
}

#[cfg(test)]
mod tests {
    use super::is_semver;

    #[test]
    fn client_versions_in_the_path_must_be_semver() {
        for ok in [
            "1.48.0",
            "0.0.1",
            "10.20.30",
            "1.0.0-alpha.1",
            "1.0.0+build.5",
            "1.0.0-rc-1+x",
        ] {
            assert!(is_semver(ok), "{ok} is a version");
        }
        for bad in [
            "", "1.48", "1.48.0.1", "01.2.3", "v1.2.3", "1.2.x", "1.2.3-", "1.2.3+", "latest",
            "1..3",
        ] {
            assert!(!is_semver(bad), "{bad} is not a version");
        }
    }
}
