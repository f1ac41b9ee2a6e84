//! Reliability checks of Conflux's promises under faults.
//!
//! Conflux promises serializable mutations, exactly-once mutations across reconnects,
//! read-your-writes, one consistent snapshot per update of a client's queries, and that no
//! acknowledged write is ever lost. A happy-path test cannot catch the violation of any of
//! these: they break when a connection drops mid-mutation, when the server is killed
//! between the commit and the answer, when two clients race. This crate provokes exactly
//! those moments and judges what the official clients saw.
//!
//! - [`workload`]: one seeded run. Rust and npm clients append to a few lists through
//!   mutations and watch them through live queries, while relays in front of them are cut
//!   and the server (a child process) is restarted gracefully or with SIGKILL.
//! - [`check`]: the judge. Elle-style inference of write-write, write-read and read-write
//!   dependencies from list-append histories plus process and real-time order, cycle
//!   detection, and checks for lost, duplicated and phantom appends, live queries going
//!   back in time and live queries that stop updating.
//! - [`server`], [`proxy`], [`wire`]: the server child, the cuttable relays, and a minimal
//!   sync-protocol client for floods and soaks.
//! - [`soak`]: many connections with live queries under a steady write load, reporting
//!   the server's memory and notification latency over time.
//! - [`app`]: the application they all run against (also the `checker-server` binary).
//!
//! Commands: `cargo run -p conflux-checker --bin checker -- --seed 1 --runs 20`;
//! `cargo run --release -p conflux-checker --bin soak -- --connections 1000 --duration-secs 600`.
//! A run against a deliberately broken build (`--broken`: the server's conflict check
//! switched off through the db crate's `unsafe-test-knobs`) must fail.

#![allow(clippy::result_large_err)]

pub mod app;
pub mod check;
pub mod history;
pub mod proxy;
pub mod rng;
pub mod server;
pub mod soak;
pub mod wire;
pub mod workload;
