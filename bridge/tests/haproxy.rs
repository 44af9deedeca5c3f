//! Several bridges behind a load balancer, for real (issue 8): Debian's
//! `haproxy` 2.6 running the checked-in `deploy/haproxy.cfg` in front of two
//! `dumdum-bridge` processes (`--node b1`, `--node b2`, trusting
//! 127.0.0.1, where haproxy connects from) on loopback, relaying to the real
//! Python `dumdum-server` 0.5.0. Each client socket is bound to its own
//! `127.0.0.x` source address, standing for a different user.
//!
//! - New sessions spread over both nodes, and Again and Success name the
//!   node; 20 of 20 dropped sessions resume on their holder through
//!   `/ws?node=`.
//! - Per-IP caps count the address haproxy forwards (close 1013) while
//!   another address still gets in; an `X-Forwarded-For` sent straight to a
//!   bridge (an untrusted peer) is ignored, and one sent through haproxy
//!   cannot spoof the address.
//! - The page's origin through haproxy is the bridge's own (haproxy sets
//!   `X-Forwarded-Proto` and `X-Forwarded-Host`, replacing a client's).
//! - Drain (SIGTERM with `--drain-timeout`): `/healthz` 404, the `session
//!   draining` notice, held sessions still resume through haproxy, new
//!   sessions land on the other node, a Start on the draining node is
//!   closed with 1012, the rest close with 1012 at the deadline and the
//!   process exits by itself.
//! - A SIGKILLed node: its users' resumes reach the other node (before and
//!   after haproxy marks it DOWN), which answers Again; they log in afresh
//!   there with the same nick and go on chatting.
//! - An idle chat lives by haproxy's `timeout tunnel`, not by its short
//!   `timeout client`/`server`, and the bridge's pings (every 25 s) keep
//!   the tunnel open past it; a tunnel timeout below the ping interval cuts
//!   an idle chat, which then resumes on its holder with nothing lost. The
//!   timeouts are shortened through the environment variables the
//!   checked-in file reads (its defaults are the production ones).
//!
//! Skipped, saying why, when `/usr/sbin/haproxy` is missing, unless
//! `DUMDUM_REQUIRE_PROXIES` is set (`cargo xtask test` installs haproxy and
//! sets it). Every wait is bounded; every process is killed on drop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod lb_kit;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Got, WAIT, WsClient, expect_notice, http_get, off_thread};
use dumdum_protocol::session::{Content, Handshake, HandshakeState, Notice};
use dumdum_testkit::proxy::{HAPROXY, HAPROXY_TIMEOUT_VARS, Haproxy, present_or_skip};
use dumdum_testkit::{DumdumServer, PyPeer};
use lb_kit::*;

/// A Python server, two bridge nodes (`extra` arguments for each, by
/// node) and haproxy in front of them; `None` when the test is skipped.
fn cluster(test: &str, extra: [&[&str]; 2]) -> Option<(DumdumServer, [Node; 2], Haproxy)> {
    cluster_with(test, extra, &[])
}

/// [`cluster`] with environment variables for haproxy's configuration.
fn cluster_with(
    test: &str,
    extra: [&[&str]; 2],
    env: &[(&str, &str)],
) -> Option<(DumdumServer, [Node; 2], Haproxy)> {
    if !present_or_skip(HAPROXY, "haproxy", test) {
        return None;
    }
    let server = DumdumServer::start();
    let nodes = [
        Node::start("b1", server.addr(), extra[0]),
        Node::start("b2", server.addr(), extra[1]),
    ];
    let haproxy = Haproxy::start_with(nodes[0].addr, nodes[1].addr, env);
    Some((server, nodes, haproxy))
}

