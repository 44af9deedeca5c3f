//! The server side of one dumdum v2 connection, as a state machine.
//!
//! It enforces the reference server's order rules, quirks included: a
//! message is judged against the state as it is when the message is parsed,
//! so HELLO and AUTHENTICATE that arrive in one chunk are refused (the
//! server's HELLO has not been sent yet), and so is anything sent before the
//! authentication answer. Shared state (nicks, channels, history) is the
//! caller's: it answers [`ServerEvent`]s with [`Server::accept_hello`],
//! [`Server::authenticate`], [`Server::list_channels`] and so on.

use std::collections::VecDeque;

use crate::decoder::{DEFAULT_BUFFER_LIMIT, Decoder};
use crate::error::{Error, StateError};
use crate::message::{ChatMessage, ClientMessage, PROTOCOL_VERSION, ServerMessage};

/// Where a server connection is in the order of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// Waiting for the client's HELLO.
    AwaitingHello,
    /// The client said HELLO; the caller must answer with [`Server::accept_hello`].
    HelloReceived,
    /// HELLO(1) sent; waiting for the TLS upgrade to complete.
    AwaitingTls,
    /// Waiting for AUTHENTICATE (or for the caller's answer to one).
    Unauthenticated,
    /// Authenticated as `nick`.
    Ready {
        /// The client's nick.
        nick: String,
    },
    /// A fatal error happened; the connection must be closed.
    Failed,
}

impl ServerState {
    fn describe(&self) -> &'static str {
        match self {
            ServerState::AwaitingHello => "waiting for the client's HELLO",
            ServerState::HelloReceived => "the server's HELLO has not been sent",
            ServerState::AwaitingTls => "waiting for the TLS upgrade",
            ServerState::Unauthenticated => "the client is not authenticated",
            ServerState::Ready { .. } => "the client is authenticated",
            ServerState::Failed => "the connection has failed",
        }
    }
}

/// Something the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A HELLO with our version: answer with [`Server::accept_hello`].
    Hello,
    /// A HELLO with another version; INCOMPATIBLE_VERSION was queued.
    IncompatibleVersion {
        /// The version the client asked for.
        version: u8,
    },
    /// AUTHENTICATE: answer with [`Server::authenticate`].
    Authenticate {
        /// The nick asked for.
        nick: String,
    },
    /// SEND_MESSAGE from the authenticated client.
    SendMessage {
        /// The channel.
        channel: String,
        /// The text.
        content: String,
    },
    /// LIST_CHANNELS: answer with [`Server::list_channels`].
    ListChannels,
    /// LIST_MESSAGES: answer with [`Server::list_messages`].
    ListMessages {
        /// The channel.
        channel: String,
        /// Raw `before` (0 = none): keep ids `>=` it.
        before: u64,
        /// Raw `after` (0 = none): keep ids `<=` it.
        after: u64,
    },
}

/// The server state machine for one connection. No I/O, no clock.
#[derive(Debug)]
pub struct Server {
    state: ServerState,
    decoder: Decoder<ClientMessage>,
    pending_auth: Option<String>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ServerEvent>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new(DEFAULT_BUFFER_LIMIT)
    }
}

