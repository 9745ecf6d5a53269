//! Configuration: the TOML file as the user writes it (serde mirror structs that reject unknown
//! keys), `${VAR}` expansion, and `validate()`, which turns it into the runtime `Settings`
//! the pipeline uses, reporting every problem at once with the key it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use globset::{GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::adapt::multiline::Rule;
use crate::adapt::regex::{RegexError, RegexParser};

mod http;
pub use self::http::{
    client_identity, Api, Auth, Compression, DeadLetterSettings, EsTarget, Framing, HttpSettings, LineKind,
    LokiSettings, RecordKey, RetrySettings, Secret, SplunkSettings, TlsSettings,
};
use self::http::{http_keys_set, validate_http};

/// Checkpoints live here when the config does not say otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/tailship";
/// Bytes read but not yet acknowledged by every sink; past this the tailer stops reading.
/// 16 MiB keeps a stalled sidecar well inside a 64 MiB memory limit.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 16 << 20;
/// Lines longer than this are split into marked pieces; 1 MiB covers real stack traces.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
/// Inside Kubernetes' default 30 s termination grace period, with room to write the checkpoint.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);
pub const DEFAULT_PARTIAL_LINE_TIMEOUT: Duration = Duration::from_secs(1);
/// The stat-only safety net behind inotify (lost events, file systems without inotify).
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(5);
/// How long a rotated or deleted file is kept open after it stopped growing.
pub const DEFAULT_ROTATE_WAIT: Duration = Duration::from_secs(5);
/// How long the checkpoint of a file that disappeared is kept before it is forgotten.
pub const DEFAULT_CHECKPOINT_GRACE: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_OPEN_FILES: usize = 4096;
/// 256 KiB reads: few syscalls per MB, still small next to the in-flight budget.
pub const DEFAULT_READ_BUFFER_BYTES: usize = 256 << 10;
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9090";

/// Everything that can be wrong with a config. `Invalid` carries every problem found, so a
/// user fixes the file in one go.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

/// One problem with one key, e.g. `sinks[0].address: missing`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

