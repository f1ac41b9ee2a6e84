//! The function HTTP API of the client API origin, as the npm `ConvexHttpClient`,
//! `fetchQuery`/`fetchAction` of `convex/nextjs` and `@convex-dev/auth` call it.
//!
//! # Why it exists
//!
//! Server-side code (Next.js route handlers, lambdas, scripts, the sign-in flow's token
//! refresh) calls functions with one HTTP request each instead of holding a WebSocket. Those
//! clients are not ours: they read exact bodies and statuses, so this module reproduces them
//! (protocol spec §6).
//!
//! # Endpoints
//!
//! | Request | Body | Answer |
//! |---|---|---|
//! | `POST /api/query`, `/api/mutation`, `/api/action` | `{path, args, format?}` | one result |
//! | `GET /api/query?path=..&args=<JSON>&format=..` | none | one result |
//! | `POST /api/query_batch` | `{queries: [{path, args, format?}, ...]}` | `{results: [...]}`, all at one snapshot |
//! | `POST /api/query_ts` | none | `{"ts": "<decimal>"}`, the latest snapshot |
//! | `POST /api/query_at_ts` | `{path, args, format?, ts: "<decimal>"}` | one result at that snapshot |
//! | `POST /api/run/<module path>/<function>` | `{args?, format?}` (may be empty) | one result; `messages/list` is `messages:list` |
//!
//! `args` is the object of named arguments, or the legacy one-element array holding it; it is
//! always decoded as Convex JSON (`{"$integer": ...}` is an int64). A missing `args` means
//! no arguments. A body must be JSON: a `Content-Type` other than `application/json` (or a
//! `+json` type) is refused, a missing one is accepted. Mutations over HTTP carry no
//! session, so they are not deduplicated: a client that resends one after a lost response
//! runs it twice.
//!
//! # Results
//!
//! - Success: `200 {"status":"success","value":…,"logLines":[…]}` (`logLines` only when the
//!   function logged).
//! - The function failed (it threw, its arguments did not validate, it does not exist):
//!   [`STATUS_UDF_FAILED`] (560) `{"status":"error","errorMessage":…,"errorData"?:…,
//!   "logLines"?:[…]}`. The npm client reads the body of a 200 or a 560 alike; 560 lets
//!   proxies, logs and `fetch` users tell failures apart. A missing function says
//!   `Could not find public function for '<path>'`, which `@convex-dev/auth` looks for.
//!   Inside `/api/query_batch` each failure is one element of a 200 answer.
//! - Everything that is not the function's own outcome (a malformed request, an unknown
//!   `format`, a rejected token, a lost write conflict or an overloaded server, which a
//!   client may simply retry) is `{"code","message"}` from [`error_response`] with the status
//!   of the code: 400, 401, 405, 429, 503.
//!
//! `value` and `errorData` are encoded in the requested [`ValueFormat`]. Without `format`,
//! `/api/run` answers in clean JSON, the other endpoints in clean JSON too unless the
//! `Convex-Client` header names an npm client of version 1.4.1 or older, which expected
//! Convex JSON.
//!
//! # Authentication
//!
//! `Authorization: Bearer <token>` is validated before the function runs, through the
//! deployment's [`TokenValidator`]: a header of another form is `401 InvalidAuthHeader`, a
//! rejected token is 401 with the validator's code and message (its detail only in dev
//! mode). Unlike HTTP actions, a function call with a bad token never runs.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use conflux_common::{Error, ErrorCode, Identity, Result, TokenValidator};
use conflux_db::Timestamp;
use conflux_functions::runner::Caller as FunctionCaller;
use conflux_functions::{FunctionKind, FunctionRunner, UdfPath, Value, Visibility};
use conflux_values::Object;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Map, Value as Json};

use crate::action::bearer_token;
use crate::response::error_response;

/// The HTTP status of a function failure (npm's `STATUS_CODE_UDF_FAILED`).
pub const STATUS_UDF_FAILED: u16 = 560;

