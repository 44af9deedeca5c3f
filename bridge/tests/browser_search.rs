//! Search in the channel, end to end: headless Chromium loads the page from
//! the bridge whose upstream is the real Python `dumdum-server` 0.5.0; the
//! history is written by the Python reference client (testkit's PyPeer).
//!
//! - 660 messages in #general: the page loads the newest 100; a search for a
//!   word of the message 600 back finds nothing loaded, "Search older" pages
//!   back to it and says how far it searched; the result links to the
//!   message's permalink;
//! - 250 messages in #random without the word: "Search older" ends at the
//!   start of the history and says so;
//! - `/` (outside text fields) and Ctrl+F (anywhere) open the search, Esc
//!   closes it and gives the focus back; `/` in the message box types a `/`;
//! - `?` opens the keyboard shortcuts dialog, Esc closes it.
//!
//! Prints the time the page took to filter the loaded messages and to
//! search back (figures, not assertions). Needs what `browser.rs` needs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_kit;
mod common;

use std::time::{Duration, Instant};

use browser_kit::*;
use common::Bridge;
use dumdum_bridge::{Config, UpstreamConfig};
use dumdum_testkit::{DumdumServer, PyPeer};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

/// Messages in #general; the one to find is this many back from the newest.
const GENERAL: usize = 660;
const BACK: usize = 600;
/// Messages in #random (none matches).
const RANDOM: usize = 250;
/// Messages in #big, for the figures with a full history loaded (the
/// reference server keeps the last 1000 of a channel).
const BIG: usize = 1000;
const NEEDLE: &str = "Lighthouse";
const FAR: &str = "the lighthouse keeper wrote this long ago";

const ESC: &str = "\u{E00C}";
const CTRL: &str = "\u{E009}";
const RELEASE: &str = "\u{E000}";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_in_the_channel_and_older() {
    each_browser("search_in_the_channel_and_older", |_| {
        search_in_the_channel_and_older_once()
    })
    .await;
}

async fn search_in_the_channel_and_older_once() {
    let www = bundle();
    let server = DumdumServer::start_with(&["general", "random", "big"], None);
    let addr = server.addr();

    let mut historian = blocking(|| PyPeer::connect(addr, "historian", None));
    assert!(blocking(|| historian.expect_auth()));
    let far_index = GENERAL - BACK;
    for i in 1..=GENERAL {
        let text = if i == far_index {
            FAR.to_owned()
        } else {
            format!("older chat {i:03}")
        };
        historian.send("general", &text);
    }
    for i in 1..=RANDOM {
        historian.send("random", &format!("random talk {i:03}"));
    }
    for i in 1..=BIG {
        historian.send("big", &format!("message number {i} in the big channel"));
    }
    let far_id = blocking(|| historian.expect_message(FAR))["id"]
        .as_u64()
        .expect("an id");
    blocking(|| historian.expect_message(&format!("random talk {RANDOM:03}")));
    blocking(|| historian.expect_message(&format!("message number {BIG} in the big channel")));
    drop(historian);

    let bridge = Bridge::start(Config {
        upstreams: vec![UpstreamConfig::new("local", addr.to_string())],
        www,
        ..Config::default()
    })
    .await;
    let b = Browser::start("chromium-search").await;
    let result = scenario(&b.c, &bridge.http_url("/"), far_id).await;
    b.finish("search-last.png", result).await;
    drop(server);
}

/// Presses `keys` on the focused element.
async fn press(c: &Client, keys: &str) -> Result<(), String> {
    c.active_element()
        .await
        .map_err(|e| e.to_string())?
        .send_keys(keys)
        .await
        .map_err(|e| e.to_string())
}

async fn focused_id(c: &Client) -> Value {
    js(c, "return document.activeElement?.id ?? null").await
}

async fn panel_open(c: &Client) -> bool {
    js(c, "return !!document.querySelector('.search-panel')").await == json!(true)
}

/// Focuses the message list (not a text field).
async fn focus_messages(c: &Client) {
    js(
        c,
        "document.getElementById('messages').focus(); return null",
    )
    .await;
}

