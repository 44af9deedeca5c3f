//! Why a connection failed or ended, in plain words.

/// Close codes of the bridge (see `bridge-ws.md`).
pub mod code {
    /// Normal close.
    pub const NORMAL: u16 = 1000;
    /// The bridge is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// No close frame: the connection was cut.
    pub const ABNORMAL: u16 = 1006;
    /// Malformed dumdum frame from the client.
    pub const MALFORMED: u16 = 1007;
    /// Policy violation.
    pub const POLICY: u16 = 1008;
    /// Frame too large.
    pub const TOO_BIG: u16 = 1009;
    /// Upstream unreachable.
    pub const UPSTREAM_UNREACHABLE: u16 = 4001;
    /// Upstream closed the connection.
    pub const UPSTREAM_CLOSED: u16 = 4002;
    /// Upstream TLS failed.
    pub const UPSTREAM_TLS: u16 = 4003;
    /// Unknown server name.
    pub const UNKNOWN_SERVER: u16 = 4004;
}

/// Something that ended or prevented the chat connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The page cannot reach the bridge at all.
    #[error("Cannot reach the chat bridge.")]
    BridgeUnreachable,
    /// The bridge answers HTTP but refused the WebSocket (its origin check).
    #[error("The bridge refused this page's origin: open the chat from the bridge's own address.")]
    OriginRefused,
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
            code::MALFORMED | code::POLICY | code::TOO_BIG => {
                Problem::Protocol(if reason.is_empty() {
                    format!("the bridge closed the connection with code {code}")
                } else {
                    reason
                })
            }
            _ if !opened => Problem::BridgeUnreachable,
            code::ABNORMAL | code::NORMAL if !reason.is_empty() && upstream.is_some() => {
                Problem::ServerClosed(reason)
            }
            code::ABNORMAL | code::NORMAL => Problem::ConnectionLost,
            code => Problem::Other { code, reason },
        }
    }

    /// A few words for the status line (the full text is the `Display`).
    pub fn short(&self) -> &'static str {
        match self {
            Problem::BridgeUnreachable => "bridge unreachable",
            Problem::OriginRefused => "origin refused by the bridge",
            Problem::ServerUnreachable(_) => "chat server unreachable",
            Problem::ServerClosed(_) => "chat server closed the connection",
            Problem::TlsRefused(_) => "TLS to the chat server refused",
            Problem::UnknownServer(_) => "unknown server",
            Problem::IncompatibleVersion { .. } => "incompatible protocol version",
            Problem::ConnectionLost => "connection lost",
            Problem::NickInUse(_) => "nickname still in use",
            Problem::ResumeFailed(_) => "session could not be resumed",
            Problem::BridgeRestarting => "bridge restarting",
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
                | Problem::OriginRefused
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
            Problem::BridgeUnreachable
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
        assert!(!Problem::OriginRefused.retryable());
    }
}
