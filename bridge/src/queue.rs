//! A small multi-producer, single-consumer queue for the per-session
//! channels (a WebSocket's commands to its session, the session's frames to
//! its WebSocket writer, the embedded server's frames to a connection).
//!
//! tokio's `mpsc` allocates a block of 32 slots with every channel and keeps
//! it for the channel's life (1 to 3 KiB each, with the shared state), which
//! at 10 000 idle sessions is most of what they cost. This queue is a
//! `VecDeque` behind a mutex that grows on demand and gives its storage back
//! once drained: an idle channel is its shared state alone (about 100 bytes).
//! Every lock is held for a push or a pop, never across an `await`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// A drained queue that grew beyond this many items gives its storage back
/// (below it, a busy queue keeps its storage from burst to burst).
const KEEP: usize = 32;

struct Inner<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver_gone: bool,
    waker: Option<Waker>,
    /// Senders waiting for room (see [`Sender::send`]); woken all at once
    /// when an item is taken from a full queue, or the receiver is gone.
    blocked: Vec<Waker>,
}

struct Shared<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // Every critical section is a push or a pop: a panic in one cannot
        // leave the queue half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue of at most `capacity` items (`usize::MAX`: unbounded).
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            items: VecDeque::new(),
            senders: 1,
            receiver_gone: false,
            waker: None,
            blocked: Vec::new(),
        }),
        capacity,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// Why [`Sender::try_send`] gave the item back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError<T> {
    /// The queue holds its capacity.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// The sending side; clone it for more senders.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("queue::Sender").finish_non_exhaustive()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.senders -= 1;
        let waker = if inner.senders == 0 {
            inner.waker.take()
        } else {
            None
        };
        drop(inner);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or its receiver is gone.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut inner = self.shared.lock();
        if inner.receiver_gone {
            return Err(TrySendError::Closed(item));
        }
        if inner.items.len() >= self.shared.capacity {
            return Err(TrySendError::Full(item));
        }
        inner.items.push_back(item);
        let waker = inner.waker.take();
        drop(inner);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queues `item`, waiting while the queue is full; gives it back if
    /// the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        let mut item = Some(item);
        std::future::poll_fn(|cx| {
            let Some(value) = item.take() else {
                return Poll::Ready(Ok(()));
            };
            match self.try_send(value) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(TrySendError::Closed(value)) => Poll::Ready(Err(value)),
                Err(TrySendError::Full(value)) => {
                    let mut inner = self.shared.lock();
                    if inner.receiver_gone || inner.items.len() < self.shared.capacity {
                        // Room was made (or the end came) since: try again.
                        cx.waker().wake_by_ref();
                    } else if !inner.blocked.iter().any(|w| w.will_wake(cx.waker())) {
                        inner.blocked.push(cx.waker().clone());
                    }
                    item = Some(value);
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// The receiving side.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("queue::Receiver").finish_non_exhaustive()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.receiver_gone = true;
        inner.waker = None;
        let items = std::mem::take(&mut inner.items);
        let blocked = std::mem::take(&mut inner.blocked);
        drop(inner);
        drop(items);
        blocked.into_iter().for_each(Waker::wake);
    }
}

impl<T> Receiver<T> {
    fn pop(inner: &mut Inner<T>, capacity: usize) -> Option<T> {
        let was_full = inner.items.len() >= capacity;
        let item = inner.items.pop_front()?;
        if inner.items.is_empty() && inner.items.capacity() > KEEP {
            inner.items = VecDeque::new();
        }
        if was_full {
            std::mem::take(&mut inner.blocked)
                .into_iter()
                .for_each(Waker::wake);
        }
        Some(item)
    }

    /// The next item; `Ready(None)` once every sender is gone and the queue
    /// is drained.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut inner = self.shared.lock();
        if let Some(item) = Self::pop(&mut inner, self.shared.capacity) {
            return Poll::Ready(Some(item));
        }
        if inner.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut inner.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits for the next item; `None` once every sender is gone and the
    /// queue is drained.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        Self::pop(&mut self.shared.lock(), self.shared.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_and_the_end_is_seen() {
        let (tx, mut rx) = channel::<u32>(usize::MAX);
        let tx2 = tx.clone();
        for i in 0..100 {
            assert_eq!(tx.try_send(i), Ok(()));
        }
        let task = tokio::spawn(async move {
            tx2.try_send(100).unwrap_or_else(|_| panic!("open"));
        });
        for i in 0..=100 {
            assert_eq!(rx.recv().await, Some(i));
        }
        task.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rx.try_recv(), None);
        assert!(
            rx.shared.lock().items.capacity() <= KEEP,
            "a drained queue gives its storage back"
        );
        drop(tx);
        assert_eq!(rx.recv().await, None, "every sender gone");
    }

    #[tokio::test]
    async fn a_sender_waits_for_room_and_learns_of_the_end() {
        let (tx, mut rx) = channel::<u32>(1);
        assert_eq!(tx.try_send(1), Ok(()));
        let tx2 = tx.clone();
        let waiting = tokio::spawn(async move { tx2.send(2).await });
        tokio::task::yield_now().await;
        assert_eq!(rx.recv().await, Some(1), "taking one makes room");
        assert_eq!(waiting.await.unwrap_or_else(|e| panic!("{e}")), Ok(()));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(tx.try_send(3), Ok(()));
        let tx3 = tx.clone();
        let blocked = tokio::spawn(async move { tx3.send(4).await });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(
            blocked.await.unwrap_or_else(|e| panic!("{e}")),
            Err(4),
            "the receiver is gone: the item comes back"
        );
    }

    #[test]
    fn full_and_closed() {
        let (tx, rx) = channel::<u8>(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        drop(rx);
        assert_eq!(tx.try_send(4), Err(TrySendError::Closed(4)));
    }
}
