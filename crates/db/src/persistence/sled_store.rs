//! The default [`Persistence`]: sled, an embedded ordered key-value store.
//!
//! Everything lives in sled's default tree in the layout of [`super::keys`]. A
//! [`WriteBatch`] becomes one `sled::Batch` (sled recovers a batch atomically: all of it or
//! none of it after a crash) followed by one `flush` (write and `fsync` the log). The
//! committer calls `write` once per group of commits, so a group shares one `fsync`.
//! sled's periodic background flush is turned off: durability happens exactly when the
//! committer asks for it.
//!
//! # When the disk fails
//!
//! If applying or flushing a batch fails (disk full, I/O error), the batch may already be
//! in sled's memory, and sled refuses every later write (its I/O error is sticky until it
//! is reopened). The failed batch must never become visible, so its *undo* is kept: every
//! key it wrote is fresh (each carries the new commit timestamp) and can be removed, and
//! the metadata it overwrote is restored. Before the next write, the undo is applied and
//! flushed; when sled refuses, the store checks that the disk has room again (a 1 MiB
//! probe file), closes sled, reopens it from what reached the disk, and applies the undo
//! there. Until that succeeds every write fails with `StorageUnavailable` ("nothing was
//! committed"), so a failed commit is never published by a later one; reads keep using the
//! old handle while the disk is full, and if sled was closed but could not be reopened,
//! reads retry reopening it at most once a second.
//!
//! One window remains, as in every database that trusts `fsync`: if the process dies
//! while an undo is pending and the failed batch did reach the disk, it is visible after
//! the restart.

use std::io::Write;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use conflux_common::{knobs, Error, ErrorCode, Result};
use conflux_values::{DocumentId, TableNumber};
use parking_lot::{Mutex, RwLock};

use super::keys;
use super::{CollectStep, DocumentLogEntry, IndexEntry, Order, Persistence, WriteBatch};
use crate::interval::Interval;
use crate::read_set::IndexId;
use crate::timestamp::Timestamp;

/// A [`Persistence`] on sled in a directory; see the module docs.
#[derive(Debug)]
pub struct SledPersistence {
    path: PathBuf,
    /// `None` after sled was closed to recover from a failed write and could not be
    /// reopened yet.
    db: RwLock<Option<sled::Db>>,
    /// The undo of a batch that failed and is not yet durably removed.
    pending_undo: Mutex<Option<sled::Batch>>,
    /// When a closed store last tried to reopen and why that failed (reopening reads the
    /// whole log, so reads retry it at most once a second).
    last_reopen: Mutex<Option<(Instant, String)>>,
}

/// Bytes written (and removed) to check that the disk has room again before sled is
/// reopened after a failed write.
const PROBE_BYTES: usize = 1 << 20;
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

fn open_sled(path: &Path) -> Result<sled::Db> {
    sled::Config::new()
        .path(path)
        .flush_every_ms(None)
        // sled's own default (1 GiB) lets its page cache grow with every version ever
        // written; the operating system caches the file anyway.
        .cache_capacity(*knobs::SLED_CACHE_BYTES)
        .open()
        .map_err(|err| {
            Error::new(
                ErrorCode::StorageUnavailable,
                format!(
                    "could not open the database at {}: {err}; check that the directory is \
                     writable, that the disk has free space and that no other server is using it",
                    path.display()
                ),
            )
        })
}

impl SledPersistence {
    /// Open (or create) the store in directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SledPersistence> {
        let path = path.as_ref().to_path_buf();
        let db = open_sled(&path)?;
        Ok(SledPersistence {
            path,
            db: RwLock::new(Some(db)),
            pending_undo: Mutex::new(None),
            last_reopen: Mutex::new(None),
        })
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle to sled, reopening it if a failed write closed it.
    fn handle(&self) -> Result<sled::Db> {
        if let Some(db) = self.db.read().as_ref() {
            return Ok(db.clone());
        }
        let mut last = self.last_reopen.lock();
        let mut slot = self.db.write();
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        if let Some((at, why)) = last.as_ref() {
            if at.elapsed() < REOPEN_INTERVAL {
                return Err(Error::new(
                    ErrorCode::StorageUnavailable,
                    format!(
                        "the database at {} was closed after a failed write and could not be \
                         reopened yet ({why}); free disk space, it reopens by itself",
                        self.path.display()
                    ),
                ));
            }
        }
        let db = match open_sled(&self.path) {
            Ok(db) => db,
            Err(err) => {
                *last = Some((Instant::now(), err.message().to_owned()));
                return Err(err);
            }
        };
        *last = None;
        tracing::info!(path = %self.path.display(), "store reopened after a failed write");
        *slot = Some(db.clone());
        Ok(db)
    }

