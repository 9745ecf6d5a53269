//! One NDJSON rendering of a batch for every sink that writes it (`record::Rendering`): made
//! by the adapt worker for parsed records (`Encoder::prerender`), or by the first of several
//! NDJSON sinks of a source for `raw` lines, and copied from by each sink in runs of whole
//! records that fit its batch.

use std::sync::Arc;

use super::{Encoder, Limits};
use crate::budget::Budget;
use crate::config::Encoding;
use crate::record::{Body, Buffers, Records, Rendering};

/// Sources whose NDJSON several sinks write: the same text, since an NDJSON record depends on
/// nothing but the record. For those, the first sink to reach a batch renders all of it into
/// `Records::rendering` and every sink copies runs of it, so a second sink costs a copy, not
/// a second encoding.
#[derive(Clone)]
pub struct Shared {
    /// Indexed by source.
    pub sources: Arc<[bool]>,
    /// Renderings are charged to it, like the batch they belong to.
    pub budget: Arc<Budget>,
    /// Where renderings take their byte buffers from and give them back to.
    pub buffers: Arc<Buffers>,
}

impl Encoder {
    /// Where a rendering of `records` gets its memory, if they come from a shared source.
    pub(super) fn shares(&self, records: &Records) -> Option<Shared> {
        let s = self.shared.as_ref()?;
        let source = records.context.file.source;
        s.sources.get(source).copied().unwrap_or(false).then(|| s.clone())
    }

    /// For an adapt worker (`adapt::stage::Prerender`): the rendering of a batch of parsed
    /// records (a `Table`) of a source in `shared.sources`. Parsing leaves a table's text to
    /// escape and its times to format, about half of a structured record's cost; done here it
    /// runs on the worker that owns the file, in parallel with other files. Batches of `raw`
    /// lines are left to the sinks: their encoding is the copy itself, and a sink writes it
    /// straight into its batch.
    pub fn prerender(&mut self, records: &Records) -> Option<Rendering> {
        if self.encoding != Encoding::Ndjson || !matches!(records.body, Body::Table(_)) {
            return None;
        }
        let shared = self.shares(records)?;
        Some(self.render(records, &shared))
    }

    /// All of `records` as NDJSON, with where each record ends.
    pub(super) fn render(&mut self, records: &Records, shared: &Shared) -> Rendering {
        let all = Limits {
            max_events: usize::MAX,
            max_bytes: usize::MAX,
        };
        let mut r = Rendering {
            bytes: shared.buffers.take(),
            // A table knows its record count; raw lines are not counted for this.
            ends: match &records.body {
                Body::Table(t) => Vec::with_capacity(t.records.len()),
                Body::Lines { .. } => Vec::new(),
            },
            budget: None,
            pool: Some(Arc::clone(&shared.buffers)),
            shape: 0,
        };
        // NDJSON of raw lines is about three times their size, of parsed lines about twice.
        r.bytes.reserve(records.data().len() * 3 + 4096);
        r.shape = self.shape.id;
        self.ndjson(records, 0, &mut r.bytes, all, Some(&mut r.ends));
        r.budget = Some(shared.budget.take(r.heap_bytes()));
        r
    }
}

/// `encode` from a batch's rendering: the whole records from position `from` that fit the
/// limits, copied as one run.
pub(super) fn copy_rendered(r: &Rendering, from: usize, out: &mut Vec<u8>, limits: Limits) -> (usize, usize) {
    // Records before `from` are those whose position-after is at most `from`.
    let first = r.ends.partition_point(|&(pos, _)| pos <= from);
    let start = if first == 0 { 0 } else { r.ends[first - 1].1 };
    let base = out.len();
    let (mut k, mut end) = (first, start);
    while k < r.ends.len() && !limits.reached(k - first, base + (end - start)) {
        end = r.ends[k].1;
        k += 1;
    }
    out.extend_from_slice(&r.bytes[start..end]);
    let pos = if k == first { from } else { r.ends[k - 1].0 };
    (pos, k - first)
}
