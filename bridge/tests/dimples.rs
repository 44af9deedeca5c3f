//! The session JSON is what the DIMP Python packages accept: every
//! handshake and notice form the bridge (and the client side of the
//! protocol crate) emits is parsed by `dimples` 2.1.x `Content.parse`, which
//! must read the command name, the handshake state and the session key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bridge, Proxy};
use dumdum_protocol::session::{Content, Handshake, Notice};
use serde_json::Value;

const SCRIPT: &str = r#"
import json, sys
from dimples.common.compat import LibraryLoader
LibraryLoader().run()
from dimsdk import Content
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    c = Content.parse(json.loads(line))
    out = {"class": type(c).__name__, "type": str(c.type), "sn": c.sn}
    if hasattr(c, "state") and hasattr(c, "cmd"):
        out.update(cmd=c.cmd, state=c.state.name, session=c.session, title=c.title)
    else:
        out.update(app=c.get("app"), mod=c.get("mod"), act=c.get("act"))
    print(json.dumps(out))
"#;

#[tokio::test]
async fn dimples_parses_every_form() {
    // Real texts from the bridge: Again, Success (fresh and resumed), and
    // the connected / resumed notices.
    let bridge = Bridge::embedded().await;
    let proxy = Proxy::start(bridge.addr).await;
    let mut a = proxy.ws(&bridge).await;
    a.handshake(None).await;
    a.login("dimp").await;
    let key = a.key.clone().unwrap();
    let received = a.received;
    let mut texts = a.raw_texts.clone();
    proxy.cut();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let b = loop {
        let mut b = proxy.ws(&bridge).await;
        let h = b.restart(&key, received).await;
        if h.resumed == Some(true) {
            break b;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut b = b;
    common::expect_notice(&mut b, "resumed", |n| {
        matches!(n, Notice::SessionResumed { .. })
    })
    .await;
    texts.extend(b.raw_texts.iter().cloned());

    // The client's forms and the notices not produced above, from the same
    // serializer the bridge uses.
    let k = "ab".repeat(32);
    for c in [
        Content::Handshake(Handshake::start(1, Some("local".into()))),
        Content::Handshake(Handshake::start(1, None)),
        Content::Handshake(Handshake::restart(2, k.clone(), 5, None)),
        Content::Notice {
            sn: 3,
            notice: Notice::UpstreamSecured {
                tls_version: "TLSv1.3".into(),
                peer: "CN=localhost".into(),
                fingerprint: "AB:CD".into(),
            },
        },
        Content::Notice {
            sn: 4,
            notice: Notice::UpstreamClosed {
                reason: "the server closed the connection".into(),
            },
        },
        Content::Notice {
            sn: 5,
            notice: Notice::UpstreamError {
                reason: "cannot connect".into(),
            },
        },
    ] {
        texts.push(c.to_json());
    }

    let input = texts.join("\n") + "\n";
    let out = tokio::task::spawn_blocking(move || {
        dumdum_testkit::run_python(SCRIPT, &input, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let parsed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed.len(), texts.len(), "{out}");

    let mut states = Vec::new();
    for (text, p) in texts.iter().zip(&parsed) {
        let ours = Content::parse(text).unwrap();
        match ours {
            Content::Handshake(h) => {
                assert_eq!(p["cmd"], "handshake", "{text} -> {p}");
                assert_eq!(p["type"], "136");
                let state = format!("{:?}", h.state());
                assert_eq!(p["state"], state.as_str(), "{text} -> {p}");
                assert_eq!(p["session"].as_str(), h.session.as_deref(), "{text}");
                assert_eq!(p["sn"], h.sn);
                states.push(state);
            }
            Content::Notice { sn, .. } => {
                assert_eq!(p["class"], "AppCustomizedContent", "{text} -> {p}");
                assert_eq!(p["type"], "160");
                assert_eq!(p["app"], "dumdum.bridge");
                assert_eq!(p["sn"], sn);
                let v: Value = serde_json::from_str(text).unwrap();
                assert_eq!(p["mod"], v["mod"]);
                assert_eq!(p["act"], v["act"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for s in ["Start", "Again", "Restart", "Success"] {
        assert!(states.iter().any(|x| x == s), "{s} covered: {states:?}");
    }
    // The real bridge texts included both Success forms and a key.
    assert!(texts.iter().any(|t| t.contains("\"resumed\":true")));
    assert!(texts.iter().any(|t| t.contains("\"resumed\":false")));
    assert!(parsed.iter().any(|p| p["session"] == key.as_str()));
}
