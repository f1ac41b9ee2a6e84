//! Which token issuers the deployment trusts: the auth configuration.
//!
//! Why it is its own module: the configuration is the security boundary of token validation.
//! Every algorithm a token may use, every URL keys may be fetched from and every audience a
//! token must carry comes from here and never from the token. So the configuration is
//! checked strictly when it is built: plain `http://` key URLs are refused unless they point
//! at loopback, unknown fields are refused (a misspelt `applicationId` would otherwise
//! silently drop the audience check), and inline key sets are parsed up front.
//!
//! The JSON file has the shape of `convex/auth.config.ts` as the CLI pushes it:
//!
//! ```json
//! { "providers": [
//!     { "domain": "https://accounts.example.com", "applicationID": "my-app" },
//!     { "type": "customJwt", "issuer": "https://issuer.example.com",
//!       "jwks": "https://issuer.example.com/.well-known/jwks.json",
//!       "algorithm": "RS256", "applicationID": "my-app" }
//! ] }
//! ```
//!
//! Tokens the deployment issues itself are configured in code with [`OwnIssuer`]: they are
//! verified against the deployment's own public keys in memory, with no HTTP round trip.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use conflux_common::{Error, ErrorCode, Result};
use serde_json::{Map, Value as Json};
use url::Url;

use crate::validation::keys::KeySet;

/// The audience of the tokens the deployment issues itself (Convex Auth uses `"convex"`).
pub const OWN_AUDIENCE: &str = "convex";

/// A signature algorithm a provider may be configured with. HMAC algorithms (`HS*`) do not
/// exist here on purpose: a public key must never be usable as a shared secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256; RSA keys of 2048 to 4096 bits.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [SigningAlgorithm; 3] = [
        SigningAlgorithm::RS256,
        SigningAlgorithm::ES256,
        SigningAlgorithm::EdDSA,
    ];

    /// The JOSE name, e.g. `"RS256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// Parse a JOSE name exactly (case-sensitive, as RFC 7518 defines them).
    pub fn parse(name: &str) -> Option<SigningAlgorithm> {
        SigningAlgorithm::ALL
            .into_iter()
            .find(|alg| alg.as_str() == name)
    }

    pub(crate) fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            SigningAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            SigningAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a provider's public keys come from.
#[derive(Clone, Debug)]
pub enum JwksSource {
    /// Fetched (and cached) from this URL: `https://`, or `http://` on loopback only.
    Url(Url),
    /// Given in the configuration (inline JSON or a `data:` URL), parsed up front.
    Inline(Arc<KeySet>),
}

impl JwksSource {
    /// Parse the `jwks` field of a custom JWT provider: an `https://` URL (plain `http://`
    /// only for loopback hosts), a `data:` URL holding the JWKS JSON (base64 or
    /// percent-encoded), or the JWKS JSON itself.
    pub fn parse(text: &str) -> Result<JwksSource> {
        let trimmed = text.trim();
        if trimmed.starts_with('{') {
            let json: Json = serde_json::from_str(trimmed).map_err(|err| {
                config_error(format!("the inline `jwks` is not valid JSON: {err}"))
            })?;
            return JwksSource::inline(&json, "configured inline");
        }
        if let Some(rest) = strip_prefix_ignore_case(trimmed, "data:") {
            let json = decode_data_url(rest)?;
            return JwksSource::inline(&json, "configured as a data: URL");
        }
        Ok(JwksSource::Url(key_url(trimmed, "jwks")?))
    }

    /// Keys given as a JWKS JSON document; `description` says where, as it reads after
    /// "the JWKS" in messages (e.g. `configured inline`).
    pub fn inline(jwks: &Json, description: &str) -> Result<JwksSource> {
        let set = KeySet::from_jwks(jwks, description).map_err(config_error)?;
        Ok(JwksSource::Inline(Arc::new(set)))
    }
}

/// An OpenID Connect provider: keys are found through
/// `<domain>/.well-known/openid-configuration` and its `jwks_uri`.
#[derive(Clone, Debug)]
pub struct OidcProvider {
    domain: String,
    discovery_url: Url,
    application_id: String,
    algorithms: Vec<SigningAlgorithm>,
}

