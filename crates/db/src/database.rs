//! [`Database`]: the handle the functions and sync layers hold.
//!
//! It ties the pieces together: the [`Persistence`] underneath, the catalog resolved from
//! the [`Schema`], the committer thread, the version collector, the write log and the
//! [`SubscriptionIndex`]. The
//! handle is cheap to clone; the database closes (and its committer stops) when the last
//! clone is dropped.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conflux_common::{knobs, Error, ErrorCode, Result};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::catalog::Catalog;
use crate::committer::{self, CommitRequest};
use crate::pause::PausePoints;
use crate::persistence::{MemoryPersistence, Persistence, SledPersistence};
use crate::retention::{Collector, CollectorOptions, CollectorStats, SnapshotPins};
use crate::schema::Schema;
use crate::subscription::SubscriptionIndex;
use crate::timestamp::Timestamp;
use crate::transaction::Transaction;
use crate::write_log::WriteLog;

/// The metadata name of the greatest durable creation time.
pub(crate) const CREATION_TIME_WATERMARK: &str = "creation_time_max";

/// Tunables of one database; [`Default`] reads them from the knobs (and so from
/// `CONFLUX_*` environment variables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseOptions {
    /// Commits waiting for the committer (`COMMIT_QUEUE_COUNT`).
    pub commit_queue: usize,
    /// Most commits per durable write (`COMMIT_MAX_BATCH_COUNT`).
    pub max_batch: usize,
    /// Most commits kept in the write log (`WRITE_LOG_MAX_ENTRIES_COUNT`).
    pub write_log_max_entries: usize,
    /// How long commits stay in the write log (`WRITE_LOG_RETENTION_MS`).
    pub write_log_retention: Duration,
    /// How far back `begin_at` may read (`SNAPSHOT_RETENTION_MS`).
    pub snapshot_retention: Duration,
    /// Most documents one transaction may read (`TRANSACTION_MAX_SCANNED_DOCUMENTS_COUNT`).
    pub max_scanned_documents: usize,
    /// Most documents one transaction may write (`TRANSACTION_MAX_WRITTEN_DOCUMENTS_COUNT`).
    pub max_written_documents: usize,
    /// How often the version collector runs (`VERSION_GC_INTERVAL_MS`); zero turns it off.
    pub version_gc_interval: Duration,
    /// Records the collector looks at per step (`VERSION_GC_BATCH_COUNT`).
    pub version_gc_batch: usize,
    /// **Breaks serializability on purpose.** Commit every transaction without checking
    /// its read set (no optimistic-concurrency conflicts at all), so that the history
    /// checker of `conflux-checker` can prove it detects the anomalies this causes. Exists
    /// only with the cargo feature `unsafe-test-knobs`; [`Default`] turns it on when the
    /// environment variable [`UNSAFE_SKIP_CONFLICT_CHECK_ENV`] is `1`.
    #[cfg(feature = "unsafe-test-knobs")]
    pub unsafe_skip_conflict_check_for_tests: bool,
}

/// The environment variable that turns on
/// [`DatabaseOptions::unsafe_skip_conflict_check_for_tests`] (only in builds with the cargo
/// feature `unsafe-test-knobs`).
#[cfg(feature = "unsafe-test-knobs")]
pub const UNSAFE_SKIP_CONFLICT_CHECK_ENV: &str = "CONFLUX_UNSAFE_SKIP_CONFLICT_CHECK_FOR_TESTS";

