//! A property test of the bridge session (issue 9): random sequences of
//! handshake, text, binary (valid and invalid dumdum client frames), ping and
//! close frames, cuts and resumes, and bytes from the upstream, through the
//! real bridge on 127.0.0.1:0 to a fake upstream written here.
//!
//! The fake upstream runs the protocol crate's `Server` state machine over
//! everything it gets and answers every request. Properties, for every case:
//! - nothing panics in the bridge, and it keeps serving a bystander session
//!   open during the case;
//! - the upstream only ever gets whole, valid client messages, in an order
//!   the protocol allows, and they are the client's valid frames in order
//!   (all of them unless the session ended: as the page does, the client
//!   sends again after a resume what Success says was not forwarded);
//! - the counts are right: every Success `received` is what the upstream got
//!   by then, every acknowledgement is at most that, and after a resume the
//!   client has received exactly the bytes the upstream sent, once each.
//!
//! Every wait is bounded; the case count is modest (`PROPTEST_CASES` raises it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use common::{Bridge, http_get};
use dumdum_bridge::{Config, UpstreamConfig};
use dumdum_protocol::session::{Content, Handshake, HandshakeState, Notice, SUBPROTOCOL};
use dumdum_protocol::{
    ChatMessage, ClientMessage, Decode, Decoder, Server, ServerEvent, ServerMessage, Snowflake,
};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// The bound of one wait.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Panics anywhere but the test's own thread (the bridge's tasks, the fake
// upstream) are counted.

static PANICS: AtomicUsize = AtomicUsize::new(0);
static PANIC_MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn count_panics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if thread
                .name()
                .is_some_and(|n| n.starts_with("tokio-runtime-worker"))
            {
                PANICS.fetch_add(1, Ordering::SeqCst);
                PANIC_MESSAGES.lock().unwrap().push(info.to_string());
            }
            previous(info);
        }));
    });
}

// ---------------------------------------------------------------------------
// The fake upstream.

/// What one upstream connection saw and did.
#[derive(Debug, Default)]
struct UpLog {
    /// Client messages received, in order.
    got: Vec<ClientMessage>,
    /// Anything that is not a valid client stream in protocol order.
    violations: Vec<String>,
    /// Every byte written to the bridge, in order.
    sent: Vec<u8>,
    /// Messages written (answers and pushes).
    sent_frames: usize,
    /// The connection has ended.
    closed: bool,
}

/// What the test asks an upstream connection to do.
#[derive(Debug, Clone)]
enum Push {
    /// A chat message, as the server broadcasts it (only once the client
    /// is authenticated, as a real server does).
    Chat(String),
    /// Any server message, whatever the state.
    Raw(ServerMessage),
    /// Bytes that need not be a message at all.
    Garbage(Vec<u8>),
    /// Close the connection.
    Close,
}

struct UpConn {
    log: Arc<Mutex<UpLog>>,
    push: mpsc::UnboundedSender<Push>,
}

impl UpConn {
    fn got(&self) -> usize {
        self.log.lock().unwrap().got.len()
    }
}

/// Accepts connections; each is announced on the returned channel.
async fn fake_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<UpConn>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = Arc::new(Mutex::new(UpLog::default()));
            let (push, pushes) = mpsc::unbounded_channel();
            if tx
                .send(UpConn {
                    log: log.clone(),
                    push,
                })
                .is_err()
            {
                return;
            }
            tokio::spawn(serve_upstream(stream, log, pushes));
        }
    });
    (addr, rx)
}

