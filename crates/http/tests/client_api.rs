//! The client API origin as its clients use it: CORS for browser apps on another origin,
//! WebSocket upgrades passing through the server's request pipeline, and the function HTTP
//! API as the npm `ConvexHttpClient` and plain HTTP callers (`curl`, other languages) use it
//! against a real deployment (sled on disk, real functions, a token validator).

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use bytes::Bytes;
use common::{base, serve, test_config, text, CounterRunner};
use conflux_common::{Error, ErrorCode, Identity, TokenValidator, UserIdentity};
use conflux_db::{Database, Schema, TableDef};
use conflux_functions::registry::Handler;
use conflux_functions::runner::RunnerOptions;
use conflux_functions::{v, FunctionRunner, Object, Registry, Value, Visibility};
use conflux_http::{
    client_api_routes, handler, ClientApiState, FunctionRunnerActions, Route, RouteMethod,
    RouterBuilder, RunningServer, ShutdownOutcome, SiteRoutes,
};
use conflux_testkit::node::{event_name, NpmClients};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};

fn hello_router() -> conflux_http::HttpRouter {
    let mut builder = RouterBuilder::new();
    builder.route(Route::new(RouteMethod::Get, "/hello", text("hello")));
    builder.build().expect("valid routes")
}

#[tokio::test]
async fn a_browser_app_on_another_origin_passes_the_cors_preflight() {
    let server = serve(hello_router(), test_config(false)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/echo", base(server.client_addr()));
    let preflight = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization,convex-client",
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(preflight.status().as_u16(), 200);
    let header = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some("http://localhost:5173")
    );
    assert_eq!(
        header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(header("access-control-max-age").as_deref(), Some("86400"));
    assert_eq!(
        header("access-control-allow-headers").as_deref(),
        Some("content-type,authorization,convex-client")
    );
    assert_eq!(
        header("access-control-allow-methods").as_deref(),
        Some("POST")
    );

    let response = http
        .post(&url)
        .header("origin", "http://localhost:5173")
        .body("hi")
        .send()
        .await
        .expect("answered");
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://localhost:5173")
    );
    assert_eq!(response.text().await.expect("body"), "hi");

    // HTTP actions answer CORS themselves: the site gets no automatic CORS headers.
    let response = http
        .get(format!("{}/hello", base(server.site_addr())))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .expect("answered");
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    server.shutdown().await;
}

async fn echo_once(mut socket: WebSocket) {
    if let Some(Ok(Message::Text(text))) = socket.recv().await {
        // The peer may already be gone; nothing to do then.
        let _ = socket.send(Message::Text(text)).await;
    }
}

#[tokio::test]
async fn a_websocket_on_the_client_api_is_upgraded_through_the_server() {
    let api = axum::Router::new().route(
        "/api/sync",
        axum::routing::get(
            |upgrade: WebSocketUpgrade| async move { upgrade.on_upgrade(echo_once) },
        ),
    );
    let site = SiteRoutes {
        router: Arc::new(hello_router()),
        runner: Arc::new(CounterRunner::default()),
        token_validator: None,
    };
    let server = conflux_http::start(test_config(false), api, site)
        .await
        .expect("the server starts");
    // A doubled slash, as some clients build it from a base URL ending in `/`.
    let url = format!("ws://{}//api/sync", server.client_addr());
    let (mut socket, response) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("the upgrade succeeds");
    assert_eq!(response.status().as_u16(), 101);
    socket
        .send(tokio_tungstenite::tungstenite::Message::text("ping"))
        .await
        .expect("send");
    let echoed = socket.next().await.expect("a reply").expect("a frame");
    assert_eq!(echoed.into_text().expect("text").as_str(), "ping");
    assert_eq!(server.shutdown().await, ShutdownOutcome::Graceful);
}

// ---------------------------------------------------------------------------------------
// The function HTTP API against a real deployment.
// ---------------------------------------------------------------------------------------

const NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// 5, 2, 3 and 10 as Convex JSON int64s (8 little-endian bytes in base64).
const INT64_5: &str = "BQAAAAAAAAA=";
const INT64_2: &str = "AgAAAAAAAAA=";
const INT64_10: &str = "CgAAAAAAAAA=";

