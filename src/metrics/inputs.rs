//! The network inputs' counters (`tailship_input_*{input}`), one set per network source, and
//! their rendering. Rendered only when the config has a network source.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{escape_label, labelled};

#[derive(Debug, Default)]
pub struct InputMetrics {
    pub name: String,
    /// Records written to the spool (and so acknowledged to the client).
    pub records_accepted: AtomicU64,
    /// Records refused one by one (a `partial_success`), with the others of their request kept.
    pub records_rejected: AtomicU64,
    /// Requests or messages refused whole: malformed (400), too big (413), bad framing.
    pub requests_rejected: AtomicU64,
    /// Bytes received, as sent (before decompression).
    pub bytes_received: AtomicU64,
    /// Bytes in the spool on disk (a gauge).
    pub spool_bytes: AtomicU64,
    /// Requests answered "later" because the spool was full (429, `RESOURCE_EXHAUSTED`).
    pub pushbacks: AtomicU64,
    /// Open connections (a gauge).
    pub connections: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Messages kept whole as the message of a record because they did not parse (syslog).
    pub unparsed: AtomicU64,
    /// Messages dropped where the protocol cannot push back (syslog over UDP), by reason.
    pub dropped_spool_full: AtomicU64,
    pub dropped_too_large: AtomicU64,
}

impl InputMetrics {
    pub fn new(name: &str) -> InputMetrics {
        InputMetrics {
            name: name.to_owned(),
            ..Default::default()
        }
    }
}

/// Every input family, one row per input.
pub(super) fn render(inputs: &[InputMetrics], out: &mut String) {
    if inputs.is_empty() {
        return;
    }
    type Field = fn(&InputMetrics) -> &AtomicU64;
    let rows: [(&str, &str, &str, Field); 9] = [
        (
            "tailship_input_records_accepted_total",
            "counter",
            "Records a network input wrote to its spool before answering the client.",
            |m| &m.records_accepted,
        ),
        (
            "tailship_input_records_rejected_total",
            "counter",
            "Records a network input refused one by one (reported to the client, e.g. OTLP partial_success).",
            |m| &m.records_rejected,
        ),
        (
            "tailship_input_requests_rejected_total",
            "counter",
            "Requests or messages refused whole: malformed, too large, badly framed.",
            |m| &m.requests_rejected,
        ),
        (
            "tailship_input_bytes_received_total",
            "counter",
            "Bytes a network input received, before decompression.",
            |m| &m.bytes_received,
        ),
        (
            "tailship_input_spool_bytes",
            "gauge",
            "Bytes in the input's spool on disk, not yet delivered and deleted.",
            |m| &m.spool_bytes,
        ),
        (
            "tailship_input_pushbacks_total",
            "counter",
            "Requests told to come back later because the spool was full.",
            |m| &m.pushbacks,
        ),
        (
            "tailship_input_connections",
            "gauge",
            "Open connections of a network input.",
            |m| &m.connections,
        ),
        (
            "tailship_input_connections_refused_total",
            "counter",
            "Connections closed at once because max_connections were open.",
            |m| &m.connections_refused,
        ),
        (
            "tailship_input_records_unparsed_total",
            "counter",
            "Messages that did not parse (syslog), kept whole as a record's message with a parse_error field.",
            |m| &m.unparsed,
        ),
    ];
    for (name, kind, help, field) in rows {
        labelled(
            out,
            name,
            kind,
            help,
            "input",
            &mut inputs
                .iter()
                .map(|m| (m.name.clone(), field(m).load(Ordering::Relaxed))),
        );
    }
    let name = "tailship_input_dropped_total";
    let _ = writeln!(
        out,
        "# HELP {name} Messages a network input dropped because its protocol cannot push back (syslog over UDP).\n# TYPE {name} counter"
    );
    for m in inputs {
        let input = escape_label(&m.name);
        for (reason, v) in [
            ("spool_full", &m.dropped_spool_full),
            ("too_large", &m.dropped_too_large),
        ] {
            let _ = writeln!(
                out,
                "{name}{{input=\"{input}\",reason=\"{reason}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
}
