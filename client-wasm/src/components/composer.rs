//! The composer: Enter sends, Shift+Enter adds a line, a live byte counter,
//! and sending disabled with the reason while it cannot work. Drafts are
//! kept per channel and survive disconnects.

use std::collections::HashMap;

use web_sys::HtmlTextAreaElement;
use yew::prelude::*;

use super::use_chat_context;
use crate::format::{ByteCount, draft_problem};
use crate::hooks::Command;

/// Properties of [`Composer`].
#[derive(Properties, PartialEq)]
pub struct ComposerProps {
    /// The channel messages go to.
    pub channel: String,
}

/// The message input.
#[component]
pub fn Composer(props: &ComposerProps) -> Html {
    let chat = use_chat_context();
    let state = &*chat.state;
    let drafts = use_state(HashMap::<String, String>::new);
    let input_ref = use_node_ref();
    let text = drafts.get(&props.channel).cloned().unwrap_or_default();

    {
        let input_ref = input_ref.clone();
        use_effect_with(props.channel.clone(), move |_| {
            if let Some(t) = input_ref.cast::<HtmlTextAreaElement>() {
                let _ = t.focus();
            }
        });
    }

    let count = ByteCount::of(&text);
    let blocked = state.send_blocked();
    let content_problem = draft_problem(&text);
    let can_send = blocked.is_none() && content_problem.is_none();

    let send = {
        let cmd = chat.cmd.clone();
        let drafts = drafts.clone();
        let channel = props.channel.clone();
        let text = text.clone();
        move || {
            if !can_send {
                return;
            }
            cmd.emit(Command::Send {
                channel: channel.clone(),
                text: text.clone(),
            });
            let mut next = (*drafts).clone();
            next.remove(&channel);
            drafts.set(next);
        }
    };
    let oninput = {
        let drafts = drafts.clone();
        let channel = props.channel.clone();
        Callback::from(move |e: InputEvent| {
            let t: HtmlTextAreaElement = e.target_unchecked_into();
            let mut next = (*drafts).clone();
            next.insert(channel.clone(), t.value());
            drafts.set(next);
        })
    };
    let onkeydown = {
        let send = send.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" && !e.shift_key() && !e.is_composing() && !e.alt_key() {
                e.prevent_default();
                send();
            }
        })
    };
    let onsubmit = Callback::from(move |e: SubmitEvent| {
        e.prevent_default();
        send();
    });

    let hint = match (&blocked, &content_problem) {
        (Some(b), _) => b.clone(),
        (None, Some(p)) if count.over() => p.clone(),
        _ => "Enter to send · Shift+Enter for a new line".into(),
    };
    let hint_class = if blocked.is_some() || count.over() {
        "composer-hint warn"
    } else {
        "composer-hint"
    };
    let counter_class = classes!(
        "counter",
        count.near().then_some("near"),
        count.over().then_some("over")
    );

    html! {
        <form class="composer" onsubmit={onsubmit} aria-label="Send a message">
            <div class="composer-box">
                <label for="composer-input" class="visually-hidden">{ format!("Message #{}", props.channel) }</label>
                <textarea
                    id="composer-input"
                    ref={input_ref}
                    rows="1"
                    placeholder={format!("Message #{}", props.channel)}
                    value={text}
                    oninput={oninput}
                    onkeydown={onkeydown}
                    enterkeyhint="send"
                    aria-describedby="composer-hint composer-count"
                    aria-invalid={if count.over() { "true" } else { "false" }}
                />
                <button id="send" type="submit" class="send" disabled={!can_send} aria-label="Send" title={blocked.clone().or(content_problem.clone()).unwrap_or_else(|| "Send".into())}>
                    <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3.4 20.4 21 12 3.4 3.6 3.4 10.2 15 12 3.4 13.8z" fill="currentColor"/></svg>
                </button>
            </div>
            <div class="composer-foot">
                <span id="composer-hint" class={hint_class} aria-live="polite">{ hint }</span>
                <span id="composer-count" class={counter_class} aria-label={format!("{} of {} bytes used", count.used, count.limit)}>{ count.label() }</span>
            </div>
        </form>
    }
}