/// Holds the query `test:gated` until the test opens it, so that a test can commit while
/// a batch of queries is half-way through.
#[derive(Default)]
struct Gate {
    /// (a query arrived at the gate, the gate is open)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    /// Called by the query (on a blocking thread): announce the arrival, wait to be let on.
    fn pass(&self) -> conflux_common::Result<()> {
        fn poisoned<T>(_: T) -> Error {
            Error::internal("the test gate's lock is poisoned")
        }
        let mut state = self.state.lock().map_err(poisoned)?;
        state.0 = true;
        self.changed.notify_all();
        let (_state, waited) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs(10), |state| !state.1)
            .map_err(poisoned)?;
        if waited.timed_out() {
            return Err(Error::internal("the test never opened the gate"));
        }
        Ok(())
    }

    async fn wait_for_arrival(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.state.lock().expect("gate lock").0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no query reached the gate within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn open(&self) {
        self.state.lock().expect("gate lock").1 = true;
        self.changed.notify_all();
    }
}

/// Accepts `good-token` as Ada; `expired-token` is expired (with a detail for dev mode);
/// every other token has a bad signature.
struct TestTokens;

#[async_trait]
impl TokenValidator for TestTokens {
    async fn validate(&self, token: &str) -> conflux_common::Result<UserIdentity> {
        match token {
            "good-token" => {
                let mut attributes = serde_json::Map::new();
                attributes.insert("name".into(), json!("Ada"));
                Ok(UserIdentity {
                    token_identifier: "https://issuer.test|user-1".into(),
                    subject: "user-1".into(),
                    issuer: "https://issuer.test".into(),
                    attributes,
                    expires_at_secs: None,
                    session_id: None,
                })
            }
            "expired-token" => Err(Error::new(
                ErrorCode::TokenExpired,
                "Could not validate token: Token expired",
            )
            .with_detail("expired 30 seconds ago")),
            _ => Err(Error::new(
                ErrorCode::TokenSignatureInvalid,
                "Could not verify the token's signature",
            )
            .with_detail("kid `k9` is not in the provider's JWKS")),
        }
    }
}

fn no_args() -> conflux_values::validator::Validator {
    v::object(Vec::<(&str, conflux_values::validator::FieldValidator)>::new())
}

fn message_count(ctx: &mut conflux_functions::QueryCtx<'_>) -> conflux_common::Result<Value> {
    let messages = ctx.db().query("messages")?.collect()?;
    Ok(Value::Float64(messages.len() as f64))
}

/// The app under test: a message board.
fn registry(gate: Arc<Gate>) -> Registry {
    let mut registry = Registry::new();
    registry
        .query("messages:list", no_args(), |ctx, _args| {
            let messages = ctx.db().query("messages")?.collect()?;
            Ok(Value::Array(
                messages.iter().map(|doc| doc.to_value()).collect(),
            ))
        })
        .expect("register messages:list");
    registry
        .query("messages:count", no_args(), |ctx, _args| message_count(ctx))
        .expect("register messages:count");
    registry
        .query("test:gated", no_args(), move |ctx, _args| {
            gate.pass()?;
            message_count(ctx)
        })
        .expect("register test:gated");
    registry
        .register(
            "messages:internalCount",
            Visibility::Internal,
            no_args(),
            Handler::Query(Arc::new(
                |ctx: &mut conflux_functions::QueryCtx<'_>, _args: Object| message_count(ctx),
            )),
        )
        .expect("register messages:internalCount");
    registry
        .mutation(
            "messages:send",
            v::object([
                ("body", v::string().into()),
                ("count", v::optional(v::int64())),
                ("payload", v::optional(v::bytes())),
            ]),
            |ctx, args| {
                let body = args.get("body").and_then(Value::as_str).unwrap_or("");
                ctx.log(format!("'sent {body}'"));
                let id = ctx.db().insert("messages", args)?;
                Ok(Value::String(id.to_string()))
            },
        )
        .expect("register messages:send");
    registry
        .mutation(
            "messages:reject",
            v::object([("body", v::string())]),
            |_ctx, _args| {
                Err(Error::user(
                    "bad body",
                    json!({"code": "BadBody", "limit": {"$integer": INT64_10}}),
                ))
            },
        )
        .expect("register messages:reject");
    registry
        .action(
            "messages:sendAndList",
            v::object([("body", v::string())]),
            |ctx: conflux_functions::ActionCtx, args: Object| async move {
                let id = ctx.run_mutation("messages:send", args).await?;
                let list = ctx.run_query("messages:list", Object::new()).await?;
                let total = list.as_array().map_or(0, <[Value]>::len);
                let mut result = Object::new();
                result.insert("id".into(), id)?;
                result.insert("total".into(), Value::Int64(total as i64))?;
                Ok(Value::Object(result))
            },
        )
        .expect("register messages:sendAndList");
    registry
        .query("auth:whoami", no_args(), |ctx, _args| match ctx.auth() {
            Identity::Anonymous => Ok(Value::Null),
            Identity::User(user) => Value::from_convex_json(&user.to_json()),
        })
        .expect("register auth:whoami");
    registry
}

