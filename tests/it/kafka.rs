//! The kafka sink against a real Kafka-API broker: `tansu` (crates.io; `.ci/run` installs
//! it) started here on 127.0.0.1 with its SQLite engine, topics created first with its own
//! CLI, and everything read back by an independent consumer, kafka-python (PyPI), which
//! prints each message's topic, partition, offset, key, `id` header and value. A missing
//! `tansu` or kafka-python fails the test, saying what to install.
//!
//! Numbered lines (`util::Writer`) are checked per file the way the TCP tests check them, in
//! the order of their partition's offsets: every line once (or, after a `kill -9`, again with
//! the same `id`), none out of order, the `id` header equal to the record's `id`, the key the
//! file. `KAFKA_LINES` changes the line count of the big run (default 1,000,000).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Partitions of every test topic: enough that files land on different ones.
const PARTITIONS: u32 = 3;

fn lines_for_big_run() -> u64 {
    std::env::var("KAFKA_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The `tansu` binary: on `PATH`, or where `cargo install` puts it.
fn tansu_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("tansu")).collect::<Vec<_>>())
        .unwrap_or_default();
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    on_path
        .into_iter()
        .chain(home.map(|h| h.join("bin/tansu")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("tansu not found on PATH or in ~/.cargo/bin: install it as .ci/run does (cargo install tansu --version 0.6.0 --locked --features dynostore,libsql)")
        })
}

/// A tansu broker on a fixed port of 127.0.0.1, its SQLite database in the test directory, so
/// a restart finds its topics and records again.
struct Tansu {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    starts: u32,
}

impl Tansu {
    fn start(dir: &TestDir) -> Tansu {
        let mut t = Tansu {
            dir: dir.subdir("tansu"),
            port: free_port(),
            child: None,
            starts: 0,
        };
        t.spawn();
        t
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = fs::File::create(self.dir.join(format!("broker-{}.log", self.starts))).expect("broker log");
        let child = Command::new(tansu_bin())
            .current_dir(&self.dir)
            .args([
                "broker",
                "--listener-url",
                &self.url(),
                "--advertised-listener-url",
                &self.url(),
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start tansu: {e}"));
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(up, "tansu did not listen on {} in 30 s:\n{}", self.addr(), self.log());
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 10 s).
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if c.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join(format!("broker-{}.log", self.starts))).unwrap_or_default()
    }

    fn create_topic(&self, name: &str) {
        let out = Command::new(tansu_bin())
            .args(["topic", "create", name, "--broker", &self.url()])
            .args(["--partitions", &PARTITIONS.to_string()])
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The consumer: reads every partition of the topics from the beginning to the end offsets it
/// finds at its start, and prints one line per message. Tab-separated; values and keys hold no
/// tab or newline (NDJSON lines, test lines, file paths).
const CONSUMER: &str = r#"
import sys, time
from kafka import KafkaConsumer, TopicPartition
bootstrap, topics = sys.argv[1], sys.argv[2:]
c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                  auto_offset_reset="earliest", request_timeout_ms=30000)
tps = []
for t in topics:
    parts = None
    for _ in range(50):
        parts = c.partitions_for_topic(t)
        if parts:
            break
        time.sleep(0.2)
    if not parts:
        sys.exit("no partitions for topic %s" % t)
    tps += [TopicPartition(t, p) for p in sorted(parts)]
c.assign(tps)
c.seek_to_beginning(*tps)
end = c.end_offsets(tps)
todo = {tp for tp in tps if end[tp] > 0}
out = sys.stdout.buffer
deadline = time.time() + 600
while todo and time.time() < deadline:
    for tp, msgs in c.poll(timeout_ms=1000, max_records=20000).items():
        for m in msgs:
            if m.offset >= end[tp]:
                continue
            hid = b""
            for k, v in m.headers or []:
                if k == "id":
                    hid = v
            out.write(b"%s\t%d\t%d\t%s\t%s\t%s\n" % (m.topic.encode(), m.partition, m.offset,
                      m.key or b"", hid, m.value or b""))
            if m.offset + 1 >= end[tp]:
                todo.discard(tp)
if todo:
    sys.exit("gave up with partitions unread: %r" % todo)
"#;

/// One message as the consumer printed it.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    partition: u32,
    offset: u64,
    key: String,
    id: String,
    value: String,
}

