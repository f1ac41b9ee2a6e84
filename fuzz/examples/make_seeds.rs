//! Writes the seeds that cannot be written by hand: tokens signed with the fixed fuzzing
//! keys (`jwt_token`, `jwt_claims`) and import files whose ids belong to the tables of the
//! import target's schema (`import_jsonl`).
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example make_seeds
//! ```
//!
//! The output is deterministic (fixed keys, the validator's pinned clock, fixed ids), so
//! running it again rewrites the same files.

use std::path::{Path, PathBuf};

use conflux_db::{Database, Schema, TableDef};
use conflux_fuzz::jwt::{
    keys, KeyName, CUSTOM_AUDIENCE, CUSTOM_ISSUER, ED25519_KID, ES_ISSUER, NOW_SECS, OWN_ISSUER,
    P256_KID,
};
use conflux_values::validator::v;
use conflux_values::{object, DocumentId, TableNumber, Value};
use serde_json::{json, Value as Json};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn corpus(target: &str) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<()> {
    std::fs::write(dir.join(name), contents)?;
    Ok(())
}

fn now() -> i64 {
    i64::try_from(NOW_SECS).unwrap_or(i64::MAX)
}

/// `(file name, key, header, claims)` of every token seed.
fn token_cases() -> Vec<(&'static str, KeyName, Json, Json)> {
    let now = now();
    let own_header = json!({"alg": "RS256", "typ": "JWT"});
    let ed_header = json!({"alg": "EdDSA", "typ": "JWT", "kid": ED25519_KID});
    let es_header = json!({"alg": "ES256", "typ": "JWT", "kid": P256_KID});
    let own_claims = |sub: &str| {
        json!({
            "iss": OWN_ISSUER, "aud": "convex", "sub": sub,
            "iat": now - 60, "exp": now + 3600,
        })
    };
    vec![
        // Accepted.
        (
            "own-session",
            KeyName::Rsa,
            own_header.clone(),
            own_claims("user1|session1"),
        ),
        (
            "own-oidc-claims",
            KeyName::Rsa,
            own_header.clone(),
            json!({
                "iss": format!("{OWN_ISSUER}/"), "aud": ["convex", "other"], "sub": "u2|s2",
                "exp": now + 60, "nbf": now - 1, "name": "Ada", "picture": "https://x/a.png",
                "email_verified": "true", "updated_at": 1_700_000_000,
                "address": {"formatted": "1 Main St"}, "locale": "en", "nonce": "n",
            }),
        ),
        (
            "custom-nested-claims",
            KeyName::Ed25519,
            ed_header.clone(),
            json!({
                "iss": CUSTOM_ISSUER, "aud": [CUSTOM_AUDIENCE, "another"], "sub": "user-42",
                "exp": now + 600, "iat": now,
                "org": {"id": "o1", "role": {"name": "admin"}}, "email": "a@b.c",
            }),
        ),
        (
            "es256-fractional-times",
            KeyName::P256,
            es_header.clone(),
            json!({
                "iss": ES_ISSUER, "aud": "anything", "sub": "s",
                "exp": (now + 30) as f64 + 0.5, "iat": now as f64 - 0.25,
            }),
        ),
        // Rejected, one check each.
        (
            "own-ended-session",
            KeyName::Rsa,
            own_header.clone(),
            own_claims("user1|ended-7"),
        ),
        (
            "own-no-session",
            KeyName::Rsa,
            own_header.clone(),
            own_claims("user1"),
        ),
        (
            "expired",
            KeyName::Ed25519,
            ed_header.clone(),
            json!({"iss": CUSTOM_ISSUER, "aud": CUSTOM_AUDIENCE, "sub": "u", "exp": now - 3600}),
        ),
        (
            "not-yet-valid",
            KeyName::Ed25519,
            ed_header.clone(),
            json!({"iss": CUSTOM_ISSUER, "aud": CUSTOM_AUDIENCE, "sub": "u", "exp": now + 90, "nbf": now + 60}),
        ),
        (
            "wrong-audience",
            KeyName::Ed25519,
            ed_header.clone(),
            json!({"iss": CUSTOM_ISSUER, "aud": "someone-else", "sub": "u", "exp": now + 90}),
        ),
        (
            "unknown-issuer",
            KeyName::Ed25519,
            ed_header.clone(),
            json!({"iss": "https://evil.example", "aud": CUSTOM_AUDIENCE, "sub": "u", "exp": now + 90}),
        ),
        (
            "alg-confusion",
            KeyName::Ed25519,
            json!({"alg": "RS256", "typ": "JWT"}),
            own_claims("user1|session1"),
        ),
        (
            "enc-only-key",
            KeyName::P256,
            json!({"alg": "ES256", "kid": "es-enc"}),
            json!({"iss": ES_ISSUER, "sub": "s", "exp": now + 90}),
        ),
        (
            "unknown-kid",
            KeyName::P256,
            json!({"alg": "ES256", "kid": "../../etc/passwd"}),
            json!({"iss": ES_ISSUER, "sub": "s", "exp": now + 90}),
        ),
        (
            "crit-header",
            KeyName::P256,
            json!({"alg": "ES256", "kid": P256_KID, "crit": ["exp"]}),
            json!({"iss": ES_ISSUER, "sub": "s", "exp": now + 90}),
        ),
        (
            "empty-sub",
            KeyName::P256,
            es_header,
            json!({"iss": ES_ISSUER, "sub": "", "exp": now + 90}),
        ),
        (
            "no-exp",
            KeyName::Ed25519,
            ed_header,
            json!({"iss": CUSTOM_ISSUER, "aud": CUSTOM_AUDIENCE, "sub": "u"}),
        ),
    ]
}

