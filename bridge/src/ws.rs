//! One WebSocket: the session handshake, then its reader (client frames,
//! validated, to the session). Once attached, the WebSocket's sending half
//! belongs to its session, whose task writes the browser's frames itself.

use std::sync::Arc;
use std::time::Duration;

use dumdum_protocol::session::{Content, Handshake, HandshakeState, Notice};
use dumdum_protocol::websocket::{Message, WsError};
use dumdum_protocol::{ClientMessage, Decode};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::{App, IpGuard, Peer, key_prefix, new_session_key};
use crate::queue;
use crate::session::{self, AttachOut, Cmd, Detach, WsCtrl, code};
use crate::wsio::{Read, WsRead, WsWrite};

/// A WebSocket's sending half.
pub(crate) type Sink = WsWrite;
type Stream = WsRead;

/// How long a close frame may take to go out, and the peer's answer to come.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Start/Restart rounds allowed on one WebSocket.
const MAX_HANDSHAKES: u32 = 4;
/// The bridge pings an attached browser this often ...
pub(crate) const PING_EVERY: Duration = Duration::from_secs(25);
/// ... and counts a WebSocket as lost (the session is held) after this long
/// without hearing anything, pongs included.
const SILENCE_LIMIT: Duration = Duration::from_secs(70);

async fn send_close(sink: &mut Option<Sink>, code: u16, reason: &str) {
    // Gone with a session that ended while it held it.
    let Some(sink) = sink.as_mut() else { return };
    let _ = tokio::time::timeout(CLOSE_WAIT, sink.send_close(Some((code, reason)))).await;
}

/// What the WebSocket's task keeps of an attachment.
struct ReaderSide {
    ctrl: Arc<WsCtrl>,
    done: CancellationToken,
    id: u64,
}

fn new_attachment(app: &App, client: Peer, sn: u32, sink: Sink) -> (AttachOut, ReaderSide) {
    let ctrl = Arc::new(WsCtrl::default());
    let done = CancellationToken::new();
    let id = app.next_id();
    (
        AttachOut {
            id,
            sink,
            ctrl: ctrl.clone(),
            done: done.clone(),
            sn,
            client,
        },
        ReaderSide { ctrl, done, id },
    )
}

/// Serves one upgraded WebSocket.
pub(crate) async fn handle(
    (mut stream, sink): (WsRead, WsWrite),
    app: Arc<App>,
    client: Peer,
    guard: Option<IpGuard>,
) {
    app.metrics.websockets_active.increment(1.0);
    let mut sink = Some(sink);
    if guard.is_none() {
        app.metrics.capacity_per_ip.increment(1);
        tracing::info!(client = %client, "refused: too many sessions from this address");
        send_close(
            &mut sink,
            code::TRY_AGAIN_LATER,
            "too many sessions from your address: try again later",
        )
        .await;
    } else {
        let outcome = tokio::select! {
            () = app.stop.cancelled() => Err(Some(app.closing())),
            // Boxed: it runs once, and would otherwise take room in the
            // task for the WebSocket's whole life.
            r = tokio::time::timeout(
                app.config.handshake_timeout,
                Box::pin(handshake(&app, &mut sink, &mut stream, client)),
            ) => r.unwrap_or_else(|_| Err(Some((code::POLICY, "handshake timed out".to_string())))),
        };
        match outcome {
            Ok((cmds, side)) => {
                reader(
                    stream,
                    cmds,
                    side.id,
                    side.ctrl,
                    side.done,
                    app.config.max_frame_size,
                )
                .await;
            }
            Err(Some((code, reason))) => {
                tracing::info!(client = %client, code, "handshake refused: {reason}");
                send_close(&mut sink, code, &reason).await;
            }
            Err(None) => {}
        }
    }
    drop(guard);
    app.metrics.websockets_active.decrement(1.0);
}

type HsResult = Result<(queue::Sender<Cmd>, ReaderSide), Option<(u16, String)>>;