/// `POST /hooks/send` on the site: an HTTP action that stores its body as a message and
/// answers with the new id, the count (an internal query) and who called.
fn hooks_router() -> conflux_http::HttpRouter {
    let mut builder = RouterBuilder::new();
    builder.route(Route::new(
        RouteMethod::Post,
        "/hooks/send",
        handler(|req, ctx| async move {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            let id = ctx
                .run_mutation("messages:send", json!({ "body": body }))
                .await?;
            let count = ctx.run_query("messages:internalCount", json!({})).await?;
            let who = ctx.run_query("auth:whoami", Json::Null).await?;
            let answer = json!({"id": id, "count": count, "who": who});
            Ok(http::Response::new(Bytes::from(answer.to_string())))
        }),
    ));
    builder.build().expect("valid routes")
}

/// A deployment on 127.0.0.1 with its database on disk.
struct Deployment {
    server: RunningServer,
    gate: Arc<Gate>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A response of the function API: status and JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Json,
}

impl Answer {
    fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
}

impl Deployment {
    async fn start(dev_mode: bool) -> Deployment {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let schema = Schema::new().table(TableDef::new("messages"));
        let db = Database::open_sled(dir.path(), schema).expect("the database opens");
        let gate = Arc::new(Gate::default());
        let options = RunnerOptions {
            dev_mode,
            time_limit: Duration::from_secs(30),
            ..RunnerOptions::default()
        };
        let runner = FunctionRunner::new(db, registry(gate.clone()), options);
        let validator: Arc<dyn TokenValidator> = Arc::new(TestTokens);
        let api = client_api_routes(ClientApiState {
            runner: runner.clone(),
            token_validator: Some(validator.clone()),
            dev_mode,
        });
        let site = SiteRoutes {
            router: Arc::new(hooks_router()),
            runner: Arc::new(FunctionRunnerActions::new(runner)),
            token_validator: Some(validator),
        };
        let server = conflux_http::start(test_config(dev_mode), api, site)
            .await
            .expect("the deployment starts on free ports");
        Deployment {
            server,
            gate,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        base(self.server.client_addr())
    }

    async fn read(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let text = response.text().await.expect("a response body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("status {status}: body {text:?} is not JSON: {err}"));
        Answer { status, body }
    }

    async fn post(&self, path: &str, body: Json) -> Answer {
        self.post_with(path, body, None).await
    }

    async fn post_with(&self, path: &str, body: Json, authorization: Option<&str>) -> Answer {
        let mut request = self.http.post(format!("{}{path}", self.url())).json(&body);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        Deployment::read(request.send().await.expect("the server answers")).await
    }

    async fn post_raw(&self, path: &str, content_type: &str, body: &'static str) -> Answer {
        let response = self
            .http
            .post(format!("{}{path}", self.url()))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("the server answers");
        Deployment::read(response).await
    }

    async fn get(&self, path_and_query: &str) -> Answer {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.url()))
            .send()
            .await
            .expect("the server answers");
        Deployment::read(response).await
    }

    /// Send a message through `POST /api/mutation`; returns its id.
    async fn send(&self, body: &str) -> String {
        let answer = self
            .post(
                "/api/mutation",
                json!({"path": "messages:send", "args": {"body": body}, "format": "json"}),
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["value"]
            .as_str()
            .expect("the id of the new message")
            .to_string()
    }

    async fn count(&self) -> f64 {
        let answer = self
            .post("/api/query", json!({"path": "messages:count", "args": {}}))
            .await;
        answer.body["value"].as_f64().expect("a count")
    }

    async fn shutdown(self) {
        assert_eq!(self.server.shutdown().await, ShutdownOutcome::Graceful);
    }
}

fn step<'a>(events: &'a [Json], name: &str) -> &'a Json {
    events
        .iter()
        .find(|event| event["step"] == name && event_name(event) != "log")
        .unwrap_or_else(|| panic!("no result for step {name} in {events:#?}"))
}

