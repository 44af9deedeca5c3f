//! Test support shared by the workspace's integration tests: the real
//! Python `dumdum-server` 0.5.0 and reference client as peers, self-signed
//! certificates (rcgen, and the `openssl` command line as operators use it:
//! [`openssl`]), free loopback ports.
//!
//! The Python package lives in a venv that `cargo xtask setup` (and so CI)
//! creates at `<workspace>/.venv`; set `DUMDUM_VENV` to use another. Tests
//! that need it fail with a clear message when it is missing: they are never
//! skipped silently.
//!
//! Every process started here is killed when its handle drops, and every wait
//! is bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod openssl;
pub mod proxy;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit is inside the workspace")
        .to_path_buf()
}

/// The venv holding `dum-dum-irc==0.5.0`.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("DUMDUM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    assert!(
        dir.join("bin/dumdum-server").exists(),
        "the Python reference server is not installed at {}: run `cargo xtask setup` \
         (it creates the venv with `pip install dum-dum-irc==0.5.0`), or set DUMDUM_VENV",
        dir.display()
    );
    dir
}

/// The venv's python.
pub fn python() -> PathBuf {
    venv().join("bin/python")
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A fresh temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates it.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dumdum-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for `localhost`/127.0.0.1, written to disk.
#[derive(Debug)]
pub struct TestCert {
    /// PEM of the certificate (also the CA to trust).
    pub cert_pem: String,
    /// PEM of the private key.
    pub key_pem: String,
    /// DER of the certificate.
    pub cert_der: Vec<u8>,
    /// Where `cert_pem` is written.
    pub cert_path: PathBuf,
    /// Where `key_pem` is written.
    pub key_path: PathBuf,
    _dir: TempDir,
}

impl TestCert {
    /// A new certificate valid for `localhost` and 127.0.0.1.
    pub fn localhost() -> Self {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(names).expect("rcgen");
        let dir = TempDir::new("cert");
        let cert_path = dir.path().join("dumdum.crt");
        let key_path = dir.path().join("dumdum.key");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
            cert_der: cert.der().to_vec(),
            cert_path,
            key_path,
            _dir: dir,
        }
    }
}

fn wait_for_port(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited early with {status}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The real `dumdum-server` 0.5.0 on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct DumdumServer {
    child: Option<Child>,
    addr: SocketAddr,
    args: Vec<String>,
}

impl DumdumServer {
    /// Starts a plain server with channels `general` and `random`.
    pub fn start() -> Self {
        Self::start_with(&["general", "random"], None)
    }

    /// Starts a server with these channels, with TLS when `cert` is given.
    pub fn start_with(channels: &[&str], cert: Option<&TestCert>) -> Self {
        let port = free_port();
        let mut args = vec![
            "--host".to_string(),
            "127.0.0.1".to_string(),
            "--port".to_string(),
            port.to_string(),
            "-c".to_string(),
        ];
        args.extend(channels.iter().map(|c| c.to_string()));
        if let Some(cert) = cert {
            args.push("--cert".into());
            args.push(format!(
                "{}:{}",
                cert.cert_path.display(),
                cert.key_path.display()
            ));
        }
        let mut server = DumdumServer {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            args,
        };
        server.restart();
        server
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills it (the port stays reserved for [`DumdumServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same address (after [`DumdumServer::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        let mut child = Command::new(venv().join("bin/dumdum-server"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dumdum-server");
        wait_for_port(self.addr, &mut child, "dumdum-server");
        self.child = Some(child);
    }
}

impl Drop for DumdumServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Python reference client (`dumdum.protocol.Client`) as a test peer,
/// driven by `testkit/peer.py`. Killed on drop.
#[derive(Debug)]
pub struct PyPeer {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    /// Every event received so far, in order.
    pub seen: Vec<Value>,
}

impl PyPeer {
    /// Connects to `addr` and authenticates as `nick`; with `ca`, trusts it
    /// for the in-band TLS upgrade the way the reference GUI client does
    /// (that file only, no hostname check). Returns once HELLO was answered (the
    /// authentication answer is an event: see [`PyPeer::expect_auth`]).
    pub fn connect(addr: SocketAddr, nick: &str, ca: Option<&Path>) -> Self {
        let script = workspace_root().join("testkit/peer.py");
        let mut cmd = Command::new(python());
        cmd.arg("-u")
            .arg(&script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg(nick);
        if let Some(ca) = ca {
            cmd.arg(ca);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn peer.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("peer.py: {line}"),
                }
            }
        });
        PyPeer {
            child,
            stdin,
            events,
            seen: Vec::new(),
        }
    }

    fn command(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").expect("write to peer.py");
        self.stdin.flush().expect("flush peer.py");
    }

    /// Waits (at most `timeout`) for an event matching `pred`; earlier
    /// events are kept in [`PyPeer::seen`]. Panics on timeout, naming what
    /// was seen.
    pub fn expect(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!("peer: no {what} within {timeout:?}; seen: {:?}", self.seen),
            }
        }
    }

    /// Waits for the authentication answer and returns whether it succeeded.
    pub fn expect_auth(&mut self) -> bool {
        let v = self.expect(Duration::from_secs(15), "auth answer", |v| {
            v["ev"] == "auth" || v["ev"] == "error" || v["ev"] == "closed"
        });
        self.seen.retain(|s| s != &v);
        v["ev"] == "auth" && v["success"] == true
    }

    /// Tries another nick after a refusal.
    pub fn auth(&mut self, nick: &str) {
        self.command(serde_json::json!({"op": "auth", "nick": nick}));
    }

    /// Posts a message.
    pub fn send(&mut self, channel: &str, content: &str) {
        self.command(serde_json::json!({"op": "send", "channel": channel, "content": content}));
    }

    /// Asks for a page of history with raw range fields.
    pub fn list_messages(&mut self, channel: &str, before: u64, after: u64) {
        self.command(serde_json::json!({
            "op": "list_messages", "channel": channel, "before": before, "after": after
        }));
    }

    /// Waits for a broadcast with this content; returns it.
    pub fn expect_message(&mut self, content: &str) -> Value {
        self.expect(
            Duration::from_secs(15),
            &format!("message {content:?}"),
            |v| v["ev"] == "message" && v["content"] == content,
        )
    }
}

impl Drop for PyPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` (Python source) with the venv's python, `stdin` as its
/// standard input, and returns its standard output. Panics, with its stderr,
/// when it fails or runs longer than `timeout` (it is killed then).
pub fn run_python(script: &str, stdin: &str, timeout: Duration) -> String {
    let mut cmd = Command::new(python());
    cmd.arg("-c").arg(script);
    let out = run_bounded(cmd, stdin, timeout, "python script");
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `cmd` with `stdin` as its standard input and returns its standard
/// output. Panics, with its stderr, when it cannot start, fails, or runs
/// longer than `timeout` (it is killed then); `what` names it.
pub fn run_bounded(mut cmd: Command, stdin: &str, timeout: Duration, what: &str) -> Vec<u8> {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    assert!(status.success(), "{what} failed ({status}):\n{stderr}");
    stdout
}
