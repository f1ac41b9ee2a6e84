//! The router of HTTP actions: the routes users write, plus the route sets other crates
//! contribute (the sign-in routes of the auth crate).
//!
//! Matching follows the rules users know from Convex's `httpRouter`:
//!
//! 1. a route registered for the exact path and the method wins;
//! 2. otherwise the route with the longest path prefix that starts the path (prefixes end
//!    in `/`) and has the method;
//! 3. `HEAD` is answered by the `GET` route (the body is dropped);
//! 4. the methods are `GET`, `POST`, `PUT`, `PATCH`, `DELETE` and `OPTIONS`.
//!
//! Paths are matched as they travel on the wire (percent-encoded), after the server has
//! collapsed repeated slashes; matching on decoded paths would let `%2F` change which route
//! a request reaches.
//!
//! Routes come in named [`RouteSet`]s so that a conflict between two contributors (the
//! application and the auth crate both claiming `GET /api/auth/signin/`) is an error at
//! start-up naming both, not a silent shadowing discovered after an OAuth redirect.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use conflux_common::{Error, ErrorCode, Result};
use http::Method;

use crate::action::HttpActionHandler;
use crate::origins::Origin;

/// The name of the route set holding the routes added with [`RouterBuilder::route`]: the
/// application's own HTTP actions.
pub const APP_ROUTE_SET: &str = "app";
/// Every sign-in route lives under this path.
pub const AUTH_PATH_PREFIX: &str = "/api/auth/";
/// The path prefix of the route that starts an OAuth sign-in: `/api/auth/signin/<provider>`.
pub const SIGN_IN_PATH_PREFIX: &str = "/api/auth/signin/";
/// The path prefix of the OAuth redirect target: `/api/auth/callback/<provider>`.
pub const CALLBACK_PATH_PREFIX: &str = "/api/auth/callback/";

/// An HTTP method a route can be registered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteMethod {
    /// `GET` (also answers `HEAD`).
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
    /// `OPTIONS`.
    Options,
}

impl RouteMethod {
    /// Every route method, in the order they are listed to users.
    pub const ALL: [RouteMethod; 6] = [
        RouteMethod::Get,
        RouteMethod::Post,
        RouteMethod::Put,
        RouteMethod::Patch,
        RouteMethod::Delete,
        RouteMethod::Options,
    ];

    /// The method's name, e.g. `"GET"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteMethod::Get => "GET",
            RouteMethod::Post => "POST",
            RouteMethod::Put => "PUT",
            RouteMethod::Patch => "PATCH",
            RouteMethod::Delete => "DELETE",
            RouteMethod::Options => "OPTIONS",
        }
    }

    /// The route method that serves a request with `method`: `HEAD` is served by `GET`;
    /// `None` for methods HTTP actions do not serve (`TRACE`, `CONNECT`, extensions).
    pub fn for_request(method: &Method) -> Option<RouteMethod> {
        match *method {
            Method::GET | Method::HEAD => Some(RouteMethod::Get),
            Method::POST => Some(RouteMethod::Post),
            Method::PUT => Some(RouteMethod::Put),
            Method::PATCH => Some(RouteMethod::Patch),
            Method::DELETE => Some(RouteMethod::Delete),
            Method::OPTIONS => Some(RouteMethod::Options),
            _ => None,
        }
    }
}

impl fmt::Display for RouteMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a route matches one path or every path under a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// The route matches exactly its path.
    Exact,
    /// The route matches every path starting with its path, which ends in `/`.
    Prefix,
}

/// One route: a method, a path or path prefix, and the handler.
#[derive(Clone)]
pub struct Route {
    method: RouteMethod,
    path: String,
    kind: RouteKind,
    handler: HttpActionHandler,
}

impl Route {
    /// A route for exactly `path` (which starts with `/`).
    pub fn new(method: RouteMethod, path: impl Into<String>, handler: HttpActionHandler) -> Self {
        Route {
            method,
            path: path.into(),
            kind: RouteKind::Exact,
            handler,
        }
    }

    /// A route for every path starting with `path_prefix` (which starts and ends with `/`).
    pub fn path_prefix(
        method: RouteMethod,
        path_prefix: impl Into<String>,
        handler: HttpActionHandler,
    ) -> Self {
        Route {
            method,
            path: path_prefix.into(),
            kind: RouteKind::Prefix,
            handler,
        }
    }

    /// The route's method.
    pub fn method(&self) -> RouteMethod {
        self.method
    }