fn value_of<'a>(events: &'a [Json], name: &str) -> &'a Json {
    let event = step(events, name);
    assert_eq!(event_name(event), "result", "step {name}: {event}");
    &event["value"]
}

fn failure_of<'a>(events: &'a [Json], name: &str) -> &'a Json {
    let event = step(events, name);
    assert_eq!(event_name(event), "failure", "step {name}: {event}");
    event
}

#[tokio::test]
async fn the_npm_http_client_calls_queries_mutations_and_actions() {
    let Some(npm) = NpmClients::locate_or_skip() else {
        return;
    };
    let deployment = Deployment::start(true).await;
    let events = npm
        .run("http_client", &[&deployment.url()], NODE_TIMEOUT)
        .await
        .expect("the npm scenario runs to its end");

    assert_eq!(value_of(&events, "emptyList"), &json!([]));

    let id = value_of(&events, "send")
        .as_str()
        .expect("an id")
        .to_string();
    let sent_log = events
        .iter()
        .find(|event| event_name(event) == "log" && event["step"] == "send")
        .expect("the client printed the mutation's log line");
    let line = sent_log["line"].as_str().unwrap_or("");
    assert!(
        line.contains("[CONVEX M(messages:send)] [LOG]") && line.contains("'sent hello'"),
        "{line}"
    );

    let listed = value_of(&events, "listAfterSend");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let message = &listed[0];
    assert_eq!(message["_id"], json!(id));
    assert_eq!(message["body"], "hello");
    assert_eq!(
        message["count"],
        json!({ "$integer": INT64_5 }),
        "a bigint stays a bigint"
    );
    assert_eq!(
        message["payload"],
        json!({ "$bytes": "AQID" }),
        "bytes stay bytes"
    );
    assert!(message["_creationTime"].is_f64());

    let action = value_of(&events, "action");
    assert_eq!(action["total"], json!({ "$integer": INT64_2 }));
    assert!(action["id"].is_string(), "{action}");

    let rejected = failure_of(&events, "convexError");
    assert_eq!(rejected["convexError"], true, "{rejected}");
    assert_eq!(
        rejected["data"],
        json!({"code": "BadBody", "limit": {"$integer": INT64_10}})
    );
    assert!(
        rejected["message"]
            .as_str()
            .unwrap_or("")
            .contains("bad body"),
        "{rejected}"
    );

    let invalid = failure_of(&events, "argumentError");
    assert_eq!(invalid["convexError"], false);
    assert!(
        invalid["message"]
            .as_str()
            .unwrap_or("")
            .contains("ArgumentValidationError for `messages:send`"),
        "{invalid}"
    );

    let missing = failure_of(&events, "missingFunction");
    assert!(
        missing["message"]
            .as_str()
            .unwrap_or("")
            .contains("Could not find public function for 'messages:nope'"),
        "{missing}"
    );

    // consistentQuery goes through /api/query_ts and /api/query_at_ts.
    let consistent = value_of(&events, "consistentQuery");
    assert_eq!(consistent.as_array().map(Vec::len), Some(2), "{consistent}");

    assert_eq!(value_of(&events, "anonymous"), &Json::Null);
    let signed_in = value_of(&events, "signedIn");
    assert_eq!(signed_in["tokenIdentifier"], "https://issuer.test|user-1");
    assert_eq!(signed_in["name"], "Ada");
    let forged = failure_of(&events, "rejectedToken");
    let text = forged["message"].as_str().unwrap_or("");
    assert!(
        text.contains("\"code\":\"TokenSignatureInvalid\"")
            && text.contains("Could not verify the token's signature"),
        "npm shows the 401 body: {text}"
    );

    assert_eq!(value_of(&events, "fetchQuerySignedIn")["subject"], "user-1");
    let sign_in_missing = failure_of(&events, "fetchActionMissing");
    assert!(
        sign_in_missing["message"]
            .as_str()
            .unwrap_or("")
            .contains("Could not find public function for 'auth:signIn'"),
        "the sign-in library recognises a missing function: {sign_in_missing}"
    );
    deployment.shutdown().await;
}

