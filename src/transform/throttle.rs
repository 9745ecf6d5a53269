//! `throttle`: at most `rate` records per second per key, so one noisy pod or message cannot
//! flood the collector; what it drops is counted.
//!
//! Seconds are whole seconds of the agent's clock (a fixed window), counted per source and
//! shared by the adapt workers behind a lock taken once per batch. Keys come from the logs, so
//! their number is capped: past `MAX_KEYS` the windows start over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::edit::{retain, KeyOf};
use super::sample::MAX_KEYS;
use crate::record::Records;

#[derive(Debug)]
pub struct Throttle {
    /// Records per second per key.
    pub rate: u64,
    pub key: Option<KeyOf>,
    start: Instant,
    /// Per key: the second of its window and the records kept in it.
    windows: Mutex<HashMap<String, (u64, u64)>>,
}

impl Throttle {
    pub fn new(rate: u64, key: Option<KeyOf>) -> Throttle {
        Throttle {
            rate,
            key,
            start: Instant::now(),
            windows: Mutex::default(),
        }
    }

    /// Drops what is over the rate; returns how many.
    pub fn apply(&self, records: &mut Records) -> u64 {
        self.apply_at(records, self.start.elapsed().as_secs())
    }

    fn apply_at(&self, records: &mut Records, second: u64) -> u64 {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        retain(records, |r| {
            let key = self.key.as_ref().and_then(|k| k.read(r)).unwrap_or_default();
            if !windows.contains_key(key.as_ref()) && windows.len() >= MAX_KEYS {
                windows.clear();
            }
            let w = windows.entry(key.into_owned()).or_insert((second, 0));
            if w.0 != second {
                *w = (second, 0);
            }
            w.1 += 1;
            w.1 <= self.rate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testing::{context, records, Rec};

    fn batch(msgs: &[&'static str]) -> Records {
        let recs = msgs
            .iter()
            .map(|m| Rec {
                message: Some(m),
                ..Default::default()
            })
            .collect();
        std::sync::Arc::try_unwrap(records(context("/l/a.log", "x:", &[], &[]), recs)).unwrap()
    }

    #[test]
    fn at_most_rate_per_second_per_key() {
        let t = Throttle::new(2, Some(KeyOf::Message));
        let mut r = batch(&["a", "a", "a", "b", "a"]);
        assert_eq!(t.apply_at(&mut r, 7), 2);
        let mut more = batch(&["a", "b", "b"]);
        assert_eq!(t.apply_at(&mut more, 7), 2, "the same second goes on");
        let mut later = batch(&["a", "a", "a"]);
        assert_eq!(t.apply_at(&mut later, 8), 1, "a new second");
    }

    #[test]
    fn a_raw_batch_over_the_rate_becomes_a_table_of_the_kept_lines() {
        let t = Throttle::new(1, None);
        let mut r = crate::record::testing::lines(context("/l/a.log", "x:", &[], &[]), b"one\ntwo\n");
        assert_eq!(t.apply_at(&mut r, 0), 1);
        let left: Vec<String> = r
            .iter(0, r.end_position())
            .map(|x| x.message_text().into_owned())
            .collect();
        assert_eq!(left, vec!["one"]);
        assert_eq!(
            r.mark_at(r.end_position()),
            Some(r.end),
            "the dropped line still moves the checkpoint"
        );
    }
}
