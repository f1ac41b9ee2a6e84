//! The import format (`conflux import`): JSON lines, one document per line with its `_table`,
//! `_id` and `_creationTime`, driven through `conflux::transfer::import` into a fresh
//! in-memory database for every input.
//!
//! The schema has a `messages` table with an index and a `users` table with a document
//! validator, so imports reach the index and schema checks too.
//!
//! Beyond "no panic":
//! - an import that succeeds imported every non-empty line, and exporting gives back each
//!   document exactly (table, id, creation time, fields); importing that export into another
//!   fresh database succeeds and exports the same text again;
//! - an import that fails names a client error, never an internal one, and leaves nothing
//!   behind (all inputs here fit in one batch).

#![no_main]

use std::collections::BTreeMap;

use conflux::transfer::{export, import};
use conflux_common::ErrorCode;
use conflux_db::{Database, Schema, TableDef};
use conflux_fuzz::{block_on, text};
use conflux_values::validator::v;
use conflux_values::Value;
use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;

/// Inputs with more lines than one import batch may commit part of the file by design.
const ONE_BATCH_LINES: usize = 500;

fn fresh_database() -> Database {
    let schema = Schema::new()
        .table(TableDef::new("messages").index("by_channel", &["channel"]))
        .table(TableDef::new("users").validator(v::object([
            ("name", v::string().into()),
            ("age", v::optional(v::float64())),
        ])));
    match Database::open_in_memory(schema) {
        Ok(db) => db,
        Err(err) => panic!("an in-memory database cannot open: {err}"),
    }
}

fn export_text(db: &Database) -> String {
    let mut out = Vec::new();
    if let Err(err) = export(db, &mut out, &mut |_| {}) {
        panic!("export after import failed: {err}");
    }
    match String::from_utf8(out) {
        Ok(text) => text,
        Err(err) => panic!("the export is not UTF-8: {err}"),
    }
}

/// `(table, creation time bits, fields)` of each input line, by `_id`.
fn documents(text: &str) -> BTreeMap<String, (String, u64, Value)> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let Ok(Json::Object(mut map)) = serde_json::from_str::<Json>(line) else {
            panic!("an imported line is not an object: {line}");
        };
        let table = map
            .remove("_table")
            .and_then(|t| t.as_str().map(str::to_owned));
        let id = map
            .remove("_id")
            .and_then(|t| t.as_str().map(str::to_owned));
        let time = map.remove("_creationTime").and_then(|t| t.as_f64());
        let (Some(table), Some(id), Some(time)) = (table, id, time) else {
            panic!("an imported line lacks its system fields: {line}");
        };
        let value = Value::from_convex_json(&Json::Object(map))
            .unwrap_or_else(|err| panic!("imported fields do not decode: {err}"));
        out.insert(id, (table, time.to_bits(), value));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let input = text(data);
    let lines = input.lines().filter(|line| !line.trim().is_empty()).count();
    if lines >= ONE_BATCH_LINES {
        return;
    }
    let db = fresh_database();
    let imported = block_on(import(&db, &mut input.as_bytes(), &mut |_| {}));
    let exported = export_text(&db);
    match imported {
        Ok(count) => {
            assert_eq!(count, lines as u64, "every non-empty line is one document");
            let before = documents(&input);
            let after = documents(&exported);
            assert_eq!(
                after.len(),
                before.len(),
                "the export lost or gained documents"
            );
            assert_eq!(
                after, before,
                "a document changed on its way through the database"
            );

            let again = fresh_database();
            match block_on(import(&again, &mut exported.as_bytes(), &mut |_| {})) {
                Ok(count) => assert_eq!(count, lines as u64),
                Err(err) => panic!("an export does not import: {err}\n{exported}"),
            }
            assert_eq!(
                export_text(&again),
                exported,
                "export → import → export changed"
            );
        }
        Err(err) => {
            assert_ne!(
                err.code(),
                ErrorCode::Internal,
                "bad input is never internal: {err}"
            );
            assert!(exported.is_empty(), "a failed import left documents behind");
        }
    }
});
