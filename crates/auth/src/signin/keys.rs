//! Our own signing key: where it comes from, and the access tokens it signs.
//!
//! Why this module is careful: the key pair is given as two environment variables that
//! people paste by hand (`JWT_PRIVATE_KEY` as a PKCS#8 PEM, often with its newlines turned
//! into spaces, and `JWKS`). Convex Auth never checks that the two belong together, so a
//! mismatched pair shows up much later as every token being rejected. Here the pair is
//! checked at start-up and the error says which variable to fix.
//!
//! In dev mode, without the variables, a key pair is generated once and stored in
//! `<data dir>/auth-keys.json`, so tokens survive restarts; production refuses to start
//! without them.
//!
//! Access tokens have exactly the shape Convex Auth issues: header `{"alg":"RS256"}` (no
//! `kid`, no `typ`) and claims `sub = "<userId>|<sessionId>"`, `iss` = the site origin,
//! `aud = "convex"`, `iat`, `exp`, plus a unique `jti` so that two tokens issued in the same
//! second never compare equal (the Convex client treats an identical refreshed token as a
//! failed refresh).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use conflux_common::{Error, ErrorCode, Result};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value as Json};

use crate::config::OWN_AUDIENCE;

/// Size of generated keys (what `npx @convex-dev/auth` generates).
const GENERATED_KEY_BITS: usize = 2048;
/// Smallest RSA key accepted from the environment.
const MIN_KEY_BITS: usize = 2048;
/// The file in the data folder holding the keys generated in dev mode.
pub(crate) const DEV_KEYS_FILE: &str = "auth-keys.json";

const PKCS8_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PKCS8_END: &str = "-----END PRIVATE KEY-----";

/// An RSA key pair for signing our own access tokens, in the two text forms the
/// environment uses.
///
/// ```no_run
/// # fn demo() -> conflux_common::Result<()> {
/// let keys = conflux_auth::generate_signing_keys()?; // CPU-heavy: not on an async reactor
/// println!("JWT_PRIVATE_KEY=\"{}\"", keys.private_key_env());
/// println!("JWKS='{}'", keys.jwks_json());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SigningKeys {
    private: RsaPrivateKey,
    /// base64url of the modulus and exponent.
    n: String,
    e: String,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("bits", &(self.private.size() * 8))
            .finish_non_exhaustive()
    }
}

/// Generate a fresh 2048-bit RSA key pair for `JWT_PRIVATE_KEY` and `JWKS`.
///
/// Takes from a fraction of a second to several seconds of CPU: call it on a blocking
/// thread (`tokio::task::spawn_blocking`), never on an async reactor.
pub fn generate_signing_keys() -> Result<SigningKeys> {
    let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, GENERATED_KEY_BITS)
        .map_err(|err| Error::internal(format!("RSA key generation failed: {err}")))?;
    Ok(SigningKeys::from_private(private))
}

impl SigningKeys {
    fn from_private(private: RsaPrivateKey) -> SigningKeys {
        let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
        SigningKeys { private, n, e }
    }

    /// Parse `JWT_PRIVATE_KEY`: a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), where the
    /// newlines may be spaces or literal `\n`, optionally wrapped in quotes.
    pub fn from_private_key_env(text: &str) -> Result<SigningKeys> {
        let der = pkcs8_der(text)?;
        let private = RsaPrivateKey::from_pkcs8_der(&der).map_err(|err| {
            key_error(format!(
                "JWT_PRIVATE_KEY is not an RSA private key in PKCS#8 form ({err}); generate a \
                 new pair with `auth keys`"
            ))
        })?;
        let bits = private.size() * 8;
        if bits < MIN_KEY_BITS {
            return Err(key_error(format!(
                "JWT_PRIVATE_KEY is a {bits}-bit RSA key; use at least {MIN_KEY_BITS} bits"
            )));
        }
        Ok(SigningKeys::from_private(private))
    }

