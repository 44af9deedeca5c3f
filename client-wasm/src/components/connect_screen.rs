//! The connect screen: server picker, nickname with live validation.

use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use super::{OfflineNotice, StatusBar, use_chat_context};
use crate::format::nick_problem;
use crate::hooks::Command;
use crate::state::{Link, Servers};
use crate::storage::{self, NICK_KEY, SERVER_KEY};

/// Asks for a nickname (and a server, when the bridge offers several).
#[component]
pub fn ConnectScreen() -> Html {
    let chat = use_chat_context();
    let state = &*chat.state;
    let nick = use_state(|| storage::load(NICK_KEY).unwrap_or_default());
    let server_choice = use_state(|| storage::load(SERVER_KEY));
    let touched = use_state(|| false);
    let input_ref = use_node_ref();

    {
        let input_ref = input_ref.clone();
        let taken = state.nick_taken.clone();
        use_effect_with(taken, move |_| {
            if let Some(input) = input_ref.cast::<HtmlInputElement>() {
                let _ = input.focus();
                input.select();
            }
        });
    }

    let servers: Vec<_> = match &state.servers {
        Servers::Loaded(list) => list.clone(),
        _ => Vec::new(),
    };
    // The remembered server if the bridge still has it, else its default.
    let server: Option<String> = server_choice
        .as_ref()
        .filter(|s| servers.iter().any(|x| &x.name == *s))
        .cloned()
        .or_else(|| servers.iter().find(|s| s.default).map(|s| s.name.clone()))
        .or_else(|| servers.first().map(|s| s.name.clone()));

    let problem = nick_problem(&nick);
    let taken_now = state.nick_taken.as_deref() == Some(nick.as_str());
    let busy = state.joining && state.pending_nick.is_some();
    let can_submit = problem.is_none() && !taken_now && !busy;

    let oninput = {
        let nick = nick.clone();
        let touched = touched.clone();
        Callback::from(move |e: InputEvent| {
            let input: HtmlInputElement = e.target_unchecked_into();
            nick.set(input.value());
            touched.set(true);
        })
    };
    let onchange_server = {
        let server_choice = server_choice.clone();
        Callback::from(move |e: Event| {
            let select: HtmlSelectElement = e.target_unchecked_into();
            server_choice.set(Some(select.value()));
        })
    };
    let onsubmit = {
        let cmd = chat.cmd.clone();
        let nick = nick.clone();
        let server = server.clone();
        let touched = touched.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            touched.set(true);
            if can_submit {
                cmd.emit(Command::Join {
                    server: server.clone(),
                    nick: (*nick).clone(),
                });
            }
        })
    };

    let help = match (&problem, taken_now) {
        (Some(p), _) if *touched || !nick.is_empty() => html! {
            <p id="nick-help" class="field-msg error">{ p.clone() }</p>
        },
        (_, true) => html! {
            <p id="nick-help" class="field-msg error">{ "That nickname is taken. Choose another one." }</p>
        },
        _ => html! {
            <p id="nick-help" class="field-msg">{ format!("1 to 32 bytes · {} used", nick.len()) }</p>
        },
    };
    let show_status = !matches!(state.link, Link::Idle)
        && (state.joining || state.signed_in || matches!(state.link, Link::Disconnected { .. }));

    html! {
        <main class="connect">
            <form class="connect-card" onsubmit={onsubmit} novalidate=true aria-labelledby="connect-title">
                <div class="connect-brand">
                    <svg class="logo" viewBox="0 0 64 64" aria-hidden="true"><use href="#logo" /></svg>
                    <div>
                        <h1 id="connect-title">{ "dumdum" }</h1>
                        <p class="tagline">{ "Chat with everyone on the server, from your browser." }</p>
                    </div>
                </div>
                if let Some(taken) = &state.nick_taken {
                    <p class="banner warn" role="alert" id="nick-taken">
                        { if state.nick_elsewhere {
                            format!("«{taken}» is in use — perhaps in another tab. Choose another nickname.")
                        } else {
                            format!("The nickname “{taken}” is already in use. Pick another one; you stay connected.")
                        } }
                    </p>
                }
                if servers.len() > 1 && !state.signed_in {
                    <div class="field">
                        <label for="server">{ "Server" }</label>
                        <select id="server" onchange={onchange_server}>
                            { for servers.iter().map(|s| html! {
                                <option value={s.name.clone()} selected={server.as_deref() == Some(s.name.as_str())}>
                                    { if s.tls { format!("{} (TLS)", s.name) } else { s.name.clone() } }
                                </option>
                            }) }
                        </select>
                    </div>
                }
                <OfflineNotice unreachable={matches!(state.servers, Servers::Unreachable(_))} />
                if let Servers::Failed(e) = &state.servers {
                    <p class="banner info">{ format!("Could not load the server list ({e}); the bridge's default server is used.") }</p>
                }
                <div class="field">
                    <label for="nick">{ "Nickname" }</label>
                    <input
                        id="nick"
                        ref={input_ref}
                        type="text"
                        value={(*nick).clone()}
                        oninput={oninput}
                        autocomplete="nickname"
                        autocapitalize="off"
                        spellcheck="false"
                        enterkeyhint="go"
                        aria-describedby="nick-help"
                        aria-invalid={if problem.is_some() && *touched || taken_now { "true" } else { "false" }}
                    />
                    <div aria-live="polite">{ help }</div>
                </div>
                <button id="join" class="primary" type="submit" disabled={!can_submit}>
                    { if busy { "Joining…" } else if state.nick_taken.is_some() { "Try this nickname" } else { "Join chat" } }
                </button>
                if show_status {
                    <StatusBar detailed=true />
                }
            </form>
        </main>
    }
}
