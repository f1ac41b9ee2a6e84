//! Live queries: after a commit, exactly the subscriptions whose reads it touched are
//! invalidated, for point reads, range reads and paginated reads.

mod common;

use std::time::Duration;

use common::{chat_schema, message, post};
use conflux_db::{
    Database, Document, IndexRange, Order, PaginationOpts, PaginationResult, Subscription,
};
use conflux_values::{object, DocumentId};

/// Run `read` in a fresh transaction and subscribe to what it read.
fn watch<T>(
    db: &Database,
    read: impl FnOnce(&mut conflux_db::Transaction) -> T,
) -> (T, Subscription) {
    let mut tx = db.begin();
    let result = read(&mut tx);
    let ts = tx.snapshot_ts();
    (result, db.subscriptions().subscribe(tx.into_read_set(), ts))
}

fn channel_range(name: &str) -> IndexRange {
    IndexRange::new().eq("channel", name)
}

fn fired(subs: &[&Subscription]) -> Vec<bool> {
    subs.iter().map(|s| s.invalidated_at().is_some()).collect()
}

async fn patch(db: &Database, id: &DocumentId, body: &str) -> conflux_db::Timestamp {
    let mut tx = db.begin();
    tx.patch(id, object! {"body" => body}).expect("patch");
    db.commit(tx).await.expect("commit")
}

#[tokio::test]
async fn point_reads_are_invalidated_only_by_their_own_document() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    post(&db, "general", &["a", "b", "c"]).await;
    let docs: Vec<Document> = db
        .begin()
        .query("messages")
        .expect("t")
        .collect()
        .expect("q");
    let (_, on_a) = watch(&db, |tx| tx.get(&docs[0].id).expect("get"));
    let (_, on_b) = watch(&db, |tx| tx.get(&docs[1].id).expect("get"));
    let missing = DocumentId::new(docs[0].id.table_number());
    let (_, on_missing) = watch(&db, |tx| tx.get(&missing).expect("get"));
    assert_eq!(db.subscriptions().len(), 3);

    let ts = patch(&db, &docs[0].id, "a2").await;
    assert_eq!(fired(&[&on_a, &on_b, &on_missing]), [true, false, false]);
    assert_eq!(on_a.invalidated().await, Some(ts));
    assert_eq!(
        db.subscriptions().len(),
        2,
        "a fired subscription leaves the index"
    );

    let mut tx = db.begin();
    tx.delete(&docs[2].id).expect("delete");
    db.commit(tx).await.expect("commit");
    assert_eq!(fired(&[&on_b, &on_missing]), [false, false]);
    patch(&db, &docs[1].id, "b2").await;
    assert_eq!(fired(&[&on_b, &on_missing]), [true, false]);
}

#[tokio::test]
async fn range_reads_are_invalidated_by_writes_inside_their_range_only() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    post(&db, "general", &["g1", "g2"]).await;
    post(&db, "random", &["r1"]).await;
    let list = |name: &'static str| {
        move |tx: &mut conflux_db::Transaction| {
            tx.query("messages")
                .expect("t")
                .with_index("by_channel", channel_range(name))
                .expect("i")
                .collect()
                .expect("q")
        }
    };
    let (_, general) = watch(&db, list("general"));
    let (_, random) = watch(&db, list("random"));
    let (_, empty) = watch(&db, list("empty-channel"));
    let (_, users) = watch(&db, |tx| {
        tx.query("users").expect("t").collect().expect("q")
    });

    post(&db, "general", &["g3"]).await;
    assert_eq!(
        fired(&[&general, &random, &empty, &users]),
        [true, false, false, false]
    );

    // Moving a message out of #random changes #random (old key) and #general (new key).
    let (_, general) = watch(&db, list("general"));
    let r1 = db
        .begin()
        .query("messages")
        .expect("t")
        .with_index("by_channel", channel_range("random"))
        .expect("i")
        .first()
        .expect("q")
        .expect("r1");
    let mut tx = db.begin();
    tx.patch(&r1.id, object! {"channel" => "general"})
        .expect("patch");
    db.commit(tx).await.expect("commit");
    assert_eq!(
        fired(&[&general, &random, &empty, &users]),
        [true, true, false, false]
    );

    post(&db, "empty-channel", &["first!"]).await;
    assert!(
        empty.invalidated_at().is_some(),
        "an empty result is watched too"
    );
    assert!(users.invalidated_at().is_none());
}

