//! Every check of the OAuth sign-in, failing: a forged or crossed `state`, missing cookies,
//! a replayed callback, a replayed code, a code presented with another verifier, an expired
//! code, a tampered ID token, declined consent, a provider error, an issuer mix-up, a
//! `redirectTo` leaving the site (lookalike hosts included), a reused sign-in link, and an
//! unverified email that must not take over an existing user. Each failure returns the
//! browser to the app with `?error=<code>` (never a silent sign-out) or refuses the call,
//! and leaves nothing usable behind.

mod signin_support;

use std::time::Duration;

use conflux_local_oidc::{TestKey, TestUser};
use serde_json::json;
use signin_support::*;
use url::Url;

/// Follow a sign-in up to the provider's redirect back to us: the callback URL, without
/// calling it.
async fn up_to_callback(
    stack: &Stack,
    browser: &mut Browser,
    params: serde_json::Value,
) -> (String, Url) {
    let (redirect, verifier) = start_google(stack, params, None).await;
    let to_provider = browser.get(&redirect).await;
    assert_eq!(to_provider.status, 302, "{}", to_provider.body);
    let at_provider = browser
        .get(to_provider.location.as_deref().expect("a Location"))
        .await;
    assert_eq!(at_provider.status, 302, "{}", at_provider.body);
    (verifier, at_provider.location_url())
}

fn with_query(url: &Url, name: &str, value: &str) -> String {
    let mut changed = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    changed
        .query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(name, value);
    changed.to_string()
}

fn error_of(hop: &Hop) -> Option<String> {
    query_of(&hop.location_url()).get("error").cloned()
}

fn assert_back_with_error(hop: &Hop, code: &str) {
    assert_eq!(hop.status, 302, "{}", hop.body);
    let landing = hop.location_url();
    assert_eq!(
        landing.origin().ascii_serialization(),
        SITE_URL,
        "back to the app"
    );
    assert_eq!(error_of(hop).as_deref(), Some(code), "landing {landing}");
    assert!(
        !query_of(&landing).contains_key("code"),
        "no code on failure"
    );
    assert!(
        hop.set_cookies.iter().filter(|c| c.clears()).count() >= 3,
        "the sign-in cookies are cleared on failure too"
    );
}

#[tokio::test]
async fn a_callback_with_another_state_is_refused_and_burns_the_sign_in() {
    let stack = Stack::start(Options::default()).await;
    let mut browser = Browser::new();
    let (_, callback) = up_to_callback(&stack, &mut browser, json!({})).await;
    let cookies = browser.cookies_for(callback.as_str());

    let forged = browser
        .get(&with_query(&callback, "state", "attacker-chosen-state"))
        .await;
    assert_back_with_error(&forged, "OAuthStateMismatch");

    // Even with the right state and the original cookies replayed, that sign-in is over.
    let replay = get_with_cookies(&stack, callback.as_str(), &cookies).await;
    assert_eq!(replay.0, 302);
    assert_eq!(
        query_of(&replay.1).get("error").map(String::as_str),
        Some("OAuthStateMismatch")
    );
    assert!(!query_of(&replay.1).contains_key("code"));
}

/// GET `url` with exactly these cookies (a replayed request); the status and `Location`.
async fn get_with_cookies(
    stack: &Stack,
    url: &str,
    cookies: &std::collections::HashMap<String, String>,
) -> (u16, Url) {
    let header = cookies
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("; ");
    let response = stack
        .http
        .get(url)
        .header("cookie", header)
        .send()
        .await
        .expect("the site answers");
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a Location")
        .to_owned();
    (
        response.status().as_u16(),
        Url::parse(&location).expect("a URL"),
    )
}

#[tokio::test]
async fn a_callback_without_the_sign_in_cookies_is_refused() {
    let stack = Stack::start(Options::default()).await;
    let mut browser = Browser::new();
    let (_, callback) = up_to_callback(&stack, &mut browser, json!({})).await;
    // The callback is opened in another browser (or the cookies expired).
    let mut other = Browser::new();
    let landed = other.get(callback.as_str()).await;
    assert_back_with_error(&landed, "OAuthStateMismatch");
}

#[tokio::test]
async fn a_replayed_callback_gets_no_second_code() {
    let stack = Stack::start(Options::default()).await;
    let mut browser = Browser::new();
    let (_, callback) = up_to_callback(&stack, &mut browser, json!({})).await;
    let cookies = browser.cookies_for(callback.as_str());
    let first = browser.get(callback.as_str()).await;
    assert!(query_of(&first.location_url()).contains_key("code"));
    // Replay the same request, cookies included.
    let (status, landing) = get_with_cookies(&stack, callback.as_str(), &cookies).await;
    assert_eq!(status, 302);
    assert_eq!(
        query_of(&landing).get("error").map(String::as_str),
        Some("OAuthStateMismatch")
    );
    assert!(!query_of(&landing).contains_key("code"));
}

