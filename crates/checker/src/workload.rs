//! One seeded run: a server child, official clients appending and watching, faults, a
//! final read, and the recorded [`History`].
//!
//! ```text
//!   Rust client 0 ──link──┐
//!   npm client 1  ──link──┤            checker-server (child process, sled data folder)
//!   Rust client 2 ──link──┼──────────▶ restarted with SIGTERM or SIGKILL on the same folder
//!   npm client 3  ──link──┘
//!        ▲ cut one link now and then          ▲ faults task
//! ```
//!
//! The seed fixes everything the checker chooses: which client appends what to which key
//! and when it pauses, which faults happen in which order and after which delays. It does
//! not fix how the operating system interleaves the processes, so a failing seed is worth
//! running again a few times (`--runs`), but the workload it replays is the same.
//!
//! Clients: even indexes use the Rust client (`convex` 0.10.4), odd ones the npm client
//! (`convex` 1.48.0 in Node) when it is installed. Each subscribes to `lists:read` of every
//! key and runs one mutation at a time. The Rust client starts a new session on every
//! socket, so its resent mutations cannot be recognised by the server; its appends are
//! therefore idempotent by value (`dedupe: true`). The npm client keeps its session across
//! reconnects and its appends are plain: the server's exactly-once guarantee is what keeps
//! a resent one from being applied twice.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conflux_testkit::node::{event_name, NodeScenario, NpmClients};
use convex::{ConvexClient, FunctionResult, Value};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, oneshot};

use crate::check::{check, Analysis};
use crate::history::{
    ClientInfo, ClientKind, FaultRecord, History, Observation, Op, OpKind, OpResult, Outcome,
};
use crate::proxy::FaultyLink;
use crate::rng::Rng;
use crate::server::{HarnessError, ServerOptions, ServerProcess};

/// How long one mutation may stay unanswered before it is recorded as unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the live queries get to show the final lists after the run.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The first value of client `i` is `(i + 1) * VALUE_BASE`.
const VALUE_BASE: i64 = 1_000_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The seed.
    pub seed: u64,
    /// Number of clients (alternating Rust and npm).
    pub clients: usize,
    /// Number of keys (lists).
    pub keys: usize,
    /// How long the clients keep appending.
    pub duration: Duration,
    /// Pause between two mutations of a client, drawn in this range (milliseconds).
    pub think_ms: (u64, u64),
    /// Inject faults (link cuts, graceful and SIGKILL restarts).
    pub faults: bool,
    /// Pause between two faults, drawn in this range (milliseconds).
    pub fault_gap_ms: (u64, u64),
    /// Run the server with its conflict check switched off (a deliberately broken build).
    pub broken: bool,
    /// The `checker-server` binary.
    pub server_binary: PathBuf,
    /// The npm clients; `None` runs Rust clients only.
    pub npm: Option<NpmClients>,
    /// A folder for the data and the server's log (kept when the run fails).
    pub work_dir: PathBuf,
}

impl RunConfig {
    /// A configuration with the defaults of the command line: 4 clients, 3 keys, faults on.
    pub fn new(seed: u64, server_binary: PathBuf, work_dir: PathBuf) -> RunConfig {
        RunConfig {
            seed,
            clients: 4,
            keys: 3,
            duration: Duration::from_secs(3),
            think_ms: (0, 15),
            faults: true,
            fault_gap_ms: (250, 900),
            broken: false,
            server_binary,
            npm: None,
            work_dir,
        }
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// What happened.
    pub history: History,
    /// The verdict.
    pub analysis: Analysis,
    /// How long the run took.
    pub elapsed: Duration,
    /// The server's log.
    pub server_log: PathBuf,
    /// The command line that replays this run.
    pub replay: String,
}

impl RunReport {
    /// One line: the seed, the verdict and the counts.
    pub fn summary(&self) -> String {
        let s = &self.analysis.stats;
        format!(
            "seed {}: {} in {:.1}s: {} acknowledged, {} failed, {} unknown appends, {} updates \
             seen, {} faults, {} transactions / {} dependencies checked",
            self.seed,
            if self.analysis.is_valid() {
                "ok"
            } else {
                "VIOLATIONS"
            },
            self.elapsed.as_secs_f64(),
            s.acknowledged,
            s.failed,
            s.unknown,
            s.observations,
            self.history.faults.len(),
            s.transactions,
            s.edges
        )
    }

