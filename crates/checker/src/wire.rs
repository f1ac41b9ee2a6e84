//! A minimal client of the sync protocol over a raw WebSocket.
//!
//! Why not only the official clients: a soak of a thousand connections cannot start a
//! thousand Node processes, a flood of 10,000 requests per second needs a client that does
//! not wait for answers, and a test of an `AuthError` wants to read the server's exact
//! words. This client speaks just what those need (`Connect`, `ModifyQuerySet`,
//! `Mutation`, `Authenticate`; `Transition`, `MutationResponse`, `AuthError`, `FatalError`)
//! in the encoding of `/work/shared/spec/protocol.md` (the npm client's, URL
//! `/api/1.48.0/sync`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::server::HarnessError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One query result carried by a `Transition`.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryUpdate {
    /// The query id the client chose.
    pub query_id: u32,
    /// The value (Convex JSON), or the error message of a failed query.
    pub result: Result<Json, String>,
}

/// A message from the server.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    /// New query results at `end_ts`.
    Transition {
        /// `startVersion.ts`.
        start_ts: u64,
        /// `endVersion.ts`.
        end_ts: u64,
        /// The results that changed.
        updates: Vec<QueryUpdate>,
    },
    /// The answer to a mutation.
    MutationResponse {
        /// The request id of the mutation.
        request_id: u32,
        /// The value, or the error message.
        result: Result<Json, String>,
        /// The commit timestamp of a success.
        ts: Option<u64>,
    },
    /// A token was refused or the identity in use ended.
    AuthError {
        /// The server's explanation.
        error: String,
        /// Whether an `Authenticate` was just refused.
        auth_update_attempted: bool,
    },
    /// A protocol error; the server closes next.
    FatalError {
        /// The server's explanation.
        error: String,
    },
    /// The server closed the socket (code and reason of its close frame, if any).
    Closed {
        /// The close code.
        code: Option<u16>,
        /// The close reason.
        reason: String,
    },
    /// Anything else (an `ActionResponse`, ...), as received.
    Other(Json),
}

/// The sending half of a connection.
pub struct WireSender {
    sink: SplitSink<Socket, Message>,
    query_set_version: u32,
    identity_version: u32,
    next_request_id: u32,
}

/// The receiving half of a connection.
pub struct WireReceiver {
    stream: SplitStream<Socket>,
}

/// A connected sync client (both halves).
pub struct WireClient {
    /// Sends messages.
    pub sender: WireSender,
    /// Receives messages.
    pub receiver: WireReceiver,
}

/// The sync URL of a client API origin, as the npm client 1.48.0 builds it.
pub fn sync_url(client_url: &str) -> String {
    let rest = client_url
        .trim_end_matches('/')
        .trim_start_matches("http://")
        .trim_start_matches("ws://");
    format!("ws://{rest}/api/1.48.0/sync")
}

/// Encode a timestamp as the protocol does: base64 of the 8 little-endian bytes.
pub fn encode_ts(ts: u64) -> String {
    STANDARD.encode(ts.to_le_bytes())
}

/// Decode a protocol timestamp.
pub fn decode_ts(text: &str) -> Option<u64> {
    let bytes = STANDARD.decode(text).ok()?;
    let bytes: [u8; 8] = bytes.as_slice().try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl WireClient {
    /// Open a socket to the server at `client_url` and send `Connect`.
    pub async fn connect(client_url: &str) -> Result<WireClient, HarnessError> {
        let url = sync_url(client_url);
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|err| format!("cannot open {url}: {err}"))?;
        let (sink, stream) = socket.split();
        let mut client = WireClient {
            sender: WireSender {
                sink,
                query_set_version: 0,
                identity_version: 0,
                next_request_id: 0,
            },
            receiver: WireReceiver { stream },
        };
        let connect = json!({
            "type": "Connect",
            "sessionId": uuid::Uuid::new_v4().to_string(),
            "connectionCount": 0,
            "lastCloseReason": "InitialConnect",
            "clientTs": now_ms(),
        });
        client.sender.send(&connect).await?;
        Ok(client)
    }

    /// Split into the sending and the receiving half.
    pub fn into_split(self) -> (WireSender, WireReceiver) {
        (self.sender, self.receiver)
    }

    /// The next message (see [`WireReceiver::next`]).
    pub async fn next(&mut self) -> Option<ServerMessage> {
        self.receiver.next().await
    }
}

impl WireSender {
    /// Send one JSON message.
    pub async fn send(&mut self, message: &Json) -> Result<(), HarnessError> {
        self.sink
            .send(Message::Text(message.to_string().into()))
            .await
            .map_err(|err| format!("send failed: {err}"))
    }

    /// Subscribe to queries `(query id, function path, args)` in one `ModifyQuerySet`.
    pub async fn subscribe(&mut self, queries: &[(u32, &str, Json)]) -> Result<(), HarnessError> {
        let modifications: Vec<Json> = queries
            .iter()
            .map(|(id, path, args)| {
                json!({"type": "Add", "queryId": id, "udfPath": path, "args": [args]})
            })
            .collect();
        let base = self.query_set_version;
        self.query_set_version += 1;
        self.send(&json!({
            "type": "ModifyQuerySet",
            "baseVersion": base,
            "newVersion": base + 1,
            "modifications": modifications,
        }))
        .await
    }

