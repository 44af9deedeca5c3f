//! The chat session, sans I/O: the bridge handshake, the dumdum protocol
//! client, channel selection, history paging and catch-up after a
//! reconnect. Inputs are WebSocket events and user commands; outputs are
//! frames to send, [`Action`]s for the view and values to remember. The
//! browser glue (`hooks::use_chat`) only moves bytes; everything here is
//! tested natively.
//!
//! Resumable sessions (`bridge-ws.md`, "Session handshake"): every binary
//! frame sent and received in a bridge session is numbered; outgoing frames
//! are kept until the bridge says it forwarded them. On a reconnect the
//! engine first presents its session key (Restart) with the number of frames
//! it received; on Success(resumed) it drops the frames the bridge forwarded,
//! re-sends the rest, and goes on with the same protocol state (no HELLO, no
//! AUTHENTICATE) while the bridge replays what it missed. On Again it starts
//! a fresh session and catches up with LIST_MESSAGES. [`Engine::saved`] and
//! [`Engine::restore`] carry a session across a page reload.
//!
//! Several bridges behind a load balancer (`bridge-ws.md`, `node`): the
//! bridge names the instance that holds the session in Again and Success;
//! the engine remembers it with the key and a reconnect that resumes opens
//! `/ws?node=NAME` ([`Engine::ws_node`]); a fresh session opens plain `/ws`.
//! When a bridge is taken out of service (close 1012, or the `session
//! draining` notice followed by a quiet moment) or is gone (Again from
//! another node after a Restart), the engine starts a fresh session at once
//! through plain `/ws`, signs in with the same nick and catches up every
//! channel from the newest message it had: "Moved to another server".
//! Running acknowledgements (`session ack`) go both ways: the engine tells
//! the bridge how many frames it received ([`Output::AckAfter`],
//! [`Engine::ack_due`]) and trims its unconfirmed frames on the bridge's.

use std::collections::VecDeque;

use dumdum_protocol::session::{Content, Handshake, HandshakeState, Notice, ack};
use dumdum_protocol::{
    Client, ClientConfig, ClientMessage, ClientState, Decode, Event, HistoryQuery, ServerMessage,
    Snowflake, TlsMode,
};

use crate::format::{draft_problem, nick_problem};
use crate::problem::{Problem, code};
use crate::search::{Needle, PAGES_PER_RUN};
use crate::small::NameMap;
use crate::state::{Action, HistoryKind, OlderSearch, SearchStatus, Security};

/// How many times a fresh session retries, with a new connection, a nick
/// its previous session held before the page asks for another: the old
/// session may still be ending. After that the nick is most likely held by
/// someone else, or by this session in another tab (a duplicated tab
/// copies `sessionStorage`; the bridge refuses the copied key while the
/// original tab's socket lives).
pub const NICK_RETRIES: u32 = 3;
/// The wait before each of those retries (not the reconnect backoff: the
/// retries are meant to fit in a few seconds).
pub const NICK_RETRY_DELAY_MS: u64 = 2_000;

/// Outgoing frames kept for a resume, at most (see [`Unacked`]).
pub const UNACKED_MAX_FRAMES: usize = 64;
/// Bytes of outgoing frames kept for a resume, at most.
pub const UNACKED_MAX_BYTES: usize = 64 * 1024;

/// Outgoing binary frames the bridge has not confirmed, numbered from the
/// session's first (frame `n` is the `n+1`-th sent).
///
/// The bridge confirms them with its running acknowledgements (`session
/// ack`, at least every 16 frames or 1 s) and when a session resumes (its
/// `received`); [`Unacked::ack`] drops what it confirmed. A bridge that
/// never acknowledges (an older one) confirms only on a resume, so the
/// buffer is bounded anyway: it keeps the newest frames up to
/// [`UNACKED_MAX_FRAMES`] and [`UNACKED_MAX_BYTES`]; older ones are dropped
/// (the bridge forwards frames as soon as the server's state allows, so they
/// are long gone upstream). If a resume ever needs a dropped frame, the
/// session cannot continue exactly: [`Unacked::ack`] says so and the engine
/// ends that session and starts a fresh one (HELLO, AUTHENTICATE, catch-up),
/// where a message the bridge never forwarded is not sent again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unacked {
    first: u64,
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Unacked {
    /// Keeps `frame`, the next one sent.
    pub fn push(&mut self, frame: Vec<u8>) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
        while self.frames.len() > UNACKED_MAX_FRAMES || self.bytes > UNACKED_MAX_BYTES {
            match self.frames.pop_front() {
                Some(f) => {
                    self.bytes -= f.len();
                    self.first += 1;
                }
                None => break,
            }
        }
    }

    /// The number of the oldest frame held.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The number the next frame sent gets (frames sent so far).
    pub fn end(&self) -> u64 {
        self.first + self.frames.len() as u64
    }

    /// The frames held, oldest first.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.frames.iter().map(Vec::as_slice)
    }

    /// The bridge forwarded `received` frames: drops those. False when the
    /// bridge needs frames no longer held, or claims more than were sent.
    pub fn ack(&mut self, received: u64) -> bool {
        if received < self.first || received > self.end() {
            return false;
        }
        while self.first < received {
            match self.frames.pop_front() {
                Some(f) => {
                    self.bytes -= f.len();
                    self.first += 1;
                }
                None => break,
            }
        }
        true
    }
}

/// A history request on its way, as stored across a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavedQuery {
    /// [`HistoryQuery::Newest`].
    Newest,
    /// [`HistoryQuery::OlderThan`].
    OlderThan {
        /// The id.
        id: u64,
    },
    /// [`HistoryQuery::NewerThan`].
    NewerThan {
        /// The id.
        id: u64,
    },
    /// [`HistoryQuery::Between`].
    Between {
        /// Exclusive lower bound.
        after: u64,
        /// Exclusive upper bound.
        before: u64,
    },
}

impl From<HistoryQuery> for SavedQuery {
    fn from(q: HistoryQuery) -> Self {
        match q {
            HistoryQuery::Newest => SavedQuery::Newest,
            HistoryQuery::OlderThan(id) => SavedQuery::OlderThan { id: id.0 },
            HistoryQuery::NewerThan(id) => SavedQuery::NewerThan { id: id.0 },
            HistoryQuery::Between { after, before } => SavedQuery::Between {
                after: after.0,
                before: before.0,
            },
        }
    }
}

impl From<SavedQuery> for HistoryQuery {
    fn from(q: SavedQuery) -> Self {
        match q {
            SavedQuery::Newest => HistoryQuery::Newest,
            SavedQuery::OlderThan { id } => HistoryQuery::OlderThan(Snowflake(id)),
            SavedQuery::NewerThan { id } => HistoryQuery::NewerThan(Snowflake(id)),
            SavedQuery::Between { after, before } => HistoryQuery::Between {
                after: Snowflake(after),
                before: Snowflake(before),
            },
        }
    }
}

/// Where the dumdum protocol stood, as stored across a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedClient {
    /// Nothing sent yet.
    Start,
    /// HELLO sent.
    AwaitingHello,
    /// The server's HELLO arrived; no nick accepted (it was refused).
    Unauthenticated {
        /// The server announced TLS (done by the bridge).
        tls: bool,
    },
    /// AUTHENTICATE sent.
    Authenticating {
        /// The nick asked for.
        nick: String,
        /// The server announced TLS.
        tls: bool,
    },
    /// Authenticated.
    Ready {
        /// Our nick.
        nick: String,
        /// The server announced TLS.
        tls: bool,
    },
}

/// A bridge session as kept in `sessionStorage`, so that a reload of the
/// same tab resumes it. Written after every event the engine handled, so
/// its counts always match what the page had processed; small (no frames):
/// the unconfirmed outgoing frames are kept apart, in [`SavedFrames`],
/// written only when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The server name asked for.
    pub server: Option<String>,
    /// The nick in use (or to be used).
    pub nick: String,
    /// The bridge's session key (a bearer secret).
    pub key: String,
    /// Binary frames received in the session.
    pub received: u64,
    /// Binary frames sent in the session: the unconfirmed ones
    /// ([`SavedFrames`]) are the last of these.
    pub sent: u64,
    /// The protocol state.
    pub client: SavedClient,
    /// LIST_MESSAGES requests whose replies have not arrived, in order.
    pub history: Vec<(String, SavedQuery)>,
    /// The channel shown.
    pub active: Option<String>,
    /// The server's name as the bridge reported it.
    pub upstream: Option<String>,
    /// The link's TLS details, as the bridge reported them.
    pub security: Option<Security>,
    /// The last `sn` used in a text frame.
    pub sn: u32,
    /// The bridge instance that holds the session (`node` of Again and
    /// Success): a resume opens `/ws?node=NAME`. Absent in sessions stored
    /// by older pages.
    pub node: Option<String>,
}

/// The outgoing frames of a session the bridge has not confirmed, as kept
/// in `sessionStorage` next to [`Saved`]. They change only when a frame is
/// sent or the bridge confirms some, not when one is received, so the page
/// writes them only then ([`Persisted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFrames {
    /// The session they belong to (its key).
    pub key: String,
    /// The number of the first.
    pub from: u64,
    /// The frames, hex, oldest first: numbers `from` to
    /// `from + frames.len() - 1`.
    pub frames: Vec<String>,
}

/// Which unconfirmed frames a [`SavedFrames`] holds: within one session
/// (one key) frame `n` is always the same bytes, so the session key and the
/// range identify the contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramesStamp {
    key: String,
    from: u64,
    end: u64,
}

/// A `sessionStorage` write to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Nothing changed.
    Keep,
    /// Store this JSON.
    Set(String),
    /// Forget the key.
    Remove,
}

/// What the page last wrote of its session to `sessionStorage`: decides
/// after each event what to write again. The small state ([`Saved`]) is
/// written whenever it changed (every frame received changes its count);
/// the frames ([`SavedFrames`], up to [`UNACKED_MAX_BYTES`] hex encoded)
/// only when the set of unconfirmed frames changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persisted {
    state: Option<String>,
    frames: Option<FramesStamp>,
}

impl Persisted {
    /// After a reload: what storage holds is the session `engine` was
    /// restored from.
    pub fn restored(state_json: String, engine: &Engine) -> Persisted {
        Persisted {
            state: Some(state_json),
            frames: engine.frames_stamp(),
        }
    }