    /// The full report of a failed run: the seed, how to replay it, every anomaly.
    pub fn failure_report(&self) -> String {
        let mut out = format!(
            "{}\nreplay: {}\nserver log: {}\nfaults: {}\n",
            self.summary(),
            self.replay,
            self.server_log.display(),
            self.history
                .faults
                .iter()
                .map(|f| format!("{} {}", crate::history::show_time(f.at_ns), f.description))
                .collect::<Vec<_>>()
                .join("; ")
        );
        // Every kind of violation, the first few of each.
        const SHOWN_PER_KIND: usize = 5;
        let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
        for anomaly in &self.analysis.anomalies {
            let count = shown.entry(anomaly.kind()).or_default();
            *count += 1;
            if *count <= SHOWN_PER_KIND {
                out.push_str(&format!("- {anomaly}\n"));
            }
        }
        for (kind, count) in shown {
            if count > SHOWN_PER_KIND {
                out.push_str(&format!(
                    "  (and {} more of kind \"{kind}\")\n",
                    count - SHOWN_PER_KIND
                ));
            }
        }
        out
    }
}

// -------------------------------------------------------------------------------------
// Recording
// -------------------------------------------------------------------------------------

#[derive(Default)]
struct Recorded {
    ops: Vec<Op>,
    observations: Vec<Observation>,
    faults: Vec<FaultRecord>,
    latest: HashMap<usize, BTreeMap<String, Vec<i64>>>,
}

#[derive(Clone)]
struct Recorder {
    start: Instant,
    inner: Arc<Mutex<Recorded>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn invoke(&self, client: usize, kind: OpKind) -> usize {
        let mut inner = self.inner.lock();
        inner.ops.push(Op {
            client,
            kind,
            invoked_ns: self.now(),
            completed_ns: None,
            outcome: Outcome::Unknown("not answered yet".into()),
        });
        inner.ops.len() - 1
    }

    fn complete(&self, index: usize, outcome: Outcome) {
        let now = self.now();
        let mut inner = self.inner.lock();
        if let Some(op) = inner.ops.get_mut(index) {
            if !matches!(outcome, Outcome::Unknown(_)) {
                op.completed_ns = Some(now);
            }
            op.outcome = outcome;
        }
    }

    fn observe(&self, client: usize, ts: Option<u64>, lists: BTreeMap<String, Vec<i64>>) {
        let at_ns = self.now();
        let mut inner = self.inner.lock();
        inner.latest.insert(client, lists.clone());
        inner.observations.push(Observation {
            client,
            at_ns,
            ts,
            lists,
        });
    }

    fn fault(&self, description: String) {
        let at_ns = self.now();
        self.inner
            .lock()
            .faults
            .push(FaultRecord { at_ns, description });
    }

    fn latest(&self, client: usize) -> Option<BTreeMap<String, Vec<i64>>> {
        self.inner.lock().latest.get(&client).cloned()
    }
}

// -------------------------------------------------------------------------------------
// The deployment: the server child and the links in front of it
// -------------------------------------------------------------------------------------

struct Deployment {
    options: ServerOptions,
    server: tokio::sync::Mutex<Option<ServerProcess>>,
    links: Vec<FaultyLink>,
}

impl Deployment {
    async fn upstream(&self) -> Result<SocketAddr, HarnessError> {
        match self.server.lock().await.as_ref() {
            Some(server) => server.client_addr(),
            None => Err("the server is not running".into()),
        }
    }

    async fn client_url(&self) -> Result<String, HarnessError> {
        Ok(format!("http://{}", self.upstream().await?))
    }

