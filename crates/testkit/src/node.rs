//! Running the official npm clients from Rust tests.
//!
//! The convention (also described in `tests/npm/README.md`): a test runs
//! `node tests/npm/<scenario>.mjs <deploymentUrl> [args...]`. The script reports each thing
//! its client saw as one JSON object per line on stdout, with an `event` field, and exits 0
//! after `{"event":"done"}` or 1 after `{"event":"error","message":...}`. A scenario that
//! needs instructions mid-run reads JSON lines from stdin. `tests/npm/lib/harness.mjs` is
//! the script side of this contract.
//!
//! When the clients are not installed (`tests/npm/node_modules` is missing), tests skip
//! with a banner on the real stderr, which test output capture does not swallow; with
//! `CONFLUX_REQUIRE_NPM` set (CI sets it) they fail instead, so CI never skips silently.
//!
//! ```no_run
//! use std::time::Duration;
//! use conflux_testkit::node::NpmClients;
//!
//! # async fn test(url: &str) -> Result<(), conflux_testkit::node::ScenarioError> {
//! let Some(npm) = NpmClients::locate_or_skip() else { return Ok(()) };
//! let mut client = npm.spawn("subscribe", &[url])?;
//! let first = client.wait_for("update", Duration::from_secs(10)).await?;
//! assert_eq!(first["value"], serde_json::json!([]));
//! client.finish(Duration::from_secs(10)).await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

/// The environment variable that turns a missing npm install into a test failure (any value
/// but empty or `0`).
pub const REQUIRE_NPM_ENV: &str = "CONFLUX_REQUIRE_NPM";

/// How much of a scenario's stderr is kept for failure reports.
const STDERR_KEPT_BYTES: usize = 64 * 1024;

/// Why a scenario did not do what the test expected. Its `Debug` is its readable
/// `Display`, so `.expect(..)` in a test prints the whole story: the reason, the events so
/// far and the script's stderr.
pub struct ScenarioError {
    message: String,
}

impl ScenarioError {
    /// The full report.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// The installed npm clients (`tests/npm` with its `node_modules`).
#[derive(Clone, Debug)]
pub struct NpmClients {
    dir: PathBuf,
}

impl NpmClients {
    /// The folder of the npm scenarios, `<workspace>/tests/npm`.
    pub fn scenarios_dir() -> PathBuf {
        let testkit = Path::new(env!("CARGO_MANIFEST_DIR"));
        // crates/testkit → the workspace root.
        let root = testkit.ancestors().nth(2).unwrap_or(testkit);
        root.join("tests/npm")
    }

    /// The installed clients, or `None` after printing a skip banner when they are not
    /// installed. Panics instead of skipping when [`REQUIRE_NPM_ENV`] is set.
    pub fn locate_or_skip() -> Option<NpmClients> {
        let dir = NpmClients::scenarios_dir();
        if dir.join("node_modules/convex/package.json").is_file() {
            return Some(NpmClients { dir });
        }
        // A fresh clone: install the pinned clients once (`npm ci`), so that the README's
        // single test command runs the official-client tests too.
        if install_npm_clients(&dir) && dir.join("node_modules/convex/package.json").is_file() {
            return Some(NpmClients { dir });
        }
        let test = std::thread::current()
            .name()
            .unwrap_or("this test")
            .to_string();
        let reason = format!(
            "the official npm clients are not installed ({} is missing); install them with \
             `just npm-install` (npm ci --prefix tests/npm)",
            dir.join("node_modules").display()
        );
        let required =
            std::env::var(REQUIRE_NPM_ENV).is_ok_and(|value| !matches!(value.trim(), "" | "0"));
        if required {
            panic!("{test}: {reason}; {REQUIRE_NPM_ENV} is set, so this is a failure");
        }
        let rule = "=".repeat(78);
        // Straight to the process's stderr: the test harness captures `eprintln!`, and a
        // skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n{rule}\nSKIPPED {test}: {reason}.\nSet {REQUIRE_NPM_ENV}=1 to make this a failure.\n{rule}"
        );
        None
    }

