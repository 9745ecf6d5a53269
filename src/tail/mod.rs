//! The tailer: finds the files of every source, reads them, and hands whole lines on as
//! chunks to every sink that reads the source.
//!
//! It runs on one plain thread: reading from the page cache and finding the last newline of a
//! 256 KiB read is CPU work measured in microseconds, so a thread per file or async file I/O
//! would only add cost. Discovery is inotify on the watched directories (a hint: "look at this
//! path now") plus a stat-only reconcile every `rescan_interval` (the truth). The thread blocks
//! in one `select!` on watcher events, the in-flight budget and shutdown, so idle costs
//! nothing but the periodic reconcile.
//!
//! This file holds the `Tailer`, its main loop and the shutdown drain. The loop's jobs live
//! beside it, each in an `impl Tailer` of its own file: `watch` (inotify, rescans, finding
//! files), `resume` (where a newly opened file starts, and files rotated while the agent was
//! down), `read` (reading, partial lines, handing chunks to the adapt lanes), `rotation`
//! (rename, delete, truncation, copytruncate's copy), `park` (the open-file cap, and files
//! taking turns past it). `index` finds files by inode; `ledger` is all the tailer tells the
//! checkpoint.

mod admit;
pub mod discover;
pub mod file;
pub mod identity;
mod index;
mod lanes;
mod ledger;
pub mod lines;
mod park;
mod read;
mod resume;
mod rotation;
mod status;
mod watch;
mod watches;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use self::admit::Admission;
use self::discover::Root;
use self::file::{FileKey, Tracked};
use self::lanes::Lanes;
use self::ledger::Ledger;
use self::lines::Split;
use self::park::Parking;
use self::watches::{Watch, DIR_POLL};
use crate::budget::Budget;
use crate::checkpoint::{Entry, Msg};
use crate::chunk::Chunk;
use crate::config::{Settings, SourceSettings};
use crate::metrics::{add, Metrics};
use crate::stop::HardStop;

/// How often a rotated-away file is looked at while its writer may still append to it.
const DETACHED_POLL: Duration = Duration::from_millis(250);

/// What the tailer needs from the pipeline.
pub struct TailContext {
    pub settings: Settings,
    /// Checkpoint entries from the last run; `None` on the agent's first start.
    pub saved: Option<Vec<Entry>>,
    /// The adapt stage's lanes. All the chunks of one file generation go to the same lane
    /// (`lanes.rs`), which is what keeps a file's records in order downstream.
    pub lanes: Vec<Sender<Arc<Chunk>>>,
    pub checkpoints: Sender<Msg>,
    pub budget: Arc<Budget>,
    pub metrics: Arc<Metrics>,
    /// Disconnected when a graceful shutdown begins: stop discovering, drain, return. A
    /// message before it says the stop is for a reload: a line still being written is then
    /// left for the next pipeline rather than shipped in two pieces.
    pub shutdown: Receiver<()>,
    /// Set when the shutdown deadline passed: stop at once.
    pub hard_stop: HardStop,
}

pub struct Tailer {
    sources: Vec<SourceSettings>,
    roots: Vec<Root>,
    rescan_interval: Duration,
    rotate_wait: Duration,
    /// Open files that have not grown for this long are parked (`park`).
    close_inactive: Duration,
    read_bytes: usize,
    /// The open-file cap: `max_open_files`, held below the descriptor limit (`park`).
    max_open_files: usize,
    /// The inotify watch cap: `max_watches` (`watches`).
    max_watches: usize,
    first_start: bool,
    saved: HashMap<FileKey, Entry>,
    files: HashMap<FileKey, Tracked>,
    /// The path of every attached file, open or parked.
    by_path: HashMap<PathBuf, FileKey>,
    /// Files whose descriptor was closed to stay within the cap, and those waiting for one.
    parking: Parking,
    /// Which matched paths may be opened (links, the agent's own files), and opening them.
    admission: Admission,
    /// Paths whose open failed or that were refused, with why (for `tailship status`), so the
    /// failure is logged once, not at every rescan.
    failed: HashMap<PathBuf, String>,
    lanes: Lanes,
    ledger: Ledger,
    budget: Arc<Budget>,
    metrics: Arc<Metrics>,
    hard_stop: HardStop,
    splits: Vec<Split>,
}