async fn serve_upstream(
    mut stream: TcpStream,
    log: Arc<Mutex<UpLog>>,
    mut pushes: mpsc::UnboundedReceiver<Push>,
) {
    let mut decoder = Decoder::<ClientMessage>::default();
    let mut server = Server::default();
    let mut next_id = 1u64;
    let mut buf = vec![0u8; 8192];
    let mut broken = false;
    loop {
        let mut out: Vec<Vec<u8>> = Vec::new();
        tokio::select! {
            r = stream.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if broken {
                    continue;
                }
                decoder.feed(&buf[..n]);
                loop {
                    match decoder.next_message() {
                        Ok(Some((msg, raw))) => {
                            let mut l = log.lock().unwrap();
                            if ClientMessage::decode_exact(&raw).as_ref() != Ok(&msg) {
                                l.violations.push(format!("not one whole message: {raw:?}"));
                            }
                            l.got.push(msg);
                            drop(l);
                            if let Err(e) = server.handle_data(&raw) {
                                let mut l = log.lock().unwrap();
                                let why = format!("out of protocol order: {e} (after {:?})", l.got);
                                l.violations.push(why);
                                broken = true;
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            log.lock().unwrap().violations.push(format!("invalid client bytes: {e}"));
                            broken = true;
                            break;
                        }
                    }
                }
                while let Some(ev) = server.poll_event() {
                    // Answer every request, as a real server does.
                    let _ = match ev {
                        ServerEvent::Hello => server.accept_hello(false),
                        ServerEvent::Authenticate { .. } => server.authenticate(true),
                        ServerEvent::ListChannels => server.list_channels(&["general".into()]),
                        ServerEvent::ListMessages { .. } => server.list_messages(&[]),
                        ServerEvent::SendMessage { channel, content } => {
                            next_id += 1;
                            let nick = server.nick().unwrap_or("x").to_string();
                            server.send_message(&ChatMessage::new(
                                Snowflake(next_id),
                                &channel,
                                &nick,
                                &content,
                            ))
                        }
                        _ => Ok(()),
                    };
                }
                out.extend(std::iter::from_fn(|| server.poll_transmit()));
            }
            p = pushes.recv() => match p {
                None | Some(Push::Close) => break,
                Some(Push::Chat(content)) => {
                    next_id += 1;
                    let m = ChatMessage::new(Snowflake(next_id), "general", "pusher", &content);
                    if server.send_message(&m).is_ok() {
                        out.extend(std::iter::from_fn(|| server.poll_transmit()));
                    }
                }
                Some(Push::Raw(m)) => out.push(m.to_bytes().unwrap().to_vec()),
                Some(Push::Garbage(b)) => out.push(b),
            },
        }
        for bytes in out {
            {
                let mut l = log.lock().unwrap();
                l.sent.extend_from_slice(&bytes);
                l.sent_frames += 1;
            }
            if stream.write_all(&bytes).await.is_err() {
                break;
            }
        }
    }
    log.lock().unwrap().closed = true;
}

// ---------------------------------------------------------------------------
// A WebSocket client that tolerates everything.

struct Ws {
    ws: WebSocketStream<TcpStream>,
    open: bool,
    /// The close code the bridge sent, if any.
    closed_with: Option<u16>,
    /// Why the connection is no longer open, in words.
    ended: Option<String>,
}

/// What the client saw over the whole session (every WebSocket).
#[derive(Debug, Default)]
struct Seen {
    /// Binary frames received, concatenated.
    bytes: Vec<u8>,
    frames: u64,
    /// B->C acknowledgements, in order.
    acks: Vec<u64>,
    /// Invalid things the bridge sent.
    violations: Vec<String>,
}

