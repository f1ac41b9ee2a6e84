//! Document id parsing: ids arrive as plain strings in arguments, URLs and imports.
//!
//! Beyond "no panic": an id that parses prints back as exactly the same text (ids are
//! compared and stored by their text on the client side), and an id built from any table
//! number and bytes parses back to itself.

#![no_main]

use conflux_values::{DocumentId, TableNumber};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = text.parse::<DocumentId>() {
        assert_eq!(id.to_string(), text, "a parsed id prints differently");
        assert_eq!(id.to_string().len(), DocumentId::STRING_LEN);
        let json = serde_json::Value::String(text.to_string());
        let from_json: Result<DocumentId, _> = serde_json::from_value(json);
        assert_eq!(from_json.ok(), Some(id), "serde and FromStr disagree");
    }

    // Every id the server can make prints as text that parses back to it.
    if data.len() >= 20 {
        let mut internal = [0u8; 16];
        internal.copy_from_slice(&data[..16]);
        let table = u32::from_le_bytes([data[16], data[17], data[18], data[19]]);
        let id = DocumentId::from_parts(TableNumber(table), internal);
        let printed = id.to_string();
        assert!(
            !printed.contains('|'),
            "ids never contain the storage separator"
        );
        match printed.parse::<DocumentId>() {
            Ok(back) => {
                assert_eq!(back, id);
                assert_eq!(back.table_number(), TableNumber(table));
            }
            Err(err) => panic!("{printed} does not parse: {err}"),
        }
    }
});