    /// Stop the server (SIGKILL or SIGTERM), wait `downtime`, start it again on the same
    /// data folder and point the links at it.
    async fn restart(&self, kill: bool, downtime: Duration) -> Result<(), HarnessError> {
        let mut slot = self.server.lock().await;
        for link in &self.links {
            link.set_upstream(None);
        }
        if let Some(server) = slot.take() {
            if kill {
                server.kill().await?;
            } else {
                let status = server.terminate().await?;
                if !status.success() {
                    return Err(format!(
                        "the server exited with {status} after SIGTERM; see {}",
                        self.options.log_file.display()
                    ));
                }
            }
        }
        tokio::time::sleep(downtime).await;
        let server = ServerProcess::start(&self.options).await?;
        let addr = server.client_addr()?;
        *slot = Some(server);
        for link in &self.links {
            link.set_upstream(Some(addr));
        }
        Ok(())
    }
}

// -------------------------------------------------------------------------------------
// Clients
// -------------------------------------------------------------------------------------

fn list_of(value: &Value) -> Option<Vec<i64>> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Float64(f) if f.fract() == 0.0 => Some(*f as i64),
                Value::Int64(i) => Some(*i),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn json_list_of(value: &Json) -> Option<Vec<i64>> {
    value
        .as_array()?
        .iter()
        .map(|item| item.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        .collect()
}

/// The lists an operation's result carries, or why it is not the expected shape.
fn rust_outcome(kind: &OpKind, result: FunctionResult) -> Outcome {
    match result {
        FunctionResult::Value(value) => {
            parsed_outcome(kind, &value, convex_to_json(&value).unwrap_or(Json::Null))
        }
        FunctionResult::ErrorMessage(message) => Outcome::Failed(message),
        FunctionResult::ConvexError(error) => Outcome::Failed(error.message),
    }
}

/// The checker app returns only numbers, strings, booleans, arrays and objects.
fn convex_to_json(value: &Value) -> Option<Json> {
    Some(match value {
        Value::Null => Json::Null,
        Value::Int64(i) => json!(i),
        Value::Float64(f) => json!(f),
        Value::Boolean(b) => json!(b),
        Value::String(s) => json!(s),
        Value::Array(items) => {
            Json::Array(items.iter().map(convex_to_json).collect::<Option<_>>()?)
        }
        Value::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| convex_to_json(v).map(|v| (k.clone(), v)))
                .collect::<Option<_>>()?,
        ),
        Value::Bytes(_) => return None,
    })
}

fn parsed_outcome(kind: &OpKind, shown: &impl std::fmt::Debug, value: Json) -> Outcome {
    let garbled = || Outcome::Garbled(format!("{shown:?}"));
    match kind {
        OpKind::Append { key, .. } => {
            let (list, already_appended) = match &value {
                Json::Array(_) => (json_list_of(&value), false),
                Json::Object(fields) => {
                    (fields.get("alreadyAppended").and_then(json_list_of), true)
                }
                _ => (None, false),
            };
            match list {
                Some(list) => Outcome::Ok(OpResult {
                    lists: BTreeMap::from([(key.clone(), list)]),
                    already_appended,
                }),
                None => garbled(),
            }
        }
        OpKind::AppendAndRead { .. } => {
            let Some(fields) = value.as_object() else {
                return garbled();
            };
            let already_appended = fields.get("alreadyAppended") == Some(&Json::Bool(true));
            let lists: Option<BTreeMap<String, Vec<i64>>> = fields
                .iter()
                .filter(|(k, _)| *k != "alreadyAppended")
                .map(|(k, v)| json_list_of(v).map(|l| (k.clone(), l)))
                .collect();
            match lists {
                Some(lists) => Outcome::Ok(OpResult {
                    lists,
                    already_appended,
                }),
                None => garbled(),
            }
        }
    }
}

