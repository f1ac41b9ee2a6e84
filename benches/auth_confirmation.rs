//! The confirmation window: how long a client waits between its `Authenticate` and the
//! `Transition` that confirms the new identity, the time during which
//! `useConvexAuth().isAuthenticated` is still false (`docs/auth-race.md`).
//!
//! ```text
//! cargo bench --bench auth_confirmation
//! CONFLUX_BENCH_AUTHENTICATIONS=2000 cargo bench --bench auth_confirmation   # shorter
//! ```
//!
//! Setup: the chat example app with the built-in sign-in (Google played by a local OpenID
//! provider), 10 sync connections over loopback, each subscribed to 10 live queries
//! (`users:viewer` and the latest messages of 9 channels, 5 messages each). Every token is
//! minted by the deployment itself through its session endpoint (`POST /api/auth/token`
//! with a refresh token, so each is a distinct RS256 JWT with its own `jti`, checked
//! against a live sign-in session): the validator never sees the same token twice, and
//! its key (our own issuer's) and session caches are warm after an unmeasured warm-up.
//!
//! Three series, each authentication one at a time (nothing else in flight), the
//! connections taken in turn:
//!
//! - sign-in: the token is for another user than the connection's current one, so the
//!   server re-runs the connection's 10 queries under the new identity before it confirms
//!   (the whole cost a user pays at sign-in: validation, 10 executions, one Transition);
//! - refresh: a new token for the same user and session; nothing re-runs, the identity
//!   version still moves (what the npm client does right after every confirmation);
//! - floor: a `ModifyQuerySet` with no change, answered by a `Transition`: the protocol
//!   round trip without any auth work.
//!
//! What is measured, on one clock (client and server share the machine's wall clock):
//!
//! - server-stamped window: from just before the client writes `Authenticate` to the
//!   `serverTs` the server stamps on the confirming `Transition` as it hands it to the
//!   socket writer. It contains the server's window (`Authenticate` received → confirming
//!   `Transition` sent) plus the one-way loopback delivery of the `Authenticate` frame, so
//!   it is an upper bound of the server-side window, tighter than the round trip;
//! - client round trip: the same start to the moment the client has read the confirming
//!   `Transition` (adds the way back and the client's read).
//!
//! The `conflux-bench` harness's A1 workload (crates/bench) measures a neighbouring
//! figure: client-observed round trips for third-party ES256 tokens over 50 concurrent
//! connections. This benchmark is the one for the built-in sign-in's own tokens, one
//! authentication at a time, with the server's own send timestamp.

#[path = "../tests/auth_race_support/mod.rs"]
mod auth_race_support;
#[allow(dead_code)] // the app module has helpers only its own example uses
#[path = "../examples/chat/app.rs"]
mod chat;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auth_race_support::{Browser, SignInDeployment, SyncSocket};
use conflux::{object, Identity};
use conflux_functions::runner::Caller;
use conflux_local_oidc::TestUser;
use serde_json::{json, Value as Json};

/// Connections, each with its own two users.
const CONNECTIONS: usize = 10;
/// Live queries per connection: `users:viewer` and 9 channels.
const CHANNELS_PER_CONNECTION: usize = 9;
/// Messages seeded in each channel.
const MESSAGES_PER_CHANNEL: usize = 5;
/// Unmeasured authentications per connection before each series.
const WARM_UP_PER_CONNECTION: usize = 20;
/// Refresh-series authentications, as a share of the sign-in series.
const REFRESH_SHARE: usize = 5;
/// Floor round trips measured.
const FLOOR_ROUND_TRIPS: usize = 2000;

/// The wall clock in nanoseconds since the Unix epoch (the unit of `serverTs`).
fn epoch_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Durations in microseconds, summarised.
#[derive(Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn push(&mut self, duration: Duration) {
        self.0.push(duration.as_micros() as u64);
    }

    fn percentile(&self, sorted: &[u64], p: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
    }

    fn row(&self, label: &str) -> String {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        format!(
            "  {label:<52} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>7}",
            self.percentile(&sorted, 50.0),
            self.percentile(&sorted, 99.0),
            self.percentile(&sorted, 99.9),
            sorted.last().map_or(f64::NAN, |max| *max as f64 / 1000.0),
            sorted.len()
        )
    }
}

