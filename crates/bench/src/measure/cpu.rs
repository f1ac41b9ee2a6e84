//! CPU time and memory of processes and threads, read from `/proc`.
//!
//! Why `/proc` and not `getrusage`: the systems under test live in three places (our own
//! process, a child process, a thread group inside our process), and `/proc` answers for
//! all three the same way. CPU time is counted in clock ticks (`USER_HZ`, 100 per second
//! on Linux), so a figure is only meaningful over runs of a second or more; the tables
//! say "CPU s per 1,000 notifications", computed over whole measurement runs.
//!
//! When a server shares our process with the load client (Conflux over loopback, the
//! floor), its CPU is the process total minus the threads of the load client, which all
//! carry the [`CLIENT_THREAD_NAME`] (the Tokio runtime of the client) or the name of the
//! main thread.

use std::fs;

use conflux_common::{Error, Result};

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, fixed at 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

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

impl CpuScope {
    /// CPU seconds (user + system) used so far in this scope.
    pub fn seconds(&self) -> Result<f64> {
        match self {
            CpuScope::OwnProcess => process_seconds("self"),
            CpuScope::OwnProcessWithoutClient => {
                let total = process_seconds("self")?;
                let client = thread_seconds(&[CLIENT_THREAD_NAME, MAIN_THREAD_NAME])?;
                Ok((total - client).max(0.0))
            }
            CpuScope::Process(pid) => process_seconds(&pid.to_string()),
        }
    }
}

/// `utime + stime` of `/proc/<pid>/stat`, in seconds.
fn process_seconds(pid: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path)
        .map_err(|err| Error::internal(format!("cannot read {path}: {err}")))?;
    let (_, ticks) = parse_stat(&text)
        .ok_or_else(|| Error::internal(format!("{path} has an unexpected format")))?;
    Ok(ticks as f64 / TICKS_PER_SECOND)
}

/// CPU seconds of the live threads of our process whose name is one of `names`.
fn thread_seconds(names: &[&str]) -> Result<f64> {
    let dir = fs::read_dir("/proc/self/task")
        .map_err(|err| Error::internal(format!("cannot list /proc/self/task: {err}")))?;
    let mut ticks = 0u64;
    for entry in dir.flatten() {
        // A thread may exit between the listing and the read: skip it.
        let Ok(text) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((comm, thread_ticks)) = parse_stat(&text) {
            if names.iter().any(|name| comm == *name) {
                ticks += thread_ticks;
            }
        }
    }
    Ok(ticks as f64 / TICKS_PER_SECOND)
}

/// The command name and `utime + stime` of one `stat` line. The name is between the first
/// `(` and the last `)` (it may itself contain both).
fn parse_stat(text: &str) -> Option<(&str, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?;
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
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
    fn a_stat_line_gives_the_name_and_the_cpu_ticks() {
        let line = "1234 (tokio (rt) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 8 0 1 2 3";
        assert_eq!(parse_stat(line), Some(("tokio (rt) x", 290)));
    }

    #[test]
    fn our_own_process_has_cpu_time_and_memory() {
        let mut spin = 0u64;
        for i in 0..5_000_000u64 {
            spin = spin.wrapping_mul(31).wrapping_add(i);
        }
        assert!(spin != 1);
        assert!(CpuScope::OwnProcess.seconds().is_ok());
        assert!(rss_bytes(None).map(|rss| rss > 1024 * 1024).unwrap_or(false));
    }
}
