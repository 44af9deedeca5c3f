//! Shared by the load-balancer tests (`haproxy.rs`, `nginx.rs`): bridge
//! nodes as real `dumdum-bridge` processes (so a test can SIGTERM or
//! SIGKILL one), and WebSocket clients whose TCP source is a chosen
//! `127.0.0.x` address, each standing for a different user. Every wait is
//! bounded.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use dumdum_protocol::ServerMessage;
use dumdum_protocol::session::{Content, Handshake, HandshakeState, NODE_PARAM};
use dumdum_testkit::proxy::Daemon;
use tokio::net::TcpSocket;

use crate::common::{Got, WsClient};

/// Bound of a start or an exit.
pub const START: Duration = Duration::from_secs(30);

/// One `dumdum-bridge` process named `name` (`--node`), on 127.0.0.1:<free>,
/// relaying to one upstream called `py`. Killed on drop.
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    pub daemon: Daemon,
}

impl Node {
    /// Starts it trusting forwarding headers from 127.0.0.1 only (where the
    /// load balancer connects from), with `extra` arguments; returns once it
    /// serves HTTP.
    pub fn start(name: &str, upstream: SocketAddr, extra: &[&str]) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dumdum-bridge"));
        cmd.args(["--listen", "127.0.0.1:0", "--www", "/nonexistent"])
            .args(["--node", name])
            .args(["--trusted-proxy", "127.0.0.1/32"])
            .args(["--upstream", &format!("py={upstream}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let mut daemon = Daemon::spawn(cmd, &format!("dumdum-bridge {name}"));
        let line = daemon.wait_line("the start-up URL", START, |l| l.contains("open http://"));
        let at = line.find("http://").unwrap() + "http://".len();
        let authority: String = line[at..]
            .chars()
            .take_while(|c| *c != '/' && !c.is_whitespace())
            .collect();
        let addr: SocketAddr = authority.parse().expect("the bound address");
        daemon.wait_port(addr, START);
        Node {
            name: name.to_string(),
            addr,
            daemon,
        }
    }
}

/// The path of a resume to `node`: `/ws?node=<node>`.
pub fn resume_path(node: &str) -> String {
    format!("/ws?{NODE_PARAM}={node}")
}

/// A TCP connection to `to` from `127.0.0.<last>` (bound before connect).
pub async fn tcp_from(last: u8, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)))
        .unwrap();
    tokio::time::timeout(crate::common::WAIT, socket.connect(to))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// A WebSocket to `to` at `path` from `127.0.0.<last>`, with extra request
/// headers; the HTTP status on refusal.
pub async fn ws_from(
    last: u8,
    to: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<WsClient, u16> {
    let tcp = tcp_from(last, to).await;
    WsClient::over_with(Box::new(tcp), &format!("ws://{to}{path}"), headers).await
}

/// The node a handshake names (it must name one).
pub fn node_of(h: &Handshake) -> String {
    h.node.clone().unwrap_or_else(|| panic!("no node in {h:?}"))
}

/// A new session from `127.0.0.<last>` through `to`: Start, Again,
/// Restart, Success. Returns the client and the node that named itself in
/// both Again and Success (asserted equal).
pub async fn new_session(last: u8, to: SocketAddr) -> (WsClient, String) {
    let mut c = ws_from(last, to, "/ws", &[]).await.expect("upgrade");
    let ok = c.handshake(Some("py")).await;
    let again_node = c
        .raw_texts
        .iter()
        .filter_map(|t| match Content::parse(t) {
            Ok(Content::Handshake(h)) if h.state() == HandshakeState::Again => Some(node_of(&h)),
            _ => None,
        })
        .next()
        .expect("an Again");
    let node = node_of(&ok);
    assert_eq!(again_node, node, "Again and Success name the same node");
    (c, node)
}

/// HELLO then AUTHENTICATE as `nick`, retrying AUTHENTICATE (bounded)
/// while the server still holds the nick of a connection that just died.
pub async fn login_retrying(c: &mut WsClient, nick: &str) {
    let hello = c.hello().await;
    assert!(matches!(hello, ServerMessage::Hello { .. }), "{hello:?}");
    let deadline = tokio::time::Instant::now() + crate::common::WAIT;
    loop {
        match c.authenticate(nick).await {
            ServerMessage::AcknowledgeAuthentication { success: true } => return,
            ServerMessage::AcknowledgeAuthentication { success: false } => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "nick {nick} still taken after {:?}",
                    crate::common::WAIT
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("authenticating {nick}: {other:?}"),
        }
    }
}

/// Waits for the close frame, skipping frames and notices; `Ended` fails.
pub async fn close_of(c: &mut WsClient) -> (u16, String) {
    loop {
        match c.next().await {
            Got::Close(code, reason) => return (code, reason),
            Got::Ended => panic!("ended without a close frame"),
            _ => {}
        }
    }
}
