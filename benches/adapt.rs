//! Adapter-stage throughput, one parser per benchmark, on one core: MB/s of log read (each
//! line's bytes plus its newline) and records/s.
//!
//! Inputs are the real lines of `tests/data`. Formats the corpus has no file of are
//! built from its real lines so their length distribution is kept: `cri` and `docker` wrap the
//! access-log and Kafka lines as containerd / Docker would, `logfmt` and `klog` rewrite the
//! Hadoop and HDFS lines (time, level, component, message) into those layouts. `regex` runs a
//! combined-log pattern on the access log, to compare with the hand-written `combined` parser,
//! and the HDFS example pattern.
//!
//! Run with `cargo bench --bench adapt` (add a filter such as `syslog` for a subset).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tailship::adapt::join::PartialJoiner;
use tailship::adapt::multiline::{MultilineJoiner, Rule};
use tailship::adapt::regex::RegexParser;
use tailship::adapt::{access, cri, docker, json, klog, logfmt, syslog, Parsed};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
const NOW: i64 = 1_798_761_599_000_000_000; // 2026-12-31T23:59:59Z

const COMBINED_PATTERN: &str = r#"^(?P<client.address>[^ ]+) (?P<ident>[^ ]+) (?P<user.name>[^ ]+) \[(?P<timestamp>[^\]]+)\] "(?P<http.request.method>[^ ]+) (?P<url.path>[^ ]+) (?P<proto>[^"]*)" (?P<status>[0-9]{3}) (?P<bytes>[0-9]+|-)(?: "(?P<referer>[^"]*)" "(?P<user_agent.original>[^"]*)")?"#;
const HDFS_PATTERN: &str =
    r"^(?P<timestamp>\d{6} \d{6}) (?P<process.pid>\d+) (?P<level>[A-Z]+) (?P<component>[^:]+): (?P<message>.*)$";

/// The lines of a file of `tests/data`; panics when it is missing.
fn read_lines(rel: &str) -> Vec<String> {
    let path = Path::new(CORPUS).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect()
}

fn bytes(lines: &[String]) -> u64 {
    lines.iter().map(|l| l.len() as u64 + 1).sum()
}

struct Inputs {
    combined: Vec<String>,
    syslog: Vec<String>,
    syslog_pri: Vec<String>,
    cri: Vec<String>,
    docker: Vec<String>,
    logfmt: Vec<String>,
    klog: Vec<String>,
    hdfs: Vec<String>,
    json: Vec<String>,
    kafka: Vec<String>,
}

fn inputs() -> Option<Inputs> {
    let combined = read_lines("apache-combined/access.log");
    let kafka = [
        read_lines("java-multiline/kafka-server.log"),
        read_lines("java-multiline/kafka-controller.log"),
    ]
    .concat();
    let mut syslog = read_lines("loghub/Linux_2k.log");
    syslog.extend(read_lines("loghub/OpenSSH_2k.log"));
    let syslog_pri = syslog
        .iter()
        .enumerate()
        .map(|(i, l)| format!("<{}>{l}", 8 + i % 184))
        .collect();
    let container: Vec<&String> = combined.iter().chain(&kafka).collect();
    let cri = container
        .iter()
        .enumerate()
        .map(|(i, l)| {
            format!(
                "2026-11-25T13:51:{:02}.{:09}Z {} F {l}",
                i % 60,
                i * 7919 % 1_000_000_000,
                if i % 3 == 0 { "stderr" } else { "stdout" }
            )
        })
        .collect();
    let docker = container
        .iter()
        .enumerate()
        .map(|(i, l)| {
            serde_json::json!({"log": format!("{l}\n"), "stream": "stdout", "time": format!("2026-11-25T13:51:{:02}.{:09}Z", i % 60, i * 7919 % 1_000_000_000)})
                .to_string()
        })
        .collect();
    let hadoop = RegexParser::new(
        r"^(?P<timestamp>\S+ \S+) (?P<level>[A-Z]+) \[(?P<thread>[^\]]*)\] (?P<component>[^:]+): (?P<message>.*)$",
        None,
    )
    .ok()?;
    let mut logfmt = Vec::new();
    for l in read_lines("loghub/Hadoop_2k.log") {
        let Ok(p) = hadoop.parse(&l, NOW) else { continue };
        let msg = p.message.replace('\\', "\\\\").replace('"', "\\\"");
        let ts = {
            let mut v = Vec::new();
            tailship::timefmt::rfc3339_nanos(p.timestamp_ns.unwrap_or(0), &mut v);
            String::from_utf8(v).unwrap()
        };
        let level = p.level.map_or("info", |l| l.as_str());
        let get = |k: &str| p.field(k).and_then(|v| v.as_str()).unwrap_or("").replace(' ', "_");
        logfmt.push(format!(
            r#"ts={ts} level={level} thread={} component={} msg="{msg}""#,
            get("thread"),
            get("component")
        ));
    }
    let hdfs = read_lines("loghub/HDFS_2k.log");
    let hdfs_parser = RegexParser::new(HDFS_PATTERN, Some("%y%m%d %H%M%S")).ok()?;
    let klog = hdfs
        .iter()
        .filter_map(|l| {
            let p = hdfs_parser.parse(l, NOW).ok()?;
            let letter = match p.level.map(|l| l.as_str()) {
                Some("warn") => 'W',
                Some("error") => 'E',
                _ => 'I',
            };
            let pid = p.field("process.pid")?.as_str()?;
            Some(format!(
                "{letter}1109 20:36:15.{:06} {pid:>7} datanode.go:{}] {}",
                pid.len() * 1000,
                pid.len() * 10,
                p.message
            ))
        })
        .collect();
    Some(Inputs {
        combined,
        syslog,
        syslog_pri,
        cri,
        docker,
        logfmt,
        klog,
        hdfs,
        json: read_lines("json/nginxplus-status.log"),
        kafka,
    })
}

