//! The elasticsearch sink against a test server that speaks the `_bulk` API as Elasticsearch
//! does: it parses action/document pairs, stores documents by `_id` (`index` overwrites,
//! `create` on an existing `_id` is a 409), and answers real-shaped bulk responses, per-item
//! failures included (429 `es_rejected_execution_exception`, 400 `mapper_parsing_exception`).

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::{json, Value};

use crate::http_server::{dead_letters, http_config};
use crate::util::*;

/// `(request number, document) -> status` for one bulk item.
pub type ItemPolicy = Box<dyn FnMut(u64, &Value) -> u16 + Send>;

/// What the server decides for a request (before reading its items) and for each item.
pub struct EsPolicy {
    /// `(request number) -> Some(status)` to answer the whole request with that status;
    /// `store_anyway` = index its documents first (a collector that indexed, then failed to
    /// answer: the agent must retry, and `_id` must make that harmless).
    pub request: Box<dyn FnMut(u64) -> Option<(u16, bool)> + Send>,
    /// `(request number, document) -> status` for one item: 201, 429, 400, …
    pub item: ItemPolicy,
}

#[derive(Default)]
pub struct EsState {
    /// `_id` → (`_index`, document, times written).
    pub docs: HashMap<String, (String, Value, u32)>,
    pub requests: u64,
    /// Actions received, duplicates included.
    pub actions: u64,
    pub conflicts: u64,
    /// Item counts per request, in arrival order.
    pub request_sizes: Vec<usize>,
    pub protocol_errors: Vec<String>,
    /// For the sequence checks: every stored document's message, once per `_id`.
    pub seq: State,
}

pub struct EsServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    pub state: Arc<Mutex<EsState>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EsServer {
    pub fn start(policy: EsPolicy) -> EsServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let state = Arc::new(Mutex::new(EsState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (srv, st, stp) = (server.clone(), state.clone(), stop.clone());
        let handle = thread::spawn(move || {
            let mut policy = policy;
            while !stp.load(Ordering::SeqCst) {
                if let Ok(Some(req)) = srv.recv_timeout(Duration::from_millis(50)) {
                    serve(req, &st, &mut policy);
                }
            }
        });
        EsServer {
            addr,
            server,
            state,
            stop,
            handle: Some(handle),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stored(&self) -> usize {
        self.state.lock().unwrap().docs.len()
    }

    pub fn summary(&self) -> String {
        let s = self.state.lock().unwrap();
        format!(
            "es: {} requests, {} actions, {} docs stored, {} conflicts, protocol errors {:?}",
            s.requests,
            s.actions,
            s.docs.len(),
            s.conflicts,
            s.protocol_errors
        )
    }
}

impl Drop for EsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(mut req: tiny_http::Request, state: &Mutex<EsState>, policy: &mut EsPolicy) {
    let header = |name: &str| {
        req.headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_owned())
            .unwrap_or_default()
    };
    let (ctype, encoding) = (header("Content-Type"), header("Content-Encoding"));
    let url = req.url().to_owned();
    let mut raw = Vec::new();
    let _ = req.as_reader().read_to_end(&mut raw);
    let mut st = state.lock().unwrap();
    let n = st.requests;
    st.requests += 1;
    let error = |st: &mut EsState, e: String| st.protocol_errors.push(e);
    if !url.starts_with("/_bulk") || *req.method() != tiny_http::Method::Post {
        error(&mut st, format!("{} {url}", req.method()));
    }
    if ctype != "application/x-ndjson" {
        error(&mut st, format!("content-type {ctype:?}"));
    }
    let body = match encoding.as_str() {
        "" => raw,
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).unwrap();
            out
        }
        other => {
            error(&mut st, format!("content-encoding {other}"));
            Vec::new()
        }
    };
    let whole = (policy.request)(n);
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    if !lines.len().is_multiple_of(2) || !body.ends_with(b"\n") {
        error(
            &mut st,
            "bulk body is not newline-terminated action/document pairs".into(),
        );
    }
    let mut items = Vec::new();
    let mut any_error = false;
    st.request_sizes.push(lines.len() / 2);
    for pair in lines.chunks(2) {
        let (Ok(action), Some(Ok(doc))) = (
            serde_json::from_slice::<Value>(pair[0]),
            pair.get(1).map(|d| serde_json::from_slice::<Value>(d)),
        ) else {
            error(&mut st, "unparsable action or document".into());
            continue;
        };
        let Some((op, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            error(&mut st, format!("action {action}"));
            continue;
        };
        let (index, id) = (
            meta["_index"].as_str().unwrap_or("").to_owned(),
            meta["_id"].as_str().unwrap_or("").to_owned(),
        );
        if !matches!(op.as_str(), "index" | "create") || index.is_empty() || id.is_empty() {
            error(&mut st, format!("action {action}"));
        }
        if doc.get("@timestamp").and_then(|t| t.as_str()) != doc.get("timestamp").and_then(|t| t.as_str()) {
            error(
                &mut st,
                format!("@timestamp missing or not the record's timestamp: {doc}"),
            );
        }
        st.actions += 1;
        let store = |st: &mut EsState| {
            let exists = st.docs.contains_key(&id);
            if op == "create" && exists {
                st.conflicts += 1;
                return 409;
            }
            if !exists {
                st.seq
                    .handle_line(&serde_json::to_vec(&doc).unwrap(), Wire::Ndjson, false);
            }
            let e = st.docs.entry(id.clone()).or_insert((index.clone(), doc.clone(), 0));
            e.2 += 1;
            if exists {
                200
            } else {
                201
            }
        };
        let status = match whole {
            Some((_, true)) => store(&mut st),
            Some(_) => 0,
            None => match (policy.item)(n, &doc) {
                201 => store(&mut st),
                other => other,
            },
        };
        let item = match status {
            200 | 201 => json!({ op: {
                "_index": index, "_id": id, "_version": 1,
                "result": if status == 201 { "created" } else { "updated" },
                "_shards": {"total": 2, "successful": 1, "failed": 0},
                "_seq_no": st.actions, "_primary_term": 1, "status": status }}),
            409 => {
                any_error = true;
                json!({ op: { "_index": index, "_id": id, "status": 409, "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": format!("[{id}]: version conflict, document already exists (current version [1])"),
                    "index": index }}})
            }
            429 => {
                any_error = true;
                json!({ op: { "_index": index, "_id": id, "status": 429, "error": {
                    "type": "es_rejected_execution_exception",
                    "reason": "rejected execution of coordinating operation" }}})
            }
            s => {
                any_error = true;
                json!({ op: { "_index": index, "_id": id, "status": s, "error": {
                    "type": "mapper_parsing_exception",
                    "reason": "failed to parse field [fields.n] of type [long] in document",
                    "caused_by": {"type": "illegal_argument_exception", "reason": "For input string: \"x\""} }}})
            }
        };
        items.push(item);
    }
    drop(st);
    let (status, body) = match whole {
        Some((s, _)) => (s, json!({"error": {"type": "unavailable"}, "status": s}).to_string()),
        None => (200, json!({"took": 3, "errors": any_error, "items": items}).to_string()),
    };
    let resp = tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(tiny_http::Header::from_bytes(b"Content-Type", b"application/json").unwrap());
    let _ = req.respond(resp);
}

