//! One session: the upstream connection and everything that must outlive a
//! WebSocket (for resumption). A session is a task of its own; WebSockets
//! attach to it and detach from it through [`Cmd`]s.
//!
//! Client frames are validated by the WebSocket reader, queued here, and
//! released upstream in order as the [`Client`] model of the upstream link
//! allows (AUTHENTICATE waits for the server's HELLO and for TLS). Server
//! bytes are split into messages by a [`Decoder`]; each message's exact
//! bytes become one binary frame, are fed to the model, and are copied once
//! into a bounded ring (the copy is what the WebSocket's writer sends) so a
//! client that reconnects can be replayed what it missed. The embedded
//! server's frames arrive whole (see [`MemInbox`]): an authenticated
//! session's chat, channel lists and history pages are neither split nor
//! validated again, and are kept in the ring without a copy.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dumdum_protocol::session::{Content, Handshake, Notice};
use dumdum_protocol::{
    Client, ClientConfig, ClientMessage, ClientState, DEFAULT_BUFFER_LIMIT, Decode, Decoder,
    Readiness, ServerMessage,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{App, IpGuard, Peer, Registered, Target, Upstream, key_prefix};
use crate::budget::HeldCharge;
use crate::embedded::MemInbox;
use crate::link::Link;
use crate::queue;
use crate::tls;
use crate::ws::{CLOSE_WAIT, PING_EVERY, Sink};
use crate::wsio::{Outgoing, advance};

/// Commands queued from WebSockets to a session (a full queue holds its
/// WebSocket's reader back).
const CMD_QUEUE: usize = 32;
/// Bytes waiting to be written upstream before client frames stop being read.
const UP_QUEUE_BYTES: usize = 64 * 1024;
/// While a WebSocket is attached, the replay ring keeps every frame its
/// writer has not yet flushed to the socket, plus at least this many bytes
/// of the newest flushed frames (what may still sit in kernel buffers when
/// the connection drops).
const ATTACHED_RETAIN: usize = 64 * 1024;
/// Largest upstream read. Reads go through a buffer on the stack (see
/// [`read_into`]), so an idle session holds no read buffer at all.
const READ_CHUNK: usize = 16 * 1024;
/// Frames handed to one vectored write upstream.
const MAX_IOV: usize = 64;
/// A drained WebSocket queue that grew beyond this many frames gives its
/// storage back.
const OUT_KEEP: usize = 64;
/// How long a WebSocket that is attached when a Restart with its key arrives
/// has to answer a ping before it is counted as dead (a phone that changed
/// networks leaves its old socket behind without a FIN).
pub(crate) const PROBE_WAIT: Duration = Duration::from_millis(2500);

/// Close codes of the spec (defined once, in the protocol crate).
pub(crate) use dumdum_protocol::session::close as code;

/// Something for a session's WebSocket.
#[derive(Debug)]
pub(crate) enum Out {
    Binary(Bytes),
    Text(String),
    /// A keep-alive ping, or a probe.
    Ping,
    /// The answer to a client's ping.
    Pong(Bytes),
}

impl Out {
    pub fn cost(&self) -> usize {
        match self {
            Out::Binary(b) => b.len(),
            Out::Text(t) => t.len(),
            Out::Ping | Out::Pong(_) => 0,
        }
    }
}

impl Outgoing for Out {
    fn frame(&self) -> (u8, &[u8]) {
        use dumdum_protocol::websocket::{OP_BINARY, OP_PING, OP_PONG, OP_TEXT};
        match self {
            Out::Binary(b) => (OP_BINARY, b),
            Out::Text(t) => (OP_TEXT, t.as_bytes()),
            Out::Ping => (OP_PING, &[]),
            Out::Pong(b) => (OP_PONG, b),
        }
    }
}

/// Lets a session or a reader close a WebSocket at once, bypassing its queue
/// (a writer stuck on a browser that does not read still obeys it).
#[derive(Debug, Default)]
pub(crate) struct WsCtrl {
    pub token: CancellationToken,
    close: Mutex<Option<(u16, String)>>,
    /// Set by the session while it waits for this WebSocket to show signs
    /// of life; cleared by whoever decides first (the reader hearing
    /// something, or the session giving up).
    probing: AtomicBool,
    /// Woken when the reader clears `probing`.
    answered: tokio::sync::Notify,
}

impl WsCtrl {
    /// The reader heard something from the browser (any frame, pongs included).
    pub fn heard(&self) {
        if self.probing.load(Ordering::Relaxed) && self.probing.swap(false, Ordering::AcqRel) {
            self.answered.notify_one();
        }
    }

    /// Starts a probe: from now on, the next frame heard answers it.
    fn start_probe(&self) {
        self.probing.store(true, Ordering::Release);
    }

    /// Ends a probe: true if the browser answered it.
    fn end_probe(&self) -> bool {
        !self.probing.swap(false, Ordering::AcqRel)
    }

    /// Resolves when the probe was answered, or at `deadline`.
    async fn wait_probe(&self, deadline: Instant) {
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                // A permit left over from an earlier probe wakes us with
                // `probing` still set: keep waiting.
                () = self.answered.notified() => if !self.probing.load(Ordering::Acquire) {
                    return;
                },
            }
        }
    }

    pub fn close(&self, code: u16, reason: impl Into<String>) {
        let mut slot = self.close.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some((code, reason.into()));
        }
        drop(slot);
        self.token.cancel();
    }

    pub fn take(&self) -> (u16, String) {
        self.close
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or((1011, "internal error".into()))
    }
}

/// A WebSocket's side of an attachment, handed to a session: its sending
/// half, which the session's own task writes to (a frame for a browser
/// wakes one task, not a session and then a writer).
#[derive(Debug)]
pub(crate) struct AttachOut {
    pub id: u64,
    pub sink: Sink,
    pub ctrl: Arc<WsCtrl>,
    /// Cancelled once the sending half is done with (closed, or failed):
    /// the WebSocket's reader then waits a bounded time for the close.
    pub done: CancellationToken,
    pub sn: u32,
    pub client: Peer,
}

/// Why a WebSocket left its session.
#[derive(Debug)]
pub(crate) enum Detach {
    /// Dropped without a close frame, or 1001: hold the session.
    Hold(String),
    /// Closed on purpose (1000, or an error already reported): end it.
    End(String),
}

/// Why a resume was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Another WebSocket is attached.
    Attached,
    /// The frames the client missed are no longer held.
    NotHeld,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Attached => "the session is attached to another WebSocket",
            Refusal::NotHeld => "the frames the client missed are no longer held",
        })
    }
}

/// Commands to a session. Kept small (large parts boxed): the queue's
/// block of 32 commands is allocated with the session and kept for its life.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// A validated client frame.
    Frame {
        att: u64,
        msg: Box<ClientMessage>,
        raw: Bytes,
    },
    /// The WebSocket is gone.
    Detach { att: u64, how: Detach },
    /// A running acknowledgement from the client: server frames received.
    Ack { att: u64, received: u64 },
    /// A ping from the client, to be answered.
    Pong { att: u64, payload: Bytes },
    /// A Restart with this session's key. A refusal gives the WebSocket's
    /// sending half back (the handshake goes on with it).
    Attach {
        received: u64,
        out: Box<AttachOut>,
        reply: oneshot::Sender<AttachReply>,
    },
}

/// The answer to [`Cmd::Attach`].
pub(crate) type AttachReply = Result<(), (Refusal, Box<AttachOut>)>;

/// The current WebSocket of a session. The session's task writes its
/// frames: queued here, written and flushed as one batch by the session's
/// loop (see [`Attachment::poll_write`]).
struct Attachment {
    id: u64,
    /// `None` once a write failed (the reader then detaches).
    sink: Option<Sink>,
    /// Frames not yet handed to the WebSocket (the first may be partly
    /// written: `written` bytes of it).
    out: VecDeque<Out>,
    written: usize,
    /// Bytes in `out` (the slow-reader limit counts these).
    queued: usize,
    /// Handed to the WebSocket since its last flush.
    need_flush: bool,
    /// Binary frames handed to the WebSocket but not flushed yet.
    unflushed: u64,
    /// Binary frames flushed to the socket, for the replay ring.
    flushed: u64,
    /// The ring number of the first binary frame queued to this WebSocket.
    base: u64,
    ctrl: Arc<WsCtrl>,
    done: CancellationToken,
    sn: u32,
    limit: usize,
    /// The configured limit; `limit` is raised by a replay's size after a
    /// resume, until that backlog has drained.
    base_limit: usize,
    /// The replay is queued: `limit` drops back once the queue is short.
    replay_queued: bool,
    /// When the next keep-alive ping is due.
    ping_at: Instant,
    /// How the WebSocket is closed when the attachment is dropped (a close
    /// set on `ctrl` wins); `None`: a plain close.
    close: Option<(u16, String)>,
    /// Whether what is still queued goes out before that close (the
    /// session ended) or not (the WebSocket was lost or replaced).
    flush_on_close: bool,
    tracker: TaskTracker,
}

