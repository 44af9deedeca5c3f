//! The page as a browser loads it from the bridge, in headless Chromium
//! against the real Python `dumdum-server`:
//!
//! - cold and warm loads: bytes transferred and times read from the
//!   Performance API (printed, not asserted as times); the cold wasm arrives
//!   compressed, the warm load transfers far fewer bytes; the page chats
//!   under the bridge's Content-Security-Policy with no violation;
//! - installable and offline: the service worker keeps the app shell, a
//!   reload with the bridge down shows the page and says it is offline;
//! - a new bundle (new hashed file names in index.html) is picked up by the
//!   next load.
//!
//! Each runs in Chromium and Firefox. A probe script records CSP
//! violations and the moment the app renders. In Chromium it is installed
//! before any of the page's scripts (CDP `goog/cdp/execute` through
//! chromedriver); classic WebDriver has no such command for Firefox, so
//! there it goes in right after each load: what the load itself violated
//! goes unrecorded (Firefox's console output does not carry CSP errors),
//! and the evidence is that the page loads, renders and chats under the
//! policy. The browser-offline step uses Chromium's
//! network emulation, which has no Firefox equivalent: in Firefox the
//! offline reload is covered by the bridge going away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_kit;
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use browser_kit::*;
use common::Bridge;
use dumdum_bridge::{Config, UpstreamConfig};
use dumdum_testkit::{DumdumServer, PyPeer, TempDir};
use fantoccini::Client;
use serde_json::{Value, json};

