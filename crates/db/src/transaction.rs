//! Transactions: a consistent snapshot to read from, private writes, and a precise record
//! of what was read.
//!
//! A [`Transaction`] reads the database as of one commit timestamp (its snapshot), whatever
//! commits happen meanwhile, and sees its own writes on top ("read your writes"): writes are
//! kept in memory along with an *overlay* per index (the index keys the writes add and
//! remove), which range scans merge with the stored index. Nothing reaches storage until
//! [`crate::Database::commit`], which checks the [`ReadSet`] for conflicts.
//!
//! Every read records what it looked at: `get` records the document's key on the table's
//! `by_id` index; a query records the interval of index keys it scanned, stopping at the
//! last key it looked at. `patch`, `replace` and `delete` read the document first, so two
//! transactions writing the same document conflict.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use conflux_common::{Error, ErrorCode, Result};
use conflux_values::{limits, validator::ValidationError, validator::ValidationProblem};
use conflux_values::{DocumentId, Object, Value};

use crate::catalog::TableInfo;
use crate::database::Shared;
use crate::document::Document;
use crate::interval::{successor, Interval, IntervalEnd};
use crate::persistence::Order;
use crate::query::Query;
use crate::read_set::{IndexId, ReadSet};
use crate::retention::SnapshotPin;
use crate::schema::{CREATION_TIME_FIELD, ID_FIELD};
use crate::timestamp::Timestamp;

/// A document written by the transaction: its state at the snapshot and now.
#[derive(Debug)]
pub(crate) struct PendingWrite {
    pub(crate) table: Arc<TableInfo>,
    pub(crate) original: Option<Document>,
    pub(crate) current: Option<Document>,
}

/// Changes to apply with [`Transaction::apply_patch`]: fields to set and fields to remove,
/// validated together as one change.
///
/// ```
/// use conflux_db::Patch;
/// let patch = Patch::new().set("status", "done").remove("assignee");
/// # let _ = patch;
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Patch {
    set: Vec<(String, Value)>,
    remove: Vec<String>,
}

impl Patch {
    /// An empty patch.
    pub fn new() -> Patch {
        Patch::default()
    }

    /// Set top-level field `name` to `value` (`Value::Null` stores a null).
    pub fn set(mut self, name: impl Into<String>, value: impl Into<Value>) -> Patch {
        self.set.push((name.into(), value.into()));
        self
    }

    /// Remove top-level field `name` (Convex's `undefined`); removing a missing field is
    /// not an error.
    pub fn remove(mut self, name: impl Into<String>) -> Patch {
        self.remove.push(name.into());
        self
    }
}

impl From<Object> for Patch {
    fn from(fields: Object) -> Patch {
        Patch {
            set: fields.into_inner().into_iter().collect(),
            remove: Vec::new(),
        }
    }
}

/// A serializable transaction at a snapshot. See the module docs.
pub struct Transaction {
    pub(crate) shared: Arc<Shared>,
    pub(crate) snapshot: Timestamp,
    pub(crate) reads: ReadSet,
    pub(crate) writes: BTreeMap<DocumentId, PendingWrite>,
    overlay: HashMap<IndexId, BTreeMap<Vec<u8>, Option<DocumentId>>>,
    scanned: usize,
    /// Keeps the snapshot's versions from being collected while the transaction is open.
    _pin: SnapshotPin,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("snapshot", &self.snapshot)
            .field("read_intervals", &self.reads.num_intervals())
            .field("writes", &self.writes.len())
            .finish()
    }
}

impl Transaction {
    pub(crate) fn new(shared: Arc<Shared>, snapshot: Timestamp, pin: SnapshotPin) -> Transaction {
        Transaction {
            _pin: pin,
            shared,
            snapshot,
            reads: ReadSet::new(),
            writes: BTreeMap::new(),
            overlay: HashMap::new(),
            scanned: 0,
        }
    }

    /// The commit timestamp this transaction reads at.
    pub fn snapshot_ts(&self) -> Timestamp {
        self.snapshot
    }

