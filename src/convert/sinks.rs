//! `[OUTPUT]`s → `[[sinks]]`: `stdout`, `file`, `tcp`, `http`, `es`, `loki`, `opentelemetry`
//! and `splunk` have a tailship sink; `Match` becomes the sink's `inputs` (the sources whose
//! tag it matches). Outputs tailship has no sink for (`forward`, `kafka`, `s3`, …) are comments.

use crate::ship::elasticsearch;

use super::sources::Source;
use super::write::Table;
use super::{FluentBit, Section};

/// Why an output key is not carried over, where there is more to say.
fn output_reason(key: &str) -> Option<&'static str> {
    Some(match key {
        "retry_limit" => "this sink retries until the record is delivered",
        "workers" => "tailship sends from one thread per sink; HTTP sinks have `concurrency`",
        "storage.total_limit_size" => {
            "tailship buffers nothing but the files themselves (max_inflight_bytes bounds memory)"
        }
        "json_date_key" | "json_date_format" | "date_key" | "date_format" => {
            "every record carries `timestamp` (RFC 3339, UTC)"
        }
        "tls.vhost" | "tls.debug" | "tls.ca_path" | "tls.key_passwd" => {
            "tailship's tls table has ca_file, cert_file, key_file, insecure_skip_verify"
        }
        "format" => "tailship sends its NDJSON record shape (see the README's record)",
        "include_tag_key" | "tag_key" | "header_tag" => "tailship has no tags",
        "generate_id" | "id_key" => "the elasticsearch sink always sets _id to the record's id (replays overwrite)",
        "type" | "suppress_type_name" => "the elasticsearch sink sends no _type",
        "buffer_size" | "trace_output" | "trace_error" | "replace_dots" | "current_time_index" => {
            "no tailship equivalent"
        }
        _ => return None,
    })
}

/// Converts every output. A config whose outputs all lack a tailship sink still gets one
/// (stdout), so the result validates; a comment says so.
pub(super) fn convert(fb: &FluentBit, sources: &[Source], top: &mut Table) -> Vec<Table> {
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, o) in fb.outputs.iter().enumerate() {
        let plugin = o.plugin();
        let mut t = Table::default();
        t.note(format!("[OUTPUT] {plugin} at {}", o.at()));
        let kind = match plugin.as_str() {
            "stdout" => "stdout",
            "file" => "file",
            "tcp" => "tcp",
            "http" => "http",
            "es" | "elasticsearch" => "elasticsearch",
            "loki" => "loki",
            "opentelemetry" => "otlp",
            "splunk" => "splunk_hec",
            other => {
                let why = match other {
                    "forward" => "tailship has no forward (Fluentd protocol) sink yet",
                    "null" => "it discards records",
                    _ => "tailship has no such sink",
                };
                top.note(format!("not carried over: [OUTPUT] {other} at {}: {why}", o.at()));
                continue;
            }
        };
        let Some(inputs) = matched(o, sources, &mut t) else {
            top.note(format!(
                "not carried over: [OUTPUT] {plugin} at {}: its Match/Match_Regex matches no tail input's tag",
                o.at()
            ));
            continue;
        };
        let name = {
            let base = o
                .get("alias")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{kind}{i}"));
            let mut name = base.clone();
            let mut n = 2;
            while names.contains(&name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            name
        };
        names.push(name.clone());
        t.set("name", name.as_str());
        t.set("type", kind);
        if let Some(inputs) = inputs {
            t.set(
                "inputs",
                toml::Value::Array(inputs.into_iter().map(toml::Value::from).collect()),
            );
        }
        match kind {
            "stdout" => stdout(o, &mut t),
            "file" => file(o, &name, &mut t),
            "tcp" => tcp(o, &mut t),
            _ => http_family(kind, o, &mut t),
        }
        t.leftovers(o, &output_reason);
        out.push(t);
    }
    if out.is_empty() {
        let mut t = Table::default();
        t.note("No output converted to a tailship sink; records go to stdout until you put a sink here.");
        t.set("name", "stdout");
        t.set("type", "stdout");
        out.push(t);
    }
    out
}

