//! The root: provides the chat context and picks the screen.

use yew::prelude::*;

use super::{ChatScreen, ConnectScreen};
use crate::hooks::{ChatContext, use_chat};

/// The app.
#[component]
pub fn App() -> Html {
    let chat = use_chat();
    let connect = chat.state.needs_nick();
    html! {
        <ContextProvider<ChatContext> context={chat}>
            if connect {
                <ConnectScreen />
            } else {
                <ChatScreen />
            }
        </ContextProvider<ChatContext>>
    }
}
