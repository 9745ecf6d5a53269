//! End-to-end benchmark: the real `tailship` binary reads ≥ 1 GiB of real log lines from disk
//! (`raw` source) and ships them to a counting TCP receiver (`tcp` sink, NDJSON by default) in
//! this process; prints throughput, the agent's CPU seconds (and per GB) and its peak RSS.
//!
//! Run: `cargo bench --bench e2e` (builds the agent with the bench profile, i.e. release).
//! Knobs (environment):
//! - `E2E_BYTES`    input size, e.g. `1073741824`, `256M`, `2G` (default 1 GiB)
//! - `E2E_FILES`    number of input files the bytes are spread over (default 1)
//! - `E2E_ENCODING` `ndjson` (default) or `raw` (tcp sink only)
//! - `E2E_FORMAT`   the source format: `raw` (default; the corpus lines), `combined` (the access
//!   log's lines), `syslog` (the Linux and OpenSSH syslog lines), `json` (each corpus
//!   line wrapped as `{"time":…,"level":…,"msg":<line>,"n":…}`, a structured log) or `cri`
//!   (each line as containerd writes it under `/var/log/pods`, the node-mode path)
//! - `E2E_SINK`     `tcp` (default), `http` (NDJSON POSTs), `http-gzip`, or `otlp` (OTLP/HTTP
//!   protobuf); the HTTP receiver decodes every body (gunzips it, counts its NDJSON records, or
//!   decodes the OTLP request with the official protobuf types and counts its log records)
//!   and discards it; or `kafka-lz4` / `kafka-zstd` (the kafka sink, `E2E_ENCODING` as for
//!   tcp, to topic `e2e` of the broker at `E2E_KAFKA`, which must run and have that topic,
//!   e.g. `tansu broker --listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/`
//!   and `tansu topic create e2e --partitions 1`; the run ends when the agent's
//!   `tailship_records_sent_total`, i.e. what the broker acknowledged, reaches every line)
//! - `E2E_DIR`      where inputs and scratch go (default `<target>/e2e`)
//! - `E2E_SINKS`    how many tcp sinks read the source (default 1): the cost of a second sink
//! - `E2E_RATE`     steady mode: instead of a ready file, append corpus lines at this many bytes
//!   per second (e.g. `10M`) for `E2E_SECONDS` (default 30), a write every 10 ms, and report
//!   the agent's share of one core; `E2E_BYTES` is then ignored
//! - `E2E_INFLIGHT` the agent's `max_inflight_bytes` (default: the agent's default)
//! - `E2E_TRANSFORMS` the source's `transforms`: TOML as written after `transforms = `, or
//!   `redact` for a `redact` with every preset (what docs/performance.md measures)
//! - `E2E_BIN`      run this agent binary instead of the one cargo built (a before/after pair
//!   measured with the same harness)
//! - `E2E_RESULT`   append this run's figures to this file as one JSON line (what
//!   `scripts/perf-chart.py` draws `docs/performance.svg` from; `docs/performance-runs.jsonl`
//!   is the one it reads by default)
//! - `E2E_CALLGRIND=1` runs the agent under `valgrind --tool=callgrind` and reports the
//!   user-space instructions it executed per byte of input. Unlike seconds, the count repeats
//!   exactly whatever else the machine is doing, so it is the number to judge an optimisation
//!   by. Callgrind runs the agent ~50× slower: use a smaller `E2E_BYTES` (e.g. `64M`); the
//!   count includes start-up and shutdown, which that size makes negligible.
//!   `E2E_CALLGRIND_OUT=<path>` keeps the profile for `callgrind_annotate`.
//!
//! The input is built once per (size, files) from the lines of
//! `tests/data/apache-combined/access.log` and `tests/data/loghub/*.log`, mixed
//! in a fixed pseudo-random order with their real lengths, and reused by later runs; it is
//! written before the agent starts, so the run measures reading from the page cache, encoding
//! and shipping, which is where an agent spends its CPU. The receiver only counts newlines
//! (memchr over 4 MiB reads), so it stays cheap next to the agent it measures, though on a
//! 2-core machine the two still share the CPUs: CPU-s per GB is the steadier number.
//!
//! The binary's path comes from `CARGO_BIN_EXE_tailship`, which cargo sets when it builds
//! benchmarks too; `cargo bench` builds the binary with the same profile first.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and a 1 GiB run has no
    // place in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: skipped (run it with `cargo bench --bench e2e`)");
        return;
    }
    let bytes = std::env::var("E2E_BYTES")
        .ok()
        .map(|v| parse_size(&v))
        .unwrap_or(1 << 30);
    let files: usize = std::env::var("E2E_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let encoding = std::env::var("E2E_ENCODING").unwrap_or_else(|_| "ndjson".into());
    assert!(
        encoding == "ndjson" || encoding == "raw",
        "E2E_ENCODING must be ndjson or raw"
    );
    let format = std::env::var("E2E_FORMAT").unwrap_or_else(|_| "raw".into());
    assert!(
        matches!(format.as_str(), "raw" | "json" | "cri" | "combined" | "syslog"),
        "E2E_FORMAT must be raw, json, cri, combined or syslog"
    );
    let sinks: u64 = std::env::var("E2E_SINKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let rate = std::env::var("E2E_RATE").ok().map(|v| parse_size(&v));
    let seconds: u64 = std::env::var("E2E_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let sink = std::env::var("E2E_SINK").unwrap_or_else(|_| "tcp".into());
    assert!(
        matches!(
            sink.as_str(),
            "tcp" | "http" | "http-gzip" | "otlp" | "kafka-lz4" | "kafka-zstd"
        ),
        "E2E_SINK must be tcp, http, http-gzip, otlp, kafka-lz4 or kafka-zstd"
    );
    // The kafka sink is counted by the agent's own metric of acknowledged records.
    let kafka = sink.strip_prefix("kafka-").map(|codec| {
        let broker = std::env::var("E2E_KAFKA")
            .unwrap_or_else(|_| panic!("E2E_SINK={sink} needs E2E_KAFKA=host:port of a running broker with topic e2e"));
        let metrics = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        (codec.to_owned(), broker, metrics)
    });
    let base = std::env::var_os("E2E_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(default_dir);

    // Steady mode (`E2E_RATE`): the input is written while the agent runs, into a fresh file.
    let input = match rate {
        None => base.join(format!("input-{format}-{bytes}-{files}")),
        Some(_) => base.join(format!("steady-{}", std::process::id())),
    };
    let (lines, total_bytes, steady) = match rate {
        None => {
            let lines = prepare_input(&input, bytes, files, &format);
            let total: u64 = (0..files)
                .map(|i| fs::metadata(input.join(format!("app-{i}.log"))).unwrap().len())
                .sum();
            (lines, total, None)
        }
        Some(rate) => {
            let _ = fs::remove_dir_all(&input);
            fs::create_dir_all(&input).unwrap();
            let (lines, total) = steady_plan(rate, seconds, &format);
            File::create(input.join("app-0.log")).unwrap();
            (lines, total, Some(rate))
        }
    };
    let expected = lines * sinks;

    // Fresh data dir each run: a checkpoint from the last run would make this one a no-op.
    let run = base.join(format!("run-{}", std::process::id()));
    let _ = fs::remove_dir_all(&run);
    fs::create_dir_all(run.join("data")).unwrap();

    let rx = match sink.as_str() {
        "tcp" => CountingReceiver::start(),
        _ => CountingReceiver::start_http(),
    };
    let one_sink = match sink.as_str() {
        _ if kafka.is_some() => {
            let (codec, broker, _) = kafka.as_ref().unwrap();
            format!(
                "type = \"kafka\"\nbrokers = [\"{broker}\"]\ntopic = \"e2e\"\nencoding = \"{encoding}\"\ncompression = \"{codec}\""
            )
        }
        "tcp" => format!("type = \"tcp\"\naddress = \"{}\"\nencoding = \"{encoding}\"", rx.addr),
        "http" => format!("type = \"http\"\nurl = \"http://{}/ingest\"", rx.addr),
        "otlp" => format!("type = \"otlp\"\nurl = \"http://{}\"", rx.addr),
        _ => format!(
            "type = \"http\"\nurl = \"http://{}/ingest\"\ncompression = \"gzip\"",
            rx.addr
        ),
    };
    let sink_lines = (0..sinks)
        .map(|i| format!("name = \"out{i}\"\n{one_sink}"))
        .collect::<Vec<_>>()
        .join("\n\n[[sinks]]\n");
    let config = run.join("tailship.toml");
    fs::write(
        &config,
        format!(
            "data_dir = {data}\n{inflight}[metrics]\n{metrics}\n\n[[sources]]\nname = \"bench\"\ninclude = [{glob}]\nformat = \"{format}\"\nread_from = \"beginning\"\n{transforms}\n[[sinks]]\n{sink_lines}\n",
            // JSON string escaping is valid TOML basic-string escaping.
            data = serde_json::to_string(&run.join("data").to_string_lossy()).unwrap(),
            metrics = match &kafka {
                Some((_, _, addr)) => format!("address = \"{addr}\""),
                None => "enabled = false".to_owned(),
            },
            inflight = std::env::var("E2E_INFLIGHT")
                .map(|v| format!("max_inflight_bytes = {}\n", parse_size(&v)))
                .unwrap_or_default(),
            glob = serde_json::to_string(&format!("{}/*.log", input.display())).unwrap(),
            transforms = match std::env::var("E2E_TRANSFORMS").as_deref() {
                Err(_) => String::new(),
                Ok("redact") => "transforms = [{ type = \"redact\", presets = [\"credit_card\", \"email\", \"ipv4\", \"ipv6\", \"bearer\", \"jwt\", \"aws_access_key\", \"password\"] }]\n".to_owned(),
                Ok(t) => format!("transforms = {t}\n"),
            },
        ),
    )
    .unwrap();

    // `E2E_BIN` runs another build of the agent with the same harness (a before/after pair).
    let bin_owned = std::env::var("E2E_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tailship").to_owned());
    let bin = bin_owned.as_str();
    let stderr_path = run.join("agent.stderr");
    let callgrind_out = std::env::var("E2E_CALLGRIND")
        .is_ok_and(|v| v == "1")
        .then(|| run.join("callgrind.out"));
    let mut command = match &callgrind_out {
        Some(out) => {
            let mut c = Command::new("valgrind");
            c.arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let t0 = Instant::now();
    let mut child = command
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin} (valgrind for E2E_CALLGRIND): {e}"));
    let pid = child.id() as i32;
    let self_cpu0 = self_cpu_seconds();
    let writer = steady.map(|rate| {
        let path = input.join("app-0.log");
        let format = format.clone();
        thread::spawn(move || write_steady(&path, rate, seconds, &format))
    });

    // Wait for every line; give up if nothing moves for 60 s.
    let (mut last, mut last_move, mut last_report) = (0u64, Instant::now(), Instant::now());
    let mut acked = 0u64;
    loop {
        let got = match &kafka {
            Some((_, _, addr)) => {
                thread::sleep(Duration::from_millis(20));
                acked = records_sent(*addr).unwrap_or(acked);
                acked
            }
            None => rx.lines.load(Ordering::Relaxed),
        };
        if got >= expected {
            break;
        }
        if got != last {
            last = got;
            last_move = Instant::now();
        }
        if let Ok(Some(st)) = child.try_wait() {
            fail(
                &stderr_path,
                &format!("the agent exited early ({st}) at {got}/{lines} lines"),
            );
        }
        if last_move.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            fail(&stderr_path, &format!("no progress for 60 s at {got}/{lines} lines"));
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  … {got}/{lines} lines after {:.1?}", t0.elapsed());
            last_report = Instant::now();
        }
        thread::sleep(Duration::from_millis(2));
    }
    let wall = t0.elapsed().as_secs_f64();
    if let Some(w) = writer {
        w.join().unwrap();
    }
    let self_cpu = self_cpu_seconds() - self_cpu0;
    let (utime, stime) = proc_cpu(pid).unwrap_or((0.0, 0.0));
    let hwm_kib = proc_hwm_kib(pid).unwrap_or(0);
    let threads = proc_threads(pid);

    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let t_stop = Instant::now();
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        // Callgrind writes its counts at exit, which takes a while for a large run.
        let patience = if callgrind_out.is_some() { 300 } else { 30 };
        if t_stop.elapsed() > Duration::from_secs(patience) {
            let _ = child.kill();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };

    let cpu = utime + stime;
    let gb = total_bytes as f64 / 1e9;
    // The tcp sink's encoding is a knob; the HTTP sinks' wire format is in their name.
    let wire = if sink == "tcp" || kafka.is_some() {
        format!(" {encoding}")
    } else {
        String::new()
    };
    println!(
        "e2e: tailship {format} → {sink}{wire}, {total_bytes} bytes, {lines} lines in {files} file(s), {} CPUs",
        num_cpus()
    );
    println!("  wall           {wall:.3} s (agent start → last line received)");
    println!(
        "  throughput     {:.1} MB/s input, {:.2} M lines/s",
        total_bytes as f64 / 1e6 / wall,
        lines as f64 / 1e6 / wall
    );
    println!(
        "  agent CPU      {cpu:.2} s (user {utime:.2} + sys {stime:.2}) = {:.2} CPU-s/GB",
        cpu / gb
    );
    println!("  agent peak RSS {:.1} MiB (VmHWM)", hwm_kib as f64 / 1024.0);
    if steady.is_some() {
        println!(
            "  steady         {:.1} MB/s for {seconds} s: agent {:.2}% of one core",
            total_bytes as f64 / 1e6 / seconds as f64,
            100.0 * cpu / wall
        );
    }
    // Where the agent's CPU went, by thread: which stage pays, and how often it woke.
    for (name, cpu_s, switches) in threads.iter().take(8) {
        println!("  thread         {name:<16} {cpu_s:6.2} CPU-s, {switches} wake-ups");
    }
    if sinks > 1 {
        println!("  sinks          {sinks} tcp sinks reading the source ({expected} records expected)");
    }
    println!(
        "  receiver       {} bytes on the wire ({:.2}× input), {} records, this process's CPU {self_cpu:.2} s",
        rx.bytes.load(Ordering::Relaxed),
        rx.bytes.load(Ordering::Relaxed) as f64 / total_bytes as f64,
        rx.lines.load(Ordering::Relaxed)
    );
    println!(
        "  exit           {} after SIGTERM ({:.2?})",
        status.map_or("still running, killed".to_string(), |s| s.to_string()),
        t_stop.elapsed()
    );
    if let Ok(path) = std::env::var("E2E_RESULT") {
        let result = serde_json::json!({
            "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "commit": option_env!("TAILSHIP_GIT_COMMIT"),
            "path": format!("{format} → {sink}{wire}"),
            "bytes": total_bytes,
            "files": files,
            "cpus": num_cpus(),
            "mb_per_s": total_bytes as f64 / 1e6 / wall,
            "cpu_s_per_gb": cpu / gb,
            "peak_rss_mib": hwm_kib as f64 / 1024.0,
            "steady": steady.is_some(),
        });
        let line = format!("{result}\n");
        if let Err(e) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
        {
            fail(&stderr_path, &format!("cannot append the result to {path}: {e}"));
        }
        println!("  result         appended to {path}");
    }
    if let Some(out) = &callgrind_out {
        match callgrind_total(out) {
            Some(ir) => println!(
                "  callgrind      {ir} instructions (user space, all threads) = {:.2} per input byte",
                ir as f64 / total_bytes as f64
            ),
            None => fail(&stderr_path, &format!("no instruction total in {}", out.display())),
        }
        // `E2E_CALLGRIND_OUT=<path>` keeps the profile for `callgrind_annotate`.
        if let Ok(keep) = std::env::var("E2E_CALLGRIND_OUT") {
            fs::copy(out, &keep).unwrap_or_else(|e| panic!("copy the profile to {keep}: {e}"));
            println!("  profile        {keep}");
        }
    }
    let _ = fs::remove_dir_all(&run);
}

/// The total instruction count (`Ir`) of a callgrind output file: its `summary:` (or
/// `totals:`) line.
fn callgrind_total(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The agent's `tailship_records_sent_total` (summed over its sinks) from its metrics endpoint.
fn records_sent(addr: std::net::SocketAddr) -> Option<u64> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let sum = body
        .lines()
        .filter(|l| l.starts_with("tailship_records_sent_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Some(sum as u64)
}

fn fail(stderr_path: &Path, why: &str) -> ! {
    let text = fs::read_to_string(stderr_path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    eprintln!("e2e failed: {why}\n--- agent stderr (last lines):");
    for l in tail.iter().rev() {
        eprintln!("{l}");
    }
    std::process::exit(1);
}

/// `<target>/e2e`: the bench executable lives in `<target>/<profile>/deps/`.
fn default_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(Path::to_path_buf))
        .map(|t| t.join("e2e"))
        .unwrap_or_else(|| std::env::temp_dir().join("tailship-e2e"))
}

fn parse_size(v: &str) -> u64 {
    let v = v.trim();
    let (num, mult) = match v.char_indices().last() {
        Some((i, 'K' | 'k')) => (&v[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&v[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    num.trim()
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("bad E2E_BYTES {v:?}"))
        * mult
}

/// The corpus lines (raw bytes, without their newline), in a fixed mixed order.
fn corpus_lines(format: &str) -> Vec<Vec<u8>> {
    let root = Path::new(CORPUS);
    let files: Vec<PathBuf> = match format {
        // A structured format's own lines: they must parse.
        "combined" => vec![root.join("apache-combined/access.log")],
        "syslog" => vec![root.join("loghub/Linux_2k.log"), root.join("loghub/OpenSSH_2k.log")],
        _ => {
            let mut files = vec![root.join("apache-combined/access.log")];
            let mut hub: Vec<PathBuf> = fs::read_dir(root.join("loghub"))
                .unwrap_or_else(|e| panic!("{CORPUS}/loghub: {e}"))
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            hub.sort();
            files.extend(hub);
            files
        }
    };
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for f in &files {
        let data = fs::read(f).unwrap_or_else(|e| panic!("read corpus {}: {e}", f.display()));
        lines.extend(
            data.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    assert!(!lines.is_empty(), "no corpus lines under {CORPUS}");
    // Fisher–Yates with a fixed LCG: formats interleave as in a node's mixed logs, and every
    // run gets the same input.
    let mut state: u64 = 0x2545F4914F6CDD1D;
    for i in (1..lines.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lines.swap(i, (state >> 33) as usize % (i + 1));
    }
    lines
}

/// Writes (once) `files` files totalling at least `bytes`; returns the number of lines.
/// Steady mode: how many lines, and bytes, `write_steady` writes at `rate` for `seconds`.
fn steady_plan(rate: u64, seconds: u64, format: &str) -> (u64, u64) {
    let corpus = corpus_lines(format);
    let (mut lines, mut bytes, mut next) = (0u64, 0u64, 0usize);
    while bytes < rate * seconds {
        bytes += corpus[next % corpus.len()].len() as u64 + 1;
        next += 1;
        lines += 1;
    }
    (lines, bytes)
}

/// Appends corpus lines to `path` at `rate` bytes per second for `seconds`, a write and flush
/// every 10 ms, as a busy app's logger does.
fn write_steady(path: &Path, rate: u64, seconds: u64, format: &str) {
    let corpus = corpus_lines(format);
    let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
    let total = rate * seconds;
    let (mut written, mut next) = (0u64, 0usize);
    let t0 = Instant::now();
    let mut buf = Vec::new();
    while written < total {
        let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        buf.clear();
        while written < due {
            let l = &corpus[next % corpus.len()];
            buf.extend_from_slice(l);
            buf.push(b'\n');
            written += l.len() as u64 + 1;
            next += 1;
        }
        f.write_all(&buf).unwrap();
        f.flush().unwrap();
        thread::sleep(Duration::from_millis(10));
    }
}

fn prepare_input(dir: &Path, bytes: u64, files: usize, format: &str) -> u64 {
    let marker = dir.join("lines");
    if let Some(n) = fs::read_to_string(&marker).ok().and_then(|s| s.trim().parse().ok()) {
        eprintln!("e2e: reusing input in {}", dir.display());
        return n;
    }
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let corpus = corpus_lines(format);
    let per_file = bytes.div_ceil(files as u64);
    let mut total_lines = 0u64;
    let mut next = 0usize;
    let t = Instant::now();
    for i in 0..files {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(dir.join(format!("app-{i}.log"))).unwrap());
        let mut written = 0u64;
        while written < per_file {
            let l = &corpus[next % corpus.len()];
            next += 1;
            let json_line;
            let cri_line;
            let l = if format == "cri" {
                // What containerd writes under /var/log/pods: the runtime's time, the stream,
                // the `F` tag, then the app's line.
                let secs = 1_780_000_000 + next as i64 / 1000;
                let mut v = chrono::DateTime::from_timestamp(secs, (next % 1000) as u32 * 1_000_017)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    .into_bytes();
                v.extend_from_slice(if next.is_multiple_of(8) {
                    b" stderr F "
                } else {
                    b" stdout F "
                });
                v.extend_from_slice(l);
                cri_line = v;
                &cri_line[..]
            } else if format == "json" {
                // A structured line as an app logger writes it; the corpus line is the message.
                const LEVELS: [&str; 4] = ["info", "debug", "warn", "error"];
                let secs = 1_780_000_000 + next as u64 / 1000;
                json_line = format!(
                    "{{\"time\":\"{}\",\"level\":\"{}\",\"msg\":{},\"n\":{next},\"svc\":\"bench\"}}",
                    chrono::DateTime::from_timestamp(secs as i64, (next % 1000) as u32 * 1_000_000)
                        .unwrap()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    LEVELS[next % 4],
                    serde_json::to_string(&String::from_utf8_lossy(l)).unwrap(),
                );
                json_line.as_bytes()
            } else {
                &l[..]
            };
            w.write_all(l).unwrap();
            w.write_all(b"\n").unwrap();
            written += l.len() as u64 + 1;
            total_lines += 1;
        }
        w.flush().unwrap();
    }
    fs::write(&marker, total_lines.to_string()).unwrap();
    eprintln!(
        "e2e: wrote {total_lines} lines ({bytes} bytes) to {} in {:.1?}",
        dir.display(),
        t.elapsed()
    );
    total_lines
}

/// Accepts any number of connections and counts bytes and newlines.
struct CountingReceiver {
    addr: std::net::SocketAddr,
    lines: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl CountingReceiver {
    fn start() -> CountingReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (l, b) = (lines.clone(), bytes.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (l, b) = (l.clone(), b.clone());
                thread::spawn(move || count(stream, &l, &b));
            }
        });
        CountingReceiver { addr, lines, bytes }
    }
}

impl CountingReceiver {
    /// An HTTP collector on tiny_http: reads each body, gunzips it if it says gzip, counts its
    /// records (newlines), discards it and answers 200. Two threads serve the sink's two
    /// requests in flight.
    fn start_http() -> CountingReceiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let lines = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        for _ in 0..2 {
            let (server, l, b) = (server.clone(), lines.clone(), bytes.clone());
            thread::spawn(move || {
                let mut body = Vec::with_capacity(2 << 20);
                let mut plain = Vec::with_capacity(8 << 20);
                while let Ok(mut req) = server.recv() {
                    body.clear();
                    let _ = req.as_reader().read_to_end(&mut body);
                    let gzip = req
                        .headers()
                        .iter()
                        .any(|h| h.field.equiv("Content-Encoding") && h.value.as_str() == "gzip");
                    let otlp = req
                        .headers()
                        .iter()
                        .any(|h| h.field.equiv("Content-Type") && h.value.as_str() == "application/x-protobuf");
                    let data = if gzip {
                        plain.clear();
                        flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain).unwrap();
                        &plain[..]
                    } else {
                        &body[..]
                    };
                    b.fetch_add(body.len() as u64, Ordering::Relaxed);
                    let records = if otlp {
                        use prost::Message as _;
                        let r = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(data)
                            .expect("an OTLP logs request");
                        r.resource_logs
                            .iter()
                            .flat_map(|rl| &rl.scope_logs)
                            .map(|sl| sl.log_records.len() as u64)
                            .sum()
                    } else {
                        memchr::memchr_iter(b'\n', data).count() as u64
                    };
                    l.fetch_add(records, Ordering::Relaxed);
                    let _ = req.respond(tiny_http::Response::empty(200));
                }
            });
        }
        CountingReceiver { addr, lines, bytes }
    }
}

fn count(mut s: TcpStream, lines: &AtomicU64, bytes: &AtomicU64) -> io::Result<()> {
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let nl = memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        lines.fetch_add(nl, Ordering::Relaxed);
    }
}

/// (utime, stime) of `pid` in seconds.
fn proc_cpu(pid: i32) -> Option<(f64, f64)> {
    stat_cpu(Path::new(&format!("/proc/{pid}/stat")))
}

/// (utime, stime) in seconds from a `/proc/…/stat` file (a process's or a thread's).
fn stat_cpu(path: &Path) -> Option<(f64, f64)> {
    let stat = fs::read_to_string(path).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((
        f.get(11)?.parse::<f64>().ok()? / tck,
        f.get(12)?.parse::<f64>().ok()? / tck,
    ))
}

/// The agent's threads, busiest first: (name, CPU seconds, voluntary context switches).
fn proc_threads(pid: i32) -> Vec<(String, f64, u64)> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, f64, u64)> = tasks
        .flatten()
        .filter_map(|task| {
            let dir = task.path();
            let (user, sys) = stat_cpu(&dir.join("stat"))?;
            let name = fs::read_to_string(dir.join("comm"))
                .unwrap_or_default()
                .trim()
                .to_owned();
            let switches = fs::read_to_string(dir.join("status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            Some((name, user + sys, switches))
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

fn proc_hwm_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds of this process (the receiver's threads, mostly).
fn self_cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn num_cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}
