//! The auth race between the OAuth redirect and the socket's authentication, played with
//! real components: the chat example app with the built-in sign-in, a local OpenID
//! provider as Google, a small Node server playing the app's framework
//! (`tests/npm/middleware_server.mjs`) and the official npm `ConvexClient`
//! (`tests/npm/auth_race_client.mjs`), each event stamped on one wall clock.
//!
//! The validation delay knob (`App::auth_validation_delay_for_tests`) holds every socket
//! token validation for 300 ms, so the window between "the client has a token" and "the
//! server confirmed it" is wide and the race reproduces every run, not by luck.
//!
//! - naive mode: what users of today's stacks see. The app's server checks for a cookie
//!   that does not exist yet; a client that subscribes before it authenticates gets
//!   `users:viewer = null` first.
//! - the fixed paths: a client that authenticates at connect receives no signed-out
//!   result at all, and the middleware pattern makes the first request after the
//!   redirect authenticated.
//! - refreshes without churn (no query runs again for a new token of the same session),
//!   a token whose claims changed (it must move the queries that read them), and the
//!   exact error texts `docs/auth-race.md` quotes.
//!
//! The timelines are printed (`cargo test --test auth_race -- --nocapture` shows them).

mod auth_race_support;
#[allow(dead_code)] // the app module has helpers only its own example uses
#[path = "../examples/chat/app.rs"]
mod chat;

use std::time::Duration;

use auth_race_support::{
    follow_to_app, query_param, query_value, Browser, SignInDeployment, SyncSocket, Timeline,
    PATIENCE,
};
use conflux_local_oidc::TestUser;
use conflux_testkit::node::{event_name, NodeScenario, NpmClients};
use serde_json::{json, Value as Json};

/// How long every socket token validation is held: the width of the reproduced window.
const VALIDATION_DELAY: Duration = Duration::from_millis(300);
/// The longest a Node scenario may take.
const SCENARIO: Duration = Duration::from_secs(60);
/// `SITE_URL` of tests whose app server is never visited (the browser stops at the
/// redirect back to the app).
const UNVISITED_APP: &str = "http://localhost:5173";

// ----------------------------------------------------------------------------------------
// The actors
// ----------------------------------------------------------------------------------------

/// Start the framework server in `mode` (`naive` or `middleware`); its URL is the app's
/// origin (`SITE_URL`).
async fn start_framework(npm: &NpmClients, mode: &str) -> (NodeScenario, String) {
    let mut framework = npm
        .spawn("middleware_server", &[mode])
        .expect("the framework server starts");
    let listening = framework
        .wait_for("listening", PATIENCE)
        .await
        .expect("the framework server listens");
    let url = listening["url"].as_str().expect("its URL").to_owned();
    (framework, url)
}

/// Tell the framework server where the deployment is.
async fn configure(framework: &mut NodeScenario, deployment: &SignInDeployment) {
    framework
        .send(&json!({
            "client": deployment.server.client_url(),
            "site": deployment.server.site_url(),
        }))
        .await
        .expect("the configuration is sent");
    framework
        .wait_for("configured", PATIENCE)
        .await
        .expect("the framework server is configured");
}

/// The chat app with every socket token validation held for [`VALIDATION_DELAY`].
fn delayed_chat_app() -> conflux::App {
    chat::chat_app().auth_validation_delay_for_tests(VALIDATION_DELAY)
}

fn events_named<'a>(events: &'a [Json], name: &str) -> Vec<&'a Json> {
    events.iter().filter(|e| event_name(e) == name).collect()
}

/// The `Transition` messages a scenario's client reported receiving, in order.
fn received_transitions(events: &[Json]) -> Vec<&Json> {
    events_named(events, "received")
        .into_iter()
        .filter(|e| e["type"] == "Transition")
        .collect()
}

fn only<'a>(events: &'a [Json], name: &str) -> &'a Json {
    events
        .iter()
        .find(|e| event_name(e) == name)
        .unwrap_or_else(|| panic!("no `{name}` event in {events:?}"))
}

fn at(event: &Json) -> f64 {
    event["t"].as_f64().expect("a timestamped event")
}

