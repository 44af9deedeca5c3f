//! The eleven dumdum v2 messages and their byte encoding.
//!
//! Decoding is incremental: [`ClientMessage::decode`] and
//! [`ServerMessage::decode`] return `Ok(None)` when the buffer does not yet
//! hold a whole message ("need more bytes" is a normal outcome), and an error
//! only for bytes that can never become a valid message.

use crate::error::{DecodeError, Direction, EncodeError, Field};
use crate::snowflake::Snowflake;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 2;

/// A chat message as the server stores and sends it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChatMessage {
    /// The server-assigned id; it encodes the creation time.
    pub id: Snowflake,
    /// The channel it was posted to.
    pub channel: String,
    /// The author's nick.
    pub nick: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with these fields.
    pub fn new(
        id: Snowflake,
        channel: impl Into<String>,
        nick: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        ChatMessage {
            id,
            channel: channel.into(),
            nick: nick.into(),
            content: content.into(),
        }
    }
}

/// A message from a client to a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientMessage {
    /// 0x00: the protocol version the client speaks.
    Hello {
        /// Normally [`PROTOCOL_VERSION`].
        version: u8,
    },
    /// 0x02: ask for a nick.
    Authenticate {
        /// The nick, at most 32 UTF-8 bytes.
        nick: String,
    },
    /// 0x03: post to a channel.
    SendMessage {
        /// The channel.
        channel: String,
        /// The text, at most 1024 UTF-8 bytes.
        content: String,
    },
    /// 0x04: ask for the channel list.
    ListChannels,
    /// 0x05: ask for history. The server's range semantics are inverted and
    /// inclusive: see [`crate::history`] for helpers that get them right.
    ListMessages {
        /// The channel.
        channel: String,
        /// Raw `before` field (0 = none). The reference server keeps ids `>= before`.
        before: u64,
        /// Raw `after` field (0 = none). The reference server keeps ids `<= after`.
        after: u64,
    },
}

/// A message from a server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerMessage {
    /// 0x00: the answer to HELLO; `tls` = the server now upgrades to TLS.
    Hello {
        /// Whether a TLS handshake follows on the same connection.
        tls: bool,
    },
    /// 0x01: the client's version is not supported.
    IncompatibleVersion {
        /// The version the server requires.
        required: u8,
    },
    /// 0x02: the answer to AUTHENTICATE.
    AcknowledgeAuthentication {
        /// `false` when the nick is taken.
        success: bool,
    },
    /// 0x03: a message broadcast to every authenticated client.
    SendMessage(ChatMessage),
    /// 0x04: the channel list.
    ListChannels(Vec<String>),
    /// 0x05: a page of history, oldest first.
    ListMessages(Vec<ChatMessage>),
}

/// Length of a `varchar(max)` prefix: `ceil(bit_length(max) / 8)` bytes.
const fn prefix_len(max: usize) -> usize {
    let bits = usize::BITS - max.leading_zeros();
    bits.div_ceil(8) as usize
}

/// Checks that `value` fits `field`.
pub fn check_field(field: Field, value: &str) -> Result<(), EncodeError> {
    if value.len() > field.max_len() {
        Err(EncodeError {
            field,
            len: value.len(),
        })
    } else {
        Ok(())
    }
}