    /// The folder holding the scenarios and `node_modules`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Start `node <scenario>.mjs <args...>` (the `.mjs` may be omitted). The process is
    /// killed when the returned [`NodeScenario`] is dropped.
    pub fn spawn(&self, scenario: &str, args: &[&str]) -> Result<NodeScenario, ScenarioError> {
        let file = if scenario.ends_with(".mjs") {
            scenario.to_string()
        } else {
            format!("{scenario}.mjs")
        };
        let name = file.trim_end_matches(".mjs").to_string();
        let mut child = Command::new("node")
            .arg(&file)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| ScenarioError {
                message: format!(
                    "could not start `node {file}` in {}: {err}",
                    self.dir.display()
                ),
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(ScenarioError {
                message: format!("`node {file}` started without piped output"),
            });
        };
        let stdin = child.stdin.take();
        let stderr = tokio::spawn(async move {
            let mut kept = Vec::new();
            let mut reader = stderr;
            let mut buffer = [0u8; 8192];
            while let Ok(read) = reader.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                kept.extend_from_slice(&buffer[..read]);
                if kept.len() > STDERR_KEPT_BYTES {
                    kept.drain(..kept.len() - STDERR_KEPT_BYTES);
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        });
        Ok(NodeScenario {
            name,
            child,
            stdout: BufReader::new(stdout).lines(),
            stdin,
            stderr: Some(stderr),
            events: Vec::new(),
        })
    }

    /// Run a scenario to its end and return its events (the final `done` included).
    pub async fn run(
        &self,
        scenario: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Vec<Json>, ScenarioError> {
        self.spawn(scenario, args)?.finish(timeout).await
    }
}

/// A running scenario script.
pub struct NodeScenario {
    name: String,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    events: Vec<Json>,
}

/// The `event` name of an event line (empty if it has none).
pub fn event_name(event: &Json) -> &str {
    event.get("event").and_then(Json::as_str).unwrap_or("")
}

impl NodeScenario {
    /// Every event received so far, in order.
    pub fn events(&self) -> &[Json] {
        &self.events
    }

    /// The next event. Fails if the script reports an `error`, ends, prints something that
    /// is not an event, or stays silent for `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Json, ScenarioError> {
        let silence = format!("no event within {timeout:?}");
        match self.read_event(timeout, silence).await? {
            Some(event) => Ok(event),
            None => Err(self.failure("it ended without another event".into()).await),
        }
    }

    /// The next event, or `None` once the script closed its stdout; `on_timeout` is the
    /// failure reason if nothing arrives within `timeout`.
    async fn read_event(
        &mut self,
        timeout: Duration,
        on_timeout: String,
    ) -> Result<Option<Json>, ScenarioError> {
        let line = match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Err(_) => return Err(self.failure(on_timeout).await),
            Ok(Err(err)) => {
                return Err(self
                    .failure(format!("reading its output failed: {err}"))
                    .await)
            }
            Ok(Ok(None)) => return Ok(None),
            Ok(Ok(Some(line))) => line,
        };
        let event: Json = match serde_json::from_str(&line) {
            Ok(event @ Json::Object(_)) if !event_name(&event).is_empty() => event,
            _ => {
                return Err(self
                    .failure(format!(
                        "it printed a line that is not a JSON event (log to stderr instead): {line}"
                    ))
                    .await)
            }
        };
        self.events.push(event.clone());
        if event_name(&event) == "error" {
            let message = event.get("message").and_then(Json::as_str).unwrap_or("");
            let stack = event.get("stack").and_then(Json::as_str).unwrap_or("");
            return Err(self
                .failure(format!("it reported an error: {message}\n{stack}"))
                .await);
        }
        Ok(Some(event))
    }

