//! Health that tells the truth: a sink whose every batch is rejected is down and counts its
//! errors; a `data_dir` that cannot be written stops the start (exit 1) or, later, fails
//! `/readyz` and is counted; a checkpoint path taken by a directory or a FIFO is moved aside;
//! SIGHUP with an unchanged config leaves the pipeline running.
//!
//! Read-only directories for root: the tests run as root, for whom permission bits mean
//! nothing, so they use the immutable attribute (`chattr +i`), which stops root too. Without
//! `chattr` (or on a file system without the attribute) they fail, saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::http_server::*;
use crate::util::*;

/// `chattr +i` on a directory for the guard's lifetime (and `-i` after, so the scratch
/// directory can be removed).
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Immutable {
        chattr("+i", dir);
        let probe = dir.join("probe-immutable");
        assert!(
            std::fs::write(&probe, b"x").is_err(),
            "chattr +i did not stop a write in {} (file system without the attribute?)",
            dir.display()
        );
        Immutable(dir.to_owned())
    }

    fn clear(self) {}
}

impl Drop for Immutable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
    }
}

fn chattr(flag: &str, dir: &Path) {
    let out = Command::new("chattr")
        .arg(flag)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("chattr (e2fsprogs) is needed to make a directory read-only for root: {e}"));
    assert!(
        out.status.success(),
        "chattr {flag} {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ready(agent: &Agent) -> Option<u16> {
    http_get(agent.metrics_addr?, "/readyz").ok().map(|(s, _)| s)
}

