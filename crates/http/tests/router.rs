//! The router of HTTP actions as users meet it: which route answers, and what a miss says.
//! Every test runs a real server on 127.0.0.1 and talks HTTP to it.

mod common;

use bytes::Bytes;
use common::{base, serve, test_config, text};
use conflux_common::{Error, ErrorCode};
use conflux_http::{
    handler, HttpRouter, NamedRoutes, Route, RouteKind, RouteMethod, RouterBuilder,
};
use serde_json::json;

fn app_router() -> RouterBuilder {
    let mut builder = RouterBuilder::new();
    builder
        .route(Route::new(
            RouteMethod::Get,
            "/messages",
            text("list messages"),
        ))
        .route(Route::new(
            RouteMethod::Post,
            "/messages",
            text("send message"),
        ))
        .route(Route::path_prefix(
            RouteMethod::Get,
            "/files/",
            text("any file"),
        ))
        .route(Route::path_prefix(
            RouteMethod::Get,
            "/files/images/",
            text("an image"),
        ))
        .route(Route::new(
            RouteMethod::Get,
            "/files/images/logo.png",
            text("the logo"),
        ));
    builder
}

/// The sign-in routes as the auth crate contributes them: prefix routes, serving Google.
fn auth_routes() -> NamedRoutes {
    NamedRoutes::new(
        "auth",
        vec![
            Route::path_prefix(
                RouteMethod::Get,
                "/api/auth/signin/",
                text("redirect to provider"),
            ),
            Route::path_prefix(RouteMethod::Get, "/api/auth/callback/", text("signed in")),
            Route::path_prefix(RouteMethod::Post, "/api/auth/callback/", text("signed in")),
        ],
    )
    .with_sign_in_providers(vec!["google".to_string()])
}

fn with_auth() -> HttpRouter {
    let mut builder = app_router();
    builder.mount(auth_routes());
    builder.build().expect("valid routes")
}

async fn get(url: &str) -> (u16, String, String) {
    send(reqwest::Client::new().get(url)).await
}

async fn send(request: reqwest::RequestBuilder) -> (u16, String, String) {
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.text().await.expect("a text body");
    (status, content_type, body)
}

#[tokio::test]
async fn an_exact_route_beats_a_prefix_and_the_longest_prefix_wins() {
    let server = serve(with_auth(), test_config(true)).await;
    let site = base(server.site_addr());
    assert_eq!(
        get(&format!("{site}/files/images/logo.png")).await.2,
        "the logo"
    );
    assert_eq!(
        get(&format!("{site}/files/images/cat.png")).await.2,
        "an image"
    );
    assert_eq!(get(&format!("{site}/files/readme.txt")).await.2, "any file");
    let post = send(reqwest::Client::new().post(format!("{site}/messages"))).await;
    assert_eq!(post.2, "send message");
    server.shutdown().await;
}

