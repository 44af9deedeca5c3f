//! Accessibility audit with axe-core, in each browser (Chromium and
//! Firefox ESR): the page served by the bridge, relaying to a real Python
//! `dumdum-server` 0.5.0 with three channels; a Python reference client
//! posts messages (with links, on several channels). `axe.run()` audits
//! the connect screen and the chat screen, in the light and the dark theme
//! (`prefers-color-scheme`), at desktop (1280×800) and phone (390×844)
//! sizes; on the phone also with the channel list open. The search panel
//! (`/`), the settings panel (`button.settings-toggle`) and the keyboard
//! help (`?`) are opened and audited too; the test fails, saying which,
//! when one does not open.
//!
//! Every violation is printed (rule id, impact, the element's selector and
//! what to fix) and the test fails unless there are none.
//!
//! Needs axe-core from npm in `target/tools/node_modules/axe-core`
//! (`cargo xtask setup` installs the pinned version; `AXE_JS` overrides the
//! path of `axe.min.js`), and what `browser.rs` needs. Every wait is
//! bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_kit;
mod common;

use std::path::PathBuf;
use std::time::Instant;

use browser_kit::*;
use common::Bridge;
use dumdum_bridge::{Config, UpstreamConfig};
use dumdum_testkit::{DumdumServer, PyPeer};
use fantoccini::{Client, Locator};
use serde_json::json;

const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);
const CHANNELS: [&str; 3] = ["general", "random", "help-desk"];

/// A part of the page that should be audited did not open.
fn absent(tag: &str, what: &str) {
    panic!("[{tag}] {what}");
}

/// The text of `axe.min.js`.
fn axe_source() -> String {
    let path = std::env::var_os("AXE_JS").map_or_else(
        || target_dir().join("tools/node_modules/axe-core/axe.min.js"),
        PathBuf::from,
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): install axe-core with `cargo xtask setup` \
             (npm, into target/tools)",
            path.display()
        )
    })
}

/// One audit's findings: a line per violation and element.
struct Audit {
    state: String,
    violations: Vec<String>,
}

/// Runs axe-core on the whole document; prints and returns what it found.
async fn audit(c: &Client, axe: &str, state: &str) -> Audit {
    // WebDriver's execute-script runs outside the page's CSP; the source
    // is the script itself (no eval), once per document.
    let have = js(c, "return typeof window.axe").await;
    if have != json!("object") {
        let loaded = c
            .execute(&format!("{axe}\n;return typeof window.axe"), vec![])
            .await
            .expect("axe-core loads");
        assert_eq!(loaded, json!("object"), "axe-core did not load");
    }
    let t0 = Instant::now();
    let found = c
        .execute_async(
            r"const done = arguments[arguments.length - 1];
              axe.run(document, { resultTypes: ['violations'] })
                .then(r => done({
                  version: axe.version,
                  passes: r.passes.length,
                  violations: r.violations.map(v => ({
                    id: v.id, impact: v.impact, help: v.help, url: v.helpUrl,
                    nodes: v.nodes.map(n => ({ target: n.target.join(' '), why: n.failureSummary })),
                  })),
                }))
                .catch(e => done({ error: String(e) }));",
            vec![],
        )
        .await
        .expect("axe.run answers");
    if let Some(e) = found.get("error") {
        panic!("axe.run failed on {state}: {e}");
    }
    let mut violations = Vec::new();
    for v in found["violations"].as_array().into_iter().flatten() {
        for n in v["nodes"].as_array().into_iter().flatten() {
            violations.push(format!(
                "{} ({}) at `{}`: {}. {} [{}]",
                v["id"].as_str().unwrap_or("?"),
                v["impact"].as_str().unwrap_or("?"),
                n["target"].as_str().unwrap_or("?"),
                v["help"].as_str().unwrap_or("?"),
                n["why"].as_str().unwrap_or("").replace('\n', " "),
                v["url"].as_str().unwrap_or(""),
            ));
        }
    }
    eprintln!(
        "axe {} [{state}]: {} violation(s), {} rules passed, {:.1?}",
        found["version"].as_str().unwrap_or("?"),
        violations.len(),
        found["passes"],
        t0.elapsed()
    );
    for v in &violations {
        eprintln!("  VIOLATION [{state}] {v}");
    }
    Audit {
        state: state.to_owned(),
        violations,
    }
}