#[tokio::test]
async fn a_code_works_once_and_only_with_its_own_verifier() {
    let stack = Stack::start(Options::default()).await;
    let mut browser = Browser::new();
    // Another sign-in started elsewhere: its verifier must not redeem our code.
    let (_, other_verifier) = start_google(&stack, json!({}), None).await;
    let finished = google_journey(&stack, &mut browser, json!({})).await;
    let code = finished.code().expect("a code");

    let wrong = stack
        .sign_in_action(
            json!({"params": {"code": code}, "verifier": other_verifier}),
            None,
        )
        .await;
    assert_eq!(
        wrong,
        json!({"tokens": null}),
        "another verifier gets nothing"
    );
    let missing = stack
        .sign_in_action(json!({"params": {"code": code}}), None)
        .await;
    assert_eq!(missing, json!({"tokens": null}), "no verifier gets nothing");

    let right = stack
        .sign_in_action(
            json!({"params": {"code": code}, "verifier": finished.verifier}),
            None,
        )
        .await;
    tokens_of(&right);
    let replayed = stack
        .sign_in_action(
            json!({"params": {"code": code}, "verifier": finished.verifier}),
            None,
        )
        .await;
    assert_eq!(replayed, json!({"tokens": null}), "a code works once");
}

#[tokio::test]
async fn an_expired_code_is_refused_and_deleted() {
    let stack = Stack::start(Options {
        oauth_code_lifetime: Some(Duration::from_millis(300)),
        ..Options::default()
    })
    .await;
    let mut browser = Browser::new();
    let finished = google_journey(&stack, &mut browser, json!({})).await;
    let code = finished.code().expect("a code");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let args = json!({"params": {"code": code}, "verifier": finished.verifier});
    assert_eq!(
        stack.sign_in_action(args.clone(), None).await,
        json!({"tokens": null})
    );
    let report = stack.auth.run_cleanup().await.expect("cleanup runs");
    assert_eq!(
        report.codes_deleted, 0,
        "the refused code was already deleted"
    );
    assert_eq!(
        stack.sign_in_action(args, None).await,
        json!({"tokens": null})
    );
}

#[tokio::test]
async fn an_id_token_signed_with_another_key_is_refused() {
    let stack = Stack::start(Options::default()).await;
    let rogue = TestKey::rsa(7).await.expect("another RSA key");
    stack.provider.forge_id_tokens_with(Some(rogue));
    let mut browser = Browser::new();
    let finished = google_journey(&stack, &mut browser, json!({})).await;
    assert_eq!(
        finished.error().as_deref(),
        Some("OAuthInvalidIdToken"),
        "{}",
        finished.landing
    );
    assert!(finished.code().is_none());
    let (_, viewer) = stack.call("query", "users:viewer", json!({}), None).await;
    assert_eq!(viewer["value"], json!(null));

    // With honest ID tokens again, the same browser signs in.
    stack.provider.forge_id_tokens_with(None);
    let honest = google_journey(&stack, &mut browser, json!({})).await;
    assert!(honest.code().is_some(), "{}", honest.landing);
}

#[tokio::test]
async fn declined_consent_and_provider_errors_come_back_as_error_codes() {
    let stack = Stack::start(Options::default()).await;
    for (error, expected) in [
        ("access_denied", "OAuthAccessDenied"),
        ("server_error", "OAuthProviderError"),
    ] {
        let mut browser = Browser::new();
        let (_, callback) = up_to_callback(&stack, &mut browser, json!({})).await;
        // What the provider sends when the user declines (or it fails): no code, an error,
        // and our state.
        let state = query_of(&callback)["state"].clone();
        let mut denied = Url::parse(&stack.site("/api/auth/callback/google")).expect("a URL");
        denied
            .query_pairs_mut()
            .append_pair("error", error)
            .append_pair("error_description", "The user said no")
            .append_pair("state", &state);
        let landed = browser.get(denied.as_str()).await;
        assert_back_with_error(&landed, expected);
    }
}

#[tokio::test]
async fn a_callback_naming_another_issuer_is_refused() {
    let stack = Stack::start(Options::default()).await;
    let mut browser = Browser::new();
    let (_, callback) = up_to_callback(&stack, &mut browser, json!({})).await;
    let mixed_up = browser
        .get(&with_query(
            &callback,
            "iss",
            "https://idp.attacker.example",
        ))
        .await;
    assert_back_with_error(&mixed_up, "OAuthIssuerMismatch");
}

