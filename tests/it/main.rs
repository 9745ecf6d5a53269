//! The integration test suite: one test binary (`cargo test --test it`) that runs the real
//! `tailship` binary against real files and a real TCP receiver on 127.0.0.1.
//!
//! One binary rather than one per file: the helpers compile once, and the heavy tests can share
//! a lock (`util::heavy`) so that on a 2-core machine they do not starve each other.
//! Set `TAILSHIP_KEEP_TEST_DIRS=1` to keep the scratch directory of a failed test.

/// Helpers: scratch dirs, the agent process, the receiver, writers, sequence checks, metrics.
mod util;

/// The receiver down for 10 s: no loss, bounded memory, catch-up.
mod backpressure;
/// Bad configs exit 2 naming the key; validate, --help, --version, TAILSHIP_CONFIG.
mod config;
/// Every line of several growing files arrives exactly once, in order; the record's keys;
/// `**` globs and excludes; the metrics and health endpoints.
mod delivery;
/// Odd files: a 10 MiB line, no final newline, empty, invalid UTF-8, deleted, unreadable,
/// directories and FIFOs matching the glob; the json format; read_from = end.
mod edge;
/// 1,000 idle files cost (almost) no CPU.
mod idle;
/// Two sinks on one source (the checkpoint is their minimum); files behind symlinks.
mod fanout;
/// `kill -9` in the middle of a run and restart from the checkpoint: at-least-once.
mod restart;
/// rename+create and copytruncate rotation while writing at full speed.
mod rotation;
/// SIGTERM/SIGINT with lines pending: everything shipped, checkpoint written, exit 0.
mod shutdown;