    fn read_error(&self, err: sled::Error) -> Error {
        Error::new(
            ErrorCode::StorageUnavailable,
            format!("could not read from disk at {}: {err}", self.path.display()),
        )
    }

    /// Whether the store's disk accepts a durable write of [`PROBE_BYTES`] again.
    fn disk_has_room(&self) -> std::io::Result<()> {
        let probe = self.path.join("space-probe.tmp");
        let result = (|| {
            let mut file = std::fs::File::create(&probe)?;
            file.write_all(&vec![0u8; PROBE_BYTES])?;
            file.sync_all()
        })();
        let _ = std::fs::remove_file(&probe);
        result
    }

    /// Remove a failed batch durably. sled refuses every write after an I/O error until
    /// it is reopened, so when the undo fails on the current handle and the disk has room
    /// again, sled is closed and reopened (from what reached the disk) first. Until then
    /// the current handle keeps serving reads.
    fn repair(&self, pending: &mut Option<sled::Batch>) -> Result<()> {
        let Some(undo) = pending.as_ref() else {
            return Ok(());
        };
        let apply = |db: &sled::Db| -> sled::Result<()> {
            db.apply_batch(undo.clone())?;
            db.flush()?;
            Ok(())
        };
        let still_failing = |why: String| {
            Error::new(
                ErrorCode::StorageUnavailable,
                format!(
                    "could not write to disk at {}: {why}; an earlier failed commit is still \
                     being undone, nothing was committed; free disk space and retry",
                    self.path.display()
                ),
            )
        };
        let current = self.db.read().clone();
        let first = match &current {
            Some(db) => apply(db).map_err(|err| err.to_string()),
            None => Err("the store is closed".to_owned()),
        };
        if first.is_ok() {
            *pending = None;
            return Ok(());
        }
        self.disk_has_room()
            .map_err(|err| still_failing(format!("the disk is still full or failing ({err})")))?;
        drop(current);
        // Close sled (every handle must be gone before it can be reopened) and reopen it.
        let closed = self.db.write().take();
        drop(closed);
        *self.last_reopen.lock() = None;
        let db = self.handle()?;
        apply(&db).map_err(|err| still_failing(err.to_string()))?;
        tracing::info!(path = %self.path.display(), "failed write undone; storage usable again");
        *pending = None;
        Ok(())
    }
}