#[tokio::test]
async fn plain_http_callers_get_clean_json_with_int64_as_strings() {
    let deployment = Deployment::start(false).await;
    let send = deployment
        .post(
            "/api/mutation",
            json!({
                "path": "messages:send",
                "args": {"body": "hi", "count": {"$integer": INT64_5}, "payload": {"$bytes": "AQID"}},
                "format": "json",
            }),
        )
        .await;
    assert_eq!(send.status, 200, "{send:?}");
    assert_eq!(send.body["status"], "success");
    assert_eq!(send.body["logLines"], json!(["[LOG] 'sent hi'"]));
    let id = send.body["value"].as_str().expect("an id").to_string();

    let clean = deployment
        .post(
            "/api/query",
            json!({"path": "messages:list", "args": {}, "format": "json"}),
        )
        .await;
    assert_eq!(clean.status, 200, "{clean:?}");
    let message = &clean.body["value"][0];
    assert_eq!(message["_id"], json!(id));
    assert_eq!(message["count"], "5", "int64 is a decimal string");
    assert_eq!(message["payload"], "AQID", "bytes are base64");
    assert!(
        clean.body.get("logLines").is_none(),
        "no logLines when the function logged nothing: {:?}",
        clean.body
    );

    // The legacy array form of args, and the `convex_clean_json` alias.
    let alias = deployment
        .post(
            "/api/query",
            json!({"path": "messages:list", "args": [{}], "format": "convex_clean_json"}),
        )
        .await;
    assert_eq!(alias.body["value"], clean.body["value"]);
    // Without a format, clean JSON is the default.
    let default = deployment
        .post("/api/query", json!({"path": "messages:list", "args": {}}))
        .await;
    assert_eq!(default.body["value"], clean.body["value"]);

    for name in ["convex_encoded_json", "convex_json"] {
        let encoded = deployment
            .post(
                "/api/query",
                json!({"path": "messages:list", "args": {}, "format": name}),
            )
            .await;
        assert_eq!(
            encoded.body["value"][0]["count"],
            json!({ "$integer": INT64_5 }),
            "{name}"
        );
        assert_eq!(
            encoded.body["value"][0]["payload"],
            json!({ "$bytes": "AQID" })
        );
    }

    // No session over HTTP: the same request twice is two messages.
    deployment.send("twice").await;
    deployment.send("twice").await;
    assert_eq!(deployment.count().await, 3.0);
    deployment.shutdown().await;
}

