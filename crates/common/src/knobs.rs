//! Every tunable of Conflux in one place.
//!
//! Each knob is named with its unit (`_BYTES`, `_MS`, `_COUNT`), documented, and can be
//! overridden by an environment variable of the same name prefixed with `CONFLUX_` (for
//! example `CONFLUX_DOCUMENT_MAX_BYTES=2097152`). A value that does not parse is ignored
//! with a warning in the log, so a typo never takes the server down; `docs/operations.md`
//! lists them all.

use std::str::FromStr;
use std::sync::LazyLock;

/// Read `CONFLUX_<name>` from the environment, falling back to `default`.
pub fn env_knob<T: FromStr + Copy>(name: &str, default: T) -> T {
    let var = format!("CONFLUX_{name}");
    match std::env::var(&var) {
        Ok(text) => match text.trim().parse::<T>() {
            Ok(value) => value,
            Err(_) => {
                tracing::warn!("ignoring {var}={text:?}: not a valid value; using the default");
                default
            }
        },
        Err(_) => default,
    }
}

macro_rules! knob {
    ($(#[$doc:meta])* $name:ident : $ty:ty = $default:expr) => {
        $(#[$doc])*
        pub static $name: LazyLock<$ty> = LazyLock::new(|| env_knob(stringify!($name), $default));
    };
}

// ---- values ----
knob!(
    /// Largest document, measured as the size of its Convex JSON encoding.
    DOCUMENT_MAX_BYTES: usize = 1 << 20
);
knob!(
    /// Deepest nesting of arrays and objects inside a stored document.
    DOCUMENT_MAX_NESTING: usize = 16
);
knob!(
    /// Deepest nesting of any value handled internally (arguments, results).
    VALUE_MAX_NESTING: usize = 64
);
knob!(
    /// Most fields in one object.
    OBJECT_MAX_FIELDS_COUNT: usize = 1024
);
knob!(
    /// Most elements in one array.
    ARRAY_MAX_ELEMENTS_COUNT: usize = 8192
);

// ---- database ----
knob!(
    /// Size of sled's page cache, counted as sled counts it: in stored bytes. Its real
    /// memory use is several times this (about 100 MiB at the default once the data
    /// outgrows the cache; sled's own default of 1 GiB would let a server grow to
    /// gigabytes); the operating system caches the file as well.
    SLED_CACHE_BYTES: u64 = 8 * 1024 * 1024
);
knob!(
    /// Commits waiting for the committer; a full queue makes `commit` wait (back-pressure).
    COMMIT_QUEUE_COUNT: usize = 1024
);
knob!(
    /// Most commits validated together and made durable by one flush (group commit).
    COMMIT_MAX_BATCH_COUNT: usize = 256
);
knob!(
    /// Most recent commits kept in the in-memory write log used for conflict checks and
    /// subscriptions; older snapshots conflict (and subscriptions fire) conservatively.
    WRITE_LOG_MAX_ENTRIES_COUNT: usize = 20_000
);
knob!(
    /// How long a commit stays in the in-memory write log (measured in commit timestamps).
    /// It must cover the longest transaction (see `FUNCTION_TIME_LIMIT_MS`); its memory
    /// grows with the commit rate times this.
    WRITE_LOG_RETENTION_MS: u64 = 30_000
);
knob!(
    /// How far back `begin_at` may read (time travel, `consistentQuery`). Versions only
    /// older snapshots could see are deleted by the version collector.
    SNAPSHOT_RETENTION_MS: u64 = 300_000
);
knob!(
    /// How often the version collector deletes versions older than the snapshot retention;
    /// `0` turns it off (the database then keeps every version forever).
    VERSION_GC_INTERVAL_MS: u64 = 60_000
);
knob!(
    /// Stored records the version collector looks at per step (one store write each).
    VERSION_GC_BATCH_COUNT: usize = 1_000
);
knob!(
    /// Most index entries one transaction may scan (filtered-out documents count).
    TRANSACTION_MAX_SCANNED_DOCUMENTS_COUNT: usize = 16_384
);
knob!(
    /// Most documents one transaction may insert, patch, replace or delete.
    TRANSACTION_MAX_WRITTEN_DOCUMENTS_COUNT: usize = 8_192
);

// ---- functions ----
knob!(
    /// Function-time limit of a query or mutation, checked at every database call.
    FUNCTION_TIME_LIMIT_MS: u64 = 1000
);
knob!(
    /// How many times a mutation that lost an optimistic-concurrency conflict is re-run.
    MUTATION_MAX_RETRIES_COUNT: u32 = 16
);
knob!(
    /// First back-off between re-runs of a conflicting mutation; doubles each time.
    MUTATION_RETRY_BASE_MS: u64 = 2
);
knob!(
    /// How long the record of a mutation sent over a WebSocket is kept, so that a client
    /// resending it after a reconnect gets its first result instead of a second run. A
    /// resend arriving later runs the mutation again.
    SESSION_REQUEST_RETENTION_MS: u64 = 86_400_000
);
knob!(
    /// How often expired mutation records are deleted; `0` keeps them forever.
    SESSION_REQUEST_CLEANUP_INTERVAL_MS: u64 = 60_000
);
knob!(
    /// Most expired mutation records deleted per transaction by the cleanup.
    SESSION_REQUEST_CLEANUP_BATCH_COUNT: usize = 500
);

knob!(
    /// Most queries and mutations executing at once on the blocking thread pool; further
    /// runs wait for a slot.
    FUNCTION_MAX_CONCURRENT_COUNT: usize = 64
);

// ---- HTTP ----
knob!(
    /// Largest request body accepted by the client HTTP API and HTTP actions.
    HTTP_MAX_BODY_BYTES: usize = 16 * 1024 * 1024 + 2000
);
knob!(
    /// Time a client has to send the request headers.
    HTTP_HEADER_READ_TIMEOUT_MS: u64 = 10_000
);
knob!(
    /// Total time a request may take before it is answered with 503.
    HTTP_REQUEST_TIMEOUT_MS: u64 = 60_000
);
knob!(
    /// On shutdown, how long in-flight HTTP requests may take to finish before their
    /// connections are closed.
    HTTP_SHUTDOWN_TIMEOUT_MS: u64 = 10_000
);

// ---- sync ----
knob!(
    /// Largest WebSocket message accepted from a client.
    SYNC_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024
);
knob!(
    /// Initial read buffer of one WebSocket; larger frames grow it as needed. Every open
    /// connection holds one, so it sets most of an idle connection's memory.
    SYNC_READ_BUFFER_BYTES: usize = 8 * 1024
);
knob!(
    /// Most queries one WebSocket may subscribe to.
    SYNC_MAX_QUERIES_COUNT: usize = 1024
);
knob!(
    /// Most mutations queued on one WebSocket.
    SYNC_MAX_QUEUED_MUTATIONS_COUNT: usize = 1000
);
knob!(
    /// Most actions running at once for one WebSocket.
    SYNC_MAX_INFLIGHT_ACTIONS_COUNT: usize = 1000
);
knob!(
    /// Application-level `Ping` after this much silence (clients give up after 60 s).
    SYNC_PING_INTERVAL_MS: u64 = 15_000
);
knob!(
    /// WebSocket-level ping frames are sent this often.
    SYNC_WS_PING_INTERVAL_MS: u64 = 5_000
);
knob!(
    /// A client that sent nothing (not even a pong) for this long is dropped.
    SYNC_CLIENT_TIMEOUT_MS: u64 = 120_000
);
knob!(
    /// Outgoing messages buffered per socket before updates are coalesced.
    SYNC_OUTBOX_MESSAGES_COUNT: usize = 2
);
knob!(
    /// A client that has not read anything for this long while updates wait is disconnected.
    SYNC_SLOW_CLIENT_TIMEOUT_MS: u64 = 30_000
);
knob!(
    /// Requests (mutations and actions) one WebSocket may send per second, on average;
    /// requests beyond it are answered with a `RateLimited` failure. 0 turns the limit off.
    SYNC_RATE_LIMIT_PER_SECOND: u64 = 500
);
knob!(
    /// Requests one WebSocket may send at once above the average rate (the official
    /// clients resend every unanswered mutation after a reconnect).
    SYNC_RATE_LIMIT_BURST: u64 = 1000
);

// ---- auth ----
knob!(
    /// Leeway applied to `exp`, `nbf` and `iat` checks.
    AUTH_CLOCK_LEEWAY_SECS: u64 = 5
);
knob!(
    /// Shortest time a fetched JWKS is cached, whatever `Cache-Control` says.
    JWKS_MIN_CACHE_SECS: u64 = 60
);
knob!(
    /// Longest time a fetched JWKS is cached, whatever `Cache-Control` says.
    JWKS_MAX_CACHE_SECS: u64 = 24 * 3600
);
knob!(
    /// Least time between two refetches of a JWKS caused by an unknown `kid`.
    JWKS_REFETCH_COOLDOWN_SECS: u64 = 300
);
knob!(
    /// Time limit of one discovery or JWKS fetch.
    JWKS_FETCH_TIMEOUT_MS: u64 = 5_000
);
knob!(
    /// Largest discovery document or JWKS accepted.
    JWKS_MAX_BYTES: usize = 256 * 1024
);
knob!(
    /// Most validated tokens kept in the validation cache.
    TOKEN_CACHE_ENTRIES_COUNT: usize = 100_000
);
knob!(
    /// Longest bearer token accepted; longer ones are rejected before any decoding.
    AUTH_TOKEN_MAX_BYTES: usize = 16 * 1024
);
knob!(
    /// After a failed discovery or JWKS fetch, the next attempt for the same URL waits this
    /// long (requests in between get the same error), so a down provider is not hammered.
    JWKS_FETCH_RETRY_MS: u64 = 1_000
);

// ---- built-in sign-in ----
knob!(
    /// Most session states (active or ended) kept in the cache in front of the sessions
    /// table; the check of our own tokens costs a table read only on a miss.
    AUTH_SESSION_CACHE_ENTRIES_COUNT: usize = 100_000
);
knob!(
    /// How long an "active" answer of the session cache is trusted before the sessions
    /// table is read again (ending a session through the sign-in clears it at once; this
    /// bounds how late a session that merely expired is noticed).
    AUTH_SESSION_CACHE_TTL_MS: u64 = 60_000
);
knob!(
    /// Time between two runs of the background cleanup of expired sessions, refresh
    /// tokens, verifiers and codes.
    AUTH_CLEANUP_INTERVAL_MS: u64 = 60_000
);
knob!(
    /// Most documents of one sign-in table the background cleanup looks at per run.
    AUTH_CLEANUP_BATCH_COUNT: usize = 256
);
knob!(
    /// Time limit of one request of the sign-in to an OAuth provider (discovery, JWKS,
    /// token exchange).
    AUTH_OAUTH_REQUEST_TIMEOUT_MS: u64 = 10_000
);
knob!(
    /// How long a provider's discovery document and keys are reused before they are
    /// fetched again (an unknown signing key triggers an earlier refetch).
    AUTH_OAUTH_METADATA_CACHE_MS: u64 = 3_600_000
);
