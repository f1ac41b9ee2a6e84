//! The two listeners: the client API origin and the site origin.
//!
//! ```text
//!   client API origin (:3210)                     site origin (:3211)
//!   ───────────────────────────                   ───────────────────
//!   /http/<path> ──strip /http──┐                 /<path>
//!                               ▼                    │
//!   /api/... ─▶ CORS ─▶ function API, /api/sync   HttpRouter (HTTP actions, sign-in)
//!   anything else ─▶ explained 404                   ▲
//!                               └────────────────────┘
//! ```
//!
//! Connections are served with hyper's HTTP/1 connection builder directly (not
//! `axum::serve`) because slow-header protection needs `header_read_timeout`, and graceful
//! shutdown needs each connection in hand. Every request then goes through the same steps,
//! in this order:
//!
//! 1. one `info` log line when it is answered (method, path, status, duration; never the
//!    query string, which carries OAuth codes);
//! 2. path checks: repeated slashes are collapsed (`//api/query` is `/api/query`), and a
//!    path with a malformed percent-escape or one that does not decode to UTF-8 gets 400;
//! 3. on the client API only: CORS, mirroring the request's origin and headers, with
//!    credentials and a max-age of one day, as the reference does (preflights are answered
//!    here); the `/http/` routes are left to the HTTP actions, which answer CORS
//!    themselves;
//! 4. the request time limit (503 `RequestTimeout`), covering the body upload too;
//! 5. the body limit (413 `PayloadTooLarge` naming the limit and its knob); the body is
//!    buffered here, so handlers receive it whole.
//!
//! A timed-out request is only abandoned by the server: work it started (a mutation that
//! was already committing) may still complete.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use bytes::BytesMut;
use conflux_common::{knobs, Error, ErrorCode, Result, TokenValidator};
use futures::FutureExt;
use http::header::CONTENT_LENGTH;
use http::uri::PathAndQuery;
use http::{Request, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::action::ActionRunner;
use crate::diagnostics::Arrival;
use crate::origins::{Origin, Origins};
use crate::response::error_response;
use crate::router::HttpRouter;
use crate::site::SiteState;

/// The default port of the client API origin.
pub const DEFAULT_CLIENT_PORT: u16 = 3210;
/// The default port of the site origin.
pub const DEFAULT_SITE_PORT: u16 = 3211;

/// How long browsers may cache a CORS preflight answer (the reference uses one day).
const CORS_MAX_AGE: Duration = Duration::from_secs(86_400);
/// After rejecting an over-limit body, up to this many more bytes are read and thrown
/// away so the client can read the 413 instead of seeing its upload reset.
const DRAIN_AFTER_LIMIT_BYTES: usize = 1 << 20;
/// Pause after a failed `accept` (for example too many open files) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// After a forced shutdown, how long to wait for connection tasks to notice.
const FORCED_CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Longest path written to the request log.
const LOGGED_PATH_BYTES: usize = 512;

/// How the two listeners are set up. [`ServerConfig::default`] reads the knobs.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// The address both listeners bind to (default `127.0.0.1`).
    pub host: IpAddr,
    /// The client API port (default 3210); 0 picks a free port.
    pub client_port: u16,
    /// The site port (default 3211); 0 picks a free port.
    pub site_port: u16,
    /// Dev mode: error details and explanations of unmatched routes go into responses.
    pub dev_mode: bool,
    /// The public URL of the client API origin when a proxy sits in front; default
    /// `http://<host>:<client port>`.
    pub client_origin: Option<String>,
    /// The public URL of the site origin when a proxy sits in front; default
    /// `http://<host>:<site port>`.
    pub site_origin: Option<String>,
    /// Largest request body (knob `HTTP_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Time a client has to send a request's headers, also the longest idle time of a
    /// kept-alive connection (knob `HTTP_HEADER_READ_TIMEOUT_MS`).
    pub header_read_timeout: Duration,
    /// Time a request may take, body upload included (knob `HTTP_REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
    /// On shutdown, time in-flight requests get to finish (knob `HTTP_SHUTDOWN_TIMEOUT_MS`).
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            client_port: DEFAULT_CLIENT_PORT,
            site_port: DEFAULT_SITE_PORT,
            dev_mode: false,
            client_origin: None,
            site_origin: None,
            max_body_bytes: *knobs::HTTP_MAX_BODY_BYTES,
            header_read_timeout: Duration::from_millis(*knobs::HTTP_HEADER_READ_TIMEOUT_MS),
            request_timeout: Duration::from_millis(*knobs::HTTP_REQUEST_TIMEOUT_MS),
            shutdown_timeout: Duration::from_millis(*knobs::HTTP_SHUTDOWN_TIMEOUT_MS),
        }
    }
}

