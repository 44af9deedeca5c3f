//! The bridge's settings: [`Config`] for the library, [`FileConfig`] for the
//! TOML file that `--config` reads, and parsers for durations and sizes.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::Error;
use crate::tls::Fingerprint;

/// The longest `resume_grace` accepted (a held session keeps its upstream
/// connection and its nick; past a day that is a leak, and far larger
/// values would overflow the clock's arithmetic).
pub const MAX_RESUME_GRACE: Duration = Duration::from_secs(24 * 3600);

/// The name of the embedded server in `/api/servers`.
pub const EMBEDDED_NAME: &str = "local";

/// One upstream dumdum server the bridge may connect to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The name clients choose it by (never its address).
    pub name: String,
    /// `HOST:PORT`.
    pub address: String,
    /// A PEM file of certificates trusted for this upstream besides the
    /// system roots: a server certificate that is one of them is pinned
    /// (trusted whatever its CA flag, names or issuer, as the reference
    /// client trusts the `.crt` it is given); the others act as CAs.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// SHA-256 fingerprints of server certificates pinned for this upstream
    /// (`fingerprint = "sha256:AB:CD:…"`, or a list of them).
    #[serde(default, deserialize_with = "fingerprints")]
    pub fingerprint: Vec<Fingerprint>,
    /// The name used for SNI and certificate verification; defaults to the
    /// host part of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Refuse the server if it does not offer TLS (answers HELLO(0)).
    #[serde(default)]
    pub require_tls: bool,
}

impl UpstreamConfig {
    /// An upstream named `name` at `address`, without TLS settings.
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        UpstreamConfig {
            name: name.into(),
            address: address.into(),
            ca: None,
            fingerprint: Vec::new(),
            server_name: None,
            require_tls: false,
        }
    }

    /// Parses the command-line form `NAME=HOST:PORT`.
    pub fn parse_flag(s: &str) -> Result<Self, Error> {
        let (name, address) = s
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("--upstream {s:?}: expected NAME=HOST:PORT")))?;
        let up = UpstreamConfig::new(name.trim(), address.trim());
        up.validate()?;
        Ok(up)
    }

    /// The host part of the address (without brackets for IPv6).
    pub fn host(&self) -> &str {
        let a = self.address.as_str();
        if let Some(rest) = a.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        a.rsplit_once(':').map_or(a, |(h, _)| h)
    }

    /// The SNI / verification name.
    pub fn tls_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or_else(|| self.host())
    }

    fn validate(&self) -> Result<(), Error> {
        if self.name.is_empty() {
            return Err(Error::Config("an upstream has an empty name".into()));
        }
        let port_ok = self
            .address
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(Error::Config(format!(
                "upstream {:?}: address {:?} is not HOST:PORT",
                self.name, self.address
            )));
        }
        Ok(())
    }
}

/// `fingerprint = "sha256:…"` or `fingerprint = ["sha256:…", "…"]`; each
/// one checked, so a mistyped one stops the bridge at startup in words.
fn fingerprints<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Fingerprint>, D::Error> {
    use serde::de::Error as _;
    let texts = match toml::Value::deserialize(d)? {
        toml::Value::String(s) => vec![s],
        toml::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                other => Err(D::Error::custom(format!(
                    "a fingerprint is a string like \"sha256:AB:CD:…\", found {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(D::Error::custom(format!(
                "fingerprint is a string like \"sha256:AB:CD:…\" or a list of them, found {other}"
            )));
        }
    };
    texts
        .iter()
        .map(|t| t.parse::<Fingerprint>().map_err(D::Error::custom))
        .collect()
}

