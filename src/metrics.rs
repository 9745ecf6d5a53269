//! The agent's counters and gauges, and their Prometheus text rendering for `/metrics`.
//!
//! Plain atomics updated by the stage that owns the event (the tailer per read, a sink per
//! batch, never per line with a lock). Rendering the text exposition format is a few `write!`s,
//! simpler than adapting a registry crate to per-file gauges that come and go.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::budget::Budget;

#[derive(Debug, Default)]
pub struct Metrics {
    pub lines_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub rotations: AtomicU64,
    pub truncations: AtomicU64,
    pub lines_split: AtomicU64,
    pub invalid_utf8_lines: AtomicU64,
    pub open_errors: AtomicU64,
    pub partial_lines_flushed: AtomicU64,
    pub files_closed_before_eof: AtomicU64,
    pub files_discovered: AtomicU64,
    pub open_files: AtomicU64,
    pub checkpoint_writes: AtomicU64,
    pub checkpoint_errors: AtomicU64,
    /// Set once the pipeline has started reading (for `/readyz`).
    pub ready: AtomicBool,
    /// Set when shutdown began: `/readyz` turns 503 so no new traffic is routed here.
    pub stopping: AtomicBool,
    /// The in-flight budget, read when rendering (it keeps its own count).
    pub budget: Option<Arc<Budget>>,
    pub sources: Vec<SourceMetrics>,
    pub sinks: Vec<SinkMetrics>,
    /// Per-file bytes on disk not yet read, keyed by path; replaced by the tailer on each
    /// reconcile, so closed files disappear from the output.
    pub file_lag: Mutex<HashMap<String, u64>>,
}

#[derive(Debug, Default)]
pub struct SourceMetrics {
    pub name: String,
    pub parse_errors: AtomicU64,
}

#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub name: String,
    pub records_sent: AtomicU64,
    pub batches_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub retries: AtomicU64,
    pub errors: AtomicU64,
    /// 1 while the sink has a working connection/output, 0 while it is retrying.
    pub up: AtomicU64,
}

/// Shorthand for the relaxed increments used everywhere: these are statistics, not
/// synchronization.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    pub fn new(source_names: &[String], sink_names: &[String], budget: Arc<Budget>) -> Metrics {
        Metrics {
            budget: Some(budget),
            sources: source_names
                .iter()
                .map(|n| SourceMetrics {
                    name: n.clone(),
                    ..Default::default()
                })
                .collect(),
            sinks: sink_names
                .iter()
                .map(|n| SinkMetrics {
                    name: n.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        one(
            "tailship_lines_read_total",
            "counter",
            "Lines read from files and handed to the sinks (each piece of a split line counts).",
            get(&self.lines_read),
        );
        one(
            "tailship_bytes_read_total",
            "counter",
            "Bytes read from files.",
            get(&self.bytes_read),
        );
        one(
            "tailship_rotations_total",
            "counter",
            "Files seen rotated away (renamed or deleted) while open.",
            get(&self.rotations),
        );
        one(
            "tailship_truncations_total",
            "counter",
            "Files found truncated or rewritten in place (copytruncate).",
            get(&self.truncations),
        );
        one(
            "tailship_lines_split_total",
            "counter",
            "Lines longer than max_line_bytes, shipped as marked pieces.",
            get(&self.lines_split),
        );
        one(
            "tailship_invalid_utf8_lines_total",
            "counter",
            "Lines with invalid UTF-8, shipped with U+FFFD replacements.",
            get(&self.invalid_utf8_lines),
        );
        one(
            "tailship_open_errors_total",
            "counter",
            "Files that matched but could not be opened or read.",
            get(&self.open_errors),
        );
        one(
            "tailship_partial_lines_flushed_total",
            "counter",
            "Unterminated last lines shipped after partial_line_timeout, rotation or shutdown.",
            get(&self.partial_lines_flushed),
        );
        one(
            "tailship_files_closed_before_eof_total",
            "counter",
            "Rotated or deleted files given up before they were read to the end.",
            get(&self.files_closed_before_eof),
        );
        one(
            "tailship_files_discovered_total",
            "counter",
            "Files that started being tailed.",
            get(&self.files_discovered),
        );
        one(
            "tailship_open_files",
            "gauge",
            "Files held open by the tailer.",
            get(&self.open_files),
        );
        let inflight = self.budget.as_ref().map_or(0, |b| b.used() as u64);
        one(
            "tailship_inflight_bytes",
            "gauge",
            "Bytes read but not yet acknowledged by every sink.",
            inflight,
        );
        one(
            "tailship_checkpoint_writes_total",
            "counter",
            "Checkpoint files written.",
            get(&self.checkpoint_writes),
        );
        one(
            "tailship_checkpoint_errors_total",
            "counter",
            "Checkpoint writes that failed.",
            get(&self.checkpoint_errors),
        );

        let labelled = |out: &mut String,
                        name: &str,
                        kind: &str,
                        help: &str,
                        label: &str,
                        rows: &mut dyn Iterator<Item = (String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (value, v) in rows {
                let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape_label(&value));
            }
        };
        labelled(
            &mut out,
            "tailship_parse_errors_total",
            "counter",
            "Lines the source's format rejected, shipped raw with a parse_error mark.",
            "source",
            &mut self.sources.iter().map(|s| (s.name.clone(), get(&s.parse_errors))),
        );
        type SinkField = fn(&SinkMetrics) -> &AtomicU64;
        let sink_rows: [(&str, &str, &str, SinkField); 6] = [
            (
                "tailship_records_sent_total",
                "counter",
                "Records acknowledged by the sink.",
                |s| &s.records_sent,
            ),
            (
                "tailship_batches_sent_total",
                "counter",
                "Batches acknowledged by the sink.",
                |s| &s.batches_sent,
            ),
            (
                "tailship_bytes_sent_total",
                "counter",
                "Encoded bytes acknowledged by the sink.",
                |s| &s.bytes_sent,
            ),
            (
                "tailship_send_retries_total",
                "counter",
                "Send attempts that failed and were retried.",
                |s| &s.retries,
            ),
            (
                "tailship_send_errors_total",
                "counter",
                "Send or connect errors.",
                |s| &s.errors,
            ),
            (
                "tailship_sink_up",
                "gauge",
                "1 while the sink's output is working.",
                |s| &s.up,
            ),
        ];
        for (name, kind, help, field) in sink_rows {
            labelled(
                &mut out,
                name,
                kind,
                help,
                "sink",
                &mut self.sinks.iter().map(|s| (s.name.clone(), get(field(s)))),
            );
        }
        let lag = self.file_lag.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(String, u64)> = lag.iter().map(|(k, v)| (k.clone(), *v)).collect();
        drop(lag);
        rows.sort();
        labelled(
            &mut out,
            "tailship_file_lag_bytes",
            "gauge",
            "Bytes of a tailed file not yet read.",
            "file",
            &mut rows.into_iter(),
        );
        out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_labels() {
        let m = Metrics::new(&["app".into()], &["out".into()], Budget::new(1 << 20));
        add(&m.lines_read, 3);
        add(&m.sinks[0].records_sent, 2);
        m.file_lag.lock().unwrap().insert("/var/log/a\"b.log".into(), 7);
        let text = m.render();
        assert!(text.contains("tailship_lines_read_total 3\n"));
        assert!(text.contains("tailship_records_sent_total{sink=\"out\"} 2\n"));
        assert!(text.contains("tailship_file_lag_bytes{file=\"/var/log/a\\\"b.log\"} 7\n"));
        assert!(text.contains("tailship_parse_errors_total{source=\"app\"} 0\n"));
    }
}
