//! The schema declared in code: tables, their document validators and their indexes.
//!
//! ```
//! use conflux_db::{Schema, TableDef};
//! use conflux_values::validator::v;
//!
//! let schema = Schema::new().table(
//!     TableDef::new("messages")
//!         .validator(v::object([("channel", v::string()), ("body", v::string())]))
//!         .index("by_channel", &["channel"]),
//! );
//! assert_eq!(schema.table_names(), vec!["messages"]);
//! ```
//!
//! Every table also has two built-in indexes, as in Convex: `by_id` (on `_id`) and
//! `by_creation_time` (on `_creationTime`). A user index on fields `[a, b]` is stored on
//! `[a, b, _creationTime, _id]`, so documents with equal fields come in creation order and
//! every key is unique.

use std::collections::{BTreeMap, BTreeSet};

use conflux_common::{Error, Result};
use conflux_values::validator::Validator;

/// The name of the built-in index on `_id`.
pub const BY_ID: &str = "by_id";
/// The name of the built-in index on `_creationTime`.
pub const BY_CREATION_TIME: &str = "by_creation_time";
/// The system field holding a document's id.
pub const ID_FIELD: &str = "_id";
/// The system field holding a document's creation time.
pub const CREATION_TIME_FIELD: &str = "_creationTime";

const NAME_MAX_LEN: usize = 64;
const INDEX_MAX_FIELDS: usize = 16;

/// An index declared on a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDef {
    name: String,
    fields: Vec<String>,
}

impl IndexDef {
    /// The index name, e.g. `by_channel`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The declared fields (dotted paths for nested fields), without the implicit
    /// `_creationTime` and `_id`.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The fields the index is actually ordered by: the declared ones, then
    /// `_creationTime` and `_id` as tie-breakers (only `_id` for `by_id`).
    pub fn key_fields(&self) -> Vec<String> {
        let mut fields = self.fields.clone();
        if self.name == BY_ID {
            return fields;
        }
        if self.name != BY_CREATION_TIME {
            fields.push(CREATION_TIME_FIELD.to_owned());
        }
        fields.push(ID_FIELD.to_owned());
        fields
    }
}

/// A table: its name, optionally a validator for its documents, and its indexes.
#[derive(Clone, Debug, PartialEq)]
pub struct TableDef {
    name: String,
    validator: Option<Validator>,
    indexes: Vec<IndexDef>,
    system: bool,
}

impl TableDef {
    /// A table named `name` without validator or user indexes.
    pub fn new(name: impl Into<String>) -> TableDef {
        TableDef {
            name: name.into(),
            validator: None,
            indexes: Vec::new(),
            system: false,
        }
    }

    /// A system table of Conflux itself (its name starts with `_`, like
    /// `_session_requests`), so it can never collide with an app's tables.
    pub fn system(name: impl Into<String>) -> TableDef {
        TableDef {
            system: true,
            ..TableDef::new(name)
        }
    }

    /// Whether this is a system table.
    pub fn is_system(&self) -> bool {
        self.system
    }

    /// Check every written document (its user fields, as an object) against `validator`.
    pub fn validator(mut self, validator: Validator) -> TableDef {
        self.validator = Some(validator);
        self
    }

