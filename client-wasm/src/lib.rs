//! The dumdum browser chat client: a Yew app compiled to WebAssembly that
//! talks to the dumdum bridge over a WebSocket (`/ws`, subprotocol
//! `dumdum.v2`).
//!
//! - [`engine`], [`state`], [`format`], [`backoff`], [`problem`]: the
//!   session logic, the view state with its reducer, and every formatting and
//!   validation rule: plain Rust, tested natively with `cargo test`;
//! - [`storage`], [`socket`]: thin wrappers over browser APIs, tested in
//!   headless Chromium with `wasm-bindgen-test`;
//! - [`hooks`] and [`components`]: the Yew app.

pub mod backoff;
pub mod engine;
pub mod format;
pub mod problem;
pub mod state;
