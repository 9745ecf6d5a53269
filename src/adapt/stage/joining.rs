//! Events being joined (multiline events, `cri`/`docker` pieces waiting for their last piece)
//! count against `max_inflight_bytes`: each file's assembler is charged for what it holds
//! after every chunk, and when the events being joined in all workers hold more than their
//! share of the budget (`Budget::joining_cap`), the worker that just added to them ships its
//! oldest as they stand — a multiline event marked `truncated` (its continuation lines that
//! follow arrive as its `continuation`), container pieces marked `partial` — until they hold
//! less. Memory stays bounded, nothing is dropped.
//!
//! Only the worker that grew the total cuts: the others' events grow only when they take a
//! chunk, and they look at the total then. So the total passes the share by at most one
//! chunk's worth per worker.

use std::sync::Arc;
use std::time::Instant;

use super::{charge, count_event, Counts, Worker};
use crate::adapt::assemble::{self, Assembler};
use crate::adapt::table::Builder;
use crate::metrics::add;
use crate::record::{Body, Commit, Records};

impl Worker {
    /// Charges what the file `uid`'s events being joined hold now, in place of the earlier
    /// charge, and notes since when they wait.
    pub(super) fn recharge_joining(&mut self, uid: u64) {
        let Some(state) = self.files.get_mut(&uid) else { return };
        let held = state.assembler.as_ref().map_or(0, Assembler::held_bytes);
        state.joining = (held > 0).then(|| self.budget.take_joining(held));
        let pending = state.assembler.as_ref().is_some_and(Assembler::is_pending);
        state.pending_since = match (pending, state.pending_since) {
            (false, _) => None,
            (true, since) => Some(since.unwrap_or_else(Instant::now)),
        };
    }

    /// While the events being joined hold more than their share of the budget, ships this
    /// worker's, oldest first (see the module doc). The batches go out after the chunk's.
    pub fn cut_over_cap(&mut self) -> Vec<Records> {
        let cap = self.budget.joining_cap();
        if self.budget.joining() <= cap {
            return Vec::new();
        }
        let mut waiting: Vec<(Instant, u64)> = self
            .files
            .iter()
            .filter_map(|(uid, f)| Some((f.pending_since?, *uid)))
            .collect();
        waiting.sort_unstable();
        let mut out = Vec::new();
        for (_, uid) in waiting {
            if self.budget.joining() <= cap {
                break;
            }
            add(&self.metrics.joined_events_cut, 1);
            out.extend(self.release(uid, true));
        }
        for r in &mut out {
            self.finish(r);
        }
        out
    }

    /// Takes the file `uid`'s events being joined — `cut` for the memory bound, else flushed
    /// (their timeout, the shutdown) — as one batch whose end lets the checkpoint move past
    /// them. The caller runs `finish` on it.
    pub(super) fn release(&mut self, uid: u64, cut: bool) -> Option<Records> {
        let state = self.files.get_mut(&uid)?;
        let asm = state.assembler.as_mut()?;
        let mut b = Builder::new(&[]);
        let mut counts = Counts::default();
        let mut emit = |ev: assemble::Event<'_, '_>| {
            count_event(&mut counts, &ev);
            b.event(&ev);
        };
        if cut {
            asm.cut(&mut emit);
        } else {
            asm.flush(&mut emit);
        }
        b.commit_from(0, Commit::At(state.consumed));
        let (source, end) = (state.context.file.source, state.consumed);
        let context = Arc::clone(&state.context);
        self.recharge_joining(uid);
        self.count(source, &counts);
        if b.is_empty() {
            return None;
        }
        let body = Body::Table(b.table);
        Some(Records {
            budget: charge(&self.budget, &body),
            context,
            chunk: None,
            body,
            end,
            rendering: Default::default(),
        })
    }
}
