//! The soak command's machinery, briefly: connections with live queries under a write load
//! get every post, the server's memory is sampled from `/proc`, and the report says whether
//! it levelled off. The real soak (1,000 connections for 10 minutes) runs by command:
//! `cargo run --release -p conflux-checker --bin soak`.

use std::time::Duration;

use conflux_checker::soak::{run_soak, SoakConfig};

const SERVER: &str = env!("CARGO_BIN_EXE_checker-server");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_delivers_every_post_and_reports_memory_and_latency() {
    let work = tempfile::tempdir().expect("a temp dir");
    let config = SoakConfig {
        connections: 40,
        duration: Duration::from_secs(4),
        writes_per_sec: 20,
        report_every: Duration::from_secs(1),
        server_binary: SERVER.into(),
        work_dir: work.path().to_path_buf(),
    };
    let mut windows = 0;
    let report = run_soak(&config, |window| {
        windows += 1;
        eprintln!("{window}");
    })
    .await
    .expect("the soak runs");
    eprintln!("{report}");
    assert!(windows >= 3, "a progress report every second");
    assert_eq!(report.write_errors, 0);
    assert!(
        report.writes >= 60,
        "20 posts a second for 4 s: {}",
        report.writes
    );
    // 40 connections watch 4 rooms: every post reaches the 10 watchers of its room (a
    // watcher's first value is not a notification).
    assert!(
        report.notifications >= (report.writes - 4) * 10 * 9 / 10,
        "{} notifications for {} posts",
        report.notifications,
        report.writes
    );
    assert_eq!(report.dropped_connections, 0);
    assert!(
        report.rss_start > 1 << 20 && report.rss_end > 1 << 20,
        "{report}"
    );
    assert!(
        report.latency_ms[2] < 1000.0,
        "p99 notification latency {} ms",
        report.latency_ms[2]
    );
}
