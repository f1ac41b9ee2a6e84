//! Shared pieces of the sync integration tests: a small chat app, a token validator with
//! sign-in sessions, a real server on 127.0.0.1 port 0 over a sled database in a temporary
//! directory, and a raw WebSocket client for frames the official clients never send.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use conflux_common::{Error, ErrorCode, Identity, SessionEnded, TokenValidator, UserIdentity};
use conflux_db::{Database, Schema, TableDef};
use conflux_functions::runner::{
    Caller, RunnerOptions, SESSION_REQUESTS_INDEX, SESSION_REQUESTS_TABLE,
};
use conflux_functions::{v, FunctionRunner, Object, Registry, Value};
use conflux_http::{ActionRunner, HttpRouter, RunningServer, ServerConfig, SiteRoutes};
use conflux_sync::{sync_routes, SyncState};
use conflux_values::validator::Validator;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value as Json};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, Notify};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Hooks into the app's functions, for tests that need to know when something runs.
#[derive(Default)]
pub struct AppProbe {
    /// Raised when `messages:slowSend` starts running.
    pub slow_send_started: Notify,
    /// How many times `messages:slowSend`'s handler ran (a resend that is recognised as a
    /// repeat does not run it).
    pub slow_send_runs: AtomicUsize,
}

fn no_args() -> Validator {
    v::object(Vec::<(String, Validator)>::new())
}

fn string_arg(args: &Object, name: &str) -> conflux_common::Result<String> {
    args.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            Error::new(
                ErrorCode::ArgumentValidation,
                format!("`{name}` is required"),
            )
        })
}

fn author(identity: &Identity) -> Value {
    match identity.user() {
        Some(user) => Value::String(user.subject.clone()),
        None => Value::String("anonymous".into()),
    }
}

fn insert_message(
    ctx: &mut conflux_functions::MutationCtx<'_>,
    body: String,
) -> conflux_common::Result<Value> {
    let mut doc = Object::new();
    doc.insert("body".into(), Value::String(body))?;
    doc.insert("author".into(), author(ctx.auth()))?;
    let id = ctx.db().insert("messages", doc)?;
    Ok(Value::String(id.to_string()))
}

/// The chat app of the tests:
///
/// - `messages:list` → every message `{body, author}`, oldest first;
/// - `messages:count` → how many messages there are;
/// - `messages:hasAny` → whether there is a message (stays `true` after the first);
/// - `messages:bulky {padding}` → `{count, padding: "xxx…"}` (a large result);
/// - `messages:send {body}` → inserts a message by the caller, returns its id;
/// - `messages:slowSend {body}` → the same after 400 ms;
/// - `messages:fail {}` → throws `ConvexError({code: 42})`;
/// - `identity:whoami` → the caller's subject, or `null`;
/// - `actions:shout {text}` → the text in capitals, after sending it as a message;
/// - `actions:sleep {ms}` → waits, returns `"slept"`.
pub fn registry(probe: Arc<AppProbe>) -> Registry {
    let mut registry = Registry::new();
    registry
        .query("messages:list", no_args(), |ctx, _args| {
            let docs = ctx.db().query("messages")?.collect()?;
            let mut out = Vec::with_capacity(docs.len());
            for doc in docs {
                let mut item = Object::new();
                item.insert("body".into(), doc.field("body").unwrap_or(Value::Null))?;
                item.insert("author".into(), doc.field("author").unwrap_or(Value::Null))?;
                out.push(Value::Object(item));
            }
            Ok(Value::Array(out))
        })
        .expect("register messages:list");
    registry
        .query("messages:count", no_args(), |ctx, _args| {
            let n = ctx.db().query("messages")?.collect()?.len();
            Ok(Value::Float64(n as f64))
        })
        .expect("register messages:count");
    registry
        .query("messages:hasAny", no_args(), |ctx, _args| {
            // Reads every message (so every insert invalidates it) but answers the same
            // after the first one.
            let any = !ctx.db().query("messages")?.collect()?.is_empty();
            Ok(Value::Boolean(any))
        })
        .expect("register messages:hasAny");
    registry
        .query(
            "messages:bulky",
            v::object([("padding", v::float64())]),
            |ctx, args| {
                let n = ctx.db().query("messages")?.collect()?.len();
                let padding = args.get("padding").and_then(Value::as_f64).unwrap_or(0.0) as usize;
                let mut out = Object::new();
                out.insert("count".into(), Value::Float64(n as f64))?;
                out.insert("padding".into(), Value::String("x".repeat(padding)))?;
                Ok(Value::Object(out))
            },
        )
        .expect("register messages:bulky");
    registry
        .mutation(
            "messages:send",
            v::object([("body", v::string())]),
            |ctx, args| {
                let body = string_arg(&args, "body")?;
                insert_message(ctx, body)
            },
        )
        .expect("register messages:send");
    let slow = probe.clone();
    registry
        .mutation(
            "messages:slowSend",
            v::object([("body", v::string())]),
            move |ctx, args| {
                slow.slow_send_runs.fetch_add(1, Ordering::SeqCst);
                slow.slow_send_started.notify_waiters();
                std::thread::sleep(Duration::from_millis(400));
                let body = string_arg(&args, "body")?;
                insert_message(ctx, body)
            },
        )
        .expect("register messages:slowSend");
    registry
        .mutation("messages:fail", no_args(), |_ctx, _args| {
            Err(Error::user(
                "this message cannot be sent",
                json!({"code": 42}),
            ))
        })
        .expect("register messages:fail");
    registry
        .query("identity:whoami", no_args(), |ctx, _args| {
            Ok(match ctx.auth().user() {
                Some(user) => Value::String(user.subject.clone()),
                None => Value::Null,
            })
        })
        .expect("register identity:whoami");
    registry
        .action(
            "actions:shout",
            v::object([("text", v::string())]),
            |ctx, args| async move {
                let text = string_arg(&args, "text")?;
                let mut send = Object::new();
                send.insert("body".into(), Value::String(text.clone()))?;
                ctx.run_mutation("messages:send", send).await?;
                ctx.log(format!("shouting {text}"));
                Ok(Value::String(text.to_uppercase()))
            },
        )
        .expect("register actions:shout");
    registry
        .action(
            "actions:sleep",
            v::object([("ms", v::float64())]),
            |_ctx, args| async move {
                let ms = args.get("ms").and_then(Value::as_f64).unwrap_or(0.0);
                tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                Ok(Value::String("slept".into()))
            },
        )
        .expect("register actions:sleep");
    registry
}

