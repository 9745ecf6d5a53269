//! Benchmarks of the per-byte hot paths: line splitting, and the record path — the adapt
//! stage making the records of each chunk and a sink's encoder writing them (raw lines as
//! NDJSON, raw passthrough, and each format parsed and written as NDJSON: json, combined,
//! syslog, cri, regex, raw with Java multiline joining). Inputs are the real lines of
//! `tests/data`, repeated to about 8 MiB so that their length distribution is kept.
//! Throughput is reported per byte of input (MB/s of log read).
//!
//! Run with `cargo bench --bench hot_paths` (add a filter such as `encode` to run a subset).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tailship::adapt::multiline::Rule;
use tailship::adapt::regex::RegexParser;
use tailship::adapt::stage::{SourcePlan, Worker};
use tailship::budget::Budget;
use tailship::chunk::{Chunk, FileMeta};
use tailship::config::{Encoding, Format, MultilineSettings};
use tailship::metrics::Metrics;
use tailship::ship::encode::{Encoder, Limits};
use tailship::tail::lines::{LineSplitter, Split};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
const RAW_FILES: &[&str] = &[
    "apache-combined/access.log",
    "loghub/Android_2k.log",
    "loghub/Apache_2k.log",
    "loghub/HDFS_2k.log",
    "loghub/Hadoop_2k.log",
    "loghub/HealthApp_2k.log",
    "loghub/Linux_2k.log",
    "loghub/OpenSSH_2k.log",
    "loghub/Spark_2k.log",
    "loghub/Zookeeper_2k.log",
];
const JSON_FILES: &[&str] = &["json/nginxplus-status.log"];
/// The HDFS example's pattern (examples/formats/hdfs.toml).
const HDFS_PATTERN: &str =
    r"^(?P<timestamp>\d{6} \d{6}) (?P<process.pid>\d+) (?P<level>[A-Z]+) (?P<component>[^:]+): (?P<message>.*)$";
const TARGET_BYTES: usize = 8 << 20;
/// The tailer's default read size, and so its largest chunk.
const READ_BYTES: usize = 256 << 10;
const MAX_LINE_BYTES: usize = 1 << 20;
/// A sink's default batch limits.
const MAX_EVENTS: usize = 1000;
const MAX_BATCH_BYTES: usize = 1 << 20;

/// The files' lines, concatenated and repeated to about `TARGET_BYTES`.
fn corpus(files: &[&str]) -> Vec<u8> {
    let mut once = Vec::new();
    for f in files {
        let path = format!("{CORPUS}/{f}");
        let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        once.extend_from_slice(&bytes);
    }
    let mut data = Vec::with_capacity(TARGET_BYTES + once.len());
    while data.len() < TARGET_BYTES {
        data.extend_from_slice(&once);
    }
    data
}

/// Splits `data` as the tailer does: 256 KiB appends through a `LineSplitter`.
fn split_all(data: &[u8], splits: &mut Vec<Split>) {
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    let mut buf = BytesMut::with_capacity(READ_BYTES * 2);
    for read in data.chunks(READ_BYTES) {
        buf.extend_from_slice(read);
        splitter.split(&mut buf, splits);
    }
    splits.extend(splitter.flush(&mut buf));
}

/// The chunks the tailer would hand on for `data`.
fn chunks(data: &[u8]) -> Vec<Arc<Chunk>> {
    let budget = Budget::new(usize::MAX / 2);
    let file = Arc::new(FileMeta {
        uid: 1,
        source: 0,
        path: Arc::from("/var/log/app/access.log"),
        path_json: "\"/var/log/app/access.log\"".into(),
        id_prefix: "3f2a9c0d5e7b1a64-".into(),
    });
    let mut splits = Vec::new();
    split_all(data, &mut splits);
    let mut start = 0;
    splits
        .into_iter()
        .map(|s| {
            let len = s.data.len();
            let c = Chunk {
                file: Arc::clone(&file),
                start,
                data: s.data,
                observed_ns: 1_795_614_680_123_456_789,
                head_continues: s.head_continues,
                tail_truncated: s.tail_truncated,
                budget: budget.take(len),
            };
            start += len as u64;
            Arc::new(c)
        })
        .collect()
}

/// Makes the records of every chunk (the adapt stage) and encodes them the way a sink does:
/// batches of `MAX_EVENTS` / `MAX_BATCH_BYTES`.
fn encode_all(worker: &mut Worker, encoder: &mut Encoder, chunks: &[Arc<Chunk>], out: &mut Vec<u8>) -> usize {
    let mut records = 0;
    let mut in_batch = 0;
    for c in chunks {
        let recs = worker.process(Arc::clone(c));
        let mut from = 0;
        while from < encoder.end_of(&recs) {
            let limits = Limits {
                max_events: MAX_EVENTS - in_batch,
                max_bytes: MAX_BATCH_BYTES,
            };
            let (next, n) = encoder.encode(&recs, from, out, limits);
            from = next;
            records += n;
            in_batch += n;
            if in_batch >= MAX_EVENTS || out.len() >= MAX_BATCH_BYTES {
                black_box(&out[..]);
                out.clear();
                in_batch = 0;
            }
        }
    }
    records
}

