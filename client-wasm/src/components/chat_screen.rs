//! The chat screen: channel sidebar (collapsible on phones), header with
//! the status line, messages and composer. Alt+Up/Down switches channels;
//! Ctrl+F or `/` opens the search panel, `?` the keyboard shortcuts, Esc
//! closes them (the focus goes back where it was).

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::JsCast;
use web_sys::KeyboardEvent;
use yew::prelude::*;

use super::{
    ChannelList, Composer, HelpDialog, MessageList, SearchPanel, SettingsPanel, StatusBar,
    hue_style, icon, use_chat_context,
};
use crate::hooks::Command;

/// The chat.
#[component]
pub fn ChatScreen() -> Html {
    let chat = use_chat_context();
    let state = &*chat.state;
    let sidebar_open = use_state(|| false);
    super::use_permalinks();
    let search_open = use_state(|| false);
    let help_open = use_state(|| false);
    // Where the focus was when the search / the help opened.
    let search_return = use_mut_ref(|| None::<web_sys::Element>);
    let help_return = use_mut_ref(|| None::<web_sys::Element>);

    let open_search = {
        let search_open = search_open.clone();
        let search_return = search_return.clone();
        Callback::from(move |()| {
            if *search_open {
                focus_search_input();
                return;
            }
            *search_return.borrow_mut() = focused();
            search_open.set(true);
        })
    };
    let close_search = {
        let search_open = search_open.clone();
        let search_return = search_return.clone();
        Callback::from(move |()| {
            search_open.set(false);
            refocus(search_return.borrow_mut().take());
        })
    };
    let open_help = {
        let help_open = help_open.clone();
        let help_return = help_return.clone();
        Callback::from(move |()| {
            if !*help_open {
                *help_return.borrow_mut() = focused();
                help_open.set(true);
            }
        })
    };
    let close_help = {
        let help_open = help_open.clone();
        let help_return = help_return.clone();
        Callback::from(move |()| {
            help_open.set(false);
            refocus(help_return.borrow_mut().take());
        })
    };

    // Ctrl+F or `/`: search; `?`: the shortcuts; Esc closes them.
    {
        let (open_search, close_search) = (open_search.clone(), close_search.clone());
        let (open_help, close_help) = (open_help.clone(), close_help.clone());
        use_effect_with((*search_open, *help_open), move |&(searching, helping)| {
            let listener = web_sys::window().map(|w| {
                EventListener::new_with_options(
                    &w,
                    "keydown",
                    EventListenerOptions::enable_prevent_default(),
                    move |e| {
                        let Some(e) = e.dyn_ref::<KeyboardEvent>() else {
                            return;
                        };
                        if e.is_composing() {
                            return;
                        }
                        let key = e.key();
                        let command = e.ctrl_key() || e.meta_key();
                        if helping {
                            if key == "Escape" {
                                e.prevent_default();
                                close_help.emit(());
                            }
                            return;
                        }
                        if command && !e.alt_key() && key.eq_ignore_ascii_case("f") {
                            e.prevent_default();
                            open_search.emit(());
                            return;
                        }
                        let free = !command && !e.alt_key() && !typing_in(e);
                        match key.as_str() {
                            "/" if free => {
                                e.prevent_default();
                                open_search.emit(());
                            }
                            "?" if free => {
                                e.prevent_default();
                                open_help.emit(());
                            }
                            "Escape" if searching => {
                                e.prevent_default();
                                close_search.emit(());
                            }
                            _ => {}
                        }
                    },
                )
            });
            move || drop(listener)
        });
    }

    // Alt+Up / Alt+Down: previous / next channel, from anywhere on the page.
    {
        let cmd = chat.cmd.clone();
        let prev = state.neighbour(-1);
        let next = state.neighbour(1);
        use_effect_with((prev, next), move |(prev, next)| {
            let (prev, next) = (prev.clone(), next.clone());
            let listener = web_sys::window().map(|w| {
                EventListener::new_with_options(
                    &w,
                    "keydown",
                    EventListenerOptions::enable_prevent_default(),
                    move |e| {
                        let Some(e) = e.dyn_ref::<KeyboardEvent>() else {
                            return;
                        };
                        if !e.alt_key() || e.ctrl_key() || e.meta_key() {
                            return;
                        }
                        let target = match e.key().as_str() {
                            "ArrowUp" => prev.clone(),
                            "ArrowDown" => next.clone(),
                            _ => return,
                        };
                        if let Some(channel) = target {
                            e.prevent_default();
                            cmd.emit(Command::Select(channel));
                        }
                    },
                )
            });
            move || drop(listener)
        });
    }

    // Unseen mentions in the tab title, "(N)" first, and a dot on the
    // favicon; other unread messages as "•".
    {
        let unread: u32 = state.channels.iter().map(|c| c.unread).sum();
        let mentions = state.total_mentions();
        let active = state.active.clone();
        use_effect_with(
            (unread, mentions, active),
            move |(unread, mentions, active)| {
                if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
                    doc.set_title(&crate::notify::tab_title(
                        active.as_deref(),
                        *unread,
                        *mentions,
                    ));
                }
                crate::alerts::set_favicon(*mentions > 0);
            },
        );
    }
    // What the message rows mark as mentions.
    let matcher = {
        let m = state.matcher();
        use_memo(m, |m| m.clone())
    };

    let toggle = {
        let sidebar_open = sidebar_open.clone();
        Callback::from(move |_: MouseEvent| sidebar_open.set(!*sidebar_open))
    };
    let close = {
        let sidebar_open = sidebar_open.clone();
        Callback::from(move |_| sidebar_open.set(false))
    };
    let close_click = {
        let close = close.clone();
        Callback::from(move |_: MouseEvent| close.emit(()))
    };
    let toggle_search = {
        let (searching, open_search, close_search) =
            (*search_open, open_search.clone(), close_search.clone());
        Callback::from(move |_: MouseEvent| {
            if searching {
                close_search.emit(());
            } else {
                open_search.emit(());
            }
        })
    };
    let help_click = {
        let open_help = open_help.clone();
        Callback::from(move |_: MouseEvent| open_help.emit(()))
    };
    let sign_out = {
        let cmd = chat.cmd.clone();
        Callback::from(move |_: MouseEvent| cmd.emit(Command::SignOut))
    };

    let nick = state.nick.clone().unwrap_or_default();
    // Upper-cased by the style sheet (`text-transform`): Rust's Unicode
    // case tables would add kilobytes to the page.
    let initial: String = nick.chars().take(1).collect();
    let active = state.active_channel().cloned();
    let server = match &state.link {
        crate::state::Link::Connected { server } => Some(server.clone()),
        _ => None,
    };

    html! {
        <div class={classes!("chat", sidebar_open.then_some("sidebar-open"))}>
            <a class="skip-link" href="#composer-input">{ "Skip to message input" }</a>
            <aside id="sidebar" class="sidebar" aria-label="Channels and account">
                <div class="brand">
                    <svg class="logo" viewBox="0 0 64 64" aria-hidden="true"><use href="#logo" /></svg>
                    <span class="brand-name">{ "dumdum" }</span>
                    if let Some(s) = server {
                        <span class="server-name" title="Server">{ s }</span>
                    }
                </div>
                <ChannelList on_pick={close} />
                <button type="button" class="link-button help-open" onclick={help_click}>{ "Keyboard shortcuts (?)" }</button>
                <div class="me">
                    <span class="avatar" style={hue_style(&nick)} aria-hidden="true">{ initial }</span>
                    <span class="me-nick" id="me-nick" title="Your nickname">{ nick.clone() }</span>
                    <button type="button" class="link-button sign-out" onclick={sign_out}>{ "Sign out" }</button>
                </div>
            </aside>
            <div class="backdrop" onclick={close_click} aria-hidden="true"></div>
            <main class="main">
                <header class="topbar">
                    <button type="button" class="menu-toggle" aria-controls="sidebar" aria-expanded={(*sidebar_open).to_string()} aria-label="Channels" onclick={toggle}>
                        { icon("#i-menu", None) }
                    </button>
                    <h1 class="channel-title">
                        if let Some(c) = &active {
                            <span class="hash" aria-hidden="true">{ "#" }</span>{ c.name.clone() }
                        }
                    </h1>
                    <button type="button" class="search-toggle" aria-label="Search messages" title="Search (Ctrl+F or /)" aria-expanded={(*search_open).to_string()} onclick={toggle_search}>
                        { icon("#i-search", None) }
                    </button>
                    <StatusBar />
                    <SettingsPanel />
                </header>
                if *search_open && let Some(c) = &active {
                    <SearchPanel channel={c.clone()} on_close={close_search.clone()} />
                }
                if let Some(c) = active {
                    <ContextProvider<std::rc::Rc<crate::notify::Matcher>> context={matcher}>
                        <MessageList channel={c.clone()} me={state.nick.clone()} />
                    </ContextProvider<std::rc::Rc<crate::notify::Matcher>>>
                    <Composer channel={c.name.clone()} />
                } else {
                    <div class="messages-wrap"><p class="empty">{ "Loading channels…" }</p></div>
                }
            </main>
            if *help_open {
                <HelpDialog on_close={close_help.clone()} />
            }
        </div>
    }
}

