//! A sink's settings (`[[sinks]]`): where records go, encoded how, batched how, and their
//! validation from the file's keys. The HTTP sinks' own keys are validated in `config::http`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::file::SinkFileConfig;
use super::forward::{forward_keys_set, validate_forward, ForwardSettings};
use super::http::{http_keys_set, validate_http, HttpSettings};
use super::kafka::{kafka_keys_set, validate_kafka, KafkaSettings};
use super::source::SourceSettings;
use super::tcp::{tcp_keys_set, validate_tcp, TcpSettings};
use crate::ship::encode::{Shape, ShapeError};

#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub name: String,
    pub kind: SinkKind,
    pub encoding: Encoding,
    /// Indexes into `Settings::sources` of the sources this sink reads.
    pub inputs: Vec<usize>,
    pub batch: BatchSettings,
    /// The names of the NDJSON record's top-level keys (`shape`, `keys`).
    pub shape: Arc<Shape>,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Stdout,
    File { path: PathBuf },
    Tcp(Box<TcpSettings>),
    Http(Box<HttpSettings>),
    Kafka(Box<KafkaSettings>),
    Forward(Box<ForwardSettings>),
}

impl SinkKind {
    /// The sink's `type` in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::File { .. } => "file",
            SinkKind::Tcp(_) => "tcp",
            SinkKind::Http(h) => match h.api {
                super::Api::Plain => "http",
                super::Api::Elasticsearch(_) => "elasticsearch",
                super::Api::Loki(_) => "loki",
                super::Api::Otlp { .. } => "otlp",
                super::Api::SplunkHec(_) => "splunk_hec",
            },
            SinkKind::Kafka(_) => "kafka",
            SinkKind::Forward(_) => "forward",
        }
    }
}

/// What a sink writes per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One JSON record per line (the record shape of ARCHITECTURE.md).
    Ndjson,
    /// The line as read (the message for `raw`), newline-terminated.
    Raw,
}

#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub max_events: usize,
    pub max_bytes: usize,
    pub linger: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max_events: 1000,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(200),
        }
    }
}

/// Validates every sink against the sources it may read; `data_dir` is where HTTP and kafka
/// sinks keep their dead letters.
pub(super) fn validate_all(
    sinks: Vec<SinkFileConfig>,
    sources: &[SourceSettings],
    data_dir: &Path,
    problem: &mut dyn FnMut(String, String),
) -> Vec<SinkSettings> {
    if sinks.is_empty() {
        problem("sinks".into(), "at least one [[sinks]] entry is needed".into());
    }
    let mut out: Vec<SinkSettings> = Vec::new();
    for (i, s) in sinks.into_iter().enumerate() {
        let settings = validate(i, &s, sources, data_dir, problem);
        if out.iter().any(|o| o.name == settings.name) {
            problem(
                format!("sinks[{i}].name"),
                format!("{:?} is used by two sinks", settings.name),
            );
        }
        out.push(settings);
    }
    out
}

/// Validates sink `i`.
fn validate(
    i: usize,
    s: &SinkFileConfig,
    sources: &[SourceSettings],
    data_dir: &Path,
    problem: &mut dyn FnMut(String, String),
) -> SinkSettings {
    let at = |k: &str| format!("sinks[{i}].{k}");
    let name = s.name.clone().unwrap_or_else(|| format!("sink{i}"));
    let kind = kind(s, &name, data_dir, &at, problem);
    let keys = http_keys_set(s.kind.as_deref(), s).into_iter();
    let keys = keys
        .chain(kafka_keys_set(s.kind.as_deref(), s))
        .chain(forward_keys_set(s.kind.as_deref(), s))
        .chain(tcp_keys_set(s.kind.as_deref(), s));
    for key in keys {
        problem(
            at(key),
            format!("a {} sink does not take this key", s.kind.as_deref().unwrap_or("")),
        );
    }
    // Keys that belong to another sink type are mistakes worth reporting, not ignoring.
    if s.address.is_some() && !matches!(s.kind.as_deref(), Some("tcp" | "forward")) {
        problem(at("address"), "only a tcp or forward sink takes an address".into());
    }
    if s.path.is_some() && s.kind.as_deref() != Some("file") {
        problem(at("path"), "only a file sink takes a path".into());
    }
    let encoding = match s.encoding.as_deref().unwrap_or("ndjson") {
        // An http sink frames the same NDJSON records as a JSON array (`HttpSettings::framing`).
        "ndjson" | "json" | "json_array" | "protobuf" if matches!(kind, SinkKind::Http(_)) => Encoding::Ndjson,
        "ndjson" | "json" => Encoding::Ndjson,
        "raw" => Encoding::Raw,
        other => {
            problem(at("encoding"), format!("{other:?} must be \"ndjson\" or \"raw\""));
            Encoding::Ndjson
        }
    };
    let inputs = match &s.inputs {
        None => (0..sources.len()).collect(),
        Some(names) => names
            .iter()
            .filter_map(|n| {
                let found = sources.iter().position(|src| &src.name == n);
                if found.is_none() {
                    problem(at("inputs"), format!("no source is named {n:?}"));
                }
                found
            })
            .collect(),
    };
    let defaults = BatchSettings::default();
    let batch = BatchSettings {
        max_events: s.batch.max_events.unwrap_or(defaults.max_events),
        max_bytes: s.batch.max_bytes.unwrap_or(defaults.max_bytes),
        linger: s.batch.linger_ms.map(Duration::from_millis).unwrap_or(defaults.linger),
    };
    if batch.max_events == 0 {
        problem(at("batch.max_events"), "must be at least 1".into());
    }
    if batch.max_bytes < 1024 {
        problem(
            at("batch.max_bytes"),
            format!("{} is too small; at least 1024", batch.max_bytes),
        );
    }
    let shape = shape(s, &kind, encoding, &at, problem);
    SinkSettings {
        name,
        kind,
        encoding,
        inputs,
        batch,
        shape,
    }
}

