//! Document ids: the text a client holds must lead back to the same document and table.

use conflux_common::ErrorCode;
use conflux_values::{DocumentId, TableNumber, Value};
use proptest::prelude::*;

proptest! {
    #[test]
    fn ids_round_trip_through_text(table in any::<u32>(), internal in any::<[u8; 16]>()) {
        let id = DocumentId::from_parts(TableNumber(table), internal);
        let text = id.to_string();
        prop_assert_eq!(text.len(), DocumentId::STRING_LEN);
        prop_assert!(!text.contains('|'));
        prop_assert!(text.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
        let parsed: Result<DocumentId, _> = text.parse();
        prop_assert_eq!(parsed.as_ref().ok(), Some(&id));
        prop_assert_eq!(parsed.map(|id| id.table_number()).ok(), Some(TableNumber(table)));
    }

    #[test]
    fn any_text_is_refused_or_is_the_canonical_form_of_an_id(text in prop_oneof!["[a-z2-7]{32}", "[a-zA-Z0-9|]{0,40}", any::<String>()]) {
        match text.parse::<DocumentId>() {
            Ok(id) => prop_assert_eq!(id.to_string(), text),
            Err(err) => {
                prop_assert_eq!(err.code(), ErrorCode::InvalidValue);
                prop_assert!(err.message().starts_with("Invalid document id"));
            }
        }
    }
}

#[test]
fn fresh_ids_differ_and_remember_their_table() {
    let a = DocumentId::new(TableNumber(10));
    let b = DocumentId::new(TableNumber(10));
    assert_ne!(a, b);
    assert_eq!(a.table_number(), TableNumber(10));
    assert_eq!(Value::from(a), Value::String(a.to_string()));
}