/// Runs the DIMP handshake: Start -> Again -> Restart -> Success, or a
/// Restart that resumes a held session.
async fn handshake(
    app: &Arc<App>,
    sink: &mut Option<Sink>,
    stream: &mut Stream,
    client: Peer,
) -> HsResult {
    let policy = |r: String| Some((code::POLICY, r));
    let mut issued: Option<(String, Arc<crate::app::Upstream>)> = None;
    let mut sn: u32 = 1;
    let mut rounds = 0;
    loop {
        let text = match stream.next().await {
            Read::Lost => return Err(None),
            Read::Invalid(e) => return Err(Some(invalid_frame(&e))),
            Read::Message(Message::Close(c)) => {
                // Answered with its own code, as RFC 6455 suggests.
                if let Some(ws) = sink.as_mut() {
                    let echo = c.map(|(code, _)| (code, ""));
                    let _ = tokio::time::timeout(CLOSE_WAIT, ws.send_close(echo)).await;
                }
                return Err(None);
            }
            Read::Message(Message::Binary(_)) => {
                return Err(policy("binary frame before the handshake".into()));
            }
            Read::Message(Message::Text(t)) => t,
            Read::Message(Message::Ping(payload)) => {
                if let Some(ws) = sink.as_mut()
                    && ws.send_pong(payload).await.is_err()
                {
                    return Err(None);
                }
                continue;
            }
            Read::Message(Message::Pong(_)) => continue,
        };
        let h = match Content::parse(text.as_str()) {
            Ok(Content::Handshake(h)) => h,
            Ok(_) => return Err(policy("expected a handshake command".into())),
            Err(e) => return Err(policy(format!("invalid handshake: {e}"))),
        };
        let server_name = h.server.clone();
        match h.state() {
            HandshakeState::Start => {}
            HandshakeState::Restart => {
                let key = h.session.clone().unwrap_or_default();
                if let Some((issued_key, upstream)) = &issued
                    && *issued_key == key
                {
                    if app.drain.is_cancelled() {
                        return Err(drain_refusal(app));
                    }
                    let Some(slot) = app.session_guard(client.ip) else {
                        app.metrics.capacity_per_ip.increment(1);
                        return Err(Some((
                            code::TRY_AGAIN_LATER,
                            "too many sessions from your address: try again later".into(),
                        )));
                    };
                    let Some(ws) = sink.take() else {
                        return Err(None);
                    };
                    let (out, side) = new_attachment(app, client, sn, ws);
                    return match session::spawn(app, key, upstream.clone(), out, slot) {
                        Ok(cmds) => Ok((cmds, side)),
                        Err(out) => {
                            *sink = Some(out.sink);
                            app.metrics.capacity_global.increment(1);
                            Err(Some((
                                code::TRY_AGAIN_LATER,
                                "the bridge is full: try again later".into(),
                            )))
                        }
                    };
                }
                if let Some(cmds) = app.registry.get(&key)
                    && let Some(ws) = sink.take()
                {
                    let (out, side) = new_attachment(app, client, sn, ws);
                    let (reply, answer) = oneshot::channel();
                    let attach = Cmd::Attach {
                        received: h.received.unwrap_or(0),
                        out: Box::new(out),
                        reply,
                    };
                    match cmds.send(attach).await {
                        Ok(()) => match answer.await {
                            Ok(Ok(())) => return Ok((cmds, side)),
                            Ok(Err((refusal, out))) => {
                                *sink = Some(out.sink);
                                tracing::info!(
                                    client = %client,
                                    session = %key_prefix(&key),
                                    "resume refused: {refusal}"
                                );
                            }
                            // The session ended with our sending half.
                            Err(_) => return Err(None),
                        },
                        Err(Cmd::Attach { out, .. }) => *sink = Some(out.sink),
                        Err(_) => return Err(None),
                    }
                }
                app.metrics.resumes_refused.increment(1);
            }
            HandshakeState::Again | HandshakeState::Success => {
                return Err(policy(
                    "unexpected handshake state from a client (DIM? or DIM!)".into(),
                ));
            }
        }
        // Start, or a Restart that cannot resume: a new key, unless the
        // bridge drains (the client reconnects to another instance).
        if app.drain.is_cancelled() {
            return Err(drain_refusal(app));
        }
        let Some(upstream) = app.upstream(server_name.as_deref()) else {
            let name = server_name.unwrap_or_default();
            return Err(Some((
                code::UNKNOWN_SERVER,
                format!("unknown server {name:?}"),
            )));
        };
        rounds += 1;
        if rounds > MAX_HANDSHAKES {
            return Err(policy("too many handshake attempts".into()));
        }
        let Some(key) = new_session_key() else {
            return Err(Some((1011, "no randomness for a session key".into())));
        };
        let again = Handshake::again(sn, key.clone()).with_node(app.config.node.clone());
        let again = Content::Handshake(again).to_json();
        sn = sn.wrapping_add(1);
        let Some(ws) = sink.as_mut() else {
            return Err(None);
        };
        if ws.send_text(again).await.is_err() {
            return Err(None);
        }
        issued = Some((key, upstream));
    }
}

