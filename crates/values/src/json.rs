//! The two JSON encodings of [`Value`].
//!
//! - **Convex JSON** is the wire format of the official clients (protocol spec §5): JSON
//!   numbers are float64; int64, bytes and the floats JSON cannot hold (NaN, ±Infinity, -0)
//!   are one-key objects `{"$integer": ...}`, `{"$bytes": ...}`, `{"$float": ...}` carrying
//!   standard padded base64 of little-endian bytes. It round-trips every value exactly.
//! - **Clean JSON** is what the HTTP API returns for `format: "json"` (§6): int64 as a decimal
//!   string, bytes as a base64 string, non-finite floats as `"NaN"`, `"Infinity"` and
//!   `"-Infinity"`. It loses the types, so decoding it yields only null, booleans, float64,
//!   strings, arrays and objects.
//!
//! Decoding walks untrusted input: it checks the nesting depth *before* descending and the
//! element and field counts before reading them (see [`crate::limits`]), so a hostile
//! 100,000-level document is refused with an error instead of overflowing the stack.

use std::io;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use conflux_common::{Error, ErrorCode, Result};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Number, Value as Json};

use crate::format::quote_truncated;
use crate::limits::Limits;
use crate::object::{check_field_name, Object};
use crate::path::{render, PathSegment};
use crate::value::Value;

/// Whether a float must be sent as `{"$float": ...}` because JSON cannot hold it (or, for
/// -0, because JavaScript's `JSON.parse` would lose its sign).
fn needs_float_tag(x: f64) -> bool {
    !x.is_finite() || (x == 0.0 && x.is_sign_negative())
}

/// The bytes sent for a tagged float; every NaN is sent as the canonical quiet NaN so that
/// equal values always have equal encodings.
fn float_le_bytes(x: f64) -> [u8; 8] {
    let x = if x.is_nan() { f64::NAN } else { x };
    x.to_le_bytes()
}

fn tagged(tag: &str, bytes: &[u8]) -> Json {
    let mut map = Map::new();
    map.insert(tag.to_owned(), Json::String(BASE64.encode(bytes)));
    Json::Object(map)
}

impl Value {
    /// Decode a value from Convex JSON, checking field names, special forms and the value
    /// limits (nesting [`VALUE_MAX_NESTING`], [`OBJECT_MAX_FIELDS_COUNT`],
    /// [`ARRAY_MAX_ELEMENTS_COUNT`]).
    ///
    /// Errors are [`ErrorCode::InvalidValue`] (reserved or invalid field names, `$set` and
    /// `$map`, malformed `$integer`/`$float`/`$bytes`) or [`ErrorCode::LimitExceeded`], and
    /// name the path of the offending part.
    ///
    /// [`VALUE_MAX_NESTING`]: conflux_common::knobs::VALUE_MAX_NESTING
    /// [`OBJECT_MAX_FIELDS_COUNT`]: conflux_common::knobs::OBJECT_MAX_FIELDS_COUNT
    /// [`ARRAY_MAX_ELEMENTS_COUNT`]: conflux_common::knobs::ARRAY_MAX_ELEMENTS_COUNT
    pub fn from_convex_json(json: &Json) -> Result<Value> {
        Decoder::new(Mode::Convex).value(json, 0)
    }

