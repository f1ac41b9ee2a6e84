//! The decoder of client frames on the sync WebSocket: the first thing that touches every
//! byte a client sends.
//!
//! Beyond "no panic":
//! - a message that parses re-encodes (as the official clients write it) to text that parses
//!   again to the same message, and that re-encoding is a fixed point;
//! - the size limit is enforced exactly: with a limit below the frame's length the frame is
//!   refused with `LimitExceeded`, whatever it holds;
//! - refusals are client errors, never internal ones.

#![no_main]

use conflux_common::ErrorCode;
use conflux_sync::protocol::{parse_client_message, parse_client_message_with_limit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_client_message(text);
    match &parsed {
        Ok(message) => {
            let encoded = match message.to_json_text() {
                Ok(encoded) => encoded,
                Err(err) => panic!("a parsed message cannot be encoded: {err}"),
            };
            let again = match parse_client_message(&encoded) {
                Ok(again) => again,
                Err(err) => panic!(
                    "a re-encoded {} does not parse: {err}\nencoded: {encoded}",
                    message.type_name()
                ),
            };
            assert_eq!(&again, message, "parse(encode(m)) != m\nencoded: {encoded}");
            let encoded_again = match again.to_json_text() {
                Ok(encoded) => encoded,
                Err(err) => panic!("a parsed message cannot be encoded: {err}"),
            };
            assert_eq!(encoded_again, encoded, "the encoding is not a fixed point");
        }
        Err(err) => {
            assert_ne!(
                err.code(),
                ErrorCode::Internal,
                "bad input is never internal: {err}"
            );
            assert!(!err.message().is_empty());
        }
    }

    if !text.is_empty() {
        match parse_client_message_with_limit(text, text.len() - 1) {
            Err(err) => assert_eq!(err.code(), ErrorCode::LimitExceeded, "{err}"),
            Ok(message) => panic!("a frame over the limit was accepted: {message:?}"),
        }
        let same = parse_client_message_with_limit(text, text.len());
        assert_eq!(
            same.as_ref().ok(),
            parsed.as_ref().ok(),
            "a frame exactly at the limit is judged like any other"
        );
    }
});