/// Runs the tailer until shutdown; returns when every file is drained (or at the hard stop),
/// dropping the chunk senders so the sinks flush and finish.
pub fn run(ctx: TailContext) {
    let TailContext {
        settings,
        saved,
        lanes,
        checkpoints,
        budget,
        metrics,
        shutdown,
        hard_stop,
    } = ctx;
    let mut t = Tailer {
        roots: discover::roots(&settings.sources),
        sources: settings.sources.clone(),
        admission: Admission::new(&settings.sources, settings.agent_files.clone()),
        rescan_interval: settings.rescan_interval,
        rotate_wait: settings.rotate_wait,
        close_inactive: settings.close_inactive,
        read_bytes: settings.read_buffer_bytes,
        max_open_files: park::process_cap(settings.max_open_files, &settings.sinks),
        max_watches: settings.max_watches,
        first_start: saved.is_none(),
        saved: saved
            .unwrap_or_default()
            .into_iter()
            .map(|e| ((e.dev, e.ino), e))
            .collect(),
        files: HashMap::new(),
        by_path: HashMap::new(),
        parking: Parking::default(),
        failed: HashMap::new(),
        lanes: Lanes::new(lanes),
        ledger: Ledger::new(checkpoints),
        budget,
        metrics,
        hard_stop,
        splits: Vec::new(),
    };
    t.run_loop(&shutdown);
}

/// What ended the tailer's wait, when it brings work.
enum Woke {
    Event(notify::Event),
    /// The stop message (a reload's: `for_reload`) or the disconnection (a shutdown).
    Stop {
        for_reload: bool,
    },
}

/// The main loop's clocks, and the shutdown drain once it has begun.
struct LoopState {
    next_rescan: Instant,
    next_detached_poll: Instant,
    /// The next poll of the directories past the watch cap (`watches`).
    next_dir_poll: Instant,
    /// While draining: per file, the size it had when the shutdown began. Lines written
    /// after that are left for the next start, so a busy writer cannot hold us up.
    drain_to: Option<HashMap<FileKey, u64>>,
    /// The stop is for a reload: unterminated last lines stay unread (`TailContext::shutdown`).
    for_reload: bool,
}

impl Tailer {
    fn run_loop(&mut self, shutdown: &Receiver<()>) {
        // Watches first: a file created or renamed while the startup scan runs is seen by its
        // events, queued until the loop takes them. Which directories there are to watch takes
        // a walk of its own (the scan's second walk finds them watched already).
        let mut watch = Watch::start(self.max_watches, Arc::clone(&self.metrics));
        let started = Instant::now();
        let dirs = discover::walk(&self.roots, &self.sources, &mut |_, _| {}).dirs;
        watch.sync(&self.roots, dirs);
        self.rescan(true, &mut watch);
        tracing::info!(directories = watch.watched(), "watching directories");
        self.resume_renamed_while_down();
        tracing::info!(
            files = self.files.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "startup scan done"
        );
        self.metrics.ready.store(true, Ordering::Relaxed);
        let mut state = LoopState {
            next_rescan: Instant::now() + self.rescan_interval,
            next_detached_poll: Instant::now() + DETACHED_POLL,
            next_dir_poll: Instant::now() + self.dir_poll(),
            drain_to: None,
            for_reload: false,
        };
        while !self.hard_stop.is_set() {
            self.metrics.tail_heartbeat.beat();
            let draining = state.drain_to.is_some();
            if !draining {
                self.take_events(&mut watch, &mut state);
            }
            self.poll_detached(&mut state);
            if !draining {
                self.take_turns();
            }
            let blocked = self.read_dirty();
            self.flush_and_close(draining);
            if !blocked && !draining {
                // Files just read to their end can make room for those waiting.
                self.take_turns();
            }
            if !blocked && state.drain_to.as_ref().is_some_and(|to| self.drained(to)) {
                break;
            }
            let more = !blocked && self.files.values().any(|f| f.dirty);
            if !more {
                self.wait(&mut watch, &mut state, shutdown, blocked);
            }
        }
        drop(watch);
        self.finish(state.for_reload);
        self.metrics.tail_heartbeat.finished();
    }

    /// The events inotify queued while we read, and the reconcile when it is due (or when
    /// events were lost).
    fn take_events(&mut self, watch: &mut Watch, state: &mut LoopState) {
        while let Ok(ev) = watch.events.try_recv() {
            self.on_event(ev, watch);
        }
        if Instant::now() >= state.next_dir_poll {
            self.poll_dirs(watch);
            state.next_dir_poll = Instant::now() + self.dir_poll();
        }
        let overflow = watch.take_overflow();
        if overflow || Instant::now() >= state.next_rescan {
            self.rescan(false, watch);
            if let Some(idle_since) = Instant::now().checked_sub(self.close_inactive) {
                self.close_inactive(idle_since);
            }
            if overflow {
                // Files the last run saved and we have not found yet may have been renamed
                // while the events were lost: look for them by inode too.
                self.resume_renamed_while_down();
            }
            state.next_rescan = Instant::now() + self.rescan_interval;
        }
    }

