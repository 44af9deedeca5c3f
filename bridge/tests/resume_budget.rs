//! The global budget of held sessions (`--resume-memory`), on the real
//! binary so its resident memory can be read from /proc: 80 sessions are
//! held (their WebSockets closed with 1001), then another client posts
//! about 0.7 MB to their channel. Each held session would buffer all of it
//! (80 x 0.7 MB, about 56 MB); with `--resume-memory 8MiB` the bridge's RSS
//! grows by at most the budget plus a stated margin, the largest held
//! sessions end (their resume gets Again), the others resume, and
//! `dumdum_bridge_held_sessions_ended_total{reason="memory"}` counts exactly
//! the ones that ended.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::WsClient;
use dumdum_protocol::session::HandshakeState;

const WAIT: Duration = Duration::from_secs(30);
const HELD: usize = 80;
const MESSAGES: usize = 700;
const BUDGET: u64 = 8 << 20;
/// Above the budget: the embedded server's own history of what was posted
/// (0.7 MB), the poster's session, allocator slack and the runtime. Without
/// the budget the held sessions alone would take about 56 MB, so budget plus
/// margin (20 MiB) still tells the two apart on any machine.
const MARGIN: u64 = 12 << 20;

/// The bridge binary, killed on drop.
struct Running {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(args: &[&str]) -> (Running, SocketAddr) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dumdum-bridge"))
            .args(["--listen", "127.0.0.1:0", "--www", "/nonexistent"])
            .args(args)
            .env("RUST_LOG", "warn,dumdum_bridge=info")
            .env("NO_COLOR", "1")
            // The same runtime and allocator shape on every machine: glibc
            // keeps an arena per thread (up to 8 per core), and a CI machine
            // with many cores would otherwise count their slack as growth.
            .env("TOKIO_WORKER_THREADS", "2")
            .env("MALLOC_ARENA_MAX", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dumdum-bridge");
        let (tx, lines) = std::sync::mpsc::channel();
        for out in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let running = Running { child, lines };
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = running.lines.recv_timeout(left).expect("the start-up line");
            if let Some(at) = line.find("http://127.0.0.1:") {
                let port: String = line[at + "http://127.0.0.1:".len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let addr = SocketAddr::from(([127, 0, 0, 1], port.parse().expect("a port")));
                return (running, addr);
            }
        }
    }

    /// Resident set size in bytes.
    fn rss(&self) -> u64 {
        rss_of(self.child.id())
    }
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1u32 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_sessions_stay_within_the_resume_memory_budget() {
    let (bridge, addr) =
        Running::start(&["--resume-memory", "8MiB", "--max-sessions-per-ip", "1000"]);
    let url = format!("ws://{addr}/ws");

    // A warm-up round so the runtime's threads and buffers exist before
    // the baseline.
    let mut f = WsClient::connect(&url, None).await;
    f.handshake(None).await;
    f.login("flooder").await;
    let body = "x".repeat(1000);
    for i in 0..20 {
        f.say("random", &format!("warm {i} {body}")).await;
    }
    f.expect_message(&format!("warm 19 {body}")).await;

    let mut held = Vec::new();
    for i in 0..HELD {
        let mut c = WsClient::connect(&url, None).await;
        c.handshake(None).await;
        c.login(&format!("held{i}")).await;
        let key = c.key.clone().expect("a key");
        let received = c.received;
        c.close(1001).await;
        held.push((key, received));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = bridge.rss();
    assert!(baseline > 0, "RSS readable from /proc");

    // Watch the RSS while the flood goes on.
    let peak = Arc::new(AtomicU64::new(baseline));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (peak, watching) = (peak.clone(), watching.clone());
        let pid = bridge.child.id();
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let t = Instant::now();
    for i in 0..MESSAGES {
        f.say("general", &format!("{i} {body}")).await;
    }
    f.expect_message(&format!("{} {body}", MESSAGES - 1)).await;
    // Until the held sessions have taken every frame (the counters stop).
    let mut last = String::new();
    let deadline = Instant::now() + WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, _, m) = common::http_get(addr, "/metrics").await;
        let now = format!(
            "{} {}",
            metric(&m, "dumdum_bridge_frames_total{direction=\"to_client\"}"),
            metric(
                &m,
                "dumdum_bridge_held_sessions_ended_total{reason=\"memory\"}"
            )
        );
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    watching.store(false, Ordering::Relaxed);
    watcher.join().unwrap();
    let end = bridge.rss();
    let peak = peak.load(Ordering::Relaxed).max(end);
    let posted = MESSAGES * (body.len() + 8);
    println!(
        "{HELD} held sessions, {:.2} MiB posted in {:?}: RSS {:.1} MiB at the baseline, \
         {:.1} MiB at the peak (+{:.1} MiB), {:.1} MiB at the end; budget {:.0} MiB + margin {:.0} MiB",
        mib(posted as u64),
        t.elapsed(),
        mib(baseline),
        mib(peak),
        mib(peak.saturating_sub(baseline)),
        mib(end),
        mib(BUDGET),
        mib(MARGIN),
    );

    let (_, _, m) = common::http_get(addr, "/metrics").await;
    let ended = metric(
        &m,
        "dumdum_bridge_held_sessions_ended_total{reason=\"memory\"}",
    );
    let held_bytes = metric(&m, "dumdum_bridge_held_bytes");
    println!("ended for memory: {ended}; held bytes now: {held_bytes}");
    assert!(held_bytes <= BUDGET as f64, "held bytes {held_bytes}");
    assert!(
        peak.saturating_sub(baseline) <= BUDGET + MARGIN,
        "RSS grew by {:.1} MiB, more than the budget plus the margin",
        mib(peak.saturating_sub(baseline))
    );

    // Every held session either resumes or, if it was ended, gets Again.
    let (mut resumed, mut again) = (0, 0);
    for (key, received) in &held {
        let mut c = WsClient::connect(&url, None).await;
        match c.restart(key, *received).await.state() {
            HandshakeState::Success => resumed += 1,
            HandshakeState::Again => again += 1,
            other => panic!("unexpected answer to a resume: {other:?}"),
        }
        c.close(1000).await;
    }
    println!("{resumed} resumed, {again} got Again");
    assert!(again > 0 && resumed > 0, "{resumed} resumed, {again} Again");
    assert_eq!(
        ended,
        f64::from(again),
        "the metric counts exactly the held sessions ended for memory"
    );
    assert!(
        m.contains("dumdum_bridge_held_sessions_ended_total{reason=\"buffer\"} 0")
            || !m.contains("reason=\"buffer\"}"),
        "no held session ended for its own buffer: {m}"
    );
}
