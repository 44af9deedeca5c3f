//! History paging against the reference server's LIST_MESSAGES semantics.
//!
//! The reference server (`dumdum-server` 0.5.0) reads the range fields
//! *inverted and inclusive*: `before = X` keeps ids `>= X`, `after = X` keeps
//! ids `<= X`, and it returns the newest 100 of what is left, oldest first.
//! [`HistoryQuery`] names what a client wants and produces the raw fields that
//! get it; [`select`] is the server side of the same rule, used by our
//! embedded server so it behaves exactly like the reference.

use crate::message::{ChatMessage, ClientMessage};
use crate::snowflake::Snowflake;

/// The most messages one LIST_MESSAGES reply holds.
pub const PAGE_SIZE: usize = 100;

/// What a client wants from a channel's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// The newest page.
    Newest,
    /// The newest page of messages strictly older than this id.
    OlderThan(Snowflake),
    /// The newest page of messages strictly newer than this id. If the
    /// reply is a full page, messages may lie between `id` and the page's
    /// oldest: ask for [`HistoryQuery::Between`] to fill the gap.
    NewerThan(Snowflake),
    /// The newest page of messages strictly between two ids.
    Between {
        /// Exclusive lower bound.
        after: Snowflake,
        /// Exclusive upper bound.
        before: Snowflake,
    },
}

impl HistoryQuery {
    /// The raw `(before, after)` fields for the reference server.
    pub fn wire_range(self) -> (u64, u64) {
        match self {
            HistoryQuery::Newest => (0, 0),
            // ids <= O - 1. An id of 0 or 1 has nothing older: ask for an
            // empty range (ids >= MAX and <= 0 matches nothing).
            HistoryQuery::OlderThan(o) => match o.0 {
                0 | 1 => (u64::MAX, 1),
                o => (0, o - 1),
            },
            HistoryQuery::NewerThan(x) => (x.0.saturating_add(1), 0),
            HistoryQuery::Between { after, before } => match before.0 {
                0 | 1 => (u64::MAX, 1),
                b => (after.0.saturating_add(1), b - 1),
            },
        }
    }

    /// The LIST_MESSAGES request for this query.
    pub fn request(self, channel: impl Into<String>) -> ClientMessage {
        let (before, after) = self.wire_range();
        ClientMessage::ListMessages {
            channel: channel.into(),
            before,
            after,
        }
    }

    /// After a reply of `page` (oldest first), the query that continues
    /// paging in the same direction, or `None` when everything is fetched.
    /// Going back in time, a page shorter than [`PAGE_SIZE`] means the
    /// server holds nothing older. Catching up after `NewerThan`/`Between`,
    /// a full page may leave a gap below it, which the next query fills.
    pub fn next(self, page: &[ChatMessage]) -> Option<HistoryQuery> {
        if page.len() < PAGE_SIZE {
            return None;
        }
        let oldest = page.first()?.id;
        match self {
            HistoryQuery::Newest | HistoryQuery::OlderThan(_) => {
                Some(HistoryQuery::OlderThan(oldest))
            }
            HistoryQuery::NewerThan(after) | HistoryQuery::Between { after, .. } => {
                Some(HistoryQuery::Between {
                    after,
                    before: oldest,
                })
            }
        }
    }
}

/// The reference server's selection: from `messages` (sorted by id), keep
/// ids `>= before` (if non-zero) and `<= after` (if non-zero), then the last
/// `limit` of those, oldest first.
pub fn select(messages: &[ChatMessage], before: u64, after: u64, limit: usize) -> &[ChatMessage] {
    let start = if before == 0 {
        0
    } else {
        messages.partition_point(|m| m.id.0 < before)
    };
    let messages = &messages[start..];
    let end = if after == 0 {
        messages.len()
    } else {
        messages.partition_point(|m| m.id.0 <= after)
    };
    let messages = &messages[..end];
    &messages[messages.len().saturating_sub(limit)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(ids: impl IntoIterator<Item = u64>) -> Vec<ChatMessage> {
        ids.into_iter()
            .map(|id| ChatMessage {
                id: Snowflake(id),
                channel: "c".into(),
                nick: "n".into(),
                content: id.to_string(),
            })
            .collect()
    }

    fn ids(m: &[ChatMessage]) -> Vec<u64> {
        m.iter().map(|m| m.id.0).collect()
    }

    #[test]
    fn select_is_inverted_and_inclusive_like_the_reference() {
        // The spec's measurement: ids m0..m4, before = id(m2) -> m2, m3, m4.
        let all = msgs([10, 20, 30, 40, 50]);
        assert_eq!(ids(select(&all, 30, 0, 100)), [30, 40, 50]);
        assert_eq!(ids(select(&all, 0, 30, 100)), [10, 20, 30]);
        assert_eq!(ids(select(&all, 0, 0, 2)), [40, 50]);
    }

    fn run(all: &[ChatMessage], q: HistoryQuery) -> Vec<ChatMessage> {
        let (before, after) = q.wire_range();
        select(all, before, after, PAGE_SIZE).to_vec()
    }

    #[test]
    fn paging_back_visits_every_message_once() {
        let all = msgs((1..=1000).map(|i| i * 3));
        let mut q = Some(HistoryQuery::Newest);
        let mut seen = Vec::new();
        let mut pages = 0;
        while let Some(query) = q {
            let page = run(&all, query);
            let mut got = ids(&page);
            got.extend(seen);
            seen = got;
            q = query.next(&page);
            pages += 1;
            assert!(pages <= 20);
        }
        assert_eq!(seen, ids(&all));
    }

    #[test]
    fn catching_up_fills_gaps() {
        let all = msgs(1..=350);
        let known = Snowflake(20);
        let mut q = Some(HistoryQuery::NewerThan(known));
        let mut got = Vec::new();
        for _ in 0..10 {
            let Some(query) = q else { break };
            let page = run(&all, query);
            got.extend(ids(&page));
            q = query.next(&page);
        }
        got.sort_unstable();
        assert_eq!(got, (21..=350).collect::<Vec<_>>());
    }

    #[test]
    fn nothing_older_than_the_first_id() {
        let all = msgs([1, 2, 3]);
        assert!(run(&all, HistoryQuery::OlderThan(Snowflake(1))).is_empty());
        assert_eq!(
            ids(&run(&all, HistoryQuery::OlderThan(Snowflake(3)))),
            [1, 2]
        );
    }
}
