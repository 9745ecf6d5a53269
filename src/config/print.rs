//! `tailship validate --print`: the effective config — every setting the agent will run with,
//! defaults filled in, `${VAR}`s expanded, relative paths resolved — written back as TOML from
//! the runtime `Settings`, so what is shown is what was validated, not the file re-echoed.
//! Secrets (auth passwords and tokens, header values, a URL's userinfo and query values) are
//! masked.

use std::time::Duration;

use toml::{Table, Value};

use super::http::{
    Api, Auth, Compression, DeadLetterSettings, EsTarget, Framing, HttpSettings, LineKind, RecordKey, Secret,
    TlsSettings,
};
use super::kafka::{KafkaSettings, Topic, TopicPart};
use super::{Encoding, Format, ReadFrom, Settings, SinkKind, SinkSettings, SourceSettings};
use crate::adapt::multiline::Rule;

/// What a masked secret is shown as.
pub(super) const MASKED: &str = "<masked>";

impl Settings {
    /// The effective config as TOML (see the module doc).
    pub fn effective(&self) -> String {
        let mut t = Table::new();
        t.insert("data_dir".into(), path(&self.data_dir));
        t.insert("max_inflight_bytes".into(), int(self.max_inflight_bytes));
        t.insert("shutdown_timeout".into(), duration(self.shutdown_timeout));
        t.insert("rescan_interval".into(), duration(self.rescan_interval));
        t.insert("rotate_wait".into(), duration(self.rotate_wait));
        t.insert("checkpoint_grace".into(), duration(self.checkpoint_grace));
        t.insert("max_open_files".into(), int(self.max_open_files));
        t.insert("max_watches".into(), int(self.max_watches));
        t.insert("read_buffer_bytes".into(), int(self.read_buffer_bytes));
        let mut metrics = Table::new();
        metrics.insert("enabled".into(), Value::Boolean(self.metrics_address.is_some()));
        if let Some(a) = self.metrics_address {
            metrics.insert("address".into(), Value::String(a.to_string()));
        }
        metrics.insert("per_file".into(), Value::Boolean(self.metrics_per_file));
        t.insert("metrics".into(), Value::Table(metrics));
        t.insert("resource".into(), strings(self.resource.iter()));
        let sources = self.sources.iter().map(|s| Value::Table(source(s))).collect();
        t.insert("sources".into(), Value::Array(sources));
        // Transforms as written (`config::transform::written`), `hash_key` masked.
        let transforms = self.transforms.iter().map(|x| {
            let mut t = x.written.clone();
            let inputs = x.inputs.iter().filter_map(|&i| self.sources.get(i));
            t.insert(
                "inputs".into(),
                Value::Array(inputs.map(|s| Value::String(s.name.clone())).collect()),
            );
            Value::Table(t)
        });
        t.insert("transforms".into(), Value::Array(transforms.collect()));
        let sinks = self.sinks.iter().map(|s| Value::Table(sink(self, s))).collect();
        t.insert("sinks".into(), Value::Array(sinks));
        toml::to_string(&t).unwrap_or_else(|e| format!("# cannot write the effective config: {e}\n"))
    }
}