/// Request bodies larger than this are parsed, and results larger than this encoded, on
/// the blocking thread pool rather than on the async reactor.
const INLINE_JSON_BYTES: usize = 64 * 1024;

/// The newest npm client version whose default encoding was Convex JSON.
const LAST_NPM_WITH_CONVEX_JSON_DEFAULT: (u64, u64, u64) = (1, 4, 1);

/// How values in a response (`value`, `errorData`) are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueFormat {
    /// Convex JSON (protocol spec §5): lossless, with `{"$integer": ...}`,
    /// `{"$bytes": ...}` and `{"$float": ...}`. Names `convex_encoded_json` and
    /// `convex_json`; what the npm clients send.
    ConvexEncodedJson,
    /// Clean JSON: int64 as a decimal string, bytes as a base64 string, NaN and ±Infinity
    /// as strings. Names `json` and `convex_clean_json`; for `curl` and other languages.
    CleanJson,
}

impl ValueFormat {
    /// The accepted `format` names, as error messages list them.
    pub const ACCEPTED_NAMES: &'static str =
        "`convex_encoded_json` (alias `convex_json`) or `json` (alias `convex_clean_json`)";

    /// The format named `name`, or a `BadRequest` listing the accepted names.
    pub fn parse(name: &str) -> Result<ValueFormat> {
        match name {
            "convex_encoded_json" | "convex_json" => Ok(ValueFormat::ConvexEncodedJson),
            "json" | "convex_clean_json" => Ok(ValueFormat::CleanJson),
            other => Err(Error::bad_request(format!(
                "Unknown format `{}`. The accepted formats are {}.",
                shown(other, 64),
                ValueFormat::ACCEPTED_NAMES
            ))),
        }
    }

    /// The canonical name (`convex_encoded_json` or `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            ValueFormat::ConvexEncodedJson => "convex_encoded_json",
            ValueFormat::CleanJson => "json",
        }
    }

    /// `value` in this format.
    pub fn encode(self, value: &Value) -> Json {
        match self {
            ValueFormat::ConvexEncodedJson => value.to_convex_json(),
            ValueFormat::CleanJson => value.to_clean_json(),
        }
    }

    /// User error data (already Convex JSON) in this format. Data that does not decode is
    /// passed through unchanged rather than lost.
    fn encode_error_data(self, data: &Json) -> Json {
        match self {
            ValueFormat::ConvexEncodedJson => data.clone(),
            ValueFormat::CleanJson => Value::from_convex_json(data)
                .map(|value| value.to_clean_json())
                .unwrap_or_else(|_| data.clone()),
        }
    }

    /// The format used when a request names none: clean JSON, except for npm clients of
    /// version 1.4.1 or older (`Convex-Client: npm-1.4.1`), which expected Convex JSON.
    pub fn default_for(headers: &HeaderMap) -> ValueFormat {
        let npm_version = headers
            .get("convex-client")
            .and_then(|value| value.to_str().ok())
            .and_then(|client| client.strip_prefix("npm-"))
            .and_then(semver_triple);
        match npm_version {
            Some(version) if version <= LAST_NPM_WITH_CONVEX_JSON_DEFAULT => {
                ValueFormat::ConvexEncodedJson
            }
            Some(_) | None => ValueFormat::CleanJson,
        }
    }
}

/// `1.4.1`, `1.4.1-alpha.0` → `(1, 4, 1)`.
fn semver_triple(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
    let triple = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(triple)
}

/// What the function API needs: the runner, the validator of bearer tokens (none: no auth
/// is configured and every token is refused), and whether error details go to clients.
#[derive(Clone)]
pub struct ClientApiState {
    /// Runs the functions.
    pub runner: FunctionRunner,
    /// Validates `Authorization: Bearer` tokens.
    pub token_validator: Option<Arc<dyn TokenValidator>>,
    /// Dev mode: error details (the detail of a rejected token, ...) go into responses.
    pub dev_mode: bool,
}

