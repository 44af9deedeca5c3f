//! Why a connection failed or ended, in plain words.

use crate::format::BridgeAddr;

/// Close codes of the bridge (see `bridge-ws.md`), defined once in the
/// protocol crate.
pub use dumdum_protocol::session::close as code;

/// Something that ended or prevented the chat connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The WebSocket failed before it opened. Browsers say nothing about
    /// why; [`Problem::after_failed_open`] finds out from a [`Probe`] of
    /// the bridge's `/healthz`.
    #[error("The connection to the chat bridge failed before it opened.")]
    NotOpened,
    /// Nothing answers HTTP at the bridge's address.
    #[error("Cannot reach the chat bridge at {0}: nothing answers there. Is the bridge running?")]
    BridgeUnreachable(String),
    /// `/healthz` says the bridge is draining or shutting down.
    #[error("The chat bridge at {0} is shutting down.")]
    BridgeShuttingDown(String),
    /// Something answers at the bridge's address, but not as a bridge.
    #[error(
        "Something answers at {bridge}, but not as a dumdum bridge (its /healthz answered HTTP {status})."
    )]
    NotABridge {
        /// The bridge's origin.
        bridge: String,
        /// The status of `/healthz`.
        status: u16,
    },
    /// The bridge answers, but does not allow pages of this origin: it
    /// grants its read-only endpoints to the origins it allows (CORS), and
    /// withheld them from this page.
    #[error(
        "The chat bridge at {bridge} does not allow pages from {origin}: start it with --allowed-origin {origin} (or open the chat from the bridge's own address)."
    )]
    OriginRefused {
        /// The page's origin.
        origin: String,
        /// The bridge's origin.
        bridge: String,
    },
    /// The bridge is up (and, across origins, allows this page), yet the
    /// WebSocket handshake failed: something this page cannot see refused or
    /// mangled the upgrade.
    #[error("The chat bridge at {bridge} is up, but the WebSocket handshake failed. {}", upgrade_hint(*.cross_origin))]
    UpgradeFailed {
        /// The bridge's origin.
        bridge: String,
        /// Whether the page is on another origin (which the bridge allows).
        cross_origin: bool,
    },
    /// The page's configured bridge address is unusable.
    #[error(
        "This page's bridge address is unusable: {0}. Fix the dumdum-bridge meta tag of index.html (DUMDUM_BRIDGE under trunk serve)."
    )]
    BadBridgeAddress(String),
    /// 4001.
    #[error("The chat server is unreachable{}.", detail(.0))]
    ServerUnreachable(String),
    /// 4002, or an `upstream`/`closed` notice.
    #[error("The chat server closed the connection{}.", detail(.0))]
    ServerClosed(String),
    /// 4003.
    #[error("The secure (TLS) connection to the chat server was refused{}.", detail(.0))]
    TlsRefused(String),
    /// 4004.
    #[error("The bridge does not know this server{}.", detail(.0))]
    UnknownServer(String),
    /// The server speaks another protocol version.
    #[error(
        "Incompatible version: the server requires protocol version {required}, this page speaks version 2."
    )]
    IncompatibleVersion {
        /// What the server wants.
        required: u8,
    },
    /// The WebSocket was cut after it had opened.
    #[error("Connection lost.")]
    ConnectionLost,
    /// After a reconnect, the nick is still held (usually by the previous
    /// connection, until the bridge or the server lets it go).
    #[error("Your nickname “{0}” is still in use, probably by your previous connection.")]
    NickInUse(String),
    /// The bridge resumed the session but needs frames this page no longer
    /// holds: a fresh session follows.
    #[error("The session could not be resumed exactly ({0}); starting a new one.")]
    ResumeFailed(String),
    /// 1001 from the bridge.
    #[error("The bridge is restarting.")]
    BridgeRestarting,
    /// 1012 from the bridge (its drain deadline passed, or a draining
    /// bridge refused a new session), or the page left a draining bridge
    /// at a quiet moment: a fresh session starts through the load
    /// balancer, on another instance.
    #[error("This server is restarting; moving you to another server.")]
    ServiceRestart,
    /// 1013 from the bridge: a per-address or global session cap is
    /// reached. The page backs off (with jitter) before trying again.
    #[error("The server is busy: it has as many sessions as it takes. Retrying later.")]
    Busy,
    /// A protocol violation on either side (1007, 1008, 1009, or a frame
    /// this page could not read).
    #[error("Protocol error: {0}.")]
    Protocol(String),
    /// Any other close.
    #[error("The connection closed (code {code}){}.", detail(.reason))]
    Other {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
}

