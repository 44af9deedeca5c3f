//! Shared helpers for the bridge's integration tests: the bridge in-process
//! on 127.0.0.1:0, and a native WebSocket client that speaks the session
//! handshake and dumdum frames. Every wait is bounded.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use dumdum_bridge::{Config, UpstreamConfig};
use dumdum_protocol::session::{Content, Handshake, HandshakeState, Notice, SUBPROTOCOL};
use dumdum_protocol::{ChatMessage, ClientMessage, Decode, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::sync::CancellationToken;

/// The default bound of one wait.
pub const WAIT: Duration = Duration::from_secs(15);

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A bridge running in this process.
pub struct Bridge {
    pub addr: SocketAddr,
    /// Stops the bridge at once (1001).
    pub shutdown: CancellationToken,
    /// Starts a drain (`Config::drain_timeout`), as a first SIGTERM does.
    pub drain: CancellationToken,
    task: Option<JoinHandle<Result<(), dumdum_bridge::Error>>>,
}

impl Bridge {
    /// Starts `config` on 127.0.0.1:0.
    pub async fn start(config: Config) -> Bridge {
        init_tracing();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let drain = CancellationToken::new();
        let https = config.tls_cert.is_some();
        let embedded = config.embedded_listen;
        let task = tokio::spawn(dumdum_bridge::run(
            config,
            listener,
            dumdum_bridge::Shutdown {
                drain: drain.clone(),
                now: shutdown.clone(),
            },
        ));
        // Serving HTTP means everything else (the embedded listener) is up;
        // over HTTPS, wait for the embedded listener itself.
        let deadline = tokio::time::Instant::now() + WAIT;
        while !(if https {
            match embedded {
                Some(e) => TcpStream::connect(e).await.is_ok(),
                None => true,
            }
        } else {
            http_get(addr, "/healthz").await.0 == 200
        }) {
            assert!(!task.is_finished(), "the bridge stopped while starting");
            assert!(tokio::time::Instant::now() < deadline, "bridge not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Bridge {
            addr,
            shutdown,
            drain,
            task: Some(task),
        }
    }

    /// The embedded server only.
    pub async fn embedded() -> Bridge {
        Bridge::start(Config::default()).await
    }

    /// One upstream called `name` at `addr`.
    pub async fn upstream(name: &str, addr: SocketAddr) -> Bridge {
        Bridge::start(Config {
            upstreams: vec![UpstreamConfig::new(name, addr.to_string())],
            ..Config::default()
        })
        .await
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The body of `/metrics`.
    pub async fn metrics(&self) -> String {
        http_get(self.addr, "/metrics").await.2
    }

    /// Opens a WebSocket (no handshake yet).
    pub async fn connect(&self) -> WsClient {
        WsClient::connect(&self.ws_url(), None).await
    }

    /// Opens a WebSocket and runs the handshake for `server`.
    pub async fn session(&self, server: Option<&str>) -> WsClient {
        let mut c = self.connect().await;
        c.handshake(server).await;
        c
    }

    /// Cancels and waits for `run` to return; returns how long it took.
    pub async fn stop(&mut self) -> Duration {
        let t = std::time::Instant::now();
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("bridge stops in time")
                .expect("bridge task")
                .expect("bridge run result");
        }
        t.elapsed()
    }
}

impl Bridge {
    /// Waits (bounded by `t`) for `run` to return by itself, without
    /// asking it to stop; true if it returned (successfully).
    pub async fn exited_within(&mut self, t: Duration) -> bool {
        let Some(task) = self.task.as_mut() else {
            return true;
        };
        match tokio::time::timeout(t, task).await {
            Ok(r) => {
                r.expect("bridge task").expect("bridge run result");
                self.task = None;
                true
            }
            Err(_) => false,
        }
    }

    /// A WebSocket to `path` (e.g. `/ws?node=b1`) from the local address
    /// `source` (any of 127.0.0.0/8 stands for a different user), with
    /// extra request headers; the HTTP status on refusal.
    pub async fn ws_from(
        &self,
        source: std::net::Ipv4Addr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, u16> {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from((source, 0))).unwrap();
        let tcp = tokio::time::timeout(WAIT, sock.connect(self.addr))
            .await
            .expect("connect in time")
            .unwrap();
        let url = format!("ws://{}{path}", self.addr);
        WsClient::over_with(Box::new(tcp), &url, headers).await
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection: (status, headers, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// What arrived on a WebSocket.
#[derive(Debug, Clone)]
pub enum Got {
    Frame(ServerMessage, Bytes),
    Text(Content),
    Close(u16, String),
    /// The connection ended without a close frame.
    Ended,
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A native WebSocket client of the bridge.
pub struct WsClient {
    ws: WebSocketStream<Box<dyn Io>>,
    /// The session key after the handshake.
    pub key: Option<String>,
    /// Binary frames received in this session (the client's `received`).
    pub received: u64,
    /// Notices seen.
    pub notices: Vec<Notice>,
    /// The Success handshake.
    pub success: Option<Handshake>,
    last_again: Option<String>,
    /// Every text frame received, as sent.
    pub raw_texts: Vec<String>,
    sn: u32,
}

impl WsClient {
    /// Connects to `url`, offering the subprotocol; with `origin`, sends it.
    pub async fn connect(url: &str, origin: Option<&str>) -> WsClient {
        WsClient::try_connect(url, origin)
            .await
            .expect("WebSocket upgrade")
    }

    /// Like [`WsClient::connect`], returning the HTTP status on refusal.
    pub async fn try_connect(url: &str, origin: Option<&str>) -> Result<WsClient, u16> {
        WsClient::over(WsClient::tcp_to(url).await, url, origin).await
    }

    /// A plain TCP connection to the host of a `ws://` URL.
    async fn tcp_to(url: &str) -> Box<dyn Io> {
        let addr: SocketAddr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Box::new(TcpStream::connect(addr).await.unwrap())
    }

    /// Runs the WebSocket upgrade over any stream (a proxy, TLS).
    pub async fn over(
        stream: Box<dyn Io>,
        url: &str,
        origin: Option<&str>,
    ) -> Result<WsClient, u16> {
        let origin: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        WsClient::over_with(stream, url, &origin).await
    }

    /// Connects to `url` with extra request headers (replacing defaults
    /// such as `Host`); the HTTP status on refusal.
    pub async fn try_connect_with(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, u16> {
        WsClient::over_with(WsClient::tcp_to(url).await, url, headers).await
    }

    /// Runs the WebSocket upgrade over any stream with extra headers.
    pub async fn over_with(
        stream: Box<dyn Io>,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, u16> {
        let mut req = url.into_client_request().unwrap();
        for (name, value) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        let r = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, stream))
            .await
            .expect("upgrade in time");
        match r {
            Ok((ws, resp)) => {
                assert_eq!(
                    resp.headers()
                        .get("Sec-WebSocket-Protocol")
                        .and_then(|v| v.to_str().ok()),
                    Some(SUBPROTOCOL),
                    "the bridge selects the subprotocol"
                );
                Ok(WsClient {
                    ws,
                    key: None,
                    received: 0,
                    notices: Vec::new(),
                    success: None,
                    last_again: None,
                    raw_texts: Vec::new(),
                    sn: 1,
                })
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("WebSocket upgrade failed: {e}"),
        }
    }

    fn next_sn(&mut self) -> u32 {
        self.sn += 1;
        self.sn
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_content(&mut self, c: &Content) {
        self.send_text(&c.to_json()).await;
    }

    /// Sends raw bytes as one binary frame.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.ws.send(Message::binary(bytes.to_vec())).await.unwrap();
    }

    /// Sends one client message as a binary frame.
    pub async fn send(&mut self, msg: &ClientMessage) {
        let bytes = msg.to_bytes().unwrap();
        self.send_raw(&bytes).await;
    }

    /// The next thing that arrives (bounded by [`WAIT`]).
    pub async fn next(&mut self) -> Got {
        self.next_within(WAIT)
            .await
            .expect("something arrives in time")
    }

    /// The next thing within `t`, `None` on timeout.
    pub async fn next_within(&mut self, t: Duration) -> Option<Got> {
        // One deadline for the whole wait: pings skipped do not extend it.
        let deadline = tokio::time::Instant::now() + t;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            let got = match m {
                None | Some(Err(_)) => Got::Ended,
                Some(Ok(Message::Binary(b))) => {
                    self.received += 1;
                    let msg = ServerMessage::decode_exact(&b).expect("one whole server message");
                    Got::Frame(msg, b)
                }
                Some(Ok(Message::Text(t))) => {
                    self.raw_texts.push(t.to_string());
                    let c = Content::parse(t.as_str()).expect("valid session content");
                    if let Content::Notice { notice, .. } = &c {
                        self.notices.push(notice.clone());
                    }
                    Got::Text(c)
                }
                Some(Ok(Message::Close(f))) => match f {
                    Some(f) => Got::Close(f.code.into(), f.reason.to_string()),
                    None => Got::Close(1005, String::new()),
                },
                Some(Ok(_)) => continue,
            };
            return Some(got);
        }
    }

    /// Start -> Again -> Restart -> Success for `server`.
    pub async fn handshake(&mut self, server: Option<&str>) -> Handshake {
        let sn = self.next_sn();
        self.send_content(&Content::Handshake(Handshake::start(
            sn,
            server.map(Into::into),
        )))
        .await;
        let again = self.expect_handshake().await;
        assert_eq!(again.state(), HandshakeState::Again, "{again:?}");
        let key = again.session.clone().expect("Again carries a key");
        assert_eq!(key.len(), 64);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
        let sn = self.next_sn();
        self.send_content(&Content::Handshake(Handshake::restart(
            sn,
            key.clone(),
            0,
            None,
        )))
        .await;
        let ok = self.expect_handshake().await;
        assert_eq!(ok.state(), HandshakeState::Success, "{ok:?}");
        assert_eq!(ok.resumed, Some(false));
        assert_eq!(ok.session.as_deref(), Some(key.as_str()));
        self.key = Some(key);
        self.success = Some(ok.clone());
        ok
    }

    /// Sends Restart with `key` and the client's `received`; returns the answer.
    pub async fn restart(&mut self, key: &str, received: u64) -> Handshake {
        let sn = self.next_sn();
        self.send_content(&Content::Handshake(Handshake::restart(
            sn,
            key.to_string(),
            received,
            None,
        )))
        .await;
        let h = self.expect_handshake().await;
        if h.state() == HandshakeState::Again {
            self.last_again = h.session.clone();
        }
        if h.state() == HandshakeState::Success {
            self.key = Some(key.to_string());
            self.received = received;
            self.success = Some(h.clone());
        }
        h
    }

    /// The key of the last Again received by [`WsClient::restart`].
    pub fn restart_key_from_again(&self) -> Option<String> {
        self.last_again.clone()
    }

    /// The next handshake command (notices are recorded, frames refused).
    pub async fn expect_handshake(&mut self) -> Handshake {
        loop {
            match self.next().await {
                Got::Text(Content::Handshake(h)) => return h,
                Got::Text(_) => {}
                other => panic!("expected a handshake, got {other:?}"),
            }
        }
    }

    /// The next server message, skipping notices.
    pub async fn expect_frame(&mut self) -> ServerMessage {
        loop {
            match self.next().await {
                Got::Frame(m, _) => return m,
                Got::Text(_) => {}
                other => panic!(
                    "expected a frame, got {other:?} (notices: {:?})",
                    self.notices
                ),
            }
        }
    }

    /// Waits for a server message matching `pred`, skipping others.
    pub async fn expect_frame_where(
        &mut self,
        what: &str,
        pred: impl Fn(&ServerMessage) -> bool,
    ) -> ServerMessage {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(Got::Frame(m, _)) if pred(&m) => return m,
                Some(Got::Frame(..) | Got::Text(_)) => {}
                Some(other) => panic!("waiting for {what}: got {other:?}"),
                None => panic!("no {what} within {WAIT:?}"),
            }
        }
    }

    /// Waits for the close frame; frames and notices before it are skipped.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.next().await {
                Got::Close(code, reason) => return (code, reason),
                Got::Ended => panic!("connection ended without a close frame"),
                _ => {}
            }
        }
    }

    /// HELLO then AUTHENTICATE (waiting for the server's HELLO in between).
    pub async fn login(&mut self, nick: &str) {
        self.send(&ClientMessage::Hello { version: 2 }).await;
        let hello = self.expect_frame().await;
        assert!(matches!(hello, ServerMessage::Hello { .. }), "{hello:?}");
        self.send(&ClientMessage::Authenticate { nick: nick.into() })
            .await;
        let ack = self.expect_frame().await;
        assert_eq!(
            ack,
            ServerMessage::AcknowledgeAuthentication { success: true },
            "nick {nick} accepted"
        );
    }

    /// HELLO and AUTHENTICATE back to back, without waiting.
    pub async fn login_eager(&mut self, nick: &str) {
        self.send(&ClientMessage::Hello { version: 2 }).await;
        self.send(&ClientMessage::Authenticate { nick: nick.into() })
            .await;
        let hello = self.expect_frame().await;
        assert!(matches!(hello, ServerMessage::Hello { .. }), "{hello:?}");
        let ack = self.expect_frame().await;
        assert_eq!(
            ack,
            ServerMessage::AcknowledgeAuthentication { success: true }
        );
    }

    /// Sends HELLO(2); returns the next server message.
    pub async fn hello(&mut self) -> ServerMessage {
        self.send(&ClientMessage::Hello { version: 2 }).await;
        self.expect_frame().await
    }

    /// Sends AUTHENTICATE with `nick`; returns the next server message.
    pub async fn authenticate(&mut self, nick: &str) -> ServerMessage {
        self.send(&ClientMessage::Authenticate { nick: nick.into() })
            .await;
        self.expect_frame().await
    }

    pub async fn say(&mut self, channel: &str, content: &str) {
        self.send(&ClientMessage::SendMessage {
            channel: channel.into(),
            content: content.into(),
        })
        .await;
    }

    /// Waits for a broadcast with this content.
    pub async fn expect_message(&mut self, content: &str) -> ChatMessage {
        match self
            .expect_frame_where(
                &format!("message {content:?}"),
                |m| matches!(m, ServerMessage::SendMessage(c) if c.content == content),
            )
            .await
        {
            ServerMessage::SendMessage(c) => c,
            _ => unreachable!(),
        }
    }

    /// Closes with `code` and waits (bounded) for the bridge's answer.
    pub async fn close(&mut self, code: u16) {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        let _ = self
            .ws
            .send(Message::Close(Some(CloseFrame {
                code: code.into(),
                reason: "bye".into(),
            })))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// Whether the connection is still open and silent for `t`.
    pub async fn quiet_for(&mut self, t: Duration) -> Option<Got> {
        self.next_within(t).await
    }
}

/// Runs blocking work (a Python peer) off the async workers; returns its result.
pub async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Waits for a notice matching `pred` in `c` (recorded or upcoming).
pub async fn expect_notice(c: &mut WsClient, what: &str, pred: impl Fn(&Notice) -> bool) -> Notice {
    if let Some(n) = c.notices.iter().find(|n| pred(n)) {
        return n.clone();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_within(left).await {
            Some(Got::Text(Content::Notice { notice, .. })) if pred(&notice) => return notice,
            Some(Got::Close(code, reason)) => {
                if let Some(n) = c.notices.iter().find(|n| pred(n)) {
                    return n.clone();
                }
                panic!(
                    "waiting for {what}: closed {code} {reason}; notices {:?}",
                    c.notices
                )
            }
            Some(_) => {}
            None => panic!("no {what} within {WAIT:?}; notices {:?}", c.notices),
        }
    }
}

/// Waits for the `upstream secured` notice: (tls_version, peer, fingerprint),
/// the version checked to be a TLS 1.x one.
pub async fn expect_secured(c: &mut WsClient) -> (String, String, String) {
    let secured = expect_notice(c, "secured", |n| {
        matches!(n, Notice::UpstreamSecured { .. })
    })
    .await;
    let Notice::UpstreamSecured {
        tls_version,
        peer,
        fingerprint,
    } = secured
    else {
        unreachable!("the predicate matched UpstreamSecured")
    };
    assert!(tls_version.starts_with("TLSv1."), "{tls_version}");
    (tls_version, peer, fingerprint)
}

/// A TCP proxy that can cut its connections abruptly (RST, no close frame)
/// and records every byte sent from its clients to the target.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: std::sync::Arc<std::sync::Mutex<CancellationToken>>,
    /// Stops forwarding both ways, without closing (a dead network path).
    freeze: std::sync::Arc<std::sync::Mutex<CancellationToken>>,
    /// Stops forwarding from the target to the client, without closing.
    stall: std::sync::Arc<std::sync::Mutex<CancellationToken>>,
    upstream_bytes: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    blackhole: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: CancellationToken,
}

impl Proxy {
    /// Forwards 127.0.0.1:<free> to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = std::sync::Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let freeze = std::sync::Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let stall = std::sync::Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let (freeze2, stall2) = (freeze.clone(), stall.clone());
        let upstream_bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let blackhole = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut2, bytes2, stop2) = (cut.clone(), upstream_bytes.clone(), stop.clone());
        let hole2 = blackhole.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    () = stop2.cancelled() => return,
                    a = listener.accept() => a.unwrap(),
                };
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let token = cut2.lock().unwrap().clone();
                let frozen_token = freeze2.lock().unwrap().clone();
                let stalled_token = stall2.lock().unwrap().clone();
                let log = {
                    let mut all = bytes2.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let bytes3 = bytes2.clone();
                let hole3 = hole2.clone();
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let mut b1 = vec![0u8; 16384];
                    let mut b2 = vec![0u8; 16384];
                    let (mut frozen, mut stalled) = (false, false);
                    loop {
                        tokio::select! {
                            () = token.cancelled() => break,
                            () = frozen_token.cancelled(), if !frozen => frozen = true,
                            () = stalled_token.cancelled(), if !stalled => stalled = true,
                            r = cr.read(&mut b1), if !frozen => match r {
                                Ok(0) | Err(_) => break,
                                Ok(_) if hole3.load(std::sync::atomic::Ordering::SeqCst) => {}
                                Ok(n) => {
                                    bytes3.lock().unwrap()[log].extend_from_slice(&b1[..n]);
                                    if sw.write_all(&b1[..n]).await.is_err() { break }
                                }
                            },
                            r = sr.read(&mut b2), if !frozen && !stalled => match r {
                                Ok(0) | Err(_) => break,
                                Ok(n) => if cw.write_all(&b2[..n]).await.is_err() { break },
                            },
                        }
                    }
                    // Abrupt: reset both sides rather than closing cleanly.
                    let client = cr.reunite(cw).unwrap();
                    let server = sr.reunite(sw).unwrap();
                    // Zero linger resets at once; it never blocks on drop.
                    #[allow(deprecated)]
                    {
                        let _ = client.set_linger(Some(Duration::ZERO));
                        let _ = server.set_linger(Some(Duration::ZERO));
                    }
                });
            }
        });
        Proxy {
            addr,
            cut,
            freeze,
            stall,
            upstream_bytes,
            blackhole,
            stop,
        }
    }

    /// From now on, bytes from clients are swallowed (lost in flight);
    /// [`Proxy::cut`] ends that.
    pub fn blackhole(&self) {
        self.blackhole
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Resets every connection made so far.
    pub fn cut(&self) {
        self.blackhole
            .store(false, std::sync::atomic::Ordering::SeqCst);
        for t in [&self.cut, &self.freeze, &self.stall] {
            let mut t = t.lock().unwrap();
            t.cancel();
            *t = CancellationToken::new();
        }
    }

    /// Every connection made so far stops forwarding in both directions
    /// but stays open (a network path that died without a FIN or RST).
    pub fn freeze(&self) {
        let mut t = self.freeze.lock().unwrap();
        t.cancel();
        *t = CancellationToken::new();
    }

    /// Every connection made so far stops forwarding from the target to
    /// its client (bytes pile up in the target's socket buffers).
    pub fn stall(&self) {
        let mut t = self.stall.lock().unwrap();
        t.cancel();
        *t = CancellationToken::new();
    }

    /// Bytes each proxied connection sent towards the target.
    pub fn sent_to_target(&self) -> Vec<Vec<u8>> {
        self.upstream_bytes.lock().unwrap().clone()
    }

    /// A WebSocket to `bridge` through this proxy.
    pub async fn ws(&self, bridge: &Bridge) -> WsClient {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        WsClient::over(Box::new(tcp), &bridge.ws_url(), None)
            .await
            .unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

/// Decodes a client byte stream into messages.
pub fn client_messages(bytes: &[u8]) -> Vec<ClientMessage> {
    let mut d = dumdum_protocol::Decoder::<ClientMessage>::default();
    d.feed(bytes);
    let mut out = Vec::new();
    while let Ok(Some((m, _))) = d.next_message() {
        out.push(m);
    }
    out
}
