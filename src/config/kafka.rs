//! The kafka sink's configuration: its keys as written (`brokers`, `topic`, `default_topic`,
//! `key`, `compression`, `tls`, `sasl`, `message_max_bytes`, `dead_letter`) and their
//! validation into `KafkaSettings`. The topic template and the key are parsed here, once, into
//! record keys, so nothing is looked up by name per record.
//!
//! Files named here (CA, client certificate and key, the SASL password file) are read at
//! validation, so `tailship validate` reports a missing one; the password is kept in `Secret`,
//! whose `Debug` never shows it.

use super::file::keys_set;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::file::SinkFileConfig;
use super::http::{dead_letter, tls, DeadLetterSettings, RecordKey, Secret, TlsSettings};

/// librdkafka's own default, and the broker's default `message.max.bytes` (about 1 MiB): a
/// record larger than this is refused before it is sent, and dead-lettered.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// Kafka's limit on a topic name's length.
const MAX_TOPIC_LEN: usize = 249;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SaslFileConfig {
    mechanism: Option<String>,
    user: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
}

/// A validated kafka sink (`type = "kafka"`).
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    pub topic: Topic,
    /// The record key each message's key comes from; `None`: no key (any partition).
    pub key: Option<RecordKey>,
    pub compression: KafkaCompression,
    /// TLS to the brokers (`tls` table present), else plaintext.
    pub tls: Option<TlsSettings>,
    pub sasl: Option<Sasl>,
    pub message_max_bytes: usize,
    pub dead_letter: DeadLetterSettings,
}

