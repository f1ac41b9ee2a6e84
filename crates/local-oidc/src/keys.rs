//! Real signing keys for tests, and a JWT signer that lets a test choose every header field.
//!
//! Why this module exists: a validator is only tested for real if the tokens it sees are
//! signed with real RSA, P-256 and Ed25519 keys, including tokens a well-behaved issuer would
//! never produce (a forged `kid`, a `jku` pointing elsewhere, no `kid` at all). [`TestKey`]
//! holds one key pair, publishes its public half as a JWK and signs arbitrary headers and
//! claims.
//!
//! RSA key generation takes a noticeable fraction of a second (several seconds in debug
//! builds), so RSA keys come from a process-wide pool: key number `n` is generated once, on a
//! blocking thread (never on the async reactor), and reused by every provider and test of the
//! process that asks for key `n`.

use std::sync::{Arc, LazyLock, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use conflux_common::{Error, Result};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};

/// Size of the RSA keys the pool generates.
const RSA_KEY_BITS: usize = 2048;

/// The signature algorithm of a [`TestKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TestAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048-bit RSA keys).
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl TestAlg {
    /// The JOSE name, e.g. `"RS256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TestAlg::RS256 => "RS256",
            TestAlg::ES256 => "ES256",
            TestAlg::EdDSA => "EdDSA",
        }
    }

    fn jsonwebtoken(self) -> Algorithm {
        match self {
            TestAlg::RS256 => Algorithm::RS256,
            TestAlg::ES256 => Algorithm::ES256,
            TestAlg::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// Which `kid` a signed token's header carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KidHeader {
    /// The signing key's own `kid`.
    #[default]
    KeyId,
    /// No `kid` header at all.
    Omit,
    /// This exact string, whatever key signs.
    Custom(String),
}

/// How [`TestKey::sign`] builds the protected header.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SignOptions {
    /// The `kid` header.
    pub kid: KidHeader,
    /// Extra header fields (`jku`, `x5u`, `typ`, ...), written after `alg` and `kid`; a field
    /// named `alg` here overrides the real algorithm in the header (the signature is still
    /// made with the key's own algorithm).
    pub extra_header: Map<String, Json>,
}

