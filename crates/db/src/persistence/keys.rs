//! The byte layout of the document log, the index log and metadata in an ordered
//! key-value store (sled, or the in-memory store), and the versioned scans over it.
//!
//! ```text
//! document version  'd' table:u32 internal:[16]       ts:u64  -> 0x00 (deleted) | 0x01 document
//! index change      'i' index:u32 escape(key) 00 01   ts:u64  -> 0x00 (removed) | 0x01 table:u32 internal:[16]
//! metadata          'm' name                                  -> blob
//! ```
//!
//! All integers are big-endian so byte order is numeric order. Index keys have variable
//! length, so they are escaped (`00` becomes `00 ff`) and terminated by `00 01`: the
//! escaped form is prefix-free and sorts exactly like the raw keys, which keeps all
//! versions of one key together and in timestamp order.

use conflux_common::{Error, Result};
use conflux_values::{DocumentId, TableNumber};

use super::{DocumentLogEntry, IndexEntry, Order};
use crate::interval::{Interval, IntervalEnd};
use crate::read_set::IndexId;
use crate::timestamp::Timestamp;

pub(crate) const DOCUMENT: u8 = b'd';
pub(crate) const INDEX: u8 = b'i';
pub(crate) const METADATA: u8 = b'm';

const TOMBSTONE: u8 = 0;
const PRESENT: u8 = 1;
const TERMINATOR: [u8; 2] = [0, 1];
const ID_LEN: usize = 20;

/// `'d' table internal`: the prefix of every version of one document.
pub(crate) fn document_prefix(id: &DocumentId) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + ID_LEN + 8);
    key.push(DOCUMENT);
    key.extend_from_slice(&id.table_number().0.to_be_bytes());
    key.extend_from_slice(id.internal_bytes());
    key
}

/// The key of the version of `id` written at `ts`.
pub(crate) fn document_key(id: &DocumentId, ts: Timestamp) -> Vec<u8> {
    let mut key = document_prefix(id);
    key.extend_from_slice(&ts.as_u64().to_be_bytes());
    key
}

/// `'d' table`: the prefix of every document of a table.
pub(crate) fn table_prefix(table: TableNumber) -> Vec<u8> {
    let mut key = vec![DOCUMENT];
    key.extend_from_slice(&table.0.to_be_bytes());
    key
}

/// The stored form of a document version.
pub(crate) fn document_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        Some(bytes) => {
            let mut out = Vec::with_capacity(bytes.len() + 1);
            out.push(PRESENT);
            out.extend_from_slice(bytes);
            out
        }
        None => vec![TOMBSTONE],
    }
}

/// Decode a document-log record.
pub(crate) fn decode_document(key: &[u8], value: &[u8]) -> Result<DocumentLogEntry> {
    if key.len() != 1 + ID_LEN + 8 || key[0] != DOCUMENT {
        return Err(corrupt("document key", key));
    }
    let id = decode_id(&key[1..1 + ID_LEN]).ok_or_else(|| corrupt("document key", key))?;
    let ts = decode_ts(&key[1 + ID_LEN..])?;
    let value = match value.split_first() {
        Some((&PRESENT, rest)) => Some(rest.to_vec()),
        Some((&TOMBSTONE, [])) => None,
        _ => return Err(corrupt("document value", value)),
    };
    Ok(DocumentLogEntry { id, ts, value })
}

fn decode_id(bytes: &[u8]) -> Option<DocumentId> {
    let table: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let internal: [u8; 16] = bytes.get(4..ID_LEN)?.try_into().ok()?;
    Some(DocumentId::from_parts(
        TableNumber(u32::from_be_bytes(table)),
        internal,
    ))
}

fn decode_ts(bytes: &[u8]) -> Result<Timestamp> {
    let raw: [u8; 8] = bytes.try_into().map_err(|_| corrupt("timestamp", bytes))?;
    Timestamp::new(u64::from_be_bytes(raw)).map_err(|_| corrupt("timestamp", bytes))
}

