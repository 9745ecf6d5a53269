//! The agent's counters and gauges, and their Prometheus text rendering for `/metrics`.
//!
//! Plain atomics updated by the stage that owns the event (the tailer per read, a sink per
//! batch, never per line with a lock). Rendering the text exposition format is a few `write!`s,
//! simpler than adapting a registry crate to per-file gauges that come and go.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::adapt::detect::Detected;
use crate::budget::Budget;
use crate::liveness::Heartbeat;

mod inputs;

pub use self::inputs::InputMetrics;

mod kafka;
pub use self::kafka::KafkaMetrics;

mod http;
pub use self::http::Histogram;
use self::http::{BATCH_BUCKETS, LATENCY_BUCKETS_NS};

#[derive(Debug, Default)]
pub struct Metrics {
    pub lines_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub rotations: AtomicU64,
    pub truncations: AtomicU64,
    pub lines_split: AtomicU64,
    pub invalid_utf8_lines: AtomicU64,
    pub open_errors: AtomicU64,
    pub files_refused: AtomicU64,
    pub partial_lines_flushed: AtomicU64,
    /// Events being joined shipped early because joins held their share of the budget.
    pub joined_events_cut: AtomicU64,
    pub files_closed_before_eof: AtomicU64,
    pub files_discovered: AtomicU64,
    pub open_files: AtomicU64,
    /// Directories with an inotify watch, and those polled past `max_watches` (`tail/watches.rs`).
    pub watched_dirs: AtomicU64,
    pub watch_fallback_dirs: AtomicU64,
    pub checkpoint_writes: AtomicU64,
    pub checkpoint_errors: AtomicU64,
    /// Set once the pipeline has started reading (for `/readyz`).
    pub ready: AtomicBool,
    /// Set when shutdown began: `/readyz` turns 503 so no new traffic is routed here.
    pub stopping: AtomicBool,
    /// Set while checkpoint writes fail (`data_dir` went read-only, full…): `/readyz` turns
    /// 503, since a restart would then send everything again.
    pub checkpoint_failing: AtomicBool,
    /// The in-flight budget, read when rendering (it keeps its own count).
    pub budget: Option<Arc<Budget>>,
    pub sources: Vec<SourceMetrics>,
    pub sinks: Vec<SinkMetrics>,
    /// One per network source (`input`), in config order of those sources.
    pub inputs: Vec<InputMetrics>,
    /// Per-file bytes on disk not yet read, keyed by path; replaced by the tailer on each
    /// reconcile, so closed files disappear from the output.
    pub file_lag: Mutex<HashMap<String, u64>>,
    /// Export `file_lag` per file (`metrics.per_file`); their sum is always exported.
    pub per_file: bool,
    /// What each dropping transform dropped (`transform::Transforms::counters`).
    pub transform_drops: Vec<DropCounter>,
    /// The tailer's files for `GET /api/v1/status`.
    pub board: crate::status::Board,
    /// The tailer thread's progress (`liveness`).
    pub tail_heartbeat: Heartbeat,
    /// `/healthz` fails when the tailer or a sink is busy this long without progress;
    /// `None`: never.
    pub stall_timeout: Option<Duration>,
}