/// Everything the bridge needs to run. `Config::default()` is the bridge
/// with its embedded server and the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Upstream servers; the first is the default. Empty = the embedded
    /// server `local` is the only and default upstream.
    pub upstreams: Vec<UpstreamConfig>,
    /// The web root (the built page).
    pub www: PathBuf,
    /// Serve the page built into the binary (`cargo xtask release`)
    /// instead of `www`; by default, whenever the binary has one.
    pub embedded_page: bool,
    /// Serve HTTPS/WSS with this certificate chain (PEM) ...
    pub tls_cert: Option<PathBuf>,
    /// ... and this private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Origins allowed to open the WebSocket besides the bridge's own.
    pub allowed_origins: Vec<String>,
    /// Also expose the embedded server over TCP here (with TLS when
    /// `tls_cert`/`tls_key` are set).
    pub embedded_listen: Option<SocketAddr>,
    /// The embedded server's channels.
    pub embedded_channels: Vec<String>,
    /// Messages the embedded server keeps per channel.
    pub embedded_max_messages: usize,
    /// The largest WebSocket frame accepted from a client, in bytes (1009 above).
    pub max_frame_size: usize,
    /// Client frames held while the upstream is not ready for them (1008 above).
    pub max_pending_frames: usize,
    /// Bytes queued towards one browser before it is cut off as too slow (1008).
    pub send_queue_bytes: usize,
    /// Time allowed for the session handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to connect to an upstream (and for its TLS handshake).
    pub connect_timeout: Duration,
    /// Per IP address: open WebSockets, and sessions (held ones included).
    pub max_sessions_per_ip: usize,
    /// Sessions in total (attached or held for resumption).
    pub max_sessions: usize,
    /// Concurrent connections accepted on the HTTP listener (TLS handshakes
    /// included), and on `embedded_listen`; more wait (HTTP) or are closed
    /// (embedded).
    pub max_connections: usize,
    /// How long a session whose WebSocket dropped is held for resumption
    /// (zero = never held).
    pub resume_grace: Duration,
    /// Server bytes buffered for a held session before it is given up.
    pub resume_buffer: usize,
    /// Server bytes buffered by all held sessions together; past it, the
    /// held sessions with the largest buffers end first.
    pub resume_memory: usize,
    /// Time allowed for a client of the HTTP listener to send a complete
    /// request head (from the connection's start, or after the previous
    /// response on a kept-alive connection); the connection closes after it.
    pub header_timeout: Duration,
    /// How long shutdown waits for sessions to close.
    pub shutdown_timeout: Duration,
    /// The name of this bridge instance, sent in Again and Success so a
    /// load balancer can route resumes to it (`/ws?node=NAME`).
    pub node: Option<String>,
    /// Peers whose forwarding headers (`X-Forwarded-For`,
    /// `X-Forwarded-Proto`, `X-Forwarded-Host`) are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// On the first shutdown request: how long to drain (refuse new
    /// sessions, serve resumes, then close the rest with 1012). Zero = shut
    /// down at once with 1001.
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            upstreams: Vec::new(),
            www: PathBuf::from("target/www"),
            embedded_page: crate::assets::embedded().is_some(),
            tls_cert: None,
            tls_key: None,
            allowed_origins: Vec::new(),
            embedded_listen: None,
            embedded_channels: vec!["general".into(), "random".into()],
            embedded_max_messages: 1000,
            max_frame_size: 8 * 1024,
            max_pending_frames: 64,
            send_queue_bytes: 256 * 1024,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_sessions_per_ip: 64,
            max_sessions: 10_000,
            max_connections: 10_000,
            resume_grace: Duration::from_secs(60),
            resume_buffer: 1 << 20,
            resume_memory: 256 << 20,
            header_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            node: None,
            trusted_proxies: Vec::new(),
            drain_timeout: Duration::ZERO,
        }
    }
}

