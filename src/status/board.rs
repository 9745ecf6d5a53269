//! What the tailer publishes of its files for `GET /api/v1/status`: a snapshot replaced at
//! every reconcile (each `rescan_interval`), with each file's last-read time and recent rate
//! worked out here from the snapshot before, so the tailer keeps no clock of its own for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{unix_ms, FileState};

/// Weight of the newest interval in a file's smoothed rate.
const RATE_WEIGHT: f64 = 0.5;

/// One file as the tailer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileView {
    /// The checkpoint's key for this file generation.
    pub uid: u64,
    pub path: String,
    pub source: usize,
    pub state: FileState,
    pub reason: Option<String>,
    pub size: Option<u64>,
    pub read_offset: Option<u64>,
    pub last_read_ms: Option<u64>,
    pub rate: Option<f64>,
}

/// The last snapshot, and what the status report needs to go with it.
#[derive(Debug, Default)]
pub struct Board {
    pub data_dir: PathBuf,
    /// Per source index: its name and format.
    pub sources: Vec<(String, String)>,
    /// Per sink index: its name and type.
    pub sinks: Vec<(String, String)>,
    snapshot: Mutex<Snapshot>,
}

#[derive(Debug, Default, Clone)]
struct Snapshot {
    at_ms: u64,
    files: Vec<FileView>,
}

impl Board {
    pub fn new(data_dir: &Path, sources: Vec<(String, String)>, sinks: Vec<(String, String)>) -> Board {
        Board {
            data_dir: data_dir.to_owned(),
            sources,
            sinks,
            snapshot: Mutex::new(Snapshot::default()),
        }
    }

    /// Replaces the snapshot with `files` (their `last_read_ms` and `rate` are filled in here).
    pub fn publish(&self, files: Vec<FileView>) {
        self.publish_at(files, unix_ms());
    }

    fn publish_at(&self, mut files: Vec<FileView>, now_ms: u64) {
        let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let before: HashMap<u64, &FileView> = snap.files.iter().map(|f| (f.uid, f)).collect();
        let secs = now_ms.saturating_sub(snap.at_ms) as f64 / 1000.0;
        for f in &mut files {
            let Some(old) = before.get(&f.uid) else { continue };
            let moved = match (f.read_offset, old.read_offset) {
                (Some(now), Some(then)) => now.saturating_sub(then),
                _ => 0,
            };
            f.last_read_ms = if moved > 0 { Some(now_ms) } else { old.last_read_ms };
            if secs > 0.0 {
                let latest = moved as f64 / secs;
                f.rate = Some(
                    old.rate
                        .map_or(latest, |r| RATE_WEIGHT * latest + (1.0 - RATE_WEIGHT) * r),
                );
            }
        }
        *snap = Snapshot { at_ms: now_ms, files };
    }

    /// The last snapshot's files.
    pub fn files(&self) -> Vec<FileView> {
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner()).files.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(uid: u64, read: u64) -> FileView {
        FileView {
            uid,
            path: format!("/l/{uid}.log"),
            source: 0,
            state: FileState::Reading,
            reason: None,
            size: Some(10_000),
            read_offset: Some(read),
            last_read_ms: None,
            rate: None,
        }
    }

    #[test]
    fn rate_and_last_read_come_from_the_snapshot_before() {
        let board = Board::new(Path::new("/d"), Vec::new(), Vec::new());
        board.publish_at(vec![view(1, 0), view(2, 50)], 1_000);
        board.publish_at(vec![view(1, 1_000), view(2, 50)], 3_000);
        let files = board.files();
        assert_eq!(files[0].rate, Some(500.0));
        assert_eq!(files[0].last_read_ms, Some(3_000));
        assert_eq!(
            (files[1].rate, files[1].last_read_ms),
            (Some(0.0), None),
            "not read since"
        );
        board.publish_at(vec![view(1, 1_000)], 5_000);
        let files = board.files();
        assert_eq!(files[0].rate, Some(250.0), "smoothed");
        assert_eq!(files[0].last_read_ms, Some(3_000), "kept");
    }
}
