//! Slow clients on raw sockets: a connection that sends nothing, or its
//! request head a byte at a time, is closed after the header timeout; a
//! TLS client that stops mid-handshake is closed after the handshake
//! timeout; 200 slow connections at once do not stop `/healthz`.
//!
//! No timed assertions: each wait is bounded generously (to fail instead of
//! hanging) and the times seen are printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Bridge;
use dumdum_bridge::Config;
use dumdum_testkit::TestCert;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above any timeout set here: only there so a failure cannot hang.
const BOUND: Duration = Duration::from_secs(30);

fn config(header_timeout: Duration) -> Config {
    Config {
        header_timeout,
        handshake_timeout: Duration::from_secs(1),
        ..Config::default()
    }
}

/// Reads until the peer closes (end of file or a reset); returns what was
/// read and when. Panics if still open after [`BOUND`].
async fn until_closed(r: &mut (impl AsyncRead + Unpin)) -> (Vec<u8>, Duration) {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(BOUND, r.read(&mut buf)).await {
            Err(_) => panic!("still open after {BOUND:?} (read {} bytes)", got.len()),
            Ok(Ok(0) | Err(_)) => return (got, t.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let bridge = Bridge::start(config(Duration::from_secs(1))).await;
    let mut s = TcpStream::connect(bridge.addr).await.unwrap();
    let (got, after) = until_closed(&mut s).await;
    println!(
        "idle connection closed after {after:?} (header timeout 1 s), {} bytes sent to it",
        got.len()
    );
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_closed() {
    let bridge = Bridge::start(config(Duration::from_secs(1))).await;
    let s = TcpStream::connect(bridge.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let closed = Arc::new(AtomicBool::new(false));
    let writer = {
        let closed = closed.clone();
        let addr = bridge.addr;
        tokio::spawn(async move {
            // Never ends with the blank line: the head is never complete.
            let head = format!(
                "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}",
                "a".repeat(4096)
            );
            let mut sent = 0usize;
            for b in head.bytes() {
                if closed.load(Ordering::Relaxed) || w.write_all(&[b]).await.is_err() {
                    break;
                }
                sent += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            sent
        })
    };
    let (got, after) = until_closed(&mut r).await;
    closed.store(true, Ordering::Relaxed);
    let sent = writer.await.unwrap();
    println!(
        "byte-at-a-time head closed after {after:?} (header timeout 1 s) once {sent} bytes were sent"
    );
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "no response to an incomplete head: {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn a_kept_alive_connection_that_goes_quiet_is_closed() {
    let bridge = Bridge::start(config(Duration::from_secs(1))).await;
    let mut s = TcpStream::connect(bridge.addr).await.unwrap();
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", bridge.addr);
    s.write_all(req.as_bytes()).await.unwrap();
    let (got, after) = until_closed(&mut s).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    println!("kept-alive connection closed {after:?} after its request (header timeout 1 s)");
}

#[tokio::test]
async fn two_hundred_slow_connections_do_not_stop_healthz() {
    // A header timeout longer than the test: the slow ones stay open.
    let bridge = Bridge::start(config(Duration::from_secs(60))).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = Vec::new();
    for i in 0..200 {
        let s = TcpStream::connect(bridge.addr).await.unwrap();
        let stop = stop.clone();
        slow.push(tokio::spawn(async move {
            let (mut r, mut w) = s.into_split();
            let mut buf = [0u8; 64];
            // Half send nothing, half a byte a second.
            if i % 2 == 0 {
                return tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf))
                    .await
                    .is_err();
            }
            for b in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if w.write_all(&[*b]).await.is_err() {
                    return false;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            true
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for round in 0..3 {
        let t = Instant::now();
        let (status, _, body) = common::http_get(bridge.addr, "/healthz").await;
        println!(
            "/healthz with 200 slow connections open (round {round}): {status} in {:?}",
            t.elapsed()
        );
        assert_eq!(status, 200, "{body}");
    }
    stop.store(true, Ordering::Relaxed);
    let mut still_open = 0;
    for s in slow {
        if s.await.unwrap() {
            still_open += 1;
        }
    }
    // They were really there (open, not refused) while /healthz answered.
    assert_eq!(
        still_open, 200,
        "the slow connections stayed open meanwhile"
    );
}

#[tokio::test]
async fn a_tls_client_that_stops_mid_handshake_is_closed() {
    let cert = TestCert::localhost();
    let bridge = Bridge::start(Config {
        tls_cert: Some(cert.cert_path.clone()),
        tls_key: Some(cert.key_path.clone()),
        ..config(Duration::from_secs(1))
    })
    .await;
    let mut s = TcpStream::connect(bridge.addr).await.unwrap();
    // A handshake record announcing 512 bytes, then the start of a
    // ClientHello, then nothing.
    s.write_all(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ])
    .await
    .unwrap();
    let (got, after) = until_closed(&mut s).await;
    println!(
        "TLS client stopped mid-handshake: closed after {after:?} (handshake timeout 1 s), {} bytes sent to it",
        got.len()
    );
}

#[tokio::test]
async fn a_tls_client_that_sends_no_request_is_closed() {
    let cert = TestCert::localhost();
    let bridge = Bridge::start(Config {
        tls_cert: Some(cert.cert_path.clone()),
        tls_key: Some(cert.key_path.clone()),
        ..config(Duration::from_secs(1))
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
    let tcp = TcpStream::connect(bridge.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    let (got, after) = until_closed(&mut s).await;
    println!("TLS connection without a request closed after {after:?} (header timeout 1 s)");
    assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 408"));
}

#[tokio::test]
async fn a_quiet_websocket_outlives_the_header_timeout() {
    let bridge = Bridge::start(config(Duration::from_secs(1))).await;
    let mut c = bridge.session(None).await;
    c.login("quiet").await;
    // Three header timeouts without a byte from the client: the WebSocket
    // is past its request head, so the timeout no longer applies.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match c.quiet_for(left).await {
            None => break,
            Some(got @ (common::Got::Close(..) | common::Got::Ended)) => {
                panic!("the WebSocket was closed: {got:?}")
            }
            Some(_) => {}
        }
    }
    c.say("general", "still open").await;
    c.expect_message("still open").await;
}