#[tokio::test]
async fn function_failures_are_status_error_bodies_with_status_560() {
    let deployment = Deployment::start(false).await;
    let rejected = deployment
        .post(
            "/api/mutation",
            json!({"path": "messages:reject", "args": {"body": ""}, "format": "convex_encoded_json"}),
        )
        .await;
    assert_eq!(rejected.status, 560, "{rejected:?}");
    assert_eq!(rejected.body["status"], "error");
    assert_eq!(rejected.body["errorMessage"], "bad body");
    assert_eq!(
        rejected.body["errorData"],
        json!({"code": "BadBody", "limit": {"$integer": INT64_10}})
    );
    let clean = deployment
        .post(
            "/api/mutation",
            json!({"path": "messages:reject", "args": {"body": ""}, "format": "json"}),
        )
        .await;
    assert_eq!(
        clean.body["errorData"],
        json!({"code": "BadBody", "limit": "10"}),
        "errorData follows the requested format"
    );

    for path in ["messages:nope", "messages:internalCount"] {
        let missing = deployment
            .post("/api/query", json!({"path": path, "args": {}}))
            .await;
        assert_eq!(missing.status, 560, "{missing:?}");
        assert_eq!(missing.body["status"], "error");
        let text = missing.body["errorMessage"].as_str().unwrap_or("");
        assert!(
            text.contains(&format!("Could not find public function for '{path}'")),
            "{text}"
        );
    }

    let wrong_kind = deployment
        .post(
            "/api/query",
            json!({"path": "messages:send", "args": {"body": "x"}}),
        )
        .await;
    assert_eq!(wrong_kind.status, 560);
    assert!(
        wrong_kind.body["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("but it is defined as Mutation"),
        "{wrong_kind:?}"
    );
    assert_eq!(deployment.count().await, 0.0, "nothing was written");
    deployment.shutdown().await;
}

#[tokio::test]
async fn api_run_calls_the_function_its_url_names() {
    let deployment = Deployment::start(false).await;
    let sent = deployment
        .post(
            "/api/run/messages/send",
            json!({"args": {"body": "via run"}}),
        )
        .await;
    assert_eq!(sent.status, 200, "{sent:?}");
    assert!(sent.body["value"].is_string());

    let action = deployment
        .post(
            "/api/run/messages/sendAndList",
            json!({"args": {"body": "again"}}),
        )
        .await;
    assert_eq!(
        action.body["value"]["total"], "2",
        "clean JSON by default: {action:?}"
    );
    let encoded = deployment
        .post(
            "/api/run/messages/sendAndList",
            json!({"args": {"body": "third"}, "format": "convex_encoded_json"}),
        )
        .await;
    assert_eq!(
        encoded.body["value"]["total"],
        json!({"$integer": "AwAAAAAAAAA="})
    );

    // An empty body calls the function without arguments.
    let response = deployment
        .http
        .post(format!("{}/api/run/messages/list", deployment.url()))
        .send()
        .await
        .expect("the server answers");
    let listed = Deployment::read(response).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(3));

    let hidden = deployment
        .post("/api/run/messages/internalCount", json!({"args": {}}))
        .await;
    assert_eq!(hidden.status, 560);
    assert!(hidden.body["errorMessage"]
        .as_str()
        .unwrap_or("")
        .contains("Could not find public function for 'messages:internalCount'"));

    let no_function = deployment
        .post("/api/run/messages", json!({"args": {}}))
        .await;
    assert_eq!(no_function.status, 400, "{no_function:?}");
    assert_eq!(no_function.body["code"], "BadRequest");
    assert!(
        no_function
            .message()
            .contains("call `/api/run/<module path>/<function>`"),
        "{no_function:?}"
    );
    deployment.shutdown().await;
}

#[tokio::test]
async fn a_query_batch_reads_every_query_at_one_snapshot() {
    let deployment = Arc::new(Deployment::start(false).await);
    deployment.send("before").await;

    let batch = {
        let deployment = deployment.clone();
        tokio::spawn(async move {
            deployment
                .post(
                    "/api/query_batch",
                    json!({"queries": [
                        {"path": "messages:count", "args": {}},
                        {"path": "test:gated", "args": {}},
                        {"path": "messages:count", "args": {}},
                        {"path": "messages:nope", "args": {}, "format": "json"},
                    ]}),
                )
                .await
        })
    };
    // While the batch waits at the gate, another client commits a message.
    deployment.gate.wait_for_arrival().await;
    deployment.send("during the batch").await;
    deployment.gate.open();

    let answer = batch.await.expect("the batch request completes");
    assert_eq!(answer.status, 200, "{answer:?}");
    let results = answer.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 4);
    for (index, result) in results[..3].iter().enumerate() {
        assert_eq!(
            result,
            &json!({"status": "success", "value": 1.0}),
            "query {index} of the batch saw the snapshot the batch started at"
        );
    }
    assert_eq!(results[3]["status"], "error");
    assert_eq!(deployment.count().await, 2.0, "the commit happened");
    if let Ok(deployment) = Arc::try_unwrap(deployment) {
        deployment.shutdown().await;
    }
}