#[tokio::test]
async fn a_limited_read_is_not_invalidated_beyond_what_it_scanned() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    let names: Vec<String> = (0..15).map(|i| format!("m{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    post(&db, "general", &refs).await;
    let take = |order: Order| {
        move |tx: &mut conflux_db::Transaction| {
            tx.query("messages")
                .expect("t")
                .with_index("by_channel", channel_range("general"))
                .expect("i")
                .order(order)
                .take(10)
                .expect("q")
        }
    };
    let (oldest, oldest_ten) = watch(&db, take(Order::Asc));
    let (_, newest_ten) = watch(&db, take(Order::Desc));
    let all: Vec<Document> = db
        .begin()
        .query("messages")
        .expect("t")
        .collect()
        .expect("q");

    // The 13th message is beyond the oldest ten but among the newest ten.
    patch(&db, &all[12].id, "edited").await;
    assert_eq!(fired(&[&oldest_ten, &newest_ten]), [false, true]);
    // A new message is appended after every key the oldest-ten read scanned.
    post(&db, "general", &["new"]).await;
    assert!(oldest_ten.invalidated_at().is_none());
    patch(&db, &oldest[9].id, "edited").await;
    assert!(oldest_ten.invalidated_at().is_some());
}

#[tokio::test]
async fn each_page_of_a_paginated_read_is_invalidated_on_its_own() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    let names: Vec<String> = (0..7).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    post(&db, "general", &refs).await;
    let page = |cursor: Option<String>| {
        move |tx: &mut conflux_db::Transaction| -> PaginationResult {
            tx.query("messages")
                .expect("t")
                .with_index("by_channel", channel_range("general"))
                .expect("i")
                .paginate(PaginationOpts {
                    cursor,
                    num_items: 3,
                })
                .expect("page")
        }
    };
    let (first, first_sub) = watch(&db, page(None));
    let (second, second_sub) = watch(&db, page(Some(first.continue_cursor.clone())));
    let (third, third_sub) = watch(&db, page(Some(second.continue_cursor.clone())));
    assert!(third.is_done);
    assert_eq!(third.page.len(), 1);
    let subs = [&first_sub, &second_sub, &third_sub];

    patch(&db, &second.page[1].id, "edited").await;
    assert_eq!(fired(&subs), [false, true, false]);

    // The last page reads to the end of the channel, so it sees a new message.
    post(&db, "general", &["m7"]).await;
    assert_eq!(fired(&subs), [false, true, true]);
    assert!(first_sub.invalidated_at().is_none());
    post(&db, "random", &["elsewhere"]).await;
    assert!(first_sub.invalidated_at().is_none());
    patch(&db, &first.page[0].id, "edited").await;
    assert!(first_sub.invalidated_at().is_some());
}

#[tokio::test]
async fn a_commit_between_the_query_and_the_subscribe_fires_at_once() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    post(&db, "general", &["a"]).await;
    let mut tx = db.begin();
    tx.query("messages").expect("t").collect().expect("q");
    let ts = tx.snapshot_ts();
    let reads = tx.into_read_set();
    let mut writer = db.begin();
    writer
        .insert("messages", message("general", "b"))
        .expect("insert");
    let commit_ts = db.commit(writer).await.expect("commit");
    // The query ran before the commit; its subscription arrives after.
    let late = db.subscriptions().subscribe(reads.clone(), ts);
    assert_eq!(late.invalidated_at(), Some(commit_ts));
    // Subscribing at the new timestamp waits for the next change instead.
    let current = db.subscriptions().subscribe(reads, commit_ts);
    assert_eq!(current.invalidated_at(), None);
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes_and_waiting_wakes_on_commit() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    let (_, dropped) = watch(&db, |tx| {
        tx.query("messages").expect("t").collect().expect("q")
    });
    let (_, kept) = watch(&db, |tx| {
        tx.query("messages").expect("t").collect().expect("q")
    });
    assert_eq!(db.subscriptions().len(), 2);
    drop(dropped);
    assert_eq!(db.subscriptions().len(), 1);

    let waiter = tokio::spawn(async move { kept.invalidated().await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!waiter.is_finished());
    let mut tx = db.begin();
    tx.insert("messages", message("general", "wake up"))
        .expect("insert");
    let ts = db.commit(tx).await.expect("commit");
    let fired_at = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken up")
        .expect("task");
    assert_eq!(fired_at, Some(ts));
    assert!(db.subscriptions().is_empty());
}

#[tokio::test]
async fn thousands_of_unaffected_subscriptions_stay_untouched() {
    let db = Database::open_in_memory(chat_schema()).expect("open");
    let mut subs = Vec::new();
    for i in 0..2_000 {
        let name = format!("channel-{i}");
        let (_, sub) = watch(&db, |tx| {
            tx.query("messages")
                .expect("t")
                .with_index("by_channel", channel_range(&name))
                .expect("i")
                .take(100)
                .expect("q")
        });
        subs.push(sub);
    }
    post(&db, "channel-1234", &["hi"]).await;
    let fired: Vec<usize> = subs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.invalidated_at().is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(fired, [1234]);
    assert_eq!(db.subscriptions().len(), 1_999);
}
