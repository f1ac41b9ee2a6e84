//! Export and import: a backup as JSON lines, one document per line.
//!
//! Each line is the document in the Convex JSON encoding plus its table:
//! `{"_table":"messages","_id":"…","_creationTime":1733…,"body":"hi",…}`. Ids and creation
//! times are preserved, so references between documents stay valid after a restore into an
//! empty data folder of the same app. System tables (`_session_requests`) are not
//! exported: they only deduplicate in-flight client requests.
//!
//! The export reads one snapshot, page by page, so it neither holds a table in memory nor
//! sees a half-applied transaction. The import commits in batches and reports the line of
//! the first bad document.

use std::io::{BufRead, Write};
use std::time::Instant;

use conflux_common::{Error, ErrorCode, Result};
use conflux_db::{Database, PaginationOpts};
use conflux_values::{DocumentId, Object, Value};

const PAGE_DOCUMENTS_COUNT: usize = 500;
const IMPORT_BATCH_DOCUMENTS_COUNT: usize = 500;
const PROGRESS_EVERY_COUNT: u64 = 10_000;

fn io_error(what: &str, err: std::io::Error) -> Error {
    Error::new(ErrorCode::StorageUnavailable, format!("{what}: {err}"))
}

/// Write every document of every app table to `out`; returns the number written.
/// `progress` is called now and then with the count so far.
pub fn export(db: &Database, out: &mut dyn Write, progress: &mut dyn FnMut(u64)) -> Result<u64> {
    let snapshot = db.latest_ts();
    let mut written = 0u64;
    for table in db.table_names() {
        if table.starts_with('_') {
            continue;
        }
        let mut cursor = None;
        loop {
            let mut tx = db.begin_at(snapshot)?;
            let page = tx.query(&table)?.paginate(PaginationOpts {
                cursor: cursor.take(),
                num_items: PAGE_DOCUMENTS_COUNT,
            })?;
            for doc in &page.page {
                let mut line = doc.to_value().to_convex_json();
                if let Some(map) = line.as_object_mut() {
                    map.insert("_table".into(), serde_json::Value::String(table.clone()));
                }
                serde_json::to_writer(&mut *out, &line).map_err(Error::internal)?;
                out.write_all(b"\n")
                    .map_err(|e| io_error("could not write the export", e))?;
                written += 1;
                if written % PROGRESS_EVERY_COUNT == 0 {
                    progress(written);
                }
            }
            if page.is_done {
                break;
            }
            cursor = Some(page.continue_cursor);
        }
    }
    out.flush()
        .map_err(|e| io_error("could not write the export", e))?;
    progress(written);
    Ok(written)
}

struct ImportRow {
    line: u64,
    table: String,
    id: DocumentId,
    creation_time: f64,
    value: Object,
}

fn parse_line(line: &str, number: u64) -> Result<ImportRow> {
    let at = |msg: String| Error::new(ErrorCode::BadRequest, format!("line {number}: {msg}"));
    let json: serde_json::Value =
        serde_json::from_str(line).map_err(|e| at(format!("not valid JSON: {e}")))?;
    let serde_json::Value::Object(mut map) = json else {
        return Err(at("expected a JSON object (one document per line)".into()));
    };
    let table = match map.remove("_table") {
        Some(serde_json::Value::String(table)) => table,
        _ => {
            return Err(at(
                "missing `_table` (the table the document belongs to)".into()
            ))
        }
    };
    let id = match map.remove("_id") {
        Some(serde_json::Value::String(id)) => id
            .parse::<DocumentId>()
            .map_err(|e| at(format!("bad `_id`: {}", e.message())))?,
        _ => return Err(at("missing `_id`".into())),
    };
    let creation_time = map
        .remove("_creationTime")
        .and_then(|v| v.as_f64())
        .ok_or_else(|| at("missing or non-numeric `_creationTime`".into()))?;
    let value = Value::from_convex_json(&serde_json::Value::Object(map))
        .map_err(|e| at(e.message().to_string()))?;
    let Value::Object(value) = value else {
        return Err(at("expected an object".into()));
    };
    Ok(ImportRow {
        line: number,
        table,
        id,
        creation_time,
        value,
    })
}

/// Fail unless every app table of `db` is empty: an import restores a backup, it does not
/// merge one into live data (ids would collide, and half a merge is worse than none).
fn ensure_empty(db: &Database) -> Result<()> {
    let mut tx = db.begin();
    for table in db.table_names() {
        if table.starts_with('_') {
            continue;
        }
        if tx.query(&table)?.first()?.is_some() {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!(
                    "the data folder is not empty (table `{table}` has documents); an import \
                     restores a backup into an empty data folder: choose a new one with --data"
                ),
            ));
        }
    }
    Ok(())
}

/// Read JSON lines from `input` and insert every document with its id and creation time
/// into `db`, whose app tables must be empty. Returns the number imported. Stops at the
/// first bad line, naming it; batches committed before it stay committed (fix the file and
/// import again into a new, empty folder).
pub async fn import(
    db: &Database,
    input: &mut dyn BufRead,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    ensure_empty(db)?;
    let started = Instant::now();
    let mut imported = 0u64;
    let mut number = 0u64;
    let mut batch: Vec<ImportRow> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let read = input
            .read_line(&mut line)
            .map_err(|e| io_error("could not read the import file", e))?;
        if read > 0 {
            number += 1;
            let trimmed = line.trim();
            if !trimmed.is_empty() {
                batch.push(parse_line(trimmed, number)?);
            }
        }
        if batch.len() >= IMPORT_BATCH_DOCUMENTS_COUNT || (read == 0 && !batch.is_empty()) {
            let mut tx = db.begin();
            let count = batch.len() as u64;
            for row in batch.drain(..) {
                tx.import(&row.table, row.id, row.creation_time, row.value)
                    .map_err(|e| e.context(format!("line {}", row.line)))?;
            }
            db.commit(tx).await?;
            let before = imported;
            imported += count;
            if before / PROGRESS_EVERY_COUNT != imported / PROGRESS_EVERY_COUNT {
                progress(imported);
            }
        }
        if read == 0 {
            break;
        }
    }
    progress(imported);
    tracing::info!(
        documents = imported,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "import finished"
    );
    Ok(imported)
}
