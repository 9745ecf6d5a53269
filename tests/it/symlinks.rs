//! The app next door makes links under the shared log directory (issue 11): to the agent's
//! token file and config, to `/etc/passwd`, to `/etc` and `/sys`, a chain of directory links
//! doubling at each level, a hard link to a secret. Each test runs the real binary and checks
//! that a source follows links only where its `follow_symlinks` allows, never ships one of the
//! agent's own files, stays ready and responsive, and keeps shipping the other files.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::http_server::*;
use crate::util::*;

const TOKEN: &str = "tok-3f9a1c-secret";

/// The hostile layout under `<dir>/logs`, matched by `<dir>/logs/**/*.log`.
struct Layout {
    logs: PathBuf,
    token: PathBuf,
}

/// Files and links the app made, before the agent starts:
/// - `app.log`: a plain file (tag `app`);
/// - `inside.log` → `archive/inside.txt`: a link that stays under the glob's root (`inside`);
/// - `pods.log` → `<dir>/pods/p/0.log`: a link out of the root, into a `symlink_roots` (`pods`);
/// - `passwd.log` → `/etc/passwd`, `etc` → `/etc`;
/// - `token.log` → the agent's token file, `config.log` → its config file, `hard.log`: a hard
///   link to the token file (inside the root: only its inode gives it away).
fn layout(dir: &TestDir) -> Layout {
    let logs = dir.subdir("logs");
    let archive = dir.subdir("logs/archive");
    let pods = dir.subdir("pods/p");
    let secrets = dir.subdir("secrets");
    fs::write(logs.join("app.log"), corpus().lines("app", 0, 30)).unwrap();
    fs::write(archive.join("inside.txt"), corpus().lines("inside", 0, 20)).unwrap();
    fs::write(pods.join("0.log"), corpus().lines("pods", 0, 20)).unwrap();
    let token = secrets.join("token");
    fs::write(&token, format!("{TOKEN}\n")).unwrap();
    symlink(archive.join("inside.txt"), logs.join("inside.log")).unwrap();
    symlink(pods.join("0.log"), logs.join("pods.log")).unwrap();
    symlink("/etc/passwd", logs.join("passwd.log")).unwrap();
    symlink("/etc", logs.join("etc")).unwrap();
    symlink(&token, logs.join("token.log")).unwrap();
    symlink(dir.join("tailship.toml"), logs.join("config.log")).unwrap();
    fs::hard_link(&token, logs.join("hard.log")).unwrap();
    Layout { logs, token }
}

fn stop_http(agent: &mut Agent) {
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(40)),
        Some(0),
        "exit 0 after SIGTERM"
    );
}

fn wait_refused(agent: &mut Agent, n: f64) {
    let ok = wait_until(Duration::from_secs(30), || {
        agent
            .metrics()
            .is_some_and(|m| m.get("tailship_files_refused_total").unwrap_or(0.0) >= n)
    });
    assert!(ok, "expected {n} refused paths\n{}", agent.diag());
}