impl OidcProvider {
    /// A provider whose issuer is `domain` (`https://` is added when no scheme is given; a
    /// trailing `/` is ignored) and whose tokens must have `application_id` in their `aud`.
    /// Accepts RS256 and EdDSA signatures, like the reference implementation.
    pub fn new(domain: &str, application_id: &str) -> Result<OidcProvider> {
        let trimmed = domain.trim();
        if trimmed.is_empty() {
            return Err(config_error("an OIDC provider needs a `domain`"));
        }
        if application_id.is_empty() {
            return Err(config_error(format!(
                "the OIDC provider `{trimmed}` needs an `applicationID` (the audience its tokens carry)"
            )));
        }
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("https://{trimmed}")
        };
        let domain = with_scheme.trim_end_matches('/').to_owned();
        let discovery_url = key_url(
            &format!("{domain}/.well-known/openid-configuration"),
            "domain",
        )?;
        Ok(OidcProvider {
            domain,
            discovery_url,
            application_id: application_id.to_owned(),
            algorithms: vec![SigningAlgorithm::RS256, SigningAlgorithm::EdDSA],
        })
    }

    /// Replace the accepted algorithms (for providers that sign with ES256, for example).
    pub fn with_algorithms(mut self, algorithms: &[SigningAlgorithm]) -> OidcProvider {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// The issuer, with `https://` added when it was missing and no trailing `/`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The audience tokens must carry.
    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// The accepted algorithms.
    pub fn algorithms(&self) -> &[SigningAlgorithm] {
        &self.algorithms
    }

    /// `<domain>/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> &Url {
        &self.discovery_url
    }
}

/// A custom JWT issuer with a JWKS and one configured algorithm.
#[derive(Clone, Debug)]
pub struct CustomJwtProvider {
    issuer: String,
    jwks: JwksSource,
    algorithm: SigningAlgorithm,
    application_id: Option<String>,
}

impl CustomJwtProvider {
    /// An issuer whose tokens are signed with `algorithm` by a key of `jwks`. Without an
    /// application id the audience is not checked, which is rarely what you want.
    pub fn new(
        issuer: &str,
        jwks: JwksSource,
        algorithm: SigningAlgorithm,
    ) -> Result<CustomJwtProvider> {
        let issuer = issuer.trim().trim_end_matches('/');
        if issuer.is_empty() {
            return Err(config_error("a customJwt provider needs an `issuer`"));
        }
        Ok(CustomJwtProvider {
            issuer: issuer.to_owned(),
            jwks,
            algorithm,
            application_id: None,
        })
    }

    /// Require `application_id` in the tokens' `aud`.
    pub fn with_application_id(mut self, application_id: &str) -> CustomJwtProvider {
        self.application_id = Some(application_id.to_owned());
        self
    }

    /// The issuer (no trailing `/`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where the keys come from.
    pub fn jwks(&self) -> &JwksSource {
        &self.jwks
    }

    /// The one accepted algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The audience tokens must carry, if configured.
    pub fn application_id(&self) -> Option<&str> {
        self.application_id.as_deref()
    }
}

/// A third-party token issuer.
#[derive(Clone, Debug)]
pub enum ProviderConfig {
    /// `{domain, applicationID}`.
    Oidc(OidcProvider),
    /// `{type: "customJwt", issuer, jwks, algorithm, applicationID?}`.
    CustomJwt(CustomJwtProvider),
}

impl ProviderConfig {
    /// How the provider is named in error messages, e.g.
    /// `OIDC(domain=https://idp.example.com, app_id=my-app)`.
    pub fn describe(&self) -> String {
        match self {
            ProviderConfig::Oidc(oidc) => {
                format!(
                    "OIDC(domain={}, app_id={})",
                    oidc.domain, oidc.application_id
                )
            }
            ProviderConfig::CustomJwt(custom) => format!(
                "CustomJWT(issuer={}, app_id={})",
                custom.issuer,
                custom.application_id.as_deref().unwrap_or("none")
            ),
        }
    }
}

impl From<OidcProvider> for ProviderConfig {
    fn from(provider: OidcProvider) -> Self {
        ProviderConfig::Oidc(provider)
    }
}

impl From<CustomJwtProvider> for ProviderConfig {
    fn from(provider: CustomJwtProvider) -> Self {
        ProviderConfig::CustomJwt(provider)
    }
}

/// The deployment's own token issuer (the built-in sign-in): tokens with `iss` = the site
/// origin and `aud` = `"convex"`, signed RS256 with the deployment's key, verified in memory.
#[derive(Clone, Debug)]
pub struct OwnIssuer {
    issuer: String,
    keys: Arc<KeySet>,
    audience: String,
}

