//! Metrics through the `metrics` facade, rendered by the Prometheus exporter.
//!
//! The recorder is process-global (installed once); handles are created once
//! per bridge so the relay path only does atomic increments.

use std::sync::OnceLock;

use metrics::{Counter, Gauge, counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle,
/// or `None` if another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!("metrics recorder not installed: {e}");
                None
            }
        })
        .as_ref()
}

/// Renders the current metrics in Prometheus text format.
pub fn render() -> String {
    match install() {
        Some(h) => h.render(),
        None => "# the metrics recorder is not available in this process\n".into(),
    }
}

/// The bridge's metric handles.
#[derive(Clone)]
pub struct Metrics {
    /// Sessions that exist (attached or held).
    pub sessions_active: Gauge,
    /// Sessions held without a WebSocket.
    pub sessions_held: Gauge,
    /// Sessions started.
    pub sessions_total: Counter,
    /// Open WebSockets.
    pub websockets_active: Gauge,
    /// Client frames forwarded upstream.
    pub frames_to_upstream: Counter,
    /// Server frames sent towards clients.
    pub frames_to_client: Counter,
    /// Bytes forwarded upstream.
    pub bytes_to_upstream: Counter,
    /// Bytes sent towards clients.
    pub bytes_to_client: Counter,
    /// Upstream connect failures.
    pub upstream_connect_errors: Counter,
    /// Upstream TLS failures.
    pub upstream_tls_errors: Counter,
    /// Upstreams that closed or broke mid-session.
    pub upstream_closed: Counter,
    /// Successful resumes.
    pub resumes: Counter,
    /// Restarts answered with Again.
    pub resumes_refused: Counter,
    /// Held sessions that expired after the grace period.
    pub expired_grace: Counter,
    /// Held sessions given up because their buffer overflowed.
    pub expired_buffer: Counter,
    /// Held sessions ended to keep all held sessions within `--resume-memory`.
    pub expired_memory: Counter,
    /// Bytes buffered by held sessions together (what `--resume-memory` caps).
    pub held_bytes: Gauge,
    /// Browsers cut off for reading too slowly.
    pub slow_readers: Counter,
    /// WebSocket upgrades refused for their Origin.
    pub origin_refused: Counter,
    /// 1 while the bridge drains, else 0.
    pub draining: Gauge,
    /// New sessions refused (1012) because the bridge drains.
    pub drain_refused: Counter,
    /// Sessions refused (1013) at the per-address cap.
    pub capacity_per_ip: Counter,
    /// Sessions refused (1013) at the bridge's session cap.
    pub capacity_global: Counter,
    /// Running acknowledgements sent to clients.
    pub acks_sent: Counter,
    /// Running acknowledgements received from clients.
    pub acks_received: Counter,
}

impl Metrics {
    /// Registers the handles (after [`install`]).
    pub fn new() -> Self {
        let _ = install();
        Metrics {
            sessions_active: gauge!("dumdum_bridge_sessions_active"),
            sessions_held: gauge!("dumdum_bridge_sessions_held"),
            sessions_total: counter!("dumdum_bridge_sessions_total"),
            websockets_active: gauge!("dumdum_bridge_websockets_active"),
            frames_to_upstream: counter!("dumdum_bridge_frames_total", "direction" => "to_upstream"),
            frames_to_client: counter!("dumdum_bridge_frames_total", "direction" => "to_client"),
            bytes_to_upstream: counter!("dumdum_bridge_bytes_total", "direction" => "to_upstream"),
            bytes_to_client: counter!("dumdum_bridge_bytes_total", "direction" => "to_client"),
            upstream_connect_errors: counter!("dumdum_bridge_upstream_errors_total", "kind" => "connect"),
            upstream_tls_errors: counter!("dumdum_bridge_upstream_errors_total", "kind" => "tls"),
            upstream_closed: counter!("dumdum_bridge_upstream_errors_total", "kind" => "closed"),
            resumes: counter!("dumdum_bridge_resumes_total", "result" => "resumed"),
            resumes_refused: counter!("dumdum_bridge_resumes_total", "result" => "refused"),
            expired_grace: counter!("dumdum_bridge_held_sessions_ended_total", "reason" => "grace"),
            expired_buffer: counter!("dumdum_bridge_held_sessions_ended_total", "reason" => "buffer"),
            expired_memory: counter!("dumdum_bridge_held_sessions_ended_total", "reason" => "memory"),
            held_bytes: gauge!("dumdum_bridge_held_bytes"),
            slow_readers: counter!("dumdum_bridge_slow_readers_total"),
            origin_refused: counter!("dumdum_bridge_origin_refused_total"),
            draining: gauge!("dumdum_bridge_draining"),
            drain_refused: counter!("dumdum_bridge_drain_refused_total"),
            capacity_per_ip: counter!("dumdum_bridge_capacity_refused_total", "cap" => "per_ip"),
            capacity_global: counter!("dumdum_bridge_capacity_refused_total", "cap" => "global"),
            acks_sent: counter!("dumdum_bridge_acks_total", "direction" => "to_client"),
            acks_received: counter!("dumdum_bridge_acks_total", "direction" => "from_client"),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
