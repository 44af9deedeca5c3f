//! Notifications and mentions: the rules, in plain Rust (tested natively).
//!
//! - [`Matcher::mentions`]: a message mentions us when it holds our nick or
//!   one of the highlight words as a whole word, ignoring case;
//! - [`should_notify`]: whether a message raises a desktop notification,
//!   from the channel's [`Level`], the mention, and where the user is;
//! - [`Prefs`] and [`Levels`]: what the settings panel keeps in
//!   `localStorage` (see [`crate::storage`] for the keys).
//!
//! The browser side (the Notification API, the tone, the favicon) is in
//! [`crate::components::settings_panel`] and the chat hook.

use crate::search::fold;
use dumdum_protocol::json::{self, Object, Value};

use crate::state::Action;

/// How much a channel notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    /// Every new message.
    All,
    /// Only messages that mention us (the default).
    #[default]
    Mentions,
    /// Never.
    Mute,
}

impl Level {
    /// Every level, in the order the settings show them.
    pub const ALL: [Level; 3] = [Level::All, Level::Mentions, Level::Mute];

    /// Its value in storage and in the `<select>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::All => "all",
            Level::Mentions => "mentions",
            Level::Mute => "mute",
        }
    }

    /// Its label in the settings.
    pub fn label(self) -> &'static str {
        match self {
            Level::All => "All messages",
            Level::Mentions => "Mentions only",
            Level::Mute => "Mute",
        }
    }

    /// The level named `s` (as [`Level::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// Whether `c` continues a word: a letter or digit of any script, or `_`.
fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `a` and `b` are the same letter ignoring case, folded as the
/// search folds them ([`crate::search::fold`]: Latin, Greek, Cyrillic,
/// Armenian, fullwidth; no Unicode case tables in the page).
fn same_ignoring_case(a: char, b: char) -> bool {
    a == b || fold(a) == fold(b)
}

/// Whether `text` holds `term` as a whole word, ignoring case: the
/// characters right before and after the match are not word characters
/// (letters, digits, `_`), or are the text's ends. Punctuation inside the
/// term (a nick such as `[a]` or `bob-2`) must match as written.
pub fn contains_word(text: &str, term: &str) -> bool {
    let term: Vec<char> = term.chars().collect();
    if term.is_empty() {
        return false;
    }
    let chars: Vec<char> = text.chars().collect();
    if chars.len() < term.len() {
        return false;
    }
    (0..=chars.len() - term.len()).any(|start| {
        let end = start + term.len();
        let before_ok = start == 0 || !word_char(chars[start - 1]);
        let after_ok = end == chars.len() || !word_char(chars[end]);
        before_ok
            && after_ok
            && chars[start..end]
                .iter()
                .zip(&term)
                .all(|(&a, &b)| same_ignoring_case(a, b))
    })
}

/// The highlight words of `input`: comma-separated, trimmed, empty ones
/// dropped, each once (ignoring case), in the order written.
pub fn parse_words(input: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for w in input.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let same = |k: &String| k.chars().map(fold).eq(w.chars().map(fold));
        if !words.iter().any(same) {
            words.push(w.to_owned());
        }
    }
    words
}

/// What counts as a mention: our nick and the highlight words.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matcher {
    /// Our nick, once known.
    pub nick: Option<String>,
    /// Highlight words.
    pub words: Vec<String>,
}

impl Matcher {
    /// Whether a message by `author` with `text` mentions us (never our
    /// own messages).
    pub fn mentions(&self, author: &str, text: &str) -> bool {
        if self.nick.as_deref() == Some(author) {
            return false;
        }
        self.nick
            .iter()
            .chain(&self.words)
            .any(|t| contains_word(text, t.trim()))
    }
}

/// What is known about one incoming message for [`should_notify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// The level of its channel.
    pub level: Level,
    /// It mentions us.
    pub mention: bool,
    /// We wrote it.
    pub own: bool,
    /// A new broadcast: not a history page, not a replay after a resume.
    pub live: bool,
    /// Its channel is the one shown.
    pub in_view: bool,
    /// The tab is visible and has the focus.
    pub focused: bool,
}

/// Whether `m` raises a notification (notifications being on and allowed):
/// only live messages of others; never for the channel in view while the
/// tab has the focus; then as its channel's level says.
pub fn should_notify(m: Incoming) -> bool {
    if !m.live || m.own || (m.in_view && m.focused) {
        return false;
    }
    match m.level {
        Level::All => true,
        Level::Mentions => m.mention,
        Level::Mute => false,
    }
}

