//! Says so when the page has no way to the bridge: the browser is offline,
//! or the bridge did not answer (the page then came from the service
//! worker's saved copy, `www/sw.js`). Follows the browser's `online` and
//! `offline` events.

use gloo_events::EventListener;
use yew::prelude::*;

/// The notice for the browser's `online` state and whether the bridge
/// answered; `None` when all is well.
pub(crate) fn offline_text(online: bool, unreachable: bool) -> Option<&'static str> {
    if !online {
        Some(
            "You are offline — this is the page's saved copy. You can join once the network is back.",
        )
    } else if unreachable {
        Some(
            "You are offline, or the bridge is down; this is the page's saved copy. Reload to try again.",
        )
    } else {
        None
    }
}

fn browser_online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}

/// Its properties.
#[derive(Properties, PartialEq)]
pub struct OfflineNoticeProps {
    /// The bridge did not answer `/api/servers`.
    pub unreachable: bool,
}

/// The offline notice (`#offline-notice`, a status).
#[component]
pub fn OfflineNotice(props: &OfflineNoticeProps) -> Html {
    let online = use_state(browser_online);
    {
        let online = online.clone();
        use_effect_with((), move |_| {
            let listeners = web_sys::window().map(|w| {
                let on = online.clone();
                let off = online.clone();
                (
                    EventListener::new(&w, "online", move |_| on.set(true)),
                    EventListener::new(&w, "offline", move |_| off.set(false)),
                )
            });
            move || drop(listeners)
        });
    }
    match offline_text(*online, props.unreachable) {
        Some(text) => html! {
            <p class="banner warn offline" id="offline-notice" role="status">{ text }</p>
        },
        None => html! {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_names_the_cause() {
        assert_eq!(offline_text(true, false), None);
        assert!(offline_text(false, false).is_some_and(|t| t.starts_with("You are offline")));
        assert!(offline_text(false, true).is_some_and(|t| t.contains("network is back")));
        assert!(offline_text(true, true).is_some_and(|t| t.contains("bridge is down")));
    }
}
