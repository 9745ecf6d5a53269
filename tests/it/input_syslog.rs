//! The `syslog` input against real clients: util-linux `logger` over UDP, TCP and TCP with
//! octet counting, RFC 5424 and RFC 3164, and Python's `logging.handlers.SysLogHandler` over
//! UDP and TCP → every numbered message delivered with hostname, appname and severity intact;
//! a message with newlines in one octet-counted frame; garbage, a 10 MB line and an octet count
//! of 999999999 closed and counted while a client is served on; `kill -9` while a client
//! sends over TCP: everything the agent had spooled is delivered after the restart; UDP at
//! the spool's cap: drops counted, every accepted message delivered once the sink is back.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/syslog_client.py");
const SOURCE: &str = "app-syslog";

/// An agent with one `syslog` source on `port` (UDP and TCP unless `extra` sets `mode`),
/// shipping NDJSON to `rx`.
fn start(dir: &TestDir, rx: &Receiver, port: u16, extra: &str) -> Agent {
    let source = format!(
        "[[sources]]\nname = \"{SOURCE}\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\nread_timeout = \"5s\"\n{extra}"
    );
    let mut agent = network_agent(dir, rx, &source);
    if extra.contains("mode = \"udp\"") {
        assert!(
            agent.logged_within("input listening (syslog over UDP)", Duration::from_secs(20)),
            "the input never listened on UDP port {port}\n{}",
            agent.diag()
        );
    } else {
        wait_listening(&mut agent, port);
    }
    agent
}

