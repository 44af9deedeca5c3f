//! Formatting and validation rules of the page. Pure functions, tested natively.

use dumdum_protocol::client::validate_nick;
use dumdum_protocol::{Error as ProtocolError, MAX_CONTENT_LEN, MAX_NICK_LEN};

/// A stable hue (0..360) for a nick, so a person keeps their colour across
/// reloads and between users. FNV-1a over the UTF-8 bytes.
pub fn nick_hue(nick: &str) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in nick.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    // Fold the high bits in: FNV's low bits alone cluster for short inputs.
    let folded = hash ^ (hash >> 16);
    (folded % 360) as u16
}

/// Why a nick cannot be used, in words, or `None` when it can.
pub fn nick_problem(nick: &str) -> Option<String> {
    match validate_nick(nick) {
        Ok(()) => None,
        Err(ProtocolError::EmptyNick) => Some("Choose a nickname.".into()),
        Err(ProtocolError::Encode(e)) => Some(format!(
            "Too long: {} bytes in UTF-8, at most {MAX_NICK_LEN}.",
            e.len
        )),
        Err(e) => Some(e.to_string()),
    }
}

/// How a draft message measures against the content limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCount {
    /// UTF-8 bytes used.
    pub used: usize,
    /// The limit.
    pub limit: usize,
}

impl ByteCount {
    /// Measures `text`.
    pub fn of(text: &str) -> Self {
        ByteCount {
            used: text.len(),
            limit: MAX_CONTENT_LEN,
        }
    }

    /// Whether the text is over the limit.
    pub fn over(self) -> bool {
        self.used > self.limit
    }

    /// Whether the counter should draw attention (90% used or more).
    pub fn near(self) -> bool {
        self.used * 10 >= self.limit * 9
    }

    /// The counter's label, for example "12 / 1024".
    pub fn label(self) -> String {
        format!("{} / {}", self.used, self.limit)
    }
}

/// Why a draft cannot be sent (content rules only), or `None` when it can.
pub fn draft_problem(text: &str) -> Option<String> {
    let count = ByteCount::of(text);
    if text.trim().is_empty() {
        Some("Type a message.".into())
    } else if count.over() {
        Some(format!(
            "Too long by {} bytes: a message holds at most {} bytes of UTF-8.",
            count.used - count.limit,
            count.limit
        ))
    } else {
        None
    }
}

