//! Version retention: which snapshots stay readable, and the collector that deletes the
//! versions no readable snapshot can see.
//!
//! Why: nothing in the document and index logs is ever overwritten, so without a collector
//! every patch of a hot document stays on disk (and in the store's caches) forever, and
//! index scans over churned key ranges slow down with history. A version is garbage once a
//! newer version of the same document (or index key) is older than every snapshot anyone
//! may still read.
//!
//! Which snapshots may still be read is decided in one place, [`SnapshotPins`]:
//!
//! - every open [`Transaction`](crate::Transaction) *pins* its snapshot until it is dropped,
//!   so a long function or an embedder's long-lived transaction never reads a half-collected
//!   snapshot;
//! - `begin_at(ts)` refuses snapshots older than `SNAPSHOT_RETENTION_MS` (and older than the
//!   collected horizon), so time travel has a documented window.
//!
//! The collector thread wakes every `VERSION_GC_INTERVAL_MS`, picks the horizon
//! `min(now - SNAPSHOT_RETENTION_MS, oldest pinned snapshot, latest commit)`, publishes it,
//! and then walks both logs in steps of `VERSION_GC_BATCH_COUNT` records through
//! [`Persistence::collect_versions`](crate::Persistence::collect_versions), keeping for each
//! document and index key the latest version at or before the horizon (or nothing, when that
//! version is a deletion) and everything newer. Each step is a separate store write that
//! never touches a key the committer writes (those are all newer than the horizon), so
//! commits are not blocked; the pause between steps keeps the collector from competing with
//! foreground work for the disk. Deletions need no `fsync` of their own: a removal lost in a
//! crash is simply collected again.
//!
//! Cost: one pass reads every stored version once, so a pass over `N` versions costs about
//! `N` record reads; with the default interval of a minute that is negligible for databases
//! of a few million versions. A collector that visits only the keys written since the last
//! pass is the next step for larger ones.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use conflux_common::{Error, Result};
use parking_lot::Mutex;

use crate::database::Shared;
use crate::timestamp::Timestamp;

/// The snapshots open transactions read, and the horizon below which versions may have
/// been collected.
#[derive(Debug, Default)]
pub(crate) struct SnapshotPins {
    state: Mutex<PinState>,
}

#[derive(Debug, Default)]
struct PinState {
    /// Open transactions per snapshot timestamp.
    open: BTreeMap<u64, usize>,
    /// Versions only snapshots below this can see may be gone.
    collected_below: u64,
}

impl SnapshotPins {
    /// Pin `ts` for a new transaction; fails when versions it needs may be collected.
    pub(crate) fn pin(self: &Arc<Self>, ts: Timestamp) -> Result<SnapshotPin> {
        let mut state = self.state.lock();
        if ts.as_u64() < state.collected_below {
            return Err(Error::bad_request(format!(
                "cannot read at ts {ts}: versions older than ts {} have been garbage collected; \
                 read at a newer timestamp, or raise SNAPSHOT_RETENTION_MS to keep history longer",
                state.collected_below
            )));
        }
        *state.open.entry(ts.as_u64()).or_default() += 1;
        Ok(SnapshotPin {
            pins: self.clone(),
            ts: ts.as_u64(),
        })
    }

    /// Pin the latest snapshot (read under the lock, so a collection can never pass it
    /// between reading and pinning) for a new transaction.
    pub(crate) fn pin_latest(
        self: &Arc<Self>,
        latest: impl FnOnce() -> Timestamp,
    ) -> (Timestamp, SnapshotPin) {
        let mut state = self.state.lock();
        let ts = latest();
        *state.open.entry(ts.as_u64()).or_default() += 1;
        (
            ts,
            SnapshotPin {
                pins: self.clone(),
                ts: ts.as_u64(),
            },
        )
    }

    /// Choose and publish the horizon of the next collection: at most `wanted`, and never
    /// above a pinned snapshot. Returns the horizon, which never moves backwards.
    pub(crate) fn advance(&self, wanted: Timestamp) -> Timestamp {
        let mut state = self.state.lock();
        let oldest_open = state.open.keys().next().copied().unwrap_or(u64::MAX);
        let horizon = wanted.as_u64().min(oldest_open).max(state.collected_below);
        state.collected_below = horizon;
        Timestamp::new(horizon).unwrap_or(Timestamp::ZERO)
    }