/// Waits until the search progress line passes `test`; returns its text.
async fn wait_progress(c: &Client, what: &str, test: &str, limit: Duration) -> String {
    let js = format!(
        "const t = document.querySelector('.search-progress')?.textContent; return t && t.{test} ? t : null"
    );
    wait_js_for(c, what, &js, limit)
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// Sets the search box to `term` as typing does (one input event).
async fn set_query(c: &Client, term: &str) -> Result<(), String> {
    c.execute(
        "const i = document.getElementById('search-input'); i.value = arguments[0]; i.dispatchEvent(new InputEvent('input', {bubbles: true})); return null",
        vec![json!(term)],
    )
    .await
    .map(drop)
    .map_err(|e| e.to_string())
}

/// Measured in the page, from one input event setting the search box to
/// `term`: the time until the results are in the DOM (polled between
/// microtasks: the page renders in one after the event) and until the next
/// animation frame; and how many results are listed.
async fn filter_ms(c: &Client, term: &str) -> Result<(f64, f64, u64), String> {
    set_query(c, "").await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let v = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; const i = document.getElementById('search-input'); const said = () => document.querySelector('.search-count')?.textContent ?? ''; const t = performance.now(); i.value = arguments[0]; i.dispatchEvent(new InputEvent('input', {bubbles: true})); (async () => { let turns = 0; while (!said() && turns < 10000) { if (turns < 1000) { await Promise.resolve(); } else { await new Promise(r => setTimeout(r, 0)); } turns++; } const r = performance.now() - t; requestAnimationFrame(() => done([r, performance.now() - t, document.querySelectorAll('.search-result').length, turns])); })();",
            vec![json!(term)],
        )
        .await
        .map_err(|e| e.to_string())?;
    let ms = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    Ok((ms(&v[0]), ms(&v[1]), v[2].as_u64().unwrap_or(0)))
}