fn source(s: &SourceSettings) -> Table {
    let mut t = Table::new();
    t.insert("name".into(), Value::String(s.name.clone()));
    t.insert(
        "include".into(),
        Value::Array(s.include.iter().cloned().map(Value::String).collect()),
    );
    t.insert("format".into(), Value::String(s.format.name().into()));
    if let Format::Regex(p) = &s.format {
        t.insert("pattern".into(), Value::String(p.pattern().to_owned()));
    }
    let read_from = match s.read_from {
        ReadFrom::Beginning => "beginning",
        ReadFrom::End => "end",
    };
    t.insert("read_from".into(), Value::String(read_from.into()));
    t.insert("max_line_bytes".into(), int(s.max_line_bytes));
    t.insert("partial_line_timeout".into(), duration(s.partial_line_timeout));
    if let Some(m) = &s.multiline {
        let mut ml = Table::new();
        let (key, re) = match &m.rule {
            Rule::Start(re) => ("start", re),
            Rule::Continue(re) => ("continue", re),
        };
        ml.insert(key.into(), Value::String(re.as_str().to_owned()));
        ml.insert("max_lines".into(), int(m.max_lines));
        ml.insert("max_bytes".into(), int(m.max_bytes));
        ml.insert("timeout_ms".into(), int(m.timeout.as_millis()));
        t.insert("multiline".into(), Value::Table(ml));
    }
    t.insert("fields".into(), strings(s.fields.iter().map(|(k, v)| (k, v))));
    let k8s = if s.kubernetes_path_metadata { "path" } else { "none" };
    t.insert("kubernetes_metadata".into(), Value::String(k8s.into()));
    t.insert("strict".into(), Value::Boolean(s.strict));
    let own = s.written_transforms.iter().cloned().map(Value::Table);
    t.insert("transforms".into(), Value::Array(own.collect()));
    t
}

fn sink(settings: &Settings, s: &SinkSettings) -> Table {
    let mut t = Table::new();
    t.insert("name".into(), Value::String(s.name.clone()));
    let inputs = s.inputs.iter().filter_map(|&i| settings.sources.get(i));
    t.insert(
        "inputs".into(),
        Value::Array(inputs.map(|src| Value::String(src.name.clone())).collect()),
    );
    let encoding = match s.encoding {
        Encoding::Ndjson => "ndjson",
        Encoding::Raw => "raw",
    };
    t.insert("encoding".into(), Value::String(encoding.into()));
    let mut batch = Table::new();
    batch.insert("max_events".into(), int(s.batch.max_events));
    batch.insert("max_bytes".into(), int(s.batch.max_bytes));
    batch.insert("linger_ms".into(), int(s.batch.linger.as_millis()));
    t.insert("batch".into(), Value::Table(batch));
    t.insert("type".into(), Value::String(s.kind.type_name().into()));
    match &s.kind {
        SinkKind::Stdout => {}
        SinkKind::File { path: p } => {
            t.insert("path".into(), path(p));
        }
        SinkKind::Tcp(tcp) => {
            t.insert("address".into(), Value::String(tcp.address.clone()));
            if let Some(tls) = &tcp.tls {
                t.insert("tls".into(), tls_table(tls));
            }
            t.insert(
                "settle".into(),
                Value::String(humantime::format_duration(tcp.settle).to_string()),
            );
            t.insert("settle_bytes".into(), int(tcp.settle_bytes));
            t.insert("replay_window_bytes".into(), int(tcp.replay_window_bytes));
            t.insert("poison_closes".into(), int(tcp.poison_closes));
            t.insert("dead_letter".into(), dead_letter(&tcp.dead_letter));
        }
        SinkKind::Http(h) => http(h, &mut t),
        SinkKind::Kafka(k) => kafka(k, &mut t),
        SinkKind::Forward(f) => forward(f, &mut t),
    }
    t
}

fn forward(f: &crate::config::ForwardSettings, t: &mut Table) {
    t.insert("address".into(), Value::String(f.address.clone()));
    t.insert("tag".into(), Value::String(f.tag.clone()));
    t.insert("require_ack_response".into(), Value::Boolean(f.require_ack));
    t.insert(
        "compression".into(),
        Value::String(if f.gzip { "gzip" } else { "none" }.into()),
    );
    if f.shared_key.is_some() {
        t.insert("shared_key".into(), Value::String(MASKED.into()));
    }
    t.insert(
        "ack_timeout".into(),
        Value::String(humantime::format_duration(f.ack_timeout).to_string()),
    );
    t.insert(
        "time_as_integer".into(),
        Value::Boolean(f.time_format == crate::forward::encode::TimeFormat::Seconds),
    );
}

