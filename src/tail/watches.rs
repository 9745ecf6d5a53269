//! The inotify watcher, and which directories it watches: one watch per directory, up to
//! `max_watches`; the directories past that cap, or refused by the kernel (ENOSPC: its
//! `fs.inotify.max_user_watches` is shared by every process of the user on the node), are
//! polled instead.
//!
//! The app next door chooses how many directories it makes, and in node mode every pod's log
//! directory is one. A watch costs kernel memory (about 1 KiB) counted against a per-user limit
//! that other agents on the node share, so the tailer never takes more than its cap, and a
//! directory it cannot watch is still read: polled (its mtime stated every `DIR_POLL`, and
//! listed when it changed) and its open files looked at on the same tick.
//!
//! Each directory gets a non-recursive watch of its own (not notify's recursive mode, which
//! adds watches for new subdirectories by itself, past any count we could keep): the walk of
//! the reconcile says which directories there are (`discover::Walked::dirs`), and new ones
//! seen by their events are added here at once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Receiver;
use notify::Watcher;

use super::discover::Root;
use crate::metrics::Metrics;

/// Events queued between two turns of the tailer's loop; past it they are dropped and a
/// rescan stands in for them.
pub(super) const EVENT_QUEUE: usize = 8192;

/// How often the directories past the watch cap are polled (at most; never less often than
/// the rescan, which walks them all anyway).
pub(super) const DIR_POLL: Duration = Duration::from_secs(1);

/// A directory that is polled rather than watched.
struct Polled {
    /// How deep below it the patterns reach (for listing it when it changed).
    max_depth: Option<usize>,
    /// Its mtime when last looked at: a file created, renamed or deleted in it changes it.
    mtime: Option<SystemTime>,
    /// That mtime was recent: a change in the same tick of the file system's clock would
    /// leave it as it is, so the directory is listed again at the next poll anyway.
    recent: bool,
}

/// A directory's mtime, and whether it is too recent to tell a later change by.
fn look(dir: &Path) -> (Option<SystemTime>, bool) {
    let mtime = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
    let recent = mtime.is_some_and(|t| !t.elapsed().is_ok_and(|age| age >= DIR_POLL));
    (mtime, recent)
}

/// The inotify watcher, the events it queued, and the directories it watches or polls.
pub(super) struct Watch {
    /// `None` when inotify is unavailable, and once the shutdown stopped discovery.
    watcher: Option<notify::RecommendedWatcher>,
    pub(super) events: Receiver<notify::Event>,
    /// Events were lost: only a full reconcile can tell what happened.
    overflow: Arc<AtomicBool>,
    /// Events dropped because our queue was full (the kernel's own overflow has no count).
    dropped: Arc<AtomicU64>,
    watched: HashSet<PathBuf>,
    polled: HashMap<PathBuf, Polled>,
    /// `max_watches`.
    cap: usize,
    /// The first fallback to polling is logged; later ones are only counted.
    fallback_logged: bool,
    /// The kernel refused a watch (ENOSPC) since the last reconcile: no more are tried until
    /// the next, so a full table costs one failing call per reconcile, not one per directory.
    kernel_full: bool,
    metrics: Arc<Metrics>,
}