/// `'i' index`: the prefix of every entry of an index.
pub(crate) fn index_prefix(index: IndexId) -> Vec<u8> {
    let mut key = vec![INDEX];
    key.extend_from_slice(&index.0.to_be_bytes());
    key
}

fn escape_into(out: &mut Vec<u8>, raw: &[u8]) {
    for &byte in raw {
        out.push(byte);
        if byte == 0 {
            out.push(0xff);
        }
    }
}

/// The key of the change of `key` in `index` at `ts`.
pub(crate) fn index_key(index: IndexId, key: &[u8], ts: Timestamp) -> Vec<u8> {
    let mut out = index_prefix(index);
    out.reserve(key.len() + 2 + 8);
    escape_into(&mut out, key);
    out.extend_from_slice(&TERMINATOR);
    out.extend_from_slice(&ts.as_u64().to_be_bytes());
    out
}

/// The stored form of an index change.
pub(crate) fn index_value(id: Option<&DocumentId>) -> Vec<u8> {
    match id {
        Some(id) => {
            let mut out = Vec::with_capacity(1 + ID_LEN);
            out.push(PRESENT);
            out.extend_from_slice(&id.table_number().0.to_be_bytes());
            out.extend_from_slice(id.internal_bytes());
            out
        }
        None => vec![TOMBSTONE],
    }
}

/// The store-key bounds `[low, high)` holding every change of every key in `interval`.
pub(crate) fn index_bounds(index: IndexId, interval: &Interval) -> (Vec<u8>, Vec<u8>) {
    let prefix = index_prefix(index);
    let mut low = prefix.clone();
    escape_into(&mut low, &interval.start);
    let high = match &interval.end {
        IntervalEnd::Excluded(end) => {
            let mut high = prefix;
            escape_into(&mut high, end);
            high
        }
        IntervalEnd::Unbounded => bytes_successor(&prefix),
    };
    (low, high)
}

/// The smallest byte string after every string starting with `prefix` (which never is all
/// `0xff` here, since it starts with a tag byte below `0xff`).
pub(crate) fn bytes_successor(prefix: &[u8]) -> Vec<u8> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return next;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// Split a stored index key into (escaped key with terminator, ts) and unescape it.
fn split_index_key(stored: &[u8]) -> Result<(&[u8], Timestamp)> {
    let header = 1 + 4;
    if stored.len() < header + TERMINATOR.len() + 8 || stored[0] != INDEX {
        return Err(corrupt("index key", stored));
    }
    let (body, ts) = stored[header..].split_at(stored.len() - header - 8);
    Ok((body, decode_ts(ts)?))
}

fn unescape(body: &[u8]) -> Result<Vec<u8>> {
    let Some(escaped) = body.strip_suffix(&TERMINATOR) else {
        return Err(corrupt("index key", body));
    };
    let mut raw = Vec::with_capacity(escaped.len());
    let mut bytes = escaped.iter();
    while let Some(&byte) = bytes.next() {
        raw.push(byte);
        if byte == 0 && bytes.next() != Some(&0xff) {
            return Err(corrupt("index key", body));
        }
    }
    Ok(raw)
}

fn decode_index_value(value: &[u8]) -> Result<Option<DocumentId>> {
    match value.split_first() {
        Some((&PRESENT, rest)) if rest.len() == ID_LEN => Ok(decode_id(rest)),
        Some((&TOMBSTONE, [])) => Ok(None),
        _ => Err(corrupt("index value", value)),
    }
}

