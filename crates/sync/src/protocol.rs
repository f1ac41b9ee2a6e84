//! The messages of the sync WebSocket, with exactly the encodings the official clients use.
//!
//! Why a layer of its own: the official clients (`convex` on npm 1.48.x and the `convex`
//! Rust crate 0.10.4) are strict in different places. The npm client throws on a
//! `Transition` whose start version differs from its own by one bit, the Rust client
//! refuses a `logLines` that is missing or a `serverTs` written as `1.7e18`, and both
//! decode timestamps from base64. Keeping every field encoding in this one module (and
//! testing it against the clients' own encoders and decoders) means the worker above it
//! handles meaning, never spelling. `docs/protocol.md` records each choice made here and
//! the client source that decides it.
//!
//! - Client → server: [`ClientMessage`], decoded by [`parse_client_message`], which never
//!   panics, enforces [`conflux_common::knobs::SYNC_MAX_MESSAGE_BYTES`] and names the exact
//!   field that is wrong (`ModifyQuerySet.modifications[2].queryId: expected an unsigned
//!   32-bit integer, got a string`).
//! - Server → client: [`ServerMessage`], encoded by [`ServerMessage::to_json_text`].
//! - Values (arguments, results, error data) stay in their Convex JSON form
//!   ([`serde_json::Value`]) at this layer; the values crate gives them meaning.
//!
//! ```
//! use conflux_sync::protocol::{parse_client_message, ClientMessage, Ts};
//!
//! let message = parse_client_message(
//!     r#"{"type":"Mutation","requestId":3,"udfPath":"messages:send","args":[{"body":"hi"}]}"#,
//! )?;
//! let ClientMessage::Mutation(mutation) = message else { panic!("a mutation") };
//! assert_eq!(mutation.udf_path.as_str(), "messages:send");
//! assert_eq!(mutation.args.as_object()["body"], "hi");
//!
//! assert_eq!(Ts::new(1000)?.encode(), "6AMAAAAAAAA=");
//! # Ok::<(), conflux_common::Error>(())
//! ```

mod decode;
mod encode;

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use conflux_common::{Error, Result};
use serde_json::{Map, Value as Json};

pub use decode::{parse_client_message, parse_client_message_with_limit};

use crate::udf_path::UdfPath;

// ------------------------------------------------------------------------------------------
// Shared scalars
// ------------------------------------------------------------------------------------------

/// A timestamp on the sync protocol (`StateVersion.ts`, `MutationResponse.ts`,
/// `Connect.maxObservedTimestamp`, and as a plain integer `Transition.serverTs`).
///
/// On the wire it is the standard base64 (with padding) of its 8 little-endian bytes:
/// 0 is `"AAAAAAAAAAA="`, 1000 is `"6AMAAAAAAAA="`. It never exceeds `i64::MAX` because
/// the Rust client refuses larger values ("ts too large").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts(u64);

impl Ts {
    /// The first version of every connection.
    pub const ZERO: Ts = Ts(0);
    /// The largest timestamp the clients accept.
    pub const MAX: Ts = Ts(i64::MAX as u64);

    /// A timestamp, refused when above [`Ts::MAX`].
    pub fn new(value: u64) -> Result<Ts> {
        if value > Ts::MAX.0 {
            return Err(Error::bad_request(format!(
                "timestamp {value} is larger than the largest timestamp the clients accept \
                 ({})",
                Ts::MAX.0
            )));
        }
        Ok(Ts(value))
    }

    /// The numeric value.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The wire text: standard base64 with padding of the 8 little-endian bytes.
    pub fn encode(self) -> String {
        STANDARD.encode(self.0.to_le_bytes())
    }

    /// Decode the wire text. Accepts the URL-safe letters `-` and `_` as npm does; refuses
    /// anything that is not exactly 8 bytes or exceeds [`Ts::MAX`].
    pub fn decode(text: &str) -> Result<Ts> {
        let normalized: String = text
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                other => other,
            })
            .collect();
        let bytes = STANDARD.decode(normalized.as_bytes()).map_err(|err| {
            Error::bad_request(format!(
                "expected a timestamp as base64 of 8 little-endian bytes (like \
                 \"AAAAAAAAAAA=\"), but it is not valid padded base64 ({err})"
            ))
        })?;
        let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
            Error::bad_request(format!(
                "expected a timestamp as base64 of 8 little-endian bytes (like \
                 \"AAAAAAAAAAA=\"), but it decodes to {} bytes",
                bytes.len()
            ))
        })?;
        Ts::new(u64::from_le_bytes(bytes))
    }
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TryFrom<u64> for Ts {
    type Error = Error;

    fn try_from(value: u64) -> Result<Ts> {
        Ts::new(value)
    }
}

