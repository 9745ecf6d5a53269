//! The adapt stage through a worker: chunks in, records out, written as NDJSON by the sink
//! encoder so the assertions read the record as a collector would.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::budget::Budget;
use crate::config::Encoding;
use crate::ship::encode::{Encoder, Limits};

const OBSERVED: i64 = 1_795_614_680_123_456_789;
const OBSERVED_TEXT: &str = "2026-11-25T13:51:20.123456789Z";

/// A chunk of `data` at `start` in file `uid` of source 1 at `path`.
fn file_chunk(path: &str, uid: u64, data: &[u8], start: u64) -> Arc<Chunk> {
    let path_json = serde_json::to_string(path).unwrap();
    Arc::new(Chunk {
        file: Arc::new(FileMeta {
            uid,
            source: 1,
            path: Arc::from(path),
            path_json: path_json.into(),
            id_prefix: format!("{uid:016x}-").into(),
        }),
        start,
        data: Bytes::copy_from_slice(data),
        observed_ns: OBSERVED,
        head_continues: false,
        tail_truncated: false,
        budget: Budget::new(1 << 20).take(data.len()),
    })
}

fn plan(format: Format, multiline: Option<&str>) -> SourcePlan {
    let mut p = SourcePlan::from(format);
    p.adapter.multiline = multiline.map(|preset| crate::config::MultilineSettings {
        rule: crate::adapt::multiline::Rule::preset(preset).unwrap(),
        max_lines: 500,
        max_bytes: 1 << 20,
        timeout: Duration::from_millis(50),
    });
    p
}

/// A worker for source 1 (source 0 is `raw`), and an NDJSON encoder for what it makes.
struct Harness {
    worker: Worker,
    encoder: Encoder,
    metrics: Arc<Metrics>,
}

impl Harness {
    fn new(p: SourcePlan) -> Harness {
        Harness::with_resource(p, &BTreeMap::new())
    }

    fn with_resource(p: SourcePlan, resource: &BTreeMap<String, String>) -> Harness {
        let metrics = Arc::new(Metrics::new(
            &["zero".to_string(), "one".to_string()],
            &[],
            Budget::new(1 << 20),
        ));
        Harness {
            worker: Worker::new(
                Arc::from(vec![Format::Raw.into(), p]),
                resource,
                Budget::new(1 << 30),
                Arc::clone(&metrics),
            ),
            encoder: Encoder::new(Encoding::Ndjson),
            metrics,
        }
    }

    fn write(&mut self, records: &Records, out: &mut Vec<u8>) {
        let all = Limits {
            max_events: usize::MAX,
            max_bytes: usize::MAX,
        };
        let (pos, _) = self.encoder.encode(records, 0, out, all);
        assert_eq!(pos, records.end_position());
    }

    /// Processes every chunk, one after the other; returns the NDJSON and the last batch.
    fn feed(&mut self, chunks: &[Arc<Chunk>]) -> (Vec<u8>, Option<Records>) {
        let mut out = Vec::new();
        let mut last = None;
        for c in chunks {
            let r = self.worker.process(Arc::clone(c));
            self.write(&r, &mut out);
            last = Some(r);
        }
        (out, last)
    }

    /// Flushes what is due at `now` (everything when `all`); returns the NDJSON and batches.
    fn flush(&mut self, now: Instant, all: bool, out: &mut Vec<u8>) -> Vec<Records> {
        let batches = self.worker.flush_due(now, all);
        for r in &batches {
            self.write(r, out);
        }
        batches
    }

    fn lines(&self) -> u64 {
        self.metrics.lines_read.load(Ordering::Relaxed)
    }

    fn parse_errors(&self) -> u64 {
        self.metrics.sources[1].parse_errors.load(Ordering::Relaxed)
    }

    fn bad_timestamps(&self) -> u64 {
        self.metrics.sources[1].bad_timestamps.load(Ordering::Relaxed)
    }
}

fn values(out: &[u8]) -> Vec<Value> {
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l))))
        .collect()
}

const CRI: &[u8] = b"2026-11-25T12:00:00.000000001Z stdout P first \n\
2026-11-25T12:00:00.000000002Z stderr F an error\n\
2026-11-25T12:00:00.000000003Z stdout P second \n\
2026-11-25T12:00:00.000000004Z stdout F third\n\
2026-11-25T12:00:00.000000005Z stdout F alone\n";

