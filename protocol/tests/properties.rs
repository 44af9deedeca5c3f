//! Property tests of the codec, the streaming decoder and the state machines:
//! every message round-trips, chunking never changes what is decoded (nor
//! the error), and arbitrary bytes never panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use dumdum_protocol::message::ServerEncodeError;
use dumdum_protocol::{
    ChatMessage, Client, ClientConfig, ClientMessage, Decode, Decoder, Error, MAX_CHANNEL_LEN,
    MAX_CONTENT_LEN, MAX_NICK_LEN, Server, ServerMessage, Snowflake, TlsMode,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------- strategies

/// One character of 1, 2, 3 or 4 UTF-8 bytes (with a bias to the edges).
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        proptest::char::range('\0', '\u{7f}'),
        proptest::char::range('\u{80}', '\u{7ff}'),
        proptest::char::range('\u{800}', '\u{d7ff}'),
        proptest::char::range('\u{e000}', '\u{ffff}'),
        proptest::char::range('\u{10000}', '\u{10ffff}'),
        Just('é'),
        Just('👀'),
    ]
}

/// Characters pushed while they fit in `max` bytes.
fn fit(chars: Vec<char>, max: usize) -> String {
    let mut s = String::new();
    for c in chars {
        if s.len() + c.len_utf8() > max {
            break;
        }
        s.push(c);
    }
    s
}

/// A valid `varchar(max)` value: empty, any length up to `max` UTF-8 bytes,
/// or exactly `max` bytes (multi-byte characters padded with ASCII).
fn varchar(max: usize) -> BoxedStrategy<String> {
    // Short strings mostly, so that lists stay small; the edges always.
    let short = vec(any_char(), 0..=12.min(max)).prop_map(move |c| fit(c, max));
    let long = vec(any_char(), 0..=max).prop_map(move |c| fit(c, max));
    let full = vec(any_char(), 0..=max).prop_map(move |c| {
        let mut s = fit(c, max);
        while s.len() < max {
            s.push('x');
        }
        s
    });
    prop_oneof![
        1 => Just(String::new()),
        6 => short,
        2 => long,
        2 => full,
    ]
    .boxed()
}

fn chat() -> impl Strategy<Value = ChatMessage> {
    (
        any::<u64>(),
        varchar(MAX_CHANNEL_LEN),
        varchar(MAX_NICK_LEN),
        varchar(MAX_CONTENT_LEN),
    )
        .prop_map(|(id, channel, nick, content)| ChatMessage {
            id: Snowflake(id),
            channel,
            nick,
            content,
        })
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        any::<u8>().prop_map(|version| ClientMessage::Hello { version }),
        varchar(MAX_NICK_LEN).prop_map(|nick| ClientMessage::Authenticate { nick }),
        (varchar(MAX_CHANNEL_LEN), varchar(MAX_CONTENT_LEN))
            .prop_map(|(channel, content)| ClientMessage::SendMessage { channel, content }),
        Just(ClientMessage::ListChannels),
        (varchar(MAX_CHANNEL_LEN), any::<u64>(), any::<u64>()).prop_map(
            |(channel, before, after)| ClientMessage::ListMessages {
                channel,
                before,
                after
            }
        ),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        any::<bool>().prop_map(|tls| ServerMessage::Hello { tls }),
        any::<u8>().prop_map(|required| ServerMessage::IncompatibleVersion { required }),
        any::<bool>().prop_map(|success| ServerMessage::AcknowledgeAuthentication { success }),
        chat().prop_map(ServerMessage::SendMessage),
        vec(varchar(MAX_CHANNEL_LEN), 0..40).prop_map(ServerMessage::ListChannels),
        vec(chat(), 0..12).prop_map(ServerMessage::ListMessages),
    ]
}

/// Splits `bytes` at the given points (any order, duplicates allowed).
fn split(bytes: &[u8], points: &[Index]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = points.iter().map(|i| i.index(bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(bytes[start..cut].to_vec());
        start = cut;
    }
    chunks.push(bytes[start..].to_vec());
    chunks
}

/// An error with the parts that depend on chunking left out: how many bytes
/// were buffered when the limit was crossed depends on the chunk sizes.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The stream ended; this many bytes wait for the rest of a message.
    Pending(usize),
    Failed(String),
}

fn normalize(e: &Error) -> String {
    match e {
        Error::BufferOverflow { limit, .. } => format!("BufferOverflow {{ limit: {limit} }}"),
        other => format!("{other:?}"),
    }
}