fn npm_outcome(kind: &OpKind, event: &Json) -> Outcome {
    if event["ok"] != true {
        return Outcome::Failed(event["message"].as_str().unwrap_or_default().to_owned());
    }
    let value = event["value"].clone();
    parsed_outcome(kind, &value, value.clone())
}

fn convex_args(kind: &OpKind) -> BTreeMap<String, Value> {
    let mut args = BTreeMap::new();
    args.insert("key".into(), Value::String(kind.key().to_owned()));
    args.insert("value".into(), Value::Float64(kind.value() as f64));
    if kind.dedupe() {
        args.insert("dedupe".into(), Value::Boolean(true));
    }
    if let OpKind::AppendAndRead { read, .. } = kind {
        args.insert(
            "read".into(),
            Value::Array(read.iter().map(|k| Value::String(k.clone())).collect()),
        );
    }
    args
}

fn path_of(kind: &OpKind) -> &'static str {
    match kind {
        OpKind::Append { .. } => "lists:append",
        OpKind::AppendAndRead { .. } => "lists:appendAndRead",
    }
}

/// One client of the workload.
enum Client {
    Rust {
        client: ConvexClient,
        _subscriptions: Vec<convex::QuerySubscription>,
        observer: tokio::task::JoinHandle<()>,
    },
    Npm {
        commands: mpsc::Sender<(Json, oneshot::Sender<Json>)>,
        task: tokio::task::JoinHandle<Result<(), HarnessError>>,
    },
}

impl Client {
    async fn start_rust(
        url: &str,
        keys: &[String],
        index: usize,
        recorder: Recorder,
    ) -> Result<Client, HarnessError> {
        let mut client = ConvexClient::new(url)
            .await
            .map_err(|err| format!("the Rust client {index} cannot start: {err}"))?;
        let mut subscriptions = Vec::new();
        let mut ids = Vec::new();
        for key in keys {
            let args = BTreeMap::from([("key".to_owned(), Value::String(key.clone()))]);
            let subscription = client
                .subscribe("lists:read", args)
                .await
                .map_err(|err| format!("the Rust client {index} cannot subscribe: {err}"))?;
            ids.push((*subscription.id(), key.clone()));
            subscriptions.push(subscription);
        }
        let mut watch = client.watch_all();
        let observer = tokio::spawn(async move {
            let mut last = BTreeMap::new();
            while let Some(results) = watch.next().await {
                let mut lists = BTreeMap::new();
                for (id, key) in &ids {
                    if let Some(FunctionResult::Value(value)) = results.get(id) {
                        if let Some(list) = list_of(value) {
                            lists.insert(key.clone(), list);
                        }
                    }
                }
                if !lists.is_empty() && lists != last {
                    last = lists.clone();
                    recorder.observe(index, None, lists);
                }
            }
        });
        Ok(Client::Rust {
            client,
            _subscriptions: subscriptions,
            observer,
        })
    }

    async fn start_npm(
        npm: &NpmClients,
        url: &str,
        keys: &[String],
        index: usize,
        recorder: Recorder,
    ) -> Result<Client, HarnessError> {
        let timeout_ms = "3600000".to_owned();
        let mut args: Vec<&str> = vec![url, &timeout_ms];
        args.extend(keys.iter().map(String::as_str));
        let mut scenario = npm
            .spawn("checker-client", &args)
            .map_err(|err| format!("the npm client {index} cannot start: {err}"))?;
        scenario
            .wait_for("ready", Duration::from_secs(30))
            .await
            .map_err(|err| format!("the npm client {index} did not start: {err}"))?;
        let (commands, receiver) = mpsc::channel(4);
        let task = tokio::spawn(drive_npm(scenario, receiver, index, recorder));
        Ok(Client::Npm { commands, task })
    }

