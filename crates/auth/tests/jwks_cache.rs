//! The key caches against a real provider: rotations are picked up, storms of unknown kids
//! do not turn into storms of fetches, a provider outage is reported as one (and does not
//! sign out users whose keys are known), and a repeated token costs no fetch at all.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::*;
use conflux_auth::{
    AuthConfig, JwtValidator, OwnIssuer, SessionCache, SessionChecker, ValidatorSettings,
};
use conflux_common::{ErrorCode, Result};
use conflux_local_oidc::{LocalOidcConfig, RetiredKey};
use parking_lot::Mutex;
use serde_json::json;

#[tokio::test]
async fn a_key_rotation_is_picked_up_through_the_unknown_kid_refetch() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    let validator = oidc_validator(&provider, test_settings());
    let before_rotation = provider
        .sign_token(claims(&provider.issuer()))
        .expect("signed");
    validator
        .validate(&before_rotation)
        .await
        .expect("accepted");
    assert_eq!(provider.jwks_fetch_count(), 1);

    let new_kid = provider
        .rotate_keys(RetiredKey::Keep)
        .await
        .expect("rotated");
    let after_rotation = provider
        .sign_token(claims(&provider.issuer()))
        .expect("signed");
    assert!(after_rotation.len() > 10 && new_kid != before_rotation);

    let identity = validator
        .validate(&after_rotation)
        .await
        .expect("the new key is found by a refetch");
    assert_eq!(identity.subject, "user-1");
    assert_eq!(
        provider.jwks_fetch_count(),
        2,
        "exactly one refetch for the new kid"
    );
    assert_eq!(
        provider.discovery_fetch_count(),
        1,
        "the refetch reuses the discovered jwks_uri"
    );
    provider.shutdown().await;
}

/// `count` tokens whose headers name random kids (signatures do not matter: the lookup
/// fails first, which is exactly what a storm exploits).
fn random_kid_tokens(template: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let kid = format!("kid-{:016x}", rand::random::<u64>());
            with_header(template, &json!({"alg": "RS256", "typ": "JWT", "kid": kid}))
        })
        .collect()
}

async fn storm(validator: &JwtValidator, tokens: Vec<String>) {
    let mut tasks = tokio::task::JoinSet::new();
    for token in tokens {
        let validator = validator.clone();
        tasks.spawn(async move { validator.validate(&token).await });
    }
    while let Some(joined) = tasks.join_next().await {
        let result = joined.expect("a validation task completes");
        assert_rejected(result, ErrorCode::TokenUnknownKey, "not in the JWKS of");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_random_kids_causes_at_most_one_jwks_fetch_per_cooldown() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    let settings = ValidatorSettings {
        jwks_refetch_cooldown: Duration::from_millis(400),
        ..test_settings()
    };
    let validator = oidc_validator(&provider, settings);
    let good = provider
        .sign_token(claims(&provider.issuer()))
        .expect("signed");
    validator.validate(&good).await.expect("accepted");
    let before = provider.jwks_fetch_count();

    let started = Instant::now();
    storm(&validator, random_kid_tokens(&good, 1000)).await;
    let first_storm = provider.jwks_fetch_count() - before;
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "the storm must finish within one cooldown for this test to mean anything"
    );
    assert_eq!(
        first_storm, 1,
        "1,000 unknown kids within one cooldown: one refetch"
    );

    // After the cooldown, one more refetch is allowed, and again only one.
    tokio::time::sleep(Duration::from_millis(450)).await;
    storm(&validator, random_kid_tokens(&good, 200)).await;
    assert_eq!(provider.jwks_fetch_count() - before, 2);

    // Tokens with known kids never wait for any of this.
    validator.validate(&good).await.expect("still accepted");
    provider.shutdown().await;
}

