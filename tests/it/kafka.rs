//! The kafka sink against a real Kafka-API broker: tansu (a broker written in Rust, from
//! crates.io; `.ci/run` installs it, `TAILSHIP_TANSU` names another binary), started by each
//! test on 127.0.0.1 with its in-memory engine, topics created first since it creates none on
//! demand; the outage is a proxy in front of it cutting every connection (see `Proxy`). What arrived is read back by kafka-python (`kafka_consume.py`), a
//! client independent of the librdkafka the agent produces with.
//!
//! Each test names its scenario: 1,000,000 numbered lines once each and in order per file; the
//! broker down 20 s mid-run; the agent killed -9 twice (duplicates only from unacknowledged
//! batches, all carrying the `id` of the first copy); a record over the size limit
//! dead-lettered while the rest flows; a topic per namespace from a template.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

const CONSUMER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/kafka_consume.py");

/// The tansu binary: `TAILSHIP_TANSU`, else `tansu` on the PATH, else cargo's bin directory.
/// Missing, the test fails saying how to get it.
fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("TAILSHIP_TANSU") {
        return PathBuf::from(p);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME").or_else(|| {
        std::env::var_os("HOME").map(|h| {
            let mut p = PathBuf::from(h);
            p.push(".cargo");
            p.into_os_string()
        })
    }) {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "tansu not found (PATH, ~/.cargo/bin, TAILSHIP_TANSU): the kafka tests need a broker; \
                 `cargo install tansu --version 0.6.0 --locked --features dynostore` (.ci/run does)"
            )
        })
}

/// A tansu broker on 127.0.0.1: it listens on `port` and tells clients to use `advertised`
/// (the same port, or a `Proxy`'s in front of it).
struct Broker {
    child: Option<Child>,
    port: u16,
    advertised: u16,
    dir: PathBuf,
    log: PathBuf,
}

impl Broker {
    fn start(dir: &TestDir) -> Broker {
        let port = free_port();
        Broker::start_advertising(dir, port, port)
    }

    /// A broker on `port` whose clients are told to connect to `advertised`.
    fn start_advertising(dir: &TestDir, port: u16, advertised: u16) -> Broker {
        let mut b = Broker {
            child: None,
            port,
            advertised,
            dir: dir.path().to_owned(),
            log: dir.join("tansu.log"),
        };
        b.spawn();
        b
    }

