//! Permalinks: `#<channel>/<id>`, the channel percent-encoded where it
//! needs to be (everything but ASCII letters, digits and `-._~`), the id
//! the message's snowflake in decimal. Opening one (on load or on a
//! `hashchange`) selects the channel and reveals the message. A message
//! row's element id is [`row_id`].

use dumdum_protocol::Snowflake;

/// The element id of a message's row: `m-<id>`.
pub fn row_id(id: Snowflake) -> String {
    format!("m-{}", id.0)
}

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The permalink of message `id` in `channel`, with its `#`.
pub fn permalink(channel: &str, id: Snowflake) -> String {
    let mut s = String::with_capacity(channel.len() + 24);
    s.push('#');
    for b in channel.bytes() {
        if plain(b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.push('/');
    s.push_str(&id.0.to_string());
    s
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = hex(bytes.next()?)?;
            let lo = hex(bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The channel and message a location hash (with or without its `#`)
/// points at, or `None` when it is not a permalink.
pub fn parse(hash: &str) -> Option<(String, Snowflake)> {
    let h = hash.strip_prefix('#').unwrap_or(hash);
    let (channel, id) = h.rsplit_once('/')?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = id.parse().ok()?;
    let channel = decode(channel)?;
    if channel.is_empty() || channel.len() > dumdum_protocol::MAX_CHANNEL_LEN {
        return None;
    }
    Some((channel, Snowflake(id)))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn links_read_back() {
        assert_eq!(permalink("general", Snowflake(42)), "#general/42");
        assert_eq!(permalink("a b/ü", Snowflake(7)), "#a%20b%2F%C3%BC/7");
        assert_eq!(
            parse("#a%20b%2F%C3%BC/7"),
            Some(("a b/ü".into(), Snowflake(7)))
        );
        assert_eq!(parse("general/42"), Some(("general".into(), Snowflake(42))));
        assert_eq!(row_id(Snowflake(42)), "m-42");
        for bad in [
            "",
            "#",
            "#general",
            "#general/",
            "#/5",
            "#g/x5",
            "#g/-1",
            "#%zz/1",
            "#%C3/1",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn every_channel_round_trips(channel in "\\PC{1,10}", id: u64) {
            let link = permalink(&channel, Snowflake(id));
            prop_assert_eq!(link.matches('/').count(), 1);
            if channel.len() <= dumdum_protocol::MAX_CHANNEL_LEN {
                prop_assert_eq!(parse(&link), Some((channel, Snowflake(id))));
            }
        }
    }
}
