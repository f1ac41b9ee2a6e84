//! The index-key encoding sorts exactly like the values it encodes, and decodes back to them.
//!
//! Indexes, `order("desc")`, range reads and pagination all assume this; a single
//! disagreement would make a query skip or repeat documents.

mod support;

use conflux_values::{index_key, Value};
use proptest::collection::vec;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn byte_order_equals_value_order(
        a in support::tuple(support::value()),
        b in support::tuple(support::value()),
    ) {
        prop_assert_eq!(index_key::encode(&a).cmp(&index_key::encode(&b)), a.cmp(&b));
    }

    #[test]
    fn byte_order_equals_value_order_for_close_values(
        a in support::tuple(support::close_value()),
        b in support::tuple(support::close_value()),
    ) {
        prop_assert_eq!(index_key::encode(&a).cmp(&index_key::encode(&b)), a.cmp(&b), "{:?} vs {:?}", a, b);
    }

    #[test]
    fn sorting_keys_sorts_the_values(mut tuples in vec(support::tuple(support::close_value()), 2..24)) {
        tuples.sort();
        let keys: Vec<Vec<u8>> = tuples.iter().map(|t| index_key::encode(t)).collect();
        for (pair, tuple_pair) in keys.windows(2).zip(tuples.windows(2)) {
            prop_assert!(pair[0] <= pair[1]);
            prop_assert_eq!(pair[0] == pair[1], tuple_pair[0] == tuple_pair[1]);
        }
    }

    #[test]
    fn keys_decode_to_what_was_encoded(tuple in support::tuple(support::value())) {
        let key = index_key::encode(&tuple);
        let back = index_key::decode(&key);
        prop_assert_eq!(back.as_ref().ok(), Some(&tuple));
        // Decoding is canonical: re-encoding gives the same bytes.
        prop_assert_eq!(back.map(|t| index_key::encode(&t)).ok(), Some(key));
    }

    #[test]
    fn a_tuple_prefix_range_holds_exactly_its_extensions(
        prefix in support::tuple(support::close_value()),
        other in support::tuple(support::close_value()),
    ) {
        let start = index_key::encode(&prefix);
        let key = index_key::encode(&other);
        let in_range = key >= start
            && index_key::prefix_successor(&start).is_none_or(|end| key < end);
        prop_assert_eq!(in_range, other.starts_with(&prefix), "{:?} / {:?}", prefix, other);
    }

    #[test]
    fn corrupt_keys_never_panic(bytes in vec(any::<u8>(), 0..40)) {
        let _ = index_key::decode(&bytes);
    }
}

#[test]
fn missing_sorts_before_null_and_types_keep_their_order() {
    let ordered = [
        None,
        Some(Value::Null),
        Some(Value::Int64(i64::MIN)),
        Some(Value::Int64(i64::MAX)),
        Some(Value::Float64(f64::NEG_INFINITY)),
        Some(Value::Float64(-0.0)),
        Some(Value::Float64(0.0)),
        Some(Value::Float64(f64::INFINITY)),
        Some(Value::Float64(f64::NAN)),
        Some(Value::Boolean(false)),
        Some(Value::Boolean(true)),
        Some(Value::from("")),
        Some(Value::from("\u{10ffff}")),
        Some(Value::Bytes(vec![])),
        Some(Value::Bytes(vec![0xff, 0xff])),
        Some(Value::Array(vec![])),
        Some(Value::Array(vec![Value::Null])),
        Some(Value::Object(conflux_values::Object::new())),
    ];
    for pair in ordered.windows(2) {
        assert!(pair[0] < pair[1], "{:?} < {:?}", pair[0], pair[1]);
        assert!(
            index_key::encode(&pair[..1]) < index_key::encode(&pair[1..]),
            "{:?} < {:?}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn every_pair_of_edge_values_sorts_the_same_as_bytes() {
    let values = support::edge_values();
    let keyed: Vec<(Option<Value>, Vec<u8>)> = values
        .into_iter()
        .map(Some)
        .chain([None])
        .map(|v| {
            let key = index_key::encode(std::slice::from_ref(&v));
            (v, key)
        })
        .collect();
    for (a, a_key) in &keyed {
        for (b, b_key) in &keyed {
            assert_eq!(a_key.cmp(b_key), a.cmp(b), "{a:?} vs {b:?}");
        }
        assert_eq!(index_key::decode(a_key).ok(), Some(vec![a.clone()]));
    }
}

#[test]
fn every_pair_of_two_component_edge_tuples_sorts_the_same_as_bytes() {
    let scalars: Vec<Option<Value>> = support::edge_scalars()
        .into_iter()
        .map(Some)
        .chain([None])
        .collect();
    let tuples: Vec<(Vec<Option<Value>>, Vec<u8>)> = scalars
        .iter()
        .flat_map(|a| scalars.iter().map(move |b| vec![a.clone(), b.clone()]))
        .chain(scalars.iter().map(|a| vec![a.clone()]))
        .map(|t| {
            let key = index_key::encode(&t);
            (t, key)
        })
        .collect();
    for (a, a_key) in &tuples {
        for (b, b_key) in &tuples {
            if a_key.cmp(b_key) != a.cmp(b) {
                panic!("{a:?} vs {b:?}");
            }
        }
    }
}