#[tokio::test]
async fn query_at_ts_reads_the_snapshot_query_ts_returned() {
    let deployment = Deployment::start(false).await;
    deployment.send("first").await;
    let response = deployment
        .http
        .post(format!("{}/api/query_ts", deployment.url()))
        .send()
        .await
        .expect("the server answers");
    let ts_answer = Deployment::read(response).await;
    assert_eq!(ts_answer.status, 200);
    let ts = ts_answer.body["ts"]
        .as_str()
        .expect("ts is a decimal string")
        .to_string();
    assert!(ts.parse::<u64>().is_ok(), "{ts}");
    deployment.send("second").await;

    let then = deployment
        .post(
            "/api/query_at_ts",
            json!({"path": "messages:count", "args": {}, "ts": ts}),
        )
        .await;
    assert_eq!(then.status, 200, "{then:?}");
    assert_eq!(then.body["value"], 1.0);
    assert_eq!(deployment.count().await, 2.0);

    let future = deployment
        .post(
            "/api/query_at_ts",
            json!({"path": "messages:count", "args": {}, "ts": i64::MAX.to_string()}),
        )
        .await;
    assert_eq!(future.status, 400, "{future:?}");
    assert!(
        future.message().contains("cannot run at `ts`"),
        "{future:?}"
    );
    let number = deployment
        .post(
            "/api/query_at_ts",
            json!({"path": "messages:count", "args": {}, "ts": 12}),
        )
        .await;
    assert_eq!(number.status, 400);
    assert!(
        number.message().contains("`ts` must be a string"),
        "{number:?}"
    );
    deployment.shutdown().await;
}

#[tokio::test]
async fn get_api_query_takes_the_call_in_the_query_string() {
    let deployment = Deployment::start(false).await;
    deployment.send("hello").await;
    let listed = deployment
        .get("/api/query?path=messages:list&args=%7B%7D&format=json")
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.body["value"][0]["body"], "hello");

    let counted = deployment.get("/api/query?path=messages%3Acount").await;
    assert_eq!(counted.body["value"], 1.0, "args may be left out");

    let no_path = deployment.get("/api/query?args=%7B%7D").await;
    assert_eq!(no_path.status, 400);
    assert!(
        no_path.message().contains("no `path` parameter"),
        "{no_path:?}"
    );
    let bad_args = deployment
        .get("/api/query?path=messages:list&args={oops")
        .await;
    assert_eq!(bad_args.status, 400);
    assert!(
        bad_args
            .message()
            .contains("The `args` query parameter is not valid JSON"),
        "{bad_args:?}"
    );
    deployment.shutdown().await;
}

#[tokio::test]
async fn bad_authorization_headers_and_rejected_tokens_get_401_bodies() {
    for dev_mode in [false, true] {
        let deployment = Deployment::start(dev_mode).await;
        let whoami = json!({"path": "auth:whoami", "args": {}});

        let basic = deployment
            .post_with("/api/query", whoami.clone(), Some("Basic dXNlcjpwYXNz"))
            .await;
        assert_eq!(basic.status, 401, "{basic:?}");
        assert_eq!(basic.body["code"], "InvalidAuthHeader");
        assert!(
            basic
                .message()
                .starts_with("Header must begin with `Bearer `"),
            "{basic:?}"
        );
        assert_eq!(
            basic.message().contains("the header's scheme is `Basic`"),
            dev_mode,
            "the detail is for dev mode only: {basic:?}"
        );
        assert!(
            !basic.message().contains("dXNlcjpwYXNz"),
            "credentials are never echoed"
        );

        let expired = deployment
            .post_with("/api/query", whoami.clone(), Some("Bearer expired-token"))
            .await;
        assert_eq!(expired.status, 401, "{expired:?}");
        assert_eq!(expired.body["code"], "TokenExpired");
        let expected = if dev_mode {
            "Could not validate token: Token expired: expired 30 seconds ago"
        } else {
            "Could not validate token: Token expired"
        };
        assert_eq!(expired.message(), expected);

        // A rejected token never runs the function: nothing is written.
        let forged = deployment
            .post_with(
                "/api/mutation",
                json!({"path": "messages:send", "args": {"body": "as nobody"}}),
                Some("Bearer forged-token"),
            )
            .await;
        assert_eq!(forged.status, 401);
        assert_eq!(forged.body["code"], "TokenSignatureInvalid");
        assert_eq!(deployment.count().await, 0.0);

        let good = deployment
            .post_with("/api/query", whoami, Some("Bearer good-token"))
            .await;
        assert_eq!(good.status, 200, "{good:?}");
        assert_eq!(
            good.body["value"]["tokenIdentifier"],
            "https://issuer.test|user-1"
        );
        deployment.shutdown().await;
    }
}