/// One timed exchange: the server-stamped window and the client round trip.
#[derive(Default)]
struct Series {
    server_stamped: Samples,
    round_trip: Samples,
}

/// A connection and its state.
struct Connection {
    socket: SyncSocket,
    identity_version: u32,
    query_set_version: u32,
    /// The two users' fresh tokens, consumed from the back.
    tokens: [Vec<String>; 2],
    /// Which of the two users is signed in now.
    current: usize,
}

impl Connection {
    /// Authenticate with `token` and time it; returns the confirming Transition.
    async fn authenticate(&mut self, token: &str, series: Option<&mut Series>) -> Json {
        let base = self.identity_version;
        let started = Instant::now();
        let started_ns = epoch_ns();
        self.socket.authenticate(base, token).await;
        let confirmation = self
            .next_transition(|t| t["endVersion"]["identity"] == base + 1)
            .await;
        let round_trip = started.elapsed();
        self.identity_version = base + 1;
        if let Some(series) = series {
            record(series, &confirmation, started_ns, round_trip);
        }
        confirmation
    }

    /// A `ModifyQuerySet` with no change, timed.
    async fn empty_round_trip(&mut self, series: &mut Series) {
        let base = self.query_set_version;
        let started = Instant::now();
        let started_ns = epoch_ns();
        self.socket.subscribe(base, &[]).await;
        let transition = self
            .next_transition(|t| t["endVersion"]["querySet"] == base + 1)
            .await;
        let round_trip = started.elapsed();
        self.query_set_version = base + 1;
        record(series, &transition, started_ns, round_trip);
    }

    async fn next_transition(&mut self, wanted: impl Fn(&Json) -> bool) -> Json {
        loop {
            let message = self.socket.next().await;
            assert_ne!(
                message["type"], "AuthError",
                "a token was refused: {message}"
            );
            if message["type"] == "Transition" && wanted(&message) {
                return message;
            }
        }
    }

    /// The next token of user `which`.
    fn token(&mut self, which: usize) -> String {
        self.tokens[which]
            .pop()
            .expect("enough tokens were minted for the series")
    }
}

fn record(series: &mut Series, transition: &Json, started_ns: u128, round_trip: Duration) {
    let server_ts = transition["serverTs"]
        .as_u64()
        .expect("the Transition carries serverTs (integer nanoseconds)");
    let stamped = (server_ts as u128).saturating_sub(started_ns);
    series
        .server_stamped
        .push(Duration::from_nanos(stamped as u64));
    series.round_trip.push(round_trip);
}

/// `count` fresh access tokens for the session of `refresh_token`, minted one after the
/// other by the deployment's session endpoint (each refresh rotates the refresh token).
async fn mint(
    http: reqwest::Client,
    site: String,
    mut refresh_token: String,
    count: usize,
) -> Vec<String> {
    let mut tokens = Vec::with_capacity(count);
    while tokens.len() < count {
        let response = http
            .post(format!("{site}/api/auth/token"))
            .json(&json!({"refreshToken": refresh_token}))
            .send()
            .await
            .expect("the session endpoint answers");
        let status = response.status();
        let body: Json = response.json().await.expect("a JSON answer");
        assert!(status.is_success(), "a refresh failed: {status} {body}");
        tokens.push(body["token"].as_str().expect("a token").to_owned());
        refresh_token = body["refreshToken"]
            .as_str()
            .expect("a refresh token")
            .to_owned();
    }
    tokens
}

fn queries_of(connection: usize) -> Vec<(u32, &'static str, Json)> {
    let mut queries = vec![(0, "users:viewer", json!({}))];
    queries.extend((1..=CHANNELS_PER_CONNECTION).map(|channel| {
        (
            channel as u32,
            "messages:list",
            json!({"channel": format!("bench-{connection}-{channel}")}),
        )
    }));
    queries
}

