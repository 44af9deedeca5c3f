//! The HTTP accept loop: hyper's HTTP/1 server per connection with a
//! header-read timeout, axum's router as the service.
//!
//! axum's own `serve` has no time limit on a request head, so a client that
//! sends nothing, or a byte a second, held a connection slot for ever.
//! hyper's `header_read_timeout` starts when the connection starts waiting
//! for a head (at the start, and again after each response on a kept-alive
//! connection), so an idle connection is closed too.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::ClientAddr;

/// Accepts connections from `listener` until `stop`, serving each with
/// `router` (WebSocket upgrades included; [`ClientAddr`] as `ConnectInfo`).
/// A connection that has not sent a complete request head within
/// `header_timeout` is closed. On `stop`, idle connections close and
/// requests in flight finish; returns when every connection has ended.
pub(crate) async fn serve<L>(
    mut listener: L,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conns = TaskTracker::new();
    loop {
        let (io, addr) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let router = router.clone();
        let stop = stop.clone();
        conns.spawn(connection(io, addr, router, header_timeout, stop));
    }
    drop(listener);
    conns.close();
    conns.wait().await;
    Ok(())
}

/// Serves one connection.
async fn connection<I>(
    io: I,
    addr: SocketAddr,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router.layer(Extension(ConnectInfo(ClientAddr(addr)))));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        if e.is_timeout() {
            tracing::debug!(
                client = %addr,
                timeout_ms = u64::try_from(header_timeout.as_millis()).unwrap_or(u64::MAX),
                "HTTP connection closed: no complete request head within the header timeout"
            );
        } else {
            tracing::debug!(client = %addr, error = %e, "HTTP connection ended with an error");
        }
    }
}
