//! SurrealDB embedded (`@surrealdb/node` with the `surrealdb` SDK), in-process inside a
//! Node script.
//!
//! SurrealDB's embedded engine lives in a Node process, so the harness cannot call it
//! from Rust. Instead `crates/bench/peers/surreal-peer.mjs` runs the same workload inside
//! that process (open-loop writes with latency from the scheduled time, LIVE SELECT
//! subscribers, closed-loop counter clients, warm-up then measured runs, CPU from
//! `process.cpuUsage()`), and prints what it measured as one JSON line. The harness turns
//! that into the same [`RunSet`] as every other system, so the tables compare like with
//! like: in-process against Conflux in-process.
//!
//! The packages are installed by the harness with npm into the git-ignored
//! `bench/peers/surreal` when missing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use conflux_common::{Error, ErrorCode, Result};
use serde::Deserialize;
use serde_json::Value as Json;
use tokio::process::Command;

use super::{System, TargetInfo, Transport};
use crate::measure::latency::{RunResult, RunSet, Summary};

/// SurrealDB's durability: SurrealKV on disk; a strace of the script showed one `fsync`
/// per `CREATE` (200 creates, 200 more fsyncs than none).
pub const DURABILITY: &str = "SurrealKV on disk, fsync per commit (observed)";

/// One measured run as the script reports it.
#[derive(Debug, Deserialize)]
struct ScriptRun {
    latencies_us: Vec<u64>,
    #[serde(default)]
    last_us: Vec<u64>,
    #[serde(default)]
    acks_us: Vec<u64>,
    delivered: u64,
    expected: u64,
    writes: u64,
    failed: u64,
    seconds: f64,
    cpu_us: f64,
    #[serde(default)]
    conflicts: Option<u64>,
    #[serde(default)]
    commits: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ScriptOutput {
    runs: Vec<ScriptRun>,
}

/// The SurrealDB peer: the script and the installed packages.
#[derive(Clone, Debug)]
pub struct SurrealPeer {
    info: TargetInfo,
    script: PathBuf,
    packages: PathBuf,
}

impl SurrealPeer {
    /// The peer, installing the npm packages into `peers/surreal` if missing; the error is
    /// the note printed when it cannot be installed.
    pub async fn ensure_installed(
        peers: &Path,
        script: &Path,
    ) -> std::result::Result<SurrealPeer, String> {
        let packages = peers.join("surreal");
        let node_version = match Command::new("node").arg("--version").output().await {
            Ok(output) if output.status.success() => {
                String::from_utf8_lossy(&output.stdout).trim().to_string()
            }
            _ => return Err("Node.js is not installed (`node --version` failed)".into()),
        };
        let installed = |name: &str| {
            packages
                .join("node_modules")
                .join(name)
                .join("package.json")
        };
        if !installed("@surrealdb/node").is_file() || !installed("surrealdb").is_file() {
            std::fs::create_dir_all(&packages)
                .map_err(|err| format!("cannot create {}: {err}", packages.display()))?;
            let manifest = packages.join("package.json");
            if !manifest.is_file() {
                std::fs::write(
                    &manifest,
                    "{\"name\":\"conflux-bench-surreal-peer\",\"private\":true}\n",
                )
                .map_err(|err| format!("cannot write {}: {err}", manifest.display()))?;
            }
            eprintln!(
                "installing SurrealDB embedded: npm install @surrealdb/node surrealdb in {}",
                packages.display()
            );
            let install = Command::new("npm")
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--silent",
                    "@surrealdb/node",
                    "surrealdb",
                ])
                .current_dir(&packages)
                .stdin(Stdio::null())
                .output();
            match tokio::time::timeout(Duration::from_secs(300), install).await {
                Ok(Ok(output)) if output.status.success() => {}
                Ok(Ok(output)) => {
                    return Err(format!(
                        "`npm install @surrealdb/node surrealdb` failed: {}",
                        String::from_utf8_lossy(&output.stderr)
                            .lines()
                            .last()
                            .unwrap_or("")
                    ))
                }
                Ok(Err(err)) => return Err(format!("cannot run npm: {err}")),
                Err(_) => return Err("`npm install` took more than 5 minutes".into()),
            }
        }
        let version = |name: &str| -> String {
            std::fs::read_to_string(installed(name))
                .ok()
                .and_then(|text| serde_json::from_str::<Json>(&text).ok())
                .and_then(|json| {
                    json.get("version")
                        .and_then(Json::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "?".into())
        };
        Ok(SurrealPeer {
            info: TargetInfo {
                system: System::Surreal,
                name: format!(
                    "SurrealDB embedded (@surrealdb/node {}, surrealdb {}, Node {node_version})",
                    version("@surrealdb/node"),
                    version("surrealdb")
                ),
                transport: Transport::InProcess,
                durability: DURABILITY.into(),
            },
            script: script.to_path_buf(),
            packages,
        })
    }

    /// What it is.
    pub fn info(&self) -> &TargetInfo {
        &self.info
    }

    /// Run one workload `spec` (see the script) and return its measured runs.
    pub async fn run(&self, spec: &Json, timeout: Duration) -> Result<RunSet> {
        let data = tempfile::tempdir().map_err(Error::internal)?;
        // The spec can list 10,000 channels: a file, not an argument.
        let spec_path = data.path().join("spec.json");
        std::fs::write(&spec_path, spec.to_string()).map_err(Error::internal)?;
        let child = Command::new("node")
            .arg(&self.script)
            .arg(&self.packages)
            .arg(data.path())
            .arg(&spec_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(timeout, child)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorCode::RequestTimeout,
                    format!("the SurrealDB script ran longer than {timeout:?}"),
                )
            })?
            .map_err(|err| Error::internal(format!("cannot run node: {err}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().rev().find(|line| line.starts_with('{'));
        let Some(line) = line.filter(|_| output.status.success()) else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::internal(format!(
                "the SurrealDB script failed ({}): {}",
                output.status,
                stderr.lines().rev().take(3).collect::<Vec<_>>().join(" / ")
            )));
        };
        let parsed: ScriptOutput = serde_json::from_str(line).map_err(|err| {
            Error::internal(format!(
                "the SurrealDB script printed unreadable JSON: {err}"
            ))
        })?;
        Ok(RunSet {
            runs: parsed.runs.into_iter().map(into_run).collect(),
        })
    }
}

fn into_run(run: ScriptRun) -> RunResult {
    let nonempty = |samples: &[u64]| (!samples.is_empty()).then(|| Summary::of_samples(samples));
    RunResult {
        latency: Summary::of_samples(&run.latencies_us),
        last_subscriber: nonempty(&run.last_us),
        ack: nonempty(&run.acks_us),
        delivered: run.delivered,
        expected: run.expected,
        writes: run.writes,
        failed_writes: run.failed,
        seconds: run.seconds,
        cpu_seconds: Some(run.cpu_us / 1e6),
        commits: run.commits,
        conflicts: run.conflicts,
        ..RunResult::default()
    }
}
