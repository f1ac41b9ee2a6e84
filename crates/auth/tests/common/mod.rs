//! Shared setup of the token validation tests: a real OpenID provider on loopback, a
//! validator configured for it, claim builders and the dev/production message check.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use conflux_auth::{AuthConfig, JwtValidator, OidcProvider, ValidatorSettings};
use conflux_common::{Error, ErrorCode, Result, UserIdentity};
use conflux_local_oidc::{LocalOidcConfig, LocalOidcProvider, TestClient};
use serde_json::{json, Value as Json};

/// The client id the provider issues tokens for and the validator expects.
pub const APP: &str = "app";

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// A clock pinned at `secs`.
pub fn fixed_clock(secs: u64) -> conflux_auth::validation::Clock {
    Arc::new(move || secs)
}

/// Settings for tests: short fetch timeouts and retry waits, everything else default.
pub fn test_settings() -> ValidatorSettings {
    ValidatorSettings {
        jwks_fetch_timeout: Duration::from_secs(2),
        jwks_fetch_retry: Duration::from_millis(20),
        ..ValidatorSettings::default()
    }
}

/// A provider with client `app` registered.
pub async fn start_provider(config: LocalOidcConfig) -> LocalOidcProvider {
    LocalOidcProvider::start(LocalOidcConfig {
        clients: vec![TestClient {
            client_id: APP.into(),
            client_secret: "app-secret".into(),
            redirect_uris: vec!["http://127.0.0.1:3000/callback".into()],
        }],
        ..config
    })
    .await
    .expect("the local OpenID provider starts")
}

/// A validator trusting `provider` as an OIDC provider for `app`.
pub fn oidc_validator(provider: &LocalOidcProvider, settings: ValidatorSettings) -> JwtValidator {
    let config = AuthConfig::new().with_provider(
        OidcProvider::new(&provider.issuer(), APP)
            .expect("the provider's issuer is a valid domain"),
    );
    JwtValidator::builder(config)
        .settings(settings)
        .build()
        .expect("the validator builds")
}

/// Claims of a token for `app` from `issuer`, valid for an hour from `at`.
pub fn claims_at(issuer: &str, at: u64) -> Json {
    json!({
        "iss": issuer,
        "sub": "user-1",
        "aud": APP,
        "iat": at,
        "exp": at + 3600,
        "email": "ada@example.com",
        "email_verified": true,
        "name": "Ada Lovelace",
        "picture": "https://example.com/ada.png",
    })
}

/// [`claims_at`] now.
pub fn claims(issuer: &str) -> Json {
    claims_at(issuer, now())
}

/// `claims` with `changes` applied (a `null` removes the claim).
pub fn with(mut claims: Json, changes: Json) -> Json {
    if let (Some(target), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
        for (name, value) in changes {
            if value.is_null() {
                target.remove(name);
            } else {
                target.insert(name.clone(), value.clone());
            }
        }
    }
    claims
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `token` with its header replaced by `header` (the signature is kept, so it no longer
/// matches: what an attacker who cannot sign would send).
pub fn with_header(token: &str, header: &Json) -> String {
    let mut parts = token.splitn(2, '.');
    let _ = parts.next();
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        parts.next().unwrap_or_default()
    )
}

/// Check that `result` is a rejection with `code` whose dev-mode message carries
/// `detail_fragment` and whose production message does not (it is the bare public
/// message). Returns the error for further checks.
#[track_caller]
pub fn assert_rejected(
    result: Result<UserIdentity>,
    code: ErrorCode,
    detail_fragment: &str,
) -> Error {
    let err = match result {
        Ok(identity) => panic!(
            "the token was accepted as `{}`, but it must be rejected with {code}",
            identity.token_identifier
        ),
        Err(err) => err,
    };
    assert_eq!(err.code(), code, "wrong code for: {err}");
    assert_eq!(
        err.code().http_status(),
        401,
        "auth failures answer HTTP 401"
    );
    let dev = err.client_message(true);
    assert!(
        dev.contains(detail_fragment),
        "the dev-mode message must say {detail_fragment:?}; it is {dev:?}"
    );
    let production = err.client_message(false);
    assert_eq!(
        production,
        err.message(),
        "production clients get the public message only"
    );
    assert!(
        !production.contains(detail_fragment),
        "the production message must not reveal {detail_fragment:?}: {production:?}"
    );
    err
}
