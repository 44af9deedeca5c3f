//! The chat session, sans I/O: the bridge handshake, the dumdum protocol
//! client, channel selection, history paging and catch-up after a
//! reconnect. Inputs are WebSocket events and user commands; outputs are
//! frames to send, [`Action`]s for the view and values to remember. The
//! browser glue (`hooks::use_chat`) only moves bytes; everything here is
//! tested natively.
//!
//! Resumable sessions (issue 5) build on the counters kept here: the bridge's
//! session key and the binary frames sent and received in the session.

use std::collections::{HashMap, HashSet};

use dumdum_protocol::session::{Content, Handshake, HandshakeState, Notice};
use dumdum_protocol::{
    Client, ClientConfig, ClientState, Decode, Event, HistoryQuery, ServerMessage, Snowflake,
    TlsMode,
};

use crate::format::{draft_problem, nick_problem};
use crate::problem::{Problem, code};
use crate::state::{Action, HistoryKind, Security};

/// Something the browser glue must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a text frame.
    Text(String),
    /// Send a binary frame.
    Binary(Vec<u8>),
    /// Update the view.
    Act(Action),
    /// Store a preference.
    Remember(Memory),
    /// Close the WebSocket.
    Close {
        /// Close code.
        code: u16,
        /// Reason.
        reason: String,
    },
    /// Something worth a line in the browser console.
    Log(String),
}

/// A preference to keep across visits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Memory {
    /// The accepted nick.
    Nick(String),
    /// The last channel shown on a server.
    Channel {
        /// The server name (`None`: the bridge's default).
        server: Option<String>,
        /// The channel.
        channel: String,
    },
}

/// Why a user command cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not authenticated on a live connection.
    #[error("not connected")]
    NotConnected,
    /// The text or nick breaks a protocol rule.
    #[error("{0}")]
    Invalid(String),
    /// The protocol state machine refused.
    #[error("{0}")]
    Protocol(#[from] dumdum_protocol::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshaking {
    /// The socket is not open yet.
    Closed,
    /// Start or Restart sent.
    Waiting,
    /// Success received: binary frames may flow.
    Done,
}

/// One chat session across reconnects.
#[derive(Debug)]
pub struct Engine {
    server: Option<String>,
    nick: String,
    preferred_channel: Option<String>,
    client: Client,
    handshake: Handshaking,
    sn: u32,
    session_key: Option<String>,
    frames_in: u64,
    frames_out: u64,
    opened: bool,
    ready: bool,
    was_ready: bool,
    fatal: Option<Problem>,
    upstream_note: Option<String>,
    channels: Vec<String>,
    active: Option<String>,
    oldest: HashMap<String, Snowflake>,
    newest: HashMap<String, Snowflake>,
    requested: HashSet<String>,
    out: Vec<Output>,
}

fn new_client() -> Client {
    Client::new(ClientConfig {
        tls: TlsMode::Transparent,
        ..ClientConfig::default()
    })
}

impl Engine {
    /// A session for `nick` on `server` (`None`: the bridge's default),
    /// opening `preferred_channel` when the server has it.
    pub fn new(server: Option<String>, nick: String, preferred_channel: Option<String>) -> Self {
        Engine {
            server,
            nick,
            preferred_channel,
            client: new_client(),
            handshake: Handshaking::Closed,
            sn: 0,
            session_key: None,
            frames_in: 0,
            frames_out: 0,
            opened: false,
            ready: false,
            was_ready: false,
            fatal: None,
            upstream_note: None,
            channels: Vec::new(),
            active: None,
            oldest: HashMap::new(),
            newest: HashMap::new(),
            requested: HashSet::new(),
            out: Vec::new(),
        }
    }

    /// The server name asked for.
    pub fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// The nick used (or to be used).
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// Authenticated on the current connection.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The session key the bridge handed out, if any.
    pub fn session_key(&self) -> Option<&str> {
        self.session_key.as_deref()
    }

    /// Binary frames (received, sent) on the current session.
    pub fn frame_counts(&self) -> (u64, u64) {
        (self.frames_in, self.frames_out)
    }

