//! [`Object`]: a map of checked field names to values, and the field-name rules.
//!
//! The official npm client refuses, even when *decoding server values*, objects whose
//! field names start with `$` or contain non-printable or non-ASCII characters. A server
//! that stored such a name could never send the document back, so the rule is enforced
//! when an object is built: an `Object` that exists has valid names.

use std::collections::btree_map::{self, BTreeMap};

use conflux_common::{Error, ErrorCode, Result};

use crate::format::{quote_truncated, thousands};
use crate::value::Value;

/// Longest field name, in characters (the npm client's limit).
pub const FIELD_NAME_MAX_LEN: usize = 1024;

/// Whether `name` may be a field name: 1 to [`FIELD_NAME_MAX_LEN`] printable ASCII
/// characters (32 to 126), not starting with `$`.
///
/// System fields such as `_id` and `_creationTime` are valid names; refusing user writes to
/// `_`-prefixed fields is the storage layer's job.
pub const fn field_name_is_valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > FIELD_NAME_MAX_LEN || bytes[0] == b'$' {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] < 32 || bytes[i] > 126 {
            return false;
        }
        i += 1;
    }
    true
}

/// Check a field name against the rules of [`field_name_is_valid`], with an
/// [`ErrorCode::InvalidValue`] error that says which rule was broken.
pub fn check_field_name(name: &str) -> Result<()> {
    if field_name_is_valid(name) {
        return Ok(());
    }
    let shown = quote_truncated(name, 64);
    let message = if name.is_empty() {
        "Field name is empty; field names must have 1 to 1,024 characters".to_owned()
    } else if name.starts_with('$') {
        format!(
            "Field name {shown} starts with '$', which is reserved for encoded values such as \
             $integer and $bytes; rename the field"
        )
    } else if let Some(bad) = name.chars().find(|c| !(' '..='~').contains(c)) {
        format!(
            "Field name {shown} contains the character {bad:?} (U+{:04X}); field names may \
             only contain printable ASCII characters (space to '~')",
            u32::from(bad)
        )
    } else {
        format!(
            "Field name {shown} is {} characters long; the limit is {}",
            thousands(name.len()),
            thousands(FIELD_NAME_MAX_LEN)
        )
    };
    Err(Error::new(ErrorCode::InvalidValue, message))
}

/// An object: field names (checked, see [`field_name_is_valid`]) mapped to values, kept
/// sorted by name.
///
/// Build one with [`Object::insert`], [`Object::try_from_map`] or, for names known at compile
/// time, the [`object!`](crate::object!) macro.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Object(BTreeMap<String, Value>);

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        Object(BTreeMap::new())
    }

    /// Wrap a map after checking every field name.
    pub fn try_from_map(map: BTreeMap<String, Value>) -> Result<Self> {
        for name in map.keys() {
            check_field_name(name)?;
        }
        Ok(Object(map))
    }

    /// Build an object from `(name, value)` pairs, checking every name; a later pair with the
    /// same name replaces an earlier one.
    pub fn try_from_pairs(pairs: impl IntoIterator<Item = (String, Value)>) -> Result<Self> {
        let mut object = Object::new();
        for (name, value) in pairs {
            object.insert(name, value)?;
        }
        Ok(object)
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// The value of field `name`, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.0.get_mut(name)
    }

    /// Whether the object has a field `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Set field `name`, returning its previous value. Fails with
    /// [`ErrorCode::InvalidValue`] if the name is not a valid field name.
    pub fn insert(&mut self, name: String, value: Value) -> Result<Option<Value>> {
        check_field_name(&name)?;
        Ok(self.0.insert(name, value))
    }

    /// Insert a name the caller has already checked with [`check_field_name`].
    pub(crate) fn insert_unchecked(&mut self, name: String, value: Value) {
        debug_assert!(field_name_is_valid(&name));
        self.0.insert(name, value);
    }

    /// Used by [`object!`](crate::object!) after it checked the name at compile time.
    #[doc(hidden)]
    pub fn __insert_prechecked(&mut self, name: &'static str, value: Value) {
        debug_assert!(field_name_is_valid(name));
        self.0.insert(name.to_owned(), value);
    }

    /// Remove field `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }

    /// The fields in name order.
    pub fn iter(&self) -> btree_map::Iter<'_, String, Value> {
        self.0.iter()
    }

    /// The field names in order.
    pub fn keys(&self) -> btree_map::Keys<'_, String, Value> {
        self.0.keys()
    }

    /// The values in field-name order.
    pub fn values(&self) -> btree_map::Values<'_, String, Value> {
        self.0.values()
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the object has no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying map (read-only, so the names stay valid).
    pub fn as_map(&self) -> &BTreeMap<String, Value> {
        &self.0
    }

    /// Unwrap into the underlying map.
    pub fn into_inner(self) -> BTreeMap<String, Value> {
        self.0
    }
}

