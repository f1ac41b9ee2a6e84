//! W5 connections: N idle clients (1,000 and 10,000), each holding one live query; the
//! server's memory per connection; then the server is killed (SIGKILL) and started again
//! on the same port and data, and the time until every client has reconnected and holds
//! its query result again is measured.
//!
//! Each server runs in a process of its own (Conflux and the floor through
//! `conflux-bench __serve`, PocketBase as itself), so its resident memory is its own and a
//! restart is a real process restart (for Conflux: reopening sled). The clients live in
//! this process. They retry a lost connection after a random 0–250 ms, then every 250 ms,
//! so up to about a quarter of a second of every resync time is the clients' retry
//! policy, the same for every system.

use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conflux_common::{Error, ErrorCode, Result};
use parking_lot::Mutex;
use rand::Rng;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, Semaphore};

use super::Context;
use crate::measure::cpu::rss_bytes;
use crate::measure::latency::{ms, thousands, Summary};
use crate::report::Table;
use crate::serve;
use crate::settings::SMALL_LIMIT;
use crate::targets::conflux_app::LIST;
use crate::targets::conflux_ws::{list_args, DURABILITY};
use crate::targets::pocketbase::{free_port, PocketBase};
use crate::targets::sync_client::SyncClient;
use crate::targets::TaskGuard;

/// Distinct queries the idle clients spread over.
const DISTINCT_QUERIES: usize = 100;
/// Connections being opened at once during setup.
const OPEN_CONCURRENCY: usize = 200;
/// Longest wait for all clients to be connected (setup) or back (after the restart).
const ALL_BACK_TIMEOUT: Duration = Duration::from_secs(90);
/// The clients' retry interval after a lost connection.
const RETRY: Duration = Duration::from_millis(250);

/// A server started as `conflux-bench __serve <kind> <port> [dir]`.
struct ChildServer {
    kind: &'static str,
    port: u16,
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    pid: u32,
}

/// The server of one measurement.
enum Server {
    /// Conflux or the floor, in a child process.
    Child(Box<ChildServer>),
    /// PocketBase.
    PocketBase(Arc<PocketBase>),
}

impl Server {
    async fn start_child(kind: &'static str) -> Result<Server> {
        let dir = if kind == "conflux" {
            Some(tempfile::tempdir().map_err(Error::internal)?)
        } else {
            None
        };
        let mut server = Server::Child(Box::new(ChildServer {
            kind,
            port: free_port()?,
            dir,
            child: None,
            pid: 0,
        }));
        server.spawn().await?;
        Ok(server)
    }

    /// Start the child process and wait for its `listening` line.
    async fn spawn(&mut self) -> Result<()> {
        match self {
            Server::Child(server) => {
                let ChildServer {
                    kind,
                    port,
                    dir,
                    child,
                    pid,
                } = server.as_mut();
                let exe = std::env::current_exe().map_err(Error::internal)?;
                let mut command = Command::new(exe);
                command.arg(serve::COMMAND).arg(*kind).arg(port.to_string());
                if let Some(dir) = dir {
                    command.arg(dir.path());
                }
                let mut spawned = command
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|err| {
                        Error::internal(format!("cannot start the {kind} server: {err}"))
                    })?;
                *pid = spawned.id().unwrap_or(0);
                let stdout = spawned
                    .stdout
                    .take()
                    .ok_or_else(|| Error::internal("the server's stdout is not piped"))?;
                let mut lines = BufReader::new(stdout).lines();
                let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                    .await
                    .map_err(|_| {
                        Error::new(
                            ErrorCode::RequestTimeout,
                            format!("the {kind} server did not start within 60 s"),
                        )
                    })?
                    .map_err(Error::internal)?
                    .unwrap_or_default();
                if !line.starts_with("listening") {
                    return Err(Error::internal(format!(
                        "the {kind} server failed to start: {line:?}"
                    )));
                }
                *child = Some(spawned);
                Ok(())
            }
            Server::PocketBase(pocketbase) => pocketbase.spawn_server().await,
        }
    }

    async fn kill(&mut self) {
        match self {
            Server::Child(server) => {
                if let Some(mut child) = server.child.take() {
                    let _ = child.kill().await;
                }
            }
            Server::PocketBase(pocketbase) => pocketbase.kill().await,
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Server::Child(server) => server.pid,
            Server::PocketBase(pocketbase) => pocketbase.pid(),
        }
    }

    fn url(&self) -> String {
        match self {
            Server::Child(server) => format!("ws://127.0.0.1:{}/api/sync", server.port),
            Server::PocketBase(pocketbase) => pocketbase.base().to_string(),
        }
    }
}

