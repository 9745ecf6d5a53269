//! The kafka sinks' own metrics: broker errors by kind, the producer's queue depth, and the
//! last offset the brokers acknowledged per topic and partition. Updated from librdkafka's
//! callbacks (its polling thread) and the sink thread; rendered only for sinks that started as
//! kafka sinks. Records and bytes produced are the common `tailship_records_sent_total` and
//! `tailship_bytes_sent_total`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::{escape_label, SinkMetrics};

#[derive(Debug, Default)]
pub struct KafkaMetrics {
    /// Set when a kafka sink starts: its families are rendered from then on.
    active: AtomicBool,
    /// Messages in librdkafka's queue and in flight to the brokers.
    pub queue_messages: AtomicU64,
    /// Errors by librdkafka's name for their kind (`MessageSizeTooLarge`, `BrokerTransportFailure`,
    /// …): a fixed set of codes, so a bounded label.
    errors: Mutex<BTreeMap<String, u64>>,
    /// topic → partition → last acknowledged offset. Topics come from the config or a
    /// template over resource attributes (namespaces), so they are as many as the pods' kinds.
    offsets: Mutex<BTreeMap<String, BTreeMap<i32, i64>>>,
}

impl KafkaMetrics {
    pub fn start(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    pub fn error(&self, kind: &str) {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        match e.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                e.insert(kind.to_owned(), 1);
            }
        }
    }

    /// Called per acknowledged message: a lookup without allocating once the partition is known.
    pub fn acknowledged(&self, topic: &str, partition: i32, offset: i64) {
        let mut o = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        match o.get_mut(topic) {
            Some(parts) => {
                let at = parts.entry(partition).or_insert(offset);
                *at = (*at).max(offset);
            }
            None => {
                o.insert(topic.to_owned(), BTreeMap::from([(partition, offset)]));
            }
        }
    }
}

/// The kafka families, for the sinks that are kafka sinks.
pub(super) fn render(sinks: &[SinkMetrics], out: &mut String) {
    let kafka: Vec<&SinkMetrics> = sinks
        .iter()
        .filter(|s| s.kafka.active.load(Ordering::Relaxed))
        .collect();
    if kafka.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP tailship_kafka_queue_messages Messages in the producer's queue or in flight to the brokers.\n# TYPE tailship_kafka_queue_messages gauge"
    );
    for s in &kafka {
        let n = s.kafka.queue_messages.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "tailship_kafka_queue_messages{{sink=\"{}\"}} {n}",
            escape_label(&s.name)
        );
    }
    let _ = writeln!(
        out,
        "# HELP tailship_kafka_errors_total Errors from the brokers or the client, by kind (librdkafka's error name).\n# TYPE tailship_kafka_errors_total counter"
    );
    for s in &kafka {
        let errors = s.kafka.errors.lock().unwrap_or_else(|p| p.into_inner());
        for (kind, n) in errors.iter() {
            let _ = writeln!(
                out,
                "tailship_kafka_errors_total{{sink=\"{}\",kind=\"{}\"}} {n}",
                escape_label(&s.name),
                escape_label(kind)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP tailship_kafka_acknowledged_offset The last offset the brokers acknowledged, per topic and partition.\n# TYPE tailship_kafka_acknowledged_offset gauge"
    );
    for s in &kafka {
        let offsets = s.kafka.offsets.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, parts) in offsets.iter() {
            for (partition, offset) in parts {
                let _ = writeln!(
                    out,
                    "tailship_kafka_acknowledged_offset{{sink=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {offset}",
                    escape_label(&s.name),
                    escape_label(topic)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_errors_and_the_highest_offset_per_partition() {
        let s = SinkMetrics {
            name: "fleet".into(),
            ..Default::default()
        };
        let mut out = String::new();
        render(std::slice::from_ref(&s), &mut out);
        assert!(out.is_empty(), "not a kafka sink yet: {out}");
        s.kafka.start();
        s.kafka.error("MessageSizeTooLarge");
        s.kafka.error("MessageSizeTooLarge");
        s.kafka.acknowledged("logs", 0, 7);
        s.kafka.acknowledged("logs", 0, 5);
        s.kafka.acknowledged("logs", 1, 2);
        render(std::slice::from_ref(&s), &mut out);
        for line in [
            "tailship_kafka_errors_total{sink=\"fleet\",kind=\"MessageSizeTooLarge\"} 2",
            "tailship_kafka_acknowledged_offset{sink=\"fleet\",topic=\"logs\",partition=\"0\"} 7",
            "tailship_kafka_acknowledged_offset{sink=\"fleet\",topic=\"logs\",partition=\"1\"} 2",
            "tailship_kafka_queue_messages{sink=\"fleet\"} 0",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }
    }
}
