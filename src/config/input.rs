//! A network source's settings (`[[sources]]` with a `type`): where it listens, its limits,
//! and its spool in `data_dir/spool/<source>/`, whose segments the tailer then reads as the
//! source's files (format `json`).

use super::file::keys_set;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{duration, SourceFileConfig};

/// The `type` values of a network source, for messages.
pub const INPUT_TYPES: &str = "otlp, forward, syslog, http";
/// Bytes of one request body (after decompression) an input accepts; more is answered 413.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Bytes of one syslog message (a datagram, a TCP frame).
pub const DEFAULT_MAX_SYSLOG_MESSAGE_BYTES: usize = 64 << 10;
/// Connections one input serves at once; past that new ones are closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// A client that sends nothing for this long (request head or body) is disconnected.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// What the spool may hold on disk before the input pushes back.
pub const DEFAULT_MAX_SPOOL_BYTES: u64 = 256 << 20;
/// The `interval` fsync policy's period: what a power cut may cost of acknowledged records.
pub const DEFAULT_SPOOL_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
/// A segment is rolled at this size (or a quarter of `max_spool_bytes`, if smaller), so the
/// delivered ones can be deleted while the live one grows.
pub const MAX_SEGMENT_BYTES: u64 = 16 << 20;
/// The spool's segments are named `<sequence>.ndjson`.
pub const SEGMENT_SUFFIX: &str = ".ndjson";

/// What a network source listens for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    /// OTLP logs over HTTP at `address`, and over gRPC at `grpc` when set.
    Otlp { grpc: Option<SocketAddr> },
    /// The Fluent Forward protocol at `address`.
    Forward,
    /// Syslog (RFC 5424, RFC 3164) at `address`, over UDP and/or TCP.
    Syslog { udp: bool, tcp: bool },
    /// NDJSON or a JSON array posted to `path` at `address`.
    Http { path: String },
}

/// When spooled bytes are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before every answer: an acknowledged record survives a power cut.
    Batch,
    /// Every so often: a power cut may lose what was acknowledged since the last one (a
    /// crash of the agent alone loses nothing: the bytes are in the page cache).
    Interval(Duration),
}

/// The spool of one network source.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub fsync: Fsync,
}

/// A network source, checked.
#[derive(Debug, Clone)]
pub struct InputSettings {
    pub kind: InputKind,
    pub address: SocketAddr,
    /// A message's (syslog, forward, gRPC) or a request body's (OTLP/HTTP, http: the
    /// `max_request_bytes` key) cap in bytes.
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub read_timeout: Duration,
    pub spool: SpoolSettings,
    /// `forward`: the key of the shared-key handshake every connection must pass first.
    pub shared_key: Option<super::Secret>,
}

/// The keys only a network source takes, to reject them on a file source.
pub(super) fn network_keys(s: &SourceFileConfig) -> Vec<&'static str> {
    keys_set([
        ("address", s.address.is_some()),
        ("grpc_address", s.grpc_address.is_some()),
        ("max_message_bytes", s.max_message_bytes.is_some()),
        ("max_connections", s.max_connections.is_some()),
        ("shared_key", s.shared_key.is_some()),
        ("shared_key_file", s.shared_key_file.is_some()),
        ("read_timeout", s.read_timeout.is_some()),
        ("max_spool_bytes", s.max_spool_bytes.is_some()),
        ("spool_fsync", s.spool_fsync.is_some()),
        ("spool_fsync_interval", s.spool_fsync_interval.is_some()),
        ("mode", s.mode.is_some()),
        ("path", s.path.is_some()),
        ("max_request_bytes", s.max_request_bytes.is_some()),
    ])
}

/// The file-source keys a network source must not have (its files are its spool).
pub(super) fn file_keys(s: &SourceFileConfig) -> Vec<&'static str> {
    keys_set([
        ("include", !s.include.is_empty()),
        ("exclude", s.exclude.is_some()),
        ("format", s.format.is_some()),
        ("read_from", s.read_from.is_some()),
        ("pattern", s.pattern.is_some()),
        ("timestamp_format", s.timestamp_format.is_some()),
        ("multiline", s.multiline.is_some()),
        ("kubernetes_metadata", s.kubernetes_metadata.is_some()),
        ("strict", s.strict),
    ])
}