impl Ws {
    async fn connect(addr: SocketAddr) -> Ws {
        let url = format!("ws://{addr}/ws");
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tcp))
            .await
            .expect("upgrade in time")
            .expect("upgrade");
        Ws {
            ws,
            open: true,
            closed_with: None,
            ended: None,
        }
    }

    async fn send(&mut self, m: Message) {
        if !self.open {
            return;
        }
        match tokio::time::timeout(WAIT, self.ws.send(m)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.end(format!("send failed: {e}")),
            Err(_) => self.end("send timed out".into()),
        }
    }

    async fn send_text(&mut self, c: &Content) {
        self.send(Message::text(c.to_json())).await;
    }

    /// Reads what arrives within `t` (all of it, each read bounded by `t`).
    async fn drain(&mut self, seen: &mut Seen, t: Duration) {
        while self.open {
            match tokio::time::timeout(t, self.ws.next()).await {
                Err(_) => return,
                Ok(m) => self.on_message(m, seen),
            }
        }
    }

    /// The next handshake command, recording what comes before it.
    async fn handshake_reply(&mut self, seen: &mut Seen) -> Option<Handshake> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.open {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = tokio::time::timeout(left, self.ws.next())
                .await
                .expect("a handshake reply in time");
            if let Some(Ok(Message::Text(t))) = &m
                && let Ok(Content::Handshake(h)) = Content::parse(t.as_str())
            {
                return Some(h);
            }
            self.on_message(m, seen);
        }
        None
    }

    fn end(&mut self, why: String) {
        if self.open {
            self.open = false;
            self.ended = Some(why);
        }
    }

    fn on_message(
        &mut self,
        m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        seen: &mut Seen,
    ) {
        match m {
            None => self.end("the connection ended".into()),
            Some(Err(e)) => self.end(format!("read failed: {e}")),
            Some(Ok(Message::Binary(b))) => {
                if ServerMessage::decode_exact(&b).is_err() {
                    seen.violations
                        .push(format!("a binary frame that is not one message: {b:?}"));
                }
                seen.bytes.extend_from_slice(&b);
                seen.frames += 1;
            }
            Some(Ok(Message::Text(t))) => match Content::parse(t.as_str()) {
                Ok(Content::Notice {
                    notice: Notice::SessionAck { received },
                    ..
                }) => seen.acks.push(received),
                Ok(_) => {}
                Err(e) => seen.violations.push(format!("invalid text {t:?}: {e}")),
            },
            Some(Ok(Message::Close(f))) => {
                self.end(format!("closed: {f:?}"));
                self.closed_with = Some(f.map_or(1005, |f| f.code.into()));
            }
            Some(Ok(_)) => {}
        }
    }

    /// Start -> Again -> Restart -> Success: the key.
    async fn new_session(&mut self, seen: &mut Seen) -> String {
        self.send_text(&Content::Handshake(Handshake::start(1, None)))
            .await;
        let again = self.handshake_reply(seen).await.expect("Again");
        assert_eq!(again.state(), HandshakeState::Again, "{again:?}");
        let key = again.session.unwrap();
        self.send_text(&Content::Handshake(Handshake::restart(
            2,
            key.clone(),
            0,
            None,
        )))
        .await;
        let ok = self.handshake_reply(seen).await.expect("Success");
        assert_eq!(ok.state(), HandshakeState::Success, "{ok:?}");
        assert_eq!(ok.received, Some(0));
        key
    }

    /// Drops the connection without a close frame.
    fn cut(self) {
        drop(self);
    }

    async fn close(&mut self, code: u16, seen: &mut Seen) {
        self.send(Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: "bye".into(),
        })))
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.open && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(3), self.ws.next()).await {
                Err(_) => break,
                Ok(m) => self.on_message(m, seen),
            }
        }
        self.end(format!("closed with {code} by the test"));
    }
}

// ---------------------------------------------------------------------------
// The operations.

#[derive(Debug, Clone)]
enum Op {
    /// The next message of a well-behaved client: HELLO, AUTHENTICATE, then
    /// requests and posts.
    Next(u8, String),
    /// Any client message (HELLO twice, AUTHENTICATE early: the session may end).
    Any(ClientMessage),
    /// A binary frame that is not one whole client message (if by chance it
    /// is one, it counts as one).
    Bad(Vec<u8>),
    /// A valid text frame: the client's acknowledgement.
    Ack,
    /// A handshake command after the handshake (ignored).
    LateHandshake,
    /// Text that is no session message.
    BadText(String),
    Ping(Vec<u8>),
    /// Close with this code (1001 holds the session, others end it).
    Close(u16),
    /// Drop the WebSocket without a close frame.
    Cut,
    Upstream(Push),
    /// This many posts at once (acknowledgements come every 16 frames).
    Burst(u8),
    /// Let the frames flow (milliseconds).
    Pause(u8),
}

fn short_text() -> impl Strategy<Value = String> {
    "[a-z0-9 ]{0,12}"
}

fn any_client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (0u8..4).prop_map(|v| ClientMessage::Hello { version: v }),
        short_text().prop_map(|nick| ClientMessage::Authenticate { nick }),
        (short_text(), short_text())
            .prop_map(|(channel, content)| ClientMessage::SendMessage { channel, content }),
        Just(ClientMessage::ListChannels),
        (short_text(), any::<u64>(), any::<u64>()).prop_map(|(channel, before, after)| {
            ClientMessage::ListMessages {
                channel,
                before,
                after,
            }
        }),
    ]
}