/// What a probe of the bridge's `/healthz` found, after a WebSocket that
/// failed before opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Nothing answered, even to a request that needs no CORS: no HTTP
    /// server at that address (or the network is down).
    NoAnswer,
    /// Across origins: a server answered, but not to this page's origin
    /// (no CORS grant), so its answer could not be read.
    AnsweredWithoutCors,
    /// `/healthz` answered this page.
    Health {
        /// HTTP status.
        status: u16,
        /// The body (`ok`, `draining`, …).
        body: String,
    },
}

impl Probe {
    /// What was found, for the console.
    pub fn describe(&self) -> String {
        match self {
            Probe::NoAnswer => "no answer".into(),
            Probe::AnsweredWithoutCors => "an answer this page may not read (no CORS)".into(),
            Probe::Health { status, body } => format!("HTTP {status} {body}"),
        }
    }
}

fn upgrade_hint(cross_origin: bool) -> &'static str {
    if cross_origin {
        "It allows this page's origin, so something between them most likely refused the upgrade or dropped its dumdum.v2 subprotocol (a proxy such as trunk's [[proxy]] does), or the bridge refused the Host name. The bridge's log says which."
    } else {
        "Most likely a reverse proxy in front of it does not pass WebSocket upgrades through with their Sec-WebSocket-Protocol header, or the bridge refused this page's origin or Host (a bridge behind a proxy must list it in trusted_proxies). The bridge's log says which."
    }
}

fn detail(reason: &str) -> String {
    let r = reason.trim().trim_end_matches('.');
    if r.is_empty() {
        String::new()
    } else {
        format!(": {r}")
    }
}

impl Problem {
    /// Interprets a WebSocket close. `opened` says whether the socket had
    /// opened (a close before opening is an unreachable bridge or a refused
    /// upgrade); `upstream` is the reason of an earlier upstream notice.
    pub fn from_close(code: u16, reason: &str, opened: bool, upstream: Option<&str>) -> Problem {
        let reason = if reason.trim().is_empty() {
            upstream.unwrap_or("").to_owned()
        } else {
            reason.to_owned()
        };
        match code {
            code::UPSTREAM_UNREACHABLE => Problem::ServerUnreachable(reason),
            code::UPSTREAM_CLOSED => Problem::ServerClosed(reason),
            code::UPSTREAM_TLS => Problem::TlsRefused(reason),
            code::UNKNOWN_SERVER => Problem::UnknownServer(reason),
            code::GOING_AWAY => Problem::BridgeRestarting,
            code::SERVICE_RESTART => Problem::ServiceRestart,
            code::TRY_AGAIN_LATER => Problem::Busy,
            code::PROTOCOL_ERROR | code::MALFORMED | code::POLICY | code::TOO_BIG => {
                Problem::Protocol(if reason.is_empty() {
                    format!("the bridge closed the connection with code {code}")
                } else {
                    reason
                })
            }
            _ if !opened => Problem::NotOpened,
            code::ABNORMAL | code::NORMAL if !reason.is_empty() && upstream.is_some() => {
                Problem::ServerClosed(reason)
            }
            code::ABNORMAL | code::NORMAL => Problem::ConnectionLost,
            code => Problem::Other { code, reason },
        }
    }

    /// Why a WebSocket to the bridge at `bridge` failed before opening,
    /// from what a probe of its `/healthz` found. "Origin refused" only
    /// when the bridge withheld its answer from this page's origin
    /// (`page_origin`); a healthy bridge that answers is not accused.
    pub fn after_failed_open(bridge: &BridgeAddr, page_origin: &str, probe: &Probe) -> Problem {
        let cross_origin = bridge.is_cross_origin(page_origin);
        let name = bridge.origin().to_owned();
        match probe {
            Probe::NoAnswer => Problem::BridgeUnreachable(name),
            Probe::AnsweredWithoutCors if cross_origin => Problem::OriginRefused {
                origin: page_origin.trim_end_matches('/').to_owned(),
                bridge: name,
            },
            // Same origin needs no CORS: this cannot be the origin check.
            Probe::AnsweredWithoutCors => Problem::UpgradeFailed {
                bridge: name,
                cross_origin,
            },
            Probe::Health { status: 200, .. } => Problem::UpgradeFailed {
                bridge: name,
                cross_origin,
            },
            Probe::Health { status: 503, .. } => Problem::BridgeShuttingDown(name),
            Probe::Health { status: 404, body } if body.trim() == "draining" => {
                Problem::BridgeShuttingDown(name)
            }
            Probe::Health { status, .. } => Problem::NotABridge {
                bridge: name,
                status: *status,
            },
        }
    }

