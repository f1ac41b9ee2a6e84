//! A chat app edits the same documents all day: the version collector keeps the store from
//! growing with every edit, while every snapshot anyone may still read stays intact.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{chat_schema, message};
use conflux_db::{
    Database, DatabaseOptions, IndexRange, MemoryPersistence, Persistence, SledPersistence,
};
use conflux_values::{object, DocumentId, TableNumber, Value};

/// Options with a short retention and a busy collector, so a test sees several passes.
fn collecting(retention_ms: u64) -> DatabaseOptions {
    DatabaseOptions {
        snapshot_retention: Duration::from_millis(retention_ms),
        version_gc_interval: Duration::from_millis(20),
        version_gc_batch: 7,
        ..DatabaseOptions::default()
    }
}

/// Wait until the collector has completed `passes` more passes than now.
async fn wait_for_passes(db: &Database, passes: u64) {
    let target = db.stats().collection_passes + passes;
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.stats().collection_passes < target {
        assert!(
            Instant::now() < deadline,
            "the collector makes passes: {:?}",
            db.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every stored version of the documents of `table`, as (document, number of versions).
fn versions(store: &dyn Persistence, table: TableNumber) -> Vec<(DocumentId, usize)> {
    let all = store
        .document_versions(table, None, 1_000_000)
        .expect("the store reads");
    let mut counts: Vec<(DocumentId, usize)> = Vec::new();
    for version in all {
        match counts.last_mut() {
            Some((id, count)) if *id == version.id => *count += 1,
            _ => counts.push((version.id, 1)),
        }
    }
    counts
}

fn likes(doc: &conflux_db::Document) -> Option<i64> {
    match doc.value.get("likes") {
        Some(Value::Int64(n)) => Some(*n),
        _ => None,
    }
}

#[tokio::test]
async fn a_hot_document_keeps_one_version_and_deleted_ones_vanish_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Arc::new(SledPersistence::open(dir.path()).expect("the store opens"));
    let db = Database::open_with_options(store.clone(), chat_schema(), collecting(0))
        .expect("the database opens");

    let mut tx = db.begin();
    let hot = tx
        .insert("messages", message("general", "likes counter"))
        .expect("insert");
    let mut spam = Vec::new();
    for n in 0..20 {
        spam.push(
            tx.insert("messages", message("spam", &format!("buy now {n}")))
                .expect("insert"),
        );
    }
    db.commit(tx).await.expect("commit");
    for n in 1..=200_i64 {
        let mut tx = db.begin();
        tx.patch(&hot, object! {"likes" => n}).expect("patch");
        db.commit(tx).await.expect("commit");
    }
    let mut tx = db.begin();
    for id in &spam {
        tx.delete(id).expect("delete");
    }
    db.commit(tx).await.expect("commit");

    wait_for_passes(&db, 2).await;
    let table = hot.table_number();
    assert_eq!(
        versions(store.as_ref(), table),
        vec![(hot, 1)],
        "one version of the live document is left, none of the deleted ones"
    );
    assert!(db.stats().versions_collected >= 200 + 2 * 20);

    let check = |db: &Database| {
        let mut tx = db.begin();
        let doc = tx.get(&hot).expect("read").expect("the document exists");
        assert_eq!(likes(&doc), Some(200));
        let spam_left = tx
            .query("messages")
            .expect("table")
            .with_index("by_channel", IndexRange::new().eq("channel", "spam"))
            .expect("index")
            .collect()
            .expect("query");
        assert!(spam_left.is_empty(), "deleted messages stay deleted");
        let general = tx
            .query("messages")
            .expect("table")
            .with_index("by_channel", IndexRange::new().eq("channel", "general"))
            .expect("index")
            .collect()
            .expect("query");
        assert_eq!(general.len(), 1);
    };
    check(&db);

    drop(db);
    drop(store);
    let store = Arc::new(SledPersistence::open(dir.path()).expect("the store reopens"));
    let db = Database::open_with_options(store, chat_schema(), DatabaseOptions::default())
        .expect("the database reopens");
    check(&db);
}

#[tokio::test]
async fn an_open_transaction_keeps_reading_its_snapshot_while_the_collector_runs() {
    let store = Arc::new(MemoryPersistence::new());
    let db = Database::open_with_options(store.clone(), chat_schema(), collecting(0))
        .expect("the database opens");
    let mut tx = db.begin();
    let id = tx
        .insert("messages", message("general", "hello"))
        .expect("insert");
    db.commit(tx).await.expect("commit");

    let mut reader = db.begin();
    let before = reader.get(&id).expect("read").expect("exists");
    assert_eq!(likes(&before), None);
    for n in 1..=30_i64 {
        let mut tx = db.begin();
        tx.patch(&id, object! {"likes" => n}).expect("patch");
        db.commit(tx).await.expect("commit");
    }
    wait_for_passes(&db, 3).await;
    let again = reader.get(&id).expect("read").expect("still exists");
    assert_eq!(likes(&again), None, "the open snapshot is intact");
    assert!(
        versions(store.as_ref(), id.table_number())
            .first()
            .map(|v| v.1)
            > Some(1),
        "versions the open transaction can see are kept"
    );

    drop(reader);
    wait_for_passes(&db, 2).await;
    assert_eq!(versions(store.as_ref(), id.table_number()), vec![(id, 1)]);
    let mut tx = db.begin();
    let now = tx.get(&id).expect("read").expect("exists");
    assert_eq!(likes(&now), Some(30));
}

/// A database with retention `retention_ms` holding one message written twice ("v1", then
/// "v2"), after two collector passes: the message and the commit of "v1".
async fn edited_once(retention_ms: u64) -> (Database, DocumentId, conflux_db::Timestamp) {
    let db = Database::open_with_options(
        Arc::new(MemoryPersistence::new()),
        chat_schema(),
        collecting(retention_ms),
    )
    .expect("the database opens");
    let mut tx = db.begin();
    let id = tx
        .insert("messages", message("general", "v1"))
        .expect("insert");
    let first = db.commit(tx).await.expect("commit");
    let mut tx = db.begin();
    tx.patch(&id, object! {"body" => "v2"}).expect("patch");
    db.commit(tx).await.expect("commit");
    wait_for_passes(&db, 2).await;
    (db, id, first)
}

#[tokio::test]
async fn time_travel_within_the_retention_works_and_behind_it_says_which_knob() {
    // Within the minute of retention the old version is still there.
    let (db, id, first) = edited_once(60_000).await;
    let mut past = db.begin_at(first).expect("a retained snapshot");
    let old = past.get(&id).expect("read").expect("exists");
    assert_eq!(old.value.get("body"), Some(&Value::from("v1")));

    // With no retention, the collector deletes it and time travel is refused by name.
    let (db, _, first) = edited_once(0).await;
    let err = db.begin_at(first).expect_err("behind the horizon");
    assert!(
        err.message().contains("SNAPSHOT_RETENTION_MS"),
        "{}",
        err.message()
    );
}
