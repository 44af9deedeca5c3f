//! `ServerMessage::decode` and `decode_exact` on arbitrary bytes: no panic,
//! and whatever decodes round-trips (HELLO/ACK flags normalise to 0/1).
#![no_main]

use dumdum_protocol::{Decode, ServerMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ServerMessage::decode_exact(data);
    if let Ok(Some((msg, len))) = ServerMessage::decode(data) {
        assert!(len <= data.len());
        let again = msg.to_bytes().expect("a decoded message encodes");
        assert_eq!(again.len(), len);
        assert_eq!(ServerMessage::decode_exact(&again), Ok(msg));
    }
});
