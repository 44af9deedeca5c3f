//! Searching a channel's messages: case-insensitive substring matching of
//! the text and the nick, with the matched ranges for highlighting. Pure,
//! tested natively; the search panel and the engine's "search older" use the
//! same rules.

use std::ops::Range;
use std::rc::Rc;

use dumdum_protocol::ChatMessage;

/// Results listed in the search panel at most (newest first); the count
/// says how many matched in all.
pub const MAX_LISTED: usize = 200;

/// Older pages one "Search older" fetches at most before it pauses (and
/// offers to go on): 100 pages of the server's 100 messages.
pub const PAGES_PER_RUN: u32 = 100;

/// A search term, prepared once: trimmed and lower-cased char by char.
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
        let folded: Vec<char> = query.chars().flat_map(char::to_lowercase).collect();
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
    /// text): each char of the haystack lower-cased, compared with the term.
    fn match_at_chars(&self, haystack: &str, from: usize) -> Option<Range<usize>> {
        let tail = haystack.get(from..)?;
        'start: for (i, _) in tail.char_indices() {
            let mut want = self.folded.iter();
            let mut pending = want.next();
            for (j, c) in tail[i..].char_indices() {
                for lc in c.to_lowercase() {
                    match pending {
                        Some(&w) if w == lc => pending = want.next(),
                        // The term ended inside this char's lower case:
                        // not a clean match.
                        _ => continue 'start,
                    }
                }
                if pending.is_none() {
                    let end = i + j + c.len_utf8();
                    return Some(from + i..from + end);
                }
            }
            // The haystack ended first: no later start can match either.
            return None;
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
pub fn search(messages: &[Rc<ChatMessage>], needle: &Needle) -> Found {
    let mut found = Found::default();
    for m in messages.iter().rev() {
        if needle.matches(m) {
            found.total += 1;
            if found.listed.len() < MAX_LISTED {
                found.listed.push(m.clone());
            }
        }
    }
    found
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
        assert_eq!(n("  cat ").find("a cat"), [2..5]);
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
        assert_eq!(hits("ΣΊΣΥΦΟΣ", "σίσυφοσ"), ["ΣΊΣΥΦΟΣ"]);
        assert_eq!(hits("日本語のテキスト", "テキ"), ["テキ"]);
        assert_eq!(hits("emoji 🎉 party 🎉", "🎉"), ["🎉", "🎉"]);
        // An ASCII term in non-ASCII text, and the reverse.
        assert_eq!(hits("café au lait", "AU"), ["au"]);
        assert!(hits("cafe", "café").is_empty());
        // 'İ' lower-cases to two chars: "i̇" matches it whole, "i" alone
        // would end inside it and does not.
        assert_eq!(hits("İstanbul", "i\u{307}st"), ["İst"]);
        assert!(hits("İ", "i").is_empty());
        for text in ["İstanbul İ", "ẞ straße", "ǅemal"] {
            for q in ["i", "ß", "ǆ", "st", "e"] {
                for r in n(q).find(text) {
                    assert!(text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
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
        let messages = vec![
            msg(1, "alice", "hello"),
            msg(2, "bob", "nothing here"),
            msg(3, "carol", "Alice, hi"),
            msg(4, "dave", "bye"),
        ];
        let found = search(&messages, &n("alice"));
        assert_eq!(found.total, 2);
        assert_eq!(
            found.listed.iter().map(|m| m.id.0).collect::<Vec<_>>(),
            [3, 1]
        );
        assert_eq!(search(&messages, &n("zzz")), Found::default());
    }

    #[test]
    fn search_lists_at_most_max_listed_but_counts_all() {
        let messages: Vec<_> = (1..=(MAX_LISTED as u64 + 50))
            .map(|i| msg(i, "x", &format!("item {i}")))
            .collect();
        let found = search(&messages, &n("item"));
        assert_eq!(found.total, MAX_LISTED + 50);
        assert_eq!(found.listed.len(), MAX_LISTED);
        assert_eq!(found.listed[0].id.0, MAX_LISTED as u64 + 50);
    }
}
