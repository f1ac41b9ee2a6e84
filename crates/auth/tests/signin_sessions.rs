//! The server-side session endpoints (for Next.js route handlers, middleware and any
//! backend), the background cleanup, and where the signing key comes from.

mod signin_support;

use std::time::Duration;

use base64::Engine;
use conflux_auth::{AuthSetup, InstallContext};
use conflux_common::{ErrorCode, TokenValidator};
use serde_json::{json, Value as Json};
use signin_support::*;

async fn post_json(stack: &Stack, path: &str, body: Json) -> (u16, Json) {
    let response = stack
        .http
        .post(stack.site(path))
        .json(&body)
        .send()
        .await
        .expect("the site answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn session_of(stack: &Stack, token: Option<&str>) -> Json {
    let mut request = stack.http.get(stack.site("/api/auth/session"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the site answers");
    assert_eq!(
        response.status().as_u16(),
        200,
        "the session endpoint always answers 200"
    );
    response.json().await.expect("a JSON body")
}

#[tokio::test]
async fn a_middleware_exchanges_the_code_and_checks_the_session_over_http() {
    let stack = Stack::start(Options::default()).await;
    let mut browser = Browser::new();
    let finished = google_journey(&stack, &mut browser, json!({})).await;
    let code = finished.code().expect("a code");

    // The middleware has no token yet: signed out, with the reason in dev mode.
    let before = session_of(&stack, None).await;
    assert_eq!(before["authenticated"], json!(false));
    assert!(before["reason"]
        .as_str()
        .is_some_and(|r| r.contains("Bearer")));

    // It exchanges ?code= with the verifier it kept, like the browser client would.
    let (status, tokens) = post_json(
        &stack,
        "/api/auth/token",
        json!({"code": code, "verifier": finished.verifier}),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let token = tokens["token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    let refresh = tokens["refreshToken"]
        .as_str()
        .expect("a refresh token")
        .to_owned();

    // The next request carries the token: authenticated, checked locally.
    let requests_before = stack.provider.request_count();
    let session = session_of(&stack, Some(&token)).await;
    let identity = stack.validate(&token).await.expect("valid");
    let (user_id, session_id) = identity.subject.split_once('|').expect("userId|sessionId");
    assert_eq!(session["authenticated"], json!(true));
    assert_eq!(session["userId"], user_id);
    assert_eq!(session["sessionId"], session_id);
    assert_eq!(
        session["expiresAt"],
        json!(identity.expires_at_secs.unwrap_or(0) * 1000)
    );
    assert_eq!(stack.provider.request_count(), requests_before);

    // The code is spent; the refresh token rotates through the same endpoint.
    let (status, replay) = post_json(
        &stack,
        "/api/auth/token",
        json!({"code": code, "verifier": finished.verifier}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(replay["error"], "InvalidCode");
    assert!(
        replay["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unknown")),
        "{replay}"
    );
    let (status, rotated) =
        post_json(&stack, "/api/auth/token", json!({"refreshToken": refresh})).await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["refreshToken"], json!(refresh));

    // Garbage is refused with a reason, never a 500.
    let (status, body) =
        post_json(&stack, "/api/auth/token", json!({"refreshToken": "nope"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("InvalidRefreshToken"))
    );
    let (status, body) = post_json(&stack, "/api/auth/token", json!({})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("BadRequest")));
}

#[tokio::test]
async fn production_answers_give_no_reasons_away() {
    let stack = Stack::start(Options {
        dev_mode: false,
        ..Options::default()
    })
    .await;
    let session = session_of(&stack, Some("not-a-token")).await;
    assert_eq!(session, json!({"authenticated": false}));
    let (status, body) = post_json(
        &stack,
        "/api/auth/token",
        json!({"code": "12345678", "verifier": "x"}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        body["reason"],
        "the code is invalid, expired, already used, or was issued for another verifier",
        "the generic reason only"
    );
}

#[tokio::test]
async fn sign_out_with_a_refresh_token_or_an_expired_access_token() {
    let stack = Stack::start(Options::default()).await;
    let mut events = stack.validator.session_events().expect("session events");

    // With the refresh token, as a server that keeps tokens in cookies would.
    let mut browser = Browser::new();
    let (token, refresh) = sign_in_with_google(&stack, &mut browser).await;
    let session = stack
        .validate(&token)
        .await
        .expect("valid")
        .session_id
        .expect("a session");
    let (status, body) = post_json(
        &stack,
        "/api/auth/signout",
        json!({"refreshToken": refresh}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"signedOut": true})));
    assert!(session_ended_within(&mut events, &session, Duration::from_millis(100)).await);
    let (status, body) = post_json(
        &stack,
        "/api/auth/signout",
        json!({"refreshToken": refresh}),
    )
    .await;
    assert_eq!(
        status, 401,
        "the refresh token died with its session: {body}"
    );
    assert_eq!(body["signedOut"], json!(false));

    // With an access token whose exp has passed: the session must still be endable.
    let (token, _) = sign_in_with_google(&stack, &mut browser).await;
    let claims = jwt_segment(&token, 1);
    let session = stack
        .validate(&token)
        .await
        .expect("valid")
        .session_id
        .expect("a session");
    let expired = sign_own_token(
        &stack,
        json!({
            "sub": claims["sub"], "iss": claims["iss"], "aud": "convex",
            "iat": 1_000_000_000u64, "exp": 1_000_003_600u64,
        }),
    );
    let response = stack
        .http
        .post(stack.site("/api/auth/signout"))
        .bearer_auth(&expired)
        .send()
        .await
        .expect("the site answers");
    assert_eq!(response.status().as_u16(), 200);
    assert!(session_ended_within(&mut events, &session, Duration::from_millis(100)).await);
    assert_eq!(
        stack.validate(&token).await.expect_err("ended").code(),
        ErrorCode::SessionEnded
    );

    // A token we did not sign ends nothing.
    let forged = stack.provider.sign_token(json!({
        "sub": claims["sub"], "iss": claims["iss"], "aud": "convex", "exp": 4_000_000_000u64,
    }));
    let response = stack
        .http
        .post(stack.site("/api/auth/signout"))
        .bearer_auth(forged.expect("signed"))
        .send()
        .await
        .expect("the site answers");
    assert_eq!(response.status().as_u16(), 401);
}

/// A token signed with the deployment's own key (the test configured `JWT_PRIVATE_KEY`).
fn sign_own_token(stack: &Stack, claims: Json) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let pem = stack
        .private_key
        .replace(' ', "\n")
        .replace("BEGIN\nPRIVATE\nKEY", "BEGIN PRIVATE KEY")
        .replace("END\nPRIVATE\nKEY", "END PRIVATE KEY");
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("the test key parses");
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"RS256"}"#),
        b64(claims.to_string().as_bytes())
    );
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::RS256)
            .expect("signed");
    format!("{input}.{signature}")
}

