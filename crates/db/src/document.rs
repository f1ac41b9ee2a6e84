//! Documents: user fields plus the system fields `_id` and `_creationTime`, and how they are
//! stored and indexed.
//!
//! The stored form is `01` (format version), the creation time as 8 big-endian bytes of an
//! `f64`, then the user fields as Convex JSON text. Convex JSON is lossless for every value
//! (int64, bytes, special floats), readable in a hex dump, and already implemented and
//! tested in `conflux-values`.

use conflux_common::{Error, Result};
use conflux_values::{index_key, DocumentId, Object, Value};

use crate::schema::{CREATION_TIME_FIELD, ID_FIELD};

const FORMAT_VERSION: u8 = 1;

/// A stored document.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// The document's id (`_id`).
    pub id: DocumentId,
    /// Milliseconds since the Unix epoch when it was inserted (`_creationTime`); unique and
    /// increasing within a database.
    pub creation_time: f64,
    /// The user fields (no field starts with `_`).
    pub value: Object,
}

impl Document {
    /// The document as clients see it: the user fields plus `_id` (a string) and
    /// `_creationTime` (a float64).
    pub fn to_object(&self) -> Object {
        let mut object = self.value.clone();
        // System field names are valid field names, so these inserts cannot fail.
        let _ = object.insert(ID_FIELD.to_owned(), Value::String(self.id.to_string()));
        let _ = object.insert(
            CREATION_TIME_FIELD.to_owned(),
            Value::Float64(self.creation_time),
        );
        object
    }

    /// [`Document::to_object`] as a [`Value`].
    pub fn to_value(&self) -> Value {
        Value::Object(self.to_object())
    }

    /// The value of a field by dotted path (`author.name`), system fields included;
    /// `None` when the field is missing.
    pub fn field(&self, path: &str) -> Option<Value> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut current = match first {
            ID_FIELD => {
                return Some(Value::String(self.id.to_string())).filter(|_| parts.next().is_none())
            }
            CREATION_TIME_FIELD => {
                return Some(Value::Float64(self.creation_time)).filter(|_| parts.next().is_none())
            }
            name => self.value.get(name)?,
        };
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current.clone())
    }

    /// The encoded key of this document in an index ordered by `fields`.
    pub(crate) fn index_key(&self, fields: &[FieldPath]) -> Vec<u8> {
        let mut key = Vec::with_capacity(32 * fields.len());
        for field in fields {
            match field {
                FieldPath::Id => {
                    index_key::push_component(&mut key, Some(&Value::String(self.id.to_string())))
                }
                FieldPath::CreationTime => {
                    index_key::push_component(&mut key, Some(&Value::Float64(self.creation_time)))
                }
                FieldPath::User(parts) => {
                    index_key::push_component(&mut key, lookup(&self.value, parts))
                }
            }
        }
        key
    }

    /// The stored form (see the module docs).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let json = Value::Object(self.value.clone()).to_convex_json();
        let text = json.to_string();
        let mut out = Vec::with_capacity(1 + 8 + text.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.creation_time.to_bits().to_be_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// Decode the stored form of document `id`.
    pub(crate) fn decode(id: DocumentId, bytes: &[u8]) -> Result<Document> {
        let corrupt = |why: &str| {
            Error::internal(format!(
                "stored document {id} is corrupt ({why}); restore the data directory from a backup"
            ))
        };
        let (&version, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
        if version != FORMAT_VERSION {
            return Err(corrupt(&format!("unknown format version {version}")));
        }
        let (time, text) = rest
            .split_at_checked(8)
            .ok_or_else(|| corrupt("truncated"))?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(time);
        let creation_time = f64::from_bits(u64::from_be_bytes(raw));
        let json: serde_json::Value =
            serde_json::from_slice(text).map_err(|err| corrupt(&err.to_string()))?;
        match Value::from_convex_json(&json).map_err(|err| corrupt(err.message()))? {
            Value::Object(value) => Ok(Document {
                id,
                creation_time,
                value,
            }),
            other => Err(corrupt(&format!(
                "a {} instead of an object",
                other.type_name()
            ))),
        }
    }
}

/// The key of document `id` in its table's `by_id` index.
pub(crate) fn id_index_key(id: &DocumentId) -> Vec<u8> {
    index_key::encode(&[Some(Value::String(id.to_string()))])
}

fn lookup<'a>(object: &'a Object, parts: &[String]) -> Option<&'a Value> {
    let (first, rest) = parts.split_first()?;
    let mut current = object.get(first)?;
    for part in rest {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// A field an index is ordered by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FieldPath {
    /// `_id`.
    Id,
    /// `_creationTime`.
    CreationTime,
    /// A user field, split at dots.
    User(Vec<String>),
}

impl FieldPath {
    /// Parse a declared field (`_id`, `_creationTime` or a dotted user path).
    pub(crate) fn parse(field: &str) -> FieldPath {
        match field {
            ID_FIELD => FieldPath::Id,
            CREATION_TIME_FIELD => FieldPath::CreationTime,
            path => FieldPath::User(path.split('.').map(str::to_owned).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_values::{object, TableNumber};

    fn doc() -> Document {
        Document {
            id: DocumentId::new(TableNumber(3)),
            creation_time: 1_700_000_000_123.25,
            value: object! {
                "body" => "hi",
                "count" => 5i64,
                "author" => object! {"name" => "ada"},
            },
        }
    }

    #[test]
    fn documents_round_trip_through_their_stored_form() {
        let doc = doc();
        let decoded = Document::decode(doc.id, &doc.encode()).expect("decodes");
        assert_eq!(decoded, doc);
        assert!(Document::decode(doc.id, &[9, 1, 2]).is_err());
        assert!(Document::decode(doc.id, &[]).is_err());
    }

    #[test]
    fn fields_are_found_by_dotted_path() {
        let doc = doc();
        assert_eq!(doc.field("author.name"), Some(Value::from("ada")));
        assert_eq!(doc.field("author.age"), None);
        assert_eq!(doc.field("body.length"), None);
        assert_eq!(doc.field("_id"), Some(Value::String(doc.id.to_string())));
        assert_eq!(
            doc.field("_creationTime"),
            Some(Value::Float64(1_700_000_000_123.25))
        );
        let object = doc.to_object();
        assert_eq!(object.len(), 5);
    }

    #[test]
    fn index_keys_follow_the_field_values() {
        let doc = doc();
        let fields = [
            FieldPath::parse("author.name"),
            FieldPath::parse("missing"),
            FieldPath::parse("_creationTime"),
        ];
        let expected = index_key::encode(&[
            Some(Value::from("ada")),
            None,
            Some(Value::Float64(doc.creation_time)),
        ]);
        assert_eq!(doc.index_key(&fields), expected);
    }
}
