//! A real Conflux stack with the built-in sign-in for the sign-in tests, and a browser
//! that follows redirects one hop at a time.
//!
//! The stack: a sled database in a temporary folder, a function runner with the `auth:*`
//! functions and a `users:viewer` query, the client API and the site served by
//! `conflux_http` on 127.0.0.1 (port 0), a `JwtValidator` that knows only our own issuer
//! (so it never fetches anything over HTTP) with the sign-in's session checker, and a local
//! OpenID provider playing Google (`AUTH_GOOGLE_ISSUER` pointed at it).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use conflux_auth::{AuthConfig, AuthSetup, InstallContext, InstalledAuth, JwtValidator};
use conflux_common::{TokenValidator, UserIdentity};
use conflux_db::{Database, Schema};
use conflux_functions::{
    system_tables, v, DocumentId, FunctionRunner, Registry, RunnerOptions, Value,
};
use conflux_http::{
    client_api_routes, ClientApiState, FunctionRunnerActions, Origins, RouterBuilder,
    RunningServer, ServerConfig, SiteRoutes,
};
use conflux_local_oidc::{LocalOidcConfig, LocalOidcProvider, TestClient, TestUser};
use serde_json::{json, Value as Json};
use url::Url;

/// `SITE_URL` of the test app: never fetched, only compared.
pub const SITE_URL: &str = "https://site.example.com";
/// The OAuth client the local provider registers for "google".
pub const GOOGLE_CLIENT_ID: &str = "conflux-google-client";
pub const GOOGLE_CLIENT_SECRET: &str = "conflux-google-secret";

/// How a test wants its stack.
#[derive(Clone, Debug)]
pub struct Options {
    pub dev_mode: bool,
    pub user: TestUser,
    pub oauth_code_lifetime: Option<Duration>,
    pub refresh_reuse_window: Option<Duration>,
    pub session_lifetime: Option<Duration>,
    pub verifier_lifetime: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dev_mode: true,
            user: TestUser::default(),
            oauth_code_lifetime: None,
            refresh_reuse_window: None,
            session_lifetime: None,
            verifier_lifetime: None,
        }
    }
}

/// The signing key pair of the tests, generated once per machine and kept under the target
/// folder (RSA generation takes seconds in debug builds).
pub async fn test_keys() -> (String, String) {
    static KEYS: tokio::sync::OnceCell<(String, String)> = tokio::sync::OnceCell::const_new();
    KEYS.get_or_init(|| async {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("conflux-auth-signin-test-keys.json");
        tokio::task::spawn_blocking(move || {
            conflux_testkit::keys::cached_pair(&path, || {
                let keys = conflux_auth::generate_signing_keys().expect("a key pair is generated");
                (keys.private_key_env(), keys.jwks_json())
            })
        })
        .await
        .expect("the key generation task runs")
    })
    .await
    .clone()
}

/// A running deployment with the sign-in, and its local "Google".
pub struct Stack {
    pub origins: Origins,
    pub server: Option<RunningServer>,
    pub runner: FunctionRunner,
    pub auth: InstalledAuth,
    pub validator: JwtValidator,
    pub provider: LocalOidcProvider,
    pub http: reqwest::Client,
    pub private_key: String,
    _data: tempfile::TempDir,
}

/// `users:viewer`: the signed-in user's document, or `null`.
fn app_functions() -> Registry {
    let mut registry = Registry::new();
    registry
        .query("users:viewer", v::no_args(), |ctx, _args| {
            let Some(user_id) = conflux_auth::auth_user_id(ctx.auth()) else {
                return Ok(Value::Null);
            };
            let id: DocumentId = user_id.parse()?;
            Ok(ctx.db().get(&id)?.map_or(Value::Null, |doc| doc.to_value()))
        })
        .expect("users:viewer registers");
    // App code ending the caller's session through `auth:store` itself, as Convex Auth's
    // server helpers do.
    registry
        .action(
            "app:signOutThroughStore",
            v::no_args(),
            |ctx, _args| async move {
                let mut operation = conflux_functions::Object::new();
                operation.insert("type".into(), Value::from("signOut"))?;
                let mut args = conflux_functions::Object::new();
                args.insert("args".into(), Value::Object(operation))?;
                ctx.run_mutation("auth:store", args).await
            },
        )
        .expect("app:signOutThroughStore registers");
    registry
}

