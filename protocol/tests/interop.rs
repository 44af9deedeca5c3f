//! Live interoperability: our sans-IO `Client`, driven over a real tokio
//! `TcpStream`, against the real `dumdum-server` 0.5.0 on 127.0.0.1 (started
//! per test on a free port, killed at the end), plain and with the in-band
//! TLS upgrade done by tokio-rustls. The reference client (`PyPeer`) takes
//! part where a second user is needed. Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dumdum_protocol::{
    ChatMessage, Client, ClientConfig, ClientMessage, ClientState, Error, Event, HistoryQuery,
    PAGE_SIZE, Snowflake, TlsMode,
};
use dumdum_testkit::{DumdumServer, PyPeer, TestCert};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The bound on any single wait.
const WAIT: Duration = Duration::from_secs(15);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to do TLS when the server announces it.
#[derive(Clone)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    name: &'static str,
}

impl Tls {
    /// Trusting exactly `roots` (DER certificates).
    fn trusting(roots: &[&[u8]], name: &'static str) -> Self {
        let mut store = rustls::RootCertStore::empty();
        for der in roots {
            store.add(CertificateDer::from(der.to_vec())).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
        Tls {
            config: Arc::new(config),
            name,
        }
    }
}

/// Our `Client` on a socket.
struct Conn {
    io: Box<dyn Io>,
    client: Client,
    buf: Vec<u8>,
}

/// A connection error, in words.
#[derive(Debug)]
enum ConnectError {
    Protocol(Error),
    Tls(std::io::Error),
    Io(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Protocol(e) => write!(f, "protocol: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS: {e}"),
            ConnectError::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

impl Conn {
    /// Connects, says HELLO, and does the TLS upgrade when the server
    /// announces it.
    async fn open(addr: SocketAddr, mode: TlsMode, tls: Option<Tls>) -> Result<Conn, ConnectError> {
        let tcp = timeout(WAIT, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Io("connect timed out".into()))?
            .map_err(|e| ConnectError::Io(e.to_string()))?;
        let mut conn = Conn {
            io: Box::new(tcp),
            client: Client::new(ClientConfig {
                tls: mode,
                ..ClientConfig::default()
            }),
            buf: vec![0; 16 * 1024],
        };
        conn.client.hello().map_err(ConnectError::Protocol)?;
        conn.flush().await;
        let announced = match conn.event().await {
            Ok(Event::Hello { tls }) => tls,
            Ok(other) => panic!("expected HELLO, got {other:?}"),
            Err(e) => return Err(ConnectError::Protocol(e)),
        };
        if announced {
            let tls = tls.expect("the server announced TLS but the test gave no TLS config");
            // No clear text may follow the server's HELLO: the client would
            // have failed already.
            assert_eq!(conn.client.state(), &ClientState::AwaitingTls);
            let Conn { io, client, buf } = conn;
            let connector = tokio_rustls::TlsConnector::from(tls.config);
            let name = ServerName::try_from(tls.name).unwrap().to_owned();
            let stream = timeout(WAIT, connector.connect(name, io))
                .await
                .map_err(|_| ConnectError::Io("TLS handshake timed out".into()))?
                .map_err(ConnectError::Tls)?;
            conn = Conn {
                io: Box::new(stream),
                client,
                buf,
            };
            conn.client.handle_tls_established().unwrap();
        }
        Ok(conn)
    }

    /// Writes everything the client queued.
    async fn flush(&mut self) {
        while let Some(bytes) = self.client.poll_transmit() {
            timeout(WAIT, self.io.write_all(&bytes))
                .await
                .expect("write timed out")
                .expect("write");
        }
        timeout(WAIT, self.io.flush())
            .await
            .expect("flush timed out")
            .expect("flush");
    }

    /// The next event, reading as needed; a protocol error is returned, a
    /// closed socket or a timeout panics.
    async fn event(&mut self) -> Result<Event, Error> {
        loop {
            if let Some(ev) = self.client.poll_event() {
                return Ok(ev);
            }
            let n = timeout(WAIT, self.io.read(&mut self.buf))
                .await
                .expect("no event from the server within the time limit")
                .expect("read");
            assert!(n > 0, "the server closed the connection");
            self.client.handle_data(&self.buf[..n])?;
        }
    }

    /// The next event that `pick` accepts; others (broadcasts) are skipped.
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.event())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
                .unwrap_or_else(|e| panic!("protocol error while waiting for {what}: {e}"));
            if let Some(t) = pick(ev) {
                return t;
            }
        }
    }

    async fn authenticate(&mut self, nick: &str) -> bool {
        self.client.authenticate(nick).unwrap();
        self.flush().await;
        self.wait_for("the authentication answer", |ev| match ev {
            Event::Authenticated { .. } => Some(true),
            Event::NickTaken { .. } => Some(false),
            _ => None,
        })
        .await
    }

