//! Index key decoding: keys come from storage, so a corrupt one must be an error, never a
//! panic or a stack overflow.
//!
//! Beyond "no panic": a key that decodes is canonical, i.e. re-encoding the decoded tuple
//! gives back exactly the same bytes. Otherwise two different keys could stand for one
//! tuple and break uniqueness and range scans.

#![no_main]

use conflux_values::index_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tuple) = index_key::decode(data) else {
        return;
    };
    let encoded = index_key::encode(&tuple);
    assert_eq!(
        encoded, data,
        "a key that decodes must be canonical: {tuple:?} re-encodes differently"
    );
    // The successor bounds used by range scans hold for every decodable key.
    let next = index_key::successor(data);
    assert!(next.as_slice() > data);
    if let Some(end) = index_key::prefix_successor(data) {
        assert!(end.as_slice() > data);
    }
});
