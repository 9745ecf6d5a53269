//! The HTTP sinks' configuration: their keys as written (`url`, `method`, `headers`,
//! `encoding`, `compression`, `auth`, `tls`, `timeout`, `concurrency`, `retry`, `dead_letter`,
//! and the elasticsearch sink's `index` / `data_stream`) and their validation into
//! `HttpSettings`. Kept apart from `config.rs` because it is a sizeable block of its own; the
//! parent's `validate` calls `validate_http` for `type = "http"` and `"elasticsearch"`.
//!
//! Files named here (CA, client certificate and key, token and password files) are read at
//! validation, so `tailship validate` reports a missing or unparsable one; secrets are kept
//! in `Secret`, whose `Debug` never shows them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::file::{DurationValue, SinkFileConfig};

/// A request that takes longer (connect, send, answer) is abandoned and retried.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests in flight at once. Two hide one round trip behind the next batch's encoding
/// without letting one sidecar flood a collector.
pub const DEFAULT_CONCURRENCY: usize = 2;
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(200);
/// The longest wait between two attempts (a `Retry-After` may ask for longer, up to
/// `MAX_RETRY_AFTER`).
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(30);
/// A dead-letter file is rotated past this size.
pub const DEFAULT_DEAD_LETTER_FILE_BYTES: u64 = 4 << 20;
/// All of one sink's dead-letter files together; the oldest rotated file is deleted past it.
/// 12 MiB fits the 16 Mi `emptyDir` of the pods in `k8s/` with room for checkpoints.
pub const DEFAULT_DEAD_LETTER_TOTAL_BYTES: u64 = 12 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthFileConfig {
    strategy: Option<String>,
    user: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFileConfig {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryFileConfig {
    initial_backoff: Option<DurationValue>,
    max_backoff: Option<DurationValue>,
    /// 0 (the default): retry forever.
    max_retries: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeadLetterFileConfig {
    max_file_bytes: Option<u64>,
    max_total_bytes: Option<u64>,
}

/// A validated HTTP sink (`type = "http"` or `"elasticsearch"`).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Where requests go (for elasticsearch: the `_bulk` endpoint under the configured URL).
    pub url: reqwest::Url,
    pub api: Api,
    pub method: reqwest::Method,
    /// Extra request headers; values may hold API keys, so they are secrets too.
    pub headers: Vec<(reqwest::header::HeaderName, Secret)>,
    pub framing: Framing,
    pub compression: Compression,
    pub auth: Option<Auth>,
    pub tls: TlsSettings,
    pub timeout: Duration,
    pub concurrency: usize,
    pub retry: RetrySettings,
    pub dead_letter: DeadLetterSettings,
}

/// The protocol spoken over the common HTTP machinery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    /// The records as they are (`type = "http"`).
    Plain,
    /// The `_bulk` API: an action line before each record (`type = "elasticsearch"`).
    Elasticsearch(EsTarget),
    /// The Loki push API: records grouped into labelled streams (`type = "loki"`).
    Loki(LokiSettings),
    /// OTLP/HTTP logs (`type = "otlp"`); `json`: OTLP/JSON instead of protobuf.
    Otlp { json: bool },
    /// Splunk's HTTP Event Collector (`type = "splunk_hec"`).
    SplunkHec(SplunkSettings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplunkSettings {
    /// The Splunk index; the token's default index when `None`.
    pub index: Option<String>,
    pub sourcetype: Option<String>,
    /// The event: the whole record (a JSON object) or its message.
    pub event: LineKind,
}

pub const SPLUNK_EVENT_PATH: &str = "/services/collector/event";

pub const OTLP_LOGS_PATH: &str = "/v1/logs";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiSettings {
    /// Label name → the record key its value comes from; a record without the key does not
    /// get the label.
    pub labels: Vec<(String, RecordKey)>,
    /// Per-entry structured metadata: name → record key.
    pub structured_metadata: Vec<(String, RecordKey)>,
    /// `X-Scope-OrgID`, for a multi-tenant Loki.
    pub tenant_id: Option<String>,
    pub line: LineKind,
}

/// A key of the record: a top-level one, `resource.<attribute>` or `fields.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Level,
    File,
    Stream,
    Message,
    Resource(String),
    Field(String),
}

impl RecordKey {
    fn parse(text: &str) -> Option<RecordKey> {
        Some(match text {
            "level" => RecordKey::Level,
            "file" => RecordKey::File,
            "stream" => RecordKey::Stream,
            "message" => RecordKey::Message,
            _ => match text.split_once('.') {
                Some(("resource", k)) if !k.is_empty() => RecordKey::Resource(k.to_owned()),
                Some(("fields", k)) if !k.is_empty() => RecordKey::Field(k.to_owned()),
                _ => return None,
            },
        })
    }
}

/// What a Loki entry's line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// The record's `message`.
    Message,
    /// The whole record as JSON (nothing lost; `| json` in LogQL reads it).
    Record,
}

pub const LOKI_PUSH_PATH: &str = "/loki/api/v1/push";

/// Low-cardinality defaults: where a line comes from and how severe it is, never per-line
/// values (a label value that changes per line makes a stream per line).
pub const DEFAULT_LOKI_LABELS: &[(&str, &str)] = &[
    ("namespace", "resource.k8s.namespace.name"),
    ("pod", "resource.k8s.pod.name"),
    ("container", "resource.k8s.container.name"),
    ("file", "file"),
    ("level", "level"),
];

/// Where Elasticsearch documents go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsTarget {
    /// `index` ops into an index named by a pattern (`%Y`, `%m`, `%d` of the record's time).
    Index(String),
    /// `create` ops into a data stream (append-only; replays answer 409, which is success).
    DataStream(String),
}