    /// Send `Authenticate` with a user token.
    pub async fn authenticate(&mut self, token: &str) -> Result<(), HarnessError> {
        let base = self.identity_version;
        self.identity_version += 1;
        self.send(&json!({
            "type": "Authenticate",
            "tokenType": "User",
            "value": token,
            "baseVersion": base,
        }))
        .await
    }

    /// Send a mutation; returns its request id.
    pub async fn mutation(&mut self, path: &str, args: Json) -> Result<u32, HarnessError> {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.send(&json!({
            "type": "Mutation",
            "requestId": request_id,
            "udfPath": path,
            "args": [args],
        }))
        .await?;
        Ok(request_id)
    }

    /// Close the socket.
    pub async fn close(&mut self) {
        let _ = self.sink.send(Message::Close(None)).await;
        let _ = self.sink.close().await;
    }
}

impl WireReceiver {
    /// The next message other than `Ping`; `None` once the socket is gone (after
    /// [`ServerMessage::Closed`] or an error).
    pub async fn next(&mut self) -> Option<ServerMessage> {
        loop {
            let frame = match self.stream.next().await? {
                Ok(frame) => frame,
                Err(_) => return None,
            };
            match frame {
                Message::Text(text) => {
                    let Ok(json) = serde_json::from_str::<Json>(text.as_str()) else {
                        return Some(ServerMessage::Other(Json::String(text.to_string())));
                    };
                    if json["type"] == "Ping" {
                        continue;
                    }
                    return Some(parse_server_message(json));
                }
                Message::Close(frame) => {
                    return Some(ServerMessage::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    })
                }
                Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

fn failure_text(json: &Json) -> String {
    match &json["result"] {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Parse one server message (see the protocol spec, §3).
pub fn parse_server_message(json: Json) -> ServerMessage {
    match json["type"].as_str().unwrap_or("") {
        "Transition" => {
            let ts = |version: &Json| version["ts"].as_str().and_then(decode_ts).unwrap_or(0);
            let updates = json["modifications"]
                .as_array()
                .map(|mods| {
                    mods.iter()
                        .filter_map(|m| {
                            let query_id = m["queryId"].as_u64()? as u32;
                            match m["type"].as_str()? {
                                "QueryUpdated" => Some(QueryUpdate {
                                    query_id,
                                    result: Ok(m["value"].clone()),
                                }),
                                "QueryFailed" => Some(QueryUpdate {
                                    query_id,
                                    result: Err(m["errorMessage"]
                                        .as_str()
                                        .unwrap_or_default()
                                        .to_owned()),
                                }),
                                _ => None,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            ServerMessage::Transition {
                start_ts: ts(&json["startVersion"]),
                end_ts: ts(&json["endVersion"]),
                updates,
            }
        }
        "MutationResponse" => ServerMessage::MutationResponse {
            request_id: json["requestId"].as_u64().unwrap_or(u64::MAX) as u32,
            result: if json["success"] == true {
                Ok(json["result"].clone())
            } else {
                Err(failure_text(&json))
            },
            ts: json["ts"].as_str().and_then(decode_ts),
        },
        "AuthError" => ServerMessage::AuthError {
            error: json["error"].as_str().unwrap_or_default().to_owned(),
            auth_update_attempted: json["authUpdateAttempted"] == true,
        },
        "FatalError" => ServerMessage::FatalError {
            error: json["error"].as_str().unwrap_or_default().to_owned(),
        },
        _ => ServerMessage::Other(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_messages_decode_as_the_spec_shows() {
        assert_eq!(encode_ts(0), "AAAAAAAAAAA=");
        assert_eq!(encode_ts(1000), "6AMAAAAAAAA=");
        assert_eq!(decode_ts("6AMAAAAAAAA="), Some(1000));
        assert_eq!(decode_ts("6AMA"), None);
        let transition = parse_server_message(json!({
            "type": "Transition",
            "startVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
            "endVersion": {"querySet": 1, "identity": 0, "ts": "6AMAAAAAAAA="},
            "modifications": [
                {"type": "QueryUpdated", "queryId": 3, "value": [1.0], "logLines": [], "journal": null},
                {"type": "QueryFailed", "queryId": 4, "errorMessage": "boom", "logLines": [], "journal": null},
                {"type": "QueryRemoved", "queryId": 5},
            ],
        }));
        assert_eq!(
            transition,
            ServerMessage::Transition {
                start_ts: 0,
                end_ts: 1000,
                updates: vec![
                    QueryUpdate {
                        query_id: 3,
                        result: Ok(json!([1.0]))
                    },
                    QueryUpdate {
                        query_id: 4,
                        result: Err("boom".into())
                    },
                ],
            }
        );
        let failed = parse_server_message(json!({
            "type": "MutationResponse", "requestId": 7, "success": false,
            "result": "[Request ID: 1] Server Error", "ts": null, "logLines": [],
        }));
        assert_eq!(
            failed,
            ServerMessage::MutationResponse {
                request_id: 7,
                result: Err("[Request ID: 1] Server Error".into()),
                ts: None,
            }
        );
        assert_eq!(
            sync_url("http://127.0.0.1:9/"),
            "ws://127.0.0.1:9/api/1.48.0/sync"
        );
    }
}