    async fn run(&mut self, kind: &OpKind) -> Outcome {
        match self {
            Client::Rust { client, .. } => {
                let mut client = client.clone();
                let call = client.mutation(path_of(kind), convex_args(kind));
                match tokio::time::timeout(OP_TIMEOUT, call).await {
                    Ok(Ok(result)) => rust_outcome(kind, result),
                    // convex 0.10.4 drops the caller's result channel when its socket fails
                    // while the mutation is being sent, and still resends the mutation
                    // after reconnecting: the outcome is unknown.
                    Ok(Err(err)) => Outcome::Unknown(format!("the Rust client gave up: {err}")),
                    Err(_) => Outcome::Unknown(format!("no answer within {OP_TIMEOUT:?}")),
                }
            }
            Client::Npm { commands, .. } => {
                let mut command = json!({
                    "op": if matches!(kind, OpKind::Append { .. }) { "append" } else { "appendAndRead" },
                    "id": kind.value(),
                    "key": kind.key(),
                    "value": kind.value(),
                });
                if let OpKind::AppendAndRead { read, .. } = kind {
                    command["read"] = json!(read);
                }
                let (reply, answer) = oneshot::channel();
                if commands.send((command, reply)).await.is_err() {
                    return Outcome::Unknown("the npm client stopped".into());
                }
                match tokio::time::timeout(OP_TIMEOUT, answer).await {
                    Ok(Ok(event)) => npm_outcome(kind, &event),
                    Ok(Err(_)) => Outcome::Unknown("the npm client stopped".into()),
                    Err(_) => Outcome::Unknown(format!("no answer within {OP_TIMEOUT:?}")),
                }
            }
        }
    }

    async fn close(self) -> Result<(), HarnessError> {
        match self {
            Client::Rust {
                client, observer, ..
            } => {
                drop(client);
                observer.abort();
                Ok(())
            }
            Client::Npm { commands, task } => {
                drop(commands);
                match tokio::time::timeout(Duration::from_secs(30), task).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(err)) => Err(format!("the npm client task failed: {err}")),
                    Err(_) => Err("the npm client did not finish within 30 s".into()),
                }
            }
        }
    }
}

fn record_npm_observation(event: &Json, index: usize, recorder: &Recorder) {
    let ts = event["ts"].as_str().and_then(|ts| ts.parse::<u64>().ok());
    let lists: BTreeMap<String, Vec<i64>> = event["lists"]
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|(k, v)| json_list_of(v).map(|l| (k.clone(), l)))
                .collect()
        })
        .unwrap_or_default();
    if !lists.is_empty() {
        recorder.observe(index, ts, lists);
    }
}

/// A scenario failure report without the thousands of events before it: the start and
/// the end (the reason and the script's stderr).
fn shorten(report: &str) -> String {
    const KEEP: usize = 1500;
    if report.len() <= 2 * KEEP {
        return report.to_owned();
    }
    let head_end = (0..=KEEP)
        .rev()
        .find(|i| report.is_char_boundary(*i))
        .unwrap_or(0);
    let tail_start = (report.len() - KEEP..report.len())
        .find(|i| report.is_char_boundary(*i))
        .unwrap_or(report.len());
    format!(
        "{} […{} bytes of events left out…] {}",
        &report[..head_end],
        tail_start - head_end,
        &report[tail_start..]
    )
}

