//! The soak: many WebSocket connections with live queries and a steady mutation load
//! against a server child, reporting its memory and the notification latency over time.
//!
//! Why: leaks hide behind short tests. A per-connection buffer never freed, a
//! subscription index that keeps dead entries, a write log that is never trimmed: each
//! shows only as memory that keeps growing after the working set is in place. The soak
//! keeps the working set fixed (a fixed number of connections, each watching the latest
//! post of one room; posts overwrite the room's document) so that anything that still
//! grows is a finding, and it measures what users feel: how long a post takes to reach
//! the live queries that watch its room.
//!
//! Connection `i` watches `soak:room {room: i % rooms}` with `rooms = connections / 10`
//! (at least one). Writers send `soak:post {room, seq, sentAt}` round-robin over the
//! rooms at the requested rate; a watcher that receives a `seq` newer than any it saw
//! records `now - sentAt` (both from this machine's clock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::json;

use crate::server::{HarnessError, ServerOptions, ServerProcess};
use crate::wire::{ServerMessage, WireClient};

/// How often the server's memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Connections opened at once while the soak starts.
const CONNECT_CONCURRENCY: usize = 50;
/// Number of writer connections.
const WRITERS: usize = 4;

/// What to soak.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Watching connections.
    pub connections: usize,
    /// How long the load runs once every connection is open.
    pub duration: Duration,
    /// Posts per second, over all writers.
    pub writes_per_sec: u32,
    /// How often a progress report is made.
    pub report_every: Duration,
    /// The `checker-server` binary.
    pub server_binary: std::path::PathBuf,
    /// Where the data folder and the server log go.
    pub work_dir: std::path::PathBuf,
}

/// One progress report.
#[derive(Clone, Debug)]
pub struct WindowReport {
    /// Time since the load started.
    pub elapsed: Duration,
    /// The server's resident memory now.
    pub rss_bytes: u64,
    /// Notifications received in the window.
    pub notifications: u64,
    /// Their latency percentiles: p50, p90, p99, max (milliseconds).
    pub latency_ms: [f64; 4],
    /// Posts acknowledged in the window.
    pub writes: u64,
    /// Posts that failed in the window.
    pub write_errors: u64,
    /// Watching connections open now.
    pub open_connections: u64,
    /// Watching connections that were dropped so far (and reopened).
    pub dropped_connections: u64,
}

impl std::fmt::Display for WindowReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "t={:>5.0}s rss={:>7.1} MiB notifications={:>7} latency p50={:.1} p90={:.1} p99={:.1} \
             max={:.1} ms writes={} errors={} open={} dropped={}",
            self.elapsed.as_secs_f64(),
            mib(self.rss_bytes),
            self.notifications,
            self.latency_ms[0],
            self.latency_ms[1],
            self.latency_ms[2],
            self.latency_ms[3],
            self.writes,
            self.write_errors,
            self.open_connections,
            self.dropped_connections
        )
    }
}

/// The result of a soak.
#[derive(Clone, Debug)]
pub struct SoakReport {
    /// Every memory sample: (time since the load started, RSS bytes).
    pub samples: Vec<(Duration, u64)>,
    /// The progress reports.
    pub windows: Vec<WindowReport>,
    /// RSS once every connection was open.
    pub rss_start: u64,
    /// RSS at half time.
    pub rss_middle: u64,
    /// RSS at the end.
    pub rss_end: u64,
    /// Highest RSS sampled.
    pub rss_peak: u64,
    /// Whether memory stopped growing: it grew by at most 5 % (or 8 MiB) over the
    /// second half.
    pub levelled_off: bool,
    /// Notification latency over the whole soak: p50, p90, p99, p99.9, max (ms).
    pub latency_ms: [f64; 5],
    /// Notifications received.
    pub notifications: u64,
    /// Posts acknowledged.
    pub writes: u64,
    /// Posts that failed.
    pub write_errors: u64,
    /// Watching connections dropped during the soak.
    pub dropped_connections: u64,
    /// Time to open every connection.
    pub connect_time: Duration,
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "memory (RSS): start {:.1} MiB, middle {:.1} MiB, end {:.1} MiB, peak {:.1} MiB: {}",
            mib(self.rss_start),
            mib(self.rss_middle),
            mib(self.rss_end),
            mib(self.rss_peak),
            if self.levelled_off {
                "levelled off"
            } else {
                "STILL GROWING"
            }
        )?;
        writeln!(
            f,
            "notification latency over {} notifications: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, \
             p99.9 {:.1} ms, max {:.1} ms",
            self.notifications,
            self.latency_ms[0],
            self.latency_ms[1],
            self.latency_ms[2],
            self.latency_ms[3],
            self.latency_ms[4]
        )?;
        write!(
            f,
            "writes: {} acknowledged, {} failed; connections dropped: {}; all connections open \
             after {:.1} s",
            self.writes,
            self.write_errors,
            self.dropped_connections,
            self.connect_time.as_secs_f64()
        )
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

#[derive(Default)]
struct Counters {
    open: AtomicU64,
    dropped: AtomicU64,
    writes: AtomicU64,
    write_errors: AtomicU64,
    notifications: AtomicU64,
}