/// The sources an output's `Match` (wildcards `*`) or `Match_Regex` selects: `Some(None)` for
/// all of them (no `inputs` key needed), `None` for none.
fn matched(o: &Section, sources: &[Source], t: &mut Table) -> Option<Option<Vec<String>>> {
    let hits = selected(o, sources, t, "the sink reads every source");
    if hits.is_empty() {
        return None;
    }
    if hits.len() == sources.len() {
        return Some(None);
    }
    Some(Some(hits.iter().map(|s| s.name.clone()).collect()))
}

/// The sources a section's `Match` (wildcards `*`) or `Match_Regex` selects (none without
/// either); a `Match_Regex` the `regex` crate cannot compile selects every source, noted with
/// `fallback` (what that means for this section).
pub(super) fn selected<'a>(o: &Section, sources: &'a [Source], t: &mut Table, fallback: &str) -> Vec<&'a Source> {
    if let Some(re) = o.get("match_regex") {
        return match regex::Regex::new(re) {
            Ok(re) => sources.iter().filter(|s| re.is_match(&s.tag)).collect(),
            Err(e) => {
                t.note(format!("not carried over: Match_Regex {re}: {e}; {fallback}"));
                sources.iter().collect()
            }
        };
    }
    match o.get("match") {
        Some(pattern) => sources.iter().filter(|s| tag_matches(pattern, &s.tag)).collect(),
        None => Vec::new(),
    }
}

/// Whether a `Match` pattern can match records of an input tagged `tag`. A tag with `*`
/// (`kube.*`) stands for tags that continue with the file's path, so a pattern matches it when
/// the fixed parts before the first `*` agree.
fn tag_matches(pattern: &str, tag: &str) -> bool {
    if let Some(prefix) = tag.find('*').map(|at| &tag[..at]) {
        let fixed = pattern.find('*').map_or(pattern, |at| &pattern[..at]);
        return fixed.starts_with(prefix) || prefix.starts_with(fixed);
    }
    wildcard(pattern.as_bytes(), tag.as_bytes())
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| wildcard(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && wildcard(rest, &s[1..]),
    }
}

fn stdout(o: &Section, t: &mut Table) {
    if let Some(f) = o.get("format") {
        if !f.eq_ignore_ascii_case("json_lines") {
            t.note(format!(
                "Format {f}: tailship's stdout sink writes one JSON record per line (json_lines)"
            ));
        }
    }
}

fn file(o: &Section, name: &str, t: &mut Table) {
    let dir = o.get("path");
    let file = o.get("file");
    let path = match (dir, file) {
        (Some(d), Some(f)) => format!("{}/{f}", d.trim_end_matches('/')),
        (None, Some(f)) => f.to_owned(),
        (d, None) => {
            t.note("File was not set: Fluent Bit names the file after the tag; tailship appends to one file, named after the sink");
            format!("{}/{name}.log", d.unwrap_or(".").trim_end_matches('/'))
        }
    };
    t.set("path", path);
    if let Some(f) = o.get("format") {
        t.note(format!(
            "Format {f}: tailship's file sink writes one JSON record per line"
        ));
    }
}

fn tcp(o: &Section, t: &mut Table) {
    let host = o.get("host").unwrap_or("127.0.0.1");
    let port = o.get("port").unwrap_or("5170");
    t.set("address", format!("{host}:{port}"));
    match o.get("format").map(str::to_ascii_lowercase).as_deref() {
        Some("json_lines") => {}
        Some(f) => t.note(format!("Format {f}: tailship's tcp sink sends NDJSON (Fluent Bit's json_lines)")),
        None => t.note("Fluent Bit's tcp output sends msgpack unless told otherwise; tailship's tcp sink sends NDJSON (json_lines)"),
    }
    if o.flag("tls") == Some(true) {
        t.note("not carried over: tls On: tailship's tcp sink speaks plain TCP");
    }
}

/// The defaults of each HTTP-family output: port, path, and the path key.
fn http_defaults(kind: &str) -> (&'static str, &'static str, &'static str) {
    match kind {
        "elasticsearch" => ("9200", "", "path"),
        "loki" => ("3100", "", "uri"),
        "otlp" => ("80", "", "logs_uri"),
        "splunk_hec" => ("8088", "", "uri"),
        _ => ("80", "/", "uri"),
    }
}

