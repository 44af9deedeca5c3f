//! The bridge's log as an operator's file or log shipper sees it: the real
//! binary with standard output redirected to a pipe (not a terminal), one
//! session through it, then SIGTERM. Text logs carry no ANSI escape
//! sequences; `--log-format json` gives one JSON object per line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::WsClient;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// The bridge binary, killed on drop if it is still running.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dumdum-bridge"))
            .args(["--listen", "127.0.0.1:0", "--www", "/nonexistent"])
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dumdum-bridge");
        let (tx, lines) = mpsc::channel();
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
        Running { child, lines }
    }

    /// Lines until one matches `pred` (which is returned too).
    fn until(&self, what: &str, pred: impl Fn(&str) -> bool) -> (Vec<String>, String) {
        let deadline = std::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return (seen, line),
                Ok(line) => seen.push(line),
                Err(_) => panic!("no log line for {what} within {WAIT:?}; got {seen:#?}"),
            }
        }
    }

    /// SIGTERM, then every remaining line until the process exits.
    fn terminate(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if self.child.try_wait().expect("wait").is_some() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the bridge did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            rest.push(line);
        }
        rest
    }
}

/// The port of the bound address in a start-up line.
fn port_in(line: &str) -> u16 {
    let at = line.find("127.0.0.1:").expect("an address") + "127.0.0.1:".len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a port")
}

/// One session through the bridge: handshake, HELLO, login, a message.
async fn one_session(port: u16) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = WsClient::connect(&format!("ws://{addr}/ws"), None).await;
    c.handshake(None).await;
    c.login("logger").await;
    c.say("general", "hello log").await;
    c.expect_message("hello log").await;
    c.close(1000).await;
}

#[tokio::test]
async fn a_redirected_text_log_has_no_escape_sequences() {
    let bridge = Running::start(&[]);
    let (_, url) = bridge.until("the URL line", |l| l.contains("open http://"));
    one_session(port_in(&url)).await;
    let (before, ended) = bridge.until("the session's end", |l| l.contains("session ended"));
    let mut all = before;
    all.push(url);
    all.push(ended);
    all.extend(bridge.terminate());
    let text = all.join("\n");
    assert!(!text.contains('\x1b'), "escape sequences in:\n{text:?}");
    assert!(text.contains("session started"), "{text}");
    assert!(text.contains("bridge stopped"), "{text}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let bridge = Running::start(&["--log-format", "json"]);
    let (_, url) = bridge.until("the URL line", |l| l.contains("open the URL"));
    let url: Value = serde_json::from_str(&url).expect("the URL line is JSON");
    let shown = url["url"].as_str().expect("url field").to_string();
    one_session(port_in(&shown)).await;
    let (before, ended) = bridge.until("the session's end", |l| l.contains("session ended"));
    let mut all = before;
    all.push(ended);
    all.extend(bridge.terminate());
    let mut levels = 0;
    for line in &all {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(
            v["timestamp"].is_string() && v["message"].is_string(),
            "{line}"
        );
        levels += usize::from(v["level"].is_string());
    }
    assert_eq!(levels, all.len());
    let ended: Value = all
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("session ended"))
        })
        .expect("the session's end line");
    assert!(ended["client"].is_string(), "structured fields: {ended}");
}