// === the file as written ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    max_inflight_bytes: Option<usize>,
    shutdown_timeout: Option<DurationValue>,
    rescan_interval: Option<DurationValue>,
    rotate_wait: Option<DurationValue>,
    checkpoint_grace: Option<DurationValue>,
    max_open_files: Option<usize>,
    read_buffer_bytes: Option<usize>,
    #[serde(default)]
    metrics: MetricsFileConfig,
    /// Static resource attributes added to every record (`host.name`, `service.name`, …).
    #[serde(default)]
    resource: BTreeMap<String, String>,
    /// Which environment variable fills which resource key, over the Downward API defaults;
    /// an empty variable name turns a default off.
    #[serde(default)]
    resource_env: BTreeMap<String, String>,
    /// Static fields added to every record's `fields` (a source's own `fields` win).
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default)]
    sources: Vec<SourceFileConfig>,
    #[serde(default)]
    sinks: Vec<SinkFileConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFileConfig {
    enabled: Option<bool>,
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFileConfig {
    name: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Option<Vec<String>>,
    format: Option<String>,
    read_from: Option<String>,
    max_line_bytes: Option<usize>,
    partial_line_timeout: Option<DurationValue>,
    /// `regex` only: the pattern with named captures, and an optional time layout.
    pattern: Option<String>,
    timestamp_format: Option<String>,
    multiline: Option<MultilineFileConfig>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    /// `"path"` (default): namespace/pod/container from a `/var/log/pods/…` path; `"none"`.
    kubernetes_metadata: Option<String>,
    /// Reject lines that break the format's RFC instead of salvaging them (`STRICT_FORMATS`).
    #[serde(default)]
    strict: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MultilineFileConfig {
    start: Option<String>,
    preset: Option<String>,
    max_lines: Option<usize>,
    max_bytes: Option<usize>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkFileConfig {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Source names this sink reads; all sources when absent.
    inputs: Option<Vec<String>>,
    encoding: Option<String>,
    address: Option<String>,
    path: Option<PathBuf>,
    #[serde(default)]
    batch: BatchFileConfig,
    // The http sink's keys, validated by `http::validate_http` (serde's `flatten` would
    // defeat `deny_unknown_fields`, so they are listed here).
    url: Option<String>,
    method: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    compression: Option<String>,
    auth: Option<http::AuthFileConfig>,
    tls: Option<http::TlsFileConfig>,
    timeout: Option<DurationValue>,
    concurrency: Option<usize>,
    retry: Option<http::RetryFileConfig>,
    dead_letter: Option<http::DeadLetterFileConfig>,
    // The elasticsearch sink's own keys.
    index: Option<String>,
    data_stream: Option<String>,
    // The loki sink's own keys.
    labels: Option<BTreeMap<String, String>>,
    structured_metadata: Option<BTreeMap<String, String>>,
    tenant_id: Option<String>,
    line: Option<String>,
    // The splunk_hec sink's own key (it shares `index` and `line`).
    sourcetype: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchFileConfig {
    max_events: Option<usize>,
    max_bytes: Option<usize>,
    linger_ms: Option<u64>,
}

/// A duration written as `"1s"`, `"250ms"`, `"2m"`, or a bare number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(f64),
    Text(String),
}

impl DurationValue {
    fn parse(&self) -> Result<Duration, String> {
        match self {
            DurationValue::Seconds(s) if s.is_finite() && *s >= 0.0 => Ok(Duration::from_secs_f64(*s)),
            DurationValue::Seconds(s) => Err(format!("{s} is not a duration")),
            DurationValue::Text(t) => humantime::parse_duration(t)
                .map_err(|e| format!("{t:?} is not a duration ({e}); write e.g. \"500ms\" or \"5s\"")),
        }
    }
}

// === the runtime settings ===

/// The validated configuration the pipeline runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub max_inflight_bytes: usize,
    pub shutdown_timeout: Duration,
    pub rescan_interval: Duration,
    pub rotate_wait: Duration,
    pub checkpoint_grace: Duration,
    pub max_open_files: usize,
    pub read_buffer_bytes: usize,
    /// `None` when the metrics endpoint is disabled.
    pub metrics_address: Option<SocketAddr>,
    /// Resource attributes for every record: config `[resource]` over Downward API env vars.
    pub resource: BTreeMap<String, String>,
    pub sources: Vec<SourceSettings>,
    /// `strict` of each source, in the order of `sources`: reject lines that break the
    /// format's RFC rather than salvage them with a `parse_warning`. Kept beside `sources`
    /// rather than in `SourceSettings` so that code building a `SourceSettings` by hand is
    /// not broken before the adapter reads it.
    pub strict_sources: Vec<bool>,
    pub sinks: Vec<SinkSettings>,
}

#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub name: String,
    /// The include patterns as written (after `${VAR}` expansion), for discovery roots.
    pub include: Vec<String>,
    pub include_set: GlobSet,
    pub exclude_set: GlobSet,
    pub format: Format,
    pub read_from: ReadFrom,
    pub max_line_bytes: usize,
    pub partial_line_timeout: Duration,
    /// Joining continuation lines (stack traces) into the event that starts them.
    pub multiline: Option<MultilineSettings>,
    /// Static fields of every record of the source (global `[fields]` merged under the
    /// source's own), in key order.
    pub fields: Vec<(String, String)>,
    /// Derive `k8s.*` resource attributes from `/var/log/pods/<ns>_<pod>_<uid>/<container>/`
    /// paths.
    pub kubernetes_path_metadata: bool,
}

/// How a source's lines are turned into records (see `adapt`).
#[derive(Debug, Clone)]
pub enum Format {
    Raw,
    Json,
    Logfmt,
    Cri,
    Docker,
    Syslog,
    Combined,
    Common,
    Klog,
    Regex(Arc<RegexParser>),
    /// Picked per file from its first lines (`adapt::detect`).
    Auto,
}

/// The formats that have a strict mode (`strict = true`).
pub const STRICT_FORMATS: [&str; 4] = ["syslog", "logfmt", "combined", "common"];

/// The format names `format =` takes, for messages.
pub const FORMAT_NAMES: &str = "raw, json, logfmt, cri, docker, syslog, combined, common, klog, regex, auto";

impl Format {
    /// The config name of the format.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Json => "json",
            Format::Logfmt => "logfmt",
            Format::Cri => "cri",
            Format::Docker => "docker",
            Format::Syslog => "syslog",
            Format::Combined => "combined",
            Format::Common => "common",
            Format::Klog => "klog",
            Format::Regex(_) => "regex",
            Format::Auto => "auto",
        }
    }
}