struct Latencies {
    window: Histogram<u64>,
    total: Histogram<u64>,
}

impl Latencies {
    fn new() -> Result<Latencies, HarnessError> {
        let make = || {
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
                .map_err(|err| format!("cannot create a histogram: {err}"))
        };
        Ok(Latencies {
            window: make()?,
            total: make()?,
        })
    }

    fn record(&mut self, micros: u64) {
        let micros = micros.clamp(1, 3_600_000_000);
        let _ = self.window.record(micros);
        let _ = self.total.record(micros);
    }
}

fn percentiles(histogram: &Histogram<u64>, quantiles: &[f64]) -> Vec<f64> {
    quantiles
        .iter()
        .map(|q| {
            if histogram.is_empty() {
                0.0
            } else if *q >= 1.0 {
                histogram.max() as f64 / 1000.0
            } else {
                histogram.value_at_quantile(*q) as f64 / 1000.0
            }
        })
        .collect()
}

/// Raise this process's open-file limit (the server child inherits it) so that
/// `connections` sockets fit on both sides.
pub fn raise_file_limit(connections: usize) -> Result<u64, HarnessError> {
    let wanted = (connections as u64) * 2 + 512;
    let got = rlimit::increase_nofile_limit(wanted)
        .map_err(|err| format!("cannot raise RLIMIT_NOFILE: {err}"))?;
    if got < (connections as u64) + 256 {
        return Err(format!(
            "RLIMIT_NOFILE is {got}, too low for {connections} connections; raise the hard \
             limit (ulimit -Hn) to at least {wanted}"
        ));
    }
    Ok(got)
}

