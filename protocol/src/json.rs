//! A small JSON reader and writer: enough for the session messages
//! ([`crate::session`]) and the page's stored state, without `serde_json`
//! (whose deserializer and float formatting were about a tenth of the
//! page's wasm).
//!
//! The reader takes any JSON text (RFC 8259) and keeps numbers as their
//! text: [`Value::as_u64`] reads the non-negative integers that fit a
//! `u64`, as `serde_json` does. Nesting is limited to [`MAX_DEPTH`]
//! arrays and objects. Duplicate keys: the last one counts. The writer
//! ([`Object`]) escapes strings as `serde_json` does.

/// The deepest nesting of arrays and objects [`parse`] accepts.
pub const MAX_DEPTH: usize = 128;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written.
    Number(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object's members in the order written (duplicates kept).
    Object(Vec<(String, Value)>),
}

/// Why a text is not JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The text ended inside a value.
    #[error("JSON ends too early")]
    Eof,
    /// Something else than JSON at this byte offset.
    #[error("invalid JSON at byte {0}")]
    Invalid(usize),
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested too deep")]
    TooDeep,
}

impl Value {
    /// The member `key` of an object (the last one, when repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer (no fraction or exponent) that fits a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) if n.bytes().all(|b| b.is_ascii_digit()) => n.parse().ok(),
            _ => None,
        }
    }

    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// `null`, or absent (`None`).
    pub fn is_null_or_absent(v: Option<&Value>) -> bool {
        matches!(v, None | Some(Value::Null))
    }
}

/// Parses one JSON text (whitespace around it allowed).
pub fn parse(text: &str) -> Result<Value, JsonError> {
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    if p.i < p.b.len() {
        return Err(JsonError::Invalid(p.i));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Result<u8, JsonError> {
        self.b.get(self.i).copied().ok_or(JsonError::Eof)
    }

    fn expect(&mut self, c: u8) -> Result<(), JsonError> {
        self.ws();
        if self.peek()? != c {
            return Err(JsonError::Invalid(self.i));
        }
        self.i += 1;
        Ok(())
    }

    fn word(&mut self, w: &str, v: Value) -> Result<Value, JsonError> {
        for &c in w.as_bytes() {
            if self.peek()? != c {
                return Err(JsonError::Invalid(self.i));
            }
            self.i += 1;
        }
        Ok(v)
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.ws();
        match self.peek()? {
            b'n' => self.word("null", Value::Null),
            b't' => self.word("true", Value::Bool(true)),
            b'f' => self.word("false", Value::Bool(false)),
            b'"' => self.string().map(Value::String),
            b'-' | b'0'..=b'9' => self.number(),
            open @ (b'[' | b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                self.i += 1;
                let close = if open == b'[' { b']' } else { b'}' };
                let mut items = Vec::new();
                let mut members = Vec::new();
                self.ws();
                if self.peek()? == close {
                    self.i += 1;
                } else {
                    loop {
                        if open == b'[' {
                            items.push(self.value(depth + 1)?);
                        } else {
                            self.expect(b'"')?;
                            self.i -= 1;
                            let key = self.string()?;
                            self.expect(b':')?;
                            members.push((key, self.value(depth + 1)?));
                        }
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            c if c == close => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(JsonError::Invalid(self.i)),
                        }
                    }
                }
                Ok(if open == b'[' {
                    Value::Array(items)
                } else {
                    Value::Object(members)
                })
            }
            _ => Err(JsonError::Invalid(self.i)),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return Err(JsonError::Invalid(self.i)),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.invalid_or_eof());
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.invalid_or_eof());
            }
        }
        Ok(Value::Number(self.s[start..self.i].to_owned()))
    }

    fn invalid_or_eof(&self) -> JsonError {
        if self.i >= self.b.len() {
            JsonError::Eof
        } else {
            JsonError::Invalid(self.i)
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut n = 0;
        for _ in 0..4 {
            let d = char::from(self.peek()?)
                .to_digit(16)
                .ok_or(JsonError::Invalid(self.i))?;
            n = n * 16 + d;
            self.i += 1;
        }
        Ok(n)
    }

    /// A string; `self.i` is at its opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1;
        let mut out = String::new();
        let mut run = self.i;
        loop {
            let c = self.peek()?;
            match c {
                b'"' => {
                    out.push_str(&self.s[run..self.i]);
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.s[run..self.i]);
                    self.i += 1;
                    let e = self.peek()?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let at = self.i;
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                // A high surrogate: its low half must follow.
                                if self.peek()? != b'\\' {
                                    return Err(JsonError::Invalid(self.i));
                                }
                                self.i += 1;
                                if self.peek()? != b'u' {
                                    return Err(JsonError::Invalid(self.i));
                                }
                                self.i += 1;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(JsonError::Invalid(at));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or(JsonError::Invalid(at))?
                        }
                        _ => return Err(JsonError::Invalid(self.i - 1)),
                    };
                    out.push(ch);
                    run = self.i;
                }
                0..=0x1f => return Err(JsonError::Invalid(self.i)),
                _ => self.i += 1,
            }
        }
    }
}