fn run<'a, F>(c: &mut Criterion, name: &str, lines: &'a [String], mut f: F)
where
    F: FnMut(&'a str) -> bool,
{
    let mut g = c.benchmark_group("adapt");
    g.throughput(Throughput::Bytes(bytes(lines)));
    g.bench_function(BenchmarkId::new(name, format!("{} lines", lines.len())), |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for l in lines {
                ok += usize::from(f(black_box(l.as_str())));
            }
            assert_eq!(ok, lines.len(), "{name}: some lines were rejected");
            ok
        })
    });
    g.finish();
}

fn adapt(c: &mut Criterion) {
    let inp = inputs().expect("the benchmark inputs built from tests/data");
    {
        let mut out = Parsed::default();
        run(c, "logfmt", &inp.logfmt, |l| logfmt::parse_into(l, &mut out).is_ok());
    }
    {
        let mut out = Parsed::default();
        run(c, "syslog_file", &inp.syslog, |l| {
            syslog::parse_into(l, NOW, &mut out).is_ok()
        });
    }
    {
        let mut out = Parsed::default();
        run(c, "syslog_3164_pri", &inp.syslog_pri, |l| {
            syslog::parse_into(l, NOW, &mut out).is_ok()
        });
    }
    {
        let mut out = Parsed::default();
        run(c, "combined", &inp.combined, |l| {
            access::parse_into(l, access::Variant::Combined, &mut out).is_ok()
        });
    }
    {
        let mut out = Parsed::default();
        run(c, "cri", &inp.cri, |l| cri::parse_into(l, &mut out).is_ok());
    }
    {
        let mut j = PartialJoiner::default();
        run(c, "cri_joined", &inp.cri, |l| {
            cri::parse(l).ok().and_then(|p| j.push(p)).is_some()
        });
    }
    {
        let mut out = Parsed::default();
        run(c, "docker", &inp.docker, |l| docker::parse_into(l, &mut out).is_ok());
    }
    {
        let mut out = Parsed::default();
        run(c, "klog", &inp.klog, |l| klog::parse_into(l, NOW, &mut out).is_ok());
    }
    {
        let p = RegexParser::new(COMBINED_PATTERN, None).unwrap();
        let mut locs = p.locations();
        let mut out = Parsed::default();
        run(c, "regex_combined", &inp.combined, |l| {
            p.parse_into(l, NOW, &mut out, &mut locs).is_ok()
        });
    }
    {
        let p = RegexParser::new(HDFS_PATTERN, Some("%y%m%d %H%M%S")).unwrap();
        let mut locs = p.locations();
        let mut out = Parsed::default();
        run(c, "regex_hdfs", &inp.hdfs, |l| {
            p.parse_into(l, NOW, &mut out, &mut locs).is_ok()
        });
    }
    {
        let mut rec = json::JsonLine::default();
        run(c, "json", &inp.json, |l| json::parse_into(l, &mut rec).is_ok());
    }
    {
        let mut j = MultilineJoiner::new(Rule::preset("java").unwrap(), 1000, 1 << 20);
        run(c, "multiline_java", &inp.kafka, |l| {
            black_box(j.push(l));
            true
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = adapt
}
criterion_main!(benches);
