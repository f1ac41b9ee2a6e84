//! The server under test as a child process: started on a data folder, stopped gracefully
//! (SIGTERM) or killed (SIGKILL), restarted on the same folder, measured (RSS) and starved
//! of disk (a file-size limit).
//!
//! Why a child process: a crash test must really crash. SIGKILL leaves the store exactly
//! as a power cut would (minus the page cache), and no in-process test can imitate that.
//! The child is the `checker-server` binary of this crate, the checker app run by
//! `App::run()`, so it is started exactly like any deployment (`--data`, `--port`, ...).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// How long the server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// An error of the harness itself (not a finding about the server).
pub type HarnessError = String;

/// How to run the server child.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The `checker-server` binary.
    pub binary: PathBuf,
    /// The data folder (kept across restarts).
    pub data_dir: PathBuf,
    /// Where the server's log (its stderr) goes; each start appends.
    pub log_file: PathBuf,
    /// Development mode (error details go to clients).
    pub dev: bool,
    /// Extra environment variables (knobs such as `CONFLUX_SYNC_RATE_LIMIT_PER_SECOND`).
    pub env: Vec<(String, String)>,
    /// Ignore `SIGXFSZ`, so that a file-size limit makes writes fail with `EFBIG` (as a
    /// full disk makes them fail with `ENOSPC`) instead of killing the server.
    pub survive_file_size_limit: bool,
}

impl ServerOptions {
    /// Options for `binary` on `data_dir`, logging next to it, in production mode.
    pub fn new(binary: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> ServerOptions {
        let data_dir = data_dir.into();
        let log_file = data_dir.with_extension("server.log");
        ServerOptions {
            binary: binary.into(),
            data_dir,
            log_file,
            dev: false,
            env: Vec::new(),
            survive_file_size_limit: false,
        }
    }

    /// Add an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> ServerOptions {
        self.env.push((name.into(), value.into()));
        self
    }
}

/// Find the `checker-server` binary: `CONFLUX_CHECKER_SERVER_BIN` if set, else next to the
/// running executable (where cargo puts the binaries of one package).
pub fn locate_server_binary() -> Result<PathBuf, HarnessError> {
    if let Ok(path) = std::env::var("CONFLUX_CHECKER_SERVER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|err| format!("no current executable: {err}"))?;
    let mut dirs = vec![exe.parent().map(Path::to_path_buf)];
    // Test binaries live in `target/<profile>/deps`, the binaries one level up.
    dirs.push(exe.parent().and_then(Path::parent).map(Path::to_path_buf));
    for dir in dirs.into_iter().flatten() {
        let candidate = dir.join("checker-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "the `checker-server` binary was not found next to {}; build it with \
         `cargo build -p conflux-checker` or set CONFLUX_CHECKER_SERVER_BIN",
        exe.display()
    ))
}

/// A running server child.
pub struct ServerProcess {
    child: Child,
    pid: u32,
    client_url: String,
    site_url: String,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("pid", &self.pid)
            .field("client_url", &self.client_url)
            .finish()
    }
}

impl ServerProcess {
    /// Start the server and wait until it listens.
    pub async fn start(options: &ServerOptions) -> Result<ServerProcess, HarnessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&options.log_file)
            .map_err(|err| format!("cannot open {}: {err}", options.log_file.display()))?;
        let mut command = if options.survive_file_size_limit {
            // A signal ignored before `exec` stays ignored in the new program.
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
                .arg(&options.binary);
            command
        } else {
            Command::new(&options.binary)
        };
        command
            .arg("--data")
            .arg(&options.data_dir)
            .args(["--host", "127.0.0.1", "--port", "0", "--site-port", "0"])
            .args(["--dev", if options.dev { "true" } else { "false" }])
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", options.binary.display()))?;
        let pid = child.id().ok_or("the server exited at once")?;
        let stdout = child
            .stdout
            .take()
            .ok_or("the server's stdout is not piped")?;
        // Read the banner, then keep draining stdout so the server never blocks on it.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut ready_tx = Some(ready_tx);
            let mut client = None;
            let mut site = None;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((_, url)) = line.split_once("client api listening on ") {
                    client = Some(url.trim().to_owned());
                }
                if let Some((_, url)) = line.split_once("http actions listening on ") {
                    site = Some(url.trim().to_owned());
                }
                if let (Some(client), Some(site)) = (&client, &site) {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send((client.clone(), site.clone()));
                    }
                }
            }
        });
        let ready = tokio::time::timeout(START_TIMEOUT, ready_rx).await;
        let (client_url, site_url) = match ready {
            Ok(Ok(urls)) => urls,
            Ok(Err(_)) => {
                let status = child.wait().await.ok();
                return Err(format!(
                    "the server exited before listening ({status:?}); see {}",
                    options.log_file.display()
                ));
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(format!(
                    "the server did not listen within {START_TIMEOUT:?}; see {}",
                    options.log_file.display()
                ));
            }
        };
        Ok(ServerProcess {
            child,
            pid,
            client_url,
            site_url,
        })
    }

    /// The client API origin (`http://127.0.0.1:<port>`).
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The site origin (HTTP actions).
    pub fn site_url(&self) -> &str {
        &self.site_url
    }

    /// The client API address.
    pub fn client_addr(&self) -> Result<SocketAddr, HarnessError> {
        let host = self
            .client_url
            .trim_start_matches("http://")
            .trim_end_matches('/');
        host.parse()
            .map_err(|err| format!("`{}` is not an address: {err}", self.client_url))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The resident set size of the server (`VmRSS` of `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.pid)
    }

    /// Limit the size of any file the server writes (`RLIMIT_FSIZE`, soft limit) to `bytes`,
    /// or lift the limit with `None`: a full disk and the space coming back.
    pub fn set_file_size_limit(&self, bytes: Option<u64>) -> Result<(), HarnessError> {
        let pid = i32::try_from(self.pid).map_err(|_| "pid out of range".to_owned())?;
        let mut soft = 0u64;
        let mut hard = 0u64;
        rlimit::prlimit(
            pid,
            rlimit::Resource::FSIZE,
            None,
            Some((&mut soft, &mut hard)),
        )
        .map_err(|err| format!("reading the file-size limit of {pid}: {err}"))?;
        let new_soft = bytes.unwrap_or(hard).min(hard);
        rlimit::prlimit(pid, rlimit::Resource::FSIZE, Some((new_soft, hard)), None)
            .map_err(|err| format!("setting the file-size limit of {pid}: {err}"))
    }

    /// Stop gracefully (SIGTERM, as an operator or an orchestrator does) and wait for the
    /// exit; kills the server if it takes longer than 20 s.
    pub async fn terminate(mut self) -> Result<ExitStatus, HarnessError> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .map_err(|err| format!("cannot run kill: {err}"))?;
        if !status.success() {
            return Err(format!("kill -TERM {} failed: {status}", self.pid));
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(err)) => Err(format!("waiting for the server: {err}")),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(format!(
                    "the server did not stop within {STOP_TIMEOUT:?} of SIGTERM; it was killed"
                ))
            }
        }
    }

    /// Kill with SIGKILL (a crash) and reap the process.
    pub async fn kill(mut self) -> Result<(), HarnessError> {
        self.child
            .kill()
            .await
            .map_err(|err| format!("cannot kill the server: {err}"))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
