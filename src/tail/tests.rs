//! The tailer driven in-process on a temp dir: the real `run` loop, a lane the test reads
//! chunks from, and the checkpoint channel it reads messages from. Every wait has a deadline.
//! The rescan interval is short so the tests do not depend on inotify being available.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::identity;
use super::{run, TailContext};
use crate::budget::Budget;
use crate::checkpoint::{Entry, Msg};
use crate::chunk::Chunk;
use crate::config::Settings;
use crate::mark::Mark;
use crate::metrics::Metrics;
use crate::stop::{self, Trigger};

const DEADLINE: Duration = Duration::from_secs(10);

/// A line as it came out of the tailer: the file generation it belongs to and its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    uid: u64,
    offset: u64,
    /// What the record ids of the file generation start with (see `identity::id_seed`).
    id_prefix: String,
    text: String,
}

/// A running tailer over `dir/logs/app.log`.
struct Tail {
    dir: tempfile::TempDir,
    chunks: Receiver<Arc<Chunk>>,
    checkpoints: Receiver<Msg>,
    shutdown: Option<Sender<()>>,
    hard_stop: Trigger,
    done: Receiver<()>,
    metrics: Arc<Metrics>,
    /// Lines received so far, in order.
    lines: Vec<Line>,
    /// Checkpoint messages received so far, in order.
    msgs: Vec<Msg>,
}

/// A temp dir with an empty `logs` directory.
fn temp() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("logs")).unwrap();
    dir
}

fn settings(dir: &Path, source_extra: &str) -> Settings {
    settings_with(dir, "", "app.log", source_extra)
}

/// Settings with extra top-level keys and the source's glob under `logs/`.
fn settings_with(dir: &Path, top: &str, glob: &str, source_extra: &str) -> Settings {
    let text = format!(
        r#"
        data_dir = "{d}/data"
        rescan_interval = "50ms"
        rotate_wait = "300ms"
        {top}
        [[sources]]
        name = "app"
        include = ["{d}/logs/{glob}"]
        {source_extra}
        [[sinks]]
        type = "tcp"
        address = "127.0.0.1:9"
        "#,
        d = dir.display()
    );
    Settings::from_toml(&dir.join("test.toml"), &text, &|_| None).unwrap()
}

impl Tail {
    fn start(dir: tempfile::TempDir, source_extra: &str, saved: Option<Vec<Entry>>) -> Tail {
        let settings = settings(dir.path(), source_extra);
        Tail::start_with(dir, settings, saved)
    }