/// The page's phone layout: `@media (max-width: 760px)` in styles.css.
const PHONE_LAYOUT_MAX_WIDTH: u32 = 760;

/// Sets the viewport to `size` and checks it took. Firefox's window
/// cannot be narrower than 500 px (its own minimum, headless too): there
/// the phone audit runs at the narrowest width obtained, which must still
/// be the page's phone layout, and says so.
async fn resize(c: &Client, size: (u32, u32)) {
    let got = set_viewport(c, size.0, size.1).await.expect("resize");
    if got == size {
        return;
    }
    let kind = current();
    assert!(
        kind == Kind::Firefox && size.0 < 500 && got.1 == size.1,
        "{kind}: viewport {got:?}, {size:?} asked"
    );
    assert!(got.0 <= PHONE_LAYOUT_MAX_WIDTH, "{kind}: viewport {got:?}");
    eprintln!(
        "NOTE [{kind}]: viewport {}x{} instead of {}x{} (the narrowest window Firefox allows); still the phone layout",
        got.0, got.1, size.0, size.1
    );
}

/// Presses `keys` on the page outside any text field.
async fn press_on_page(c: &Client, keys: &str) {
    js(
        c,
        "document.activeElement?.blur(); document.body.focus(); return null",
    )
    .await;
    c.find(Locator::Css("body"))
        .await
        .expect("body")
        .send_keys(keys)
        .await
        .expect("keys");
}

/// Whether an element matching `css` is in the page.
async fn present(c: &Client, css: &str) -> bool {
    js(
        c,
        &format!("return !!document.querySelector({})", json!(css)),
    )
    .await
        == json!(true)
}

/// Opens what the other parts of the page add (search, settings, help)
/// and audits each open; says plainly which are absent.
async fn audit_optional_parts(c: &Client, axe: &str, tag: &str, out: &mut Vec<Audit>) {
    // Search: `/` outside text fields opens `.search-panel`.
    press_on_page(c, "/").await;
    let opened = wait_present_briefly(c, ".search-panel #search-input, .search-panel").await;
    if opened {
        out.push(audit(c, axe, &format!("{tag} search panel")).await);
        press_on_page(c, "\u{E00C}").await;
    } else {
        absent(
            tag,
            "no .search-panel after `/`: the search panel was not audited",
        );
    }
    // Settings: `button.settings-toggle` opens `.settings-panel`.
    if present(c, "button.settings-toggle").await {
        click(c, "button.settings-toggle").await.expect("settings");
        if wait_present_briefly(c, ".settings-panel").await {
            out.push(audit(c, axe, &format!("{tag} settings panel")).await);
        } else {
            absent(tag, "the settings toggle opened no .settings-panel");
        }
        let _ = click(c, "button.settings-toggle").await;
    } else {
        absent(
            tag,
            "no button.settings-toggle: the settings panel was not audited",
        );
    }
    // Keyboard help: `?` outside text fields opens `.help-dialog`.
    press_on_page(c, "?").await;
    if wait_present_briefly(c, ".help-dialog").await {
        out.push(audit(c, axe, &format!("{tag} help dialog")).await);
        press_on_page(c, "\u{E00C}").await;
    } else {
        absent(
            tag,
            "no .help-dialog after `?`: the help dialog was not audited",
        );
    }
}

