//! An in-memory [`Persistence`]: nothing survives the process.
//!
//! It exists for tests of the layers above (functions, sync) that need a database but not
//! a disk, for benchmarks that isolate the database's own costs from `fsync`, and as a
//! second implementation that keeps the trait honest.

use std::collections::BTreeMap;
use std::ops::Bound;

use conflux_common::Result;
use conflux_values::{DocumentId, TableNumber};
use parking_lot::RwLock;

use super::keys;
use super::{CollectStep, DocumentLogEntry, IndexEntry, Order, Persistence, WriteBatch};
use crate::interval::Interval;
use crate::read_set::IndexId;
use crate::timestamp::Timestamp;

/// A [`Persistence`] in a `BTreeMap`; see the module docs. Not durable.
#[derive(Debug, Default)]
pub struct MemoryPersistence {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryPersistence {
    /// An empty store.
    pub fn new() -> MemoryPersistence {
        MemoryPersistence::default()
    }
}

impl Persistence for MemoryPersistence {
    fn write(&self, batch: &WriteBatch) -> Result<()> {
        let mut map = self.map.write();
        for doc in &batch.documents {
            map.insert(
                keys::document_key(&doc.id, doc.ts),
                keys::document_value(doc.value.as_deref()),
            );
        }
        for entry in &batch.index_entries {
            map.insert(
                keys::index_key(entry.index, &entry.key, entry.ts),
                keys::index_value(entry.id.as_ref()),
            );
        }
        for (name, value) in &batch.metadata {
            map.insert(keys::metadata_key(name), value.clone());
        }
        if let Some(ts) = batch.max_ts {
            map.insert(
                keys::metadata_key(keys::MAX_TS),
                ts.as_u64().to_be_bytes().to_vec(),
            );
        }
        Ok(())
    }

    fn max_ts(&self) -> Result<Timestamp> {
        match self.map.read().get(&keys::metadata_key(keys::MAX_TS)) {
            Some(value) => keys::decode_max_ts(value),
            None => Ok(Timestamp::ZERO),
        }
    }

    fn metadata(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().get(&keys::metadata_key(key)).cloned())
    }

    fn document_at(&self, id: &DocumentId, ts: Timestamp) -> Result<Option<DocumentLogEntry>> {
        let low = keys::document_key(id, Timestamp::ZERO);
        let high = keys::document_key(id, ts);
        let map = self.map.read();
        match map.range(low..=high).next_back() {
            Some((key, value)) => keys::decode_document(key, value).map(Some),
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
        let map = self.map.read();
        let range = map.range::<Vec<u8>, _>((Bound::Included(&low), Bound::Excluded(&high)));
        match order {
            Order::Asc => keys::live_index_entries(range.map(Ok), order, ts, limit),
            Order::Desc => keys::live_index_entries(range.rev().map(Ok), order, ts, limit),
        }
    }

    fn document_versions(
        &self,
        table: TableNumber,
        after: Option<(DocumentId, Timestamp)>,
        limit: usize,
    ) -> Result<Vec<DocumentLogEntry>> {
        let prefix = keys::table_prefix(table);
        let low = match after {
            Some((id, ts)) => Bound::Excluded(keys::document_key(&id, ts)),
            None => Bound::Included(prefix.clone()),
        };
        let high = Bound::Excluded(keys::bytes_successor(&prefix));
        let map = self.map.read();
        map.range((low, high))
            .take(limit)
            .map(|(key, value)| keys::decode_document(key, value))
            .collect()
    }

    fn collect_versions(
        &self,
        horizon: Timestamp,
        from: &[u8],
        budget: usize,
    ) -> Result<CollectStep> {
        let sweep = {
            let map = self.map.read();
            let range = map.range::<[u8], _>((Bound::Included(from), Bound::Unbounded));
            keys::sweep(range.map(Ok), horizon, budget)?
        };
        let mut map = self.map.write();
        for key in &sweep.remove {
            map.remove(key);
        }
        Ok(CollectStep {
            removed: sweep.remove.len(),
            scanned: sweep.scanned,
            resume: sweep.resume,
        })
    }

    fn describe(&self) -> String {
        "in-memory store".to_owned()
    }
}
