//! The storage engine boundary: what the database needs from a durable store.
//!
//! The database keeps two append-only, versioned logs and a little metadata:
//!
//! - the **document log**: every version of every document, keyed by `(id, ts)`; a delete
//!   is a tombstone version. Reading document `id` at snapshot `ts` is "the latest version
//!   at or before `ts`".
//! - the **index log**: every change of every index entry, keyed by `(index, key, ts)`,
//!   pointing at a document id or a tombstone when the key went away. Scanning an index at
//!   snapshot `ts` yields, per key, the latest change at or before `ts` if it is not a
//!   tombstone.
//! - **metadata**: a few named blobs (the table and index catalog, the creation-time
//!   watermark) and the greatest committed timestamp.
//!
//! Nothing is overwritten, so any retained snapshot can be read while commits go on, and
//! a reader never blocks a writer. Versions no retained snapshot can see are deleted by the
//! version collector through [`Persistence::collect_versions`] (see
//! [`retention`](crate::retention)).
//!
//! The trait is deliberately small and synchronous so that an SQL engine can implement it
//! with two tables (`documents(id, ts, value)` and `indexes(index_id, key, ts, document_id)`)
//! and one transaction per [`Persistence::write`]. Values are opaque bytes: the database
//! encodes documents, the engine only stores them.

mod keys;
mod memory;
mod sled_store;

use conflux_common::Result;
use conflux_values::{DocumentId, TableNumber};

use crate::interval::Interval;
use crate::read_set::IndexId;
use crate::timestamp::Timestamp;

pub use memory::MemoryPersistence;
pub use sled_store::SledPersistence;

/// The direction of an index scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    /// Smallest key first.
    #[default]
    Asc,
    /// Largest key first.
    Desc,
}

/// One version in the document log.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentLogEntry {
    /// The document.
    pub id: DocumentId,
    /// The commit that wrote this version.
    pub ts: Timestamp,
    /// The encoded document, or `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// One change in the index log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexLogEntry {
    /// The index.
    pub index: IndexId,
    /// The encoded index key.
    pub key: Vec<u8>,
    /// The commit that made the change.
    pub ts: Timestamp,
    /// The document the key now points at, or `None` when the key went away.
    pub id: Option<DocumentId>,
}

/// A live index entry at a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The encoded index key.
    pub key: Vec<u8>,
    /// The document it points at.
    pub id: DocumentId,
}

/// Everything one group of commits writes, applied atomically by [`Persistence::write`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteBatch {
    /// New document versions.
    pub documents: Vec<DocumentLogEntry>,
    /// New index changes.
    pub index_entries: Vec<IndexLogEntry>,
    /// Metadata blobs to set.
    pub metadata: Vec<(String, Vec<u8>)>,
    /// The greatest commit timestamp in the batch, which becomes [`Persistence::max_ts`];
    /// `None` for metadata-only batches.
    pub max_ts: Option<Timestamp>,
}

impl WriteBatch {
    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
            && self.index_entries.is_empty()
            && self.metadata.is_empty()
            && self.max_ts.is_none()
    }
}

/// A durable, versioned store for documents and index entries. See the module docs.
///
/// Implementations must be safe to call from many threads; the database calls `write`
/// from a single committer thread and the read methods from any thread.
pub trait Persistence: Send + Sync + 'static {
    /// Apply `batch` atomically and durably: when this returns `Ok`, the whole batch
    /// survives a crash; when it returns `Err`, no part of it may be visible, now or after a
    /// restart. Errors are [`conflux_common::ErrorCode::StorageUnavailable`] and should say
    /// what the operator can do (free disk space, fix permissions).
    fn write(&self, batch: &WriteBatch) -> Result<()>;

    /// The greatest `max_ts` ever written, or [`Timestamp::ZERO`] for a new store.
    fn max_ts(&self) -> Result<Timestamp>;

    /// The metadata blob `key`, if set.
    fn metadata(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// The latest version of document `id` at or before `ts`, if any (a delete is a version
    /// whose `value` is `None`).
    fn document_at(&self, id: &DocumentId, ts: Timestamp) -> Result<Option<DocumentLogEntry>>;

    /// Up to `limit` live entries of `index` at snapshot `ts` whose keys lie in `interval`,
    /// in `order`. The caller pages through a range by narrowing `interval`.
    fn index_scan(
        &self,
        index: IndexId,
        interval: &Interval,
        ts: Timestamp,
        order: Order,
        limit: usize,
    ) -> Result<Vec<IndexEntry>>;

    /// Up to `limit` versions of documents of `table`, ordered by `(id, ts)`, starting after
    /// `after`. Used to build a new index over existing documents.
    fn document_versions(
        &self,
        table: TableNumber,
        after: Option<(DocumentId, Timestamp)>,
        limit: usize,
    ) -> Result<Vec<DocumentLogEntry>>;

    /// One step of the version collector: delete the document versions and index changes
    /// that no snapshot at or after `horizon` can see (see
    /// [`retention`](crate::retention)), looking at about `budget` records in store order
    /// from `from` (inclusive; empty is the beginning). Never touches a version newer than
    /// `horizon`, so it can run while commits go on. Deletions need not be durable at once.
    fn collect_versions(
        &self,
        horizon: Timestamp,
        from: &[u8],
        budget: usize,
    ) -> Result<CollectStep>;

    /// A short description for logs and errors, e.g. `sled at /var/lib/conflux`.
    fn describe(&self) -> String;
}

/// What one [`Persistence::collect_versions`] step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectStep {
    /// Versions deleted.
    pub removed: usize,
    /// Records looked at.
    pub scanned: usize,
    /// Where the next step starts, or `None` when the pass is complete.
    pub resume: Option<Vec<u8>>,
}