#[tokio::test]
async fn cleanup_ends_expired_sessions_and_removes_spent_rows() {
    let stack = Stack::start(Options {
        session_lifetime: Some(Duration::from_secs(2)),
        refresh_reuse_window: Some(Duration::from_millis(100)),
        verifier_lifetime: Some(Duration::from_millis(200)),
        ..Options::default()
    })
    .await;
    let mut events = stack.validator.session_events().expect("session events");
    let mut browser = Browser::new();
    let (token, refresh) = sign_in_with_google(&stack, &mut browser).await;
    let session = stack
        .validate(&token)
        .await
        .expect("valid")
        .session_id
        .expect("a session");
    // The access token never outlives its session.
    let claims = jwt_segment(&token, 1);
    assert!(claims["exp"].as_u64().unwrap_or(u64::MAX) <= claims["iat"].as_u64().unwrap_or(0) + 2);
    // One rotation leaves a used refresh token behind; one sign-in is abandoned.
    tokens_of(
        &stack
            .sign_in_action(json!({"refreshToken": refresh}), None)
            .await,
    );
    start_google(&stack, json!({}), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let report = stack.auth.run_cleanup().await.expect("cleanup runs");
    assert_eq!(
        report.refresh_tokens_deleted, 1,
        "the used refresh token: {report:?}"
    );
    assert_eq!(
        report.verifiers_deleted, 1,
        "the abandoned sign-in: {report:?}"
    );
    assert_eq!(report.sessions_ended, 0, "the session is still young");

    tokio::time::sleep(Duration::from_millis(2000)).await;
    let report = stack.auth.run_cleanup().await.expect("cleanup runs");
    assert_eq!(report.sessions_ended, 1, "{report:?}");
    assert!(session_ended_within(&mut events, &session, Duration::from_millis(100)).await);
    let report = stack.auth.run_cleanup().await.expect("cleanup runs");
    assert_eq!(
        report,
        conflux_auth::CleanupReport::default(),
        "nothing is left"
    );
}

fn origins() -> conflux_http::Origins {
    conflux_http::Origins::new("http://127.0.0.1:3210", "http://127.0.0.1:3211")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_generates_a_key_pair_once_and_production_requires_one() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let install = |dev_mode: bool| {
        AuthSetup::new().install(InstallContext {
            data_dir: data.path().to_owned(),
            origins: origins(),
            dev_mode,
        })
    };
    let err = install(false).expect_err("production needs keys");
    assert!(
        err.message().contains("JWT_PRIVATE_KEY"),
        "{}",
        err.message()
    );

    let first = install(true).expect("dev mode generates keys");
    let file = data.path().join("auth-keys.json");
    assert!(
        file.is_file(),
        "the generated pair is stored in the data folder"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "only the owner can read the private key");
    }
    let second = install(true).expect("the stored pair is reused");
    assert_eq!(
        first.jwks_json(),
        second.jwks_json(),
        "tokens survive restarts"
    );

    let (private, _) = test_keys().await;
    let stored: Json =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("readable")).expect("JSON");
    let mismatched = AuthSetup::from_vars([
        ("JWT_PRIVATE_KEY", private.as_str()),
        ("JWKS", stored["JWKS"].as_str().expect("a JWKS")),
    ])
    .expect("the variables parse")
    .install(InstallContext {
        data_dir: data.path().to_owned(),
        origins: origins(),
        dev_mode: true,
    })
    .expect_err("a private key with another key's JWKS");
    assert!(
        mismatched.message().contains("do not belong together"),
        "{}",
        mismatched.message()
    );
    let jwks_only = AuthSetup::from_vars([("JWKS", stored["JWKS"].as_str().expect("a JWKS"))])
        .expect("the variables parse")
        .install(InstallContext {
            data_dir: data.path().to_owned(),
            origins: origins(),
            dev_mode: true,
        })
        .expect_err("a JWKS without its private key");
    assert!(
        jwks_only.message().contains("JWT_PRIVATE_KEY is not"),
        "{}",
        jwks_only.message()
    );
}

