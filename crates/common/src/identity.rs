//! Who is calling: the identity a function sees, and how a token becomes one.
//!
//! The sync and HTTP layers receive bearer tokens but must not know how tokens are
//! validated (JWKS, discovery, our own keys): they call a [`TokenValidator`]. The auth
//! crate implements it; tests can plug in their own.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value as Json};

use crate::Result;

/// The identity of a signed-in caller, as `ctx.auth.getUserIdentity()` returns it.
///
/// `attributes` holds every other field of the identity object exposed to functions with
/// its final (camelCase) name: the standard OpenID claims mapped as the protocol spec §9.1
/// describes (`name`, `email`, `pictureUrl`, ...) and the custom claims.
#[derive(Clone, Debug, PartialEq)]
pub struct UserIdentity {
    /// `"<iss>|<sub>"`: the stable, unique key for this user across providers.
    pub token_identifier: String,
    /// The token's `sub` claim.
    pub subject: String,
    /// The token's `iss` claim, verbatim.
    pub issuer: String,
    /// The other identity fields, already mapped to their exposed names.
    pub attributes: Map<String, Json>,
    /// When the token stops being valid, in seconds since the Unix epoch (its `exp`).
    pub expires_at_secs: Option<u64>,
    /// For tokens issued by this deployment's built-in sign-in: the session the token
    /// belongs to. Ending that session ends this identity everywhere at once (see
    /// [`SessionEnded`]).
    pub session_id: Option<String>,
}

impl UserIdentity {
    /// The identity as the JSON object functions receive (camelCase keys, absent fields
    /// omitted).
    pub fn to_json(&self) -> Json {
        let mut map = Map::new();
        for (key, value) in &self.attributes {
            map.insert(key.clone(), value.clone());
        }
        map.insert(
            "tokenIdentifier".into(),
            Json::String(self.token_identifier.clone()),
        );
        map.insert("subject".into(), Json::String(self.subject.clone()));
        map.insert("issuer".into(), Json::String(self.issuer.clone()));
        Json::Object(map)
    }

    /// Whether the identity's token has expired at `now_secs`.
    pub fn is_expired_at(&self, now_secs: u64) -> bool {
        self.expires_at_secs.is_some_and(|exp| now_secs >= exp)
    }
}

/// The caller of a function.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Identity {
    /// No token, or signed out.
    #[default]
    Anonymous,
    /// A user authenticated with a validated token.
    User(Arc<UserIdentity>),
}

impl Identity {
    /// The user, if signed in.
    pub fn user(&self) -> Option<&UserIdentity> {
        match self {
            Identity::Anonymous => None,
            Identity::User(user) => Some(user),
        }
    }

    /// A key that is equal for callers who must see the same query results: used to share
    /// one query execution between identical subscriptions.
    ///
    /// Queries read the whole identity (`ctx.auth()`), custom claims included, so two
    /// tokens of one user whose claims differ (a role granted between two refreshes) get
    /// different keys; refreshed tokens with the same claims keep the key (their
    /// timestamps and `jti` are not part of [`UserIdentity::attributes`]).
    pub fn cache_key(&self) -> String {
        match self {
            Identity::Anonymous => String::new(),
            Identity::User(user) => {
                // JSON keeps the two parts apart whatever they contain; the claims are
                // sorted so that the same claims in another order give the same key.
                let claims: std::collections::BTreeMap<&String, &Json> =
                    user.attributes.iter().collect();
                serde_json::to_string(&(&user.token_identifier, claims))
                    .unwrap_or_else(|_| user.token_identifier.clone())
            }
        }
    }
}

/// A sign-in session ended (signed out from anywhere, expired, or revoked): every
/// connection authenticated with a token of that session must lose its identity now, not
/// when the token's `exp` passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEnded {
    /// The id of the session that ended ([`UserIdentity::session_id`]).
    pub session_id: String,
}

/// Turns a bearer token into a [`UserIdentity`], or says exactly which check failed.
#[async_trait]
pub trait TokenValidator: Send + Sync + 'static {
    /// Validate `token`. Errors carry an auth [`crate::ErrorCode`] and a detail naming the
    /// check that failed.
    async fn validate(&self, token: &str) -> Result<UserIdentity>;

    /// A stream of ended sessions, for validators that know about sessions (the built-in
    /// sign-in). Long-lived connections listen to it to drop identities at once.
    fn session_events(&self) -> Option<tokio::sync::broadcast::Receiver<SessionEnded>> {
        None
    }
}
