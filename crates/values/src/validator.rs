//! Validators: the shapes that function arguments and schema documents must have.
//!
//! A [`Validator`] is what `v.string()`, `v.object({...})` and friends describe in a Convex
//! app. The functions layer checks arguments with it ([`Validator::validate`] gives an
//! [`ErrorCode::ArgumentValidation`] error) and the storage layer checks schema documents
//! ([`Validator::check`] gives a [`ValidationError`] that it turns into
//! [`ErrorCode::SchemaValidation`]). Both report the path of the first mismatch in the
//! words the official Convex backend uses, so messages look familiar to app developers.
//!
//! ```
//! use conflux_values::{object, v, DocumentId, Value};
//!
//! let args = v::object([
//!     ("body", v::string().into()),
//!     ("tags", v::optional(v::array(v::string()))),
//! ]);
//! let no_tables = |_: &DocumentId| None;
//! assert!(args.validate(&object! {"body" => "hi"}.into(), &no_tables).is_ok());
//!
//! let err = args.validate(&object! {"body" => 42.0}.into(), &no_tables).unwrap_err();
//! assert_eq!(
//!     err.message(),
//!     "Value does not match validator.\nPath: .body\nValue: 42\nValidator: v.string()"
//! );
//! ```

use std::collections::BTreeMap;
use std::fmt;

use conflux_common::{knobs, Error, ErrorCode, Result};
use serde_json::{json, Map, Value as Json};

use crate::format::truncate;
use crate::id::DocumentId;
use crate::path::{is_identifier, render, PathSegment};
use crate::value::Value;

/// Longest rendering of a value or validator quoted in a message.
const MESSAGE_MAX_CHARS: usize = 400;

/// The shape a value must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validator {
    /// `v.any()`: every value.
    Any,
    /// `v.null()`.
    Null,
    /// `v.boolean()`.
    Boolean,
    /// `v.string()`.
    String,
    /// `v.number()` / `v.float64()`: a float64 (an int64 does not match).
    Float64,
    /// `v.int64()` / `v.bigint()`.
    Int64,
    /// `v.bytes()`.
    Bytes,
    /// `v.id("table")`: a string that is the id of a document of that table.
    Id(String),
    /// `v.literal(value)`: exactly this value.
    Literal(Value),
    /// `v.array(element)`.
    Array(Box<Validator>),
    /// `v.object({...})`: exactly these fields (no others), optional ones may be missing.
    Object(BTreeMap<String, FieldValidator>),
    /// `v.record(keys, values)`: an object with any field names matching `keys` (checked as
    /// strings) whose values match `values`.
    Record(Box<Validator>, Box<Validator>),
    /// `v.union(...)`: any one of the variants (none for an empty union).
    Union(Vec<Validator>),
}

/// The validator of one field of [`Validator::Object`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldValidator {
    /// What the field's value must match.
    pub validator: Validator,
    /// Whether the field may be missing (`v.optional(...)`).
    pub optional: bool,
}

/// A required field.
impl From<Validator> for FieldValidator {
    fn from(validator: Validator) -> Self {
        FieldValidator {
            validator,
            optional: false,
        }
    }
}

/// Builders that read like the TypeScript `v` API.
///
/// Fields of [`object`](v::object) take anything that converts into a [`FieldValidator`]:
/// a [`Validator`] is a required field, [`optional`](v::optional) makes an optional one.
/// When a list mixes both, convert the required ones with `.into()`.
pub mod v {
    use super::{FieldValidator, Validator};
    use crate::value::Value;

    /// `v.any()`.
    pub fn any() -> Validator {
        Validator::Any
    }

    /// `v.null()`.
    pub fn null() -> Validator {
        Validator::Null
    }

    /// `v.boolean()`.
    pub fn boolean() -> Validator {
        Validator::Boolean
    }

    /// `v.string()`.
    pub fn string() -> Validator {
        Validator::String
    }

    /// `v.number()`: a float64.
    pub fn number() -> Validator {
        Validator::Float64
    }

    /// `v.float64()`: the same as [`number`].
    pub fn float64() -> Validator {
        Validator::Float64
    }

    /// `v.int64()`.
    pub fn int64() -> Validator {
        Validator::Int64
    }

    /// `v.bigint()`: the same as [`int64`].
    pub fn bigint() -> Validator {
        Validator::Int64
    }

    /// `v.bytes()`.
    pub fn bytes() -> Validator {
        Validator::Bytes
    }

