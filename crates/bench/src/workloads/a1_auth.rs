//! A1 auth: the time from `Authenticate` to the `Transition` that confirms the new
//! identity, on connections that each hold 10 live queries, with the signing keys already
//! cached (the JWKS is served by a local OpenID provider on loopback and fetched once
//! before measuring); and JWT validations per second on one core.
//!
//! Every authentication signs a different user in, so the server validates a token it has
//! never seen (signature included) and re-runs the connection's 10 queries under the new
//! identity before it can confirm: the full cost a user pays at sign-in. The time is
//! measured by the client, so it also holds one loopback round trip; the table shows an
//! empty protocol round trip (a `ModifyQuerySet` with no change) on the same connections
//! for comparison. The peers have no equivalent (PocketBase authorizes realtime clients
//! per subscription request, SurrealDB embedded has no network clients): n/a.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conflux_auth::{
    AuthConfig, CustomJwtProvider, JwksSource, JwtValidator, SigningAlgorithm, ValidatorSettings,
};
use conflux_common::{Error, Result};
use conflux_local_oidc::{LocalOidcConfig, LocalOidcProvider, TestAlg, TestKey};
use serde_json::{json, Value as Json};

use super::Context;
use crate::measure::latency::{ms, new_histogram, record, thousands, Summary};
use crate::report::Table;
use crate::settings::SMALL_LIMIT;
use crate::targets::conflux_app::LIST;
use crate::targets::conflux_ws::{list_args, ConfluxWs};
use crate::targets::sync_client::SyncClient;
use crate::targets::Target;

/// The audience (application id) of the bench tokens.
const AUDIENCE: &str = "conflux-bench";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn claims(issuer: &str, user: usize) -> Json {
    let now = now_secs();
    json!({
        "iss": issuer, "sub": format!("user-{user}"), "aud": AUDIENCE,
        "iat": now, "exp": now + 3600, "name": format!("Bench User {user}"),
    })
}

/// Run A1 and return its section.
pub async fn run(ctx: &Context) -> Result<String> {
    let profile = &ctx.profile;
    ctx.progress("A1: Authenticate → identity-confirming Transition");
    let provider = LocalOidcProvider::start(LocalOidcConfig {
        es256: true,
        ..LocalOidcConfig::default()
    })
    .await?;
    let issuer = provider.issuer();
    let providers = AuthConfig::new().with_provider(
        CustomJwtProvider::new(
            &issuer,
            JwksSource::parse(&provider.jwks_uri())?,
            SigningAlgorithm::ES256,
        )?
        .with_application_id(AUDIENCE),
    );

    let total = profile.a1_authentications;
    let signing = std::iter::once(0).chain(1..=total).map(|user| {
        provider.sign_token_with(claims(&issuer, user), TestAlg::ES256, &Default::default())
    });
    let tokens: Vec<String> = signing.collect::<Result<_>>()?;

    let target = ConfluxWs::start(Some(providers)).await?;
    let outcome = async {
        // Warm the server's key cache: the JWKS is fetched once, before anything is measured.
        let warm = SyncClient::connect(target.url()).await?;
        warm.authenticate(&tokens[0]).await?;
        drop(warm);
        measure_auth(ctx, target.url(), &tokens[1..]).await
    }
    .await;
    target.shutdown().await;
    provider.shutdown().await;
    let (auth, round_trip) = outcome?;

    ctx.progress("A1: JWT validations per second on one core");
    let per_core = validations_per_core(profile.a1_validation_time).await?;

    let mut out = String::new();
    let _ = writeln!(out, "## A1 auth\n");
    let _ = writeln!(
        out,
        "{} authentications over {} connections (each connection authenticates its users one \
         after the other), each connection subscribed to {} queries (the latest {SMALL_LIMIT} \
         messages of its own channels). Every token is new (a different user, ES256, custom JWT \
         provider whose JWKS was fetched from a local OpenID provider before measuring), so each \
         authentication verifies a signature and re-runs the connection's {} queries under the \
         new identity. Client-observed: `Authenticate` sent → `Transition` with the new identity \
         version received. Conflux over loopback, durability: sled, fsync per commit group. \
         PocketBase and SurrealDB: n/a (no in-band re-authentication of a live connection).\n",
        thousands(total as u64),
        profile.a1_connections,
        profile.a1_queries,
        profile.a1_queries
    );
    let mut table = Table::new(&["Measure", "p50 ms", "p95 ms", "p99 ms", "max ms", "n"]);
    for (label, summary) in [
        (
            "Authenticate → confirming Transition (client-observed)",
            auth,
        ),
        (
            "Empty protocol round trip on the same connections",
            round_trip,
        ),
    ] {
        table.row(vec![
            label.to_string(),
            ms(summary.p50),
            ms(summary.p95),
            ms(summary.p99),
            ms(summary.max),
            thousands(summary.count),
        ]);
    }
    out.push_str(&table.markdown());
    let _ = writeln!(
        out,
        "\nJWT validations per second on one core (one thread, keys in memory; \"new token\": the \
         token cache is off, so every validation decodes, looks the key up, verifies the \
         signature and checks the claims; \"same token\": answered from the token cache):\n"
    );
    let mut table = Table::new(&["Token", "validations/s per core", "µs each"]);
    for (label, rate) in per_core {
        table.row(vec![
            label,
            thousands(rate.round() as u64),
            format!("{:.1}", 1e6 / rate.max(1.0)),
        ]);
    }
    out.push_str(&table.markdown());
    Ok(out)
}

