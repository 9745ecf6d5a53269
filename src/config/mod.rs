//! Configuration: the file as the user writes it, TOML or YAML, read into one tree that keeps
//! every value's line and column (`syntax`) and into the serde structs of `file` (by `de`,
//! which lists every unknown key at once), `${VAR}` expansion (`expand`),
//! and `validate()`, which turns it into the runtime `Settings` the pipeline uses — plain
//! structs built once at start — reporting every problem at once with the key it is about.
//! By concern: `source` (files, formats, joining), `sink` (outputs, batching), `http` (the
//! HTTP sinks' keys), `resource` (who produced the records).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod de;
mod expand;
mod file;
mod forward;
mod http;
mod input;
mod kafka;
mod own;
mod print;
mod resource;
mod sink;
mod source;
mod syntax;
#[cfg(test)]
mod syntax_tests;
mod tcp;
mod transform;

use self::file::{duration, FileConfig};
pub use self::forward::ForwardSettings;
pub use self::http::{
    client_identity, Api, Auth, Compression, DeadLetterSettings, EsTarget, Framing, HttpSettings, IdentityError,
    LineKind, LokiSettings, RecordKey, RetrySettings, Secret, SplunkSettings, TlsSettings, DEFAULT_ES_INDEX,
    DEFAULT_LOKI_LABELS, LOKI_PUSH_PATH, OTLP_LOGS_PATH, SPLUNK_EVENT_PATH,
};
pub use self::input::{
    spool_dir, Fsync, InputKind, InputSettings, SpoolSettings, DEFAULT_MAX_SPOOL_BYTES, SEGMENT_SUFFIX,
};
use self::kafka::kafka_warnings;
pub use self::kafka::{
    topic_name_problem, KafkaCompression, KafkaSettings, Sasl, Topic, TopicPart, DEFAULT_MESSAGE_MAX_BYTES,
};
pub use self::own::AgentFiles;
pub use self::resource::{system_hostname, DOWNWARD_API_ENV};
pub use self::sink::{BatchSettings, Encoding, SinkKind, SinkSettings};
pub use self::source::{
    FollowSymlinks, Format, MultilineSettings, ReadFrom, SourceSettings, DEFAULT_MULTILINE_MAX_BYTES,
    DEFAULT_MULTILINE_MAX_LINES, DEFAULT_MULTILINE_TIMEOUT_MS, FORMAT_NAMES, STRICT_FORMATS,
};
pub use self::syntax::Syntax;
pub use self::tcp::TcpSettings;
pub use self::transform::SharedTransform;

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
/// A file that has not grown for this long has its descriptor closed until it changes.
pub const DEFAULT_CLOSE_INACTIVE: Duration = Duration::from_secs(300);
/// `/healthz` fails when the tailer or a sink is busy this long without progress.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the checkpoint of a file that disappeared is kept before it is forgotten.
pub const DEFAULT_CHECKPOINT_GRACE: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_OPEN_FILES: usize = 4096;
/// inotify watches the tailer takes at most (one per directory); past it directories are
/// polled. Well below the kernel's usual `fs.inotify.max_user_watches` (8,192 on older
/// kernels, often 65,536 or more now), which every process of the user on the node shares.
pub const DEFAULT_MAX_WATCHES: usize = 8192;
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

// === the runtime settings ===

/// The validated configuration the pipeline runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub max_inflight_bytes: usize,
    pub shutdown_timeout: Duration,
    pub rescan_interval: Duration,
    pub rotate_wait: Duration,
    /// `/healthz` fails when the tailer or a sink thread is busy this long without progress.
    pub stall_timeout: Duration,
    /// A file read to its end that has not grown for this long is closed, and reopened
    /// where it stopped when it changes.
    pub close_inactive: Duration,
    pub checkpoint_grace: Duration,
    pub max_open_files: usize,
    /// inotify watches at most, one per directory; directories past it are polled.
    pub max_watches: usize,
    pub read_buffer_bytes: usize,
    /// `None` when the metrics endpoint is disabled.
    pub metrics_address: Option<SocketAddr>,
    /// `metrics.per_file`: export `tailship_file_lag_bytes{file}`, one series per tailed file
    /// (off by default: in node mode that lists every pod's log to whoever scrapes).
    pub metrics_per_file: bool,
    /// Resource attributes for every record: config `[resource]` over Downward API env vars.
    pub resource: BTreeMap<String, String>,
    pub sources: Vec<SourceSettings>,
    /// The top-level `[[transforms]]`, for `validate --print`: each runs as part of the
    /// `transforms` of the sources it names.
    pub transforms: Vec<SharedTransform>,
    pub sinks: Vec<SinkSettings>,
    /// What the tailer never ships: the config file, secret and key files, `data_dir`.
    pub agent_files: AgentFiles,
}

