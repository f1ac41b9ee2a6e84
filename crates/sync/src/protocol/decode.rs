//! Decoding client messages: strict about what matters, forgiving about what does not.
//!
//! A hand-written walker rather than `#[derive(Deserialize)]` because the errors are part
//! of the product: a developer whose client sends a wrong frame gets the path of the field
//! and what was found there (`ModifyQuerySet.modifications[2].queryId: expected an unsigned
//! 32-bit integer, got a string`), and the walker cannot panic on any input. Fields the
//! clients omit or send as `null` interchangeably (npm drops `undefined` fields, the
//! reference server treats `null` as absent) are read as absent; unknown fields are
//! ignored so newer clients keep working.

use conflux_common::{knobs, Error, ErrorCode, Result};
use serde_json::{Map, Value as Json};

use super::{
    AddQuery, AuthToken, Authenticate, ClientEvent, ClientMessage, Connect, FunctionArgs,
    FunctionRequest, IdentityVersion, ModifyQuerySet, QueryId, QuerySetModification,
    QuerySetVersion, RequestId, SessionId, Ts,
};
use crate::udf_path::UdfPath;

/// The message types a client may send, for error messages.
const CLIENT_MESSAGE_TYPES: &str = "Connect, ModifyQuerySet, Mutation, Action, Authenticate, Event";

/// Decode one text frame from a client.
///
/// Refuses frames over [`knobs::SYNC_MAX_MESSAGE_BYTES`] with
/// [`ErrorCode::LimitExceeded`]; every other problem is [`ErrorCode::BadRequest`] (or the
/// code of the nested check, e.g. a function path) with a message that starts with the
/// path of the offending field.
pub fn parse_client_message(text: &str) -> Result<ClientMessage> {
    parse_client_message_with_limit(text, *knobs::SYNC_MAX_MESSAGE_BYTES)
}

/// [`parse_client_message`] with an explicit size limit in bytes (a server configured
/// with its own limit uses this).
pub fn parse_client_message_with_limit(text: &str, max_bytes: usize) -> Result<ClientMessage> {
    if text.len() > max_bytes {
        return Err(Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "the message is {} bytes, more than the limit of {max_bytes} bytes \
                 (CONFLUX_SYNC_MAX_MESSAGE_BYTES); send smaller arguments",
                text.len()
            ),
        ));
    }
    let json: Json = serde_json::from_str(text)
        .map_err(|err| Error::bad_request(format!("the message is not valid JSON: {err}")))?;
    decode_client_message(&json)
}

fn decode_client_message(json: &Json) -> Result<ClientMessage> {
    let top = Fields::of("message".to_string(), json)?;
    let message_type = top.string("type")?;
    let fields = Fields {
        path: message_type.to_string(),
        map: top.map,
    };
    match message_type {
        "Connect" => decode_connect(&fields).map(ClientMessage::Connect),
        "ModifyQuerySet" => decode_modify_query_set(&fields).map(ClientMessage::ModifyQuerySet),
        "Mutation" => decode_function_request(&fields).map(ClientMessage::Mutation),
        "Action" => decode_function_request(&fields).map(ClientMessage::Action),
        "Authenticate" => decode_authenticate(&fields).map(ClientMessage::Authenticate),
        "Event" => decode_event(&fields).map(ClientMessage::Event),
        other => Err(Error::bad_request(format!(
            "message.type: unknown message type {}; a client may send {CLIENT_MESSAGE_TYPES}",
            quote_short(other)
        ))),
    }
}

fn decode_connect(fields: &Fields<'_>) -> Result<Connect> {
    let session_text = fields.string("sessionId")?;
    let session_id = uuid::Uuid::parse_str(session_text).map_err(|_| {
        Error::bad_request(format!(
            "{}: expected a UUID such as \"3f2504e0-4f89-41d3-9a0c-0305e82c3301\", got {}",
            fields.path_of("sessionId"),
            quote_short(session_text)
        ))
    })?;
    Ok(Connect {
        session_id: SessionId(session_id),
        connection_count: fields.u32("connectionCount")?,
        last_close_reason: fields.opt_string("lastCloseReason")?.map(str::to_string),
        max_observed_timestamp: fields.opt_ts("maxObservedTimestamp")?,
        client_ts: fields.opt_i64("clientTs")?,
    })
}