    /// Declare index `name` on `fields` (dotted paths reach into nested objects).
    pub fn index(mut self, name: impl Into<String>, fields: &[&str]) -> TableDef {
        self.indexes.push(IndexDef {
            name: name.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        });
        self
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The document validator, if any.
    pub fn document_validator(&self) -> Option<&Validator> {
        self.validator.as_ref()
    }

    /// Every index of the table: `by_id`, `by_creation_time`, then the declared ones.
    pub fn indexes(&self) -> Vec<IndexDef> {
        let mut all = vec![
            IndexDef {
                name: BY_ID.to_owned(),
                fields: vec![ID_FIELD.to_owned()],
            },
            IndexDef {
                name: BY_CREATION_TIME.to_owned(),
                fields: vec![CREATION_TIME_FIELD.to_owned()],
            },
        ];
        all.extend(self.indexes.iter().cloned());
        all
    }

    fn check(&self) -> Result<()> {
        match (self.system, self.name.strip_prefix('_')) {
            (true, Some(rest)) => check_identifier("system table", rest)?,
            (true, None) => {
                return Err(Error::bad_request(format!(
                    "schema: system table `{}` must start with `_`",
                    self.name
                )))
            }
            (false, _) => check_identifier("table", &self.name)?,
        }
        let mut names = BTreeSet::new();
        for index in &self.indexes {
            let context = format!("schema: table `{}`: index `{}`", self.name, index.name);
            check_identifier("index", &index.name).map_err(|e| e.context(&context))?;
            if index.name == BY_ID || index.name == BY_CREATION_TIME {
                return Err(Error::bad_request(format!(
                    "{context}: the name is reserved for a built-in index; choose another name"
                )));
            }
            if !names.insert(index.name.as_str()) {
                return Err(Error::bad_request(format!(
                    "{context}: declared twice; index names must be unique per table"
                )));
            }
            if index.fields.is_empty() || index.fields.len() > INDEX_MAX_FIELDS {
                return Err(Error::bad_request(format!(
                    "{context}: has {} fields; an index needs 1 to {INDEX_MAX_FIELDS}",
                    index.fields.len()
                )));
            }
            let mut seen = BTreeSet::new();
            for field in &index.fields {
                if field.split('.').any(|part| part.starts_with('_')) {
                    return Err(Error::bad_request(format!(
                        "{context}: field `{field}` is a system field; `_creationTime` and `_id` \
                         are added to every index automatically"
                    )));
                }
                if field
                    .split('.')
                    .any(|part| !conflux_values::field_name_is_valid(part))
                {
                    return Err(Error::bad_request(format!(
                        "{context}: `{field}` is not a valid field path"
                    )));
                }
                if !seen.insert(field.as_str()) {
                    return Err(Error::bad_request(format!(
                        "{context}: field `{field}` appears twice"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn check_identifier(kind: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= NAME_MAX_LEN;
    if valid {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "schema: `{name}` is not a valid {kind} name; use 1 to {NAME_MAX_LEN} letters, digits \
             and underscores, starting with a letter"
        )))
    }
}

/// The tables of an application. See the module docs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schema {
    tables: BTreeMap<String, TableDef>,
    duplicates: Vec<String>,
}

impl Schema {
    /// A schema without tables.
    pub fn new() -> Schema {
        Schema::default()
    }

    /// Add a table.
    pub fn table(mut self, table: TableDef) -> Schema {
        if self.tables.contains_key(&table.name) {
            self.duplicates.push(table.name.clone());
        }
        self.tables.insert(table.name.clone(), table);
        self
    }

    /// The table named `name`.
    pub fn get(&self, name: &str) -> Option<&TableDef> {
        self.tables.get(name)
    }

    /// Every table, by name.
    pub fn tables(&self) -> impl Iterator<Item = &TableDef> {
        self.tables.values()
    }

    /// The table names, sorted.
    pub fn table_names(&self) -> Vec<&str> {
        self.tables.keys().map(String::as_str).collect()
    }

    /// Check names and indexes; the database refuses to open with an invalid schema.
    pub fn check(&self) -> Result<()> {
        if let Some(name) = self.duplicates.first() {
            return Err(Error::bad_request(format!(
                "schema: table `{name}` is declared twice"
            )));
        }
        for table in self.tables.values() {
            table.check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_indexes_end_with_creation_time_and_id() {
        let table = TableDef::new("messages").index("by_channel", &["channel"]);
        let names: Vec<_> = table
            .indexes()
            .iter()
            .map(|i| (i.name().to_owned(), i.key_fields()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("by_id".to_owned(), vec!["_id".to_owned()]),
                (
                    "by_creation_time".to_owned(),
                    vec!["_creationTime".to_owned(), "_id".to_owned()]
                ),
                (
                    "by_channel".to_owned(),
                    vec![
                        "channel".to_owned(),
                        "_creationTime".to_owned(),
                        "_id".to_owned()
                    ]
                ),
            ]
        );
    }

    #[test]
    fn invalid_schemas_are_refused_with_the_reason() {
        let reserved = Schema::new().table(TableDef::new("t").index("by_id", &["x"]));
        let err = reserved.check().expect_err("by_id is reserved");
        assert!(err.message().contains("reserved"), "{}", err.message());
        let system_field =
            Schema::new().table(TableDef::new("t").index("by_time", &["_creationTime"]));
        assert!(system_field.check().is_err());
        let bad_table = Schema::new().table(TableDef::new("_private"));
        assert!(bad_table.check().is_err());
        let twice = Schema::new()
            .table(TableDef::new("t"))
            .table(TableDef::new("t"));
        assert!(twice.check().is_err());
        assert!(Schema::new()
            .table(TableDef::new("ok_table").index("by_x", &["x", "y.z"]))
            .check()
            .is_ok());
    }
}
