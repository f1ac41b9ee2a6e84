//! CPU time and memory of processes and threads, read from `/proc`.
//!
//! Why `/proc`: the systems under test live in three places (our own process, a child
//! process, a group of threads inside our process), and `/proc` answers for all three the
//! same way. CPU time comes from each thread's `schedstat` (nanoseconds on the CPU), not
//! from `stat` (10 ms ticks), so that a run of a few seconds at a few hundred writes per
//! second still gets a meaningful figure. A [`CpuSnapshot`] holds every thread's time; the
//! CPU of a run is the difference of two snapshots, thread by thread (a thread born during
//! the run counts from zero; one that ended during it loses its last moments, which the
//! tables accept as noise).
//!
//! When a server shares our process with the load client (Conflux over loopback, the
//! floor), its CPU is that of every thread except the load client's, which all carry the
//! [`CLIENT_THREAD_NAME`] (the Tokio runtime of the client) or the name of the main thread.

use std::collections::HashMap;
use std::fs;

use conflux_common::{Error, Result};

/// The thread name of the load client's runtime.
pub const CLIENT_THREAD_NAME: &str = "bench-client";

/// The name the kernel gives our main thread (the binary name, cut to 15 bytes).
const MAIN_THREAD_NAME: &str = "conflux-bench";

/// Whose CPU time a figure counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuScope {
    /// Our whole process (in-process systems: the app and the database are the process).
    OwnProcess,
    /// Our process minus the load client's threads (a server started inside our process).
    OwnProcessWithoutClient,
    /// Another process (a peer server), by pid.
    Process(u32),
}

/// CPU nanoseconds of every counted thread at one moment.
#[derive(Clone, Debug, Default)]
pub struct CpuSnapshot {
    threads: HashMap<u32, u64>,
}

impl CpuSnapshot {
    /// CPU seconds used between `before` and this snapshot.
    pub fn seconds_since(&self, before: &CpuSnapshot) -> f64 {
        let nanos: u64 = self
            .threads
            .iter()
            .map(|(tid, now)| now.saturating_sub(before.threads.get(tid).copied().unwrap_or(0)))
            .sum();
        nanos as f64 / 1e9
    }
}

impl CpuScope {
    /// The CPU time of every thread in this scope, now.
    pub fn snapshot(&self) -> Result<CpuSnapshot> {
        let (pid, exclude_client) = match self {
            CpuScope::OwnProcess => ("self".to_string(), false),
            CpuScope::OwnProcessWithoutClient => ("self".to_string(), true),
            CpuScope::Process(pid) => (pid.to_string(), false),
        };
        let dir = format!("/proc/{pid}/task");
        let entries = fs::read_dir(&dir)
            .map_err(|err| Error::internal(format!("cannot list {dir}: {err}")))?;
        let mut threads = HashMap::new();
        for entry in entries.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            // A thread may end between the listing and the reads: skip it.
            if exclude_client {
                let Ok(name) = fs::read_to_string(entry.path().join("comm")) else {
                    continue;
                };
                let name = name.trim_end();
                if name == CLIENT_THREAD_NAME || name == MAIN_THREAD_NAME {
                    continue;
                }
            }
            if let Some(nanos) = fs::read_to_string(entry.path().join("schedstat"))
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse::<u64>().ok())
            {
                threads.insert(tid, nanos);
            }
        }
        Ok(CpuSnapshot { threads })
    }
}

/// Resident memory of a process (`VmRSS`), in bytes; `None` reads our own.
pub fn rss_bytes(pid: Option<u32>) -> Result<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let text = fs::read_to_string(&path)
        .map_err(|err| Error::internal(format!("cannot read {path}: {err}")))?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| Error::internal(format!("{path} has no VmRSS line")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_shows_up_in_the_cpu_time_of_our_process() {
        let before = CpuScope::OwnProcess
            .snapshot()
            .expect("our own /proc is readable");
        let mut spin = 0u64;
        for i in 0..20_000_000u64 {
            spin = spin.wrapping_mul(31).wrapping_add(i);
        }
        assert!(spin != 1);
        let after = CpuScope::OwnProcess
            .snapshot()
            .expect("our own /proc is readable");
        assert!(after.seconds_since(&before) > 0.001);
    }

    #[test]
    fn our_resident_memory_is_known() {
        assert!(rss_bytes(None)
            .map(|rss| rss > 1024 * 1024)
            .unwrap_or(false));
    }
}