impl Attachment {
    fn new(
        out: AttachOut,
        base_limit: usize,
        replay: usize,
        base: u64,
        tracker: TaskTracker,
    ) -> Self {
        Attachment {
            id: out.id,
            sink: Some(out.sink),
            out: VecDeque::new(),
            written: 0,
            queued: 0,
            need_flush: false,
            unflushed: 0,
            flushed: 0,
            base,
            ctrl: out.ctrl,
            done: out.done,
            sn: out.sn,
            limit: base_limit.saturating_add(replay),
            base_limit,
            replay_queued: false,
            ping_at: Instant::now() + PING_EVERY,
            close: None,
            flush_on_close: false,
            tracker,
        }
    }

    /// Ring number of the first frame the WebSocket has not flushed yet.
    fn flushed_upto(&self) -> u64 {
        self.base + self.flushed
    }

    /// Queues `out`; false when the browser is too slow.
    fn push(&mut self, out: Out) -> bool {
        let cost = out.cost();
        let before = self.queued;
        if self.replay_queued && self.limit > self.base_limit && before <= self.base_limit {
            // The replay has drained: back to the configured limit.
            self.limit = self.base_limit;
        }
        if before + cost > self.limit {
            return false;
        }
        self.queued += cost;
        self.out.push_back(out);
        true
    }

    /// Something to write or flush.
    fn busy(&self) -> bool {
        self.sink.is_some() && (self.need_flush || !self.out.is_empty())
    }

    /// Writes every queued frame to the WebSocket, a batch per vectored
    /// write, then flushes. Ready once flushed, or failed.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(sink) = self.sink.as_mut() else {
            return Poll::Pending;
        };
        while !self.out.is_empty() {
            let n = std::task::ready!(sink.poll_frames(cx, &self.out, self.written))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.need_flush = true;
            let (queued, unflushed) = (&mut self.queued, &mut self.unflushed);
            self.written = advance(&mut self.out, self.written + n, |m| {
                *queued -= m.cost();
                if let Out::Binary(_) = m {
                    *unflushed += 1;
                }
            });
        }
        if self.out.capacity() > OUT_KEEP {
            // A burst is over: an idle attachment keeps no queue storage.
            self.out = VecDeque::new();
        }
        std::task::ready!(sink.poll_flush(cx))?;
        self.need_flush = false;
        self.flushed += std::mem::take(&mut self.unflushed);
        Poll::Ready(Ok(()))
    }

    /// A write failed: the WebSocket is done for (its reader detaches).
    fn write_failed(&mut self) {
        self.sink = None;
        self.done.cancel();
    }

    fn next_sn(&mut self) -> u32 {
        let sn = self.sn;
        self.sn = self.sn.wrapping_add(1);
        sn
    }
}

impl Drop for Attachment {
    /// Closes the WebSocket in a task of its own (bounded by
    /// [`CLOSE_WAIT`]): a browser that does not read never holds the
    /// session's task.
    fn drop(&mut self) {
        let done = self.done.clone();
        let Some(sink) = self.sink.take() else {
            done.cancel();
            return;
        };
        let close = if self.ctrl.token.is_cancelled() {
            Some(self.ctrl.take())
        } else {
            self.close.take()
        };
        let mut out = std::mem::take(&mut self.out);
        if !self.flush_on_close {
            // Only the rest of a frame cut in the middle by a short write:
            // the close frame cannot follow half a frame.
            out.truncate(usize::from(self.written > 0));
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            done.cancel();
            return;
        };
        rt.spawn(
            self.tracker
                .track_future(close_ws(sink, (out, self.written), close, done)),
        );
    }
}

/// The close for a WebSocket whose Restart gave up (its handshake timed
/// out) while the session had its sending half.
fn abandoned() -> (u16, String) {
    (code::POLICY, "handshake timed out".into())
}

/// Sends what was left queued and a close frame (or finishes the close
/// the browser started), within [`CLOSE_WAIT`].
async fn close_ws(
    mut sink: Sink,
    (out, written): (VecDeque<Out>, usize),
    close: Option<(u16, String)>,
    done: CancellationToken,
) {
    let work = async {
        sink.send_all(out, written).await?;
        sink.send_close(
            close
                .as_ref()
                .map(|(code, reason)| (*code, reason.as_str())),
        )
        .await
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, work).await;
    done.cancel();
}

/// A Restart for a session whose WebSocket is still attached, waiting for
/// that WebSocket to answer a ping.
struct Probe {
    received: u64,
    out: AttachOut,
    reply: oneshot::Sender<AttachReply>,
    deadline: Instant,
    ctrl: Arc<WsCtrl>,
}

/// How the replay ring keeps a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// A slice of a read buffer: copied into the ring's own storage.
    Copy,
    /// A frame in an allocation of its own (the embedded server's): kept
    /// as it is.
    Shared,
}

/// Server frames kept for replay, numbered from the session's first.
///
/// The ring keeps copies in storage of its own (`arena`), never slices of
/// the upstream read buffer: a kept frame would pin its whole read buffer
/// (4 KiB or more for a frame of a few hundred bytes), so the ring's memory
/// would be many times the bytes it accounts for. The copy is what the
/// writer is given too, so each frame is copied once, and the read buffer is
/// free for the next read as soon as its messages are handled.
#[derive(Debug, Default)]
struct Ring {
    /// Each frame with the byte offset of its end (counted over every frame
    /// pushed while enabled).
    frames: VecDeque<(u64, Bytes)>,
    /// Number of the first frame held.
    first: u64,
    /// Byte offset of the start of the first frame held.
    start: u64,
    /// Byte offset of the end of the last frame pushed.
    end: u64,
    /// Room for the next copies; each frame is split off it, so held frames
    /// share a few chunks filled by the ring alone.
    arena: BytesMut,
    enabled: bool,
}

/// Smallest and largest chunk of the ring's arena (a larger frame gets a
/// chunk of its own size). Between the two, a chunk is as large as what the
/// ring holds: an idle session's few frames take little, and a full ring
/// wastes at most a chunk at either end.
const ARENA_MIN: usize = 1024;
/// The chunk for a session's first frames (HELLO, the login's answer): an
/// idle session that never acknowledges keeps them, and little else.
const ARENA_FIRST: usize = 256;
const ARENA_MAX: usize = 8 * 1024;

impl Ring {
    fn total(&self) -> u64 {
        self.first + self.frames.len() as u64
    }

    /// Bytes held.
    fn bytes(&self) -> usize {
        usize::try_from(self.end - self.start).unwrap_or(usize::MAX)
    }

    /// Memory the ring takes: the bytes held, the arena's room for the
    /// next copies and the index of frames (what `--resume-memory` counts).
    fn footprint(&self) -> usize {
        self.bytes()
            .saturating_add(self.arena.capacity())
            .saturating_add(self.frames.capacity() * std::mem::size_of::<(u64, Bytes)>())
    }

    /// Keeps a copy of `frame` in the ring's own storage and returns it (to
    /// be queued to the writer instead of `frame`); disabled, only counts it
    /// and returns `frame`.
    fn push(&mut self, frame: Bytes) -> Bytes {
        if !self.enabled {
            self.first += 1;
            return frame;
        }
        if self.arena.capacity() < frame.len() {
            let floor = if self.end < ARENA_MIN as u64 {
                ARENA_FIRST
            } else {
                ARENA_MIN
            };
            let chunk = self.bytes().clamp(floor, ARENA_MAX).max(frame.len());
            self.arena = BytesMut::with_capacity(chunk);
        }
        self.arena.extend_from_slice(&frame);
        let kept = self.arena.split().freeze();
        self.end += kept.len() as u64;
        self.frames.push_back((self.end, kept.clone()));
        kept
    }

