//! A chat app stores messages and lists them: inserts, point reads, index queries in both
//! orders, take, filters, pagination, snapshots, and restarts.

mod common;

use std::time::Duration;

use common::{bodies, chat_schema, message, open_chat, post};
use conflux_db::{
    Database, IndexRange, Order, PaginationOpts, PausePoint, Schema, TableDef, Timestamp,
};
use conflux_values::{object, Value};

#[tokio::test]
async fn messages_are_listed_by_channel_in_both_orders() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = open_chat(dir.path());
    post(&db, "general", &["hello", "how are you?", "fine"]).await;
    post(&db, "random", &["cats"]).await;
    post(&db, "general", &["bye"]).await;

    let mut tx = db.begin();
    let general = IndexRange::new().eq("channel", "general");
    let asc = tx
        .query("messages")
        .expect("table")
        .with_index("by_channel", general.clone())
        .expect("index")
        .collect()
        .expect("query");
    assert_eq!(bodies(&asc), ["hello", "how are you?", "fine", "bye"]);

    let desc = tx
        .query("messages")
        .expect("table")
        .with_index("by_channel", general.clone())
        .expect("index")
        .order(Order::Desc)
        .take(2)
        .expect("query");
    assert_eq!(bodies(&desc), ["bye", "fine"]);

    let with_question = tx
        .query("messages")
        .expect("table")
        .with_index("by_channel", general)
        .expect("index")
        .filter(|doc| {
            doc.value
                .get("body")
                .and_then(Value::as_str)
                .is_some_and(|body| body.ends_with('?'))
        })
        .collect()
        .expect("query");
    assert_eq!(bodies(&with_question), ["how are you?"]);

    // Without an index, a table is read in creation order.
    let everything = tx
        .query("messages")
        .expect("table")
        .collect()
        .expect("query");
    assert_eq!(
        bodies(&everything),
        ["hello", "how are you?", "fine", "cats", "bye"]
    );

    // A point read returns the document with its system fields.
    let first = &asc[0];
    let fetched = tx.get(&first.id).expect("get").expect("the message exists");
    assert_eq!(&fetched, first);
    let object = fetched.to_object();
    assert_eq!(
        object.get("_id"),
        Some(&Value::String(first.id.to_string()))
    );
    assert_eq!(
        object.get("_creationTime"),
        Some(&Value::Float64(first.creation_time))
    );
}

#[tokio::test]
async fn a_range_on_creation_time_narrows_a_channel() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    post(&db, "general", &["old", "older"]).await;
    let mut tx = db.begin();
    let cutoff = tx
        .query("messages")
        .expect("table")
        .collect()
        .expect("query")[0]
        .creation_time;
    drop(tx);
    post(&db, "general", &["new"]).await;

    let mut tx = db.begin();
    let after = tx
        .query("messages")
        .expect("table")
        .with_index(
            "by_channel",
            IndexRange::new()
                .eq("channel", "general")
                .gt("_creationTime", cutoff),
        )
        .expect("index")
        .collect()
        .expect("query");
    assert_eq!(bodies(&after), ["older", "new"]);
    let up_to = tx
        .query("messages")
        .expect("table")
        .with_index(
            "by_creation_time",
            IndexRange::new().lte("_creationTime", cutoff),
        )
        .expect("index")
        .collect()
        .expect("query");
    assert_eq!(bodies(&up_to), ["old"]);
}

#[tokio::test]
async fn pagination_walks_a_channel_without_gaps_or_duplicates() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    let names: Vec<String> = (1..=7).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    post(&db, "general", &refs).await;
    post(&db, "random", &["elsewhere"]).await;

    let page = |cursor: Option<String>| {
        let mut tx = db.begin();
        tx.query("messages")
            .expect("table")
            .with_index("by_channel", IndexRange::new().eq("channel", "general"))
            .expect("index")
            .order(Order::Desc)
            .paginate(PaginationOpts {
                cursor,
                num_items: 3,
            })
            .expect("a page")
    };
    let first = page(None);
    assert_eq!(bodies(&first.page), ["m7", "m6", "m5"]);
    assert!(!first.is_done);

    // A new message arrives between pages: it is newer than the cursor, so the next
    // pages neither repeat nor skip anything.
    post(&db, "general", &["m8"]).await;
    let second = page(Some(first.continue_cursor.clone()));
    assert_eq!(bodies(&second.page), ["m4", "m3", "m2"]);
    assert!(!second.is_done);
    let third = page(Some(second.continue_cursor.clone()));
    assert_eq!(bodies(&third.page), ["m1"]);
    assert!(third.is_done);
    let after_end = page(Some(third.continue_cursor.clone()));
    assert!(after_end.page.is_empty() && after_end.is_done);

    // Re-running the first page picks the new message up.
    assert_eq!(bodies(&page(None).page), ["m8", "m7", "m6"]);
}

