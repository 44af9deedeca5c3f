//! The page's view state and its reducer. Pure: every protocol event the
//! engine sees becomes an [`Action`]; tested natively.

use std::rc::Rc;

use dumdum_protocol::{ChatMessage, Snowflake};
use yew::Reducible;

pub use crate::messages::{Merged, Messages};
use crate::problem::Problem;

/// Messages kept per channel in memory (the reference server keeps 1000):
/// past this, live traffic drops the oldest. Pages the user asks for with
/// "load older" are always kept: they raise the channel's limit. The
/// message list renders only the rows near the viewport and the store
/// copies one chunk per broadcast, so a full channel costs about what a
/// short one does.
pub const MAX_KEPT: usize = 20_000;

/// An entry of the bridge's `/api/servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The name to ask the bridge for.
    pub name: String,
    /// Whether the bridge reaches it over TLS.
    pub tls: bool,
    /// The bridge's default.
    pub default: bool,
}

/// The server list's loading state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Servers {
    /// Not fetched yet.
    #[default]
    Loading,
    /// Fetched.
    Loaded(Vec<ServerInfo>),
    /// Could not be fetched: the bridge's default server is used.
    Failed(String),
    /// The bridge did not answer at all (offline, or the bridge is down):
    /// the page itself came from the service worker's saved copy.
    Unreachable(String),
}

/// What the bridge reported about the TLS link to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// For example "TLSv1.3".
    pub tls_version: String,
    /// Certificate subject.
    pub peer: String,
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
}

/// The state of the link to the chat server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Link {
    /// Nothing attempted yet (or signed out).
    #[default]
    Idle,
    /// Opening the WebSocket or waiting for the server.
    Connecting,
    /// The bridge is connected to the server.
    Connected {
        /// The server's name.
        server: String,
    },
    /// The connection ended.
    Disconnected {
        /// Why.
        problem: Problem,
        /// When the next attempt starts (ms since the epoch), if one is planned.
        retry_at_ms: Option<u64>,
    },
    /// The browser is offline: waiting for it to come back.
    Offline,
}

/// How the current connection came back after the previous one ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejoin {
    /// The bridge resumed the session: nothing was repeated upstream.
    Resumed {
        /// Server frames the bridge replayed (once its notice arrived).
        replayed: Option<u64>,
        /// Our frames sent again.
        resent: u64,
    },
    /// A fresh session: HELLO, AUTHENTICATE and a catch-up.
    Reconnected,
    /// A fresh session on another bridge, because the one that held the
    /// session was taken out of service or is gone: signed in again with
    /// the same nick, every channel caught up.
    Moved,
}

/// History paging state of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Older {
    /// Nothing asked yet.
    #[default]
    NotLoaded,
    /// A page is on its way.
    Loading,
    /// The server may hold older messages.
    More,
    /// Everything the server keeps is here.
    Complete,
}

/// One channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The name.
    pub name: String,
    /// Messages, oldest first, unique by id. Each message is shared: a
    /// new view state (Yew's reducer clones the state on every dispatch)
    /// copies pointers, never the text, and at most one chunk of them.
    pub messages: Messages,
    /// Messages that arrived while another channel was shown.
    pub unread: u32,
    /// Of those, the ones that mention us (see [`crate::notify::Matcher`]).
    pub mentions: u32,
    /// Paging back.
    pub older: Older,
    /// Messages kept at most: [`MAX_KEPT`], raised by the older pages the
    /// user asked for.
    pub limit: usize,
}

impl Channel {
    fn new(name: String) -> Self {
        Channel {
            name,
            messages: Messages::default(),
            unread: 0,
            mentions: 0,
            older: Older::NotLoaded,
            limit: MAX_KEPT,
        }
    }

    /// Merges `page`, keeping at most [`Channel::limit`] messages (the
    /// oldest go): the server holds older messages again when some went.
    fn merge(&mut self, page: Vec<ChatMessage>) -> Merged {
        let merged = self.messages.merge(page, self.limit);
        if merged.dropped > 0 && self.older == Older::Complete {
            self.older = Older::More;
        }
        merged
    }

    /// The oldest id held.
    pub fn oldest(&self) -> Option<Snowflake> {
        self.messages.first().map(|m| m.id)
    }
}