/// One watching connection: subscribe, record latencies, reopen when dropped.
async fn watch(
    url: String,
    room: usize,
    counters: Arc<Counters>,
    latencies: Arc<Mutex<Latencies>>,
    opened: tokio::sync::mpsc::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut first = true;
    let mut last_seq = -1.0f64;
    while !*stop.borrow() {
        let mut client = match WireClient::connect(&url).await {
            Ok(client) => client,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if client
            .sender
            .subscribe(&[(0, "soak:room", json!({"room": room as f64}))])
            .await
            .is_err()
        {
            continue;
        }
        counters.open.fetch_add(1, Ordering::Relaxed);
        if first {
            first = false;
            let _ = opened.send(()).await;
        }
        loop {
            let message = tokio::select! {
                message = client.next() => message,
                _ = stop.changed() => None,
            };
            let Some(message) = message else { break };
            match message {
                ServerMessage::Transition { updates, .. } => {
                    for update in updates {
                        let Ok(value) = update.result else { continue };
                        let (Some(seq), Some(sent_at)) =
                            (value["seq"].as_f64(), value["sentAt"].as_f64())
                        else {
                            continue;
                        };
                        if seq > last_seq {
                            if last_seq >= 0.0 {
                                let micros = ((now_ms() - sent_at) * 1000.0).max(1.0) as u64;
                                latencies.lock().record(micros);
                                counters.notifications.fetch_add(1, Ordering::Relaxed);
                            }
                            last_seq = seq;
                        }
                    }
                }
                ServerMessage::Closed { .. } | ServerMessage::FatalError { .. } => break,
                _ => {}
            }
        }
        counters.open.fetch_sub(1, Ordering::Relaxed);
        if *stop.borrow() {
            client.sender.close().await;
            return;
        }
        counters.dropped.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One writer: a post every `period`, round-robin over its share of the rooms.
async fn write(
    url: String,
    writer: usize,
    rooms: usize,
    period: Duration,
    seq: Arc<AtomicU64>,
    counters: Arc<Counters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), HarnessError> {
    let mut client = WireClient::connect(&url).await?;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut room = writer % rooms;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => {
                client.sender.close().await;
                return Ok(());
            }
        }
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let request = client
            .sender
            .mutation(
                "soak:post",
                json!({"room": room as f64, "seq": n as f64, "sentAt": now_ms()}),
            )
            .await?;
        room = (room + WRITERS) % rooms;
        loop {
            match client.next().await {
                Some(ServerMessage::MutationResponse {
                    request_id, result, ..
                }) if request_id == request => {
                    match result {
                        Ok(_) => counters.writes.fetch_add(1, Ordering::Relaxed),
                        Err(_) => counters.write_errors.fetch_add(1, Ordering::Relaxed),
                    };
                    break;
                }
                Some(ServerMessage::Closed { .. }) | None => {
                    return Err(format!("writer {writer} lost its connection"))
                }
                Some(_) => {}
            }
        }
    }
}

/// Run the soak; `progress` receives a report every [`SoakConfig::report_every`].
pub async fn run_soak(
    config: &SoakConfig,
    mut progress: impl FnMut(&WindowReport),
) -> Result<SoakReport, HarnessError> {
    raise_file_limit(config.connections + WRITERS)?;
    std::fs::create_dir_all(&config.work_dir)
        .map_err(|err| format!("cannot create {}: {err}", config.work_dir.display()))?;
    let mut options = ServerOptions::new(&config.server_binary, config.work_dir.join("data"));
    options.log_file = config.work_dir.join("server.log");
    // Function runs are logged at `info` only in dev mode; keep the log small.
    options = options.env("RUST_LOG", "warn");
    let server = ServerProcess::start(&options).await?;
    let url = server.client_url().to_owned();
    let rooms = (config.connections / 10).max(1);
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Latencies::new()?));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let connect_started = Instant::now();
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel(config.connections.max(1));
    let mut tasks = Vec::new();
    let mut launched = 0usize;
    let mut confirmed = 0usize;
    while confirmed < config.connections {
        while launched < config.connections && launched - confirmed < CONNECT_CONCURRENCY {
            tasks.push(tokio::spawn(watch(
                url.clone(),
                launched % rooms,
                counters.clone(),
                latencies.clone(),
                opened_tx.clone(),
                stop_rx.clone(),
            )));
            launched += 1;
        }
        match tokio::time::timeout(Duration::from_secs(60), opened_rx.recv()).await {
            Ok(Some(())) => confirmed += 1,
            _ => {
                return Err(format!(
                    "only {confirmed} of {} connections opened within a minute",
                    config.connections
                ))
            }
        }
    }
    let connect_time = connect_started.elapsed();

    let seq = Arc::new(AtomicU64::new(1));
    let per_writer = (config.writes_per_sec.max(1) as f64 / WRITERS as f64).max(0.01);
    let period = Duration::from_secs_f64(1.0 / per_writer);
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        writers.push(tokio::spawn(write(
            url.clone(),
            writer,
            rooms,
            period,
            seq.clone(),
            counters.clone(),
            stop_rx.clone(),
        )));
    }

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut windows = Vec::new();
    let mut next_report = config.report_every;
    let mut last_writes = 0;
    let mut last_errors = 0;
    let mut last_notifications = 0;
    samples.push((Duration::ZERO, server.rss_bytes().unwrap_or(0)));
    loop {
        let elapsed = started.elapsed();
        if elapsed >= config.duration {
            break;
        }
        let next_sample = samples.len() as u32 * SAMPLE_EVERY;
        let wake = next_sample.min(next_report).min(config.duration);
        tokio::time::sleep(wake.saturating_sub(elapsed)).await;
        let elapsed = started.elapsed();
        let rss = server
            .rss_bytes()
            .ok_or("the server is gone (no /proc entry); see its log")?;
        if elapsed >= next_sample {
            samples.push((elapsed, rss));
        }
        if elapsed >= next_report {
            next_report += config.report_every;
            let writes = counters.writes.load(Ordering::Relaxed);
            let errors = counters.write_errors.load(Ordering::Relaxed);
            let notifications = counters.notifications.load(Ordering::Relaxed);
            let latency = {
                let mut latencies = latencies.lock();
                let p = percentiles(&latencies.window, &[0.5, 0.9, 0.99, 1.0]);
                latencies.window.reset();
                p
            };
            let report = WindowReport {
                elapsed,
                rss_bytes: rss,
                notifications: notifications - last_notifications,
                latency_ms: [latency[0], latency[1], latency[2], latency[3]],
                writes: writes - last_writes,
                write_errors: errors - last_errors,
                open_connections: counters.open.load(Ordering::Relaxed),
                dropped_connections: counters.dropped.load(Ordering::Relaxed),
            };
            last_writes = writes;
            last_errors = errors;
            last_notifications = notifications;
            progress(&report);
            windows.push(report);
        }
        for writer in &writers {
            if writer.is_finished() {
                return Err("a writer stopped; see the server log".into());
            }
        }
    }
    samples.push((started.elapsed(), server.rss_bytes().unwrap_or(0)));

    let _ = stop_tx.send(true);
    for writer in writers {
        if let Ok(Err(err)) = writer.await {
            return Err(err);
        }
    }
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    server.terminate().await?;

    let rss_start = samples.first().map(|s| s.1).unwrap_or(0);
    let rss_end = samples.last().map(|s| s.1).unwrap_or(0);
    let half = config.duration / 2;
    let rss_middle = samples
        .iter()
        .min_by_key(|(at, _)| at.abs_diff(half))
        .map(|s| s.1)
        .unwrap_or(0);
    let rss_peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let allowed = (rss_middle / 20).max(8 << 20);
    let levelled_off = rss_end <= rss_middle + allowed;
    let total = percentiles(&latencies.lock().total, &[0.5, 0.9, 0.99, 0.999, 1.0]);
    Ok(SoakReport {
        samples,
        windows,
        rss_start,
        rss_middle,
        rss_end,
        rss_peak,
        levelled_off,
        latency_ms: [total[0], total[1], total[2], total[3], total[4]],
        notifications: counters.notifications.load(Ordering::Relaxed),
        writes: counters.writes.load(Ordering::Relaxed),
        write_errors: counters.write_errors.load(Ordering::Relaxed),
        dropped_connections: counters.dropped.load(Ordering::Relaxed),
        connect_time,
    })
}