impl std::fmt::Debug for ClientApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientApiState")
            .field("token_validator", &self.token_validator.is_some())
            .field("dev_mode", &self.dev_mode)
            .finish_non_exhaustive()
    }
}

/// The function HTTP API routes (see the module docs), to serve on the client API origin:
/// pass them, merged with the sync WebSocket route, to [`crate::start`].
pub fn client_api_routes(state: ClientApiState) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/query",
            get(query_get)
                .post(query_post)
                .fallback(method_not_allowed("GET, POST")),
        )
        .route("/api/mutation", only_post(mutation_post))
        .route("/api/action", only_post(action_post))
        .route("/api/query_batch", only_post(query_batch_post))
        .route("/api/query_ts", only_post(query_ts_post))
        .route("/api/query_at_ts", only_post(query_at_ts_post))
        .route("/api/run/{*function}", only_post(run_post))
        .with_state(Arc::new(state))
}

type Api = State<Arc<ClientApiState>>;

async fn query_get(State(api): Api, req: Request<Body>) -> Response {
    api.answer(api.query_from_url(req)).await
}

async fn query_post(State(api): Api, req: Request<Body>) -> Response {
    api.answer(api.call(FunctionKind::Query, req)).await
}

async fn mutation_post(State(api): Api, req: Request<Body>) -> Response {
    api.answer(api.call(FunctionKind::Mutation, req)).await
}

async fn action_post(State(api): Api, req: Request<Body>) -> Response {
    api.answer(api.call(FunctionKind::Action, req)).await
}

async fn query_batch_post(State(api): Api, req: Request<Body>) -> Response {
    api.answer(api.query_batch(req)).await
}

async fn query_ts_post(State(api): Api) -> Response {
    let ts = api.runner.database().latest_ts();
    json_response(StatusCode::OK, serde_json::json!({ "ts": ts.to_string() }))
}

async fn query_at_ts_post(State(api): Api, req: Request<Body>) -> Response {
    api.answer(api.query_at_ts(req)).await
}

async fn run_post(State(api): Api, req: Request<Body>) -> Response {
    api.answer(api.run_by_url(req)).await
}

fn only_post<H, T>(handler: H) -> MethodRouter<Arc<ClientApiState>>
where
    H: axum::handler::Handler<T, Arc<ClientApiState>>,
    T: 'static,
{
    post(handler).fallback(method_not_allowed("POST"))
}

/// A handler answering 405 with the methods the endpoint takes.
fn method_not_allowed(
    allowed: &'static str,
) -> impl Fn(Method, http::Uri) -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    move |method: Method, uri: http::Uri| {
        let err = Error::bad_request(format!(
            "`{method} {}` is not supported: this endpoint takes {allowed}.",
            uri.path()
        ));
        let mut response = error_response(&err, false);
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        std::future::ready(response)
    }
}

/// One function call, parsed from a request.
#[derive(Debug)]
struct FunctionCall {
    /// The canonical path (`messages:list`).
    path: String,
    args: Object,
    format: ValueFormat,
}

/// A function's outcome as the response body of one call; `failed` picks the status.
struct Reply {
    failed: bool,
    body: Json,
}

impl ClientApiState {
    /// The response of a handler: its own, or the `{"code","message"}` body of its error.
    async fn answer(&self, work: impl std::future::Future<Output = Result<Response>>) -> Response {
        match work.await {
            Ok(response) => response,
            Err(err) => {
                tracing::debug!(error = %err, "function API request refused");
                error_response(&err, self.dev_mode)
            }
        }
    }

    /// `POST /api/query`, `/api/mutation`, `/api/action`.
    async fn call(&self, kind: FunctionKind, req: Request<Body>) -> Result<Response> {
        let (parts, body) = req.into_parts();
        let default_format = ValueFormat::default_for(&parts.headers);
        let call = parse_json_body(&parts.headers, body, move |body| {
            FunctionCall::from_body(body, default_format)
        })
        .await?;
        let identity = self.authenticate(&parts.headers).await?;
        let reply = self.run(kind, call, identity, None).await?;
        Ok(reply.into_response())
    }

