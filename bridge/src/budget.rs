//! The memory budget shared by every held session (`--resume-memory`).
//!
//! Each held session charges what its replay ring takes; past the budget,
//! the held sessions with the largest charges are told to end (largest
//! first) until the total fits again. An evicted session's charge leaves the
//! total at once, so the next session over the budget does not evict a
//! second victim for memory the first is about to free.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use metrics::Gauge;
use tokio_util::sync::CancellationToken;

/// The budget and what each held session is charged.
#[derive(Debug)]
pub(crate) struct HeldMemory {
    limit: usize,
    next_id: AtomicU64,
    inner: Mutex<Charges>,
    held_bytes: Gauge,
    /// Sessions held (one per live charge, evicted or not).
    sessions_held: Gauge,
}

#[derive(Debug, Default)]
struct Charges {
    total: usize,
    sessions: HashMap<u64, Charged>,
}

#[derive(Debug)]
struct Charged {
    bytes: usize,
    evict: CancellationToken,
}

impl HeldMemory {
    /// A budget of `limit` bytes for all held sessions together.
    pub fn new(limit: usize, held_bytes: Gauge, sessions_held: Gauge) -> Arc<Self> {
        Arc::new(HeldMemory {
            limit,
            next_id: AtomicU64::new(1),
            inner: Mutex::new(Charges::default()),
            held_bytes,
            sessions_held,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Charges> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes charged by held sessions now.
    #[cfg(test)]
    pub fn total(&self) -> usize {
        self.lock().total
    }

    /// Charges a session that is now held `bytes` (and counts it in
    /// `sessions_held`); both leave when the returned guard is dropped (the
    /// session resumed or ended, its task panicking included).
    pub fn hold(self: &Arc<Self>, bytes: usize) -> HeldCharge {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.sessions_held.increment(1.0);
        let evict = CancellationToken::new();
        let mut c = self.lock();
        c.total = c.total.saturating_add(bytes);
        c.sessions.insert(
            id,
            Charged {
                bytes,
                evict: evict.clone(),
            },
        );
        self.enforce(&mut c);
        HeldCharge {
            budget: self.clone(),
            id,
            evict,
        }
    }

    /// Evicts the largest charges until the total fits.
    fn enforce(&self, c: &mut Charges) {
        while c.total > self.limit {
            let Some((&id, _)) = c.sessions.iter().max_by_key(|(_, s)| s.bytes) else {
                break;
            };
            if let Some(s) = c.sessions.remove(&id) {
                c.total = c.total.saturating_sub(s.bytes);
                s.evict.cancel();
            }
        }
        self.held_bytes.set(c.total as f64);
    }
}

/// One held session's charge against the budget (released when dropped).
#[derive(Debug)]
pub(crate) struct HeldCharge {
    budget: Arc<HeldMemory>,
    id: u64,
    evict: CancellationToken,
}

impl HeldCharge {
    /// The session now takes `bytes`; false if it must end (over the
    /// budget now, or evicted before).
    pub fn set(&self, bytes: usize) -> bool {
        let mut c = self.budget.lock();
        let Some(s) = c.sessions.get_mut(&self.id) else {
            return false;
        };
        let before = std::mem::replace(&mut s.bytes, bytes);
        c.total = c.total.saturating_sub(before).saturating_add(bytes);
        if bytes > before {
            self.budget.enforce(&mut c);
        } else {
            self.budget.held_bytes.set(c.total as f64);
        }
        !self.evict.is_cancelled()
    }

    /// Cancelled when the session must end to bring the total within the
    /// budget.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evict
    }
}

impl Drop for HeldCharge {
    fn drop(&mut self) {
        self.budget.sessions_held.decrement(1.0);
        let mut c = self.budget.lock();
        if let Some(s) = c.sessions.remove(&self.id) {
            c.total = c.total.saturating_sub(s.bytes);
            self.budget.held_bytes.set(c.total as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> Arc<HeldMemory> {
        HeldMemory::new(limit, Gauge::noop(), Gauge::noop())
    }

    #[test]
    fn the_largest_held_sessions_are_evicted_first() {
        let b = budget(1000);
        let small = b.hold(100);
        let big = b.hold(500);
        let mid = b.hold(300);
        assert_eq!(b.total(), 900);
        assert!(small.set(150), "within the budget");
        assert!(!big.evicted().is_cancelled());
        // 150 + 500 + 400 = 1050 > 1000: the largest (500) goes.
        assert!(mid.set(400));
        assert!(big.evicted().is_cancelled());
        assert!(!big.set(500), "an evicted charge stays evicted");
        assert_eq!(b.total(), 550);
        // Growing past the budget alone evicts the grower itself.
        assert!(!mid.set(2000));
        assert!(!small.evicted().is_cancelled());
        assert_eq!(b.total(), 150);
        drop(small);
        drop(big);
        assert_eq!(b.total(), 0);
    }

    #[test]
    fn a_dropped_charge_leaves_the_total() {
        let b = budget(1000);
        let a = b.hold(400);
        let c = b.hold(400);
        drop(a);
        assert_eq!(b.total(), 400);
        assert!(c.set(900), "room freed by the dropped charge");
        assert!(!c.evicted().is_cancelled());
    }
}
