//! Load balancers in front of bridges, as operators run them: Debian's
//! `haproxy` with `deploy/haproxy.cfg` and `nginx` with `deploy/nginx.conf`,
//! the very files checked in, each in the foreground on loopback; and
//! [`Daemon`], any long-running process whose output lines a test can wait
//! for and which it can signal (a bridge binary for a drain, say).
//!
//! Tests that need `haproxy` or `nginx` skip, saying why, when it is not
//! installed, unless [`REQUIRE_VAR`] is set (`cargo xtask test` installs
//! both and sets it): then a missing one fails the test. Every process
//! started here is killed when its handle drops; every wait is bounded.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{TempDir, free_port, workspace_root};

/// Set (to anything) to make the load-balancer tests fail instead of
/// skipping when `haproxy` or `nginx` is missing.
pub const REQUIRE_VAR: &str = "DUMDUM_REQUIRE_PROXIES";

/// Debian's paths of the two load balancers.
pub const HAPROXY: &str = "/usr/sbin/haproxy";
/// See [`HAPROXY`].
pub const NGINX: &str = "/usr/sbin/nginx";

/// Whether `test` can run: `program` (an absolute path) exists. When it
/// does not, panics if [`REQUIRE_VAR`] is set, else prints why the test is
/// skipped and returns false.
pub fn present_or_skip(program: &str, package: &str, test: &str) -> bool {
    if Path::new(program).exists() {
        return true;
    }
    if std::env::var_os(REQUIRE_VAR).is_some() {
        panic!(
            "{program} is missing; {REQUIRE_VAR} is set, so {test} must run: \
             `apt-get install {package}` (or `cargo xtask setup`)"
        );
    }
    eprintln!(
        "SKIPPED {test}: {program} is missing. Install it with `apt-get install {package}` \
         (`cargo xtask test` does, and sets {REQUIRE_VAR}=1 so this test cannot skip)."
    );
    false
}