#[tokio::test]
async fn malformed_requests_get_400_with_a_clear_message_and_the_server_stays_up() {
    let deployment = Deployment::start(false).await;
    let cases: Vec<(&str, &str, &'static str, &str)> = vec![
        (
            "/api/query",
            "application/json",
            "{\"path\": \"messages:list\", ",
            "The request body is not valid JSON",
        ),
        (
            "/api/mutation",
            "text/plain",
            "{\"path\": \"messages:send\", \"args\": {\"body\": \"x\"}}",
            "Content-Type is `text/plain`, but this endpoint takes JSON",
        ),
        (
            "/api/query",
            "application/json",
            "{\"path\": \"messages:list\", \"args\": {}, \"format\": \"xml\"}",
            "Unknown format `xml`. The accepted formats are `convex_encoded_json` (alias `convex_json`) or `json` (alias `convex_clean_json`).",
        ),
        (
            "/api/query",
            "application/json",
            "{\"path\": \"messages:list\", \"args\": [{}, {}]}",
            "must hold exactly one object of named arguments",
        ),
        (
            "/api/query",
            "application/json",
            "{\"path\": \"messages:list\", \"args\": \"all\"}",
            "`args` must be an object of named arguments",
        ),
        (
            "/api/action",
            "application/json",
            "[\"messages:list\"]",
            "The request body must be a JSON object, not an array.",
        ),
        (
            "/api/query",
            "application/json",
            "{\"args\": {}}",
            "The request body has no `path`",
        ),
        (
            "/api/query",
            "application/json",
            "{\"path\": \"../etc:passwd\", \"args\": {}}",
            "invalid function path \"../etc:passwd\"",
        ),
        (
            "/api/query",
            "application/json",
            "",
            "The request body is empty",
        ),
        (
            "/api/query_batch",
            "application/json",
            "{\"queries\": [{\"path\": \"messages:list\", \"format\": 3}]}",
            "queries[0]: `format` must be a string",
        ),
    ];
    for (path, content_type, body, expected) in cases {
        let answer = deployment.post_raw(path, content_type, body).await;
        assert_eq!(answer.status, 400, "{path} {body}: {answer:?}");
        assert_eq!(answer.body["code"], "BadRequest", "{answer:?}");
        assert!(
            answer.message().contains(expected),
            "{path} {body}: expected {expected:?} in {answer:?}"
        );
    }

    let reserved = deployment
        .post(
            "/api/query",
            json!({"path": "messages:list", "args": {"$where": 1}}),
        )
        .await;
    assert_eq!(reserved.status, 400, "{reserved:?}");
    assert!(reserved.message().starts_with("`args`"), "{reserved:?}");

    let wrong_method = deployment.get("/api/mutation").await;
    assert_eq!(wrong_method.status, 405, "{wrong_method:?}");
    assert!(
        wrong_method
            .message()
            .contains("`GET /api/mutation` is not supported: this endpoint takes POST"),
        "{wrong_method:?}"
    );

    // After all of that, the deployment still answers.
    deployment.send("still here").await;
    assert_eq!(deployment.count().await, 1.0);
    deployment.shutdown().await;
}

#[tokio::test]
async fn http_actions_call_functions_as_the_caller_including_internal_ones() {
    let deployment = Deployment::start(false).await;
    let site = base(deployment.server.site_addr());
    let call = |token: Option<&'static str>| {
        let mut request = deployment
            .http
            .post(format!("{site}/hooks/send"))
            .body("from a webhook");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        async move { Deployment::read(request.send().await.expect("answered")).await }
    };

    let signed_in = call(Some("good-token")).await;
    assert_eq!(signed_in.status, 200, "{signed_in:?}");
    assert!(signed_in.body["id"].is_string());
    assert_eq!(signed_in.body["count"], 1.0, "an internal query answered");
    assert_eq!(signed_in.body["who"]["subject"], "user-1");

    let anonymous = call(None).await;
    assert_eq!(anonymous.body["count"], 2.0);
    assert_eq!(anonymous.body["who"], Json::Null);

    // The handler runs, but it cannot act for a caller whose token was refused.
    let forged = call(Some("forged-token")).await;
    assert_eq!(forged.status, 401, "{forged:?}");
    assert_eq!(forged.body["code"], "TokenSignatureInvalid");
    assert_eq!(deployment.count().await, 2.0, "nothing was written");

    let listed = deployment
        .post("/api/query", json!({"path": "messages:list", "args": {}}))
        .await;
    assert_eq!(listed.body["value"][0]["body"], "from a webhook");
    deployment.shutdown().await;
}
