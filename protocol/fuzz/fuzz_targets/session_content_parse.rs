//! `session::Content::parse` on arbitrary text: no panic, and whatever
//! parses writes back to JSON that parses to the same value.
#![no_main]

use dumdum_protocol::session::Content;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(content) = Content::parse(text) {
        let json = content.to_json();
        assert_eq!(Content::parse(&json), Ok(content), "{json}");
    }
});
