//! Searching a channel's messages: case-insensitive substring matching of
//! the text and the nick, with the matched ranges for highlighting. Pure,
//! tested natively; the search panel and the engine's "search older" use the
//! same rules.
//!
//! Case is folded char by char by [`fold`], a small table of the cased
//! alphabets most chats use (Latin with its accented letters, Greek,
//! Cyrillic, Armenian, fullwidth Latin) rather than the standard library's
//! full Unicode tables, which would add kilobytes to the page. Other
//! letters match exactly as typed.

use std::ops::Range;
use std::rc::Rc;

use dumdum_protocol::ChatMessage;

use crate::format::DateTime;
use crate::state::SearchStatus;

/// Results listed in the search panel at most (newest first); the count
/// says how many matched in all.
pub const MAX_LISTED: usize = 100;

/// Older pages one "Search older" fetches at most before it pauses (and
/// offers to go on): 100 pages of the server's 100 messages.
pub const PAGES_PER_RUN: u32 = 100;

/// The lower case of `c` in Latin (Basic, Latin-1, Extended-A,
/// Extended Additional), Greek (final sigma folds to σ), Cyrillic,
/// Armenian and fullwidth Latin; `c` itself otherwise. One char always
/// folds to one char.
pub fn fold(c: char) -> char {
    let u = u32::from(c);
    let lower = match u {
        0x41..=0x5A | 0xC0..=0xD6 | 0xD8..=0xDE => u + 32,
        0x130 => 0x69,
        0x178 => 0xFF,
        0x100..=0x12F | 0x132..=0x137 | 0x14A..=0x177 if u % 2 == 0 => u + 1,
        0x139..=0x148 | 0x179..=0x17E if u % 2 == 1 => u + 1,
        0x386 => 0x3AC,
        0x388..=0x38A => u + 37,
        0x38C => 0x3CC,
        0x38E..=0x38F => u + 63,
        0x391..=0x3A1 | 0x3A3..=0x3AB => u + 32,
        0x3C2 => 0x3C3,
        0x400..=0x40F => u + 80,
        0x410..=0x42F => u + 32,
        0x460..=0x481 | 0x48A..=0x4BF | 0x4D0..=0x4FF if u % 2 == 0 => u + 1,
        0x4C0 => 0x4CF,
        0x4C1..=0x4CE if u % 2 == 1 => u + 1,
        0x531..=0x556 => u + 48,
        0x1E9E => 0xDF,
        0x1E00..=0x1E95 | 0x1EA0..=0x1EFF if u % 2 == 0 => u + 1,
        0xFF21..=0xFF3A => u + 32,
        _ => u,
    };
    char::from_u32(lower).unwrap_or(c)
}

/// A search term, prepared once: trimmed and case-folded ([`fold`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needle {
    folded: Vec<char>,
    ascii: Option<Vec<u8>>,
}

impl Needle {
    /// The term typed, or `None` when it is blank.
    pub fn new(query: &str) -> Option<Needle> {
        let query = query.trim();
        if query.is_empty() {
            return None;
        }
        let folded: Vec<char> = query.chars().map(fold).collect();
        let ascii = query
            .is_ascii()
            .then(|| query.bytes().map(|b| b.to_ascii_lowercase()).collect());
        Some(Needle { folded, ascii })
    }

    /// The byte ranges of `haystack` that match, in order, not overlapping.
    /// Each starts and ends on a char boundary of `haystack`.
    pub fn find(&self, haystack: &str) -> Vec<Range<usize>> {
        match &self.ascii {
            Some(n) if haystack.is_ascii() => find_ascii(haystack.as_bytes(), n),
            _ => self.find_chars(haystack),
        }
    }

    /// Whether `haystack` contains the term.
    pub fn is_in(&self, haystack: &str) -> bool {
        match &self.ascii {
            Some(n) if haystack.is_ascii() => next_ascii(haystack.as_bytes(), n, 0).is_some(),
            _ => self.match_at_chars(haystack, 0).is_some(),
        }
    }

    /// Whether the message's text or nick contains the term.
    pub fn matches(&self, m: &ChatMessage) -> bool {
        self.is_in(&m.content) || self.is_in(&m.nick)
    }

