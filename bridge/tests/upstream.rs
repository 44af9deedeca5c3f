//! The bridge in front of the real Python `dumdum-server` 0.5.0, plain and
//! with its in-band TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Bridge, WAIT, expect_notice, expect_secured};
use dumdum_bridge::{Config, UpstreamConfig};
use dumdum_protocol::session::Notice;
use dumdum_protocol::{ClientMessage, HistoryQuery, ServerMessage};
use dumdum_testkit::{DumdumServer, PyPeer, TestCert};

async fn start_server(cert: Option<Arc<TestCert>>) -> DumdumServer {
    tokio::task::spawn_blocking(move || {
        DumdumServer::start_with(&["general", "random"], cert.as_deref())
    })
    .await
    .unwrap()
}

/// A certificate for one test, its files removed when the test ends.
fn test_cert() -> Arc<TestCert> {
    Arc::new(TestCert::localhost())
}

#[tokio::test]
async fn two_browsers_and_a_python_client_chat_through_the_real_server() {
    let server = start_server(None).await;
    let addr = server.addr();
    let bridge = Bridge::upstream("main", addr).await;
    let (_, _, body) = common::http_get(bridge.addr, "/api/servers").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!([{"name": "main", "tls": false, "default": true}]),
        "only names, never addresses"
    );

    let mut a = bridge.session(None).await;
    expect_notice(
        &mut a,
        "connected",
        |n| matches!(n, Notice::UpstreamConnected { server } if server == "main"),
    )
    .await;
    a.login("ann").await;
    let mut b = bridge.session(Some("main")).await;
    b.login("ben").await;
    let mut py = tokio::task::spawn_blocking(move || {
        let mut py = PyPeer::connect(addr, "pete", None);
        assert!(py.expect_auth());
        py
    })
    .await
    .unwrap();

    a.say("general", "from ann").await;
    b.expect_message("from ann").await;
    a.expect_message("from ann").await;
    b.say("general", "from ben").await;
    a.expect_message("from ben").await;
    let py = tokio::task::spawn_blocking(move || {
        py.expect_message("from ann");
        py.expect_message("from ben");
        py.send("general", "from pete");
        py
    })
    .await
    .unwrap();
    assert_eq!(a.expect_message("from pete").await.nick, "pete");
    assert_eq!(b.expect_message("from pete").await.nick, "pete");

    // Nick uniqueness is the server's: a third browser cannot take "ann".
    let mut c = bridge.session(None).await;
    c.send(&ClientMessage::Hello { version: 2 }).await;
    c.expect_frame().await;
    c.send(&ClientMessage::Authenticate { nick: "ann".into() })
        .await;
    assert_eq!(
        c.expect_frame().await,
        ServerMessage::AcknowledgeAuthentication { success: false }
    );

    // History through the bridge, with the reference's inverted range.
    a.send(&HistoryQuery::Newest.request("general")).await;
    let ServerMessage::ListMessages(page) = a
        .expect_frame_where("history", |m| matches!(m, ServerMessage::ListMessages(_)))
        .await
    else {
        unreachable!()
    };
    let contents: Vec<_> = page.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["from ann", "from ben", "from pete"]);
    drop(py);
}

#[tokio::test]
async fn hello_and_authenticate_back_to_back_plain() {
    let server = start_server(None).await;
    let bridge = Bridge::upstream("main", server.addr()).await;
    let mut a = bridge.session(None).await;
    a.login_eager("quick").await;
    a.say("general", "still here").await;
    a.expect_message("still here").await;
}

fn tls_bridge_config(addr: std::net::SocketAddr, ca: Option<&TestCert>) -> Config {
    let mut up = UpstreamConfig::new("secure", addr.to_string());
    up.ca = ca.map(|c| c.cert_path.clone());
    up.server_name = Some("localhost".into());
    Config {
        upstreams: vec![up],
        ..Config::default()
    }
}

#[tokio::test]
async fn tls_upstream_with_the_ca_configured() {
    let cert = test_cert();
    let server = start_server(Some(cert.clone())).await;
    let addr = server.addr();
    let bridge = Bridge::start(tls_bridge_config(addr, Some(&cert))).await;
    let mut a = bridge.session(None).await;
    // HELLO and AUTHENTICATE back to back: the bridge holds AUTHENTICATE
    // until HELLO(1) and the TLS upgrade are done.
    a.send(&ClientMessage::Hello { version: 2 }).await;
    a.send(&ClientMessage::Authenticate {
        nick: "tess".into(),
    })
    .await;
    assert_eq!(a.expect_frame().await, ServerMessage::Hello { tls: true });
    assert_eq!(
        a.expect_frame().await,
        ServerMessage::AcknowledgeAuthentication { success: true }
    );
    let (_, peer, fingerprint) = expect_secured(&mut a).await;
    assert!(peer.contains("CN="), "{peer}");
    let expected = dumdum_bridge::tls::fingerprint(&cert.cert_der);
    assert_eq!(fingerprint, expected);

    let ca = cert.cert_path.clone();
    let py = tokio::task::spawn_blocking(move || {
        let mut py = PyPeer::connect(addr, "tpy", Some(&ca));
        assert!(py.expect_auth());
        py.send("general", "over tls");
        py
    })
    .await
    .unwrap();
    assert_eq!(a.expect_message("over tls").await.nick, "tpy");
    a.say("general", "back over tls").await;
    a.expect_message("back over tls").await;
    drop(py);
}