/// Merges `page` into `messages`: sorted by id, each id once, at most
/// `limit` (the oldest go).
pub fn merge_messages(
    messages: &mut Vec<Rc<ChatMessage>>,
    page: Vec<ChatMessage>,
    limit: usize,
) -> Merged {
    let before = messages.len();
    let appends_only = match (messages.last(), page.first()) {
        (Some(last), Some(first)) => {
            first.id > last.id && page.windows(2).all(|w| w[0].id < w[1].id)
        }
        (None, _) => page.windows(2).all(|w| w[0].id < w[1].id),
        (_, None) => true,
    };
    messages.extend(page.into_iter().map(Rc::new));
    if !appends_only {
        messages.sort_by_key(|m| m.id);
        messages.dedup_by_key(|m| m.id);
    }
    let added = messages.len().saturating_sub(before);
    let dropped = messages.len().saturating_sub(limit);
    messages.drain(..dropped);
    Merged { added, dropped }
}

/// Where a "search older" stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchStatus {
    /// Older pages are being fetched and searched.
    Running,
    /// A page brought this many matches: paging stopped.
    Found(usize),
    /// The server holds nothing older, and nothing older matched.
    StartReached,
    /// [`crate::search::PAGES_PER_RUN`] pages without a match: paused, can
    /// go on.
    Paused,
    /// The user stopped it (or closed the search).
    Stopped,
    /// The connection ended while searching.
    Interrupted,
}

/// A "search older" of one channel for one term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OlderSearch {
    /// The channel searched.
    pub channel: String,
    /// The term, as typed.
    pub query: String,
    /// How it stands.
    pub status: SearchStatus,
    /// Older pages fetched by this search so far.
    pub pages: u32,
}

/// What a history page was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryKind {
    /// The newest page of a channel.
    Newest {
        /// The server may hold older messages.
        more: bool,
    },
    /// A page further back.
    Older {
        /// The server may hold even older messages.
        more: bool,
    },
    /// Catching up after a reconnect.
    CatchUp,
}

/// Everything that changes the view state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `/api/servers` answered.
    ServersLoaded(Vec<ServerInfo>),
    /// `/api/servers` failed.
    ServersFailed(String),
    /// `/api/servers` got no answer (network error).
    ServersUnreachable(String),
    /// A connection attempt starts.
    Connecting,
    /// The bridge reached the server.
    UpstreamConnected {
        /// Its name.
        server: String,
    },
    /// The bridge upgraded its link to the server to TLS.
    Secured(Security),
    /// A nick was asked for.
    Authenticating {
        /// The nick.
        nick: String,
    },
    /// The nick is held by someone else.
    NickTaken {
        /// The nick.
        nick: String,
    },
    /// Our nick from before is still in use after a few reconnects: most
    /// likely by this session in another tab (a duplicated tab), or by
    /// someone else. Ask for another on the same connection.
    NickInUseElsewhere {
        /// The nick.
        nick: String,
    },
    /// The nick was accepted.
    Authenticated {
        /// Our nick.
        nick: String,
    },
    /// After a page reload: the session kept in this tab is being resumed.
    Restored {
        /// Our nick.
        nick: String,
        /// The channel shown before the reload.
        active: Option<String>,
    },
    /// The bridge resumed the session: same nick, same channels.
    Resumed {
        /// The server's name.
        server: String,
        /// Our nick, when authenticated.
        nick: Option<String>,
        /// Our frames sent again.
        resent: u64,
    },
    /// The session moved to another bridge (after 1012, a proactive move
    /// or Again from another node): comes right after its
    /// [`Action::Authenticated`].
    Moved,
    /// The bridge is being taken out of service: the session moves before
    /// `until_ms` (ms since the epoch).
    Draining {
        /// The bridge's deadline.
        until_ms: u64,
    },
    /// The bridge replayed this many frames after a resume.
    Replayed {
        /// How many.
        frames: u64,
    },
    /// The channel list, and which channel to show.
    Channels {
        /// Names, in the server's order.
        names: Vec<String>,
        /// The channel shown.
        active: Option<String>,
    },
    /// Show a channel.
    Select(String),
    /// A broadcast message.
    Message(ChatMessage),
    /// A history page.
    History {
        /// The channel.
        channel: String,
        /// Oldest first.
        messages: Vec<ChatMessage>,
        /// What it was for.
        kind: HistoryKind,
    },
    /// An older page was asked for.
    LoadingOlder {
        /// The channel.
        channel: String,
    },
    /// The connection ended.
    Disconnected {
        /// Why.
        problem: Problem,
        /// When the next attempt starts.
        retry_at_ms: Option<u64>,
    },
    /// The browser went offline.
    Offline,
    /// The user signed out: back to the connect screen.
    SignedOut,
    /// Several actions of one engine step, applied in order: one new state
    /// and one render instead of one per action.
    Batch(Vec<Action>),
    /// Scroll to and highlight a message (a permalink, a search result,
    /// "jump to first unread"), fetching older pages until it is loaded.
    Reveal {
        /// Its channel.
        channel: String,
        /// The message.
        id: Snowflake,
    },
    /// "Search older": how the search back through a channel's history
    /// stands (see [`crate::engine::Engine::search_older`]).
    OlderSearch(OlderSearch),
    /// The highlight words changed (settings): they count as mentions.
    Highlights(Vec<String>),
}

