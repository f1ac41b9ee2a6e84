//! A minimal load client of the Convex sync protocol (spec §1–4), over tokio-tungstenite.
//!
//! Why not the official `convex` crate: a load client must open thousands of connections
//! cheaply, send mutations without waiting for each other (open loop), and read every
//! `Transition` with as little work as possible, because it shares two cores with the
//! server it measures. This client does only what the workloads need: `Connect`,
//! `ModifyQuerySet` (adds), `Mutation` and `Authenticate`; it parses `Transition`s into
//! `(seq, t)` pairs without building JSON trees, and `MutationResponse`s into waiting
//! requests. The bare WebSocket floor speaks the same subset, so the floor's figures are
//! exactly this client's and loopback's own cost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conflux_common::{Error, ErrorCode, Result};
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::measure::recorder::{Recorder, SeenSet};

/// Frames waiting to be written per connection.
const OUTBOX_FRAMES: usize = 1024;
/// Longest wait for a connection to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// One live query of a connection and where its deliveries go.
struct QueryState {
    recorder: Option<Arc<Recorder>>,
    seen: SeenSet,
    has_result: bool,
}

struct Shared {
    pending: Mutex<HashMap<u32, oneshot::Sender<Result<()>>>>,
    queries: Mutex<HashMap<u32, QueryState>>,
    /// `endVersion.identity` of the latest `Transition`.
    identity: watch::Sender<u32>,
    /// `Transition`s received.
    transitions: watch::Sender<u64>,
    /// Why the connection ended, once it did.
    closed: watch::Sender<Option<String>>,
    parse_errors: AtomicU64,
}

/// One sync connection.
pub struct SyncClient {
    outbox: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    next_request: AtomicU32,
    next_query: AtomicU32,
    query_set_version: tokio::sync::Mutex<u32>,
    identity_version: tokio::sync::Mutex<u32>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SyncClient {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Deserialize)]
struct Version {
    #[serde(default)]
    identity: u32,
}

#[derive(Deserialize)]
struct Doc {
    seq: Option<f64>,
    t: Option<f64>,
}

#[derive(Deserialize)]
struct Modification {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "queryId")]
    query_id: u32,
    #[serde(default)]
    value: Option<Vec<Doc>>,
    #[serde(rename = "errorMessage", default)]
    error_message: Option<String>,
}

/// Every server message in one struct of optional fields: deserialized in one streaming
/// pass, without the buffering a tagged enum needs.
#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "endVersion", default)]
    end_version: Option<Version>,
    #[serde(default)]
    modifications: Option<Vec<Modification>>,
    #[serde(rename = "requestId", default)]
    request_id: Option<u32>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    result: Option<Json>,
    #[serde(default)]
    error: Option<String>,
}