#[tokio::test]
async fn head_is_answered_by_the_get_route_without_a_body() {
    let server = serve(with_auth(), test_config(true)).await;
    let response = reqwest::Client::new()
        .head(format!("{}/messages", base(server.site_addr())))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some("13"),
        "HEAD keeps the length of the GET body (\"list messages\")"
    );
    assert_eq!(response.bytes().await.expect("empty body").len(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn site_routes_answer_on_the_site_and_under_http_on_the_client_api() {
    let mut builder = RouterBuilder::new();
    builder.route(Route::new(
        RouteMethod::Get,
        "/whereami",
        handler(
            |req, _ctx| async move { Ok(http::Response::new(Bytes::from(req.url.to_string()))) },
        ),
    ));
    let server = serve(builder.build().expect("valid routes"), test_config(false)).await;
    let site = base(server.site_addr());
    let client = base(server.client_addr());

    let (status, _, url) = get(&format!("{site}/whereami?x=1")).await;
    assert_eq!((status, url), (200, format!("{site}/whereami?x=1")));

    // Through the client API origin the handler sees the site path, without `/http`.
    let (status, _, url) = get(&format!("{client}/http/whereami?x=1")).await;
    assert_eq!((status, url), (200, format!("{client}/whereami?x=1")));

    // A proxy in front tells the scheme.
    let (_, _, url) = send(
        reqwest::Client::new()
            .get(format!("{site}/whereami"))
            .header("x-forwarded-proto", "https")
            .header("host", "app.example"),
    )
    .await;
    assert_eq!(url, "https://app.example/whereami");
    server.shutdown().await;
}

#[tokio::test]
async fn production_misses_say_only_no_matching_routes_found() {
    let server = serve(
        app_router().build().expect("valid routes"),
        test_config(false),
    )
    .await;
    for url in [
        format!("{}/nothing-here", base(server.site_addr())),
        format!("{}/api/auth/signin/google", base(server.site_addr())),
        format!(
            "{}/api/auth/callback/google?code=1",
            base(server.client_addr())
        ),
        format!("{}/http/nothing-here", base(server.client_addr())),
    ] {
        let (status, content_type, body) = get(&url).await;
        assert_eq!(status, 404, "{url}");
        assert_eq!(content_type, "text/plain; charset=utf-8", "{url}");
        assert_eq!(body, "No matching routes found", "{url}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_method_mismatch_lists_the_methods_the_path_has() {
    let server = serve(with_auth(), test_config(true)).await;
    let site = base(server.site_addr());
    let (status, content_type, body) =
        send(reqwest::Client::new().delete(format!("{site}/messages"))).await;
    assert_eq!(status, 404);
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert!(body.starts_with("No matching routes found\n\n"), "{body}");
    assert!(
        body.contains(&format!(
            "DELETE {site}/messages matches no route on the site origin."
        )),
        "{body}"
    );
    assert!(
        body.contains("/messages is registered for GET, POST, but not for DELETE."),
        "{body}"
    );

    let propfind = reqwest::Method::from_bytes(b"PROPFIND").expect("a valid method name");
    let (status, _, body) =
        send(reqwest::Client::new().request(propfind, format!("{site}/messages"))).await;
    assert_eq!(status, 404);
    assert!(
        body.contains(
            "PROPFIND is not a method HTTP actions serve: routes are registered for GET, POST, \
             PUT, PATCH, DELETE or OPTIONS, and HEAD is answered by the GET route."
        ),
        "{body}"
    );

    let mut builder = RouterBuilder::new();
    builder.route(Route::new(RouteMethod::Post, "/hook", text("hooked")));
    let post_only = serve(builder.build().expect("valid routes"), test_config(true)).await;
    let response = reqwest::Client::new()
        .head(format!("{}/hook", base(post_only.site_addr())))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 404);
    // A HEAD response has no body; the explanation is in the log. The GET says it.
    let (_, _, body) = get(&format!("{}/hook", base(post_only.site_addr()))).await;
    assert!(
        body.contains("/hook is registered for POST, but not for GET."),
        "{body}"
    );
    post_only.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_miss_lists_the_closest_routes() {
    let server = serve(with_auth(), test_config(true)).await;
    let (_, _, body) = get(&format!("{}/mesages", base(server.site_addr()))).await;
    assert!(
        body.contains("Closest routes:\n    GET /messages (app)\n    POST /messages (app)\n"),
        "{body}"
    );
    let (_, _, body) = get(&format!(
        "{}/api/auth/sigin/google",
        base(server.site_addr())
    ))
    .await;
    assert!(
        body.contains("Closest routes:\n    GET /api/auth/signin/ (path prefix, auth)\n"),
        "{body}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn sign_in_paths_without_mounted_auth_routes_say_how_to_mount_them() {
    let server = serve(
        app_router().build().expect("valid routes"),
        test_config(true),
    )
    .await;
    let site = base(server.site_addr());
    let (status, _, body) = get(&format!("{site}/api/auth/signin/google?code=abc")).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        format!(
            "No matching routes found\n\n\
             GET {site}/api/auth/signin/google matches no route on the site origin.\n\
             The sign-in routes are not mounted: no route set serves /api/auth/. Mount them with:\n    \
             app.auth(AuthSetup::from_env()?)\n\
             No route is close to this path; registered routes include:\n    \
             GET /files/ (path prefix, app)\n    \
             GET /files/images/ (path prefix, app)\n    \
             GET /files/images/logo.png (app)\n"
        )
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_provider_that_is_not_configured_is_named_with_the_configured_ones() {
    let server = serve(with_auth(), test_config(true)).await;
    let site = base(server.site_addr());
    let (status, _, body) = get(&format!("{site}/api/auth/signin/github?code=abc")).await;
    assert_eq!(status, 404);
    assert!(
        body.contains(
            "The sign-in provider `github` is not configured. Configured providers: google."
        ),
        "{body}"
    );
    let (status, _, body) = get(&format!("{site}/api/auth/callback/github?code=abc")).await;
    assert_eq!(status, 404);
    assert!(body.contains("`github` is not configured"), "{body}");
    // The configured provider is served by the mounted prefix route.
    assert_eq!(
        get(&format!("{site}/api/auth/signin/google?code=abc"))
            .await
            .2,
        "redirect to provider"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_oauth_callback_on_the_client_api_origin_names_the_redirect_uri_to_set() {
    let server = serve(with_auth(), test_config(true)).await;
    let site = base(server.site_addr());
    let client = base(server.client_addr());
    let (status, content_type, body) = get(&format!(
        "{client}/api/auth/callback/google?code=4/0Ab-secret"
    ))
    .await;
    assert_eq!(status, 404);
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert_eq!(
        body,
        format!(
            "No matching routes found\n\n\
             GET {client}/api/auth/callback/google matches no route on the client API origin.\n\
             This path belongs to the site origin {site}, where HTTP actions and sign-in routes are \
             served, not to the client API origin {client}. Send the request to \
             {site}/api/auth/callback/google (or {client}/http/api/auth/callback/google).\n\
             An OAuth redirect URI must use the site origin: set the redirect URI in the Google \
             console to {site}/api/auth/callback/google\n"
        )
    );
    assert!(!body.contains("secret"), "the OAuth code is never echoed");

    // The same callback is served where it belongs.
    assert_eq!(
        get(&format!("{site}/api/auth/callback/google?code=1"))
            .await
            .2,
        "signed in"
    );
    assert_eq!(
        get(&format!("{client}/http/api/auth/callback/google?code=1"))
            .await
            .2,
        "signed in"
    );

    // A sign-in URL built from the wrong origin points at CONVEX_SITE_URL.
    let (_, _, body) = get(&format!("{client}/api/auth/signin/google?code=1")).await;
    assert!(
        body.contains(&format!(
            "Sign-in URLs are built from the site origin (CONVEX_SITE_URL), which must be {site}, not {client}."
        )),
        "{body}"
    );
    // Any other site route on the client API origin is sent to the site as well.
    let (_, _, body) = get(&format!("{client}/messages")).await;
    assert!(
        body.contains(&format!("Send the request to {site}/messages")),
        "{body}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_client_api_path_explains_the_two_origins() {
    let server = serve(with_auth(), test_config(true)).await;
    let site = base(server.site_addr());
    let client = base(server.client_addr());
    let (status, _, body) = get(&format!("{client}/file/readme.txt")).await;
    assert_eq!(status, 404);
    assert!(
        body.contains(&format!(
            "The client API origin {client} serves the function API under /api/ and the HTTP \
             actions under /http/; HTTP actions are served at the root of the site origin {site}."
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "Closest routes (HTTP actions, at {site} and under {client}/http):\n    \
             GET /files/ (path prefix, app)\n"
        )),
        "{body}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn handlers_call_functions_as_the_caller_and_a_bad_token_fails_only_when_asked() {
    let mut builder = RouterBuilder::new();
    builder
        .route(Route::new(
            RouteMethod::Post,
            "/count",
            handler(|req, ctx| async move {
                let by: i64 = std::str::from_utf8(&req.body)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| Error::bad_request("send a number"))?;
                ctx.run_mutation("counter:add", json!({ "by": by })).await?;
                let now = ctx.run_query("counter:get", json!({})).await?;
                Ok(http::Response::new(Bytes::from(now.to_string())))
            }),
        ))
        .route(Route::new(
            RouteMethod::Get,
            "/me",
            handler(|_req, ctx| async move {
                let who = ctx.run_action("auth:whoami", json!({})).await?;
                Ok(http::Response::new(Bytes::from(who.to_string())))
            }),
        ))
        .route(Route::new(
            RouteMethod::Get,
            "/public",
            handler(|_req, _ctx| async { Ok(http::Response::new(Bytes::from("public"))) }),
        ));
    let server = serve(builder.build().expect("valid routes"), test_config(false)).await;
    let site = base(server.site_addr());
    let http = reqwest::Client::new();

    assert_eq!(
        send(http.post(format!("{site}/count")).body("2")).await.2,
        "2"
    );
    assert_eq!(
        send(http.post(format!("{site}/count")).body("3")).await.2,
        "5"
    );
    let (status, _, body) = send(http.post(format!("{site}/count")).body("two")).await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON error"),
        json!({"code": "BadRequest", "message": "send a number"})
    );

    assert_eq!(get(&format!("{site}/me")).await.2, "null");
    let (_, _, alice) = send(http.get(format!("{site}/me")).bearer_auth("alice-token")).await;
    assert_eq!(alice, "\"alice\"");

    // A forged token does not stop a handler that never asks who is calling...
    let (status, _, body) = send(
        http.get(format!("{site}/public"))
            .bearer_auth("forged-token"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "public"));
    // ...but asking for the identity returns the validation error.
    let (status, _, body) = send(http.get(format!("{site}/me")).bearer_auth("forged-token")).await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON error")["code"],
        "TokenSignatureInvalid"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_gets_a_500_and_the_server_keeps_serving() {
    let mut builder = RouterBuilder::new();
    builder
        .route(Route::new(
            RouteMethod::Get,
            "/boom",
            handler(|_req, _ctx| async {
                if std::hint::black_box(true) {
                    panic!("handler bug");
                }
                Err(Error::new(ErrorCode::Internal, "unreachable"))
            }),
        ))
        .route(Route::new(RouteMethod::Get, "/ok", text("ok")));
    let server = serve(builder.build().expect("valid routes"), test_config(false)).await;
    let site = base(server.site_addr());
    let (status, _, body) = get(&format!("{site}/boom")).await;
    assert_eq!(status, 500);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON error"),
        json!({"code": "Internal", "message": "Server Error"})
    );
    assert_eq!(get(&format!("{site}/ok")).await.2, "ok");
    server.shutdown().await;
}

#[test]
fn routes_are_listed_with_their_kind_origin_and_set() {
    let router = with_auth();
    let listed: Vec<String> = router.routes().iter().map(ToString::to_string).collect();
    assert_eq!(
        listed,
        [
            "GET /api/auth/callback/ (path prefix, auth)",
            "POST /api/auth/callback/ (path prefix, auth)",
            "GET /api/auth/signin/ (path prefix, auth)",
            "GET /files/ (path prefix, app)",
            "GET /files/images/ (path prefix, app)",
            "GET /files/images/logo.png (app)",
            "GET /messages (app)",
            "POST /messages (app)",
        ]
    );
    let logo = router
        .lookup(&http::Method::HEAD, "/files/images/logo.png")
        .expect("HEAD is looked up as GET");
    assert_eq!(logo.kind, RouteKind::Exact);
    assert_eq!(logo.origin, conflux_http::Origin::Site);
    assert_eq!(logo.set, "app");
}