fn put_varchar(out: &mut Vec<u8>, field: Field, value: &str) -> Result<(), EncodeError> {
    check_field(field, value)?;
    let width = prefix_len(field.max_len());
    let len = value.len().to_be_bytes();
    out.extend_from_slice(&len[len.len() - width..]);
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

fn put_chat(out: &mut Vec<u8>, m: &ChatMessage) -> Result<(), EncodeError> {
    out.extend_from_slice(&m.id.0.to_be_bytes());
    put_varchar(out, Field::Channel, &m.channel)?;
    put_varchar(out, Field::Nick, &m.nick)?;
    put_varchar(out, Field::Content, &m.content)
}

/// Appends a list body preceded by its `width`-byte big-endian length.
fn put_list(
    out: &mut Vec<u8>,
    width: usize,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), ListEncodeError> {
    let start = out.len();
    out.extend(std::iter::repeat_n(0, width));
    body(out).map_err(ListEncodeError::Field)?;
    let len = out.len() - start - width;
    if len >> (8 * width) != 0 {
        return Err(ListEncodeError::TooLong { len });
    }
    let bytes = len.to_be_bytes();
    out[start..start + width].copy_from_slice(&bytes[bytes.len() - width..]);
    Ok(())
}

enum ListEncodeError {
    Field(EncodeError),
    TooLong { len: usize },
}

/// Why a server message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerEncodeError {
    /// A string field is over its limit.
    #[error(transparent)]
    Field(#[from] EncodeError),
    /// A list body is longer than its length prefix can say.
    #[error("list body of {len} bytes does not fit its length prefix")]
    ListTooLong {
        /// The body's length.
        len: usize,
    },
}

impl From<ListEncodeError> for ServerEncodeError {
    fn from(e: ListEncodeError) -> Self {
        match e {
            ListEncodeError::Field(e) => ServerEncodeError::Field(e),
            ListEncodeError::TooLong { len } => ServerEncodeError::ListTooLong { len },
        }
    }
}

/// A read cursor that reports "need more bytes" as `Ok(None)`.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The result of one parsing step: `Ok(None)` = need more bytes.
type Step<T> = Result<Option<T>, DecodeError>;

macro_rules! need {
    ($e:expr) => {
        match $e? {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn uint(&mut self, width: usize) -> Option<u64> {
        self.take(width)
            .map(|b| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn varchar(&mut self, field: Field, base: usize) -> Step<String> {
        Ok(self.str(field, base)?.map(str::to_owned))
    }

    /// A `varchar` field, validated (length, UTF-8) but not copied.
    fn str(&mut self, field: Field, base: usize) -> Step<&'a str> {
        let at = self.pos;
        let Some(len) = self.uint(prefix_len(field.max_len())) else {
            return Ok(None);
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > field.max_len() {
            return Err(DecodeError::TooLong {
                field,
                len,
                offset: base + at,
            });
        }
        let start = self.pos;
        let Some(bytes) = self.take(len) else {
            return Ok(None);
        };
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Some(s)),
            Err(_) => Err(DecodeError::InvalidUtf8 {
                field,
                offset: base + start,
            }),
        }
    }

    /// A chat message's fields, validated but not copied.
    fn chat_parts(&mut self, base: usize) -> Step<(u64, &'a str, &'a str, &'a str)> {
        let Some(id) = self.uint(8) else {
            return Ok(None);
        };
        let channel = need!(self.str(Field::Channel, base));
        let nick = need!(self.str(Field::Nick, base));
        let content = need!(self.str(Field::Content, base));
        Ok(Some((id, channel, nick, content)))
    }

    fn chat(&mut self, base: usize) -> Step<ChatMessage> {
        let (id, channel, nick, content) = need!(self.chat_parts(base));
        Ok(Some(ChatMessage {
            id: Snowflake(id),
            channel: channel.to_owned(),
            nick: nick.to_owned(),
            content: content.to_owned(),
        }))
    }

    /// A length-prefixed list whose entries are parsed by `entry`.
    fn list<T>(
        &mut self,
        width: usize,
        entry: impl Fn(&mut Cursor<'a>, usize) -> Step<T>,
    ) -> Step<Vec<T>> {
        let Some(len) = self.uint(width) else {
            return Ok(None);
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let body_start = self.pos;
        let Some(body) = self.take(len) else {
            return Ok(None);
        };
        let mut inner = Cursor::new(body);
        let mut items = Vec::new();
        while inner.pos < body.len() {
            let at = inner.pos;
            match entry(&mut inner, body_start)? {
                Some(item) => items.push(item),
                None => {
                    return Err(DecodeError::TruncatedList {
                        len,
                        offset: body_start + at,
                    });
                }
            }
        }
        Ok(Some(items))
    }
}

/// Decoding of one message from the front of a buffer.
pub trait Decode: Sized {
    /// Decodes one message from the front of `buf`: `Ok(Some((msg, len)))`
    /// when `buf` starts with a whole message of `len` bytes, `Ok(None)` when
    /// more bytes are needed, `Err` when the bytes can never be valid.
    fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, DecodeError>;

    /// Decodes a buffer that must hold exactly one whole message (a
    /// WebSocket binary frame).
    fn decode_exact(buf: &[u8]) -> Result<Self, DecodeError> {
        match Self::decode(buf)? {
            Some((msg, len)) if len == buf.len() => Ok(msg),
            Some((_, len)) => Err(DecodeError::TrailingBytes {
                len,
                extra: buf.len() - len,
            }),
            None => Err(DecodeError::Incomplete { len: buf.len() }),
        }
    }

    /// Like [`Decode::decode`] without building the message: the length of
    /// the whole message at the front of `buf` once it is validated
    /// (lengths, limits, UTF-8), `Ok(None)` when more bytes are needed, and
    /// the same error `decode` reports otherwise. The type byte is `buf[0]`.
    /// Implementations for the dumdum messages allocate nothing.
    fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        Ok(Self::decode(buf)?.map(|(_, len)| len))
    }
}

impl Decode for ClientMessage {
    fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        let mut c = Cursor::new(buf);
        let Some(t) = c.u8() else { return Ok(None) };
        match t {
            0x00 => {
                if c.u8().is_none() {
                    return Ok(None);
                }
            }
            0x02 => {
                need!(c.str(Field::Nick, 0));
            }
            0x03 => {
                need!(c.str(Field::Channel, 0));
                need!(c.str(Field::Content, 0));
            }
            0x04 => {}
            0x05 => {
                need!(c.str(Field::Channel, 0));
                if c.uint(8).is_none() || c.uint(8).is_none() {
                    return Ok(None);
                }
            }
            type_byte => {
                return Err(DecodeError::UnknownType {
                    direction: Direction::ClientToServer,
                    type_byte,
                });
            }
        }
        Ok(Some(c.pos))
    }

    fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, DecodeError> {
        let mut c = Cursor::new(buf);
        let Some(t) = c.u8() else { return Ok(None) };
        let msg = match t {
            0x00 => match c.u8() {
                Some(version) => ClientMessage::Hello { version },
                None => return Ok(None),
            },
            0x02 => ClientMessage::Authenticate {
                nick: need!(c.varchar(Field::Nick, 0)),
            },
            0x03 => {
                let channel = need!(c.varchar(Field::Channel, 0));
                let content = need!(c.varchar(Field::Content, 0));
                ClientMessage::SendMessage { channel, content }
            }
            0x04 => ClientMessage::ListChannels,
            0x05 => {
                let channel = need!(c.varchar(Field::Channel, 0));
                let Some(before) = c.uint(8) else {
                    return Ok(None);
                };
                let Some(after) = c.uint(8) else {
                    return Ok(None);
                };
                ClientMessage::ListMessages {
                    channel,
                    before,
                    after,
                }
            }
            type_byte => {
                return Err(DecodeError::UnknownType {
                    direction: Direction::ClientToServer,
                    type_byte,
                });
            }
        };
        Ok(Some((msg, c.pos)))
    }
}

impl Decode for ServerMessage {
    fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        let mut c = Cursor::new(buf);
        let Some(t) = c.u8() else { return Ok(None) };
        match t {
            0x00..=0x02 => {
                if c.u8().is_none() {
                    return Ok(None);
                }
            }
            0x03 => {
                need!(c.chat_parts(0));
            }
            0x04 => {
                need!(c.list(2, |c, base| Ok(c.str(Field::Channel, base)?.map(|_| ()))));
            }
            0x05 => {
                need!(c.list(3, |c, base| Ok(c.chat_parts(base)?.map(|_| ()))));
            }
            type_byte => {
                return Err(DecodeError::UnknownType {
                    direction: Direction::ServerToClient,
                    type_byte,
                });
            }
        }
        Ok(Some(c.pos))
    }

    fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, DecodeError> {
        let mut c = Cursor::new(buf);
        let Some(t) = c.u8() else { return Ok(None) };
        let msg = match t {
            0x00 => match c.u8() {
                Some(b) => ServerMessage::Hello { tls: b != 0 },
                None => return Ok(None),
            },
            0x01 => match c.u8() {
                Some(required) => ServerMessage::IncompatibleVersion { required },
                None => return Ok(None),
            },
            0x02 => match c.u8() {
                Some(b) => ServerMessage::AcknowledgeAuthentication { success: b != 0 },
                None => return Ok(None),
            },
            0x03 => ServerMessage::SendMessage(need!(c.chat(0))),
            0x04 => ServerMessage::ListChannels(need!(
                c.list(2, |c, base| c.varchar(Field::Channel, base))
            )),
            0x05 => ServerMessage::ListMessages(need!(c.list(3, |c, base| c.chat(base)))),
            type_byte => {
                return Err(DecodeError::UnknownType {
                    direction: Direction::ServerToClient,
                    type_byte,
                });
            }
        };
        Ok(Some((msg, c.pos)))
    }
}

impl ClientMessage {
    /// Appends the encoding of this message to `out`. On error `out` may
    /// hold a partial message; use [`ClientMessage::to_bytes`] to avoid that.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            ClientMessage::Hello { version } => out.extend_from_slice(&[0x00, *version]),
            ClientMessage::Authenticate { nick } => {
                out.push(0x02);
                put_varchar(out, Field::Nick, nick)?;
            }
            ClientMessage::SendMessage { channel, content } => {
                out.push(0x03);
                put_varchar(out, Field::Channel, channel)?;
                put_varchar(out, Field::Content, content)?;
            }
            ClientMessage::ListChannels => out.push(0x04),
            ClientMessage::ListMessages {
                channel,
                before,
                after,
            } => {
                out.push(0x05);
                put_varchar(out, Field::Channel, channel)?;
                out.extend_from_slice(&before.to_be_bytes());
                out.extend_from_slice(&after.to_be_bytes());
            }
        }
        Ok(())
    }

    /// The encoding of this message.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    /// The message's name as the spec writes it, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            ClientMessage::Hello { .. } => "HELLO",
            ClientMessage::Authenticate { .. } => "AUTHENTICATE",
            ClientMessage::SendMessage { .. } => "SEND_MESSAGE",
            ClientMessage::ListChannels => "LIST_CHANNELS",
            ClientMessage::ListMessages { .. } => "LIST_MESSAGES",
        }
    }
}

