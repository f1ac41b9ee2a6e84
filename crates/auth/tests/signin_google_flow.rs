//! The whole "Sign in with Google" story against a real stack, driven the way the official
//! `@convex-dev/auth` client drives it: `auth:signIn {provider}` over the HTTP API, the
//! browser following each redirect (sign-in route, provider, callback), the code exchange,
//! the token accepted by the validator without any HTTP fetch, the signed-in user's query,
//! refresh rotation, revocation on reuse, and sign-out from server code reaching every
//! holder of the token at once.

mod signin_support;

use std::time::Duration;

use conflux_common::{ErrorCode, TokenValidator};
use serde_json::json;
use signin_support::*;

#[tokio::test]
async fn a_user_signs_in_with_google_and_the_app_sees_them() {
    let stack = Stack::start(Options::default()).await;
    let mut browser = Browser::new();

    // 1. The client asks for a sign-in: {redirect, verifier}.
    let (redirect, verifier) = start_google(&stack, json!({}), None).await;
    assert_eq!(
        redirect,
        format!(
            "{}/api/auth/signin/google?code={verifier}",
            stack.origins.site
        ),
        "the redirect is the site's sign-in route carrying the verifier"
    );

    // 2. The sign-in route sends the browser to the provider with PKCE, state and nonce,
    //    and binds them to the browser with short-lived cookies.
    let to_provider = browser.get(&redirect).await;
    assert_eq!(to_provider.status, 302);
    let authorize = to_provider.location_url();
    assert!(authorize
        .as_str()
        .starts_with(&format!("{}/authorize", stack.provider.issuer())));
    let request = query_of(&authorize);
    assert_eq!(request["response_type"], "code");
    assert_eq!(request["client_id"], GOOGLE_CLIENT_ID);
    assert_eq!(
        request["redirect_uri"],
        stack.site("/api/auth/callback/google")
    );
    assert_eq!(request["code_challenge_method"], "S256");
    assert_eq!(
        request["code_challenge"].len(),
        43,
        "a base64url SHA-256 challenge"
    );
    assert!(request["state"].len() >= 16 && request["nonce"].len() >= 16);
    let scopes: Vec<&str> = request["scope"].split(' ').collect();
    for scope in ["openid", "email", "profile"] {
        assert!(scopes.contains(&scope), "scope {scope} is requested");
    }
    for name in ["googleOAuthpkce", "googleOAuthstate", "googleOAuthnonce"] {
        let cookie = to_provider
            .cookie(name)
            .unwrap_or_else(|| panic!("cookie {name} is set (no __Host- prefix on 127.0.0.1)"));
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=None",
            "Path=/",
            "Partitioned",
            "Max-Age=900",
        ] {
            assert!(cookie.has(attribute), "{name} has {attribute}: {cookie:?}");
        }
    }
    assert_eq!(
        browser.cookies_for(&redirect)["googleOAuthstate"],
        request["state"],
        "the state cookie holds the state sent to the provider"
    );

    // 3. The provider signs the user in and sends the browser to our callback.
    let at_provider = browser.get(authorize.as_str()).await;
    assert_eq!(at_provider.status, 302);
    let back = at_provider.location_url();
    assert!(back
        .as_str()
        .starts_with(&stack.site("/api/auth/callback/google")));

    // 4. The callback checks everything, exchanges the code, and hands a one-time code to
    //    the app, clearing the sign-in cookies.
    let callback = browser.get(back.as_str()).await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    assert_eq!(callback.cache_control.as_deref(), Some("must-revalidate"));
    let landing = callback.location_url();
    assert_eq!(landing.origin().ascii_serialization(), SITE_URL);
    let code = query_of(&landing)["code"].clone();
    assert_eq!(code.len(), 8, "an 8-digit code");
    assert!(code.bytes().all(|b| b.is_ascii_digit()));
    for name in [
        "googleOAuthpkce",
        "googleOAuthstate",
        "googleOAuthnonce",
        "googleRedirectTo",
    ] {
        assert!(
            callback.cookie(name).is_some_and(SetCookie::clears),
            "{name} is cleared by the callback"
        );
    }
    assert!(
        browser.cookies_for(&redirect).is_empty(),
        "no sign-in cookie is left"
    );

    // 5. The app exchanges the code with its verifier.
    let value = stack
        .sign_in_action(
            json!({"params": {"code": code}, "verifier": verifier}),
            None,
        )
        .await;
    let (token, refresh_token) = tokens_of(&value);

    // 6. The token has Convex Auth's exact shape and validates in memory, with its session.
    assert_eq!(jwt_segment(&token, 0), json!({"alg": "RS256"}));
    let claims = jwt_segment(&token, 1);
    assert_eq!(claims["iss"], stack.origins.site.as_str());
    assert_eq!(claims["aud"], "convex");
    let lifetime = claims["exp"].as_u64().unwrap_or(0) - claims["iat"].as_u64().unwrap_or(0);
    assert_eq!(lifetime, 3600, "access tokens live one hour");
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()));
    let requests_before = stack.provider.request_count();
    let identity = stack.validate(&token).await.expect("our token is accepted");
    let (user_id, session_id) = identity
        .subject
        .split_once('|')
        .expect("sub is userId|sessionId");
    assert_eq!(identity.session_id.as_deref(), Some(session_id));
    assert_eq!(identity.issuer, stack.origins.site);
    assert_eq!(refresh_token.split('|').nth(1), Some(session_id));
    assert_eq!(
        stack.provider.request_count(),
        requests_before,
        "validation fetched nothing"
    );

    // 7. The app's query sees the user the provider vouched for.
    let (status, viewer) = stack
        .call("query", "users:viewer", json!({}), Some(&token))
        .await;
    assert_eq!(status, 200, "{viewer}");
    let viewer = &viewer["value"];
    assert_eq!(viewer["_id"], user_id);
    assert_eq!(viewer["name"], "Ada Lovelace");
    assert_eq!(viewer["email"], "ada@example.com");
    assert_eq!(viewer["image"], "https://example.com/ada.png");
    let (_, anonymous) = stack.call("query", "users:viewer", json!({}), None).await;
    assert_eq!(anonymous["value"], json!(null));
    let (_, signed_in) = stack
        .call("query", "auth:isAuthenticated", json!({}), Some(&token))
        .await;
    assert_eq!(signed_in["value"], json!(true));
    let (_, signed_out) = stack
        .call("query", "auth:isAuthenticated", json!({}), None)
        .await;
    assert_eq!(signed_out["value"], json!(false));
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_after_the_window_revokes_the_session() {
    let window = Duration::from_millis(1000);
    let stack = Stack::start(Options {
        refresh_reuse_window: Some(window),
        ..Options::default()
    })
    .await;
    let mut events = stack
        .validator
        .session_events()
        .expect("session events are published");
    let mut browser = Browser::new();
    let (token0, refresh0) = sign_in_with_google(&stack, &mut browser).await;
    let session = stack
        .validate(&token0)
        .await
        .expect("signed in")
        .session_id
        .expect("a session");

    // First use rotates: a new access token and a new refresh token of the same session.
    let (token1, refresh1) = tokens_of(
        &stack
            .sign_in_action(json!({"refreshToken": refresh0}), None)
            .await,
    );
    assert_ne!(token1, token0);
    assert_ne!(refresh1, refresh0);
    assert_eq!(refresh1.split('|').nth(1), Some(session.as_str()));
    assert_eq!(
        stack
            .validate(&token1)
            .await
            .ok()
            .and_then(|i| i.session_id),
        Some(session.clone())
    );

    // A second tab presenting the same token within the window gets the same new refresh
    // token (no fork), and a fresh access token.
    let (token1b, refresh1b) = tokens_of(
        &stack
            .sign_in_action(json!({"refreshToken": refresh0}), None)
            .await,
    );
    assert_eq!(
        refresh1b, refresh1,
        "within the window the current child is handed out again"
    );
    assert_ne!(token1b, token1, "every access token has its own jti");

    // Two tabs refreshing at the same moment both stay signed in, with one refresh token.
    let (first, second) = tokio::join!(
        stack.sign_in_action(json!({"refreshToken": refresh1.clone()}), None),
        stack.sign_in_action(json!({"refreshToken": refresh1.clone()}), None),
    );
    let (_, refresh_a) = tokens_of(&first);
    let (_, refresh_b) = tokens_of(&second);
    assert_eq!(
        refresh_a, refresh_b,
        "concurrent refreshes agree on the next token"
    );

    // The new token keeps rotating.
    let (_token2, refresh2) = tokens_of(
        &stack
            .sign_in_action(json!({"refreshToken": refresh1}), None)
            .await,
    );

    // After the window, presenting the first token again is a replay: the whole session is
    // revoked, its refresh tokens included, and its access tokens are refused at once.
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    let replay = stack
        .sign_in_action(json!({"refreshToken": refresh0}), None)
        .await;
    assert_eq!(replay, json!({"tokens": null}));
    assert!(session_ended_within(&mut events, &session, Duration::from_millis(100)).await);
    let refused = stack
        .validate(&token1)
        .await
        .expect_err("the session was revoked");
    assert_eq!(refused.code(), ErrorCode::SessionEnded);
    let latest = stack
        .sign_in_action(json!({"refreshToken": refresh2}), None)
        .await;
    assert_eq!(
        latest,
        json!({"tokens": null}),
        "the newest refresh token of the family is dead too"
    );
}

