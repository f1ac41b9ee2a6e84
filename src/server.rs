//! Assembling a running deployment from an [`App`]: the store, the function runner, the
//! token validator, the two HTTP listeners, the sync WebSocket and the sign-in routes.
//!
//! The order matters and is the reason this file exists: the listeners are bound first
//! because the public origins (and so the issuer of our own tokens, the OAuth redirect
//! URIs, `CONVEX_SITE_URL`) are only known once a port of 0 became a real port; the
//! database opens next with every table (the app's, the system tables, the sign-in tables);
//! routes are checked for conflicts and for sign-in providers without routes before
//! anything is served.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use conflux_common::{Error, ErrorCode, Result, TokenValidator};
use conflux_db::{Database, Schema};
use conflux_functions::{system_tables, FunctionRunner, RunnerOptions};
use conflux_http::{
    client_api_routes, handler, Arrival, ClientApiState, FunctionRunnerActions, HttpRouter,
    NamedRoutes, Origins, Route, RouteMethod, RouteSet, RunningServer, ServerConfig,
    ShutdownOutcome, SiteRoutes,
};

use crate::app::App;
use crate::config::ServeConfig;

/// A running Conflux deployment.
pub struct Server {
    running: RunningServer,
    runner: FunctionRunner,
    sync: conflux_sync::SyncState,
    data_dir: PathBuf,
    sign_in: Option<Vec<String>>,
    web_app: Option<PathBuf>,
}

impl Server {
    /// The client API origin (`http://127.0.0.1:3210`): what `ConvexClient` and
    /// `ConvexHttpClient` are given.
    pub fn client_url(&self) -> &str {
        &self.running.origins().client
    }

    /// The site origin (`http://127.0.0.1:3211`): HTTP actions and sign-in routes.
    pub fn site_url(&self) -> &str {
        &self.running.origins().site
    }

    /// Both origins.
    pub fn origins(&self) -> &Origins {
        self.running.origins()
    }

    /// The function runner, to call functions in-process while serving.
    pub fn runner(&self) -> &FunctionRunner {
        &self.runner
    }

    /// The sync endpoint's state: live-query subscriptions (also usable in-process) and
    /// counters.
    pub fn sync(&self) -> &conflux_sync::SyncState {
        &self.sync
    }

    /// The data folder.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The sign-in providers users can sign in with (`["google"]`), or `None` when the
    /// built-in sign-in is not installed.
    pub fn sign_in_providers(&self) -> Option<&[String]> {
        self.sign_in.as_deref()
    }

    /// The folder of the built web front-end served on the site origin, if one is served.
    pub fn web_app_dir(&self) -> Option<&std::path::Path> {
        self.web_app.as_deref()
    }

    /// Stop accepting, close the sync connections and finish in-flight requests (up to the
    /// shutdown deadline). Every acknowledged write is already durable: a commit is only
    /// acknowledged after its flush, so there is nothing left to save.
    pub async fn shutdown(self) -> ShutdownOutcome {
        self.sync.disconnect_all();
        self.running.shutdown().await
    }
}

pub(crate) fn default_data_dir(app_name: &str) -> PathBuf {
    PathBuf::from(".conflux").join(app_name)
}

pub(crate) fn open_database(app: &App, data_dir: &std::path::Path) -> Result<Database> {
    let mut tables = app.tables.clone();
    if let Some(auth) = &app.auth {
        tables.extend(auth.tables());
    }
    open_tables(tables, data_dir)
}

/// Open the store in `data_dir` with the app's tables plus the system tables.
pub(crate) fn open_tables(
    tables: Vec<conflux_db::TableDef>,
    data_dir: &std::path::Path,
) -> Result<Database> {
    std::fs::create_dir_all(data_dir).map_err(|err| {
        Error::new(
            ErrorCode::StorageUnavailable,
            format!(
                "Could not create the data folder `{}`: {err}. Choose another one with --data.",
                data_dir.display()
            ),
        )
    })?;
    let mut schema = Schema::new();
    for table in tables.into_iter().chain(system_tables()) {
        schema = schema.table(table);
    }
    Database::open_sled(data_dir, schema).map_err(|err| {
        if err.message().contains("lock") || err.detail().is_some_and(|d| d.contains("lock")) {
            err.context(format!(
                "the data folder `{}` is in use by another process (a running server?); stop it first",
                data_dir.display()
            ))
        } else {
            err
        }
    })
}