/// `http`, `es`, `loki`, `opentelemetry`, `splunk`: URL, TLS, auth, compression, retries, and
/// each one's own keys.
fn http_family(kind: &str, o: &Section, t: &mut Table) {
    let tls = o.flag("tls") == Some(true);
    let (default_port, default_path, path_key) = http_defaults(kind);
    let host = o.get("host").unwrap_or("127.0.0.1");
    let port = o.get("port").unwrap_or(default_port);
    let path = o.get(path_key).unwrap_or(default_path);
    t.set(
        "url",
        format!("{}://{host}:{port}{path}", if tls { "https" } else { "http" }),
    );
    if tls {
        if o.flag("tls.verify") == Some(false) {
            t.set("tls.insecure_skip_verify", true);
        }
        for (from, to) in [
            ("tls.ca_file", "tls.ca_file"),
            ("tls.crt_file", "tls.cert_file"),
            ("tls.key_file", "tls.key_file"),
        ] {
            if let Some(v) = o.get(from) {
                t.set(to, v);
            }
        }
    }
    if kind == "splunk_hec" {
        if let Some(token) = o.get("splunk_token") {
            secret(t, "auth.token", token);
        } else {
            t.note("splunk_token was not set: the splunk_hec sink needs auth.token; set it here");
            t.set("auth.token", "${SPLUNK_HEC_TOKEN}");
        }
    } else if let Some(user) = o.get("http_user") {
        t.set("auth.strategy", "basic");
        t.set("auth.user", user);
        secret(t, "auth.password", o.get("http_passwd").unwrap_or(""));
    } else if let Some(token) = o.get("bearer_token") {
        t.set("auth.strategy", "bearer");
        secret(t, "auth.token", token);
    }
    if o.get("compress").is_some_and(|c| c.eq_ignore_ascii_case("gzip")) {
        t.set("compression", "gzip");
    }
    for header in o.all("header") {
        if let Some((name, value)) = header.trim().split_once([' ', '\t']) {
            t.set(&format!("headers.{name}"), value.trim());
        }
    }
    retry(o, t);
    match kind {
        "http" => http_format(o, t),
        "elasticsearch" => es(o, t),
        "loki" => loki(o, t),
        "splunk_hec" => splunk(o, t),
        _ => {}
    }
}

/// A password or token, as the Fluent Bit config had it; written in clear there, it gets a
/// comment suggesting a variable or a file (the comment never repeats the value).
fn secret(t: &mut Table, key: &str, value: &str) {
    if !value.is_empty() && !value.contains("${") {
        let file_key = key.replace("password", "password_file").replace("token", "token_file");
        t.note(format!(
            "{key} is written in clear, as it was: prefer \"${{VARIABLE}}\" or {file_key} = \"/path/to/secret\""
        ));
    }
    t.set(key, value);
}

/// `Retry_Limit`: Fluent Bit gives up after 1 retry by default and drops the chunk; tailship
/// retries until delivered, and a batch the collector rejects goes to the dead-letter file.
fn retry(o: &Section, t: &mut Table) {
    match o.get("retry_limit").map(str::to_ascii_lowercase) {
        None => t.note("Fluent Bit's default Retry_Limit is 1, then the chunk is dropped; tailship retries until delivered (rejected batches go to the dead-letter file)"),
        Some(v) if v == "no_limits" || v == "false" => {
            t.note(format!("Retry_Limit {v}: retry until delivered, as tailship does by default"));
        }
        Some(v) => match v.parse::<u32>() {
            Ok(n) => {
                t.note("Retry_Limit: after this many retries a batch goes to the dead-letter file instead of being dropped");
                t.set("retry.max_retries", i64::from(n.max(1)));
            }
            Err(_) => t.note(format!("not carried over: Retry_Limit {v}: not a number")),
        },
    }
}

fn http_format(o: &Section, t: &mut Table) {
    match o.get("format").map(str::to_ascii_lowercase).as_deref() {
        Some("json") => t.set("encoding", "json_array"),
        Some("json_lines") | Some("json_stream") => t.set("encoding", "ndjson"),
        Some(f) => t.note(format!(
            "Format {f}: tailship's http sink sends NDJSON (or a JSON array)"
        )),
        None => t.note("Fluent Bit's http output sends msgpack unless told otherwise; tailship sends NDJSON"),
    }
}