    /// Keeps `frame` itself, for a frame that pins no larger buffer (see
    /// [`Keep::Shared`]); disabled, only counts it. Returns `frame`.
    fn keep(&mut self, frame: Bytes) -> Bytes {
        if !self.enabled {
            self.first += 1;
            return frame;
        }
        self.end += frame.len() as u64;
        self.frames.push_back((self.end, frame.clone()));
        frame
    }

    fn pop_front(&mut self) -> Option<usize> {
        let (end, f) = self.frames.pop_front()?;
        self.start = end;
        self.first += 1;
        Some(f.len())
    }

    /// Drops every frame numbered below `n` (the client confirmed them).
    fn drop_below(&mut self, n: u64) {
        while self.first < n && self.pop_front().is_some() {}
        self.shrink();
    }

    fn shrink(&mut self) {
        if self.frames.is_empty() {
            if self.frames.capacity() > 16 {
                self.frames = VecDeque::new();
            }
            // Nothing held (everything acknowledged): an idle session keeps
            // no chunk either.
            self.arena = BytesMut::new();
        }
    }

    /// Drops the oldest frames numbered below `keep_from` until at most
    /// `limit` bytes are held; false if frames from `keep_from` on alone
    /// exceed it.
    fn trim(&mut self, limit: usize, keep_from: u64) -> bool {
        while self.bytes() > limit && self.first < keep_from {
            if self.pop_front().is_none() {
                break;
            }
        }
        self.shrink();
        self.bytes() <= limit
    }

    /// While attached: frames from `unflushed` on (not yet written to the
    /// socket) are all kept, and so is the newest frame; of the frames
    /// before, the newest are kept while they hold at least `allowance`
    /// bytes (what may still be in kernel buffers).
    fn trim_attached(&mut self, unflushed: u64, allowance: usize) {
        let keep_from = unflushed.min(self.total().saturating_sub(1));
        if keep_from <= self.first {
            return;
        }
        let Ok(i) = usize::try_from(keep_from - 1 - self.first) else {
            return;
        };
        let Some(&(flushed_end, _)) = self.frames.get(i) else {
            return;
        };
        let mut flushed = flushed_end - self.start;
        let allowance = allowance as u64;
        while self.first < keep_from {
            let Some((_, f)) = self.frames.front() else {
                break;
            };
            let len = f.len() as u64;
            if flushed - len < allowance {
                break;
            }
            flushed -= len;
            self.pop_front();
        }
        self.shrink();
    }

    fn since(&self, n: u64) -> Option<impl Iterator<Item = &Bytes>> {
        if n < self.first || n > self.total() {
            return None;
        }
        let skip = usize::try_from(n - self.first).ok()?;
        Some(self.frames.iter().skip(skip).map(|(_, f)| f))
    }
}

/// Reads what the upstream has (at most [`READ_CHUNK`] bytes) into
/// `decoder`. The bytes go through a buffer on the stack of the poll, not
/// one kept in the session: an idle session holds no read buffer, and the
/// decoder's own buffer is dropped once its messages are taken.
fn read_into<'a, R: AsyncRead + Unpin>(
    rd: &'a mut R,
    decoder: &'a mut Decoder<ServerMessage>,
) -> impl Future<Output = std::io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut chunk);
        std::task::ready!(std::pin::Pin::new(&mut *rd).poll_read(cx, &mut buf))?;
        decoder.feed(buf.filled());
        std::task::Poll::Ready(Ok(buf.filled().len()))
    })
}

/// Writes the queued frames as they are, the first from `skip` on: one
/// vectored write, no copy. The slices are made on the stack of each poll,
/// not kept in the session's future.
fn write_queued<'a, W: AsyncWrite + Unpin>(
    wr: &'a mut W,
    queued: &'a VecDeque<Bytes>,
    skip: usize,
) -> impl Future<Output = std::io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        let mut iov = [std::io::IoSlice::new(&[]); MAX_IOV];
        let mut n = 0;
        for (slot, f) in iov.iter_mut().zip(queued.iter()) {
            let skip = if n == 0 { skip } else { 0 };
            *slot = std::io::IoSlice::new(f.get(skip..).unwrap_or_default());
            n += 1;
        }
        std::pin::Pin::new(&mut *wr).poll_write_vectored(cx, &iov[..n])
    })
}

/// How a session ended.
#[derive(Debug)]
struct Ending {
    /// For the log line.
    reason: String,
    /// Close frame for an attached WebSocket.
    close: Option<(u16, String)>,
    /// Notice sent before it.
    notice: Option<Notice>,
}

/// A boxed [`Ending`], small enough to travel in `Result`s.
#[derive(Debug)]
struct End(Box<Ending>);

impl std::ops::Deref for End {
    type Target = Ending;
    fn deref(&self) -> &Ending {
        &self.0
    }
}

impl End {
    fn new(reason: String, close: Option<(u16, String)>, notice: Option<Notice>) -> Self {
        End(Box::new(Ending {
            reason,
            close,
            notice,
        }))
    }

    /// The bridge stops: 1001, or 1012 once a drain's deadline passed.
    fn stopping(app: &App) -> Self {
        let (code, reason) = app.closing();
        End::close(code, reason)
    }

    fn quiet(reason: impl Into<String>) -> Self {
        End::new(reason.into(), None, None)
    }

    fn close(code: u16, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        End::new(reason.clone(), Some((code, reason)), None)
    }

    fn upstream_error(code: u16, reason: String) -> Self {
        let notice = Notice::UpstreamError {
            reason: reason.clone(),
        };
        End::new(reason.clone(), Some((code, reason)), Some(notice))
    }

    fn upstream_closed(reason: String) -> Self {
        let notice = Notice::UpstreamClosed {
            reason: reason.clone(),
        };
        let close = format!("upstream closed: {reason}");
        End::new(
            close.clone(),
            Some((code::UPSTREAM_CLOSED, close)),
            Some(notice),
        )
    }
}

/// Starts a fresh session with `key` for the WebSocket `out`. `None` when
/// the bridge holds its maximum number of sessions.
pub(crate) fn spawn(
    app: &Arc<App>,
    key: String,
    upstream: Arc<Upstream>,
    out: AttachOut,
    ip_slot: IpGuard,
) -> Result<queue::Sender<Cmd>, Box<AttachOut>> {
    let (tx, rx) = queue::channel(CMD_QUEUE);
    let Some(registered) = Registered::new(app, &key, tx.clone()) else {
        return Err(Box::new(out));
    };
    let tls_mode = upstream.tls_mode;
    let retain = !app.config.resume_grace.is_zero();
    let client = out.client;
    let session = Session {
        _ip_slot: ip_slot,
        registered: Some(registered),
        app: app.clone(),
        key,
        upstream,
        client,
        started: Instant::now(),
        cmds: rx,
        att: Some(Attachment::new(
            out,
            app.config.send_queue_bytes,
            0,
            0,
            app.tracker.clone(),
        )),
        held_until: None,
        held_charge: None,
        probe: None,
        sent_mark: 0,
        model: Client::new(ClientConfig {
            tls: tls_mode,
            buffer_limit: DEFAULT_BUFFER_LIMIT,
        }),
        linked: false,
        pending: VecDeque::new(),
        forwarded: 0,
        ring: Ring {
            enabled: retain,
            ..Ring::default()
        },
        up_out: VecDeque::new(),
        up_out_bytes: 0,
        bytes_up: 0,
        bytes_down: 0,
        frames_down: 0,
        resumes: 0,
        acked_to_client: 0,
        ack_due: None,
        client_acked: None,
        drain_noticed: false,
    };
    // Boxed: the task's future then holds a pointer, not the session (an
    // async fn's argument takes room in its future twice).
    app.tracker.spawn(Box::new(session).run());
    Ok(tx)
}