/// The records one transform dropped, and why (`filtered`, `sampled`, `throttled`).
#[derive(Debug)]
pub struct DropCounter {
    pub transform: String,
    pub reason: &'static str,
    pub count: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
pub struct SourceMetrics {
    pub name: String,
    pub parse_errors: AtomicU64,
    /// Lines the parser read only in part (a broken part kept in the message, with a
    /// `parse_warning`): lenient parses, not errors.
    pub parse_warnings: AtomicU64,
    /// Records whose time could not be read (they carry the observed time).
    pub bad_timestamps: AtomicU64,
    /// Files of an `auto` source, by the format detected (index: `DETECTABLE`).
    pub detected_files: [AtomicU64; DETECTABLE.len()],
    /// Files the source's globs match now (set by the tailer at each scan).
    pub files: AtomicU64,
}

/// The formats `auto` picks, in the order of `SourceMetrics::detected_files`.
const DETECTABLE: [Detected; 9] = [
    Detected::Docker,
    Detected::Json,
    Detected::Cri,
    Detected::Klog,
    Detected::Combined,
    Detected::Common,
    Detected::Syslog,
    Detected::Logfmt,
    Detected::Raw,
];

impl SourceMetrics {
    /// Counts a file of this source that `auto` read as `format`.
    pub fn detected(&self, format: Detected) {
        if let Some(i) = DETECTABLE.iter().position(|d| *d == format) {
            add(&self.detected_files[i], 1);
        }
    }
}

#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub name: String,
    pub records_sent: AtomicU64,
    pub batches_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub retries: AtomicU64,
    /// Failed attempts and rejected batches (each attempt counts once).
    pub errors: AtomicU64,
    /// 1 when the sink's last attempt was accepted (or none was made yet), 0 after a failed or
    /// rejected one.
    pub up: AtomicU64,
    /// Unix time in milliseconds of the last accepted attempt; 0 before the first.
    pub last_success_ms: AtomicU64,
    /// HTTP sinks: answers by status class (`[0]` = 1xx … `[4]` = 5xx).
    pub http_status: [AtomicU64; 5],
    /// HTTP sinks: requests that got no answer (connect error, timeout, reset).
    pub http_transport_errors: AtomicU64,
    /// HTTP sinks: request bodies before and after compression, once per batch.
    pub bytes_uncompressed: AtomicU64,
    pub bytes_compressed: AtomicU64,
    /// Records written to the dead-letter file (rejected by the collector).
    pub dead_letter_records: AtomicU64,
    /// The tcp sink: records written again after the receiver closed before they settled.
    pub resent_records: AtomicU64,
    /// The sink thread's progress (`liveness`).
    pub heartbeat: Heartbeat,
    /// Records per batch sent.
    pub batch_records: Histogram,
    /// Seconds from sending a request to its answer (or error), every attempt.
    pub request_seconds: Histogram,
    /// Kafka sinks: broker errors, the producer's queue, acknowledged offsets.
    pub kafka: KafkaMetrics,
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
                    batch_records: Histogram::new(BATCH_BUCKETS, 1.0),
                    request_seconds: Histogram::new(LATENCY_BUCKETS_NS, 1e9),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The thread (`tail` or `sink <name>`) busy without progress for longer than
    /// `stall_timeout`, and for how long.
    pub fn stalled(&self) -> Option<(String, Duration)> {
        let limit = self.stall_timeout?;
        let tail = std::iter::once(("tail".to_owned(), &self.tail_heartbeat));
        let sinks = self.sinks.iter().map(|s| (format!("sink {:?}", s.name), &s.heartbeat));
        tail.chain(sinks)
            .find_map(|(name, h)| h.busy_for().filter(|d| *d > limit).map(|d| (name, d)))
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.render_process(&mut out);
        self.render_state(&mut out);
        self.render_sources(&mut out);
        self.render_sinks(&mut out);
        inputs::render(&self.inputs, &mut out);
        out
    }

    /// The process-wide counters of the tailer.
    fn render_process(&self, out: &mut String) {
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
            "tailship_files_refused_total",
            "counter",
            "Matched paths not tailed: a link leading where its source does not follow, one of the agent's own files, not a regular file.",
            get(&self.files_refused),
        );
        one(
            "tailship_partial_lines_flushed_total",
            "counter",
            "Unterminated last lines shipped after partial_line_timeout, rotation or shutdown.",
            get(&self.partial_lines_flushed),
        );
        one(
            "tailship_joined_events_cut_total",
            "counter",
            "Events being joined (multiline, container pieces) shipped as they stood because joins held their share of max_inflight_bytes.",
            get(&self.joined_events_cut),
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
    }

