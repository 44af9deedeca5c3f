//! Sessions that survive a dropped WebSocket (issue 5, bridge side).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bridge, Got, Proxy, WAIT, WsClient, client_messages, off_thread};
use dumdum_bridge::{Config, UpstreamConfig};
use dumdum_protocol::session::{HandshakeState, Notice};
use dumdum_protocol::{ClientMessage, ServerMessage};
use dumdum_testkit::{DumdumServer, PyPeer};

/// Restart with `key` through `proxy`, retrying while the bridge has not
/// yet noticed that the old WebSocket is gone (it refuses a key that is
/// still attached).
async fn resume(proxy: &Proxy, bridge: &Bridge, key: &str, received: u64) -> WsClient {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = proxy.ws(bridge).await;
        let h = c.restart(key, received).await;
        if h.state() == HandshakeState::Success {
            assert_eq!(h.resumed, Some(true));
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "resume never succeeded: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A proxy in front of `bridge`, a session through it logged in as `nick`,
/// and that session's key.
async fn proxied_session(bridge: &Bridge, nick: &str) -> (Proxy, WsClient, String) {
    let proxy = Proxy::start(bridge.addr).await;
    let mut a = proxy.ws(bridge).await;
    a.handshake(None).await;
    a.login(nick).await;
    let key = a.key.clone().unwrap();
    (proxy, a, key)
}

/// The reference server, started off the async workers.
async fn reference_server() -> DumdumServer {
    off_thread(DumdumServer::start).await
}

/// Collects chat contents until `last` arrives.
async fn contents_until(c: &mut WsClient, last: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        match c.next().await {
            Got::Frame(ServerMessage::SendMessage(m), _) => {
                let done = m.content == last;
                out.push(m.content);
                if done {
                    return out;
                }
            }
            Got::Frame(..) | Got::Text(_) => {}
            other => panic!("waiting for {last:?}: {other:?} after {out:?}"),
        }
    }
}

#[tokio::test]
async fn cut_connection_resumes_with_nothing_lost_or_doubled() {
    let server = reference_server().await;
    let server_addr = server.addr();
    // A proxy between the bridge and the server sees every client byte.
    let upstream_proxy = Proxy::start(server_addr).await;
    let bridge = Bridge::start(Config {
        upstreams: vec![UpstreamConfig::new("main", upstream_proxy.addr.to_string())],
        ..Config::default()
    })
    .await;
    let (ws_proxy, mut a, key) = proxied_session(&bridge, "keeper").await;
    let mut sent = 2u64; // HELLO, AUTHENTICATE
    let mut py = off_thread(move || {
        let mut py = PyPeer::connect(server_addr, "watcher", None);
        assert!(py.expect_auth());
        py
    })
    .await;
    a.say("general", "before the cut").await;
    sent += 1;
    a.expect_message("before the cut").await;
    let received = a.received;

    ws_proxy.cut();
    // While the browser is away: the Python client posts, and cannot take
    // the browser's nick.
    let py = off_thread(move || {
        py.expect_message("before the cut");
        for i in 1..=3 {
            py.send("general", &format!("while away {i}"));
        }
        py.expect_message("while away 3");
        let mut thief = PyPeer::connect(server_addr, "keeper", None);
        assert!(!thief.expect_auth(), "the held nick cannot be taken");
        py
    })
    .await;
    // The cut-off client queued two messages meanwhile.
    let queued = ["queued 1", "queued 2"];

    let mut b = resume(&ws_proxy, &bridge, &key, received).await;
    let success = b.success.clone().unwrap();
    assert_eq!(
        success.received,
        Some(sent),
        "every client frame was forwarded"
    );
    // Re-send frames after the bridge's count (none here), then the queue.
    for q in queued {
        b.say("general", q).await;
    }
    let got = contents_until(&mut b, "queued 2").await;
    assert_eq!(
        got,
        [
            "while away 1",
            "while away 2",
            "while away 3",
            "queued 1",
            "queued 2"
        ],
        "missed messages once each, in order, then live"
    );
    let replayed = b.notices.iter().find_map(|n| match n {
        Notice::SessionResumed { replayed } => Some(*replayed),
        _ => None,
    });
    assert_eq!(replayed, Some(3));

    let py = off_thread(move || {
        let mut py = py;
        py.expect_message("queued 2");
        for q in queued {
            let n = py
                .seen
                .iter()
                .filter(|v| v["ev"] == "message" && v["content"] == q)
                .count();
            assert_eq!(n, 1, "{q} delivered exactly once");
        }
        py
    })
    .await;

    // The server saw one HELLO and one AUTHENTICATE from the bridge.
    let conns = upstream_proxy.sent_to_target();
    assert_eq!(conns.len(), 1, "one upstream connection for the session");
    let msgs = client_messages(&conns[0]);
    let hellos = msgs
        .iter()
        .filter(|m| matches!(m, ClientMessage::Hello { .. }))
        .count();
    let auths = msgs
        .iter()
        .filter(|m| matches!(m, ClientMessage::Authenticate { .. }))
        .count();
    assert_eq!((hellos, auths), (1, 1), "{msgs:?}");
    let metrics = bridge.metrics().await;
    assert!(
        metrics.contains("dumdum_bridge_resumes_total{result=\"resumed\"}"),
        "{metrics}"
    );
    drop(py);
}

#[tokio::test]
async fn close_1001_holds_the_session_and_1000_ends_it() {
    let bridge = Bridge::embedded().await;
    let (proxy, mut a, key) = proxied_session(&bridge, "away").await;
    let received = a.received;
    a.close(1001).await;
    let mut b = resume(&proxy, &bridge, &key, received).await;
    b.say("general", "back").await;
    b.expect_message("back").await;
    // 1000: the session ends at once; the key is no longer valid.
    let received = b.received;
    b.close(1000).await;
    let mut c = proxy.ws(&bridge).await;
    let h = c.restart(&key, received).await;
    assert_eq!(h.state(), HandshakeState::Again);
    assert_ne!(h.session.as_deref(), Some(key.as_str()));
}

#[tokio::test]
async fn expired_key_gets_again_and_the_nick_is_freed() {
    let server = reference_server().await;
    let server_addr = server.addr();
    let bridge = Bridge::start(Config {
        upstreams: vec![UpstreamConfig::new("main", server_addr.to_string())],
        resume_grace: Duration::from_secs(1),
        ..Config::default()
    })
    .await;
    let (proxy, a, key) = proxied_session(&bridge, "ephemeral").await;
    let received = a.received;
    // A Python client that wants the nick, started before the cut so its
    // later attempts are quick.
    let mut py = off_thread(move || {
        let mut p = PyPeer::connect(server_addr, "ephemeral", None);
        assert!(!p.expect_auth(), "taken by the live session");
        p
    })
    .await;
    proxy.cut();
    py = off_thread(move || {
        py.auth("ephemeral");
        assert!(!py.expect_auth(), "still held during the grace period");
        py
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut b = proxy.ws(&bridge).await;
    let h = b.restart(&key, received).await;
    assert_eq!(h.state(), HandshakeState::Again, "{h:?}");
    // The upstream was closed: the reference server freed the nick.
    let freed = off_thread(move || {
        for _ in 0..20 {
            py.auth("ephemeral");
            if py.expect_auth() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    })
    .await;
    assert!(freed, "nick free after expiry");
}

#[tokio::test]
async fn flood_beyond_the_resume_buffer_ends_the_session() {
    let bridge = Bridge::start(Config {
        resume_buffer: 16 * 1024,
        ..Config::default()
    })
    .await;
    let (proxy, a, key) = proxied_session(&bridge, "sleeper").await;
    let received = a.received;
    proxy.cut();
    let mut f = bridge.session(None).await;
    f.login("flooder").await;
    let body = "y".repeat(1000);
    for i in 0..40 {
        f.say("general", &format!("{i} {body}")).await;
    }
    f.expect_message(&format!("39 {body}")).await;
    // The held session gave up: Again, then a fresh session with the same
    // nick works (its upstream connection was closed).
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut b = loop {
        let mut b = proxy.ws(&bridge).await;
        let h = b.restart(&key, received).await;
        if h.state() == HandshakeState::Again {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never refused: {h:?}"
        );
        // Resumed before the flood was processed: drop and retry.
        drop(b);
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let again_key = match b.restart_key_from_again() {
        Some(k) => k,
        None => panic!("Again without a key"),
    };
    let h = b.restart(&again_key, 0).await;
    assert_eq!(h.state(), HandshakeState::Success);
    assert_eq!(h.resumed, Some(false));
    b.login("sleeper").await;
    let metrics = bridge.metrics().await;
    assert!(
        metrics.contains("dumdum_bridge_held_sessions_ended_total{reason=\"buffer\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn replaying_a_live_key_on_a_second_socket_is_refused() {
    let bridge = Bridge::embedded().await;
    let mut a = bridge.session(None).await;
    a.login("owner").await;
    let key = a.key.clone().unwrap();
    let mut thief = bridge.connect().await;
    // The bridge pings the attached socket before refusing; a live browser
    // answers pings whatever its page does, so `a` keeps reading meanwhile.
    let h = tokio::select! {
        h = thief.restart(&key, 0) => h,
        got = a.next_within(WAIT) => panic!("the live socket got {got:?}"),
    };
    assert_eq!(h.state(), HandshakeState::Again, "{h:?}");
    let new_key = h.session.clone().unwrap();
    assert_ne!(new_key, key);
    // The live session is untouched.
    a.say("general", "still mine").await;
    a.expect_message("still mine").await;
    // The thief's socket only gets a fresh session of its own.
    let h = thief.restart(&new_key, 0).await;
    assert_eq!(h.resumed, Some(false));
    thief.hello().await;
    assert_eq!(
        thief.authenticate("owner").await,
        ServerMessage::AcknowledgeAuthentication { success: false }
    );
}

#[tokio::test]
async fn resume_with_a_count_beyond_what_was_sent_is_refused() {
    let bridge = Bridge::embedded().await;
    let (proxy, a, key) = proxied_session(&bridge, "counter").await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b = proxy.ws(&bridge).await;
    let h = b.restart(&key, a.received + 100).await;
    assert_eq!(h.state(), HandshakeState::Again);
}

#[tokio::test]
async fn frames_lost_in_flight_are_resent_after_the_bridge_count() {
    let bridge = Bridge::embedded().await;
    let (proxy, mut a, key) = proxied_session(&bridge, "resender").await;
    let mut sent: Vec<ClientMessage> = vec![
        ClientMessage::Hello { version: 2 },
        ClientMessage::Authenticate {
            nick: "resender".into(),
        },
    ];
    let received = a.received;
    // This frame leaves the client but never reaches the bridge.
    proxy.blackhole();
    let lost = ClientMessage::SendMessage {
        channel: "general".into(),
        content: "lost in flight".into(),
    };
    a.send(&lost).await;
    sent.push(lost);
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut();

    let mut b = resume(&proxy, &bridge, &key, received).await;
    let forwarded = b.success.as_ref().and_then(|s| s.received).unwrap();
    assert_eq!(forwarded, 2, "HELLO and AUTHENTICATE only");
    for m in &sent[usize::try_from(forwarded).unwrap()..] {
        b.send(m).await;
    }
    b.say("general", "then live").await;
    let got = contents_until(&mut b, "then live").await;
    assert_eq!(
        got,
        ["lost in flight", "then live"],
        "re-sent once, in order"
    );
}

#[tokio::test]
async fn restart_while_the_old_socket_is_silently_dead_resumes() {
    // A phone that switched networks: its old WebSocket died without a FIN
    // (the proxy stops forwarding but keeps both connections open), and the
    // browser sends Restart on a new socket at once.
    let bridge = Bridge::embedded().await;
    let (proxy, a, key) = proxied_session(&bridge, "roamer").await;
    let received = a.received;
    proxy.freeze();
    let started = tokio::time::Instant::now();
    let mut b = bridge.connect().await;
    let h = b.restart(&key, received).await;
    assert_eq!(h.state(), HandshakeState::Success, "{h:?}");
    assert_eq!(h.resumed, Some(true));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "resumed after {:?}",
        started.elapsed()
    );
    b.say("general", "from the new network").await;
    b.expect_message("from the new network").await;
    // The upstream never dropped: the nick is still held.
    let mut other = bridge.session(None).await;
    other.hello().await;
    assert_eq!(
        other.authenticate("roamer").await,
        ServerMessage::AcknowledgeAuthentication { success: false }
    );
    drop(a);
}

#[tokio::test]
async fn a_restart_that_gives_up_before_it_is_attached_leaves_the_session_held() {
    // The newcomer's handshake times out (1 s) while the bridge still waits
    // for the old socket to answer its ping (2.5 s). The session must not
    // attach the abandoned socket: it stays held and expires, so the
    // upstream closes and the nick is freed.
    let bridge = Bridge::start(Config {
        handshake_timeout: Duration::from_secs(1),
        resume_grace: Duration::from_secs(2),
        ..Config::default()
    })
    .await;
    let (proxy, a, key) = proxied_session(&bridge, "zombie").await;
    proxy.freeze();
    let mut b = bridge.connect().await;
    b.send_content(&dumdum_protocol::session::Content::Handshake(
        dumdum_protocol::session::Handshake::restart(2, key.clone(), a.received, None),
    ))
    .await;
    let (code, reason) = b.expect_close().await;
    assert_eq!((code, reason.as_str()), (1008, "handshake timed out"));
    drop(b);
    // Held, then expired: the nick becomes free.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = bridge.session(None).await;
        c.hello().await;
        if c.authenticate("zombie").await
            == (ServerMessage::AcknowledgeAuthentication { success: true })
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never expired: the abandoned socket was attached"
        );
        c.close(1000).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(a);
}

#[tokio::test]
async fn a_large_frame_in_flight_when_the_socket_drops_is_replayed() {
    // A history page of ~100 KiB (more than the bytes the ring used to keep
    // while attached) is on its way to the browser when its socket drops:
    // the resume must replay it, and the frame after it.
    let bridge = Bridge::embedded().await;
    let (proxy, mut a, key) = proxied_session(&bridge, "reader").await;
    let mut f = bridge.session(None).await;
    f.login("writer").await;
    let body = "p".repeat(1000);
    for i in 0..100 {
        f.say("general", &format!("{i:03} {body}")).await;
    }
    a.expect_message(&format!("099 {body}")).await;
    let received = a.received;
    // From now on nothing reaches the browser; the page and one more
    // message pile up on the way.
    proxy.stall();
    a.send(&ClientMessage::ListMessages {
        channel: "general".into(),
        before: 0,
        after: 0,
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.say("general", "after the page").await;
    f.expect_message("after the page").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();

    let mut b = resume(&proxy, &bridge, &key, received).await;
    match b.expect_frame().await {
        ServerMessage::ListMessages(page) => {
            assert_eq!(page.len(), 100);
            assert_eq!(page[99].content, format!("099 {body}"));
        }
        other => panic!("expected the history page first, got {other:?}"),
    }
    b.expect_message("after the page").await;
    let replayed = common::expect_notice(&mut b, "resumed", |n| {
        matches!(n, Notice::SessionResumed { .. })
    })
    .await;
    assert_eq!(replayed, Notice::SessionResumed { replayed: 2 });
}
