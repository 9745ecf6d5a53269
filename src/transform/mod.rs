//! The transform stage: where records are shaped after adapt and before the sinks. One file per
//! transform — `filter`, `fields`, `redact` (with its patterns in `presets`), `sample`,
//! `throttle` — and `edit` for what they share (a batch's table, dropping records, reading a
//! record's values). A source's transforms run in config order (`SourceSettings::transforms`).
//!
//! - it runs on the adapt worker that made the records, right after them (`adapt::stage`), on
//!   one file's batch at a time, so per-file order holds and no thread or channel is added;
//! - it may drop records or change them, but never reorders them;
//! - a dropped record still moves the checkpoint (its batch's end mark stays with the batch),
//!   and it is counted with the transform and the reason (`DropCounter`), never lost silently;
//! - a `raw` batch (`Body::Lines`) stays one until a transform actually changes it: a source
//!   without transforms, or a `redact` that finds nothing in a chunk, costs nothing per line.

mod edit;
mod fields;
mod filter;
mod presets;
mod redact;
mod sample;
mod throttle;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub use fields::{FieldEdits, FieldsError};
pub use filter::{Condition, ConditionError, Filter};
pub use presets::PRESET_NAMES;
pub use redact::{Redact, RedactError, Replace};
pub use sample::Sample;
pub use throttle::Throttle;

pub use edit::KeyOf;

use crate::metrics::{add, DropCounter};
use crate::record::Records;

/// What one transform does.
#[derive(Debug)]
pub enum Kind {
    Filter(Filter),
    Fields(FieldEdits),
    Redact(Redact),
    Sample(Sample),
    Throttle(Throttle),
}

impl Kind {
    /// The reason its drops are counted under (`fields` and `redact` drop nothing).
    fn reason(&self) -> &'static str {
        match self {
            Kind::Filter(_) => "filtered",
            Kind::Fields(_) | Kind::Redact(_) => "none",
            Kind::Sample(_) => "sampled",
            Kind::Throttle(_) => "throttled",
        }
    }

    /// Its `type` in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Filter(_) => "filter",
            Kind::Fields(_) => "fields",
            Kind::Redact(_) => "redact",
            Kind::Sample(_) => "sample",
            Kind::Throttle(_) => "throttle",
        }
    }

    fn drops(&self) -> bool {
        !matches!(self, Kind::Fields(_) | Kind::Redact(_))
    }
}

/// One transform of a source: its name (the metric's `transform` label) and what it does.
#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub kind: Kind,
    dropped: Arc<AtomicU64>,
}

impl Step {
    pub fn new(name: String, kind: Kind) -> Step {
        Step {
            name,
            kind,
            dropped: Arc::default(),
        }
    }
}

/// The transforms of one source, in order; shared by every adapt worker (the state of
/// `sample` and `throttle` is per source, not per worker). A top-level `[[transforms]]` is one
/// `Step` in the lists of every source it names: one state, one drop counter.
#[derive(Debug, Default, Clone)]
pub struct Transforms {
    steps: Arc<[Arc<Step>]>,
}

impl Transforms {
    pub fn new(steps: Vec<Step>) -> Transforms {
        Transforms {
            steps: steps.into_iter().map(Arc::new).collect(),
        }
    }

    /// These transforms, then `step`.
    pub fn then(&self, step: Arc<Step>) -> Transforms {
        Transforms {
            steps: self.steps.iter().cloned().chain([step]).collect(),
        }
    }

    /// The transforms' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.name.as_str())
    }

    /// Each transform's name and type, in order.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.steps.iter().map(|s| (s.name.as_str(), s.kind.type_name()))
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies every transform to `records`, in order.
    pub fn apply(&self, records: &mut Records) {
        for step in self.steps.iter() {
            if records.is_empty() {
                return;
            }
            let dropped = match &step.kind {
                Kind::Filter(f) => f.apply(records),
                Kind::Fields(f) => {
                    f.apply(records);
                    0
                }
                Kind::Redact(r) => {
                    r.apply(records);
                    0
                }
                Kind::Sample(s) => s.apply(records),
                Kind::Throttle(t) => t.apply(records),
            };
            add(&step.dropped, dropped);
        }
    }

    /// The drop counters of the transforms that drop, for `/metrics` (a top-level transform's
    /// in the list of each source it names: one series, `pipeline::metrics_for` keeps one).
    pub fn counters(&self) -> Vec<DropCounter> {
        self.steps
            .iter()
            .filter(|s| s.kind.drops())
            .map(|s| DropCounter {
                transform: s.name.clone(),
                reason: s.kind.reason(),
                count: Arc::clone(&s.dropped),
            })
            .collect()
    }
}
