//! The built-in sign-in: the server side of Convex Auth (`@convex-dev/auth` 0.0.95), native.
//!
//! Why it is built in: with it, the official React client (`ConvexAuthProvider`,
//! `useAuthActions`) and its Next.js helpers work against Conflux unchanged, without a
//! JavaScript runtime on the server, and the weak spots of Convex Auth are fixed where the
//! clients cannot tell the difference: `state` and `nonce` on every OAuth sign-in, the ID
//! token's signature checked, accounts linked by email only when the provider verified it,
//! OAuth failures reported to the app instead of a silent sign-out, and sign-out that takes
//! effect at once everywhere (sockets included) instead of when the access token expires.
//!
//! ```text
//!  browser / app                         Conflux (site origin)                 provider
//!  ─────────────                         ─────────────────────                 ────────
//!  auth:signIn {provider} ─────────────▶ verifier ─▶ {redirect, verifier}
//!  GET /api/auth/signin/google?code=V ─▶ PKCE+state+nonce, cookies ─302──────▶ /authorize
//!  GET /api/auth/callback/google ◀──────────────────────────────────────302── consent
//!      (cookies) ──────────────────────▶ state check, token exchange ────────▶ /token
//!                                        ID token verified, user+account,
//!  SITE_URL?code=12345678 ◀───302─────── one-time code (bound to V)
//!  auth:signIn {params:{code}, verifier} ▶ new session ─▶ {tokens:{token, refreshToken}}
//!  auth:signIn {refreshToken} ─────────▶ rotation (10 s reuse window) ─▶ {tokens}
//!  auth:signOut / POST /api/auth/signout ▶ session deleted ─▶ SessionEnded ─▶ sockets
//! ```
//!
//! The pieces:
//!
//! - [`AuthSetup`] (module `setup`): configuration, from code or from Convex Auth's
//!   environment variables; [`AuthSetup::install`] → [`InstalledAuth`].
//! - `keys`: our RS256 signing key ([`SigningKeys`]) and the access tokens it signs.
//! - `tables`: the seven tables; `store`: everything the sign-in writes (the `auth:store`
//!   mutation, shared with the HTTP routes).
//! - `functions`: `auth:signIn`, `auth:signOut`, `auth:isAuthenticated`, `auth:store`.
//! - `oauth`: the OpenID Connect client; `cookies`, `redirect`: binding a sign-in to its
//!   browser, and where it ends.
//! - `routes`: the HTTP routes on the site origin, the session endpoints included.
//! - `sessions`: ending a session everywhere once its deletion committed.
//! - `background`: the cleanup of expired rows and the settling of ended sessions.

mod background;
mod cookies;
mod functions;
#[cfg(fuzzing)]
pub mod fuzzing;
mod keys;
mod oauth;
mod redirect;
mod routes;
mod sessions;
mod setup;
mod store;
mod tables;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use conflux_common::{Error, ErrorCode, Identity, Result, TokenValidator};
use conflux_db::Transaction;
use conflux_functions::{FunctionRunner, Registry};
use conflux_http::{NamedRoutes, RouteSet};

use crate::config::OwnIssuer;
use crate::validation::SessionChecker;

pub use background::CleanupReport;
pub use keys::{generate_signing_keys, SigningKeys};
pub use oauth::{OAuthFailure, OAUTH_ERROR_CODES};
pub use setup::{
    AuthSetup, InstallContext, Lifetimes, OAuthProvider, DEFAULT_SITE_URL, GOOGLE_ISSUER,
};
pub use tables::{
    ACCOUNTS, RATE_LIMITS, REFRESH_TOKENS, SESSIONS, USERS, VERIFICATION_CODES, VERIFIERS,
};

