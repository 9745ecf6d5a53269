//! A minimal log collector for the pod test and demos: accepts TCP connections (tailship's
//! `tcp` sink, NDJSON or raw lines) and appends every complete line it receives to one file.
//! A line cut off by a closed connection is dropped (the agent sends its batch again).
//! Exits 0 on SIGTERM/SIGINT.
//!
//! ```text
//! collector [--listen 0.0.0.0:5170] [--out /data/received.ndjson]
//! ```
//!
//! Stand-in for a Vector or Fluent Bit TCP input; built statically and put into a
//! `FROM scratch` image by `tests/it/pod.rs`.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

// Declared here rather than through the libc crate: this file depends on `std` alone, so the
// pod test compiles it with a bare `rustc` in seconds (no crate graph to build).
extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
}
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

fn on_stop_signals() {
    for sig in [SIGTERM, SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { signal(sig, on_signal as extern "C" fn(i32) as usize) };
    }
}

type Sink = Arc<Mutex<std::fs::File>>;

fn serve(conn: TcpStream, out: Sink) -> io::Result<u64> {
    conn.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut reader = BufReader::with_capacity(256 * 1024, conn);
    let mut pending: Vec<u8> = Vec::new();
    let mut lines = 0u64;
    loop {
        let buf = match reader.fill_buf() {
            Ok([]) => return Ok(lines), // closed; an unterminated rest is dropped
            Ok(b) => b,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if STOP.load(Ordering::SeqCst) {
                    return Ok(lines);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let n = buf.len();
        pending.extend_from_slice(buf);
        reader.consume(n);
        // Write whole lines only, in one append, so concurrent connections never interleave.
        if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
            let whole = &pending[..=end];
            lines += whole.iter().filter(|&&b| b == b'\n').count() as u64;
            out.lock().unwrap_or_else(|p| p.into_inner()).write_all(whole)?;
            pending.drain(..=end);
        }
    }
}

fn main() {
    let mut listen = "0.0.0.0:5170".to_owned();
    let mut path = PathBuf::from("/data/received.ndjson");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--out", Some(v)) => path = PathBuf::from(v),
            _ => {
                eprintln!("collector: usage: collector [--listen ADDR] [--out FILE]");
                std::process::exit(2);
            }
        }
    }
    on_stop_signals();
    let file = match OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("collector: {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let out: Sink = Arc::new(Mutex::new(file));
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("collector: bind {listen}: {e}");
            std::process::exit(1);
        }
    };
    listener.set_nonblocking(true).expect("non-blocking listener");
    println!("collector: listening on {listen}, appending to {}", path.display());
    let mut workers = Vec::new();
    while !STOP.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, peer)) => {
                let _ = conn.set_nonblocking(false);
                let out = Arc::clone(&out);
                workers.push(std::thread::spawn(move || match serve(conn, out) {
                    Ok(n) => println!("collector: {peer} closed after {n} lines"),
                    Err(e) => eprintln!("collector: {peer}: {e}"),
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => eprintln!("collector: accept: {e}"),
        }
    }
    for w in workers {
        let _ = w.join();
    }
    println!("collector: stopped");
}
