//! Index keys: tuples of values as bytes whose `memcmp` order is the order of the values.
//!
//! The storage layer keeps every index in an ordered byte store, so range reads, `order`,
//! and pagination cursors all rest on one property, proven by the property tests of this
//! crate:
//!
//! > for tuples `a` and `b` of `Option<Value>`, `encode(a).cmp(&encode(b)) == a.cmp(&b)`,
//! > where `None` (a field missing from the document) sorts before `Some(Value::Null)`.
//!
//! # Format
//!
//! A key is the concatenation of its components; each component is self-delimiting, so the
//! key of a tuple prefix is a byte prefix of the key of the whole tuple, and
//! `[encode(prefix), prefix_successor(encode(prefix)))` is the range of every key starting
//! with that prefix.
//!
//! | component | bytes |
//! |---|---|
//! | missing (`None`) | `01` |
//! | null | `02` |
//! | int64 | `03`, 8 bytes big-endian with the sign bit flipped |
//! | float64 | `04`, 8 bytes big-endian of the float's order key (negative: all bits flipped; positive: sign bit flipped; every NaN: `ff..ff`) |
//! | boolean | `05`, then `00` or `01` |
//! | string | `06`, UTF-8 with each `00` written `00 ff`, then `00 00` |
//! | bytes | `07`, escaped like strings, then `00 00` |
//! | array | `08`, each element as a component, then `00` |
//! | object | `09`, per field in name order `01` + the name escaped like a string + the value, then `00` |
//!
//! Type tags rise with the type order, so different types compare by their tags. The
//! terminators are smaller than anything that can follow in their place (`00 00` against
//! `00 ff` or a non-zero byte; `00` against any tag or the field marker `01`), so a shorter
//! string, array or object sorts before a longer one that extends it.

use conflux_common::{knobs, Error, Result};

use crate::object::{field_name_is_valid, Object};
use crate::value::{float_from_sort_key, float_sort_key, Value};

const TAG_MISSING: u8 = 0x01;
const TAG_NULL: u8 = 0x02;
const TAG_INT64: u8 = 0x03;
const TAG_FLOAT64: u8 = 0x04;
const TAG_BOOLEAN: u8 = 0x05;
const TAG_STRING: u8 = 0x06;
const TAG_BYTES: u8 = 0x07;
const TAG_ARRAY: u8 = 0x08;
const TAG_OBJECT: u8 = 0x09;

/// Ends an array or an object; first byte of the string terminator `00 00`.
const END: u8 = 0x00;
/// Starts each field of an object.
const FIELD: u8 = 0x01;
/// Follows a `00` that is part of the data of a string or bytes.
const ESCAPED_ZERO: u8 = 0xff;

/// Nesting deeper than this is refused when decoding, whatever the knobs say, so that a
/// corrupt key cannot overflow the stack.
const DECODE_MIN_NESTING_CAP: usize = 256;

/// Encode a tuple of optional values (`None` = the field is missing).
///
/// ```
/// use conflux_values::{index_key, Value};
/// let missing = index_key::encode(&[None]);
/// let null = index_key::encode(&[Some(Value::Null)]);
/// let five = index_key::encode(&[Some(Value::Int64(5))]);
/// assert!(missing < null && null < five);
/// assert_eq!(index_key::decode(&five)?, vec![Some(Value::Int64(5))]);
/// # Ok::<(), conflux_common::Error>(())
/// ```
pub fn encode(values: &[Option<Value>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, values);
    out
}

/// Append the encoding of a tuple to `out` (for keys with a prefix of their own, such as
/// an index number).
pub fn encode_into(out: &mut Vec<u8>, values: &[Option<Value>]) {
    for value in values {
        push_component(out, value.as_ref());
    }
}

/// Append one component to `out`, borrowing the value: building a key from a document's
/// fields needs no clones.
pub fn push_component(out: &mut Vec<u8>, value: Option<&Value>) {
    match value {
        None => out.push(TAG_MISSING),
        Some(value) => push_value(out, value),
    }
}