/// What the site origin serves: the router of HTTP actions, the runner its handlers call
/// functions through, and the validator of bearer tokens (none: every token is rejected,
/// which only matters to handlers that ask for the identity).
#[derive(Clone)]
pub struct SiteRoutes {
    /// The HTTP actions and mounted route sets.
    pub router: Arc<HttpRouter>,
    /// Runs the functions handlers call.
    pub runner: Arc<dyn ActionRunner>,
    /// Validates bearer tokens.
    pub token_validator: Option<Arc<dyn TokenValidator>>,
}

/// Both listeners bound, not yet serving: the place to learn the actual ports and
/// origins (a port of 0 is only known now) before building what needs them.
#[derive(Debug)]
pub struct BoundServer {
    client: TcpListener,
    site: TcpListener,
    client_addr: SocketAddr,
    site_addr: SocketAddr,
    origins: Origins,
    config: ServerConfig,
}

/// Bind the client API and site listeners.
///
/// Fails when a port is taken or both ports are the same non-zero port, with a message
/// naming the address and the origin it was for.
pub async fn bind(config: ServerConfig) -> Result<BoundServer> {
    if config.client_port != 0 && config.client_port == config.site_port {
        return Err(Error::new(
            ErrorCode::BadRequest,
            format!(
                "The client API and the site need different ports, but both are {}. Choose \
                 another site port (default {DEFAULT_SITE_PORT}).",
                config.client_port
            ),
        ));
    }
    let (client, client_addr) = listen(config.host, config.client_port, Origin::Client).await?;
    let (site, site_addr) = listen(config.host, config.site_port, Origin::Site).await?;
    let defaults = Origins::from_addrs(client_addr, site_addr);
    let origins = Origins::new(
        config.client_origin.clone().unwrap_or(defaults.client),
        config.site_origin.clone().unwrap_or(defaults.site),
    );
    Ok(BoundServer {
        client,
        site,
        client_addr,
        site_addr,
        origins,
        config,
    })
}

async fn listen(host: IpAddr, port: u16, origin: Origin) -> Result<(TcpListener, SocketAddr)> {
    let addr = SocketAddr::new(host, port);
    let fail = |err: std::io::Error| {
        Error::new(
            ErrorCode::Internal,
            format!(
                "Could not listen on {addr} for the {origin}: {err}. Stop the process using the \
                 port, or choose another one."
            ),
        )
    };
    let listener = TcpListener::bind(addr).await.map_err(fail)?;
    let local = listener.local_addr().map_err(fail)?;
    Ok((listener, local))
}

impl BoundServer {
    /// The bound address of the client API listener.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The bound address of the site listener.
    pub fn site_addr(&self) -> SocketAddr {
        self.site_addr
    }

    /// The public origins (configured, or derived from the bound addresses).
    pub fn origins(&self) -> &Origins {
        &self.origins
    }

    /// Start serving. `client_api_routes` is the client API (function API, sync
    /// WebSocket); requests it does not match get the explained 404, so its own fallback
    /// is replaced. `site` serves the site origin and `<client API>/http/`.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn serve(self, client_api_routes: axum::Router, site: SiteRoutes) -> RunningServer {
        let limits = Limits {
            max_body_bytes: self.config.max_body_bytes,
            request_timeout: self.config.request_timeout,
            dev_mode: self.config.dev_mode,
        };
        let site = Arc::new(SiteState {
            router: site.router,
            runner: site.runner,
            token_validator: site.token_validator,
            origins: self.origins.clone(),
            dev_mode: self.config.dev_mode,
        });
        let app = Arc::new(App {
            api: client_api_service(client_api_routes, site.clone(), limits.clone()),
            site,
            limits,
        });

        let (phase, phase_rx) = watch::channel(Phase::Serving);
        let (tracker, connections_done) = mpsc::channel::<()>(1);
        let open = Arc::new(AtomicUsize::new(0));
        let accept_tasks = [(self.client, Origin::Client), (self.site, Origin::Site)]
            .into_iter()
            .map(|(listener, origin)| {
                tokio::spawn(accept_loop(AcceptLoop {
                    listener,
                    origin,
                    app: app.clone(),
                    phase: phase_rx.clone(),
                    tracker: tracker.clone(),
                    open: open.clone(),
                    header_read_timeout: self.config.header_read_timeout,
                }))
            })
            .collect();
        tracing::info!(
            client = %self.origins.client,
            site = %self.origins.site,
            "serving the client API and the site"
        );
        RunningServer {
            client_addr: self.client_addr,
            site_addr: self.site_addr,
            origins: self.origins,
            phase,
            accept_tasks,
            connections_done,
            open,
            shutdown_timeout: self.config.shutdown_timeout,
        }
    }
}

