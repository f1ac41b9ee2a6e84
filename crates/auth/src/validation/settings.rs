//! The tunables of token validation, with defaults from the knobs.
//!
//! Why a struct and not just the knobs: the knobs are process-wide (read once from the
//! environment), but tests and embedders need validators with different cooldowns, cache
//! sizes or clocks side by side. [`ValidatorSettings::default`] reads the knobs; everything
//! can be overridden per validator.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conflux_common::knobs;

/// The current time in seconds since the Unix epoch. Replaceable so tests can pin time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or_default()
    })
}

/// Limits, timeouts and cache sizes of a validator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSettings {
    /// Leeway on `exp`, `nbf` and `iat` (`AUTH_CLOCK_LEEWAY_SECS`).
    pub clock_leeway: Duration,
    /// Shortest time a discovery document or JWKS is cached (`JWKS_MIN_CACHE_SECS`).
    pub jwks_min_cache: Duration,
    /// Longest time a discovery document or JWKS is cached (`JWKS_MAX_CACHE_SECS`).
    pub jwks_max_cache: Duration,
    /// Least time between two JWKS refetches caused by an unknown `kid`
    /// (`JWKS_REFETCH_COOLDOWN_SECS`).
    pub jwks_refetch_cooldown: Duration,
    /// Time limit of one discovery or JWKS fetch (`JWKS_FETCH_TIMEOUT_MS`).
    pub jwks_fetch_timeout: Duration,
    /// Wait after a failed fetch before the next attempt (`JWKS_FETCH_RETRY_MS`).
    pub jwks_fetch_retry: Duration,
    /// Largest discovery document or JWKS accepted (`JWKS_MAX_BYTES`).
    pub jwks_max_bytes: usize,
    /// Most validated tokens cached; 0 disables the cache (`TOKEN_CACHE_ENTRIES_COUNT`).
    pub token_cache_entries: usize,
    /// Longest token accepted (`AUTH_TOKEN_MAX_BYTES`).
    pub token_max_bytes: usize,
}

impl Default for ValidatorSettings {
    fn default() -> Self {
        ValidatorSettings {
            clock_leeway: Duration::from_secs(*knobs::AUTH_CLOCK_LEEWAY_SECS),
            jwks_min_cache: Duration::from_secs(*knobs::JWKS_MIN_CACHE_SECS),
            jwks_max_cache: Duration::from_secs(*knobs::JWKS_MAX_CACHE_SECS),
            jwks_refetch_cooldown: Duration::from_secs(*knobs::JWKS_REFETCH_COOLDOWN_SECS),
            jwks_fetch_timeout: Duration::from_millis(*knobs::JWKS_FETCH_TIMEOUT_MS),
            jwks_fetch_retry: Duration::from_millis(*knobs::JWKS_FETCH_RETRY_MS),
            jwks_max_bytes: *knobs::JWKS_MAX_BYTES,
            token_cache_entries: *knobs::TOKEN_CACHE_ENTRIES_COUNT,
            token_max_bytes: *knobs::AUTH_TOKEN_MAX_BYTES,
        }
    }
}
