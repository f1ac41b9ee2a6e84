//! What the sign-in race tests (`tests/auth_race.rs`) and the auth benchmark
//! (`benches/auth_confirmation.rs`) share: a deployment of an app with the built-in sign-in
//! whose "Google" is a local OpenID provider, a browser that follows redirects one hop at a
//! time, a raw sync-protocol client, and a timeline that puts events seen by different
//! processes on one clock.
//!
//! Why a browser of our own: the post-redirect race is about which request carries which
//! cookie when, so the test must see every hop (a client that follows redirects by itself
//! would hide the one that matters). Cookies are kept per host, not per port, as browsers
//! do: the app's server and the deployment share `127.0.0.1`.

#![allow(dead_code)] // the tests and the benchmark each use a different subset

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conflux::auth::{AuthSetup, OAuthProvider};
use conflux::{App, ServeConfig, Server};
use conflux_local_oidc::{LocalOidcConfig, LocalOidcProvider, TestClient, TestUser};
use futures::{SinkExt, StreamExt};
use reqwest::Url;
use serde_json::{json, Value as Json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a step that should happen promptly may take.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The OAuth client the local provider registers for "google".
pub const GOOGLE_CLIENT_ID: &str = "conflux-race-google";
/// Its secret.
pub const GOOGLE_CLIENT_SECRET: &str = "conflux-race-google-secret";

/// The wall clock in milliseconds since the Unix epoch (fractional): the clock the Node
/// scenarios stamp their events with (`performance.timeOrigin + performance.now()`).
pub fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The sign-in's signing key pair (`JWT_PRIVATE_KEY`, `JWKS`), generated once per machine
/// and kept under the target folder: RSA generation takes seconds in debug builds.
pub async fn signing_keys() -> (String, String) {
    static KEYS: tokio::sync::OnceCell<(String, String)> = tokio::sync::OnceCell::const_new();
    KEYS.get_or_init(|| async {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("conflux-auth-race-signing-keys.json");
        tokio::task::spawn_blocking(move || {
            conflux_testkit::keys::cached_pair(&path, || {
                let keys = conflux::auth::generate_signing_keys().expect("a key pair is generated");
                (keys.private_key_env(), keys.jwks_json())
            })
        })
        .await
        .expect("the key generation task runs")
    })
    .await
    .clone()
}

/// A running app with the built-in sign-in, and the local OpenID provider playing Google.
pub struct SignInDeployment {
    /// The deployment.
    pub server: Server,
    /// "Google".
    pub provider: LocalOidcProvider,
    /// Plain HTTP to the deployment (no redirects followed, no proxy).
    pub http: reqwest::Client,
    _data: tempfile::TempDir,
}

impl SignInDeployment {
    /// Start `app` with Google sign-in returning users to `site_url` (the app's web
    /// origin, `SITE_URL`).
    ///
    /// The provider must know the deployment's callback URL and the deployment the
    /// provider's issuer, and both listen on free ports: the provider's port is reserved
    /// first, the deployment started with that issuer, then the provider bound to the port
    /// (discovery only happens at the first sign-in).
    pub async fn start(app: App, site_url: &str) -> SignInDeployment {
        let (private_key, jwks) = signing_keys().await;
        let provider_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port for the OpenID provider")
            .port();
        let google = OAuthProvider::google(GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET)
            .with_issuer(format!("http://127.0.0.1:{provider_port}"));
        let auth = AuthSetup::new()
            .site_url(site_url)
            .provider(google)
            .signing_keys(private_key, jwks);
        let data = tempfile::tempdir().expect("a temporary data folder");
        let server = app
            .auth(auth)
            .start(&ServeConfig::for_tests(data.path()))
            .await
            .expect("the deployment starts");
        let provider = LocalOidcProvider::start(LocalOidcConfig {
            clients: vec![TestClient {
                client_id: GOOGLE_CLIENT_ID.into(),
                client_secret: GOOGLE_CLIENT_SECRET.into(),
                redirect_uris: vec![format!("{}/api/auth/callback/google", server.site_url())],
            }],
            port: provider_port,
            ..LocalOidcConfig::default()
        })
        .await
        .expect("the local OpenID provider starts on its reserved port");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("an HTTP client builds");
        SignInDeployment {
            server,
            provider,
            http,
            _data: data,
        }
    }

    /// The user the next sign-in signs in as.
    pub fn sign_in_as(&self, user: TestUser) {
        self.provider.set_user(user);
    }

    /// Call a function over the client HTTP API, as `ConvexHttpClient` does: the value,
    /// or a panic naming the failure.
    pub async fn call(&self, kind: &str, path: &str, args: Json, token: Option<&str>) -> Json {
        let mut request = self
            .http
            .post(format!("{}/api/{kind}", self.server.client_url()))
            .json(&json!({"path": path, "format": "convex_encoded_json", "args": [args]}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the client API answers");
        let body: Json = response.json().await.expect("the client API answers JSON");
        assert_eq!(body["status"], "success", "{path} failed: {body}");
        body["value"].clone()
    }

    /// `POST <site><path>` with a JSON body: the status and the JSON answer.
    pub async fn post_site(&self, path: &str, body: Json, bearer: Option<&str>) -> (u16, Json) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.server.site_url()))
            .json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the site answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }

    /// `GET <site>/api/auth/session` with `token` as Bearer.
    pub async fn session(&self, token: &str) -> Json {
        let response = self
            .http
            .get(format!("{}/api/auth/session", self.server.site_url()))
            .bearer_auth(token)
            .send()
            .await
            .expect("the site answers");
        response.json().await.expect("a JSON answer")
    }

    /// Start a Google sign-in as the official client does (`auth:signIn {provider:
    /// "google", params}` → `{redirect, verifier}`), follow the browser through the
    /// deployment's sign-in route, the provider and the callback, and return where the
    /// browser lands (`SITE_URL…?code=…`) with the verifier the client kept.
    pub async fn google_sign_in(&self, browser: &mut Browser, params: Json) -> (Url, String) {
        let started = self
            .call(
                "action",
                "auth:signIn",
                json!({"provider": "google", "params": params}),
                None,
            )
            .await;
        let redirect = started["redirect"].as_str().expect("a redirect");
        let verifier = started["verifier"].as_str().expect("a verifier").to_owned();
        (follow_to_app(browser, redirect).await, verifier)
    }

    /// A whole sign-in down to tokens, exchanged through `POST /api/auth/token`:
    /// `(token, refreshToken)`.
    pub async fn sign_in_tokens(&self, browser: &mut Browser) -> (String, String) {
        let (landing, verifier) = self.google_sign_in(browser, json!({})).await;
        let code = query_param(&landing, "code").expect("the app got a code");
        let (status, tokens) = self
            .post_site(
                "/api/auth/token",
                json!({"code": code, "verifier": verifier}),
                None,
            )
            .await;
        assert_eq!(status, 200, "the code exchange works: {tokens}");
        token_pair(&tokens)
    }

    /// A new access token for the same session: `POST /api/auth/token {refreshToken}`.
    pub async fn refresh(&self, refresh_token: &str) -> (String, String) {
        let (status, tokens) = self
            .post_site(
                "/api/auth/token",
                json!({"refreshToken": refresh_token}),
                None,
            )
            .await;
        assert_eq!(status, 200, "the refresh works: {tokens}");
        token_pair(&tokens)
    }
}