#[tokio::test]
async fn tls_upstream_without_the_ca_is_refused_with_4003() {
    let cert = test_cert();
    let server = start_server(Some(cert.clone())).await;
    let bridge = Bridge::start(tls_bridge_config(server.addr(), None)).await;
    let mut a = bridge.session(None).await;
    a.send(&ClientMessage::Hello { version: 2 }).await;
    a.send(&ClientMessage::Authenticate {
        nick: "nope".into(),
    })
    .await;
    let (code, reason) = a.expect_close().await;
    assert_eq!(code, 4003, "{reason}");
    let n = expect_notice(&mut a, "error", |n| {
        matches!(n, Notice::UpstreamError { .. })
    })
    .await;
    let Notice::UpstreamError { reason } = n else {
        unreachable!()
    };
    assert_eq!(
        reason,
        "the certificate of secure is not signed by a trusted CA \
         (pin it with ca = \"its .crt file\" or fingerprint)",
        "the notice says why in words"
    );
    // The bridge still serves other sessions.
    let mut b = bridge.session(None).await;
    expect_notice(&mut b, "connected", |n| {
        matches!(n, Notice::UpstreamConnected { .. })
    })
    .await;
}

#[tokio::test]
async fn a_ca_without_require_tls_is_not_advertised_as_tls() {
    // Without require_tls the bridge accepts HELLO(0): an on-path attacker
    // can strip TLS, so the page must not be told the link is TLS.
    let cert = test_cert();
    let bridge = Bridge::start(tls_bridge_config(
        "127.0.0.1:9".parse().unwrap(),
        Some(&cert),
    ))
    .await;
    let (_, _, body) = common::http_get(bridge.addr, "/api/servers").await;
    assert!(body.contains("\"tls\":false"), "{body}");
}

#[tokio::test]
async fn require_tls_upstream_that_answers_hello_0_is_refused() {
    let server = start_server(None).await;
    let mut up = UpstreamConfig::new("strict", server.addr().to_string());
    up.require_tls = true;
    let bridge = Bridge::start(Config {
        upstreams: vec![up],
        ..Config::default()
    })
    .await;
    let (_, _, body) = common::http_get(bridge.addr, "/api/servers").await;
    assert!(body.contains("\"tls\":true"), "{body}");
    let mut a = bridge.session(None).await;
    a.send(&ClientMessage::Hello { version: 2 }).await;
    a.send(&ClientMessage::Authenticate {
        nick: "plain".into(),
    })
    .await;
    let mut frames = Vec::new();
    let (code, reason) = loop {
        match a.next().await {
            common::Got::Close(c, r) => break (c, r),
            common::Got::Frame(m, _) => frames.push(m),
            common::Got::Text(_) => {}
            common::Got::Ended => panic!("ended without a close frame"),
        }
    };
    assert_eq!(code, 4003, "{reason}");
    assert_eq!(reason, "strict did not offer TLS (require_tls)");
    assert!(
        frames.is_empty(),
        "nothing is relayed from a refused server: {frames:?}"
    );
    assert!(
        a.notices
            .iter()
            .any(|n| matches!(n, Notice::UpstreamError { reason } if reason.contains("TLS")))
    );
}

#[tokio::test]
async fn upstream_that_closes_mid_session_gives_4002() {
    let mut server = start_server(None).await;
    let bridge = Bridge::upstream("main", server.addr()).await;
    let mut a = bridge.session(None).await;
    a.login("doomed").await;
    let server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let (code, reason) = a.expect_close().await;
    assert_eq!(code, 4002, "{reason}");
    assert!(
        a.notices
            .iter()
            .any(|n| matches!(n, Notice::UpstreamClosed { .. })),
        "{:?}",
        a.notices
    );
    // A second session: the server is down, so 4001 — and the bridge is fine.
    let mut b = bridge.session(None).await;
    let (code, _) = b.expect_close().await;
    assert_eq!(code, 4001);
    drop(server);
    let _ = WAIT;
}