fn key_label(key: KeyName) -> &'static str {
    match key {
        KeyName::Rsa => "rsa",
        KeyName::Ed25519 => "ed25519",
        KeyName::P256 => "p256",
    }
}

fn token_seeds() -> Result<()> {
    let tokens = corpus("jwt_token")?;
    let claims_dir = corpus("jwt_claims")?;
    for (name, key, header, claims) in token_cases() {
        let token = keys().get(key).sign(&header, &claims);
        write(&tokens, name, &token)?;
        write(
            &claims_dir,
            name,
            &format!("{}\n{header}\n{claims}", key_label(key)),
        )?;
    }
    // Tokens that are not even well formed.
    let signed = keys()
        .get(KeyName::Ed25519)
        .sign(&json!({"alg": "EdDSA"}), &json!({"iss": CUSTOM_ISSUER}));
    let mut parts = signed.split('.');
    let (header, payload) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    write(
        &tokens,
        "alg-none-unsigned",
        &format!("eyJhbGciOiJub25lIn0.{payload}."),
    )?;
    write(&tokens, "two-segments", &format!("{header}.{payload}"))?;
    write(
        &tokens,
        "padded-base64",
        &format!("{header}=.{payload}.c2ln"),
    )?;
    Ok(())
}

fn auth_config_seeds() -> Result<()> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    let dir = corpus("auth_config")?;
    let keys = keys();
    let own = json!({"keys": [keys.rsa.jwk]}).to_string();
    write(&dir, "own-jwks-rsa-without-kid", &own)?;
    let mixed = json!({"keys": [keys.rsa.jwk, keys.ed25519.jwk, keys.p256.jwk,
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]})
    .to_string();
    write(&dir, "inline-jwks-every-kind", &mixed)?;
    let ed = json!({"keys": [keys.ed25519.jwk]}).to_string();
    let base64_url = format!("data:application/json;base64,{}", STANDARD.encode(&ed));
    write(&dir, "data-url-base64", &base64_url)?;
    let config = json!({"providers": [
        {"type": "customJwt", "issuer": CUSTOM_ISSUER, "jwks": base64_url,
         "algorithm": "EdDSA", "applicationID": CUSTOM_AUDIENCE},
        {"type": "customJwt", "issuer": ES_ISSUER, "algorithm": "ES256",
         "jwks": {"keys": [keys.p256.jwk]}},
    ]});
    write(
        &dir,
        "config-custom-data-url-and-inline",
        &config.to_string(),
    )?;
    Ok(())
}

fn import_seeds() -> Result<()> {
    // The import target's schema; table numbers are learnt from ids the database makes.
    let schema = Schema::new()
        .table(TableDef::new("messages").index("by_channel", &["channel"]))
        .table(TableDef::new("users").validator(v::object([
            ("name", v::string().into()),
            ("age", v::optional(v::float64())),
        ])));
    let db = Database::open_in_memory(schema)?;
    let mut tx = db.begin();
    let message_table = tx
        .insert("messages", object! {"channel" => "general"})?
        .table_number();
    let user_table = tx
        .insert("users", object! {"name" => "ada"})?
        .table_number();
    drop(tx);

    let id = |table: TableNumber, n: u8| DocumentId::from_parts(table, [n; 16]).to_string();
    let line = |table: &str, id: String, time: f64, fields: Value| -> Result<String> {
        let mut json = fields.to_convex_json();
        let map = json.as_object_mut().ok_or("fields are an object")?;
        map.insert("_table".into(), json!(table));
        map.insert("_id".into(), json!(id));
        map.insert("_creationTime".into(), json!(time));
        Ok(json.to_string())
    };
    let dir = corpus("import_jsonl")?;
    let export = [
        line(
            "messages",
            id(message_table, 1),
            1_733_000_000_000.0,
            Value::from(object! {"channel" => "general", "body" => "hello", "likes" => 3i64}),
        )?,
        line(
            "messages",
            id(message_table, 2),
            1_733_000_000_001.5,
            Value::from(object! {
                "channel" => "random",
                "body" => "bytes and floats",
                "blob" => vec![0u8, 1, 255],
                "score" => f64::NAN,
                "tags" => vec![Value::from("a"), Value::Null, Value::from(-0.0)],
                "author" => Value::from(id(user_table, 3)),
            }),
        )?,
        line(
            "users",
            id(user_table, 3),
            1_733_000_000_002.0,
            Value::from(object! {"name" => "ada", "age" => 36.0}),
        )?,
    ];
    write(&dir, "export", &format!("{}\n", export.join("\n")))?;
    write(
        &dir,
        "schema-violation",
        &format!(
            "{}\n",
            line(
                "users",
                id(user_table, 4),
                5.0,
                Value::from(object! {"name" => 7i64})
            )?
        ),
    )?;
    write(
        &dir,
        "id-of-another-table",
        &format!(
            "{}\n",
            line(
                "users",
                id(message_table, 5),
                5.0,
                Value::from(object! {"name" => "x"})
            )?
        ),
    )?;
    write(
        &dir,
        "duplicate-id",
        &format!("{}\n{}\n", export[0], export[0]),
    )?;
    write(
        &dir,
        "unknown-table-and-blank-lines",
        &format!(
            "\n{}\n\n",
            line("nope", id(message_table, 6), 1.0, Value::from(object! {}))?
        ),
    )?;
    Ok(())
}

fn main() -> Result<()> {
    token_seeds()?;
    auth_config_seeds()?;
    import_seeds()?;
    println!("seeds written under {}/corpus", env!("CARGO_MANIFEST_DIR"));
    Ok(())
}