/// Bind both listeners and start serving: [`bind`] then [`BoundServer::serve`].
pub async fn start(
    config: ServerConfig,
    client_api_routes: axum::Router,
    site: SiteRoutes,
) -> Result<RunningServer> {
    Ok(bind(config).await?.serve(client_api_routes, site))
}

/// How a shutdown ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// Every in-flight request finished within the shutdown timeout.
    Graceful,
    /// The timeout passed; the connections still open were closed.
    Forced {
        /// How many connections were still open at the deadline.
        open_connections: usize,
    },
}

/// A serving pair of listeners. Dropping it closes every connection at once; call
/// [`RunningServer::shutdown`] to let in-flight requests finish.
#[derive(Debug)]
pub struct RunningServer {
    client_addr: SocketAddr,
    site_addr: SocketAddr,
    origins: Origins,
    phase: watch::Sender<Phase>,
    accept_tasks: Vec<JoinHandle<()>>,
    connections_done: mpsc::Receiver<()>,
    open: Arc<AtomicUsize>,
    shutdown_timeout: Duration,
}

impl RunningServer {
    /// The bound address of the client API listener.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The bound address of the site listener.
    pub fn site_addr(&self) -> SocketAddr {
        self.site_addr
    }

    /// The public origins.
    pub fn origins(&self) -> &Origins {
        &self.origins
    }

