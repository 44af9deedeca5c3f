//! The same routing as `haproxy.rs`, through Debian's `nginx` 1.22 running
//! the checked-in `deploy/nginx.conf` (its `${...}` addresses substituted as
//! the file says, with `envsubst`) in front of two `dumdum-bridge` processes
//! (`b1`, `b2`, trusting 127.0.0.1) and the real Python `dumdum-server`.
//! Client sockets bind to distinct `127.0.0.x` addresses.
//!
//! - New sessions spread over both nodes and name their node; every
//!   dropped session resumes on its holder through `/ws?node=`.
//! - Per-IP caps count the address nginx forwards (1013), and another
//!   address still gets in.
//! - A SIGKILLed node: a resume meant for it reaches the other node (the
//!   `backup` server of its group), which answers Again.
//!
//! Skipped, saying why, when `/usr/sbin/nginx` is missing, unless
//! `DUMDUM_REQUIRE_PROXIES` is set (`cargo xtask test` sets it). Every wait
//! is bounded; every process is killed on drop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod lb_kit;

use std::collections::BTreeMap;

use dumdum_protocol::session::HandshakeState;
use dumdum_testkit::DumdumServer;
use dumdum_testkit::proxy::{NGINX, Nginx, present_or_skip};
use lb_kit::*;

fn cluster(test: &str, extra: &[&str]) -> Option<(DumdumServer, [Node; 2], Nginx)> {
    if !present_or_skip(NGINX, "nginx", test) {
        return None;
    }
    let server = DumdumServer::start();
    let nodes = [
        Node::start("b1", server.addr(), extra),
        Node::start("b2", server.addr(), extra),
    ];
    let nginx = Nginx::start(nodes[0].addr, nodes[1].addr);
    Some((server, nodes, nginx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_spreads_sessions_and_routes_resumes_to_their_holder() {
    let Some((_server, _nodes, nginx)) = cluster("the nginx routing test", &[]) else {
        return;
    };
    let mut users = Vec::new();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..10u8 {
        let (mut c, node) = new_session(10 + i, nginx.addr).await;
        c.login(&format!("ngx{i}")).await;
        *per_node.entry(node.clone()).or_default() += 1;
        users.push((i, c.key.clone().unwrap(), c.received, node));
        // The WebSocket drops without a close frame.
        drop(c);
    }
    assert_eq!(
        per_node.keys().map(String::as_str).collect::<Vec<_>>(),
        ["b1", "b2"],
        "new sessions land on both nodes: {per_node:?}"
    );
    for (i, key, received, node) in users {
        let mut c = ws_from(10 + i, nginx.addr, &resume_path(&node), &[])
            .await
            .expect("upgrade");
        let h = c.restart(&key, received).await;
        assert_eq!(h.state(), HandshakeState::Success, "user {i}: {h:?}");
        assert_eq!(h.resumed, Some(true), "user {i}: {h:?}");
        assert_eq!(node_of(&h), node, "user {i} resumed on its holder");
        let text = format!("ngx back {i}");
        c.say("general", &text).await;
        assert_eq!(c.expect_message(&text).await.nick, format!("ngx{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_forwards_the_client_address_for_per_ip_caps() {
    let Some((_server, _nodes, nginx)) =
        cluster("the nginx per-IP cap test", &["--max-sessions-per-ip", "2"])
    else {
        return;
    };
    let to_b1 = resume_path("b1");
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut c = ws_from(2, nginx.addr, &to_b1, &[]).await.unwrap();
        assert_eq!(node_of(&c.handshake(Some("py")).await), "b1");
        kept.push(c);
    }
    // nginx appends the real address to a claimed one: still 127.0.0.2.
    let mut third = ws_from(2, nginx.addr, &to_b1, &[("X-Forwarded-For", "127.0.0.77")])
        .await
        .unwrap();
    let (code, reason) = close_of(&mut third).await;
    assert_eq!(code, 1013, "{reason}");
    let mut other = ws_from(3, nginx.addr, &to_b1, &[]).await.unwrap();
    assert_eq!(node_of(&other.handshake(Some("py")).await), "b1");
    other.login("ngx-other").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_sends_a_dead_nodes_resumes_to_the_other_node() {
    let Some((_server, mut nodes, nginx)) = cluster("the nginx crash test", &[]) else {
        return;
    };
    let mut c = ws_from(40, nginx.addr, &resume_path("b1"), &[])
        .await
        .unwrap();
    assert_eq!(node_of(&c.handshake(Some("py")).await), "b1");
    c.login("ngx-crash").await;
    let (key, received) = (c.key.clone().unwrap(), c.received);
    nodes[0].daemon.signal("KILL");
    nodes[0].daemon.wait_exit(START);
    drop(c);
    let mut c = ws_from(40, nginx.addr, &resume_path("b1"), &[])
        .await
        .unwrap();
    let again = c.restart(&key, received).await;
    assert_eq!(again.state(), HandshakeState::Again, "{again:?}");
    assert_eq!(node_of(&again), "b2");
    let ok = c.restart(&again.session.clone().unwrap(), 0).await;
    assert_eq!(ok.state(), HandshakeState::Success, "{ok:?}");
    login_retrying(&mut c, "ngx-crash").await;
    c.say("general", "ngx moved").await;
    c.expect_message("ngx moved").await;
}