#[tokio::test]
async fn an_unknown_kid_within_the_cooldown_says_why_it_was_not_refetched() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    let validator = oidc_validator(&provider, test_settings());
    let good = provider
        .sign_token(claims(&provider.issuer()))
        .expect("signed");
    validator.validate(&good).await.expect("accepted");
    let tokens = random_kid_tokens(&good, 2);
    assert_rejected(
        validator.validate(&tokens[0]).await,
        ErrorCode::TokenUnknownKey,
        "even after refetching it",
    );
    assert_rejected(
        validator.validate(&tokens[1]).await,
        ErrorCode::TokenUnknownKey,
        "not refetched: the last refetch for an unknown kid was 0 s ago; JWKS_REFETCH_COOLDOWN_SECS is 300",
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn a_provider_that_is_down_is_reported_as_down_until_it_is_back() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    provider.set_down(true);
    let validator = oidc_validator(&provider, test_settings());
    let token = provider
        .sign_token(claims(&provider.issuer()))
        .expect("signed");

    let detail = format!(
        "provider `{issuer}` is down: discovery `{issuer}/.well-known/openid-configuration` returned 503 Service Unavailable",
        issuer = provider.issuer()
    );
    assert_rejected(
        validator.validate(&token).await,
        ErrorCode::AuthProviderDiscoveryFailed,
        &detail,
    );
    // Within the retry wait, the failure is answered from memory.
    let fetches = provider.discovery_fetch_count();
    assert_rejected(
        validator.validate(&token).await,
        ErrorCode::AuthProviderDiscoveryFailed,
        "is down",
    );
    assert_eq!(
        provider.discovery_fetch_count(),
        fetches,
        "a down provider is not hammered"
    );

    provider.set_down(false);
    tokio::time::sleep(Duration::from_millis(30)).await;
    validator
        .validate(&token)
        .await
        .expect("accepted once the provider is back");
    provider.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_or_slow_provider_is_reported_with_the_reason() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    provider.set_delay(Duration::from_millis(800));
    let settings = ValidatorSettings {
        jwks_fetch_timeout: Duration::from_millis(100),
        ..test_settings()
    };
    let validator = oidc_validator(&provider, settings);
    let token = provider
        .sign_token(claims(&provider.issuer()))
        .expect("signed");
    assert_rejected(
        validator.validate(&token).await,
        ErrorCode::AuthProviderDiscoveryFailed,
        "did not answer within 100 ms (JWKS_FETCH_TIMEOUT_MS)",
    );
    provider.shutdown().await;

    // Nothing listens on the old port any more.
    let validator = oidc_validator(&provider, test_settings());
    assert_rejected(
        validator.validate(&token).await,
        ErrorCode::AuthProviderDiscoveryFailed,
        &format!(
            "provider `{}` is down: cannot connect to discovery",
            provider.issuer()
        ),
    );
}