    /// Encode as Convex JSON. Object fields come out sorted by name.
    pub fn to_convex_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Int64(i) => tagged("$integer", &i.to_le_bytes()),
            Value::Float64(x) => match Number::from_f64(*x) {
                Some(number) if !needs_float_tag(*x) => Json::Number(number),
                _ => tagged("$float", &float_le_bytes(*x)),
            },
            Value::Boolean(b) => Json::Bool(*b),
            Value::String(s) => Json::String(s.clone()),
            Value::Bytes(bytes) => tagged("$bytes", bytes),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_convex_json).collect()),
            Value::Object(object) => Json::Object(
                object
                    .iter()
                    .map(|(name, value)| (name.clone(), value.to_convex_json()))
                    .collect(),
            ),
        }
    }

    /// Encode as clean JSON: int64 as a decimal string, bytes as a standard base64 string,
    /// NaN and ±Infinity as `"NaN"`, `"Infinity"`, `"-Infinity"`.
    pub fn to_clean_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Int64(i) => Json::String(i.to_string()),
            Value::Float64(x) => match Number::from_f64(*x) {
                Some(number) => Json::Number(number),
                None if x.is_nan() => Json::String("NaN".to_owned()),
                None if *x > 0.0 => Json::String("Infinity".to_owned()),
                None => Json::String("-Infinity".to_owned()),
            },
            Value::Boolean(b) => Json::Bool(*b),
            Value::String(s) => Json::String(s.clone()),
            Value::Bytes(bytes) => Json::String(BASE64.encode(bytes)),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_clean_json).collect()),
            Value::Object(object) => Json::Object(
                object
                    .iter()
                    .map(|(name, value)| (name.clone(), value.to_clean_json()))
                    .collect(),
            ),
        }
    }

    /// Decode clean JSON: numbers become float64, strings stay strings, objects are plain
    /// (so `$`-prefixed names are refused like any invalid field name). The same limits as
    /// [`Value::from_convex_json`] apply.
    pub fn from_clean_json(json: &Json) -> Result<Value> {
        Decoder::new(Mode::Clean).value(json, 0)
    }

    /// The length in bytes of this value's Convex JSON text, computed without building it.
    /// This is the size that [`crate::limits::check_document`] compares against
    /// `DOCUMENT_MAX_BYTES`.
    pub fn convex_json_len(&self) -> usize {
        encoded_len(&ConvexJson(self))
    }
}

/// Counts the bytes serde_json writes.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serializes a [`Value`] straight to Convex JSON text, without building a
/// `serde_json::Value` first: `serde_json::to_writer(out, &ConvexJson(&value))` writes the
/// same text as `serde_json::to_writer(out, &value.to_convex_json())`.
#[derive(Clone, Copy, Debug)]
pub struct ConvexJson<'a>(pub &'a Value);

impl Serialize for ConvexJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        fn tag<S: Serializer>(
            serializer: S,
            tag: &str,
            bytes: &[u8],
        ) -> std::result::Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(tag, &BASE64.encode(bytes))?;
            map.end()
        }
        match self.0 {
            Value::Null => serializer.serialize_unit(),
            Value::Int64(i) => tag(serializer, "$integer", &i.to_le_bytes()),
            Value::Float64(x) if needs_float_tag(*x) => {
                tag(serializer, "$float", &float_le_bytes(*x))
            }
            Value::Float64(x) => serializer.serialize_f64(*x),
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::String(s) => serializer.serialize_str(s),
            Value::Bytes(bytes) => tag(serializer, "$bytes", bytes),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&ConvexJson(item))?;
                }
                seq.end()
            }
            Value::Object(object) => ObjectAsConvexJson(object).serialize(serializer),
        }
    }
}

/// [`ConvexJson`] for an object that is not wrapped in a [`Value`].
struct ObjectAsConvexJson<'a>(&'a Object);

impl Serialize for ObjectAsConvexJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, &ConvexJson(value))?;
        }
        map.end()
    }
}

/// The length of an object's Convex JSON text (see [`Value::convex_json_len`]).
pub(crate) fn object_convex_json_len(object: &Object) -> usize {
    encoded_len(&ObjectAsConvexJson(object))
}

fn encoded_len(value: &impl Serialize) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        // Serializing into a counter cannot fail; if it ever did, report "too large"
        // rather than a size that would let an oversized document through.
        Err(_) => usize::MAX,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Convex,
    Clean,
}

/// A depth-checked walk over untrusted JSON.
struct Decoder<'a> {
    mode: Mode,
    limits: Limits,
    /// Where the walk is; on error it is exactly the path of the offending part.
    path: Vec<PathSegment<'a>>,
}

impl<'a> Decoder<'a> {
    fn new(mode: Mode) -> Self {
        Decoder {
            mode,
            limits: Limits::for_values(),
            path: Vec::new(),
        }
    }

    /// An [`ErrorCode::InvalidValue`] error about the part at the current path.
    fn invalid(&self, message: impl Into<String>) -> Error {
        self.locate(Error::new(ErrorCode::InvalidValue, message))
    }

    fn locate(&self, err: Error) -> Error {
        if self.path.is_empty() {
            err
        } else {
            err.context(format_args!("In the value at {}", render(&self.path)))
        }
    }

    /// Enter a container one level below `depth`, refusing to go past the nesting limit.
    fn enter(&self, depth: usize) -> Result<usize> {
        let level = depth + 1;
        if level > self.limits.max_nesting {
            return Err(self.limits.nesting_exceeded(&self.path));
        }
        Ok(level)
    }

