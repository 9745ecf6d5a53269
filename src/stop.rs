//! The hard stop: what cuts a graceful shutdown short when `shutdown_timeout` passes.
//!
//! Every thread that can wait — for a full queue, a retry's backoff, a request in flight —
//! waits on the stop as well, so it wakes the moment the stop fires instead of at the end of a
//! poll interval: a crossbeam channel that is disconnected when it fires (for `select!` and
//! `recv_timeout` in the threads), a tokio `watch` for the HTTP tasks, and a flag for the
//! cheap check inside loops that never block.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// Fires the stop. One per pipeline.
#[derive(Debug)]
pub struct Trigger {
    /// Dropped when the stop fires, which disconnects every `HardStop::channel`.
    tx: Mutex<Option<Sender<()>>>,
    flag: Arc<AtomicBool>,
    watch: tokio::sync::watch::Sender<bool>,
}

/// Waits for the stop; cheap to clone, one per thread or task.
#[derive(Debug, Clone)]
pub struct HardStop {
    rx: Receiver<()>,
    flag: Arc<AtomicBool>,
    watch: tokio::sync::watch::Receiver<bool>,
}

/// A trigger and the stop it fires.
pub fn hard_stop() -> (Trigger, HardStop) {
    // Nothing is ever sent: the channel only carries its disconnection.
    let (tx, rx) = crossbeam_channel::bounded(0);
    let flag = Arc::new(AtomicBool::new(false));
    let (watch_tx, watch_rx) = tokio::sync::watch::channel(false);
    (
        Trigger {
            tx: Mutex::new(Some(tx)),
            flag: Arc::clone(&flag),
            watch: watch_tx,
        },
        HardStop {
            rx,
            flag,
            watch: watch_rx,
        },
    )
}

impl Trigger {
    /// Fires the stop; every waiter wakes. Firing twice is harmless.
    pub fn fire(&self) {
        self.flag.store(true, Ordering::Relaxed);
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        self.watch.send_replace(true);
    }
}

impl HardStop {
    /// Whether the stop has fired.
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// The channel that is disconnected when the stop fires, for `select!`.
    pub fn channel(&self) -> &Receiver<()> {
        &self.rx
    }

    /// Sleeps for `wait` unless the stop fires first; true if it did.
    pub fn sleep(&self, wait: Duration) -> bool {
        !matches!(self.rx.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
    }

    /// Resolves when the stop fires.
    pub async fn stopped(&self) {
        let mut w = self.watch.clone();
        let _ = w.wait_for(|fired| *fired).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn sleepers_and_tasks_wake_when_it_fires() {
        let (trigger, stop) = hard_stop();
        assert!(!stop.is_set());
        assert!(!stop.sleep(Duration::from_millis(1)));
        let sleeper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                (stop.sleep(Duration::from_secs(60)), t.elapsed())
            })
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let task = {
            let stop = stop.clone();
            rt.spawn(async move { stop.stopped().await })
        };
        std::thread::sleep(Duration::from_millis(20));
        trigger.fire();
        let (woke, after) = sleeper.join().unwrap();
        assert!(woke && after < Duration::from_secs(10), "{after:?}");
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await })
            .expect("the task woke")
            .unwrap();
        assert!(stop.is_set());
        assert!(stop.channel().recv().is_err(), "disconnected");
        trigger.fire();
    }
}