impl Config {
    /// Checks the settings that can be checked without touching files.
    pub fn validate(&self) -> Result<(), Error> {
        let mut names = std::collections::HashSet::new();
        for up in &self.upstreams {
            up.validate()?;
            if !names.insert(up.name.as_str()) {
                return Err(Error::Config(format!(
                    "upstream name {:?} is used twice",
                    up.name
                )));
            }
            if self.embedded_listen.is_some() && up.name == EMBEDDED_NAME {
                return Err(Error::Config(format!(
                    "upstream name {EMBEDDED_NAME:?} is reserved for the embedded server"
                )));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(Error::Config(
                "--tls-cert and --tls-key must be given together".into(),
            ));
        }
        if self.max_frame_size < 1100 {
            return Err(Error::Config(
                "max frame size must be at least 1100 bytes (a whole dumdum message)".into(),
            ));
        }
        if self.header_timeout.is_zero() {
            return Err(Error::Config("header timeout must be more than 0".into()));
        }
        if self.max_connections == 0 {
            return Err(Error::Config("max connections must be at least 1".into()));
        }
        if self.resume_grace > MAX_RESUME_GRACE {
            return Err(Error::Config(format!(
                "resume grace {:?} is longer than the maximum of {} hours",
                self.resume_grace,
                MAX_RESUME_GRACE.as_secs() / 3600
            )));
        }
        if let Some(node) = &self.node
            && !valid_node_name(node)
        {
            return Err(Error::Config(format!(
                "node name {node:?}: use 1 to 64 letters, digits, '-', '_' or '.' \
                 (it goes in Again and Success and in /ws?node=)"
            )));
        }
        if self.drain_timeout > MAX_RESUME_GRACE {
            return Err(Error::Config(format!(
                "drain timeout {:?} is longer than the maximum of {} hours",
                self.drain_timeout,
                MAX_RESUME_GRACE.as_secs() / 3600
            )));
        }
        if self.embedded_channels.is_empty() {
            return Err(Error::Config(
                "the embedded server needs at least one channel".into(),
            ));
        }
        Ok(())
    }

    /// Whether the embedded server runs.
    pub fn embedded_enabled(&self) -> bool {
        self.upstreams.is_empty() || self.embedded_listen.is_some()
    }

    /// Whether forwarding headers from `peer` are believed.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(peer))
    }
}

/// A node name: safe in a URL query and a log line without escaping.
fn valid_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An address range, `10.0.0.0/8` or `fd00::/8`; a bare address is the
/// range of that address alone (/32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                ip.to_bits() & mask == net.to_bits() & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                ip.to_bits() & mask == net.to_bits() & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub(crate) fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net = unmap(addr.parse::<IpAddr>().map_err(|_| {
            format!("{s:?} is not an address or range (try 10.0.0.5, 10.0.0.0/8 or fd00::/8)")
        })?);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The TOML file (`--config`). Every key is optional; command-line flags win.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `listen = "127.0.0.1:8080"`
    pub listen: Option<SocketAddr>,
    /// `[[upstream]]` tables.
    #[serde(default)]
    pub upstream: Vec<UpstreamConfig>,
    /// `www = "target/www"`
    pub www: Option<PathBuf>,
    /// `tls_cert = "bridge.crt"`
    #[serde(alias = "tls-cert")]
    pub tls_cert: Option<PathBuf>,
    /// `tls_key = "bridge.key"`
    #[serde(alias = "tls-key")]
    pub tls_key: Option<PathBuf>,
    /// `allowed_origin = ["https://chat.example.org"]`
    #[serde(default, alias = "allowed-origin", alias = "allowed_origins")]
    pub allowed_origin: Vec<String>,
    /// `embedded_listen = "127.0.0.1:6667"`
    #[serde(alias = "embedded-listen")]
    pub embedded_listen: Option<SocketAddr>,
    /// `resume_grace = "60s"` (or a number of seconds)
    #[serde(default, alias = "resume-grace")]
    pub resume_grace: Option<DurationValue>,
    /// `resume_buffer = "1MiB"` (or a number of bytes)
    #[serde(default, alias = "resume-buffer")]
    pub resume_buffer: Option<SizeValue>,
    /// `resume_memory = "256MiB"` (or a number of bytes)
    #[serde(default, alias = "resume-memory")]
    pub resume_memory: Option<SizeValue>,
    /// `header_timeout = "10s"`
    #[serde(default, alias = "header-timeout")]
    pub header_timeout: Option<DurationValue>,
    /// `max_frame_size = 8192`
    #[serde(default, alias = "max-frame-size")]
    pub max_frame_size: Option<SizeValue>,
    /// `max_sessions_per_ip = 64`
    #[serde(alias = "max-sessions-per-ip")]
    pub max_sessions_per_ip: Option<usize>,
    /// `max_connections = 10000`
    #[serde(alias = "max-connections")]
    pub max_connections: Option<usize>,
    /// `max_sessions = 10000`
    #[serde(alias = "max-sessions")]
    pub max_sessions: Option<usize>,
    /// `handshake_timeout = "10s"`
    #[serde(default, alias = "handshake-timeout")]
    pub handshake_timeout: Option<DurationValue>,
    /// `connect_timeout = "10s"`
    #[serde(default, alias = "connect-timeout")]
    pub connect_timeout: Option<DurationValue>,
    /// `log_format = "json"` (or `"text"`)
    #[serde(default, alias = "log-format")]
    pub log_format: Option<crate::os::LogFormat>,
    /// `node = "b1"`
    pub node: Option<String>,
    /// `trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]`
    #[serde(default, alias = "trusted-proxies", alias = "trusted_proxy")]
    pub trusted_proxies: Vec<Cidr>,
    /// `drain_timeout = "30s"`
    #[serde(default, alias = "drain-timeout")]
    pub drain_timeout: Option<DurationValue>,
    /// `threads = 2`
    pub threads: Option<std::num::NonZeroUsize>,
}