/// Own the Node process: forward commands, route results, record updates.
async fn drive_npm(
    mut scenario: NodeScenario,
    mut commands: mpsc::Receiver<(Json, oneshot::Sender<Json>)>,
    index: usize,
    recorder: Recorder,
) -> Result<(), HarnessError> {
    let mut waiting: HashMap<i64, oneshot::Sender<Json>> = HashMap::new();
    loop {
        enum Next {
            Command(Option<(Json, oneshot::Sender<Json>)>),
            Event(Result<Json, conflux_testkit::node::ScenarioError>),
        }
        let next = tokio::select! {
            command = commands.recv() => Next::Command(command),
            event = scenario.next_event(Duration::from_secs(3600)) => Next::Event(event),
        };
        match next {
            Next::Command(Some((command, reply))) => {
                let id = command["id"].as_i64().unwrap_or_default();
                waiting.insert(id, reply);
                scenario
                    .send(&command)
                    .await
                    .map_err(|err| format!("npm client {index}: {}", shorten(&err.to_string())))?;
            }
            Next::Command(None) => break,
            Next::Event(Ok(event)) => match event_name(&event) {
                "observe" => record_npm_observation(&event, index, &recorder),
                "result" => {
                    if let Some(reply) = event["id"].as_i64().and_then(|id| waiting.remove(&id)) {
                        let _ = reply.send(event);
                    }
                }
                _ => {}
            },
            Next::Event(Err(err)) => {
                return Err(format!("npm client {index}: {}", shorten(&err.to_string())))
            }
        }
    }
    let mut unanswered: Vec<i64> = waiting.into_keys().collect();
    unanswered.sort_unstable();
    scenario
        .finish(Duration::from_secs(20))
        .await
        .map(|_| ())
        .map_err(|err| {
            // A script that does not end is almost always waiting on a mutation: say which.
            let pending = if unanswered.is_empty() {
                String::new()
            } else {
                format!(" (appends sent but never answered: {unanswered:?})")
            };
            format!("npm client {index}{pending}: {}", shorten(&err.to_string()))
        })
}

// -------------------------------------------------------------------------------------
// The run
// -------------------------------------------------------------------------------------

/// The operations of one client, drawn from its own random stream.
fn next_op(rng: &mut Rng, keys: &[String], value: i64, dedupe: bool) -> OpKind {
    let key = keys[rng.below(keys.len() as u64) as usize].clone();
    if keys.len() > 1 && rng.chance(30) {
        let read: Vec<String> = keys.iter().filter(|k| **k != key).cloned().collect();
        OpKind::AppendAndRead {
            key,
            value,
            read,
            dedupe,
        }
    } else {
        OpKind::Append { key, value, dedupe }
    }
}

/// What one client does, fixed by the seed.
struct ClientPlan {
    index: usize,
    keys: Vec<String>,
    /// Append idempotently (the Rust client; see the module docs).
    dedupe: bool,
    rng: Rng,
    think_ms: (u64, u64),
    until: tokio::time::Instant,
}

async fn client_loop(mut client: Client, plan: ClientPlan, recorder: Recorder) -> (Client, bool) {
    let ClientPlan {
        index,
        keys,
        dedupe,
        mut rng,
        think_ms,
        until,
    } = plan;
    let mut seq = 0i64;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.between(think_ms.0, think_ms.1))).await;
        seq += 1;
        let value = (index as i64 + 1) * VALUE_BASE + seq;
        let kind = next_op(&mut rng, &keys, value, dedupe);
        let op = recorder.invoke(index, kind.clone());
        let outcome = client.run(&kind).await;
        let timed_out = matches!(&outcome, Outcome::Unknown(why) if why.starts_with("no answer"));
        recorder.complete(op, outcome);
        if timed_out {
            // Something is stuck; the checker reports what it saw so far.
            return (client, false);
        }
    }
    (client, true)
}

/// A fault of the plan.
#[derive(Clone, Copy, Debug)]
enum Fault {
    CutOne(usize),
    CutAll,
    Restart { kill: bool, downtime_ms: u64 },
}

async fn fault_loop(
    deployment: Arc<Deployment>,
    mut rng: Rng,
    gap_ms: (u64, u64),
    clients: usize,
    until: tokio::time::Instant,
    recorder: Recorder,
) -> Result<(), HarnessError> {
    loop {
        let gap = Duration::from_millis(rng.between(gap_ms.0, gap_ms.1));
        if tokio::time::Instant::now() + gap >= until {
            return Ok(());
        }
        tokio::time::sleep(gap).await;
        let fault = match rng.below(100) {
            0..=39 => Fault::CutOne(rng.below(clients as u64) as usize),
            40..=49 => Fault::CutAll,
            roll => Fault::Restart {
                kill: roll >= 75,
                downtime_ms: rng.between(0, 300),
            },
        };
        match fault {
            Fault::CutOne(client) => {
                recorder.fault(format!("cut the connection of client {client}"));
                deployment.links[client].cut();
            }
            Fault::CutAll => {
                recorder.fault("cut every connection".into());
                for link in &deployment.links {
                    link.cut();
                }
            }
            Fault::Restart { kill, downtime_ms } => {
                recorder.fault(format!(
                    "{} the server, {downtime_ms} ms down",
                    if kill { "SIGKILL" } else { "SIGTERM" }
                ));
                deployment
                    .restart(kill, Duration::from_millis(downtime_ms))
                    .await?;
            }
        }
    }
}

