//! Serializable mutations: a transaction whose reads were changed by a concurrent commit
//! fails with `OccConflict`; a commit that did not touch what it read does not. Pause
//! points in the committer make the races deterministic.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{chat_schema, message, open_chat, post};
use conflux_common::ErrorCode;
use conflux_db::{
    Database, DatabaseOptions, Document, IndexRange, MemoryPersistence, Order, PausePoint,
    Transaction,
};
use conflux_values::{object, DocumentId};

fn channel(tx: &mut Transaction, name: &str) -> Vec<Document> {
    tx.query("messages")
        .expect("table")
        .with_index("by_channel", IndexRange::new().eq("channel", name))
        .expect("index")
        .collect()
        .expect("query")
}

fn first_n(tx: &mut Transaction, name: &str, n: usize, order: Order) -> Vec<Document> {
    tx.query("messages")
        .expect("table")
        .with_index("by_channel", IndexRange::new().eq("channel", name))
        .expect("index")
        .order(order)
        .take(n)
        .expect("query")
}

/// A mutation in the style of "count the channel's messages and post a summary".
fn summarize(tx: &mut Transaction, name: &str) {
    let count = channel(tx, name).len();
    tx.insert(
        "messages",
        message("summaries", &format!("{name}: {count}")),
    )
    .expect("insert");
}

#[tokio::test]
async fn a_commit_in_flight_when_a_reader_began_makes_the_reader_conflict() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = open_chat(dir.path());
    post(&db, "general", &["hello"]).await;

    // B posts to #general; hold its commit after the durable write, before it is published.
    let held = db.pause_points().hold(PausePoint::AfterWrite);
    let mut b = db.begin();
    b.insert("messages", message("general", "from B"))
        .expect("insert");
    let b_commit = {
        let db = db.clone();
        tokio::spawn(async move { db.commit(b).await })
    };
    held.wait_reached().await;

    // A begins now: B is not visible yet, so A counts one message.
    let mut a = db.begin();
    summarize(&mut a, "general");
    let a_commit = {
        let db = db.clone();
        tokio::spawn(async move { db.commit(a).await })
    };
    // A is queued behind B; let B be published, then A is checked against it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.release();

    let b_ts = b_commit.await.expect("task").expect("B commits");
    let err = a_commit.await.expect("task").expect_err("A must conflict");
    assert_eq!(err.code(), ErrorCode::OccConflict);
    assert!(
        err.message().contains("`messages`"),
        "the conflict names the table: {}",
        err.message()
    );
    assert!(err.message().contains(&b_ts.to_string()));

    // Re-run, as the functions layer does: now A sees B and succeeds.
    let mut retry = db.begin();
    summarize(&mut retry, "general");
    db.commit(retry).await.expect("the retry commits");
    let mut check = db.begin();
    assert_eq!(
        common::bodies(&channel(&mut check, "summaries")),
        ["general: 2"]
    );
}

