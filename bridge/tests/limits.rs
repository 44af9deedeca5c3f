//! Limits: a browser that stops reading is cut off without slowing anyone
//! else; shutdown closes every WebSocket with 1001 and returns promptly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bridge, Got, WsClient};
use dumdum_bridge::Config;
use dumdum_protocol::session::{Content, Handshake};

/// A WebSocket client whose socket has a tiny receive buffer.
async fn small_window_client(bridge: &Bridge) -> WsClient {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(bridge.addr).await.unwrap();
    WsClient::over(Box::new(tcp), &bridge.ws_url(), None)
        .await
        .unwrap()
}

async fn slow_readers_cut(bridge: &Bridge) -> f64 {
    let (_, _, metrics) = common::http_get(bridge.addr, "/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("dumdum_bridge_slow_readers_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn slow_reader_is_cut_off_without_affecting_a_fast_one() {
    let mut bridge = Bridge::start(Config {
        send_queue_bytes: 32 * 1024,
        ..Config::default()
    })
    .await;
    let mut slow = small_window_client(&bridge).await;
    slow.handshake(None).await;
    slow.login("slow").await;
    let mut fast = bridge.session(None).await;
    fast.login("fast").await;

    // The slow client now stops reading; the fast one floods and reads.
    // Flood in rounds until the bridge has cut the slow reader off (how much
    // fits in socket buffers first depends on the machine), at most ~40 MB.
    let content = "x".repeat(1000);
    let started = std::time::Instant::now();
    let mut got = 0;
    let mut sent = 0;
    for _round in 0..80 {
        for _ in 0..500 {
            fast.say("general", &format!("{sent:06}{content}")).await;
            sent += 1;
            // Read as we go, so the fast client is a fast reader.
            while let Some(g) = fast.next_within(Duration::from_millis(0)).await {
                if let Got::Frame(dumdum_protocol::ServerMessage::SendMessage(m), _) = g {
                    assert_eq!(m.content[..6].parse::<usize>().unwrap(), got, "in order");
                    got += 1;
                }
            }
        }
        if slow_readers_cut(&bridge).await >= 1.0 {
            break;
        }
    }
    while got < sent {
        match fast.next().await {
            Got::Frame(dumdum_protocol::ServerMessage::SendMessage(m), _) => {
                assert_eq!(m.content[..6].parse::<usize>().unwrap(), got, "in order");
                got += 1;
            }
            Got::Text(_) => {}
            other => panic!("fast client interrupted after {got}: {other:?}"),
        }
    }
    let fast_time = started.elapsed();
    let total = sent;

    // The slow client: whatever it had buffered, then the cut-off.
    let mut slow_got = 0;
    let end = loop {
        match slow.next().await {
            Got::Frame(..) => slow_got += 1,
            Got::Text(_) => {}
            end @ (Got::Close(..) | Got::Ended) => break end,
        }
    };
    eprintln!(
        "slow reader: {slow_got} of {total} frames, then {end:?}; fast reader done in {fast_time:?}"
    );
    assert!(
        slow_got < total,
        "the slow reader was cut off ({slow_got} frames)"
    );
    if let Got::Close(code, reason) = &end {
        assert_eq!(*code, 1008, "{reason}");
        assert!(reason.contains("too slow"), "{reason}");
    }
    assert!(slow_readers_cut(&bridge).await >= 1.0);
    // The fast one is still fine.
    fast.say("random", "after the flood").await;
    fast.expect_message("after the flood").await;
    bridge.stop().await;
}

#[tokio::test]
async fn shutdown_closes_every_websocket_with_1001() {
    let mut bridge = Bridge::embedded().await;
    let mut a = bridge.session(None).await;
    a.login("one").await;
    let mut b = bridge.session(None).await;
    b.login("two").await;
    // One still in the handshake.
    let mut c = bridge.connect().await;
    c.send_content(&Content::Handshake(Handshake::start(1, None)))
        .await;
    c.expect_handshake().await;

    let stopping = tokio::spawn(async move {
        let took = bridge.stop().await;
        (bridge, took)
    });
    for ws in [&mut a, &mut b, &mut c] {
        let (code, reason) = ws.expect_close().await;
        assert_eq!(code, 1001, "{reason}");
        assert!(reason.contains("shutting down"), "{reason}");
    }
    let (bridge, took) = stopping.await.unwrap();
    assert!(took < Duration::from_secs(5), "run returned after {took:?}");
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(bridge.addr).await.is_err());
}

#[tokio::test]
async fn connections_beyond_the_global_cap_wait_for_a_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bridge = Bridge::start(Config {
        max_connections: 2,
        ..Config::default()
    })
    .await;
    // Two idle connections take both slots.
    let first = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let early = tokio::time::timeout(Duration::from_secs(1), third.read_to_end(&mut out)).await;
    assert!(early.is_err(), "served beyond the cap: {out:?}");
    // A slot frees up: the waiting connection is served.
    drop(first);
    tokio::time::timeout(common::WAIT, third.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}