    /// The private key as `JWT_PRIVATE_KEY` holds it: a PKCS#8 PEM with its newlines
    /// replaced by spaces (as `npx @convex-dev/auth` writes it).
    pub fn private_key_env(&self) -> String {
        match self.private.to_pkcs8_pem(LineEnding::LF) {
            Ok(pem) => pem.trim_end().replace('\n', " "),
            // Encoding an in-memory RSA key to PEM cannot fail in practice; an empty value
            // would be refused loudly at the next start rather than silently accepted.
            Err(_) => String::new(),
        }
    }

    /// The public key as `JWKS` holds it: `{"keys":[{"use":"sig","kty":"RSA","n":…,"e":…}]}`,
    /// without `kid` or `alg`, as Convex Auth generates it.
    pub fn jwks_json(&self) -> String {
        json!({"keys": [self.public_jwk()]}).to_string()
    }

    fn public_jwk(&self) -> Json {
        json!({"use": "sig", "kty": "RSA", "n": self.n, "e": self.e})
    }

    /// Check that `jwks` (the `JWKS` variable) publishes this key pair's public key.
    pub fn check_jwks(&self, jwks: &str) -> Result<()> {
        let json: Json = serde_json::from_str(jwks.trim()).map_err(|err| {
            key_error(format!(
                "JWKS is not valid JSON ({err}); it must look like {{\"keys\":[{{\"kty\":\"RSA\",\"n\":…,\"e\":…}}]}}"
            ))
        })?;
        let keys = json
            .get("keys")
            .and_then(Json::as_array)
            .ok_or_else(|| key_error("JWKS has no `keys` array"))?;
        let matches = keys.iter().any(|key| {
            key.get("kty").and_then(Json::as_str) == Some("RSA")
                && key.get("n").and_then(Json::as_str).map(strip_padding) == Some(&self.n)
                && key.get("e").and_then(Json::as_str).map(strip_padding) == Some(&self.e)
        });
        if matches {
            Ok(())
        } else {
            Err(key_error(
                "JWT_PRIVATE_KEY and JWKS do not belong together: no key in JWKS is the public \
                 half of JWT_PRIVATE_KEY, so every token signed with it would be rejected. Set \
                 both from the same `auth keys` output",
            ))
        }
    }

    fn encoding_key(&self) -> Result<jsonwebtoken::EncodingKey> {
        let der = self
            .private
            .to_pkcs1_der()
            .map_err(|err| Error::internal(format!("encoding the signing key failed: {err}")))?;
        Ok(jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()))
    }

    fn decoding_key(&self) -> Result<jsonwebtoken::DecodingKey> {
        jsonwebtoken::DecodingKey::from_rsa_components(&self.n, &self.e)
            .map_err(|err| Error::internal(format!("the public signing key is invalid: {err}")))
    }
}

fn strip_padding(text: &str) -> &str {
    text.trim_end_matches('=')
}

fn key_error(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidValue, message.into())
}

/// The DER bytes of a PKCS#8 PEM given the way environment variables mangle it.
fn pkcs8_der(text: &str) -> Result<Vec<u8>> {
    let text = text.trim().trim_matches(|c| c == '"' || c == '\'');
    let text = text.replace("\\n", "\n");
    if text.contains("BEGIN RSA PRIVATE KEY") {
        return Err(key_error(
            "JWT_PRIVATE_KEY is a PKCS#1 key (`BEGIN RSA PRIVATE KEY`); it must be PKCS#8 \
             (`BEGIN PRIVATE KEY`). Convert it with `openssl pkcs8 -topk8 -nocrypt`, or \
             generate a new pair with `auth keys`",
        ));
    }
    if text.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        return Err(key_error(
            "JWT_PRIVATE_KEY is encrypted; it must be an unencrypted PKCS#8 key",
        ));
    }
    let start = text.find(PKCS8_BEGIN).ok_or_else(|| {
        key_error(format!(
            "JWT_PRIVATE_KEY does not contain `{PKCS8_BEGIN}`; it must be a PKCS#8 PEM \
             (newlines may be spaces)"
        ))
    })?;
    let body_start = start + PKCS8_BEGIN.len();
    let end = text[body_start..]
        .find(PKCS8_END)
        .map(|offset| body_start + offset)
        .ok_or_else(|| key_error(format!("JWT_PRIVATE_KEY lacks its `{PKCS8_END}` line")))?;
    let body: String = text[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD
        .decode(body.as_bytes())
        .map_err(|err| key_error(format!("JWT_PRIVATE_KEY is not valid base64 ({err})")))
}

