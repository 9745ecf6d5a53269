//! The in-flight byte budget between the tailer and the sinks (`max_inflight_bytes`).
//!
//! The tailer takes a `BudgetGuard` for every chunk it reads; the guard lives inside the chunk,
//! and the chunk lives until every sink has had the batch holding it acknowledged. So the
//! budget counts exactly the bytes memory holds for unacknowledged data, and when a sink stalls
//! the tailer stops reading: the file on disk is the buffer, not RAM.
//!
//! Events being joined in the adapt stage (multiline events, container pieces) are charged
//! here too, and also counted apart (`joining`): they are held by the workers, not by chunks
//! in flight, so a worker ships the oldest of them when they pass their share of the budget
//! (`joining_cap`), and the rest of the budget stays free for reading.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    /// The part of `used` held by events being joined.
    joining: AtomicUsize,
    cap: usize,
    /// A token is offered here whenever bytes are released, so a tailer waiting for room
    /// wakes at once instead of polling. Capacity 1: one pending wake-up is enough.
    freed_tx: Sender<()>,
    freed_rx: Receiver<()>,
}

impl Budget {
    pub fn new(cap: usize) -> Arc<Budget> {
        let (freed_tx, freed_rx) = crossbeam_channel::bounded(1);
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            joining: AtomicUsize::new(0),
            cap,
            freed_tx,
            freed_rx,
        })
    }

    /// Bytes currently held by chunks in flight.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// `max_inflight_bytes`.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Room left under the cap (0 when full).
    pub fn available(&self) -> usize {
        self.cap.saturating_sub(self.used())
    }

    /// Charges `bytes` to the budget. The caller checks `available()` first; a single chunk
    /// may overshoot the cap by at most one read, which keeps the accounting simple.
    pub fn take(self: &Arc<Self>, bytes: usize) -> BudgetGuard {
        self.used.fetch_add(bytes, Ordering::Relaxed);
        BudgetGuard {
            budget: Arc::clone(self),
            bytes,
            joining: false,
        }
    }

    /// Charges `bytes` held by an event being joined (see the module doc).
    pub fn take_joining(self: &Arc<Self>, bytes: usize) -> BudgetGuard {
        self.joining.fetch_add(bytes, Ordering::Relaxed);
        self.used.fetch_add(bytes, Ordering::Relaxed);
        BudgetGuard {
            budget: Arc::clone(self),
            bytes,
            joining: true,
        }
    }

    /// Bytes held by events being joined, in every adapt worker.
    pub fn joining(&self) -> usize {
        self.joining.load(Ordering::Relaxed)
    }

    /// The share of the budget events being joined may hold: a quarter, so that with partial
    /// lines at their half (`tail/read.rs`) a quarter is always left for reading.
    pub fn joining_cap(&self) -> usize {
        self.cap / 4
    }

    /// The channel that receives a token when bytes are released (for `select!`).
    pub fn freed(&self) -> &Receiver<()> {
        &self.freed_rx
    }

    /// Blocks until some bytes are released or `timeout` passes.
    pub fn wait_freed(&self, timeout: Duration) {
        let _ = self.freed_rx.recv_timeout(timeout);
    }
}

/// Bytes charged to the budget; released on drop.
#[derive(Debug)]
pub struct BudgetGuard {
    budget: Arc<Budget>,
    bytes: usize,
    /// Also counted in `Budget::joining`.
    joining: bool,
}

impl BudgetGuard {
    /// The bytes this guard holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
        if self.joining {
            self.budget.joining.fetch_sub(self.bytes, Ordering::Relaxed);
        }
        let _ = self.budget.freed_tx.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_releases_on_drop_and_wakes() {
        let b = Budget::new(100);
        let g = b.take(60);
        assert_eq!(b.available(), 40);
        while b.freed().try_recv().is_ok() {}
        drop(g);
        assert_eq!(b.used(), 0);
        assert!(b.freed().try_recv().is_ok());
    }

    #[test]
    fn joining_is_part_of_used_and_counted_apart() {
        let b = Budget::new(400);
        let t = b.take(10);
        let j = b.take_joining(30);
        assert_eq!((b.used(), b.joining(), b.joining_cap()), (40, 30, 100));
        drop(j);
        assert_eq!((b.used(), b.joining()), (10, 0));
        drop(t);
        assert_eq!(b.used(), 0);
    }
}
