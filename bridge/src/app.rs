//! State shared by every connection of one running bridge.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dumdum_protocol::TlsMode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::embedded::Embedded;
use crate::metrics::Metrics;
use crate::session::Cmd;
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

/// Sessions by key.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    map: Mutex<HashMap<String, mpsc::Sender<Cmd>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, mpsc::Sender<Cmd>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session; false if the bridge is full or the key is taken.
    pub fn insert(&self, key: &str, tx: mpsc::Sender<Cmd>, max: usize) -> bool {
        let mut map = self.lock();
        if map.len() >= max || map.contains_key(key) {
            return false;
        }
        map.insert(key.to_string(), tx);
        true
    }

    pub fn get(&self, key: &str) -> Option<mpsc::Sender<Cmd>> {
        self.lock().get(key).cloned()
    }

    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// The running bridge.
pub(crate) struct App {
    pub config: Config,
    pub upstreams: Vec<Arc<Upstream>>,
    pub registry: Registry,
    pub metrics: Metrics,
    /// Cancelled when the bridge shuts down.
    pub stop: CancellationToken,
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
        App {
            config,
            upstreams,
            registry: Registry::default(),
            metrics: Metrics::new(),
            stop,
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
