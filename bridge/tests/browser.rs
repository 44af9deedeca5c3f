//! End to end in real browsers: headless Chromium and Firefox ESR, driven
//! over WebDriver (fantoccini → chromedriver, geckodriver), each load the
//! page from the bridge (run
//! in-process on 127.0.0.1:0) whose upstream is a real Python
//! `dumdum-server` 0.5.0; a Python reference client is the other user.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (override with
//! `CHROME` and `CHROMEDRIVER`), `/usr/bin/firefox-esr` and geckodriver
//! (`FIREFOX`, `GECKODRIVER`; Firefox is skipped, saying why, when missing
//! unless `DUMDUM_REQUIRE_BROWSERS` is set; `DUMDUM_BROWSERS=chromium`
//! runs one browser only), the venv of `cargo xtask setup`, and the
//! page bundle: the test builds it once with `cargo xtask dist` (set
//! `DUMDUM_SKIP_DIST=1` to use an existing `target/www`). Every wait is
//! bounded; every process started here is killed at the end.
//!
//! Saves screenshots to `target/artifacts/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_kit;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use browser_kit::*;
use common::Bridge;
use dumdum_bridge::{Config, UpstreamConfig};
use dumdum_testkit::{DumdumServer, PyPeer};
use fantoccini::Client;
use serde_json::{Value, json};

/// Messages posted before the page joins (more than one page of 100).
const HISTORY: usize = 130;
const XSS: &str = "<img src=x onerror=alert(1)>";
const XSS_CONTENT: &str =
    "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\"> & <b>bold</b>";

