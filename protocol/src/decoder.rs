//! A streaming decoder: bytes in, whole messages out.

use bytes::{Bytes, BytesMut};

use crate::error::{Direction, Error};
use crate::message::{ClientMessage, Decode, ServerMessage};

/// The reference implementation's receive-buffer cap: 1 MiB.
pub const DEFAULT_BUFFER_LIMIT: usize = 1 << 20;

/// Which way a message type travels; used to label errors.
pub trait Directed: Decode {
    /// Who sends this type of message.
    const DIRECTION: Direction;
}

impl Directed for ClientMessage {
    const DIRECTION: Direction = Direction::ClientToServer;
}

impl Directed for ServerMessage {
    const DIRECTION: Direction = Direction::ServerToClient;
}

/// Buffers a byte stream and yields whole messages.
///
/// Feed it chunks of any size with [`Decoder::feed`]; take messages with
/// [`Decoder::next_message`] until it returns `Ok(None)` ("need more bytes").
/// A message is yielded together with its exact bytes (without copying), so
/// a relay can forward them unchanged.
///
/// The limit bounds the bytes of a single message: no message larger than
/// the limit is ever accepted, and unparsed bytes never stay buffered beyond
/// it. The outcome does not depend on how the stream was split into chunks.
#[derive(Debug)]
pub struct Decoder<M> {
    buf: BytesMut,
    limit: usize,
    failed: bool,
    _m: std::marker::PhantomData<fn() -> M>,
}

impl<M: Directed> Default for Decoder<M> {
    fn default() -> Self {
        Self::new(DEFAULT_BUFFER_LIMIT)
    }
}

impl<M: Directed> Decoder<M> {
    /// A decoder that accepts messages of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            limit,
            failed: false,
            _m: std::marker::PhantomData,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The buffer itself, to read into without a copy (for example with
    /// tokio's `read_buf`). Only append to it.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// How many bytes are waiting to be parsed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message and its bytes, `Ok(None)` if more bytes are
    /// needed. After an error the decoder stays failed.
    pub fn next_message(&mut self) -> Result<Option<(M, Bytes)>, Error> {
        self.next_with(M::decode)
    }

    /// Like [`Decoder::next_message`], but only validates the next message
    /// (lengths, limits, UTF-8: the same outcome, error or not) without
    /// building it: its type byte and its exact bytes. Allocates nothing
    /// for the dumdum messages; for a relay that only forwards them.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Bytes)>, Error> {
        let next = self.next_with(|buf| Ok(M::frame_len(buf)?.map(|len| ((), len))))?;
        Ok(next.map(|((), raw)| (raw.first().copied().unwrap_or_default(), raw)))
    }

    fn next_with<T>(
        &mut self,
        parse: impl FnOnce(&[u8]) -> Result<Option<(T, usize)>, crate::error::DecodeError>,
    ) -> Result<Option<(T, Bytes)>, Error> {
        if self.failed {
            return Err(Error::Closed);
        }
        // Judge only the first `limit` bytes: a message that does not fit in
        // them is an overflow whatever comes after, so the outcome (overflow
        // or malformed) does not depend on how the bytes were chunked, and a
        // huge chunk is never parsed past the limit.
        let view = &self.buf[..self.buf.len().min(self.limit)];
        let result = match parse(view) {
            Ok(Some((_, len))) if len > self.limit => Err(self.overflow(len)),
            Ok(Some((msg, len))) => {
                let raw = self.buf.split_to(len).freeze();
                if self.buf.is_empty() {
                    // Drop the old allocation once everything is consumed,
                    // so an idle connection holds no buffer.
                    self.buf = BytesMut::new();
                }
                Ok(Some((msg, raw)))
            }
            Ok(None) if self.buf.len() > self.limit => Err(self.overflow(self.buf.len())),
            Ok(None) => Ok(None),
            Err(source) => Err(Error::Malformed {
                direction: M::DIRECTION,
                source,
            }),
        };
        if result.is_err() {
            self.failed = true;
            self.buf = BytesMut::new();
        }
        result
    }

