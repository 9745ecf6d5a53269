//! Hot reload through the binary: a reload while 500,000 lines flow, adding a sink and removing
//! a source and a sink (nothing lost, nothing twice, the removed sink drained); one changing a
//! single sink's batching while 500,000 lines flow (that sink alone rebuilt, the other keeping
//! its connection, nothing lost or twice at either), then one that changes nothing; an invalid
//! config refused with every problem named while the old one keeps running; `--watch-config`
//! following a ConfigMap-style symlink swap.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::util::*;

/// A config of sources (name, glob) and tcp sinks (name, receiver, sources read).
fn config(data: &Path, sources: &[(&str, String)], sinks: &[(&str, &Receiver, &[&str])]) -> String {
    let mut t = format!(
        "data_dir = {}\n[metrics]\naddress = \"127.0.0.1:0\"\n",
        q(&data.to_string_lossy())
    );
    for (name, glob) in sources {
        t.push_str(&format!(
            "\n[[sources]]\nname = {}\ninclude = [{}]\nread_from = \"beginning\"\n",
            q(name),
            q(glob)
        ));
    }
    for (name, rx, inputs) in sinks {
        let inputs: Vec<String> = inputs.iter().map(|i| q(i)).collect();
        t.push_str(&format!(
            "\n[[sinks]]\nname = {}\ntype = \"tcp\"\naddress = {}\ninputs = [{}]\nbatch = {{ max_events = 1000, linger_ms = 50 }}\n",
            q(name),
            q(&rx.addr().to_string()),
            inputs.join(", ")
        ));
    }
    t
}