/// What the sign-in contributes, prepared before the runner exists.
struct Prepared {
    installed_auth: Option<conflux_auth::InstalledAuth>,
    auth_config: conflux_auth::AuthConfig,
    extra_sets: Vec<Box<dyn RouteSet>>,
    configured_providers: Vec<String>,
}

/// Install the built-in sign-in (functions, routes, our own issuer), all tied to the site
/// origin, and collect the token providers.
fn prepare_auth(
    app: &mut App,
    data_dir: &std::path::Path,
    origins: &Origins,
    dev_mode: bool,
) -> Result<Prepared> {
    let mut extra_sets: Vec<Box<dyn RouteSet>> = Vec::new();
    let mut auth_config = app.token_providers.clone();
    let mut installed_auth = None;
    let mut configured_providers = Vec::new();
    if let Some(auth) = app.auth.take() {
        let installed = auth.install(conflux_auth::InstallContext {
            data_dir: data_dir.to_path_buf(),
            origins: origins.clone(),
            dev_mode,
        })?;
        app.registry.merge(installed.functions())?;
        extra_sets.push(Box::new(installed.routes()));
        auth_config = auth_config.with_own_issuer(installed.own_issuer());
        configured_providers = installed.providers();
        installed_auth = Some(installed);
    }
    Ok(Prepared {
        installed_auth,
        auth_config,
        extra_sets,
        configured_providers,
    })
}

fn build_validator(
    auth_config: conflux_auth::AuthConfig,
    installed: Option<&conflux_auth::InstalledAuth>,
) -> Result<Option<conflux_auth::JwtValidator>> {
    if auth_config.providers.is_empty() && auth_config.own_issuer.is_none() {
        return Ok(None);
    }
    let mut builder = conflux_auth::JwtValidator::builder(auth_config);
    if let Some(installed) = installed {
        builder = builder.session_checker(installed.session_checker());
    }
    builder.build().map(Some)
}

/// The origins a server started with `config` would have, without binding: for the
/// commands that describe a deployment (`routes`, `auth check`).
fn planned_origins(config: &ServeConfig) -> Origins {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Origins::new(
        env("CONVEX_CLOUD_URL")
            .unwrap_or_else(|| format!("http://{}:{}", config.host, config.port)),
        env("CONVEX_SITE_URL")
            .unwrap_or_else(|| format!("http://{}:{}", config.host, config.site_port)),
    )
}

fn data_dir_of(app: &App, config: &ServeConfig) -> PathBuf {
    config
        .data
        .clone()
        .unwrap_or_else(|| default_data_dir(&app.name))
}

/// What `routes` prints: every HTTP route, the origins it answers on, and the built web
/// front-end when one is served.
pub(crate) struct RoutePlan {
    /// The routes, sorted by path.
    pub routes: Vec<conflux_http::RouteInfo>,
    /// The origins a server started with the same configuration would have.
    pub origins: Origins,
    /// The folder of the built front-end, when it exists.
    pub web_app: Option<PathBuf>,
    /// The configured sign-in providers.
    pub providers: Vec<String>,
}

/// Every HTTP route of the app with its origin, as `routes` prints them.
pub(crate) fn plan_routes(mut app: App, config: &ServeConfig) -> Result<RoutePlan> {
    app.take_errors()?;
    let data_dir = data_dir_of(&app, config);
    let origins = planned_origins(config);
    let dev_mode = config.dev.unwrap_or(app.dev_default);
    let prepared = prepare_auth(&mut app, &data_dir, &origins, dev_mode)?;
    let web_app = app
        .static_dir
        .clone()
        .filter(|dir| dir.join("index.html").is_file());
    let providers = prepared.configured_providers.clone();
    let router = app.build_router(prepared.extra_sets)?.build()?;
    Ok(RoutePlan {
        routes: router.routes(),
        origins,
        web_app,
        providers,
    })
}

/// Every function of the app, the built-in sign-in's included, sorted by name, as
/// `functions` prints them.
pub(crate) fn plan_functions(
    mut app: App,
    config: &ServeConfig,
) -> Result<
    Vec<(
        String,
        conflux_functions::FunctionKind,
        conflux_functions::Visibility,
    )>,
