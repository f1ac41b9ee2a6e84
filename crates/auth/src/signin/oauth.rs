//! Talking to an OpenID Connect provider: discovery, the authorization request, the code
//! exchange and the ID token check, with the `openidconnect` crate.
//!
//! Why each piece is here:
//!
//! - **Discovery is cached** ([`knobs::AUTH_OAUTH_METADATA_CACHE_MS`]), one fetch at a time:
//!   Convex Auth fetches Google's discovery document on every sign-in. An ID token signed by
//!   a key we have not seen (the provider rotated its keys) triggers one early refetch, at
//!   most once per cooldown.
//! - **PKCE S256, `state` and `nonce` on every request**, whatever the provider advertises
//!   (Convex Auth sends only PKCE to Google). Storing and comparing them is the caller's job
//!   (cookies and the verifier signature, see `routes`).
//! - **The ID token is verified**: signature by a key of the provider's JWKS (asymmetric
//!   algorithms only, never a MAC keyed with our client secret), issuer, audience, expiry
//!   and nonce, by `openidconnect`. Convex Auth checks the claims but not the signature.
//! - **Plain `http://` issuers only on loopback** (the local test provider); requests never
//!   follow redirects, and have a time limit.

use std::time::{Duration, Instant};

use conflux_common::knobs;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError, TokenResponse,
};
use tokio::sync::Mutex;
use url::Url;

use crate::config::is_loopback;
use crate::signin::store::Profile;

/// Least time between two refetches of a provider's keys caused by an unknown signing key.
const METADATA_REFETCH_COOLDOWN: Duration = Duration::from_secs(60);

/// Asymmetric signature algorithms accepted on ID tokens.
const ID_TOKEN_ALGORITHMS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why an OAuth sign-in failed; each becomes the `?error=` code the app receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OAuthFailure {
    /// The user declined consent (`error=access_denied`).
    AccessDenied(String),
    /// The callback's `state` is missing or not the one this browser started with, or the
    /// sign-in cookies are gone, or the sign-in was already completed (replay).
    StateMismatch(String),
    /// The authorization response names another issuer than the provider's (mix-up).
    IssuerMismatch(String),
    /// The provider failed: discovery, an `error` in the callback, the token exchange.
    ProviderError(String),
    /// The ID token failed verification (signature, issuer, audience, expiry, nonce).
    IdTokenInvalid(String),
    /// The `redirectTo` kept for this sign-in is not under `SITE_URL`.
    InvalidRedirectTo(String),
    /// Our side failed (storage); the cause is logged.
    ServerError(String),
}

impl OAuthFailure {
    /// The code sent to the app in `?error=`.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthFailure::AccessDenied(_) => "OAuthAccessDenied",
            OAuthFailure::StateMismatch(_) => "OAuthStateMismatch",
            OAuthFailure::IssuerMismatch(_) => "OAuthIssuerMismatch",
            OAuthFailure::ProviderError(_) => "OAuthProviderError",
            OAuthFailure::IdTokenInvalid(_) => "OAuthInvalidIdToken",
            OAuthFailure::InvalidRedirectTo(_) => "OAuthInvalidRedirectTo",
            OAuthFailure::ServerError(_) => "OAuthServerError",
        }
    }

    /// What happened, for the log.
    pub fn cause(&self) -> &str {
        match self {
            OAuthFailure::AccessDenied(cause)
            | OAuthFailure::StateMismatch(cause)
            | OAuthFailure::IssuerMismatch(cause)
            | OAuthFailure::ProviderError(cause)
            | OAuthFailure::IdTokenInvalid(cause)
            | OAuthFailure::InvalidRedirectTo(cause)
            | OAuthFailure::ServerError(cause) => cause,
        }
    }
}

/// Every `?error=` code an OAuth failure can produce, for apps that map them to messages.
pub const OAUTH_ERROR_CODES: [&str; 7] = [
    "OAuthAccessDenied",
    "OAuthStateMismatch",
    "OAuthIssuerMismatch",
    "OAuthProviderError",
    "OAuthInvalidIdToken",
    "OAuthInvalidRedirectTo",
    "OAuthServerError",
];

