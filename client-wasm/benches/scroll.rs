//! Figures for a long scrollback: a channel of 50 against one of 20 000
//! messages, for what the page does per incoming message (the reducer,
//! driven as Yew drives it, and the message list's window maths for one
//! render) and per scroll event (finding the rows in view and moving the
//! window). Prints timings; asserts nothing.
//!
//! ```text
//! cargo bench -p dumdum-client-wasm --bench scroll
//! ```

use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;

use dumdum_client_wasm::state::{Action, ChatState, HistoryKind};
use dumdum_client_wasm::window;
use dumdum_protocol::{ChatMessage, Snowflake};
use yew::Reducible;

fn msg(id: u64) -> ChatMessage {
    ChatMessage {
        id: Snowflake(id),
        channel: "general".into(),
        nick: format!("nick{}", id % 17),
        content: format!("message number {id}, with some ordinary chat text in it"),
    }
}

fn channel_of(n: u64) -> Rc<ChatState> {
    let mut s = ChatState::default();
    s.apply(Action::Channels {
        names: vec!["general".into()],
        active: Some("general".into()),
    });
    s.apply(Action::History {
        channel: "general".into(),
        messages: (1..=n).map(msg).collect(),
        kind: HistoryKind::Newest { more: false },
    });
    Rc::new(s)
}

fn main() {
    const BURST: u64 = 1_000;
    const SCROLLS: usize = 10_000;
    let mut per_message = Vec::new();
    for kept in [50u64, 20_000] {
        let start = channel_of(kept);
        // Per incoming message: a new state (the old one kept alive, as
        // Yew does), then the list's maths for one render.
        let t = Instant::now();
        let mut state = start.clone();
        let mut rendered = 0usize;
        for id in kept + 1..=kept + BURST {
            let previous = state.clone();
            state = state.clone().reduce(Action::Message(msg(id)));
            let Some(ch) = state.channel("general") else {
                return;
            };
            let m = &ch.messages;
            let win = window::bottom(m.len());
            rendered += m.range(win.clone()).map(|r| r.content.len()).sum::<usize>();
            black_box(window::spacers(&win, m.len(), 26.0));
            black_box(m.count_after(Snowflake(kept / 2)));
            let _ = black_box(m.position(Snowflake(id)));
            drop(previous);
        }
        let incoming = t.elapsed();
        black_box(rendered);

        // Per scroll event: rows in view to positions, the window moved.
        let Some(ch) = state.channel("general") else {
            return;
        };
        let m = &ch.messages;
        let len = m.len();
        let t = Instant::now();
        let mut moved = 0usize;
        let mut win = window::bottom(len);
        for k in 0..SCROLLS {
            let first_id = m.get((k * 7919) % len).map_or(Snowflake(0), |x| x.id);
            let first = match m.position(first_id) {
                Ok(i) | Err(i) => i,
            };
            let last = (first + 30).min(len - 1);
            let next = window::follow(&win, len, first, last)
                .unwrap_or_else(|| window::around(len, first));
            if next != win {
                moved += 1;
                win = next;
            }
            black_box(m.range(win.clone()).count());
        }
        let scrolling = t.elapsed();
        black_box(moved);

        let us_msg = incoming.as_secs_f64() * 1e6 / BURST as f64;
        per_message.push(us_msg);
        println!(
            "{kept:>6} kept: {BURST} incoming {:>8.3} ms ({us_msg:>6.2} µs each: reducer + window maths); {SCROLLS} scroll events {:>7.3} ms ({:>5.2} µs each)",
            incoming.as_secs_f64() * 1e3,
            scrolling.as_secs_f64() * 1e3,
            scrolling.as_secs_f64() * 1e6 / SCROLLS as f64,
        );
    }
    if let [small, big] = per_message[..] {
        println!(
            "per incoming message, 20 000 kept / 50 kept: {:.2}",
            big / small
        );
    }
}
