//! Fault containment: a panic in one session's task (injected with the
//! test-only feature `fault-injection`: logging in as `panic-in-session`
//! panics) ends that session only. The bridge goes on serving, another
//! session carries on, and the faulty session's slots are released: with
//! room for exactly two sessions (per address and in total), a new session
//! gets in after each fault, and the session gauges return to zero.
//!
//! Run with `cargo test -p dumdum-bridge --features fault-injection --test fault`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bridge, Got, WAIT, WsClient};
use dumdum_bridge::Config;
use dumdum_protocol::ClientMessage;

const FAULT_NICK: &str = "panic-in-session";

fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// The WebSocket of a session whose task panicked: closed (or dropped).
async fn expect_gone(c: &mut WsClient) -> String {
    loop {
        match c.next_within(WAIT).await {
            Some(Got::Close(code, reason)) => return format!("close {code} {reason}"),
            Some(Got::Ended) => return "ended without a close frame".into(),
            Some(_) => {}
            None => panic!("the faulty session's WebSocket is still open after {WAIT:?}"),
        }
    }
}

/// A session that panics when it forwards AUTHENTICATE.
async fn faulty_session(bridge: &Bridge) {
    let mut c = bridge.session(None).await;
    let hello = c.hello().await;
    assert!(
        matches!(hello, dumdum_protocol::ServerMessage::Hello { .. }),
        "{hello:?}"
    );
    c.send(&ClientMessage::Authenticate {
        nick: FAULT_NICK.into(),
    })
    .await;
    let how = expect_gone(&mut c).await;
    println!("faulty session: {how}");
}

#[tokio::test]
async fn a_panic_in_a_session_task_ends_only_that_session_and_releases_its_slots() {
    let bridge = Bridge::start(Config {
        max_sessions: 2,
        max_sessions_per_ip: 2,
        ..Config::default()
    })
    .await;
    let mut bystander = bridge.session(None).await;
    bystander.login("bystander").await;

    for round in 0..3 {
        faulty_session(&bridge).await;
        // The bridge answers, the bystander carries on.
        let (status, _, _) = common::http_get(bridge.addr, "/healthz").await;
        assert_eq!(status, 200);
        bystander
            .say("general", &format!("still here {round}"))
            .await;
        bystander
            .expect_message(&format!("still here {round}"))
            .await;
        // The faulty session's slot is free again: with room for two, a
        // new session gets in (a leaked slot would close it with 1013).
        let mut next = bridge.session(None).await;
        next.login(&format!("next{round}")).await;
        next.say("general", &format!("next {round}")).await;
        next.expect_message(&format!("next {round}")).await;
        bystander.expect_message(&format!("next {round}")).await;
        next.close(1000).await;
    }

    bystander.close(1000).await;
    // Every gauge back to zero once the sessions have ended.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = bridge.metrics().await;
        let counts = [
            gauge(&m, "dumdum_bridge_sessions_active"),
            gauge(&m, "dumdum_bridge_sessions_held"),
            gauge(&m, "dumdum_bridge_websockets_active"),
        ];
        if counts == [0.0; 3] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions active, held, WebSockets still {counts:?} after every session ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
