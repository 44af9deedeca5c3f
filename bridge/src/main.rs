//! `dumdum-bridge`: serves the dumdum web page and relays its WebSockets to
//! dumdum servers (or to its embedded server).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use dumdum_bridge::config::Cidr;
use dumdum_bridge::config::{parse_duration, parse_size};
use dumdum_bridge::os::LogFormat;
use dumdum_bridge::{Config, FileConfig, Shutdown, UpstreamConfig};

/// WebSocket bridge for dumdum chat: serves the web page and relays browsers
/// to dumdum servers over TCP/TLS. With no --upstream it runs an embedded
/// server named "local" (channels general and random).
#[derive(Debug, Parser)]
#[command(name = "dumdum-bridge", version)]
struct Cli {
    /// Address to serve HTTP (and the WebSocket) on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// An upstream dumdum server, NAME=HOST:PORT (repeatable; the first is
    /// the default). Replaces the config file's [[upstream]] list.
    #[arg(long = "upstream", value_name = "NAME=HOST:PORT", value_parser = parse_upstream)]
    upstreams: Vec<UpstreamConfig>,

    /// TOML configuration file; command-line options override it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Directory of the built web page [default: the page inside the
    /// binary (cargo xtask release), else target/www]
    #[arg(long, value_name = "DIR")]
    www: Option<PathBuf>,

    /// Serve HTTPS/WSS with this PEM certificate chain (needs --tls-key);
    /// also used by --embedded-listen for its TLS upgrade
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// Another origin allowed to open the WebSocket, e.g.
    /// https://chat.example.org (repeatable; the bridge's own is always allowed)
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,

    /// Also expose the embedded dumdum server over TCP on this address, for
    /// native and Python clients
    #[arg(long, value_name = "ADDR")]
    embedded_listen: Option<SocketAddr>,

    /// How long a session whose WebSocket dropped is held for resumption
    /// (e.g. 60s, 2m; 0 disables) [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    resume_grace: Option<Duration>,

    /// Server bytes buffered for a held session before it is given up
    /// (e.g. 1MiB) [default: 1MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    resume_buffer: Option<usize>,

    /// Server bytes buffered by all held sessions together; past it, the
    /// held sessions with the largest buffers end first (their resume gets
    /// Again) [default: 256MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    resume_memory: Option<usize>,

    /// Time allowed for an HTTP client to send a complete request head
    /// (also while a kept-alive connection is idle); the connection is
    /// closed after it [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    header_timeout: Option<Duration>,

    /// Largest WebSocket frame accepted from a browser [default: 8KiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_frame_size: Option<usize>,

    /// Per client IP address: open WebSockets, and sessions including those
    /// held for resumption [default: 64]
    #[arg(long, value_name = "N")]
    max_sessions_per_ip: Option<usize>,

    /// Concurrent connections on the HTTP listener (and on
    /// --embedded-listen) [default: 10000]
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,

    /// Sessions on this bridge, attached or held for resumption
    /// [default: 10000]
    #[arg(long, value_name = "N")]
    max_sessions: Option<usize>,

    /// Time allowed for the session handshake (and for a client of
    /// --embedded-listen to say HELLO) [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    handshake_timeout: Option<Duration>,

    /// Time allowed to connect to an upstream and for its TLS handshake [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    connect_timeout: Option<Duration>,

    /// Log lines as `text` (colours only on a terminal; NO_COLOR turns them
    /// off) or `json` (one object per line, for log shippers); RUST_LOG
    /// filters either [default: text]
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,

    /// The name of this bridge instance (letters, digits, '-', '_', '.'):
    /// sent to clients in Again and Success, so a load balancer can route
    /// their resumes to /ws?node=NAME
    #[arg(long, value_name = "NAME")]
    node: Option<String>,

    /// A reverse proxy or load balancer whose X-Forwarded-For,
    /// X-Forwarded-Proto and X-Forwarded-Host are believed: an address or a
    /// CIDR range, e.g. 127.0.0.1 or 10.0.0.0/8 (repeatable; adds to the
    /// config file's list)
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<Cidr>,

    /// On SIGTERM or SIGINT, drain for this long before stopping: /healthz
    /// answers 404, new sessions are refused (1012), resumes are still
    /// served, then the rest close with 1012. A second signal stops at once.
    /// 0 stops at once (1001) [default: 0s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    drain_timeout: Option<Duration>,

    /// Worker threads that run the sessions (and the embedded server)
    /// [default: one fewer than the CPUs, at least 1, leaving a core to the
    /// dumdum server beside the bridge; else TOKIO_WORKER_THREADS if set]
    #[arg(long, value_name = "N")]
    threads: Option<NonZeroUsize>,
}

fn parse_upstream(s: &str) -> Result<UpstreamConfig, String> {
    UpstreamConfig::parse_flag(s).map_err(|e| e.to_string())
}

/// What `main` needs besides the bridge's [`Config`].
#[derive(Debug)]
struct Process {
    listen: SocketAddr,
    log_format: LogFormat,
    threads: usize,
}

