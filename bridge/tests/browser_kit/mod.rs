//! WebDriver helpers shared by the browser tests (`browser*.rs`,
//! `trunk.rs`): headless Chromium (chromedriver) and Firefox ESR
//! (geckodriver), each with a fresh profile, a set viewport and colour
//! scheme, and its driver's log in `target/artifacts/logs/`; bounded waits
//! on the page, typing and clicking, screenshots.
//!
//! [`each_browser`] runs a test's body once per browser of
//! `DUMDUM_BROWSERS` (default `chromium,firefox`); inside it
//! [`Browser::start`] starts that browser. Every wait is bounded; drivers
//! (and their browsers) are killed on drop.

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

/// A browser the tests drive over WebDriver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Debian's `chromium`, driven by `chromium-driver` (chromedriver).
    Chromium,
    /// Debian's `firefox-esr`, driven by geckodriver (crates.io).
    Firefox,
}

/// The browsers each test runs in, comma-separated (default
/// `chromium,firefox`).
pub const BROWSERS_VAR: &str = "DUMDUM_BROWSERS";
/// When set, a browser that is missing fails the test instead of being
/// skipped (`cargo xtask test` sets it).
pub const REQUIRE_BROWSERS_VAR: &str = "DUMDUM_REQUIRE_BROWSERS";

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Chromium, Kind::Firefox];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Chromium => "chromium",
            Kind::Firefox => "firefox",
        }
    }

    fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The browser's binary (`CHROME`, `FIREFOX` override).
    pub fn binary(self) -> PathBuf {
        let (var, default) = match self {
            Kind::Chromium => ("CHROME", "/usr/bin/chromium"),
            Kind::Firefox => ("FIREFOX", "/usr/bin/firefox-esr"),
        };
        std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
    }

    /// The WebDriver server's binary (`CHROMEDRIVER`, `GECKODRIVER`
    /// override). geckodriver is `cargo install`ed: looked up on `PATH`,
    /// then in `~/.cargo/bin`.
    pub fn driver_binary(self) -> PathBuf {
        match self {
            Kind::Chromium => std::env::var_os("CHROMEDRIVER")
                .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from),
            Kind::Firefox => {
                if let Some(p) = std::env::var_os("GECKODRIVER") {
                    return PathBuf::from(p);
                }
                let on_path = std::env::var_os("PATH").and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|d| d.join("geckodriver"))
                        .find(|p| p.is_file())
                });
                let cargo_home = std::env::var_os("CARGO_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
                on_path
                    .or_else(|| cargo_home.map(|c| c.join("bin/geckodriver")))
                    .unwrap_or_else(|| PathBuf::from("geckodriver"))
            }
        }
    }

    /// Why this browser cannot run here (a binary is missing), if so.
    pub fn missing(self) -> Option<String> {
        let (browser, driver) = (self.binary(), self.driver_binary());
        let how = match self {
            Kind::Chromium => "apt-get install chromium chromium-driver",
            Kind::Firefox => "apt-get install firefox-esr; cargo install geckodriver --locked",
        };
        [browser, driver]
            .iter()
            .find(|p| !p.is_file())
            .map(|p| format!("{} not found ({how}, or `cargo xtask setup`)", p.display()))
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The browsers named by [`BROWSERS_VAR`] (default: all), in that order.
pub fn browsers() -> Vec<Kind> {
    let Ok(list) = std::env::var(BROWSERS_VAR) else {
        return Kind::ALL.to_vec();
    };
    let kinds: Vec<Kind> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            Kind::parse(s).unwrap_or_else(|| {
                panic!("{BROWSERS_VAR}: unknown browser {s:?} (known: chromium, firefox)")
            })
        })
        .collect();
    assert!(!kinds.is_empty(), "{BROWSERS_VAR} names no browser");
    kinds
}

tokio::task_local! {
    static CURRENT: Kind;
}

/// The browser the running test drives: the one [`each_browser`] runs the
/// body in; outside it, the first of [`browsers`].
pub fn current() -> Kind {
    CURRENT
        .try_with(|k| *k)
        .unwrap_or_else(|_| browsers().first().copied().unwrap_or(Kind::Chromium))
}