/// The default index pattern: a daily index, as log indexes usually are.
pub const DEFAULT_ES_INDEX: &str = "tailship-%Y.%m.%d";

/// How a batch of NDJSON records is framed in a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/x-ndjson`: one record per line.
    Ndjson,
    /// `application/json`: `[record,record,…]`.
    JsonArray,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone)]
pub enum Auth {
    Basic {
        user: String,
        password: Secret,
    },
    Bearer {
        token: Secret,
    },
    /// `Authorization: Splunk <token>` (the HEC token).
    Splunk {
        token: Secret,
    },
}

/// A secret from the config (after `${VAR}` expansion) or a file read at every request, so a
/// rotated token (a projected service-account token) is picked up without a restart.
#[derive(Clone)]
pub enum Secret {
    Value(String),
    File(PathBuf),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
        }
    }
}

impl Secret {
    /// The secret's text; a file's content without its trailing newline.
    pub fn reveal(&self) -> std::io::Result<String> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::File(p) => Ok(std::fs::read_to_string(p)?.trim_end_matches(['\n', '\r']).to_owned()),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM certificates trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key (PEM) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate: only by explicit opt-in.
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    pub initial: Duration,
    pub max: Duration,
    /// `None`: forever (the file on disk is the buffer). After this many retries a batch goes
    /// to the dead-letter file rather than being dropped.
    pub max_retries: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct DeadLetterSettings {
    /// `data_dir/dead-letter`.
    pub dir: PathBuf,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
}

/// The keys set on a sink that its type does not take.
pub(super) fn http_keys_set(kind: Option<&str>, s: &SinkFileConfig) -> Vec<&'static str> {
    let (http, es, loki) = match kind {
        Some("http") => (true, false, false),
        Some("elasticsearch") => (true, true, false),
        Some("loki") => (true, false, true),
        Some("otlp" | "splunk_hec") => (true, false, false),
        _ => (false, false, false),
    };
    let otlp = kind == Some("otlp");
    let splunk = kind == Some("splunk_hec");
    [
        ("index", !es && !splunk && s.index.is_some()),
        ("sourcetype", !splunk && s.sourcetype.is_some()),
        ("data_stream", !es && s.data_stream.is_some()),
        ("labels", !loki && s.labels.is_some()),
        ("structured_metadata", !loki && s.structured_metadata.is_some()),
        ("tenant_id", !loki && s.tenant_id.is_some()),
        ("line", !loki && !splunk && s.line.is_some()),
        ("method", (es || loki || otlp || splunk) && s.method.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .chain(if http { Vec::new() } else { http_only_keys(s) })
    .collect()
}

fn http_only_keys(s: &SinkFileConfig) -> Vec<&'static str> {
    [
        ("url", s.url.is_some()),
        ("method", s.method.is_some()),
        ("headers", s.headers.is_some()),
        ("compression", s.compression.is_some()),
        ("auth", s.auth.is_some()),
        ("tls", s.tls.is_some()),
        ("timeout", s.timeout.is_some()),
        ("concurrency", s.concurrency.is_some()),
        ("retry", s.retry.is_some()),
        ("dead_letter", s.dead_letter.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect()
}

/// Validates an http or elasticsearch sink; `None` when a problem was reported.
pub(super) fn validate_http(
    kind: &str,
    s: &SinkFileConfig,
    name: &str,
    data_dir: &Path,
    at: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> Option<HttpSettings> {
    let mut ok = true;
    let mut bad = |key: &str, message: String| {
        ok = false;
        problem(at(key), message);
    };

    let url = match s.url.as_deref() {
        None => {
            bad("url", "missing; an http sink needs the URL it posts to".into());
            None
        }
        Some(text) => match reqwest::Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                bad("url", format!("{text:?} is not an http:// or https:// URL with a host"));
                None
            }
            Err(e) => {
                bad("url", format!("{text:?} is not a URL: {e}"));
                None
            }
        },
    };
    let method_text = s.method.as_deref().unwrap_or("POST");
    let method = match reqwest::Method::from_bytes(method_text.to_ascii_uppercase().as_bytes()) {
        Ok(m) if matches!(m.as_str(), "POST" | "PUT" | "PATCH") => m,
        _ => {
            bad("method", format!("{method_text:?} must be POST, PUT or PATCH"));
            reqwest::Method::POST
        }
    };
    let mut headers = Vec::new();
    for (k, v) in s.headers.iter().flatten() {
        match (
            reqwest::header::HeaderName::from_bytes(k.as_bytes()),
            reqwest::header::HeaderValue::from_str(v),
        ) {
            (Ok(name), Ok(_)) => headers.push((name, Secret::Value(v.clone()))),
            (Err(_), _) => bad(&format!("headers.{k}"), format!("{k:?} is not a valid header name")),
            (_, Err(_)) => bad(
                &format!("headers.{k}"),
                "the value has characters a header cannot carry".into(),
            ),
        }
    }
    let default_encoding = if kind == "otlp" { "protobuf" } else { "ndjson" };
    let mut otlp_json = false;
    let framing = match s.encoding.as_deref().unwrap_or(default_encoding) {
        "protobuf" if kind == "otlp" => Framing::Ndjson,
        "json" if kind == "otlp" => {
            otlp_json = true;
            Framing::Ndjson
        }
        "ndjson" if kind != "otlp" => Framing::Ndjson,
        "json_array" if kind == "http" => Framing::JsonArray,
        other => {
            let takes = match kind {
                "http" => "\"ndjson\" or \"json_array\"",
                "otlp" => "\"protobuf\" or \"json\"",
                _ => "\"ndjson\"",
            };
            bad("encoding", format!("{other:?}: an {kind} sink sends {takes}"));
            Framing::Ndjson
        }
    };
    let compression = match s.compression.as_deref().unwrap_or("none") {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        // Elasticsearch and Loki decode gzip request bodies, not zstd.
        "zstd" if kind == "http" => Compression::Zstd,
        other => {
            let takes = if kind == "http" {
                "\"none\", \"gzip\" or \"zstd\""
            } else {
                "\"none\" or \"gzip\""
            };
            bad("compression", format!("{other:?}: an {kind} sink takes {takes}"));
            Compression::None
        }
    };

    let auth = s.auth.as_ref().and_then(|a| {
        // A secret given both inline and as a file is ambiguous; a file that cannot be read
        // now would fail every request, so both are problems at start.
        let mut secret = |key: &str, value: &Option<String>, file: &Option<PathBuf>| -> Option<Secret> {
            match (value, file) {
                (Some(v), None) => Some(Secret::Value(v.clone())),
                (None, Some(f)) => match std::fs::read_to_string(f) {
                    Ok(_) => Some(Secret::File(f.clone())),
                    Err(e) => {
                        bad(&format!("auth.{key}_file"), format!("cannot read {}: {e}", f.display()));
                        None
                    }
                },
                (Some(_), Some(_)) => {
                    bad(&format!("auth.{key}"), format!("give {key} or {key}_file, not both"));
                    None
                }
                (None, None) => {
                    bad(&format!("auth.{key}"), format!("missing; set {key} or {key}_file"));
                    None
                }
            }
        };
        match a.strategy.as_deref() {
            Some("basic") => {
                let user = a.user.clone();
                let password = secret("password", &a.password, &a.password_file);
                match user {
                    Some(user) => password.map(|password| Auth::Basic { user, password }),
                    None => {
                        bad("auth.user", "missing; basic auth needs a user".into());
                        None
                    }
                }
            }
            Some("bearer") => secret("token", &a.token, &a.token_file).map(|token| Auth::Bearer { token }),
            // A splunk_hec sink's auth is its HEC token: the strategy may go unsaid.
            Some("splunk") | None if kind == "splunk_hec" => {
                secret("token", &a.token, &a.token_file).map(|token| Auth::Splunk { token })
            }
            other => {
                bad(
                    "auth.strategy",
                    format!("{other:?} must be \"basic\" or \"bearer\" (or \"splunk\" for splunk_hec)"),
                );
                None
            }
        }
    });

    let mut tls = TlsSettings::default();
    if let Some(t) = &s.tls {
        if let Some(ca) = &t.ca_file {
            match std::fs::read(ca).map(|pem| reqwest::Certificate::from_pem_bundle(&pem)) {
                Ok(Ok(certs)) if !certs.is_empty() => tls.ca_file = Some(ca.clone()),
                Ok(_) => bad("tls.ca_file", format!("{} holds no PEM certificate", ca.display())),
                Err(e) => bad("tls.ca_file", format!("cannot read {}: {e}", ca.display())),
            }
        }
        match (&t.cert_file, &t.key_file) {
            (Some(cert), Some(key)) => match client_identity(cert, key) {
                Ok(_) => tls.client_cert = Some((cert.clone(), key.clone())),
                Err(m) => bad("tls.cert_file", m),
            },
            (Some(_), None) => bad("tls.key_file", "missing; a client certificate needs its key".into()),
            (None, Some(_)) => bad("tls.cert_file", "missing; a client key needs its certificate".into()),
            (None, None) => {}
        }
        tls.insecure_skip_verify = t.insecure_skip_verify.unwrap_or(false);
    }
    if let Some(u) = &url {
        if u.scheme() == "http" && (s.tls.is_some()) {
            bad("tls", "the url is http://; TLS settings need an https:// url".into());
        }
    }

    let mut duration = |key: &str, v: &Option<DurationValue>, default: Duration| match v {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|m| {
            bad(key, m.to_string());
            default
        }),
    };
    let timeout = duration("timeout", &s.timeout, DEFAULT_TIMEOUT);
    let r = s.retry.as_ref();
    let retry = RetrySettings {
        initial: duration(
            "retry.initial_backoff",
            r.map_or(&None, |r| &r.initial_backoff),
            DEFAULT_RETRY_INITIAL,
        ),
        max: duration(
            "retry.max_backoff",
            r.map_or(&None, |r| &r.max_backoff),
            DEFAULT_RETRY_MAX,
        ),
        max_retries: r.and_then(|r| r.max_retries).filter(|n| *n > 0),
    };
    if timeout < Duration::from_millis(100) {
        bad("timeout", "must be at least 100ms".into());
    }
    if retry.initial.is_zero() || retry.max < retry.initial {
        bad(
            "retry",
            "initial_backoff must be above 0 and not above max_backoff".into(),
        );
    }
    let concurrency = s.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=64).contains(&concurrency) {
        bad("concurrency", format!("{concurrency} is out of range 1..=64"));
    }
    let d = s.dead_letter.as_ref();
    let dead_letter = DeadLetterSettings {
        dir: data_dir.join("dead-letter"),
        max_file_bytes: d
            .and_then(|d| d.max_file_bytes)
            .unwrap_or(DEFAULT_DEAD_LETTER_FILE_BYTES),
        max_total_bytes: d
            .and_then(|d| d.max_total_bytes)
            .unwrap_or(DEFAULT_DEAD_LETTER_TOTAL_BYTES),
    };
    if dead_letter.max_file_bytes < 4096 || dead_letter.max_total_bytes < dead_letter.max_file_bytes {
        bad(
            "dead_letter",
            "max_file_bytes must be at least 4096 and not above max_total_bytes".into(),
        );
    }
    if name.contains(['/', '\0']) || name.starts_with('.') {
        bad(
            "name",
            format!("{name:?} names the dead-letter file; it cannot hold '/' or start with '.'"),
        );
    }

