//! The official `@convex-dev/auth@0.0.95` client against the built-in sign-in: its
//! `AuthProvider` (the code behind `ConvexAuthProvider` and `useAuthActions`) runs in Node
//! unchanged (`tests/npm/auth_client.mjs`), signs in with Google through the real redirects,
//! exchanges the code, refreshes over `ConvexHttpClient` and signs out.

mod signin_support;

use std::time::Duration;

use conflux_common::ErrorCode;
use conflux_testkit::node::NpmClients;
use serde_json::json;
use signin_support::*;

const STEP: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_official_client_signs_in_refreshes_and_signs_out() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let stack = Stack::start(Options::default()).await;
    let mut client = npm
        .spawn("auth_client", &[&stack.origins.client])
        .expect("the scenario starts");

    let mounted = client
        .wait_for("mounted", STEP)
        .await
        .expect("the provider mounts");
    assert_eq!(mounted["isAuthenticated"], json!(false));
    assert_eq!(mounted["isLoading"], json!(false));

    // signIn("google", {redirectTo: "/dashboard"}): the library stores the verifier and
    // navigates to our sign-in route.
    let started = client
        .wait_for("redirect", STEP)
        .await
        .expect("signIn returns a redirect");
    let redirect = started["redirect"]
        .as_str()
        .expect("a redirect URL")
        .to_owned();
    let verifier = started["storedVerifier"]
        .as_str()
        .expect("the verifier is stored");
    assert_eq!(
        redirect,
        format!(
            "{}/api/auth/signin/google?code={verifier}&redirectTo=%2Fdashboard",
            stack.origins.site
        )
    );
    assert_eq!(
        started["navigatedTo"],
        json!(redirect),
        "window.location was sent there"
    );
    assert_eq!(started["signingIn"], json!(false));

    // The browser's journey through the provider and back.
    let mut browser = Browser::new();
    let to_provider = browser.get(&redirect).await;
    let at_provider = browser
        .get(to_provider.location.as_deref().expect("to the provider"))
        .await;
    let callback = browser
        .get(at_provider.location.as_deref().expect("back to us"))
        .await;
    let landing = callback.location_url();
    assert_eq!(landing.path(), "/dashboard");
    client
        .send(&json!({"landing": landing.as_str()}))
        .await
        .expect("the landing URL is sent");

    // The app loads with ?code=: the library removes it from the URL and exchanges it.
    let signed_in = client
        .wait_for("signedIn", STEP)
        .await
        .expect("the code is exchanged");
    assert_eq!(
        signed_in["urlAfterReplace"],
        json!("/dashboard"),
        "code removed from the URL"
    );
    assert_eq!(
        signed_in["verifierLeft"],
        json!(null),
        "the verifier is used up"
    );
    let token = signed_in["token"]
        .as_str()
        .expect("the JWT is stored")
        .to_owned();
    let refresh = signed_in["refreshToken"]
        .as_str()
        .expect("the refresh token is stored")
        .to_owned();
    let session = stack
        .validate(&token)
        .await
        .expect("the stored token is valid")
        .session_id;

    let viewer = client
        .wait_for("viewer", STEP)
        .await
        .expect("the query runs");
    assert_eq!(viewer["value"]["name"], json!("Ada Lovelace"));

    // fetchAccessToken({forceRefreshToken: true}) rotates over ConvexHttpClient.
    let refreshed = client
        .wait_for("refreshed", STEP)
        .await
        .expect("the refresh runs");
    let new_token = refreshed["token"]
        .as_str()
        .expect("a refreshed JWT")
        .to_owned();
    let new_refresh = refreshed["refreshToken"]
        .as_str()
        .expect("a new refresh token")
        .to_owned();
    assert_ne!(new_token, token);
    assert_ne!(new_refresh, refresh);
    assert_eq!(
        stack.validate(&new_token).await.expect("valid").session_id,
        session
    );

    // signOut(): the library calls auth:signOut with its token and forgets its tokens; the
    // server ends the session, so even the still-unexpired JWT is refused everywhere.
    client.send(&json!({"signOut": true})).await.expect("sent");
    let signed_out = client
        .wait_for("signedOut", STEP)
        .await
        .expect("signed out");
    assert_eq!(signed_out["isAuthenticated"], json!(false));
    assert_eq!(signed_out["storedToken"], json!(null));
    assert_eq!(signed_out["storedRefreshToken"], json!(null));
    let after = client
        .wait_for("afterSignOut", STEP)
        .await
        .expect("a refresh after sign-out");
    assert_eq!(after["token"], json!(null));
    client
        .finish(STEP)
        .await
        .expect("the scenario ends cleanly");

    assert_eq!(
        stack
            .validate(&new_token)
            .await
            .expect_err("signed out")
            .code(),
        ErrorCode::SessionEnded
    );
    let stale = stack
        .sign_in_action(json!({"refreshToken": new_refresh}), None)
        .await;
    assert_eq!(stale, json!({"tokens": null}));
}
