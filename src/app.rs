//! The `App` builder: everything an application declares, in one value.
//!
//! An app is a schema, a set of functions, HTTP routes and (optionally) the built-in
//! sign-in. Declaring is infallible and chainable so an app reads top to bottom; mistakes
//! (a function registered twice, a bad path, conflicting routes) are collected and reported
//! together when the app starts, before anything listens.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use conflux_common::{Error, Result};
use conflux_db::{Schema, TableDef};
use conflux_functions::registry::Handler;
use conflux_functions::{ActionCtx, MutationCtx, QueryCtx, Registry, Visibility};
use conflux_http::{HttpActionHandler, Route, RouteMethod, RouteSet, RouterBuilder};
use conflux_values::validator::Validator;
use conflux_values::{Object, Value};

/// A Conflux application under construction. See the crate docs for an example.
pub struct App {
    pub(crate) name: String,
    pub(crate) tables: Vec<TableDef>,
    pub(crate) registry: Registry,
    pub(crate) routes: Vec<Route>,
    pub(crate) route_sets: Vec<Box<dyn RouteSet>>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) static_dir: Option<PathBuf>,
    pub(crate) auth: Option<conflux_auth::AuthSetup>,
    pub(crate) token_providers: conflux_auth::AuthConfig,
    pub(crate) dev_default: bool,
    pub(crate) auth_validation_delay: Option<std::time::Duration>,
    pub(crate) errors: Vec<Error>,
}

impl App {
    /// A new app. `name` names its default data folder (`./.conflux/<name>`).
    pub fn new(name: impl Into<String>) -> App {
        App {
            name: name.into(),
            tables: Vec::new(),
            registry: Registry::new(),
            routes: Vec::new(),
            route_sets: Vec::new(),
            env: BTreeMap::new(),
            static_dir: None,
            auth: None,
            token_providers: conflux_auth::AuthConfig::new(),
            dev_default: false,
            auth_validation_delay: None,
            errors: Vec::new(),
        }
    }

    fn record<T>(&mut self, result: Result<T>) {
        if let Err(err) = result {
            self.errors.push(err);
        }
    }

    /// Declare a table (its document validator and indexes).
    pub fn table(mut self, table: TableDef) -> App {
        self.tables.push(table);
        self
    }

    /// Declare every table of `schema`.
    pub fn schema(mut self, schema: Schema) -> App {
        self.tables.extend(schema.tables().cloned());
        self
    }

