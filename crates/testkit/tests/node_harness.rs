//! The Node harness itself: the pinned clients are installed, and a scenario's events,
//! instructions, failures and hangs reach the Rust test the way the tests rely on.

use std::time::Duration;

use conflux_testkit::node::{event_name, NpmClients};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_pinned_official_clients_are_the_ones_installed() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let events = npm
        .run("selftest", &["unused", "versions"], TIMEOUT)
        .await
        .expect("selftest runs");
    let version = |name: &str| {
        events
            .iter()
            .find(|event| event_name(event) == "installed" && event["name"] == name)
            .and_then(|event| event["version"].as_str())
            .unwrap_or_else(|| panic!("no version reported for {name}: {events:?}"))
            .to_string()
    };
    assert_eq!(version("convex"), "1.48.0");
    assert_eq!(version("@convex-dev/auth"), "0.0.95");
    assert!(
        version("@auth/core").starts_with("0.41."),
        "{}",
        version("@auth/core")
    );
    // Values travel as Convex JSON, so a bigint survives the trip to the test.
    let value = events
        .iter()
        .find(|event| event_name(event) == "value")
        .expect("a value event");
    assert_eq!(
        value["value"],
        json!({"n": {"$integer": "BQAAAAAAAAA="}, "bytes": {"$bytes": "AQI="}})
    );
    assert_eq!(events.last().map(event_name), Some("done"));
}

#[tokio::test]
async fn instructions_reach_the_script_and_its_events_come_back_in_order() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let mut echo = npm.spawn("selftest", &["unused", "echo"]).expect("starts");
    echo.send(&json!({"step": 1})).await.expect("sent");
    let first = echo.next_event(TIMEOUT).await.expect("first echo");
    assert_eq!(first, json!({"event": "echo", "command": {"step": 1}}));
    echo.send(&json!({"step": 2})).await.expect("sent");
    let second = echo.wait_for("echo", TIMEOUT).await.expect("second echo");
    assert_eq!(second["command"], json!({"step": 2}));
    let events = echo.finish(TIMEOUT).await.expect("ends once stdin closes");
    assert_eq!(events.len(), 3, "{events:?}");
}

#[tokio::test]
async fn a_failing_scenario_reports_its_error_and_its_stderr() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let err = npm
        .run("selftest", &["unused", "fail"], TIMEOUT)
        .await
        .expect_err("the scenario fails");
    assert!(
        err.message().contains("the scenario failed on purpose"),
        "{err}"
    );
    assert!(
        err.message().contains("about to fail"),
        "stderr is kept: {err}"
    );
}

#[tokio::test]
async fn a_hanging_scenario_is_stopped_at_the_timeout() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let mut hang = npm.spawn("selftest", &["unused", "hang"]).expect("starts");
    hang.wait_for("hanging", TIMEOUT)
        .await
        .expect("it starts hanging");
    let started = std::time::Instant::now();
    let err = hang
        .finish(Duration::from_millis(300))
        .await
        .expect_err("it never finishes");
    assert!(
        err.message().contains("did not finish within 300ms"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the script was stopped promptly"
    );
}
