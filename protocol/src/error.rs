//! Error types. Every error says what went wrong and where.

use std::fmt;

/// A field of a dumdum message that carries a length-limited string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// A channel name, `varchar(32)`.
    Channel,
    /// A nickname, `varchar(32)`.
    Nick,
    /// Message content, `varchar(1024)`.
    Content,
}

impl Field {
    /// The most UTF-8 bytes this field may hold.
    pub const fn max_len(self) -> usize {
        match self {
            Field::Channel => crate::MAX_CHANNEL_LEN,
            Field::Nick => crate::MAX_NICK_LEN,
            Field::Content => crate::MAX_CONTENT_LEN,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Channel => "channel name",
            Field::Nick => "nickname",
            Field::Content => "message content",
        })
    }
}

/// Which side sent the bytes being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    ClientToServer,
    /// Server to client.
    ServerToClient,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "server",
        })
    }
}

/// Bytes that cannot be a dumdum v2 message.
///
/// `offset` is the byte position, within the message being decoded, at which
/// the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The first byte is not a known message type for this direction.
    #[error("unknown {direction} message type 0x{type_byte:02x}")]
    UnknownType {
        /// Who sent it.
        direction: Direction,
        /// The offending type byte.
        type_byte: u8,
    },
    /// A string field's length prefix is over the field's limit.
    #[error("{field} is {len} bytes long at offset {offset}, more than the limit of {}", field.max_len())]
    TooLong {
        /// The field.
        field: Field,
        /// The length that was announced.
        len: usize,
        /// Where the length prefix starts.
        offset: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("{field} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: Field,
        /// Where the string's bytes start.
        offset: usize,
    },
    /// A list's announced length does not hold a whole number of entries.
    #[error("list body of {len} bytes ends inside an entry at offset {offset}")]
    TruncatedList {
        /// The announced body length.
        len: usize,
        /// Where the incomplete entry starts.
        offset: usize,
    },
    /// A frame that must hold exactly one message holds more bytes.
    #[error("{extra} trailing bytes after a whole message of {len} bytes")]
    TrailingBytes {
        /// The length of the message.
        len: usize,
        /// How many bytes follow it.
        extra: usize,
    },
    /// A frame that must hold exactly one message ends before the message does.
    #[error("incomplete message: {len} bytes is not a whole message")]
    Incomplete {
        /// The frame's length.
        len: usize,
    },
}

/// A value that cannot be encoded: a string over its field's limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {len} bytes long in UTF-8; the limit is {}", field.max_len())]
pub struct EncodeError {
    /// The field.
    pub field: Field,
    /// Its length in UTF-8 bytes.
    pub len: usize,
}

/// An action or message that the protocol's order does not allow now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action} is not allowed while {state}")]
pub struct StateError {
    /// What was attempted (for example "AUTHENTICATE from the client").
    pub action: &'static str,
    /// A description of the state at the time.
    pub state: &'static str,
}

/// Everything that can go wrong in the protocol state machines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent bytes that are not a valid message.
    #[error("malformed data from the {direction}: {source}")]
    Malformed {
        /// Who sent it.
        direction: Direction,
        /// What is wrong.
        #[source]
        source: DecodeError,
    },
    /// The receive buffer would grow past its limit.
    #[error(
        "receive buffer overflow: a message of at least {buffered} bytes exceeds the limit of {limit} bytes"
    )]
    BufferOverflow {
        /// The limit in bytes.
        limit: usize,
        /// How many bytes of the message were buffered (or its full length).
        buffered: usize,
    },
    /// A message arrived, or an action was attempted, in a state that forbids it.
    #[error(transparent)]
    InvalidState(#[from] StateError),
    /// A value is too long to be sent.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The server answered HELLO without TLS, but this client requires TLS.
    #[error("the server does not offer TLS, but TLS is required")]
    TlsRequired,
    /// The server announced TLS, but this client cannot upgrade.
    #[error("the server requires TLS, which this connection cannot do")]
    TlsUnsupported,
    /// A list reply is longer than its length prefix can say.
    #[error("a list of {len} bytes is too long for one reply")]
    ListTooLong {
        /// The body's length.
        len: usize,
    },
    /// A nick must hold at least one character.
    #[error("a nickname cannot be empty")]
    EmptyNick,
    /// The connection is closed after an earlier fatal error.
    #[error("the connection is closed after an earlier error")]
    Closed,
}
