//! `sample`: keeps one record in `rate` per key (say, per pod or per message), never dropping
//! `warn` and above unless told (`keep_level`).
//!
//! The counts are per source, shared by the adapt workers behind a lock taken once per batch.
//! Keys come from the logs, so their number is capped: past `MAX_KEYS` the counts start over,
//! which only moves where the next kept record of each key falls.

use std::collections::HashMap;
use std::sync::Mutex;

use super::edit::{retain, KeyOf};
use crate::record::{Level, Records};

/// Keys counted at most; past it the counts start over.
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug)]
pub struct Sample {
    /// Keep 1 in `rate`.
    pub rate: u64,
    /// What to count by; `None`: one count for the source.
    pub key: Option<KeyOf>,
    /// Records at this level or above are always kept; `None`: none are.
    pub keep_level: Option<Level>,
    seen: Mutex<HashMap<String, u64>>,
}

impl Sample {
    pub fn new(rate: u64, key: Option<KeyOf>, keep_level: Option<Level>) -> Sample {
        Sample {
            rate: rate.max(1),
            key,
            keep_level,
            seen: Mutex::default(),
        }
    }

    /// Drops all but one in `rate` of each key; returns how many it dropped.
    pub fn apply(&self, records: &mut Records) -> u64 {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        retain(records, |r| {
            if let (Some(min), Some(l)) = (self.keep_level, r.level) {
                if l >= min {
                    return true;
                }
            }
            let key = self.key.as_ref().and_then(|k| k.read(r)).unwrap_or_default();
            if !seen.contains_key(key.as_ref()) && seen.len() >= MAX_KEYS {
                seen.clear();
            }
            let n = seen.entry(key.into_owned()).or_insert(0);
            *n += 1;
            (*n - 1).is_multiple_of(self.rate)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testing::{context, records, Rec};

    fn batch(levels: &[(Level, &'static str)]) -> Records {
        let recs = levels
            .iter()
            .map(|(l, m)| Rec {
                level: Some(*l),
                message: Some(m),
                ..Default::default()
            })
            .collect();
        std::sync::Arc::try_unwrap(records(context("/l/a.log", "x:", &[], &[]), recs)).unwrap()
    }

    fn messages(r: &Records) -> Vec<String> {
        r.iter(0, r.end_position())
            .map(|x| x.message_text().into_owned())
            .collect()
    }

    #[test]
    fn one_in_n_per_key_and_warnings_always() {
        let s = Sample::new(3, Some(KeyOf::Message), Some(Level::Warn));
        let mut r = batch(&[
            (Level::Info, "a"),
            (Level::Info, "a"),
            (Level::Info, "b"),
            (Level::Info, "a"),
            (Level::Error, "a"),
            (Level::Info, "a"),
        ]);
        assert_eq!(s.apply(&mut r), 2);
        assert_eq!(messages(&r), vec!["a", "b", "a", "a"]);
        let mut next = batch(&[(Level::Info, "a"), (Level::Info, "a"), (Level::Info, "a")]);
        assert_eq!(s.apply(&mut next), 2, "counts go on across batches: the 5th and 6th go");
        assert_eq!(messages(&next), vec!["a"]);
    }

    #[test]
    fn without_keep_level_warnings_are_sampled_too() {
        let s = Sample::new(2, None, None);
        let mut r = batch(&[(Level::Error, "a"), (Level::Error, "b"), (Level::Error, "c")]);
        assert_eq!(s.apply(&mut r), 1);
        assert_eq!(messages(&r), vec!["a", "c"]);
    }
}
