//! Reading: the files that may have new bytes, a few reads each per turn and no more than the
//! in-flight budget allows; whole lines split off into chunks and handed to the file's adapt
//! lane; partial lines shipped as they are when their newline is overdue.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::select;

use super::file::{FileKey, ReadResult, Tracked};
use super::identity;
use super::ledger::Ledger;
use super::lines::Split;
use super::Tailer;
use crate::chunk::{Chunk, FileMeta};
use crate::metrics::add;
use crate::timefmt;

/// The UTF-8 byte-order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads per file before moving on to the next one, so one busy file cannot starve others.
const READS_PER_TURN: usize = 8;

impl Tailer {
    /// Reads every file that may have new bytes, a few reads each per turn. Returns true when
    /// it stopped because the in-flight budget is used up.
    pub(super) fn read_dirty(&mut self) -> bool {
        let keys: Vec<FileKey> = self.files.iter().filter(|(_, f)| f.dirty).map(|(k, _)| *k).collect();
        for key in keys {
            for _ in 0..READS_PER_TURN {
                if self.budget.available() == 0 {
                    self.release_partials();
                    return true;
                }
                if self.hard_stop.is_set() {
                    return false;
                }
                if !self.read_once(key) {
                    break;
                }
            }
        }
        false
    }

    /// One read of one file; false when the file has nothing more for now.
    fn read_once(&mut self, key: FileKey) -> bool {
        let Some(f) = self.files.get_mut(&key) else {
            return false;
        };
        let max_read = self.read_bytes.min(self.sources[f.source].max_line_bytes);
        let mut splits = std::mem::take(&mut self.splits);
        let result = f.read(max_read, &mut splits);
        let more = match result {
            Ok(ReadResult::Data(n)) => {
                add(&self.metrics.bytes_read, n as u64);
                self.maybe_grow_fingerprint(key);
                for s in splits.drain(..) {
                    self.emit(key, s);
                }
                let f = self.files.get_mut(&key).expect("file is tracked");
                f.charge_partial(&self.budget);
                !f.at_eof
            }
            Ok(ReadResult::Eof) => {
                if let Some(f) = self.files.get_mut(&key) {
                    f.dirty = false;
                }
                false
            }
            Ok(ReadResult::Truncated) => {
                self.truncated(key);
                true
            }
            Err(e) => {
                let f = self.files.get_mut(&key).expect("file is tracked");
                f.dirty = false;
                add(&self.metrics.open_errors, 1);
                tracing::warn!(path = %f.path.display(), error = %e, "read failed; will retry");
                false
            }
        };
        self.splits = splits;
        more
    }

    /// While a file is younger than a full fingerprint, extend its fingerprint as it grows so
    /// a later restart can tell it apart from other files.
    fn maybe_grow_fingerprint(&mut self, key: FileKey) {
        let f = self.files.get_mut(&key).expect("file is tracked");
        if (f.fp.len as usize) < identity::FINGERPRINT_MAX && f.read_offset > f.fp.len as u64 {
            if let Ok(fp) = identity::fingerprint(&f.file, f.read_offset) {
                f.fp = fp;
                self.ledger.update(f);
            }
        }
    }

    /// Ships a file's pending partial line as it is (timeout, rotation, truncation, shutdown).
    pub(super) fn flush_partial(&mut self, key: FileKey) {
        let Some(f) = self.files.get_mut(&key) else { return };
        if let Some(s) = f.splitter.flush(&mut f.buf) {
            add(&self.metrics.partial_lines_flushed, 1);
            self.emit(key, s);
        }
        if let Some(f) = self.files.get_mut(&key) {
            f.charge_partial(&self.budget);
        }
    }

