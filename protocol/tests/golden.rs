//! Golden bytes from the reference implementation (dum-dum-irc 0.5.0).
//!
//! The Python package encodes every case with its own message classes; our
//! encoder must produce the identical bytes and our decoder must read theirs
//! back to equal values. Then Python decodes OUR bytes with its `Client` and
//! `Server` (`receive_bytes`) and reports the fields, which must equal ours.
//! It fails, never skips, when the venv with the reference is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

mod golden_cases;

use dumdum_protocol::{ChatMessage, ClientMessage, Decode, ServerMessage};
use golden_cases::{client_cases, server_cases};
use serde_json::{Value, json};

/// Encodes the cases with the reference classes and decodes our bytes with
/// the reference protocol objects. Input: a JSON array of
/// `{"dir", "desc", "ours"}`; output: one `{"hex", "decoded", "leftover"}` a line.
const SCRIPT: &str = r#"
import json, sys
from dumdum.protocol import (
    Channel, Client, ClientState, Message, Server, ServerState,
    ClientMessageHello, ClientMessageAuthenticate, ClientMessagePost,
    ClientMessageListChannels, ClientMessageListMessages,
    ServerMessageHello, ServerMessageSendIncompatibleVersion,
    ServerMessageAcknowledgeAuthentication, ServerMessagePost,
    ServerMessageListChannels, ServerMessageListMessages,
    ServerEventHello, ServerEventIncompatibleVersion, ServerEventAuthentication,
    ServerEventMessageReceived, ServerEventListChannels, ServerEventListMessages,
    ClientEventHello, ClientEventIncompatibleVersion, ClientEventAuthentication,
    ClientEventMessageReceived, ClientEventChannelsListed, ClientEventMessagesListed,
)

def msg(d):
    return Message(d["id"], d["channel"], d["nick"], d["content"])

def msg_json(m):
    return {"id": m.id, "channel": m.channel_name, "nick": m.nick, "content": m.content}

def encode(direction, d):
    t = d["t"]
    if direction == "c2s":
        if t == "hello": return bytes(ClientMessageHello(d["version"]))
        if t == "authenticate": return bytes(ClientMessageAuthenticate(d["nick"]))
        if t == "send_message": return bytes(ClientMessagePost(d["channel"], d["content"]))
        if t == "list_channels": return bytes(ClientMessageListChannels())
        if t == "list_messages":
            return bytes(ClientMessageListMessages(d["channel"], d["before"] or None, d["after"] or None))
    else:
        if t == "hello": return bytes(ServerMessageHello(d["tls"]))
        if t == "incompatible_version": return bytes(ServerMessageSendIncompatibleVersion(d["required"]))
        if t == "ack": return bytes(ServerMessageAcknowledgeAuthentication(d["success"]))
        if t == "send_message": return bytes(ServerMessagePost(msg(d["message"])))
        if t == "list_channels": return bytes(ServerMessageListChannels([Channel(c) for c in d["channels"]]))
        if t == "list_messages": return bytes(ServerMessageListMessages([msg(m) for m in d["messages"]]))
    raise ValueError(f"unknown case {direction} {t}")

def decode(direction, t, data):
    if direction == "c2s":
        p = Server()
        p._state = {
            "hello": ServerState.AWAITING_CLIENT_HELLO,
            "authenticate": ServerState.AWAITING_AUTHENTICATION,
        }.get(t, ServerState.READY)
    else:
        p = Client("golden")
        p._state = {
            "hello": ClientState.AWAITING_SERVER_HELLO,
            "incompatible_version": ClientState.AWAITING_SERVER_HELLO,
            "ack": ClientState.AWAITING_AUTHENTICATION,
        }.get(t, ClientState.READY)
    events, outgoing = p.receive_bytes(data)
    out = []
    for e in events:
        if isinstance(e, ServerEventHello): out.append({"t": "hello", "version": Server.PROTOCOL_VERSION})
        elif isinstance(e, ServerEventIncompatibleVersion): out.append({"t": "hello", "version": e.version})
        elif isinstance(e, ServerEventAuthentication): out.append({"t": "authenticate", "nick": e.nick})
        elif isinstance(e, ServerEventMessageReceived):
            out.append({"t": "send_message", "channel": e.channel_name, "content": e.content})
        elif isinstance(e, ServerEventListChannels): out.append({"t": "list_channels"})
        elif isinstance(e, ServerEventListMessages):
            out.append({"t": "list_messages", "channel": e.channel_name,
                        "before": e.before or 0, "after": e.after or 0})
        elif isinstance(e, ClientEventHello): out.append({"t": "hello", "tls": e.using_ssl})
        elif isinstance(e, ClientEventIncompatibleVersion):
            out.append({"t": "incompatible_version", "required": e.server_version})
        elif isinstance(e, ClientEventAuthentication): out.append({"t": "ack", "success": e.success})
        elif isinstance(e, ClientEventMessageReceived):
            out.append({"t": "send_message", "message": msg_json(e.message)})
        elif isinstance(e, ClientEventChannelsListed):
            out.append({"t": "list_channels", "channels": [c.name for c in e.channels]})
        elif isinstance(e, ClientEventMessagesListed):
            out.append({"t": "list_messages", "messages": [msg_json(m) for m in e.messages]})
        else: out.append({"unknown event": repr(e)})
    return out, len(p._buffer), outgoing.hex()