/// The frame types the client sent, in order.
fn sent_types(events: &[Json]) -> Vec<String> {
    events_named(events, "sent")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The first `Transition` the client received that moved its identity version.
fn first_confirmation(events: &[Json]) -> &Json {
    events_named(events, "received")
        .into_iter()
        .find(|e| {
            e["type"] == "Transition" && e["endIdentity"].as_u64() > e["startIdentity"].as_u64()
        })
        .unwrap_or_else(|| panic!("no identity confirmation in {events:?}"))
}

/// Put the npm client's events on the timeline.
fn client_moments(timeline: &mut Timeline, events: &[Json]) {
    for event in events {
        let Some(t) = event["t"].as_f64() else {
            continue;
        };
        match event_name(event) {
            "sent" => {
                let what = match event["type"].as_str() {
                    Some("Authenticate") => format!(
                        "→ Authenticate (baseVersion {}, the token)",
                        event["baseVersion"]
                    ),
                    Some("ModifyQuerySet") => format!("→ ModifyQuerySet {}", event["adds"]),
                    Some(other) => format!("→ {other}"),
                    None => continue,
                };
                timeline.at(t, "socket", what);
            }
            "received" if event["type"] == "Transition" => {
                let viewer = match event["viewer"].as_str() {
                    Some("signedOut") => ", users:viewer = null (SIGNED OUT)",
                    Some("signedIn") => ", users:viewer = the user",
                    Some(_) => ", users:viewer failed",
                    None => "",
                };
                let confirms = if event["endIdentity"].as_u64() > event["startIdentity"].as_u64() {
                    " (confirms the identity)"
                } else {
                    ""
                };
                timeline.at(
                    t,
                    "socket",
                    format!(
                        "← Transition identity {}→{}{confirms}{viewer}",
                        event["startIdentity"], event["endIdentity"]
                    ),
                );
            }
            "received" => timeline.at(t, "socket", format!("← {}", event["type"])),
            "viewer" => {
                let value = if event["signedIn"] == true {
                    "the user"
                } else {
                    "null: the page shows \"signed out\""
                };
                timeline.at(t, "client", format!("onUpdate(users:viewer) = {value}"));
            }
            "authState" => timeline.at(
                t,
                "client",
                format!("isAuthenticated = {}", event["isAuthenticated"]),
            ),
            "exchange" => timeline.at(t, "client", "code exchanged: the client has a token"),
            "refreshed" => timeline.at(t, "client", "forced refresh: a new token, same session"),
            _ => {}
        }
    }
}

/// Put the framework server's events on the timeline.
fn framework_moments(timeline: &mut Timeline, events: &[Json]) {
    for event in events {
        let Some(t) = event["t"].as_f64() else {
            continue;
        };
        let what =
            match event_name(event) {
                "request" => format!(
                    "← {} {}{}",
                    event["method"].as_str().unwrap_or_default(),
                    event["path"].as_str().unwrap_or_default(),
                    if event["hadCode"] == true {
                        "?code=…"
                    } else {
                        ""
                    }
                ),
                "check" => format!(
                    "\"is authenticated?\" → {} ({})",
                    event["authenticated"],
                    if event["hadCookie"] == true {
                        "GET /api/auth/session with the cookie's JWT"
                    } else {
                        "no cookie"
                    }
                ),
                "exchange" => {
                    format!(
                "POST /api/auth/token {{code, verifier}} → {}; cookies set, 307 without code",
                if event["ok"] == true { "tokens" } else { "refused" }
            )
                }
                "refresh" => "POST /api/auth/token {refreshToken} → new cookies".to_owned(),
                "signout" => format!(
                    "POST /api/auth/signout → signedOut {}; cookies cleared",
                    event["signedOut"]
                ),
                _ => continue,
            };
        timeline.at(t, "app server", what);
    }
}

// ----------------------------------------------------------------------------------------
// The reproduction
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_mode_the_server_check_and_an_early_subscription_answer_signed_out() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let (mut framework, app_url) = start_framework(&npm, "naive").await;
    let deployment = SignInDeployment::start(delayed_chat_app(), &app_url).await;
    configure(&mut framework, &deployment).await;
    let site = deployment.server.site_url().to_owned();
    let mut timeline = Timeline::default();
    let mut browser = Browser::new();

    // A single-page app: its JavaScript starts the sign-in and keeps the verifier.
    timeline.now(
        "browser",
        "signIn(\"google\") → the sign-in route → Google → callback",
    );
    let (landing, verifier) = deployment
        .google_sign_in(&mut browser, json!({"redirectTo": "/dashboard"}))
        .await;
    let code = query_param(&landing, "code").expect("the app gets a code");
    assert_eq!(landing.path(), "/dashboard");
    assert!(landing.as_str().starts_with(&app_url), "{landing}");

    // The app's first request carries ?code=; the server looks for a cookie.
    timeline.now("browser", "GET /dashboard?code=… (the app's first request)");
    let first_page = browser.get(landing.as_str()).await;
    assert_eq!(first_page.status, 200, "{}", first_page.body);
    assert_eq!(
        first_page.json()["authenticated"],
        json!(false),
        "the naive server check says signed out on the first request"
    );

    // The page's JavaScript: the old client pattern (subscribe, exchange, then setAuth).
    let config = json!({
        "pattern": "subscribe-first",
        "exchange": {"site": site, "code": code, "verifier": verifier},
        "refresh": {"kind": "site", "site": site},
    });
    let client = npm
        .run(
            "auth_race_client",
            &[deployment.server.client_url(), &config.to_string()],
            SCENARIO,
        )
        .await
        .expect("the client scenario runs");

    // A reload: the tokens live in the client's memory, never in a cookie.
    let token = only(&client, "exchange")["token"]
        .as_str()
        .expect("the exchanged token")
        .to_owned();
    timeline.now("browser", "GET /dashboard (a reload after signing in)");
    let reload = browser.get(&format!("{app_url}/dashboard")).await;
    let session = deployment.session(&token).await;
    assert_eq!(
        reload.json()["authenticated"],
        json!(false),
        "the naive check still says signed out"
    );
    assert_eq!(
        session["authenticated"],
        json!(true),
        "while the user holds a valid token: {session}"
    );

    let app = framework
        .finish(SCENARIO)
        .await
        .expect("the framework server stops");
    framework_moments(&mut timeline, &app);
    client_moments(&mut timeline, &client);
    println!(
        "{}",
        timeline.render("Naive mode: the window between the redirect and the confirmation")
    );

    // The server: false on the first request, made with a code that was still unspent.
    let checks = events_named(&app, "check");
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert_eq!(checks[0]["hadCookie"], json!(false));
    assert_eq!(checks[0]["authenticated"], json!(false));
    let requests = events_named(&app, "request");
    assert_eq!(requests[0]["hadCode"], json!(true), "{requests:?}");
    let exchange = only(&client, "exchange");
    assert_eq!(exchange["ok"], json!(true), "the code was valid");
    assert!(
        at(exchange) > at(checks[0]),
        "the code was exchanged after the server had answered signed out"
    );

    // The socket: the old pattern subscribes before it authenticates.
    assert_eq!(
        sent_types(&client),
        ["Connect", "ModifyQuerySet", "Authenticate", "Authenticate"],
        "subscribe first, then the token, then the client's forced refresh"
    );
    let transitions = received_transitions(&client);
    assert_eq!(transitions[0]["endIdentity"], json!(0));
    assert_eq!(
        transitions[0]["viewer"], "signedOut",
        "the first answer ran signed out"
    );

    // The client delivered a signed-out result, then the user once confirmed.
    let summary = only(&client, "summary");
    let viewer = summary["viewer"].as_array().expect("the results");
    assert_eq!(viewer.first(), Some(&json!(false)), "{summary}");
    assert_eq!(viewer.last(), Some(&json!(true)), "{summary}");
    assert!(summary["signedOut"].as_u64() >= Some(1), "{summary}");

    // The window: from the Authenticate to its confirmation, held open by the knob.
    let authenticate = events_named(&client, "sent")
        .into_iter()
        .find(|e| e["type"] == "Authenticate")
        .expect("an Authenticate");
    let confirmation = first_confirmation(&client);
    assert_eq!(confirmation["viewer"], "signedIn");
    let window_ms = at(confirmation) - at(authenticate);
    assert!(
        window_ms >= VALIDATION_DELAY.as_millis() as f64,
        "the window lasts at least the validation delay: {window_ms:.1} ms"
    );
    let signed_in = events_named(&client, "authState")
        .into_iter()
        .find(|e| e["isAuthenticated"] == true)
        .expect("the client ends up authenticated");
    assert!(
        at(signed_in) >= at(confirmation),
        "isAuthenticated stays false for the whole window"
    );
    let signed_out_result = events_named(&client, "viewer")
        .into_iter()
        .find(|e| e["signedIn"] == false)
        .expect("a signed-out result");
    assert!(at(signed_out_result) < at(confirmation));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_authenticates_at_connect_receives_zero_signed_out_results() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let deployment = SignInDeployment::start(delayed_chat_app(), UNVISITED_APP).await;
    let site = deployment.server.site_url().to_owned();
    let mut browser = Browser::new();
    let mut timeline = Timeline::default();
    timeline.now(
        "browser",
        "signIn(\"google\") → the sign-in route → Google → callback",
    );
    let (landing, verifier) = deployment
        .google_sign_in(&mut browser, json!({"redirectTo": "/dashboard"}))
        .await;
    let code = query_param(&landing, "code").expect("the app gets a code");
    timeline.now("browser", "lands on the app with ?code=");

    // setAuth first, with a fetcher that resolves once the code is exchanged; subscribe
    // right after.
    let config = json!({
        "pattern": "auth-first",
        "exchange": {"site": site, "code": code, "verifier": verifier},
        "refresh": {"kind": "site", "site": site},
    });
    let client = npm
        .run(
            "auth_race_client",
            &[deployment.server.client_url(), &config.to_string()],
            SCENARIO,
        )
        .await
        .expect("the client scenario runs");
    client_moments(&mut timeline, &client);
    println!(
        "{}",
        timeline.render("Fixed: the client authenticates at connect (validation held 300 ms)")
    );

    let summary = only(&client, "summary");
    assert_eq!(
        summary["signedOut"],
        json!(0),
        "no signed-out result: {summary}"
    );
    assert!(
        summary["viewer"]
            .as_array()
            .is_some_and(|v| !v.is_empty() && v.iter().all(|r| r == true)),
        "{summary}"
    );
    assert_eq!(
        summary["states"][0],
        json!(true),
        "the first auth state is signed in"
    );
    assert_eq!(
        sent_types(&client),
        ["Connect", "Authenticate", "ModifyQuerySet", "Authenticate"],
        "the token goes before the subscription; the second Authenticate is the refresh"
    );
    // The first Transition confirms the identity and carries the signed-in result.
    let transitions = received_transitions(&client);
    assert_eq!(transitions[0]["startIdentity"], json!(0));
    assert_eq!(transitions[0]["endIdentity"], json!(1));
    assert_eq!(transitions[0]["viewer"], "signedIn");
    // The window is as wide as in naive mode; the client just sees nothing in it.
    let authenticate = events_named(&client, "sent")
        .into_iter()
        .find(|e| e["type"] == "Authenticate")
        .expect("an Authenticate");
    assert!(at(transitions[0]) - at(authenticate) >= VALIDATION_DELAY.as_millis() as f64);

    let metrics = deployment.server.sync().metrics();
    assert_eq!(
        metrics.subscriptions.executions, 1,
        "users:viewer ran once, signed in: never with the anonymous identity, and not again \
         for the refreshed token"
    );
    assert_eq!(metrics.identity_refreshes, 1, "{metrics:?}");
}

