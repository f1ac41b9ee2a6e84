//! Every rejection tells the developer exactly what to fix in dev mode, and tells a
//! production client only the short public message of its code.

mod common;

use common::*;
use conflux_auth::{AuthConfig, JwtValidator, OidcProvider};
use conflux_common::ErrorCode;
use conflux_local_oidc::{KidHeader, LocalOidcConfig, RetiredKey, SignOptions};
use serde_json::json;

const AT: u64 = 1_800_000_000;

/// What production clients see for each code: stable, and free of any detail.
fn public_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::TokenMalformed => "Could not parse JWT payload. Check that the token is a valid JWT format with three base64-encoded parts separated by dots.",
        ErrorCode::NoAuthProvider => "No auth provider found matching the given token",
        ErrorCode::TokenAudienceMismatch => "The token's audience does not match the auth provider's applicationID",
        ErrorCode::TokenExpired => "The token has expired",
        ErrorCode::TokenNotYetValid => "The token is not valid yet",
        ErrorCode::TokenMissingClaim => "The token lacks a required claim",
        ErrorCode::TokenSignatureInvalid => "Could not verify the token's signature",
        ErrorCode::TokenAlgorithmNotAllowed => "The token's signing algorithm is not allowed",
        ErrorCode::TokenUnknownKey => "Could not find the key that signed the token",
        ErrorCode::AuthProviderDiscoveryFailed => "Could not fetch the auth provider's keys",
        other => panic!("no public message expected for {other}"),
    }
}

#[tokio::test]
async fn each_failure_has_its_code_a_public_message_and_a_dev_detail_that_says_what_to_fix() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    let issuer = provider.issuer();
    let validator = JwtValidator::builder(
        AuthConfig::new().with_provider(OidcProvider::new(&issuer, APP).expect("valid")),
    )
    .settings(test_settings())
    .clock(fixed_clock(AT))
    .build()
    .expect("builds");
    let first_kid = provider.signing_key().kid().to_owned();
    let second_kid = provider
        .rotate_keys(RetiredKey::Keep)
        .await
        .expect("rotated");
    let good = claims_at(&issuer, AT);
    let sign = |claims| provider.sign_token(claims).expect("signed");
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .expect("signed");
    let unknown_kid = provider
        .signing_key()
        .sign_with(
            &good,
            &SignOptions {
                kid: KidHeader::Custom("k".into()),
                ..Default::default()
            },
        )
        .expect("signed");
    let good_token = sign(good.clone());
    let parts: Vec<&str> = good_token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(with(good.clone(), json!({"sub": "x"}))
            .to_string()
            .as_bytes()),
        parts[2]
    );

    let cases = vec![
        (
            "not.a-jwt".to_owned(),
            ErrorCode::TokenMalformed,
            "the token has 2 segments; a JWT has three base64url parts separated by dots".to_owned(),
        ),
        (
            sign(with(good.clone(), json!({"iss": "https://other.example"}))),
            ErrorCode::NoAuthProvider,
            format!("issuer `https://other.example` matches no provider; configured: OIDC(domain={issuer}, app_id=app)"),
        ),
        (
            sign(with(good.clone(), json!({"aud": "A"}))),
            ErrorCode::TokenAudienceMismatch,
            "audience `A` is not `app`".to_owned(),
        ),
        (
            sign(with(good.clone(), json!({"exp": AT - 42}))),
            ErrorCode::TokenExpired,
            "token expired 42 s ago".to_owned(),
        ),
        (
            sign(with(good.clone(), json!({"nbf": AT + 30}))),
            ErrorCode::TokenNotYetValid,
            "token is not valid for another 30 s".to_owned(),
        ),
        (
            sign(with(good.clone(), json!({"sub": null}))),
            ErrorCode::TokenMissingClaim,
            "the token has no `sub` claim".to_owned(),
        ),
        (
            unknown_kid,
            ErrorCode::TokenUnknownKey,
            format!("kid `k` not in the JWKS of `{}` (keys: {second_kid}, {first_kid})", provider.jwks_uri()),
        ),
        (
            tampered,
            ErrorCode::TokenSignatureInvalid,
            format!("signature invalid for key `{second_kid}` of the JWKS of `{}`", provider.jwks_uri()),
        ),
        (
            hs256,
            ErrorCode::TokenAlgorithmNotAllowed,
            format!("algorithm HS256 not allowed for provider `OIDC(domain={issuer}, app_id=app)` (allowed: RS256, EdDSA)"),
        ),
    ];
    for (token, code, detail) in cases {
        let err = assert_rejected(validator.validate(&token).await, code, &detail);
        assert_eq!(
            err.client_message(false),
            public_message(code),
            "production message of {code}"
        );
        assert_eq!(
            err.client_message(true),
            format!(
                "{}: {}",
                public_message(code),
                err.detail().unwrap_or_default()
            )
        );
    }

    provider.set_down(true);
    let fresh = oidc_validator(&provider, test_settings());
    let err = assert_rejected(
        fresh.validate(&good_token).await,
        ErrorCode::AuthProviderDiscoveryFailed,
        &format!("provider `{issuer}` is down: discovery `{issuer}/.well-known/openid-configuration` returned 503"),
    );
    assert_eq!(
        err.client_message(false),
        public_message(ErrorCode::AuthProviderDiscoveryFailed)
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn with_no_providers_configured_the_message_says_so() {
    let validator = JwtValidator::new(AuthConfig::new()).expect("builds");
    let token = conflux_local_oidc::TestKey::rsa(0)
        .await
        .expect("key")
        .sign(&claims("https://idp.example"))
        .expect("signed");
    assert_rejected(
        validator.validate(&token).await,
        ErrorCode::NoAuthProvider,
        "configured: none (no auth providers are configured; add one to your auth config)",
    );
}

#[tokio::test]
async fn a_misconfigured_domain_is_explained_by_what_discovery_returned() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    let port = provider.addr().port();

    // `localhost` instead of the provider's exact issuer `127.0.0.1`.
    let localhost = format!("http://localhost:{port}");
    let validator = JwtValidator::builder(
        AuthConfig::new().with_provider(OidcProvider::new(&localhost, APP).expect("valid")),
    )
    .settings(test_settings())
    .build()
    .expect("builds");
    let token_for_localhost = provider.sign_token(claims(&localhost)).expect("signed");
    assert_rejected(
        validator.validate(&token_for_localhost).await,
        ErrorCode::AuthProviderDiscoveryFailed,
        &format!(
            "names issuer `{}`, not `{localhost}`; the configured domain must be the provider's exact issuer",
            provider.issuer()
        ),
    );

    // A path that serves no discovery document.
    let tenant = format!("{}/tenant", provider.issuer());
    let validator = JwtValidator::builder(
        AuthConfig::new().with_provider(OidcProvider::new(&tenant, APP).expect("valid")),
    )
    .settings(test_settings())
    .build()
    .expect("builds");
    let token_for_tenant = provider.sign_token(claims(&tenant)).expect("signed");
    assert_rejected(
        validator.validate(&token_for_tenant).await,
        ErrorCode::AuthProviderDiscoveryFailed,
        "returned 404 Not Found; check that the domain in your auth config is the provider's issuer URL",
    );
    provider.shutdown().await;
}