    /// How many connections are open right now (upgraded WebSockets are no longer
    /// counted: they belong to their handler).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Stop accepting, let in-flight requests finish (idle connections close at once),
    /// and close whatever is still open when the shutdown timeout passes.
    pub async fn shutdown(mut self) -> ShutdownOutcome {
        // No receiver left means every task has already ended: nothing to signal.
        let _ = self.phase.send(Phase::Draining);
        for task in self.accept_tasks.drain(..) {
            if let Err(err) = task.await {
                tracing::error!("an accept loop ended abnormally: {err}");
            }
        }
        if tokio::time::timeout(self.shutdown_timeout, self.connections_done.recv())
            .await
            .is_ok()
        {
            tracing::info!("HTTP server stopped");
            return ShutdownOutcome::Graceful;
        }
        let open_connections = self.open.load(Ordering::SeqCst);
        tracing::warn!(
            open_connections,
            "HTTP shutdown timeout passed; closing the remaining connections"
        );
        let _ = self.phase.send(Phase::Closing);
        let _ = tokio::time::timeout(FORCED_CLOSE_WAIT, self.connections_done.recv()).await;
        ShutdownOutcome::Forced { open_connections }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    Draining,
    Closing,
}

#[derive(Clone, Debug)]
struct Limits {
    max_body_bytes: usize,
    request_timeout: Duration,
    dev_mode: bool,
}

type ApiService = BoxCloneSyncService<Request<Body>, Response, Infallible>;

/// What both listeners share.
struct App {
    api: ApiService,
    site: Arc<SiteState>,
    limits: Limits,
}

/// The client API: the facade's routes with an explained 404 as fallback, the guards,
/// and CORS outermost so that even a 413 or 503 reaches a browser app readable.
fn client_api_service(routes: axum::Router, site: Arc<SiteState>, limits: Limits) -> ApiService {
    let router = routes.fallback(move |req: Request<Body>| {
        let site = site.clone();
        async move {
            site.router
                .explain_miss(
                    req.method(),
                    req.uri().path(),
                    Arrival::Client,
                    &site.origins,
                )
                .into_response(site.dev_mode)
        }
    });
    let guarded = tower::service_fn(move |req: Request<Body>| {
        let router = router.clone();
        let limits = limits.clone();
        async move {
            let response = guard(&limits, req, |req| async move {
                match router.oneshot(req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            })
            .await;
            Ok::<_, Infallible>(response)
        }
    });
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .allow_credentials(true)
        .max_age(CORS_MAX_AGE);
    BoxCloneSyncService::new(ServiceBuilder::new().layer(cors).service(guarded))
}

impl App {
    async fn handle(&self, origin: Origin, peer: SocketAddr, mut req: Request<Body>) -> Response {
        let started = Instant::now();
        let method = req.method().clone();
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut logged_path = truncated(req.uri().path(), LOGGED_PATH_BYTES).to_string();
        let work = async {
            let req = match normalize(req) {
                Ok(req) => req,
                Err(err) => return error_response(&err, self.limits.dev_mode),
            };
            let path = req.uri().path().to_string();
            logged_path = truncated(&path, LOGGED_PATH_BYTES).to_string();
            match origin {
                Origin::Site => {
                    guard(&self.limits, req, |req| {
                        self.site.serve(req, &path, Arrival::Site)
                    })
                    .await
                }
                Origin::Client => match site_path_via_client(&path) {
                    Some(site_path) => {
                        guard(&self.limits, req, |req| {
                            self.site.serve(req, site_path, Arrival::SiteViaClient)
                        })
                        .await
                    }
                    None => match self.api.clone().oneshot(req).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                },
            }
        };
        let response = match AssertUnwindSafe(work).catch_unwind().await {
            Ok(response) => response,
            Err(_panic) => {
                tracing::error!(%method, "a request handler panicked");
                error_response(
                    &Error::internal("a request handler panicked"),
                    self.limits.dev_mode,
                )
            }
        };
        tracing::info!(
            origin = origin.label(),
            method = %method,
            path = %logged_path,
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        response
    }
}

/// The site path of a client API path under `/http`: `/http/x` is `/x`, `/http` is `/`.
fn site_path_via_client(path: &str) -> Option<&str> {
    match path.strip_prefix("/http") {
        Some("") => Some("/"),
        Some(rest) if rest.starts_with('/') => Some(rest),
        Some(_) | None => None,
    }
}

/// Apply the time limit (503) and the body limit (413), then run `next` on the request
/// with its body buffered.
async fn guard<F, Fut>(limits: &Limits, req: Request<Body>, next: F) -> Response
where
    F: FnOnce(Request<Body>) -> Fut,
    Fut: Future<Output = Response>,
{
    let work = async {
        match buffer_body(req, limits.max_body_bytes).await {
            Ok(req) => next(req).await,
            Err(err) => error_response(&err, limits.dev_mode),
        }
    };
    match tokio::time::timeout(limits.request_timeout, work).await {
        Ok(response) => response,
        Err(_elapsed) => {
            let millis = limits.request_timeout.as_millis();
            let err = Error::new(
                ErrorCode::RequestTimeout,
                format!(
                    "The request was not answered within {millis} ms (HTTP_REQUEST_TIMEOUT_MS) \
                     and was stopped. Retry later, or raise the limit by setting \
                     CONFLUX_HTTP_REQUEST_TIMEOUT_MS if this request needs longer."
                ),
            );
            tracing::warn!("{err}");
            error_response(&err, limits.dev_mode)
        }
    }
}

fn body_too_large(limit: usize) -> Error {
    Error::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "The request body is larger than the limit of {limit} bytes (HTTP_MAX_BODY_BYTES). \
             Send a smaller body, or raise the limit by setting CONFLUX_HTTP_MAX_BODY_BYTES."
        ),
    )
}

/// Read the whole body, refusing more than `limit` bytes.
async fn buffer_body(req: Request<Body>, limit: usize) -> Result<Request<Body>> {
    let (parts, mut body) = req.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let drain_cap = limit.saturating_add(DRAIN_AFTER_LIMIT_BYTES);
    if let Some(declared) = declared {
        if declared > limit as u64 {
            if declared <= drain_cap as u64 {
                drain(&mut body, drain_cap).await;
            }
            return Err(body_too_large(limit));
        }
    }
    let mut buffer = BytesMut::new();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|err| Error::bad_request(format!("Could not read the request body: {err}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received = received.saturating_add(data.len());
        if received > limit {
            drain(&mut body, drain_cap.saturating_sub(received)).await;
            return Err(body_too_large(limit));
        }
        buffer.extend_from_slice(&data);
    }
    Ok(Request::from_parts(parts, Body::from(buffer.freeze())))
}

/// Read and discard up to `budget` more bytes of `body`.
async fn drain(body: &mut Body, budget: usize) {
    let mut left = budget;
    while left > 0 {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    left = left.saturating_sub(data.len());
                }
            }
            Some(Err(_)) | None => return,
        }
    }
}