/// One key pair: a private key that signs and its public half as a JWK.
#[derive(Clone)]
pub struct TestKey {
    alg: TestAlg,
    kid: String,
    encoding: Arc<EncodingKey>,
    public_jwk: Json,
    public_pem: String,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

type PoolSlot = Arc<Mutex<Option<TestKey>>>;

/// Generated RSA keys by pool index. Each slot has its own lock so that two tasks asking for
/// the same key wait for one generation instead of doing two.
static RSA_POOL: LazyLock<Mutex<Vec<PoolSlot>>> = LazyLock::new(|| Mutex::new(Vec::new()));

fn pool_slot(index: usize) -> Result<PoolSlot> {
    let mut pool = RSA_POOL
        .lock()
        .map_err(|_| Error::internal("the RSA key pool lock is poisoned"))?;
    while pool.len() <= index {
        pool.push(Arc::new(Mutex::new(None)));
    }
    Ok(pool[index].clone())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638 thumbprint of the required public members (already in lexicographic order),
/// shortened: a stable, unique-enough `kid`.
fn thumbprint_kid(canonical: &Json) -> String {
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    b64(&digest[..12])
}

impl TestKey {
    /// RSA key number `index` of the process-wide pool (2048 bits, `RS256`), generated on a
    /// blocking thread the first time it is asked for.
    pub async fn rsa(index: usize) -> Result<TestKey> {
        tokio::task::spawn_blocking(move || TestKey::rsa_blocking(index))
            .await
            .map_err(|err| Error::internal(format!("RSA key generation task failed: {err}")))?
    }

    /// [`TestKey::rsa`] for synchronous callers (benchmarks, the command line). Blocks while
    /// the key is generated: never call it on an async reactor thread.
    pub fn rsa_blocking(index: usize) -> Result<TestKey> {
        let slot = pool_slot(index)?;
        let mut guard = slot
            .lock()
            .map_err(|_| Error::internal("an RSA key pool slot lock is poisoned"))?;
        if let Some(key) = guard.as_ref() {
            return Ok(key.clone());
        }
        let key = generate_rsa()?;
        *guard = Some(key.clone());
        Ok(key)
    }

    /// A fresh P-256 key (`ES256`). Generation takes microseconds, so it is not pooled.
    pub fn es256() -> Result<TestKey> {
        use p256::elliptic_curve::sec1::{Coordinates, ToEncodedPoint};
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let der = secret
            .to_pkcs8_der()
            .map_err(|err| Error::internal(format!("encoding a P-256 key failed: {err}")))?;
        let public = secret.public_key();
        let point = public.to_encoded_point(false);
        let (x, y) = match point.coordinates() {
            Coordinates::Uncompressed { x, y } => (b64(x), b64(y)),
            Coordinates::Identity
            | Coordinates::Compact { .. }
            | Coordinates::Compressed { .. } => {
                return Err(Error::internal(
                    "a P-256 public key did not encode uncompressed",
                ));
            }
        };
        let kid = thumbprint_kid(&json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}));
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|err| Error::internal(format!("encoding a P-256 public key failed: {err}")))?;
        Ok(TestKey {
            alg: TestAlg::ES256,
            public_jwk: json!({
                "kty": "EC", "crv": "P-256", "x": x, "y": y,
                "use": "sig", "alg": "ES256", "kid": kid,
            }),
            kid,
            encoding: Arc::new(EncodingKey::from_ec_der(der.as_bytes())),
            public_pem,
        })
    }

    /// A fresh Ed25519 key (`EdDSA`).
    pub fn ed25519() -> Result<TestKey> {
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};

        let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let der = signing
            .to_pkcs8_der()
            .map_err(|err| Error::internal(format!("encoding an Ed25519 key failed: {err}")))?;
        let x = b64(signing.verifying_key().as_bytes());
        let kid = thumbprint_kid(&json!({"crv": "Ed25519", "kty": "OKP", "x": x}));
        let public_pem = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|err| {
                Error::internal(format!("encoding an Ed25519 public key failed: {err}"))
            })?;
        Ok(TestKey {
            alg: TestAlg::EdDSA,
            public_jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "x": x,
                "use": "sig", "alg": "EdDSA", "kid": kid,
            }),
            kid,
            encoding: Arc::new(EncodingKey::from_ed_der(der.as_bytes())),
            public_pem,
        })
    }

    /// The key's algorithm.
    pub fn alg(&self) -> TestAlg {
        self.alg
    }

    /// The key's id (a shortened RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK with `kty`, `use: "sig"`, `alg` and `kid`.
    pub fn public_jwk(&self) -> Json {
        self.public_jwk.clone()
    }

    /// The public key as a JWK without `kid`, the way Convex Auth publishes its own key.
    pub fn public_jwk_without_kid(&self) -> Json {
        let mut jwk = self.public_jwk.clone();
        if let Some(object) = jwk.as_object_mut() {
            object.remove("kid");
        }
        jwk
    }

    /// `{"keys": [<public JWK>]}`.
    pub fn jwks(&self) -> Json {
        json!({ "keys": [self.public_jwk()] })
    }

    /// The public key as an SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// Sign `claims` with a header `{"alg", "typ": "JWT", "kid"}` carrying this key's `kid`.
    pub fn sign(&self, claims: &Json) -> Result<String> {
        self.sign_with(claims, &SignOptions::default())
    }

    /// Sign `claims` with a header built from `options`.
    pub fn sign_with(&self, claims: &Json, options: &SignOptions) -> Result<String> {
        let mut header = Map::new();
        header.insert("alg".into(), Json::String(self.alg.as_str().into()));
        header.insert("typ".into(), Json::String("JWT".into()));
        match &options.kid {
            KidHeader::KeyId => {
                header.insert("kid".into(), Json::String(self.kid.clone()));
            }
            KidHeader::Omit => {}
            KidHeader::Custom(kid) => {
                header.insert("kid".into(), Json::String(kid.clone()));
            }
        }
        for (name, value) in &options.extra_header {
            header.insert(name.clone(), value.clone());
        }
        let signing_input = format!(
            "{}.{}",
            b64(Json::Object(header).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &self.encoding,
            self.alg.jsonwebtoken(),
        )
        .map_err(|err| Error::internal(format!("signing a test token failed: {err}")))?;
        Ok(format!("{signing_input}.{signature}"))
    }
}

