//! The floor: a bare WebSocket broadcast server with no database.
//!
//! It speaks the same subset of the sync protocol as the load client and sends messages
//! of the same shape and size as Conflux (a `Transition` carrying the latest `limit`
//! messages of the channel, documents with `_id` and `_creationTime`), but it keeps the
//! messages in memory, runs no function, writes nothing to disk and renders each result
//! once per write. What it costs is what the harness, the client and loopback cost by
//! themselves: Conflux's figures divided by the floor's are the overhead Conflux adds.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use conflux_common::{Error, Result};
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value as Json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::conflux_ws::list_args;
use super::sync_client::SyncClient;
use super::{Guard, System, Target, TargetInfo, Transport};
use crate::measure::cpu::CpuScope;
use crate::measure::recorder::Recorder;
use crate::message::MessageSpec;

/// The floor keeps everything in memory.
pub const DURABILITY: &str = "none (memory only)";
/// Frames waiting per connection; a subscriber that falls further behind loses messages
/// (counted as missing deliveries in the tables).
const OUTBOX_FRAMES: usize = 4096;
/// Messages kept per channel (the largest `limit` any workload asks for).
const KEEP_PER_CHANNEL: usize = 100;

struct Subscriber {
    connection: u64,
    query_id: u64,
    limit: usize,
    outbox: mpsc::Sender<Message>,
}

#[derive(Default)]
struct Channel {
    /// Newest first, as JSON text.
    docs: VecDeque<String>,
    subscribers: Vec<Subscriber>,
}

#[derive(Default)]
struct State {
    channels: Mutex<HashMap<String, Channel>>,
    counters: Mutex<HashMap<String, f64>>,
    next_connection: AtomicU64,
    ts: AtomicU64,
    dropped: AtomicU64,
}

/// The floor server: an accept loop on its own runtime.
pub struct FloorServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FloorServer {
    /// Listen on 127.0.0.1:`port` (0 picks one) in a runtime of its own, whose threads are
    /// named `floor-server`.
    pub async fn start(port: u16) -> Result<FloorServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("floor-server")
            .enable_all()
            .build()
            .map_err(Error::internal)?;
        let listener = runtime
            .spawn(async move { TcpListener::bind(("127.0.0.1", port)).await })
            .await
            .map_err(Error::internal)?
            .map_err(|err| {
                Error::internal(format!("the floor cannot listen on port {port}: {err}"))
            })?;
        let addr = listener.local_addr().map_err(Error::internal)?;
        runtime.spawn(serve(listener));
        Ok(FloorServer {
            addr,
            runtime: Some(runtime),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving and close every connection.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for FloorServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accept connections until the runtime stops.
pub async fn serve(listener: TcpListener) {
    let state = Arc::new(State::default());
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, state.clone()));
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

async fn connection(stream: TcpStream, state: Arc<State>) {
    let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let id = state.next_connection.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outgoing) = mpsc::channel::<Message>(OUTBOX_FRAMES);
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if sink.send(frame).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else {
            continue;
        };
        let Ok(message) = serde_json::from_str::<Json>(text.as_str()) else {
            continue;
        };
        handle(&state, id, &outbox, &message);
    }
    // Forget this connection's subscriptions.
    for channel in state.channels.lock().values_mut() {
        channel.subscribers.retain(|s| s.connection != id);
    }
    writer.abort();
}

fn handle(state: &State, connection: u64, outbox: &mpsc::Sender<Message>, message: &Json) {
    match message.get("type").and_then(Json::as_str) {
        Some("ModifyQuerySet") => {
            let adds = message
                .get("modifications")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            let mut channels = state.channels.lock();
            let mut updates = Vec::new();
            for add in adds {
                let query_id = add.get("queryId").and_then(Json::as_u64).unwrap_or(0);
                let args = add.get("args").and_then(|a| a.get(0));
                let name = args
                    .and_then(|a| a.get("channel"))
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                let limit = args
                    .and_then(|a| a.get("limit"))
                    .and_then(Json::as_f64)
                    .unwrap_or(100.0) as usize;
                let channel = channels.entry(name).or_default();
                channel.subscribers.push(Subscriber {
                    connection,
                    query_id,
                    limit,
                    outbox: outbox.clone(),
                });
                updates.push(format!(
                    r#"{{"type":"QueryUpdated","queryId":{query_id},"value":{},"logLines":[],"journal":null}}"#,
                    render(&channel.docs, limit)
                ));
            }
            drop(channels);
            let _ = outbox.try_send(Message::text(transition(state, &updates.join(","))));
        }
        Some("Mutation") => {
            let request_id = message.get("requestId").and_then(Json::as_u64).unwrap_or(0);
            let args = message
                .get("args")
                .and_then(|a| a.get(0))
                .cloned()
                .unwrap_or(Json::Null);
            let ts = state.ts.fetch_add(1, Ordering::Relaxed) + 1;
            let result = match message.get("udfPath").and_then(Json::as_str) {
                Some("messages:send") => {
                    broadcast(state, args, ts);
                    Json::Null
                }
                Some("counters:increment") => {
                    let key = args.get("key").and_then(Json::as_str).unwrap_or_default();
                    let mut counters = state.counters.lock();
                    let n = counters.entry(key.to_string()).or_insert(0.0);
                    *n += 1.0;
                    json!(*n)
                }
                _ => Json::Null,
            };
            let response = json!({
                "type": "MutationResponse", "requestId": request_id, "success": true,
                "result": result, "ts": encode_ts(ts), "logLines": [],
            });
            let _ = outbox.try_send(Message::text(response.to_string()));
        }
        _ => {}
    }
}

