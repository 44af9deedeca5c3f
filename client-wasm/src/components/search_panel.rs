//! Search in the channel: a panel of its own above the messages. As the
//! user types, the channel's loaded messages whose text or nick contains
//! the term (case-insensitive) are listed, newest first, with the matches
//! in `<mark>`; the message list itself is not re-rendered. "Search older"
//! pages back through the server's history until a match or the start
//! ([`crate::engine::Engine::search_older`]). A result is a link to the
//! message's permalink `#<channel>/<id>`.

use wasm_bindgen::JsCast;
use web_sys::{HtmlElement, HtmlInputElement, KeyboardEvent};
use yew::prelude::*;

use super::{hue_style, icon, local_offset_min, now_ms, use_chat_context};
use crate::format::{format_full_time, format_time, iso_utc};
use crate::hooks::Command;
use crate::permalink::permalink;
use crate::search::{self, Needle, Piece, older_note, searched_back};
use crate::state::{Action, Channel, Older, SearchStatus};

/// Properties of [`SearchPanel`].
#[derive(Properties, PartialEq)]
pub struct SearchPanelProps {
    /// The channel searched (the one shown).
    pub channel: Channel,
    /// Closes the panel.
    pub on_close: Callback<()>,
}

/// `text` with the matches of `needle` in `<mark>`.
fn marked(text: &str, needle: &Needle) -> Html {
    search::highlight(text, needle)
        .into_iter()
        .map(|p| match p {
            Piece::Plain(t) => html! { { t.to_owned() } },
            Piece::Hit(t) => html! { <mark>{ t.to_owned() }</mark> },
        })
        .collect()
}

/// Focuses the first result, if any.
fn focus_first_result() {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| {
            d.query_selector(".search-results .search-result")
                .ok()
                .flatten()
        })
        .and_then(|e| e.dyn_into::<HtmlElement>().ok())
    {
        let _ = el.focus();
    }
}