/// A piece of message content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Plain text (rendered as a text node, never as HTML).
    Text(&'a str),
    /// An http(s) URL.
    Link(&'a str),
}

fn starts_with_scheme(s: &str) -> Option<usize> {
    for scheme in ["https://", "http://"] {
        if s.len() >= scheme.len()
            && s.is_char_boundary(scheme.len())
            && s[..scheme.len()].eq_ignore_ascii_case(scheme)
        {
            return Some(scheme.len());
        }
    }
    None
}

/// The length of the URL at the front of `s` (which starts with a scheme),
/// without trailing punctuation that usually ends a sentence.
fn url_len(s: &str, scheme_len: usize) -> usize {
    let end = s
        .char_indices()
        .find(|&(_, c)| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`'))
        .map_or(s.len(), |(i, _)| i);
    let mut url = &s[..end];
    while let Some(last) = url.chars().last() {
        let trim = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' => true,
            ')' => url.matches('(').count() < url.matches(')').count(),
            ']' => url.matches('[').count() < url.matches(']').count(),
            _ => false,
        };
        if !trim {
            break;
        }
        url = &url[..url.len() - last.len_utf8()];
    }
    if url.len() > scheme_len { url.len() } else { 0 }
}

/// Splits message content into text and http(s) links.
pub fn split_links(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut plain_start = 0;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let at_boundary = text[..i]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric());
        if at_boundary && let Some(scheme_len) = starts_with_scheme(rest) {
            let len = url_len(rest, scheme_len);
            if len > 0 {
                if plain_start < i {
                    out.push(Segment::Text(&text[plain_start..i]));
                }
                out.push(Segment::Link(&rest[..len]));
                i += len;
                plain_start = i;
                continue;
            }
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    if plain_start < text.len() {
        out.push(Segment::Text(&text[plain_start..]));
    }
    out
}

/// A calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Year.
    pub year: i64,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 0..24.
    pub hour: u32,
    /// 0..60.
    pub minute: u32,
    /// 0..60.
    pub second: u32,
}

impl DateTime {
    /// The local date and time of `unix_ms`, `offset_min` minutes east of UTC.
    pub fn from_unix_ms(unix_ms: u64, offset_min: i32) -> Self {
        let secs =
            i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX / 2) + i64::from(offset_min) * 60;
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = dumdum_protocol::calendar::civil_from_days(days);
        let (month, day) = (month as u32, day as u32);
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// The month's name in full ("December").
    pub fn month_name(&self) -> &'static str {
        MONTH_NAMES[(self.month as usize).saturating_sub(1) % 12]
    }
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The short time shown next to a message: "14:05" today, "22 Nov 14:05"
/// this year, "22 Nov 2025 14:05" before.
pub fn format_time(unix_ms: u64, offset_min: i32, now_ms: u64, now_offset_min: i32) -> String {
    let t = DateTime::from_unix_ms(unix_ms, offset_min);
    let now = DateTime::from_unix_ms(now_ms, now_offset_min);
    let month = MONTHS[(t.month as usize).saturating_sub(1) % 12];
    if (t.year, t.month, t.day) == (now.year, now.month, now.day) {
        format!("{:02}:{:02}", t.hour, t.minute)
    } else if t.year == now.year {
        format!("{} {month} {:02}:{:02}", t.day, t.hour, t.minute)
    } else {
        format!("{} {month} {} {:02}:{:02}", t.day, t.year, t.hour, t.minute)
    }
}

/// The full local time, for a tooltip and the `datetime` attribute's
/// human counterpart: "2026-11-22 14:05:09".
pub fn format_full_time(unix_ms: u64, offset_min: i32) -> String {
    let t = DateTime::from_unix_ms(unix_ms, offset_min);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// An ISO 8601 UTC timestamp for `<time datetime>`.
pub fn iso_utc(unix_ms: u64) -> String {
    let t = DateTime::from_unix_ms(unix_ms, 0);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// "in 5 s", "in 1 min 5 s": how long until a retry.
pub fn format_wait(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    if secs < 60 {
        format!("{secs} s")
    } else if secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{} min {} s", secs / 60, secs % 60)
    }
}

/// `s` with every byte but the unreserved characters of RFC 3986
/// (`A-Z a-z 0-9 - . _ ~`) percent-encoded, for a query value.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where the page finds its bridge: the origin (`http://host:port` or
/// `https://host:port`) that serves `/ws`, `/api/servers` and `/healthz`.
///
/// The page's own origin unless the page names another in
/// `<meta name="dumdum-bridge" content="…">` (left empty in the built page;
/// `trunk serve` fills it in, so the development page talks to the bridge
/// directly instead of through trunk's proxy, which drops the WebSocket
/// subprotocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeAddr {
    origin: String,
}

impl BridgeAddr {
    /// The bridge of a page at `page_protocol` (`location.protocol`, such
    /// as `"https:"`) and `page_host` (`location.host`), given the content
    /// of its `dumdum-bridge` meta tag. An address that is not a plain
    /// `http(s)://host[:port]` origin is refused with the reason in words.
    pub fn locate(
        page_protocol: &str,
        page_host: &str,
        configured: Option<&str>,
    ) -> Result<BridgeAddr, String> {
        let configured = configured.map(str::trim).unwrap_or("");
        if configured.is_empty() {
            let scheme = if page_protocol.eq_ignore_ascii_case("https:") {
                "https"
            } else {
                "http"
            };
            return Ok(BridgeAddr {
                origin: format!("{scheme}://{}", page_host.to_ascii_lowercase()),
            });
        }
        let lower = configured.to_ascii_lowercase();
        let (scheme, rest) = lower
            .split_once("://")
            .filter(|(s, _)| matches!(*s, "http" | "https"))
            .ok_or_else(|| format!("“{configured}” does not start with http:// or https://"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err(format!("“{configured}” names no host"));
        }
        if let Some(c) = authority.chars().find(|c| {
            matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control()
        }) {
            return Err(format!(
                "“{configured}” is not a bare origin (scheme, host and port only; found “{c}”)"
            ));
        }
        Ok(BridgeAddr {
            origin: format!("{scheme}://{authority}"),
        })
    }

    /// The origin, as in `http://127.0.0.1:8080`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// An HTTP URL of the bridge (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// The WebSocket URL (`ws://…/ws` or `wss://…/ws`).
    pub fn ws_url(&self) -> String {
        match self.origin.strip_prefix("https://") {
            Some(authority) => format!("wss://{authority}/ws"),
            None => format!("ws://{}/ws", self.origin.trim_start_matches("http://")),
        }
    }

    /// The WebSocket URL for a connection that resumes a session held by
    /// bridge instance `node` (`/ws?node=NAME`, so a load balancer routes
    /// it there), or plain `/ws` without one. Only the node's name goes in
    /// the URL, percent-encoded; never the session key.
    pub fn ws_url_at(&self, node: Option<&str>) -> String {
        let url = self.ws_url();
        match node {
            Some(n) if !n.is_empty() => format!(
                "{url}?{}={}",
                dumdum_protocol::session::NODE_PARAM,
                percent_encode(n)
            ),
            _ => url,
        }
    }

    /// Whether a page at `page_origin` (`location.origin`) reaches this
    /// bridge across origins (so the bridge must allow that origin).
    pub fn is_cross_origin(&self, page_origin: &str) -> bool {
        !self
            .origin
            .eq_ignore_ascii_case(page_origin.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nick_hue_is_stable_and_spread() {
        assert_eq!(nick_hue("alice"), nick_hue("alice"));
        assert!(nick_hue("alice") < 360);
        let hues: std::collections::HashSet<u16> = [
            "alice", "bob", "carol", "dave", "eve", "mallory", "trent", "peggy",
        ]
        .iter()
        .map(|n| nick_hue(n))
        .collect();
        assert!(hues.len() >= 6, "{hues:?}");
        // Fixed values: colours must not change between releases.
        assert_eq!(nick_hue(""), nick_hue(""));
        assert_ne!(nick_hue("alice"), nick_hue("Alice"));
    }

    #[test]
    fn nick_rules_follow_the_protocol() {
        assert_eq!(nick_problem(""), Some("Choose a nickname.".into()));
        assert_eq!(nick_problem("alice"), None);
        assert_eq!(nick_problem(&"a".repeat(32)), None);
        assert_eq!(
            nick_problem(&"a".repeat(33)),
            Some("Too long: 33 bytes in UTF-8, at most 32.".into())
        );
        // 11 characters, 33 bytes: counted in bytes, not characters.
        let wide = "€".repeat(11);
        assert_eq!(wide.chars().count(), 11);
        assert_eq!(
            nick_problem(&wide),
            Some("Too long: 33 bytes in UTF-8, at most 32.".into())
        );
        assert_eq!(nick_problem("<img src=x onerror=alert(1)>"), None);
    }

    #[test]
    fn byte_counter_counts_utf8_bytes() {
        let c = ByteCount::of("héllo");
        assert_eq!(c.used, 6);
        assert_eq!(c.label(), "6 / 1024");
        assert!(!c.over() && !c.near());
        assert!(ByteCount::of(&"a".repeat(922)).near());
        assert!(!ByteCount::of(&"a".repeat(921)).near());
        assert!(!ByteCount::of(&"a".repeat(1024)).over());
        assert!(ByteCount::of(&"a".repeat(1025)).over());
        assert!(ByteCount::of(&"€".repeat(342)).over());
    }

    #[test]
    fn drafts_need_content_within_the_limit() {
        assert_eq!(draft_problem("  \n "), Some("Type a message.".into()));
        assert_eq!(draft_problem("hi"), None);
        assert_eq!(draft_problem(&"a".repeat(1024)), None);
        assert_eq!(
            draft_problem(&"a".repeat(1030)),
            Some("Too long by 6 bytes: a message holds at most 1024 bytes of UTF-8.".into())
        );
    }

    #[test]
    fn links_are_split_out() {
        use Segment::{Link, Text};
        assert_eq!(split_links("no links"), [Text("no links")]);
        assert_eq!(split_links(""), Vec::<Segment<'_>>::new());
        assert_eq!(
            split_links("see https://example.com/a?b=1#c, then"),
            [
                Text("see "),
                Link("https://example.com/a?b=1#c"),
                Text(", then")
            ]
        );
        assert_eq!(
            split_links("(http://x.org/wiki/A_(b)) done."),
            [Text("("), Link("http://x.org/wiki/A_(b)"), Text(") done.")]
        );
        assert_eq!(
            split_links("HTTPS://EXAMPLE.COM."),
            [Link("HTTPS://EXAMPLE.COM"), Text(".")]
        );
        assert_eq!(split_links("https:// alone"), [Text("https:// alone")]);
        assert_eq!(split_links("xhttps://no"), [Text("xhttps://no")]);
        assert_eq!(
            split_links("a\nhttp://b.c\nd"),
            [Text("a\n"), Link("http://b.c"), Text("\nd")]
        );
        assert_eq!(
            split_links("<a href=\"http://e.vil\">"),
            [Text("<a href=\""), Link("http://e.vil"), Text("\">")]
        );
        assert_eq!(
            split_links("javascript:alert(1)"),
            [Text("javascript:alert(1)")]
        );
        assert_eq!(
            split_links("é https://ü.de/ä ok"),
            [Text("é "), Link("https://ü.de/ä"), Text(" ok")]
        );
    }

    #[test]
    fn dates_are_converted_exactly() {
        // 2026-11-22T14:05:09Z
        let ms = 1_795_356_309_000;
        assert_eq!(iso_utc(ms), "2026-11-22T14:05:09Z");
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_full_time(0, 60), "1970-01-01 01:00:00");
        assert_eq!(format_full_time(0, -30), "1969-12-31 23:30:00");
    }

    #[test]
    fn times_are_short_when_recent() {
        let day = 86_400_000;
        let t = 1_795_356_309_000; // 2026-11-22 14:05:09 UTC
        assert_eq!(format_time(t, 0, t + 1000, 0), "14:05");
        assert_eq!(format_time(t, 120, t + 1000, 120), "16:05");
        assert_eq!(format_time(t, 0, t + 3 * day, 0), "22 Nov 14:05");
        assert_eq!(format_time(t, 0, t + 60 * day, 0), "22 Nov 2026 14:05");
    }

    #[test]
    fn waits_read_naturally() {
        assert_eq!(format_wait(1), "1 s");
        assert_eq!(format_wait(4200), "5 s");
        assert_eq!(format_wait(60_000), "1 min");
        assert_eq!(format_wait(65_000), "1 min 5 s");
    }

    #[test]
    fn the_bridge_is_the_pages_origin_by_default() {
        for meta in [None, Some(""), Some("  ")] {
            let b = BridgeAddr::locate("http:", "127.0.0.1:8080", meta).unwrap();
            assert_eq!(b.origin(), "http://127.0.0.1:8080");
            assert_eq!(b.ws_url(), "ws://127.0.0.1:8080/ws");
            assert_eq!(b.url("/healthz"), "http://127.0.0.1:8080/healthz");
            assert!(!b.is_cross_origin("http://127.0.0.1:8080"));
        }
        let b = BridgeAddr::locate("https:", "Chat.Example", None).unwrap();
        assert_eq!(b.ws_url(), "wss://chat.example/ws");
        assert_eq!(b.ws_url_at(None), "wss://chat.example/ws");
        assert_eq!(b.ws_url_at(Some("")), "wss://chat.example/ws");
        assert_eq!(b.ws_url_at(Some("b1")), "wss://chat.example/ws?node=b1");
        assert_eq!(
            b.ws_url_at(Some("eu west&x=1/é")),
            "wss://chat.example/ws?node=eu%20west%26x%3D1%2F%C3%A9"
        );
        assert!(!b.is_cross_origin("https://chat.example"));
        assert!(b.is_cross_origin("http://chat.example"));
    }

    #[test]
    fn a_configured_bridge_must_be_a_bare_origin() {
        let b = BridgeAddr::locate("http:", "127.0.0.1:8081", Some(" http://127.0.0.1:8080/ "))
            .unwrap();
        assert_eq!(b.origin(), "http://127.0.0.1:8080");
        assert_eq!(b.ws_url(), "ws://127.0.0.1:8080/ws");
        assert_eq!(b.url("/api/servers"), "http://127.0.0.1:8080/api/servers");
        assert!(b.is_cross_origin("http://127.0.0.1:8081"));
        let b = BridgeAddr::locate("http:", "x", Some("HTTPS://[::1]:8443")).unwrap();
        assert_eq!(b.ws_url(), "wss://[::1]:8443/ws");
        for bad in [
            "127.0.0.1:8080",
            "ws://127.0.0.1:8080",
            "ftp://x",
            "http://",
            "http:///",
            "http://127.0.0.1:8080/ws",
            "http://a b",
            "http://user@host",
            "http://host?x",
        ] {
            let e = BridgeAddr::locate("http:", "x", Some(bad)).unwrap_err();
            assert!(e.contains(bad.trim()), "{bad}: {e}");
        }
    }
}