#[test]
fn cri_pieces_join_across_chunks_and_hold_the_checkpoint() {
    let mut h = Harness::new(Format::Cri.into());
    // Cut after the first P piece and the stderr line: the stdout message is pending.
    let cut = CRI.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).unwrap().0 + 1;
    let a = file_chunk("/l/c.log", 1, &CRI[..cut], 100);
    let b = file_chunk("/l/c.log", 1, &CRI[cut..], 100 + cut as u64);
    let (out_a, batch_a) = h.feed(std::slice::from_ref(&a));
    let recs = values(&out_a);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["message"], "an error");
    assert_eq!(recs[0]["stream"], "stderr");
    // The checkpoint may not pass the pending message's first piece, not even with the
    // stderr record delivered.
    let batch_a = batch_a.unwrap();
    assert_eq!(batch_a.end.offset, 100);
    assert_eq!(batch_a.mark_at(1).unwrap().offset, 100);
    let (out_b, batch_b) = h.feed(std::slice::from_ref(&b));
    let recs = values(&out_b);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["message"], "first second third");
    assert_eq!(recs[0]["stream"], "stdout");
    assert_eq!(recs[0]["timestamp"], "2026-11-25T12:00:00.000000001Z");
    assert_eq!(recs[0]["offset"], 100);
    assert_eq!(recs[0]["id"], "0000000000000001-100");
    assert_eq!(recs[1]["message"], "alone");
    let batch_b = batch_b.unwrap();
    assert_eq!(batch_b.end.offset, b.end());
    // After the joined message the checkpoint may pass it, but not the line after it.
    let after_third = (CRI.len() - b"2026-11-25T12:00:00.000000005Z stdout F alone\n".len()) as u64 + 100;
    assert_eq!(batch_b.mark_at(1).unwrap().offset, after_third);
    assert_eq!(h.lines(), 5);
}

#[test]
fn docker_split_line_at_eof_is_flushed_marked_partial() {
    let data = b"{\"log\":\"whole\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T12:00:00Z\"}\n\
{\"log\":\"piece one \",\"stream\":\"stdout\",\"time\":\"2026-11-25T12:00:01Z\"}\n";
    let mut h = Harness::new(Format::Docker.into());
    let c = file_chunk("/l/d.log", 2, data, 0);
    let (out, batch) = h.feed(std::slice::from_ref(&c));
    assert_eq!(values(&out).len(), 1);
    let first_len = data.iter().position(|b| *b == b'\n').unwrap() as u64 + 1;
    assert_eq!(batch.unwrap().end.offset, first_len);
    assert!(h.worker.next_due().is_some());
    let mut out = Vec::new();
    let flushed = h.flush(Instant::now(), true, &mut out);
    assert_eq!(flushed.len(), 1);
    let recs = values(&out);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["message"], "piece one ");
    assert_eq!(recs[0]["fields"]["partial"], true);
    assert_eq!(recs[0]["offset"], first_len);
    assert_eq!((flushed[0].context.file.uid, flushed[0].end.offset), (2, c.end()));
    assert!(flushed[0].chunk.is_none(), "flushed text lives in the arena");
    assert!(h.worker.next_due().is_none());
}

const JAVA: &str = "2026-11-25 12:00:00,001 INFO started\n\
2026-11-25 12:00:01,002 ERROR failed\n\
java.lang.IllegalStateException: boom\n\
\tat a.b.C.d(C.java:1)\n\
\t... 3 more\n\
2026-11-25 12:00:02,003 WARN next\n";