    /// Where clients connect.
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.advertised)
    }

    /// Starts (or restarts) the broker on the same port and database and waits until it
    /// answers.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the broker runs already");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("broker log");
        let child = Command::new(tansu())
            .arg("broker")
            .args(["--cluster-id", "tailship-it"])
            .args(["--listener-url", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--advertised-listener-url", &format!("tcp://{}", self.addr())])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start tansu: {e}"));
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let up = wait_until(Duration::from_secs(30), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() || !self.alive()
        });
        assert!(up && self.alive(), "tansu did not start:\n{}", self.log_tail());
    }

    fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Creates `topic` with `partitions` partitions (tansu creates none on demand).
    fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args(["topic", "create", topic])
            .args(["--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success(),
            "create topic {topic}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy in front of the broker. `cut` resets every connection through it and refuses new
/// ones until `restore`: to the agent, exactly the broker going away and coming back, while the
/// broker (in memory) keeps what it acknowledged. (A real restart needs tansu's SQLite engine,
/// which after a restart here served no reads at all.)
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    done: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let port = free_port();
        let p = Proxy {
            port,
            up: Arc::new(AtomicBool::new(true)),
            open: Arc::new(Mutex::new(Vec::new())),
            done: Arc::new(AtomicBool::new(false)),
        };
        let (up, open, done) = (p.up.clone(), p.open.clone(), p.done.clone());
        std::thread::spawn(move || {
            let mut listener: Option<TcpListener> = None;
            while !done.load(Ordering::Relaxed) {
                if !up.load(Ordering::Relaxed) {
                    listener = None;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let l = listener.get_or_insert_with(|| {
                    let l = TcpListener::bind(("127.0.0.1", port)).expect("proxy port");
                    l.set_nonblocking(true).unwrap();
                    l
                });
                match l.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let mut list = open.lock().unwrap();
                        list.push(client.try_clone().unwrap());
                        list.push(server.try_clone().unwrap());
                        for (mut from, mut to) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server, client),
                        ] {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut from, &mut to);
                                let _ = to.shutdown(Shutdown::Both);
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        p
    }

    /// Resets every connection and refuses new ones.
    fn cut(&self) {
        self.up.store(false, Ordering::Relaxed);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.done.store(true, Ordering::Relaxed);
    }
}

/// One message as kafka-python read it.
#[derive(Debug, serde::Deserialize)]
struct Message {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<String>,
    id: String,
    value: Option<String>,
}

/// Every message of `topics`, read from the start until `expect` arrived (then a short wait
/// for duplicates) or nothing came for `idle` seconds.
fn consume(broker: &Broker, topics: &[&str], expect: usize, idle: u64) -> Vec<Message> {
    let mut cmd = Command::new("python3");
    cmd.arg(CONSUMER)
        .args(["--bootstrap", &broker.addr()])
        .args(["--expect", &expect.to_string()])
        .args(["--idle", &idle.to_string()])
        .args(["--deadline", "600"]);
    for t in topics {
        cmd.args(["--topic", t]);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "kafka_consume.py failed (kafka-python from PyPI; .ci/run installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// One source of raw lines (`include`) shipping to `topic` on `broker`, metrics on a free
/// port; `sink` adds lines to the sink table.
fn config(dir: &TestDir, include: &[String], broker: &Broker, topic: &str, sink: &[&str]) -> Config {
    let mut lines = vec![
        "type = \"kafka\"".to_owned(),
        format!("brokers = [{}]", q(&broker.addr())),
        format!("topic = {}", q(topic)),
    ];
    lines.extend(sink.iter().map(|s| s.to_string()));
    Config {
        data_dir: dir.subdir("data"),
        metrics_port: Some(0),
        top: Vec::new(),
        include: include.to_vec(),
        exclude: None,
        format: "raw".into(),
        read_from: "beginning".into(),
        source_extra: Vec::new(),
        sink: lines,
        encoding: "raw".into(),
        batch: Some("{ max_events = 5000, max_bytes = 4194304, linger_ms = 50 }".into()),
    }
}

/// What the messages say about numbered lines: per (tag, seq) how many copies and their
/// ids; per file, the sequence numbers in partition-offset order.
struct Tally {
    copies: HashMap<(String, u64), Vec<String>>,
    per_file: HashMap<String, Vec<u64>>,
    other: usize,
}

fn tally(messages: &[Message]) -> Tally {
    let mut sorted: Vec<&Message> = messages.iter().collect();
    sorted.sort_by_key(|m| (m.topic.clone(), m.partition, m.offset));
    let mut t = Tally {
        copies: HashMap::new(),
        per_file: HashMap::new(),
        other: 0,
    };
    for m in sorted {
        let Some((tag, seq, _)) = m.value.as_deref().and_then(|v| corpus().parse(v)) else {
            t.other += 1;
            continue;
        };
        t.copies.entry((tag.to_owned(), seq)).or_default().push(m.id.clone());
        t.per_file
            .entry(m.key.clone().unwrap_or_default())
            .or_default()
            .push(seq);
    }
    t
}

impl Tally {
    /// Asserts every line `0..n` of `tag` arrived; returns the number of extra copies.
    fn all_of(&self, tag: &str, n: u64) -> usize {
        let missing: Vec<u64> = (0..n)
            .filter(|s| !self.copies.contains_key(&(tag.to_owned(), *s)))
            .collect();
        assert!(
            missing.is_empty(),
            "{tag}: {} of {n} lines missing, first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        (0..n).map(|s| self.copies[&(tag.to_owned(), s)].len() - 1).sum()
    }

    /// Every copy of a line carries the same `id` header: consumers can drop replays by it.
    fn ids_identify_copies(&self) {
        for ((tag, seq), ids) in &self.copies {
            assert!(!ids[0].is_empty(), "{tag} {seq}: no id header");
            assert!(
                ids.iter().all(|i| i == &ids[0]),
                "{tag} {seq}: copies with different ids {ids:?}"
            );
        }
    }

    /// Within each file's partition, first copies come in file order: a line never arrives
    /// for the first time before an earlier line of its file.
    fn in_order_per_file(&self) {
        for (file, seqs) in &self.per_file {
            let mut next = 0u64;
            for &s in seqs {
                assert!(s <= next, "{file}: line {s} arrived before line {next}");
                next = next.max(s + 1);
            }
        }
    }
}

fn write_lines(path: &Path, tag: &str, first: u64, n: u64) {
    let mut f = fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let mut at = first;
    while at < first + n {
        let k = 10_000.min(first + n - at);
        f.write_all(&corpus().lines(tag, at, k)).unwrap();
        at += k;
    }
}

fn sent(agent: &Agent) -> u64 {
    sent_at(agent.metrics_addr)
}

/// Waits (up to 60 s) until the agent has had `n` records acknowledged.
fn wait_sent(agent: &Agent, n: u64) {
    assert!(
        wait_until(Duration::from_secs(60), || sent(agent) >= n),
        "{n} acknowledged expected, {} so far\n{}",
        sent(agent),
        agent.stderr_tail(20)
    );
}

/// SIGTERM, and a clean exit within 30 s.
fn stop(agent: &mut Agent) {
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        agent.stderr_tail(30)
    );
}

/// `tailship_records_sent_total` of the agent whose metrics are at `addr`.
fn sent_at(addr: Option<SocketAddr>) -> u64 {
    addr.and_then(|a| Metrics::fetch(a).ok())
        .and_then(|m| m.get("tailship_records_sent_total"))
        .unwrap_or(0.0) as u64
}

#[test]
fn a_million_numbered_lines_arrive_once_each_in_order_per_file() {
    let _heavy = heavy();
    let dir = TestDir::new("kafka-million");
    let broker = Broker::start(&dir);
    broker.create_topic("logs", 4);
    let files = [dir.join("a.log"), dir.join("b.log")];
    for (f, tag) in files.iter().zip(["a", "b"]) {
        write_lines(f, tag, 0, 500_000);
    }
    let include: Vec<String> = files.iter().map(|f| f.to_string_lossy().into_owned()).collect();
    let cfg = config(&dir, &include, &broker, "logs", &[]);
    let mut agent = Agent::start(&dir, &cfg);
    let t0 = Instant::now();
    let progress = wait_progress(
        None,
        "1,000,000 acknowledged",
        Duration::from_secs(60),
        Duration::from_secs(900),
        || {
            let n = sent(&agent);
            (n, n >= 1_000_000)
        },
    );
    let took = t0.elapsed();
    assert!(
        progress.is_ok(),
        "{progress:?}\n{}\n{}",
        agent.stderr_tail(30),
        broker.log_tail()
    );
    let messages = consume(&broker, &["logs"], 1_000_000, 10);
    stop(&mut agent);
    let t = tally(&messages);
    let extra = t.all_of("a", 500_000) + t.all_of("b", 500_000);
    assert_eq!(extra, 0, "a clean run sends every line once");
    assert_eq!(t.other, 0);
    assert_eq!(messages.len(), 1_000_000);
    t.ids_identify_copies();
    t.in_order_per_file();
    eprintln!("kafka: 1,000,000 lines acknowledged in {took:?}");
}

/// Appends `n` lines of `tag` to `path` at about `per_sec`, in the background.
fn trickle(path: PathBuf, tag: &'static str, n: u64, per_sec: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let chunk = (per_sec / 20).max(1);
        let start = Instant::now();
        let mut at = 0;
        while at < n {
            let k = chunk.min(n - at);
            write_lines(&path, tag, at, k);
            at += k;
            let due = Duration::from_secs_f64(at as f64 / per_sec as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    })
}

#[test]
fn the_broker_down_for_20_s_loses_nothing_and_memory_stays_bounded() {
    let _heavy = heavy();
    let dir = TestDir::new("kafka-outage");
    let port = free_port();
    let proxy = Proxy::start(port);
    let broker = Broker::start_advertising(&dir, port, proxy.port);
    broker.create_topic("logs", 2);
    let file = dir.join("app.log");
    fs::write(&file, b"").unwrap();
    // A budget smaller than what piles up during the outage (20 s × 10,000 lines of ~150
    // bytes), so the tailer must stop at it.
    let cfg =
        config(&dir, &[file.to_string_lossy().into_owned()], &broker, "logs", &[]).top("max_inflight_bytes = 4194304");
    let agent = Agent::start(&dir, &cfg);
    let total = 400_000;
    let writer = trickle(file.clone(), "o", total, 10_000);
    let rss = RssSampler::start(agent.pid);
    wait_sent(&agent, 80_000);
    proxy.cut();
    // The outage itself is the scenario: 20 s while the app keeps writing.
    std::thread::sleep(Duration::from_secs(20));
    let during = sent(&agent);
    proxy.restore();
    writer.join().unwrap();
    let mut agent = agent;
    let addr = agent.metrics_addr;
    let caught_up = wait_progress(
        Some(&mut agent),
        "catch-up",
        Duration::from_secs(60),
        Duration::from_secs(300),
        || {
            let n = sent_at(addr);
            (n, n >= total)
        },
    );
    let (max_rss_kib, _) = rss.finish();
    assert!(
        caught_up.is_ok(),
        "{caught_up:?}\n{}\n{}",
        agent.stderr_tail(30),
        broker.log_tail()
    );
    let messages = consume(&broker, &["logs"], total as usize, 10);
    stop(&mut agent);
    let t = tally(&messages);
    let extra = t.all_of("o", total);
    t.ids_identify_copies();
    t.in_order_per_file();
    eprintln!(
        "kafka outage: {during} acknowledged when the broker came back, {extra} duplicates, max RSS {} MiB",
        max_rss_kib / 1024
    );
    // max_inflight_bytes (4 MiB) plus what the process needs besides: librdkafka's threads
    // and buffers, the tokio runtimes. 64 MiB is the alarm line (see the figure printed above).
    assert!(max_rss_kib < 64 * 1024, "RSS {max_rss_kib} KiB through the outage");
}

#[test]
fn kill_9_twice_loses_nothing_and_replays_carry_the_first_copys_id() {
    let _heavy = heavy();
    let dir = TestDir::new("kafka-kill9");
    let broker = Broker::start(&dir);
    broker.create_topic("logs", 2);
    let file = dir.join("app.log");
    fs::write(&file, b"").unwrap();
    let mut cfg = config(&dir, &[file.to_string_lossy().into_owned()], &broker, "logs", &[]);
    let total = 200_000;
    let writer = trickle(file.clone(), "k", total, 50_000);
    let mut agent = Agent::start(&dir, &cfg);
    for at in [40_000, 120_000] {
        wait_sent(&agent, at);
        agent.kill9();
        cfg.fresh_metrics_port();
        agent = Agent::start(&dir, &cfg);
    }
    writer.join().unwrap();
    let messages = consume(&broker, &["logs"], total as usize, 15);
    stop(&mut agent);
    let t = tally(&messages);
    let extra = t.all_of("k", total);
    t.ids_identify_copies();
    t.in_order_per_file();
    eprintln!(
        "kafka kill -9 ×2: {extra} duplicates of {total} lines ({:.2} %)",
        extra as f64 * 100.0 / total as f64
    );
}

/// tansu enforces no message size (it took a 3 MB message here), so the agent's own
/// `message_max_bytes` stands for the brokers' `message.max.bytes`, which it is set at or
/// below; the broker's own refusal is the next test's.
#[test]
fn a_record_over_the_size_limit_is_dead_lettered_and_the_rest_flows() {
    let dir = TestDir::new("kafka-oversize");
    let broker = Broker::start(&dir);
    broker.create_topic("logs", 1);
    let file = dir.join("app.log");
    let mut text = corpus().lines("s", 0, 500);
    text.extend_from_slice(format!("s 500 {}\n", corpus().text(300_000)).as_bytes());
    text.extend_from_slice(&corpus().lines("s", 501, 499));
    fs::write(&file, &text).unwrap();
    let cfg = config(
        &dir,
        &[file.to_string_lossy().into_owned()],
        &broker,
        "logs",
        &["message_max_bytes = 100000"],
    )
    .source("max_line_bytes = 1048576");
    let mut agent = Agent::start(&dir, &cfg);
    wait_sent(&agent, 999);
    let messages = consume(&broker, &["logs"], 999, 5);
    let dead = fs::read_to_string(cfg.data_dir.join("dead-letter/out.ndjson")).unwrap_or_default();
    stop(&mut agent);
    let t = tally(&messages);
    assert_eq!(messages.len(), 999, "every line but the big one, once");
    for s in (0..1000).filter(|s| *s != 500) {
        assert!(t.copies.contains_key(&("s".to_owned(), s)), "line {s} missing");
    }
    assert!(!t.copies.contains_key(&("s".to_owned(), 500)));
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.contains("s 500 "), "the dead letter holds the line");
    let log = agent.stderr();
    assert!(log.contains("message_max_bytes") || log.contains("too large"), "{log}");
}

#[test]
fn a_topic_template_sends_each_namespace_to_its_topic() {
    let dir = TestDir::new("kafka-template");
    let broker = Broker::start(&dir);
    let a = KubeletPodDir::new("kafka-a", "web-1", "uid-a", "app");
    let b = KubeletPodDir::new("kafka-b", "web-2", "uid-b", "app");
    for ns in [&a.namespace, &b.namespace] {
        broker.create_topic(&format!("logs-{ns}"), 1);
    }
    broker.create_topic("logs-other", 1);
    write_lines(&a.container_dir.join("0.log"), "ta", 0, 300);
    write_lines(&b.container_dir.join("0.log"), "tb", 0, 200);
    let plain = dir.join("host.log");
    write_lines(&plain, "th", 0, 100);
    let include = vec![
        a.container_dir.join("*.log").to_string_lossy().into_owned(),
        b.container_dir.join("*.log").to_string_lossy().into_owned(),
        plain.to_string_lossy().into_owned(),
    ];
    let cfg = config(
        &dir,
        &include,
        &broker,
        "logs-{resource.k8s.namespace.name}",
        &["default_topic = \"logs-other\""],
    )
    .source("kubernetes_metadata = \"path\"");
    let mut agent = Agent::start(&dir, &cfg);
    wait_sent(&agent, 600);
    let topic_a = format!("logs-{}", a.namespace);
    let topic_b = format!("logs-{}", b.namespace);
    let messages = consume(&broker, &[&topic_a, &topic_b, "logs-other"], 600, 5);
    stop(&mut agent);
    let mut per_topic: HashMap<&str, Vec<&str>> = HashMap::new();
    for m in &messages {
        let tag = m
            .value
            .as_deref()
            .and_then(|v| corpus().parse(v))
            .map_or("?", |(t, _, _)| t);
        per_topic.entry(m.topic.as_str()).or_default().push(tag);
    }
    let all = |topic: &str, tag: &str, n: usize| {
        let tags = per_topic.get(topic).cloned().unwrap_or_default();
        assert_eq!(tags.len(), n, "{topic}: {} messages", tags.len());
        assert!(tags.iter().all(|t| *t == tag), "{topic} holds others' lines");
    };
    all(&topic_a, "ta", 300);
    all(&topic_b, "tb", 200);
    all("logs-other", "th", 100);
}

/// A topic the broker does not have is refused by the broker for good (after librdkafka's
/// 30 s of waiting for the topic to appear): the records go to the dead-letter file with the
/// broker's reason, and the agent goes on.
#[test]
fn records_for_a_topic_the_broker_does_not_have_are_dead_lettered_with_the_reason() {
    let dir = TestDir::new("kafka-unknown-topic");
    let broker = Broker::start(&dir);
    let file = dir.join("app.log");
    write_lines(&file, "u", 0, 20);
    let cfg = config(
        &dir,
        &[file.to_string_lossy().into_owned()],
        &broker,
        "nobody-made-this",
        &[],
    );
    let mut agent = Agent::start(&dir, &cfg);
    let letters = cfg.data_dir.join("dead-letter/out.ndjson");
    let dead = || fs::read_to_string(&letters).unwrap_or_default().lines().count();
    assert!(
        wait_until(Duration::from_secs(90), || dead() >= 20 || !agent.alive()),
        "{} of 20 dead-lettered\n{}",
        dead(),
        agent.stderr_tail(20)
    );
    let log = agent.stderr();
    assert!(log.contains("UnknownTopicOrPartition"), "{log}");
    assert!(agent.alive(), "the agent goes on");
    stop(&mut agent);
}