/// Every message of `topics`, by topic, partition and offset.
fn consume(dir: &TestDir, broker: &Tansu, topics: &[&str]) -> Vec<Msg> {
    let script = dir.join("consume.py");
    fs::write(&script, CONSUMER).expect("write consumer");
    let out = Command::new("python3")
        .arg(&script)
        .arg(broker.addr())
        .args(topics)
        .output()
        .expect("run python3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'kafka'"),
        "kafka-python is missing: pip install kafka-python (.ci/run does)"
    );
    assert!(out.status.success(), "consumer failed: {err}");
    let mut msgs: Vec<Msg> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let l = String::from_utf8_lossy(l);
            let f: Vec<&str> = l.splitn(6, '\t').collect();
            assert_eq!(f.len(), 6, "consumer line {l:?}");
            Msg {
                topic: f[0].to_owned(),
                partition: f[1].parse().expect("partition"),
                offset: f[2].parse().expect("offset"),
                key: f[3].to_owned(),
                id: f[4].to_owned(),
                value: f[5].to_owned(),
            }
        })
        .collect();
    msgs.sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    msgs
}

/// Feeds NDJSON messages, in partition order, to the receiver's bookkeeping; checks on the way
/// that the `id` header is the record's `id` and the key its file.
fn tally(msgs: &[Msg]) -> State {
    let mut st = State::default();
    for m in msgs {
        let rec: serde_json::Value = serde_json::from_str(&m.value).unwrap_or_else(|e| panic!("{e}: {m:?}"));
        assert_eq!(rec["id"].as_str(), Some(m.id.as_str()), "id header of {m:?}");
        assert_eq!(rec["file"].as_str(), Some(m.key.as_str()), "key of {m:?}");
        st.handle_line(m.value.as_bytes(), Wire::Ndjson, false);
    }
    st
}

