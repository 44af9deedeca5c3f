//! The golden cases: messages the reference implementation encodes byte for
//! byte as we do (`golden.rs` checks that against the Python package). The
//! fuzz seeds are made from them too (`fuzz_seeds.rs`).

#![allow(dead_code)]

use dumdum_protocol::{ChatMessage, ClientMessage, ServerMessage, Snowflake};

pub fn chat(id: u64, channel: &str, nick: &str, content: &str) -> ChatMessage {
    ChatMessage::new(Snowflake(id), channel, nick, content)
}

pub const MAX_CHANNEL: &str = "abcdefghijklmnopqrstuvwxyz012345"; // 32 bytes
pub const MB_NICK_32: &str = "éééééééééééééééé"; // 16 x 2 bytes

pub fn max_content() -> String {
    // 341 x 3 bytes + 1 = 1024 bytes.
    "€".repeat(341) + "!"
}

pub fn client_cases() -> Vec<ClientMessage> {
    vec![
        ClientMessage::Hello { version: 2 },
        ClientMessage::Hello { version: 1 },
        ClientMessage::Hello { version: 255 },
        ClientMessage::Authenticate {
            nick: "thegamecracks".into(),
        },
        ClientMessage::Authenticate {
            nick: String::new(),
        },
        ClientMessage::Authenticate {
            nick: "zoë👀".into(),
        },
        ClientMessage::Authenticate {
            nick: MB_NICK_32.into(),
        },
        ClientMessage::Authenticate {
            nick: "n".repeat(32),
        },
        ClientMessage::SendMessage {
            channel: "general".into(),
            content: "Hello world!".into(),
        },
        ClientMessage::SendMessage {
            channel: String::new(),
            content: String::new(),
        },
        ClientMessage::SendMessage {
            channel: MAX_CHANNEL.into(),
            content: max_content(),
        },
        ClientMessage::SendMessage {
            channel: "日本語".into(),
            content: "👀".repeat(256),
        },
        ClientMessage::SendMessage {
            channel: "general".into(),
            content: "line\nbreak\ttab\0nul \u{7f} \u{10ffff}".into(),
        },
        ClientMessage::ListChannels,
        ClientMessage::ListMessages {
            channel: "general".into(),
            before: 0,
            after: 0,
        },
        ClientMessage::ListMessages {
            channel: "general".into(),
            before: 1,
            after: 2,
        },
        ClientMessage::ListMessages {
            channel: MB_NICK_32.into(),
            before: u64::MAX,
            after: 1 << 63,
        },
    ]
}

pub fn server_cases() -> Vec<ServerMessage> {
    let hundred: Vec<ChatMessage> = (0..100u64)
        .map(|i| {
            chat(
                ((1_700_000_000_000 + i) << 19) | (i % 4096),
                "general",
                ["alice", "bøb", "👀"][i as usize % 3],
                // 600..800 bytes each: the list needs the third length byte.
                &format!("message {i}: {}", "ü".repeat(300 + i as usize)),
            )
        })
        .collect();
    vec![
        ServerMessage::Hello { tls: false },
        ServerMessage::Hello { tls: true },
        ServerMessage::IncompatibleVersion { required: 2 },
        ServerMessage::AcknowledgeAuthentication { success: true },
        ServerMessage::AcknowledgeAuthentication { success: false },
        ServerMessage::SendMessage(chat(
            7_131_046_989_742_080_001,
            "general",
            "thegamecracks",
            "Hello world!",
        )),
        ServerMessage::SendMessage(chat(0, "", "", "")),
        ServerMessage::SendMessage(chat(u64::MAX >> 1, MAX_CHANNEL, MB_NICK_32, &max_content())),
        ServerMessage::SendMessage(chat(u64::MAX, "ch", "zoë", "👀 multi-byte ✓")),
        ServerMessage::ListChannels(vec![]),
        ServerMessage::ListChannels(vec!["general".into(), "random".into()]),
        ServerMessage::ListChannels(
            [
                "announcements",
                "general",
                "memes",
                "coding-lounge",
                "fishing-trips",
                "日本語",
                MAX_CHANNEL,
                MB_NICK_32,
            ]
            .map(String::from)
            .to_vec(),
        ),
        ServerMessage::ListMessages(vec![]),
        ServerMessage::ListMessages(vec![chat(1, "general", "n", "x")]),
        ServerMessage::ListMessages(hundred),
        ServerMessage::ListMessages(vec![
            chat(u64::MAX >> 1, MAX_CHANNEL, MB_NICK_32, &max_content()),
            chat(2, "", "", ""),
        ]),
    ]
}