/// A message to scroll to and highlight: the message list fetches older
/// pages until it is loaded or the start of the history is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reveal {
    /// Its channel.
    pub channel: String,
    /// The message.
    pub id: Snowflake,
    /// Counts the requests: asking again for the same message reveals
    /// it again.
    pub seq: u64,
}

impl Action {
    /// One action for `actions` (`None` when there are none): the action
    /// itself when alone, else a [`Action::Batch`].
    pub fn batch(mut actions: Vec<Action>) -> Option<Action> {
        match actions.len() {
            0 => None,
            1 => actions.pop(),
            _ => Some(Action::Batch(actions)),
        }
    }
}

/// The page's state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatState {
    /// The bridge's servers.
    pub servers: Servers,
    /// A connection was asked for from the connect screen.
    pub joining: bool,
    /// The chat screen is shown (authenticated once, not signed out).
    pub signed_in: bool,
    /// Our nick, once accepted.
    pub nick: Option<String>,
    /// A nick asked for and not yet answered.
    pub pending_nick: Option<String>,
    /// The server refused this nick: ask for another.
    pub nick_taken: Option<String>,
    /// The refused nick was ours before a reconnect: held elsewhere,
    /// perhaps in another tab.
    pub nick_elsewhere: bool,
    /// Authenticated on the current connection.
    pub ready: bool,
    /// The link.
    pub link: Link,
    /// TLS details, when the bridge reported them for this connection.
    pub security: Option<Security>,
    /// The channels, in the server's order.
    pub channels: Vec<Channel>,
    /// The channel shown.
    pub active: Option<String>,
    /// How the current connection came back, if it is not the first.
    pub rejoin: Option<Rejoin>,
    /// The bridge of this connection is draining: the session moves to
    /// another by then (ms since the epoch).
    pub draining_until_ms: Option<u64>,
    /// The last message asked to be revealed.
    pub reveal: Option<Reveal>,
    /// The latest "search older", if any.
    pub older_search: Option<OlderSearch>,
    /// Highlight words: with our nick, what counts as a mention.
    pub highlights: Vec<String>,
}

