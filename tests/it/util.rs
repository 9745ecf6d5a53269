//! Shared machinery for the integration tests: scratch directories, the agent process (spawn,
//! signals, CPU and memory read from `/proc`), a TCP receiver standing in for the collector,
//! line writers that rotate files the way applications and logrotate do, sequence checks, and a
//! tiny `/metrics` client.
//!
//! Every test drives the real `tailship` binary (`CARGO_BIN_EXE_tailship`) against real files
//! and a real socket. Nothing here reaches into the crate: the tests check the
//! documented contract (CLI, config, record, metrics: README.md), not the implementation.
//!
//! Test lines are `"<tag> <seq> <body>"`, where the body is a real log line from
//! `tests/data` chosen deterministically from (tag, seq). The receiver can therefore tell
//! for every message which stream and position it is, and whether it arrived byte-exact.

#![allow(dead_code)] // not every test file uses every helper

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a wait may go without progress before the test gives up. Generous: on 2 cores
/// with a parallel test running, a dev-profile agent can pause for seconds.
pub const STALL: Duration = Duration::from_secs(30);
/// Upper bound for any single wait, so a broken agent cannot hang the suite.
pub const LIMIT: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------------------------------------
// Serializing the heavy tests
// ---------------------------------------------------------------------------------------------

static HEAVY: Mutex<()> = Mutex::new(());

/// Held by the tests that push hundreds of thousands of lines. On a 2-core machine two of them
/// at once would starve each other (and each other's agents), turning throughput into timeouts;
/// the light tests still run beside them.
pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Scratch directories
// ---------------------------------------------------------------------------------------------

/// A per-test temporary directory. Removed at the end unless the test failed and
/// `TAILSHIP_KEEP_TEST_DIRS` is set (then its path is printed, for post-mortems).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    starts: AtomicU32,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tailship-it-{name}-"))
            .tempdir()
            .expect("create temp dir");
        let path = dir.path().to_owned();
        TestDir {
            dir: Some(dir),
            path,
            starts: AtomicU32::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates (if needed) and returns a subdirectory.
    pub fn subdir(&self, rel: &str) -> PathBuf {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).expect("create subdir");
        p
    }

    fn next_start(&self) -> u32 {
        self.starts.fetch_add(1, Ordering::SeqCst) + 1
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if thread::panicking() && std::env::var_os("TAILSHIP_KEEP_TEST_DIRS").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("kept test dir {}", d.keep().display());
            }
        }
    }
}

/// A pod's log directory in the kubelet's real place, `/var/log/pods/<ns>_<pod>_<uid>/<container>`:
/// the agent reads Kubernetes metadata only off that absolute path. The namespace is unique
/// per test run; the pod's directory is removed at the end. Needs write access to /var/log
/// (tests run as root in CI); without it the test fails, saying so.
pub struct KubeletPodDir {
    pod_dir: PathBuf,
    pub container_dir: PathBuf,
    pub namespace: String,
}

impl KubeletPodDir {
    pub fn new(test: &str, pod: &str, uid: &str, container: &str) -> KubeletPodDir {
        let namespace = format!("tailship-it-{test}-{}", std::process::id());
        let pod_dir = PathBuf::from(format!("/var/log/pods/{namespace}_{pod}_{uid}"));
        let container_dir = pod_dir.join(container);
        fs::create_dir_all(&container_dir).unwrap_or_else(|e| {
            panic!(
                "cannot create {}: {e}; this test needs write access to /var/log/pods (run as root)",
                container_dir.display()
            )
        });
        KubeletPodDir {
            pod_dir,
            container_dir,
            namespace,
        }
    }
}

impl Drop for KubeletPodDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.pod_dir);
    }
}

// ---------------------------------------------------------------------------------------------
// The corpus and the numbered test lines
// ---------------------------------------------------------------------------------------------

/// Real log lines used as the bodies of test lines, so lengths and characters (quotes,
/// backslashes, brackets, trailing spaces) are those of real logs.
pub struct Corpus {
    lines: Vec<String>,
}

/// The real logs the tests run on (`tests/data`, see its README).
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