for case in json.load(sys.stdin):
    direction, d = case["dir"], case["desc"]
    decoded, leftover, outgoing = decode(direction, d["t"], bytes.fromhex(case["ours"]))
    print(json.dumps({"hex": encode(direction, d).hex(), "decoded": decoded,
                      "leftover": leftover, "outgoing": outgoing}))
"#;

fn chat_json(m: &ChatMessage) -> Value {
    json!({"id": m.id.0, "channel": m.channel, "nick": m.nick, "content": m.content})
}

fn client_desc(m: &ClientMessage) -> Value {
    match m {
        ClientMessage::Hello { version } => json!({"t": "hello", "version": version}),
        ClientMessage::Authenticate { nick } => json!({"t": "authenticate", "nick": nick}),
        ClientMessage::SendMessage { channel, content } => {
            json!({"t": "send_message", "channel": channel, "content": content})
        }
        ClientMessage::ListChannels => json!({"t": "list_channels"}),
        ClientMessage::ListMessages {
            channel,
            before,
            after,
        } => json!({"t": "list_messages", "channel": channel, "before": before, "after": after}),
    }
}

fn server_desc(m: &ServerMessage) -> Value {
    match m {
        ServerMessage::Hello { tls } => json!({"t": "hello", "tls": tls}),
        ServerMessage::IncompatibleVersion { required } => {
            json!({"t": "incompatible_version", "required": required})
        }
        ServerMessage::AcknowledgeAuthentication { success } => {
            json!({"t": "ack", "success": success})
        }
        ServerMessage::SendMessage(m) => json!({"t": "send_message", "message": chat_json(m)}),
        ServerMessage::ListChannels(c) => json!({"t": "list_channels", "channels": c}),
        ServerMessage::ListMessages(ms) => json!({
            "t": "list_messages",
            "messages": ms.iter().map(chat_json).collect::<Vec<_>>()
        }),
    }
}

#[test]
fn reference_bytes_match_ours_both_ways() {
    let clients = client_cases();
    let servers = server_cases();
    let mut input = Vec::new();
    for m in &clients {
        input.push(
            json!({"dir": "c2s", "desc": client_desc(m), "ours": hex(&m.to_bytes().unwrap())}),
        );
    }
    for m in &servers {
        input.push(
            json!({"dir": "s2c", "desc": server_desc(m), "ours": hex(&m.to_bytes().unwrap())}),
        );
    }
    let out = dumdum_testkit::run_python(
        SCRIPT,
        &Value::Array(input.clone()).to_string(),
        Duration::from_secs(60),
    );
    let results: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line from the script"))
        .collect();
    assert_eq!(results.len(), input.len(), "one result per case:\n{out}");

    let mut checked = (0, 0);
    for (i, (case, result)) in input.iter().zip(&results).enumerate() {
        let theirs = unhex(result["hex"].as_str().unwrap());
        let ours = unhex(case["ours"].as_str().unwrap());
        let desc = &case["desc"];
        // 1. The reference's encoding is byte for byte ours.
        assert_eq!(
            hex(&theirs),
            hex(&ours),
            "case {i}: the reference encodes {desc} differently"
        );
        // 2. Our decoder reads the reference's bytes to the same value.
        if i < clients.len() {
            assert_eq!(
                ClientMessage::decode_exact(&theirs).unwrap(),
                clients[i],
                "case {i}"
            );
            checked.0 += 1;
        } else {
            assert_eq!(
                ServerMessage::decode_exact(&theirs).unwrap(),
                servers[i - clients.len()],
                "case {i}"
            );
            checked.1 += 1;
        }
        // 3. The reference decodes our bytes to the same fields, consuming
        //    all of them, with nothing to answer except INCOMPATIBLE_VERSION.
        assert_eq!(
            result["decoded"],
            json!([desc]),
            "case {i}: the reference decodes our bytes of {desc} differently"
        );
        assert_eq!(result["leftover"], 0, "case {i}: bytes left unread");
        let expected_reply = match (case["dir"].as_str(), desc["t"].as_str()) {
            (Some("c2s"), Some("hello")) if desc["version"] != 2 => "0102",
            _ => "",
        };
        assert_eq!(result["outgoing"], expected_reply, "case {i}: reply");
    }
    assert_eq!(checked, (17, 16));
}

/// The channel list's and the message list's length prefixes as the
/// reference writes them: u16 and u24, counting bytes.
#[test]
fn list_length_prefixes() {
    let bytes = ServerMessage::ListChannels(vec!["general".into(), "random".into()])
        .to_bytes()
        .unwrap();
    assert_eq!(hex(&bytes), "04000f0767656e6572616c0672616e646f6d");
    let hundred = match &server_cases()[14] {
        m @ ServerMessage::ListMessages(ms) if ms.len() == 100 => m.to_bytes().unwrap(),
        other => panic!("case 14 is the 100-message list, not {other:?}"),
    };
    let len =
        (usize::from(hundred[1]) << 16) | (usize::from(hundred[2]) << 8) | usize::from(hundred[3]);
    assert_eq!(len, hundred.len() - 4);
    assert!(
        len > 0xffff,
        "the 100-message list needs the third length byte"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