    /// A few words for the status line (the full text is the `Display`).
    pub fn short(&self) -> &'static str {
        match self {
            Problem::NotOpened => "cannot connect to the bridge",
            Problem::BridgeUnreachable(_) => "bridge unreachable",
            Problem::BridgeShuttingDown(_) => "bridge shutting down",
            Problem::NotABridge { .. } => "no bridge at that address",
            Problem::OriginRefused { .. } => "origin refused by the bridge",
            Problem::UpgradeFailed { .. } => "WebSocket handshake failed",
            Problem::BadBridgeAddress(_) => "bad bridge address",
            Problem::ServerUnreachable(_) => "chat server unreachable",
            Problem::ServerClosed(_) => "chat server closed the connection",
            Problem::TlsRefused(_) => "TLS to the chat server refused",
            Problem::UnknownServer(_) => "unknown server",
            Problem::IncompatibleVersion { .. } => "incompatible protocol version",
            Problem::ConnectionLost => "connection lost",
            Problem::NickInUse(_) => "nickname still in use",
            Problem::ResumeFailed(_) => "session could not be resumed",
            Problem::BridgeRestarting => "bridge restarting",
            Problem::ServiceRestart => "moving to another server",
            Problem::Busy => "server busy",
            Problem::Protocol(_) => "protocol error",
            Problem::Other { .. } => "connection closed",
        }
    }

    /// Whether reconnecting later can help.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            Problem::UnknownServer(_)
                | Problem::IncompatibleVersion { .. }
                | Problem::OriginRefused { .. }
                | Problem::BadBridgeAddress(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_become_words() {
        let p = Problem::from_close(4001, "connection refused", true, None);
        assert_eq!(p, Problem::ServerUnreachable("connection refused".into()));
        assert_eq!(
            p.to_string(),
            "The chat server is unreachable: connection refused."
        );
        assert_eq!(
            Problem::from_close(4003, "certificate not trusted: UnknownIssuer", true, None)
                .to_string(),
            "The secure (TLS) connection to the chat server was refused: certificate not trusted: UnknownIssuer."
        );
        assert_eq!(
            Problem::from_close(4002, "", true, Some("server went away")).to_string(),
            "The chat server closed the connection: server went away."
        );
        assert_eq!(
            Problem::from_close(4004, "", true, None).to_string(),
            "The bridge does not know this server."
        );
        assert_eq!(
            Problem::from_close(1006, "", true, None),
            Problem::ConnectionLost
        );
        assert_eq!(
            Problem::from_close(1006, "", false, None),
            Problem::NotOpened
        );
        assert_eq!(
            Problem::from_close(1001, "", true, None),
            Problem::BridgeRestarting
        );
        assert_eq!(
            Problem::from_close(1008, "", true, None).to_string(),
            "Protocol error: the bridge closed the connection with code 1008."
        );
        assert_eq!(
            Problem::from_close(3000, "x", true, None).to_string(),
            "The connection closed (code 3000): x."
        );
        assert_eq!(
            Problem::IncompatibleVersion { required: 3 }.to_string(),
            "Incompatible version: the server requires protocol version 3, this page speaks version 2."
        );
    }

    #[test]
    fn capacity_and_restart_closes_are_not_policy_errors() {
        let busy = Problem::from_close(code::TRY_AGAIN_LATER, "too many sessions", true, None);
        assert_eq!(busy, Problem::Busy);
        assert!(busy.retryable());
        assert_eq!(busy.short(), "server busy");
        assert!(!busy.to_string().contains("Protocol"), "{busy}");
        assert!(busy.to_string().starts_with("The server is busy"), "{busy}");
        let moving = Problem::from_close(code::SERVICE_RESTART, "draining", true, None);
        assert_eq!(moving, Problem::ServiceRestart);
        assert!(moving.retryable());
        assert_eq!(
            moving.to_string(),
            "This server is restarting; moving you to another server."
        );
        // The codes are the contract's (defined once, in the protocol crate).
        assert_eq!((code::SERVICE_RESTART, code::TRY_AGAIN_LATER), (1012, 1013));
        // A policy close is still one.
        assert!(matches!(
            Problem::from_close(code::POLICY, "too many sessions", true, None),
            Problem::Protocol(_)
        ));
    }

    #[test]
    fn short_forms_name_the_problem() {
        assert_eq!(
            Problem::ServerClosed("x".into()).short(),
            "chat server closed the connection"
        );
        assert_eq!(
            Problem::TlsRefused("bad".into()).short(),
            "TLS to the chat server refused"
        );
        assert_eq!(
            Problem::NickInUse("bob".into()).to_string(),
            "Your nickname “bob” is still in use, probably by your previous connection."
        );
        assert!(Problem::NickInUse("bob".into()).retryable());
    }

    #[test]
    fn only_hopeless_problems_stop_retrying() {
        assert!(Problem::ConnectionLost.retryable());
        assert!(Problem::ServerUnreachable(String::new()).retryable());
        assert!(Problem::TlsRefused(String::new()).retryable());
        assert!(!Problem::UnknownServer(String::new()).retryable());
        assert!(!Problem::IncompatibleVersion { required: 1 }.retryable());
        assert!(
            !Problem::OriginRefused {
                origin: "http://a".into(),
                bridge: "http://b".into()
            }
            .retryable()
        );
        assert!(!Problem::BadBridgeAddress("x".into()).retryable());
        assert!(Problem::NotOpened.retryable());
        assert!(Problem::BridgeUnreachable("http://b".into()).retryable());
        assert!(Problem::BridgeShuttingDown("http://b".into()).retryable());
        assert!(
            Problem::UpgradeFailed {
                bridge: "http://b".into(),
                cross_origin: true
            }
            .retryable()
        );
    }

    fn health(status: u16, body: &str) -> Probe {
        Probe::Health {
            status,
            body: body.into(),
        }
    }

    #[test]
    fn a_failed_handshake_is_explained_by_the_probe_across_origins() {
        // The development page on trunk's port, the bridge on its own.
        let bridge =
            BridgeAddr::locate("http:", "127.0.0.1:8081", Some("http://127.0.0.1:8080")).unwrap();
        let page = "http://127.0.0.1:8081";
        let p = Problem::after_failed_open(&bridge, page, &Probe::NoAnswer);
        assert_eq!(
            p,
            Problem::BridgeUnreachable("http://127.0.0.1:8080".into())
        );
        assert_eq!(
            p.to_string(),
            "Cannot reach the chat bridge at http://127.0.0.1:8080: nothing answers there. Is the bridge running?"
        );
        // Answers, but not to this origin: the only case called "origin refused".
        let p = Problem::after_failed_open(&bridge, page, &Probe::AnsweredWithoutCors);
        assert_eq!(
            p.to_string(),
            "The chat bridge at http://127.0.0.1:8080 does not allow pages from http://127.0.0.1:8081: start it with --allowed-origin http://127.0.0.1:8081 (or open the chat from the bridge's own address)."
        );
        assert_eq!(p.short(), "origin refused by the bridge");
        // Healthy and allowing this origin: not an origin problem.
        let p = Problem::after_failed_open(&bridge, page, &health(200, "ok\n"));
        assert_eq!(
            p,
            Problem::UpgradeFailed {
                bridge: "http://127.0.0.1:8080".into(),
                cross_origin: true
            }
        );
        let text = p.to_string();
        assert!(text.contains("allows this page's origin"), "{text}");
        assert!(text.contains("subprotocol"), "{text}");
        assert!(!text.contains("refused this page's origin"), "{text}");
        assert_eq!(
            Problem::after_failed_open(&bridge, page, &health(503, "shutting down\n")),
            Problem::BridgeShuttingDown("http://127.0.0.1:8080".into())
        );
        assert_eq!(
            Problem::after_failed_open(&bridge, page, &health(404, "draining\n")).to_string(),
            "The chat bridge at http://127.0.0.1:8080 is shutting down."
        );
        assert_eq!(
            Problem::after_failed_open(&bridge, page, &health(404, "Not Found")).to_string(),
            "Something answers at http://127.0.0.1:8080, but not as a dumdum bridge (its /healthz answered HTTP 404)."
        );
    }

    #[test]
    fn a_failed_handshake_on_the_same_origin_never_blames_the_origin_alone() {
        let bridge = BridgeAddr::locate("https:", "chat.example", None).unwrap();
        let page = "https://chat.example";
        let p = Problem::after_failed_open(&bridge, page, &health(200, "ok\n"));
        assert_eq!(
            p,
            Problem::UpgradeFailed {
                bridge: "https://chat.example".into(),
                cross_origin: false
            }
        );
        let text = p.to_string();
        assert!(text.contains("reverse proxy"), "{text}");
        assert!(text.contains("trusted_proxies"), "{text}");
        // No CORS is involved on one origin: not evidence of a refused origin.
        assert!(matches!(
            Problem::after_failed_open(&bridge, page, &Probe::AnsweredWithoutCors),
            Problem::UpgradeFailed { .. }
        ));
        assert_eq!(
            Problem::after_failed_open(&bridge, page, &Probe::NoAnswer),
            Problem::BridgeUnreachable("https://chat.example".into())
        );
    }
}
