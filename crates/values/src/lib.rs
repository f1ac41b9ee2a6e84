//! The Conflux value model: what a document, an argument or a query result *is*.
//!
//! Every other crate speaks in these types, so they live at the bottom of the stack and do
//! no I/O. The crate owns four contracts that the rest of the system relies on:
//!
//! - **The value model.** [`Value`] is the eight Convex types; [`Object`] checks its field
//!   names on construction; [`DocumentId`] is a table number plus 16 random bytes printed in
//!   lowercase base32.
//! - **The encodings.** [`Value::from_convex_json`] / [`Value::to_convex_json`] speak the
//!   wire format of the official clients (`$integer`, `$float`, `$bytes`);
//!   [`Value::to_clean_json`] / [`Value::from_clean_json`] are the plain JSON of the HTTP
//!   API. Decoding checks every [`limits`] before it recurses, so hostile input cannot
//!   overflow the stack.
//! - **The order.** `Ord for Value` is the Convex sort order (null < int64 < float64 <
//!   boolean < string < bytes < array < object) and [`index_key::encode`] turns a tuple of
//!   values into bytes whose `memcmp` order is exactly that order, so the storage layer can
//!   keep indexes in any ordered byte store.
//! - **The validators.** [`validator::Validator`] checks function arguments and schema
//!   documents and reports the path of the first mismatch.
//!
//! ```
//! use conflux_values::{index_key, object, Value};
//!
//! // A document as a client sends it: `count` is an int64 (a JS bigint).
//! let wire = serde_json::json!({"body": "hi", "count": {"$integer": "BQAAAAAAAAA="}});
//! let value = Value::from_convex_json(&wire)?;
//! assert_eq!(value, Value::from(object! {"body" => "hi", "count" => 5i64}));
//! assert_eq!(value.to_convex_json(), wire);
//!
//! // Index keys sort like the values they encode.
//! let low = index_key::encode(&[Some(Value::from(5i64))]);
//! let high = index_key::encode(&[Some(Value::from(0.5))]);
//! assert!(low < high, "every int64 sorts before every float64");
//! # Ok::<(), conflux_common::Error>(())
//! ```

mod format;
mod id;
pub mod index_key;
mod json;
pub mod limits;
mod object;
mod path;
pub mod validator;
mod value;

pub use id::{DocumentId, TableNumber};
pub use json::ConvexJson;
pub use object::{check_field_name, field_name_is_valid, Object, FIELD_NAME_MAX_LEN};
pub use validator::v;
pub use value::Value;
