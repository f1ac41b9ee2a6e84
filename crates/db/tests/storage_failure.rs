//! The disk fills up: commits fail with `StorageUnavailable`, nothing of them is visible
//! (now or after a restart), nobody is told about them, and the database carries on once
//! space returns.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bodies, chat_schema, message, post};
use conflux_common::{Error, ErrorCode, Result};
use conflux_db::persistence::{CollectStep, DocumentLogEntry, IndexEntry, WriteBatch};
use conflux_db::{
    Database, IndexId, IndexRange, Interval, Order, PausePoint, Persistence, SledPersistence,
    Timestamp,
};
use conflux_values::{DocumentId, TableNumber};

/// Sled whose disk can be "full": writes fail before touching it, as `ENOSPC` would.
struct FillableDisk {
    sled: SledPersistence,
    full: AtomicBool,
    refused: AtomicUsize,
}

impl Persistence for FillableDisk {
    fn write(&self, batch: &WriteBatch) -> Result<()> {
        if self.full.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(Error::internal("No space left on device (os error 28)"));
        }
        self.sled.write(batch)
    }
    fn max_ts(&self) -> Result<Timestamp> {
        self.sled.max_ts()
    }
    fn metadata(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.sled.metadata(key)
    }
    fn document_at(&self, id: &DocumentId, ts: Timestamp) -> Result<Option<DocumentLogEntry>> {
        self.sled.document_at(id, ts)
    }
    fn index_scan(
        &self,
        index: IndexId,
        interval: &Interval,
        ts: Timestamp,
        order: Order,
        limit: usize,
    ) -> Result<Vec<IndexEntry>> {
        self.sled.index_scan(index, interval, ts, order, limit)
    }
    fn document_versions(
        &self,
        table: TableNumber,
        after: Option<(DocumentId, Timestamp)>,
        limit: usize,
    ) -> Result<Vec<DocumentLogEntry>> {
        self.sled.document_versions(table, after, limit)
    }
    fn collect_versions(
        &self,
        horizon: Timestamp,
        from: &[u8],
        budget: usize,
    ) -> Result<CollectStep> {
        self.sled.collect_versions(horizon, from, budget)
    }
    fn describe(&self) -> String {
        self.sled.describe()
    }
}

fn general(db: &Database) -> Vec<String> {
    bodies(
        &db.begin()
            .query("messages")
            .expect("table")
            .with_index("by_channel", IndexRange::new().eq("channel", "general"))
            .expect("index")
            .collect()
            .expect("query"),
    )
}