impl Watch {
    pub(super) fn start(cap: usize, metrics: Arc<Metrics>) -> Watch {
        // The watcher's callback runs on notify's thread; it must never block, so a full
        // queue only sets `overflow`, which triggers a full reconcile like IN_Q_OVERFLOW.
        let (ev_tx, events) = crossbeam_channel::bounded::<notify::Event>(EVENT_QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (flag, count) = (Arc::clone(&overflow), Arc::clone(&dropped));
        let handler = move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if !ev.need_rescan() => {
                if ev_tx.try_send(ev).is_err() {
                    count.fetch_add(1, Ordering::Relaxed);
                    flag.store(true, Ordering::Relaxed);
                }
            }
            _ => flag.store(true, Ordering::Relaxed),
        };
        // Watches are per directory and never recursive, so whether notify follows links is
        // moot; kept off in case a path passed here is one.
        let config = notify::Config::default().with_follow_symlinks(false);
        let watcher = match notify::RecommendedWatcher::new(handler, config) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; relying on the periodic rescan");
                None
            }
        };
        Watch {
            watcher,
            events,
            overflow,
            dropped,
            watched: HashSet::new(),
            polled: HashMap::new(),
            cap,
            fallback_logged: false,
            kernel_full: false,
            metrics,
        }
    }

    /// Whether events were lost since the last call; logged, since what was renamed or
    /// created meanwhile is known only from the rescan that follows.
    pub(super) fn take_overflow(&self) -> bool {
        if !self.overflow.swap(false, Ordering::Relaxed) {
            return false;
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        tracing::warn!(
            dropped,
            queue = EVENT_QUEUE,
            "file events were lost (our queue or the kernel's inotify queue overflowed); rescanning, and looking for checkpointed files by inode"
        );
        true
    }

    /// How many directories are watched.
    pub(super) fn watched(&self) -> usize {
        self.watched.len()
    }

    /// Whether some directories are polled (so the poll tick has work).
    pub(super) fn polls(&self) -> bool {
        !self.polled.is_empty()
    }

    /// Whether `dir` is watched or polled already.
    pub(super) fn is_known(&self, dir: &Path) -> bool {
        self.watched.contains(dir) || self.polled.contains_key(dir)
    }

    /// Whether `dir` is polled rather than watched.
    pub(super) fn is_polled(&self, dir: &Path) -> bool {
        self.polled.contains_key(dir)
    }

    /// Ends discovery by events (the shutdown drain reads only what is known).
    pub(super) fn stop(&mut self) {
        self.watcher = None;
    }

    /// The reconcile's view: `roots` (those that exist) and the directories the walk found
    /// below them are all the directories there are. Those gone are let go; new ones are
    /// watched while there is room under the cap, polled past it; polled ones move to a
    /// watch when room was freed.
    pub(super) fn sync(&mut self, roots: &[Root], dirs: Vec<Root>) {
        self.kernel_full = false;
        let existing = roots.iter().filter(|r| r.dir.is_dir()).cloned();
        let all: Vec<Root> = existing.chain(dirs).collect();
        let present: HashSet<&Path> = all.iter().map(|r| r.dir.as_path()).collect();
        let gone: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|d| !present.contains(d.as_path()))
            .cloned()
            .collect();
        for dir in gone {
            self.forget(&dir);
        }
        self.polled.retain(|d, _| present.contains(d.as_path()));
        for root in all {
            if self.watched.contains(&root.dir) {
                continue;
            }
            if self.polled.contains_key(&root.dir) && (self.watched.len() >= self.cap || self.kernel_full) {
                continue;
            }
            self.add(root);
        }
        self.publish();
    }

    /// A directory seen by its event (created, or moved in): watched if there is room, else
    /// polled. It is listed by the caller, which this does not do.
    pub(super) fn add_dir(&mut self, root: Root) {
        if !self.watched.contains(&root.dir) {
            self.add(root);
            self.publish();
        }
    }

    /// `dir` was deleted or moved away: inotify dropped its watch, and the slot is free.
    pub(super) fn forget(&mut self, dir: &Path) {
        if self.watched.remove(dir) {
            if let Some(w) = &mut self.watcher {
                // Already gone when the kernel dropped the watch with the directory.
                let _ = w.unwatch(dir);
            }
            self.publish();
        }
        if self.polled.remove(dir).is_some() {
            self.publish();
        }
    }

    fn add(&mut self, root: Root) {
        if self.watched.len() < self.cap && !self.kernel_full {
            let Some(w) = &mut self.watcher else { return };
            match w.watch(&root.dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.polled.remove(&root.dir);
                    self.watched.insert(root.dir);
                    return;
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    self.kernel_full = true;
                    self.fall_back(&root.dir, "the kernel's fs.inotify.max_user_watches is used up");
                }
                // Gone again, or not readable: the rescan says which, and retries.
                Err(e) => {
                    tracing::debug!(dir = %root.dir.display(), error = %e, "cannot watch directory");
                    return;
                }
            }
        } else {
            let why = if self.kernel_full {
                "the kernel's fs.inotify.max_user_watches is used up"
            } else {
                "max_watches reached"
            };
            self.fall_back(&root.dir, why);
        }
        let (mtime, recent) = look(&root.dir);
        self.polled.entry(root.dir).or_insert(Polled {
            max_depth: root.max_depth,
            mtime,
            recent,
        });
    }

    fn fall_back(&mut self, dir: &Path, why: &str) {
        if !self.fallback_logged {
            self.fallback_logged = true;
            tracing::warn!(
                path = %dir.display(),
                watched = self.watched.len(),
                max_watches = self.cap,
                reason = why,
                "cannot watch more directories; polling the rest (tailship_watch_fallback_dirs counts them)"
            );
        }
    }

    /// The polled directories whose mtime changed since they were last looked at (or was too
    /// recent to tell), as roots to list: a file was created, renamed or deleted in them.
    pub(super) fn poll(&mut self) -> Vec<Root> {
        let mut changed = Vec::new();
        for (dir, p) in &mut self.polled {
            let (mtime, recent) = look(dir);
            if mtime != p.mtime || p.recent {
                (p.mtime, p.recent) = (mtime, recent);
                changed.push(Root {
                    dir: dir.clone(),
                    max_depth: p.max_depth,
                });
            }
        }
        changed
    }

    fn publish(&self) {
        let m = &self.metrics;
        m.watched_dirs.store(self.watched.len() as u64, Ordering::Relaxed);
        m.watch_fallback_dirs.store(self.polled.len() as u64, Ordering::Relaxed);
    }
}
