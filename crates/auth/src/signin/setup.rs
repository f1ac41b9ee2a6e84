//! Configuring the built-in sign-in: [`AuthSetup`] and [`OAuthProvider`], from code or from
//! the environment variables Convex Auth uses.
//!
//! Why configuration errors wait for [`AuthSetup::install`]: the builder reads naturally
//! (`AuthSetup::new().site_url(..).provider(..)`) and collects its problems; `install`
//! reports them all at once, naming the variable or builder call to fix, before the server
//! serves anything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use conflux_common::{Error, ErrorCode, Result};
use url::Url;

use crate::config::is_loopback;
use crate::signin::keys::ConfiguredKeys;

/// The default `SITE_URL`: the Vite dev server.
pub const DEFAULT_SITE_URL: &str = "http://localhost:5173";
/// Google's issuer.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// How long sessions, refresh tokens, access tokens and one-time codes live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// Absolute lifetime of a session (`AUTH_SESSION_TOTAL_DURATION_MS`, default 30 days).
    pub session_total: Duration,
    /// A refresh token unused for this long expires, which ends the sign-in
    /// (`AUTH_SESSION_INACTIVE_DURATION_MS`, default 30 days).
    pub session_inactive: Duration,
    /// Lifetime of an access token (default 1 hour).
    pub jwt: Duration,
    /// How long a used refresh token may be presented again and still get tokens (default
    /// 10 seconds); after that, presenting it revokes the session.
    pub refresh_reuse_window: Duration,
    /// Lifetime of the one-time code an OAuth sign-in hands to the app (default 2 minutes).
    pub oauth_code: Duration,
    /// An OAuth sign-in not finished within this long is abandoned and its verifier
    /// deleted (default 15 minutes, the lifetime of the sign-in cookies).
    pub verifier: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        Lifetimes {
            session_total: DAY * 30,
            session_inactive: DAY * 30,
            jwt: Duration::from_secs(3600),
            refresh_reuse_window: Duration::from_secs(10),
            oauth_code: Duration::from_secs(120),
            verifier: Duration::from_secs(900),
        }
    }
}

/// An OpenID Connect provider users sign in with.
///
/// ```
/// use conflux_auth::OAuthProvider;
/// let google = OAuthProvider::google("123.apps.googleusercontent.com", "secret");
/// let okta = OAuthProvider::oidc("okta", "https://dev-1.okta.com", "client", "secret");
/// assert_eq!(google.id(), "google");
/// assert_eq!(okta.id(), "okta");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthProvider {
    id: String,
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
}

impl std::fmt::Debug for OAuthProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthProvider")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl OAuthProvider {
    /// Google (`https://accounts.google.com`), with the OAuth client of the Google Cloud
    /// console. Its authorized redirect URI is `<site origin>/api/auth/callback/google`.
    pub fn google(client_id: impl Into<String>, client_secret: impl Into<String>) -> OAuthProvider {
        OAuthProvider {
            id: "google".to_owned(),
            issuer: GOOGLE_ISSUER.to_owned(),
            client_id: client_id.into(),
            client_secret: Some(client_secret.into()),
        }
    }

    /// Any OpenID Connect provider, found through `<issuer>/.well-known/openid-configuration`.
    /// `id` names it in routes (`/api/auth/signin/<id>`) and in `signIn("<id>")`.
    pub fn oidc(
        id: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> OAuthProvider {
        let secret: String = client_secret.into();
        OAuthProvider {
            id: id.into(),
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: (!secret.is_empty()).then_some(secret),
        }
    }

    /// Use another issuer (e.g. a local OpenID provider standing in for Google in tests).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> OAuthProvider {
        self.issuer = issuer.into();
        self
    }

    /// The provider id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub(crate) fn client_secret(&self) -> Option<&str> {
        self.client_secret.as_deref()
    }

    /// Check the id and the issuer; the issuer as a URL.
    pub(crate) fn check(&self) -> Result<Url> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(setup_error(format!(
                "provider id `{}` must be 1 to 64 lowercase letters, digits, `-` or `_`",
                self.id
            )));
        }
        if self.client_id.is_empty() {
            return Err(setup_error(format!(
                "provider `{}` has no client id (AUTH_{}_ID)",
                self.id,
                env_name(&self.id)
            )));
        }
        let issuer = Url::parse(self.issuer.trim()).map_err(|err| {
            setup_error(format!(
                "the issuer `{}` of provider `{}` is not a URL: {err}",
                self.issuer, self.id
            ))
        })?;
        match issuer.scheme() {
            "https" => Ok(issuer),
            "http" if is_loopback(&issuer) => Ok(issuer),
            _ => Err(setup_error(format!(
                "the issuer `{}` of provider `{}` must use https (plain http only for 127.0.0.1, \
                 ::1 and localhost)",
                self.issuer, self.id
            ))),
        }
    }
}