/// `(token, refreshToken)` of a `POST /api/auth/token` answer.
fn token_pair(tokens: &Json) -> (String, String) {
    let field = |name: &str| {
        tokens[name]
            .as_str()
            .unwrap_or_else(|| panic!("`{name}` in {tokens}"))
            .to_owned()
    };
    (field("token"), field("refreshToken"))
}

/// Follow a sign-in redirect (the deployment's sign-in route) through the provider and the
/// callback to the app; returns the final `Location`.
pub async fn follow_to_app(browser: &mut Browser, redirect: &str) -> Url {
    let mut url = Url::parse(redirect).expect("the redirect is a URL");
    for hop in ["the sign-in route", "the provider", "the callback"] {
        let answer = browser.get(url.as_str()).await;
        assert_eq!(
            answer.status, 302,
            "{hop} redirects ({url}): {}",
            answer.body
        );
        url = answer.location_url();
    }
    url
}

/// The value of query parameter `name`.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

pub use conflux_testkit::browser::Browser;

// ----------------------------------------------------------------------------------------
// The sync protocol, by hand
// ----------------------------------------------------------------------------------------

/// A client that speaks the sync protocol frame by frame (on the npm client's path,
/// `/api/1.48.0/sync`).
pub struct SyncSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl SyncSocket {
    /// Open a socket to the deployment at `client_url` and send `Connect`.
    pub async fn connect(client_url: &str) -> SyncSocket {
        let ws_url = format!(
            "{}/api/1.48.0/sync",
            client_url.replacen("http://", "ws://", 1)
        );
        let (ws, _response) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("the WebSocket upgrade succeeds");
        let mut socket = SyncSocket { ws };
        socket
            .send(json!({
                "type": "Connect",
                "sessionId": uuid::Uuid::new_v4().to_string(),
                "connectionCount": 0,
                "lastCloseReason": "InitialConnect",
                "clientTs": epoch_ms() as i64,
            }))
            .await;
        socket
    }