/// Runs the agent over the layout with `source_lines`, waits for the tags it should ship and
/// for `refused` refusals, stops it, and returns what it shipped.
fn run(
    dir: &TestDir,
    l: &Layout,
    name: &str,
    source_lines: &[&str],
    expect: &[(&str, u64)],
    refused: f64,
) -> Vec<Record> {
    let rx = HttpReceiver::ok(true);
    let token_file = format!(
        "auth = {{ strategy = \"bearer\", token_file = {} }}",
        q(&l.token.to_string_lossy())
    );
    let mut cfg = http_config(
        dir,
        &[format!("{}/**/*.log", l.logs.display())],
        &rx.url("/"),
        &[&token_file],
    );
    cfg.data_dir = dir.subdir(&format!("data-{name}"));
    for line in source_lines {
        cfg = cfg.source(line);
    }
    let mut agent = Agent::start(dir, &cfg);
    for (tag, n) in expect {
        wait_progress(
            Some(&mut agent),
            &format!("{n} lines tagged {tag}"),
            STALL,
            LIMIT,
            || {
                let u = rx.unique(tag);
                (u, u >= *n)
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}\n{}", rx.summary()));
    }
    wait_refused(&mut agent, refused);
    // A line appended now still flows: the refusals cost the tailer nothing.
    let mut more = fs::OpenOptions::new()
        .append(true)
        .open(l.logs.join("app.log"))
        .unwrap();
    std::io::Write::write_all(&mut more, &corpus().lines("app", 30, 5)).unwrap();
    wait_progress(Some(&mut agent), "5 more app lines", STALL, LIMIT, || {
        let u = rx.unique("app");
        (u, u >= 35)
    })
    .unwrap_or_else(|e| panic!("{name}: {e}\n{}", rx.summary()));
    stop_http(&mut agent);
    rx.records()
}

/// What no run may ship: the token (from the link, the hard link or the config that names
/// the token file), or the config file's text.
fn assert_no_agent_file(name: &str, records: &[Record]) {
    for r in records {
        assert!(
            !r.message.contains(TOKEN) && !r.message.contains("token_file") && !r.message.contains("[[sinks]]"),
            "{name}: one of the agent's own files was shipped: {}",
            r.brief()
        );
        for own in ["token.log", "hard.log", "config.log"] {
            assert!(!r.file().ends_with(own), "{name}: shipped {}: {}", r.file(), r.brief());
        }
    }
}

fn files_of(records: &[Record]) -> Vec<String> {
    let mut files: Vec<String> = records.iter().map(|r| r.file().to_owned()).collect();
    files.sort();
    files.dedup();
    files
}

/// The default, `within_root`: the link that stays under `logs/` is followed, the ones out
/// of it (to `/etc/passwd`, to the pods directory) are not, nor are the agent's own files,
/// and `/etc` is not walked. `symlink_roots` opens the pods directory to links.
#[test]
fn within_root_follows_links_only_under_the_globs_root_or_a_symlink_root() {
    let dir = TestDir::new("symlinks-within");
    let l = layout(&dir);
    let got = run(&dir, &l, "default", &[], &[("app", 30), ("inside", 20)], 5.0);
    assert_no_agent_file("default", &got);
    let files = files_of(&got);
    assert_eq!(
        files,
        [l.logs.join("app.log"), l.logs.join("inside.log")].map(|p| p.to_string_lossy().into_owned()),
        "only the plain file and the link inside the root"
    );

    let pods = dir.join("pods");
    let roots = format!("symlink_roots = [{}]", q(&pods.to_string_lossy()));
    let got = run(
        &dir,
        &l,
        "roots",
        &[&roots],
        &[("app", 30), ("inside", 20), ("pods", 20)],
        4.0,
    );
    assert_no_agent_file("roots", &got);
    assert!(
        !files_of(&got).iter().any(|f| f.contains("passwd")),
        "/etc/passwd is outside every allowed root"
    );
}

/// `any` follows the link to `/etc/passwd` but still never ships the agent's own files;
/// `none` follows no link at all.
#[test]
fn any_still_refuses_the_agents_own_files_and_none_follows_no_link() {
    let dir = TestDir::new("symlinks-any-none");
    let l = layout(&dir);
    let got = run(
        &dir,
        &l,
        "any",
        &["follow_symlinks = \"any\""],
        &[("app", 30), ("inside", 20), ("pods", 20)],
        3.0,
    );
    assert_no_agent_file("any", &got);
    assert!(
        got.iter()
            .any(|r| r.file().ends_with("passwd.log") && r.message.starts_with("root:")),
        "follow_symlinks = \"any\" follows the link to /etc/passwd"
    );
    assert!(
        !files_of(&got).iter().any(|f| f.contains("/etc/")),
        "the link to /etc is not walked"
    );

    let got = run(&dir, &l, "none", &["follow_symlinks = \"none\""], &[("app", 30)], 6.0);
    assert_no_agent_file("none", &got);
    assert_eq!(files_of(&got), [l.logs.join("app.log").to_string_lossy().into_owned()]);
}

/// Makes `depth` directories, each holding two links to the next one up, so that following
/// links would see 2^depth paths (and a loop besides: the last links back to the first).
fn doubling_chain(at: &Path, depth: usize) {
    for i in 0..depth {
        let d = at.join(format!("d{i}"));
        fs::create_dir_all(&d).unwrap();
        let next = at.join(format!("d{}", (i + 1) % depth));
        symlink(&next, d.join("a")).unwrap();
        symlink(&next, d.join("b")).unwrap();
        fs::write(d.join("x.log"), corpus().lines(&format!("chain{i}"), 0, 1)).unwrap();
    }
}

/// `ln -s /sys`, `ln -s /`, and a chain of directory links doubling at each level, before
/// the start and again while it runs: the agent gets ready at once, `/healthz` stays 200,
/// the plain files flow (the chain's own files once each, under their real path), nothing
/// under `/sys` or `/` is shipped, and SIGTERM stops it promptly.
#[test]
fn directory_links_to_sys_and_doubling_chains_do_not_stall_discovery() {
    let dir = TestDir::new("symlinks-dirs");
    let logs = dir.subdir("logs");
    fs::write(logs.join("app.log"), corpus().lines("app", 0, 50)).unwrap();
    symlink("/sys", logs.join("sys")).unwrap();
    symlink("/", logs.join("root")).unwrap();
    doubling_chain(&logs.join("chain"), 24);
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &[format!("{}/**/*.log", logs.display())], &rx).top("rescan_interval = \"200ms\"");
    let started = Instant::now();
    let mut agent = Agent::start(&dir, &cfg);
    let addr = agent.metrics_addr.expect("metrics address");
    assert!(
        wait_until(Duration::from_secs(20), || http_get(addr, "/readyz")
            .is_ok_and(|(s, _)| s == 200)),
        "not ready within 20 s\n{}",
        agent.diag()
    );
    let ready_after = started.elapsed();
    for (tag, n) in [("app", 50), ("chain0", 1), ("chain23", 1)] {
        wait_progress(
            Some(&mut agent),
            &format!("{n} lines tagged {tag}"),
            STALL,
            LIMIT,
            || {
                let u = rx.unique(tag);
                (u, u >= n)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    }

    // The same again while it runs: new links are seen by events and by the rescans.
    symlink("/sys", logs.join("sys2")).unwrap();
    fs::create_dir(logs.join("late")).unwrap();
    symlink("/sys/devices", logs.join("late/devices")).unwrap();
    doubling_chain(&logs.join("chain2"), 24);
    for step in 1..=5u64 {
        let mut f = fs::OpenOptions::new().append(true).open(logs.join("app.log")).unwrap();
        std::io::Write::write_all(&mut f, &corpus().lines("app", 50 * step, 50)).unwrap();
        wait_progress(Some(&mut agent), "app lines after the late links", STALL, LIMIT, || {
            let u = rx.unique("app");
            (u, u >= 50 * (step + 1))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
        let (status, _) = http_get(addr, "/healthz").expect("healthz answers");
        assert_eq!(status, 200, "healthz after the late links");
    }
    let stopping = Instant::now();
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(20)),
        Some(0),
        "exit 0 after SIGTERM"
    );
    assert!(rx.wait_drained(Duration::from_secs(10)));
    let stop_took = stopping.elapsed();
    let records = rx.records();
    for r in &records {
        let f = r.file();
        assert!(
            f.starts_with(&*logs.to_string_lossy()) && !f.contains("/sys") && !f.contains("/root/"),
            "shipped from outside the plain files: {}",
            r.brief()
        );
        // A chain file's real path has one `chain/dN` step: no path through a link.
        assert!(!f.contains("/a/") && !f.contains("/b/"), "a path through a link: {f}");
    }
    for i in [0, 23] {
        let n = records
            .iter()
            .filter(|r| r.file().ends_with(&format!("chain/d{i}/x.log")))
            .count();
        assert_eq!(n, 1, "chain/d{i}/x.log shipped once");
    }
    println!(
        "ready after {:.2}s, stopped in {:.2}s, {} records (machine loaded: wall clock only)",
        ready_after.as_secs_f64(),
        stop_took.as_secs_f64(),
        records.len()
    );
}