    fn overflow(&self, len: usize) -> Error {
        Error::BufferOverflow {
            limit: self.limit,
            buffered: len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ChatMessage;
    use crate::snowflake::Snowflake;

    fn drain(d: &mut Decoder<ServerMessage>) -> Result<Vec<ServerMessage>, Error> {
        let mut out = Vec::new();
        while let Some((m, _)) = d.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn one_byte_at_a_time() {
        let msgs = vec![
            ServerMessage::Hello { tls: false },
            ServerMessage::AcknowledgeAuthentication { success: true },
            ServerMessage::SendMessage(ChatMessage {
                id: Snowflake(42),
                channel: "general".into(),
                nick: "zoë".into(),
                content: "hi\nthere".into(),
            }),
            ServerMessage::ListChannels(vec!["general".into(), "random".into()]),
        ];
        let mut bytes = Vec::new();
        for m in &msgs {
            m.encode(&mut bytes).unwrap();
        }
        let mut d = Decoder::<ServerMessage>::default();
        let mut got = Vec::new();
        for b in &bytes {
            d.feed(std::slice::from_ref(b));
            got.extend(drain(&mut d).unwrap());
        }
        assert_eq!(got, msgs);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn raw_bytes_are_the_message_bytes() {
        let mut d = Decoder::<ServerMessage>::default();
        d.feed(&[0, 7, 2, 1]);
        let (m, raw) = d.next_message().unwrap().unwrap();
        assert_eq!(m, ServerMessage::Hello { tls: true });
        assert_eq!(
            &raw[..],
            &[0, 7],
            "HELLO passes unchanged, even a non-canonical byte"
        );
    }

    #[test]
    fn overflow_is_fatal() {
        let mut d = Decoder::<ServerMessage>::new(16);
        // A LIST_MESSAGES announcing 1000 bytes: never completes within 16.
        d.feed(&[5, 0, 3, 0xe8]);
        assert_eq!(d.next_message().unwrap(), None);
        d.feed(&[0; 20]);
        assert!(matches!(
            d.next_message(),
            Err(Error::BufferOverflow { limit: 16, .. })
        ));
        assert_eq!(d.next_message(), Err(Error::Closed));
    }

    #[test]
    fn over_limit_is_overflow_however_chunked() {
        // A SEND_MESSAGE whose content (announced as 40 bytes) is invalid
        // UTF-8: 49 bytes in all, over a limit of 16. In one piece it used
        // to be reported as malformed, byte by byte as an overflow.
        let mut bytes = vec![3, 1, b'g', 0, 40];
        bytes.extend([0xff; 40]);
        let mut whole = Decoder::<ClientMessage>::new(16);
        whole.feed(&bytes);
        let mut bytewise = Decoder::<ClientMessage>::new(16);
        let mut last = Ok(None);
        for b in &bytes {
            bytewise.feed(std::slice::from_ref(b));
            last = bytewise.next_message();
            if last.is_err() {
                break;
            }
        }
        for result in [whole.next_message(), last] {
            assert!(
                matches!(result, Err(Error::BufferOverflow { limit: 16, .. })),
                "{result:?}"
            );
        }
    }

    #[test]
    fn next_frame_validates_without_building() {
        let mut d = Decoder::<ServerMessage>::default();
        let msg = ServerMessage::ListChannels(vec!["general".into(), "zoë".into()]);
        let bytes = msg.to_bytes().unwrap();
        d.feed(&bytes[..5]);
        assert_eq!(d.next_frame(), Ok(None));
        d.feed(&bytes[5..]);
        d.feed(&[2, 1]);
        let (ty, raw) = d.next_frame().unwrap().unwrap();
        assert_eq!((ty, &raw[..]), (4, &bytes[..]));
        assert_eq!(
            d.next_frame().unwrap().map(|(t, r)| (t, r.len())),
            Some((2, 2))
        );
        // Invalid UTF-8 in a nick is refused exactly as next_message does.
        let bad = [3, 0, 0, 0, 0, 0, 0, 0, 1, 1, b'g', 1, 0xff, 0, 0];
        let mut a = Decoder::<ServerMessage>::default();
        let mut b = Decoder::<ServerMessage>::default();
        a.feed(&bad);
        b.feed(&bad);
        assert!(matches!(a.next_frame(), Err(Error::Malformed { .. })));
        assert_eq!(a.next_frame(), Err(Error::Closed));
        assert_eq!(
            format!("{:?}", b.next_message().unwrap_err()),
            format!("{:?}", {
                let mut c = Decoder::<ServerMessage>::default();
                c.feed(&bad);
                c.next_frame().unwrap_err()
            })
        );
    }

    #[test]
    fn malformed_is_fatal() {
        let mut d = Decoder::<ClientMessage>::default();
        d.feed(&[4, 9]);
        assert_eq!(
            d.next_message().unwrap().unwrap().0,
            ClientMessage::ListChannels
        );
        assert!(matches!(d.next_message(), Err(Error::Malformed { .. })));
    }
}