/// A bridge serving the page at `www`, with the one upstream "local" at `addr`.
async fn local_bridge(addr: SocketAddr, www: PathBuf) -> Bridge {
    Bridge::start(Config {
        upstreams: vec![UpstreamConfig::new("local", addr.to_string())],
        www,
        ..Config::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_in_a_real_browser() {
    each_browser("chat_in_a_real_browser", |_| chat_once()).await;
}

async fn chat_once() {
    let www = bundle();
    let mut server = DumdumServer::start();
    let addr = server.addr();

    // History written before the page joins.
    let mut historian = blocking(|| PyPeer::connect(addr, "historian", None));
    assert!(blocking(|| historian.expect_auth()));
    for i in 1..=HISTORY {
        historian.send("general", &format!("history {i:03}"));
    }
    blocking(|| historian.expect_message(&format!("history {HISTORY:03}")));
    drop(historian);

    let mut py = blocking(|| PyPeer::connect(addr, "pyuser", None));
    assert!(blocking(|| py.expect_auth()));

    let bridge = local_bridge(addr, www).await;
    let url = bridge.http_url("/");

    let b = Browser::start("chat").await;
    let result = run_scenarios(&b.c, &url, &mut server, &mut py).await;
    b.finish("last.png", result).await;
}

async fn run_scenarios(
    c: &Client,
    url: &str,
    server: &mut DumdumServer,
    py: &mut PyPeer,
) -> Result<(), String> {
    c.goto(url).await.map_err(|e| e.to_string())?;
    wait_connect_screen(c, "connect screen").await;
    // One server: no picker.
    assert_eq!(
        js(c, "return !!document.querySelector('#server')").await,
        json!(false)
    );

    // Live nick validation.
    clear(c, "#nick").await;
    type_into(c, "#nick", &"é".repeat(17)).await;
    let msg = wait_js(
        c,
        "nick length message",
        "return document.querySelector('#nick-help.error')?.textContent",
    )
    .await;
    assert_eq!(msg, json!("Too long: 34 bytes in UTF-8, at most 32."));
    assert_eq!(
        js(c, "return document.querySelector('#join').disabled").await,
        json!(true)
    );

    // A taken nick is refused, another accepted on the same connection.
    join_as(c, "pyuser").await;
    let banner = wait_js(
        c,
        "nick-taken banner",
        "return document.querySelector('#nick-taken')?.textContent",
    )
    .await;
    assert!(banner.as_str().unwrap().contains("pyuser"), "{banner}");
    join_as(c, "webuser").await;
    wait_js(
        c,
        "chat screen",
        "return !!document.querySelector('#composer-input')",
    )
    .await;
    assert_eq!(
        js(c, "return document.querySelector('#me-nick').textContent").await,
        json!("webuser")
    );

    // The server's channels.
    let channels = wait_js(
        c,
        "channel list",
        "const l = [...document.querySelectorAll('.channel')].map(e => e.dataset.channel); return l.length ? l : null",
    )
    .await;
    assert_eq!(channels, json!(["general", "random"]));
    let status = wait_status(c, "connected status", "includes('Connected to local')").await;
    assert!(status.as_str().unwrap().contains("Connected"), "{status}");

    // History: the newest 100, then "load older" reaches the first message.
    wait_js(c, "newest page", &format!("{COUNT_MSGS} === 100")).await;
    assert_eq!(js(c, &count_text("history 031")).await, json!(1));
    assert_eq!(js(c, &count_text("history 030")).await, json!(0));
    click(c, "#load-older").await?;
    wait_js(c, "older page", &format!("{COUNT_MSGS} === {HISTORY}")).await;
    wait_js(
        c,
        "beginning of history",
        "return !!document.querySelector('.history-start')",
    )
    .await;
    let texts = js(
        c,
        "return [...document.querySelectorAll('#messages .msg-text')].map(e => e.textContent)",
    )
    .await;
    let expected: Vec<String> = (1..=HISTORY).map(|i| format!("history {i:03}")).collect();
    assert_eq!(texts, json!(expected), "every message once, in order");

    // A message typed in the page reaches the Python client, and shows once (on echo).
    post_from_page(c, py, "own message", "hello from the browser").await;
    assert_eq!(
        js(c, "return document.querySelector('#composer-input').value").await,
        json!("")
    );

    // Shift+Enter makes a new line; the text keeps it.
    type_into(
        c,
        "#composer-input",
        "line one\u{E008}\u{E007}\u{E000}line two\u{E007}",
    )
    .await;
    blocking(|| py.expect_message("line one\nline two"));
    wait_shown_once(c, "multi-line message", "line one\nline two").await;

    // A message from the Python client shows with its nick.
    py.send("general", "hello from python https://example.com/page.");
    let row = wait_js(
        c,
        "python message",
        "const r = [...document.querySelectorAll('#messages .msg')].find(r => r.querySelector('.msg-text').textContent.startsWith('hello from python')); \
         return r ? {nick: r.querySelector('.msg-nick').textContent, href: r.querySelector('.msg-text a')?.getAttribute('href'), rel: r.querySelector('.msg-text a')?.getAttribute('rel')} : null",
    )
    .await;
    assert_eq!(
        row,
        json!({"nick": "pyuser", "href": "https://example.com/page", "rel": "noopener noreferrer"})
    );

    // Hostile nick and content are shown as text and run nothing.
    let mut evil = blocking(|| PyPeer::connect(server.addr(), XSS, None));
    assert!(blocking(|| evil.expect_auth()));
    evil.send("general", XSS_CONTENT);
    let row = wait_js(
        c,
        "hostile message",
        &format!(
            "const r = [...document.querySelectorAll('#messages .msg')].find(r => r.querySelector('.msg-text').textContent === {}); \
             return r ? {{nick: r.querySelector('.msg-nick').textContent}} : null",
            json!(XSS_CONTENT)
        ),
    )
    .await;
    assert_eq!(row, json!({"nick": XSS}));
    post_from_page(c, py, "own hostile message", XSS).await;
    assert_eq!(
        js(c, "return [typeof window.__xss, document.querySelectorAll('#messages img, #messages script, #messages b').length]").await,
        json!(["undefined", 0]),
        "nothing from a message became markup"
    );
    assert!(c.get_alert_text().await.is_err(), "no alert() ran");
    drop(evil);

    // Unread counts on the other channel.
    py.send("random", "over in random");
    wait_js(c, "unread badge", "return document.querySelector('.channel[data-channel=random] .badge')?.textContent === '1'").await;

    // A screenshot of the chat for the README.
    let shot = screenshot(c, "chat.png").await;
    eprintln!("screenshot: {}", shot.display());

    // On a phone the channel list collapses behind a menu button.
    c.set_window_size(400, 800)
        .await
        .map_err(|e| e.to_string())?;
    wait_js(
        c,
        "menu button",
        "return getComputedStyle(document.querySelector('.menu-toggle')).display !== 'none'",
    )
    .await;
    wait_js(
        c,
        "collapsed channel list",
        "return document.querySelector('#sidebar').getBoundingClientRect().right <= 0",
    )
    .await;
    let _ = screenshot(c, "phone.png").await;
    click(c, ".menu-toggle").await?;
    wait_js(
        c,
        "open channel list",
        "return document.querySelector('#sidebar').getBoundingClientRect().left >= 0 \
         && document.querySelector('.menu-toggle').getAttribute('aria-expanded') === 'true'",
    )
    .await;
    let _ = screenshot(c, "phone-channels.png").await;
    js(
        c,
        "document.querySelector('.backdrop').click(); return null",
    )
    .await;
    wait_js(
        c,
        "closed channel list",
        "return document.querySelector('.menu-toggle').getAttribute('aria-expanded') === 'false'",
    )
    .await;
    c.set_window_size(1200, 800)
        .await
        .map_err(|e| e.to_string())?;

    // Alt+Down switches to random, which clears its unread count.
    type_into(c, "#composer-input", "\u{E00A}\u{E015}\u{E000}").await;
    wait_channel_shown(c, "random channel", "random").await;
    wait_shown_once(c, "random message", "over in random").await;
    assert_eq!(
        js(
            c,
            "return !!document.querySelector('.channel[data-channel=random] .badge')"
        )
        .await,
        json!(false)
    );
    type_into(c, "#composer-input", "\u{E00A}\u{E013}\u{E000}").await;
    wait_channel_shown(c, "back to general", "general").await;

    // Killing the server: "disconnected", sending disabled with a reason.
    server.stop();
    let status = wait_status(c, "disconnected status", "includes('Disconnected')").await;
    eprintln!("status while the server is down: {status}");
    wait_js(
        c,
        "send disabled",
        "return document.querySelector('#send').disabled",
    )
    .await;
    type_into(c, "#composer-input", "typed while offline").await;
    let hint = js(
        c,
        "return document.querySelector('#composer-hint').textContent",
    )
    .await;
    // The page retries after 1 s, so the hint may already say it is
    // reconnecting; either way it must say the text is kept.
    let hint = hint.as_str().unwrap_or_default();
    assert!(
        (hint.starts_with("Not connected") || hint.starts_with("Connecting"))
            && hint.ends_with("Your text is kept."),
        "{hint}"
    );
    let _ = screenshot(c, "disconnected.png").await;

    // The server comes back: the page reconnects by itself and works again.
    server.restart();
    let mut py2 = blocking(|| PyPeer::connect(server.addr(), "pyuser2", None));
    assert!(blocking(|| py2.expect_auth()));
    wait_status(c, "reconnected status", "includes('Connected to local')").await;
    // The draft typed while disconnected is still there; send it.
    assert_eq!(
        js(c, "return document.querySelector('#composer-input').value").await,
        json!("typed while offline")
    );
    wait_js(
        c,
        "send enabled",
        "return !document.querySelector('#send').disabled",
    )
    .await;
    type_into(c, "#composer-input", "\u{E007}").await;
    blocking(|| py2.expect_message("typed while offline"));
    py2.send("general", "welcome back");
    wait_shown_once(c, "message after reconnect", "welcome back").await;
    Ok(())
}

/// Link security in the status line: a TLS server the bridge trusts shows
/// "secured" with the TLS version and certificate subject; the same server
/// under a name without its CA is refused with the reason in words. Two
/// upstreams also make the connect screen show its server picker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_status_and_refusal_in_the_browser() {
    each_browser("tls_status_and_refusal_in_the_browser", |_| tls_once()).await;
}

async fn tls_once() {
    let www = bundle();
    let cert = dumdum_testkit::TestCert::localhost();
    let server = DumdumServer::start_with(&["general"], Some(&cert));
    let addr = server.addr().to_string();
    let trusted = UpstreamConfig {
        ca: Some(cert.cert_path.clone()),
        ..UpstreamConfig::new("trusted", addr.clone())
    };
    let bridge = Bridge::start(Config {
        upstreams: vec![trusted, UpstreamConfig::new("untrusted", addr)],
        www,
        ..Config::default()
    })
    .await;
    let b = Browser::start("tls").await;
    let result = tls_scenario(&b.c, &bridge.http_url("/")).await;
    b.finish("tls-last.png", result).await;
    drop(server);
}

async fn tls_scenario(c: &Client, url: &str) -> Result<(), String> {
    c.goto(url).await.map_err(|e| e.to_string())?;
    let options = wait_js(
        c,
        "server picker",
        "const s = document.querySelector('#server'); return s ? [...s.options].map(o => o.value) : null",
    )
    .await;
    assert_eq!(options, json!(["trusted", "untrusted"]));

    // Without the CA: refused, and the page says why.
    select(c, "#server", "untrusted").await?;
    join_as(c, "tlsuser").await;
    let status = wait_status(
        c,
        "TLS refusal",
        "includes('TLS to the chat server refused')",
    )
    .await;
    let detail = wait_js(
        c,
        "refusal detail",
        "return document.querySelector('#status-detail')?.textContent",
    )
    .await;
    eprintln!("refused: {status} / {detail}");
    assert!(
        detail
            .as_str()
            .unwrap()
            .starts_with("The secure (TLS) connection to the chat server was refused: "),
        "{detail}"
    );
    let _ = screenshot(c, "tls-refused.png").await;

    // With the CA: secured, with the TLS version and the certificate subject.
    select(c, "#server", "trusted").await?;
    wait_js(
        c,
        "join enabled",
        "return !document.querySelector('#join').disabled",
    )
    .await;
    click(c, "#join").await?;
    // "Joining trusted · secured with TLS…" comes first; wait for the join.
    let status = wait_status(
        c,
        "secured status",
        "includes('secured with TLS') && t.includes('Connected to trusted')",
    )
    .await;
    eprintln!("secured: {status}");
    let peer = js(
        c,
        "return document.querySelector('.status-peer')?.textContent ?? null",
    )
    .await;
    assert!(peer.is_string(), "the certificate subject is shown: {peer}");
    let _ = screenshot(c, "tls.png").await;
    Ok(())
}

/// Extra latency added to every request from the page while it reloads
/// (Chromium's network emulation; in Firefox, [`DelayRelay`]): the page is
/// away from the bridge long enough for the Python peer to post while it
/// is gone.
const RELOAD_LATENCY_MS: u64 = 1500;

/// A reload of the page mid-conversation resumes the bridge session: the
/// page comes back with the same nick in the same channel; messages posted
/// while it was away appear exactly once (the shown channel's and the
/// unread count of the other); the nick stayed held (a Python client that
/// tries to take it during the reload is refused) and the bridge counted a
/// resume, so no new AUTHENTICATE reached the server. "Sign out" then ends
/// the session at once (the nick is free) and forgets the stored key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_resumes_the_session() {
    each_browser("reload_resumes_the_session", |_| reload_once()).await;
}

async fn reload_once() {
    let www = bundle();
    let server = DumdumServer::start();
    let addr = server.addr();
    let mut py = blocking(|| PyPeer::connect(addr, "pyfriend", None));
    assert!(blocking(|| py.expect_auth()));
    let bridge = local_bridge(addr, www).await;
    let b = Browser::start("reload").await;
    // Chromium slows the page's requests itself (chromedriver's network
    // emulation); Firefox's WebDriver has no such command, so there the page
    // is loaded through a relay that holds what the browser sends.
    let slow = match b.kind {
        Kind::Chromium => Slow::Emulated(&b.driver),
        Kind::Firefox => Slow::Relay(DelayRelay::start(bridge.addr).await),
    };
    let result = reload_scenario(&b.c, &slow, &bridge, addr, &mut py).await;
    drop(slow);
    b.finish("reload-last.png", result).await;
    drop(server);
}

/// How the page's requests are slowed down during the reload.
enum Slow<'a> {
    /// Chromium's network emulation, through its chromedriver.
    Emulated(&'a Driver),
    /// A relay in front of the bridge; the page is loaded through it.
    Relay(DelayRelay),
}

impl Slow<'_> {
    /// The page's URL.
    fn url(&self, bridge: &Bridge) -> String {
        match self {
            Slow::Emulated(_) => bridge.http_url("/"),
            Slow::Relay(relay) => format!("http://{}/", relay.addr),
        }
    }

    /// Adds `latency` to every request from the page (zero: none).
    async fn set(&self, c: &Client, latency: Duration) -> Result<(), String> {
        match self {
            Slow::Emulated(driver) => {
                let session = c
                    .session_id()
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("no WebDriver session")?;
                let conditions = format!("/session/{session}/chromium/network_conditions");
                if latency.is_zero() {
                    chromedriver_cmd(driver, "DELETE", &conditions, &json!({})).await;
                    return Ok(());
                }
                let answer = chromedriver_cmd(
                    driver,
                    "POST",
                    &conditions,
                    &json!({"network_conditions": {
                        "offline": false,
                        "latency": latency.as_millis() as u64,
                        "download_throughput": 100_000_000,
                        "upload_throughput": 100_000_000,
                    }}),
                )
                .await;
                if !answer.starts_with("HTTP/1.1 200") {
                    return Err(format!("network emulation: {answer}"));
                }
                Ok(())
            }
            Slow::Relay(relay) => {
                relay.delay_ms.store(
                    latency.as_millis() as u64,
                    std::sync::atomic::Ordering::SeqCst,
                );
                Ok(())
            }
        }
    }
}