    /// The route's path or path prefix.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the route is exact or a prefix.
    pub fn kind(&self) -> RouteKind {
        self.kind
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A named set of routes contributed by one crate or component.
///
/// The auth crate contributes its sign-in routes this way (`App::auth` mounts them).
/// The name appears in conflict errors, in `routes` listings and in explanations of
/// misses.
pub trait RouteSet: Send + Sync {
    /// A short name for the set, e.g. `"auth"`.
    fn name(&self) -> &str;

    /// The routes of the set.
    fn routes(&self) -> Vec<Route>;

    /// For a set that serves sign-in: the ids of the providers it serves. Its routes
    /// under [`SIGN_IN_PATH_PREFIX`] and [`CALLBACK_PATH_PREFIX`] then answer only for
    /// those providers; a request naming another provider gets "No matching routes found"
    /// with the list of configured providers. `None` (the default) for other sets.
    fn sign_in_providers(&self) -> Option<Vec<String>> {
        None
    }
}

/// A [`RouteSet`] made of a name and a list of routes.
#[derive(Clone, Debug)]
pub struct NamedRoutes {
    name: String,
    routes: Vec<Route>,
    sign_in_providers: Option<Vec<String>>,
}

impl NamedRoutes {
    /// A set called `name` holding `routes`.
    pub fn new(name: impl Into<String>, routes: Vec<Route>) -> Self {
        NamedRoutes {
            name: name.into(),
            routes,
            sign_in_providers: None,
        }
    }

    /// Declare the sign-in providers this set serves (see [`RouteSet::sign_in_providers`]).
    pub fn with_sign_in_providers(mut self, providers: Vec<String>) -> Self {
        self.sign_in_providers = Some(providers);
        self
    }
}

impl RouteSet for NamedRoutes {
    fn name(&self) -> &str {
        &self.name
    }

    fn routes(&self) -> Vec<Route> {
        self.routes.clone()
    }

    fn sign_in_providers(&self) -> Option<Vec<String>> {
        self.sign_in_providers.clone()
    }
}

/// A registered route as listed by [`HttpRouter::routes`] (for a `routes` command) and in
/// explanations of misses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// The method.
    pub method: RouteMethod,
    /// The path or path prefix.
    pub path: String,
    /// Exact path or prefix.
    pub kind: RouteKind,
    /// The origin serving the route. Routes of this router are site routes; they also
    /// answer on the client API origin under `/http`.
    pub origin: Origin,
    /// The name of the route set that registered it.
    pub set: String,
}

impl fmt::Display for RouteInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RouteKind::Exact => write!(f, "{} {} ({})", self.method, self.path, self.set),
            RouteKind::Prefix => {
                write!(
                    f,
                    "{} {} (path prefix, {})",
                    self.method, self.path, self.set
                )
            }
        }
    }
}

/// Collects routes and route sets; [`RouterBuilder::build`] checks them and produces the
/// [`HttpRouter`].
#[derive(Default)]
pub struct RouterBuilder {
    app_routes: Vec<Route>,
    sets: Vec<Box<dyn RouteSet>>,
}

impl RouterBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        RouterBuilder::default()
    }

    /// Add one of the application's own routes (route set [`APP_ROUTE_SET`]).
    pub fn route(&mut self, route: Route) -> &mut Self {
        self.app_routes.push(route);
        self
    }

    /// Mount a route set contributed by another crate.
    pub fn mount(&mut self, set: impl RouteSet + 'static) -> &mut Self {
        self.sets.push(Box::new(set));
        self
    }

    /// Check every route and build the router.
    ///
    /// Fails with [`ErrorCode::BadRequest`] and a message listing every problem: a path
    /// not starting with `/`, a prefix not ending with `/`, a path no request can carry,
    /// or two routes for the same method and path (or prefix), naming the route sets
    /// that registered them.
    pub fn build(&self) -> Result<HttpRouter> {
        let mut sets = Vec::with_capacity(self.sets.len() + 1);
        let mut contributed = Vec::with_capacity(self.sets.len() + 1);
        if !self.app_routes.is_empty() {
            sets.push(SetInfo {
                name: APP_ROUTE_SET.to_string(),
                sign_in_providers: None,
            });
            contributed.push(self.app_routes.clone());
        }
        for set in &self.sets {
            sets.push(SetInfo {
                name: set.name().to_string(),
                sign_in_providers: set.sign_in_providers(),
            });
            contributed.push(set.routes());
        }

        let mut problems = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut exact: HashMap<(RouteMethod, String), usize> = HashMap::new();
        let mut prefix_owner: HashMap<(RouteMethod, String), usize> = HashMap::new();
        for (set_index, routes) in contributed.into_iter().enumerate() {
            let set_name = &sets[set_index].name;
            for route in routes {
                if let Some(problem) = path_problem(&route, set_name) {
                    problems.push(problem);
                    continue;
                }
                let key = (route.method, route.path.clone());
                let owners = match route.kind {
                    RouteKind::Exact => &mut exact,
                    RouteKind::Prefix => &mut prefix_owner,
                };
                if let Some(&existing) = owners.get(&key) {
                    let existing_set = &sets[entries[existing].set].name;
                    problems.push(conflict_message(&route, existing_set, set_name));
                    continue;
                }
                owners.insert(key, entries.len());
                entries.push(Entry {
                    method: route.method,
                    path: route.path,
                    kind: route.kind,
                    handler: route.handler,
                    set: set_index,
                });
            }
        }
        if !problems.is_empty() {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!("The HTTP routes cannot be built:\n{}", problems.join("\n")),
            ));
        }

        let mut prefixes: Vec<usize> = prefix_owner.into_values().collect();
        prefixes.sort_by(|&a, &b| {
            entries[b]
                .path
                .len()
                .cmp(&entries[a].path.len())
                .then(a.cmp(&b))
        });
        Ok(HttpRouter {
            entries,
            exact,
            prefixes,
            sets,
        })
    }
}

