//! Validators as the CLI pushes them (`Validator::from_json`) and checking values with them.
//!
//! Input: the validator's JSON on the first line, a Convex JSON value on the rest.
//!
//! Beyond "no panic":
//! - a validator that parses round-trips: `from_json(to_json(v)) == v`;
//! - checking agrees with itself under rewrites that must not change the answer:
//!   `v.union(V)` accepts exactly what `V` accepts, `v.array(V)` accepts `[x]` exactly when
//!   `V` accepts `x`, and `v.any()` accepts everything;
//! - a rejection has a message naming the validator.

#![no_main]

use conflux_fuzz::{first_line, text};
use conflux_values::validator::{FieldValidator, Validator};
use conflux_values::{DocumentId, TableNumber, Value};
use libfuzzer_sys::fuzz_target;

fn resolve_table(id: &DocumentId) -> Option<String> {
    match id.table_number() {
        TableNumber(1) => Some("users".to_owned()),
        TableNumber(2) => Some("messages".to_owned()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let input = text(data);
    let (validator_text, value_text) = first_line(&input);
    let Ok(json) = serde_json::from_str::<serde_json::Value>(validator_text) else {
        return;
    };
    let Ok(validator) = Validator::from_json(&json) else {
        return;
    };
    let encoded = validator.to_json();
    match Validator::from_json(&encoded) {
        Ok(again) => assert_eq!(again, validator, "from_json(to_json(v)) != v"),
        Err(err) => panic!("a validator's own JSON does not parse: {err}\n{encoded}"),
    }
    let _ = validator.to_string();

    let Ok(value_json) = serde_json::from_str::<serde_json::Value>(value_text) else {
        return;
    };
    let Ok(value) = Value::from_convex_json(&value_json) else {
        return;
    };
    let verdict = validator.check(&value, &resolve_table);
    if let Err(err) = &verdict {
        let message = err.message();
        assert!(!message.is_empty());
    }
    let accepted = verdict.is_ok();

    let union = Validator::Union(vec![validator.clone()]);
    assert_eq!(
        union.check(&value, &resolve_table).is_ok(),
        accepted,
        "v.union(V) and V disagree"
    );
    let array = Validator::Array(Box::new(validator.clone()));
    assert_eq!(
        array
            .check(&Value::Array(vec![value.clone()]), &resolve_table)
            .is_ok(),
        accepted,
        "v.array(V) on [x] and V on x disagree"
    );
    let optional_field = Validator::Object(
        [(
            "field".to_owned(),
            FieldValidator {
                validator: validator.clone(),
                optional: true,
            },
        )]
        .into_iter()
        .collect(),
    );
    assert!(
        optional_field
            .check(&Value::Object(Default::default()), &resolve_table)
            .is_ok(),
        "an optional field may be missing"
    );
    assert!(Validator::Any.check(&value, &resolve_table).is_ok());
});
