//! The fuzz targets' checked-in corpus (`protocol/fuzz/seeds/<target>`)
//! holds the golden bytes (`golden_cases`, checked against the reference
//! implementation by `golden.rs`) and the inputs of the reference test
//! scenarios (`scenarios.rs`), each framed as its target reads them.
//!
//! This test fails when a seed made here is missing or differs from the
//! file; `DUMDUM_WRITE_FUZZ_SEEDS=1 cargo test -p dumdum-protocol --test
//! fuzz_seeds` writes them. Other files in those directories (the first
//! hand-made seeds, inputs merged by `cargo xtask fuzz --merge`) are left
//! alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod golden_cases;

use std::path::PathBuf;

use dumdum_protocol::session::{Content, Handshake, Notice};
use dumdum_protocol::{
    Client, ClientConfig, ClientMessage, HistoryQuery, Server, ServerEvent, ServerMessage,
    Snowflake,
};
use golden_cases::{chat, client_cases, server_cases};

/// (target, file name, bytes).
type Seed = (&'static str, String, Vec<u8>);

/// The setup byte of `client_handle_data` that puts the client where `m`
/// is an answer: stage in bits 2..5 (1: HELLO sent; 3: AUTHENTICATE sent;
/// 4: authenticated with a LIST_MESSAGES pending), TLS disabled.
fn client_stage(m: &ServerMessage) -> u8 {
    let stage = match m {
        ServerMessage::Hello { .. } | ServerMessage::IncompatibleVersion { .. } => 1,
        ServerMessage::AcknowledgeAuthentication { .. } => 3,
        _ => 4,
    };
    stage << 2
}

/// The setup byte of `server_handle_data` that puts the server where `m` is
/// expected: 0 fresh, 2 HELLO answered, 3 authenticated.
fn server_stage(m: &ClientMessage) -> u8 {
    match m {
        ClientMessage::Hello { .. } => 0,
        ClientMessage::Authenticate { .. } => 2,
        _ => 3,
    }
}

/// `decoder_chunks` input: default limit, chunks of 7 and 3 bytes.
fn chunked(stream: &[u8]) -> Vec<u8> {
    [&[0, 1, 7, 3][..], stream].concat()
}

/// `decoder_chunks` input: a 64-byte limit, one-byte chunks.
fn chunked_small(stream: &[u8]) -> Vec<u8> {
    [&[8, 0, 1][..], stream].concat()
}

/// The reference scenario of a whole session (scenarios.rs: hello,
/// authenticate, list channels, send message, list messages), run through
/// our Client and Server: the bytes each way.
fn scenario_streams() -> (Vec<u8>, Vec<u8>) {
    let mut client = Client::new(ClientConfig::default());
    let mut server = Server::default();
    let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
    let mut pump = |client: &mut Client, server: &mut Server| {
        while let Some(b) = client.poll_transmit() {
            c2s.extend_from_slice(&b);
            server.handle_data(&b).unwrap();
        }
        while let Some(ev) = server.poll_event() {
            match ev {
                ServerEvent::Hello => server.accept_hello(false).unwrap(),
                ServerEvent::Authenticate { .. } => server.authenticate(true).unwrap(),
                ServerEvent::ListChannels => server
                    .list_channels(&["general".into(), "random".into()])
                    .unwrap(),
                ServerEvent::SendMessage { channel, content } => server
                    .send_message(&chat(
                        7_131_046_989_742_080_001,
                        &channel,
                        "thegamecracks",
                        &content,
                    ))
                    .unwrap(),
                ServerEvent::ListMessages { .. } => server
                    .list_messages(&[chat(
                        7_131_046_989_742_080_001,
                        "general",
                        "thegamecracks",
                        "Hello world!",
                    )])
                    .unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        }
        while let Some(b) = server.poll_transmit() {
            s2c.extend_from_slice(&b);
            client.handle_data(&b).unwrap();
        }
        while client.poll_event().is_some() {}
    };
    client.hello().unwrap();
    pump(&mut client, &mut server);
    client.authenticate("thegamecracks").unwrap();
    pump(&mut client, &mut server);
    client.list_channels().unwrap();
    pump(&mut client, &mut server);
    client.send_message("general", "Hello world!").unwrap();
    pump(&mut client, &mut server);
    client
        .list_messages("general", HistoryQuery::Newest)
        .unwrap();
    pump(&mut client, &mut server);
    client
        .list_messages(
            "general",
            HistoryQuery::OlderThan(Snowflake(7_131_046_989_742_080_001)),
        )
        .unwrap();
    pump(&mut client, &mut server);
    (c2s, s2c)
}

/// Every text frame of the session protocol, as the bridge and the page
/// write them.
fn session_texts() -> Vec<(String, String)> {
    let key = "ab".repeat(32);
    let mut out = vec![
        ("start", Handshake::start(1, None)),
        ("start-server", Handshake::start(1, Some("local".into()))),
        ("again", Handshake::again(2, key.clone())),
        ("restart", Handshake::restart(3, key.clone(), 17, None)),
        ("success", Handshake::success(4, key.clone(), false, 0)),
        (
            "success-resumed-node",
            Handshake::success(5, key, true, 42).with_node(Some("node-1".into())),
        ),
    ]
    .into_iter()
    .map(|(name, h)| {
        (
            format!("scenario-handshake-{name}"),
            Content::Handshake(h).to_json(),
        )
    })
    .collect::<Vec<_>>();
    let notices = [
        (
            "connected",
            Notice::UpstreamConnected {
                server: "local".into(),
            },
        ),
        (
            "secured",
            Notice::UpstreamSecured {
                tls_version: "TLSv1.3".into(),
                peer: "CN=localhost".into(),
                fingerprint: "0a".repeat(32),
            },
        ),
        (
            "closed",
            Notice::UpstreamClosed {
                reason: "the server closed the connection".into(),
            },
        ),
        (
            "error",
            Notice::UpstreamError {
                reason: "connection refused".into(),
            },
        ),
        ("resumed", Notice::SessionResumed { replayed: 3 }),
        ("ack", Notice::SessionAck { received: 17 }),
        ("draining", Notice::SessionDraining { deadline_s: 30 }),
        (
            "other",
            Notice::Other {
                module: "future".into(),
                act: "thing".into(),
            },
        ),
    ];
    for (i, (name, notice)) in notices.into_iter().enumerate() {
        let sn = u32::try_from(i).unwrap() + 10;
        out.push((
            format!("scenario-notice-{name}"),
            Content::Notice { sn, notice }.to_json(),
        ));
    }
    out
}

fn seeds() -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let clients: Vec<(ClientMessage, Vec<u8>)> = client_cases()
        .into_iter()
        .map(|m| {
            let b = m.to_bytes().unwrap().to_vec();
            (m, b)
        })
        .collect();
    let servers: Vec<(ServerMessage, Vec<u8>)> = server_cases()
        .into_iter()
        .map(|m| {
            let b = m.to_bytes().unwrap().to_vec();
            (m, b)
        })
        .collect();
    for (i, (m, b)) in clients.iter().enumerate() {
        out.push(("client_message_decode", format!("golden-{i:02}"), b.clone()));
        out.push((
            "server_handle_data",
            format!("golden-{i:02}"),
            [&[server_stage(m)][..], b].concat(),
        ));
    }
    for (i, (m, b)) in servers.iter().enumerate() {
        out.push(("server_message_decode", format!("golden-{i:02}"), b.clone()));
        out.push((
            "client_handle_data",
            format!("golden-{i:02}"),
            [&[client_stage(m)][..], b].concat(),
        ));
    }
    let all_clients: Vec<u8> = clients.iter().flat_map(|(_, b)| b.clone()).collect();
    // Without the 100-message list (70 KB): inputs that long slow every run.
    let all_servers: Vec<u8> = servers
        .iter()
        .filter(|(_, b)| b.len() < 4096)
        .flat_map(|(_, b)| b.clone())
        .collect();
    out.push((
        "decoder_chunks",
        "golden-client".into(),
        chunked(&all_clients),
    ));
    out.push((
        "decoder_chunks",
        "golden-server".into(),
        chunked(&all_servers),
    ));

    let (c2s, s2c) = scenario_streams();
    out.push(("decoder_chunks", "scenario-c2s".into(), chunked(&c2s)));
    out.push(("decoder_chunks", "scenario-s2c".into(), chunked(&s2c)));
    out.push((
        "decoder_chunks",
        "scenario-c2s-small".into(),
        chunked_small(&c2s),
    ));
    out.push((
        "decoder_chunks",
        "scenario-s2c-small".into(),
        chunked_small(&s2c),
    ));
    out.push(("server_handle_data", "scenario-session".into(), {
        [&[0][..], &c2s].concat()
    }));
    out.push(("client_handle_data", "scenario-session".into(), {
        [&[1 << 2][..], &s2c].concat()
    }));
    // The corner cases of scenarios.rs: an unknown message type, a string
    // cut inside a UTF-8 sequence, the buffer overflow input, HELLO with an
    // old version, and the server announcing TLS to a client without it.
    let corners: [(&str, &str, &[u8]); 10] = [
        ("client_message_decode", "invalid-type", b"\xff"),
        ("client_message_decode", "truncated-utf8", b"\x03\x01\xf0"),
        ("server_message_decode", "invalid-type", b"\xff"),
        (
            "server_message_decode",
            "truncated-utf8",
            b"\x04\x00\x02\x01\xf0",
        ),
        ("server_handle_data", "truncated-utf8", b"\x03\x03\x01\xf0"),
        ("server_handle_data", "old-version", b"\x00\x00\x01"),
        ("server_handle_data", "overflow", b"\x80Hello world!\n"),
        (
            "client_handle_data",
            "truncated-utf8",
            b"\x10\x04\x00\x02\x01\xf0",
        ),
        ("client_handle_data", "tls-required", b"\x06\x00\x00"),
        ("client_handle_data", "overflow", b"\x90Hello world!\n"),
    ];
    for (target, name, bytes) in corners {
        out.push((target, format!("scenario-{name}"), bytes.to_vec()));
    }
    for (name, text) in session_texts() {
        out.push(("session_content_parse", name, text.into_bytes()));
    }
    out
}

#[test]
fn fuzz_seeds_are_checked_in() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let write = std::env::var_os("DUMDUM_WRITE_FUZZ_SEEDS").is_some();
    let mut stale = Vec::new();
    let all = seeds();
    for (target, name, bytes) in &all {
        assert!(
            dir.join(target).is_dir(),
            "{target} has no seed directory: is it a fuzz target?"
        );
        let path = dir.join(target).join(name);
        if std::fs::read(&path).ok().as_ref() == Some(bytes) {
            continue;
        }
        if write {
            std::fs::write(&path, bytes).unwrap();
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "fuzz seeds missing or out of date (write them with \
         DUMDUM_WRITE_FUZZ_SEEDS=1 cargo test -p dumdum-protocol --test fuzz_seeds):\n{}",
        stale.join("\n")
    );
    // Every target gets golden or scenario seeds.
    for target in [
        "client_message_decode",
        "server_message_decode",
        "decoder_chunks",
        "client_handle_data",
        "server_handle_data",
        "session_content_parse",
    ] {
        assert!(all.iter().any(|(t, ..)| *t == target), "{target}");
    }
}

/// The scenario streams are what the reference scenario exchanges: the
/// seeds start where the targets expect them to.
#[test]
fn scenario_streams_decode_whole() {
    let (c2s, s2c) = scenario_streams();
    let mut d = dumdum_protocol::Decoder::<ClientMessage>::default();
    d.feed(&c2s);
    let mut n = 0;
    while let Some((_, _)) = d.next_message().unwrap() {
        n += 1;
    }
    assert_eq!((n, d.buffered()), (6, 0));
    let mut d = dumdum_protocol::Decoder::<ServerMessage>::default();
    d.feed(&s2c);
    let mut n = 0;
    while let Some((_, _)) = d.next_message().unwrap() {
        n += 1;
    }
    assert_eq!((n, d.buffered()), (6, 0));
}