fn start(dir: &TestDir, config_path: &Path, extra: &[&str]) -> Agent {
    let mut args = vec!["--config".to_owned(), config_path.to_string_lossy().into_owned()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let agent = Agent::spawn(dir, &args, Some(SocketAddr::from(([127, 0, 0, 1], 0))), |_| {});
    assert!(
        agent.metrics_addr.is_some(),
        "the agent did not start\n{}",
        agent.stderr()
    );
    agent
}

/// `POST path` with an empty body: the status and the body of the answer.
fn http_post(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

/// Every seq of `tag` that `rx` got is in one run `first..end` with no gap and no repeat.
fn one_run(rx: &Receiver, tag: &str, end: u64) -> u64 {
    let unique = rx.unique(tag);
    assert!(unique > 0, "{tag}: nothing arrived\n{}", rx.summary());
    let r = rx.check(tag, end);
    assert_eq!(r.duplicates, 0, "{r}");
    // With `unique` seqs present and none twice, one run ending at `end` leaves exactly the
    // seqs before it missing, as a single range.
    assert_eq!(r.missing, end - unique, "{r}");
    assert!(
        r.missing_ranges.len() <= 1 && r.missing_ranges.first().is_none_or(|m| m.start == 0),
        "{r}"
    );
    end - unique
}

#[test]
fn a_reload_while_lines_flow_adds_a_sink_removes_a_source_and_loses_nothing() {
    const LINES: u64 = 500_000;
    let _heavy = heavy();
    let dir = TestDir::new("reload-flow");
    let (a, b) = (dir.subdir("a"), dir.subdir("b"));
    let (kept, added, removed) = (Receiver::ndjson(), Receiver::ndjson(), Receiver::ndjson());
    let data = dir.subdir("data");
    let config_path = dir.join("tailship.toml");
    let app = ("app", format!("{}/*.log", a.display()));
    let old = ("old", format!("{}/*.log", b.display()));
    std::fs::write(
        &config_path,
        config(
            &data,
            &[app.clone(), old.clone()],
            &[("kept", &kept, &["app", "old"]), ("removed", &removed, &["app"])],
        ),
    )
    .unwrap();
    // The source to be removed: its lines are all on disk before the reload.
    std::fs::write(b.join("b.log"), corpus().lines("b", 0, 20_000)).unwrap();
    let mut agent = start(&dir, &config_path, &[]);
    let writer = Writer::spawn(WriterSpec::new(a.join("a.log"), "a", LINES).rate(30_000));
    wait_progress(
        Some(&mut agent),
        "150,000 lines before the reload",
        STALL,
        LIMIT,
        || {
            let u = kept.unique("a");
            (u, u >= 150_000 && kept.unique("b") >= 20_000)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", kept.summary()));

    std::fs::write(
        &config_path,
        config(&data, &[app], &[("kept", &kept, &["app"]), ("added", &added, &["app"])]),
    )
    .unwrap();
    let at_reload = writer.written();
    let (status, body) = http_post(agent.metrics_addr.unwrap(), "/-/reload");
    assert_eq!(status, 200, "{body}\n{}", agent.stderr_tail(30));
    assert!(body.starts_with("reloaded"), "{body}");
    assert!(
        at_reload < LINES,
        "the reload came after the writer finished: {at_reload}"
    );
    eprintln!("reloaded with {at_reload} lines written: {body}");

    assert_eq!(writer.join().lines, LINES);
    wait_progress(Some(&mut agent), "every line at the kept sink", STALL, LIMIT, || {
        let u = kept.unique("a");
        (u, u >= LINES)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", kept.summary()));
    wait_progress(Some(&mut agent), "the added sink catching up", STALL, LIMIT, || {
        let u = added.unique("a");
        (
            u,
            added
                .check("a", LINES)
                .missing_ranges
                .last()
                .is_none_or(|m| m.end < LINES),
        )
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", added.summary()));
    let metrics = agent.metrics().expect("metrics");
    assert_eq!(metrics.val("tailship_config_reloads_total"), 1.0, "{}", metrics.text);
    let m = agent.metrics_addr.unwrap();
    stop_clean(&mut agent, &kept);
    assert!(added.wait_drained(Duration::from_secs(10)) && removed.wait_drained(Duration::from_secs(10)));

    let r = kept.check("a", LINES);
    assert_eq!((r.missing, r.duplicates), (0, 0), "kept sink: {r}");
    let r = kept.check("b", 20_000);
    assert_eq!(
        (r.missing, r.duplicates),
        (0, 0),
        "the removed source, delivered before: {r}"
    );
    // The added sink starts where the checkpoint stood at the reload, with nothing twice; the
    // removed one got a gapless run from the start, everything it held delivered.
    let skipped = one_run(&added, "a", LINES);
    let removed_got = removed.unique("a");
    assert_eq!(one_run(&removed, "a", removed_got), 0, "from the first line");
    assert!(
        removed_got >= skipped,
        "the removed sink delivered everything read before the reload ({removed_got} < {skipped})"
    );
    assert_eq!(removed.unique("b"), 0, "it never read source old");
    assert_eq!(added.unique("b"), 0, "source old was gone when it came");
    eprintln!("added sink from seq {skipped}, removed sink got {removed_got} lines; endpoint {m}");
}

#[test]
fn a_reload_changing_one_sink_rebuilds_it_alone_while_the_other_keeps_its_connection() {
    const LINES: u64 = 500_000;
    let _heavy = heavy();
    let dir = TestDir::new("reload-one-sink");
    let a = dir.subdir("a");
    let (steady, tuned) = (Receiver::ndjson(), Receiver::ndjson());
    let config_path = dir.join("tailship.toml");
    let before = config(
        &dir.subdir("data"),
        &[("app", format!("{}/*.log", a.display()))],
        &[("steady", &steady, &["app"]), ("tuned", &tuned, &["app"])],
    );
    std::fs::write(&config_path, &before).unwrap();
    let mut agent = start(&dir, &config_path, &[]);
    let addr = agent.metrics_addr.unwrap();
    let writer = Writer::spawn(WriterSpec::new(a.join("a.log"), "a", LINES).rate(30_000));
    wait_progress(
        Some(&mut agent),
        "150,000 lines before the reload",
        STALL,
        LIMIT,
        || {
            let u = steady.unique("a");
            (u, u >= 150_000)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", steady.summary()));

    // Only sink tuned's batching changes.
    let (head, tail) = before.split_at(before.find("name = \"tuned\"").unwrap());
    let tail = tail.replacen(
        "max_events = 1000, linger_ms = 50",
        "max_events = 300, linger_ms = 20",
        1,
    );
    std::fs::write(&config_path, format!("{head}{tail}")).unwrap();
    let at_reload = writer.written();
    let (status, body) = http_post(addr, "/-/reload");
    assert_eq!(status, 200, "{body}\n{}", agent.stderr_tail(30));
    assert!(
        body.starts_with("reloaded (rebuilt sinks tuned; the rest kept running)"),
        "{body}\n{}",
        agent.stderr_tail(30)
    );
    assert!(
        at_reload < LINES,
        "the reload came after the writer finished: {at_reload}"
    );
    // The file read again gives what runs: nothing to do.
    let (status, body) = http_post(addr, "/-/reload");
    assert_eq!((status, body.as_str()), (200, "unchanged\n"));

    assert_eq!(writer.join().lines, LINES);
    for (name, rx) in [("steady", &steady), ("tuned", &tuned)] {
        wait_progress(
            Some(&mut agent),
            &format!("every line at sink {name}"),
            STALL,
            LIMIT,
            || {
                let u = rx.unique("a");
                (u, u >= LINES)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    }
    let metrics = agent.metrics().expect("metrics");
    assert_eq!(metrics.val("tailship_config_reloads_total"), 1.0, "{}", metrics.text);
    assert_eq!(
        metrics.val("tailship_config_reload_gap_seconds"),
        0.0,
        "{}",
        metrics.text
    );
    // The untouched sink was never rebuilt: the one connection it opened at start carried
    // every line. The rebuilt one connected again.
    assert_eq!(steady.accepted(), 1, "{}", steady.summary());
    assert_eq!(tuned.accepted(), 2, "{}", tuned.summary());
    assert!(
        agent.stderr().contains("rebuilt the changed sinks"),
        "{}",
        agent.stderr_tail(30)
    );
    stop_clean(&mut agent, &steady);
    assert!(tuned.wait_drained(Duration::from_secs(10)));
    for (name, rx) in [("steady", &steady), ("tuned", &tuned)] {
        let r = rx.check("a", LINES);
        assert_eq!((r.missing, r.duplicates), (0, 0), "sink {name}: {r}");
    }
    eprintln!("reloaded with {at_reload} lines written");
}

#[test]
fn an_invalid_reload_is_refused_and_the_old_config_keeps_running() {
    let dir = TestDir::new("reload-invalid");
    let logs = dir.subdir("logs");
    let log = logs.join("a.log");
    std::fs::write(&log, corpus().lines("v", 0, 100)).unwrap();
    let rx = Receiver::ndjson();
    let config_path = dir.join("tailship.toml");
    let good = config(
        &dir.subdir("data"),
        &[("app", format!("{}/*.log", logs.display()))],
        &[("out", &rx, &["app"])],
    );
    std::fs::write(&config_path, &good).unwrap();
    let mut agent = start(&dir, &config_path, &[]);
    wait_progress(Some(&mut agent), "the first lines", STALL, LIMIT, || {
        let u = rx.unique("v");
        (u, u >= 100)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));

    let bad = good
        .replace("read_from = ", "fromat = \"json\"\nread_from = ")
        .replace("type = \"tcp\"", "type = \"tcpp\"");
    std::fs::write(&config_path, &bad).unwrap();
    let addr = agent.metrics_addr.unwrap();
    let (status, body) = http_post(addr, "/-/reload");
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("sources[0].fromat (line 8, column 1)") && body.contains("did you mean \"format\"?"),
        "{body}"
    );
    assert!(body.contains("sinks[0].type"), "every problem: {body}");
    agent.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || {
            Metrics::fetch(addr).is_ok_and(|m| m.get("tailship_config_reload_failures_total") == Some(2.0))
        }),
        "both refusals counted\n{}",
        agent.diag()
    );
    assert!(agent.stderr().contains("reload refused"), "{}", agent.stderr_tail(20));

    // The old pipeline never stopped.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&corpus().lines("v", 100, 100)).unwrap();
    wait_progress(
        Some(&mut agent),
        "lines after the refused reloads",
        STALL,
        LIMIT,
        || {
            let u = rx.unique("v");
            (u, u >= 200)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);
    let r = rx.check("v", 200);
    assert_eq!((r.missing, r.duplicates), (0, 0), "{r}");
}

#[test]
fn watch_config_follows_a_configmap_symlink_swap() {
    let dir = TestDir::new("reload-watch");
    let logs = dir.subdir("logs");
    let log = logs.join("a.log");
    std::fs::write(&log, corpus().lines("w", 0, 100)).unwrap();
    let (first, second) = (Receiver::ndjson(), Receiver::ndjson());
    let data = dir.subdir("data");
    let source = [("app", format!("{}/*.log", logs.display()))];
    // The kubelet's layout: name -> ..data/name, ..data -> ..<timestamp>/ (swapped atomically).
    let cm = dir.subdir("cm");
    let version = |n: &str, text: String| {
        let d = cm.join(n);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tailship.toml"), text).unwrap();
    };
    version("..v1", config(&data, &source, &[("first", &first, &["app"])]));
    std::os::unix::fs::symlink("..v1", cm.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tailship.toml", cm.join("tailship.toml")).unwrap();
    let mut agent = start(&dir, &cm.join("tailship.toml"), &["--watch-config"]);
    wait_progress(Some(&mut agent), "the first lines", STALL, LIMIT, || {
        let u = first.unique("w");
        (u, u >= 100)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", first.summary()));

    version(
        "..v2",
        config(
            &data,
            &source,
            &[("first", &first, &["app"]), ("second", &second, &["app"])],
        ),
    );
    std::os::unix::fs::symlink("..v2", cm.join("..data_tmp")).unwrap();
    std::fs::rename(cm.join("..data_tmp"), cm.join("..data")).unwrap();
    assert!(
        agent.logged_within("config reloaded", Duration::from_secs(30)),
        "the swap is seen\n{}",
        agent.diag()
    );
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&corpus().lines("w", 100, 100)).unwrap();
    wait_progress(Some(&mut agent), "the new sink's lines", STALL, LIMIT, || {
        let u = second.unique("w");
        (u, u >= 100)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", second.summary()));
    stop_clean(&mut agent, &first);
    let r = first.check("w", 200);
    assert_eq!((r.missing, r.duplicates), (0, 0), "{r}");
    assert_eq!(one_run(&second, "w", 200), 100, "the second sink from the reload on");
}