/// JSON log lines with their own time (two days, alternating), the corpus line as `msg`, and
/// a field that is a number, except in every 97th line (the mapping error the server rejects).
fn write_json_lines(path: &std::path::Path, tag: &str, n: u64) {
    let mut out = String::new();
    for seq in 0..n {
        let day = 1 + seq % 2;
        let value = if seq % 97 == 0 { json!("x") } else { json!(seq) };
        out.push_str(
            &json!({"time": format!("2026-01-0{day}T10:00:00.5Z"), "msg": format!("{tag} {seq} {}", corpus().body(tag, seq)), "n": value})
                .to_string(),
        );
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn es_bulk_retries_only_failed_items_and_dead_letters_mapping_errors() {
    const N: u64 = 2000;
    let dir = TestDir::new("es-bulk");
    let logs = dir.subdir("logs");
    write_json_lines(&logs.join("a.log"), "e", N);
    let es = EsServer::start(EsPolicy {
        request: Box::new(|_| None),
        item: Box::new(|req, doc| {
            if doc["fields"]["n"].is_string() {
                400
            } else if req < 4 && doc["offset"].as_u64().unwrap_or(0) % 3 == 0 {
                429
            } else {
                201
            }
        }),
    });
    let cfg = http_config(
        &dir,
        &[format!("{}/*.log", logs.display())],
        &es.url(),
        &[
            "index = \"logs-%Y.%m.%d\"",
            "compression = \"gzip\"",
            "retry = { initial_backoff = \"100ms\", max_backoff = \"500ms\" }",
        ],
    )
    .format("json");
    let cfg = cfg
        .sink_type("elasticsearch")
        .batch("{ max_events = 400, max_bytes = 1048576, linger_ms = 50 }");
    let poisoned = N.div_ceil(97) as usize;
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "stored + dead-lettered = all", STALL, LIMIT, || {
        let n = es.stored() + dead_letters(&cfg).len();
        (n as u64, n as u64 >= N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", es.summary()));
    let file_len = std::fs::metadata(logs.join("a.log")).unwrap().len();
    wait_progress(Some(&mut agent), "the checkpoint at the end", STALL, LIMIT, || {
        let off = checkpoint_offsets(&cfg).iter().map(|(_, o)| *o).max().unwrap_or(0);
        (off, off == file_len)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", es.summary()));
    let m = agent.metrics().expect("metrics");
    agent.sigterm();
    assert_eq!(agent.wait_exit(Duration::from_secs(40)), Some(0));

    let st = es.state.lock().unwrap();
    assert!(st.protocol_errors.is_empty(), "{:?}", st.protocol_errors);
    assert_eq!(st.docs.len(), N as usize - poisoned, "{}", es.summary());
    assert!(
        st.docs.values().all(|(_, _, writes)| *writes == 1),
        "each document written once"
    );
    // Index by the record's own date.
    for (index, doc, _) in st.docs.values() {
        let ts = doc["timestamp"].as_str().unwrap();
        assert_eq!(index, &format!("logs-{}.{}.{}", &ts[0..4], &ts[5..7], &ts[8..10]));
    }
    let days: std::collections::HashSet<&str> = st.docs.values().map(|(i, _, _)| i.as_str()).collect();
    assert_eq!(days.len(), 2, "{days:?}");
    // Retried requests held only the items that had failed.
    assert!(st.request_sizes.iter().any(|n| *n < 200), "{:?}", st.request_sizes);
    let r = SeqReport::of("e", st.seq.tags.get("e"), N);
    assert_eq!(r.unique, N - poisoned as u64, "{r}");
    drop(st);

    let dead = dead_letters(&cfg);
    assert_eq!(dead.len(), poisoned);
    assert!(
        dead.iter().all(|d| d["fields"]["n"] == "x"),
        "only the rejected records"
    );
    assert_eq!(
        m.get_with("tailship_dead_letter_records_total", "sink=\"out\""),
        Some(poisoned as f64)
    );
    assert!(m.get_with("tailship_send_retries_total", "sink=\"out\"").unwrap() >= 1.0);
    assert!(
        agent.stderr().contains("mapper_parsing_exception"),
        "the item error is logged"
    );
}

#[test]
fn es_kill9_during_retries_then_restart_stores_every_record_exactly_once() {
    const N: u64 = 6000;
    let dir = TestDir::new("es-kill9");
    let logs = dir.subdir("logs");
    std::fs::write(logs.join("a.log"), corpus().lines("x", 0, N)).unwrap();
    // Requests 2.. are indexed but answered 503 (the answer was lost): the agent retries
    // them, and `create` with the record's `_id` turns each retry into a 409, not a copy.
    let es = EsServer::start(EsPolicy {
        request: Box::new(|n| (n >= 2).then_some((503, true))),
        item: Box::new(|_, _| 201),
    });
    let cfg = http_config(
        &dir,
        &[format!("{}/*.log", logs.display())],
        &es.url(),
        &[
            "data_stream = \"logs-app-default\"",
            "retry = { initial_backoff = \"100ms\", max_backoff = \"300ms\" }",
        ],
    );
    let mut cfg = cfg
        .sink_type("elasticsearch")
        .batch("{ max_events = 500, max_bytes = 1048576, linger_ms = 50 }");
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "retried requests", STALL, LIMIT, || {
        let n = es.state.lock().unwrap().requests;
        (n, n >= 8)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", es.summary()));
    agent.kill9();
    {
        let mut st = es.state.lock().unwrap();
        assert!(st.conflicts > 0, "retries met documents already there");
        st.protocol_errors.clear();
    }
    // The collector recovers; the agent restarts from its checkpoint and replays.
    let recovered = EsServer::start(EsPolicy {
        request: Box::new(|_| None),
        item: Box::new(|_, _| 201),
    });
    {
        // Same documents as before the crash: the new server starts from the old one's.
        let old = std::mem::take(&mut *es.state.lock().unwrap());
        *recovered.state.lock().unwrap() = EsState {
            docs: old.docs,
            seq: old.seq,
            ..Default::default()
        };
    }
    cfg.sink = cfg
        .sink
        .iter()
        .map(|l| {
            if l.starts_with("url") {
                format!("url = {}", q(&recovered.url()))
            } else {
                l.clone()
            }
        })
        .collect();
    cfg.fresh_metrics_port();
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "every record stored", STALL, LIMIT, || {
        let n = recovered.stored() as u64;
        (n, n >= N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", recovered.summary()));
    agent.sigterm();
    assert_eq!(agent.wait_exit(Duration::from_secs(40)), Some(0));
    let st = recovered.state.lock().unwrap();
    assert!(st.protocol_errors.is_empty(), "{:?}", st.protocol_errors);
    assert_eq!(st.docs.len() as u64, N, "{}", recovered.summary());
    assert!(st
        .docs
        .values()
        .all(|(index, _, writes)| *writes == 1 && index == "logs-app-default"));
    let r = SeqReport::of("x", st.seq.tags.get("x"), N);
    assert_eq!((r.unique, r.duplicates), (N, 0), "exactly once by _id: {r}");
}