/// haproxy's `timeout client`, `timeout server` and `timeout tunnel` set
/// to these (in haproxy's format, e.g. `2s`).
fn timeouts<'a>(client: &'a str, server: &'a str, tunnel: &'a str) -> [(&'a str, &'a str); 3] {
    let [c, s, t] = HAPROXY_TIMEOUT_VARS;
    [(c, client), (s, server), (t, tunnel)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_both_nodes_and_resume_on_their_holder() {
    let Some((_server, _nodes, haproxy)) =
        cluster("the haproxy spread and resume test", [&[], &[]])
    else {
        return;
    };
    // 20 users, each from its own address, log in through haproxy.
    let mut users = Vec::new();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..20u8 {
        let (mut c, node) = new_session(10 + i, haproxy.addr).await;
        c.login(&format!("spread{i}")).await;
        *per_node.entry(node.clone()).or_default() += 1;
        users.push((i, c, node));
    }
    assert_eq!(
        per_node.keys().map(String::as_str).collect::<Vec<_>>(),
        ["b1", "b2"],
        "new sessions land on both nodes: {per_node:?}"
    );
    // Every WebSocket drops (no close frame: a network change).
    let dropped: Vec<(u8, String, u64, String)> = users
        .into_iter()
        .map(|(i, c, node)| (i, c.key.clone().unwrap(), c.received, node))
        .collect();
    // Each resumes through haproxy at /ws?node=<its node>.
    let mut resumed = 0;
    for (i, key, received, node) in dropped {
        let mut c = ws_from(10 + i, haproxy.addr, &resume_path(&node), &[])
            .await
            .expect("upgrade");
        let h = c.restart(&key, received).await;
        assert_eq!(h.state(), HandshakeState::Success, "user {i}: {h:?}");
        assert_eq!(h.resumed, Some(true), "user {i} resumed: {h:?}");
        assert_eq!(node_of(&h), node, "user {i} resumed on its holder");
        // The same upstream connection: no new login, the nick still works.
        let text = format!("back {i}");
        c.say("general", &text).await;
        let m = c.expect_message(&text).await;
        assert_eq!(m.nick, format!("spread{i}"));
        resumed += 1;
    }
    assert_eq!(resumed, 20, "20 of 20 dropped sessions resumed");
}

/// Sends Start (and the Restart its Again asks for) and returns the close
/// the bridge answers with.
async fn start_refused(c: &mut common::WsClient) -> (u16, String) {
    c.send_content(&Content::Handshake(Handshake::start(2, Some("py".into()))))
        .await;
    loop {
        match c.next().await {
            Got::Text(Content::Handshake(h)) if h.state() == HandshakeState::Again => {
                let key = h.session.clone().expect("a key");
                c.send_content(&Content::Handshake(Handshake::restart(3, key, 0, None)))
                    .await;
            }
            Got::Close(code, reason) => return (code, reason),
            Got::Ended => panic!("ended without a close frame"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_caps_count_the_forwarded_address_and_ignore_untrusted_headers() {
    const CAP: [&str; 2] = ["--max-sessions-per-ip", "2"];
    let Some((_server, nodes, haproxy)) = cluster("the haproxy per-IP cap test", [&CAP, &CAP])
    else {
        return;
    };
    let to_b1 = resume_path("b1");
    // 127.0.0.2 opens two sessions on b1 through haproxy: its cap.
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut c = ws_from(2, haproxy.addr, &to_b1, &[]).await.unwrap();
        let ok = c.handshake(Some("py")).await;
        assert_eq!(node_of(&ok), "b1");
        kept.push(c);
    }
    // A third from 127.0.0.2 is refused with 1013 (try again later) ...
    let mut third = ws_from(2, haproxy.addr, &to_b1, &[]).await.unwrap();
    let (code, reason) = close_of(&mut third).await;
    assert_eq!(code, 1013, "{reason}");
    // ... also when it claims another address itself: haproxy appends the
    // real one, and the bridge takes the rightmost untrusted entry.
    let mut spoof = ws_from(
        2,
        haproxy.addr,
        &to_b1,
        &[("X-Forwarded-For", "127.0.0.77")],
    )
    .await
    .unwrap();
    let (code, reason) = close_of(&mut spoof).await;
    assert_eq!(code, 1013, "{reason}");
    // Another user, 127.0.0.3, still gets in on the same node through the
    // same proxy address.
    let mut other = ws_from(3, haproxy.addr, &to_b1, &[]).await.unwrap();
    let ok = other.handshake(Some("py")).await;
    assert_eq!(node_of(&ok), "b1");
    other.login("another-user").await;

    // Straight to b1 from 127.0.0.4, an untrusted peer: its X-Forwarded-For
    // is ignored, so three different claimed addresses are one address.
    let mut direct = Vec::new();
    for claimed in ["127.0.0.50", "127.0.0.51"] {
        let mut c = ws_from(4, nodes[0].addr, "/ws", &[("X-Forwarded-For", claimed)])
            .await
            .unwrap();
        c.handshake(Some("py")).await;
        direct.push(c);
    }
    let mut c = ws_from(
        4,
        nodes[0].addr,
        "/ws",
        &[("X-Forwarded-For", "127.0.0.52")],
    )
    .await
    .unwrap();
    let (code, reason) = close_of(&mut c).await;
    assert_eq!(code, 1013, "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_keeps_its_resumes_then_closes_with_1012_and_exits() {
    const DRAIN_S: u64 = 15;
    let drain = format!("{DRAIN_S}s");
    let b1_args = ["--drain-timeout", drain.as_str()];
    let Some((_server, mut nodes, mut haproxy)) =
        cluster("the haproxy drain test", [&b1_args, &[]])
    else {
        return;
    };
    let to_b1 = resume_path("b1");
    // An attached session and a held one on b1.
    let mut attached = ws_from(20, haproxy.addr, &to_b1, &[]).await.unwrap();
    assert_eq!(node_of(&attached.handshake(Some("py")).await), "b1");
    attached.login("drain-attached").await;
    let mut held = ws_from(21, haproxy.addr, &to_b1, &[]).await.unwrap();
    assert_eq!(node_of(&held.handshake(Some("py")).await), "b1");
    held.login("drain-held").await;
    let (held_key, held_received) = (held.key.clone().unwrap(), held.received);
    drop(held);

    let signalled = Instant::now();
    nodes[0].daemon.signal("TERM");
    // /healthz says 404 draining.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _, body) = http_get(nodes[0].addr, "/healthz").await;
        if status == 404 {
            assert!(body.contains("draining"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "/healthz still {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The attached session is told, with the deadline.
    let notice = expect_notice(&mut attached, "session draining", |n| {
        matches!(n, Notice::SessionDraining { .. })
    })
    .await;
    let Notice::SessionDraining { deadline_s } = notice else {
        unreachable!()
    };
    assert!(
        (1..=DRAIN_S).contains(&deadline_s),
        "deadline_s {deadline_s}"
    );
    // A Start straight to the draining node is refused with 1012.
    let mut late = ws_from(22, nodes[0].addr, "/ws", &[]).await.unwrap();
    let (code, reason) = start_refused(&mut late).await;
    assert_eq!(code, 1012, "{reason}");
    // haproxy's health check sees the 404: b1 takes no new sessions ...
    haproxy.wait_server_state("b1", "is stopping", WAIT);
    // ... but still gets its resumes.
    let mut back = ws_from(21, haproxy.addr, &to_b1, &[]).await.unwrap();
    let h = back.restart(&held_key, held_received).await;
    assert_eq!(h.state(), HandshakeState::Success, "{h:?}");
    assert_eq!(h.resumed, Some(true), "{h:?}");
    assert_eq!(node_of(&h), "b1");
    back.say("general", "still here while draining").await;
    back.expect_message("still here while draining").await;
    // New sessions land on b2 only.
    let mut newcomers = Vec::new();
    for i in 0..4u8 {
        let (c, node) = new_session(30 + i, haproxy.addr).await;
        assert_eq!(node, "b2", "new session {i} during the drain");
        newcomers.push(c);
    }
    // At the deadline the rest close with 1012 (service restart).
    for c in [&mut attached, &mut back] {
        let (code, reason) = close_of(c).await;
        assert_eq!(code, 1012, "{reason}");
        assert!(
            signalled.elapsed() + Duration::from_secs(1) >= Duration::from_secs(deadline_s),
            "closed at the deadline, not before ({:?})",
            signalled.elapsed()
        );
    }
    // And the process exits by itself, successfully.
    let status = nodes[0].daemon.wait_exit(START);
    assert!(status.success(), "b1 exited with {status}");
    // The other node's users are untouched by b1's exit.
    for (i, c) in newcomers.iter_mut().enumerate() {
        c.login(&format!("newcomer{i}")).await;
    }
    newcomers[0].say("general", "after the drain").await;
    for c in &mut newcomers {
        c.expect_message("after the drain").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_killed_node_continue_on_the_other_after_a_fresh_login() {
    let Some((_server, mut nodes, mut haproxy)) = cluster("the haproxy crash test", [&[], &[]])
    else {
        return;
    };
    let to_b1 = resume_path("b1");
    let mut users = Vec::new();
    for (i, nick) in [(40u8, "crash-early"), (41, "crash-late")] {
        let mut c = ws_from(i, haproxy.addr, &to_b1, &[]).await.unwrap();
        assert_eq!(node_of(&c.handshake(Some("py")).await), "b1");
        c.login(nick).await;
        users.push((i, nick, c.key.clone().unwrap(), c.received));
    }
    nodes[0].daemon.signal("KILL");
    let status = nodes[0].daemon.wait_exit(START);
    assert!(!status.success(), "b1 was killed: {status}");
    let ha = haproxy.addr;
    let resume_and_continue = async |(i, nick, key, received): (u8, &str, String, u64)| {
        // The page resumes at /ws?node=b1; haproxy sends it to b2.
        let mut c = ws_from(i, ha, &to_b1, &[]).await.unwrap();
        let again = c.restart(&key, received).await;
        assert_eq!(again.state(), HandshakeState::Again, "{nick}: {again:?}");
        assert_eq!(node_of(&again), "b2", "{nick}");
        let fresh = again.session.clone().expect("a new key");
        assert_ne!(fresh, key);
        let ok = c.restart(&fresh, 0).await;
        assert_eq!(ok.state(), HandshakeState::Success, "{nick}: {ok:?}");
        assert_eq!(ok.resumed, Some(false));
        assert_eq!(node_of(&ok), "b2");
        // A fresh login with the same nick (once the server has seen b1's
        // connection go).
        login_retrying(&mut c, nick).await;
        let text = format!("{nick} is back");
        c.say("general", &text).await;
        let m = c.expect_message(&text).await;
        assert_eq!(m.nick, nick);
        c
    };
    let mut users = users.into_iter();
    // At once, before haproxy's health check noticed: the connection to b1
    // is refused and haproxy redispatches.
    let early = resume_and_continue(users.next().unwrap()).await;
    // After haproxy marked b1 DOWN: plain balancing.
    haproxy.wait_server_state("b1", "is DOWN", WAIT);
    let late = resume_and_continue(users.next().unwrap()).await;
    drop((early, late));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_seen_through_haproxy_is_the_one_the_browser_used() {
    let Some((_server, _nodes, haproxy)) = cluster("the haproxy origin test", [&[], &[]]) else {
        return;
    };
    // The page was loaded from haproxy's address: its WebSocket is the
    // bridge's own origin (X-Forwarded-Proto and -Host set by haproxy).
    let own = format!("http://{}", haproxy.addr);
    let mut c = ws_from(50, haproxy.addr, "/ws", &[("Origin", &own)])
        .await
        .expect("own origin accepted");
    c.handshake(Some("py")).await;
    // Another site's page is refused, even claiming the headers itself
    // (haproxy replaces them).
    let refused = ws_from(
        51,
        haproxy.addr,
        "/ws",
        &[
            ("Origin", "https://evil.example"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "https"),
        ],
    )
    .await;
    assert_eq!(refused.err(), Some(403));
    // The wrong scheme for this origin, too.
    let https = format!("https://{}", haproxy.addr);
    let refused = ws_from(52, haproxy.addr, "/ws", &[("Origin", &https)]).await;
    assert_eq!(refused.err(), Some(403));
}

/// Reads `c` (answering the bridge's pings, as a browser does) until it has
/// heard nothing but pings for `idle`; returns how long that took. Panics
/// if the connection ends or closes meanwhile, or if it never goes quiet
/// for that long within `2 * idle + WAIT`.
async fn stay_idle(c: &mut WsClient, who: &str, idle: Duration) -> Duration {
    let start = Instant::now();
    let bound = start + 2 * idle + WAIT;
    let mut last = Instant::now();
    loop {
        let now = Instant::now();
        assert!(now < bound, "{who}: never quiet for {idle:?}");
        let Some(left) = (last + idle).checked_duration_since(now) else {
            return start.elapsed();
        };
        // In short slices: a ping restarts `next_within`'s wait.
        match c.next_within(left.min(Duration::from_secs(5))).await {
            None => {}
            // Acks and other notices, or a late frame: activity.
            Some(Got::Text(_) | Got::Frame(..)) => last = Instant::now(),
            Some(Got::Close(code, reason)) => panic!(
                "{who}: closed ({code} {reason}) after {:?} of quiet",
                last.elapsed()
            ),
            Some(Got::Ended) => panic!(
                "{who}: cut without a close frame after {:?} of quiet",
                last.elapsed()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_chat_outlives_haproxys_client_and_server_timeouts_and_its_pings_keep_the_tunnel() {
    // Client and server timeouts far below the idle time, and a tunnel
    // timeout above the bridge's ping interval (25 s) as in the checked-in
    // file (90 s), but short enough to wait past.
    const TUNNEL: Duration = Duration::from_secs(30);
    const IDLE: Duration = Duration::from_secs(38);
    let env = timeouts("2s", "2s", "30s");
    let Some((_server, _nodes, haproxy)) =
        cluster_with("the haproxy idle tunnel test", [&[], &[]], &env)
    else {
        return;
    };
    let (mut a, node_a) = new_session(60, haproxy.addr).await;
    a.login("idle-a").await;
    let (mut b, node_b) = new_session(61, haproxy.addr).await;
    b.login("idle-b").await;
    // Both say nothing for longer than every timeout, the tunnel's
    // included: only the bridge's pings and the answers cross haproxy.
    let (quiet_a, quiet_b) = tokio::join!(
        stay_idle(&mut a, "idle-a", IDLE),
        stay_idle(&mut b, "idle-b", IDLE)
    );
    eprintln!(
        "idle chat through haproxy (timeout client/server 2 s, tunnel {} s): \
         {node_a} and {node_b} quiet for {IDLE:?}, waited {quiet_a:.1?} and {quiet_b:.1?}",
        TUNNEL.as_secs()
    );
    // The same WebSockets (no resume) still carry the chat both ways.
    a.say("general", "still here after the quiet").await;
    b.expect_message("still here after the quiet").await;
    a.expect_message("still here after the quiet").await;
    b.say("general", "me too").await;
    a.expect_message("me too").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_haproxys_tunnel_timeout_an_idle_chat_is_cut_and_resumes_on_its_holder() {
    // A tunnel timeout below the bridge's ping interval (25 s): what a
    // misconfigured proxy does to an idle chat.
    let env = timeouts("2s", "2s", "3s");
    let Some((server, _nodes, haproxy)) =
        cluster_with("the haproxy tunnel timeout test", [&[], &[]], &env)
    else {
        return;
    };
    let (mut c, node) = new_session(62, haproxy.addr).await;
    c.login("cut-idle").await;
    let quiet = Instant::now();
    // haproxy cuts it: no close frame, the TCP connection just ends.
    let cut = loop {
        match c.next_within(WAIT).await {
            Some(Got::Ended) => break quiet.elapsed(),
            Some(Got::Close(code, reason)) => panic!("closed with {code} {reason}, not cut"),
            None => panic!("an idle chat was not cut within {WAIT:?} by a 3 s tunnel timeout"),
            Some(_) => {}
        }
    };
    eprintln!("haproxy (timeout tunnel 3 s) cut an idle chat after {cut:.1?}");
    let (key, received) = (c.key.clone().unwrap(), c.received);
    drop(c);
    // Meanwhile a user of the reference client posts.
    let addr = server.addr();
    let peer = off_thread(move || {
        let mut p = PyPeer::connect(addr, "cut-poster", None);
        assert!(p.expect_auth(), "cut-poster logged in");
        p.send("general", "posted while cut");
        p.expect_message("posted while cut");
        p
    })
    .await;
    // The page resumes at /ws?node=<its node>: the bridge held the session
    // (a connection lost without a close frame) and replays what it missed.
    let mut back = ws_from(62, haproxy.addr, &resume_path(&node), &[])
        .await
        .expect("upgrade");
    let h = back.restart(&key, received).await;
    assert_eq!(h.state(), HandshakeState::Success, "{h:?}");
    assert_eq!(h.resumed, Some(true), "{h:?}");
    assert_eq!(node_of(&h), node);
    let m = back.expect_message("posted while cut").await;
    assert_eq!(m.nick, "cut-poster");
    back.say("general", "back after the cut").await;
    let m = back.expect_message("back after the cut").await;
    assert_eq!(m.nick, "cut-idle");
    off_thread(move || {
        let mut peer = peer;
        peer.expect_message("back after the cut");
    })
    .await;
}