#[tokio::test]
async fn a_transaction_reads_one_snapshot_while_other_commits_happen() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = open_chat(dir.path());
    post(&db, "general", &["before"]).await;
    let before_ts = db.latest_ts();

    let mut reader = db.begin();
    assert_eq!(reader.snapshot_ts(), before_ts);
    let mut writer = db.begin();
    let new_id = writer
        .insert("messages", message("general", "after"))
        .expect("insert");
    let first_id = writer
        .query("messages")
        .expect("table")
        .first()
        .expect("query")
        .expect("one message")
        .id;
    writer
        .patch(&first_id, object! {"body" => "before (edited)"})
        .expect("patch");
    let after_ts = db.commit(writer).await.expect("commit");
    assert!(after_ts > before_ts);

    // The reader still sees the database as it was when it began.
    let seen = reader
        .query("messages")
        .expect("table")
        .collect()
        .expect("query");
    assert_eq!(bodies(&seen), ["before"]);
    assert_eq!(reader.get(&new_id).expect("get"), None);

    // A new transaction sees the commit, and an old snapshot can still be read.
    let mut now = db.begin();
    let seen = now
        .query("messages")
        .expect("table")
        .collect()
        .expect("query");
    assert_eq!(bodies(&seen), ["before (edited)", "after"]);
    let mut past = db.begin_at(before_ts).expect("a retained snapshot");
    let seen = past
        .query("messages")
        .expect("table")
        .collect()
        .expect("query");
    assert_eq!(bodies(&seen), ["before"]);
}

#[tokio::test]
async fn a_transaction_sees_its_own_writes_in_queries() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    post(&db, "general", &["a", "b"]).await;
    let mut tx = db.begin();
    let c = tx
        .insert("messages", message("general", "c"))
        .expect("insert");
    let a = tx
        .query("messages")
        .expect("table")
        .first()
        .expect("query")
        .expect("a exists")
        .id;
    // Move "a" to another channel and delete "c": the index ranges follow.
    tx.patch(&a, object! {"channel" => "random"})
        .expect("patch");
    let general = |tx: &mut conflux_db::Transaction| {
        bodies(
            &tx.query("messages")
                .expect("table")
                .with_index("by_channel", IndexRange::new().eq("channel", "general"))
                .expect("index")
                .collect()
                .expect("query"),
        )
    };
    assert_eq!(general(&mut tx), ["b", "c"]);
    tx.delete(&c).expect("delete");
    assert_eq!(general(&mut tx), ["b"]);
    assert_eq!(tx.get(&c).expect("get"), None);
    let random = tx
        .query("messages")
        .expect("table")
        .with_index("by_channel", IndexRange::new().eq("channel", "random"))
        .expect("index")
        .order(Order::Desc)
        .collect()
        .expect("query");
    assert_eq!(bodies(&random), ["a"]);
    db.commit(tx).await.expect("commit");

    let mut check = db.begin();
    assert_eq!(general(&mut check), ["b"]);
}

#[tokio::test]
async fn patch_replace_and_delete_change_documents() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    let mut tx = db.begin();
    let id = tx
        .insert(
            "messages",
            object! {"channel" => "general", "body" => "hi", "likes" => 1i64},
        )
        .expect("insert");
    db.commit(tx).await.expect("commit");

    let mut tx = db.begin();
    tx.patch(&id, object! {"likes" => 2i64}).expect("patch");
    let doc = tx.get(&id).expect("get").expect("exists");
    assert_eq!(doc.value.get("likes"), Some(&Value::Int64(2)));
    assert_eq!(doc.value.get("body"), Some(&Value::from("hi")));
    tx.patch_remove(&id, &["likes"]).expect("remove");
    assert_eq!(
        tx.get(&id)
            .expect("get")
            .expect("exists")
            .value
            .get("likes"),
        None
    );
    db.commit(tx).await.expect("commit");

    let mut tx = db.begin();
    let original = tx.get(&id).expect("get").expect("exists");
    // Sending back a document as read (with its system fields) is allowed.
    let mut round_trip = original.to_object();
    round_trip
        .insert("body".to_owned(), Value::from("hello"))
        .expect("field");
    tx.replace(&id, round_trip).expect("replace");
    db.commit(tx).await.expect("commit");

    let mut tx = db.begin();
    let replaced = tx.get(&id).expect("get").expect("exists");
    assert_eq!(replaced.value, message("general", "hello"));
    assert_eq!(replaced.creation_time, original.creation_time);
    tx.delete(&id).expect("delete");
    db.commit(tx).await.expect("commit");

    let mut tx = db.begin();
    assert_eq!(tx.get(&id).expect("get"), None);
    assert!(tx
        .query("messages")
        .expect("table")
        .collect()
        .expect("query")
        .is_empty());
}

