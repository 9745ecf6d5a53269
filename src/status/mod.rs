//! `tailship status`: where every file and sink stands. One model (`Status`), made by the
//! running agent for `GET /api/v1/status` (`report.rs`, from what the tailer publishes on the
//! `Board` and the checkpoint file) or, with no agent running, from `data_dir` and the files
//! themselves (`offline.rs`); fetched by the command (`client.rs`) and shown as a table with a
//! progress bar per file still behind, or as JSON (`render.rs`). While a large backlog drains,
//! the agent logs its progress (`progress.rs`).

use serde::{Deserialize, Serialize};

mod board;
pub mod client;
pub mod offline;
pub mod progress;
pub mod render;
pub mod report;

pub use self::board::{Board, FileView};

/// Everything `tailship status` shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// Whether this came from a running agent or from `data_dir` with none running.
    pub agent: Agent,
    /// Unix time in milliseconds when this was made.
    pub at_ms: u64,
    /// False when the agent keeps file paths to callers from other hosts (see
    /// `docs/status.md`); the files are then left out.
    pub files_shown: bool,
    pub files: Vec<FileStatus>,
    pub sinks: Vec<SinkStatus>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Agent {
    Running,
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileStatus {
    pub path: String,
    pub source: String,
    pub format: String,
    pub state: FileState,
    /// Why a file cannot be opened, or what else the state needs said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes in the file when last looked at.
    pub size: Option<u64>,
    /// How far the agent has read.
    pub read_offset: Option<u64>,
    /// How far every sink has acknowledged (the checkpoint): a restart resumes here.
    pub committed_offset: Option<u64>,
    /// `size - committed_offset`.
    pub bytes_behind: Option<u64>,
    /// Recent reading rate of the file, bytes per second.
    pub rate: Option<f64>,
    /// `bytes_behind / rate`, when the file is being read.
    pub seconds_behind: Option<f64>,
    /// Unix time in milliseconds when the file was last read from (its offset moved).
    pub last_read_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FileState {
    /// Open at its path, read as it grows.
    Reading,
    /// Renamed or deleted while still open: read to its end, then closed.
    RotatedDraining,
    /// Closed to stay under the open-file cap; reopened when it changes.
    Parked,
    /// Not open: the agent is stopped, or the file is gone or replaced at its path.
    Closed,
    /// Matched by a source's globs but the open failed (`reason` says why).
    CannotOpen,
}

impl FileState {
    pub fn name(self) -> &'static str {
        match self {
            FileState::Reading => "reading",
            FileState::RotatedDraining => "rotated-draining",
            FileState::Parked => "parked",
            FileState::Closed => "closed",
            FileState::CannotOpen => "cannot open",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SinkStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The last attempt was accepted (or none was made yet); `None` with no agent running.
    pub up: Option<bool>,
    /// Unix time in milliseconds of the last accepted batch.
    pub last_success_ms: Option<u64>,
    pub retries: Option<u64>,
    pub errors: Option<u64>,
    /// Records written to the dead-letter files: since the start (running agent), or the
    /// lines in `data_dir/dead-letter/` (stopped agent).
    pub dead_lettered: Option<u64>,
}

/// Why there is no status to show.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Agent(#[from] client::Error),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::PeekError),
}

/// The running agent's status, or, when none answers at the config's metrics address (or the
/// endpoint is disabled), what `data_dir` and the files say.
pub fn gather(settings: &crate::config::Settings) -> Result<Status, Error> {
    if let Some(address) = settings.metrics_address {
        if let Some(status) = client::fetch(address)? {
            return Ok(status);
        }
    }
    Ok(offline::status(settings)?)
}

/// Every file has been delivered up to its size.
pub fn caught_up(status: &Status) -> bool {
    status.files.iter().all(|f| f.bytes_behind.unwrap_or(0) == 0)
}

/// Unix time now in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