/// The schema: the app's `messages` and the table that makes mutations exactly-once.
pub fn schema() -> Schema {
    Schema::new().table(TableDef::new("messages")).table(
        TableDef::system(SESSION_REQUESTS_TABLE)
            .index(SESSION_REQUESTS_INDEX, &["sessionId", "requestId"]),
    )
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Tokens of the form `user:<name>:<session>[:<exp secs>[:<anything>]]`: the user `name`
/// in sign-in session `session`, expiring at `exp` if given. The optional last part makes
/// a different token string for the same identity (a refreshed token). Every other
/// token, and tokens of ended sessions, are refused.
pub struct TestTokens {
    ended: Mutex<HashSet<String>>,
    events: broadcast::Sender<SessionEnded>,
    /// How many tokens were validated.
    pub validations: AtomicUsize,
}

impl Default for TestTokens {
    fn default() -> Self {
        TestTokens {
            ended: Mutex::new(HashSet::new()),
            events: broadcast::channel(64).0,
            validations: AtomicUsize::new(0),
        }
    }
}

impl TestTokens {
    /// End sign-in session `session`: its tokens are refused from now on, and every
    /// listener hears about it.
    pub fn end_session(&self, session: &str) {
        self.ended.lock().insert(session.to_string());
        let _ = self.events.send(SessionEnded {
            session_id: session.to_string(),
        });
    }
}

/// The issuer of the test tokens.
pub const ISSUER: &str = "https://tokens.test";

#[async_trait]
impl TokenValidator for TestTokens {
    async fn validate(&self, token: &str) -> conflux_common::Result<UserIdentity> {
        self.validations.fetch_add(1, Ordering::SeqCst);
        let parts: Vec<&str> = token.split(':').collect();
        let (name, session, exp) = match parts.as_slice() {
            ["user", name, session] => (*name, *session, None),
            ["user", name, session, exp, ..] => {
                let exp = exp.parse::<u64>().map_err(|_| {
                    Error::new(
                        ErrorCode::TokenMalformed,
                        "the test token's exp is not a number",
                    )
                })?;
                (*name, *session, Some(exp))
            }
            _ => {
                return Err(Error::new(
                    ErrorCode::TokenSignatureInvalid,
                    "Could not verify the token's signature",
                ))
            }
        };
        if self.ended.lock().contains(session) {
            return Err(Error::new(
                ErrorCode::SessionEnded,
                "The sign-in session of this token has ended",
            ));
        }
        if exp.is_some_and(|exp| exp <= now_secs()) {
            return Err(Error::new(
                ErrorCode::TokenExpired,
                "Could not validate token: Token expired",
            ));
        }
        Ok(UserIdentity {
            token_identifier: format!("{ISSUER}|{name}"),
            subject: name.to_string(),
            issuer: ISSUER.to_string(),
            attributes: serde_json::Map::new(),
            expires_at_secs: exp,
            session_id: Some(session.to_string()),
        })
    }

    fn session_events(&self) -> Option<broadcast::Receiver<SessionEnded>> {
        Some(self.events.subscribe())
    }
}

/// HTTP actions are not under test here; the site origin gets a runner that delegates to
/// the function runner so that the server is assembled as in production.
struct SiteActions(FunctionRunner);

fn json_args(args: Json) -> conflux_common::Result<Object> {
    match Value::from_convex_json(&args)? {
        Value::Object(object) => Ok(object),
        _ => Err(Error::bad_request("arguments must be an object")),
    }
}

#[async_trait]
impl ActionRunner for SiteActions {
    async fn run_query(
        &self,
        caller: &conflux_http::Caller,
        path: &str,
        args: Json,
    ) -> conflux_common::Result<Json> {
        let identity = caller.identity()?.clone();
        let outcome = self
            .0
            .run_query(path, json_args(args)?, identity, Caller::Internal, None)
            .await;
        outcome.result.map(|value| value.to_convex_json())
    }

    async fn run_mutation(
        &self,
        caller: &conflux_http::Caller,
        path: &str,
        args: Json,
    ) -> conflux_common::Result<Json> {
        let identity = caller.identity()?.clone();
        let outcome = self
            .0
            .run_mutation(path, json_args(args)?, identity, Caller::Internal, None)
            .await;
        outcome.result.map(|value| value.to_convex_json())
    }

    async fn run_action(
        &self,
        caller: &conflux_http::Caller,
        path: &str,
        args: Json,
    ) -> conflux_common::Result<Json> {
        let identity = caller.identity()?.clone();
        let outcome = self
            .0
            .run_action(path, json_args(args)?, identity, Caller::Internal)
            .await;
        outcome.result.map(|value| value.to_convex_json())
    }
}

/// A deployment on 127.0.0.1 with free ports and its database on disk.
pub struct TestServer {
    /// The sync endpoint's state (metrics, the subscription manager, disconnects).
    pub sync: SyncState,
    /// The validator of the test tokens.
    pub tokens: Arc<TestTokens>,
    /// Hooks into the app's functions.
    pub probe: Arc<AppProbe>,
    server: RunningServer,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A deployment with the default limits.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A deployment whose sync state is adjusted by `configure` before serving.
    pub async fn start_with(configure: impl FnOnce(&mut SyncState)) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = Database::open_sled(dir.path(), schema()).expect("the database opens");
        let probe = Arc::new(AppProbe::default());
        let runner = FunctionRunner::new(db, registry(probe.clone()), RunnerOptions::default());
        let tokens = Arc::new(TestTokens::default());
        let validator: Arc<dyn TokenValidator> = tokens.clone();
        let mut sync = SyncState::new(runner.clone(), Some(validator.clone()), true);
        configure(&mut sync);
        let site = SiteRoutes {
            router: Arc::new(HttpRouter::empty()),
            runner: Arc::new(SiteActions(runner)),
            token_validator: Some(validator),
        };
        let config = ServerConfig {
            client_port: 0,
            site_port: 0,
            dev_mode: true,
            ..ServerConfig::default()
        };
        let server = conflux_http::bind(config)
            .await
            .expect("the listeners bind to free ports")
            .serve(sync_routes(sync.clone()), site);
        TestServer {
            sync,
            tokens,
            probe,
            server,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:<port>`, the deployment URL clients are given.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.client_addr())
    }

    /// `ws://127.0.0.1:<port><path>`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.server.client_addr())
    }

    /// Run a mutation in process as `identity` (not through a socket).
    pub async fn mutate(&self, path: &str, args: Json) -> Value {
        let outcome = self
            .sync
            .runner
            .run_mutation(
                path,
                json_args(args).expect("object arguments"),
                Identity::Anonymous,
                Caller::Internal,
                None,
            )
            .await;
        outcome.result.expect("the mutation succeeds")
    }

    /// Query executions so far, as counted by the shared subscriptions.
    pub fn executions(&self) -> u64 {
        self.sync.subscriptions.metrics().executions
    }
}

/// Decode a sync timestamp (base64 of 8 little-endian bytes).
pub fn decode_ts(text: &str) -> u64 {
    conflux_sync::protocol::Ts::decode(text)
        .expect("a valid timestamp")
        .get()
}

/// A client that speaks the sync protocol by hand.
pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The session id sent in `Connect`.
    pub session: String,
    /// Application `Ping`s received so far (skipped by the `next_*` helpers).
    pub pings: usize,
    /// WebSocket ping frames received so far.
    pub ws_pings: usize,
}