    /// The first match starting at or after byte `from`, char by char (any
    /// text): each char of the haystack folded, compared with the term.
    fn match_at_chars(&self, haystack: &str, from: usize) -> Option<Range<usize>> {
        let tail = haystack.get(from..)?;
        'start: for (i, _) in tail.char_indices() {
            let mut rest = tail[i..].char_indices();
            for &want in &self.folded {
                match rest.next() {
                    Some((_, c)) if fold(c) == want => {}
                    Some(_) => continue 'start,
                    // The haystack ended first: no later start can match.
                    None => return None,
                }
            }
            let end = rest.next().map_or(tail.len(), |(j, _)| i + j);
            return Some(from + i..from + end);
        }
        None
    }

    fn find_chars(&self, haystack: &str) -> Vec<Range<usize>> {
        let mut found = Vec::new();
        let mut at = 0;
        while let Some(r) = self.match_at_chars(haystack, at) {
            at = r.end;
            found.push(r);
        }
        found
    }
}

fn next_ascii(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| {
        hay[i..i + needle.len()]
            .iter()
            .zip(needle)
            .all(|(h, n)| h.to_ascii_lowercase() == *n)
    })
}

fn find_ascii(hay: &[u8], needle: &[u8]) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = next_ascii(hay, needle, at) {
        at = i + needle.len();
        found.push(i..at);
    }
    found
}

/// A piece of text to show: matched (inside `<mark>`) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Plain text.
    Plain(&'a str),
    /// A match.
    Hit(&'a str),
}

/// `text` cut into plain and matched pieces, in order.
pub fn highlight<'a>(text: &'a str, needle: &Needle) -> Vec<Piece<'a>> {
    let mut pieces = Vec::new();
    let mut at = 0;
    for r in needle.find(text) {
        if r.start > at {
            pieces.push(Piece::Plain(&text[at..r.start]));
        }
        pieces.push(Piece::Hit(&text[r.clone()]));
        at = r.end;
    }
    if at < text.len() || pieces.is_empty() {
        pieces.push(Piece::Plain(&text[at..]));
    }
    pieces
}

/// What a search of the loaded messages found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Found {
    /// The matching messages, newest first, at most [`MAX_LISTED`].
    pub listed: Vec<Rc<ChatMessage>>,
    /// How many matched in all.
    pub total: usize,
}

/// The messages of `messages` (oldest first) that match, newest first.
pub fn search<'a>(
    messages: impl DoubleEndedIterator<Item = &'a Rc<ChatMessage>>,
    needle: &Needle,
) -> Found {
    let mut found = Found::default();
    for m in messages.rev() {
        if needle.matches(m) {
            found.total += 1;
            if found.listed.len() < MAX_LISTED {
                found.listed.push(m.clone());
            }
        }
    }
    found
}

/// How far a search reached: "searched back to 3 May, 640 messages" (the
/// year only when it is not the current one). `oldest_ms` is the oldest
/// message searched, `count` how many were searched; offsets are minutes
/// east of UTC at `oldest_ms` and at `now_ms`.
pub fn searched_back(
    oldest_ms: Option<u64>,
    offset_min: i32,
    now_ms: u64,
    now_offset_min: i32,
    count: usize,
) -> String {
    let n = format!("{count} message{}", if count == 1 { "" } else { "s" });
    let Some(ms) = oldest_ms else {
        return format!("searched {n}");
    };
    let t = DateTime::from_unix_ms(ms, offset_min);
    let now = DateTime::from_unix_ms(now_ms, now_offset_min);
    let month = t.month_name();
    if t.year == now.year {
        format!("searched back to {} {month}, {n}", t.day)
    } else {
        format!("searched back to {} {month} {}, {n}", t.day, t.year)
    }
}

/// The sentence the search panel shows for a "search older" in `status`;
/// `back` is [`searched_back`]'s.
pub fn older_note(status: SearchStatus, back: &str) -> String {
    match status {
        SearchStatus::Running => format!("Searching older messages… {back}"),
        SearchStatus::Found(n) => format!(
            "Found {n} older match{}; {back}",
            if n == 1 { "" } else { "es" }
        ),
        SearchStatus::StartReached => {
            format!("Start of history reached, no more matches; {back}")
        }
        SearchStatus::Paused => format!("No match yet; {back}. Search older to go on."),
        SearchStatus::Stopped => format!("Stopped; {back}"),
        SearchStatus::Interrupted => format!("The connection was lost; {back}"),
    }
}

