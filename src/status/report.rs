//! The running agent's status (`GET /api/v1/status`): the tailer's last snapshot of its files
//! (`Board`), each with the offset the checkpoint file holds for it, and the sinks' counters.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::{unix_ms, Agent, FileState, FileStatus, FileView, SinkStatus, Status};
use crate::checkpoint::{self, Entry};
use crate::metrics::Metrics;

/// The status of the agent `metrics` belongs to; `files_shown`: whether the caller may see
/// file paths.
pub fn report(metrics: &Metrics, files_shown: bool) -> Status {
    let board = &metrics.board;
    let files = if files_shown {
        // Read fresh: the checkpoint thread rewrites it within milliseconds of an ack.
        let saved = match checkpoint::peek(&board.data_dir) {
            Ok(saved) => saved.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "status: cannot read the checkpoint");
                Vec::new()
            }
        };
        files(board.files(), saved, &board.sources)
    } else {
        Vec::new()
    };
    let sinks = metrics
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let last = s.last_success_ms.load(Ordering::Relaxed);
            SinkStatus {
                name: s.name.clone(),
                kind: board.sinks.get(i).map(|(_, k)| k.clone()).unwrap_or_default(),
                up: Some(s.up.load(Ordering::Relaxed) == 1),
                last_success_ms: (last > 0).then_some(last),
                retries: Some(s.retries.load(Ordering::Relaxed)),
                errors: Some(s.errors.load(Ordering::Relaxed)),
                dead_lettered: Some(s.dead_letter_records.load(Ordering::Relaxed)),
            }
        })
        .collect();
    Status {
        agent: Agent::Running,
        at_ms: unix_ms(),
        files_shown,
        files,
        sinks,
    }
}

/// The tailer's files with their committed offsets, then the checkpoint's other files (closed,
/// kept for `checkpoint_grace`).
fn files(views: Vec<FileView>, saved: Vec<Entry>, sources: &[(String, String)]) -> Vec<FileStatus> {
    let mut saved: HashMap<u64, Entry> = saved.into_iter().map(|e| (e.uid, e)).collect();
    let source = |i: usize| sources.get(i).cloned().unwrap_or_default();
    let mut out: Vec<FileStatus> = views
        .into_iter()
        .map(|v| {
            let committed = match v.state {
                FileState::CannotOpen => None,
                _ => saved.remove(&v.uid).map(|e| e.at.offset),
            };
            let (name, format) = source(v.source);
            let behind = match (v.size, committed) {
                (Some(size), Some(c)) => Some(size.saturating_sub(c)),
                (Some(size), None) if v.state != FileState::CannotOpen => Some(size),
                _ => None,
            };
            FileStatus {
                path: v.path,
                source: name,
                format,
                state: v.state,
                reason: v.reason,
                size: v.size,
                read_offset: v.read_offset,
                committed_offset: committed,
                bytes_behind: behind,
                rate: v.rate,
                seconds_behind: seconds_behind(behind, v.rate),
                last_read_ms: v.last_read_ms,
            }
        })
        .collect();
    let mut closed: Vec<Entry> = saved.into_values().collect();
    closed.sort_by(|a, b| a.path.cmp(&b.path));
    for e in closed {
        let format = sources.iter().find(|(n, _)| *n == e.source).map(|(_, f)| f.clone());
        out.push(FileStatus {
            path: e.path,
            source: e.source,
            format: format.unwrap_or_default(),
            state: FileState::Closed,
            reason: None,
            size: None,
            read_offset: None,
            committed_offset: Some(e.at.offset),
            bytes_behind: None,
            rate: None,
            seconds_behind: None,
            last_read_ms: None,
        });
    }
    out
}

/// How long `behind` bytes take at `rate`: 0 when nothing is behind, unknown while the file
/// is not being read.
pub fn seconds_behind(behind: Option<u64>, rate: Option<f64>) -> Option<f64> {
    match (behind?, rate) {
        (0, _) => Some(0.0),
        (b, Some(r)) if r > 0.0 => Some(b as f64 / r),
        _ => None,
    }
}
