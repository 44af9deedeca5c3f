//! The embedded server through the bridge: chat, nicks, history, and the
//! Python reference client through `--embedded-listen`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bridge, Got, WAIT, WsClient, expect_notice, off_thread};
use dumdum_bridge::Config;
use dumdum_protocol::session::Notice;
use dumdum_protocol::{ChatMessage, ClientMessage, HistoryQuery, ServerMessage, Snowflake};
use dumdum_testkit::{PyPeer, TestCert, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bridge with its embedded server also on plain TCP at `listen`.
async fn listening_bridge(listen: std::net::SocketAddr) -> Bridge {
    Bridge::start(Config {
        embedded_listen: Some(listen),
        ..Config::default()
    })
    .await
}

/// Waits for the next history page on `c`, skipping other frames.
async fn expect_page(c: &mut WsClient, what: &str) -> Vec<ChatMessage> {
    let ServerMessage::ListMessages(page) = c
        .expect_frame_where(what, |m| matches!(m, ServerMessage::ListMessages(_)))
        .await
    else {
        unreachable!()
    };
    page
}

/// Fills `buf` from `tcp` (bounded by [`WAIT`]).
async fn read_exact_in_time(tcp: &mut TcpStream, buf: &mut [u8]) {
    tokio::time::timeout(WAIT, tcp.read_exact(buf))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn http_endpoints() {
    let bridge = Bridge::embedded().await;
    let (status, _, body) = common::http_get(bridge.addr, "/api/servers").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"name": "local", "tls": false, "default": true}])
    );
    let (status, _, body) = common::http_get(bridge.addr, "/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    // No web root here: `/` explains how to build the page.
    let (status, head, body) = common::http_get(bridge.addr, "/").await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("text/html"));
    assert!(body.contains("cargo xtask dist"), "{body}");
    // A session, then metrics show it.
    let mut c = bridge.session(None).await;
    c.login("metric").await;
    let (status, _, body) = common::http_get(bridge.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("dumdum_bridge_sessions_total"), "{body}");
    assert!(
        body.contains("dumdum_bridge_frames_total{direction=\"to_upstream\"}"),
        "{body}"
    );
}

#[tokio::test]
async fn static_web_root_is_served() {
    let dir = dumdum_testkit::TempDir::new("www");
    std::fs::write(dir.path().join("index.html"), "<p>the page</p>").unwrap();
    std::fs::write(dir.path().join("app.js"), "console.log(1)").unwrap();
    let bridge = Bridge::start(Config {
        www: dir.path().to_path_buf(),
        ..Config::default()
    })
    .await;
    let (status, _, body) = common::http_get(bridge.addr, "/").await;
    assert_eq!((status, body.as_str()), (200, "<p>the page</p>"));
    let (status, head, _) = common::http_get(bridge.addr, "/app.js").await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("javascript"), "{head}");
    let (status, _, _) = common::http_get(bridge.addr, "/../Cargo.toml").await;
    assert_ne!(status, 200);
    let (status, _, _) = common::http_get(bridge.addr, "/missing.js").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn chat_between_two_sessions() {
    let bridge = Bridge::embedded().await;
    let mut a = bridge.session(None).await;
    expect_notice(
        &mut a,
        "connected",
        |n| matches!(n, Notice::UpstreamConnected { server } if server == "local"),
    )
    .await;
    a.login("alice").await;
    let mut b = bridge.session(Some("local")).await;
    b.login("bob").await;

    a.say("general", "hello bob").await;
    let m = b.expect_message("hello bob").await;
    assert_eq!((m.nick.as_str(), m.channel.as_str()), ("alice", "general"));
    // The sender sees its own echo (that is how it learns the id).
    let echo = a.expect_message("hello bob").await;
    assert_eq!(echo.id, m.id);
    b.say("random", "hi alice").await;
    let m2 = a.expect_message("hi alice").await;
    assert!(m2.id > m.id, "snowflakes grow");
    assert!(m2.id.unix_millis() > 1_600_000_000_000);

    // Unknown channel: dropped silently.
    a.say("nowhere", "lost").await;
    a.send(&ClientMessage::ListChannels).await;
    let ch = a
        .expect_frame_where("channel list", |m| {
            matches!(m, ServerMessage::ListChannels(_))
        })
        .await;
    assert_eq!(
        ch,
        ServerMessage::ListChannels(vec!["general".into(), "random".into()])
    );
}

