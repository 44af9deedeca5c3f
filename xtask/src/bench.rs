//! `cargo xtask bench`: the end-to-end benchmark of the bridge against the
//! real servers, direct and through the bridge in the same run.
//!
//! It builds the release bridge and starts, on loopback with free ports:
//! the Python reference `dumdum-server` (from `.venv`) and
//! `target/release/dumdum-bridge` with that server as upstream `py` and its
//! embedded server exposed with `--embedded-listen` (offered as `local`).
//! Clients are tokio tasks in this process: a *direct* client speaks dumdum
//! v2 over TCP to a server; a *bridge* client opens `ws://…/ws` with the
//! subprotocol `dumdum.v2`, runs the session handshake, then the same
//! exchange in binary frames. Every socket has `TCP_NODELAY`. The
//! WebSocket client is [`crate::wsclient`]: it parses the bridge's frames
//! in place from its read buffer, as the direct client decodes dumdum, so
//! that the clients (which share the machine's cores with the bridge) cost
//! about the same on either path.
//!
//! - **Fan-out, closed loop**: N clients in one channel; each posts its next
//!   message only when its own copy has come back, and every client receives
//!   every message. Deliveries/s (messages received, summed over clients,
//!   per second of wall time) and the latency post → own copy back.
//! - **One-client round trip**: post → own copy back, p50 and p99.
//!
//! Three comparisons (cases): the Python server direct vs through the
//! bridge; the embedded server direct vs through the bridge; and, for
//! several bridges (issue 8), one bridge direct vs Debian's `haproxy` with
//! the checked-in `deploy/haproxy.cfg` in front of two more release bridges
//! (`--node b1`, `--node b2`, both relaying to the same Python server, so
//! that clients on either node share the channel). The "one bridge" path
//! is node `b1` itself. The haproxy case is skipped, saying so, when
//! `/usr/sbin/haproxy` is missing (unless `--server haproxy` asks for it).
//!
//! The two paths of a case alternate (A B A B …) so that a noisy neighbour
//! hurts both. Figures are printed, never asserted: the command fails only
//! on a functional failure (a message lost, a client not logged in, a
//! process that does not start).
//!
//! A dev build of xtask (what `cargo xtask` runs) re-runs itself from a
//! release build, so that the clients' own CPU cost (codec, WebSocket
//! framing) is that of optimised code, as in a browser or a native client.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use dumdum_protocol::session::{Content, Handshake, HandshakeState, SUBPROTOCOL};
use dumdum_protocol::{ClientMessage, Decode, Decoder, ServerMessage};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::setup::root;
use crate::wsclient::{Frame, WsClient};

/// The longest wait for any one message, connection or answer.
const WAIT: Duration = Duration::from_secs(20);
/// The channel every client posts to.
const CHANNEL: &str = "general";
/// Bytes of content per posted message (a short chat line).
const CONTENT_LEN: usize = 64;
/// What the direct client reads at once.
const READ_BUFFER: usize = 4096;
/// Set in the environment of the release build this command re-runs.
const INNER_ENV: &str = "DUMDUM_XTASK_BENCH_INNER";
/// Measured rounds per path for the Python server (and haproxy), whose
/// fan-out rounds last 0.5–2 s, and whose own CPU time swings from round
/// to round ...
const PY_ROUNDS: usize = 9;
/// ... and for the embedded server, whose rounds last about 0.1 s: more of
/// them, for a median that one scheduling hiccup does not move.
const EMBEDDED_ROUNDS: usize = 15;
/// Round-trip rounds per fan-out round, each of `--rtt-posts` posts (500):
/// short rounds, alternating often. How fast a wakeup crosses between this
/// machine's virtual CPUs drifts over seconds (the same path's round
/// medians range 20–200 µs), and with 15 rounds of 2000 posts one path
/// could land in more of the slow spells than the other: two runs read
/// +45 and +70 µs where 40 alternations of 500 posts, same builds, read
/// +0.3 and +2.3.
const RTT_ROUNDS_PER_ROUND: usize = 4;
/// The cases, as `--server` names them.
const CASES: [&str; 3] = ["python", "embedded", "haproxy"];
/// Debian's haproxy (`cargo xtask setup` installs it).
const HAPROXY: &str = "/usr/sbin/haproxy";
/// The nodes behind haproxy: their `--node` names, as `deploy/haproxy.cfg`
/// names its servers, and the variables it reads their addresses from.
const NODES: [(&str, &str); 2] = [("b1", "DUMDUM_B1"), ("b2", "DUMDUM_B2")];

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench [--rounds N] [--quick] [--rtt-posts N] [--client-threads N]
                         [--server python|embedded|haproxy] [--bridge PATH]

End to end, on loopback: the Python dumdum-server (.venv) and the release
dumdum-bridge (upstream `py` and its embedded server `local`); clients are
tokio tasks speaking dumdum over TCP (direct) or through the bridge's
WebSocket. Direct and bridge rounds alternate; medians, ranges and the ratio
bridge/direct are printed (never asserted). Then several bridges: haproxy
(deploy/haproxy.cfg) in front of two bridges b1 and b2 on the Python
server, against b1 alone, alternating likewise (skipped when
/usr/sbin/haproxy is missing).

  --rounds N          measured fan-out rounds per path and case (default 9;
                      15 for the embedded server, whose fan-out rounds last
                      about 0.1 s); round trips take 4 times as many rounds
  --quick             a smoke run: 1 round, 1/5 of the posts
  --rtt-posts N       posts per one-client round trip round (default 500)
  --client-threads N  tokio worker threads for the clients (default 1)
  --server NAME       only this case: `python`, `embedded` or `haproxy`
                      (default all three)
  --bridge PATH       run this dumdum-bridge binary instead of building
                      target/release/dumdum-bridge (to compare two builds)
  --help              this text

The bridges run with RUST_LOG=warn and inherit the rest of the environment
(e.g. TOKIO_WORKER_THREADS=2 cargo xtask bench: the bridges' worker threads,
as --threads would set them); logs go to target/bench/.";

