//! The batcher with time passed in (linger, full, resuming records that did not fit), and its
//! loop with a sink that records what it is handed (the last batch at the end, nothing after
//! the hard stop).

use std::time::Duration;

use super::*;
use crate::config::Encoding;
use crate::record::testing::{context, records, Rec};

fn limits(max_events: usize, max_bytes: usize) -> BatchSettings {
    BatchSettings {
        max_events,
        max_bytes,
        linger: Duration::from_millis(200),
    }
}

/// `n` records at offsets 0, 10, 20, … with one-byte messages.
fn batch_of(n: u64) -> Arc<Records> {
    records(
        context("/l/a.log", "a-", &[], &[]),
        (0..n)
            .map(|i| Rec {
                offset: i * 10,
                message: Some("m"),
                ..Rec::default()
            })
            .collect(),
    )
}

#[test]
fn an_open_batch_is_ready_when_it_has_lingered() {
    let mut enc = Encoder::new(Encoding::Ndjson);
    let mut b = Batcher::new(limits(100, 1 << 20), true);
    let t0 = Instant::now();
    assert!(!b.ready(t0) && b.deadline().is_none(), "an empty batch never is");
    b.take(&mut enc, batch_of(3), t0);
    assert_eq!(b.batch.records, 3);
    assert!(!b.has_pending());
    assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(200)));
    assert!(!b.ready(t0 + Duration::from_millis(199)));
    // Records taken later do not push the deadline back.
    b.take(&mut enc, batch_of(1), t0 + Duration::from_millis(150));
    assert!(b.ready(t0 + Duration::from_millis(200)));
    assert_eq!(b.batch.parts.len(), 2);
}

#[test]
fn a_full_batch_is_ready_at_once_and_the_rest_waits_for_the_next() {
    let mut enc = Encoder::new(Encoding::Ndjson);
    let mut b = Batcher::new(limits(2, 1 << 20), true);
    let t0 = Instant::now();
    b.take(&mut enc, batch_of(5), t0);
    assert!(b.ready(t0), "full");
    assert!(b.has_pending());
    assert_eq!(b.batch.records, 2);
    // The mark of a full batch is where its records end: the third record's offset.
    assert_eq!(b.batch.marks.len(), 1);
    b.resume(&mut enc, t0);
    assert_eq!(b.batch.records, 2, "nothing is taken into a full batch");
    b.batch.reset();
    b.resume(&mut enc, t0);
    assert_eq!(b.batch.records, 2);
    b.batch.reset();
    b.resume(&mut enc, t0);
    assert_eq!(b.batch.records, 1);
    assert!(!b.has_pending());
    assert!(!b.ready(t0));
}

#[test]
fn a_batch_that_does_not_encode_counts_an_estimate_against_max_bytes() {
    let mut enc = Encoder::new(Encoding::Ndjson);
    let mut b = Batcher::new(limits(1000, 400), false);
    b.take(&mut enc, batch_of(5), Instant::now());
    assert!(b.batch.bytes.is_empty());
    assert!(b.batch.records >= 2 && b.batch.records < 5, "{}", b.batch.records);
    assert!(b.batch.size() >= 400);
    assert!(b.has_pending());
}

/// A sink that keeps what it is handed.
#[derive(Default)]
struct Collect {
    delivered: Vec<usize>,
    finished: bool,
    refuse: bool,
}

impl Deliver for Collect {
    type Event = ();
    fn events(&self) -> Receiver<()> {
        crossbeam_channel::never()
    }
    fn on_event(&mut self, (): ()) -> bool {
        true
    }
    fn deliver(&mut self, batch: &mut Batch) -> bool {
        self.delivered.push(batch.records);
        !self.refuse
    }
    fn finish(&mut self) {
        self.finished = true;
    }
}

#[test]
fn the_loop_delivers_full_batches_then_the_last_one_and_finishes() {
    let (tx, rx) = crossbeam_channel::bounded(4);
    tx.send(batch_of(5)).unwrap();
    tx.send(batch_of(2)).unwrap();
    drop(tx);
    let (_trigger, stop) = crate::stop::hard_stop();
    let mut sink = Collect::default();
    let mut enc = Encoder::new(Encoding::Ndjson);
    run(
        &rx,
        &mut enc,
        limits(3, 1 << 20),
        true,
        &stop,
        &Heartbeat::default(),
        &mut sink,
    );
    assert_eq!(sink.delivered, vec![3, 3, 1]);
    assert!(sink.finished);
}

#[test]
fn the_loop_stops_at_the_hard_stop_without_delivering() {
    let (tx, rx) = crossbeam_channel::bounded(4);
    tx.send(batch_of(2)).unwrap();
    let (trigger, stop) = crate::stop::hard_stop();
    trigger.fire();
    let mut sink = Collect::default();
    let mut enc = Encoder::new(Encoding::Ndjson);
    // The input stays open: only the stop can end the loop.
    run(
        &rx,
        &mut enc,
        limits(3, 1 << 20),
        true,
        &stop,
        &Heartbeat::default(),
        &mut sink,
    );
    assert!(sink.delivered.is_empty() && !sink.finished);
    drop(tx);
}

#[test]
fn the_loop_returns_when_the_sink_gives_up() {
    let (tx, rx) = crossbeam_channel::bounded(4);
    tx.send(batch_of(4)).unwrap();
    let (_trigger, stop) = crate::stop::hard_stop();
    let mut sink = Collect {
        refuse: true,
        ..Collect::default()
    };
    let mut enc = Encoder::new(Encoding::Ndjson);
    run(
        &rx,
        &mut enc,
        limits(2, 1 << 20),
        true,
        &stop,
        &Heartbeat::default(),
        &mut sink,
    );
    assert_eq!(sink.delivered, vec![2]);
    drop(tx);
}
