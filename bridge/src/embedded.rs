//! The embedded dumdum server: the protocol crate's [`Server`] state machine
//! per connection, with shared channels, nicks and history that behave like
//! the reference server (nick uniqueness, N messages kept per channel, the
//! inverted inclusive LIST_MESSAGES range with a 100-message cap, silent drop
//! to unknown channels). Bridge sessions reach it through in-memory pipes;
//! `--embedded-listen` also serves it over TCP (optionally TLS).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dumdum_protocol::{
    ChatMessage, Server, ServerEvent, ServerMessage, ServerState, SnowflakeGenerator, history,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::link::Link;

/// Frames queued towards one connection before it is dropped as too slow.
const CONN_QUEUE: usize = 4096;
/// Read chunk size.
const READ_CHUNK: usize = 4096;
/// Capacity of the in-memory pipe to a bridge session.
const PIPE_CAPACITY: usize = 64 * 1024;

struct Peer {
    tx: mpsc::Sender<Bytes>,
    kill: CancellationToken,
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
            shutdown,
            tracker,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated
        // in a way that matters more than losing the server: keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens an in-memory connection (for a bridge session).
    pub fn connect(self: &Arc<Self>) -> DuplexStream {
        let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
        let me = self.clone();
        self.tracker.spawn(async move {
            me.serve(Link::Mem(theirs), "bridge session".into(), None, None)
                .await;
        });
        ours
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
        let (tx, mut rx) = mpsc::channel::<Bytes>(CONN_QUEUE);
        let kill = CancellationToken::new();
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
                () = kill.cancelled() => break "too slow: its send queue is full".to_string(),
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
                    match self.process(&mut server, &mut io, (&tx, &mut rx), &kill, id, &mut nick, tls.as_ref()).await {
                        Ok(false) => {}
                        Ok(true) => {
                            let Some(acceptor) = tls.as_ref() else { break "no TLS acceptor".into() };
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
        {
            let mut st = self.lock();
            st.peers.remove(&id);
            if let Some(n) = &nick {
                st.nicks.remove(n);
            }
        }
        tracing::debug!(peer = %peer, nick = ?nick, "embedded server: connection ended: {why}");
    }

    /// Answers every event of the last chunk, in order. Returns whether
    /// the connection must now upgrade to TLS.
    #[allow(clippy::too_many_arguments)]
    async fn process(
        &self,
        server: &mut Server,
        io: &mut Link,
        (tx, rx): (&mpsc::Sender<Bytes>, &mut mpsc::Receiver<Bytes>),
        kill: &CancellationToken,
        id: u64,
        nick: &mut Option<String>,
        tls: Option<&TlsAcceptor>,
    ) -> Result<bool, String> {
        while let Some(event) = server.poll_event() {
            if let ServerEvent::Hello = event {
                // HELLO goes out directly: with TLS it must precede the
                // handshake. What is queued (an INCOMPATIBLE_VERSION for an
                // earlier HELLO of the same chunk) goes first.
                while let Ok(queued) = rx.try_recv() {
                    io.write_all(&queued)
                        .await
                        .map_err(|e| format!("write error: {e}"))?;
                }
                server
                    .accept_hello(tls.is_some())
                    .map_err(|e| e.to_string())?;
                while let Some(out) = server.poll_transmit() {
                    io.write_all(&out)
                        .await
                        .map_err(|e| format!("write error: {e}"))?;
                }
                // Nothing can follow HELLO in the same chunk (the state
                // machine refuses it), so the upgrade happens right here.
                return Ok(tls.is_some());
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
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                p.kill.cancel();
                                false
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => false,
                        });
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
                    .map_err(|_| "too slow: its send queue is full".to_string())?;
            }
            drop(st);
        }
        Ok(false)
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
    rx: &mut mpsc::Receiver<Bytes>,
) -> std::io::Result<()> {
    // Coalesce what is queued into one write (one syscall on TCP).
    let Ok(second) = rx.try_recv() else {
        io.write_all(&first).await?;
        return io.flush().await;
    };
    let mut batch = Vec::with_capacity(first.len() + second.len() + 4096);
    batch.extend_from_slice(&first);
    batch.extend_from_slice(&second);
    while batch.len() < 64 * 1024 {
        match rx.try_recv() {
            Ok(more) => batch.extend_from_slice(&more),
            Err(_) => break,
        }
    }
    io.write_all(&batch).await?;
    io.flush().await
}
