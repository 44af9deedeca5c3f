//! The browser <-> bridge session messages (text frames): the DIMP
//! handshake command and the bridge's `dumdum.bridge` notices.
//!
//! Both are DIMP contents: JSON objects whose `type` is a decimal string
//! (`"136"` for a command, `"160"` for application content) and which carry
//! an `sn` counter. Readers accept `type` as a string or an integer; writers
//! write a string. Unknown extra fields are ignored.

use std::time::Duration;

use crate::json::{self, Object, Value};

/// DIMP content type of a command (0x88).
pub const COMMAND_TYPE: u32 = 136;
/// DIMP content type of application-customised content (0xA0).
pub const APP_TYPE: u32 = 160;
/// The `app` of the bridge's notices.
pub const NOTICE_APP: &str = "dumdum.bridge";
/// The WebSocket subprotocol.
pub const SUBPROTOCOL: &str = "dumdum.v2";
/// The title a client sends in Start and Restart.
pub const HELLO_TITLE: &str = "Hello world!";
/// The title of Again.
pub const AGAIN_TITLE: &str = "DIM?";
/// The title of Success.
pub const SUCCESS_TITLE: &str = "DIM!";

/// WebSocket close codes of the contract, and what both sides must agree
/// on about them. Defined here once: the bridge closes with them and the
/// page explains them.
pub mod close {
    /// Normal close (the user left; the bridge ends the session).
    pub const NORMAL: u16 = 1000;
    /// The bridge is shutting down (or, from a client, the page went away:
    /// the session is held for a resume).
    pub const GOING_AWAY: u16 = 1001;
    /// No close frame: the connection was cut (never sent, only observed).
    pub const ABNORMAL: u16 = 1006;
    /// The client's frames break RFC 6455 (unmasked, reserved bits,
    /// broken fragmentation, an invalid close frame).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A malformed dumdum frame from the client (or WebSocket text that is
    /// not UTF-8).
    pub const MALFORMED: u16 = 1007;
    /// Policy: a frame out of order, an invalid text frame, a client too
    /// slow to read what it is sent.
    pub const POLICY: u16 = 1008;
    /// A frame larger than the limit.
    pub const TOO_BIG: u16 = 1009;
    /// Service restart: a drain deadline passed, or a drain refuses new
    /// sessions; reconnect through the load balancer to another instance.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Try again later: a per-IP or global session cap is reached; back off
    /// before reconnecting.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The upstream server is unreachable.
    pub const UPSTREAM_UNREACHABLE: u16 = 4001;
    /// The upstream server closed the connection.
    pub const UPSTREAM_CLOSED: u16 = 4002;
    /// TLS to the upstream server failed (certificate, handshake).
    pub const UPSTREAM_TLS: u16 = 4003;
    /// The handshake named a server the bridge does not know.
    pub const UNKNOWN_SERVER: u16 = 4004;
    /// The most bytes of UTF-8 a close reason can carry.
    pub const MAX_REASON_LEN: usize = 123;

    /// `reason` cut to fit [`MAX_REASON_LEN`] bytes at a character
    /// boundary, ending in "..." when it was cut (the full text goes in a
    /// notice or the log).
    pub fn clip_reason(reason: &str) -> std::borrow::Cow<'_, str> {
        if reason.len() <= MAX_REASON_LEN {
            return reason.into();
        }
        let mut end = MAX_REASON_LEN - 3;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &reason[..end]).into()
    }
}

/// Running acknowledgements (`session ack`): how often each side sends one.
pub mod ack {
    use super::Duration;

    /// The bridge acknowledges at least every this many forwarded frames...
    pub const BRIDGE_EVERY_FRAMES: u64 = 16;
    /// ...or this long after a forwarded frame, whichever comes first.
    pub const BRIDGE_AFTER: Duration = Duration::from_secs(1);
    /// A client acknowledges at least every this many received frames...
    pub const CLIENT_EVERY_FRAMES: u64 = 32;
    /// ...or this long after a received frame, whichever comes first.
    pub const CLIENT_AFTER: Duration = Duration::from_secs(2);
}

/// The query parameter naming the node that holds a session, on `/ws`.
pub const NODE_PARAM: &str = "node";

/// Where a handshake is, derived from `title` and `session` exactly as DIMP does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeState {
    /// C->B, without a session key.
    Start,
    /// B->C, with a new session key.
    Again,
    /// C->B, with a session key.
    Restart,
    /// B->C, the session is ready.
    Success,
}