impl From<Ts> for u64 {
    fn from(ts: Ts) -> u64 {
        ts.0
    }
}

macro_rules! u32_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

u32_newtype!(
    /// A client's number for one subscribed query; unique within a connection's query set.
    QueryId
);
u32_newtype!(
    /// A client's number for one mutation or action; npm keeps counting across reconnects.
    RequestId
);
u32_newtype!(
    /// The version of a connection's query set, bumped by each `ModifyQuerySet`.
    QuerySetVersion
);
u32_newtype!(
    /// The version of a connection's identity, bumped by each accepted `Authenticate`.
    IdentityVersion
);

/// The version of what a client holds: its query set, its identity and the timestamp of
/// its query results. Every `Transition` goes from one to the next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateVersion {
    /// The last query-set version the results reflect.
    pub query_set: QuerySetVersion,
    /// The last identity version the results reflect.
    pub identity: IdentityVersion,
    /// The snapshot timestamp of the results.
    #[serde(serialize_with = "encode::ts_as_base64")]
    pub ts: Ts,
}

impl StateVersion {
    /// `{querySet: 0, identity: 0, ts: 0}`: what a client holds on a fresh socket.
    pub const INITIAL: StateVersion = StateVersion {
        query_set: QuerySetVersion(0),
        identity: IdentityVersion(0),
        ts: Ts::ZERO,
    };
}

impl fmt::Display for StateVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{querySet: {}, identity: {}, ts: {}}}",
            self.query_set, self.identity, self.ts
        )
    }
}

/// Function arguments: the single Convex-JSON object that clients send as `args: [{...}]`.
///
/// Holding the object (not the array) makes the "exactly one object" rule a property of
/// the type; it is written back as a one-element array.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FunctionArgs(Map<String, Json>);

impl FunctionArgs {
    /// Arguments from their object.
    pub fn new(object: Map<String, Json>) -> FunctionArgs {
        FunctionArgs(object)
    }

    /// The arguments object, still in Convex JSON.
    pub fn as_object(&self) -> &Map<String, Json> {
        &self.0
    }

    /// The arguments object, by value.
    pub fn into_object(self) -> Map<String, Json> {
        self.0
    }

    /// The wire form, `[ {...} ]`.
    pub fn to_wire(&self) -> Json {
        Json::Array(vec![Json::Object(self.0.clone())])
    }
}

/// A client session: a UUID the npm client keeps for the life of its client object (the
/// Rust client makes a new one per socket). Mutations are deduplicated by
/// `(session, request id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub uuid::Uuid);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

// ------------------------------------------------------------------------------------------
// Client → server
// ------------------------------------------------------------------------------------------

/// A message from a client.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "type")]
pub enum ClientMessage {
    /// The first message on every socket.
    Connect(Connect),
    /// Add and remove subscriptions.
    ModifyQuerySet(ModifyQuerySet),
    /// Run a mutation.
    Mutation(FunctionRequest),
    /// Run an action.
    Action(FunctionRequest),
    /// Change the identity of the connection.
    Authenticate(Authenticate),
    /// Client telemetry; carries no instruction.
    Event(ClientEvent),
}

impl ClientMessage {
    /// The wire name of the message type, e.g. `"ModifyQuerySet"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Connect(_) => "Connect",
            ClientMessage::ModifyQuerySet(_) => "ModifyQuerySet",
            ClientMessage::Mutation(_) => "Mutation",
            ClientMessage::Action(_) => "Action",
            ClientMessage::Authenticate(_) => "Authenticate",
            ClientMessage::Event(_) => "Event",
        }
    }

    /// The wire text of this message as the official clients write it. Used by tests and
    /// tools that play the client's part.
    pub fn to_json_text(&self) -> Result<String> {
        serde_json::to_string(self).map_err(Error::internal)
    }
}