impl Stack {
    pub async fn start(options: Options) -> Stack {
        let bound = conflux_http::bind(ServerConfig {
            client_port: 0,
            site_port: 0,
            dev_mode: options.dev_mode,
            ..ServerConfig::default()
        })
        .await
        .expect("the listeners bind");
        let origins = bound.origins().clone();
        let provider = LocalOidcProvider::start(LocalOidcConfig {
            clients: vec![TestClient {
                client_id: GOOGLE_CLIENT_ID.into(),
                client_secret: GOOGLE_CLIENT_SECRET.into(),
                redirect_uris: vec![format!("{}/api/auth/callback/google", origins.site)],
            }],
            user: options.user.clone(),
            ..LocalOidcConfig::default()
        })
        .await
        .expect("the local OpenID provider starts");
        let (private_key, jwks) = test_keys().await;
        let mut setup = AuthSetup::from_vars([
            ("SITE_URL", SITE_URL.to_owned()),
            ("AUTH_GOOGLE_ID", GOOGLE_CLIENT_ID.to_owned()),
            ("AUTH_GOOGLE_SECRET", GOOGLE_CLIENT_SECRET.to_owned()),
            ("AUTH_GOOGLE_ISSUER", provider.issuer()),
            ("JWT_PRIVATE_KEY", private_key.clone()),
            ("JWKS", jwks),
        ])
        .expect("the environment is a valid sign-in configuration");
        if let Some(lifetime) = options.oauth_code_lifetime {
            setup = setup.oauth_code_lifetime(lifetime);
        }
        if let Some(window) = options.refresh_reuse_window {
            setup = setup.refresh_reuse_window(window);
        }
        if let Some(lifetime) = options.session_lifetime {
            setup = setup.session_lifetime(lifetime);
        }
        if let Some(lifetime) = options.verifier_lifetime {
            setup = setup.verifier_lifetime(lifetime);
        }
        let data = tempfile::tempdir().expect("a temporary data folder");
        let mut schema = Schema::new();
        for table in setup.tables().into_iter().chain(system_tables()) {
            schema = schema.table(table);
        }
        let db = Database::open_sled(data.path(), schema).expect("the database opens");
        let auth = setup
            .install(InstallContext {
                data_dir: data.path().to_owned(),
                origins: origins.clone(),
                dev_mode: options.dev_mode,
            })
            .expect("the sign-in installs");
        let mut registry = app_functions();
        registry
            .merge(auth.functions())
            .expect("no function is defined twice");
        let mut env = std::collections::BTreeMap::new();
        env.insert("CONVEX_SITE_URL".to_owned(), origins.site.clone());
        let runner = FunctionRunner::new(
            db,
            registry,
            RunnerOptions {
                dev_mode: options.dev_mode,
                env,
                ..RunnerOptions::default()
            },
        );
        let validator = JwtValidator::builder(AuthConfig::new().with_own_issuer(auth.own_issuer()))
            .session_checker(auth.session_checker())
            .build()
            .expect("the validator builds");
        let shared: Arc<dyn TokenValidator> = Arc::new(validator.clone());
        auth.attach(runner.clone(), Some(shared.clone()));
        let mut router = RouterBuilder::new();
        router.mount(auth.routes());
        let router = router.build().expect("the sign-in routes build");
        conflux_http::check_auth_mounted(&router, &auth.providers(), &origins)
            .expect("the sign-in routes serve every provider");
        let server = bound.serve(
            client_api_routes(ClientApiState {
                runner: runner.clone(),
                token_validator: Some(shared.clone()),
                dev_mode: options.dev_mode,
            }),
            SiteRoutes {
                router: Arc::new(router),
                runner: Arc::new(FunctionRunnerActions::new(runner.clone())),
                token_validator: Some(shared),
            },
        );
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("an HTTP client builds");
        Stack {
            origins,
            server: Some(server),
            runner,
            auth,
            validator,
            provider,
            http,
            private_key,
            _data: data,
        }
    }

