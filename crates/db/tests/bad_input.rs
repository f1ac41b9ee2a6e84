//! Bad input gets a clear error with a stable code, never a panic: unknown tables and
//! indexes, schema violations, oversize or too-deep documents, reserved field names, bad
//! cursors and malformed index ranges.

mod common;

use common::{chat_schema, message, post};
use conflux_common::ErrorCode;
use conflux_db::{Database, IndexRange, PaginationOpts, Timestamp};
use conflux_values::{object, DocumentId, Object, Value};

fn db() -> Database {
    Database::open_in_memory(chat_schema()).expect("open")
}

#[test]
fn an_unknown_table_is_named_with_the_known_tables() {
    let db = db();
    let mut tx = db.begin();
    let err = tx.query("mesages").expect_err("unknown table");
    assert_eq!(err.code(), ErrorCode::UnknownTable);
    assert_eq!(
        err.message(),
        "table `mesages` does not exist (known tables: `messages`, `users`); declare it in the \
         schema"
    );
    let err = tx
        .insert("mesages", message("general", "hi"))
        .expect_err("unknown table");
    assert_eq!(err.code(), ErrorCode::UnknownTable);
}

#[test]
fn an_unknown_index_is_named_with_the_tables_indexes() {
    let db = db();
    let mut tx = db.begin();
    let err = tx
        .query("messages")
        .expect("table")
        .with_index("by_author", IndexRange::new())
        .expect_err("unknown index");
    assert_eq!(err.code(), ErrorCode::UnknownIndex);
    assert_eq!(
        err.message(),
        "index `by_author` does not exist on table `messages` (its indexes: `by_id`, \
         `by_creation_time`, `by_channel`); declare it in the schema"
    );
}

#[test]
fn a_schema_violation_names_the_table_the_field_and_what_was_expected() {
    let db = db();
    let mut tx = db.begin();
    let err = tx
        .insert("messages", object! {"channel" => "general", "body" => 42.0})
        .expect_err("body must be a string");
    assert_eq!(err.code(), ErrorCode::SchemaValidation);
    assert!(
        err.message()
            .starts_with("table `messages`: field `body`: expected string, found float64"),
        "{}",
        err.message()
    );

    let err = tx
        .insert("messages", object! {"channel" => "general"})
        .expect_err("body is required");
    assert_eq!(err.code(), ErrorCode::SchemaValidation);
    assert!(
        err.message()
            .starts_with("table `messages`: field `body`: required by the schema but missing"),
        "{}",
        err.message()
    );

    let err = tx
        .insert(
            "messages",
            object! {"channel" => "general", "body" => "hi", "color" => "red"},
        )
        .expect_err("color is not declared");
    assert!(
        err.message()
            .starts_with("table `messages`: field `color`: not in the schema"),
        "{}",
        err.message()
    );

    // `author` must be the id of a user, not of a message.
    let message_id = tx
        .insert("messages", message("general", "hi"))
        .expect("valid");
    let err = tx
        .insert(
            "messages",
            object! {"channel" => "general", "body" => "reply", "author" => message_id.to_string()},
        )
        .expect_err("wrong table");
    assert_eq!(err.code(), ErrorCode::SchemaValidation);
    assert!(err.message().contains("`messages`"), "{}", err.message());

    // A patch is validated as a whole document.
    let err = tx
        .patch(&message_id, object! {"likes" => "many"})
        .expect_err("likes is an int64");
    assert_eq!(err.code(), ErrorCode::SchemaValidation);
    assert!(err
        .message()
        .contains("field `likes`: expected int64, found string"));
}

#[test]
fn oversize_and_too_deep_documents_are_refused_naming_the_limit() {
    let db = db();
    let mut tx = db.begin();
    let big = object! {"name" => "x".repeat(2 << 20)};
    let err = tx.insert("users", big).expect_err("too big");
    assert_eq!(err.code(), ErrorCode::LimitExceeded);
    assert!(
        err.message().contains("DOCUMENT_MAX_BYTES"),
        "{}",
        err.message()
    );
    assert!(
        err.message().starts_with("table `users`"),
        "{}",
        err.message()
    );

    let mut deep = Value::Null;
    for _ in 0..40 {
        deep = Value::Object(object! {"inner" => deep});
    }
    let mut doc = Object::new();
    doc.insert("nested".to_owned(), deep).expect("valid name");
    let err = tx.insert("users", doc).expect_err("too deep");
    assert_eq!(err.code(), ErrorCode::LimitExceeded);
    assert!(err.message().contains("NESTING"), "{}", err.message());
    assert!(tx.is_read_only(), "nothing was written");
}

#[test]
fn fields_starting_with_an_underscore_are_reserved() {
    let db = db();
    let mut tx = db.begin();
    let err = tx
        .insert("users", object! {"_secret" => true})
        .expect_err("reserved");
    assert_eq!(err.code(), ErrorCode::InvalidValue);
    assert!(
        err.message().contains("field `_secret`"),
        "{}",
        err.message()
    );
    let err = tx
        .insert("users", object! {"_id" => "mine"})
        .expect_err("system field");
    assert_eq!(err.code(), ErrorCode::InvalidValue);

    let id = tx
        .insert("users", object! {"name" => "ada"})
        .expect("valid");
    let err = tx
        .patch(&id, object! {"_creationTime" => 1.0})
        .expect_err("cannot change the creation time");
    assert_eq!(err.code(), ErrorCode::InvalidValue);
    assert!(err.message().contains("_creationTime"));
    let err = tx
        .replace(&id, object! {"_hidden" => 1i64})
        .expect_err("reserved");
    assert_eq!(err.code(), ErrorCode::InvalidValue);
    let err = tx.patch_remove(&id, &["_id"]).expect_err("reserved");
    assert_eq!(err.code(), ErrorCode::InvalidValue);
}

