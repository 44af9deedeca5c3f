//! A sans-IO WebSocket frame codec, server side (RFC 6455, section 5).
//!
//! [`ServerDecoder`] turns a client's bytes into whole [`Message`]s:
//! masked frames only, no extensions, fragmented messages joined, control
//! frames returned as soon as they arrive (also between the fragments of a
//! message). The encoding side is three functions: [`server_header`] for the
//! header of a frame whose payload is kept elsewhere (the bridge gathers
//! headers and payloads of a batch into one write), [`server_frame`] for a
//! whole frame in one buffer, and [`close_payload`].
//!
//! The opening handshake (section 4) is not here; neither is the closing
//! handshake's state: the decoder keeps decoding after a close frame, and
//! the caller stops reading once it has one.
//!
//! Choices where RFC 6455 leaves room or where receivers differ:
//!
//! - Payload lengths must use their minimal form (section 5.2 says "MUST");
//!   a length that does not is [`WsError::NonMinimalLength`]. Browsers always
//!   send the minimal form. (tungstenite accepts non-minimal lengths.)
//! - A 64-bit length with its most significant bit set, or that does not fit
//!   in `usize`, is [`WsError::TooBig`].
//! - A control frame whose 7-bit length is 126 or 127 is
//!   [`WsError::ControlTooLong`], decided from its second byte.
//! - The message limit applies to data frames and data messages; control
//!   frames are limited to 125 bytes by the RFC whatever the limit.
//! - Every check that the header allows is made as soon as the header bytes
//!   are there, before any payload is waited for: a frame over the limit is
//!   refused from its header alone and is never buffered.
//! - Close codes accepted from a client: 1000-1003, 1007-1014 and 3000-4999
//!   (section 7.4; 1012-1014 were registered with IANA later). Others,
//!   including 1004-1006 and 1015, which must not be sent, are
//!   [`WsError::InvalidClose`].
//! - Text is checked to be UTF-8 when its message is complete.

use bytes::{Buf, Bytes, BytesMut};

use crate::session::close;

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;
/// Longest server frame header (2 + 8 bytes, unmasked).
pub const MAX_HEADER: usize = 10;

/// The largest control frame payload (section 5.5).
const MAX_CONTROL: usize = 125;

/// A whole message from a client (fragments joined, unmasked, text validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, checked to be UTF-8.
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A ping; its payload is to be echoed in a pong.
    Ping(Bytes),
    /// A pong (an answer to a ping, or an unsolicited heartbeat).
    Pong(Bytes),
    /// The close code and reason, if the frame had a payload.
    Close(Option<(u16, String)>),
}

/// A client's bytes that break RFC 6455 or the message limit.
///
/// After one, the connection is to be closed with [`WsError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// A data message (or a single frame of one) over the limit.
    #[error("message larger than {limit} bytes")]
    TooBig {
        /// The largest data message accepted, in bytes.
        limit: usize,
    },
    /// A frame from the client without the mask bit (section 5.1).
    #[error("client frame not masked")]
    Unmasked,
    /// RSV1, RSV2 or RSV3 set.
    #[error("reserved bits set (no extension was negotiated)")]
    ReservedBits,
    /// An opcode RFC 6455 reserves (3-7, 0xB-0xF).
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A close, ping or pong frame without the FIN bit.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A close, ping or pong frame with more than 125 bytes of payload.
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    /// A continuation frame when no fragmented message is open.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is open.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A text message, or a close frame's reason, that is not UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame with a one-byte payload or a code a client may not send.
    #[error("invalid close frame: {0}")]
    InvalidClose(&'static str),
    /// A 16- or 64-bit payload length that a shorter form could hold.
    #[error("payload length not in its minimal form")]
    NonMinimalLength,
}

impl WsError {
    /// The close code to answer with: 1009 for `TooBig`, 1007 for
    /// `InvalidUtf8` (and invalid UTF-8 in a close reason), 1002 otherwise.
    #[must_use]
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooBig { .. } => close::TOO_BIG,
            WsError::InvalidUtf8 => close::MALFORMED,
            _ => close::PROTOCOL_ERROR,
        }
    }
}

/// A fragmented data message being received.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: Vec<u8>,
}