struct Session {
    /// Counts this session (attached or held) against its client's IP.
    _ip_slot: IpGuard,
    /// Its registry entry (the global count), until the session ends.
    /// This, `_ip_slot` and `held_charge` are guards: a panic in the
    /// session's task releases them as it unwinds.
    registered: Option<Registered>,
    app: Arc<App>,
    key: String,
    upstream: Arc<Upstream>,
    client: Peer,
    started: Instant,
    cmds: queue::Receiver<Cmd>,
    att: Option<Attachment>,
    /// While held without a WebSocket: when the grace period ends.
    held_until: Option<Instant>,
    /// While held: the ring's charge against `--resume-memory`.
    held_charge: Option<HeldCharge>,
    /// A Restart waiting for the attached WebSocket to answer a ping.
    probe: Option<Probe>,
    /// Frames queued to the last WebSocket before it dropped.
    sent_mark: u64,
    model: Client,
    /// The upstream transport is up (and not in a TLS handshake).
    linked: bool,
    pending: VecDeque<(ClientMessage, Bytes)>,
    /// Client frames forwarded upstream (the bridge's `received`).
    forwarded: u64,
    ring: Ring,
    up_out: VecDeque<Bytes>,
    up_out_bytes: usize,
    bytes_up: u64,
    bytes_down: u64,
    frames_down: u64,
    resumes: u32,
    /// `forwarded` as last told to the client (Success or `session ack`).
    acked_to_client: u64,
    /// When a `session ack` is due (a frame was forwarded since the last).
    ack_due: Option<Instant>,
    /// Server frames the client confirmed with `session ack`; `None` for a
    /// client that never acknowledges (the ring then keeps a margin of
    /// flushed frames).
    client_acked: Option<u64>,
    /// The `session draining` notice was handled (sent, or none attached).
    drain_noticed: bool,
}

impl Session {
    async fn run(mut self: Box<Self>) {
        self.app.metrics.sessions_total.increment(1);
        tracing::info!(
            client = %self.client,
            server = %self.upstream.name,
            session = %key_prefix(&self.key),
            "session started"
        );
        let success = Handshake::success(0, self.key.clone(), false, 0)
            .with_node(self.app.config.node.clone());
        self.send_handshake(success);

        let end = match self.relay().await {
            Ok(never) => match never {},
            Err(end) => end,
        };

        if let Some(notice) = end.notice.clone() {
            self.send_notice(notice);
        }
        if let Some(mut att) = self.att.take() {
            // Dropped: what is queued and the close go out in a task of
            // their own.
            att.close = end.close.clone();
            att.flush_on_close = true;
        }
        if let Some(p) = self.probe.take() {
            let _ = p.reply.send(Err((Refusal::NotHeld, Box::new(p.out))));
        }
        self.registered = None;
        self.held_charge = None;
        let close = end
            .close
            .as_ref()
            .map_or_else(|| end.reason.clone(), |(c, r)| format!("{c} {r}"));
        tracing::info!(
            client = %self.client,
            server = %self.upstream.name,
            session = %key_prefix(&self.key),
            duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            bytes_to_upstream = self.bytes_up,
            bytes_to_client = self.bytes_down,
            frames_to_upstream = self.forwarded,
            frames_to_client = self.frames_down,
            resumes = self.resumes,
            close = %close,
            "session ended"
        );
    }

    fn send_handshake(&mut self, mut h: Handshake) {
        if let Some(att) = self.att.as_mut() {
            h.sn = att.next_sn();
            let _ = att.push(Out::Text(Content::Handshake(h).to_json()));
        }
    }

    fn send_notice(&mut self, notice: Notice) {
        if let Some(att) = self.att.as_mut() {
            let sn = att.next_sn();
            let _ = att.push(Out::Text(Content::Notice { sn, notice }.to_json()));
        }
    }

    /// Connects upstream while the WebSocket's queue (Success, notices)
    /// goes on being written.
    async fn connect(&mut self) -> Result<Link, End> {
        let (app, upstream) = (self.app.clone(), self.upstream.clone());
        let connect = connect(&app, &upstream);
        tokio::pin!(connect);
        loop {
            let writing = self.att.as_ref().is_some_and(Attachment::busy);
            let att = &mut self.att;
            tokio::select! {
                biased;
                r = &mut connect => return r,
                r = std::future::poll_fn(|cx| match att.as_mut() {
                    Some(a) => a.poll_write(cx),
                    None => Poll::Pending,
                }), if writing => if r.is_err() && let Some(a) = self.att.as_mut() {
                    a.write_failed();
                },
            }
        }
    }

    async fn upgrade(&mut self, link: Link) -> Result<Link, End> {
        let tls_failed = |reason: String| End::upstream_error(code::UPSTREAM_TLS, reason);
        let (Target::Tcp { tls, .. }, Link::Tcp(tcp)) = (&self.upstream.target, link) else {
            return Err(tls_failed(
                "the server announced TLS on a link that cannot upgrade".into(),
            ));
        };
        let name = &self.upstream.name;
        let connect = tls.connector.connect(tls.server_name.clone(), tcp);
        let result = tokio::select! {
            () = self.app.stop.cancelled() => return Err(End::stopping(&self.app)),
            r = tokio::time::timeout(self.app.config.connect_timeout, connect) => r,
        };
        match result {
            Ok(Ok(stream)) => {
                let info = tls::peer_info(stream.get_ref().1);
                tracing::debug!(
                    session = %key_prefix(&self.key),
                    server = %name,
                    tls = %info.tls_version,
                    peer = %info.subject,
                    "upstream secured"
                );
                self.send_notice(Notice::UpstreamSecured {
                    tls_version: info.tls_version,
                    peer: info.subject,
                    fingerprint: info.fingerprint,
                });
                Ok(Link::Tls(Box::new(tokio_rustls::TlsStream::Client(stream))))
            }
            Ok(Err(e)) => {
                self.app.metrics.upstream_tls_errors.increment(1);
                let reason = tls::describe_io(name, &e);
                tracing::warn!(
                    session = %key_prefix(&self.key),
                    server = %name,
                    "upstream TLS failed: {reason}"
                );
                Err(tls_failed(reason))
            }
            Err(_) => {
                self.app.metrics.upstream_tls_errors.increment(1);
                Err(tls_failed(format!("TLS handshake with {name} timed out")))
            }
        }
    }

