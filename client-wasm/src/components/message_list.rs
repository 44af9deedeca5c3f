//! The message view of a channel: a window of rows around the viewport
//! (spacers stand in for the rest, so 20 000 messages cost what 50 do),
//! "load older" paging, day dividers, auto-scroll when at the bottom, the
//! unread marker ("New since 14:02", remembered per server, nick and
//! channel) with its "Jump to first unread (N)" button, and revealing a
//! message (permalinks, search results): scrolled to and highlighted,
//! older pages fetched until it is loaded.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

use dumdum_protocol::Snowflake;
use web_sys::{Element, HtmlElement};
use yew::prelude::*;

use super::{MessageRow, local_offset_min, use_chat_context};
use crate::format::DateTime;
use crate::hooks::Command;
use crate::permalink::row_id;
use crate::state::{Action, Channel, Messages, Older};
use crate::storage::{self, SERVER_KEY, read_key};
use crate::window;

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

/// What the list remembers between renders (not rendered itself).
struct Ui {
    channel: String,
    /// The rows rendered last, by position.
    window: Range<usize>,
    /// Average row height, measured.
    row_px: f64,
    /// A row in view and its offset from the top of the viewport, taken
    /// before a render that may move rows, restored after it.
    anchor: Option<(Snowflake, f64)>,
    /// The newest message when last rendered.
    last: Option<Snowflake>,
    /// The oldest message when last rendered.
    first: Option<Snowflake>,
    /// The reveal request handled last.
    reveal_seq: u64,
    /// A revealed message to scroll to once rendered.
    scroll_to: Option<Snowflake>,
    /// The last message read when the channel was opened (the marker goes
    /// after it), and whether it stays put (there were unread messages).
    read_at_open: Option<Snowflake>,
    frozen: bool,
    /// Whether the channel's first messages were seen since it was opened.
    opened: bool,
    /// The last message read, as stored.
    read: Option<Snowflake>,
    /// The scroll position last seen or set: a scroll event that did not
    /// move up (rows added below before the list followed them) does not
    /// stop following the bottom.
    scroll_top: i32,
    /// The scroll height last seen: a scroll event with another height
    /// came from the layout (rows in or out, spacers re-measured), not
    /// from the reader.
    scroll_height: i32,
}

impl Default for Ui {
    fn default() -> Self {
        Ui {
            channel: String::new(),
            window: 0..0,
            row_px: window::DEFAULT_ROW_PX,
            anchor: None,
            last: None,
            first: None,
            reveal_seq: 0,
            scroll_to: None,
            read_at_open: None,
            frozen: false,
            opened: false,
            read: None,
            scroll_top: 0,
            scroll_height: 0,
        }
    }
}

/// Where the view is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// At the newest message, following new ones.
    Bottom,
    /// The window starts at this message.
    From(Snowflake),
}

fn at_bottom(el: &HtmlElement) -> bool {
    el.scroll_height() - el.scroll_top() - el.client_height() <= BOTTOM_SLACK_PX
}

fn scroll_to_bottom(el: &HtmlElement) {
    el.set_scroll_top(el.scroll_height());
}

/// Scrolls so that the anchor row is where it was before the render.
fn keep_anchor(u: &mut Ui, el: &HtmlElement) {
    if let Some((id, before)) = u.anchor.take()
        && let Some(now) = offset_in(el, id)
    {
        let delta = now - before;
        if delta.abs() >= 0.5 {
            el.set_scroll_top(el.scroll_top() + delta.round() as i32);
        }
    }
}

fn day_label(ms: u64) -> ((i64, u32, u32), String) {
    let t = DateTime::from_unix_ms(ms, local_offset_min(ms));
    let month = t.month_name();
    (
        (t.year, t.month, t.day),
        format!("{} {month} {}", t.day, t.year),
    )
}