impl TryFrom<BTreeMap<String, Value>> for Object {
    type Error = Error;

    fn try_from(map: BTreeMap<String, Value>) -> Result<Self> {
        Object::try_from_map(map)
    }
}

impl From<Object> for BTreeMap<String, Value> {
    fn from(object: Object) -> Self {
        object.0
    }
}

impl IntoIterator for Object {
    type Item = (String, Value);
    type IntoIter = btree_map::IntoIter<String, Value>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Object {
    type Item = (&'a String, &'a Value);
    type IntoIter = btree_map::Iter<'a, String, Value>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Build an [`Object`] from literal field names: `object! {"body" => "hi", "n" => 5i64}`.
///
/// Values go through `Value::from`. Field names are checked at compile time, so the macro
/// cannot fail at run time:
///
/// ```compile_fail
/// let bad = conflux_values::object! {"$reserved" => 1i64};
/// ```
///
/// ```
/// use conflux_values::{object, Value};
/// let message = object! {"author" => "ada", "likes" => 3i64, "tags" => vec![Value::from("x")]};
/// assert_eq!(message.get("likes"), Some(&Value::Int64(3)));
/// ```
#[macro_export]
macro_rules! object {
    () => {
        $crate::Object::new()
    };
    ($($name:literal => $value:expr),+ $(,)?) => {{
        let mut object = $crate::Object::new();
        $(
            const _: () = ::core::assert!(
                $crate::field_name_is_valid($name),
                "object!: invalid field name (field names are 1 to 1024 printable ASCII characters, not starting with '$')"
            );
            object.__insert_prechecked($name, $crate::Value::from($value));
        )+
        object
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_of(name: &str) -> String {
        match check_field_name(name) {
            Ok(()) => String::from("accepted"),
            Err(err) => {
                assert_eq!(err.code(), ErrorCode::InvalidValue);
                err.message().to_owned()
            }
        }
    }

    #[test]
    fn ordinary_and_system_names_are_accepted() {
        for name in [
            "body",
            "_id",
            "_creationTime",
            "with space",
            "~",
            "a".repeat(1024).as_str(),
        ] {
            assert!(field_name_is_valid(name), "{name}");
            assert_eq!(message_of(name), "accepted");
        }
    }

    #[test]
    fn each_broken_rule_is_named() {
        assert!(message_of("").contains("empty"));
        assert!(message_of("$set").contains("starts with '$'"));
        assert!(message_of("héllo").contains("'é' (U+00E9)"));
        assert!(message_of("tab\there").contains("U+0009"));
        let long = "a".repeat(1025);
        assert!(message_of(&long).contains("is 1,025 characters long; the limit is 1,024"));
    }

    #[test]
    fn insert_refuses_invalid_names_and_keeps_the_object_unchanged() {
        let mut object = Object::new();
        assert!(object.insert("$foo".into(), Value::Null).is_err());
        assert!(object.is_empty());
        assert_eq!(
            object.insert("a".into(), Value::from(1i64)).ok(),
            Some(None)
        );
        assert_eq!(
            object.insert("a".into(), Value::from(2i64)).ok(),
            Some(Some(Value::from(1i64)))
        );
    }

    #[test]
    fn maps_are_checked_when_wrapped() {
        let mut map = BTreeMap::new();
        map.insert("ok".to_owned(), Value::Null);
        assert!(Object::try_from(map.clone()).is_ok());
        map.insert("bad\u{7f}".to_owned(), Value::Null);
        assert!(Object::try_from(map).is_err());
    }
}
