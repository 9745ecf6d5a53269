//! The HTTP sinks' configuration: their keys as written (`url`, `method`, `headers`,
//! `encoding`, `compression`, `auth`, `tls`, `timeout`, `concurrency`, `retry`, `dead_letter`,
//! and the elasticsearch sink's `index` / `data_stream`) and their validation into
//! `HttpSettings`. Kept apart from `config.rs` because it is a sizeable block of its own; the
//! parent's `validate` calls `validate_http` for `type = "http"` and `"elasticsearch"`.
//!
//! Files named here (CA, client certificate and key, token and password files) are read at
//! validation, so `tailship validate` reports a missing or unparsable one; secrets are kept
//! in `Secret`, whose `Debug` never shows them.

use super::file::keys_set;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod transport;

pub use self::transport::{client_identity, IdentityError};
pub(in crate::config) use self::transport::{dead_letter, tls};
use super::file::{DurationValue, SinkFileConfig};
use crate::ship::{elasticsearch, loki, otlp, splunk};

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
    /// The name the server's certificate must carry (tcp and forward sinks), when it is not
    /// the address's host.
    server_name: Option<String>,
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
    pub fn parse(text: &str) -> Option<RecordKey> {
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
    /// The name checked against the server's certificate (tcp and forward sinks); `None`:
    /// the address's host.
    pub server_name: Option<String>,
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
pub(in crate::config) fn http_keys_set(kind: Option<&str>, s: &SinkFileConfig) -> Vec<&'static str> {
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
    // The kafka sink takes some of the HTTP sinks' keys.
    .filter(|k| kind != Some("kafka") || !super::kafka::SHARED_WITH_HTTP.contains(k))
    .filter(|k| kind != Some("forward") || !super::forward::SHARED_WITH_HTTP.contains(k))
    .filter(|k| kind != Some("tcp") || !super::tcp::SHARED_WITH_HTTP.contains(k))
    .collect()
}

fn http_only_keys(s: &SinkFileConfig) -> Vec<&'static str> {
    keys_set([
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
    ])
}

/// Validates an HTTP sink of type `kind`; `None` when a problem was reported.
pub(in crate::config) fn validate_http(
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
    let url = transport::url(s, &mut bad);
    let method = transport::method(s, &mut bad);
    let headers = transport::headers(s, &mut bad);
    let (framing, otlp_json) = transport::framing(kind, s, &mut bad);
    let compression = transport::compression(kind, s, &mut bad);
    let auth = s.auth.as_ref().and_then(|a| transport::auth(kind, a, &mut bad));
    let tls = transport::tls(s, url.as_ref(), &mut bad);
    let (timeout, retry, concurrency) = transport::timing(s, &mut bad);
    let dead_letter = transport::dead_letter(s, name, data_dir, &mut bad);
    let api = match kind {
        "elasticsearch" => elasticsearch::target(s.index.as_deref(), s.data_stream.as_deref(), &mut bad)
            .map_or(Api::Plain, Api::Elasticsearch),
        "loki" => Api::Loki(loki::settings(
            s.labels.as_ref(),
            s.structured_metadata.as_ref(),
            s.tenant_id.as_deref(),
            s.line.as_deref(),
            &mut bad,
        )),
        "otlp" => Api::Otlp { json: otlp_json },
        "splunk_hec" => {
            if !matches!(auth, Some(Auth::Splunk { .. })) {
                bad(
                    "auth",
                    "missing; a splunk_hec sink needs auth = { token = \"…\" } (or token_file)".into(),
                );
            }
            Api::SplunkHec(splunk::settings(
                s.index.as_deref(),
                s.sourcetype.as_deref(),
                s.line.as_deref(),
                &mut bad,
            ))
        }
        _ => Api::Plain,
    };
    let mut url = url?;
    match &api {
        Api::Plain => {}
        Api::Elasticsearch(_) => elasticsearch::endpoint(&mut url),
        Api::Loki(_) => loki::endpoint(&mut url),
        Api::Otlp { .. } => otlp::endpoint(&mut url),
        Api::SplunkHec(_) => splunk::endpoint(&mut url),
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
        assert!(elasticsearch::name_problem("logs-%Y.%m.%d", true).is_none());
        assert!(elasticsearch::name_problem("logs app", false).is_some());
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
    fn userinfo_is_refused_and_risky_transport_warned_about() {
        let err = parse("type = \"http\"\nurl = \"https://u:pw-9@c/in?k=v\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sinks[0].url") && err.contains("auth"), "{err}");
        assert!(!err.contains("pw-9") && !err.contains("k=v"), "{err}");
        let warnings = |sink: &str| parse(sink).unwrap().warnings();
        let w = warnings(
            "type = \"http\"\nurl = \"http://c/in?key=abc\"\nauth = { strategy = \"bearer\", token = \"${TOKEN}\" }",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("http://c/in?key=***") && !w[0].contains("abc"), "{w:?}");
        let w = warnings("type = \"http\"\nurl = \"http://c/in\"\nheaders = { \"X-Api-Key\" = \"k\" }");
        assert_eq!(w.len(), 1, "an API key header: {w:?}");
        let w = warnings("type = \"http\"\nurl = \"https://c/in\"\ntls = { insecure_skip_verify = true }");
        assert!(w.len() == 1 && w[0].contains("insecure_skip_verify"), "{w:?}");
        assert!(
            warnings("type = \"http\"\nurl = \"https://c/in\"\nauth = { strategy = \"bearer\", token = \"t\" }")
                .is_empty()
        );
        assert!(warnings("type = \"http\"\nurl = \"http://c/in\"").is_empty());
    }

    #[test]
    fn config_messages_never_show_a_variables_value() {
        // t0k is TOKEN's value (3 characters: taken out of the messages about its own key).
        let err = parse("type = \"http\"\nurl = \"http://c/\"\nmethod = \"${TOKEN}\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sinks[0].method") && !err.contains("t0k"), "{err}");
        let err = parse("type = \"http\"\nurl = \"http://c/\"\nconcurrency = \"x${TOKEN}x\"")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("xt0kx"), "a type error quoting the value: {err}");
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
