//! The client side of a dumdum v2 connection, as a state machine.
//!
//! Inputs: [`Client::handle_data`] (bytes from a stream) or
//! [`Client::handle_message`] (one message from a framed transport), and the
//! user's actions ([`Client::hello`], [`Client::authenticate`], ...).
//! Outputs: [`Client::poll_transmit`] (bytes to send) and
//! [`Client::poll_event`] (what happened).

use std::collections::VecDeque;

use crate::decoder::{DEFAULT_BUFFER_LIMIT, Decoder};
use crate::error::{Error, Field, StateError};
use crate::history::HistoryQuery;
use crate::message::{ChatMessage, ClientMessage, PROTOCOL_VERSION, ServerMessage, check_field};

/// How this client handles the server's offer of TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain TCP only: a server that announces TLS is refused.
    Disabled,
    /// Upgrade when the server announces TLS, stay plain otherwise.
    #[default]
    Optional,
    /// Refuse a server that answers HELLO(0).
    Required,
    /// Someone below this client (the bridge) does TLS: accept either answer
    /// and never wait for an upgrade.
    Transparent,
}

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// TLS handling.
    pub tls: TlsMode,
    /// The largest server message accepted, in bytes (1 MiB by default).
    pub buffer_limit: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            tls: TlsMode::Optional,
            buffer_limit: DEFAULT_BUFFER_LIMIT,
        }
    }
}

/// Where a client is in the order of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    /// Nothing sent yet, or the server refused our version: HELLO next.
    Start,
    /// HELLO sent; waiting for the server's HELLO.
    AwaitingHello,
    /// The server announced TLS; waiting for the upgrade to complete.
    AwaitingTls,
    /// May send AUTHENTICATE.
    Unauthenticated,
    /// AUTHENTICATE sent; waiting for the acknowledgement.
    Authenticating {
        /// The nick asked for.
        nick: String,
    },
    /// Authenticated: chat messages may flow.
    Ready {
        /// Our nick.
        nick: String,
        /// Whether the link was upgraded to TLS (by us or below us).
        tls: bool,
    },
    /// A fatal error happened; the connection must be closed.
    Failed,
}

impl ClientState {
    fn describe(&self) -> &'static str {
        match self {
            ClientState::Start => "no HELLO has been sent",
            ClientState::AwaitingHello => "waiting for the server's HELLO",
            ClientState::AwaitingTls => "waiting for the TLS upgrade",
            ClientState::Unauthenticated => "not authenticated",
            ClientState::Authenticating { .. } => "waiting for the authentication answer",
            ClientState::Ready { .. } => "authenticated",
            ClientState::Failed => "the connection has failed",
        }
    }
}

/// Something the server told us.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The server answered HELLO. When `tls` is set and the client's
    /// [`TlsMode`] upgrades, the caller must run a TLS handshake now and then
    /// call [`Client::handle_tls_established`].
    Hello {
        /// The server upgrades to TLS.
        tls: bool,
    },
    /// The server refused our version; HELLO may be sent again.
    IncompatibleVersion {
        /// The version the server requires.
        required: u8,
    },
    /// The nick was accepted.
    Authenticated {
        /// Our nick.
        nick: String,
    },
    /// The nick is held by someone else; try another.
    NickTaken {
        /// The refused nick.
        nick: String,
    },
    /// A broadcast message (including the echo of our own).
    Message(ChatMessage),
    /// The answer to LIST_CHANNELS.
    Channels(Vec<String>),
    /// The answer to LIST_MESSAGES.
    History {
        /// The channel that was asked for.
        channel: String,
        /// The query, when it was sent with [`Client::list_messages`].
        query: Option<HistoryQuery>,
        /// The page, oldest first.
        messages: Vec<ChatMessage>,
    },
}

/// Whether a client message may be sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The protocol allows it now.
    Now,
    /// It may become allowed once the server answers what is pending.
    Later,
    /// It is out of order and never will be allowed in this state.
    Never(StateError),
}

/// The client state machine. No I/O, no clock.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: ClientState,
    decoder: Decoder<ServerMessage>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    pending_history: VecDeque<(String, Option<HistoryQuery>)>,
    link_tls: bool,
}

