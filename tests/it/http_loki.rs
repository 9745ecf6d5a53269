//! The loki sink against a test server that reads the push API as Loki does: a JSON body of
//! `streams`, each with a non-empty label set whose names are valid Prometheus label names,
//! and `values` of `[ns_string, line]` or `[ns_string, line, {metadata}]`; the tenant in
//! `X-Scope-OrgID`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::http_server::http_config;
use crate::util::*;

/// One pushed entry: (labels, ns, line, structured metadata).
type Entry = (BTreeMap<String, String>, i64, String, BTreeMap<String, String>);

#[derive(Default)]
struct Pushed {
    /// In arrival order.
    entries: Vec<Entry>,
    tenants: Vec<String>,
    problems: Vec<String>,
}

fn label_name_ok(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_push(body: &[u8], out: &mut Pushed) {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return out.problems.push(format!("not JSON: {e}")),
    };
    let Some(streams) = v["streams"].as_array() else {
        return out.problems.push("no streams array".into());
    };
    for s in streams {
        let Some(labels) = s["stream"].as_object().filter(|l| !l.is_empty()) else {
            out.problems.push(format!("stream without labels: {s}"));
            continue;
        };
        let mut set = BTreeMap::new();
        for (k, v) in labels {
            if !label_name_ok(k) || !v.is_string() {
                out.problems.push(format!("bad label {k}={v}"));
            }
            set.insert(k.clone(), v.as_str().unwrap_or("").to_owned());
        }
        for e in s["values"].as_array().into_iter().flatten() {
            let parts = e.as_array().cloned().unwrap_or_default();
            let ns = parts.first().and_then(|t| t.as_str()).unwrap_or("");
            if ns.is_empty() || !ns.bytes().all(|b| b.is_ascii_digit()) {
                out.problems
                    .push(format!("timestamp is not a string of nanoseconds: {e}"));
            }
            let line = parts.get(1).and_then(|l| l.as_str());
            if line.is_none() || !(2..=3).contains(&parts.len()) {
                out.problems
                    .push(format!("entry is not [ts, line] or [ts, line, metadata]: {e}"));
            }
            let mut metadata = BTreeMap::new();
            if let Some(m) = parts.get(2) {
                for (k, v) in m.as_object().into_iter().flatten() {
                    metadata.insert(k.clone(), v.as_str().unwrap_or("<not a string>").to_owned());
                }
            }
            out.entries.push((
                set.clone(),
                ns.parse().unwrap_or(0),
                line.unwrap_or("").to_owned(),
                metadata,
            ));
        }
    }
}

fn start_loki() -> (String, Arc<Mutex<Pushed>>, Arc<tiny_http::Server>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let pushed = Arc::new(Mutex::new(Pushed::default()));
    let (srv, p) = (server.clone(), pushed.clone());
    thread::spawn(move || {
        while let Ok(mut req) = srv.recv() {
            let header = |name: &str| {
                req.headers()
                    .iter()
                    .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
                    .map(|h| h.value.as_str().to_owned())
                    .unwrap_or_default()
            };
            let (ctype, encoding, tenant) = (
                header("content-type"),
                header("content-encoding"),
                header("x-scope-orgid"),
            );
            let ok_path = req.url() == "/loki/api/v1/push" && *req.method() == tiny_http::Method::Post;
            let mut raw = Vec::new();
            let _ = req.as_reader().read_to_end(&mut raw);
            let body = if encoding == "gzip" {
                let mut out = Vec::new();
                let _ = flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out);
                out
            } else {
                raw
            };
            let mut st = p.lock().unwrap();
            if !ok_path || ctype != "application/json" {
                st.problems
                    .push(format!("{} {} content-type {ctype}", req.method(), req.url()));
            }
            st.tenants.push(tenant);
            check_push(&body, &mut st);
            drop(st);
            let _ = req.respond(tiny_http::Response::empty(204));
        }
    });
    (url, pushed, server)
}

#[test]
fn loki_push_streams_by_labels_with_nanosecond_timestamps_metadata_and_tenant() {
    const N: u64 = 1500;
    let dir = TestDir::new("loki");
    let logs = dir.subdir("logs");
    let base_ns: i64 = 1_767_261_600_123_456_789; // 2026-01-01T10:00:00.123456789Z
    let mut text = String::new();
    for seq in 0..N {
        let ns = base_ns + seq as i64 * 1_000_001;
        let secs = ns.div_euclid(1_000_000_000);
        let time = format!(
            "{}.{:09}Z",
            chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S"),
            ns.rem_euclid(1_000_000_000)
        );
        let level = if seq % 3 == 0 { "error" } else { "info" };
        text.push_str(
            &json!({"time": time, "level": level, "msg": format!("l {seq} {}", corpus().body("l", seq)), "trace": format!("t{seq}")})
                .to_string(),
        );
        text.push('\n');
    }
    let path = logs.join("app.log");
    std::fs::write(&path, text).unwrap();
    let (url, pushed, _server) = start_loki();
    let cfg = http_config(
        &dir,
        &[format!("{}/*.log", logs.display())],
        &url,
        &[
            "tenant_id = \"team-a\"",
            "structured_metadata = { trace_id = \"fields.trace\" }",
            "compression = \"gzip\"",
        ],
    )
    .format("json");
    let cfg = cfg
        .sink_type("loki")
        .batch("{ max_events = 400, max_bytes = 1048576, linger_ms = 50 }");
    let mut agent = Agent::start_with(&dir, &cfg, &[], |cmd| {
        cmd.env("POD_NAME", "web-1")
            .env("POD_NAMESPACE", "shop")
            .env("CONTAINER_NAME", "app");
    });
    wait_progress(Some(&mut agent), "every entry pushed", STALL, LIMIT, || {
        let n = pushed.lock().unwrap().entries.len() as u64;
        (n, n >= N)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    agent.sigterm();
    assert_eq!(agent.wait_exit(Duration::from_secs(40)), Some(0));

    let st = pushed.lock().unwrap();
    assert!(st.problems.is_empty(), "{:?}", &st.problems[..st.problems.len().min(5)]);
    assert!(st.tenants.iter().all(|t| t == "team-a"), "{:?}", st.tenants);
    assert_eq!(st.entries.len() as u64, N);
    let file = path.to_string_lossy().into_owned();
    let mut streams: HashMap<BTreeMap<String, String>, u64> = HashMap::new();
    for (labels, ns, line, metadata) in &st.entries {
        *streams.entry(labels.clone()).or_default() += 1;
        let (tag, seq, body) = corpus().parse(line).unwrap_or_else(|| panic!("line {line:?}"));
        assert_eq!((tag, body), ("l", corpus().body("l", seq)));
        assert_eq!(
            *ns,
            base_ns + seq as i64 * 1_000_001,
            "seq {seq}: the record's own time, in ns"
        );
        assert_eq!(metadata.get("trace_id"), Some(&format!("t{seq}")));
        let level = if seq % 3 == 0 { "error" } else { "info" };
        let want: BTreeMap<String, String> = [
            ("namespace", "shop"),
            ("pod", "web-1"),
            ("container", "app"),
            ("file", file.as_str()),
            ("level", level),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(labels, &want);
    }
    assert_eq!(streams.len(), 2, "one stream per level: {streams:?}");
    let mut seqs: Vec<u64> = st.entries.iter().map(|e| corpus().parse(&e.2).unwrap().1).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len() as u64, N, "every line once");
}