impl FileConfig {
    /// Parses the TOML text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }
}

/// A duration written as seconds (`60`) or with a unit (`"60s"`, `"500ms"`, `"2m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub struct DurationValue(pub Duration);

impl TryFrom<toml::Value> for DurationValue {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Integer(n) => u64::try_from(n)
                .map(|n| DurationValue(Duration::from_secs(n)))
                .map_err(|_| "a duration cannot be negative".to_string()),
            toml::Value::String(s) => parse_duration(&s).map(DurationValue),
            other => Err(format!("expected a duration, found {other}")),
        }
    }
}

/// A size written as bytes (`1048576`) or with a unit (`"1MiB"`, `"64KiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub struct SizeValue(pub usize);

impl TryFrom<toml::Value> for SizeValue {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Integer(n) => usize::try_from(n)
                .map(SizeValue)
                .map_err(|_| "a size cannot be negative".to_string()),
            toml::Value::String(s) => parse_size(&s).map(SizeValue),
            other => Err(format!("expected a size, found {other}")),
        }
    }
}

fn split_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (&s[..at], s[at..].trim())
}

/// Parses `60`, `60s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = split_unit(s);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 60s, 500ms, 2m)"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" | "min" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    }
}

/// Parses `1048576`, `64KiB`, `1MiB`, `1MB`, `512K`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let (num, unit) = split_unit(s);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 1MiB, 64KiB, 4096)"))?;
    let mult: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use KiB or MiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn upstream_flag_and_host() {
        let up = UpstreamConfig::parse_flag("main=chat.example.org:6667").unwrap();
        assert_eq!(up.name, "main");
        assert_eq!(up.host(), "chat.example.org");
        assert_eq!(up.tls_name(), "chat.example.org");
        let v6 = UpstreamConfig::new("v6", "[::1]:6667");
        assert_eq!(v6.host(), "::1");
        assert!(UpstreamConfig::parse_flag("nope").is_err());
        assert!(UpstreamConfig::parse_flag("a=host").is_err());
        assert!(UpstreamConfig::parse_flag("a=host:99999").is_err());
    }

    #[test]
    fn toml_file() {
        let f = FileConfig::parse(
            r#"
            listen = "0.0.0.0:8443"
            tls_cert = "c.pem"
            tls-key = "k.pem"
            allowed_origin = ["https://chat.example.org"]
            resume_grace = "90s"
            resume_buffer = "2MiB"
            resume_memory = "64MiB"
            header_timeout = "5s"
            [[upstream]]
            name = "main"
            address = "127.0.0.1:6667"
            ca = "dumdum.crt"
            server_name = "localhost"
            require_tls = true
            "#,
        )
        .unwrap();
        assert_eq!(f.upstream.len(), 1);
        assert!(f.upstream[0].require_tls);
        assert_eq!(f.upstream[0].tls_name(), "localhost");
        assert_eq!(f.resume_grace, Some(DurationValue(Duration::from_secs(90))));
        assert_eq!(f.resume_buffer, Some(SizeValue(2 << 20)));
        assert_eq!(f.resume_memory, Some(SizeValue(64 << 20)));
        assert_eq!(
            f.header_timeout,
            Some(DurationValue(Duration::from_secs(5)))
        );
        assert_eq!(f.tls_key, Some(PathBuf::from("k.pem")));
        assert!(FileConfig::parse("bogus = 1").is_err());
    }

    const FP: &str = "sha256:7F:0E:5B:94:50:EE:C5:12:95:80:E5:73:A7:41:DA:53:CE:AC:68:DD:92:0D:8C:6B:75:19:71:48:3A:DF:1C:CB";

    #[test]
    fn fingerprints_in_toml() {
        let one = FileConfig::parse(&format!(
            "[[upstream]]\nname = \"home\"\naddress = \"127.0.0.1:6667\"\nfingerprint = \"{FP}\"\n"
        ))
        .unwrap();
        assert_eq!(
            one.upstream[0].fingerprint,
            [FP.parse::<Fingerprint>().unwrap()]
        );
        let lower = FP.to_lowercase().replace(':', "").replace("sha256", "");
        let two = FileConfig::parse(&format!(
            "[[upstream]]\nname = \"home\"\naddress = \"127.0.0.1:6667\"\n\
             fingerprint = [\"{FP}\", \"{lower}\"]\n"
        ))
        .unwrap();
        assert_eq!(two.upstream[0].fingerprint.len(), 2);
        assert_eq!(
            two.upstream[0].fingerprint[0],
            two.upstream[0].fingerprint[1]
        );
        let none = FileConfig::parse("[[upstream]]\nname = \"a\"\naddress = \"h:1\"\n").unwrap();
        assert!(none.upstream[0].fingerprint.is_empty());
    }

    #[test]
    fn bad_fingerprints_are_a_config_error_in_words() {
        for (value, words) in [
            ("\"sha256:AB:CD\"", "64 hex digits, this one has 4"),
            ("\"md5:AB:CD\"", "only SHA-256"),
            ("[\"AB:XY\"]", "'X' is not a hex digit"),
            ("42", "or a list of them"),
            ("[42]", "a fingerprint is a string"),
        ] {
            let e = FileConfig::parse(&format!(
                "[[upstream]]\nname = \"a\"\naddress = \"h:1\"\nfingerprint = {value}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(words), "{value}: {e}");
            assert!(e.contains("fingerprint"), "{value}: {e}");
        }
    }

    #[test]
    fn resume_grace_has_an_upper_bound() {
        let mut c = Config {
            resume_grace: MAX_RESUME_GRACE,
            ..Config::default()
        };
        assert!(c.validate().is_ok());
        c.resume_grace = Duration::from_secs(u64::MAX);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("resume grace"), "{e}");
        c.resume_grace = MAX_RESUME_GRACE + Duration::from_secs(1);
        assert!(c.validate().is_err());
    }

    #[test]
    fn cidr_ranges_and_bare_addresses() {
        let r: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(r.contains("10.1.200.3".parse().unwrap()));
        assert!(!r.contains("10.2.0.1".parse().unwrap()));
        assert!(
            r.contains("::ffff:10.1.0.9".parse().unwrap()),
            "IPv4-mapped IPv6"
        );
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        for bad in ["10.0.0.0/33", "fd00::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn scale_out_settings_in_toml() {
        let f = FileConfig::parse(
            r#"
            node = "b1"
            trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
            drain_timeout = "30s"
            "#,
        )
        .unwrap();
        assert_eq!(f.node.as_deref(), Some("b1"));
        assert_eq!(f.trusted_proxies.len(), 2);
        assert_eq!(
            f.drain_timeout,
            Some(DurationValue(Duration::from_secs(30)))
        );
        let e = FileConfig::parse("trusted_proxies = [\"10.0.0.0/40\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("prefix length"), "{e}");
        let mut c = Config {
            node: Some("b1".into()),
            ..Config::default()
        };
        assert!(c.validate().is_ok());
        c.node = Some("no spaces".into());
        assert!(c.validate().unwrap_err().to_string().contains("node name"));
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2 fortnights").is_err());
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("lots").is_err());
    }
}
