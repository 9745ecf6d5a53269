//! The tcp sink: NDJSON (or raw) lines over one TCP connection, plain or TLS, with no
//! application-level acknowledgement — so what it promises rests on what TCP itself says.
//!
//! A batch's marks go to the checkpoint once the peer's TCP has acknowledged its last byte
//! (`conn.rs`). The batch stays in the replay window (`window.rs`) until the peer's
//! application has read past it and `settle` has passed since with the connection open; a
//! close, reset or EOF before that writes it again on the next connection — duplicates, never
//! loss. After a close the window is written again one batch at a time, ramping up, and a
//! batch the peer keeps closing on is bisected down to the record, which after
//! `poison_closes` closes goes to the dead-letter file. The window is bounded in bytes
//! (`replay_window_bytes`): at the bound the sink waits for the oldest batch to settle.
//!
//! Everything runs on the sink thread: the batcher calls `poll_at`/`on_poll` every `POLL`
//! while batches are in the window, which is when acks and closes are looked at.

mod conn;
mod window;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use self::conn::{Conn, TlsSetup};
use self::window::{Closed, Entry, Progress, Window};
use super::backoff::Backoff;
use super::batcher::{self, Batch, Deliver};
use super::deadletter::DeadLetter;
use super::{tls, SinkContext};
use crate::checkpoint::Msg;
use crate::config::{SinkKind, TcpSettings};
use crate::metrics::{add, Metrics};
use crate::stop::HardStop;

/// How often acks and closes are looked at while batches written are not yet acknowledged.
const POLL: Duration = Duration::from_millis(5);
/// How often once everything written is acknowledged (its marks are at the checkpoint): only
/// the receiver's reading and the settling are left to see, which nothing waits on closely. A
/// sidecar's sink spends most of its time here, between batches.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// How often, while the window is full and the connection up.
const ROOM_POLL: Duration = Duration::from_millis(1);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// After a close on a connection that had acknowledged bytes, the next one is tried after
/// this: the receiver is up, and the window is bisecting a batch it closes on.
const RECONNECT_AFTER_PROGRESS: Duration = Duration::from_millis(10);
/// What a receiver is assumed to hold in its own buffers, read from the socket and not yet
/// handled (Fluent Bit's `in_tcp`: 32 KiB by default).
const APP_BUFFER: u64 = 1 << 20;
/// Poison records are logged once, then at most once per this.
const POISON_LOG_EVERY: Duration = Duration::from_secs(10);

/// Runs a tcp sink until the adapt stage is gone and the window is settled (or the hard stop).
pub fn run(ctx: SinkContext) {
    let SinkContext {
        index,
        slot,
        settings,
        mut encoder,
        records,
        checkpoints,
        metrics,
        hard_stop,
        budget: _,
    } = ctx;
    let SinkKind::Tcp(tcp) = settings.kind else {
        return;
    };
    let name = settings.name.clone();
    let tls = match tcp.tls.as_ref().map(|t| setup(t, &tcp.address)).transpose() {
        Ok(t) => t,
        Err(e) => {
            // Checked at validation; a CA file gone since is the operator's to fix: the lines
            // wait on disk.
            tracing::error!(sink = %name, error = %e, "tcp sink cannot set up TLS; it sends nothing");
            metrics.sinks[index].failed();
            let _ = hard_stop.channel().recv();
            return;
        }
    };
    // No attempt made yet: up until one fails.
    metrics.sinks[index].up.store(1, std::sync::atomic::Ordering::Relaxed);
    let mut sink = TcpSink {
        dead_letter: DeadLetter::new(&name, &tcp.dead_letter),
        window: Window::new(tcp.settle, tcp.poison_closes),
        name,
        index,
        slot,
        settings: tcp,
        tls,
        conn: None,
        progressed: false,
        retry_at: None,
        backoff: Backoff::new(RETRY_MIN, RETRY_MAX),
        failures: 0,
        spare: Vec::new(),
        poison_logged: None,
        poison_unlogged: 0,
        largest_window: 0,
        next_poll: Instant::now(),
        checkpoints,
        metrics: Arc::clone(&metrics),
        hard_stop: hard_stop.clone(),
    };
    let heartbeat = &metrics.sinks[index].heartbeat;
    batcher::run(
        &records,
        &mut encoder,
        settings.batch,
        true,
        &hard_stop,
        heartbeat,
        &mut sink,
    );
    sink.close();
}