/// Runs before the page's own scripts in every document: records CSP
/// violations and when the app first renders (its first element that is not
/// the static boot screen).
const PROBE: &str = r#"
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`);
});
window.__appAt = 0;
new MutationObserver((_, o) => {
  if (!window.__appAt && document.querySelector('#app > :not(.boot)')) {
    window.__appAt = performance.now();
    o.disconnect();
  }
}).observe(document, { subtree: true, childList: true });
"#;

/// The load's figures from the Performance API.
const FIGURES: &str = r#"
const nav = performance.getEntriesByType('navigation')[0];
const name = (u) => new URL(u).pathname.split('/').pop() || '/';
const res = performance.getEntriesByType('resource').map((r) => ({
  name: name(r.name), transfer: r.transferSize, encoded: r.encodedBodySize,
  decoded: r.decodedBodySize, duration: Math.round(r.duration), sw: r.workerStart > 0,
}));
const fcp = performance.getEntriesByName('first-contentful-paint')[0];
return {
  nav: { transfer: nav.transferSize, encoded: nav.encodedBodySize, decoded: nav.decodedBodySize,
         responseEnd: Math.round(nav.responseEnd), dcl: Math.round(nav.domContentLoadedEventEnd),
         load: Math.round(nav.loadEventEnd), sw: nav.workerStart > 0 },
  res, fcp: fcp ? Math.round(fcp.startTime) : null, appAt: Math.round(window.__appAt),
  csp: window.__csp,
};
"#;

/// A POST of `body` to chromedriver at `path` (below the session); it
/// must answer 200.
async fn driver_post(b: &Browser, path: &str, body: Value) {
    let session = b.c.session_id().await.unwrap().expect("a session");
    let answer = chromedriver_cmd(
        &b.driver,
        "POST",
        &format!("/session/{session}/{path}"),
        &body,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
}

/// Installs [`PROBE`] for every new document of this browser (Chromium;
/// in Firefox [`after_load`] does it).
async fn install_probe(b: &Browser) {
    if b.kind != Kind::Chromium {
        return;
    }
    driver_post(
        b,
        "goog/cdp/execute",
        json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": PROBE}}),
    )
    .await;
}

/// After a load, in Firefox: waits for the app, then installs [`PROBE`]
/// (the app's render time is then when the probe saw it).
async fn after_load(c: &Client, what: &str) {
    if current() == Kind::Chromium {
        return;
    }
    wait_js(
        c,
        &format!("{what}: the app rendered"),
        "return !window.__old && !!document.querySelector('#app > :not(.boot)')",
    )
    .await;
    fantoccini_js(
        c,
        &format!("{PROBE}\nif (!window.__appAt) window.__appAt = performance.now(); return null"),
    )
    .await;
}

/// Loads `url` (and, in Firefox, installs the probe).
async fn open(c: &Client, url: &str) -> Result<(), String> {
    c.goto(url).await.map_err(|e| e.to_string())?;
    after_load(c, url).await;
    Ok(())
}

/// Reloads as a user does (F5) and waits for the new document's app to
/// render. geckodriver's Refresh bypasses the caches and the service
/// worker, like Ctrl+Shift+R: in Firefox the page reloads itself.
async fn reload(c: &Client, what: &str) {
    fantoccini_js(c, "window.__old = true; return true").await;
    if current() == Kind::Chromium {
        c.refresh().await.expect("reload");
    } else {
        fantoccini_js(c, "setTimeout(() => location.reload(), 0); return null").await;
    }
    after_load(c, what).await;
    wait_js(c, what, "return !window.__old && window.__appAt > 0").await;
}

async fn fantoccini_js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("script runs")
}

/// Waits until the service worker controls the page and its cache holds
/// the page's wasm; returns the cached paths.
async fn wait_shell_cached(c: &Client, what: &str) -> Vec<String> {
    wait_js(
        c,
        &format!("{what}: the service worker in control"),
        "return !!navigator.serviceWorker.controller",
    )
    .await;
    cached_paths(c, what, "p.endsWith('.wasm')").await
}

/// The paths in the service worker's cache, once `until` (a JS test of
/// one path `p`) holds for one of them.
async fn cached_paths(c: &Client, what: &str, until: &str) -> Vec<String> {
    let js = format!(
        "caches.open('dumdum-shell-v1').then((c) => c.keys()).then((k) => {{ window.__cached = k.map((r) => new URL(r.url).pathname); }});
         const got = window.__cached || [];
         return got.some((p) => {until}) ? got : null;"
    );
    let v = wait_js(c, &format!("{what}: cached ({until})"), &js).await;
    serde_json::from_value(v).unwrap()
}

fn sum_transfer(figures: &Value) -> u64 {
    let res: u64 = figures["res"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["transfer"].as_u64().unwrap_or(0))
        .sum();
    res + figures["nav"]["transfer"].as_u64().unwrap_or(0)
}

fn resource<'a>(figures: &'a Value, suffix: &str) -> &'a Value {
    figures["res"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str().is_some_and(|n| n.ends_with(suffix)))
        .unwrap_or_else(|| panic!("no {suffix} among the resources: {figures}"))
}

fn print_figures(label: &str, f: &Value) {
    println!(
        "{label}: first contentful paint {} ms, app rendered at {} ms, DOMContentLoaded {} ms, load {} ms; document {} B transferred ({} B encoded, {} B decoded, via service worker: {})",
        f["fcp"],
        f["appAt"],
        f["nav"]["dcl"],
        f["nav"]["load"],
        f["nav"]["transfer"],
        f["nav"]["encoded"],
        f["nav"]["decoded"],
        f["nav"]["sw"]
    );
    for r in f["res"].as_array().unwrap() {
        println!(
            "  {:<36} transfer {:>7} B  encoded {:>7} B  decoded {:>7} B  {:>4} ms{}",
            r["name"].as_str().unwrap_or(""),
            r["transfer"],
            r["encoded"],
            r["decoded"],
            r["duration"],
            if r["sw"].as_bool() == Some(true) {
                "  (service worker)"
            } else {
                ""
            }
        );
    }
    println!("  total transferred: {} B", sum_transfer(f));
}

async fn page_bridge(addr: SocketAddr, www: PathBuf) -> Bridge {
    Bridge::start(Config {
        upstreams: vec![UpstreamConfig::new("local", addr.to_string())],
        www,
        embedded_page: false,
        ..Config::default()
    })
    .await
}

fn assert_no_violations(f: &Value, what: &str) {
    assert_eq!(f["csp"], json!([]), "{what}: CSP violations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_and_warm_loads_and_chat_under_the_csp() {
    each_browser("cold_and_warm_loads_and_chat_under_the_csp", |_| {
        cold_and_warm_once()
    })
    .await;
}

async fn cold_and_warm_once() {
    let www = bundle();
    let server = DumdumServer::start();
    let mut py = blocking(|| PyPeer::connect(server.addr(), "pyload", None));
    assert!(blocking(|| py.expect_auth()));
    let bridge = page_bridge(server.addr(), www).await;
    let url = bridge.http_url("/");

    let b = Browser::start("chromium-load").await;
    install_probe(&b).await;
    let result = async {
        let c = &b.c;
        open(c, &url).await?;
        wait_js(
            c,
            "connect screen (cold)",
            "return window.__appAt > 0 && !!document.querySelector('#nick')",
        )
        .await;
        // Let the load event and the service worker's install finish.
        wait_shell_cached(c, "cold").await;
        let cold = fantoccini_js(c, FIGURES).await;
        print_figures("cold load (empty cache)", &cold);
        assert_no_violations(&cold, "cold load");
        let wasm = resource(&cold, ".wasm");
        let (encoded, decoded) = (
            wasm["encoded"].as_u64().unwrap(),
            wasm["decoded"].as_u64().unwrap(),
        );
        assert!(
            encoded > 0 && encoded * 2 < decoded,
            "the cold wasm arrives compressed: {wasm}"
        );

        // Warm: the same page again.
        reload(c, "connect screen (warm)").await;
        wait_connect_screen(c, "connect screen (warm)").await;
        wait_js(
            c,
            "warm load event",
            "return performance.getEntriesByType('navigation')[0].loadEventEnd > 0",
        )
        .await;
        let warm = fantoccini_js(c, FIGURES).await;
        print_figures("warm load (reload)", &warm);
        assert_no_violations(&warm, "warm load");
        let warm_wasm = resource(&warm, ".wasm");
        let cold_total = sum_transfer(&cold);
        let warm_total = sum_transfer(&warm);
        println!(
            "cold {cold_total} B vs warm {warm_total} B transferred; wasm {} B cold vs {} B warm",
            wasm["transfer"], warm_wasm["transfer"]
        );
        assert!(
            warm_wasm["transfer"].as_u64().unwrap() * 10 < wasm["transfer"].as_u64().unwrap(),
            "the warm wasm comes from a cache: {warm_wasm}"
        );
        assert!(
            warm_total * 10 < cold_total,
            "the warm load transfers far fewer bytes"
        );

        // Chat under the CSP, both ways, with the reference client.
        join_as(c, "pageload").await;
        wait_status(c, "connected", "includes('Connected')").await;
        post_from_page(c, &mut py, "page -> python", "hello from under the CSP").await;
        py.send("general", "python -> page under the CSP");
        wait_shown_once(c, "python -> page", "python -> page under the CSP").await;
        let after_chat = fantoccini_js(c, "return window.__csp").await;
        assert_eq!(after_chat, json!([]), "CSP violations while chatting");
        // The probe sees what the policy blocks: an inline script.
        fantoccini_js(
            c,
            "const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; document.head.appendChild(s); return null",
        )
        .await;
        let seen = wait_js(c, "the blocked inline script reported", "return window.__csp.length ? window.__csp : null").await;
        println!("a blocked inline script: {seen}");
        assert_eq!(fantoccini_js(c, "return window.__ran ?? null").await, Value::Null);

        Ok::<(), String>(())
    }
    .await;
    b.finish("load-last.png", result).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offline_reload_shows_the_saved_page_and_says_so() {
    each_browser("offline_reload_shows_the_saved_page_and_says_so", |_| {
        offline_reload_once()
    })
    .await;
}

async fn offline_reload_once() {
    let www = bundle();
    let server = DumdumServer::start();
    let mut bridge = page_bridge(server.addr(), www).await;
    let url = bridge.http_url("/");

    let b = Browser::start("chromium-offline").await;
    install_probe(&b).await;
    let result = async {
        let c = &b.c;
        open(c, &url).await?;
        wait_connect_screen(c, "connect screen online").await;
        let cached = wait_shell_cached(c, "online").await;
        println!("the service worker cached: {cached:?}");
        let none = fantoccini_js(c, "return document.querySelector('#offline-notice')?.textContent ?? null").await;
        assert_eq!(none, Value::Null, "no offline notice while online");
        let manifest = fantoccini_js(
            c,
            "return fetch(document.querySelector('link[rel=manifest]').href).then((r) => r.json())",
        )
        .await;
        assert_eq!(manifest["display"], "standalone");
        assert!(manifest["icons"].as_array().is_some_and(|i| i.len() >= 3), "{manifest}");

        // The bridge goes away: the next load comes from the saved shell.
        bridge.stop().await;
        reload(c, "the saved page while the bridge is down").await;
        wait_connect_screen(c, "the saved connect screen").await;
        let notice = wait_js(
            c,
            "the offline notice",
            "return document.querySelector('#offline-notice')?.textContent ?? null",
        )
        .await;
        println!("offline notice: {notice}");
        assert!(notice.as_str().is_some_and(|t| t.contains("offline")), "{notice}");
        let f = fantoccini_js(c, FIGURES).await;
        // Chromium reports the service worker in the navigation's timing
        // (workerStart); Firefox does not: there, with the bridge stopped,
        // a page under the worker's control is the worker's.
        if b.kind == Kind::Chromium {
            assert!(f["nav"]["sw"].as_bool() == Some(true), "served by the service worker: {f}");
        } else {
            let controlled = fantoccini_js(c, "return !!navigator.serviceWorker.controller").await;
            assert_eq!(controlled, json!(true), "the saved page is under the service worker: {f}");
        }
        assert_no_violations(&f, "offline load");
        let _ = screenshot(c, "offline.png").await;
        if b.kind != Kind::Chromium {
            println!("{}: no network emulation over WebDriver; the offline reload above covers it", b.kind);
            return Ok(());
        }

        // The browser itself offline (Chromium's network emulation): it says so too.
        driver_post(
            &b,
            "chromium/network_conditions",
            json!({"network_conditions": {"offline": true, "latency": 0, "download_throughput": -1, "upload_throughput": -1}}),
        )
        .await;
        let notice = wait_js(
            c,
            "the notice while the browser is offline",
            "return !navigator.onLine && document.querySelector('#offline-notice')?.textContent",
        )
        .await;
        println!("browser offline: {notice}");
        assert!(notice.as_str().is_some_and(|t| t.starts_with("You are offline")), "{notice}");
        Ok::<(), String>(())
    }
    .await;
    b.finish("offline-last.png", result).await;
}

/// Copies the page at `from` into `to` (files only).
fn copy_page(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_bundle_is_picked_up_by_the_next_load() {
    each_browser("a_new_bundle_is_picked_up_by_the_next_load", |_| {
        new_bundle_once()
    })
    .await;
}

async fn new_bundle_once() {
    let www = bundle();
    let copy = TempDir::new("www-deploy");
    copy_page(&www, copy.path());
    let server = DumdumServer::start();
    let bridge = page_bridge(server.addr(), copy.path().to_path_buf()).await;
    let url = bridge.http_url("/");

    let b = Browser::start("chromium-deploy").await;
    install_probe(&b).await;
    let result = async {
        let c = &b.c;
        open(c, &url).await?;
        wait_connect_screen(c, "connect screen, first bundle").await;
        wait_shell_cached(c, "first bundle").await;

        // Deploy: a new stylesheet under a new hashed name, named by a new
        // index.html (its old precompressed copies removed, as a new
        // `cargo xtask dist` would replace them).
        let index = std::fs::read_to_string(copy.path().join("index.html")).unwrap();
        let old_css = index
            .split('"')
            .find(|s| s.starts_with("./styles-") && s.ends_with(".css"))
            .expect("the stylesheet in index.html")
            .trim_start_matches("./")
            .to_owned();
        let new_css = "styles-00000000000d3a11.css";
        let css = std::fs::read_to_string(copy.path().join(&old_css)).unwrap();
        std::fs::write(
            copy.path().join(new_css),
            format!("{css}\n:root {{ --deployed: new-bundle; }}\n"),
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await; // a later Last-Modified
        std::fs::write(copy.path().join("index.html"), index.replace(&old_css, new_css)).unwrap();
        for ext in ["br", "gz"] {
            let _ = std::fs::remove_file(copy.path().join(format!("index.html.{ext}")));
        }

        reload(c, "connect screen, new bundle").await;
        wait_connect_screen(c, "connect screen, new bundle").await;
        let marker = wait_js(
            c,
            "the new stylesheet in use",
            "return getComputedStyle(document.documentElement).getPropertyValue('--deployed').trim()",
        )
        .await;
        assert_eq!(marker, "new-bundle");
        let href = fantoccini_js(c, "return document.querySelector('link[rel=stylesheet]').href").await;
        assert!(href.as_str().is_some_and(|h| h.ends_with(new_css)), "{href}");
        let cached = cached_paths(c, "new bundle", &format!("p.endsWith('{new_css}')")).await;
        println!("after the deploy the service worker holds: {cached:?}");
        assert!(
            !cached.iter().any(|p| p.ends_with(&old_css)),
            "the old stylesheet was dropped from the cache: {cached:?}"
        );
        let f = fantoccini_js(c, FIGURES).await;
        assert_no_violations(&f, "new bundle");
        Ok::<(), String>(())
    }
    .await;
    b.finish("deploy-last.png", result).await;
}
