//! [`JwtValidator`]: the [`TokenValidator`] of Conflux.
//!
//! Why the checks run in this order: everything before the signature check reads untrusted
//! data, so it may only choose (a provider by `iss` and `aud`, an algorithm from that
//! provider's configuration, a key by exact `kid`), never accept. Algorithms are checked
//! before any key is fetched, so `alg: none` or `HS256` tokens cost nothing. Claims are
//! checked only after the signature verified, and the identity is built from verified
//! claims only.
//!
//! ```text
//!  token ─▶ cache hit? ─yes─▶ (session check) ─▶ identity
//!    │ no
//!    ▼
//!  decode ─▶ issuer ─▶ audience ─▶ algorithm ─▶ key (JWKS cache) ─▶ signature
//!    ─▶ exp ─▶ nbf ─▶ iat ─▶ sub ─▶ (session check) ─▶ identity ─▶ cache
//! ```
//!
//! Signature checks cost 0.2 to 0.3 ms of CPU each (RS256 and ES256 in release builds, see
//! the `validation` benchmark), so they run on the blocking pool, at most one per CPU at a
//! time, and never stall the reactor; a repeated token skips them through the token cache
//! (about half a microsecond).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use conflux_common::{Error, Result, SessionEnded, TokenValidator, UserIdentity};
use serde_json::Value as Json;
use tokio::sync::Semaphore;

use crate::config::{AuthConfig, JwksSource, ProviderConfig, SigningAlgorithm};
use crate::validation::errors;
use crate::validation::fetch::Fetcher;
use crate::validation::identity::{map_identity, ClaimStyle};
use crate::validation::jwks_cache::{Refetch, RemoteKeys, RemoteSource};
use crate::validation::keys::{KeyLookupError, KeySet};
use crate::validation::report::{Check, Trace, ValidationReport};
use crate::validation::session::SessionChecker;
use crate::validation::settings::{system_clock, Clock, ValidatorSettings};
use crate::validation::token::{untrusted, ParsedToken};
use crate::validation::token_cache::{digest, CachedToken, TokenCache};

/// Where a route's keys come from.
#[derive(Clone, Debug)]
enum RouteKeys {
    Static(Arc<KeySet>),
    Remote(Arc<RemoteKeys>),
}

/// A configured issuer, ready to validate its tokens.
#[derive(Debug)]
struct Route {
    description: String,
    /// The issuer without trailing `/`.
    issuer: String,
    audience: Option<String>,
    algorithms: Vec<SigningAlgorithm>,
    keys: RouteKeys,
    style: ClaimStyle,
    /// Our own issuer: `sub` is `userId|sessionId` and the session is checked.
    own: bool,
}

struct Inner {
    routes: Vec<Route>,
    fetcher: Fetcher,
    settings: ValidatorSettings,
    token_cache: TokenCache,
    sessions: Option<Arc<dyn SessionChecker>>,
    artificial_delay_ms: AtomicU64,
    clock: Clock,
    /// One permit per CPU: signature checks running at once on the blocking pool.
    verify_slots: Arc<Semaphore>,
}