    /// `GET /api/query?path=..&args=..&format=..`.
    async fn query_from_url(&self, req: Request<Body>) -> Result<Response> {
        let (parts, _body) = req.into_parts();
        let mut path = None;
        let mut args = None;
        let mut format = None;
        let query = parts.uri.query().unwrap_or("");
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "path" => &mut path,
                "args" => &mut args,
                "format" => &mut format,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        let path = match path {
            Some(path) => canonical_path(&path)?,
            None => {
                return Err(Error::bad_request(
                    "The query string has no `path` parameter: name the query, e.g. \
                     `/api/query?path=messages:list&args={}`.",
                ))
            }
        };
        let args = match args {
            Some(text) => {
                let json: Json = serde_json::from_str(&text).map_err(|err| {
                    Error::bad_request(format!(
                        "The `args` query parameter is not valid JSON: {err}. Pass the \
                         arguments object as URL-encoded JSON text, e.g. `args=%7B%7D` for `{{}}`."
                    ))
                })?;
                parse_args(Some(&json))?
            }
            None => Object::new(),
        };
        let format = match format {
            Some(name) => ValueFormat::parse(&name)?,
            None => ValueFormat::default_for(&parts.headers),
        };
        let identity = self.authenticate(&parts.headers).await?;
        let call = FunctionCall { path, args, format };
        Ok(self
            .run(FunctionKind::Query, call, identity, None)
            .await?
            .into_response())
    }

    /// `POST /api/query_batch`: every query at the same snapshot.
    async fn query_batch(&self, req: Request<Body>) -> Result<Response> {
        let (parts, body) = req.into_parts();
        let default_format = ValueFormat::default_for(&parts.headers);
        let calls = parse_json_body(&parts.headers, body, move |body| {
            let queries = match body.get("queries") {
                Some(Json::Array(queries)) => queries,
                Some(other) => {
                    return Err(Error::bad_request(format!(
                        "`queries` must be an array of `{{path, args, format}}` objects, not {}.",
                        json_type(other)
                    )))
                }
                None => {
                    return Err(Error::bad_request(
                        "The request body has no `queries`: send \
                         `{\"queries\": [{\"path\": \"messages:list\", \"args\": {}}]}`.",
                    ))
                }
            };
            queries
                .iter()
                .enumerate()
                .map(|(index, query)| match query {
                    Json::Object(query) => FunctionCall::from_body(query, default_format)
                        .map_err(|err| err.context(format!("queries[{index}]"))),
                    other => Err(Error::bad_request(format!(
                        "queries[{index}] must be an object `{{path, args, format}}`, not {}.",
                        json_type(other)
                    ))),
                })
                .collect::<Result<Vec<_>>>()
        })
        .await?;
        let identity = self.authenticate(&parts.headers).await?;
        let ts = self.runner.database().latest_ts();
        let mut results = Vec::with_capacity(calls.len());
        for call in calls {
            let reply = self
                .run(FunctionKind::Query, call, identity.clone(), Some(ts))
                .await?;
            results.push(reply.body);
        }
        Ok(json_response(
            StatusCode::OK,
            serde_json::json!({ "results": results }),
        ))
    }

    /// `POST /api/query_at_ts`.
    async fn query_at_ts(&self, req: Request<Body>) -> Result<Response> {
        let (parts, body) = req.into_parts();
        let default_format = ValueFormat::default_for(&parts.headers);
        let (call, ts) = parse_json_body(&parts.headers, body, move |body| {
            let ts = parse_ts(body.get("ts"))?;
            Ok((FunctionCall::from_body(body, default_format)?, ts))
        })
        .await?;
        // Refuse a snapshot that cannot be read (in the future, or no longer retained) as a
        // bad request, before the query runs.
        self.runner
            .database()
            .begin_at(ts)
            .map_err(|err| err.context("The query cannot run at `ts`"))?;
        let identity = self.authenticate(&parts.headers).await?;
        Ok(self
            .run(FunctionKind::Query, call, identity, Some(ts))
            .await?
            .into_response())
    }