/// Store the message and send every subscriber of its channel the channel's latest
/// messages, rendered once per distinct `limit`.
fn broadcast(state: &State, mut doc: Json, ts: u64) {
    let Some(name) = doc
        .get("channel")
        .and_then(Json::as_str)
        .map(str::to_string)
    else {
        return;
    };
    if let Some(fields) = doc.as_object_mut() {
        // The same system fields Conflux adds, so that sizes match.
        fields.insert("_id".into(), json!(format!("{:032x}", ts)));
        fields.insert("_creationTime".into(), json!(1.7e12 + ts as f64 + 0.125));
    }
    let mut channels = state.channels.lock();
    let channel = channels.entry(name).or_default();
    channel.docs.push_front(doc.to_string());
    channel.docs.truncate(KEEP_PER_CHANNEL);
    let mut rendered: HashMap<usize, String> = HashMap::new();
    for subscriber in &channel.subscribers {
        let value = rendered
            .entry(subscriber.limit)
            .or_insert_with(|| render(&channel.docs, subscriber.limit));
        let update = format!(
            r#"{{"type":"QueryUpdated","queryId":{},"value":{value},"logLines":[],"journal":null}}"#,
            subscriber.query_id
        );
        if subscriber
            .outbox
            .try_send(Message::text(transition(state, &update)))
            .is_err()
        {
            state.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn render(docs: &VecDeque<String>, limit: usize) -> String {
    let mut out = String::from("[");
    for (index, doc) in docs.iter().take(limit).enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(doc);
    }
    out.push(']');
    out
}

fn transition(state: &State, modifications: &str) -> String {
    let ts = encode_ts(state.ts.load(Ordering::Relaxed));
    format!(
        r#"{{"type":"Transition","startVersion":{{"querySet":1,"identity":0,"ts":"{ts}"}},"endVersion":{{"querySet":1,"identity":0,"ts":"{ts}"}},"modifications":[{modifications}],"clientClockSkew":0,"serverTs":0}}"#
    )
}

/// A u64 as the protocol spells it: base64 of its 8 little-endian bytes.
fn encode_ts(ts: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(ts.to_le_bytes())
}

/// The floor as a [`Target`]: the server in this process, the same load client as
/// Conflux over loopback.
pub struct Floor {
    info: TargetInfo,
    server: Mutex<Option<FloorServer>>,
    url: String,
    writers: Mutex<Vec<Arc<SyncClient>>>,
    counter_clients: Mutex<Vec<Arc<SyncClient>>>,
}

impl Floor {
    /// Start the floor on a free port.
    pub async fn start() -> Result<Floor> {
        let server = FloorServer::start(0).await?;
        Ok(Floor {
            info: TargetInfo {
                system: System::Floor,
                name: "Floor (bare WebSocket)".into(),
                transport: Transport::Loopback,
                durability: DURABILITY.into(),
            },
            url: format!("ws://{}/api/sync", server.addr()),
            server: Mutex::new(Some(server)),
            writers: Mutex::new(Vec::new()),
            counter_clients: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl Target for Floor {
    fn info(&self) -> &TargetInfo {
        &self.info
    }

    async fn subscribe(
        &self,
        channels: &[String],
        limit: usize,
        recorder: Arc<Recorder>,
    ) -> Result<Guard> {
        let client = SyncClient::connect(&self.url).await?;
        let args: Vec<Json> = channels.iter().map(|c| list_args(c, limit)).collect();
        client
            .add_queries(super::conflux_app::LIST, &args, Some(recorder))
            .await?;
        Ok(Box::new(client))
    }

    async fn prepare_writers(&self, count: usize) -> Result<()> {
        let mut fresh = Vec::with_capacity(count);
        for _ in 0..count {
            fresh.push(Arc::new(SyncClient::connect(&self.url).await?));
        }
        *self.writers.lock() = fresh;
        Ok(())
    }

    async fn write(&self, writer: usize, message: &MessageSpec) -> Result<()> {
        let client = {
            let writers = self.writers.lock();
            writers
                .get(writer % writers.len().max(1))
                .cloned()
                .ok_or_else(|| Error::internal("no writer connections were prepared"))?
        };
        client
            .mutation(super::conflux_app::SEND, Json::Object(message.fields()))
            .await
    }

    async fn prepare_counters(&self, clients: usize, _keys: usize) -> Result<()> {
        let mut fresh = Vec::with_capacity(clients);
        for _ in 0..clients {
            fresh.push(Arc::new(SyncClient::connect(&self.url).await?));
        }
        *self.counter_clients.lock() = fresh;
        Ok(())
    }

    async fn increment(&self, client: usize, key: usize) -> Result<()> {
        let connection = self
            .counter_clients
            .lock()
            .get(client)
            .cloned()
            .ok_or_else(|| Error::internal(format!("counter client {client} was not prepared")))?;
        connection
            .mutation(
                super::conflux_app::INCREMENT,
                json!({"key": super::conflux_app::counter_key(key)}),
            )
            .await
    }

    fn cpu_scope(&self) -> CpuScope {
        CpuScope::OwnProcessWithoutClient
    }

    async fn shutdown(&self) {
        self.writers.lock().clear();
        self.counter_clients.lock().clear();
        let server = self.server.lock().take();
        drop(server);
    }
}

#[cfg(test)]
mod tests {
    use super::encode_ts;

    #[test]
    fn timestamps_are_encoded_as_the_protocol_spells_them() {
        assert_eq!(encode_ts(0), "AAAAAAAAAAA=");
        assert_eq!(encode_ts(1000), "6AMAAAAAAAA=");
    }
}