    /// `v.id("table")`.
    pub fn id(table: impl Into<String>) -> Validator {
        Validator::Id(table.into())
    }

    /// `v.literal(value)`.
    pub fn literal(value: impl Into<Value>) -> Validator {
        Validator::Literal(value.into())
    }

    /// `v.array(element)`.
    pub fn array(element: Validator) -> Validator {
        Validator::Array(Box::new(element))
    }

    /// `v.object({...})`.
    pub fn object<K, F>(fields: impl IntoIterator<Item = (K, F)>) -> Validator
    where
        K: Into<String>,
        F: Into<FieldValidator>,
    {
        Validator::Object(
            fields
                .into_iter()
                .map(|(name, field)| (name.into(), field.into()))
                .collect(),
        )
    }

    /// `v.record(keys, values)`.
    pub fn record(keys: Validator, values: Validator) -> Validator {
        Validator::Record(Box::new(keys), Box::new(values))
    }

    /// `v.union(a, b, ...)`.
    pub fn union(variants: impl IntoIterator<Item = Validator>) -> Validator {
        Validator::Union(variants.into_iter().collect())
    }

    /// A required object field, for mixing with [`optional`] in one [`object`]:
    /// `v::object([("body", v::required(v::string())), ("channel", v::optional(v::string()))])`.
    pub fn required(validator: Validator) -> FieldValidator {
        FieldValidator {
            validator,
            optional: false,
        }
    }

    /// `args: {}`: a function that takes no arguments.
    pub fn no_args() -> Validator {
        Validator::Object(Default::default())
    }

    /// `v.optional(validator)`: an object field that may be missing.
    pub fn optional(validator: Validator) -> FieldValidator {
        FieldValidator {
            validator,
            optional: true,
        }
    }

    /// `v.union(validator, v.null())`, the common "nullable" shape.
    pub fn nullable(validator: Validator) -> Validator {
        Validator::Union(vec![validator, Validator::Null])
    }
}

/// What exactly did not match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValidationProblem {
    /// The value is not of the validator's type (or no union variant matched).
    Mismatch,
    /// An object lacks a required field.
    MissingField(String),
    /// An object has a field the validator does not list.
    ExtraField(String),
    /// A record has a field name that does not match the record's key validator.
    InvalidRecordKey(String),
    /// An id belongs to another table than the validator's.
    IdFromOtherTable {
        /// The id as the client sent it.
        id: String,
        /// The table the id belongs to.
        table: String,
    },
    /// A well-formed id whose table does not exist.
    IdFromUnknownTable {
        /// The id as the client sent it.
        id: String,
    },
}

/// Why a value does not match a validator, and where.
///
/// Convert with [`ValidationError::into_error`] to pick the code (argument or schema
/// validation), or with `Error::from` for [`ErrorCode::ArgumentValidation`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct ValidationError {
    /// Where the mismatch is, e.g. `.messages[3].body`; empty at the root.
    pub path: String,
    /// The validator that failed, rendered like `v.string()` (and cut if long).
    pub expected: String,
    /// The offending value, rendered like `42` or `{body: "hi"}` (and cut if long).
    pub found: String,
    /// What did not match.
    pub problem: ValidationProblem,
}

impl ValidationError {
    /// The message, in the words the Convex backend uses.
    pub fn message(&self) -> String {
        let path = if self.path.is_empty() {
            String::new()
        } else {
            format!("Path: {}\n", self.path)
        };
        let (value, validator) = (&self.found, &self.expected);
        match &self.problem {
            ValidationProblem::Mismatch => format!(
                "Value does not match validator.\n{path}Value: {value}\nValidator: {validator}"
            ),
            ValidationProblem::MissingField(field) => format!(
                "Object is missing the required field `{field}`. Consider wrapping the field \
                 validator in `v.optional(...)` if this is expected.\n\n{path}Object: \
                 {value}\nValidator: {validator}"
            ),
            ValidationProblem::ExtraField(field) => format!(
                "Object contains extra field `{field}` that is not in the validator.\n\n\
                 {path}Object: {value}\nValidator: {validator}"
            ),
            ValidationProblem::InvalidRecordKey(key) => format!(
                "Record key `{key}` does not match the record's key validator.\n\n{path}\
                 Object: {value}\nValidator: {validator}"
            ),
            ValidationProblem::IdFromOtherTable { id, table } => format!(
                "Found ID \"{id}\" from table `{table}`, which does not match the table name \
                 in validator `{validator}`.\n{path}"
            )
            .trim_end()
            .to_owned(),
            ValidationProblem::IdFromUnknownTable { id } => format!(
                "Found ID \"{id}\" from a table that does not exist, which does not match the \
                 table name in validator `{validator}`.\n{path}"
            )
            .trim_end()
            .to_owned(),
        }
    }