fn decode_modify_query_set(fields: &Fields<'_>) -> Result<ModifyQuerySet> {
    let base_version = QuerySetVersion(fields.u32("baseVersion")?);
    let new_version = QuerySetVersion(fields.u32("newVersion")?);
    let list = fields.array("modifications")?;
    let mut modifications = Vec::with_capacity(list.len());
    for (index, item) in list.iter().enumerate() {
        let path = format!("{}[{index}]", fields.path_of("modifications"));
        let item = Fields::of(path, item)?;
        let modification = match item.string("type")? {
            "Add" => QuerySetModification::Add(AddQuery {
                query_id: QueryId(item.u32("queryId")?),
                udf_path: item.udf_path("udfPath")?,
                args: item.args("args")?,
                journal: item.opt_string("journal")?.map(str::to_string),
                component_path: item.opt_string("componentPath")?.map(str::to_string),
            }),
            "Remove" => QuerySetModification::Remove {
                query_id: QueryId(item.u32("queryId")?),
            },
            other => {
                return Err(Error::bad_request(format!(
                    "{}: unknown modification type {}; expected \"Add\" or \"Remove\"",
                    item.path_of("type"),
                    quote_short(other)
                )))
            }
        };
        modifications.push(modification);
    }
    Ok(ModifyQuerySet {
        base_version,
        new_version,
        modifications,
    })
}

fn decode_function_request(fields: &Fields<'_>) -> Result<FunctionRequest> {
    Ok(FunctionRequest {
        request_id: RequestId(fields.u32("requestId")?),
        udf_path: fields.udf_path("udfPath")?,
        args: fields.args("args")?,
        component_path: fields.opt_string("componentPath")?.map(str::to_string),
    })
}

fn decode_authenticate(fields: &Fields<'_>) -> Result<Authenticate> {
    let base_version = IdentityVersion(fields.u32("baseVersion")?);
    let token = match fields.string("tokenType")? {
        "User" => AuthToken::User {
            value: fields.string("value")?.to_string(),
        },
        "Admin" => {
            // npm writes `impersonating`, the Rust client `acting_as`.
            let impersonating = match fields.opt_object("impersonating")? {
                Some(object) => Some(object),
                None => fields.opt_object("acting_as")?,
            };
            AuthToken::Admin {
                value: fields.string("value")?.to_string(),
                impersonating: impersonating.cloned(),
            }
        }
        "None" => AuthToken::None,
        other => {
            return Err(Error::bad_request(format!(
                "{}: unknown token type {}; expected \"User\", \"Admin\" or \"None\"",
                fields.path_of("tokenType"),
                quote_short(other)
            )))
        }
    };
    Ok(Authenticate {
        base_version,
        token,
    })
}

fn decode_event(fields: &Fields<'_>) -> Result<ClientEvent> {
    Ok(ClientEvent {
        event_type: fields.string("eventType")?.to_string(),
        event: fields.map.get("event").cloned().unwrap_or(Json::Null),
    })
}

/// The fields of one JSON object, with the path that names it in error messages.
struct Fields<'a> {
    path: String,
    map: &'a Map<String, Json>,
}

impl<'a> Fields<'a> {
    fn of(path: String, value: &'a Json) -> Result<Fields<'a>> {
        match value {
            Json::Object(map) => Ok(Fields { path, map }),
            other => Err(unexpected(&path, "a JSON object", other)),
        }
    }

    fn path_of(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    fn required(&self, name: &str) -> Result<&'a Json> {
        self.map.get(name).ok_or_else(|| {
            Error::bad_request(format!("{}: required field is missing", self.path_of(name)))
        })
    }

    /// Absent and `null` are both "not given".
    fn optional(&self, name: &str) -> Option<&'a Json> {
        self.map.get(name).filter(|value| !value.is_null())
    }