/// The start of an authorization: where to send the browser, and the three secrets the
/// browser must bring back.
pub(crate) struct AuthorizationStart {
    pub url: Url,
    pub pkce_verifier: String,
    pub state: String,
    pub nonce: String,
}

struct CachedMetadata {
    metadata: CoreProviderMetadata,
    fetched_at: Instant,
}

/// One configured provider, with its cached discovery document.
pub(crate) struct ProviderClient {
    id: String,
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    redirect_uri: RedirectUrl,
    http: openidconnect::reqwest::Client,
    metadata: Mutex<Option<CachedMetadata>>,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderClient")
            .field("id", &self.id)
            .field("issuer", &self.issuer.as_str())
            .finish_non_exhaustive()
    }
}

impl ProviderClient {
    /// A client of provider `id` at `issuer` (exactly as the provider spells it) whose
    /// redirect URI is `redirect_uri`.
    pub(crate) fn new(
        id: &str,
        issuer: &str,
        client_id: &str,
        client_secret: Option<&str>,
        redirect_uri: &str,
    ) -> Result<ProviderClient, String> {
        let timeout = Duration::from_millis(*knobs::AUTH_OAUTH_REQUEST_TIMEOUT_MS);
        let builder = openidconnect::reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .user_agent(concat!("conflux-auth/", env!("CARGO_PKG_VERSION")));
        // A local provider must be reachable even behind a system proxy.
        let parsed = Url::parse(issuer).map_err(|err| format!("bad issuer: {err}"))?;
        let builder = if is_loopback(&parsed) {
            builder.no_proxy()
        } else {
            builder
        };
        let http = builder
            .build()
            .map_err(|err| format!("cannot build the HTTP client: {err}"))?;
        // Verbatim: discovery requires the document's `issuer` to be exactly this string
        // (`https://accounts.google.com` has no trailing slash, Auth0's issuers have one).
        let issuer_text = issuer.to_owned();
        Ok(ProviderClient {
            id: id.to_owned(),
            issuer: IssuerUrl::new(issuer_text).map_err(|err| format!("bad issuer: {err}"))?,
            client_id: ClientId::new(client_id.to_owned()),
            client_secret: client_secret.map(|secret| ClientSecret::new(secret.to_owned())),
            redirect_uri: RedirectUrl::new(redirect_uri.to_owned())
                .map_err(|err| format!("bad redirect URI: {err}"))?,
            http,
            metadata: Mutex::new(None),
        })
    }