    /// The error with the given code (e.g. [`ErrorCode::SchemaValidation`]).
    pub fn into_error(self, code: ErrorCode) -> Error {
        Error::new(code, self.message())
    }
}

/// Argument validation is the common case.
impl From<ValidationError> for Error {
    fn from(err: ValidationError) -> Self {
        err.into_error(ErrorCode::ArgumentValidation)
    }
}

/// A failure found during the walk; rendered into a [`ValidationError`] only at the end.
struct Failure<'a> {
    value: &'a Value,
    validator: &'a Validator,
    problem: ValidationProblem,
}

struct Checker<'a, 'r> {
    resolve_table: &'r dyn Fn(&DocumentId) -> Option<String>,
    /// Where the walk is; after a failure, the path of the failure.
    path: Vec<PathSegment<'a>>,
}

impl<'a> Checker<'a, '_> {
    fn check(&mut self, validator: &'a Validator, value: &'a Value) -> Result<(), Failure<'a>> {
        let fail = |problem| Failure {
            value,
            validator,
            problem,
        };
        let matches = match (validator, value) {
            (Validator::Any, _)
            | (Validator::Null, Value::Null)
            | (Validator::Boolean, Value::Boolean(_))
            | (Validator::String, Value::String(_))
            | (Validator::Float64, Value::Float64(_))
            | (Validator::Int64, Value::Int64(_))
            | (Validator::Bytes, Value::Bytes(_)) => true,
            (Validator::Literal(literal), value) => literal == value,
            (Validator::Id(table), Value::String(text)) => {
                let Ok(id) = text.parse::<DocumentId>() else {
                    return Err(fail(ValidationProblem::Mismatch));
                };
                return match (self.resolve_table)(&id) {
                    Some(found) if found == *table => Ok(()),
                    Some(found) => Err(fail(ValidationProblem::IdFromOtherTable {
                        id: text.clone(),
                        table: found,
                    })),
                    None => Err(fail(ValidationProblem::IdFromUnknownTable {
                        id: text.clone(),
                    })),
                };
            }
            (Validator::Array(element), Value::Array(items)) => {
                for (index, item) in items.iter().enumerate() {
                    self.path.push(PathSegment::Index(index));
                    self.check(element, item)?;
                    self.path.pop();
                }
                true
            }
            (Validator::Object(fields), Value::Object(object)) => {
                if let Some((name, _)) = fields
                    .iter()
                    .find(|(name, field)| !field.optional && !object.contains_key(name))
                {
                    return Err(fail(ValidationProblem::MissingField(name.clone())));
                }
                for (name, item) in object {
                    let Some(field) = fields.get(name) else {
                        return Err(fail(ValidationProblem::ExtraField(name.clone())));
                    };
                    self.path.push(PathSegment::Field(name));
                    self.check(&field.validator, item)?;
                    self.path.pop();
                }
                true
            }
            (Validator::Record(keys, values), Value::Object(object)) => {
                for (name, item) in object {
                    if !self.matches(keys, &Value::String(name.clone())) {
                        return Err(fail(ValidationProblem::InvalidRecordKey(name.clone())));
                    }
                    self.path.push(PathSegment::Field(name));
                    self.check(values, item)?;
                    self.path.pop();
                }
                true
            }
            (Validator::Union(variants), value) => {
                variants.iter().any(|variant| self.matches(variant, value))
            }
            (
                Validator::Null
                | Validator::Boolean
                | Validator::String
                | Validator::Float64
                | Validator::Int64
                | Validator::Bytes
                | Validator::Id(_)
                | Validator::Array(_)
                | Validator::Object(_)
                | Validator::Record(..),
                _,
            ) => false,
        };
        if matches {
            Ok(())
        } else {
            Err(fail(ValidationProblem::Mismatch))
        }
    }

    /// Whether `value` matches. Used for union variants and record keys, whose inner
    /// failures are reported at the enclosing level; the value may be a temporary (a record
    /// key), so it gets a checker of its own.
    fn matches(&self, validator: &Validator, value: &Value) -> bool {
        Checker {
            resolve_table: self.resolve_table,
            path: Vec::new(),
        }
        .check(validator, value)
        .is_ok()
    }
}