#[test]
fn a_sink_answering_400_to_everything_counts_errors_and_is_down() {
    const N: u64 = 500;
    let dir = TestDir::new("health-400");
    let logs = dir.subdir("logs");
    std::fs::write(logs.join("a.log"), corpus().lines("e", 0, N)).unwrap();
    let rx = HttpReceiver::start(false, Box::new(|_| Reply::Status(400, vec![], "bad request".into())));
    let cfg = http_config(&dir, &[format!("{}/*.log", logs.display())], &rx.url("/ingest"), &[])
        .batch("{ max_events = 100, max_bytes = 1048576, linger_ms = 50 }");
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "every batch rejected", STALL, LIMIT, || {
        let n = dead_letters(&cfg).len() as u64;
        (n, n >= N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    let m = agent.metrics().expect("metrics");
    let errors = m.get_with("tailship_send_errors_total", "sink=\"out\"").unwrap_or(0.0);
    assert!(
        errors >= 5.0,
        "five rejected batches counted, got {errors}:\n{}",
        m.text
    );
    assert_eq!(
        m.get_with("tailship_sink_up", "sink=\"out\""),
        Some(0.0),
        "a sink whose batches are all rejected is not up:\n{}",
        m.text
    );
    assert_eq!(
        m.get_with("tailship_sink_last_success_timestamp_seconds", "sink=\"out\""),
        Some(0.0),
        "nothing was ever accepted:\n{}",
        m.text
    );
    assert_eq!(m.get_with("tailship_records_sent_total", "sink=\"out\""), Some(0.0));

    // The collector recovers: up again, and the time of the success is recent.
    rx.set_policy(Box::new(|_| Reply::Status(200, vec![], "{}".into())));
    std::fs::write(logs.join("b.log"), corpus().lines("f", 0, 10)).unwrap();
    wait_progress(Some(&mut agent), "the next batch accepted", STALL, LIMIT, || {
        let n = rx.unique("f");
        (n, n >= 10)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    let m = agent.metrics().expect("metrics");
    assert_eq!(m.get_with("tailship_sink_up", "sink=\"out\""), Some(1.0), "{}", m.text);
    let last = m
        .get_with("tailship_sink_last_success_timestamp_seconds", "sink=\"out\"")
        .unwrap_or(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 60.0, "last success {last}, now {now}");
    agent.sigterm();
    assert_eq!(agent.wait_exit(Duration::from_secs(40)), Some(0));
}

#[test]
fn a_data_dir_that_cannot_be_written_at_start_stops_the_agent_with_exit_1() {
    let dir = TestDir::new("health-ro-start");
    let logs = dir.subdir("logs");
    std::fs::write(logs.join("a.log"), corpus().lines("a", 0, 10)).unwrap();
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let guard = Immutable::set(&cfg.data_dir);
    let mut agent = Agent::start(&dir, &cfg);
    let code = agent.wait_exit(Duration::from_secs(20));
    let log = agent.stderr();
    guard.clear();
    assert_eq!(code, Some(1), "exit 1 when data_dir is not writable:\n{log}");
    let named = cfg.data_dir.display().to_string();
    assert!(
        log.contains(&named) && log.contains("not writable"),
        "the message names data_dir ({named}):\n{log}"
    );
    assert_eq!(rx.lines(), 0, "nothing shipped without checkpoints");
}

#[test]
fn a_data_dir_made_read_only_while_running_fails_readyz_and_is_counted() {
    let dir = TestDir::new("health-ro-later");
    let logs = dir.subdir("logs");
    let log = logs.join("a.log");
    std::fs::write(&log, corpus().lines("a", 0, 100)).unwrap();
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let mut agent = Agent::start(&dir, &cfg);
    let started = wait_until(Duration::from_secs(30), || {
        ready(&agent) == Some(200) && checkpoint_offsets(&cfg).iter().any(|(_, o)| *o > 0)
    });
    assert!(started, "ready and checkpointed\n{}\n{}", rx.summary(), agent.diag());

    let guard = Immutable::set(&cfg.data_dir);
    append(&log, &corpus().lines("a", 100, 100));
    let failing = wait_until(Duration::from_secs(30), || {
        ready(&agent) == Some(503)
            && agent
                .metrics()
                .is_some_and(|m| m.val("tailship_checkpoint_errors_total") >= 1.0)
    });
    assert!(failing, "/readyz 503 and the error counted\n{}", agent.diag());
    let log_text = agent.stderr();
    assert_eq!(
        log_text.matches("checkpoint write failed").count(),
        1,
        "logged once, not at every retry:\n{log_text}"
    );

    drop(guard);
    let recovered = wait_until(Duration::from_secs(30), || {
        ready(&agent) == Some(200)
            && checkpoint_offsets(&cfg)
                .iter()
                .any(|(_, o)| *o == std::fs::metadata(&log).unwrap().len())
    });
    assert!(recovered, "ready again once data_dir is writable\n{}", agent.diag());
    assert!(agent.stderr().contains("checkpoint writes work again"));
    stop_clean(&mut agent, &rx);
}

#[test]
fn a_checkpoint_path_taken_by_a_directory_or_a_fifo_is_moved_aside_and_the_agent_starts() {
    for case in ["directory", "fifo", "tmp-directory"] {
        let dir = TestDir::new(&format!("health-cp-{case}"));
        let logs = dir.subdir("logs");
        std::fs::write(logs.join("a.log"), corpus().lines("a", 0, 50)).unwrap();
        let rx = Receiver::ndjson();
        let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
        let taken = match case {
            "tmp-directory" => cfg.data_dir.join("checkpoints.json.tmp"),
            _ => cfg.data_dir.join("checkpoints.json"),
        };
        if case == "fifo" {
            let st = Command::new("mkfifo")
                .arg(&taken)
                .status()
                .unwrap_or_else(|e| panic!("mkfifo is needed: {e}"));
            assert!(st.success(), "mkfifo {}", taken.display());
        } else {
            std::fs::create_dir_all(taken.join("inside")).unwrap();
        }
        let mut agent = Agent::start(&dir, &cfg);
        wait_progress(
            Some(&mut agent),
            &format!("{case}: lines shipped"),
            STALL,
            LIMIT,
            || {
                let u = rx.unique("a");
                (u, u >= 50)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
        let written = wait_until(Duration::from_secs(20), || {
            checkpoint_offsets(&cfg).iter().any(|(_, o)| *o > 0)
        });
        assert!(written, "{case}: a checkpoint is written\n{}", agent.diag());
        let aside: Vec<String> = std::fs::read_dir(&cfg.data_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{case}: the old one kept aside: {aside:?}");
        assert_eq!(ready(&agent), Some(200), "{case}");
        stop_clean(&mut agent, &rx);
    }
}

#[test]
fn sighup_with_an_unchanged_config_keeps_the_pipeline_running() {
    let dir = TestDir::new("health-sighup");
    let logs = dir.subdir("logs");
    let log = logs.join("a.log");
    std::fs::write(&log, corpus().lines("h", 0, 100)).unwrap();
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "the first lines", STALL, LIMIT, || {
        let u = rx.unique("h");
        (u, u >= 100)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    agent.signal(libc::SIGHUP);
    assert!(
        agent.logged_within("the config is unchanged; nothing to do", Duration::from_secs(10)),
        "SIGHUP reloads, finding nothing to change\n{}",
        agent.diag()
    );
    assert!(agent.alive(), "SIGHUP must not kill the agent");
    append(&log, &corpus().lines("h", 100, 100));
    wait_progress(Some(&mut agent), "lines after the SIGHUP", STALL, LIMIT, || {
        let u = rx.unique("h");
        (u, u >= 200)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    assert_eq!(ready(&agent), Some(200));
    stop_clean(&mut agent, &rx);
    assert_eq!(rx.check("h", 200).duplicates, 0);
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

/// A checkpoint the agent may not read (root's, mode 0600, the agent running as `nobody`):
/// moved aside, and the agent starts.
#[test]
fn an_unreadable_checkpoint_is_moved_aside_and_the_agent_starts() {
    use std::os::unix::fs::{chown, PermissionsExt};
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let dir = TestDir::new("health-cp-unreadable");
    let logs = dir.subdir("logs");
    std::fs::write(logs.join("a.log"), corpus().lines("a", 0, 50)).unwrap();
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    for p in [dir.path(), logs.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    chown(&cfg.data_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let saved = cfg.data_dir.join("checkpoints.json");
    std::fs::write(&saved, br#"{"version":1,"files":[]}"#).unwrap();
    std::fs::set_permissions(&saved, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut agent = Agent::start_with(&dir, &cfg, &[], |cmd| {
        cmd.uid(NOBODY).gid(NOBODY);
    });
    wait_progress(Some(&mut agent), "lines shipped", STALL, LIMIT, || {
        let u = rx.unique("a");
        (u, u >= 50)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    assert!(
        agent.stderr().contains("checkpoint is unreadable"),
        "{}",
        agent.stderr_tail(20)
    );
    let written = wait_until(Duration::from_secs(20), || {
        checkpoint_offsets(&cfg).iter().any(|(_, o)| *o > 0)
    });
    assert!(written, "a new checkpoint is written\n{}", agent.diag());
    stop_clean(&mut agent, &rx);
}
