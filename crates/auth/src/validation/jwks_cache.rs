//! The cache of remote key sets: discovery, JWKS, refresh and refetch rules.
//!
//! Why it matters: without a cache every token costs two HTTP round trips; with a naive one,
//! a key rotation locks users out until the cache expires, and an attacker sending tokens
//! with random `kid`s turns the server into a JWKS-fetching machine aimed at the provider.
//! The rules here:
//!
//! - Discovery documents and key sets are kept as long as `Cache-Control: max-age` says,
//!   bounded by `JWKS_MIN_CACHE_SECS` and `JWKS_MAX_CACHE_SECS`.
//! - One fetch in flight per source: concurrent callers wait for it and share its result
//!   (success or failure).
//! - A token whose `kid` is unknown may cause one refetch of the JWKS, at most once per
//!   `JWKS_REFETCH_COOLDOWN_SECS`; that is how a rotation is picked up at once.
//! - A failed fetch is not retried for `JWKS_FETCH_RETRY_MS`; meanwhile the previous keys,
//!   if any, keep being used (a provider outage does not sign everybody out).
//! - Keys are only fetched from the configured JWKS URL or the `jwks_uri` of a discovery
//!   document whose `issuer` equals the configured one.
//!
//! ```text
//!   keys() ──fresh?──▶ cached KeySet
//!      │ no
//!      ▼
//!   fetch_lock (single flight) ──someone else refreshed?──▶ their result
//!      │ no
//!      ▼
//!   discovery (if expired) ─▶ jwks_uri ─▶ JWKS ─▶ KeySet (+ lifetime)
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use conflux_common::{Error, Result};
use parking_lot::Mutex;
use serde_json::Value as Json;
use url::Url;

use crate::config::check_key_url;
use crate::validation::errors;
use crate::validation::fetch::{Document, FetchFailure, Fetcher};
use crate::validation::keys::KeySet;
use crate::validation::settings::ValidatorSettings;
use crate::validation::token::untrusted;

/// Where a remote key set is found.
#[derive(Clone, Debug)]
pub(crate) enum RemoteSource {
    /// An OpenID Connect issuer: discovery first, then its `jwks_uri`.
    Discovery { issuer: String, discovery_url: Url },
    /// A configured JWKS URL (custom JWT providers).
    Jwks { url: Url },
}

/// What an unknown-`kid` refetch did.
#[derive(Debug)]
pub(crate) enum Refetch {
    /// Fresh keys (fetched now, or by a concurrent caller since the keys were looked at).
    Refreshed(Arc<KeySet>),
    /// Nothing fetched: the previous unknown-`kid` refetch was `since` ago.
    CoolingDown { since: Duration },
}

#[derive(Default)]
struct RemoteState {
    jwks_url: Option<Url>,
    discovery_expires: Option<Instant>,
    keys: Option<Arc<KeySet>>,
    keys_expire: Option<Instant>,
    /// Bumped by every completed fetch attempt, so waiters know someone else fetched.
    generation: u64,
    failure: Option<(Instant, Error)>,
    last_kid_refetch: Option<Instant>,
}

impl RemoteState {
    /// The outcome of the last fetch attempt: the keys (possibly stale) or its error.
    fn answer(&self) -> Result<Arc<KeySet>> {
        match (&self.keys, &self.failure) {
            (Some(keys), _) => Ok(keys.clone()),
            (None, Some((_, err))) => Err(err.clone()),
            (None, None) => Err(Error::internal(
                "a JWKS fetch ended without keys or an error",
            )),
        }
    }
}