/// A source's `multiline` table, checked.
#[derive(Debug, Clone)]
pub struct MultilineSettings {
    pub rule: Rule,
    pub max_lines: usize,
    pub max_bytes: usize,
    /// The last event of a file that went quiet is shipped after this long.
    pub timeout: Duration,
}

/// Defaults of the `multiline` table.
pub const DEFAULT_MULTILINE_MAX_LINES: usize = 500;
pub const DEFAULT_MULTILINE_MAX_BYTES: usize = 1 << 20;
pub const DEFAULT_MULTILINE_TIMEOUT_MS: u64 = 1000;

/// Where to start in a file that is already there at the agent's first start and has no
/// checkpoint. Files created later are always read from their first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Beginning,
    End,
}

#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub name: String,
    pub kind: SinkKind,
    pub encoding: Encoding,
    /// Indexes into `Settings::sources` of the sources this sink reads.
    pub inputs: Vec<usize>,
    pub batch: BatchSettings,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Stdout,
    File { path: PathBuf },
    Tcp { address: String },
    Http(Box<HttpSettings>),
}

/// What a sink writes per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One JSON record per line (the record shape of DESIGN.md).
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

/// Downward API variables read by default, and the resource key each one fills.
pub const DOWNWARD_API_ENV: &[(&str, &str)] = &[
    ("POD_NAME", "k8s.pod.name"),
    ("POD_NAMESPACE", "k8s.namespace.name"),
    ("POD_UID", "k8s.pod.uid"),
    ("NODE_NAME", "k8s.node.name"),
    ("CONTAINER_NAME", "k8s.container.name"),
];

impl Settings {
    /// Reads, expands and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Settings::from_toml(path, &text, &|name| std::env::var(name).ok())
    }

    /// Parses `text` (the contents of `path`), expanding `${VAR}` in string values with `env`.
    pub fn from_toml(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        expand_value(&mut value, String::new(), env, &mut problems);
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            });
        }
        let file: FileConfig = value.try_into().map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        // Relative paths in the file are relative to the file, not to wherever the agent
        // happens to be started from.
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("/"));
        validate(file, &base, env).map_err(|problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }
}

/// Expands `${VAR}` (and `$${` as a literal `${`) in every string of the parsed file, so the
/// error can name the key whose value referenced an unset variable.
fn expand_value(
    value: &mut toml::Value,
    key: String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        toml::Value::String(s) => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(message) => problems.push(Problem { key, message }),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, format!("{key}[{i}]"), env, problems);
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let child = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                expand_value(v, child, env, problems);
            }
        }
        _ => {}
    }
}

