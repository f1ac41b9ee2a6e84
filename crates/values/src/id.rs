//! [`DocumentId`]: the id of a document, and its text form.
//!
//! Clients see ids as plain strings (there is no tag in the wire format), so the string
//! must carry everything the server needs: the table the document lives in and its 16
//! random bytes. The text is lowercase RFC 4648 base32 without padding of those 20 bytes,
//! always 32 characters: URL-safe, case-stable, and free of `|`, which the storage layer
//! uses as a separator.

use std::fmt;
use std::str::FromStr;

use conflux_common::{Error, ErrorCode, Result};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::format::quote_truncated;
use crate::value::Value;

/// The number of a table. Numbers are assigned by the storage layer and never reused, so an
/// id keeps pointing at the table it was made for even after a table is renamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TableNumber(pub u32);

impl fmt::Display for TableNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The id of a document: its table's number and 16 random bytes.
///
/// ```
/// use conflux_values::{DocumentId, TableNumber};
/// let id = DocumentId::new(TableNumber(7));
/// let text = id.to_string();
/// assert_eq!(text.len(), DocumentId::STRING_LEN);
/// let parsed: DocumentId = text.parse()?;
/// assert_eq!(parsed, id);
/// assert_eq!(parsed.table_number(), TableNumber(7));
/// # Ok::<(), conflux_common::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocumentId {
    table: TableNumber,
    internal: [u8; 16],
}

/// RFC 4648 base32, in lowercase.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Bytes behind the text: 16 random bytes, then the table number big-endian.
const PAYLOAD_LEN: usize = 20;

impl DocumentId {
    /// Length of every id string: 20 bytes in base32 are exactly 32 characters.
    pub const STRING_LEN: usize = PAYLOAD_LEN * 8 / 5;

    /// A fresh id in `table`, with 16 bytes from the thread's cryptographic random generator.
    pub fn new(table: TableNumber) -> Self {
        Self::new_with_rng(table, &mut rand::thread_rng())
    }

    /// A fresh id in `table` with bytes from `rng`, for deterministic tests and simulations.
    pub fn new_with_rng(table: TableNumber, rng: &mut impl RngCore) -> Self {
        let mut internal = [0u8; 16];
        rng.fill_bytes(&mut internal);
        DocumentId { table, internal }
    }

    /// The id made of these parts (for storage, which keeps ids in binary form).
    pub fn from_parts(table: TableNumber, internal: [u8; 16]) -> Self {
        DocumentId { table, internal }
    }

    /// The table the document lives in.
    pub fn table_number(&self) -> TableNumber {
        self.table
    }

    /// The 16 bytes that make the id unique within its table.
    pub fn internal_bytes(&self) -> &[u8; 16] {
        &self.internal
    }

    fn payload(&self) -> [u8; PAYLOAD_LEN] {
        let mut payload = [0u8; PAYLOAD_LEN];
        payload[..16].copy_from_slice(&self.internal);
        payload[16..].copy_from_slice(&self.table.0.to_be_bytes());
        payload
    }
}

fn invalid_id(text: &str, why: impl fmt::Display) -> Error {
    Error::new(
        ErrorCode::InvalidValue,
        format!("Invalid document id {}: {why}", quote_truncated(text, 64)),
    )
}

impl FromStr for DocumentId {
    type Err = Error;

    /// Parse the text form. Errors are [`ErrorCode::InvalidValue`] and quote the bad id.
    fn from_str(text: &str) -> Result<Self> {
        if text.len() != Self::STRING_LEN {
            return Err(invalid_id(
                text,
                format_args!(
                    "expected {} characters of lowercase base32, found {}",
                    Self::STRING_LEN,
                    text.chars().count()
                ),
            ));
        }
        let mut payload = [0u8; PAYLOAD_LEN];
        let mut buffer: u64 = 0;
        let mut bits = 0u32;
        let mut out = 0;
        for c in text.chars() {
            let digit = match c {
                'a'..='z' => u64::from(c) - u64::from('a'),
                '2'..='7' => u64::from(c) - u64::from('2') + 26,
                _ => {
                    return Err(invalid_id(
                        text,
                        format_args!("{c:?} is not a lowercase base32 character (a-z, 2-7)"),
                    ))
                }
            };
            buffer = (buffer << 5) | digit;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                // 32 characters carry exactly 160 bits, so `out` stays below PAYLOAD_LEN.
                payload[out] = (buffer >> bits) as u8;
                out += 1;
                buffer &= (1 << bits) - 1;
            }
        }
        let mut internal = [0u8; 16];
        internal.copy_from_slice(&payload[..16]);
        let table = u32::from_be_bytes([payload[16], payload[17], payload[18], payload[19]]);
        Ok(DocumentId {
            table: TableNumber(table),
            internal,
        })
    }
}

impl TryFrom<&str> for DocumentId {
    type Error = Error;

    fn try_from(text: &str) -> Result<Self> {
        text.parse()
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; Self::STRING_LEN];
        let mut buffer: u64 = 0;
        let mut bits = 0u32;
        let mut out = 0;
        for byte in self.payload() {
            buffer = (buffer << 8) | u64::from(byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                text[out] = ALPHABET[((buffer >> bits) & 31) as usize];
                out += 1;
            }
            buffer &= (1 << bits) - 1;
        }
        // Every byte of `text` comes from ALPHABET, which is ASCII.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

/// Ids are strings on the wire.
impl From<DocumentId> for Value {
    fn from(id: DocumentId) -> Self {
        Value::String(id.to_string())
    }
}

impl Serialize for DocumentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DocumentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|err: Error| serde::de::Error::custom(err.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_id_has_a_stable_text_form() {
        let id = DocumentId::from_parts(TableNumber(1), [0; 16]);
        assert_eq!(id.to_string(), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab");
        let id = DocumentId::from_parts(TableNumber(u32::MAX), [0xff; 16]);
        assert_eq!(id.to_string(), "77777777777777777777777777777777");
    }

    #[test]
    fn bad_ids_are_named_in_the_error() {
        let err = "abc".parse::<DocumentId>().err();
        let message = err.as_ref().map(Error::message).unwrap_or_default();
        assert!(message.contains("\"abc\""), "{message}");
        assert!(message.contains("expected 32 characters"), "{message}");

        let upper = "A".repeat(32);
        let err = upper.parse::<DocumentId>().err();
        assert_eq!(err.as_ref().map(Error::code), Some(ErrorCode::InvalidValue));
        assert!(err
            .as_ref()
            .map(Error::message)
            .unwrap_or_default()
            .contains("'A' is not a lowercase base32 character"));

        let with_pipe = format!("{}|", "a".repeat(31));
        assert!(with_pipe.parse::<DocumentId>().is_err());
    }

    #[test]
    fn ids_serialize_as_strings() -> std::result::Result<(), serde_json::Error> {
        let id = DocumentId::from_parts(TableNumber(3), [9; 16]);
        let json = serde_json::to_value(id)?;
        assert_eq!(json, serde_json::Value::String(id.to_string()));
        let back: DocumentId = serde_json::from_value(json)?;
        assert_eq!(back, id);
        assert!(serde_json::from_str::<DocumentId>("\"nope\"").is_err());
        Ok(())
    }

    #[test]
    fn seeded_ids_are_reproducible() {
        use rand::SeedableRng;
        let a = DocumentId::new_with_rng(TableNumber(2), &mut rand::rngs::StdRng::seed_from_u64(1));
        let b = DocumentId::new_with_rng(TableNumber(2), &mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(a, b);
        assert_ne!(
            DocumentId::new(TableNumber(2)),
            DocumentId::new(TableNumber(2))
        );
    }
}