/// The environment variable stem of a provider id: `google` → `GOOGLE`, `my-idp` → `MY_IDP`.
fn env_name(id: &str) -> String {
    id.to_ascii_uppercase().replace('-', "_")
}

pub(crate) fn setup_error(message: impl Into<String>) -> Error {
    Error::new(
        ErrorCode::InvalidValue,
        format!("Invalid sign-in configuration: {}", message.into()),
    )
}

/// The built-in sign-in, configured: where users come back to, which providers they sign
/// in with, the signing key and the lifetimes.
///
/// ```
/// use std::time::Duration;
/// use conflux_auth::{AuthSetup, OAuthProvider};
/// let setup = AuthSetup::new()
///     .site_url("https://app.example.com")
///     .provider(OAuthProvider::google("client-id", "client-secret"))
///     .session_lifetime(Duration::from_secs(7 * 24 * 3600));
/// let tables = setup.tables(); // add to the app's schema
/// assert!(tables.iter().any(|table| table.name() == "authSessions"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct AuthSetup {
    pub(crate) site_url: Option<String>,
    pub(crate) site_url_defaults_to_site_origin: bool,
    pub(crate) custom_auth_site_url: Option<String>,
    pub(crate) providers: Vec<OAuthProvider>,
    pub(crate) keys: Option<ConfiguredKeys>,
    pub(crate) jwks_without_key: bool,
    pub(crate) lifetimes: Lifetimes,
    pub(crate) problems: Vec<String>,
}

impl AuthSetup {
    /// No providers, `SITE_URL` = `http://localhost:5173`, default lifetimes, keys from dev
    /// mode's key file.
    pub fn new() -> AuthSetup {
        AuthSetup::default()
    }

    /// Read the configuration from the process environment; see [`AuthSetup::from_vars`].
    pub fn from_env() -> Result<AuthSetup> {
        AuthSetup::from_vars(std::env::vars())
    }