    /// The provider id (`google`).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The issuer as configured.
    pub(crate) fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The discovery document: cached, or fetched now (one fetch at a time). With
    /// `refresh`, fetched again unless the last fetch was within the cooldown.
    async fn metadata(&self, refresh: bool) -> Result<CoreProviderMetadata, OAuthFailure> {
        let mut cached = self.metadata.lock().await;
        let max_age = Duration::from_millis(*knobs::AUTH_OAUTH_METADATA_CACHE_MS);
        if let Some(entry) = cached.as_ref() {
            let age = entry.fetched_at.elapsed();
            let fresh = if refresh {
                age < METADATA_REFETCH_COOLDOWN
            } else {
                age < max_age
            };
            if fresh {
                return Ok(entry.metadata.clone());
            }
        }
        let discovered = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|err| {
                OAuthFailure::ProviderError(format!(
                    "OpenID discovery of `{}` for provider `{}` failed: {}",
                    self.issuer.as_str(),
                    self.id,
                    error_chain(&err)
                ))
            })?;
        *cached = Some(CachedMetadata {
            metadata: discovered.clone(),
            fetched_at: Instant::now(),
        });
        Ok(discovered)
    }

    fn client(&self, metadata: CoreProviderMetadata) -> OidcClient {
        CoreClient::from_provider_metadata(
            metadata,
            self.client_id.clone(),
            self.client_secret.clone(),
        )
        .set_redirect_uri(self.redirect_uri.clone())
    }

    /// Build the authorization request: PKCE S256, a fresh `state` and `nonce`, scopes
    /// `openid email profile`.
    pub(crate) async fn start(&self) -> Result<AuthorizationStart, OAuthFailure> {
        let client = self.client(self.metadata(false).await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".to_owned()))
            .add_scope(Scope::new("profile".to_owned()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(AuthorizationStart {
            url,
            pkce_verifier: verifier.secret().clone(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// The issuer the discovery document names (to check an `iss` in the callback).
    pub(crate) async fn discovered_issuer(&self) -> Result<String, OAuthFailure> {
        Ok(self.metadata(false).await?.issuer().as_str().to_owned())
    }

    /// Exchange `code` for tokens (client authentication and PKCE verifier included) and
    /// verify the ID token against `nonce`; the user's profile and `sub`.
    pub(crate) async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<(String, Profile), OAuthFailure> {
        let metadata = self.metadata(false).await?;
        let client = self.client(metadata);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|err| {
                OAuthFailure::ProviderError(format!(
                    "provider `{}` has no token endpoint: {err}",
                    self.id
                ))
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|err| {
                let detail = match &err {
                    openidconnect::RequestTokenError::ServerResponse(response) => format!(
                        "{}{}",
                        response.error().as_ref(),
                        response
                            .error_description()
                            .map(|text| format!(": {text}"))
                            .unwrap_or_default()
                    ),
                    other => error_chain(other),
                };
                OAuthFailure::ProviderError(format!(
                    "the token exchange with provider `{}` failed: {detail}",
                    self.id
                ))
            })?;
        let id_token = response.id_token().cloned().ok_or_else(|| {
            OAuthFailure::ProviderError(format!(
                "provider `{}` returned no ID token (is it an OpenID Connect provider, and is \
                 the `openid` scope allowed?)",
                self.id
            ))
        })?;
        match self.verify(client, id_token.clone(), nonce).await {
            Err(VerifyFailure::UnknownKey(_)) => {
                // The provider may have rotated its keys since we fetched them.
                let metadata = self.metadata(true).await?;
                match self.verify(self.client(metadata), id_token, nonce).await {
                    Ok(profile) => Ok(profile),
                    Err(VerifyFailure::UnknownKey(detail) | VerifyFailure::Invalid(detail)) => {
                        Err(OAuthFailure::IdTokenInvalid(detail))
                    }
                }
            }
            Err(VerifyFailure::Invalid(detail)) => Err(OAuthFailure::IdTokenInvalid(detail)),
            Ok(profile) => Ok(profile),
        }
    }

    /// Verify the ID token (CPU-bound signature check: on the blocking pool).
    async fn verify(
        &self,
        client: OidcClient,
        id_token: openidconnect::core::CoreIdToken,
        nonce: &str,
    ) -> Result<(String, Profile), VerifyFailure> {
        let nonce = Nonce::new(nonce.to_owned());
        let provider = self.id.clone();
        let verified = tokio::task::spawn_blocking(move || {
            let verifier = client
                .id_token_verifier()
                .set_allowed_algs(ID_TOKEN_ALGORITHMS);
            id_token.into_claims(&verifier, &nonce)
        })
        .await
        .map_err(|err| VerifyFailure::Invalid(format!("the ID token check task failed: {err}")))?;
        let claims = verified.map_err(|err| {
            let detail = format!(
                "the ID token from provider `{provider}` failed verification: {}",
                error_chain(&err)
            );
            match err {
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                ) => VerifyFailure::UnknownKey(detail),
                _ => VerifyFailure::Invalid(detail),
            }
        })?;
        let profile = Profile {
            email: claims.email().map(|email| email.as_str().to_owned()),
            email_verified: claims.email_verified() == Some(true),
            name: claims
                .name()
                .and_then(|name| name.get(None))
                .map(|name| name.as_str().to_owned()),
            image: claims
                .picture()
                .and_then(|picture| picture.get(None))
                .map(|picture| picture.as_str().to_owned()),
        };
        Ok((claims.subject().as_str().to_owned(), profile))
    }
}

enum VerifyFailure {
    UnknownKey(String),
    Invalid(String),
}

/// An error and its sources, `a: b: c`.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}