/// What a frame's header says, once it is all there and checked.
struct Head {
    fin: bool,
    opcode: u8,
    /// Header bytes, the mask key included.
    header_len: usize,
    payload_len: usize,
}

/// Decodes a client's frames (RFC 6455 §5): masked frames only, no extensions,
/// fragmented messages joined, control frames (which may come between fragments) returned at once.
///
/// The outcome does not depend on how the byte stream was split into reads.
/// The decoder never waits for more than one frame of at most
/// `max(max_message, 125) + 14` bytes, and it allocates only for bytes that
/// were received: the read buffer grows only as the caller fills it, and a
/// fragmented message only as its fragments arrive.
#[derive(Debug)]
pub struct ServerDecoder {
    buf: BytesMut,
    limit: usize,
    partial: Option<Partial>,
    failed: Option<WsError>,
}

impl ServerDecoder {
    /// `max_message`: the largest data message (also the largest frame) accepted.
    pub fn new(max_message: usize) -> Self {
        ServerDecoder {
            buf: BytesMut::new(),
            limit: max_message,
            partial: None,
            failed: None,
        }
    }

    /// The buffer to read socket bytes into (the caller `reserve`s and reads with e.g. tokio's `read_buf`).
    ///
    /// Only append to it.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends bytes (for tests and non-tokio callers).
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet decoded into a message.
    ///
    /// That is the undecoded bytes plus the payload received so far of an
    /// unfinished fragmented message.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.partial.as_ref().map_or(0, |p| p.data.len())
    }

    /// The next whole message, `Ok(None)` when more bytes are needed. After an `Err` the stream is unusable (the caller closes with `close_code()`).
    ///
    /// # Errors
    ///
    /// A [`WsError`] when the client broke RFC 6455 or sent a data message
    /// over the limit. Once failed, the decoder drops what it buffered and
    /// returns the same error again.
    pub fn next_message(&mut self) -> Result<Option<Message>, WsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.decode();
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.buf = BytesMut::new();
            self.partial = None;
        }
        result
    }

    /// Gives back storage after a burst: when nothing is buffered and capacity is above `keep` bytes, replace the buffer with an empty one (an idle WebSocket should hold no large buffer).
    ///
    /// Only the read buffer is concerned; an unfinished fragmented message
    /// keeps what it received.
    pub fn shrink(&mut self, keep: usize) {
        if self.buf.is_empty() && self.buf.capacity() > keep {
            self.buf = BytesMut::new();
        }
    }

    fn decode(&mut self) -> Result<Option<Message>, WsError> {
        loop {
            let Some(head) = self.head()? else {
                return Ok(None);
            };
            let total = head.header_len + head.payload_len;
            if self.buf.len() < total {
                return Ok(None);
            }
            let mut frame = self.buf.split_to(total);
            let mut key = [0; 4];
            key.copy_from_slice(&frame[head.header_len - 4..head.header_len]);
            frame.advance(head.header_len);
            unmask(&mut frame, key);
            if let Some(message) = self.assemble(&head, frame)? {
                return Ok(Some(message));
            }
        }
    }

    /// Parses and checks the header at the front of the buffer; `Ok(None)`
    /// if it is not all there yet.
    fn head(&self) -> Result<Option<Head>, WsError> {
        let Some(&[b0, b1]) = self.buf.first_chunk::<2>() else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        let control = match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => false,
            OP_CLOSE | OP_PING | OP_PONG => true,
            op => return Err(WsError::UnknownOpcode(op)),
        };
        if control && !fin {
            return Err(WsError::FragmentedControl);
        }
        if b1 & 0x80 == 0 {
            return Err(WsError::Unmasked);
        }
        match (opcode, &self.partial) {
            (OP_CONTINUATION, None) => return Err(WsError::UnexpectedContinuation),
            (OP_TEXT | OP_BINARY, Some(_)) => return Err(WsError::ExpectedContinuation),
            _ => {}
        }
        let len7 = b1 & 0x7F;
        if control && usize::from(len7) > MAX_CONTROL {
            return Err(WsError::ControlTooLong);
        }
        let rest = &self.buf[2..];
        let (payload_len, ext_len) = match len7 {
            126 => {
                let Some(&n) = rest.first_chunk::<2>() else {
                    return Ok(None);
                };
                let n = u16::from_be_bytes(n);
                if n < 126 {
                    return Err(WsError::NonMinimalLength);
                }
                (usize::from(n), 2)
            }
            127 => {
                let Some(&n) = rest.first_chunk::<8>() else {
                    return Ok(None);
                };
                let n = u64::from_be_bytes(n);
                if u16::try_from(n).is_ok() {
                    return Err(WsError::NonMinimalLength);
                }
                let too_big = WsError::TooBig { limit: self.limit };
                if n >> 63 != 0 {
                    return Err(too_big);
                }
                (usize::try_from(n).map_err(|_| too_big)?, 8)
            }
            n => (usize::from(n), 0),
        };
        if !control {
            let received = self.partial.as_ref().map_or(0, |p| p.data.len());
            if payload_len > self.limit.saturating_sub(received) {
                return Err(WsError::TooBig { limit: self.limit });
            }
        }
        let header_len = 2 + ext_len + 4;
        if payload_len > usize::MAX - header_len {
            return Err(WsError::TooBig { limit: self.limit });
        }
        Ok(Some(Head {
            fin,
            opcode,
            header_len,
            payload_len,
        }))
    }

    /// Takes an unmasked frame; returns the message it completes, if any.
    fn assemble(&mut self, head: &Head, payload: BytesMut) -> Result<Option<Message>, WsError> {
        let message = match head.opcode {
            OP_PING => Message::Ping(payload.freeze()),
            OP_PONG => Message::Pong(payload.freeze()),
            OP_CLOSE => parse_close(&payload)?,
            OP_TEXT | OP_BINARY if !head.fin => {
                self.partial = Some(Partial {
                    text: head.opcode == OP_TEXT,
                    data: payload.to_vec(),
                });
                return Ok(None);
            }
            OP_TEXT => Message::Text(
                std::str::from_utf8(&payload)
                    .map_err(|_| WsError::InvalidUtf8)?
                    .to_owned(),
            ),
            OP_BINARY => Message::Binary(payload.freeze()),
            _ => {
                // A continuation: head() made sure a message is open.
                let Some(partial) = &mut self.partial else {
                    return Err(WsError::UnexpectedContinuation);
                };
                partial.data.extend_from_slice(&payload);
                if !head.fin {
                    return Ok(None);
                }
                let Some(Partial { text, data }) = self.partial.take() else {
                    return Err(WsError::UnexpectedContinuation);
                };
                if text {
                    Message::Text(String::from_utf8(data).map_err(|_| WsError::InvalidUtf8)?)
                } else {
                    Message::Binary(Bytes::from(data))
                }
            }
        };
        Ok(Some(message))
    }
}

