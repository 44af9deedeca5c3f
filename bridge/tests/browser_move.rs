//! Moving between bridges, in real browsers (issue 8): headless Chromium,
//! then Firefox ESR (`browser_kit::each_browser`), loads the page from a bridge whose upstream is the real Python
//! `dumdum-server`; that bridge then goes away and another takes its
//! address, as in a rolling restart behind a load balancer. A Python
//! reference client posts while the page is away. The page must sign in
//! again with the same nick on the new bridge, catch up, show "Moved to
//! another server", and show every message exactly once.
//!
//! - `replaced_bridge_answers_again_and_the_page_moves`: the bridge named
//!   `a` shuts down (1001); the page's Restart (at `/ws?node=a`, or at
//!   plain `/ws` once that failed to open) reaches the bridge named `b`,
//!   which answers Again.
//! - `draining_bridge_closes_with_1012_and_the_page_moves`: the bridge
//!   drains (the status counts down), closes with 1012 at its deadline and
//!   exits; the page starts a fresh session on the next bridge.
//! - `busy_bridge_is_retried_later_not_reported_as_an_error`: a bridge at
//!   its per-address cap closes with 1013; the page counts down ("The
//!   server is busy; retrying in N s") and gets in once there is room.
//!
//! Needs what `browser.rs` needs (Chromium, chromedriver, the venv of
//! `cargo xtask setup`, the page bundle built with `cargo xtask dist`, or
//! `DUMDUM_SKIP_DIST=1` to use an existing `target/www`). Every wait is
//! bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_kit;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use browser_kit::*;
use dumdum_bridge::{Config, Shutdown, UpstreamConfig};
use dumdum_testkit::{DumdumServer, PyPeer};
use fantoccini::Client;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One bridge instance on a fixed address, so that the next instance can
/// take the same address (the page's origin) after it is gone.
struct Node {
    addr: SocketAddr,
    now: CancellationToken,
    drain: CancellationToken,
    task: Option<JoinHandle<Result<(), dumdum_bridge::Error>>>,
}

impl Node {
    /// A bridge named `node` on `addr` (port 0: any), serving the page at
    /// `www`, with the one upstream "local" at `upstream`.
    async fn start(
        addr: SocketAddr,
        node: Option<&str>,
        drain_timeout: Duration,
        upstream: SocketAddr,
        www: PathBuf,
    ) -> Node {
        let config = Config {
            upstreams: vec![UpstreamConfig::new("local", upstream.to_string())],
            www,
            node: node.map(str::to_owned),
            drain_timeout,
            ..Config::default()
        };
        Node::start_with(addr, config).await
    }