fn authentications_wanted() -> usize {
    std::env::var("CONFLUX_BENCH_AUTHENTICATIONS")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .filter(|n: &usize| *n >= CONNECTIONS)
        .unwrap_or(10_000)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
}

async fn run() {
    let total = authentications_wanted();
    let per_connection = total.div_ceil(CONNECTIONS);
    let refreshes_per_connection = (per_connection / REFRESH_SHARE).max(1);
    eprintln!(
        "starting the deployment and signing in {} users…",
        2 * CONNECTIONS
    );
    let deployment =
        Arc::new(SignInDeployment::start(chat::chat_app(), "http://localhost:5173").await);
    let runner = deployment.server.runner().clone();

    // Messages, so that each query reads something.
    let mut inserts = Vec::new();
    for connection in 0..CONNECTIONS {
        for channel in 1..=CHANNELS_PER_CONNECTION {
            for n in 0..MESSAGES_PER_CHANNEL {
                let runner = runner.clone();
                let args = object! {
                    "body" => format!("message {n}"),
                    "channel" => format!("bench-{connection}-{channel}"),
                    "author" => "seed",
                };
                inserts.push(async move {
                    runner
                        .run_mutation(
                            "messages:insertAs",
                            args,
                            Identity::Anonymous,
                            Caller::Internal,
                            None,
                        )
                        .await
                        .result
                        .expect("a seed message is inserted");
                });
            }
        }
    }
    futures::future::join_all(inserts).await;

    // Two users per connection, each with a session and a supply of fresh tokens.
    let minting = Instant::now();
    let mut supplies = Vec::new();
    for connection in 0..CONNECTIONS {
        for which in 0..2 {
            deployment.sign_in_as(TestUser {
                sub: format!("bench-user-{connection}-{which}"),
                email: format!("user{connection}.{which}@example.com"),
                name: format!("Bench User {connection}.{which}"),
                ..TestUser::default()
            });
            let (_token, refresh_token) = deployment.sign_in_tokens(&mut Browser::new()).await;
            // The sign-in series uses each user for half of its turns, the refresh series
            // the first user only.
            let count = per_connection / 2
                + WARM_UP_PER_CONNECTION
                + if which == 0 {
                    refreshes_per_connection + 1
                } else {
                    1
                };
            supplies.push(tokio::spawn(mint(
                deployment.http.clone(),
                deployment.server.site_url().to_owned(),
                refresh_token,
                count,
            )));
        }
    }
    let mut minted = Vec::new();
    for supply in supplies {
        minted.push(supply.await.expect("a minting task finishes"));
    }
    let minted_count: usize = minted.iter().map(Vec::len).sum();
    eprintln!(
        "minted {minted_count} tokens through POST /api/auth/token in {:.1} s",
        minting.elapsed().as_secs_f64()
    );

    // The connections, each signed in as its first user with 10 live queries.
    let mut connections = Vec::new();
    let mut minted = minted.into_iter();
    for connection in 0..CONNECTIONS {
        let (Some(first), Some(second)) = (minted.next(), minted.next()) else {
            unreachable!("two token supplies per connection");
        };
        let mut conn = Connection {
            socket: SyncSocket::connect(deployment.server.client_url()).await,
            identity_version: 0,
            query_set_version: 0,
            tokens: [first, second],
            current: 0,
        };
        let token = conn.token(0);
        conn.socket.authenticate(0, &token).await;
        conn.socket.subscribe(0, &queries_of(connection)).await;
        conn.identity_version = 1;
        conn.query_set_version = 1;
        let first = conn
            .next_transition(|t| {
                t["endVersion"]["identity"] == 1 && t["endVersion"]["querySet"] == 1
            })
            .await;
        assert_eq!(
            first["modifications"].as_array().map(Vec::len),
            Some(1 + CHANNELS_PER_CONNECTION),
            "every query answered"
        );
        connections.push(conn);
    }
    let sync = deployment.server.sync();

    // Sign-ins: each turn switches the connection to its other user.
    let mut sign_in = Series::default();
    for round in 0..WARM_UP_PER_CONNECTION + per_connection {
        for (index, conn) in connections.iter_mut().enumerate() {
            let next = 1 - conn.current;
            let token = conn.token(next);
            let measured = round >= WARM_UP_PER_CONNECTION;
            let executions = sync.metrics().subscriptions.executions;
            let confirmation = conn
                .authenticate(&token, measured.then_some(&mut sign_in))
                .await;
            conn.current = next;
            let viewer = confirmation["modifications"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["queryId"] == 0))
                .map(|m| m["value"]["name"].clone());
            assert_eq!(
                viewer,
                Some(json!(format!("Bench User {index}.{next}"))),
                "the confirmation carries the new user's results"
            );
            let ran = sync.metrics().subscriptions.executions - executions;
            assert_eq!(
                ran,
                1 + CHANNELS_PER_CONNECTION as u64,
                "every query ran again"
            );
        }
    }

    // Refreshes: back to the first user, then fresh tokens for the same session.
    for conn in &mut connections {
        if conn.current != 0 {
            let token = conn.token(0);
            conn.authenticate(&token, None).await;
            conn.current = 0;
        }
    }
    let executions = sync.metrics().subscriptions.executions;
    let mut refresh = Series::default();
    for _ in 0..refreshes_per_connection {
        for conn in &mut connections {
            let token = conn.token(0);
            let confirmation = conn.authenticate(&token, Some(&mut refresh)).await;
            assert_eq!(confirmation["modifications"], json!([]));
        }
    }
    assert_eq!(
        sync.metrics().subscriptions.executions,
        executions,
        "a refresh runs no query"
    );

    // The floor: an empty ModifyQuerySet.
    let mut floor = Series::default();
    for _ in 0..FLOOR_ROUND_TRIPS.div_ceil(CONNECTIONS) {
        for conn in &mut connections {
            conn.empty_round_trip(&mut floor).await;
        }
    }

    let profile = if cfg!(debug_assertions) {
        "debug build (run `cargo bench` for the figures that count)"
    } else {
        "optimized build"
    };
    println!();
    println!("Confirmation window: Authenticate → the Transition that confirms the identity");
    println!(
        "built-in sign-in tokens (RS256, own issuer, live-session check, each token new); \
         {CONNECTIONS} connections × {} live queries over loopback; one authentication at a \
         time; warm key and session caches; {profile}",
        1 + CHANNELS_PER_CONNECTION
    );
    println!();
    println!(
        "  {:<52} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "n"
    );
    println!("server-stamped: client about to write → serverTs of the confirming Transition");
    println!(
        "{}",
        sign_in
            .server_stamped
            .row("sign-in (new user, 10 queries re-run)")
    );
    println!(
        "{}",
        refresh
            .server_stamped
            .row("refresh (same session, nothing re-runs)")
    );
    println!(
        "{}",
        floor
            .server_stamped
            .row("floor: empty ModifyQuerySet → Transition")
    );
    println!("client round trip: client about to write → confirming Transition read");
    println!(
        "{}",
        sign_in
            .round_trip
            .row("sign-in (new user, 10 queries re-run)")
    );
    println!(
        "{}",
        refresh
            .round_trip
            .row("refresh (same session, nothing re-runs)")
    );
    println!(
        "{}",
        floor
            .round_trip
            .row("floor: empty ModifyQuerySet → Transition")
    );
    let metrics = sync.metrics();
    println!();
    println!(
        "identity refreshes counted by the server: {}; query executions: {}",
        metrics.identity_refreshes, metrics.subscriptions.executions
    );
    drop(connections);
    if let Ok(deployment) = Arc::try_unwrap(deployment) {
        deployment.server.shutdown().await;
    }
}