/// The partitions each file's messages went to.
fn partitions_per_key(msgs: &[Msg]) -> HashMap<String, Vec<(String, u32)>> {
    let mut by: BTreeMap<&str, Vec<(String, u32)>> = BTreeMap::new();
    for m in msgs {
        let v = by.entry(&m.key).or_default();
        if !v.contains(&(m.topic.clone(), m.partition)) {
            v.push((m.topic.clone(), m.partition));
        }
    }
    by.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn kafka_config(dir: &TestDir, logs: &Path, broker: &Tansu, sink: &[&str]) -> Config {
    let mut cfg = Config::tcp(dir, &[format!("{}/*.log", logs.display())], &Receiver::ndjson());
    cfg.sink = vec!["type = \"kafka\"".into(), format!("brokers = [{}]", q(&broker.addr()))];
    cfg.sink.extend(sink.iter().map(|s| s.to_string()));
    cfg
}

/// Waits until the agent has acknowledged `n` records (its `records_sent`).
fn wait_sent(agent: &mut Agent, n: u64, what: &str) {
    let addr = agent.metrics_addr;
    wait_progress(
        Some(agent),
        what,
        Duration::from_secs(60),
        Duration::from_secs(600),
        || {
            let sent = addr
                .and_then(|a| Metrics::fetch(a).ok())
                .map_or(0, |m| m.val("tailship_records_sent_total") as u64);
            (sent, sent >= n)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

fn sigterm_exit0(agent: &mut Agent) {
    agent.sigterm();
    let code = agent.wait_exit(Duration::from_secs(40));
    assert_eq!(code, Some(0), "exit after SIGTERM:\n{}", agent.stderr_tail(30));
}

#[test]
fn a_million_numbered_lines_arrive_once_each_in_order_per_file() {
    let total = lines_for_big_run();
    let per_file = total / 2;
    let _heavy = heavy();
    let dir = TestDir::new("kafka-million");
    let logs = dir.subdir("logs");
    let broker = Tansu::start(&dir);
    broker.create_topic("logs");
    let cfg = kafka_config(&dir, &logs, &broker, &["topic = \"logs\"", "compression = \"lz4\""]);
    let writers = [
        Writer::spawn(WriterSpec::new(logs.join("a.log"), "a", per_file)),
        Writer::spawn(WriterSpec::new(logs.join("b.log"), "b", per_file)),
    ];
    let t0 = Instant::now();
    let mut agent = Agent::start(&dir, &cfg);
    for w in writers {
        w.join();
    }
    wait_sent(&mut agent, 2 * per_file, "every line acknowledged");
    eprintln!("{} lines acknowledged in {:.1?}", 2 * per_file, t0.elapsed());
    sigterm_exit0(&mut agent);
    let msgs = consume(&dir, &broker, &["logs"]);
    let st = tally(&msgs);
    for tag in ["a", "b"] {
        let r = SeqReport::of(tag, st.tags.get(tag), per_file);
        eprintln!("{r}");
        assert_eq!((r.missing, r.duplicates, r.out_of_order), (0, 0, 0), "{r}");
        assert_eq!((r.id_changes, r.id_collisions, r.beyond), (0, 0, 0), "{r}");
    }
    for (file, parts) in partitions_per_key(&msgs) {
        assert_eq!(parts.len(), 1, "{file} went to one partition: {parts:?}");
    }
    assert_eq!(st.corrupt, 0, "{:?}", st.corrupt_examples);
}

#[test]
fn the_broker_stopped_for_20s_mid_run_loses_nothing() {
    const LINES: u64 = 60_000;
    let _heavy = heavy();
    let dir = TestDir::new("kafka-outage");
    let logs = dir.subdir("logs");
    let mut broker = Tansu::start(&dir);
    broker.create_topic("logs");
    let cfg = kafka_config(&dir, &logs, &broker, &["topic = \"logs\"", "compression = \"zstd\""]);
    let writer = Writer::spawn(WriterSpec::new(logs.join("app.log"), "o", LINES).rate(LINES / 30));
    let mut agent = Agent::start(&dir, &cfg);
    wait_sent(&mut agent, LINES / 4, "a quarter of the lines before the outage");
    broker.stop();
    let rss = RssSampler::start(agent.pid);
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        agent.alive(),
        "the agent survives the outage:\n{}",
        agent.stderr_tail(20)
    );
    let during = agent
        .metrics_addr
        .and_then(|a| Metrics::fetch(a).ok())
        .map_or(0, |m| m.val("tailship_records_sent_total") as u64);
    broker.spawn();
    eprintln!(
        "broker back after {:.1?}; {during} records acknowledged so far",
        down.elapsed()
    );
    writer.join();
    wait_sent(&mut agent, LINES, "every line after the outage");
    let (peak_kib, _) = rss.finish();
    sigterm_exit0(&mut agent);
    let msgs = consume(&dir, &broker, &["logs"]);
    let st = tally(&msgs);
    let r = SeqReport::of("o", st.tags.get("o"), LINES);
    eprintln!("{r}; peak RSS during and after the outage {peak_kib} KiB");
    assert_eq!(r.missing, 0, "{r}");
    assert_eq!(r.id_changes, 0, "{r}");
    // 16 MiB of in-flight budget plus the process: generous against a leak, not a tight fit.
    assert!(peak_kib < 160 * 1024, "peak RSS {peak_kib} KiB");
}

#[test]
fn kill9_twice_loses_nothing_and_replays_keep_their_id() {
    const LINES: u64 = 100_000;
    let _heavy = heavy();
    let dir = TestDir::new("kafka-kill9");
    let logs = dir.subdir("logs");
    let broker = Tansu::start(&dir);
    broker.create_topic("logs");
    let mut cfg = kafka_config(&dir, &logs, &broker, &["topic = \"logs\""]);
    let writers = [
        Writer::spawn(WriterSpec::new(logs.join("k1.log"), "k1", LINES).rate(LINES / 10)),
        Writer::spawn(WriterSpec::new(logs.join("k2.log"), "k2", LINES).rate(LINES / 10)),
    ];
    let mut agent = Agent::start(&dir, &cfg);
    for n in [1u64, 2] {
        // Each run acknowledges a third of all lines before it is killed (its counter starts
        // at 0; the second run's third includes what the first one left unacknowledged).
        wait_sent(&mut agent, 2 * LINES / 3, &format!("lines before kill #{n}"));
        agent.kill9();
        cfg.fresh_metrics_port();
        agent = Agent::start(&dir, &cfg);
    }
    for w in writers {
        w.join();
    }
    // After the restarts the counter starts again: wait for the checkpoint to reach the ends.
    let ends: Vec<(String, u64)> = ["k1.log", "k2.log"]
        .iter()
        .map(|f| {
            let p = logs.join(f);
            (p.display().to_string(), fs::metadata(&p).expect("log").len())
        })
        .collect();
    let ok = wait_until(Duration::from_secs(300), || {
        let at = checkpoint_offsets(&cfg);
        ends.iter().all(|(p, len)| at.iter().any(|(q, o)| q == p && o == len))
    });
    assert!(
        ok,
        "checkpoint did not reach the ends: {:?}\n{}",
        checkpoint_offsets(&cfg),
        agent.stderr_tail(20)
    );
    sigterm_exit0(&mut agent);
    let msgs = consume(&dir, &broker, &["logs"]);
    let st = tally(&msgs);
    let mut dups = 0;
    for tag in ["k1", "k2"] {
        let r = SeqReport::of(tag, st.tags.get(tag), LINES);
        eprintln!("{r}");
        assert_eq!(r.missing, 0, "{r}");
        assert_eq!(
            (r.id_changes, r.id_collisions),
            (0, 0),
            "a replayed line keeps its id: {r}"
        );
        dups += r.duplicates;
    }
    eprintln!(
        "DUPLICATES kafka kill9: {dups} of {} lines = {:.3}% (2 kills)",
        2 * LINES,
        100.0 * dups as f64 / (2 * LINES) as f64
    );
    // A replay sends again at most what was unacknowledged: the window and the checkpoint's
    // last moments, a few batches of 1,000 per kill.
    assert!(dups < 2 * 40_000, "duplicates {dups}");
}

#[test]
fn an_oversize_record_goes_to_the_dead_letter_file_and_the_rest_flows() {
    let dir = TestDir::new("kafka-oversize");
    let logs = dir.subdir("logs");
    let broker = Tansu::start(&dir);
    broker.create_topic("logs");
    let cfg = kafka_config(
        &dir,
        &logs,
        &broker,
        &["topic = \"logs\"", "message_max_bytes = 100000"],
    );
    let mut text = Vec::new();
    for seq in 0..100 {
        corpus().push_line(&mut text, "s", seq);
    }
    text.extend_from_slice(format!("huge {}\n", "x".repeat(200_000)).as_bytes());
    for seq in 100..200 {
        corpus().push_line(&mut text, "s", seq);
    }
    fs::write(logs.join("app.log"), &text).expect("write log");
    let mut agent = Agent::start(&dir, &cfg);
    let dead = cfg.data_dir.join("dead-letter/out.ndjson");
    let addr = agent.metrics_addr.expect("metrics");
    wait_progress(Some(&mut agent), "200 sent and one dead-lettered", STALL, LIMIT, || {
        let m = Metrics::fetch(addr).ok();
        let sent = m.as_ref().map_or(0, |m| m.val("tailship_records_sent_total") as u64);
        let dl = m
            .as_ref()
            .map_or(0, |m| m.val("tailship_dead_letter_records_total") as u64);
        (sent + dl, sent >= 200 && dl == 1)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.stderr_tail(20)));
    let m = Metrics::fetch(addr).expect("metrics");
    assert_eq!(
        m.get_with("tailship_kafka_errors_total", "kind=\"MessageSizeTooLarge\""),
        Some(1.0),
        "the refusal is counted by kind"
    );
    let lines = fs::read_to_string(&dead).expect("dead-letter file");
    let rec: serde_json::Value = serde_json::from_str(lines.trim_end()).expect("one NDJSON record");
    assert_eq!(
        rec["message"].as_str().map(str::len),
        Some(205),
        "the huge line, whole: {}",
        &lines[..200]
    );
    assert!(agent.stderr().contains("dead-letter"), "the reason is logged");
    sigterm_exit0(&mut agent);
    let msgs = consume(&dir, &broker, &["logs"]);
    let st = tally(&msgs);
    let r = SeqReport::of("s", st.tags.get("s"), 200);
    assert_eq!((r.missing, r.duplicates, r.out_of_order), (0, 0, 0), "{r}");
    assert_eq!(msgs.len(), 200);
}

#[test]
fn a_topic_template_resolves_per_namespace() {
    let dir = TestDir::new("kafka-template");
    let broker = Tansu::start(&dir);
    let shop = KubeletPodDir::new("kshop", "web-1", "uid-shop", "app");
    let bank = KubeletPodDir::new("kbank", "api-1", "uid-bank", "app");
    let plain = dir.subdir("plain");
    for topic in [
        format!("logs-{}", shop.namespace),
        format!("logs-{}", bank.namespace),
        "logs".into(),
    ] {
        broker.create_topic(&topic);
    }
    let mut cfg = kafka_config(
        &dir,
        &plain,
        &broker,
        &[
            "topic = \"logs-{resource.k8s.namespace.name}\"",
            "default_topic = \"logs\"",
        ],
    );
    cfg.include = vec![
        format!("{}/*.log", shop.container_dir.display()),
        format!("{}/*.log", bank.container_dir.display()),
        format!("{}/*.log", plain.display()),
    ];
    cfg.source_extra.push("kubernetes_metadata = \"path\"".into());
    let lines = |tag: &str| (0..50).map(|s| corpus().line(tag, s) + "\n").collect::<String>();
    fs::write(shop.container_dir.join("0.log"), lines("shop")).expect("write");
    fs::write(bank.container_dir.join("0.log"), lines("bank")).expect("write");
    fs::write(plain.join("app.log"), lines("plain")).expect("write");
    let mut agent = Agent::start(&dir, &cfg);
    wait_sent(&mut agent, 150, "150 records");
    sigterm_exit0(&mut agent);
    for (topic, tag) in [
        (format!("logs-{}", shop.namespace), "shop"),
        (format!("logs-{}", bank.namespace), "bank"),
        ("logs".to_owned(), "plain"),
    ] {
        let msgs = consume(&dir, &broker, &[&topic]);
        let st = tally(&msgs);
        assert_eq!(
            st.tags.len(),
            1,
            "{topic} holds only {tag}'s lines: {:?}",
            st.tags.keys()
        );
        let r = SeqReport::of(tag, st.tags.get(tag), 50);
        assert_eq!((r.missing, r.duplicates, r.out_of_order), (0, 0, 0), "{topic}: {r}");
    }
}
