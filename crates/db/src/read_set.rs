//! What a transaction or a query read: the exact intervals of index keys it scanned.
//!
//! The read set is the contract between three parts of the system. The committer checks it
//! against the keys written by later commits (optimistic concurrency control), the
//! subscription index watches it for live queries, and the functions layer hands it from a
//! query run to the sync layer. It must be *precise*: a query that took the first 10
//! messages of a channel read the interval up to its 10th key, not the whole channel, so a
//! message appended after the 10th neither conflicts with it nor wakes it up.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::interval::{Interval, IntervalSet};

/// A stable number for one index of one table, assigned by the database catalog and
/// persisted; never reused for an index with other fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IndexId(pub u32);

impl fmt::Display for IndexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "index#{}", self.0)
    }
}

/// The index-key intervals a transaction scanned, per index.
///
/// A point read (`get(id)`) is a point interval on the table's `by_id` index; a range scan
/// is the interval from where it started to the last key it looked at (or the end of the
/// range when it ran out), filtered-out documents included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSet {
    indexes: BTreeMap<IndexId, IntervalSet>,
}

impl ReadSet {
    /// An empty read set.
    pub fn new() -> ReadSet {
        ReadSet::default()
    }

    /// Record that `interval` of `index` was read.
    pub fn record(&mut self, index: IndexId, interval: Interval) {
        if interval.is_empty() {
            return;
        }
        self.indexes.entry(index).or_default().insert(interval);
    }

    /// Record that exactly `key` of `index` was read.
    pub fn record_point(&mut self, index: IndexId, key: Vec<u8>) {
        self.record(index, Interval::point(key));
    }

    /// Whether a write of `key` in `index` touches what was read.
    pub fn contains(&self, index: IndexId, key: &[u8]) -> bool {
        self.indexes
            .get(&index)
            .is_some_and(|intervals| intervals.contains(key))
    }

    /// Add everything `other` read.
    pub fn extend(&mut self, other: &ReadSet) {
        for (index, interval) in other.iter() {
            self.record(index, interval);
        }
    }

    /// Every `(index, interval)` in index order then key order.
    pub fn iter(&self) -> impl Iterator<Item = (IndexId, Interval)> + '_ {
        self.indexes
            .iter()
            .flat_map(|(index, intervals)| intervals.iter().map(move |iv| (*index, iv)))
    }

    /// The indexes read from.
    pub fn indexes(&self) -> impl Iterator<Item = IndexId> + '_ {
        self.indexes.keys().copied()
    }

    /// How many disjoint intervals the set holds, over all indexes.
    pub fn num_intervals(&self) -> usize {
        self.indexes.values().map(IntervalSet::len).sum()
    }

    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.indexes.is_empty()
    }
}

/// The index keys a commit wrote: for every written document and every index of its
/// table, the key before the write and the key after (each once).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSet {
    keys: Vec<(IndexId, Vec<u8>)>,
}

impl WriteSet {
    /// An empty write set.
    pub fn new() -> WriteSet {
        WriteSet::default()
    }

    /// Record a write of `key` in `index`.
    pub fn push(&mut self, index: IndexId, key: Vec<u8>) {
        self.keys.push((index, key));
    }

    /// Every written `(index, key)`.
    pub fn iter(&self) -> impl Iterator<Item = (IndexId, &[u8])> + '_ {
        self.keys
            .iter()
            .map(|(index, key)| (*index, key.as_slice()))
    }

    /// The first written key that `read_set` covers.
    pub fn first_overlap(&self, read_set: &ReadSet) -> Option<(IndexId, &[u8])> {
        self.iter()
            .find(|(index, key)| read_set.contains(*index, key))
    }

    /// How many keys were written.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interval::IntervalEnd;

    #[test]
    fn a_point_read_conflicts_only_with_its_own_key() {
        let mut reads = ReadSet::new();
        reads.record_point(IndexId(1), b"doc-a".to_vec());
        assert!(reads.contains(IndexId(1), b"doc-a"));
        assert!(!reads.contains(IndexId(1), b"doc-b"));
        assert!(!reads.contains(IndexId(2), b"doc-a"), "other index");
    }

    #[test]
    fn a_write_set_finds_the_first_overlap() {
        let mut reads = ReadSet::new();
        reads.record(
            IndexId(7),
            Interval::new(b"m".to_vec(), IntervalEnd::Excluded(b"p".to_vec())),
        );
        let mut writes = WriteSet::new();
        writes.push(IndexId(7), b"a".to_vec());
        assert_eq!(writes.first_overlap(&reads), None);
        writes.push(IndexId(7), b"n".to_vec());
        assert_eq!(writes.first_overlap(&reads), Some((IndexId(7), &b"n"[..])));
    }
}
