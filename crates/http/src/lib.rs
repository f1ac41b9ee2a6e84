//! Conflux HTTP: the two origins of a deployment, the router of HTTP actions, and misses
//! that explain themselves.
//!
//! # Two origins
//!
//! A deployment answers on two origins, as Convex deployments do:
//!
//! - the **client API origin** (default `http://127.0.0.1:3210`, `*.convex.cloud` in
//!   Convex): the sync WebSocket and the function HTTP API (`/api/query`, ...), open to
//!   browser apps on any origin through CORS;
//! - the **site origin** (default `http://127.0.0.1:3211`, `*.convex.site`): the HTTP
//!   actions the application registers and the sign-in routes of the auth crate, at root
//!   paths (`/api/auth/callback/google`).
//!
//! The site routes also answer on the client API origin under `/http/`
//! (`http://127.0.0.1:3210/http/api/auth/callback/google`), as in the reference backend.
//!
//! # Why misses explain themselves
//!
//! The most common sign-in failure is an OAuth redirect URI (or `CONVEX_SITE_URL`) that
//! points at the client API origin instead of the site origin, or sign-in routes that were
//! never mounted. Both end in the same bare `No matching routes found`. Here every
//! unmatched request is explained in the log, and in dev mode in the response: the method
//! and URL, the closest routes, and for sign-in paths the precise mistake and its fix (see
//! [`diagnostics`]). [`check_auth_mounted`] catches the unmounted case at start-up.
//!
//! # Pieces
//!
//! - [`router`]: [`Route`], [`RouteSet`], [`RouterBuilder`] → [`HttpRouter`].
//! - [`client_api`]: the function HTTP API of the client API origin (`/api/query`,
//!   `/api/mutation`, `/api/action`, `/api/run/...`, ...), [`client_api_routes`].
//! - [`action`]: what a handler receives ([`HttpActionRequest`], [`HttpActionCtx`]) and
//!   the [`ActionRunner`] seam to the function runtime, implemented over the function
//!   runner by [`FunctionRunnerActions`] ([`function_runner`]).
//! - [`server`]: the two listeners ([`bind`], [`start`], [`RunningServer`]).
//! - [`response`]: [`error_response`], the JSON error body every non-function failure
//!   uses.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use conflux_http::{handler, Route, RouteMethod, RouterBuilder, ServerConfig, SiteRoutes};
//! # async fn run(runner: Arc<dyn conflux_http::ActionRunner>) -> conflux_common::Result<()> {
//! let router = RouterBuilder::new()
//!     .route(Route::new(
//!         RouteMethod::Get,
//!         "/hello",
//!         handler(|_req, _ctx| async { Ok(http::Response::new(Bytes::from("hello"))) }),
//!     ))
//!     .build()?;
//! let site = SiteRoutes { router: Arc::new(router), runner, token_validator: None };
//! let server = conflux_http::start(ServerConfig::default(), axum::Router::new(), site).await?;
//! println!("HTTP actions at {}/hello", server.origins().site);
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod action;
pub mod client_api;
pub mod diagnostics;
pub mod function_runner;
pub mod origins;
pub mod response;
pub mod router;
pub mod server;
mod site;

pub use action::{
    handler, ActionRunner, Caller, HttpActionCtx, HttpActionFuture, HttpActionHandler,
    HttpActionRequest,
};
pub use client_api::{client_api_routes, ClientApiState, ValueFormat, STATUS_UDF_FAILED};
pub use diagnostics::{
    check_auth_mounted, Arrival, MissExplanation, MOUNT_AUTH_ROUTES, NO_MATCHING_ROUTES,
};
pub use function_runner::FunctionRunnerActions;
pub use origins::{Origin, Origins};
pub use response::{error_response, text_response, TEXT_PLAIN_UTF8};
pub use router::{
    HttpRouter, NamedRoutes, Route, RouteInfo, RouteKind, RouteMethod, RouteSet, RouterBuilder,
    APP_ROUTE_SET, AUTH_PATH_PREFIX, CALLBACK_PATH_PREFIX, SIGN_IN_PATH_PREFIX,
};
pub use server::{
    bind, start, BoundServer, RunningServer, ServerConfig, ShutdownOutcome, SiteRoutes,
    DEFAULT_CLIENT_PORT, DEFAULT_SITE_PORT,
};
