//! tailship: a log-agent sidecar that tails files, normalizes their lines into one record
//! shape, and ships them in batches without losing a line.
//!
//! The pipeline (see ARCHITECTURE.md and `pipeline`, the only module that knows the topology):
//! `tail` reads files into `Chunk`s of whole lines → `adapt` workers turn them into `record`s,
//! once per source → `transform` (a seam for filters) → each sink (`ship`) batches the records,
//! encodes its wire format and sends → acknowledged `mark`s move the `checkpoint`.
//! `budget` bounds the bytes in flight; `metrics` counts what happens.
//!
//! Who owns an offset: the tailer makes the mark where a file starts; the adapt stage says,
//! per batch of records, where the checkpoint may go once they are delivered (never past an
//! event still being joined); a sink acknowledges those marks when the collector has the
//! records; the checkpoint keeps per file the lowest mark every sink reading it has reached,
//! and that is where the tailer resumes after a restart.

#![forbid(unsafe_code)]

pub mod accept;
pub mod adapt;
pub mod budget;
pub mod checkpoint;
pub mod chunk;
pub mod config;
pub mod convert;
pub mod forward;
/// The fuzz targets' entry points, shared by `fuzz/` and their property tests.
#[doc(hidden)]
pub mod fuzzing;
pub mod input;
pub mod liveness;
pub mod logging;
pub mod logsafe;
pub mod mark;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod reload;
pub mod server;
pub mod ship;
pub mod spool;
pub mod status;
pub mod stop;
pub mod tail;
pub mod timefmt;
pub mod transform;
