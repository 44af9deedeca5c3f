//! WebDriver helpers shared by the browser tests (`browser.rs`,
//! `trunk.rs`): chromedriver and headless Chromium with a fresh profile,
//! bounded waits on the page, typing and clicking, screenshots. Every wait
//! is bounded; chromedriver is killed on drop.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dumdum_testkit::{PyPeer, TempDir, free_port, workspace_root};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::common::{self, Bridge};

/// The longest any single condition is waited for.
pub const WAIT: Duration = Duration::from_secs(20);

/// The workspace's target directory (`CARGO_TARGET_DIR` when set).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Builds the page once per test binary (`cargo xtask dist`).
pub fn bundle() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let www = target_dir().join("www");
            let skip = std::env::var_os("DUMDUM_SKIP_DIST").is_some_and(|v| v == "1");
            if !(skip && www.join("index.html").exists()) {
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let status = Command::new(cargo)
                    .current_dir(workspace_root())
                    .args(["xtask", "dist"])
                    .status()
                    .map_err(|e| format!("cannot run `cargo xtask dist`: {e}"))?;
                if !status.success() {
                    return Err(format!(
                        "`cargo xtask dist` failed ({status}): the page could not be built"
                    ));
                }
            }
            if !www.join("index.html").exists() {
                return Err(format!(
                    "no page at {}: run `cargo xtask dist`",
                    www.display()
                ));
            }
            Ok(www)
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `chromedriver` on a free loopback port, killed on drop.
pub struct ChromeDriver {
    child: Child,
    /// Its WebDriver URL.
    pub url: String,
}

impl ChromeDriver {
    pub fn start() -> Self {
        let bin =
            std::env::var_os("CHROMEDRIVER").unwrap_or_else(|| "/usr/bin/chromedriver".into());
        assert!(
            Path::new(&bin).exists(),
            "chromedriver not found at {}: install Debian's chromium and chromium-driver (`cargo xtask setup`)",
            Path::new(&bin).display()
        );
        let port = free_port();
        let mut child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("chromedriver exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    pub async fn browser(&self, profile: &TempDir) -> Client {
        let chrome = std::env::var("CHROME").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chrome,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1200,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        tokio::time::timeout(
            WAIT,
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&self.url),
        )
        .await
        .expect("chromedriver answers in time")
        .expect("a Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `js` (a function body) until it returns something truthy; returns it.
pub async fn wait_js(c: &Client, what: &str, js: &str) -> Value {
    wait_js_for(c, what, js, WAIT).await
}

/// [`wait_js`] bounded by `limit` instead of [`WAIT`].
pub async fn wait_js_for(c: &Client, what: &str, js: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let last = match c.execute(js, vec![]).await {
            Ok(v) => {
                let truthy = match &v {
                    Value::Null => false,
                    Value::Bool(b) => *b,
                    Value::Number(n) => n.as_f64() != Some(0.0),
                    Value::String(s) => !s.is_empty(),
                    _ => true,
                };
                if truthy {
                    return v;
                }
                v
            }
            Err(e) => Value::String(format!("error: {e}")),
        };
        if Instant::now() > deadline {
            let status = c
                .execute(
                    "return document.querySelector('#status')?.textContent ?? null",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            panic!("browser: no {what} within {limit:?} (last: {last}; status line: {status})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `js` (a function body) once; returns its value.
pub async fn js(c: &Client, js: &str) -> Value {
    c.execute(js, vec![]).await.expect("script runs")
}

/// Blocking peer calls off the async workers.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

pub async fn type_into(c: &Client, css: &str, text: &str) {
    let el = c.find(Locator::Css(css)).await.expect(css);
    el.send_keys(text).await.expect("typing");
}

pub async fn clear(c: &Client, css: &str) {
    // Ctrl+A, release, Backspace: goes through the page's input handlers.
    type_into(c, css, "\u{E009}a\u{E000}\u{E003}").await;
}

pub async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("screenshot");
    let dir = target_dir().join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    path
}

/// A script counting the shown messages.
pub const COUNT_MSGS: &str = "return document.querySelectorAll('#messages .msg').length";

/// A script counting the shown messages whose text is `content`.
pub fn count_text(content: &str) -> String {
    format!(
        "return [...document.querySelectorAll('#messages .msg-text')].filter(e => e.textContent === {}).length",
        json!(content)
    )
}

/// Waits until the message `content` is shown exactly once.
pub async fn wait_shown_once(c: &Client, what: &str, content: &str) -> Value {
    wait_js(c, what, &format!("{} === 1", count_text(content))).await
}

/// Waits until the status line's text passes `test` (a JS string method
/// call such as `includes('Connected')`); returns the text.
pub async fn wait_status(c: &Client, what: &str, test: &str) -> Value {
    let js = format!(
        "const t = document.querySelector('#status')?.textContent; return t && t.{test} ? t : null"
    );
    wait_js(c, what, &js).await
}

/// Waits until `channel` is the one shown.
pub async fn wait_channel_shown(c: &Client, what: &str, channel: &str) -> Value {
    let js = format!(
        "return document.querySelector('.channel[data-channel={channel}]')?.getAttribute('aria-current') === 'page'"
    );
    wait_js(c, what, &js).await
}

/// Waits for the connect screen (the nick field).
pub async fn wait_connect_screen(c: &Client, what: &str) -> Value {
    wait_js(c, what, "return !!document.querySelector('#nick')").await
}

/// Replaces the nick field's text with `nick` and presses Enter.
pub async fn join_as(c: &Client, nick: &str) {
    clear(c, "#nick").await;
    type_into(c, "#nick", &format!("{nick}\u{E007}")).await;
}

/// Sends `content` from the page's composer; the Python peer receives it and
/// the page shows it once.
pub async fn post_from_page(c: &Client, py: &mut PyPeer, what: &str, content: &str) {
    type_into(c, "#composer-input", &format!("{content}\u{E007}")).await;
    blocking(|| py.expect_message(content));
    wait_shown_once(c, what, content).await;
}

/// Clicks the element at `css`.
pub async fn click(c: &Client, css: &str) -> Result<(), String> {
    c.find(Locator::Css(css))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())
}

/// Picks `value` in the `<select>` at `css`.
pub async fn select(c: &Client, css: &str, value: &str) -> Result<(), String> {
    c.find(Locator::Css(css))
        .await
        .map_err(|e| e.to_string())?
        .select_by_value(value)
        .await
        .map_err(|e| e.to_string())
}

/// Headless Chromium under its own chromedriver, with a fresh profile.
pub struct Browser {
    pub driver: ChromeDriver,
    pub profile: TempDir,
    pub c: Client,
}

impl Browser {
    pub async fn start(profile: &str) -> Browser {
        let driver = ChromeDriver::start();
        let profile = TempDir::new(profile);
        let c = driver.browser(&profile).await;
        Browser { driver, profile, c }
    }

    /// Saves `last_shot`, closes the browser and stops chromedriver; then
    /// fails with the scenario's error, if any.
    pub async fn finish(self, last_shot: &str, result: Result<(), String>) {
        let _ = screenshot(&self.c, last_shot).await;
        let _ = self.c.close().await;
        drop(self.driver);
        drop(self.profile);
        result.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// One sample of the bridge's `/metrics` (0 when the line is absent).
pub async fn metric(bridge: &Bridge, series: &str) -> f64 {
    let (_, _, body) = common::http_get(bridge.addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
