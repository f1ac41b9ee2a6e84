//! The provider handle: configuration, shared state and the knobs a test turns.
//!
//! Why a handle with switches: the failure modes a token validator must survive (the provider
//! being down or slow, a key rotation, a storm of lookups) are only testable if the test can
//! cause them on demand and count what reached the provider. [`LocalOidcProvider`] owns the
//! loopback server and exposes exactly those switches and counters.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conflux_common::{Error, ErrorCode, Result};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value as Json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::keys::{SignOptions, TestKey};
use crate::routes;

/// Most authorization codes and access tokens remembered at once; the oldest are forgotten
/// first.
const MAX_OUTSTANDING_GRANTS: usize = 1024;

/// How long an authorization code may wait before it is redeemed.
pub(crate) const AUTHORIZATION_CODE_TTL: Duration = Duration::from_secs(60);

/// How long [`LocalOidcProvider::shutdown`] waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The signed-in user the provider vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestUser {
    /// The stable subject identifier (`sub`).
    pub sub: String,
    /// `email`.
    pub email: String,
    /// `email_verified`.
    pub email_verified: bool,
    /// `name`.
    pub name: String,
    /// `picture`, if the user has one.
    pub picture: Option<String>,
}

impl Default for TestUser {
    fn default() -> Self {
        TestUser {
            sub: "test-user-1".into(),
            email: "ada@example.com".into(),
            email_verified: true,
            name: "Ada Lovelace".into(),
            picture: Some("https://example.com/ada.png".into()),
        }
    }
}

/// A registered OAuth client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestClient {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret` (accepted with `client_secret_basic` and `client_secret_post`).
    pub client_secret: String,
    /// The redirect URIs this client may use, compared exactly.
    pub redirect_uris: Vec<String>,
}

impl Default for TestClient {
    fn default() -> Self {
        TestClient {
            client_id: "conflux-test".into(),
            client_secret: "conflux-test-secret".into(),
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
        }
    }
}

/// How [`LocalOidcProvider::start`] sets the provider up.
#[derive(Clone, Debug)]
pub struct LocalOidcConfig {
    /// The registered clients.
    pub clients: Vec<TestClient>,
    /// The user `/authorize` signs in.
    pub user: TestUser,
    /// Also publish (and allow signing with) a P-256 key for `ES256`.
    pub es256: bool,
    /// Lifetime of issued ID tokens and access tokens.
    pub token_ttl: Duration,
    /// `Cache-Control: max-age` of the discovery document and the JWKS; `None` sends no
    /// `Cache-Control` header.
    pub jwks_max_age: Option<Duration>,
    /// The port to bind on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Index of the first RSA signing key in the process-wide key pool (rotations take the
    /// following indexes).
    pub first_rsa_key: usize,
}

impl Default for LocalOidcConfig {
    fn default() -> Self {
        LocalOidcConfig {
            clients: vec![TestClient::default()],
            user: TestUser::default(),
            es256: false,
            token_ttl: Duration::from_secs(3600),
            jwks_max_age: Some(Duration::from_secs(300)),
            port: 0,
            first_rsa_key: 0,
        }
    }
}

/// What happens to the previous signing key on [`LocalOidcProvider::rotate_keys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetiredKey {
    /// It stays in the JWKS (tokens it signed keep verifying), as providers do during a
    /// rotation.
    Keep,
    /// It leaves the JWKS at once.
    Drop,
}

/// The endpoints that count and obey [`LocalOidcProvider::set_down`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Discovery,
    Jwks,
    Authorize,
    Token,
    UserInfo,
}

/// An authorization code waiting to be redeemed at `/token`.
#[derive(Clone, Debug)]
pub(crate) struct PendingCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub user: TestUser,
    pub issued_at: std::time::Instant,
}