/// Feeds `chunks` and drains after each; stops at the first error.
fn run<M>(limit: usize, chunks: &[Vec<u8>]) -> (Vec<(M, Bytes)>, Outcome)
where
    M: dumdum_protocol::decoder::Directed + PartialEq + std::fmt::Debug,
{
    let mut d = Decoder::<M>::new(limit);
    let mut out = Vec::new();
    for chunk in chunks {
        d.feed(chunk);
        loop {
            match d.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => {
                    let outcome = Outcome::Failed(normalize(&e));
                    // A failed decoder stays failed.
                    assert_eq!(d.next_message(), Err(Error::Closed));
                    return (out, outcome);
                }
            }
        }
    }
    let pending = Outcome::Pending(d.buffered());
    (out, pending)
}

/// A stream of valid messages, possibly corrupted and possibly followed by
/// junk, so that it exercises every outcome.
fn stream<M: std::fmt::Debug>(
    messages: impl Strategy<Value = M>,
    encode: fn(&M) -> Vec<u8>,
) -> impl Strategy<Value = Vec<u8>> {
    (
        vec(messages, 0..6),
        vec((any::<Index>(), any::<u8>()), 0..3),
        vec(any::<u8>(), 0..8),
        any::<bool>(),
    )
        .prop_map(move |(msgs, flips, junk, add_junk)| {
            let mut bytes: Vec<u8> = msgs.iter().flat_map(encode).collect();
            if !bytes.is_empty() {
                for (i, b) in flips {
                    let at = i.index(bytes.len());
                    bytes[at] = b;
                }
            }
            if add_junk {
                bytes.extend(junk);
            }
            bytes
        })
}

fn enc_client(m: &ClientMessage) -> Vec<u8> {
    m.to_bytes().unwrap()
}

fn enc_server(m: &ServerMessage) -> Vec<u8> {
    m.to_bytes().unwrap()
}

fn limits() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(dumdum_protocol::DEFAULT_BUFFER_LIMIT),
        1usize..64,
        64usize..2000,
    ]
}

// ---------------------------------------------------------------- round trips

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn client_messages_round_trip(msg in client_message()) {
        let bytes = msg.to_bytes().unwrap();
        prop_assert_eq!(ClientMessage::decode(&bytes), Ok(Some((msg.clone(), bytes.len()))));
        prop_assert_eq!(ClientMessage::decode_exact(&bytes), Ok(msg.clone()));
        // Every proper prefix is "need more bytes", never an error.
        for cut in 0..bytes.len() {
            prop_assert_eq!(ClientMessage::decode(&bytes[..cut]), Ok(None));
        }
        // Trailing bytes do not change what is read.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xff, 0x00]);
        prop_assert_eq!(ClientMessage::decode(&longer), Ok(Some((msg, bytes.len()))));
    }

    #[test]
    fn server_messages_round_trip(msg in server_message()) {
        let bytes = msg.to_bytes().unwrap();
        prop_assert_eq!(ServerMessage::decode(&bytes), Ok(Some((msg.clone(), bytes.len()))));
        prop_assert_eq!(ServerMessage::decode_exact(&bytes), Ok(msg.clone()));
        for cut in 0..bytes.len() {
            prop_assert_eq!(ServerMessage::decode(&bytes[..cut]), Ok(None));
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xff, 0x00]);
        prop_assert_eq!(ServerMessage::decode(&longer), Ok(Some((msg, bytes.len()))));
    }

    #[test]
    fn overlong_fields_are_refused_on_both_sides(
        extra in 1usize..8,
        c in any_char(),
    ) {
        // A string of exactly max + extra bytes (at least one multi-byte char).
        let make = |max: usize| {
            let mut s = String::from(c);
            while s.len() < max + extra {
                s.push('y');
            }
            s
        };
        let nick = make(MAX_NICK_LEN);
        let auth = ClientMessage::Authenticate { nick: nick.clone() };
        prop_assert!(auth.to_bytes().is_err());
        let content = make(MAX_CONTENT_LEN);
        let m = ServerMessage::SendMessage(ChatMessage {
            id: Snowflake(1),
            channel: "c".into(),
            nick: "n".into(),
            content: content.clone(),
        });
        prop_assert!(matches!(m.to_bytes(), Err(ServerEncodeError::Field(_))));
        // Hand-made bytes with the over-long length: malformed, never "need more".
        let mut bytes = vec![0x02, u8::try_from(nick.len()).unwrap()];
        bytes.extend_from_slice(nick.as_bytes());
        prop_assert!(ClientMessage::decode(&bytes).is_err());
        prop_assert!(ClientMessage::decode(&bytes[..2]).is_err());
    }
}

