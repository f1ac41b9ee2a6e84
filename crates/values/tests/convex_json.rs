//! The wire encoding: what the official clients send and expect, byte for byte.

mod support;

use conflux_common::ErrorCode;
use conflux_values::{object, ConvexJson, Value};
use proptest::prelude::*;
use serde_json::{json, Value as Json};

fn decode_err(json: Json) -> (ErrorCode, String) {
    match Value::from_convex_json(&json) {
        Ok(value) => panic!("{json} decoded to {value}, expected an error"),
        Err(err) => (err.code(), err.message().to_owned()),
    }
}

#[test]
fn spec_vectors_encode_exactly() {
    assert_eq!(
        Value::Int64(5).to_convex_json(),
        json!({"$integer": "BQAAAAAAAAA="})
    );
    assert_eq!(
        Value::Float64(f64::NAN).to_convex_json(),
        json!({"$float": "AAAAAAAA+H8="})
    );
    assert_eq!(
        Value::Float64(-0.0).to_convex_json(),
        json!({"$float": "AAAAAAAAAIA="})
    );
    assert_eq!(
        Value::Float64(f64::INFINITY).to_convex_json(),
        json!({"$float": "AAAAAAAA8H8="})
    );
    assert_eq!(
        Value::Float64(f64::NEG_INFINITY).to_convex_json(),
        json!({"$float": "AAAAAAAA8P8="})
    );
    assert_eq!(
        Value::Bytes(vec![1, 2, 3]).to_convex_json(),
        json!({"$bytes": "AQID"})
    );
    assert_eq!(Value::Float64(1.5).to_convex_json(), json!(1.5));
    assert_eq!(Value::Float64(0.0).to_convex_json(), json!(0.0));
}

#[test]
fn spec_vectors_decode_exactly() -> Result<(), conflux_common::Error> {
    assert_eq!(
        Value::from_convex_json(&json!({"$integer": "BQAAAAAAAAA="}))?,
        Value::Int64(5)
    );
    let nan = Value::from_convex_json(&json!({"$float": "AAAAAAAA+H8="}))?;
    assert!(nan.as_f64().is_some_and(f64::is_nan));
    let minus_zero = Value::from_convex_json(&json!({"$float": "AAAAAAAAAIA="}))?;
    assert!(minus_zero
        .as_f64()
        .is_some_and(|x| x == 0.0 && x.is_sign_negative()));
    // A JSON number is always a float64, even when it looks like an integer.
    assert_eq!(Value::from_convex_json(&json!(5))?, Value::Float64(5.0));
    Ok(())
}

#[test]
fn every_nan_goes_out_as_the_canonical_nan() {
    let odd_nan = Value::Float64(f64::from_bits(0xfff8_0000_0000_0001));
    assert_eq!(odd_nan.to_convex_json(), json!({"$float": "AAAAAAAA+H8="}));
}

#[test]
fn a_float_tag_holding_an_ordinary_number_is_refused() {
    for ordinary in ["AAAAAAAA+D8=" /* 1.5 */, "AAAAAAAAAAA=" /* +0 */] {
        let (code, message) = decode_err(json!({"$float": ordinary}));
        assert_eq!(code, ErrorCode::InvalidValue);
        assert!(
            message.contains("must be sent as a JSON number"),
            "{message}"
        );
    }
}

#[test]
fn malformed_special_forms_say_what_is_wrong() {
    let cases = [
        (
            json!({"$integer": "BQAAAA=="}),
            "exactly 8 bytes (little-endian), found 4",
        ),
        (json!({"$float": "AAAA"}), "exactly 8 bytes"),
        (
            json!({"$integer": "BQAAAAAAAAA"}),
            "not standard base64 with padding",
        ),
        (
            json!({"$bytes": "!!!!"}),
            "not standard base64 with padding",
        ),
        (
            json!({"$bytes": 5}),
            "must hold a base64 string, found a number",
        ),
        (
            json!({"$integer": "BQAAAAAAAAA=", "extra": 1}),
            "must be the only field of its object",
        ),
        (json!({"$set": []}), "`$set` is no longer supported"),
        (json!({"$map": []}), "`$map` is no longer supported"),
        (json!({"$foo": 1}), "starts with '$'"),
        (
            json!({"ok": {"$commitTs": null}}),
            "`$commitTs` placeholders are not supported",
        ),
    ];
    for (json, expected) in cases {
        let (code, message) = decode_err(json.clone());
        assert_eq!(code, ErrorCode::InvalidValue, "{json}");
        assert!(message.contains(expected), "{json}: {message}");
    }
}