#[tokio::test]
async fn a_bad_cursor_is_a_clear_bad_request() {
    let db = db();
    post(&db, "general", &["a", "b", "c"]).await;
    let mut tx = db.begin();
    let page = |tx: &mut conflux_db::Transaction, index: &str, cursor: &str| {
        tx.query("messages")
            .expect("table")
            .with_index(index, IndexRange::new())
            .expect("index")
            .paginate(PaginationOpts {
                cursor: Some(cursor.to_owned()),
                num_items: 2,
            })
    };
    for bad in ["", "not a cursor", "0102", "ééé"] {
        let err = page(&mut tx, "by_channel", bad).expect_err("bad cursor");
        assert_eq!(err.code(), ErrorCode::BadRequest);
        assert!(
            err.message().contains("invalid pagination cursor"),
            "{}",
            err.message()
        );
    }
    let first = tx
        .query("messages")
        .expect("table")
        .paginate(PaginationOpts {
            cursor: None,
            num_items: 2,
        })
        .expect("first page");
    let err = page(&mut tx, "by_channel", &first.continue_cursor).expect_err("other index");
    assert_eq!(err.code(), ErrorCode::BadRequest);
    assert!(err.message().contains("another query"), "{}", err.message());
    let zero = tx
        .query("messages")
        .expect("table")
        .paginate(PaginationOpts {
            cursor: None,
            num_items: 0,
        })
        .expect_err("empty pages make no progress");
    assert_eq!(zero.code(), ErrorCode::BadRequest);
}

#[test]
fn an_index_range_must_follow_the_index_fields() {
    let db = db();
    let mut tx = db.begin();
    let try_range = |tx: &mut conflux_db::Transaction, range: IndexRange| {
        tx.query("messages")
            .expect("table")
            .with_index("by_channel", range)
            .err()
            .map(|err| (err.code(), err.message().to_owned()))
    };
    let (code, message) =
        try_range(&mut tx, IndexRange::new().eq("body", "hi")).expect("wrong field");
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("must name `channel`"), "{message}");
    assert!(try_range(
        &mut tx,
        IndexRange::new().gt("channel", "a").eq("channel", "b")
    )
    .is_some());
    assert!(try_range(
        &mut tx,
        IndexRange::new().gt("channel", "a").gte("channel", "b")
    )
    .is_some());
    assert!(try_range(&mut tx, IndexRange::new().lt("_creationTime", 5.0)).is_some());
    assert!(
        try_range(
            &mut tx,
            IndexRange::new()
                .eq("channel", "a")
                .eq("_creationTime", 1.0)
                .eq("_id", "x")
                .eq("extra", 1i64)
        )
        .is_some(),
        "past the last field"
    );
    assert!(try_range(
        &mut tx,
        IndexRange::new()
            .eq("channel", "a")
            .gt("_creationTime", 5.0)
    )
    .is_none());
}

#[tokio::test]
async fn missing_documents_and_impossible_snapshots_are_reported() {
    let db = db();
    let mut tx = db.begin();
    let id = tx
        .insert("users", object! {"name" => "ada"})
        .expect("insert");
    db.commit(tx).await.expect("commit");
    let mut tx = db.begin();
    tx.delete(&id).expect("delete");
    let err = tx
        .patch(&id, object! {"name" => "bob"})
        .expect_err("deleted");
    assert_eq!(err.code(), ErrorCode::DocumentNotFound);
    assert!(err.message().contains("table `users`"), "{}", err.message());
    let err = tx.delete(&id).expect_err("already deleted");
    assert_eq!(err.code(), ErrorCode::DocumentNotFound);

    let future = Timestamp::new(db.latest_ts().as_u64() + 1_000_000_000).expect("valid");
    let err = db.begin_at(future).expect_err("in the future");
    assert_eq!(err.code(), ErrorCode::BadRequest);
    let err = db
        .begin_at(Timestamp::new(1).expect("valid"))
        .expect_err("beyond retention");
    assert!(err.message().contains("SNAPSHOT_RETENTION_MS"));

    let mut tx = db.begin();
    tx.insert("users", object! {"name" => "twin"})
        .expect("insert");
    tx.insert("users", object! {"name" => "twin"})
        .expect("insert");
    let err = tx
        .query("users")
        .expect("table")
        .with_index("by_name", IndexRange::new().eq("name", "twin"))
        .expect("index")
        .unique()
        .expect_err("two twins");
    assert_eq!(err.code(), ErrorCode::BadRequest);
}

#[test]
fn an_import_refuses_creation_times_that_are_not_times() {
    // Found by fuzzing the import format: `-0` was accepted, and the export then wrote it
    // as `{"$float": ...}`, which the import refuses, so the backup could not be restored.
    let db = db();
    let mut tx = db.begin();
    let table = tx
        .insert("messages", message("general", "hi"))
        .expect("insert")
        .table_number();
    for (n, bad) in [-0.0, -1.0, f64::NAN, f64::INFINITY]
        .into_iter()
        .enumerate()
    {
        let id = DocumentId::from_parts(table, [n as u8 + 1; 16]);
        let err = tx
            .import("messages", id, bad, message("general", "imported"))
            .expect_err("not a time");
        assert_eq!(err.code(), ErrorCode::InvalidValue);
        assert!(
            err.message().contains("is not a valid time"),
            "{}",
            err.message()
        );
    }
    let id = DocumentId::from_parts(table, [9; 16]);
    tx.import("messages", id, 0.0, message("general", "at the epoch"))
        .expect("the epoch itself is a time");
}
