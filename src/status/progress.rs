//! The agent's log of a large backlog draining: every `INTERVAL`, while the files hold more
//! than `LARGE_BACKLOG` bytes not yet read, one line with the bytes behind, the reading rate
//! and the time left at that rate; one line more when it has drained.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::render::{bytes, seconds};
use crate::metrics::Metrics;

pub const INTERVAL: Duration = Duration::from_secs(30);
/// A backlog worth reporting: the default in-flight budget, a few seconds of reading at least.
pub const LARGE_BACKLOG: u64 = 16 << 20;

/// What the last tick saw.
#[derive(Debug)]
pub struct Progress {
    bytes_read: u64,
    at: Instant,
    draining: bool,
}

#[derive(Debug, PartialEq)]
enum Report {
    Draining { behind: u64, rate: f64 },
    Drained,
}

impl Progress {
    pub fn new(metrics: &Metrics) -> Progress {
        Progress {
            bytes_read: metrics.bytes_read.load(Ordering::Relaxed),
            at: Instant::now(),
            draining: false,
        }
    }

    /// Logs the backlog's progress if it is large (call every `INTERVAL`).
    pub fn tick(&mut self, metrics: &Metrics) {
        let behind: u64 = metrics
            .board
            .files()
            .iter()
            .map(|f| match (f.size, f.read_offset) {
                (Some(s), Some(r)) => s.saturating_sub(r),
                _ => 0,
            })
            .sum();
        let report = self.step(behind, metrics.bytes_read.load(Ordering::Relaxed), Instant::now());
        match report {
            Some(Report::Draining { behind, rate }) => {
                let eta = if rate > 0.0 {
                    seconds(behind as f64 / rate)
                } else {
                    "unknown (nothing read lately)".to_owned()
                };
                tracing::info!(
                    bytes_behind = behind,
                    behind = %bytes(behind),
                    rate = %format!("{}/s", bytes(rate as u64)),
                    eta = %eta,
                    "draining a backlog"
                );
            }
            Some(Report::Drained) => tracing::info!("backlog drained"),
            None => {}
        }
    }

    fn step(&mut self, behind: u64, bytes_read: u64, now: Instant) -> Option<Report> {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        let rate = if secs > 0.0 {
            bytes_read.saturating_sub(self.bytes_read) as f64 / secs
        } else {
            0.0
        };
        self.bytes_read = bytes_read;
        self.at = now;
        if behind >= LARGE_BACKLOG {
            self.draining = true;
            Some(Report::Draining { behind, rate })
        } else if std::mem::take(&mut self.draining) {
            Some(Report::Drained)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_backlog_is_reported_until_it_drains() {
        let mut p = Progress::new(&Metrics::default());
        let t0 = p.at;
        assert_eq!(p.step(1 << 20, 0, t0 + INTERVAL), None, "small: nothing");
        let r = p.step(100 << 20, 30 << 20, t0 + 2 * INTERVAL);
        assert_eq!(
            r,
            Some(Report::Draining {
                behind: 100 << 20,
                rate: (1 << 20) as f64
            })
        );
        assert_eq!(p.step(0, 130 << 20, t0 + 3 * INTERVAL), Some(Report::Drained));
        assert_eq!(p.step(0, 130 << 20, t0 + 4 * INTERVAL), None);
    }
}