fn kafka(k: &KafkaSettings, t: &mut Table) {
    t.insert(
        "brokers".into(),
        Value::Array(k.brokers.iter().map(|b| Value::String(b.clone())).collect()),
    );
    match &k.topic {
        Topic::Fixed(name) => {
            t.insert("topic".into(), Value::String(name.clone()));
        }
        Topic::Template { parts, default } => {
            let template: String = parts
                .iter()
                .map(|p| match p {
                    TopicPart::Text(text) => text.clone(),
                    TopicPart::Key(key) => format!("{{{}}}", record_key(key)),
                })
                .collect();
            t.insert("topic".into(), Value::String(template));
            t.insert("default_topic".into(), Value::String(default.clone()));
        }
    }
    let key = k.key.as_ref().map_or_else(String::new, record_key);
    t.insert("key".into(), Value::String(key));
    t.insert("compression".into(), Value::String(k.compression.codec().into()));
    t.insert("message_max_bytes".into(), int(k.message_max_bytes));
    if let Some(tls) = &k.tls {
        t.insert("tls".into(), tls_table(tls));
    }
    if let Some(sasl) = &k.sasl {
        let mut a = Table::new();
        a.insert("mechanism".into(), Value::String(sasl.mechanism.into()));
        a.insert("user".into(), Value::String(sasl.user.clone()));
        match &sasl.password {
            Secret::Value(_) => a.insert("password".into(), Value::String(MASKED.into())),
            Secret::File(p) => a.insert("password_file".into(), path(p)),
        };
        t.insert("sasl".into(), Value::Table(a));
    }
    t.insert("dead_letter".into(), dead_letter(&k.dead_letter));
}

fn http(h: &HttpSettings, t: &mut Table) {
    t.insert("url".into(), Value::String(configured_url(h)));
    if h.api == Api::Plain {
        // The protocols fix their method.
        t.insert("method".into(), Value::String(h.method.to_string()));
    }
    let headers = h.headers.iter().map(|(name, v)| (name.as_str(), secret(v)));
    t.insert("headers".into(), strings(headers));
    if h.api == Api::Plain {
        // An http sink's `encoding` is how a batch is framed.
        let framing = match h.framing {
            Framing::Ndjson => "ndjson",
            Framing::JsonArray => "json_array",
        };
        t.insert("encoding".into(), Value::String(framing.into()));
    }
    let compression = match h.compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    t.insert("compression".into(), Value::String(compression.into()));
    if let Some(auth) = &h.auth {
        let mut a = Table::new();
        let (strategy, user, credential) = match auth {
            Auth::Basic { user, password } => ("basic", Some(user), ("password", password)),
            Auth::Bearer { token } => ("bearer", None, ("token", token)),
            Auth::Splunk { token } => ("splunk", None, ("token", token)),
        };
        a.insert("strategy".into(), Value::String(strategy.into()));
        if let Some(user) = user {
            a.insert("user".into(), Value::String(user.clone()));
        }
        match credential.1 {
            Secret::Value(_) => a.insert(credential.0.into(), Value::String(MASKED.into())),
            Secret::File(p) => a.insert(format!("{}_file", credential.0), path(p)),
        };
        t.insert("auth".into(), Value::Table(a));
    }
    // TLS keys are taken with an https:// url only.
    if h.url.scheme() == "https" {
        t.insert("tls".into(), tls_table(&h.tls));
    }
    t.insert("timeout".into(), duration(h.timeout));
    t.insert("concurrency".into(), int(h.concurrency));
    let mut retry = Table::new();
    retry.insert("initial_backoff".into(), duration(h.retry.initial));
    retry.insert("max_backoff".into(), duration(h.retry.max));
    retry.insert("max_retries".into(), int(h.retry.max_retries.unwrap_or(0)));
    t.insert("retry".into(), Value::Table(retry));
    t.insert("dead_letter".into(), dead_letter(&h.dead_letter));
    protocol(&h.api, t);
}