use keys::{KeySource, TokenIssuer};
use oauth::ProviderClient;
use sessions::{DbCell, SessionLayer};
use store::StoreCtx;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The users id of a caller signed in through the built-in sign-in (the first half of
/// `subject`, like Convex Auth's `getAuthUserId`); `None` when signed out.
pub fn auth_user_id(identity: &Identity) -> Option<String> {
    let user = identity.user()?;
    user.session_id.as_ref()?;
    user.subject
        .split_once('|')
        .map(|(user_id, _)| user_id.to_owned())
}

/// The session id of a caller signed in through the built-in sign-in (Convex Auth's
/// `getAuthSessionId`).
pub fn auth_session_id(identity: &Identity) -> Option<String> {
    identity.user()?.session_id.clone()
}

/// Settings fixed at install time.
pub(crate) struct Settings {
    /// `SITE_URL`: where sign-ins end.
    pub site_url: String,
    /// The origin serving the sign-in routes (`CUSTOM_AUTH_SITE_URL` or the site origin).
    pub auth_origin: String,
    pub dev_mode: bool,
}

/// Everything an installed sign-in shares between its functions, routes and tasks.
pub(crate) struct Core {
    pub settings: Settings,
    pub lifetimes: Lifetimes,
    pub providers: BTreeMap<String, ProviderClient>,
    pub issuer: TokenIssuer,
    pub own_issuer: OwnIssuer,
    pub sessions: SessionLayer,
    pub cookies: cookies::CookieJar,
    pub db: DbCell,
    pub validator: OnceLock<Option<Arc<dyn TokenValidator>>>,
    pub cleanup: background::Cursors,
}

impl Core {
    /// Run `work` in a transaction of its own on the blocking pool and commit it, re-running
    /// it when it loses an optimistic-concurrency conflict; then announce the sessions it
    /// ended. `work` gets the store, the caller's identity and one fixed time.
    pub(crate) async fn transact<T, F>(self: &Arc<Self>, identity: Identity, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&mut Transaction, &StoreCtx<'_>) -> Result<T> + Send + Sync + 'static,
    {
        const MAX_ATTEMPTS: u32 = 16;
        let db = sessions::database(&self.db)?;
        let work = Arc::new(work);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let core = self.clone();
            let work = work.clone();
            let identity = identity.clone();
            let tx_db = db.clone();
            let (tx, value) = tokio::task::spawn_blocking(move || {
                let mut tx = tx_db.begin();
                let ctx = StoreCtx {
                    core: &core,
                    identity: &identity,
                    now_ms: now_ms(),
                };
                let value = work(&mut tx, &ctx);
                (tx, value)
            })
            .await
            .map_err(|err| Error::internal(format!("a sign-in transaction failed: {err}")))?;
            let value = value?;
            match db.commit(tx).await {
                Ok(_) => {
                    self.settle().await;
                    return Ok(value);
                }
                Err(err) if err.code() == ErrorCode::OccConflict && attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt) * 2))
                        .await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Announce the sessions that ended (errors are logged: the sessions stay noted and the
    /// next commit retries).
    pub(crate) async fn settle(&self) {
        if let Err(err) = self.sessions.settle().await {
            tracing::warn!(error = %err, "could not announce ended sessions yet");
        }
    }

    /// The token validator given at attach time.
    pub(crate) fn validator(&self) -> Option<Arc<dyn TokenValidator>> {
        self.validator.get().cloned().flatten()
    }
}

impl AuthSetup {
    /// Turn the configuration into a running sign-in for a server with these origins:
    /// checks everything, loads (or in dev mode generates) the signing key, and prepares
    /// the functions and routes. Call [`InstalledAuth::attach`] once the function runner
    /// exists.
    ///
    /// Fails with a message naming what to fix: an invalid URL or provider, a missing key
    /// outside dev mode, a `JWT_PRIVATE_KEY` that does not match `JWKS`.
    pub fn install(self, ctx: InstallContext) -> Result<InstalledAuth> {
        let site_url = self.check()?;
        let site_origin = ctx.origins.site.trim_end_matches('/').to_owned();
        let site_url = if self.site_url.is_none() && self.site_url_defaults_to_site_origin {
            tracing::info!(
                site_url = %site_origin,
                "SITE_URL is not set: sign-ins return to the site origin {site_origin}, \
                 where the web front-end is served"
            );
            site_origin.clone()
        } else {
            tracing::info!(site_url = %site_url, "sign-ins return to SITE_URL {site_url}");
            site_url
        };
        let auth_origin = self
            .custom_auth_site_url
            .clone()
            .unwrap_or_else(|| site_origin.clone())
            .trim_end_matches('/')
            .to_owned();
        let (keys, source) = off_reactor(|| {
            keys::resolve_keys(
                self.keys.as_ref(),
                self.jwks_without_key,
                &ctx.data_dir,
                ctx.dev_mode,
            )
        })?;
        match &source {
            KeySource::Configured => {
                tracing::info!("sign-in tokens are signed with JWT_PRIVATE_KEY")
            }
            KeySource::Generated(path) => tracing::warn!(
                file = %path.display(),
                "generated a signing key pair for the built-in sign-in and stored it in {}; \
                 set JWT_PRIVATE_KEY and JWKS in production (`auth keys` prints a pair)",
                path.display()
            ),
            KeySource::DevFile(path) => tracing::info!(
                file = %path.display(),
                "sign-in tokens are signed with the dev key pair stored in {}",
                path.display()
            ),
        }
        let issuer = TokenIssuer::new(&site_origin, &keys)?;
        let own_issuer = OwnIssuer::new(&site_origin, issuer.jwks_json())?;
        let mut providers = BTreeMap::new();
        for provider in &self.providers {
            provider.check()?;
            let redirect_uri = format!(
                "{auth_origin}{}{}",
                conflux_http::CALLBACK_PATH_PREFIX,
                provider.id()
            );
            let client = ProviderClient::new(
                provider.id(),
                provider.issuer().trim(),
                provider.client_id(),
                provider.client_secret(),
                &redirect_uri,
            )
            .map_err(|why| setup::setup_error(format!("provider `{}`: {why}", provider.id())))?;
            tracing::info!(
                provider = %provider.id(),
                issuer = %client.issuer(),
                redirect_uri = %redirect_uri,
                "sign-in provider configured; register this redirect URI with the provider"
            );
            providers.insert(provider.id().to_owned(), client);
        }
        let db: DbCell = Arc::new(OnceLock::new());
        let core = Arc::new(Core {
            settings: Settings {
                site_url,
                auth_origin: auth_origin.clone(),
                dev_mode: ctx.dev_mode,
            },
            lifetimes: self.lifetimes.clone(),
            providers,
            issuer,
            own_issuer,
            sessions: SessionLayer::new(db.clone()),
            cookies: cookies::CookieJar::for_origin(&auth_origin),
            db,
            validator: OnceLock::new(),
            cleanup: background::Cursors::default(),
        });
        let registry = functions::registry(&core)?;
        Ok(InstalledAuth { core, registry })
    }
}

/// Run blocking, CPU-heavy `work` (key generation) without stalling an async reactor.
fn off_reactor<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        Ok(_) | Err(_) => work(),
    }
}