async fn read_final_lists(
    url: &str,
    keys: &[String],
) -> Result<BTreeMap<String, Vec<i64>>, HarnessError> {
    let mut client = ConvexClient::new(url)
        .await
        .map_err(|err| format!("the final reader cannot start: {err}"))?;
    let mut lists = BTreeMap::new();
    for key in keys {
        let args = BTreeMap::from([("key".to_owned(), Value::String(key.clone()))]);
        let result = tokio::time::timeout(OP_TIMEOUT, client.query("lists:read", args))
            .await
            .map_err(|_| format!("the final read of {key} timed out"))?
            .map_err(|err| format!("the final read of {key} failed: {err}"))?;
        match result {
            FunctionResult::Value(value) => {
                let list = list_of(&value)
                    .ok_or_else(|| format!("the final read of {key} returned {value:?}"))?;
                lists.insert(key.clone(), list);
            }
            other => return Err(format!("the final read of {key} failed: {other:?}")),
        }
    }
    Ok(lists)
}

/// The `checker` command line that runs `config` again.
pub fn replay_command(config: &RunConfig) -> String {
    let mut command = format!(
        "cargo run -p conflux-checker --bin checker -- --seed {} --runs 1 --clients {} --keys {} \
         --duration-ms {} --think-min-ms {} --think-max-ms {}",
        config.seed,
        config.clients,
        config.keys,
        config.duration.as_millis(),
        config.think_ms.0,
        config.think_ms.1
    );
    if !config.faults {
        command.push_str(" --no-faults");
    }
    if config.broken {
        command.push_str(" --broken");
    }
    if config.npm.is_none() {
        command.push_str(" --rust-only");
    }
    command
}

