//! Pasting long text: when a paste has more than [`PASTE_LINES`] lines or
//! does not fit one message, the composer asks "Send as N messages?" and
//! sends the pieces [`split_paste`] makes. Pure, tested natively.

use dumdum_protocol::MAX_CONTENT_LEN;

/// A paste of more lines than this asks before sending.
pub const PASTE_LINES: usize = 4;

/// The lines of `text`: split at `\n`, `\r\n` and `\r`, the breaks left out.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .flat_map(|l| l.strip_suffix('\r').unwrap_or(l).split('\r'))
}

/// Whether pasting `text` (the whole draft it makes) must ask first: more
/// than [`PASTE_LINES`] lines, or more than one message holds.
pub fn paste_asks(text: &str) -> bool {
    text.len() > MAX_CONTENT_LEN
        || lines(text).filter(|l| !l.trim().is_empty()).count() > PASTE_LINES
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary (never inside a UTF-8 sequence), preferring to end
/// after a space when one is in the last quarter.
fn cut(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // A word break near the end reads better; never a piece under 3/4.
    let floor = max - max / 4;
    match s[..end].rfind(' ') {
        Some(i) if i + 1 >= floor => i + 1,
        _ => end.max(first_char_len(s)),
    }
}

fn first_char_len(s: &str) -> usize {
    s.chars().next().map_or(0, char::len_utf8)
}

/// Splits `text` into messages of at most `limit` bytes: one per line (the
/// line breaks are left out, blank lines skipped), a line longer than
/// `limit` cut at character boundaries (after a space when one is close
/// to the limit). Every piece is valid UTF-8, at most `limit` bytes, and
/// not blank. `limit` must hold at least one character (4 bytes).
pub fn split_paste(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(4);
    let mut out = Vec::new();
    for line in lines(text) {
        let mut rest = line;
        while !rest.is_empty() {
            let n = cut(rest, limit);
            let (piece, tail) = rest.split_at(n);
            if !piece.trim().is_empty() {
                out.push(piece.to_owned());
            }
            rest = tail;
        }
    }
    out
}

/// Truncates `text` to at most `limit` bytes on a character boundary: what
/// typing past the limit keeps.
pub fn clamp_to_limit(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn six_lines_make_six_messages() {
        let text = "one\ntwo\r\nthree\rfour\n\nfive\n   \nsix\n";
        assert!(paste_asks(text));
        assert_eq!(
            split_paste(text, MAX_CONTENT_LEN),
            ["one", "two", "three", "four", "five", "six"]
        );
        assert!(!paste_asks("a\nb\nc\nd"));
    }

    #[test]
    fn a_long_line_is_cut_under_the_limit_not_inside_a_character() {
        // 2-byte characters against an odd limit.
        let text = "é".repeat(600); // 1200 bytes
        assert!(paste_asks(&text));
        let pieces = split_paste(&text, MAX_CONTENT_LEN);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].len(), 1_024);
        assert_eq!(pieces.concat(), text);
        let emoji = "😀".repeat(300); // 4 bytes each
        let pieces = split_paste(&emoji, 1_023);
        assert!(pieces.iter().all(|p| p.len() <= 1_023 && p.len() % 4 == 0));
        assert_eq!(pieces.concat(), emoji);
        // Words: the cut lands after a space near the limit.
        let words = "word ".repeat(300);
        let pieces = split_paste(&words, MAX_CONTENT_LEN);
        assert!(pieces[0].ends_with(' ') && pieces[0].len() <= 1_024);
        assert_eq!(pieces.concat(), words);
    }

    #[test]
    fn typing_stops_at_the_limit() {
        let text = format!("{}é", "x".repeat(1_023));
        assert_eq!(clamp_to_limit(&text, 1_024).len(), 1_023);
        assert_eq!(clamp_to_limit("abc", 1_024), "abc");
    }

    proptest! {
        #[test]
        fn pieces_fit_and_add_up(
            text in "(\\PC|[ \n\r]){0,3000}",
            limit in 4usize..1_100,
        ) {
            let pieces = split_paste(&text, limit);
            for p in &pieces {
                prop_assert!(p.len() <= limit, "{} > {}", p.len(), limit);
                prop_assert!(!p.trim().is_empty());
                prop_assert!(!p.contains('\n') && !p.contains('\r'));
            }
            // Nothing but line breaks and blank pieces is left out.
            let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            prop_assert_eq!(squash(&pieces.concat()), squash(&text));
            let no_breaks: String = lines(&text).collect();
            if !no_breaks.chars().any(char::is_whitespace) {
                prop_assert_eq!(pieces.concat(), no_breaks);
            }
        }
    }
}