    /// Whether the server refused the nick and waits for another on this
    /// connection.
    pub fn awaiting_nick(&self) -> bool {
        self.handshake == Handshaking::Done && *self.client.state() == ClientState::Unauthenticated
    }

    /// Takes what the glue must do, in order.
    pub fn drain(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// A new WebSocket is about to be opened: forget the previous
    /// connection's protocol state, keep what is known about channels so the
    /// new connection can catch up.
    pub fn begin_connection(&mut self) {
        self.client = new_client();
        self.handshake = Handshaking::Closed;
        self.session_key = None;
        self.frames_in = 0;
        self.frames_out = 0;
        self.opened = false;
        self.ready = false;
        self.fatal = None;
        self.upstream_note = None;
        self.out.push(Output::Act(Action::Connecting));
    }

    fn next_sn(&mut self) -> u32 {
        self.sn = self.sn.wrapping_add(1);
        self.sn
    }

    /// The WebSocket opened: start the bridge handshake.
    pub fn on_open(&mut self) {
        self.opened = true;
        self.handshake = Handshaking::Waiting;
        let sn = self.next_sn();
        let start = Content::Handshake(Handshake::start(sn, self.server.clone()));
        self.out.push(Output::Text(start.to_json()));
    }

    fn protocol_failure(&mut self, what: String) {
        self.out.push(Output::Log(what.clone()));
        if self.fatal.is_none() {
            self.fatal = Some(Problem::Protocol(what));
        }
        self.out.push(Output::Close {
            code: code::NORMAL,
            reason: "protocol error".into(),
        });
    }

    /// A text frame from the bridge.
    pub fn on_text(&mut self, text: &str) {
        let content = match Content::parse(text) {
            Ok(c) => c,
            Err(e) => {
                self.out.push(Output::Log(format!(
                    "ignored a text frame from the bridge: {e}"
                )));
                return;
            }
        };
        match content {
            Content::Handshake(h) => self.on_handshake(h),
            Content::Notice { notice, .. } => self.on_notice(notice),
            _ => {}
        }
    }

    fn on_handshake(&mut self, h: Handshake) {
        if self.handshake != Handshaking::Waiting {
            self.protocol_failure("an unexpected handshake from the bridge".into());
            return;
        }
        match h.state() {
            HandshakeState::Again => {
                // A new session key: present it (Restart) to get Success.
                let Some(key) = h.session.filter(|k| !k.is_empty()) else {
                    self.protocol_failure("the bridge's handshake has no session key".into());
                    return;
                };
                self.session_key = Some(key.clone());
                let sn = self.next_sn();
                let restart = Handshake::restart(sn, key, self.frames_in, self.server.clone());
                self.out
                    .push(Output::Text(Content::Handshake(restart).to_json()));
            }
            HandshakeState::Success => {
                if let Some(key) = h.session.filter(|k| !k.is_empty()) {
                    self.session_key = Some(key);
                }
                self.handshake = Handshaking::Done;
                // Fresh session: the dumdum exchange starts with HELLO.
                if let Err(e) = self.client.hello() {
                    self.protocol_failure(e.to_string());
                    return;
                }
                self.pump();
            }
            HandshakeState::Start | HandshakeState::Restart => {
                self.protocol_failure("the bridge sent a client handshake".into());
            }
        }
    }

    fn on_notice(&mut self, notice: Notice) {
        match notice {
            Notice::UpstreamConnected { server } => {
                self.out
                    .push(Output::Act(Action::UpstreamConnected { server }));
            }
            Notice::UpstreamSecured {
                tls_version,
                peer,
                fingerprint,
            } => self.out.push(Output::Act(Action::Secured(Security {
                tls_version,
                peer,
                fingerprint,
            }))),
            Notice::UpstreamClosed { reason } | Notice::UpstreamError { reason } => {
                self.upstream_note = Some(reason);
            }
            Notice::SessionResumed { replayed } => {
                self.out.push(Output::Log(format!(
                    "session resumed, {replayed} frames replayed"
                )));
            }
            other => self
                .out
                .push(Output::Log(format!("bridge notice: {other:?}"))),
        }
    }

    /// A binary frame from the bridge: one dumdum server message.
    pub fn on_binary(&mut self, frame: &[u8]) {
        self.frames_in += 1;
        if self.handshake != Handshaking::Done {
            self.protocol_failure("a dumdum message before the bridge handshake".into());
            return;
        }
        let msg = match ServerMessage::decode_exact(frame) {
            Ok(m) => m,
            Err(e) => {
                self.protocol_failure(format!("unreadable message from the server: {e}"));
                return;
            }
        };
        if let Err(e) = self.client.handle_message(msg) {
            self.protocol_failure(e.to_string());
            return;
        }
        self.pump();
    }

    /// The WebSocket closed (or failed to open). Returns why, in terms the
    /// user understands.
    pub fn on_close(&mut self, close_code: u16, reason: &str) -> Problem {
        let problem = self.fatal.take().unwrap_or_else(|| {
            Problem::from_close(
                close_code,
                reason,
                self.opened,
                self.upstream_note.as_deref(),
            )
        });
        self.handshake = Handshaking::Closed;
        self.ready = false;
        self.opened = false;
        problem
    }

    /// Asks for another nick on the same connection (after it was taken).
    pub fn authenticate(&mut self, nick: &str) -> Result<(), CommandError> {
        if let Some(p) = nick_problem(nick) {
            return Err(CommandError::Invalid(p));
        }
        self.nick = nick.to_owned();
        if self.awaiting_nick() {
            self.client.authenticate(nick)?;
            self.out.push(Output::Act(Action::Authenticating {
                nick: nick.to_owned(),
            }));
            self.pump();
        }
        Ok(())
    }

    /// Posts `text` to `channel`. The message shows when the server echoes it.
    pub fn send_message(&mut self, channel: &str, text: &str) -> Result<(), CommandError> {
        if !self.ready {
            return Err(CommandError::NotConnected);
        }
        if let Some(p) = draft_problem(text) {
            return Err(CommandError::Invalid(p));
        }
        self.client.send_message(channel, text)?;
        self.pump();
        Ok(())
    }

    /// Shows `channel`, fetching its newest page the first time.
    pub fn select(&mut self, channel: &str) {
        self.active = Some(channel.to_owned());
        self.out
            .push(Output::Act(Action::Select(channel.to_owned())));
        self.out.push(Output::Remember(Memory::Channel {
            server: self.server.clone(),
            channel: channel.to_owned(),
        }));
        self.preferred_channel = Some(channel.to_owned());
        if self.ready && !self.requested.contains(channel) {
            self.request(channel, HistoryQuery::Newest);
        }
    }

    /// Fetches the page before the oldest message held of `channel`.
    pub fn load_older(&mut self, channel: &str) {
        if !self.ready {
            return;
        }
        let query = match self.oldest.get(channel) {
            Some(&oldest) => HistoryQuery::OlderThan(oldest),
            None => HistoryQuery::Newest,
        };
        self.out.push(Output::Act(Action::LoadingOlder {
            channel: channel.to_owned(),
        }));
        self.request(channel, query);
    }

    fn request(&mut self, channel: &str, query: HistoryQuery) {
        self.requested.insert(channel.to_owned());
        if let Err(e) = self.client.list_messages(channel, query) {
            self.out.push(Output::Log(format!(
                "history request for {channel} failed: {e}"
            )));
        }
        self.pump();
    }

    fn seen(&mut self, channel: &str, id: Snowflake) {
        let newest = self.newest.entry(channel.to_owned()).or_insert(id);
        *newest = (*newest).max(id);
        let oldest = self.oldest.entry(channel.to_owned()).or_insert(id);
        *oldest = (*oldest).min(id);
    }

    /// Moves the protocol client's output out and reacts to its events.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(frame) = self.client.poll_transmit() {
                self.frames_out += 1;
                self.out.push(Output::Binary(frame));
                progressed = true;
            }
            if let Some(ev) = self.client.poll_event() {
                self.on_event(ev);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Hello { .. } => {
                if nick_problem(&self.nick).is_none()
                    && self.client.authenticate(&self.nick).is_ok()
                {
                    self.out.push(Output::Act(Action::Authenticating {
                        nick: self.nick.clone(),
                    }));
                } else {
                    // No usable nick: the page asks for one.
                    self.out.push(Output::Act(Action::NickTaken {
                        nick: self.nick.clone(),
                    }));
                }
            }
            Event::IncompatibleVersion { required } => {
                self.fatal = Some(Problem::IncompatibleVersion { required });
                self.out.push(Output::Close {
                    code: code::NORMAL,
                    reason: "incompatible protocol version".into(),
                });
            }
            Event::NickTaken { nick } if self.was_ready && nick == self.nick => {
                // A reconnect: the nick is most likely still held for the
                // previous connection. Retry later rather than ask.
                self.fatal = Some(Problem::NickInUse(nick));
                self.out.push(Output::Close {
                    code: code::NORMAL,
                    reason: "nickname still in use".into(),
                });
            }
            Event::NickTaken { nick } => self.out.push(Output::Act(Action::NickTaken { nick })),
            Event::Authenticated { nick } => {
                self.ready = true;
                self.was_ready = true;
                self.out
                    .push(Output::Act(Action::Authenticated { nick: nick.clone() }));
                self.out.push(Output::Remember(Memory::Nick(nick)));
                if let Err(e) = self.client.list_channels() {
                    self.out
                        .push(Output::Log(format!("LIST_CHANNELS failed: {e}")));
                }
                // Catch up on every channel seen before a reconnect.
                let mut known: Vec<(String, Snowflake)> =
                    self.newest.iter().map(|(c, &id)| (c.clone(), id)).collect();
                known.sort();
                for (channel, newest) in known {
                    self.request(&channel, HistoryQuery::NewerThan(newest));
                }
                // Channels asked for but empty so far: ask again.
                let mut empty: Vec<String> = self
                    .requested
                    .iter()
                    .filter(|c| !self.newest.contains_key(*c))
                    .cloned()
                    .collect();
                empty.sort();
                for channel in empty {
                    self.request(&channel, HistoryQuery::Newest);
                }
            }
            Event::Message(m) => {
                self.seen(&m.channel, m.id);
                self.out.push(Output::Act(Action::Message(m)));
            }
            Event::Channels(names) => {
                let active = [self.active.as_ref(), self.preferred_channel.as_ref()]
                    .into_iter()
                    .flatten()
                    .find(|c| names.contains(c))
                    .or(names.first())
                    .cloned();
                self.channels = names.clone();
                self.out.push(Output::Act(Action::Channels {
                    names,
                    active: None,
                }));
                if let Some(active) = active {
                    self.select(&active);
                }
            }
            Event::History {
                channel,
                query,
                messages,
            } => {
                for m in &messages {
                    self.seen(&channel, m.id);
                }
                let next = query.and_then(|q| q.next(&messages));
                let kind = match query {
                    Some(HistoryQuery::Newest) | None => HistoryKind::Newest {
                        more: next.is_some(),
                    },
                    Some(HistoryQuery::OlderThan(_)) => HistoryKind::Older {
                        more: next.is_some(),
                    },
                    Some(HistoryQuery::NewerThan(_) | HistoryQuery::Between { .. }) => {
                        HistoryKind::CatchUp
                    }
                };
                self.out.push(Output::Act(Action::History {
                    channel: channel.clone(),
                    messages,
                    kind,
                }));
                if kind == HistoryKind::CatchUp
                    && let Some(next) = next
                {
                    self.request(&channel, next);
                }
            }
            other => self
                .out
                .push(Output::Log(format!("unhandled event {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use dumdum_protocol::message::ClientMessage;
    use dumdum_protocol::{ChatMessage, history};

    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn texts(out: &[Output]) -> Vec<Content> {
        out.iter()
            .filter_map(|o| match o {
                Output::Text(t) => Some(Content::parse(t).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn sent(out: &[Output]) -> Vec<ClientMessage> {
        out.iter()
            .filter_map(|o| match o {
                Output::Binary(b) => Some(ClientMessage::decode_exact(b).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn acts(out: &[Output]) -> Vec<Action> {
        out.iter()
            .filter_map(|o| match o {
                Output::Act(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    fn server_frame(msg: ServerMessage) -> Vec<u8> {
        msg.to_bytes().unwrap()
    }

    fn chat(id: u64, channel: &str, nick: &str) -> ChatMessage {
        ChatMessage {
            id: Snowflake(id),
            channel: channel.into(),
            nick: nick.into(),
            content: format!("m{id}"),
        }
    }

    /// Runs the handshake up to the server's HELLO; returns the outputs
    /// after HELLO.
    fn connect(e: &mut Engine) -> Vec<Output> {
        e.begin_connection();
        e.on_open();
        let out = e.drain();
        let Content::Handshake(start) = &texts(&out)[0] else {
            panic!("no handshake")
        };
        assert_eq!(start.state(), HandshakeState::Start);
        assert_eq!(start.server.as_deref(), Some("local"));
        e.on_text(&Content::Handshake(Handshake::again(7, KEY.into())).to_json());
        let out = e.drain();
        let Content::Handshake(restart) = &texts(&out)[0] else {
            panic!("no restart")
        };
        assert_eq!(restart.state(), HandshakeState::Restart);
        assert_eq!(restart.session.as_deref(), Some(KEY));
        assert_eq!(restart.received, Some(0));
        e.on_text(&Content::Handshake(Handshake::success(8, KEY.into(), false, 0)).to_json());
        let out = e.drain();
        assert_eq!(
            sent(&out),
            [ClientMessage::Hello { version: 2 }],
            "HELLO after Success"
        );
        e.on_text(
            &Content::Notice {
                sn: 9,
                notice: Notice::UpstreamConnected {
                    server: "local".into(),
                },
            }
            .to_json(),
        );
        e.on_binary(&server_frame(ServerMessage::Hello { tls: false }));
        e.drain()
    }

    fn authenticated(e: &mut Engine) -> Vec<Output> {
        let out = connect(e);
        assert_eq!(
            sent(&out),
            [ClientMessage::Authenticate {
                nick: e.nick().into()
            }]
        );
        e.on_binary(&server_frame(ServerMessage::AcknowledgeAuthentication {
            success: true,
        }));
        e.drain()
    }

    #[test]
    fn fresh_session_authenticates_lists_and_opens_the_remembered_channel() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), Some("random".into()));
        let out = authenticated(&mut e);
        assert!(e.is_ready());
        assert_eq!(e.session_key(), Some(KEY));
        assert_eq!(sent(&out), [ClientMessage::ListChannels]);
        assert!(out.contains(&Output::Remember(Memory::Nick("alice".into()))));
        e.on_binary(&server_frame(ServerMessage::ListChannels(vec![
            "general".into(),
            "random".into(),
        ])));
        let out = e.drain();
        assert!(acts(&out).contains(&Action::Select("random".into())));
        assert_eq!(sent(&out), [HistoryQuery::Newest.request("random")]);
        assert!(out.contains(&Output::Remember(Memory::Channel {
            server: Some("local".into()),
            channel: "random".into()
        })));
        // Received: HELLO, ACK, LIST_CHANNELS. Sent: HELLO, AUTH, LIST_CHANNELS, LIST_MESSAGES.
        assert_eq!(e.frame_counts(), (3, 4));
    }

    #[test]
    fn unknown_remembered_channel_falls_back_to_the_first() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), Some("gone".into()));
        authenticated(&mut e);
        e.on_binary(&server_frame(ServerMessage::ListChannels(vec![
            "general".into(),
            "random".into(),
        ])));
        assert!(acts(&e.drain()).contains(&Action::Select("general".into())));
    }

    #[test]
    fn taken_nick_is_retried_on_the_same_connection() {
        let mut e = Engine::new(Some("local".into()), "bob".into(), None);
        connect(&mut e);
        e.on_binary(&server_frame(ServerMessage::AcknowledgeAuthentication {
            success: false,
        }));
        let out = e.drain();
        assert_eq!(acts(&out), [Action::NickTaken { nick: "bob".into() }]);
        assert!(e.awaiting_nick());
        assert!(matches!(e.authenticate(""), Err(CommandError::Invalid(_))));
        e.authenticate("bob2").unwrap();
        let out = e.drain();
        assert_eq!(
            sent(&out),
            [ClientMessage::Authenticate {
                nick: "bob2".into()
            }]
        );
        e.on_binary(&server_frame(ServerMessage::AcknowledgeAuthentication {
            success: true,
        }));
        assert!(acts(&e.drain()).contains(&Action::Authenticated {
            nick: "bob2".into()
        }));
    }

    #[test]
    fn sending_needs_a_connection_and_valid_text() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        assert_eq!(
            e.send_message("general", "hi"),
            Err(CommandError::NotConnected)
        );
        authenticated(&mut e);
        assert!(matches!(
            e.send_message("general", &"x".repeat(1025)),
            Err(CommandError::Invalid(_))
        ));
        e.send_message("general", "hi\nthere").unwrap();
        let out = e.drain();
        assert_eq!(
            sent(&out),
            [ClientMessage::SendMessage {
                channel: "general".into(),
                content: "hi\nthere".into()
            }]
        );
        // Nothing shown until the echo.
        assert!(acts(&out).is_empty());
        e.on_binary(&server_frame(ServerMessage::SendMessage(chat(
            5, "general", "alice",
        ))));
        assert_eq!(
            acts(&e.drain()),
            [Action::Message(chat(5, "general", "alice"))]
        );
    }

    /// A server holding `all`, answering LIST_MESSAGES as the reference does.
    fn answer(e: &mut Engine, out: &[Output], all: &[ChatMessage]) -> Vec<Output> {
        let mut outs = Vec::new();
        for m in sent(out) {
            if let ClientMessage::ListMessages { before, after, .. } = m {
                let page = history::select(all, before, after, 100).to_vec();
                e.on_binary(&server_frame(ServerMessage::ListMessages(page)));
                outs.extend(e.drain());
            }
        }
        outs
    }

    #[test]
    fn paging_back_reaches_every_message_once() {
        let all: Vec<ChatMessage> = (1..=250).map(|i| chat(i * 10, "general", "x")).collect();
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        authenticated(&mut e);
        e.on_binary(&server_frame(ServerMessage::ListChannels(vec![
            "general".into(),
        ])));
        let out = e.drain();
        let mut state = crate::state::ChatState::default();
        let mut got = answer(&mut e, &out, &all);
        for _ in 0..5 {
            for a in acts(&got) {
                state.apply(a);
            }
            if state.channel("general").map(|c| c.older) != Some(crate::state::Older::More) {
                break;
            }
            e.load_older("general");
            let out = e.drain();
            got = answer(&mut e, &out, &all);
        }
        let g = state.channel("general").unwrap();
        assert_eq!(g.older, crate::state::Older::Complete);
        assert_eq!(g.messages.as_slice(), all.as_slice());
    }

    #[test]
    fn reconnect_catches_up_without_gaps() {
        let mut all: Vec<ChatMessage> = (1..=50).map(|i| chat(i, "general", "x")).collect();
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        authenticated(&mut e);
        e.on_binary(&server_frame(ServerMessage::ListChannels(vec![
            "general".into(),
        ])));
        let out = e.drain();
        let mut state = crate::state::ChatState::default();
        for a in acts(&answer(&mut e, &out, &all)) {
            state.apply(a);
        }
        // Connection lost; 230 messages are posted meanwhile.
        let p = e.on_close(1006, "");
        assert_eq!(p, Problem::ConnectionLost);
        all.extend((51..=280).map(|i| chat(i, "general", "y")));
        let out = authenticated(&mut e);
        // LIST_CHANNELS, then the catch-up from the newest id held.
        assert_eq!(
            sent(&out),
            [
                ClientMessage::ListChannels,
                HistoryQuery::NewerThan(Snowflake(50)).request("general")
            ]
        );
        let mut pending = answer(&mut e, &out, &all);
        for _ in 0..10 {
            for a in acts(&pending) {
                state.apply(a);
            }
            if sent(&pending).is_empty() {
                break;
            }
            let out = pending.clone();
            pending = answer(&mut e, &out, &all);
        }
        let g = state.channel("general").unwrap();
        assert_eq!(g.messages.as_slice(), all.as_slice());
    }

    #[test]
    fn nick_still_held_after_a_reconnect_is_retried_later() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        authenticated(&mut e);
        e.on_close(1006, "");
        connect(&mut e);
        e.on_binary(&server_frame(ServerMessage::AcknowledgeAuthentication {
            success: false,
        }));
        let out = e.drain();
        assert!(
            acts(&out).is_empty(),
            "the connect screen is not shown: {out:?}"
        );
        assert!(out.iter().any(|o| matches!(o, Output::Close { .. })));
        let p = e.on_close(1000, "");
        assert_eq!(p, Problem::NickInUse("alice".into()));
        assert!(p.retryable());
    }

    #[test]
    fn bridge_close_codes_and_notices_explain_the_end() {
        let mut e = Engine::new(None, "alice".into(), None);
        e.begin_connection();
        assert_eq!(e.on_close(1006, ""), Problem::BridgeUnreachable);
        e.begin_connection();
        e.on_open();
        e.on_text(
            &Content::Notice {
                sn: 1,
                notice: Notice::UpstreamError {
                    reason: "connection refused".into(),
                },
            }
            .to_json(),
        );
        assert_eq!(
            e.on_close(4001, ""),
            Problem::ServerUnreachable("connection refused".into())
        );
        e.begin_connection();
        e.on_open();
        e.on_text(
            &Content::Notice {
                sn: 1,
                notice: Notice::UpstreamSecured {
                    tls_version: "TLSv1.3".into(),
                    peer: "CN=localhost".into(),
                    fingerprint: "ab".into(),
                },
            }
            .to_json(),
        );
        assert!(
            acts(&e.drain())
                .iter()
                .any(|a| matches!(a, Action::Secured(s) if s.tls_version == "TLSv1.3"))
        );
    }

    #[test]
    fn incompatible_version_closes_and_is_not_retried() {
        let mut e = Engine::new(None, "alice".into(), None);
        e.begin_connection();
        e.on_open();
        e.on_text(&Content::Handshake(Handshake::success(1, KEY.into(), false, 0)).to_json());
        e.drain();
        e.on_binary(&server_frame(ServerMessage::IncompatibleVersion {
            required: 3,
        }));
        assert!(e.drain().iter().any(|o| matches!(o, Output::Close { .. })));
        let p = e.on_close(1000, "");
        assert_eq!(p, Problem::IncompatibleVersion { required: 3 });
        assert!(!p.retryable());
    }

    #[test]
    fn garbage_is_a_protocol_error_not_a_panic() {
        let mut e = Engine::new(None, "alice".into(), None);
        e.begin_connection();
        e.on_open();
        e.drain();
        // Binary before the handshake completed.
        e.on_binary(&[0x00, 0x00]);
        assert!(e.drain().iter().any(|o| matches!(o, Output::Close { .. })));
        assert!(matches!(e.on_close(1000, ""), Problem::Protocol(_)));
        e.begin_connection();
        e.on_open();
        e.on_text("not json");
        e.on_text(&Content::Handshake(Handshake::success(1, KEY.into(), false, 0)).to_json());
        e.drain();
        e.on_binary(&[0x7f, 1, 2]);
        assert!(e.drain().iter().any(|o| matches!(o, Output::Close { .. })));
        assert!(matches!(e.on_close(1000, ""), Problem::Protocol(_)));
    }
}
