//! The embedded dumdum server: the protocol crate's [`Server`] state machine
//! per connection, with shared channels, nicks and history that behave like
//! the reference server (nick uniqueness, N messages kept per channel, the
//! inverted inclusive LIST_MESSAGES range with a 100-message cap, silent drop
//! to unknown channels). Bridge sessions reach it through a [`MemConn`],
//! which runs the connection's state machine inside the session's own task
//! (no pipe, no second task); `--embedded-listen` also serves it over TCP
//! (optionally TLS).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dumdum_protocol::{
    ChatMessage, Server, ServerEvent, ServerMessage, ServerState, SnowflakeGenerator, history,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::link::Link;
use crate::queue::{self, TrySendError};

/// Frames queued towards one connection before it is dropped as too slow.
const CONN_QUEUE: usize = 4096;
/// Read chunk size.
const READ_CHUNK: usize = 4096;
/// Why a connection whose queue overflowed ends.
const TOO_SLOW: &str = "too slow: its send queue is full";
/// From this many authenticated connections on, a bridge session lets the
/// other sessions run once before writing what it was given (see
/// [`MemInbox::crowded`]).
const CROWD: usize = 8;

/// What a connection must do after the events of a chunk.
enum Next {
    /// Read on.
    Continue,
    /// The client said HELLO: answer it (and upgrade, over TCP with TLS).
    Hello,
}

/// Set by a broadcaster that found a connection's queue full. A flag that
/// an in-process connection checks on every frame it takes (a load, where
/// a cancellation token's check takes a lock), and a token that a TCP
/// connection's task waits on.
#[derive(Clone, Default)]
struct Kill(Arc<KillState>);

#[derive(Default)]
struct KillState {
    set: AtomicBool,
    token: CancellationToken,
}

impl Kill {
    fn kill(&self) {
        self.0.set.store(true, Ordering::Release);
        self.0.token.cancel();
    }
}

struct Peer {
    tx: queue::Sender<Bytes>,
    kill: Kill,
}

struct State {
    channels: Vec<String>,
    history: HashMap<String, VecDeque<ChatMessage>>,
    nicks: HashSet<String>,
    /// Authenticated connections, which receive broadcasts.
    peers: HashMap<u64, Peer>,
    ids: SnowflakeGenerator,
}