    /// The budget is used up: if partial lines hold half of it or more, they could keep the
    /// tailer from ever reading a newline again (300 files growing without one), so the ones
    /// waiting longest are shipped as they are, as pieces marked `truncated` whose rest
    /// follows as a `continuation`, until they hold less. Their bytes then travel as chunks,
    /// which free the budget once delivered.
    fn release_partials(&mut self) {
        let half = self.budget.cap() / 2;
        let mut held: usize = self.files.values().map(Tracked::partial_bytes).sum();
        if held < half {
            return;
        }
        let mut waiting: Vec<(Instant, FileKey)> = self
            .files
            .iter()
            .filter(|(_, f)| f.partial_bytes() > 0)
            .map(|(k, f)| (f.partial_since, *k))
            .collect();
        waiting.sort_unstable();
        for (_, key) in waiting {
            if held < half {
                break;
            }
            let f = self.files.get_mut(&key).expect("file is tracked");
            held -= f.partial_bytes();
            if let Some(s) = f.splitter.cut(&mut f.buf) {
                add(&self.metrics.partial_lines_flushed, 1);
                self.emit(key, s);
            }
            if let Some(f) = self.files.get_mut(&key) {
                f.charge_partial(&self.budget);
            }
        }
    }

    /// Ships the partial lines whose newline has not come within their source's
    /// `partial_line_timeout` (as of `now`).
    pub(super) fn flush_timed_out_partials(&mut self, now: Instant) {
        let due: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(_, f)| {
                f.waits_for_newline() && now >= f.partial_since + self.sources[f.source].partial_line_timeout
            })
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            self.flush_partial(k);
        }
    }

    /// Hands a split of a file on to every sink that reads its source.
    pub(super) fn emit(&mut self, key: FileKey, split: Split) {
        let f = self.files.get_mut(&key).expect("file is tracked");
        if split.data.is_empty() {
            return;
        }
        let meta = file_meta(f, key, &self.ledger);
        let mut start = f.take_range(split.data.len());
        if split.tail_truncated && !split.head_continues {
            add(&self.metrics.lines_split, 1);
        }
        let len = split.data.len();
        let mut data = split.data;
        // A UTF-8 byte-order mark (Windows tools, some .NET loggers) opens some files; it is
        // not part of the first line's text, for any format. Offsets stay the file's own.
        if start == 0 && !split.head_continues && data.starts_with(BOM) {
            data = data.slice(BOM.len()..);
            start = BOM.len() as u64;
            if data.is_empty() {
                return;
            }
        }
        let chunk = Arc::new(Chunk {
            file: meta,
            start,
            data,
            observed_ns: timefmt::now_ns(),
            head_continues: split.head_continues,
            tail_truncated: split.tail_truncated,
            budget: self.budget.take(len),
        });
        if self.lanes.is_empty() {
            return;
        }
        let uid = f.uid;
        if self.lanes.wants_pruning() {
            let live = self
                .files
                .values()
                .map(|f| f.uid)
                .chain(self.parking.parked.values().map(|p| p.uid));
            self.lanes.keep_only(&live.collect());
        }
        let lane = self.lanes.of(uid);
        // A lane is full only while the sinks behind it are stalled; waiting here is the
        // backpressure, but the hard stop must still get through.
        // Blocked on the stages behind: not the tailer's stall (`liveness`).
        self.metrics.tail_heartbeat.wait_for(|| {
            select! {
                send(lane, chunk) -> _ => {}
                recv(self.hard_stop.channel()) -> _ => {}
            }
        });
    }
}

/// What the chunks of `f` share, built at its first chunk after it was opened or renamed.
/// The id seed is made then too, from the file's first line, and saved with its entry.
fn file_meta(f: &mut Tracked, key: FileKey, ledger: &Ledger) -> Arc<FileMeta> {
    if let Some(m) = &f.meta {
        return Arc::clone(m);
    }
    let seed = match f.id_seed {
        Some(s) => s,
        None => {
            let head = identity::read_at(&f.file, 0, identity::FINGERPRINT_MAX).unwrap_or_default();
            let s = identity::id_seed(key.0, key.1, f.generation, &head);
            f.id_seed = Some(s);
            ledger.update(f);
            s
        }
    };
    let path: Arc<str> = Arc::from(f.path.display().to_string());
    let m = Arc::new(FileMeta {
        uid: f.uid,
        source: f.source,
        path_json: serde_json::to_string(&*path).unwrap_or_else(|_| "\"\"".into()).into(),
        path,
        id_prefix: format!("{seed:016x}-").into(),
    });
    f.meta = Some(Arc::clone(&m));
    m
}
