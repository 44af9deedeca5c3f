//! The page, one component per file.

mod app;
mod channel_list;
mod chat_screen;
mod composer;
mod connect_screen;
mod help_dialog;
mod message_list;
mod message_row;
mod offline_notice;
mod permalinks;
mod search_panel;
mod settings_panel;
mod status_bar;

pub use app::App;
pub use channel_list::ChannelList;
pub use chat_screen::ChatScreen;
pub use composer::Composer;
pub use connect_screen::ConnectScreen;
pub use help_dialog::HelpDialog;
pub use message_list::MessageList;
pub use message_row::MessageRow;
pub use offline_notice::OfflineNotice;
pub use permalinks::use_permalinks;
pub use search_panel::SearchPanel;
pub use settings_panel::SettingsPanel;
pub use status_bar::StatusBar;

use yew::prelude::*;

/// An icon of the page's sprite (`www/index.html`), `href` such as
/// `#i-search`: one `<use>` instead of the shapes in every component
/// (smaller wasm). Decorative: hidden from assistive technology.
pub fn icon(href: &'static str, class: Option<&'static str>) -> Html {
    html! {
        <svg {class} viewBox="0 0 24 24" aria-hidden="true"><use {href} /></svg>
    }
}

use crate::hooks::ChatContext;

/// The chat context; every component below [`App`] has one.
#[hook]
pub(crate) fn use_chat_context() -> ChatContext {
    #[allow(clippy::expect_used)]
    use_context::<ChatContext>().expect("components are rendered inside App's ChatContext")
}

/// Minutes east of UTC in the browser's time zone at `unix_ms`.
pub(crate) fn local_offset_min(unix_ms: u64) -> i32 {
    #[cfg(target_arch = "wasm32")]
    {
        let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(unix_ms as f64));
        -(d.get_timezone_offset() as i32)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = unix_ms;
        0
    }
}

/// Now, in ms since the epoch.
pub(crate) fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now().max(0.0) as u64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// The inline style that gives a nick its colour.
pub(crate) fn hue_style(nick: &str) -> String {
    format!("--hue: {}", crate::format::nick_hue(nick))
}