    /// What the transaction read so far.
    pub fn read_set(&self) -> &ReadSet {
        &self.reads
    }

    /// The read set, consuming the transaction (for queries, whose read set drives a
    /// subscription).
    pub fn into_read_set(self) -> ReadSet {
        self.reads
    }

    /// Whether the transaction wrote nothing.
    pub fn is_read_only(&self) -> bool {
        self.writes.is_empty()
    }

    /// How many documents the transaction wrote.
    pub fn write_count(&self) -> usize {
        self.writes.len()
    }

    /// The document with id `id`, or `None` if it does not exist (or its table is not in
    /// the schema). Records a point read.
    pub fn get(&mut self, id: &DocumentId) -> Result<Option<Document>> {
        let Some(table) = self
            .shared
            .catalog
            .table_by_number(id.table_number())
            .cloned()
        else {
            return Ok(None);
        };
        self.read_document(&table, id)
    }

    /// Start a query on `table` (by default every document in creation order).
    pub fn query(&mut self, table: &str) -> Result<Query<'_>> {
        let table = self.shared.catalog.table(table)?.clone();
        Ok(Query::new(self, table))
    }

    /// Insert a document into `table` and return its new id.
    ///
    /// Fails with [`ErrorCode::UnknownTable`], [`ErrorCode::InvalidValue`] for fields
    /// starting with `_`, [`ErrorCode::LimitExceeded`] for oversize documents and
    /// [`ErrorCode::SchemaValidation`] when the table's validator rejects the document.
    pub fn insert(&mut self, table: &str, value: Object) -> Result<DocumentId> {
        let table = self.shared.catalog.table(table)?.clone();
        for name in value.keys() {
            if name.starts_with('_') {
                return Err(reserved_field(&table.name, name));
            }
        }
        self.check_document(&table, &value)?;
        let id = DocumentId::new(table.number);
        let creation_time = self.shared.next_creation_time();
        self.write(
            &table,
            id,
            Some(Document {
                id,
                creation_time,
                value,
            }),
        )?;
        Ok(id)
    }

    /// Insert a document exactly as it was exported: with its own `id` and creation time.
    /// Used by `import`, which restores a backup into an empty data folder.
    ///
    /// The id must belong to `table` in this database (same table number), must not exist
    /// yet, and the document must pass the same checks as [`Transaction::insert`].
    pub fn import(
        &mut self,
        table: &str,
        id: DocumentId,
        creation_time: f64,
        value: Object,
    ) -> Result<()> {
        let table = self.shared.catalog.table(table)?.clone();
        if id.table_number() != table.number {
            return Err(Error::new(
                ErrorCode::InvalidValue,
                format!(
                    "cannot import `{id}` into table `{}`: the id belongs to another table number; import into an empty data folder of the same app",
                    table.name
                ),
            ));
        }
        // `-0` is refused too: it is not a time, and an export would write it as
        // `{"$float": ...}`, which no import reads back.
        if !creation_time.is_finite() || creation_time.is_sign_negative() {
            return Err(Error::new(
                ErrorCode::InvalidValue,
                format!(
                    "cannot import `{id}`: `_creationTime` {creation_time} is not a valid time"
                ),
            ));
        }
        for name in value.keys() {
            if name.starts_with('_') {
                return Err(reserved_field(&table.name, name));
            }
        }
        self.check_document(&table, &value)?;
        if self.get(&id)?.is_some() {
            return Err(Error::new(
                ErrorCode::InvalidValue,
                format!(
                    "cannot import `{id}` into `{}`: a document with this id exists",
                    table.name
                ),
            ));
        }
        self.shared.observe_creation_time(creation_time);
        self.write(
            &table,
            id,
            Some(Document {
                id,
                creation_time,
                value,
            }),
        )
    }

    /// Set the given top-level fields of document `id` (a shallow merge). To remove fields
    /// use [`Transaction::patch_remove`] or [`Transaction::apply_patch`]. `_id` and
    /// `_creationTime` may be included if they are unchanged.
    pub fn patch(&mut self, id: &DocumentId, fields: Object) -> Result<()> {
        self.apply_patch(id, Patch::from(fields))
    }

    /// Remove the given top-level fields of document `id` (Convex's `undefined`).
    pub fn patch_remove(&mut self, id: &DocumentId, fields: &[&str]) -> Result<()> {
        let mut patch = Patch::new();
        for field in fields {
            patch = patch.remove(*field);
        }
        self.apply_patch(id, patch)
    }

    /// Set and remove fields of document `id` in one change, validated once.
    pub fn apply_patch(&mut self, id: &DocumentId, patch: Patch) -> Result<()> {
        let (table, existing) = self.existing(id, "patch")?;
        let mut value = existing.value.clone();
        for (name, new) in patch.set {
            if is_unchanged_system_field(&existing, &name, &new)? {
                continue;
            }
            if name.starts_with('_') {
                return Err(reserved_field(&table.name, &name));
            }
            value.insert(name, new)?;
        }
        for name in patch.remove {
            if name.starts_with('_') {
                return Err(reserved_field(&table.name, &name));
            }
            value.remove(&name);
        }
        self.check_document(&table, &value)?;
        self.write(
            &table,
            *id,
            Some(Document {
                id: *id,
                creation_time: existing.creation_time,
                value,
            }),
        )
    }

    /// Replace the user fields of document `id` with `value`. `_id` and `_creationTime`
    /// may be included if they are unchanged.
    pub fn replace(&mut self, id: &DocumentId, value: Object) -> Result<()> {
        let (table, existing) = self.existing(id, "replace")?;
        let mut fields = Object::new();
        for (name, new) in value.into_inner() {
            if is_unchanged_system_field(&existing, &name, &new)? {
                continue;
            }
            if name.starts_with('_') {
                return Err(reserved_field(&table.name, &name));
            }
            fields.insert(name, new)?;
        }
        self.check_document(&table, &fields)?;
        self.write(
            &table,
            *id,
            Some(Document {
                id: *id,
                creation_time: existing.creation_time,
                value: fields,
            }),
        )
    }

    /// Delete document `id`; fails with [`ErrorCode::DocumentNotFound`] if it does not
    /// exist.
    pub fn delete(&mut self, id: &DocumentId) -> Result<()> {
        let (table, _) = self.existing(id, "delete")?;
        self.write(&table, *id, None)
    }

    // ---- internals ----

    fn existing(&mut self, id: &DocumentId, verb: &str) -> Result<(Arc<TableInfo>, Document)> {
        let not_found = |table: Option<&str>| {
            let table = match table {
                Some(name) => format!(" in table `{name}`"),
                None => String::new(),
            };
            Error::new(
                ErrorCode::DocumentNotFound,
                format!("cannot {verb} document `{id}`{table}: it does not exist (it may have been deleted)"),
            )
        };
        let table = self
            .shared
            .catalog
            .table_by_number(id.table_number())
            .cloned()
            .ok_or_else(|| not_found(None))?;
        match self.read_document(&table, id)? {
            Some(doc) => Ok((table, doc)),
            None => Err(not_found(Some(&table.name))),
        }
    }

    fn read_document(&mut self, table: &TableInfo, id: &DocumentId) -> Result<Option<Document>> {
        let by_id = table.by_id();
        let key = crate::document::id_index_key(id);
        self.reads.record_point(by_id.id, key);
        if let Some(write) = self.writes.get(id) {
            return Ok(write.current.clone());
        }
        self.count_scanned(1)?;
        self.load(id)
    }

    /// The document at the snapshot, ignoring this transaction's writes.
    fn load(&self, id: &DocumentId) -> Result<Option<Document>> {
        match self.shared.persistence.document_at(id, self.snapshot)? {
            Some(entry) => match entry.value {
                Some(bytes) => Document::decode(*id, &bytes).map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    fn count_scanned(&mut self, count: usize) -> Result<()> {
        self.scanned += count;
        let limit = self.shared.options.max_scanned_documents;
        if self.scanned > limit {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "this transaction read more than {limit} documents \
                     (TRANSACTION_MAX_SCANNED_DOCUMENTS_COUNT); read a narrower index range, \
                     use take() or paginate()"
                ),
            ));
        }
        Ok(())
    }

    fn check_document(&self, table: &TableInfo, value: &Object) -> Result<()> {
        limits::check_document(value)
            .map_err(|err| err.context(format!("table `{}`", table.name)))?;
        if let Some(validator) = table.def.document_validator() {
            let catalog = &self.shared.catalog;
            let resolve = |id: &DocumentId| catalog.table_name_of(id);
            let as_value = Value::Object(value.clone());
            validator
                .check(&as_value, &resolve)
                .map_err(|err| schema_error(&table.name, &as_value, err))?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        table: &Arc<TableInfo>,
        id: DocumentId,
        new: Option<Document>,
    ) -> Result<()> {
        let before = match self.writes.get(&id) {
            Some(write) => write.current.clone(),
            None => {
                let limit = self.shared.options.max_written_documents;
                if self.writes.len() >= limit {
                    return Err(Error::new(
                        ErrorCode::LimitExceeded,
                        format!(
                            "this transaction writes more than {limit} documents \
                             (TRANSACTION_MAX_WRITTEN_DOCUMENTS_COUNT); split the work into \
                             several mutations"
                        ),
                    ));
                }
                self.load(&id)?
            }
        };
        for index in &table.indexes {
            let old_key = before.as_ref().map(|doc| doc.index_key(&index.fields));
            let new_key = new.as_ref().map(|doc| doc.index_key(&index.fields));
            if old_key == new_key {
                continue;
            }
            let overlay = self.overlay.entry(index.id).or_default();
            if let Some(old) = old_key {
                overlay.insert(old, None);
            }
            if let Some(new) = new_key {
                overlay.insert(new, Some(id));
            }
        }
        match self.writes.get_mut(&id) {
            Some(write) => write.current = new,
            None => {
                self.writes.insert(
                    id,
                    PendingWrite {
                        table: table.clone(),
                        original: before,
                        current: new,
                    },
                );
            }
        }
        Ok(())
    }

    // ---- scans, used by queries ----

    /// Start a scan of `range` of `index` in `order`.
    pub(crate) fn start_scan(&self, index: IndexId, range: Interval, order: Order) -> IndexScan {
        IndexScan {
            index,
            remaining: range.clone(),
            range,
            order,
            buffer: VecDeque::new(),
            source_exhausted: false,
            finished: false,
            last_key: None,
            page: 8,
        }
    }

    /// The next document of the scan with its index key, or `None` when the range is
    /// exhausted.
    pub(crate) fn scan_next(
        &mut self,
        scan: &mut IndexScan,
    ) -> Result<Option<(Vec<u8>, Document)>> {
        loop {
            if let Some((key, id)) = scan.buffer.pop_front() {
                self.count_scanned(1)?;
                let doc = match self.writes.get(&id) {
                    Some(write) => write.current.clone(),
                    None => self.load(&id)?,
                };
                let doc = doc.ok_or_else(|| {
                    Error::internal(format!(
                        "index {} has an entry for document {id}, which does not exist at ts {}",
                        scan.index, self.snapshot
                    ))
                })?;
                scan.last_key = Some(key.clone());
                return Ok(Some((key, doc)));
            }
            if scan.source_exhausted {
                scan.finished = true;
                return Ok(None);
            }
            self.fill(scan)?;
        }
    }

    fn fill(&self, scan: &mut IndexScan) -> Result<()> {
        let limit = scan.page;
        scan.page = (scan.page * 2).min(1024);
        let stored = self.shared.persistence.index_scan(
            scan.index,
            &scan.remaining,
            self.snapshot,
            scan.order,
            limit,
        )?;
        // The part of the remaining range this page covers completely: up to its last key
        // if the page is full, else all of it.
        let last_key = if stored.len() >= limit {
            stored.last().map(|entry| entry.key.clone())
        } else {
            None
        };
        let window = match (&last_key, scan.order) {
            (Some(last), Order::Asc) => Interval::new(
                scan.remaining.start.clone(),
                IntervalEnd::Excluded(successor(last)),
            ),
            (Some(last), Order::Desc) => Interval::new(last.clone(), scan.remaining.end.clone()),
            (None, _) => scan.remaining.clone(),
        };
        let mut merged: BTreeMap<Vec<u8>, Option<DocumentId>> = stored
            .into_iter()
            .map(|entry| (entry.key, Some(entry.id)))
            .collect();
        if let Some(overlay) = self.overlay.get(&scan.index) {
            let end = match &window.end {
                IntervalEnd::Excluded(end) => Bound::Excluded(end.clone()),
                IntervalEnd::Unbounded => Bound::Unbounded,
            };
            for (key, id) in overlay.range((Bound::Included(window.start.clone()), end)) {
                merged.insert(key.clone(), *id);
            }
        }
        let live = merged
            .into_iter()
            .filter_map(|(key, id)| id.map(|id| (key, id)));
        match scan.order {
            Order::Asc => scan.buffer.extend(live),
            Order::Desc => scan.buffer.extend(live.rev()),
        }
        match (last_key, scan.order) {
            (Some(last), Order::Asc) => scan.remaining.start = successor(&last),
            (Some(last), Order::Desc) => scan.remaining.end = IntervalEnd::Excluded(last),
            (None, _) => scan.source_exhausted = true,
        }
        Ok(())
    }

    /// Record what `scan` looked at in the read set: up to its last key, or the whole
    /// range if it ran to the end.
    pub(crate) fn finish_scan(&mut self, scan: &IndexScan) {
        let interval = if scan.finished {
            scan.range.clone()
        } else {
            match (&scan.last_key, scan.order) {
                (None, _) => return,
                (Some(last), Order::Asc) => Interval::new(
                    scan.range.start.clone(),
                    IntervalEnd::Excluded(successor(last)),
                ),
                (Some(last), Order::Desc) => Interval::new(last.clone(), scan.range.end.clone()),
            }
        };
        self.reads.record(scan.index, interval);
    }
}

