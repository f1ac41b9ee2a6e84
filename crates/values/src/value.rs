//! [`Value`]: the eight Convex types, their total order and their hashing.
//!
//! The order is not a detail: indexes, `order("asc")`, pagination cursors and range reads
//! all depend on it, and [`crate::index_key`] must reproduce it byte for byte. That is why
//! `PartialEq`, `Ord` and `Hash` are written by hand around one rule for floats (see
//! [`Value::Float64`]).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use base64::Engine;

use crate::object::Object;
use crate::path::is_identifier;

/// A Convex value.
///
/// Values are ordered by type first (null < int64 < float64 < boolean < string < bytes <
/// array < object), then within a type: integers numerically, floats by their total order,
/// `false < true`, strings and bytes by their bytes, arrays element by element (a prefix
/// first), objects by their `(field, value)` pairs in field order.
#[derive(Clone, Debug)]
pub enum Value {
    /// `null`.
    Null,
    /// A 64-bit signed integer (`bigint` in JavaScript).
    Int64(i64),
    /// A 64-bit float (`number` in JavaScript).
    ///
    /// Compared by total order: `-Infinity < ... < -0 < 0 < ... < Infinity < NaN`. Every NaN
    /// equals every other NaN, whatever its bits, and encodes to the one canonical NaN.
    Float64(f64),
    /// `true` or `false`.
    Boolean(bool),
    /// A UTF-8 string.
    String(String),
    /// Raw bytes (`ArrayBuffer` in JavaScript).
    Bytes(Vec<u8>),
    /// An ordered list of values.
    Array(Vec<Value>),
    /// Named fields, kept sorted by name.
    Object(Object),
}

/// The sign bit of an IEEE 754 double.
const SIGN_BIT: u64 = 1 << 63;

/// Map a float to an unsigned integer whose order is the float total order used by
/// [`Value`]: negative numbers have all bits flipped, positive ones only the sign bit, and
/// every NaN becomes `u64::MAX` (after `+Infinity`, whose key is `0xfff0_0000_0000_0000`).
pub(crate) fn float_sort_key(x: f64) -> u64 {
    if x.is_nan() {
        return u64::MAX;
    }
    let bits = x.to_bits();
    if bits & SIGN_BIT != 0 {
        !bits
    } else {
        bits ^ SIGN_BIT
    }
}

/// The inverse of [`float_sort_key`], or `None` for a key that no float produces (a NaN
/// other than the canonical one).
pub(crate) fn float_from_sort_key(key: u64) -> Option<f64> {
    if key == u64::MAX {
        return Some(f64::NAN);
    }
    let bits = if key & SIGN_BIT != 0 {
        key ^ SIGN_BIT
    } else {
        !key
    };
    let x = f64::from_bits(bits);
    (!x.is_nan()).then_some(x)
}

impl Value {
    /// The type's name as validators and error messages spell it: `"null"`, `"int64"`,
    /// `"float64"`, `"boolean"`, `"string"`, `"bytes"`, `"array"` or `"object"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int64(_) => "int64",
            Value::Float64(_) => "float64",
            Value::Boolean(_) => "boolean",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// The position of the type in the sort order; also the first byte of its index key.
    pub(crate) fn type_rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Int64(_) => 1,
            Value::Float64(_) => 2,
            Value::Boolean(_) => 3,
            Value::String(_) => 4,
            Value::Bytes(_) => 5,
            Value::Array(_) => 6,
            Value::Object(_) => 7,
        }
    }

    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if this is a [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is a [`Value::Int64`].
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int64(i) => Some(*i),
            _ => None,
        }
    }

    /// The float, if this is a [`Value::Float64`]. Integers are not converted: `v.number()`
    /// and `v.int64()` are different types in Convex.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float64(x) => Some(*x),
            _ => None,
        }
    }

    /// The boolean, if this is a [`Value::Boolean`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The bytes, if this is a [`Value::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is a [`Value::Array`].
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The object, if this is a [`Value::Object`].
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(object) => Some(object),
            _ => None,
        }
    }

    /// The object, mutably, if this is a [`Value::Object`].
    pub fn as_object_mut(&mut self) -> Option<&mut Object> {
        match self {
            Value::Object(object) => Some(object),
            _ => None,
        }
    }

    /// How deeply arrays and objects are nested: 0 for a scalar, 1 for `[]` or `{"a": 1}`,
    /// 2 for `{"a": [1]}`. This is the number the nesting limits compare against.
    ///
    /// Recurses once per level; values decoded by this crate are at most
    /// [`conflux_common::knobs::VALUE_MAX_NESTING`] deep.
    pub fn nesting(&self) -> usize {
        match self {
            Value::Null
            | Value::Int64(_)
            | Value::Float64(_)
            | Value::Boolean(_)
            | Value::String(_)
            | Value::Bytes(_) => 0,
            Value::Array(items) => 1 + items.iter().map(Value::nesting).max().unwrap_or(0),
            Value::Object(object) => 1 + object.values().map(Value::nesting).max().unwrap_or(0),
        }
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Int64(a), Value::Int64(b)) => a.cmp(b),
            (Value::Float64(a), Value::Float64(b)) => float_sort_key(*a).cmp(&float_sort_key(*b)),
            (Value::Boolean(a), Value::Boolean(b)) => a.cmp(b),
            (Value::String(a), Value::String(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Array(a), Value::Array(b)) => a.cmp(b),
            (Value::Object(a), Value::Object(b)) => a.cmp(b),
            // Different types: the type order decides.
            _ => self.type_rank().cmp(&other.type_rank()),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(self.type_rank());
        match self {
            Value::Null => {}
            Value::Int64(i) => i.hash(state),
            // Equal floats (all NaNs) have equal keys, so hashing the key agrees with `Eq`.
            Value::Float64(x) => float_sort_key(*x).hash(state),
            Value::Boolean(b) => b.hash(state),
            Value::String(s) => s.hash(state),
            Value::Bytes(b) => b.hash(state),
            Value::Array(items) => items.hash(state),
            Value::Object(object) => object.hash(state),
        }
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int64(i)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float64(x)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

/// Bytes become [`Value::Bytes`], never an array of numbers.
impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Self {
        Value::Bytes(bytes)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::Array(items)
    }
}

