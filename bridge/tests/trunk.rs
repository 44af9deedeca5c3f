//! The development loop, for real: `trunk serve` (the pinned trunk) builds
//! and serves the page from `www/` with live reload; the page talks to a
//! bridge (in-process on 127.0.0.1:<free>) straight, not through trunk's
//! proxy, whose upstream is a real Python `dumdum-server` 0.5.0; headless
//! Chromium, then Firefox ESR (`browser_kit::each_browser`), drives the
//! page and a Python reference client is the other user.
//!
//! The page joins and chats; an edit of `www/styles.css` (restored
//! afterwards, whatever happens) makes trunk rebuild and reload the page,
//! which resumes its bridge session (same nick, no new login, messages
//! once). Then the bridge goes away and comes back without the development
//! origin allowed: the page says "cannot reach the bridge at …", then
//! "does not allow pages from …", each from evidence.
//!
//! Skipped, saying why, when trunk is not installed at the pinned version
//! and `DUMDUM_REQUIRE_TRUNK` is unset (`cargo xtask test` installs trunk
//! and sets it). Also needs what `browser.rs` needs, and `wasm-bindgen` on
//! PATH at the Cargo.lock version (`cargo xtask setup`). The first build
//! of the page can take minutes; every wait is bounded; trunk (with
//! whatever it started), chromedriver and the servers are stopped at the
//! end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_kit;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use browser_kit::*;
use common::Bridge;
use dumdum_bridge::{Config, UpstreamConfig};
use dumdum_testkit::{DumdumServer, PyPeer, TempDir, free_port, workspace_root};
use fantoccini::Client;
use serde_json::json;

/// The trunk release the development loop is tested with (as in
/// `xtask/src/setup.rs`).
const TRUNK_VERSION: &str = "0.21.14";
/// The first build compiles the client for wasm32 (debug): minutes on a
/// cold target directory shared with other builds.
const FIRST_BUILD: Duration = Duration::from_secs(20 * 60);
/// A rebuild after an edit of the stylesheet (cargo has nothing to do, but
/// may wait for the target directory's lock).
const REBUILD: Duration = Duration::from_secs(5 * 60);
const RESUMED: &str = "dumdum_bridge_resumes_total{result=\"resumed\"}";

