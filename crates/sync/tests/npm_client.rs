//! The official npm client, `convex` 1.48.0 (`ConvexClient` in Node), against a real
//! Conflux server. Each test runs a scenario script from `tests/npm/` and asserts on what
//! the client reported. Skipped with a banner when the npm clients are not installed
//! (`npm ci --prefix tests/npm`), unless `CONFLUX_REQUIRE_NPM` is set.

mod support;

use std::time::Duration;

use conflux_testkit::node::{event_name, NpmClients};
use serde_json::{json, Value as Json};
use support::TestServer;

const SCENARIO_TIMEOUT: Duration = Duration::from_secs(40);

fn event<'a>(events: &'a [Json], name: &str) -> &'a Json {
    events
        .iter()
        .find(|e| event_name(e) == name)
        .unwrap_or_else(|| panic!("no `{name}` event in {events:?}"))
}

#[tokio::test]
async fn npm_client_live_queries_mutations_actions_errors_auth_and_reconnect() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let server = TestServer::start().await;
    let url = server.url();
    let mut scenario = npm.spawn("sync-live", &[&url]).expect("node starts");
    scenario
        .wait_for("ready", SCENARIO_TIMEOUT)
        .await
        .expect("the stories before the restart pass");

    server.sync.disconnect_all();
    server
        .mutate("messages:send", json!({"body": "after the restart"}))
        .await;
    scenario
        .send(&json!({"cmd": "expect", "body": "after the restart"}))
        .await
        .expect("instruction sent");
    scenario
        .wait_for("reconnected", SCENARIO_TIMEOUT)
        .await
        .expect("live updates continue after the server closed the socket");
    let events = scenario
        .finish(SCENARIO_TIMEOUT)
        .await
        .expect("the scenario ends");

    let mutation = event(&events, "mutation");
    assert!(
        mutation["result"].as_str().is_some_and(|id| !id.is_empty()),
        "{mutation}"
    );
    assert_eq!(event(&events, "readYourWrites")["bodies"], json!(["hello"]));
    assert_eq!(event(&events, "live")["bodies"], json!(["hello"]));
    assert_eq!(event(&events, "action")["result"], "HEY");
    let error = event(&events, "convexError");
    assert_eq!(error["thrown"], true);
    assert_eq!(error["isConvexError"], true);
    assert_eq!(error["data"]["code"].as_f64(), Some(42.0));
    let auth = event(&events, "auth");
    assert_eq!(auth["whoami"], "alice");
    assert_eq!(auth["states"][0], true);
    let rejected = event(&events, "rejected");
    assert_eq!(
        rejected["state"], false,
        "the refused token ends signed out"
    );
    assert_eq!(
        rejected["whoami"],
        json!([null]),
        "never signed in as anyone"
    );
    assert!(server.sync.metrics().auth_rejections >= 1);
    let reconnected = event(&events, "reconnected");
    assert_eq!(
        reconnected["bodies"],
        json!(["hello", "hey", "after the restart"])
    );
}

#[tokio::test]
async fn npm_mutation_resent_after_a_server_side_close_is_applied_exactly_once() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let server = TestServer::start().await;
    let started = server.probe.slow_send_started.notified();
    tokio::pin!(started);
    started.as_mut().enable();
    let url = server.url();
    let scenario = npm
        .spawn("sync-exactly-once", &[&url])
        .expect("node starts");
    tokio::time::timeout(SCENARIO_TIMEOUT, started)
        .await
        .expect("the mutation starts running");
    // Kill the socket while the mutation runs: its response is lost with the socket.
    server.sync.disconnect_all();
    let events = scenario
        .finish(SCENARIO_TIMEOUT)
        .await
        .expect("the scenario ends");

    assert!(event(&events, "mutation")["result"].is_string());
    assert_eq!(
        event(&events, "list")["bodies"],
        json!(["exactly once"]),
        "the resent mutation was not applied a second time"
    );
    let metrics = server.sync.metrics();
    assert!(
        metrics.mutations >= 2,
        "the client did resend the mutation on the new socket: {metrics:?}"
    );
}

#[tokio::test]
async fn npm_on_update_callbacks_see_consistent_snapshots_across_two_queries() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let server = TestServer::start().await;
    let url = server.url();
    let events = npm
        .run("sync-snapshots", &[&url, "30"], SCENARIO_TIMEOUT)
        .await
        .expect("the scenario passes");
    let snapshots = event(&events, "snapshots");
    assert_eq!(snapshots["mismatches"], json!([]), "{snapshots}");
    assert_eq!(snapshots["count"], 30.0);
    assert!(
        snapshots["checks"].as_u64().is_some_and(|n| n >= 2),
        "{snapshots}"
    );
}

#[tokio::test]
async fn npm_client_connecting_with_a_valid_token_receives_zero_signed_out_results() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    // The delay holds the token validation long enough that a server evaluating the
    // subscription before the identity would certainly answer it signed out.
    let server = TestServer::start_with(|sync| {
        sync.auth_validation_delay = Some(Duration::from_millis(400));
    })
    .await;
    let url = server.url();
    let events = npm
        .run(
            "sync-auth-at-connect",
            &[&url, "user:alice:s1", "alice"],
            SCENARIO_TIMEOUT,
        )
        .await
        .expect("the scenario passes");
    let results = event(&events, "results");
    assert_eq!(results["signedOut"], 0, "no signed-out result: {results}");
    assert_eq!(results["first"], "alice");
    assert_eq!(results["states"][0], true);
    assert_eq!(
        server.sync.subscriptions.metrics().executions,
        1,
        "the identity query never ran signed out"
    );
}

#[tokio::test]
async fn npm_client_ends_up_signed_out_when_its_sign_in_session_ends() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let server = TestServer::start().await;
    let url = server.url();
    let mut scenario = npm
        .spawn("sync-session-ended", &[&url, "user:alice:s7"])
        .expect("node starts");
    let signed_in = scenario
        .wait_for("signedIn", SCENARIO_TIMEOUT)
        .await
        .expect("the client signs in");
    assert_eq!(signed_in["who"], "alice");
    scenario
        .send(&json!({"cmd": "signOut"}))
        .await
        .expect("instruction sent");
    scenario
        .wait_for("tokenGone", SCENARIO_TIMEOUT)
        .await
        .expect("the fetcher has no token any more");
    server.tokens.end_session("s7");
    let signed_out = scenario
        .wait_for("signedOut", SCENARIO_TIMEOUT)
        .await
        .expect("the client ends up signed out");
    assert_eq!(
        signed_out["states"].as_array().and_then(|s| s.last()),
        Some(&json!(false))
    );
    scenario
        .finish(SCENARIO_TIMEOUT)
        .await
        .expect("the scenario ends");
    assert_eq!(server.sync.metrics().sessions_ended, 1);
}
