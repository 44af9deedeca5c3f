//! Figures for the view state's reducer, driven as Yew drives it (the old
//! state stays shared, so every dispatch builds a new one): a channel full
//! of messages receiving a burst of broadcasts, one dispatch each and one
//! batched dispatch. Prints timings; asserts nothing.
//!
//! ```text
//! cargo bench -p dumdum-client-wasm
//! ```

use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;

use dumdum_client_wasm::state::{Action, ChatState, HistoryKind, MAX_KEPT};
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

fn full_channel(n: u64) -> Rc<ChatState> {
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
    for kept in [100, 1_000, MAX_KEPT as u64] {
        let start = full_channel(kept);
        let first = kept + 1;

        let t = Instant::now();
        let mut state = start.clone();
        let mut history = Vec::new();
        for id in first..first + BURST {
            // Yew keeps the previous state alive while reducing.
            history.push(state.clone());
            state = state.clone().reduce(Action::Message(msg(id)));
            history.truncate(1);
        }
        let one_by_one = t.elapsed();
        black_box(&state);

        let t = Instant::now();
        let batch = (first..first + BURST)
            .map(|id| Action::Message(msg(id)))
            .collect();
        let batched = start.clone().reduce(Action::Batch(batch));
        let in_one = t.elapsed();
        black_box(&batched);

        println!(
            "{kept:>5} kept, {BURST} broadcasts: one dispatch each {:>9.3} ms ({:>7.2} µs each), one batch {:>8.3} ms",
            one_by_one.as_secs_f64() * 1e3,
            one_by_one.as_secs_f64() * 1e6 / BURST as f64,
            in_one.as_secs_f64() * 1e3,
        );
    }
}