/// `Ok` when `trunk --version` names [`TRUNK_VERSION`], else why not.
fn trunk_installed() -> Result<(), String> {
    let out = Command::new("trunk")
        .arg("--version")
        .output()
        .map_err(|e| format!("`trunk` cannot be run ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.split_whitespace().nth(1) == Some(TRUNK_VERSION) {
        Ok(())
    } else {
        Err(format!(
            "`trunk --version` says {:?}, not trunk {TRUNK_VERSION}",
            text.trim()
        ))
    }
}

/// Whether to run: trunk present, or the test required (then a missing
/// trunk fails the test).
fn trunk_or_skip(test: &str) -> bool {
    match trunk_installed() {
        Ok(()) => true,
        Err(why) if std::env::var_os("DUMDUM_REQUIRE_TRUNK").is_some() => panic!(
            "{why}; DUMDUM_REQUIRE_TRUNK is set, so {test} must run: `cargo install trunk --version {TRUNK_VERSION} --locked` (or `cargo xtask setup`)"
        ),
        Err(why) => {
            eprintln!(
                "SKIPPED {test}: {why}. Install it with `cargo install trunk --version {TRUNK_VERSION} --locked` (`cargo xtask test` does, and sets DUMDUM_REQUIRE_TRUNK=1 so this test cannot skip)."
            );
            false
        }
    }
}

/// `trunk serve` of `www/` on 127.0.0.1:`port`, building into a temporary
/// directory, its page pointed at `bridge`. Its output goes to
/// `target/artifacts/trunk-serve.log`. On drop, trunk and every process it
/// started are killed.
struct TrunkServe {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dist: TempDir,
}

impl TrunkServe {
    fn start(port: u16, bridge: &str) -> TrunkServe {
        let dist = TempDir::new("trunk-dist");
        let artifacts = target_dir().join("artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        let log = artifacts.join("trunk-serve.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new("trunk")
            .current_dir(workspace_root().join("www"))
            .args(["serve", "--address", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--dist")
            .arg(dist.path())
            .env("DUMDUM_BRIDGE", bridge)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn trunk serve");
        TrunkServe {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _dist: dist,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The last lines trunk printed.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits (at most `limit`) until trunk serves a built page that names
    /// `bridge`; returns how long that took.
    fn wait_serving(&mut self, bridge: &str, limit: Duration) -> Duration {
        let t0 = Instant::now();
        let meta = format!(r#"<meta name="dumdum-bridge" content="{bridge}">"#);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("trunk serve exited with {status}:\n{}", self.log_tail());
            }
            if let Some(page) = get(self.addr, "/", &[]).map(|r| r.body)
                && page.contains(&meta)
                && page.contains("_bg.wasm")
            {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < limit,
                "trunk serve did not serve the page within {limit:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Every descendant of `pid` (Linux `/proc`), children before their own.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            out.push(child);
            out.extend(descendants(child));
        }
    }
    out
}

impl Drop for TrunkServe {
    fn drop(&mut self) {
        // What trunk started (cargo, rustc, wasm-bindgen, the hook), by
        // their ids, then trunk itself.
        let pids = descendants(self.child.id());
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(pids.iter().map(u32::to_string))
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts what this test appends to the stylesheet.
const EDIT_MARK: &str = "\n/* Added by bridge/tests/trunk.rs while it runs. */\n";

/// A file's original bytes, written back on drop (even when the test fails).
struct Restore {
    path: PathBuf,
    original: Vec<u8>,
}

impl Restore {
    /// Appends [`EDIT_MARK`] and `text` to `path`; the original (without
    /// the leftover of a run that was killed, if any) comes back on drop.
    fn append(path: &Path, text: &str) -> Restore {
        let mut original = std::fs::read_to_string(path).unwrap();
        if let Some(at) = original.find(EDIT_MARK) {
            eprintln!("{}: removing what a killed run left", path.display());
            original.truncate(at);
        }
        let original = original.into_bytes();
        let mut changed = original.clone();
        changed.extend_from_slice(EDIT_MARK.as_bytes());
        changed.extend_from_slice(text.as_bytes());
        let guard = Restore {
            path: path.to_path_buf(),
            original,
        };
        std::fs::write(path, changed).unwrap();
        guard
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, &self.original) {
            eprintln!("could not restore {}: {e}", self.path.display());
        }
    }
}

/// An HTTP answer: status, lower-cased header lines, body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A blocking HTTP/1.1 GET with extra headers; `None` when nothing answers
/// (bounded).
fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Option<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// The bridge of the development loop: upstreams "local" and "other" (both
/// the Python server, so the page shows its server picker only if it read
/// `/api/servers` across origins), allowing `origins`.
fn dev_config(server: SocketAddr, origins: Vec<String>) -> Config {
    Config {
        upstreams: vec![
            UpstreamConfig::new("local", server.to_string()),
            UpstreamConfig::new("other", server.to_string()),
        ],
        allowed_origins: origins,
        ..Config::default()
    }
}

/// The allowed origins may read `/api/servers` and `/healthz` across
/// origins (CORS); others, and the bridge's own origin, get no grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_read_the_bridge_across_origins() {
    let dev = "http://127.0.0.1:8081";
    let bridge = Bridge::start(Config {
        allowed_origins: vec![dev.to_owned()],
        ..Config::default()
    })
    .await;
    let addr = bridge.addr;
    let answers = tokio::task::spawn_blocking(move || {
        ["/api/servers", "/healthz"].map(|path| {
            [dev, "http://evil.example", &format!("http://{addr}")]
                .map(|origin| get(addr, path, &[("Origin", origin)]).expect("an answer"))
        })
    })
    .await
    .unwrap();
    for (path, [allowed, other, own]) in ["/api/servers", "/healthz"].iter().zip(answers) {
        assert_eq!(allowed.status, 200, "{path}");
        assert_eq!(
            allowed.header("access-control-allow-origin"),
            Some(dev),
            "{path}"
        );
        assert_eq!(
            allowed.header("vary").map(str::to_ascii_lowercase),
            Some("origin".into()),
            "{path}"
        );
        assert_eq!(other.status, 200, "{path}");
        assert_eq!(other.header("access-control-allow-origin"), None, "{path}");
        assert_eq!(own.header("access-control-allow-origin"), None, "{path}");
        assert_eq!(other.body, allowed.body, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trunk_serve_development_loop() {
    each_browser("trunk_serve_development_loop", |_| {
        trunk_serve_development_loop_once()
    })
    .await;
}

async fn trunk_serve_development_loop_once() {
    if !trunk_or_skip("trunk_serve_development_loop") {
        return;
    }
    let t0 = Instant::now();
    let server = DumdumServer::start();
    let addr = server.addr();
    let mut py = blocking(|| PyPeer::connect(addr, "pyfriend", None));
    assert!(blocking(|| py.expect_auth()));

    let trunk_port = free_port();
    let dev_origin = format!("http://127.0.0.1:{trunk_port}");
    let mut bridge = Bridge::start(dev_config(addr, vec![dev_origin.clone()])).await;
    let bridge_origin = format!("http://{}", bridge.addr);

    let mut trunk = TrunkServe::start(trunk_port, &bridge_origin);
    let built = blocking(|| trunk.wait_serving(&bridge_origin, FIRST_BUILD));
    eprintln!("trunk serve: first build served after {built:?}");

    let b = Browser::start("trunk").await;
    let result = dev_loop(&b.c, &trunk, &mut bridge, addr, &dev_origin, &mut py).await;
    b.finish("trunk-last.png", result).await;
    eprintln!("trunk serve development loop: {:?} in all", t0.elapsed());
    drop(trunk);
    drop(server);
}

/// Waits until the page was reloaded (the marker set by [`mark`] is gone)
/// and the stylesheet's test property reads `expected` (`""`: absent).
async fn wait_reloaded(c: &Client, what: &str, marker: &str, expected: &str) -> Duration {
    let t = Instant::now();
    let js = format!(
        "return window.__dumdum_test_marker !== {marker} && !!document.querySelector('#status') \
         && getComputedStyle(document.documentElement).getPropertyValue('--dumdum-trunk-test').trim() === {}",
        json!(expected)
    );
    wait_js_for(c, what, &js, REBUILD).await;
    t.elapsed()
}

/// Marks the current document, so that a reload shows.
async fn mark(c: &Client, marker: &str) {
    js(
        c,
        &format!("window.__dumdum_test_marker = {marker}; return null"),
    )
    .await;
}

/// The page is back in the chat after a reload: the same nick, the session
/// resumed by the bridge (counted once), and the conversation goes on.
async fn resumed_after_reload(
    c: &Client,
    bridge: &Bridge,
    py: &mut PyPeer,
    resumes_before: f64,
    tag: &str,
) -> Result<(), String> {
    let status = wait_status(
        c,
        "resumed status",
        "startsWith('Resumed · Connected to local')",
    )
    .await;
    eprintln!("{tag}: {status}");
    assert_eq!(
        js(c, "return document.querySelector('#me-nick')?.textContent").await,
        json!("devuser")
    );
    // One reload per edit is the rule (trunk debounces the writes of one
    // save); more would still have to resume every time.
    let resumed = metric(bridge, RESUMED).await - resumes_before;
    eprintln!("{tag}: sessions resumed by the bridge: {resumed}");
    assert!(resumed >= 1.0, "{tag}: the bridge resumed the session");
    let theirs = format!("from python after the {tag}");
    py.send("general", &theirs);
    wait_shown_once(c, &theirs, &theirs).await;
    post_from_page(
        c,
        py,
        "own message",
        &format!("from the page after the {tag}"),
    )
    .await;
    Ok(())
}

async fn dev_loop(
    c: &Client,
    trunk: &TrunkServe,
    bridge: &mut Bridge,
    server: SocketAddr,
    dev_origin: &str,
    py: &mut PyPeer,
) -> Result<(), String> {
    c.goto(&trunk.url()).await.map_err(|e| e.to_string())?;
    // Two servers: the picker shows that /api/servers was read from the
    // bridge, across origins.
    let options = wait_js(
        c,
        "server picker",
        "const s = document.querySelector('#server'); return s ? [...s.options].map(o => o.value) : null",
    )
    .await;
    assert_eq!(options, json!(["local", "other"]));
    join_as(c, "devuser").await;
    wait_status(c, "connected status", "startsWith('Connected to local')").await;
    post_from_page(c, py, "own message", "hello from trunk serve").await;
    py.send("general", "hello from python");
    wait_shown_once(c, "python message", "hello from python").await;
    let _ = screenshot(c, "trunk.png").await;

    // An edit: trunk rebuilds and reloads the page, which resumes.
    let styles = workspace_root().join("www/styles.css");
    let nonce = format!("edit-{}", std::process::id());
    mark(c, "1").await;
    let resumes = metric(bridge, RESUMED).await;
    let edit = Restore::append(
        &styles,
        &format!(":root {{ --dumdum-trunk-test: {nonce}; }}\n"),
    );
    let took = wait_reloaded(c, "reload after the edit", "1", &nonce).await;
    eprintln!("trunk serve: rebuilt and reloaded {took:?} after the edit");
    resumed_after_reload(c, bridge, py, resumes, "edit").await?;

    // Undoing it reloads again, and resumes again.
    mark(c, "2").await;
    let resumes = metric(bridge, RESUMED).await;
    drop(edit);
    let took = wait_reloaded(c, "reload after undoing the edit", "2", "").await;
    eprintln!("trunk serve: rebuilt and reloaded {took:?} after undoing the edit");
    resumed_after_reload(c, bridge, py, resumes, "undo").await?;

    // The bridge goes away: a WebSocket that fails before it opens is
    // explained by a probe of the bridge: nothing answers there.
    let bridge_origin = format!("http://{}", bridge.addr);
    bridge.stop().await;
    let detail = wait_js(
        c,
        "unreachable bridge",
        "const s = document.querySelector('#status'); return s && s.textContent.includes('bridge unreachable') ? s.title : null",
    )
    .await;
    assert_eq!(
        detail,
        json!(format!(
            "Cannot reach the chat bridge at {bridge_origin}: nothing answers there. Is the bridge running?"
        ))
    );

    // Back on the same address, without the development origin allowed:
    // now (and only now) the page says its origin is refused.
    let listener = tokio::net::TcpListener::bind(bridge.addr)
        .await
        .map_err(|e| format!("rebinding {}: {e}", bridge.addr))?;
    let stop = tokio_util::sync::CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    tokio::spawn(dumdum_bridge::run(
        dev_config(server, Vec::new()),
        listener,
        stop,
    ));
    // Not waiting for the backoff: "Retry now" (if the page is between
    // attempts; otherwise its next attempt comes soon).
    let _ = click(c, "#status .link-button").await;
    let detail = wait_js_for(
        c,
        "refused origin",
        "const s = document.querySelector('#status'); return s && s.textContent.includes('origin refused') ? s.title : null",
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        detail,
        json!(format!(
            "The chat bridge at {bridge_origin} does not allow pages from {dev_origin}: start it with --allowed-origin {dev_origin} (or open the chat from the bridge's own address)."
        ))
    );
    let _ = screenshot(c, "trunk-origin-refused.png").await;
    Ok(())
}
