//! Scale out (issue 8, bridge side): node names, trusted proxies and the
//! client address they forward, capacity closes (1013), drain (1012), and
//! running acknowledgements both ways. Every bridge runs in this process on
//! 127.0.0.1, port 0; client sockets bound to other 127.0.0.x addresses
//! stand for other hosts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{Bridge, Got, WAIT, WsClient, expect_notice, http_get};
use dumdum_bridge::Config;
use dumdum_protocol::session::{Content, Handshake, HandshakeState, Notice, close};

/// The address the trusted proxy connects from in these tests.
const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Another host, not a trusted proxy.
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn behind_proxy(config: Config) -> Config {
    Config {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..config
    }
}

/// Sends Start and returns the Again.
async fn start(c: &mut WsClient) -> Handshake {
    c.send_content(&Content::Handshake(Handshake::start(1, None)))
        .await;
    let again = c.expect_handshake().await;
    assert_eq!(again.state(), HandshakeState::Again, "{again:?}");
    again
}

/// The value of a metric line starting with `prefix` (0 when absent).
async fn metric(bridge: &Bridge, prefix: &str) -> f64 {
    bridge
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Restart with `key` on a fresh WebSocket to `path` until the session
/// resumes (the bridge may not have seen the old socket go yet).
async fn resume_at(bridge: &Bridge, path: &str, key: &str, received: u64) -> WsClient {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = bridge.ws_from(PROXY, path, &[]).await.unwrap();
        let h = c.restart(key, received).await;
        if h.state() == HandshakeState::Success {
            assert_eq!(h.resumed, Some(true), "{h:?}");
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "resume never succeeded: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn node_is_named_in_again_and_success_and_the_node_parameter_is_ignored() {
    let bridge = Bridge::start(Config {
        node: Some("b1".into()),
        ..Config::default()
    })
    .await;
    let mut a = bridge.ws_from(PROXY, "/ws?node=b1", &[]).await.unwrap();
    let again = start(&mut a).await;
    assert_eq!(again.node.as_deref(), Some("b1"), "Again names the node");
    let key = again.session.unwrap();
    let ok = a.restart(&key, 0).await;
    assert_eq!(ok.state(), HandshakeState::Success, "{ok:?}");
    assert_eq!(ok.resumed, Some(false));
    assert_eq!(ok.node.as_deref(), Some("b1"), "Success names the node");
    a.login("noded").await;
    let received = a.received;
    // The WebSocket drops; the page resumes at /ws?node=b1 (any value is
    // ignored by the bridge, the load balancer routes on it).
    drop(a);
    let mut b = resume_at(&bridge, "/ws?node=b1", &key, received).await;
    assert_eq!(b.success.as_ref().unwrap().node.as_deref(), Some("b1"));
    b.say("general", "resumed on b1").await;
    b.expect_message("resumed on b1").await;

    // A bridge without a node name says none.
    let plain = Bridge::embedded().await;
    let mut c = plain
        .ws_from(PROXY, "/ws?node=elsewhere", &[])
        .await
        .unwrap();
    let again = start(&mut c).await;
    assert_eq!(again.node, None);
    assert!(!c.raw_texts[0].contains("node"), "{}", c.raw_texts[0]);
}

#[tokio::test]
async fn per_ip_cap_counts_the_forwarded_address_and_closes_1013() {
    let bridge = Bridge::start(behind_proxy(Config {
        max_sessions_per_ip: 2,
        ..Config::default()
    }))
    .await;
    let xff = |v: &'static str| [("X-Forwarded-For", v)];
    let mut users = Vec::new();
    for _ in 0..2 {
        let mut c = bridge
            .ws_from(PROXY, "/ws", &xff("203.0.113.7"))
            .await
            .unwrap();
        c.handshake(None).await;
        users.push(c);
    }
    // The third from that address, even with an address of its choosing
    // prepended: the proxy appended the real one, which is what counts.
    let mut third = bridge
        .ws_from(PROXY, "/ws", &xff("198.51.100.99, 203.0.113.7"))
        .await
        .unwrap();
    let (code, reason) = third.expect_close().await;
    assert_eq!(code, close::TRY_AGAIN_LATER, "{reason}");
    assert!(reason.contains("too many sessions"), "{reason}");
    // Another user behind the same proxy still gets in ...
    let mut other = bridge
        .ws_from(PROXY, "/ws", &xff("203.0.113.8"))
        .await
        .unwrap();
    other.handshake(None).await;
    other.login("other").await;
    // ... and so does the proxy itself (no header: the TCP peer).
    let mut direct = bridge.ws_from(PROXY, "/ws", &[]).await.unwrap();
    direct.handshake(None).await;
    assert!(
        metric(
            &bridge,
            "dumdum_bridge_capacity_refused_total{cap=\"per_ip\"} "
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn the_global_session_cap_closes_1013() {
    let bridge = Bridge::start(Config {
        max_sessions: 1,
        ..Config::default()
    })
    .await;
    let _first = bridge.session(None).await;
    let mut second = bridge.connect().await;
    let again = start(&mut second).await;
    second
        .send_content(&Content::Handshake(Handshake::restart(
            2,
            again.session.unwrap(),
            0,
            None,
        )))
        .await;
    let (code, reason) = second.expect_close().await;
    assert_eq!(code, close::TRY_AGAIN_LATER, "{reason}");
    assert!(reason.contains("full"), "{reason}");
    assert!(
        metric(
            &bridge,
            "dumdum_bridge_capacity_refused_total{cap=\"global\"} "
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let bridge = Bridge::start(behind_proxy(Config {
        max_sessions_per_ip: 1,
        ..Config::default()
    }))
    .await;
    // Two "users" of a host that is not a trusted proxy are one address.
    let mut first = bridge
        .ws_from(STRANGER, "/ws", &[("X-Forwarded-For", "203.0.113.1")])
        .await
        .expect("WebSocket from 127.0.0.2 (loopback must cover 127.0.0.0/8)");
    first.handshake(None).await;
    let mut second = bridge
        .ws_from(STRANGER, "/ws", &[("X-Forwarded-For", "203.0.113.2")])
        .await
        .unwrap();
    let (code, reason) = second.expect_close().await;
    assert_eq!(code, close::TRY_AGAIN_LATER, "{reason}");
    // The same header from the trusted proxy is believed.
    let mut proxied = bridge
        .ws_from(PROXY, "/ws", &[("X-Forwarded-For", "203.0.113.2")])
        .await
        .unwrap();
    proxied.handshake(None).await;
    // Nor can an untrusted peer claim an https origin or a public host.
    let claims = [
        ("Host", "chat.example.org"),
        ("Origin", "https://chat.example.org"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "chat.example.org"),
    ];
    assert_eq!(
        bridge.ws_from(STRANGER, "/ws", &claims).await.err(),
        Some(403)
    );
}

#[tokio::test]
async fn own_https_origin_through_a_tls_terminating_proxy() {
    let bridge = Bridge::start(behind_proxy(Config::default())).await;
    let page = [
        ("Host", "chat.example.org"),
        ("Origin", "https://chat.example.org"),
        ("X-Forwarded-For", "203.0.113.20"),
        ("X-Forwarded-Proto", "https"),
    ];
    // The page served as https://chat.example.org is the bridge's own, and
    // the loopback Host rule does not apply behind a trusted proxy.
    let mut c = bridge.ws_from(PROXY, "/ws", &page).await.unwrap();
    c.handshake(None).await;
    c.login("secure").await;
    // X-Forwarded-Host wins over Host.
    let mut h = page.to_vec();
    h[0] = ("Host", "127.0.0.1:8080");
    h.push(("X-Forwarded-Host", "chat.example.org"));
    assert!(bridge.ws_from(PROXY, "/ws", &h).await.is_ok());
    // Without X-Forwarded-Proto the bridge's own origin is http://...
    assert_eq!(
        bridge.ws_from(PROXY, "/ws", &page[..3]).await.err(),
        Some(403)
    );
    // ... and another site's page is still refused.
    let mut evil = page.to_vec();
    evil[1] = ("Origin", "https://evil.example");
    assert_eq!(bridge.ws_from(PROXY, "/ws", &evil).await.err(), Some(403));
}

#[tokio::test]
async fn drain_serves_resumes_refuses_starts_and_closes_the_rest_with_1012() {
    let drain = Duration::from_secs(6);
    let mut bridge = Bridge::start(Config {
        node: Some("b1".into()),
        drain_timeout: drain,
        ..Config::default()
    })
    .await;
    let mut attached = bridge.session(None).await;
    attached.login("stays").await;
    let mut away = bridge.session(None).await;
    away.login("away").await;
    let (key, received) = (away.key.clone().unwrap(), away.received);
    // Its WebSocket drops (no close frame): the session is held.
    drop(away);

    let started = Instant::now();
    bridge.drain.cancel();
    let notice = expect_notice(&mut attached, "draining", |n| {
        matches!(n, Notice::SessionDraining { .. })
    })
    .await;
    let Notice::SessionDraining { deadline_s } = notice else {
        unreachable!("matched above")
    };
    assert!(
        (1..=drain.as_secs()).contains(&deadline_s),
        "deadline_s {deadline_s}"
    );
    let (status, _, body) = http_get(bridge.addr, "/healthz").await;
    assert_eq!((status, body.trim()), (404, "draining"));

    // The held session resumes, and is told about the drain too.
    let mut back = resume_at(&bridge, "/ws?node=b1", &key, received).await;
    expect_notice(&mut back, "draining after resume", |n| {
        matches!(n, Notice::SessionDraining { .. })
    })
    .await;
    back.say("general", "during the drain").await;
    back.expect_message("during the drain").await;

    // A new session goes elsewhere.
    let mut new = bridge.connect().await;
    new.send_content(&Content::Handshake(Handshake::start(1, None)))
        .await;
    let (code, reason) = new.expect_close().await;
    assert_eq!(code, close::SERVICE_RESTART, "{reason}");
    assert!(reason.contains("out of service"), "{reason}");
    assert!(metric(&bridge, "dumdum_bridge_drain_refused_total ").await >= 1.0);

    // At the deadline the rest close with 1012 and run() returns by itself.
    for c in [&mut attached, &mut back] {
        let (code, reason) = c.expect_close().await;
        assert_eq!(code, close::SERVICE_RESTART, "{reason}");
        assert!(reason.contains("reconnect"), "{reason}");
    }
    eprintln!(
        "closed {:?} after the drain started (deadline {drain:?})",
        started.elapsed()
    );
    assert!(bridge.exited_within(WAIT).await, "run() returns by itself");
    assert!(tokio::net::TcpStream::connect(bridge.addr).await.is_err());
}

#[tokio::test]
async fn a_second_request_during_a_drain_stops_at_once_with_1001() {
    // A drain far longer than any wait below: only the second request can
    // end it in time.
    let mut bridge = Bridge::start(Config {
        drain_timeout: Duration::from_secs(600),
        ..Config::default()
    })
    .await;
    let mut a = bridge.session(None).await;
    a.login("impatient").await;
    bridge.drain.cancel();
    expect_notice(&mut a, "draining", |n| {
        matches!(n, Notice::SessionDraining { .. })
    })
    .await;
    bridge.shutdown.cancel();
    let (code, reason) = a.expect_close().await;
    assert_eq!(code, close::GOING_AWAY, "{reason}");
    assert!(reason.contains("shutting down"), "{reason}");
    assert!(bridge.exited_within(WAIT).await, "run() returns at once");
}

#[tokio::test]
async fn without_a_drain_timeout_the_first_request_stops_with_1001() {
    let mut bridge = Bridge::embedded().await;
    let mut a = bridge.session(None).await;
    a.login("quick").await;
    bridge.drain.cancel();
    let (code, reason) = a.expect_close().await;
    assert_eq!(code, close::GOING_AWAY, "{reason}");
    assert!(bridge.exited_within(WAIT).await);
}

/// The acks the client has seen so far, in order.
fn acks(c: &WsClient) -> Vec<u64> {
    c.notices
        .iter()
        .filter_map(|n| match n {
            Notice::SessionAck { received } => Some(*received),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_bridge_acknowledges_forwarded_frames() {
    let bridge = Bridge::embedded().await;
    let mut a = bridge.session(None).await;
    a.login("counted").await;
    for i in 0..20 {
        a.say("general", &format!("ack me {i}")).await;
    }
    let forwarded = 22; // HELLO, AUTHENTICATE and 20 messages
    a.expect_message("ack me 19").await;
    // The last ack comes at most a second after the last frame.
    expect_notice(&mut a, "the ack of every frame", |n| {
        *n == Notice::SessionAck {
            received: forwarded,
        }
    })
    .await;
    let seen = acks(&a);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let mut last = 0;
    for n in &seen {
        assert!(*n - last <= 16, "an ack at least every 16 frames: {seen:?}");
        last = *n;
    }
    // Nothing new forwarded: no further ack.
    match a.quiet_for(Duration::from_millis(1500)).await {
        None => {}
        Some(Got::Text(Content::Notice {
            notice: Notice::SessionAck { received },
            ..
        })) => panic!("a repeated ack: {received}"),
        Some(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_client_ack_trims_the_replay_buffer_and_a_silent_client_keeps_the_margin() {
    let bridge = Bridge::embedded().await;

    // A client that acknowledges what it received.
    let mut a = bridge.session(None).await;
    a.login("acker").await;
    for i in 0..3 {
        a.say("general", &format!("acked {i}")).await;
        a.expect_message(&format!("acked {i}")).await;
    }
    let confirmed = a.received;
    a.send_content(&Content::Notice {
        sn: 50,
        notice: Notice::SessionAck {
            received: confirmed,
        },
    })
    .await;
    // Valid text: the session goes on (and, in order, the ack was handled
    // before this message).
    a.say("general", "after the ack").await;
    a.expect_message("after the ack").await;
    let key = a.key.clone().unwrap();
    drop(a);
    // A resume that needs a frame the client confirmed: no longer held.
    let mut late = bridge.connect().await;
    let h = late.restart(&key, confirmed - 1).await;
    assert_eq!(h.state(), HandshakeState::Again, "{h:?}");
    assert!(
        metric(
            &bridge,
            "dumdum_bridge_acks_total{direction=\"from_client\"} "
        )
        .await
            >= 1.0
    );

    // The frames it did not confirm are all still held.
    let mut c = bridge.session(None).await;
    c.login("exact").await;
    c.say("general", "one").await;
    c.expect_message("one").await;
    let confirmed = c.received;
    c.send_content(&Content::Notice {
        sn: 50,
        notice: Notice::SessionAck {
            received: confirmed,
        },
    })
    .await;
    c.say("general", "two").await;
    c.expect_message("two").await;
    let key = c.key.clone().unwrap();
    drop(c);
    let mut c = bridge.connect().await;
    let h = c.restart(&key, confirmed).await;
    assert_eq!(h.state(), HandshakeState::Success, "{h:?}");
    c.expect_message("two").await;

    // A client that never acknowledges: flushed frames are kept as before.
    let mut b = bridge.session(None).await;
    b.login("silent").await;
    for i in 0..3 {
        b.say("general", &format!("silent {i}")).await;
        b.expect_message(&format!("silent {i}")).await;
    }
    let received = b.received;
    let key = b.key.clone().unwrap();
    drop(b);
    let mut c = bridge.connect().await;
    let h = c.restart(&key, received - 2).await;
    assert_eq!(h.state(), HandshakeState::Success, "{h:?}");
    let replayed = expect_notice(&mut c, "resumed", |n| {
        matches!(n, Notice::SessionResumed { .. })
    })
    .await;
    assert_eq!(replayed, Notice::SessionResumed { replayed: 2 });
}

/// The real binary, for what only the process does: signals, the log.
mod process {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    const WAIT: Duration = Duration::from_secs(20);

    /// The bridge binary with JSON logs, killed on drop if still running.
    pub struct Running {
        child: Child,
        lines: mpsc::Receiver<Value>,
        pub port: u16,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Running {
        pub fn start(args: &[&str]) -> Running {
            let mut child = Command::new(env!("CARGO_BIN_EXE_dumdum-bridge"))
                .args(["--listen", "127.0.0.1:0", "--www", "/nonexistent"])
                .args(["--log-format", "json"])
                .args(args)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start dumdum-bridge");
            let (tx, lines) = mpsc::channel();
            for out in [
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
                Box::new(child.stderr.take().expect("stderr")),
            ] {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(out).lines() {
                        let Ok(line) = line else { break };
                        let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                });
            }
            let mut running = Running {
                child,
                lines,
                port: 0,
            };
            let url = running.until("the URL line", "open the URL");
            let url = url["url"].as_str().expect("url field").to_string();
            let port = url
                .trim_end_matches('/')
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port in the URL");
            running.port = port;
            running
        }

        /// The next log line whose message contains `message`.
        pub fn until(&self, what: &str, message: &str) -> Value {
            let deadline = Instant::now() + WAIT;
            let mut seen = Vec::new();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(v)
                        if v["fields"]["message"]
                            .as_str()
                            .or(v["message"].as_str())
                            .is_some_and(|m| m.contains(message)) =>
                    {
                        return v;
                    }
                    Ok(v) => seen.push(v),
                    Err(_) => panic!("no log line for {what} within {WAIT:?}; got {seen:#?}"),
                }
            }
        }

        pub fn signal(&self, name: &str) {
            let pid = self.child.id().to_string();
            let sent = Command::new("kill").args([name, &pid]).status();
            assert!(sent.is_ok_and(|s| s.success()), "kill {name} {pid}");
        }

        /// Waits (bounded) for the process to exit by itself; its status.
        pub fn exit(&mut self) -> std::process::ExitStatus {
            let deadline = Instant::now() + WAIT;
            loop {
                if let Some(status) = self.child.try_wait().expect("wait") {
                    return status;
                }
                assert!(Instant::now() < deadline, "the bridge did not exit");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// A field of a JSON log line (flattened or under `fields`).
    pub fn field<'v>(v: &'v Value, name: &str) -> &'v Value {
        match &v[name] {
            Value::Null => &v["fields"][name],
            found => found,
        }
    }
}

#[tokio::test]
async fn sigterm_drains_the_process_which_logs_the_forwarded_client_and_exits_by_itself() {
    use process::{Running, field};
    let mut bridge = Running::start(&[
        "--node",
        "b9",
        "--trusted-proxy",
        "127.0.0.1",
        "--drain-timeout",
        "5s",
    ]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], bridge.port));
    let url = format!("ws://{addr}/ws?node=b9");
    let mut c = WsClient::try_connect_with(&url, &[("X-Forwarded-For", "203.0.113.77")])
        .await
        .unwrap();
    let ok = c.handshake(None).await;
    assert_eq!(ok.node.as_deref(), Some("b9"));
    let started = bridge.until("the session's start", "session started");
    assert_eq!(
        field(&started, "client").as_str(),
        Some("203.0.113.77"),
        "the forwarded address, not the proxy's: {started}"
    );
    c.login("drained").await;

    bridge.signal("-TERM");
    expect_notice(&mut c, "draining", |n| {
        matches!(n, Notice::SessionDraining { .. })
    })
    .await;
    let drain = bridge.until("the drain's start", "drain started");
    assert_eq!(field(&drain, "deadline_s").as_u64(), Some(5), "{drain}");
    assert_eq!(field(&drain, "node").as_str(), Some("b9"), "{drain}");
    let (status, _, _) = http_get(addr, "/healthz").await;
    assert_eq!(status, 404);
    let (code, reason) = c.expect_close().await;
    assert_eq!(code, close::SERVICE_RESTART, "{reason}");
    let ended = bridge.until("the drain's end", "drain ended");
    assert!(field(&ended, "elapsed_ms").is_u64(), "{ended}");
    assert!(bridge.exit().success(), "exits by itself, successfully");
}

#[tokio::test]
async fn a_second_sigterm_stops_the_draining_process_at_once() {
    use process::Running;
    let mut bridge = Running::start(&["--drain-timeout", "10m"]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], bridge.port));
    let mut c = WsClient::connect(&format!("ws://{addr}/ws"), None).await;
    c.handshake(None).await;
    bridge.signal("-TERM");
    expect_notice(&mut c, "draining", |n| {
        matches!(n, Notice::SessionDraining { .. })
    })
    .await;
    bridge.signal("-INT");
    let (code, reason) = c.expect_close().await;
    assert_eq!(code, close::GOING_AWAY, "{reason}");
    bridge.until("the interruption", "drain interrupted");
    assert!(bridge.exit().success());
}
