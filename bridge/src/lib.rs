//! # dumdum-bridge
//!
//! Lets browsers reach dumdum servers: HTTP (the page, `/api/servers`,
//! `/healthz`, `/metrics`) and a WebSocket (`/ws`, subprotocol `dumdum.v2`)
//! on one listener, a session handshake (DIMP), and a protocol-aware relay to
//! one upstream connection per session, with the in-band TLS upgrade done by
//! the bridge. With no upstream configured, an embedded dumdum server named
//! `local` is the default. Sessions survive a dropped WebSocket for a grace
//! period and can be resumed with their key.
//!
//! The contract is `shared/spec/bridge-ws.md`; [`run`] is the entry point.

use std::path::PathBuf;
use std::sync::Arc;

use dumdum_protocol::TlsMode;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod app;
pub mod assets;
mod budget;
pub mod config;
mod embedded;
pub mod headers;
pub mod http;
mod link;
pub mod metrics;
pub mod os;
mod queue;
mod serve;
mod session;
pub mod tls;
mod ws;
mod wsio;

pub use config::{Cidr, Config, EMBEDDED_NAME, FileConfig, UpstreamConfig};

use app::{App, Target, Upstream};

/// Why the bridge could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings are inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Io {
        /// What the file is.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key was refused by rustls.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// The embedded server's listener could not be bound.
    #[error("cannot listen on {addr} for the embedded server: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Serve(#[source] std::io::Error),
}

/// How the bridge is asked to stop: `drain` starts a drain (with
/// [`Config::drain_timeout`]; without one it stops at once), `now` stops at
/// once (every WebSocket closes with 1001). A process maps its first
/// SIGTERM/SIGINT to `drain` and the second to `now`.
///
/// A plain [`CancellationToken`] converts into a `Shutdown` that stops at
/// once when cancelled (the bridge before drains existed).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Cancel to start draining.
    pub drain: CancellationToken,
    /// Cancel to stop at once.
    pub now: CancellationToken,
}

impl From<CancellationToken> for Shutdown {
    fn from(now: CancellationToken) -> Self {
        Shutdown {
            drain: CancellationToken::new(),
            now,
        }
    }
}

/// Runs the bridge on `listener` until it is asked to stop (see
/// [`Shutdown`]; a [`CancellationToken`] works too), then closes every
/// WebSocket, closes the upstreams and returns (within
/// `config.shutdown_timeout` plus a little). With a drain timeout, a drain
/// ends by itself at its deadline: the sessions left close with 1012 and
/// `run` returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Into<Shutdown>,
) -> Result<(), Error> {
    let shutdown = shutdown.into();
    config.validate()?;
    let _ = metrics::install();
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();

    let server_tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => None,
    };

    let mut upstreams = Vec::new();
    for up in &config.upstreams {
        if let Some(warning) = downgrade_warning(up) {
            tracing::warn!("{warning}");
        }
        let tls = tls::upstream_tls(&up.name, up.tls_name(), up.ca.as_deref(), &up.fingerprint)?;
        upstreams.push(Arc::new(Upstream {
            name: up.name.clone(),
            target: Target::Tcp {
                address: up.address.clone(),
                tls,
            },
            tls_mode: if up.require_tls {
                TlsMode::Required
            } else {
                TlsMode::Optional
            },
            // Only a refused HELLO(0) makes TLS a promise: without
            // require_tls, whoever sits on the path can answer HELLO(0).
            advertised_tls: up.require_tls,
        }));
    }
    if config.embedded_enabled() {
        let server = embedded::Embedded::new(
            &config.embedded_channels,
            config.embedded_max_messages,
            stop.clone(),
            tracker.clone(),
        );
        if let Some(addr) = config.embedded_listen {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            let acceptor = match &server_tls {
                Some((cert, key)) => Some(TlsAcceptor::from(tls::server_config(cert, key, &[])?)),
                None => None,
            };
            tracing::info!(
                "embedded dumdum server listening on {}{}",
                l.local_addr()
                    .map_or_else(|_| addr.to_string(), |a| a.to_string()),
                if acceptor.is_some() { " (TLS)" } else { "" }
            );
            server.listen(
                l,
                acceptor,
                app::ConnLimits::new(config.max_sessions_per_ip, config.max_connections),
                config.handshake_timeout,
            );
        }
        upstreams.push(Arc::new(Upstream {
            name: EMBEDDED_NAME.to_string(),
            target: Target::Embedded(server),
            tls_mode: TlsMode::Optional,
            advertised_tls: false,
        }));
    }

    let https = server_tls.is_some();
    let loopback = listener
        .local_addr()
        .map_err(Error::Serve)?
        .ip()
        .is_loopback();
    let app = Arc::new(App::new(
        config.clone(),
        upstreams,
        stop.clone(),
        tracker.clone(),
        https,
        loopback,
    ));
    tokio::spawn(control(app.clone(), shutdown));
    let router = http::router(app.clone());
    let header_timeout = app.config.header_timeout;
    let served = match server_tls {
        Some((cert, key)) => {
            let config = tls::server_config(&cert, &key, &[b"http/1.1"])?;
            let listener = TlsListener::new(
                listener,
                config,
                app.config.handshake_timeout,
                app.config.max_connections,
                stop.clone(),
                &tracker,
            )
            .map_err(Error::Serve)?;
            serve_until(
                serve::serve(listener, router, header_timeout, stop.clone()),
                &stop,
                &app,
            )
            .await
        }
        None => {
            let listener = tls::LimitedListener::new(listener, app.config.max_connections);
            serve_until(
                serve::serve(listener, router, header_timeout, stop.clone()),
                &stop,
                &app,
            )
            .await
        }
    };
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(config.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown: some connections did not close within {:?}",
            config.shutdown_timeout
        );
    }
    tracing::info!("bridge stopped");
    served
}