/// The DIMP handshake command. Its `Debug` output shows only the first 8
/// hex digits of the session key (a bearer secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Serial number.
    pub sn: u32,
    /// "Hello world!", "DIM?" or "DIM!".
    pub title: String,
    /// The session key (64 hex digits).
    pub session: Option<String>,
    /// C->B in Start: which upstream server.
    pub server: Option<String>,
    /// Restart: binary frames the client received; Success: client frames
    /// the bridge forwarded upstream.
    pub received: Option<u64>,
    /// Success: whether an existing session was resumed.
    pub resumed: Option<bool>,
    /// Again and Success: the bridge instance that holds the session, when
    /// the operator named it (resumes go to `/ws?node=<node>`).
    pub node: Option<String>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// The key's first 8 characters, never the whole key.
        struct Redacted<'a>(&'a str);
        impl std::fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let shown: String = self.0.chars().take(8).collect();
                if shown.len() < self.0.len() {
                    write!(f, "\"{}…\"", shown.escape_debug())
                } else {
                    write!(f, "\"{}\"", shown.escape_debug())
                }
            }
        }
        f.debug_struct("Handshake")
            .field("sn", &self.sn)
            .field("title", &self.title)
            .field("session", &self.session.as_deref().map(Redacted))
            .field("server", &self.server)
            .field("received", &self.received)
            .field("resumed", &self.resumed)
            .field("node", &self.node)
            .finish()
    }
}

impl Handshake {
    /// Start: a client asks for a fresh session on `server` (or the default).
    pub fn start(sn: u32, server: Option<String>) -> Self {
        Handshake {
            sn,
            title: HELLO_TITLE.into(),
            session: None,
            server,
            received: None,
            resumed: None,
            node: None,
        }
    }

    /// Again: the bridge hands out a new session key.
    pub fn again(sn: u32, session: String) -> Self {
        Handshake {
            sn,
            title: AGAIN_TITLE.into(),
            session: Some(session),
            server: None,
            received: None,
            resumed: None,
            node: None,
        }
    }

    /// Restart: a client presents a key, having received `received` frames.
    pub fn restart(sn: u32, session: String, received: u64, server: Option<String>) -> Self {
        Handshake {
            sn,
            title: HELLO_TITLE.into(),
            session: Some(session),
            server,
            received: Some(received),
            resumed: None,
            node: None,
        }
    }

    /// Success: the session is ready; `received` = client frames forwarded.
    pub fn success(sn: u32, session: String, resumed: bool, received: u64) -> Self {
        Handshake {
            sn,
            title: SUCCESS_TITLE.into(),
            session: Some(session),
            server: None,
            received: Some(received),
            resumed: Some(resumed),
            node: None,
        }
    }

    /// This handshake naming the node that holds the session.
    #[must_use]
    pub fn with_node(mut self, node: Option<String>) -> Self {
        self.node = node;
        self
    }

    /// The state, as DIMP derives it.
    pub fn state(&self) -> HandshakeState {
        match self.title.as_str() {
            SUCCESS_TITLE => HandshakeState::Success,
            AGAIN_TITLE => HandshakeState::Again,
            _ if self.session.as_deref().is_none_or(str::is_empty) => HandshakeState::Start,
            _ => HandshakeState::Restart,
        }
    }
}

/// A bridge notice: something that is not a dumdum message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// The TCP connection to the server is up.
    UpstreamConnected {
        /// The server's name.
        server: String,
    },
    /// The in-band TLS upgrade completed.
    UpstreamSecured {
        /// For example "TLSv1.3".
        tls_version: String,
        /// The certificate's subject.
        peer: String,
        /// SHA-256 of the leaf certificate, hex.
        fingerprint: String,
    },
    /// The server closed the connection.
    UpstreamClosed {
        /// In words.
        reason: String,
    },
    /// Connecting or TLS failed.
    UpstreamError {
        /// In words.
        reason: String,
    },
    /// A session was resumed.
    SessionResumed {
        /// Frames re-sent.
        replayed: u64,
    },
    /// A running acknowledgement: binary frames received in this session
    /// (B->C: client frames forwarded upstream; C->B: server frames
    /// received). Counts never go down.
    SessionAck {
        /// The count.
        received: u64,
    },
    /// The bridge is being taken out of service: the session closes with
    /// [`close::SERVICE_RESTART`] at the latest in `deadline_s` seconds.
    SessionDraining {
        /// Seconds until the deadline.
        deadline_s: u64,
    },
    /// A notice this version does not know.
    Other {
        /// `mod`.
        module: String,
        /// `act`.
        act: String,
    },
}