/// Whether a missing `kind` must fail the test: [`REQUIRE_BROWSERS_VAR`]
/// is set, [`BROWSERS_VAR`] names the browsers explicitly, or it is
/// Chromium (always required, as before Firefox joined).
fn required(kind: Kind) -> bool {
    kind == Kind::Chromium
        || std::env::var_os(REQUIRE_BROWSERS_VAR).is_some()
        || std::env::var_os(BROWSERS_VAR).is_some()
}

/// Runs `body` once per browser of [`browsers`], one after the other; in
/// it, [`Browser::start`] (and [`current`]) use that browser (a task-local:
/// not in tasks the body spawns). Every browser
/// runs even when one fails; then the test fails naming the browsers that
/// failed. A missing browser fails the test when [`required`], and is
/// otherwise skipped, saying why.
pub async fn each_browser<F, Fut>(test: &str, body: F)
where
    F: Fn(Kind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures_util::FutureExt;
    let mut failed = Vec::new();
    for kind in browsers() {
        if let Some(why) = kind.missing() {
            if required(kind) {
                panic!("{test} [{kind}]: {why}");
            }
            eprintln!(
                "SKIPPED {test} [{kind}]: {why}. `cargo xtask test` installs it and sets {REQUIRE_BROWSERS_VAR}=1 so this cannot skip."
            );
            continue;
        }
        eprintln!("=== {test} [{kind}]");
        let t0 = Instant::now();
        let run = std::panic::AssertUnwindSafe(CURRENT.scope(kind, body(kind)))
            .catch_unwind()
            .await;
        match run {
            Ok(()) => eprintln!("=== {test} [{kind}]: passed in {:.1?}", t0.elapsed()),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                eprintln!(
                    "=== {test} [{kind}]: FAILED after {:.1?}: {msg}",
                    t0.elapsed()
                );
                failed.push(format!("{kind}: {msg}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{test} failed in {} browser(s):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// How a browser starts: its viewport (CSS pixels) and colour scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub width: u32,
    pub height: u32,
    /// `prefers-color-scheme: dark` (else light).
    pub dark: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            width: 1200,
            height: 800,
            dark: false,
        }
    }
}

/// A WebDriver server (chromedriver or geckodriver) on a free loopback
/// port, its output in `target/artifacts/logs/`; killed on drop.
pub struct Driver {
    kind: Kind,
    child: Child,
    /// Its WebDriver URL.
    pub url: String,
    /// Where its output (and, for geckodriver, Firefox's) goes.
    pub log: PathBuf,
    /// The profiles of the browsers it started (see [`Drop`]).
    profiles: std::sync::Mutex<Vec<PathBuf>>,
}

/// The name the tests used before Firefox joined.
pub type ChromeDriver = Driver;

impl Driver {
    /// The driver of [`current`]'s browser.
    pub fn start() -> Self {
        Driver::start_kind(current())
    }

    pub fn start_kind(kind: Kind) -> Self {
        if let Some(why) = kind.missing() {
            panic!("{kind}: {why}");
        }
        let bin = kind.driver_binary();
        let port = free_port();
        let logs = target_dir().join("artifacts/logs");
        std::fs::create_dir_all(&logs).unwrap();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let log = logs.join(format!(
            "{kind}-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(&bin);
        match kind {
            Kind::Chromium => {
                cmd.arg(format!("--port={port}"))
                    .arg("--allowed-ips=127.0.0.1");
            }
            Kind::Firefox => {
                // Its own BiDi port: several geckodrivers run at once.
                cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--websocket-port", &free_port().to_string()])
                    .env("MOZ_HEADLESS", "1")
                    .env("MOZ_CRASHREPORTER_DISABLE", "1");
            }
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{} exited early with {status}; its log ({}):\n{}",
                    bin.display(),
                    log.display(),
                    log_tail(&log, 30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen within {WAIT:?}",
                bin.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            kind,
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            profiles: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// A headless browser with the profile `profile`, 1200×800, light.
    pub async fn browser(&self, profile: &TempDir) -> Client {
        self.browser_with(profile, &Options::default()).await
    }

    /// A headless browser with the profile `profile`, as `options` say.
    pub async fn browser_with(&self, profile: &TempDir, options: &Options) -> Client {
        let caps = match self.kind {
            Kind::Chromium => chromium_caps(profile, options),
            Kind::Firefox => firefox_caps(profile, options),
        };
        if let Ok(mut profiles) = self.profiles.lock() {
            profiles.push(profile.path().to_owned());
        }
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = tokio::time::timeout(
            WAIT,
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&self.url),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{}: no session within {WAIT:?}; driver log:\n{}",
                self.kind,
                log_tail(&self.log, 30)
            )
        })
        .unwrap_or_else(|e| {
            panic!(
                "{}: no session ({e}); driver log:\n{}",
                self.kind,
                log_tail(&self.log, 30)
            )
        });
        if self.kind == Kind::Firefox {
            set_viewport(&c, options.width, options.height)
                .await
                .unwrap_or_else(|e| panic!("firefox viewport: {e}"));
        }
        c
    }
}

impl Drop for Driver {
    /// Kills the driver, then the browsers it started that are still
    /// running (a test that failed before closing its session leaves one;
    /// killing a driver does not end its browser): the processes whose
    /// command line names one of this driver's profile directories, which
    /// are unique to this test process.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let profiles = self.profiles.lock().map(|p| p.clone()).unwrap_or_default();
        for pid in processes_naming(&profiles) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The ids of the processes whose command line has an argument naming one
/// of `paths` (`-profile P`, `--user-data-dir=P`), also in a title rewritten
/// as one string.
pub fn processes_naming(paths: &[PathBuf]) -> Vec<u32> {
    if paths.is_empty() {
        return Vec::new();
    }
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            // Split at spaces too: Chromium's helper processes rewrite
            // their title into one space-separated string, and its network
            // service, missed that way, outlived the kill and wrote its
            // state into the profile after the profile was removed.
            cmdline.split(|b| *b == 0 || *b == b' ').any(|arg| {
                let arg = String::from_utf8_lossy(arg);
                names
                    .iter()
                    .any(|n| *arg == **n || arg.ends_with(&format!("={n}")))
            })
        })
        .collect()
}

/// The last `n` lines of the file at `path` (empty when unreadable).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn chromium_caps(profile: &TempDir, o: &Options) -> serde_json::Map<String, Value> {
    let mut args = vec![
        "--headless".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--window-size={},{}", o.width, o.height),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    // Blink's preferred colour scheme: 0 dark, 1 light.
    args.push(format!(
        "--blink-settings=preferredColorScheme={}",
        if o.dark { 0 } else { 1 }
    ));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": Kind::Chromium.binary(), "args": args }),
    );
    caps
}

fn firefox_caps(profile: &TempDir, o: &Options) -> serde_json::Map<String, Value> {
    // No traffic beyond loopback: this network refuses it, and a test must
    // not depend on it. Telemetry, updates, safe browsing, captive portal
    // and connectivity checks, remote settings, prefetching: off.
    let prefs = json!({
        "app.update.disabledForTesting": true,
        "app.update.auto": false,
        "browser.shell.checkDefaultBrowser": false,
        "browser.startup.page": 0,
        "browser.startup.homepage": "about:blank",
        "browser.newtabpage.enabled": false,
        "browser.aboutwelcome.enabled": false,
        "browser.safebrowsing.malware.enabled": false,
        "browser.safebrowsing.phishing.enabled": false,
        "browser.safebrowsing.downloads.enabled": false,
        "browser.safebrowsing.blockedURIs.enabled": false,
        "browser.safebrowsing.provider.mozilla.updateURL": "",
        "browser.search.update": false,
        "browser.region.network.url": "",
        "browser.region.update.enabled": false,
        "datareporting.healthreport.uploadEnabled": false,
        "datareporting.policy.dataSubmissionEnabled": false,
        "toolkit.telemetry.enabled": false,
        "toolkit.telemetry.unified": false,
        "toolkit.telemetry.server": "",
        "network.captive-portal-service.enabled": false,
        "network.connectivity-service.enabled": false,
        "network.trr.mode": 5,
        "network.dns.disablePrefetch": true,
        "network.prefetch-next": false,
        "network.http.speculative-parallel-limit": 0,
        "services.settings.server": "http://127.0.0.1:9/",
        "extensions.update.enabled": false,
        "extensions.getAddons.cache.enabled": false,
        "extensions.blocklist.enabled": false,
        "media.gmp-manager.url": "",
        "dom.push.connection.enabled": false,
        // The page's console in the driver log.
        "devtools.console.stdout.content": true,
        // CSS `prefers-color-scheme`: 0 dark, 1 light.
        "layout.css.prefers-color-scheme.content-override": if o.dark { 0 } else { 1 },
    });
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("firefox"));
    caps.insert(
        "moz:firefoxOptions".into(),
        json!({
            "binary": Kind::Firefox.binary(),
            "args": ["-headless", "-profile", profile.path()],
            "prefs": prefs,
            "env": { "MOZ_HEADLESS": "1", "MOZ_CRASHREPORTER_DISABLE": "1" },
        }),
    );
    caps
}

/// Sizes the window so that the page's viewport (`innerWidth` ×
/// `innerHeight`) is `width` × `height` CSS pixels, whatever the browser's
/// window decorations take; returns the viewport obtained.
pub async fn set_viewport(c: &Client, width: u32, height: u32) -> Result<(u32, u32), String> {
    let inner = || async {
        let v = c
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await
            .map_err(|e| e.to_string())?;
        let n = |i: usize| u32::try_from(v[i].as_u64().unwrap_or(0)).unwrap_or(0);
        Ok::<_, String>((n(0), n(1)))
    };
    let (mut w, mut h) = (width, height);
    for _ in 0..3 {
        c.set_window_size(w, h).await.map_err(|e| e.to_string())?;
        // The page learns its new size a moment later (resize event).
        let mut seen = inner().await?;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = inner().await?;
            if now == seen {
                break;
            }
            seen = now;
        }
        let (iw, ih) = seen;
        if (iw, ih) == (width, height) {
            break;
        }
        w = (w + width).saturating_sub(iw);
        h = (h + height).saturating_sub(ih);
    }
    inner().await
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
            // What the page showed, for the one reading the failure.
            let list = c
                .execute(
                    "const m = document.getElementById('messages'); const ol = m?.querySelector('ol'); \
                     return m ? {hash: location.hash, count: ol?.dataset.count, first: ol?.dataset.first, \
                       top: m.scrollTop, height: m.scrollHeight, client: m.clientHeight, \
                       history: m.querySelector('.history-top')?.textContent, \
                       note: m.querySelector('.reveal-note')?.textContent ?? null} : null",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            let status = format!("{status}; message list: {list}");
            let shot = if c.screenshot().await.is_ok() {
                let path = screenshot(c, "wait-failed.png").await;
                format!("; screenshot {}", path.display())
            } else {
                String::new()
            };
            panic!(
                "browser: no {what} within {limit:?} (last: {last}; status line: {status}{shot})"
            );
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

/// Types `text` (WebDriver keys) into the element at `css`. An Enter
/// that is not part of a chord (Shift+Enter stays one) goes as a command
/// of its own: Firefox dispatches a whole sequence in one task, before the
/// page has re-rendered with the text typed, as no user can.
pub async fn type_into(c: &Client, css: &str, text: &str) {
    let el = c.find(Locator::Css(css)).await.expect(css);
    for chunk in key_chunks(text) {
        el.send_keys(&chunk).await.expect("typing");
    }
}

/// `text` cut before each Enter (`U+E007`) not right after a modifier key
/// (Shift, Control, Alt, Meta), and after each NULL key (`U+E000`, which
/// ends a chord).
fn key_chunks(text: &str) -> Vec<String> {
    const ENTER: char = '\u{E007}';
    const NULL: char = '\u{E000}';
    const MODIFIERS: [char; 4] = ['\u{E008}', '\u{E009}', '\u{E00A}', '\u{E03D}'];
    let mut chunks = Vec::new();
    let mut chunk = String::new();
    let mut prev = None;
    for ch in text.chars() {
        if ch == ENTER && !prev.is_some_and(|p| MODIFIERS.contains(&p)) && !chunk.is_empty() {
            chunks.push(std::mem::take(&mut chunk));
        }
        chunk.push(ch);
        prev = Some(ch);
        // The NULL key ends a chord: geckodriver keeps the modifiers held
        // until the command ends.
        if ch == NULL {
            chunks.push(std::mem::take(&mut chunk));
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

pub async fn clear(c: &Client, css: &str) {
    // Ctrl+A, release, Backspace: goes through the page's input handlers.
    type_into(c, css, "\u{E009}a\u{E000}\u{E003}").await;
}

/// Saves a screenshot as `target/artifacts/<name>` (Chromium) or
/// `target/artifacts/<browser>/<name>` (the others).
pub async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("screenshot");
    let dir = match current() {
        Kind::Chromium => target_dir().join("artifacts"),
        other => target_dir().join("artifacts").join(other.name()),
    };
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
///
/// Enter goes once the page has taken the nick (the Join button enabled,
/// up to 2 s): Firefox dispatches a whole key sequence at once, and an
/// Enter while the form's button is still disabled submits nothing.
pub async fn join_as(c: &Client, nick: &str) {
    clear(c, "#nick").await;
    type_into(c, "#nick", nick).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while js(
        c,
        "return document.querySelector('#join')?.disabled === true",
    )
    .await
        == json!(true)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    type_into(c, "#nick", "\u{E007}").await;
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

/// A headless browser ([`current`]'s) under its own driver, with a fresh
/// profile.
pub struct Browser {
    pub driver: Driver,
    pub profile: TempDir,
    pub c: Client,
    pub kind: Kind,
}

impl Browser {
    /// [`current`]'s browser, 1200×800, light; `profile` names its profile
    /// directory (a leading `chromium` is replaced by the browser's name).
    pub async fn start(profile: &str) -> Browser {
        Browser::start_with(profile, &Options::default()).await
    }

    /// [`current`]'s browser, as `options` say.
    pub async fn start_with(profile: &str, options: &Options) -> Browser {
        let kind = current();
        let driver = Driver::start_kind(kind);
        let tag = match profile.strip_prefix("chromium") {
            Some(rest) => format!("{kind}{rest}"),
            None => format!("{kind}-{profile}"),
        };
        let profile = TempDir::new(&tag);
        let c = driver.browser_with(&profile, options).await;
        Browser {
            driver,
            profile,
            c,
            kind,
        }
    }

    /// Saves `last_shot`, closes the browser and stops its driver; then
    /// fails with the scenario's error, if any (with the driver log's end).
    pub async fn finish(self, last_shot: &str, result: Result<(), String>) {
        let _ = screenshot(&self.c, last_shot).await;
        let _ = self.c.close().await;
        let log = self.driver.log.clone();
        drop(self.driver);
        drop(self.profile);
        result.unwrap_or_else(|e| {
            panic!(
                "[{}] {e}\n--- end of the driver log {}:\n{}",
                self.kind,
                log.display(),
                log_tail(&log, 20)
            )
        });
    }
}

/// One sample of the bridge's `/metrics` (0 when the line is absent).
pub async fn metric(bridge: &Bridge, series: &str) -> f64 {
    let (_, _, body) = common::http_get(bridge.addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A chromedriver command the WebDriver standard lacks (Chromium's
/// network emulation, CDP), over plain HTTP on loopback; bounded. Returns
/// the response.
pub async fn chromedriver_cmd(
    driver: &ChromeDriver,
    method: &str,
    path: &str,
    body: &Value,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = driver.url.trim_start_matches("http://").to_string();
    let body = body.to_string();
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(&host).await.ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        // chromedriver may keep the connection open: read one response.
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                });
                if len.is_some_and(|len| body.len() >= len) {
                    break;
                }
            }
        }
        Some(String::from_utf8_lossy(&out).to_string())
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("chromedriver did not answer {method} {path}"))
}