// ---------------------------------------------------------------- chunking

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn client_stream_chunking_does_not_matter(
        bytes in stream(client_message(), enc_client),
        points in vec(any::<Index>(), 0..12),
        limit in limits(),
    ) {
        let whole = run::<ClientMessage>(limit, std::slice::from_ref(&bytes));
        let chunked = run::<ClientMessage>(limit, &split(&bytes, &points));
        prop_assert_eq!(&whole, &chunked);
        // The raw bytes are the stream's bytes, in order.
        let raw: Vec<u8> = whole.0.iter().flat_map(|(_, b)| b.to_vec()).collect();
        prop_assert_eq!(&raw[..], &bytes[..raw.len()]);
    }

    #[test]
    fn server_stream_chunking_does_not_matter(
        bytes in stream(server_message(), enc_server),
        points in vec(any::<Index>(), 0..12),
        limit in limits(),
    ) {
        let whole = run::<ServerMessage>(limit, std::slice::from_ref(&bytes));
        let chunked = run::<ServerMessage>(limit, &split(&bytes, &points));
        prop_assert_eq!(&whole, &chunked);
        let raw: Vec<u8> = whole.0.iter().flat_map(|(_, b)| b.to_vec()).collect();
        prop_assert_eq!(&raw[..], &bytes[..raw.len()]);
    }

    #[test]
    fn one_byte_at_a_time_equals_one_piece(
        bytes in stream(server_message(), enc_server),
        limit in limits(),
    ) {
        let whole = run::<ServerMessage>(limit, std::slice::from_ref(&bytes));
        let bytewise: Vec<Vec<u8>> = bytes.iter().map(|b| vec![*b]).collect();
        prop_assert_eq!(whole, run::<ServerMessage>(limit, &bytewise));
    }

    #[test]
    fn arbitrary_streams_chunk_alike(
        bytes in vec(any::<u8>(), 0..300),
        points in vec(any::<Index>(), 0..12),
        limit in limits(),
    ) {
        prop_assert_eq!(
            run::<ClientMessage>(limit, std::slice::from_ref(&bytes)),
            run::<ClientMessage>(limit, &split(&bytes, &points))
        );
        prop_assert_eq!(
            run::<ServerMessage>(limit, std::slice::from_ref(&bytes)),
            run::<ServerMessage>(limit, &split(&bytes, &points))
        );
    }
}

// ------------------------------------------- next_frame agrees with next_message

/// Like [`run`] with [`Decoder::next_frame`]: (type byte, bytes) per message.
fn run_frames<M>(limit: usize, chunks: &[Vec<u8>]) -> (Vec<(u8, Bytes)>, Outcome)
where
    M: dumdum_protocol::decoder::Directed,
{
    let mut d = Decoder::<M>::new(limit);
    let mut out = Vec::new();
    for chunk in chunks {
        d.feed(chunk);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(e) => {
                    let outcome = Outcome::Failed(normalize(&e));
                    assert_eq!(d.next_frame(), Err(Error::Closed));
                    return (out, outcome);
                }
            }
        }
    }
    let pending = Outcome::Pending(d.buffered());
    (out, pending)
}

