//! A small Server-Sent Events reader over a streaming HTTP response.
//!
//! PocketBase's realtime API is SSE: `GET /api/realtime` stays open and carries one event
//! per record change. The reader splits the byte stream at blank lines and keeps the
//! `event:` and `data:` fields of each event; nothing else of the SSE format is needed.

use conflux_common::{Error, ErrorCode, Result};

/// One event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Events of one streaming response.
pub struct SseStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl SseStream {
    /// Read events from `response`.
    pub fn new(response: reqwest::Response) -> SseStream {
        SseStream {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event; `None` when the server ended the stream.
    pub async fn next_event(&mut self) -> Result<Option<SseEvent>> {
        loop {
            if let Some(event) = take_event(&mut self.buffer) {
                return Ok(Some(event));
            }
            let chunk = self.response.chunk().await.map_err(|err| {
                Error::new(
                    ErrorCode::StorageUnavailable,
                    format!("the event stream broke: {err}"),
                )
            })?;
            match chunk {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// Remove the first complete event (ended by a blank line) from `buffer`.
fn take_event(buffer: &mut Vec<u8>) -> Option<SseEvent> {
    let end = buffer.windows(2).position(|pair| pair == b"\n\n")?;
    let block: Vec<u8> = buffer.drain(..end + 2).collect();
    let text = String::from_utf8_lossy(&block[..end]);
    let mut event = SseEvent::default();
    let mut data = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(value) = line.strip_prefix("event:") {
            event.event = value.trim_start().to_string();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value).to_string());
        }
    }
    event.data = data.join("\n");
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_at_blank_lines() {
        let mut buffer =
            b"id:abc\nevent:PB_CONNECT\ndata:{\"clientId\":\"abc\"}\n\nid:abc\nevent:messages/*\ndata:{\"a\":1}\n\nid:partial"
                .to_vec();
        let first = take_event(&mut buffer);
        assert_eq!(
            first,
            Some(SseEvent {
                event: "PB_CONNECT".into(),
                data: "{\"clientId\":\"abc\"}".into()
            })
        );
        assert_eq!(
            take_event(&mut buffer).map(|e| e.data),
            Some("{\"a\":1}".into())
        );
        assert_eq!(take_event(&mut buffer), None);
        assert_eq!(buffer, b"id:partial".to_vec());
    }
}
