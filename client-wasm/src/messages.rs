//! A channel's messages: sorted by id, each id once, stored in shared
//! chunks so that a new view state (Yew clones the state on every dispatch
//! while the old one is still alive) copies at most one chunk and the list
//! of chunk pointers, never the whole list. A broadcast into a channel of
//! 20 000 messages costs about what it costs in a channel of 50.

use std::rc::Rc;

use dumdum_protocol::{ChatMessage, Snowflake};

/// Messages per chunk.
pub const CHUNK: usize = 256;

type Chunk = Rc<Vec<Rc<ChatMessage>>>;

/// What a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    /// Messages that were new.
    pub added: usize,
    /// The oldest messages dropped to stay within the limit.
    pub dropped: usize,
}

/// Messages, oldest first, unique by id, shared between view states.
#[derive(Debug, Clone, Default)]
pub struct Messages {
    chunks: Rc<Vec<Chunk>>,
    len: usize,
}

impl PartialEq for Messages {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && (Rc::ptr_eq(&self.chunks, &other.chunks)
                || self
                    .iter()
                    .zip(other.iter())
                    .all(|(a, b)| Rc::ptr_eq(a, b) || a == b))
    }
}

impl Eq for Messages {}

impl Messages {
    /// How many.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest.
    pub fn first(&self) -> Option<&Rc<ChatMessage>> {
        self.chunks.first().and_then(|c| c.first())
    }

    /// The newest.
    pub fn last(&self) -> Option<&Rc<ChatMessage>> {
        self.chunks.last().and_then(|c| c.last())
    }

    /// The message at position `i` (0: the oldest).
    pub fn get(&self, i: usize) -> Option<&Rc<ChatMessage>> {
        if i >= self.len {
            return None;
        }
        // Every chunk but the first and last is full; walk from the
        // front for the first, then jump.
        let first_len = self.chunks.first().map_or(0, |c| c.len());
        if i < first_len {
            return self.chunks.first().and_then(|c| c.get(i));
        }
        let rest = i - first_len;
        self.chunks
            .get(1 + rest / CHUNK)
            .and_then(|c| c.get(rest % CHUNK))
    }

    /// All of them, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Rc<ChatMessage>> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Positions `range` (clamped), oldest first.
    pub fn range(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = &Rc<ChatMessage>> + '_ {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        (start..end).filter_map(move |i| self.get(i))
    }

    /// The position of `id`: `Ok` when held, `Err` where it would go.
    pub fn position(&self, id: Snowflake) -> Result<usize, usize> {
        // The chunk that may hold it: the last whose first id is <= id.
        let chunks = &self.chunks;
        let k = chunks.partition_point(|c| c.first().is_some_and(|m| m.id <= id));
        if k == 0 {
            return Err(0);
        }
        let base: usize = self.offset_of_chunk(k - 1);
        match chunks[k - 1].binary_search_by_key(&id, |m| m.id) {
            Ok(i) => Ok(base + i),
            Err(i) => Err(base + i),
        }
    }

    fn offset_of_chunk(&self, k: usize) -> usize {
        match k {
            0 => 0,
            k => self.chunks.first().map_or(0, |c| c.len()) + (k - 1) * CHUNK,
        }
    }

    /// How many messages are newer than `id`.
    pub fn count_after(&self, id: Snowflake) -> usize {
        let at = match self.position(id) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        self.len - at
    }

    /// Whether both share the same storage (nothing was copied).
    pub fn ptr_eq(&self, other: &Messages) -> bool {
        Rc::ptr_eq(&self.chunks, &other.chunks)
    }