> {
    app.take_errors()?;
    let data_dir = data_dir_of(&app, config);
    let origins = planned_origins(config);
    let dev_mode = config.dev.unwrap_or(app.dev_default);
    prepare_auth(&mut app, &data_dir, &origins, dev_mode)?;
    let mut functions: Vec<_> = app
        .registry
        .iter()
        .map(|def| (def.path.to_string(), def.kind(), def.visibility))
        .collect();
    functions.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(functions)
}

/// Decode `token` and run every validation step against the app's providers and our own
/// issuer, for `auth check`.
pub(crate) async fn explain_token(
    mut app: App,
    config: &ServeConfig,
    token: &str,
) -> Result<(conflux_auth::ValidationReport, Origins)> {
    app.take_errors()?;
    let data_dir = data_dir_of(&app, config);
    let origins = planned_origins(config);
    let dev_mode = config.dev.unwrap_or(app.dev_default);
    let prepared = prepare_auth(&mut app, &data_dir, &origins, dev_mode)?;
    let validator = build_validator(prepared.auth_config, None)?.ok_or_else(|| {
        Error::new(
            ErrorCode::NoAuthProvider,
            "This app trusts no token issuer: it has neither the built-in sign-in nor token \
             providers, so every token is rejected.",
        )
    })?;
    Ok((validator.explain(token).await, origins))
}

/// Open the app's store for `export` / `import` (the server must not be running).
pub(crate) fn open_for_maintenance(app: &App, config: &ServeConfig) -> Result<Database> {
    open_database(app, &data_dir_of(app, config))
}

pub(crate) async fn start(mut app: App, config: &ServeConfig) -> Result<Server> {
    let started = Instant::now();
    app.take_errors()?;
    let dev_mode = config.dev.unwrap_or(app.dev_default);
    let data_dir = data_dir_of(&app, config);
    let host = config.host.parse().map_err(|_| {
        Error::bad_request(format!(
            "--host `{}` is not an IP address; use 127.0.0.1 for this machine only or 0.0.0.0 for every interface",
            config.host
        ))
    })?;
    let http_config = ServerConfig {
        host,
        client_port: config.port,
        site_port: config.site_port,
        dev_mode,
        site_origin: std::env::var("CONVEX_SITE_URL")
            .ok()
            .filter(|s| !s.is_empty()),
        client_origin: std::env::var("CONVEX_CLOUD_URL")
            .ok()
            .filter(|s| !s.is_empty()),
        ..ServerConfig::default()
    };
    let bound = conflux_http::bind(http_config).await?;
    let origins = bound.origins().clone();

    let db = {
        let app = &app;
        let data_dir = data_dir.clone();
        tokio::task::block_in_place(|| open_database(app, &data_dir))?
    };

    let Prepared {
        installed_auth,
        auth_config,
        mut extra_sets,
        configured_providers,
    } = prepare_auth(&mut app, &data_dir, &origins, dev_mode)?;
    let sign_in = installed_auth
        .as_ref()
        .map(|_| configured_providers.clone());
    let validator: Option<Arc<dyn TokenValidator>> =
        build_validator(auth_config, installed_auth.as_ref())?
            .map(|validator| Arc::new(validator) as Arc<dyn TokenValidator>);

    let mut env = app.env.clone();
    env.insert("CONVEX_CLOUD_URL".into(), origins.client.clone());
    env.insert("CONVEX_SITE_URL".into(), origins.site.clone());
    let registry = std::mem::take(&mut app.registry);
    let runner = FunctionRunner::new(
        db,
        registry,
        RunnerOptions {
            dev_mode,
            env,
            ..RunnerOptions::default()
        },
    );
    if let Some(installed) = &installed_auth {
        installed.attach(runner.clone(), validator.clone());
    }

    // The site: the app's HTTP actions, mounted sets, and the built front-end last.
    let static_router: Arc<OnceLock<Arc<HttpRouter>>> = Arc::new(OnceLock::new());
    let mut web_app = None;
    if let Some(dir) = app.static_dir.clone() {
        if dir.join("index.html").is_file() {
            web_app = Some(dir.clone());
            extra_sets.push(Box::new(static_files(StaticSite {
                dir,
                router: static_router.clone(),
                origins: origins.clone(),
                providers: configured_providers.clone(),
                dev_mode,
            })));
        } else {
            tracing::info!(
                dir = %dir.display(),
                "no built front-end there (no index.html), so only the API is served; build it \
                 (for the example: npm --prefix examples/chat/web ci && npm --prefix \
                 examples/chat/web run build) and restart"
            );
        }
    }
    let router = Arc::new(app.build_router(extra_sets)?.build()?);
    conflux_http::check_auth_mounted(&router, &configured_providers, &origins)?;
    let _ = static_router.set(router.clone());

    let mut sync = conflux_sync::SyncState::new(runner.clone(), validator.clone(), dev_mode);
    sync.auth_validation_delay = app.auth_validation_delay;
    let client_routes = client_api_routes(ClientApiState {
        runner: runner.clone(),
        token_validator: validator.clone(),
        dev_mode,
    })
    .merge(conflux_sync::sync_routes(sync.clone()));
    let site = SiteRoutes {
        router,
        runner: Arc::new(FunctionRunnerActions::new(runner.clone())),
        token_validator: validator,
    };
    let running = bound.serve(client_routes, site);
    tracing::info!(
        app = %app.name,
        data = %data_dir.display(),
        dev_mode,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "started"
    );
    Ok(Server {
        running,
        runner,
        sync,
        data_dir,
        sign_in,
        web_app,
    })
}