/// One text frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Content {
    /// The handshake command.
    Handshake(Handshake),
    /// A bridge notice with its serial number.
    Notice {
        /// Serial number.
        sn: u32,
        /// The notice.
        notice: Notice,
    },
}

/// Why a text frame is not a valid session message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Not JSON, or not an object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// A required field is missing or has the wrong type.
    #[error("field `{0}` is missing or has the wrong type")]
    Field(&'static str),
    /// A content type this side does not handle.
    #[error("unsupported content type {0}")]
    UnsupportedType(u64),
    /// A command other than the handshake.
    #[error("unsupported command `{0}`")]
    UnsupportedCommand(String),
    /// Application content that is not a bridge notice.
    #[error("unsupported application `{0}`")]
    UnsupportedApp(String),
}

fn read_type(obj: &Value) -> Result<u64, SessionError> {
    match obj.get("type") {
        Some(Value::String(s)) => s.parse().map_err(|_| SessionError::Field("type")),
        Some(n @ Value::Number(_)) => n.as_u64().ok_or(SessionError::Field("type")),
        _ => Err(SessionError::Field("type")),
    }
}

fn opt_str(obj: &Value, key: &'static str) -> Result<Option<String>, SessionError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(SessionError::Field(key)),
    }
}

fn req_str(obj: &Value, key: &'static str) -> Result<String, SessionError> {
    opt_str(obj, key)?.ok_or(SessionError::Field(key))
}

fn opt_u64(obj: &Value, key: &'static str) -> Result<Option<u64>, SessionError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(SessionError::Field(key)),
    }
}

impl Content {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Content, SessionError> {
        let obj = json::parse(text).map_err(|e| SessionError::NotJson(e.to_string()))?;
        if !matches!(obj, Value::Object(_)) {
            return Err(SessionError::NotJson("not an object".into()));
        }
        let ty = read_type(&obj)?;
        let sn = opt_u64(&obj, "sn")?
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(SessionError::Field("sn"))?;
        match ty {
            t if t == u64::from(COMMAND_TYPE) => {
                let command = req_str(&obj, "command")?;
                if command != "handshake" {
                    return Err(SessionError::UnsupportedCommand(command));
                }
                let resumed = match obj.get("resumed") {
                    None | Some(Value::Null) => None,
                    Some(Value::Bool(b)) => Some(*b),
                    Some(_) => return Err(SessionError::Field("resumed")),
                };
                Ok(Content::Handshake(Handshake {
                    sn,
                    title: opt_str(&obj, "title")?.unwrap_or_default(),
                    session: opt_str(&obj, "session")?,
                    server: opt_str(&obj, "server")?,
                    received: opt_u64(&obj, "received")?,
                    resumed,
                    node: opt_str(&obj, "node")?,
                }))
            }
            t if t == u64::from(APP_TYPE) => {
                let app = req_str(&obj, "app")?;
                if app != NOTICE_APP {
                    return Err(SessionError::UnsupportedApp(app));
                }
                let module = req_str(&obj, "mod")?;
                let act = req_str(&obj, "act")?;
                let notice = match (module.as_str(), act.as_str()) {
                    ("upstream", "connected") => Notice::UpstreamConnected {
                        server: req_str(&obj, "server")?,
                    },
                    ("upstream", "secured") => Notice::UpstreamSecured {
                        tls_version: req_str(&obj, "tls_version")?,
                        peer: req_str(&obj, "peer")?,
                        fingerprint: req_str(&obj, "fingerprint")?,
                    },
                    ("upstream", "closed") => Notice::UpstreamClosed {
                        reason: req_str(&obj, "reason")?,
                    },
                    ("upstream", "error") => Notice::UpstreamError {
                        reason: req_str(&obj, "reason")?,
                    },
                    ("session", "resumed") => Notice::SessionResumed {
                        replayed: opt_u64(&obj, "replayed")?
                            .ok_or(SessionError::Field("replayed"))?,
                    },
                    ("session", "ack") => Notice::SessionAck {
                        received: opt_u64(&obj, "received")?
                            .ok_or(SessionError::Field("received"))?,
                    },
                    ("session", "draining") => Notice::SessionDraining {
                        deadline_s: opt_u64(&obj, "deadline_s")?
                            .ok_or(SessionError::Field("deadline_s"))?,
                    },
                    _ => Notice::Other { module, act },
                };
                Ok(Content::Notice { sn, notice })
            }
            other => Err(SessionError::UnsupportedType(other)),
        }
    }

