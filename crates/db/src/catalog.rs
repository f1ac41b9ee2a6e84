//! The catalog: stable numbers for tables and indexes, kept in persistence metadata.
//!
//! Document ids carry a table *number* and index entries an index *number*, so names can
//! be resolved from numbers after a restart and an index whose fields change gets a fresh
//! number instead of mixing old and new keys. At open the catalog is reconciled with the
//! schema in code:
//!
//! - a new table gets the next table number (numbers are never reused);
//! - a new index, or an index whose fields changed, gets the next index number, is built
//!   from every stored version of the table's documents (so it can be read at any retained
//!   snapshot), and only then becomes ready; an interrupted build restarts at the next open;
//! - an index or table no longer in the schema is retired: its data stays, its numbers are
//!   never reused, and queries cannot name it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use conflux_common::{Error, ErrorCode, Result};
use conflux_values::{DocumentId, TableNumber};
use serde::{Deserialize, Serialize};

use crate::document::{Document, FieldPath};
use crate::persistence::{IndexLogEntry, Persistence, WriteBatch};
use crate::read_set::IndexId;
use crate::schema::{IndexDef, Schema, TableDef, BY_CREATION_TIME, BY_ID};
use crate::timestamp::Timestamp;

const CATALOG_KEY: &str = "catalog";
/// Table numbers start here, as in Convex (small numbers are for system tables).
const FIRST_TABLE_NUMBER: u32 = 10_001;
/// Documents read per page while building an index.
const BACKFILL_PAGE: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum IndexState {
    /// Being built from the documents; not readable.
    Building,
    /// Built and maintained by every commit.
    Ready,
    /// No longer in the schema.
    Retired,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct IndexRecord {
    id: u32,
    table: String,
    name: String,
    fields: Vec<String>,
    state: IndexState,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct CatalogRecord {
    tables: BTreeMap<String, u32>,
    indexes: Vec<IndexRecord>,
    next_table: u32,
    next_index: u32,
}

/// An index of a table, resolved.
#[derive(Debug)]
pub(crate) struct IndexInfo {
    /// The stable number.
    pub(crate) id: IndexId,
    /// The name, e.g. `by_channel`.
    pub(crate) name: String,
    /// The key fields as declared (with `_creationTime` and `_id` appended).
    pub(crate) field_names: Vec<String>,
    /// The key fields, parsed.
    pub(crate) fields: Vec<FieldPath>,
}

/// A table, resolved.
#[derive(Debug)]
pub(crate) struct TableInfo {
    /// The name.
    pub(crate) name: String,
    /// The stable number.
    pub(crate) number: TableNumber,
    /// The declaration (validator).
    pub(crate) def: TableDef,
    /// `by_id` first, `by_creation_time` second, then the user indexes.
    pub(crate) indexes: Vec<IndexInfo>,
}

impl TableInfo {
    /// The `by_id` index.
    pub(crate) fn by_id(&self) -> &IndexInfo {
        &self.indexes[0]
    }

    /// The index names, for error messages.
    pub(crate) fn index_names(&self) -> String {
        self.indexes
            .iter()
            .map(|index| format!("`{}`", index.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The resolved catalog of an open database; immutable while it is open.
#[derive(Debug)]
pub(crate) struct Catalog {
    by_name: BTreeMap<String, Arc<TableInfo>>,
    by_number: HashMap<TableNumber, Arc<TableInfo>>,
    index_names: HashMap<IndexId, (String, String)>,
}

impl Catalog {
    /// Load the catalog, reconcile it with `schema`, build new indexes and persist it.
    pub(crate) fn open(persistence: &dyn Persistence, schema: &Schema) -> Result<Catalog> {
        let mut record = match persistence.metadata(CATALOG_KEY)? {
            Some(bytes) => serde_json::from_slice::<CatalogRecord>(&bytes).map_err(|err| {
                Error::internal(format!(
                    "the stored catalog of {} is corrupt: {err}",
                    persistence.describe()
                ))
            })?,
            None => CatalogRecord {
                next_table: FIRST_TABLE_NUMBER,
                next_index: 1,
                ..CatalogRecord::default()
            },
        };
        let before = serde_json::to_vec(&record).map_err(Error::internal)?;

        // Tables: assign numbers to new ones.
        for table in schema.tables() {
            if !record.tables.contains_key(table.name()) {
                let number = record.next_table;
                record.next_table = number
                    .checked_add(1)
                    .ok_or_else(|| Error::internal("out of table numbers"))?;
                record.tables.insert(table.name().to_owned(), number);
            }
        }

        // Indexes: keep those whose fields match, add the others, retire the rest.
        let mut wanted: Vec<(String, IndexDef)> = Vec::new();
        for table in schema.tables() {
            for index in table.indexes() {
                wanted.push((table.name().to_owned(), index));
            }
        }
        for existing in &mut record.indexes {
            let still_wanted = wanted.iter().any(|(table, index)| {
                *table == existing.table
                    && index.name() == existing.name
                    && index.key_fields() == existing.fields
            });
            if !still_wanted && existing.state != IndexState::Retired {
                tracing::info!(table = %existing.table, index = %existing.name, "retiring index");
                existing.state = IndexState::Retired;
            }
        }
        for (table, index) in &wanted {
            let known = record.indexes.iter().any(|existing| {
                existing.table == *table
                    && existing.name == index.name()
                    && existing.fields == index.key_fields()
                    && existing.state != IndexState::Retired
            });
            if !known {
                let id = record.next_index;
                record.next_index = id
                    .checked_add(1)
                    .ok_or_else(|| Error::internal("out of index numbers"))?;
                record.indexes.push(IndexRecord {
                    id,
                    table: table.clone(),
                    name: index.name().to_owned(),
                    fields: index.key_fields(),
                    state: IndexState::Building,
                });
            }
        }
        let after = serde_json::to_vec(&record).map_err(Error::internal)?;
        if after != before {
            write_catalog(persistence, &record)?;
        }

        // Build the indexes that are not ready yet (new ones, or interrupted builds).
        let building: Vec<IndexRecord> = record
            .indexes
            .iter()
            .filter(|index| index.state == IndexState::Building)
            .cloned()
            .collect();
        for index in building {
            let table = record.tables.get(&index.table).copied().ok_or_else(|| {
                Error::internal(format!("index {} names unknown table", index.name))
            })?;
            backfill(persistence, TableNumber(table), &index)?;
            for existing in &mut record.indexes {
                if existing.id == index.id {
                    existing.state = IndexState::Ready;
                }
            }
            write_catalog(persistence, &record)?;
        }

        // Resolve.
        let mut by_name = BTreeMap::new();
        let mut by_number = HashMap::new();
        let mut index_names = HashMap::new();
        for table in schema.tables() {
            let number =
                record.tables.get(table.name()).copied().ok_or_else(|| {
                    Error::internal(format!("table {} has no number", table.name()))
                })?;
            let mut indexes = Vec::new();
            for index in table.indexes() {
                let key_fields = index.key_fields();
                let stored = record
                    .indexes
                    .iter()
                    .find(|r| {
                        r.table == table.name()
                            && r.name == index.name()
                            && r.fields == key_fields
                            && r.state == IndexState::Ready
                    })
                    .ok_or_else(|| {
                        Error::internal(format!(
                            "index {}.{} is not ready after building",
                            table.name(),
                            index.name()
                        ))
                    })?;
                index_names.insert(
                    IndexId(stored.id),
                    (table.name().to_owned(), index.name().to_owned()),
                );
                indexes.push(IndexInfo {
                    id: IndexId(stored.id),
                    name: index.name().to_owned(),
                    fields: key_fields.iter().map(|f| FieldPath::parse(f)).collect(),
                    field_names: key_fields,
                });
            }
            debug_assert_eq!(indexes[0].name, BY_ID);
            debug_assert_eq!(indexes[1].name, BY_CREATION_TIME);
            let info = Arc::new(TableInfo {
                name: table.name().to_owned(),
                number: TableNumber(number),
                def: table.clone(),
                indexes,
            });
            by_number.insert(info.number, info.clone());
            by_name.insert(info.name.clone(), info);
        }
        Ok(Catalog {
            by_name,
            by_number,
            index_names,
        })
    }

    /// The table named `name`, or an [`ErrorCode::UnknownTable`] error listing the tables.
    pub(crate) fn table(&self, name: &str) -> Result<&Arc<TableInfo>> {
        self.by_name.get(name).ok_or_else(|| {
            let known = if self.by_name.is_empty() {
                "the schema declares no tables".to_owned()
            } else {
                format!(
                    "known tables: {}",
                    self.by_name
                        .keys()
                        .map(|name| format!("`{name}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Error::new(
                ErrorCode::UnknownTable,
                format!("table `{name}` does not exist ({known}); declare it in the schema"),
            )
        })
    }

    /// The table with number `number`, if it is in the schema.
    pub(crate) fn table_by_number(&self, number: TableNumber) -> Option<&Arc<TableInfo>> {
        self.by_number.get(&number)
    }

    /// The table name of an id, for `v.id(...)` validators.
    pub(crate) fn table_name_of(&self, id: &DocumentId) -> Option<String> {
        self.by_number
            .get(&id.table_number())
            .map(|table| table.name.clone())
    }

    /// `(table, index)` names of an index number.
    pub(crate) fn index_name(&self, index: IndexId) -> Option<&(String, String)> {
        self.index_names.get(&index)
    }

    /// The table names, sorted.
    pub(crate) fn table_names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}

fn write_catalog(persistence: &dyn Persistence, record: &CatalogRecord) -> Result<()> {
    let bytes = serde_json::to_vec(record).map_err(Error::internal)?;
    persistence.write(&WriteBatch {
        metadata: vec![(CATALOG_KEY.to_owned(), bytes)],
        ..WriteBatch::default()
    })
}

/// Build `index` from every stored version of the documents of `table`.
fn backfill(persistence: &dyn Persistence, table: TableNumber, index: &IndexRecord) -> Result<()> {
    let fields: Vec<FieldPath> = index.fields.iter().map(|f| FieldPath::parse(f)).collect();
    let id = IndexId(index.id);
    let mut after: Option<(DocumentId, Timestamp)> = None;
    // The key of the previous version of the current document.
    let mut previous: Option<(DocumentId, Option<Vec<u8>>)> = None;
    let mut built = 0usize;
    loop {
        let versions = persistence.document_versions(table, after, BACKFILL_PAGE)?;
        let Some(last) = versions.last() else {
            break;
        };
        after = Some((last.id, last.ts));
        let mut batch = WriteBatch::default();
        for version in &versions {
            let key = match &version.value {
                Some(bytes) => Some(Document::decode(version.id, bytes)?.index_key(&fields)),
                None => None,
            };
            let old = match &previous {
                Some((doc, old)) if *doc == version.id => old.clone(),
                _ => None,
            };
            if old != key {
                if let Some(old) = old {
                    batch.index_entries.push(IndexLogEntry {
                        index: id,
                        key: old,
                        ts: version.ts,
                        id: None,
                    });
                }
                if let Some(new) = &key {
                    batch.index_entries.push(IndexLogEntry {
                        index: id,
                        key: new.clone(),
                        ts: version.ts,
                        id: Some(version.id),
                    });
                }
            }
            previous = Some((version.id, key));
        }
        built += versions.len();
        persistence.write(&batch)?;
    }
    tracing::info!(table = %index.table, index = %index.name, versions = built, "index built");
    Ok(())
}