impl Validator {
    /// Check `value`, with [`ErrorCode::ArgumentValidation`] on mismatch.
    ///
    /// `resolve_table` names the table of an id (or `None` if the table does not exist); it
    /// is how `v.id("users")` checks ids without this crate knowing about storage.
    pub fn validate(
        &self,
        value: &Value,
        resolve_table: &dyn Fn(&DocumentId) -> Option<String>,
    ) -> Result<()> {
        self.check(value, resolve_table).map_err(Error::from)
    }

    /// Check `value`, returning the details of the first mismatch.
    pub fn check(
        &self,
        value: &Value,
        resolve_table: &dyn Fn(&DocumentId) -> Option<String>,
    ) -> Result<(), ValidationError> {
        let mut checker = Checker {
            resolve_table,
            path: Vec::new(),
        };
        checker
            .check(self, value)
            .map_err(|failure| ValidationError {
                path: render(&checker.path),
                expected: truncate(failure.validator.to_string(), MESSAGE_MAX_CHARS),
                found: truncate(failure.value.to_string(), MESSAGE_MAX_CHARS),
                problem: failure.problem,
            })
    }

    /// The validator in the JSON form of Convex function specs, e.g.
    /// `{"type": "object", "value": {"body": {"fieldType": {"type": "string"}, "optional": false}}}`.
    pub fn to_json(&self) -> Json {
        match self {
            Validator::Any => json!({"type": "any"}),
            Validator::Null => json!({"type": "null"}),
            Validator::Boolean => json!({"type": "boolean"}),
            Validator::String => json!({"type": "string"}),
            Validator::Float64 => json!({"type": "number"}),
            Validator::Int64 => json!({"type": "bigint"}),
            Validator::Bytes => json!({"type": "bytes"}),
            Validator::Id(table) => json!({"type": "id", "tableName": table}),
            Validator::Literal(value) => {
                json!({"type": "literal", "value": value.to_convex_json()})
            }
            Validator::Array(element) => json!({"type": "array", "value": element.to_json()}),
            Validator::Object(fields) => {
                let fields: Map<String, Json> = fields
                    .iter()
                    .map(|(name, field)| {
                        let json = json!({
                            "fieldType": field.validator.to_json(),
                            "optional": field.optional,
                        });
                        (name.clone(), json)
                    })
                    .collect();
                json!({"type": "object", "value": fields})
            }
            Validator::Record(keys, values) => json!({
                "type": "record",
                "keys": keys.to_json(),
                "values": {"fieldType": values.to_json(), "optional": false},
            }),
            Validator::Union(variants) => json!({
                "type": "union",
                "value": variants.iter().map(Validator::to_json).collect::<Vec<_>>(),
            }),
        }
    }

    /// Read a validator from the JSON form of [`Validator::to_json`] (as the Convex CLI
    /// pushes it). Errors are [`ErrorCode::InvalidValue`] and name the path of the bad part;
    /// nesting deeper than `VALUE_MAX_NESTING` is refused before recursing.
    pub fn from_json(json: &Json) -> Result<Validator> {
        let mut parser = JsonParser {
            path: Vec::new(),
            max_nesting: *knobs::VALUE_MAX_NESTING,
        };
        parser.validator(json, 0)
    }
}

struct JsonParser<'a> {
    path: Vec<PathSegment<'a>>,
    max_nesting: usize,
}

impl<'a> JsonParser<'a> {
    fn invalid(&self, message: impl fmt::Display) -> Error {
        let at = if self.path.is_empty() {
            String::new()
        } else {
            format!(" at {}", render(&self.path))
        };
        Error::new(
            ErrorCode::InvalidValue,
            format!("Invalid validator{at}: {message}"),
        )
    }