async fn scenario(c: &Client, url: &str, far_id: u64) -> Result<(), String> {
    c.goto(url).await.map_err(|e| e.to_string())?;
    wait_connect_screen(c, "connect screen").await;
    join_as(c, "seeker").await;
    wait_status(c, "connected status", "startsWith('Connected to local')").await;
    wait_channel_shown(c, "general shown", "general").await;
    wait_js(c, "the newest page", &format!("{COUNT_MSGS} === 100")).await;

    // `/` from the message list opens the search, with the focus in its box.
    focus_messages(c).await;
    press(c, "/").await?;
    wait_js(
        c,
        "search panel",
        "return !!document.querySelector('.search-panel #search-input')",
    )
    .await;
    assert_eq!(focused_id(c).await, json!("search-input"));
    let label = js(
        c,
        "return document.querySelector('label[for=search-input]')?.textContent",
    )
    .await;
    assert_eq!(label, json!("Search in #general"));

    // Filtering the loaded page as the user types.
    type_into(c, "#search-input", "chat 65").await;
    let listed = wait_js(
        c,
        "a loaded match",
        "const r = [...document.querySelectorAll('.search-results .search-result-text')].map(e => e.textContent); return r.length ? r : null",
    )
    .await;
    assert_eq!(
        listed,
        json!([
            "older chat 659",
            "older chat 658",
            "older chat 657",
            "older chat 656",
            "older chat 655",
            "older chat 654",
            "older chat 653",
            "older chat 652",
            "older chat 651",
            "older chat 650"
        ])
    );
    let marks = js(
        c,
        "return [...document.querySelectorAll('.search-results mark')].map(e => e.textContent)",
    )
    .await;
    assert_eq!(marks.as_array().map(Vec::len), Some(10));
    assert!(
        marks.as_array().unwrap().iter().all(|m| m == "chat 65"),
        "{marks}"
    );

    // Nothing loaded matches the far message.
    clear(c, "#search-input").await;
    type_into(c, "#search-input", NEEDLE).await;
    let count = wait_js(
        c,
        "no loaded match",
        "const t = document.querySelector('.search-count')?.textContent; return t && t.startsWith('No matches') ? t : null",
    )
    .await;
    assert_eq!(count, json!("No matches in the 100 loaded messages."));

    // Search older pages back until it finds it, and says how far it went.
    let started = Instant::now();
    click(c, ".search-panel .search-older").await?;
    let done = wait_progress(
        c,
        "the far match",
        "startsWith('Found')",
        Duration::from_secs(60),
    )
    .await;
    let took = started.elapsed();
    assert!(
        done.starts_with("Found 1 older match; searched back to ")
            && done.ends_with(&format!(", {GENERAL} messages")),
        "{done}"
    );
    println!(
        "search older: {BACK} messages back ({} pages of 100) in {took:?}: {done:?}",
        (GENERAL - 100).div_ceil(100)
    );
    // The older pages went in above the rows in view: the list still shows
    // messages (it stays at the bottom), not the spacer standing for them.
    wait_js(
        c,
        "message rows in view after search older",
        "const s = document.querySelector('#messages').getBoundingClientRect(); return [...document.querySelectorAll('#messages .msg')].some(r => { const b = r.getBoundingClientRect(); return b.bottom > s.top && b.top < s.bottom; }) || null",
    )
    .await;
    let _ = screenshot(c, "search-found.png").await;
    // Filtering the whole of what is loaded now, as the user types.
    for term in ["zzz", "chat 65", "older chat"] {
        let (rendered, painted, listed) = filter_ms(c, term).await?;
        println!(
            "filter {GENERAL} loaded messages for {term:?}: {listed} results rendered in {rendered:.1} ms, painted in {painted:.1} ms"
        );
    }
    set_query(c, NEEDLE).await?;
    let result = js(
        c,
        "const a = document.querySelector('.search-results .search-result'); return a ? [a.getAttribute('href'), a.querySelector('mark')?.textContent, a.querySelector('.search-result-text').textContent] : null",
    )
    .await;
    assert_eq!(
        result,
        json!([format!("#general/{far_id}"), "lighthouse", FAR])
    );

    // Opening the result sets the permalink and brings the message in view.
    click(c, ".search-results .search-result").await?;
    wait_js(
        c,
        "permalink",
        &format!("return location.hash === '#general/{far_id}'"),
    )
    .await;
    wait_js(
        c,
        "the far message in view",
        &format!(
            "const row = document.getElementById('m-{far_id}') ?? document.querySelector('#messages [data-id=\"{far_id}\"]'); const box = document.getElementById('messages').getBoundingClientRect(); const r = row?.getBoundingClientRect(); return !!r && r.bottom > box.top && r.top < box.bottom"
        ),
    )
    .await;

    // Esc closes the panel; the focus goes back to the message list.
    press(c, ESC).await?;
    wait_js(
        c,
        "search closed",
        "return !document.querySelector('.search-panel')",
    )
    .await;
    assert_eq!(focused_id(c).await, json!("messages"));

    // `/` in the message box is a character; Ctrl+F opens the search from
    // there, and Esc comes back to the box.
    click(c, "#composer-input").await?;
    press(c, "/").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !panel_open(c).await,
        "`/` in the message box opened the search"
    );
    assert_eq!(
        js(c, "return document.getElementById('composer-input').value").await,
        json!("/")
    );
    clear(c, "#composer-input").await;
    press(c, &format!("{CTRL}f{RELEASE}")).await?;
    wait_js(
        c,
        "search after Ctrl+F",
        "return document.activeElement?.id === 'search-input'",
    )
    .await;
    press(c, ESC).await?;
    wait_js(
        c,
        "search closed again",
        "return !document.querySelector('.search-panel')",
    )
    .await;
    assert_eq!(focused_id(c).await, json!("composer-input"));

    // The keyboard shortcuts: `?` outside text fields, Esc closes.
    focus_messages(c).await;
    press(c, "?").await?;
    let dialog = wait_js(
        c,
        "help dialog",
        "const d = document.querySelector('.help-dialog'); if (!d) return null; const h = document.getElementById(d.getAttribute('aria-labelledby')); return [d.getAttribute('role'), d.getAttribute('aria-modal'), h?.textContent, document.activeElement?.className, d.textContent]",
    )
    .await;
    assert_eq!(dialog[0], json!("dialog"));
    assert_eq!(dialog[1], json!("true"));
    assert_eq!(dialog[2], json!("Keyboard shortcuts"));
    assert!(
        dialog[3].as_str().unwrap().contains("help-close"),
        "{dialog}"
    );
    for shortcut in ["Ctrl+F", "Alt+↑", "Esc", "Shift+Enter", "?"] {
        assert!(
            dialog[4].as_str().unwrap().contains(shortcut),
            "{shortcut}: {dialog}"
        );
    }
    let _ = screenshot(c, "search-help.png").await;
    press(c, ESC).await?;
    wait_js(
        c,
        "help closed",
        "return !document.querySelector('.help-dialog')",
    )
    .await;
    assert_eq!(focused_id(c).await, json!("messages"));

    // #random holds no match: the search goes back to the start and says so.
    js(
        c,
        "document.querySelector('.channel[data-channel=random]').click(); return null",
    )
    .await;
    wait_channel_shown(c, "random shown", "random").await;
    wait_js(c, "random's newest page", &format!("{COUNT_MSGS} === 100")).await;
    c.find(Locator::Css("button.search-toggle"))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    wait_js(
        c,
        "search from the button",
        "return document.activeElement?.id === 'search-input'",
    )
    .await;
    clear(c, "#search-input").await;
    type_into(c, "#search-input", NEEDLE).await;
    click(c, ".search-panel .search-older").await?;
    let end = wait_progress(
        c,
        "the start of random",
        "startsWith('Start of history')",
        Duration::from_secs(60),
    )
    .await;
    assert!(
        end.starts_with("Start of history reached, no more matches; searched back to ")
            && end.ends_with(&format!(", {RANDOM} messages")),
        "{end}"
    );
    assert_eq!(
        js(
            c,
            "return document.querySelectorAll('.search-result').length"
        )
        .await,
        json!(0)
    );
    // Everything is loaded: no more "Search older".
    assert_eq!(
        js(c, "return !!document.querySelector('.search-older')").await,
        json!(false)
    );
    let (rendered, painted, listed) = filter_ms(c, "talk").await?;
    println!(
        "filter {RANDOM} loaded messages for \"talk\": {listed} results rendered in {rendered:.1} ms, painted in {painted:.1} ms"
    );
    let _ = screenshot(c, "search-random.png").await;

    // Figures with the whole history the server keeps loaded: search older
    // through all of #big, then filter.
    press(c, ESC).await?;
    js(
        c,
        "document.querySelector('.channel[data-channel=big]').click(); return null",
    )
    .await;
    wait_channel_shown(c, "big shown", "big").await;
    wait_js(c, "big's newest page", &format!("{COUNT_MSGS} === 100")).await;
    press(c, &format!("{CTRL}f{RELEASE}")).await?;
    wait_js(
        c,
        "search in big",
        "return document.activeElement?.id === 'search-input'",
    )
    .await;
    type_into(c, "#search-input", "zzz").await;
    let started = Instant::now();
    click(c, ".search-panel .search-older").await?;
    let end = wait_progress(
        c,
        "the start of big",
        "startsWith('Start of history')",
        Duration::from_secs(120),
    )
    .await;
    let took = started.elapsed();
    assert!(end.ends_with(&format!(", {BIG} messages")), "{end}");
    println!(
        "search older through {BIG} messages ({} pages) in {took:?}, the message list rendering every page",
        (BIG - 100).div_ceil(100)
    );
    for term in ["zzz", "number 29", "big channel"] {
        let (rendered, painted, listed) = filter_ms(c, term).await?;
        println!(
            "filter {BIG} loaded messages for {term:?}: {listed} results rendered in {rendered:.1} ms, painted in {painted:.1} ms"
        );
    }
    Ok(())
}
