//! The forward sink against a Forward server the test starts (`forward_server.py`, decoding
//! with the `msgpack` package from PyPI; `.ci/run` installs it): a server that withholds some
//! acks, closes connections in the middle of a message and checks the shared key → every
//! line arrives at least once, in order per file (first arrivals), gzip or not; `kill -9` of
//! the agent twice → 0 lost.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/forward_server.py");

/// The server, killed when dropped.
struct Server {
    child: Child,
    out: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &TestDir, port: u16, extra: &[&str]) -> Server {
        let out = dir.join("received.ndjson");
        let mut child = Command::new("python3")
            .arg(SERVER)
            .arg(port.to_string())
            .arg(&out)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("stdout piped");
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read the server's first line");
        assert_eq!(
            first.trim(),
            "ready",
            "the forward server did not start (is msgpack installed?)"
        );
        Server { child, out }
    }

    /// (file, n) of every record received, in arrival order.
    fn received(&self) -> Vec<(String, u64)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| {
                let file = v.get("file")?.as_str()?.to_owned();
                let msg = v.get("message")?.as_str()?;
                let n = msg.rsplit(' ').next()?.parse().ok()?;
                Some((file, n))
            })
            .collect()
    }
}

fn config(dir: &TestDir, port: u16, extra: &str) -> PathBuf {
    let text = format!(
        "data_dir = {data}\n[metrics]\naddress = \"127.0.0.1:0\"\n\n[[sources]]\nname = \"app\"\ninclude = [{glob}]\n\n[[sinks]]\nname = \"fwd\"\ntype = \"forward\"\naddress = \"127.0.0.1:{port}\"\ntag = \"app.logs\"\nack_timeout = \"1s\"\nbatch = {{ max_events = 500, linger_ms = 20 }}\n{extra}\n",
        data = q(&dir.subdir("data").to_string_lossy()),
        glob = q(&dir.subdir("logs").join("*.log").to_string_lossy()),
    );
    let path = dir.join("tailship.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(dir: &TestDir, config: &Path) -> Agent {
    let args = vec!["--config".to_owned(), config.to_string_lossy().into_owned()];
    Agent::spawn(
        dir,
        &args,
        Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        |_| {},
    )
}

/// Appends lines `from..to` of file `name` ("<name> line <n>").
fn write_lines(dir: &TestDir, name: &str, from: u64, to: u64) {
    let path = dir.subdir("logs").join(format!("{name}.log"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = Vec::new();
    for n in from..to {
        writeln!(buf, "{name} payload {} line {n}", "x".repeat((n % 200) as usize)).unwrap();
    }
    f.write_all(&buf).unwrap();
}

/// Every line of `files` (each `0..n`) received at least once, first arrivals in order per
/// file; returns how many arrived more than once.
fn check(received: &[(String, u64)], files: &[&str], n: u64) -> u64 {
    let mut next: HashMap<&str, u64> = files.iter().map(|f| (*f, 0)).collect();
    let mut dups = 0;
    for (file, seq) in received {
        let name = Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let Some(want) = next.get_mut(name) else { continue };
        if *seq == *want {
            *want += 1;
        } else if *seq < *want {
            dups += 1;
        } else {
            panic!("{name}: line {seq} arrived before line {want} had ever arrived");
        }
    }
    for f in files {
        assert_eq!(next[f], n, "{f}: lines from {} never arrived", next[f]);
    }
    dups
}

fn count_all(server: &Server, files: &[&str], n: u64) -> (u64, bool) {
    let r = server.received();
    let mut seen: HashMap<&str, std::collections::HashSet<u64>> = HashMap::new();
    for (file, seq) in &r {
        let name = Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if let Some(f) = files.iter().find(|f| **f == name) {
            seen.entry(*f).or_default().insert(*seq);
        }
    }
    let total: u64 = seen.values().map(|s| s.len() as u64).sum();
    (total, total >= n * files.len() as u64)
}

fn run_chaos(name: &str, extra_server: &[&str], extra_sink: &str) {
    const N: u64 = 20_000;
    let files = ["a", "b"];
    let dir = TestDir::new(name);
    let port = free_port();
    let server = Server::start(&dir, port, extra_server);
    let mut agent = start(&dir, &config(&dir, port, extra_sink));
    for step in 0..10 {
        for f in files {
            write_lines(&dir, f, step * N / 10, (step + 1) * N / 10);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_progress(Some(&mut agent), "every line at the server", STALL, LIMIT, || {
        count_all(&server, &files, N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    let dups = check(&server.received(), &files, N);
    println!("{name}: {} lines, {dups} duplicates", 2 * N);
    let m = agent.metrics().expect("metrics");
    assert!(
        m.val("tailship_send_retries_total") > 0.0,
        "the chaos server made no retry"
    );
    // Every batch acknowledged (the last ack may still be on its way when its lines are in:
    // the server writes a chunk's lines before it acks it).
    let acked = wait_until(Duration::from_secs(30), || {
        agent
            .metrics()
            .and_then(|m| m.get_with("tailship_records_sent_total", "fwd"))
            .is_some_and(|sent| sent >= (2 * N) as f64)
    });
    assert!(acked, "not every batch was acknowledged\n{}", agent.diag());
}

#[test]
fn chaos_server_withheld_acks_and_closes_mid_message_lose_nothing() {
    run_chaos("forward-chaos", &["--chaos"], "");
}

#[test]
fn gzip_and_a_shared_key_with_the_chaos_server() {
    run_chaos(
        "forward-gzip-key",
        &["--chaos", "--shared-key", "s3cret"],
        "compression = \"gzip\"\nshared_key = \"s3cret\"\n",
    );
}

#[test]
fn a_wrong_shared_key_sends_nothing_and_says_why() {
    let dir = TestDir::new("forward-wrong-key");
    let port = free_port();
    let server = Server::start(&dir, port, &["--shared-key", "right"]);
    let mut agent = start(&dir, &config(&dir, port, "shared_key = \"wrong-s3cret\"\n"));
    write_lines(&dir, "a", 0, 100);
    assert!(
        agent.logged_within("shared key mismatch", Duration::from_secs(20)),
        "no log line about the refused key\n{}",
        agent.diag()
    );
    assert!(!agent.stderr().contains("wrong-s3cret"), "the key reached the log");
    assert!(server.received().is_empty());
    let m = agent.metrics().expect("metrics");
    assert_eq!(m.get_with("tailship_sink_up", "fwd"), Some(0.0));
}

#[test]
fn kill9_twice_loses_nothing() {
    const N: u64 = 30_000;
    let files = ["k"];
    let dir = TestDir::new("forward-kill9");
    let port = free_port();
    let server = Server::start(&dir, port, &["--chaos"]);
    let cfg = config(&dir, port, "");
    let mut agent = start(&dir, &cfg);
    for round in 0..3u64 {
        write_lines(&dir, "k", round * N / 3, (round + 1) * N / 3);
        if round < 2 {
            let target = (round + 1) * N / 6;
            wait_progress(Some(&mut agent), "some lines", STALL, LIMIT, || {
                let (n, _) = count_all(&server, &files, N);
                (n, n >= target)
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
            agent.kill9();
            agent = start(&dir, &cfg);
        }
    }
    wait_progress(Some(&mut agent), "every line after two kill -9", STALL, LIMIT, || {
        count_all(&server, &files, N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    let dups = check(&server.received(), &files, N);
    println!("forward kill -9 x2: {N} lines, {dups} duplicates");
}
