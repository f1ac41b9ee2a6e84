//! The size and shape limits of values and documents.
//!
//! Limits protect the server (a hostile argument must not exhaust the stack or memory) and
//! keep documents storable and sendable. Each limit is a knob in
//! [`conflux_common::knobs`], and every error names the limit, the knob and where in the
//! value it was exceeded, so a developer knows what to change.
//!
//! | limit | knob | applies to |
//! |---|---|---|
//! | nesting of arrays and objects ≤ 64 | `VALUE_MAX_NESTING` | every value ([`check_value`], decoding) |
//! | nesting ≤ 16 | `DOCUMENT_MAX_NESTING` | stored documents ([`check_document`]) |
//! | fields per object ≤ 1,024 | `OBJECT_MAX_FIELDS_COUNT` | every value |
//! | elements per array ≤ 8,192 | `ARRAY_MAX_ELEMENTS_COUNT` | every value |
//! | Convex JSON size ≤ 1 MiB | `DOCUMENT_MAX_BYTES` | stored documents |
//!
//! Nesting counts container levels: a document `{"a": 1}` is nested 1 level deep,
//! `{"a": [1]}` 2 levels.

use conflux_common::{knobs, Error, ErrorCode, Result};

use crate::format::thousands;
use crate::object::Object;
use crate::path::{at, PathSegment};
use crate::value::Value;

/// The limits in force for one check, read once from the knobs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// What is being checked, for messages: `"value"` or `"document"`.
    subject: &'static str,
    pub(crate) max_nesting: usize,
    nesting_knob: &'static str,
    max_fields: usize,
    max_elements: usize,
}

impl Limits {
    /// Limits of any value: arguments, results, values inside documents.
    pub(crate) fn for_values() -> Self {
        Limits {
            subject: "value",
            max_nesting: *knobs::VALUE_MAX_NESTING,
            nesting_knob: "VALUE_MAX_NESTING",
            max_fields: *knobs::OBJECT_MAX_FIELDS_COUNT,
            max_elements: *knobs::ARRAY_MAX_ELEMENTS_COUNT,
        }
    }

    /// Limits of a stored document (tighter nesting).
    fn for_documents() -> Self {
        Limits {
            subject: "document",
            max_nesting: *knobs::DOCUMENT_MAX_NESTING,
            nesting_knob: "DOCUMENT_MAX_NESTING",
            ..Limits::for_values()
        }
    }

    /// The error for a container at `path` that would be one level too deep.
    pub(crate) fn nesting_exceeded(&self, path: &[PathSegment<'_>]) -> Error {
        Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "{} is nested more than {} levels deep{}; the limit is {} ({}); flatten the data",
                self.subject,
                self.max_nesting,
                at(path),
                self.max_nesting,
                self.nesting_knob
            ),
        )
    }

    /// Refuse an object at `path` with more fields than allowed.
    pub(crate) fn check_fields(&self, count: usize, path: &[PathSegment<'_>]) -> Result<()> {
        if count <= self.max_fields {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "object{} has {} fields; the limit is {} (OBJECT_MAX_FIELDS_COUNT)",
                at(path),
                thousands(count),
                thousands(self.max_fields)
            ),
        ))
    }

    /// Refuse an array at `path` with more elements than allowed.
    pub(crate) fn check_elements(&self, count: usize, path: &[PathSegment<'_>]) -> Result<()> {
        if count <= self.max_elements {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "array{} has {} elements; the limit is {} (ARRAY_MAX_ELEMENTS_COUNT)",
                at(path),
                thousands(count),
                thousands(self.max_elements)
            ),
        ))
    }
}

/// Check the limits every value must meet: nesting at most `VALUE_MAX_NESTING`, at most
/// `OBJECT_MAX_FIELDS_COUNT` fields per object and `ARRAY_MAX_ELEMENTS_COUNT` elements per
/// array. Errors are [`ErrorCode::LimitExceeded`].
///
/// The walk stops at the nesting limit, so it is safe on values of any depth.
pub fn check_value(value: &Value) -> Result<()> {
    Walker::new(Limits::for_values()).value(value, 0)
}

/// Check the limits of a stored document: everything [`check_value`] checks, with nesting at
/// most `DOCUMENT_MAX_NESTING` (the document object itself is level 1), and a Convex JSON
/// encoding of at most `DOCUMENT_MAX_BYTES`. Errors are [`ErrorCode::LimitExceeded`].
///
/// ```
/// use conflux_values::{limits, object, Value};
/// let document = object! {"blob" => vec![0u8; 2 << 20]};
/// let err = limits::check_document(&document).unwrap_err();
/// assert!(err.message().contains("DOCUMENT_MAX_BYTES"));
/// ```
pub fn check_document(document: &Object) -> Result<()> {
    Walker::new(Limits::for_documents()).object(document, 0)?;
    let max_bytes = *knobs::DOCUMENT_MAX_BYTES;
    // Nesting is known to be bounded now, so measuring (which recurses) is safe.
    let size = document_size(document);
    if size > max_bytes {
        return Err(Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "document is {} bytes; the limit is {} (DOCUMENT_MAX_BYTES); store large data \
                 across several documents",
                thousands(size),
                thousands(max_bytes)
            ),
        ));
    }
    Ok(())
}

/// The size of a document as the limits measure it: the length of its Convex JSON text.
pub fn document_size(document: &Object) -> usize {
    crate::json::object_convex_json_len(document)
}

/// A depth-first walk that checks limits before descending.
struct Walker<'a> {
    limits: Limits,
    path: Vec<PathSegment<'a>>,
}

impl<'a> Walker<'a> {
    fn new(limits: Limits) -> Self {
        Walker {
            limits,
            path: Vec::new(),
        }
    }

    fn value(&mut self, value: &'a Value, depth: usize) -> Result<()> {
        match value {
            Value::Null
            | Value::Int64(_)
            | Value::Float64(_)
            | Value::Boolean(_)
            | Value::String(_)
            | Value::Bytes(_) => Ok(()),
            Value::Array(items) => {
                let level = self.enter(depth)?;
                self.limits.check_elements(items.len(), &self.path)?;
                for (index, item) in items.iter().enumerate() {
                    self.path.push(PathSegment::Index(index));
                    self.value(item, level)?;
                    self.path.pop();
                }
                Ok(())
            }
            Value::Object(object) => self.object(object, depth),
        }
    }

    fn object(&mut self, object: &'a Object, depth: usize) -> Result<()> {
        let level = self.enter(depth)?;
        self.limits.check_fields(object.len(), &self.path)?;
        for (name, item) in object {
            self.path.push(PathSegment::Field(name));
            self.value(item, level)?;
            self.path.pop();
        }
        Ok(())
    }

    fn enter(&self, depth: usize) -> Result<usize> {
        let level = depth + 1;
        if level > self.limits.max_nesting {
            return Err(self.limits.nesting_exceeded(&self.path));
        }
        Ok(level)
    }
}
