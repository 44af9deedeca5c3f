//! # dumdum-protocol
//!
//! The dumdum v2 chat protocol, sans I/O: no sockets, no clock, no async
//! runtime. It builds for native targets and for `wasm32-unknown-unknown`.
//!
//! - [`message`]: the eleven messages and their exact byte encoding;
//! - [`decoder`]: a streaming decoder (any chunking, bounded buffer);
//! - [`client`] and [`server`]: state machines in the quinn-proto style.
//!   Inputs are `handle_*` calls and user actions, outputs are drained with
//!   `poll_transmit` and `poll_event`; the caller owns the I/O;
//! - [`snowflake`]: message ids and their creation time;
//! - [`history`]: paging that is correct against the reference server's
//!   inverted, inclusive LIST_MESSAGES range;
//! - [`session`]: the browser <-> bridge text frames (DIMP handshake and
//!   bridge notices);
//! - [`json`]: the small JSON reader and writer they (and the page's stored
//!   state) use;
//! - [`websocket`]: the bridge's server-side WebSocket frame codec
//!   (RFC 6455 framing: a decoder for client frames, server frame headers).
//!
//! Interoperability with the reference implementation (`dum-dum-irc` 0.5.0)
//! is the requirement; its quirks are documented where they matter.

pub mod calendar;
pub mod client;
pub mod decoder;
pub mod error;
pub mod history;
pub mod json;
pub mod message;
pub mod server;
pub mod session;
pub mod snowflake;
pub mod websocket;

pub use client::{Client, ClientConfig, ClientState, Event, Readiness, TlsMode};
pub use decoder::{DEFAULT_BUFFER_LIMIT, Decoder};
pub use error::{DecodeError, Direction, EncodeError, Error, Field, StateError};
pub use history::{HistoryQuery, PAGE_SIZE};
pub use message::{ChatMessage, ClientMessage, Decode, PROTOCOL_VERSION, ServerMessage};
pub use server::{Server, ServerEvent, ServerState};
pub use snowflake::{Snowflake, SnowflakeGenerator};

/// The most UTF-8 bytes in a channel name.
pub const MAX_CHANNEL_LEN: usize = 32;
/// The most UTF-8 bytes in a nick.
pub const MAX_NICK_LEN: usize = 32;
/// The most UTF-8 bytes in a message's content.
pub const MAX_CONTENT_LEN: usize = 1024;