/// A process started by a test: its standard output and error, line by
/// line, and signals. Killed (SIGKILL) on drop if still running.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far (both streams, in arrival order).
    pub seen: Vec<String>,
    what: String,
    exited: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `cmd` (its stdin null, stdout and stderr read here); `what`
    /// names it in messages.
    pub fn spawn(mut cmd: Command, what: &str) -> Daemon {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let (tx, lines) = mpsc::channel();
        let outputs: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for out in outputs {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if std::env::var_os("DUMDUM_SHOW_DAEMONS").is_some() {
                        eprintln!("{line}");
                    }
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Daemon {
            child,
            lines,
            seen: Vec::new(),
            what: what.to_string(),
            exited: None,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Moves lines that arrived into [`Daemon::seen`].
    pub fn collect(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Waits (at most `timeout`) for a line matching `pred` that arrives
    /// from now on, and returns it. Panics on timeout, with the output.
    pub fn wait_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.collect();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{}: no line for {what} within {timeout:?}; output:\n{}",
                    self.what,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Like [`Daemon::wait_line`], but also matches lines already seen.
    pub fn wait_line_seen(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.collect();
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        self.wait_line(what, timeout, pred)
    }

    /// Waits until `addr` accepts TCP connections. Panics if the process
    /// exits first or after `timeout`.
    pub fn wait_port(&mut self, addr: SocketAddr, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.collect();
                panic!(
                    "{} exited early with {status}; output:\n{}",
                    self.what,
                    self.seen.join("\n")
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {addr} within {timeout:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends `signal` (a name such as `TERM` or `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "kill -{signal} {pid} ({})",
            self.what
        );
    }

    /// Its exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Waits (at most `timeout`) for the process to exit by itself; panics
    /// (with its output) if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            if Instant::now() >= deadline {
                self.collect();
                panic!(
                    "{} did not exit within {timeout:?}; output:\n{}",
                    self.what,
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The environment variables `deploy/haproxy.cfg` and `deploy/nginx.conf`
/// take their addresses from: where the balancer listens, and the bridges
/// named `b1` and `b2`.
pub const LISTEN_VAR: &str = "DUMDUM_LISTEN";
/// See [`LISTEN_VAR`].
pub const NODE_VARS: [(&str, &str); 2] = [("b1", "DUMDUM_B1"), ("b2", "DUMDUM_B2")];

/// The environment variables that override `deploy/haproxy.cfg`'s
/// `timeout client`, `timeout server` and `timeout tunnel` (30s, 30s and
/// 90s when unset), in haproxy's time format (`2s`, `500ms`).
pub const HAPROXY_TIMEOUT_VARS: [&str; 3] = [
    "DUMDUM_TIMEOUT_CLIENT",
    "DUMDUM_TIMEOUT_SERVER",
    "DUMDUM_TIMEOUT_TUNNEL",
];

/// `haproxy -db -f deploy/haproxy.cfg` on 127.0.0.1:<free>, in front of the
/// bridges `b1` and `b2`. Killed on drop.
#[derive(Debug)]
pub struct Haproxy {
    /// Where browsers connect.
    pub addr: SocketAddr,
    /// The process (its log: requests, server state changes).
    pub daemon: Daemon,
}

impl Haproxy {
    /// The checked-in configuration.
    pub fn config_path() -> PathBuf {
        workspace_root().join("deploy/haproxy.cfg")
    }

    /// Starts it with `b1` and `b2` at these addresses; returns once it
    /// listens.
    pub fn start(b1: SocketAddr, b2: SocketAddr) -> Haproxy {
        Self::start_with(b1, b2, &[])
    }

    /// Like [`Haproxy::start`], with more environment variables for the
    /// configuration (such as [`HAPROXY_TIMEOUT_VARS`]).
    pub fn start_with(b1: SocketAddr, b2: SocketAddr, env: &[(&str, &str)]) -> Haproxy {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(HAPROXY);
        cmd.arg("-db")
            .arg("-f")
            .arg(Self::config_path())
            .env(LISTEN_VAR, addr.to_string())
            .env(NODE_VARS[0].1, b1.to_string())
            .env(NODE_VARS[1].1, b2.to_string())
            .envs(env.iter().copied());
        let mut daemon = Daemon::spawn(cmd, "haproxy");
        daemon.wait_port(addr, Duration::from_secs(30));
        Haproxy { addr, daemon }
    }

    /// Waits for haproxy to have logged (since it started) a state change
    /// of server `node` whose line contains `state` (e.g. "is DOWN", "is
    /// stopping", "is UP").
    pub fn wait_server_state(&mut self, node: &str, state: &str, timeout: Duration) -> String {
        let server = format!("Server bridges/{node} ");
        self.daemon
            .wait_line_seen(&format!("server {node} {state}"), timeout, |l: &str| {
                l.contains(&server) && l.contains(state)
            })
    }
}

/// `nginx` with `deploy/nginx.conf` (its `${...}` addresses substituted as
/// `envsubst` would) included in a minimal main configuration, in the
/// foreground on 127.0.0.1:<free>, its files in a temporary directory.
/// Killed on drop.
#[derive(Debug)]
pub struct Nginx {
    /// Where browsers connect.
    pub addr: SocketAddr,
    /// The master process (its error log is on stderr).
    pub daemon: Daemon,
    _dir: TempDir,
}

/// `text` with `${name}` replaced by its value for each pair (the
/// `envsubst '${A} ${B}'` of an operator).
pub fn substitute(text: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(text.to_string(), |t, (name, value)| {
        t.replace(&format!("${{{name}}}"), value)
    })
}

impl Nginx {
    /// The checked-in configuration.
    pub fn config_path() -> PathBuf {
        workspace_root().join("deploy/nginx.conf")
    }

    /// Starts it with `b1` and `b2` at these addresses; returns once it
    /// listens.
    pub fn start(b1: SocketAddr, b2: SocketAddr) -> Nginx {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dir = TempDir::new("nginx");
        let template = std::fs::read_to_string(Self::config_path()).expect("read nginx.conf");
        let site = substitute(
            &template,
            &[
                (LISTEN_VAR, addr.to_string()),
                (NODE_VARS[0].1, b1.to_string()),
                (NODE_VARS[1].1, b2.to_string()),
            ],
        );
        assert!(
            !site.contains("${DUMDUM_"),
            "nginx.conf uses a variable the test does not set"
        );
        let d = dir.path().display();
        std::fs::write(dir.path().join("dumdum.conf"), site).expect("write dumdum.conf");
        // One process (no master and workers), so that killing it on drop
        // leaves nothing behind. Root runs workers as `nobody` unless told
        // otherwise; they must reach the temporary files below.
        let user = if is_root() { "user root;\n" } else { "" };
        let main = format!(
            "{user}daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr notice;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log /dev/stdout;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/dumdum.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).expect("write nginx.conf");
        let mut cmd = Command::new(NGINX);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(dir.path().join("nginx.conf"));
        let mut daemon = Daemon::spawn(cmd, "nginx");
        daemon.wait_port(addr, Duration::from_secs(30));
        Nginx {
            addr,
            daemon,
            _dir: dir,
        }
    }
}

/// Whether this process runs as root (`id -u` says 0).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitute_replaces_only_named_variables() {
        let t = "listen ${DUMDUM_LISTEN};\nproxy_pass http://$dumdum_backend; ${OTHER}";
        assert_eq!(
            substitute(t, &[("DUMDUM_LISTEN", "127.0.0.1:80".into())]),
            "listen 127.0.0.1:80;\nproxy_pass http://$dumdum_backend; ${OTHER}"
        );
    }
}