/// One remote key source with its cached discovery document and key set.
pub(crate) struct RemoteKeys {
    source: RemoteSource,
    state: Mutex<RemoteState>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn lifetime(max_age: Option<Duration>, settings: &ValidatorSettings) -> Duration {
    let min = settings.jwks_min_cache;
    max_age.unwrap_or(min).max(min).min(settings.jwks_max_cache)
}

impl RemoteKeys {
    pub(crate) fn new(source: RemoteSource) -> RemoteKeys {
        RemoteKeys {
            source,
            state: Mutex::new(RemoteState::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Identifies the source: providers with equal ids share one cache.
    pub(crate) fn source_id(source: &RemoteSource) -> String {
        match source {
            RemoteSource::Discovery { discovery_url, .. } => discovery_url.to_string(),
            RemoteSource::Jwks { url } => url.to_string(),
        }
    }

    /// The provider as named in messages: its issuer, or its JWKS URL.
    pub(crate) fn provider_name(&self) -> String {
        match &self.source {
            RemoteSource::Discovery { issuer, .. } => issuer.clone(),
            RemoteSource::Jwks { url } => url.to_string(),
        }
    }

    /// The current key set, fetching it if it is missing or expired.
    pub(crate) async fn keys(
        &self,
        fetcher: &Fetcher,
        settings: &ValidatorSettings,
    ) -> Result<Arc<KeySet>> {
        let observed = {
            let state = self.state.lock();
            let now = Instant::now();
            if let (Some(keys), Some(expires)) = (&state.keys, state.keys_expire) {
                if now < expires {
                    return Ok(keys.clone());
                }
            }
            if let Some((failed_at, _)) = &state.failure {
                if now.duration_since(*failed_at) < settings.jwks_fetch_retry {
                    return state.answer();
                }
            }
            state.generation
        };
        let _single_flight = self.fetch_lock.lock().await;
        {
            let state = self.state.lock();
            if state.generation != observed {
                return state.answer();
            }
        }
        match self.refresh(fetcher, settings, false).await {
            Ok(keys) => Ok(keys),
            Err(err) => {
                let stale = self.state.lock().keys.clone();
                match stale {
                    Some(keys) => {
                        tracing::warn!(
                            "keeping the previous keys of `{}`: refreshing them failed: {err}",
                            self.provider_name()
                        );
                        Ok(keys)
                    }
                    None => Err(err),
                }
            }
        }
    }

    /// Refetch the JWKS because a token names a `kid` that `seen` lacks, unless another
    /// caller already refreshed it or the cooldown since the last such refetch has not passed.
    pub(crate) async fn refetch_for_unknown_kid(
        &self,
        fetcher: &Fetcher,
        settings: &ValidatorSettings,
        seen: &Arc<KeySet>,
    ) -> Result<Refetch> {
        // Everyone queues on the single-flight lock, so a storm of unknown kids produces one
        // fetch and the others see its result.
        let _single_flight = self.fetch_lock.lock().await;
        {
            let mut state = self.state.lock();
            if let Some(keys) = &state.keys {
                if !Arc::ptr_eq(keys, seen) {
                    return Ok(Refetch::Refreshed(keys.clone()));
                }
            }
            let now = Instant::now();
            if let Some(at) = state.last_kid_refetch {
                let since = now.duration_since(at);
                if since < settings.jwks_refetch_cooldown {
                    return Ok(Refetch::CoolingDown { since });
                }
            }
            state.last_kid_refetch = Some(now);
        }
        self.refresh(fetcher, settings, true)
            .await
            .map(Refetch::Refreshed)
    }

    /// Fetch (discovery if needed, then) the JWKS and record the outcome.
    async fn refresh(
        &self,
        fetcher: &Fetcher,
        settings: &ValidatorSettings,
        jwks_only: bool,
    ) -> Result<Arc<KeySet>> {
        let result = self.fetch(fetcher, settings, jwks_only).await;
        let mut state = self.state.lock();
        state.generation += 1;
        match result {
            Ok((keys, ttl)) => {
                let keys = Arc::new(keys);
                state.keys = Some(keys.clone());
                state.keys_expire = Some(Instant::now() + ttl);
                state.failure = None;
                Ok(keys)
            }
            Err(err) => {
                state.failure = Some((Instant::now(), err.clone()));
                Err(err)
            }
        }
    }

    async fn fetch(
        &self,
        fetcher: &Fetcher,
        settings: &ValidatorSettings,
        jwks_only: bool,
    ) -> Result<(KeySet, Duration)> {
        let jwks_url = match &self.source {
            RemoteSource::Jwks { url } => url.clone(),
            RemoteSource::Discovery {
                issuer,
                discovery_url,
            } => {
                let cached = {
                    let state = self.state.lock();
                    match (&state.jwks_url, state.discovery_expires) {
                        (Some(url), Some(expires)) if jwks_only || Instant::now() < expires => {
                            Some(url.clone())
                        }
                        _ => None,
                    }
                };
                match cached {
                    Some(url) => url,
                    None => {
                        self.discover(fetcher, settings, issuer, discovery_url)
                            .await?
                    }
                }
            }
        };
        let fetched = fetcher
            .get_json(&jwks_url)
            .await
            .map_err(|failure| self.fetch_error(&failure, Document::Jwks, &jwks_url))?;
        let keys =
            KeySet::from_jwks(&fetched.body, &format!("of `{jwks_url}`")).map_err(|reason| {
                errors::discovery_failed(format!("provider `{}`: {reason}", self.provider_name()))
            })?;
        if keys.is_empty() {
            tracing::warn!(
                "the JWKS `{jwks_url}` has no usable key: {}",
                keys.skipped_summary()
            );
        }
        Ok((keys, lifetime(fetched.max_age, settings)))
    }

    async fn discover(
        &self,
        fetcher: &Fetcher,
        settings: &ValidatorSettings,
        issuer: &str,
        discovery_url: &Url,
    ) -> Result<Url> {
        let fetched = fetcher
            .get_json(discovery_url)
            .await
            .map_err(|failure| self.fetch_error(&failure, Document::Discovery, discovery_url))?;
        let field = |name: &str| fetched.body.get(name).and_then(Json::as_str);
        let Some(document_issuer) = field("issuer") else {
            return Err(errors::discovery_failed(format!(
                "discovery `{discovery_url}` has no `issuer`; it is not an OpenID Connect discovery document"
            )));
        };
        if document_issuer.trim_end_matches('/') != issuer {
            return Err(errors::discovery_failed(format!(
                "discovery `{discovery_url}` names issuer `{}`, not `{issuer}`; the configured domain must be the provider's exact issuer",
                untrusted(document_issuer)
            )));
        }
        let Some(jwks_uri) = field("jwks_uri") else {
            return Err(errors::discovery_failed(format!(
                "discovery `{discovery_url}` has no `jwks_uri`"
            )));
        };
        let jwks_url = Url::parse(jwks_uri).map_err(|err| {
            errors::discovery_failed(format!(
                "discovery `{discovery_url}` lists jwks_uri `{}`, which is not a URL: {err}",
                untrusted(jwks_uri)
            ))
        })?;
        check_key_url(&jwks_url).map_err(|reason| {
            errors::discovery_failed(format!(
                "discovery `{discovery_url}` lists a jwks_uri that is refused: {reason}"
            ))
        })?;
        let mut state = self.state.lock();
        state.jwks_url = Some(jwks_url.clone());
        state.discovery_expires = Some(Instant::now() + lifetime(fetched.max_age, settings));
        Ok(jwks_url)
    }

    fn fetch_error(&self, failure: &FetchFailure, document: Document, url: &Url) -> Error {
        let provider = self.provider_name();
        let described = failure.describe(document, url);
        if failure.provider_down() {
            errors::discovery_failed(format!("provider `{provider}` is down: {described}"))
        } else {
            let hint = match (failure, document) {
                (FetchFailure::Status(404, _), Document::Discovery) => {
                    "; check that the domain in your auth config is the provider's issuer URL"
                }
                (FetchFailure::Status(404, _), Document::Jwks) => {
                    "; check the JWKS URL in your auth config"
                }
                _ => "",
            };
            errors::discovery_failed(format!("provider `{provider}`: {described}{hint}"))
        }
    }
}