/// Where the signing keys of an installation came from (for the start-up log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// `JWT_PRIVATE_KEY` and `JWKS` (or the builder).
    Configured,
    /// Generated now and stored in this file.
    Generated(PathBuf),
    /// Read from this file, generated by an earlier dev-mode start.
    DevFile(PathBuf),
}

/// Keys given explicitly: a private key PEM and, optionally, the JWKS that must match it.
#[derive(Clone, Debug)]
pub(crate) struct ConfiguredKeys {
    pub private_key: String,
    pub jwks: Option<String>,
}

/// Resolve the signing keys: configured ones (checked against their JWKS), or in dev mode
/// the ones stored in `data_dir` (generated on first use). Blocking: may generate a key.
pub(crate) fn resolve_keys(
    configured: Option<&ConfiguredKeys>,
    jwks_without_key: bool,
    data_dir: &Path,
    dev_mode: bool,
) -> Result<(SigningKeys, KeySource)> {
    if let Some(configured) = configured {
        let keys = SigningKeys::from_private_key_env(&configured.private_key)?;
        match &configured.jwks {
            Some(jwks) => keys.check_jwks(jwks)?,
            None => tracing::warn!(
                "JWT_PRIVATE_KEY is set but JWKS is not; publishing the public key derived from \
                 JWT_PRIVATE_KEY. Set JWKS too, as Convex Auth expects both"
            ),
        }
        return Ok((keys, KeySource::Configured));
    }
    if jwks_without_key {
        return Err(key_error(
            "JWKS is set but JWT_PRIVATE_KEY is not: tokens cannot be signed. Set both from the \
             same `auth keys` output",
        ));
    }
    if !dev_mode {
        return Err(key_error(
            "The built-in sign-in needs its signing key: set JWT_PRIVATE_KEY and JWKS (generate \
             them with `auth keys`). Only dev mode generates a key pair by itself",
        ));
    }
    let path = data_dir.join(DEV_KEYS_FILE);
    if path.is_file() {
        let keys = read_dev_keys(&path)?;
        return Ok((keys, KeySource::DevFile(path)));
    }
    let keys = generate_signing_keys()?;
    write_dev_keys(&path, &keys)?;
    Ok((keys, KeySource::Generated(path)))
}

fn read_dev_keys(path: &Path) -> Result<SigningKeys> {
    let fail = |why: String| {
        key_error(format!(
            "the dev signing keys in `{}` are unusable ({why}); delete the file to generate new \
             ones (everyone signed in will have to sign in again)",
            path.display()
        ))
    };
    let text = std::fs::read_to_string(path).map_err(|err| fail(err.to_string()))?;
    let json: Json = serde_json::from_str(&text).map_err(|err| fail(err.to_string()))?;
    let private = json
        .get("JWT_PRIVATE_KEY")
        .and_then(Json::as_str)
        .ok_or_else(|| fail("no JWT_PRIVATE_KEY".into()))?;
    let keys = SigningKeys::from_private_key_env(private).map_err(|err| fail(err.to_string()))?;
    if let Some(jwks) = json.get("JWKS").and_then(Json::as_str) {
        keys.check_jwks(jwks).map_err(|err| fail(err.to_string()))?;
    }
    Ok(keys)
}