    /// Send one message.
    pub async fn send(&mut self, message: Json) {
        self.ws
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("the frame is sent");
    }

    /// `Authenticate` with a user token.
    pub async fn authenticate(&mut self, base_version: u32, token: &str) {
        self.send(json!({
            "type": "Authenticate",
            "tokenType": "User",
            "value": token,
            "baseVersion": base_version,
        }))
        .await;
    }

    /// `ModifyQuerySet` from `base` to `base + 1`, adding `(queryId, udfPath, args)`.
    pub async fn subscribe(&mut self, base: u32, queries: &[(u32, &str, Json)]) {
        let modifications: Vec<Json> = queries
            .iter()
            .map(|(id, path, args)| {
                json!({"type": "Add", "queryId": id, "udfPath": path, "args": [args]})
            })
            .collect();
        self.send(json!({
            "type": "ModifyQuerySet",
            "baseVersion": base,
            "newVersion": base + 1,
            "modifications": modifications,
        }))
        .await;
    }

    /// The next server message other than `Ping`, or `None` if none came within `wait`
    /// or the socket ended.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Json> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match frame {
                Ok(Message::Text(text)) => {
                    let json: Json = serde_json::from_str(&text).expect("server messages are JSON");
                    if json["type"] != "Ping" {
                        return Some(json);
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next server message other than `Ping`; panics after [`PATIENCE`].
    pub async fn next(&mut self) -> Json {
        self.next_within(PATIENCE)
            .await
            .unwrap_or_else(|| panic!("no server message within {PATIENCE:?}"))
    }
}

/// The value a `Transition` carries for `query_id`, if it carries one.
pub fn query_value(transition: &Json, query_id: u32) -> Option<&Json> {
    transition["modifications"]
        .as_array()?
        .iter()
        .find(|m| m["type"] == "QueryUpdated" && m["queryId"] == query_id)
        .map(|m| &m["value"])
}

// ----------------------------------------------------------------------------------------
// The timeline
// ----------------------------------------------------------------------------------------

/// One thing that happened, on the shared wall clock.
#[derive(Clone, Debug)]
pub struct Moment {
    /// Milliseconds since the Unix epoch.
    pub at_ms: f64,
    /// Who saw it: `browser`, `app server`, `client`, `socket`, ...
    pub actor: String,
    /// What happened.
    pub what: String,
}

/// Events seen by the test, the app's server and the client, on one clock.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    moments: Vec<Moment>,
}

impl Timeline {
    /// Record `what` now.
    pub fn now(&mut self, actor: &str, what: impl Into<String>) {
        self.at(epoch_ms(), actor, what);
    }

    /// Record `what` at `at_ms`.
    pub fn at(&mut self, at_ms: f64, actor: &str, what: impl Into<String>) {
        self.moments.push(Moment {
            at_ms,
            actor: actor.to_owned(),
            what: what.into(),
        });
    }

    /// The moments in time order.
    pub fn sorted(&self) -> Vec<Moment> {
        let mut moments = self.moments.clone();
        moments.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        moments
    }

    /// The timeline as a table, times relative to the first moment.
    pub fn render(&self, title: &str) -> String {
        let moments = self.sorted();
        let start = moments.first().map_or(0.0, |moment| moment.at_ms);
        let mut out = format!("\n{title}\n{:>9}  {:<11} event\n", "t (ms)", "who");
        for moment in moments {
            out.push_str(&format!(
                "{:>9.1}  {:<11} {}\n",
                moment.at_ms - start,
                moment.actor,
                moment.what
            ));
        }
        out
    }
}