fn bad_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // A valid message cut short.
        (any_client_message(), any::<prop::sample::Index>()).prop_map(|(m, i)| {
            let b = m.to_bytes().unwrap();
            b[..i.index(b.len())].to_vec()
        }),
        // A valid message with bytes after it.
        (
            any_client_message(),
            prop::collection::vec(any::<u8>(), 1..4)
        )
            .prop_map(|(m, tail)| {
                let mut b = m.to_bytes().unwrap().to_vec();
                b.extend(tail);
                b
            }),
        // Two messages in one frame.
        (any_client_message(), any_client_message())
            .prop_map(|(a, b)| { [a.to_bytes().unwrap(), b.to_bytes().unwrap()].concat() }),
        // Not UTF-8 where a string is.
        Just(vec![0x01, 0x02, 0xc3, 0x28]),
        // An unknown type, then anything.
        prop::collection::vec(any::<u8>(), 0..6).prop_map(|mut b| {
            b.insert(0, 0x06 + b.first().copied().unwrap_or(0) % 200);
            b
        }),
        prop::collection::vec(any::<u8>(), 0..24),
    ]
}

fn push() -> impl Strategy<Value = Push> {
    prop_oneof![
        6 => short_text().prop_map(Push::Chat),
        1 => Just(Push::Raw(ServerMessage::Hello { tls: false })),
        1 => Just(Push::Raw(ServerMessage::AcknowledgeAuthentication { success: true })),
        1 => Just(Push::Raw(ServerMessage::ListChannels(vec!["general".into()]))),
        1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(Push::Garbage),
        1 => Just(Push::Close),
    ]
}

/// What a well-behaved client and server do: the session lives on.
fn benign_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (any::<u8>(), short_text()).prop_map(|(k, s)| Op::Next(k, s)),
        1 => (16u8..24).prop_map(Op::Burst),
        2 => Just(Op::Ack),
        1 => Just(Op::LateHandshake),
        2 => prop::collection::vec(any::<u8>(), 0..8).prop_map(Op::Ping),
        1 => Just(Op::Close(1001)),
        3 => Just(Op::Cut),
        4 => short_text().prop_map(|t| Op::Upstream(Push::Chat(t))),
        2 => (0u8..20).prop_map(Op::Pause),
    ]
}

/// What may end the session: a protocol error either side, a close.
fn disruptive_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any_client_message().prop_map(Op::Any),
        bad_frame().prop_map(Op::Bad),
        "[^\\x00]{0,12}".prop_map(Op::BadText),
        prop::sample::select(vec![1000u16, 4000]).prop_map(Op::Close),
        push().prop_map(Op::Upstream),
    ]
}

/// Benign operations, and in half the cases one disruptive operation
/// somewhere among them.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    (
        prop::collection::vec(benign_op(), 1..24),
        prop::option::of((disruptive_op(), any::<prop::sample::Index>())),
    )
        .prop_map(|(mut ops, disruption)| {
            if let Some((op, at)) = disruption {
                let at = at.index(ops.len() + 1);
                ops.insert(at, op);
            }
            ops
        })
}

// ---------------------------------------------------------------------------
// The environment shared by every case: one runtime, one bridge, one fake
// upstream.

struct Env {
    rt: tokio::runtime::Runtime,
    bridge: Bridge,
    conns: tokio::sync::Mutex<mpsc::UnboundedReceiver<UpConn>>,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        count_panics();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (bridge, conns) = rt.block_on(async {
            let (addr, conns) = fake_upstream().await;
            let bridge = Bridge::start(Config {
                upstreams: vec![UpstreamConfig::new("fake", addr.to_string())],
                // Every case's session counts from 127.0.0.1.
                max_sessions_per_ip: 100_000,
                ..Config::default()
            })
            .await;
            (bridge, conns)
        });
        Env {
            rt,
            bridge,
            conns: tokio::sync::Mutex::new(conns),
        }
    })
}

/// Another session, logged in, open for the whole case: the bridge must
/// keep serving it whatever the case's session does.
struct Bystander {
    ws: Ws,
    seen: Seen,
    _up: UpConn,
}

impl Bystander {
    async fn start(env: &Env) -> Bystander {
        let mut seen = Seen::default();
        let mut ws = Ws::connect(env.bridge.addr).await;
        ws.new_session(&mut seen).await;
        let up = next_conn(&mut *env.conns.lock().await).await;
        for m in [
            ClientMessage::Hello { version: 2 },
            ClientMessage::Authenticate {
                nick: "bystander".into(),
            },
        ] {
            ws.send(Message::binary(m.to_bytes().unwrap())).await;
        }
        Bystander { ws, seen, _up: up }
    }