    fn field(&self, object: &'a Map<String, Json>, name: &str) -> Result<&'a Json> {
        object
            .get(name)
            .ok_or_else(|| self.invalid(format_args!("missing `{name}`")))
    }

    fn nested(&mut self, json: &'a Json, step: PathSegment<'a>, depth: usize) -> Result<Validator> {
        self.path.push(step);
        let validator = self.validator(json, depth)?;
        self.path.pop();
        Ok(validator)
    }

    fn validator(&mut self, json: &'a Json, depth: usize) -> Result<Validator> {
        if depth >= self.max_nesting {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "validator is nested more than {} levels deep; the limit is {} \
                     (VALUE_MAX_NESTING)",
                    self.max_nesting, self.max_nesting
                ),
            ));
        }
        let level = depth + 1;
        let Json::Object(object) = json else {
            return Err(self.invalid("expected an object with a `type`"));
        };
        let Some(Json::String(kind)) = object.get("type") else {
            return Err(self.invalid("expected a string `type`"));
        };
        let validator = match kind.as_str() {
            "any" => Validator::Any,
            "null" => Validator::Null,
            "boolean" => Validator::Boolean,
            "string" => Validator::String,
            "number" | "float64" => Validator::Float64,
            "bigint" | "int64" => Validator::Int64,
            "bytes" => Validator::Bytes,
            "id" => match self.field(object, "tableName")? {
                Json::String(table) => Validator::Id(table.clone()),
                _ => return Err(self.invalid("`tableName` must be a string")),
            },
            "literal" => {
                let value = Value::from_convex_json(self.field(object, "value")?)
                    .map_err(|err| err.context(self.invalid("bad literal").message()))?;
                Validator::Literal(value)
            }
            "array" => {
                let element = self.field(object, "value")?;
                Validator::Array(Box::new(self.nested(
                    element,
                    PathSegment::Field("value"),
                    level,
                )?))
            }
            "object" => {
                let Json::Object(fields) = self.field(object, "value")? else {
                    return Err(self.invalid("`value` must be an object of fields"));
                };
                let mut out = BTreeMap::new();
                for (name, field) in fields {
                    self.path.push(PathSegment::Field(name));
                    let field = self.field_validator(field, level)?;
                    self.path.pop();
                    out.insert(name.clone(), field);
                }
                Validator::Object(out)
            }
            "record" => {
                let keys = self.field(object, "keys")?;
                let keys = self.nested(keys, PathSegment::Field("keys"), level)?;
                let values = self.field(object, "values")?;
                self.path.push(PathSegment::Field("values"));
                let values = self.field_validator(values, level)?.validator;
                self.path.pop();
                Validator::Record(Box::new(keys), Box::new(values))
            }
            "union" => {
                let Json::Array(variants) = self.field(object, "value")? else {
                    return Err(self.invalid("`value` must be an array of validators"));
                };
                let mut out = Vec::with_capacity(variants.len());
                for (index, variant) in variants.iter().enumerate() {
                    out.push(self.nested(variant, PathSegment::Index(index), level)?);
                }
                Validator::Union(out)
            }
            other => return Err(self.invalid(format_args!("unknown type {other:?}"))),
        };
        Ok(validator)
    }

    fn field_validator(&mut self, json: &'a Json, depth: usize) -> Result<FieldValidator> {
        let Json::Object(object) = json else {
            return Err(self.invalid("expected {\"fieldType\": ..., \"optional\": ...}"));
        };
        let optional = match object.get("optional") {
            None => false,
            Some(Json::Bool(optional)) => *optional,
            Some(_) => return Err(self.invalid("`optional` must be a boolean")),
        };
        let field_type = self.field(object, "fieldType")?;
        let validator = self.nested(field_type, PathSegment::Field("fieldType"), depth)?;
        Ok(FieldValidator {
            validator,
            optional,
        })
    }
}

/// Renders like the TypeScript that builds it: `v.object({body: v.string()})`.
impl fmt::Display for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Validator::Any => f.write_str("v.any()"),
            Validator::Null => f.write_str("v.null()"),
            Validator::Boolean => f.write_str("v.boolean()"),
            Validator::String => f.write_str("v.string()"),
            Validator::Float64 => f.write_str("v.number()"),
            Validator::Int64 => f.write_str("v.int64()"),
            Validator::Bytes => f.write_str("v.bytes()"),
            Validator::Id(table) => write!(f, "v.id({})", Json::from(table.as_str())),
            Validator::Literal(value) => write!(f, "v.literal({value})"),
            Validator::Array(element) => write!(f, "v.array({element})"),
            Validator::Object(fields) => {
                f.write_str("v.object({")?;
                for (i, (name, field)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if is_identifier(name) {
                        write!(f, "{name}: ")?;
                    } else {
                        write!(f, "{}: ", Json::from(name.as_str()))?;
                    }
                    if field.optional {
                        write!(f, "v.optional({})", field.validator)?;
                    } else {
                        write!(f, "{}", field.validator)?;
                    }
                }
                f.write_str("})")
            }
            Validator::Record(keys, values) => write!(f, "v.record({keys}, {values})"),
            Validator::Union(variants) => {
                f.write_str("v.union(")?;
                for (i, variant) in variants.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{variant}")?;
                }
                f.write_str(")")
            }
        }
    }
}