/// Command-line options.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Opts {
    /// `--rounds`; `None`: each case's own default ([`Case::rounds`]).
    rounds: Option<usize>,
    quick: bool,
    rtt_posts: usize,
    client_threads: usize,
    /// Only this case (`python`, `embedded` or `haproxy`).
    server: Option<String>,
    /// A bridge binary to run instead of the release build.
    bridge: Option<PathBuf>,
    help: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            rounds: None,
            quick: false,
            rtt_posts: 500,
            client_threads: 1,
            server: None,
            bridge: None,
            help: false,
        }
    }
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts::default();
        let mut rounds = None;
        let mut rtt = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut num = |name: &str| -> Result<usize> {
                let v = it
                    .next()
                    .with_context(|| format!("{name} needs a number"))?;
                let n: usize = v
                    .parse()
                    .with_context(|| format!("{name} {v}: not a number"))?;
                ensure!(n > 0, "{name} must be at least 1");
                Ok(n)
            };
            match a.as_str() {
                "--rounds" => rounds = Some(num("--rounds")?),
                "--rtt-posts" => rtt = Some(num("--rtt-posts")?),
                "--client-threads" => o.client_threads = num("--client-threads")?,
                "--quick" => o.quick = true,
                "--bridge" => {
                    let v = it.next().context("--bridge needs a path")?;
                    o.bridge = Some(PathBuf::from(v));
                }
                "--server" => {
                    let v = it
                        .next()
                        .context("--server needs `python`, `embedded` or `haproxy`")?;
                    ensure!(
                        CASES.contains(&v.as_str()),
                        "--server {v}: expected `python`, `embedded` or `haproxy`"
                    );
                    o.server = Some(v.clone());
                }
                "--help" | "-h" => o.help = true,
                other => bail!("unknown option `{other}`\n\n{USAGE}"),
            }
        }
        o.rounds = rounds.or(o.quick.then_some(1));
        o.rtt_posts = rtt.unwrap_or(if o.quick { 100 } else { o.rtt_posts });
        Ok(o)
    }

    /// Measured rounds per path of `case`.
    fn rounds(&self, case: &Case) -> usize {
        self.rounds.unwrap_or(case.rounds)
    }

    /// Measured round-trip rounds per path of `case`.
    fn rtt_rounds(&self, case: &Case) -> usize {
        self.rounds(case) * RTT_ROUNDS_PER_ROUND
    }

    /// Whether `case` runs (`--server` picks one).
    fn runs(&self, case: &str) -> bool {
        self.server.as_deref().is_none_or(|only| only == case)
    }

    /// The fan-out sizes: (clients, posts per client).
    fn sizes(&self) -> [(usize, usize); 2] {
        if self.quick {
            [(10, 40), (50, 8)]
        } else {
            [(10, 200), (50, 40)]
        }
    }
}