    /// Read the configuration from variables named as in Convex Auth:
    ///
    /// - `SITE_URL` (default `http://localhost:5173`), `CUSTOM_AUTH_SITE_URL`;
    /// - `AUTH_GOOGLE_ID`, `AUTH_GOOGLE_SECRET`, `AUTH_GOOGLE_ISSUER` (default Google);
    /// - any OpenID Connect provider `<id>` with `AUTH_<ID>_ISSUER`, `AUTH_<ID>_ID` and
    ///   `AUTH_<ID>_SECRET` (`<ID>` upper-cased, `-` as `_`);
    /// - `JWT_PRIVATE_KEY` (PKCS#8 PEM, newlines may be spaces) and `JWKS`;
    /// - `AUTH_SESSION_TOTAL_DURATION_MS`, `AUTH_SESSION_INACTIVE_DURATION_MS`.
    ///
    /// Fails when a value is malformed (a duration that is not a number, a provider with an
    /// issuer but no client id).
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<AuthSetup>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .filter(|(_, value)| !value.trim().is_empty())
            .collect();
        let mut setup = AuthSetup::new();
        if let Some(site) = vars.get("SITE_URL") {
            setup = setup.site_url(site.trim());
        }
        if let Some(custom) = vars.get("CUSTOM_AUTH_SITE_URL") {
            setup = setup.custom_auth_site_url(custom.trim());
        }
        for (name, setter) in [
            ("AUTH_SESSION_TOTAL_DURATION_MS", Lifetime::SessionTotal),
            (
                "AUTH_SESSION_INACTIVE_DURATION_MS",
                Lifetime::SessionInactive,
            ),
        ] {
            if let Some(text) = vars.get(name) {
                let millis: u64 = text.trim().parse().map_err(|_| {
                    setup_error(format!("{name}={text:?} is not a number of milliseconds"))
                })?;
                let duration = Duration::from_millis(millis);
                setup = match setter {
                    Lifetime::SessionTotal => setup.session_lifetime(duration),
                    Lifetime::SessionInactive => setup.refresh_token_lifetime(duration),
                };
            }
        }
        match (vars.get("JWT_PRIVATE_KEY"), vars.get("JWKS")) {
            (Some(private_key), jwks) => {
                setup.keys = Some(ConfiguredKeys {
                    private_key: private_key.clone(),
                    jwks: jwks.cloned(),
                });
            }
            (None, Some(_)) => setup.jwks_without_key = true,
            (None, None) => {}
        }
        if let Some(client_id) = vars.get("AUTH_GOOGLE_ID") {
            let secret = vars.get("AUTH_GOOGLE_SECRET").ok_or_else(|| {
                setup_error("AUTH_GOOGLE_ID is set but AUTH_GOOGLE_SECRET is not")
            })?;
            let mut google = OAuthProvider::google(client_id.trim(), secret.trim());
            if let Some(issuer) = vars.get("AUTH_GOOGLE_ISSUER") {
                google = google.with_issuer(issuer.trim());
            }
            setup = setup.provider(google);
        }
        for (name, issuer) in &vars {
            let Some(stem) = name
                .strip_prefix("AUTH_")
                .and_then(|rest| rest.strip_suffix("_ISSUER"))
            else {
                continue;
            };
            if stem == "GOOGLE" || stem.is_empty() {
                continue;
            }
            let id = stem.to_ascii_lowercase().replace('_', "-");
            let client_id = vars
                .get(&format!("AUTH_{stem}_ID"))
                .ok_or_else(|| setup_error(format!("{name} is set but AUTH_{stem}_ID is not")))?;
            let secret = vars
                .get(&format!("AUTH_{stem}_SECRET"))
                .cloned()
                .unwrap_or_default();
            setup = setup.provider(OAuthProvider::oidc(
                id,
                issuer.trim(),
                client_id.trim(),
                secret,
            ));
        }
        for name in vars.keys() {
            let Some(stem) = name
                .strip_prefix("AUTH_")
                .and_then(|rest| rest.strip_suffix("_ID"))
            else {
                continue;
            };
            if stem != "GOOGLE" && !vars.contains_key(&format!("AUTH_{stem}_ISSUER")) {
                tracing::warn!(
                    "{name} is set but AUTH_{stem}_ISSUER is not: only OpenID Connect providers \
                     (with an issuer) are supported, so this provider is not enabled"
                );
            }
        }
        Ok(setup)
    }

    /// Where users return after signing in: the web app's origin (`SITE_URL`).
    pub fn site_url(mut self, url: impl Into<String>) -> AuthSetup {
        self.site_url = Some(url.into());
        self
    }

    /// When no `SITE_URL` is given, return sign-ins to the site origin instead of
    /// `http://localhost:5173`: for a server that serves its web front-end itself on the
    /// site origin, so sign-in comes back to the page it started from. An explicit
    /// [`AuthSetup::site_url`] (or `SITE_URL`) still wins.
    pub fn site_url_defaults_to_site_origin(mut self) -> AuthSetup {
        self.site_url_defaults_to_site_origin = true;
        self
    }

    /// Whether a `SITE_URL` was given (from the environment or [`AuthSetup::site_url`]).
    pub fn has_site_url(&self) -> bool {
        self.site_url.is_some()
    }

    /// The origin users' browsers reach the sign-in routes on, when it is not the site
    /// origin (`CUSTOM_AUTH_SITE_URL`, e.g. a branded domain for Google's consent screen).
    pub fn custom_auth_site_url(mut self, url: impl Into<String>) -> AuthSetup {
        self.custom_auth_site_url = Some(url.into());
        self
    }

    /// Add a provider. A second provider with the same id is a configuration error.
    pub fn provider(mut self, provider: OAuthProvider) -> AuthSetup {
        if self.providers.iter().any(|known| known.id == provider.id) {
            self.problems
                .push(format!("provider `{}` is configured twice", provider.id));
        } else {
            self.providers.push(provider);
        }
        self
    }

    /// Sign tokens with this key pair (`JWT_PRIVATE_KEY`, PKCS#8 PEM, and `JWKS`).
    pub fn signing_keys(
        mut self,
        private_key_pem: impl Into<String>,
        jwks: impl Into<String>,
    ) -> AuthSetup {
        self.keys = Some(ConfiguredKeys {
            private_key: private_key_pem.into(),
            jwks: Some(jwks.into()),
        });
        self.jwks_without_key = false;
        self
    }

    /// Absolute lifetime of a session.
    pub fn session_lifetime(mut self, lifetime: Duration) -> AuthSetup {
        self.lifetimes.session_total = lifetime;
        self
    }

    /// How long a refresh token may go unused (the inactivity limit of a sign-in).
    pub fn refresh_token_lifetime(mut self, lifetime: Duration) -> AuthSetup {
        self.lifetimes.session_inactive = lifetime;
        self
    }

    /// How long a used refresh token may be presented again and still work (10 s).
    pub fn refresh_reuse_window(mut self, window: Duration) -> AuthSetup {
        self.lifetimes.refresh_reuse_window = window;
        self
    }

    /// Lifetime of access tokens (1 hour).
    pub fn jwt_lifetime(mut self, lifetime: Duration) -> AuthSetup {
        self.lifetimes.jwt = lifetime;
        self
    }

    /// Lifetime of the one-time code of an OAuth sign-in (2 minutes).
    pub fn oauth_code_lifetime(mut self, lifetime: Duration) -> AuthSetup {
        self.lifetimes.oauth_code = lifetime;
        self
    }

    /// How long an OAuth sign-in may take between `auth:signIn` and the callback before
    /// its verifier is cleaned up (15 minutes, the lifetime of the sign-in cookies).
    pub fn verifier_lifetime(mut self, lifetime: Duration) -> AuthSetup {
        self.lifetimes.verifier = lifetime;
        self
    }

    /// The lifetimes in force.
    pub fn lifetimes(&self) -> &Lifetimes {
        &self.lifetimes
    }

    /// The configured providers.
    pub fn configured_providers(&self) -> &[OAuthProvider] {
        &self.providers
    }

    /// The sign-in tables (`users`, `authAccounts`, `authSessions`, `authRefreshTokens`,
    /// `authVerifiers`, `authVerificationCodes`, `authRateLimits`) with Convex Auth's fields
    /// and indexes, to add to the app's schema.
    pub fn tables(&self) -> Vec<conflux_db::TableDef> {
        crate::signin::tables::table_defs()
    }

    /// Check everything that can be checked without the server: lifetimes, providers,
    /// URLs. Returns the site URL.
    pub(crate) fn check(&self) -> Result<String> {
        let mut problems = self.problems.clone();
        let site = self
            .site_url
            .clone()
            .unwrap_or_else(|| DEFAULT_SITE_URL.to_owned());
        if let Err(err) = Url::parse(&site) {
            problems.push(format!("SITE_URL `{site}` is not a URL: {err}"));
        }
        if let Some(custom) = &self.custom_auth_site_url {
            if let Err(err) = Url::parse(custom) {
                problems.push(format!(
                    "CUSTOM_AUTH_SITE_URL `{custom}` is not a URL: {err}"
                ));
            }
        }
        for provider in &self.providers {
            if let Err(err) = provider.check() {
                problems.push(
                    err.message()
                        .trim_start_matches("Invalid sign-in configuration: ")
                        .to_owned(),
                );
            }
        }
        let lifetimes = &self.lifetimes;
        for (name, value) in [
            ("the session lifetime", lifetimes.session_total),
            ("the refresh token lifetime", lifetimes.session_inactive),
            ("the access token lifetime", lifetimes.jwt),
            ("the OAuth code lifetime", lifetimes.oauth_code),
        ] {
            if value.is_zero() {
                problems.push(format!("{name} must be longer than zero"));
            }
        }
        if lifetimes.jwt < Duration::from_secs(10) {
            problems.push(
                "the access token lifetime must be at least 10 seconds (clients refresh a few \
                 seconds before expiry)"
                    .to_owned(),
            );
        }
        if problems.is_empty() {
            Ok(site)
        } else {
            Err(setup_error(problems.join("; ")))
        }
    }
}