#[tokio::test]
async fn known_keys_keep_working_while_the_provider_is_down() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    // Keys expire at once, so every validation tries to refresh them.
    let settings = ValidatorSettings {
        jwks_min_cache: Duration::ZERO,
        jwks_max_cache: Duration::ZERO,
        token_cache_entries: 0,
        ..test_settings()
    };
    let validator = oidc_validator(&provider, settings);
    let token = provider
        .sign_token(claims(&provider.issuer()))
        .expect("signed");
    validator.validate(&token).await.expect("accepted");

    provider.set_down(true);
    let fetches = provider.jwks_fetch_count() + provider.discovery_fetch_count();
    validator
        .validate(&token)
        .await
        .expect("still accepted with the previous keys");
    assert!(
        provider.jwks_fetch_count() + provider.discovery_fetch_count() > fetches,
        "a refresh was attempted"
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn cache_control_is_honoured_within_the_configured_bounds() {
    // The provider says "cache for 0 s"; the validator keeps keys at least a minute.
    let provider = start_provider(LocalOidcConfig {
        jwks_max_age: Some(Duration::ZERO),
        ..LocalOidcConfig::default()
    })
    .await;
    let validator = oidc_validator(&provider, test_settings());
    for _ in 0..3 {
        let token = provider
            .sign_token(claims(&provider.issuer()))
            .expect("signed");
        validator.validate(&token).await.expect("accepted");
    }
    assert_eq!(
        provider.jwks_fetch_count(),
        1,
        "JWKS_MIN_CACHE_SECS wins over max-age=0"
    );
    provider.shutdown().await;

    // The provider says "cache for 300 s"; the validator keeps keys at most 0 s.
    let provider = start_provider(LocalOidcConfig::default()).await;
    let settings = ValidatorSettings {
        jwks_min_cache: Duration::ZERO,
        jwks_max_cache: Duration::ZERO,
        ..test_settings()
    };
    let validator = oidc_validator(&provider, settings);
    for sub in ["a", "b", "c"] {
        let token = provider
            .sign_token(with(claims(&provider.issuer()), json!({"sub": sub})))
            .expect("signed");
        validator.validate(&token).await.expect("accepted");
    }
    assert_eq!(
        provider.jwks_fetch_count(),
        3,
        "JWKS_MAX_CACHE_SECS wins over max-age=300"
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn a_repeated_token_is_answered_from_the_token_cache_without_any_fetch() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    // Keys expire at once: only the token cache can spare a fetch.
    let no_key_cache = ValidatorSettings {
        jwks_min_cache: Duration::ZERO,
        jwks_max_cache: Duration::ZERO,
        ..test_settings()
    };
    let validator = oidc_validator(&provider, no_key_cache.clone());
    let token = provider
        .sign_token(claims(&provider.issuer()))
        .expect("signed");
    let first = validator.validate(&token).await.expect("accepted");
    let fetches = provider.request_count();

    let again = validator.validate(&token).await.expect("accepted again");
    assert_eq!(again, first);
    assert_eq!(
        provider.request_count(),
        fetches,
        "the second validation fetched nothing"
    );
    assert_eq!(validator.cached_tokens(), 1);

    // The same validator without a token cache has to go back to the provider.
    let uncached = oidc_validator(
        &provider,
        ValidatorSettings {
            token_cache_entries: 0,
            ..no_key_cache
        },
    );
    uncached.validate(&token).await.expect("accepted");
    let fetches = provider.request_count();
    uncached.validate(&token).await.expect("accepted");
    assert!(
        provider.request_count() > fetches,
        "without the token cache the keys are fetched again"
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn a_cached_token_stops_working_when_its_token_expires() {
    let provider = start_provider(LocalOidcConfig::default()).await;
    let at = now();
    let clock_secs = Arc::new(Mutex::new(at));
    let clock = clock_secs.clone();
    let validator =
        JwtValidator::builder(AuthConfig::new().with_provider(
            conflux_auth::OidcProvider::new(&provider.issuer(), APP).expect("valid"),
        ))
        .settings(test_settings())
        .clock(Arc::new(move || *clock.lock()))
        .build()
        .expect("builds");
    let token = provider
        .sign_token(claims_at(&provider.issuer(), at))
        .expect("signed");
    validator.validate(&token).await.expect("accepted");

    *clock_secs.lock() = at + 3600 + 60;
    assert_rejected(
        validator.validate(&token).await,
        ErrorCode::TokenExpired,
        "token expired 60 s ago",
    );
    provider.shutdown().await;
}

/// The sessions table of the built-in sign-in, as far as validation needs it.
#[derive(Default)]
struct Sessions {
    active: Mutex<Vec<String>>,
}

#[async_trait]
impl SessionChecker for Sessions {
    async fn is_session_active(&self, session_id: &str) -> Result<bool> {
        Ok(self.active.lock().iter().any(|id| id == session_id))
    }
}

#[tokio::test]
async fn signing_out_ends_our_own_tokens_at_once_even_cached_ones() {
    let key = conflux_local_oidc::TestKey::rsa(0).await.expect("key");
    let site = "https://my-app.example";
    let own = OwnIssuer::new(
        site,
        &json!({"keys": [key.public_jwk_without_kid()]}).to_string(),
    )
    .expect("parses");
    let sessions = Arc::new(Sessions::default());
    sessions.active.lock().push("s1".into());
    let cache = Arc::new(SessionCache::new(
        sessions.clone(),
        1000,
        Duration::from_secs(60),
    ));
    let validator = JwtValidator::builder(AuthConfig::new().with_own_issuer(own))
        .session_checker(cache.clone())
        .build()
        .expect("builds");
    let at = now();
    let token = key
        .sign(&json!({"iss": site, "sub": "u1|s1", "aud": "convex", "iat": at, "exp": at + 3600}))
        .expect("signed");
    let mut ended = conflux_common::TokenValidator::session_events(&validator)
        .expect("a validator with a session cache announces ended sessions");
    let identity = validator
        .validate(&token)
        .await
        .expect("accepted while the session lives");
    assert_eq!(identity.session_id.as_deref(), Some("s1"));
    validator
        .validate(&token)
        .await
        .expect("accepted again, from the cache");

    // Sign-out: the session row is deleted and the cache told.
    sessions.active.lock().clear();
    cache.invalidate("s1");
    let event = ended
        .try_recv()
        .expect("long-lived connections hear of the sign-out");
    assert_eq!(event.session_id, "s1");
    assert_rejected(
        validator.validate(&token).await,
        ErrorCode::SessionEnded,
        "session `s1` of user `u1` has ended",
    );

    let no_session = key
        .sign(&json!({"iss": site, "sub": "u1", "aud": "convex", "iat": at, "exp": at + 3600}))
        .expect("signed");
    assert_rejected(
        validator.validate(&no_session).await,
        ErrorCode::TokenMissingClaim,
        "is not `<userId>|<sessionId>`",
    );
}

#[tokio::test]
async fn an_artificial_delay_holds_every_validation_back() {
    let key = conflux_local_oidc::TestKey::rsa(0).await.expect("key");
    let site = "https://my-app.example";
    let own = OwnIssuer::new(site, &key.jwks().to_string()).expect("parses");
    let validator = JwtValidator::new(AuthConfig::new().with_own_issuer(own))
        .expect("builds")
        .with_artificial_delay(Duration::from_millis(150));
    let at = now();
    let token = key
        .sign(&json!({"iss": site, "sub": "u1|s1", "aud": "convex", "iat": at, "exp": at + 3600}))
        .expect("signed");
    for _ in 0..2 {
        let started = Instant::now();
        validator.validate(&token).await.expect("accepted");
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "cached or not, the delay applies"
        );
    }
    validator.set_artificial_delay(Duration::ZERO);
    let started = Instant::now();
    validator.validate(&token).await.expect("accepted");
    assert!(started.elapsed() < Duration::from_millis(150));
}
