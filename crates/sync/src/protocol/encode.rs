//! How server messages (and, for tests, client messages) are spelled on the wire.
//!
//! Serialization is written out by hand for the server messages because the clients'
//! expectations are not what a derive would produce: `logLines` is always present (the
//! Rust client requires it), `journal` is always present and `null` when there is none,
//! `errorData` is absent rather than `null` when there is no `ConvexError` (npm treats a
//! present `null` as a `ConvexError` with null data), timestamps are base64 strings except
//! `serverTs`, which is a plain integer.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value as Json;

use super::{
    ActionResponse, AuthError, FatalError, FunctionArgs, FunctionFailure, MutationOutcome,
    MutationResponse, ServerMessage, SessionId, StateModification, Transition, Ts,
};

pub(super) fn ts_as_base64<S: Serializer>(ts: &Ts, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&ts.encode())
}

pub(super) fn opt_ts_as_base64<S: Serializer>(
    ts: &Option<Ts>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => serializer.serialize_str(&ts.encode()),
        None => serializer.serialize_none(),
    }
}

pub(super) fn session_id<S: Serializer>(
    session: &SessionId,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(session)
}

pub(super) fn args<S: Serializer>(args: &FunctionArgs, serializer: S) -> Result<S::Ok, S::Error> {
    [args.as_object()].serialize(serializer)
}

impl Serialize for ServerMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ServerMessage::Transition(transition) => transition.serialize(serializer),
            ServerMessage::MutationResponse(response) => response.serialize(serializer),
            ServerMessage::ActionResponse(response) => response.serialize(serializer),
            ServerMessage::AuthError(error) => error.serialize(serializer),
            ServerMessage::FatalError(error) => error.serialize(serializer),
            ServerMessage::Ping => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("type", "Ping")?;
                map.end()
            }
        }
    }
}

/// A `u64` written as a JSON integer; serde_json never uses exponent notation for it.
struct Integer(u64);

impl Serialize for Integer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl Serialize for Transition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", "Transition")?;
        map.serialize_entry("startVersion", &self.start_version)?;
        map.serialize_entry("endVersion", &self.end_version)?;
        map.serialize_entry("modifications", &self.modifications)?;
        if let Some(skew) = self.client_clock_skew {
            map.serialize_entry("clientClockSkew", &skew)?;
        }
        if let Some(server_ts) = self.server_ts {
            map.serialize_entry("serverTs", &Integer(server_ts.get()))?;
        }
        map.end()
    }
}

impl Serialize for StateModification {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            StateModification::QueryUpdated {
                query_id,
                value,
                log_lines,
                journal,
            } => {
                map.serialize_entry("type", "QueryUpdated")?;
                map.serialize_entry("queryId", query_id)?;
                map.serialize_entry("value", value)?;
                map.serialize_entry("logLines", log_lines)?;
                map.serialize_entry("journal", journal)?;
            }
            StateModification::QueryFailed {
                query_id,
                error_message,
                error_data,
                log_lines,
                journal,
            } => {
                map.serialize_entry("type", "QueryFailed")?;
                map.serialize_entry("queryId", query_id)?;
                map.serialize_entry("errorMessage", error_message)?;
                if let Some(data) = error_data {
                    map.serialize_entry("errorData", data)?;
                }
                map.serialize_entry("logLines", log_lines)?;
                map.serialize_entry("journal", journal)?;
            }
            StateModification::QueryRemoved { query_id } => {
                map.serialize_entry("type", "QueryRemoved")?;
                map.serialize_entry("queryId", query_id)?;
            }
        }
        map.end()
    }
}

fn serialize_outcome<M: SerializeMap>(
    map: &mut M,
    outcome: Result<&Json, &FunctionFailure>,
) -> Result<(), M::Error> {
    match outcome {
        Ok(value) => {
            map.serialize_entry("success", &true)?;
            map.serialize_entry("result", value)?;
        }
        Err(failure) => {
            map.serialize_entry("success", &false)?;
            map.serialize_entry("result", &failure.message)?;
            if let Some(data) = &failure.error_data {
                map.serialize_entry("errorData", data)?;
            }
        }
    }
    Ok(())
}

impl Serialize for MutationResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", "MutationResponse")?;
        map.serialize_entry("requestId", &self.request_id)?;
        match &self.outcome {
            MutationOutcome::Success { value, ts } => {
                serialize_outcome(&mut map, Ok(value))?;
                map.serialize_entry("ts", &ts.encode())?;
            }
            MutationOutcome::Failure(failure) => serialize_outcome(&mut map, Err(failure))?,
        }
        map.serialize_entry("logLines", &self.log_lines)?;
        map.end()
    }
}

impl Serialize for ActionResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", "ActionResponse")?;
        map.serialize_entry("requestId", &self.request_id)?;
        serialize_outcome(&mut map, self.outcome.as_ref())?;
        map.serialize_entry("logLines", &self.log_lines)?;
        map.end()
    }
}

impl Serialize for AuthError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("type", "AuthError")?;
        map.serialize_entry("error", &self.error)?;
        map.serialize_entry("baseVersion", &self.base_version)?;
        map.serialize_entry("authUpdateAttempted", &self.auth_update_attempted)?;
        map.end()
    }
}

impl Serialize for FatalError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("type", "FatalError")?;
        map.serialize_entry("error", &self.error)?;
        map.end()
    }
}
