//! The scenarios of the reference project's own `tests/test_protocol.py`
//! (dum-dum-irc 0.5.0), re-expressed against our `Client`/`Server` pair
//! wired together in memory. Each test names the Python test it mirrors.
//!
//! Like the reference's `communicate`, bytes are moved by hand: what one side
//! queues is fed to the other's `handle_data`, and each side's events are
//! collected and checked at every step.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dumdum_protocol::{
    ChatMessage, Client, ClientConfig, ClientMessage, ClientState, DecodeError, Direction, Error,
    Event, HistoryQuery, PROTOCOL_VERSION, Server, ServerEvent, ServerMessage, ServerState,
    Snowflake,
};

const NICK: &str = "thegamecracks";

/// Everything `client` queued, delivered to `server` in one read.
fn client_to_server(client: &mut Client, server: &mut Server) -> Result<Vec<ServerEvent>, Error> {
    let mut data = Vec::new();
    while let Some(t) = client.poll_transmit() {
        data.extend(t);
    }
    server.handle_data(&data)?;
    Ok(drain_server(server))
}

/// Everything `server` queued, delivered to `client` in one read.
fn server_to_client(server: &mut Server, client: &mut Client) -> Result<Vec<Event>, Error> {
    let mut data = Vec::new();
    while let Some(t) = server.poll_transmit() {
        data.extend(t);
    }
    client.handle_data(&data)?;
    Ok(drain_client(client))
}

/// Delivers what `client` queued and checks the server's events; the client
/// itself reports nothing.
fn expect_at_server(client: &mut Client, server: &mut Server, events: &[ServerEvent]) {
    assert_eq!(client_to_server(client, server).unwrap(), events);
    assert_eq!(drain_client(client), []);
}

/// Delivers what `server` queued and checks the client's events; the server
/// itself reports nothing.
fn expect_at_client(server: &mut Server, client: &mut Client, events: &[Event]) {
    assert_eq!(server_to_client(server, client).unwrap(), events);
    assert_eq!(drain_server(server), []);
}

/// A client and a server that have exchanged nothing yet.
fn fresh_pair() -> (Client, Server) {
    (Client::new(ClientConfig::default()), Server::default())
}

fn drain_server(server: &mut Server) -> Vec<ServerEvent> {
    std::iter::from_fn(|| server.poll_event()).collect()
}

fn drain_client(client: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

fn nothing_queued(client: &mut Client, server: &mut Server) {
    assert_eq!(
        client.poll_transmit(),
        None,
        "client has nothing more to send"
    );
    assert_eq!(
        server.poll_transmit(),
        None,
        "server has nothing more to send"
    );
}

/// A pair that went through hello and authentication.
fn ready_pair() -> (Client, Server) {
    let (mut client, mut server) = fresh_pair();
    client.hello().unwrap();
    client_to_server(&mut client, &mut server).unwrap();
    server.accept_hello(false).unwrap();
    server_to_client(&mut server, &mut client).unwrap();
    client.authenticate(NICK).unwrap();
    client_to_server(&mut client, &mut server).unwrap();
    server.authenticate(true).unwrap();
    server_to_client(&mut server, &mut client).unwrap();
    assert!(matches!(client.state(), ClientState::Ready { .. }));
    assert_eq!(server.nick(), Some(NICK));
    (client, server)
}

fn is_invalid_state(r: &Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(r, Err(Error::InvalidState(_)))
}

/// `test_protocol_version_matches`
#[test]
fn protocol_version_matches() {
    let bytes = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
    }
    .to_bytes()
    .unwrap();
    let mut client = Client::new(ClientConfig::default());
    client.hello().unwrap();
    assert_eq!(client.poll_transmit().unwrap(), bytes);
    assert_eq!(PROTOCOL_VERSION, 2);
}