/// An installed sign-in: its functions, its routes, our own token issuer and the session
/// checker for the token validator.
///
/// ```no_run
/// # async fn demo(runner: conflux_functions::FunctionRunner, origins: conflux_http::Origins) -> conflux_common::Result<()> {
/// use std::sync::Arc;
/// use conflux_auth::{AuthConfig, AuthSetup, InstallContext, JwtValidator};
///
/// let auth = AuthSetup::from_env()?.install(InstallContext {
///     data_dir: "./data".into(),
///     origins,
///     dev_mode: true,
/// })?;
/// // registry.merge(auth.functions()); schema tables: AuthSetup::tables()
/// let validator = JwtValidator::builder(AuthConfig::new().with_own_issuer(auth.own_issuer()))
///     .session_checker(auth.session_checker())
///     .build()?;
/// let validator: Arc<dyn conflux_common::TokenValidator> = Arc::new(validator);
/// auth.attach(runner, Some(validator));
/// // router.mount(auth.routes())
/// # Ok(()) }
/// ```
pub struct InstalledAuth {
    core: Arc<Core>,
    registry: Registry,
}

impl std::fmt::Debug for InstalledAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstalledAuth")
            .field("issuer", &self.core.issuer.issuer())
            .field("providers", &self.providers())
            .finish_non_exhaustive()
    }
}

impl InstalledAuth {
    /// `auth:signIn` and `auth:signOut` (public actions), `auth:isAuthenticated` (public
    /// query) and `auth:store` (internal mutation), to merge into the app's registry.
    pub fn functions(&self) -> Registry {
        self.registry.clone()
    }

    /// The routes of the site origin: discovery and JWKS, the OAuth sign-in and callback
    /// of each provider, and the session endpoints (`POST /api/auth/signout`,
    /// `GET /api/auth/session`, `POST /api/auth/token`).
    pub fn routes(&self) -> impl RouteSet + 'static {
        let routes: NamedRoutes = routes::routes(&self.core);
        routes
    }

    /// Our own token issuer (the site origin, audience `convex`, our public key) for the
    /// token validator: our tokens are verified in memory, never over HTTP.
    pub fn own_issuer(&self) -> OwnIssuer {
        self.core.own_issuer.clone()
    }

    /// The session check for the token validator: a token of ours is accepted only while
    /// its session exists. Ending a session through the sign-in clears the cache at once
    /// and announces the end on [`SessionChecker::session_events`].
    pub fn session_checker(&self) -> Arc<dyn SessionChecker> {
        self.core.sessions.checker()
    }

    /// The configured provider ids.
    pub fn providers(&self) -> Vec<String> {
        self.core.providers.keys().cloned().collect()
    }

    /// The JWKS our tokens verify with (`{"keys":[...]}`).
    pub fn jwks_json(&self) -> String {
        self.core.issuer.jwks_json().to_owned()
    }

    /// Connect to the running deployment: the database of `runner`, and `validator` for the
    /// session endpoint. Starts the background cleanup and the announcer of sessions ended
    /// by app code; both stop when the deployment is dropped. Call it once, inside the
    /// Tokio runtime.
    pub fn attach(&self, runner: FunctionRunner, validator: Option<Arc<dyn TokenValidator>>) {
        let db = runner.database().clone();
        if self.core.db.set(db.clone()).is_err() {
            tracing::warn!("InstalledAuth::attach was called twice; the second call is ignored");
            return;
        }
        let _ = self.core.validator.set(validator);
        background::spawn(Arc::downgrade(&self.core), &db);
    }

    /// Run one round of the background cleanup now (it also runs every
    /// `AUTH_CLEANUP_INTERVAL_MS`): expired sessions (announced as ended), expired or spent
    /// refresh tokens, abandoned verifiers, expired codes, stale rate limits.
    pub async fn run_cleanup(&self) -> Result<CleanupReport> {
        background::cleanup(&self.core).await
    }

    /// End every session of user `user_id` (e.g. after a password change or when an
    /// account is disabled); their tokens are refused at once everywhere.
    pub async fn end_sessions_of_user(&self, user_id: &str) -> Result<()> {
        let user: conflux_values::DocumentId = user_id
            .parse()
            .map_err(|_| Error::bad_request(format!("`{user_id}` is not a user id")))?;
        self.core
            .transact(Identity::Anonymous, move |tx, ctx| {
                store::invalidate_sessions(tx, ctx, &user, &[])
            })
            .await
    }
}