/// The close for a new session asked of a draining bridge.
fn drain_refusal(app: &App) -> Option<(u16, String)> {
    app.metrics.drain_refused.increment(1);
    Some((
        code::SERVICE_RESTART,
        "this bridge is being taken out of service: reconnect for another instance".into(),
    ))
}

/// The close for a frame that breaks RFC 6455 (1002, 1007 or 1009).
fn invalid_frame(e: &WsError) -> (u16, String) {
    (e.close_code(), format!("invalid WebSocket frame: {e}"))
}

async fn reader(
    mut stream: Stream,
    cmds: queue::Sender<Cmd>,
    att: u64,
    ctrl: Arc<WsCtrl>,
    done: CancellationToken,
    max_frame: usize,
) {
    let too_big = format!("frame larger than {max_frame} bytes");
    // One timer for the WebSocket's life, not one per frame: it is armed
    // for the silence limit counted from the last frame handled, re-armed
    // only when it fires early, and once the writer is done it bounds the
    // wait for the close to finish.
    let mut idle_since = Instant::now();
    let mut closing = false;
    let timer = tokio::time::sleep_until(idle_since + SILENCE_LIMIT);
    let writer_done = done.cancelled();
    tokio::pin!(timer, writer_done);
    let how = loop {
        let m = tokio::select! {
            () = &mut writer_done, if !closing => {
                closing = true;
                timer.as_mut().reset(Instant::now() + CLOSE_WAIT);
                continue;
            }
            () = &mut timer => {
                if closing {
                    break Detach::Hold("the WebSocket did not finish closing".into());
                }
                let due = idle_since + SILENCE_LIMIT;
                if due > Instant::now() {
                    timer.as_mut().reset(due);
                    continue;
                }
                break Detach::Hold(format!("nothing heard for {} s", SILENCE_LIMIT.as_secs()));
            }
            m = stream.next() => m,
        };
        let m = match m {
            Read::Message(m) => m,
            Read::Lost => break Detach::Hold("connection lost without a close frame".into()),
            Read::Invalid(WsError::TooBig { .. }) => {
                ctrl.close(code::TOO_BIG, too_big.clone());
                break Detach::End(too_big);
            }
            Read::Invalid(e) => {
                let (code, reason) = invalid_frame(&e);
                ctrl.close(code, reason.clone());
                break Detach::End(reason);
            }
        };
        // Any frame (a pong included) answers a pending probe.
        ctrl.heard();
        match m {
            Message::Close(frame) => match frame.map(|(c, _)| c) {
                Some(code::GOING_AWAY) => break Detach::Hold("client went away (1001)".into()),
                Some(c) => break Detach::End(format!("client closed ({c})")),
                None => break Detach::End("client closed".into()),
            },
            // Larger frames never get here: the decoder's limit ends in
            // `TooBig`.
            Message::Binary(raw) => match ClientMessage::decode_exact(&raw) {
                Ok(msg) => {
                    if cmds
                        .send(Cmd::Frame {
                            att,
                            msg: Box::new(msg),
                            raw,
                        })
                        .await
                        .is_err()
                    {
                        break Detach::End("session ended".into());
                    }
                }
                Err(e) => {
                    let reason = format!("malformed dumdum frame: {e}");
                    ctrl.close(code::MALFORMED, reason.clone());
                    break Detach::End(reason);
                }
            },
            Message::Text(text) => match Content::parse(text.as_str()) {
                Ok(Content::Notice {
                    notice: Notice::SessionAck { received },
                    ..
                }) => {
                    if cmds.send(Cmd::Ack { att, received }).await.is_err() {
                        break Detach::End("session ended".into());
                    }
                }
                Ok(c) => tracing::debug!("ignoring a text frame after the handshake: {c:?}"),
                Err(e) => {
                    let reason = format!("invalid command: {e}");
                    ctrl.close(code::POLICY, reason.clone());
                    break Detach::End(reason);
                }
            },
            Message::Ping(payload) => {
                if cmds.send(Cmd::Pong { att, payload }).await.is_err() {
                    break Detach::End("session ended".into());
                }
            }
            Message::Pong(_) => {}
        }
        // Silence is counted from here (as a timeout around each wait would).
        idle_since = Instant::now();
    };
    let _ = cmds.send(Cmd::Detach { att, how }).await;
}
