//! The local provider behaves like a strict OpenID Connect provider: a client that follows
//! the authorization-code flow with PKCE gets a signed ID token for the test user, and every
//! shortcut (no PKCE, wrong verifier, reused code, unregistered redirect) is refused.

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use conflux_local_oidc::{LocalOidcConfig, LocalOidcProvider, RetiredKey, TestClient, TestUser};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

const REDIRECT: &str = "http://127.0.0.1:3000/api/auth/callback/local";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-verifier";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("a reqwest client builds")
}

async fn provider() -> LocalOidcProvider {
    LocalOidcProvider::start(LocalOidcConfig {
        clients: vec![TestClient {
            client_id: "app".into(),
            client_secret: "s3cret".into(),
            redirect_uris: vec![REDIRECT.into()],
        }],
        ..LocalOidcConfig::default()
    })
    .await
    .expect("the provider starts")
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize_url(provider: &LocalOidcProvider, extra: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&format!("{}/authorize", provider.issuer())).expect("url");
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in extra {
            query.append_pair(name, value);
        }
    }
    url.to_string()
}

fn standard_params(challenge: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", "app".into()),
        ("redirect_uri", REDIRECT.into()),
        ("scope", "openid email profile".into()),
        ("state", "st-123".into()),
        ("nonce", "n-456".into()),
        ("code_challenge", challenge.into()),
        ("code_challenge_method", "S256".into()),
    ]
}

