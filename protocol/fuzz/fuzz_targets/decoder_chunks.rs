//! The streaming `Decoder`: the first bytes choose a limit and chunk sizes;
//! the stream decoded in those chunks gives the same messages and the same
//! outcome as in one piece, for both directions.
#![no_main]

#[path = "../common/chunks.rs"]
mod chunks;

use dumdum_protocol::decoder::Directed;
use dumdum_protocol::{ClientMessage, Decoder, Error, ServerMessage};
use libfuzzer_sys::fuzz_target;

fn outcome(e: &Error) -> String {
    match e {
        // How much was buffered when the limit was crossed depends on chunking.
        Error::BufferOverflow { limit, .. } => format!("overflow {limit}"),
        e => format!("{e:?}"),
    }
}

fn run<M: Directed + std::fmt::Debug>(limit: usize, chunks: &[&[u8]]) -> (Vec<String>, String) {
    let mut d = Decoder::<M>::new(limit);
    let mut msgs = Vec::new();
    for chunk in chunks {
        d.feed(chunk);
        loop {
            match d.next_message() {
                Ok(Some((m, raw))) => {
                    assert!(raw.len() <= limit);
                    msgs.push(format!("{m:?} {raw:?}"));
                }
                Ok(None) => break,
                Err(e) => return (msgs, outcome(&e)),
            }
        }
        assert!(d.buffered() <= limit + chunk.len());
    }
    (msgs, format!("pending {}", d.buffered()))
}

fn check<M: Directed + std::fmt::Debug>(limit: usize, sizes: &[u8], stream: &[u8]) {
    let chunks = chunks::chunks(sizes, stream);
    let whole = run::<M>(limit, &[stream]);
    let chunked = run::<M>(limit, &chunks);
    assert_eq!(whole, chunked);
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let limit = match data[0] {
        0 => dumdum_protocol::DEFAULT_BUFFER_LIMIT,
        n => usize::from(n) * 8,
    };
    let n_sizes = usize::from(data[1] % 8) + 1;
    let Some((sizes, stream)) = data[2..].split_at_checked(n_sizes) else {
        return;
    };
    check::<ClientMessage>(limit, sizes, stream);
    check::<ServerMessage>(limit, sizes, stream);
});
