//! The token validator under test, with fixed keys and a pinned clock.
//!
//! Why fixed keys: the seed corpus holds real signed tokens, and they must verify on every
//! machine that runs the fuzzers. The keys in `fuzz/keys/` and below exist only for
//! fuzzing; nothing else trusts them.
//!
//! The validator trusts three issuers, one per code path of the validator:
//!
//! | issuer | keys | algorithm | audience |
//! |---|---|---|---|
//! | [`OWN_ISSUER`] (own issuer, sessions checked) | inline JWKS, RSA key without `kid` | RS256 | `convex` |
//! | [`CUSTOM_ISSUER`] (custom JWT) | `data:` URL, base64 | EdDSA | [`CUSTOM_AUDIENCE`] |
//! | [`ES_ISSUER`] (custom JWT) | `data:` URL, percent-encoded, with unusable keys beside the good one | ES256 | any |

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use conflux_auth::{
    AuthConfig, CustomJwtProvider, JwksSource, JwtValidator, OwnIssuer, SessionChecker,
    SigningAlgorithm, ValidatorSettings,
};
use conflux_common::Result;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value as Json};

/// The validator's clock: every seed token is valid at this instant forever.
pub const NOW_SECS: u64 = 1_750_000_000;
/// The deployment's own issuer (tokens of the built-in sign-in).
pub const OWN_ISSUER: &str = "https://site.conflux.test";
/// A custom JWT issuer whose tokens must carry [`CUSTOM_AUDIENCE`].
pub const CUSTOM_ISSUER: &str = "https://issuer.conflux.test";
/// The audience [`CUSTOM_ISSUER`]'s tokens must carry.
pub const CUSTOM_AUDIENCE: &str = "conflux-app";
/// A custom JWT issuer without an application id (any audience).
pub const ES_ISSUER: &str = "https://es.conflux.test";
/// The `kid` of the Ed25519 key.
pub const ED25519_KID: &str = "ed-1";
/// The `kid` of the P-256 key.
pub const P256_KID: &str = "es-1";
/// Sessions whose id starts with this are ended (signed out).
pub const ENDED_SESSION_PREFIX: &str = "ended";

const RSA_PEM: &str = include_str!("../keys/rsa-2048.pem");
/// The Ed25519 secret key: SHA-256 of `conflux fuzz ed25519 key`.
const ED25519_SECRET_HEX: &str = "c6ff617273bccc83e85bc19abd3097802d03c0e27b4c19b3d95867e478880fa4";
/// The P-256 secret scalar: SHA-256 of `conflux fuzz p256 key`.
const P256_SECRET_HEX: &str = "800728c92cbb7ec1abd06e6194a1ba7fe6c3690e1bedcfe792b736547c3c6fc7";

/// Which fixed key signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyName {
    /// The own issuer's RSA key (RS256).
    Rsa,
    /// [`CUSTOM_ISSUER`]'s Ed25519 key (EdDSA).
    Ed25519,
    /// [`ES_ISSUER`]'s P-256 key (ES256).
    P256,
}

impl KeyName {
    /// The key named `name` (`rsa`, `ed25519`, `p256`).
    pub fn parse(name: &str) -> Option<KeyName> {
        match name.trim() {
            "rsa" => Some(KeyName::Rsa),
            "ed25519" => Some(KeyName::Ed25519),
            "p256" => Some(KeyName::P256),
            _ => None,
        }
    }

    /// The algorithm the key signs with.
    pub fn algorithm(self) -> &'static str {
        match self {
            KeyName::Rsa => "RS256",
            KeyName::Ed25519 => "EdDSA",
            KeyName::P256 => "ES256",
        }
    }

    /// The one issuer that trusts this key.
    pub fn issuer(self) -> &'static str {
        match self {
            KeyName::Rsa => OWN_ISSUER,
            KeyName::Ed25519 => CUSTOM_ISSUER,
            KeyName::P256 => ES_ISSUER,
        }
    }
}

/// How a [`Signer`] signs.
enum Signing {
    /// Through `jsonwebtoken`, as issuers do.
    Jwt(Algorithm, EncodingKey),
    /// RS256 straight through the `rsa` crate with the key parsed once: `jsonwebtoken`
    /// parses the private key again for every signature, which made RSA inputs a hundred
    /// times slower than the others.
    Rs256(Box<rsa::pkcs1v15::SigningKey<rsa::sha2::Sha256>>),
}

/// A private key and its public JWK.
pub struct Signer {
    signing: Signing,
    /// The public key as a JWK (with `kid`, except for the RSA key, which has none, like
    /// the keys of Convex Auth).
    pub jwk: Json,
}

impl Signer {
    /// A compact token over exactly these header and payload bytes.
    pub fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = match &self.signing {
            Signing::Jwt(algorithm, key) => {
                match jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, *algorithm) {
                    Ok(signature) => signature,
                    Err(err) => panic!("a fixed fuzzing key cannot sign: {err}"),
                }
            }
            Signing::Rs256(key) => {
                use rsa::signature::{SignatureEncoding as _, Signer as _};
                URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes()).to_bytes())
            }
        };
        format!("{signing_input}.{signature}")
    }

    /// A compact token with this header and these claims.
    pub fn sign(&self, header: &Json, claims: &Json) -> String {
        self.sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }
}

/// The three fixed keys.
pub struct Keys {
    /// RS256, the own issuer's.
    pub rsa: Signer,
    /// EdDSA, [`CUSTOM_ISSUER`]'s.
    pub ed25519: Signer,
    /// ES256, [`ES_ISSUER`]'s.
    pub p256: Signer,
}

