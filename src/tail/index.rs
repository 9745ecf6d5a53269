//! Finding files by inode: which of a set of wanted `(device, inode)`s are in which directories,
//! and under what names.
//!
//! A file the checkpoint knows may have been renamed while the agent was down, and a file
//! rotated away while its descriptor was parked must be found again. Looking for each one
//! separately costs a directory listing and a stat of every file per wanted inode (entries ×
//! files); here each directory is listed once and only the names whose inode number is wanted
//! are stat-ed (for the device), so the cost is one listing per directory.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::file::FileKey;

/// A regular file found by `find`: where it is now and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub len: u64,
    /// When the inode was created, where the file system records it.
    pub created: Option<std::time::SystemTime>,
}

/// For each wanted key, a regular file with that `(device, inode)` in one of `dirs` (the first
/// one met; a second hard link is the same file). Unreadable directories are skipped: what is
/// not found is simply not resumed from there.
pub fn find<'a>(dirs: impl IntoIterator<Item = &'a Path>, wanted: &HashSet<FileKey>) -> HashMap<FileKey, Found> {
    let inodes: HashSet<u64> = wanted.iter().map(|k| k.1).collect();
    let mut found = HashMap::new();
    let mut listed: HashSet<&Path> = HashSet::new();
    for dir in dirs {
        if !listed.insert(dir) || found.len() == wanted.len() {
            continue;
        }
        let Ok(listing) = fs::read_dir(dir) else { continue };
        for d in listing.flatten() {
            // The inode number comes with the directory entry; only a candidate costs a stat.
            if !inodes.contains(&d.ino()) {
                continue;
            }
            // Not through a link: the file itself, as `open_regular` will insist.
            let Ok(m) = fs::symlink_metadata(d.path()) else {
                continue;
            };
            let key = (m.dev(), m.ino());
            if m.is_file() && wanted.contains(&key) && !found.contains_key(&key) {
                found.insert(
                    key,
                    Found {
                        path: d.path(),
                        len: m.len(),
                        created: m.created().ok(),
                    },
                );
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &Path) -> FileKey {
        let m = fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    #[test]
    fn finds_renamed_files_by_inode_across_directories() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (x, y, other) = (a.path().join("x.log"), b.path().join("y.log"), a.path().join("o.log"));
        fs::write(&x, b"xx\n").unwrap();
        fs::write(&y, b"y\n").unwrap();
        fs::write(&other, b"o\n").unwrap();
        let (kx, ky) = (key(&x), key(&y));
        fs::rename(&x, a.path().join("x.log.1")).unwrap();
        fs::rename(&y, b.path().join("y.log.7")).unwrap();
        let gone = (kx.0, u64::MAX);
        let wanted: HashSet<FileKey> = [kx, ky, gone].into_iter().collect();
        let found = find([a.path(), b.path(), a.path()], &wanted);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[&kx].path, a.path().join("x.log.1"));
        assert_eq!(found[&kx].len, 3);
        assert_eq!(found[&ky].path, b.path().join("y.log.7"));
        assert!(!found.contains_key(&gone));
    }

    #[test]
    fn a_directory_with_the_inode_number_is_not_a_file() {
        let a = tempfile::tempdir().unwrap();
        let sub = a.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let wanted: HashSet<FileKey> = [key(&sub)].into_iter().collect();
        assert!(find([a.path()], &wanted).is_empty());
        assert!(find([Path::new("/nonexistent/dir")], &wanted).is_empty());
    }

    #[test]
    fn thousands_of_entries_cost_one_listing() {
        // 3,000 wanted inodes among 6,000 files: one pass, not 3,000 × 6,000 stats.
        let a = tempfile::tempdir().unwrap();
        let mut wanted = HashSet::new();
        for i in 0..6000 {
            let p = a.path().join(format!("f{i}.log"));
            fs::write(&p, b"").unwrap();
            if i % 2 == 0 {
                wanted.insert(key(&p));
            }
        }
        let t = std::time::Instant::now();
        let found = find([a.path()], &wanted);
        assert_eq!(found.len(), 3000);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
    }
}
