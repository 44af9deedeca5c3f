//! Remembered preferences in `localStorage`: nick, server, and the last
//! channel per server. Storage can be missing or refuse writes (private
//! browsing, quota, disabled cookies); the page then works without memory,
//! and says why in [`StorageError`].

use wasm_bindgen::JsValue;

/// Key of the remembered nick.
pub const NICK_KEY: &str = "dumdum.nick";
/// Key of the remembered server.
pub const SERVER_KEY: &str = "dumdum.server";

/// The key of the last channel on `server` (`None`: the bridge's default).
pub fn channel_key(server: Option<&str>) -> String {
    format!("dumdum.channel.{}", server.unwrap_or(""))
}

/// Why storage did not work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// No window (not in a browser page).
    #[error("not running in a browser window")]
    NoWindow,
    /// The browser has no `localStorage` or denies it.
    #[error("local storage is not available: {0}")]
    Unavailable(String),
    /// A write was refused (quota, privacy settings).
    #[error("local storage refused the write: {0}")]
    WriteRefused(String),
}

fn js_text(v: &JsValue) -> String {
    v.as_string()
        .or_else(|| js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string()))
        .unwrap_or_else(|| "unknown error".into())
}

/// A handle on `window.localStorage`.
#[derive(Debug, Clone)]
pub struct Store {
    inner: web_sys::Storage,
}

impl Store {
    /// The page's local storage.
    pub fn local() -> Result<Store, StorageError> {
        let window = web_sys::window().ok_or(StorageError::NoWindow)?;
        match window.local_storage() {
            Ok(Some(inner)) => Ok(Store { inner }),
            Ok(None) => Err(StorageError::Unavailable("no localStorage".into())),
            Err(e) => Err(StorageError::Unavailable(js_text(&e))),
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.inner.get_item(key).ok().flatten()
    }

    /// Stores `value` under `key`.
    pub fn set(&self, key: &str, value: &str) -> Result<(), StorageError> {
        self.inner
            .set_item(key, value)
            .map_err(|e| StorageError::WriteRefused(js_text(&e)))
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &str) -> Result<(), StorageError> {
        self.inner
            .remove_item(key)
            .map_err(|e| StorageError::WriteRefused(js_text(&e)))
    }
}

/// Reads `key`, or `None` when storage is unavailable.
pub fn load(key: &str) -> Option<String> {
    Store::local().ok()?.get(key)
}

/// Writes `key`; storage problems are reported to the console only (the
/// chat works without memory).
pub fn save(key: &str, value: &str) {
    if let Err(e) = Store::local().and_then(|s| s.set(key, value)) {
        crate::log(&format!("dumdum: not remembered: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_keys_are_per_server() {
        assert_eq!(channel_key(Some("local")), "dumdum.channel.local");
        assert_eq!(channel_key(None), "dumdum.channel.");
        assert_ne!(channel_key(Some("a")), channel_key(Some("b")));
    }
}