    /// The writes that bring storage up to `engine`'s session (`None`: no
    /// session: both forgotten), as (state, frames). Writing the frames
    /// first keeps a failed second write detectable: [`Engine::restore`]
    /// checks that both describe the same frames.
    pub fn update(&mut self, engine: Option<&Engine>) -> (Write, Write) {
        let saved = engine.and_then(Engine::saved);
        let mut stamp = match (&saved, engine) {
            (Some(_), Some(e)) => e.frames_stamp(),
            _ => None,
        };
        let frames = if stamp == self.frames {
            Write::Keep
        } else {
            let json = stamp
                .as_ref()
                .and(engine)
                .and_then(Engine::saved_frames)
                .map(|f| f.to_json());
            match json {
                Some(j) => Write::Set(j),
                None => {
                    stamp = None;
                    Write::Remove
                }
            }
        };
        let state_json = saved.map(|s| s.to_json());
        let state = if state_json == self.state {
            Write::Keep
        } else {
            match &state_json {
                Some(j) => Write::Set(j.clone()),
                None => Write::Remove,
            }
        };
        self.frames = stamp;
        self.state = state_json;
        (state, frames)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

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
    /// Call [`Engine::ack_due`] after this many milliseconds (unless the
    /// connection ended meanwhile): a frame arrived that the bridge has not
    /// been told about.
    AckAfter {
        /// The delay.
        ms: u64,
    },
    /// The bridge is being taken out of service: this connection ends with
    /// 1012 within `deadline_s` seconds. The glue shows it and may call
    /// [`Engine::move_if_quiet`] before then (see there).
    Draining {
        /// Seconds until the deadline.
        deadline_s: u64,
    },
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
    unacked: Unacked,
    /// LIST_MESSAGES requests whose replies have not arrived (mirrors the
    /// protocol client's queue, which is private, for [`Engine::saved`]).
    history_in_flight: VecDeque<(String, HistoryQuery)>,
    /// A Restart with a held key was sent on this connection.
    resuming: bool,
    /// Restored after a reload: the view holds nothing yet.
    view_empty: bool,
    upstream_name: Option<String>,
    security: Option<Security>,
    opened: bool,
    ready: bool,
    was_ready: bool,
    /// The AUTHENTICATE on its way was sent by the engine itself (after
    /// HELLO), not asked for by the user.
    auto_nick: bool,
    /// Connections closed so far because our previous nick was still held.
    nick_retries: u32,
    fatal: Option<Problem>,
    upstream_note: Option<String>,
    channels: Vec<String>,
    active: Option<String>,
    oldest: NameMap<Snowflake>,
    newest: NameMap<Snowflake>,
    requested: NameMap<()>,
    out: Vec<Output>,
    /// The bridge instance that holds the session, as Again or Success
    /// named it (`None`: not named, or no session).
    node: Option<String>,
    /// This connection was opened at `/ws?node=…`.
    via_node: bool,
    /// A WebSocket to the session's node failed before opening: the node
    /// is gone (or the load balancer has no route to it), so the next
    /// attempt opens plain `/ws`, where another instance answers the
    /// Restart with Again.
    node_unreachable: bool,
    /// The session is moving to another bridge (1012, a proactive move, or
    /// Again from another node after a Restart): the next sign-in says
    /// "Moved to another server".
    moving: bool,
    /// Reconnect without waiting ([`Engine::reconnect_now`]).
    reconnect_now: bool,
    /// [`Engine::move_if_quiet`] closed this connection to move.
    move_started: bool,
    /// The bridge said it is draining (this connection).
    draining: bool,
    /// Frames received that the bridge was told about (`session ack`, or
    /// `received` in Restart).
    acked_in: u64,
    /// An [`Output::AckAfter`] is pending.
    ack_armed: bool,
    /// The "search older" under way, if any.
    hunt: Option<Hunt>,
}

/// A "search older" under way: pages back through one channel's history
/// until a page holds a match ([`Engine::search_older`]).
#[derive(Debug, Clone)]
struct Hunt {
    channel: String,
    query: String,
    needle: Needle,
    /// The page asked for and not yet answered.
    awaiting: HistoryQuery,
    /// Pages answered so far.
    pages: u32,
}

fn new_client() -> Client {
    Client::new(ClientConfig {
        tls: TlsMode::Transparent,
        ..ClientConfig::default()
    })
}

/// A protocol client in the state `saved` describes, built by running the
/// same steps on the state machine (the frames it would send and the events
/// it reports are discarded: they happened before the reload).
fn rebuild_client(saved: &SavedClient, history: &[(String, SavedQuery)]) -> Result<Client, String> {
    let mut c = new_client();
    let fail = |e: dumdum_protocol::Error| format!("cannot restore the protocol state: {e}");
    let (nick, tls, ready) = match saved {
        SavedClient::Start => (None, false, false),
        SavedClient::AwaitingHello => {
            c.hello().map_err(fail)?;
            (None, false, false)
        }
        SavedClient::Unauthenticated { tls } => (None, *tls, false),
        SavedClient::Authenticating { nick, tls } => (Some(nick), *tls, false),
        SavedClient::Ready { nick, tls } => (Some(nick), *tls, true),
    };
    if !matches!(saved, SavedClient::Start | SavedClient::AwaitingHello) {
        c.hello().map_err(fail)?;
        c.handle_message(ServerMessage::Hello { tls })
            .map_err(fail)?;
    }
    if let Some(nick) = nick {
        c.authenticate(nick).map_err(fail)?;
    }
    if ready {
        c.handle_message(ServerMessage::AcknowledgeAuthentication { success: true })
            .map_err(fail)?;
    }
    if !history.is_empty() && !ready {
        return Err("history requests stored for an unauthenticated session".into());
    }
    for (channel, q) in history {
        c.list_messages(channel, HistoryQuery::from(*q))
            .map_err(fail)?;
    }
    while c.poll_transmit().is_some() {}
    while c.poll_event().is_some() {}
    Ok(c)
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
            unacked: Unacked::default(),
            history_in_flight: VecDeque::new(),
            resuming: false,
            view_empty: false,
            upstream_name: None,
            security: None,
            opened: false,
            ready: false,
            was_ready: false,
            auto_nick: false,
            nick_retries: 0,
            fatal: None,
            upstream_note: None,
            channels: Vec::new(),
            active: None,
            oldest: NameMap::new(),
            newest: NameMap::new(),
            requested: NameMap::new(),
            out: Vec::new(),
            node: None,
            via_node: false,
            node_unreachable: false,
            moving: false,
            reconnect_now: false,
            move_started: false,
            draining: false,
            acked_in: 0,
            ack_armed: false,
            hunt: None,
        }
    }

    /// The bridge instance that holds the session, if the bridge named it.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The node to put in the URL of the connection being opened
    /// (`/ws?node=NAME`, after [`Engine::begin_connection`]): the session's
    /// node when this connection resumes; `None` (plain `/ws`) for a fresh
    /// session, a session told no node, or when a WebSocket to that node
    /// failed to open. The session key never goes in a URL.
    pub fn ws_node(&self) -> Option<&str> {
        if self.via_node {
            self.node.as_deref()
        } else {
            None
        }
    }

    /// Whether the next connection should open without the usual backoff:
    /// the bridge that held a working session is going away (1012) or the
    /// page left it to move ([`Engine::move_if_quiet`]), and another bridge
    /// behind the load balancer can take the session now. A 1012 that ends
    /// a connection which never got Success (a draining bridge refusing a
    /// Start) backs off as usual, so a lone draining bridge is not hammered.
    pub fn reconnect_now(&self) -> bool {
        self.reconnect_now
    }

    /// The server name asked for.
    pub fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// The nick used (or to be used).
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// The channel shown.
    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
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
        (self.frames_in, self.unacked.end())
    }

    /// Outgoing frames not confirmed by the bridge.
    pub fn unacked(&self) -> &Unacked {
        &self.unacked
    }

    /// What to keep in `sessionStorage` so a reload resumes this session;
    /// `None` when there is no session to resume.
    pub fn saved(&self) -> Option<Saved> {
        let key = self.session_key.clone()?;
        let tls = self.client.is_tls();
        let client = match self.client.state() {
            ClientState::Start => SavedClient::Start,
            ClientState::AwaitingHello => SavedClient::AwaitingHello,
            ClientState::Unauthenticated => SavedClient::Unauthenticated { tls },
            ClientState::Authenticating { nick } => SavedClient::Authenticating {
                nick: nick.clone(),
                tls,
            },
            ClientState::Ready { nick, .. } => SavedClient::Ready {
                nick: nick.clone(),
                tls,
            },
            ClientState::AwaitingTls | ClientState::Failed => return None,
        };
        Some(Saved {
            server: self.server.clone(),
            nick: self.nick.clone(),
            key,
            received: self.frames_in,
            sent: self.unacked.end(),
            client,
            history: self
                .history_in_flight
                .iter()
                .map(|(c, q)| (c.clone(), SavedQuery::from(*q)))
                .collect(),
            active: self.active.clone(),
            upstream: self.upstream_name.clone(),
            security: self.security.clone(),
            sn: self.sn,
            node: self.node.clone(),
        })
    }

    /// The unconfirmed outgoing frames to keep next to [`Engine::saved`];
    /// `None` when there is no session to resume.
    pub fn saved_frames(&self) -> Option<SavedFrames> {
        Some(SavedFrames {
            key: self.session_key.clone()?,
            from: self.unacked.first(),
            frames: self.unacked.frames().map(hex).collect(),
        })
    }

    /// Which frames [`Engine::saved_frames`] would hold.
    pub fn frames_stamp(&self) -> Option<FramesStamp> {
        Some(FramesStamp {
            key: self.session_key.clone()?,
            from: self.unacked.first(),
            end: self.unacked.end(),
        })
    }

    /// The session of `saved` and its unconfirmed frames, after a page
    /// reload: the protocol client is rebuilt in the state it had (a client
    /// that was authenticated is authenticated again, with the same nick and
    /// the same history requests on their way) without sending anything, so
    /// the next connection resumes with Restart. The view starts empty:
    /// after resuming, the engine fetches the channel list and the shown
    /// channel's history.
    ///
    /// Frames that are missing or belong to another state (a write that
    /// failed) are not guessed: the session resumes with none held, which
    /// works when the bridge forwarded all of them and otherwise ends in a
    /// fresh session ([`Unacked::ack`]).
    pub fn restore(saved: Saved, frames: Option<SavedFrames>) -> Result<Engine, String> {
        let mut unacked = Unacked {
            first: saved.sent,
            ..Unacked::default()
        };
        let mut note = None;
        match frames {
            Some(f)
                if f.key == saved.key
                    && f.from.checked_add(f.frames.len() as u64) == Some(saved.sent) =>
            {
                unacked.first = f.from;
                for f in &f.frames {
                    let frame = unhex(f).ok_or("a stored frame is not hex")?;
                    ClientMessage::decode_exact(&frame)
                        .map_err(|e| format!("a stored frame is not a client message: {e}"))?;
                    unacked.bytes += frame.len();
                    unacked.frames.push_back(frame);
                }
            }
            Some(_) => {
                note = Some(
                    "the stored frames belong to another state of the session; resuming without them",
                );
            }
            None if saved.sent > 0 => {
                note = Some("no stored frames for the session; resuming without them");
            }
            None => {}
        }
        let client = rebuild_client(&saved.client, &saved.history)?;
        let mut e = Engine::new(saved.server, saved.nick, saved.active.clone());
        e.was_ready = matches!(client.state(), ClientState::Ready { .. });
        e.client = client;
        e.session_key = Some(saved.key);
        e.frames_in = saved.received;
        e.unacked = unacked;
        e.history_in_flight = saved
            .history
            .into_iter()
            .map(|(c, q)| (c, HistoryQuery::from(q)))
            .collect();
        // A newest page on its way fills the shown channel after the reload.
        e.requested = e
            .history_in_flight
            .iter()
            .filter(|(_, q)| *q == HistoryQuery::Newest)
            .map(|(c, _)| (c.clone(), ()))
            .collect();
        e.active = saved.active;
        e.upstream_name = saved.upstream;
        e.security = saved.security;
        e.sn = saved.sn;
        e.node = saved.node;
        e.view_empty = true;
        if let Some(note) = note {
            e.out.push(Output::Log(note.into()));
        }
        Ok(e)
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

    /// A new WebSocket is about to be opened. With a session key, the
    /// session (protocol state, counts, unconfirmed frames) is kept for a
    /// Restart; without, it starts afresh. What is known about channels is
    /// kept either way, so a fresh session can catch up.
    pub fn begin_connection(&mut self) {
        if self.session_key.is_none() || *self.client.state() == ClientState::Failed {
            self.forget_session();
        }
        self.handshake = Handshaking::Closed;
        self.resuming = false;
        self.opened = false;
        self.ready = false;
        self.fatal = None;
        self.upstream_note = None;
        self.reconnect_now = false;
        self.move_started = false;
        self.draining = false;
        self.ack_armed = false;
        self.via_node = self.session_key.is_some() && self.node.is_some() && !self.node_unreachable;
        self.out.push(Output::Act(Action::Connecting));
    }

    /// Drops the bridge session: a new one starts with HELLO.
    fn forget_session(&mut self) {
        self.client = new_client();
        self.session_key = None;
        self.frames_in = 0;
        self.unacked = Unacked::default();
        self.history_in_flight.clear();
        self.upstream_name = None;
        self.security = None;
        self.view_empty = false;
        self.node = None;
        self.node_unreachable = false;
        self.acked_in = 0;
    }

    /// Closes with 1000, which ends the bridge session at once: its key is
    /// worthless from now on.
    fn close_session(&mut self, reason: &str) {
        self.session_key = None;
        self.out.push(Output::Close {
            code: code::NORMAL,
            reason: reason.into(),
        });
    }

    fn next_sn(&mut self) -> u32 {
        self.sn = self.sn.wrapping_add(1);
        self.sn
    }

    /// The WebSocket opened: start the bridge handshake, with a Restart
    /// when a session may still be held.
    pub fn on_open(&mut self) {
        self.opened = true;
        self.handshake = Handshaking::Waiting;
        let sn = self.next_sn();
        let h = match self.session_key.clone() {
            Some(key) => {
                self.resuming = true;
                Handshake::restart(sn, key, self.frames_in, self.server.clone())
            }
            None => Handshake::start(sn, self.server.clone()),
        };
        self.out.push(Output::Text(Content::Handshake(h).to_json()));
    }

    fn protocol_failure(&mut self, what: String) {
        self.out.push(Output::Log(what.clone()));
        if self.fatal.is_none() {
            self.fatal = Some(Problem::Protocol(what));
        }
        self.close_session("protocol error");
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
                if self.resuming {
                    // The old session is gone (expired, its frames are no
                    // longer held, or its bridge is gone and another
                    // instance answered): start a fresh one. This
                    // connection already reached a bridge that can hold it
                    // (the load balancer chose it, as it would for plain
                    // `/ws`), so the fresh session starts here instead of
                    // on another connection. Another node than the one
                    // that held the session: the page moved.
                    self.resuming = false;
                    if self.node != h.node {
                        self.moving = true;
                    }
                    self.out.push(Output::Log(match &h.node {
                        Some(n) if self.moving => {
                            format!("the session could not be resumed; starting a new one on {n}")
                        }
                        _ => "the session could not be resumed; starting a new one".into(),
                    }));
                    self.forget_session();
                }
                self.node = h.node;
                self.session_key = Some(key.clone());
                let sn = self.next_sn();
                let restart = Handshake::restart(sn, key, self.frames_in, self.server.clone());
                self.out
                    .push(Output::Text(Content::Handshake(restart).to_json()));
            }
            HandshakeState::Success => {
                // The key of the session that now starts (or goes on): the
                // one in Success, else the one presented in Restart.
                let key = h
                    .session
                    .filter(|k| !k.is_empty())
                    .or_else(|| self.session_key.clone());
                self.handshake = Handshaking::Done;
                let resumed = h.resumed == Some(true);
                if resumed != self.resuming {
                    self.protocol_failure(if resumed {
                        "the bridge resumed a session that was not asked for".into()
                    } else {
                        "the bridge answered a resume with a fresh session".into()
                    });
                    return;
                }
                self.node_unreachable = false;
                if resumed {
                    // A session told no node now resumes through plain `/ws`.
                    self.node = h.node;
                    self.session_key = key;
                    self.resuming = false;
                    self.acked_in = self.frames_in;
                    self.on_resumed(h.received.unwrap_or(0));
                    return;
                }
                // Fresh session: whatever is left of an earlier one goes
                // first (that also drops its key), then this session's key
                // is kept, and the dumdum exchange starts with HELLO.
                let node = h.node.or_else(|| self.node.take());
                if *self.client.state() != ClientState::Start {
                    self.forget_session();
                }
                self.node = node;
                self.session_key = key;
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

    /// Success(resumed): the bridge forwarded `received` of our frames and
    /// replays what we missed next.
    fn on_resumed(&mut self, received: u64) {
        if !self.unacked.ack(received) {
            let (first, sent) = (self.unacked.first(), self.unacked.end());
            let what = format!(
                "the bridge needs our frames from number {received}, but this page sent {sent} and holds them from {first} on"
            );
            self.out.push(Output::Log(format!(
                "cannot resume exactly: {what}; starting a new session"
            )));
            if self.fatal.is_none() {
                self.fatal = Some(Problem::ResumeFailed(what));
            }
            self.close_session("cannot resume exactly");
            return;
        }
        self.moving = false;
        let resent: Vec<Vec<u8>> = self.unacked.frames().map(<[u8]>::to_vec).collect();
        let resent_count = resent.len() as u64;
        for frame in resent {
            self.out.push(Output::Binary(frame));
        }
        self.out.push(Output::Log(format!(
            "session resumed: the bridge had forwarded {received} frames, {resent_count} re-sent"
        )));
        self.ready = matches!(self.client.state(), ClientState::Ready { .. });
        self.was_ready |= self.ready;
        if let Some(s) = self.security.clone() {
            self.out.push(Output::Act(Action::Secured(s)));
        }
        self.out.push(Output::Act(Action::Resumed {
            server: self
                .upstream_name
                .clone()
                .or_else(|| self.server.clone())
                .unwrap_or_else(|| "the server".into()),
            nick: self.client.nick().map(str::to_owned),
            resent: resent_count,
        }));
        match self.client.state() {
            ClientState::Start => {
                // Success came before HELLO was sent.
                if let Err(e) = self.client.hello() {
                    self.protocol_failure(e.to_string());
                    return;
                }
            }
            ClientState::Unauthenticated if self.view_empty => {
                // The nick was refused before the reload: ask again.
                self.out.push(Output::Act(Action::NickTaken {
                    nick: self.nick.clone(),
                }));
            }
            ClientState::Ready { .. } if self.view_empty => {
                // After a reload the page holds nothing: the channel list
                // (its answer opens the shown channel and fetches its newest
                // page). Replayed frames still arrive first, exactly once.
                self.view_empty = false;
                if let Err(e) = self.client.list_channels() {
                    self.out
                        .push(Output::Log(format!("LIST_CHANNELS failed: {e}")));
                }
            }
            _ => {}
        }
        self.pump();
    }

    fn on_notice(&mut self, notice: Notice) {
        match notice {
            Notice::UpstreamConnected { server } => {
                self.upstream_name = Some(server.clone());
                self.out
                    .push(Output::Act(Action::UpstreamConnected { server }));
            }
            Notice::UpstreamSecured {
                tls_version,
                peer,
                fingerprint,
            } => {
                let s = Security {
                    tls_version,
                    peer,
                    fingerprint,
                };
                self.security = Some(s.clone());
                self.out.push(Output::Act(Action::Secured(s)));
            }
            Notice::UpstreamClosed { reason } | Notice::UpstreamError { reason } => {
                self.upstream_note = Some(reason);
            }
            Notice::SessionResumed { replayed } => {
                self.out.push(Output::Log(format!(
                    "session resumed, {replayed} frames replayed"
                )));
                self.out
                    .push(Output::Act(Action::Replayed { frames: replayed }));
            }
            Notice::SessionAck { received } => {
                if self.handshake != Handshaking::Done {
                    self.out.push(Output::Log(
                        "ignored an acknowledgement before the handshake".into(),
                    ));
                } else if received > self.unacked.end() {
                    self.out.push(Output::Log(format!(
                        "ignored an acknowledgement of {received} frames: this page sent {}",
                        self.unacked.end()
                    )));
                } else if received > self.unacked.first() {
                    // Older (or repeated) counts confirm nothing new.
                    self.unacked.ack(received);
                }
            }
            Notice::SessionDraining { deadline_s } => {
                self.draining = true;
                self.out.push(Output::Log(format!(
                    "the bridge is draining: this connection ends within {deadline_s} s"
                )));
                self.out.push(Output::Draining { deadline_s });
            }
            Notice::Other { module, act } => self
                .out
                .push(Output::Log(format!("ignored bridge notice {module}/{act}"))),
            // Notices newer than this page: nothing to do.
            _ => {}
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
        // Running acknowledgement: at once every CLIENT_EVERY_FRAMES
        // frames, else at most CLIENT_AFTER after this frame.
        if self.frames_in.saturating_sub(self.acked_in) >= ack::CLIENT_EVERY_FRAMES {
            self.send_ack();
        } else if !self.ack_armed {
            self.ack_armed = true;
            self.out.push(Output::AckAfter {
                ms: u64::try_from(ack::CLIENT_AFTER.as_millis()).unwrap_or(u64::MAX),
            });
        }
    }

    /// Tells the bridge how many frames this page received (`session ack`).
    fn send_ack(&mut self) {
        self.acked_in = self.frames_in;
        let sn = self.next_sn();
        self.out.push(Output::Text(
            Content::Notice {
                sn,
                notice: Notice::SessionAck {
                    received: self.frames_in,
                },
            }
            .to_json(),
        ));
    }

    /// The delay of an [`Output::AckAfter`] passed: acknowledges what
    /// arrived since the last acknowledgement, if anything did.
    pub fn ack_due(&mut self) {
        self.ack_armed = false;
        if self.handshake == Handshaking::Done && self.frames_in > self.acked_in {
            self.send_ack();
        }
    }

    /// After the `session draining` notice: leaves the draining bridge now
    /// if this is a quiet moment, so that its sessions do not all move at
    /// the deadline at once. Returns whether it did.
    ///
    /// The choice: the page moves early only when
    /// - the session has a node name: the operator runs several bridges
    ///   behind a load balancer, so plain `/ws` reaches another one (a lone
    ///   draining bridge would refuse the new session; then the page keeps
    ///   its session until the deadline);
    /// - it is signed in and no history reply is on its way (a catch-up
    ///   would have to start over);
    /// - the bridge has confirmed every frame this page sent (running
    ///   acknowledgements): nothing typed can be lost by leaving. A bridge
    ///   that never acknowledges is never left early.
    ///
    /// The glue calls this at a random moment in the first half of the
    /// deadline, then every second until it returns true or the
    /// connection ends. Moving closes with 1000 (the bridge ends the
    /// session, and its nick upstream, at once), then reconnects at once
    /// through plain `/ws` and catches up, as after 1012.
    pub fn move_if_quiet(&mut self) -> bool {
        let quiet = self.draining
            && self.node.is_some()
            && self.handshake == Handshaking::Done
            && self.ready
            && self.history_in_flight.is_empty()
            && self.unacked.frames().next().is_none();
        if !quiet {
            return false;
        }
        self.out.push(Output::Log(
            "the bridge is draining: moving to another one now, at a quiet moment".into(),
        ));
        self.move_started = true;
        self.moving = true;
        self.fatal = Some(Problem::ServiceRestart);
        self.close_session("moving to another server");
        true
    }

    /// The WebSocket closed (or failed to open). Returns why, in terms the
    /// user understands.
    pub fn on_close(&mut self, close_code: u16, reason: &str) -> Problem {
        if !self.opened && self.via_node {
            self.node_unreachable = true;
            self.out.push(Output::Log(
                "the WebSocket to the session's node failed; the next attempt goes through plain /ws"
                    .into(),
            ));
        }
        let moved_out = std::mem::take(&mut self.move_started);
        if close_code == code::SERVICE_RESTART && self.opened {
            // The bridge is being taken out of service: it ends the session
            // (and its upstream connection). Start a fresh one through
            // plain `/ws`, at once if this one was working.
            self.out.push(Output::Log(
                "the bridge is restarting; moving to another one".into(),
            ));
            self.session_key = None;
            self.moving = true;
            self.reconnect_now = self.handshake == Handshaking::Done;
        } else {
            self.reconnect_now = moved_out;
        }
        self.ack_armed = false;
        if let Some(h) = self.hunt.take() {
            self.search_status(&h, SearchStatus::Interrupted);
        }
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
            self.auto_nick = false;
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
        if self.ready && !self.requested.contains_key(channel) {
            self.request(channel, HistoryQuery::Newest);
        }
    }

    /// Fetches the page before `before`, the oldest message the page shows
    /// of `channel` (the view may have dropped messages this session saw),
    /// or else before the oldest this session saw.
    pub fn load_older(&mut self, channel: &str, before: Option<Snowflake>) {
        if !self.ready {
            return;
        }
        let query = match before.or_else(|| self.oldest.get(channel).copied()) {
            Some(oldest) => HistoryQuery::OlderThan(oldest),
            None => HistoryQuery::Newest,
        };
        self.out.push(Output::Act(Action::LoadingOlder {
            channel: channel.to_owned(),
        }));
        self.request(channel, query);
    }

    /// "Search older": fetches older pages of `channel`, from before
    /// `before` (the oldest message the page shows, as for
    /// [`Engine::load_older`]), one at a time, until a page holds a message
    /// matching `query` ([`Needle::matches`]), the server has nothing older,
    /// or [`PAGES_PER_RUN`] pages were searched. Every page goes to the
    /// view as an older page; the search's state as
    /// [`Action::OlderSearch`]. A new search replaces the one under way.
    pub fn search_older(&mut self, channel: &str, query: &str, before: Option<Snowflake>) {
        let Some(needle) = Needle::new(query) else {
            return;
        };
        let mut hunt = Hunt {
            channel: channel.to_owned(),
            query: query.to_owned(),
            needle,
            awaiting: HistoryQuery::Newest,
            pages: 0,
        };
        self.hunt = None;
        if !self.ready {
            self.search_status(&hunt, SearchStatus::Interrupted);
            return;
        }
        if let Some(oldest) = before.or_else(|| self.oldest.get(channel).copied()) {
            hunt.awaiting = HistoryQuery::OlderThan(oldest);
        }
        self.search_status(&hunt, SearchStatus::Running);
        self.out.push(Output::Act(Action::LoadingOlder {
            channel: channel.to_owned(),
        }));
        let query = hunt.awaiting;
        self.hunt = Some(hunt);
        self.request(channel, query);
    }

    /// Stops the "search older" under way, if any (the page on its way is
    /// still shown).
    pub fn stop_search(&mut self) {
        if let Some(h) = self.hunt.take() {
            self.search_status(&h, SearchStatus::Stopped);
        }
    }

    fn search_status(&mut self, h: &Hunt, status: SearchStatus) {
        self.out.push(Output::Act(Action::OlderSearch(OlderSearch {
            channel: h.channel.clone(),
            query: h.query.clone(),
            status,
            pages: h.pages,
        })));
    }

    /// A page the search asked for came with `hits` matches; `next` is the
    /// page before it, if the server may hold one.
    fn hunt_page(&mut self, hits: usize, next: Option<HistoryQuery>) {
        let Some(mut h) = self.hunt.take() else {
            return;
        };
        h.pages += 1;
        let status = match next {
            _ if hits > 0 => SearchStatus::Found(hits),
            None => SearchStatus::StartReached,
            Some(_) if h.pages % PAGES_PER_RUN == 0 => SearchStatus::Paused,
            Some(next) => {
                h.awaiting = next;
                SearchStatus::Running
            }
        };
        self.search_status(&h, status);
        if status == SearchStatus::Running {
            let channel = h.channel.clone();
            self.out.push(Output::Act(Action::LoadingOlder {
                channel: channel.clone(),
            }));
            let query = h.awaiting;
            self.hunt = Some(h);
            self.request(&channel, query);
        }
    }

    fn request(&mut self, channel: &str, query: HistoryQuery) {
        self.requested.insert(channel.to_owned(), ());
        match self.client.list_messages(channel, query) {
            Ok(()) => self
                .history_in_flight
                .push_back((channel.to_owned(), query)),
            Err(e) => self.out.push(Output::Log(format!(
                "history request for {channel} failed: {e}"
            ))),
        }
        self.pump();
    }

    fn seen(&mut self, channel: &str, id: Snowflake) {
        let newest = self.newest.get_or_insert(channel, id);
        *newest = (*newest).max(id);
        let oldest = self.oldest.get_or_insert(channel, id);
        *oldest = (*oldest).min(id);
    }

    /// Moves the protocol client's output out and reacts to its events.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(frame) = self.client.poll_transmit() {
                self.unacked.push(frame.clone());
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
                    self.auto_nick = true;
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
                self.close_session("incompatible protocol version");
            }
            Event::NickTaken { nick }
                if self.was_ready
                    && self.auto_nick
                    && nick == self.nick
                    && self.nick_retries < NICK_RETRIES =>
            {
                // A reconnect: the nick may still be held for the previous
                // connection, which is ending. Retry shortly rather than ask.
                self.nick_retries += 1;
                self.fatal = Some(Problem::NickInUse(nick));
                self.close_session("nickname still in use");
            }
            Event::NickTaken { nick } if self.was_ready && self.auto_nick && nick == self.nick => {
                // Still held after the retries: another tab of this session
                // (or someone else) has it. Ask for another nick on this
                // connection.
                self.out.push(Output::Log(format!(
                    "the nick {nick} is still in use after {NICK_RETRIES} retries; asking for another"
                )));
                self.out
                    .push(Output::Act(Action::NickInUseElsewhere { nick }));
            }
            Event::NickTaken { nick } => self.out.push(Output::Act(Action::NickTaken { nick })),
            Event::Authenticated { nick } => {
                self.ready = true;
                self.was_ready = true;
                self.auto_nick = false;
                self.nick_retries = 0;
                self.out
                    .push(Output::Act(Action::Authenticated { nick: nick.clone() }));
                if std::mem::take(&mut self.moving) {
                    self.out.push(Output::Act(Action::Moved));
                }
                self.out.push(Output::Remember(Memory::Nick(nick)));
                if let Err(e) = self.client.list_channels() {
                    self.out
                        .push(Output::Log(format!("LIST_CHANNELS failed: {e}")));
                }
                // Catch up on every channel seen before a reconnect.
                let mut known: Vec<(String, Snowflake)> =
                    self.newest.iter().map(|(c, &id)| (c.clone(), id)).collect();
                crate::small::sort_by(&mut known, |a, b| a.0 < b.0);
                for (channel, newest) in known {
                    self.request(&channel, HistoryQuery::NewerThan(newest));
                }
                // Channels asked for but empty so far: ask again.
                let mut empty: Vec<String> = self
                    .requested
                    .iter()
                    .map(|(c, _)| c)
                    .filter(|c| !self.newest.contains_key(c))
                    .cloned()
                    .collect();
                crate::small::sort_by(&mut empty, |a, b| a < b);
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
                self.history_in_flight.pop_front();
                for m in &messages {
                    self.seen(&channel, m.id);
                }
                let next = query.and_then(|q| q.next(&messages));
                let hunted = self
                    .hunt
                    .as_ref()
                    .filter(|h| h.channel == channel && query == Some(h.awaiting))
                    .map(|h| messages.iter().filter(|m| h.needle.matches(m)).count());
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
                if let Some(hits) = hunted {
                    self.hunt_page(hits, next);
                }
            }
            // Events the page has no use for (formatting them with Debug
            // would add kilobytes to the page).
            _ => self.out.push(Output::Log("ignored a server event".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use dumdum_protocol::message::ClientMessage;
    use dumdum_protocol::{ChatMessage, history};

    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const KEY2: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    /// The outputs `pick` keeps, in order.
    fn picked<T>(out: &[Output], pick: impl Fn(&Output) -> Option<T>) -> Vec<T> {
        out.iter().filter_map(pick).collect()
    }

    fn texts(out: &[Output]) -> Vec<Content> {
        picked(out, |o| match o {
            Output::Text(t) => Some(Content::parse(t).unwrap()),
            _ => None,
        })
    }

    fn sent(out: &[Output]) -> Vec<ClientMessage> {
        picked(out, |o| match o {
            Output::Binary(b) => Some(ClientMessage::decode_exact(b).unwrap()),
            _ => None,
        })
    }

    fn acts(out: &[Output]) -> Vec<Action> {
        picked(out, |o| match o {
            Output::Act(a) => Some(a.clone()),
            _ => None,
        })
    }

    /// The server answers AUTHENTICATE with `success`.
    fn auth_ack(e: &mut Engine, success: bool) {
        e.on_binary(&server_frame(ServerMessage::AcknowledgeAuthentication {
            success,
        }));
    }

    /// The server's LIST_CHANNELS answer with `names`.
    fn channels_listed(e: &mut Engine, names: &[&str]) {
        e.on_binary(&server_frame(ServerMessage::ListChannels(
            names.iter().map(|&n| n.into()).collect(),
        )));
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

    fn handshake_sent(out: &[Output]) -> Handshake {
        match texts(out).first() {
            Some(Content::Handshake(h)) => h.clone(),
            other => panic!("no handshake: {other:?}"),
        }
    }

    /// Runs the handshake of a fresh session up to the server's HELLO;
    /// returns the outputs after HELLO. A held session key is presented
    /// first (Restart) and refused (Again), as when the bridge forgot it.
    fn connect(e: &mut Engine) -> Vec<Output> {
        let old = e.session_key().map(str::to_owned);
        let key = if old.as_deref() == Some(KEY) {
            KEY2
        } else {
            KEY
        };
        e.begin_connection();
        e.on_open();
        let first = handshake_sent(&e.drain());
        assert_eq!(first.server.as_deref(), Some("local"));
        match &old {
            Some(old) => {
                assert_eq!(first.state(), HandshakeState::Restart, "Restart first");
                assert_eq!(first.session.as_ref(), Some(old));
            }
            None => assert_eq!(first.state(), HandshakeState::Start),
        }
        e.on_text(&Content::Handshake(Handshake::again(7, key.into())).to_json());
        let restart = handshake_sent(&e.drain());
        assert_eq!(restart.state(), HandshakeState::Restart);
        assert_eq!(restart.session.as_deref(), Some(key));
        assert_eq!(restart.received, Some(0));
        assert_eq!(e.frame_counts(), (0, 0), "a fresh session counts from 0");
        e.on_text(&Content::Handshake(Handshake::success(8, key.into(), false, 0)).to_json());
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

    /// A fresh connection (`connect`) whose AUTHENTICATE with our nick gets
    /// `success` as its answer.
    fn auth_answered(e: &mut Engine, success: bool) -> Vec<Output> {
        let out = connect(e);
        assert_eq!(
            sent(&out),
            [ClientMessage::Authenticate {
                nick: e.nick().into()
            }]
        );
        auth_ack(e, success);
        e.drain()
    }

    fn authenticated(e: &mut Engine) -> Vec<Output> {
        auth_answered(e, true)
    }

    #[test]
    fn fresh_session_authenticates_lists_and_opens_the_remembered_channel() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), Some("random".into()));
        let out = authenticated(&mut e);
        assert!(e.is_ready());
        assert_eq!(e.session_key(), Some(KEY));
        assert_eq!(sent(&out), [ClientMessage::ListChannels]);
        assert!(out.contains(&Output::Remember(Memory::Nick("alice".into()))));
        channels_listed(&mut e, &["general", "random"]);
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
        channels_listed(&mut e, &["general", "random"]);
        assert!(acts(&e.drain()).contains(&Action::Select("general".into())));
    }

    #[test]
    fn taken_nick_is_retried_on_the_same_connection() {
        let mut e = Engine::new(Some("local".into()), "bob".into(), None);
        connect(&mut e);
        auth_ack(&mut e, false);
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
        auth_ack(&mut e, true);
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
        channels_listed(&mut e, &["general"]);
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
            let shown = state.channel("general").and_then(|c| c.oldest());
            e.load_older("general", shown);
            let out = e.drain();
            got = answer(&mut e, &out, &all);
        }
        let g = state.channel("general").unwrap();
        assert_eq!(g.older, crate::state::Older::Complete);
        assert_eq!(
            g.messages.iter().map(|m| &**m).collect::<Vec<_>>(),
            all.iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn reconnect_catches_up_without_gaps() {
        let mut all: Vec<ChatMessage> = (1..=50).map(|i| chat(i, "general", "x")).collect();
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        authenticated(&mut e);
        channels_listed(&mut e, &["general"]);
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
        assert_eq!(
            g.messages.iter().map(|m| &**m).collect::<Vec<_>>(),
            all.iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn nick_still_held_after_a_reconnect_is_retried_later() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        authenticated(&mut e);
        e.on_close(1006, "");
        connect(&mut e);
        auth_ack(&mut e, false);
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
        assert_eq!(e.on_close(1006, ""), Problem::NotOpened);
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

    /// Authenticated in `general` (its newest page answered with `msgs`).
    fn in_general(e: &mut Engine, msgs: &[ChatMessage]) -> Vec<Output> {
        authenticated(e);
        channels_listed(e, &["general", "random"]);
        let out = e.drain();
        answer(e, &out, msgs)
    }

    fn resume(e: &mut Engine, received_by_bridge: u64) -> Vec<Output> {
        e.on_close(1006, "");
        e.begin_connection();
        e.on_open();
        let out = e.drain();
        assert_eq!(acts(&out), [Action::Connecting]);
        let h = handshake_sent(&out);
        assert_eq!(h.state(), HandshakeState::Restart);
        assert_eq!(h.session.as_deref(), e.session_key());
        assert_eq!(h.received, Some(e.frame_counts().0), "our received count");
        e.on_text(
            &Content::Handshake(Handshake::success(
                3,
                h.session.unwrap(),
                true,
                received_by_bridge,
            ))
            .to_json(),
        );
        e.drain()
    }

    #[test]
    fn every_binary_frame_is_numbered_both_ways() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &[chat(1, "general", "x")]);
        // In: HELLO, ACK, LIST_CHANNELS, LIST_MESSAGES. Out: HELLO, AUTH,
        // LIST_CHANNELS, LIST_MESSAGES.
        assert_eq!(e.frame_counts(), (4, 4));
        assert_eq!(e.unacked().first(), 0);
        assert_eq!(e.unacked().end(), 4);
        e.send_message("general", "one").unwrap();
        e.on_binary(&server_frame(ServerMessage::SendMessage(chat(
            2, "general", "alice",
        ))));
        assert_eq!(e.frame_counts(), (5, 5));
        let kept: Vec<ClientMessage> = e
            .unacked()
            .frames()
            .map(|f| ClientMessage::decode_exact(f).unwrap())
            .collect();
        assert_eq!(kept[0], ClientMessage::Hello { version: 2 });
        assert_eq!(
            kept[4],
            ClientMessage::SendMessage {
                channel: "general".into(),
                content: "one".into()
            }
        );
    }

    #[test]
    fn unacked_frames_are_bounded_and_trimmed_by_the_bridge_count() {
        let mut u = Unacked::default();
        for i in 0..100u8 {
            u.push(vec![3, i]);
        }
        assert_eq!(u.end(), 100);
        assert_eq!(u.first(), 100 - UNACKED_MAX_FRAMES as u64);
        assert!(!u.ack(u.first() - 1), "a frame no longer held is needed");
        assert!(
            !u.ack(101),
            "the bridge cannot have forwarded more than sent"
        );
        assert!(u.ack(90));
        assert_eq!(u.first(), 90);
        assert_eq!(u.frames().next(), Some(&[3u8, 90][..]));
        assert_eq!(u.frames().count(), 10);
        assert!(u.ack(100));
        assert_eq!(u.frames().count(), 0);
        assert_eq!((u.first(), u.end()), (100, 100));
        // The byte bound too.
        let mut u = Unacked::default();
        for _ in 0..3 {
            u.push(vec![0; UNACKED_MAX_BYTES / 2]);
        }
        assert_eq!((u.first(), u.end()), (1, 3));
    }

    #[test]
    fn resume_resends_exactly_what_the_bridge_did_not_forward() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &[chat(1, "general", "x")]);
        e.send_message("general", "lost one").unwrap();
        e.send_message("general", "lost two").unwrap();
        e.drain();
        assert_eq!(e.frame_counts(), (4, 6));
        // The bridge forwarded 4 of our 6 frames before the socket dropped.
        let out = resume(&mut e, 4);
        assert_eq!(
            sent(&out),
            [
                ClientMessage::SendMessage {
                    channel: "general".into(),
                    content: "lost one".into()
                },
                ClientMessage::SendMessage {
                    channel: "general".into(),
                    content: "lost two".into()
                },
            ],
            "no HELLO, no AUTHENTICATE: only the two frames not forwarded"
        );
        assert!(acts(&out).contains(&Action::Resumed {
            server: "local".into(),
            nick: Some("alice".into()),
            resent: 2,
        }));
        assert!(e.is_ready());
        // Numbers stay: the re-sent frames keep theirs.
        assert_eq!(e.frame_counts(), (4, 6));
        assert_eq!(e.unacked().first(), 4);
        // The replay, then live traffic: counted on.
        e.on_text(
            &Content::Notice {
                sn: 4,
                notice: Notice::SessionResumed { replayed: 1 },
            }
            .to_json(),
        );
        e.on_binary(&server_frame(ServerMessage::SendMessage(chat(
            7, "general", "bob",
        ))));
        let out = e.drain();
        assert_eq!(
            acts(&out),
            [
                Action::Replayed { frames: 1 },
                Action::Message(chat(7, "general", "bob"))
            ]
        );
        assert_eq!(e.frame_counts(), (5, 6));
        // A second resume where everything went through re-sends nothing.
        let out = resume(&mut e, 6);
        assert!(sent(&out).is_empty(), "{out:?}");
        assert_eq!(e.unacked().frames().count(), 0);
        // Sending goes on with the next number.
        e.send_message("general", "after").unwrap();
        assert_eq!(e.frame_counts(), (5, 7));
    }

    #[test]
    fn a_resume_that_needs_dropped_frames_starts_a_fresh_session() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &[]);
        for i in 0..UNACKED_MAX_FRAMES + 10 {
            e.send_message("general", &format!("m{i}")).unwrap();
        }
        e.drain();
        assert_eq!(e.unacked().first(), 14);
        let out = resume(&mut e, 3);
        assert!(sent(&out).is_empty());
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Close { code: 1000, .. })),
            "ends the held session: {out:?}"
        );
        assert_eq!(e.session_key(), None);
        assert!(matches!(e.on_close(1000, ""), Problem::ResumeFailed(_)));
        // The next connection is fresh: Start, HELLO, AUTHENTICATE.
        let out = connect(&mut e);
        assert_eq!(
            sent(&out),
            [ClientMessage::Authenticate {
                nick: "alice".into()
            }]
        );
    }

    #[test]
    fn again_after_restart_falls_back_to_a_fresh_session_with_the_same_nick() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &[chat(5, "general", "x")]);
        e.send_message("general", "maybe lost").unwrap();
        e.drain();
        e.on_close(1006, "");
        // `connect` asserts Restart with KEY first, answers Again(KEY2).
        let out = connect(&mut e);
        assert_eq!(e.session_key(), Some(KEY2));
        assert_eq!(
            sent(&out),
            [ClientMessage::Authenticate {
                nick: "alice".into()
            }]
        );
        auth_ack(&mut e, true);
        let out = e.drain();
        assert_eq!(
            sent(&out),
            [
                ClientMessage::ListChannels,
                HistoryQuery::NewerThan(Snowflake(5)).request("general")
            ],
            "catch up; the unconfirmed message is not sent twice"
        );
        assert_eq!(e.frame_counts(), (2, 4));
    }

    fn reload(e: &Engine) -> Engine {
        let json = e.saved().expect("a session to keep").to_json();
        let saved = Saved::from_json(&json).unwrap();
        assert_eq!(Some(&saved), e.saved().as_ref());
        let json = e.saved_frames().expect("frames to keep").to_json();
        let frames = SavedFrames::from_json(&json).unwrap();
        let r = Engine::restore(saved, Some(frames)).unwrap();
        assert_eq!(r.unacked(), e.unacked());
        r
    }

    /// `sessionStorage` as the page writes it.
    #[derive(Debug, Default)]
    struct Storage {
        state: Option<String>,
        frames: Option<String>,
        state_writes: usize,
        frames_writes: usize,
    }

    impl Storage {
        fn write(&mut self, (state, frames): (Write, Write)) {
            for (w, slot, count) in [
                (state, &mut self.state, &mut self.state_writes),
                (frames, &mut self.frames, &mut self.frames_writes),
            ] {
                match w {
                    Write::Keep => {}
                    Write::Set(j) => {
                        *slot = Some(j);
                        *count += 1;
                    }
                    Write::Remove => *slot = None,
                }
            }
        }

        fn persist(&mut self, p: &mut Persisted, e: &Engine) {
            self.write(p.update(Some(e)));
        }

        fn counts(&self) -> (usize, usize) {
            (self.state_writes, self.frames_writes)
        }

        fn reload(&self) -> Result<Engine, String> {
            let saved = Saved::from_json(self.state.as_deref().ok_or("no state")?)
                .map_err(|e| e.to_string())?;
            let frames = match &self.frames {
                Some(j) => Some(SavedFrames::from_json(j).map_err(|e| e.to_string())?),
                None => None,
            };
            Engine::restore(saved, frames)
        }
    }

    #[test]
    fn received_frames_rewrite_only_the_small_state() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        let mut p = Persisted::default();
        let mut store = Storage::default();
        store.persist(&mut p, &e);
        assert_eq!(store.counts(), (0, 0), "no session, nothing written");
        in_general(&mut e, &[chat(1, "general", "x")]);
        store.persist(&mut p, &e);
        assert_eq!(store.counts(), (1, 1));
        store.persist(&mut p, &e);
        assert_eq!(store.counts(), (1, 1), "nothing changed, nothing written");
        // A burst of broadcasts: the counts change, the frames do not.
        for id in 2..=51 {
            e.on_binary(&server_frame(ServerMessage::SendMessage(chat(
                id, "general", "bob",
            ))));
            e.drain();
            store.persist(&mut p, &e);
        }
        assert_eq!(store.counts(), (51, 1));
        let state_len = store.state.as_deref().map_or(0, str::len);
        assert!(
            state_len < 1024,
            "the state written per frame is small: {state_len}"
        );
        // A frame sent changes the frames: both written.
        e.send_message("general", "hello").unwrap();
        e.drain();
        store.persist(&mut p, &e);
        assert_eq!(store.counts(), (52, 2));
        // What storage holds resumes exactly.
        let r = store.reload().unwrap();
        assert_eq!(r.frame_counts(), e.frame_counts());
        assert_eq!(r.unacked(), e.unacked());
        assert_eq!(r.saved(), e.saved());
        // The bridge confirms some on a resume: the frames are trimmed and
        // written again.
        resume(&mut e, 3);
        store.persist(&mut p, &e);
        assert_eq!(store.counts().1, 3);
        let r = store.reload().unwrap();
        assert_eq!(r.unacked().first(), 3);
        assert_eq!(r.unacked(), e.unacked());
        // The session ends: both forgotten.
        e.close_session("test");
        store.persist(&mut p, &e);
        assert_eq!((store.state.as_ref(), store.frames.as_ref()), (None, None));
        // A fresh session with the same counts under a new key writes its
        // own frames (same numbers, other bytes).
        let mut f = Engine::new(Some("local".into()), "alice".into(), None);
        let mut pf = Persisted::default();
        let mut sf = Storage::default();
        in_general(&mut f, &[]);
        sf.persist(&mut pf, &f);
        let first_frames = sf.frames.clone();
        f.on_close(1006, "");
        connect(&mut f);
        sf.persist(&mut pf, &f);
        assert_ne!(sf.frames, first_frames, "the new session's frames");
        assert_eq!(sf.reload().unwrap().unacked(), f.unacked());
    }

    #[test]
    fn a_reload_after_a_restore_writes_nothing_until_something_changes() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &[]);
        let mut store = Storage::default();
        store.persist(&mut Persisted::default(), &e);
        let r = store.reload().unwrap();
        let mut p = Persisted::restored(store.state.clone().unwrap(), &r);
        assert_eq!(p.update(Some(&r)), (Write::Keep, Write::Keep));
        assert_eq!(p.update(None), (Write::Remove, Write::Remove));
        assert_eq!(p.update(None), (Write::Keep, Write::Keep));
    }

    #[test]
    fn frames_that_do_not_match_the_state_are_not_used() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &[]);
        let mut p = Persisted::default();
        let mut store = Storage::default();
        store.persist(&mut p, &e);
        let stale = store.frames.clone();
        e.send_message("general", "one").unwrap();
        e.drain();
        store.persist(&mut p, &e);
        assert_eq!(e.frame_counts().1, 5);
        // The frames write failed (quota): storage holds the older set.
        store.frames = stale;
        let mut r = store.reload().unwrap();
        assert_eq!((r.unacked().first(), r.unacked().end()), (5, 5));
        assert!(
            r.drain()
                .iter()
                .any(|o| matches!(o, Output::Log(l) if l.contains("another state")))
        );
        // The bridge forwarded everything: the resume goes on.
        let out = resume(&mut r, 5);
        assert!(sent(&out).iter().all(|m| *m == ClientMessage::ListChannels));
        assert!(r.is_ready());
        // Without frames at all, a resume that needs one is not exact: a
        // fresh session follows.
        store.frames = None;
        let mut r = store.reload().unwrap();
        let out = resume(&mut r, 4);
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Close { code: 1000, .. })),
            "{out:?}"
        );
        assert!(matches!(r.on_close(1000, ""), Problem::ResumeFailed(_)));
    }

    #[test]
    fn a_reload_restores_the_session_and_resumes_without_authenticate() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &[chat(1, "general", "x")]);
        e.select("random");
        let out = e.drain();
        assert_eq!(sent(&out), [HistoryQuery::Newest.request("random")]);
        e.send_message("random", "typed before the reload").unwrap();
        e.drain();
        let before = e.frame_counts();
        assert_eq!(before, (4, 6));

        let mut r = reload(&e);
        assert_eq!(r.nick(), "alice");
        assert_eq!(r.active(), Some("random"));
        assert_eq!(r.frame_counts(), before);
        assert!(!r.is_ready(), "not ready before the bridge answers");
        // The bridge got LIST_MESSAGES(random) but not the SEND_MESSAGE.
        let out = resume(&mut r, 5);
        assert_eq!(
            sent(&out),
            [
                ClientMessage::SendMessage {
                    channel: "random".into(),
                    content: "typed before the reload".into()
                },
                ClientMessage::ListChannels,
            ],
            "the unforwarded frame, then the channel list; no HELLO or AUTHENTICATE"
        );
        assert!(r.is_ready());
        // The replay: the answer to the LIST_MESSAGES sent before the
        // reload still finds its channel.
        r.on_binary(&server_frame(ServerMessage::ListMessages(vec![chat(
            2, "random", "y",
        )])));
        let out = r.drain();
        assert_eq!(
            acts(&out),
            [Action::History {
                channel: "random".into(),
                messages: vec![chat(2, "random", "y")],
                kind: HistoryKind::Newest { more: false },
            }]
        );
        // The channel list: the shown channel again, without a second
        // newest page (one is already here).
        channels_listed(&mut r, &["general", "random"]);
        let out = r.drain();
        assert!(acts(&out).contains(&Action::Select("random".into())));
        assert!(sent(&out).is_empty(), "{out:?}");
        assert_eq!(r.frame_counts(), (6, 7));
    }

    #[test]
    fn a_reload_with_nothing_in_flight_fetches_the_shown_channel() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &[chat(1, "general", "x")]);
        let mut r = reload(&e);
        let out = resume(&mut r, 4);
        assert_eq!(sent(&out), [ClientMessage::ListChannels]);
        channels_listed(&mut r, &["general"]);
        assert_eq!(sent(&r.drain()), [HistoryQuery::Newest.request("general")]);
    }

    #[test]
    fn a_reload_whose_session_expired_authenticates_again_and_fetches() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &[chat(1, "general", "x")]);
        let mut r = reload(&e);
        let out = connect(&mut r);
        assert_eq!(
            sent(&out),
            [ClientMessage::Authenticate {
                nick: "alice".into()
            }]
        );
        auth_ack(&mut r, true);
        assert_eq!(sent(&r.drain()), [ClientMessage::ListChannels]);
        channels_listed(&mut r, &["general"]);
        assert_eq!(sent(&r.drain()), [HistoryQuery::Newest.request("general")]);
    }

    #[test]
    fn a_reload_while_authenticating_resumes_in_that_state() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        connect(&mut e);
        assert!(matches!(
            e.saved().unwrap().client,
            SavedClient::Authenticating { .. }
        ));
        let mut r = reload(&e);
        let out = resume(&mut r, 2);
        assert!(sent(&out).is_empty());
        assert!(!r.is_ready());
        // The replayed acknowledgement finishes the sign-in.
        auth_ack(&mut r, true);
        let out = r.drain();
        assert!(acts(&out).contains(&Action::Authenticated {
            nick: "alice".into()
        }));
        assert_eq!(sent(&out), [ClientMessage::ListChannels]);
    }

    #[test]
    fn stored_sessions_that_do_not_make_sense_are_refused() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &[]);
        let good = e.saved().unwrap();
        let frames = e.saved_frames().unwrap();
        assert!(Engine::restore(good.clone(), Some(frames.clone())).is_ok());
        let mut bad = frames.clone();
        bad.frames[0] = "zz".into();
        assert!(Engine::restore(good.clone(), Some(bad)).is_err());
        let mut bad = frames.clone();
        bad.frames[0] = "7f".into();
        assert!(Engine::restore(good.clone(), Some(bad)).is_err());
        let mut bad = good;
        bad.client = SavedClient::AwaitingHello;
        bad.history = vec![("general".into(), SavedQuery::Newest)];
        assert!(Engine::restore(bad, Some(frames)).is_err());
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("abc"), None);
        // No session before the bridge handed out a key.
        assert_eq!(Engine::new(None, "a".into(), None).saved(), None);
    }

    #[test]
    fn a_bridge_that_resumes_unasked_is_a_protocol_error() {
        let mut e = Engine::new(None, "alice".into(), None);
        e.begin_connection();
        e.on_open();
        e.on_text(&Content::Handshake(Handshake::again(1, KEY.into())).to_json());
        e.drain();
        e.on_text(&Content::Handshake(Handshake::success(2, KEY.into(), true, 0)).to_json());
        assert!(e.drain().iter().any(|o| matches!(o, Output::Close { .. })));
        assert!(matches!(e.on_close(1000, ""), Problem::Protocol(_)));
    }

    #[test]
    fn a_fresh_session_keeps_the_key_it_was_given() {
        for with_key in [true, false] {
            let mut e = Engine::new(Some("local".into()), "alice".into(), None);
            e.begin_connection();
            e.on_open();
            e.on_text(&Content::Handshake(Handshake::again(7, KEY.into())).to_json());
            e.drain();
            // Protocol state left over from an earlier session: dropped
            // before the new session starts, not after its key was kept.
            e.client.hello().unwrap();
            while e.client.poll_transmit().is_some() {}
            let success = if with_key {
                Content::Handshake(Handshake::success(8, KEY.into(), false, 0)).to_json()
            } else {
                // Success without a key: the one from Again holds.
                r#"{"type":"136","sn":8,"command":"handshake","title":"DIM!","message":"DIM!","resumed":false,"received":0}"#.into()
            };
            e.on_text(&success);
            let out = e.drain();
            assert_eq!(sent(&out), [ClientMessage::Hello { version: 2 }], "{out:?}");
            assert_eq!(
                e.session_key(),
                Some(KEY),
                "with key in Success: {with_key}"
            );
            assert_eq!(e.frame_counts(), (0, 1), "the new session counts from 0");
            assert!(
                e.saved().is_some_and(|s| s.key == KEY),
                "a reload can resume it"
            );
        }
    }

    #[test]
    fn load_older_pages_back_from_the_oldest_message_shown() {
        let all: Vec<ChatMessage> = (1..=300).map(|i| chat(i, "general", "x")).collect();
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &all);
        // The view dropped messages the session saw (its limit): the page
        // asked for ends before what is shown, not before what was seen.
        e.load_older("general", Some(Snowflake(250)));
        let out = e.drain();
        assert_eq!(
            sent(&out),
            [HistoryQuery::OlderThan(Snowflake(250)).request("general")]
        );
        let got = answer(&mut e, &out, &all);
        assert!(
            matches!(
                acts(&got).as_slice(),
                [Action::History { messages, kind: HistoryKind::Older { more: true }, .. }]
                    if messages.first().map(|m| m.id) == Some(Snowflake(150))
                        && messages.last().map(|m| m.id) == Some(Snowflake(249))
            ),
            "{got:?}"
        );
        // Nothing shown: before the oldest seen.
        e.load_older("general", None);
        assert_eq!(
            sent(&e.drain()),
            [HistoryQuery::OlderThan(Snowflake(150)).request("general")]
        );
    }

    /// A fresh connection (`connect`) whose AUTHENTICATE with our nick is
    /// refused.
    fn nick_refused(e: &mut Engine) -> Vec<Output> {
        auth_answered(e, false)
    }

    #[test]
    fn a_duplicated_tab_asks_for_another_nick_after_a_few_quick_retries() {
        let mut original = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut original, &[chat(1, "general", "x")]);
        // "Duplicate tab" copies sessionStorage: the copy restores the same
        // session, the bridge refuses the key (Again: the original's socket
        // is live), and the fresh session finds the nick held.
        let mut copy = reload(&original);
        for attempt in 1..=NICK_RETRIES {
            let out = nick_refused(&mut copy);
            assert!(
                out.iter().any(|o| matches!(o, Output::Close { .. })),
                "retry {attempt} with a new connection: {out:?}"
            );
            assert!(acts(&out).is_empty(), "the page does not ask yet: {out:?}");
            let p = copy.on_close(1000, "");
            assert_eq!(p, Problem::NickInUse("alice".into()));
            assert!(p.retryable());
        }
        // Still held: ask, on this connection.
        let out = nick_refused(&mut copy);
        assert!(
            !out.iter().any(|o| matches!(o, Output::Close { .. })),
            "{out:?}"
        );
        assert_eq!(
            acts(&out),
            [Action::NickInUseElsewhere {
                nick: "alice".into()
            }]
        );
        assert!(copy.awaiting_nick());
        // A nick the user picks that is taken too: asked again, as usual.
        copy.authenticate("alice").unwrap();
        auth_ack(&mut copy, false);
        let out = copy.drain();
        assert_eq!(
            acts(&out),
            [
                Action::Authenticating {
                    nick: "alice".into()
                },
                Action::NickTaken {
                    nick: "alice".into()
                }
            ]
        );
        assert!(
            !out.iter().any(|o| matches!(o, Output::Close { .. })),
            "{out:?}"
        );
        assert!(copy.awaiting_nick(), "same connection: {out:?}");
        copy.authenticate("alice2").unwrap();
        assert_eq!(
            sent(&copy.drain()),
            [ClientMessage::Authenticate {
                nick: "alice2".into()
            }]
        );
        auth_ack(&mut copy, true);
        assert!(acts(&copy.drain()).contains(&Action::Authenticated {
            nick: "alice2".into()
        }));
        assert!(copy.is_ready());
    }

    #[test]
    fn the_nick_retries_start_over_after_a_sign_in() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        authenticated(&mut e);
        e.on_close(1006, "");
        // Held twice, then free: signed in again.
        for _ in 0..2 {
            nick_refused(&mut e);
            assert_eq!(e.on_close(1000, ""), Problem::NickInUse("alice".into()));
        }
        authenticated(&mut e);
        e.on_close(1006, "");
        // A later reconnect gets its full set of retries again.
        for _ in 0..NICK_RETRIES {
            let out = nick_refused(&mut e);
            assert!(out.iter().any(|o| matches!(o, Output::Close { .. })));
            e.on_close(1000, "");
        }
        let out = nick_refused(&mut e);
        assert!(acts(&out).contains(&Action::NickInUseElsewhere {
            nick: "alice".into()
        }));
        // Connection lost while asking: the next one asks at once.
        e.on_close(1006, "");
        let out = nick_refused(&mut e);
        assert!(acts(&out).contains(&Action::NickInUseElsewhere {
            nick: "alice".into()
        }));
    }

    /// Opens a connection the bridge answers with a fresh session: Again
    /// with `key` from `node`, then Success from it; runs up to the
    /// server's HELLO. Returns the page's first handshake, the node the
    /// connection's URL named, and the outputs after HELLO.
    fn connect_at(
        e: &mut Engine,
        key: &str,
        node: Option<&str>,
    ) -> (Handshake, Option<String>, Vec<Output>) {
        e.begin_connection();
        let url_node = e.ws_node().map(str::to_owned);
        e.on_open();
        let first = handshake_sent(&e.drain());
        let n = node.map(str::to_owned);
        e.on_text(
            &Content::Handshake(Handshake::again(7, key.into()).with_node(n.clone())).to_json(),
        );
        let restart = handshake_sent(&e.drain());
        assert_eq!(restart.state(), HandshakeState::Restart);
        assert_eq!(restart.session.as_deref(), Some(key));
        e.on_text(
            &Content::Handshake(Handshake::success(8, key.into(), false, 0).with_node(n)).to_json(),
        );
        let out = e.drain();
        assert_eq!(sent(&out), [ClientMessage::Hello { version: 2 }], "{out:?}");
        e.on_binary(&server_frame(ServerMessage::Hello { tls: false }));
        (first, url_node, e.drain())
    }

    /// A reconnect that presents the held key and is resumed by the bridge
    /// (which forwarded all our frames). Returns the node the URL named.
    fn resume_at(e: &mut Engine, node: Option<&str>) -> Option<String> {
        e.begin_connection();
        let url_node = e.ws_node().map(str::to_owned);
        e.on_open();
        let h = handshake_sent(&e.drain());
        assert_eq!(h.state(), HandshakeState::Restart);
        let key = h.session.clone().unwrap();
        let sent_count = e.frame_counts().1;
        e.on_text(
            &Content::Handshake(
                Handshake::success(3, key, true, sent_count).with_node(node.map(str::to_owned)),
            )
            .to_json(),
        );
        e.drain();
        url_node
    }

    fn notice(e: &mut Engine, notice: Notice) {
        e.on_text(&Content::Notice { sn: 50, notice }.to_json());
    }

    fn acks_sent(out: &[Output]) -> Vec<u64> {
        texts(out)
            .into_iter()
            .filter_map(|c| match c {
                Content::Notice {
                    notice: Notice::SessionAck { received },
                    ..
                } => Some(received),
                _ => None,
            })
            .collect()
    }

    fn apply_all(state: &mut crate::state::ChatState, out: &[Output]) {
        for a in acts(out) {
            state.apply(a);
        }
    }

    /// Answers every LIST_MESSAGES in `out`, and those its answers lead
    /// to, from `all`, channel by channel as the reference server does.
    /// Returns `out` and every output that followed.
    fn serve(e: &mut Engine, out: Vec<Output>, all: &[ChatMessage]) -> Vec<Output> {
        let mut every = out.clone();
        let mut pending = out;
        for _ in 0..100 {
            let mut next = Vec::new();
            for m in sent(&pending) {
                if let ClientMessage::ListMessages {
                    channel,
                    before,
                    after,
                } = m
                {
                    let mine: Vec<ChatMessage> = all
                        .iter()
                        .filter(|x| x.channel == channel)
                        .cloned()
                        .collect();
                    let page = history::select(&mine, before, after, history::PAGE_SIZE).to_vec();
                    e.on_binary(&server_frame(ServerMessage::ListMessages(page)));
                    next.extend(e.drain());
                }
            }
            if next.is_empty() {
                return every;
            }
            every.extend(next.clone());
            pending = next;
        }
        panic!("history requests never ended");
    }

    fn posted(ids: std::ops::RangeInclusive<u64>) -> Vec<ChatMessage> {
        ids.map(|i| chat(i, if i % 2 == 0 { "general" } else { "random" }, "py"))
            .collect()
    }

    /// Signed in on a fresh session from `node`, showing `general` and
    /// having fetched `random` too, both from `all`. Returns the view.
    fn in_both_at(
        e: &mut Engine,
        node: Option<&str>,
        all: &[ChatMessage],
    ) -> crate::state::ChatState {
        let mut state = crate::state::ChatState::default();
        let (_, _, out) = connect_at(e, KEY, node);
        apply_all(&mut state, &out);
        auth_ack(e, true);
        let out = e.drain();
        apply_all(&mut state, &out);
        channels_listed(e, &["general", "random"]);
        let out = e.drain();
        apply_all(&mut state, &serve(e, out, all));
        e.select("random");
        let out = e.drain();
        apply_all(&mut state, &serve(e, out, all));
        e.select("general");
        let out = e.drain();
        assert!(sent(&out).is_empty(), "fetched once: {out:?}");
        apply_all(&mut state, &out);
        state
    }

    fn shown(state: &crate::state::ChatState, channel: &str) -> Vec<ChatMessage> {
        state
            .channel(channel)
            .map(|c| c.messages.iter().map(|m| (**m).clone()).collect())
            .unwrap_or_default()
    }

    fn of(all: &[ChatMessage], channel: &str) -> Vec<ChatMessage> {
        all.iter()
            .filter(|m| m.channel == channel)
            .cloned()
            .collect()
    }

    #[test]
    fn the_node_is_remembered_with_the_session_and_resumes_go_to_it() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        let (first, url_node, _) = connect_at(&mut e, KEY, Some("b1"));
        assert_eq!(first.state(), HandshakeState::Start);
        assert_eq!(url_node, None, "a fresh session opens plain /ws");
        assert_eq!(e.node(), Some("b1"));
        auth_ack(&mut e, true);
        e.drain();
        // Kept like the key, across a reload too.
        assert_eq!(e.saved().and_then(|s| s.node).as_deref(), Some("b1"));
        let mut r = reload(&e);
        assert_eq!(r.node(), Some("b1"));
        // A resume opens /ws?node=b1; the key goes only in the Restart.
        r.on_close(1006, "");
        assert_eq!(resume_at(&mut r, Some("b1")).as_deref(), Some("b1"));
        assert!(r.is_ready());
        // A resumed session told no node resumes through plain /ws later.
        r.on_close(1006, "");
        assert_eq!(resume_at(&mut r, None).as_deref(), Some("b1"));
        assert_eq!(r.node(), None);
        r.on_close(1006, "");
        assert_eq!(resume_at(&mut r, None), None);
        // A session stored by an older page (no `node`) still loads.
        let mut older = e.saved().unwrap();
        older.node = None;
        let json = older.to_json();
        assert!(!json.contains("node"), "{json}");
        let old = Saved::from_json(&json).unwrap();
        assert_eq!(old.node, None);
        // A bridge that names no node: plain /ws throughout.
        let mut n = Engine::new(Some("local".into()), "bob".into(), None);
        connect_at(&mut n, KEY, None);
        auth_ack(&mut n, true);
        n.on_close(1006, "");
        assert_eq!(resume_at(&mut n, None), None);
    }

    #[test]
    fn a_node_that_cannot_be_reached_is_left_for_plain_ws() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        connect_at(&mut e, KEY, Some("b1"));
        auth_ack(&mut e, true);
        e.drain();
        e.on_close(1006, "");
        // The load balancer has no route to b1 any more: the WebSocket
        // fails before opening.
        e.begin_connection();
        assert_eq!(e.ws_node(), Some("b1"));
        assert_eq!(e.on_close(1006, ""), Problem::NotOpened);
        // The next attempt goes through plain /ws, still presenting the
        // key: another node answers Again, and the page moves.
        let (first, url_node, out) = connect_at(&mut e, KEY2, Some("b2"));
        assert_eq!(url_node, None);
        assert_eq!(first.state(), HandshakeState::Restart);
        assert_eq!(first.session.as_deref(), Some(KEY));
        assert_eq!(
            sent(&out),
            [ClientMessage::Authenticate {
                nick: "alice".into()
            }]
        );
        auth_ack(&mut e, true);
        let out = e.drain();
        assert!(acts(&out).contains(&Action::Moved), "{out:?}");
        assert_eq!(e.node(), Some("b2"));
        // Resumes go to the new node.
        e.on_close(1006, "");
        assert_eq!(resume_at(&mut e, Some("b2")).as_deref(), Some("b2"));
    }

    #[test]
    fn a_service_restart_moves_to_a_fresh_session_and_catches_up_every_channel_once() {
        let mut all = posted(1..=30);
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        let mut state = in_both_at(&mut e, Some("b1"), &all);
        assert_eq!(shown(&state, "general"), of(&all, "general"));
        assert_eq!(shown(&state, "random"), of(&all, "random"));
        // A live message, then the drain deadline passes.
        all.push(chat(31, "random", "py"));
        e.on_binary(&server_frame(ServerMessage::SendMessage(chat(
            31, "random", "py",
        ))));
        apply_all(&mut state, &e.drain());
        let p = e.on_close(code::SERVICE_RESTART, "the bridge is restarting");
        assert_eq!(p, Problem::ServiceRestart);
        assert!(e.reconnect_now(), "at once, not after a backoff");
        state.apply(Action::Disconnected {
            problem: p,
            retry_at_ms: Some(0),
        });
        // More than a page per channel is posted meanwhile.
        all.extend(posted(32..=300));
        let (first, url_node, out) = connect_at(&mut e, KEY2, Some("b2"));
        assert_eq!(first.state(), HandshakeState::Start, "a fresh session");
        assert_eq!(first.session, None, "the old key is not offered");
        assert_eq!(url_node, None, "through plain /ws");
        assert!(!e.reconnect_now());
        assert_eq!(
            sent(&out),
            [ClientMessage::Authenticate {
                nick: "alice".into()
            }],
            "the same nick"
        );
        apply_all(&mut state, &out);
        auth_ack(&mut e, true);
        let out = e.drain();
        assert_eq!(
            sent(&out),
            [
                ClientMessage::ListChannels,
                HistoryQuery::NewerThan(Snowflake(30)).request("general"),
                HistoryQuery::NewerThan(Snowflake(31)).request("random"),
            ],
            "every channel from the newest message it had"
        );
        let every = serve(&mut e, out, &all);
        apply_all(&mut state, &every);
        // No message fetched twice, none missing.
        let mut caught: Vec<u64> = acts(&every)
            .into_iter()
            .filter_map(|a| match a {
                Action::History {
                    messages,
                    kind: HistoryKind::CatchUp,
                    ..
                } => Some(messages),
                _ => None,
            })
            .flatten()
            .map(|m| m.id.0)
            .collect();
        let n = caught.len();
        caught.sort_unstable();
        caught.dedup();
        assert_eq!(n, caught.len(), "a message was fetched twice");
        assert_eq!(caught, (32..=300).collect::<Vec<_>>());
        channels_listed(&mut e, &["general", "random"]);
        let out = e.drain();
        assert!(sent(&out).is_empty(), "no second newest page: {out:?}");
        apply_all(&mut state, &out);
        assert_eq!(shown(&state, "general"), of(&all, "general"));
        assert_eq!(shown(&state, "random"), of(&all, "random"));
        assert_eq!(state.rejoin, Some(crate::state::Rejoin::Moved));
        assert!(state.ready);
        assert_eq!(e.node(), Some("b2"));
    }

    #[test]
    fn a_draining_bridge_refusing_a_new_session_is_not_hammered() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        e.begin_connection();
        e.on_open();
        e.drain();
        // A Start on a draining bridge is closed with 1012.
        assert_eq!(
            e.on_close(code::SERVICE_RESTART, "draining"),
            Problem::ServiceRestart
        );
        assert!(!e.reconnect_now(), "no session was working: back off");
    }

    #[test]
    fn again_from_another_node_after_a_restart_is_a_move() {
        let all = posted(1..=10);
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        let mut state = in_both_at(&mut e, Some("b1"), &all);
        // b1 crashed: its users' Restart reaches b2, which answers Again.
        e.on_close(1006, "");
        assert!(!e.reconnect_now());
        let (first, url_node, out) = connect_at(&mut e, KEY2, Some("b2"));
        assert_eq!(url_node.as_deref(), Some("b1"), "the resume went to b1");
        assert_eq!(first.state(), HandshakeState::Restart);
        apply_all(&mut state, &out);
        auth_ack(&mut e, true);
        let out = e.drain();
        assert!(acts(&out).contains(&Action::Moved), "{out:?}");
        apply_all(&mut state, &serve(&mut e, out, &all));
        assert_eq!(state.rejoin, Some(crate::state::Rejoin::Moved));
        // An expired session on the same node is a plain reconnect.
        e.on_close(1006, "");
        let (_, url_node, _) = connect_at(&mut e, KEY, Some("b2"));
        assert_eq!(url_node.as_deref(), Some("b2"));
        auth_ack(&mut e, true);
        let out = e.drain();
        assert!(!acts(&out).contains(&Action::Moved), "{out:?}");
        apply_all(&mut state, &out);
        assert_eq!(state.rejoin, Some(crate::state::Rejoin::Reconnected));
    }

    #[test]
    fn a_busy_bridge_keeps_the_session_for_later() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        connect_at(&mut e, KEY, Some("b1"));
        auth_ack(&mut e, true);
        e.drain();
        e.on_close(1006, "");
        e.begin_connection();
        e.on_open();
        e.drain();
        let p = e.on_close(code::TRY_AGAIN_LATER, "too many sessions from your address");
        assert_eq!(p, Problem::Busy);
        assert!(!e.reconnect_now(), "backs off");
        // The held session may still resume later, on its node.
        assert_eq!(resume_at(&mut e, Some("b1")).as_deref(), Some("b1"));
        assert!(e.is_ready());
    }

    #[test]
    fn the_page_acknowledges_what_it_received() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        let (_, _, out) = connect_at(&mut e, KEY, None);
        // The first frame (HELLO) arms the timer once.
        assert!(out.contains(&Output::AckAfter { ms: 2_000 }), "{out:?}");
        auth_ack(&mut e, true);
        let out = e.drain();
        assert!(!out.iter().any(|o| matches!(o, Output::AckAfter { .. })));
        assert!(acks_sent(&out).is_empty());
        // The timer fires: the count so far.
        e.ack_due();
        assert_eq!(acks_sent(&e.drain()), [2]);
        // Nothing new: nothing sent.
        e.ack_due();
        assert!(e.drain().is_empty());
        // A burst: an acknowledgement every 32 frames without waiting.
        let mut acks = Vec::new();
        let mut timers = 0;
        for id in 1..=70 {
            e.on_binary(&server_frame(ServerMessage::SendMessage(chat(
                id, "general", "bob",
            ))));
            let out = e.drain();
            acks.extend(acks_sent(&out));
            timers += out
                .iter()
                .filter(|o| matches!(o, Output::AckAfter { .. }))
                .count();
        }
        assert_eq!(acks, [34, 66]);
        assert_eq!(timers, 1, "one timer at a time");
        e.ack_due();
        assert_eq!(acks_sent(&e.drain()), [72]);
        // A resume counts on from the Restart's `received`.
        e.on_close(1006, "");
        resume_at(&mut e, None);
        e.on_binary(&server_frame(ServerMessage::SendMessage(chat(
            99, "general", "bob",
        ))));
        e.drain();
        e.ack_due();
        assert_eq!(acks_sent(&e.drain()), [73]);
        // Not before the handshake.
        e.on_close(1006, "");
        e.begin_connection();
        e.on_open();
        e.drain();
        e.ack_due();
        assert!(acks_sent(&e.drain()).is_empty());
    }

    #[test]
    fn the_bridges_acknowledgements_trim_the_unconfirmed_frames() {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &[]);
        for i in 0..5 {
            e.send_message("general", &format!("m{i}")).unwrap();
        }
        e.drain();
        assert_eq!((e.unacked().first(), e.unacked().end()), (0, 9));
        notice(&mut e, Notice::SessionAck { received: 6 });
        assert_eq!((e.unacked().first(), e.unacked().end()), (6, 9));
        // Stale and impossible counts change nothing.
        notice(&mut e, Notice::SessionAck { received: 2 });
        notice(&mut e, Notice::SessionAck { received: 99 });
        assert_eq!((e.unacked().first(), e.unacked().end()), (6, 9));
        notice(&mut e, Notice::SessionAck { received: 9 });
        assert_eq!(e.unacked().frames().count(), 0);
        // A resume after that re-sends nothing.
        e.on_close(1006, "");
        resume_at(&mut e, None);
        assert!(e.is_ready());
        // A bridge that never acknowledges: the page still works, its
        // buffer stays bounded and a resume re-sends what is missing.
        let mut old = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut old, &[]);
        for i in 0..UNACKED_MAX_FRAMES + 5 {
            old.send_message("general", &format!("m{i}")).unwrap();
        }
        old.drain();
        assert_eq!(old.unacked().frames().count(), UNACKED_MAX_FRAMES);
        let last = old.frame_counts().1 - 1;
        let out = resume(&mut old, last);
        assert_eq!(sent(&out).len(), 1, "{out:?}");
        assert!(old.is_ready());
    }

    #[test]
    fn a_draining_bridge_is_shown_and_left_at_a_quiet_moment() {
        let all = posted(1..=4);
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        let mut state = in_both_at(&mut e, Some("b1"), &all);
        assert!(!e.move_if_quiet(), "not draining");
        notice(&mut e, Notice::SessionDraining { deadline_s: 30 });
        let out = e.drain();
        assert!(
            out.contains(&Output::Draining { deadline_s: 30 }),
            "{out:?}"
        );
        // Not quiet: frames the bridge has not confirmed.
        assert!(!e.move_if_quiet());
        assert_eq!(e.frame_counts().1, 5);
        notice(&mut e, Notice::SessionAck { received: 5 });
        // Not quiet: a history reply on its way.
        e.load_older("general", None);
        let pending = e.drain();
        notice(&mut e, Notice::SessionAck { received: 6 });
        assert!(!e.move_if_quiet());
        apply_all(&mut state, &serve(&mut e, pending, &all));
        // Quiet now.
        assert!(e.move_if_quiet());
        let out = e.drain();
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Close { code: 1000, .. })),
            "ends the session at the bridge at once: {out:?}"
        );
        let p = e.on_close(1000, "moving to another server");
        assert_eq!(p, Problem::ServiceRestart);
        assert!(e.reconnect_now());
        let (first, url_node, _) = connect_at(&mut e, KEY2, Some("b2"));
        assert_eq!((first.state(), url_node), (HandshakeState::Start, None));
        auth_ack(&mut e, true);
        let out = e.drain();
        assert!(acts(&out).contains(&Action::Moved));
        // A bridge without node names is a lone bridge: the page waits for
        // the deadline instead.
        let mut lone = Engine::new(Some("local".into()), "bob".into(), None);
        in_both_at(&mut lone, None, &all);
        notice(&mut lone, Notice::SessionDraining { deadline_s: 30 });
        let sent_count = lone.frame_counts().1;
        notice(
            &mut lone,
            Notice::SessionAck {
                received: sent_count,
            },
        );
        assert!(!lone.move_if_quiet());
    }

    /// The "search older" states in `out`, in order.
    fn searches(out: &[Output]) -> Vec<crate::state::OlderSearch> {
        picked(out, |o| match o {
            Output::Act(Action::OlderSearch(s)) => Some(s.clone()),
            _ => None,
        })
    }

    /// Runs a "search older" for `query` in general against a server
    /// holding `all` until it stops (at most `rounds` pages); returns the
    /// view state, the states it went through and the requests it sent.
    fn hunt(
        all: &[ChatMessage],
        query: &str,
        rounds: usize,
    ) -> (
        crate::state::ChatState,
        Vec<crate::state::OlderSearch>,
        Vec<ClientMessage>,
    ) {
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        let mut state = crate::state::ChatState::default();
        let got = in_general(&mut e, all);
        apply_all(&mut state, &got);
        let before = state.channel("general").and_then(|c| c.oldest());
        e.search_older("general", query, before);
        let mut statuses = Vec::new();
        let mut requests = Vec::new();
        for _ in 0..rounds {
            let out = e.drain();
            apply_all(&mut state, &out);
            statuses.extend(searches(&out));
            let asked = sent(&out);
            assert!(asked.len() <= 1, "one page at a time: {asked:?}");
            if asked.is_empty() {
                break;
            }
            requests.extend(asked);
            let got = answer(&mut e, &out, all);
            apply_all(&mut state, &got);
            statuses.extend(searches(&got));
            e.out
                .extend(got.into_iter().filter(|o| matches!(o, Output::Binary(_))));
        }
        (state, statuses, requests)
    }

    fn with_needle_at(n: u64, id: u64) -> Vec<ChatMessage> {
        (1..=n)
            .map(|i| {
                let mut m = chat(i, "general", "x");
                if i == id {
                    m.content = "where is the Needle?".into();
                }
                m
            })
            .collect()
    }

    #[test]
    fn search_older_pages_back_until_a_page_holds_a_match() {
        let all = with_needle_at(650, 50);
        let (state, statuses, requests) = hunt(&all, "needle", 20);
        // The newest page is 551..=650: then 451.., 351.., 251.., 151..,
        // 51.. and 1..=50, which holds the match.
        let wanted: Vec<_> = [551, 451, 351, 251, 151, 51]
            .into_iter()
            .map(|b| HistoryQuery::OlderThan(Snowflake(b)).request("general"))
            .collect();
        assert_eq!(requests, wanted);
        let last = statuses.last().unwrap();
        assert_eq!(last.status, SearchStatus::Found(1));
        assert_eq!((last.pages, last.query.as_str()), (6, "needle"));
        assert!(
            statuses[..statuses.len() - 1]
                .iter()
                .all(|s| s.status == SearchStatus::Running)
        );
        let g = state.channel("general").unwrap();
        assert_eq!(g.messages.len(), 650, "every page searched is shown");
        assert_eq!(g.older, crate::state::Older::Complete);
        assert_eq!(state.older_search.as_ref(), Some(last));
    }

    #[test]
    fn search_older_stops_at_the_first_page_with_a_match() {
        let all = with_needle_at(650, 420);
        let (state, statuses, requests) = hunt(&all, "NEEDLE", 20);
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert_eq!(
            statuses.last().map(|s| s.status),
            Some(SearchStatus::Found(1))
        );
        let g = state.channel("general").unwrap();
        assert_eq!(g.oldest(), Some(Snowflake(351)));
        assert_eq!(g.older, crate::state::Older::More);
    }

    #[test]
    fn search_older_without_a_match_ends_at_the_start_of_history() {
        let all = with_needle_at(650, 0);
        let (state, statuses, requests) = hunt(&all, "needle", 20);
        assert_eq!(requests.len(), 6);
        let last = statuses.last().unwrap();
        assert_eq!((last.status, last.pages), (SearchStatus::StartReached, 6));
        assert_eq!(state.channel("general").unwrap().messages.len(), 650);
    }

    #[test]
    fn search_older_pauses_after_a_run_of_pages() {
        let n = (PAGES_PER_RUN as u64 + 5) * 100;
        let all = with_needle_at(n, 0);
        let (_, statuses, requests) = hunt(&all, "needle", PAGES_PER_RUN as usize + 10);
        assert_eq!(requests.len(), PAGES_PER_RUN as usize);
        let last = statuses.last().unwrap();
        assert_eq!(
            (last.status, last.pages),
            (SearchStatus::Paused, PAGES_PER_RUN)
        );
    }

    #[test]
    fn search_older_can_be_stopped_and_is_interrupted_by_a_lost_connection() {
        let all = with_needle_at(650, 1);
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &all);
        e.search_older("general", "needle", Some(Snowflake(551)));
        let out = e.drain();
        assert_eq!(sent(&out).len(), 1);
        e.stop_search();
        assert_eq!(
            searches(&e.drain()).last().map(|s| s.status),
            Some(SearchStatus::Stopped)
        );
        // The page on its way is still shown, and nothing more is asked.
        let got = answer(&mut e, &out, &all);
        assert!(
            matches!(acts(&got).as_slice(), [Action::History { .. }]),
            "{got:?}"
        );
        assert!(sent(&got).is_empty() && searches(&got).is_empty());

        e.search_older("general", "needle", Some(Snowflake(451)));
        assert_eq!(sent(&e.drain()).len(), 1);
        let _ = e.on_close(1006, "");
        assert_eq!(
            searches(&e.drain()).last().map(|s| s.status),
            Some(SearchStatus::Interrupted)
        );
        // Not connected: nothing is asked.
        e.search_older("general", "needle", None);
        let out = e.drain();
        assert!(sent(&out).is_empty());
        assert_eq!(
            searches(&out).last().map(|s| s.status),
            Some(SearchStatus::Interrupted)
        );
    }

    #[test]
    fn a_blank_search_asks_nothing_and_load_older_pages_are_not_taken_for_it() {
        let all = with_needle_at(650, 1);
        let mut e = Engine::new(Some("local".into()), "alice".into(), None);
        in_general(&mut e, &all);
        e.search_older("general", "   ", None);
        assert!(e.drain().is_empty());
        // A page the user asked for is not the search's.
        e.load_older("general", Some(Snowflake(551)));
        let user = e.drain();
        e.search_older("general", "needle", Some(Snowflake(451)));
        let hunt = e.drain();
        let got = answer(&mut e, &user, &all);
        assert!(searches(&got).is_empty(), "{got:?}");
        let got = answer(&mut e, &hunt, &all);
        assert_eq!(
            searches(&got).last().map(|s| (s.status, s.pages)),
            Some((SearchStatus::Running, 1))
        );
    }
}