impl SyncClient {
    /// Connect to `url` (`ws://127.0.0.1:port/api/sync`) and send `Connect`.
    pub async fn connect(url: &str) -> Result<SyncClient> {
        let connecting = tokio_tungstenite::connect_async_with_config(url, None, true);
        let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorCode::RequestTimeout,
                    format!("connecting to {url} took longer than {CONNECT_TIMEOUT:?}"),
                )
            })?
            .map_err(|err| {
                Error::new(
                    ErrorCode::StorageUnavailable,
                    format!("cannot open a WebSocket to {url}: {err}"),
                )
            })?;
        let (mut sink, mut stream) = socket.split();
        let (outbox, mut outgoing) = mpsc::channel::<Message>(OUTBOX_FRAMES);
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            queries: Mutex::new(HashMap::new()),
            identity: watch::channel(0).0,
            transitions: watch::channel(0).0,
            closed: watch::channel(None).0,
            parse_errors: AtomicU64::new(0),
        });
        let writer = tokio::spawn(async move {
            while let Some(frame) = outgoing.recv().await {
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
        });
        let reader_shared = shared.clone();
        let reader = tokio::spawn(async move {
            let reason = loop {
                match stream.next().await {
                    Some(Ok(Message::Text(text))) => handle_frame(&reader_shared, text.as_str()),
                    Some(Ok(Message::Close(frame))) => {
                        break format!("closed by the server: {frame:?}");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => break format!("connection error: {err}"),
                    None => break "connection ended".to_string(),
                }
            };
            let pending: Vec<_> = reader_shared.pending.lock().drain().collect();
            for (_, reply) in pending {
                let _ = reply.send(Err(Error::new(
                    ErrorCode::StorageUnavailable,
                    reason.clone(),
                )));
            }
            reader_shared.closed.send_replace(Some(reason));
        });
        let client = SyncClient {
            outbox,
            shared,
            next_request: AtomicU32::new(0),
            next_query: AtomicU32::new(0),
            query_set_version: tokio::sync::Mutex::new(0),
            identity_version: tokio::sync::Mutex::new(0),
            tasks: vec![writer, reader],
        };
        client
            .send(json!({
                "type": "Connect",
                "sessionId": uuid::Uuid::new_v4().to_string(),
                "connectionCount": 0,
                "lastCloseReason": "InitialConnect",
                "clientTs": 0,
            }))
            .await?;
        Ok(client)
    }

    async fn send(&self, message: Json) -> Result<()> {
        self.outbox
            .send(Message::text(message.to_string()))
            .await
            .map_err(|_| Error::new(ErrorCode::StorageUnavailable, self.closed_reason()))
    }

    fn closed_reason(&self) -> String {
        self.shared
            .closed
            .borrow()
            .clone()
            .unwrap_or_else(|| "the connection is closed".to_string())
    }

    /// Subscribe to `udf_path` with each of `args`; deliveries go to `recorder`. Returns
    /// the query ids.
    pub async fn add_queries(
        &self,
        udf_path: &str,
        args: &[Json],
        recorder: Option<Arc<Recorder>>,
    ) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(args.len());
        let mut modifications = Vec::with_capacity(args.len());
        {
            let mut queries = self.shared.queries.lock();
            for arg in args {
                let id = self.next_query.fetch_add(1, Ordering::Relaxed);
                queries.insert(
                    id,
                    QueryState {
                        recorder: recorder.clone(),
                        seen: SeenSet::default(),
                        has_result: false,
                    },
                );
                ids.push(id);
                modifications.push(json!({
                    "type": "Add", "queryId": id, "udfPath": udf_path, "args": [arg],
                }));
            }
        }
        let mut version = self.query_set_version.lock().await;
        self.send(json!({
            "type": "ModifyQuerySet",
            "baseVersion": *version,
            "newVersion": *version + 1,
            "modifications": modifications,
        }))
        .await?;
        *version += 1;
        Ok(ids)
    }

    /// Send an empty `ModifyQuerySet` and wait for the `Transition` that answers it: one
    /// protocol round trip that runs no function.
    pub async fn round_trip(&self) -> Result<()> {
        let mut transitions = self.shared.transitions.subscribe();
        let seen = *transitions.borrow_and_update();
        let mut version = self.query_set_version.lock().await;
        self.send(json!({
            "type": "ModifyQuerySet", "baseVersion": *version, "newVersion": *version + 1,
            "modifications": [],
        }))
        .await?;
        *version += 1;
        drop(version);
        self.wait_watch(&mut transitions, |count| *count > seen)
            .await
    }

    /// Run mutation `udf_path` with `args`; returns once its `MutationResponse` arrived.
    pub async fn mutation(&self, udf_path: &str, args: Json) -> Result<()> {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (reply, response) = oneshot::channel();
        self.shared.pending.lock().insert(request_id, reply);
        self.send(json!({
            "type": "Mutation", "requestId": request_id, "udfPath": udf_path, "args": [args],
        }))
        .await?;
        response
            .await
            .map_err(|_| Error::new(ErrorCode::StorageUnavailable, self.closed_reason()))?
    }

    /// Send `Authenticate` with `token` and wait for the `Transition` confirming the new
    /// identity version.
    pub async fn authenticate(&self, token: &str) -> Result<()> {
        let mut identity = self.shared.identity.subscribe();
        let mut version = self.identity_version.lock().await;
        let base = *version;
        self.send(json!({
            "type": "Authenticate", "tokenType": "User", "value": token, "baseVersion": base,
        }))
        .await?;
        *version += 1;
        drop(version);
        self.wait_watch(&mut identity, |confirmed| *confirmed > base)
            .await
    }

    async fn wait_watch<T, F>(&self, receiver: &mut watch::Receiver<T>, done: F) -> Result<()>
    where
        F: Fn(&T) -> bool,
    {
        let mut closed = self.shared.closed.subscribe();
        tokio::select! {
            changed = receiver.wait_for(|value| done(value)) => {
                changed.map(|_| ()).map_err(|_| Error::new(ErrorCode::StorageUnavailable, self.closed_reason()))
            }
            _ = closed.wait_for(Option::is_some) => {
                Err(Error::new(ErrorCode::StorageUnavailable, self.closed_reason()))
            }
        }
    }

    /// Wait until the connection ends; returns why.
    pub async fn closed(&self) -> String {
        let mut closed = self.shared.closed.subscribe();
        let _ = closed.wait_for(Option::is_some).await;
        self.closed_reason()
    }

    /// Wait until every query of this connection holds a result.
    pub async fn wait_for_results(&self) -> Result<()> {
        let mut transitions = self.shared.transitions.subscribe();
        let shared = self.shared.clone();
        self.wait_watch(&mut transitions, move |_| {
            shared.queries.lock().values().all(|query| query.has_result)
        })
        .await
    }
}