/// `test_authenticate`
#[test]
fn authenticate() {
    let (mut client, mut server) = fresh_pair();

    client.hello().unwrap();
    expect_at_server(&mut client, &mut server, &[ServerEvent::Hello]);

    server.accept_hello(false).unwrap();
    expect_at_client(&mut server, &mut client, &[Event::Hello { tls: false }]);

    client.authenticate(NICK).unwrap();
    expect_at_server(
        &mut client,
        &mut server,
        &[ServerEvent::Authenticate { nick: NICK.into() }],
    );

    server.authenticate(true).unwrap();
    expect_at_client(
        &mut server,
        &mut client,
        &[Event::Authenticated { nick: NICK.into() }],
    );
    assert_eq!(client.nick(), Some(NICK));
    assert_eq!(server.state(), &ServerState::Ready { nick: NICK.into() });
    nothing_queued(&mut client, &mut server);
}

/// `test_hello_incompatible_version`: the server answers INCOMPATIBLE_VERSION
/// on its own, and both sides report it.
fn incompatible_hello(client: &mut Client, server: &mut Server) {
    client
        .send(ClientMessage::Hello {
            version: PROTOCOL_VERSION - 1,
        })
        .unwrap();
    assert_eq!(
        client_to_server(client, server).unwrap(),
        [ServerEvent::IncompatibleVersion {
            version: PROTOCOL_VERSION - 1
        }]
    );
    assert_eq!(
        server_to_client(server, client).unwrap(),
        [Event::IncompatibleVersion {
            required: PROTOCOL_VERSION
        }]
    );
    assert_eq!(client.state(), &ClientState::Start);
    assert_eq!(server.state(), &ServerState::AwaitingHello);
}

/// `test_hello_incompatible_version`
#[test]
fn hello_incompatible_version() {
    let (mut client, mut server) = fresh_pair();
    incompatible_hello(&mut client, &mut server);
    nothing_queued(&mut client, &mut server);
}

/// `test_hello_after_incompatible_version`
#[test]
fn hello_after_incompatible_version() {
    let (mut client, mut server) = fresh_pair();
    incompatible_hello(&mut client, &mut server);

    client.hello().unwrap();
    expect_at_server(&mut client, &mut server, &[ServerEvent::Hello]);
    // And the session goes on normally.
    server.accept_hello(false).unwrap();
    assert_eq!(
        server_to_client(&mut server, &mut client).unwrap(),
        [Event::Hello { tls: false }]
    );
    assert_eq!(client.state(), &ClientState::Unauthenticated);
}

/// `test_send_message`
#[test]
fn send_message() {
    let (mut client, mut server) = ready_pair();
    client.send_message("general", "Hello world!").unwrap();
    expect_at_server(
        &mut client,
        &mut server,
        &[ServerEvent::SendMessage {
            channel: "general".into(),
            content: "Hello world!".into(),
        }],
    );
    nothing_queued(&mut client, &mut server);
}

/// `test_list_channels`
#[test]
fn list_channels() {
    let channels: Vec<String> = [
        "announcements",
        "general",
        "memes",
        "coding-lounge",
        "fishing-trips",
    ]
    .map(String::from)
    .to_vec();
    let (mut client, mut server) = ready_pair();

    client.list_channels().unwrap();
    expect_at_server(&mut client, &mut server, &[ServerEvent::ListChannels]);

    server.list_channels(&channels).unwrap();
    expect_at_client(&mut server, &mut client, &[Event::Channels(channels)]);
}