fn hh_mm(ms: u64) -> String {
    let t = DateTime::from_unix_ms(ms, local_offset_min(ms));
    format!("{:02}:{:02}", t.hour, t.minute)
}

/// The rows in view: the first and last message ids whose rows overlap
/// the viewport of `scroller` (binary search over the rendered rows).
fn rows_in_view(scroller: &HtmlElement, list: &Element) -> Option<(Snowflake, Snowflake)> {
    let view = scroller.get_bounding_client_rect();
    let (top, bottom) = (view.top(), view.bottom());
    let rows = list.children();
    let n = rows.length();
    let rect = |i: u32| rows.item(i).map(|e| e.get_bounding_client_rect());
    // First row whose bottom is below the viewport's top.
    let (mut lo, mut hi) = (0u32, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if rect(mid).is_some_and(|r| r.bottom() <= top) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let first = lo;
    let (mut lo, mut hi) = (first, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if rect(mid).is_some_and(|r| r.top() < bottom) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let last = lo;
    if first >= last {
        return None;
    }
    let id_of = |i: u32| -> Option<Snowflake> {
        let e = rows.item(i)?;
        e.get_attribute("data-id")?.parse().ok().map(Snowflake)
    };
    let a = (first..last).find_map(id_of)?;
    let b = (first..last).rev().find_map(id_of)?;
    Some((a, b))
}

fn offset_in(scroller: &HtmlElement, id: Snowflake) -> Option<f64> {
    let doc = web_sys::window()?.document()?;
    let el = doc.get_element_by_id(&row_id(id))?;
    Some(el.get_bounding_client_rect().top() - scroller.get_bounding_client_rect().top())
}

fn tab_is_read() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.has_focus().unwrap_or(false) && !d.hidden())
}

fn pos(messages: &Messages, id: Snowflake) -> usize {
    match messages.position(id) {
        Ok(i) | Err(i) => i,
    }
}

fn marker_of(u: &Ui, messages: &Messages) -> Option<Snowflake> {
    let read = u.read_at_open?;
    if !u.frozen {
        return None;
    }
    let i = match messages.position(read) {
        Ok(i) => i + 1,
        Err(i) => i,
    };
    messages.get(i).map(|m| m.id)
}

/// After a render or a scroll: notes what was read (the channel shown in
/// a focused tab, its rows in view or the bottom reached), moves the
/// unread marker's point along while nothing is left unread, and says
/// whether the first unread message is above the view.
fn observe(
    u: &mut Ui,
    el: &HtmlElement,
    list: &Element,
    messages: &Messages,
    key: &str,
    unread_above: &UseStateHandle<bool>,
) {
    let last = messages.last().map(|m| m.id);
    let in_view = rows_in_view(el, list);
    let newest_seen = if at_bottom(el) {
        last
    } else {
        in_view.map(|(_, b)| b)
    };
    if tab_is_read()
        && let Some(seen) = newest_seen
        && Some(seen) > u.read
    {
        u.read = Some(seen);
        storage::save(key, &seen.0.to_string());
    }
    if !u.frozen && u.opened {
        if last > u.read && u.read_at_open.is_some() {
            // Came while not read (scrolled up, another tab): mark.
            u.frozen = true;
        } else {
            u.read_at_open = u.read;
        }
    }
    let above = match (marker_of(u, messages), in_view) {
        (Some(m), Some((first, _))) => m < first,
        (Some(_), None) => true,
        _ => false,
    };
    unread_above.set(above);
}

