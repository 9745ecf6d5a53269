//! The tailer's blind spots, through the binary: copytruncate by `cp` over an existing copy;
//! 50 files rotated by rename at random intervals with the agent killed -9 ten times; a restart
//! with 3,000 checkpoint entries (how soon it is ready, and a file created and renamed while it
//! starts); 1,100 files under a 1,024-descriptor limit with the collector restarted.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::util::*;

/// Runs a command-line tool (coreutils, util-linux); a missing tool fails the test.
fn run_tool(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e} (this test needs the tool)"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn append(f: &mut File, tag: &str, seqs: Range<u64>) {
    let mut buf = Vec::new();
    for s in seqs {
        corpus().push_line(&mut buf, tag, s);
    }
    f.write_all(&buf).expect("append lines");
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn key_of(path: &Path) -> (u64, u64) {
    let m = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.dev(), m.ino())
}

/// The (device, inode) of every entry in `data_dir/checkpoints.json`.
fn checkpoint_keys(cfg: &Config) -> HashSet<(u64, u64)> {
    let Ok(text) = fs::read(cfg.data_dir.join("checkpoints.json")) else {
        return HashSet::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&text).expect("checkpoint is JSON");
    v["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .filter_map(|f| Some((f["dev"].as_u64()?, f["ino"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The wall-clock time of the first stderr line of `agent` containing `what`, from its log
/// timestamp (`2026-11-30T18:36:59.123456Z`), waiting for it up to `timeout`.
fn logged_at(agent: &Agent, what: &str, timeout: Duration) -> Option<SystemTime> {
    let mut at = None;
    wait_until(timeout, || {
        at = agent
            .stderr()
            .lines()
            .find(|l| l.contains(what))
            .and_then(|l| humantime::parse_rfc3339_weak(l.split_whitespace().next()?.trim_end_matches('Z')).ok());
        at.is_some()
    });
    at
}

// ---------------------------------------------------------------------------------------------
// copytruncate by cp
// ---------------------------------------------------------------------------------------------

/// `cp app.log app.log.1 && truncate -s 0 app.log`, five times: from the second rotation on,
/// `cp` rewrites the same `app.log.1` (same inode). The writer keeps its descriptor (O_APPEND)
/// and pauses only for the two commands, so every line is in a copy or after a truncation:
/// a tailer that reads an adopted copy only up to where the live file was truncated, and never
/// again when the copy is rewritten, delivers each line exactly once.
#[test]
fn copytruncate_by_cp_over_the_same_copy_loses_and_repeats_nothing() {
    const ROTATIONS: usize = 5;
    let dir = TestDir::new("cp-truncate");
    let logs = dir.subdir("logs");
    let live = logs.join("app.log");
    let copy = logs.join("app.log.1");
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[live.display().to_string()], &rx);
    let mut f = open_append(&live);
    let mut agent = Agent::start(&dir, &cfg);

    let mut seq = 0u64;
    let mut copy_key = None;
    for r in 0..=ROTATIONS {
        // Bursts of 40 lines every 10 ms for 0.6 s, then the rotation right after a burst, so
        // the tailer is usually behind and the copy is what holds the last lines.
        let until = Instant::now() + Duration::from_millis(600);
        while Instant::now() < until {
            append(&mut f, "cp", seq..seq + 40);
            seq += 40;
            thread::sleep(Duration::from_millis(10));
        }
        if r == ROTATIONS {
            break;
        }
        let (l, c) = (live.to_str().unwrap(), copy.to_str().unwrap());
        run_tool(&["cp", l, c]);
        run_tool(&["truncate", "-s", "0", l]);
        let k = key_of(&copy);
        assert_eq!(*copy_key.get_or_insert(k), k, "cp rewrites the same copy in place");
    }
    let total = seq;
    wait_progress(Some(&mut agent), "every line of the cp rotations", STALL, LIMIT, || {
        let u = rx.unique("cp");
        (u, u >= total)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", rx.summary(), rx.check("cp", total)));
    let m = agent.metrics().expect("metrics");
    stop_clean(&mut agent, &rx);
    let r = rx.check("cp", total);
    let adopted = agent.stderr().matches("from the copy").count();
    eprintln!("{r}\nthe copy was adopted at {adopted} of {ROTATIONS} rotations");
    assert_eq!(r.missing, 0, "no line lost: {r}");
    assert_eq!(r.duplicates, 0, "no line read twice from the rewritten copy: {r}");
    assert_eq!(r.beyond, 0, "{r}");
    rx.with_state(|s| assert_eq!(s.corrupt, 0, "byte-exact: {:?}", s.corrupt_examples));
    assert!(
        m.val("tailship_truncations_total") >= ROTATIONS as f64,
        "every truncation is noticed: {:?}",
        m.get("tailship_truncations_total")
    );
}

// ---------------------------------------------------------------------------------------------
// 50 files rotated by rename, kill -9 ten times
// ---------------------------------------------------------------------------------------------

/// One generation of a rotating file: what was written to it, and when it lived.
#[derive(Clone, Debug)]
struct Gen {
    tag: String,
    key: (u64, u64),
    seqs: Range<u64>,
    created: Instant,
    renamed: Option<Instant>,
}

/// A time the agent was down: killed at `killed`, its watches in place again at `up` (as seen
/// in its log by the test, so a little later than in fact), the checkpoint it restarted from.
struct Down {
    killed: Instant,
    up: Instant,
    known: HashSet<(u64, u64)>,
}

/// Fifty writers in one thread: every 10 ms a line to each file; each file renamed to
/// `fN.log.K` at random intervals of 0.05–0.5 s and created again.
struct Rotator {
    stop: Arc<AtomicBool>,
    gens: Arc<Mutex<Vec<Gen>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Rotator {
    fn start(logs: PathBuf, files: usize, seed: u64) -> Rotator {
        let stop = Arc::new(AtomicBool::new(false));
        let gens = Arc::new(Mutex::new(Vec::new()));
        let (s, g) = (stop.clone(), gens.clone());
        let handle = thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(seed);
            let next_rotation = |rng: &mut fastrand::Rng| Instant::now() + Duration::from_millis(rng.u64(50..=500));
            let mut live: Vec<(File, usize, Instant, u64)> = (0..files)
                .map(|i| {
                    let path = logs.join(format!("f{i}.log"));
                    let f = open_append(&path);
                    let idx = push_gen(&g, format!("f{i}"), key_of(&path), 0);
                    (f, idx, next_rotation(&mut rng), 1)
                })
                .collect();
            while !s.load(Ordering::SeqCst) {
                for (i, (f, idx, due, k)) in live.iter_mut().enumerate() {
                    let seq = {
                        let mut gens = g.lock().unwrap();
                        let gen = &mut gens[*idx];
                        gen.seqs.end += 1;
                        gen.seqs.end - 1
                    };
                    append(f, &format!("f{i}"), seq..seq + 1);
                    if Instant::now() >= *due {
                        let path = logs.join(format!("f{i}.log"));
                        fs::rename(&path, logs.join(format!("f{i}.log.{k}"))).expect("rotate");
                        g.lock().unwrap()[*idx].renamed = Some(Instant::now());
                        *f = open_append(&path);
                        *idx = push_gen(&g, format!("f{i}"), key_of(&path), seq + 1);
                        *due = next_rotation(&mut rng);
                        *k += 1;
                    }
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        Rotator {
            stop,
            gens,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Vec<Gen> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().expect("rotator panicked");
        self.gens.lock().unwrap().clone()
    }
}

fn push_gen(gens: &Mutex<Vec<Gen>>, tag: String, key: (u64, u64), first: u64) -> usize {
    let mut g = gens.lock().unwrap();
    g.push(Gen {
        tag,
        key,
        seqs: first..first,
        created: Instant::now(),
        renamed: None,
    });
    g.len() - 1
}

/// How long before a kill a newly created file may still be missing from the checkpoint on
/// disk: the agent registers a file when it opens it, and writes the checkpoint 50 ms after a
/// registration; the rest is slack for a loaded 2-core machine.
const NOT_YET_SAVED: Duration = Duration::from_secs(1);

/// The documented window: a generation the restarted agent could not know — created after
/// (or just before) a kill, not in the checkpoint it restarted from, and renamed away to a
/// name the globs do not match before its watches were in place again.
fn in_window(g: &Gen, downs: &[Down]) -> bool {
    let Some(renamed) = g.renamed else { return false };
    downs.iter().any(|d| {
        g.created + NOT_YET_SAVED > d.killed && g.created < d.up && renamed < d.up && !d.known.contains(&g.key)
    })
}

#[test]
fn fifty_files_renamed_at_random_ten_kills_lose_nothing_outside_the_window() {
    const FILES: usize = 50;
    const KILLS: usize = 10;
    let _heavy = heavy();
    let dir = TestDir::new("blind-kill");
    let logs = dir.subdir("logs");
    let rx = Receiver::ndjson();
    // A short checkpoint_grace keeps the checkpoint small: ~180 rotations a second leave
    // many closed files, each remembered for the grace.
    let mut cfg = Config::tcp(&dir, &[format!("{}/f*.log", logs.display())], &rx).top("checkpoint_grace = \"10s\"");
    let mut agent = Agent::start(&dir, &cfg);
    let seed = std::env::var("BLIND_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_b11d);
    eprintln!("seed {seed} (BLIND_SEED to repeat)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let rotator = Rotator::start(logs.clone(), FILES, seed);
    let t0 = Instant::now();
    let mut downs = Vec::new();
    for n in 0..KILLS {
        thread::sleep(Duration::from_millis(rng.u64(1000..=2200)));
        let killed = Instant::now();
        agent.kill9();
        let known = checkpoint_keys(&cfg);
        thread::sleep(Duration::from_millis(rng.u64(0..=1000)));
        cfg.fresh_metrics_port();
        agent = Agent::start(&dir, &cfg);
        let mut up = None;
        wait_until(Duration::from_secs(15), || {
            up = agent.stderr().contains("watching directories").then(Instant::now);
            up.is_some()
        });
        let up = up.unwrap_or_else(|| panic!("restart #{}: no 'watching directories' line\n{}", n + 1, agent.diag()));
        eprintln!(
            "kill #{} at {:.2?}, down {:.2?}, {} files in its checkpoint",
            n + 1,
            killed - t0,
            up - killed,
            known.len()
        );
        downs.push(Down { killed, up, known });
    }
    thread::sleep(Duration::from_millis(1500));
    let gens = rotator.finish();

    // What must arrive: every generation outside the window.
    let excused: Vec<&Gen> = gens.iter().filter(|g| in_window(g, &downs)).collect();
    let must: Vec<&Gen> = gens.iter().filter(|g| !in_window(g, &downs)).collect();
    let must_lines: u64 = must.iter().map(|g| g.seqs.end - g.seqs.start).sum();
    let delivered = |rx: &Receiver| -> u64 {
        rx.with_state(|s| {
            must.iter()
                .map(|g| {
                    let seen = s.tags.get(&g.tag).map(|t| &t.seen[..]).unwrap_or(&[]);
                    g.seqs
                        .clone()
                        .filter(|&q| seen.get(q as usize).is_some_and(|&n| n > 0))
                        .count() as u64
                })
                .sum()
        })
    };
    wait_progress(Some(&mut agent), "every line outside the window", STALL, LIMIT, || {
        let d = delivered(&rx);
        (d, d >= must_lines)
    })
    .unwrap_or_else(|e| {
        let missing: Vec<String> = must
            .iter()
            .filter_map(|g| {
                let seen = rx.seen(&g.tag, g.seqs.end);
                let lost = g.seqs.clone().filter(|&q| seen[q as usize] == 0).count();
                (lost > 0).then(|| format!("{} {:?} key {:?}: {lost} lost", g.tag, g.seqs, g.key))
            })
            .take(10)
            .collect();
        panic!("{e}\nfirst generations with lost lines: {missing:#?}\n{}", rx.summary())
    });
    stop_clean(&mut agent, &rx);

    let total: u64 = gens.iter().map(|g| g.seqs.end - g.seqs.start).sum();
    let excused_lines: u64 = excused.iter().map(|g| g.seqs.end - g.seqs.start).sum();
    // Generations in the window that were created before a kill: how long before it.
    let unsaved_ages: Vec<Duration> = excused
        .iter()
        .filter_map(|g| {
            downs
                .iter()
                .find(|d| g.created <= d.killed && g.created + NOT_YET_SAVED > d.killed)
                .map(|d| d.killed - g.created)
        })
        .collect();
    let before_kill = unsaved_ages.len();
    eprintln!(
        "created before a kill and not yet in its checkpoint: {before_kill}, at most {:.2?} before it",
        unsaved_ages.iter().max().copied().unwrap_or_default()
    );
    let hits: u64 = rx.with_state(|s| s.tags.values().map(|t| t.hits.len() as u64).sum());
    eprintln!(
        "{} generations, {total} lines; in the window: {} generations ({before_kill} created before a kill), {excused_lines} lines; \
         {must_lines} lines outside it all delivered; {} received in all ({:.1}% duplicates)",
        gens.len(),
        excused.len(),
        hits,
        100.0 * hits.saturating_sub(rx.unique_total()) as f64 / rx.unique_total().max(1) as f64
    );
    rx.with_state(|s| assert_eq!(s.corrupt, 0, "byte-exact: {:?}", s.corrupt_examples));
    assert!(
        gens.len() > 500,
        "the run should cover many rotations, got {}",
        gens.len()
    );
}

// ---------------------------------------------------------------------------------------------
// A restart with 3,000 checkpoint entries
// ---------------------------------------------------------------------------------------------

/// 3,000 files read and checkpointed; while the agent is down half of them are renamed
/// (`fN.log` → `fN.log.1`, globs on the live names only) and every one gets a new line. The
/// restart must be ready within a second or so (one directory listing for all the entries, not
/// one per entry), resume every renamed file from its checkpoint, and read files created and
/// renamed while its startup scan runs.
#[test]
fn a_restart_with_3000_entries_is_ready_fast_and_sees_renames_during_startup() {
    const N: u64 = 3000;
    let _heavy = heavy();
    let dir = TestDir::new("blind-startup");
    let logs = dir.subdir("logs");
    let rx = Receiver::ndjson();
    let mut cfg = Config::tcp(&dir, &[format!("{}/f*.log", logs.display())], &rx);
    for i in 0..N {
        append(&mut open_append(&logs.join(format!("f{i}.log"))), "s", i..i + 1);
    }
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "the first 3,000 lines", STALL, LIMIT, || {
        let u = rx.unique("s");
        (u, u >= N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);
    assert_eq!(checkpoint_offsets(&cfg).len(), N as usize, "one entry per file");

    for i in 0..N {
        let path = logs.join(format!("f{i}.log"));
        let mut f = open_append(&path);
        if i < N / 2 {
            fs::rename(&path, logs.join(format!("f{i}.log.1"))).unwrap();
        }
        append(&mut f, "s", N + i..N + i + 1);
    }
    for k in 0..3 {
        append(
            &mut open_append(&logs.join(format!("fnew{k}.log"))),
            "s",
            2 * N + k..2 * N + k + 1,
        );
    }

    // While the agent starts: a file created and renamed away every 3 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let late = {
        let (stop, logs) = (stop.clone(), logs.clone());
        thread::spawn(move || {
            let mut renamed = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let k = renamed.len() as u64;
                let path = logs.join(format!("flate{k}.log"));
                append(&mut open_append(&path), "late", k..k + 1);
                fs::rename(&path, logs.join(format!("flate{k}.log.1"))).unwrap();
                renamed.push(SystemTime::now());
                thread::sleep(Duration::from_millis(3));
            }
            renamed
        })
    };
    cfg.fresh_metrics_port();
    let t0 = Instant::now();
    let mut agent = Agent::start(&dir, &cfg);
    let addr = agent.metrics_addr.expect("metrics address");
    let ready = wait_until(Duration::from_secs(30), || {
        http_get(addr, "/readyz").is_ok_and(|(code, _)| code == 200)
    });
    let ready_after = t0.elapsed();
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    let renamed = late.join().expect("late writer");
    assert!(ready, "/readyz never answered 200\n{}", agent.diag());

    let watching = logged_at(&agent, "watching directories", Duration::from_secs(5)).expect("watching line");
    let scanned = logged_at(&agent, "startup scan done", Duration::from_secs(5)).expect("scan line");
    let scan_ms = scanned.duration_since(watching).unwrap_or_default().as_millis();
    let seen_by_watch: Vec<u64> = (0..renamed.len() as u64)
        .filter(|&k| renamed[k as usize] > watching)
        .collect();
    let during: Vec<u64> = seen_by_watch
        .iter()
        .copied()
        .filter(|&k| renamed[k as usize] < scanned)
        .collect();
    eprintln!(
        "spawn to /readyz 200: {ready_after:.2?}; startup scan {scan_ms} ms (log); {} files renamed while it started, {} during the scan",
        seen_by_watch.len(),
        during.len()
    );
    assert!(
        !during.is_empty(),
        "no file was renamed during the startup scan ({scan_ms} ms): the test did not test it"
    );
    wait_progress(
        Some(&mut agent),
        "the new lines and the late files",
        STALL,
        LIMIT,
        || {
            let u = rx.unique("s");
            let seen = rx.seen("late", renamed.len() as u64);
            let late_ok = seen_by_watch.iter().all(|&k| seen[k as usize] > 0);
            (u, u >= 2 * N + 3 && late_ok)
        },
    )
    .unwrap_or_else(|e| {
        let seen = rx.seen("late", renamed.len() as u64);
        let lost: Vec<u64> = seen_by_watch
            .iter()
            .copied()
            .filter(|&k| seen[k as usize] == 0)
            .collect();
        panic!(
            "{e}\nlate files not read: {lost:?}\n{}\n{}",
            rx.summary(),
            rx.check("s", 2 * N + 3)
        )
    });
    stop_clean(&mut agent, &rx);
    let r = rx.check("s", 2 * N + 3);
    assert_eq!(r.missing, 0, "{r}");
    assert!(
        ready_after < Duration::from_secs(3),
        "ready after {ready_after:.2?} with {N} checkpoint entries (target: under 1 s)"
    );
}

// ---------------------------------------------------------------------------------------------
// 1,100 files under 1,024 descriptors
// ---------------------------------------------------------------------------------------------

/// The agent runs under `prlimit --nofile=1024:1024` (soft and hard: it cannot raise it) and
/// tails 1,100 files that all keep growing; the collector goes away for a second mid-run.
/// Every line must arrive while the agent runs: the sink reconnects, the checkpoint is written,
/// and the files past the cap take turns with the quiet ones.
#[test]
fn eleven_hundred_files_under_1024_descriptors_all_arrive_across_a_collector_restart() {
    const FILES: usize = 1100;
    const ROUNDS: u64 = 20;
    const PER_ROUND: u64 = 5;
    let _heavy = heavy();
    run_tool(&["prlimit", "--version"]);
    let dir = TestDir::new("blind-fds");
    let logs = dir.subdir("logs");
    let mut rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[format!("{}/d*.log", logs.display())], &rx);
    let mut files: Vec<File> = (0..FILES)
        .map(|i| open_append(&logs.join(format!("d{i}.log"))))
        .collect();
    let mut agent = Agent::start_wrapped(&dir, &cfg, &["prlimit", "--nofile=1024:1024"]);
    let limits = fs::read_to_string(format!("/proc/{}/limits", agent.pid)).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files limit");
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["1024", "1024"],
        "{line}"
    );

    let mut max_open = 0.0f64;
    for round in 0..ROUNDS {
        for (i, f) in files.iter_mut().enumerate() {
            let tag = format!("d{i}");
            append(f, &tag, round * PER_ROUND..(round + 1) * PER_ROUND);
        }
        if let Some(m) = agent.metrics() {
            max_open = max_open.max(m.val("tailship_open_files"));
        }
        if round == ROUNDS / 2 {
            rx.stop();
            thread::sleep(Duration::from_secs(1));
            rx.restart();
        }
        thread::sleep(Duration::from_millis(150));
    }
    let total = FILES as u64 * ROUNDS * PER_ROUND;
    wait_progress(Some(&mut agent), "every line of 1,100 files", STALL, LIMIT, || {
        let u = rx.unique_total();
        (u, u >= total)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    let m = agent.metrics().expect("metrics");
    max_open = max_open.max(m.val("tailship_open_files"));
    let stderr = agent.stderr();
    stop_clean(&mut agent, &rx);
    for i in 0..FILES {
        let r = rx.check(&format!("d{i}"), ROUNDS * PER_ROUND);
        assert_eq!(r.missing, 0, "{r}");
    }
    assert!(
        !stderr.contains("Too many open files") && !stderr.contains("os error 24"),
        "the agent ran out of descriptors:\n{}",
        stderr
            .lines()
            .filter(|l| l.contains("open files") || l.contains("error 24"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let cap_line = stderr
        .lines()
        .find(|l| l.contains("holding fewer files open than max_open_files"))
        .expect("the cap is logged with its numbers");
    eprintln!("{cap_line}\nmost files open at once: {max_open}");
    assert!(max_open < 1024.0, "open files stay below the limit: {max_open}");
    assert!(
        rx.accepted() >= 2,
        "the sink reconnected after the collector restart: {} connections",
        rx.accepted()
    );
    assert_eq!(
        stderr.matches("holding fewer files open").count(),
        1,
        "the cap is logged once"
    );
}
