//! TLS: the bridge's own certificate (HTTPS/WSS and the embedded server's
//! in-band upgrade), upstream verification (pinned certificates, system
//! roots plus a per-upstream CA), what the `secured` notice reports about a
//! peer certificate, and TLS failures in words.

mod der;
mod verify;

pub use der::{date, subject};
pub use verify::{CertProblem, Fingerprint, FingerprintError, describe, describe_io};

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read_file(path, "certificate file")?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(&pem[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Io {
            what: "certificate file",
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = read_file(path, "private key file")?;
    rustls_pemfile::private_key(&mut BufReader::new(&pem[..]))
        .map_err(|source| Error::Io {
            what: "private key file",
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| Error::Config(format!("{} holds no PEM private key", path.display())))
}

/// A server-side TLS configuration from PEM files, offering `alpn`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The system's trusted roots, loaded once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<CertificateDer<'static>>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let result = rustls_native_certs::load_native_certs();
        for e in &result.errors {
            tracing::debug!("system root certificates: {e}");
        }
        if result.certs.is_empty() {
            tracing::warn!(
                "no system root certificates found; upstream TLS is verified only against configured CAs"
            );
        }
        result.certs
    })
}

/// How to verify one upstream.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The connector (roots + CA).
    pub connector: TlsConnector,
    /// SNI and verification name.
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Builds the verifier of upstream `upstream`: the certificates of `ca`
/// and the `fingerprints` are pinned (trusted as the server's own,
/// whatever their CA flag, names or issuer, within their validity period);
/// any other certificate must chain to the system roots or to a CA of `ca`
/// and be valid for `server_name`.
pub fn upstream_tls(
    upstream: &str,
    server_name: &str,
    ca: Option<&Path>,
    fingerprints: &[Fingerprint],
) -> Result<UpstreamTls, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    let mut pinned = Vec::new();
    if let Some(ca) = ca {
        for cert in load_certs(ca)? {
            // A certificate webpki cannot use as a trust anchor is still
            // pinned by its bytes.
            if let Err(e) = roots.add(cert.clone()) {
                tracing::debug!(
                    "upstream {upstream:?}: a certificate of {} is pinned only, not a CA: {e}",
                    ca.display()
                );
            }
            pinned.push(cert);
        }
    }
    let provider = provider();
    let verifier = verify::PinningVerifier::new(
        upstream,
        pinned,
        fingerprints.to_vec(),
        roots,
        provider.clone(),
    )
    .map_err(|e| Error::Config(format!("upstream {upstream:?}: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let server_name = ServerName::try_from(server_name.to_string())
        .map_err(|e| Error::Config(format!("server name {server_name:?}: {e}")))?;
    Ok(UpstreamTls {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// What the `secured` notice says about a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// "TLSv1.3" or "TLSv1.2".
    pub tls_version: String,
    /// The leaf certificate's subject.
    pub subject: String,
    /// SHA-256 of the leaf, as uppercase hex pairs joined by colons.
    pub fingerprint: String,
}

/// Describes the client side of an established TLS connection.
pub fn peer_info(conn: &rustls::ClientConnection) -> PeerInfo {
    let tls_version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    };
    let leaf = conn.peer_certificates().and_then(|c| c.first());
    PeerInfo {
        tls_version,
        subject: leaf
            .and_then(|c| subject(c))
            .unwrap_or_else(|| "(no subject)".into()),
        fingerprint: leaf.map(|c| fingerprint(c)).unwrap_or_default(),
    }
}

/// SHA-256 of a DER certificate as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    Fingerprint::of(der).to_string()
}

/// TLS handshakes run at the same time at most (each holds a connection
/// slot too); more connections wait in the kernel's accept queue.
pub const MAX_TLS_HANDSHAKES: usize = 256;

/// A connection that holds one of the listener's connection slots until it
/// is dropped (after a WebSocket upgrade, until the WebSocket closes).
#[derive(Debug)]
pub struct Counted<T> {
    io: T,
    _slot: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Waits for a connection slot (never fails: the semaphore is never closed).
async fn slot(slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    match slots.clone().acquire_owned().await {
        Ok(permit) => permit,
        Err(_) => std::future::pending().await,
    }
}

/// Turns Nagle's algorithm off on an accepted connection. Chat frames are
/// small and each one is flushed on purpose: with Nagle on, a frame that
/// follows an unacknowledged one waits for the peer's delayed ACK (about
/// 40 ms on Linux), which is what small rooms would see on every message.
pub(crate) fn nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY not set on an accepted connection: {e}");
    }
}

/// A plain TCP listener that accepts at most `max` connections at a time
/// (the next accept waits for a slot).
pub struct LimitedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
}