/// The page-wide notification settings (`localStorage`, one key, JSON).
/// Read and written with [`dumdum_protocol::json`] (no serde in the page).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prefs {
    /// Desktop notifications wanted (the browser's permission aside).
    pub enabled: bool,
    /// A short tone with each notification.
    pub sound: bool,
    /// Highlight words.
    pub words: Vec<String>,
}

/// The object stored under a key, if `json` is one.
fn object(json: Option<&str>) -> Option<Value> {
    json::parse(json?)
        .ok()
        .filter(|v| matches!(v, Value::Object(_)))
}

impl Prefs {
    /// The stored form.
    pub fn to_json(&self) -> String {
        Object::new()
            .bool("enabled", self.enabled)
            .bool("sound", self.sound)
            .raw(
                "words",
                json::array(self.words.iter().map(|w| json::string(w))),
            )
            .finish()
    }

    /// From storage; the defaults for what is missing or unreadable.
    pub fn from_json(json: Option<&str>) -> Prefs {
        let Some(o) = object(json) else {
            return Prefs::default();
        };
        let flag = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
        Prefs {
            enabled: flag("enabled"),
            sound: flag("sound"),
            words: o
                .get("words")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The channels' levels, per server and nick (only those not at the
/// default are kept), stored as a JSON object `{"ops":"mute"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Levels(Vec<(String, Level)>);

impl Levels {
    /// The level of `channel`.
    pub fn get(&self, channel: &str) -> Level {
        self.0
            .iter()
            .find(|(c, _)| c == channel)
            .map_or_else(Level::default, |(_, l)| *l)
    }

    /// Sets the level of `channel`.
    pub fn set(&mut self, channel: &str, level: Level) {
        self.0.retain(|(c, _)| c != channel);
        if level != Level::default() {
            self.0.push((channel.to_owned(), level));
            crate::small::sort_by(&mut self.0, |a, b| a.0 < b.0);
        }
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        // Kept sorted by channel (`set`), as serde's map wrote them.
        self.0
            .iter()
            .fold(Object::new(), |o, (c, l)| o.str(c, l.as_str()))
            .finish()
    }

    /// From storage; all at the default when missing or unreadable.
    pub fn from_json(json: Option<&str>) -> Levels {
        let mut levels = Levels::default();
        if let Some(Value::Object(members)) = object(json) {
            for (c, l) in &members {
                if let Some(l) = l.as_str().and_then(Level::parse) {
                    levels.set(c, l);
                }
            }
        }
        levels
    }
}

/// Tells a new broadcast message from one a resume replays: the bridge
/// answers a resume with Success, then the frames the page missed, then its
/// `session resumed` notice ([`Action::Replayed`]); messages in between
/// are not new to the user and notify nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replay {
    replaying: bool,
}

impl Replay {
    /// Follows `a`; for a message, whether it is live (not replayed).
    pub fn observe(&mut self, a: &Action) -> Option<bool> {
        match a {
            Action::Resumed { .. } => self.replaying = true,
            Action::Replayed { .. }
            | Action::Authenticated { .. }
            | Action::Restored { .. }
            | Action::Disconnected { .. }
            | Action::Offline
            | Action::SignedOut => self.replaying = false,
            Action::Message(_) => return Some(!self.replaying),
            _ => {}
        }
        None
    }
}

/// The tab title: `(N)` first when N mentions are unseen, else `•` when
/// other messages are.
pub fn tab_title(active: Option<&str>, unread: u32, mentions: u32) -> String {
    let base = match active {
        Some(a) => format!("#{a} · dumdum"),
        None => "dumdum chat".into(),
    };
    if mentions > 0 {
        format!("({mentions}) {base}")
    } else if unread > 0 {
        format!("• {base}")
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(nick: &str, words: &[&str]) -> Matcher {
        Matcher {
            nick: Some(nick.into()),
            words: words.iter().map(|w| (*w).to_owned()).collect(),
        }
    }

    #[test]
    fn whole_words_only_ignoring_case() {
        let m = matcher("bob", &[]);
        for yes in [
            "bob",
            "Bob: hi",
            "hi BOB",
            "hey, bob!",
            "(bob)",
            "@bob look",
            "bob's idea",
            "ask bob.",
            "«bob»",
            "bob\nnext line",
        ] {
            assert!(m.mentions("alice", yes), "{yes:?} mentions bob");
        }
        for no in [
            "bobby", "kabob", "bob_2", "bob2", "", "b o b", "bobé", "ébob",
        ] {
            assert!(!m.mentions("alice", no), "{no:?} does not mention bob");
        }
    }

    #[test]
    fn nicks_with_punctuation_match_as_written() {
        let m = matcher("[a]", &[]);
        assert!(m.mentions("x", "hi [a]"));
        assert!(m.mentions("x", "[A]: yes"));
        assert!(m.mentions("x", "([a])"));
        assert!(
            !m.mentions("x", "hi a"),
            "the brackets are part of the nick"
        );
        assert!(!m.mentions("x", "x[a]"), "glued to a word");
        assert!(!m.mentions("x", "[a]x"));
        let m = matcher("bob-2", &[]);
        assert!(m.mentions("x", "bob-2, ping"));
        assert!(!m.mentions("x", "bob-22"));
        assert!(!m.mentions("x", "bob"));
        let m = matcher("a.b", &[]);
        assert!(!m.mentions("x", "axb"), "no pattern syntax");
        assert!(m.mentions("x", "A.B?"));
    }

    #[test]
    fn unicode_letters_and_case() {
        let m = matcher("Émile", &["straße", "日本"]);
        assert!(m.mentions("x", "salut émile"));
        assert!(m.mentions("x", "ÉMILE!"));
        assert!(!m.mentions("x", "Émiles"));
        assert!(m.mentions("x", "die Straße ist"));
        assert!(!m.mentions("x", "STRASSE"), "no full case folding");
        assert!(m.mentions("x", "「日本」"));
        assert!(
            !m.mentions("x", "日本語"),
            "CJK letters are word characters"
        );
        // Characters whose lowercase has another length: İ folds to i, as
        // in the search.
        let m = matcher("İz", &[]);
        assert!(m.mentions("x", "İZ"));
        assert!(m.mentions("x", "iz"));
    }

    #[test]
    fn highlight_words_and_own_messages() {
        let m = matcher("bob", &["deploy", "on call"]);
        assert!(m.mentions("x", "Deploy done"));
        assert!(m.mentions("x", "who is ON CALL?"));
        assert!(!m.mentions("x", "deployed"));
        assert!(!m.mentions("bob", "bob deploy"), "our own message");
        let nobody = Matcher::default();
        assert!(!nobody.mentions("x", "anything"));
        let words_only = Matcher {
            nick: None,
            words: vec!["x".into()],
        };
        assert!(words_only.mentions("y", "x"));
    }

    #[test]
    fn words_parse_trimmed_once_each() {
        assert_eq!(
            parse_words(" deploy, On Call ,,deploy,DEPLOY , x"),
            ["deploy", "On Call", "x"]
        );
        assert!(parse_words(" , ,").is_empty());
    }

    /// A tiny deterministic generator (no dependency): xorshift.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    #[test]
    fn property_a_term_between_separators_always_matches_and_glued_never() {
        let terms = ["bob", "[a]", "Émile", "x_y", "日本", "a.b", "İz", "o'neil"];
        let seps = [
            " ", ",", ".", "!", "?", "(", ")", "\n", "«", "—", ":", "@", "",
        ];
        let glue = ["a", "Z", "9", "_", "é", "日"];
        let words = ["hello", "the", "ünï", "42", "x"];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5_000 {
            let term = rng.pick(&terms);
            let variant: String = if rng.next().is_multiple_of(2) {
                term.to_uppercase()
            } else {
                term.to_owned()
            };
            let pre = format!("{}{}", rng.pick(&words), rng.pick(&seps[..12]));
            let post = format!("{}{}", rng.pick(&seps[..12]), rng.pick(&words));
            let m = matcher(term, &[]);
            // `İz` uppercased is itself; others round-trip through
            // to_uppercase only when their lowercase is the original.
            let round_trips = variant.to_lowercase() == term.to_lowercase();
            let text = format!("{pre}{variant}{post}");
            if round_trips {
                assert!(m.mentions("other", &text), "{term:?} in {text:?}");
            }
            // Glued to a word character on either side: never.
            let g = rng.pick(&glue);
            let glued_before = rng.next().is_multiple_of(2);
            let glued = if glued_before {
                format!("{pre}{g}{term}{post}")
            } else {
                format!("{pre}{term}{g}{post}")
            };
            // Only when the glued side of the term is itself a word
            // character does it stop being a whole word.
            let first = term.chars().next().is_some_and(word_char);
            let last = term.chars().last().is_some_and(word_char);
            if (glued_before && first) || (!glued_before && last) {
                // The text has the term exactly once, glued: no mention.
                assert!(!m.mentions("other", &glued), "{term:?} in {glued:?}");
            }
            // The author is never notified of their own message.
            assert!(!matcher(term, &[]).mentions(term, &text));
        }
    }

    #[test]
    fn notify_decision_table() {
        let mut count = 0;
        for level in Level::ALL {
            for mention in [false, true] {
                for own in [false, true] {
                    for live in [false, true] {
                        for in_view in [false, true] {
                            for focused in [false, true] {
                                let got = should_notify(Incoming {
                                    level,
                                    mention,
                                    own,
                                    live,
                                    in_view,
                                    focused,
                                });
                                let expected = live
                                    && !own
                                    && !(in_view && focused)
                                    && (level == Level::All
                                        || (level == Level::Mentions && mention));
                                assert_eq!(
                                    got, expected,
                                    "{level:?} mention={mention} own={own} live={live} in_view={in_view} focused={focused}"
                                );
                                count += usize::from(got);
                            }
                        }
                    }
                }
            }
        }
        // all: 3 where-combinations of 4 × 2 mention values; mentions: 3.
        assert_eq!(count, 6 + 3);
        // Spot checks, in words.
        let base = Incoming {
            level: Level::Mentions,
            mention: true,
            own: false,
            live: true,
            in_view: false,
            focused: true,
        };
        assert!(should_notify(base), "a mention in a background channel");
        assert!(
            should_notify(Incoming {
                in_view: true,
                focused: false,
                ..base
            }),
            "the channel in view while the tab is hidden"
        );
        assert!(!should_notify(Incoming {
            in_view: true,
            ..base
        }));
        assert!(!should_notify(Incoming {
            level: Level::Mute,
            ..base
        }));
        assert!(!should_notify(Incoming {
            live: false,
            ..base
        }));
    }

    #[test]
    fn prefs_and_levels_round_trip_and_survive_garbage() {
        let p = Prefs {
            enabled: true,
            sound: false,
            words: vec!["deploy".into()],
        };
        assert_eq!(Prefs::from_json(Some(&p.to_json())), p);
        assert_eq!(Prefs::from_json(Some("{nope")), Prefs::default());
        assert_eq!(
            Prefs::from_json(Some(r#"{"enabled":true}"#)),
            Prefs {
                enabled: true,
                ..Prefs::default()
            }
        );
        let mut l = Levels::default();
        assert_eq!(l.get("general"), Level::Mentions);
        l.set("general", Level::Mute);
        l.set("random", Level::All);
        l.set("random", Level::Mentions);
        assert_eq!(l.to_json(), r#"{"general":"mute"}"#);
        let back = Levels::from_json(Some(&l.to_json()));
        assert_eq!(back.get("general"), Level::Mute);
        assert_eq!(back.get("random"), Level::Mentions);
        assert_eq!(Levels::from_json(Some("[1]")), Levels::default());
        let odd = Levels::from_json(Some(r#"{"ops":"loud","dev":"all","x":3}"#));
        assert_eq!(
            odd.to_json(),
            r#"{"dev":"all"}"#,
            "unknown values are dropped"
        );
        assert_eq!(
            Prefs::from_json(Some(r#"{"enabled":1,"sound":true,"words":["a",2]}"#)),
            Prefs {
                enabled: false,
                sound: true,
                words: vec!["a".into()]
            }
        );
        for l in Level::ALL {
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
        assert_eq!(Level::parse("loud"), None);
    }

    #[test]
    fn a_resume_replay_is_not_live_and_what_follows_is() {
        use dumdum_protocol::{ChatMessage, Snowflake};
        let m = Action::Message(ChatMessage {
            id: Snowflake(1),
            channel: "general".into(),
            nick: "x".into(),
            content: "me".into(),
        });
        let mut r = Replay::default();
        assert_eq!(r.observe(&m), Some(true), "a first session: live");
        assert_eq!(r.observe(&Action::Offline), None);
        r.observe(&Action::Resumed {
            server: "local".into(),
            nick: Some("me".into()),
            resent: 0,
        });
        assert_eq!(r.observe(&m), Some(false), "replayed");
        assert_eq!(r.observe(&m), Some(false));
        r.observe(&Action::Replayed { frames: 2 });
        assert_eq!(r.observe(&m), Some(true), "after the notice: live");
        // A resume cut before its notice: the next session starts live.
        r.observe(&Action::Resumed {
            server: "local".into(),
            nick: None,
            resent: 0,
        });
        r.observe(&Action::Disconnected {
            problem: crate::problem::Problem::ConnectionLost,
            retry_at_ms: Some(1),
        });
        r.observe(&Action::Authenticated { nick: "me".into() });
        assert_eq!(r.observe(&m), Some(true));
    }

    #[test]
    fn titles() {
        assert_eq!(tab_title(Some("general"), 0, 0), "#general · dumdum");
        assert_eq!(tab_title(Some("general"), 5, 0), "• #general · dumdum");
        assert_eq!(tab_title(Some("general"), 5, 2), "(2) #general · dumdum");
        assert_eq!(tab_title(None, 0, 0), "dumdum chat");
    }
}