use tls::TlsListener;

/// Turns shutdown requests into the bridge's state: a drain (notice,
/// deadline, then 1012) or an immediate stop (1001).
async fn control(app: Arc<App>, shutdown: Shutdown) {
    let stop = app.stop.clone();
    tokio::select! {
        () = stop.cancelled() => return,
        () = shutdown.now.cancelled() => {}
        () = shutdown.drain.cancelled() => {
            let timeout = app.config.drain_timeout;
            if !timeout.is_zero() {
                drain(&app, &shutdown, timeout).await;
            }
        }
    }
    stop.cancel();
}

/// Drains for `timeout` (or until `now`): refuses new sessions, tells the
/// attached ones, then lets what is left close with 1012.
async fn drain(app: &App, shutdown: &Shutdown, timeout: std::time::Duration) {
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    app.start_drain(deadline);
    let sessions = app.registry.len();
    tracing::info!(
        deadline_s = timeout.as_secs(),
        sessions,
        node = app.config.node.as_deref().unwrap_or(""),
        "drain started: new sessions refused (1012), resumes still served"
    );
    tokio::select! {
        () = app.stop.cancelled() => {}
        () = shutdown.now.cancelled() => {
            tracing::info!(
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                sessions = app.registry.len(),
                "drain interrupted: shutting down at once"
            );
        }
        () = tokio::time::sleep_until(deadline) => {
            app.expire_drain();
            tracing::info!(
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                sessions_left = app.registry.len(),
                "drain ended: closing the sessions left with 1012"
            );
        }
    }
    app.metrics.draining.set(0.0);
}

/// The startup warning for an upstream whose TLS an on-path attacker can
/// strip (a CA or a pin is configured, but a server answering HELLO(0) is
/// accepted).
fn downgrade_warning(up: &UpstreamConfig) -> Option<String> {
    let what = match (up.ca.is_some(), up.fingerprint.is_empty()) {
        _ if up.require_tls => return None,
        (true, _) => "a CA",
        (false, false) => "a pinned fingerprint",
        (false, true) => return None,
    };
    Some(format!(
        "upstream {:?} has {what} but not require_tls: it can be downgraded to clear text \
         (anyone on the path can answer HELLO without TLS); set require_tls",
        up.name
    ))
}

/// Serves until the server ends, or until `stop` plus the shutdown timeout.
async fn serve_until<F>(serve: F, stop: &CancellationToken, app: &App) -> Result<(), Error>
where
    F: std::future::IntoFuture<Output = std::io::Result<()>>,
{
    let serve = serve.into_future();
    tokio::pin!(serve);
    tokio::select! {
        r = &mut serve => r.map_err(Error::Serve),
        () = stop.cancelled() => {
            match tokio::time::timeout(app.config.shutdown_timeout, serve).await {
                Ok(r) => r.map_err(Error::Serve),
                Err(_) => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_without_require_tls_is_warned_about() {
        let mut up = UpstreamConfig::new("main", "chat.example.org:6667");
        assert_eq!(downgrade_warning(&up), None);
        up.ca = Some(PathBuf::from("ca.pem"));
        let w = downgrade_warning(&up).unwrap_or_default();
        assert!(
            w.contains("downgraded to clear text") && w.contains("set require_tls"),
            "{w}"
        );
        up.require_tls = true;
        assert_eq!(downgrade_warning(&up), None);

        let mut pinned = UpstreamConfig::new("home", "chat.example.org:6667");
        pinned.fingerprint = vec![tls::Fingerprint([7; 32])];
        let w = downgrade_warning(&pinned).unwrap_or_default();
        assert!(
            w.contains("a pinned fingerprint but not require_tls"),
            "{w}"
        );
        pinned.require_tls = true;
        assert_eq!(downgrade_warning(&pinned), None);
    }
}