#[test]
fn java_stack_traces_join_into_their_event_for_any_chunking() {
    let re = crate::adapt::regex::RegexParser::new(r"^(?P<timestamp>\S+ \S+) (?P<level>\w+) (?P<message>.*)$", None)
        .unwrap();
    for format in [Format::Raw, Format::Regex(Arc::new(re))] {
        for cut in 1..JAVA.len() {
            let Some(nl) = JAVA[..cut].rfind('\n') else { continue };
            let cut = nl + 1;
            let mut h = Harness::new(plan(format.clone(), Some("java")));
            let chunks = [
                file_chunk("/l/j.log", 3, &JAVA.as_bytes()[..cut], 0),
                file_chunk("/l/j.log", 3, &JAVA.as_bytes()[cut..], cut as u64),
            ];
            let (mut out, _) = h.feed(&chunks);
            h.flush(Instant::now(), true, &mut out);
            let recs = values(&out);
            assert_eq!(recs.len(), 3, "{format:?} cut {cut}");
            let m = recs[1]["message"].as_str().unwrap();
            assert!(m.ends_with("boom\n\tat a.b.C.d(C.java:1)\n\t... 3 more"), "{m}");
            assert_eq!(recs[1]["offset"], 37);
            if matches!(format, Format::Regex(_)) {
                assert_eq!(recs[1]["level"], "error");
                assert!(m.starts_with("failed\njava.lang"), "{m}");
                assert_eq!(recs[2]["level"], "warn");
            } else {
                assert!(m.starts_with("2026-11-25 12:00:01,002 ERROR failed\n"), "{m}");
            }
            assert_eq!(h.lines(), 6);
        }
    }
}

#[test]
fn a_quiet_file_ships_its_last_event_after_the_timeout() {
    let mut h = Harness::new(plan(Format::Raw, Some("java")));
    let c = file_chunk("/l/j.log", 4, JAVA.as_bytes(), 0);
    let (out, batch) = h.feed(std::slice::from_ref(&c));
    assert_eq!(values(&out).len(), 2);
    let last = JAVA.trim_end().rfind('\n').unwrap() as u64 + 1;
    assert_eq!(batch.unwrap().end.offset, last);
    let due = h.worker.next_due().unwrap();
    let mut out = Vec::new();
    assert!(h.flush(due - Duration::from_millis(10), false, &mut out).is_empty());
    assert_eq!(h.flush(due, false, &mut out).len(), 1);
    assert_eq!(values(&out)[0]["message"], "2026-11-25 12:00:02,003 WARN next");
}

#[test]
fn a_stack_trace_cut_by_rotation_loses_no_line() {
    // The trace starts in the rotated file and continues at the top of the new one.
    let old = b"2026-11-25 12:00:01,002 ERROR failed\njava.lang.IllegalStateException: boom\n";
    let new = b"\tat a.b.C.d(C.java:1)\n2026-11-25 12:00:02,003 INFO next\n";
    let mut h = Harness::new(plan(Format::Raw, Some("java")));
    let chunks = [
        file_chunk("/l/app.log.1", 5, old, 0),
        file_chunk("/l/app.log", 6, new, 0),
    ];
    let (mut out, _) = h.feed(&chunks);
    h.flush(Instant::now(), true, &mut out);
    let recs = values(&out);
    let messages: Vec<&str> = recs.iter().map(|r| r["message"].as_str().unwrap()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages.contains(&"2026-11-25 12:00:01,002 ERROR failed\njava.lang.IllegalStateException: boom"));
    let cont = recs.iter().find(|r| r["message"] == "\tat a.b.C.d(C.java:1)").unwrap();
    assert_eq!(cont["fields"]["continuation"], true);
    assert_eq!(cont["file"], "/l/app.log");
}

#[test]
fn parsed_fields_parse_errors_and_static_fields() {
    let mut p = SourcePlan::from(Format::Logfmt);
    p.static_fields = Arc::from(vec![("team".to_string(), "core".to_string())]);
    let mut h = Harness::new(p);
    let c = file_chunk(
        "/l/f.log",
        7,
        b"level=warn msg=\"disk \\\"low\\\"\" free=12 ratio=0.5\n=broken \"\n",
        0,
    );
    let (out, _) = h.feed(std::slice::from_ref(&c));
    let recs = values(&out);
    assert_eq!(recs[0]["level"], "warn");
    assert_eq!(recs[0]["message"], "disk \"low\"");
    assert_eq!(recs[0]["fields"]["team"], "core");
    assert!(recs[0]["fields"]["free"] == json!(12) || recs[0]["fields"]["free"] == json!("12"));
    assert_eq!(recs[1]["message"], "=broken \"");
    assert!(recs[1]["fields"]["parse_error"]
        .as_str()
        .unwrap()
        .starts_with("logfmt: "));
    assert_eq!(recs[1]["fields"]["team"], "core");
    assert_eq!(h.parse_errors(), 1);
}

