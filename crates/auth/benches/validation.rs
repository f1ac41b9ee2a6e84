//! Validations per second for RS256 and ES256 tokens, cold (token cache off: decode, key
//! lookup, signature and claim checks every time) and cached (the same token again).
//!
//! Run with `cargo bench -p conflux-auth --bench validation`. Keys are inline, so no HTTP
//! is involved: this measures the validator, not the network. Several callers validate at
//! once, as connections do, so the rate is the validator's throughput on this machine.

use std::time::{Duration, Instant};

use conflux_auth::{
    AuthConfig, CustomJwtProvider, JwksSource, JwtValidator, OwnIssuer, SigningAlgorithm,
    ValidatorSettings,
};
use conflux_common::Result;
use conflux_local_oidc::TestKey;
use serde_json::json;

const SITE: &str = "https://bench.conflux.example";
const ES_ISSUER: &str = "https://es256.bench.example";
/// Each measurement runs at least this long.
const MEASURE_FOR: Duration = Duration::from_millis(1500);

fn validator(rsa: &TestKey, ec: &TestKey, cache_entries: usize) -> Result<JwtValidator> {
    let own = OwnIssuer::new(
        SITE,
        &json!({"keys": [rsa.public_jwk_without_kid()]}).to_string(),
    )?;
    let es = CustomJwtProvider::new(
        ES_ISSUER,
        JwksSource::inline(&ec.jwks(), "configured inline")?,
        SigningAlgorithm::ES256,
    )?
    .with_application_id("bench");
    let settings = ValidatorSettings {
        token_cache_entries: cache_entries,
        ..ValidatorSettings::default()
    };
    JwtValidator::builder(AuthConfig::new().with_own_issuer(own).with_provider(es))
        .settings(settings)
        .build()
}

/// Validate `token` from several tasks at once for [`MEASURE_FOR`] and print the rate.
async fn measure(label: &str, validator: &JwtValidator, token: &str) -> Result<()> {
    // Warm up (and fail fast if the token does not validate).
    validator.validate(token).await?;
    let workers = 2 * std::thread::available_parallelism().map_or(2, |cpus| cpus.get());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let validator = validator.clone();
        let token = token.to_owned();
        tasks.spawn(async move {
            let mut count: u64 = 0;
            while start.elapsed() < MEASURE_FOR {
                for _ in 0..32 {
                    validator.validate(&token).await?;
                }
                count += 32;
            }
            Ok::<u64, conflux_common::Error>(count)
        });
    }
    let mut total: u64 = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined.map_err(conflux_common::Error::internal)??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{label:<14} {:>12.0} validations/s  ({workers} concurrent callers)",
        total as f64 / elapsed
    );
    Ok(())
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(conflux_common::Error::internal)?;
    let rsa = TestKey::rsa_blocking(0)?;
    let ec = TestKey::es256()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(conflux_common::Error::internal)?
        .as_secs();
    let rs_token = rsa.sign_with(
        &json!({"iss": SITE, "sub": "user1|session1", "aud": "convex", "iat": now, "exp": now + 3600}),
        &conflux_local_oidc::SignOptions {
            kid: conflux_local_oidc::KidHeader::Omit,
            ..Default::default()
        },
    )?;
    let es_token = ec.sign(&json!({
        "iss": ES_ISSUER, "sub": "user1", "aud": "bench", "iat": now, "exp": now + 3600,
        "org": {"id": "o1", "role": "admin"},
    }))?;
    runtime.block_on(async {
        let cold = validator(&rsa, &ec, 0)?;
        let cached = validator(&rsa, &ec, 1024)?;
        measure("RS256 cold", &cold, &rs_token).await?;
        measure("RS256 cached", &cached, &rs_token).await?;
        measure("ES256 cold", &cold, &es_token).await?;
        measure("ES256 cached", &cached, &es_token).await?;
        Ok(())
    })
}
