//! Which adapt lane (worker) a file generation's chunks go to.
//!
//! All the chunks of one generation go to the same lane: that keeps its records in order and
//! its joining state (multiline events, container pieces) on one worker. Generations are dealt
//! to the lanes in turn as they send their first chunk, so that two busy files are parsed on
//! two workers; a lane taken from the generation's id (a hash) put both on the same worker half
//! the time with two workers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::chunk::Chunk;

/// Past this many remembered generations (or twice what the last pruning kept), those no
/// longer tailed are forgotten.
const PRUNE_AT: usize = 1024;

pub struct Lanes {
    senders: Vec<Sender<Arc<Chunk>>>,
    /// The lane of every generation that sent a chunk and may send more.
    of: HashMap<u64, usize>,
    /// The lane the next new generation gets.
    next: usize,
    /// `of` is pruned when it grows past this: twice what the last pruning kept (at least
    /// `PRUNE_AT`), so a node tailing thousands of files does not prune at every chunk.
    prune_at: usize,
}

impl Lanes {
    pub fn new(senders: Vec<Sender<Arc<Chunk>>>) -> Lanes {
        Lanes {
            senders,
            of: HashMap::new(),
            next: 0,
            prune_at: PRUNE_AT,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// The lane of generation `uid` (`senders` must not be empty); a new one gets the next
    /// lane in turn.
    pub fn of(&mut self, uid: u64) -> &Sender<Arc<Chunk>> {
        let n = self.senders.len();
        let next = &mut self.next;
        let lane = *self.of.entry(uid).or_insert_with(|| {
            let lane = *next % n;
            *next = next.wrapping_add(1);
            lane
        });
        &self.senders[lane]
    }

    /// Whether enough generations are remembered that it is worth forgetting the gone ones.
    pub fn wants_pruning(&self) -> bool {
        self.of.len() > self.prune_at
    }

    /// Forgets every generation not in `live` (open or parked files).
    pub fn keep_only(&mut self, live: &HashSet<u64>) {
        self.of.retain(|uid, _| live.contains(uid));
        self.prune_at = (2 * self.of.len()).max(PRUNE_AT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_dealt_in_turn_and_keep_their_lane() {
        let (a, _ra) = crossbeam_channel::unbounded();
        let (b, _rb) = crossbeam_channel::unbounded();
        let mut lanes = Lanes::new(vec![a.clone(), b.clone()]);
        // Two ids of the same parity still land on different lanes.
        assert!(lanes.of(10).same_channel(&a));
        assert!(lanes.of(12).same_channel(&b));
        assert!(lanes.of(10).same_channel(&a), "a generation keeps its lane");
        assert!(lanes.of(14).same_channel(&a));
        lanes.keep_only(&HashSet::from([12]));
        assert!(lanes.of(12).same_channel(&b), "a live generation is kept");
        assert_eq!(lanes.of.len(), 1);
    }

    /// With more live generations than `PRUNE_AT`, pruning is not asked for again until the
    /// map has doubled: never at every chunk.
    #[test]
    fn pruning_waits_until_the_map_doubles() {
        let (a, _ra) = crossbeam_channel::unbounded();
        let mut lanes = Lanes::new(vec![a]);
        let live: HashSet<u64> = (0..2 * PRUNE_AT as u64).collect();
        for uid in &live {
            lanes.of(*uid);
        }
        assert!(lanes.wants_pruning());
        lanes.keep_only(&live);
        assert!(
            !lanes.wants_pruning(),
            "all live: nothing to prune until the map doubles"
        );
        for uid in 2 * PRUNE_AT as u64..4 * PRUNE_AT as u64 + 1 {
            lanes.of(uid);
        }
        assert!(lanes.wants_pruning());
    }
}