/// Whether the key event goes to a text field (where `/` and `?` type).
fn typing_in(e: &KeyboardEvent) -> bool {
    let Some(el) = e
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
    else {
        return false;
    };
    let tag = el.tag_name();
    if tag.eq_ignore_ascii_case("textarea") || tag.eq_ignore_ascii_case("select") {
        return true;
    }
    if tag.eq_ignore_ascii_case("input") {
        let kind = el.get_attribute("type").unwrap_or_default();
        return !matches!(
            kind.to_ascii_lowercase().as_str(),
            "button" | "checkbox" | "radio" | "submit" | "reset" | "range" | "color" | "file"
        );
    }
    el.dyn_ref::<web_sys::HtmlElement>()
        .is_some_and(|h| h.is_content_editable())
}

/// The focused element, if any besides the page itself.
fn focused() -> Option<web_sys::Element> {
    let doc = web_sys::window()?.document()?;
    let el = doc.active_element()?;
    let body = doc.body().map(web_sys::Element::from);
    (Some(&el) != body.as_ref()).then_some(el)
}

/// Gives the focus back to `el` if it is still on the page, else to the
/// message box.
fn refocus(el: Option<web_sys::Element>) {
    let target = el.filter(|e| e.is_connected()).or_else(|| {
        web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id("composer-input"))
    });
    if let Some(h) = target.and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
        let _ = h.focus();
    }
}

/// Focuses the search box and selects its text.
fn focus_search_input() {
    if let Some(input) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("search-input"))
        .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
    {
        let _ = input.focus();
        input.select();
    }
}