#[tokio::test]
async fn commits_in_the_same_group_are_checked_against_each_other() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    post(&db, "general", &["hello"]).await;
    let mut a = db.begin();
    summarize(&mut a, "general");
    let mut b = db.begin();
    b.insert("messages", message("general", "from B"))
        .expect("insert");
    let mut unrelated = db.begin();
    summarize(&mut unrelated, "random");

    // Queue B, then A, then the unrelated one behind a held first commit: one group.
    let held = db.pause_points().hold(PausePoint::BeforeValidate);
    let mut first = db.begin();
    first
        .insert("users", object! {"name" => "ada"})
        .expect("insert");
    let mut tasks = Vec::new();
    for tx in [first, b, a, unrelated] {
        let db = db.clone();
        tasks.push(tokio::spawn(async move { db.commit(tx).await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.wait_reached().await;
    held.release();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    assert!(results[0].is_ok());
    assert!(results[1].is_ok(), "B commits");
    assert_eq!(
        results[2].as_ref().map_err(|e| e.code()).err(),
        Some(ErrorCode::OccConflict),
        "A read #general, which B changed earlier in the same group"
    );
    assert!(results[3].is_ok(), "#random was not touched");
}

#[tokio::test]
async fn a_write_outside_the_scanned_range_does_not_conflict() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    post(&db, "general", &["hello"]).await;
    post(&db, "random", &["cats"]).await;
    let mut a = db.begin();
    summarize(&mut a, "general");
    post(&db, "random", &["dogs"]).await;
    let mut b = db.begin();
    b.insert("users", object! {"name" => "ada"})
        .expect("insert");
    db.commit(b).await.expect("commit");
    db.commit(a)
        .await
        .expect("writes to #random and users do not touch #general");
}

#[tokio::test]
async fn take_ten_only_conflicts_with_writes_among_what_it_scanned() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    let names: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    post(&db, "general", &refs).await;

    // The 10 oldest: a newer message lands beyond the 10th key.
    let mut a = db.begin();
    let oldest = first_n(&mut a, "general", 10, Order::Asc);
    assert_eq!(oldest.len(), 10);
    a.insert("users", object! {"name" => "reader"})
        .expect("insert");
    post(&db, "general", &["newest"]).await;
    db.commit(a)
        .await
        .expect("a write beyond the 10th key does not conflict");

    // Editing the 20th (unscanned) message does not conflict either; the 5th does.
    let mut b = db.begin();
    let oldest = first_n(&mut b, "general", 10, Order::Asc);
    b.insert("users", object! {"name" => "reader"})
        .expect("insert");
    let mut c = db.begin();
    let all = channel(&mut c, "general");
    c.patch(&all[19].id, object! {"body" => "edited"})
        .expect("patch");
    db.commit(c).await.expect("commit");
    let mut d = db.begin();
    d.patch(&oldest[4].id, object! {"body" => "edited"})
        .expect("patch");
    db.commit(d).await.expect("commit");
    let err = db.commit(b).await.expect_err("the 5th message changed");
    assert_eq!(err.code(), ErrorCode::OccConflict);

    // In descending order the 10 newest are scanned, so a new message conflicts.
    let mut e = db.begin();
    first_n(&mut e, "general", 10, Order::Desc);
    e.insert("users", object! {"name" => "reader"})
        .expect("insert");
    post(&db, "general", &["even newer"]).await;
    let err = db
        .commit(e)
        .await
        .expect_err("the new message is among the newest");
    assert_eq!(err.code(), ErrorCode::OccConflict);
}

#[tokio::test]
async fn a_filtered_out_document_still_counts_as_read() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    post(&db, "general", &["keep", "skip"]).await;
    let mut a = db.begin();
    let kept = a
        .query("messages")
        .expect("table")
        .with_index("by_channel", IndexRange::new().eq("channel", "general"))
        .expect("index")
        .filter(|doc| doc.value.get("body") == Some(&"keep".into()))
        .collect()
        .expect("query");
    assert_eq!(kept.len(), 1);
    a.insert("users", object! {"name" => "reader"})
        .expect("insert");
    let skipped: DocumentId = channel(&mut db.begin(), "general")[1].id;
    let mut b = db.begin();
    b.patch(&skipped, object! {"body" => "keep"})
        .expect("patch");
    db.commit(b).await.expect("commit");
    let err = db
        .commit(a)
        .await
        .expect_err("the filter's outcome changed");
    assert_eq!(err.code(), ErrorCode::OccConflict);
}

#[tokio::test]
async fn two_updates_of_one_document_conflict_but_updates_of_two_do_not() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    let mut setup = db.begin();
    let x = setup
        .insert("users", object! {"name" => "x", "n" => 0i64})
        .expect("insert");
    let y = setup
        .insert("users", object! {"name" => "y", "n" => 0i64})
        .expect("insert");
    db.commit(setup).await.expect("commit");

    let increment = |tx: &mut Transaction, id: &DocumentId| {
        let doc = tx.get(id).expect("get").expect("exists");
        let n = doc.value.get("n").and_then(|v| v.as_i64()).unwrap_or(0);
        tx.patch(id, object! {"n" => n + 1}).expect("patch");
    };
    let mut a = db.begin();
    increment(&mut a, &x);
    let mut b = db.begin();
    increment(&mut b, &x);
    let mut c = db.begin();
    increment(&mut c, &y);
    db.commit(a).await.expect("first writer wins");
    db.commit(c).await.expect("another document: no conflict");
    let err = db.commit(b).await.expect_err("lost update prevented");
    assert_eq!(err.code(), ErrorCode::OccConflict);
    assert!(err.message().contains("`users`"), "{}", err.message());
    let n = db
        .begin()
        .get(&x)
        .expect("get")
        .expect("exists")
        .value
        .get("n")
        .cloned();
    assert_eq!(n, Some(1i64.into()));
    assert_eq!(db.stats().conflicts, 1);
}

#[tokio::test]
async fn a_snapshot_older_than_the_write_log_conflicts_conservatively() {
    let options = DatabaseOptions {
        write_log_max_entries: 2,
        ..DatabaseOptions::default()
    };
    let db =
        Database::open_with_options(Arc::new(MemoryPersistence::new()), chat_schema(), options)
            .expect("open");
    post(&db, "general", &["hello"]).await;
    let mut a = db.begin();
    summarize(&mut a, "general");
    // Three unrelated commits push A's snapshot out of the two-entry write log.
    post(&db, "random", &["1", "2", "3"]).await;
    let err = db.commit(a).await.expect_err("cannot prove A is safe");
    assert_eq!(err.code(), ErrorCode::OccConflict);
    assert!(err.message().contains("`messages`"), "{}", err.message());
    assert!(err.message().contains("WRITE_LOG_MAX_ENTRIES_COUNT"));
}

#[tokio::test]
async fn read_only_transactions_commit_at_their_snapshot() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    post(&db, "general", &["hello"]).await;
    let mut reader = db.begin();
    let snapshot = reader.snapshot_ts();
    channel(&mut reader, "general");
    post(&db, "general", &["changed"]).await;
    assert!(reader.is_read_only());
    assert_eq!(db.commit(reader).await.ok(), Some(snapshot));
}