impl ServerMessage {
    /// Appends the encoding of this message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ServerEncodeError> {
        match self {
            ServerMessage::Hello { tls } => out.extend_from_slice(&[0x00, u8::from(*tls)]),
            ServerMessage::IncompatibleVersion { required } => {
                out.extend_from_slice(&[0x01, *required]);
            }
            ServerMessage::AcknowledgeAuthentication { success } => {
                out.extend_from_slice(&[0x02, u8::from(*success)]);
            }
            ServerMessage::SendMessage(m) => {
                out.push(0x03);
                put_chat(out, m)?;
            }
            ServerMessage::ListChannels(channels) => {
                out.push(0x04);
                put_list(out, 2, |out| {
                    channels
                        .iter()
                        .try_for_each(|c| put_varchar(out, Field::Channel, c))
                })?;
            }
            ServerMessage::ListMessages(messages) => {
                out.push(0x05);
                put_list(out, 3, |out| {
                    messages.iter().try_for_each(|m| put_chat(out, m))
                })?;
            }
        }
        Ok(())
    }

    /// The encoding of this message.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ServerEncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    /// The message's name as the spec writes it, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            ServerMessage::Hello { .. } => "HELLO",
            ServerMessage::IncompatibleVersion { .. } => "INCOMPATIBLE_VERSION",
            ServerMessage::AcknowledgeAuthentication { .. } => "ACKNOWLEDGE_AUTHENTICATION",
            ServerMessage::SendMessage(_) => "SEND_MESSAGE",
            ServerMessage::ListChannels(_) => "LIST_CHANNELS",
            ServerMessage::ListMessages(_) => "LIST_MESSAGES",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: u64, channel: &str, nick: &str, content: &str) -> ChatMessage {
        ChatMessage::new(Snowflake(id), channel, nick, content)
    }

    #[test]
    fn prefix_widths_match_the_reference() {
        assert_eq!(prefix_len(32), 1);
        assert_eq!(prefix_len(1024), 2);
        assert_eq!(prefix_len(255), 1);
        assert_eq!(prefix_len(256), 2);
    }

    #[test]
    fn client_messages_encode_byte_exact() {
        let cases: Vec<(ClientMessage, Vec<u8>)> = vec![
            (ClientMessage::Hello { version: 2 }, vec![0, 2]),
            (
                ClientMessage::Authenticate { nick: "ab".into() },
                vec![2, 2, b'a', b'b'],
            ),
            (
                ClientMessage::SendMessage {
                    channel: "g".into(),
                    content: "hi".into(),
                },
                vec![3, 1, b'g', 0, 2, b'h', b'i'],
            ),
            (ClientMessage::ListChannels, vec![4]),
            (
                ClientMessage::ListMessages {
                    channel: "g".into(),
                    before: 1,
                    after: 0x0102,
                },
                vec![5, 1, b'g', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2],
            ),
        ];
        for (msg, bytes) in cases {
            assert_eq!(msg.to_bytes().unwrap(), bytes, "{msg:?}");
            assert_eq!(ClientMessage::decode_exact(&bytes).unwrap(), msg);
        }
    }

    #[test]
    fn server_lists_use_u16_and_u24_lengths() {
        let list = ServerMessage::ListChannels(vec!["a".into(), "bc".into()]);
        assert_eq!(
            list.to_bytes().unwrap(),
            vec![4, 0, 5, 1, b'a', 2, b'b', b'c']
        );
        let m = ServerMessage::ListMessages(vec![chat(7, "g", "n", "x")]);
        let bytes = m.to_bytes().unwrap();
        assert_eq!(&bytes[..4], &[5, 0, 0, 8 + 2 + 2 + 3]);
        assert_eq!(ServerMessage::decode_exact(&bytes).unwrap(), m);
    }

    #[test]
    fn need_more_is_not_an_error() {
        let bytes = ServerMessage::SendMessage(chat(1, "general", "nick", "héllo"))
            .to_bytes()
            .unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(
                ServerMessage::decode(&bytes[..cut]),
                Ok(None),
                "cut at {cut}"
            );
        }
        assert!(matches!(ServerMessage::decode(&bytes), Ok(Some((_, n))) if n == bytes.len()));
    }

    #[test]
    fn malformed_data_is_reported_with_its_place() {
        assert_eq!(
            ClientMessage::decode(&[1]),
            Err(DecodeError::UnknownType {
                direction: Direction::ClientToServer,
                type_byte: 1
            })
        );
        assert_eq!(
            ClientMessage::decode(&[2, 33]),
            Err(DecodeError::TooLong {
                field: Field::Nick,
                len: 33,
                offset: 1
            })
        );
        // Truncated UTF-8: the first byte of a two-byte sequence alone.
        assert_eq!(
            ClientMessage::decode(&[2, 1, 0xc3]),
            Err(DecodeError::InvalidUtf8 {
                field: Field::Nick,
                offset: 2
            })
        );
        assert_eq!(
            ServerMessage::decode(&[4, 0, 2, 5, b'a']),
            Err(DecodeError::TruncatedList { len: 2, offset: 3 })
        );
        assert_eq!(
            ClientMessage::decode_exact(&[4, 4]),
            Err(DecodeError::TrailingBytes { len: 1, extra: 1 })
        );
        assert_eq!(
            ClientMessage::decode_exact(&[3, 1]),
            Err(DecodeError::Incomplete { len: 2 })
        );
    }

    #[test]
    fn encoding_refuses_overlong_fields() {
        let nick = "é".repeat(17); // 34 bytes, 17 characters
        assert_eq!(
            ClientMessage::Authenticate { nick }.to_bytes(),
            Err(EncodeError {
                field: Field::Nick,
                len: 34
            })
        );
        let ok = "x".repeat(1024);
        assert!(
            ClientMessage::SendMessage {
                channel: "c".repeat(32),
                content: ok
            }
            .to_bytes()
            .is_ok()
        );
    }

    #[test]
    fn list_longer_than_its_prefix_is_refused() {
        let channels: Vec<String> = (0..2000).map(|_| "c".repeat(32)).collect();
        assert!(matches!(
            ServerMessage::ListChannels(channels).to_bytes(),
            Err(ServerEncodeError::ListTooLong { len: 66000 })
        ));
    }
}
