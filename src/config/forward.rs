//! The forward sink's keys (`type = "forward"`): the aggregator's `address`, the `tag`,
//! `require_ack_response`, `compression`, `shared_key` / `shared_key_file`, `tls`,
//! `ack_timeout`, `time_as_integer`, and the dead-letter file (shared with the HTTP sinks).
//! The shared key file is read at validation, so `tailship validate` reports a missing one;
//! the key itself is kept in `Secret` and never printed.

use super::file::keys_set;
use std::path::Path;
use std::time::Duration;

use super::file::{self, SinkFileConfig};
use super::http::{dead_letter, tls, DeadLetterSettings, Secret, TlsSettings};
use crate::forward::encode::TimeFormat;

/// How long a sent chunk may wait for its ack before the connection is dropped and the
/// unacknowledged chunks are sent again (Fluentd's `ack_response_timeout` is 190 s; a
/// sidecar's aggregator is near, so a minute is already generous).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_TAG: &str = "tailship";

/// A forward sink, checked.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// host:port of the Fluentd / Fluent Bit `in_forward`.
    pub address: String,
    pub tag: String,
    /// Ask for an ack per chunk, and count a batch delivered only when it comes.
    pub require_ack: bool,
    pub gzip: bool,
    pub shared_key: Option<Secret>,
    /// The name sent in the handshake's PING.
    pub hostname: String,
    /// `Some`: connect with TLS.
    pub tls: Option<TlsSettings>,
    pub ack_timeout: Duration,
    pub time_format: TimeFormat,
    pub dead_letter: DeadLetterSettings,
}

/// The forward sink's own keys, set on a sink of another type (to reject them).
pub(super) fn forward_keys_set(kind: Option<&str>, s: &SinkFileConfig) -> Vec<&'static str> {
    if kind == Some("forward") {
        return Vec::new();
    }
    keys_set([
        ("tag", s.tag.is_some()),
        ("require_ack_response", s.require_ack_response.is_some()),
        ("shared_key", s.shared_key.is_some()),
        ("shared_key_file", s.shared_key_file.is_some()),
        ("ack_timeout", s.ack_timeout.is_some()),
        ("time_as_integer", s.time_as_integer.is_some()),
    ])
}

/// The HTTP sinks' keys a forward sink takes too.
pub(super) const SHARED_WITH_HTTP: [&str; 3] = ["compression", "tls", "dead_letter"];

/// The shared key of a forward sink or input, from `shared_key` or `shared_key_file` (read now
/// to check it, and again at each handshake, so a rotated key file is picked up).
pub(super) fn shared_key(
    key: &Option<String>,
    file: &Option<std::path::PathBuf>,
    bad: &mut dyn FnMut(&str, String),
) -> Option<Secret> {
    match (key, file) {
        (Some(k), None) if !k.is_empty() => Some(Secret::Value(k.clone())),
        (Some(_), None) => {
            bad("shared_key", "must not be empty".into());
            None
        }
        (None, Some(f)) => match Secret::File(f.clone()).reveal() {
            Ok(k) if !k.is_empty() => Some(Secret::File(f.clone())),
            Ok(_) => {
                bad("shared_key_file", format!("{} is empty", f.display()));
                None
            }
            Err(e) => {
                bad("shared_key_file", format!("cannot read {}: {e}", f.display()));
                None
            }
        },
        (Some(_), Some(_)) => {
            bad("shared_key", "set shared_key or shared_key_file, not both".into());
            None
        }
        (None, None) => None,
    }
}

/// Validates a forward sink; `None` when a problem was reported.
pub(super) fn validate_forward(
    s: &SinkFileConfig,
    name: &str,
    data_dir: &Path,
    at: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> Option<ForwardSettings> {
    let mut ok = true;
    let mut bad = |key: &str, message: String| {
        ok = false;
        problem(at(key), message);
    };
    let address = s.address.clone().unwrap_or_default();
    if address.is_empty() {
        bad(
            "address",
            "missing; a forward sink needs host:port (24224 is in_forward's port)".into(),
        );
    } else if !address
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    {
        bad("address", format!("{address:?} is not host:port"));
    }
    let tag = s.tag.clone().unwrap_or_else(|| DEFAULT_TAG.into());
    if tag.is_empty() {
        bad("tag", "must not be empty".into());
    }
    let gzip = match s.compression.as_deref().unwrap_or("none") {
        "none" => false,
        "gzip" => true,
        other => {
            bad("compression", format!("{other:?} must be \"gzip\" or \"none\""));
            false
        }
    };
    let shared_key = shared_key(&s.shared_key, &s.shared_key_file, &mut bad);
    let tls = s.tls.as_ref().map(|_| tls(s, None, &mut |k, m| bad(k, m)));
    if tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
        bad(
            "tls.insecure_skip_verify",
            "a forward sink always verifies the server; trust its CA with tls.ca_file".into(),
        );
    }
    let ack_timeout = file::duration("ack_timeout", &s.ack_timeout, DEFAULT_ACK_TIMEOUT, &mut |k, m| {
        bad(&k, m)
    });
    if ack_timeout < Duration::from_millis(100) {
        bad("ack_timeout", "must be at least 100ms".into());
    }
    let time_format = if s.time_as_integer.unwrap_or(false) {
        TimeFormat::Seconds
    } else {
        TimeFormat::EventTime
    };
    let dead_letter = dead_letter(s, name, data_dir, &mut |k, m| bad(k, m));
    let hostname = super::resource::system_hostname().unwrap_or_else(|| "tailship".into());
    ok.then_some(ForwardSettings {
        address,
        tag,
        require_ack: s.require_ack_response.unwrap_or(true),
        gzip,
        shared_key,
        hostname,
        tls,
        ack_timeout,
        time_format,
        dead_letter,
    })
}