fn setup(t: &crate::config::TlsSettings, address: &str) -> Result<TlsSetup, tls::Error> {
    Ok(TlsSetup {
        config: tls::client_config(t)?,
        name: tls::server_name(t, address)?,
    })
}

struct TcpSink {
    name: String,
    index: usize,
    /// The checkpoint slot its acknowledgements name (`SinkContext::slot`).
    slot: usize,
    settings: Box<TcpSettings>,
    tls: Option<TlsSetup>,
    conn: Option<Conn>,
    /// Whether the current connection has acknowledged anything.
    progressed: bool,
    /// No connection before this (the backoff after a failure).
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Failed attempts in a row, for logging at the 1st, 2nd, 4th, …
    failures: u32,
    window: Window,
    /// Buffers of settled batches, handed back to the batcher.
    spare: Vec<Vec<u8>>,
    dead_letter: DeadLetter,
    poison_logged: Option<Instant>,
    poison_unlogged: u64,
    /// The largest receive window a receiver advertised (logged at the end, for tuning).
    largest_window: u64,
    /// When the next step is due while the window holds batches.
    next_poll: Instant,
    checkpoints: Sender<Msg>,
    metrics: Arc<Metrics>,
    hard_stop: HardStop,
}

impl TcpSink {
    /// One turn: connect if due, write what the ramp allows, look for a close, and apply what
    /// the peer's TCP acknowledged.
    fn step(&mut self) {
        let now = Instant::now();
        self.next_poll = now + POLL;
        if self.conn.is_none() {
            if let Some(t) = self.retry_at.filter(|t| *t > now) {
                self.next_poll = t;
                return;
            }
            if self.window.is_empty() {
                return;
            }
            match Conn::connect(&self.settings.address, self.tls.as_ref()) {
                Ok(c) => {
                    self.conn = Some(c);
                    self.progressed = false;
                }
                Err(e) => return self.failed(&e.to_string(), false),
            }
        }
        if let Err(e) = self.write() {
            return self.lost(&e.to_string());
        }
        let Some(conn) = self.conn.as_mut() else { return };
        if let Err(e) = conn.check_open() {
            return self.lost(&e.to_string());
        }
        let (acked, unread, window) = match conn.progress() {
            Ok(p) => p,
            Err(e) => return self.lost(&e.to_string()),
        };
        let floor = self.settings.settle_bytes as u64;
        let progress = Progress {
            acked,
            // Without the receiver's window the bound is `settle_bytes`; 0 trusts time alone.
            unread: if floor == 0 { 0 } else { unread.min(floor) },
            // Past the receiver's whole window (what its kernel can hold) and its own buffer,
            // but at most half the replay window: past that the window would fill and the
            // stream wait for `settle` (a loopback receiver's window grows to tens of MiB).
            settle_bytes: if floor == 0 {
                u64::MAX
            } else {
                floor
                    .max(window + APP_BUFFER)
                    .min(self.settings.replay_window_bytes as u64 / 2)
                    .max(1)
            },
        };
        self.largest_window = self.largest_window.max(window);
        let now = Instant::now();
        let moved = self.window.progress(progress, now);
        if self.window.all_acked() {
            let idle = now + IDLE_POLL;
            self.next_poll = self.window.settles_at().map_or(idle, |t| t.clamp(now + POLL, idle));
        }
        let m = &self.metrics.sinks[self.index];
        if moved.any {
            m.succeeded();
            self.progressed = true;
            self.backoff.reset();
            if self.failures > 0 {
                tracing::info!(sink = %self.name, failures = self.failures, "tcp sink recovered");
                self.failures = 0;
            }
        }
        add(&m.records_sent, moved.records);
        add(&m.batches_sent, moved.batches);
        add(&m.bytes_sent, moved.bytes);
        for marks in moved.marks {
            let _ = self.checkpoints.send(Msg::Ack { sink: self.slot, marks });
        }
        // Settled buffers are kept for the next batches while the spares and the window
        // together stay within the window's size: in a steady stream they then cycle through a
        // fixed set of buffers, instead of a fresh one (page faults, and `madvise` when it is
        // freed) for most batches.
        let mut kept: usize = self.spare.iter().map(Vec::capacity).sum::<usize>() + self.window.bytes();
        for mut b in moved.freed {
            if kept + b.capacity() <= self.settings.replay_window_bytes {
                kept += b.capacity();
                b.clear();
                self.spare.push(b);
            }
        }
    }