pub(crate) fn bench(args: &[String]) -> Result<()> {
    let opts = Opts::parse(args)?;
    if opts.help {
        println!("{USAGE}");
        return Ok(());
    }
    let root = root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let inner = std::env::var_os(INNER_ENV).is_some();
    if !inner {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(&cargo);
        build.current_dir(&root).args(["build", "--release"]);
        if opts.bridge.is_none() {
            build.args(["-p", "dumdum-bridge"]);
        }
        if cfg!(debug_assertions) {
            build.args(["-p", "xtask"]);
        }
        if opts.bridge.is_none() || cfg!(debug_assertions) {
            crate::setup::run(&mut build).context("building the release bridge")?;
        }
        if cfg!(debug_assertions) {
            // Re-run from the release build (see the module's docs).
            let exe = target.join("release/xtask");
            let status = Command::new(&exe)
                .arg("bench")
                .args(args)
                .env(INNER_ENV, "1")
                .status()
                .with_context(|| format!("starting {}", exe.display()))?;
            ensure!(status.success(), "the bench failed ({status})");
            return Ok(());
        }
    }
    let bridge_exe = match &opts.bridge {
        Some(p) => std::path::absolute(p).with_context(|| format!("--bridge {}", p.display()))?,
        None => target.join("release/dumdum-bridge"),
    };
    ensure!(
        bridge_exe.exists(),
        "{} is missing (`cargo build --release -p dumdum-bridge`)",
        bridge_exe.display()
    );
    let venv = std::env::var_os("DUMDUM_VENV").map_or_else(|| root.join(".venv"), PathBuf::from);
    let server_exe = venv.join("bin/dumdum-server");
    ensure!(
        server_exe.exists(),
        "the Python reference server is not installed at {}: run `cargo xtask setup`",
        server_exe.display()
    );
    let logs = target.join("bench");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;

    let py_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let embedded = SocketAddr::from(([127, 0, 0, 1], free_port()?));

    let server_args: Vec<String> = vec![
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        py_addr.port().to_string(),
        "-c".into(),
        CHANNEL.into(),
    ];
    let mut server = Proc::spawn(
        "dumdum-server",
        Command::new(&server_exe).args(&server_args),
        &logs.join("dumdum-server.log"),
    )?;
    let bridge_args: Vec<String> = vec![
        "--listen".into(),
        http.to_string(),
        "--upstream".into(),
        format!("py={py_addr}"),
        "--embedded-listen".into(),
        embedded.to_string(),
        "--max-sessions-per-ip".into(),
        "100000".into(),
        "--www".into(),
        target.join("www").display().to_string(),
    ];
    let mut bridge = Proc::spawn(
        "dumdum-bridge",
        Command::new(&bridge_exe)
            .args(&bridge_args)
            .env("RUST_LOG", "warn"),
        &logs.join("dumdum-bridge.log"),
    )?;
    server.wait_for_port(py_addr)?;
    bridge.wait_for_port(http)?;
    bridge.wait_for_port(embedded)?;

    // Several bridges: b1 and b2 on the same Python server, haproxy in front.
    let with_lb = opts.runs("haproxy") && {
        let present = Path::new(HAPROXY).exists();
        ensure!(
            present || opts.server.is_none(),
            "--server haproxy: {HAPROXY} is missing (`cargo xtask setup` installs it)"
        );
        if !present {
            eprintln!(
                "SKIPPING the haproxy case: {HAPROXY} is missing (`cargo xtask setup` installs it)"
            );
        }
        present
    };
    let mut lb_procs = Vec::new();
    let mut lb = None;
    let mut lb_lines = Vec::new();
    if with_lb {
        let mut nodes = Vec::new();
        for (name, _) in NODES {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let args: Vec<String> = vec![
                "--listen".into(),
                addr.to_string(),
                "--node".into(),
                name.into(),
                "--trusted-proxy".into(),
                "127.0.0.1/32".into(),
                "--upstream".into(),
                format!("py={py_addr}"),
                "--max-sessions-per-ip".into(),
                "100000".into(),
                "--www".into(),
                target.join("www").display().to_string(),
            ];
            lb_lines.push(format!(
                "node {name}: {} {} (RUST_LOG=warn)",
                rel(&root, &bridge_exe),
                args.join(" ")
            ));
            let mut p = Proc::spawn(
                name,
                Command::new(&bridge_exe)
                    .args(&args)
                    .env("RUST_LOG", "warn"),
                &logs.join(format!("dumdum-bridge-{name}.log")),
            )?;
            p.wait_for_port(addr)?;
            nodes.push(addr);
            lb_procs.push(p);
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let cfg = root.join("deploy/haproxy.cfg");
        let mut cmd = Command::new(HAPROXY);
        cmd.arg("-db")
            .arg("-f")
            .arg(&cfg)
            .env("DUMDUM_LISTEN", addr.to_string());
        for ((_, var), node) in NODES.iter().zip(&nodes) {
            cmd.env(var, node.to_string());
        }
        let version = Command::new(HAPROXY)
            .arg("-v")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_default();
        lb_lines.push(format!(
            "haproxy: {HAPROXY} -db -f {} ({version}), DUMDUM_LISTEN={addr}",
            rel(&root, &cfg)
        ));
        let mut p = Proc::spawn("haproxy", &mut cmd, &logs.join("haproxy.log"))?;
        p.wait_for_port(addr)?;
        lb_procs.push(p);
        lb = Some(Lb {
            haproxy: addr,
            nodes: [nodes[0], nodes[1]],
        });
    }

    let version = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('dum-dum-irc'))",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut bridges = vec![bridge.child.id()];
    bridges.extend(
        lb_procs
            .iter()
            .filter(|p| p.name != "haproxy")
            .map(|p| p.child.id()),
    );
    let haproxy_pid: Vec<u32> = lb_procs
        .iter()
        .filter(|p| p.name == "haproxy")
        .map(|p| p.child.id())
        .collect();
    let env = Env {
        py: py_addr,
        http,
        embedded,
        lb,
        pids: [
            bridges,
            vec![server.child.id()],
            haproxy_pid,
            vec![std::process::id()],
        ],
    };
    let mut header = String::new();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let _ = writeln!(
        header,
        "command: cargo xtask bench{}{}",
        if args.is_empty() { "" } else { " " },
        args.join(" ")
    );
    let _ = writeln!(
        header,
        "machine: {cpus} CPUs; clients: tokio tasks on {} worker thread(s), TCP_NODELAY everywhere",
        opts.client_threads
    );
    let _ = writeln!(
        header,
        "python:  {} {} (dum-dum-irc {version})",
        rel(&root, &server_exe),
        server_args.join(" ")
    );
    let _ = writeln!(
        header,
        "bridge:  {} {} (RUST_LOG=warn)",
        rel(&root, &bridge_exe),
        bridge_args.join(" ")
    );
    for l in &lb_lines {
        let _ = writeln!(header, "{l}");
    }
    let _ = writeln!(
        header,
        "rounds:  {} per path and case, the two paths of a case alternating; content {CONTENT_LEN} bytes",
        opts.rounds.map_or_else(
            || format!("{PY_ROUNDS} (embedded: {EMBEDDED_ROUNDS})"),
            |n| n.to_string()
        )
    );

    let rt = if opts.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.client_threads)
            .enable_all()
            .build()
    }
    .context("starting the tokio runtime")?;
    let result = rt.block_on(async {
        tokio::select! {
            r = run(&env, &opts, header) => r,
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for Ctrl-C")?;
                bail!("interrupted")
            }
        }
    });
    drop(rt);
    // Functional failures may come from a process that died: say so.
    for p in [&mut bridge, &mut server]
        .into_iter()
        .chain(lb_procs.iter_mut())
    {
        if let Some(status) = p.exited() {
            eprintln!(
                "{} exited with {status} during the bench (log: {})",
                p.name,
                p.log.display()
            );
        }
    }
    result
}

/// Where everything listens.
struct Env {
    py: SocketAddr,
    http: SocketAddr,
    embedded: SocketAddr,
    /// haproxy and its two nodes, when the haproxy case runs.
    lb: Option<Lb>,
    /// Processes whose CPU time is measured, by column: the bridges, the
    /// Python server, haproxy, this one (the clients).
    pids: [Vec<u32>; 4],
}

/// haproxy in front of two bridge nodes.
#[derive(Debug, Clone, Copy)]
struct Lb {
    haproxy: SocketAddr,
    /// b1 and b2 (HTTP).
    nodes: [SocketAddr; 2],
}

/// How a client reaches a server: dumdum over TCP, or a bridge's
/// WebSocket (straight or through haproxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Tcp,
    Ws,
}

/// One of the two paths a case compares.
#[derive(Debug, Clone, Copy)]
struct Route {
    name: &'static str,
    via: Via,
    /// The server's TCP address, or the bridge's (or haproxy's) HTTP one.
    addr: SocketAddr,
}

impl Route {
    fn name(self) -> &'static str {
        self.name
    }
}

/// A comparison: one server reached two ways (A, then B).
#[derive(Debug, Clone)]
struct Case {
    label: &'static str,
    /// The server's name at the bridge.
    name: &'static str,
    routes: [Route; 2],
    /// The bridges whose sessions must all have ended between rounds.
    bridges: Vec<SocketAddr>,
    /// What issue 11 expects of B/A (fan-out, by clients) and of B - A
    /// (round trip); `None`: no target, the figure is shown.
    expect_fan: fn(usize) -> Option<&'static str>,
    expect_rtt: Option<&'static str>,
    /// Measured rounds per path unless `--rounds` says.
    rounds: usize,
}