fn tls_table(tls: &TlsSettings) -> Value {
    let mut t = Table::new();
    if let Some(ca) = &tls.ca_file {
        t.insert("ca_file".into(), path(ca));
    }
    if let Some((cert, key)) = &tls.client_cert {
        t.insert("cert_file".into(), path(cert));
        t.insert("key_file".into(), path(key));
    }
    t.insert("insecure_skip_verify".into(), Value::Boolean(tls.insecure_skip_verify));
    if let Some(n) = &tls.server_name {
        t.insert("server_name".into(), Value::String(n.clone()));
    }
    Value::Table(t)
}

fn dead_letter(d: &DeadLetterSettings) -> Value {
    let mut dl = Table::new();
    // Its directory is data_dir/dead-letter, not a key.
    dl.insert("max_file_bytes".into(), int(d.max_file_bytes));
    dl.insert("max_total_bytes".into(), int(d.max_total_bytes));
    Value::Table(dl)
}

/// The protocol's own keys.
fn protocol(api: &Api, t: &mut Table) {
    let line = |k: LineKind| {
        Value::String(
            match k {
                LineKind::Message => "message",
                LineKind::Record => "record",
            }
            .into(),
        )
    };
    match api {
        Api::Plain => {}
        Api::Elasticsearch(EsTarget::Index(i)) => {
            t.insert("index".into(), Value::String(i.clone()));
        }
        Api::Elasticsearch(EsTarget::DataStream(d)) => {
            t.insert("data_stream".into(), Value::String(d.clone()));
        }
        Api::Otlp { json } => {
            t.insert(
                "encoding".into(),
                Value::String(if *json { "json" } else { "protobuf" }.into()),
            );
        }
        Api::Loki(l) => {
            t.insert(
                "labels".into(),
                strings(l.labels.iter().map(|(k, v)| (k, record_key(v)))),
            );
            let metadata = l.structured_metadata.iter().map(|(k, v)| (k, record_key(v)));
            t.insert("structured_metadata".into(), strings(metadata));
            if let Some(tenant) = &l.tenant_id {
                t.insert("tenant_id".into(), Value::String(tenant.clone()));
            }
            t.insert("line".into(), line(l.line));
        }
        Api::SplunkHec(s) => {
            if let Some(index) = &s.index {
                t.insert("index".into(), Value::String(index.clone()));
            }
            if let Some(st) = &s.sourcetype {
                t.insert("sourcetype".into(), Value::String(st.clone()));
            }
            t.insert("line".into(), line(s.event));
        }
    }
}

/// The url as a config gives it: Elasticsearch's `/_bulk` endpoint (and its query) is added
/// to the configured one at every load, so it is taken off again; the other protocols' paths
/// are kept when already there. Userinfo and query values are masked (`logsafe::url`).
fn configured_url(h: &HttpSettings) -> String {
    let mut url = h.url.clone();
    if let Api::Elasticsearch(_) = h.api {
        let base = url.path().strip_suffix("/_bulk").unwrap_or(url.path()).to_owned();
        url.set_path(&base);
        url.set_query(None);
    }
    crate::logsafe::url(&url)
}

fn record_key(k: &RecordKey) -> String {
    match k {
        RecordKey::Level => "level".into(),
        RecordKey::File => "file".into(),
        RecordKey::Stream => "stream".into(),
        RecordKey::Message => "message".into(),
        RecordKey::Resource(r) => format!("resource.{r}"),
        RecordKey::Field(f) => format!("fields.{f}"),
    }
}

fn secret(s: &Secret) -> String {
    match s {
        Secret::Value(_) => MASKED.into(),
        Secret::File(p) => format!("<from file {}>", p.display()),
    }
}

fn strings<K: AsRef<str>, V: AsRef<str>>(pairs: impl Iterator<Item = (K, V)>) -> Value {
    Value::Table(
        pairs
            .map(|(k, v)| (k.as_ref().to_owned(), Value::String(v.as_ref().to_owned())))
            .collect(),
    )
}

fn int(n: impl TryInto<i64>) -> Value {
    Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

fn duration(d: Duration) -> Value {
    Value::String(humantime::format_duration(d).to_string())
}

fn path(p: &std::path::Path) -> Value {
    Value::String(p.display().to_string())
}
