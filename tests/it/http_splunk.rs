//! The splunk_hec sink against a test HTTP Event Collector: `POST /services/collector/event`,
//! `Authorization: Splunk <token>` checked (a wrong token is a 403, which the sink retries
//! rather than dead-letters), a body of concatenated JSON events each with `time` (epoch
//! seconds), `event`, and flat `fields`; answers `{"text":"Success","code":0}`.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::http_server::{dead_letters, http_config};
use crate::util::*;

#[derive(Default)]
struct Hec {
    events: Vec<Value>,
    forbidden: u64,
    problems: Vec<String>,
}

fn start_hec(token: Arc<Mutex<String>>) -> (String, Arc<Mutex<Hec>>, Arc<tiny_http::Server>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let hec = Arc::new(Mutex::new(Hec::default()));
    let (srv, h) = (server.clone(), hec.clone());
    thread::spawn(move || {
        while let Ok(mut req) = srv.recv() {
            let auth = req
                .headers()
                .iter()
                .find(|x| x.field.equiv("Authorization"))
                .map(|x| x.value.as_str().to_owned())
                .unwrap_or_default();
            let path_ok = req.url() == "/services/collector/event" && *req.method() == tiny_http::Method::Post;
            let mut body = Vec::new();
            let _ = req.as_reader().read_to_end(&mut body);
            let mut st = h.lock().unwrap();
            if !path_ok {
                st.problems.push(format!("{} {}", req.method(), req.url()));
            }
            let (status, answer) = if auth != format!("Splunk {}", token.lock().unwrap()) {
                st.forbidden += 1;
                (403, json!({"text": "Invalid token", "code": 4}))
            } else {
                for e in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
                    match e {
                        Ok(e) => {
                            if !e["time"].is_number() || e.get("event").is_none() {
                                st.problems.push(format!("event without time or event: {e}"));
                            }
                            if e["fields"]
                                .as_object()
                                .is_some_and(|f| f.values().any(|v| !v.is_string()))
                            {
                                st.problems.push(format!("fields are not flat strings: {e}"));
                            }
                            st.events.push(e);
                        }
                        Err(err) => st.problems.push(format!("not JSON events: {err}")),
                    }
                }
                (200, json!({"text": "Success", "code": 0}))
            };
            drop(st);
            let _ = req.respond(tiny_http::Response::from_string(answer.to_string()).with_status_code(status));
        }
    });
    (url, hec, server)
}

#[test]
fn splunk_hec_events_with_the_token_and_a_wrong_token_is_retried_not_dead_lettered() {
    const N: u64 = 800;
    let dir = TestDir::new("splunk");
    let logs = dir.subdir("logs");
    std::fs::write(logs.join("a.log"), corpus().lines("s", 0, N)).unwrap();
    // The collector's token is rotated after the agent started: until the agent has the new
    // one (here: the collector is fixed back), every request is a 403.
    let token = Arc::new(Mutex::new("other".to_owned()));
    let (url, hec, _server) = start_hec(token.clone());
    let token_file = dir.join("hec-token");
    std::fs::write(&token_file, "3c2a-hec\n").unwrap();
    let cfg = http_config(
        &dir,
        &[format!("{}/*.log", logs.display())],
        &url,
        &[
            &format!("auth = {{ token_file = {} }}", q(&token_file.to_string_lossy())),
            "index = \"main\"",
            "sourcetype = \"_json\"",
            "retry = { initial_backoff = \"100ms\", max_backoff = \"300ms\" }",
        ],
    );
    let cfg = cfg.sink_type("splunk_hec");
    let mut agent = Agent::start_with(&dir, &cfg, &[], |cmd| {
        // As in a pod, whose host name is the pod's name (without HOSTNAME, host.name would be
        // this machine's name from gethostname).
        cmd.env("POD_NAME", "web-1").env("HOSTNAME", "web-1");
    });
    wait_progress(Some(&mut agent), "403s", STALL, LIMIT, || {
        let n = hec.lock().unwrap().forbidden;
        (n, n >= 3)
    })
    .unwrap();
    *token.lock().unwrap() = "3c2a-hec".into();
    wait_progress(Some(&mut agent), "every event", STALL, LIMIT, || {
        let n = hec.lock().unwrap().events.len() as u64;
        (n, n >= N)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", hec.lock().unwrap().problems));
    agent.sigterm();
    assert_eq!(agent.wait_exit(Duration::from_secs(40)), Some(0));
    assert!(dead_letters(&cfg).is_empty(), "a 403 is not the batch's fault");
    assert!(!agent.stderr().contains("3c2a-hec"), "the token is never logged");

    let st = hec.lock().unwrap();
    assert!(st.problems.is_empty(), "{:?}", st.problems);
    assert_eq!(st.events.len() as u64, N);
    let mut seqs = Vec::new();
    for e in &st.events {
        assert_eq!(
            (e["index"].as_str(), e["sourcetype"].as_str()),
            (Some("main"), Some("_json"))
        );
        assert_eq!(e["host"], "web-1");
        assert_eq!(e["fields"]["k8s.pod.name"], "web-1");
        let message = e["event"]["message"].as_str().unwrap();
        let (tag, seq, body) = corpus().parse(message).unwrap();
        assert_eq!((tag, body), ("s", corpus().body("s", seq)));
        assert_eq!(e["source"], e["event"]["file"]);
        let t = e["time"].as_f64().unwrap();
        assert!(t > 1.7e9, "epoch seconds: {t}");
        seqs.push(seq);
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len() as u64, N);
}