    /// The oldest pinned snapshot, if any transaction is open.
    pub(crate) fn oldest_open(&self) -> Option<u64> {
        self.state.lock().open.keys().next().copied()
    }

    fn unpin(&self, ts: u64) {
        let mut state = self.state.lock();
        if let Some(count) = state.open.get_mut(&ts) {
            *count -= 1;
            if *count == 0 {
                state.open.remove(&ts);
            }
        }
    }
}

/// Keeps one snapshot readable while a transaction is open.
pub(crate) struct SnapshotPin {
    pins: Arc<SnapshotPins>,
    ts: u64,
}

impl Drop for SnapshotPin {
    fn drop(&mut self) {
        self.pins.unpin(self.ts);
    }
}

impl std::fmt::Debug for SnapshotPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotPin({})", self.ts)
    }
}

/// Counters of the collector since the database was opened.
#[derive(Debug, Default)]
pub(crate) struct CollectorStats {
    pub(crate) passes: AtomicU64,
    pub(crate) removed: AtomicU64,
    pub(crate) scanned: AtomicU64,
}

/// How the collector runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CollectorOptions {
    pub(crate) interval: Duration,
    pub(crate) batch: usize,
    pub(crate) retention: Duration,
}

/// The running collector; stops (after its current step) when dropped.
pub(crate) struct Collector {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Start the collector thread, or nothing when the interval is zero.
    pub(crate) fn spawn(shared: Arc<Shared>, options: CollectorOptions) -> Result<Collector> {
        if options.interval.is_zero() {
            return Ok(Collector {
                stop: None,
                thread: None,
            });
        }
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("conflux-version-gc".to_owned())
            .spawn(move || run(&shared, options, &stopped))
            .map_err(|err| {
                Error::internal(format!("could not start the version collector: {err}"))
            })?;
        Ok(Collector {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the version collector thread panicked");
            }
        }
    }
}

/// Whether the collector was asked to stop, waiting at most `wait` for it.
fn stopped(signal: &Receiver<()>, wait: Duration) -> bool {
    !matches!(signal.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
}

fn run(shared: &Shared, options: CollectorOptions, signal: &Receiver<()>) {
    /// The pause between two steps of a pass.
    const STEP_PAUSE: Duration = Duration::from_millis(2);
    let mut warned_pinned = false;
    while !stopped(signal, options.interval) {
        let wanted = Timestamp::now()
            .saturating_sub(options.retention)
            .min(shared.latest());
        let horizon = shared.pins.advance(wanted);
        if horizon < wanted && !warned_pinned {
            warned_pinned = true;
            tracing::warn!(
                oldest_open_snapshot = ?shared.pins.oldest_open(),
                "a transaction has been open longer than SNAPSHOT_RETENTION_MS; old versions \
                 are kept until it is dropped"
            );
        } else if horizon >= wanted {
            warned_pinned = false;
        }
        let started = Instant::now();
        let (mut removed, mut scanned) = (0u64, 0u64);
        let mut from = Vec::new();
        loop {
            match shared
                .persistence
                .collect_versions(horizon, &from, options.batch.max(1))
            {
                Ok(step) => {
                    removed += step.removed as u64;
                    scanned += step.scanned as u64;
                    match step.resume {
                        Some(next) => from = next,
                        None => break,
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "version collection failed; retrying at the next pass");
                    break;
                }
            }
            if stopped(signal, STEP_PAUSE) {
                return;
            }
        }
        let stats = &shared.collector_stats;
        stats.passes.fetch_add(1, Ordering::Relaxed);
        stats.removed.fetch_add(removed, Ordering::Relaxed);
        stats.scanned.fetch_add(scanned, Ordering::Relaxed);
        tracing::debug!(
            %horizon,
            removed,
            scanned,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "version collection pass"
        );
    }
}
