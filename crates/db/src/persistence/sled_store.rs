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
//! in sled's memory, and sled may refuse further writes. The store then removes the batch
//! again (its keys are all fresh, since every key carries the new commit timestamp, and the
//! metadata it overwrote is restored) and flushes that. If even that fails, it keeps the
//! undo pending, reopens sled, and retries before every later write; later writes fail with
//! `StorageUnavailable` until the undo is durable, so a failed commit can never be
//! published by a later one. One window remains, as in every database that trusts
//! `fsync`: if the process dies while an undo is pending and the failed batch did reach the
//! disk, it is visible after the restart.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use conflux_common::{Error, ErrorCode, Result};
use conflux_values::{DocumentId, TableNumber};
use parking_lot::{Mutex, RwLock};

use super::keys;
use super::{DocumentLogEntry, IndexEntry, Order, Persistence, WriteBatch};
use crate::interval::Interval;
use crate::read_set::IndexId;
use crate::timestamp::Timestamp;

/// A [`Persistence`] on sled in a directory; see the module docs.
#[derive(Debug)]
pub struct SledPersistence {
    path: PathBuf,
    /// `None` only while the store is being reopened after an I/O failure.
    db: RwLock<Option<sled::Db>>,
    /// The undo of a batch that failed and is not yet durably removed.
    pending_undo: Mutex<Option<sled::Batch>>,
}

fn open_sled(path: &Path) -> Result<sled::Db> {
    sled::Config::new()
        .path(path)
        .flush_every_ms(None)
        .open()
        .map_err(|err| {
            Error::new(
                ErrorCode::StorageUnavailable,
                format!(
                    "could not open the database at {}: {err}; check that the directory is \
                     writable and that no other server is using it",
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
        })
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn handle(&self) -> Result<sled::Db> {
        match self.db.read().as_ref() {
            Some(db) => Ok(db.clone()),
            None => Err(Error::new(
                ErrorCode::StorageUnavailable,
                format!(
                    "the database at {} is recovering from a failed write; retry shortly",
                    self.path.display()
                ),
            )),
        }
    }

    fn read_error(&self, err: sled::Error) -> Error {
        Error::new(
            ErrorCode::StorageUnavailable,
            format!("could not read from disk at {}: {err}", self.path.display()),
        )
    }

    /// Remove a failed batch durably, reopening sled if it refuses to write.
    fn repair(&self, pending: &mut Option<sled::Batch>) -> Result<()> {
        let Some(undo) = pending.as_ref() else {
            return Ok(());
        };
        let apply = |db: &sled::Db| -> sled::Result<()> {
            db.apply_batch(undo.clone())?;
            db.flush()?;
            Ok(())
        };
        let first = match self.handle() {
            Ok(db) => apply(&db).map_err(|err| err.to_string()),
            Err(err) => Err(err.message().to_owned()),
        };
        let outcome = match first {
            Ok(()) => Ok(()),
            Err(first_err) => {
                tracing::warn!(
                    path = %self.path.display(),
                    error = %first_err,
                    "undoing a failed write failed; reopening the store"
                );
                // sled may refuse every write after an I/O error until it is reopened, and
                // it can only be reopened once every handle to it is gone.
                let old = self.db.write().take();
                drop(old);
                let db = open_sled(&self.path)?;
                let result = apply(&db);
                *self.db.write() = Some(db);
                result.map_err(|err| err.to_string())
            }
        };
        match outcome {
            Ok(()) => {
                tracing::info!(path = %self.path.display(), "failed write undone; storage usable again");
                *pending = None;
                Ok(())
            }
            Err(err) => Err(Error::new(
                ErrorCode::StorageUnavailable,
                format!(
                    "could not write to disk at {}: {err}; an earlier failed commit is still \
                     being undone, nothing was committed; free disk space and retry",
                    self.path.display()
                ),
            )),
        }
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
                    tracing::error!(error = %repair_err, "undo failed; will retry before the next write");
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
        let to_result = |item: sled::Result<(sled::IVec, sled::IVec)>| {
            item.map_err(|err| self.read_error(err))
        };
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

    fn describe(&self) -> String {
        format!("sled at {}", self.path.display())
    }
}