/// Run one seed and judge its history.
pub async fn run(config: &RunConfig) -> Result<RunReport, HarnessError> {
    let started = Instant::now();
    let root = Rng::new(config.seed);
    let dir = config.work_dir.join(format!("seed-{}", config.seed));
    if dir.exists() {
        // A previous run of the same seed: its lists hold the same values.
        std::fs::remove_dir_all(&dir)
            .map_err(|err| format!("cannot clear {}: {err}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    let mut options = ServerOptions::new(&config.server_binary, dir.join("data"));
    options.log_file = dir.join("server.log");
    options.dev = true;
    if config.broken {
        options = options.env(conflux_db::UNSAFE_SKIP_CONFLICT_CHECK_ENV, "1");
    }
    let keys: Vec<String> = (0..config.keys.max(1)).map(|i| format!("k{i}")).collect();
    let server = ServerProcess::start(&options).await?;
    let server_url = server.client_url().to_owned();
    {
        let mut setup = ConvexClient::new(&server_url)
            .await
            .map_err(|err| format!("the setup client cannot start: {err}"))?;
        let args = BTreeMap::from([(
            "keys".to_owned(),
            Value::Array(keys.iter().map(|k| Value::String(k.clone())).collect()),
        )]);
        match setup.mutation("lists:init", args).await {
            Ok(FunctionResult::Value(_)) => {}
            other => return Err(format!("lists:init failed: {other:?}")),
        }
    }
    let upstream = server.client_addr()?;
    let mut links = Vec::new();
    for _ in 0..config.clients {
        links.push(
            FaultyLink::start(Some(upstream))
                .await
                .map_err(|err| format!("cannot start a relay: {err}"))?,
        );
    }
    let deployment = Arc::new(Deployment {
        options: options.clone(),
        server: tokio::sync::Mutex::new(Some(server)),
        links,
    });
    let recorder = Recorder {
        start: started,
        inner: Arc::new(Mutex::new(Recorded::default())),
    };

    let mut kinds = Vec::new();
    let mut clients = Vec::new();
    for index in 0..config.clients {
        let url = deployment.links[index].url();
        let kind = match (&config.npm, index % 2) {
            (Some(_), 1) => ClientKind::Npm,
            _ => ClientKind::Rust,
        };
        let client = match (kind, &config.npm) {
            (ClientKind::Npm, Some(npm)) => {
                Client::start_npm(npm, &url, &keys, index, recorder.clone()).await?
            }
            _ => Client::start_rust(&url, &keys, index, recorder.clone()).await?,
        };
        kinds.push(kind);
        clients.push(client);
    }

    let until = tokio::time::Instant::now() + config.duration;
    let mut loops = Vec::new();
    for (index, client) in clients.into_iter().enumerate() {
        let plan = ClientPlan {
            index,
            keys: keys.clone(),
            dedupe: kinds[index] == ClientKind::Rust,
            rng: root.fork(index as u64 + 1),
            think_ms: config.think_ms,
            until,
        };
        loops.push(tokio::spawn(client_loop(client, plan, recorder.clone())));
    }
    let faults = if config.faults {
        Some(tokio::spawn(fault_loop(
            deployment.clone(),
            root.fork(0),
            config.fault_gap_ms,
            config.clients,
            until,
            recorder.clone(),
        )))
    } else {
        None
    };
    let mut finished = Vec::new();
    for handle in loops {
        finished.push(
            handle
                .await
                .map_err(|err| format!("a client task failed: {err}"))?,
        );
    }
    if let Some(faults) = faults {
        faults
            .await
            .map_err(|err| format!("the fault task failed: {err}"))??;
    }

    // Every client is done: read the truth, then give the live queries time to show it.
    // A mutation whose Rust client gave up on it may still land (the client resends it):
    // when a live query shows more than the final read, read again.
    let url = deployment.client_url().await?;
    let mut final_lists = read_final_lists(&url, &keys).await?;
    let settle_until = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let latest: Vec<Option<BTreeMap<String, Vec<i64>>>> = (0..finished.len())
            .map(|index| recorder.latest(index))
            .collect();
        let settled = finished
            .iter()
            .zip(&latest)
            .all(|((_, alive), seen)| !alive || seen.as_ref() == Some(&final_lists));
        if settled || Instant::now() > settle_until {
            break;
        }
        let overtaken = latest.iter().flatten().any(|seen| {
            seen.iter().any(|(key, list)| {
                final_lists
                    .get(key)
                    .is_some_and(|f| list.len() > f.len() && list.starts_with(f))
            })
        });
        if overtaken {
            final_lists = read_final_lists(&url, &keys).await?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut infos = Vec::new();
    let mut close_errors = Vec::new();
    for (index, (client, alive)) in finished.into_iter().enumerate() {
        infos.push(ClientInfo {
            kind: kinds[index],
            alive_at_end: alive,
        });
        if let Err(err) = client.close().await {
            close_errors.push(err);
        }
    }
    if let Some(server) = deployment.server.lock().await.take() {
        server.terminate().await?;
    }
    if let Some(err) = close_errors.into_iter().next() {
        return Err(err);
    }

    let recorded = std::mem::take(&mut *recorder.inner.lock());
    let history = History {
        seed: config.seed,
        clients: infos,
        keys,
        ops: recorded.ops,
        observations: recorded.observations,
        final_lists,
        faults: recorded.faults,
    };
    let analysis = check(&history);
    Ok(RunReport {
        replay: replay_command(config),
        seed: config.seed,
        history,
        analysis,
        elapsed: started.elapsed(),
        server_log: options.log_file,
    })
}