#[tokio::test]
async fn a_full_disk_fails_the_commits_of_a_group_and_the_database_recovers() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let disk = Arc::new(FillableDisk {
        sled: SledPersistence::open(dir.path()).expect("sled opens"),
        full: AtomicBool::new(false),
        refused: AtomicUsize::new(0),
    });
    let db = Database::open(disk.clone(), chat_schema()).expect("open");
    post(&db, "general", &["before"]).await;
    let before = db.latest_ts();
    let mut tx = db.begin();
    tx.query("messages")
        .expect("table")
        .collect()
        .expect("query");
    let watcher = db.subscriptions().subscribe(tx.into_read_set(), before);

    // Three commits arrive while the disk is full; they form one group.
    disk.full.store(true, Ordering::SeqCst);
    let held = db.pause_points().hold(PausePoint::BeforeValidate);
    let mut commits = Vec::new();
    for body in ["lost 1", "lost 2", "lost 3"] {
        let db = db.clone();
        let mut tx = db.begin();
        tx.insert("messages", message("general", body))
            .expect("insert");
        commits.push(tokio::spawn(async move { db.commit(tx).await }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    held.wait_reached().await;
    held.release();
    for commit in commits {
        let err = commit.await.expect("task").expect_err("the disk is full");
        assert_eq!(err.code(), ErrorCode::StorageUnavailable);
        assert!(
            err.message().contains("could not write to disk"),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains("No space left on device"),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains("nothing was committed"),
            "{}",
            err.message()
        );
        assert!(err.code().is_retryable());
    }
    assert_eq!(
        disk.refused.load(Ordering::SeqCst),
        1,
        "one group, one write"
    );
    assert_eq!(db.stats().failed_commits, 3);
    assert_eq!(db.latest_ts(), before, "nothing was published");
    assert_eq!(general(&db), ["before"]);
    assert!(watcher.invalidated_at().is_none(), "nobody was told");

    // Space returns: the next commit succeeds, with a later timestamp.
    disk.full.store(false, Ordering::SeqCst);
    post(&db, "general", &["after"]).await;
    assert!(db.latest_ts() > before);
    assert_eq!(general(&db), ["before", "after"]);
    assert!(watcher.invalidated_at().is_some());

    drop(db);
    drop(disk);
    let reopened = Database::open_sled(dir.path(), chat_schema()).expect("reopen");
    assert_eq!(general(&reopened), ["before", "after"]);
}

const FULL_DISK_CHILD_ENV: &str = "CONFLUX_DB_FULL_DISK_CHILD_DIR";
const FULL_DISK_TEST: &str = "sled_on_a_full_disk_refuses_commits_without_losing_or_leaking_data";

/// The largest file under `dir`, in bytes.
fn largest_file(dir: &std::path::Path) -> u64 {
    let mut largest = 0;
    for entry in std::fs::read_dir(dir).expect("a readable dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            largest = largest.max(largest_file(&entry.path()));
        } else {
            largest = largest.max(meta.len());
        }
    }
    largest
}

/// A real full disk for sled: the child runs under a file-size limit (`ulimit -f`, with
/// `SIGXFSZ` ignored so writes fail with `EFBIG` like `ENOSPC`), commits until storage
/// refuses, and reports. After it exits ("space returns"), the parent reopens the store.
#[test]
fn sled_on_a_full_disk_refuses_commits_without_losing_or_leaking_data() {
    if let Ok(dir) = std::env::var(FULL_DISK_CHILD_ENV) {
        full_disk_child(std::path::Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let db = Database::open_sled(dir.path(), chat_schema()).expect("open");
        post(&db, "general", &["before"]).await;
    });
    let limit_blocks = (largest_file(dir.path()) + (1 << 20)) / 512;
    let exe = std::env::current_exe().expect("the test binary");
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -f {limit_blocks} && trap '' XFSZ && exec \"$0\" \"$@\""
        ))
        .arg(&exe)
        .args([FULL_DISK_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(FULL_DISK_CHILD_ENV, dir.path())
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let acked: Vec<&str> = stdout
        .lines()
        // libtest may print "test <name> ... " before the first line of the child.
        .filter_map(|line| line.split_once("ACK ").map(|(_, name)| name))
        .collect();
    let refused: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.split_once("REFUSED ").map(|(_, why)| why))
        .collect();
    assert!(
        acked.len() >= 10,
        "the child committed before the disk filled: {stdout}"
    );
    assert!(!refused.is_empty(), "the disk never filled: {stdout}");
    for line in &refused {
        assert!(line.starts_with("StorageUnavailable"), "{line}");
    }
    assert!(
        refused[0].contains("nothing was committed"),
        "the first refusal says what happened: {}",
        refused[0]
    );

    // Space returns: everything acknowledged is there, nothing refused leaked in.
    runtime.block_on(async {
        let db = Database::open_sled(dir.path(), chat_schema()).expect("reopen");
        let stored = general(&db);
        let mut expected = vec!["before".to_owned()];
        expected.extend(acked.iter().map(|body| body.to_string()));
        // Bodies are the acknowledged name followed by padding.
        let stored_short: Vec<String> = stored
            .iter()
            .map(|body| body.chars().take(9).collect())
            .collect();
        assert_eq!(stored_short, expected, "refused commits must not appear");
        post(&db, "general", &["after"]).await;
        assert_eq!(general(&db).last().map(String::as_str), Some("after"));
    });
}

/// The child: commit 4 KiB messages until storage refuses three in a row.
fn full_disk_child(dir: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let db = Database::open_sled(dir, chat_schema()).expect("the child opens");
        let mut refusals = 0;
        for i in 0..100_000 {
            let name = format!("m{i:08}");
            let body = format!("{name}{}", "x".repeat(4096));
            let mut tx = db.begin();
            // While sled is being reopened even the read behind an insert may be refused.
            let result = match tx.insert("messages", message("general", &body)) {
                Ok(_) => db.commit(tx).await,
                Err(err) => Err(err),
            };
            match result {
                Ok(_) => println!("ACK {name}"),
                Err(err) => {
                    println!("REFUSED {}", err.to_string().replace('\n', " "));
                    refusals += 1;
                    if refusals == 3 {
                        break;
                    }
                }
            }
        }
    });
}