/// Run `/authorize` and return the query parameters of the redirect.
async fn authorize(
    provider: &LocalOidcProvider,
    params: &[(&str, String)],
) -> (u16, HashMap<String, String>) {
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let response = http()
        .get(authorize_url(provider, &borrowed))
        .send()
        .await
        .expect("authorize answers");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let query = location
        .map(|location| {
            url::Url::parse(&location)
                .expect("the redirect is a URL")
                .query_pairs()
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    (status, query)
}

async fn redeem(provider: &LocalOidcProvider, form: &[(&str, &str)], basic: bool) -> (u16, Json) {
    let mut request = http()
        .post(format!("{}/token", provider.issuer()))
        .form(form);
    if basic {
        request = request.basic_auth("app", Some("s3cret"));
    }
    let response = request.send().await.expect("token answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("token answers JSON"))
}

fn claims_of(jwt: &str) -> Json {
    let payload = jwt.split('.').nth(1).expect("three segments");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
}

#[tokio::test]
async fn a_client_signs_in_with_code_and_pkce_and_gets_an_id_token_for_the_test_user() {
    let provider = provider().await;
    provider.set_user(TestUser {
        sub: "grace".into(),
        email: "grace@example.com".into(),
        email_verified: true,
        name: "Grace Hopper".into(),
        picture: None,
    });

    let discovery: Json = http()
        .get(format!(
            "{}/.well-known/openid-configuration",
            provider.issuer()
        ))
        .send()
        .await
        .expect("discovery answers")
        .json()
        .await
        .expect("discovery is JSON");
    assert_eq!(discovery["issuer"], provider.issuer());
    assert_eq!(discovery["code_challenge_methods_supported"][0], "S256");
    assert_eq!(discovery["jwks_uri"], provider.jwks_uri());

    let (status, redirect) = authorize(&provider, &standard_params(&challenge(VERIFIER))).await;
    assert_eq!(status, 302);
    assert_eq!(redirect["state"], "st-123");
    assert_eq!(redirect["iss"], provider.issuer());
    let code = redirect["code"].clone();

    let (status, body) = redeem(
        &provider,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        true,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let claims = claims_of(body["id_token"].as_str().expect("id_token"));
    assert_eq!(claims["iss"], provider.issuer());
    assert_eq!(claims["sub"], "grace");
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["email"], "grace@example.com");
    assert!(claims.get("picture").is_none());

    let userinfo: Json = http()
        .get(format!("{}/userinfo", provider.issuer()))
        .bearer_auth(body["access_token"].as_str().expect("access_token"))
        .send()
        .await
        .expect("userinfo answers")
        .json()
        .await
        .expect("userinfo is JSON");
    assert_eq!(userinfo["name"], "Grace Hopper");

    // The code is single-use, even with client_secret_post and the right verifier.
    let (status, body) = redeem(
        &provider,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", "app"),
            ("client_secret", "s3cret"),
        ],
        false,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn shortcuts_in_the_flow_are_refused() {
    let provider = provider().await;

    // No PKCE: redirected back with an error, never a code.
    let mut no_pkce = standard_params("");
    no_pkce.retain(|(name, _)| !name.starts_with("code_challenge"));
    let (status, redirect) = authorize(&provider, &no_pkce).await;
    assert_eq!(status, 302);
    assert_eq!(redirect["error"], "invalid_request");
    assert!(!redirect.contains_key("code"));

    // plain PKCE is a downgrade.
    let mut plain = standard_params(&challenge(VERIFIER));
    plain.retain(|(name, _)| *name != "code_challenge_method");
    plain.push(("code_challenge_method", "plain".into()));
    let (_, redirect) = authorize(&provider, &plain).await;
    assert_eq!(redirect["error"], "invalid_request");

    // An unregistered redirect URI is never redirected to.
    let mut evil = standard_params(&challenge(VERIFIER));
    evil.retain(|(name, _)| *name != "redirect_uri");
    evil.push(("redirect_uri", "https://evil.example/cb".into()));
    let (status, redirect) = authorize(&provider, &evil).await;
    assert_eq!(status, 400);
    assert!(redirect.is_empty());

    // A wrong verifier burns the code.
    let (_, redirect) = authorize(&provider, &standard_params(&challenge(VERIFIER))).await;
    let code = redirect["code"].clone();
    let wrong_verifier = "x".repeat(43);
    let (status, body) = redeem(
        &provider,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &wrong_verifier),
        ],
        true,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A wrong client secret is invalid_client.
    let (_, redirect) = authorize(&provider, &standard_params(&challenge(VERIFIER))).await;
    let (status, body) = redeem(
        &provider,
        &[
            ("grant_type", "authorization_code"),
            ("code", &redirect["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", "app"),
            ("client_secret", "guess"),
        ],
        false,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn tests_can_take_the_provider_down_rotate_its_keys_and_count_fetches() {
    let provider = provider().await;
    let client = http();
    let jwks_url = provider.jwks_uri();

    let jwks: Json = client
        .get(&jwks_url)
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let first_kid = provider.signing_key().kid().to_owned();
    assert_eq!(jwks["keys"][0]["kid"], first_kid.as_str());
    assert_eq!(provider.jwks_fetch_count(), 1);

    let second_kid = provider
        .rotate_keys(RetiredKey::Keep)
        .await
        .expect("rotation");
    assert_ne!(first_kid, second_kid);
    let kids: Vec<String> = provider.jwks_json()["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["kid"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kids, vec![second_kid.clone(), first_kid.clone()]);
    // Dropping retires the second key at once; the first, kept earlier, stays.
    let third_kid = provider
        .rotate_keys(RetiredKey::Drop)
        .await
        .expect("rotation");
    let kids: Vec<String> = provider.jwks_json()["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["kid"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kids, vec![third_kid, first_kid]);

    provider.set_down(true);
    let status = client
        .get(&jwks_url)
        .send()
        .await
        .expect("answers")
        .status();
    assert_eq!(status.as_u16(), 503);
    provider.set_down(false);

    provider.set_delay(Duration::from_millis(300));
    let slow = client
        .get(&jwks_url)
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    assert!(
        slow.is_err(),
        "a delayed provider makes a short timeout fire"
    );
    assert_eq!(provider.jwks_fetch_count(), 3);
    provider.shutdown().await;

    assert!(
        client.get(&jwks_url).send().await.is_err(),
        "a shut down provider no longer accepts connections"
    );
}
