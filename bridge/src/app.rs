//! State shared by every connection of one running bridge.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use dumdum_protocol::TlsMode;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::HeldMemory;
use crate::config::Config;
use crate::embedded::Embedded;
use crate::metrics::Metrics;
use crate::queue;
use crate::session::{Cmd, code};
use crate::tls::UpstreamTls;

/// Where an upstream is.
#[derive(Debug)]
pub(crate) enum Target {
    /// A dumdum server over TCP, maybe upgraded to TLS.
    Tcp {
        /// `HOST:PORT`.
        address: String,
        /// How to verify it.
        tls: UpstreamTls,
    },
    /// The embedded server.
    Embedded(Arc<Embedded>),
}

/// One upstream a client may choose.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub name: String,
    pub target: Target,
    pub tls_mode: TlsMode,
    /// What `/api/servers` says about TLS.
    pub advertised_tls: bool,
}

/// A client's address as the bridge counts and logs it: the TCP peer, or
/// the address a trusted proxy forwarded (which has no port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl From<SocketAddr> for Peer {
    fn from(a: SocketAddr) -> Self {
        Peer {
            ip: a.ip(),
            port: Some(a.port()),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => SocketAddr::new(self.ip, port).fmt(f),
            None => self.ip.fmt(f),
        }
    }
}

/// Sessions by key.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    map: Mutex<HashMap<String, queue::Sender<Cmd>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, queue::Sender<Cmd>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session; false if the bridge is full or the key is taken.
    pub fn insert(&self, key: &str, tx: queue::Sender<Cmd>, max: usize) -> bool {
        let mut map = self.lock();
        if map.len() >= max || map.contains_key(key) {
            return false;
        }
        map.insert(key.to_string(), tx);
        true
    }

    pub fn get(&self, key: &str) -> Option<queue::Sender<Cmd>> {
        self.lock().get(key).cloned()
    }

    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Sessions registered (attached or held).
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A session's entry in the registry, counted in `sessions_active`; both
/// are released when this is dropped, also when the session's task panics.
pub(crate) struct Registered {
    app: Arc<App>,
    key: String,
}

impl Registered {
    /// Registers the session `key`; `None` if the bridge holds
    /// `max_sessions` already or the key is taken.
    pub fn new(app: &Arc<App>, key: &str, tx: queue::Sender<Cmd>) -> Option<Self> {
        if !app.registry.insert(key, tx, app.config.max_sessions) {
            return None;
        }
        app.metrics.sessions_active.increment(1.0);
        Some(Registered {
            app: app.clone(),
            key: key.to_string(),
        })
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.app.registry.remove(&self.key);
        self.app.metrics.sessions_active.decrement(1.0);
    }
}

/// The running bridge.
pub(crate) struct App {
    pub config: Config,
    pub upstreams: Vec<Arc<Upstream>>,
    pub registry: Registry,
    pub metrics: Metrics,
    /// What held sessions buffer together (`--resume-memory`).
    pub held_memory: Arc<HeldMemory>,
    /// Cancelled when the bridge shuts down.
    pub stop: CancellationToken,
    /// Cancelled when a drain starts (only with a drain timeout).
    pub drain: CancellationToken,
    /// When the drain ends.
    drain_deadline: OnceLock<Instant>,
    /// The drain deadline passed: what is left closes with 1012, not 1001.
    drain_expired: AtomicBool,
    pub tracker: TaskTracker,
    pub https: bool,
    /// The bridge listens on a loopback address: WebSocket upgrades need a
    /// loopback `Host` (DNS rebinding).
    pub loopback: bool,
    /// Open WebSockets per client IP.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Sessions (attached or held) per client IP.
    per_ip_sessions: Mutex<HashMap<IpAddr, usize>>,
    next_id: AtomicU64,
}

