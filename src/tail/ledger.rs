//! Everything the tailer tells the checkpoint thread, in one place: a file generation starts
//! (`register`), a file's identity or path changed (`update`), a file is closed for good
//! (`closed`). Acknowledgements come from the sinks, not from here.
//!
//! A send's error is ignored: the checkpoint thread ends only once every sender is gone, so
//! a send fails only if that thread died, and then the lines should still ship; only their
//! checkpoint is lost, as it already is.

use crossbeam_channel::Sender;

use super::file::Tracked;
use crate::checkpoint::{Entry, Msg};
use crate::mark::Mark;

pub struct Ledger {
    tx: Sender<Msg>,
}

impl Ledger {
    pub fn new(tx: Sender<Msg>) -> Ledger {
        Ledger { tx }
    }

    /// A file generation starts (or resumes) at `at`; its entry replaces any older one of the
    /// same file. `source` is the name of the file's source.
    pub fn register(&self, f: &Tracked, source: &str, at: Mark) {
        let entry = Entry {
            uid: f.uid,
            source: source.to_owned(),
            path: f.path.display().to_string(),
            dev: f.key.0,
            ino: f.key.1,
            fp_len: f.fp.len,
            fp_hash: f.fp.hash,
            generation: f.generation,
            id_seed: f.id_seed,
            at,
            updated: 0,
        };
        let _ = self.tx.send(Msg::Register {
            entry,
            source_idx: f.source,
        });
    }

    /// The file's fingerprint grew, its id seed was made, or it was renamed: the entry must
    /// still recognise the file at the next start.
    pub fn update(&self, f: &Tracked) {
        let _ = self.tx.send(Msg::Update {
            uid: f.uid,
            path: f.path.display().to_string(),
            fp_len: f.fp.len,
            fp_hash: f.fp.hash,
            id_seed: f.id_seed,
        });
    }

    /// The copy `to` continues the truncated generation `from` from offset `at`
    /// (`Msg::Continues`): until `from` is acknowledged up to there, its marks are the copy's
    /// checkpoint.
    pub fn continues(&self, from: u64, to: u64, at: u64) {
        let _ = self.tx.send(Msg::Continues { from, to, at });
    }

    /// The file generation `uid` is drained and closed; nothing more will be read from it.
    pub fn closed(&self, uid: u64) {
        let _ = self.tx.send(Msg::Closed { uid });
    }
}