impl Settings {
    /// Reads, expands and validates the config at `path`: YAML if it ends in `.yaml` or
    /// `.yml`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Settings::parse(path, Syntax::of(path), &text, &|name| std::env::var(name).ok())
    }

    /// Parses TOML `text` (the contents of `path`), expanding `${VAR}` in string values with `env`.
    pub fn from_toml(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        Settings::parse(path, Syntax::Toml, text, env)
    }

    /// Parses `text` (the contents of `path`) in `syntax`, expanding `${VAR}` in string values
    /// with `env`. Every problem names its key, line and column; all of them are reported.
    pub fn parse(
        path: &Path,
        syntax: Syntax,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        };
        let mut tree = syntax::parse(syntax, text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        let mut redactions = expand::Redactions::default();
        expand::expand_value(&mut tree, String::new(), env, &mut problems, &mut redactions);
        if !problems.is_empty() {
            return Err(invalid(located(&tree, problems)));
        }
        redactions.add_secrets(&tree, "");
        // From here on a message may quote a value: never one from a variable or a secret key.
        let (file, mut unknown) = de::read::<FileConfig>(&tree);
        // In the file's order (TOML's parser keeps array tables apart from the other keys).
        unknown.sort_by_key(|u| (u.at.line, u.at.column));
        let mut problems: Vec<Problem> = unknown
            .iter()
            .map(|u| Problem {
                key: format!("{} ({})", u.path, u.at),
                message: u.message(),
            })
            .collect();
        let file = match file {
            Ok(file) => file,
            Err(e) => {
                let key = if e.path.is_empty() { "(top level)" } else { &e.path };
                let at = e.at.unwrap_or(tree.at);
                problems.push(Problem {
                    key: format!("{key} ({at})"),
                    message: redactions.scrub(&e.message, Some(&e.path)).into_owned(),
                });
                return Err(invalid(problems));
            }
        };
        // Relative paths in the file are relative to the file, not to wherever the agent
        // happens to be started from.
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("/"));
        match validate(file, path, &base, env) {
            Ok(settings) if problems.is_empty() => Ok(settings),
            Ok(_) => Err(invalid(problems)),
            Err(mut more) => {
                redactions.scrub_problems(&mut more);
                problems.extend(located(&tree, more));
                Err(invalid(problems))
            }
        }
    }
}

/// `problems` with the line and column of their key added to it.
fn located(tree: &syntax::Node, problems: Vec<Problem>) -> Vec<Problem> {
    problems
        .into_iter()
        .map(|p| Problem {
            key: format!("{} ({})", p.key, tree.locate(&p.key)),
            message: p.message,
        })
        .collect()
}

impl Settings {
    /// Settings that work but expose what they protect, for a warning at every start:
    /// credentials sent over plain `http://`, a collector certificate that is not checked.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sink in &self.sinks {
            if let SinkKind::Kafka(k) = &sink.kind {
                out.extend(kafka_warnings(&sink.name, k));
                continue;
            }
            if let SinkKind::Tcp(t) = &sink.kind {
                if t.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
                    out.push(format!(
                        "sink {:?}: tls.insecure_skip_verify = true: the receiver's certificate is not checked, so anyone on the way can read and change what is sent",
                        sink.name
                    ));
                }
                continue;
            }
            let SinkKind::Http(h) = &sink.kind else { continue };
            let credential_header = h.headers.iter().any(|(name, _)| {
                let n = name.as_str();
                n == "authorization" || n.contains("key") || n.contains("token") || n.contains("secret")
            });
            if h.url.scheme() == "http" && (h.auth.is_some() || credential_header) {
                out.push(format!(
                    "sink {:?}: credentials go in plain text over http:// to {}; anyone on the way can read them: use https://",
                    sink.name,
                    crate::logsafe::url(&h.url)
                ));
            }
            if h.tls.insecure_skip_verify {
                out.push(format!(
                    "sink {:?}: tls.insecure_skip_verify = true: the collector's certificate is not checked, so anyone on the way can read and change what is sent (and the credentials)",
                    sink.name
                ));
            }
        }
        out
    }
}

/// The top-level keys that are not a source, a sink or the resource.
struct Limits {
    shutdown_timeout: Duration,
    rescan_interval: Duration,
    rotate_wait: Duration,
    stall_timeout: Duration,
    close_inactive: Duration,
    checkpoint_grace: Duration,
    max_inflight_bytes: usize,
    max_open_files: usize,
    max_watches: usize,
    read_buffer_bytes: usize,
    metrics_address: Option<SocketAddr>,
}