impl Default for DatabaseOptions {
    fn default() -> DatabaseOptions {
        DatabaseOptions {
            commit_queue: (*knobs::COMMIT_QUEUE_COUNT).max(1),
            max_batch: (*knobs::COMMIT_MAX_BATCH_COUNT).max(1),
            write_log_max_entries: *knobs::WRITE_LOG_MAX_ENTRIES_COUNT,
            write_log_retention: Duration::from_millis(*knobs::WRITE_LOG_RETENTION_MS),
            snapshot_retention: Duration::from_millis(*knobs::SNAPSHOT_RETENTION_MS),
            max_scanned_documents: *knobs::TRANSACTION_MAX_SCANNED_DOCUMENTS_COUNT,
            max_written_documents: *knobs::TRANSACTION_MAX_WRITTEN_DOCUMENTS_COUNT,
            version_gc_interval: Duration::from_millis(*knobs::VERSION_GC_INTERVAL_MS),
            version_gc_batch: (*knobs::VERSION_GC_BATCH_COUNT).max(1),
            #[cfg(feature = "unsafe-test-knobs")]
            unsafe_skip_conflict_check_for_tests: std::env::var(UNSAFE_SKIP_CONFLICT_CHECK_ENV)
                .is_ok_and(|value| value.trim() == "1"),
        }
    }
}

/// Counters of a database since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatabaseStats {
    /// Commits made durable and published.
    pub commits: u64,
    /// Commits refused because of a conflict.
    pub conflicts: u64,
    /// Commits that failed because storage refused the write.
    pub failed_commits: u64,
    /// Durable writes (flushes); with group commit this is at most `commits`.
    pub durable_writes: u64,
    /// Completed passes of the version collector.
    pub collection_passes: u64,
    /// Old versions (document versions and index changes) the collector deleted.
    pub versions_collected: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) commits: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) failed_commits: AtomicU64,
    pub(crate) durable_writes: AtomicU64,
}

/// State shared by the handle, transactions and the committer.
pub(crate) struct Shared {
    pub(crate) persistence: Arc<dyn Persistence>,
    pub(crate) catalog: Catalog,
    pub(crate) schema: Schema,
    pub(crate) options: DatabaseOptions,
    latest: AtomicU64,
    creation_clock: Mutex<f64>,
    pub(crate) write_log: Arc<WriteLog>,
    pub(crate) subscriptions: SubscriptionIndex,
    pub(crate) pause: PausePoints,
    pub(crate) commit_watch: watch::Sender<Timestamp>,
    pub(crate) stats: Stats,
    pub(crate) pins: Arc<SnapshotPins>,
    pub(crate) collector_stats: CollectorStats,
}

impl Shared {
    /// The latest published commit timestamp.
    pub(crate) fn latest(&self) -> Timestamp {
        // Only valid timestamps are ever stored.
        Timestamp::new(self.latest.load(Ordering::Acquire)).unwrap_or(Timestamp::MAX)
    }

    /// Make commits up to `ts` visible to new snapshots.
    pub(crate) fn publish(&self, ts: Timestamp) {
        self.latest.store(ts.as_u64(), Ordering::Release);
    }

    /// A creation time (ms since the epoch) greater than every earlier one.
    /// Make sure every later creation time is above `seen` (after importing documents that
    /// carry their own creation times).
    pub(crate) fn observe_creation_time(&self, seen: f64) {
        let mut last = self.creation_clock.lock();
        if seen > *last {
            *last = seen;
        }
    }

    pub(crate) fn next_creation_time(&self) -> f64 {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let now = micros as f64 / 1000.0;
        let mut last = self.creation_clock.lock();
        let mut next = now.max(*last + 0.001);
        if next <= *last {
            // Only reachable far beyond any real clock: step to the next float.
            next = f64::from_bits(last.to_bits() + 1);
        }
        *last = next;
        next
    }
}

struct Inner {
    shared: Arc<Shared>,
    sender: Mutex<Option<mpsc::Sender<CommitRequest>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    collector: Mutex<Option<Collector>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.collector.lock().take();
        // Closing the channel stops the committer after the commits already queued.
        self.sender.lock().take();
        if let Some(handle) = self.committer.lock().take() {
            if handle.join().is_err() {
                tracing::error!("the committer thread panicked");
            }
        }
    }
}

/// A Conflux database. Cheap to clone; see the crate docs.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("persistence", &self.inner.shared.persistence.describe())
            .field("latest_ts", &self.latest_ts())
            .finish()
    }
}

