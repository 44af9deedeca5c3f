//! Bad input: each case gets its close code (or HTTP status) and a readable
//! reason, and the bridge still serves a second session afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bridge, WsClient};
use dumdum_bridge::{Config, UpstreamConfig};
use dumdum_protocol::ClientMessage;
use dumdum_protocol::session::{Content, Handshake};
use dumdum_testkit::free_port;

/// A second session on the same bridge works end to end.
async fn still_serves(bridge: &Bridge) {
    let mut c = bridge.session(None).await;
    c.login(&format!("after{}", rand_suffix())).await;
    c.say("general", "still alive").await;
    c.expect_message("still alive").await;
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn assert_closed(c: &mut WsClient, code: u16, reason_has: &str) {
    let (got, reason) = c.expect_close().await;
    assert_eq!(got, code, "close reason: {reason}");
    assert!(
        reason.contains(reason_has),
        "reason {reason:?} should mention {reason_has:?}"
    );
    assert!(reason.len() <= 123);
}

#[tokio::test]
async fn malformed_binary_frame_closes_1007() {
    let bridge = Bridge::embedded().await;
    let mut c = bridge.session(None).await;
    c.send(&ClientMessage::Hello { version: 2 }).await;
    c.expect_frame().await;
    // AUTHENTICATE whose nick length says 40 (> 32).
    let mut bad = vec![0x02, 40];
    bad.extend_from_slice(&[b'a'; 40]);
    c.send_raw(&bad).await;
    assert_closed(&mut c, 1007, "nickname is 40 bytes long").await;
    // Invalid UTF-8 and an incomplete message, each on its own session.
    let mut c = bridge.session(None).await;
    c.send_raw(&[0x02, 2, 0xff, 0xfe]).await;
    assert_closed(&mut c, 1007, "not valid UTF-8").await;
    let mut c = bridge.session(None).await;
    c.send_raw(&[0x03, 7, b'g']).await;
    assert_closed(&mut c, 1007, "incomplete").await;
    still_serves(&bridge).await;
}

#[tokio::test]
async fn trailing_bytes_close_1007() {
    let bridge = Bridge::embedded().await;
    let mut c = bridge.session(None).await;
    // HELLO and AUTHENTICATE in one frame: two messages, not one.
    let mut two = ClientMessage::Hello { version: 2 }.to_bytes().unwrap();
    two.extend(
        ClientMessage::Authenticate { nick: "x".into() }
            .to_bytes()
            .unwrap(),
    );
    c.send_raw(&two).await;
    assert_closed(&mut c, 1007, "trailing bytes").await;
    still_serves(&bridge).await;
}

#[tokio::test]
async fn binary_before_the_handshake_closes_1008() {
    let bridge = Bridge::embedded().await;
    let mut c = bridge.connect().await;
    c.send(&ClientMessage::Hello { version: 2 }).await;
    assert_closed(&mut c, 1008, "binary frame before the handshake").await;
    still_serves(&bridge).await;
}

#[tokio::test]
async fn invalid_handshake_json_closes_1008() {
    let bridge = Bridge::embedded().await;
    let mut c = bridge.connect().await;
    c.send_text("{not json").await;
    assert_closed(&mut c, 1008, "invalid handshake").await;
    let mut c = bridge.connect().await;
    c.send_text(r#"{"type":"136","sn":1,"command":"login"}"#)
        .await;
    assert_closed(&mut c, 1008, "login").await;
    // A client that claims to be the bridge (DIM!).
    let mut c = bridge.connect().await;
    c.send_content(&Content::Handshake(Handshake::success(
        1,
        "a".repeat(64),
        false,
        0,
    )))
    .await;
    assert_closed(&mut c, 1008, "unexpected handshake").await;
    // A text frame after the handshake that is not a valid command.
    let mut c = bridge.session(None).await;
    c.send_text("[1,2,3]").await;
    assert_closed(&mut c, 1008, "invalid command").await;
    still_serves(&bridge).await;
}

#[tokio::test]
async fn unknown_server_name_closes_4004() {
    let bridge = Bridge::embedded().await;
    let mut c = bridge.connect().await;
    c.send_content(&Content::Handshake(Handshake::start(
        1,
        Some("elsewhere".into()),
    )))
    .await;
    assert_closed(&mut c, 4004, "unknown server \"elsewhere\"").await;
    still_serves(&bridge).await;
}

#[tokio::test]
async fn oversize_frame_closes_1009() {
    let bridge = Bridge::embedded().await;
    let mut c = bridge.session(None).await;
    c.send_raw(&vec![0x03; 64 * 1024]).await;
    assert_closed(&mut c, 1009, "larger than").await;
    // Just over the configured limit too (8 KiB by default).
    let mut c = bridge.session(None).await;
    c.send_raw(&vec![0x03; Config::default().max_frame_size + 1])
        .await;
    assert_closed(&mut c, 1009, "larger than").await;
    still_serves(&bridge).await;
}

#[tokio::test]
async fn disallowed_origin_gets_403() {
    let bridge = Bridge::start(Config {
        allowed_origins: vec!["https://chat.example.org".into()],
        ..Config::default()
    })
    .await;
    let url = bridge.ws_url();
    assert_eq!(
        WsClient::try_connect(&url, Some("http://evil.example"))
            .await
            .err(),
        Some(403)
    );
    // Same origin, an allowed one, and none at all (non-browser) pass.
    let own = format!("http://{}", bridge.addr);
    let mut c = WsClient::try_connect(&url, Some(&own)).await.unwrap();
    c.handshake(None).await;
    let mut c = WsClient::try_connect(&url, Some("https://chat.example.org"))
        .await
        .unwrap();
    c.handshake(None).await;
    still_serves(&bridge).await;
}

#[tokio::test]
async fn dns_rebinding_host_gets_403_on_a_loopback_listener() {
    // A page of evil.example whose name was rebound to 127.0.0.1: its
    // Origin matches the Host it sends, so the origin check alone passes.
    let bridge = Bridge::embedded().await;
    let url = bridge.ws_url();
    let port = bridge.addr.port();
    let evil_host = format!("evil.example:{port}");
    let evil_origin = format!("http://evil.example:{port}");
    assert_eq!(
        WsClient::try_connect_with(&url, &[("Host", &evil_host), ("Origin", &evil_origin)])
            .await
            .err(),
        Some(403)
    );
    // A loopback name with its own origin passes.
    let host = format!("localhost:{port}");
    let origin = format!("http://localhost:{port}");
    let mut c = WsClient::try_connect_with(&url, &[("Host", &host), ("Origin", &origin)])
        .await
        .unwrap();
    c.handshake(None).await;
    still_serves(&bridge).await;
}

#[tokio::test]
async fn unreachable_upstream_closes_4001() {
    let port = free_port();
    let bridge = Bridge::start(Config {
        upstreams: vec![
            UpstreamConfig::new("gone", format!("127.0.0.1:{port}")),
            // A second upstream: the embedded one is only there with
            // --embedded-listen, so use a Python-free check below.
        ],
        connect_timeout: Duration::from_secs(3),
        ..Config::default()
    })
    .await;
    let mut c = bridge.session(None).await;
    let (code, reason) = c.expect_close().await;
    assert_eq!(code, 4001, "{reason}");
    assert!(reason.contains("cannot connect to gone"), "{reason}");
    assert!(
        !reason.contains(&port.to_string()),
        "the address is never shown: {reason}"
    );
    assert!(
        c.notices
            .iter()
            .any(|n| matches!(n, dumdum_protocol::session::Notice::UpstreamError { .. }))
    );
    // A second session on the same bridge gets the same clean answer.
    let mut c = bridge.session(None).await;
    assert_eq!(c.expect_close().await.0, 4001);
}

#[tokio::test]
async fn out_of_order_frames_close_1008_without_reaching_the_server() {
    let bridge = Bridge::embedded().await;
    let mut c = bridge.session(None).await;
    c.send(&ClientMessage::Hello { version: 2 }).await;
    c.expect_frame().await;
    // SEND_MESSAGE before AUTHENTICATE: the reference would drop us silently.
    c.say("general", "too early").await;
    assert_closed(&mut c, 1008, "SEND_MESSAGE is not allowed").await;
    still_serves(&bridge).await;
}

#[tokio::test]
async fn handshake_timeout_closes_1008() {
    let bridge = Bridge::start(Config {
        handshake_timeout: Duration::from_millis(500),
        ..Config::default()
    })
    .await;
    let mut c = bridge.connect().await;
    assert_closed(&mut c, 1008, "handshake timed out").await;
    still_serves(&bridge).await;
}

#[tokio::test]
async fn per_ip_session_cap_closes_1013() {
    let bridge = Bridge::start(Config {
        max_sessions_per_ip: 2,
        ..Config::default()
    })
    .await;
    let _a = bridge.session(None).await;
    let _b = bridge.session(None).await;
    let mut c = bridge.connect().await;
    assert_closed(&mut c, 1013, "too many sessions").await;
    drop(_a);
    // The slot frees when a WebSocket ends.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let mut d = bridge.connect().await;
        let sn = 1;
        d.send_content(&Content::Handshake(Handshake::start(sn, None)))
            .await;
        match d.next().await {
            common::Got::Text(_) => break,
            common::Got::Close(1013, _) => {}
            other => panic!("{other:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn held_sessions_count_against_the_per_ip_cap() {
    let bridge = Bridge::start(Config {
        max_sessions_per_ip: 2,
        ..Config::default()
    })
    .await;
    // Two sessions whose WebSockets vanish: both are held for resumption.
    for _ in 0..2 {
        let c = bridge.session(None).await;
        drop(c);
    }
    // A third session from the same address is refused at Restart.
    let mut c = bridge.connect().await;
    c.send_content(&Content::Handshake(Handshake::start(1, None)))
        .await;
    let again = c.expect_handshake().await;
    c.send_content(&Content::Handshake(Handshake::restart(
        2,
        again.session.unwrap(),
        0,
        None,
    )))
    .await;
    assert_closed(&mut c, 1013, "too many sessions").await;
}

/// A client frame as RFC 6455 wants it: final, masked (short payloads).
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode, 0x80 | u8::try_from(payload.len()).unwrap()];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// Reads until `buf` holds a whole unmasked server frame; returns its
/// opcode and payload.
async fn server_frame(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if buf.len() >= 2 && buf[1] < 126 && buf.len() >= 2 + usize::from(buf[1]) {
                assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
                let len = usize::from(buf[1]);
                let frame: Vec<u8> = buf.drain(..2 + len).collect();
                return (frame[0] & 0x0f, frame[2..].to_vec());
            }
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a whole frame");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a frame in time")
}

#[tokio::test]
async fn raw_websocket_upgrade_ping_and_unmasked_frame_closes_1002() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bridge = Bridge::embedded().await;
    let mut tcp = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    // The key and accept value of RFC 6455, section 1.3.
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: chat, dumdum.v2\r\n\r\n",
        bridge.addr
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let head_end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the response head");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a response head in time");
    let head = String::from_utf8(buf.drain(..head_end).collect()).unwrap();
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert!(
        lower.contains("sec-websocket-protocol: dumdum.v2"),
        "{head}"
    );
    // A ping is answered with its payload.
    tcp.write_all(&masked(0x9, b"are you there")).await.unwrap();
    assert_eq!(
        server_frame(&mut tcp, &mut buf).await,
        (0xA, b"are you there".to_vec())
    );
    // An unmasked frame breaks the protocol: 1002 and a reason in words.
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let (op, payload) = server_frame(&mut tcp, &mut buf).await;
    assert_eq!(op, 0x8, "a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
    let reason = String::from_utf8(payload[2..].to_vec()).unwrap();
    assert!(reason.contains("not masked"), "{reason}");
    still_serves(&bridge).await;
}

#[tokio::test]
async fn upgrade_without_websocket_headers_is_refused() {
    let bridge = Bridge::embedded().await;
    let (status, _, body) = common::http_get(bridge.addr, "/ws").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("upgrade"), "{body}");
    still_serves(&bridge).await;
}