#[tokio::test]
async fn sessions_ended_by_app_code_or_by_an_administrator_end_everywhere() {
    let stack = Stack::start(Options::default()).await;
    let mut events = stack.validator.session_events().expect("session events");
    let mut browser = Browser::new();

    // App code calls auth:store {type: "signOut"} itself: announced after its commit.
    let (token, _) = sign_in_with_google(&stack, &mut browser).await;
    let session = stack
        .validate(&token)
        .await
        .expect("valid")
        .session_id
        .expect("a session");
    let (status, body) = stack
        .call("action", "app:signOutThroughStore", json!({}), Some(&token))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"]["sessionId"], json!(session));
    assert!(session_ended_within(&mut events, &session, Duration::from_millis(100)).await);
    assert_eq!(
        stack.validate(&token).await.expect_err("ended").code(),
        ErrorCode::SessionEnded
    );

    // An administrator ends every session of a user (two devices).
    let (first, _) = sign_in_with_google(&stack, &mut browser).await;
    let mut phone = Browser::new();
    let (second, _) = sign_in_with_google(&stack, &mut phone).await;
    let user = stack.validate(&first).await.expect("valid");
    let user_id = user
        .subject
        .split_once('|')
        .map(|(u, _)| u.to_owned())
        .expect("userId|sessionId");
    stack
        .auth
        .end_sessions_of_user(&user_id)
        .await
        .expect("sessions ended");
    for token in [first, second] {
        assert_eq!(
            stack.validate(&token).await.expect_err("ended").code(),
            ErrorCode::SessionEnded
        );
    }
}