/// XORs `data` with the repeated 4-byte mask `key`, starting at key byte 0.
fn unmask(data: &mut [u8], key: [u8; 4]) {
    // Whole 32-byte blocks with a fixed-size loop the compiler vectorizes;
    // 32 is a multiple of 4, so the key is in phase again for the rest.
    let mut wide = [0; 32];
    for (i, b) in wide.iter_mut().enumerate() {
        *b = key[i & 3];
    }
    let (blocks, rest) = data.as_chunks_mut::<32>();
    for block in blocks {
        for (b, k) in block.iter_mut().zip(wide) {
            *b ^= k;
        }
    }
    for (i, b) in rest.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// A close code a client may send (section 7.4).
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn parse_close(payload: &[u8]) -> Result<Message, WsError> {
    match payload {
        [] => Ok(Message::Close(None)),
        [_] => Err(WsError::InvalidClose("one-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_allowed(code) {
                return Err(WsError::InvalidClose(
                    "code not allowed (1000-1003, 1007-1014 or 3000-4999)",
                ));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Message::Close(Some((code, reason.to_owned()))))
        }
    }
}

/// Writes the header of an unmasked, final server frame with `opcode` and a payload of `len` bytes into `out`; returns how many bytes of `out` it used (2, 4 or 10).
///
/// Only the low 4 bits of `opcode` are used (one of the `OP_*` constants).
pub fn server_header(opcode: u8, len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = 0x80 | (opcode & 0x0F);
    if let Ok(n @ 0..=125) = u8::try_from(len) {
        out[1] = n;
        2
    } else if let Ok(n) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&n.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// The payload of a close frame: the code (big-endian) and `reason` cut at a char boundary to fit the 125-byte control payload limit (123 bytes of reason).
#[must_use]
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let reason = &reason[..reason.floor_char_boundary(MAX_CONTROL - 2)];
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// A whole server frame (header + payload) in one buffer — for rare frames (text, close, ping); the bridge writes binary frames with writev instead.
#[must_use]
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut header = [0; MAX_HEADER];
    let n = server_header(opcode, payload.len(), &mut header);
    let mut frame = Vec::with_capacity(n + payload.len());
    frame.extend_from_slice(&header[..n]);
    frame.extend_from_slice(payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 1 << 20;
    /// Longest client frame header: 2 + 8 length bytes + 4 mask bytes.
    const MAX_CLIENT_HEADER: usize = MAX_HEADER + 4;

    /// A frame as a client writes it: masked with `key`.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | u8::try_from(n).unwrap()),
            n @ 126..=0xFFFF => {
                f.push(0x80 | 126);
                f.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        f
    }

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        client_frame(fin, opcode, payload, KEY)
    }

    /// Every message in `bytes`, then the error or `None`.
    fn decode_all(limit: usize, bytes: &[u8]) -> (Vec<Message>, Option<WsError>) {
        let mut d = ServerDecoder::new(limit);
        d.feed(bytes);
        drain(&mut d)
    }

    fn drain(d: &mut ServerDecoder) -> (Vec<Message>, Option<WsError>) {
        let mut out = Vec::new();
        loop {
            match d.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn error_of(limit: usize, bytes: &[u8]) -> WsError {
        let (_, e) = decode_all(limit, bytes);
        e.expect("an error")
    }

    #[test]
    fn binary_and_text() {
        let mut s = frame(
            true,
            OP_BINARY,
            b"\x00\x01\x02hello world, long enough to unmask in blocks!",
        );
        s.extend(frame(true, OP_TEXT, "héllo".as_bytes()));
        let (msgs, e) = decode_all(LIMIT, &s);
        assert_eq!(e, None);
        assert_eq!(
            msgs,
            [
                Message::Binary(Bytes::from_static(
                    b"\x00\x01\x02hello world, long enough to unmask in blocks!"
                )),
                Message::Text("héllo".into()),
            ]
        );
    }

    #[test]
    fn length_forms() {
        for n in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let f = frame(true, OP_BINARY, &payload);
            let header = match n {
                0..=125 => 6,
                126..=65535 => 8,
                _ => 14,
            };
            assert_eq!(f.len(), header + n, "{n}");
            let (msgs, e) = decode_all(LIMIT, &f);
            assert_eq!(e, None, "{n}");
            assert_eq!(msgs, [Message::Binary(payload.into())], "{n}");
            // One byte short: nothing yet.
            let (msgs, e) = decode_all(LIMIT, &f[..f.len() - 1]);
            assert_eq!((msgs.len(), e), (0, None), "{n}");
        }
    }

    #[test]
    fn binary_frame_is_not_copied() {
        let f = frame(true, OP_BINARY, &[9; 300]);
        let mut d = ServerDecoder::new(LIMIT);
        d.feed(&f);
        let start = d.buf_mut().as_ptr() as usize;
        let Ok(Some(Message::Binary(b))) = d.next_message() else {
            panic!("a binary message");
        };
        assert_eq!(b.as_ptr() as usize, start + 8);
        assert_eq!(&b[..], &[9; 300][..]);
    }

    #[test]
    fn fragmented_text_with_ping_between() {
        let text = "fragments: ünïcödé split inside a character €";
        let bytes = text.as_bytes();
        let cut1 = 13; // inside 'ü'
        let cut2 = bytes.len() - 2; // inside '€'
        let mut s = frame(false, OP_TEXT, &bytes[..cut1]);
        s.extend(frame(true, OP_PING, b"p1"));
        s.extend(frame(false, OP_CONTINUATION, &bytes[cut1..cut2]));
        s.extend(frame(true, OP_PONG, b""));
        s.extend(frame(false, OP_CONTINUATION, b""));
        s.extend(frame(true, OP_CONTINUATION, &bytes[cut2..]));
        let expected = vec![
            Message::Ping(Bytes::from_static(b"p1")),
            Message::Pong(Bytes::new()),
            Message::Text(text.into()),
        ];
        assert_eq!(decode_all(LIMIT, &s), (expected.clone(), None));

        // Byte at a time gives the same.
        let mut d = ServerDecoder::new(LIMIT);
        let mut msgs = Vec::new();
        for b in &s {
            d.feed(&[*b]);
            let (m, e) = drain(&mut d);
            assert_eq!(e, None);
            msgs.extend(m);
        }
        assert_eq!(msgs, expected);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn fragmented_binary() {
        let mut s = frame(false, OP_BINARY, b"ab");
        s.extend(frame(true, OP_CLOSE, &close_payload(1000, "")));
        s.extend(frame(true, OP_CONTINUATION, b"cd"));
        let (msgs, e) = decode_all(LIMIT, &s);
        assert_eq!(e, None);
        assert_eq!(
            msgs,
            [
                Message::Close(Some((1000, String::new()))),
                Message::Binary(Bytes::from_static(b"abcd")),
            ]
        );
    }

    #[test]
    fn close_frames() {
        let (msgs, _) = decode_all(LIMIT, &frame(true, OP_CLOSE, b""));
        assert_eq!(msgs, [Message::Close(None)]);
        let (msgs, _) = decode_all(LIMIT, &frame(true, OP_CLOSE, &close_payload(1001, "bye ✓")));
        assert_eq!(msgs, [Message::Close(Some((1001, "bye ✓".into())))]);
        for code in [1000u16, 1003, 1007, 1011, 1012, 1014, 3000, 4999] {
            let (msgs, e) = decode_all(LIMIT, &frame(true, OP_CLOSE, &code.to_be_bytes()));
            assert_eq!(
                (msgs, e),
                (vec![Message::Close(Some((code, String::new())))], None)
            );
        }
        for code in [
            0u16,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            2999,
            5000,
            u16::MAX,
        ] {
            let e = error_of(LIMIT, &frame(true, OP_CLOSE, &code.to_be_bytes()));
            assert!(matches!(e, WsError::InvalidClose(_)), "{code}: {e:?}");
            assert_eq!(e.close_code(), 1002);
        }
        let e = error_of(LIMIT, &frame(true, OP_CLOSE, b"\x03"));
        assert_eq!(e, WsError::InvalidClose("one-byte payload"));
        assert_eq!(e.to_string(), "invalid close frame: one-byte payload");
        let e = error_of(LIMIT, &frame(true, OP_CLOSE, b"\x03\xe8\xff"));
        assert_eq!(e, WsError::InvalidUtf8);
        assert_eq!(e.close_code(), 1007);
    }

    #[test]
    fn errors() {
        let cases: Vec<(Vec<u8>, WsError)> = vec![
            (vec![0x82, 0x00], WsError::Unmasked),
            (vec![0xC2, 0x80], WsError::ReservedBits),
            (vec![0xA2, 0x80], WsError::ReservedBits),
            (vec![0x92, 0x80], WsError::ReservedBits),
            (vec![0x83, 0x80], WsError::UnknownOpcode(3)),
            (vec![0x87, 0x80], WsError::UnknownOpcode(7)),
            (vec![0x8B, 0x80], WsError::UnknownOpcode(0xB)),
            (vec![0x8F, 0x80], WsError::UnknownOpcode(0xF)),
            (vec![0x09, 0x80], WsError::FragmentedControl),
            (vec![0x08, 0x80], WsError::FragmentedControl),
            (vec![0x89, 0x80 | 126], WsError::ControlTooLong),
            (vec![0x8A, 0x80 | 127], WsError::ControlTooLong),
            (vec![0x80, 0x80], WsError::UnexpectedContinuation),
            (vec![0x00, 0x80], WsError::UnexpectedContinuation),
            (vec![0x82, 0xFE, 0x00, 0x7D], WsError::NonMinimalLength),
            (
                vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF],
                WsError::NonMinimalLength,
            ),
            (
                vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                WsError::TooBig { limit: LIMIT },
            ),
            (frame(true, OP_TEXT, b"\xc3\x28"), WsError::InvalidUtf8),
        ];
        for (bytes, expected) in cases {
            assert_eq!(error_of(LIMIT, &bytes), expected, "{bytes:02x?}");
        }
        let mut s = frame(false, OP_TEXT, b"a");
        s.extend(frame(true, OP_BINARY, b"b"));
        assert_eq!(error_of(LIMIT, &s), WsError::ExpectedContinuation);
        let mut s = frame(false, OP_BINARY, b"a");
        s.extend(frame(true, OP_TEXT, b"b"));
        assert_eq!(error_of(LIMIT, &s), WsError::ExpectedContinuation);
        // Invalid UTF-8 split over fragments, and a valid message split in a
        // character is fine (tested above).
        let mut s = frame(false, OP_TEXT, b"ok \xe2\x82");
        s.extend(frame(true, OP_CONTINUATION, b"\x28"));
        assert_eq!(error_of(LIMIT, &s), WsError::InvalidUtf8);
        // Close codes and messages.
        assert_eq!(WsError::TooBig { limit: 9 }.close_code(), 1009);
        assert_eq!(WsError::Unmasked.close_code(), 1002);
        assert_eq!(
            WsError::UnknownOpcode(0xB).to_string(),
            "unknown opcode 0xb"
        );
        assert_eq!(
            WsError::TooBig { limit: 9 }.to_string(),
            "message larger than 9 bytes"
        );
    }

    #[test]
    fn error_is_sticky() {
        let mut d = ServerDecoder::new(LIMIT);
        d.feed(&[0x82, 0x00]);
        assert_eq!(d.next_message(), Err(WsError::Unmasked));
        assert_eq!(d.buffered(), 0);
        d.feed(&frame(true, OP_BINARY, b"x"));
        assert_eq!(d.next_message(), Err(WsError::Unmasked));
    }

    #[test]
    fn too_big_from_the_header_alone() {
        let mut d = ServerDecoder::new(LIMIT);
        d.feed(&[0x82, 0xFF]);
        d.feed(&(1u64 << 40).to_be_bytes());
        assert_eq!(d.buffered(), 10);
        assert_eq!(d.next_message(), Err(WsError::TooBig { limit: LIMIT }));
    }

    #[test]
    fn limit_applies_to_frames_and_messages() {
        let limit = 10;
        let ok = frame(true, OP_BINARY, &[1; 10]);
        assert_eq!(decode_all(limit, &ok).1, None);
        let big = frame(true, OP_BINARY, &[1; 11]);
        // The header is enough.
        assert_eq!(
            decode_all(limit, &big[..2]).1,
            Some(WsError::TooBig { limit })
        );
        let mut s = frame(false, OP_TEXT, b"12345");
        s.extend(frame(false, OP_CONTINUATION, b"6789"));
        s.extend(frame(true, OP_CONTINUATION, b"0"));
        assert_eq!(
            decode_all(limit, &s).0,
            [Message::Text("1234567890".into())]
        );
        let mut s = frame(false, OP_TEXT, b"12345");
        s.extend(frame(false, OP_CONTINUATION, b"6789"));
        s.extend(frame(true, OP_CONTINUATION, b"01"));
        let mut d = ServerDecoder::new(limit);
        d.feed(&s[..s.len() - 4]);
        assert_eq!(d.next_message(), Err(WsError::TooBig { limit }));
        // Control frames may carry 125 bytes whatever the limit.
        let ping = frame(true, OP_PING, &[7; 125]);
        assert_eq!(
            decode_all(limit, &ping),
            (vec![Message::Ping(vec![7; 125].into())], None)
        );
    }

    #[test]
    fn shrink_drops_an_idle_buffer() {
        let mut d = ServerDecoder::new(LIMIT);
        d.buf_mut().reserve(1 << 16);
        d.feed(&frame(true, OP_BINARY, &[1; 1000]));
        d.shrink(4096); // not empty: kept
        assert!(d.buf_mut().capacity() >= 1000);
        assert!(matches!(d.next_message(), Ok(Some(Message::Binary(_)))));
        assert_eq!(d.buffered(), 0);
        d.shrink(4096);
        assert_eq!(d.buf_mut().capacity(), 0);
        d.feed(&frame(true, OP_TEXT, b"again"));
        assert_eq!(d.next_message(), Ok(Some(Message::Text("again".into()))));
    }

    #[test]
    fn close_payload_clips_at_a_char_boundary() {
        let reason = "é".repeat(200);
        let p = close_payload(1001, &reason);
        assert_eq!(&p[..2], &1001u16.to_be_bytes());
        // 123 bytes would cut an 'é' in two: 61 of them fit.
        assert_eq!(p.len(), 2 + 122);
        assert_eq!(std::str::from_utf8(&p[2..]).unwrap(), "é".repeat(61));
        let p = close_payload(1000, &"a".repeat(200));
        assert_eq!(p.len(), 125);
        assert_eq!(close_payload(1000, "short"), b"\x03\xe8short");
        // And a server-built close frame is one a client may send back.
        let (msgs, e) = decode_all(LIMIT, &frame(true, OP_CLOSE, &close_payload(4000, &reason)));
        assert_eq!(e, None);
        assert_eq!(msgs, [Message::Close(Some((4000, "é".repeat(61))))]);
    }

    #[test]
    fn server_headers() {
        let mut out = [0; MAX_HEADER];
        assert_eq!(server_header(OP_BINARY, 0, &mut out), 2);
        assert_eq!(out[..2], [0x82, 0]);
        assert_eq!(server_header(OP_TEXT, 125, &mut out), 2);
        assert_eq!(out[..2], [0x81, 125]);
        assert_eq!(server_header(OP_BINARY, 126, &mut out), 4);
        assert_eq!(out[..4], [0x82, 126, 0, 126]);
        assert_eq!(server_header(OP_BINARY, 65535, &mut out), 4);
        assert_eq!(out[..4], [0x82, 126, 0xFF, 0xFF]);
        assert_eq!(server_header(OP_BINARY, 65536, &mut out), 10);
        assert_eq!(out, [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(server_header(OP_CLOSE, 0x0012_3456_789A, &mut out), 10);
        assert_eq!(out, [0x88, 127, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0x9A]);
        assert_eq!(server_frame(OP_PONG, b"hi"), b"\x8a\x02hi");
        let f = server_frame(OP_BINARY, &[5; 300]);
        assert_eq!(f[..4], [0x82, 126, 1, 44]);
        assert_eq!(f.len(), 304);
    }

    #[test]
    fn unmask_matches_the_bytewise_definition() {
        for n in [0, 1, 3, 4, 5, 31, 32, 33, 64, 100] {
            let data: Vec<u8> = (0..n).map(|i| (i * 13) as u8).collect();
            let mut fast = data.clone();
            unmask(&mut fast, KEY);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ KEY[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    /// A data message to send, and how to send it.
    #[derive(Debug, Clone)]
    struct Plan {
        message: Message,
        /// Where to cut the payload into fragments (may repeat: empty
        /// fragments).
        cuts: Vec<usize>,
        /// A ping payload to send after each fragment but the last, if any.
        pings: Vec<Option<Vec<u8>>>,
        keys: Vec<[u8; 4]>,
    }

    fn plan() -> impl Strategy<Value = Plan> {
        let payload = prop_oneof![
            8 => prop::collection::vec(any::<u8>(), 0..300),
            1 => prop::collection::vec(any::<u8>(), 65_530..65_600),
        ];
        let message = prop_oneof![
            payload.prop_map(|p| Message::Binary(p.into())),
            ".{0,100}".prop_map(Message::Text),
        ];
        (
            message,
            prop::collection::vec(any::<prop::sample::Index>(), 0..5),
            prop::collection::vec(
                prop::option::weighted(0.3, prop::collection::vec(any::<u8>(), 0..126)),
                5,
            ),
            prop::collection::vec(any::<[u8; 4]>(), 1..8),
        )
            .prop_map(|(message, cuts, pings, keys)| {
                let len = match &message {
                    Message::Binary(b) => b.len(),
                    Message::Text(t) => t.len(),
                    _ => 0,
                };
                let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(len + 1)).collect();
                cuts.sort_unstable();
                Plan {
                    message,
                    cuts,
                    pings,
                    keys,
                }
            })
    }

    /// The client's bytes for `plans`, and the messages the server should
    /// decode from them.
    fn encode(plans: &[Plan]) -> (Vec<u8>, Vec<Message>) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for p in plans {
            let (opcode, payload) = match &p.message {
                Message::Binary(b) => (OP_BINARY, &b[..]),
                Message::Text(t) => (OP_TEXT, t.as_bytes()),
                _ => unreachable!(),
            };
            let mut keys = p.keys.iter().cycle();
            let mut start = 0;
            let mut op = opcode;
            for (i, &cut) in p.cuts.iter().enumerate() {
                let key = *keys.next().unwrap();
                bytes.extend(client_frame(false, op, &payload[start..cut], key));
                op = OP_CONTINUATION;
                start = cut;
                if let Some(ping) = &p.pings[i] {
                    let key = *keys.next().unwrap();
                    bytes.extend(client_frame(true, OP_PING, ping, key));
                    expected.push(Message::Ping(ping.clone().into()));
                }
            }
            let key = *keys.next().unwrap();
            bytes.extend(client_frame(true, op, &payload[start..], key));
            expected.push(p.message.clone());
        }
        (bytes, expected)
    }

    /// Feeds `bytes` in chunks of the given sizes (cycled), draining after
    /// each; checks the buffer bound on the way.
    fn decode_chunked(
        limit: usize,
        bytes: &[u8],
        sizes: &[usize],
    ) -> (Vec<Message>, Option<WsError>) {
        let mut d = ServerDecoder::new(limit);
        let mut msgs = Vec::new();
        let mut rest = bytes;
        let frame_bound = limit.max(MAX_CONTROL) + MAX_CLIENT_HEADER;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
            rest = tail;
            d.feed(chunk);
            let (m, e) = drain(&mut d);
            msgs.extend(m);
            if e.is_some() {
                return (msgs, e);
            }
            // Left: part of one frame, plus a fragmented message so far.
            assert!(d.buffered() < frame_bound + limit);
        }
        (msgs, None)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn decodes_what_a_client_sends(
            plans in prop::collection::vec(plan(), 0..6),
            sizes in prop::collection::vec(1usize..200, 1..10),
        ) {
            let (bytes, expected) = encode(&plans);
            let mut d = ServerDecoder::new(LIMIT);
            d.feed(&bytes);
            let (whole, e) = drain(&mut d);
            prop_assert_eq!(e, None);
            prop_assert_eq!(d.buffered(), 0);
            prop_assert_eq!(&whole, &expected);
            let (chunked, e) = decode_chunked(LIMIT, &bytes, &sizes);
            prop_assert_eq!(e, None);
            prop_assert_eq!(chunked, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            limit in 0usize..400,
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            sizes in prop::collection::vec(1usize..64, 1..6),
        ) {
            let whole = decode_all(limit, &bytes);
            let chunked = decode_chunked(limit, &bytes, &sizes);
            prop_assert_eq!(whole, chunked);
        }

        #[test]
        fn near_valid_frames_never_panic(
            limit in 0usize..400,
            frames in prop::collection::vec(
                (
                    prop::sample::select(vec![0x00u8, 0x01, 0x02, 0x80, 0x81, 0x82, 0x88, 0x89, 0x8A, 0x09, 0x83, 0xC2]),
                    prop::sample::select(vec![0x80u8, 0x00]),
                    prop::collection::vec(any::<u8>(), 0..140),
                    any::<[u8; 4]>(),
                ),
                0..8,
            ),
            sizes in prop::collection::vec(1usize..64, 1..6),
        ) {
            let mut bytes = Vec::new();
            for (b0, mask, payload, key) in &frames {
                let mut f = client_frame(b0 & 0x80 != 0, b0 & 0x7F, payload, *key);
                f[1] = (f[1] & 0x7F) | mask;
                bytes.extend(f);
            }
            let whole = decode_all(limit, &bytes);
            let chunked = decode_chunked(limit, &bytes, &sizes);
            prop_assert_eq!(whole, chunked);
        }
    }
}