/// A scan of one index range in progress.
#[derive(Debug)]
pub(crate) struct IndexScan {
    index: IndexId,
    /// The whole range asked for.
    range: Interval,
    order: Order,
    /// The part of `range` not yet fetched from storage.
    remaining: Interval,
    buffer: VecDeque<(Vec<u8>, DocumentId)>,
    source_exhausted: bool,
    /// Whether the scan returned `None`: the whole range was looked at.
    finished: bool,
    last_key: Option<Vec<u8>>,
    page: usize,
}

impl IndexScan {
    /// The key of the last document returned.
    pub(crate) fn last_key(&self) -> Option<&[u8]> {
        self.last_key.as_deref()
    }
}

fn reserved_field(table: &str, name: &str) -> Error {
    Error::new(
        ErrorCode::InvalidValue,
        format!(
            "table `{table}`: field `{name}` starts with `_`, which is reserved for system \
             fields (`_id`, `_creationTime`); rename the field"
        ),
    )
}

/// Whether `name: value` repeats the document's own `_id` or `_creationTime` (allowed in
/// patch and replace, so a client can send back a document it read); an error if it tries
/// to change them.
fn is_unchanged_system_field(existing: &Document, name: &str, value: &Value) -> Result<bool> {
    let current = match name {
        ID_FIELD => Value::String(existing.id.to_string()),
        CREATION_TIME_FIELD => Value::Float64(existing.creation_time),
        _ => return Ok(false),
    };
    if *value == current {
        Ok(true)
    } else {
        Err(Error::new(
            ErrorCode::InvalidValue,
            format!(
                "cannot change the system field `{name}` of document `{}`; leave it out",
                existing.id
            ),
        ))
    }
}