    async fn relay(&mut self) -> Result<Infallible, End> {
        // Boxed, as the TLS upgrade below: a future that ran once would
        // otherwise take room in every idle session's task.
        let mut link = Box::pin(self.connect()).await?;
        self.send_notice(Notice::UpstreamConnected {
            server: self.upstream.name.clone(),
        });
        // The embedded server's frames are taken whole, not as a byte
        // stream to split into messages again.
        let mut inbox = match &mut link {
            Link::Mem(conn) => conn.inbox(),
            Link::Tcp(_) | Link::Tls(_) => None,
        };
        let (mut rd, mut wr): (ReadHalf<Link>, WriteHalf<Link>) = tokio::io::split(link);
        self.linked = true;
        let mut decoder = Decoder::<ServerMessage>::new(DEFAULT_BUFFER_LIMIT);
        let mut up_off = 0usize;
        let mut need_flush = false;
        // Made once for the session's life, not once per pass: `stop` is
        // shared by every task of the bridge, and each wait registers with
        // it. Children of their own, so that every pass checks a lock no
        // other session takes, not one lock that all of them share.
        let stopped = self.app.stop.child_token().cancelled_owned();
        let draining = self.app.drain.child_token().cancelled_owned();
        // The end of a grace period, re-armed only when it changes.
        let grace = tokio::time::sleep_until(Instant::now());
        // When a `session ack` is due, likewise.
        let ack_timer = tokio::time::sleep_until(Instant::now());
        // When the attached WebSocket's next keep-alive ping is due.
        let ping = tokio::time::sleep_until(Instant::now());
        tokio::pin!(stopped, draining, grace, ack_timer, ping);
        let mut grace_armed = None;
        let mut ack_armed = None;
        let mut ping_armed = None;
        loop {
            let ping_at = self.att.as_ref().map(|a| a.ping_at);
            if let Some(t) = ping_at
                && ping_armed != Some(t)
            {
                ping.as_mut().reset(t);
                ping_armed = Some(t);
            }
            let ws_writing = self.att.as_ref().is_some_and(Attachment::busy);
            let att = &mut self.att;
            let writing = !self.up_out.is_empty();
            let up_out = &self.up_out;
            let held_until = self.held_until;
            if let Some(t) = held_until
                && grace_armed != Some(t)
            {
                grace.as_mut().reset(t);
                grace_armed = Some(t);
            }
            let ack_due = self.ack_due;
            if let Some(t) = ack_due
                && ack_armed != Some(t)
            {
                ack_timer.as_mut().reset(t);
                ack_armed = Some(t);
            }
            let drain_noticed = self.drain_noticed;
            let probe = self.probe.as_ref().map(|p| (p.deadline, p.ctrl.clone()));
            let evicted = self.held_charge.as_ref().map(|c| c.evicted().clone());
            let from_inbox = inbox.is_some();
            tokio::select! {
                biased;
                () = &mut stopped => {
                    return Err(End::stopping(&self.app));
                }
                () = &mut draining, if !drain_noticed => {
                    self.drain_noticed = true;
                    self.notice_drain();
                }
                // Before the upstream read: what a read queued goes out in
                // one batch before the next read, and a busy upstream
                // cannot starve the browser into the slow-reader limit.
                r = std::future::poll_fn(|cx| match att.as_mut() {
                    Some(a) => a.poll_write(cx),
                    None => Poll::Pending,
                }), if ws_writing => if r.is_err() && let Some(a) = self.att.as_mut() {
                    a.write_failed();
                },
                r = std::future::poll_fn(|cx| match inbox.as_mut() {
                    Some(i) => i.poll_frame(cx),
                    None => Poll::Pending,
                }), if from_inbox => {
                    let first = r.map_err(|e| self.read_failed(&e))?;
                    if let Some(i) = inbox.as_mut() {
                        self.on_frames(first, i, &mut decoder)?;
                        if i.crowded() {
                            // Other sessions' posts join this batch.
                            tokio::task::yield_now().await;
                            if let Some(next) = i.try_frame().map_err(|e| self.read_failed(&e))? {
                                self.on_frames(next, i, &mut decoder)?;
                            }
                        }
                    }
                    self.write_now();
                }
                r = read_into(&mut rd, &mut decoder), if !from_inbox => {
                    match r {
                        Ok(0) => {
                            self.app.metrics.upstream_closed.increment(1);
                            return Err(End::upstream_closed("the server closed the connection".into()));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(self.read_failed(&e)),
                    }
                    if self.on_read(&mut decoder)? {
                        if decoder.buffered() > 0 || !self.up_out.is_empty() {
                            return Err(End::upstream_error(
                                code::UPSTREAM_TLS,
                                "clear-text data around the TLS upgrade".into(),
                            ));
                        }
                        self.linked = false;
                        let link = Box::pin(self.upgrade(rd.unsplit(wr))).await?;
                        (rd, wr) = tokio::io::split(link);
                        self.linked = true;
                        self.model.handle_tls_established().map_err(|e| {
                            End::upstream_error(code::UPSTREAM_TLS, e.to_string())
                        })?;
                        self.release()?;
                    }
                    self.write_now();
                }
                r = async {
                    if writing {
                        write_queued(&mut wr, up_out, up_off).await.map(Some)
                    } else {
                        wr.flush().await.map(|()| None)
                    }
                }, if writing || need_flush => {
                    match r {
                        Ok(None) => need_flush = false,
                        Ok(Some(0)) | Err(_) => {
                            self.app.metrics.upstream_closed.increment(1);
                            return Err(End::upstream_closed("write to the server failed".into()));
                        }
                        Ok(Some(n)) => {
                            self.wrote_up(&mut up_off, n);
                            need_flush = self.up_out.is_empty();
                        }
                    }
                }
                cmd = self.cmds.recv(), if self.up_out_bytes < UP_QUEUE_BYTES => {
                    match cmd {
                        Some(cmd) => self.on_cmd(cmd)?,
                        None => return Err(End::quiet("session dropped")),
                    }
                    // Take what else is queued in the same turn.
                    for _ in 0..64 {
                        if self.up_out_bytes >= UP_QUEUE_BYTES {
                            break;
                        }
                        match self.cmds.try_recv() {
                            Some(cmd) => self.on_cmd(cmd)?,
                            None => break,
                        }
                    }
                }
                () = async {
                    match &probe {
                        Some((deadline, ctrl)) => ctrl.wait_probe(*deadline).await,
                        None => std::future::pending().await,
                    }
                }, if probe.is_some() => self.finish_probe()?,
                () = async {
                    match &evicted {
                        Some(token) => token.cancelled().await,
                        None => std::future::pending().await,
                    }
                }, if evicted.is_some() => return Err(self.evicted_for_memory()),
                () = &mut grace, if held_until.is_some() => {
                    self.app.metrics.expired_grace.increment(1);
                    return Err(End::quiet("resume grace period expired"));
                }
                () = &mut ack_timer, if ack_due.is_some() => self.send_ack(),
                () = &mut ping, if ping_at.is_some() => if let Some(a) = self.att.as_mut() {
                    a.out.push_back(Out::Ping);
                    a.ping_at = Instant::now() + PING_EVERY;
                },
            }
        }
    }

    /// Starts writing what the last step queued for the browser in this
    /// same pass of the relay loop, instead of in a pass of its own: with
    /// many small deliveries the extra pass (every wait polled again) costs
    /// more than the write. Polled once without a waker: what cannot finish
    /// now (a full socket, the sending half locked by the reader for a
    /// moment) is polled again, with this task's waker, by the loop's next
    /// pass, which comes at once.
    fn write_now(&mut self) {
        let Some(a) = self.att.as_mut().filter(|a| a.busy()) else {
            return;
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(Err(_)) = a.poll_write(&mut cx) {
            a.write_failed();
        }
    }

    /// `n` bytes of the queued frames were written upstream, the first
    /// from `up_off` on: drops the frames written whole.
    fn wrote_up(&mut self, up_off: &mut usize, mut n: usize) {
        while n > 0 {
            let Some(front) = self.up_out.front() else {
                break;
            };
            let left = front.len() - *up_off;
            if n < left {
                *up_off += n;
                return;
            }
            n -= left;
            self.up_out_bytes -= front.len();
            self.up_out.pop_front();
            *up_off = 0;
        }
    }

    /// [`Session::on_server_data`] after a read, counting the frames it
    /// delivered in the metrics (once per read, not once per frame).
    /// A read from the server failed: counted, and the session's end.
    fn read_failed(&self, e: &std::io::Error) -> End {
        self.app.metrics.upstream_closed.increment(1);
        End::upstream_closed(format!("read error: {e}"))
    }

    fn on_read(&mut self, decoder: &mut Decoder<ServerMessage>) -> Result<bool, End> {
        self.counting_frames(|s| s.on_server_data(decoder))
    }

    /// Runs `deliver`, then counts the frames and bytes it sent towards the
    /// client in the metrics, once for the lot.
    fn counting_frames<T>(&mut self, deliver: impl FnOnce(&mut Self) -> T) -> T {
        let (frames, bytes) = (self.frames_down, self.bytes_down);
        let r = deliver(self);
        if self.frames_down > frames {
            let m = &self.app.metrics;
            m.frames_to_client.increment(self.frames_down - frames);
            m.bytes_to_client.increment(self.bytes_down - bytes);
        }
        r
    }

    /// The embedded server's frames: `first` and what else is queued, up to
    /// [`READ_CHUNK`] bytes (as one read of a byte stream would take),
    /// counting them in the metrics once. Chat, channel lists and history
    /// pages of an authenticated session are forwarded as they are: the
    /// server encoded them from typed values, there is nothing to validate,
    /// and a broadcast is one allocation shared by every recipient (kept
    /// in the ring without a copy). Anything else goes through the decoder
    /// and the model as bytes from a TCP server would.
    fn on_frames(
        &mut self,
        first: Bytes,
        inbox: &mut MemInbox,
        decoder: &mut Decoder<ServerMessage>,
    ) -> Result<(), End> {
        self.counting_frames(|s| s.on_frames_inner(first, inbox, decoder))
    }

    fn on_frames_inner(
        &mut self,
        first: Bytes,
        inbox: &mut MemInbox,
        decoder: &mut Decoder<ServerMessage>,
    ) -> Result<(), End> {
        let mut taken = 0;
        let mut next = Some(first);
        while let Some(frame) = next {
            taken += frame.len();
            let ready = matches!(self.model.state(), ClientState::Ready { .. });
            if ready && decoder.buffered() == 0 && matches!(frame.first(), Some(0x03..=0x05)) {
                self.deliver(frame, Keep::Shared)?;
            } else {
                decoder.feed(&frame);
                if self.on_server_data(decoder)? {
                    return Err(End::upstream_error(
                        code::UPSTREAM_TLS,
                        "the server announced TLS on a link that cannot upgrade".into(),
                    ));
                }
            }
            if taken >= READ_CHUNK {
                break;
            }
            next = inbox.try_frame().map_err(|e| self.read_failed(&e))?;
        }
        Ok(())
    }

    /// Handles every whole server message buffered; true when the server
    /// announced TLS and the upgrade must happen now.
    fn on_server_data(&mut self, decoder: &mut Decoder<ServerMessage>) -> Result<bool, End> {
        loop {
            if matches!(self.model.state(), ClientState::Ready { .. }) {
                // Authenticated: chat, channel lists and history pages
                // cannot change the model's state. Validate and forward
                // them without building them.
                match decoder.next_frame() {
                    Ok(Some((0x03..=0x05, raw))) => {
                        self.deliver(raw, Keep::Copy)?;
                        continue;
                    }
                    // Anything else is out of order: let the model say why.
                    Ok(Some((_, raw))) => {
                        let msg = ServerMessage::decode_exact(&raw)
                            .map_err(|e| End::upstream_closed(format!("protocol error: {e}")))?;
                        self.model
                            .handle_message(msg)
                            .map_err(|e| End::upstream_closed(format!("protocol error: {e}")))?;
                        continue;
                    }
                    Ok(None) => return Ok(false),
                    Err(e) => return Err(End::upstream_closed(format!("protocol error: {e}"))),
                }
            }
            let (msg, raw) = match decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(false),
                Err(e) => {
                    return Err(End::upstream_closed(format!("protocol error: {e}")));
                }
            };
            let announces_tls = matches!(msg, ServerMessage::Hello { tls: true });
            if let Err(e) = self.model.handle_message(msg) {
                return Err(match e {
                    dumdum_protocol::Error::TlsRequired => {
                        self.app.metrics.upstream_tls_errors.increment(1);
                        End::upstream_error(
                            code::UPSTREAM_TLS,
                            format!("{} did not offer TLS (require_tls)", self.upstream.name),
                        )
                    }
                    e => End::upstream_closed(format!("protocol error: {e}")),
                });
            }
            while self.model.poll_event().is_some() {}
            self.deliver(raw, Keep::Copy)?;
            if announces_tls && *self.model.state() == ClientState::AwaitingTls {
                return Ok(true);
            }
            self.release()?;
        }
    }

    /// Sends one server frame to the client (or holds it for a resume).
    fn deliver(&mut self, raw: Bytes, keep: Keep) -> Result<(), End> {
        // Counted in the metrics once per read (see `on_read`).
        self.frames_down += 1;
        self.bytes_down += raw.len() as u64;
        let resume_buffer = self.app.config.resume_buffer;
        // What the ring keeps from now on (shared with the writer's queue).
        let frame = match keep {
            Keep::Copy => self.ring.push(raw),
            Keep::Shared => self.ring.keep(raw),
        };
        match self.att.as_mut() {
            Some(att) => {
                if !att.push(Out::Binary(frame)) {
                    self.app.metrics.slow_readers.increment(1);
                    att.ctrl.close(
                        code::POLICY,
                        "too slow: the browser does not read its frames",
                    );
                    return Err(End::quiet("too slow: send queue over its limit"));
                }
                // A client that acknowledges: keep exactly what it has not
                // confirmed (bounded by the resume buffer). Otherwise, what
                // the writer has not flushed plus a margin of flushed frames.
                let exact = self.client_acked.is_some_and(|acked| {
                    self.ring.drop_below(acked);
                    self.ring.bytes() <= resume_buffer
                });
                if !exact {
                    self.ring
                        .trim_attached(att.flushed_upto(), ATTACHED_RETAIN.min(resume_buffer));
                }
            }
            None => {
                if !self.ring.trim(resume_buffer, self.sent_mark) {
                    self.app.metrics.expired_buffer.increment(1);
                    return Err(End::quiet("resume buffer full while the client was away"));
                }
                if let Some(charge) = &self.held_charge
                    && !charge.set(self.ring.footprint())
                {
                    return Err(self.evicted_for_memory());
                }
            }
        }
        Ok(())
    }

    /// Sends a `session ack` with the client frames forwarded so far, if
    /// there is news and a WebSocket to tell.
    fn send_ack(&mut self) {
        self.ack_due = None;
        if self.att.is_none() || self.forwarded <= self.acked_to_client {
            return;
        }
        self.acked_to_client = self.forwarded;
        self.app.metrics.acks_sent.increment(1);
        self.send_notice(Notice::SessionAck {
            received: self.forwarded,
        });
    }

    /// After client frames were forwarded: an ack now every
    /// [`ack::BRIDGE_EVERY_FRAMES`], else within [`ack::BRIDGE_AFTER`].
    fn ack_forwarded(&mut self) {
        use dumdum_protocol::session::ack;
        if self.forwarded <= self.acked_to_client || self.att.is_none() {
            return;
        }
        if self.forwarded - self.acked_to_client >= ack::BRIDGE_EVERY_FRAMES {
            self.send_ack();
        } else if self.ack_due.is_none() {
            self.ack_due = Some(Instant::now() + ack::BRIDGE_AFTER);
        }
    }

    /// The bridge started draining: tells the attached client the deadline.
    fn notice_drain(&mut self) {
        if let Some(deadline_s) = self.app.drain_left_s() {
            self.send_notice(Notice::SessionDraining { deadline_s });
        }
    }

    /// Forwards held client frames as far as the upstream state allows.
    fn release(&mut self) -> Result<(), End> {
        let before = self.forwarded;
        let r = self.forward_ready();
        if self.forwarded > before {
            self.ack_forwarded();
        }
        r
    }

    fn forward_ready(&mut self) -> Result<(), End> {
        if !self.linked {
            return Ok(());
        }
        while let Some((msg, _)) = self.pending.front() {
            match self.model.readiness(msg) {
                Readiness::Now => {
                    let Some((msg, raw)) = self.pending.pop_front() else {
                        break;
                    };
                    #[cfg(feature = "fault-injection")]
                    fault::check(&msg);
                    self.model
                        .note_sent(&msg)
                        .map_err(|e| End::close(code::POLICY, e.to_string()))?;
                    self.forwarded += 1;
                    self.bytes_up += raw.len() as u64;
                    self.app.metrics.frames_to_upstream.increment(1);
                    self.app
                        .metrics
                        .bytes_to_upstream
                        .increment(raw.len() as u64);
                    self.up_out_bytes += raw.len();
                    self.up_out.push_back(raw);
                }
                Readiness::Later => break,
                Readiness::Never(e) => {
                    return Err(End::close(code::POLICY, e.to_string()));
                }
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            // An idle session keeps no queue (client frames are few).
            self.pending = VecDeque::new();
        }
        Ok(())
    }

    fn is_current(&self, att: u64) -> bool {
        self.att.as_ref().is_some_and(|a| a.id == att)
    }

    fn on_cmd(&mut self, cmd: Cmd) -> Result<(), End> {
        match cmd {
            Cmd::Frame { att, msg, raw } => {
                if !self.is_current(att) {
                    return Ok(());
                }
                if self.pending.len() >= self.app.config.max_pending_frames {
                    return Err(End::close(
                        code::POLICY,
                        "too many frames waiting for the server to be ready",
                    ));
                }
                self.pending.push_back((*msg, raw));
                self.release()
            }
            Cmd::Pong { att, payload } => {
                if let Some(a) = self.att.as_mut().filter(|a| a.id == att) {
                    // Bypasses the queue's limit: a control frame is small.
                    a.out.push_back(Out::Pong(payload));
                }
                Ok(())
            }
            Cmd::Ack { att, received } => {
                if !self.is_current(att) {
                    return Ok(());
                }
                self.app.metrics.acks_received.increment(1);
                // Counts never go down; a count beyond what was sent is
                // taken as everything sent.
                let acked = received
                    .min(self.ring.total())
                    .max(self.client_acked.unwrap_or(0));
                self.client_acked = Some(acked);
                self.ring.drop_below(acked);
                Ok(())
            }
            Cmd::Detach { att, how } => {
                if !self.is_current(att) {
                    return Ok(());
                }
                let grace = self.app.config.resume_grace;
                match how {
                    Detach::End(reason) => {
                        self.att = None;
                        Err(End::quiet(reason))
                    }
                    Detach::Hold(reason) if grace.is_zero() || self.app.stop.is_cancelled() => {
                        self.att = None;
                        Err(End::quiet(reason))
                    }
                    Detach::Hold(reason) => {
                        self.hold(&reason);
                        // A Restart was waiting for this WebSocket: it is gone.
                        match self.probe.take() {
                            Some(p) => self.attach(p.received, p.out, p.reply),
                            None => Ok(()),
                        }
                    }
                }
            }
            Cmd::Attach {
                received,
                out,
                reply,
            } => {
                let out = *out;
                let Some(current) = self.att.as_ref() else {
                    return self.attach(received, out, reply);
                };
                // Another WebSocket is attached. It may be dead without a
                // FIN (a phone that changed networks): ask it. A socket that
                // answers keeps the session (a leaked key cannot take over a
                // live session); one that does not is dropped for this one.
                if self.probe.is_some() || !self.ring.enabled {
                    let _ = reply.send(Err((Refusal::Attached, Box::new(out))));
                    return Ok(());
                }
                current.ctrl.start_probe();
                let ctrl = current.ctrl.clone();
                if let Some(current) = self.att.as_mut() {
                    // Bypasses the queue's limit: a ping costs nothing.
                    current.out.push_back(Out::Ping);
                }
                self.probe = Some(Probe {
                    received,
                    out,
                    reply,
                    deadline: Instant::now() + PROBE_WAIT,
                    ctrl,
                });
                Ok(())
            }
        }
    }

    /// The attached WebSocket is gone (without a close frame): holds the
    /// session for the grace period.
    fn hold(&mut self, reason: &str) {
        // Frames the writer never flushed cannot have reached the client.
        self.sent_mark = match self.att.take() {
            Some(att) => att.flushed_upto().min(self.ring.total()),
            None => self.ring.total(),
        };
        // Unforwarded frames are re-sent by the client after a resume.
        self.pending.clear();
        // Success tells the next WebSocket the count.
        self.ack_due = None;
        tracing::debug!(
            session = %key_prefix(&self.key),
            "held for resumption: {reason}"
        );
        self.held_until = Some(Instant::now() + self.app.config.resume_grace);
        self.held_charge = Some(self.app.held_memory.hold(self.ring.footprint()));
    }

    /// Ends a held session to keep held sessions within `--resume-memory`.
    fn evicted_for_memory(&self) -> End {
        self.app.metrics.expired_memory.increment(1);
        tracing::info!(
            client = %self.client,
            session = %key_prefix(&self.key),
            buffered_bytes = self.ring.footprint(),
            resume_memory = self.app.config.resume_memory,
            "held session ended: held sessions together are over --resume-memory (the largest end first)"
        );
        End::quiet("held sessions over the resume memory budget")
    }

    /// The probe of the attached WebSocket is over: either it answered (the
    /// newcomer is refused) or it is dead (it is dropped and the newcomer
    /// resumes the session).
    fn finish_probe(&mut self) -> Result<(), End> {
        let Some(p) = self.probe.take() else {
            return Ok(());
        };
        if p.ctrl.end_probe() {
            tracing::info!(
                session = %key_prefix(&self.key),
                "resume refused: the attached WebSocket answered a ping"
            );
            let _ = p.reply.send(Err((Refusal::Attached, Box::new(p.out))));
            return Ok(());
        }
        tracing::info!(
            session = %key_prefix(&self.key),
            "the attached WebSocket did not answer a ping within {} ms: dropped for a Restart",
            PROBE_WAIT.as_millis()
        );
        p.ctrl.close(code::POLICY, "replaced by a newer connection");
        self.hold("the WebSocket did not answer a ping");
        self.attach(p.received, p.out, p.reply)
    }

    /// Attaches the WebSocket of a Restart to this held session and replays
    /// what its client missed.
    fn attach(
        &mut self,
        received: u64,
        out: AttachOut,
        reply: oneshot::Sender<AttachReply>,
    ) -> Result<(), End> {
        if reply.is_closed() {
            // The handshake gave up (timeout, socket gone) before we got
            // here: attaching its writer would leave a session that no
            // reader ever detaches. Stay held; its WebSocket, lent to us,
            // is closed as its handshake would have.
            tracing::debug!(
                session = %key_prefix(&self.key),
                "resume abandoned by the new WebSocket"
            );
            self.app.tracker.spawn(close_ws(
                out.sink,
                (VecDeque::new(), 0),
                Some(abandoned()),
                out.done,
            ));
            return Ok(());
        }
        let replay: Vec<Bytes> = match self.ring.since(received) {
            Some(frames) => frames.cloned().collect(),
            None => {
                let _ = reply.send(Err((Refusal::NotHeld, Box::new(out))));
                return Err(End::quiet(
                    "resume refused: the frames the client missed are no longer held",
                ));
            }
        };
        let replay_bytes: usize = replay.iter().map(Bytes::len).sum();
        let client = out.client;
        let mut att = Attachment::new(
            out,
            self.app.config.send_queue_bytes,
            replay_bytes,
            received,
            self.app.tracker.clone(),
        );
        let success = Handshake::success(att.next_sn(), self.key.clone(), true, self.forwarded)
            .with_node(self.app.config.node.clone());
        att.push(Out::Text(Content::Handshake(success).to_json()));
        let replayed = replay.len() as u64;
        for frame in replay {
            att.push(Out::Binary(frame));
        }
        let sn = att.next_sn();
        att.push(Out::Text(
            Content::Notice {
                sn,
                notice: Notice::SessionResumed { replayed },
            }
            .to_json(),
        ));
        if let Some(deadline_s) = self.app.drain_left_s() {
            self.drain_noticed = true;
            let sn = att.next_sn();
            att.push(Out::Text(
                Content::Notice {
                    sn,
                    notice: Notice::SessionDraining { deadline_s },
                }
                .to_json(),
            ));
        }
        att.replay_queued = true;
        let held_until = self.held_until.take();
        self.att = Some(att);
        if reply.send(Ok(())).is_err() {
            // Gave up just now: undo, stay held with the same deadline
            // (the attachment's drop closes its WebSocket).
            if let Some(mut att) = self.att.take() {
                att.close = Some(abandoned());
            }
            self.held_until = held_until;
            tracing::debug!(
                session = %key_prefix(&self.key),
                "resume abandoned by the new WebSocket"
            );
            return Ok(());
        }
        // No longer held: leaves `sessions_held` and the memory budget.
        self.held_charge = None;
        self.app.metrics.resumes.increment(1);
        self.resumes += 1;
        self.client = client;
        // Success told the client the count; frames it says it received
        // are confirmed.
        self.acked_to_client = self.forwarded;
        self.ring.drop_below(received);
        tracing::info!(
            client = %self.client,
            server = %self.upstream.name,
            session = %key_prefix(&self.key),
            client_received = received,
            bridge_received = self.forwarded,
            replayed,
            "session resumed"
        );
        self.release()
    }
}

/// Opens the upstream transport.
async fn connect(app: &App, upstream: &Upstream) -> Result<Link, End> {
    let address = match &upstream.target {
        Target::Embedded(server) => return Ok(Link::Mem(Box::new(server.connect()))),
        Target::Tcp { address, .. } => address.clone(),
    };
    let timeout = app.config.connect_timeout;
    let name = upstream.name.clone();
    let result = tokio::select! {
        () = app.stop.cancelled() => return Err(End::stopping(app)),
        r = tokio::time::timeout(timeout, TcpStream::connect(address.as_str())) => r,
    };
    match result {
        Ok(Ok(tcp)) => {
            let _ = tcp.set_nodelay(true);
            Ok(Link::Tcp(tcp))
        }
        Ok(Err(e)) => {
            app.metrics.upstream_connect_errors.increment(1);
            Err(End::upstream_error(
                code::UPSTREAM_UNREACHABLE,
                format!("cannot connect to {name}: {e}"),
            ))
        }
        Err(_) => {
            app.metrics.upstream_connect_errors.increment(1);
            Err(End::upstream_error(
                code::UPSTREAM_UNREACHABLE,
                format!(
                    "connecting to {name} timed out after {} s",
                    timeout.as_secs_f32()
                ),
            ))
        }
    }
}

/// A fault to prove containment with (feature `fault-injection`, for
/// tests only): a session whose client logs in as [`fault::NICK`] panics in
/// its task.
#[cfg(feature = "fault-injection")]
pub mod fault {
    use dumdum_protocol::ClientMessage;

    /// The nick that makes a session panic.
    pub const NICK: &str = "panic-in-session";

    /// Panics on AUTHENTICATE with [`NICK`].
    #[allow(clippy::panic)]
    pub(super) fn check(msg: &ClientMessage) {
        if matches!(msg, ClientMessage::Authenticate { nick } if nick == NICK) {
            panic!("fault injection: a session logged in as {NICK}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(enabled: bool) -> Ring {
        Ring {
            enabled,
            ..Ring::default()
        }
    }

    #[test]
    fn ring_numbers_and_trims() {
        let mut r = ring(true);
        for i in 0..10u8 {
            r.push(Bytes::copy_from_slice(&[i; 10]));
        }
        assert_eq!(r.total(), 10);
        assert!(r.trim(50, 10));
        assert_eq!(r.first, 5);
        assert_eq!(r.bytes(), 50);
        assert_eq!(r.since(7).map(|f| f.count()), Some(3));
        assert!(r.since(4).is_none(), "trimmed frames are not held");
        assert!(r.since(11).is_none(), "frames never sent are refused");
        assert_eq!(r.since(10).map(|f| f.count()), Some(0));
        // Frames from keep_from on are never trimmed; over the limit = false.
        assert!(!r.trim(20, 6));
        assert_eq!(r.first, 6);
    }

    #[test]
    fn acknowledged_frames_are_dropped_exactly() {
        let mut r = ring(true);
        for i in 0..10u8 {
            r.push(Bytes::copy_from_slice(&[i; 100]));
        }
        r.drop_below(7);
        assert_eq!((r.first, r.total(), r.bytes()), (7, 10, 300));
        assert!(r.since(6).is_none(), "confirmed frames are gone");
        assert_eq!(r.since(7).map(|f| f.count()), Some(3));
        r.drop_below(3);
        assert_eq!(r.first, 7, "counts never go down");
        r.drop_below(10);
        assert_eq!((r.first, r.bytes()), (10, 0));
        assert_eq!(r.since(10).map(|f| f.count()), Some(0));
    }

    #[test]
    fn attached_ring_keeps_unflushed_frames_and_the_newest() {
        let mut r = ring(true);
        let big = Bytes::from(vec![1u8; 110_000]);
        r.push(Bytes::from_static(b"hello"));
        let kept = r.push(big.clone());
        r.push(Bytes::from_static(b"after"));
        // Nothing flushed: everything is kept, however large.
        r.trim_attached(0, 64 * 1024);
        assert_eq!((r.first, r.total()), (0, 3));
        // The page was flushed but may sit in kernel buffers: the newest
        // flushed frames are kept while they hold at least the allowance.
        r.trim_attached(2, 64 * 1024);
        assert_eq!(r.first, 1, "only what lies beyond the allowance goes");
        let replay: Vec<&Bytes> = r.since(1).unwrap().collect();
        assert_eq!(replay[0], &big);
        assert!(
            std::ptr::eq(replay[0].as_ptr(), kept.as_ptr()),
            "the replay shares the copy the writer was given"
        );
        // Everything flushed and more behind: the newest frame stays.
        for _ in 0..20 {
            r.push(Bytes::from(vec![2u8; 8 * 1024]));
        }
        r.trim_attached(r.total(), 64 * 1024);
        assert_eq!(r.since(r.total() - 1).map(|f| f.count()), Some(1));
        // 64 KiB of flushed frames before the newest, and the newest.
        assert_eq!(r.bytes(), 72 * 1024);
        r.trim_attached(r.total(), 0);
        assert_eq!(r.frames.len(), 1, "the newest frame is never dropped");
    }

    /// The ring's memory matches what it accounts for: a kept frame does not
    /// pin the (much larger) read buffer it was sliced from, and small
    /// frames share a few chunks of the ring's own.
    #[test]
    fn kept_frames_do_not_pin_their_read_buffers() {
        let mut r = ring(true);
        let mut reads = Vec::new();
        for _ in 0..400 {
            // One 200-byte message per 64 KiB read buffer.
            let buf = Bytes::from(vec![7u8; 64 * 1024]);
            let frame = buf.slice(..200);
            drop(buf);
            let sent = r.push(frame.clone());
            assert_eq!(sent, frame, "the writer gets the same bytes");
            assert!(
                !frame.as_ptr_range().contains(&sent.as_ptr()),
                "a copy, not a slice of the read buffer"
            );
            // The writer flushes it: the read buffer is no longer shared.
            drop(sent);
            r.trim_attached(r.total(), 64 * 1024);
            reads.push(frame.try_into_mut().is_ok());
        }
        assert!(reads.iter().all(|&unique| unique), "no read buffer pinned");
        // 64 KiB of flushed frames at least, plus the newest: 329 frames.
        assert_eq!(r.bytes(), 329 * 200);
        // The chunks they live in: contiguous copies, a few KiB of slack.
        let mut chunks: Vec<(usize, usize)> = Vec::new();
        for f in r.since(r.first).unwrap() {
            let p = f.as_ptr() as usize;
            match chunks.last_mut() {
                Some((_, end)) if *end == p => *end = p + f.len(),
                _ => chunks.push((p, p + f.len())),
            }
        }
        let upper = r.bytes() / (ARENA_MAX - 200) + 2;
        assert!(
            chunks.len() <= upper,
            "{} chunks for {} bytes",
            chunks.len(),
            r.bytes()
        );
    }

    fn attachment(base_limit: usize, replay: usize) -> Attachment {
        Attachment {
            id: 1,
            sink: None,
            out: VecDeque::new(),
            written: 0,
            queued: 0,
            need_flush: false,
            unflushed: 0,
            flushed: 0,
            base: 0,
            ctrl: Arc::new(WsCtrl::default()),
            done: CancellationToken::new(),
            sn: 1,
            limit: base_limit + replay,
            base_limit,
            replay_queued: false,
            ping_at: Instant::now(),
            close: None,
            flush_on_close: false,
            tracker: TaskTracker::new(),
        }
    }

    /// What writing does with what it takes off the queue.
    fn drain(att: &mut Attachment) {
        while let Some(out) = att.out.pop_front() {
            att.queued -= out.cost();
        }
    }

    #[test]
    fn the_slow_reader_limit_drops_back_once_a_replay_has_drained() {
        let mut att = attachment(100, 1000);
        assert!(
            att.push(Out::Binary(Bytes::from(vec![0; 1000]))),
            "the replay fits"
        );
        att.replay_queued = true;
        drain(&mut att);
        assert!(att.push(Out::Binary(Bytes::from(vec![0; 60]))));
        assert!(
            !att.push(Out::Binary(Bytes::from(vec![0; 60]))),
            "120 bytes queued: over the configured 100 again"
        );
        assert_eq!(att.queued, 60, "a refused frame is not counted");
    }

    #[test]
    fn a_dropped_attachment_without_a_socket_tells_its_reader() {
        let att = attachment(100, 0);
        let done = att.done.clone();
        drop(att);
        assert!(done.is_cancelled(), "the reader stops waiting for a close");
    }

    /// What every idle session pays for: its command queue's block of 32
    /// commands, and its task (the session's own state is boxed apart).
    #[test]
    fn per_session_types_stay_small() {
        let cmd = std::mem::size_of::<Cmd>();
        assert!(cmd <= 56, "Cmd is {cmd} bytes: box its large parts");
        let out = std::mem::size_of::<Out>();
        assert!(out <= 40, "Out is {out} bytes");
    }

    #[test]
    fn shared_frames_are_kept_without_a_copy() {
        let mut r = ring(true);
        let copied = r.push(Bytes::from_static(b"hello"));
        let shared = Bytes::from(vec![3u8; 100]);
        let kept = r.keep(shared.clone());
        assert!(std::ptr::eq(kept.as_ptr(), shared.as_ptr()), "no copy");
        assert_eq!((r.total(), r.bytes()), (2, 105));
        let held: Vec<&Bytes> = r.since(0).unwrap().collect();
        assert_eq!(held, [&copied, &shared]);
        r.drop_below(2);
        assert_eq!((r.first, r.bytes()), (2, 0));

        let mut off = ring(false);
        assert!(std::ptr::eq(
            off.keep(shared.clone()).as_ptr(),
            shared.as_ptr()
        ));
        assert_eq!((off.total(), off.bytes()), (1, 0));
    }

    #[test]
    fn disabled_ring_counts_only() {
        let mut r = ring(false);
        let x = Bytes::from_static(b"x");
        assert!(
            std::ptr::eq(r.push(x.clone()).as_ptr(), x.as_ptr()),
            "nothing kept, nothing copied"
        );
        r.push(Bytes::from_static(b"y"));
        assert_eq!(r.total(), 2);
        assert_eq!(r.bytes(), 0);
        assert!(r.since(0).is_none());
    }
}