#[tokio::test]
async fn redirect_to_must_stay_under_the_site() {
    let stack = Stack::start(Options::default()).await;
    for bad in [
        "https://site.example.com.evil.com",
        "https://site.example.com.evil.com/dashboard",
        "https://evil.com",
        "evil.com",
    ] {
        let (status, body) = stack
            .call(
                "action",
                "auth:signIn",
                json!({"provider": "google", "params": {"redirectTo": bad}}),
                None,
            )
            .await;
        assert_eq!(status, 560, "{bad} is refused: {body}");
        let message = body["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains("Invalid `redirectTo`"), "{message}");
    }

    // A sign-in link edited to carry a foreign redirectTo is refused before any cookie.
    let (redirect, _) = start_google(&stack, json!({}), None).await;
    let mut browser = Browser::new();
    let edited = format!(
        "{redirect}&redirectTo={}",
        "https%3A%2F%2Fsite.example.com.evil.com"
    );
    let hop = browser.get(&edited).await;
    assert_eq!(hop.status, 400, "{}", hop.body);
    assert!(hop.location.is_none() && hop.set_cookies.is_empty());

    // A path under the site is where the user lands, with the code.
    let finished = google_journey(
        &stack,
        &mut browser,
        json!({"redirectTo": "/dashboard?tab=chat"}),
    )
    .await;
    assert_eq!(finished.landing.path(), "/dashboard");
    assert_eq!(query_of(&finished.landing)["tab"], "chat");
    assert!(finished.code().is_some());
    assert_eq!(finished.landing.origin().ascii_serialization(), SITE_URL);
}

#[tokio::test]
async fn a_sign_in_link_is_single_use_and_unknown_providers_are_named() {
    let stack = Stack::start(Options::default()).await;
    let (redirect, _) = start_google(&stack, json!({}), None).await;
    let mut browser = Browser::new();
    assert_eq!(browser.get(&redirect).await.status, 302);
    let again = browser.get(&redirect).await;
    assert_eq!(again.status, 400, "{}", again.body);
    let forged = browser
        .get(&stack.site("/api/auth/signin/google?code=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
        .await;
    assert_eq!(forged.status, 400);

    let (status, body) = stack
        .call("action", "auth:signIn", json!({"provider": "github"}), None)
        .await;
    assert_eq!(status, 560);
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("Provider `github` is not configured, available providers are google."),
        "{body}"
    );
    let (status, body) = stack.call("action", "auth:signIn", json!({}), None).await;
    assert_eq!(status, 560);
    assert!(body["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .contains("Missing `provider`, `params.code` or `refreshToken`"));
}

#[tokio::test]
async fn an_unverified_email_never_takes_over_an_existing_user() {
    let stack = Stack::start(Options::default()).await;
    let viewer = |token: String| {
        let stack = &stack;
        async move {
            let (_, body) = stack
                .call("query", "users:viewer", json!({}), Some(&token))
                .await;
            body["value"].clone()
        }
    };

    // Ada signs in with a verified email.
    let mut browser = Browser::new();
    let (ada_token, _) = sign_in_with_google(&stack, &mut browser).await;
    let ada = viewer(ada_token.clone()).await;
    assert!(ada["emailVerificationTime"].is_number());

    // Someone at the provider claims Ada's email without verifying it: a separate user.
    stack.provider.set_user(TestUser {
        sub: "impostor".into(),
        email: "ada@example.com".into(),
        email_verified: false,
        name: "Not Ada".into(),
        picture: None,
    });
    let mut other = Browser::new();
    let (impostor_token, _) = sign_in_with_google(&stack, &mut other).await;
    let impostor = viewer(impostor_token).await;
    assert_ne!(impostor["_id"], ada["_id"], "not linked to Ada");
    assert!(impostor.get("emailVerificationTime").is_none());

    // Ada is untouched.
    assert_eq!(viewer(ada_token.clone()).await, ada);

    let mut third = Browser::new();
    stack.provider.set_user(TestUser {
        sub: "ada-second-account".into(),
        email: "ada@example.com".into(),
        email_verified: true,
        name: "Ada Lovelace".into(),
        picture: None,
    });
    // A second account whose provider verified the same email is linked to Ada.
    let (linked_token, _) = sign_in_with_google(&stack, &mut third).await;
    let linked = viewer(linked_token).await;
    assert_eq!(
        linked["_id"], ada["_id"],
        "a verified email links to the existing user"
    );
}

#[tokio::test]
async fn a_callback_posted_as_a_form_completes_the_sign_in() {
    let stack = Stack::start(Options::default()).await;
    let mut browser = Browser::new();
    let (verifier, callback) = up_to_callback(&stack, &mut browser, json!({})).await;
    // Providers using response_mode=form_post (Apple) make the browser POST the response.
    let fields = query_of(&callback);
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let landed = browser
        .post_form(&stack.site("/api/auth/callback/google"), &form)
        .await;
    assert_eq!(landed.status, 302, "{}", landed.body);
    let code = query_of(&landed.location_url())
        .get("code")
        .cloned()
        .expect("a code");
    let value = stack
        .sign_in_action(
            json!({"params": {"code": code}, "verifier": verifier}),
            None,
        )
        .await;
    tokens_of(&value);
}

#[tokio::test]
async fn a_provider_that_is_down_sends_the_user_back_with_an_error() {
    let stack = Stack::start(Options::default()).await;
    stack.provider.set_down(true);
    let (redirect, _) = start_google(&stack, json!({"redirectTo": "/welcome"}), None).await;
    let mut browser = Browser::new();
    let hop = browser.get(&redirect).await;
    assert_eq!(hop.status, 302, "{}", hop.body);
    let landing = hop.location_url();
    assert_eq!(landing.origin().ascii_serialization(), SITE_URL);
    assert_eq!(landing.path(), "/welcome");
    assert_eq!(
        query_of(&landing).get("error").map(String::as_str),
        Some("OAuthProviderError")
    );
    assert!(hop.set_cookies.is_empty(), "no sign-in was started");
}