/// Runs `logger` with `args` against the input, one message per line of `lines` on its
/// stdin; `pace` writes them 20 at a time every 5 ms (4,000 a second: what a UDP receive
/// buffer takes). Fails loudly when logger is missing or fails.
fn logger(port: u16, args: &[&str], lines: impl Iterator<Item = String>, pace: bool) {
    let mut child = Command::new("/usr/bin/logger")
        .args(["-n", "127.0.0.1", "-P", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux logger at /usr/bin/logger");
    let mut stdin = child.stdin.take().unwrap();
    for (i, line) in lines.enumerate() {
        writeln!(stdin, "{line}").unwrap();
        if pace && i % 20 == 19 {
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    drop(stdin);
    finish_client(child, "logger");
}

fn python(transport: &str, port: u16, count: u64, first: u64) -> Child {
    Command::new("python3")
        .args([
            CLIENT,
            transport,
            &port.to_string(),
            &count.to_string(),
            &first.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

/// The received records by (the message's first word, its number): `"<tag> <n>"` and
/// `"py record <n>"` both end in the number.
fn by_key(rx: &Receiver) -> HashMap<(String, u64), Record> {
    rx.records()
        .into_iter()
        .filter_map(|r| {
            let mut words = r.message.split(' ');
            let tag = words.next()?.to_owned();
            let n = words.next_back()?.parse().ok()?;
            Some(((tag, n), r))
        })
        .collect()
}

fn numbered(tag: &str, n: u64) -> impl Iterator<Item = String> + '_ {
    (0..n).map(move |i| format!("{tag} {i}"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn logger_over_udp_tcp_and_octet_counting_all_arrive_intact() {
    const UDP: u64 = 2_000;
    const TCP: u64 = 5_000;
    let dir = TestDir::new("syslog-logger");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start(&dir, &rx, port, "");
    // (tag, logger's options, count, pace): each stream has its own tag, so its own appname.
    let runs: [(&str, &[&str], u64, bool); 5] = [
        (
            "udp5424",
            &[
                "-d",
                "--rfc5424",
                "-p",
                "local3.warning",
                "--msgid",
                "M1",
                "--sd-id",
                "ex@1",
                "--sd-param",
                "k=\"v\"",
            ],
            UDP,
            true,
        ),
        ("udp3164", &["-d", "--rfc3164", "-p", "user.err"], UDP, true),
        ("tcp5424", &["-T", "--rfc5424", "-p", "daemon.info"], TCP, false),
        ("tcp3164", &["-T", "--rfc3164", "-p", "local0.debug"], TCP, false),
        (
            "oct5424",
            &["-T", "--octet-count", "--rfc5424", "-p", "auth.notice"],
            TCP,
            false,
        ),
    ];
    for (tag, opts, n, pace) in runs {
        let mut args = vec!["-t", tag];
        args.extend_from_slice(opts);
        logger(port, &args, numbered(tag, n), pace);
    }
    let total = 2 * UDP + 3 * TCP;
    wait_progress(Some(&mut agent), "every logger message", STALL, LIMIT, || {
        let n = by_key(&rx).len() as u64;
        (n, n >= total)
    })
    .unwrap_or_else(|e| {
        let got = by_key(&rx);
        let missing: Vec<(&str, u64)> = runs
            .iter()
            .flat_map(|&(tag, _, n, _)| (0..n).map(move |i| (tag, i)))
            .filter(|&(tag, i)| !got.contains_key(&(tag.to_owned(), i)))
            .take(20)
            .collect();
        let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
        panic!("{e}\nmissing: {missing:?}\n{snmp}\n{}", agent.diag())
    });
    let got = by_key(&rx);
    let host = hostname();
    let expect = [
        ("udp5424", UDP, "warn", 4, "local3"),
        ("udp3164", UDP, "error", 3, "user"),
        ("tcp5424", TCP, "info", 6, "daemon"),
        ("tcp3164", TCP, "debug", 7, "local0"),
        ("oct5424", TCP, "info", 5, "auth"),
    ];
    for (tag, n, level, severity, facility) in expect {
        for i in 0..n {
            let r = got
                .get(&(tag.to_owned(), i))
                .unwrap_or_else(|| panic!("{tag} {i} missing\n{}", agent.diag()));
            assert_eq!(r.str("level"), Some(level), "{}", r.brief());
            assert_eq!(
                r.field("syslog.severity").and_then(|v| v.as_u64()),
                Some(severity),
                "{}",
                r.brief()
            );
            assert_eq!(
                r.field("syslog.facility").and_then(|v| v.as_str()),
                Some(facility),
                "{}",
                r.brief()
            );
            assert_eq!(
                r.field("syslog.appname").and_then(|v| v.as_str()),
                Some(tag),
                "{}",
                r.brief()
            );
            assert_eq!(
                r.field("host.hostname").and_then(|v| v.as_str()),
                Some(host.as_str()),
                "{}",
                r.brief()
            );
            assert_eq!(
                r.field("network.peer.address").and_then(|v| v.as_str()),
                Some("127.0.0.1")
            );
            let transport = if tag.starts_with("udp") { "udp" } else { "tcp" };
            assert_eq!(r.field("network.transport").and_then(|v| v.as_str()), Some(transport));
            assert!(r.str("timestamp").is_some_and(|t| t.starts_with("20")), "{}", r.brief());
            assert!(r.field("parse_error").is_none(), "{}", r.brief());
        }
    }
    let sample = &got[&("udp5424".to_owned(), 7)];
    assert_eq!(sample.field("syslog.msgid").and_then(|v| v.as_str()), Some("M1"));
    let sd = sample.field("sd").and_then(|v| v.get("ex@1")).and_then(|v| v.get("k"));
    assert_eq!(sd.and_then(|v| v.as_str()), Some("v"), "{}", sample.brief());
    let m = agent.metrics().expect("metrics");
    assert_eq!(
        m.get_with("tailship_input_records_accepted_total", SOURCE),
        Some(total as f64)
    );
    assert_eq!(m.get_with("tailship_input_records_unparsed_total", SOURCE), Some(0.0));
    println!("logger: {total} messages over UDP, TCP and octet counting all delivered");
}

#[test]
fn python_syslog_handler_over_udp_and_tcp_all_arrive() {
    const N: u64 = 10_000;
    let _heavy = heavy();
    let dir = TestDir::new("syslog-python");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start(&dir, &rx, port, "");
    let udp = python("udp", port, N, 0);
    let tcp = python("tcp", port, N, N);
    finish_client(udp, "SysLogHandler over UDP");
    finish_client(tcp, "SysLogHandler over TCP");
    wait_progress(Some(&mut agent), "every SysLogHandler record", STALL, LIMIT, || {
        let n = by_key(&rx).len() as u64;
        (n, n >= 2 * N)
    })
    .unwrap_or_else(|e| {
        let m = agent.metrics().map(|m| m.text).unwrap_or_default();
        panic!("{e}\n{m}\n{}", agent.diag())
    });
    let got = by_key(&rx);
    for seq in 0..2 * N {
        let r = &got[&("py".to_owned(), seq)];
        assert_eq!(r.message, format!("py record {seq}"), "{}", r.brief());
        assert_eq!(r.str("level"), Some("warn"), "{}", r.brief());
        assert_eq!(r.field("syslog.facility").and_then(|v| v.as_str()), Some("local1"));
        assert_eq!(
            r.field("syslog.appname").and_then(|v| v.as_str()),
            Some("pyapp"),
            "{}",
            r.brief()
        );
        assert_eq!(
            r.field("host.hostname").and_then(|v| v.as_str()),
            Some("pyhost"),
            "{}",
            r.brief()
        );
        assert!(
            r.field("process.pid").and_then(|v| v.as_u64()).is_some(),
            "{}",
            r.brief()
        );
        let transport = if seq < N { "udp" } else { "tcp" };
        assert_eq!(r.field("network.transport").and_then(|v| v.as_str()), Some(transport));
    }
    let m = agent.metrics().expect("metrics");
    assert_eq!(
        m.get_with("tailship_input_records_accepted_total", SOURCE),
        Some((2 * N) as f64)
    );
    println!("SysLogHandler: {N} over UDP and {N} over TCP delivered");
}

/// Connects and writes `bytes` (errors ignored: the agent may close first); the stream.
fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = s.write_all(bytes);
    s
}

/// Whether the agent closed `s` (a read gives end of file or a reset within 10 s).
fn closed(s: &mut TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut scratch = [0u8; 16];
    match s.read(&mut scratch) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[test]
fn newlines_in_an_octet_counted_frame_and_bad_input_closed_and_counted() {
    let dir = TestDir::new("syslog-bad");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start(&dir, &rx, port, "max_message_bytes = 65536");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // One message with newlines, one octet-counted frame; then a non-syslog message.
    let msg = "<14>1 2026-11-30T10:00:00Z web01 multi 42 - - first line\nsecond line\n\tthird";
    let mut frames = format!("{} {msg}", msg.len()).into_bytes();
    frames.extend_from_slice(b"<13>\x1b[2Jnot syslog at all\n");
    drop(send(addr, &frames));
    let mut garbage = send(addr, b"\x16\x03\x01\x02\x00 GET / HTTP/1.1\r\n\r\n");
    let mut huge_count = send(addr, b"999999999 <13>x");
    let ten_mb = std::thread::spawn(move || {
        let mut line = b"<13>".to_vec();
        line.resize(10 << 20, b'x');
        let mut s = send(addr, &line);
        closed(&mut s)
    });
    // A client keeps flowing meanwhile.
    logger(port, &["-T", "--rfc5424", "-t", "good"], numbered("good", 1_000), false);
    assert!(closed(&mut garbage), "garbage was not closed");
    assert!(closed(&mut huge_count), "an octet count of 999999999 was not closed");
    assert!(ten_mb.join().unwrap(), "a 10 MB line was not closed");
    wait_progress(Some(&mut agent), "the good client's messages", STALL, LIMIT, || {
        let n = by_key(&rx).keys().filter(|(t, _)| t == "good").count() as u64;
        (n, n >= 1_000)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    let records = rx.records();
    let multi = records
        .iter()
        .find(|r| r.field("syslog.appname").and_then(|v| v.as_str()) == Some("multi"))
        .expect("the octet-counted message");
    assert_eq!(multi.message, "first line\nsecond line\n\tthird", "{}", multi.brief());
    assert_eq!(multi.field("process.pid").and_then(|v| v.as_u64()), Some(42));
    assert_eq!(
        multi.str("timestamp"),
        Some("2026-11-30T10:00:00.000000000Z"),
        "{}",
        multi.brief()
    );
    let odd = records
        .iter()
        .find(|r| r.message.contains("not syslog"))
        .expect("the non-syslog message, kept");
    assert!(
        odd.field("parse_warning").is_some() || odd.field("parse_error").is_some(),
        "{}",
        odd.brief()
    );
    let m = agent.metrics().expect("metrics");
    let rejected = m
        .get_with("tailship_input_requests_rejected_total", SOURCE)
        .unwrap_or(0.0);
    assert!(
        rejected >= 3.0,
        "garbage, the huge count and the 10 MB line counted: {rejected}\n{}",
        m.text
    );
    let log = agent.stderr();
    for reason in [
        "neither an octet count",
        "octet count of 999999999",
        "still has no newline",
    ] {
        assert!(log.contains(reason), "no logged reason {reason:?}\n{log}");
    }
    assert!(agent.alive(), "{}", agent.diag());
}

#[test]
fn a_non_syslog_datagram_is_kept_with_a_parse_error_and_counted() {
    let dir = TestDir::new("syslog-unparsed");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start(&dir, &rx, port, "mode = \"udp\"\nmax_message_bytes = 4096");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "mode = udp listens on TCP"
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"<999>\xffjust text", ("127.0.0.1", port)).unwrap();
    sock.send_to(&[b'x'; 5_000], ("127.0.0.1", port)).unwrap();
    assert!(
        wait_until(LIMIT, || rx.records().len() == 1),
        "the datagram\n{}",
        agent.diag()
    );
    let r = &rx.records()[0];
    assert_eq!(r.message, "<999>\u{fffd}just text", "{}", r.brief());
    assert!(
        r.field("parse_error")
            .and_then(|v| v.as_str())
            .is_some_and(|e| e.contains("PRI")),
        "{}",
        r.brief()
    );
    let m = agent.metrics().expect("metrics");
    assert_eq!(
        m.get_with("tailship_input_records_unparsed_total", SOURCE),
        Some(1.0),
        "{}",
        m.text
    );
    assert!(
        m.text.contains(&format!(
            "tailship_input_dropped_total{{input=\"{SOURCE}\",reason=\"too_large\"}} 1"
        )),
        "{}",
        m.text
    );
}

/// Seqs of `tag` in the spool segments on disk (what the agent had accepted).
fn spooled(dir: &TestDir, tag: &str) -> HashSet<u64> {
    let mut out = HashSet::new();
    let spool = dir.join("data/spool/app-syslog");
    for entry in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let msg = v["message"].as_str().unwrap_or("");
            if let Some(n) = msg.strip_prefix(&format!("{tag} ")).and_then(|n| n.parse().ok()) {
                out.insert(n);
            }
        }
    }
    out
}

#[test]
fn kill9_while_a_client_sends_over_tcp_loses_nothing_that_was_spooled() {
    const N: u64 = 20_000;
    let _heavy = heavy();
    let dir = TestDir::new("syslog-kill9");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start(&dir, &rx, port, "mode = \"tcp\"");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // A client that reconnects when the agent goes away, as syslog senders do.
    let sender = std::thread::spawn(move || {
        let mut seq = 0u64;
        let mut s: Option<TcpStream> = None;
        let deadline = std::time::Instant::now() + LIMIT;
        while seq < N && std::time::Instant::now() < deadline {
            let Some(conn) = s.as_mut() else {
                s = TcpStream::connect(addr).ok();
                if s.is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                continue;
            };
            let msg = format!("<13>1 - host kill - - - kill {seq}");
            if conn.write_all(format!("{} {msg}", msg.len()).as_bytes()).is_ok() {
                seq += 1;
            } else {
                s = None;
            }
            if seq.is_multiple_of(100) {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        seq
    });
    let mut before = HashSet::new();
    for at in [4_000usize, 10_000] {
        assert!(
            wait_until(LIMIT, || before.union(&spooled(&dir, "kill")).count() >= at),
            "{at} spooled before the kill\n{}",
            agent.diag()
        );
        agent.kill9();
        before.extend(spooled(&dir, "kill"));
        agent = start(&dir, &rx, port, "mode = \"tcp\"");
    }
    let sent = sender.join().unwrap();
    assert_eq!(sent, N, "the client finished");
    wait_progress(
        Some(&mut agent),
        "every record spooled before a kill",
        STALL,
        LIMIT,
        || {
            let got: HashSet<u64> = by_key(&rx)
                .keys()
                .filter(|(t, _)| t == "kill")
                .map(|(_, n)| *n)
                .collect();
            let n = before.iter().filter(|s| got.contains(s)).count() as u64;
            (n, n == before.len() as u64)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    let got = by_key(&rx).keys().filter(|(t, _)| t == "kill").count();
    println!(
        "kill -9 twice: {} spooled before the kills all delivered; {got} of {N} sent delivered in all (TCP syslog has no acknowledgement: what sat in socket buffers at a kill is lost)",
        before.len()
    );
}

#[test]
fn udp_at_the_spool_cap_drops_and_counts_and_every_accepted_message_arrives() {
    let dir = TestDir::new("syslog-udp-full");
    let mut rx = Receiver::keeping();
    rx.stop();
    let port = free_port();
    let mut agent = start(&dir, &rx, port, "mode = \"udp\"\nmax_spool_bytes = 1048576");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dropped = |agent: &Agent| {
        agent.metrics().map_or(0.0, |m| {
            let key = format!("tailship_input_dropped_total{{input=\"{SOURCE}\",reason=\"spool_full\"}} ");
            m.text
                .lines()
                .find_map(|l| l.strip_prefix(key.as_str())?.parse().ok())
                .unwrap_or(0.0)
        })
    };
    // ~400-byte messages, 50 at a time, until the agent says it dropped some.
    let pad = "x".repeat(300);
    let mut sent = 0u64;
    while dropped(&agent) == 0.0 && sent < 200_000 {
        for _ in 0..50 {
            let msg = format!("<13>1 - host full - - [pad@1 p=\"{pad}\"] full {sent}");
            sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let m = agent.metrics().expect("metrics");
    let accepted = m
        .get_with("tailship_input_records_accepted_total", SOURCE)
        .unwrap_or(0.0) as u64;
    assert!(
        dropped(&agent) > 0.0,
        "no drop counted after {sent} messages\n{}",
        m.text
    );
    rx.restart();
    wait_progress(Some(&mut agent), "every accepted message", STALL, LIMIT, || {
        let n = by_key(&rx).keys().filter(|(t, _)| t == "full").count() as u64;
        (n, n >= accepted)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    let delivered = by_key(&rx).keys().filter(|(t, _)| t == "full").count() as u64;
    assert_eq!(delivered, accepted, "delivered = accepted");
    println!(
        "udp at the spool cap: {sent} sent, {accepted} accepted and delivered, {} dropped and counted",
        dropped(&agent)
    );
}