/// `Connect`: who the client is and what it saw before.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connect {
    /// The client session.
    #[serde(serialize_with = "encode::session_id")]
    pub session_id: SessionId,
    /// 0 on the first socket of a client, then counting up.
    pub connection_count: u32,
    /// Why the previous socket closed (`"InitialConnect"` first; npm sends `null` after a
    /// deliberate restart).
    pub last_close_reason: Option<String>,
    /// The highest timestamp the client has observed, absent before it saw any.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "encode::opt_ts_as_base64"
    )]
    pub max_observed_timestamp: Option<Ts>,
    /// The client's clock in milliseconds (npm), or 0 (Rust).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ts: Option<i64>,
}

/// `ModifyQuerySet`: a step of the client's query set from `base_version` to `new_version`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModifyQuerySet {
    /// The query-set version the client built this change on.
    pub base_version: QuerySetVersion,
    /// The version after the change (always `base_version + 1` from the official clients).
    pub new_version: QuerySetVersion,
    /// The changes, applied in order.
    pub modifications: Vec<QuerySetModification>,
}

/// One change of a query set.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "type")]
pub enum QuerySetModification {
    /// Subscribe to a query.
    Add(AddQuery),
    /// Unsubscribe.
    #[serde(rename_all = "camelCase")]
    Remove {
        /// The query to drop.
        query_id: QueryId,
    },
}

/// A subscription request.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddQuery {
    /// The client's id for it.
    pub query_id: QueryId,
    /// The query function, canonical.
    pub udf_path: UdfPath,
    /// Its arguments.
    #[serde(serialize_with = "encode::args")]
    pub args: FunctionArgs,
    /// The pagination journal from an earlier run (absent and `null` both mean none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// A component path (dashboard only; absent for applications).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_path: Option<String>,
}

/// A `Mutation` or `Action` request.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRequest {
    /// The client's id for the request, echoed in the response.
    pub request_id: RequestId,
    /// The function, canonical.
    pub udf_path: UdfPath,
    /// Its arguments.
    #[serde(serialize_with = "encode::args")]
    pub args: FunctionArgs,
    /// A component path (dashboard only; absent for applications).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_path: Option<String>,
}

/// `Authenticate`: replace the connection's identity.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Authenticate {
    /// The identity version the client held before this change.
    pub base_version: IdentityVersion,
    /// The new credentials.
    #[serde(flatten)]
    pub token: AuthToken,
}

/// The credentials of an `Authenticate` (`tokenType` on the wire).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "tokenType")]
pub enum AuthToken {
    /// A user's JWT.
    User {
        /// The token text.
        value: String,
    },
    /// A deployment admin key, optionally acting as a user.
    Admin {
        /// The admin key.
        value: String,
        /// The user identity attributes to act as (npm spells the field `impersonating`,
        /// the Rust client `acting_as`; both are accepted).
        #[serde(skip_serializing_if = "Option::is_none")]
        impersonating: Option<Map<String, Json>>,
    },
    /// Sign out.
    None,
}

/// `Event`: telemetry (`NetworkRecoveryReconnect`, `ClientConnect`, ...).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientEvent {
    /// The kind of event.
    pub event_type: String,
    /// Its payload, any JSON.
    pub event: Json,
}

// ------------------------------------------------------------------------------------------
// Server → client
// ------------------------------------------------------------------------------------------

/// A message to a client. [`ServerMessage::to_json_text`] writes it.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    /// New query results and versions.
    Transition(Transition),
    /// The outcome of a mutation.
    MutationResponse(MutationResponse),
    /// The outcome of an action.
    ActionResponse(ActionResponse),
    /// The identity is not (or no longer) valid.
    AuthError(AuthError),
    /// Something a reconnect cannot fix; npm stops the client for good.
    FatalError(FatalError),
    /// Keep-alive; resets the client's inactivity timer.
    Ping,
}

impl ServerMessage {
    /// The wire name of the message type, e.g. `"Transition"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerMessage::Transition(_) => "Transition",
            ServerMessage::MutationResponse(_) => "MutationResponse",
            ServerMessage::ActionResponse(_) => "ActionResponse",
            ServerMessage::AuthError(_) => "AuthError",
            ServerMessage::FatalError(_) => "FatalError",
            ServerMessage::Ping => "Ping",
        }
    }

    /// The wire text of this message.
    pub fn to_json_text(&self) -> Result<String> {
        serde_json::to_string(self).map_err(Error::internal)
    }

    /// The wire form as a JSON value (for tests and logs).
    pub fn to_json(&self) -> Result<Json> {
        serde_json::to_value(self).map_err(Error::internal)
    }
}