impl ChatState {
    /// The channel named `name`.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    fn channel_mut(&mut self, name: &str) -> &mut Channel {
        let i = match self.channels.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                self.channels.push(Channel::new(name.to_owned()));
                self.channels.len() - 1
            }
        };
        &mut self.channels[i]
    }

    /// The shown channel.
    pub fn active_channel(&self) -> Option<&Channel> {
        self.active.as_deref().and_then(|n| self.channel(n))
    }

    /// Whether the connect screen must be shown.
    pub fn needs_nick(&self) -> bool {
        !self.signed_in || self.nick_taken.is_some()
    }

    /// The channel `step` places away from the shown one (wrapping), for
    /// Alt+Up/Down.
    pub fn neighbour(&self, step: isize) -> Option<String> {
        let n = self.channels.len();
        if n == 0 {
            return None;
        }
        let current = self
            .active
            .as_deref()
            .and_then(|a| self.channels.iter().position(|c| c.name == a))
            .unwrap_or(0);
        let next = (current as isize + step).rem_euclid(n as isize) as usize;
        Some(self.channels[next].name.clone())
    }

    /// Why sending is impossible right now, in words, or `None`.
    pub fn send_blocked(&self) -> Option<String> {
        if self.ready {
            return if self.active.is_none() {
                Some("Pick a channel first.".into())
            } else {
                None
            };
        }
        Some(match &self.link {
            Link::Offline => {
                "You are offline. Your text is kept; it can be sent once the connection is back."
                    .into()
            }
            Link::Disconnected { problem, .. } => {
                format!("Not connected: {problem} Your text is kept.")
            }
            _ => "Connecting… Your text is kept.".into(),
        })
    }

    /// Applies one action.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::ServersLoaded(list) => self.servers = Servers::Loaded(list),
            Action::ServersFailed(e) => self.servers = Servers::Failed(e),
            Action::ServersUnreachable(e) => self.servers = Servers::Unreachable(e),
            Action::Connecting => {
                self.link = Link::Connecting;
                self.security = None;
                self.ready = false;
                self.draining_until_ms = None;
            }
            Action::Moved => self.rejoin = Some(Rejoin::Moved),
            Action::Draining { until_ms } => self.draining_until_ms = Some(until_ms),
            Action::UpstreamConnected { server } => self.link = Link::Connected { server },
            Action::Secured(s) => self.security = Some(s),
            Action::Authenticating { nick } => {
                self.joining = true;
                self.pending_nick = Some(nick);
            }
            Action::NickTaken { nick } => {
                self.pending_nick = None;
                self.nick_taken = Some(nick);
                self.nick_elsewhere = false;
                self.joining = false;
            }
            Action::NickInUseElsewhere { nick } => {
                self.pending_nick = None;
                self.nick_taken = Some(nick);
                self.nick_elsewhere = true;
                self.joining = false;
            }
            Action::Authenticated { nick } => {
                if self.signed_in {
                    self.rejoin = Some(Rejoin::Reconnected);
                }
                self.nick = Some(nick);
                self.pending_nick = None;
                self.nick_taken = None;
                self.nick_elsewhere = false;
                self.signed_in = true;
                self.joining = false;
                self.ready = true;
            }
            Action::Restored { nick, active } => {
                self.nick = Some(nick);
                self.signed_in = true;
                if let Some(a) = active {
                    self.select(&a);
                }
            }
            Action::Resumed {
                server,
                nick,
                resent,
            } => {
                self.rejoin = Some(Rejoin::Resumed {
                    replayed: None,
                    resent,
                });
                self.link = Link::Connected { server };
                if let Some(nick) = nick {
                    self.nick = Some(nick);
                    self.signed_in = true;
                    self.ready = true;
                    self.joining = false;
                    self.pending_nick = None;
                    self.nick_taken = None;
                    self.nick_elsewhere = false;
                }
            }
            Action::Replayed { frames } => {
                if let Some(Rejoin::Resumed { replayed, .. }) = &mut self.rejoin {
                    *replayed = Some(frames);
                }
            }
            Action::Channels { names, active } => {
                let mut kept: Vec<Channel> = Vec::with_capacity(names.len());
                for name in names {
                    let ch = match self.channels.iter().position(|c| c.name == name) {
                        Some(i) => self.channels[i].clone(),
                        None => Channel::new(name),
                    };
                    kept.push(ch);
                }
                self.channels = kept;
                if let Some(a) = active {
                    self.select(&a);
                }
            }
            Action::Select(name) => self.select(&name),
            Action::Message(m) => {
                let shown = self.active.as_deref() == Some(m.channel.as_str());
                let mention = !shown && self.matcher().mentions(&m.nick, &m.content);
                let ch = self.channel_mut(&m.channel);
                let added = ch.merge(vec![m]).added;
                if !shown && added > 0 {
                    ch.unread = ch.unread.saturating_add(1);
                    if mention {
                        ch.mentions = ch.mentions.saturating_add(1);
                    }
                }
            }
            Action::Highlights(words) => self.highlights = words,
            Action::History {
                channel,
                messages,
                kind,
            } => {
                let ch = self.channel_mut(&channel);
                match kind {
                    HistoryKind::Newest { more } => {
                        ch.older = if more { Older::More } else { Older::Complete };
                    }
                    HistoryKind::Older { more } => {
                        ch.older = if more { Older::More } else { Older::Complete };
                        // The user asked for these: keep them all.
                        ch.limit = ch.limit.max(ch.messages.len() + messages.len());
                    }
                    HistoryKind::CatchUp => {
                        if ch.older == Older::NotLoaded {
                            ch.older = Older::More;
                        }
                    }
                }
                ch.merge(messages);
            }
            Action::LoadingOlder { channel } => self.channel_mut(&channel).older = Older::Loading,
            Action::Disconnected {
                problem,
                retry_at_ms,
            } => {
                self.ready = false;
                self.draining_until_ms = None;
                self.joining = self.joining && retry_at_ms.is_some();
                self.pending_nick = None;
                self.security = None;
                for ch in &mut self.channels {
                    if ch.older == Older::Loading {
                        ch.older = Older::More;
                    }
                }
                self.link = Link::Disconnected {
                    problem,
                    retry_at_ms,
                };
            }
            Action::Offline => {
                self.ready = false;
                self.draining_until_ms = None;
                self.security = None;
                self.link = Link::Offline;
            }
            Action::SignedOut => {
                let servers = std::mem::take(&mut self.servers);
                let highlights = std::mem::take(&mut self.highlights);
                *self = ChatState {
                    servers,
                    highlights,
                    ..ChatState::default()
                };
            }
            Action::OlderSearch(search) => self.older_search = Some(search),
            Action::Batch(actions) => {
                for a in actions {
                    self.apply(a);
                }
            }
            Action::Reveal { channel, id } => {
                let seq = self.reveal.as_ref().map_or(0, |r| r.seq) + 1;
                self.reveal = Some(Reveal { channel, id, seq });
            }
        }
    }

    fn select(&mut self, name: &str) {
        self.active = Some(name.to_owned());
        let ch = self.channel_mut(name);
        ch.unread = 0;
        ch.mentions = 0;
    }

    /// What counts as a mention now: our nick and the highlight words.
    pub fn matcher(&self) -> crate::notify::Matcher {
        crate::notify::Matcher {
            nick: self.nick.clone(),
            words: self.highlights.clone(),
        }
    }

    /// Unseen mentions in every channel.
    pub fn total_mentions(&self) -> u32 {
        self.channels
            .iter()
            .fold(0u32, |n, c| n.saturating_add(c.mentions))
    }
}