    /// `POST /api/run/<module path>/<function>`: a public function of any kind, by URL.
    async fn run_by_url(&self, req: Request<Body>) -> Result<Response> {
        let (parts, body) = req.into_parts();
        let path = path_from_run_url(parts.uri.path())?;
        let raw = read_body(body).await?;
        let (args, format) = if raw.is_empty() {
            (Object::new(), ValueFormat::CleanJson)
        } else {
            check_content_type(&parts.headers)?;
            parse_json_off_reactor(raw, |body| {
                let args = parse_args(body.get("args"))?;
                let format = parse_format(body.get("format"), ValueFormat::CleanJson)?;
                Ok((args, format))
            })
            .await?
        };
        let identity = self.authenticate(&parts.headers).await?;
        let kind = UdfPath::parse(&path)
            .ok()
            .and_then(|canonical| self.runner.registry().get(&canonical))
            .filter(|def| def.visibility == Visibility::Public)
            .map(|def| def.kind())
            // Unknown or internal: run as a query, which answers "Could not find public
            // function" like every other endpoint.
            .unwrap_or(FunctionKind::Query);
        let call = FunctionCall { path, args, format };
        Ok(self.run(kind, call, identity, None).await?.into_response())
    }

    /// The caller's identity from the `Authorization` header.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity> {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(Identity::Anonymous);
        };
        let Some(token) = value.to_str().ok().and_then(bearer_token) else {
            return Err(invalid_auth_header(value));
        };
        let Some(validator) = &self.token_validator else {
            return Err(Error::new(
                ErrorCode::NoAuthProvider,
                "No auth provider found matching the given token (no providers configured). \
                 Configure an auth provider for this deployment, or stop sending the \
                 Authorization header.",
            ));
        };
        match validator.validate(token).await {
            Ok(user) => Ok(Identity::User(Arc::new(user))),
            Err(err) => {
                tracing::info!(code = %err.code(), error = %err, "bearer token rejected");
                Err(err)
            }
        }
    }

    /// Run one call and turn its outcome into a reply; `Err` only for failures that are not
    /// the function's own (see [`is_system_failure`]).
    async fn run(
        &self,
        kind: FunctionKind,
        call: FunctionCall,
        identity: Identity,
        ts: Option<Timestamp>,
    ) -> Result<Reply> {
        let FunctionCall { path, args, format } = call;
        let runner = &self.runner;
        let (result, log_lines) = match kind {
            FunctionKind::Query => {
                let outcome = runner
                    .run_query(&path, args, identity, FunctionCaller::Client, ts)
                    .await;
                (outcome.result, outcome.log_lines)
            }
            FunctionKind::Mutation => {
                let outcome = runner
                    .run_mutation(&path, args, identity, FunctionCaller::Client, None)
                    .await;
                (outcome.result, outcome.log_lines)
            }
            FunctionKind::Action => {
                let outcome = runner
                    .run_action(&path, args, identity, FunctionCaller::Client)
                    .await;
                (outcome.result, outcome.log_lines)
            }
        };
        let log_lines = log_lines.into_vec();
        match result {
            Ok(value) => {
                let large = value.convex_json_len() > INLINE_JSON_BYTES;
                let value = off_reactor(large, move || format.encode(&value)).await?;
                let mut body = Map::new();
                body.insert("status".into(), "success".into());
                body.insert("value".into(), value);
                insert_log_lines(&mut body, log_lines);
                Ok(Reply {
                    failed: false,
                    body: Json::Object(body),
                })
            }
            Err(err) if is_system_failure(&err) => Err(err),
            Err(err) => {
                let failure = runner.failure(&err);
                let mut body = Map::new();
                body.insert("status".into(), "error".into());
                body.insert("errorMessage".into(), failure.message.into());
                if let Some(data) = &failure.data {
                    body.insert("errorData".into(), format.encode_error_data(data));
                }
                insert_log_lines(&mut body, log_lines);
                Ok(Reply {
                    failed: true,
                    body: Json::Object(body),
                })
            }
        }
    }
}

