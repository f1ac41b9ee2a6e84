//! What the tests of the chat example share: the chat example's binary and its process,
//! a signing key pair, free ports, and a browser-like HTTP client that walks the Google
//! sign-in (against the local OpenID Connect provider) one redirect at a time.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use url::Url;

/// How long anything a test waits for may take on a loaded two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The OAuth client the local provider registers as "Google".
pub const GOOGLE_CLIENT_ID: &str = "conflux-chat-google";
/// Its secret.
pub const GOOGLE_CLIENT_SECRET: &str = "conflux-chat-google-secret";

/// Wait for `work` at most [`PATIENCE`]; a panic naming `what` otherwise, so a server that
/// never answers fails the test with the step that hung instead of hanging it.
pub async fn within<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, work).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {PATIENCE:?}"),
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target folder of this build (`target/`), found from the test executable
/// (`target/<profile>/deps/<test>`), so `CARGO_TARGET_DIR` is honoured.
pub fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace().join("target"))
}

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("the test executable lives in target/<profile>/deps")
}

/// The chat example's executable, built once per test process.
///
/// `cargo test --workspace` builds examples too, but `cargo test --test cli` does not, and
/// a binary left from an older build would test old code: so `cargo build --example chat`
/// always runs first (a no-op when nothing changed). The variables cargo sets for tests
/// (`CARGO_PKG_*`, ...) are removed, or build scripts would see a changed environment and
/// rebuild dependencies.
pub fn chat_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let profile = profile_dir();
            let release = profile.file_name().is_some_and(|name| name == "release");
            let mut command = Command::new(env!("CARGO"));
            command.args(["build", "--quiet", "-p", "conflux", "--example", "chat"]);
            if release {
                command.arg("--release");
            }
            for (name, _) in std::env::vars_os() {
                let text = name.to_string_lossy();
                let keep = matches!(text.as_ref(), "CARGO_HOME" | "CARGO_TARGET_DIR");
                if !keep
                    && (text.starts_with("CARGO_")
                        || text.starts_with("RUSTC")
                        || text == "OUT_DIR"
                        || text == "RUST_RECURSION_COUNT")
                {
                    command.env_remove(&name);
                }
            }
            let status = command
                .current_dir(workspace())
                .status()
                .expect("cargo runs");
            assert!(
                status.success(),
                "`cargo build --example chat` failed: {status}"
            );
            let binary = profile.join("examples").join("chat");
            assert!(binary.is_file(), "{} was not built", binary.display());
            binary
        })
        .clone()
}

/// A command running the chat example on the data folder `data`, with a clean
/// environment (see [`chat_command_without_flags`]).
pub fn chat_command(data: &Path) -> Command {
    let mut command = chat_command_without_flags();
    command
        .arg("--data")
        .arg(data)
        .current_dir(data.parent().unwrap_or(data));
    command
}

/// A command running the chat example with a clean environment: no sign-in or Conflux
/// variable of the machine running the tests leaks in.
pub fn chat_command_without_flags() -> Command {
    let mut command = Command::new(chat_binary());
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("AUTH_")
            || text.starts_with("CONFLUX_")
            || text.starts_with("CONVEX_")
            || matches!(
                text.as_ref(),
                "SITE_URL" | "CUSTOM_AUTH_SITE_URL" | "JWT_PRIVATE_KEY" | "JWKS" | "RUST_LOG"
            )
        {
            command.env_remove(&name);
        }
    }
    command.env("NO_COLOR", "1");
    command
}

/// Run a one-shot command of the example (`functions`, `export`, ...) to its end.
pub fn run_chat(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = chat_command(data);
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the example runs")
}

/// Its standard output, or a panic with both outputs when it failed.
pub fn stdout_of_success(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `chat serve` running in a child process.
pub struct ChatProcess {
    child: Child,
    /// The client API origin it printed.
    pub client: String,
    /// The site origin it printed.
    pub site: String,
    /// Every stdout line so far.
    stdout: Arc<Mutex<Vec<String>>>,
    /// Everything it wrote on stderr so far.
    stderr: Arc<Mutex<String>>,
}

impl ChatProcess {
    /// Start `chat serve` with `args` and `env` and wait for its two "listening" lines.
    pub fn start(data: &Path, args: &[&str], env: &[(&str, &str)]) -> ChatProcess {
        let mut command = chat_command(data);
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        ChatProcess::spawn(command)
    }

    /// Start an already prepared command and wait for the two "listening" lines.
    pub fn spawn(mut command: Command) -> ChatProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let err_text = Arc::new(Mutex::new(String::new()));
        {
            let err_text = err_text.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut buffer = [0u8; 8192];
                while let Ok(read) = reader.read(&mut buffer) {
                    if read == 0 {
                        break;
                    }
                    let chunk = String::from_utf8_lossy(&buffer[..read]).into_owned();
                    err_text
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_str(&chunk);
                }
            });
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (found_tx, found_rx) = std::sync::mpsc::channel::<String>();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(line.clone());
                    let _ = found_tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + PATIENCE;
        let mut client = None;
        let mut site = None;
        while client.is_none() || site.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match found_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("conflux: client api listening on ") {
                        client = Some(url.to_owned());
                    } else if let Some(url) =
                        line.strip_prefix("conflux: http actions listening on ")
                    {
                        site = Some(url.to_owned());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the example did not print both listening lines within {PATIENCE:?}\n\
                         --- stdout ---\n{}\n--- stderr ---\n{}",
                        lines.lock().unwrap_or_else(|p| p.into_inner()).join("\n"),
                        err_text.lock().unwrap_or_else(|p| p.into_inner())
                    );
                }
            }
        }
        ChatProcess {
            child,
            client: client.unwrap_or_default(),
            site: site.unwrap_or_default(),
            stdout: lines,
            stderr: err_text,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Send a signal with `kill -<signal> <pid>` (no libc needed).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Wait for the process to end; its exit status, or a panic after [`PATIENCE`].
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited for") {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the example did not exit within {PATIENCE:?}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait()
    }
}