#[test]
fn errors_point_into_the_value() {
    let (_, message) = decode_err(json!({"messages": [{"body": "ok"}, {"$foo": 1}]}));
    assert!(
        message.starts_with("In the value at .messages[1]: Field name \"$foo\""),
        "{message}"
    );
    let (_, message) = decode_err(json!({"a": {"caf\u{e9}": 1}}));
    assert!(
        message.contains("at .a: Field name \"café\" contains the character 'é'"),
        "{message}"
    );
}

#[test]
fn integers_survive_at_their_extremes() -> Result<(), conflux_common::Error> {
    for i in [i64::MIN, -1, 0, 1, i64::MAX] {
        assert_eq!(
            Value::from_convex_json(&Value::Int64(i).to_convex_json())?,
            Value::Int64(i)
        );
    }
    assert_eq!(
        Value::Int64(i64::MIN).to_convex_json(),
        json!({"$integer": "AAAAAAAAAIA="})
    );
    Ok(())
}

#[test]
fn objects_come_out_sorted_by_field_name() -> Result<(), serde_json::Error> {
    let value = Value::from(object! {"b" => 1.0, "a" => true, "_id" => "x"});
    assert_eq!(
        serde_json::to_string(&value.to_convex_json())?,
        r#"{"_id":"x","a":true,"b":1.0}"#
    );
    Ok(())
}

#[test]
fn clean_json_spells_out_what_json_cannot_hold() -> Result<(), conflux_common::Error> {
    let value = Value::from(object! {
        "big" => i64::MIN,
        "bytes" => vec![1u8, 2, 3],
        "nan" => f64::NAN,
        "inf" => f64::INFINITY,
        "ninf" => f64::NEG_INFINITY,
        "x" => 1.5,
    });
    assert_eq!(
        value.to_clean_json(),
        json!({
            "big": "-9223372036854775808",
            "bytes": "AQID",
            "nan": "NaN",
            "inf": "Infinity",
            "ninf": "-Infinity",
            "x": 1.5,
        })
    );
    // Clean JSON has no special forms: numbers are floats, `$` names are refused.
    assert_eq!(
        Value::from_clean_json(&json!([5, "5"]))?,
        Value::from(vec![Value::from(5.0), Value::from("5")])
    );
    let err = Value::from_clean_json(&json!({"$integer": "BQAAAAAAAAA="})).err();
    assert_eq!(err.map(|e| e.code()), Some(ErrorCode::InvalidValue));
    Ok(())
}

proptest! {
    #[test]
    fn convex_json_round_trips_every_value(value in support::value()) {
        let json = value.to_convex_json();
        let back = Value::from_convex_json(&json);
        prop_assert_eq!(back.as_ref().ok(), Some(&value), "{}", json);
        // Equal values have equal encodings (every NaN is sent the same way).
        prop_assert_eq!(back.map(|v| v.to_convex_json()).ok(), Some(json));
    }

    #[test]
    fn convex_json_round_trips_through_text(value in support::value()) {
        let text = serde_json::to_string(&ConvexJson(&value)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&text, &value.to_convex_json().to_string());
        prop_assert_eq!(value.convex_json_len(), text.len());
        let json: Json = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(Value::from_convex_json(&json).ok(), Some(value));
    }

    #[test]
    fn clean_json_round_trips_what_it_can_represent(value in support::clean_value()) {
        let json = value.to_clean_json();
        prop_assert_eq!(Value::from_clean_json(&json).ok(), Some(value), "{}", json);
    }

    #[test]
    fn hostile_json_is_refused_or_accepted_never_panics(json in support::hostile_json()) {
        match Value::from_convex_json(&json) {
            // Whatever is accepted re-encodes to something that decodes to the same value.
            Ok(value) => prop_assert_eq!(Value::from_convex_json(&value.to_convex_json()).ok(), Some(value)),
            Err(err) => prop_assert!(
                matches!(err.code(), ErrorCode::InvalidValue | ErrorCode::LimitExceeded),
                "{}", err
            ),
        }
        let _ = Value::from_clean_json(&json);
    }
}
