//! When the checkpoint file is written: the cadence (the shortest gap, the steady rate and its
//! burst, the fsync period) and the writer's token bucket that keeps to it. Apart from
//! `checkpoint.rs` because it is policy, not state: what a write costs and how often one may
//! be made.

use std::time::{Duration, Instant};

/// When the checkpoint is written.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// The shortest gap between two writes while acknowledgements keep coming; the first one
    /// after a quiet spell is written at once. Grows with the cost of a write (ten times it),
    /// so a huge checkpoint cannot eat the CPU.
    pub coalesce: Duration,
    /// Writes per second while acknowledgements keep coming, on average: a steady stream is
    /// written at this rate (an overwrite of the in-place copy, a copy into the page cache; a
    /// replacement of `checkpoints.json` at most every `json`), while
    /// a burst after a quiet spell (a collector that just came back) is written every
    /// `coalesce`, up to `burst` writes. 50 a second: what a `kill -9` sends again is about
    /// 20 ms of traffic (at 20 a second, 1.0–1.75 % of the lines in `durability::kill9_twice…`,
    /// at 50, 0.25–1 %; a steady 10 MB/s cost the same share of a core either way, within the
    /// machine's noise).
    pub rate: f64,
    pub burst: f64,
    /// How often the written state is fsynced (what a power cut may cost).
    pub sync: Duration,
    /// `checkpoints.json` is replaced at least this often while the in-place copy, written at
    /// every write, is ahead of it (`inplace.rs`).
    pub json: Duration,
    /// How often a failing write is tried again.
    pub retry: Duration,
}

impl Default for Cadence {
    fn default() -> Cadence {
        Cadence {
            coalesce: Duration::from_millis(5),
            rate: 50.0,
            burst: 8.0,
            sync: Duration::from_secs(5),
            json: Duration::from_secs(1),
            retry: Duration::from_secs(1),
        }
    }
}

/// Where the writer stands: when it last wrote and synced, whether writes fail.
pub(super) struct Writes {
    pub(super) cadence: Cadence,
    pub(super) gap: Duration,
    pub(super) last_write: Instant,
    pub(super) last_sync: Instant,
    /// Written since the last fsync.
    pub(super) unsynced: bool,
    pub(super) failing: bool,
    /// Garbage is collected once per `IDLE_TICK`, not at every message.
    pub(super) last_gc: Instant,
    /// A file registered since the last write must be written by then, whatever the bucket
    /// and the gap say.
    pub(super) register_due: Option<Instant>,
    /// Writes that may be made now (a token bucket of `rate` and `burst`), as of `credited`.
    pub(super) credit: f64,
    pub(super) credited: Instant,
}

impl Writes {
    /// The earliest moment the next write may be made.
    pub(super) fn next_write(&self) -> Instant {
        let after_gap = self.last_write + self.gap;
        if self.credit >= 1.0 {
            return after_gap;
        }
        let wait = Duration::from_secs_f64((1.0 - self.credit) / self.cadence.rate.max(0.001));
        after_gap.max(self.credited + wait)
    }

    pub(super) fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.credited).as_secs_f64() * self.cadence.rate;
        self.credit = (self.credit + earned).min(self.cadence.burst);
        self.credited = now;
    }
}

/// A write's CPU cost, estimated from its size (serializing and copying the JSON, about 5 ns
/// a byte in a release build): a gap derived from it, unlike one from the measured time, does
/// not stretch when the disk is slow for a moment.
pub(super) const COST_PER_BYTE: Duration = Duration::from_nanos(5);
/// The gap between writes never grows past this, however large the checkpoint.
pub(super) const MAX_GAP: Duration = Duration::from_secs(1);
