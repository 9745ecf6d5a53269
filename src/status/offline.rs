//! The status with no agent running: the checkpoint in `data_dir` (how far each file was
//! delivered) against the files as they are now, and the sinks' dead-letter files.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{unix_ms, Agent, FileState, FileStatus, SinkStatus, Status};
use crate::checkpoint::{self, Entry, PeekError};
use crate::config::{Settings, SinkKind};

/// What the files and `data_dir` say, for the config `settings`.
pub fn status(settings: &Settings) -> Result<Status, PeekError> {
    let saved = checkpoint::peek(&settings.data_dir)?.unwrap_or_default();
    let mut files: Vec<FileStatus> = saved.into_iter().map(|e| file(settings, e)).collect();
    files.sort_by(|a, b| (&a.source, &a.path).cmp(&(&b.source, &b.path)));
    let sinks = settings
        .sinks
        .iter()
        .map(|s| SinkStatus {
            name: s.name.clone(),
            kind: s.kind.type_name().to_owned(),
            up: None,
            last_success_ms: None,
            retries: None,
            errors: None,
            dead_lettered: match &s.kind {
                SinkKind::Http(h) => Some(dead_letter_lines(&h.dead_letter.dir, &s.name)),
                _ => None,
            },
        })
        .collect();
    Ok(Status {
        agent: Agent::Stopped,
        at_ms: unix_ms(),
        files_shown: true,
        files,
        sinks,
    })
}

/// A checkpointed file: how much of what is at its path now is still to be shipped.
fn file(settings: &Settings, e: Entry) -> FileStatus {
    let format = settings.sources.iter().find(|s| s.name == e.source).map_or_else(
        || "(source no longer in the config)".to_owned(),
        |s| s.format.name().to_owned(),
    );
    let (size, reason) = match fs::metadata(&e.path) {
        Ok(m) if (m.dev(), m.ino()) == (e.dev, e.ino) && m.len() >= e.at.offset => (Some(m.len()), None),
        Ok(m) if (m.dev(), m.ino()) == (e.dev, e.ino) => (Some(m.len()), Some("truncated since".to_owned())),
        Ok(_) => (None, Some("another file is at its path now (rotated)".to_owned())),
        Err(err) => (None, Some(format!("gone: {err}"))),
    };
    let behind = size.map(|s| s.saturating_sub(e.at.offset));
    FileStatus {
        path: e.path,
        source: e.source,
        format,
        state: FileState::Closed,
        reason,
        size,
        read_offset: None,
        committed_offset: Some(e.at.offset),
        bytes_behind: behind,
        rate: None,
        seconds_behind: None,
        last_read_ms: None,
    }
}

/// Records in a sink's dead-letter files (`<sink>.ndjson` and its rotated `.N` siblings).
fn dead_letter_lines(dir: &Path, sink: &str) -> u64 {
    let prefix = format!("{sink}.ndjson");
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name == prefix || name.strip_prefix(&prefix).is_some_and(|r| r.starts_with('.'))
        })
        .filter_map(|e| fs::File::open(e.path()).ok())
        .map(|f| BufReader::new(f).split(b'\n').count() as u64)
        .sum()
}