// ----------------------------------------------------------------------------------------
// The middleware pattern
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_middleware_pattern_the_first_request_after_the_redirect_is_authenticated() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let (mut framework, app_url) = start_framework(&npm, "middleware").await;
    let deployment = SignInDeployment::start(delayed_chat_app(), &app_url).await;
    configure(&mut framework, &deployment).await;
    let mut timeline = Timeline::default();
    let mut browser = Browser::new();

    // "Sign in with Google": through the framework's proxy, which keeps the verifier in an
    // httpOnly cookie.
    timeline.now("browser", "POST /api/auth {auth:signIn google}");
    let started = browser
        .post_json(
            &format!("{app_url}/api/auth"),
            &json!({"action": "auth:signIn", "args": {"provider": "google", "params": {"redirectTo": "/dashboard"}}}),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let verifier_cookie = started
        .cookie("__convexAuthOAuthVerifier")
        .expect("the verifier cookie");
    assert!(verifier_cookie.has("HttpOnly"), "{verifier_cookie:?}");
    let redirect = started.json()["redirect"]
        .as_str()
        .expect("a redirect")
        .to_owned();
    let landing = follow_to_app(&mut browser, &redirect).await;
    assert!(query_param(&landing, "code").is_some(), "{landing}");

    // The first request with ?code=: the middleware exchanges it and redirects.
    timeline.now("browser", "GET /dashboard?code=… (back from Google)");
    let exchanged = browser.get(landing.as_str()).await;
    assert_eq!(exchanged.status, 307, "{}", exchanged.body);
    let location = exchanged.location_url();
    assert_eq!(location.as_str(), format!("{app_url}/dashboard"));
    for name in ["__convexAuthJWT", "__convexAuthRefreshToken"] {
        let cookie = exchanged.cookie(name).expect("the token cookies are set");
        assert!(
            cookie.has("HttpOnly") && cookie.has("SameSite=Lax") && cookie.has("Path=/"),
            "{cookie:?}"
        );
        assert!(!cookie.clears());
    }
    assert!(exchanged
        .cookie("__convexAuthOAuthVerifier")
        .is_some_and(|cookie| cookie.clears()));

    // The first request after the redirect: authenticated.
    timeline.now(
        "browser",
        "GET /dashboard (follows the 307, with the cookies)",
    );
    let page = browser.get(location.as_str()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let page = page.json();
    assert_eq!(
        page["authenticated"],
        json!(true),
        "the first request after the redirect is authenticated: {page}"
    );
    let token = page["token"]
        .as_str()
        .expect("the page hands its token to the client")
        .to_owned();
    let session = deployment.session(&token).await;
    assert_eq!(page["userId"], session["userId"]);
    assert_eq!(page["sessionId"], session["sessionId"]);

    // The page's client component connects with the server's token: zero signed-out
    // results, and the refresh goes through the framework (the refresh token stays in its
    // httpOnly cookie).
    let config = json!({
        "pattern": "auth-first",
        "token": token,
        "refresh": {
            "kind": "proxy",
            "url": format!("{app_url}/api/auth/refresh"),
            "cookie": browser.cookie_header(&app_url),
        },
    });
    let client = npm
        .run(
            "auth_race_client",
            &[deployment.server.client_url(), &config.to_string()],
            SCENARIO,
        )
        .await
        .expect("the client scenario runs");
    let summary = only(&client, "summary");
    assert_eq!(summary["signedOut"], json!(0), "{summary}");
    assert_eq!(summary["states"][0], json!(true), "{summary}");

    // Another tab, signed in with the same token, to watch the sign-out reach it.
    timeline.now(
        "tab 2",
        "→ Connect, Authenticate, ModifyQuerySet [users:viewer]",
    );
    let mut socket = SyncSocket::connect(deployment.server.client_url()).await;
    socket.authenticate(0, &token).await;
    socket.subscribe(0, &[(0, "users:viewer", json!({}))]).await;
    let signed_in = socket.next().await;
    timeline.now(
        "tab 2",
        "← Transition identity 0→1, users:viewer = the user",
    );
    assert_eq!(signed_in["endVersion"]["identity"], json!(1), "{signed_in}");
    assert_eq!(
        query_value(&signed_in, 0).map(|viewer| &viewer["_id"]),
        Some(&page["userId"])
    );

    // A route handler signs the user out on the server and clears the cookies.
    timeline.now("browser", "POST /api/signout (a route handler)");
    let signed_out = browser
        .post_json(&format!("{app_url}/api/signout"), &json!({}))
        .await;
    assert_eq!(signed_out.status, 200, "{}", signed_out.body);
    assert_eq!(signed_out.json()["signedOut"], json!(true));
    for name in [
        "__convexAuthJWT",
        "__convexAuthRefreshToken",
        "__convexAuthOAuthVerifier",
    ] {
        assert!(
            signed_out
                .cookie(name)
                .is_some_and(|cookie| cookie.clears()),
            "{name} is cleared"
        );
    }
    assert!(browser.cookies_for(&app_url).is_empty());
    // The open socket loses the identity at once, with the text the client acts on.
    let ended = socket.next().await;
    timeline.now(
        "tab 2",
        format!(
            "← {} {}",
            ended["type"].as_str().unwrap_or_default(),
            ended["error"]
        ),
    );
    assert_eq!(ended["type"], "AuthError", "{ended}");
    assert_eq!(ended["error"], conflux_sync::SESSION_ENDED);
    assert_eq!(ended["authUpdateAttempted"], json!(false));
    // The next request, and the token itself, are signed out.
    let after = browser.get(&format!("{app_url}/dashboard")).await;
    assert_eq!(after.json()["authenticated"], json!(false));
    assert_eq!(
        deployment.session(&token).await["authenticated"],
        json!(false)
    );

    let app = framework
        .finish(SCENARIO)
        .await
        .expect("the framework server stops");
    framework_moments(&mut timeline, &app);
    client_moments(&mut timeline, &client);
    println!(
        "{}",
        timeline.render("The middleware pattern: exchange, cookie, authenticated first page")
    );
    let checks = events_named(&app, "check");
    assert_eq!(
        checks[0]["authenticated"],
        json!(true),
        "no check of this story ever said signed out before the sign-out: {checks:?}"
    );
    assert_eq!(checks[0]["hadCookie"], json!(true));
    assert_eq!(only(&app, "exchange")["ok"], json!(true));
    assert_eq!(only(&app, "refresh")["ok"], json!(true));
    assert_eq!(only(&app, "signout")["status"], json!(200));
    assert!(deployment.server.sync().metrics().sessions_ended >= 1);
}

// ----------------------------------------------------------------------------------------
// Refreshes without churn
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_token_for_the_same_session_moves_the_identity_version_without_rerunning() {
    let deployment = SignInDeployment::start(chat::chat_app(), UNVISITED_APP).await;
    let mut browser = Browser::new();
    let (token, refresh_token) = deployment.sign_in_tokens(&mut browser).await;

    // Ten live queries: the viewer and nine channels.
    let mut queries = vec![(0, "users:viewer", json!({}))];
    queries.extend((1..10).map(|id| (id, "messages:list", json!({"channel": format!("c{id}")}))));
    let mut socket = SyncSocket::connect(deployment.server.client_url()).await;
    socket.authenticate(0, &token).await;
    socket.subscribe(0, &queries).await;
    let first = socket.next().await;
    assert_eq!(first["type"], "Transition", "{first}");
    assert_eq!(first["endVersion"]["identity"], json!(1));
    assert_eq!(
        query_value(&first, 0).map(|viewer| &viewer["name"]),
        Some(&json!("Ada Lovelace"))
    );
    let sync = deployment.server.sync();
    assert_eq!(sync.metrics().subscriptions.executions, 10);

    // A refresh: a new token string for the same user and session.
    let (refreshed, _next_refresh) = deployment.refresh(&refresh_token).await;
    assert_ne!(refreshed, token);
    assert_eq!(
        deployment.session(&refreshed).await["sessionId"],
        deployment.session(&token).await["sessionId"]
    );
    let runs_before = deployment.server.runner().executions();
    socket.authenticate(1, &refreshed).await;
    let confirmation = socket.next().await;
    assert_eq!(confirmation["type"], "Transition", "{confirmation}");
    assert_eq!(confirmation["startVersion"]["identity"], json!(1));
    assert_eq!(
        confirmation["endVersion"]["identity"],
        json!(2),
        "the identity version moves, so the npm client confirms the refreshed token"
    );
    assert_eq!(confirmation["modifications"], json!([]));
    assert_eq!(
        deployment.server.runner().executions(),
        runs_before,
        "no function ran for the refresh"
    );
    let metrics = sync.metrics();
    assert_eq!(
        metrics.subscriptions.executions, 10,
        "no query ran again: {metrics:?}"
    );
    assert_eq!(metrics.identity_refreshes, 1);

    // The queries stay live under the refreshed token: a message re-runs its channel only.
    deployment
        .call(
            "mutation",
            "messages:send",
            json!({"body": "still here", "channel": "c3"}),
            Some(&refreshed),
        )
        .await;
    let update = socket.next().await;
    let channel = query_value(&update, 3).expect("channel c3 moved");
    assert_eq!(channel[0]["author"], "Ada Lovelace");
    assert_eq!(channel[0]["body"], "still here");
    assert_eq!(sync.metrics().subscriptions.executions, 11);

    // Another user on the same socket: every query moves, in one Transition.
    deployment.sign_in_as(TestUser {
        sub: "test-user-2".into(),
        email: "grace@example.com".into(),
        name: "Grace Hopper".into(),
        ..TestUser::default()
    });
    let (other, _) = deployment.sign_in_tokens(&mut Browser::new()).await;
    socket.authenticate(2, &other).await;
    let switched = socket.next().await;
    assert_eq!(switched["startVersion"]["identity"], json!(2));
    assert_eq!(switched["endVersion"]["identity"], json!(3));
    assert_eq!(
        query_value(&switched, 0).map(|viewer| &viewer["name"]),
        Some(&json!("Grace Hopper")),
        "the new identity and its results arrive together: {switched}"
    );
    assert_eq!(
        sync.metrics().subscriptions.executions,
        21,
        "all ten queries ran again for the new user"
    );
    assert!(
        socket
            .next_within(Duration::from_millis(200))
            .await
            .is_none(),
        "nothing else follows: the switch took one Transition"
    );
}

// ----------------------------------------------------------------------------------------
// The error texts users meet
// ----------------------------------------------------------------------------------------

/// `GET url` without following redirects: the status and the body.
async fn get_text(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http.get(url).send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The `AuthError` a socket gets for `token` on the deployment at `client_url`.
async fn auth_error_for(client_url: &str, token: &str) -> String {
    let mut socket = SyncSocket::connect(client_url).await;
    socket.authenticate(0, token).await;
    let refused = socket.next().await;
    assert_eq!(refused["type"], "AuthError", "{refused}");
    assert_eq!(refused["authUpdateAttempted"], json!(true), "{refused}");
    refused["error"].as_str().expect("an error text").to_owned()
}

/// Replace what differs between runs (ports, ids) so the texts read as users see them
/// with the default ports.
struct Placeholders(Vec<(String, String)>);

impl Placeholders {
    fn apply(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |text, (real, shown)| {
            text.replace(real, shown)
        })
    }
}

/// Every error text `docs/auth-race.md` quotes, produced by the real components, with
/// what identifies it.
async fn real_error_texts() -> Vec<(&'static str, String)> {
    let deployment = SignInDeployment::start(chat::chat_app(), UNVISITED_APP).await;
    let client = deployment.server.client_url().to_owned();
    let site = deployment.server.site_url().to_owned();
    let http = &deployment.http;
    let mut texts = Vec::new();

    // Problem 2: "No matching routes found" after the redirect.
    let (status, text) = get_text(
        http,
        &format!("{client}/api/auth/callback/google?code=1&state=2"),
    )
    .await;
    assert_eq!(status, 404);
    texts.push(("a callback sent to the client API origin", text));
    let (status, text) = get_text(http, &format!("{site}/api/auth/signin/github?code=1")).await;
    assert_eq!(status, 404);
    texts.push(("a provider that is not configured", text));
    let dir = tempfile::tempdir().expect("a temporary data folder");
    let bare = conflux::App::new("bare")
        .start(&conflux::ServeConfig::for_tests(dir.path()))
        .await
        .expect("an app without sign-in starts");
    let (status, text) = get_text(
        http,
        &format!("{}/api/auth/callback/google?code=1", bare.site_url()),
    )
    .await;
    assert_eq!(status, 404);
    texts.push(("an app without the sign-in", text));

    // Problem 3: the server-side check.
    let response = http
        .get(format!("{site}/api/auth/session"))
        .send()
        .await
        .expect("the site answers");
    texts.push((
        "the session endpoint without a token",
        response.text().await.expect("a body"),
    ));

    // Problem 1: sign-out from server code; the open socket of the session hears it.
    let (status, refused) = deployment
        .post_site("/api/auth/signout", json!({}), None)
        .await;
    assert_eq!(status, 400);
    texts.push(("a sign-out without credentials", refused.to_string()));
    let (token, _refresh) = deployment.sign_in_tokens(&mut Browser::new()).await;
    let session = deployment.session(&token).await;
    let mut socket = SyncSocket::connect(&client).await;
    socket.authenticate(0, &token).await;
    socket.subscribe(0, &[(0, "users:viewer", json!({}))]).await;
    assert_eq!(socket.next().await["endVersion"]["identity"], json!(1));
    let (status, signed_out) = deployment
        .post_site("/api/auth/signout", json!({}), Some(&token))
        .await;
    assert_eq!((status, signed_out), (200, json!({"signedOut": true})));
    let ended = socket.next().await;
    assert_eq!(ended["type"], "AuthError", "{ended}");
    assert_eq!(ended["authUpdateAttempted"], json!(false));
    texts.push((
        "an open socket when its session ends",
        ended["error"].as_str().expect("a text").to_owned(),
    ));
    texts.push((
        "the session endpoint after the sign-out",
        deployment.session(&token).await.to_string(),
    ));

    // Problem 4: tokens the socket refuses.
    texts.push((
        "a token of an ended session",
        auth_error_for(&client, &token).await,
    ));
    texts.push(("not a JWT", auth_error_for(&client, "not-a-jwt").await));
    let foreign = deployment
        .provider
        .sign_token(json!({
            "iss": deployment.provider.issuer(), "sub": "someone", "aud": "convex",
            "iat": 1_700_000_000u64, "exp": 4_000_000_000u64,
        }))
        .expect("the provider signs");
    texts.push((
        "a token of an issuer the app does not trust",
        auth_error_for(&client, &foreign).await,
    ));
    texts.push((
        "an app that trusts no issuer",
        auth_error_for(bare.client_url(), &token).await,
    ));

    let placeholders = Placeholders(vec![
        (client.clone(), "http://127.0.0.1:3210".into()),
        (site.clone(), "http://127.0.0.1:3211".into()),
        (bare.client_url().to_owned(), "http://127.0.0.1:3210".into()),
        (bare.site_url().to_owned(), "http://127.0.0.1:3211".into()),
        (
            deployment.provider.issuer(),
            "https://login.example.com".into(),
        ),
        (
            session["sessionId"].as_str().expect("a session").to_owned(),
            "<sessionId>".into(),
        ),
        (
            session["userId"].as_str().expect("a user").to_owned(),
            "<userId>".into(),
        ),
    ]);
    texts
        .into_iter()
        .map(|(what, text)| (what, placeholders.apply(&text)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_texts_quoted_in_docs_auth_race_md_are_the_ones_users_get() {
    let texts = real_error_texts().await;
    assert!(texts[..3]
        .iter()
        .all(|(_, text)| text.starts_with(conflux_http::NO_MATCHING_ROUTES)));
    assert_eq!(texts[5].1, conflux_sync::SESSION_ENDED);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/auth-race.md");
    let doc = std::fs::read_to_string(path).expect("docs/auth-race.md exists");
    let stale: Vec<String> = texts
        .iter()
        .filter(|(_, text)| !doc.contains(text.as_str()))
        .map(|(what, text)| format!("--- {what}:\n{text}\n"))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/auth-race.md must quote these texts exactly as users get them (default ports, \
         placeholder ids); update the document:\n{}",
        stale.join("\n")
    );
}

// ----------------------------------------------------------------------------------------
// Claims that change within a session
// ----------------------------------------------------------------------------------------

/// A token of `https://tokens.example.com` for `sub` with a `role` claim.
fn role_token(key: &conflux_local_oidc::TestKey, sub: &str, role: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    key.sign(&json!({
        "iss": "https://tokens.example.com", "sub": sub, "aud": "conflux-test",
        "iat": now, "exp": now + 3600, "role": role,
    }))
    .expect("the key signs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_token_of_the_same_user_with_other_claims_moves_the_queries_that_read_them() {
    use conflux::auth::{AuthConfig, CustomJwtProvider, JwksSource, SigningAlgorithm};
    use conflux::{v, Value};

    let key = conflux_local_oidc::TestKey::rsa(0)
        .await
        .expect("a test key");
    let issuer = CustomJwtProvider::new(
        "https://tokens.example.com",
        JwksSource::inline(&key.jwks(), "the test issuer").expect("a JWKS"),
        SigningAlgorithm::RS256,
    )
    .expect("a provider")
    .with_application_id("conflux-test");
    let app = conflux::App::new("roles")
        .query("me:role", v::no_args(), |ctx, _args| {
            let role = ctx
                .auth()
                .user()
                .and_then(|user| user.attributes.get("role"))
                .and_then(|role| role.as_str())
                .map_or(Value::Null, Value::from);
            Ok(role)
        })
        .token_providers(AuthConfig::new().with_provider(issuer));
    let dir = tempfile::tempdir().expect("a temporary data folder");
    let server = app
        .start(&conflux::ServeConfig::for_tests(dir.path()))
        .await
        .expect("the app starts");

    // Ada is a member; her tab subscribes to her role.
    let mut tab = SyncSocket::connect(server.client_url()).await;
    tab.authenticate(0, &role_token(&key, "ada", "member"))
        .await;
    tab.subscribe(0, &[(0, "me:role", json!({}))]).await;
    let first = tab.next().await;
    assert_eq!(query_value(&first, 0), Some(&json!("member")), "{first}");

    // She is made an admin; a second tab signs in with the new token.
    let admin = role_token(&key, "ada", "admin");
    let mut other = SyncSocket::connect(server.client_url()).await;
    other.authenticate(0, &admin).await;
    other.subscribe(0, &[(0, "me:role", json!({}))]).await;
    let other_first = other.next().await;
    assert_eq!(
        query_value(&other_first, 0),
        Some(&json!("admin")),
        "a new connection with the admin token sees the admin role: {other_first}"
    );

    // The first tab gets the new token too (its client refreshed).
    tab.authenticate(1, &admin).await;
    let moved = tab.next().await;
    assert_eq!(moved["endVersion"]["identity"], json!(2), "{moved}");
    assert_eq!(
        query_value(&moved, 0),
        Some(&json!("admin")),
        "the confirmation of the new claims carries the query that reads them: {moved}"
    );
}