impl Reply {
    fn into_response(self) -> Response {
        let status = if self.failed {
            StatusCode::from_u16(STATUS_UDF_FAILED).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        } else {
            StatusCode::OK
        };
        json_response(status, self.body)
    }
}

/// Failures a client should see as the request failing rather than the function: a lost
/// write conflict, an overloaded server, full storage, rate limits. The client may retry.
fn is_system_failure(err: &Error) -> bool {
    err.code().is_retryable()
}

fn insert_log_lines(body: &mut Map<String, Json>, log_lines: Vec<String>) {
    if !log_lines.is_empty() {
        body.insert(
            "logLines".into(),
            Json::Array(log_lines.into_iter().map(Json::String).collect()),
        );
    }
}

fn json_response(status: StatusCode, body: Json) -> Response {
    let text = body.to_string();
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn invalid_auth_header(value: &HeaderValue) -> Error {
    let err = Error::new(
        ErrorCode::InvalidAuthHeader,
        "Header must begin with `Bearer `: send `Authorization: Bearer <token>` with a token \
         from your auth provider, or no Authorization header to call functions anonymously.",
    );
    // Only the scheme is described, never the credentials.
    let scheme = value
        .to_str()
        .ok()
        .and_then(|text| text.split_whitespace().next())
        .map(|scheme| shown(scheme, 32));
    match scheme {
        Some(scheme) if scheme.eq_ignore_ascii_case("convex") => err.with_detail(
            "the header carries an admin key (`Convex <key>`), which this deployment does not accept",
        ),
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer") => {
            err.with_detail("the header has the `Bearer` scheme but no token")
        }
        Some(scheme) => err.with_detail(format!("the header's scheme is `{scheme}`")),
        None => err.with_detail("the header is empty or not visible ASCII"),
    }
}

/// Read a body the server has already buffered (and bounded by its body limit).
async fn read_body(body: Body) -> Result<bytes::Bytes> {
    axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|err| Error::bad_request(format!("Could not read the request body: {err}")))
}

/// A `Content-Type`, when present, must be JSON (`application/json` or `*/*+json`).
fn check_content_type(headers: &HeaderMap) -> Result<()> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(Error::bad_request(format!(
        "The request's Content-Type is `{}`, but this endpoint takes JSON: send the body \
         with `Content-Type: application/json`.",
        shown(text, 100)
    )))
}

/// Check the content type, read the body, parse it as a JSON object and hand it to
/// `parse`; large bodies are parsed on the blocking pool.
async fn parse_json_body<T, F>(headers: &HeaderMap, body: Body, parse: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Map<String, Json>) -> Result<T> + Send + 'static,
{
    check_content_type(headers)?;
    let raw = read_body(body).await?;
    if raw.is_empty() {
        return Err(Error::bad_request(
            "The request body is empty: send a JSON object, e.g. \
             `{\"path\": \"messages:list\", \"args\": {}, \"format\": \"json\"}`.",
        ));
    }
    parse_json_off_reactor(raw, parse).await
}

async fn parse_json_off_reactor<T, F>(raw: bytes::Bytes, parse: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Map<String, Json>) -> Result<T> + Send + 'static,
{
    let large = raw.len() > INLINE_JSON_BYTES;
    off_reactor(large, move || {
        let json: Json = serde_json::from_slice(&raw).map_err(|err| {
            Error::bad_request(format!(
                "The request body is not valid JSON: {err}. Send a JSON object with \
                 `Content-Type: application/json`."
            ))
        })?;
        match &json {
            Json::Object(body) => parse(body),
            other => Err(Error::bad_request(format!(
                "The request body must be a JSON object, not {}.",
                json_type(other)
            ))),
        }
    })
    .await?
}

/// Run `work` here when it is small, on the blocking pool when it is `large`.
async fn off_reactor<T, F>(large: bool, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if !large {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| Error::internal(format!("a JSON encoding task failed: {err}")))
}

