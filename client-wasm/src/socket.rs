//! A thin wrapper over the browser's `WebSocket`: binary frames as
//! `ArrayBuffer`, the `dumdum.v2` subprotocol, and handlers that are
//! detached (and the socket closed) when the wrapper is dropped.

use std::rc::Rc;

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

/// Why the socket could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocketError {
    /// The browser refused to create the socket (bad URL, blocked port).
    #[error("cannot open a WebSocket to {url}: {reason}")]
    Open {
        /// The URL.
        url: String,
        /// The browser's words.
        reason: String,
    },
    /// A frame could not be sent.
    #[error("cannot send on the WebSocket: {0}")]
    Send(String),
    /// The socket is not open.
    #[error("the WebSocket is not open")]
    NotOpen,
}

/// What arrives on a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEvent {
    /// The connection is open.
    Open,
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// The connection ended (or never opened).
    Closed {
        /// Close code (1006 when no close frame arrived).
        code: u16,
        /// Close reason.
        reason: String,
        /// Whether the closing handshake completed.
        clean: bool,
    },
}

type Handler = Rc<dyn Fn(SocketEvent)>;

/// An open (or opening) WebSocket with its handlers.
pub struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("url", &self.ws.url())
            .finish()
    }
}

impl Socket {
    /// Opens `url` offering `protocol`; every event goes to `handler`.
    pub fn open(
        url: &str,
        protocol: &str,
        handler: impl Fn(SocketEvent) + 'static,
    ) -> Result<Socket, SocketError> {
        let ws = WebSocket::new_with_str(url, protocol).map_err(|e| SocketError::Open {
            url: url.to_owned(),
            reason: crate::js_text(&e),
        })?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let handler: Handler = Rc::new(handler);

        let h = handler.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| h(SocketEvent::Open));
        let h = handler.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let data = e.data();
            if let Some(text) = data.as_string() {
                h(SocketEvent::Text(text));
            } else if let Some(buf) = data.dyn_ref::<ArrayBuffer>() {
                h(SocketEvent::Binary(Uint8Array::new(buf).to_vec()));
            }
        });
        let h = handler;
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            h(SocketEvent::Closed {
                code: e.code(),
                reason: e.reason(),
                clean: e.was_clean(),
            });
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// The subprotocol the server selected ("" before opening).
    pub fn protocol(&self) -> String {
        self.ws.protocol()
    }

    /// Whether the socket is open.
    pub fn is_open(&self) -> bool {
        self.ws.ready_state() == WebSocket::OPEN
    }

    /// Sends a text frame.
    pub fn send_text(&self, text: &str) -> Result<(), SocketError> {
        if !self.is_open() {
            return Err(SocketError::NotOpen);
        }
        self.ws
            .send_with_str(text)
            .map_err(|e| SocketError::Send(crate::js_text(&e)))
    }

    /// Sends a binary frame.
    pub fn send_binary(&self, bytes: &[u8]) -> Result<(), SocketError> {
        if !self.is_open() {
            return Err(SocketError::NotOpen);
        }
        self.ws
            .send_with_u8_array(bytes)
            .map_err(|e| SocketError::Send(crate::js_text(&e)))
    }

    /// Closes with `code` and `reason`; the close event still arrives.
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.ws.close_with_code_and_reason(code, reason);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let state = self.ws.ready_state();
        if state == WebSocket::OPEN || state == WebSocket::CONNECTING {
            let _ = self
                .ws
                .close_with_code_and_reason(1000, "page closed the chat");
        }
    }
}
