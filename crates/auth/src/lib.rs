//! Conflux auth: validating bearer tokens by issuer and JWKS, with exact failure reasons.
//!
//! Why this crate: a token the backend silently rejects is why `<Authenticated>` never
//! renders for so many users. Conflux validates third-party tokens (any OpenID Connect
//! provider, or a custom JWT issuer with a JWKS) and its own, and when it rejects one it says
//! which check failed: in dev mode to the client, always in the log.
//!
//! ```text
//!   AuthConfig (file or code) ──▶ JwtValidator ──implements──▶ conflux_common::TokenValidator
//!        │                            │                              ▲
//!        │ providers, own issuer      │ JWKS cache, token cache       │ used by sync (Authenticate)
//!        ▼                            ▼                              │ and HTTP (Bearer)
//!   OIDC discovery / JWKS URLs    UserIdentity | Error{code, detail}
//! ```
//!
//! - [`config`]: [`AuthConfig`] with [`OidcProvider`], [`CustomJwtProvider`] and
//!   [`OwnIssuer`].
//! - [`validation`]: [`JwtValidator`], the key and token caches, the identity mapping, the
//!   [`SessionChecker`] hook for our own sessions, and [`ValidationReport`] for
//!   `auth check <token>`.
//! - [`signin`]: the built-in sign-in (Convex Auth's server side): [`AuthSetup`] →
//!   [`InstalledAuth`] with the `auth:*` functions, the OAuth and session routes, our own
//!   token issuer and the session checker.

pub mod config;
pub mod signin;
pub mod validation;

pub use config::{
    AuthConfig, CustomJwtProvider, JwksSource, OidcProvider, OwnIssuer, ProviderConfig,
    SigningAlgorithm, OWN_AUDIENCE,
};
pub use signin::{
    auth_session_id, auth_user_id, generate_signing_keys, AuthSetup, CleanupReport, InstallContext,
    InstalledAuth, Lifetimes, OAuthFailure, OAuthProvider, SigningKeys, OAUTH_ERROR_CODES,
};
pub use validation::{
    Check, JwtValidator, JwtValidatorBuilder, SessionCache, SessionChecker, StepOutcome,
    ValidationReport, ValidationStep, ValidatorSettings,
};