    /// Writes what the window lets through.
    fn write(&mut self) -> Result<(), conn::Error> {
        let Some(conn) = self.conn.as_mut() else { return Ok(()) };
        let m = &self.metrics.sinks[self.index];
        while let Some(e) = self.window.next_to_write() {
            if e.writes > 1 {
                add(&m.resent_records, e.records as u64);
            }
            let end = conn.write(&e.bytes)?;
            self.window.wrote(end);
        }
        Ok(())
    }

    /// A connection that could not be made.
    fn failed(&mut self, error: &str, progressed: bool) {
        let m = &self.metrics.sinks[self.index];
        m.failed();
        add(&m.retries, 1);
        self.failures = self.failures.saturating_add(1);
        if self.failures.is_power_of_two() {
            tracing::warn!(sink = %self.name, error, failures = self.failures, unsettled = self.window.records(), "tcp sink: connection failed; reconnecting and sending the unsettled records again");
        }
        let delay = if progressed {
            RECONNECT_AFTER_PROGRESS
        } else {
            self.backoff.next_delay()
        };
        self.retry_at = Some(Instant::now() + delay);
    }

    /// The connection is gone: everything unsettled is written again on the next one.
    fn lost(&mut self, error: &str) {
        // A receiver whose TCP took some of our bytes before it closed is up: the next
        // connection comes at once (the window is narrowing down a record it closes on),
        // without the backoff for one that cannot be reached.
        let took_bytes = self
            .conn
            .take()
            .is_some_and(|mut c| c.progress().is_ok_and(|(acked, _, _)| acked > 0));
        let progressed = std::mem::take(&mut self.progressed) || took_bytes;
        match self.window.closed() {
            Closed::Resend | Closed::Split => {}
            Closed::Again { closes } => {
                tracing::debug!(sink = %self.name, closes, "tcp sink: the receiver closed with one record alone in flight");
            }
            Closed::Poison { entry, closes } => self.poison(entry, closes),
        }
        self.failed(error, progressed);
    }

    /// A record the receiver closed the connection on `closes` times, alone: to the
    /// dead-letter file, and its marks to the checkpoint (every batch before it is settled).
    fn poison(&mut self, mut entry: Entry, closes: u32) {
        let why = format!("the peer closed the connection {closes} times after this record");
        let m = &self.metrics.sinks[self.index];
        if let Err(e) = self.dead_letter.write(&entry.bytes) {
            // Nowhere to keep it: it stays first in the window and is tried again.
            tracing::error!(sink = %self.name, error = %e, reason = %why, "tcp sink: a record the receiver will not take cannot be dead-lettered; sending it again");
            self.window.push_front(entry);
            return;
        }
        add(&m.dead_letter_records, entry.records as u64);
        let now = Instant::now();
        self.poison_unlogged += entry.records as u64;
        if self
            .poison_logged
            .is_none_or(|t| now.duration_since(t) >= POISON_LOG_EVERY)
        {
            tracing::error!(sink = %self.name, records = self.poison_unlogged, file = %self.dead_letter.path().display(), reason = %why, "tcp sink: records the receiver will not take were written to the dead-letter file");
            self.poison_logged = Some(now);
            self.poison_unlogged = 0;
        }
        let marks = std::mem::take(&mut entry.marks);
        if !marks.is_empty() {
            let _ = self.checkpoints.send(Msg::Ack { sink: self.slot, marks });
        }
    }