/// Waits up to 2 s for `css` (bounded; the parts open at once when they
/// exist).
async fn wait_present_briefly(c: &Client, css: &str) -> bool {
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    loop {
        if present(c, css).await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// One theme in one browser: the connect screen, then the chat.
async fn audit_theme(
    url: &str,
    axe: &str,
    dark: bool,
    py: &mut PyPeer,
    out: &mut Vec<Audit>,
) -> Result<(), String> {
    let kind = current();
    let theme = if dark { "dark" } else { "light" };
    let options = Options {
        width: DESKTOP.0,
        height: DESKTOP.1,
        dark,
    };
    let b = Browser::start_with(&format!("a11y-{theme}"), &options).await;
    let result = async {
        let c = &b.c;
        c.goto(url).await.map_err(|e| e.to_string())?;
        wait_connect_screen(c, "connect screen").await;
        let scheme = js(
            c,
            "return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'",
        )
        .await;
        assert_eq!(scheme, json!(theme), "the browser's colour scheme");
        resize(c, DESKTOP).await;
        out.push(audit(c, axe, &format!("{kind} {theme} desktop connect")).await);
        resize(c, PHONE).await;
        out.push(audit(c, axe, &format!("{kind} {theme} phone connect")).await);
        resize(c, DESKTOP).await;

        let nick = format!("a11y-{theme}");
        join_as(c, &nick).await;
        wait_status(c, "connected status", "startsWith('Connected to local')").await;
        // A conversation: links, several lines, own messages, and unread
        // messages on the other channels.
        let marker = format!("{theme}: docs at https://example.com/docs and mail me");
        py.send("general", &format!("{theme}: hello, the first message"));
        py.send("general", &marker);
        py.send("general", &format!("{theme}: two lines\nsecond line"));
        wait_shown_once(c, "python message", &marker).await;
        post_from_page(c, py, "own message", &format!("{theme}: hi from the page")).await;
        py.send("random", &format!("{theme}: over in random"));
        py.send("help-desk", &format!("{theme}: a question, see http://127.0.0.1/"));
        wait_js(
            c,
            "unread badges",
            "return document.querySelectorAll('.channel .badge').length >= 2",
        )
        .await;
        out.push(audit(c, axe, &format!("{kind} {theme} desktop chat")).await);
        audit_optional_parts(c, axe, &format!("{kind} {theme} desktop"), out).await;

        resize(c, PHONE).await;
        wait_js(
            c,
            "menu button",
            "return getComputedStyle(document.querySelector('.menu-toggle')).display !== 'none'",
        )
        .await;
        out.push(audit(c, axe, &format!("{kind} {theme} phone chat")).await);
        click(c, ".menu-toggle").await?;
        wait_js(
            c,
            "open channel list",
            "return document.querySelector('.menu-toggle').getAttribute('aria-expanded') === 'true' \
             && document.querySelector('#sidebar').getBoundingClientRect().left >= 0",
        )
        .await;
        out.push(audit(c, axe, &format!("{kind} {theme} phone channel list")).await);
        let _ = screenshot(c, &format!("a11y-{theme}-phone-channels.png")).await;
        js(
            c,
            "document.querySelector('.backdrop')?.click(); return null",
        )
        .await;
        resize(c, DESKTOP).await;
        let _ = screenshot(c, &format!("a11y-{theme}-desktop.png")).await;
        Ok(())
    }
    .await;
    b.finish(&format!("a11y-{theme}-last.png"), result).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn axe_finds_no_violations() {
    each_browser("axe_finds_no_violations", |_| axe_once()).await;
}

async fn axe_once() {
    let www = bundle();
    let axe = axe_source();
    let server = DumdumServer::start_with(&CHANNELS, None);
    let addr = server.addr();
    let mut py = blocking(|| PyPeer::connect(addr, "pyhelper", None));
    assert!(blocking(|| py.expect_auth()));
    let bridge = Bridge::start(Config {
        upstreams: vec![UpstreamConfig::new("local", addr.to_string())],
        www,
        ..Config::default()
    })
    .await;
    let url = bridge.http_url("/");
    let mut audits = Vec::new();
    for dark in [false, true] {
        audit_theme(&url, &axe, dark, &mut py, &mut audits)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let failing: Vec<&Audit> = audits.iter().filter(|a| !a.violations.is_empty()).collect();
    eprintln!(
        "axe [{}]: {} states audited, {} with violations",
        current(),
        audits.len(),
        failing.len()
    );
    let all: Vec<String> = failing
        .iter()
        .flat_map(|a| {
            a.violations
                .iter()
                .map(move |v| format!("[{}] {v}", a.state))
        })
        .collect();
    assert!(
        all.is_empty(),
        "axe-core found {} violation(s):\n{}",
        all.len(),
        all.join("\n")
    );
    drop(server);
}
