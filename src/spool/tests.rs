//! Unit tests of the spool: appending, rolling segments, reclaiming acknowledged ones, the byte cap
//! and the cut of a half-written last line at start.
use std::time::Duration;

use super::*;
use crate::checkpoint::Entry;
use crate::mark::Mark;

fn settings(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolSettings {
    SpoolSettings {
        dir: dir.join("spool/app"),
        max_bytes,
        segment_bytes,
        fsync: Fsync::Batch,
    }
}

fn segments(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(dir.join("spool/app"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The checkpoint as the checkpoint thread would write it: `path` acknowledged up to `offset`.
fn acknowledge(data_dir: &Path, path: &Path, offset: u64) {
    let meta = fs::metadata(path).unwrap();
    let entry = Entry {
        uid: meta.ino(),
        source: "app".into(),
        path: path.to_string_lossy().into_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
        fp_len: 0,
        fp_hash: 0,
        generation: 0,
        id_seed: None,
        at: Mark {
            offset,
            ..Mark::default()
        },
        updated: 0,
    };
    checkpoint::store(data_dir, &[entry], false).unwrap();
}

#[test]
fn appends_roll_at_the_segment_size_and_numbering_goes_on_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1 << 20, 10);
    let mut spool = Spool::open(dir.path(), "app", &s).unwrap();
    spool.append(b"{\"a\":1}\n").unwrap();
    spool.append(b"{\"a\":2}\n").unwrap();
    spool.append(b"").unwrap();
    assert_eq!(spool.used(), 16);
    drop(spool);
    let mut spool = Spool::open(dir.path(), "app", &s).unwrap();
    spool.append(b"{\"a\":3}\n").unwrap();
    assert_eq!(
        segments(dir.path()),
        vec![
            ("00000000000000000001.ndjson".into(), "{\"a\":1}\n".into()),
            ("00000000000000000002.ndjson".into(), "{\"a\":2}\n".into()),
            ("00000000000000000003.ndjson".into(), "{\"a\":3}\n".into()),
        ]
    );
    assert_eq!(spool.used(), 24);
}

#[test]
fn a_half_written_line_left_by_a_crash_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1 << 20, 1 << 10);
    fs::create_dir_all(&s.dir).unwrap();
    fs::write(s.dir.join("00000000000000000007.ndjson"), "{\"a\":1}\n{\"a\":").unwrap();
    fs::write(s.dir.join("notes.txt"), "not a segment").unwrap();
    let spool = Spool::open(dir.path(), "app", &s).unwrap();
    assert_eq!(spool.used(), 8);
    let segs = segments(dir.path());
    assert_eq!(segs[0], ("00000000000000000007.ndjson".into(), "{\"a\":1}\n".into()));
    assert_eq!(segs[1], ("00000000000000000008.ndjson".into(), String::new()));
}

#[test]
fn at_the_cap_appends_are_refused_until_the_sinks_acknowledge_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 40, 16);
    let mut spool = Spool::open(dir.path(), "app", &s).unwrap();
    let line = b"{\"n\":123456789}\n"; // 16 bytes
    spool.append(line).unwrap();
    spool.append(line).unwrap();
    let err = spool.append(line).unwrap_err();
    assert!(matches!(err, AppendError::Full { used: 32, max: 40 }), "{err}");
    // Half of the first segment acknowledged: nothing can go.
    let first = s.dir.join("00000000000000000001.ndjson");
    acknowledge(dir.path(), &first, 8);
    assert!(spool.append(line).is_err());
    // All of it: the segment is deleted and the append goes through.
    acknowledge(dir.path(), &first, 16);
    spool.append(line).unwrap();
    assert!(!first.exists());
    assert_eq!(spool.used(), 32);
}

#[test]
fn the_live_segment_is_never_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1 << 20, 1 << 10);
    let mut spool = Spool::open(dir.path(), "app", &s).unwrap();
    spool.append(b"{}\n").unwrap();
    acknowledge(dir.path(), &s.dir.join("00000000000000000001.ndjson"), 3);
    spool.reclaim();
    assert_eq!(segments(dir.path()).len(), 1);
}

/// Reclaiming runs beside the checkpoint thread: it must leave the checkpoint's temporary file
/// (that thread's write in progress) and an unreadable checkpoint where they are, and delete
/// nothing while the checkpoint cannot be read.
#[test]
fn reclaiming_reads_the_checkpoint_without_touching_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1 << 20, 4);
    let mut spool = Spool::open(dir.path(), "app", &s).unwrap();
    spool.append(b"{\"a\":1}\n").unwrap();
    spool.append(b"{\"b\":2}\n").unwrap();
    let first = s.dir.join("00000000000000000001.ndjson");
    acknowledge(dir.path(), &first, 8);
    let tmp = dir.path().join(format!("{}.tmp", checkpoint::FILE_NAME));
    fs::write(&tmp, b"{\"version\":1,\"files\":[]}").unwrap();
    spool.reclaim();
    assert!(!first.exists(), "the acknowledged segment is deleted");
    assert_eq!(
        fs::read(&tmp).unwrap(),
        b"{\"version\":1,\"files\":[]}",
        "the temporary file is untouched"
    );
    // A checkpoint that cannot be read: nothing deleted, nothing moved aside.
    spool.append(b"{\"c\":3}\n").unwrap();
    let saved = dir.path().join(checkpoint::FILE_NAME);
    fs::write(&saved, b"{not json").unwrap();
    spool.reclaim();
    assert_eq!(segments(dir.path()).len(), 2);
    assert_eq!(fs::read(&saved).unwrap(), b"{not json");
}

#[test]
fn interval_fsync_waits_for_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), 1 << 20, 1 << 10);
    s.fsync = Fsync::Interval(Duration::from_millis(1));
    let mut spool = Spool::open(dir.path(), "app", &s).unwrap();
    spool.append(b"{}\n").unwrap();
    assert!(spool.dirty);
    std::thread::sleep(Duration::from_millis(2));
    spool.sync_if_due().unwrap();
    assert!(!spool.dirty);
}