    let api = match kind {
        "elasticsearch" => match (&s.index, &s.data_stream) {
            (Some(_), Some(_)) => {
                bad("data_stream", "give index or data_stream, not both".into());
                Api::Plain
            }
            (None, Some(ds)) => match es_name_problem(ds, false) {
                None => Api::Elasticsearch(EsTarget::DataStream(ds.clone())),
                Some(m) => {
                    bad("data_stream", m);
                    Api::Plain
                }
            },
            (index, None) => {
                let pattern = index.as_deref().unwrap_or(DEFAULT_ES_INDEX);
                match es_name_problem(pattern, true) {
                    None => Api::Elasticsearch(EsTarget::Index(pattern.to_owned())),
                    Some(m) => {
                        bad("index", m);
                        Api::Plain
                    }
                }
            }
        },
        "loki" => {
            let mut keys = |key: &str,
                            table: Option<&std::collections::BTreeMap<String, String>>,
                            defaults: &[(&str, &str)]| {
                let pairs: Vec<(String, String)> = match table {
                    Some(t) => t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    None => defaults.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                };
                let mut out = Vec::new();
                for (name, source) in pairs {
                    // Loki's label (and metadata) names: [a-zA-Z_][a-zA-Z0-9_]*.
                    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid {
                        bad(&format!("{key}.{name}"), "a name is [a-zA-Z_][a-zA-Z0-9_]*".into());
                        continue;
                    }
                    match RecordKey::parse(&source) {
                        Some(k) => out.push((name, k)),
                        None => bad(
                            &format!("{key}.{name}"),
                            format!("{source:?}: one of level, file, stream, message, resource.<key>, fields.<key>"),
                        ),
                    }
                }
                out
            };
            let labels = keys("labels", s.labels.as_ref(), DEFAULT_LOKI_LABELS);
            let structured_metadata = keys("structured_metadata", s.structured_metadata.as_ref(), &[]);
            let line = match s.line.as_deref().unwrap_or("message") {
                "message" => LineKind::Message,
                "record" => LineKind::Record,
                other => {
                    bad("line", format!("{other:?} must be \"message\" or \"record\""));
                    LineKind::Message
                }
            };
            Api::Loki(LokiSettings {
                labels,
                structured_metadata,
                tenant_id: s.tenant_id.clone(),
                line,
            })
        }
        "otlp" => Api::Otlp { json: otlp_json },
        "splunk_hec" => {
            if !matches!(auth, Some(Auth::Splunk { .. })) {
                bad(
                    "auth",
                    "missing; a splunk_hec sink needs auth = { token = \"…\" } (or token_file)".into(),
                );
            }
            let event = match s.line.as_deref().unwrap_or("record") {
                "message" => LineKind::Message,
                "record" => LineKind::Record,
                other => {
                    bad("line", format!("{other:?} must be \"message\" or \"record\""));
                    LineKind::Record
                }
            };
            if let Some(i) = &s.index {
                if i.is_empty()
                    || i.starts_with('_')
                    || i.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                {
                    bad("index", format!("{i:?} is not a Splunk index name"));
                }
            }
            Api::SplunkHec(SplunkSettings {
                index: s.index.clone(),
                sourcetype: s.sourcetype.clone(),
                event,
            })
        }
        _ => Api::Plain,
    };
    if let Some(t) = s.tenant_id.as_deref().filter(|_| matches!(api, Api::Loki(_))) {
        if t.is_empty() || reqwest::header::HeaderValue::from_str(t).is_err() {
            bad("tenant_id", "not a valid header value".into());
        }
    }
    let mut url = url?;
    if matches!(api, Api::Otlp { .. }) && !url.path().ends_with(OTLP_LOGS_PATH) {
        // OTLP/HTTP: the base endpoint (`http://collector:4318`) gets the logs signal path,
        // as the OTLP exporter spec does with OTEL_EXPORTER_OTLP_ENDPOINT.
        let path = format!("{}{OTLP_LOGS_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    if matches!(api, Api::SplunkHec(_)) && !url.path().ends_with(SPLUNK_EVENT_PATH) {
        let path = format!("{}{SPLUNK_EVENT_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    if matches!(api, Api::Loki(_)) && !url.path().ends_with(LOKI_PUSH_PATH) {
        // `url` is Loki (`http://loki:3100`, maybe under a gateway path); the push API is
        // below it. A URL that already names it is taken as it is.
        let path = format!("{}{LOKI_PUSH_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    if matches!(api, Api::Elasticsearch(_)) {
        // `url` is the cluster (`http://es:9200`, maybe under a proxy path); the API is
        // `_bulk` below it. `filter_path` trims the answer to what is read: per-item status
        // and error.
        let path = format!("{}/_bulk", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_query(Some("filter_path=errors,items.*.status,items.*.error"));
    }
    ok.then_some(HttpSettings {
        url,
        api,
        method,
        headers,
        framing,
        compression,
        auth,
        tls,
        timeout,
        concurrency,
        retry,
        dead_letter,
    })
}

/// What is wrong with an index or data stream name (ES: lowercase, no `\ / * ? " < > | , #`
/// or space, not starting with `-`, `_`, `+`); for a pattern, only `%Y`, `%m`, `%d`.
fn es_name_problem(name: &str, pattern: bool) -> Option<String> {
    let mut rest = name;
    let mut literal = String::new();
    while let Some(at) = rest.find('%') {
        literal.push_str(&rest[..at]);
        match rest[at + 1..].chars().next() {
            Some('Y' | 'm' | 'd') if pattern => literal.push('0'),
            _ if pattern => return Some(format!("{name:?}: only %Y, %m and %d are known")),
            _ => return Some(format!("{name:?} cannot hold '%'")),
        }
        rest = &rest[at + 2..];
    }
    literal.push_str(rest);
    if literal.is_empty()
        || literal.starts_with(['-', '_', '+'])
        || literal
            .chars()
            .any(|c| c.is_uppercase() || "\\/*?\"<>|,# :".contains(c))
    {
        return Some(format!(
            "{name:?} is not a valid Elasticsearch name (lowercase, no spaces or \\/*?\"<>|,#:)"
        ));
    }
    None
}

/// Reads a client certificate chain and its key into the identity the TLS client presents.
pub fn client_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, String> {
    let mut pem = std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    pem.push(b'\n');
    pem.extend(std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?);
    reqwest::Identity::from_pem(&pem).map_err(|e| {
        format!(
            "{} / {}: not a PEM certificate and key: {e}",
            cert.display(),
            key.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, Settings, SinkKind};
    use super::*;

    fn parse(sink: &str) -> Result<Settings, ConfigError> {
        let text =
            format!("data_dir = \"/tmp/d\"\n[[sources]]\ninclude = [\"/l/*.log\"]\n[[sinks]]\nname = \"out\"\n{sink}");
        let env = |name: &str| (name == "TOKEN").then(|| "t0k".to_owned());
        Settings::from_toml(Path::new("/etc/t.toml"), &text, &env)
    }

    fn http(sink: &str) -> HttpSettings {
        match parse(sink).unwrap().sinks.remove(0).kind {
            SinkKind::Http(h) => *h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let h = http("type = \"http\"\nurl = \"http://c:8080/in\"");
        assert_eq!(h.url.as_str(), "http://c:8080/in");
        assert_eq!(h.method, reqwest::Method::POST);
        assert_eq!((h.framing, h.compression), (Framing::Ndjson, Compression::None));
        assert_eq!(h.timeout, DEFAULT_TIMEOUT);
        assert_eq!(h.concurrency, 2);
        assert_eq!(h.retry.max_retries, None);
        assert_eq!(h.dead_letter.dir, PathBuf::from("/tmp/d/dead-letter"));
        assert!(h.auth.is_none() && !h.tls.insecure_skip_verify);
    }

    #[test]
    fn every_key_and_secrets_stay_out_of_debug() {
        let h = http(
            r#"type = "http"
            url = "https://c/in"
            method = "put"
            encoding = "json_array"
            compression = "zstd"
            headers = { "X-Api-Key" = "k3y" }
            auth = { strategy = "bearer", token = "${TOKEN}" }
            tls = { insecure_skip_verify = true }
            timeout = "5s"
            concurrency = 4
            retry = { initial_backoff = "1s", max_backoff = "1m", max_retries = 3 }
            dead_letter = { max_file_bytes = 8192, max_total_bytes = 65536 }"#,
        );
        assert_eq!(h.method, reqwest::Method::PUT);
        assert_eq!((h.framing, h.compression), (Framing::JsonArray, Compression::Zstd));
        assert!(matches!(&h.auth, Some(Auth::Bearer { token }) if token.reveal().unwrap() == "t0k"));
        assert!(h.tls.insecure_skip_verify);
        assert_eq!((h.concurrency, h.retry.max_retries), (4, Some(3)));
        let debug = format!("{h:?}");
        assert!(!debug.contains("t0k") && !debug.contains("k3y"), "{debug}");
    }

    #[test]
    fn problems_name_their_keys() {
        let err = parse(
            r#"type = "http"
            url = "ftp://c/in"
            method = "GET"
            compression = "brotli"
            encoding = "raw"
            auth = { strategy = "bearer", token = "a", token_file = "/nope" }
            tls = { ca_file = "/nope/ca.pem", cert_file = "/nope/c.pem" }
            concurrency = 0"#,
        )
        .unwrap_err()
        .to_string();
        for key in [
            "sinks[0].url",
            "sinks[0].method",
            "sinks[0].compression",
            "sinks[0].encoding",
            "sinks[0].auth.token",
            "sinks[0].tls.ca_file",
            "sinks[0].tls.key_file",
            "sinks[0].concurrency",
        ] {
            assert!(err.contains(key), "{key} missing from {err}");
        }
        let err = parse("type = \"tcp\"\naddress = \"a:1\"\nurl = \"http://x/\"\ncompression = \"gzip\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sinks[0].url") && err.contains("sinks[0].compression"),
            "{err}"
        );
    }

    #[test]
    fn elasticsearch_targets_and_the_bulk_url() {
        let h = http("type = \"elasticsearch\"\nurl = \"http://es:9200/\"");
        assert_eq!(h.api, Api::Elasticsearch(EsTarget::Index(DEFAULT_ES_INDEX.into())));
        assert_eq!(h.url.path(), "/_bulk");
        assert!(h.url.query().unwrap().starts_with("filter_path="));
        let h = http("type = \"elasticsearch\"\nurl = \"https://proxy/es\"\ndata_stream = \"logs-app-default\"");
        assert_eq!(
            h.api,
            Api::Elasticsearch(EsTarget::DataStream("logs-app-default".into()))
        );
        assert_eq!(h.url.path(), "/es/_bulk");
        let err = parse(
            "type = \"elasticsearch\"\nurl = \"http://es:9200\"\nindex = \"Logs-%H\"\ncompression = \"zstd\"\nmethod = \"PUT\"",
        )
        .unwrap_err()
        .to_string();
        for key in ["sinks[0].index", "sinks[0].compression", "sinks[0].method"] {
            assert!(err.contains(key), "{key} missing from {err}");
        }
        let err = parse("type = \"http\"\nurl = \"http://x/\"\nindex = \"a\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sinks[0].index"), "{err}");
        assert!(es_name_problem("logs-%Y.%m.%d", true).is_none());
        assert!(es_name_problem("logs app", false).is_some());
    }

    #[test]
    fn loki_defaults_labels_and_problems() {
        let h = http("type = \"loki\"\nurl = \"http://loki:3100\"");
        assert_eq!(h.url.path(), LOKI_PUSH_PATH);
        let Api::Loki(l) = &h.api else { panic!() };
        let names: Vec<&str> = l.labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["namespace", "pod", "container", "file", "level"]);
        assert_eq!((l.line, l.tenant_id.as_deref()), (LineKind::Message, None));
        let h = http(
            "type = \"loki\"\nurl = \"http://gw/loki/api/v1/push\"\nlabels = { app = \"resource.app\" }\ntenant_id = \"t\"\nline = \"record\"",
        );
        assert_eq!(h.url.path(), LOKI_PUSH_PATH);
        let Api::Loki(l) = &h.api else { panic!() };
        assert_eq!(l.labels, vec![("app".to_owned(), RecordKey::Resource("app".into()))]);
        assert_eq!((l.line, l.tenant_id.as_deref()), (LineKind::Record, Some("t")));
        let err = parse(
            "type = \"loki\"\nurl = \"http://l/\"\nlabels = { \"bad-name\" = \"level\", ok = \"nowhere\" }\nline = \"x\"\nmethod = \"PUT\"",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "sinks[0].labels.bad-name",
            "sinks[0].labels.ok",
            "sinks[0].line",
            "sinks[0].method",
        ] {
            assert!(err.contains(key), "{key} missing from {err}");
        }
    }

    #[test]
    fn otlp_encodings_and_the_logs_path() {
        let h = http("type = \"otlp\"\nurl = \"http://collector:4318\"");
        assert_eq!(
            (h.api.clone(), h.url.path()),
            (Api::Otlp { json: false }, OTLP_LOGS_PATH)
        );
        let h = http("type = \"otlp\"\nurl = \"http://c:4318/v1/logs\"\nencoding = \"json\"\ncompression = \"gzip\"");
        assert_eq!(
            (h.api.clone(), h.url.path()),
            (Api::Otlp { json: true }, OTLP_LOGS_PATH)
        );
        let err = parse("type = \"otlp\"\nurl = \"http://c/\"\nencoding = \"ndjson\"\nlabels = { a = \"level\" }")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sinks[0].encoding") && err.contains("sinks[0].labels"),
            "{err}"
        );
    }

    #[test]
    fn splunk_hec_needs_its_token() {
        let h = http(
            "type = \"splunk_hec\"\nurl = \"https://splunk:8088\"\nauth = { token = \"${TOKEN}\" }\nindex = \"main\"",
        );
        assert_eq!(h.url.path(), SPLUNK_EVENT_PATH);
        assert!(matches!(&h.auth, Some(Auth::Splunk { token }) if token.reveal().unwrap() == "t0k"));
        let Api::SplunkHec(sp) = &h.api else { panic!() };
        assert_eq!((sp.index.as_deref(), sp.event), (Some("main"), LineKind::Record));
        let err = parse("type = \"splunk_hec\"\nurl = \"https://s/\"\nindex = \"_bad\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sinks[0].auth") && err.contains("sinks[0].index"), "{err}");
        let err = parse("type = \"http\"\nurl = \"http://x/\"\nsourcetype = \"a\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sinks[0].sourcetype"), "{err}");
    }

    #[test]
    fn secrets_from_files_are_read_at_each_use() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("token");
        std::fs::write(&f, "one\n").unwrap();
        let h = http(&format!(
            "type = \"http\"\nurl = \"http://c/\"\nauth = {{ strategy = \"basic\", user = \"u\", password_file = {:?} }}",
            f.display().to_string()
        ));
        let Some(Auth::Basic { user, password }) = h.auth else {
            panic!()
        };
        assert_eq!((user.as_str(), password.reveal().unwrap().as_str()), ("u", "one"));
        std::fs::write(&f, "two").unwrap();
        assert_eq!(password.reveal().unwrap(), "two");
    }
}
