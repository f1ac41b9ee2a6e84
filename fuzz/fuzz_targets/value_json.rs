//! The value decoders: Convex JSON (the wire format of every argument and document) and
//! clean JSON (the HTTP API's `format: "json"`).
//!
//! Beyond "no panic", for every input that decodes:
//! - Convex JSON round-trips: decode → encode → decode gives the same value, and the
//!   re-encoded JSON is a fixed point (encode(decode(encode(v))) == encode(v));
//! - the streaming encoder (`ConvexJson`) writes exactly the text of `to_convex_json`, and
//!   `convex_json_len` is its length;
//! - the index key of the value decodes back to the value, and keys sort like values;
//! - clean JSON round-trips for the values clean JSON can express.

#![no_main]

use std::cmp::Ordering;

use conflux_values::{index_key, limits, ConvexJson, Value};
use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;

fn check_convex(json: &Json) {
    let Ok(value) = Value::from_convex_json(json) else {
        return;
    };
    let encoded = value.to_convex_json();
    let again = match Value::from_convex_json(&encoded) {
        Ok(again) => again,
        Err(err) => panic!("re-encoded value does not decode: {err}\nencoded: {encoded}"),
    };
    assert_eq!(again, value, "decode(encode(v)) != v");
    assert_eq!(
        again.to_convex_json(),
        encoded,
        "encoding is not a fixed point"
    );

    let text = match serde_json::to_string(&ConvexJson(&value)) {
        Ok(text) => text,
        Err(err) => panic!("ConvexJson cannot serialize a decoded value: {err}"),
    };
    assert_eq!(
        text,
        encoded.to_string(),
        "ConvexJson and to_convex_json disagree"
    );
    assert_eq!(
        value.convex_json_len(),
        text.len(),
        "convex_json_len is wrong"
    );
    assert!(
        limits::check_value(&value).is_ok(),
        "a decoded value breaks the limits"
    );

    // Index keys: decode(encode(v)) == v, and elements sort like their keys.
    let key = index_key::encode(&[Some(value.clone())]);
    match index_key::decode(&key) {
        Ok(back) => assert_eq!(back, vec![Some(value.clone())], "index key round trip"),
        Err(err) => panic!("the index key of a decoded value does not decode: {err}"),
    }
    if let Value::Array(items) = &value {
        for pair in items.windows(2) {
            let a = index_key::encode(&[Some(pair[0].clone())]);
            let b = index_key::encode(&[Some(pair[1].clone())]);
            assert_eq!(
                a.cmp(&b),
                pair[0].cmp(&pair[1]),
                "index key order differs from value order for {} and {}",
                pair[0],
                pair[1]
            );
            if pair[0].cmp(&pair[1]) == Ordering::Equal {
                assert_eq!(pair[0], pair[1]);
            }
        }
    }
    // Display is used in error messages; it must handle every value.
    let _ = value.to_string();
}

fn check_clean(json: &Json) {
    let Ok(value) = Value::from_clean_json(json) else {
        return;
    };
    let encoded = value.to_clean_json();
    match Value::from_clean_json(&encoded) {
        Ok(again) => assert_eq!(again, value, "clean JSON round trip"),
        Err(err) => panic!("re-encoded clean JSON does not decode: {err}\nencoded: {encoded}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<Json>(data) else {
        return;
    };
    check_convex(&json);
    check_clean(&json);
});