#[tokio::test]
async fn sign_out_from_server_code_reaches_every_holder_of_the_token_at_once() {
    let stack = Stack::start(Options::default()).await;
    let mut browser = Browser::new();
    let (token, refresh_token) = sign_in_with_google(&stack, &mut browser).await;
    let session = stack
        .validate(&token)
        .await
        .expect("signed in")
        .session_id
        .expect("a session");
    let mut events = stack
        .validator
        .session_events()
        .expect("session events are published");

    // A Next.js route handler (or any backend) signs the user out with the access token.
    let response = stack
        .http
        .post(stack.site("/api/auth/signout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the site answers");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body, json!({"signedOut": true}));

    // Live sockets learn it within 100 ms; every validation refuses the token from now on,
    // although its exp is an hour away.
    assert!(
        session_ended_within(&mut events, &session, Duration::from_millis(100)).await,
        "SessionEnded reaches listeners within 100 ms"
    );
    let refused = stack.validate(&token).await.expect_err("signed out");
    assert_eq!(refused.code(), ErrorCode::SessionEnded);
    let (status, body) = stack
        .call("query", "users:viewer", json!({}), Some(&token))
        .await;
    assert_eq!(status, 401, "the HTTP API refuses the token: {body}");
    let session_check: serde_json::Value = stack
        .http
        .get(stack.site("/api/auth/session"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the site answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(session_check["authenticated"], json!(false));
    let refresh = stack
        .sign_in_action(json!({"refreshToken": refresh_token}), None)
        .await;
    assert_eq!(
        refresh,
        json!({"tokens": null}),
        "the refresh tokens went with the session"
    );
}

#[tokio::test]
async fn the_sign_out_action_ends_the_callers_session() {
    let stack = Stack::start(Options::default()).await;
    let mut events = stack
        .validator
        .session_events()
        .expect("session events are published");
    let mut browser = Browser::new();
    let (token, _) = sign_in_with_google(&stack, &mut browser).await;
    let session = stack
        .validate(&token)
        .await
        .expect("signed in")
        .session_id
        .expect("a session");

    let (status, body) = stack
        .call("action", "auth:signOut", json!({}), Some(&token))
        .await;
    assert_eq!((status, &body["value"]), (200, &json!(null)), "{body}");
    assert!(session_ended_within(&mut events, &session, Duration::from_millis(100)).await);
    assert_eq!(
        stack.validate(&token).await.expect_err("signed out").code(),
        ErrorCode::SessionEnded
    );
    // Signing out again (the client ignores errors) is harmless.
    let (status, body) = stack.call("action", "auth:signOut", json!({}), None).await;
    assert_eq!((status, &body["value"]), (200, &json!(null)));
}

#[tokio::test]
async fn signing_in_again_replaces_the_callers_previous_session() {
    let stack = Stack::start(Options::default()).await;
    let mut events = stack
        .validator
        .session_events()
        .expect("session events are published");
    let mut browser = Browser::new();
    let (first_token, _) = sign_in_with_google(&stack, &mut browser).await;
    let first = stack
        .validate(&first_token)
        .await
        .expect("signed in")
        .session_id
        .expect("a session");

    // The signed-in client signs in again (e.g. with another account): the code exchange
    // carries its current token, so its old session ends.
    let finished = google_journey(&stack, &mut browser, json!({})).await;
    let value = stack
        .sign_in_action(
            json!({"params": {"code": finished.code()}, "verifier": finished.verifier}),
            Some(&first_token),
        )
        .await;
    let (second_token, _) = tokens_of(&value);
    let second = stack
        .validate(&second_token)
        .await
        .expect("signed in")
        .session_id;
    assert_ne!(second.as_deref(), Some(first.as_str()), "a new session");
    assert!(session_ended_within(&mut events, &first, Duration::from_millis(100)).await);
    assert_eq!(
        stack
            .validate(&first_token)
            .await
            .expect_err("replaced")
            .code(),
        ErrorCode::SessionEnded
    );
}

#[tokio::test]
async fn our_discovery_document_and_jwks_let_a_standard_oidc_validator_accept_our_tokens() {
    let stack = Stack::start(Options::default()).await;
    let mut browser = Browser::new();
    let (token, _) = sign_in_with_google(&stack, &mut browser).await;

    let discovery = stack
        .http
        .get(stack.site("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("the site answers");
    assert_eq!(discovery.status().as_u16(), 200);
    assert!(discovery
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("max-age=15")));
    let document: serde_json::Value = discovery.json().await.expect("JSON");
    assert_eq!(document["issuer"], stack.origins.site.as_str());
    assert_eq!(document["jwks_uri"], stack.site("/.well-known/jwks.json"));
    let jwks: serde_json::Value = stack
        .http
        .get(stack.site("/.well-known/jwks.json"))
        .send()
        .await
        .expect("the site answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        jwks,
        serde_json::from_str::<serde_json::Value>(&stack.auth.jwks_json()).unwrap_or_default()
    );

    // A validator configured like convex/auth.config.ts ({domain: CONVEX_SITE_URL,
    // applicationID: "convex"}) discovers our keys over HTTP and accepts the token.
    let remote = conflux_auth::JwtValidator::new(conflux_auth::AuthConfig::new().with_provider(
        conflux_auth::OidcProvider::new(&stack.origins.site, "convex").expect("a valid domain"),
    ))
    .expect("the validator builds");
    let identity = remote
        .validate(&token)
        .await
        .expect("accepted through discovery");
    assert_eq!(identity.issuer, stack.origins.site);
}
