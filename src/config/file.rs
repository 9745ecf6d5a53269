//! The config file as the user writes it: serde mirror structs that reject unknown keys.
//! `validate` (in this module's parent and its `source`, `sink`, `http` and `resource`
//! children) turns them into the runtime settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::http::{AuthFileConfig, DeadLetterFileConfig, RetryFileConfig, TlsFileConfig};
use super::kafka::SaslFileConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) max_inflight_bytes: Option<usize>,
    pub(super) shutdown_timeout: Option<DurationValue>,
    pub(super) rescan_interval: Option<DurationValue>,
    pub(super) rotate_wait: Option<DurationValue>,
    pub(super) stall_timeout: Option<DurationValue>,
    pub(super) close_inactive: Option<DurationValue>,
    pub(super) checkpoint_grace: Option<DurationValue>,
    pub(super) max_open_files: Option<usize>,
    pub(super) max_watches: Option<usize>,
    pub(super) read_buffer_bytes: Option<usize>,
    #[serde(default)]
    pub(super) metrics: MetricsFileConfig,
    /// Static resource attributes added to every record (`host.name`, `service.name`, …).
    #[serde(default)]
    pub(super) resource: BTreeMap<String, String>,
    /// Which environment variable fills which resource key, over the Downward API defaults;
    /// an empty variable name turns a default off.
    #[serde(default)]
    pub(super) resource_env: BTreeMap<String, String>,
    /// Static fields added to every record's `fields` (a source's own `fields` win).
    #[serde(default)]
    pub(super) fields: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) sources: Vec<SourceFileConfig>,
    #[serde(default)]
    pub(super) sinks: Vec<SinkFileConfig>,
    /// Transforms applied to the sources their `inputs` name, after each one's own.
    #[serde(default)]
    pub(super) transforms: Vec<super::transform::TransformFileConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsFileConfig {
    pub(super) enabled: Option<bool>,
    pub(super) address: Option<String>,
    pub(super) per_file: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceFileConfig {
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) include: Vec<String>,
    #[serde(default)]
    pub(super) exclude: Option<Vec<String>>,
    pub(super) format: Option<String>,
    pub(super) read_from: Option<String>,
    pub(super) max_line_bytes: Option<usize>,
    pub(super) partial_line_timeout: Option<DurationValue>,
    /// `regex` only: the pattern with named captures, and an optional time layout.
    pub(super) pattern: Option<String>,
    pub(super) timestamp_format: Option<String>,
    pub(super) multiline: Option<MultilineFileConfig>,
    #[serde(default)]
    pub(super) fields: BTreeMap<String, String>,
    /// `"path"`: namespace/pod/container from the kubelet's `/var/log/pods/…` path (the default
    /// in node mode); `"none"` (the default when the agent has a pod identity, a sidecar).
    pub(super) kubernetes_metadata: Option<String>,
    /// Which symbolic links the source follows: `"within_root"` (the default), `"any"`, `"none"`.
    pub(super) follow_symlinks: Option<String>,
    /// Directories a link may also lead into under `"within_root"`.
    #[serde(default)]
    pub(super) symlink_roots: Vec<PathBuf>,
    /// Reject lines that break the format's RFC instead of salvaging them (`STRICT_FORMATS`).
    #[serde(default)]
    pub(super) strict: bool,
    /// What runs on the source's records after they are made, in order.
    #[serde(default)]
    pub(super) transforms: Vec<super::transform::TransformFileConfig>,
    // A network source's keys (`config::input`): files have no `type`.
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) address: Option<String>,
    pub(super) grpc_address: Option<String>,
    pub(super) max_message_bytes: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) read_timeout: Option<DurationValue>,
    pub(super) max_spool_bytes: Option<u64>,
    pub(super) spool_fsync: Option<String>,
    pub(super) spool_fsync_interval: Option<DurationValue>,
    /// `syslog`: `udp`, `tcp` or both (unset).
    pub(super) mode: Option<String>,
    /// `http`: the path records are posted to.
    pub(super) path: Option<String>,
    /// `http`: the body cap (what `max_message_bytes` is for the others).
    pub(super) max_request_bytes: Option<usize>,
    /// `forward`: the shared-key handshake a client must pass first.
    pub(super) shared_key: Option<String>,
    pub(super) shared_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MultilineFileConfig {
    pub(super) start: Option<String>,
    /// Lines matching it continue the event; any other line begins one.
    #[serde(rename = "continue")]
    pub(super) continue_: Option<String>,
    pub(super) preset: Option<String>,
    pub(super) max_lines: Option<usize>,
    pub(super) max_bytes: Option<usize>,
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SinkFileConfig {
    pub(super) name: Option<String>,
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    /// Source names this sink reads; all sources when absent.
    pub(super) inputs: Option<Vec<String>>,
    pub(super) encoding: Option<String>,
    pub(super) address: Option<String>,
    pub(super) path: Option<PathBuf>,
    #[serde(default)]
    pub(super) batch: BatchFileConfig,
    // The http sink's keys, validated by `http::validate_http` (serde's `flatten` would
    // defeat `deny_unknown_fields`, so they are listed here).
    pub(super) url: Option<String>,
    pub(super) method: Option<String>,
    pub(super) headers: Option<BTreeMap<String, String>>,
    pub(super) compression: Option<String>,
    pub(super) auth: Option<AuthFileConfig>,
    pub(super) tls: Option<TlsFileConfig>,
    pub(super) timeout: Option<DurationValue>,
    pub(super) concurrency: Option<usize>,
    pub(super) retry: Option<RetryFileConfig>,
    pub(super) dead_letter: Option<DeadLetterFileConfig>,
    // The elasticsearch sink's own keys.
    pub(super) index: Option<String>,
    pub(super) data_stream: Option<String>,
    // The loki sink's own keys.
    pub(super) labels: Option<BTreeMap<String, String>>,
    pub(super) structured_metadata: Option<BTreeMap<String, String>>,
    pub(super) tenant_id: Option<String>,
    pub(super) line: Option<String>,
    // The splunk_hec sink's own key (it shares `index` and `line`).
    pub(super) sourcetype: Option<String>,
    /// The NDJSON record's key names: a preset, and names over it (record key → name).
    pub(super) shape: Option<String>,
    pub(super) keys: Option<BTreeMap<String, String>>,
    // The kafka sink's own keys (it shares `compression`, `tls` and `dead_letter`).
    pub(super) brokers: Option<Vec<String>>,
    pub(super) topic: Option<String>,
    pub(super) default_topic: Option<String>,
    pub(super) key: Option<String>,
    pub(super) sasl: Option<SaslFileConfig>,
    pub(super) message_max_bytes: Option<usize>,
    // The forward sink's own keys (it shares `address`, `compression`, `tls`, `dead_letter`).
    pub(super) tag: Option<String>,
    pub(super) require_ack_response: Option<bool>,
    pub(super) shared_key: Option<String>,
    pub(super) shared_key_file: Option<PathBuf>,
    pub(super) ack_timeout: Option<DurationValue>,
    pub(super) time_as_integer: Option<bool>,
    // The tcp sink's own keys (it shares `address`, `tls`, `dead_letter`).
    pub(super) settle: Option<DurationValue>,
    pub(super) settle_bytes: Option<usize>,
    pub(super) replay_window_bytes: Option<usize>,
    pub(super) poison_closes: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchFileConfig {
    pub(super) max_events: Option<usize>,
    pub(super) max_bytes: Option<usize>,
    pub(super) linger_ms: Option<u64>,
}

/// A duration written as `"1s"`, `"250ms"`, `"2m"`, or a bare number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum DurationValue {
    Seconds(f64),
    Text(String),
}

/// A duration value that is not one.
#[derive(Debug, thiserror::Error)]
pub(super) enum DurationError {
    #[error("{0} is not a duration")]
    Seconds(f64),
    #[error("{text:?} is not a duration ({source}); write e.g. \"500ms\" or \"5s\"")]
    Text {
        text: String,
        source: humantime::DurationError,
    },
}

impl DurationValue {
    pub(super) fn parse(&self) -> Result<Duration, DurationError> {
        match self {
            DurationValue::Seconds(s) if s.is_finite() && *s >= 0.0 => Ok(Duration::from_secs_f64(*s)),
            DurationValue::Seconds(s) => Err(DurationError::Seconds(*s)),
            DurationValue::Text(t) => humantime::parse_duration(t).map_err(|source| DurationError::Text {
                text: t.clone(),
                source,
            }),
        }
    }
}

/// The duration at `key`, its default when unset; a bad value is a problem (and the default).
pub(super) fn duration(
    key: &str,
    v: &Option<DurationValue>,
    default: Duration,
    problem: &mut dyn FnMut(String, String),
) -> Duration {
    match v {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|e| {
            problem(key.to_owned(), e.to_string());
            default
        }),
    }
}

/// The keys of `keys` that are set: for refusing a type's own keys on a sink or source of
/// another type.
pub(super) fn keys_set<const N: usize>(keys: [(&'static str, bool); N]) -> Vec<&'static str> {
    keys.into_iter().filter_map(|(k, set)| set.then_some(k)).collect()
}