fn push_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Int64(i) => {
            out.push(TAG_INT64);
            out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float64(x) => {
            out.push(TAG_FLOAT64);
            out.extend_from_slice(&float_sort_key(*x).to_be_bytes());
        }
        Value::Boolean(b) => {
            out.push(TAG_BOOLEAN);
            out.push(u8::from(*b));
        }
        Value::String(s) => {
            out.push(TAG_STRING);
            push_escaped(out, s.as_bytes());
        }
        Value::Bytes(bytes) => {
            out.push(TAG_BYTES);
            push_escaped(out, bytes);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            for item in items {
                push_value(out, item);
            }
            out.push(END);
        }
        Value::Object(object) => {
            out.push(TAG_OBJECT);
            for (name, item) in object {
                out.push(FIELD);
                push_escaped(out, name.as_bytes());
                push_value(out, item);
            }
            out.push(END);
        }
    }
}

fn push_escaped(out: &mut Vec<u8>, data: &[u8]) {
    for &byte in data {
        out.push(byte);
        if byte == 0 {
            out.push(ESCAPED_ZERO);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Decode a key made by [`encode`].
///
/// Keys come from storage, so a malformed one means corruption or a bug, not bad user
/// input: the error is [`conflux_common::ErrorCode::Internal`], with the offset and the
/// problem in its detail.
pub fn decode(bytes: &[u8]) -> Result<Vec<Option<Value>>> {
    let mut reader = Reader {
        bytes,
        pos: 0,
        max_nesting: (*knobs::VALUE_MAX_NESTING).max(DECODE_MIN_NESTING_CAP),
    };
    let mut values = Vec::new();
    while let Some(tag) = reader.next_byte() {
        if tag == TAG_MISSING {
            values.push(None);
        } else {
            values.push(Some(reader.value(tag, 0)?));
        }
    }
    Ok(values)
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// if there is none (the prefix is empty or all `ff`): the exclusive end of a prefix scan.
///
/// ```
/// use conflux_values::index_key::prefix_successor;
/// assert_eq!(prefix_successor(&[1, 2]), Some(vec![1, 3]));
/// assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
/// assert_eq!(prefix_successor(&[0xff]), None);
/// ```
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&byte| byte != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// The smallest byte string greater than `key` (`key` followed by `00`): turns an inclusive
/// bound into an exclusive one and back.
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    max_nesting: usize,
}

impl Reader<'_> {
    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        Error::internal(format!("corrupt index key at byte {}: {what}", self.pos))
    }

    fn next_byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(byte)
    }

    fn byte(&mut self) -> Result<u8> {
        self.next_byte()
            .ok_or_else(|| self.corrupt("the key ends too early"))
    }

    fn eight(&mut self) -> Result<u64> {
        let end = self.pos + 8;
        let chunk = self
            .bytes
            .get(self.pos..end)
            .and_then(|chunk| <[u8; 8]>::try_from(chunk).ok())
            .ok_or_else(|| self.corrupt("the key ends inside an 8-byte number"))?;
        self.pos = end;
        Ok(u64::from_be_bytes(chunk))
    }

    fn escaped(&mut self) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        loop {
            match self.byte()? {
                0 => match self.byte()? {
                    0 => return Ok(data),
                    ESCAPED_ZERO => data.push(0),
                    other => return Err(self.corrupt(format_args!("bad escape 00 {other:02x}"))),
                },
                byte => data.push(byte),
            }
        }
    }

    fn string(&mut self) -> Result<String> {
        String::from_utf8(self.escaped()?).map_err(|_| self.corrupt("a string is not UTF-8"))
    }

    fn value(&mut self, tag: u8, depth: usize) -> Result<Value> {
        match tag {
            TAG_NULL => Ok(Value::Null),
            TAG_INT64 => Ok(Value::Int64((self.eight()? ^ (1 << 63)) as i64)),
            TAG_FLOAT64 => {
                let key = self.eight()?;
                float_from_sort_key(key)
                    .map(Value::Float64)
                    .ok_or_else(|| self.corrupt("a non-canonical NaN"))
            }
            TAG_BOOLEAN => match self.byte()? {
                0 => Ok(Value::Boolean(false)),
                1 => Ok(Value::Boolean(true)),
                other => Err(self.corrupt(format_args!("boolean byte {other:02x}"))),
            },
            TAG_STRING => self.string().map(Value::String),
            TAG_BYTES => self.escaped().map(Value::Bytes),
            TAG_ARRAY => {
                let level = self.enter(depth)?;
                let mut items = Vec::new();
                loop {
                    match self.byte()? {
                        END => return Ok(Value::Array(items)),
                        tag => items.push(self.value(tag, level)?),
                    }
                }
            }
            TAG_OBJECT => {
                let level = self.enter(depth)?;
                let mut object = Object::new();
                let mut previous: Option<String> = None;
                loop {
                    match self.byte()? {
                        END => return Ok(Value::Object(object)),
                        FIELD => {
                            let name = self.string()?;
                            if !field_name_is_valid(&name) {
                                return Err(self.corrupt(format_args!("field name {name:?}")));
                            }
                            if previous.as_ref().is_some_and(|previous| *previous >= name) {
                                return Err(self.corrupt("field names out of order"));
                            }
                            let tag = self.byte()?;
                            let value = self.value(tag, level)?;
                            previous = Some(name.clone());
                            object.insert_unchecked(name, value);
                        }
                        other => {
                            return Err(self.corrupt(format_args!("byte {other:02x} in an object")))
                        }
                    }
                }
            }
            other => Err(self.corrupt(format_args!("unknown tag {other:02x}"))),
        }
    }

    fn enter(&self, depth: usize) -> Result<usize> {
        if depth >= self.max_nesting {
            return Err(self.corrupt("nesting too deep"));
        }
        Ok(depth + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_common::ErrorCode;

    fn key(value: Value) -> Vec<u8> {
        encode(&[Some(value)])
    }

    #[test]
    fn known_encodings() {
        assert_eq!(key(Value::Int64(0)), [3, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            key(Value::Int64(-1)),
            [3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(key(Value::from("a\0")), [6, b'a', 0, 0xff, 0, 0]);
        assert_eq!(
            key(Value::Float64(f64::NAN)),
            [4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        let object = crate::object! {"a" => true};
        assert_eq!(key(Value::from(object)), [9, 1, b'a', 0, 0, 5, 1, 0]);
    }

    #[test]
    fn strings_sort_by_bytes_even_with_zeros() {
        let ordered = ["", "\0", "\0\0", "\0a", "a", "a\0", "a\u{1}", "ab", "b"];
        for pair in ordered.windows(2) {
            let (a, b) = (key(Value::from(pair[0])), key(Value::from(pair[1])));
            assert!(a < b, "{:?} < {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn a_tuple_prefix_bounds_its_extensions() {
        let prefix = encode(&[Some(Value::from("chan"))]);
        let end = prefix_successor(&prefix).unwrap_or_default();
        for tail in [
            None,
            Some(Value::Null),
            Some(Value::from(f64::NAN)),
            Some(Value::from(crate::object! {"z" => "z"})),
        ] {
            let full = encode(&[Some(Value::from("chan")), tail]);
            assert!(prefix <= full && full < end);
        }
        let other = encode(&[Some(Value::from("chan\0"))]);
        assert!(other >= end, "a longer string is outside the prefix range");
    }

    #[test]
    fn successor_is_the_next_key() {
        let k = key(Value::Int64(7));
        let next = successor(&k);
        assert!(k < next);
        assert_eq!(prefix_successor(&[]), None);
    }

    #[test]
    fn corrupt_keys_are_internal_errors_not_panics() {
        let cases: [&[u8]; 9] = [
            &[3, 0x80],
            &[6, b'a', 0],
            &[6, b'a', 0, 7],
            &[6, 0xc3, 0x28, 0, 0],
            &[5, 2],
            &[0x42],
            &[9, 1, b'$', 0, 0, 2, 0],
            &[9, 1, b'b', 0, 0, 2, 1, b'a', 0, 0, 2, 0],
            &[4, 0xff, 0xf8, 0, 0, 0, 0, 0, 0],
        ];
        for bytes in cases {
            let err = decode(bytes).err();
            assert_eq!(
                err.as_ref().map(Error::code),
                Some(ErrorCode::Internal),
                "{bytes:?}"
            );
            assert!(err
                .and_then(|e| e.detail().map(str::to_owned))
                .is_some_and(|d| d.contains("corrupt index key")));
        }
        let deep = [vec![TAG_ARRAY; 100_000], vec![END; 100_000]].concat();
        assert!(decode(&deep).is_err());
    }
}
