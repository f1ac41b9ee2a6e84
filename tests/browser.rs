//! The chat example in a real browser: headless Debian Chromium, driven by `playwright-core`
//! (`tests/browser/chat.spec.mjs`), against the example app with the official web clients
//! (`convex/react`, `@convex-dev/auth` 0.0.95) and the local OpenID Connect provider playing
//! Google.
//!
//! The script signs two browser contexts in with "Sign in with Google", checks that a
//! message sent in one appears live in the other, signs the second out from the server
//! (`POST /api/auth/signout`) and checks it is signed out live, and that no page ever showed
//! the signed-in view and a sign-in button together. Screenshots and console logs are kept
//! in `target/browser-artifacts`.
//!
//! What it needs is prepared on first use: the web front-end is built
//! (`npm ci && npm run build` in `examples/chat/web`) when `dist/` is missing, and
//! `tests/browser`'s `node_modules` installed (`npm ci`). Without `/usr/bin/chromium` or
//! Node the test is skipped with a banner, unless `CONFLUX_REQUIRE_BROWSER` is set (CI sets
//! it), which makes that a failure.

#[allow(dead_code)] // helpers only the example's `main` uses
#[path = "../examples/chat/app.rs"]
mod chat;
mod chat_support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chat_support::{
    free_port, local_google, target_dir, test_keys, workspace, GOOGLE_CLIENT_ID,
    GOOGLE_CLIENT_SECRET,
};
use conflux::auth::AuthSetup;
use conflux::ServeConfig;

/// Debian's Chromium, which `.ci/run` installs.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Set (to anything but empty or `0`) to make a missing browser a failure instead of a skip.
const REQUIRE_BROWSER_ENV: &str = "CONFLUX_REQUIRE_BROWSER";
/// The whole browser run; the script gives up after 180 s itself.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);
/// The name the local provider signs in with.
const USER_NAME: &str = "Ada Lovelace";

/// Skip with a banner on the real stderr (test output capture does not swallow it), or
/// fail when the browser test is required.
fn skip(reason: &str) {
    let required =
        std::env::var(REQUIRE_BROWSER_ENV).is_ok_and(|value| !matches!(value.trim(), "" | "0"));
    if required {
        panic!("the browser test cannot run: {reason}; {REQUIRE_BROWSER_ENV} is set, so this is a failure");
    }
    let rule = "=".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{rule}\nSKIPPED the real-browser test of the chat example: {reason}.\n\
         Set {REQUIRE_BROWSER_ENV}=1 to make this a failure.\n{rule}"
    );
}