    /// Steps every `POLL` until `done` or the hard stop; false at the hard stop.
    fn wait_until(&mut self, done: impl Fn(&Self) -> bool) -> bool {
        let metrics = Arc::clone(&self.metrics);
        let heartbeat = &metrics.sinks[self.index].heartbeat;
        loop {
            self.step();
            if done(self) {
                return true;
            }
            heartbeat.beat();
            // Waiting for room: the oldest batch settles as acknowledgements stream in, so
            // look often; waiting for a reconnect or for `settle`, every `POLL`.
            let wait = if self.conn.is_some() { ROOM_POLL } else { POLL };
            if heartbeat.wait_for(|| self.hard_stop.sleep(wait)) {
                return false;
            }
        }
    }

    /// After the last batch or at the hard stop.
    fn close(mut self) {
        tracing::debug!(sink = %self.name, largest_window = self.largest_window, "tcp sink: the receiver's largest receive window");
        if let Some(c) = self.conn.take() {
            c.shutdown();
        }
        let left = self.window.drain();
        let unacked: usize = left.iter().filter(|e| !e.counted).map(|e| e.records).sum();
        if unacked > 0 {
            tracing::warn!(sink = %self.name, records = unacked, "tcp sink: stopping with records the receiver has not acknowledged; they will be read again at the next start");
        }
    }
}

impl Deliver for TcpSink {
    type Event = ();

    fn events(&self) -> Receiver<()> {
        crossbeam_channel::never()
    }

    fn on_event(&mut self, (): ()) -> bool {
        true
    }

    /// Puts the batch in the window and writes it, first waiting (stepping) until the window
    /// has room.
    fn deliver(&mut self, batch: &mut Batch) -> bool {
        // A fresh buffer starts at the batch's capacity: grown from empty by doubling, each of
        // the window's first buffers cost a reallocation and a copy per doubling.
        let capacity = batch.bytes.capacity();
        let spare = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(capacity));
        let bytes = std::mem::replace(&mut batch.bytes, spare);
        self.window.push(Entry::new(
            bytes,
            batch.records,
            std::mem::take(&mut batch.marks),
            std::mem::take(&mut batch.parts),
        ));
        let limit = self.settings.replay_window_bytes;
        self.wait_until(|s| s.window.bytes() <= limit)
    }

    /// Waits until every batch is acknowledged by the receiver's TCP and has stayed so for
    /// `settle` with the connection open (or the hard stop).
    fn finish(&mut self) {
        let settle = self.settings.settle;
        let metrics = Arc::clone(&self.metrics);
        let heartbeat = &metrics.sinks[self.index].heartbeat;
        // At the end the receiver's window may never show the last bytes read (no more data,
        // no more window updates): acknowledged and `settle` without a close is enough.
        let mut acked_since: Option<Instant> = None;
        loop {
            self.step();
            if self.window.is_empty() {
                return;
            }
            if self.conn.is_some() && self.window.all_acked() {
                if acked_since.get_or_insert_with(Instant::now).elapsed() >= settle {
                    return;
                }
            } else {
                acked_since = None;
            }
            heartbeat.beat();
            if heartbeat.wait_for(|| self.hard_stop.sleep(POLL)) {
                return;
            }
        }
    }

    fn poll_at(&self) -> Option<Instant> {
        if self.window.is_empty() {
            return None;
        }
        Some(self.next_poll)
    }

    fn on_poll(&mut self) -> bool {
        self.step();
        !self.hard_stop.is_set()
    }
}