impl OwnIssuer {
    /// The issuer `issuer` (the site origin, e.g. `https://my-app.example.com`) with the
    /// public keys `jwks_json` (the `JWKS` environment variable: `{"keys":[...]}`; keys
    /// without `kid` are fine).
    pub fn new(issuer: &str, jwks_json: &str) -> Result<OwnIssuer> {
        let issuer = issuer.trim().trim_end_matches('/');
        if issuer.is_empty() {
            return Err(config_error(
                "the own issuer needs the site origin as its issuer",
            ));
        }
        let json: Json = serde_json::from_str(jwks_json.trim()).map_err(|err| {
            config_error(format!(
                "the own JWKS is not valid JSON ({err}); it must look like {{\"keys\":[{{\"kty\":\"RSA\",\"n\":...,\"e\":...}}]}}"
            ))
        })?;
        let keys = KeySet::from_jwks(&json, &format!("of the own issuer `{issuer}`"))
            .map_err(config_error)?;
        if keys.is_empty() {
            return Err(config_error(format!(
                "the JWKS of the own issuer `{issuer}` has no usable signing key ({})",
                keys.skipped_summary()
            )));
        }
        Ok(OwnIssuer {
            issuer: issuer.to_owned(),
            keys: Arc::new(keys),
            audience: OWN_AUDIENCE.to_owned(),
        })
    }

    /// Use another audience than `"convex"`.
    pub fn with_audience(mut self, audience: &str) -> OwnIssuer {
        self.audience = audience.to_owned();
        self
    }

    /// The issuer (site origin, no trailing `/`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The public keys.
    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    /// How the issuer is named in error messages.
    pub fn describe(&self) -> String {
        format!("Own(issuer={}, aud={})", self.issuer, self.audience)
    }
}

/// The token issuers a deployment trusts.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// Third-party providers, tried in order.
    pub providers: Vec<ProviderConfig>,
    /// The deployment's own issuer, tried first.
    pub own_issuer: Option<OwnIssuer>,
}

impl AuthConfig {
    /// No providers: every token is rejected with `NoAuthProvider`.
    pub fn new() -> AuthConfig {
        AuthConfig::default()
    }

    /// Add a provider.
    pub fn with_provider(mut self, provider: impl Into<ProviderConfig>) -> AuthConfig {
        self.providers.push(provider.into());
        self
    }

    /// Set the deployment's own issuer.
    pub fn with_own_issuer(mut self, own: OwnIssuer) -> AuthConfig {
        self.own_issuer = Some(own);
        self
    }

    /// Read a JSON auth config file (`{"providers": [...]}`).
    pub fn from_file(path: &Path) -> Result<AuthConfig> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            config_error(format!(
                "cannot read the auth config `{}`: {err}",
                path.display()
            ))
        })?;
        AuthConfig::from_json_str(&text)
            .map_err(|err| err.context(format!("auth config `{}`", path.display())))
    }

    /// Parse a JSON auth config (`{"providers": [...]}`).
    pub fn from_json_str(text: &str) -> Result<AuthConfig> {
        let json: Json = serde_json::from_str(text)
            .map_err(|err| config_error(format!("the auth config is not valid JSON: {err}")))?;
        AuthConfig::from_json(&json)
    }

    /// Build from an already parsed JSON auth config.
    pub fn from_json(json: &Json) -> Result<AuthConfig> {
        let object = json.as_object().ok_or_else(|| {
            config_error("the auth config must be an object `{\"providers\": [...]}`")
        })?;
        if let Some(unknown) = object.keys().find(|key| key.as_str() != "providers") {
            return Err(config_error(format!(
                "unknown field `{unknown}` in the auth config; only `providers` is allowed"
            )));
        }
        let providers = match object.get("providers") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    parse_provider(item).map_err(|err| err.context(format!("providers[{index}]")))
                })
                .collect::<Result<Vec<_>>>()?,
            Some(_) => return Err(config_error("`providers` must be an array")),
        };
        Ok(AuthConfig {
            providers,
            own_issuer: None,
        })
    }

    /// Every issuer as named in error messages, own issuer first.
    pub fn describe_providers(&self) -> Vec<String> {
        self.own_issuer
            .iter()
            .map(OwnIssuer::describe)
            .chain(self.providers.iter().map(ProviderConfig::describe))
            .collect()
    }
}