/// The lines of the access log and of loghub's nine logs. Panics when a file is missing or
/// unreadable: the tests run on real lines, never on made-up ones.
pub fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = corpus_dir();
        let mut files = vec![root.join("apache-combined/access.log")];
        let loghub = root.join("loghub");
        let mut logs: Vec<PathBuf> = fs::read_dir(&loghub)
            .unwrap_or_else(|e| panic!("{}: {e}; the tests need the real logs of tests/data", loghub.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        assert_eq!(logs.len(), 9, "loghub's nine logs in {}: {logs:?}", loghub.display());
        logs.sort();
        files.extend(logs);
        let mut lines = Vec::new();
        for f in files {
            let bytes = fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}; the tests need it", f.display()));
            // Lossy: a test line must be valid UTF-8 so the receiver can compare it exactly.
            for l in String::from_utf8_lossy(&bytes).lines() {
                if !l.is_empty() {
                    lines.push(l.to_owned());
                }
            }
        }
        Corpus { lines }
    })
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl Corpus {
    /// The body of line `seq` of stream `tag`: deterministic, so the receiver can verify it.
    pub fn body(&self, tag: &str, seq: u64) -> &str {
        let i = (seq.wrapping_mul(0x9E3779B97F4A7C15) ^ fnv1a(tag)) % self.lines.len() as u64;
        &self.lines[i as usize]
    }

    /// Appends `"<tag> <seq> <body>\n"`.
    pub fn push_line(&self, buf: &mut Vec<u8>, tag: &str, seq: u64) {
        buf.extend_from_slice(tag.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(seq.to_string().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(self.body(tag, seq).as_bytes());
        buf.push(b'\n');
    }

    pub fn line(&self, tag: &str, seq: u64) -> String {
        format!("{tag} {seq} {}\n", self.body(tag, seq))
    }

    /// Bytes of line `seq` including its newline.
    pub fn line_len(&self, tag: &str, seq: u64) -> u64 {
        (tag.len() + 1 + seq.to_string().len() + 1 + self.body(tag, seq).len() + 1) as u64
    }

    /// `n` lines `first..first+n` of `tag`, as one buffer.
    pub fn lines(&self, tag: &str, first: u64, n: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        for s in first..first + n {
            self.push_line(&mut buf, tag, s);
        }
        buf
    }

    /// At least `len` bytes of corpus text joined by spaces, cut to exactly `len`: the content
    /// of an over-long line (ASCII apart from what the corpus holds; trimmed to a char boundary).
    pub fn text(&self, len: usize) -> String {
        let mut s = String::with_capacity(len + 512);
        let mut i = 0;
        while s.len() < len {
            s.push_str(&self.lines[i % self.lines.len()]);
            s.push(' ');
            i += 1;
        }
        let mut cut = len;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        while s.len() < len {
            s.push('.');
        }
        s
    }

    /// Splits a message `"<tag> <seq> <body>"`; `None` when it is not a test line.
    pub fn parse<'a>(&self, msg: &'a str) -> Option<(&'a str, u64, &'a str)> {
        let (tag, rest) = msg.split_once(' ')?;
        let (seq, body) = rest.split_once(' ')?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((tag, seq.parse().ok()?, body))
    }
}

// ---------------------------------------------------------------------------------------------
// Ports and polling
// ---------------------------------------------------------------------------------------------

/// A port that was free a moment ago (bind to :0, read it, release it). Tests run in parallel,
/// so each one asks for its own.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a condition that comes with a progress value (e.g. lines received). Fails when
/// the agent (if given) exits, when the value has not moved for `stall`, or after `limit`, so
/// a slow agent gets time while a stuck one fails fast. The error says which and where it stood.
pub fn wait_progress(
    mut agent: Option<&mut Agent>,
    what: &str,
    stall: Duration,
    limit: Duration,
    mut probe: impl FnMut() -> (u64, bool),
) -> Result<(), String> {
    let start = Instant::now();
    let mut last = None;
    let mut last_move = Instant::now();
    loop {
        let (value, done) = probe();
        if done {
            return Ok(());
        }
        if last != Some(value) {
            last = Some(value);
            last_move = Instant::now();
        }
        if let Some(a) = agent.as_deref_mut() {
            if let Some(code) = a.try_exit() {
                return Err(format!("waiting for {what}: the agent exited with {code} (at {value})"));
            }
        }
        if last_move.elapsed() > stall {
            return Err(format!(
                "waiting for {what}: no progress for {stall:?} (stuck at {value}, {:?} in)",
                start.elapsed()
            ));
        }
        if start.elapsed() > limit {
            return Err(format!("waiting for {what}: gave up after {limit:?} (at {value})"));
        }
        thread::sleep(Duration::from_millis(25));
    }
}

// ---------------------------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------------------------

/// A TOML string literal (JSON string escaping is valid TOML basic-string escaping).
pub fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The config of one agent: one source, one sink. Tests adjust it with the builder methods and
/// `Agent::start` writes it next to the test's files.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `None`: `[metrics] enabled = false`.
    pub metrics_port: Option<u16>,
    /// Extra top-level lines (`rescan_interval = "1s"`).
    pub top: Vec<String>,
    pub include: Vec<String>,
    pub exclude: Option<Vec<String>>,
    pub format: String,
    pub read_from: String,
    pub source_extra: Vec<String>,
    /// The sink's `type`/`address`/`path` lines.
    pub sink: Vec<String>,
    pub encoding: String,
    pub batch: Option<String>,
}

impl Config {
    /// Tails `include`, ships to `rx` as NDJSON with a short linger (tests wait on it),
    /// checkpoints in `<dir>/data`, metrics on a fresh port.
    pub fn tcp(dir: &TestDir, include: &[String], rx: &Receiver) -> Config {
        Config {
            data_dir: dir.subdir("data"),
            // Port 0: the agent binds a free port and logs it (see `Agent::spawn`), so two
            // tests can never race for the same port.
            metrics_port: Some(0),
            top: Vec::new(),
            include: include.to_vec(),
            exclude: None,
            format: "raw".into(),
            read_from: "beginning".into(),
            source_extra: Vec::new(),
            sink: vec![
                "type = \"tcp\"".into(),
                format!("address = {}", q(&rx.addr().to_string())),
            ],
            encoding: "ndjson".into(),
            batch: Some("{ max_events = 1000, max_bytes = 1048576, linger_ms = 50 }".into()),
        }
    }

    pub fn top(mut self, line: &str) -> Config {
        self.top.push(line.to_owned());
        self
    }

    pub fn source(mut self, line: &str) -> Config {
        self.source_extra.push(line.to_owned());
        self
    }

    pub fn format(mut self, f: &str) -> Config {
        self.format = f.to_owned();
        self
    }

    pub fn read_from(mut self, r: &str) -> Config {
        self.read_from = r.to_owned();
        self
    }

    pub fn exclude(mut self, globs: &[&str]) -> Config {
        self.exclude = Some(globs.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The sink's `type` (the other sink lines stay): `http` configs become `loki`, `otlp`, ….
    pub fn sink_type(mut self, kind: &str) -> Config {
        for l in &mut self.sink {
            if l.starts_with("type = ") {
                *l = format!("type = {}", q(kind));
            }
        }
        self
    }

    pub fn batch(mut self, b: &str) -> Config {
        self.batch = Some(b.to_owned());
        self
    }

    pub fn encoding(mut self, e: &str) -> Config {
        self.encoding = e.to_owned();
        self
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
    }

    /// A new metrics port, for a restart: the old one may linger in TIME_WAIT.
    pub fn fresh_metrics_port(&mut self) {
        if self.metrics_port.is_some() {
            self.metrics_port = Some(0);
        }
    }

    pub fn render(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "data_dir = {}", q(&self.data_dir.to_string_lossy()));
        for l in &self.top {
            let _ = writeln!(t, "{l}");
        }
        match self.metrics_port {
            Some(p) => {
                let _ = writeln!(t, "[metrics]\naddress = \"127.0.0.1:{p}\"");
            }
            None => {
                let _ = writeln!(t, "[metrics]\nenabled = false");
            }
        }
        let list = |v: &[String]| v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(t, "\n[[sources]]\nname = \"app\"\ninclude = [{}]", list(&self.include));
        if let Some(ex) = &self.exclude {
            let _ = writeln!(t, "exclude = [{}]", list(ex));
        }
        let _ = writeln!(t, "format = {}\nread_from = {}", q(&self.format), q(&self.read_from));
        for l in &self.source_extra {
            let _ = writeln!(t, "{l}");
        }
        let _ = writeln!(t, "\n[[sinks]]\nname = \"out\"");
        for l in &self.sink {
            let _ = writeln!(t, "{l}");
        }
        let _ = writeln!(t, "encoding = {}", q(&self.encoding));
        if let Some(b) = &self.batch {
            let _ = writeln!(t, "batch = {b}");
        }
        t
    }
}

// ---------------------------------------------------------------------------------------------
// The agent process
// ---------------------------------------------------------------------------------------------

/// The agent under test: the binary cargo built, or `TAILSHIP_IT_BIN` (another build, to
/// measure a before/after pair with the same tests, e.g. `scripts/duplicates.sh`).
pub fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| std::env::var("TAILSHIP_IT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tailship").to_owned()))
}