enum Lifetime {
    SessionTotal,
    SessionInactive,
}

/// What [`AuthSetup::install`] needs from the server.
#[derive(Clone, Debug)]
pub struct InstallContext {
    /// The data folder (dev-mode signing keys are kept in `auth-keys.json` there).
    pub data_dir: PathBuf,
    /// The public origins; our tokens' issuer is the site origin (`CONVEX_SITE_URL`).
    pub origins: conflux_http::Origins,
    /// Dev mode: generate signing keys when none are configured, and give reasons in
    /// responses.
    pub dev_mode: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_of_convex_auth_configures_google_and_any_oidc_provider() -> Result<()> {
        let setup = AuthSetup::from_vars([
            ("SITE_URL", "https://app.example.com"),
            ("AUTH_GOOGLE_ID", "g-id"),
            ("AUTH_GOOGLE_SECRET", "g-secret"),
            ("AUTH_MY_IDP_ISSUER", "https://idp.example.com"),
            ("AUTH_MY_IDP_ID", "idp-id"),
            ("AUTH_MY_IDP_SECRET", "idp-secret"),
            ("AUTH_SESSION_TOTAL_DURATION_MS", "60000"),
            ("AUTH_SESSION_INACTIVE_DURATION_MS", "30000"),
        ])?;
        let ids: Vec<&str> = setup
            .configured_providers()
            .iter()
            .map(OAuthProvider::id)
            .collect();
        assert_eq!(ids, vec!["google", "my-idp"]);
        assert_eq!(setup.configured_providers()[0].issuer(), GOOGLE_ISSUER);
        assert_eq!(setup.lifetimes().session_total, Duration::from_secs(60));
        assert_eq!(setup.lifetimes().session_inactive, Duration::from_secs(30));
        assert_eq!(setup.check()?, "https://app.example.com");
        Ok(())
    }

    #[test]
    fn mistakes_are_reported_with_the_variable_to_fix() {
        let err = AuthSetup::from_vars([("AUTH_GOOGLE_ID", "g-id")]).err();
        assert!(err.is_some_and(|err| err.message().contains("AUTH_GOOGLE_SECRET")));
        let err = AuthSetup::from_vars([("AUTH_SESSION_TOTAL_DURATION_MS", "soon")]).err();
        assert!(err.is_some_and(|err| err.message().contains("AUTH_SESSION_TOTAL_DURATION_MS")));
        let insecure = AuthSetup::new()
            .provider(OAuthProvider::oidc(
                "corp",
                "http://idp.example.com",
                "c",
                "s",
            ))
            .check()
            .err()
            .map(|err| err.message().to_owned())
            .unwrap_or_default();
        assert!(insecure.contains("must use https"), "{insecure}");
        let twice = AuthSetup::new()
            .provider(OAuthProvider::google("a", "b"))
            .provider(OAuthProvider::google("c", "d"))
            .check();
        assert!(twice.is_err());
    }
}