/// Validates bearer tokens against the configured issuers; cheap to clone (shared state).
///
/// ```no_run
/// # async fn demo(token: &str) -> conflux_common::Result<()> {
/// use conflux_auth::{AuthConfig, JwtValidator, OidcProvider};
/// let config = AuthConfig::new().with_provider(OidcProvider::new("https://accounts.example.com", "my-app")?);
/// let validator = JwtValidator::new(config)?;
/// let identity = validator.validate(token).await?;
/// println!("signed in as {}", identity.token_identifier);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwtValidator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtValidator")
            .field("providers", &self.providers())
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtValidator`] with non-default settings, a session checker, a clock or an
/// artificial delay.
pub struct JwtValidatorBuilder {
    config: AuthConfig,
    settings: ValidatorSettings,
    sessions: Option<Arc<dyn SessionChecker>>,
    artificial_delay: Duration,
    clock: Clock,
}

impl std::fmt::Debug for JwtValidatorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtValidatorBuilder")
            .field("config", &self.config)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl JwtValidatorBuilder {
    /// Replace the settings (defaults come from the knobs).
    pub fn settings(mut self, settings: ValidatorSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Check the session of our own tokens (`sub` = `userId|sessionId`) on every use.
    pub fn session_checker(mut self, sessions: Arc<dyn SessionChecker>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Delay every validation by `delay` (tests use it to reproduce races).
    pub fn artificial_delay(mut self, delay: Duration) -> Self {
        self.artificial_delay = delay;
        self
    }

    /// Read the time from `clock` instead of the system clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Build the validator: routes for every issuer, one shared cache per remote key source.
    pub fn build(self) -> Result<JwtValidator> {
        let fetcher = Fetcher::new(
            self.settings.jwks_fetch_timeout,
            self.settings.jwks_max_bytes,
        )
        .map_err(Error::internal)?;
        let mut remotes: HashMap<String, Arc<RemoteKeys>> = HashMap::new();
        let mut remote = |source: RemoteSource| {
            remotes
                .entry(RemoteKeys::source_id(&source))
                .or_insert_with(|| Arc::new(RemoteKeys::new(source)))
                .clone()
        };
        let mut routes = Vec::new();
        if let Some(own) = &self.config.own_issuer {
            routes.push(Route {
                description: own.describe(),
                issuer: own.issuer().to_owned(),
                audience: Some(own.audience().to_owned()),
                algorithms: vec![SigningAlgorithm::RS256],
                keys: RouteKeys::Static(own.keys().clone()),
                style: ClaimStyle::Oidc,
                own: true,
            });
        }
        for provider in &self.config.providers {
            let description = provider.describe();
            let route = match provider {
                ProviderConfig::Oidc(oidc) => Route {
                    description,
                    issuer: oidc.domain().to_owned(),
                    audience: Some(oidc.application_id().to_owned()),
                    algorithms: oidc.algorithms().to_vec(),
                    keys: RouteKeys::Remote(remote(RemoteSource::Discovery {
                        issuer: oidc.domain().to_owned(),
                        discovery_url: oidc.discovery_url().clone(),
                    })),
                    style: ClaimStyle::Oidc,
                    own: false,
                },
                ProviderConfig::CustomJwt(custom) => Route {
                    description,
                    issuer: custom.issuer().to_owned(),
                    audience: custom.application_id().map(str::to_owned),
                    algorithms: vec![custom.algorithm()],
                    keys: match custom.jwks() {
                        JwksSource::Url(url) => {
                            RouteKeys::Remote(remote(RemoteSource::Jwks { url: url.clone() }))
                        }
                        JwksSource::Inline(keys) => RouteKeys::Static(keys.clone()),
                    },
                    style: ClaimStyle::CustomJwt,
                    own: false,
                },
            };
            routes.push(route);
        }
        let delay_ms = u64::try_from(self.artificial_delay.as_millis()).unwrap_or(u64::MAX);
        Ok(JwtValidator {
            inner: Arc::new(Inner {
                routes,
                fetcher,
                token_cache: TokenCache::new(self.settings.token_cache_entries),
                settings: self.settings,
                sessions: self.sessions,
                artificial_delay_ms: AtomicU64::new(delay_ms),
                clock: self.clock,
                verify_slots: Arc::new(Semaphore::new(
                    std::thread::available_parallelism().map_or(2, |cpus| cpus.get()),
                )),
            }),
        })
    }
}

impl JwtValidator {
    /// A validator for `config` with default settings.
    pub fn new(config: AuthConfig) -> Result<JwtValidator> {
        JwtValidator::builder(config).build()
    }

    /// A builder for `config`.
    pub fn builder(config: AuthConfig) -> JwtValidatorBuilder {
        JwtValidatorBuilder {
            config,
            settings: ValidatorSettings::default(),
            sessions: None,
            artificial_delay: Duration::ZERO,
            clock: system_clock(),
        }
    }

    /// Delay every validation by `delay`, for tests that reproduce auth races.
    pub fn with_artificial_delay(self, delay: Duration) -> JwtValidator {
        self.set_artificial_delay(delay);
        self
    }

    /// Change the artificial delay of a running validator (zero for none).
    pub fn set_artificial_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.inner
            .artificial_delay_ms
            .store(millis, Ordering::SeqCst);
    }

    /// The configured issuers as named in messages, in the order tokens are matched.
    pub fn providers(&self) -> Vec<String> {
        self.inner
            .routes
            .iter()
            .map(|route| route.description.clone())
            .collect()
    }

    /// The settings in force.
    pub fn settings(&self) -> &ValidatorSettings {
        &self.inner.settings
    }

    /// Number of validated tokens in the cache.
    pub fn cached_tokens(&self) -> usize {
        self.inner.token_cache.len()
    }

    /// Validate `token`: the identity, or an error whose code names the failed check and
    /// whose detail says what to fix.
    pub async fn validate(&self, token: &str) -> Result<UserIdentity> {
        let delay = self.inner.artificial_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        match self.run(token, &mut Trace::off(), true).await {
            Ok(identity) => Ok(identity.as_ref().clone()),
            Err(err) => {
                tracing::info!(code = %err.code(), "token rejected: {err}");
                Err(err)
            }
        }
    }

    /// Validate `token` without the token cache and report every check (`auth check`).
    pub async fn explain(&self, token: &str) -> ValidationReport {
        let mut trace = Trace::on();
        let outcome = self
            .run(token, &mut trace, false)
            .await
            .map(|identity| identity.as_ref().clone());
        let mut segments = token.split('.');
        ValidationReport {
            header: segments.next().and_then(best_effort_segment),
            claims: segments.next().and_then(best_effort_segment),
            steps: trace.into_steps(),
            outcome,
            now_secs: (self.inner.clock)(),
        }
    }

    async fn run(
        &self,
        token: &str,
        trace: &mut Trace,
        use_cache: bool,
    ) -> Result<Arc<UserIdentity>> {
        let inner = &*self.inner;
        let now = (inner.clock)();
        let cache_key = (use_cache
            && inner.token_cache.enabled()
            && token.len() <= inner.settings.token_max_bytes)
            .then(|| digest(token));
        if let Some(key) = &cache_key {
            if let Some(hit) = inner.token_cache.get(key, now) {
                if let Some(session_id) = &hit.identity.session_id {
                    self.check_session(session_id, &hit.identity.subject)
                        .await?;
                }
                return Ok(hit.identity);
            }
        }

        let parsed = trace.record(
            Check::Decode,
            ParsedToken::parse(token, inner.settings.token_max_bytes),
            |_| "three base64url segments; header and payload are JSON objects".to_owned(),
        )?;
        let candidates =
            trace.record(Check::Issuer, self.routes_for_issuer(&parsed), |routes| {
                let names: Vec<&str> = routes
                    .iter()
                    .map(|route| route.description.as_str())
                    .collect();
                let issuer = routes
                    .first()
                    .map(|route| route.issuer.as_str())
                    .unwrap_or_default();
                format!("issuer `{issuer}` is configured: {}", names.join(", "))
            })?;
        let route = trace.record(Check::Audience, pick_by_audience(&candidates, &parsed), |route| {
            match &route.audience {
                Some(audience) => format!("audience contains `{audience}` ({})", route.description),
                None => format!(
                    "{} has no applicationID, so any audience is accepted (insecure: configure one)",
                    route.description
                ),
            }
        })?;
        let alg = trace.record(Check::Algorithm, check_algorithm(route, &parsed), |alg| {
            format!("{alg} is allowed for {}", route.description)
        })?;
        let kid = parsed.kid().map_err(|err| trace.fail(Check::Key, err))?;
        let keys = trace.record(
            Check::Key,
            self.find_key(route, kid, alg).await,
            |(keys, index)| {
                let label = keys.key(*index).map(|key| key.label()).unwrap_or_default();
                format!("key {label} of the JWKS {}", keys.source())
            },
        );
        let (keys, index) = keys?;
        let key_label = keys
            .key(index)
            .map(|key| key.label())
            .ok_or_else(|| Error::internal("a selected key index is out of range"))?;
        let verified = self.verify_signature(&parsed, keys, index, alg).await;
        trace.record(Check::Signature, verified, |_| {
            format!("valid {alg} signature by key {key_label}")
        })?;

        let leeway = i128::from(inner.settings.clock_leeway.as_secs());
        let now_i = i128::from(now);
        let exp = trace.record(Check::Expiry, check_expiry(&parsed, now_i, leeway), |exp| {
            let left = i128::from(*exp) - now_i;
            if left >= 0 {
                format!("expires in {left} s (exp {exp})")
            } else {
                format!(
                    "expired {} s ago, within the {leeway} s leeway (exp {exp})",
                    -left
                )
            }
        })?;
        trace.record(
            Check::NotBefore,
            check_not_before(&parsed, now_i, leeway),
            |nbf| match nbf {
                Some(nbf) => format!("valid since {} s (nbf {nbf})", now_i - i128::from(*nbf)),
                None => "no `nbf` claim".to_owned(),
            },
        )?;
        trace.record(
            Check::IssuedAt,
            check_issued_at(&parsed, now_i, leeway),
            |iat| match iat {
                Some(iat) => format!("issued {} s ago (iat {iat})", now_i - i128::from(*iat)),
                None => "no `iat` claim".to_owned(),
            },
        )?;
        let subject = trace.record(Check::Subject, subject_of(&parsed), |sub| {
            format!("subject `{}`", untrusted(sub))
        })?;
        let issuer = parsed.string_claim("iss")?.unwrap_or_default();

        // Our own tokens name their session in `sub`; with a session checker configured,
        // a token without one is refused, and the session must still be active.
        let session_id = match (&inner.sessions, route.own) {
            (Some(_), true) => {
                let (_, session_id) =
                    own_session_of(subject).map_err(|err| trace.fail(Check::Session, err))?;
                let checked = self.check_session(session_id, subject).await;
                trace.record(Check::Session, checked, |_| {
                    format!("session `{}` is active", untrusted(session_id))
                })?;
                Some(session_id.to_owned())
            }
            (None, true) => own_session_of(subject)
                .ok()
                .map(|(_, session_id)| session_id.to_owned()),
            (Some(_), false) | (None, false) => None,
        };

        let exp_secs = u64::try_from(exp).unwrap_or(0);
        let identity = Arc::new(map_identity(
            &parsed.claims,
            issuer,
            subject,
            exp_secs,
            route.style,
            session_id,
        ));
        if let Some(key) = cache_key {
            inner.token_cache.insert(
                key,
                CachedToken {
                    identity: identity.clone(),
                    expires_at_secs: exp_secs,
                },
            );
        }
        Ok(identity)
    }

    /// The routes whose issuer is the token's `iss` (trailing `/` ignored), in order.
    fn routes_for_issuer(&self, parsed: &ParsedToken<'_>) -> Result<Vec<&Route>> {
        let Some(iss) = parsed.string_claim("iss")? else {
            return Err(errors::missing_claim(
                "the payload has no `iss` claim; the JWT must include an `iss` that matches one of your configured auth providers",
            ));
        };
        let wanted = iss.trim_end_matches('/');
        let matching: Vec<&Route> = self
            .inner
            .routes
            .iter()
            .filter(|route| route.issuer == wanted)
            .collect();
        if !matching.is_empty() {
            return Ok(matching);
        }
        let configured = if self.inner.routes.is_empty() {
            "none (no auth providers are configured; add one to your auth config)".to_owned()
        } else {
            self.providers().join(", ")
        };
        Err(errors::no_provider(format!(
            "issuer `{}` matches no provider; configured: {configured}",
            untrusted(iss)
        )))
    }

    async fn find_key(
        &self,
        route: &Route,
        kid: Option<&str>,
        alg: SigningAlgorithm,
    ) -> Result<(Arc<KeySet>, usize)> {
        let inner = &*self.inner;
        match &route.keys {
            RouteKeys::Static(keys) => keys
                .select(kid, alg)
                .map(|index| (keys.clone(), index))
                .map_err(|failure| key_error(failure, keys, kid, alg, "")),
            RouteKeys::Remote(remote) => {
                let keys = remote.keys(&inner.fetcher, &inner.settings).await?;
                match keys.select(kid, alg) {
                    Ok(index) => Ok((keys, index)),
                    Err(KeyLookupError::UnknownKid) => {
                        match remote
                            .refetch_for_unknown_kid(&inner.fetcher, &inner.settings, &keys)
                            .await?
                        {
                            Refetch::Refreshed(fresh) => fresh
                                .select(kid, alg)
                                .map(|index| (fresh.clone(), index))
                                .map_err(|failure| key_error(failure, &fresh, kid, alg, " (even after refetching it)")),
                            Refetch::CoolingDown { since } => Err(key_error(
                                KeyLookupError::UnknownKid,
                                &keys,
                                kid,
                                alg,
                                &format!(
                                    " (not refetched: the last refetch for an unknown kid was {} s ago; JWKS_REFETCH_COOLDOWN_SECS is {})",
                                    since.as_secs(),
                                    inner.settings.jwks_refetch_cooldown.as_secs()
                                ),
                            )),
                        }
                    }
                    Err(failure) => Err(key_error(failure, &keys, kid, alg, "")),
                }
            }
        }
    }

    /// Verify the token's signature on the blocking pool, one check per CPU at a time.
    async fn verify_signature(
        &self,
        parsed: &ParsedToken<'_>,
        keys: Arc<KeySet>,
        index: usize,
        alg: SigningAlgorithm,
    ) -> Result<()> {
        let _slot = self
            .inner
            .verify_slots
            .acquire()
            .await
            .map_err(|_| Error::internal("the signature check slots were closed"))?;
        let signing_input = parsed.signing_input.to_owned();
        let signature = parsed.signature.to_owned();
        tokio::task::spawn_blocking(move || {
            verify_signature_blocking(&signing_input, &signature, &keys, index, alg)
        })
        .await
        .map_err(|err| Error::internal(format!("a signature check task failed: {err}")))?
    }

    async fn check_session(&self, session_id: &str, subject: &str) -> Result<()> {
        let Some(sessions) = &self.inner.sessions else {
            return Ok(());
        };
        if sessions.is_session_active(session_id).await? {
            Ok(())
        } else {
            let user = subject.split_once('|').map_or(subject, |(user, _)| user);
            Err(errors::session_ended(format!(
                "session `{}` of user `{}` has ended (signed out or expired); sign in again",
                untrusted(session_id),
                untrusted(user)
            )))
        }
    }
}

#[async_trait]
impl TokenValidator for JwtValidator {
    async fn validate(&self, token: &str) -> Result<UserIdentity> {
        JwtValidator::validate(self, token).await
    }

    fn session_events(&self) -> Option<tokio::sync::broadcast::Receiver<SessionEnded>> {
        self.inner
            .sessions
            .as_ref()
            .and_then(|sessions| sessions.session_events())
    }
}

/// Decode one segment for display: JSON if it is JSON, text if it is text.
fn best_effort_segment(segment: &str) -> Option<Json> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(json) => Some(json),
        Err(_) => String::from_utf8(bytes).ok().map(Json::String),
    }
}

/// The first route of the issuer whose application id is in the token's `aud`.
fn pick_by_audience<'r>(candidates: &[&'r Route], parsed: &ParsedToken<'_>) -> Result<&'r Route> {
    let audiences = parsed.audiences();
    for route in candidates {
        match (&route.audience, &audiences) {
            (None, _) => return Ok(route),
            (Some(wanted), Ok(list)) if list.iter().any(|aud| aud == wanted) => return Ok(route),
            (Some(_), Ok(_)) | (Some(_), Err(_)) => {}
        }
    }
    let wanted: Vec<String> = candidates
        .iter()
        .filter_map(|route| route.audience.as_ref().map(|aud| format!("`{aud}`")))
        .collect();
    let wanted = wanted.join(" or ");
    let detail = match audiences {
        Err(reason) => format!("{reason}; the provider requires audience {wanted}"),
        Ok(list) => match list.as_slice() {
            [] => format!(
                "the token has no `aud` claim; {} requires audience {wanted}",
                candidates
                    .first()
                    .map_or("the provider", |route| route.description.as_str())
            ),
            [single] => format!("audience `{}` is not {wanted}", untrusted(single)),
            several => format!(
                "audience [{}] does not contain {wanted}",
                several
                    .iter()
                    .map(|aud| format!("`{}`", untrusted(aud)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    Err(errors::audience_mismatch(detail))
}

fn check_algorithm(route: &Route, parsed: &ParsedToken<'_>) -> Result<SigningAlgorithm> {
    let name = parsed.alg()?;
    match SigningAlgorithm::parse(name) {
        Some(alg) if route.algorithms.contains(&alg) => Ok(alg),
        Some(_) | None => Err(errors::algorithm_not_allowed(format!(
            "algorithm {} not allowed for provider `{}` (allowed: {})",
            untrusted(name),
            route.description,
            route
                .algorithms
                .iter()
                .map(|alg| alg.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn key_error(
    failure: KeyLookupError,
    keys: &KeySet,
    kid: Option<&str>,
    alg: SigningAlgorithm,
    note: &str,
) -> Error {
    let source = keys.source();
    let skipped = if keys.skipped_summary() == "it has no keys" {
        String::new()
    } else {
        format!("; {}", keys.skipped_summary())
    };
    let detail = match failure {
        KeyLookupError::UnknownKid => format!(
            "kid `{}` not in the JWKS {source} (keys: {}){note}{skipped}",
            untrusted(kid.unwrap_or_default()),
            keys.kid_list()
        ),
        KeyLookupError::Unfit { reason } => format!(
            "key `{}` of the JWKS {source} cannot verify this {alg} token: {reason}",
            untrusted(kid.unwrap_or_default())
        ),
        KeyLookupError::NoKeyOfType => format!(
            "the token has no kid and the JWKS {source} has no key for {alg} (keys: {}){skipped}",
            keys.kid_list()
        ),
        KeyLookupError::Ambiguous { count } => format!(
            "the token has no kid and the JWKS {source} has {count} keys for {alg}; the issuer must put a `kid` in the token header"
        ),
    };
    errors::unknown_key(detail)
}

/// Verify the signature of `signing_input` with key `index` of `keys` (CPU-bound: call on
/// the blocking pool).
fn verify_signature_blocking(
    signing_input: &str,
    signature: &str,
    keys: &KeySet,
    index: usize,
    alg: SigningAlgorithm,
) -> Result<()> {
    let key = keys
        .key(index)
        .ok_or_else(|| Error::internal("a selected key index is out of range"))?;
    let verified = jsonwebtoken::crypto::verify(
        signature,
        signing_input.as_bytes(),
        key.decoding_key(),
        alg.jsonwebtoken(),
    );
    match verified {
        Ok(true) => Ok(()),
        Ok(false) => Err(errors::bad_signature(format!(
            "signature invalid for key {} of the JWKS {}",
            key.label(),
            keys.source()
        ))),
        Err(err) => Err(errors::bad_signature(format!(
            "signature invalid for key {} of the JWKS {} ({err})",
            key.label(),
            keys.source()
        ))),
    }
}

fn check_expiry(parsed: &ParsedToken<'_>, now: i128, leeway: i128) -> Result<i64> {
    let Some(exp) = parsed.time_claim("exp")? else {
        return Err(errors::missing_claim(
            "the token has no `exp` claim; tokens without an expiry are never accepted",
        ));
    };
    let late = now - i128::from(exp);
    if late > leeway {
        return Err(errors::expired(format!(
            "token expired {late} s ago (exp {exp}; leeway {leeway} s); get a fresh token"
        )));
    }
    Ok(exp)
}

fn check_not_before(parsed: &ParsedToken<'_>, now: i128, leeway: i128) -> Result<Option<i64>> {
    let nbf = parsed.time_claim("nbf")?;
    if let Some(nbf) = nbf {
        let early = i128::from(nbf) - now;
        if early > leeway {
            return Err(errors::not_yet_valid(format!(
                "token is not valid for another {early} s (nbf {nbf}; leeway {leeway} s); check the clocks of the issuer and this server"
            )));
        }
    }
    Ok(nbf)
}

fn check_issued_at(parsed: &ParsedToken<'_>, now: i128, leeway: i128) -> Result<Option<i64>> {
    let iat = parsed.time_claim("iat")?;
    if let Some(iat) = iat {
        let ahead = i128::from(iat) - now;
        if ahead > leeway {
            return Err(errors::not_yet_valid(format!(
                "token was issued {ahead} s in the future (iat {iat}; leeway {leeway} s); check the issuer's clock"
            )));
        }
    }
    Ok(iat)
}

fn subject_of<'t>(parsed: &'t ParsedToken<'_>) -> Result<&'t str> {
    match parsed.string_claim("sub")? {
        Some(sub) if !sub.is_empty() => Ok(sub),
        Some(_) => Err(errors::missing_claim("the `sub` claim is empty")),
        None => Err(errors::missing_claim(
            "the token has no `sub` claim; the issuer must name the user in `sub`",
        )),
    }
}

/// `(userId, sessionId)` of our own token's `sub`.
fn own_session_of(subject: &str) -> Result<(&str, &str)> {
    match subject.split_once('|') {
        Some((user, session)) if !user.is_empty() && !session.is_empty() => Ok((user, session)),
        Some(_) | None => Err(errors::missing_claim(format!(
            "our own token's `sub` `{}` is not `<userId>|<sessionId>`",
            untrusted(subject)
        ))),
    }
}