/// The messages of one channel.
#[component]
pub fn MessageList(props: &MessageListProps) -> Html {
    let chat = use_chat_context();
    let scroller = use_node_ref();
    let list_ref = use_node_ref();
    let ui: Rc<RefCell<Ui>> = use_mut_ref(Ui::default);
    let view = use_state_eq(|| View::Bottom);
    let unseen = use_state_eq(|| 0usize);
    let unread_above = use_state_eq(|| false);
    let highlight = use_state_eq(|| None::<Snowflake>);
    let reveal_note = use_state_eq(|| None::<String>);
    // Re-render after a scroll or a focus change, when what is derived
    // from the DOM changed.
    let tick = use_state_eq(|| 0u64);

    let messages = props.channel.messages.clone();
    let name = props.channel.name.clone();
    let len = messages.len();
    let server = storage::load(SERVER_KEY);
    let me = props.me.clone().unwrap_or_default();
    let key = read_key(server.as_deref(), &me, &name);

    // Another channel (or the first render): start at its bottom, with
    // its last-read message from storage.
    let switched = ui.borrow().channel != name;
    if switched {
        let read = storage::load(&key)
            .and_then(|v| v.parse().ok())
            .map(Snowflake);
        let mut u = ui.borrow_mut();
        *u = Ui {
            channel: name.clone(),
            row_px: u.row_px,
            reveal_seq: u.reveal_seq,
            read_at_open: read,
            read,
            ..Ui::default()
        };
    }
    let current_view = if switched { View::Bottom } else { *view };
    let win = match current_view {
        View::Bottom => window::bottom(len),
        View::From(id) => window::starting_at(len, pos(&messages, id)),
    };

    // Before the DOM changes: the row in view to keep in place.
    if !switched
        && current_view != View::Bottom
        && let (Some(el), Some(list)) = (scroller.cast::<HtmlElement>(), list_ref.cast::<Element>())
        && let Some((first, _)) = rows_in_view(&el, &list)
    {
        ui.borrow_mut().anchor = offset_in(&el, first).map(|o| (first, o));
    }

    // The unread marker: after the last message read when the channel was
    // opened.
    let (marker, unread_count) = {
        let u = ui.borrow();
        let marker = marker_of(&u, &messages);
        // Unread: the others' messages after it (our own were read).
        let count = match (marker, u.read_at_open) {
            (Some(_), Some(read)) => messages
                .range(len - messages.count_after(read)..len)
                .filter(|m| props.me.as_deref() != Some(m.nick.as_str()))
                .count(),
            _ => 0,
        };
        (marker, count)
    };

    // After every render: keep the view in place, scroll to a revealed
    // message, measure rows, and note what was read. Once, as an effect
    // or in a microtask, whichever runs first: Yew's scheduler may yield
    // to the browser between patching the DOM and running effects (after
    // 16 ms of work), and the browser must not paint, or send a scroll
    // event for, rows that are in but not yet settled. A microtask runs
    // before the browser regains control.
    {
        let scroller = scroller.clone();
        let list_ref = list_ref.clone();
        let ui = ui.clone();
        let view = view.clone();
        let unseen = unseen.clone();
        let unread_above = unread_above.clone();
        let highlight = highlight.clone();
        let messages = messages.clone();
        let key = key.clone();
        let mine = props.me.clone();
        let win = win.clone();
        let revealing = chat
            .state
            .reveal
            .as_ref()
            .is_some_and(|r| r.channel == name && r.seq > ui.borrow().reveal_seq);
        let settle = move || {
            let (Some(el), Some(list)) =
                (scroller.cast::<HtmlElement>(), list_ref.cast::<Element>())
            else {
                return;
            };
            let mut u = ui.borrow_mut();
            let last = messages.last().map(|m| m.id);
            let fresh = last > u.last && u.last.is_some();
            if switched {
                scroll_to_bottom(&el);
                unseen.set(0);
                view.set(View::Bottom);
            } else if let Some(target) = u.scroll_to.take() {
                match web_sys::window()
                    .and_then(|w| w.document())
                    .and_then(|d| d.get_element_by_id(&row_id(target)))
                {
                    Some(row) => {
                        let block = web_sys::ScrollIntoViewOptions::new();
                        block.set_block(web_sys::ScrollLogicalPosition::Center);
                        row.scroll_into_view_with_scroll_into_view_options(&block);
                        highlight.set(Some(target));
                    }
                    None => u.scroll_to = Some(target),
                }
                u.anchor = None;
            } else if *view == View::Bottom {
                // Following the bottom, the last rows are the ones
                // rendered: when older pages went in above (a search
                // older) and the spacer standing for them grew under the
                // scroll position, so that no row is in view, go back
                // down to them. Not while a reveal fetches older pages: it
                // places the view itself.
                let prepended = u.first.is_some() && messages.first().map(|m| m.id) < u.first;
                // (And only when the reader has not scrolled since the
                // last render: a scroll not yet handled is theirs.)
                let unmoved = el.scroll_top() == u.scroll_top;
                let lost = prepended && unmoved && !revealing && rows_in_view(&el, &list).is_none();
                if fresh || u.last.is_none() || lost || at_bottom(&el) {
                    scroll_to_bottom(&el);
                }
                u.anchor = None;
            } else {
                keep_anchor(&mut u, &el);
            }
            if fresh && *view != View::Bottom {
                let newer = messages.count_after(u.last.unwrap_or(Snowflake(0)));
                let own = messages
                    .range(len.saturating_sub(newer)..len)
                    .any(|m| mine.as_deref() == Some(m.nick.as_str()));
                if own {
                    view.set(View::Bottom);
                    scroll_to_bottom(&el);
                } else {
                    unseen.set(*unseen + newer);
                }
            }
            u.last = last;
            u.first = messages.first().map(|m| m.id);
            u.window = win.clone();
            u.scroll_top = el.scroll_top();
            u.scroll_height = el.scroll_height();
            // Measure: the rendered rows' average height.
            let (above, below) = window::spacers(&win, len, u.row_px);
            let rendered = list.get_bounding_client_rect().height() - above - below;
            u.row_px = window::measured(u.row_px, rendered, win.len());
            // The unread marker is decided on the first messages seen (the
            // marker stays until the channel is left).
            if !u.opened && last.is_some() {
                u.opened = true;
                u.frozen = u.read_at_open.is_some_and(|r| last > Some(r));
            }
            observe(&mut u, &el, &list, &messages, &key, &unread_above);
        };
        let once = Rc::new(Cell::new(Some(settle)));
        let run = move || {
            if let Some(settle) = once.take() {
                settle();
            }
        };
        let early = run.clone();
        wasm_bindgen_futures::spawn_local(async move { early() });
        use_effect(run);
    }

    // Reveal requests for this channel: fetch back until the message is
    // loaded, then render the window around it and scroll to it.
    {
        let ui = ui.clone();
        let view = view.clone();
        let reveal_note = reveal_note.clone();
        let tick = tick.clone();
        let cmd = chat.cmd.clone();
        let request = chat.state.reveal.clone();
        let messages = messages.clone();
        let older = props.channel.older;
        let name = name.clone();
        let deps = (
            request.as_ref().map(|r| r.seq),
            messages.first().map(|m| m.id),
            len,
            older,
            name.clone(),
        );
        use_effect_with(deps, move |_| {
            let Some(r) = request else {
                return;
            };
            if r.channel != name {
                return;
            }
            let mut u = ui.borrow_mut();
            if u.reveal_seq >= r.seq {
                return;
            }
            match messages.position(r.id) {
                Ok(i) => {
                    u.reveal_seq = r.seq;
                    let w = window::around(messages.len(), i);
                    let start = messages.get(w.start).map(|m| m.id);
                    view.set(start.map_or(View::Bottom, View::From));
                    u.scroll_to = Some(r.id);
                    u.anchor = None;
                    reveal_note.set(None);
                    // Render (the view may be unchanged): the effect scrolls.
                    tick.set(r.seq);
                }
                Err(i) => {
                    let older_than_all = i == 0;
                    match older {
                        Older::More if older_than_all => {
                            reveal_note.set(Some("Loading older messages…".into()));
                            cmd.emit(Command::LoadOlder {
                                channel: name.clone(),
                                before: messages.first().map(|m| m.id),
                            });
                        }
                        Older::Loading | Older::NotLoaded if older_than_all => {
                            reveal_note.set(Some("Loading older messages…".into()));
                        }
                        _ => {
                            u.reveal_seq = r.seq;
                            reveal_note.set(Some(
                                "That message was not found: it may have been deleted or be older than the server keeps."
                                    .into(),
                            ));
                        }
                    }
                }
            }
        });
    }

    // Window resizes and focus: stay at the bottom if we were; a focused
    // tab reads what it shows.
    {
        let scroller = scroller.clone();
        let view = view.clone();
        let tick = tick.clone();
        use_effect_with((), move |_| {
            let listeners = web_sys::window().map(|w| {
                let resize = {
                    let tick = tick.clone();
                    gloo_events::EventListener::new(&w, "resize", move |_| {
                        if let Some(el) = scroller.cast::<HtmlElement>()
                            && *view == View::Bottom
                        {
                            scroll_to_bottom(&el);
                        }
                        tick.set(js_sys::Date::now() as u64);
                    })
                };
                let focus = gloo_events::EventListener::new(&w, "focus", move |_| {
                    tick.set(js_sys::Date::now() as u64);
                });
                (resize, focus)
            });
            move || drop(listeners)
        });
    }

    let onscroll = {
        let ui = ui.clone();
        let view = view.clone();
        let unseen = unseen.clone();
        let scroller = scroller.clone();
        let list_ref = list_ref.clone();
        let messages = messages.clone();
        let key = key.clone();
        let unread_above = unread_above.clone();
        Callback::from(move |_: Event| {
            let (Some(el), Some(list)) =
                (scroller.cast::<HtmlElement>(), list_ref.cast::<Element>())
            else {
                return;
            };
            // What the view shows now counts as read (and moves the
            // unread marker's state); done after each way this event ends.
            let note_read = || {
                observe(
                    &mut ui.borrow_mut(),
                    &el,
                    &list,
                    &messages,
                    &key,
                    &unread_above,
                )
            };
            let len = messages.len();
            let (win, row_px, revealing) = {
                let u = ui.borrow();
                (u.window.clone(), u.row_px, u.scroll_to.is_some())
            };
            // A revealed message is about to be rendered and scrolled to:
            // a scroll now (the layout settling, in Firefox) must not move
            // the window away from it.
            if revealing {
                return;
            }
            let went_up = {
                let mut u = ui.borrow_mut();
                let layout = el.scroll_height() != u.scroll_height;
                let up = !layout && el.scroll_top() < u.scroll_top - 2;
                u.scroll_top = el.scroll_top();
                u.scroll_height = el.scroll_height();
                up
            };
            if *view == View::Bottom && !went_up && win.end == len {
                // Rows came below before the list followed them: follow.
                if !at_bottom(&el) {
                    scroll_to_bottom(&el);
                    let mut u = ui.borrow_mut();
                    u.scroll_top = el.scroll_top();
                    u.scroll_height = el.scroll_height();
                }
                note_read();
                return;
            }
            if at_bottom(&el) && win.end == len {
                view.set(View::Bottom);
                unseen.set(0);
                note_read();
                return;
            }
            let next = match rows_in_view(&el, &list) {
                Some((a, b)) => window::follow(&win, len, pos(&messages, a), pos(&messages, b))
                    .unwrap_or(win.clone()),
                None => {
                    // Dragged into a spacer: estimate the row there.
                    let list_top = list.get_bounding_client_rect().top()
                        - el.get_bounding_client_rect().top()
                        + f64::from(el.scroll_top());
                    let y = f64::from(el.scroll_top()) - list_top;
                    let (above, below) = window::spacers(&win, len, row_px);
                    let rendered = list.get_bounding_client_rect().height() - above - below;
                    let i = window::row_at(&win, len, y, rendered, row_px);
                    window::around(len, i)
                }
            };
            let want = match messages.get(next.start) {
                Some(m) if next.end < len || next.start > 0 => View::From(m.id),
                _ => View::Bottom,
            };
            let want = if want == View::Bottom && !at_bottom(&el) {
                messages
                    .get(win.start)
                    .map_or(View::Bottom, |m| View::From(m.id))
            } else {
                want
            };
            view.set(want);
            note_read();
        })
    };
    let jump = {
        let scroller = scroller.clone();
        let unseen = unseen.clone();
        let view = view.clone();
        Callback::from(move |_: MouseEvent| {
            view.set(View::Bottom);
            if let Some(el) = scroller.cast::<HtmlElement>() {
                scroll_to_bottom(&el);
            }
            unseen.set(0);
        })
    };
    let jump_unread = {
        let state = chat.state.clone();
        let name = name.clone();
        let target = marker;
        Callback::from(move |_: MouseEvent| {
            if let Some(id) = target {
                state.dispatch(Action::Reveal {
                    channel: name.clone(),
                    id,
                });
            }
        })
    };
    let load_older = {
        let cmd = chat.cmd.clone();
        let name = name.clone();
        let oldest = props.channel.oldest();
        Callback::from(move |_: MouseEvent| {
            cmd.emit(Command::LoadOlder {
                channel: name.clone(),
                before: oldest,
            });
        })
    };

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

    let row_px = ui.borrow().row_px;
    let (pad_top, pad_bottom) = window::spacers(&win, len, row_px);
    let mut rows: Vec<Html> = Vec::with_capacity(win.len() + 8);
    let mut prev_day = win
        .start
        .checked_sub(1)
        .and_then(|i| messages.get(i))
        .map(|m| day_label(m.id.unix_millis()).0);
    for m in messages.range(win.clone()) {
        let (day, label) = day_label(m.id.unix_millis());
        if prev_day != Some(day) {
            // Keyed by the date as a number (no message id is that small).
            let (y, mo, d) = day;
            let key = (y as u64) * 10_000 + u64::from(mo) * 100 + u64::from(d);
            rows.push(html! {
                <li {key} class="day-divider"><span>{ label }</span></li>
            });
            prev_day = Some(day);
        }
        if marker == Some(m.id) {
            let label = format!("New since {}", hh_mm(m.id.unix_millis()));
            rows.push(html! {
                <li key="new-marker" id="new-marker" class="new-marker"><span>{ label }</span></li>
            });
        }
        let mine = props.me.as_deref() == Some(m.nick.as_str());
        let lit = *highlight == Some(m.id);
        rows.push(html! { <MessageRow key={m.id.0} message={m.clone()} {mine} highlight={lit} /> });
    }
    // Whole pixels, formatted as integers (no float formatting in the wasm).
    let style = format!(
        "padding-top: {}px; padding-bottom: {}px",
        pad_top.round() as i64,
        pad_bottom.round() as i64
    );

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
                if let Some(note) = &*reveal_note {
                    <p class="reveal-note history-note" role="status">{ note.clone() }</p>
                }
                if messages.is_empty() && props.channel.older == Older::Complete {
                    <p class="empty">{ "No messages yet. Say hello!" }</p>
                }
                <ol
                    class="msg-list"
                    ref={list_ref}
                    style={style}
                    data-count={len.to_string()}
                    data-first={win.start.to_string()}
                >{ for rows }</ol>
            </div>
            if *unread_above && unread_count > 0 {
                <button type="button" class="jump-unread" onclick={jump_unread}>
                    { format!("Jump to first unread ({unread_count})") }
                </button>
            }
            if *unseen > 0 {
                <button type="button" class="jump-new" onclick={jump}>
                    { format!("{} new message{} ↓", *unseen, if *unseen == 1 { "" } else { "s" }) }
                </button>
            }
        </div>
    }
}
