//! Mistakes caught before the server starts: route sets that collide, and sign-in
//! providers whose routes are not mounted.

mod common;

use common::text;
use conflux_common::ErrorCode;
use conflux_http::{check_auth_mounted, NamedRoutes, Origins, Route, RouteMethod, RouterBuilder};

fn origins() -> Origins {
    Origins::new("http://127.0.0.1:3210", "http://127.0.0.1:3211")
}

fn auth_routes(providers: &[&str]) -> NamedRoutes {
    NamedRoutes::new(
        "auth",
        vec![
            Route::path_prefix(RouteMethod::Get, "/api/auth/signin/", text("redirect")),
            Route::path_prefix(RouteMethod::Get, "/api/auth/callback/", text("callback")),
        ],
    )
    .with_sign_in_providers(providers.iter().map(|p| p.to_string()).collect())
}

#[test]
fn configured_providers_without_mounted_routes_fail_start_up_with_the_fix() {
    let mut builder = RouterBuilder::new();
    builder.route(Route::new(RouteMethod::Get, "/hello", text("hello")));
    let router = builder.build().expect("valid routes");
    let err = check_auth_mounted(&router, &["google".to_string()], &origins())
        .expect_err("the sign-in routes are missing");
    assert_eq!(err.code(), ErrorCode::NoMatchingRoute);
    assert_eq!(
        err.message(),
        "Sign-in provider(s) google are configured, but the sign-in routes are not mounted: the \
         OAuth redirect to http://127.0.0.1:3211/api/auth/callback/google would fail with \
         \"No matching routes found\". The sign-in routes are not mounted: no route set serves \
         /api/auth/. Mount them with:\n    app.auth(AuthSetup::from_env()?)"
    );
}

#[test]
fn mounted_routes_that_do_not_serve_a_configured_provider_fail_start_up() {
    let mut builder = RouterBuilder::new();
    builder.mount(auth_routes(&["google"]));
    let router = builder.build().expect("valid routes");
    assert!(check_auth_mounted(&router, &["google".to_string()], &origins()).is_ok());
    let err = check_auth_mounted(
        &router,
        &["google".to_string(), "github".to_string()],
        &origins(),
    )
    .expect_err("github is not served");
    assert!(
        err.message().starts_with(
            "Sign-in provider(s) github are configured, but the mounted sign-in routes do not \
             serve them (they serve only: google): the OAuth redirect to \
             http://127.0.0.1:3211/api/auth/callback/github would fail"
        ),
        "{}",
        err.message()
    );
}

#[test]
fn no_configured_provider_needs_no_routes() {
    let router = RouterBuilder::new().build().expect("an empty router");
    assert!(check_auth_mounted(&router, &[], &origins()).is_ok());
}

#[test]
fn two_route_sets_claiming_the_same_route_are_named_in_the_error() {
    let mut builder = RouterBuilder::new();
    builder
        .route(Route::path_prefix(
            RouteMethod::Get,
            "/api/auth/signin/",
            text("mine"),
        ))
        .route(Route::new(RouteMethod::Post, "/webhook", text("first")))
        .route(Route::new(RouteMethod::Post, "/webhook", text("second")))
        // Same path, other method: no conflict.
        .route(Route::new(RouteMethod::Get, "/webhook", text("get")))
        .mount(auth_routes(&["google"]));
    let err = builder.build().expect_err("conflicting routes");
    assert_eq!(err.code(), ErrorCode::BadRequest);
    assert_eq!(
        err.message(),
        "The HTTP routes cannot be built:\n\
         - POST path `/webhook` is registered twice by route set `app`. Remove one of them.\n\
         - GET path prefix `/api/auth/signin/` is registered by both route set `app` and route \
         set `auth`. Remove it from one of them."
    );
}