fn path_problem(route: &Route, set: &str) -> Option<String> {
    let path = &route.path;
    let what = match route.kind {
        RouteKind::Exact => "path",
        RouteKind::Prefix => "path prefix",
    };
    if !path.starts_with('/') {
        return Some(format!(
            "- {} {what} `{path}` (route set `{set}`) must start with `/`.",
            route.method
        ));
    }
    if route.kind == RouteKind::Prefix && !path.ends_with('/') {
        return Some(format!(
            "- {} path prefix `{path}` (route set `{set}`) must end with `/`, e.g. `{path}/`; \
             use an exact route for a single path.",
            route.method
        ));
    }
    if path.contains("//") {
        return Some(format!(
            "- {} {what} `{path}` (route set `{set}`) contains `//`; request paths never do, \
             because the server collapses repeated slashes.",
            route.method
        ));
    }
    if path
        .bytes()
        .any(|b| !(0x21..=0x7e).contains(&b) || b == b'?' || b == b'#')
    {
        return Some(format!(
            "- {} {what} `{path}` (route set `{set}`) must be written as it appears in a URL: \
             visible ASCII, percent-encoded, without `?` or `#`.",
            route.method
        ));
    }
    None
}

fn conflict_message(route: &Route, first_set: &str, second_set: &str) -> String {
    let what = match route.kind {
        RouteKind::Exact => "path",
        RouteKind::Prefix => "path prefix",
    };
    if first_set == second_set {
        format!(
            "- {} {what} `{}` is registered twice by route set `{first_set}`. Remove one of them.",
            route.method, route.path
        )
    } else {
        format!(
            "- {} {what} `{}` is registered by both route set `{first_set}` and route set \
             `{second_set}`. Remove it from one of them.",
            route.method, route.path
        )
    }
}

struct SetInfo {
    name: String,
    sign_in_providers: Option<Vec<String>>,
}

pub(crate) struct Entry {
    pub(crate) method: RouteMethod,
    pub(crate) path: String,
    pub(crate) kind: RouteKind,
    pub(crate) handler: HttpActionHandler,
    set: usize,
}

/// The checked, immutable router of HTTP actions, shared by the site listener and the
/// `/http/` routes of the client API listener.
pub struct HttpRouter {
    entries: Vec<Entry>,
    exact: HashMap<(RouteMethod, String), usize>,
    /// Indexes of prefix routes, longest prefix first.
    prefixes: Vec<usize>,
    sets: Vec<SetInfo>,
}

impl HttpRouter {
    /// A router with no routes (every request is a miss).
    pub fn empty() -> Self {
        HttpRouter {
            entries: Vec::new(),
            exact: HashMap::new(),
            prefixes: Vec::new(),
            sets: Vec::new(),
        }
    }

    /// Every registered route, sorted by path then method: what a `routes` command prints.
    pub fn routes(&self) -> Vec<RouteInfo> {
        let mut routes: Vec<RouteInfo> = (0..self.entries.len()).map(|i| self.info(i)).collect();
        routes.sort_by(|a, b| (&a.path, a.kind, a.method).cmp(&(&b.path, b.kind, b.method)));
        routes
    }

    /// Whether no route is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The route that serves `method` on `path` (a normalized, still percent-encoded
    /// path), if any.
    pub fn lookup(&self, method: &Method, path: &str) -> Option<RouteInfo> {
        let method = RouteMethod::for_request(method)?;
        self.resolve(method, path).map(|i| self.info(i))
    }

    /// Whether some route set serves paths under [`AUTH_PATH_PREFIX`].
    pub fn auth_mounted(&self) -> bool {
        self.sets.iter().any(|set| set.sign_in_providers.is_some())
            || self
                .entries
                .iter()
                .any(|entry| entry.path.starts_with(AUTH_PATH_PREFIX))
    }

