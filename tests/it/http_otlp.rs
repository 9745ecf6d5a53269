//! The otlp sink against a test collector that decodes OTLP/HTTP logs with the official
//! protobuf types (`opentelemetry-proto`: prost for `application/x-protobuf`, its OTLP/JSON
//! serde mapping for `application/json`), as an OpenTelemetry Collector's receiver does.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyV;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde_json::json;

use crate::http_server::http_config;
use crate::util::*;

#[derive(Default)]
struct Received {
    requests: Vec<ExportLogsServiceRequest>,
    content_types: Vec<String>,
    problems: Vec<String>,
}

fn start_collector() -> (String, Arc<Mutex<Received>>, Arc<tiny_http::Server>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let got = Arc::new(Mutex::new(Received::default()));
    let (srv, g) = (server.clone(), got.clone());
    thread::spawn(move || {
        while let Ok(mut req) = srv.recv() {
            let header = |name: &str| {
                req.headers()
                    .iter()
                    .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
                    .map(|h| h.value.as_str().to_owned())
                    .unwrap_or_default()
            };
            let (ctype, encoding) = (header("content-type"), header("content-encoding"));
            let path_ok = req.url() == "/v1/logs" && *req.method() == tiny_http::Method::Post;
            let mut raw = Vec::new();
            let _ = req.as_reader().read_to_end(&mut raw);
            let body = if encoding == "gzip" {
                let mut out = Vec::new();
                let _ = flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out);
                out
            } else {
                raw
            };
            let mut g = g.lock().unwrap();
            if !path_ok {
                g.problems.push(format!("{} {}", req.method(), req.url()));
            }
            let decoded = match ctype.as_str() {
                "application/x-protobuf" => ExportLogsServiceRequest::decode(&body[..]).map_err(|e| e.to_string()),
                "application/json" => serde_json::from_slice(&body).map_err(|e| e.to_string()),
                other => Err(format!("content-type {other:?}")),
            };
            match decoded {
                Ok(r) => g.requests.push(r),
                Err(e) => g.problems.push(e),
            }
            g.content_types.push(ctype.clone());
            drop(g);
            // The answer in the request's encoding, as the spec asks: an empty success.
            let answer = ExportLogsServiceResponse::default();
            let (bytes, ct) = if ctype == "application/json" {
                (serde_json::to_vec(&answer).unwrap(), "application/json")
            } else {
                (answer.encode_to_vec(), "application/x-protobuf")
            };
            let resp = tiny_http::Response::from_data(bytes)
                .with_header(tiny_http::Header::from_bytes(b"Content-Type", ct.as_bytes()).unwrap());
            let _ = req.respond(resp);
        }
    });
    (url, got, server)
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyV> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

#[test]
fn otlp_protobuf_and_json_map_records_onto_the_log_data_model() {
    const N: u64 = 600;
    let dir = TestDir::new("otlp");
    let logs = dir.subdir("logs");
    let base_ns: u64 = 1_767_261_600_000_000_000; // 2026-01-01T10:00:00Z
    let levels = ["debug", "info", "warn", "error"];
    let mut text = String::new();
    for seq in 0..N {
        let time = format!("2026-01-01T10:00:{:02}.{:09}Z", seq / 100, (seq % 100) * 1000);
        text.push_str(
            &json!({"time": time, "level": levels[seq as usize % 4], "msg": format!("o {seq} {}", corpus().body("o", seq)), "user": {"id": seq}, "retry": seq % 2 == 0})
                .to_string(),
        );
        text.push('\n');
    }
    let path = logs.join("svc.log");
    std::fs::write(&path, text).unwrap();

    for (i, (encoding, compression)) in [("protobuf", "none"), ("json", "gzip")].into_iter().enumerate() {
        let (url, got, _server) = start_collector();
        let sub = TestDir::new(&format!("otlp-{i}"));
        let cfg = http_config(
            &sub,
            &[format!("{}/*.log", logs.display())],
            &url,
            &[&format!("compression = \"{compression}\"")],
        )
        .format("json")
        .encoding(encoding);
        let cfg = cfg.sink_type("otlp");
        let mut agent = Agent::start_with(&sub, &cfg, &[], |cmd| {
            cmd.env("POD_NAME", "web-1").env("POD_NAMESPACE", "shop");
        });
        let count = || -> u64 {
            got.lock()
                .unwrap()
                .requests
                .iter()
                .flat_map(|r| &r.resource_logs)
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len() as u64)
                .sum()
        };
        wait_progress(
            Some(&mut agent),
            &format!("{encoding}: every log record"),
            STALL,
            LIMIT,
            || {
                let n = count();
                (n, n >= N)
            },
        )
        .unwrap_or_else(|e| panic!("{e}: {:?}", got.lock().unwrap().problems));
        agent.sigterm();
        assert_eq!(agent.wait_exit(Duration::from_secs(40)), Some(0));
        assert!(!agent.stderr().contains("only in part"));

        let g = got.lock().unwrap();
        assert!(g.problems.is_empty(), "{:?}", g.problems);
        let want_type = if encoding == "json" {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        assert!(g.content_types.iter().all(|c| c == want_type));
        let mut seen = vec![0u32; N as usize];
        for rl in g.requests.iter().flat_map(|r| &r.resource_logs) {
            let res = &rl.resource.as_ref().expect("a resource").attributes;
            assert_eq!(attr(res, "k8s.pod.name"), Some(&AnyV::StringValue("web-1".into())));
            assert_eq!(attr(res, "k8s.namespace.name"), Some(&AnyV::StringValue("shop".into())));
            for sl in &rl.scope_logs {
                assert_eq!(sl.scope.as_ref().unwrap().name, "tailship");
                for r in &sl.log_records {
                    let Some(AnyV::StringValue(body)) = r.body.as_ref().and_then(|b| b.value.as_ref()) else {
                        panic!("body is not a string: {r:?}");
                    };
                    let (tag, seq, rest) = corpus().parse(body).expect("a test line");
                    assert_eq!((tag, rest), ("o", corpus().body("o", seq)));
                    seen[seq as usize] += 1;
                    assert_eq!(
                        r.time_unix_nano,
                        base_ns + (seq / 100) * 1_000_000_000 + (seq % 100) * 1000
                    );
                    assert!(r.observed_time_unix_nano > base_ns, "observed time is set");
                    let level = levels[seq as usize % 4];
                    assert_eq!(r.severity_text, level);
                    assert_eq!(r.severity_number, [5, 9, 13, 17][seq as usize % 4]);
                    assert_eq!(
                        attr(&r.attributes, "log.file.path"),
                        Some(&AnyV::StringValue(path.to_string_lossy().into_owned()))
                    );
                    assert!(
                        matches!(attr(&r.attributes, "log.record.uid"), Some(AnyV::StringValue(id)) if !id.is_empty())
                    );
                    assert_eq!(attr(&r.attributes, "retry"), Some(&AnyV::BoolValue(seq % 2 == 0)));
                    let Some(AnyV::KvlistValue(user)) = attr(&r.attributes, "user") else {
                        panic!("user is not a key/value list: {r:?}");
                    };
                    assert_eq!(attr(&user.values, "id"), Some(&AnyV::IntValue(seq as i64)));
                }
            }
        }
        assert!(seen.iter().all(|n| *n == 1), "{encoding}: every record exactly once");
    }
}