#[tokio::test]
async fn nicks_are_unique_and_freed() {
    let bridge = Bridge::embedded().await;
    let mut a = bridge.session(None).await;
    a.login("zoe").await;
    let mut b = bridge.session(None).await;
    assert!(matches!(
        b.hello().await,
        ServerMessage::Hello { tls: false }
    ));
    assert_eq!(
        b.authenticate("zoe").await,
        ServerMessage::AcknowledgeAuthentication { success: false }
    );
    // Empty nick: refused in words (ACK 0) by the embedded server.
    assert_eq!(
        b.authenticate("").await,
        ServerMessage::AcknowledgeAuthentication { success: false }
    );
    assert_eq!(
        b.authenticate("zoe2").await,
        ServerMessage::AcknowledgeAuthentication { success: true }
    );
    // a leaves with 1000: the session ends at once and the nick is free.
    a.close(1000).await;
    let mut c = bridge.session(None).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    c.hello().await;
    loop {
        if c.authenticate("zoe").await
            == (ServerMessage::AcknowledgeAuthentication { success: true })
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "nick freed in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn hello_and_authenticate_back_to_back() {
    let bridge = Bridge::embedded().await;
    let mut a = bridge.session(None).await;
    a.login_eager("eager").await;
    a.say("general", "made it").await;
    a.expect_message("made it").await;
}

#[tokio::test]
async fn history_pages_back_through_more_than_100() {
    let bridge = Bridge::embedded().await;
    let mut a = bridge.session(None).await;
    a.login("writer").await;
    const N: usize = 230;
    for i in 0..N {
        a.say("general", &format!("m{i}")).await;
    }
    let last = a.expect_message(&format!("m{}", N - 1)).await;
    // Page back from the newest with the reference's inverted range.
    let mut seen: Vec<(Snowflake, String)> = Vec::new();
    let mut query = Some(HistoryQuery::Newest);
    let mut pages = 0;
    while let Some(q) = query {
        a.send(&q.request("general")).await;
        let page = expect_page(&mut a, "history page").await;
        assert!(page.len() <= 100);
        assert!(page.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
        let mut older: Vec<_> = page.iter().map(|m| (m.id, m.content.clone())).collect();
        older.extend(seen);
        seen = older;
        query = q.next(&page);
        pages += 1;
        assert!(pages < 10);
    }
    assert_eq!(pages, 3, "100 + 100 + 30");
    let contents: Vec<String> = seen.iter().map(|(_, c)| c.clone()).collect();
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(contents, expected);
    assert_eq!(seen.last().map(|s| s.0), Some(last.id));

    // The raw inclusive semantics: before = X keeps >= X, after = X keeps <= X.
    let mid = seen[150].0;
    a.send(&ClientMessage::ListMessages {
        channel: "general".into(),
        before: mid.0,
        after: 0,
    })
    .await;
    let page = expect_page(&mut a, "range page").await;
    assert_eq!(page.len(), N - 150);
    assert_eq!(page[0].id, mid);
    a.send(&ClientMessage::ListMessages {
        channel: "general".into(),
        before: 0,
        after: mid.0,
    })
    .await;
    let page = expect_page(&mut a, "range page").await;
    assert_eq!(page.len(), 100);
    assert_eq!(page.last().map(|m| m.id), Some(mid));
}

#[tokio::test]
async fn keeps_the_last_1000_per_channel() {
    let bridge = Bridge::start(Config {
        embedded_max_messages: 1000,
        ..Config::default()
    })
    .await;
    let mut a = bridge.session(None).await;
    a.login("flood").await;
    for i in 0..1010 {
        a.say("random", &format!("r{i}")).await;
        if i % 50 == 49 {
            a.expect_message(&format!("r{i}")).await;
        }
    }
    a.expect_message("r1009").await;
    // The oldest kept is r10: page back to it.
    let mut query = Some(HistoryQuery::Newest);
    let mut oldest = None;
    let mut total = 0;
    while let Some(q) = query {
        a.send(&q.request("random")).await;
        let page = expect_page(&mut a, "history page").await;
        total += page.len();
        if let Some(m) = page.first() {
            oldest = Some(m.content.clone());
        }
        query = q.next(&page);
    }
    assert_eq!(total, 1000);
    assert_eq!(oldest.as_deref(), Some("r10"));
}

#[tokio::test]
async fn python_reference_client_through_embedded_listen() {
    let port = free_port();
    let bridge = listening_bridge(([127, 0, 0, 1], port).into()).await;
    let mut ws = bridge.session(None).await;
    ws.login("webuser").await;
    let mut py = off_thread(move || {
        let mut py = PyPeer::connect(([127, 0, 0, 1], port).into(), "pyuser", None);
        assert!(py.expect_auth(), "python peer authenticated");
        py
    })
    .await;
    ws.say("general", "hello python").await;
    let py = off_thread(move || {
        let m = py.expect_message("hello python");
        assert_eq!(m["nick"], "webuser");
        py.send("general", "hello browser");
        py
    })
    .await;
    let m = ws.expect_message("hello browser").await;
    assert_eq!(m.nick, "pyuser");
    drop(py);
}

#[tokio::test]
async fn python_reference_client_through_embedded_listen_with_tls() {
    let port = free_port();
    let cert = TestCert::localhost();
    let bridge = Bridge::start(Config {
        embedded_listen: Some(([127, 0, 0, 1], port).into()),
        tls_cert: Some(cert.cert_path.clone()),
        tls_key: Some(cert.key_path.clone()),
        ..Config::default()
    })
    .await;
    // The bridge itself now speaks HTTPS; its embedded upstream stays in-process.
    let ca = cert.cert_path.clone();
    let py = off_thread(move || {
        let mut py = PyPeer::connect(([127, 0, 0, 1], port).into(), "tlspy", Some(&ca));
        py.expect(WAIT, "hello", |v| v["ev"] == "hello" && v["tls"] == true);
        assert!(py.expect_auth(), "python peer authenticated over TLS");
        py.send("general", "secret hello");
        py.expect_message("secret hello");
        py
    })
    .await;
    drop(py);
    drop(bridge);
}

#[tokio::test]
async fn unknown_type_from_client_is_never_forwarded() {
    let bridge = Bridge::embedded().await;
    let mut a = bridge.session(None).await;
    a.login("strict").await;
    a.send_raw(&[0x09]).await;
    let (code, reason) = a.expect_close().await;
    assert_eq!(code, 1007, "{reason}");
    assert!(
        reason.contains("unknown client message type 0x09"),
        "{reason}"
    );
    match a.next_within(Duration::from_secs(2)).await {
        None | Some(Got::Ended) | Some(Got::Close(..)) => {}
        Some(other) => panic!("nothing after close, got {other:?}"),
    }
}

#[tokio::test]
async fn https_and_wss_with_the_bridge_certificate() {
    use std::sync::Arc;
    let cert = TestCert::localhost();
    let bridge = Bridge::start(Config {
        tls_cert: Some(cert.cert_path.clone()),
        tls_key: Some(cert.key_path.clone()),
        ..Config::default()
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            cert.cert_der.clone(),
        ))
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connect = || async {
        let tcp = TcpStream::connect(bridge.addr).await.unwrap();
        connector.connect(name.clone(), tcp).await.unwrap()
    };
    // HTTPS
    let mut s = connect().await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // WSS, with the https origin of the bridge itself allowed.
    let url = format!("wss://localhost:{}/ws", bridge.addr.port());
    let origin = format!("https://localhost:{}", bridge.addr.port());
    let mut c = common::WsClient::over(Box::new(connect().await), &url, Some(&origin))
        .await
        .unwrap();
    c.handshake(None).await;
    c.login("secure").await;
    c.say("general", "over wss").await;
    c.expect_message("over wss").await;
    // The plain-http origin is not the bridge's own any more.
    let bad = common::WsClient::over(
        Box::new(connect().await),
        &url,
        Some(&format!("http://localhost:{}", bridge.addr.port())),
    )
    .await;
    assert_eq!(bad.err(), Some(403));
}

/// The reference server's order rules, checked on the embedded server over
/// plain TCP (`--embedded-listen`), as the protocol crate's interop tests do
/// against the real one.
#[tokio::test]
async fn embedded_server_follows_the_reference_order_rules() {
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let _bridge = listening_bridge(addr).await;
    let hello_auth = {
        let mut b = vec![0x00, 0x02];
        b.extend(
            ClientMessage::Authenticate { nick: "x".into() }
                .to_bytes()
                .unwrap(),
        );
        b
    };
    let send_first = ClientMessage::SendMessage {
        channel: "general".into(),
        content: "hi".into(),
    }
    .to_bytes()
    .unwrap();
    for (what, bytes) in [
        ("HELLO+AUTHENTICATE in one read", hello_auth),
        ("SEND_MESSAGE before HELLO", send_first),
        ("unknown type", vec![0x09]),
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&bytes).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(WAIT, tcp.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{what}: not closed"))
            .ok();
        assert!(
            got.is_empty(),
            "{what}: closed without a reply, got {got:?}"
        );
    }
    // INCOMPATIBLE_VERSION keeps the connection; HELLO again works.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&[0x00, 0x01]).await.unwrap();
    let mut b = [0u8; 2];
    read_exact_in_time(&mut tcp, &mut b).await;
    assert_eq!(b, [0x01, 0x02], "INCOMPATIBLE_VERSION(2)");
    tcp.write_all(&[0x00, 0x02]).await.unwrap();
    read_exact_in_time(&mut tcp, &mut b).await;
    assert_eq!(b, [0x00, 0x00], "HELLO(0)");
    tcp.write_all(
        &ClientMessage::Authenticate {
            nick: "ünï 👀".into(),
        }
        .to_bytes()
        .unwrap(),
    )
    .await
    .unwrap();
    read_exact_in_time(&mut tcp, &mut b).await;
    assert_eq!(b, [0x02, 0x01], "ACK(1)");
    // A chat message before the ACK would have been refused; after it, the
    // echo carries a snowflake of the present.
    let text = "hello ✓ — ünïcödé 👀";
    tcp.write_all(
        &ClientMessage::SendMessage {
            channel: "general".into(),
            content: text.into(),
        }
        .to_bytes()
        .unwrap(),
    )
    .await
    .unwrap();
    let mut d = dumdum_protocol::Decoder::<ServerMessage>::default();
    let mut buf = [0u8; 4096];
    let echo = loop {
        if let Some((m, _)) = d.next_message().unwrap() {
            break m;
        }
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        d.feed(&buf[..n]);
    };
    let ServerMessage::SendMessage(m) = echo else {
        panic!("{echo:?}")
    };
    assert_eq!((m.content.as_str(), m.nick.as_str()), (text, "ünï 👀"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(m.id.unix_millis().abs_diff(now) < 60_000);
}

#[tokio::test]
async fn incompatible_version_is_answered_before_the_hello_that_follows_it() {
    let port = dumdum_testkit::free_port();
    let listen: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let _bridge = listening_bridge(listen).await;
    let mut tcp = TcpStream::connect(listen).await.unwrap();
    // HELLO(1) then HELLO(2) in one write: the answers in the same order.
    tcp.write_all(&[0, 1, 0, 2]).await.unwrap();
    let mut got = [0u8; 4];
    read_exact_in_time(&mut tcp, &mut got).await;
    assert_eq!(got, [1, 2, 0, 0], "INCOMPATIBLE_VERSION(2), then HELLO(0)");
}

#[tokio::test]
async fn embedded_listen_caps_connections_per_address_and_times_out_silent_ones() {
    let port = free_port();
    let listen: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let _bridge = Bridge::start(Config {
        embedded_listen: Some(listen),
        max_sessions_per_ip: 1,
        handshake_timeout: Duration::from_secs(1),
        ..Config::default()
    })
    .await;
    // Bridge::start's readiness probe held a slot for a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut first = TcpStream::connect(listen).await.unwrap();
    first.write_all(&[0, 2]).await.unwrap();
    let mut hello = [0u8; 2];
    read_exact_in_time(&mut first, &mut hello).await;
    assert_eq!(hello, [0, 0]);
    // A second connection from the same address is closed at once.
    let mut second = TcpStream::connect(listen).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(WAIT, second.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    // The first one said HELLO in time and stays open past the timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first
        .write_all(
            &ClientMessage::Authenticate { nick: "cap".into() }
                .to_bytes()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut ack = [0u8; 2];
    read_exact_in_time(&mut first, &mut ack).await;
    assert_eq!(ack, [2, 1]);
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A connection that never says HELLO is closed after the timeout.
    let mut silent = TcpStream::connect(listen).await.unwrap();
    let started = tokio::time::Instant::now();
    let n = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}