async fn run(env: &Env, opts: &Opts, header: String) -> Result<()> {
    check_servers(env.http, &["py", "local"]).await?;
    let direct = |addr| Route {
        name: "direct",
        via: Via::Tcp,
        addr,
    };
    let bridge = Route {
        name: "bridge",
        via: Via::Ws,
        addr: env.http,
    };
    let mut cases = vec![
        Case {
            label: "python",
            name: "py",
            routes: [direct(env.py), bridge],
            bridges: vec![env.http],
            expect_fan: |_| Some("≥ 0.9"),
            expect_rtt: None,
            rounds: PY_ROUNDS,
        },
        Case {
            label: "embedded",
            name: "local",
            routes: [direct(env.embedded), bridge],
            bridges: vec![env.http],
            expect_fan: |clients| Some(if clients == 10 { "≥ 0.8" } else { "≥ 0.7" }),
            expect_rtt: Some("≤ 50 µs"),
            rounds: EMBEDDED_ROUNDS,
        },
    ];
    if let Some(lb) = env.lb {
        for node in lb.nodes {
            check_servers(node, &["py"]).await?;
        }
        cases.push(Case {
            label: "haproxy",
            name: "py",
            routes: [
                Route {
                    name: "1 bridge",
                    via: Via::Ws,
                    addr: lb.nodes[0],
                },
                Route {
                    name: "haproxy",
                    via: Via::Ws,
                    addr: lb.haproxy,
                },
            ],
            bridges: lb.nodes.to_vec(),
            expect_fan: |_| None,
            expect_rtt: None,
            rounds: PY_ROUNDS,
        });
    }
    let cases: Vec<Case> = cases.into_iter().filter(|c| opts.runs(c.label)).collect();
    let mut ctx = Ctx {
        run: std::process::id() % 100_000,
        round: 0,
        pids: env.pids.clone(),
        nodes: BTreeMap::new(),
    };
    // Warm-up (connections, allocators, caches), not reported.
    for s in &cases {
        for p in s.routes {
            eprintln!("warm-up: {} via {}", s.label, p.name());
            fanout_round(&mut ctx, s, p, 10, 10).await?;
            rtt_round(&mut ctx, s, p, 50).await?;
        }
    }
    let mut fan = Vec::new();
    let mut rtt = Vec::new();
    for s in &cases {
        let rounds = opts.rounds(s);
        for (clients, posts) in opts.sizes() {
            let mut rows = [Vec::new(), Vec::new()];
            for r in 0..rounds {
                for (i, p) in s.routes.into_iter().enumerate() {
                    eprintln!(
                        "fan-out {} {clients}x{posts} via {}, round {}/{}",
                        s.label,
                        p.name(),
                        r + 1,
                        rounds
                    );
                    rows[i].push(fanout_round(&mut ctx, s, p, clients, posts).await?);
                }
            }
            fan.push((s.clone(), clients, posts, rows));
        }
        let mut rows = [Vec::new(), Vec::new()];
        let rtt_rounds = opts.rtt_rounds(s);
        for r in 0..rtt_rounds {
            for (i, p) in s.routes.into_iter().enumerate() {
                eprintln!(
                    "round trip {} via {}, round {}/{}",
                    s.label,
                    p.name(),
                    r + 1,
                    rtt_rounds
                );
                rows[i].push(rtt_round(&mut ctx, s, p, opts.rtt_posts).await?);
            }
        }
        rtt.push((s.clone(), rows));
    }
    let mut spread = String::new();
    if !ctx.nodes.is_empty() {
        let per: Vec<String> = ctx.nodes.iter().map(|(n, c)| format!("{n} {c}")).collect();
        let _ = writeln!(
            spread,
            "Sessions per node through haproxy (all rounds, warm-up included): {}",
            per.join(", ")
        );
    }
    println!("{}{spread}", report(&header, opts, &fan, &rtt));
    Ok(())
}

/// State shared by the rounds: unique nicks and content tags.
struct Ctx {
    run: u32,
    round: u32,
    pids: [Vec<u32>; 4],
    /// Sessions through haproxy, by the node that named itself.
    nodes: BTreeMap<String, usize>,
}

impl Ctx {
    /// A tag no earlier round used (nicks and content carry it).
    fn next_tag(&mut self) -> String {
        self.round += 1;
        format!("b{}r{}", self.run, self.round)
    }

    /// Counts a session through haproxy on the node it landed on.
    fn count_node(&mut self, node: &Option<String>, path: Route) {
        if path.name == "haproxy" {
            let node = node.clone().unwrap_or_else(|| "(no node)".into());
            *self.nodes.entry(node).or_default() += 1;
        }
    }

    /// CPU time so far of the bridges, the Python server, haproxy and the
    /// clients (`None` for a column without a process).
    fn cpu(&self) -> [Option<u64>; 4] {
        std::array::from_fn(|i| {
            let pids = &self.pids[i];
            if pids.is_empty() {
                return None;
            }
            pids.iter().map(|&p| cpu_ns(p)).sum()
        })
    }
}

/// CPU time between two [`Ctx::cpu`] readings, in µs per `per` (a delivery
/// or a post): the bridges, the Python server, haproxy, the clients.
fn cpu_per(before: [Option<u64>; 4], after: [Option<u64>; 4], per: usize) -> [Option<f64>; 4] {
    std::array::from_fn(|i| match (before[i], after[i]) {
        (Some(b), Some(a)) if per > 0 => Some(a.saturating_sub(b) as f64 / 1000.0 / per as f64),
        _ => None,
    })
}

/// On-CPU time of every thread of `pid` so far, in ns (Linux
/// `/proc/PID/task/*/schedstat`); `None` where that is not available.
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = 0u64;
    for t in tasks.flatten() {
        // A thread that just exited is skipped.
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat"))
            && let Some(ns) = s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        {
            sum += ns;
        }
    }
    Some(sum)
}