fn validate(
    mut file: FileConfig,
    config: &Path,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, Vec<Problem>> {
    for source in &mut file.sources {
        for pattern in &mut source.include {
            if !pattern.starts_with('/') {
                *pattern = format!("{}/{}", base.display(), pattern.trim_start_matches("./"));
            }
        }
    }
    let mut problems = Vec::new();
    let mut problem = |key: String, message: String| problems.push(Problem { key, message });
    let limits = limits(&file, &mut problem);
    let resource = resource::resolve(&file.resource_env, &file.resource, env);
    let data_dir = base.join(file.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)));
    // A sidecar knows its own pod (the Downward API): then file paths, which its app can
    // forge, are not believed by default.
    let own_pod = env("POD_NAMESPACE").is_some_and(|v| !v.is_empty())
        || resource.contains_key("k8s.namespace.name")
        || resource.contains_key("k8s.pod.name");
    let mut sources = source::validate_all(
        std::mem::take(&mut file.sources),
        &file.fields,
        !own_pod,
        &data_dir,
        &mut problem,
    );
    let mut names: Vec<String> = sources
        .iter()
        .flat_map(|s| s.transforms.names().map(str::to_owned))
        .collect();
    let transforms = transform::validate_shared(
        std::mem::take(&mut file.transforms),
        &mut sources,
        &mut names,
        &mut problem,
    );
    let sinks = sink::validate_all(std::mem::take(&mut file.sinks), &sources, &data_dir, &mut problem);
    for (i, s) in sources.iter().enumerate() {
        if !sinks.is_empty() && !sinks.iter().any(|k| k.inputs.contains(&i)) {
            problem(format!("sources[{i}]"), format!("no sink reads source {:?}", s.name));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Settings {
        agent_files: own::agent_files(config, &data_dir, &sinks),
        data_dir,
        max_inflight_bytes: limits.max_inflight_bytes,
        shutdown_timeout: limits.shutdown_timeout,
        rescan_interval: limits.rescan_interval,
        rotate_wait: limits.rotate_wait,
        stall_timeout: limits.stall_timeout,
        close_inactive: limits.close_inactive,
        checkpoint_grace: limits.checkpoint_grace,
        max_open_files: limits.max_open_files,
        max_watches: limits.max_watches,
        read_buffer_bytes: limits.read_buffer_bytes,
        metrics_address: limits.metrics_address,
        metrics_per_file: file.metrics.per_file.unwrap_or(false),
        resource,
        sources,
        transforms,
        sinks,
    })
}

