//! One message: time, nick in its colour, text with links. Content is only
//! ever rendered as text nodes; links are `<a>` elements built here. The
//! time is the message's permalink (`#<channel>/<id>`); the row's element
//! id is `m-<id>`.

use std::rc::Rc;

use dumdum_protocol::ChatMessage;
use yew::prelude::*;

use super::{hue_style, local_offset_min, now_ms};
use crate::format::{Segment, format_full_time, format_time, iso_utc, split_links};
use crate::permalink::{permalink, row_id};

/// Properties of [`MessageRow`].
#[derive(Properties, PartialEq)]
pub struct MessageRowProps {
    /// The message (shared with the view state: no copy per render).
    pub message: Rc<ChatMessage>,
    /// Whether we wrote it.
    pub mine: bool,
    /// Whether it was just revealed (a permalink, a search result).
    #[prop_or_default]
    pub highlight: bool,
}

/// One message.
#[component]
pub fn MessageRow(props: &MessageRowProps) -> Html {
    let m = &props.message;
    let mention = use_context::<Rc<crate::notify::Matcher>>()
        .is_some_and(|x| x.mentions(&m.nick, &m.content));
    let ms = m.id.unix_millis();
    let now = now_ms();
    let offset = local_offset_min(ms);
    let short = format_time(ms, offset, now, local_offset_min(now));
    let full = format_full_time(ms, offset);
    let body: Html = split_links(&m.content)
        .into_iter()
        .map(|seg| match seg {
            Segment::Text(t) => html! { { t.to_owned() } },
            Segment::Link(url) => html! {
                <a href={url.to_owned()} target="_blank" rel="noopener noreferrer">{ url.to_owned() }</a>
            },
        })
        .collect();
    let link_name = format!("Link to {}'s message of {full}", m.nick);
    html! {
        <li
            id={row_id(m.id)}
            class={classes!("msg", props.mine.then_some("mine"), props.highlight.then_some("highlight"), mention.then_some("mention"))}
            data-id={m.id.0.to_string()}
            aria-current={props.highlight.then_some("true")}
        >
            <a class="msg-time" href={permalink(&m.channel, m.id)} aria-label={link_name} title={full}><time datetime={iso_utc(ms)}>{ short }</time></a>
            <span class="msg-nick" style={hue_style(&m.nick)}>{ m.nick.clone() }</span>
            <div class="msg-text">{ body }</div>
        </li>
    }
}