impl FunctionCall {
    /// `{path, args, format}` of a request body (other fields are ignored).
    fn from_body(body: &Map<String, Json>, default_format: ValueFormat) -> Result<FunctionCall> {
        let path = match body.get("path") {
            Some(Json::String(path)) => canonical_path(path)?,
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "`path` must be a string like `messages:list`, not {}.",
                    json_type(other)
                )))
            }
            None => {
                return Err(Error::bad_request(
                    "The request body has no `path`: name the function, e.g. \
                     `{\"path\": \"messages:list\", \"args\": {}}`.",
                ))
            }
        };
        Ok(FunctionCall {
            path,
            args: parse_args(body.get("args"))?,
            format: parse_format(body.get("format"), default_format)?,
        })
    }
}

/// The canonical form of a function path; a malformed path is a bad request.
fn canonical_path(path: &str) -> Result<String> {
    Ok(UdfPath::parse(path)?.as_str().to_owned())
}

/// `args`: an object of named arguments in Convex JSON, the legacy `[{...}]`, or absent
/// (no arguments).
fn parse_args(args: Option<&Json>) -> Result<Object> {
    let object = match args {
        None => return Ok(Object::new()),
        Some(object @ Json::Object(_)) => object,
        Some(Json::Array(items)) => match items.as_slice() {
            [object @ Json::Object(_)] => object,
            [other] => {
                return Err(Error::bad_request(format!(
                    "`args` must hold an object of named arguments, but its one element is {}.",
                    json_type(other)
                )))
            }
            items => {
                return Err(Error::bad_request(format!(
                    "`args` as an array must hold exactly one object of named arguments \
                     (`[{{...}}]`), but it has {} elements. Send the arguments object itself.",
                    items.len()
                )))
            }
        },
        Some(other) => {
            return Err(Error::bad_request(format!(
                "`args` must be an object of named arguments, e.g. `{{\"channel\": \"general\"}}`, \
                 not {}.",
                json_type(other)
            )))
        }
    };
    match Value::from_convex_json(object).map_err(|err| err.context("`args`"))? {
        Value::Object(object) => Ok(object),
        other => Err(Error::bad_request(format!(
            "`args` must be an object of named arguments, not {}.",
            other.type_name()
        ))),
    }
}

fn parse_format(format: Option<&Json>, default: ValueFormat) -> Result<ValueFormat> {
    match format {
        None | Some(Json::Null) => Ok(default),
        Some(Json::String(name)) => ValueFormat::parse(name),
        Some(other) => Err(Error::bad_request(format!(
            "`format` must be a string, {}; not {}.",
            ValueFormat::ACCEPTED_NAMES,
            json_type(other)
        ))),
    }
}

fn parse_ts(ts: Option<&Json>) -> Result<Timestamp> {
    match ts {
        Some(Json::String(text)) => text.parse().map_err(|err: Error| err.context("`ts`")),
        Some(Json::Number(_)) => Err(Error::bad_request(
            "`ts` must be a string (the `ts` that /api/query_ts returned): a JSON number cannot \
             hold a 64-bit timestamp exactly.",
        )),
        Some(other) => Err(Error::bad_request(format!(
            "`ts` must be a string (the `ts` that /api/query_ts returned), not {}.",
            json_type(other)
        ))),
        None => Err(Error::bad_request(
            "The request body has no `ts`: pass the `ts` that /api/query_ts returned.",
        )),
    }
}

/// `/api/run/messages/list` → `messages:list`; `/api/run/dir/file/fn` → `dir/file:fn`.
fn path_from_run_url(url_path: &str) -> Result<String> {
    let missing = || {
        Error::bad_request(format!(
            "`{}` does not name a function: call `/api/run/<module path>/<function>`, e.g. \
             `/api/run/messages/list` for `messages:list`.",
            shown(url_path, 200)
        ))
    };
    let rest = url_path.strip_prefix("/api/run/").ok_or_else(missing)?;
    let segments = rest
        .split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| missing())
        })
        .collect::<Result<Vec<_>>>()?;
    match segments.as_slice() {
        [module @ .., function] if !module.is_empty() => {
            canonical_path(&format!("{}:{function}", module.join("/")))
        }
        _ => Err(missing()),
    }
}