/// Collapse repeated slashes and reject paths that are not valid percent-encoded UTF-8.
fn normalize(req: Request<Body>) -> Result<Request<Body>> {
    let path = req.uri().path();
    check_path(path)?;
    if !path.contains("//") {
        return Ok(req);
    }
    let mut collapsed = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{collapsed}?{query}"),
        None => collapsed,
    };
    let (mut parts, body) = req.into_parts();
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.path_and_query = Some(
        PathAndQuery::try_from(path_and_query)
            .map_err(|err| Error::bad_request(format!("The request path is not valid: {err}.")))?,
    );
    parts.uri = Uri::from_parts(uri)
        .map_err(|err| Error::bad_request(format!("The request URI is not valid: {err}.")))?;
    Ok(Request::from_parts(parts, body))
}

/// A path must start with `/`, use `%` only for two-hex-digit escapes, and decode to UTF-8.
fn check_path(path: &str) -> Result<()> {
    let shown = truncated(path, 200);
    if !path.starts_with('/') {
        return Err(Error::bad_request(format!(
            "The request target `{shown}` is not a path starting with `/`."
        )));
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let escape = bytes.get(i + 1..i + 3);
            let valid = escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
            if !valid {
                let found = String::from_utf8_lossy(&bytes[i..bytes.len().min(i + 3)]).into_owned();
                return Err(Error::bad_request(format!(
                    "The request path `{shown}` is not valid: `{found}` is not a percent-escape \
                     (`%` must be followed by two hexadecimal digits; write a literal `%` as `%25`)."
                )));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    if percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .is_err()
    {
        return Err(Error::bad_request(format!(
            "The request path `{shown}` is not valid: it does not decode to UTF-8. Percent-escapes \
             in a path must encode UTF-8 text."
        )));
    }
    Ok(())
}

fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

struct AcceptLoop {
    listener: TcpListener,
    origin: Origin,
    app: Arc<App>,
    phase: watch::Receiver<Phase>,
    tracker: mpsc::Sender<()>,
    open: Arc<AtomicUsize>,
    header_read_timeout: Duration,
}

/// Counts an open connection; dropping it (when the connection task ends) uncounts it and
/// releases its share of the shutdown tracker.
struct ConnectionGuard {
    _tracker: mpsc::Sender<()>,
    open: Arc<AtomicUsize>,
}

impl ConnectionGuard {
    fn new(tracker: mpsc::Sender<()>, open: Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard {
            _tracker: tracker,
            open,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(mut state: AcceptLoop) {
    loop {
        let accepted = tokio::select! {
            changed = state.phase.changed() => {
                if changed.is_err() || *state.phase.borrow_and_update() != Phase::Serving {
                    break;
                }
                continue;
            }
            accepted = state.listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(origin = state.origin.label(), "accept failed: {err}");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "could not set TCP_NODELAY: {err}");
        }
        let guard = ConnectionGuard::new(state.tracker.clone(), state.open.clone());
        tokio::spawn(serve_connection(
            stream,
            peer,
            state.origin,
            state.app.clone(),
            state.phase.clone(),
            state.header_read_timeout,
            guard,
        ));
    }
    tracing::debug!(
        origin = state.origin.label(),
        "stopped accepting connections"
    );
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    origin: Origin,
    app: Arc<App>,
    mut phase: watch::Receiver<Phase>,
    header_read_timeout: Duration,
    _guard: ConnectionGuard,
) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(origin, peer, req.map(Body::new)).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    if *phase.borrow_and_update() != Phase::Serving {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, origin = origin.label(), "connection closed: {err}");
                }
                return;
            }
            changed = phase.changed() => {
                let now = match changed {
                    Ok(()) => *phase.borrow_and_update(),
                    Err(_) => Phase::Closing,
                };
                match now {
                    Phase::Serving => {}
                    Phase::Draining => connection.as_mut().graceful_shutdown(),
                    Phase::Closing => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_paths_through_the_client_api_strip_http() {
        assert_eq!(site_path_via_client("/http/hook"), Some("/hook"));
        assert_eq!(site_path_via_client("/http"), Some("/"));
        assert_eq!(site_path_via_client("/httpx"), None);
        assert_eq!(site_path_via_client("/api/query"), None);
    }

    #[test]
    fn paths_must_be_valid_escapes_of_utf8() {
        assert!(check_path("/a%20b/%E2%9C%93").is_ok());
        let bad_escape = check_path("/a%zz").expect_err("bad escape");
        assert!(bad_escape
            .message()
            .contains("`%zz` is not a percent-escape"));
        let truncated_escape = check_path("/a%2").expect_err("short escape");
        assert!(truncated_escape
            .message()
            .contains("`%2` is not a percent-escape"));
        let not_utf8 = check_path("/%ff").expect_err("not UTF-8");
        assert!(not_utf8.message().contains("does not decode to UTF-8"));
    }
}
