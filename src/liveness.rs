//! Whether the threads that move lines are still turning, for `/healthz`.
//!
//! A thread that is stuck (in a syscall that never returns, a walk that never ends) looks
//! alive to every other check: the process runs, the metrics server answers. So the tailer
//! and each sink thread beat a `Heartbeat` as they go round their loops, and say when they
//! wait for something that is not theirs to do (a file event, freed budget, records, the
//! collector's answers): waiting is not a stall — a collector that is down must not get the
//! agent restarted. A thread busy without a beat for longer than `stall_timeout` is stalled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One thread's progress.
#[derive(Debug)]
pub struct Heartbeat {
    base: Instant,
    /// Milliseconds after `base` of the last beat.
    last_ms: AtomicU64,
    /// Between `wait_for`'s start and end: blocked on another party.
    waiting: AtomicBool,
    /// Set when the thread starts beating; an unstarted (or finished) thread is not judged.
    started: AtomicBool,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            started: AtomicBool::new(false),
        }
    }
}

impl Heartbeat {
    /// The thread made progress.
    pub fn beat(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
        self.started.store(true, Ordering::Relaxed);
    }

    /// Runs `wait`, which blocks on another party (events, records, budget, a collector): the
    /// time it takes is not a stall.
    pub fn wait_for<R>(&self, wait: impl FnOnce() -> R) -> R {
        self.waiting.store(true, Ordering::Relaxed);
        let r = wait();
        self.waiting.store(false, Ordering::Relaxed);
        self.beat();
        r
    }

    /// The thread is done: it is not judged any more.
    pub fn finished(&self) {
        self.started.store(false, Ordering::Relaxed);
    }

    /// How long the thread has been busy without a beat; `None` while it waits, before it
    /// starts and after it finished.
    pub fn busy_for(&self) -> Option<Duration> {
        if !self.started.load(Ordering::Relaxed) || self.waiting.load(Ordering::Relaxed) {
            return None;
        }
        let now = self.base.elapsed().as_millis() as u64;
        Some(Duration::from_millis(
            now.saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_without_a_beat_is_a_stall_waiting_is_not() {
        let h = Heartbeat::default();
        assert_eq!(h.busy_for(), None, "not started");
        h.beat();
        assert!(h.busy_for().is_some_and(|d| d < Duration::from_secs(5)));
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        std::thread::scope(|s| {
            s.spawn(|| h.wait_for(|| rx.recv()));
            let waiting = (0..500).any(|_| {
                std::thread::sleep(Duration::from_millis(2));
                h.busy_for().is_none()
            });
            assert!(waiting, "a thread that waits is not busy");
            tx.send(()).unwrap();
        });
        assert!(h.busy_for().is_some());
        h.finished();
        assert_eq!(h.busy_for(), None);
    }
}