impl LimitedListener {
    /// Wraps `inner`.
    pub fn new(inner: TcpListener, max: usize) -> Self {
        LimitedListener {
            inner,
            slots: Arc::new(Semaphore::new(max)),
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Counted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let slot = slot(&self.slots).await;
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        nodelay(&io);
        (Counted { io, _slot: slot }, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

type TlsConn = Counted<tokio_rustls::server::TlsStream<TcpStream>>;

/// A listener that accepts TCP connections and completes the TLS handshake
/// off the accept path (a slow handshake never blocks other clients). At
/// most `max_connections` connections are open at a time (handshakes
/// included), at most [`MAX_TLS_HANDSHAKES`] of them in their handshake.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsConn, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` until `shutdown`.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
        max_connections: usize,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let inner = tracker.clone();
        let slots = Arc::new(Semaphore::new(max_connections));
        let handshakes = Arc::new(Semaphore::new(MAX_TLS_HANDSHAKES));
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    permits = async {
                        let conn = slot(&slots).await;
                        let handshake = slot(&handshakes).await;
                        (conn, handshake, listener.accept().await)
                    } => permits,
                };
                let (conn_slot, handshake_slot, accepted) = accepted;
                let (tcp, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                nodelay(&tcp);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                inner.spawn(async move {
                    let done = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await;
                    drop(handshake_slot);
                    match done {
                        Ok(Ok(tls)) => {
                            let conn = Counted {
                                io: tls,
                                _slot: conn_slot,
                            };
                            let _ = tx.send((conn, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(client = %addr, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(client = %addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The acceptor stopped (shutdown): wait for the server to stop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn subject_and_fingerprint_of_an_rcgen_cert() {
        let mut params = rcgen_params();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "dumdum test");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let s = subject(cert.der()).unwrap();
        assert_eq!(s, "CN=localhost, O=dumdum test");
        let f = fingerprint(cert.der());
        assert_eq!(f.len(), 95);
        assert!(f.chars().all(|c| c == ':' || c.is_ascii_hexdigit()));
        assert_eq!(subject(&[0x30, 0x05, 1]), None, "truncated DER is refused");
        assert_eq!(der::common_names(cert.der()), ["localhost"]);
        assert_eq!(der::is_ca(cert.der()), Some(false));
        assert_eq!(der::subject_alt_names(cert.der()).unwrap(), ["localhost"]);
        let (not_before, not_after) = der::validity(cert.der()).unwrap();
        assert!(not_before < not_after);
    }

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = LimitedListener::new(tcp, 4);
        let client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = axum::serve::Listener::accept(&mut listener).await;
        assert!(
            accepted.io.nodelay().unwrap(),
            "TCP_NODELAY on the accepted side"
        );
        drop(client);
    }

    #[test]
    fn names_and_ca_flag_of_an_rcgen_ca() {
        let mut params = rcgen::CertificateParams::new(vec![
            "chat.example.org".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(der::is_ca(cert.der()), Some(true));
        assert_eq!(
            der::subject_alt_names(cert.der()).unwrap(),
            ["chat.example.org", "127.0.0.1", "::1"]
        );
        assert_eq!(der::common_names(cert.der()), ["rcgen self signed cert"]);
    }

    fn rcgen_params() -> rcgen::CertificateParams {
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap()
    }
}
