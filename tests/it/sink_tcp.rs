//! The tcp sink against receivers that drop what they were sent (issue 10): one that closes the
//! connection on any record over 32 KiB, as Fluent Bit's `in_tcp` does with its default buffer
//! (the poison records end in the dead-letter file, the rest arrives); one that reads slowly
//! and closes with bytes unread, several times (nothing lost); `sink_up` while the receiver is
//! down; and TLS with a test CA (every line arrives) or the wrong one (nothing is sent).
//! Duplicates are printed and checked against what the sink says it resent.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::util::*;

/// How a receiver treats a connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Reads into a 32 KiB buffer and closes when a line does not fit (Fluent Bit's `in_tcp`).
    FluentBit,
    /// For the first `closes` connections: reads `slice` bytes every `pause`, and closes after
    /// `after` bytes, whatever is unread; then reads normally.
    SlowThenClose {
        closes: u64,
        slice: usize,
        pause: Duration,
        after: u64,
    },
}

/// A raw-TCP receiver of NDJSON test lines: counts each `message`'s sequence number.
struct LineReceiver {
    addr: SocketAddr,
    seen: Arc<Mutex<HashMap<u64, u32>>>,
    closes: Arc<AtomicU64>,
    lines: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl LineReceiver {
    fn start(behaviour: Behaviour) -> LineReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let r = LineReceiver {
            addr,
            seen: Arc::default(),
            closes: Arc::default(),
            lines: Arc::default(),
            stop: Arc::default(),
        };
        let (seen, closes, lines, stop) = (r.seen.clone(), r.closes.clone(), r.lines.clone(), r.stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            for s in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(s) = s else { continue };
                n += 1;
                let (seen, closes, lines) = (seen.clone(), closes.clone(), lines.clone());
                let conn = n;
                thread::spawn(move || serve(s, behaviour, conn, &seen, &closes, &lines));
            }
        });
        r
    }

    fn counts(&self) -> HashMap<u64, u32> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for LineReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// The sequence number of a test line's NDJSON record: the message is `t <seq> ...`.
fn seq_of(line: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let msg = v.get("message")?.as_str()?;
    msg.strip_prefix("t ")?.split(' ').next()?.parse().ok()
}