/// What `run` yields, in `run_frames`' terms.
fn as_frames<M>(run: (Vec<(M, Bytes)>, Outcome)) -> (Vec<(u8, Bytes)>, Outcome) {
    let (msgs, outcome) = run;
    (msgs.into_iter().map(|(_, b)| (b[0], b)).collect(), outcome)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn next_frame_agrees_with_next_message_on_server_streams(
        bytes in hostile(server_message(), enc_server),
        points in vec(any::<Index>(), 0..12),
        limit in limits(),
    ) {
        let chunks = split(&bytes, &points);
        prop_assert_eq!(
            run_frames::<ServerMessage>(limit, &chunks),
            as_frames(run::<ServerMessage>(limit, &chunks))
        );
        let bytewise: Vec<Vec<u8>> = bytes.iter().map(|b| vec![*b]).collect();
        prop_assert_eq!(
            run_frames::<ServerMessage>(limit, &bytewise),
            as_frames(run::<ServerMessage>(limit, std::slice::from_ref(&bytes)))
        );
    }

    #[test]
    fn next_frame_agrees_with_next_message_on_client_streams(
        bytes in hostile(client_message(), enc_client),
        points in vec(any::<Index>(), 0..12),
        limit in limits(),
    ) {
        let chunks = split(&bytes, &points);
        prop_assert_eq!(
            run_frames::<ClientMessage>(limit, &chunks),
            as_frames(run::<ClientMessage>(limit, &chunks))
        );
    }

    #[test]
    fn frame_len_agrees_with_decode(bytes in vec(any::<u8>(), 0..400)) {
        prop_assert_eq!(
            ServerMessage::frame_len(&bytes),
            ServerMessage::decode(&bytes).map(|o| o.map(|(_, n)| n))
        );
        prop_assert_eq!(
            ClientMessage::frame_len(&bytes),
            ClientMessage::decode(&bytes).map(|o| o.map(|(_, n)| n))
        );
    }
}

// ---------------------------------------------------------------- no panics

/// Where to put a client before feeding it arbitrary bytes.
#[derive(Debug, Clone, Copy)]
enum ClientStage {
    Start,
    AwaitingHello,
    AwaitingTls,
    Unauthenticated,
    Authenticating,
    Ready,
}

fn client_at(stage: ClientStage, tls: TlsMode, limit: usize) -> Client {
    let mut c = Client::new(ClientConfig {
        tls,
        buffer_limit: limit,
    });
    let server_tls = matches!(stage, ClientStage::AwaitingTls);
    if matches!(stage, ClientStage::Start) {
        return c;
    }
    c.hello().unwrap();
    if matches!(stage, ClientStage::AwaitingHello) {
        return c;
    }
    if c.handle_data(&[0x00, u8::from(server_tls)]).is_err() {
        return c;
    }
    if server_tls {
        return c;
    }
    if matches!(stage, ClientStage::Unauthenticated) || c.authenticate("me").is_err() {
        return c;
    }
    if matches!(stage, ClientStage::Authenticating) {
        return c;
    }
    let _ = c.handle_data(&[0x02, 0x01]);
    if matches!(stage, ClientStage::Ready) {
        let _ = c.list_messages("general", dumdum_protocol::HistoryQuery::Newest);
    }
    c
}

fn client_stage() -> impl Strategy<Value = ClientStage> {
    prop_oneof![
        Just(ClientStage::Start),
        Just(ClientStage::AwaitingHello),
        Just(ClientStage::AwaitingTls),
        Just(ClientStage::Unauthenticated),
        Just(ClientStage::Authenticating),
        Just(ClientStage::Ready),
    ]
}

fn tls_mode() -> impl Strategy<Value = TlsMode> {
    prop_oneof![
        Just(TlsMode::Disabled),
        Just(TlsMode::Optional),
        Just(TlsMode::Required),
        Just(TlsMode::Transparent),
    ]
}

