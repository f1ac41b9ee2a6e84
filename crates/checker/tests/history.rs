//! The history checker against a real server and the official clients.
//!
//! - A few seeds in every run of the suite, 200 with `CONFLUX_LONG_TESTS=1`: Rust and npm
//!   clients append and watch while their connections are cut and the server is stopped
//!   with SIGTERM and SIGKILL; every history must be serializable (no dependency cycle),
//!   lose no acknowledged append, apply no resent mutation twice, and never show a client
//!   its data or the server's clock going backwards.
//! - The same checker against a deliberately broken build (the conflict check switched off
//!   through the db crate's `unsafe-test-knobs`) must fail: a checker that cannot fail
//!   proves nothing.

use std::time::Duration;

use conflux_checker::workload::{run, RunConfig, RunReport};
use conflux_testkit::node::NpmClients;

const SERVER: &str = env!("CARGO_BIN_EXE_checker-server");

fn long_mode() -> bool {
    std::env::var("CONFLUX_LONG_TESTS").is_ok_and(|v| v.trim() == "1")
}

fn config(seed: u64, work_dir: &std::path::Path) -> RunConfig {
    RunConfig::new(seed, SERVER.into(), work_dir.to_path_buf())
}

/// The report of every failed run, or an empty string.
fn failures(reports: &[RunReport]) -> String {
    reports
        .iter()
        .filter(|r| !r.analysis.is_valid())
        .map(RunReport::failure_report)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeded_runs_with_cuts_and_restarts_keep_every_promise() {
    let npm = NpmClients::locate_or_skip();
    let work = tempfile::tempdir().expect("a temp dir");
    let seeds: Vec<u64> = if long_mode() {
        (1..=200).collect()
    } else {
        vec![1, 2, 3]
    };
    let mut reports = Vec::new();
    for seed in &seeds {
        let mut config = config(*seed, work.path());
        config.duration = Duration::from_millis(2500);
        config.npm = npm.clone();
        let report = match run(&config).await {
            Ok(report) => report,
            Err(err) => {
                // Keep the server log of the failed seed for whoever looks into it.
                let kept = work.keep();
                panic!(
                    "seed {seed}: the harness failed: {err}\nserver log: {}",
                    kept.join(format!("seed-{seed}"))
                        .join("server.log")
                        .display()
                );
            }
        };
        eprintln!("{}", report.summary());
        reports.push(report);
    }
    let failed = failures(&reports);
    assert!(failed.is_empty(), "{failed}");
    for report in &reports {
        let stats = &report.analysis.stats;
        // A run that did nothing proves nothing.
        assert!(
            stats.acknowledged >= 50 && stats.observations >= 50,
            "seed {}: too little happened: {}",
            report.seed,
            report.summary()
        );
        assert!(
            !report.history.faults.is_empty(),
            "seed {}: no fault was injected",
            report.seed
        );
        if npm.is_some() {
            let npm_acks = report
                .history
                .ops
                .iter()
                .filter(|op| op.client % 2 == 1 && op.completed_ns.is_some())
                .count();
            assert!(
                npm_acks >= 10,
                "seed {}: the npm clients barely ran",
                report.seed
            );
        }
    }
    let restarts: usize = reports
        .iter()
        .map(|r| {
            r.history
                .faults
                .iter()
                .filter(|f| f.description.contains("the server"))
                .count()
        })
        .sum();
    assert!(
        restarts >= 1,
        "the seeds restarted the server {restarts} times"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_without_the_conflict_check_is_caught() {
    let work = tempfile::tempdir().expect("a temp dir");
    let mut reports = Vec::new();
    // Rust clients only, no faults, no pauses, two keys: as much contention as possible.
    // Concurrent appends then overwrite each other (lost updates) and transactions that
    // read one key and append to the other skew (cycles of anti-dependencies).
    for seed in 7..10 {
        let mut config = config(seed, work.path());
        config.broken = true;
        config.faults = false;
        config.keys = 2;
        config.think_ms = (0, 2);
        config.duration = Duration::from_millis(2000);
        let report = run(&config).await.expect("the harness runs");
        eprintln!("{}", report.failure_report());
        let caught = report.analysis.has_lost_append() && report.analysis.has_cycle();
        reports.push(report);
        if caught {
            break;
        }
    }
    let last = reports.last().expect("a run");
    assert!(
        last.analysis.has_lost_append() && last.analysis.has_cycle(),
        "the checker did not notice that transactions overwrite each other:\n{}",
        last.failure_report()
    );
    let text = last.failure_report();
    assert!(
        text.contains(&format!("seed {}", last.seed)),
        "the report names the seed: {text}"
    );
    assert!(
        text.contains(&format!("--seed {} --runs 1", last.seed)) && text.contains("--broken"),
        "the report says how to replay it: {text}"
    );
    assert!(
        text.contains("dependency cycle of") && text.contains("--[rw on"),
        "the report shows the offending cycle edge by edge: {text}"
    );
}