/// The sink's `shape` and `keys`: for the sinks whose payload is the NDJSON record itself
/// (stdout, file, tcp, http). The protocol sinks write their own documents.
fn shape(
    s: &SinkFileConfig,
    kind: &SinkKind,
    encoding: Encoding,
    at: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> Arc<Shape> {
    if s.shape.is_none() && s.keys.is_none() {
        return Arc::default();
    }
    let key = if s.shape.is_some() { "shape" } else { "keys" };
    let plain = match kind {
        SinkKind::Http(h) => h.api == super::Api::Plain,
        SinkKind::Forward(_) => false,
        _ => true,
    };
    if !plain || encoding != Encoding::Ndjson {
        problem(
            at(key),
            "only an NDJSON stdout, file, tcp or http sink takes a shape".into(),
        );
        return Arc::default();
    }
    let keys: Vec<(String, String)> = s.keys.clone().unwrap_or_default().into_iter().collect();
    match Shape::build(s.shape.as_deref(), &keys) {
        Ok(shape) => Arc::new(shape),
        Err(e) => {
            let key = match &e {
                ShapeError::Preset(_) => "shape",
                ShapeError::Key(_) | ShapeError::Empty(_) | ShapeError::Twice(_) => "keys",
            };
            problem(at(key), e.to_string());
            Arc::default()
        }
    }
}

/// The sink's `type` and the keys that type needs.
fn kind(
    s: &SinkFileConfig,
    name: &str,
    data_dir: &Path,
    at: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> SinkKind {
    match s.kind.as_deref() {
        None => {
            problem(at("type"), "missing; one of: stdout, file, tcp".into());
            SinkKind::Stdout
        }
        Some("stdout") => SinkKind::Stdout,
        Some("file") => match &s.path {
            Some(p) => SinkKind::File { path: p.clone() },
            None => {
                problem(at("path"), "missing; a file sink needs the path it appends to".into());
                SinkKind::Stdout
            }
        },
        Some("tcp") => match validate_tcp(s, name, data_dir, at, problem) {
            Some(t) => SinkKind::Tcp(Box::new(t)),
            None => SinkKind::Stdout,
        },
        Some(http_type @ ("http" | "elasticsearch" | "loki" | "otlp" | "splunk_hec")) => {
            match validate_http(http_type, s, name, data_dir, at, problem) {
                Some(h) => SinkKind::Http(Box::new(h)),
                None => SinkKind::Stdout,
            }
        }
        Some("kafka") => {
            let raw = s.encoding.as_deref() == Some("raw");
            match validate_kafka(s, name, data_dir, raw, at, problem) {
                Some(k) => SinkKind::Kafka(Box::new(k)),
                None => SinkKind::Stdout,
            }
        }
        Some("forward") => match validate_forward(s, name, data_dir, at, problem) {
            Some(f) => SinkKind::Forward(Box::new(f)),
            None => SinkKind::Stdout,
        },
        Some(other) => {
            problem(
                at("type"),
                format!(
                    "{other:?} is not a known sink type; one of: stdout, file, tcp, http, elasticsearch, loki, otlp, splunk_hec, kafka, forward"
                ),
            );
            SinkKind::Stdout
        }
    }
}