/// From raw index-log records in store order (`order`), the live entries at `read_ts`, at
/// most `limit` of them.
pub(crate) fn live_index_entries<K, V>(
    records: impl Iterator<Item = Result<(K, V)>>,
    order: Order,
    read_ts: Timestamp,
    limit: usize,
) -> Result<Vec<IndexEntry>>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    match order {
        Order::Asc => {
            // Versions of a key arrive oldest first: remember the latest visible one and
            // emit it when the key changes.
            let mut current: Option<(Vec<u8>, Option<DocumentId>)> = None;
            for record in records {
                let (key, value) = record?;
                let (body, ts) = split_index_key(key.as_ref())?;
                let same = current
                    .as_ref()
                    .is_some_and(|(group, _)| group.as_slice() == body);
                if !same {
                    if let Some((group, Some(id))) = current.take() {
                        out.push(IndexEntry {
                            key: unescape(&group)?,
                            id,
                        });
                        if out.len() >= limit {
                            return Ok(out);
                        }
                    }
                    current = Some((body.to_vec(), None));
                }
                if ts <= read_ts {
                    if let Some((_, visible)) = current.as_mut() {
                        *visible = decode_index_value(value.as_ref())?;
                    }
                }
            }
            if let Some((group, Some(id))) = current {
                out.push(IndexEntry {
                    key: unescape(&group)?,
                    id,
                });
            }
        }
        Order::Desc => {
            // Versions of a key arrive newest first: the first visible one decides.
            let mut decided: Option<Vec<u8>> = None;
            for record in records {
                let (key, value) = record?;
                let (body, ts) = split_index_key(key.as_ref())?;
                if decided.as_deref() == Some(body) || ts > read_ts {
                    continue;
                }
                decided = Some(body.to_vec());
                if let Some(id) = decode_index_value(value.as_ref())? {
                    out.push(IndexEntry {
                        key: unescape(body)?,
                        id,
                    });
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// What one step of the version collector found in a run of store records.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Sweep {
    /// Store keys no snapshot at or after the horizon can see.
    pub(crate) remove: Vec<Vec<u8>>,
    /// Records looked at.
    pub(crate) scanned: usize,
    /// Where the next step starts (inclusive), or `None` when the end was reached.
    pub(crate) resume: Option<Vec<u8>>,
}

/// The versions among `records` (raw document-log and index-log records in ascending
/// store order, starting at a group boundary or at a previous [`Sweep::resume`]) that no
/// snapshot at or after `horizon` can see, looking at about `budget` records.
///
/// Both logs store a versioned record as `group ts:u64 -> 0x00 (gone) | 0x01 ...`: a
/// snapshot at `t` sees, per group, the latest version at or before `t`. For every
/// snapshot at or after `horizon` that is a version newer than `horizon` or the *latest
/// version at or before `horizon`*, so every older version can go; and when that latest
/// version is a deletion, it can go too (with nothing older left, "no version" and "a
/// deletion" read the same). Metadata records are never touched.
pub(crate) fn sweep<K, V>(
    records: impl Iterator<Item = Result<(K, V)>>,
    horizon: Timestamp,
    budget: usize,
) -> Result<Sweep>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut sweep = Sweep::default();
    // The current group, and its latest version at or before the horizon so far
    // (key, deleted?).
    let mut group: Option<Vec<u8>> = None;
    let mut kept: Option<(Vec<u8>, bool)> = None;
    let finish_group = |kept: &mut Option<(Vec<u8>, bool)>, remove: &mut Vec<Vec<u8>>| {
        if let Some((key, true)) = kept.take() {
            remove.push(key);
        }
        *kept = None;
    };
    for record in records {
        let (key, value) = record?;
        let key = key.as_ref();
        if key.first() == Some(&METADATA) {
            continue;
        }
        if key.len() < 1 + 8 || !matches!(key[0], DOCUMENT | INDEX) {
            return Err(corrupt("versioned key", key));
        }
        let (body, ts) = key.split_at(key.len() - 8);
        let ts = decode_ts(ts)?;
        let deleted = match value.as_ref().first() {
            Some(&TOMBSTONE) => true,
            Some(&PRESENT) => false,
            _ => return Err(corrupt("versioned value", value.as_ref())),
        };
        let same_group = group.as_deref() == Some(body);
        if sweep.scanned >= budget {
            // Stop at a group boundary, or inside a group once it is decided or long.
            if !same_group {
                finish_group(&mut kept, &mut sweep.remove);
                sweep.resume = Some(key.to_vec());
                return Ok(sweep);
            }
            if ts > horizon {
                // Every later version of this group is newer than the horizon too: the
                // group is decided, skip the rest of it.
                finish_group(&mut kept, &mut sweep.remove);
                sweep.resume = Some(bytes_successor(body));
                return Ok(sweep);
            }
            if sweep.scanned >= budget.saturating_mul(4) {
                // A long run of old versions: the kept one is where the next step starts
                // (everything before it is removed by this step).
                sweep.resume = Some(match kept.take() {
                    Some((kept_key, _)) => kept_key,
                    None => key.to_vec(),
                });
                return Ok(sweep);
            }
        }
        sweep.scanned += 1;
        if !same_group {
            finish_group(&mut kept, &mut sweep.remove);
            group = Some(body.to_vec());
        }
        if ts <= horizon {
            if let Some((older, _)) = kept.replace((key.to_vec(), deleted)) {
                sweep.remove.push(older);
            }
        }
    }
    finish_group(&mut kept, &mut sweep.remove);
    Ok(sweep)
}

/// The metadata key for `name`.
pub(crate) fn metadata_key(name: &str) -> Vec<u8> {
    let mut key = vec![METADATA];
    key.extend_from_slice(name.as_bytes());
    key
}

/// The metadata name under which the greatest committed timestamp is kept.
pub(crate) const MAX_TS: &str = "max_ts";

/// Decode the stored greatest timestamp.
pub(crate) fn decode_max_ts(value: &[u8]) -> Result<Timestamp> {
    decode_ts(value)
}

fn corrupt(what: &str, bytes: &[u8]) -> Error {
    let shown: String = bytes.iter().take(48).map(|b| format!("{b:02x}")).collect();
    Error::internal(format!(
        "the store holds a corrupt {what} ({shown}); restore the data directory from a backup"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(value: u64) -> Timestamp {
        Timestamp::new(value).expect("small timestamps are valid")
    }

    proptest! {
        #[test]
        fn escaped_index_keys_sort_like_raw_keys(a in proptest::collection::vec(0u8..4, 0..6), b in proptest::collection::vec(0u8..4, 0..6), ta in 0u64..3, tb in 0u64..3) {
            let ka = index_key(IndexId(1), &a, ts(ta));
            let kb = index_key(IndexId(1), &b, ts(tb));
            if a != b {
                prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
            } else {
                prop_assert_eq!(ta.cmp(&tb), ka.cmp(&kb));
            }
            let (body, t) = split_index_key(&ka).expect("well formed");
            prop_assert_eq!(unescape(body).expect("well formed"), a.clone());
            prop_assert_eq!(t, ts(ta));
            // The bounds of an interval hold exactly the keys inside it.
            let interval = Interval::new(b.clone(), IntervalEnd::Excluded(crate::interval::successor(&b)));
            let (low, high) = index_bounds(IndexId(1), &interval);
            let inside = low <= ka && ka < high;
            prop_assert_eq!(inside, interval.contains(&a));
        }
    }

    /// What a snapshot at `at` sees of each group in a sorted store: the latest version at
    /// or before `at`, unless it is a deletion.
    fn visible(
        store: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        at: u64,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut latest: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
        for (key, value) in store.iter().filter(|(key, _)| key[0] != METADATA) {
            let (body, t) = key.split_at(key.len() - 8);
            if u64::from_be_bytes(t.try_into().expect("8 bytes")) <= at {
                latest.insert(body.to_vec(), value.clone());
            }
        }
        latest
            .into_iter()
            .filter(|(_, value)| value.first() == Some(&PRESENT))
            .collect()
    }

    proptest! {
        /// Collecting behind a horizon, in steps of any size, changes nothing any snapshot
        /// at or after the horizon reads, and leaves at most one version at or before the
        /// horizon per group.
        #[test]
        fn the_collector_keeps_every_snapshot_after_the_horizon(
            history in proptest::collection::vec((0u8..4, 1u64..40, proptest::bool::ANY, proptest::bool::ANY), 0..60),
            horizon in 0u64..45,
            budget in 1usize..8,
        ) {
            let doc = DocumentId::from_parts(TableNumber(1), [7; 16]);
            let mut store = std::collections::BTreeMap::new();
            store.insert(metadata_key(MAX_TS), vec![9]);
            for (group, t, is_index, deleted) in history {
                let value = if deleted { None } else { Some(&doc) };
                if is_index {
                    store.insert(index_key(IndexId(1), &[group, 0], ts(t)), index_value(value));
                } else {
                    let id = DocumentId::from_parts(TableNumber(1), [group; 16]);
                    let body = value.map(|_| b"{}".as_slice());
                    store.insert(document_key(&id, ts(t)), document_value(body));
                }
            }
            let before: Vec<_> = (horizon..=45).map(|at| visible(&store, at)).collect();
            let mut from: Vec<u8> = Vec::new();
            let mut steps = 0;
            loop {
                let records: Vec<Result<(Vec<u8>, Vec<u8>)>> = store
                    .range(from.clone()..)
                    .map(|(k, v)| Ok((k.clone(), v.clone())))
                    .collect();
                let step = sweep(records.into_iter(), ts(horizon), budget).expect("well formed");
                for key in step.remove {
                    prop_assert!(store.remove(&key).is_some());
                }
                steps += 1;
                prop_assert!(steps < 200, "the collector makes progress");
                match step.resume {
                    Some(next) => from = next,
                    None => break,
                }
            }
            let after: Vec<_> = (horizon..=45).map(|at| visible(&store, at)).collect();
            prop_assert_eq!(before, after);
            prop_assert!(store.contains_key(&metadata_key(MAX_TS)));
            let mut old_versions: std::collections::BTreeMap<Vec<u8>, usize> = Default::default();
            for key in store.keys().filter(|key| key[0] != METADATA) {
                let (body, t) = key.split_at(key.len() - 8);
                if u64::from_be_bytes(t.try_into().expect("8 bytes")) <= horizon {
                    *old_versions.entry(body.to_vec()).or_default() += 1;
                }
            }
            prop_assert!(old_versions.values().all(|count| *count == 1));
        }
    }

    #[test]
    fn scans_see_the_latest_version_at_the_snapshot() {
        let doc = DocumentId::from_parts(TableNumber(1), [7; 16]);
        let present = index_value(Some(&doc));
        let gone = index_value(None);
        // key "a": added at 1, removed at 3; key "b": added at 2.
        let mut records = [
            (index_key(IndexId(1), b"a", ts(1)), present.clone()),
            (index_key(IndexId(1), b"a", ts(3)), gone),
            (index_key(IndexId(1), b"b", ts(2)), present),
        ];
        records.sort();
        let scan = |order: Order, at: u64| -> Vec<Vec<u8>> {
            let items: Vec<Result<(Vec<u8>, Vec<u8>)>> = match order {
                Order::Asc => records.iter().cloned().map(Ok).collect(),
                Order::Desc => records.iter().rev().cloned().map(Ok).collect(),
            };
            live_index_entries(items.into_iter(), order, ts(at), 10)
                .expect("well formed")
                .into_iter()
                .map(|entry| entry.key)
                .collect()
        };
        assert_eq!(scan(Order::Asc, 1), vec![b"a".to_vec()]);
        assert_eq!(scan(Order::Asc, 2), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(scan(Order::Asc, 3), vec![b"b".to_vec()]);
        assert_eq!(scan(Order::Desc, 2), vec![b"b".to_vec(), b"a".to_vec()]);
        assert_eq!(scan(Order::Desc, 3), vec![b"b".to_vec()]);
        assert_eq!(scan(Order::Desc, 0), Vec::<Vec<u8>>::new());
    }
}