/// A TCP relay on loopback in front of `to` that, while `delay_ms` is not
/// zero, holds every chunk the browser sends for that long before passing
/// it on (answers pass at once). Stops accepting on drop.
struct DelayRelay {
    addr: SocketAddr,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DelayRelay {
    async fn start(to: SocketAddr) -> DelayRelay {
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let delay_ms = std::sync::Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let delay = delay.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (mut from_browser, mut to_browser) = inbound.into_split();
                    let (mut from_bridge, mut to_bridge) = outbound.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n @ 1..) = from_browser.read(&mut buf).await {
                            let ms = delay.load(Ordering::SeqCst);
                            if ms > 0 {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            if to_bridge.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_bridge.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut from_bridge, &mut to_browser).await;
                        let _ = to_browser.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        DelayRelay {
            addr,
            delay_ms,
            task,
        }
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn reload_scenario(
    c: &Client,
    slow: &Slow<'_>,
    bridge: &Bridge,
    addr: SocketAddr,
    py: &mut PyPeer,
) -> Result<(), String> {
    const NICK: &str = "reloader";
    const RESUMED: &str = "dumdum_bridge_resumes_total{result=\"resumed\"}";
    c.goto(&slow.url(bridge)).await.map_err(|e| e.to_string())?;
    wait_connect_screen(c, "connect screen").await;
    join_as(c, NICK).await;
    wait_status(c, "connected status", "startsWith('Connected to local')").await;

    // The conversation happens in #random.
    js(
        c,
        "document.querySelector('.channel[data-channel=random]').click(); return null",
    )
    .await;
    wait_channel_shown(c, "random shown", "random").await;
    // The small state and the unconfirmed frames are stored apart: a frame
    // received rewrites the first only.
    const STORED: &str = "return [sessionStorage.getItem('dumdum.session'), sessionStorage.getItem('dumdum.session.frames')]";
    let stored_pair = |v: Value| -> Result<(Value, String), String> {
        let state = v[0].as_str().ok_or("no stored session")?;
        let state: Value = serde_json::from_str(state).map_err(|e| e.to_string())?;
        let frames = v[1].as_str().ok_or("no stored frames")?.to_owned();
        Ok((state, frames))
    };
    wait_js(
        c,
        "the newest page of random",
        "return document.querySelector('#messages .history-start') ? true : null",
    )
    .await;
    let (state_before, _) = stored_pair(js(c, STORED).await)?;
    // Count the page's sessionStorage writes from here on.
    const COUNT_WRITES: &str = "window.__writes = {}; const set = Storage.prototype.setItem; Storage.prototype.setItem = function (k, v) { if (this === sessionStorage) { window.__writes[k] = (window.__writes[k] || 0) + 1; } return set.call(this, k, v); }; return null";
    const WRITES: &str = "const w = window.__writes; window.__writes = {}; return [w['dumdum.session'] || 0, w['dumdum.session.frames'] || 0]";
    js(c, COUNT_WRITES).await;
    py.send("random", "before 1");
    wait_shown_once(c, "peer message", "before 1").await;
    let (state_after, frames_after) = stored_pair(js(c, STORED).await)?;
    assert_eq!(
        state_after["received"].as_u64(),
        state_before["received"].as_u64().map(|n| n + 1),
        "the received count is stored at once"
    );
    assert_eq!(
        js(c, WRITES).await,
        json!([1, 0]),
        "a frame received rewrites the small state only, not the unconfirmed frames"
    );
    post_from_page(c, py, "own message", "before 2").await;
    let (state_sent, frames_sent) = stored_pair(js(c, STORED).await)?;
    assert_eq!(
        state_sent["sent"].as_u64(),
        state_after["sent"].as_u64().map(|n| n + 1)
    );
    assert_ne!(frames_sent, frames_after, "a frame sent is stored");
    let writes = js(c, WRITES).await;
    assert_eq!(
        writes[1],
        json!(1),
        "the frames are written once for the message sent: {writes}"
    );

    // The key is in this tab's sessionStorage, never in localStorage.
    let stored = js(c, "return sessionStorage.getItem('dumdum.session')").await;
    let stored: Value = serde_json::from_str(stored.as_str().ok_or("no stored session")?)
        .map_err(|e| e.to_string())?;
    assert_eq!(stored["nick"], json!(NICK));
    assert_eq!(stored["key"].as_str().map(str::len), Some(64), "{stored}");
    assert_eq!(stored["client"]["state"], json!("ready"));
    assert_eq!(
        js(c, "return Object.keys(localStorage).filter(k => (localStorage.getItem(k) || '').includes(JSON.parse(sessionStorage.getItem('dumdum.session')).key)).length").await,
        json!(0)
    );

    // Someone wants the nick: refused while the page holds it.
    let mut thief = blocking(|| PyPeer::connect(addr, NICK, None));
    assert!(!blocking(|| thief.expect_auth()), "the nick is held");
    let resumed_before = metric(bridge, RESUMED).await;

    // Reload with every request slowed down, so the page is away for a while.
    slow.set(c, Duration::from_millis(RELOAD_LATENCY_MS))
        .await?;
    // WebDriver's refresh returns once the new document has loaded: the old
    // page is gone, and the new one's WebSocket handshake, delayed by
    // RELOAD_LATENCY_MS, has not reached the bridge. Post now: the page can
    // only learn of these from the bridge's replay (the replay count below
    // proves they landed in the gap).
    let t0 = Instant::now();
    tokio::time::timeout(WAIT, c.refresh())
        .await
        .map_err(|_| "refresh took too long")?
        .map_err(|e| e.to_string())?;
    let t_loaded = t0.elapsed();
    for i in 1..=3 {
        py.send("random", &format!("during {i}"));
    }
    for i in 1..=2 {
        py.send("general", &format!("elsewhere {i}"));
    }
    thief.auth(NICK);
    let stolen = blocking(|| thief.expect_auth());
    let t_posted = t0.elapsed();
    assert!(!stolen, "the nick stayed held during the reload");

    // Back: same nick, same channel, "Resumed".
    let status = wait_status(
        c,
        "resumed status",
        "startsWith('Resumed · Connected to local')",
    )
    .await;
    let t_resumed = t0.elapsed();
    eprintln!(
        "reload: page loaded at {t_loaded:?}, posted by {t_posted:?}, resumed by {t_resumed:?}; status: {status}"
    );
    slow.set(c, Duration::ZERO).await?;
    assert_eq!(
        js(c, "return document.querySelector('#me-nick')?.textContent").await,
        json!(NICK)
    );
    wait_channel_shown(c, "random shown again", "random").await;
    // Every message once: the ones from before (fetched again) and the ones
    // posted while the page was away (replayed).
    for text in ["before 1", "before 2", "during 1", "during 2", "during 3"] {
        wait_js(c, text, &format!("{} >= 1", count_text(text))).await;
    }
    // Stable: nothing arrives twice later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = js(
        c,
        "return [...document.querySelectorAll('#messages .msg-text')].map(e => e.textContent)",
    )
    .await;
    assert_eq!(
        counts,
        json!(["before 1", "before 2", "during 1", "during 2", "during 3"]),
        "every message of #random once, in order"
    );
    // The other channel learnt of its two messages from the replay alone.
    let badge = wait_js(
        c,
        "unread badge of general",
        "return document.querySelector('.channel[data-channel=general] .badge')?.textContent",
    )
    .await;
    assert_eq!(badge, json!("2"), "both messages posted to #general, once");
    let detail = js(c, "return document.querySelector('#status')?.title").await;
    let replayed: u64 = detail
        .as_str()
        .and_then(|d| d.strip_prefix("Session resumed: "))
        .and_then(|d| d.split(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no replay count in the status detail: {detail}"))?;
    let resumed = metric(bridge, RESUMED).await - resumed_before;
    eprintln!("reload: {detail}; resumes counted by the bridge: {resumed}");
    assert_eq!(resumed, 1.0, "the bridge resumed the session once");
    assert!(
        replayed >= 5,
        "the 5 messages posted while the page was away were replayed: {replayed}"
    );
    let _ = screenshot(c, "reload.png").await;

    // The conversation goes on.
    type_into(c, "#composer-input", "after the reload\u{E007}").await;
    blocking(|| py.expect_message("after the reload"));
    py.send("random", "welcome back");
    wait_shown_once(c, "message after the reload", "welcome back").await;
    assert_eq!(js(c, &count_text("after the reload")).await, json!(1));

    // Sign out: the session ends at once (the nick is free) and the key is
    // forgotten.
    js(
        c,
        "document.querySelector('.sign-out').click(); return null",
    )
    .await;
    wait_connect_screen(c, "connect screen after signing out").await;
    assert_eq!(
        js(c, "return sessionStorage.getItem('dumdum.session')").await,
        Value::Null
    );
    let deadline = Instant::now() + WAIT;
    loop {
        thief.auth(NICK);
        if blocking(|| thief.expect_auth()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nick was not freed after signing out"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A test that fails before closing its session leaves its browser
/// running; dropping the driver must end it too (killing geckodriver or
/// chromedriver alone does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_left_open_ends_with_its_driver() {
    each_browser("a_browser_left_open_ends_with_its_driver", |_| async {
        let b = Browser::start("left-open").await;
        b.c.goto("about:blank").await.expect("a page");
        let profile = vec![b.profile.path().to_owned()];
        let running = processes_naming(&profile);
        assert!(!running.is_empty(), "the browser runs with its profile");
        // As a panic between start and finish would: no close, no finish.
        drop(b.driver);
        let deadline = Instant::now() + WAIT;
        while !processes_naming(&profile).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the browser outlived its driver: {:?}",
                processes_naming(&profile)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "{} processes of the browser ended with the driver",
            running.len()
        );
    })
    .await;
}
