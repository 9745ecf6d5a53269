//! Ingest benchmark for the network inputs: client threads in this process POST OTLP/HTTP
//! protobuf requests of 512 log records to the real `tailship` binary's `otlp` input (the
//! spool on, as always), and a `tcp` sink ships them as NDJSON to a counting receiver here.
//! Prints records per second, the agent's CPU seconds per million records and its peak RSS,
//! for `spool_fsync = "batch"` (an fsync before every answer, the default) or `"interval"`.
//!
//! Run: `cargo bench --bench ingest` (the agent built with the bench profile, i.e. release).
//! Knobs (environment):
//! - `INGEST_RECORDS` how many records (default 1,000,000)
//! - `INGEST_BATCH`   records per request (default 512)
//! - `INGEST_CLIENTS` client threads, each with one keep-alive connection (default 4)
//! - `INGEST_FSYNC`   `batch` (default) or `interval`
//! - `INGEST_BIN`     run this agent binary instead of the one cargo built
//!
//! Every request is built before the clock starts (the records' bodies are corpus-like text
//! of 80–200 bytes with a `seq` attribute, as an SDK's stdlib logging bridge sends them), so
//! the clients cost only their writes and reads. A 429 (spool full) is retried after its
//! `Retry-After`. The run ends when the receiver has counted every record.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let records = env_u64("INGEST_RECORDS", 1_000_000);
    let batch = env_u64("INGEST_BATCH", 512).max(1);
    let clients = env_u64("INGEST_CLIENTS", 4).max(1);
    let fsync = std::env::var("INGEST_FSYNC").unwrap_or_else(|_| "batch".into());
    assert!(
        fsync == "batch" || fsync == "interval",
        "INGEST_FSYNC must be batch or interval"
    );
    let bin = std::env::var("INGEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tailship").to_owned());

    // The requests, built up front: request i holds records i*batch .. (i+1)*batch.
    let requests: Vec<Vec<u8>> = (0..records.div_ceil(batch))
        .map(|i| request(i * batch, batch.min(records - i * batch)))
        .collect();
    let body_bytes: usize = requests.iter().map(Vec::len).sum();

    let rx = Counter::start();
    let dir = std::env::temp_dir().join(format!("tailship-ingest-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("data")).unwrap();
    let port = free_port();
    let config = dir.join("tailship.toml");
    fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[metrics]\naddress = \"127.0.0.1:0\"\n\n[[sources]]\nname = \"bench\"\ntype = \"otlp\"\naddress = \"127.0.0.1:{port}\"\nspool_fsync = \"{fsync}\"\n\n[[sinks]]\nname = \"out\"\ntype = \"tcp\"\naddress = \"{}\"\nencoding = \"ndjson\"\n",
            dir.join("data").to_string_lossy(),
            rx.addr
        ),
    )
    .unwrap();
    let mut agent = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("agent.stderr")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the input never listened on {addr}");
        thread::sleep(Duration::from_millis(20));
    }
    let pid = agent.id() as i32;
    let cpu0 = proc_cpu(pid).expect("agent cpu");

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(requests);
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (next, retries, requests) = (Arc::clone(&next), Arc::clone(&retries), Arc::clone(&requests));
            thread::spawn(move || client(addr, &requests, &next, &retries))
        })
        .collect();
    for w in workers {
        w.join()
            .expect("a client thread")
            .unwrap_or_else(|e| panic!("client: {e}"));
    }
    let acked = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while rx.lines.load(Ordering::Relaxed) < records {
        assert!(
            Instant::now() < deadline,
            "{} of {records} records arrived in 10 min",
            rx.lines.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(5));
    }
    let delivered = started.elapsed();
    let cpu1 = proc_cpu(pid).expect("agent cpu");
    let hwm = proc_hwm_kib(pid).unwrap_or(0);
    let _ = agent.kill();
    let _ = agent.wait();
    let cpu = (cpu1.0 - cpu0.0) + (cpu1.1 - cpu0.1);
    println!(
        "ingest otlp/http → tcp, spool_fsync = {fsync}: {records} records in requests of {batch} from {clients} clients ({:.1} MB of protobuf)",
        body_bytes as f64 / 1e6
    );
    println!(
        "  all acknowledged in {:.2} s, all delivered in {:.2} s: {:.0} records/s; agent CPU {:.2} s (user {:.2}, sys {:.2}) = {:.2} CPU-s per million records; peak RSS {:.1} MiB; {} requests pushed back",
        acked.as_secs_f64(),
        delivered.as_secs_f64(),
        records as f64 / delivered.as_secs_f64(),
        cpu,
        cpu1.0 - cpu0.0,
        cpu1.1 - cpu0.1,
        cpu / (records as f64 / 1e6),
        hwm as f64 / 1024.0,
        retries.load(Ordering::Relaxed)
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Sends requests (taking the next unsent index each time) on one keep-alive connection,
/// retrying a 429 after its Retry-After.
fn client(addr: SocketAddr, requests: &[Vec<u8>], next: &AtomicU64, retries: &AtomicU64) -> io::Result<()> {
    let mut conn = BufReader::new(TcpStream::connect(addr)?);
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
        let Some(body) = requests.get(i) else { return Ok(()) };
        loop {
            let head = format!(
                "POST /v1/logs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let s = conn.get_mut();
            s.write_all(head.as_bytes())?;
            s.write_all(body)?;
            let (status, retry_after) = answer(&mut conn)?;
            match status {
                200 => break,
                429 | 503 => {
                    retries.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(Duration::from_secs(retry_after.unwrap_or(1)));
                }
                other => return Err(io::Error::other(format!("status {other}"))),
            }
        }
    }
}

/// Reads one HTTP answer: its status and Retry-After; the body is read and dropped.
fn answer(conn: &mut BufReader<TcpStream>) -> io::Result<(u16, Option<u64>)> {
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
    let (mut length, mut retry_after) = (0usize, None);
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse().unwrap_or(0);
        } else if k.eq_ignore_ascii_case("retry-after") {
            retry_after = v.trim().parse().ok();
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body)?;
    Ok((status, retry_after))
}

