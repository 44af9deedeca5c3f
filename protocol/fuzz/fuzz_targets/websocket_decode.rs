//! The server-side WebSocket `ServerDecoder`: the first bytes choose a limit
//! and chunk sizes; the stream decoded in those chunks gives the same
//! messages and the same outcome as in one piece, and the decoder never holds
//! more than one incomplete frame (plus a fragmented message so far).
#![no_main]

#[path = "../common/chunks.rs"]
mod chunks;

use dumdum_protocol::session::close;
use dumdum_protocol::websocket::{Message, ServerDecoder};
use libfuzzer_sys::fuzz_target;

/// Longest client frame header: 2 + 8 length bytes + 4 mask bytes.
const MAX_CLIENT_HEADER: usize = 14;

fn run(limit: usize, chunks: &[&[u8]]) -> (Vec<Message>, String) {
    let mut d = ServerDecoder::new(limit);
    let mut msgs = Vec::new();
    // What an incomplete frame can hold: control frames carry up to 125.
    let frame_bound = limit.max(125) + MAX_CLIENT_HEADER;
    for chunk in chunks {
        d.feed(chunk);
        loop {
            match d.next_message() {
                Ok(Some(m)) => {
                    match &m {
                        Message::Text(t) => assert!(t.len() <= limit),
                        Message::Binary(b) => assert!(b.len() <= limit),
                        Message::Ping(b) | Message::Pong(b) => assert!(b.len() <= 125),
                        Message::Close(c) => {
                            assert!(c.as_ref().is_none_or(|(_, r)| r.len() <= 123));
                        }
                    }
                    msgs.push(m);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(
                        e.close_code(),
                        close::PROTOCOL_ERROR | close::MALFORMED | close::TOO_BIG
                    ));
                    assert_eq!(d.next_message(), Err(e.clone()));
                    return (msgs, format!("{e:?}"));
                }
            }
        }
        assert!(d.buffered() < frame_bound + limit);
    }
    (msgs, format!("pending {}", d.buffered()))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let limit = match data[0] {
        0 => 1 << 20,
        n => usize::from(n) * 4,
    };
    let n_sizes = usize::from(data[1] % 8) + 1;
    let Some((sizes, stream)) = data[2..].split_at_checked(n_sizes) else {
        return;
    };
    let chunks = chunks::chunks(sizes, stream);
    let whole = run(limit, &[stream]);
    let chunked = run(limit, &chunks);
    assert_eq!(whole, chunked);
});
