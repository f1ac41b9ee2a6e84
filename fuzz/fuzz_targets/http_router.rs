//! The router of HTTP actions: building it from routes of several route sets, looking up
//! arbitrary methods and paths, and explaining misses.
//!
//! Input, one item per line:
//!
//! ```text
//! providers google github      the `auth` set serves sign-in for these providers
//! app GET /hello               an exact route of the `app` set
//! auth GET /api/auth/signin/ * a path-prefix route of the `auth` set
//! ? HEAD /hello                a request: method (any token) and path
//! check google                 check_auth_mounted for these configured providers
//! ```
//!
//! Beyond "no panic", checked against a model of the documented rules (exact route first,
//! then the longest prefix with the method, HEAD served by GET, sign-in paths only for the
//! declared providers):
//! - the router builds exactly when every path is well formed and no (method, path, kind)
//!   is registered twice;
//! - every lookup (of each request line, of every registered path, and of a path under
//!   every prefix) finds what the model finds; in particular a registered exact path always
//!   finds its own route;
//! - a miss is explained in every arrival mode, listing at most three routes, all registered;
//! - `check_auth_mounted` passes exactly when every provider's sign-in and callback paths
//!   are served.

#![no_main]

use bytes::Bytes;
use conflux_fuzz::text;
use conflux_http::router::{NamedRoutes, RouteKind, CALLBACK_PATH_PREFIX, SIGN_IN_PATH_PREFIX};
use conflux_http::{
    check_auth_mounted, handler, Arrival, HttpActionHandler, HttpRouter, Origins, Route,
    RouteMethod, RouterBuilder,
};
use http::Method;
use libfuzzer_sys::fuzz_target;

/// A route as the model sees it.
#[derive(Clone, Debug)]
struct Spec {
    auth_set: bool,
    method: RouteMethod,
    path: String,
    kind: RouteKind,
}

fn noop() -> HttpActionHandler {
    handler(|_req, _ctx| async { Ok(http::Response::new(Bytes::new())) })
}

fn route_method(token: &str) -> Option<RouteMethod> {
    RouteMethod::ALL.into_iter().find(|m| m.as_str() == token)
}

fn well_formed(spec: &Spec) -> bool {
    let path = &spec.path;
    path.starts_with('/')
        && (spec.kind == RouteKind::Exact || path.ends_with('/'))
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'?' && b != b'#')
}