/// What ended a connection, as a raw client saw it.
#[derive(Debug, PartialEq)]
pub enum Ending {
    /// A close frame, with its code and reason if it had one.
    Closed(Option<(u16, String)>),
    /// The TCP connection ended without a close frame.
    Dropped,
}

impl RawClient {
    /// Open a socket on the npm path without sending anything.
    pub async fn open(server: &TestServer) -> RawClient {
        RawClient::open_path(server, "/api/1.48.0/sync").await
    }

    /// Open a socket on `path`.
    pub async fn open_path(server: &TestServer, path: &str) -> RawClient {
        let (ws, _response) = tokio_tungstenite::connect_async(server.ws_url(path))
            .await
            .expect("the WebSocket upgrade succeeds");
        RawClient {
            ws,
            session: uuid::Uuid::new_v4().to_string(),
            pings: 0,
            ws_pings: 0,
        }
    }

    /// Open a socket and send `Connect` with a fresh session.
    pub async fn connect(server: &TestServer) -> RawClient {
        let mut client = RawClient::open(server).await;
        client.send_connect().await;
        client
    }

    /// Send `Connect` with this client's session id.
    pub async fn send_connect(&mut self) {
        let connect = json!({
            "type": "Connect",
            "sessionId": self.session,
            "connectionCount": 0,
            "lastCloseReason": "InitialConnect",
            "clientTs": 1_700_000_000_000i64,
        });
        self.send(connect).await;
    }