/// Validates the network keys of source `name` of type `kind`.
pub(super) fn validate(
    kind: &str,
    name: &str,
    s: &SourceFileConfig,
    data_dir: &Path,
    at: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> Option<InputSettings> {
    let (default_address, kind) = match kind {
        "otlp" => (
            "127.0.0.1:4318",
            InputKind::Otlp {
                grpc: s
                    .grpc_address
                    .as_deref()
                    .and_then(|a| address(a, &at("grpc_address"), problem)),
            },
        ),
        "forward" => ("127.0.0.1:24224", InputKind::Forward),
        "syslog" => {
            let (udp, tcp) = match s.mode.as_deref() {
                None => (true, true),
                Some("udp") => (true, false),
                Some("tcp") => (false, true),
                Some(other) => {
                    problem(
                        at("mode"),
                        format!("{other:?} must be \"udp\" or \"tcp\" (unset: both)"),
                    );
                    (true, true)
                }
            };
            ("127.0.0.1:5140", InputKind::Syslog { udp, tcp })
        }
        "http" => {
            let path = s.path.clone().unwrap_or_else(|| "/".to_owned());
            if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
                problem(
                    at("path"),
                    format!("{path:?} must be a path starting with / (no query)"),
                );
            }
            ("127.0.0.1:8080", InputKind::Http { path })
        }
        other => {
            problem(
                at("type"),
                format!("{other:?} is not a known input; one of: {INPUT_TYPES} (files: no type)"),
            );
            return None;
        }
    };
    // Each key belongs to one type (or a few): elsewhere it would be silently ignored.
    let type_name = kind_name(&kind);
    let only = |key: &str, set: bool, types: &[&str], problem: &mut dyn FnMut(String, String)| {
        if set && !types.contains(&type_name) {
            problem(
                at(key),
                format!("only a source of type {} takes it", types.join(" or ")),
            );
        }
    };
    only("grpc_address", s.grpc_address.is_some(), &["otlp"], problem);
    only("mode", s.mode.is_some(), &["syslog"], problem);
    only("path", s.path.is_some(), &["http"], problem);
    only("max_request_bytes", s.max_request_bytes.is_some(), &["http"], problem);
    only("shared_key", s.shared_key.is_some(), &["forward"], problem);
    only("shared_key_file", s.shared_key_file.is_some(), &["forward"], problem);
    let shared_key = super::forward::shared_key(&s.shared_key, &s.shared_key_file, &mut |k, m| problem(at(k), m));
    only(
        "max_message_bytes",
        s.max_message_bytes.is_some(),
        &["otlp", "forward", "syslog"],
        problem,
    );
    let address = address(s.address.as_deref().unwrap_or(default_address), &at("address"), problem);
    let (cap_key, cap, default_cap) = match kind {
        InputKind::Http { .. } => ("max_request_bytes", s.max_request_bytes, DEFAULT_MAX_MESSAGE_BYTES),
        InputKind::Syslog { .. } => (
            "max_message_bytes",
            s.max_message_bytes,
            DEFAULT_MAX_SYSLOG_MESSAGE_BYTES,
        ),
        _ => ("max_message_bytes", s.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES),
    };
    let max_message_bytes = cap.unwrap_or(default_cap);
    if !(1024..=256 << 20).contains(&max_message_bytes) {
        problem(
            at(cap_key),
            format!("{max_message_bytes} is out of range 1024..=268435456"),
        );
    }
    let max_connections = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if !(1..=100_000).contains(&max_connections) {
        problem(
            at("max_connections"),
            format!("{max_connections} is out of range 1..=100000"),
        );
    }
    let read_timeout = duration(&at("read_timeout"), &s.read_timeout, DEFAULT_READ_TIMEOUT, problem);
    if read_timeout < Duration::from_millis(100) {
        problem(at("read_timeout"), "must be at least 100ms".into());
    }
    let max_bytes = s.max_spool_bytes.unwrap_or(DEFAULT_MAX_SPOOL_BYTES);
    if max_bytes < 1 << 20 {
        problem(
            at("max_spool_bytes"),
            format!("{max_bytes} is too small; at least 1048576"),
        );
    }
    let interval = duration(
        &at("spool_fsync_interval"),
        &s.spool_fsync_interval,
        DEFAULT_SPOOL_FSYNC_INTERVAL,
        problem,
    );
    let fsync = match s.spool_fsync.as_deref().unwrap_or("batch") {
        "batch" => Fsync::Batch,
        "interval" => Fsync::Interval(interval.max(Duration::from_millis(10))),
        other => {
            problem(
                at("spool_fsync"),
                format!("{other:?} must be \"batch\" or \"interval\""),
            );
            Fsync::Batch
        }
    };
    Some(InputSettings {
        kind,
        address: address?,
        max_message_bytes,
        max_connections,
        read_timeout,
        spool: SpoolSettings {
            dir: spool_dir(data_dir, name),
            max_bytes,
            segment_bytes: MAX_SEGMENT_BYTES.min(max_bytes / 4),
            fsync,
        },
        shared_key,
    })
}

/// The `type` value of `kind`.
fn kind_name(kind: &InputKind) -> &'static str {
    match kind {
        InputKind::Otlp { .. } => "otlp",
        InputKind::Forward => "forward",
        InputKind::Syslog { .. } => "syslog",
        InputKind::Http { .. } => "http",
    }
}

/// `data_dir/spool/<name>`, with the name's path separators and dots made harmless.
pub fn spool_dir(data_dir: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    data_dir.join("spool").join(safe)
}