/// `${NAME}` → the variable's value; `${NAME:-default}` → the default when unset or empty.
fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad variable name {name:?} in {s:?}"));
            }
            match (env(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn validate(mut file: FileConfig, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Vec<Problem>> {
    for source in &mut file.sources {
        for pattern in &mut source.include {
            if !pattern.starts_with('/') {
                *pattern = format!("{}/{}", base.display(), pattern.trim_start_matches("./"));
            }
        }
    }
    let mut problems = Vec::new();
    let mut problem = |key: String, message: String| problems.push(Problem { key, message });

    let duration =
        |key: &str, v: &Option<DurationValue>, default: Duration, problem: &mut dyn FnMut(String, String)| match v {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|m| {
                problem(key.to_owned(), m);
                default
            }),
        };
    let shutdown_timeout = duration(
        "shutdown_timeout",
        &file.shutdown_timeout,
        DEFAULT_SHUTDOWN_TIMEOUT,
        &mut problem,
    );
    let rescan_interval = duration(
        "rescan_interval",
        &file.rescan_interval,
        DEFAULT_RESCAN_INTERVAL,
        &mut problem,
    );
    let rotate_wait = duration("rotate_wait", &file.rotate_wait, DEFAULT_ROTATE_WAIT, &mut problem);
    let checkpoint_grace = duration(
        "checkpoint_grace",
        &file.checkpoint_grace,
        DEFAULT_CHECKPOINT_GRACE,
        &mut problem,
    );
    if rescan_interval < Duration::from_millis(10) {
        problem("rescan_interval".into(), "must be at least 10ms".into());
    }

    let max_inflight_bytes = file.max_inflight_bytes.unwrap_or(DEFAULT_MAX_INFLIGHT_BYTES);
    if max_inflight_bytes < 64 << 10 {
        problem(
            "max_inflight_bytes".into(),
            format!("{max_inflight_bytes} is too small; at least 65536"),
        );
    }
    let max_open_files = file.max_open_files.unwrap_or(DEFAULT_MAX_OPEN_FILES);
    if max_open_files == 0 {
        problem("max_open_files".into(), "must be at least 1".into());
    }
    let read_buffer_bytes = file.read_buffer_bytes.unwrap_or(DEFAULT_READ_BUFFER_BYTES);
    if !(4096..=16 << 20).contains(&read_buffer_bytes) {
        problem(
            "read_buffer_bytes".into(),
            format!("{read_buffer_bytes} is out of range 4096..=16777216"),
        );
    }

    let metrics_address = match file.metrics.enabled {
        Some(false) => None,
        _ => {
            let text = file.metrics.address.as_deref().unwrap_or(DEFAULT_METRICS_ADDRESS);
            match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    problem("metrics.address".into(), format!("{text:?} is not an IP:port address"));
                    None
                }
            }
        }
    };

    let mut resource = BTreeMap::new();
    let mut resource_env: BTreeMap<String, String> = DOWNWARD_API_ENV
        .iter()
        .map(|(var, key)| ((*key).to_owned(), (*var).to_owned()))
        .collect();
    resource_env.extend(file.resource_env.clone());
    for (key, var) in &resource_env {
        if var.is_empty() {
            continue;
        }
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            resource.insert(key.clone(), v);
        }
    }
    if let Some(h) = env("HOSTNAME").filter(|v| !v.is_empty()) {
        resource.insert("host.name".to_owned(), h);
    }
    resource.extend(file.resource);

    if file.sources.is_empty() {
        problem("sources".into(), "at least one [[sources]] entry is needed".into());
    }
    let mut sources = Vec::new();
    let mut strict_sources = Vec::new();
    for (i, s) in file.sources.into_iter().enumerate() {
        let at = |k: &str| format!("sources[{i}].{k}");
        let name = s.name.clone().unwrap_or_else(|| format!("source{i}"));
        if sources.iter().any(|o: &SourceSettings| o.name == name) {
            problem(at("name"), format!("{name:?} is used by two sources"));
        }
        if s.include.is_empty() {
            problem(
                at("include"),
                "missing; list at least one glob, e.g. [\"/var/log/*.log\"]".into(),
            );
        }
        let include_set = build_globs(&s.include, &at("include"), &mut problem);
        let exclude = s
            .exclude
            .unwrap_or_else(|| vec!["**/*.gz".into(), "**/*.zst".into(), "**/*.bz2".into(), "**/*.xz".into()]);
        let exclude_set = build_globs(&exclude, &at("exclude"), &mut problem);
        let format = match s.format.as_deref().unwrap_or("raw") {
            "raw" => Format::Raw,
            "json" => Format::Json,
            "logfmt" => Format::Logfmt,
            "cri" => Format::Cri,
            "docker" => Format::Docker,
            "syslog" => Format::Syslog,
            "combined" => Format::Combined,
            "common" => Format::Common,
            "klog" => Format::Klog,
            "auto" => Format::Auto,
            "regex" => match &s.pattern {
                None => {
                    problem(
                        at("pattern"),
                        "missing; the regex format needs a pattern with named captures".into(),
                    );
                    Format::Raw
                }
                Some(pattern) => match RegexParser::new(pattern, s.timestamp_format.as_deref()) {
                    Ok(p) => Format::Regex(Arc::new(p)),
                    Err(e) => {
                        let key = if matches!(e, RegexError::TimestampFormat(_)) {
                            "timestamp_format"
                        } else {
                            "pattern"
                        };
                        problem(at(key), e.to_string());
                        Format::Raw
                    }
                },
            },
            other => {
                problem(
                    at("format"),
                    format!("{other:?} is not a known format; one of: {FORMAT_NAMES}"),
                );
                Format::Raw
            }
        };
        if !matches!(format, Format::Regex(_)) && s.format.as_deref() != Some("regex") {
            for (key, set) in [
                ("pattern", s.pattern.is_some()),
                ("timestamp_format", s.timestamp_format.is_some()),
            ] {
                if set {
                    problem(at(key), "only the regex format takes it".into());
                }
            }
        }
        if s.strict && !STRICT_FORMATS.contains(&s.format.as_deref().unwrap_or("raw")) {
            problem(
                at("strict"),
                format!("only these formats have a strict mode: {}", STRICT_FORMATS.join(", ")),
            );
        }
        strict_sources.push(s.strict);
        let multiline = s.multiline.as_ref().and_then(|m| {
            let rule = match (&m.start, &m.preset) {
                (Some(_), Some(_)) => {
                    problem(at("multiline"), "give either start or preset, not both".into());
                    return None;
                }
                (None, None) => {
                    problem(
                        at("multiline"),
                        "needs start = \"<regex>\" or preset = \"java\" | \"python\" | \"go\"".into(),
                    );
                    return None;
                }
                (Some(p), None) => Rule::start(p).map_err(|e| problem(at("multiline.start"), e.to_string())),
                (None, Some(p)) => Rule::preset(p).map_err(|e| problem(at("multiline.preset"), e.to_string())),
            }
            .ok()?;
            let max_lines = m.max_lines.unwrap_or(DEFAULT_MULTILINE_MAX_LINES);
            let max_bytes = m.max_bytes.unwrap_or(DEFAULT_MULTILINE_MAX_BYTES);
            let timeout_ms = m.timeout_ms.unwrap_or(DEFAULT_MULTILINE_TIMEOUT_MS);
            if max_lines == 0 {
                problem(at("multiline.max_lines"), "must be at least 1".into());
            }
            if !(256..=64 << 20).contains(&max_bytes) {
                problem(
                    at("multiline.max_bytes"),
                    format!("{max_bytes} is out of range 256..=67108864"),
                );
            }
            if !(1..=3_600_000).contains(&timeout_ms) {
                problem(
                    at("multiline.timeout_ms"),
                    format!("{timeout_ms} is out of range 1..=3600000"),
                );
            }
            Some(MultilineSettings {
                rule,
                max_lines,
                max_bytes,
                timeout: Duration::from_millis(timeout_ms),
            })
        });
        let mut fields = file.fields.clone();
        fields.extend(s.fields.clone());
        let kubernetes_path_metadata = match s.kubernetes_metadata.as_deref().unwrap_or("path") {
            "path" => true,
            "none" => false,
            other => {
                problem(
                    at("kubernetes_metadata"),
                    format!("{other:?} must be \"path\" or \"none\""),
                );
                false
            }
        };
        let read_from = match s.read_from.as_deref().unwrap_or("beginning") {
            "beginning" => ReadFrom::Beginning,
            "end" => ReadFrom::End,
            other => {
                problem(at("read_from"), format!("{other:?} must be \"beginning\" or \"end\""));
                ReadFrom::Beginning
            }
        };
        let max_line_bytes = s.max_line_bytes.unwrap_or(DEFAULT_MAX_LINE_BYTES);
        if !(256..=64 << 20).contains(&max_line_bytes) {
            problem(
                at("max_line_bytes"),
                format!("{max_line_bytes} is out of range 256..=67108864"),
            );
        }
        let partial_line_timeout = duration(
            &at("partial_line_timeout"),
            &s.partial_line_timeout,
            DEFAULT_PARTIAL_LINE_TIMEOUT,
            &mut problem,
        );
        sources.push(SourceSettings {
            name,
            include: s.include,
            include_set,
            exclude_set,
            format,
            read_from,
            max_line_bytes,
            partial_line_timeout,
            multiline,
            fields: fields.into_iter().collect(),
            kubernetes_path_metadata,
        });
    }

    if file.sinks.is_empty() {
        problem("sinks".into(), "at least one [[sinks]] entry is needed".into());
    }
    let mut sinks = Vec::new();
    for (i, s) in file.sinks.into_iter().enumerate() {
        let at = |k: &str| format!("sinks[{i}].{k}");
        let name = s.name.clone().unwrap_or_else(|| format!("sink{i}"));
        if sinks.iter().any(|o: &SinkSettings| o.name == name) {
            problem(at("name"), format!("{name:?} is used by two sinks"));
        }
        let kind = match s.kind.as_deref() {
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
            Some("tcp") => match &s.address {
                Some(a)
                    if a.rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
                {
                    SinkKind::Tcp { address: a.clone() }
                }
                Some(a) => {
                    problem(at("address"), format!("{a:?} is not host:port"));
                    SinkKind::Stdout
                }
                None => {
                    problem(at("address"), "missing; a tcp sink needs host:port".into());
                    SinkKind::Stdout
                }
            },
            Some(http_type @ ("http" | "elasticsearch" | "loki" | "otlp" | "splunk_hec")) => {
                let data_dir = base.join(file.data_dir.as_deref().unwrap_or(Path::new(DEFAULT_DATA_DIR)));
                match validate_http(http_type, &s, &name, &data_dir, &at, &mut problem) {
                    Some(h) => SinkKind::Http(Box::new(h)),
                    None => SinkKind::Stdout,
                }
            }
            Some(other) => {
                problem(
                    at("type"),
                    format!(
                        "{other:?} is not a known sink type; one of: stdout, file, tcp, http, elasticsearch, loki, otlp, splunk_hec"
                    ),
                );
                SinkKind::Stdout
            }
        };
        for key in http_keys_set(s.kind.as_deref(), &s) {
            problem(
                at(key),
                format!("a {} sink does not take this key", s.kind.as_deref().unwrap_or("")),
            );
        }
        // Keys that belong to another sink type are mistakes worth reporting, not ignoring.
        if s.address.is_some() && !matches!(kind, SinkKind::Tcp { .. }) && s.kind.as_deref() != Some("tcp") {
            problem(at("address"), "only a tcp sink takes an address".into());
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
        sinks.push(SinkSettings {
            name,
            kind,
            encoding,
            inputs,
            batch,
        });
    }

    for (i, s) in sources.iter().enumerate() {
        if !sinks.is_empty() && !sinks.iter().any(|k: &SinkSettings| k.inputs.contains(&i)) {
            problems.push(Problem {
                key: format!("sources[{i}]"),
                message: format!("no sink reads source {:?}", s.name),
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Settings {
        data_dir: base.join(file.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))),
        max_inflight_bytes,
        shutdown_timeout,
        rescan_interval,
        rotate_wait,
        checkpoint_grace,
        max_open_files,
        read_buffer_bytes,
        metrics_address,
        resource,
        sources,
        strict_sources,
        sinks,
    })
}

fn build_globs(patterns: &[String], key: &str, problem: &mut dyn FnMut(String, String)) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for (j, p) in patterns.iter().enumerate() {
        // `literal_separator`: `*` stays inside one directory, `**` crosses them, as in a shell.
        match globset::GlobBuilder::new(p).literal_separator(true).build() {
            Ok(g) => {
                builder.add(g);
            }
            Err(e) => problem(format!("{key}[{j}]"), format!("{p:?} is not a valid glob: {e}")),
        }
    }
    builder.build().unwrap_or_else(|e| {
        problem(key.to_owned(), e.to_string());
        GlobSet::empty()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        let env = |name: &str| match name {
            "LOG_DIR" => Some("/var/log/app".to_owned()),
            "POD_NAME" => Some("web-1".to_owned()),
            _ => None,
        };
        Settings::from_toml(Path::new("test.toml"), text, &env)
    }

    const MINIMAL: &str = r#"
        data_dir = "/tmp/x"
        [[sources]]
        name = "app"
        include = ["${LOG_DIR}/**/*.log"]
        [[sinks]]
        type = "tcp"
        address = "127.0.0.1:5170"
    "#;

    #[test]
    fn minimal_config_expands_env_and_applies_defaults() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.sources[0].include, vec!["/var/log/app/**/*.log"]);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
        assert!(s.sources[0].include_set.is_match("/var/log/app/a/b/c.log"));
        assert!(!s.sources[0].include_set.is_match("/var/log/other.log"));
        assert!(s.sources[0].exclude_set.is_match("/var/log/app/x.log.gz"));
        assert_eq!(s.sinks[0].inputs, vec![0]);
        assert_eq!(s.sinks[0].encoding, Encoding::Ndjson);
        assert_eq!(s.max_inflight_bytes, DEFAULT_MAX_INFLIGHT_BYTES);
        assert_eq!(s.resource.get("k8s.pod.name").map(String::as_str), Some("web-1"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(&format!("{MINIMAL}\n[metrics]\nadress = \"x\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("adress"), "{err}");
    }

    #[test]
    fn unset_variable_names_key_and_variable() {
        let err = parse(&MINIMAL.replace("${LOG_DIR}", "${NOPE}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sources[0].include[0]") && err.contains("NOPE"), "{err}");
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let text = MINIMAL
            .replace("${LOG_DIR}/**/*.log", "logs/*.log")
            .replace("/tmp/x", "data");
        let s = Settings::from_toml(Path::new("/etc/tailship/agent.toml"), &text, &|_| None).unwrap();
        assert_eq!(s.sources[0].include, vec!["/etc/tailship/logs/*.log"]);
        assert_eq!(s.data_dir, PathBuf::from("/etc/tailship/data"));
    }

    #[test]
    fn default_syntax_and_escape() {
        let env = |_: &str| None;
        assert_eq!(expand_str("${A:-/x}/$${B}", &env).unwrap(), "/x/${B}");
    }

    #[test]
    fn every_problem_is_reported() {
        let text = r#"
            [[sources]]
            include = ["/logs/[z-a]*.log"]
            format = "yaml"
            partial_line_timeout = "soon"
            [[sinks]]
            type = "tcp"
        "#;
        let err = parse(text).unwrap_err().to_string();
        for key in [
            "sources[0].include[0]",
            "sources[0].format",
            "sources[0].partial_line_timeout",
            "sinks[0].address",
        ] {
            assert!(err.contains(key), "{key} missing from {err}");
        }
    }

    #[test]
    fn durations_accept_text_and_seconds() {
        let s = parse(&format!("shutdown_timeout = 3\nrotate_wait = \"250ms\"\n{MINIMAL}")).unwrap();
        assert_eq!(s.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(s.rotate_wait, Duration::from_millis(250));
    }

    /// MINIMAL with `lines` added to its source.
    fn with_source(lines: &str) -> String {
        MINIMAL.replace(
            "include = [\"${LOG_DIR}/**/*.log\"]",
            &format!("include = [\"${{LOG_DIR}}/**/*.log\"]\n{lines}"),
        )
    }

    #[test]
    fn adapter_options_are_read() {
        let s = parse(
            &with_source(
                r#"format = "regex"
                pattern = '^(?P<timestamp>\S+) (?P<message>.*)$'
                timestamp_format = "%Y-%m-%dT%H:%M:%S"
                multiline = { preset = "java", max_lines = 50, timeout_ms = 250 }
                fields = { team = "payments" }
                kubernetes_metadata = "none""#,
            )
            .replace(
                "data_dir = \"/tmp/x\"",
                "data_dir = \"/tmp/x\"\n[fields]\nenv = \"prod\"\nteam = \"all\"",
            ),
        )
        .unwrap();
        let src = &s.sources[0];
        assert!(matches!(src.format, Format::Regex(_)));
        let m = src.multiline.as_ref().unwrap();
        assert_eq!((m.max_lines, m.max_bytes), (50, DEFAULT_MULTILINE_MAX_BYTES));
        assert_eq!(m.timeout, Duration::from_millis(250));
        assert_eq!(
            src.fields,
            vec![("env".into(), "prod".into()), ("team".into(), "payments".into())]
        );
        assert!(!src.kubernetes_path_metadata);
        assert_eq!(s.strict_sources, vec![false], "lenient unless asked");
        for name in STRICT_FORMATS {
            let s = parse(&with_source(&format!("format = \"{name}\"\nstrict = true"))).unwrap();
            assert_eq!(s.strict_sources, vec![true], "{name}");
        }
        for name in FORMAT_NAMES.split(", ").filter(|n| *n != "regex") {
            let s = parse(&with_source(&format!("format = \"{name}\""))).unwrap();
            assert_eq!(s.sources[0].format.name(), name);
            assert!(s.sources[0].kubernetes_path_metadata);
        }
    }

    #[test]
    fn adapter_mistakes_name_their_key() {
        let cases = [
            ("format = \"regex\"", "sources[0].pattern"),
            ("format = \"regex\"\npattern = '(?P<message>'", "sources[0].pattern"),
            ("format = \"regex\"\npattern = '(.*)'", "sources[0].pattern"),
            (
                "format = \"regex\"\npattern = '(?P<timestamp>.*)'\ntimestamp_format = \"%Q\"",
                "sources[0].timestamp_format",
            ),
            ("pattern = '(?P<message>.*)'", "sources[0].pattern"),
            ("multiline = { preset = \"cobol\" }", "sources[0].multiline.preset"),
            ("multiline = { start = \"[\" }", "sources[0].multiline.start"),
            (
                "multiline = { start = \"^x\", preset = \"go\" }",
                "sources[0].multiline",
            ),
            ("multiline = {}", "sources[0].multiline"),
            (
                "multiline = { preset = \"go\", timeout_ms = 0 }",
                "sources[0].multiline.timeout_ms",
            ),
            (
                "multiline = { preset = \"go\", max_lines = 0 }",
                "sources[0].multiline.max_lines",
            ),
            ("kubernetes_metadata = \"api\"", "sources[0].kubernetes_metadata"),
            ("format = \"xml\"", "sources[0].format"),
            ("strict = true", "sources[0].strict"),
            ("format = \"json\"\nstrict = true", "sources[0].strict"),
            ("format = \"syslog\"\nstrict = \"yes\"", "strict"),
        ];
        for (lines, key) in cases {
            let err = parse(&with_source(lines)).unwrap_err().to_string();
            assert!(err.contains(key), "{lines}: {key} missing from {err}");
        }
    }

    #[test]
    fn downward_api_variable_names_are_configurable() {
        let env = |name: &str| match name {
            "POD_NAME" => Some("from-default".to_owned()),
            "MY_POD" => Some("from-mine".to_owned()),
            "NODE_NAME" => Some("n1".to_owned()),
            _ => None,
        };
        let text = format!("[resource_env]\n\"k8s.pod.name\" = \"MY_POD\"\n\"k8s.node.name\" = \"\"\n{MINIMAL}")
            .replace("${LOG_DIR}", "/l");
        let s = Settings::from_toml(Path::new("t.toml"), &text, &env).unwrap();
        assert_eq!(s.resource.get("k8s.pod.name").map(String::as_str), Some("from-mine"));
        assert_eq!(s.resource.get("k8s.node.name"), None, "turned off");
    }
}