/// "table `messages`: field `body`: expected string, found float64", and the like.
fn schema_error(table: &str, document: &Value, err: ValidationError) -> Error {
    let field = err.path.trim_start_matches('.').to_owned();
    let at = if field.is_empty() {
        String::new()
    } else {
        format!("field `{field}`: ")
    };
    let message = match &err.problem {
        ValidationProblem::Mismatch => {
            let found = value_at_path(document, &err.path)
                .map(|value| value.type_name())
                .unwrap_or("a missing value");
            format!(
                "{at}expected {}, found {found} (value: {})",
                expected_name(&err.expected),
                err.found
            )
        }
        ValidationProblem::MissingField(name) => {
            let path = if field.is_empty() {
                name.clone()
            } else {
                format!("{field}.{name}")
            };
            format!(
                "field `{path}`: required by the schema but missing; add it or make it \
                 `v.optional(...)` (validator: {})",
                err.expected
            )
        }
        ValidationProblem::ExtraField(name) => {
            let path = if field.is_empty() {
                name.clone()
            } else {
                format!("{field}.{name}")
            };
            format!(
                "field `{path}`: not in the schema; remove it or add it to the table's \
                 validator"
            )
        }
        ValidationProblem::InvalidRecordKey(key) => format!(
            "{at}record key `{key}` does not match the record's key validator (validator: {})",
            err.expected
        ),
        ValidationProblem::IdFromOtherTable { id, table } => format!(
            "{at}expected an id of the table named in `{}`, found the id \"{id}\" of table \
             `{table}`",
            err.expected
        ),
        ValidationProblem::IdFromUnknownTable { id } => format!(
            "{at}expected an id of the table named in `{}`, found the id \"{id}\" of a table \
             that does not exist",
            err.expected
        ),
    };
    Error::new(
        ErrorCode::SchemaValidation,
        format!("table `{table}`: {message}"),
    )
}

