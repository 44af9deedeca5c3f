//! `ClientMessage::decode` and `decode_exact` on arbitrary bytes: no panic,
//! and whatever decodes re-encodes to the same bytes.
#![no_main]

use dumdum_protocol::{ClientMessage, Decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ClientMessage::decode_exact(data);
    if let Ok(Some((msg, len))) = ClientMessage::decode(data) {
        assert!(len <= data.len());
        let again = msg.to_bytes().expect("a decoded message encodes");
        assert_eq!(&again[..], &data[..len], "client messages are canonical");
    }
});