    /// Skip events until one named `name` arrives; return it. The skipped events stay in
    /// [`NodeScenario::events`].
    pub async fn wait_for(&mut self, name: &str, timeout: Duration) -> Result<Json, ScenarioError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next_event(left).await.map_err(|err| ScenarioError {
                message: format!("while waiting for a `{name}` event: {}", err.message),
            })?;
            if event_name(&event) == name {
                return Ok(event);
            }
        }
    }

    /// Send an instruction to the script (one JSON line on its stdin).
    pub async fn send(&mut self, command: &Json) -> Result<(), ScenarioError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.failure("its stdin is already closed".into()).await);
        };
        let mut line = command.to_string();
        line.push('\n');
        let written = stdin.write_all(line.as_bytes()).await;
        let flushed = match written {
            Ok(()) => stdin.flush().await,
            Err(err) => Err(err),
        };
        match flushed {
            Ok(()) => Ok(()),
            Err(err) => Err(self
                .failure(format!("writing to its stdin failed: {err}"))
                .await),
        }
    }

    /// Close the script's stdin: `nextCommand()` then returns `null`.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Close stdin, read the remaining events and wait for the script to exit. Succeeds
    /// only if it exits with status 0 after a `done` event; returns every event of the run.
    pub async fn finish(mut self, timeout: Duration) -> Result<Vec<Json>, ScenarioError> {
        self.close_stdin();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let late = format!("it did not finish within {timeout:?}");
            if self.read_event(left, late).await?.is_none() {
                break;
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let status = match tokio::time::timeout(left, self.child.wait()).await {
            Err(_) => {
                return Err(self
                    .failure(format!("it did not exit within {timeout:?}"))
                    .await)
            }
            Ok(Err(err)) => {
                return Err(self.failure(format!("waiting for it failed: {err}")).await)
            }
            Ok(Ok(status)) => status,
        };
        let done = self.events.last().map(event_name) == Some("done");
        if !status.success() || !done {
            return Err(self
                .failure(format!("it exited with {status} (last event done: {done})"))
                .await);
        }
        Ok(std::mem::take(&mut self.events))
    }

    /// A failure report: stop the script, then describe what happened, with its events and
    /// stderr.
    async fn failure(&mut self, reason: String) -> ScenarioError {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let stderr = match self.stderr.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        };
        let events: Vec<String> = self.events.iter().map(Json::to_string).collect();
        ScenarioError {
            message: format!(
                "npm scenario `{}` failed: {reason}\n--- events so far ---\n{}\n--- stderr ---\n{}",
                self.name,
                events.join("\n"),
                stderr.trim_end()
            ),
        }
    }
}

/// Run `npm ci` in `dir` once per machine: a process-wide mutex serialises the test
/// threads, and a lock directory serialises test processes. Returns whether npm ran
/// successfully (or another process finished the install).
fn install_npm_clients(dir: &Path) -> bool {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let marker = dir.join("node_modules/convex/package.json");
    if marker.is_file() {
        return true;
    }
    let lock = dir.join(".install-lock");
    let started = std::time::Instant::now();
    loop {
        match std::fs::create_dir(&lock) {
            Ok(()) => break,
            Err(_) if marker.is_file() => return true,
            // A lock older than five minutes belongs to a killed install.
            Err(_) if started.elapsed() > std::time::Duration::from_secs(300) => {
                let _ = std::fs::remove_dir(&lock);
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "installing the official npm clients into {} (npm ci, once)...",
        dir.display()
    );
    let status = std::process::Command::new("npm")
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(dir)
        .status();
    let _ = std::fs::remove_dir(&lock);
    match status {
        Ok(status) if status.success() => true,
        Ok(status) => {
            let _ = writeln!(
                std::io::stderr(),
                "npm ci failed in {}: {status}",
                dir.display()
            );
            false
        }
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "could not run npm: {err}");
            false
        }
    }
}
