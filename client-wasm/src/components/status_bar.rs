//! The connection status line: connecting, connected, link secured,
//! disconnected with the reason in words and a countdown.

use gloo_timers::callback::Interval;
use yew::prelude::*;

use super::{now_ms, use_chat_context};
use crate::format::format_wait;
use crate::hooks::Command;
use crate::problem::Problem;
use crate::state::{Link, Rejoin};

/// Properties of [`StatusBar`].
#[derive(Properties, PartialEq)]
pub struct StatusBarProps {
    /// Show the full explanation under the line (the connect screen has
    /// room for it; the chat header shows it as a tooltip).
    #[prop_or_default]
    pub detailed: bool,
}

/// The status line.
#[component]
pub fn StatusBar(props: &StatusBarProps) -> Html {
    let chat = use_chat_context();
    let state = &*chat.state;
    let tick = use_state(|| 0u32);
    let retry_at = match &state.link {
        Link::Disconnected { retry_at_ms, .. } => *retry_at_ms,
        _ => None,
    };
    // A countdown runs while a retry waits or the bridge drains.
    let countdown = retry_at.or(state.draining_until_ms);
    {
        let tick = tick.clone();
        use_effect_with(countdown, move |countdown| {
            let interval =
                countdown.map(|_| Interval::new(1000, move || tick.set((*tick).wrapping_add(1))));
            move || drop(interval)
        });
    }

    let retry_now = {
        let cmd = chat.cmd.clone();
        Callback::from(move |_: MouseEvent| cmd.emit(Command::RetryNow))
    };

    let (kind, text, detail): (&str, String, Option<String>) = match &state.link {
        Link::Idle => ("idle", "Not connected".into(), None),
        Link::Connecting if state.signed_in => ("connecting", "Reconnecting…".into(), None),
        Link::Connecting => ("connecting", "Connecting…".into(), None),
        Link::Connected { server } if state.ready && state.draining_until_ms.is_some() => {
            let left = state
                .draining_until_ms
                .unwrap_or_default()
                .saturating_sub(now_ms())
                .max(1);
            (
                "connected",
                format!(
                    "This server is restarting; moving you within {}",
                    format_wait(left)
                ),
                Some(format!(
                    "Connected to {server}. Its bridge is being taken out of service: the chat moves to another one without losing a message."
                )),
            )
        }
        Link::Connected { server } if state.ready => {
            let (prefix, how) = match state.rejoin {
                None => ("", None),
                Some(Rejoin::Moved) => (
                    "Moved to another server · ",
                    Some(
                        "The previous server was restarting or gone: signed in again here and caught up every channel."
                            .to_owned(),
                    ),
                ),
                Some(Rejoin::Reconnected) => (
                    "Reconnected · ",
                    Some(
                        "The session was not held any more: reconnected and caught up.".to_owned(),
                    ),
                ),
                Some(Rejoin::Resumed { replayed, resent }) => (
                    "Resumed · ",
                    Some(format!(
                        "Session resumed: {} frames replayed by the bridge, {resent} re-sent.",
                        replayed.map_or_else(|| "some".to_owned(), |n| n.to_string())
                    )),
                ),
            };
            match &state.security {
                Some(s) => (
                    "secured",
                    format!(
                        "{prefix}Connected to {server} · secured with {}",
                        s.tls_version
                    ),
                    Some(
                        [
                            how,
                            Some(format!(
                                "Certificate: {} · SHA-256 {}",
                                s.peer, s.fingerprint
                            )),
                        ]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" "),
                    ),
                ),
                None => ("connected", format!("{prefix}Connected to {server}"), how),
            }
        }
        Link::Connected { server } => match &state.security {
            Some(s) => (
                "connecting",
                format!("Joining {server} · secured with {}…", s.tls_version),
                None,
            ),
            None => ("connecting", format!("Joining {server}…"), None),
        },
        Link::Disconnected {
            problem: Problem::Busy,
            retry_at_ms: Some(at),
        } => (
            "disconnected",
            format!(
                "The server is busy; retrying in {}",
                format_wait(at.saturating_sub(now_ms()).max(1))
            ),
            Some(Problem::Busy.to_string()),
        ),
        Link::Disconnected {
            problem: Problem::ServiceRestart,
            retry_at_ms: Some(at),
        } if at.saturating_sub(now_ms()) < 1000 => (
            "connecting",
            "Moving to another server…".into(),
            Some(Problem::ServiceRestart.to_string()),
        ),
        Link::Disconnected {
            problem,
            retry_at_ms,
        } => {
            let next = match retry_at_ms {
                Some(at) => format!(
                    " Reconnecting in {}.",
                    format_wait(at.saturating_sub(now_ms()).max(1))
                ),
                None => String::new(),
            };
            (
                "disconnected",
                format!("Disconnected: {}.{next}", problem.short()),
                Some(problem.to_string()),
            )
        }
        Link::Offline => (
            "disconnected",
            "Disconnected: you are offline. Reconnecting when the network is back.".into(),
            None,
        ),
    };
    let secured_peer = match (&state.link, &state.security) {
        (Link::Connected { .. }, Some(s)) if state.ready => Some(s.peer.clone()),
        _ => None,
    };

    html! {
        <>
        <div id="status" class={classes!("status", format!("status-{kind}"))} role="status" aria-live="polite" title={detail.clone()}>
            <span class="status-dot" aria-hidden="true"></span>
            <span class="status-text">{ text }</span>
            if let Some(peer) = secured_peer {
                <span class="status-peer">{ peer }</span>
            }
            if retry_at.is_some() {
                <button type="button" class="link-button" onclick={retry_now}>{ "Retry now" }</button>
            }
        </div>
        if props.detailed && kind == "disconnected" {
            if let Some(d) = detail {
                <p class="status-detail" id="status-detail">{ d }</p>
            }
        }
        </>
    }
}