    /// The JSON text of this content (members sorted by key).
    pub fn to_json(&self) -> String {
        match self {
            Content::Handshake(h) => {
                let mut o = Object::new()
                    .str("type", &COMMAND_TYPE.to_string())
                    .u64("sn", u64::from(h.sn))
                    .str("command", "handshake")
                    .str("title", &h.title)
                    .str("message", &h.title);
                if let Some(s) = &h.session {
                    o = o.str("session", s);
                }
                if let Some(s) = &h.server {
                    o = o.str("server", s);
                }
                if let Some(r) = h.resumed {
                    o = o.bool("resumed", r);
                }
                if let Some(r) = h.received {
                    o = o.u64("received", r);
                }
                if let Some(n) = &h.node {
                    o = o.str("node", n);
                }
                o.finish_sorted()
            }
            Content::Notice { sn, notice } => {
                let o = Object::new()
                    .str("type", &APP_TYPE.to_string())
                    .u64("sn", u64::from(*sn))
                    .str("app", NOTICE_APP);
                let (module, act, o) = match notice {
                    Notice::UpstreamConnected { server } => {
                        ("upstream", "connected", o.str("server", server))
                    }
                    Notice::UpstreamSecured {
                        tls_version,
                        peer,
                        fingerprint,
                    } => (
                        "upstream",
                        "secured",
                        o.str("tls_version", tls_version)
                            .str("peer", peer)
                            .str("fingerprint", fingerprint),
                    ),
                    Notice::UpstreamClosed { reason } => {
                        ("upstream", "closed", o.str("reason", reason))
                    }
                    Notice::UpstreamError { reason } => {
                        ("upstream", "error", o.str("reason", reason))
                    }
                    Notice::SessionResumed { replayed } => {
                        ("session", "resumed", o.u64("replayed", *replayed))
                    }
                    Notice::SessionAck { received } => {
                        ("session", "ack", o.u64("received", *received))
                    }
                    Notice::SessionDraining { deadline_s } => {
                        ("session", "draining", o.u64("deadline_s", *deadline_s))
                    }
                    Notice::Other { module, act } => (module.as_str(), act.as_str(), o),
                };
                o.str("mod", module).str("act", act).finish_sorted()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples_parse_with_their_states() {
        let cases = [
            (
                r#"{"type":"136","sn":1,"command":"handshake","title":"Hello world!","message":"Hello world!","server":"local"}"#,
                HandshakeState::Start,
            ),
            (
                r#"{"type":"136","sn":7,"command":"handshake","title":"DIM?","message":"DIM?","session":"ab"}"#,
                HandshakeState::Again,
            ),
            (
                r#"{"type":"136","sn":2,"command":"handshake","title":"Hello world!","message":"Hello world!","session":"ab","received":0}"#,
                HandshakeState::Restart,
            ),
            (
                r#"{"type":136,"sn":8,"command":"handshake","title":"DIM!","message":"DIM!","session":"ab","resumed":false,"received":0,"extra":[1]}"#,
                HandshakeState::Success,
            ),
            // An empty session counts as none, as in DIMP.
            (
                r#"{"type":"136","sn":3,"command":"handshake","title":"Hello world!","session":""}"#,
                HandshakeState::Start,
            ),
        ];
        for (text, state) in cases {
            let Content::Handshake(h) = Content::parse(text).unwrap() else {
                panic!("not a handshake: {text}");
            };
            assert_eq!(h.state(), state, "{text}");
        }
    }

    #[test]
    fn round_trips() {
        let items = [
            Content::Handshake(Handshake::start(1, Some("local".into()))),
            Content::Handshake(Handshake::again(2, "a".repeat(64))),
            Content::Handshake(Handshake::restart(3, "b".repeat(64), 17, None)),
            Content::Handshake(Handshake::success(4, "c".repeat(64), true, 9)),
            Content::Handshake(Handshake::again(5, "d".repeat(64)).with_node(Some("b1".into()))),
            Content::Handshake(
                Handshake::success(6, "e".repeat(64), false, 0).with_node(Some("b2".into())),
            ),
            Content::Notice {
                sn: 7,
                notice: Notice::SessionAck { received: 17 },
            },
            Content::Notice {
                sn: 8,
                notice: Notice::SessionDraining { deadline_s: 30 },
            },
            Content::Notice {
                sn: 5,
                notice: Notice::UpstreamSecured {
                    tls_version: "TLSv1.3".into(),
                    peer: "CN=localhost".into(),
                    fingerprint: "00ff".into(),
                },
            },
            Content::Notice {
                sn: 6,
                notice: Notice::SessionResumed { replayed: 3 },
            },
        ];
        for c in items {
            let text = c.to_json();
            assert!(
                text.contains(r#""type":"1"#),
                "type written as a string: {text}"
            );
            assert_eq!(Content::parse(&text).unwrap(), c);
        }
    }

    #[test]
    fn json_is_written_as_serde_json_wrote_it() {
        // The bridge's frames are byte for byte what they were when
        // `serde_json::Value` (keys sorted) wrote them.
        let items = [
            Content::Handshake(Handshake::restart(
                3,
                "b\"\u{1}".into(),
                17,
                Some("é".into()),
            )),
            Content::Handshake(
                Handshake::success(4, "c".repeat(64), true, 9).with_node(Some("n".into())),
            ),
            Content::Notice {
                sn: 5,
                notice: Notice::UpstreamSecured {
                    tls_version: "TLSv1.3".into(),
                    peer: "CN=x\n".into(),
                    fingerprint: "00ff".into(),
                },
            },
            Content::Notice {
                sn: 8,
                notice: Notice::SessionDraining { deadline_s: 30 },
            },
            Content::Notice {
                sn: 9,
                notice: Notice::Other {
                    module: "m".into(),
                    act: "a".into(),
                },
            },
        ];
        for c in items {
            let text = c.to_json();
            let theirs: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(text, theirs.to_string());
        }
    }

    #[test]
    fn spec_ack_example_parses() {
        let text = r#"{"type":"160","sn":9,"app":"dumdum.bridge","mod":"session","act":"ack","received":17}"#;
        assert_eq!(
            Content::parse(text),
            Ok(Content::Notice {
                sn: 9,
                notice: Notice::SessionAck { received: 17 }
            })
        );
        let again = r#"{"type":"136","sn":7,"command":"handshake","title":"DIM?","message":"DIM?","session":"ab","node":"b1"}"#;
        let Ok(Content::Handshake(h)) = Content::parse(again) else {
            panic!("not a handshake");
        };
        assert_eq!(h.node.as_deref(), Some("b1"));
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        assert_eq!(close::clip_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close::clip_reason(&long);
        assert!(cut.len() <= close::MAX_REASON_LEN);
        assert_eq!(cut.len(), 123);
        assert!(cut.ends_with("..."));
        assert!(long.starts_with(cut.trim_end_matches('.')));
    }

    #[test]
    fn debug_shows_only_the_first_8_hex_digits_of_the_key() {
        let key = "0123456789abcdef".repeat(4);
        let h = Handshake::success(8, key.clone(), true, 3);
        for text in [
            format!("{h:?}"),
            format!("{h:#?}"),
            format!("{:?}", Content::Handshake(h.clone())),
        ] {
            assert!(!text.contains(&key[..9]), "{text}");
            assert!(text.contains("\"01234567…\""), "{text}");
        }
        assert!(format!("{h:?}").contains("received: Some(3)"));
        let short = Handshake::restart(1, "abc".into(), 0, None);
        assert!(format!("{short:?}").contains("Some(\"abc\")"));
        assert!(format!("{:?}", Handshake::start(1, None)).contains("session: None"));
    }

    #[test]
    fn bad_input_is_named() {
        assert!(matches!(
            Content::parse("nope"),
            Err(SessionError::NotJson(_))
        ));
        assert_eq!(
            Content::parse(r#"{"sn":1}"#),
            Err(SessionError::Field("type"))
        );
        assert_eq!(
            Content::parse(r#"{"type":"136"}"#),
            Err(SessionError::Field("sn"))
        );
        assert_eq!(
            Content::parse(r#"{"type":"136","sn":1,"command":"login"}"#),
            Err(SessionError::UnsupportedCommand("login".into()))
        );
        assert_eq!(
            Content::parse(r#"{"type":"1","sn":1}"#),
            Err(SessionError::UnsupportedType(1))
        );
    }
}
