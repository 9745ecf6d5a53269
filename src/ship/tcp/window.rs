//! The tcp sink's replay window: the batches written to the receiver that may still have to be
//! written again, in the order they were written, and what it takes for one to leave. Pure
//! state with time and the connection's figures passed in, so it is tested without sockets.
//!
//! A batch is *acked* once the peer's TCP has acknowledged its last byte: its marks go to the
//! checkpoint then (in order), and its records' budget is released. It is *read* once the
//! peer's application has read past it: the bytes acknowledged beyond its end exceed what the
//! peer's kernel may still hold unread (`Progress::unread`). It is *settled* — it leaves the
//! window — once it has been read and either `settle` has passed since with the connection
//! open, or so many bytes after it are acknowledged (`Progress::settle_bytes`) that the peer
//! cannot be holding it unhandled. A close before that makes it unsettled again: it is written
//! again on the next connection. The byte rule is what lets a fast receiver's stream through a
//! bounded window at full speed; `settle` covers a slow one and the end of a burst.
//!
//! After a close the window is written again one batch at a time, then 2, 4, … (each step
//! once the batches before it settled). A close while one batch is alone in flight splits it
//! in two at a line boundary, the first half first; a close while one record is alone in
//! flight counts against it, and after `poison_closes` such closes it leaves the window to be
//! dead-lettered.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::mark::FileMark;
use crate::ship::batcher::Part;

/// `Entry::end` of the batch being written: past any acknowledgement.
const WRITING: u64 = u64::MAX;
/// Past this many batches in flight after a close, the ramp ends: as many as the window holds.
const RAMP_END: usize = 64;

/// One batch (or a piece of one, after a split).
#[derive(Debug)]
pub struct Entry {
    /// Whole lines, each ending with `\n`.
    pub bytes: Vec<u8>,
    pub records: usize,
    /// Acknowledged to the checkpoint at the first ack; empty after (and on the pieces of a
    /// split but the last).
    pub marks: Vec<FileMark>,
    /// Its records, holding their chunks' budget until the first ack.
    pub parts: Vec<Part>,
    /// Where its last byte lies in the current connection's stream; `None`: not written on it.
    end: Option<u64>,
    /// When the peer's TCP acknowledged it on the current connection.
    acked: bool,
    /// When the peer's application had read past it on the current connection.
    read_at: Option<Instant>,
    /// Writes so far (more than one: resent).
    pub writes: u32,
    /// Counted as sent (the first ack).
    pub counted: bool,
}

impl Entry {
    pub fn new(bytes: Vec<u8>, records: usize, marks: Vec<FileMark>, parts: Vec<Part>) -> Entry {
        Entry {
            bytes,
            records,
            marks,
            parts,
            end: None,
            acked: false,
            read_at: None,
            writes: 0,
            counted: false,
        }
    }

    /// Splits the lines in two: `self` keeps the first part, the second is returned with the
    /// marks and the parts (acknowledged after the first). In halves, unless one line is far
    /// longer than the others (a receiver closing on a record over its buffer, as Fluent Bit's
    /// `in_tcp` does): then at that line's start, or after it if it is first, so it is alone
    /// in two steps rather than ten.
    fn split(&mut self) -> Option<Entry> {
        let lines = line_ends(&self.bytes);
        if lines.len() < 2 {
            return None;
        }
        let len = |i: usize| lines[i] - if i == 0 { 0 } else { lines[i - 1] };
        let longest = (0..lines.len()).max_by_key(|&i| len(i)).unwrap_or(0);
        let average = self.bytes.len() / lines.len();
        let first_lines = if len(longest) >= 4096 && len(longest) >= 4 * average {
            longest.max(1)
        } else {
            lines.len() / 2
        };
        let cut = lines[first_lines - 1];
        let second = self.bytes.split_off(cut);
        let first_records = first_lines;
        let mut rest = Entry::new(
            second,
            self.records.saturating_sub(first_records).max(1),
            std::mem::take(&mut self.marks),
            std::mem::take(&mut self.parts),
        );
        rest.writes = self.writes;
        rest.counted = self.counted;
        self.records = first_records;
        Some(rest)
    }
}

/// The offsets just past each line's `\n` (a last line without one ends at the end).
fn line_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends: Vec<usize> = memchr::memchr_iter(b'\n', bytes).map(|i| i + 1).collect();
    if ends.last().copied().unwrap_or(0) < bytes.len() {
        ends.push(bytes.len());
    }
    ends
}