/// `test_list_messages`: raw before = 1, after = 2, and a 100-message reply.
#[test]
fn list_messages() {
    let (mut client, mut server) = ready_pair();

    client
        .send(ClientMessage::ListMessages {
            channel: "general".into(),
            before: 1,
            after: 2,
        })
        .unwrap();
    expect_at_server(
        &mut client,
        &mut server,
        &[ServerEvent::ListMessages {
            channel: "general".into(),
            before: 1,
            after: 2,
        }],
    );

    let messages: Vec<ChatMessage> = (0..100)
        .map(|i| ChatMessage {
            id: Snowflake(i),
            channel: "general".into(),
            nick: NICK.into(),
            content: "Hello world!".into(),
        })
        .collect();
    server.list_messages(&messages).unwrap();
    expect_at_client(
        &mut server,
        &mut client,
        &[Event::History {
            channel: "general".into(),
            query: None,
            messages: messages.clone(),
        }],
    );

    // The same through the paging helper: the reply carries its query.
    client
        .list_messages("general", HistoryQuery::OlderThan(Snowflake(1000)))
        .unwrap();
    assert_eq!(
        client_to_server(&mut client, &mut server).unwrap(),
        [ServerEvent::ListMessages {
            channel: "general".into(),
            before: 0,
            after: 999
        }]
    );
    server.list_messages(&messages).unwrap();
    let events = server_to_client(&mut server, &mut client).unwrap();
    assert_eq!(
        events,
        [Event::History {
            channel: "general".into(),
            query: Some(HistoryQuery::OlderThan(Snowflake(1000))),
            messages: messages.clone()
        }]
    );
    assert_eq!(
        HistoryQuery::OlderThan(Snowflake(1000)).next(&messages),
        Some(HistoryQuery::OlderThan(Snowflake(0)))
    );
}

/// `test_unauthenticated_send_message`
#[test]
fn unauthenticated_send_message() {
    let (mut client, mut server) = fresh_pair();
    // The client refuses to send it...
    assert!(is_invalid_state(
        &client.send_message("general", "Hello world!")
    ));
    assert_eq!(client.poll_transmit(), None);
    // ...and the server refuses it when it comes anyway (the reference test
    // forces the client's state; we write the bytes).
    let data = ClientMessage::SendMessage {
        channel: "general".into(),
        content: "Hello world!".into(),
    }
    .to_bytes()
    .unwrap();
    assert!(is_invalid_state(&server.handle_data(&data)));
    assert_eq!(server.state(), &ServerState::Failed);
    assert_eq!(drain_server(&mut server), []);
    assert_eq!(server.poll_transmit(), None, "closed without a reply");

    // Also after HELLO but before authentication.
    let mut server = Server::default();
    server.handle_data(&[0x00, PROTOCOL_VERSION]).unwrap();
    server.accept_hello(false).unwrap();
    assert!(is_invalid_state(&server.handle_data(&data)));
}

/// `test_unauthenticated_server_send_message`
#[test]
fn unauthenticated_server_send_message() {
    let message = ChatMessage {
        id: Snowflake(0),
        channel: "general".into(),
        nick: NICK.into(),
        content: "Hello world!".into(),
    };
    let (mut client, mut server) = fresh_pair();
    assert!(is_invalid_state(&server.send_message(&message)));
    assert_eq!(server.poll_transmit(), None);

    let data = ServerMessage::SendMessage(message).to_bytes().unwrap();
    assert!(is_invalid_state(&client.handle_data(&data)));
    assert_eq!(client.state(), &ClientState::Failed);
    assert_eq!(client.handle_data(&[]), Err(Error::Closed));
}

/// `test_invalid_message_type`
#[test]
fn invalid_message_type() {
    let (mut client, mut server) = fresh_pair();
    assert_eq!(
        client.handle_data(b"\xff"),
        Err(Error::Malformed {
            direction: Direction::ServerToClient,
            source: DecodeError::UnknownType {
                direction: Direction::ServerToClient,
                type_byte: 0xff
            }
        })
    );
    assert_eq!(
        server.handle_data(b"\xff"),
        Err(Error::Malformed {
            direction: Direction::ClientToServer,
            source: DecodeError::UnknownType {
                direction: Direction::ClientToServer,
                type_byte: 0xff
            }
        })
    );
    assert_eq!(client.state(), &ClientState::Failed);
    assert_eq!(server.state(), &ServerState::Failed);
}