    /// A public query.
    pub fn query<F>(mut self, path: &str, args: Validator, handler: F) -> App
    where
        F: Fn(&mut QueryCtx<'_>, Object) -> Result<Value> + Send + Sync + 'static,
    {
        let result = self.registry.query(path, args, handler).map(|_| ());
        self.record(result);
        self
    }

    /// A public mutation.
    pub fn mutation<F>(mut self, path: &str, args: Validator, handler: F) -> App
    where
        F: Fn(&mut MutationCtx<'_>, Object) -> Result<Value> + Send + Sync + 'static,
    {
        let result = self.registry.mutation(path, args, handler).map(|_| ());
        self.record(result);
        self
    }

    /// A public action.
    pub fn action<F, Fut>(mut self, path: &str, args: Validator, handler: F) -> App
    where
        F: Fn(ActionCtx, Object) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Value>> + Send + 'static,
    {
        let result = self.registry.action(path, args, handler).map(|_| ());
        self.record(result);
        self
    }

    /// An internal query: callable from actions and HTTP actions, not from clients.
    pub fn internal_query<F>(mut self, path: &str, args: Validator, handler: F) -> App
    where
        F: Fn(&mut QueryCtx<'_>, Object) -> Result<Value> + Send + Sync + 'static,
    {
        let handler = Handler::Query(Arc::new(handler));
        let result = self
            .registry
            .register(path, Visibility::Internal, args, handler)
            .map(|_| ());
        self.record(result);
        self
    }

    /// An internal mutation: callable from actions and HTTP actions, not from clients.
    pub fn internal_mutation<F>(mut self, path: &str, args: Validator, handler: F) -> App
    where
        F: Fn(&mut MutationCtx<'_>, Object) -> Result<Value> + Send + Sync + 'static,
    {
        let handler = Handler::Mutation(Arc::new(handler));
        let result = self
            .registry
            .register(path, Visibility::Internal, args, handler)
            .map(|_| ());
        self.record(result);
        self
    }

    /// An HTTP action at an exact path on the site origin.
    pub fn route(mut self, method: RouteMethod, path: &str, handler: HttpActionHandler) -> App {
        self.routes.push(Route::new(method, path, handler));
        self
    }

    /// An HTTP action for every path under `prefix` (which ends with `/`).
    pub fn route_prefix(
        mut self,
        method: RouteMethod,
        prefix: &str,
        handler: HttpActionHandler,
    ) -> App {
        self.routes
            .push(Route::path_prefix(method, prefix, handler));
        self
    }

    /// Mount a set of routes contributed by another crate.
    pub fn mount(mut self, set: impl RouteSet + 'static) -> App {
        self.route_sets.push(Box::new(set));
        self
    }

    /// An environment variable visible to functions (`ctx.env(name)`).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> App {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Serve a built web front-end (e.g. Vite's `dist/`) on the site origin: paths that no
    /// HTTP action claims are answered from this folder, and unknown paths outside `/api/`
    /// get its `index.html` (single-page apps route in the browser).
    pub fn static_files(mut self, dir: impl Into<PathBuf>) -> App {
        self.static_dir = Some(dir.into());
        self
    }

    /// Turn on the built-in sign-in (see [`conflux_auth::AuthSetup`]).
    pub fn auth(mut self, auth: conflux_auth::AuthSetup) -> App {
        self.auth = Some(auth);
        self
    }

    /// Trust tokens of third-party issuers (OpenID Connect providers, custom JWT issuers)
    /// as `convex/auth.config.ts` does in Convex. Adds to any providers given before.
    pub fn token_providers(mut self, config: conflux_auth::AuthConfig) -> App {
        self.token_providers.providers.extend(config.providers);
        self
    }

    /// Read third-party token providers from a JSON file (`{"providers": [...]}`, the shape
    /// of Convex's `auth.config.ts`).
    pub fn token_providers_file(mut self, path: impl AsRef<std::path::Path>) -> App {
        match conflux_auth::AuthConfig::from_file(path.as_ref()) {
            Ok(config) => self.token_providers.providers.extend(config.providers),
            Err(err) => self.errors.push(err),
        }
        self
    }

    /// Make dev mode (detailed errors sent to clients) the default when neither `--dev`
    /// nor `CONFLUX_DEV` says otherwise; examples and local tools want it, production
    /// builds of an app do not.
    pub fn dev_by_default(mut self) -> App {
        self.dev_default = true;
        self
    }

    /// Test knob: delay the validation of every WebSocket `Authenticate` token by `delay`,
    /// widening the window between a client's sign-in and the server's confirmation so the
    /// sign-in race reproduces deterministically. Never use it in production.
    pub fn auth_validation_delay_for_tests(mut self, delay: std::time::Duration) -> App {
        self.auth_validation_delay = Some(delay);
        self
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn build_router(&mut self, extra: Vec<Box<dyn RouteSet>>) -> Result<RouterBuilder> {
        let mut builder = RouterBuilder::new();
        for route in self.routes.drain(..) {
            builder.route(route);
        }
        for set in self.route_sets.drain(..).chain(extra) {
            builder.mount(BoxedSet(set));
        }
        Ok(builder)
    }

    pub(crate) fn take_errors(&mut self) -> Result<()> {
        match self.errors.len() {
            0 => Ok(()),
            1 => Err(self.errors.remove(0)),
            n => {
                let lines: Vec<String> = self.errors.iter().map(|e| format!("  - {e}")).collect();
                Err(Error::bad_request(format!(
                    "The app has {n} problems:\n{}",
                    lines.join("\n")
                )))
            }
        }
    }
}

struct BoxedSet(Box<dyn RouteSet>);

impl RouteSet for BoxedSet {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn routes(&self) -> Vec<Route> {
        self.0.routes()
    }
    fn sign_in_providers(&self) -> Option<Vec<String>> {
        self.0.sign_in_providers()
    }
}