/// Corpus-like bodies of 80–200 bytes, the `seq` attribute, a resource as an SDK sets it.
fn request(first: u64, n: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "GET",
        "/api/v1/orders",
        "200",
        "user",
        "id=4821",
        "took",
        "12ms",
        "cache",
        "miss",
        "backend",
        "pool",
        "conn",
        "acquired",
        "released",
        "request",
        "completed",
        "payment",
        "queued",
        "retry",
        "timeout",
        "upstream",
        "10.2.4.17:8080",
        "session",
        "refreshed",
    ];
    let records = (first..first + n)
        .map(|i| {
            let mut body = format!("{i}");
            let mut k = i as usize;
            while body.len() < 80 + (i as usize * 7919) % 120 {
                k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                body.push(' ');
                body.push_str(WORDS[(k >> 33) % WORDS.len()]);
            }
            LogRecord {
                time_unix_nano: 1_800_000_000_000_000_000 + i,
                observed_time_unix_nano: 1_800_000_000_000_000_000 + i,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: Some(AnyValue {
                    value: Some(Value::StringValue(body)),
                }),
                attributes: vec![
                    kv("seq", Value::IntValue(i as i64)),
                    kv("code.function", Value::StringValue("handle_request".into())),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue("checkout".into())),
                    kv("telemetry.sdk.language", Value::StringValue("python".into())),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Counts the newlines (records) the sink sends.
struct Counter {
    addr: SocketAddr,
    lines: Arc<AtomicU64>,
}

impl Counter {
    fn start() -> Counter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(AtomicU64::new(0));
        let l = Arc::clone(&lines);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let l = Arc::clone(&l);
                thread::spawn(move || {
                    let mut s = stream;
                    let mut buf = vec![0u8; 4 << 20];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        l.fetch_add(memchr::memchr_iter(b'\n', &buf[..n]).count() as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        Counter { addr, lines }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// (utime, stime) of `pid` in seconds.
fn proc_cpu(pid: i32) -> Option<(f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((
        f.get(11)?.parse::<f64>().ok()? / tck,
        f.get(12)?.parse::<f64>().ok()? / tck,
    ))
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