    fn value(&mut self, json: &'a Json, depth: usize) -> Result<Value> {
        match json {
            Json::Null => Ok(Value::Null),
            Json::Bool(b) => Ok(Value::Boolean(*b)),
            Json::Number(number) => number.as_f64().map(Value::Float64).ok_or_else(|| {
                self.invalid(format!("the number {number} cannot be held by a float64"))
            }),
            Json::String(s) => Ok(Value::String(s.clone())),
            Json::Array(items) => {
                let level = self.enter(depth)?;
                self.limits.check_elements(items.len(), &self.path)?;
                let mut out = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    self.path.push(PathSegment::Index(index));
                    out.push(self.value(item, level)?);
                    self.path.pop();
                }
                Ok(Value::Array(out))
            }
            Json::Object(map) => {
                if self.mode == Mode::Convex {
                    if let Some(special) = self.special_form(map)? {
                        return Ok(special);
                    }
                }
                let level = self.enter(depth)?;
                self.limits.check_fields(map.len(), &self.path)?;
                let mut object = Object::new();
                for (name, item) in map {
                    check_field_name(name).map_err(|err| self.locate(err))?;
                    self.path.push(PathSegment::Field(name));
                    let value = self.value(item, level)?;
                    self.path.pop();
                    object.insert_unchecked(name.clone(), value);
                }
                Ok(Value::Object(object))
            }
        }
    }

    /// Decode `{"$integer": ...}`, `{"$float": ...}` or `{"$bytes": ...}`; refuse every other
    /// use of a `$`-prefixed key. `Ok(None)` for an ordinary object.
    fn special_form(&self, map: &Map<String, Json>) -> Result<Option<Value>> {
        let Some((key, payload)) = map.iter().find(|(key, _)| key.starts_with('$')) else {
            return Ok(None);
        };
        match key.as_str() {
            "$integer" | "$float" | "$bytes" => {}
            "$set" | "$map" => {
                return Err(self.invalid(format!(
                    "`{key}` is no longer supported: Convex values no longer include sets and \
                     maps; send an array or an object instead"
                )))
            }
            "$commitTs" => {
                return Err(self.invalid(
                    "`$commitTs` placeholders are not supported by this server; write a \
                     timestamp value instead",
                ))
            }
            _ => {
                // Any other `$` name is reserved; `check_field_name` explains why.
                let err = match check_field_name(key) {
                    Err(err) => err,
                    Ok(()) => Error::new(
                        ErrorCode::InvalidValue,
                        format!("Field name {key:?} is reserved"),
                    ),
                };
                return Err(self.locate(err));
            }
        }
        if map.len() != 1 {
            let others: Vec<&str> = map
                .keys()
                .filter(|other| *other != key)
                .take(3)
                .map(String::as_str)
                .collect();
            return Err(self.invalid(format!(
                "`{key}` must be the only field of its object, but the object also has {others:?}"
            )));
        }
        let Json::String(text) = payload else {
            return Err(self.invalid(format!(
                "`{key}` must hold a base64 string, found {}",
                json_type_name(payload)
            )));
        };
        let bytes = BASE64.decode(text).map_err(|err| {
            self.invalid(format!(
                "`{key}` holds {}, which is not standard base64 with padding: {err}",
                quote_truncated(text, 64)
            ))
        })?;
        let value = match key.as_str() {
            "$bytes" => Value::Bytes(bytes),
            "$integer" => Value::Int64(i64::from_le_bytes(self.eight_bytes(key, &bytes)?)),
            _ => {
                let x = f64::from_le_bytes(self.eight_bytes(key, &bytes)?);
                if !needs_float_tag(x) {
                    return Err(self.invalid(format!(
                        "`$float` holds the ordinary number {x}, which must be sent as a JSON \
                         number; `$float` is only for NaN, Infinity, -Infinity and -0"
                    )));
                }
                Value::Float64(x)
            }
        };
        Ok(Some(value))
    }

    fn eight_bytes(&self, key: &str, bytes: &[u8]) -> Result<[u8; 8]> {
        <[u8; 8]>::try_from(bytes).map_err(|_| {
            self.invalid(format!(
                "`{key}` must hold exactly 8 bytes (little-endian), found {}",
                bytes.len()
            ))
        })
    }
}

fn json_type_name(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}
