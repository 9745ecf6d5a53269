//! The transform stage: where records are shaped after adapt and before the sinks — filters,
//! field edits, redaction, sampling, throttling. It has no transforms yet; this is the seam
//! they plug into, so that the place and its contract are settled:
//!
//! - it runs on the adapt worker that made the records, right after them (`adapt::stage`), on
//!   one file's batch at a time, so per-file order holds and no thread or channel is added;
//! - it may drop records or change them, but never reorders them across batches;
//! - a dropped record still moves the checkpoint (its commit mark stays with the batch), and
//!   it is counted with the reason, never lost silently.

use crate::record::Records;

/// The transforms of the pipeline, in order. Empty for now.
#[derive(Debug, Default, Clone)]
pub struct Transforms {}

impl Transforms {
    /// Applies every transform to `records`, in order.
    pub fn apply(&self, _records: &mut Records) {}
}
