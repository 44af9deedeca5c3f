//! The settings panel: desktop notifications (the browser is asked only
//! when the user turns them on), a sound, highlight words, and how much the
//! channel in view notifies. A toggle button in the header opens it; Esc or
//! the button closes it and gives the focus back to the button.

use gloo_events::EventListener;
use wasm_bindgen::JsCast;
use web_sys::{HtmlInputElement, HtmlSelectElement, KeyboardEvent};
use yew::prelude::*;

use super::{icon, use_chat_context};
use crate::alerts::{self, Permission};
use crate::notify::{Level, parse_words};
use crate::state::Action;

/// The toggle and the panel.
#[component]
pub fn SettingsPanel() -> Html {
    let chat = use_chat_context();
    let open = use_state(|| false);
    let prefs = use_state(alerts::prefs);
    let permission = use_state(alerts::permission);
    let asking = use_state(|| false);
    // Bumped when a level changes (they live in `alerts`).
    let levels_changed = use_state(|| 0u32);
    let toggle_ref = use_node_ref();
    let panel_ref = use_node_ref();

    // The stored highlight words count as mentions from the start.
    {
        let state = chat.state.clone();
        let words = prefs.words.clone();
        use_effect_with(words, move |words| {
            if state.highlights != *words {
                state.dispatch(Action::Highlights(words.clone()));
            }
        });
    }

    // Esc closes the panel and gives the focus back to its button.
    {
        let open_h = open.clone();
        let toggle_ref = toggle_ref.clone();
        use_effect_with(*open, move |is_open| {
            let listener = (*is_open).then(web_sys::window).flatten().map(|w| {
                EventListener::new(&w, "keydown", move |e| {
                    let Some(e) = e.dyn_ref::<KeyboardEvent>() else {
                        return;
                    };
                    if e.key() == "Escape" {
                        open_h.set(false);
                        if let Some(b) = toggle_ref.cast::<web_sys::HtmlElement>() {
                            let _ = b.focus();
                        }
                    }
                })
            });
            move || drop(listener)
        });
    }
    // Opening moves the focus into the panel.
    {
        let panel_ref = panel_ref.clone();
        use_effect_with(*open, move |is_open| {
            if *is_open
                && let Some(p) = panel_ref.cast::<web_sys::HtmlElement>()
                && let Ok(Some(first)) = p.query_selector("input, select")
                && let Some(first) = first.dyn_ref::<web_sys::HtmlElement>()
            {
                let _ = first.focus();
            }
        });
    }

    let on_toggle = {
        let open = open.clone();
        let permission = permission.clone();
        Callback::from(move |_: MouseEvent| {
            permission.set(alerts::permission());
            open.set(!*open);
        })
    };

    let save = {
        let prefs = prefs.clone();
        move |next: crate::notify::Prefs| {
            alerts::set_prefs(next.clone());
            prefs.set(next);
        }
    };

    let on_enabled = {
        let prefs = prefs.clone();
        let permission = permission.clone();
        let asking = asking.clone();
        let save = save.clone();
        Callback::from(move |e: Event| {
            let Some(input) = e.target_dyn_into::<HtmlInputElement>() else {
                return;
            };
            let want = input.checked();
            let mut next = (*prefs).clone();
            if !want {
                next.enabled = false;
                save(next);
                return;
            }
            match alerts::permission() {
                Permission::Granted => {
                    next.enabled = true;
                    save(next);
                }
                Permission::Ask => {
                    // Only now, because the user asked for notifications.
                    input.set_checked(false);
                    asking.set(true);
                    let permission = permission.clone();
                    let asking = asking.clone();
                    let save = save.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        let answer = alerts::request_permission().await;
                        next.enabled = answer == Permission::Granted;
                        save(next);
                        permission.set(answer);
                        asking.set(false);
                    });
                }
                other => {
                    input.set_checked(false);
                    permission.set(other);
                }
            }
        })
    };

    let on_sound = {
        let prefs = prefs.clone();
        let save = save.clone();
        Callback::from(move |e: Event| {
            if let Some(input) = e.target_dyn_into::<HtmlInputElement>() {
                let mut next = (*prefs).clone();
                next.sound = input.checked();
                if next.sound {
                    // A sample, which also lets the browser play it later.
                    alerts::tone();
                }
                save(next);
            }
        })
    };

    let on_words = {
        let prefs = prefs.clone();
        let save = save.clone();
        Callback::from(move |e: Event| {
            if let Some(input) = e.target_dyn_into::<HtmlInputElement>() {
                let mut next = (*prefs).clone();
                next.words = parse_words(&input.value());
                input.set_value(&next.words.join(", "));
                save(next);
            }
        })
    };

    let active = chat.state.active.clone();
    let on_level = {
        let active = active.clone();
        let levels_changed = levels_changed.clone();
        Callback::from(move |e: Event| {
            if let (Some(select), Some(channel)) =
                (e.target_dyn_into::<HtmlSelectElement>(), active.as_ref())
                && let Some(level) = Level::parse(&select.value())
            {
                alerts::set_level(channel, level);
                levels_changed.set((*levels_changed).wrapping_add(1));
            }
        })
    };

    let permission_note = match *permission {
        Permission::Denied => Some(
            "Notifications are blocked by the browser for this site: allow them in the site settings to turn them on.",
        ),
        Permission::Unsupported => Some("This browser cannot show notifications for this page."),
        _ => None,
    };
    let level = active.as_deref().map(alerts::level);

    html! {
        <div class="settings">
            <button
                type="button"
                class="settings-toggle"
                aria-label="Settings"
                aria-expanded={(*open).to_string()}
                aria-controls={open.then_some("settings-panel")}
                ref={toggle_ref}
                onclick={on_toggle}
            >
                { icon("#i-settings", None) }
            </button>
            if *open {
                <section id="settings-panel" class="settings-panel" aria-labelledby="settings-title" ref={panel_ref}>
                    <h2 id="settings-title" class="settings-title">{ "Notifications" }</h2>
                    <div class="setting">
                        <input type="checkbox" id="notify-enabled" checked={prefs.enabled} disabled={*asking} onchange={on_enabled} />
                        <label for="notify-enabled">{ "Desktop notifications" }</label>
                    </div>
                    if let Some(note) = permission_note {
                        <p class="settings-note" id="notify-blocked" role="status">{ note }</p>
                    }
                    <div class="setting">
                        <input type="checkbox" id="notify-sound" checked={prefs.sound} onchange={on_sound} />
                        <label for="notify-sound">{ "Play a sound" }</label>
                    </div>
                    <div class="setting setting-wide">
                        <label for="notify-words">{ "Highlight words" }</label>
                        <input
                            type="text"
                            id="notify-words"
                            value={prefs.words.join(", ")}
                            placeholder="deploy, on call"
                            aria-describedby="notify-words-help"
                            autocomplete="off"
                            onchange={on_words}
                        />
                        <p class="settings-help" id="notify-words-help">{ "Separated by commas. Your nick always counts as a mention." }</p>
                    </div>
                    if let (Some(channel), Some(level)) = (active, level) {
                        <div class="setting setting-wide">
                            <label for="notify-level">{ format!("Notify for #{channel}") }</label>
                            // One select per channel: a reused one keeps the
                            // option the user picked for the last channel
                            // (Firefox ignores `selected` on it).
                            <select key={channel.to_string()} id="notify-level" onchange={on_level}>
                                { for Level::ALL.into_iter().map(|l| html! {
                                    <option value={l.as_str()} selected={l == level}>{ l.label() }</option>
                                }) }
                            </select>
                        </div>
                    }
                </section>
            }
        </div>
    }
}