/// Run `npm <args>` in `dir`; why it failed, if it did.
fn npm(dir: &Path, args: &[&str]) -> Result<(), String> {
    let output = Command::new("npm")
        .args(args)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("could not run npm: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`npm {}` in {} failed with {}:\n{}{}",
            args.join(" "),
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Make `ready` exist by running `steps` in `dir`, once per machine: a mutex serialises
/// this process's tests and a lock directory other test processes.
fn prepare_once(dir: &Path, ready: &Path, what: &str, steps: &[&[&str]]) -> Result<(), String> {
    static PREPARE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = PREPARE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if ready.exists() {
        return Ok(());
    }
    let lock = dir.join(".install-lock");
    let started = std::time::Instant::now();
    loop {
        match std::fs::create_dir(&lock) {
            Ok(()) => break,
            Err(_) if ready.exists() => return Ok(()),
            // A lock older than ten minutes belongs to a killed run.
            Err(_) if started.elapsed() > Duration::from_secs(600) => {
                let _ = std::fs::remove_dir(&lock);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let _ = writeln!(std::io::stderr(), "{what} in {} (once)...", dir.display());
    let result = steps.iter().try_for_each(|args| npm(dir, args));
    let _ = std::fs::remove_dir(&lock);
    result?;
    if ready.exists() {
        Ok(())
    } else {
        Err(format!(
            "{what} finished but {} is still missing",
            ready.display()
        ))
    }
}

/// The built front-end and the browser driver, prepared if missing.
fn prepare() -> Result<(), String> {
    let web = workspace().join("examples/chat/web");
    if !web.join("dist/index.html").is_file() {
        let steps: &[&[&str]] = if web.join("node_modules/vite/package.json").is_file() {
            &[&["run", "build"]]
        } else {
            &[&["ci"], &["run", "build"]]
        };
        prepare_once(
            &web,
            &web.join("dist/index.html"),
            "building the chat example's web front-end (npm ci, npm run build)",
            steps,
        )?;
    }
    let browser = workspace().join("tests/browser");
    prepare_once(
        &browser,
        &browser.join("node_modules/playwright-core/package.json"),
        "installing playwright-core for the browser test (npm ci)",
        &[&["ci", "--ignore-scripts"]],
    )
}

/// A folder of screenshots and console logs from this run only.
fn fresh_artifacts_dir() -> PathBuf {
    let dir = target_dir().join("browser-artifacts");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the artifacts folder can be created");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_live_and_a_server_side_sign_out_reaches_the_open_page() {
    if !Path::new(CHROMIUM).is_file() {
        skip(&format!(
            "{CHROMIUM} is missing (install Debian's package: apt-get install -y chromium)"
        ));
        return;
    }
    if Command::new("node").arg("--version").output().is_err() {
        skip("Node.js is not installed (`node` is not on the PATH)");
        return;
    }
    if let Err(why) = tokio::task::spawn_blocking(prepare)
        .await
        .expect("the preparation task runs")
    {
        panic!("could not prepare the browser test: {why}");
    }

    // The example as a user runs it, with Google played by the local provider. The site
    // port is chosen first: the provider must know the redirect URI.
    let data = tempfile::tempdir().expect("a temporary data folder");
    let site_port = free_port();
    let site = format!("http://127.0.0.1:{site_port}");
    let google = local_google(&site).await;
    let (private_key, jwks) = test_keys();
    let auth = AuthSetup::from_vars([
        ("SITE_URL", site.clone()),
        ("AUTH_GOOGLE_ID", GOOGLE_CLIENT_ID.to_owned()),
        ("AUTH_GOOGLE_SECRET", GOOGLE_CLIENT_SECRET.to_owned()),
        ("AUTH_GOOGLE_ISSUER", google.issuer()),
        ("JWT_PRIVATE_KEY", private_key),
        ("JWKS", jwks),
    ])
    .expect("a valid sign-in configuration");
    let server = chat::chat_app()
        .auth(auth)
        .start(&ServeConfig {
            site_port,
            ..ServeConfig::for_tests(data.path())
        })
        .await
        .expect("the chat example starts");
    assert!(
        server.web_app_dir().is_some(),
        "the example serves the built front-end"
    );

    let artifacts = fresh_artifacts_dir();
    let script = workspace().join("tests/browser/chat.spec.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .args(["--site", server.site_url()])
        .args(["--api", server.client_url()])
        .arg("--artifacts")
        .arg(&artifacts)
        .args(["--expect-name", USER_NAME])
        .args(["--chromium", CHROMIUM])
        .current_dir(workspace())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("the browser script did not finish within {SCRIPT_TIMEOUT:?}"))
        .expect("node runs the browser script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    server.shutdown().await;
    google.shutdown().await;
    assert!(
        output.status.success(),
        "the browser test failed ({}); screenshots and console logs are in {}\n\
         --- steps ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status,
        artifacts.display()
    );
    // Every step the story needs ran and passed.
    let steps: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    for name in [
        "sign-in-context-1",
        "sign-in-context-2",
        "message-appears-live-in-context-2",
        "server-side-sign-out-context-2",
        "context-1-still-signed-in",
        "never-signed-in-and-sign-in-button-together",
    ] {
        assert!(
            steps
                .iter()
                .any(|step| step["step"] == name && step["ok"] == true),
            "step {name} did not pass:\n{stdout}"
        );
    }
    let screenshots = std::fs::read_dir(&artifacts)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "png"))
                .count()
        })
        .unwrap_or(0);
    assert!(
        screenshots >= 6,
        "screenshots are kept in {}",
        artifacts.display()
    );
    eprintln!("{stdout}");
}