fn bench_split(c: &mut Criterion) {
    let data = corpus(RAW_FILES);
    let mut g = c.benchmark_group("split");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20);
    let mut splits = Vec::new();
    g.bench_function("lines_256k_appends", |b| {
        b.iter(|| {
            splits.clear();
            split_all(black_box(&data), &mut splits);
            splits.len()
        })
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut resource = BTreeMap::new();
    resource.insert("k8s.pod.name".to_string(), "webapp-7d9f8b6c5-x2x9q".to_string());
    resource.insert("k8s.namespace.name".to_string(), "default".to_string());
    resource.insert("k8s.container.name".to_string(), "webapp".to_string());

    let raw = corpus(RAW_FILES);
    let raw_chunks = chunks(&raw);
    let json = corpus(JSON_FILES);
    let json_chunks = chunks(&json);

    let access = corpus(&["apache-combined/access.log"]);
    let access_chunks = chunks(&access);
    let syslog = corpus(&["loghub/Linux_2k.log", "loghub/OpenSSH_2k.log"]);
    let syslog_chunks = chunks(&syslog);
    let hdfs = corpus(&["loghub/HDFS_2k.log"]);
    let hdfs_chunks = chunks(&hdfs);
    let kafka = corpus(&["java-multiline/kafka-server.log", "java-multiline/kafka-controller.log"]);
    let kafka_chunks = chunks(&kafka);
    // The raw corpus as containerd writes it under /var/log/pods.
    let mut cri = Vec::with_capacity(raw.len() * 3 / 2);
    for (i, line) in raw.split_inclusive(|b| *b == b'\n').enumerate() {
        cri.extend_from_slice(b"2026-11-25T12:00:00.123456789Z ");
        cri.extend_from_slice(if i % 8 == 0 { b"stderr F " } else { b"stdout F " });
        cri.extend_from_slice(line);
    }
    let cri_chunks = chunks(&cri);
    let hdfs_regex = RegexParser::new(HDFS_PATTERN, Some("%y%m%d %H%M%S")).unwrap();
    let mut java = SourcePlan::from(Format::Raw);
    java.adapter.multiline = Some(MultilineSettings {
        rule: Rule::preset("java").unwrap(),
        max_lines: 500,
        max_bytes: 1 << 20,
        timeout: Duration::from_secs(1),
    });

    // (name, sink encoding, how the source's records are made, input bytes, its chunks)
    type Case<'c> = (&'static str, Encoding, SourcePlan, usize, &'c Vec<Arc<Chunk>>);
    let cases: Vec<Case> = vec![
        (
            "raw_ndjson",
            Encoding::Ndjson,
            Format::Raw.into(),
            raw.len(),
            &raw_chunks,
        ),
        (
            "raw_passthrough",
            Encoding::Raw,
            Format::Raw.into(),
            raw.len(),
            &raw_chunks,
        ),
        (
            "json_ndjson",
            Encoding::Ndjson,
            Format::Json.into(),
            json.len(),
            &json_chunks,
        ),
        (
            "combined_ndjson",
            Encoding::Ndjson,
            Format::Combined.into(),
            access.len(),
            &access_chunks,
        ),
        (
            "syslog_ndjson",
            Encoding::Ndjson,
            Format::Syslog.into(),
            syslog.len(),
            &syslog_chunks,
        ),
        (
            "cri_ndjson",
            Encoding::Ndjson,
            Format::Cri.into(),
            cri.len(),
            &cri_chunks,
        ),
        (
            "regex_hdfs_ndjson",
            Encoding::Ndjson,
            Format::Regex(Arc::new(hdfs_regex)).into(),
            hdfs.len(),
            &hdfs_chunks,
        ),
        (
            "raw_java_multiline_ndjson",
            Encoding::Ndjson,
            java,
            kafka.len(),
            &kafka_chunks,
        ),
    ];
    let mut g = c.benchmark_group("encode");
    g.sample_size(20);
    for (name, encoding, plan, input_bytes, chunks) in cases {
        g.throughput(Throughput::Bytes(input_bytes as u64));
        let joins = plan.adapter.multiline.is_some();
        let metrics = Arc::new(Metrics::new(&["bench".to_string()], &[], Budget::new(1 << 20)));
        let mut worker = Worker::new(
            Arc::from(vec![plan]),
            &resource,
            Budget::new(usize::MAX / 2),
            Arc::clone(&metrics),
        );
        let mut encoder = Encoder::new(encoding);
        let mut out = Vec::with_capacity(MAX_BATCH_BYTES * 2);
        // The figures mean something only if every line became a record (or, joining, was
        // part of one) and parsed.
        let lines = chunks
            .iter()
            .map(|c| memchr::memchr_iter(b'\n', &c.data).count())
            .sum::<usize>();
        let records = encode_all(&mut worker, &mut encoder, chunks, &mut out);
        if joins {
            assert!(
                records > 0 && records < lines,
                "{name}: {records} events of {lines} lines"
            );
        } else {
            assert_eq!(records, lines, "{name}");
        }
        let errors = metrics.sources[0]
            .parse_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            + metrics.invalid_utf8_lines.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(errors, 0, "{name}");
        out.clear();
        g.bench_function(name, |b| {
            b.iter(|| encode_all(&mut worker, &mut encoder, chunks, &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_split, bench_encode);
criterion_main!(benches);
