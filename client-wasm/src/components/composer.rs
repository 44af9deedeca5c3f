//! The composer: Enter sends, Shift+Enter adds a line, a live byte counter,
//! and sending disabled with the reason while it cannot work. Drafts are
//! kept per channel and survive disconnects.

use dumdum_protocol::MAX_CONTENT_LEN;
use wasm_bindgen::JsCast;
use web_sys::{HtmlElement, HtmlTextAreaElement};
use yew::prelude::*;

use super::{icon, use_chat_context};
use crate::format::{ByteCount, draft_problem};
use crate::hooks::Command;
use crate::paste::{clamp_to_limit, paste_asks, split_paste};
use crate::small::NameMap;

/// A paste waiting for "Send as N messages?".
#[derive(Debug, Clone, PartialEq)]
struct PendingPaste {
    /// The draft the paste would make.
    text: String,
    /// The messages it would be sent as.
    pieces: Vec<String>,
}

/// The byte index in `s` of UTF-16 offset `units` (what a textarea's
/// selection reports), on a character boundary.
fn byte_index(s: &str, units: u32) -> usize {
    let mut seen = 0u32;
    for (i, c) in s.char_indices() {
        if seen >= units {
            return i;
        }
        seen += c.len_utf16() as u32;
    }
    s.len()
}

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
    let drafts = use_state(NameMap::<String>::new);
    let input_ref = use_node_ref();
    let text = drafts.get(&props.channel).cloned().unwrap_or_default();
    let pending = use_state(|| None::<PendingPaste>);
    let confirm_ref = use_node_ref();

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
            let mut value = t.value();
            // Typing stops at the limit (a paste over it asks instead).
            let typed = !e.input_type().starts_with("insertFromPaste")
                && !e.input_type().starts_with("insertFromDrop");
            if typed && value.len() > MAX_CONTENT_LEN {
                value = clamp_to_limit(&value, MAX_CONTENT_LEN).to_owned();
                t.set_value(&value);
            }
            let mut next = (*drafts).clone();
            next.insert(channel.clone(), value);
            drafts.set(next);
        })
    };
    // A paste of many lines, or more than a message holds, asks first.
    let onpaste = {
        let pending = pending.clone();
        let text = text.clone();
        Callback::from(move |e: Event| {
            let Some(e) = e.dyn_ref::<web_sys::ClipboardEvent>() else {
                return;
            };
            let Some(pasted) = e
                .clipboard_data()
                .and_then(|d| d.get_data("text/plain").ok())
            else {
                return;
            };
            let t: HtmlTextAreaElement = e.target_unchecked_into();
            let from = byte_index(&text, t.selection_start().ok().flatten().unwrap_or(0));
            let to = byte_index(&text, t.selection_end().ok().flatten().unwrap_or(0)).max(from);
            let whole = format!("{}{pasted}{}", &text[..from], &text[to..]);
            if paste_asks(&whole) {
                e.prevent_default();
                let pieces = split_paste(&whole, MAX_CONTENT_LEN);
                pending.set(Some(PendingPaste {
                    text: whole,
                    pieces,
                }));
            }
        })
    };
    let close_paste = {
        let pending = pending.clone();
        let input_ref = input_ref.clone();
        Callback::from(move |_: ()| {
            pending.set(None);
            if let Some(t) = input_ref.cast::<HtmlTextAreaElement>() {
                let _ = t.focus();
            }
        })
    };
    let send_pieces = {
        let cmd = chat.cmd.clone();
        let drafts = drafts.clone();
        let channel = props.channel.clone();
        let pending = pending.clone();
        let close = close_paste.clone();
        let blocked = blocked.is_some();
        Callback::from(move |_: MouseEvent| {
            let Some(p) = &*pending else {
                return;
            };
            if blocked {
                return;
            }
            for piece in &p.pieces {
                cmd.emit(Command::Send {
                    channel: channel.clone(),
                    text: piece.clone(),
                });
            }
            let mut next = (*drafts).clone();
            next.remove(&channel);
            drafts.set(next);
            close.emit(());
        })
    };
    let paste_as_one = {
        let drafts = drafts.clone();
        let channel = props.channel.clone();
        let pending = pending.clone();
        let close = close_paste.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(p) = &*pending {
                let mut next = (*drafts).clone();
                next.insert(channel.clone(), p.text.clone());
                drafts.set(next);
            }
            close.emit(());
        })
    };
    let cancel_paste = {
        let close = close_paste.clone();
        Callback::from(move |_: MouseEvent| close.emit(()))
    };
    let paste_keys = {
        let close = close_paste.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" {
                e.prevent_default();
                e.stop_propagation();
                close.emit(());
            }
        })
    };
    {
        let confirm_ref = confirm_ref.clone();
        use_effect_with(pending.is_some(), move |open| {
            if *open && let Some(b) = confirm_ref.cast::<HtmlElement>() {
                let _ = b.focus();
            }
        });
    }
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

    let at_limit = count.used == count.limit;
    let hint = match (&blocked, &content_problem) {
        (Some(b), _) => b.clone(),
        (None, Some(p)) if count.over() => p.clone(),
        (None, _) if at_limit => format!(
            "Limit reached: a message holds at most {} bytes. Enter to send.",
            count.limit
        ),
        _ => "Enter to send · Shift+Enter for a new line".into(),
    };
    let hint_class = if blocked.is_some() || count.over() || at_limit {
        "composer-hint warn"
    } else {
        "composer-hint"
    };
    let counter_class = classes!(
        "counter",
        count.near().then_some("near"),
        count.over().then_some("over"),
        at_limit.then_some("at-limit")
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
                    onpaste={onpaste}
                    enterkeyhint="send"
                    aria-describedby="composer-hint composer-count"
                    aria-invalid={if count.over() { "true" } else { "false" }}
                />
                <button id="send" type="submit" class="send" disabled={!can_send} aria-label="Send" title={blocked.clone().or(content_problem.clone()).unwrap_or_else(|| "Send".into())}>
                    { icon("#i-send", None) }
                </button>
            </div>
            <div class="composer-foot">
                <span id="composer-hint" class={hint_class} aria-live="polite">{ hint }</span>
                <span id="composer-count" class={counter_class} aria-label={if at_limit { format!("Limit reached: {} of {} bytes used", count.used, count.limit) } else { format!("{} of {} bytes used", count.used, count.limit) }}>{ if at_limit { format!("{} · limit", count.label()) } else { count.label() } }</span>
            </div>
            if let Some(p) = &*pending {
                <div class="paste-confirm" role="dialog" aria-modal="true" aria-labelledby="paste-confirm-title" aria-describedby="paste-confirm-text" onkeydown={paste_keys}>
                    <h2 id="paste-confirm-title" class="paste-confirm-title">{ format!("Send as {} messages?", p.pieces.len()) }</h2>
                    <p id="paste-confirm-text" class="paste-confirm-text">{
                        format!(
                            "The pasted text has {} lines and {} bytes; a message holds at most {} bytes. Each line goes as its own message, long lines cut under the limit.",
                            crate::paste::lines(&p.text).count(),
                            p.text.len(),
                            MAX_CONTENT_LEN
                        )
                    }</p>
                    if let Some(b) = &blocked {
                        <p class="paste-confirm-text warn">{ b.clone() }</p>
                    }
                    <div class="paste-confirm-actions">
                        <button type="button" class="paste-send primary" ref={confirm_ref} onclick={send_pieces} disabled={blocked.is_some()}>{ format!("Send {} messages", p.pieces.len()) }</button>
                        if p.text.len() <= MAX_CONTENT_LEN {
                            <button type="button" class="paste-one" onclick={paste_as_one}>{ "Paste as one message" }</button>
                        }
                        <button type="button" class="paste-cancel" onclick={cancel_paste}>{ "Cancel" }</button>
                    </div>
                </div>
            }
        </form>
    }
}
