//! Limits: oversized or overly nested input is refused with an error that names the limit,
//! its knob and where it was exceeded — never a panic, never a stack overflow.
//!
//! These tests assume the default knob values (no `CONFLUX_*` overrides in the environment).

mod support;

use conflux_common::{Error, ErrorCode};
use conflux_values::{limits, object, Object, Value};
use serde_json::{json, Value as Json};

fn message(result: Result<impl std::fmt::Debug, Error>, code: ErrorCode) -> String {
    match result {
        Ok(ok) => panic!("expected a {code} error, got {ok:?}"),
        Err(err) => {
            assert_eq!(err.code(), code, "{err}");
            err.message().to_owned()
        }
    }
}

fn document_with_string_of(len: usize) -> Object {
    object! {"s" => "x".repeat(len)}
}

#[test]
fn a_document_of_exactly_the_limit_is_stored_one_byte_more_is_refused() {
    // {"s":"..."} is 8 bytes around the string.
    let at_limit = document_with_string_of(1_048_576 - 8);
    assert_eq!(limits::document_size(&at_limit), 1_048_576);
    assert!(limits::check_document(&at_limit).is_ok());

    let over = document_with_string_of(1_048_576 - 7);
    assert_eq!(
        message(limits::check_document(&over), ErrorCode::LimitExceeded),
        "document is 1,048,577 bytes; the limit is 1,048,576 (DOCUMENT_MAX_BYTES); store large \
         data across several documents"
    );
}

#[test]
fn document_size_is_the_length_of_the_wire_text() -> Result<(), serde_json::Error> {
    let document = object! {
        "quote\"d" => "back\\slash",
        "n" => 1.5,
        "i" => 5i64,
        "list" => vec![Value::Null, Value::from(f64::NAN)],
    };
    let text = serde_json::to_string(&Value::from(document.clone()).to_convex_json())?;
    assert_eq!(limits::document_size(&document), text.len());
    Ok(())
}

#[test]
fn documents_may_nest_16_levels_but_not_17() {
    let document_of_depth = |depth: usize| match support::deep_value(depth, true) {
        Value::Object(object) => object,
        other => panic!("expected an object, got {other}"),
    };
    assert!(limits::check_document(&document_of_depth(16)).is_ok());
    let text = message(
        limits::check_document(&document_of_depth(17)),
        ErrorCode::LimitExceeded,
    );
    assert_eq!(
        text,
        format!(
            "document is nested more than 16 levels deep at {}; the limit is 16 \
             (DOCUMENT_MAX_NESTING); flatten the data",
            ".a".repeat(16)
        )
    );
    // The same value is fine as an argument: values may nest 64 levels.
    assert!(limits::check_value(&Value::Object(document_of_depth(17))).is_ok());
}

#[test]
fn values_may_nest_64_levels_but_not_65() {
    for objects in [false, true] {
        assert!(limits::check_value(&support::deep_value(64, objects)).is_ok());
        let text = message(
            limits::check_value(&support::deep_value(65, objects)),
            ErrorCode::LimitExceeded,
        );
        assert!(
            text.starts_with("value is nested more than 64 levels deep at "),
            "{text}"
        );
        assert!(text.ends_with("the limit is 64 (VALUE_MAX_NESTING); flatten the data"));

        let json = support::deep_json(64, objects);
        assert!(Value::from_convex_json(&json).is_ok());
        let json = support::deep_json(65, objects);
        let text = message(Value::from_convex_json(&json), ErrorCode::LimitExceeded);
        assert!(text.contains("(VALUE_MAX_NESTING)"), "{text}");
        assert!(Value::from_clean_json(&json).is_err());
    }
}

#[test]
fn hostile_nesting_100k_levels_deep_is_refused_without_overflowing_the_stack() {
    for objects in [false, true] {
        let json = support::deep_json(100_000, objects);
        let text = message(Value::from_convex_json(&json), ErrorCode::LimitExceeded);
        assert!(text.contains("VALUE_MAX_NESTING"), "{text}");
        let text = message(Value::from_clean_json(&json), ErrorCode::LimitExceeded);
        assert!(text.contains("VALUE_MAX_NESTING"), "{text}");
        support::dismantle(json);
    }
}

#[test]
fn objects_may_have_1024_fields_but_not_1025() {
    let object_with = |count: usize| {
        Object::try_from_pairs((0..count).map(|i| (format!("f{i}"), Value::Null)))
            .expect("valid names")
    };
    assert!(limits::check_value(&Value::Object(object_with(1024))).is_ok());
    assert!(limits::check_document(&object_with(1024)).is_ok());

    let too_many = object_with(1025);
    let expected = "object has 1,025 fields; the limit is 1,024 (OBJECT_MAX_FIELDS_COUNT)";
    assert_eq!(
        message(limits::check_document(&too_many), ErrorCode::LimitExceeded),
        expected
    );
    let nested = Value::from(object! {"inner" => too_many.clone()});
    assert_eq!(
        message(limits::check_value(&nested), ErrorCode::LimitExceeded),
        "object at .inner has 1,025 fields; the limit is 1,024 (OBJECT_MAX_FIELDS_COUNT)"
    );
    let json = Value::from(too_many).to_convex_json();
    assert_eq!(
        message(Value::from_convex_json(&json), ErrorCode::LimitExceeded),
        expected
    );
}

#[test]
fn arrays_may_have_8192_elements_but_not_8193() {
    let array_of = |count: usize| Value::Array(vec![Value::Boolean(true); count]);
    assert!(limits::check_value(&array_of(8192)).is_ok());
    let in_document = object! {"list" => array_of(8193)};
    assert_eq!(
        message(
            limits::check_document(&in_document),
            ErrorCode::LimitExceeded
        ),
        "array at .list has 8,193 elements; the limit is 8,192 (ARRAY_MAX_ELEMENTS_COUNT)"
    );
    let json = Json::Array(vec![json!(1); 8193]);
    assert_eq!(
        message(Value::from_convex_json(&json), ErrorCode::LimitExceeded),
        "array has 8,193 elements; the limit is 8,192 (ARRAY_MAX_ELEMENTS_COUNT)"
    );
}

#[test]
fn reserved_and_non_ascii_field_names_are_refused_by_name() {
    let cases = [
        (json!({"$foo": 1}), "Field name \"$foo\" starts with '$'"),
        (json!({"$set": [1]}), "`$set` is no longer supported"),
        (
            json!({"na\u{ef}ve": 1}),
            "Field name \"naïve\" contains the character 'ï' (U+00EF)",
        ),
        (json!({"": 1}), "Field name is empty"),
    ];
    for (json, expected) in cases {
        let text = message(Value::from_convex_json(&json), ErrorCode::InvalidValue);
        assert!(text.contains(expected), "{json}: {text}");
    }
    let long_name = "k".repeat(1025);
    let mut map = serde_json::Map::new();
    map.insert(long_name, json!(1));
    let text = message(
        Value::from_convex_json(&Json::Object(map)),
        ErrorCode::InvalidValue,
    );
    assert!(
        text.contains("is 1,025 characters long; the limit is 1,024"),
        "{text}"
    );
}
