//! Remembered preferences in `localStorage`: nick, server, and the last
//! channel per server; and the bridge session of this tab in
//! `sessionStorage` (its key is a bearer secret: it lives only as long as
//! the tab, survives a reload of it, and is not shared with other tabs).
//! Storage can be missing or refuse writes (private browsing, quota,
//! disabled cookies); the page then works without memory, and says why in
//! [`StorageError`].

/// Key of the remembered nick.
pub const NICK_KEY: &str = "dumdum.nick";
/// Key of the remembered server.
pub const SERVER_KEY: &str = "dumdum.server";

/// Key (in `sessionStorage`) of the tab's bridge session: its key, counts
/// and protocol state, rewritten after every event (small).
pub const SESSION_KEY: &str = "dumdum.session";
/// Key (in `sessionStorage`) of the session's outgoing frames the bridge has
/// not confirmed: rewritten only when they change (a frame sent, or
/// confirmed by the bridge), not for every frame received.
pub const SESSION_FRAMES_KEY: &str = "dumdum.session.frames";

/// The key of the last channel on `server` (`None`: the bridge's default).
pub fn channel_key(server: Option<&str>) -> String {
    format!("dumdum.channel.{}", server.unwrap_or(""))
}

/// The key of the last message read in `channel` by `nick` on `server`
/// (`None`: the bridge's default), for the unread marker; its value is the
/// message id in decimal.
pub fn read_key(server: Option<&str>, nick: &str, channel: &str) -> String {
    format!("dumdum.read.{}.{nick}.{channel}", server.unwrap_or(""))
}

/// Key of the notification settings (on/off, sound, highlight words).
pub const NOTIFY_KEY: &str = "dumdum.notify";

/// The key of the channels' notification levels of `nick` on `server`
/// (`None`: the bridge's default).
pub fn levels_key(server: Option<&str>, nick: &str) -> String {
    format!("dumdum.levels.{}.{nick}", server.unwrap_or(""))
}

/// Why storage did not work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// No window (not in a browser page).
    #[error("not running in a browser window")]
    NoWindow,
    /// The browser has no such storage or denies it.
    #[error("browser storage is not available: {0}")]
    Unavailable(String),
    /// A write was refused (quota, privacy settings).
    #[error("browser storage refused the write: {0}")]
    WriteRefused(String),
}

/// A handle on `window.localStorage` or `window.sessionStorage`.
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
            Err(e) => Err(StorageError::Unavailable(crate::js_text(&e))),
        }
    }

    /// The tab's session storage: kept across reloads of this tab, not
    /// shared with other tabs, gone when the tab closes.
    pub fn session() -> Result<Store, StorageError> {
        let window = web_sys::window().ok_or(StorageError::NoWindow)?;
        match window.session_storage() {
            Ok(Some(inner)) => Ok(Store { inner }),
            Ok(None) => Err(StorageError::Unavailable("no sessionStorage".into())),
            Err(e) => Err(StorageError::Unavailable(crate::js_text(&e))),
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
            .map_err(|e| StorageError::WriteRefused(crate::js_text(&e)))
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &str) -> Result<(), StorageError> {
        self.inner
            .remove_item(key)
            .map_err(|e| StorageError::WriteRefused(crate::js_text(&e)))
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

/// Reads `key` from the tab's session storage.
pub fn session_load(key: &str) -> Option<String> {
    Store::session().ok()?.get(key)
}

/// Writes `key` to the tab's session storage (problems go to the console:
/// the chat works, only a reload will not resume it). False when the write
/// failed.
pub fn session_save(key: &str, value: &str) -> bool {
    match Store::session().and_then(|s| s.set(key, value)) {
        Ok(()) => true,
        Err(e) => {
            crate::log(&format!("dumdum: session not kept for a reload: {e}"));
            false
        }
    }
}

/// Forgets `key` in the tab's session storage.
pub fn session_remove(key: &str) {
    if let Err(e) = Store::session().and_then(|s| s.remove(key)) {
        crate::log(&format!("dumdum: session not forgotten: {e}"));
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

    #[test]
    fn read_keys_are_per_server_nick_and_channel() {
        assert_eq!(
            read_key(Some("local"), "bob", "general"),
            "dumdum.read.local.bob.general"
        );
        assert_ne!(read_key(None, "bob", "g"), read_key(None, "ann", "g"));
        assert_ne!(
            read_key(Some("a"), "bob", "g"),
            read_key(Some("b"), "bob", "g")
        );
    }

    #[test]
    fn level_keys_are_per_server_and_nick() {
        assert_eq!(levels_key(Some("local"), "bob"), "dumdum.levels.local.bob");
        assert_ne!(levels_key(Some("a"), "bob"), levels_key(Some("b"), "bob"));
        assert_ne!(levels_key(None, "bob"), levels_key(None, "bo"));
    }
}