/// Arbitrary bytes, or valid server messages with junk mixed in.
fn hostile<M: std::fmt::Debug>(
    messages: impl Strategy<Value = M>,
    encode: fn(&M) -> Vec<u8>,
) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..400), stream(messages, encode)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn decode_never_panics(bytes in vec(any::<u8>(), 0..400)) {
        let _ = ClientMessage::decode(&bytes);
        let _ = ServerMessage::decode(&bytes);
        let _ = ClientMessage::decode_exact(&bytes);
        let _ = ServerMessage::decode_exact(&bytes);
        // A decoded message is canonical: it re-encodes to its own bytes,
        // except HELLO/ACK whose flag byte may be any non-zero value.
        if let Ok(Some((m, len))) = ClientMessage::decode(&bytes) {
            prop_assert_eq!(m.to_bytes().unwrap(), bytes[..len].to_vec());
        }
        if let Ok(Some((m, len))) = ServerMessage::decode(&bytes) {
            let again = m.to_bytes().unwrap();
            prop_assert_eq!(again.len(), len);
            prop_assert_eq!(ServerMessage::decode_exact(&again), Ok(m));
        }
    }

    #[test]
    fn client_handle_data_never_panics(
        stage in client_stage(),
        tls in tls_mode(),
        limit in limits(),
        bytes in hostile(server_message(), enc_server),
        points in vec(any::<Index>(), 0..6),
    ) {
        let mut c = client_at(stage, tls, limit);
        for chunk in split(&bytes, &points) {
            if c.handle_data(&chunk).is_err() {
                // Failed for good: every later input is refused.
                prop_assert_eq!(c.handle_data(&[0x03]), Err(Error::Closed));
                prop_assert_eq!(c.state(), &dumdum_protocol::ClientState::Failed);
                break;
            }
        }
        while c.poll_event().is_some() {}
        while c.poll_transmit().is_some() {}
        let _ = c.send_message("general", "still here?");
    }

    #[test]
    fn server_handle_data_never_panics(
        stage in 0u8..4,
        limit in limits(),
        bytes in hostile(client_message(), enc_client),
        points in vec(any::<Index>(), 0..6),
    ) {
        // The setup's messages are at most 4 bytes: fine with any limit >= 4.
        let mut s = Server::new(limit.max(4));
        if stage >= 1 {
            s.handle_data(&[0x00, 0x02]).unwrap();
        }
        if stage >= 2 {
            s.accept_hello(false).unwrap();
        }
        if stage >= 3 {
            s.handle_data(&[0x02, 0x02, b'm', b'e']).unwrap();
            s.authenticate(true).unwrap();
        }
        for chunk in split(&bytes, &points) {
            if s.handle_data(&chunk).is_err() {
                prop_assert_eq!(s.handle_data(&[0x04]), Err(Error::Closed));
                break;
            }
            // Answer whatever was asked, as a real server would.
            while let Some(ev) = s.poll_event() {
                use dumdum_protocol::ServerEvent as E;
                let _ = match ev {
                    E::Hello => s.accept_hello(false),
                    E::Authenticate { .. } => s.authenticate(true),
                    E::ListChannels => s.list_channels(&["general".into()]),
                    E::ListMessages { .. } => s.list_messages(&[]),
                    _ => Ok(()),
                };
            }
        }
        while s.poll_transmit().is_some() {}
    }
}

// ---------------------------------------------------------------- list limits

#[test]
fn channel_list_at_the_u16_limit() {
    // 1985 channels of 32 bytes (33 with the prefix) + one of 29 (30) = 65535.
    let mut channels: Vec<String> = (0..1985).map(|i| format!("{i:0>32}")).collect();
    channels.push("é".repeat(14) + "x");
    let msg = ServerMessage::ListChannels(channels.clone());
    let bytes = msg.to_bytes().unwrap();
    assert_eq!(&bytes[..3], &[0x04, 0xff, 0xff]);
    assert_eq!(bytes.len(), 3 + 65535);
    assert_eq!(ServerMessage::decode_exact(&bytes).unwrap(), msg);
    channels.push(String::new()); // one more prefix byte: 65536
    assert!(matches!(
        ServerMessage::ListChannels(channels).to_bytes(),
        Err(ServerEncodeError::ListTooLong { len: 65536 })
    ));
}

#[test]
fn message_list_past_the_default_buffer_limit() {
    // A LIST_MESSAGES of ~1.1 MB is valid on the wire (u24 length) but over
    // the 1 MiB default receive limit: refused however it arrives.
    let big = ChatMessage {
        id: Snowflake(1),
        channel: "c".repeat(32),
        nick: "n".repeat(32),
        content: "€".repeat(341),
    };
    let msg = ServerMessage::ListMessages(vec![big; 1000]);
    let bytes = msg.to_bytes().unwrap();
    assert!(bytes.len() > dumdum_protocol::DEFAULT_BUFFER_LIMIT);
    assert_eq!(ServerMessage::decode_exact(&bytes).unwrap(), msg);
    for chunk in [bytes.len(), 4096, 1000] {
        let chunks: Vec<Vec<u8>> = bytes.chunks(chunk).map(<[u8]>::to_vec).collect();
        let (got, outcome) = run::<ServerMessage>(dumdum_protocol::DEFAULT_BUFFER_LIMIT, &chunks);
        assert!(got.is_empty());
        assert_eq!(
            outcome,
            Outcome::Failed(format!(
                "BufferOverflow {{ limit: {} }}",
                dumdum_protocol::DEFAULT_BUFFER_LIMIT
            )),
            "chunks of {chunk}"
        );
    }
    // With a larger limit it is accepted.
    let (got, outcome) = run::<ServerMessage>(2 << 20, std::slice::from_ref(&bytes));
    assert_eq!(got.len(), 1);
    assert_eq!(outcome, Outcome::Pending(0));
}
