//! Commit cost as the number of *unaffected* subscriptions grows (100, 10,000, 100,000).
//!
//! Every subscription watches "the last 100 messages" of its own channel; each measured
//! commit posts to a channel nobody watches. With the subscription index the commit cost
//! must stay flat: finding the affected subscriptions costs `O(log S + affected)`.
//!
//! Two stores: in memory (the database's own costs: validation, encoding, group commit,
//! publication, invalidation) and sled (the same plus one `fsync` per group).
//!
//! Run: `cargo bench -p conflux-db --bench commit_with_subscriptions -- --warm-up-time 1 --measurement-time 3`

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use conflux_db::{
    Database, IndexRange, MemoryPersistence, Order, Persistence, Schema, SledPersistence,
    Subscription, TableDef,
};
use conflux_values::object;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn schema() -> Schema {
    Schema::new().table(TableDef::new("messages").index("by_channel", &["channel"]))
}

/// `count` subscriptions, each on the newest 100 messages of its own channel.
fn subscribe_channels(db: &Database, count: usize) -> Vec<Subscription> {
    (0..count)
        .map(|i| {
            let mut tx = db.begin();
            tx.query("messages")
                .expect("table")
                .with_index(
                    "by_channel",
                    IndexRange::new().eq("channel", format!("channel-{i}")),
                )
                .expect("index")
                .order(Order::Desc)
                .take(100)
                .expect("query");
            let ts = tx.snapshot_ts();
            db.subscriptions().subscribe(tx.into_read_set(), ts)
        })
        .collect()
}

fn bench_store(
    c: &mut Criterion,
    store: &str,
    open: &dyn Fn() -> Arc<dyn Persistence>,
    runtime: &tokio::runtime::Runtime,
) {
    let mut group = c.benchmark_group(format!("commit_with_unaffected_subscriptions/{store}"));
    for count in [100usize, 10_000, 100_000] {
        let db = Database::open(open(), schema()).expect("open");
        let subscriptions = subscribe_channels(&db, count);
        assert_eq!(db.subscriptions().len(), count);
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, _| {
            b.iter(|| {
                let mut tx = db.begin();
                tx.insert(
                    "messages",
                    object! {"channel" => "unwatched", "body" => "a message of about two hundred bytes, like the ones the benchmark plan uses for every system it compares; padding padding padding padding"},
                )
                .expect("insert");
                black_box(runtime.block_on(db.commit(tx)).expect("commit"))
            })
        });
        assert!(
            subscriptions.iter().all(|s| s.invalidated_at().is_none()),
            "no subscription was affected"
        );
        assert_eq!(db.subscriptions().len(), count);
    }
    group.finish();
}

fn commit_with_subscriptions(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    bench_store(
        c,
        "memory",
        &|| Arc::new(MemoryPersistence::new()),
        &runtime,
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let counter = std::sync::atomic::AtomicUsize::new(0);
    bench_store(
        c,
        "sled_fsync",
        &|| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Arc::new(SledPersistence::open(dir.path().join(format!("db-{n}"))).expect("sled"))
        },
        &runtime,
    );
}

criterion_group!(benches, commit_with_subscriptions);
criterion_main!(benches);
