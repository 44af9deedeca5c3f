//! The browser side of notifications: the stored settings (cached, one
//! copy for the page), the Notification API, a short WebAudio tone, the
//! favicon with its dot. The rules are in [`crate::notify`].
//!
//! The chat hook calls [`on_live_message`] for each new broadcast message
//! (never for history pages or a resume's replay); the settings panel reads
//! and writes [`prefs`] and the channels' [`level`]s.

use std::cell::RefCell;

use dumdum_protocol::ChatMessage;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::JsFuture;

use crate::notify::{Incoming, Level, Levels, Prefs, should_notify};
use crate::storage::{self, NOTIFY_KEY, levels_key};

/// The favicon without and with the dot (both in `www/`).
pub const ICON: &str = "./icon.svg";
/// The favicon with the dot: unseen mentions.
pub const ICON_ALERT: &str = "./icon-alert.svg";

#[derive(Default)]
struct Cache {
    prefs: Option<Prefs>,
    /// The levels' storage key (server and nick) and the levels under it.
    levels: Option<(String, Levels)>,
    /// Whose levels apply: (server, nick).
    who: Option<(Option<String>, String)>,
    audio: Option<web_sys::AudioContext>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The page-wide settings.
pub fn prefs() -> Prefs {
    CACHE.with_borrow_mut(|c| {
        c.prefs
            .get_or_insert_with(|| Prefs::from_json(storage::load(NOTIFY_KEY).as_deref()))
            .clone()
    })
}

/// Stores `p` (and keeps it for the page).
pub fn set_prefs(p: Prefs) {
    storage::save(NOTIFY_KEY, &p.to_json());
    CACHE.with_borrow_mut(|c| c.prefs = Some(p));
}

/// Who is signed in: the channels' levels are kept per server and nick.
pub fn signed_in(server: Option<&str>, nick: &str) {
    CACHE.with_borrow_mut(|c| c.who = Some((server.map(str::to_owned), nick.to_owned())));
}

fn with_levels<T>(f: impl FnOnce(&mut Levels, &str) -> T) -> Option<T> {
    CACHE.with_borrow_mut(|c| {
        let (server, nick) = c.who.clone()?;
        let key = levels_key(server.as_deref(), &nick);
        if c.levels.as_ref().is_none_or(|(k, _)| *k != key) {
            let levels = Levels::from_json(storage::load(&key).as_deref());
            c.levels = Some((key.clone(), levels));
        }
        let (_, levels) = c.levels.as_mut()?;
        Some(f(levels, &key))
    })
}

/// The level of `channel` for whoever is signed in.
pub fn level(channel: &str) -> Level {
    with_levels(|l, _| l.get(channel)).unwrap_or_default()
}

/// Sets and stores the level of `channel`.
pub fn set_level(channel: &str, level: Level) {
    with_levels(|l, key| {
        l.set(channel, level);
        storage::save(key, &l.to_json());
    });
}

/// What the browser allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Notifications may be shown.
    Granted,
    /// The user (or the browser's policy) refused.
    Denied,
    /// Not asked yet.
    Ask,
    /// This browser has no Notification API (or not in this context).
    Unsupported,
}

fn supported() -> bool {
    web_sys::window().is_some_and(|w| {
        js_sys::Reflect::has(&w, &"Notification".into()).unwrap_or(false) && w.is_secure_context()
    })
}

/// The current permission.
pub fn permission() -> Permission {
    if !supported() {
        return Permission::Unsupported;
    }
    match web_sys::Notification::permission() {
        web_sys::NotificationPermission::Granted => Permission::Granted,
        web_sys::NotificationPermission::Denied => Permission::Denied,
        _ => Permission::Ask,
    }
}

/// Asks the browser (only call this when the user turns notifications on).
pub async fn request_permission() -> Permission {
    if !supported() {
        return Permission::Unsupported;
    }
    let Ok(promise) = web_sys::Notification::request_permission() else {
        return permission();
    };
    let answer = JsFuture::from(promise)
        .await
        .ok()
        .and_then(|v| v.as_string());
    match answer.as_deref() {
        Some("granted") => Permission::Granted,
        Some("denied") => Permission::Denied,
        _ => permission(),
    }
}

/// The tab is visible and has the focus.
pub fn tab_focused() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| {
            d.visibility_state() == web_sys::VisibilityState::Visible
                && d.has_focus().unwrap_or(false)
        })
}

/// The longest notification body, in characters.
const BODY_CHARS: usize = 180;

