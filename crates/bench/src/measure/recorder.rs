//! Where deliveries land: per-run histograms keyed by the write's sequence number.
//!
//! Why keyed by sequence number: runs follow each other without pause, and a delivery
//! can arrive after its run's schedule ended. Each write carries its sequence number and
//! its *scheduled* send time, so whoever observes it (a WebSocket reader, an SSE reader,
//! an in-process live query) records `now − scheduled` into the run the write belongs to,
//! whenever it arrives. Latency measured from the schedule, not from the actual send,
//! is what keeps coordinated omission out: a stalled system cannot slow the schedule down.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use conflux_common::{Error, ErrorCode, Result};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::measure::latency::{new_histogram, record, Summary};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The harness clock's origin (the first call fixes it).
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
pub fn now_us() -> f64 {
    epoch().elapsed().as_secs_f64() * 1e6
}

/// Microseconds since [`epoch`] of an instant.
pub fn us_of(instant: Instant) -> f64 {
    instant.saturating_duration_since(epoch()).as_secs_f64() * 1e6
}

struct RunCell {
    deliveries: Mutex<Histogram<u64>>,
    acks: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    failed: AtomicU64,
    changed: Notify,
}

#[derive(Default)]
struct SeqCell {
    count: AtomicU32,
    max_us: AtomicU64,
}

/// The deliveries of one configuration: a warm-up (run 0) and the measured runs.
pub struct Recorder {
    /// First sequence number of each run, then the total.
    bounds: Vec<u64>,
    runs: Vec<RunCell>,
    per_seq: Vec<SeqCell>,
    ready: AtomicUsize,
    ready_changed: Notify,
}

impl Recorder {
    /// A recorder for runs of `writes_per_run[r]` writes each (run 0 is the warm-up).
    /// Sequence numbers are dense: run 0 has `0..w0`, run 1 the next `w1`, and so on.
    pub fn new(writes_per_run: &[u64]) -> Recorder {
        let mut bounds = Vec::with_capacity(writes_per_run.len() + 1);
        let mut next = 0u64;
        for &writes in writes_per_run {
            bounds.push(next);
            next += writes;
        }
        bounds.push(next);
        Recorder {
            runs: writes_per_run
                .iter()
                .map(|_| RunCell {
                    deliveries: Mutex::new(new_histogram()),
                    acks: Mutex::new(new_histogram()),
                    delivered: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    changed: Notify::new(),
                })
                .collect(),
            per_seq: (0..next).map(|_| SeqCell::default()).collect(),
            bounds,
            ready: AtomicUsize::new(0),
            ready_changed: Notify::new(),
        }
    }

    /// How many sequence numbers the plan has.
    pub fn total_writes(&self) -> u64 {
        self.bounds.last().copied().unwrap_or(0)
    }

    /// The sequence numbers of run `run`.
    pub fn seqs(&self, run: usize) -> std::ops::Range<u64> {
        let start = self.bounds.get(run).copied().unwrap_or(0);
        let end = self.bounds.get(run + 1).copied().unwrap_or(start);
        start..end
    }

    fn run_of(&self, seq: u64) -> Option<&RunCell> {
        if seq >= self.total_writes() {
            return None;
        }
        let run = self
            .bounds
            .partition_point(|&start| start <= seq)
            .checked_sub(1)?;
        self.runs.get(run)
    }

    /// A subscriber now holds write `seq`, which was scheduled at `scheduled_us`.
    pub fn delivered(&self, seq: u64, scheduled_us: f64) {
        let latency = (now_us() - scheduled_us).max(0.0) as u64;
        let Some(run) = self.run_of(seq) else {
            return;
        };
        record(&mut run.deliveries.lock(), latency);
        if let Some(cell) = self.per_seq.get(seq as usize) {
            cell.count.fetch_add(1, Ordering::Relaxed);
            cell.max_us.fetch_max(latency, Ordering::Relaxed);
        }
        run.delivered.fetch_add(1, Ordering::Relaxed);
        run.changed.notify_waiters();
    }

    /// The writer got the system's acknowledgement (commit) of write `seq`.
    pub fn acked(&self, seq: u64, scheduled_us: f64) {
        let latency = (now_us() - scheduled_us).max(0.0) as u64;
        if let Some(run) = self.run_of(seq) {
            record(&mut run.acks.lock(), latency);
            run.changed.notify_waiters();
        }
    }

    /// Write `seq` failed; returns how many writes of its run failed so far.
    pub fn failed(&self, seq: u64) -> u64 {
        let Some(run) = self.run_of(seq) else {
            return 0;
        };
        let failed = run.failed.fetch_add(1, Ordering::Relaxed) + 1;
        run.changed.notify_waiters();
        failed
    }

