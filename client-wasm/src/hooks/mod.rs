//! Hooks.

pub mod use_chat;

pub use use_chat::{ChatContext, Command, use_chat};