/// A map that forgets its oldest entries beyond a fixed size.
pub(crate) struct BoundedMap<V> {
    entries: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V> BoundedMap<V> {
    fn new() -> Self {
        BoundedMap {
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn insert(&mut self, key: String, value: V) {
        while self.entries.len() >= MAX_OUTSTANDING_GRANTS {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, value);
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        // The key stays in `order` until it reaches the front; removing it there is a no-op.
        self.entries.remove(key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key)
    }
}

/// The keys the provider publishes.
pub(crate) struct KeyRing {
    /// Signs ID tokens and `sign_token`.
    pub signing: TestKey,
    /// Previous signing keys still published.
    pub retired: Vec<TestKey>,
    /// The P-256 key, when configured.
    pub ec: Option<TestKey>,
}

/// State shared by the handle and the request handlers.
pub(crate) struct Shared {
    pub issuer: String,
    pub clients: Vec<TestClient>,
    pub token_ttl: Duration,
    pub jwks_max_age: Option<Duration>,
    pub keys: RwLock<KeyRing>,
    pub next_rsa_key: AtomicUsize,
    pub user: RwLock<TestUser>,
    pub down: AtomicBool,
    pub delay_ms: AtomicU64,
    pub discovery_fetches: AtomicU64,
    pub jwks_fetches: AtomicU64,
    pub requests: AtomicU64,
    pub codes: Mutex<BoundedMap<PendingCode>>,
    pub access_tokens: Mutex<BoundedMap<TestUser>>,
    /// When set, `/token` signs ID tokens with this key (under the published key's `kid`).
    pub forged_id_token_key: RwLock<Option<TestKey>>,
}

impl Shared {
    /// Count a request, apply the configured delay, and say whether the endpoint must answer
    /// 503 because the provider is "down".
    pub(crate) async fn admit(&self, endpoint: Endpoint) -> Admission {
        self.requests.fetch_add(1, Ordering::SeqCst);
        match endpoint {
            Endpoint::Discovery => {
                self.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            }
            Endpoint::Jwks => {
                self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            }
            Endpoint::Authorize | Endpoint::Token | Endpoint::UserInfo => {}
        }
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let down = self.down.load(Ordering::SeqCst);
        match endpoint {
            Endpoint::Discovery | Endpoint::Jwks if down => Admission::Unavailable,
            Endpoint::Discovery
            | Endpoint::Jwks
            | Endpoint::Authorize
            | Endpoint::Token
            | Endpoint::UserInfo => Admission::Serve,
        }
    }

    /// The JWKS document currently published.
    pub(crate) fn jwks(&self) -> Json {
        let ring = self.keys.read();
        let mut keys = vec![ring.signing.public_jwk()];
        keys.extend(ring.retired.iter().map(TestKey::public_jwk));
        if let Some(ec) = &ring.ec {
            keys.push(ec.public_jwk());
        }
        json!({ "keys": keys })
    }

    pub(crate) fn client(&self, client_id: &str) -> Option<&TestClient> {
        self.clients
            .iter()
            .find(|client| client.client_id == client_id)
    }
}

/// Whether a request is served.
pub(crate) enum Admission {
    Serve,
    Unavailable,
}

/// A running OpenID Connect provider on 127.0.0.1.
///
/// ```no_run
/// # async fn demo() -> conflux_common::Result<()> {
/// use conflux_local_oidc::{LocalOidcConfig, LocalOidcProvider};
/// let provider = LocalOidcProvider::start(LocalOidcConfig::default()).await?;
/// let token = provider.sign_token(serde_json::json!({
///     "iss": provider.issuer(), "sub": "u1", "aud": "conflux-test", "exp": 4_000_000_000u64,
/// }))?;
/// # let _ = token;
/// provider.shutdown().await;
/// # Ok(()) }
/// ```
pub struct LocalOidcProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LocalOidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalOidcProvider")
            .field("issuer", &self.shared.issuer)
            .finish_non_exhaustive()
    }
}

impl LocalOidcProvider {
    /// Bind 127.0.0.1 (port 0 unless configured), generate or reuse the keys (off the
    /// reactor) and start serving.
    pub async fn start(config: LocalOidcConfig) -> Result<LocalOidcProvider> {
        let signing = TestKey::rsa(config.first_rsa_key).await?;
        let ec = if config.es256 {
            Some(TestKey::es256()?)
        } else {
            None
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|err| {
                Error::new(
                    ErrorCode::Internal,
                    "Could not start the local OpenID provider",
                )
                .with_detail(format!("binding 127.0.0.1:{} failed: {err}", config.port))
            })?;
        let addr = listener.local_addr().map_err(Error::internal)?;
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            clients: config.clients,
            token_ttl: config.token_ttl,
            jwks_max_age: config.jwks_max_age,
            keys: RwLock::new(KeyRing {
                signing,
                retired: Vec::new(),
                ec,
            }),
            next_rsa_key: AtomicUsize::new(config.first_rsa_key + 1),
            user: RwLock::new(config.user),
            down: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            discovery_fetches: AtomicU64::new(0),
            jwks_fetches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            codes: Mutex::new(BoundedMap::new()),
            access_tokens: Mutex::new(BoundedMap::new()),
            forged_id_token_key: RwLock::new(None),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = routes::router(shared.clone());
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // Either an explicit stop or the handle being dropped ends the server.
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(err) = served {
                tracing::warn!("local OpenID provider stopped with an error: {err}");
            }
        });
        Ok(LocalOidcProvider {
            shared,
            addr,
            stop: Mutex::new(Some(stop_tx)),
            server: Mutex::new(Some(server)),
        })
    }

    /// The issuer URL, e.g. `http://127.0.0.1:41234` (no trailing slash). Discovery is at
    /// `<issuer>/.well-known/openid-configuration`.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The JWKS URL (`<issuer>/jwks`).
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.shared.issuer)
    }

    /// The JWKS the provider currently publishes.
    pub fn jwks_json(&self) -> Json {
        self.shared.jwks()
    }

    /// The key that signs ID tokens and [`LocalOidcProvider::sign_token`] now.
    pub fn signing_key(&self) -> TestKey {
        self.shared.keys.read().signing.clone()
    }

    /// The P-256 key, when the provider was configured with `es256`.
    pub fn es256_key(&self) -> Option<TestKey> {
        self.shared.keys.read().ec.clone()
    }

    /// Make the next RSA key of the pool the signing key (its `kid` is returned), keeping or
    /// dropping the previous one in the JWKS.
    pub async fn rotate_keys(&self, retired: RetiredKey) -> Result<String> {
        let index = self.shared.next_rsa_key.fetch_add(1, Ordering::SeqCst);
        let fresh = TestKey::rsa(index).await?;
        let kid = fresh.kid().to_owned();
        let mut ring = self.shared.keys.write();
        let previous = std::mem::replace(&mut ring.signing, fresh);
        match retired {
            RetiredKey::Keep => ring.retired.push(previous),
            RetiredKey::Drop => {}
        }
        Ok(kid)
    }

    /// Sign arbitrary claims with the current RS256 signing key (header `alg`, `typ`, `kid`).
    pub fn sign_token(&self, claims: Json) -> Result<String> {
        self.signing_key().sign(&claims)
    }

    /// Sign arbitrary claims with the current key of `alg` (RS256, or ES256 when configured)
    /// and a header built from `options`.
    pub fn sign_token_with(
        &self,
        claims: Json,
        alg: crate::TestAlg,
        options: &SignOptions,
    ) -> Result<String> {
        let key = match alg {
            crate::TestAlg::RS256 => self.signing_key(),
            crate::TestAlg::ES256 => self.es256_key().ok_or_else(|| {
                Error::bad_request(
                    "this local OpenID provider has no ES256 key; start it with `es256: true`",
                )
            })?,
            crate::TestAlg::EdDSA => {
                return Err(Error::bad_request(
                    "the local OpenID provider publishes no EdDSA key; use TestKey::ed25519()",
                ))
            }
        };
        key.sign_with(&claims, options)
    }

    /// From now on, sign the ID tokens `/token` issues with `key` instead of the published
    /// signing key, keeping the published key's `kid` in the header: what a relying party
    /// receives when an ID token was forged or tampered with. `None` goes back to normal.
    pub fn forge_id_tokens_with(&self, key: Option<TestKey>) {
        *self.shared.forged_id_token_key.write() = key;
    }

    /// Replace the user `/authorize` signs in.
    pub fn set_user(&self, user: TestUser) {
        *self.shared.user.write() = user;
    }

    /// The user `/authorize` signs in.
    pub fn user(&self) -> TestUser {
        self.shared.user.read().clone()
    }

    /// While `true`, discovery and the JWKS answer `503 Service Unavailable`.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Delay every response by `delay` (zero for none).
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// How many times `/jwks` was requested.
    pub fn jwks_fetch_count(&self) -> u64 {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times the discovery document was requested.
    pub fn discovery_fetch_count(&self) -> u64 {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// How many requests reached the provider on any known endpoint.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Stop serving and wait (briefly) for the server task to end.
    pub async fn shutdown(&self) {
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(());
        }
        let server = self.server.lock().take();
        if let Some(mut server) = server {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
            {
                // Idle keep-alive connections of clients still alive can hold a graceful
                // shutdown open; the server must not outlive this call.
                server.abort();
            }
        }
    }
}

impl Drop for LocalOidcProvider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.lock().take() {
            // Graceful shutdown can wait on keep-alive connections; a dropped handle must not
            // leave a server behind.
            server.abort();
        }
    }
}
