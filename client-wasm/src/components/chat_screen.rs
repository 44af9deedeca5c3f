//! The chat screen: channel sidebar (collapsible on phones), header with
//! the status line, messages and composer. Alt+Up/Down switches channels.

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::JsCast;
use web_sys::KeyboardEvent;
use yew::prelude::*;

use super::{
    ChannelList, Composer, MessageList, SettingsPanel, StatusBar, hue_style, use_chat_context,
};
use crate::hooks::Command;

/// The chat.
#[component]
pub fn ChatScreen() -> Html {
    let chat = use_chat_context();
    let state = &*chat.state;
    let sidebar_open = use_state(|| false);

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
    let sign_out = {
        let cmd = chat.cmd.clone();
        Callback::from(move |_: MouseEvent| cmd.emit(Command::SignOut))
    };

    let nick = state.nick.clone().unwrap_or_default();
    let initial = nick
        .chars()
        .next()
        .map(|c| c.to_uppercase().to_string())
        .unwrap_or_default();
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
                        <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3 6h18M3 12h18M3 18h18" stroke="currentColor" stroke-width="2" stroke-linecap="round"/></svg>
                    </button>
                    <h1 class="channel-title">
                        if let Some(c) = &active {
                            <span class="hash" aria-hidden="true">{ "#" }</span>{ c.name.clone() }
                        }
                    </h1>
                    <StatusBar />
                    <SettingsPanel />
                </header>
                if let Some(c) = active {
                    <ContextProvider<std::rc::Rc<crate::notify::Matcher>> context={matcher}>
                        <MessageList channel={c.clone()} me={state.nick.clone()} />
                    </ContextProvider<std::rc::Rc<crate::notify::Matcher>>>
                    <Composer channel={c.name.clone()} />
                } else {
                    <div class="messages-wrap"><p class="empty">{ "Loading channels…" }</p></div>
                }
            </main>
        </div>
    }
}