/// Every successful (re)sync of any client, and a wake-up for whoever counts them.
#[derive(Default)]
struct Syncs {
    at: Mutex<Vec<Instant>>,
    count: AtomicUsize,
    changed: Notify,
}

impl Syncs {
    fn record(&self) {
        self.at.lock().push(Instant::now());
        self.count.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn reset(&self) {
        self.at.lock().clear();
        self.count.store(0, Ordering::Relaxed);
    }

    async fn wait_for(&self, target: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let count = self.count.load(Ordering::Relaxed);
            if count >= target || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count.load(Ordering::Relaxed).min(target);
            }
        }
    }
}

/// One idle client: connect, subscribe, hold the result, and on loss retry and resync.
async fn idle_client(server: ClientKind, index: usize, syncs: Arc<Syncs>, gate: Arc<Semaphore>) {
    let channel = format!("w5-{}", index % DISTINCT_QUERIES);
    let mut first = true;
    loop {
        let permit = if first {
            gate.clone().acquire_owned().await.ok()
        } else {
            None
        };
        let synced = match &server {
            ClientKind::Sync(url) => sync_once(url, &channel).await,
            ClientKind::PocketBase(pocketbase) => pocketbase_once(pocketbase, &channel).await,
        };
        drop(permit);
        match synced {
            Ok(session) => {
                syncs.record();
                first = false;
                session.closed().await;
                let jitter = rand::thread_rng().gen_range(0..RETRY.as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            Err(_) => tokio::time::sleep(RETRY).await,
        }
    }
}

#[derive(Clone)]
enum ClientKind {
    Sync(String),
    PocketBase(Arc<PocketBase>),
}

/// A connected client, waiting to be lost.
enum Session {
    Sync(SyncClient),
    PocketBase(crate::targets::sse::SseStream),
}

impl Session {
    async fn closed(self) {
        match self {
            Session::Sync(client) => {
                client.closed().await;
            }
            Session::PocketBase(mut events) => while let Ok(Some(_)) = events.next_event().await {},
        }
    }
}

async fn sync_once(url: &str, channel: &str) -> Result<Session> {
    let client = SyncClient::connect(url).await?;
    client
        .add_queries(LIST, &[list_args(channel, SMALL_LIMIT)], None)
        .await?;
    client.wait_for_results().await?;
    Ok(Session::Sync(client))
}

async fn pocketbase_once(pocketbase: &PocketBase, channel: &str) -> Result<Session> {
    let events = pocketbase.open_realtime(&[channel.to_string()]).await?;
    pocketbase.list(channel, SMALL_LIMIT).await?;
    Ok(Session::PocketBase(events))
}

/// What one system did with N idle connections.
struct Measured {
    opened: usize,
    open_seconds: f64,
    rss_before: u64,
    rss_after: u64,
    downtime: Duration,
    resync: Summary,
    back: usize,
}

async fn measure(mut server: Server, connections: usize) -> Result<Measured> {
    let kind = match &server {
        Server::PocketBase(pocketbase) => ClientKind::PocketBase(pocketbase.clone()),
        Server::Child(_) => ClientKind::Sync(server.url()),
    };
    let syncs = Arc::new(Syncs::default());
    let gate = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    // One client first, so the baseline includes a served connection's one-time costs.
    let warm = TaskGuard(tokio::spawn(idle_client(
        kind.clone(),
        0,
        syncs.clone(),
        gate.clone(),
    )));
    syncs.wait_for(1, ALL_BACK_TIMEOUT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss_bytes(Some(server.pid()))?;
    let opening = Instant::now();
    let clients: Vec<TaskGuard> = (1..=connections)
        .map(|index| {
            TaskGuard(tokio::spawn(idle_client(
                kind.clone(),
                index,
                syncs.clone(),
                gate.clone(),
            )))
        })
        .collect();
    let opened = syncs
        .wait_for(connections + 1, ALL_BACK_TIMEOUT)
        .await
        .saturating_sub(1);
    let open_seconds = opening.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_bytes(Some(server.pid()))?;

    syncs.reset();
    let killed = Instant::now();
    server.kill().await;
    server.spawn().await?;
    let listening = Instant::now();
    let back = syncs.wait_for(connections + 1, ALL_BACK_TIMEOUT).await;
    let resync: Vec<u64> = syncs
        .at
        .lock()
        .iter()
        .map(|at| at.saturating_duration_since(listening).as_micros() as u64)
        .collect();
    drop(clients);
    drop(warm);
    server.kill().await;
    Ok(Measured {
        opened,
        open_seconds,
        rss_before,
        rss_after,
        downtime: listening.duration_since(killed),
        resync: Summary::of_samples(&resync),
        back,
    })
}

/// Run W5 and return its section.
pub async fn run(ctx: &Context) -> Result<String> {
    let mut table = Table::new(&[
        "System",
        "Transport",
        "Durability",
        "Idle connections",
        "opened in s",
        "server RSS before MiB",
        "server RSS after MiB",
        "KiB per connection",
        "restart: kill → listening ms",
        "resync p50 ms",
        "resync p99 ms",
        "all back ms",
        "back",
    ]);
    for &connections in &ctx.profile.w5_connections {
        let systems: [(&str, &str, &str); 3] = [
            ("conflux", "Conflux", DURABILITY),
            (
                "floor",
                "Floor (bare WebSocket)",
                crate::targets::floor::DURABILITY,
            ),
            (
                "pocketbase",
                "PocketBase",
                crate::targets::pocketbase::DURABILITY,
            ),
        ];
        for (kind, name, durability) in systems {
            let name = match (&ctx.peers.pocketbase, kind) {
                (Ok((_, version)), "pocketbase") => format!("{name} {version}"),
                _ => name.to_string(),
            };
            ctx.progress(&format!(
                "{} idle connections: {name}",
                thousands(connections as u64)
            ));
            let server = match kind {
                "pocketbase" => match &ctx.peers.pocketbase {
                    Ok((binary, version)) => PocketBase::start(binary, version)
                        .await
                        .map(|pocketbase| Server::PocketBase(Arc::new(pocketbase)))
                        .map_err(|err| format!("could not start: {err}")),
                    Err(reason) => Err(format!("not installed: {reason}")),
                },
                "conflux" => Server::start_child("conflux")
                    .await
                    .map_err(|err| err.to_string()),
                _ => Server::start_child("floor")
                    .await
                    .map_err(|err| err.to_string()),
            };
            let measured = match server {
                Ok(server) => measure(server, connections)
                    .await
                    .map_err(|err| err.to_string()),
                Err(reason) => Err(reason),
            };
            let mut row = vec![
                name,
                "over loopback".into(),
                durability.into(),
                thousands(connections as u64),
            ];
            match measured {
                Ok(m) => {
                    let mib = |bytes: u64| format!("{:.1}", bytes as f64 / 1024.0 / 1024.0);
                    let per = m.rss_after.saturating_sub(m.rss_before) as f64
                        / 1024.0
                        / m.opened.max(1) as f64;
                    row.extend([
                        format!(
                            "{:.2} ({} opened)",
                            m.open_seconds,
                            thousands(m.opened as u64)
                        ),
                        mib(m.rss_before),
                        mib(m.rss_after),
                        format!("{per:.1}"),
                        ms(m.downtime.as_micros() as u64),
                        ms(m.resync.p50),
                        ms(m.resync.p99),
                        ms(m.resync.max),
                        format!(
                            "{}/{}",
                            thousands(m.back as u64),
                            thousands(connections as u64 + 1)
                        ),
                    ]);
                }
                Err(reason) => {
                    ctx.progress(&format!("  n/a: {reason}"));
                    row.push(format!("n/a ({reason})"));
                    row.extend(std::iter::repeat_n("–".to_string(), 8));
                }
            }
            table.row(row);
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "## W5 connections\n");
    let _ = writeln!(
        out,
        "N idle clients, each holding one live query (the latest {SMALL_LIMIT} messages of one of \
         {DISTINCT_QUERIES} channels; PocketBase: one SSE subscription with a channel filter plus \
         the REST list). Memory: resident memory of the server process after the N clients \
         connected, minus before (one warm client), divided by N. Restart: SIGKILL, then the same \
         binary on the same port and data; resync = from the new process listening to each \
         client holding its query result again (PocketBase: SSE reconnected, subscription posted, \
         list fetched); clients retry after a random 0–{} ms, then every {} ms. SurrealDB \
         embedded has no connections: n/a.\n",
        RETRY.as_millis(),
        RETRY.as_millis()
    );
    out.push_str(&table.markdown());
    Ok(out)
}