impl Persistence for SledPersistence {
    fn write(&self, batch: &WriteBatch) -> Result<()> {
        let mut pending = self.pending_undo.lock();
        self.repair(&mut pending)?;
        let db = self.handle()?;
        let mut apply = sled::Batch::default();
        let mut undo = sled::Batch::default();
        for doc in &batch.documents {
            let key = keys::document_key(&doc.id, doc.ts);
            undo.remove(key.clone());
            apply.insert(key, keys::document_value(doc.value.as_deref()));
        }
        for entry in &batch.index_entries {
            let key = keys::index_key(entry.index, &entry.key, entry.ts);
            undo.remove(key.clone());
            apply.insert(key, keys::index_value(entry.id.as_ref()));
        }
        let max_ts = batch
            .max_ts
            .map(|ts| (keys::MAX_TS.to_owned(), ts.as_u64().to_be_bytes().to_vec()));
        for (name, value) in batch.metadata.iter().cloned().chain(max_ts) {
            let key = keys::metadata_key(&name);
            match db.get(&key).map_err(|err| self.read_error(err))? {
                Some(old) => undo.insert(key.clone(), old),
                None => undo.remove(key.clone()),
            }
            apply.insert(key, value);
        }
        let result = db.apply_batch(apply).and_then(|()| db.flush().map(drop));
        drop(db);
        match result {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::error!(path = %self.path.display(), error = %err, "write failed; undoing it");
                *pending = Some(undo);
                if let Err(repair_err) = self.repair(&mut pending) {
                    tracing::warn!(error = %repair_err, "undo failed; retrying before the next write");
                }
                Err(Error::new(
                    ErrorCode::StorageUnavailable,
                    format!(
                        "could not write to disk at {}: {err}; nothing was committed; free \
                         disk space or fix the storage, then retry",
                        self.path.display()
                    ),
                ))
            }
        }
    }

    fn max_ts(&self) -> Result<Timestamp> {
        let db = self.handle()?;
        match db
            .get(keys::metadata_key(keys::MAX_TS))
            .map_err(|err| self.read_error(err))?
        {
            Some(value) => keys::decode_max_ts(&value),
            None => Ok(Timestamp::ZERO),
        }
    }

    fn metadata(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let db = self.handle()?;
        let value = db
            .get(keys::metadata_key(key))
            .map_err(|err| self.read_error(err))?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn document_at(&self, id: &DocumentId, ts: Timestamp) -> Result<Option<DocumentLogEntry>> {
        let db = self.handle()?;
        let low = keys::document_key(id, Timestamp::ZERO);
        let high = keys::document_key(id, ts);
        match db.range(low..=high).next_back() {
            Some(Ok((key, value))) => keys::decode_document(&key, &value).map(Some),
            Some(Err(err)) => Err(self.read_error(err)),
            None => Ok(None),
        }
    }

    fn index_scan(
        &self,
        index: IndexId,
        interval: &Interval,
        ts: Timestamp,
        order: Order,
        limit: usize,
    ) -> Result<Vec<IndexEntry>> {
        let (low, high) = keys::index_bounds(index, interval);
        if low >= high {
            return Ok(Vec::new());
        }
        let db = self.handle()?;
        let range = db.range(low..high);
        let to_result =
            |item: sled::Result<(sled::IVec, sled::IVec)>| item.map_err(|err| self.read_error(err));
        match order {
            Order::Asc => keys::live_index_entries(range.map(to_result), order, ts, limit),
            Order::Desc => keys::live_index_entries(range.rev().map(to_result), order, ts, limit),
        }
    }

    fn document_versions(
        &self,
        table: TableNumber,
        after: Option<(DocumentId, Timestamp)>,
        limit: usize,
    ) -> Result<Vec<DocumentLogEntry>> {
        let db = self.handle()?;
        let prefix = keys::table_prefix(table);
        let low = match after {
            Some((id, ts)) => Bound::Excluded(keys::document_key(&id, ts)),
            None => Bound::Included(prefix.clone()),
        };
        let high = Bound::Excluded(keys::bytes_successor(&prefix));
        db.range::<Vec<u8>, _>((low, high))
            .take(limit)
            .map(|item| {
                let (key, value) = item.map_err(|err| self.read_error(err))?;
                keys::decode_document(&key, &value)
            })
            .collect()
    }

    fn collect_versions(
        &self,
        horizon: Timestamp,
        from: &[u8],
        budget: usize,
    ) -> Result<CollectStep> {
        let db = self.handle()?;
        let records = db
            .range::<&[u8], _>(from..)
            .map(|item| item.map_err(|err| self.read_error(err)));
        let sweep = keys::sweep(records, horizon, budget)?;
        if !sweep.remove.is_empty() {
            let mut batch = sled::Batch::default();
            for key in &sweep.remove {
                batch.remove(key.as_slice());
            }
            // No flush: a deletion lost in a crash is collected again by a later pass, and
            // the committer's next flush makes it durable anyway.
            db.apply_batch(batch).map_err(|err| {
                Error::new(
                    ErrorCode::StorageUnavailable,
                    format!(
                        "could not delete old versions at {}: {err}",
                        self.path.display()
                    ),
                )
            })?;
        }
        Ok(CollectStep {
            removed: sweep.remove.len(),
            scanned: sweep.scanned,
            resume: sweep.resume,
        })
    }

    fn describe(&self) -> String {
        format!("sled at {}", self.path.display())
    }
}
