//! Opening permalinks: on the chat screen's first render and on every
//! `hashchange`, a location hash `#<channel>/<id>` selects the channel and
//! asks the message list to reveal the message (fetching older pages as
//! needed). The search panel opens its results the same way, by setting
//! `location.hash`.

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
    let cmd = chat.cmd.clone();
    let state = chat.state.clone();
    use_effect_with((), move |_| {
        let open = move || {
            let Some((channel, id)) = current_hash().as_deref().and_then(permalink::parse) else {
                return;
            };
            cmd.emit(Command::Select(channel.clone()));
            state.dispatch(Action::Reveal { channel, id });
        };
        open();
        let listener =
            web_sys::window().map(|w| EventListener::new(&w, "hashchange", move |_| open()));
        move || drop(listener)
    });
}