impl From<Object> for Value {
    fn from(object: Object) -> Self {
        Value::Object(object)
    }
}

/// `None` becomes [`Value::Null`].
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(option: Option<T>) -> Self {
        match option {
            Some(value) => value.into(),
            None => Value::Null,
        }
    }
}

/// A readable, JavaScript-like rendering used in error messages: `5n` for an int64, `1.5`
/// for a float64, `"text"` for a string, `{body: "hi", n: 1}` for an object.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Int64(i) => write!(f, "{i}n"),
            Value::Float64(x) => write_js_number(f, *x),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::String(s) => write!(f, "{}", serde_json::Value::from(s.as_str())),
            Value::Bytes(b) => write!(
                f,
                "ArrayBuffer(\"{}\")",
                base64::engine::general_purpose::STANDARD.encode(b)
            ),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Object(object) => write!(f, "{object}"),
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if is_identifier(name) {
                write!(f, "{name}: {value}")?;
            } else {
                write!(f, "{}: {value}", serde_json::Value::from(name.as_str()))?;
            }
        }
        f.write_str("}")
    }
}

/// Print a float as JavaScript would, near enough for messages.
fn write_js_number(f: &mut fmt::Formatter<'_>, x: f64) -> fmt::Result {
    if x.is_nan() {
        f.write_str("NaN")
    } else if x.is_infinite() {
        f.write_str(if x > 0.0 { "Infinity" } else { "-Infinity" })
    } else if x == 0.0 && x.is_sign_negative() {
        f.write_str("-0")
    } else if x != 0.0 && (x.abs() >= 1e21 || x.abs() < 1e-6) {
        write!(f, "{x:e}")
    } else {
        write!(f, "{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_sort_by_total_order_with_nan_last() {
        let ordered = [
            f64::NEG_INFINITY,
            f64::MIN,
            -1.0,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
        ];
        for pair in ordered.windows(2) {
            assert!(
                Value::Float64(pair[0]) < Value::Float64(pair[1]),
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn every_nan_is_equal_and_hashes_alike() {
        use std::collections::hash_map::DefaultHasher;
        let quiet = Value::Float64(f64::NAN);
        let negative_payload = Value::Float64(f64::from_bits(0xfff8_0000_0000_0001));
        assert_eq!(quiet, negative_payload);
        let hash = |v: &Value| {
            let mut h = DefaultHasher::new();
            v.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&quiet), hash(&negative_payload));
        assert_ne!(Value::Float64(0.0), Value::Float64(-0.0));
    }

    #[test]
    fn float_sort_keys_invert_exactly() {
        for x in [
            f64::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-310,
            3.5,
            f64::INFINITY,
        ] {
            let back = float_from_sort_key(float_sort_key(x)).map(f64::to_bits);
            assert_eq!(back, Some(x.to_bits()));
        }
        assert!(float_from_sort_key(u64::MAX).is_some_and(f64::is_nan));
        // The key of a positive NaN that is not canonical is not produced by any float.
        assert_eq!(float_from_sort_key(0x7ff8_0000_0000_0000 ^ SIGN_BIT), None);
    }

    #[test]
    fn types_sort_in_convex_order() {
        let ordered = [
            Value::Null,
            Value::Int64(i64::MAX),
            Value::Float64(f64::NEG_INFINITY),
            Value::Boolean(false),
            Value::Boolean(true),
            Value::String(String::new()),
            Value::Bytes(vec![]),
            Value::Array(vec![]),
            Value::Object(Object::new()),
        ];
        for pair in ordered.windows(2) {
            assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn display_is_javascript_like() {
        let object = crate::object! {"body" => "hi", "n" => 5i64, "odd key" => 1.5};
        assert_eq!(
            Value::from(object).to_string(),
            r#"{body: "hi", n: 5n, "odd key": 1.5}"#
        );
        assert_eq!(Value::Float64(42.0).to_string(), "42");
        assert_eq!(Value::Float64(-0.0).to_string(), "-0");
        assert_eq!(Value::Float64(f64::NEG_INFINITY).to_string(), "-Infinity");
        assert_eq!(
            Value::Bytes(vec![1, 2, 3]).to_string(),
            "ArrayBuffer(\"AQID\")"
        );
        assert_eq!(
            Value::from(vec![Value::Null, Value::from(true)]).to_string(),
            "[null, true]"
        );
    }

    #[test]
    fn nesting_counts_container_levels() {
        assert_eq!(Value::Null.nesting(), 0);
        assert_eq!(Value::Array(vec![]).nesting(), 1);
        let nested = Value::Array(vec![Value::from(1i64), Value::Array(vec![Value::Null])]);
        assert_eq!(nested.nesting(), 2);
    }
}