impl Client {
    /// A new client in [`ClientState::Start`].
    pub fn new(config: ClientConfig) -> Self {
        Client {
            decoder: Decoder::new(config.buffer_limit),
            config,
            state: ClientState::Start,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            pending_history: VecDeque::new(),
            link_tls: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> &ClientState {
        &self.state
    }

    /// Our nick once authenticated.
    pub fn nick(&self) -> Option<&str> {
        match &self.state {
            ClientState::Ready { nick, .. } => Some(nick),
            _ => None,
        }
    }

    /// Whether the server announced TLS (and, unless transparent, it is done).
    pub fn is_tls(&self) -> bool {
        self.link_tls
    }

    /// Sends HELLO with our protocol version.
    pub fn hello(&mut self) -> Result<(), Error> {
        self.send(ClientMessage::Hello {
            version: PROTOCOL_VERSION,
        })
    }

    /// Asks for `nick`. Allowed after the server's HELLO (and TLS, if
    /// announced), and again after the server refused a nick.
    pub fn authenticate(&mut self, nick: &str) -> Result<(), Error> {
        validate_nick(nick)?;
        self.send(ClientMessage::Authenticate { nick: nick.into() })
    }

    /// Posts `content` to `channel`.
    pub fn send_message(&mut self, channel: &str, content: &str) -> Result<(), Error> {
        self.send(ClientMessage::SendMessage {
            channel: channel.into(),
            content: content.into(),
        })
    }

    /// Asks for the channel list.
    pub fn list_channels(&mut self) -> Result<(), Error> {
        self.send(ClientMessage::ListChannels)
    }

    /// Asks for a page of history; the answer comes as [`Event::History`]
    /// carrying `query`.
    pub fn list_messages(&mut self, channel: &str, query: HistoryQuery) -> Result<(), Error> {
        let msg = query.request(channel);
        self.check(&msg)?;
        self.queue(&msg)?;
        self.pending_history
            .push_back((channel.into(), Some(query)));
        Ok(())
    }

    /// Whether `msg` may be sent now, later, or never in this state.
    pub fn readiness(&self, msg: &ClientMessage) -> Readiness {
        use ClientState as S;
        let never = |state: &ClientState| {
            Readiness::Never(StateError {
                action: match msg {
                    ClientMessage::Hello { .. } => "HELLO",
                    ClientMessage::Authenticate { .. } => "AUTHENTICATE",
                    ClientMessage::SendMessage { .. } => "SEND_MESSAGE",
                    ClientMessage::ListChannels => "LIST_CHANNELS",
                    ClientMessage::ListMessages { .. } => "LIST_MESSAGES",
                },
                state: state.describe(),
            })
        };
        match (&self.state, msg) {
            (S::Failed, _) => never(&self.state),
            (S::Start, ClientMessage::Hello { .. }) => Readiness::Now,
            (_, ClientMessage::Hello { .. }) | (S::Start, _) => never(&self.state),
            (S::Unauthenticated, ClientMessage::Authenticate { .. }) => Readiness::Now,
            (S::Ready { .. }, ClientMessage::Authenticate { .. }) => never(&self.state),
            (S::Unauthenticated, _) => never(&self.state),
            (S::Ready { .. }, _) => Readiness::Now,
            (S::AwaitingHello | S::AwaitingTls | S::Authenticating { .. }, _) => Readiness::Later,
        }
    }

    fn check(&self, msg: &ClientMessage) -> Result<(), Error> {
        match self.readiness(msg) {
            Readiness::Now => Ok(()),
            Readiness::Never(e) => Err(e.into()),
            Readiness::Later => Err(StateError {
                action: msg.name(),
                state: self.state.describe(),
            }
            .into()),
        }
    }

    /// Sends any client message, checking that the protocol allows it now.
    pub fn send(&mut self, msg: ClientMessage) -> Result<(), Error> {
        self.check(&msg)?;
        self.queue(&msg)?;
        if let ClientMessage::ListMessages { channel, .. } = &msg {
            self.pending_history.push_back((channel.clone(), None));
        }
        Ok(())
    }

    /// Records that the caller sent `msg` itself (a relay that forwards a
    /// client's exact bytes): the same checks and state changes as
    /// [`Client::send`], without encoding it or queueing a transmit. A
    /// LIST_MESSAGES recorded this way is not remembered for matching
    /// [`Event::History`] (a relay does not need the events).
    pub fn note_sent(&mut self, msg: &ClientMessage) -> Result<(), Error> {
        self.check(msg)?;
        self.advance(msg);
        Ok(())
    }

    fn advance(&mut self, msg: &ClientMessage) {
        match msg {
            ClientMessage::Hello { .. } => self.state = ClientState::AwaitingHello,
            ClientMessage::Authenticate { nick } => {
                self.state = ClientState::Authenticating { nick: nick.clone() };
            }
            _ => {}
        }
    }

    fn queue(&mut self, msg: &ClientMessage) -> Result<(), Error> {
        let bytes = msg.to_bytes()?;
        self.advance(msg);
        self.transmits.push_back(bytes);
        Ok(())
    }

    /// The TLS upgrade announced by the server's HELLO has completed.
    pub fn handle_tls_established(&mut self) -> Result<(), Error> {
        if self.state != ClientState::AwaitingTls {
            return Err(StateError {
                action: "completing TLS",
                state: self.state.describe(),
            }
            .into());
        }
        self.state = ClientState::Unauthenticated;
        Ok(())
    }

    /// Bytes received from the server's stream.
    pub fn handle_data(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.state == ClientState::Failed {
            return Err(Error::Closed);
        }
        self.decoder.feed(data);
        loop {
            if self.state == ClientState::AwaitingTls && self.decoder.buffered() > 0 {
                return self.fail(
                    StateError {
                        action: "clear-text data from the server",
                        state: self.state.describe(),
                    }
                    .into(),
                );
            }
            match self.decoder.next_message() {
                Ok(Some((msg, _))) => self.handle_message(msg)?,
                Ok(None) => return Ok(()),
                Err(e) => return self.fail(e),
            }
        }
    }

    /// One whole message from the server (from a framed transport, or split
    /// off a stream by the caller).
    pub fn handle_message(&mut self, msg: ServerMessage) -> Result<(), Error> {
        use ClientState as S;
        let state = std::mem::replace(&mut self.state, S::Failed);
        let next = match (state, msg) {
            (S::Failed, _) => return Err(Error::Closed),
            (S::AwaitingHello, ServerMessage::Hello { tls }) => {
                self.events.push_back(Event::Hello { tls });
                match (self.config.tls, tls) {
                    (TlsMode::Disabled, true) => return self.fail(Error::TlsUnsupported),
                    (TlsMode::Required, false) => return self.fail(Error::TlsRequired),
                    (TlsMode::Optional | TlsMode::Required, true) => {
                        self.link_tls = true;
                        S::AwaitingTls
                    }
                    (TlsMode::Transparent, tls) => {
                        self.link_tls = tls;
                        S::Unauthenticated
                    }
                    (_, false) => S::Unauthenticated,
                }
            }
            (S::AwaitingHello, ServerMessage::IncompatibleVersion { required }) => {
                self.events
                    .push_back(Event::IncompatibleVersion { required });
                S::Start
            }
            (S::Authenticating { nick }, ServerMessage::AcknowledgeAuthentication { success }) => {
                if success {
                    self.events
                        .push_back(Event::Authenticated { nick: nick.clone() });
                    S::Ready {
                        nick,
                        tls: self.link_tls,
                    }
                } else {
                    self.events.push_back(Event::NickTaken { nick });
                    S::Unauthenticated
                }
            }
            (ready @ S::Ready { .. }, ServerMessage::SendMessage(m)) => {
                self.events.push_back(Event::Message(m));
                ready
            }
            (ready @ S::Ready { .. }, ServerMessage::ListChannels(c)) => {
                self.events.push_back(Event::Channels(c));
                ready
            }
            (ready @ S::Ready { .. }, ServerMessage::ListMessages(messages)) => {
                let (channel, query) = self.pending_history.pop_front().unwrap_or_default();
                self.events.push_back(Event::History {
                    channel,
                    query,
                    messages,
                });
                ready
            }
            (state, msg) => {
                self.state = state;
                let e = StateError {
                    action: match msg {
                        ServerMessage::Hello { .. } => "HELLO from the server",
                        ServerMessage::IncompatibleVersion { .. } => {
                            "INCOMPATIBLE_VERSION from the server"
                        }
                        ServerMessage::AcknowledgeAuthentication { .. } => {
                            "ACKNOWLEDGE_AUTHENTICATION from the server"
                        }
                        ServerMessage::SendMessage(_) => "SEND_MESSAGE from the server",
                        ServerMessage::ListChannels(_) => "LIST_CHANNELS from the server",
                        ServerMessage::ListMessages(_) => "LIST_MESSAGES from the server",
                    },
                    state: self.state.describe(),
                };
                return self.fail(e.into());
            }
        };
        self.state = next;
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Result<(), Error> {
        self.state = ClientState::Failed;
        self.transmits.clear();
        Err(e)
    }

    /// The next message to send, encoded.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// Why a nick cannot be used.
pub fn validate_nick(nick: &str) -> Result<(), Error> {
    if nick.is_empty() {
        return Err(Error::EmptyNick);
    }
    check_field(Field::Nick, nick)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EncodeError;

    fn client(tls: TlsMode) -> Client {
        Client::new(ClientConfig {
            tls,
            ..ClientConfig::default()
        })
    }

    fn server_says(c: &mut Client, msg: ServerMessage) -> Result<(), Error> {
        c.handle_data(&msg.to_bytes().unwrap())
    }

    #[test]
    fn authenticate_is_impossible_before_the_servers_hello() {
        let mut c = client(TlsMode::Optional);
        assert!(matches!(c.authenticate("ann"), Err(Error::InvalidState(_))));
        c.hello().unwrap();
        assert_eq!(c.poll_transmit(), Some(vec![0, 2]));
        assert!(matches!(c.authenticate("ann"), Err(Error::InvalidState(_))));
        let auth = ClientMessage::Authenticate { nick: "ann".into() };
        assert_eq!(c.readiness(&auth), Readiness::Later);
        server_says(&mut c, ServerMessage::Hello { tls: false }).unwrap();
        assert_eq!(c.readiness(&auth), Readiness::Now);
        c.authenticate("ann").unwrap();
    }

    #[test]
    fn tls_announced_means_wait_for_the_upgrade() {
        let mut c = client(TlsMode::Optional);
        c.hello().unwrap();
        server_says(&mut c, ServerMessage::Hello { tls: true }).unwrap();
        assert_eq!(c.poll_event(), Some(Event::Hello { tls: true }));
        assert_eq!(c.state(), &ClientState::AwaitingTls);
        assert!(c.authenticate("ann").is_err());
        c.handle_tls_established().unwrap();
        c.authenticate("ann").unwrap();
    }

    #[test]
    fn clear_text_after_a_tls_announcement_is_refused() {
        let mut c = client(TlsMode::Optional);
        c.hello().unwrap();
        assert!(matches!(
            c.handle_data(&[0, 1, 2, 1]),
            Err(Error::InvalidState(_))
        ));
        assert_eq!(c.state(), &ClientState::Failed);
    }

    #[test]
    fn tls_modes_refuse_what_they_cannot_do() {
        let mut c = client(TlsMode::Required);
        c.hello().unwrap();
        assert_eq!(
            server_says(&mut c, ServerMessage::Hello { tls: false }),
            Err(Error::TlsRequired)
        );
        let mut c = client(TlsMode::Disabled);
        c.hello().unwrap();
        assert_eq!(
            server_says(&mut c, ServerMessage::Hello { tls: true }),
            Err(Error::TlsUnsupported)
        );
        let mut c = client(TlsMode::Transparent);
        c.hello().unwrap();
        server_says(&mut c, ServerMessage::Hello { tls: true }).unwrap();
        assert!(c.is_tls());
        c.authenticate("ann").unwrap();
    }

    #[test]
    fn nick_taken_then_another_then_ready() {
        let mut c = client(TlsMode::Optional);
        c.hello().unwrap();
        server_says(&mut c, ServerMessage::Hello { tls: false }).unwrap();
        c.authenticate("ann").unwrap();
        let list = ClientMessage::ListChannels;
        assert_eq!(c.readiness(&list), Readiness::Later);
        server_says(
            &mut c,
            ServerMessage::AcknowledgeAuthentication { success: false },
        )
        .unwrap();
        assert!(matches!(c.readiness(&list), Readiness::Never(_)));
        c.authenticate("bea").unwrap();
        server_says(
            &mut c,
            ServerMessage::AcknowledgeAuthentication { success: true },
        )
        .unwrap();
        let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert_eq!(
            events[1..],
            [
                Event::NickTaken { nick: "ann".into() },
                Event::Authenticated { nick: "bea".into() }
            ]
        );
        assert_eq!(c.nick(), Some("bea"));
        assert_eq!(c.readiness(&list), Readiness::Now);
        assert!(matches!(
            c.readiness(&ClientMessage::Hello { version: 2 }),
            Readiness::Never(_)
        ));
    }

    #[test]
    fn history_replies_are_matched_to_requests_in_order() {
        let mut c = client(TlsMode::Transparent);
        c.hello().unwrap();
        c.handle_message(ServerMessage::Hello { tls: false })
            .unwrap();
        c.authenticate("ann").unwrap();
        c.handle_message(ServerMessage::AcknowledgeAuthentication { success: true })
            .unwrap();
        c.list_messages("general", HistoryQuery::Newest).unwrap();
        c.list_messages("random", HistoryQuery::Newest).unwrap();
        while c.poll_event().is_some() {}
        c.handle_message(ServerMessage::ListMessages(vec![]))
            .unwrap();
        c.handle_message(ServerMessage::ListMessages(vec![]))
            .unwrap();
        let channels: Vec<_> = std::iter::from_fn(|| c.poll_event())
            .filter_map(|e| match e {
                Event::History { channel, .. } => Some(channel),
                _ => None,
            })
            .collect();
        assert_eq!(channels, ["general", "random"]);
    }

    #[test]
    fn nicks_are_validated_in_bytes() {
        assert_eq!(validate_nick(""), Err(Error::EmptyNick));
        assert!(validate_nick(&"é".repeat(16)).is_ok());
        assert!(matches!(
            validate_nick(&"é".repeat(17)),
            Err(Error::Encode(EncodeError { len: 34, .. }))
        ));
    }

    #[test]
    fn note_sent_moves_like_send_without_encoding() {
        let script = [
            ClientMessage::Hello { version: 2 },
            ClientMessage::Authenticate { nick: "ann".into() },
            ClientMessage::SendMessage {
                channel: "general".into(),
                content: "hi".into(),
            },
        ];
        let replies = [
            Some(ServerMessage::Hello { tls: false }),
            Some(ServerMessage::AcknowledgeAuthentication { success: true }),
            None,
        ];
        let mut sent = client(TlsMode::Transparent);
        let mut noted = client(TlsMode::Transparent);
        for (msg, reply) in script.iter().zip(replies) {
            sent.send(msg.clone()).unwrap();
            noted.note_sent(msg).unwrap();
            assert_eq!(sent.state(), noted.state());
            assert!(sent.poll_transmit().is_some());
            assert_eq!(noted.poll_transmit(), None, "nothing encoded");
            if let Some(r) = reply {
                sent.handle_message(r.clone()).unwrap();
                noted.handle_message(r).unwrap();
            }
        }
        // Out of order is refused just the same.
        let hello = ClientMessage::Hello { version: 2 };
        assert_eq!(
            noted.note_sent(&hello).unwrap_err(),
            sent.send(hello).unwrap_err()
        );
    }

    #[test]
    fn incompatible_version_allows_hello_again() {
        let mut c = client(TlsMode::Optional);
        c.hello().unwrap();
        server_says(&mut c, ServerMessage::IncompatibleVersion { required: 3 }).unwrap();
        assert_eq!(c.state(), &ClientState::Start);
        c.hello().unwrap();
    }
}