fn es(o: &Section, t: &mut Table) {
    let index = if o.flag("logstash_format") == Some(true) {
        let prefix = o.get("logstash_prefix").unwrap_or("logstash");
        let date = o.get("logstash_dateformat").unwrap_or("%Y.%m.%d");
        format!("{prefix}-{date}")
    } else {
        o.get("index").unwrap_or("fluent-bit").to_owned()
    };
    match elasticsearch::name_problem(&index, true) {
        None => t.set("index", index),
        Some(p) => t.note(format!(
            "not carried over: index {p}; the sink writes to its default index"
        )),
    }
    for k in ["cloud_id", "cloud_auth", "aws_auth", "aws_region"] {
        if o.get(k).is_some() {
            t.note(format!(
                "not carried over: {k}: give the cluster's URL and basic or bearer auth instead"
            ));
        }
    }
}

fn loki(o: &Section, t: &mut Table) {
    if let Some(tenant) = o.get("tenant_id") {
        t.set("tenant_id", tenant);
    }
    if o.get("line_format").is_some_and(|f| f.eq_ignore_ascii_case("json")) {
        t.set("line", "record");
    }
    if let Some(labels) = o.get("labels") {
        for label in labels.split(',').map(str::trim).filter(|l| !l.is_empty()) {
            match loki_label(label) {
                Some((name, key)) => t.set(&format!("labels.{name}"), key),
                None => t.note(format!(
                    "not carried over: label {label}: a tailship label's value comes from a record key (level, file, stream, resource.*, fields.*)"
                )),
            }
        }
    }
    if o.flag("auto_kubernetes_labels") == Some(true) {
        t.note("auto_kubernetes_labels: tailship's default labels are namespace, pod, container, file and level");
    }
}

/// `name=$record['key']` or `$key` → a label fed by the tailship record key it names.
fn loki_label(label: &str) -> Option<(String, String)> {
    let (name, accessor) = match label.split_once('=') {
        Some((n, v)) => (n.trim().to_owned(), v.trim()),
        // Without a name, Fluent Bit names the label after the accessor's last key.
        None => {
            let last = label.rsplit(['[', '.']).next().unwrap_or(label);
            (last.trim_matches(['$', ']', '\'', '"']).to_owned(), label)
        }
    };
    let accessor = accessor.strip_prefix('$')?;
    let key = match accessor.replace(['\'', '"'], "").as_str() {
        "stream" => "stream",
        "level" | "log_level" | "severity" => "level",
        "kubernetes[namespace_name]" => "resource.k8s.namespace.name",
        "kubernetes[pod_name]" => "resource.k8s.pod.name",
        "kubernetes[container_name]" => "resource.k8s.container.name",
        "kubernetes[host]" => "resource.k8s.node.name",
        _ => return None,
    };
    Some((name, key.to_owned()))
}

fn splunk(o: &Section, t: &mut Table) {
    if let Some(index) = o.get("event_index") {
        t.set("index", index);
    }
    if let Some(st) = o.get("event_sourcetype") {
        t.set("sourcetype", st);
    }
    if o.flag("splunk_send_raw") == Some(true) {
        t.note("splunk_send_raw On: the event is the record's message");
        t.set("line", "message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_patterns_against_tags() {
        assert!(tag_matches("*", "app"));
        assert!(tag_matches("app.*", "app.web"));
        assert!(!tag_matches("app.*", "db"));
        assert!(tag_matches("kube.*", "kube.*"));
        assert!(tag_matches("kube.var.log.*", "kube.*"));
        assert!(!tag_matches("host.*", "kube.*"));
    }

    #[test]
    fn loki_labels_from_record_accessors() {
        assert_eq!(loki_label("job=$stream"), Some(("job".into(), "stream".into())));
        assert_eq!(
            loki_label("ns=$kubernetes['namespace_name']"),
            Some(("ns".into(), "resource.k8s.namespace.name".into()))
        );
        assert_eq!(loki_label("$stream"), Some(("stream".into(), "stream".into())));
        assert_eq!(
            loki_label("$kubernetes['pod_name']"),
            Some(("pod_name".into(), "resource.k8s.pod.name".into()))
        );
        assert_eq!(loki_label("job=fluent-bit"), None);
    }
}
