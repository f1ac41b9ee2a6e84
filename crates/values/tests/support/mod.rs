//! Strategies shared by the property tests, and helpers for hostile, deeply nested input.
//!
//! The strategies lean on edge cases (i64 extremes, NaN with odd payloads, -0, strings with
//! zero bytes, tiny alphabets) so that random pairs of values are often equal or share long
//! prefixes: that is where an encoding that disagrees with the order would show.

#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeMap;

use conflux_values::{Object, Value};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value as Json;

pub fn int64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MIN + 1),
        Just(-1),
        Just(0),
        Just(1),
        Just(i64::MAX),
        -3i64..3,
        any::<i64>(),
    ]
}

pub fn float64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::from_bits(0xfff8_0000_0000_0001)), // a negative NaN with a payload
        Just(f64::from_bits(0x7ff0_0000_0000_0001)), // a signalling NaN
        Just(-0.0),
        Just(0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN_POSITIVE),
        Just(-f64::MIN_POSITIVE),
        Just(f64::from_bits(1)), // the smallest subnormal
        Just(f64::MAX),
        Just(f64::MIN),
        (-3i32..3).prop_map(f64::from),
        any::<f64>(),
    ]
}

/// Finite floats, the ones clean JSON can carry as numbers.
pub fn finite_float64() -> impl Strategy<Value = f64> {
    float64().prop_filter("finite", |x| x.is_finite())
}

pub fn string() -> impl Strategy<Value = String> {
    prop_oneof!["[ab\\x00\\x01\u{ff}]{0,4}", any::<String>(),]
}

pub fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![Just(0u8), Just(1u8), Just(0xffu8), any::<u8>()],
        0..5,
    )
}

pub fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ab][ab _~]{0,2}",
        Just("_id".to_owned()),
        Just("_creationTime".to_owned()),
        "[ -#%-~][ -~]{0,6}", // any printable ASCII not starting with '$'
    ]
}

fn object_of(map: BTreeMap<String, Value>) -> Value {
    Value::Object(Object::try_from_map(map).expect("the strategy only makes valid names"))
}

/// Any value, nested a few levels.
pub fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        int64().prop_map(Value::Int64),
        float64().prop_map(Value::Float64),
        any::<bool>().prop_map(Value::Boolean),
        string().prop_map(Value::String),
        bytes().prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(field_name(), inner, 0..4).prop_map(object_of),
        ]
    })
}

/// Values that clean JSON represents without loss: no int64, no bytes, finite floats.
pub fn clean_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        finite_float64().prop_map(Value::Float64),
        any::<bool>().prop_map(Value::Boolean),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(field_name(), inner, 0..4).prop_map(object_of),
        ]
    })
}

/// Values from a tiny universe, so that random pairs collide or share prefixes often.
pub fn close_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        prop_oneof![
            Just(i64::MIN),
            Just(-1i64),
            Just(0i64),
            Just(1i64),
            Just(i64::MAX)
        ]
        .prop_map(Value::Int64),
        prop_oneof![
            Just(f64::NEG_INFINITY),
            Just(-1.0),
            Just(-0.0),
            Just(0.0),
            Just(1.0),
            Just(f64::INFINITY),
            Just(f64::NAN),
            Just(f64::from_bits(0xfff8_0000_0000_0001)),
        ]
        .prop_map(Value::Float64),
        any::<bool>().prop_map(Value::Boolean),
        "[a\\x00]{0,3}".prop_map(Value::String),
        vec(prop_oneof![Just(0u8), Just(0xffu8)], 0..3).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::Array),
            btree_map("[ab]{1,2}", inner, 0..3).prop_map(object_of),
        ]
    })
}

/// An index-key tuple: a missing field is `None`.
pub fn tuple(element: impl Strategy<Value = Value>) -> impl Strategy<Value = Vec<Option<Value>>> {
    vec(proptest::option::weighted(0.85, element), 0..4)
}

/// Arbitrary JSON with keys chosen to hit every special case of the decoder.
pub fn hostile_json() -> impl Strategy<Value = Json> {
    let key = prop_oneof![
        Just("$integer".to_owned()),
        Just("$float".to_owned()),
        Just("$bytes".to_owned()),
        Just("$set".to_owned()),
        Just("$map".to_owned()),
        Just("$commitTs".to_owned()),
        Just("$other".to_owned()),
        Just(String::new()),
        Just("é".to_owned()),
        Just("a".to_owned()),
        Just("b\u{7}".to_owned()),
    ];
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<f64>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        prop_oneof![
            Just("BQAAAAAAAAA=".to_owned()),
            Just("AAAAAAAA+H8=".to_owned()),
            Just("AAAAAAAA+D8=".to_owned()),
            Just("BQAAAA==".to_owned()),
            Just("AQID".to_owned()),
            Just("AQI".to_owned()),
            Just("!!!!".to_owned()),
            any::<String>(),
        ]
        .prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 24, 3, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Json::Array),
            vec((key.clone(), inner), 0..3)
                .prop_map(|pairs| Json::Object(pairs.into_iter().collect())),
        ]
    })
}

