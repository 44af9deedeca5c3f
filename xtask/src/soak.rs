//! `cargo xtask soak --minutes N`: sessions through the release bridge to
//! the Python reference server (`.venv/bin/dumdum-server`), on loopback,
//! with chaos all along:
//!
//! - WebSocket cuts, resumed through the session handshake (the client sends
//!   again what Success says was not forwarded, as the page does);
//! - cuts longer than the bridge's resume grace (3 s here), so the resume gets
//!   Again and the client reconnects as a reloaded page does: a fresh
//!   session, then LIST_MESSAGES for everything after the last id it saw;
//! - slow readers (a client stops reading for a few seconds);
//! - the upstream server killed (SIGTERM) and restarted;
//! - clients posting all the time.
//!
//! Then it checks that every message id reached every client that was
//! logged in when it was broadcast exactly once and in order: live,
//! replayed on resume, or caught up after a fresh session. Ids a killed
//! server had broadcast but not yet written are counted apart (the server's
//! loss, not the bridge's). Counts and the bridge's RSS are printed every
//! 10 s, and the RSS after every session ended against the baseline.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use dumdum_protocol::session::{Content, Handshake, HandshakeState, SUBPROTOCOL};
use dumdum_protocol::{ClientMessage, Decode, HistoryQuery, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::bench::{Proc, free_port, http_get, metric};
use crate::setup::root;

const CHANNEL: &str = "general";
/// The bound of one wait (a connect, a handshake, a login).
const WAIT: Duration = Duration::from_secs(10);
/// The bridge's resume grace in the soak: cuts longer than this get Again.
const GRACE_S: u64 = 3;

const USAGE: &str = "usage: cargo xtask soak [--minutes N] [--sessions N] [--bridge PATH]

Runs N sessions (default 500) for N minutes (default 1; fractions allowed)
through the release bridge to the Python reference server, with WebSocket
cuts and resumes, reconnects after Again, slow readers, server restarts and
posts all along; fails unless every message reached every client logged in
at the time exactly once and in order. --bridge runs that binary instead of
building the release bridge.";

struct Opts {
    duration: Duration,
    sessions: usize,
    /// Another bridge binary (no build).
    bridge: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Option<Opts>> {
    let mut o = Opts {
        duration: Duration::from_secs(60),
        sessions: 500,
        bridge: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => {
                let v = it.next().context("--minutes needs a value")?;
                let m: f64 = v.parse().with_context(|| format!("--minutes {v:?}"))?;
                ensure!(m > 0.0 && m < 24.0 * 60.0, "--minutes {m} is out of range");
                o.duration = Duration::from_secs_f64(m * 60.0);
            }
            "--sessions" => {
                let v = it.next().context("--sessions needs a value")?;
                o.sessions = v.parse().with_context(|| format!("--sessions {v:?}"))?;
                ensure!((1..=5000).contains(&o.sessions), "--sessions 1..=5000");
            }
            "--bridge" => {
                o.bridge = Some(PathBuf::from(it.next().context("--bridge needs a path")?));
            }
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(Some(o))
}

/// Counters shared by every client.
#[derive(Default)]
struct Counts {
    posts: AtomicU64,
    deliveries: AtomicU64,
    resumes: AtomicU64,
    agains: AtomicU64,
    fresh: AtomicU64,
    failed_logins: AtomicU64,
    cuts: AtomicU64,
    slow: AtomicU64,
    restarts: AtomicU64,
    live: AtomicU64,
}

struct Shared {
    http: SocketAddr,
    counts: Counts,
    /// Bumped when the server is killed (before it is restarted).
    incarnation: AtomicU64,
    posting: AtomicBool,
    /// Clients leave once this is set.
    stop: AtomicBool,
    /// Ids seen so far, per incarnation (for the final catch-up wait).
    max_id: Mutex<BTreeMap<u64, u64>>,
}

/// What one client observed while logged in once (a fresh login until that
/// session ended, resumes included).
#[derive(Debug, Default, Clone)]
struct Span {
    incarnation: u64,
    /// A LIST_MESSAGES catch-up was asked for after the login.
    catch_up: bool,
    /// History pages received (ids).
    page: Vec<u64>,
    /// Live ids received before the (last) history page: the page may hold
    /// them too.
    early: Vec<u64>,
    /// Live ids after it (or all of them without a catch-up).
    live: Vec<u64>,
    /// The session was still live when the soak ended.
    at_end: bool,
    /// The bridge closed the session (the upstream closed: a killed server).
    closed: bool,
}

/// A tiny xorshift generator per client (no dependency, reproducible).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

type Ws = WebSocketStream<TcpStream>;

async fn connect(http: SocketAddr) -> Result<Ws> {
    let tcp = tokio::time::timeout(WAIT, TcpStream::connect(http))
        .await
        .context("connect timed out")??;
    tcp.set_nodelay(true)?;
    let mut req = format!("ws://{http}/ws").into_client_request()?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tcp))
        .await
        .context("upgrade timed out")??;
    Ok(ws)
}

async fn send_text(ws: &mut Ws, c: Content) -> Result<()> {
    ws.send(Message::text(c.to_json())).await?;
    Ok(())
}

/// The state of one session (across its WebSockets).
struct Session {
    /// None while cut.
    ws: Option<Ws>,
    key: String,
    /// Binary frames received in this session.
    received: u64,
    /// Client messages sent in this session, in order.
    sent: Vec<ClientMessage>,
}

impl Session {
    async fn send(&mut self, m: ClientMessage) -> Result<()> {
        let bytes = m.to_bytes()?;
        self.sent.push(m);
        self.ws
            .as_mut()
            .context("cut")?
            .send(Message::binary(bytes))
            .await?;
        Ok(())
    }

    /// Start -> Again -> Restart -> Success, then HELLO and AUTHENTICATE.
    async fn login(http: SocketAddr, nick: &str) -> Result<(Session, Vec<ServerMessage>)> {
        let mut ws = connect(http).await?;
        send_text(&mut ws, Content::Handshake(Handshake::start(1, None))).await?;
        let again = crate::bench::next_handshake(&mut ws).await?;
        ensure!(again.state() == HandshakeState::Again, "{again:?}");
        let key = again.session.context("Again without a key")?;
        send_text(
            &mut ws,
            Content::Handshake(Handshake::restart(2, key.clone(), 0, None)),
        )
        .await?;
        let ok = crate::bench::next_handshake(&mut ws).await?;
        ensure!(ok.state() == HandshakeState::Success, "{ok:?}");
        let mut s = Session {
            ws: Some(ws),
            key,
            received: 0,
            sent: Vec::new(),
        };
        s.send(ClientMessage::Hello { version: 2 }).await?;
        s.send(ClientMessage::Authenticate { nick: nick.into() })
            .await?;
        // Broadcasts may come before the ack; they belong to the span.
        let mut early = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ws = s.ws.as_mut().context("cut")?;
            let m = tokio::time::timeout(left, ws.next())
                .await
                .context("login timed out")?;
            match m {
                Some(Ok(Message::Binary(b))) => {
                    s.received += 1;
                    match ServerMessage::decode_exact(&b)? {
                        ServerMessage::Hello { .. } => {}
                        ServerMessage::AcknowledgeAuthentication { success: true } => {
                            return Ok((s, early));
                        }
                        ServerMessage::AcknowledgeAuthentication { success: false } => {
                            bail!("nick {nick} refused")
                        }
                        other => early.push(other),
                    }
                }
                Some(Ok(Message::Close(f))) => bail!("closed during login: {f:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("ended during login"),
            }
        }
    }

    /// Reconnects with the key: true when resumed (lost frames sent
    /// again), false on Again (the session is over).
    async fn resume(&mut self, http: SocketAddr) -> Result<bool> {
        let mut ws = connect(http).await?;
        send_text(
            &mut ws,
            Content::Handshake(Handshake::restart(3, self.key.clone(), self.received, None)),
        )
        .await?;
        let h = crate::bench::next_handshake(&mut ws).await?;
        match h.state() {
            HandshakeState::Success => {
                let r = h.received.context("Success without received")? as usize;
                ensure!(
                    r <= self.sent.len(),
                    "Success says {r} frames forwarded; {} were sent",
                    self.sent.len()
                );
                self.ws = Some(ws);
                for m in self.sent.split_off(r) {
                    self.send(m).await?;
                }
                Ok(true)
            }
            _ => {
                let _ = ws.close(None).await;
                Ok(false)
            }
        }
    }
}

/// Runs one client until the soak stops; returns its spans.
async fn client(i: usize, shared: Arc<Shared>) -> (Vec<Span>, Vec<String>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut spans = Vec::new();
    let mut errors = Vec::new();
    let mut last_seen: Option<u64> = None;
    let mut generation = 0u32;
    // Start spread over the first seconds.
    tokio::time::sleep(rng.ms(0, 3000)).await;
    while !shared.stop.load(Ordering::SeqCst) {
        let inc = shared.incarnation.load(Ordering::SeqCst);
        generation += 1;
        let nick = format!("s{i}g{generation}");
        let login = Session::login(shared.http, &nick).await;
        let (mut s, early_msgs) = match login {
            Ok(x) if shared.incarnation.load(Ordering::SeqCst) == inc => x,
            _ => {
                shared.counts.failed_logins.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(rng.ms(200, 1000)).await;
                continue;
            }
        };
        shared.counts.fresh.fetch_add(1, Ordering::Relaxed);
        shared.counts.live.fetch_add(1, Ordering::Relaxed);
        let mut span = Span {
            incarnation: inc,
            ..Span::default()
        };
        let mut pending_query = None;
        if let Some(last) = last_seen {
            span.catch_up = true;
            let q = HistoryQuery::NewerThan(dumdum_protocol::Snowflake(last));
            pending_query = Some(q);
            if s.send(q.request(CHANNEL)).await.is_err() {
                pending_query = None;
            }
        }
        for m in early_msgs {
            if let ServerMessage::SendMessage(c) = m {
                let list = if pending_query.is_some() {
                    &mut span.early
                } else {
                    &mut span.live
                };
                list.push(c.id.0);
            }
        }
        let r = run_session(&mut s, &mut span, &mut pending_query, &shared, &mut rng, i).await;
        shared.counts.live.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = r {
            errors.push(format!("client {i}: {e:#}"));
        }
        for id in span.page.iter().chain(&span.early).chain(&span.live) {
            last_seen = Some(last_seen.map_or(*id, |l| l.max(*id)));
        }
        spans.push(span);
    }
    (spans, errors)
}

/// One session's life; returns when it ends (Again, closed) or the soak stops.
async fn run_session(
    s: &mut Session,
    span: &mut Span,
    pending_query: &mut Option<HistoryQuery>,
    shared: &Shared,
    rng: &mut Rng,
    i: usize,
) -> Result<()> {
    let mut seq = 0u64;
    let now = tokio::time::Instant::now;
    let mut next_post = now() + rng.ms(2_000, 120_000);
    let mut next_cut = now() + rng.ms(5_000, 40_000);
    let mut next_slow = now() + rng.ms(10_000, 80_000);
    let mut page_buf: Vec<u64> = Vec::new();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            span.at_end = true;
            if let Some(ws) = s.ws.as_mut() {
                let _ = tokio::time::timeout(
                    Duration::from_secs(3),
                    ws.close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "soak done".into(),
                    })),
                )
                .await;
            }
            return Ok(());
        }
        let posting = shared.posting.load(Ordering::SeqCst);
        if posting && now() >= next_post {
            seq += 1;
            shared.counts.posts.fetch_add(1, Ordering::Relaxed);
            let m = ClientMessage::SendMessage {
                channel: CHANNEL.into(),
                content: format!("s{i} {seq}"),
            };
            // A failed write shows as a dropped WebSocket below.
            let _ = s.send(m).await;
            next_post = now() + rng.ms(20_000, 120_000);
        }
        if posting && now() >= next_slow {
            // A slow reader: nothing read for a while.
            shared.counts.slow.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(rng.ms(1_000, 4_000)).await;
            next_slow = now() + rng.ms(10_000, 80_000);
        }
        let cut = posting && now() >= next_cut;
        let mut dropped = false;
        if !cut {
            let Some(ws) = s.ws.as_mut() else {
                return Ok(());
            };
            let m = match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                Err(_) => continue,
                Ok(m) => m,
            };
            match m {
                Some(Ok(Message::Binary(b))) => {
                    s.received += 1;
                    match ServerMessage::decode_exact(&b).context("a frame from the bridge")? {
                        ServerMessage::SendMessage(c) => {
                            shared.counts.deliveries.fetch_add(1, Ordering::Relaxed);
                            let id = c.id.0;
                            if pending_query.is_some() {
                                span.early.push(id);
                            } else {
                                span.live.push(id);
                            }
                            let mut max = shared.max_id.lock().unwrap_or_else(|e| e.into_inner());
                            let e = max.entry(span.incarnation).or_insert(0);
                            *e = (*e).max(id);
                        }
                        ServerMessage::ListMessages(page) => {
                            let ids: Vec<u64> = page.iter().map(|m| m.id.0).collect();
                            page_buf.extend(&ids);
                            match pending_query.and_then(|q| q.next(&page)) {
                                Some(q) => {
                                    *pending_query = Some(q);
                                    s.send(q.request(CHANNEL)).await?;
                                }
                                None => {
                                    *pending_query = None;
                                    page_buf.sort_unstable();
                                    span.page.append(&mut page_buf);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    // The bridge ended the session (upstream closed...).
                    let code = f.as_ref().map_or(1005, |f| u16::from(f.code));
                    if code == 1001 {
                        dropped = true;
                    } else {
                        span.closed = true;
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => dropped = true,
            }
        }
        if cut || dropped {
            if cut {
                shared.counts.cuts.fetch_add(1, Ordering::Relaxed);
                // Drop the socket: no close frame.
                s.ws = None;
                // One cut in eight outlasts the grace: Again, a fresh session.
                let long = rng.below(8) == 0;
                tokio::time::sleep(if long {
                    Duration::from_millis(GRACE_S * 1000 + 1500)
                } else {
                    rng.ms(0, 1000)
                })
                .await;
                next_cut = now() + rng.ms(5_000, 40_000);
            }
            match s.resume(shared.http).await {
                Ok(true) => {
                    shared.counts.resumes.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {
                    shared.counts.agains.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                // The bridge is there; a failed resume is a session over.
                Err(_) => return Ok(()),
            }
        }
    }
}

/// The bridge's resident memory (KiB).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What the check found.
#[derive(Debug, Default)]
struct Verdict {
    messages: usize,
    expected_deliveries: usize,
    lost: Vec<String>,
    duplicated: Vec<String>,
    disordered: Vec<String>,
    lost_with_server: usize,
}

/// Checks every client's spans against every id seen, per server
/// incarnation.
fn check(clients: &[Vec<Span>], final_incarnation: u64) -> Verdict {
    let mut all: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for spans in clients {
        for s in spans {
            let set = all.entry(s.incarnation).or_default();
            set.extend(s.page.iter().chain(&s.early).chain(&s.live));
        }
    }
    let mut v = Verdict {
        messages: all.values().map(BTreeSet::len).sum(),
        ..Verdict::default()
    };
    for (c, spans) in clients.iter().enumerate() {
        let mut seen_in: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for (k, s) in spans.iter().enumerate() {
            let ids = &all[&s.incarnation];
            if !s.live.windows(2).all(|w| w[0] < w[1]) || !s.early.windows(2).all(|w| w[0] < w[1]) {
                v.disordered
                    .push(format!("client {c} span {k}: live ids out of order"));
            }
            // Observed once: the early live ids may also be in the page.
            let mut observed = BTreeSet::new();
            let seen = seen_in.entry(s.incarnation).or_default();
            let prev_last = seen.last().copied();
            for &id in s.page.iter().chain(&s.live) {
                if !observed.insert(id) || seen.contains(&id) {
                    v.duplicated
                        .push(format!("client {c} span {k}: id {id} twice"));
                }
            }
            for &id in &s.early {
                if seen.contains(&id) {
                    v.duplicated
                        .push(format!("client {c} span {k}: id {id} twice"));
                }
                observed.insert(id);
            }
            if let (Some(&first_live), Some(&max_before)) =
                (s.live.first(), s.early.iter().chain(&s.page).max())
                && first_live <= max_before
            {
                v.disordered.push(format!(
                    "client {c} span {k}: live id {first_live} after the catch-up reached {max_before}"
                ));
            }
            let Some(&last) = observed.last() else {
                continue;
            };
            let lower = match (s.catch_up, prev_last) {
                (true, Some(p)) => Some(p),
                (true, None) => None,
                (false, _) => observed.first().map(|f| f - 1),
            };
            // A session live at the end got everything of its incarnation.
            let upper = if s.at_end && s.incarnation == final_incarnation {
                ids.last().copied().unwrap_or(last)
            } else {
                last
            };
            for &id in ids.range(lower.map_or(0, |l| l + 1)..=upper) {
                v.expected_deliveries += 1;
                if !observed.contains(&id) {
                    v.lost
                        .push(format!("client {c} span {k}: id {id} never arrived"));
                }
            }
            seen.extend(observed);
        }
        // Ids of a killed server after the last one a client it closed
        // had got: the server died before writing them, and its history
        // died with it.
        for (k, s) in spans.iter().enumerate() {
            let last_in_incarnation = spans[k + 1..]
                .iter()
                .all(|later| later.incarnation != s.incarnation);
            if s.closed && last_in_incarnation && s.incarnation != final_incarnation {
                let last = s.page.iter().chain(&s.early).chain(&s.live).max();
                if let Some(&last) = last {
                    v.lost_with_server += all[&s.incarnation].range(last + 1..).count();
                }
            }
        }
    }
    v
}

pub(crate) fn soak(args: &[String]) -> Result<()> {
    let Some(opts) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let root = root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bridge_exe = match &opts.bridge {
        Some(p) => std::path::absolute(p)?,
        None => {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            crate::setup::run(Command::new(&cargo).current_dir(&root).args([
                "build",
                "--release",
                "-p",
                "dumdum-bridge",
            ]))
            .context("building the release bridge")?;
            target.join("release/dumdum-bridge")
        }
    };
    let server_exe = root.join(".venv/bin/dumdum-server");
    ensure!(
        server_exe.exists(),
        "the Python reference server is not installed at {}: run `cargo xtask setup`",
        server_exe.display()
    );
    let logs = target.join("soak");
    std::fs::create_dir_all(&logs)?;
    let py = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let start_server = |n: u64| {
        Proc::spawn(
            "dumdum-server",
            Command::new(&server_exe).args([
                "--host",
                "127.0.0.1",
                "--port",
                &py.port().to_string(),
                "-c",
                CHANNEL,
            ]),
            &logs.join(format!("dumdum-server-{n}.log")),
        )
    };
    let mut server = start_server(0)?;
    server.wait_for_port(py)?;
    let mut bridge = Proc::spawn(
        "dumdum-bridge",
        Command::new(&bridge_exe)
            .args(["--listen", &http.to_string()])
            .args(["--upstream", &format!("py={py}")])
            .args(["--max-sessions-per-ip", "100000"])
            .args(["--resume-grace", &format!("{GRACE_S}s")])
            .args(["--www", &target.join("www").display().to_string()])
            .env("RUST_LOG", "warn"),
        &logs.join("dumdum-bridge.log"),
    )?;
    bridge.wait_for_port(http)?;
    let pid = bridge.child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let shared = Arc::new(Shared {
        http,
        counts: Counts::default(),
        incarnation: AtomicU64::new(0),
        posting: AtomicBool::new(true),
        stop: AtomicBool::new(false),
        max_id: Mutex::new(BTreeMap::new()),
    });
    let baseline = rss_kib(pid).unwrap_or(0);
    println!(
        "soak: {} sessions for {:.1} min through {} to {} (resume grace {GRACE_S} s); bridge RSS at start {:.1} MiB",
        opts.sessions,
        opts.duration.as_secs_f64() / 60.0,
        bridge_exe.display(),
        server_exe.display(),
        baseline as f64 / 1024.0
    );
    let started = Instant::now();
    let handles: Vec<_> = (0..opts.sessions)
        .map(|i| rt.spawn(client(i, shared.clone())))
        .collect();
    let mut rng = Rng(0x5eed);
    let posting_until = opts.duration.saturating_sub(Duration::from_secs(8));
    let mut next_kill = Duration::from_secs(15 + rng.below(10));
    let mut next_report = Duration::from_secs(10);
    let mut peak = baseline;
    let report = |t: Duration, rss: u64| {
        let c = &shared.counts;
        println!(
            "soak {:>5.0} s: live {:>4}  posts {:>6}  deliveries {:>8}  resumes {:>5}  agains {:>4}  fresh {:>5}  cuts {:>5}  slow {:>4}  restarts {:>2}  bridge RSS {:.1} MiB",
            t.as_secs_f64(),
            c.live.load(Ordering::Relaxed),
            c.posts.load(Ordering::Relaxed),
            c.deliveries.load(Ordering::Relaxed),
            c.resumes.load(Ordering::Relaxed),
            c.agains.load(Ordering::Relaxed),
            c.fresh.load(Ordering::Relaxed),
            c.cuts.load(Ordering::Relaxed),
            c.slow.load(Ordering::Relaxed),
            c.restarts.load(Ordering::Relaxed),
            rss as f64 / 1024.0
        );
    };
    while started.elapsed() < opts.duration {
        std::thread::sleep(Duration::from_millis(100));
        let t = started.elapsed();
        if let Some(status) = bridge.exited() {
            shared.stop.store(true, Ordering::SeqCst);
            bail!("the bridge exited with {status} (log: {})", logs.display());
        }
        if t >= posting_until {
            shared.posting.store(false, Ordering::SeqCst);
        }
        if t >= next_kill && t < posting_until.saturating_sub(Duration::from_secs(5)) {
            // Kill the server; clients reconnect once it is back.
            shared.incarnation.fetch_add(1, Ordering::SeqCst);
            drop(server);
            std::thread::sleep(Duration::from_millis(500 + rng.below(1000)));
            let n = shared.counts.restarts.fetch_add(1, Ordering::SeqCst) + 1;
            server = start_server(n)?;
            server.wait_for_port(py)?;
            next_kill = t + Duration::from_secs(20 + rng.below(20));
        }
        if t >= next_report {
            let rss = rss_kib(pid).unwrap_or(0);
            peak = peak.max(rss);
            report(t, rss);
            next_report += Duration::from_secs(10);
        }
    }
    // Posting stopped 8 s ago: every live client has had time to get every
    // message; stop and collect.
    shared.stop.store(true, Ordering::SeqCst);
    let results = rt.block_on(async {
        let mut out = Vec::new();
        for h in handles {
            out.push(tokio::time::timeout(Duration::from_secs(30), h).await);
        }
        out
    });
    let mut clients = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(Ok((spans, errs))) => {
                clients.push(spans);
                errors.extend(errs);
            }
            Ok(Err(e)) => bail!("a soak client panicked: {e}"),
            Err(_) => bail!("a soak client did not stop within 30 s"),
        }
    }
    // Every session ended: RSS against the baseline.
    let settle = rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let body = http_get(http, "/metrics")
                .await
                .map(|r| r.1)
                .unwrap_or_default();
            let active = metric(&body, "dumdum_bridge_sessions_active").unwrap_or(-1.0);
            if active == 0.0 || tokio::time::Instant::now() >= deadline {
                return active;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let end_rss = rss_kib(pid).unwrap_or(0);
    report(started.elapsed(), end_rss);
    let v = check(&clients, shared.incarnation.load(Ordering::SeqCst));
    let c = &shared.counts;
    println!(
        "soak: {} messages, {} deliveries checked, {} resumes, {} agains (fresh sessions after them), {} server restarts; lost {}, duplicated {}, out of order {}; {} ids lost with a killed server before it wrote them",
        v.messages,
        v.expected_deliveries,
        c.resumes.load(Ordering::Relaxed),
        c.agains.load(Ordering::Relaxed),
        c.restarts.load(Ordering::Relaxed),
        v.lost.len(),
        v.duplicated.len(),
        v.disordered.len(),
        v.lost_with_server
    );
    println!(
        "soak: bridge RSS {:.1} MiB at start, {:.1} MiB peak, {:.1} MiB after every session ended ({:+.1} MiB; sessions still active: {settle})",
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0,
        end_rss as f64 / 1024.0,
        (end_rss as f64 - baseline as f64) / 1024.0
    );
    for e in errors.iter().take(5) {
        println!("soak: client error: {e}");
    }
    let problems: Vec<&String> = v
        .lost
        .iter()
        .chain(&v.duplicated)
        .chain(&v.disordered)
        .take(10)
        .collect();
    ensure!(
        problems.is_empty(),
        "the soak found lost, duplicated or disordered messages, for example:\n{}",
        problems
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    ensure!(v.messages > 0, "no message was broadcast");
    drop(bridge);
    drop(server);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(incarnation: u64, catch_up: bool, page: &[u64], early: &[u64], live: &[u64]) -> Span {
        Span {
            incarnation,
            catch_up,
            page: page.to_vec(),
            early: early.to_vec(),
            live: live.to_vec(),
            ..Span::default()
        }
    }

    #[test]
    fn a_whole_run_passes() {
        // Client 0 sees 1..=6 live; client 1 loses its session after 2,
        // catches up 3 and 4 (4 also arrived live before the page), then 5, 6.
        let clients = vec![
            vec![span(0, false, &[], &[], &[1, 2, 3, 4, 5, 6])],
            vec![
                span(0, false, &[], &[], &[1, 2]),
                span(0, true, &[3, 4], &[4], &[5, 6]),
            ],
        ];
        let v = check(&clients, 0);
        assert_eq!(v.messages, 6);
        assert_eq!(v.expected_deliveries, 12);
        assert!(
            v.lost.is_empty() && v.duplicated.is_empty() && v.disordered.is_empty(),
            "{v:?}"
        );
    }

    #[test]
    fn gaps_doubles_and_disorder_are_found() {
        let all = span(0, false, &[], &[], &[1, 2, 3, 4, 5, 6]);
        let lost = check(
            &[
                vec![all.clone()],
                vec![span(0, false, &[], &[], &[1, 2, 4])],
            ],
            0,
        );
        assert_eq!(lost.lost.len(), 1, "{lost:?}");
        // Caught up, but 3 is missing from the page.
        let gap = check(
            &[
                vec![all.clone()],
                vec![
                    span(0, false, &[], &[], &[1, 2]),
                    span(0, true, &[4], &[], &[5, 6]),
                ],
            ],
            0,
        );
        assert_eq!(gap.lost.len(), 1, "{gap:?}");
        // 2 live in the first session and again in the catch-up.
        let twice = check(
            &[
                vec![all.clone()],
                vec![
                    span(0, false, &[], &[], &[1, 2]),
                    span(0, true, &[2, 3], &[], &[4, 5, 6]),
                ],
            ],
            0,
        );
        assert_eq!(twice.duplicated.len(), 1, "{twice:?}");
        let disorder = check(
            &[
                vec![all.clone()],
                vec![span(0, false, &[], &[], &[1, 3, 2, 4])],
            ],
            0,
        );
        assert!(!disorder.disordered.is_empty(), "{disorder:?}");
        // A session live at the end gets everything of its incarnation.
        let mut tail = span(0, false, &[], &[], &[1, 2, 3]);
        tail.at_end = true;
        let short = check(&[vec![all], vec![tail]], 0);
        assert_eq!(short.lost.len(), 3, "{short:?}");
    }

    #[test]
    fn a_killed_servers_unwritten_ids_are_counted_apart() {
        let mut cut_off = span(0, false, &[], &[], &[1, 2]);
        cut_off.closed = true;
        let clients = vec![
            vec![
                span(0, false, &[], &[], &[1, 2, 3]),
                span(1, true, &[10], &[], &[11]),
            ],
            vec![cut_off, span(1, true, &[10], &[], &[11])],
        ];
        let v = check(&clients, 1);
        assert!(v.lost.is_empty(), "{v:?}");
        assert_eq!(v.lost_with_server, 1);
    }

    #[test]
    fn options() {
        let o = parse(&["--minutes".into(), "0.5".into()]).unwrap().unwrap();
        assert_eq!((o.duration, o.sessions), (Duration::from_secs(30), 500));
        assert!(parse(&["--help".into()]).unwrap().is_none());
        assert!(parse(&["--sessions".into(), "0".into()]).is_err());
        assert!(parse(&["--minutes".into(), "x".into()]).is_err());
    }
}