/// Merges the file and the command line into a [`Config`] and the process settings.
fn build(cli: Cli) -> anyhow::Result<(Config, Process)> {
    let file = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the config file {}", path.display()))?;
            FileConfig::parse(&text)
                .with_context(|| format!("in the config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let mut config = Config::default();
    let listen = cli
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    config.upstreams = if cli.upstreams.is_empty() {
        file.upstream
    } else {
        cli.upstreams
    };
    if let Some(www) = cli.www.or(file.www) {
        config.www = www;
        config.embedded_page = false;
    }
    config.tls_cert = cli.tls_cert.or(file.tls_cert);
    config.tls_key = cli.tls_key.or(file.tls_key);
    config.allowed_origins = file.allowed_origin;
    config.allowed_origins.extend(cli.allowed_origins);
    config.embedded_listen = cli.embedded_listen.or(file.embedded_listen);
    if let Some(d) = cli.resume_grace.or(file.resume_grace.map(|d| d.0)) {
        config.resume_grace = d;
    }
    if let Some(n) = cli.resume_buffer.or(file.resume_buffer.map(|s| s.0)) {
        config.resume_buffer = n;
    }
    if let Some(n) = cli.resume_memory.or(file.resume_memory.map(|s| s.0)) {
        config.resume_memory = n;
    }
    if let Some(d) = cli.header_timeout.or(file.header_timeout.map(|d| d.0)) {
        config.header_timeout = d;
    }
    if let Some(n) = cli.max_frame_size.or(file.max_frame_size.map(|s| s.0)) {
        config.max_frame_size = n;
    }
    if let Some(n) = cli.max_sessions_per_ip.or(file.max_sessions_per_ip) {
        config.max_sessions_per_ip = n;
    }
    if let Some(n) = cli.max_sessions.or(file.max_sessions) {
        config.max_sessions = n;
    }
    if let Some(n) = cli.max_connections.or(file.max_connections) {
        config.max_connections = n;
    }
    if let Some(d) = cli
        .handshake_timeout
        .or(file.handshake_timeout.map(|d| d.0))
    {
        config.handshake_timeout = d;
    }
    if let Some(d) = cli.connect_timeout.or(file.connect_timeout.map(|d| d.0)) {
        config.connect_timeout = d;
    }
    config.node = cli.node.or(file.node);
    config.trusted_proxies = file.trusted_proxies;
    config.trusted_proxies.extend(cli.trusted_proxies);
    if let Some(d) = cli.drain_timeout.or(file.drain_timeout.map(|d| d.0)) {
        config.drain_timeout = d;
    }
    config.validate()?;
    let log_format = cli.log_format.or(file.log_format).unwrap_or_default();
    let threads = dumdum_bridge::os::worker_threads(cli.threads.or(file.threads));
    Ok((
        config,
        Process {
            listen,
            log_format,
            threads,
        },
    ))
}

/// Turns SIGTERM and SIGINT into shutdown requests: the first drains (or
/// stops at once without a drain timeout), the second stops at once.
async fn on_signals(shutdown: Shutdown) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    for first in [true, false] {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if first {
            tracing::info!(
                signal = name,
                "signal received: shutting down (draining if configured)"
            );
            shutdown.drain.cancel();
        } else {
            tracing::info!(signal = name, "second signal: shutting down at once");
            shutdown.now.cancel();
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let (config, process) = build(Cli::parse())?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(process.threads)
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(config, process))
}

async fn serve(
    config: dumdum_bridge::Config,
    Process {
        listen,
        log_format,
        threads,
    }: Process,
) -> anyhow::Result<()> {
    dumdum_bridge::os::init_logging(log_format);
    tracing::debug!(threads, "worker threads");
    match dumdum_bridge::os::raise_descriptor_limit() {
        Ok(limit) => {
            tracing::debug!(limit, "open-file limit");
            if let Some(warning) = dumdum_bridge::os::descriptor_warning(&config, limit) {
                tracing::warn!("{warning}");
            }
        }
        Err(e) => tracing::warn!("cannot read or raise the open-file limit: {e}"),
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let shown = if addr.ip().is_unspecified() {
        format!("{scheme}://localhost:{}/", addr.port())
    } else {
        format!("{scheme}://{addr}/")
    };
    if !config.embedded_page && !config.www.join("index.html").is_file() {
        tracing::warn!(
            "{} has no index.html: run `cargo xtask dist` to build the page",
            config.www.display()
        );
    }
    let servers: Vec<&str> = if config.upstreams.is_empty() {
        vec![dumdum_bridge::EMBEDDED_NAME]
    } else {
        config.upstreams.iter().map(|u| u.name.as_str()).collect()
    };
    let servers = servers.join(", ");
    match log_format {
        // A person reads this: the one line to act on, without log decoration.
        LogFormat::Text => {
            println!("dumdum-bridge: open {shown} in a browser (servers: {servers})")
        }
        // A log shipper reads stdout: keep every line JSON.
        LogFormat::Json => {
            tracing::info!(url = %shown, servers = %servers, "open the URL in a browser")
        }
    }

    let shutdown = Shutdown::default();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = on_signals(trigger.clone()).await {
            tracing::error!("{e:#}");
            trigger.now.cancel();
        }
    });
    dumdum_bridge::run(config, listener, shutdown)
        .await
        .context("the bridge failed")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("dumdum-bridge").chain(args.iter().copied()))
    }

    #[test]
    fn every_option_is_in_the_readme_table() {
        use clap::CommandFactory as _;
        let rows: Vec<&str> = include_str!("../../README.md")
            .lines()
            .filter(|l| l.starts_with("| `--"))
            .collect();
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let name = format!("`--{long} ");
            assert!(
                rows.iter().any(|r| r.contains(&name)),
                "--{long} is missing from the README's configuration table"
            );
        }
    }

    #[test]
    fn defaults_are_the_embedded_server_on_8080() {
        let (config, process) = build(cli(&[])).unwrap();
        assert_eq!(process.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(process.log_format, LogFormat::Text);
        assert!(config.upstreams.is_empty());
        assert!(config.embedded_enabled());
        assert_eq!(config.www, PathBuf::from("target/www"));
        assert_eq!(config.resume_grace, Duration::from_secs(60));
        assert_eq!(config.resume_buffer, 1 << 20);
        assert_eq!(config.resume_memory, 256 << 20);
        assert_eq!(config.header_timeout, Duration::from_secs(10));
    }

    #[test]
    fn file_and_flags_merge_with_flags_winning() {
        let dir = std::env::temp_dir().join(format!("bridge-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bridge.toml");
        std::fs::write(
            &file,
            r#"
            listen = "127.0.0.1:9000"
            www = "/srv/www"
            allowed_origin = ["https://a.example"]
            resume_grace = "2m"
            log_format = "json"
            threads = 3
            [[upstream]]
            name = "main"
            address = "127.0.0.1:6667"
            require_tls = true
            "#,
        )
        .unwrap();
        let (config, process) = build(cli(&[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9001",
            "--allowed-origin",
            "https://b.example",
            "--resume-buffer",
            "64KiB",
            "--resume-memory",
            "8MiB",
            "--header-timeout",
            "500ms",
        ]))
        .unwrap();
        assert_eq!(process.listen.port(), 9001, "the flag wins");
        assert_eq!(process.log_format, LogFormat::Json);
        assert_eq!(process.threads, 3, "from the file");
        assert_eq!(config.www, PathBuf::from("/srv/www"));
        assert_eq!(config.upstreams.len(), 1);
        assert!(config.upstreams[0].require_tls);
        assert_eq!(
            config.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(config.resume_grace, Duration::from_secs(120));
        assert_eq!(config.resume_buffer, 64 * 1024);
        assert_eq!(config.resume_memory, 8 << 20);
        assert_eq!(config.header_timeout, Duration::from_millis(500));
        assert_eq!(config.node, None);
        assert_eq!(config.drain_timeout, Duration::ZERO);

        // --upstream replaces the file's list; the first is the default.
        let (config, _) = build(cli(&[
            "--config",
            file.to_str().unwrap(),
            "--upstream",
            "a=127.0.0.1:1",
            "--upstream",
            "b=127.0.0.1:2",
        ]))
        .unwrap();
        let names: Vec<_> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let (_, process) =
            build(cli(&["--config", file.to_str().unwrap(), "--threads", "1"])).unwrap();
        assert_eq!(process.threads, 1, "the flag wins");
        assert!(
            Cli::try_parse_from(["dumdum-bridge", "--threads", "0"]).is_err(),
            "no threads is refused"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn scale_out_flags() {
        let (config, _) = build(cli(&[
            "--node",
            "b2",
            "--trusted-proxy",
            "127.0.0.1",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--drain-timeout",
            "30s",
        ]))
        .unwrap();
        assert_eq!(config.node.as_deref(), Some("b2"));
        assert_eq!(config.trusted_proxies.len(), 2);
        assert!(config.is_trusted_proxy("10.9.8.7".parse().unwrap()));
        assert!(!config.is_trusted_proxy("192.0.2.1".parse().unwrap()));
        assert_eq!(config.drain_timeout, Duration::from_secs(30));
        assert!(Cli::try_parse_from(["dumdum-bridge", "--trusted-proxy", "10.0.0.0/99"]).is_err());
    }

    #[test]
    fn bad_settings_are_explained() {
        assert!(Cli::try_parse_from(["dumdum-bridge", "--upstream", "nope"]).is_err());
        let e = build(cli(&["--tls-cert", "c.pem"])).unwrap_err();
        assert!(format!("{e:#}").contains("--tls-key"), "{e:#}");
        let e = build(cli(&["--upstream", "a=h:1", "--upstream", "a=h:2"])).unwrap_err();
        assert!(format!("{e:#}").contains("used twice"), "{e:#}");
    }
}
