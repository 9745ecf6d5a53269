//! The HTTP sinks' metric families: request counts by status, bytes before and after
//! compression, and the batch-size and latency histograms (`Histogram`), exported only for
//! sinks that speak HTTP (`SinkMetrics::speaks_http`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{add, escape_label, Metrics, SinkMetrics};

/// A Prometheus histogram of fixed buckets, in integer units (`divisor` turns them into the
/// exported unit: 1e9 for nanoseconds → seconds; a division, so `le` labels print exactly).
#[derive(Debug, Default)]
pub struct Histogram {
    bounds: &'static [u64],
    divisor: f64,
    /// One per bound, then `+Inf`; not cumulative (summed when rendered).
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

/// Records per batch: up to the largest `max_events` worth having.
pub(super) const BATCH_BUCKETS: &[u64] = &[1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
/// Request latency in nanoseconds: 5 ms … 30 s.
pub(super) const LATENCY_BUCKETS_NS: &[u64] = &[
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

impl Histogram {
    pub fn new(bounds: &'static [u64], divisor: f64) -> Histogram {
        Histogram {
            bounds,
            divisor,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn observe(&self, v: u64) {
        let i = self.bounds.partition_point(|b| *b < v);
        if let Some(c) = self.counts.get(i) {
            add(c, 1);
        }
        add(&self.sum, v);
    }

    pub(super) fn render(&self, out: &mut String, name: &str, label: &str) {
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = match self.bounds.get(i) {
                Some(b) => (*b as f64 / self.divisor).to_string(),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(out, "{name}_bucket{{{label},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.divisor;
        let _ = writeln!(out, "{name}_sum{{{label}}} {sum}\n{name}_count{{{label}}} {cumulative}");
    }
}

impl Metrics {
    /// The HTTP sinks' families (see `SinkMetrics::speaks_http`); nothing without one.
    pub(super) fn render_http(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let sinks: Vec<&SinkMetrics> = self.sinks.iter().filter(|s| s.speaks_http()).collect();
        if sinks.is_empty() {
            return;
        }
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            out,
            "tailship_http_requests_total",
            "counter",
            "HTTP requests by answer status class; status=\"error\" got no answer (connect error, timeout).",
        );
        for s in &sinks {
            let sink = escape_label(&s.name);
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tailship_http_requests_total{{sink=\"{sink}\",status=\"{class}\"}} {}",
                    get(&s.http_status[i])
                );
            }
            let _ = writeln!(
                out,
                "tailship_http_requests_total{{sink=\"{sink}\",status=\"error\"}} {}",
                get(&s.http_transport_errors)
            );
        }
        type SinkField = fn(&SinkMetrics) -> &AtomicU64;
        let rows: [(&str, &str, SinkField); 3] = [
            (
                "tailship_http_bytes_uncompressed_total",
                "Request body bytes before compression, once per batch.",
                |s| &s.bytes_uncompressed,
            ),
            (
                "tailship_http_bytes_compressed_total",
                "Request body bytes after compression, once per batch.",
                |s| &s.bytes_compressed,
            ),
            (
                "tailship_dead_letter_records_total",
                "Records the collector rejected, written to the dead-letter file.",
                |s| &s.dead_letter_records,
            ),
        ];
        for (name, help, field) in rows {
            head(out, name, "counter", help);
            for s in &sinks {
                let _ = writeln!(out, "{name}{{sink=\"{}\"}} {}", escape_label(&s.name), get(field(s)));
            }
        }
        head(
            out,
            "tailship_batch_records",
            "histogram",
            "Records per batch sent by an HTTP sink.",
        );
        for s in &sinks {
            let label = format!("sink=\"{}\"", escape_label(&s.name));
            s.batch_records.render(out, "tailship_batch_records", &label);
        }
        head(
            out,
            "tailship_http_request_duration_seconds",
            "histogram",
            "HTTP request latency, every attempt.",
        );
        for s in &sinks {
            let label = format!("sink=\"{}\"", escape_label(&s.name));
            s.request_seconds
                .render(out, "tailship_http_request_duration_seconds", &label);
        }
    }
}
