//! The WebSocket transport (RFC 6455, server side): the HTTP upgrade, the
//! receiving half (client frames decoded by the protocol crate's
//! [`ServerDecoder`]) and the sending half, which writes a batch of queued
//! frames in one system call (see [`WsWrite::poll_frames`]).
//!
//! The two halves are owned apart, without a lock between them on the hot
//! path: the reader by the WebSocket's task, the writer by its session's.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use dumdum_protocol::session::close;
use dumdum_protocol::websocket::{
    self as frame, MAX_HEADER, Message, OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT, ServerDecoder,
    WsError,
};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use sha1::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

/// The upgraded connection.
type Io = TokioIo<Upgraded>;

/// Bytes of room made in the read buffer before each read: an idle
/// WebSocket holds this much (a browser's frames are few and small; a
/// larger frame grows the buffer, which is given back once drained).
const READ_CHUNK: usize = 1024;
/// A drained read buffer above this size is given back.
const READ_KEEP: usize = 8 * 1024;
/// The most bytes of frames gathered into one write.
const GATHER: usize = 64 * 1024;

thread_local! {
    /// Where [`WsWrite::poll_frames`] gathers frames for one write.
    static GATHERED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The RFC 6455 key suffix (section 1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A validated upgrade request: answer it with [`Upgrade::response`], then
/// await [`Upgrade::connection`].
#[derive(Debug)]
pub(crate) struct Upgrade {
    on_upgrade: OnUpgrade,
    accept: String,
    protocol: Option<&'static str>,
}

/// Why an upgrade request was refused: the status and the text answered.
type Refused = (StatusCode, &'static str);

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Upgrade {
    /// Checks `req` is a WebSocket upgrade (RFC 6455, section 4.2.1) and
    /// picks `protocol` when the client offers it.
    pub(crate) fn from_request(req: &mut Request, protocol: &'static str) -> Result<Self, Refused> {
        if req.method() != Method::GET {
            return Err((
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket upgrade is a GET\n",
            ));
        }
        let headers = req.headers();
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Err((
                StatusCode::BAD_REQUEST,
                "Connection header without `upgrade`\n",
            ));
        }
        if !has_token(headers, header::UPGRADE, "websocket") {
            return Err((
                StatusCode::BAD_REQUEST,
                "Upgrade header without `websocket`\n",
            ));
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err((
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Version must be 13\n",
            ));
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err((StatusCode::BAD_REQUEST, "Sec-WebSocket-Key missing\n"));
        };
        let accept = accept_key(key.as_bytes());
        let protocol =
            has_token(headers, header::SEC_WEBSOCKET_PROTOCOL, protocol).then_some(protocol);
        let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
            return Err((
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded\n",
            ));
        };
        Ok(Upgrade {
            on_upgrade,
            accept,
            protocol,
        })
    }

    /// The `101 Switching Protocols` answer.
    pub(crate) fn response(&self) -> Response {
        let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let h = res.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&self.accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Some(p) = self.protocol {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        res
    }

    /// The connection once the response is sent, as its two halves.
    pub(crate) async fn connection(self, max_message: usize) -> hyper::Result<(WsRead, WsWrite)> {
        let io = TokioIo::new(self.on_upgrade.await?);
        let (rd, wr) = tokio::io::split(io);
        Ok((
            WsRead {
                rd,
                decoder: ServerDecoder::new(max_message),
            },
            WsWrite { wr },
        ))
    }
}

fn accept_key(key: &[u8]) -> String {
    let mut sha1 = sha1::Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// What [`WsRead::next`] read.
#[derive(Debug)]
pub(crate) enum Read {
    Message(Message),
    /// The client broke the protocol (the WebSocket is to be closed with
    /// the error's code).
    Invalid(WsError),
    /// The connection ended without a close frame, or failed.
    Lost,
}

/// The receiving half of a WebSocket.
pub(crate) struct WsRead {
    rd: ReadHalf<Io>,
    decoder: ServerDecoder,
}

impl std::fmt::Debug for WsRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsRead")
            .field("buffered", &self.decoder.buffered())
            .finish_non_exhaustive()
    }
}

impl WsRead {
    /// The next message. Cancel-safe: what was read stays buffered.
    pub(crate) async fn next(&mut self) -> Read {
        loop {
            match self.decoder.next_message() {
                Ok(Some(m)) => {
                    self.decoder.shrink(READ_KEEP);
                    return Read::Message(m);
                }
                Ok(None) => {}
                Err(e) => return Read::Invalid(e),
            }
            let buf = self.decoder.buf_mut();
            buf.reserve(READ_CHUNK);
            match self.rd.read_buf(buf).await {
                Ok(0) | Err(_) => return Read::Lost,
                Ok(_) => {}
            }
        }
    }
}

/// A frame for a browser (see [`WsWrite::poll_frames`]).
pub(crate) trait Outgoing {
    /// The frame's opcode and payload.
    fn frame(&self) -> (u8, &[u8]);
}

/// Takes the frames that `written` bytes (counted from the start of the
/// first) completed off `frames`, handing each to `sent`; returns the bytes
/// of the new first frame already written.
pub(crate) fn advance<T: Outgoing>(
    frames: &mut VecDeque<T>,
    mut written: usize,
    mut sent: impl FnMut(T),
) -> usize {
    while let Some(f) = frames.front() {
        let mut header = [0; MAX_HEADER];
        let payload = f.frame().1.len();
        let len = frame::server_header(OP_BINARY, payload, &mut header) + payload;
        if written < len {
            break;
        }
        written -= len;
        if let Some(f) = frames.pop_front() {
            sent(f);
        }
    }
    written
}

/// The sending half of a WebSocket.
pub(crate) struct WsWrite {
    wr: WriteHalf<Io>,
}

impl std::fmt::Debug for WsWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsWrite").finish_non_exhaustive()
    }
}