impl Drop for ChatProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port that was free a moment ago, for the few places that must know a port before
/// the server binds it (a redirect URI registered with the OpenID provider).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}

/// A signing key pair for the built-in sign-in, generated once per machine and kept in the
/// target folder (RSA generation is slow in debug builds).
pub fn test_keys() -> (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conflux-facade-test-keys.json");
        conflux_testkit::keys::cached_pair(&path, || {
            let keys = conflux::auth::generate_signing_keys().expect("a key pair is generated");
            (keys.private_key_env(), keys.jwks_json())
        })
    })
    .clone()
}

/// An HTTP client for the tests' own calls (no proxy: only loopback traffic).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .expect("an HTTP client builds")
}

/// Call a function over the client HTTP API as `ConvexHttpClient` does; the JSON answer.
pub async fn call(
    client_origin: &str,
    kind: &str,
    path: &str,
    args: Json,
    token: Option<&str>,
) -> Json {
    let mut request = http()
        .post(format!("{client_origin}/api/{kind}"))
        .json(&json!({"path": path, "args": args, "format": "json"}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the client API answers");
    response.json().await.expect("the client API answers JSON")
}

pub use conflux_testkit::browser::Browser;

/// The end of a Google sign-in: where the browser landed and the tokens the app got.
pub struct SignedIn {
    /// `SITE_URL?code=...`: where the callback sent the browser.
    pub landing: Url,
    /// The access token (a JWT).
    pub token: String,
    /// The refresh token.
    pub refresh_token: String,
}

/// Sign in with Google the way the official client and a browser do together:
/// `auth:signIn {provider}` → the sign-in route → the provider → the callback →
/// `SITE_URL?code=` → `auth:signIn {params: {code}, verifier}`.
pub async fn sign_in_with_google(client_origin: &str) -> SignedIn {
    let started = call(
        client_origin,
        "action",
        "auth:signIn",
        json!({"provider": "google"}),
        None,
    )
    .await;
    assert_eq!(
        started["status"], "success",
        "auth:signIn failed: {started}"
    );
    let redirect = started["value"]["redirect"]
        .as_str()
        .unwrap_or_else(|| panic!("auth:signIn gave no redirect: {started}"))
        .to_owned();
    let verifier = started["value"]["verifier"]
        .as_str()
        .unwrap_or_else(|| panic!("auth:signIn gave no verifier: {started}"))
        .to_owned();
    let mut browser = Browser::new();
    let mut url = redirect;
    let mut hops = Vec::new();
    // sign-in route → provider → callback → the app
    for _ in 0..3 {
        let hop = browser.get(&url).await;
        let next = hop.location.clone().unwrap_or_else(|| {
            panic!(
                "GET {url} answered {} without a redirect after {hops:?}: {}",
                hop.status, hop.body
            )
        });
        hops.push(format!("{} {url}", hop.status));
        url = next;
    }
    let landing = Url::parse(&url).expect("the sign-in ends at a URL");
    let code = landing
        .query_pairs()
        .find(|(name, _)| name == "code")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("the sign-in ended at {landing} without a code ({hops:?})"));
    let finished = call(
        client_origin,
        "action",
        "auth:signIn",
        json!({"params": {"code": code}, "verifier": verifier}),
        None,
    )
    .await;
    assert_eq!(
        finished["status"], "success",
        "the code exchange failed: {finished}"
    );
    let tokens = &finished["value"]["tokens"];
    SignedIn {
        landing,
        token: tokens["token"]
            .as_str()
            .expect("an access token")
            .to_owned(),
        refresh_token: tokens["refreshToken"]
            .as_str()
            .expect("a refresh token")
            .to_owned(),
    }
}

/// A local OpenID Connect provider acting as Google for a site at `site_origin`.
pub async fn local_google(site_origin: &str) -> conflux_local_oidc::LocalOidcProvider {
    conflux_local_oidc::LocalOidcProvider::start(conflux_local_oidc::LocalOidcConfig {
        clients: vec![conflux_local_oidc::TestClient {
            client_id: GOOGLE_CLIENT_ID.into(),
            client_secret: GOOGLE_CLIENT_SECRET.into(),
            redirect_uris: vec![format!("{site_origin}/api/auth/callback/google")],
        }],
        ..conflux_local_oidc::LocalOidcConfig::default()
    })
    .await
    .expect("the local OpenID provider starts")
}