    /// The sign-in providers declared by the mounted route sets, if any set declares
    /// them (see [`RouteSet::sign_in_providers`]).
    pub fn sign_in_providers(&self) -> Option<Vec<String>> {
        let mut declared: Option<BTreeSet<String>> = None;
        for set in &self.sets {
            if let Some(providers) = &set.sign_in_providers {
                declared
                    .get_or_insert_with(BTreeSet::new)
                    .extend(providers.iter().cloned());
            }
        }
        declared.map(|providers| providers.into_iter().collect())
    }

    pub(crate) fn entry(&self, index: usize) -> &Entry {
        &self.entries[index]
    }

    pub(crate) fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn info(&self, index: usize) -> RouteInfo {
        let entry = &self.entries[index];
        RouteInfo {
            method: entry.method,
            path: entry.path.clone(),
            kind: entry.kind,
            origin: Origin::Site,
            set: self.sets[entry.set].name.clone(),
        }
    }

    /// The index of the entry serving `method` on `path`: exact first, then the longest
    /// prefix; a sign-in route of a set declaring its providers only serves those.
    pub(crate) fn resolve(&self, method: RouteMethod, path: &str) -> Option<usize> {
        let found = self
            .exact
            .get(&(method, path.to_string()))
            .copied()
            .or_else(|| {
                self.prefixes.iter().copied().find(|&i| {
                    let entry = &self.entries[i];
                    entry.method == method && path.starts_with(entry.path.as_str())
                })
            })?;
        let declared = self.sets[self.entries[found].set]
            .sign_in_providers
            .as_ref();
        match (declared, provider_in_path(path)) {
            (Some(providers), Some(provider)) if !providers.iter().any(|p| p == provider) => None,
            _ => Some(found),
        }
    }
}

impl fmt::Debug for HttpRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRouter")
            .field("routes", &self.routes())
            .finish()
    }
}

/// The provider id named by a sign-in or callback path (`/api/auth/signin/<id>...`).
pub(crate) fn provider_in_path(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix(SIGN_IN_PATH_PREFIX)
        .or_else(|| path.strip_prefix(CALLBACK_PATH_PREFIX))?;
    Some(rest.split('/').next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::handler;
    use bytes::Bytes;

    fn noop() -> HttpActionHandler {
        handler(|_req, _ctx| async { Ok(http::Response::new(Bytes::new())) })
    }

    #[test]
    fn exact_beats_prefix_and_the_longest_prefix_wins() {
        let router = RouterBuilder::new()
            .route(Route::path_prefix(RouteMethod::Get, "/", noop()))
            .route(Route::path_prefix(RouteMethod::Get, "/files/", noop()))
            .route(Route::path_prefix(
                RouteMethod::Get,
                "/files/images/",
                noop(),
            ))
            .route(Route::new(
                RouteMethod::Get,
                "/files/images/logo.png",
                noop(),
            ))
            .build()
            .expect("valid routes");
        let path_of = |p: &str| router.lookup(&Method::GET, p).map(|r| r.path);
        assert_eq!(
            path_of("/files/images/logo.png").as_deref(),
            Some("/files/images/logo.png")
        );
        assert_eq!(
            path_of("/files/images/a.png").as_deref(),
            Some("/files/images/")
        );
        assert_eq!(path_of("/files/a.txt").as_deref(), Some("/files/"));
        assert_eq!(path_of("/other").as_deref(), Some("/"));
        assert_eq!(router.lookup(&Method::POST, "/other"), None);
    }

    #[test]
    fn invalid_paths_are_all_reported_at_build() {
        let err = RouterBuilder::new()
            .route(Route::new(RouteMethod::Get, "no-slash", noop()))
            .route(Route::path_prefix(RouteMethod::Get, "/files", noop()))
            .route(Route::new(RouteMethod::Get, "/a b", noop()))
            .build()
            .expect_err("invalid routes");
        let message = err.message();
        assert!(
            message.contains("`no-slash` (route set `app`) must start with `/`"),
            "{message}"
        );
        assert!(
            message.contains("path prefix `/files` (route set `app`) must end with `/`"),
            "{message}"
        );
        assert!(message.contains("`/a b`"), "{message}");
    }

    #[test]
    fn provider_is_the_first_segment_after_the_sign_in_prefix() {
        assert_eq!(provider_in_path("/api/auth/signin/google"), Some("google"));
        assert_eq!(
            provider_in_path("/api/auth/callback/github/extra"),
            Some("github")
        );
        assert_eq!(provider_in_path("/api/auth/other"), None);
    }
}
