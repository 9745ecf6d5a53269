//! An HTTP collector for the http-sink tests, on 127.0.0.1: a tiny_http server whose answer
//! to each request is decided by the test (a `Policy` closure: 200, 500, 429 with
//! `Retry-After`, 400, or no answer at all). It decodes bodies the way a collector does
//! (`Content-Encoding: gzip | zstd`, NDJSON or a JSON array) and feeds the records of the
//! requests it accepted (2xx) into the same `State` the TCP receiver keeps, so the sequence
//! checks of `util` apply unchanged. Requests it rejected are kept apart (their record ids),
//! for comparison with the dead-letter file.

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::util::*;

/// What the server sees of one request, for the policy and for the test's checks.
#[derive(Clone, Debug)]
pub struct Seen {
    /// 0 for the first request.
    pub n: u64,
    pub at: Instant,
    pub content_type: String,
    pub content_encoding: String,
    pub authorization: String,
    /// Every header, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The decoded records, one NDJSON line each.
    pub records: Vec<Vec<u8>>,
    /// The status answered (0: no answer).
    pub status: u16,
}

/// The answer to a request.
pub enum Reply {
    Status(u16, Vec<(&'static str, String)>, String),
    /// Never answer (the request is held open until the server stops).
    Hang,
}

pub type Policy = Box<dyn FnMut(&Seen) -> Reply + Send>;

struct Shared {
    state: Mutex<State>,
    policy: Mutex<Policy>,
    /// Records of accepted requests (duplicates included).
    lines: AtomicU64,
    requests: Mutex<Vec<Seen>>,
    /// Ids of the records of rejected (4xx other than 408/429) requests.
    rejected_ids: Mutex<HashSet<String>>,
    hung: Mutex<Vec<tiny_http::Request>>,
    decode_errors: Mutex<Vec<String>>,
}

pub struct HttpReceiver {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl HttpReceiver {
    /// A server that answers every request with `policy`; records are kept when `keep`.
    pub fn start(keep: bool, policy: Policy) -> HttpReceiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind http receiver"));
        let addr = server.server_addr().to_ip().expect("ip listener");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            policy: Mutex::new(policy),
            lines: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            rejected_ids: Mutex::new(HashSet::new()),
            hung: Mutex::new(Vec::new()),
            decode_errors: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (srv, sh, st) = (server.clone(), shared.clone(), stop.clone());
        let handle = thread::Builder::new()
            .name("http-receiver".into())
            .spawn(move || {
                while !st.load(Ordering::SeqCst) {
                    match srv.recv_timeout(Duration::from_millis(50)) {
                        Ok(Some(req)) => handle(&sh, req, keep),
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            })
            .expect("spawn http receiver");
        HttpReceiver {
            addr,
            server,
            shared,
            stop,
            handle: Some(handle),
        }
    }

    /// Always 200.
    pub fn ok(keep: bool) -> HttpReceiver {
        HttpReceiver::start(keep, Box::new(|_| Reply::Status(200, vec![], "{}".into())))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Records accepted, duplicates included.
    pub fn lines(&self) -> u64 {
        self.shared.lines.load(Ordering::SeqCst)
    }

    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.shared.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn unique(&self, tag: &str) -> u64 {
        self.with_state(|s| s.tags.get(tag).map_or(0, |t| t.unique))
    }

    pub fn check(&self, tag: &str, expected: u64) -> SeqReport {
        self.with_state(|s| SeqReport::of(tag, s.tags.get(tag), expected))
    }

    pub fn records(&self) -> Vec<Record> {
        self.with_state(|s| s.records.clone())
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn rejected_ids(&self) -> HashSet<String> {
        self.shared.rejected_ids.lock().unwrap().clone()
    }

    pub fn decode_errors(&self) -> Vec<String> {
        self.shared.decode_errors.lock().unwrap().clone()
    }

    /// Replaces the answer policy (e.g. the collector recovers).
    pub fn set_policy(&self, policy: Policy) {
        *self.shared.policy.lock().unwrap() = policy;
    }

    pub fn summary(&self) -> String {
        let reqs = self.requests();
        let mut by_status = std::collections::BTreeMap::new();
        for r in &reqs {
            *by_status.entry(r.status).or_insert(0u64) += 1;
        }
        let (corrupt, other, examples) = self.with_state(|s| (s.corrupt, s.other, s.corrupt_examples.clone()));
        format!(
            "http receiver: {} requests by status {by_status:?}, {} records accepted, {corrupt} corrupt {examples:?}, {other} not test lines, decode errors {:?}",
            reqs.len(),
            self.lines(),
            self.decode_errors()
        )
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.shared.hung.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn handle(shared: &Shared, mut req: tiny_http::Request, keep: bool) {
    let header = |name: &str| {
        req.headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_owned())
            .unwrap_or_default()
    };
    let content_type = header("content-type");
    let content_encoding = header("content-encoding");
    let authorization = header("authorization");
    let headers = req
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_owned(),
            )
        })
        .collect();
    let mut raw = Vec::new();
    let _ = req.as_reader().read_to_end(&mut raw);
    let records = match decode(&raw, &content_encoding, &content_type) {
        Ok(r) => r,
        Err(e) => {
            shared.decode_errors.lock().unwrap().push(e);
            Vec::new()
        }
    };
    let n = shared.requests.lock().unwrap().len() as u64;
    let mut seen = Seen {
        n,
        at: Instant::now(),
        content_type,
        content_encoding,
        authorization,
        headers,
        records,
        status: 0,
    };
    let reply = (shared.policy.lock().unwrap())(&seen);
    match reply {
        Reply::Hang => {
            shared.requests.lock().unwrap().push(seen);
            shared.hung.lock().unwrap().push(req);
        }
        Reply::Status(status, headers, body) => {
            seen.status = status;
            if (200..300).contains(&status) {
                let mut st = shared.state.lock().unwrap();
                for line in &seen.records {
                    st.handle_line(line, Wire::Ndjson, keep);
                }
                drop(st);
                // Counted after the state is updated, as the TCP receiver does.
                shared.lines.fetch_add(seen.records.len() as u64, Ordering::SeqCst);
            } else if (400..500).contains(&status) && status != 408 && status != 429 {
                let mut ids = shared.rejected_ids.lock().unwrap();
                for line in &seen.records {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
                        ids.insert(v["id"].as_str().unwrap_or("").to_owned());
                    }
                }
            }
            shared.requests.lock().unwrap().push(seen);
            let mut resp = tiny_http::Response::from_string(body).with_status_code(status);
            for (k, v) in headers {
                resp.add_header(tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap());
            }
            let _ = req.respond(resp);
        }
    }
}

/// The body as a collector reads it: decompressed per `Content-Encoding`, then split into
/// records per `Content-Type`.
fn decode(raw: &[u8], encoding: &str, content_type: &str) -> Result<Vec<Vec<u8>>, String> {
    let body = match encoding {
        "" => raw.to_vec(),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw)
                .read_to_end(&mut out)
                .map_err(|e| format!("gzip: {e}"))?;
            out
        }
        "zstd" => zstd::decode_all(raw).map_err(|e| format!("zstd: {e}"))?,
        other => return Err(format!("unknown content-encoding {other:?}")),
    };
    if content_type.starts_with("application/x-ndjson") {
        if !body.ends_with(b"\n") {
            return Err("NDJSON body does not end with a newline".into());
        }
        Ok(body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect())
    } else if content_type.starts_with("application/json") {
        let items: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|e| format!("json array: {e}"))?;
        Ok(items.iter().map(|v| serde_json::to_vec(v).unwrap()).collect())
    } else {
        Err(format!("unexpected content-type {content_type:?}"))
    }
}

/// A config like `Config::tcp`, shipping to an http sink at `url` instead; `extra` lines go
/// into the `[[sinks]]` table.
pub fn http_config(dir: &TestDir, include: &[String], url: &str, extra: &[&str]) -> Config {
    let mut sink = vec!["type = \"http\"".to_owned(), format!("url = {}", q(url))];
    sink.extend(extra.iter().map(|s| s.to_string()));
    Config {
        data_dir: dir.subdir("data"),
        metrics_port: Some(0),
        top: Vec::new(),
        include: include.to_vec(),
        exclude: None,
        format: "raw".into(),
        read_from: "beginning".into(),
        source_extra: Vec::new(),
        sink,
        encoding: "ndjson".into(),
        batch: Some("{ max_events = 1000, max_bytes = 1048576, linger_ms = 50 }".into()),
    }
}

/// The dead-letter records of sink `out` (current and rotated files), as parsed JSON.
pub fn dead_letters(cfg: &Config) -> Vec<serde_json::Value> {
    let dir = cfg.data_dir.join("dead-letter");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in entries.flatten() {
        let text = std::fs::read(e.path()).unwrap();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice(line).expect("dead-letter lines are JSON records"));
        }
    }
    out
}