#[test]
fn nested_fields_stay_nested_and_a_parse_error_follows_them() {
    // Syslog structured data is a map of maps; a line that does not parse keeps its text.
    let mut h = Harness::new(Format::Syslog.into());
    let line = b"<165>1 2026-11-25T12:00:00.000Z host app 42 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App\"] hello\nnot syslog\n";
    let (out, _) = h.feed(&[file_chunk("/l/s.log", 13, line, 0)]);
    let recs = values(&out);
    assert_eq!(recs[0]["message"], "hello");
    let sd = recs[0]["fields"].as_object().unwrap();
    let nested = sd
        .values()
        .find(|v| v.is_object())
        .unwrap_or_else(|| panic!("a nested map: {sd:?}"));
    assert!(nested.to_string().contains("eventSource"), "{nested}");
    assert_eq!(recs[1]["message"], "not syslog");
    assert!(recs[1]["fields"]["parse_error"].as_str().unwrap().starts_with("syslog"));
}

#[test]
fn unreadable_times_keep_the_line_use_the_observed_time_and_are_counted() {
    let re = crate::adapt::regex::RegexParser::new(r"^(?P<timestamp>\S+) (?P<message>.*)$", None).unwrap();
    for format in [Format::Json, Format::Logfmt, Format::Regex(Arc::new(re))] {
        let line: &[u8] = match format {
            Format::Json => b"{\"time\":\"yesterday\",\"msg\":\"m\"}\n",
            Format::Logfmt => b"ts=yesterday msg=m\n",
            _ => b"yesterday m\n",
        };
        let mut h = Harness::new(format.clone().into());
        let (out, _) = h.feed(&[file_chunk("/l/t.log", 12, line, 0)]);
        let rec = &values(&out)[0];
        assert_eq!(rec["timestamp"], OBSERVED_TEXT, "{format:?}");
        assert_eq!(rec["message"], "m", "{format:?}");
        let kept = rec["fields"].as_object().unwrap();
        assert!(kept.values().any(|v| v == "yesterday"), "{format:?}: {rec}");
        assert_eq!(h.bad_timestamps(), 1, "{format:?}");
        assert_eq!(h.parse_errors(), 0);
    }
}

