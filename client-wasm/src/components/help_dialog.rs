//! The keyboard shortcuts, in a modal dialog (`?` opens it; Esc or Close
//! closes it and the focus goes back where it was).

use web_sys::{HtmlElement, KeyboardEvent};
use yew::prelude::*;

/// The shortcuts the page has, as (keys, what they do). Each key is shown
/// in its own `<kbd>`; alternatives are separate entries of the first list.
pub const SHORTCUTS: &[(&[&str], &str)] = &[
    (&["Ctrl+F", "/"], "Search in the channel"),
    (
        &["Enter"],
        "In the search box: go to the results (or search older when nothing loaded matches)",
    ),
    (&["↓"], "In the search box: go to the results"),
    (&["Esc"], "Close the search or this help"),
    (&["Alt+↑"], "Previous channel"),
    (&["Alt+↓"], "Next channel"),
    (&["Enter"], "In the message box: send"),
    (&["Shift+Enter"], "In the message box: new line"),
    (&["?"], "Show these shortcuts"),
];

/// Properties of [`HelpDialog`].
#[derive(Properties, PartialEq)]
pub struct HelpDialogProps {
    /// Closes the dialog.
    pub on_close: Callback<()>,
}

/// The keyboard shortcuts dialog.
#[component]
pub fn HelpDialog(props: &HelpDialogProps) -> Html {
    let close_ref = use_node_ref();
    {
        let close_ref = close_ref.clone();
        use_effect_with((), move |_| {
            if let Some(el) = close_ref.cast::<HtmlElement>() {
                let _ = el.focus();
            }
        });
    }
    let close = {
        let on_close = props.on_close.clone();
        Callback::from(move |_: MouseEvent| on_close.emit(()))
    };
    // The Close button is the only control: Tab stays on it.
    let onkeydown = {
        let close_ref = close_ref.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Tab" {
                e.prevent_default();
                if let Some(el) = close_ref.cast::<HtmlElement>() {
                    let _ = el.focus();
                }
            }
        })
    };
    let rows = SHORTCUTS.iter().map(|(keys, what)| {
        let keys = keys.iter().enumerate().map(|(i, k)| {
            html! {
                <>
                    if i > 0 { <span class="muted">{ " or " }</span> }
                    <kbd>{ *k }</kbd>
                </>
            }
        });
        html! {
            <div class="shortcut">
                <dt>{ for keys }</dt>
                <dd>{ *what }</dd>
            </div>
        }
    });
    html! {
        <div class="help-layer">
            <div class="help-backdrop" onclick={close.clone()} aria-hidden="true"></div>
            <div class="help-dialog" role="dialog" aria-modal="true" aria-labelledby="help-title" {onkeydown}>
                <h2 id="help-title">{ "Keyboard shortcuts" }</h2>
                <dl class="shortcuts">{ for rows }</dl>
                <div class="help-actions">
                    <button type="button" class="primary help-close" ref={close_ref} onclick={close}>{ "Close" }</button>
                </div>
            </div>
        </div>
    }
}