impl Reducible for ChatState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = Rc::unwrap_or_clone(self);
        next.apply(action);
        Rc::new(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64, channel: &str, nick: &str) -> ChatMessage {
        ChatMessage {
            id: Snowflake(id),
            channel: channel.into(),
            nick: nick.into(),
            content: format!("m{id}"),
        }
    }

    fn ids(ch: &Channel) -> Vec<u64> {
        ch.messages.iter().map(|m| m.id.0).collect()
    }

    fn joined() -> ChatState {
        let mut s = ChatState::default();
        s.apply(Action::Connecting);
        s.apply(Action::Authenticating { nick: "me".into() });
        s.apply(Action::Authenticated { nick: "me".into() });
        s.apply(Action::Channels {
            names: vec!["general".into(), "random".into()],
            active: Some("general".into()),
        });
        s
    }

    #[test]
    fn merge_keeps_order_and_uniqueness() {
        let merged = |added, dropped| Merged { added, dropped };
        let mut v: Vec<Rc<ChatMessage>> =
            vec![Rc::new(msg(2, "c", "a")), Rc::new(msg(4, "c", "a"))];
        assert_eq!(
            merge_messages(&mut v, vec![msg(5, "c", "a")], MAX_KEPT),
            merged(1, 0)
        );
        assert_eq!(
            merge_messages(
                &mut v,
                vec![msg(1, "c", "a"), msg(2, "c", "a"), msg(3, "c", "a")],
                MAX_KEPT
            ),
            merged(2, 0)
        );
        assert_eq!(
            merge_messages(&mut v, vec![msg(4, "c", "a")], MAX_KEPT),
            merged(0, 0)
        );
        assert_eq!(
            v.iter().map(|m| m.id.0).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let mut big: Vec<Rc<ChatMessage>> = (0..MAX_KEPT as u64)
            .map(|i| Rc::new(msg(i, "c", "a")))
            .collect();
        assert_eq!(
            merge_messages(&mut big, vec![msg(MAX_KEPT as u64, "c", "a")], MAX_KEPT),
            merged(1, 1)
        );
        assert_eq!(big.len(), MAX_KEPT);
        assert_eq!(big[0].id.0, 1);
    }

    /// `general` holding the newest `MAX_KEPT` of a longer history.
    fn full_general() -> ChatState {
        let mut s = joined();
        let newest = 1_001..=1_000 + MAX_KEPT as u64;
        s.apply(Action::History {
            channel: "general".into(),
            messages: newest.map(|i| msg(i, "general", "x")).collect(),
            kind: HistoryKind::Newest { more: true },
        });
        s
    }

    #[test]
    fn an_older_page_is_shown_even_when_the_channel_is_full() {
        let mut s = full_general();
        s.apply(Action::LoadingOlder {
            channel: "general".into(),
        });
        s.apply(Action::History {
            channel: "general".into(),
            messages: (901..=1_000).map(|i| msg(i, "general", "x")).collect(),
            kind: HistoryKind::Older { more: true },
        });
        let g = s.channel("general").cloned().unwrap();
        assert_eq!(
            g.oldest(),
            Some(Snowflake(901)),
            "the page asked for is there"
        );
        assert_eq!(g.messages.len(), MAX_KEPT + 100, "and nothing newer went");
        assert_eq!(
            g.messages.last().map(|m| m.id.0),
            Some(1_000 + MAX_KEPT as u64)
        );
        assert_eq!(g.older, Older::More);
        // Another page back: kept too.
        s.apply(Action::History {
            channel: "general".into(),
            messages: (801..=900).map(|i| msg(i, "general", "x")).collect(),
            kind: HistoryKind::Older { more: false },
        });
        let g = s.channel("general").cloned().unwrap();
        assert_eq!(g.oldest(), Some(Snowflake(801)));
        assert_eq!(g.older, Older::Complete);
        assert_eq!(ids(&g), (801..=1_000 + MAX_KEPT as u64).collect::<Vec<_>>());
    }

    #[test]
    fn live_traffic_past_the_limit_drops_the_oldest_and_offers_them_again() {
        let mut s = joined();
        s.apply(Action::History {
            channel: "general".into(),
            messages: (1..=MAX_KEPT as u64)
                .map(|i| msg(i, "general", "x"))
                .collect(),
            kind: HistoryKind::Newest { more: false },
        });
        assert_eq!(s.channel("general").map(|c| c.older), Some(Older::Complete));
        s.apply(Action::Message(msg(MAX_KEPT as u64 + 1, "general", "y")));
        let g = s.channel("general").cloned().unwrap();
        assert_eq!(g.messages.len(), MAX_KEPT);
        assert_eq!(g.oldest(), Some(Snowflake(2)));
        assert_eq!(g.older, Older::More, "message 1 can be loaded again");
    }

    #[test]
    fn sign_in_flow() {
        let mut s = ChatState::default();
        assert!(s.needs_nick());
        s.apply(Action::Connecting);
        assert_eq!(s.link, Link::Connecting);
        s.apply(Action::Authenticating { nick: "bob".into() });
        assert!(s.joining);
        s.apply(Action::NickTaken { nick: "bob".into() });
        assert_eq!(s.nick_taken.as_deref(), Some("bob"));
        assert!(s.needs_nick() && !s.joining);
        s.apply(Action::Authenticating {
            nick: "bob2".into(),
        });
        s.apply(Action::Authenticated {
            nick: "bob2".into(),
        });
        assert!(!s.needs_nick() && s.ready);
        assert_eq!(s.nick.as_deref(), Some("bob2"));
        assert_eq!(s.nick_taken, None);
        assert_eq!(s.send_blocked().as_deref(), Some("Pick a channel first."));
    }

    #[test]
    fn unread_counts_only_hidden_channels() {
        let mut s = joined();
        s.apply(Action::Message(msg(1, "general", "x")));
        s.apply(Action::Message(msg(2, "random", "x")));
        s.apply(Action::Message(msg(3, "random", "x")));
        // The same message twice (history and broadcast) counts once.
        s.apply(Action::Message(msg(3, "random", "x")));
        assert_eq!(s.channel("general").map(|c| c.unread), Some(0));
        assert_eq!(s.channel("random").map(|c| c.unread), Some(2));
        s.apply(Action::Select("random".into()));
        assert_eq!(s.channel("random").map(|c| c.unread), Some(0));
        assert_eq!(s.active.as_deref(), Some("random"));
    }

    fn said(id: u64, channel: &str, nick: &str, content: &str) -> ChatMessage {
        ChatMessage {
            content: content.into(),
            ..msg(id, channel, nick)
        }
    }

    #[test]
    fn mentions_are_counted_apart_from_unread_and_cleared_on_view() {
        let mut s = joined();
        s.apply(Action::Highlights(vec!["deploy".into()]));
        s.apply(Action::Message(said(1, "random", "x", "hello all")));
        s.apply(Action::Message(said(2, "random", "x", "ME: look")));
        s.apply(Action::Message(said(3, "random", "x", "deploy at 5")));
        s.apply(Action::Message(said(4, "random", "x", "memes")));
        // The same message again (a catch-up overlap) counts once.
        s.apply(Action::Message(said(3, "random", "x", "deploy at 5")));
        // Our own message naming us is not a mention.
        s.apply(Action::Message(said(5, "random", "me", "me again")));
        // In the channel shown: neither unread nor a mention.
        s.apply(Action::Message(said(6, "general", "x", "hi me")));
        let r = s.channel("random").cloned().unwrap();
        assert_eq!((r.unread, r.mentions), (5, 2));
        assert_eq!(s.channel("general").map(|c| c.mentions), Some(0));
        assert_eq!(s.total_mentions(), 2);
        // History pages are never counted.
        s.apply(Action::History {
            channel: "random".into(),
            messages: vec![said(0, "random", "x", "me, before")],
            kind: HistoryKind::CatchUp,
        });
        assert_eq!(s.total_mentions(), 2);
        s.apply(Action::Select("random".into()));
        assert_eq!(s.total_mentions(), 0);
        assert_eq!(s.channel("random").map(|c| c.unread), Some(0));
        // Highlight words are kept across a sign-out.
        s.apply(Action::SignedOut);
        assert_eq!(s.highlights, ["deploy"]);
    }

    #[test]
    fn own_message_appears_once_on_echo() {
        let mut s = joined();
        s.apply(Action::Message(msg(10, "general", "me")));
        s.apply(Action::History {
            channel: "general".into(),
            messages: vec![msg(9, "general", "x"), msg(10, "general", "me")],
            kind: HistoryKind::CatchUp,
        });
        assert_eq!(s.channel("general").map(ids), Some(vec![9, 10]));
    }

    #[test]
    fn history_paging_state() {
        let mut s = joined();
        let page: Vec<ChatMessage> = (101..=200).map(|i| msg(i, "general", "x")).collect();
        s.apply(Action::History {
            channel: "general".into(),
            messages: page,
            kind: HistoryKind::Newest { more: true },
        });
        let g = s.channel("general").cloned().unwrap();
        assert_eq!(g.older, Older::More);
        assert_eq!(g.oldest(), Some(Snowflake(101)));
        s.apply(Action::LoadingOlder {
            channel: "general".into(),
        });
        assert_eq!(s.channel("general").map(|c| c.older), Some(Older::Loading));
        s.apply(Action::History {
            channel: "general".into(),
            messages: (50..=100).map(|i| msg(i, "general", "x")).collect(),
            kind: HistoryKind::Older { more: false },
        });
        let g = s.channel("general").cloned().unwrap();
        assert_eq!(g.older, Older::Complete);
        assert_eq!(ids(&g), (50..=200).collect::<Vec<_>>());
    }

    #[test]
    fn disconnect_keeps_messages_and_blocks_sending_with_a_reason() {
        let mut s = joined();
        s.apply(Action::Message(msg(1, "general", "x")));
        s.apply(Action::LoadingOlder {
            channel: "general".into(),
        });
        s.apply(Action::Disconnected {
            problem: Problem::ConnectionLost,
            retry_at_ms: Some(5_000),
        });
        assert!(!s.ready && s.signed_in && !s.needs_nick());
        assert_eq!(s.channel("general").map(|c| c.messages.len()), Some(1));
        assert_eq!(s.channel("general").map(|c| c.older), Some(Older::More));
        assert_eq!(
            s.send_blocked().as_deref(),
            Some("Not connected: Connection lost. Your text is kept.")
        );
        s.apply(Action::Offline);
        assert!(s.send_blocked().is_some_and(|r| r.contains("offline")));
        // Reconnected: channels kept, with their messages.
        s.apply(Action::Connecting);
        s.apply(Action::Authenticated { nick: "me".into() });
        s.apply(Action::Channels {
            names: vec!["general".into(), "random".into()],
            active: Some("general".into()),
        });
        assert_eq!(s.channel("general").map(|c| c.messages.len()), Some(1));
        assert_eq!(s.send_blocked(), None);
    }

    #[test]
    fn keyboard_neighbours_wrap() {
        let mut s = joined();
        assert_eq!(s.neighbour(1).as_deref(), Some("random"));
        assert_eq!(s.neighbour(-1).as_deref(), Some("random"));
        s.apply(Action::Select("random".into()));
        assert_eq!(s.neighbour(1).as_deref(), Some("general"));
        assert_eq!(ChatState::default().neighbour(1), None);
    }

    #[test]
    fn signing_out_keeps_only_the_server_list() {
        let mut s = joined();
        s.apply(Action::ServersLoaded(vec![ServerInfo {
            name: "local".into(),
            tls: false,
            default: true,
        }]));
        s.apply(Action::SignedOut);
        assert!(s.needs_nick());
        assert!(s.channels.is_empty());
        assert!(matches!(s.servers, Servers::Loaded(ref l) if l.len() == 1));
    }

    #[test]
    fn server_list_json_parses() {
        let list = ServerInfo::list_from_json(
            r#"[{"name":"local","tls":false,"default":true},{"name":"x"}]"#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].default && !list[1].tls);
    }

    #[test]
    fn reload_resume_and_reconnect_show_how_the_link_came_back() {
        // A reload: the page knows the nick and the channel, nothing else.
        let mut s = ChatState::default();
        s.apply(Action::Restored {
            nick: "me".into(),
            active: Some("random".into()),
        });
        assert!(!s.needs_nick(), "the chat screen, not the connect screen");
        assert_eq!(s.active.as_deref(), Some("random"));
        s.apply(Action::Connecting);
        assert!(!s.ready);
        s.apply(Action::Resumed {
            server: "local".into(),
            nick: Some("me".into()),
            resent: 1,
        });
        assert!(s.ready);
        assert_eq!(
            s.link,
            Link::Connected {
                server: "local".into()
            }
        );
        s.apply(Action::Replayed { frames: 3 });
        assert_eq!(
            s.rejoin,
            Some(Rejoin::Resumed {
                replayed: Some(3),
                resent: 1
            })
        );
        // Later a fresh session: "reconnected".
        s.apply(Action::Connecting);
        s.apply(Action::Authenticated { nick: "me".into() });
        assert_eq!(s.rejoin, Some(Rejoin::Reconnected));
        // The first sign-in is neither.
        assert_eq!(joined().rejoin, None);
    }

    #[test]
    fn a_draining_bridge_and_a_move_show_in_the_state() {
        let mut s = joined();
        s.apply(Action::Draining { until_ms: 30_000 });
        assert_eq!(s.draining_until_ms, Some(30_000));
        assert!(s.ready, "the session goes on while the bridge drains");
        s.apply(Action::Disconnected {
            problem: Problem::ServiceRestart,
            retry_at_ms: Some(1),
        });
        assert_eq!(s.draining_until_ms, None);
        s.apply(Action::Connecting);
        s.apply(Action::Authenticated { nick: "me".into() });
        s.apply(Action::Moved);
        assert_eq!(s.rejoin, Some(Rejoin::Moved));
        assert!(s.ready && !s.needs_nick());
        // A later plain reconnect says so instead.
        s.apply(Action::Connecting);
        s.apply(Action::Authenticated { nick: "me".into() });
        assert_eq!(s.rejoin, Some(Rejoin::Reconnected));
    }

    fn general_with(n: u64) -> ChatState {
        let mut s = joined();
        s.apply(Action::History {
            channel: "general".into(),
            messages: (1..=n).map(|i| msg(i, "general", "x")).collect(),
            kind: HistoryKind::Newest { more: false },
        });
        s
    }

    #[test]
    fn a_new_state_shares_the_messages_of_the_old_one() {
        // Yew's reducer always gets a shared `Rc` (it keeps the old state),
        // so the state is cloned on every dispatch: the messages must be
        // shared, not copied.
        let old = Rc::new(general_with(1_000));
        let new = old
            .clone()
            .reduce(Action::Message(msg(1_001, "general", "y")));
        let (before, after) = match (old.channel("general"), new.channel("general")) {
            (Some(b), Some(a)) => (b.messages.clone(), a.messages.clone()),
            other => panic!("no channel: {other:?}"),
        };
        assert_eq!(before.len(), 1_000, "the old state is unchanged");
        assert_eq!(after.len(), 1_001);
        assert!(
            before
                .iter()
                .zip(after.iter())
                .all(|(b, a)| Rc::ptr_eq(b, a)),
            "every message kept is the same allocation"
        );
        // Another channel's list is not even copied.
        let random = |s: &ChatState| s.channel("random").map(|c| c.messages.clone());
        match (random(&old), random(&new)) {
            (Some(b), Some(a)) => assert!(b.ptr_eq(&a)),
            other => panic!("no channel: {other:?}"),
        }
    }

    #[test]
    fn a_batch_is_its_actions_in_order() {
        let actions = vec![
            Action::Message(msg(5, "random", "x")),
            Action::Message(msg(6, "general", "x")),
            Action::Select("random".into()),
            Action::Message(msg(7, "random", "x")),
            Action::Message(msg(8, "general", "x")),
        ];
        let mut one_by_one = joined();
        for a in actions.clone() {
            one_by_one.apply(a);
        }
        let batched = Rc::new(joined()).reduce(Action::Batch(actions.clone()));
        assert_eq!(*batched, one_by_one);
        assert_eq!(batched.channel("general").map(|c| c.unread), Some(1));
        assert_eq!(batched.channel("random").map(|c| c.unread), Some(0));
        assert_eq!(Action::batch(Vec::new()), None);
        assert_eq!(
            Action::batch(vec![Action::Offline]),
            Some(Action::Offline),
            "a single action is not wrapped"
        );
        assert_eq!(Action::batch(actions.clone()), Some(Action::Batch(actions)));
    }

    #[test]
    fn a_nick_held_elsewhere_asks_for_another_with_its_own_words() {
        let mut s = ChatState::default();
        s.apply(Action::Restored {
            nick: "me".into(),
            active: Some("general".into()),
        });
        assert!(!s.needs_nick());
        s.apply(Action::NickInUseElsewhere { nick: "me".into() });
        assert!(s.needs_nick(), "the connect screen asks");
        assert_eq!(s.nick_taken.as_deref(), Some("me"));
        assert!(s.nick_elsewhere);
        s.apply(Action::Authenticating { nick: "me".into() });
        s.apply(Action::NickTaken { nick: "me".into() });
        assert!(!s.nick_elsewhere, "a nick the user chose: the usual words");
        s.apply(Action::NickInUseElsewhere { nick: "me".into() });
        s.apply(Action::Authenticated { nick: "me2".into() });
        assert!(!s.needs_nick() && !s.nick_elsewhere && s.nick_taken.is_none());
    }
}