fn provider_in_path(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix(SIGN_IN_PATH_PREFIX)
        .or_else(|| path.strip_prefix(CALLBACK_PATH_PREFIX))?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// The route the documented rules pick for `method` on `path`: `(path, kind)`.
fn model_lookup(
    specs: &[Spec],
    providers: Option<&[String]>,
    method: &Method,
    path: &str,
) -> Option<(String, RouteKind)> {
    let method = RouteMethod::for_request(method)?;
    let exact = specs
        .iter()
        .find(|s| s.kind == RouteKind::Exact && s.method == method && s.path == path);
    let found = exact.or_else(|| {
        specs
            .iter()
            .filter(|s| s.kind == RouteKind::Prefix && s.method == method)
            .filter(|s| path.starts_with(s.path.as_str()))
            .max_by_key(|s| s.path.len())
    })?;
    if found.auth_set {
        if let (Some(providers), Some(provider)) = (providers, provider_in_path(path)) {
            if !providers.iter().any(|p| p == provider) {
                return None;
            }
        }
    }
    Some((found.path.clone(), found.kind))
}

fn check_lookup(
    router: &HttpRouter,
    specs: &[Spec],
    providers: Option<&[String]>,
    method: &Method,
    path: &str,
) {
    let found = router
        .lookup(method, path)
        .map(|info| (info.path.clone(), info.kind));
    let expected = model_lookup(specs, providers, method, path);
    assert_eq!(found, expected, "lookup of {method} {path:?}");
}

fn check_miss(router: &HttpRouter, method: &Method, path: &str, origins: &Origins) {
    let registered = router.routes();
    for arrival in [Arrival::Site, Arrival::SiteViaClient, Arrival::Client] {
        let explanation = router.explain_miss(method, path, arrival, origins);
        let rendered = explanation.to_string();
        assert!(rendered.starts_with(&explanation.summary));
        assert!(explanation.closest.len() <= 3);
        for route in &explanation.closest {
            assert!(
                registered.contains(route),
                "listed an unregistered route {route}"
            );
        }
        if registered.is_empty() && arrival != Arrival::Client {
            assert!(explanation.closest.is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let input = text(data);
    let mut specs = Vec::new();
    let mut providers: Option<Vec<String>> = None;
    let mut requests: Vec<(Method, String)> = Vec::new();
    let mut checks: Vec<Vec<String>> = Vec::new();
    for line in input.lines().take(64) {
        let mut words = line.split(' ');
        match words.next() {
            Some("providers") => {
                providers = Some(words.map(str::to_owned).collect());
            }
            Some("check") => checks.push(words.map(str::to_owned).collect()),
            Some("?") => {
                let (Some(method), Some(path)) = (words.next(), words.next()) else {
                    continue;
                };
                if let Ok(method) = Method::from_bytes(method.as_bytes()) {
                    requests.push((method, path.to_owned()));
                }
            }
            Some(set @ ("app" | "auth")) => {
                let (Some(method), Some(path)) = (words.next(), words.next()) else {
                    continue;
                };
                let Some(method) = route_method(method) else {
                    continue;
                };
                let kind = match words.next() {
                    Some("*") => RouteKind::Prefix,
                    _ => RouteKind::Exact,
                };
                specs.push(Spec {
                    auth_set: set == "auth",
                    method,
                    path: path.to_owned(),
                    kind,
                });
            }
            _ => {}
        }
    }

    let mut builder = RouterBuilder::new();
    let mut auth_routes = Vec::new();
    for spec in &specs {
        let route = match spec.kind {
            RouteKind::Exact => Route::new(spec.method, spec.path.clone(), noop()),
            RouteKind::Prefix => Route::path_prefix(spec.method, spec.path.clone(), noop()),
        };
        if spec.auth_set {
            auth_routes.push(route);
        } else {
            builder.route(route);
        }
    }
    let any_auth = !auth_routes.is_empty() || providers.is_some();
    if any_auth {
        let set = NamedRoutes::new("auth", auth_routes);
        match &providers {
            Some(list) => builder.mount(set.with_sign_in_providers(list.clone())),
            None => builder.mount(set),
        };
    }

    let mut seen = std::collections::HashSet::new();
    let model_ok = specs
        .iter()
        .all(|spec| well_formed(spec) && seen.insert((spec.method, spec.path.clone(), spec.kind)));
    let router = match builder.build() {
        Ok(router) => {
            assert!(
                model_ok,
                "built a router from routes the rules refuse: {specs:?}"
            );
            router
        }
        Err(err) => {
            assert!(!model_ok, "refused valid routes: {err}");
            assert!(err.message().starts_with("The HTTP routes cannot be built"));
            return;
        }
    };
    assert_eq!(router.routes().len(), specs.len());
    let declared = providers.as_deref();

    let origins = Origins::new("http://127.0.0.1:3210", "http://127.0.0.1:3211");
    for spec in &specs {
        let method = match spec.method {
            RouteMethod::Get => Method::GET,
            RouteMethod::Post => Method::POST,
            RouteMethod::Put => Method::PUT,
            RouteMethod::Patch => Method::PATCH,
            RouteMethod::Delete => Method::DELETE,
            RouteMethod::Options => Method::OPTIONS,
        };
        check_lookup(&router, &specs, declared, &method, &spec.path);
        if spec.kind == RouteKind::Exact
            && (!spec.auth_set || provider_in_path(&spec.path).is_none())
        {
            let found = router.lookup(&method, &spec.path).map(|info| info.path);
            assert_eq!(
                found.as_deref(),
                Some(spec.path.as_str()),
                "a registered path misses"
            );
        }
        if spec.method == RouteMethod::Get {
            check_lookup(&router, &specs, declared, &Method::HEAD, &spec.path);
        }
        let below = format!("{}x", spec.path);
        check_lookup(&router, &specs, declared, &method, &below);
    }
    for (method, path) in &requests {
        check_lookup(&router, &specs, declared, method, path);
        if router.lookup(method, path).is_none() {
            check_miss(&router, method, path, &origins);
        }
    }
    for configured in &checks {
        let served = configured.iter().all(|provider| {
            [SIGN_IN_PATH_PREFIX, CALLBACK_PATH_PREFIX]
                .iter()
                .all(|prefix| {
                    model_lookup(
                        &specs,
                        declared,
                        &Method::GET,
                        &format!("{prefix}{provider}"),
                    )
                    .is_some()
                })
        });
        let checked = check_auth_mounted(&router, configured, &origins);
        assert_eq!(checked.is_ok(), served, "check_auth_mounted: {checked:?}");
    }
});