    /// The process-wide gauges, and the checkpoint's counters.
    fn render_state(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        one(
            "tailship_open_files",
            "gauge",
            "Files held open by the tailer.",
            get(&self.open_files),
        );
        one(
            "tailship_watched_dirs",
            "gauge",
            "Directories the tailer watches with inotify.",
            get(&self.watched_dirs),
        );
        one(
            "tailship_watch_fallback_dirs",
            "gauge",
            "Directories polled instead of watched: past max_watches, or refused by the kernel's inotify limit.",
            get(&self.watch_fallback_dirs),
        );
        let inflight = self.budget.as_ref().map_or(0, |b| b.used() as u64);
        one(
            "tailship_inflight_bytes",
            "gauge",
            "Bytes read but not yet acknowledged by every sink, and the HTTP sinks' request bodies.",
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
    }

    /// Per source: what its lines held.
    fn render_sources(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        labelled(
            out,
            "tailship_parse_errors_total",
            "counter",
            "Lines the source's format rejected, shipped raw with a parse_error mark.",
            "source",
            &mut self.sources.iter().map(|s| (s.name.clone(), get(&s.parse_errors))),
        );
        labelled(
            out,
            "tailship_parse_warnings_total",
            "counter",
            "Lines read in part: the sound parts parsed, the rest kept, with a parse_warning mark.",
            "source",
            &mut self.sources.iter().map(|s| (s.name.clone(), get(&s.parse_warnings))),
        );
        labelled(
            out,
            "tailship_timestamp_parse_errors_total",
            "counter",
            "Records whose time was present but unreadable; they carry the time they were read.",
            "source",
            &mut self.sources.iter().map(|s| (s.name.clone(), get(&s.bad_timestamps))),
        );
        labelled(
            out,
            "tailship_source_files",
            "gauge",
            "Files the source's globs match (0: a glob matches nothing, see the warning in the log).",
            "source",
            &mut self.sources.iter().map(|s| (s.name.clone(), get(&s.files))),
        );
        let _ = writeln!(
            out,
            "# HELP tailship_transform_dropped_total Records a transform dropped by design, by transform and reason.\n# TYPE tailship_transform_dropped_total counter"
        );
        for d in &self.transform_drops {
            let _ = writeln!(
                out,
                "tailship_transform_dropped_total{{transform=\"{}\",reason=\"{}\"}} {}",
                escape_label(&d.transform),
                d.reason,
                get(&d.count)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tailship_auto_detected_files_total Files of `auto` sources, by the format detected.\n# TYPE tailship_auto_detected_files_total counter"
        );
        for s in &self.sources {
            for (d, n) in DETECTABLE.iter().zip(&s.detected_files) {
                let n = get(n);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "tailship_auto_detected_files_total{{source=\"{}\",format=\"{}\"}} {n}",
                        escape_label(&s.name),
                        d.as_str()
                    );
                }
            }
        }
    }

    /// Per sink, then the HTTP families and the lag.
    fn render_sinks(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        type SinkField = fn(&SinkMetrics) -> &AtomicU64;
        let sink_rows: [(&str, &str, &str, SinkField); 7] = [
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
                "Failed send attempts and rejected batches (HTTP 4xx, dead-lettered).",
                |s| &s.errors,
            ),
            (
                "tailship_sink_resent_records_total",
                "counter",
                "Records sent again after the receiver closed before they settled (tcp sink; duplicates at the receiver).",
                |s| &s.resent_records,
            ),
            (
                "tailship_sink_up",
                "gauge",
                "1 when the sink's last attempt was accepted, 0 while it fails or is rejected.",
                |s| &s.up,
            ),
        ];
        for (name, kind, help, field) in sink_rows {
            labelled(
                out,
                name,
                kind,
                help,
                "sink",
                &mut self.sinks.iter().map(|s| (s.name.clone(), get(field(s)))),
            );
        }
        let _ = writeln!(
            out,
            "# HELP tailship_sink_last_success_timestamp_seconds Unix time of the sink's last accepted attempt (0: none yet).\n# TYPE tailship_sink_last_success_timestamp_seconds gauge"
        );
        for s in &self.sinks {
            let ms = get(&s.last_success_ms);
            let _ = writeln!(
                out,
                "tailship_sink_last_success_timestamp_seconds{{sink=\"{}\"}} {}.{:03}",
                escape_label(&s.name),
                ms / 1000,
                ms % 1000
            );
        }
        self.render_http(out);
        kafka::render(&self.sinks, out);
        self.render_lag(out);
    }

    /// How far behind the files are: in all, and per file when `per_file` is set.
    fn render_lag(&self, out: &mut String) {
        let lag = self.file_lag.lock().unwrap_or_else(|p| p.into_inner());
        let total: u64 = lag.values().sum();
        let mut rows: Vec<(String, u64)> = if self.per_file {
            lag.iter().map(|(k, v)| (k.clone(), *v)).collect()
        } else {
            Vec::new()
        };
        drop(lag);
        let _ = write!(
            out,
            "# HELP tailship_lag_bytes Bytes of the tailed files not yet read, all files together.\n# TYPE tailship_lag_bytes gauge\ntailship_lag_bytes {total}\n"
        );
        if !self.per_file {
            return;
        }
        rows.sort();
        labelled(
            out,
            "tailship_file_lag_bytes",
            "gauge",
            "Bytes of a tailed file not yet read.",
            "file",
            &mut rows.into_iter(),
        );
    }
}