/// A new broadcast message (not ours, not history, not a replay, checked
/// by the caller with `own` and `live`): notifies and sounds as the
/// settings and the channel's level say. `open` is called with the channel
/// when the user clicks the notification (the tab is focused first).
pub fn on_live_message(
    m: &ChatMessage,
    own: bool,
    live: bool,
    in_view: bool,
    open: impl FnOnce(String) + 'static,
) {
    let p = prefs();
    if !p.enabled && !p.sound {
        return;
    }
    let matcher = crate::notify::Matcher {
        nick: CACHE.with_borrow(|c| c.who.as_ref().map(|(_, n)| n.clone())),
        words: p.words.clone(),
    };
    let incoming = Incoming {
        level: level(&m.channel),
        mention: matcher.mentions(&m.nick, &m.content),
        own,
        live,
        in_view,
        focused: tab_focused(),
    };
    if !should_notify(incoming) {
        return;
    }
    if p.enabled && permission() == Permission::Granted {
        show(m, open);
    }
    if p.sound {
        tone();
    }
}

fn show(m: &ChatMessage, open: impl FnOnce(String) + 'static) {
    let body: String = if m.content.chars().count() > BODY_CHARS {
        m.content
            .chars()
            .take(BODY_CHARS - 1)
            .chain(['…'])
            .collect()
    } else {
        m.content.clone()
    };
    let options = web_sys::NotificationOptions::new();
    options.set_body(&body);
    // One notification per channel at a time: a newer one replaces it.
    options.set_tag(&format!("dumdum-{}", m.channel));
    options.set_icon(ICON);
    let title = format!("{} in #{}", m.nick, m.channel);
    let n = match web_sys::Notification::new_with_options(&title, &options) {
        Ok(n) => n,
        Err(e) => {
            crate::log(&format!(
                "dumdum: notification not shown: {}",
                crate::js_text(&e)
            ));
            return;
        }
    };
    let channel = m.channel.clone();
    let shown = n.clone();
    let click = Closure::once_into_js(move || {
        if let Some(w) = web_sys::window() {
            let _ = w.focus();
        }
        shown.close();
        open(channel);
    });
    n.set_onclick(click.dyn_ref());
}

/// A short soft two-note chime, made with WebAudio (no file, nothing for
/// the page's CSP to allow). Silent when the browser refuses audio.
pub fn tone() {
    let ctx = CACHE.with_borrow_mut(|c| {
        if c.audio.is_none() {
            c.audio = web_sys::AudioContext::new().ok();
        }
        c.audio.clone()
    });
    let Some(ctx) = ctx else {
        return;
    };
    let _ = ctx.resume();
    let play = || -> Result<(), wasm_bindgen::JsValue> {
        let t = ctx.current_time();
        for (i, freq) in [880.0_f32, 1320.0].into_iter().enumerate() {
            let start = t + 0.12 * i as f64;
            let osc = ctx.create_oscillator()?;
            osc.set_type(web_sys::OscillatorType::Sine);
            osc.frequency().set_value(freq);
            let gain = ctx.create_gain()?;
            let g = gain.gain();
            g.set_value_at_time(0.0001, start)?;
            g.exponential_ramp_to_value_at_time(0.2, start + 0.015)?;
            g.exponential_ramp_to_value_at_time(0.0001, start + 0.25)?;
            osc.connect_with_audio_node(&gain)?;
            gain.connect_with_audio_node(&ctx.destination())?;
            osc.start_with_when(start)?;
            osc.stop_with_when(start + 0.3)?;
        }
        Ok(())
    };
    if let Err(e) = play() {
        crate::log(&format!("dumdum: no sound: {}", crate::js_text(&e)));
    }
}

/// Shows the favicon with a dot while `alert`, the plain one otherwise.
pub fn set_favicon(alert: bool) {
    let Some(link) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.query_selector(r#"link[rel="icon"]"#).ok().flatten())
    else {
        return;
    };
    // The page's own href (Trunk may have renamed it), kept the first time.
    let plain = match link.get_attribute("data-plain") {
        Some(p) => p,
        None => {
            let p = link
                .get_attribute("href")
                .unwrap_or_else(|| ICON.to_owned());
            let _ = link.set_attribute("data-plain", &p);
            p
        }
    };
    let want = if alert { ICON_ALERT } else { plain.as_str() };
    if link.get_attribute("href").as_deref() != Some(want) {
        let _ = link.set_attribute("href", want);
    }
}