fn write_dev_keys(path: &Path, keys: &SigningKeys) -> Result<()> {
    let fail = |err: std::io::Error| {
        Error::new(
            ErrorCode::StorageUnavailable,
            format!(
                "Could not store the generated dev signing keys in `{}`: {err}",
                path.display()
            ),
        )
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text = serde_json::to_string_pretty(&json!({
        "JWT_PRIVATE_KEY": keys.private_key_env(),
        "JWKS": keys.jwks_json(),
    }))
    .map_err(|err| Error::internal(format!("encoding the dev keys failed: {err}")))?;
    // Written next to the target and renamed, so a crash never leaves half a key behind.
    let temporary = path.with_extension("json.tmp");
    write_private_file(&temporary, text.as_bytes()).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
}

#[cfg(unix)]
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The verified claims of one of our own access tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnClaims {
    pub user_id: String,
    pub session_id: String,
    /// `exp`, seconds since the epoch.
    pub expires_at_secs: u64,
}

/// Signs our access tokens and verifies them (for sign-out with an expired token).
pub(crate) struct TokenIssuer {
    issuer: String,
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
    jwks_json: String,
}

impl TokenIssuer {
    /// Tokens with `iss` = `issuer` (the site origin, no trailing `/`), signed with `keys`.
    pub(crate) fn new(issuer: &str, keys: &SigningKeys) -> Result<TokenIssuer> {
        Ok(TokenIssuer {
            issuer: issuer.trim_end_matches('/').to_owned(),
            encoding: keys.encoding_key()?,
            decoding: keys.decoding_key()?,
            jwks_json: keys.jwks_json(),
        })
    }

    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    pub(crate) fn jwks_json(&self) -> &str {
        &self.jwks_json
    }

    /// A signed access token for `user_id|session_id`, issued at `now_secs` and valid until
    /// `expires_secs`.
    pub(crate) fn issue(
        &self,
        user_id: &str,
        session_id: &str,
        now_secs: u64,
        expires_secs: u64,
    ) -> Result<String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let claims = json!({
            "sub": format!("{user_id}|{session_id}"),
            "iss": self.issuer,
            "aud": OWN_AUDIENCE,
            "iat": now_secs,
            "exp": expires_secs,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{payload}");
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &self.encoding,
            jsonwebtoken::Algorithm::RS256,
        )
        .map_err(|err| Error::internal(format!("signing an access token failed: {err}")))?;
        Ok(format!("{signing_input}.{signature}"))
    }

    /// Verify that `token` is one of ours: RS256 signature by our key, our issuer, our
    /// audience, a `sub` of the form `userId|sessionId`. With `allow_expired`, a passed `exp`
    /// is accepted (signing out with an expired token must still work).
    pub(crate) fn verify(
        &self,
        token: &str,
        now_secs: u64,
        allow_expired: bool,
    ) -> std::result::Result<OwnClaims, String> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("the token is not a JWT (three dot-separated parts)".into());
        };
        let decode = |segment: &str| -> std::result::Result<Json, String> {
            let bytes = URL_SAFE_NO_PAD
                .decode(segment)
                .map_err(|_| "a token segment is not base64url".to_owned())?;
            serde_json::from_slice(&bytes).map_err(|_| "a token segment is not JSON".to_owned())
        };
        let header = decode(header)?;
        if header.get("alg").and_then(Json::as_str) != Some("RS256") {
            return Err("the token is not signed with RS256".into());
        }
        let signing_input = &token[..token.len() - signature.len() - 1];
        let valid = jsonwebtoken::crypto::verify(
            signature,
            signing_input.as_bytes(),
            &self.decoding,
            jsonwebtoken::Algorithm::RS256,
        )
        .unwrap_or(false);
        if !valid {
            return Err("the signature is not by this deployment's signing key".into());
        }
        let claims = decode(payload)?;
        let iss = claims.get("iss").and_then(Json::as_str).unwrap_or_default();
        if iss.trim_end_matches('/') != self.issuer {
            return Err(format!("the issuer is not `{}`", self.issuer));
        }
        let aud_ok = match claims.get("aud") {
            Some(Json::String(aud)) => aud == OWN_AUDIENCE,
            Some(Json::Array(list)) => list.iter().any(|aud| aud.as_str() == Some(OWN_AUDIENCE)),
            _ => false,
        };
        if !aud_ok {
            return Err(format!("the audience is not `{OWN_AUDIENCE}`"));
        }
        let exp = claims
            .get("exp")
            .and_then(Json::as_u64)
            .ok_or_else(|| "the token has no `exp`".to_owned())?;
        if !allow_expired && exp <= now_secs {
            return Err("the token has expired".into());
        }
        let sub = claims.get("sub").and_then(Json::as_str).unwrap_or_default();
        match sub.split_once('|') {
            Some((user, session)) if !user.is_empty() && !session.is_empty() => Ok(OwnClaims {
                user_id: user.to_owned(),
                session_id: session.to_owned(),
                expires_at_secs: exp,
            }),
            Some(_) | None => Err("the `sub` claim is not `<userId>|<sessionId>`".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One generated key for the tests of this module (generation is slow in debug builds).
    fn keys() -> SigningKeys {
        static KEYS: std::sync::OnceLock<SigningKeys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| match generate_signing_keys() {
            Ok(keys) => keys,
            Err(err) => panic!("generating a test key failed: {err}"),
        })
        .clone()
    }

    #[test]
    fn the_private_key_survives_newlines_turned_into_spaces_or_escapes() -> Result<()> {
        let keys = keys();
        let spaced = keys.private_key_env();
        assert!(spaced.starts_with(PKCS8_BEGIN) && !spaced.contains('\n'));
        let from_spaces = SigningKeys::from_private_key_env(&spaced)?;
        from_spaces.check_jwks(&keys.jwks_json())?;
        // A .env file with the PEM's newlines written as `\n`, in quotes.
        let pem = keys
            .private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|err| Error::internal(err.to_string()))?;
        let escaped = format!("\"{}\"", pem.trim_end().replace('\n', "\\n"));
        SigningKeys::from_private_key_env(&escaped)?.check_jwks(&keys.jwks_json())?;
        Ok(())
    }

    #[test]
    fn the_jwks_looks_like_the_one_convex_auth_generates() {
        let jwks: Json = serde_json::from_str(&keys().jwks_json()).unwrap_or(Json::Null);
        let key = &jwks["keys"][0];
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["e"], "AQAB");
        assert!(key.get("kid").is_none() && key.get("alg").is_none());
    }

    #[test]
    fn a_pkcs1_key_is_refused_with_the_conversion_command() {
        let err = SigningKeys::from_private_key_env(
            "-----BEGIN RSA PRIVATE KEY----- MIIB -----END RSA PRIVATE KEY-----",
        )
        .err()
        .map(|err| err.message().to_owned())
        .unwrap_or_default();
        assert!(err.contains("openssl pkcs8 -topk8"), "{err}");
    }

    #[test]
    fn tokens_have_the_convex_auth_shape_and_verify() -> Result<()> {
        let issuer = TokenIssuer::new("https://site.example.com/", &keys())?;
        let token = issuer.issue("u1", "s1", 1000, 4600)?;
        let header = token.split('.').next().unwrap_or_default();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap_or_default(),
            br#"{"alg":"RS256"}"#
        );
        let claims = issuer.verify(&token, 2000, false);
        assert_eq!(
            claims,
            Ok(OwnClaims {
                user_id: "u1".into(),
                session_id: "s1".into(),
                expires_at_secs: 4600
            })
        );
        assert!(issuer.verify(&token, 5000, false).is_err());
        assert!(issuer.verify(&token, 5000, true).is_ok());
        let again = issuer.issue("u1", "s1", 1000, 4600)?;
        assert_ne!(token, again, "every token has its own jti");
        Ok(())
    }
}