#[tokio::test]
async fn documents_and_timestamps_survive_a_restart() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (id, ts, creation_time) = {
        let db = open_chat(dir.path());
        let mut tx = db.begin();
        let id = tx
            .insert("messages", message("general", "persisted"))
            .expect("insert");
        let ts = db.commit(tx).await.expect("commit");
        let creation_time = db
            .begin()
            .get(&id)
            .expect("get")
            .expect("exists")
            .creation_time;
        (id, ts, creation_time)
    };
    let db = open_chat(dir.path());
    assert_eq!(
        db.latest_ts(),
        ts,
        "the latest timestamp is stable across restarts"
    );
    let mut tx = db.begin();
    let doc = tx.get(&id).expect("get").expect("still there");
    assert_eq!(bodies(&[doc]), ["persisted"]);
    let newer = tx
        .insert("messages", message("general", "later"))
        .expect("insert");
    let later_ts = db.commit(tx).await.expect("commit");
    assert!(later_ts > ts);
    let later = db.begin().get(&newer).expect("get").expect("exists");
    assert!(later.creation_time > creation_time);
}

#[tokio::test]
async fn a_new_index_is_built_from_existing_documents_and_their_history() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let without_index = || Schema::new().table(TableDef::new("users"));
    let (ada, before_rename) = {
        let db = Database::open_sled(dir.path(), without_index()).expect("open");
        let mut tx = db.begin();
        let ada = tx
            .insert("users", object! {"name" => "ada"})
            .expect("insert");
        tx.insert("users", object! {"name" => "bob"})
            .expect("insert");
        tx.insert("users", object! {"nickname" => "anonymous"})
            .expect("insert");
        let before_rename = db.commit(tx).await.expect("commit");
        let mut tx = db.begin();
        tx.patch(&ada, object! {"name" => "zoe"}).expect("patch");
        db.commit(tx).await.expect("commit");
        (ada, before_rename)
    };
    let with_index = Schema::new().table(TableDef::new("users").index("by_name", &["name"]));
    let db = Database::open_sled(dir.path(), with_index).expect("reopen with the new index");
    let names = |tx: &mut conflux_db::Transaction| -> Vec<Option<Value>> {
        tx.query("users")
            .expect("table")
            .with_index("by_name", IndexRange::new())
            .expect("index")
            .collect()
            .expect("query")
            .iter()
            .map(|doc| doc.value.get("name").cloned())
            .collect()
    };
    // A missing field sorts first.
    assert_eq!(
        names(&mut db.begin()),
        [None, Some(Value::from("bob")), Some(Value::from("zoe"))]
    );
    // The index can be read at a snapshot from before it existed.
    let mut past = db.begin_at(before_rename).expect("retained");
    assert_eq!(
        names(&mut past),
        [None, Some(Value::from("ada")), Some(Value::from("bob"))]
    );
    let zoe = db
        .begin()
        .query("users")
        .expect("table")
        .with_index("by_name", IndexRange::new().eq("name", "zoe"))
        .expect("index")
        .unique()
        .expect("query")
        .expect("found");
    assert_eq!(zoe.id, ada);
}

#[tokio::test]
async fn creation_times_are_unique_and_increasing() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    let mut tx = db.begin();
    for i in 0..200 {
        tx.insert("messages", message("general", &format!("{i}")))
            .expect("insert");
    }
    db.commit(tx).await.expect("commit");
    let docs = db
        .begin()
        .query("messages")
        .expect("table")
        .collect()
        .expect("query");
    assert_eq!(docs.len(), 200);
    for pair in docs.windows(2) {
        assert!(pair[0].creation_time < pair[1].creation_time);
    }
    let body_order: Vec<usize> = bodies(&docs)
        .iter()
        .map(|b| b.parse().expect("a number"))
        .collect();
    assert_eq!(body_order, (0..200).collect::<Vec<_>>());
}

#[tokio::test]
async fn concurrent_commits_share_one_flush() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = open_chat(dir.path());
    let mut watch = db.commit_watch();
    let before = db.stats();
    // Hold the committer on the first commit so that the others queue up behind it.
    let held = db.pause_points().hold(PausePoint::BeforeValidate);
    let mut commits = Vec::new();
    for i in 0..50 {
        let db = db.clone();
        commits.push(tokio::spawn(async move {
            let mut tx = db.begin();
            tx.insert("messages", message("general", &format!("{i}")))
                .expect("insert");
            db.commit(tx).await
        }));
    }
    held.wait_reached().await;
    // Give the 49 others time to reach the queue.
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.release();
    let mut timestamps = Vec::new();
    for commit in commits {
        timestamps.push(commit.await.expect("task").expect("commit"));
    }
    timestamps.sort();
    timestamps.dedup();
    assert_eq!(timestamps.len(), 50, "every commit has its own timestamp");
    let after = db.stats();
    assert_eq!(after.commits - before.commits, 50);
    assert_eq!(
        after.durable_writes - before.durable_writes,
        1,
        "the 50 commits were made durable by one flush"
    );
    watch.changed().await.expect("the watch is open");
    assert_eq!(*watch.borrow(), timestamps[49]);
    assert_eq!(db.latest_ts(), timestamps[49]);
    assert!(db.latest_ts() <= Timestamp::MAX);
}