/// What the connection says at one poll.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Bytes of this connection's stream the peer's TCP acknowledged.
    pub acked: u64,
    /// Bytes the peer's kernel may hold that its application has not read yet.
    pub unread: u64,
    /// Bytes acknowledged after a read batch that settle it without waiting for `settle`:
    /// more than the peer's kernel and its application can hold, so it has been handled.
    pub settle_bytes: u64,
}

/// What a poll moved.
#[derive(Debug, Default)]
pub struct Moved {
    /// Marks to acknowledge to the checkpoint, in order.
    pub marks: Vec<Vec<FileMark>>,
    /// Records, batches and bytes acknowledged for the first time.
    pub records: u64,
    pub batches: u64,
    pub bytes: u64,
    /// Whether anything was newly acknowledged.
    pub any: bool,
    /// The buffers of the batches that settled, to be reused.
    pub freed: Vec<Vec<u8>>,
}

/// What a close did to the window.
#[derive(Debug)]
pub enum Closed {
    /// Every unsettled batch will be written again.
    Resend,
    /// The batch alone in flight was split in two.
    Split,
    /// The record alone in flight was closed on `closes` times (fewer than the bound).
    Again { closes: u32 },
    /// The record alone in flight reached the bound: it is out of the window, to be
    /// dead-lettered (its marks acknowledged after).
    Poison { entry: Entry, closes: u32 },
}

pub struct Window {
    entries: VecDeque<Entry>,
    bytes: usize,
    settle: Duration,
    poison_closes: u32,
    /// Unsettled batches that may be in flight: 1, 2, 4, … after a close; `None`: no limit.
    ramp: Option<usize>,
    /// Closes with the front record alone in flight, in a row.
    alone_closes: u32,
}

impl Window {
    pub fn new(settle: Duration, poison_closes: u32) -> Window {
        Window {
            entries: VecDeque::new(),
            bytes: 0,
            settle,
            poison_closes,
            ramp: None,
            alone_closes: 0,
        }
    }

    pub fn push(&mut self, e: Entry) {
        self.bytes += e.bytes.len();
        self.entries.push_back(e);
    }

    /// Puts an entry back at the front (a poison record the dead-letter file would not take).
    pub fn push_front(&mut self, e: Entry) {
        self.bytes += e.bytes.len();
        self.entries.push_front(e);
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn records(&self) -> usize {
        self.entries.iter().map(|e| e.records).sum()
    }

    /// Whether every batch is acknowledged by the peer's TCP on the current connection.
    pub fn all_acked(&self) -> bool {
        self.entries.iter().all(|e| e.acked)
    }

    /// When the front batch settles by time, if it has been read.
    pub fn settles_at(&self) -> Option<Instant> {
        self.entries.front()?.read_at.map(|t| t + self.settle)
    }

    /// The next batch to write on the current connection, if the ramp allows one more in
    /// flight. It is in flight from now on (a close during its write counts against it);
    /// `wrote` says where it ended.
    pub fn next_to_write(&mut self) -> Option<&mut Entry> {
        let in_flight = self.entries.iter().take_while(|e| e.end.is_some()).count();
        if self.ramp.is_some_and(|r| in_flight >= r) {
            return None;
        }
        let e = self.entries.get_mut(in_flight)?;
        e.end = Some(WRITING);
        e.writes += 1;
        Some(e)
    }

    /// The entry `next_to_write` returned was written; its last byte is at `end`.
    pub fn wrote(&mut self, end: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.end == Some(WRITING)) {
            e.end = Some(end);
        }
    }

    /// Applies what the connection says: batches acknowledged (their marks in order), read,
    /// settled.
    pub fn progress(&mut self, p: Progress, now: Instant) -> Moved {
        let mut moved = Moved::default();
        let read = p.acked.saturating_sub(p.unread);
        // Entries are in stream order: every flag below moves front to back.
        for e in self.entries.iter_mut() {
            let Some(end) = e.end else { break };
            if end > p.acked {
                break;
            }
            if !e.acked {
                e.acked = true;
                moved.any = true;
                // The budget goes back at the ack; the bytes stay for a resend.
                e.parts.clear();
                if !e.counted {
                    e.counted = true;
                    moved.records += e.records as u64;
                    moved.batches += 1;
                    moved.bytes += e.bytes.len() as u64;
                }
            }
            if !e.marks.is_empty() {
                moved.marks.push(std::mem::take(&mut e.marks));
            }
            if e.read_at.is_none() && end <= read {
                e.read_at = Some(now);
            }
        }
        while let Some(front) = self.entries.front() {
            let by_bytes = front
                .end
                .is_some_and(|end| p.acked >= end.saturating_add(p.settle_bytes));
            let settled = front
                .read_at
                .is_some_and(|t| by_bytes || now.duration_since(t) >= self.settle);
            if !settled {
                break;
            }
            let Some(e) = self.entries.pop_front() else { break };
            self.bytes -= e.bytes.len();
            self.alone_closes = 0;
            self.ramp = match self.ramp {
                Some(r) if r * 2 < RAMP_END => Some(r * 2),
                _ => None,
            };
            moved.freed.push(e.bytes);
        }
        moved
    }