/// Where a record goes: a fixed topic, or a template with record keys and the topic used when
/// a record lacks one of them (or the result is not a valid topic name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    Fixed(String),
    Template { parts: Vec<TopicPart>, default: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPart {
    Text(String),
    Key(RecordKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaCompression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl KafkaCompression {
    /// The value of librdkafka's `compression.codec`.
    pub fn codec(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, as librdkafka spells them.
    pub mechanism: &'static str,
    pub user: String,
    pub password: Secret,
}

/// The keys set on a sink that are the kafka sink's alone, when its type is another.
pub(super) fn kafka_keys_set(kind: Option<&str>, s: &SinkFileConfig) -> Vec<&'static str> {
    if kind == Some("kafka") {
        return Vec::new();
    }
    keys_set([
        ("brokers", s.brokers.is_some()),
        ("topic", s.topic.is_some()),
        ("default_topic", s.default_topic.is_some()),
        ("key", s.key.is_some()),
        ("sasl", s.sasl.is_some()),
        ("message_max_bytes", s.message_max_bytes.is_some()),
    ])
}

/// The HTTP sinks' keys a kafka sink takes too (with its own meaning for `compression`).
pub(super) const SHARED_WITH_HTTP: [&str; 3] = ["compression", "tls", "dead_letter"];

/// Validates a kafka sink; `None` when a problem was reported. `raw`: the sink writes the lines
/// as read, so its topic and key can only use what every line of a file shares.
pub(super) fn validate_kafka(
    s: &SinkFileConfig,
    name: &str,
    data_dir: &Path,
    raw: bool,
    at: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> Option<KafkaSettings> {
    let mut ok = true;
    let mut bad = |key: &str, message: String| {
        ok = false;
        problem(at(key), message);
    };
    let brokers = s.brokers.clone().unwrap_or_default();
    if brokers.is_empty() {
        bad("brokers", "missing; a kafka sink needs at least one host:port".into());
    }
    for b in &brokers {
        if !b
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !h.contains(',') && p.parse::<u16>().is_ok())
        {
            bad("brokers", format!("{b:?} is not host:port"));
        }
    }
    let topic = topic(s, raw, &mut bad);
    let key = match s.key.as_deref() {
        None => Some(RecordKey::File),
        Some("") => None,
        Some(k) => match RecordKey::parse(k) {
            Some(k) if raw && !per_file(&k) => {
                bad(
                    "key",
                    format!("{k:?} differs per record; with encoding = \"raw\" only file and resource.* can be keys"),
                );
                None
            }
            Some(k) => Some(k),
            None => {
                bad("key", format!("{k:?} is not a record key (level, file, stream, message, resource.<name>, fields.<name>); \"\" for none"));
                None
            }
        },
    };
    let compression = match s.compression.as_deref().unwrap_or("none") {
        "none" => KafkaCompression::None,
        "gzip" => KafkaCompression::Gzip,
        "snappy" => KafkaCompression::Snappy,
        "lz4" => KafkaCompression::Lz4,
        "zstd" => KafkaCompression::Zstd,
        other => {
            bad(
                "compression",
                format!("{other:?} must be none, gzip, snappy, lz4 or zstd"),
            );
            KafkaCompression::None
        }
    };
    let tls = s.tls.as_ref().map(|_| tls(s, None, &mut bad));
    if tls.as_ref().is_some_and(|t| t.server_name.is_some()) {
        bad(
            "tls.server_name",
            "only a tcp or forward sink takes it; librdkafka checks each broker's name".into(),
        );
    }
    let sasl = s.sasl.as_ref().and_then(|c| sasl(c, &mut bad));
    let message_max_bytes = s.message_max_bytes.unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
    if !(1000..=1_000_000_000).contains(&message_max_bytes) {
        bad(
            "message_max_bytes",
            format!("{message_max_bytes} must be between 1000 and 1000000000"),
        );
    }
    let dead_letter = dead_letter(s, name, data_dir, &mut bad);
    let topic = topic?;
    ok.then_some(KafkaSettings {
        brokers,
        topic,
        key,
        compression,
        tls,
        sasl,
        message_max_bytes,
        dead_letter,
    })
}

/// What a kafka sink's settings expose, for the warnings logged at every start.
pub(super) fn kafka_warnings(sink: &str, k: &KafkaSettings) -> Vec<String> {
    let mut out = Vec::new();
    if k.tls.is_none() && k.sasl.as_ref().is_some_and(|s| s.mechanism == "PLAIN") {
        out.push(format!(
            "sink {sink:?}: SASL PLAIN without tls sends the password in plain text to the brokers; anyone on the way can read it: set tls"
        ));
    }
    if k.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
        out.push(format!(
            "sink {sink:?}: tls.insecure_skip_verify = true: the brokers' certificates are not checked, so anyone on the way can read and change what is sent (and the credentials)"
        ));
    }
    out
}

/// Whether every record of a file has the same value for `key` (what a raw line can use).
fn per_file(key: &RecordKey) -> bool {
    matches!(key, RecordKey::File | RecordKey::Resource(_))
}

/// `topic` (a name, or a template with `{record.key}` parts) and `default_topic`.
fn topic(s: &SinkFileConfig, raw: bool, bad: &mut dyn FnMut(&str, String)) -> Option<Topic> {
    let Some(text) = s.topic.as_deref() else {
        bad("topic", "missing; a kafka sink needs the topic it produces to".into());
        return None;
    };
    let parts = match template(text) {
        Ok(p) => p,
        Err(m) => {
            bad("topic", m);
            return None;
        }
    };
    let default = s.default_topic.clone();
    if let Some(d) = &default {
        if let Some(m) = topic_name_problem(d) {
            bad("default_topic", m);
        }
    }
    if parts.iter().all(|p| matches!(p, TopicPart::Text(_))) {
        if default.is_some() {
            bad(
                "default_topic",
                "only a topic template ({…} parts) needs a default_topic".into(),
            );
        }
        if let Some(m) = topic_name_problem(text) {
            bad("topic", m);
            return None;
        }
        return Some(Topic::Fixed(text.to_owned()));
    }
    for p in &parts {
        if let TopicPart::Key(k) = p {
            if raw && !per_file(k) {
                bad(
                    "topic",
                    format!(
                        "{k:?} differs per record; with encoding = \"raw\" a topic can only use file and resource.*"
                    ),
                );
            }
        }
    }
    let Some(default) = default else {
        bad(
            "default_topic",
            "missing; a topic template needs the topic for records it does not resolve for".into(),
        );
        return None;
    };
    Some(Topic::Template { parts, default })
}

/// The parts of a topic template: text and `{key}`s.
fn template(text: &str) -> Result<Vec<TopicPart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TopicPart::Text(rest[..open].to_owned()));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("{text:?}: a '{{' without its '}}'"));
        };
        let key = &rest[open + 1..open + close];
        match RecordKey::parse(key) {
            Some(k) => parts.push(TopicPart::Key(k)),
            None => return Err(format!("{text:?}: {{{key}}} is not a record key (level, file, stream, message, resource.<name>, fields.<name>)")),
        }
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TopicPart::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// Why `name` is not a valid Kafka topic name, if it is not.
pub fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name == "." || name == ".." || name.len() > MAX_TOPIC_LEN {
        return Some(format!(
            "{name:?} is not a topic name (1 to {MAX_TOPIC_LEN} characters, not . or ..)"
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Some(format!("{name:?} is not a topic name (letters, digits, '.', '_', '-')"));
    }
    None
}

fn sasl(c: &SaslFileConfig, bad: &mut dyn FnMut(&str, String)) -> Option<Sasl> {
    let mechanism = match c.mechanism.as_deref().unwrap_or("PLAIN").to_ascii_uppercase().as_str() {
        "PLAIN" => "PLAIN",
        "SCRAM-SHA-256" => "SCRAM-SHA-256",
        "SCRAM-SHA-512" => "SCRAM-SHA-512",
        other => {
            bad(
                "sasl.mechanism",
                format!("{other:?} must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
            );
            return None;
        }
    };
    let Some(user) = c.user.clone() else {
        bad("sasl.user", "missing; SASL needs a user".into());
        return None;
    };
    let password = match (&c.password, &c.password_file) {
        (Some(p), None) => Secret::Value(p.clone()),
        (None, Some(f)) => match std::fs::metadata(f) {
            Ok(m) if m.is_file() => Secret::File(f.clone()),
            Ok(_) => {
                bad("sasl.password_file", format!("{} is not a file", f.display()));
                return None;
            }
            Err(e) => {
                bad("sasl.password_file", format!("cannot read {}: {e}", f.display()));
                return None;
            }
        },
        (Some(_), Some(_)) => {
            bad("sasl.password", "set password or password_file, not both".into());
            return None;
        }
        (None, None) => {
            bad("sasl.password", "missing; SASL needs password or password_file".into());
            return None;
        }
    };
    Some(Sasl {
        mechanism,
        user,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Settings, SinkKind};
    use super::*;

    fn parse(sink: &str) -> Result<Settings, super::super::ConfigError> {
        let text = format!(
            "data_dir = \"/tmp/d\"\n[[sources]]\ninclude = [\"/l/*.log\"]\n[[sinks]]\nname = \"fleet\"\ntype = \"kafka\"\n{sink}"
        );
        let env = |name: &str| (name == "PW").then(|| "s3cret-pw".to_owned());
        Settings::from_toml(Path::new("/etc/t.toml"), &text, &env)
    }

    fn kafka(sink: &str) -> KafkaSettings {
        match parse(sink).unwrap().sinks.remove(0).kind {
            SinkKind::Kafka(k) => *k,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let k = kafka("brokers = [\"k0:9092\", \"k1:9092\"]\ntopic = \"logs\"");
        assert_eq!(k.brokers, ["k0:9092", "k1:9092"]);
        assert_eq!(k.topic, Topic::Fixed("logs".into()));
        assert_eq!(k.key, Some(RecordKey::File));
        assert_eq!(k.compression, KafkaCompression::None);
        assert!(k.tls.is_none() && k.sasl.is_none());
        assert_eq!(k.message_max_bytes, DEFAULT_MESSAGE_MAX_BYTES);
        assert_eq!(k.dead_letter.dir, PathBuf::from("/tmp/d/dead-letter"));
    }

    #[test]
    fn a_template_with_its_default_and_secrets_out_of_debug() {
        let k = kafka(
            r#"brokers = ["k:9093"]
            topic = "logs-{resource.k8s.namespace.name}"
            default_topic = "logs"
            key = "fields.user"
            compression = "zstd"
            tls = {}
            sasl = { mechanism = "scram-sha-512", user = "agent", password = "${PW}" }"#,
        );
        assert_eq!(
            k.topic,
            Topic::Template {
                parts: vec![
                    TopicPart::Text("logs-".into()),
                    TopicPart::Key(RecordKey::Resource("k8s.namespace.name".into()))
                ],
                default: "logs".into()
            }
        );
        assert_eq!(k.key, Some(RecordKey::Field("user".into())));
        assert_eq!(k.compression.codec(), "zstd");
        assert!(k.tls.is_some());
        let sasl = k.sasl.as_ref().unwrap();
        assert_eq!((sasl.mechanism, sasl.user.as_str()), ("SCRAM-SHA-512", "agent"));
        assert_eq!(sasl.password.reveal().unwrap(), "s3cret-pw");
        assert!(!format!("{k:?}").contains("s3cret"), "{k:?}");
    }

    #[test]
    fn problems_name_their_keys_and_hide_the_password() {
        let err = parse(
            r#"brokers = ["nohost"]
            topic = "logs-{resource.ns}"
            key = "bogus"
            compression = "brotli"
            sasl = { mechanism = "GSSAPI", user = "u", password = "s3cret-pw" }
            message_max_bytes = 10"#,
        )
        .unwrap_err()
        .to_string();
        for key in [
            "sinks[0].brokers",
            "sinks[0].default_topic",
            "sinks[0].key",
            "sinks[0].compression",
            "sinks[0].sasl.mechanism",
            "sinks[0].message_max_bytes",
        ] {
            assert!(err.contains(key), "{key} missing from {err}");
        }
        assert!(!err.contains("s3cret"), "{err}");
        let err = parse("brokers = [\"k:1\"]\ntopic = \"bad topic\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sinks[0].topic"), "{err}");
        let err = parse("brokers = [\"k:1\"]\ntopic = \"t-{fields.x}\"\ndefault_topic = \"t\"\nencoding = \"raw\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sinks[0].topic") && err.contains("raw"), "{err}");
    }

    #[test]
    fn kafka_keys_on_another_sink_are_reported() {
        let text = "data_dir = \"/tmp/d\"\n[[sources]]\ninclude = [\"/l/*.log\"]\n[[sinks]]\ntype = \"tcp\"\naddress = \"a:1\"\nbrokers = [\"k:1\"]\ntopic = \"t\"";
        let err = Settings::from_toml(Path::new("/t.toml"), text, &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sinks[0].brokers") && err.contains("sinks[0].topic"),
            "{err}"
        );
    }
}