fn handle_frame(shared: &Shared, text: &str) {
    let message: Incoming = match serde_json::from_str(text) {
        Ok(message) => message,
        Err(err) => {
            if shared.parse_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!("unparsable server message ({err}): {}", preview(text));
            }
            return;
        }
    };
    match message.kind.as_str() {
        "Transition" => {
            if let Some(modifications) = message.modifications {
                let mut queries = shared.queries.lock();
                for modification in modifications {
                    let Some(query) = queries.get_mut(&modification.query_id) else {
                        continue;
                    };
                    match modification.kind.as_str() {
                        "QueryUpdated" => deliver(query, modification.value.unwrap_or_default()),
                        "QueryFailed" => {
                            tracing::warn!(
                                "query {} failed: {}",
                                modification.query_id,
                                modification.error_message.unwrap_or_default()
                            );
                        }
                        _ => {}
                    }
                }
            }
            if let Some(version) = message.end_version {
                shared.identity.send_replace(version.identity);
            }
            shared.transitions.send_modify(|count| *count += 1);
        }
        "MutationResponse" => {
            let Some(request_id) = message.request_id else {
                return;
            };
            let Some(reply) = shared.pending.lock().remove(&request_id) else {
                return;
            };
            let outcome = if message.success == Some(true) {
                Ok(())
            } else {
                let text = message
                    .result
                    .map(|result| result.to_string())
                    .unwrap_or_else(|| "no error message".to_string());
                Err(Error::new(
                    ErrorCode::UserError,
                    format!("mutation failed: {text}"),
                ))
            };
            let _ = reply.send(outcome);
        }
        "AuthError" | "FatalError" => {
            let error = message.error.unwrap_or_default();
            tracing::warn!("{}: {error}", message.kind);
            shared
                .closed
                .send_replace(Some(format!("{}: {error}", message.kind)));
        }
        _ => {}
    }
}

fn deliver(query: &mut QueryState, docs: Vec<Doc>) {
    let first = !query.has_result;
    query.has_result = true;
    for doc in docs {
        let (Some(seq), Some(time)) = (doc.seq, doc.t) else {
            continue;
        };
        let seq = seq as u64;
        if query.seen.insert(seq) && !first {
            if let Some(recorder) = &query.recorder {
                recorder.delivered(seq, time);
            }
        }
    }
    if first {
        if let Some(recorder) = &query.recorder {
            recorder.mark_ready();
        }
    }
}

fn preview(text: &str) -> String {
    text.chars().take(200).collect()
}
