//! A stand-in application for the pod test and demos: writes numbered log lines to a file at a
//! steady rate, rotates the file by rename every N lines (`app.log` → `app.log.1`, then a new
//! `app.log`, as logrotate's default does), and on SIGTERM/SIGINT flushes, reports the last
//! sequence number on stdout and exits 0.
//!
//! Every line is `webapp <seq> <timestamp> level=info msg="handled request" ...`, so a
//! receiver can tell from the second field which lines arrived. Sequence numbers start at 1.
//!
//! ```text
//! webapp [--path /var/log/app.log] [--rate LINES_PER_SECOND] [--rotate-every LINES]
//! webapp --stdout LINES [--rate LINES_PER_SECOND]
//! webapp --pause
//! ```
//!
//! `--stdout LINES` writes that many numbered lines to stdout instead (nothing else), at the
//! rate, then exits 0: an app whose container runtime collects its output (the pod test's
//! container logging through Docker's `fluentd` driver).
//!
//! `--pause` writes nothing and just waits for SIGTERM: the pod test runs one such container
//! to hold the pod's network namespace, as Kubernetes' pause container does, so the agent keeps
//! its network after the app container stopped.
//!
//! It is built statically and put into a `FROM scratch` image by `tests/it/pod.rs`; as PID 1
//! in a container it must handle SIGTERM itself (the kernel ignores it otherwise).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

struct Options {
    path: PathBuf,
    rate: u64,
    rotate_every: u64,
    pause: bool,
    stdout: Option<u64>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        path: PathBuf::from("/var/log/app.log"),
        rate: 500,
        rotate_every: 2000,
        pause: false,
        stdout: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--path" => o.path = PathBuf::from(value()?),
            "--rate" => o.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--pause" => o.pause = true,
            "--stdout" => o.stdout = Some(value()?.parse().map_err(|e| format!("--stdout: {e}"))?),
            "--rotate-every" => o.rotate_every = value()?.parse().map_err(|e| format!("--rotate-every: {e}"))?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.rate == 0 || o.rotate_every == 0 {
        return Err("--rate and --rotate-every must be at least 1".into());
    }
    Ok(o)
}

fn open(path: &Path) -> io::Result<BufWriter<File>> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(BufWriter::with_capacity(64 * 1024, f))
}

fn line(out: &mut impl Write, seq: u64) -> io::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    // Varied but deterministic fields, so lines differ in length and content like real ones.
    let path = ["/", "/items", "/items/42", "/cart", "/checkout?step=2"][(seq % 5) as usize];
    let status = if seq.is_multiple_of(97) { 500 } else { 200 };
    writeln!(
        out,
        "webapp {seq} {}.{:03} level=info msg=\"handled request\" method=GET path={path} status={status} duration_ms={}",
        now.as_secs(),
        now.subsec_millis(),
        seq % 250
    )
}

/// `count` lines to stdout at the rate (or until a stop signal); the last seq written.
fn to_stdout(count: u64, rate: u64) -> io::Result<u64> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut seq = 0u64;
    let start = Instant::now();
    while seq < count && !STOP.load(Ordering::SeqCst) {
        let due = ((start.elapsed().as_micros() as u64).saturating_mul(rate) / 1_000_000).min(count);
        while seq < due {
            seq += 1;
            line(&mut out, seq)?;
        }
        out.flush()?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(seq)
}

fn run(o: &Options) -> io::Result<u64> {
    if let Some(dir) = o.path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut rotated = o.path.clone().into_os_string();
    rotated.push(".1");
    let rotated = PathBuf::from(rotated);

    let mut out = open(&o.path)?;
    let mut seq = 0u64;
    let start = Instant::now();
    // Lines are written in 10 ms ticks: at each tick, as many as the rate says are due.
    let tick = Duration::from_millis(10);
    while !STOP.load(Ordering::SeqCst) {
        let due = (start.elapsed().as_micros() as u64).saturating_mul(o.rate) / 1_000_000;
        while seq < due && !STOP.load(Ordering::SeqCst) {
            seq += 1;
            line(&mut out, seq)?;
            if seq.is_multiple_of(o.rotate_every) {
                out.flush()?;
                fs::rename(&o.path, &rotated)?;
                out = open(&o.path)?;
            }
        }
        out.flush()?;
        std::thread::sleep(tick);
    }
    out.flush()?;
    out.get_ref().sync_all()?;
    Ok(seq)
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("webapp: {e}");
            std::process::exit(2);
        }
    };
    on_stop_signals();
    if o.pause {
        while !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    }
    if let Some(count) = o.stdout {
        if let Err(e) = to_stdout(count, o.rate) {
            eprintln!("webapp: stdout: {e}");
            std::process::exit(1);
        }
        return;
    }
    println!(
        "webapp: writing {} lines/s to {}, rotating every {} lines",
        o.rate,
        o.path.display(),
        o.rotate_every
    );
    match run(&o) {
        Ok(last) => {
            // The pod test reads this line to know what must have arrived.
            println!("webapp: stopped after seq {last}");
        }
        Err(e) => {
            eprintln!("webapp: {}: {e}", o.path.display());
            std::process::exit(1);
        }
    }
}
