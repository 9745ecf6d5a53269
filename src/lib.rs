//! tailship: a log-agent sidecar that tails files, normalizes their lines into one record
//! shape, and ships them in batches without losing a line.
//!
//! The pipeline (see ARCHITECTURE.md and `pipeline`):
//! `tail` reads files into `Chunk`s of whole lines → each sink (`ship`) encodes them with
//! `adapt` into its wire format, batches and sends → acknowledgements move the `checkpoint`.
//! `budget` bounds the bytes in flight; `metrics` counts what happens.

pub mod adapt;
pub mod budget;
pub mod checkpoint;
pub mod chunk;
pub mod config;
pub mod metrics;
pub mod pipeline;
pub mod server;
pub mod ship;
pub mod tail;
pub mod timefmt;