/// The bridge at `http` offers these servers.
async fn check_servers(http: SocketAddr, names: &[&str]) -> Result<()> {
    let (status, body) = http_get(http, "/api/servers").await?;
    ensure!(
        status == 200,
        "GET /api/servers at {http} answered {status}"
    );
    for name in names {
        ensure!(
            body.contains(&format!("\"{name}\"")),
            "the bridge at {http} does not offer {name:?}: /api/servers = {body}"
        );
    }
    Ok(())
}

/// Figures of one fan-out round.
#[derive(Debug, Clone, Copy)]
struct FanRound {
    deliveries_per_s: f64,
    p50: Duration,
    p99: Duration,
    /// CPU µs per delivery: the bridges, the Python server, haproxy, the clients.
    cpu: [Option<f64>; 4],
}

/// Figures of one round-trip round.
#[derive(Debug, Clone, Copy)]
struct RttRound {
    p50: Duration,
    p99: Duration,
    /// CPU µs per post: the bridges, the Python server, haproxy, the clients.
    cpu: [Option<f64>; 4],
}

async fn fanout_round(
    ctx: &mut Ctx,
    server: &Case,
    path: Route,
    clients: usize,
    posts: usize,
) -> Result<FanRound> {
    let tag = ctx.next_tag();
    let name = server.name;
    // Everyone logs in before the clock starts.
    let mut logins = Vec::with_capacity(clients);
    for i in 0..clients {
        let nick = format!("{tag}c{i}");
        logins.push(tokio::spawn(async move {
            Conn::login(name, path, &nick).await.map(|c| (c, nick))
        }));
    }
    let mut conns = Vec::with_capacity(clients);
    for (i, l) in logins.into_iter().enumerate() {
        let (c, nick) = l
            .await
            .context("login task")?
            .with_context(|| format!("client {i} of {clients} did not log in"))?;
        ctx.count_node(&c.0, path);
        conns.push((c.1, nick));
    }
    let total = clients * posts;
    let cpu0 = ctx.cpu();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for (i, (conn, nick)) in conns.into_iter().enumerate() {
        let prefix = format!("{tag}:");
        let me = format!("{prefix}{i}.");
        tasks.push(tokio::spawn(fanout_client(
            conn, nick, prefix, me, posts, total,
        )));
    }
    let mut lat = Vec::with_capacity(total);
    let mut conns = Vec::with_capacity(clients);
    for (i, t) in tasks.into_iter().enumerate() {
        let (conn, l) = t
            .await
            .context("client task")?
            .with_context(|| format!("{} via {}: client {i}", server.label, path.name()))?;
        lat.extend(l);
        conns.push(conn);
    }
    let wall = start.elapsed();
    let cpu = cpu_per(cpu0, ctx.cpu(), total * clients);
    for c in conns {
        c.close().await;
    }
    settle(&server.bridges).await?;
    lat.sort_unstable();
    Ok(FanRound {
        deliveries_per_s: (total * clients) as f64 / wall.as_secs_f64(),
        p50: percentile(&lat, 50.0).unwrap_or_default(),
        p99: percentile(&lat, 99.0).unwrap_or_default(),
        cpu,
    })
}

/// One client of a fan-out round: posts, each after its previous one came
/// back, and reads until it has received all `total` messages.
async fn fanout_client(
    mut conn: Conn,
    nick: String,
    prefix: String,
    me: String,
    posts: usize,
    total: usize,
) -> Result<(Conn, Vec<Duration>)> {
    let mut lat = Vec::with_capacity(posts);
    let mut sent = 0;
    let mut got = 0;
    let mut pending = Some((content(&me, 0), Instant::now()));
    if let Some((c, t)) = &mut pending {
        *t = Instant::now();
        conn.post(c).await?;
        sent = 1;
    }
    while got < total || pending.is_some() {
        let msg = tokio::time::timeout(WAIT, conn.recv())
            .await
            .with_context(|| {
                format!(
                    "nothing for {} s: received {got} of {total} messages, {} of {posts} own copies (messages lost?)",
                    WAIT.as_secs(),
                    lat.len()
                )
            })??;
        let ServerMessage::SendMessage(m) = msg else {
            continue;
        };
        if !m.content.starts_with(&prefix) {
            continue;
        }
        got += 1;
        ensure!(
            got <= total,
            "received more than the {total} messages posted"
        );
        if let Some((c, t)) = &pending
            && m.nick == nick
            && m.content == *c
        {
            lat.push(t.elapsed());
            pending = None;
            if sent < posts {
                let c = content(&me, sent);
                let t = Instant::now();
                conn.post(&c).await?;
                pending = Some((c, t));
                sent += 1;
            }
        }
    }
    ensure!(
        lat.len() == posts,
        "{} of {posts} own copies came back",
        lat.len()
    );
    Ok((conn, lat))
}

async fn rtt_round(ctx: &mut Ctx, server: &Case, path: Route, posts: usize) -> Result<RttRound> {
    let tag = ctx.next_tag();
    let nick = format!("{tag}c0");
    let (node, mut conn) = Conn::login(server.name, path, &nick)
        .await
        .with_context(|| format!("{} via {}: login", server.label, path.name()))?;
    ctx.count_node(&node, path);
    let me = format!("{tag}:0.");
    let mut lat = Vec::with_capacity(posts);
    let cpu0 = ctx.cpu();
    for seq in 0..posts {
        let c = content(&me, seq);
        let t = Instant::now();
        conn.post(&c).await?;
        loop {
            let msg = tokio::time::timeout(WAIT, conn.recv())
                .await
                .with_context(|| format!("post {seq} did not come back (lost?)"))??;
            if let ServerMessage::SendMessage(m) = msg
                && m.nick == nick
                && m.content == c
            {
                break;
            }
        }
        lat.push(t.elapsed());
    }
    let cpu = cpu_per(cpu0, ctx.cpu(), posts);
    conn.close().await;
    settle(&server.bridges).await?;
    lat.sort_unstable();
    Ok(RttRound {
        p50: percentile(&lat, 50.0).unwrap_or_default(),
        p99: percentile(&lat, 99.0).unwrap_or_default(),
        cpu,
    })
}

