//! A crashed bridge behind HAProxy, in a real browser (issue 8, "Done
//! when"): Debian's `haproxy` with the checked-in `deploy/haproxy.cfg` in
//! front of two `dumdum-bridge` processes (`b1`, `b2`) relaying to the real
//! Python `dumdum-server`; headless Chromium, then Firefox ESR
//! (`browser_kit::each_browser`), loads the page through
//! HAProxy and signs in. The node holding the page's session is SIGKILLed;
//! a Python reference client posts while the page is away. The page's
//! resume (`/ws?node=<dead node>`) reaches the other node, which answers
//! Again; the page signs in again with the same nick, says "Moved to
//! another server" and shows every message exactly once.
//!
//! Needs what `browser.rs` needs, and `/usr/sbin/haproxy` (skipped, saying
//! why, when it is missing, unless `DUMDUM_REQUIRE_PROXIES` is set, as
//! `cargo xtask test` does). Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_kit;
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use browser_kit::*;
use dumdum_testkit::proxy::{Daemon, HAPROXY, Haproxy, present_or_skip};
use dumdum_testkit::{DumdumServer, PyPeer};
use fantoccini::Client;
use serde_json::{Value, json};

/// A `dumdum-bridge` process named `name`, serving the page at `www`,
/// relaying to the one upstream "local" at `upstream`, trusting the
/// forwarding headers of HAProxy (on 127.0.0.1). Killed on drop.
struct Node {
    name: String,
    addr: SocketAddr,
    daemon: Daemon,
}

impl Node {
    fn start(name: &str, upstream: SocketAddr, www: &Path) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dumdum-bridge"));
        cmd.args(["--listen", "127.0.0.1:0"])
            .arg("--www")
            .arg(www)
            .args(["--node", name])
            .args(["--trusted-proxy", "127.0.0.1/32"])
            .args(["--upstream", &format!("local={upstream}")])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let mut daemon = Daemon::spawn(cmd, &format!("dumdum-bridge {name}"));
        let line = daemon.wait_line("the start-up URL", WAIT, |l| l.contains("open http://"));
        let at = line.find("http://").unwrap() + "http://".len();
        let authority: String = line[at..]
            .chars()
            .take_while(|c| *c != '/' && !c.is_whitespace())
            .collect();
        let addr: SocketAddr = authority.parse().expect("the bound address");
        daemon.wait_port(addr, WAIT);
        Node {
            name: name.to_owned(),
            addr,
            daemon,
        }
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

/// Posts `texts` to `channel` from the Python client; returns once the
/// server has broadcast the last one.
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
    let shown = js(
        c,
        "return [...document.querySelectorAll('#messages .msg-text')].map(e => e.textContent)",
    )
    .await;
    if shown != json!(expected) {
        return Err(format!("{what}: shown {shown}, expected {expected:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_bridge_behind_haproxy_moves_the_page_without_loss() {
    each_browser(
        "a_killed_bridge_behind_haproxy_moves_the_page_without_loss",
        |_| a_killed_bridge_behind_haproxy_moves_the_page_without_loss_once(),
    )
    .await;
}

async fn a_killed_bridge_behind_haproxy_moves_the_page_without_loss_once() {
    if !present_or_skip(
        HAPROXY,
        "haproxy",
        "a_killed_bridge_behind_haproxy_moves_the_page_without_loss",
    ) {
        return;
    }
    let www = bundle();
    let server = DumdumServer::start();
    let upstream = server.addr();
    let mut py = blocking(|| PyPeer::connect(upstream, "pywitness", None));
    assert!(blocking(|| py.expect_auth()));
    let nodes = [
        Node::start("b1", upstream, &www),
        Node::start("b2", upstream, &www),
    ];
    let haproxy = Haproxy::start(nodes[0].addr, nodes[1].addr);
    let b = Browser::start("haproxy").await;
    let result = killed_scenario(&b.c, &haproxy, nodes, &mut py).await;
    b.finish("haproxy-last.png", result).await;
    drop(haproxy);
    drop(server);
}

async fn killed_scenario(
    c: &Client,
    haproxy: &Haproxy,
    mut nodes: [Node; 2],
    py: &mut PyPeer,
) -> Result<(), String> {
    const NICK: &str = "survivor";
    c.goto(&format!("http://{}/", haproxy.addr))
        .await
        .map_err(|e| e.to_string())?;
    wait_connect_screen(c, "connect screen").await;
    join_as(c, NICK).await;
    wait_status(c, "connected status", "startsWith('Connected to local')").await;
    wait_channel_shown(c, "general shown", "general").await;
    post_all(py, "general", &["before the crash"]);
    wait_shown_once(c, "live message", "before the crash").await;
    let holder = stored_node(c).await;
    let holder = holder
        .as_str()
        .ok_or_else(|| format!("no node stored with the session: {holder}"))?
        .to_owned();
    let (dead, alive) = match nodes.iter().position(|n| n.name == holder) {
        Some(0) => (0, 1),
        Some(_) => (1, 0),
        None => return Err(format!("the session names an unknown node {holder}")),
    };
    eprintln!("haproxy: the session is held by {holder}");

    // The holder crashes: no close frame, no drain.
    nodes[dead].daemon.signal("KILL");
    nodes[dead].daemon.wait_exit(WAIT);
    post_all(
        py,
        "general",
        &["while down 1", "while down 2", "while down 3"],
    );
    post_all(py, "random", &["while down elsewhere"]);

    // HAProxy sends the resume for the dead node to the other one (a DOWN
    // server's use-server rule does not apply; before it is marked DOWN,
    // `option redispatch` retries elsewhere), which answers Again.
    let status = wait_js_for(
        c,
        "moved status",
        "const t = document.querySelector('#status')?.textContent; return t && t.startsWith('Moved to another server · Connected to local') ? t : null",
        Duration::from_secs(60),
    )
    .await;
    eprintln!("haproxy: status {status}");
    assert_eq!(
        js(c, "return document.querySelector('#me-nick')?.textContent").await,
        json!(NICK),
        "the same nick"
    );
    expect_exactly(
        c,
        "general after the move",
        &[
            "before the crash",
            "while down 1",
            "while down 2",
            "while down 3",
        ],
    )
    .await?;
    assert_eq!(stored_node(c).await, json!(nodes[alive].name));
    js(
        c,
        "document.querySelector('.channel[data-channel=random]').click(); return null",
    )
    .await;
    wait_channel_shown(c, "random shown", "random").await;
    expect_exactly(c, "random after the move", &["while down elsewhere"]).await?;
    let _ = screenshot(c, "haproxy-moved.png").await;

    // The conversation goes on, both ways, through HAProxy.
    type_into(c, "#composer-input", "still here\u{E007}").await;
    blocking(|| py.expect_message("still here"));
    post_all(py, "random", &["good"]);
    expect_exactly(
        c,
        "random later",
        &["while down elsewhere", "still here", "good"],
    )
    .await?;
    Ok(())
}