fn generate_rsa() -> Result<TestKey> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;

    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_KEY_BITS)
        .map_err(|err| Error::internal(format!("RSA key generation failed: {err}")))?;
    let der = private
        .to_pkcs1_der()
        .map_err(|err| Error::internal(format!("encoding an RSA key failed: {err}")))?;
    let public = private.to_public_key();
    let n = b64(&public.n().to_bytes_be());
    let e = b64(&public.e().to_bytes_be());
    let kid = thumbprint_kid(&json!({"e": e, "kty": "RSA", "n": n}));
    let public_pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|err| Error::internal(format!("encoding an RSA public key failed: {err}")))?;
    Ok(TestKey {
        alg: TestAlg::RS256,
        public_jwk: json!({
            "kty": "RSA", "n": n, "e": e,
            "use": "sig", "alg": "RS256", "kid": kid,
        }),
        kid,
        encoding: Arc::new(EncodingKey::from_rsa_der(der.as_bytes())),
        public_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(token: &str, key: &TestKey) -> bool {
        let (message, signature) = token.rsplit_once('.').unwrap_or_default();
        let decoding = jsonwebtoken::DecodingKey::from_jwk(
            &serde_json::from_value(key.public_jwk()).expect("the public JWK parses"),
        )
        .expect("the public JWK is a key");
        jsonwebtoken::crypto::verify(
            signature,
            message.as_bytes(),
            &decoding,
            key.alg.jsonwebtoken(),
        )
        .unwrap_or(false)
    }

    #[test]
    fn each_key_kind_signs_tokens_its_public_jwk_verifies() -> Result<()> {
        for key in [
            TestKey::rsa_blocking(0)?,
            TestKey::es256()?,
            TestKey::ed25519()?,
        ] {
            let token = key.sign(&json!({"sub": "u1"}))?;
            assert!(
                verify(&token, &key),
                "{:?} must verify its own token",
                key.alg()
            );
            let parts: Vec<&str> = token.split('.').collect();
            let forged_payload = b64(json!({"sub": "u2"}).to_string().as_bytes());
            let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
            assert!(
                !verify(&tampered, &key),
                "{:?} must reject a changed payload",
                key.alg()
            );
        }
        Ok(())
    }

    #[test]
    fn the_pool_hands_out_the_same_rsa_key_for_the_same_index() -> Result<()> {
        let first = TestKey::rsa_blocking(0)?;
        let again = TestKey::rsa_blocking(0)?;
        assert_eq!(first.kid(), again.kid());
        assert_eq!(first.public_jwk()["kty"], "RSA");
        assert!(first
            .public_key_pem()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        Ok(())
    }

    #[test]
    fn sign_options_control_the_header() -> Result<()> {
        let key = TestKey::es256()?;
        let mut extra = Map::new();
        extra.insert("jku".into(), json!("http://127.0.0.1:9/keys"));
        let token = key.sign_with(
            &json!({"sub": "u1"}),
            &SignOptions {
                kid: KidHeader::Custom("../../etc/passwd".into()),
                extra_header: extra,
            },
        )?;
        let header_b64 = token.split('.').next().unwrap_or_default();
        let header: Json =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).expect("b64"))
                .expect("json header");
        assert_eq!(header["kid"], "../../etc/passwd");
        assert_eq!(header["jku"], "http://127.0.0.1:9/keys");
        assert_eq!(header["alg"], "ES256");

        let no_kid = key.sign_with(
            &json!({}),
            &SignOptions {
                kid: KidHeader::Omit,
                ..Default::default()
            },
        )?;
        let header: Json = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(no_kid.split('.').next().unwrap_or_default())
                .expect("b64"),
        )
        .expect("json header");
        assert!(header.get("kid").is_none());
        Ok(())
    }
}