fn serve(
    mut s: TcpStream,
    behaviour: Behaviour,
    conn: u64,
    seen: &Mutex<HashMap<u64, u32>>,
    closes: &AtomicU64,
    lines: &AtomicU64,
) {
    let (cap, slow) = match behaviour {
        Behaviour::FluentBit => (32 << 10, None),
        Behaviour::SlowThenClose {
            closes,
            slice,
            pause,
            after,
        } if conn <= closes => (usize::MAX, Some((slice, pause, after))),
        Behaviour::SlowThenClose { .. } => (usize::MAX, None),
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut scratch = vec![0u8; 64 << 10];
    let mut read_total = 0u64;
    loop {
        let want = match slow {
            Some((slice, _, _)) => slice,
            None => scratch.len(),
        };
        let room = cap.saturating_sub(buf.len()).min(want);
        if room == 0 {
            // A line longer than the buffer: Fluent Bit closes the connection.
            closes.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let n = match s.read(&mut scratch[..room]) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        read_total += n as u64;
        buf.extend_from_slice(&scratch[..n]);
        let mut start = 0;
        while let Some(i) = memchr::memchr(b'\n', &buf[start..]) {
            if let Some(seq) = seq_of(&buf[start..start + i]) {
                *seen.lock().unwrap().entry(seq).or_default() += 1;
                lines.fetch_add(1, Ordering::SeqCst);
            }
            start += i + 1;
        }
        buf.drain(..start);
        if let Some((_, pause, after)) = slow {
            if read_total >= after {
                // Closes with bytes unread in the kernel: the peer sees a reset.
                closes.fetch_add(1, Ordering::SeqCst);
                return;
            }
            thread::sleep(pause);
        }
    }
}

/// Writes `n` numbered lines `t <seq> <padding>`; a line whose seq is `poison(seq)` gets
/// 40 KiB of padding.
fn write_lines(path: &std::path::Path, n: u64, poison: impl Fn(u64) -> bool) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut out = Vec::new();
    for seq in 0..n {
        let pad = if poison(seq) {
            40 << 10
        } else {
            60 + (seq % 50) as usize
        };
        out.extend_from_slice(format!("t {seq} ").as_bytes());
        out.extend(std::iter::repeat_n(b'x', pad));
        out.push(b'\n');
        if out.len() > 1 << 20 {
            f.write_all(&out).unwrap();
            out.clear();
        }
    }
    f.write_all(&out).unwrap();
}

/// Lost (never seen, not expected elsewhere) and duplicated (seen more than once) lines.
fn tally(counts: &HashMap<u64, u32>, n: u64, skip: impl Fn(u64) -> bool) -> (Vec<u64>, u64) {
    let lost: Vec<u64> = (0..n).filter(|s| !skip(*s) && !counts.contains_key(s)).collect();
    let dups: u64 = counts.values().map(|c| u64::from(c.saturating_sub(1))).sum();
    (lost, dups)
}

#[test]
fn a_receiver_closing_on_records_over_32k_loses_nothing_and_the_poison_is_dead_lettered() {
    let _heavy = heavy();
    const N: u64 = 20_000;
    let poison = |seq: u64| seq % 1000 == 500;
    let dir = TestDir::new("tcp-poison");
    let logs = dir.subdir("logs");
    write_lines(&logs.join("app.log"), N, poison);
    let rx = LineReceiver::start(Behaviour::FluentBit);
    let cfg = Config {
        sink: vec![
            "type = \"tcp\"".into(),
            format!("address = {}", q(&rx.addr.to_string())),
            "settle = \"100ms\"".into(),
        ],
        ..Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &Receiver::ndjson())
    };
    let mut agent = Agent::start(&dir, &cfg);
    let dead_letter = cfg.data_dir.join("dead-letter/out.ndjson");
    let poisons = (0..N).filter(|s| poison(*s)).count();
    let done = wait_until(Duration::from_secs(240), || {
        let have = rx.counts().len() as u64;
        let dead = std::fs::read(&dead_letter)
            .map(|b| b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count())
            .unwrap_or(0);
        have + poisons as u64 >= N && dead >= poisons
    });
    let counts = rx.counts();
    let (lost, dups) = tally(&counts, N, poison);
    let m = agent.metrics().unwrap_or_default();
    let resent = m.val("tailship_sink_resent_records_total");
    let dead: Vec<u64> = std::fs::read(&dead_letter)
        .unwrap_or_default()
        .split(|c| *c == b'\n')
        .filter_map(seq_of)
        .collect();
    println!(
        "TCP POISON: {N} lines, {poisons} over 32 KiB; {} arrived, {} lost, {dups} duplicates ({:.2}%), {resent} resent, {} closes by the receiver, {} dead-lettered",
        counts.len(),
        lost.len(),
        dups as f64 * 100.0 / N as f64,
        rx.closes.load(Ordering::SeqCst),
        dead.len()
    );
    assert!(
        done,
        "not all delivered: lost {:?}…\n{}",
        &lost[..lost.len().min(20)],
        agent.diag()
    );
    assert!(
        lost.is_empty(),
        "lost {} lines: {:?}…",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    let mut dead_sorted = dead.clone();
    dead_sorted.sort_unstable();
    let want: Vec<u64> = (0..N).filter(|s| poison(*s)).collect();
    assert_eq!(
        dead_sorted, want,
        "the dead-letter file holds exactly the poison records"
    );
    assert!(counts.keys().all(|s| !poison(*s)));
    assert_eq!(m.val("tailship_dead_letter_records_total") as usize, poisons);
    assert!(
        dups as f64 <= resent,
        "{dups} duplicates but only {resent} resent: they came from elsewhere"
    );
    assert!(m.val("tailship_send_errors_total") >= poisons as f64);
    stop_clean_quiet(&mut agent);
}

#[test]
fn a_receiver_that_reads_slowly_then_closes_several_times_loses_nothing() {
    let _heavy = heavy();
    const N: u64 = 60_000;
    let dir = TestDir::new("tcp-slow-close");
    let logs = dir.subdir("logs");
    write_lines(&logs.join("app.log"), N, |_| false);
    // 16 KiB every 5 ms (about 3 MB/s), closing after 1.5 MB with the rest unread, 4 times.
    let rx = LineReceiver::start(Behaviour::SlowThenClose {
        closes: 4,
        slice: 16 << 10,
        pause: Duration::from_millis(5),
        after: 1_500_000,
    });
    let cfg = Config {
        sink: vec![
            "type = \"tcp\"".into(),
            format!("address = {}", q(&rx.addr.to_string())),
        ],
        ..Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &Receiver::ndjson())
    };
    let mut agent = Agent::start(&dir, &cfg);
    let done = wait_until(Duration::from_secs(120), || rx.counts().len() as u64 >= N);
    let counts = rx.counts();
    let (lost, dups) = tally(&counts, N, |_| false);
    let m = agent.metrics().unwrap_or_default();
    let resent = m.val("tailship_sink_resent_records_total");
    println!(
        "TCP SLOW CLOSE: {N} lines; {} arrived, {} lost, {dups} duplicates ({:.2}%), {resent} resent, {} closes by the receiver, {} send errors",
        counts.len(),
        lost.len(),
        dups as f64 * 100.0 / N as f64,
        rx.closes.load(Ordering::SeqCst),
        m.val("tailship_send_errors_total")
    );
    assert!(
        done && lost.is_empty(),
        "lost {} lines: {:?}…\n{}",
        lost.len(),
        &lost[..lost.len().min(20)],
        agent.diag()
    );
    assert!(
        rx.closes.load(Ordering::SeqCst) >= 4,
        "the receiver closed fewer times than planned"
    );
    assert!(dups as f64 <= resent, "{dups} duplicates but only {resent} resent");
    assert_eq!(
        m.val("tailship_dead_letter_records_total"),
        0.0,
        "nothing is poison here"
    );
    stop_clean_quiet(&mut agent);
}