impl Server {
    /// A connection that accepts client messages of at most `buffer_limit` bytes.
    pub fn new(buffer_limit: usize) -> Self {
        Server {
            state: ServerState::AwaitingHello,
            decoder: Decoder::new(buffer_limit),
            pending_auth: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> &ServerState {
        &self.state
    }

    /// The client's nick once authenticated.
    pub fn nick(&self) -> Option<&str> {
        match &self.state {
            ServerState::Ready { nick } => Some(nick),
            _ => None,
        }
    }

    /// Bytes received from the client. Every whole message in the buffer is
    /// judged against the state as it is now, before the caller answers any
    /// event, as the reference server does.
    pub fn handle_data(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.state == ServerState::Failed {
            return Err(Error::Closed);
        }
        self.decoder.feed(data);
        loop {
            match self.decoder.next_message() {
                Ok(Some((msg, _))) => {
                    if let Err(e) = self.on_message(msg) {
                        return self.fail(e);
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return self.fail(e),
            }
        }
    }

    fn on_message(&mut self, msg: ClientMessage) -> Result<(), Error> {
        use ServerState as S;
        let authenticating = self.pending_auth.is_some();
        let event = match (&self.state, msg) {
            (S::AwaitingHello, ClientMessage::Hello { version }) if version == PROTOCOL_VERSION => {
                self.state = S::HelloReceived;
                ServerEvent::Hello
            }
            (S::AwaitingHello, ClientMessage::Hello { version }) => {
                self.push(&ServerMessage::IncompatibleVersion {
                    required: PROTOCOL_VERSION,
                });
                ServerEvent::IncompatibleVersion { version }
            }
            (S::Unauthenticated, ClientMessage::Authenticate { nick }) if !authenticating => {
                self.pending_auth = Some(nick.clone());
                ServerEvent::Authenticate { nick }
            }
            (S::Ready { .. }, ClientMessage::SendMessage { channel, content }) => {
                ServerEvent::SendMessage { channel, content }
            }
            (S::Ready { .. }, ClientMessage::ListChannels) => ServerEvent::ListChannels,
            (
                S::Ready { .. },
                ClientMessage::ListMessages {
                    channel,
                    before,
                    after,
                },
            ) => ServerEvent::ListMessages {
                channel,
                before,
                after,
            },
            (state, msg) => {
                return Err(StateError {
                    action: msg.name(),
                    state: if authenticating {
                        "the authentication answer has not been sent"
                    } else {
                        state.describe()
                    },
                }
                .into());
            }
        };
        self.events.push_back(event);
        Ok(())
    }

    fn push(&mut self, msg: &ServerMessage) {
        // Encoding can only fail for over-long fields or lists; the callers
        // below check those first, so a failure here is a bug upstream of us.
        if let Ok(bytes) = msg.to_bytes() {
            self.transmits.push_back(bytes);
        }
    }

    fn require(&self, ok: bool, action: &'static str) -> Result<(), Error> {
        if ok {
            Ok(())
        } else {
            Err(StateError {
                action,
                state: self.state.describe(),
            }
            .into())
        }
    }

    /// Answers the client's HELLO. With `tls`, the caller must run the TLS
    /// handshake right after sending this and then call
    /// [`Server::handle_tls_established`].
    pub fn accept_hello(&mut self, tls: bool) -> Result<(), Error> {
        self.require(
            self.state == ServerState::HelloReceived,
            "the server's HELLO",
        )?;
        self.push(&ServerMessage::Hello { tls });
        self.state = if tls {
            ServerState::AwaitingTls
        } else {
            ServerState::Unauthenticated
        };
        Ok(())
    }

    /// The TLS upgrade has completed.
    pub fn handle_tls_established(&mut self) -> Result<(), Error> {
        self.require(self.state == ServerState::AwaitingTls, "completing TLS")?;
        self.state = ServerState::Unauthenticated;
        Ok(())
    }

    /// Answers AUTHENTICATE: `success` = the nick is now the client's.
    pub fn authenticate(&mut self, success: bool) -> Result<(), Error> {
        let Some(nick) = self.pending_auth.take() else {
            return self.require(false, "ACKNOWLEDGE_AUTHENTICATION");
        };
        self.push(&ServerMessage::AcknowledgeAuthentication { success });
        if success {
            self.state = ServerState::Ready { nick };
        }
        Ok(())
    }

    /// Sends a broadcast message; only to authenticated clients.
    pub fn send_message(&mut self, message: &ChatMessage) -> Result<(), Error> {
        self.require(
            matches!(self.state, ServerState::Ready { .. }),
            "SEND_MESSAGE",
        )?;
        let msg = ServerMessage::SendMessage(message.clone());
        self.transmits
            .push_back(msg.to_bytes().map_err(encode_error)?);
        Ok(())
    }

    /// Answers LIST_CHANNELS.
    pub fn list_channels(&mut self, channels: &[String]) -> Result<(), Error> {
        self.require(
            matches!(self.state, ServerState::Ready { .. }),
            "LIST_CHANNELS",
        )?;
        let msg = ServerMessage::ListChannels(channels.to_vec());
        self.transmits
            .push_back(msg.to_bytes().map_err(encode_error)?);
        Ok(())
    }

    /// Answers LIST_MESSAGES.
    pub fn list_messages(&mut self, messages: &[ChatMessage]) -> Result<(), Error> {
        self.require(
            matches!(self.state, ServerState::Ready { .. }),
            "LIST_MESSAGES",
        )?;
        let msg = ServerMessage::ListMessages(messages.to_vec());
        self.transmits
            .push_back(msg.to_bytes().map_err(encode_error)?);
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Result<(), Error> {
        self.state = ServerState::Failed;
        Err(e)
    }

    /// The next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next client request.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }
}

fn encode_error(e: crate::message::ServerEncodeError) -> Error {
    match e {
        crate::message::ServerEncodeError::Field(e) => Error::Encode(e),
        crate::message::ServerEncodeError::ListTooLong { len } => Error::ListTooLong { len },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(nick: &str) -> Server {
        let mut s = Server::default();
        s.handle_data(&[0, 2]).unwrap();
        assert_eq!(s.poll_event(), Some(ServerEvent::Hello));
        s.accept_hello(false).unwrap();
        s.handle_data(
            &ClientMessage::Authenticate { nick: nick.into() }
                .to_bytes()
                .unwrap(),
        )
        .unwrap();
        s.authenticate(true).unwrap();
        while s.poll_event().is_some() {}
        while s.poll_transmit().is_some() {}
        s
    }

    #[test]
    fn hello_and_authenticate_in_one_chunk_are_refused_like_the_reference() {
        let mut s = Server::default();
        let mut bytes = vec![0, 2];
        bytes.extend(
            ClientMessage::Authenticate { nick: "a".into() }
                .to_bytes()
                .unwrap(),
        );
        assert!(matches!(s.handle_data(&bytes), Err(Error::InvalidState(_))));
        assert_eq!(s.state(), &ServerState::Failed);
    }

    #[test]
    fn chat_before_the_authentication_answer_is_refused() {
        let mut s = Server::default();
        s.handle_data(&[0, 2]).unwrap();
        s.accept_hello(false).unwrap();
        let mut bytes = ClientMessage::Authenticate { nick: "a".into() }
            .to_bytes()
            .unwrap();
        bytes.push(4);
        assert!(matches!(s.handle_data(&bytes), Err(Error::InvalidState(_))));
    }

    #[test]
    fn wrong_version_gets_incompatible_and_may_retry() {
        let mut s = Server::default();
        s.handle_data(&[0, 9]).unwrap();
        assert_eq!(
            s.poll_event(),
            Some(ServerEvent::IncompatibleVersion { version: 9 })
        );
        assert_eq!(s.poll_transmit(), Some(vec![1, 2]));
        s.handle_data(&[0, 2]).unwrap();
        assert_eq!(s.poll_event(), Some(ServerEvent::Hello));
    }

    #[test]
    fn tls_must_complete_before_authentication() {
        let mut s = Server::default();
        s.handle_data(&[0, 2]).unwrap();
        s.accept_hello(true).unwrap();
        assert_eq!(s.poll_transmit(), Some(vec![0, 1]));
        assert_eq!(s.state(), &ServerState::AwaitingTls);
        s.handle_tls_established().unwrap();
        assert_eq!(s.poll_event(), Some(ServerEvent::Hello));
        s.handle_data(&[2, 1, b'x']).unwrap();
        assert_eq!(
            s.poll_event(),
            Some(ServerEvent::Authenticate { nick: "x".into() })
        );
    }

    #[test]
    fn refused_nick_may_retry_and_ready_serves_requests() {
        let mut s = Server::default();
        s.handle_data(&[0, 2]).unwrap();
        s.accept_hello(false).unwrap();
        s.handle_data(&[2, 1, b'x']).unwrap();
        s.authenticate(false).unwrap();
        s.handle_data(&[2, 1, b'y']).unwrap();
        s.authenticate(true).unwrap();
        assert_eq!(s.nick(), Some("y"));
        let mut s = ready("zed");
        s.handle_data(&[4]).unwrap();
        assert_eq!(s.poll_event(), Some(ServerEvent::ListChannels));
        s.list_channels(&["general".into()]).unwrap();
        assert_eq!(
            s.poll_transmit(),
            Some(vec![4, 0, 8, 7, b'g', b'e', b'n', b'e', b'r', b'a', b'l'])
        );
    }

    #[test]
    fn unauthenticated_clients_get_no_broadcasts() {
        let mut s = Server::default();
        let m = ChatMessage {
            id: crate::Snowflake(1),
            channel: "g".into(),
            nick: "n".into(),
            content: "c".into(),
        };
        assert!(s.send_message(&m).is_err());
        assert!(ready("a").send_message(&m).is_ok());
    }
}