fn address(text: &str, key: &str, problem: &mut dyn FnMut(String, String)) -> Option<SocketAddr> {
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problem(key.to_owned(), format!("{text:?} is not an IP:port address"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{ConfigError, Format, Settings};

    fn parse(source: &str) -> Result<Settings, ConfigError> {
        let text =
            format!("data_dir = \"/data\"\n[[sources]]\nname = \"app.otlp\"\n{source}\n[[sinks]]\ntype = \"stdout\"\n");
        Settings::from_toml(Path::new("/etc/t.toml"), &text, &|_| None)
    }

    fn problems(source: &str) -> String {
        match parse(source) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{source:?} should be refused"),
        }
    }

    #[test]
    fn a_network_source_reads_its_spool_as_json_files() {
        let s = parse("type = \"otlp\"\ngrpc_address = \"127.0.0.1:4317\"\nspool_fsync = \"interval\"").unwrap();
        let src = &s.sources[0];
        let input = src.input.as_ref().unwrap();
        assert_eq!(
            input.kind,
            InputKind::Otlp {
                grpc: Some("127.0.0.1:4317".parse().unwrap())
            }
        );
        assert_eq!(input.address, "127.0.0.1:4318".parse().unwrap());
        assert_eq!(input.spool.dir, Path::new("/data/spool/app_otlp"));
        assert_eq!(input.spool.fsync, Fsync::Interval(DEFAULT_SPOOL_FSYNC_INTERVAL));
        assert_eq!(input.spool.segment_bytes, MAX_SEGMENT_BYTES);
        assert_eq!(src.include, vec!["/data/spool/app_otlp/*.ndjson".to_owned()]);
        assert!(src
            .include_set
            .is_match("/data/spool/app_otlp/00000000000000000001.ndjson"));
        assert!(matches!(src.format, Format::Json));
    }

    /// Whether one of the problems is about `key` and says `message` (a problem reads
    /// `key (line L, column C): message`).
    fn said(problems: &str, key: &str, message: &str) -> bool {
        problems
            .lines()
            .any(|l| l.contains(&format!("{key} (")) && l.contains(&format!("): {message}")))
    }

    #[test]
    fn file_keys_on_a_network_source_and_network_keys_on_a_file_source_are_refused() {
        let e = problems("type = \"otlp\"\ninclude = [\"/x/*.log\"]\nformat = \"raw\"");
        assert!(
            said(&e, "sources[0].include", "a source of type \"otlp\" takes no include"),
            "{e}"
        );
        assert!(e.contains("sources[0].format"), "{e}");
        let e = problems("include = [\"/x/*.log\"]\naddress = \"127.0.0.1:1\"");
        assert!(said(&e, "sources[0].address", "only a network source"), "{e}");
    }

    #[test]
    fn syslog_and_http_sources_take_their_own_keys() {
        let s = parse("type = \"syslog\"\nmode = \"udp\"").unwrap();
        let input = s.sources[0].input.as_ref().unwrap();
        assert_eq!(input.kind, InputKind::Syslog { udp: true, tcp: false });
        assert_eq!(input.address, "127.0.0.1:5140".parse().unwrap());
        assert_eq!(input.max_message_bytes, DEFAULT_MAX_SYSLOG_MESSAGE_BYTES);
        let s = parse("type = \"http\"\npath = \"/ingest\"\nmax_request_bytes = 2048").unwrap();
        let input = s.sources[0].input.as_ref().unwrap();
        assert_eq!(input.kind, InputKind::Http { path: "/ingest".into() });
        assert_eq!(input.max_message_bytes, 2048);
        let e = problems("type = \"syslog\"\nmode = \"sctp\"\npath = \"/x\"\nmax_request_bytes = 4096");
        assert!(said(&e, "sources[0].mode", "\"sctp\" must be"), "{e}");
        assert!(said(&e, "sources[0].path", "only a source of type http"), "{e}");
        assert!(
            said(&e, "sources[0].max_request_bytes", "only a source of type http"),
            "{e}"
        );
        let e = problems(
            "type = \"http\"\npath = \"ingest?x=1\"\nmax_message_bytes = 4096\ngrpc_address = \"127.0.0.1:1\"",
        );
        assert!(said(&e, "sources[0].path", "\"ingest?x=1\" must be a path"), "{e}");
        assert!(
            said(
                &e,
                "sources[0].max_message_bytes",
                "only a source of type otlp or forward or syslog"
            ),
            "{e}"
        );
        assert!(said(&e, "sources[0].grpc_address", "only a source of type otlp"), "{e}");
        let e = problems("mode = \"udp\"\ninclude = [\"/x\"]");
        assert!(said(&e, "sources[0].mode", "only a network source"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = problems("type = \"carrier-pigeon\"");
        assert!(
            said(&e, "sources[0].type", "\"carrier-pigeon\" is not a known input"),
            "{e}"
        );
        let e = problems(
            "type = \"otlp\"\naddress = \"localhost\"\nmax_spool_bytes = 10\nspool_fsync = \"never\"\nmax_connections = 0",
        );
        for key in ["address", "max_spool_bytes", "spool_fsync", "max_connections"] {
            assert!(e.contains(&format!("sources[0].{key}")), "{key}: {e}");
        }
    }
}