    fn start_with(dir: tempfile::TempDir, settings: Settings, saved: Option<Vec<Entry>>) -> Tail {
        let (lane_tx, chunks) = crossbeam_channel::bounded(64);
        let (cp_tx, checkpoints) = crossbeam_channel::unbounded();
        let (shutdown_tx, shutdown) = crossbeam_channel::bounded(0);
        let (trigger, hard_stop) = stop::hard_stop();
        let budget = Budget::new(1 << 20);
        let metrics = Arc::new(Metrics::new(&["app".into()], &["out".into()], Arc::clone(&budget)));
        let ctx = TailContext {
            settings,
            saved,
            lanes: vec![lane_tx],
            checkpoints: cp_tx,
            budget,
            metrics: Arc::clone(&metrics),
            shutdown,
            hard_stop,
        };
        let (done_tx, done) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            run(ctx);
            let _ = done_tx.send(());
        });
        Tail {
            dir,
            chunks,
            checkpoints,
            shutdown: Some(shutdown_tx),
            hard_stop: trigger,
            done,
            metrics,
            lines: Vec::new(),
            msgs: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(name)
    }

    fn take(&mut self, chunk: &Chunk) {
        let mut offset = chunk.start;
        for piece in chunk.data.split_inclusive(|b| *b == b'\n') {
            self.lines.push(Line {
                uid: chunk.file.uid,
                offset,
                id_prefix: chunk.file.id_prefix.to_string(),
                text: String::from_utf8_lossy(piece).trim_end_matches('\n').to_owned(),
            });
            offset += piece.len() as u64;
        }
    }

    /// Waits until a line `text` came out, and returns it.
    fn line(&mut self, text: &str) -> Line {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(l) = self.lines.iter().find(|l| l.text == text) {
                return l.clone();
            }
            match self.chunks.recv_deadline(deadline) {
                Ok(c) => self.take(&c),
                Err(e) => panic!("no line {text:?} ({e}); got {:?}", self.lines),
            }
        }
    }

    /// Waits until a checkpoint message matching `pred` came, and returns it.
    fn msg(&mut self, what: &str, pred: impl Fn(&Msg) -> bool) -> &Msg {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(i) = self.msgs.iter().position(&pred) {
                return &self.msgs[i];
            }
            match self.checkpoints.recv_deadline(deadline) {
                Ok(m) => self.msgs.push(m),
                Err(e) => panic!("no {what} message ({e}); got {:?}", self.msgs),
            }
        }
    }

    /// The entry of the first `Register` for `path`.
    fn registered(&mut self, path: &Path) -> Entry {
        let path = path.display().to_string();
        match self.msg(
            "Register",
            |m| matches!(m, Msg::Register { entry, .. } if entry.path == path),
        ) {
            Msg::Register { entry, .. } => entry.clone(),
            _ => unreachable!(),
        }
    }

    /// Graceful shutdown: waits for the tailer to drain and return, then collects the rest of
    /// its chunks.
    fn stop(&mut self) {
        drop(self.shutdown.take());
        if let Err(e) = self.done.recv_timeout(DEADLINE) {
            panic!("the tailer did not finish draining: {e}");
        }
        while let Ok(c) = self.chunks.recv_timeout(DEADLINE) {
            self.take(&c);
        }
        self.msgs.extend(self.checkpoints.try_iter());
    }

    fn texts(&self) -> Vec<&str> {
        self.lines.iter().map(|l| l.text.as_str()).collect()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        // A failed test must not leave the tailer thread blocked on a lane nobody reads.
        self.hard_stop.fire();
    }
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn a_discovered_file_comes_out_as_chunks_of_its_lines() {
    let dir = temp();
    let log = dir.path().join("logs/app.log");
    append(&log, "one\ntwo\n");
    let mut t = Tail::start(dir, r#"partial_line_timeout = "1h""#, None);
    let entry = t.registered(&log);
    assert_eq!(
        (entry.at.offset, entry.generation, entry.source.as_str()),
        (0, 0, "app")
    );
    assert_eq!(t.line("two").offset, 4);
    append(&log, "three\nfour");
    assert_eq!(t.line("three").offset, 8);
    assert!(
        t.lines.iter().all(|l| l.uid == entry.uid),
        "one file generation, one uid: {:?}",
        t.lines
    );
    // The line without its newline waits (its timeout is an hour) until the shutdown ships it.
    assert_eq!(t.texts(), ["one", "two", "three"]);
    t.stop();
    assert_eq!(t.texts(), ["one", "two", "three", "four"]);
    assert_eq!(t.lines[3].offset, 14);
}

#[test]
fn a_renamed_file_is_drained_and_the_new_one_followed() {
    let dir = temp();
    let log = dir.path().join("logs/app.log");
    append(&log, "a1\na2\n");
    let mut t = Tail::start(dir, "", None);
    let old = t.registered(&log);
    t.line("a2");
    // logrotate's rename: the writer still holds the old file and writes a last line to it
    // before it reopens its log at the old name.
    let mut writer = OpenOptions::new().append(true).open(&log).unwrap();
    fs::rename(&log, t.path("app.log.1")).unwrap();
    writer.write_all(b"a3\n").unwrap();
    append(&log, "b1\n");

    assert_eq!(t.line("a3").uid, old.uid, "the late line is read from the rotated file");
    let b1 = t.line("b1");
    assert_ne!(b1.uid, old.uid, "the new file is a new checkpoint entry");
    assert_eq!(b1.offset, 0);
    // Quiet for `rotate_wait`, the rotated file is closed for good.
    t.msg("Closed", |m| matches!(m, Msg::Closed { uid } if *uid == old.uid));
    t.stop();
    let mut texts = t.texts();
    texts.sort_unstable();
    assert_eq!(texts, ["a1", "a2", "a3", "b1"], "each line exactly once");
}

#[test]
fn a_copytruncate_loses_no_line() {
    let dir = temp();
    let log = dir.path().join("logs/app.log");
    append(&log, "c1\nc2\n");
    let mut t = Tail::start(dir, "", None);
    t.line("c2");
    // Whether the tailer reads `c3` before the truncation or only from the copy, it must
    // come out once.
    append(&log, "c3\n");
    fs::copy(&log, t.path("app.log.1")).unwrap();
    OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    append(&log, "d1\n");
    t.line("c3");
    assert_eq!(t.line("d1").offset, 0);
    t.stop();
    let mut texts = t.texts();
    texts.sort_unstable();
    assert_eq!(texts, ["c1", "c2", "c3", "d1"], "each line exactly once");
}

/// The entry a previous run saved for `path` at `offset`, the bytes before it being `before`.
fn saved_entry(path: &Path, offset: u64, before: &[u8]) -> Entry {
    let m = fs::metadata(path).unwrap();
    let fp = identity::fingerprint(&File::open(path).unwrap(), m.len()).unwrap();
    Entry {
        uid: 42,
        source: "app".into(),
        path: path.display().to_string(),
        dev: m.dev(),
        ino: m.ino(),
        fp_len: fp.len,
        fp_hash: fp.hash,
        generation: 3,
        id_seed: Some(7),
        at: Mark::at(offset, before),
        updated: 0,
    }
}

#[test]
fn a_restart_resumes_at_the_saved_mark() {
    let dir = temp();
    let log = dir.path().join("logs/app.log");
    append(&log, "one\ntwo\nthree\n");
    let saved = saved_entry(&log, 8, b"one\ntwo\n");
    let mut t = Tail::start(dir, "", Some(vec![saved]));
    let entry = t.registered(&log);
    assert_eq!((entry.uid, entry.at.offset, entry.generation), (42, 8, 3));
    let three = t.line("three");
    assert_eq!((three.uid, three.offset), (42, 8));
    assert_eq!(
        three.id_prefix, "0000000000000007-",
        "record ids continue the saved seed"
    );
    t.stop();
    assert_eq!(t.texts(), ["three"]);
}

#[test]
fn a_file_changed_before_its_saved_mark_is_read_again_as_a_new_generation() {
    let dir = temp();
    let log = dir.path().join("logs/app.log");
    append(&log, "one\ntwo\nthree\n");
    let saved = saved_entry(&log, 8, b"ONE\nTWO\n");
    let mut t = Tail::start(dir, "", Some(vec![saved]));
    let entry = t.registered(&log);
    assert_eq!((entry.at.offset, entry.generation, entry.id_seed), (0, 4, None));
    assert_ne!(entry.uid, 42);
    t.line("three");
    t.stop();
    assert_eq!(t.texts(), ["one", "two", "three"]);
    assert!(t.lines.iter().all(|l| l.uid == entry.uid));
    assert_eq!(t.metrics.truncations.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn read_from_end_skips_what_was_there_at_the_first_start() {
    let dir = temp();
    let log = dir.path().join("logs/app.log");
    append(&log, "old\n");
    let mut t = Tail::start(dir, r#"read_from = "end""#, None);
    assert_eq!(t.registered(&log).at.offset, 4);
    append(&log, "new\n");
    assert_eq!(t.line("new").offset, 4);
    t.stop();
    assert_eq!(t.texts(), ["new"]);
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_line() {
    let dir = temp();
    let log = dir.path().join("logs/app.log");
    append(&log, "\u{feff}{\"msg\":\"first\"}\nsecond\n");
    let mut t = Tail::start(dir, "", None);
    let first = t.line("{\"msg\":\"first\"}");
    assert_eq!(first.offset, 3, "offsets stay the file's own");
    assert_eq!(t.line("second").offset, 19);
    t.stop();
}

/// Truncates `path` to nothing, as `truncate -s 0` does.
fn truncate(path: &Path) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(0).unwrap();
}

/// `cp src dst` over an existing `dst`: the same inode, rewritten.
fn cp_in_place(src: &Path, dst: &Path) {
    let data = fs::read(src).unwrap();
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dst)
        .unwrap();
    f.write_all(&data).unwrap();
}

#[test]
fn an_adopted_copy_is_read_only_up_to_where_its_file_was_truncated() {
    let dir = temp();
    let log = dir.path().join("logs/app.log");
    append(&log, "c1\nc2\n");
    let mut t = Tail::start(dir, "", None);
    t.line("c2");
    append(&log, "c3\n");
    let copy = t.path("app.log.1");
    fs::copy(&log, &copy).unwrap();
    truncate(&log);
    let adopted = t.registered(&copy);
    // Bytes past the bound: the next rotation rewriting the copy, or anything else. They are
    // not the old generation's, and must not come out of the copy.
    append(&copy, "beyond\n");
    append(&log, "d1\n");
    t.line("c3");
    assert_eq!(t.line("d1").offset, 0);
    t.msg("Closed", |m| matches!(m, Msg::Closed { uid } if *uid == adopted.uid));
    t.stop();
    let mut texts = t.texts();
    texts.sort_unstable();
    assert_eq!(
        texts,
        ["c1", "c2", "c3", "d1"],
        "each line once, nothing past the bound"
    );
}

#[test]
fn a_copy_rewritten_in_place_by_the_next_rotation_is_not_read_again() {
    let dir = temp();
    let log = dir.path().join("logs/app.log");
    append(&log, "a1\na2\n");
    let mut t = Tail::start(dir, "", None);
    let copy = t.path("app.log.1");
    t.line("a2");
    for lines in [["b1", "b2"], ["c1", "c2"], ["d1", "d2"]] {
        // cp app.log app.log.1 && truncate -s 0 app.log, the copy's inode kept.
        cp_in_place(&log, &copy);
        truncate(&log);
        append(&log, &format!("{}\n{}\n", lines[0], lines[1]));
        t.line(lines[1]);
    }
    let ino = fs::metadata(&copy).unwrap().ino();
    t.stop();
    let mut texts = t.texts();
    texts.sort_unstable();
    assert_eq!(
        texts,
        ["a1", "a2", "b1", "b2", "c1", "c2", "d1", "d2"],
        "each line once although copy {ino} was rewritten twice"
    );
}

#[test]
fn a_file_saved_empty_and_renamed_while_down_is_resumed() {
    let dir = temp();
    let log = dir.path().join("logs/app.log");
    append(&log, "");
    // Saved when it was still empty: offset 0, no fingerprint.
    let mut saved = saved_entry(&log, 0, b"");
    saved.updated = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(saved.fp_len, 0);
    // While down: written, renamed to a name the glob does not match, replaced.
    append(&log, "old1\nold2\n");
    let rotated = dir.path().join("logs/app.log.1");
    fs::rename(&log, &rotated).unwrap();
    append(&log, "new1\n");
    let mut t = Tail::start(dir, "", Some(vec![saved]));
    let old = t.line("old2");
    assert_eq!(old.uid, 42, "the saved entry is resumed");
    assert_ne!(t.line("new1").uid, 42);
    t.stop();
    let mut texts = t.texts();
    texts.sort_unstable();
    assert_eq!(texts, ["new1", "old1", "old2"]);
}

#[test]
fn files_past_the_open_file_cap_take_turns_with_quiet_ones() {
    let dir = temp();
    for i in 0..5 {
        append(&dir.path().join(format!("logs/f{i}.log")), &format!("f{i} first\n"));
    }
    let settings = settings_with(dir.path(), "max_open_files = 2", "*.log", "");
    let mut t = Tail::start_with(dir, settings, None);
    for i in 0..5 {
        t.line(&format!("f{i} first"));
    }
    // Every file gets a second line; parked ones are reopened where they stopped.
    for i in 0..5 {
        append(&t.path(&format!("f{i}.log")), &format!("f{i} second\n"));
    }
    for i in 0..5 {
        t.line(&format!("f{i} second"));
    }
    assert!(t.metrics.open_files.load(std::sync::atomic::Ordering::Relaxed) <= 2);
    // A parked file renamed away is found by its inode and drained.
    let mut w = OpenOptions::new().append(true).open(t.path("f0.log")).unwrap();
    fs::rename(t.path("f0.log"), t.path("moved.log.1")).unwrap();
    w.write_all(b"f0 late\n").unwrap();
    t.line("f0 late");
    t.stop();
    let mut texts = t.texts();
    texts.sort_unstable();
    let mut want: Vec<String> = (0..5)
        .flat_map(|i| [format!("f{i} first"), format!("f{i} second")])
        .collect();
    want.push("f0 late".into());
    want.sort_unstable();
    assert_eq!(texts, want, "each line once");
}

#[test]
fn lost_events_make_the_tailer_look_for_saved_files_by_inode() {
    let dir = temp();
    // A file the last run saved, which appears in the log directory under a name the glob
    // does not match only while the tailer is blind.
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let saved_path = elsewhere.join("x.log");
    append(&saved_path, "saved1\n");
    let mut saved = saved_entry(&saved_path, 7, b"saved1\n");
    saved.path = dir.path().join("logs/app.log").display().to_string();
    append(&saved_path, "saved2\n");
    for i in 0..70 {
        append(&dir.path().join(format!("logs/f{i}.log")), &format!("f{i}\n"));
    }
    let settings = settings_with(dir.path(), "", "f*.log", "");
    let mut t = Tail::start_with(dir, settings, Some(vec![saved]));
    // The lane holds 64 chunks: with nobody reading it, the tailer blocks on the 65th file
    // and its event queue overflows.
    assert!(wait(|| t.chunks.len() == 64), "the lane did not fill");
    for i in 0..6000 {
        append(&t.path(&format!("junk{i}")), "j\n");
    }
    fs::rename(&saved_path, t.path("app.log.1")).unwrap();
    let line = t.line("saved2");
    assert_eq!(line.uid, 42, "resumed from its saved entry");
    assert!(t.lines.iter().all(|l| l.text != "saved1"));
    for i in 0..70 {
        t.line(&format!("f{i}"));
    }
    t.stop();
}

/// Polls `cond` every 10 ms until it holds or `DEADLINE` passes.
fn wait(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