fn content_type(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Serve a built single-page app from `dir` on the site origin, as the lowest-priority
/// route (`GET /` prefix): every HTTP action and sign-in route wins over it. `/config.json`
/// tells the front-end where the client API is. Paths under `/api/` and `/.well-known/`
/// are never answered with the app: a miss there keeps its explanation.
struct StaticSite {
    dir: PathBuf,
    router: Arc<OnceLock<Arc<HttpRouter>>>,
    origins: Origins,
    providers: Vec<String>,
    dev_mode: bool,
}

fn static_files(site: StaticSite) -> NamedRoutes {
    let site = Arc::new(site);
    let serve = handler(move |req, _ctx| {
        let site = site.clone();
        async move {
            let StaticSite {
                dir,
                router,
                origins,
                providers,
                dev_mode,
            } = &*site;
            let dev_mode = *dev_mode;
            let path = req.url.path().to_string();
            if path == "/config.json" {
                let body = serde_json::json!({
                    "convexUrl": origins.client,
                    "siteUrl": origins.site,
                    "providers": providers,
                });
                return http::Response::builder()
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(http::header::CACHE_CONTROL, "no-store")
                    .body(Bytes::from(body.to_string()))
                    .map_err(Error::internal);
            }
            if path.starts_with("/api/") || path.starts_with("/.well-known/") {
                let explanation = match router.get() {
                    Some(router) => router
                        .explain_miss(&req.method, &path, Arrival::Site, origins)
                        .to_string(),
                    None => conflux_http::NO_MATCHING_ROUTES.to_string(),
                };
                tracing::warn!("{explanation}");
                let body = if dev_mode {
                    explanation
                } else {
                    conflux_http::NO_MATCHING_ROUTES.to_string()
                };
                return http::Response::builder()
                    .status(404)
                    .header(http::header::CONTENT_TYPE, conflux_http::TEXT_PLAIN_UTF8)
                    .body(Bytes::from(body))
                    .map_err(Error::internal);
            }
            let relative = path.trim_start_matches('/');
            let safe = !relative
                .split('/')
                .any(|part| part == ".." || part.starts_with('.'));
            let candidate = dir.join(relative);
            let file = if safe && !relative.is_empty() && candidate.is_file() {
                candidate
            } else {
                dir.join("index.html")
            };
            let bytes = tokio::fs::read(&file).await.map_err(|err| {
                Error::internal(format!("could not read `{}`: {err}", file.display()))
            })?;
            let cache = if file.ends_with("index.html") {
                "no-cache"
            } else {
                "public, max-age=3600"
            };
            http::Response::builder()
                .header(http::header::CONTENT_TYPE, content_type(&file))
                .header(http::header::CACHE_CONTROL, cache)
                .body(Bytes::from(bytes))
                .map_err(Error::internal)
        }
    });
    NamedRoutes::new(
        "static files",
        vec![Route::path_prefix(RouteMethod::Get, "/", serve)],
    )
}