    fn u32(&self, name: &str) -> Result<u32> {
        let value = self.required(name)?;
        value
            .as_u64()
            .and_then(|number| u32::try_from(number).ok())
            .ok_or_else(|| unexpected(&self.path_of(name), "an unsigned 32-bit integer", value))
    }

    fn opt_i64(&self, name: &str) -> Result<Option<i64>> {
        match self.optional(name) {
            None => Ok(None),
            Some(value) => value
                .as_i64()
                .map(Some)
                .ok_or_else(|| unexpected(&self.path_of(name), "a 64-bit integer", value)),
        }
    }

    fn string(&self, name: &str) -> Result<&'a str> {
        let value = self.required(name)?;
        value
            .as_str()
            .ok_or_else(|| unexpected(&self.path_of(name), "a string", value))
    }

    fn opt_string(&self, name: &str) -> Result<Option<&'a str>> {
        match self.optional(name) {
            None => Ok(None),
            Some(value) => value
                .as_str()
                .map(Some)
                .ok_or_else(|| unexpected(&self.path_of(name), "a string or null", value)),
        }
    }

    fn opt_object(&self, name: &str) -> Result<Option<&'a Map<String, Json>>> {
        match self.optional(name) {
            None => Ok(None),
            Some(value) => value
                .as_object()
                .map(Some)
                .ok_or_else(|| unexpected(&self.path_of(name), "an object or null", value)),
        }
    }

    fn array(&self, name: &str) -> Result<&'a Vec<Json>> {
        let value = self.required(name)?;
        value
            .as_array()
            .ok_or_else(|| unexpected(&self.path_of(name), "an array", value))
    }

    fn opt_ts(&self, name: &str) -> Result<Option<Ts>> {
        match self.optional(name) {
            None => Ok(None),
            Some(Json::String(text)) => Ts::decode(text)
                .map(Some)
                .map_err(|err| err.context(self.path_of(name))),
            Some(other) => Err(unexpected(
                &self.path_of(name),
                "a timestamp string (base64 of 8 little-endian bytes)",
                other,
            )),
        }
    }

    fn udf_path(&self, name: &str) -> Result<UdfPath> {
        UdfPath::parse(self.string(name)?).map_err(|err| err.context(self.path_of(name)))
    }

    /// `args`: exactly `[ {…} ]`, the way both official clients send arguments.
    fn args(&self, name: &str) -> Result<FunctionArgs> {
        const WHAT: &str = "an array holding exactly one object (the function's arguments)";
        let path = self.path_of(name);
        let value = self.required(name)?;
        let Json::Array(items) = value else {
            return Err(unexpected(&path, WHAT, value));
        };
        match items.as_slice() {
            [Json::Object(object)] => Ok(FunctionArgs::new(object.clone())),
            [other] => Err(unexpected(
                &format!("{path}[0]"),
                "an object (the function's arguments)",
                other,
            )),
            _ => Err(Error::bad_request(format!(
                "{path}: expected {WHAT}, got an array of {} elements",
                items.len()
            ))),
        }
    }
}

fn unexpected(path: &str, expected: &str, found: &Json) -> Error {
    Error::bad_request(format!(
        "{path}: expected {expected}, got {}",
        describe(found)
    ))
}

/// A short description of a JSON value for error messages; never echoes large input.
fn describe(value: &Json) -> String {
    match value {
        Json::Null => "null".to_string(),
        Json::Bool(flag) => format!("the boolean {flag}"),
        Json::Number(number) => format!("the number {number}"),
        Json::String(_) => "a string".to_string(),
        Json::Array(items) => format!("an array of {} elements", items.len()),
        Json::Object(_) => "an object".to_string(),
    }
}

/// `text` quoted, cut to a length that keeps error messages readable.
fn quote_short(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    if text.chars().count() <= MAX_CHARS {
        format!("{text:?}")
    } else {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("{cut:?}… ({} bytes)", text.len())
    }
}
