//! The channel list with unread counts.

use yew::prelude::*;

use super::use_chat_context;
use crate::hooks::Command;

/// Properties of [`ChannelList`].
#[derive(Properties, PartialEq)]
pub struct ChannelListProps {
    /// Called after a channel was picked (the phone layout closes the list).
    #[prop_or_default]
    pub on_pick: Callback<()>,
}

/// "1 mention", "2 mentions".
fn mentions_text(n: u32) -> String {
    if n == 1 {
        "1 mention".into()
    } else {
        format!("{n} mentions")
    }
}

/// The channels of the server.
#[component]
pub fn ChannelList(props: &ChannelListProps) -> Html {
    let chat = use_chat_context();
    let state = &*chat.state;
    html! {
        <nav class="channels" aria-label="Channels">
            <h2 class="section-title" id="channels-title">{ "Channels" }</h2>
            if state.channels.is_empty() {
                <p class="muted small">{ "Loading channels…" }</p>
            }
            <ul aria-labelledby="channels-title">
                { for state.channels.iter().map(|c| {
                    let active = state.active.as_deref() == Some(c.name.as_str());
                    let onclick = {
                        let cmd = chat.cmd.clone();
                        let name = c.name.clone();
                        let on_pick = props.on_pick.clone();
                        Callback::from(move |_: MouseEvent| {
                            cmd.emit(Command::Select(name.clone()));
                            on_pick.emit(());
                        })
                    };
                    let mut label = c.name.clone();
                    if c.mentions > 0 {
                        label.push_str(&format!(", {}", mentions_text(c.mentions)));
                    }
                    if c.unread > 0 {
                        label.push_str(&format!(", {} unread", c.unread));
                    }
                    html! {
                        <li key={c.name.clone()}>
                            <button
                                type="button"
                                class={classes!("channel", active.then_some("active"), (c.unread > 0).then_some("has-unread"))}
                                data-channel={c.name.clone()}
                                aria-current={active.then_some("page")}
                                aria-label={label}
                                {onclick}
                            >
                                <span class="hash" aria-hidden="true">{ "#" }</span>
                                // The trailing space keeps the visible text "#random 1" apart, inside
                                // the label "random 1 unread" (axe: label-content-name-mismatch).
                                <span class="channel-name">{ format!("{} ", c.name) }</span>
                                if c.unread > 0 {
                                    <span class="badge" aria-hidden="true">{ if c.unread > 999 { "999+".to_string() } else { c.unread.to_string() } }</span>
                                }
                                if c.mentions > 0 {
                                    <span class="badge mention-badge" aria-hidden="true" title={mentions_text(c.mentions)}>{ format!("@{}", if c.mentions > 99 { "99+".to_string() } else { c.mentions.to_string() }) }</span>
                                }
                            </button>
                        </li>
                    }
                }) }
            </ul>
            <p class="muted small kbd-hint">{ "Alt+↑/↓ switches channels" }</p>
        </nav>
    }
}