/// `v.string()` reads as `string`; compound validators stay as written.
fn expected_name(validator: &str) -> String {
    match validator {
        "v.any()" => "any value".to_owned(),
        "v.null()" => "null".to_owned(),
        "v.boolean()" => "boolean".to_owned(),
        "v.string()" => "string".to_owned(),
        "v.number()" | "v.float64()" => "float64".to_owned(),
        "v.int64()" | "v.bigint()" => "int64".to_owned(),
        "v.bytes()" => "bytes".to_owned(),
        other => other.to_owned(),
    }
}

/// The value at a path as rendered by the validator (`.a.b[3]["odd name"]`).
fn value_at_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = root;
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after_dot) = rest.strip_prefix('.') {
            let end = after_dot.find(['.', '[']).unwrap_or(after_dot.len());
            current = current.as_object()?.get(&after_dot[..end])?;
            rest = &after_dot[end..];
        } else if let Some(inner) = rest.strip_prefix('[') {
            if inner.starts_with('"') {
                // A JSON string, then `]`.
                let mut stream = serde_json::Deserializer::from_str(inner).into_iter::<String>();
                let name = stream.next()?.ok()?;
                let used = stream.byte_offset();
                current = current.as_object()?.get(&name)?;
                rest = inner.get(used..)?.strip_prefix(']')?;
            } else {
                let end = inner.find(']')?;
                let index: usize = inner[..end].parse().ok()?;
                current = current.as_array()?.get(index)?;
                rest = &inner[end + 1..];
            }
        } else {
            return None;
        }
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_values::object;

    #[test]
    fn validator_paths_lead_to_the_offending_value() {
        let doc = Value::from(object! {
            "body" => 42.0,
            "tags" => vec![Value::from("a"), Value::from(7i64)],
            "two words" => object! {"x" => true},
        });
        assert_eq!(value_at_path(&doc, ".body"), Some(&Value::Float64(42.0)));
        assert_eq!(value_at_path(&doc, ".tags[1]"), Some(&Value::Int64(7)));
        assert_eq!(
            value_at_path(&doc, "[\"two words\"].x"),
            Some(&Value::Boolean(true))
        );
        assert_eq!(value_at_path(&doc, ".nope"), None);
        assert_eq!(value_at_path(&doc, ""), Some(&doc));
    }
}
