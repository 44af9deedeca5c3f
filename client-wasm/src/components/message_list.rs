//! The message view of a channel: "load older" paging, day dividers,
//! auto-scroll when at the bottom, and a "new messages" marker otherwise.

use std::cell::RefCell;
use std::rc::Rc;

use dumdum_protocol::Snowflake;
use web_sys::HtmlElement;
use yew::prelude::*;

use super::{MessageRow, local_offset_min, use_chat_context};
use crate::format::DateTime;
use crate::hooks::Command;
use crate::state::{Channel, Older};

/// Properties of [`MessageList`].
#[derive(Properties, PartialEq)]
pub struct MessageListProps {
    /// The channel shown.
    pub channel: Channel,
    /// Our nick.
    pub me: Option<String>,
}

/// Within this many pixels of the end counts as "at the bottom".
const BOTTOM_SLACK_PX: i32 = 48;

#[derive(Default)]
struct Seen {
    channel: String,
    first: Option<Snowflake>,
    last: Option<Snowflake>,
    scroll_height: i32,
    at_bottom: bool,
}

fn at_bottom(el: &HtmlElement) -> bool {
    el.scroll_height() - el.scroll_top() - el.client_height() <= BOTTOM_SLACK_PX
}

fn scroll_to_bottom(el: &HtmlElement) {
    el.set_scroll_top(el.scroll_height());
}

fn day_label(ms: u64) -> (i64, u32, u32, String) {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let t = DateTime::from_unix_ms(ms, local_offset_min(ms));
    let month = MONTHS[(t.month as usize).saturating_sub(1) % 12];
    (
        t.year,
        t.month,
        t.day,
        format!("{} {month} {}", t.day, t.year),
    )
}

/// The messages of one channel.
#[component]
pub fn MessageList(props: &MessageListProps) -> Html {
    let chat = use_chat_context();
    let scroller = use_node_ref();
    let seen: Rc<RefCell<Seen>> = use_mut_ref(|| Seen {
        at_bottom: true,
        ..Seen::default()
    });
    let unseen = use_state(|| 0usize);
    let marker = use_state(|| None::<Snowflake>);

    let messages = props.channel.messages.clone();
    let first = messages.first().map(|m| m.id);
    let last = messages.last().map(|m| m.id);
    {
        let scroller = scroller.clone();
        let seen = seen.clone();
        let unseen = unseen.clone();
        let marker = marker.clone();
        let messages = messages.clone();
        let name = props.channel.name.clone();
        let me = props.me.clone();
        use_effect_with((name.clone(), first, last, messages.len()), move |_| {
            let Some(el) = scroller.cast::<HtmlElement>() else {
                return;
            };
            let mut s = seen.borrow_mut();
            if s.channel != name {
                // Another channel: start at its newest message.
                scroll_to_bottom(&el);
                unseen.set(0);
                marker.set(None);
                s.at_bottom = true;
            } else if s.first.is_some() && first < s.first && last == s.last {
                // Older messages above: keep what the reader sees in place.
                let grown = el.scroll_height() - s.scroll_height;
                el.set_scroll_top(el.scroll_top() + grown);
            } else if last > s.last {
                let fresh: Vec<_> = messages.iter().filter(|m| Some(m.id) > s.last).collect();
                let own = fresh.iter().any(|m| me.as_deref() == Some(m.nick.as_str()));
                if s.at_bottom || own || s.last.is_none() {
                    scroll_to_bottom(&el);
                    s.at_bottom = true;
                } else {
                    unseen.set(*unseen + fresh.len());
                    if marker.is_none() {
                        marker.set(fresh.first().map(|m| m.id));
                    }
                }
            }
            s.channel = name;
            s.first = first;
            s.last = last;
            s.scroll_height = el.scroll_height();
        });
    }

    // A window resize reflows the list: stay at the bottom if we were.
    {
        let scroller = scroller.clone();
        let seen = seen.clone();
        use_effect_with((), move |_| {
            let listener = web_sys::window().map(|w| {
                gloo_events::EventListener::new(&w, "resize", move |_| {
                    if let Some(el) = scroller.cast::<HtmlElement>()
                        && seen.borrow().at_bottom
                    {
                        scroll_to_bottom(&el);
                    }
                })
            });
            move || drop(listener)
        });
    }

    let onscroll = {
        let seen = seen.clone();
        let unseen = unseen.clone();
        let scroller = scroller.clone();
        Callback::from(move |_: Event| {
            let Some(el) = scroller.cast::<HtmlElement>() else {
                return;
            };
            let bottom = at_bottom(&el);
            let mut s = seen.borrow_mut();
            s.at_bottom = bottom;
            s.scroll_height = el.scroll_height();
            if bottom && *unseen > 0 {
                unseen.set(0);
            }
        })
    };
    let jump = {
        let scroller = scroller.clone();
        let unseen = unseen.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(el) = scroller.cast::<HtmlElement>() {
                scroll_to_bottom(&el);
            }
            unseen.set(0);
        })
    };
    let load_older = {
        let cmd = chat.cmd.clone();
        let name = props.channel.name.clone();
        let oldest = props.channel.oldest();
        let seen = seen.clone();
        let scroller = scroller.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(el) = scroller.cast::<HtmlElement>() {
                seen.borrow_mut().scroll_height = el.scroll_height();
            }
            cmd.emit(Command::LoadOlder {
                channel: name.clone(),
                before: oldest,
            });
        })
    };

    let name = &props.channel.name;
    let top = match props.channel.older {
        Older::More => html! {
            <button id="load-older" type="button" class="load-older" onclick={load_older}>{ "Load older messages" }</button>
        },
        Older::Loading | Older::NotLoaded => html! {
            <p class="history-note" aria-busy="true"><span class="spinner" aria-hidden="true"></span>{ "Loading messages…" }</p>
        },
        Older::Complete => html! {
            <p class="history-note history-start">{ format!("This is the beginning of #{name}.") }</p>
        },
    };

    let mut rows: Vec<Html> = Vec::with_capacity(messages.len() + 8);
    let mut prev_day: Option<(i64, u32, u32)> = None;
    for m in messages.iter() {
        let (y, mo, d, label) = day_label(m.id.unix_millis());
        if prev_day != Some((y, mo, d)) {
            rows.push(html! {
                <li key={format!("day-{y}-{mo}-{d}")} class="day-divider"><span>{ label }</span></li>
            });
            prev_day = Some((y, mo, d));
        }
        if *marker == Some(m.id) {
            rows.push(html! {
                <li key="new-marker" class="new-marker"><span>{ "New messages" }</span></li>
            });
        }
        let mine = props.me.as_deref() == Some(m.nick.as_str());
        rows.push(html! { <MessageRow key={m.id.0} message={m.clone()} {mine} /> });
    }

    html! {
        <div class="messages-wrap">
            <div
                id="messages"
                class="messages"
                ref={scroller}
                onscroll={onscroll}
                role="log"
                aria-live="polite"
                aria-relevant="additions"
                aria-label={format!("Messages in #{name}")}
                tabindex="0"
            >
                <div class="history-top">{ top }</div>
                if messages.is_empty() && props.channel.older == Older::Complete {
                    <p class="empty">{ "No messages yet. Say hello!" }</p>
                }
                <ol class="msg-list">{ for rows }</ol>
            </div>
            if *unseen > 0 {
                <button type="button" class="jump-new" onclick={jump}>
                    { format!("{} new message{} ↓", *unseen, if *unseen == 1 { "" } else { "s" }) }
                </button>
            }
        </div>
    }
}