#[cfg(test)]
mod tests {
    use dumdum_protocol::Snowflake;

    use super::*;

    fn n(q: &str) -> Needle {
        Needle::new(q).unwrap()
    }

    fn hits<'a>(text: &'a str, q: &str) -> Vec<&'a str> {
        n(q).find(text).into_iter().map(|r| &text[r]).collect()
    }

    fn msg(id: u64, nick: &str, content: &str) -> Rc<ChatMessage> {
        Rc::new(ChatMessage {
            id: Snowflake(id),
            channel: "general".into(),
            nick: nick.into(),
            content: content.into(),
        })
    }

    #[test]
    fn blank_terms_search_nothing() {
        assert_eq!(Needle::new(""), None);
        assert_eq!(Needle::new("  \t"), None);
        assert_eq!(hits("a cat", "  cat "), ["cat"]);
    }

    #[test]
    fn matching_ignores_case_and_finds_every_occurrence() {
        assert_eq!(hits("Cat, CAT and cAt", "cat"), ["Cat", "CAT", "cAt"]);
        assert_eq!(hits("aaaa", "aa"), ["aa", "aa"]);
        assert!(hits("dog", "cat").is_empty());
        assert!(hits("ca", "cat").is_empty());
        assert!(n("LUNCH").is_in("who wants lunch?"));
    }

    #[test]
    fn non_ascii_text_matches_on_char_boundaries() {
        assert_eq!(hits("Grüße aus KÖLN", "köln"), ["KÖLN"]);
        assert_eq!(hits("ΣΊΣΥΦΟΣ", "σίσυφος"), ["ΣΊΣΥΦΟΣ"]);
        assert_eq!(hits("Москва и ЁЛКА", "москва"), ["Москва"]);
        assert_eq!(hits("Москва и ЁЛКА", "ёлка"), ["ЁЛКА"]);
        assert_eq!(hits("ŁÓDŹ, Žižkov, ĲSSEL", "łódź"), ["ŁÓDŹ"]);
        assert_eq!(hits("ŁÓDŹ, Žižkov, ĲSSEL", "žIŽ"), ["Žiž"]);
        assert_eq!(hits("ĲSSEL", "ĳ"), ["Ĳ"]);
        assert_eq!(hits("TIẾNG VIỆT", "tiếng việt"), ["TIẾNG VIỆT"]);
        assert_eq!(hits("ＦＵＬＬ width", "ｆｕｌｌ"), ["ＦＵＬＬ"]);
        assert_eq!(hits("日本語のテキスト", "テキ"), ["テキ"]);
        assert_eq!(hits("emoji 🎉 party 🎉", "🎉"), ["🎉", "🎉"]);
        // An ASCII term in non-ASCII text, and the reverse.
        assert_eq!(hits("café au lait", "AU"), ["au"]);
        assert!(hits("cafe", "café").is_empty());
        assert_eq!(hits("İstanbul", "ist"), ["İst"]);
        assert_eq!(hits("STRAẞE", "straße"), ["STRAẞE"]);
        // Letters outside the table match exactly as typed.
        assert_eq!(hits("ǅemal ǆ", "ǆ"), ["ǆ"]);
        for text in ["İstanbul İ", "ẞ straße", "ǅemal", "a🎉b"] {
            for q in ["i", "ß", "ǆ", "st", "e", "🎉b"] {
                for r in n(q).find(text) {
                    assert!(text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
                }
            }
        }
    }

    #[test]
    fn folding_agrees_with_the_standard_library_where_it_folds() {
        for u in 0..0x1_0000u32 {
            let Some(c) = char::from_u32(u) else { continue };
            let f = fold(c);
            if f != c {
                let std: Vec<char> = c.to_lowercase().collect();
                let same = std == [f] || (c == 'İ' && f == 'i') || (c == 'ς' && f == 'σ');
                assert!(
                    same,
                    "{c:?} folds to {f:?}, the standard library says {std:?}"
                );
            }
            // Lower-case letters of the table stay as they are.
            if c.is_lowercase() {
                assert!(f == c || c == 'ς', "{c:?} folds to {f:?}");
            }
        }
        // Every upper-case letter of the alphabets in the table folds.
        for (from, to) in [
            (0x41, 0x5A),
            (0xC0, 0xDE),
            (0x391, 0x3A9),
            (0x400, 0x42F),
            (0x531, 0x556),
        ] {
            for u in from..=to {
                let c = char::from_u32(u).unwrap();
                if c.is_uppercase() {
                    assert_ne!(fold(c), c, "{c:?}");
                }
            }
        }
    }

    #[test]
    fn highlighting_keeps_every_byte_in_order() {
        let text = "Lunch? LUNCH at noon, lunch";
        let pieces = highlight(text, &n("lunch"));
        assert_eq!(
            pieces,
            [
                Piece::Hit("Lunch"),
                Piece::Plain("? "),
                Piece::Hit("LUNCH"),
                Piece::Plain(" at noon, "),
                Piece::Hit("lunch"),
            ]
        );
        let joined: String = pieces
            .iter()
            .map(|p| match p {
                Piece::Plain(s) | Piece::Hit(s) => *s,
            })
            .collect();
        assert_eq!(joined, text);
        assert_eq!(highlight("none", &n("x")), [Piece::Plain("none")]);
        assert_eq!(highlight("", &n("x")), [Piece::Plain("")]);
    }

    #[test]
    fn search_lists_text_and_nick_matches_newest_first() {
        let messages = [
            msg(1, "alice", "hello"),
            msg(2, "bob", "nothing here"),
            msg(3, "carol", "Alice, hi"),
            msg(4, "dave", "bye"),
        ];
        let found = search(messages.iter(), &n("alice"));
        assert_eq!(found.total, 2);
        assert_eq!(
            found.listed.iter().map(|m| m.id.0).collect::<Vec<_>>(),
            [3, 1]
        );
        assert_eq!(search(messages.iter(), &n("zzz")), Found::default());
    }

    #[test]
    fn progress_says_how_far_back_and_how_many() {
        // 2026-05-03 12:00 UTC and 2026-12-03.
        let may = 1_777_809_600_000;
        let dec = 1_796_299_200_000;
        assert_eq!(
            searched_back(Some(may), 0, dec, 0, 640),
            "searched back to 3 May, 640 messages"
        );
        // Local time: 23:00 UTC is the next day two hours east.
        assert_eq!(
            searched_back(Some(may + 11 * 3_600_000), 120, dec, 60, 1),
            "searched back to 4 May, 1 message"
        );
        assert_eq!(
            searched_back(Some(may - 365 * 86_400_000), 0, dec, 0, 5),
            "searched back to 3 May 2025, 5 messages"
        );
        assert_eq!(searched_back(None, 0, dec, 0, 0), "searched 0 messages");
        let back = "searched back to 3 May, 640 messages";
        assert_eq!(
            older_note(SearchStatus::Running, back),
            "Searching older messages… searched back to 3 May, 640 messages"
        );
        assert_eq!(
            older_note(SearchStatus::StartReached, back),
            "Start of history reached, no more matches; searched back to 3 May, 640 messages"
        );
        assert_eq!(
            older_note(SearchStatus::Found(2), back),
            "Found 2 older matches; searched back to 3 May, 640 messages"
        );
        assert!(older_note(SearchStatus::Paused, back).ends_with("Search older to go on."));
    }

    #[test]
    fn search_lists_at_most_max_listed_but_counts_all() {
        let messages: Vec<_> = (1..=(MAX_LISTED as u64 + 50))
            .map(|i| msg(i, "x", &format!("item {i}")))
            .collect();
        let found = search(messages.iter(), &n("item"));
        assert_eq!(found.total, MAX_LISTED + 50);
        assert_eq!(found.listed.len(), MAX_LISTED);
        assert_eq!(found.listed[0].id.0, MAX_LISTED as u64 + 50);
    }
}