    /// A bridge running `config` on `addr`.
    async fn start_with(addr: SocketAddr, config: Config) -> Node {
        common::init_tracing();
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        // The previous instance's connections may linger in TIME_WAIT.
        sock.set_reuseaddr(true).unwrap();
        sock.bind(addr).unwrap();
        let listener = sock.listen(1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let now = CancellationToken::new();
        let drain = CancellationToken::new();
        let task = tokio::spawn(dumdum_bridge::run(
            config,
            listener,
            Shutdown {
                drain: drain.clone(),
                now: now.clone(),
            },
        ));
        let deadline = tokio::time::Instant::now() + WAIT;
        while common::http_get(addr, "/healthz").await.0 != 200 {
            assert!(!task.is_finished(), "the bridge stopped while starting");
            assert!(tokio::time::Instant::now() < deadline, "bridge not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Node {
            addr,
            now,
            drain,
            task: Some(task),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Waits (bounded) for `run` to return; true if it did, successfully.
    async fn exited_within(&mut self, t: Duration) -> bool {
        let Some(task) = self.task.as_mut() else {
            return true;
        };
        match tokio::time::timeout(t, task).await {
            Ok(r) => {
                r.expect("bridge task").expect("bridge run result");
                self.task = None;
                true
            }
            Err(_) => false,
        }
    }

    /// Shuts down at once (1001) and waits for it.
    async fn stop(&mut self) {
        self.now.cancel();
        assert!(self.exited_within(WAIT).await, "the bridge did not stop");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.now.cancel();
    }
}

/// The stored session's `node` (`null` when none).
async fn stored_node(c: &Client) -> Value {
    js(
        c,
        "const s = sessionStorage.getItem('dumdum.session'); return s ? (JSON.parse(s).node ?? null) : 'no session'",
    )
    .await
}

/// The texts of the messages shown, in order.
async fn shown_texts(c: &Client) -> Value {
    js(
        c,
        "return [...document.querySelectorAll('#messages .msg-text')].map(e => e.textContent)",
    )
    .await
}

/// Shows `channel` and waits until it is the one shown.
async fn open_channel(c: &Client, channel: &str) {
    js(
        c,
        &format!("document.querySelector('.channel[data-channel={channel}]').click(); return null"),
    )
    .await;
    wait_channel_shown(c, &format!("{channel} shown"), channel).await;
}

/// Posts `texts` to `channel` from the Python client; returns once the
/// server has broadcast the last one (its echo reached the client).
fn post_all(py: &mut PyPeer, channel: &str, texts: &[&str]) {
    for t in texts {
        py.send(channel, t);
    }
    if let Some(last) = texts.last() {
        blocking(|| py.expect_message(last));
    }
}

/// Waits until every text of `expected` is shown, then checks that the
/// shown list is exactly `expected` (each once, in order).
async fn expect_exactly(c: &Client, what: &str, expected: &[&str]) -> Result<(), String> {
    for text in expected {
        wait_js(
            c,
            &format!("{what}: {text}"),
            &format!("{} >= 1", count_text(text)),
        )
        .await;
    }
    let shown = shown_texts(c).await;
    if shown != json!(expected) {
        return Err(format!("{what}: shown {shown}, expected {expected:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replaced_bridge_answers_again_and_the_page_moves() {
    each_browser("replaced_bridge_answers_again_and_the_page_moves", |_| {
        replaced_bridge_answers_again_and_the_page_moves_once()
    })
    .await;
}

async fn replaced_bridge_answers_again_and_the_page_moves_once() {
    let www = bundle();
    let server = DumdumServer::start();
    let upstream = server.addr();
    let mut py = blocking(|| PyPeer::connect(upstream, "pyposter", None));
    assert!(blocking(|| py.expect_auth()));
    let a = Node::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some("a"),
        Duration::ZERO,
        upstream,
        www.clone(),
    )
    .await;
    let b = Browser::start("move-again").await;
    let result = replaced_scenario(&b.c, a, upstream, www, &mut py).await;
    b.finish("move-again-last.png", result).await;
    drop(server);
}

async fn replaced_scenario(
    c: &Client,
    mut a: Node,
    upstream: SocketAddr,
    www: PathBuf,
    py: &mut PyPeer,
) -> Result<(), String> {
    const NICK: &str = "traveller";
    c.goto(&a.url()).await.map_err(|e| e.to_string())?;
    wait_connect_screen(c, "connect screen").await;
    join_as(c, NICK).await;
    wait_status(c, "connected status", "startsWith('Connected to local')").await;
    wait_channel_shown(c, "general shown", "general").await;
    post_all(py, "general", &["before 1"]);
    wait_shown_once(c, "live message", "before 1").await;
    // The node is kept with the session (the key never goes in a URL).
    assert_eq!(stored_node(c).await, json!("a"));

    // The bridge goes away (a rolling restart without drain: 1001); its
    // upstream connection closes, so the nick is free again.
    a.stop().await;
    wait_status(c, "disconnected status", "startsWith('Disconnected')").await;
    post_all(py, "general", &["away 1", "away 2", "away 3"]);
    post_all(py, "random", &["away elsewhere"]);

    // Another bridge, named b, takes the address: the page's Restart at
    // /ws?node=a reaches it and gets Again.
    let b = Node::start(a.addr, Some("b"), Duration::ZERO, upstream, www).await;
    let status = wait_status(
        c,
        "moved status",
        "startsWith('Moved to another server · Connected to local')",
    )
    .await;
    eprintln!("move (Again): status {status}");
    assert_eq!(
        js(c, "return document.querySelector('#me-nick')?.textContent").await,
        json!(NICK),
        "the same nick"
    );
    expect_exactly(
        c,
        "general after the move",
        &["before 1", "away 1", "away 2", "away 3"],
    )
    .await?;
    assert_eq!(stored_node(c).await, json!("b"));
    open_channel(c, "random").await;
    expect_exactly(c, "random after the move", &["away elsewhere"]).await?;
    let _ = screenshot(c, "move-again.png").await;

    // The conversation goes on, both ways.
    type_into(c, "#composer-input", "from the new bridge\u{E007}").await;
    blocking(|| py.expect_message("from the new bridge"));
    post_all(py, "random", &["welcome"]);
    expect_exactly(
        c,
        "random later",
        &["away elsewhere", "from the new bridge", "welcome"],
    )
    .await?;
    drop(b);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_bridge_closes_with_1012_and_the_page_moves() {
    each_browser(
        "draining_bridge_closes_with_1012_and_the_page_moves",
        |_| draining_bridge_closes_with_1012_and_the_page_moves_once(),
    )
    .await;
}

async fn draining_bridge_closes_with_1012_and_the_page_moves_once() {
    let www = bundle();
    let server = DumdumServer::start();
    let upstream = server.addr();
    let mut py = blocking(|| PyPeer::connect(upstream, "pydrainer", None));
    assert!(blocking(|| py.expect_auth()));
    // No node name: the page does not leave early (see
    // `Engine::move_if_quiet`), so the session ends with the bridge's 1012.
    let a = Node::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        Duration::from_secs(3),
        upstream,
        www.clone(),
    )
    .await;
    let b = Browser::start("move-1012").await;
    let result = drain_scenario(&b.c, a, upstream, www, &mut py).await;
    b.finish("move-1012-last.png", result).await;
    drop(server);
}

async fn drain_scenario(
    c: &Client,
    mut a: Node,
    upstream: SocketAddr,
    www: PathBuf,
    py: &mut PyPeer,
) -> Result<(), String> {
    const NICK: &str = "drained";
    c.goto(&a.url()).await.map_err(|e| e.to_string())?;
    wait_connect_screen(c, "connect screen").await;
    join_as(c, NICK).await;
    wait_status(c, "connected status", "startsWith('Connected to local')").await;
    wait_channel_shown(c, "general shown", "general").await;
    post_all(py, "general", &["before drain"]);
    wait_shown_once(c, "live message", "before drain").await;

    a.drain.cancel();
    let status = wait_status(
        c,
        "draining status",
        "startsWith('This server is restarting; moving you within')",
    )
    .await;
    eprintln!("drain: status {status}");
    // The session goes on while the bridge drains.
    post_all(py, "general", &["while draining"]);
    wait_shown_once(c, "message while draining", "while draining").await;

    // The deadline: 1012, and the bridge exits by itself.
    assert!(
        a.exited_within(WAIT).await,
        "the draining bridge did not exit"
    );
    post_all(py, "general", &["gone 1", "gone 2"]);
    let b = Node::start(a.addr, None, Duration::ZERO, upstream, www).await;
    let status = wait_status(
        c,
        "moved status",
        "startsWith('Moved to another server · Connected to local')",
    )
    .await;
    eprintln!("move (1012): status {status}");
    assert_eq!(
        js(c, "return document.querySelector('#me-nick')?.textContent").await,
        json!(NICK),
        "the same nick"
    );
    expect_exactly(
        c,
        "general after the move",
        &["before drain", "while draining", "gone 1", "gone 2"],
    )
    .await?;
    let _ = screenshot(c, "move-1012.png").await;
    post_all(py, "general", &["after the move"]);
    expect_exactly(
        c,
        "general later",
        &[
            "before drain",
            "while draining",
            "gone 1",
            "gone 2",
            "after the move",
        ],
    )
    .await?;
    drop(b);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_bridge_is_retried_later_not_reported_as_an_error() {
    each_browser(
        "busy_bridge_is_retried_later_not_reported_as_an_error",
        |_| busy_bridge_is_retried_later_not_reported_as_an_error_once(),
    )
    .await;
}

async fn busy_bridge_is_retried_later_not_reported_as_an_error_once() {
    let www = bundle();
    let server = DumdumServer::start();
    let upstream = server.addr();
    let mut py = blocking(|| PyPeer::connect(upstream, "pybusy", None));
    assert!(blocking(|| py.expect_auth()));
    let node = Node::start_with(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Config {
            upstreams: vec![UpstreamConfig::new("local", upstream.to_string())],
            www,
            max_sessions_per_ip: 1,
            ..Config::default()
        },
    )
    .await;
    // Another session from this address takes the only place.
    let mut holder = common::WsClient::connect(&format!("ws://{}/ws", node.addr), None).await;
    holder.handshake(None).await;
    let b = Browser::start("busy").await;
    let result = busy_scenario(&b.c, &node, holder, &mut py).await;
    b.finish("busy-last.png", result).await;
    drop(node);
    drop(server);
}

async fn busy_scenario(
    c: &Client,
    node: &Node,
    mut holder: common::WsClient,
    py: &mut PyPeer,
) -> Result<(), String> {
    c.goto(&node.url()).await.map_err(|e| e.to_string())?;
    wait_connect_screen(c, "connect screen").await;
    join_as(c, "patient").await;
    // 1013: a countdown in plain words, not a protocol error.
    let status = wait_status(
        c,
        "busy status",
        "startsWith('The server is busy; retrying in ')",
    )
    .await;
    eprintln!("busy: status {status}");
    let text = js(c, "return document.querySelector('#status')?.textContent").await;
    if text.as_str().is_some_and(|t| t.contains("Protocol")) {
        return Err(format!(
            "a capacity close shown as a protocol error: {text}"
        ));
    }
    let _ = screenshot(c, "busy.png").await;
    // The place is free again: the page gets in on a later attempt by
    // itself (the busy backoff is at most 7.5 s the first time).
    holder.close(1000).await;
    wait_js_for(
        c,
        "connected after the busy backoff",
        "const t = document.querySelector('#status')?.textContent; return t && t.includes('Connected to local') ? t : null",
        Duration::from_secs(60),
    )
    .await;
    post_all(py, "general", &["you are in"]);
    wait_shown_once(c, "message after getting in", "you are in").await;
    Ok(())
}
