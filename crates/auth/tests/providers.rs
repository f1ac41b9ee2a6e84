//! Tokens from each kind of configured issuer are accepted and turned into the identity
//! functions see: an OpenID Connect provider (through discovery and its JWKS), custom JWT
//! issuers (JWKS URL, `data:` URL, inline JWKS) and our own tokens (in memory, no HTTP).

mod common;

use std::collections::HashMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use conflux_auth::{
    AuthConfig, Check, CustomJwtProvider, JwksSource, JwtValidator, OidcProvider, OwnIssuer,
    SigningAlgorithm, StepOutcome,
};
use conflux_common::{ErrorCode, TokenValidator};
use conflux_local_oidc::{KidHeader, LocalOidcConfig, SignOptions, TestKey, TestUser};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Sign in at the provider like a browser would (authorize with PKCE, then redeem the code)
/// and return the ID token.
async fn sign_in_for_id_token(issuer: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("an HTTP client builds");
    let verifier = "a-pkce-code-verifier-of-at-least-43-characters-long";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let authorize = http
        .get(format!("{issuer}/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", APP),
            ("redirect_uri", "http://127.0.0.1:3000/callback"),
            ("scope", "openid email profile"),
            ("state", "s"),
            ("nonce", "n-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .expect("authorize answers");
    let location = authorize
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .expect("authorize redirects back");
    let query: HashMap<String, String> = url::Url::parse(location)
        .expect("the redirect is a URL")
        .query_pairs()
        .into_owned()
        .collect();
    let tokens: serde_json::Value = http
        .post(format!("{issuer}/token"))
        .basic_auth(APP, Some("app-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", query["code"].as_str()),
            ("redirect_uri", "http://127.0.0.1:3000/callback"),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("token answers")
        .json()
        .await
        .expect("token answers JSON");
    tokens["id_token"].as_str().expect("an id_token").to_owned()
}

#[tokio::test]
async fn a_user_signed_in_at_an_oidc_provider_is_accepted_with_their_profile() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    provider.set_user(TestUser {
        sub: "grace".into(),
        email: "grace@example.com".into(),
        email_verified: true,
        name: "Grace Hopper".into(),
        picture: Some("https://example.com/grace.png".into()),
    });
    let id_token = sign_in_for_id_token(&provider.issuer()).await;
    let validator: Box<dyn TokenValidator> = Box::new(oidc_validator(&provider, test_settings()));

    let identity = validator
        .validate(&id_token)
        .await
        .expect("the ID token is accepted");

    assert_eq!(
        identity.token_identifier,
        format!("{}|grace", provider.issuer())
    );
    assert_eq!(identity.subject, "grace");
    assert_eq!(identity.issuer, provider.issuer());
    let json = identity.to_json();
    assert_eq!(json["email"], "grace@example.com");
    assert_eq!(json["emailVerified"], true);
    assert_eq!(json["name"], "Grace Hopper");
    assert_eq!(json["pictureUrl"], "https://example.com/grace.png");
    for protocol_claim in ["aud", "exp", "iat", "nonce", "auth_time", "picture"] {
        assert!(
            json.get(protocol_claim).is_none(),
            "`{protocol_claim}` must not be in the identity: {json}"
        );
    }
    assert!(identity.expires_at_secs.is_some_and(|exp| exp > now()));
    assert_eq!(provider.discovery_fetch_count(), 1);
    assert_eq!(provider.jwks_fetch_count(), 1);
    provider.shutdown().await;
}

#[tokio::test]
async fn a_custom_jwt_issuer_with_a_jwks_url_gets_flattened_private_claims() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    let issuer = "https://auth.my-company.example";
    let custom = CustomJwtProvider::new(
        issuer,
        JwksSource::parse(&provider.jwks_uri()).expect("a loopback JWKS URL is allowed"),
        SigningAlgorithm::RS256,
    )
    .expect("a valid provider")
    .with_application_id(APP);
    let validator = JwtValidator::builder(AuthConfig::new().with_provider(custom))
        .settings(test_settings())
        .build()
        .expect("the validator builds");
    let token = provider
        .sign_token(with(
            claims(issuer),
            json!({"org": {"id": "o-7", "role": "admin"}}),
        ))
        .expect("signed");

    let identity = validator
        .validate(&token)
        .await
        .expect("the custom JWT is accepted");

    assert_eq!(identity.token_identifier, format!("{issuer}|user-1"));
    let json = identity.to_json();
    assert_eq!(json["org.id"], "o-7");
    assert_eq!(json["org.role"], "admin");
    assert_eq!(
        json["picture"], "https://example.com/ada.png",
        "custom JWT claims keep their names"
    );
    assert!(json.get("pictureUrl").is_none());
    assert_eq!(
        provider.discovery_fetch_count(),
        0,
        "custom JWT issuers have no discovery"
    );
    assert_eq!(provider.jwks_fetch_count(), 1);
    provider.shutdown().await;
}

#[tokio::test]
async fn an_es256_issuer_with_a_data_url_jwks_is_accepted_without_any_fetch() {
    let key = TestKey::es256().expect("a P-256 key");
    let data_url = format!(
        "data:application/json;base64,{}",
        STANDARD.encode(key.jwks().to_string())
    );
    let config = AuthConfig::from_json_str(
        &json!({"providers": [{
            "type": "customJwt", "issuer": "https://es.example", "jwks": data_url,
            "algorithm": "ES256", "applicationID": APP,
        }]})
        .to_string(),
    )
    .expect("the config parses");
    let validator = JwtValidator::new(config).expect("the validator builds");
    let token = key.sign(&claims("https://es.example")).expect("signed");

    let identity = validator
        .validate(&token)
        .await
        .expect("the ES256 token is accepted");
    assert_eq!(identity.token_identifier, "https://es.example|user-1");

    let rs_token = TestKey::rsa_blocking(0)
        .expect("key")
        .sign(&claims("https://es.example"))
        .expect("signed");
    assert_rejected(
        validator.validate(&rs_token).await,
        ErrorCode::TokenAlgorithmNotAllowed,
        "algorithm RS256 not allowed for provider `CustomJWT(issuer=https://es.example, app_id=app)` (allowed: ES256)",
    );
}

#[tokio::test]
async fn an_eddsa_issuer_with_an_inline_jwks_in_the_config_file_is_accepted() {
    let key = TestKey::ed25519().expect("an Ed25519 key");
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("auth.config.json");
    std::fs::write(
        &path,
        json!({"providers": [{
            "type": "customJwt", "issuer": "https://ed.example/", "jwks": key.jwks(),
            "algorithm": "EdDSA", "applicationID": APP,
        }]})
        .to_string(),
    )
    .expect("the config file is written");
    let validator =
        JwtValidator::new(AuthConfig::from_file(&path).expect("the file parses")).expect("builds");

    // The configured issuer had a trailing slash, the token's has none: still a match.
    let token = key.sign(&claims("https://ed.example")).expect("signed");
    let identity = validator
        .validate(&token)
        .await
        .expect("the EdDSA token is accepted");
    assert_eq!(identity.issuer, "https://ed.example");
}

#[tokio::test]
async fn our_own_tokens_without_kid_validate_in_memory_with_no_http_request() {
    // The own issuer is the provider's URL: any HTTP round trip would be counted there.
    let provider = start_provider(LocalOidcConfig::default()).await;
    let key = provider.signing_key();
    let own = OwnIssuer::new(
        &provider.issuer(),
        &json!({"keys": [key.public_jwk_without_kid()]}).to_string(),
    )
    .expect("the own JWKS parses");
    // The configuration Convex Auth pushes lists the site as an OIDC provider too.
    let config = AuthConfig::new()
        .with_own_issuer(own)
        .with_provider(OidcProvider::new(&provider.issuer(), "convex").expect("valid"));
    let validator = JwtValidator::new(config).expect("builds");
    let at = now();
    let token = key
        .sign_with(
            &json!({"iss": provider.issuer(), "sub": "u1|s1", "aud": "convex", "iat": at, "exp": at + 3600}),
            &SignOptions { kid: KidHeader::Omit, ..Default::default() },
        )
        .expect("signed");

    let identity = validator
        .validate(&token)
        .await
        .expect("our own token is accepted");

    assert_eq!(identity.subject, "u1|s1");
    assert_eq!(identity.session_id.as_deref(), Some("s1"));
    assert_eq!(
        identity.token_identifier,
        format!("{}|u1|s1", provider.issuer())
    );
    assert_eq!(
        provider.request_count(),
        0,
        "no HTTP request for our own tokens"
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn auth_check_shows_the_unverified_token_and_every_check() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    let at = now();
    let validator = JwtValidator::builder(
        AuthConfig::new().with_provider(OidcProvider::new(&provider.issuer(), APP).expect("valid")),
    )
    .settings(test_settings())
    .clock(fixed_clock(at))
    .build()
    .expect("builds");

    let good = provider
        .sign_token(claims_at(&provider.issuer(), at))
        .expect("signed");
    let report = validator.explain(&good).await;
    assert!(report.accepted(), "{report}");
    let checks: Vec<Check> = report.steps.iter().map(|step| step.check).collect();
    assert_eq!(
        checks,
        vec![
            Check::Decode,
            Check::Issuer,
            Check::Audience,
            Check::Algorithm,
            Check::Key,
            Check::Signature,
            Check::Expiry,
            Check::NotBefore,
            Check::IssuedAt,
            Check::Subject,
        ]
    );
    assert!(report
        .steps
        .iter()
        .all(|step| step.outcome == StepOutcome::Passed));
    let printed = report.to_string();
    assert!(
        printed.contains("Header (decoded, NOT verified):"),
        "{printed}"
    );
    assert!(printed.contains("\"alg\": \"RS256\""), "{printed}");
    assert!(printed.contains("PASS  signature"), "{printed}");
    assert!(printed.contains("Result: ACCEPTED"), "{printed}");
    assert_eq!(
        validator.cached_tokens(),
        0,
        "explaining a token does not cache it"
    );

    let expired = provider
        .sign_token(with(
            claims_at(&provider.issuer(), at),
            json!({"exp": at - 42}),
        ))
        .expect("signed");
    let report = validator.explain(&expired).await;
    let failed = report.failed_step().expect("a failed step");
    assert_eq!(failed.check, Check::Expiry);
    assert!(
        failed.detail.contains("token expired 42 s ago"),
        "{}",
        failed.detail
    );
    let printed = report.to_string();
    assert!(printed.contains("FAIL  expiry"), "{printed}");
    assert!(
        printed.contains("Result: REJECTED with TokenExpired"),
        "{printed}"
    );
    assert!(
        printed.contains("exp = "),
        "exp is shown as a date: {printed}"
    );
    provider.shutdown().await;
}