#[test]
fn sink_up_is_0_while_the_receiver_is_down_and_1_after() {
    let dir = TestDir::new("tcp-sink-up");
    let logs = dir.subdir("logs");
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let cfg = Config {
        sink: vec!["type = \"tcp\"".into(), format!("address = {}", q(&addr.to_string()))],
        ..Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &Receiver::ndjson())
    };
    write_lines(&logs.join("app.log"), 100, |_| false);
    let mut agent = Agent::start(&dir, &cfg);
    let down = wait_until(Duration::from_secs(20), || {
        agent.metrics().is_some_and(|m| {
            m.get_with("tailship_sink_up", "sink=\"out\"") == Some(0.0) && m.val("tailship_send_errors_total") >= 2.0
        })
    });
    assert!(down, "sink_up not 0 with the receiver down\n{}", agent.diag());
    let listener = TcpListener::bind(addr).unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let g = g.clone();
            thread::spawn(move || {
                let mut s = s;
                let mut b = [0u8; 65536];
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 {
                        return;
                    }
                    g.fetch_add(memchr::memchr_iter(b'\n', &b[..n]).count() as u64, Ordering::SeqCst);
                }
            });
        }
    });
    let up = wait_until(Duration::from_secs(30), || {
        got.load(Ordering::SeqCst) >= 100
            && agent
                .metrics()
                .is_some_and(|m| m.get_with("tailship_sink_up", "sink=\"out\"") == Some(1.0))
    });
    assert!(
        up,
        "sink_up not 1 after the receiver came ({} lines)\n{}",
        got.load(Ordering::SeqCst),
        agent.diag()
    );
    stop_clean_quiet(&mut agent);
}

struct Pki {
    ca_pem: String,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server: (
            server_cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        ),
    }
}