/// `Transition`: move the client from `start_version` (which must equal what it holds) to
/// `end_version`, applying `modifications`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Exactly the version the client holds.
    pub start_version: StateVersion,
    /// The version the client holds afterwards.
    pub end_version: StateVersion,
    /// Changed, failed and removed queries (may be empty).
    pub modifications: Vec<StateModification>,
    /// `clientTs − server time` in milliseconds at `Connect`, when known.
    pub client_clock_skew: Option<i64>,
    /// Wall-clock nanoseconds since the Unix epoch when the transition was sent; written as
    /// a plain JSON integer.
    pub server_ts: Option<Ts>,
}

/// A change to one query in a [`Transition`].
#[derive(Clone, Debug, PartialEq)]
pub enum StateModification {
    /// A new result.
    QueryUpdated {
        /// The query.
        query_id: QueryId,
        /// Its result, Convex JSON.
        value: Json,
        /// Its console output, `"[LEVEL] message"` lines.
        log_lines: Vec<String>,
        /// Pagination journal; `null` on the wire when absent.
        journal: Option<String>,
    },
    /// The query threw.
    QueryFailed {
        /// The query.
        query_id: QueryId,
        /// The error text.
        error_message: String,
        /// `ConvexError` data, Convex JSON; omitted for other errors.
        error_data: Option<Json>,
        /// Its console output.
        log_lines: Vec<String>,
        /// Pagination journal; `null` on the wire when absent.
        journal: Option<String>,
    },
    /// The query left the query set.
    QueryRemoved {
        /// The query.
        query_id: QueryId,
    },
}

impl StateModification {
    /// The query this modification is about.
    pub fn query_id(&self) -> QueryId {
        match self {
            StateModification::QueryUpdated { query_id, .. }
            | StateModification::QueryFailed { query_id, .. }
            | StateModification::QueryRemoved { query_id } => *query_id,
        }
    }
}

/// A function failure as clients receive it: a message, and `ConvexError` data if the
/// function threw one.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionFailure {
    /// The error text shown to the developer.
    pub message: String,
    /// `ConvexError` data in Convex JSON; `None` for other errors (never sent as `null`,
    /// which npm would take for a `ConvexError` whose data is null).
    pub error_data: Option<Json>,
}

/// `MutationResponse`.
#[derive(Clone, Debug, PartialEq)]
pub struct MutationResponse {
    /// The request this answers.
    pub request_id: RequestId,
    /// What happened.
    pub outcome: MutationOutcome,
    /// Console output of the mutation.
    pub log_lines: Vec<String>,
}

/// The outcome of a mutation.
#[derive(Clone, Debug, PartialEq)]
pub enum MutationOutcome {
    /// Committed at `ts`; the client resolves it once a `Transition` reaches `ts`.
    Success {
        /// The return value, Convex JSON.
        value: Json,
        /// The commit timestamp.
        ts: Ts,
    },
    /// Nothing was written.
    Failure(FunctionFailure),
}

/// `ActionResponse`.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionResponse {
    /// The request this answers.
    pub request_id: RequestId,
    /// The return value (Convex JSON) or the failure.
    pub outcome: Result<Json, FunctionFailure>,
    /// Console output of the action.
    pub log_lines: Vec<String>,
}

/// `AuthError`: the credentials were refused or have expired.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthError {
    /// Why, for the developer.
    pub error: String,
    /// The identity version the error is about: the `baseVersion` of a rejected
    /// `Authenticate`, or the identity version last sent for an expired identity.
    pub base_version: IdentityVersion,
    /// `true` when answering an `Authenticate`; `false` when the identity in use expired.
    pub auth_update_attempted: bool,
}

/// `FatalError`: a deterministic protocol error; the socket closes after it.
#[derive(Clone, Debug, PartialEq)]
pub struct FatalError {
    /// What was wrong.
    pub error: String,
}

#[cfg(test)]
mod tests;
