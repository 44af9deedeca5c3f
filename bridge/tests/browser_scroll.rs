//! Long scrollback in a real browser (headless Chromium over WebDriver):
//!
//! - `permalinks_unread_marker_and_paste`, against the real Python
//!   `dumdum-server` 0.5.0 with the Python reference client as the other
//!   user: a permalink opened on load (older pages fetched until the
//!   message is there) and on `hashchange` while chatting, scrolled to and
//!   highlighted; the "New since …" marker and "Jump to first unread (N)"
//!   right after a reload; a 6-line paste asking "Send as 6 messages?"
//!   then sending 6 messages, which the reference client receives.
//! - `twenty_thousand_messages_cost_what_fifty_do`, through the bridge's
//!   embedded server (the reference server keeps only 1000 per channel):
//!   the page takes 20 000 messages in one channel and 50 in another, then
//!   the time to take 1000 more in each and the frame times while
//!   scrolling are measured in the page and printed (not asserted: the
//!   machines are shared), with the rows in the DOM counted (asserted:
//!   the list renders a window, not every message).
//!
//! Run one at a time: `cargo test -p dumdum-bridge --test browser_scroll --
//! --test-threads=1 --nocapture`. Every wait is bounded; every process
//! started here is killed at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_kit;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use browser_kit::*;
use common::Bridge;
use dumdum_bridge::{Config, UpstreamConfig};
use dumdum_testkit::{DumdumServer, PyPeer, free_port};
use fantoccini::Client;
use serde_json::{Value, json};

async fn local_bridge(addr: SocketAddr, www: PathBuf) -> Bridge {
    Bridge::start(Config {
        upstreams: vec![UpstreamConfig::new("local", addr.to_string())],
        www,
        ..Config::default()
    })
    .await
}

/// The id the reference client saw for `content`.
fn id_of(py: &mut PyPeer, content: &str) -> u64 {
    blocking(|| py.expect_message(content))["id"]
        .as_u64()
        .expect("message id")
}

/// Pastes `text` into the composer. Chromium: a `paste` event carrying
/// it. Firefox gives a script-made `paste` event an empty clipboard, so
/// there the text goes through the (headless) clipboard for real: copied
/// with Ctrl+C from a scratch text area, pasted with Ctrl+V.
async fn paste(c: &Client, text: &str) {
    match current() {
        Kind::Chromium => {
            js(
                c,
                &format!(
                    "const t = document.getElementById('composer-input'); t.focus(); \
                     const dt = new DataTransfer(); dt.setData('text/plain', {}); \
                     t.dispatchEvent(new ClipboardEvent('paste', {{clipboardData: dt, bubbles: true, cancelable: true}})); return null",
                    json!(text)
                ),
            )
            .await;
        }
        Kind::Firefox => {
            js(
                c,
                &format!(
                    "const s = document.createElement('textarea'); s.id = 'clip-src'; s.value = {}; \
                     document.body.appendChild(s); s.focus(); s.select(); return null",
                    json!(text)
                ),
            )
            .await;
            type_into(c, "#clip-src", "\u{E009}c\u{E000}").await;
            js(
                c,
                "document.getElementById('clip-src').remove(); document.getElementById('composer-input').focus(); return null",
            )
            .await;
            type_into(c, "#composer-input", "\u{E009}v\u{E000}").await;
        }
    }
}