/// Appends `s` to `out` as a JSON string (quoted; `"`, `\` and control
/// characters escaped, the rest as is).
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut run = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '\0'..='\u{1f}' => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(c as u8 >> 4)]));
            out.push(char::from(HEX[usize::from(c as u8 & 0xf)]));
        } else {
            out.push_str(esc);
        }
        run = i + c.len_utf8();
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// A JSON string, quoted and escaped.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_str(&mut out, s);
    out
}

/// A JSON array of already written values.
pub fn array<I: IntoIterator<Item = String>>(items: I) -> String {
    let mut out = String::from("[");
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
    out.push(']');
    out
}

/// Writes a JSON object member by member.
#[derive(Debug, Clone, Default)]
pub struct Object {
    members: Vec<(String, String)>,
}

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object::default()
    }

    /// A member whose value is already JSON text.
    #[must_use]
    pub fn raw(mut self, key: &str, json: String) -> Object {
        self.members.push((key.to_owned(), json));
        self
    }

    /// A string member.
    #[must_use]
    pub fn str(self, key: &str, value: &str) -> Object {
        self.raw(key, string(value))
    }

    /// A string member, or `null`.
    #[must_use]
    pub fn opt_str(self, key: &str, value: Option<&str>) -> Object {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null".to_owned()),
        }
    }

    /// A number member.
    #[must_use]
    pub fn u64(self, key: &str, value: u64) -> Object {
        self.raw(key, value.to_string())
    }

    /// A boolean member.
    #[must_use]
    pub fn bool(self, key: &str, value: bool) -> Object {
        self.raw(key, if value { "true" } else { "false" }.to_owned())
    }

    /// The object, members in the order added.
    pub fn finish(self) -> String {
        let mut out = String::from("{");
        for (n, (k, v)) in self.members.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            write_str(&mut out, k);
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        out
    }

    /// The object, members sorted by key (as `serde_json::Value` writes).
    pub fn finish_sorted(mut self) -> String {
        // Insertion sort: a handful of members, and no sort routine in the
        // page's wasm for them.
        let m = &mut self.members;
        for i in 1..m.len() {
            let mut j = i;
            while j > 0 && m[j - 1].0 > m[j].0 {
                m.swap(j - 1, j);
                j -= 1;
            }
        }
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Ours and serde_json's parse agree: both fail, or both succeed with
    /// the same value (numbers compared as u64 where one fits).
    fn same(ours: &Value, theirs: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match (ours, theirs) {
            (Value::Null, J::Null) => true,
            (Value::Bool(a), J::Bool(b)) => a == b,
            (Value::Number(_), J::Number(n)) => ours.as_u64() == n.as_u64(),
            (Value::String(a), J::String(b)) => a == b,
            (Value::Array(a), J::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
            }
            (Value::Object(a), J::Object(b)) => {
                let mut keys: Vec<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
                keys.sort_unstable();
                keys.dedup();
                keys.len() == b.len()
                    && b.iter()
                        .all(|(k, v)| ours.get(k).is_some_and(|o| same(o, v)))
            }
            _ => false,
        }
    }

    fn check(text: &str) -> Result<(), TestCaseError> {
        let ours = parse(text);
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(theirs) => {
                let ours = ours.map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
                prop_assert!(same(&ours, &theirs), "{text:?}: {ours:?} vs {theirs:?}");
            }
            // serde_json refuses floats beyond f64; they are JSON all the same.
            Err(e) if e.to_string().contains("out of range") => {}
            Err(e) => prop_assert!(ours.is_err(), "{text:?} accepted; serde_json: {e}"),
        }
        Ok(())
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value as J;
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<u64>().prop_map(J::from),
            any::<i64>().prop_map(J::from),
            (-1e9f64..1e9).prop_map(J::from),
            any::<String>().prop_map(J::String),
            "[\\\\\"a-c\u{0}-\u{1f}\u{e9}\u{1F600}]{0,8}".prop_map(J::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
                prop::collection::vec(("[a-c\"\\\\]{0,3}", inner), 0..6)
                    .prop_map(|m| J::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_serde_json_on_its_output(v in json_value()) {
            let text = serde_json::to_string(&v).unwrap();
            check(&text)?;
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            check(&pretty)?;
        }

        #[test]
        fn agrees_with_serde_json_on_near_json(text in "[ \\[\\]{}\",:0-9.eE+\\-tfrulnasx\\\\/\u{1}\u{e9}]{0,24}") {
            check(&text)?;
        }

        #[test]
        fn agrees_with_serde_json_on_mutated_json(v in json_value(), at in any::<prop::sample::Index>(), cut in any::<bool>(), c in "[\\[\\]{}\",:0-9.eE+\\-\\\\ u]") {
            let text = serde_json::to_string(&v).unwrap();
            let mut cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            cuts.push(text.len());
            let i = cuts[at.index(cuts.len())];
            let mutated = if cut {
                text[..i].to_owned()
            } else {
                format!("{}{c}{}", &text[..i], &text[i..])
            };
            check(&mutated)?;
        }

        #[test]
        fn strings_are_written_as_serde_json_writes_them(s in any::<String>(), t in "[\u{0}-\u{1f}\"\\\\/a\u{7f}\u{e9}]{0,12}") {
            for s in [&s, &t] {
                prop_assert_eq!(string(s), serde_json::to_string(s).unwrap());
                prop_assert_eq!(parse(&string(s)), Ok(Value::String(s.clone())));
            }
        }
    }

    #[test]
    fn surrogates_and_escapes() {
        assert_eq!(
            parse(r#""\ud83d\ude00 \u00e9\n\/""#),
            Ok(Value::String("\u{1F600} \u{e9}\n/".into()))
        );
        for bad in [
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\ud83d\u0041""#,
            "\"\u{1}\"",
            r#""\x""#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn numbers_and_accessors() {
        let v = parse(r#"{"a":18446744073709551615,"b":18446744073709551616,"c":-1,"d":1.0,"e":1e2,"a2":"x","a2":7,"t":true}"#).unwrap();
        assert_eq!(v.get("a").and_then(Value::as_u64), Some(u64::MAX));
        for k in ["b", "c", "d", "e"] {
            assert_eq!(v.get(k).and_then(Value::as_u64), None, "{k}");
        }
        assert_eq!(
            v.get("a2").and_then(Value::as_u64),
            Some(7),
            "the last duplicate"
        );
        assert_eq!(v.get("t").and_then(Value::as_bool), Some(true));
        assert!(Value::is_null_or_absent(v.get("zz")));
        for bad in [
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "1 2",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "nul",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nesting_is_limited() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep), Err(JsonError::TooDeep));
        let huge = "[".repeat(1_000_000);
        assert_eq!(parse(&huge), Err(JsonError::TooDeep));
    }

    #[test]
    fn objects_are_written_in_order_or_sorted() {
        let o = Object::new()
            .str("b", "x\"y")
            .u64("a", 3)
            .bool("c", false)
            .opt_str("d", None)
            .raw("e", array(["1".to_owned(), string("z")]));
        assert_eq!(
            o.clone().finish(),
            r#"{"b":"x\"y","a":3,"c":false,"d":null,"e":[1,"z"]}"#
        );
        assert_eq!(
            o.finish_sorted(),
            r#"{"a":3,"b":"x\"y","c":false,"d":null,"e":[1,"z"]}"#
        );
    }
}