    /// The connection is gone: nothing unsettled counts as delivered any more.
    pub fn closed(&mut self) -> Closed {
        let in_flight = self.entries.iter().take_while(|e| e.end.is_some()).count();
        let alone = self.ramp == Some(1) && in_flight == 1;
        for e in self.entries.iter_mut() {
            e.end = None;
            e.acked = false;
            e.read_at = None;
        }
        self.ramp = Some(1);
        if !alone {
            return Closed::Resend;
        }
        let Some(front) = self.entries.front_mut() else {
            return Closed::Resend;
        };
        if let Some(rest) = front.split() {
            self.alone_closes = 0;
            self.entries.insert(1, rest);
            return Closed::Split;
        }
        self.alone_closes += 1;
        let closes = self.alone_closes;
        if closes < self.poison_closes {
            return Closed::Again { closes };
        }
        self.alone_closes = 0;
        match self.entries.pop_front() {
            Some(entry) => {
                self.bytes -= entry.bytes.len();
                Closed::Poison { entry, closes }
            }
            None => Closed::Resend,
        }
    }

    /// Takes every entry out (the sink is stopping).
    pub fn drain(&mut self) -> Vec<Entry> {
        self.bytes = 0;
        self.entries.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(lines: &[&str]) -> Entry {
        let mut bytes = Vec::new();
        for l in lines {
            bytes.extend_from_slice(l.as_bytes());
            bytes.push(b'\n');
        }
        Entry::new(bytes, lines.len(), Vec::new(), Vec::new())
    }

    fn write_all(w: &mut Window, end: &mut u64) -> usize {
        let mut n = 0;
        while let Some(e) = w.next_to_write() {
            *end += e.bytes.len() as u64;
            w.wrote(*end);
            n += 1;
        }
        n
    }

    const SETTLE: Duration = Duration::from_millis(250);

    #[test]
    fn a_batch_settles_once_read_and_settle_has_passed() {
        let mut w = Window::new(SETTLE, 3);
        w.push(entry(&["a", "b"]));
        let mut end = 0;
        assert_eq!(write_all(&mut w, &mut end), 1);
        let t0 = Instant::now();
        // Acked, but the peer's kernel may hold it all unread.
        let m = w.progress(
            Progress {
                acked: end,
                unread: end,
                settle_bytes: u64::MAX,
            },
            t0,
        );
        assert!(m.any && m.records == 2 && m.batches == 1);
        let m = w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t0 + SETTLE * 2,
        );
        assert!(m.freed.is_empty(), "read only now: settles a settle later");
        let m = w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t0 + SETTLE * 3,
        );
        assert_eq!(m.freed.len(), 1);
        assert!(w.is_empty() && w.bytes() == 0);
    }

    #[test]
    fn a_batch_followed_by_settle_bytes_settles_at_once() {
        let mut w = Window::new(SETTLE, 3);
        w.push(entry(&["a"]));
        w.push(entry(&["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"]));
        let mut end = 0;
        write_all(&mut w, &mut end);
        let t0 = Instant::now();
        let m = w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: 10,
            },
            t0,
        );
        assert_eq!(m.freed.len(), 1, "the first is followed by 41 bytes: settled");
        assert_eq!(w.records(), 1);
    }

    #[test]
    fn a_close_resends_the_unsettled_one_batch_then_two_then_four() {
        let mut w = Window::new(SETTLE, 3);
        for i in 0..8 {
            w.push(entry(&[&format!("l{i}")]));
        }
        let mut end = 0;
        assert_eq!(write_all(&mut w, &mut end), 8);
        let t0 = Instant::now();
        w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t0,
        );
        assert!(matches!(w.closed(), Closed::Resend));
        let mut end = 0;
        assert_eq!(write_all(&mut w, &mut end), 1, "the oldest alone");
        w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t0,
        );
        assert_eq!(write_all(&mut w, &mut end), 0, "waits for it to settle");
        let m = w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t0 + SETTLE,
        );
        assert_eq!(m.freed.len(), 1);
        assert_eq!(write_all(&mut w, &mut end), 2);
        w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t0 + SETTLE,
        );
        let m = w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t0 + SETTLE * 2,
        );
        assert_eq!(m.freed.len(), 2);
        assert_eq!(write_all(&mut w, &mut end), 5, "8 allowed, 5 left");
    }

    #[test]
    fn marks_go_once_at_the_first_ack_and_records_count_once() {
        let mut w = Window::new(SETTLE, 3);
        let mut e = entry(&["a"]);
        e.marks = vec![FileMark {
            uid: 1,
            mark: crate::mark::Mark::at(0, b""),
        }];
        w.push(e);
        let mut end = 0;
        write_all(&mut w, &mut end);
        let t0 = Instant::now();
        let m = w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t0,
        );
        assert_eq!((m.marks.len(), m.records), (1, 1));
        w.closed();
        let mut end = 0;
        write_all(&mut w, &mut end);
        let m = w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t0,
        );
        assert_eq!((m.marks.len(), m.records), (0, 0), "a resend acknowledges nothing new");
    }

    #[test]
    fn closes_with_one_batch_alone_bisect_to_the_record_then_give_it_up() {
        let mut w = Window::new(SETTLE, 3);
        w.push(entry(&["a", "b", "POISON", "d"]));
        let t0 = Instant::now();
        let mut end = 0;
        write_all(&mut w, &mut end);
        assert!(matches!(w.closed(), Closed::Resend), "first close: not alone yet");
        // A peer that closes whenever it gets POISON; others settle.
        let mut closes = 0;
        let mut t = t0;
        let given_up = loop {
            let mut end = 0;
            let mut poisoned = false;
            while let Some(e) = w.next_to_write() {
                poisoned |= e.bytes.windows(6).any(|x| x == b"POISON");
                end += e.bytes.len() as u64;
                w.wrote(end);
            }
            if poisoned {
                closes += 1;
                assert!(closes < 20, "bisection does not end");
                if let Closed::Poison { entry, closes } = w.closed() {
                    break (entry, closes);
                }
                continue;
            }
            w.progress(
                Progress {
                    acked: end,
                    unread: 0,
                    settle_bytes: u64::MAX,
                },
                t,
            );
            t += SETTLE;
            w.progress(
                Progress {
                    acked: end,
                    unread: 0,
                    settle_bytes: u64::MAX,
                },
                t,
            );
        };
        assert_eq!(given_up.0.bytes, b"POISON\n");
        assert_eq!(given_up.1, 3);
        // The rest goes on.
        let mut end = 0;
        write_all(&mut w, &mut end);
        w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t,
        );
        w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t + SETTLE,
        );
        w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t + SETTLE * 2,
        );
        let mut end = 0;
        write_all(&mut w, &mut end);
        w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t + SETTLE * 3,
        );
        w.progress(
            Progress {
                acked: end,
                unread: 0,
                settle_bytes: u64::MAX,
            },
            t + SETTLE * 4,
        );
        assert!(w.is_empty(), "{} left", w.records());
    }

    #[test]
    fn a_split_keeps_the_marks_on_the_second_half() {
        let mut e = entry(&["a", "b", "c"]);
        e.marks = vec![FileMark {
            uid: 7,
            mark: crate::mark::Mark::at(0, b""),
        }];
        let rest = e.split().unwrap();
        assert_eq!(e.bytes, b"a\n");
        assert_eq!(rest.bytes, b"b\nc\n");
        assert_eq!((e.records, rest.records), (1, 2));
        assert!(e.marks.is_empty() && rest.marks.len() == 1);
        assert!(entry(&["x"]).split().is_none());
    }

    #[test]
    fn a_far_longer_line_is_split_off_first() {
        let long = "L".repeat(40 << 10);
        let mut e = entry(&["a", "b", &long, "d", "e"]);
        let mut rest = e.split().unwrap();
        assert_eq!(e.bytes, b"a\nb\n");
        let tail = rest.split().unwrap();
        assert_eq!(rest.bytes.len(), long.len() + 1, "the long line alone");
        assert_eq!(tail.bytes, b"d\ne\n");
    }
}