/// JSON nested `depth` levels deep, built without recursion: `[[[...null...]]]` or
/// `{"a":{"a":...}}`.
pub fn deep_json(depth: usize, objects: bool) -> Json {
    let mut json = Json::Null;
    for _ in 0..depth {
        json = if objects {
            let mut map = serde_json::Map::new();
            map.insert("a".to_owned(), json);
            Json::Object(map)
        } else {
            Json::Array(vec![json])
        };
    }
    json
}

/// Take deeply nested JSON apart level by level: the default drop would recurse once per
/// level and overflow the test thread's stack.
pub fn dismantle(mut json: Json) {
    loop {
        json = match json {
            Json::Array(mut items) => match items.pop() {
                Some(inner) => inner,
                None => return,
            },
            Json::Object(map) => match map.into_iter().next() {
                Some((_, inner)) => inner,
                None => return,
            },
            Json::Null | Json::Bool(_) | Json::Number(_) | Json::String(_) => return,
        };
    }
}

/// A value nested `depth` levels deep (`[[...]]`), or `{"a": {"a": ...}}` with `objects`.
pub fn deep_value(depth: usize, objects: bool) -> Value {
    let mut value = Value::Null;
    for _ in 0..depth {
        value = if objects {
            let mut object = Object::new();
            object
                .insert("a".to_owned(), value)
                .expect("`a` is a valid field name");
            Value::Object(object)
        } else {
            Value::Array(vec![value])
        };
    }
    value
}

/// Scalars at every boundary of the order, each type's smallest and largest and the
/// neighbours that an encoding is most likely to confuse (-0 and 0, "" and "\0", ...).
pub fn edge_scalars() -> Vec<Value> {
    let mut values = vec![Value::Null];
    for i in [
        i64::MIN,
        i64::MIN + 1,
        -256,
        -1,
        0,
        1,
        255,
        256,
        i64::MAX - 1,
        i64::MAX,
    ] {
        values.push(Value::Int64(i));
    }
    for x in [
        f64::NEG_INFINITY,
        f64::MIN,
        -1.0,
        -f64::MIN_POSITIVE,
        -f64::from_bits(1),
        -0.0,
        0.0,
        f64::from_bits(1),
        f64::MIN_POSITIVE,
        1.0,
        1.0 + f64::EPSILON,
        f64::MAX,
        f64::INFINITY,
        f64::NAN,
    ] {
        values.push(Value::Float64(x));
    }
    values.push(Value::Boolean(false));
    values.push(Value::Boolean(true));
    for s in [
        "",
        "\0",
        "\0\0",
        "\0\u{1}",
        "\u{1}",
        "a",
        "a\0",
        "a\0b",
        "ab",
        "\u{ff}",
        "\u{10ffff}",
    ] {
        values.push(Value::from(s));
    }
    for b in [
        &[][..],
        &[0],
        &[0, 0],
        &[0, 0xff],
        &[1],
        &[0xff],
        &[0xff, 0],
        &[0xff, 0xff],
    ] {
        values.push(Value::Bytes(b.to_vec()));
    }
    values
}

/// [`edge_scalars`] plus small arrays and objects built from a few of them.
pub fn edge_values() -> Vec<Value> {
    let scalars = edge_scalars();
    let few = [
        Value::Null,
        Value::Int64(0),
        Value::Float64(-0.0),
        Value::Float64(0.0),
        Value::from(""),
        Value::from("\0"),
        Value::Bytes(vec![]),
    ];
    let mut values = scalars.clone();
    values.push(Value::Array(vec![]));
    values.push(Value::Object(Object::new()));
    for x in &few {
        values.push(Value::Array(vec![x.clone()]));
        values.push(Value::Array(vec![x.clone(), Value::Null]));
        values.push(Value::Array(vec![Value::Array(vec![x.clone()])]));
        for name in ["a", "a ", "b"] {
            let mut object = Object::new();
            object
                .insert(name.to_owned(), x.clone())
                .expect("valid name");
            values.push(Value::Object(object.clone()));
            object
                .insert("c".to_owned(), Value::Null)
                .expect("valid name");
            values.push(Value::Object(object));
        }
    }
    values
}