/// The embedded server, shared by every connection to it.
pub struct Embedded {
    state: Mutex<State>,
    max_messages: usize,
    next_id: AtomicU64,
    /// Authenticated connections (`State::peers`), readable without the lock.
    audience: AtomicUsize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("max_messages", &self.max_messages)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Embedded {
    /// A server with these channels keeping `max_messages` per channel.
    pub fn new(
        channels: &[String],
        max_messages: usize,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        Arc::new(Embedded {
            state: Mutex::new(State {
                channels: channels.to_vec(),
                history: channels
                    .iter()
                    .map(|c| (c.clone(), VecDeque::new()))
                    .collect(),
                nicks: HashSet::new(),
                peers: HashMap::new(),
                ids: SnowflakeGenerator::new(std::process::id()),
            }),
            max_messages,
            next_id: AtomicU64::new(1),
            audience: AtomicUsize::new(0),
            shutdown,
            tracker,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated
        // in a way that matters more than losing the server: keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens an in-process connection (for a bridge session).
    pub fn connect(self: &Arc<Self>) -> MemConn {
        let (tx, rx) = queue::channel::<Bytes>(CONN_QUEUE);
        MemConn {
            server: self.clone(),
            machine: Server::default(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            nick: None,
            tx,
            rx: Some(rx),
            kill: Kill::default(),
            pending: Bytes::new(),
        }
    }

    /// Serves TCP connections on `listener` until shutdown; with `tls`, the
    /// server answers HELLO(1) and upgrades. Connections beyond `limits`
    /// are closed at once; one that has not said HELLO (and finished TLS)
    /// within `hello_timeout` is closed.
    pub(crate) fn listen(
        self: &Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        limits: crate::app::ConnLimits,
        hello_timeout: Duration,
    ) {
        let me = self.clone();
        self.tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = me.shutdown.cancelled() => return,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((tcp, addr)) => {
                        let Some(slot) = limits.try_slot(addr.ip()) else {
                            tracing::info!(client = %addr, "embedded server: refused: too many connections");
                            continue;
                        };
                        crate::tls::nodelay(&tcp);
                        let me2 = me.clone();
                        let tls = tls.clone();
                        let deadline = tokio::time::Instant::now() + hello_timeout;
                        me.tracker.spawn(async move {
                            me2.serve(Link::Tcp(tcp), addr.to_string(), tls, Some(deadline)).await;
                            drop(slot);
                        });
                    }
                    Err(e) => {
                        tracing::debug!("embedded server: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }

    /// One connection, from HELLO to close.
    async fn serve(
        self: Arc<Self>,
        mut io: Link,
        peer: String,
        tls: Option<TlsAcceptor>,
        mut hello_by: Option<tokio::time::Instant>,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = queue::channel::<Bytes>(CONN_QUEUE);
        let kill = Kill::default();
        let mut server = Server::default();
        let mut nick: Option<String> = None;
        let mut buf = vec![0u8; READ_CHUNK];
        let why = loop {
            if hello_by.is_some()
                && matches!(
                    server.state(),
                    ServerState::Unauthenticated | ServerState::Ready { .. }
                )
            {
                hello_by = None;
            }
            let far = tokio::time::Instant::now() + Duration::from_secs(86400);
            tokio::select! {
                () = self.shutdown.cancelled() => break "server shutting down".to_string(),
                () = kill.0.token.cancelled() => break "too slow: its send queue is full".to_string(),
                () = tokio::time::sleep_until(hello_by.unwrap_or(far)), if hello_by.is_some() => {
                    break "no HELLO (and TLS) within the handshake timeout".to_string();
                }
                r = io.read(&mut buf) => {
                    let n = match r {
                        Ok(0) => break "client closed the connection".to_string(),
                        Ok(n) => n,
                        Err(e) => break format!("read error: {e}"),
                    };
                    if let Err(e) = server.handle_data(&buf[..n]) {
                        break format!("protocol error: {e}");
                    }
                    match self.process(&mut server, &tx, &kill, id, &mut nick) {
                        Ok(Next::Continue) => {}
                        Ok(Next::Hello) => {
                            if let Err(e) = hello(&mut server, &mut io, &mut rx, tls.is_some()).await {
                                break e;
                            }
                            let Some(acceptor) = tls.as_ref() else { continue };
                            io = match upgrade(io, acceptor).await {
                                Ok(io) => io,
                                Err(e) => break e,
                            };
                            if let Err(e) = server.handle_tls_established() {
                                break e.to_string();
                            }
                        }
                        Err(e) => break e,
                    }
                }
                Some(frame) = rx.recv() => {
                    if let Err(e) = write_batch(&mut io, frame, &mut rx).await {
                        break format!("write error: {e}");
                    }
                }
            }
        };
        self.forget(id, nick.as_deref());
        tracing::debug!(peer = %peer, nick = ?nick, "embedded server: connection ended: {why}");
    }

    /// A connection ended: it no longer receives broadcasts, and its nick
    /// is free again.
    fn forget(&self, id: u64, nick: Option<&str>) {
        let mut st = self.lock();
        st.peers.remove(&id);
        self.audience.store(st.peers.len(), Ordering::Relaxed);
        if let Some(n) = nick {
            st.nicks.remove(n);
        }
    }

    /// Answers every event of the last chunk, in order, until a HELLO
    /// (which the caller answers, as only it can write before a TLS
    /// upgrade). Replies join the connection's queue.
    fn process(
        &self,
        server: &mut Server,
        tx: &queue::Sender<Bytes>,
        kill: &Kill,
        id: u64,
        nick: &mut Option<String>,
    ) -> Result<Next, String> {
        while let Some(event) = server.poll_event() {
            if let ServerEvent::Hello = event {
                // Nothing can follow HELLO in the same chunk (the state
                // machine refuses it).
                return Ok(Next::Hello);
            }
            let mut st = self.lock();
            match event {
                ServerEvent::Hello | ServerEvent::IncompatibleVersion { .. } => {}
                ServerEvent::Authenticate { nick: wanted } => {
                    let ok = if wanted.is_empty() {
                        tracing::info!("embedded server: refused an empty nick (ACK 0)");
                        false
                    } else {
                        !st.nicks.contains(&wanted)
                    };
                    server.authenticate(ok).map_err(|e| e.to_string())?;
                    if ok {
                        st.nicks.insert(wanted.clone());
                        st.peers.insert(
                            id,
                            Peer {
                                tx: tx.clone(),
                                kill: kill.clone(),
                            },
                        );
                        self.audience.store(st.peers.len(), Ordering::Relaxed);
                        *nick = Some(wanted);
                    }
                }
                ServerEvent::SendMessage { channel, content } => {
                    if st.history.contains_key(&channel) {
                        let author = nick.clone().unwrap_or_default();
                        let msg_id = st.ids.next(now_ms());
                        let message = ChatMessage {
                            id: msg_id,
                            channel,
                            nick: author,
                            content,
                        };
                        let frame = ServerMessage::SendMessage(message.clone())
                            .to_bytes()
                            .map(Bytes::from)
                            .map_err(|e| e.to_string())?;
                        let max = self.max_messages;
                        if let Some(h) = st.history.get_mut(&message.channel) {
                            h.push_back(message);
                            while h.len() > max {
                                h.pop_front();
                            }
                        }
                        st.peers.retain(|_, p| match p.tx.try_send(frame.clone()) {
                            Ok(()) => true,
                            Err(TrySendError::Full(_)) => {
                                p.kill.kill();
                                false
                            }
                            Err(TrySendError::Closed(_)) => false,
                        });
                        self.audience.store(st.peers.len(), Ordering::Relaxed);
                    }
                }
                ServerEvent::ListChannels => {
                    let channels = st.channels.clone();
                    server.list_channels(&channels).map_err(|e| e.to_string())?;
                }
                ServerEvent::ListMessages {
                    channel,
                    before,
                    after,
                } => {
                    let page = match st.history.get_mut(&channel) {
                        Some(h) => {
                            history::select(h.make_contiguous(), before, after, 100).to_vec()
                        }
                        None => Vec::new(),
                    };
                    server.list_messages(&page).map_err(|e| e.to_string())?;
                }
                other => {
                    tracing::debug!("embedded server: ignoring {other:?}");
                }
            }
            // Replies join the same queue as broadcasts, under the lock, so
            // their order is the order in which things happened.
            while let Some(out) = server.poll_transmit() {
                tx.try_send(Bytes::from(out))
                    .map_err(|_| TOO_SLOW.to_string())?;
            }
            drop(st);
        }
        Ok(Next::Continue)
    }
}

/// Answers HELLO on a TCP connection: what is queued first (an
/// INCOMPATIBLE_VERSION for an earlier HELLO of the same chunk), then the
/// HELLO, written directly since with TLS it must precede the handshake.
async fn hello(
    server: &mut Server,
    io: &mut Link,
    rx: &mut queue::Receiver<Bytes>,
    tls: bool,
) -> Result<(), String> {
    let write_error = |e: io::Error| format!("write error: {e}");
    while let Some(queued) = rx.try_recv() {
        io.write_all(&queued).await.map_err(write_error)?;
    }
    server.accept_hello(tls).map_err(|e| e.to_string())?;
    while let Some(out) = server.poll_transmit() {
        io.write_all(&out).await.map_err(write_error)?;
    }
    Ok(())
}

/// A bridge session's connection to the embedded server. Writing runs the
/// server's state machine at once, in the writer's task; reading takes the
/// frames queued for this connection (replies and broadcasts, in order)
/// straight from its queue. So a message crosses no pipe and wakes no other
/// task than the recipients' own sessions. A session can also take those
/// frames whole, as the server encoded them, through [`MemConn::inbox`].
pub struct MemConn {
    server: Arc<Embedded>,
    machine: Server,
    id: u64,
    nick: Option<String>,
    tx: queue::Sender<Bytes>,
    /// `None` once taken by [`MemConn::inbox`].
    rx: Option<queue::Receiver<Bytes>>,
    /// Cancelled by a broadcaster that found the queue full.
    kill: Kill,
    /// The rest of a frame that did not fit the last read.
    pending: Bytes,
}

impl std::fmt::Debug for MemConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemConn")
            .field("id", &self.id)
            .field("nick", &self.nick)
            .finish_non_exhaustive()
    }
}

impl MemConn {
    fn handle(&mut self, data: &[u8]) -> Result<(), String> {
        self.machine
            .handle_data(data)
            .map_err(|e| format!("protocol error: {e}"))?;
        let next = self.server.process(
            &mut self.machine,
            &self.tx,
            &self.kill,
            self.id,
            &mut self.nick,
        )?;
        if let Next::Hello = next {
            self.machine
                .accept_hello(false)
                .map_err(|e| e.to_string())?;
            while let Some(out) = self.machine.poll_transmit() {
                self.tx
                    .try_send(Bytes::from(out))
                    .map_err(|_| TOO_SLOW.to_string())?;
            }
        }
        Ok(())
    }

    fn killed(&self) -> io::Result<()> {
        killed(&self.kill)
    }

    /// Takes the frames queued for this connection as they are, one server
    /// message each (no byte stream to split again); `None` if already
    /// taken. From then on, reading the connection as a byte stream fails.
    pub(crate) fn inbox(&mut self) -> Option<MemInbox> {
        Some(MemInbox {
            rx: self.rx.take()?,
            kill: self.kill.clone(),
            server: self.server.clone(),
        })
    }
}

/// Moves what fits of `pending` into `buf`.
fn take(pending: &mut Bytes, buf: &mut ReadBuf<'_>) {
    let n = pending.len().min(buf.remaining());
    buf.put_slice(&pending.split_to(n));
}

fn killed(kill: &Kill) -> io::Result<()> {
    if kill.0.set.load(Ordering::Acquire) {
        return Err(io::Error::other(TOO_SLOW));
    }
    Ok(())
}

/// The frames queued for a [`MemConn`] (see [`MemConn::inbox`]): replies
/// and broadcasts in order, each exactly one server message as the
/// embedded server encoded it. A broadcast is the same `Bytes` for every
/// recipient, so keeping it costs no copy.
pub(crate) struct MemInbox {
    rx: queue::Receiver<Bytes>,
    kill: Kill,
    server: Arc<Embedded>,
}

impl std::fmt::Debug for MemInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemInbox").finish_non_exhaustive()
    }
}

impl MemInbox {
    /// The next frame; an error once the connection was dropped as too
    /// slow (its queue was full).
    pub(crate) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        killed(&self.kill)?;
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(Ok(frame)),
            // Never: the connection holds a sender itself.
            Poll::Ready(None) => Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether broadcasts go to so many connections that a session should
    /// let the others run once before writing what it took: their posts
    /// then join its batch (one WebSocket write for several frames, where
    /// each write costs the most). Not with a few, where that turn would
    /// only add latency.
    pub(crate) fn crowded(&self) -> bool {
        self.server.audience.load(Ordering::Relaxed) >= CROWD
    }

    /// The next frame if one is queued.
    pub(crate) fn try_frame(&mut self) -> io::Result<Option<Bytes>> {
        killed(&self.kill)?;
        Ok(self.rx.try_recv())
    }
}

impl Drop for MemConn {
    fn drop(&mut self) {
        self.server.forget(self.id, self.nick.as_deref());
    }
}

impl AsyncRead for MemConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        // A broadcaster kills the connection only when its queue is full,
        // so a reader is never left waiting for this.
        me.killed()?;
        let start = buf.filled().len();
        take(&mut me.pending, buf);
        let Some(rx) = me.rx.as_mut() else {
            return Poll::Ready(Err(io::Error::other(
                "the connection's frames are read through its inbox",
            )));
        };
        // Fill the read with what else is queued: one read, many frames.
        while buf.remaining() > 0 {
            match rx.poll_recv(cx) {
                Poll::Ready(Some(frame)) => {
                    me.pending = frame;
                    take(&mut me.pending, buf);
                }
                // Never: the connection holds a sender itself.
                Poll::Ready(None) => break,
                Poll::Pending if buf.filled().len() == start => return Poll::Pending,
                Poll::Pending => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MemConn {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        me.killed()?;
        me.handle(buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        me.killed()?;
        let mut n = 0;
        for b in bufs {
            me.handle(b)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

async fn upgrade(io: Link, acceptor: &TlsAcceptor) -> Result<Link, String> {
    let Link::Tcp(tcp) = io else {
        return Err("TLS is only offered over TCP".into());
    };
    let stream = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    Ok(Link::Tls(Box::new(tokio_rustls::TlsStream::Server(stream))))
}

async fn write_batch(
    io: &mut Link,
    first: Bytes,
    rx: &mut queue::Receiver<Bytes>,
) -> std::io::Result<()> {
    // Coalesce what is queued into one write (one syscall on TCP).
    let Some(second) = rx.try_recv() else {
        io.write_all(&first).await?;
        return io.flush().await;
    };
    let mut batch = Vec::with_capacity(first.len() + second.len() + 4096);
    batch.extend_from_slice(&first);
    batch.extend_from_slice(&second);
    while batch.len() < 64 * 1024 {
        match rx.try_recv() {
            Some(more) => batch.extend_from_slice(&more),
            None => break,
        }
    }
    io.write_all(&batch).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use dumdum_protocol::{ClientMessage, Decode, Decoder, PROTOCOL_VERSION};

    async fn next(conn: &mut MemConn, decoder: &mut Decoder<ServerMessage>) -> ServerMessage {
        loop {
            if let Some((m, _)) = decoder.next_message().expect("a valid server stream") {
                return m;
            }
            decoder.buf_mut().reserve(READ_CHUNK);
            let n = tokio::time::timeout(Duration::from_secs(5), conn.read_buf(decoder.buf_mut()))
                .await
                .expect("an answer within 5 s")
                .expect("a read");
            assert!(n > 0, "the connection ended");
        }
    }

    /// A server with one channel, `general`, keeping 10 messages.
    fn general_only() -> Arc<Embedded> {
        Embedded::new(
            &["general".to_string()],
            10,
            CancellationToken::new(),
            TaskTracker::new(),
        )
    }

    async fn login(server: &Arc<Embedded>, nick: &str) -> (MemConn, Decoder<ServerMessage>, bool) {
        let mut conn = server.connect();
        let mut decoder = Decoder::<ServerMessage>::new(64 * 1024);
        for m in [
            ClientMessage::Hello {
                version: PROTOCOL_VERSION,
            },
            ClientMessage::Authenticate { nick: nick.into() },
        ] {
            conn.write_all(&m.to_bytes().expect("encodable"))
                .await
                .expect("a write");
            // HELLO is answered before the next message is written.
            if matches!(m, ClientMessage::Hello { .. }) {
                assert_eq!(
                    next(&mut conn, &mut decoder).await,
                    ServerMessage::Hello { tls: false }
                );
            }
        }
        let ok = match next(&mut conn, &mut decoder).await {
            ServerMessage::AcknowledgeAuthentication { success } => success,
            other => panic!("expected an ACK, got {other:?}"),
        };
        (conn, decoder, ok)
    }

    #[tokio::test]
    async fn in_process_connections_chat_and_free_their_nick() {
        let server = general_only();
        let (mut alice, mut alice_rx, ok) = login(&server, "alice").await;
        assert!(ok);
        let (mut bob, mut bob_rx, ok) = login(&server, "bob").await;
        assert!(ok);
        let (_, _, taken) = login(&server, "alice").await;
        assert!(!taken, "a nick in use is refused");

        // Two posts in one write reach both, in order.
        let mut two = Vec::new();
        for text in ["one", "two"] {
            two.extend(
                ClientMessage::SendMessage {
                    channel: "general".into(),
                    content: text.into(),
                }
                .to_bytes()
                .expect("encodable"),
            );
        }
        bob.write_all(&two).await.expect("a write");
        for (conn, rx) in [(&mut alice, &mut alice_rx), (&mut bob, &mut bob_rx)] {
            for text in ["one", "two"] {
                match next(conn, rx).await {
                    ServerMessage::SendMessage(m) => {
                        assert_eq!((m.nick.as_str(), m.content.as_str()), ("bob", text));
                    }
                    other => panic!("expected a message, got {other:?}"),
                }
            }
        }

        // Through its inbox, a connection takes whole frames: one message
        // each, the same allocation for every recipient of a broadcast.
        let mut inbox = alice.inbox().expect("not taken yet");
        assert!(alice.inbox().is_none(), "taken once");
        let mut buf = [0u8; 16];
        assert!(
            alice.read(&mut buf).await.is_err(),
            "no byte stream once the inbox is taken"
        );
        bob.write_all(
            &ClientMessage::SendMessage {
                channel: "general".into(),
                content: "three".into(),
            }
            .to_bytes()
            .expect("encodable"),
        )
        .await
        .expect("a write");
        let frame = inbox
            .try_frame()
            .expect("not killed")
            .expect("the broadcast is queued at once");
        match ServerMessage::decode_exact(&frame).expect("one whole message") {
            ServerMessage::SendMessage(m) => assert_eq!(m.content, "three"),
            other => panic!("expected a message, got {other:?}"),
        }
        assert!(inbox.try_frame().expect("not killed").is_none());

        // A protocol error is a write error, not a panic.
        assert!(alice.write_all(&[0xEE, 0, 0, 0]).await.is_err());

        drop(alice);
        let (_, _, ok) = login(&server, "alice").await;
        assert!(ok, "a closed connection frees its nick");
    }

    #[tokio::test]
    async fn a_room_is_crowded_from_eight_authenticated_connections() {
        let server = general_only();
        let mut conns = Vec::new();
        for i in 0..CROWD - 1 {
            let (conn, _, ok) = login(&server, &format!("u{i}")).await;
            assert!(ok);
            conns.push(conn);
        }
        // Connected but not authenticated: no broadcasts, not counted.
        let _anonymous = server.connect();
        let mut first = conns.remove(0);
        let inbox = first.inbox().expect("not taken yet");
        assert!(!inbox.crowded(), "{} connections", CROWD - 1);
        let (eighth, _, ok) = login(&server, "eighth").await;
        assert!(ok);
        assert!(inbox.crowded(), "{CROWD} connections");
        drop(eighth);
        assert!(!inbox.crowded(), "one left");
        drop(first);
        drop(conns);
        let (_, _, ok) = login(&server, "u0").await;
        assert!(ok);
        assert!(!inbox.crowded(), "the others left");
    }
}