fn json_type(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Untrusted text for a message: cut to `max` characters, control characters replaced.
fn shown(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_and_aliases() {
        for (name, format) in [
            ("convex_encoded_json", ValueFormat::ConvexEncodedJson),
            ("convex_json", ValueFormat::ConvexEncodedJson),
            ("json", ValueFormat::CleanJson),
            ("convex_clean_json", ValueFormat::CleanJson),
        ] {
            assert_eq!(ValueFormat::parse(name).ok(), Some(format), "{name}");
        }
        let err = ValueFormat::parse("xml").expect_err("unknown");
        assert_eq!(err.code(), ErrorCode::BadRequest);
        assert!(err.message().contains("Unknown format `xml`"), "{err}");
        assert!(err.message().contains("`convex_clean_json`"), "{err}");
    }

    #[test]
    fn only_old_npm_clients_default_to_convex_json() {
        let with_client = |client: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "convex-client",
                HeaderValue::from_str(client).expect("ascii"),
            );
            ValueFormat::default_for(&headers)
        };
        assert_eq!(with_client("npm-1.4.1"), ValueFormat::ConvexEncodedJson);
        assert_eq!(with_client("npm-0.19.0"), ValueFormat::ConvexEncodedJson);
        assert_eq!(with_client("npm-1.4.2"), ValueFormat::CleanJson);
        assert_eq!(with_client("npm-1.48.0"), ValueFormat::CleanJson);
        assert_eq!(with_client("python-0.7.0"), ValueFormat::CleanJson);
        assert_eq!(
            ValueFormat::default_for(&HeaderMap::new()),
            ValueFormat::CleanJson
        );
    }

    #[test]
    fn run_urls_name_module_and_function() {
        assert_eq!(
            path_from_run_url("/api/run/messages/list").ok().as_deref(),
            Some("messages:list")
        );
        assert_eq!(
            path_from_run_url("/api/run/dir/file/send_one")
                .ok()
                .as_deref(),
            Some("dir/file:send_one")
        );
        let err = path_from_run_url("/api/run/messages").expect_err("no function");
        assert!(
            err.message().contains("/api/run/<module path>/<function>"),
            "{err}"
        );
        assert!(path_from_run_url("/api/run/messages/").is_err());
    }

    #[test]
    fn args_are_an_object_or_a_one_element_array() {
        let object = serde_json::json!({"n": {"$integer": "BQAAAAAAAAA="}});
        let parsed = parse_args(Some(&object)).expect("an object");
        assert_eq!(parsed.get("n"), Some(&Value::Int64(5)));
        let legacy = serde_json::json!([{"n": 1}]);
        assert_eq!(
            parse_args(Some(&legacy)).expect("legacy").get("n"),
            Some(&Value::Float64(1.0))
        );
        assert!(parse_args(None).expect("absent").is_empty());
        let two = parse_args(Some(&serde_json::json!([{}, {}]))).expect_err("two");
        assert!(two.message().contains("exactly one object"), "{two}");
        let string = parse_args(Some(&serde_json::json!("x"))).expect_err("string");
        assert!(string.message().contains("not a string"), "{string}");
    }

    #[test]
    fn timestamps_are_decimal_strings() {
        assert_eq!(
            parse_ts(Some(&serde_json::json!("42"))).ok(),
            Timestamp::new(42).ok()
        );
        let number = parse_ts(Some(&serde_json::json!(42))).expect_err("number");
        assert!(number.message().contains("must be a string"), "{number}");
        let garbage = parse_ts(Some(&serde_json::json!("soon"))).expect_err("text");
        assert!(garbage.message().starts_with("`ts`"), "{garbage}");
    }
}