/// The search panel.
#[component]
pub fn SearchPanel(props: &SearchPanelProps) -> Html {
    let chat = use_chat_context();
    let state = &*chat.state;
    let query = use_state(String::new);
    let input = use_node_ref();

    // The box has the focus when the panel opens.
    {
        let input = input.clone();
        use_effect_with((), move |_| {
            if let Some(el) = input.cast::<HtmlInputElement>() {
                let _ = el.focus();
            }
        });
    }
    // Closing the panel, or showing another channel, stops a search older.
    {
        let cmd = chat.cmd.clone();
        use_effect_with(props.channel.name.clone(), move |_| {
            move || cmd.emit(Command::StopSearch)
        });
    }

    let found = use_memo(
        ((*query).clone(), props.channel.messages.clone()),
        |(q, messages)| Needle::new(q).map(|n| (search::search(messages.iter(), &n), n)),
    );

    let ch = &props.channel;
    let name = ch.name.clone();
    let term = query.trim().to_owned();
    let older = state
        .older_search
        .as_ref()
        .filter(|s| s.channel == name && s.query.trim() == term && !term.is_empty());
    let running = older.is_some_and(|s| s.status == SearchStatus::Running);
    let any_running = state
        .older_search
        .as_ref()
        .is_some_and(|s| s.status == SearchStatus::Running);

    let oninput = {
        let query = query.clone();
        let cmd = chat.cmd.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(el) = e.target_dyn_into::<HtmlInputElement>() {
                if any_running {
                    cmd.emit(Command::StopSearch);
                }
                query.set(el.value());
            }
        })
    };
    let search_older = {
        let cmd = chat.cmd.clone();
        let name = name.clone();
        let term = term.clone();
        let oldest = ch.oldest();
        Callback::from(move |()| {
            cmd.emit(Command::SearchOlder {
                channel: name.clone(),
                query: term.clone(),
                before: oldest,
            });
        })
    };
    let can_search_older =
        !term.is_empty() && !running && ch.older != Older::Complete && state.ready;
    let loaded_hits = found.as_ref().as_ref().map_or(0, |(f, _)| f.total);
    let onkeydown = {
        let search_older = search_older.clone();
        Callback::from(move |e: KeyboardEvent| match e.key().as_str() {
            "ArrowDown" => {
                e.prevent_default();
                focus_first_result();
            }
            "Enter" if loaded_hits > 0 => {
                e.prevent_default();
                focus_first_result();
            }
            "Enter" if can_search_older => {
                e.prevent_default();
                search_older.emit(());
            }
            _ => {}
        })
    };
    let older_click = {
        let search_older = search_older.clone();
        Callback::from(move |_: MouseEvent| search_older.emit(()))
    };
    let stop = {
        let cmd = chat.cmd.clone();
        Callback::from(move |_: MouseEvent| cmd.emit(Command::StopSearch))
    };
    let close = {
        let on_close = props.on_close.clone();
        Callback::from(move |_: MouseEvent| on_close.emit(()))
    };

    let now = now_ms();
    let now_offset = local_offset_min(now);
    let oldest_ms = ch.messages.first().map(|m| m.id.unix_millis());
    let back = searched_back(
        oldest_ms,
        oldest_ms.map_or(now_offset, local_offset_min),
        now,
        now_offset,
        ch.messages.len(),
    );
    let count_text = match found.as_ref() {
        None => String::new(),
        Some((f, _)) if f.total == 0 => {
            format!("No matches in the {} loaded messages.", ch.messages.len())
        }
        Some((f, _)) if f.total > f.listed.len() => format!(
            "{} matches in the loaded messages; the newest {} are listed.",
            f.total,
            f.listed.len()
        ),
        Some((f, _)) => format!(
            "{} match{} in the loaded messages.",
            f.total,
            if f.total == 1 { "" } else { "es" }
        ),
    };
    let note = match older {
        Some(s) => Some(older_note(s.status, &back)),
        None if ch.older == Older::Complete && !term.is_empty() => {
            Some(format!("The whole history is loaded; {back}"))
        }
        None => None,
    };

    let results: Html = match found.as_ref() {
        Some((f, needle)) if f.total > 0 => {
            let items = f.listed.iter().map(|m| {
                let id = m.id.0;
                let href = permalink(&name, m.id);
                let ms = m.id.unix_millis();
                let onclick = {
                    let cmd = chat.cmd.clone();
                    let reducer = chat.state.clone();
                    let name = name.clone();
                    let shown = state.active.as_deref() == Some(name.as_str());
                    let msg = m.id;
                    Callback::from(move |_: MouseEvent| {
                        // The link also sets `location.hash` (the address
                        // to share); revealing here works when the hash
                        // is already this result's, too (no hashchange).
                        if !shown {
                            cmd.emit(Command::Select(name.clone()));
                        }
                        reducer.dispatch(Action::Reveal {
                            channel: name.clone(),
                            id: msg,
                        });
                    })
                };
                html! {
                    <li key={id}>
                        <a class="search-result" href={href} data-id={id.to_string()} {onclick}>
                            <span class="search-result-meta">
                                <span class="msg-nick" style={hue_style(&m.nick)}>{ marked(&m.nick, needle) }</span>
                                <time datetime={iso_utc(ms)} title={format_full_time(ms, local_offset_min(ms))}>
                                    { format_time(ms, local_offset_min(ms), now, now_offset) }
                                </time>
                            </span>
                            <span class="search-result-text">{ marked(&m.content, needle) }</span>
                        </a>
                    </li>
                }
            });
            html! { <ul class="search-results" aria-label={format!("Messages in #{name} matching {term}")}>{ for items }</ul> }
        }
        _ => Html::default(),
    };

    html! {
        <section class="search-panel" role="search" aria-label={format!("Search in #{name}")}>
            <div class="search-bar">
                <label class="visually-hidden" for="search-input">{ format!("Search in #{name}") }</label>
                { icon("#i-search", Some("search-icon")) }
                <input
                    id="search-input"
                    ref={input}
                    type="search"
                    autocomplete="off"
                    spellcheck="false"
                    placeholder={format!("Search #{name}")}
                    value={(*query).clone()}
                    {oninput}
                    {onkeydown}
                />
                if running {
                    <button type="button" class="search-stop" onclick={stop}>{ "Stop" }</button>
                } else if can_search_older {
                    <button type="button" class="search-older" onclick={older_click}>{ "Search older" }</button>
                }
                <button type="button" class="search-close" aria-label="Close search" title="Close (Esc)" onclick={close}>
                    { icon("#i-close", None) }
                </button>
            </div>
            <p class="search-count" role="status">{ count_text }</p>
            <p class="search-progress" role="status" aria-busy={running.to_string()}>
                if running {
                    <span class="spinner" aria-hidden="true"></span>
                }
                { note.unwrap_or_default() }
            </p>
            { results }
        </section>
    }
}