/// Authenticate every token (spread over the connections) and time each confirmation;
/// also time empty round trips on the same connections.
async fn measure_auth(ctx: &Context, url: &str, tokens: &[String]) -> Result<(Summary, Summary)> {
    let profile = &ctx.profile;
    let connections = profile.a1_connections.max(1);
    let mut clients = Vec::with_capacity(connections);
    for connection in 0..connections {
        let client = SyncClient::connect(url).await?;
        let args: Vec<Json> = (0..profile.a1_queries)
            .map(|query| list_args(&format!("a1-{connection}-{query}"), SMALL_LIMIT))
            .collect();
        client.add_queries(LIST, &args, None).await?;
        client.wait_for_results().await?;
        clients.push(Arc::new(client));
    }
    let mut tasks = Vec::with_capacity(connections);
    for (index, client) in clients.iter().enumerate() {
        let client = client.clone();
        let mine: Vec<String> = tokens
            .iter()
            .skip(index)
            .step_by(connections)
            .cloned()
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut auth = new_histogram();
            let mut round_trip = new_histogram();
            for token in mine {
                let started = Instant::now();
                client.authenticate(&token).await?;
                record(&mut auth, started.elapsed().as_micros() as u64);
                let started = Instant::now();
                client.round_trip().await?;
                record(&mut round_trip, started.elapsed().as_micros() as u64);
            }
            Ok::<_, Error>((auth, round_trip))
        }));
    }
    let mut auth = new_histogram();
    let mut round_trip = new_histogram();
    for task in tasks {
        let (a, r) = task.await.map_err(Error::internal)??;
        auth.add(&a).map_err(Error::internal)?;
        round_trip.add(&r).map_err(Error::internal)?;
    }
    Ok((Summary::of(&auth), Summary::of(&round_trip)))
}

/// Validations per second on one thread: ES256 and RS256 with the token cache off (a new
/// token every time, as far as the validator knows), and a cached token.
async fn validations_per_core(length: Duration) -> Result<Vec<(String, f64)>> {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::internal)?;
        runtime.block_on(async move {
            let es = TestKey::es256()?;
            let rs = TestKey::rsa(0).await?;
            let provider =
                |issuer: &str, key: &TestKey, alg| -> Result<CustomJwtProvider> {
                    Ok(CustomJwtProvider::new(
                        issuer,
                        JwksSource::inline(&key.jwks(), "inline")?,
                        alg,
                    )?
                    .with_application_id(AUDIENCE))
                };
            let config = AuthConfig::new()
                .with_provider(provider(
                    "https://es.bench.invalid",
                    &es,
                    SigningAlgorithm::ES256,
                )?)
                .with_provider(provider(
                    "https://rs.bench.invalid",
                    &rs,
                    SigningAlgorithm::RS256,
                )?);
            let settings = |entries| ValidatorSettings {
                token_cache_entries: entries,
                ..ValidatorSettings::default()
            };
            let cold = JwtValidator::builder(config.clone())
                .settings(settings(0))
                .build()?;
            let cached = JwtValidator::builder(config)
                .settings(settings(1024))
                .build()?;
            let es_token = es.sign(&claims("https://es.bench.invalid", 1))?;
            let rs_token = rs.sign(&claims("https://rs.bench.invalid", 1))?;
            let mut rates = Vec::new();
            for (label, validator, token) in [
                ("ES256, new token (cache off)", &cold, &es_token),
                ("RS256 (2048-bit), new token (cache off)", &cold, &rs_token),
                ("ES256, same token (cached)", &cached, &es_token),
            ] {
                validator.validate(token).await?;
                let started = Instant::now();
                let mut count = 0u64;
                while started.elapsed() < length {
                    for _ in 0..16 {
                        validator.validate(token).await?;
                    }
                    count += 16;
                }
                rates.push((
                    label.to_string(),
                    count as f64 / started.elapsed().as_secs_f64(),
                ));
            }
            Ok(rates)
        })
    })
    .await
    .map_err(Error::internal)?
}