    /// A subscriber holds its first result.
    pub fn mark_ready(&self) {
        self.ready.fetch_add(1, Ordering::Relaxed);
        self.ready_changed.notify_waiters();
    }

    /// Wait until `count` subscribers hold their first result.
    pub async fn wait_ready(&self, count: usize, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.ready_changed.notified();
            let ready = self.ready.load(Ordering::Relaxed);
            if ready >= count {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Error::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "only {ready} of {count} subscribers received their first result within {} s",
                        timeout.as_secs()
                    ),
                ));
            }
        }
    }

    /// Wait until run `run` has `expected` deliveries and every write was acknowledged or
    /// failed (when `acks` is true), or until `deadline`.
    pub async fn wait_run(
        &self,
        run: usize,
        expected: u64,
        acks: bool,
        deadline: tokio::time::Instant,
    ) {
        let Some(cell) = self.runs.get(run) else {
            return;
        };
        let writes = {
            let seqs = self.seqs(run);
            seqs.end - seqs.start
        };
        loop {
            let notified = cell.changed.notified();
            let delivered = cell.delivered.load(Ordering::Relaxed);
            let answered = cell.acks.lock().len() + cell.failed.load(Ordering::Relaxed);
            if delivered >= expected && (!acks || answered >= writes) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// The deliveries of run `run` so far.
    pub fn delivered_in(&self, run: usize) -> u64 {
        self.runs
            .get(run)
            .map(|cell| cell.delivered.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Latency summary of the deliveries of run `run`.
    pub fn delivery_summary(&self, run: usize) -> Summary {
        self.runs
            .get(run)
            .map(|cell| Summary::of(&cell.deliveries.lock()))
            .unwrap_or_default()
    }

    /// Latency summary of the acknowledgements of run `run` (`None` without any).
    pub fn ack_summary(&self, run: usize) -> Option<Summary> {
        let cell = self.runs.get(run)?;
        let acks = cell.acks.lock();
        (!acks.is_empty()).then(|| Summary::of(&acks))
    }

    /// Failed writes of run `run`.
    pub fn failed_in(&self, run: usize) -> u64 {
        self.runs
            .get(run)
            .map(|cell| cell.failed.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Per write of run `run` that reached all `subscribers`: the latency of the last one.
    pub fn last_subscriber_summary(&self, run: usize, subscribers: u32) -> Option<Summary> {
        let mut histogram = new_histogram();
        for seq in self.seqs(run) {
            if let Some(cell) = self.per_seq.get(seq as usize) {
                if cell.count.load(Ordering::Relaxed) >= subscribers {
                    record(&mut histogram, cell.max_us.load(Ordering::Relaxed));
                }
            }
        }
        (!histogram.is_empty()).then(|| Summary::of(&histogram))
    }
}

/// Which writes one subscriber has already seen (a bitmap over the dense sequence numbers),
/// so that a write present in several successive results is counted once.
#[derive(Clone, Debug, Default)]
pub struct SeenSet {
    words: Vec<u64>,
}

impl SeenSet {
    /// Mark `seq` as seen; true if it was not seen before.
    pub fn insert(&mut self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_land_in_the_run_of_their_write() {
        let recorder = Recorder::new(&[2, 3, 3]);
        assert_eq!(recorder.seqs(1), 2..5);
        let long_ago = now_us() - 5_000.0;
        recorder.delivered(0, long_ago);
        recorder.delivered(4, long_ago);
        recorder.delivered(5, long_ago);
        recorder.delivered(99, long_ago); // not in the plan: ignored
        assert_eq!(recorder.delivered_in(0), 1);
        assert_eq!(recorder.delivered_in(1), 1);
        assert_eq!(recorder.delivered_in(2), 1);
        assert!(recorder.delivery_summary(1).p50 >= 5_000);
    }

    #[test]
    fn the_last_subscriber_counts_only_for_complete_writes() {
        let recorder = Recorder::new(&[0, 2]);
        recorder.delivered(0, now_us() - 1_000.0);
        recorder.delivered(0, now_us() - 9_000.0);
        recorder.delivered(1, now_us() - 1_000.0);
        let last = recorder.last_subscriber_summary(1, 2);
        assert_eq!(last.map(|s| s.count), Some(1));
        assert!(last.map(|s| s.max >= 9_000).unwrap_or(false));
    }

    #[test]
    fn a_write_seen_twice_is_new_once() {
        let mut seen = SeenSet::default();
        assert!(seen.insert(130));
        assert!(!seen.insert(130));
        assert!(seen.insert(3));
    }
}