/// `test_unicode_decode_error`: a channel name of U+1F440 (4 bytes) cut
/// after its first byte.
#[test]
fn truncated_utf8() {
    let (mut client, mut server) = ready_pair();
    // LIST_CHANNELS, u16 length 2, channel of 1 byte: 0xf0.
    let err = client.handle_data(b"\x04\x00\x02\x01\xf0").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Malformed {
                source: DecodeError::InvalidUtf8 { offset: 4, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    // SEND_MESSAGE, channel of 1 byte: 0xf0 (the content not even sent).
    let err = server.handle_data(b"\x03\x01\xf0").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Malformed {
                source: DecodeError::InvalidUtf8 { offset: 2, .. },
                ..
            }
        ),
        "{err:?}"
    );
}

/// `test_buffer_overflow_prevention`: the reference feeds `b"Hello world!\n"`
/// (13 bytes) to a side with a 12-byte buffer.
///
/// The reference refuses any read that would grow its buffer past the limit,
/// before looking at the bytes. Ours bounds the size of one message and looks
/// at the bytes first, so those exact bytes are fatal as malformed (`'H'` is
/// no message type); a well-formed message over the limit, whole or in
/// pieces, is the buffer overflow.
#[test]
fn buffer_overflow() {
    let data = b"Hello world!\n";
    let limit = data.len() - 1;
    let small_client = || {
        Client::new(ClientConfig {
            buffer_limit: limit,
            ..ClientConfig::default()
        })
    };

    // The reference's bytes: fatal on both sides.
    let mut client = small_client();
    assert!(matches!(
        client.handle_data(data),
        Err(Error::Malformed { .. })
    ));
    let mut server = Server::new(limit);
    assert!(matches!(
        server.handle_data(data),
        Err(Error::Malformed { .. })
    ));

    // A 13-byte SEND_MESSAGE to a server with a 12-byte buffer: whole, and
    // one byte at a time.
    let post = ClientMessage::SendMessage {
        channel: "general".into(),
        content: "hi".into(),
    }
    .to_bytes()
    .unwrap();
    assert_eq!(post.len(), 13);
    let mut server = Server::new(limit);
    server.handle_data(&[0x00, PROTOCOL_VERSION]).unwrap();
    server.accept_hello(false).unwrap();
    server.handle_data(&[0x02, 0x01, b'n']).unwrap();
    server.authenticate(true).unwrap();
    assert_eq!(
        server.handle_data(&post),
        Err(Error::BufferOverflow {
            limit,
            buffered: 13
        })
    );
    let mut server = Server::new(limit);
    let mut result = Ok(());
    for b in [0x00, PROTOCOL_VERSION].iter().chain(&post) {
        result = server.handle_data(std::slice::from_ref(b));
        if result.is_err() {
            break;
        }
    }
    // The HELLO fit; SEND_MESSAGE overflowed at its 13th byte, before its
    // state was judged.
    assert!(
        matches!(result, Err(Error::BufferOverflow { limit: 12, .. })),
        "{result:?}"
    );

    // A server's LIST_CHANNELS over a 12-byte client buffer.
    let mut client = small_client();
    client.hello().unwrap();
    client.handle_data(&[0x00, 0x00]).unwrap();
    client.authenticate(NICK).unwrap();
    client.handle_data(&[0x02, 0x01]).unwrap();
    let list = ServerMessage::ListChannels(vec!["general".into(), "random".into()])
        .to_bytes()
        .unwrap();
    let err = client.handle_data(&list).unwrap_err();
    assert!(
        matches!(err, Error::BufferOverflow { limit: 12, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("exceeds the limit of 12 bytes"),
        "{err}"
    );
}

/// `test_double_hello`
#[test]
fn double_hello() {
    let (mut client, mut server) = fresh_pair();

    client.hello().unwrap();
    let hello = client.poll_transmit().unwrap();
    server.handle_data(&hello).unwrap();
    assert_eq!(drain_server(&mut server), [ServerEvent::Hello]);
    // Our client will not say it twice; the server refuses it if it comes.
    assert!(is_invalid_state(&client.hello()));
    assert!(is_invalid_state(&server.handle_data(&hello)));
    assert_eq!(server.state(), &ServerState::Failed);

    let mut server = Server::default();
    server.handle_data(&hello).unwrap();
    server.accept_hello(false).unwrap();
    let server_hello = server.poll_transmit().unwrap();
    client.handle_data(&server_hello).unwrap();
    assert_eq!(drain_client(&mut client), [Event::Hello { tls: false }]);
    assert!(is_invalid_state(&server.accept_hello(false)));
    assert!(is_invalid_state(&client.handle_data(&server_hello)));
    assert_eq!(client.state(), &ClientState::Failed);
}

/// `test_server_hello_before_client_hello`
#[test]
fn server_hello_before_client_hello() {
    let (mut client, mut server) = fresh_pair();
    assert!(is_invalid_state(&server.accept_hello(false)));
    assert_eq!(server.poll_transmit(), None);

    let data = ServerMessage::Hello { tls: false }.to_bytes().unwrap();
    assert!(is_invalid_state(&client.handle_data(&data)));
    assert_eq!(client.state(), &ClientState::Failed);
}

/// `test_authenticate_before_server_hello`: the 0.5.0 security fix. HELLO
/// and AUTHENTICATE that reach the server in one read are refused.
#[test]
fn authenticate_before_server_hello() {
    let (mut client, mut server) = fresh_pair();

    client.hello().unwrap();
    assert!(is_invalid_state(&client.authenticate(NICK)));
    let mut data = client.poll_transmit().unwrap();
    assert_eq!(client.poll_transmit(), None);

    data.extend(
        ClientMessage::Authenticate { nick: NICK.into() }
            .to_bytes()
            .unwrap(),
    );
    let err = server.handle_data(&data).unwrap_err();
    assert!(is_invalid_state(&Err::<(), _>(err.clone())));
    assert!(
        err.to_string().contains("AUTHENTICATE"),
        "the error names the message: {err}"
    );
    assert_eq!(server.state(), &ServerState::Failed);
    assert_eq!(server.poll_transmit(), None, "closed without a reply");
}

/// Our TLS rule on top of the reference: a client that requires TLS refuses
/// HELLO(0), and AUTHENTICATE waits for the upgrade when TLS is announced.
#[test]
fn tls_order() {
    let mut client = Client::new(ClientConfig {
        tls: dumdum_protocol::TlsMode::Required,
        ..ClientConfig::default()
    });
    client.hello().unwrap();
    assert_eq!(client.handle_data(&[0x00, 0x00]), Err(Error::TlsRequired));

    let (mut client, mut server) = fresh_pair();
    client.hello().unwrap();
    client_to_server(&mut client, &mut server).unwrap();
    server.accept_hello(true).unwrap();
    assert_eq!(
        server_to_client(&mut server, &mut client).unwrap(),
        [Event::Hello { tls: true }]
    );
    assert!(is_invalid_state(&client.authenticate(NICK)));
    // The server refuses AUTHENTICATE before the upgrade too.
    let auth = ClientMessage::Authenticate { nick: NICK.into() }
        .to_bytes()
        .unwrap();
    let mut early = Server::default();
    early.handle_data(&[0x00, PROTOCOL_VERSION]).unwrap();
    early.accept_hello(true).unwrap();
    assert!(is_invalid_state(&early.handle_data(&auth)));

    client.handle_tls_established().unwrap();
    server.handle_tls_established().unwrap();
    client.authenticate(NICK).unwrap();
    assert_eq!(
        client_to_server(&mut client, &mut server).unwrap(),
        [ServerEvent::Authenticate { nick: NICK.into() }]
    );
    server.authenticate(true).unwrap();
    server_to_client(&mut server, &mut client).unwrap();
    assert!(client.is_tls());
    assert_eq!(
        client.state(),
        &ClientState::Ready {
            nick: NICK.into(),
            tls: true
        }
    );
}