/// CPU and memory of a process, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStat {
    /// utime + stime, in seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// utime + stime of `pid` in seconds (fields 14 and 15 of /proc/PID/stat, in clock ticks).
pub fn proc_cpu_seconds(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; the fields after its ')' are fixed.
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) as f64 / tck)
}

/// (VmRSS, VmHWM) of `pid` in KiB.
pub fn proc_mem_kib(pid: i32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// A running `tailship`. Its stderr goes to `<dir>/agent-N.stderr` (N counts starts), shown on
/// failure. Dropping it kills the process (SIGKILL) if it still runs.
pub struct Agent {
    child: Child,
    pub pid: i32,
    pub stderr_path: PathBuf,
    pub stdout_path: PathBuf,
    pub metrics_addr: Option<SocketAddr>,
    exit: Option<i32>,
}

impl Agent {
    /// Writes `cfg` to `<dir>/tailship.toml` and runs `tailship --config` on it.
    pub fn start(dir: &TestDir, cfg: &Config) -> Agent {
        Agent::start_with(dir, cfg, &[], |_| {})
    }

    /// Like `start`, with extra arguments and a hook to adjust the command (uid, env).
    pub fn start_with(dir: &TestDir, cfg: &Config, extra_args: &[&str], adjust: impl FnOnce(&mut Command)) -> Agent {
        let path = dir.join("tailship.toml");
        fs::write(&path, cfg.render()).expect("write config");
        let mut args: Vec<String> = vec!["--config".into(), path.to_string_lossy().into_owned()];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        Agent::spawn(dir, &args, cfg.metrics_addr(), adjust)
    }

    /// Runs the binary with exactly `args`.
    pub fn spawn(
        dir: &TestDir,
        args: &[String],
        metrics_addr: Option<SocketAddr>,
        adjust: impl FnOnce(&mut Command),
    ) -> Agent {
        let mut cmd = Command::new(bin());
        cmd.args(args).env_remove("TAILSHIP_CONFIG");
        Agent::spawn_command(dir, cmd, metrics_addr, adjust)
    }

    /// Writes `cfg` and runs the binary through `wrapper` (e.g. `prlimit --nofile=…`), a
    /// program that ends by exec-ing the command it is given.
    pub fn start_wrapped(dir: &TestDir, cfg: &Config, wrapper: &[&str]) -> Agent {
        let path = dir.join("tailship.toml");
        fs::write(&path, cfg.render()).expect("write config");
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(bin())
            .arg("--config")
            .arg(&path)
            .env_remove("TAILSHIP_CONFIG");
        Agent::spawn_command(dir, cmd, cfg.metrics_addr(), |_| {})
    }

    /// Runs a prepared command whose process becomes the agent.
    fn spawn_command(
        dir: &TestDir,
        mut cmd: Command,
        metrics_addr: Option<SocketAddr>,
        adjust: impl FnOnce(&mut Command),
    ) -> Agent {
        let n = dir.next_start();
        let stderr_path = dir.join(&format!("agent-{n}.stderr"));
        let stdout_path = dir.join(&format!("agent-{n}.stdout"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("stdout file"))
            .stderr(File::create(&stderr_path).expect("stderr file"));
        adjust(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        let mut agent = Agent {
            pid: child.id() as i32,
            child,
            stderr_path,
            stdout_path,
            metrics_addr,
            exit: None,
        };
        if metrics_addr.is_some_and(|a| a.port() == 0) {
            agent.metrics_addr = agent.bound_metrics_addr();
        }
        agent
    }

    /// With `address = "127.0.0.1:0"` the agent logs the port it bound; wait for that line
    /// (or for the process to exit, e.g. on a bad config).
    fn bound_metrics_addr(&mut self) -> Option<SocketAddr> {
        let mut found = None;
        wait_until(Duration::from_secs(15), || {
            found = self
                .stderr()
                .lines()
                .filter(|l| l.contains("metrics endpoint listening"))
                .find_map(|l| {
                    let at = l.find("127.0.0.1:")?;
                    let rest = &l[at..];
                    let end = rest
                        .find(|c: char| c != '.' && c != ':' && !c.is_ascii_digit())
                        .unwrap_or(rest.len());
                    rest[..end].parse().ok()
                });
            found.is_some() || !self.alive()
        });
        found
    }

    pub fn signal(&self, sig: i32) {
        if self.exit.is_none() {
            unsafe {
                libc::kill(self.pid, sig);
            }
        }
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM)
    }

    pub fn sigint(&self) {
        self.signal(libc::SIGINT)
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.wait_exit(Duration::from_secs(10));
    }

    fn code(status: std::process::ExitStatus) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }

    /// The exit code if the process has exited (128+N for death by signal N).
    pub fn try_exit(&mut self) -> Option<i32> {
        if self.exit.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exit = Some(Agent::code(st));
            }
        }
        self.exit
    }

    pub fn alive(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Waits up to `timeout` for the process to exit; its exit code, or `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        wait_until(timeout, || self.try_exit().is_some());
        self.exit
    }

    pub fn stat(&self) -> Option<ProcStat> {
        let cpu_s = proc_cpu_seconds(self.pid)?;
        let (rss_kib, hwm_kib) = proc_mem_kib(self.pid)?;
        Some(ProcStat {
            cpu_s,
            rss_kib,
            hwm_kib,
        })
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// Whether `text` appears in the agent's stderr within `within`.
    pub fn logged_within(&self, text: &str, within: Duration) -> bool {
        wait_until(within, || self.stderr().contains(text))
    }

    pub fn stderr_tail(&self, n: usize) -> String {
        let text = self.stderr();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn metrics(&self) -> Option<Metrics> {
        Metrics::fetch(self.metrics_addr?).ok()
    }

    /// What to print when a test fails: state, the interesting metrics, the end of stderr.
    pub fn diag(&mut self) -> String {
        let mut s = String::new();
        let state = match self.try_exit() {
            Some(c) => format!("exited with {c}"),
            None => "running".into(),
        };
        let _ = writeln!(
            s,
            "--- agent pid {} ({state}); stderr: {}",
            self.pid,
            self.stderr_path.display()
        );
        if let Some(st) = self.stat() {
            let _ = writeln!(s, "cpu {:.2}s rss {} KiB hwm {} KiB", st.cpu_s, st.rss_kib, st.hwm_kib);
        }
        if let Some(m) = self.metrics() {
            let _ = writeln!(s, "--- metrics (non-zero):");
            for (name, labels, v) in &m.samples {
                if *v != 0.0 && !name.starts_with("tailship_file_lag") {
                    let _ = writeln!(s, "{name}{labels} {v}");
                }
            }
        }
        let _ = writeln!(s, "--- stderr tail:\n{}", self.stderr_tail(40));
        s
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.diag());
        }
        if self.try_exit().is_none() {
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

/// Samples a process's VmRSS every 50 ms in a thread, to catch peaks a final read would miss.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(u64, usize)>>,
}

impl RssSampler {
    pub fn start(pid: i32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = thread::spawn(move || {
            let (mut max, mut samples) = (0u64, 0usize);
            while !s.load(Ordering::Relaxed) {
                if let Some((rss, _)) = proc_mem_kib(pid) {
                    max = max.max(rss);
                    samples += 1;
                }
                thread::sleep(Duration::from_millis(50));
            }
            (max, samples)
        });
        RssSampler {
            stop,
            handle: Some(handle),
        }
    }

    /// (max VmRSS in KiB, number of samples).
    pub fn finish(mut self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// /metrics and health over plain HTTP/1.0
// ---------------------------------------------------------------------------------------------

/// GET `path`: (status code, body). HTTP/1.0 so the server closes and the body ends at EOF.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad response: {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// A parsed Prometheus text exposition.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub text: String,
    /// (name, `{labels}` as written or "", value)
    pub samples: Vec<(String, String, f64)>,
}

impl Metrics {
    pub fn fetch(addr: SocketAddr) -> io::Result<Metrics> {
        let (status, body) = http_get(addr, "/metrics")?;
        if status != 200 {
            return Err(io::Error::other(format!("/metrics answered {status}")));
        }
        Ok(Metrics::parse(&body))
    }

    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            samples.push((name.to_owned(), labels.to_owned(), v));
        }
        Metrics {
            text: text.to_owned(),
            samples,
        }
    }

    /// Whether a series of this name is exposed (or at least declared with # TYPE).
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name) || self.text.contains(&format!("# TYPE {name} "))
    }

    /// The sum over all label sets of `name`; `None` if absent.
    pub fn get(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for (n, _, v) in &self.samples {
            if n == name {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// The value of `name` whose labels contain `label_part` (e.g. `sink="out"`).
    pub fn get_with(&self, name: &str, label_part: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && l.contains(label_part))
            .map(|s| s.2)
    }

    pub fn val(&self, name: &str) -> f64 {
        self.get(name).unwrap_or(0.0)
    }
}

// ---------------------------------------------------------------------------------------------
// The receiver (the collector's stand-in)
// ---------------------------------------------------------------------------------------------

/// What the agent sends: NDJSON records or the raw lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Ndjson,
    Raw,
}

/// One received record (kept only when the receiver was asked to keep records).
#[derive(Clone, Debug)]
pub struct Record {
    /// The whole record (`Null` for raw lines).
    pub json: serde_json::Value,
    pub message: String,
}

impl Record {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(|v| v.as_str())
    }
    pub fn file(&self) -> &str {
        self.str("file").unwrap_or("")
    }
    pub fn offset(&self) -> Option<u64> {
        self.json.get("offset").and_then(|v| v.as_u64())
    }
    pub fn id(&self) -> &str {
        self.str("id").unwrap_or("")
    }
    pub fn field(&self, name: &str) -> Option<&serde_json::Value> {
        self.json.get("fields").and_then(|f| f.get(name))
    }
    /// A boolean mark in `fields` (`truncated`, `continuation`).
    pub fn mark(&self, name: &str) -> bool {
        self.field(name).and_then(|v| v.as_bool()) == Some(true)
    }
    /// The record with a long message cut, for messages.
    pub fn brief(&self) -> String {
        let mut j = self.json.clone();
        if let Some(m) = j.get_mut("message") {
            if let Some(s) = m.as_str() {
                if s.len() > 120 {
                    let mut cut = 120;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    *m = serde_json::Value::String(format!("{}…({} bytes)", &s[..cut], s.len()));
                }
            }
        }
        j.to_string()
    }
}

/// One arrival of a numbered test line.
#[derive(Clone, Copy, Debug)]
pub struct Hit {
    pub seq: u64,
    /// Hash of the record's `id` (0 for raw lines, which carry none).
    pub id: u64,
}

/// Arrivals of one stream (tag).
#[derive(Default, Debug)]
pub struct TagState {
    /// In arrival order.
    pub hits: Vec<Hit>,
    /// Arrival count per seq (saturating).
    pub seen: Vec<u8>,
    pub unique: u64,
}

/// Everything the receiver has seen. Inspect it with `Receiver::with_state`.
#[derive(Default, Debug)]
pub struct State {
    pub tags: HashMap<String, TagState>,
    pub records: Vec<Record>,
    /// Lines that were not JSON (in NDJSON mode), with examples.
    pub bad_json: u64,
    pub bad_json_examples: Vec<String>,
    /// Test lines whose body was not the one written (mangled, cut, wrong boundaries).
    pub corrupt: u64,
    /// Records marked `fields.truncated` holding the start of a test line (a line cut by the
    /// agent on purpose, e.g. by a truncation of its file): not corrupt, not a delivery.
    pub cut: u64,
    pub corrupt_examples: Vec<String>,
    /// Messages that are not `"<tag> <seq> ..."` test lines (fine for edge tests).
    pub other: u64,
    /// Connections that ended in the middle of a line (e.g. the agent was killed mid-write).
    pub partial_at_close: u64,
    /// Connections the receiver closed itself after its FIN was not answered, and the bytes it
    /// found unread at that moment (lost on purpose: the collector is gone).
    pub forced_closes: u64,
    pub discarded_bytes: u64,
}

struct Shared {
    wire: Wire,
    keep: bool,
    state: Mutex<State>,
    conns: Mutex<Vec<(Arc<AtomicBool>, JoinHandle<()>)>>,
    lines: AtomicU64,
    bytes: AtomicU64,
    accepted: AtomicU64,
    open: AtomicU64,
}

#[derive(serde::Deserialize)]
struct WireRecord<'a> {
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    fields: Option<WireFields>,
}

#[derive(serde::Deserialize)]
struct WireFields {
    #[serde(default)]
    truncated: bool,
}

/// After the receiver sends FIN on `stop`, how long it keeps reading before it gives up on the
/// agent closing its side.
const FIN_GRACE: Duration = Duration::from_secs(3);

/// A TCP collector on 127.0.0.1: accepts any number of connections over time (the agent
/// reconnects), splits lines, parses them, and records per-stream sequences. `stop`/`restart`
/// take it down and bring it back on the same port.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Receiver {
    /// NDJSON receiver that tracks sequences only (for big runs).
    pub fn ndjson() -> Receiver {
        Receiver::start(Wire::Ndjson, false)
    }

    /// NDJSON receiver that also keeps every record (for small tests).
    pub fn keeping() -> Receiver {
        Receiver::start(Wire::Ndjson, true)
    }

    pub fn start(wire: Wire, keep: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            wire,
            keep,
            state: Mutex::new(State::default()),
            conns: Mutex::new(Vec::new()),
            lines: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
        });
        let acceptor = Some(spawn_acceptor(listener, shared.clone()));
        Receiver { addr, shared, acceptor }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Complete lines received (records, in NDJSON mode), duplicates included.
    pub fn lines(&self) -> u64 {
        self.shared.lines.load(Ordering::SeqCst)
    }

    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (more than one: the agent reconnected).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections still open.
    pub fn open_connections(&self) -> u64 {
        self.shared.open.load(Ordering::SeqCst)
    }

    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.shared.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Distinct seqs of `tag` received.
    pub fn unique(&self, tag: &str) -> u64 {
        self.with_state(|s| s.tags.get(tag).map_or(0, |t| t.unique))
    }

    pub fn unique_total(&self) -> u64 {
        self.with_state(|s| s.tags.values().map(|t| t.unique).sum())
    }

    pub fn records(&self) -> Vec<Record> {
        self.with_state(|s| s.records.clone())
    }

    /// Waits until every connection the agent opened has been closed by it (after it exited),
    /// so everything it ever sent has been read.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.open_connections() == 0)
    }

    /// One-paragraph summary for failure messages.
    pub fn summary(&self) -> String {
        let (lines, bytes, acc) = (self.lines(), self.bytes(), self.accepted());
        self.with_state(|s| {
            let mut tags: Vec<String> = s
                .tags
                .iter()
                .map(|(t, st)| format!("{t}: {} unique / {} hits", st.unique, st.hits.len()))
                .collect();
            tags.sort();
            format!(
                "receiver {}: {lines} lines, {bytes} bytes, {acc} connections; bad_json {} {:?}; corrupt {} {:?}; other {}; partial_at_close {}; forced_closes {} (discarded {} bytes); tags [{}]",
                self.addr,
                s.bad_json,
                s.bad_json_examples,
                s.corrupt,
                s.corrupt_examples,
                s.other,
                s.partial_at_close,
                s.forced_closes,
                s.discarded_bytes,
                tags.join(", ")
            )
        })
    }

    /// Takes the collector down: stops listening (connects are refused), sends FIN on every
    /// connection and reads until the agent closes its side or `FIN_GRACE` passes; then closes.
    /// A graceful collector shutdown: an agent that watches its connection loses nothing.
    pub fn stop(&mut self) {
        if let Some((run, h)) = self.acceptor.take() {
            run.store(false, Ordering::SeqCst);
            let _ = h.join();
        }
        let conns: Vec<_> = std::mem::take(&mut *self.shared.conns.lock().unwrap());
        for (closing, _) in &conns {
            closing.store(true, Ordering::SeqCst);
        }
        for (_, h) in conns {
            let _ = h.join();
        }
    }

    /// Brings the collector back on the same port.
    pub fn restart(&mut self) {
        assert!(self.acceptor.is_none(), "restart of a running receiver");
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("rebind receiver on {}: {e}", self.addr),
            }
        };
        self.acceptor = Some(spawn_acceptor(listener, self.shared.clone()));
    }

    /// Per-stream check of tag's arrivals against seqs `0..expected`.
    pub fn check(&self, tag: &str, expected: u64) -> SeqReport {
        self.with_state(|s| SeqReport::of(tag, s.tags.get(tag), expected))
    }

    /// Copy of the per-seq arrival counts of `tag`, sized `expected`.
    pub fn seen(&self, tag: &str, expected: u64) -> Vec<u8> {
        self.with_state(|s| {
            let mut v = s.tags.get(tag).map(|t| t.seen.clone()).unwrap_or_default();
            v.resize(expected.max(v.len() as u64) as usize, 0);
            v
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.summary());
        }
        if let Some((run, h)) = self.acceptor.take() {
            run.store(false, Ordering::SeqCst);
            let _ = h.join();
        }
        // Connection threads end at EOF or on their own read errors; closing them here would
        // block on an agent that is still alive, so they are left to finish detached.
        for (closing, _) in self.shared.conns.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            closing.store(true, Ordering::SeqCst);
        }
    }
}

fn spawn_acceptor(listener: TcpListener, shared: Arc<Shared>) -> (Arc<AtomicBool>, JoinHandle<()>) {
    // Non-blocking accept polled every few ms: simple, and `stop` needs no self-connect trick.
    listener.set_nonblocking(true).expect("nonblocking listener");
    let run = Arc::new(AtomicBool::new(true));
    let r = run.clone();
    let h = thread::Builder::new()
        .name("receiver-accept".into())
        .spawn(move || {
            loop {
                let running = r.load(Ordering::SeqCst);
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        shared.accepted.fetch_add(1, Ordering::SeqCst);
                        shared.open.fetch_add(1, Ordering::SeqCst);
                        let closing = Arc::new(AtomicBool::new(false));
                        let (c, sh) = (closing.clone(), shared.clone());
                        let h = thread::Builder::new()
                            .name("receiver-conn".into())
                            .spawn(move || serve(stream, sh, c))
                            .expect("spawn receiver conn");
                        shared.conns.lock().unwrap().push((closing, h));
                    }
                    // Stopping, and the listen backlog is empty: closing the listener now
                    // resets no connection the agent has already written into.
                    Err(_) if !running => break,
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        })
        .expect("spawn acceptor");
    (run, h)
}

fn serve(mut s: TcpStream, shared: Arc<Shared>, closing: Arc<AtomicBool>) {
    // A short read timeout lets the thread notice `stop` while the agent is silent.
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 256 << 10];
    let mut carry: Vec<u8> = Vec::new();
    let mut fin_at: Option<Instant> = None;
    loop {
        if fin_at.is_none() && closing.load(Ordering::SeqCst) {
            let _ = s.shutdown(Shutdown::Write);
            fin_at = Some(Instant::now());
        }
        if fin_at.is_some_and(|t| t.elapsed() > FIN_GRACE) {
            // The agent kept the connection open after our FIN: close it as a dead collector
            // would, and count what was sitting unread (that data is lost for the agent).
            let _ = s.set_nonblocking(true);
            let mut discarded = 0u64;
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                discarded += n as u64;
            }
            let mut st = shared.state.lock().unwrap();
            st.forced_closes += 1;
            st.discarded_bytes += discarded;
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => ingest(&shared, &buf[..n], &mut carry),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    if !carry.is_empty() {
        shared.state.lock().unwrap().partial_at_close += 1;
    }
    shared.open.fetch_sub(1, Ordering::SeqCst);
}

fn ingest(shared: &Shared, data: &[u8], carry: &mut Vec<u8>) {
    shared.bytes.fetch_add(data.len() as u64, Ordering::SeqCst);
    let mut st = shared.state.lock().unwrap();
    let mut n = 0u64;
    let mut rest = data;
    if !carry.is_empty() {
        match memchr::memchr(b'\n', rest) {
            None => {
                carry.extend_from_slice(rest);
                return;
            }
            Some(i) => {
                carry.extend_from_slice(&rest[..i]);
                let line = std::mem::take(carry);
                st.handle_line(&line, shared.wire, shared.keep);
                n += 1;
                rest = &rest[i + 1..];
            }
        }
    }
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', rest) {
        st.handle_line(&rest[start..i], shared.wire, shared.keep);
        n += 1;
        start = i + 1;
    }
    carry.extend_from_slice(&rest[start..]);
    drop(st);
    // Counted after the state is updated, so a test that sees `lines()` reach N also sees the
    // N records in the state.
    shared.lines.fetch_add(n, Ordering::SeqCst);
}

fn hash_id(id: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish() | 1 // never 0, which means "no id"
}

impl State {
    pub fn handle_line(&mut self, line: &[u8], wire: Wire, keep: bool) {
        match wire {
            Wire::Raw => {
                let msg = String::from_utf8_lossy(line);
                self.on_message(&msg, 0, false);
                if keep {
                    self.records.push(Record {
                        json: serde_json::Value::Null,
                        message: msg.into_owned(),
                    });
                }
            }
            Wire::Ndjson => match serde_json::from_slice::<WireRecord>(line) {
                Ok(r) => {
                    let msg = r.message.as_deref().unwrap_or("");
                    let id = r.id.as_deref().map_or(0, hash_id);
                    let cut = r.fields.as_ref().is_some_and(|f| f.truncated);
                    self.on_message(msg, id, cut);
                    if keep {
                        let json: serde_json::Value = serde_json::from_slice(line).unwrap();
                        let message = json.get("message").and_then(|m| m.as_str()).unwrap_or("").to_owned();
                        self.records.push(Record { json, message });
                    }
                }
                Err(e) => {
                    self.bad_json += 1;
                    if self.bad_json_examples.len() < 3 {
                        let text = String::from_utf8_lossy(&line[..line.len().min(200)]);
                        self.bad_json_examples.push(format!("{e}: {text}"));
                    }
                }
            },
        }
    }

    fn on_message(&mut self, msg: &str, id: u64, cut: bool) {
        let c = corpus();
        let Some((tag, seq, body)) = c.parse(msg) else {
            self.other += 1;
            return;
        };
        if cut && body != c.body(tag, seq) && c.body(tag, seq).starts_with(body) {
            self.cut += 1;
            return;
        }
        if body != c.body(tag, seq) {
            self.corrupt += 1;
            if self.corrupt_examples.len() < 3 {
                let mut cut = msg.len().min(200);
                while !msg.is_char_boundary(cut) {
                    cut -= 1;
                }
                self.corrupt_examples.push(msg[..cut].to_owned());
            }
            return;
        }
        let t = match self.tags.get_mut(tag) {
            Some(t) => t,
            None => self.tags.entry(tag.to_owned()).or_default(),
        };
        t.hits.push(Hit { seq, id });
        let i = seq as usize;
        if t.seen.len() <= i {
            t.seen.resize((i + 1).max(t.seen.len() * 2), 0);
        }
        if t.seen[i] == 0 {
            t.unique += 1;
        }
        t.seen[i] = t.seen[i].saturating_add(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Sequence checks
// ---------------------------------------------------------------------------------------------

/// How the arrivals of one stream compare with the seqs `0..expected` that were written.
#[derive(Debug, Default)]
pub struct SeqReport {
    pub tag: String,
    pub expected: u64,
    pub hits: u64,
    pub unique: u64,
    pub missing: u64,
    /// The first missing ranges, for the message.
    pub missing_ranges: Vec<Range<u64>>,
    /// Arrivals beyond the first of a seq.
    pub duplicates: u64,
    /// Arrivals whose seq is not greater than the one before (regressions in arrival order).
    pub out_of_order: u64,
    pub first_out_of_order: Option<(u64, u64)>,
    /// Seqs that arrived again with a different `id` (ids must be stable across restarts).
    pub id_changes: u64,
    /// Different seqs that arrived with the same `id` (ids must be unique per line).
    pub id_collisions: u64,
    /// Seqs ≥ expected (lines nobody wrote).
    pub beyond: u64,
}

impl SeqReport {
    pub fn of(tag: &str, t: Option<&TagState>, expected: u64) -> SeqReport {
        let mut r = SeqReport {
            tag: tag.to_owned(),
            expected,
            ..Default::default()
        };
        let Some(t) = t else {
            r.missing = expected;
            r.missing_ranges.push(0..expected);
            return r;
        };
        r.hits = t.hits.len() as u64;
        let mut first_id = vec![0u64; expected as usize];
        let mut id_owner: HashMap<u64, u64> = HashMap::new();
        let mut prev: Option<u64> = None;
        for h in &t.hits {
            if h.seq >= expected {
                r.beyond += 1;
                continue;
            }
            if let Some(p) = prev {
                if h.seq <= p {
                    r.out_of_order += 1;
                    r.first_out_of_order.get_or_insert((p, h.seq));
                }
            }
            prev = Some(h.seq);
            if h.id != 0 {
                let f = &mut first_id[h.seq as usize];
                if *f == 0 {
                    *f = h.id;
                    if let Some(other) = id_owner.insert(h.id, h.seq) {
                        if other != h.seq {
                            r.id_collisions += 1;
                        }
                    }
                } else if *f != h.id {
                    r.id_changes += 1;
                }
            }
        }
        let mut run: Option<u64> = None;
        for seq in 0..expected {
            let n = t.seen.get(seq as usize).copied().unwrap_or(0) as u64;
            if n == 0 {
                r.missing += 1;
                run.get_or_insert(seq);
            } else {
                r.unique += 1;
                r.duplicates += n - 1;
                if let Some(s) = run.take() {
                    if r.missing_ranges.len() < 8 {
                        r.missing_ranges.push(s..seq);
                    }
                }
            }
        }
        if let Some(s) = run {
            if r.missing_ranges.len() < 8 {
                r.missing_ranges.push(s..expected);
            }
        }
        r
    }
}

impl fmt::Display for SeqReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] expected {}, unique {}, hits {}, missing {} {:?}, duplicates {}, out_of_order {} (first {:?}), id_changes {}, id_collisions {}, beyond {}",
            self.tag,
            self.expected,
            self.unique,
            self.hits,
            self.missing,
            self.missing_ranges,
            self.duplicates,
            self.out_of_order,
            self.first_out_of_order,
            self.id_changes,
            self.id_collisions,
            self.beyond
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------------------------

/// How a writer rotates its file while writing.
#[derive(Clone, Debug)]
pub enum Rotation {
    None,
    /// logrotate's default scheme: every `every`, shift `app.log.N` → `app.log.N+1`, rename
    /// `app.log` → `app.log.1`, write `late_lines` more lines to the renamed file (the app has
    /// not reopened yet), then create a new `app.log`.
    Rename {
        every: Duration,
        late_lines: u64,
    },
    /// logrotate's `copytruncate`: another thread copies `app.log` → `app.log.N` and truncates
    /// `app.log` every `every` while the writer keeps appending (O_APPEND), as an app that
    /// never reopens its log does. Lines written between the copy and the truncation are gone.
    CopyTruncate {
        every: Duration,
    },
}

#[derive(Clone, Debug)]
pub struct WriterSpec {
    pub path: PathBuf,
    pub tag: String,
    pub lines: u64,
    /// Lines per second (in bursts of `batch` lines); `None` = as fast as possible.
    pub rate: Option<u64>,
    pub rotation: Rotation,
    /// Lines per write(2): whole lines only, so a truncation never cuts one in half.
    pub batch: u64,
}

impl WriterSpec {
    pub fn new(path: PathBuf, tag: &str, lines: u64) -> WriterSpec {
        WriterSpec {
            path,
            tag: tag.to_owned(),
            lines,
            rate: None,
            rotation: Rotation::None,
            batch: 256,
        }
    }
    pub fn rate(mut self, lines_per_sec: u64) -> WriterSpec {
        self.rate = Some(lines_per_sec);
        self
    }
    pub fn rotation(mut self, r: Rotation) -> WriterSpec {
        self.rotation = r;
        self
    }
}

#[derive(Debug, Default)]
pub struct WriterReport {
    pub lines: u64,
    pub bytes: u64,
    pub rotations: u64,
    /// Copies made by copytruncate, in order.
    pub copies: Vec<PathBuf>,
    pub elapsed: Duration,
}

/// A thread appending numbered lines `0..lines` of one tag to a file.
pub struct Writer {
    written: Arc<AtomicU64>,
    handle: Option<JoinHandle<WriterReport>>,
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

pub fn rotated_name(path: &Path, k: u64) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{k}"));
    PathBuf::from(s)
}

impl Writer {
    pub fn spawn(spec: WriterSpec) -> Writer {
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let handle = thread::Builder::new()
            .name(format!("writer-{}", spec.tag))
            .spawn(move || run_writer(spec, w))
            .expect("spawn writer");
        Writer {
            written,
            handle: Some(handle),
        }
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    pub fn join(mut self) -> WriterReport {
        self.handle.take().unwrap().join().expect("writer panicked")
    }
}

fn run_writer(spec: WriterSpec, written: Arc<AtomicU64>) -> WriterReport {
    let c = corpus();
    let start = Instant::now();
    let mut report = WriterReport::default();
    let mut f = open_append(&spec.path);

    // copytruncate runs beside the writer, as logrotate does beside the app.
    let rotator = match spec.rotation {
        Rotation::CopyTruncate { every } => {
            let stop = Arc::new(AtomicBool::new(false));
            let (s, path) = (stop.clone(), spec.path.clone());
            let h = thread::spawn(move || {
                let mut copies = Vec::new();
                let mut next = Instant::now() + every;
                while !s.load(Ordering::SeqCst) {
                    if Instant::now() < next {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    let dst = rotated_name(&path, copies.len() as u64 + 1);
                    fs::copy(&path, &dst).expect("copytruncate: copy");
                    OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|t| t.set_len(0))
                        .expect("copytruncate: truncate");
                    copies.push(dst);
                    next = Instant::now() + every;
                }
                copies
            });
            Some((stop, h))
        }
        _ => None,
    };

    let mut buf = Vec::with_capacity(64 << 10);
    let mut seq = 0u64;
    let mut last_rotation = Instant::now();
    let mut rotated = 0u64;
    let mut write_lines = |f: &mut File, seq: &mut u64, n: u64, report: &mut WriterReport| {
        buf.clear();
        for s in *seq..*seq + n {
            c.push_line(&mut buf, &spec.tag, s);
        }
        f.write_all(&buf).expect("write lines");
        *seq += n;
        report.bytes += buf.len() as u64;
        written.store(*seq, Ordering::SeqCst);
    };
    while seq < spec.lines {
        let n = spec.batch.min(spec.lines - seq);
        write_lines(&mut f, &mut seq, n, &mut report);

        if let Rotation::Rename { every, late_lines } = spec.rotation {
            if last_rotation.elapsed() >= every && seq < spec.lines {
                for k in (1..=rotated).rev() {
                    fs::rename(rotated_name(&spec.path, k), rotated_name(&spec.path, k + 1)).expect("shift rotated");
                }
                fs::rename(&spec.path, rotated_name(&spec.path, 1)).expect("rotate");
                rotated += 1;
                report.rotations += 1;
                let late = late_lines.min(spec.lines - seq);
                if late > 0 {
                    write_lines(&mut f, &mut seq, late, &mut report);
                }
                f = open_append(&spec.path);
                last_rotation = Instant::now();
            }
        }

        if let Some(rate) = spec.rate {
            let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
    }
    if let Some((stop, h)) = rotator {
        stop.store(true, Ordering::SeqCst);
        report.copies = h.join().expect("rotator panicked");
        report.rotations = report.copies.len() as u64;
    }
    report.lines = seq;
    report.elapsed = start.elapsed();
    report
}

/// Seqs of the complete test lines of `tag` in a file, in file order.
pub fn file_seqs(path: &Path, tag: &str) -> Vec<u64> {
    let bytes = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let c = corpus();
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else { break };
        if let Some((t, seq, _)) = c.parse(line) {
            if t == tag {
                out.push(seq);
            }
        }
    }
    out
}

/// For a copytruncate run: the generations of the live file, as seq ranges. Generation k is
/// what was appended between truncation k-1 and truncation k; it starts at the first line of
/// copy k (which holds its prefix written before the copy) and ends where the next one starts.
/// The last generation is the live file at the end, up to `total`.
pub fn copytruncate_generations(copies: &[PathBuf], live: &Path, tag: &str, total: u64) -> Vec<Range<u64>> {
    let mut starts: Vec<u64> = copies
        .iter()
        .filter_map(|p| file_seqs(p, tag).first().copied())
        .collect();
    if let Some(&first) = file_seqs(live, tag).first() {
        starts.push(first);
    }
    let mut gens = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(total);
        if s < end {
            gens.push(s..end);
        }
    }
    gens
}

// ---------------------------------------------------------------------------------------------
// Ending a run
// ---------------------------------------------------------------------------------------------

/// SIGTERM, expect exit 0 within the default shutdown budget (25 s) plus slack, then wait
/// until the receiver has read the agent's connections to EOF: after this, everything the
/// agent will ever send has been counted, so absence checks (no duplicates) are meaningful.
pub fn stop_clean(agent: &mut Agent, rx: &Receiver) {
    agent.sigterm();
    let code = agent.wait_exit(Duration::from_secs(40));
    assert_eq!(
        code,
        Some(0),
        "agent should exit 0 after SIGTERM (None = still running after 40 s)"
    );
    assert!(
        rx.wait_drained(Duration::from_secs(10)),
        "the agent's connections did not close after it exited"
    );
}

/// The offsets saved in `data_dir/checkpoints.json`, by path (empty before the first write).
pub fn checkpoint_offsets(cfg: &Config) -> Vec<(String, u64)> {
    let Ok(text) = std::fs::read(cfg.data_dir.join("checkpoints.json")) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    v["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|f| {
                    (
                        f["path"].as_str().unwrap_or("").to_owned(),
                        f["offset"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Network inputs: an agent with network sources, and the clients' bookkeeping
// ---------------------------------------------------------------------------------------------

/// An agent whose `sources` (TOML `[[sources]]` tables) ship NDJSON to `rx` over tcp; the
/// caller waits for it to listen (`wait_listening`).
pub fn network_agent(dir: &TestDir, rx: &Receiver, sources: &str) -> Agent {
    let text = format!(
        "data_dir = {data}\n[metrics]\naddress = \"127.0.0.1:0\"\n\n{sources}\n\n[[sinks]]\nname = \"out\"\ntype = \"tcp\"\naddress = {rx}\nencoding = \"ndjson\"\nbatch = {{ max_events = 1000, linger_ms = 50 }}\n",
        data = q(&dir.subdir("data").to_string_lossy()),
        rx = q(&rx.addr().to_string()),
    );
    let path = dir.join("tailship.toml");
    fs::write(&path, text).unwrap();
    let args = vec!["--config".to_owned(), path.to_string_lossy().into_owned()];
    Agent::spawn(dir, &args, Some(SocketAddr::from(([127, 0, 0, 1], 0))), |_| {})
}

/// Fails unless a TCP connection to `port` on 127.0.0.1 succeeds within 20 s.
pub fn wait_listening(agent: &mut Agent, port: u16) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        wait_until(Duration::from_secs(20), || TcpStream::connect(addr).is_ok()),
        "the input never listened on {addr}\n{}",
        agent.diag()
    );
}

/// Waits for a client process; fails loudly with its stderr (a missing package, a crash).
pub fn finish_client(mut c: Child, what: &str) {
    let status = c.wait().expect("wait for the client");
    let mut err = String::new();
    if let Some(mut e) = c.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "{what} failed ({status}):\n{err}");
}

/// The seqs a client wrote to `path`, one per line, as it saw them acknowledged.
pub fn acked_seqs(path: &Path) -> Vec<u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The received records by `fields.seq`.
/// Waits until every record of `seqs` (by its `seq` field) has reached `rx`, failing with
/// `what` and the agent's diagnostics when delivery stalls for `STALL` or passes `LIMIT`.
pub fn wait_seqs_delivered(agent: &mut Agent, rx: &Receiver, what: &str, seqs: &[u64]) {
    wait_progress(Some(agent), what, STALL, LIMIT, || {
        let got = by_seq(rx);
        let n = seqs.iter().filter(|s| got.contains_key(s)).count() as u64;
        (n, n == seqs.len() as u64)
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

pub fn by_seq(rx: &Receiver) -> HashMap<u64, Record> {
    rx.records()
        .into_iter()
        .filter_map(|r| Some((r.field("seq")?.as_u64()?, r)))
        .collect()
}
