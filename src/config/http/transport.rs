//! The keys every HTTP sink shares — the way out: URL, method, headers, body encoding and
//! compression, auth, TLS, timeouts and retries, the dead-letter file — each checked by a
//! function of its own. The protocols' own keys are checked in their files (`ship::loki`,
//! `ship::elasticsearch`, `ship::splunk`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    Auth, AuthFileConfig, Compression, DeadLetterSettings, Framing, RetrySettings, Secret, TlsSettings,
    DEFAULT_CONCURRENCY, DEFAULT_DEAD_LETTER_FILE_BYTES, DEFAULT_DEAD_LETTER_TOTAL_BYTES, DEFAULT_RETRY_INITIAL,
    DEFAULT_RETRY_MAX, DEFAULT_TIMEOUT,
};
use crate::config::file::{self, DurationValue, SinkFileConfig};
use crate::logsafe;

/// Reports a problem with a key of the sink.
pub(super) type Bad<'a> = dyn FnMut(&str, String) + 'a;

pub(super) fn url(s: &SinkFileConfig, bad: &mut Bad) -> Option<reqwest::Url> {
    match s.url.as_deref() {
        None => {
            bad("url", "missing; an http sink needs the URL it posts to".into());
            None
        }
        // Messages show the URL without its user, password and query values: it may be a
        // secret's way in (`?api_key=…`), and config errors are printed.
        Some(text) => match reqwest::Url::parse(text) {
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                bad(
                    "url",
                    format!(
                        "{:?} carries a user or password; give credentials in auth = {{ strategy = \"basic\", user = …, password_file = … }}, which are never logged",
                        logsafe::url(&u)
                    ),
                );
                None
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                bad(
                    "url",
                    format!(
                        "{:?} is not an http:// or https:// URL with a host",
                        logsafe::url_text(text)
                    ),
                );
                None
            }
            Err(e) => {
                bad("url", format!("{:?} is not a URL: {e}", logsafe::url_text(text)));
                None
            }
        },
    }
}

pub(super) fn method(s: &SinkFileConfig, bad: &mut Bad) -> reqwest::Method {
    let method_text = s.method.as_deref().unwrap_or("POST");
    match reqwest::Method::from_bytes(method_text.to_ascii_uppercase().as_bytes()) {
        Ok(m) if matches!(m.as_str(), "POST" | "PUT" | "PATCH") => m,
        _ => {
            bad("method", format!("{method_text:?} must be POST, PUT or PATCH"));
            reqwest::Method::POST
        }
    }
}

pub(super) fn headers(s: &SinkFileConfig, bad: &mut Bad) -> Vec<(reqwest::header::HeaderName, Secret)> {
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
    headers
}

/// The body's framing, and whether an otlp sink sends OTLP/JSON.
pub(super) fn framing(kind: &str, s: &SinkFileConfig, bad: &mut Bad) -> (Framing, bool) {
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
    (framing, otlp_json)
}

pub(super) fn compression(kind: &str, s: &SinkFileConfig, bad: &mut Bad) -> Compression {
    match s.compression.as_deref().unwrap_or("none") {
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
    }
}

pub(super) fn auth(kind: &str, a: &AuthFileConfig, bad: &mut Bad) -> Option<Auth> {
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
}

pub(in crate::config) fn tls(s: &SinkFileConfig, url: Option<&reqwest::Url>, bad: &mut Bad) -> TlsSettings {
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
                Err(e) => bad("tls.cert_file", e.to_string()),
            },
            (Some(_), None) => bad("tls.key_file", "missing; a client certificate needs its key".into()),
            (None, Some(_)) => bad("tls.cert_file", "missing; a client key needs its certificate".into()),
            (None, None) => {}
        }
        tls.insecure_skip_verify = t.insecure_skip_verify.unwrap_or(false);
        match (&t.server_name, url) {
            (Some(_), Some(_)) => bad(
                "tls.server_name",
                "only a tcp or forward sink takes it; an http sink checks the url's host".into(),
            ),
            (Some(n), None) if n.is_empty() => bad("tls.server_name", "must not be empty".into()),
            (Some(n), None) => tls.server_name = Some(n.clone()),
            (None, _) => {}
        }
    }
    if let Some(u) = url {
        if u.scheme() == "http" && (s.tls.is_some()) {
            bad("tls", "the url is http://; TLS settings need an https:// url".into());
        }
    }

    tls
}

/// The request timeout, the retry policy and the requests in flight.
pub(super) fn timing(s: &SinkFileConfig, bad: &mut Bad) -> (Duration, RetrySettings, usize) {
    let mut duration = |key: &str, v: &Option<DurationValue>, default: Duration| {
        file::duration(key, v, default, &mut |k, m| bad(&k, m))
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
    (timeout, retry, concurrency)
}

pub(in crate::config) fn dead_letter(
    s: &SinkFileConfig,
    name: &str,
    data_dir: &Path,
    bad: &mut Bad,
) -> DeadLetterSettings {
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

    dead_letter
}

/// A client certificate and key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{cert} / {key}: not a PEM certificate and key: {source}")]
    Pem {
        cert: PathBuf,
        key: PathBuf,
        source: reqwest::Error,
    },
}

/// Reads a client certificate chain and its key into the identity the TLS client presents.
pub fn client_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, IdentityError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| IdentityError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let mut pem = read(cert)?;
    pem.push(b'\n');
    pem.extend(read(key)?);
    reqwest::Identity::from_pem(&pem).map_err(|source| IdentityError::Pem {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })
}