    /// Send a JSON message.
    pub async fn send(&mut self, message: Json) {
        self.send_text(message.to_string()).await;
    }

    /// Send a text frame as is.
    pub async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("the frame is sent");
    }

    /// Send a raw frame.
    pub async fn send_frame(&mut self, message: Message) {
        self.ws.send(message).await.expect("the frame is sent");
    }

    /// `ModifyQuerySet` from `base` to `base + 1` adding `(queryId, udfPath, args)`.
    pub async fn subscribe(&mut self, base: u32, queries: &[(u32, &str, Json)]) {
        let modifications: Vec<Json> = queries
            .iter()
            .map(|(id, path, args)| {
                json!({"type": "Add", "queryId": id, "udfPath": path, "args": [args]})
            })
            .collect();
        self.send(json!({
            "type": "ModifyQuerySet",
            "baseVersion": base,
            "newVersion": base + 1,
            "modifications": modifications,
        }))
        .await;
    }

    /// `Authenticate` with a user token.
    pub async fn authenticate(&mut self, base: u32, token: &str) {
        self.send(json!({
            "type": "Authenticate",
            "tokenType": "User",
            "value": token,
            "baseVersion": base,
        }))
        .await;
    }

    /// `Mutation`.
    pub async fn mutation(&mut self, request_id: u32, path: &str, args: Json) {
        self.send(json!({
            "type": "Mutation",
            "requestId": request_id,
            "udfPath": path,
            "args": [args],
        }))
        .await;
    }

    /// `Action`.
    pub async fn action(&mut self, request_id: u32, path: &str, args: Json) {
        self.send(json!({
            "type": "Action",
            "requestId": request_id,
            "udfPath": path,
            "args": [args],
        }))
        .await;
    }

    /// The next server message (application `Ping`s and WebSocket pings are counted and
    /// skipped). Panics on a close or after `PATIENCE`.
    pub async fn next(&mut self) -> Json {
        self.next_within(PATIENCE)
            .await
            .unwrap_or_else(|| panic!("no server message within {PATIENCE:?}"))
    }

    /// The next server message within `wait`, or `None` if none came.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Json> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(frame) => frame,
            };
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let json: Json = serde_json::from_str(&text).expect("server messages are JSON");
                    if json["type"] == "Ping" {
                        self.pings += 1;
                        continue;
                    }
                    return Some(json);
                }
                Some(Ok(Message::Ping(_))) => {
                    self.ws_pings += 1;
                    continue;
                }
                Some(Ok(Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(other)) => panic!("expected a server message, got {other:?}"),
                Some(Err(err)) => panic!("expected a server message, the socket failed: {err}"),
                None => panic!("expected a server message, the socket ended"),
            }
        }
    }

    /// The next message of type `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Json {
        loop {
            let message = self.next().await;
            if message["type"] == kind {
                return message;
            }
        }
    }

    /// Read until the connection ends; returns how it ended. Server messages on the way
    /// are collected in `seen`.
    pub async fn ending(&mut self, seen: &mut Vec<Json>) -> Ending {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("the server did not close within {PATIENCE:?}"));
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let json: Json = serde_json::from_str(&text).expect("server messages are JSON");
                    if json["type"] != "Ping" {
                        seen.push(json);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ending::Closed(
                        frame.map(|CloseFrame { code, reason }| {
                            (u16::from(code), reason.to_string())
                        }),
                    )
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ending::Dropped,
            }
        }
    }
}