    /// Call a function over the client HTTP API as `ConvexHttpClient` does; the body.
    pub async fn call(
        &self,
        kind: &str,
        path: &str,
        args: Json,
        token: Option<&str>,
    ) -> (u16, Json) {
        let mut request = self
            .http
            .post(format!("{}/api/{kind}", self.origins.client))
            .json(&json!({"path": path, "format": "convex_encoded_json", "args": [args]}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the client API answers");
        let status = response.status().as_u16();
        let body = response.json().await.expect("the client API answers JSON");
        (status, body)
    }

    /// `auth:signIn` with `args`: its value, or a panic naming the failure.
    pub async fn sign_in_action(&self, args: Json, token: Option<&str>) -> Json {
        let (status, body) = self.call("action", "auth:signIn", args, token).await;
        assert_eq!(status, 200, "auth:signIn failed: {body}");
        assert_eq!(body["status"], "success", "auth:signIn failed: {body}");
        body["value"].clone()
    }

    /// Validate a token with the deployment's validator.
    pub async fn validate(&self, token: &str) -> conflux_common::Result<UserIdentity> {
        self.validator.validate(token).await
    }

    /// Run a request against the site origin.
    pub fn site(&self, path: &str) -> String {
        format!("{}{path}", self.origins.site)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Dropping the running server closes its listeners and connections at once.
        self.server.take();
    }
}

#[allow(unused_imports)] // each test binary uses its own subset
pub use conflux_testkit::browser::{Browser, Hop, SetCookie};

/// The query parameters of a URL.
pub fn query_of(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// What the sign-in handed back to the app.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The verifier the client kept.
    pub verifier: String,
    /// Where the browser was sent at the end (`SITE_URL...?code=...` or `?error=...`).
    pub landing: Url,
    /// The callback response.
    pub callback: Hop,
}

impl Finished {
    pub fn code(&self) -> Option<String> {
        query_of(&self.landing).get("code").cloned()
    }

    pub fn error(&self) -> Option<String> {
        query_of(&self.landing).get("error").cloned()
    }
}

/// Start a Google sign-in like the official client: `auth:signIn {provider:"google",
/// params}` → `{redirect, verifier}`.
pub async fn start_google(stack: &Stack, params: Json, token: Option<&str>) -> (String, String) {
    let value = stack
        .sign_in_action(json!({"provider": "google", "params": params}), token)
        .await;
    let redirect = value["redirect"].as_str().expect("a redirect").to_owned();
    let verifier = value["verifier"].as_str().expect("a verifier").to_owned();
    (redirect, verifier)
}

/// The whole browser journey: `auth:signIn`, the sign-in route, the provider, the callback.
pub async fn google_journey(stack: &Stack, browser: &mut Browser, params: Json) -> Finished {
    let (redirect, verifier) = start_google(stack, params, None).await;
    let to_provider = browser.get(&redirect).await;
    assert_eq!(
        to_provider.status, 302,
        "the sign-in route redirects: {}",
        to_provider.body
    );
    let at_provider = browser
        .get(to_provider.location.as_deref().expect("a Location"))
        .await;
    assert_eq!(
        at_provider.status, 302,
        "the provider redirects back: {}",
        at_provider.body
    );
    let callback = browser
        .get(at_provider.location.as_deref().expect("a Location"))
        .await;
    assert_eq!(
        callback.status, 302,
        "the callback redirects to the app: {}",
        callback.body
    );
    Finished {
        verifier,
        landing: callback.location_url(),
        callback,
    }
}

/// Sign in with Google all the way to tokens: `(token, refreshToken)`.
pub async fn sign_in_with_google(stack: &Stack, browser: &mut Browser) -> (String, String) {
    let finished = google_journey(stack, browser, json!({})).await;
    let code = finished
        .code()
        .unwrap_or_else(|| panic!("the app got a code: {}", finished.landing));
    let value = stack
        .sign_in_action(
            json!({"params": {"code": code}, "verifier": finished.verifier}),
            None,
        )
        .await;
    tokens_of(&value)
}

/// `(token, refreshToken)` of `{tokens: {...}}`.
pub fn tokens_of(value: &Json) -> (String, String) {
    let tokens = &value["tokens"];
    (
        tokens["token"]
            .as_str()
            .unwrap_or_else(|| panic!("tokens expected, got {value}"))
            .to_owned(),
        tokens["refreshToken"]
            .as_str()
            .unwrap_or_else(|| panic!("tokens expected, got {value}"))
            .to_owned(),
    )
}

/// The JSON of a base64url JWT segment.
pub fn jwt_segment(token: &str, index: usize) -> Json {
    use base64::Engine;
    let segment = token.split('.').nth(index).expect("a JWT segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// Wait up to `within` for a `SessionEnded` of `session_id` on `events`.
pub async fn session_ended_within(
    events: &mut tokio::sync::broadcast::Receiver<conflux_common::SessionEnded>,
    session_id: &str,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(event)) if event.session_id == session_id => return true,
            Ok(Ok(_)) => continue,
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}