/// Whether row `id` is rendered, highlighted and within the viewport.
fn revealed_js(id: u64) -> String {
    format!(
        "const r = document.getElementById('m-{id}'); const v = document.getElementById('messages'); \
         if (!r || !v) return null; const a = r.getBoundingClientRect(), b = v.getBoundingClientRect(); \
         return r.classList.contains('highlight') && a.top >= b.top - 1 && a.bottom <= b.bottom + 1 \
           ? r.querySelector('.msg-text').textContent : null"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn permalinks_unread_marker_and_paste() {
    each_browser("permalinks_unread_marker_and_paste", |_| {
        permalinks_unread_marker_and_paste_once()
    })
    .await;
}

async fn permalinks_unread_marker_and_paste_once() {
    let www = bundle();
    let server = DumdumServer::start();
    let addr = server.addr();
    let mut py = blocking(|| PyPeer::connect(addr, "pyposter", None));
    assert!(blocking(|| py.expect_auth()));
    // 350 messages: the permalinked one (number 20) is three pages back.
    for i in 1..=350 {
        py.send("general", &format!("old {i:03}"));
    }
    let target = id_of(&mut py, "old 020");
    let later = id_of(&mut py, "old 300");
    blocking(|| py.expect_message("old 350"));
    let bridge = local_bridge(addr, www).await;
    let b = Browser::start("chromium-scroll").await;
    let result = python_scenario(&b.c, &bridge, &mut py, target, later).await;
    b.finish("scroll-last.png", result).await;
    drop(server);
}

async fn python_scenario(
    c: &Client,
    bridge: &Bridge,
    py: &mut PyPeer,
    target: u64,
    later: u64,
) -> Result<(), String> {
    // Opening a permalink: the page signs in, shows #general, fetches
    // back until message 20 is loaded, scrolls to it and highlights it.
    c.goto(&bridge.http_url(&format!("/#general/{target}")))
        .await
        .map_err(|e| e.to_string())?;
    wait_connect_screen(c, "connect screen").await;
    join_as(c, "reader").await;
    let t = Instant::now();
    wait_channel_shown(c, "general shown", "general").await;
    let shown = wait_js(c, "permalinked message revealed", &revealed_js(target)).await;
    assert_eq!(shown, json!("old 020"));
    println!(
        "permalink three pages back: revealed {:.0} ms after signing in",
        t.elapsed().as_secs_f64() * 1e3
    );
    // Every row offers its permalink, with an accessible name.
    let link = js(
        c,
        &format!("const a = document.querySelector('#m-{target} a.msg-time'); return a ? [a.getAttribute('href'), a.getAttribute('aria-label')] : null"),
    )
    .await;
    assert_eq!(link[0], json!(format!("#general/{target}")));
    assert!(
        link[1].as_str().is_some_and(|l| l.contains("pyposter")),
        "{link}"
    );
    // Only <li> children in the list.
    assert_eq!(
        js(
            c,
            "return [...document.querySelectorAll('#messages ol > *')].filter(e => e.tagName !== 'LI').length"
        )
        .await,
        json!(0)
    );

    // A hashchange while chatting (what a search result does).
    js(
        c,
        &format!("location.hash = '#general/{later}'; return null"),
    )
    .await;
    let shown = wait_js(c, "hashchange reveals", &revealed_js(later)).await;
    assert_eq!(shown, json!("old 300"));
    assert_eq!(
        js(
            c,
            "return document.querySelectorAll('#messages .msg.highlight').length"
        )
        .await,
        json!(1),
        "one message highlighted"
    );

    // A message the server does not have: pages back to the start, then
    // says so.
    js(c, "location.hash = '#general/1'; return null").await;
    let note = wait_js(
        c,
        "not-found note",
        "const n = document.querySelector('.reveal-note'); return n && n.textContent.includes('not found') ? n.textContent : null",
    )
    .await;
    println!("unknown permalink: {note}");
    assert_eq!(
        js(c, "return !!document.querySelector('.history-start')").await,
        json!(true),
        "paged back to the beginning first"
    );

    // Typing stops at the limit, and the counter says so.
    let long = "x".repeat(1_030);
    type_into(c, "#composer-input", &long).await;
    let typed = wait_js(
        c,
        "typing stopped at the limit",
        "const t = document.getElementById('composer-input'); const k = document.getElementById('composer-count'); \
         return t.value.length === 1024 ? [t.value.length, k.textContent, k.getAttribute('aria-label')] : null",
    )
    .await;
    assert_eq!(typed[1], json!("1024 / 1024 · limit"));
    assert!(
        typed[2]
            .as_str()
            .is_some_and(|l| l.starts_with("Limit reached")),
        "{typed}"
    );
    clear(c, "#composer-input").await;

    // Read everything in #general (bottom reached), then go to #random.
    js(
        c,
        "const m = document.getElementById('messages'); m.scrollTop = m.scrollHeight; return null",
    )
    .await;
    wait_js(
        c,
        "general read to its newest",
        "return Object.keys(localStorage).some(k => k.startsWith('dumdum.read.') && k.endsWith('.reader.general'))",
    )
    .await;
    let read_id = wait_js(
        c,
        "last read is the newest",
        "const k = Object.keys(localStorage).find(k => k.endsWith('.reader.general')); \
         const v = localStorage.getItem(k); \
         const rows = document.querySelectorAll('#messages .msg'); \
         return rows.length && v === rows[rows.length - 1].dataset.id ? v : null",
    )
    .await;
    println!("last read in #general: {read_id}");
    // Leave the permalink URL (a reload would open it again).
    js(
        c,
        "history.replaceState(null, '', location.pathname); return null",
    )
    .await;
    // Once its button is there (after a reload the list fills in).
    wait_js(
        c,
        "the random button clicked",
        "const b = document.querySelector('.channel[data-channel=random]'); if (!b) return null; b.click(); return true",
    )
    .await;
    wait_channel_shown(c, "random shown", "random").await;
    // 40 messages arrive in #general meanwhile.
    for i in 1..=40 {
        py.send("general", &format!("unread {i:02}"));
    }
    let first_unread = id_of(py, "unread 01");
    blocking(|| py.expect_message("unread 40"));
    wait_js(
        c,
        "unread badge",
        "return document.querySelector('.channel[data-channel=general]')?.textContent.includes('40')",
    )
    .await;

    // Reload: the marker and the jump button are right at once.
    tokio::time::timeout(WAIT, c.refresh())
        .await
        .map_err(|_| "refresh took too long")?
        .map_err(|e| e.to_string())?;
    wait_channel_shown(c, "random after the reload", "random").await;
    // Once its button is there (after a reload the list fills in).
    wait_js(
        c,
        "the general button clicked",
        "const b = document.querySelector('.channel[data-channel=general]'); if (!b) return null; b.click(); return true",
    )
    .await;
    wait_channel_shown(c, "general after the reload", "general").await;
    let marker = wait_js(
        c,
        "new-since marker",
        "const m = document.getElementById('new-marker'); \
         return m ? [m.textContent, m.nextElementSibling?.querySelector('.msg-text')?.textContent] : null",
    )
    .await;
    assert!(
        marker[0]
            .as_str()
            .is_some_and(|t| t.starts_with("New since ")),
        "{marker}"
    );
    assert_eq!(
        marker[1],
        json!("unread 01"),
        "the marker is before the first unread"
    );
    let button = wait_js(
        c,
        "jump to first unread",
        "return document.querySelector('.jump-unread')?.textContent",
    )
    .await;
    assert_eq!(button, json!("Jump to first unread (40)"));
    click(c, ".jump-unread").await?;
    let shown = wait_js(c, "first unread revealed", &revealed_js(first_unread)).await;
    assert_eq!(shown, json!("unread 01"));
    wait_js(
        c,
        "jump button gone once the first unread is in view",
        "return !document.querySelector('.jump-unread')",
    )
    .await;

    // A 6-line paste asks first, then sends 6 messages.
    let lines: Vec<String> = (1..=6).map(|i| format!("pasted line {i}")).collect();
    let text = lines.join("\n");
    paste(c, &text).await;
    let dialog = wait_js(
        c,
        "paste confirmation",
        "const d = document.querySelector('.paste-confirm'); \
         return d ? [d.getAttribute('role'), d.getAttribute('aria-modal'), d.querySelector('h2')?.textContent, document.activeElement?.className] : null",
    )
    .await;
    assert_eq!(dialog[0], json!("dialog"));
    assert_eq!(dialog[1], json!("true"));
    assert_eq!(dialog[2], json!("Send as 6 messages?"));
    assert!(
        dialog[3].as_str().is_some_and(|c| c.contains("paste-send")),
        "focus on the send button: {dialog}"
    );
    assert_eq!(
        js(c, "return document.getElementById('composer-input').value").await,
        json!(""),
        "nothing pasted into the box yet"
    );
    // Esc cancels and gives the focus back.
    type_into(c, ".paste-send", "\u{E00C}").await;
    wait_js(
        c,
        "dialog closed by Esc",
        "return !document.querySelector('.paste-confirm') && document.activeElement?.id === 'composer-input'",
    )
    .await;
    paste(c, &text).await;
    wait_js(
        c,
        "paste confirmation again",
        "return !!document.querySelector('.paste-send')",
    )
    .await;
    click(c, ".paste-send").await?;
    let mut ids = Vec::new();
    for l in &lines {
        ids.push(id_of(py, l));
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "sent in order: {ids:?}"
    );
    for l in &lines {
        wait_shown_once(c, l, l).await;
    }
    println!("6-line paste: 6 messages seen by the reference client, in order");
    // Our own messages are not unread.
    let jump = js(
        c,
        "return document.querySelector('.jump-unread')?.textContent ?? null",
    )
    .await;
    assert!(
        jump.is_null() || jump == json!("Jump to first unread (40)"),
        "the unread count after our own messages: {jump}"
    );
    Ok(())
}

/// Frame deltas and burst times, gathered in the page.
const INSTRUMENT: &str = r#"
window.__m = { t0: null, t1: null, frames: [] };
const seen = () => {
  const rows = document.querySelectorAll('#messages .msg-text');
  const last = rows.length ? rows[rows.length - 1].textContent : '';
  if (last.startsWith('burst ')) {
    if (window.__m.t0 === null) window.__m.t0 = performance.now();
    if (last === 'burst 999' && window.__m.t1 === null) window.__m.t1 = performance.now();
  }
};
window.__mo && window.__mo.disconnect();
window.__mo = new MutationObserver(seen);
window.__mo.observe(document.getElementById('messages'), { childList: true, subtree: true });
let prev = performance.now();
const frame = (t) => { window.__m.frames.push(t - prev); prev = t; if (window.__m.t1 === null) requestAnimationFrame(frame); };
requestAnimationFrame(frame);
return null;
"#;

/// Scrolls the list up 300 px a frame for 120 frames (down again at the
/// top), returning the frame deltas.
const SCROLL: &str = r#"
const done = arguments[arguments.length - 1];
const m = document.getElementById('messages');
m.scrollTop = m.scrollHeight;
const deltas = []; let prev = null; let n = 0; let dir = -1;
const step = (t) => {
  if (prev !== null) deltas.push(t - prev);
  prev = t;
  if (m.scrollTop <= 0) dir = 1; else if (m.scrollTop + m.clientHeight >= m.scrollHeight) dir = -1;
  m.scrollTop += dir * 300;
  if (++n < 120) requestAnimationFrame(step); else done(deltas);
};
requestAnimationFrame(step);
"#;

/// Scrolls the list up 300 px a frame for 150 frames from the bottom,
/// returning, for each frame, the id of the first row in view, the scroll
/// position and the scroll height (for the failure message).
const STEADY: &str = r#"
const done = arguments[arguments.length - 1];
const m = document.getElementById('messages');
m.scrollTop = m.scrollHeight;
const first = () => {
  const top = m.getBoundingClientRect().top;
  for (const r of m.querySelectorAll('ol > li.msg')) {
    if (r.getBoundingClientRect().bottom > top) return r.dataset.id;
  }
  return null;
};
const ids = []; let n = 0;
const step = () => {
  ids.push([first(), m.scrollTop, m.scrollHeight]);
  m.scrollTop -= 300;
  if (++n < 150) requestAnimationFrame(step); else done(ids);
};
requestAnimationFrame(() => requestAnimationFrame(step));
"#;

fn stats(v: &Value) -> (f64, f64, f64) {
    let mut d: Vec<f64> = v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    d.sort_by(f64::total_cmp);
    if d.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let p95 = d[(d.len() * 95 / 100).min(d.len() - 1)];
    (mean, p95, d[d.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_messages_cost_what_fifty_do() {
    each_browser("twenty_thousand_messages_cost_what_fifty_do", |_| {
        twenty_thousand_messages_cost_what_fifty_do_once()
    })
    .await;
}

async fn twenty_thousand_messages_cost_what_fifty_do_once() {
    let www = bundle();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let bridge = Bridge::start(Config {
        www,
        embedded_listen: Some(listen),
        embedded_max_messages: 25_000,
        ..Config::default()
    })
    .await;
    let b = Browser::start("chromium-scroll-20k").await;
    let result = measure_scenario(&b.c, &bridge, listen).await;
    b.finish("scroll-20k-last.png", result).await;
}

async fn burst(
    c: &Client,
    poster: &mut PyPeer,
    channel: &str,
) -> Result<(f64, (f64, f64, f64), u64), String> {
    js(c, INSTRUMENT).await;
    blocking(|| {
        for i in 0..1000 {
            poster.send(channel, &format!("burst {i}"));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let v = loop {
        let v = js(c, "return window.__m.t1 !== null ? window.__m : null").await;
        if !v.is_null() {
            break v;
        }
        if Instant::now() > deadline {
            let diag = js(
                c,
                "const m = document.getElementById('messages'); const rows = m.querySelectorAll('li.msg .msg-text'); \
                 return {t0: window.__m.t0, count: m.querySelector('ol').dataset.count, first: rows[0]?.textContent, last: rows[rows.length - 1]?.textContent, \
                 top: m.scrollTop, height: m.scrollHeight, client: m.clientHeight, jump: document.querySelector('.jump-new')?.textContent ?? null}",
            )
            .await;
            return Err(format!("1000 messages not taken within 60 s: {diag}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ms = v["t1"].as_f64().unwrap_or(0.0) - v["t0"].as_f64().unwrap_or(0.0);
    let frames = v["frames"].as_array().map_or(0, |a| a.len() as u64);
    Ok((ms, stats(&v["frames"]), frames))
}

async fn measure_scenario(c: &Client, bridge: &Bridge, listen: SocketAddr) -> Result<(), String> {
    c.goto(&bridge.http_url("/"))
        .await
        .map_err(|e| e.to_string())?;
    wait_connect_screen(c, "connect screen").await;
    join_as(c, "measurer").await;
    wait_channel_shown(c, "general shown", "general").await;
    // The reference client, on the embedded server's TCP listener.
    let mut poster = blocking(|| PyPeer::connect(listen, "filler", None));
    assert!(blocking(|| poster.expect_auth()));

    // 50 in #random, 20 000 in #general, while the page shows #general:
    // in steps of 500, each taken by the page before the next (the bridge
    // cuts off a browser 256 KiB behind).
    for i in 0..50 {
        poster.send("random", &format!("small {i}"));
    }
    let t = Instant::now();
    for step in 0..40 {
        blocking(|| {
            for i in step * 500..(step + 1) * 500 {
                poster.send("general", &format!("fill {i:05} some ordinary chat text"));
            }
        });
        wait_js_for(
            c,
            "a step of the 20 000 messages in #general",
            &format!(
                "return Number(document.querySelector('#messages ol')?.dataset.count) >= {}",
                (step + 1) * 500
            ),
            Duration::from_secs(60),
        )
        .await;
    }
    println!(
        "page took 20 000 messages in {:.1} s (filling)",
        t.elapsed().as_secs_f64()
    );
    let rows = js(
        c,
        "return document.querySelectorAll('#messages ol > li.msg').length",
    )
    .await;
    println!("rows in the DOM with 20 000 loaded: {rows}");
    assert!(
        rows.as_u64().is_some_and(|n| n > 0 && n <= 200),
        "a window of rows, not every message: {rows}"
    );

    let (big_ms, big_frames, big_n) = burst(c, &mut poster, "general").await?;
    let big_scroll = c
        .execute_async(SCROLL, vec![])
        .await
        .map_err(|e| e.to_string())?;
    let big_scroll = stats(&big_scroll);
    // Scrolling up through the windowed list moves steadily: the first
    // row in view goes back every frame, never forward (rows moved in and
    // out of the window keep the view in place).
    let ids = c
        .execute_async(STEADY, vec![])
        .await
        .map_err(|e| e.to_string())?;
    let frames: Vec<(u128, i64, i64)> = ids
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| {
                    Some((f[0].as_str()?.parse().ok()?, f[1].as_i64()?, f[2].as_i64()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let ids: Vec<u128> = frames.iter().map(|f| f.0).collect();
    assert!(ids.len() >= 140, "first rows in view: {}", ids.len());
    let back = ids.windows(2).filter(|w| w[1] < w[0]).count();
    let forward: Vec<usize> = (1..ids.len()).filter(|&i| ids[i] > ids[i - 1]).collect();
    println!(
        "scrolling up 150 frames of 300 px: the first row in view went back {back} times, stayed {} times, went forward {} times",
        ids.len() - 1 - back - forward.len(),
        forward.len()
    );
    let around: Vec<_> = forward
        .iter()
        .flat_map(|&i| i.saturating_sub(2)..(i + 2).min(frames.len()))
        .map(|i| {
            format!(
                "frame {i}: first row {} scrollTop {} scrollHeight {}",
                frames[i].0, frames[i].1, frames[i].2
            )
        })
        .collect();
    assert!(
        forward.is_empty(),
        "the view jumped forward while scrolling up:\n{}",
        around.join("\n")
    );
    assert!(
        back * 10 >= (ids.len() - 1) * 9,
        "the view stalled: {back} of {}",
        ids.len() - 1
    );
    // The top of the list is the oldest message held.
    let oldest = wait_js(
        c,
        "the oldest message at the top",
        "const m = document.getElementById('messages'); m.scrollTop = 0; \
         const r = document.querySelector('#messages ol > li.msg .msg-text'); \
         return r && r.getBoundingClientRect().top < m.getBoundingClientRect().bottom && r.textContent.startsWith('fill ') ? r.textContent : null",
    )
    .await;
    println!("top of #general: {oldest}");
    assert_eq!(
        oldest,
        json!("fill 01000 some ordinary chat text"),
        "the oldest kept"
    );
    // An older page prepended keeps what the reader sees in place.
    const OFFSET: &str = "const r = [...document.querySelectorAll('#messages li.msg')].find(r => r.querySelector('.msg-text').textContent.startsWith('fill 01000')); \
         return r ? r.getBoundingClientRect().top - document.getElementById('messages').getBoundingClientRect().top : null";
    let before = js(c, OFFSET).await;
    click(c, "#load-older").await?;
    wait_js(
        c,
        "an older page in #general",
        "return document.querySelector('#messages ol')?.dataset.count === '20100'",
    )
    .await;
    let after = wait_js(c, "the row still there", OFFSET).await;
    println!("after an older page: the top row moved from {before} to {after} px");
    assert!(
        (before.as_f64().unwrap_or(f64::NAN) - after.as_f64().unwrap_or(0.0)).abs() <= 2.0,
        "the row in view stays put: {before} → {after}"
    );
    let count = js(
        c,
        "return document.querySelector('#messages ol')?.dataset.count",
    )
    .await;
    println!("#general holds {count} messages (20 000 kept live, plus the older page asked for)");

    // Once its button is there (after a reload the list fills in).
    wait_js(
        c,
        "the random button clicked",
        "const b = document.querySelector('.channel[data-channel=random]'); if (!b) return null; b.click(); return true",
    )
    .await;
    wait_channel_shown(c, "random shown", "random").await;
    wait_js(
        c,
        "50 in #random",
        "return document.querySelector('#messages ol')?.dataset.count === '50'",
    )
    .await;
    let (small_ms, small_frames, small_n) = burst(c, &mut poster, "random").await?;
    let small_scroll = c
        .execute_async(SCROLL, vec![])
        .await
        .map_err(|e| e.to_string())?;
    let small_scroll = stats(&small_scroll);

    println!(
        "1000 incoming with 20 000 loaded: {big_ms:.0} ms, {big_n} frames (mean {:.1} ms, p95 {:.1} ms, max {:.1} ms)",
        big_frames.0, big_frames.1, big_frames.2
    );
    println!(
        "1000 incoming with 50 loaded:     {small_ms:.0} ms, {small_n} frames (mean {:.1} ms, p95 {:.1} ms, max {:.1} ms)",
        small_frames.0, small_frames.1, small_frames.2
    );
    println!(
        "ratio 20 000 / 50: {:.2}",
        if small_ms > 0.0 {
            big_ms / small_ms
        } else {
            f64::NAN
        }
    );
    println!(
        "scroll frames, 20 000 loaded: mean {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        big_scroll.0, big_scroll.1, big_scroll.2
    );
    println!(
        "scroll frames, 50 loaded:     mean {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        small_scroll.0, small_scroll.1, small_scroll.2
    );
    Ok(())
}