fn parse_provider(item: &Json) -> Result<ProviderConfig> {
    let object = item
        .as_object()
        .ok_or_else(|| config_error("a provider must be an object"))?;
    let kind = match object.get("type") {
        None => None,
        Some(Json::String(kind)) => Some(kind.as_str()),
        Some(_) => return Err(config_error("`type` must be a string")),
    };
    match kind {
        None | Some("oidc") => {
            check_fields(object, &["type", "domain", "applicationID"])?;
            let domain = string_field(object, "domain")?
                .ok_or_else(|| config_error("an OIDC provider needs `domain` (its issuer URL)"))?;
            let application_id = string_field(object, "applicationID")?.ok_or_else(|| {
                config_error(format!(
                    "the OIDC provider `{domain}` needs `applicationID`"
                ))
            })?;
            Ok(ProviderConfig::Oidc(OidcProvider::new(
                domain,
                application_id,
            )?))
        }
        Some("customJwt") => {
            check_fields(
                object,
                &["type", "issuer", "jwks", "algorithm", "applicationID"],
            )?;
            let issuer = string_field(object, "issuer")?
                .ok_or_else(|| config_error("a customJwt provider needs `issuer`"))?;
            let jwks = match object.get("jwks") {
                Some(Json::String(text)) => JwksSource::parse(text)?,
                Some(inline @ Json::Object(_)) => JwksSource::inline(inline, "configured inline")?,
                Some(_) => {
                    return Err(config_error(
                        "`jwks` must be an https URL, a data: URL or a JWKS object",
                    ))
                }
                None => {
                    return Err(config_error(format!(
                        "the customJwt provider `{issuer}` needs `jwks`"
                    )))
                }
            };
            let algorithm_name = string_field(object, "algorithm")?.ok_or_else(|| {
                config_error(format!(
                    "the customJwt provider `{issuer}` needs `algorithm` (RS256, ES256 or EdDSA)"
                ))
            })?;
            let algorithm = SigningAlgorithm::parse(algorithm_name).ok_or_else(|| {
                config_error(format!(
                    "algorithm `{algorithm_name}` is not supported; use RS256, ES256 or EdDSA"
                ))
            })?;
            let provider = CustomJwtProvider::new(issuer, jwks, algorithm)?;
            let provider = match string_field(object, "applicationID")? {
                Some(application_id) => provider.with_application_id(application_id),
                None => {
                    tracing::warn!(
                        "the customJwt provider `{issuer}` has no applicationID: tokens of any audience from this issuer are accepted"
                    );
                    provider
                }
            };
            Ok(ProviderConfig::CustomJwt(provider))
        }
        Some(other) => Err(config_error(format!(
            "unknown provider type `{other}`; use `customJwt`, or no type for an OIDC provider"
        ))),
    }
}

fn check_fields(object: &Map<String, Json>, allowed: &[&str]) -> Result<()> {
    for key in object.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        let hint = allowed
            .iter()
            .find(|candidate| candidate.eq_ignore_ascii_case(key))
            .map(|candidate| format!(" (did you mean `{candidate}`?)"))
            .unwrap_or_default();
        return Err(config_error(format!(
            "unknown field `{key}`{hint}; allowed: {}",
            allowed.join(", ")
        )));
    }
    Ok(())
}

fn string_field<'a>(object: &'a Map<String, Json>, name: &str) -> Result<Option<&'a str>> {
    match object.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(config_error(format!("`{name}` must be a string"))),
    }
}

/// An error in the auth configuration.
pub(crate) fn config_error(detail: impl Into<String>) -> Error {
    Error::new(
        ErrorCode::InvalidValue,
        format!("Invalid auth config: {}", detail.into()),
    )
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Decode the part of a `data:` URL after `data:` into JSON.
fn decode_data_url(rest: &str) -> Result<Json> {
    let (meta, payload) = rest
        .split_once(',')
        .ok_or_else(|| config_error("the `jwks` data: URL has no `,` before its content"))?;
    let is_base64 = meta
        .split(';')
        .any(|part| part.trim().eq_ignore_ascii_case("base64"));
    let bytes = if is_base64 {
        let compact: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
        let unpadded = compact.trim_end_matches('=');
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(unpadded)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(unpadded))
            .map_err(|err| {
                config_error(format!("the `jwks` data: URL is not valid base64: {err}"))
            })?
    } else {
        percent_encoding::percent_decode_str(payload).collect()
    };
    serde_json::from_slice(&bytes)
        .map_err(|err| config_error(format!("the `jwks` data: URL does not hold JSON: {err}")))
}

/// Whether `url` points at this machine (127.0.0.0/8, ::1 or `localhost`).
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost")
                || domain.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Check a URL keys or discovery documents may be fetched from: `https://`, or `http://`
/// on loopback only.
pub(crate) fn key_url(text: &str, field: &str) -> Result<Url> {
    let url = Url::parse(text)
        .map_err(|err| config_error(format!("`{field}` `{text}` is not a URL: {err}")))?;
    check_key_url(&url).map_err(|reason| config_error(format!("`{field}` {reason}")))?;
    Ok(url)
}