impl App {
    pub fn new(
        config: Config,
        upstreams: Vec<Arc<Upstream>>,
        stop: CancellationToken,
        tracker: TaskTracker,
        https: bool,
        loopback: bool,
    ) -> Self {
        let metrics = Metrics::new();
        App {
            held_memory: HeldMemory::new(
                config.resume_memory,
                metrics.held_bytes.clone(),
                metrics.sessions_held.clone(),
            ),
            config,
            upstreams,
            registry: Registry::default(),
            metrics,
            stop,
            drain: CancellationToken::new(),
            drain_deadline: OnceLock::new(),
            drain_expired: AtomicBool::new(false),
            tracker,
            https,
            loopback,
            per_ip: Mutex::new(HashMap::new()),
            per_ip_sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// The upstream called `name`, or the default one.
    pub fn upstream(&self, name: Option<&str>) -> Option<Arc<Upstream>> {
        match name {
            None | Some("") => self.upstreams.first().cloned(),
            Some(n) => self.upstreams.iter().find(|u| u.name == n).cloned(),
        }
    }

    /// Starts draining until `deadline`.
    pub fn start_drain(&self, deadline: Instant) {
        let _ = self.drain_deadline.set(deadline);
        self.metrics.draining.set(1.0);
        self.drain.cancel();
    }

    /// The drain deadline passed: sessions still open close with 1012.
    pub fn expire_drain(&self) {
        self.drain_expired.store(true, Ordering::Release);
    }

    /// While draining: whole seconds (rounded up) until the deadline.
    pub fn drain_left_s(&self) -> Option<u64> {
        if !self.drain.is_cancelled() {
            return None;
        }
        let deadline = self.drain_deadline.get()?;
        let left = deadline.saturating_duration_since(Instant::now());
        Some(
            left.as_millis()
                .div_ceil(1000)
                .try_into()
                .unwrap_or(u64::MAX),
        )
    }

    /// The close frame for WebSockets still open when the bridge stops:
    /// 1012 once a drain's deadline passed (reconnect elsewhere), else 1001.
    pub fn closing(&self) -> (u16, String) {
        if self.drain_expired.load(Ordering::Acquire) {
            (
                code::SERVICE_RESTART,
                "the bridge is restarting: reconnect to another instance".into(),
            )
        } else {
            (code::GOING_AWAY, "bridge shutting down".into())
        }
    }

    /// A fresh id (for attachments).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a WebSocket from `ip`; `None` when the per-IP cap is reached.
    pub fn ip_guard(self: &Arc<Self>, ip: IpAddr) -> Option<IpGuard> {
        self.slot(ip, false)
    }

    /// Counts a session (held ones included) for `ip`; `None` at the cap.
    pub fn session_guard(self: &Arc<Self>, ip: IpAddr) -> Option<IpGuard> {
        self.slot(ip, true)
    }

    fn counts(&self, sessions: bool) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        let map = if sessions {
            &self.per_ip_sessions
        } else {
            &self.per_ip
        };
        map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(self: &Arc<Self>, ip: IpAddr, sessions: bool) -> Option<IpGuard> {
        let ip = ip_key(ip);
        let mut map = self.counts(sessions);
        let n = map.entry(ip).or_insert(0);
        if *n >= self.config.max_sessions_per_ip {
            return None;
        }
        *n += 1;
        Some(IpGuard {
            app: self.clone(),
            ip,
            sessions,
        })
    }
}

/// Releases one per-IP slot when dropped.
pub(crate) struct IpGuard {
    app: Arc<App>,
    ip: IpAddr,
    sessions: bool,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut map = self.app.counts(self.sessions);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// What per-address limits count by: an IPv4 address (IPv4-mapped IPv6
/// included), or the /64 of an IPv6 address (one host usually holds a whole
/// /64, so counting single addresses would not limit it).
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// Per-address connection slots for a listener (the embedded server's).
#[derive(Debug, Clone)]
pub(crate) struct ConnLimits {
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
    total: Arc<tokio::sync::Semaphore>,
}

/// One connection's slots, released when dropped.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
    _total: tokio::sync::OwnedSemaphorePermit,
}

impl ConnLimits {
    pub fn new(max_per_ip: usize, max_total: usize) -> Self {
        ConnLimits {
            per_ip: Arc::default(),
            max_per_ip,
            total: Arc::new(tokio::sync::Semaphore::new(max_total)),
        }
    }

    /// A slot for a connection from `ip`; `None` when its address or the
    /// listener is at its cap.
    pub fn try_slot(&self, ip: IpAddr) -> Option<ConnSlot> {
        let total = self.total.clone().try_acquire_owned().ok()?;
        let ip = ip_key(ip);
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            per_ip: self.per_ip.clone(),
            ip,
            _total: total,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A 32-byte key from the system CSPRNG, hex encoded.
pub(crate) fn new_session_key() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What may be logged of a key: its first 8 hex digits.
pub(crate) fn key_prefix(key: &str) -> &str {
    key.get(..8).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        let b: IpAddr = "2001:db8:1:2:bbbb::2"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(ip_key(mapped), IpAddr::from([192, 0, 2, 7]));
        let v4 = IpAddr::from([192, 0, 2, 8]);
        assert_eq!(ip_key(v4), v4);
    }

    #[test]
    fn connection_slots_are_capped_per_address_and_in_total() {
        let limits = ConnLimits::new(2, 3);
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let s1 = limits.try_slot(a);
        let s2 = limits.try_slot(a);
        assert!(s1.is_some() && s2.is_some());
        assert!(limits.try_slot(a).is_none(), "per address");
        let s3 = limits.try_slot(b);
        assert!(s3.is_some());
        assert!(limits.try_slot(b).is_none(), "in total");
        drop(s1);
        assert!(limits.try_slot(a).is_some(), "released on drop");
    }
}
