//! The document every system stores: a chat message of a fixed JSON size.
//!
//! The plan asks for the same document shape everywhere: about 200 bytes of JSON (and a
//! 1 KB variant). The body is padded so that the user fields encode to exactly the chosen
//! size. Each message carries the two numbers the measurement needs: its sequence number
//! in the run plan (`seq`) and the time it was *scheduled* to be sent (`t`, microseconds on
//! the harness clock), so whoever receives it can compute the latency without a lookup.

use serde_json::{json, Map, Value as Json};

/// The author field of every message (a fixed width keeps sizes exact).
const AUTHOR: &str = "bench-writer";

/// One message to send.
#[derive(Clone, Debug)]
pub struct MessageSpec {
    /// The channel it belongs to.
    pub channel: String,
    /// Its sequence number in the run plan.
    pub seq: u64,
    /// When it was scheduled, microseconds on the harness clock.
    pub scheduled_us: f64,
    /// The JSON size of its user fields, in bytes.
    pub size: usize,
}

impl MessageSpec {
    /// The user fields: `channel`, `seq`, `t`, `author` and a `body` padded to `size`.
    pub fn fields(&self) -> Map<String, Json> {
        let mut fields = Map::new();
        fields.insert("author".into(), json!(AUTHOR));
        fields.insert("channel".into(), json!(self.channel));
        fields.insert("seq".into(), json!(self.seq as f64));
        fields.insert("t".into(), json!(self.scheduled_us.round()));
        fields.insert("body".into(), json!(""));
        let bare = Json::Object(fields.clone()).to_string().len();
        let pad = self.size.saturating_sub(bare).max(1);
        fields.insert("body".into(), json!("m".repeat(pad)));
        fields
    }
}

/// The `seq` and `t` of a received document, when it has both.
pub fn seq_and_time(document: &Json) -> Option<(u64, f64)> {
    let seq = document.get("seq")?.as_f64()?;
    let time = document.get("t")?.as_f64()?;
    (seq >= 0.0).then_some((seq as u64, time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_has_the_chosen_json_size_and_carries_its_timing() {
        for size in [200, 1024] {
            let spec = MessageSpec {
                channel: "w1-c0".into(),
                seq: 1234,
                scheduled_us: 98_765_432.0,
                size,
            };
            let json = Json::Object(spec.fields());
            assert_eq!(json.to_string().len(), size);
            assert_eq!(seq_and_time(&json), Some((1234, 98_765_432.0)));
        }
    }
}