    async fn message(&mut self, content: &str) -> ChatMessage {
        self.wait_for(&format!("message {content:?}"), |ev| match ev {
            Event::Message(m) if m.content == content => Some(m),
            _ => None,
        })
        .await
    }

    async fn history(&mut self, channel: &str, query: HistoryQuery) -> Vec<ChatMessage> {
        self.client.list_messages(channel, query).unwrap();
        self.flush().await;
        self.wait_for("a history page", |ev| match ev {
            Event::History {
                channel: c,
                query: q,
                messages,
            } => {
                assert_eq!(c, channel);
                assert_eq!(q, Some(query));
                Some(messages)
            }
            _ => None,
        })
        .await
    }
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// HELLO, a taken nick then a free one on the same connection, the channel
/// list, a message out and broadcasts in both directions with the reference
/// client, and a re-HELLO after INCOMPATIBLE_VERSION.
#[tokio::test]
async fn plain_session_against_the_reference_server() {
    let server = DumdumServer::start_with(&["general", "random"], None);
    let mut carol = PyPeer::connect(server.addr(), "carol", None);
    assert!(carol.expect_auth(), "the reference client authenticates");

    let mut us = Conn::open(server.addr(), TlsMode::Optional, None)
        .await
        .unwrap();
    assert!(!us.client.is_tls());
    assert!(!us.authenticate("carol").await, "carol is taken: ACK(0)");
    assert_eq!(us.client.state(), &ClientState::Unauthenticated);
    assert!(
        us.authenticate("alice").await,
        "another nick, same connection"
    );
    assert_eq!(us.client.nick(), Some("alice"));

    us.client.list_channels().unwrap();
    us.flush().await;
    let channels = us
        .wait_for("the channel list", |ev| match ev {
            Event::Channels(c) => Some(c),
            _ => None,
        })
        .await;
    assert_eq!(channels, ["general", "random"]);

    let before = now_ms();
    let text = "hello from rust ✓ — ünïcödé 👀";
    us.client.send_message("general", text).unwrap();
    us.flush().await;
    let echo = us.message(text).await;
    assert_eq!(echo.nick, "alice");
    assert_eq!(echo.channel, "general");
    // The id encodes the creation time (1 s of slack for clock granularity).
    let created = echo.id.unix_millis();
    assert!(
        created + 1000 >= before && created <= now_ms() + 1000,
        "{created} vs {before}"
    );
    let seen = carol.expect_message(text);
    assert_eq!(seen["nick"], "alice");
    assert_eq!(seen["id"], echo.id.0, "everyone sees the same id");

    carol.send("random", "hello from python");
    let m = us.message("hello from python").await;
    assert_eq!((m.nick.as_str(), m.channel.as_str()), ("carol", "random"));

    // A message to a channel that does not exist is dropped silently; the
    // connection stays up.
    us.client.send_message("nowhere", "lost").unwrap();
    us.client.send_message("general", "after lost").unwrap();
    us.flush().await;
    let after = us.message("after lost").await;
    assert!(after.id > echo.id);

    // INCOMPATIBLE_VERSION, then HELLO again on the same connection.
    let tcp = timeout(WAIT, TcpStream::connect(server.addr()))
        .await
        .unwrap()
        .unwrap();
    let mut again = Conn {
        io: Box::new(tcp),
        client: Client::new(ClientConfig::default()),
        buf: vec![0; 4096],
    };
    again
        .client
        .send(ClientMessage::Hello { version: 1 })
        .unwrap();
    again.flush().await;
    assert_eq!(
        again.event().await.unwrap(),
        Event::IncompatibleVersion { required: 2 }
    );
    again.client.hello().unwrap();
    again.flush().await;
    assert_eq!(again.event().await.unwrap(), Event::Hello { tls: false });
    assert!(again.authenticate("dave").await);
}

/// 250 messages, then paging back from the newest in pages of at most 100
/// with `HistoryQuery::Newest` and `next`: every message exactly once, in
/// order. Then catching up after a known id with `NewerThan`.
#[tokio::test]
async fn history_paging_through_more_than_a_page() {
    const N: usize = 250;
    let server = DumdumServer::start_with(&["general"], None);
    let mut us = Conn::open(server.addr(), TlsMode::Optional, None)
        .await
        .unwrap();
    assert!(us.authenticate("pager").await);

    for i in 0..N {
        us.client.send_message("general", &format!("m{i}")).unwrap();
    }
    us.flush().await;
    // The echoes: the server stored each before broadcasting it.
    let mut posted = Vec::with_capacity(N);
    while posted.len() < N {
        let m = us
            .wait_for("the echoes", |ev| match ev {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .await;
        posted.push(m);
    }
    let contents: Vec<String> = posted.iter().map(|m| m.content.clone()).collect();
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(contents, expected, "broadcast in posting order");
    assert!(
        posted.windows(2).all(|w| w[0].id < w[1].id),
        "ids strictly increase"
    );

    // Paging back.
    let mut query = Some(HistoryQuery::Newest);
    let mut pages = Vec::new();
    while let Some(q) = query {
        let page = us.history("general", q).await;
        assert!(page.len() <= PAGE_SIZE);
        assert!(
            page.windows(2).all(|w| w[0].id < w[1].id),
            "a page is oldest first"
        );
        query = q.next(&page);
        pages.push(page);
        assert!(pages.len() <= 5, "paging does not end");
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let mut all: Vec<ChatMessage> = Vec::new();
    for page in pages.into_iter().rev() {
        all.extend(page);
    }
    assert_eq!(all, posted, "no gaps, no duplicates");

    // Catching up after message 99: NewerThan gives the newest page, and
    // `next` fills the gap below it.
    let known = posted[99].id;
    let mut query = Some(HistoryQuery::NewerThan(known));
    let mut caught: Vec<ChatMessage> = Vec::new();
    let mut rounds = 0;
    while let Some(q) = query {
        let page = us.history("general", q).await;
        query = q.next(&page);
        caught.extend(page);
        rounds += 1;
        assert!(rounds <= 5);
    }
    caught.sort_by_key(|m| m.id);
    assert_eq!(caught, posted[100..], "everything after the known id, once");

    // Nothing older than the first message, nothing newer than the last.
    assert!(
        us.history("general", HistoryQuery::OlderThan(posted[0].id))
            .await
            .is_empty()
    );
    assert!(
        us.history("general", HistoryQuery::NewerThan(posted[N - 1].id))
            .await
            .is_empty()
    );
    // The reference client agrees on the newest page.
    let mut peer = PyPeer::connect(server.addr(), "peer", None);
    assert!(peer.expect_auth());
    peer.list_messages("general", 0, 0);
    let page = peer.expect(WAIT, "a page", |v| v["ev"] == "messages");
    let ids: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    let ours: Vec<u64> = posted[N - 100..].iter().map(|m| m.id.0).collect();
    assert_eq!(ids, ours);
}

/// The same session over TLS: the server's certificate (made by the test)
/// is trusted through a RootCertStore; a reference client sees our message.
#[tokio::test]
async fn tls_session_with_a_trusted_certificate() {
    let cert = TestCert::localhost();
    let server = DumdumServer::start_with(&["general"], Some(&cert));
    let tls = Tls::trusting(&[&cert.cert_der], "localhost");
    let mut us = Conn::open(server.addr(), TlsMode::Required, Some(tls))
        .await
        .unwrap();
    assert!(us.client.is_tls());
    let mut peer = PyPeer::connect(server.addr(), "tls-peer", Some(&cert.cert_path));
    assert!(peer.expect_auth());
    assert!(!us.authenticate("tls-peer").await, "taken over TLS too");
    assert!(us.authenticate("secure").await);
    assert_eq!(
        us.client.state(),
        &ClientState::Ready {
            nick: "secure".into(),
            tls: true
        }
    );
    us.client.send_message("general", "über TLS 🔒").unwrap();
    us.flush().await;
    let echo = us.message("über TLS 🔒").await;
    assert_eq!(peer.expect_message("über TLS 🔒")["id"], echo.id.0);
    peer.send("general", "back over TLS");
    assert_eq!(us.message("back over TLS").await.nick, "tls-peer");
    let page = us.history("general", HistoryQuery::Newest).await;
    assert_eq!(page.len(), 2);
    // By IP address too: the certificate names 127.0.0.1.
    let tls = Tls::trusting(&[&cert.cert_der], "127.0.0.1");
    let mut by_ip = Conn::open(server.addr(), TlsMode::Optional, Some(tls))
        .await
        .unwrap();
    assert!(by_ip.authenticate("by-ip").await);
}

fn tls_refusal(result: Result<Conn, ConnectError>) -> String {
    match result {
        Ok(_) => panic!("the TLS handshake must fail"),
        Err(ConnectError::Tls(e)) => e.to_string(),
        Err(other) => panic!("expected a TLS error, got {other}"),
    }
}

/// Not trusted, or trusted but for another name: the upgrade is refused and
/// the error names the certificate problem.
#[tokio::test]
async fn tls_refused_when_the_certificate_is_not_trusted() {
    let cert = TestCert::localhost();
    let other = TestCert::localhost();
    let server = DumdumServer::start_with(&["general"], Some(&cert));

    let untrusted = Tls::trusting(&[&other.cert_der], "localhost");
    let err = tls_refusal(Conn::open(server.addr(), TlsMode::Optional, Some(untrusted)).await);
    // Both certificates carry rcgen's default subject, so the other one is
    // taken for the issuer and its signature does not verify.
    assert!(
        err.contains("invalid peer certificate")
            && (err.contains("BadSignature") || err.contains("UnknownIssuer")),
        "the error names the problem: {err}"
    );

    let no_roots = Tls::trusting(&[], "localhost");
    let err = tls_refusal(Conn::open(server.addr(), TlsMode::Optional, Some(no_roots)).await);
    assert!(err.contains("UnknownIssuer"), "{err}");

    let wrong_name = Tls::trusting(&[&cert.cert_der], "chat.example.org");
    let err = tls_refusal(Conn::open(server.addr(), TlsMode::Optional, Some(wrong_name)).await);
    assert!(
        err.contains("invalid peer certificate")
            && err.contains("not valid for name \"chat.example.org\""),
        "the error names the problem: {err}"
    );

    // The server is still fine for a client that trusts it.
    let good = Tls::trusting(&[&cert.cert_der], "localhost");
    let mut us = Conn::open(server.addr(), TlsMode::Optional, Some(good))
        .await
        .unwrap();
    assert!(us.authenticate("after-refusals").await);
}

/// TLS policy mismatches are refused by our client with a typed error.
#[tokio::test]
async fn tls_mode_mismatches() {
    let plain = DumdumServer::start_with(&["general"], None);
    match Conn::open(plain.addr(), TlsMode::Required, None).await {
        Err(ConnectError::Protocol(Error::TlsRequired)) => {}
        Err(other) => panic!("expected Error::TlsRequired, got {other}"),
        Ok(_) => panic!("a plain server must be refused when TLS is required"),
    }
    let cert = TestCert::localhost();
    let secure = DumdumServer::start_with(&["general"], Some(&cert));
    match Conn::open(secure.addr(), TlsMode::Disabled, None).await {
        Err(ConnectError::Protocol(Error::TlsUnsupported)) => {}
        Err(other) => panic!("expected Error::TlsUnsupported, got {other}"),
        Ok(_) => panic!("a TLS server must be refused when TLS is disabled"),
    }
    // Transparent: TLS is someone else's job; the client does not wait.
    let tcp = timeout(WAIT, TcpStream::connect(secure.addr()))
        .await
        .unwrap()
        .unwrap();
    let mut c = Conn {
        io: Box::new(tcp),
        client: Client::new(ClientConfig {
            tls: TlsMode::Transparent,
            ..ClientConfig::default()
        }),
        buf: vec![0; 4096],
    };
    c.client.hello().unwrap();
    c.flush().await;
    assert_eq!(c.event().await.unwrap(), Event::Hello { tls: true });
    assert_eq!(c.client.state(), &ClientState::Unauthenticated);
}

/// The reference server's order rules, seen from the wire: HELLO and
/// AUTHENTICATE in one write, and SEND_MESSAGE before authenticating, close
/// the connection without a reply — which is what our `Server` does too.
#[tokio::test]
async fn reference_server_order_rules_match_our_server() {
    let server = DumdumServer::start_with(&["general"], None);
    let cases: [(&str, Vec<u8>); 2] = [
        ("HELLO+AUTHENTICATE in one read", {
            let mut b = vec![0x00, 0x02];
            b.extend(
                ClientMessage::Authenticate { nick: "x".into() }
                    .to_bytes()
                    .unwrap(),
            );
            b
        }),
        (
            "SEND_MESSAGE before HELLO",
            ClientMessage::SendMessage {
                channel: "general".into(),
                content: "hi".into(),
            }
            .to_bytes()
            .unwrap(),
        ),
    ];
    for (what, bytes) in cases {
        let mut tcp = timeout(WAIT, TcpStream::connect(server.addr()))
            .await
            .unwrap()
            .unwrap();
        tcp.write_all(&bytes).await.unwrap();
        let mut got = Vec::new();
        timeout(WAIT, tcp.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{what}: the server did not close the connection"))
            .ok();
        assert!(
            got.is_empty(),
            "{what}: the server closed without a reply, got {got:?}"
        );
        let mut ours = dumdum_protocol::Server::default();
        assert!(
            ours.handle_data(&bytes).is_err(),
            "{what}: our Server refuses it too"
        );
        assert_eq!(ours.poll_transmit(), None);
    }
    // A snowflake from the reference lies in the present.
    let mut us = Conn::open(server.addr(), TlsMode::Optional, None)
        .await
        .unwrap();
    assert!(us.authenticate("late").await);
    us.client.send_message("general", "t").unwrap();
    us.flush().await;
    let id: Snowflake = us.message("t").await.id;
    assert!(id.unix_millis().abs_diff(now_ms()) < 60_000);
}