fn limits(file: &FileConfig, problem: &mut dyn FnMut(String, String)) -> Limits {
    let shutdown_timeout = duration(
        "shutdown_timeout",
        &file.shutdown_timeout,
        DEFAULT_SHUTDOWN_TIMEOUT,
        problem,
    );
    let rescan_interval = duration(
        "rescan_interval",
        &file.rescan_interval,
        DEFAULT_RESCAN_INTERVAL,
        problem,
    );
    let rotate_wait = duration("rotate_wait", &file.rotate_wait, DEFAULT_ROTATE_WAIT, problem);
    let stall_timeout = duration("stall_timeout", &file.stall_timeout, DEFAULT_STALL_TIMEOUT, problem);
    if stall_timeout < Duration::from_secs(1) {
        problem("stall_timeout".into(), "must be at least 1s".into());
    }
    let close_inactive = duration("close_inactive", &file.close_inactive, DEFAULT_CLOSE_INACTIVE, problem);
    let checkpoint_grace = duration(
        "checkpoint_grace",
        &file.checkpoint_grace,
        DEFAULT_CHECKPOINT_GRACE,
        problem,
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
    // 0 is allowed: every directory polled (a file system whose inotify says nothing).
    let max_watches = file.max_watches.unwrap_or(DEFAULT_MAX_WATCHES);
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
    Limits {
        shutdown_timeout,
        rescan_interval,
        rotate_wait,
        stall_timeout,
        close_inactive,
        checkpoint_grace,
        max_inflight_bytes,
        max_open_files,
        max_watches,
        read_buffer_bytes,
        metrics_address,
    }
}

#[cfg(test)]
mod tests {
    use super::expand::expand_str;
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
    fn a_syntax_error_names_the_place_not_the_line() {
        let text = format!("{MINIMAL}\n[[sinks]]\ntype = \"http\"\nauth = {{ token = \"s3cret-tok }}\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("line 12, column 31"), "{err}");
        assert!(!err.contains("s3cret-tok"), "{err}");
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
        assert!(!src.strict, "lenient unless asked");
        for name in STRICT_FORMATS {
            let s = parse(&with_source(&format!("format = \"{name}\"\nstrict = true"))).unwrap();
            assert!(s.sources[0].strict, "{name}");
        }
        for name in FORMAT_NAMES.split(", ").filter(|n| *n != "regex") {
            let s = parse(&with_source(&format!("format = \"{name}\""))).unwrap();
            assert_eq!(s.sources[0].format.name(), name);
            assert!(
                !s.sources[0].kubernetes_path_metadata,
                "POD_NAME is set: a sidecar believes no path"
            );
        }
    }

    #[test]
    fn path_metadata_defaults_on_only_without_a_pod_identity() {
        let text = MINIMAL.replace("${LOG_DIR}", "/var/log/pods");
        let load = |vars: &[(&str, &str)], extra: &str| {
            let env = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
            let text = text.replace("include = [", &format!("{extra}\ninclude = ["));
            Settings::from_toml(Path::new("t.toml"), &text, &env).unwrap().sources[0].kubernetes_path_metadata
        };
        let node = [("KUBERNETES_SERVICE_HOST", "10.0.0.1"), ("NODE_NAME", "n1")];
        assert!(load(&node, ""), "node mode: the kubelet's paths are believed");
        assert!(load(&[], ""), "a host");
        let sidecar = [("KUBERNETES_SERVICE_HOST", "10.0.0.1"), ("POD_NAMESPACE", "team-a")];
        assert!(!load(&sidecar, ""), "a sidecar");
        assert!(!load(&[("POD_NAMESPACE", "team-a")], ""));
        assert!(load(&sidecar, "kubernetes_metadata = \"path\""), "asked for");
        assert!(!load(&node, "kubernetes_metadata = \"none\""));
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
            ("multiline = { continue = \"[\" }", "sources[0].multiline.continue"),
            (
                "multiline = { start = \"^x\", continue = \"^ \" }",
                "sources[0].multiline",
            ),
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

    #[test]
    fn downward_api_variables_are_read_only_in_kubernetes() {
        let text = MINIMAL.replace("${LOG_DIR}", "/l");
        let load = |vars: &[(&str, &str)]| {
            let env = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
            Settings::from_toml(Path::new("t.toml"), &text, &env).unwrap().resource
        };
        let host = [("NODE_NAME", "n1"), ("CONTAINER_NAME", "c1")];
        let on_host = load(&host);
        assert_eq!(
            on_host.get("k8s.node.name"),
            None,
            "a host's NODE_NAME is not a node: {on_host:?}"
        );
        assert_eq!(on_host.get("k8s.container.name"), None, "{on_host:?}");
        let k8s = [("KUBERNETES_SERVICE_HOST", "10.0.0.1"), ("NODE_NAME", "n1")];
        assert_eq!(load(&k8s).get("k8s.node.name").map(String::as_str), Some("n1"));
        let pod = [("POD_NAME", "web-1"), ("NODE_NAME", "n1")];
        assert_eq!(load(&pod).get("k8s.node.name").map(String::as_str), Some("n1"));

        // Variables the config names are read on a host too.
        let text = format!("{text}\n[resource_env]\n\"k8s.node.name\" = \"NODE_NAME\"\n");
        let env = |name: &str| (name == "NODE_NAME").then(|| "n1".to_owned());
        let s = Settings::from_toml(Path::new("t.toml"), &text, &env).unwrap();
        assert_eq!(s.resource.get("k8s.node.name").map(String::as_str), Some("n1"));
    }

    #[test]
    fn host_name_comes_from_hostname_or_the_kernel() {
        let text = MINIMAL.replace("${LOG_DIR}", "/l");
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(system_hostname().as_deref(), Some(kernel.trim()));
        let s = Settings::from_toml(Path::new("t.toml"), &text, &|_| None).unwrap();
        assert_eq!(s.resource.get("host.name").map(String::as_str), Some(kernel.trim()));
        let env = |name: &str| (name == "HOSTNAME").then(|| "from-env".to_owned());
        let s = Settings::from_toml(Path::new("t.toml"), &text, &env).unwrap();
        assert_eq!(s.resource.get("host.name").map(String::as_str), Some("from-env"));
        let text = format!("{text}\n[resource]\n\"host.name\" = \"from-config\"\n");
        let s = Settings::from_toml(Path::new("t.toml"), &text, &|_| None).unwrap();
        assert_eq!(s.resource.get("host.name").map(String::as_str), Some("from-config"));
    }
}