    /// Whether message `i` of both is the same allocation.
    pub fn shares_message(&self, other: &Messages, i: usize) -> bool {
        match (self.get(i), other.get(i)) {
            (Some(a), Some(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn from_sorted(all: Vec<Rc<ChatMessage>>) -> Messages {
        let len = all.len();
        let mut chunks = Vec::with_capacity(len / CHUNK + 1);
        let mut it = all.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(Rc::new(it.by_ref().take(CHUNK).collect::<Vec<_>>()));
        }
        Messages {
            chunks: Rc::new(chunks),
            len,
        }
    }

    /// Merges `page`: sorted by id, each id once, at most `limit` kept
    /// (the oldest go). Appending newer messages (the usual broadcast)
    /// copies only the last chunk; prepending an older page rebuilds only
    /// the first; anything else rebuilds the lot.
    pub fn merge(&mut self, page: Vec<ChatMessage>, limit: usize) -> Merged {
        let before = self.len;
        let sorted = page.windows(2).all(|w| w[0].id < w[1].id);
        let appends = sorted
            && match (self.last(), page.first()) {
                (Some(last), Some(first)) => first.id > last.id,
                _ => true,
            };
        let prepends = sorted
            && match (self.first(), page.last()) {
                (Some(oldest), Some(newest)) => newest.id < oldest.id,
                _ => true,
            };
        if page.is_empty() {
        } else if appends {
            self.append(page);
        } else if prepends {
            self.prepend(page);
        } else {
            // The page sorted (it is short), then merged with the held
            // messages (sorted): a held message comes before a copy of it
            // from the page, so it is the one kept.
            let mut page: Vec<Rc<ChatMessage>> = page.into_iter().map(Rc::new).collect();
            crate::small::sort_by(&mut page, |a, b| a.id < b.id);
            let mut all = Vec::with_capacity(self.len + page.len());
            let mut page = page.into_iter().peekable();
            for m in self.iter() {
                while let Some(p) = page.next_if(|p| p.id < m.id) {
                    all.push(p);
                }
                all.push(m.clone());
            }
            all.extend(page);
            all.dedup_by_key(|m| m.id);
            *self = Messages::from_sorted(all);
        }
        let added = self.len.saturating_sub(before);
        let dropped = self.len.saturating_sub(limit);
        self.drop_oldest(dropped);
        Merged { added, dropped }
    }

    fn append(&mut self, page: Vec<ChatMessage>) {
        self.len += page.len();
        let chunks = Rc::make_mut(&mut self.chunks);
        let mut page = page.into_iter().map(Rc::new).peekable();
        // Fill the last chunk (the only one that is ever partly full at
        // the end), then add full ones.
        if let Some(last) = chunks.last_mut()
            && last.len() < CHUNK
        {
            let room = CHUNK - last.len();
            Rc::make_mut(last).extend(page.by_ref().take(room));
        }
        while page.peek().is_some() {
            chunks.push(Rc::new(page.by_ref().take(CHUNK).collect()));
        }
    }

    fn prepend(&mut self, page: Vec<ChatMessage>) {
        self.len += page.len();
        let chunks = Rc::make_mut(&mut self.chunks);
        let mut head: Vec<Rc<ChatMessage>> = page.into_iter().map(Rc::new).collect();
        if let Some(first) = chunks.first() {
            head.extend(first.iter().cloned());
        }
        let rest: Vec<Chunk> = chunks.drain(..).skip(1).collect();
        // Every chunk but the first and the last is full: with chunks
        // after it, the head is cut short at its front; alone, at its end.
        let short = if rest.is_empty() {
            0
        } else {
            head.len() % CHUNK
        };
        let mut it = head.into_iter().peekable();
        if short > 0 {
            chunks.push(Rc::new(it.by_ref().take(short).collect()));
        }
        while it.peek().is_some() {
            chunks.push(Rc::new(it.by_ref().take(CHUNK).collect()));
        }
        chunks.extend(rest);
    }

    fn drop_oldest(&mut self, mut n: usize) {
        if n == 0 {
            return;
        }
        self.len -= n.min(self.len);
        let chunks = Rc::make_mut(&mut self.chunks);
        let whole = chunks.iter().take_while(|c| {
            if c.len() <= n {
                n -= c.len();
                true
            } else {
                false
            }
        });
        let whole = whole.count();
        chunks.drain(..whole);
        if n > 0
            && let Some(first) = chunks.first_mut()
        {
            Rc::make_mut(first).drain(..n);
        }
        if chunks.first().is_some_and(|c| c.is_empty()) {
            chunks.remove(0);
        }
    }

    /// Whether the layout invariant holds: every chunk but the first is
    /// full except the last, none empty, lengths add up, ids strictly
    /// increase. For tests.
    pub fn check(&self) -> bool {
        let n = self.chunks.len();
        let shape = self.chunks.iter().enumerate().all(|(k, c)| {
            !c.is_empty() && (k == 0 || k == n - 1 || c.len() == CHUNK) && c.len() <= CHUNK
        });
        let total: usize = self.chunks.iter().map(|c| c.len()).sum();
        let v: Vec<_> = self.iter().map(|m| m.id).collect();
        shape && total == self.len && v.windows(2).all(|w| w[0] < w[1])
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(id: u64) -> ChatMessage {
        ChatMessage {
            id: Snowflake(id),
            channel: "c".into(),
            nick: "n".into(),
            content: format!("m{id}"),
        }
    }

    fn ids(m: &Messages) -> Vec<u64> {
        m.iter().map(|m| m.id.0).collect()
    }

    #[test]
    fn appends_prepends_and_drops_keep_the_shape() {
        let mut m = Messages::default();
        m.merge((1_001..=1_300).map(msg).collect(), usize::MAX);
        assert!(m.check());
        for id in 1_301..=1_900 {
            m.merge(vec![msg(id)], usize::MAX);
        }
        assert!(m.check());
        m.merge((901..=1_000).map(msg).collect(), usize::MAX);
        assert!(m.check());
        assert_eq!(ids(&m), (901..=1_900).collect::<Vec<_>>());
        assert_eq!(m.position(Snowflake(901)), Ok(0));
        assert_eq!(m.position(Snowflake(1_900)), Ok(999));
        assert_eq!(m.position(Snowflake(5)), Err(0));
        assert_eq!(m.position(Snowflake(5_000)), Err(1_000));
        assert_eq!(m.count_after(Snowflake(1_850)), 50);
        let merged = m.merge(vec![msg(1_901)], 1_000);
        assert_eq!(
            merged,
            Merged {
                added: 1,
                dropped: 1
            }
        );
        assert!(m.check());
        assert_eq!(m.first().map(|m| m.id.0), Some(902));
        assert_eq!(m.get(10).map(|m| m.id.0), Some(912));
    }

    #[test]
    fn an_append_copies_one_chunk_at_most() {
        let mut old = Messages::default();
        old.merge((1..=20_000).map(msg).collect(), usize::MAX);
        let mut new = old.clone();
        new.merge(vec![msg(20_001)], usize::MAX);
        assert!(!new.ptr_eq(&old));
        let shared = old
            .chunks
            .iter()
            .zip(new.chunks.iter())
            .filter(|(a, b)| Rc::ptr_eq(a, b))
            .count();
        assert!(
            shared >= old.chunks.len() - 1,
            "{shared} of {}",
            old.chunks.len()
        );
        assert!((0..old.len()).all(|i| new.shares_message(&old, i)));
    }

    proptest! {
        #[test]
        fn merges_match_a_sorted_set(
            pages in proptest::collection::vec(
                proptest::collection::vec(0u64..3_000, 0..400), 1..12),
            limit in 1usize..2_500,
        ) {
            let mut m = Messages::default();
            let mut model = std::collections::BTreeSet::new();
            for page in pages {
                let mut page = page;
                // Pages come sorted from the server; broadcasts one by one.
                page.sort_unstable();
                page.dedup();
                for id in &page {
                    model.insert(*id);
                }
                let before = m.len();
                let r = m.merge(page.into_iter().map(msg).collect(), limit);
                while model.len() > limit {
                    model.pop_first();
                }
                prop_assert!(m.check());
                prop_assert_eq!(ids(&m), model.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(before + r.added - r.dropped, m.len());
                for (i, id) in model.iter().enumerate().step_by(37) {
                    prop_assert_eq!(m.position(Snowflake(*id)), Ok(i));
                    prop_assert_eq!(m.get(i).map(|x| x.id.0), Some(*id));
                }
            }
        }
    }
}