/// A TLS receiver of NDJSON lines: counts lines and handshakes that failed.
fn tls_receiver(p: &Pki) -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![p.server.0.clone()], p.server.1.clone_key())
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let lines = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let (l, f) = (lines.clone(), failures.clone());
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (config, l, f) = (config.clone(), l.clone(), f.clone());
            thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                while tls.conn.is_handshaking() {
                    if tls.conn.complete_io(&mut tls.sock).is_err() {
                        f.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
                let mut b = vec![0u8; 65536];
                loop {
                    match tls.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            l.fetch_add(memchr::memchr_iter(b'\n', &b[..n]).count() as u64, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    (addr, lines, failures)
}

#[test]
fn tls_with_the_receivers_ca_delivers_every_line_and_a_wrong_ca_sends_nothing() {
    const N: u64 = 20_000;
    let p = pki();
    let other = pki();
    let (addr, lines, failures) = tls_receiver(&p);

    // The receiver's CA: every line.
    let dir = TestDir::new("tcp-tls");
    let logs = dir.subdir("logs");
    std::fs::write(dir.join("ca.pem"), &p.ca_pem).unwrap();
    write_lines(&logs.join("app.log"), N, |_| false);
    let cfg = Config {
        sink: vec![
            "type = \"tcp\"".into(),
            format!("address = {}", q(&addr.to_string())),
            format!(
                "tls = {{ ca_file = {}, server_name = \"localhost\" }}",
                q(&dir.join("ca.pem").to_string_lossy())
            ),
        ],
        ..Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &Receiver::ndjson())
    };
    let mut agent = Agent::start(&dir, &cfg);
    let all = wait_until(Duration::from_secs(60), || lines.load(Ordering::SeqCst) >= N);
    println!("TCP TLS: {} of {N} lines", lines.load(Ordering::SeqCst));
    assert!(
        all,
        "{} of {N} lines over TLS\n{}",
        lines.load(Ordering::SeqCst),
        agent.diag()
    );
    stop_clean_quiet(&mut agent);
    let before = lines.load(Ordering::SeqCst);

    // Another CA: the handshake fails, with a clear error, and nothing is sent.
    let dir2 = TestDir::new("tcp-tls-wrong-ca");
    let logs2 = dir2.subdir("logs");
    std::fs::write(dir2.join("ca.pem"), &other.ca_pem).unwrap();
    write_lines(&logs2.join("app.log"), 100, |_| false);
    let cfg2 = Config {
        sink: vec![
            "type = \"tcp\"".into(),
            format!("address = {}", q(&addr.to_string())),
            format!("tls = {{ ca_file = {} }}", q(&dir2.join("ca.pem").to_string_lossy())),
        ],
        ..Config::tcp(&dir2, &[format!("{}/*.log", logs2.display())], &Receiver::ndjson())
    }
    // It retries the handshake until the shutdown deadline: the lines wait on disk.
    .top("shutdown_timeout = \"2s\"");
    let mut agent2 = Agent::start(&dir2, &cfg2);
    let refused = wait_until(Duration::from_secs(20), || {
        failures.load(Ordering::SeqCst) >= 1 && agent2.stderr().contains("certificate")
    });
    let err_line = agent2
        .stderr()
        .lines()
        .find(|l| l.contains("certificate"))
        .unwrap_or_default()
        .to_owned();
    println!("TCP TLS WRONG CA: {err_line}");
    assert!(refused, "no handshake failure logged\n{}", agent2.diag());
    assert!(err_line.contains("TLS handshake"), "{err_line}");
    assert_eq!(
        lines.load(Ordering::SeqCst),
        before,
        "lines reached a receiver the agent could not verify"
    );
    let m = agent2.metrics().unwrap_or_default();
    assert_eq!(m.get_with("tailship_sink_up", "sink=\"out\""), Some(0.0));
    assert_eq!(m.val("tailship_records_sent_total"), 0.0);
    stop_clean_quiet(&mut agent2);
}

/// SIGTERM and wait; a stuck agent fails the test.
fn stop_clean_quiet(agent: &mut Agent) {
    agent.sigterm();
    let code = agent.wait_exit(Duration::from_secs(20));
    assert!(code.is_some(), "the agent did not stop\n{}", agent.diag());
}