/// Message `seq` of a client: its unique prefix, then padding.
fn content(me: &str, seq: usize) -> String {
    let mut c = format!("{me}{seq} ");
    while c.len() < CONTENT_LEN {
        c.push('x');
    }
    c
}

/// Waits until the bridges have ended every session of the round (their
/// upstream connections are gone), so rounds do not overlap.
async fn settle(bridges: &[SocketAddr]) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    for &http in bridges {
        loop {
            let (_, body) = http_get(http, "/metrics").await?;
            let active = metric(&body, "dumdum_bridge_sessions_active").unwrap_or(0.0);
            if active == 0.0 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the bridge at {http} still has {active} sessions {} s after the round",
                WAIT.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Servers notice closed connections within a loop turn or two.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// The value of an unlabelled Prometheus metric.
pub(crate) fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// A logged-in client, direct or through the bridge.
enum Conn {
    Tcp {
        stream: TcpStream,
        decoder: Box<Decoder<ServerMessage>>,
    },
    Ws(Box<WsClient>),
}

impl Conn {
    /// Connects and logs in as `nick`: HELLO, HELLO (no TLS), AUTHENTICATE,
    /// ACK(1). Through a bridge the session handshake for server `name`
    /// comes first. Returns the node the bridge named, if any, and the
    /// connection.
    async fn login(name: &str, path: Route, nick: &str) -> Result<(Option<String>, Conn)> {
        let target = path.addr;
        let tcp = tokio::time::timeout(WAIT, TcpStream::connect(target))
            .await
            .with_context(|| format!("connecting to {target} timed out"))?
            .with_context(|| format!("connecting to {target}"))?;
        tcp.set_nodelay(true).context("TCP_NODELAY")?;
        let (node, mut conn) = match path.via {
            Via::Tcp => (
                None,
                Conn::Tcp {
                    stream: tcp,
                    decoder: Box::default(),
                },
            ),
            Via::Ws => {
                let (ws, node) = ws_session(tcp, target, name).await?;
                (node, Conn::Ws(Box::new(ws)))
            }
        };
        let step = async {
            conn.send(&ClientMessage::Hello { version: 2 }).await?;
            match conn.recv().await? {
                ServerMessage::Hello { tls: false } => {}
                other => bail!("expected HELLO without TLS, got {other:?}"),
            }
            conn.send(&ClientMessage::Authenticate { nick: nick.into() })
                .await?;
            match conn.recv().await? {
                ServerMessage::AcknowledgeAuthentication { success: true } => Ok(()),
                other => bail!("AUTHENTICATE {nick:?} answered {other:?}"),
            }
        };
        tokio::time::timeout(WAIT, step)
            .await
            .context("logging in timed out")??;
        Ok((node, conn))
    }

    async fn post(&mut self, content: &str) -> Result<()> {
        self.send(&ClientMessage::SendMessage {
            channel: CHANNEL.into(),
            content: content.into(),
        })
        .await
    }

    async fn send(&mut self, msg: &ClientMessage) -> Result<()> {
        let bytes = msg.to_bytes().context("encoding a client message")?;
        match self {
            Conn::Tcp { stream, .. } => stream
                .write_all(&bytes)
                .await
                .context("writing to the server"),
            Conn::Ws(ws) => ws.send_binary(&bytes).await,
        }
    }

    /// The next server message.
    async fn recv(&mut self) -> Result<ServerMessage> {
        match self {
            Conn::Tcp { stream, decoder } => loop {
                if let Some((m, _)) = decoder
                    .next_message()
                    .context("decoding the server's stream")?
                {
                    return Ok(m);
                }
                decoder.buf_mut().reserve(READ_BUFFER);
                let n = stream
                    .read_buf(decoder.buf_mut())
                    .await
                    .context("reading from the server")?;
                ensure!(n > 0, "the server closed the connection");
            },
            Conn::Ws(ws) => loop {
                match ws.next().await? {
                    Frame::Binary(b) => {
                        return ServerMessage::decode_exact(&b)
                            .context("a binary frame from the bridge");
                    }
                    // Notices (upstream connected, acks).
                    Frame::Text(_) => {}
                    Frame::Close(code, reason) => {
                        bail!("the bridge closed the WebSocket: {code:?} {reason}")
                    }
                }
            },
        }
    }

    /// Leaves: a WebSocket closes with 1000, so the session ends at once
    /// (a dropped one would be held for resumption).
    async fn close(self) {
        match self {
            Conn::Tcp { mut stream, .. } => {
                let _ = stream.shutdown().await;
            }
            Conn::Ws(mut ws) => {
                let _ = tokio::time::timeout(WAIT, async {
                    ws.send_close(1000, "bench done").await?;
                    // Until the bridge answers the close.
                    while !matches!(ws.next().await?, Frame::Close(..)) {}
                    Ok::<_, anyhow::Error>(())
                })
                .await;
            }
        }
    }
}

/// The WebSocket upgrade and the session handshake for server `name`:
/// Start → Again → Restart → Success. Returns the node Success names.
async fn ws_session(
    tcp: TcpStream,
    http: SocketAddr,
    name: &str,
) -> Result<(WsClient, Option<String>)> {
    let mut ws = tokio::time::timeout(WAIT, WsClient::connect(tcp, http, SUBPROTOCOL))
        .await
        .context("the WebSocket upgrade timed out")?
        .context("the WebSocket upgrade")?;
    let start = Content::Handshake(Handshake::start(1, Some(name.into())));
    ws.send_text(&start.to_json())
        .await
        .context("sending Start")?;
    let again = ws_handshake(&mut ws).await?;
    ensure!(
        again.state() == HandshakeState::Again,
        "expected Again, got {again:?}"
    );
    let key = again.session.context("Again without a session key")?;
    let restart = Content::Handshake(Handshake::restart(2, key, 0, None));
    ws.send_text(&restart.to_json())
        .await
        .context("sending Restart")?;
    let ok = ws_handshake(&mut ws).await?;
    ensure!(
        ok.state() == HandshakeState::Success,
        "expected Success, got {ok:?}"
    );
    Ok((ws, ok.node))
}

/// The next handshake message on a bench WebSocket.
async fn ws_handshake(ws: &mut WsClient) -> Result<Handshake> {
    let next = async {
        loop {
            match ws.next().await? {
                Frame::Text(t) => {
                    let text = std::str::from_utf8(&t).context("a text frame not in UTF-8")?;
                    if let Ok(Content::Handshake(h)) = Content::parse(text) {
                        return Ok(h);
                    }
                }
                Frame::Close(code, reason) => {
                    bail!("the bridge refused the session: {code:?} {reason}")
                }
                Frame::Binary(_) => {}
            }
        }
    };
    tokio::time::timeout(WAIT, next)
        .await
        .context("no handshake answer")?
}

/// The next handshake message on a tungstenite WebSocket (the soak's).
pub(crate) async fn next_handshake(ws: &mut WebSocketStream<TcpStream>) -> Result<Handshake> {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("no handshake answer")?;
        match m {
            Some(Ok(Message::Text(t))) => {
                if let Ok(Content::Handshake(h)) = Content::parse(t.as_str()) {
                    return Ok(h);
                }
            }
            Some(Ok(Message::Close(f))) => bail!("the bridge refused the session: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("during the session handshake"),
            None => bail!("the WebSocket ended during the session handshake"),
        }
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let fetch = async {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(WAIT, fetch)
        .await
        .with_context(|| format!("GET {path} timed out"))?
        .with_context(|| format!("GET {path}"))?;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// A child process, killed (and reaped) when dropped.
pub(crate) struct Proc {
    name: &'static str,
    pub(crate) child: Child,
    log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Result<Proc> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("cloning a log file handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until `addr` accepts connections (30 s at most).
    pub(crate) fn wait_for_port(&mut self, addr: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.exited() {
                bail!(
                    "{} exited with {status} while starting (log: {})",
                    self.name,
                    self.log.display()
                );
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{} did not listen on {addr} within 30 s (log: {})",
                self.name,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    /// SIGTERM first (the bridge shuts down cleanly and a profiler wrapping
    /// it can write its data), SIGKILL after 5 s.
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port())
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

// ---- the pure parts: statistics and the report ----

/// The `p`-th percentile (nearest rank) of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The median of `xs` (the mean of the middle two for an even count).
fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// (min, max) of `xs`.
fn range(xs: &[f64]) -> Option<(f64, f64)> {
    let mut it = xs.iter().copied().filter(|x| x.is_finite());
    let first = it.next()?;
    Some(it.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x))))
}

/// `bridge / direct`, when both are known and direct is not zero.
fn ratio(bridge: Option<f64>, direct: Option<f64>) -> Option<f64> {
    match (bridge, direct) {
        (Some(b), Some(d)) if d > 0.0 => Some(b / d),
        _ => None,
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn fmt_opt(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.decimals$}"))
}

/// The median of each of the four CPU figures over rounds.
fn median_cpu(rounds: impl Iterator<Item = [Option<f64>; 4]>) -> [Option<f64>; 4] {
    let all: Vec<[Option<f64>; 4]> = rounds.collect();
    std::array::from_fn(|i| median(&all.iter().filter_map(|c| c[i]).collect::<Vec<_>>()))
}

type FanRows = [Vec<FanRound>; 2];
type RttRows = [Vec<RttRound>; 2];

impl Case {
    /// "B/A", e.g. `bridge/direct`.
    fn ratio_name(&self) -> String {
        format!("{}/{}", self.routes[1].name, self.routes[0].name)
    }
}

fn report(
    header: &str,
    opts: &Opts,
    fan: &[(Case, usize, usize, FanRows)],
    rtt: &[(Case, RttRows)],
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n== cargo xtask bench: direct TCP vs through the bridge; one bridge vs haproxy + 2 bridges =="
    );
    o.push_str(header);
    let _ = writeln!(
        o,
        "\nFan-out, closed loop: N clients in `{CHANNEL}`; each posts its next message when its own copy is back;\n\
         every client receives every message. deliveries/s = messages received by all clients / wall time;\n\
         latency = post -> own copy back (all posts of a round). Medians over the rounds, (min-max).\n\
         CPU = µs of CPU time per delivery used by the bridge processes (summed; the first also runs the\n\
         embedded server), the Python server, haproxy and the clients (this process), from\n\
         /proc/PID/task/*/schedstat. Case haproxy: `1 bridge` = node b1 straight, `haproxy` =\n\
         haproxy (deploy/haproxy.cfg) balancing over b1 and b2, both on the same Python server.\n"
    );
    let _ = writeln!(
        o,
        "{:<28} {:<8} {:>9} {:>17} {:>7} {:>7}   {:>6} {:>6} {:>7} {:>7}",
        "case",
        "path",
        "deliv./s",
        "(min-max)",
        "p50 ms",
        "p99 ms",
        "bridge",
        "python",
        "haproxy",
        "clients"
    );
    let mut summary = Vec::new();
    for (s, clients, posts, rows) in fan {
        let case = format!("{} {clients} clients x {posts}", s.label);
        let mut medians = [None, None];
        for (i, path) in s.routes.into_iter().enumerate() {
            let rates: Vec<f64> = rows[i].iter().map(|r| r.deliveries_per_s).collect();
            let p50: Vec<f64> = rows[i].iter().map(|r| us(r.p50) / 1000.0).collect();
            let p99: Vec<f64> = rows[i].iter().map(|r| us(r.p99) / 1000.0).collect();
            medians[i] = median(&rates);
            let span =
                range(&rates).map_or_else(|| "-".into(), |(lo, hi)| format!("({lo:.0}-{hi:.0})"));
            let cpu = median_cpu(rows[i].iter().map(|r| r.cpu));
            let _ = writeln!(
                o,
                "{:<28} {:<8} {:>9} {:>17} {:>7} {:>7}   {:>6} {:>6} {:>7} {:>7}",
                if i == 0 { case.as_str() } else { "" },
                path.name(),
                fmt_opt(medians[i], 0),
                span,
                fmt_opt(median(&p50), 2),
                fmt_opt(median(&p99), 2),
                fmt_opt(cpu[0], 2),
                fmt_opt(cpu[1], 2),
                fmt_opt(cpu[2], 2),
                fmt_opt(cpu[3], 2),
            );
        }
        let r = ratio(medians[1], medians[0]);
        let _ = writeln!(o, "{:<28} {} = {}", "", s.ratio_name(), fmt_opt(r, 2));
        summary.push(format!(
            "  fan-out {case:<27} {:<17} {:>5}{}",
            s.ratio_name(),
            fmt_opt(r, 2),
            (s.expect_fan)(*clients)
                .map(|e| format!("   (issue 11 expects {e})"))
                .unwrap_or_default()
        ));
    }
    let _ = writeln!(
        o,
        "\nOne-client round trip: post -> own copy back, {} posts per round; medians over the rounds;\n\
         CPU in µs per post.\n",
        opts.rtt_posts
    );
    let _ = writeln!(
        o,
        "{:<28} {:<8} {:>9} {:>17} {:>7}   {:>6} {:>6} {:>7} {:>7}",
        "case", "path", "p50 µs", "(min-max)", "p99 µs", "bridge", "python", "haproxy", "clients"
    );
    for (s, rows) in rtt {
        let mut p50s = [None, None];
        for (i, path) in s.routes.into_iter().enumerate() {
            let p50: Vec<f64> = rows[i].iter().map(|r| us(r.p50)).collect();
            let p99: Vec<f64> = rows[i].iter().map(|r| us(r.p99)).collect();
            p50s[i] = median(&p50);
            let span =
                range(&p50).map_or_else(|| "-".into(), |(lo, hi)| format!("({lo:.0}-{hi:.0})"));
            let cpu = median_cpu(rows[i].iter().map(|r| r.cpu));
            let _ = writeln!(
                o,
                "{:<28} {:<8} {:>9} {:>17} {:>7}   {:>6} {:>6} {:>7} {:>7}",
                if i == 0 { s.label } else { "" },
                path.name(),
                fmt_opt(p50s[i], 0),
                span,
                fmt_opt(median(&p99), 0),
                fmt_opt(cpu[0], 1),
                fmt_opt(cpu[1], 1),
                fmt_opt(cpu[2], 1),
                fmt_opt(cpu[3], 1),
            );
        }
        let diff = match p50s {
            [Some(d), Some(b)] => Some(b - d),
            _ => None,
        };
        let minus = format!("{} - {}", s.routes[1].name, s.routes[0].name);
        let _ = writeln!(o, "{:<28} {minus} = {} µs (p50)", "", fmt_opt(diff, 0));
        summary.push(format!(
            "  round trip {:<24} {minus:<18} {:>5} µs p50{}",
            s.label,
            fmt_opt(diff, 0),
            s.expect_rtt
                .map(|e| format!("   (issue 11 expects {e})"))
                .unwrap_or_default()
        ));
    }
    let _ = writeln!(
        o,
        "\nSummary (medians; figures from a shared machine, expect noise):"
    );
    for line in summary {
        let _ = writeln!(o, "{line}");
    }
    o
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&v, 0.0), Some(Duration::from_millis(1)));
        let v = ms(&[7, 9, 30]);
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(9)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(30)));
        assert_eq!(percentile(&ms(&[5]), 99.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn medians_ranges_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
        assert_eq!(range(&[3.0, 1.0, 2.0]), Some((1.0, 3.0)));
        assert_eq!(range(&[]), None);
        assert_eq!(ratio(Some(9.0), Some(10.0)), Some(0.9));
        assert_eq!(ratio(Some(9.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(fmt_opt(None, 2), "-");
        assert_eq!(fmt_opt(Some(0.894), 2), "0.89");
        // 2 ms of CPU over 1000 deliveries = 2 µs each; a missing reading stays missing.
        assert_eq!(
            cpu_per(
                [Some(0), None, Some(5), None],
                [Some(2_000_000), Some(9), Some(5), None],
                1000
            ),
            [Some(2.0), None, Some(0.0), None]
        );
        assert_eq!(
            median_cpu(
                [
                    [Some(1.0), None, None, Some(4.0)],
                    [Some(3.0), None, None, Some(4.0)]
                ]
                .into_iter()
            ),
            [Some(2.0), None, None, Some(4.0)]
        );
    }

    #[test]
    fn options_and_content() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Opts::parse(&[]).unwrap(), Opts::default());
        let q = Opts::parse(&args(&["--quick"])).unwrap();
        assert_eq!((q.rounds, q.rtt_posts), (Some(1), 100));
        assert_eq!(q.sizes(), [(10, 40), (50, 8)]);
        let o = Opts::parse(&args(&[
            "--quick",
            "--rounds",
            "5",
            "--client-threads",
            "2",
        ]))
        .unwrap();
        assert_eq!((o.rounds, o.client_threads), (Some(5), 2));
        assert!(Opts::parse(&args(&["--rounds"])).is_err());
        assert!(Opts::parse(&args(&["--rounds", "0"])).is_err());
        assert!(Opts::parse(&args(&["--nope"])).is_err());
        let o = Opts::parse(&args(&["--server", "python", "--bridge", "b"])).unwrap();
        assert_eq!(o.server.as_deref(), Some("python"));
        assert_eq!(o.bridge, Some(PathBuf::from("b")));
        assert!(Opts::parse(&args(&["--server", "rust"])).is_err());
        let o = Opts::parse(&args(&["--server", "haproxy"])).unwrap();
        assert!(o.runs("haproxy") && !o.runs("python"));
        assert!(Opts::default().runs("haproxy") && Opts::default().runs("embedded"));
        let c = content("b1r2:3.", 17);
        assert_eq!(c.len(), CONTENT_LEN);
        assert!(c.starts_with("b1r2:3.17 "));
        assert_eq!(
            metric(
                "# TYPE x gauge\ndumdum_bridge_sessions_active 3\ndumdum_bridge_sessions_active_x 9\n",
                "dumdum_bridge_sessions_active"
            ),
            Some(3.0)
        );
    }
}