/// The scheme rule for key URLs, shared by configuration and discovery (`jwks_uri`).
pub(crate) fn check_key_url(url: &Url) -> std::result::Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "`{url}` uses plain http; use https (plain http is only allowed for 127.0.0.1, ::1 and localhost)"
        )),
        other => Err(format!("`{url}` has scheme `{other}`; use https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_jwk() -> Result<Json> {
        Ok(conflux_local_oidc::TestKey::rsa_blocking(0)?.public_jwk())
    }

    fn assert_config_error(result: Result<impl fmt::Debug>, expected: &str) {
        match result {
            Ok(value) => panic!("expected a config error containing {expected:?}, got {value:?}"),
            Err(err) => {
                assert_eq!(err.code(), ErrorCode::InvalidValue);
                assert!(
                    err.message().contains(expected),
                    "{:?} lacks {expected:?}",
                    err.message()
                );
            }
        }
    }

    #[test]
    fn a_scheme_less_domain_gets_https_and_loses_its_trailing_slash() -> Result<()> {
        let oidc = OidcProvider::new("accounts.example.com/", "app")?;
        assert_eq!(oidc.domain(), "https://accounts.example.com");
        assert_eq!(
            oidc.discovery_url().as_str(),
            "https://accounts.example.com/.well-known/openid-configuration"
        );
        Ok(())
    }

    #[test]
    fn plain_http_key_urls_are_only_allowed_on_loopback() -> Result<()> {
        assert_config_error(
            OidcProvider::new("http://idp.example.com", "app"),
            "use https",
        );
        assert_config_error(JwksSource::parse("http://10.0.0.1/jwks"), "use https");
        assert_config_error(JwksSource::parse("ftp://example.com/jwks"), "use https");
        for loopback in [
            "http://127.0.0.1:8080",
            "http://127.8.0.1",
            "http://[::1]:9",
            "http://localhost:3000",
        ] {
            OidcProvider::new(loopback, "app")?;
        }
        Ok(())
    }

    #[test]
    fn the_json_file_shape_of_auth_config_ts_is_understood() -> Result<()> {
        let data_url = format!(
            "data:application/json;base64,{}",
            base64::engine::general_purpose::STANDARD
                .encode(serde_json::json!({"keys": [rsa_jwk()?]}).to_string())
        );
        let text = serde_json::json!({ "providers": [
            { "domain": "https://idp.example.com", "applicationID": "app" },
            { "type": "customJwt", "issuer": "https://issuer.example.com/", "jwks": data_url, "algorithm": "RS256" },
            { "type": "customJwt", "issuer": "inline", "jwks": { "keys": [rsa_jwk()?] },
              "algorithm": "RS256", "applicationID": "app" },
        ]})
        .to_string();
        let config = AuthConfig::from_json_str(&text)?;
        assert_eq!(
            config.describe_providers(),
            vec![
                "OIDC(domain=https://idp.example.com, app_id=app)".to_owned(),
                "CustomJWT(issuer=https://issuer.example.com, app_id=none)".to_owned(),
                "CustomJWT(issuer=inline, app_id=app)".to_owned(),
            ]
        );
        match &config.providers[1] {
            ProviderConfig::CustomJwt(custom) => match custom.jwks() {
                JwksSource::Inline(keys) => assert_eq!(keys.len(), 1),
                JwksSource::Url(url) => panic!("a data: URL must be inline, got {url}"),
            },
            ProviderConfig::Oidc(_) => panic!("expected the customJwt provider"),
        }
        Ok(())
    }

    #[test]
    fn a_misspelt_application_id_is_refused_with_a_hint() {
        let text = r#"{"providers":[{"domain":"https://idp.example.com","applicationId":"app"}]}"#;
        assert_config_error(
            AuthConfig::from_json_str(text),
            "did you mean `applicationID`?",
        );
        let text = r#"{"providers":[{"type":"customJwt","issuer":"x","jwks":"https://x/jwks","algorithm":"HS256"}]}"#;
        assert_config_error(
            AuthConfig::from_json_str(text),
            "algorithm `HS256` is not supported",
        );
    }

    #[test]
    fn an_own_jwks_without_usable_keys_is_refused() {
        assert_config_error(
            OwnIssuer::new(
                "https://site.example.com",
                r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
            ),
            "no usable signing key",
        );
        assert_config_error(
            OwnIssuer::new("https://site.example.com", "not json"),
            "not valid JSON",
        );
    }
}
