//! What the bridge asks of the operating system at start: file descriptors
//! enough for its connection caps, and logs that suit where they go.

use std::io::IsTerminal as _;

use crate::Config;

/// Descriptors kept aside for listeners, the log, the page's files and
/// whatever the runtime opens.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime and
/// nginx do (the soft default, often 1024, is far below what a busy bridge
/// holds). Returns the soft limit now in force.
pub fn raise_descriptor_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The most descriptors the configured caps can hold open at once: one per
/// HTTP connection, one more per session with a TCP upstream (attached or
/// held), one per `--embedded-listen` connection, plus a reserve.
pub fn descriptors_needed(config: &Config) -> u64 {
    let connections = config.max_connections as u64;
    let upstream = if config.upstreams.is_empty() {
        0 // the embedded server is an in-memory pipe
    } else {
        config.max_sessions as u64
    };
    let embedded = if config.embedded_listen.is_some() {
        connections
    } else {
        0
    };
    connections + upstream + embedded + RESERVED_DESCRIPTORS
}

/// A warning in words when the caps do not fit in `limit` descriptors.
pub fn descriptor_warning(config: &Config, limit: u64) -> Option<String> {
    let needed = descriptors_needed(config);
    (needed > limit).then(|| {
        let per_session = if config.upstreams.is_empty() {
            "one per connection"
        } else {
            "two per session with an upstream"
        };
        format!(
            "the open-file limit is {limit}, but max_connections = {} can need up to {needed} \
             descriptors ({per_session}): past the limit new connections fail. Raise the limit \
             (LimitNOFILE= in the systemd unit, `ulimit -n`) or lower max_connections",
            config.max_connections
        )
    })
}

/// Worker threads when neither `--threads`, the config file nor
/// `TOKIO_WORKER_THREADS` says: one fewer than the CPUs, at least one.
///
/// The bridge runs beside its dumdum server (the reference one is a single
/// Python thread), and a relay's tasks are short: measured on 2 cores, a
/// second worker thread did not add throughput but cost 20–50 % more CPU
/// per delivered message (waking the idle worker to share each batch of
/// ready sessions), CPU taken from the server beside it.
pub fn default_threads(cpus: usize) -> usize {
    cpus.saturating_sub(1).max(1)
}

/// The worker threads to run: `chosen` (`--threads` or the config file),
/// else `TOKIO_WORKER_THREADS` as tokio reads it, else
/// [`default_threads`] of the CPUs this process may use.
pub fn worker_threads(chosen: Option<std::num::NonZeroUsize>) -> usize {
    if let Some(n) = chosen {
        return n.get();
    }
    if let Some(n) = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    default_threads(cpus)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; colours only when standard output is a
    /// terminal and `NO_COLOR` is not set.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

/// Whether text logs may carry ANSI colours: only on a terminal, and never
/// with `NO_COLOR` set (<https://no-color.org>).
pub fn colours_wanted(stdout_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global `tracing` subscriber: `RUST_LOG` filters (default
/// `info`), lines go to standard output in `format`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => {
            let ansi = colours_wanted(
                std::io::stdout().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            );
            builder.with_ansi(ansi).init();
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UpstreamConfig;

    #[test]
    fn one_core_is_left_to_the_server_beside_the_bridge() {
        assert_eq!(default_threads(0), 1);
        assert_eq!(default_threads(1), 1);
        assert_eq!(default_threads(2), 1);
        assert_eq!(default_threads(8), 7);
        let chosen = std::num::NonZeroUsize::new(5);
        assert_eq!(worker_threads(chosen), 5, "a chosen count wins");
    }

    #[test]
    fn descriptors_count_two_per_session_with_an_upstream() {
        let mut config = Config::default();
        assert_eq!(
            descriptors_needed(&config),
            10_000 + RESERVED_DESCRIPTORS,
            "embedded only: one per connection"
        );
        assert_eq!(descriptor_warning(&config, 20_000), None);

        config.upstreams = vec![UpstreamConfig::new("home", "127.0.0.1:6667")];
        assert_eq!(descriptors_needed(&config), 20_000 + RESERVED_DESCRIPTORS);
        let w = descriptor_warning(&config, 20_000).unwrap_or_default();
        assert!(
            w.contains("open-file limit is 20000")
                && w.contains("max_connections = 10000")
                && w.contains("two per session"),
            "{w}"
        );
        config.max_connections = 5_000;
        config.max_sessions = 5_000;
        assert_eq!(descriptor_warning(&config, 20_000), None);

        config.embedded_listen = Some(([127, 0, 0, 1], 0).into());
        assert_eq!(descriptors_needed(&config), 15_000 + RESERVED_DESCRIPTORS);
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours_wanted(true, None));
        assert!(!colours_wanted(false, None), "redirected: plain text");
        assert!(!colours_wanted(true, Some("1".as_ref())));
        assert!(
            colours_wanted(true, Some("".as_ref())),
            "empty NO_COLOR is unset"
        );
    }

    #[test]
    fn log_formats_parse() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
