//! Which paths belong to which source: include/exclude globs, the directories to watch and
//! walk for them, and the full walk used by the periodic reconcile.
//!
//! inotify events are hints that make new files visible at once; this walk is the truth.

use std::path::{Path, PathBuf};

use crate::config::SourceSettings;

/// A directory to watch and walk, and how deep below it a pattern can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub dir: PathBuf,
    /// `None` for `**` patterns (any depth); `Some(1)` for files directly inside `dir`.
    pub max_depth: Option<usize>,
}

/// The literal directory prefix of an absolute glob and how deep its pattern reaches:
/// `/var/log/**/*.log` → (`/var/log`, any depth); `/var/log/*/app.log` → (`/var/log`, 2).
pub fn root_of(pattern: &str) -> Root {
    let parts: Vec<&str> = pattern.split('/').collect();
    let is_glob = |p: &str| p.contains(['*', '?', '[', '{']);
    let first_glob = parts.iter().position(|p| is_glob(p)).unwrap_or(parts.len() - 1);
    let dir: PathBuf = if first_glob <= 1 {
        PathBuf::from("/")
    } else {
        PathBuf::from(parts[..first_glob].join("/"))
    };
    let rest = &parts[first_glob..];
    let max_depth = if rest.contains(&"**") || rest.iter().any(|p| p.contains("**")) {
        None
    } else {
        Some(rest.len())
    };
    Root { dir, max_depth }
}

/// All roots of all sources, merged so that no directory is walked twice.
pub fn roots(sources: &[SourceSettings]) -> Vec<Root> {
    let mut all: Vec<Root> = sources
        .iter()
        .flat_map(|s| s.include.iter().map(|p| root_of(p)))
        .collect();
    all.sort_by(|a, b| a.dir.cmp(&b.dir));
    let mut merged: Vec<Root> = Vec::new();
    for r in all {
        match merged.iter_mut().find(|m| r.dir.starts_with(&m.dir)) {
            Some(m) => {
                let extra = r.dir.components().count() - m.dir.components().count();
                m.max_depth = match (m.max_depth, r.max_depth) {
                    (None, _) | (_, None) => None,
                    (Some(a), Some(b)) => Some(a.max(b + extra)),
                };
            }
            None => merged.push(r),
        }
    }
    merged
}

/// The index of the first source whose include globs match `path` and whose exclude globs
/// do not.
pub fn source_for(sources: &[SourceSettings], path: &Path) -> Option<usize> {
    sources
        .iter()
        .position(|s| s.include_set.is_match(path) && !s.exclude_set.is_match(path))
}

/// How many directory entries one walk looks at, at most. The app next door may create a
/// million files (or directories) under a `**` root; the walk runs at every rescan, so it is
/// cut short here and the files past the cap are found by their events, or not at all.
pub const WALK_ENTRY_CAP: usize = 200_000;

/// What a walk found.
pub struct Walked {
    /// Every matched path, with its source.
    pub found: Vec<(PathBuf, usize)>,
    /// The directories below the roots that a new matching file could appear in (those less
    /// deep than their root's pattern reaches), each with how deep below it a pattern still
    /// reaches: what the tailer watches, or polls past its watch cap (`watch`).
    pub dirs: Vec<Root>,
    /// The walk stopped at `WALK_ENTRY_CAP` entries.
    pub capped: bool,
}

/// Every path under `roots` matched by a source, with that source, looking at no more than
/// `WALK_ENTRY_CAP` entries. Links to directories are not followed (a link to `/sys`, or a
/// chain of links doubling at each level, would make the walk endless); links to files are
/// returned like files, for `admit` to judge. A root that is itself a link is followed: the
/// config named it. Unreadable directories are skipped and reported to `on_error`.
pub fn walk(roots: &[Root], sources: &[SourceSettings], on_error: &mut dyn FnMut(&Path, &walkdir::Error)) -> Walked {
    let mut found = Vec::new();
    let mut dirs = Vec::new();
    let mut seen = 0usize;
    for root in roots {
        let mut w = walkdir::WalkDir::new(&root.dir).follow_links(false).min_depth(1);
        if let Some(d) = root.max_depth {
            w = w.max_depth(d);
        }
        for item in w {
            seen += 1;
            if seen > WALK_ENTRY_CAP {
                return Walked {
                    found,
                    dirs,
                    capped: true,
                };
            }
            match item {
                Ok(e) if e.file_type().is_dir() => {
                    let left = root.max_depth.map(|d| d.saturating_sub(e.depth()));
                    if left != Some(0) {
                        dirs.push(Root {
                            dir: e.into_path(),
                            max_depth: left,
                        });
                    }
                }
                Ok(e) => {
                    if let Some(s) = source_for(sources, e.path()) {
                        found.push((e.into_path(), s));
                    }
                }
                // A root that does not exist yet is normal (the app creates it later).
                Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => {}
                Err(e) => on_error(e.path().unwrap_or(&root.dir), &e),
            }
        }
    }
    Walked {
        found,
        dirs,
        capped: false,
    }
}

/// `dir` as a root of its own: how deep below it the pattern of the root holding it still
/// reaches. `None` when no root holds it, or its patterns reach no deeper than `dir` itself.
pub fn below(roots: &[Root], dir: &Path) -> Option<Root> {
    let root = roots.iter().find(|r| dir.starts_with(&r.dir))?;
    let depth = dir.components().count() - root.dir.components().count();
    let max_depth = match root.max_depth {
        None => None,
        Some(d) if d > depth => Some(d - depth),
        Some(_) => return None,
    };
    Some(Root {
        dir: dir.to_owned(),
        max_depth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_of_patterns() {
        assert_eq!(
            root_of("/var/log/**/*.log"),
            Root {
                dir: "/var/log".into(),
                max_depth: None
            }
        );
        assert_eq!(
            root_of("/var/log/*.log"),
            Root {
                dir: "/var/log".into(),
                max_depth: Some(1)
            }
        );
        assert_eq!(
            root_of("/var/log/*/app.log"),
            Root {
                dir: "/var/log".into(),
                max_depth: Some(2)
            }
        );
        assert_eq!(
            root_of("/var/log/app.log"),
            Root {
                dir: "/var/log".into(),
                max_depth: Some(1)
            }
        );
        assert_eq!(
            root_of("/*.log"),
            Root {
                dir: "/".into(),
                max_depth: Some(1)
            }
        );
    }

    #[test]
    fn nested_roots_merge() {
        let mk = |p: &str| root_of(p);
        let mut all = [mk("/var/log/*.log"), mk("/var/log/app/*/x.log")];
        all.sort_by(|a, b| a.dir.cmp(&b.dir));
        let src = |inc: Vec<&str>| crate::config::SourceSettings {
            name: "s".into(),
            include: inc.into_iter().map(String::from).collect(),
            include_set: globset::GlobSet::empty(),
            exclude_set: globset::GlobSet::empty(),
            format: crate::config::Format::Raw,
            read_from: crate::config::ReadFrom::Beginning,
            max_line_bytes: 1024,
            partial_line_timeout: std::time::Duration::from_secs(1),
            multiline: None,
            fields: Vec::new(),
            kubernetes_path_metadata: true,
            follow_symlinks: crate::config::FollowSymlinks::WithinRoot,
            symlink_roots: Vec::new(),
            strict: false,
            transforms: Default::default(),
            written_transforms: Vec::new(),
            input: None,
        };
        let r = roots(&[src(vec!["/var/log/*.log", "/var/log/app/*/x.log"])]);
        assert_eq!(
            r,
            vec![Root {
                dir: "/var/log".into(),
                max_depth: Some(3)
            }]
        );
    }
}