impl WsWrite {
    /// Writes the first frames of `out` (skipping the `skip` bytes of the
    /// first that an earlier write took) in one write. Ready with the
    /// bytes written: the caller advances its queue by them.
    ///
    /// The frames are gathered into one buffer of the worker thread's
    /// first, not handed over as a vector of header and payload slices:
    /// chat frames are small, and the kernel copies one buffer in far less
    /// time than many short segments (measured: `_copy_from_iter` rose
    /// from 1 % to 6 % of the bridge's CPU with `writev`). The buffer is
    /// the thread's, so an idle WebSocket holds none.
    pub(crate) fn poll_frames<T: Outgoing>(
        &mut self,
        cx: &mut Context<'_>,
        out: &VecDeque<T>,
        mut skip: usize,
    ) -> Poll<io::Result<usize>> {
        GATHERED.with_borrow_mut(|buf| {
            buf.clear();
            let mut header = [0u8; MAX_HEADER];
            'frames: for item in out {
                let (op, payload) = item.frame();
                let len = frame::server_header(op, payload.len(), &mut header);
                for part in [&header[..len], payload] {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    let part = &part[skip..];
                    skip = 0;
                    let room = GATHER - buf.len();
                    if room == 0 {
                        break 'frames;
                    }
                    buf.extend_from_slice(&part[..part.len().min(room)]);
                }
            }
            let r = Pin::new(&mut self.wr).poll_write(cx, buf);
            if buf.capacity() > GATHER {
                *buf = Vec::new();
            }
            r
        })
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.wr).poll_flush(cx)
    }

    /// Writes `frames` now (a handshake answer, what was left queued at a
    /// close), then flushes.
    ///
    /// `skip`: bytes of the first frame an earlier write took.
    pub(crate) async fn send_all<T: Outgoing>(
        &mut self,
        mut frames: VecDeque<T>,
        mut skip: usize,
    ) -> io::Result<()> {
        while !frames.is_empty() {
            let n = poll_fn(|cx| self.poll_frames(cx, &frames, skip)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            skip = advance(&mut frames, skip + n, drop);
        }
        self.wr.flush().await
    }

    /// Sends a close frame: `code` and `reason` (cut to fit), or none.
    pub(crate) async fn send_close(&mut self, close: Option<(u16, &str)>) -> io::Result<()> {
        // Cut as every close reason of the bridge is, marked with "...".
        let payload = close.map_or_else(Vec::new, |(code, reason)| {
            frame::close_payload(code, &close::clip_reason(reason))
        });
        self.send_all(VecDeque::from([Raw(OP_CLOSE, payload.into())]), 0)
            .await
    }

    /// Answers a ping.
    pub(crate) async fn send_pong(&mut self, payload: Bytes) -> io::Result<()> {
        self.send_all(VecDeque::from([Raw(OP_PONG, payload)]), 0)
            .await
    }

    /// Sends a text frame.
    pub(crate) async fn send_text(&mut self, text: String) -> io::Result<()> {
        self.send_all(VecDeque::from([Raw(OP_TEXT, Bytes::from(text))]), 0)
            .await
    }
}

/// A frame as its opcode and payload.
#[derive(Debug)]
pub(crate) struct Raw(pub u8, pub Bytes);

impl Outgoing for Raw {
    fn frame(&self) -> (u8, &[u8]) {
        (self.0, &self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_takes_off_whole_frames_and_keeps_the_cut_one() {
        // Wire sizes: 2 + 100, 2 + 3, 4 + 200.
        let mut frames = VecDeque::from([
            Raw(OP_BINARY, Bytes::from(vec![1; 100])),
            Raw(OP_TEXT, Bytes::from_static(b"abc")),
            Raw(OP_BINARY, Bytes::from(vec![2; 200])),
        ]);
        let mut sent = Vec::new();
        assert_eq!(advance(&mut frames, 50, |f| sent.push(f.1.len())), 50);
        assert!(sent.is_empty(), "half a frame is not sent");
        assert_eq!(advance(&mut frames, 102 + 4, |f| sent.push(f.1.len())), 4);
        assert_eq!(sent, [100], "the first, and 4 bytes of the second");
        assert_eq!(advance(&mut frames, 5 + 204, |f| sent.push(f.1.len())), 0);
        assert_eq!(sent, [100, 3, 200]);
        assert!(frames.is_empty());
    }

    #[test]
    fn the_accept_key_of_rfc_6455() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