    /// Rotated-away files get no events from the watched directories; a writer that has not
    /// reopened its log yet may still append to them.
    fn poll_detached(&mut self, state: &mut LoopState) {
        if Instant::now() >= state.next_detached_poll {
            for f in self.files.values_mut().filter(|f| !f.attached) {
                f.dirty = true;
            }
            state.next_detached_poll = Instant::now() + DETACHED_POLL;
        }
    }

    /// How often the directories past the watch cap are polled: `DIR_POLL`, or the rescan
    /// interval when that is shorter.
    fn dir_poll(&self) -> Duration {
        DIR_POLL.min(self.rescan_interval)
    }

    /// Every file has been read up to the size it had when the shutdown began.
    fn drained(&self, targets: &HashMap<FileKey, u64>) -> bool {
        self.files
            .iter()
            .all(|(k, f)| !f.dirty || f.read_offset >= targets.get(k).copied().unwrap_or(0))
    }

    /// Blocks until something may have changed: an event, the shutdown, freed budget (when
    /// `blocked` on it), the hard stop, or the next deadline.
    fn wait(&mut self, watch: &mut Watch, state: &mut LoopState, shutdown: &Receiver<()>, blocked: bool) {
        let mut due = self.next_deadline(state.next_rescan, state.next_detached_poll);
        if watch.polls() && state.drain_to.is_none() {
            due = due.min(state.next_dir_poll);
        }
        let timeout = due.saturating_duration_since(Instant::now());
        let draining = state.drain_to.is_some();
        let never = crossbeam_channel::never();
        let never_ev = crossbeam_channel::never();
        let freed = if blocked { self.budget.freed() } else { &never };
        let stop = if draining { &never } else { shutdown };
        let events = if draining { &never_ev } else { &watch.events };
        let hard_stop = self.hard_stop.channel();
        // Waiting for events, budget or time is not a stall (`liveness`); what is done once
        // woken is the tailer's own work again.
        let woke = self.metrics.tail_heartbeat.wait_for(|| {
            select! {
                recv(events) -> ev => ev.ok().map(Woke::Event),
                recv(stop) -> msg => Some(Woke::Stop { for_reload: msg.is_ok() }),
                recv(freed) -> _ => None,
                recv(hard_stop) -> _ => None,
                default(timeout) => None,
            }
        });
        match woke {
            Some(Woke::Event(ev)) => self.on_event(ev, watch),
            Some(Woke::Stop { for_reload }) => {
                // Stop discovery: no more events; read what is on disk now.
                watch.stop();
                state.drain_to = Some(self.begin_drain());
                state.for_reload = for_reload;
            }
            None => {}
        }
    }

    /// Marks every file for reading and returns the size each has now: what the drain reads.
    fn begin_drain(&mut self) -> HashMap<FileKey, u64> {
        let mut targets = HashMap::new();
        for (k, f) in self.files.iter_mut() {
            f.dirty = true;
            targets.insert(*k, f.file.metadata().map(|m| m.len()).unwrap_or(0));
        }
        tracing::info!(files = self.files.len(), "draining files before shutdown");
        targets
    }

    fn finish(&mut self, for_reload: bool) {
        if !self.hard_stop.is_set() && !for_reload {
            // Shutdown: the pod may be ending, so an unterminated last line would be lost
            // with the volume; ship it now (a later restart resumes after it).
            let keys: Vec<FileKey> = self.files.keys().copied().collect();
            for k in keys {
                self.flush_partial(k);
            }
        } else {
            let behind = self.files.values().filter(|f| f.read_offset < f.size).count();
            add(&self.metrics.files_closed_before_eof, behind as u64);
        }
    }

    /// The earliest moment something is due without an event: a rescan, a partial line's
    /// timeout, or a poll of a rotated-away file.
    fn next_deadline(&self, next_rescan: Instant, next_detached_poll: Instant) -> Instant {
        let mut at = next_rescan;
        for f in self.files.values() {
            if f.waits_for_newline() {
                at = at.min(f.partial_since + self.sources[f.source].partial_line_timeout);
            }
        }
        if self.files.values().any(|f| !f.attached) {
            at = at.min(next_detached_poll);
        }
        at
    }

    /// Partial-line timeouts, and closing rotated-away files that are drained and quiet.
    fn flush_and_close(&mut self, draining: bool) {
        let now = Instant::now();
        self.flush_timed_out_partials(now);
        if !draining {
            self.close_drained(now);
        }
    }
}
