//! Opening permalinks: on the chat screen's first render and on every
//! `hashchange`, a location hash `#<channel>/<id>` selects the channel and
//! asks the message list to reveal the message (fetching older pages as
//! needed). The search panel opens its results the same way, by setting
//! `location.hash`. A link is acted on once the channel list is known, and
//! only for a channel in it.

use gloo_events::EventListener;
use yew::prelude::*;

use super::use_chat_context;
use crate::hooks::Command;
use crate::permalink;
use crate::state::Action;

fn current_hash() -> Option<String> {
    web_sys::window()?.location().hash().ok()
}

/// Follows the location hash while the chat screen is shown.
#[hook]
pub fn use_permalinks() {
    let chat = use_chat_context();
    // Bumped by every hashchange; the value last acted on.
    let changes = use_state_eq(|| 1u64);
    let handled = use_mut_ref(|| 0u64);
    {
        let changes = changes.clone();
        use_effect_with((), move |_| {
            let listener = web_sys::window().map(|w| {
                EventListener::new(&w, "hashchange", move |_| {
                    changes.set(js_sys::Date::now() as u64);
                })
            });
            move || drop(listener)
        });
    }
    let names: Vec<String> = chat.state.channels.iter().map(|c| c.name.clone()).collect();
    let cmd = chat.cmd.clone();
    let state = chat.state.clone();
    use_effect_with((*changes, names), move |(change, names)| {
        if names.is_empty() || *handled.borrow() == *change {
            return;
        }
        *handled.borrow_mut() = *change;
        let Some((channel, id)) = current_hash().as_deref().and_then(permalink::parse) else {
            return;
        };
        if !names.contains(&channel) {
            crate::log(&format!("dumdum: no channel #{channel} for the link"));
            return;
        }
        cmd.emit(Command::Select(channel.clone()));
        state.dispatch(Action::Reveal { channel, id });
    });
}