#[test]
fn auto_detects_per_file_and_reports_it() {
    let mut h = Harness::new(Format::Auto.into());
    let cri = file_chunk("/l/a.log", 8, CRI, 0);
    let json_lines = file_chunk("/l/b.log", 9, b"{\"msg\":\"hi\",\"level\":\"error\"}\n", 0);
    let (out, _) = h.feed(&[cri, json_lines]);
    let recs = values(&out);
    assert_eq!(recs.last().unwrap()["message"], "hi");
    assert_eq!(recs.last().unwrap()["level"], "error");
    assert_eq!(recs[0]["stream"], "stderr");
    let text = h.metrics.render();
    assert!(
        text.contains(r#"tailship_auto_detected_files_total{source="one",format="cri"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"tailship_auto_detected_files_total{source="one",format="json"} 1"#));
}

#[test]
fn pod_log_paths_add_kubernetes_resource() {
    let mut p = SourcePlan::from(Format::Cri);
    p.kubernetes_path_metadata = true;
    let resource: BTreeMap<String, String> = [("k8s.node.name".to_string(), "node-1".to_string())].into();
    let mut h = Harness::with_resource(p, &resource);
    let c = file_chunk(
        "/var/log/pods/shop_web-1_0f1e-aa/nginx/0.log",
        10,
        b"2026-11-25T12:00:00Z stdout F hello\n",
        0,
    );
    let (out, _) = h.feed(&[c]);
    assert_eq!(
        values(&out)[0]["resource"],
        json!({"k8s.container.name": "nginx", "k8s.namespace.name": "shop", "k8s.node.name": "node-1",
               "k8s.pod.name": "web-1", "k8s.pod.uid": "0f1e-aa"})
    );
}

#[test]
fn a_renamed_file_names_its_new_path_and_keeps_its_state() {
    let mut h = Harness::new(plan(Format::Raw, Some("java")));
    let a = file_chunk("/l/app.log", 14, b"2026-11-25 12:00:01,002 ERROR failed\n", 0);
    // Same file (uid), new name: the tailer gives it a new `FileMeta`.
    let b = file_chunk("/l/app.log.1", 14, b"\tat a.b.C.d(C.java:1)\n", 37);
    let (mut out, _) = h.feed(&[a, b]);
    h.flush(Instant::now(), true, &mut out);
    let recs = values(&out);
    assert_eq!(recs.len(), 1, "the trace stays one event across the rename");
    assert_eq!(recs[0]["file"], "/l/app.log.1");
}

proptest! {
    #[test]
    fn cri_and_docker_joining_ignores_chunk_boundaries(
        pieces in proptest::collection::vec((any::<bool>(), any::<bool>(), "[a-z \"\\\\]{0,12}"), 1..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        docker in any::<bool>(),
    ) {
        let mut data = Vec::new();
        for (i, (stderr, partial, text)) in pieces.iter().enumerate() {
            let stream = if *stderr { "stderr" } else { "stdout" };
            if docker {
                let log = if *partial { text.clone() } else { format!("{text}\n") };
                let line = json!({"log": log, "stream": stream, "time": format!("2026-11-25T12:00:{:02}Z", i % 60)});
                data.extend_from_slice(line.to_string().as_bytes());
            } else {
                let tag = if *partial { "P" } else { "F" };
                data.extend_from_slice(format!("2026-11-25T12:00:{:02}Z {stream} {tag} {text}", i % 60).as_bytes());
            }
            data.push(b'\n');
        }
        let line_ends: Vec<usize> = data.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| line_ends[c.index(line_ends.len())]).collect();
        bounds.push(0);
        bounds.push(data.len());
        bounds.sort_unstable();
        bounds.dedup();
        let format = if docker { Format::Docker } else { Format::Cri };
        let run = |bounds: &[usize]| {
            let mut h = Harness::new(format.clone().into());
            let chunks: Vec<_> = bounds.windows(2).map(|w| file_chunk("/l/p.log", 11, &data[w[0]..w[1]], w[0] as u64)).collect();
            let (mut out, _) = h.feed(&chunks);
            h.flush(Instant::now(), true, &mut out);
            (values(&out), h.parse_errors())
        };
        let (whole, errors) = run(&[0, data.len()]);
        prop_assert_eq!(errors, 0);
        let (cut, _) = run(&bounds);
        prop_assert_eq!(&whole, &cut);
        // Every piece's text is in some message, in order per stream.
        let joined: String = whole.iter().map(|r| r["message"].as_str().unwrap_or("").trim_end_matches('\n').to_owned()).collect();
        let texts: String = pieces.iter().map(|p| p.2.as_str()).collect();
        prop_assert_eq!(joined.len(), texts.len());
    }
}

#[test]
fn strict_sources_reject_what_lenient_ones_salvage_and_salvages_are_counted() {
    // RFC 3164 without a hostname: lenient reads the tag; strict wants a hostname there.
    let line = b"<133>Jun 13 16:33:35 haproxy[73411]: Proxy sticky-servers started.\n";
    let mut lenient = Harness::new(Format::Syslog.into());
    let (out, _) = lenient.feed(&[file_chunk("/l/h.log", 15, line, 0)]);
    let rec = &values(&out)[0];
    assert_eq!(rec["message"], "Proxy sticky-servers started.");
    assert_eq!(lenient.parse_errors(), 0);
    let mut p = SourcePlan::from(Format::Syslog);
    p.adapter.strict = true;
    let mut strict = Harness::new(p);
    let (out, _) = strict.feed(&[file_chunk("/l/h.log", 16, line, 0)]);
    let rec = &values(&out)[0];
    assert!(rec["fields"]["parse_error"].is_string(), "{rec}");
    assert_eq!(strict.parse_errors(), 1);
    // A broken structured-data part: the header is kept, the line counted as a warning.
    let broken = b"<165>1 2026-11-25T12:00:00.000Z host app 42 ID47 [x@1 eventSource= \"App\"] msg\n";
    let mut h = Harness::new(Format::Syslog.into());
    let (out, _) = h.feed(&[file_chunk("/l/b.log", 17, broken, 0)]);
    let rec = &values(&out)[0];
    assert!(rec["fields"]["parse_warning"].is_string(), "{rec}");
    assert_eq!(
        (
            h.parse_errors(),
            h.metrics.sources[1].parse_warnings.load(Ordering::Relaxed)
        ),
        (0, 1)
    );
}

#[test]
fn a_table_is_charged_to_the_budget_until_its_records_are_dropped() {
    let budget = Budget::new(1 << 30);
    let metrics = Arc::new(Metrics::new(
        &["zero".to_string(), "one".to_string()],
        &[],
        Arc::clone(&budget),
    ));
    let mut w = Worker::new(
        Arc::from(vec![Format::Raw.into(), Format::Logfmt.into()]),
        &BTreeMap::new(),
        Arc::clone(&budget),
        metrics,
    );
    let c = file_chunk("/l/m.log", 18, b"level=info msg=a k=1\nlevel=warn msg=b k=2\n", 0);
    let records = w.process(c);
    let Body::Table(t) = &records.body else {
        panic!("a table")
    };
    assert!(t.heap_bytes() > 0);
    // The test chunk holds its bytes against a budget of its own.
    assert_eq!(budget.used(), t.heap_bytes(), "the table's own memory");
    drop(records);
    assert_eq!(budget.used(), 0);
}

/// Files each holding a java trace that never ends: what they join is charged to the budget,
/// and once it passes a quarter of it the oldest are cut — marked `truncated`, their next
/// lines joined as a `continuation` — and every line comes out once, in order.
#[test]
fn events_being_joined_are_charged_and_the_oldest_cut_past_their_share() {
    let budget = Budget::new(64 << 10);
    let metrics = Arc::new(Metrics::new(
        &["zero".to_string(), "one".to_string()],
        &[],
        Arc::clone(&budget),
    ));
    let mut w = Worker::new(
        Arc::from(vec![Format::Raw.into(), plan(Format::Raw, Some("java"))]),
        &BTreeMap::new(),
        Arc::clone(&budget),
        Arc::clone(&metrics),
    );
    let mut encoder = Encoder::new(Encoding::Ndjson);
    let mut out = Vec::new();
    let mut write = |r: &Records, out: &mut Vec<u8>| {
        let all = Limits {
            max_events: usize::MAX,
            max_bytes: usize::MAX,
        };
        encoder.encode(r, 0, out, all);
    };
    let pad = "x".repeat(1000);
    let mut at = [0u64; 4];
    for round in 0..8 {
        for (f, start) in at.iter_mut().enumerate() {
            let mut data = String::new();
            if round == 0 {
                data.push_str(&format!("Exception f{f}\n"));
            }
            for n in 0..4 {
                data.push_str(&format!("\tat f{f} {} {pad}\n", round * 4 + n));
            }
            let c = file_chunk(&format!("/l/f{f}.log"), 100 + f as u64, data.as_bytes(), *start);
            *start += data.len() as u64;
            let r = w.process(c);
            write(&r, &mut out);
            for r in w.cut_over_cap() {
                write(&r, &mut out);
            }
            assert!(
                budget.joining() <= budget.joining_cap() + 8 * 1024,
                "joins hold {} past their share {}",
                budget.joining(),
                budget.joining_cap()
            );
        }
    }
    assert!(budget.joining() > 0, "what is being joined is charged");
    for r in w.flush_due(Instant::now(), true) {
        write(&r, &mut out);
    }
    assert_eq!(budget.joining(), 0, "flushed joins hold nothing");
    let cut = metrics.joined_events_cut.load(Ordering::Relaxed);
    assert!(cut > 0, "some events were cut");
    let records = values(&out);
    let truncated = records
        .iter()
        .filter(|v| v["fields"]["truncated"] == json!(true))
        .count();
    let continuing = records
        .iter()
        .filter(|v| v["fields"]["continuation"] == json!(true))
        .count();
    assert_eq!(truncated as u64, cut, "each cut event is marked truncated");
    // A cut after a file's last chunk has no rest to follow it.
    assert!(
        continuing > 0 && continuing as u64 <= cut,
        "the rest of a cut event is a continuation"
    );
    for f in 0..4 {
        let lines: Vec<String> = records
            .iter()
            .filter(|v| v["file"] == json!(format!("/l/f{f}.log")))
            .flat_map(|v| {
                v["message"]
                    .as_str()
                    .unwrap()
                    .split('\n')
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut want = vec![format!("Exception f{f}")];
        want.extend((0..32).map(|n| format!("\tat f{f} {n} {pad}")));
        assert_eq!(lines, want, "file {f}: every line once, in order");
    }
}
