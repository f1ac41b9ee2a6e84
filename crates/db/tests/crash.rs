//! A server is killed with SIGKILL at random moments while it commits; after every restart
//! each acknowledged write is there, no transaction is half-applied, and timestamps keep
//! increasing.
//!
//! The test re-executes its own binary as the child (selected by an environment
//! variable): the child opens the database on sled and runs four writers that each commit,
//! in a loop, a transaction inserting two documents of one "pair" and incrementing a shared
//! counter, printing `ACK <ts> <pair>` once `commit` returned. The parent kills it after a
//! random delay, reopens the database and checks it against the acknowledgements.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conflux_common::ErrorCode;
use conflux_db::{Database, DatabaseOptions, Schema, SledPersistence, TableDef, Timestamp};
use conflux_values::{object, Value};

const CHILD_DIR_ENV: &str = "CONFLUX_DB_CRASH_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_commits_survive_sigkill";
const ROUNDS: usize = 22;

fn schema() -> Schema {
    Schema::new()
        .table(TableDef::new("pairs").index("by_pair", &["pair"]))
        .table(TableDef::new("counters"))
}

#[test]
fn acknowledged_commits_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        run_child(Path::new(&dir));
    }
    run_parent();
}

/// The child: commit pairs forever (until killed).
fn run_child(dir: &Path) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let db = Database::open_sled(dir, schema()).expect("the child opens the database");
        let run = Timestamp::now().as_u64();
        let mut writers = Vec::new();
        for writer in 0..4 {
            let db = db.clone();
            writers.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let pair = format!("{run}-{writer}-{i}");
                    loop {
                        let mut tx = db.begin();
                        tx.insert("pairs", object! {"pair" => pair.as_str(), "half" => 0i64})
                            .expect("insert");
                        tx.insert("pairs", object! {"pair" => pair.as_str(), "half" => 1i64})
                            .expect("insert");
                        let counter = tx
                            .query("counters")
                            .expect("table")
                            .first()
                            .expect("read")
                            .expect("the parent created the counter");
                        let count = counter
                            .value
                            .get("count")
                            .and_then(Value::as_i64)
                            .unwrap_or(0);
                        tx.patch(&counter.id, object! {"count" => count + 1})
                            .expect("patch");
                        match db.commit(tx).await {
                            Ok(ts) => {
                                let mut out = std::io::stdout().lock();
                                writeln!(out, "ACK {ts} {pair}").expect("stdout");
                                out.flush().expect("stdout");
                                break;
                            }
                            Err(err) if err.code() == ErrorCode::OccConflict => continue,
                            Err(err) => panic!("commit failed: {err}"),
                        }
                    }
                }
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
    });
    unreachable!("the writers never stop");
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Ack {
    ts: Timestamp,
    pair: String,
}

fn run_parent() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a temp dir");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let db_dir = dir.path().join("db");
    let mut latest = runtime.block_on(async {
        let db = Database::open_sled(&db_dir, schema()).expect("open");
        let mut tx = db.begin();
        tx.insert("counters", object! {"count" => 0i64})
            .expect("insert");
        db.commit(tx).await.expect("commit")
    });

    let exe = std::env::current_exe().expect("the test binary");
    let mut acked_total = 0usize;
    let mut acked_pairs: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let stderr_path = dir.path().join(format!("child-{round}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, &db_dir)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the child starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| {
                    // libtest may print "test <name> ... " before the first line.
                    let (_, ack) = line.split_once("ACK ")?;
                    let mut parts = ack.split(' ');
                    let ts = parts.next()?.parse::<Timestamp>().ok()?;
                    let pair = parts.next()?.to_owned();
                    Some(Ack { ts, pair })
                })
                .collect::<Vec<_>>()
        });
        // Kill at a random moment: sometimes while opening, mostly while committing.
        let delay = Duration::from_millis(40 + rng.next() % 260);
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL");
        child.wait().expect("the child is reaped");
        let acks = reader.join().expect("the reader thread");

        let context = format!(
            "round {round}, seed {seed}, killed after {delay:?}, child stderr in {}",
            stderr_path.display()
        );
        if let Some(first) = acks.first() {
            assert!(
                first.ts > latest,
                "{context}: timestamps must increase across restarts ({} after {latest})",
                first.ts
            );
        }
        let max_acked = acks.iter().map(|ack| ack.ts).max();
        acked_total += acks.len();
        acked_pairs.extend(acks.into_iter().map(|ack| ack.pair));

        latest = runtime.block_on(verify(&db_dir, &acked_pairs, max_acked, &context));
    }
    assert!(
        acked_total >= ROUNDS,
        "the children acknowledged only {acked_total} commits in {ROUNDS} rounds; the test \
         did not exercise anything"
    );
    eprintln!(
        "{ROUNDS} kills, {acked_total} acknowledged commits, all recovered in {:?}",
        started.elapsed()
    );
}

/// Reopen after a kill and check the database against the acknowledgements so far.
async fn verify(
    dir: &Path,
    acked_pairs: &[String],
    max_acked: Option<Timestamp>,
    context: &str,
) -> Timestamp {
    // Every document is read back, however many the children managed to write.
    let options = DatabaseOptions {
        max_scanned_documents: usize::MAX,
        ..DatabaseOptions::default()
    };
    let persistence = SledPersistence::open(dir)
        .unwrap_or_else(|err| panic!("{context}: the store reopens: {err}"));
    let db = Database::open_with_options(Arc::new(persistence), schema(), options)
        .unwrap_or_else(|err| panic!("{context}: the database reopens: {err}"));
    if let Some(max) = max_acked {
        assert!(
            db.latest_ts() >= max,
            "{context}: an acknowledged timestamp is lost"
        );
    }
    let mut tx = db.begin();
    let docs = tx
        .query("pairs")
        .expect("table")
        .collect()
        .expect("every pair");
    let mut halves: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for doc in &docs {
        let pair = doc
            .value
            .get("pair")
            .and_then(Value::as_str)
            .expect("a pair name")
            .to_owned();
        let half = doc
            .value
            .get("half")
            .and_then(Value::as_i64)
            .expect("a half");
        halves.entry(pair).or_default().push(half);
    }
    for (pair, mut found) in halves.clone() {
        found.sort_unstable();
        assert_eq!(found, [0, 1], "{context}: pair {pair} is partially visible");
    }
    for pair in acked_pairs {
        assert!(
            halves.contains_key(pair),
            "{context}: acknowledged pair {pair} is missing"
        );
    }
    let counter = tx
        .query("counters")
        .expect("table")
        .first()
        .expect("read")
        .expect("the counter");
    assert_eq!(
        counter.value.get("count").and_then(Value::as_i64),
        Some(halves.len() as i64),
        "{context}: the counter and the pairs were committed together"
    );
    db.latest_ts()
}