    /// Asks for the channel list; HELLO, the ack and the list arrive.
    async fn check(mut self) {
        self.ws
            .send(Message::binary(
                ClientMessage::ListChannels.to_bytes().unwrap(),
            ))
            .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.ws.open && self.seen.frames < 3 && tokio::time::Instant::now() < deadline {
            self.ws
                .drain(&mut self.seen, Duration::from_millis(20))
                .await;
        }
        assert!(
            self.ws.open && self.seen.frames == 3,
            "the bystander session no longer answers ({} of 3 frames, ended: {:?})",
            self.seen.frames,
            self.ws.ended
        );
        self.ws.close(1000, &mut self.seen).await;
    }
}

async fn next_conn(conns: &mut mpsc::UnboundedReceiver<UpConn>) -> UpConn {
    tokio::time::timeout(WAIT, conns.recv())
        .await
        .expect("the bridge connects upstream in time")
        .expect("the fake upstream runs")
}

/// Waits (bounded) until `cond` holds; false on timeout.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

// ---------------------------------------------------------------------------
// One case.

struct Case {
    bridge: SocketAddr,
    up: UpConn,
    key: String,
    ws: Option<Ws>,
    seen: Seen,
    /// Every valid client message sent, in order.
    sent: Vec<ClientMessage>,
    /// Well-behaved progress: 0 before HELLO, 1 before AUTHENTICATE, 2 after.
    step: u8,
    /// Something that may legitimately end the session happened.
    may_end: bool,
    /// The session is over (a resume got Again).
    ended: bool,
    log: Vec<String>,
}

impl Case {
    fn note(&mut self, s: String) {
        self.log.push(s);
    }

    /// The current WebSocket, resuming the session when the last one is gone.
    async fn ws(&mut self) -> Option<&mut Ws> {
        if self.ended {
            return None;
        }
        if !self.ws.as_ref().is_some_and(|w| w.open) {
            if let Some(ws) = &self.ws
                && ws.closed_with.is_some_and(|c| c != 1001)
            {
                // The bridge closed it (1007, 1008, upstream closed...): the
                // session is over; a resume must get Again.
                self.may_end = true;
            }
            self.resume().await;
        }
        self.ws.as_mut()
    }