impl Keys {
    /// The signer of `name`.
    pub fn get(&self, name: KeyName) -> &Signer {
        match name {
            KeyName::Rsa => &self.rsa,
            KeyName::Ed25519 => &self.ed25519,
            KeyName::P256 => &self.p256,
        }
    }
}

fn hex32(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = match u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16) {
            Ok(byte) => byte,
            Err(err) => panic!("bad fixed key hex: {err}"),
        };
    }
    out
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn make_keys() -> std::result::Result<Keys, String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;

    let rsa_private =
        rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PEM).map_err(|err| format!("RSA key: {err}"))?;
    let rsa_public = rsa_private.to_public_key();
    let rsa = Signer {
        signing: Signing::Rs256(Box::new(rsa::pkcs1v15::SigningKey::new(rsa_private))),
        jwk: json!({
            "kty": "RSA", "use": "sig", "alg": "RS256",
            "n": b64(&rsa_public.n().to_bytes_be()),
            "e": b64(&rsa_public.e().to_bytes_be()),
        }),
    };

    let ed_signing = ed25519_dalek::SigningKey::from_bytes(&hex32(ED25519_SECRET_HEX));
    let ed_der = ed_signing
        .to_pkcs8_der()
        .map_err(|err| format!("Ed25519 key: {err}"))?;
    let ed25519 = Signer {
        signing: Signing::Jwt(
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(ed_der.as_bytes()),
        ),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": ED25519_KID,
            "x": b64(ed_signing.verifying_key().as_bytes()),
        }),
    };

    let p256_secret = p256::SecretKey::from_slice(&hex32(P256_SECRET_HEX))
        .map_err(|err| format!("P-256 key: {err}"))?;
    let p256_der = p256_secret
        .to_pkcs8_der()
        .map_err(|err| format!("P-256 key: {err}"))?;
    let point = p256_secret.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err("P-256 key: the public point has no coordinates".to_owned());
    };
    let p256 = Signer {
        signing: Signing::Jwt(
            Algorithm::ES256,
            EncodingKey::from_ec_der(p256_der.as_bytes()),
        ),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": P256_KID,
            "x": b64(x), "y": b64(y),
        }),
    };
    Ok(Keys { rsa, ed25519, p256 })
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| match make_keys() {
    Ok(keys) => keys,
    Err(err) => panic!("the fixed fuzzing keys cannot be loaded: {err}"),
});

/// The fixed keys.
pub fn keys() -> &'static Keys {
    &KEYS
}

/// Sessions are active unless their id starts with [`ENDED_SESSION_PREFIX`].
struct FixedSessions;

#[async_trait]
impl SessionChecker for FixedSessions {
    async fn is_session_active(&self, session_id: &str) -> Result<bool> {
        Ok(!session_id.starts_with(ENDED_SESSION_PREFIX))
    }
}

/// The auth configuration of the validator under test (see the module docs).
pub fn auth_config() -> Result<AuthConfig> {
    let keys = keys();
    let own_jwks = json!({"keys": [keys.rsa.jwk]}).to_string();
    let own = OwnIssuer::new(OWN_ISSUER, &own_jwks)?;

    let ed_jwks = json!({"keys": [keys.ed25519.jwk]}).to_string();
    let ed_data_url = format!(
        "data:application/json;base64,{}",
        STANDARD.encode(ed_jwks.as_bytes())
    );
    let custom = CustomJwtProvider::new(
        CUSTOM_ISSUER,
        JwksSource::parse(&ed_data_url)?,
        SigningAlgorithm::EdDSA,
    )?
    .with_application_id(CUSTOM_AUDIENCE);

    // Beside the good key: the same point for encryption only, and a symmetric key that
    // must never verify anything.
    let mut enc_only = keys.p256.jwk.clone();
    if let Some(object) = enc_only.as_object_mut() {
        object.insert("kid".into(), json!("es-enc"));
        object.insert("use".into(), json!("enc"));
    }
    let es_jwks = json!({"keys": [
        keys.p256.jwk,
        enc_only,
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
    ]})
    .to_string();
    let es_data_url = format!(
        "data:application/json,{}",
        percent_encoding::utf8_percent_encode(&es_jwks, percent_encoding::NON_ALPHANUMERIC)
    );
    let es = CustomJwtProvider::new(
        ES_ISSUER,
        JwksSource::parse(&es_data_url)?,
        SigningAlgorithm::ES256,
    )?;
    Ok(AuthConfig::new()
        .with_own_issuer(own)
        .with_provider(custom)
        .with_provider(es))
}

static VALIDATOR: LazyLock<JwtValidator> = LazyLock::new(|| {
    let settings = ValidatorSettings {
        // Each input must be judged on its own: no token cache across inputs.
        token_cache_entries: 0,
        ..ValidatorSettings::default()
    };
    let built = auth_config().and_then(|config| {
        JwtValidator::builder(config)
            .settings(settings)
            .session_checker(Arc::new(FixedSessions))
            .clock(Arc::new(|| NOW_SECS))
            .build()
    });
    match built {
        Ok(validator) => validator,
        Err(err) => panic!("the validator under test cannot be built: {err}"),
    }
});

/// The validator under test (built once per process).
pub fn validator() -> &'static JwtValidator {
    &VALIDATOR
}

/// The clock leeway of the validator under test.
pub fn leeway() -> Duration {
    validator().settings().clock_leeway
}
