//! Bridge figures, printed (no timed assertions):
//!
//! 1. memory per idle session: the `dumdum-bridge` binary runs as a child
//!    process with its embedded server; N WebSocket sessions handshake and
//!    log in, then idle; the child's RSS delta / N is printed;
//! 2. relay throughput: one client posts M messages pipelined and reads the
//!    M echoes, (a) over a direct TCP connection to the embedded server
//!    (`--embedded-listen`, the baseline), (b) through the bridge's
//!    WebSocket to the same server; also (c) a raw TCP echo of the same
//!    bytes. Ratios are printed.
//!
//! `cargo bench -p dumdum-bridge --bench relay` (env BENCH_SESSIONS,
//! BENCH_MESSAGES to change N, default 10 000, and M). The bench raises its
//! soft open-file limit to the hard one (the bridge, its child, inherits
//! it, and raises its own too); N sessions take N descriptors on each side,
//! so with a hard limit too low for N it says so and measures fewer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dumdum_protocol::session::{Content, Handshake, SUBPROTOCOL};
use dumdum_protocol::{ClientMessage, Decoder, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Child_(Child);
impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn start_bridge(http: SocketAddr, embedded: SocketAddr) -> Child_ {
    let child = Command::new(env!("CARGO_BIN_EXE_dumdum-bridge"))
        .args([
            "--listen",
            &http.to_string(),
            "--embedded-listen",
            &embedded.to_string(),
            "--max-sessions-per-ip",
            "100000",
            "--max-sessions",
            "100000",
            "--max-connections",
            "100000",
            "--www",
            "/nonexistent",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn dumdum-bridge");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(http).is_err()
        || std::net::TcpStream::connect(embedded).is_err()
    {
        assert!(Instant::now() < deadline, "bridge did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Child_(child)
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_session(http: SocketAddr, nick: &str) -> Ws {
    let tcp = TcpStream::connect(http).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut req = format!("ws://{http}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    let text = |c: Content| Message::text(c.to_json());
    ws.send(text(Content::Handshake(Handshake::start(1, None))))
        .await
        .unwrap();
    let key = loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await
            && let Ok(Content::Handshake(h)) = Content::parse(t.as_str())
        {
            break h.session.unwrap();
        }
    };
    ws.send(text(Content::Handshake(Handshake::restart(
        2, key, 0, None,
    ))))
    .await
    .unwrap();
    let bin = |m: ClientMessage| Message::binary(m.to_bytes().unwrap());
    ws.send(bin(ClientMessage::Hello { version: 2 }))
        .await
        .unwrap();
    next_frame(&mut ws).await; // HELLO
    ws.send(bin(ClientMessage::Authenticate { nick: nick.into() }))
        .await
        .unwrap();
    let ack = next_frame(&mut ws).await;
    assert_eq!(
        ack,
        ServerMessage::AcknowledgeAuthentication { success: true }
    );
    ws
}

async fn next_frame(ws: &mut Ws) -> ServerMessage {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                return dumdum_protocol::Decode::decode_exact(&b).unwrap();
            }
            Some(Ok(_)) => {}
            other => panic!("session ended: {other:?}"),
        }
    }
}

/// Memory per idle session the bridge is meant to stay within (issue 8).
const TARGET_KIB: u32 = 16;

/// Descriptors kept free besides the sessions' (the listeners, the
/// throughput clients, the runtime's own).
const SPARE_FDS: u64 = 200;

/// Raises the soft open-file limit to the hard one (the bridge, started
/// from here, inherits it) and returns how many sessions fit in it.
fn sessions_that_fit(wanted: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            println!(
                "note: cannot raise the open-file limit ({e}); measuring {wanted} sessions anyway"
            );
            return wanted;
        }
    };
    let fit = usize::try_from(limit.saturating_sub(SPARE_FDS)).unwrap_or(usize::MAX);
    if fit < wanted {
        println!(
            "note: the open-file limit is {limit} (hard limit), too low for {wanted} sessions \
             ({wanted} descriptors on each side, plus {SPARE_FDS}): measuring {fit}. \
             Raise the hard limit (`ulimit -Hn`, LimitNOFILE=) for the full figure."
        );
        return fit;
    }
    wanted
}

async fn memory_per_idle_session(http: SocketAddr, pid: u32, n: usize) {
    // Warm up (thread stacks, allocator arenas) with a few sessions.
    let mut warm = Vec::new();
    for i in 0..8 {
        warm.push(ws_session(http, &format!("warm{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_bytes(pid);
    let mut sessions = Vec::with_capacity(n);
    for i in 0..n {
        sessions.push(ws_session(http, &format!("idle{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes(pid);
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    let per_kib = per / 1024.0;
    println!(
        "memory: {n} idle sessions (WebSocket + session task + embedded-server connection): \
         RSS {:.1} MiB -> {:.1} MiB, {per_kib:.1} KiB per idle session (target <= {TARGET_KIB} KiB: {})",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        if per_kib <= TARGET_KIB as f64 {
            "met"
        } else {
            "NOT met"
        }
    );
    // Leave with 1000 so the sessions end now (a drop would hold them for
    // resumption, and they would still receive every broadcast).
    for mut ws in sessions.into_iter().chain(warm) {
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Posts `m` messages pipelined and reads the `m` echoes; messages/s.
/// Numbers the benchmark clients' nicks.
static ROUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn through_bridge(http: SocketAddr, m: usize, body: &str) -> f64 {
    // A nick per round: the previous round's session, dropped without a
    // close frame, is held for resumption with its nick.
    let round = ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ws = ws_session(http, &format!("wsbench{round}")).await;
    let (mut tx, mut rx) = ws.split();
    let frame = Message::binary(
        ClientMessage::SendMessage {
            channel: "random".into(),
            content: body.into(),
        }
        .to_bytes()
        .unwrap(),
    );
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..m {
            tx.feed(frame.clone()).await.unwrap();
        }
        tx.flush().await.unwrap();
        tx
    });
    let mut got = 0;
    while got < m {
        match rx.next().await {
            Some(Ok(Message::Binary(_))) => got += 1,
            Some(Ok(_)) => {}
            other => panic!("bench session ended: {other:?}"),
        }
    }
    let rate = m as f64 / start.elapsed().as_secs_f64();
    let _tx = writer.await.unwrap();
    rate
}

async fn direct_tcp(embedded: SocketAddr, m: usize, body: &str) -> f64 {
    let tcp = TcpStream::connect(embedded).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (mut r, mut w) = tcp.into_split();
    let mut dec = Decoder::<ServerMessage>::default();
    let mut buf = vec![0u8; 65536];
    async fn next(
        r: &mut tokio::net::tcp::OwnedReadHalf,
        dec: &mut Decoder<ServerMessage>,
        buf: &mut [u8],
    ) -> ServerMessage {
        loop {
            if let Some((m, _)) = dec.next_message().unwrap() {
                return m;
            }
            let n = r.read(buf).await.unwrap();
            assert!(n > 0, "server closed");
            dec.feed(&buf[..n]);
        }
    }
    w.write_all(&ClientMessage::Hello { version: 2 }.to_bytes().unwrap())
        .await
        .unwrap();
    next(&mut r, &mut dec, &mut buf).await;
    w.write_all(
        &ClientMessage::Authenticate {
            nick: format!(
                "tcpbench{}",
                ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        }
        .to_bytes()
        .unwrap(),
    )
    .await
    .unwrap();
    next(&mut r, &mut dec, &mut buf).await;
    let msg = ClientMessage::SendMessage {
        channel: "random".into(),
        content: body.into(),
    }
    .to_bytes()
    .unwrap();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(msg.len() * 64);
        let mut sent = 0;
        while sent < m {
            batch.clear();
            let k = (m - sent).min(64);
            for _ in 0..k {
                batch.extend_from_slice(&msg);
            }
            w.write_all(&batch).await.unwrap();
            sent += k;
        }
        w
    });
    for _ in 0..m {
        next(&mut r, &mut dec, &mut buf).await;
    }
    let rate = m as f64 / start.elapsed().as_secs_f64();
    let _w = writer.await.unwrap();
    rate
}

/// A raw TCP echo of `bytes` in `chunk`-sized writes: bytes/s.
async fn raw_echo(bytes: usize, chunk: usize) -> f64 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let (mut r, mut w) = s.into_split();
        let mut buf = vec![0u8; 65536];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let data = vec![7u8; chunk];
        let mut sent = 0;
        while sent < bytes {
            w.write_all(&data).await.unwrap();
            sent += chunk;
        }
        w
    });
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    while got < bytes {
        got += r.read(&mut buf).await.unwrap();
    }
    let rate = bytes as f64 / start.elapsed().as_secs_f64();
    let _w = writer.await.unwrap();
    rate
}

fn main() {
    let n = sessions_that_fit(env_num("BENCH_SESSIONS", 10_000));
    let m = env_num("BENCH_MESSAGES", 20_000);
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let embedded: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = start_bridge(http, embedded);
    let pid = child.0.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        memory_per_idle_session(http, pid, n).await;
        let body = "x".repeat(200);
        // Warm-up round, then the measured ones.
        let _ = direct_tcp(embedded, 2000, &body).await;
        let _ = through_bridge(http, 2000, &body).await;
        let direct = direct_tcp(embedded, m, &body).await;
        let bridged = through_bridge(http, m, &body).await;
        let frame_len = ClientMessage::SendMessage {
            channel: "random".into(),
            content: body.clone(),
        }
        .to_bytes()
        .unwrap()
        .len();
        let echo = raw_echo(m * frame_len * 2, frame_len * 64).await;
        println!(
            "throughput: {m} messages of {} bytes, posted pipelined, every echo read back",
            body.len()
        );
        println!("  direct TCP to the embedded server (baseline): {direct:>10.0} msg/s");
        println!(
            "  through the bridge (WebSocket -> session -> embedded): {bridged:>10.0} msg/s  = {:.2} x baseline",
            bridged / direct
        );
        let relay_bytes = bridged * frame_len as f64 * 2.0;
        println!(
            "  raw loopback TCP echo of the same byte volume: {:.0} MiB/s; the bridge moves {:.1} MiB/s of dumdum bytes = {:.3} x raw echo",
            echo / 1048576.0,
            relay_bytes / 1048576.0,
            relay_bytes / echo
        );
    });
    drop(child);
}