    /// Restart with the key; checks Success `received` against the upstream.
    async fn resume(&mut self) {
        self.ws = None;
        // A session that something may have ended is given fewer tries.
        let tries = if self.may_end { 2 } else { 5 };
        for attempt in 0..tries {
            let mut ws = Ws::connect(self.bridge).await;
            ws.send_text(&Content::Handshake(Handshake::restart(
                3,
                self.key.clone(),
                self.seen.frames,
                None,
            )))
            .await;
            let Some(h) = ws.handshake_reply(&mut self.seen).await else {
                continue;
            };
            match h.state() {
                HandshakeState::Success => {
                    assert_eq!(h.resumed, Some(true), "{h:?}");
                    let r = h.received.expect("Success carries received");
                    self.note(format!("resumed, bridge received {r}"));
                    // Nothing new was sent since the cut: the upstream
                    // gets exactly what the bridge counted, never more.
                    let up = &self.up;
                    assert!(
                        r as usize <= self.sent.len(),
                        "Success says {r} frames forwarded, only {} were sent",
                        self.sent.len()
                    );
                    let ok = eventually(|| up.got() >= r as usize).await;
                    assert!(
                        ok,
                        "Success says {r} frames forwarded, upstream got {}",
                        up.got()
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    assert_eq!(
                        self.up.got() as u64,
                        r,
                        "Success received vs the upstream's count"
                    );
                    // As the page does: frames the bridge did not forward
                    // are sent again.
                    let lost = self.sent.split_off(r as usize);
                    for m in lost {
                        self.note(format!("re-sent {m:?}"));
                        ws.send(Message::binary(m.to_bytes().unwrap())).await;
                        self.sent.push(m);
                    }
                    self.ws = Some(ws);
                    return;
                }
                HandshakeState::Again => {
                    ws.close(1000, &mut self.seen).await;
                    self.note(format!("resume attempt {attempt}: Again"));
                    // A session still attached to a dying WebSocket is
                    // probed first; try again shortly.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("unexpected handshake reply {other:?}"),
            }
        }
        assert!(
            self.may_end,
            "a session that nothing ended could not be resumed: {:?}",
            self.log
        );
        self.ended = true;
    }

    async fn send_binary(&mut self, bytes: Vec<u8>) {
        let valid = ClientMessage::decode_exact(&bytes).ok();
        let Some(ws) = self.ws().await else { return };
        ws.send(Message::binary(bytes)).await;
        match valid {
            Some(m) => self.sent.push(m),
            // The bridge closes with 1007.
            None => self.may_end = true,
        }
    }

    async fn run(&mut self, op: Op) {
        self.note(format!("{op:?}"));
        match op {
            Op::Next(k, s) => {
                let m = match self.step {
                    0 => ClientMessage::Hello { version: 2 },
                    1 => ClientMessage::Authenticate {
                        nick: format!("n{}", k % 100),
                    },
                    _ => match k % 4 {
                        0 => ClientMessage::ListChannels,
                        1 => ClientMessage::ListMessages {
                            channel: "general".into(),
                            before: 0,
                            after: u64::from(k),
                        },
                        _ => ClientMessage::SendMessage {
                            channel: "general".into(),
                            content: s,
                        },
                    },
                };
                self.step = (self.step + 1).min(2);
                self.send_binary(m.to_bytes().unwrap().to_vec()).await;
            }
            Op::Burst(n) => {
                // Before the login, the burst logs in first.
                for i in 0..n {
                    Box::pin(self.run(Op::Next(i, format!("burst {i}")))).await;
                }
            }
            Op::Any(m) => {
                // HELLO twice, AUTHENTICATE before HELLO, a wrong version...
                self.may_end = true;
                if matches!(m, ClientMessage::Hello { .. }) {
                    self.step = self.step.max(1);
                }
                self.send_binary(m.to_bytes().unwrap().to_vec()).await;
            }
            Op::Bad(b) => self.send_binary(b).await,
            Op::Ack => {
                let received = self.seen.frames;
                if let Some(ws) = self.ws().await {
                    ws.send_text(&Content::Notice {
                        sn: 9,
                        notice: Notice::SessionAck { received },
                    })
                    .await;
                }
            }
            Op::LateHandshake => {
                if let Some(ws) = self.ws().await {
                    ws.send_text(&Content::Handshake(Handshake::start(9, None)))
                        .await;
                }
            }
            Op::BadText(t) => {
                let valid = Content::parse(&t).is_ok();
                if let Some(ws) = self.ws().await {
                    ws.send(Message::text(t)).await;
                    if !valid {
                        self.may_end = true;
                    }
                }
            }
            Op::Ping(p) => {
                if let Some(ws) = self.ws().await {
                    ws.send(Message::Ping(Bytes::from(p))).await;
                }
            }
            Op::Close(code) => {
                if code != 1001 {
                    self.may_end = true;
                }
                if self.ws().await.is_some() {
                    let mut seen = std::mem::take(&mut self.seen);
                    if let Some(ws) = self.ws.as_mut() {
                        ws.close(code, &mut seen).await;
                        // Our own close: the next operation resumes (or
                        // finds the session over).
                        ws.closed_with = None;
                    }
                    self.seen = seen;
                }
            }
            Op::Cut => {
                if self.ws().await.is_some()
                    && let Some(ws) = self.ws.take()
                {
                    ws.cut();
                }
            }
            Op::Upstream(p) => {
                if !matches!(p, Push::Chat(_)) {
                    self.may_end = true;
                }
                let _ = self.up.push.send(p);
            }
            Op::Pause(ms) => {
                let mut seen = std::mem::take(&mut self.seen);
                if let Some(ws) = self.ws.as_mut() {
                    ws.drain(&mut seen, Duration::from_millis(u64::from(ms)))
                        .await;
                }
                self.seen = seen;
            }
        }
        // Read what the bridge sent meanwhile.
        let mut seen = std::mem::take(&mut self.seen);
        if let Some(ws) = self.ws.as_mut() {
            ws.drain(&mut seen, Duration::from_millis(2)).await;
        }
        self.seen = seen;
    }
}

async fn run_case(ops: Vec<Op>) {
    let env = env();
    let bystander = Bystander::start(env).await;
    let mut seen = Seen::default();
    let mut ws = Ws::connect(env.bridge.addr).await;
    let key = ws.new_session(&mut seen).await;
    let up = next_conn(&mut *env.conns.lock().await).await;
    let mut case = Case {
        bridge: env.bridge.addr,
        up,
        key,
        ws: Some(ws),
        seen,
        sent: Vec::new(),
        step: 0,
        may_end: false,
        ended: false,
        log: Vec::new(),
    };
    for op in ops {
        case.run(op).await;
    }

    // Unless something ended the session, every frame sent is forwarded
    // (the upstream answers everything, so none waits forever); frames lost
    // in a last cut are sent again by the resume first.
    let _ = case.ws().await;
    if !case.ended {
        let want = case.sent.len();
        let up = &case.up;
        let all = eventually(|| up.got() >= want || up.log.lock().unwrap().closed).await;
        if !case.may_end {
            assert!(
                all && up.got() == want,
                "the upstream got {} of {want} frames; ops {:?}",
                up.got(),
                case.log
            );
        }
    }
    // Cut and resume once more: Success must count what the upstream got,
    // and the client then has every byte the upstream sent, once.
    if !case.ended {
        if let Some(ws) = case.ws.take() {
            ws.cut();
        }
        case.resume().await;
    }
    if !case.ended && !case.may_end {
        let up = case.up.log.clone();
        let mut seen = std::mem::take(&mut case.seen);
        let ws = case.ws.as_mut().unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while seen.bytes.len() < up.lock().unwrap().sent.len()
            && ws.open
            && tokio::time::Instant::now() < deadline
        {
            ws.drain(&mut seen, Duration::from_millis(20)).await;
        }
        let sent = up.lock().unwrap().sent.clone();
        assert!(
            seen.bytes == sent,
            "the client received {} bytes in {} frames, the upstream sent {} in {} messages; ops {:?}",
            seen.bytes.len(),
            seen.frames,
            sent.len(),
            up.lock().unwrap().sent_frames,
            case.log
        );
        assert_eq!(seen.frames as usize, up.lock().unwrap().sent_frames);
        case.seen = seen;
    }

    // The upstream only got valid messages in protocol order, and they are
    // the client's valid frames in order (all of them without a cut).
    let forwarded = {
        let log = case.up.log.lock().unwrap();
        assert!(
            log.violations.is_empty(),
            "the bridge forwarded invalid frames: {:?}; ops {:?}",
            log.violations,
            case.log
        );
        assert!(
            log.got.len() <= case.sent.len() && case.sent[..log.got.len()] == log.got[..],
            "the upstream got {:?}, the client sent {:?}; ops {:?}",
            log.got,
            case.sent,
            case.log
        );
        log.got.len() as u64
    };
    eprintln!(
        "case: {} ops, {forwarded} frames up, {} frames down, {} resumes, {} acks, {}",
        case.log.iter().filter(|l| !l.starts_with("re")).count(),
        case.seen.frames,
        case.log.iter().filter(|l| l.starts_with("resumed")).count(),
        case.seen.acks.len(),
        if case.ended {
            "ended"
        } else if case.may_end {
            "may end"
        } else {
            "whole"
        }
    );
    // Acknowledgements never go down and never exceed what was forwarded.
    assert!(
        case.seen.acks.windows(2).all(|w| w[0] <= w[1]),
        "acks went down: {:?}",
        case.seen.acks
    );
    assert!(
        case.seen.acks.iter().all(|&a| a <= forwarded),
        "an ack above the {forwarded} frames forwarded: {:?}",
        case.seen.acks
    );
    assert!(
        case.seen.violations.is_empty(),
        "the bridge sent invalid frames: {:?}",
        case.seen.violations
    );

    // End the session so it holds no slot, then check the bridge still
    // serves: no panic, the bystander answers, /healthz is 200.
    if let Some(ws) = case.ws.as_mut() {
        let mut seen = Seen::default();
        ws.close(1000, &mut seen).await;
    }
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "the bridge panicked: {:?}",
        PANIC_MESSAGES.lock().unwrap()
    );
    bystander.check().await;
    assert_eq!(http_get(env.bridge.addr, "/healthz").await.0, 200);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        max_shrink_iters: 64,
        // Every case's waits are bounded; so is the search for a smaller one.
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn sessions_never_panic_forward_only_valid_frames_and_count_right(
        ops in ops()
    ) {
        // Each wait in a case is bounded; a case that still runs this long
        // means the bridge stopped answering.
        let summary = format!("{ops:?}");
        env().rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(90), run_case(ops))
                .await
                .unwrap_or_else(|_| panic!("a case ran for 90 s: {summary}"));
        });
    }
}