impl Database {
    /// Open a database on `persistence` with `schema`, with options from the knobs.
    pub fn open(persistence: Arc<dyn Persistence>, schema: Schema) -> Result<Database> {
        Database::open_with_options(persistence, schema, DatabaseOptions::default())
    }

    /// Open a database on sled in directory `path` (created if missing).
    pub fn open_sled(path: &Path, schema: Schema) -> Result<Database> {
        Database::open(Arc::new(SledPersistence::open(path)?), schema)
    }

    /// A database in memory, for tests and examples: nothing survives the process.
    pub fn open_in_memory(schema: Schema) -> Result<Database> {
        Database::open(Arc::new(MemoryPersistence::new()), schema)
    }

    /// Open with explicit options.
    pub fn open_with_options(
        persistence: Arc<dyn Persistence>,
        schema: Schema,
        options: DatabaseOptions,
    ) -> Result<Database> {
        schema.check()?;
        #[cfg(feature = "unsafe-test-knobs")]
        if options.unsafe_skip_conflict_check_for_tests {
            tracing::error!(
                "UNSAFE TEST BUILD: the conflict check is switched off \
                 ({UNSAFE_SKIP_CONFLICT_CHECK_ENV}); transactions are NOT serializable and \
                 acknowledged writes can be lost"
            );
        }
        let catalog = Catalog::open(persistence.as_ref(), &schema)?;
        let latest = persistence.max_ts()?;
        let creation_watermark = match persistence.metadata(CREATION_TIME_WATERMARK)? {
            Some(bytes) => {
                let raw: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    Error::internal(format!(
                        "the stored creation-time watermark of {} is corrupt",
                        persistence.describe()
                    ))
                })?;
                f64::from_bits(u64::from_be_bytes(raw))
            }
            None => 0.0,
        };
        let write_log = Arc::new(WriteLog::new(latest));
        let (commit_watch, _) = watch::channel(latest);
        let shared = Arc::new(Shared {
            persistence,
            catalog,
            schema,
            latest: AtomicU64::new(latest.as_u64()),
            creation_clock: Mutex::new(creation_watermark),
            subscriptions: SubscriptionIndex::new(write_log.clone()),
            write_log,
            pause: PausePoints::default(),
            commit_watch,
            stats: Stats::default(),
            pins: Arc::new(SnapshotPins::default()),
            collector_stats: CollectorStats::default(),
            options,
        });
        let (sender, receiver) = mpsc::channel(shared.options.commit_queue.max(1));
        let handle = committer::spawn(shared.clone(), receiver, creation_watermark)?;
        let collector = Collector::spawn(
            shared.clone(),
            CollectorOptions {
                interval: shared.options.version_gc_interval,
                batch: shared.options.version_gc_batch,
                retention: shared.options.snapshot_retention,
            },
        )?;
        tracing::info!(
            store = %shared.persistence.describe(),
            %latest,
            tables = shared.catalog.table_names().len(),
            "database open"
        );
        Ok(Database {
            inner: Arc::new(Inner {
                shared,
                sender: Mutex::new(Some(sender)),
                committer: Mutex::new(Some(handle)),
                collector: Mutex::new(Some(collector)),
            }),
        })
    }

    /// A transaction at the latest committed timestamp.
    pub fn begin(&self) -> Transaction {
        let shared = &self.inner.shared;
        let (ts, pin) = shared.pins.pin_latest(|| shared.latest());
        Transaction::new(shared.clone(), ts, pin)
    }

    /// A transaction reading the snapshot at `ts`, which must not be in the future nor
    /// older than `SNAPSHOT_RETENTION_MS` (nor behind what the version collector deleted). Committing writes from an old snapshot is
    /// allowed but conflicts if anything it read changed since.
    pub fn begin_at(&self, ts: Timestamp) -> Result<Transaction> {
        let shared = &self.inner.shared;
        let latest = shared.latest();
        if ts > latest {
            return Err(Error::bad_request(format!(
                "cannot read at ts {ts}: the latest commit is ts {latest}"
            )));
        }
        let horizon = Timestamp::now().saturating_sub(shared.options.snapshot_retention);
        if ts < latest && ts < horizon {
            return Err(Error::bad_request(format!(
                "cannot read at ts {ts}: it is older than the snapshot retention \
                 (SNAPSHOT_RETENTION_MS = {} ms); read at a newer timestamp, or raise \
                 SNAPSHOT_RETENTION_MS to keep history longer",
                shared.options.snapshot_retention.as_millis()
            )));
        }
        let pin = shared.pins.pin(ts)?;
        Ok(Transaction::new(shared.clone(), ts, pin))
    }

    /// Commit `tx`: check it against the commits since its snapshot, give it the next
    /// timestamp, and return once it is durable. A read-only transaction returns its
    /// snapshot timestamp at once.
    ///
    /// Errors: [`ErrorCode::OccConflict`] (naming the table) when something it read has
    /// changed, and [`ErrorCode::StorageUnavailable`] when the disk refused the write
    /// (nothing was committed). If the future is dropped after the transaction was queued,
    /// the commit still happens or fails on its own.
    pub async fn commit(&self, tx: Transaction) -> Result<Timestamp> {
        if !Arc::ptr_eq(&tx.shared, &self.inner.shared) {
            return Err(Error::bad_request(
                "this transaction belongs to another database",
            ));
        }
        if tx.is_read_only() {
            return Ok(tx.snapshot);
        }
        let (reply, response) = oneshot::channel();
        let request = CommitRequest {
            snapshot: tx.snapshot,
            reads: tx.reads,
            writes: tx.writes.into_iter().collect(),
            reply,
        };
        let sender = self.inner.sender.lock().clone();
        let closed = || Error::new(ErrorCode::StorageUnavailable, "the database is closed");
        let sender = sender.ok_or_else(closed)?;
        sender.send(request).await.map_err(|_| closed())?;
        response
            .await
            .map_err(|_| Error::internal("the committer stopped before answering"))?
    }

    /// The latest committed (and published) timestamp.
    pub fn latest_ts(&self) -> Timestamp {
        self.inner.shared.latest()
    }

    /// The subscription index.
    pub fn subscriptions(&self) -> &SubscriptionIndex {
        &self.inner.shared.subscriptions
    }

    /// A receiver of the latest committed timestamp, updated after every group commit.
    pub fn commit_watch(&self) -> watch::Receiver<Timestamp> {
        self.inner.shared.commit_watch.subscribe()
    }

    /// The schema the database was opened with.
    pub fn schema(&self) -> &Schema {
        &self.inner.shared.schema
    }

    /// The table names, sorted.
    pub fn table_names(&self) -> Vec<String> {
        self.inner.shared.catalog.table_names()
    }

    /// The name of the table a document id belongs to, if it is in the schema.
    pub fn table_name_of(&self, id: &conflux_values::DocumentId) -> Option<String> {
        self.inner.shared.catalog.table_name_of(id)
    }

    /// The pause points of the committer, for tests of races.
    pub fn pause_points(&self) -> &PausePoints {
        &self.inner.shared.pause
    }

    /// Counters since the database was opened.
    pub fn stats(&self) -> DatabaseStats {
        let stats = &self.inner.shared.stats;
        DatabaseStats {
            commits: stats.commits.load(Ordering::Relaxed),
            conflicts: stats.conflicts.load(Ordering::Relaxed),
            failed_commits: stats.failed_commits.load(Ordering::Relaxed),
            durable_writes: stats.durable_writes.load(Ordering::Relaxed),
            collection_passes: self
                .inner
                .shared
                .collector_stats
                .passes
                .load(Ordering::Relaxed),
            versions_collected: self
                .inner
                .shared
                .collector_stats
                .removed
                .load(Ordering::Relaxed),
        }
    }
}