impl SinkMetrics {
    /// An attempt the collector accepted (or the output took).
    pub fn succeeded(&self) {
        self.up.store(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_success_ms.store(now, Ordering::Relaxed);
    }

    /// An attempt that failed or was rejected.
    pub fn failed(&self) {
        add(&self.errors, 1);
        self.up.store(0, Ordering::Relaxed);
    }

    /// Whether this sink has done anything only an HTTP sink does (a batch submitted, a request
    /// answered or failed). The HTTP families show such sinks only, so a `stdout`, `file` or
    /// `tcp` sink exports no HTTP counters or histograms; an HTTP sink's appear with its first
    /// batch.
    fn speaks_http(&self) -> bool {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.batch_records.count() > 0
            || self.request_seconds.count() > 0
            || get(&self.http_transport_errors) > 0
            || self.http_status.iter().any(|c| get(c) > 0)
            || get(&self.bytes_uncompressed) > 0
            || get(&self.dead_letter_records) > 0
    }
}

/// A labelled metric family: its help, type and one row per label value.
fn labelled(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    label: &str,
    rows: &mut dyn Iterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (value, v) in rows {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape_label(&value));
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
        let mut m = Metrics::new(&["app".into()], &["out".into()], Budget::new(1 << 20));
        add(&m.lines_read, 3);
        add(&m.sinks[0].records_sent, 2);
        m.file_lag.lock().unwrap().insert("/var/log/a\"b.log".into(), 7);
        m.file_lag.lock().unwrap().insert("/var/log/c.log".into(), 2);
        let text = m.render();
        assert!(text.contains("tailship_lag_bytes 9\n"), "{text}");
        assert!(
            !text.contains("tailship_file_lag_bytes"),
            "per file only when asked:\n{text}"
        );
        m.per_file = true;
        let text = m.render();
        assert!(text.contains("tailship_lines_read_total 3\n"));
        assert!(text.contains("tailship_records_sent_total{sink=\"out\"} 2\n"));
        assert!(text.contains("tailship_file_lag_bytes{file=\"/var/log/a\\\"b.log\"} 7\n"));
        assert!(text.contains("tailship_parse_errors_total{source=\"app\"} 0\n"));
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let m = Metrics::new(&[], &["h".into()], Budget::new(1 << 20));
        for v in [1, 10, 11, 20_000] {
            m.sinks[0].batch_records.observe(v);
        }
        m.sinks[0].request_seconds.observe(7_000_000);
        add(&m.sinks[0].http_status[4], 2);
        let text = m.render();
        assert!(text.contains("tailship_http_requests_total{sink=\"h\",status=\"2xx\"} 0\n"));
        for want in [
            "tailship_batch_records_bucket{sink=\"h\",le=\"10\"} 2\n",
            "tailship_batch_records_bucket{sink=\"h\",le=\"50\"} 3\n",
            "tailship_batch_records_bucket{sink=\"h\",le=\"+Inf\"} 4\n",
            "tailship_batch_records_sum{sink=\"h\"} 20022\n",
            "tailship_batch_records_count{sink=\"h\"} 4\n",
            "tailship_http_request_duration_seconds_bucket{sink=\"h\",le=\"0.005\"} 0\n",
            "tailship_http_request_duration_seconds_bucket{sink=\"h\",le=\"0.01\"} 1\n",
            "tailship_http_requests_total{sink=\"h\",status=\"5xx\"} 2\n",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }

    #[test]
    fn sinks_that_send_no_http_export_no_http_series() {
        let m = Metrics::new(&[], &["tcp".into(), "h".into()], Budget::new(1 << 20));
        let text = m.render();
        for family in [
            "tailship_http_",
            "tailship_batch_records",
            "tailship_dead_letter_records_total",
        ] {
            assert!(!text.contains(family), "{family} without an HTTP sink:\n{text}");
        }
        m.sinks[1].batch_records.observe(3);
        let text = m.render();
        assert!(text.contains("tailship_batch_records_count{sink=\"h\"} 1\n"), "{text}");
        assert!(
            text.contains("tailship_http_request_duration_seconds_count{sink=\"h\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("sink=\"tcp\",le="), "{text}");
        assert!(!text.contains("tailship_http_requests_total{sink=\"tcp\""), "{text}");
    }

    /// docs/metrics.md names every family the agent exports.
    #[test]
    fn the_docs_name_every_metric() {
        let mut m = Metrics::new(&["app".into()], &["h".into()], Budget::new(1 << 20));
        m.inputs.push(InputMetrics::new("otlp"));
        m.per_file = true;
        m.sinks[0].batch_records.observe(1);
        m.sinks[0].kafka.start();
        m.file_lag.lock().unwrap().insert("/f".into(), 1);
        let text = m.render();
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert!(families.len() > 25, "{families:?}");
        let missing: Vec<&&str> = families
            .iter()
            .filter(|f| !readme.contains(&format!("`{f}`")) && !readme.contains(&format!("`{f}{{")))
            .collect();
        assert!(missing.is_empty(), "docs/metrics.md does not name {missing:?}");
    }
}
