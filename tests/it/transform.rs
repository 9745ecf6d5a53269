//! Transforms and output shapes through the binary, on lines from `tests/data/`: redaction of
//! real-looking card numbers, tokens, keys and e-mails (none reaches either receiver, NDJSON or
//! raw), a filter whose drops are counted and still move the checkpoint, field edits, sampling
//! and throttling with their counts, top-level `[[transforms]]` naming the sources they apply
//! to (after each source's own; `validate --print` and an unknown name), an ECS-shaped sink
//! beside a default one, and the count of files each source matches.

use std::fs;
use std::time::Duration;

use crate::util::*;

/// Leaks as they show up in logs: card numbers that pass the Luhn check (the card networks'
/// published test numbers), a bearer token, a JWT, an AWS access key (AWS's documented
/// example), e-mail addresses and a password pair.
const SECRETS: [&str; 10] = [
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "378282246310005",
    "6011111111111117",
    "mF_9.B5f-4.1JqM",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "AKIAIOSFODNN7EXAMPLE",
    "maria.garcia@example.com",
    "ops+alerts@mail.example.org",
    "Tr0ub4dor&3",
];

fn leak_lines() -> Vec<String> {
    vec![
        format!("payment accepted card={} amount=12.00", SECRETS[0]),
        format!("retry with card {} for order 88121", SECRETS[1]),
        format!("amex {} declined; visa {} ok", SECRETS[2], SECRETS[3]),
        format!("GET /api/v1/me Authorization: Bearer {}", SECRETS[4]),
        format!("session token {} issued", SECRETS[5]),
        format!("s3 upload with key {} from 10.20.30.40", SECRETS[6]),
        format!("mail to {} cc {}", SECRETS[7], SECRETS[8]),
        format!("login failed user=maria password={} attempt=3", SECRETS[9]),
    ]
}

fn access_log(n: usize) -> Vec<String> {
    let text = fs::read_to_string(corpus_dir().join("apache-combined/access.log"))
        .expect("tests/data/apache-combined/access.log");
    text.lines().take(n).map(str::to_owned).collect()
}

#[test]
fn redaction_leaves_no_card_token_key_or_email_at_either_receiver() {
    let dir = TestDir::new("redact");
    let logs = dir.subdir("logs");
    let access = access_log(300);
    let mut lines = Vec::new();
    for (i, l) in access.iter().enumerate() {
        lines.push(l.clone());
        if i % 30 == 0 {
            lines.extend(leak_lines());
        }
    }
    fs::write(logs.join("app.log"), lines.join("\n") + "\n").unwrap();
    let ndjson = Receiver::keeping();
    let raw = Receiver::start(Wire::Raw, true);
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &ndjson).source(
        r#"transforms = [{ type = "redact", presets = ["credit_card", "email", "ipv4", "ipv6", "bearer", "jwt", "aws_access_key", "password"] }]"#,
    );
    let second = format!(
        "\n[[sinks]]\nname = \"raw\"\ntype = \"tcp\"\naddress = {}\nencoding = \"raw\"\nbatch = {{ linger_ms = 50 }}\n",
        q(&raw.addr().to_string())
    );
    let path = dir.join("tailship.toml");
    fs::write(&path, cfg.render() + &second).unwrap();
    let mut agent = Agent::spawn(
        &dir,
        &["--config".into(), path.display().to_string()],
        cfg.metrics_addr(),
        |_| {},
    );
    let n = lines.len() as u64;
    wait_progress(Some(&mut agent), "every line at both receivers", STALL, LIMIT, || {
        let got = ndjson.lines().min(raw.lines());
        (got, got >= n)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    stop_clean(&mut agent, &ndjson);

    let records = ndjson.records();
    let raw_lines = raw.records();
    assert_eq!((records.len() as u64, raw_lines.len() as u64), (n, n));
    let ips: Vec<&str> = access.iter().filter_map(|l| l.split(' ').next()).collect();
    for (what, texts) in [
        ("ndjson", records.iter().map(|r| r.json.to_string()).collect::<Vec<_>>()),
        ("raw", raw_lines.iter().map(|r| r.message.clone()).collect()),
    ] {
        for t in &texts {
            for s in SECRETS.iter().chain(&ips).chain(&["10.20.30.40"]) {
                assert!(!t.contains(s), "{what}: {s:?} reached the receiver in {t}");
            }
        }
        let masked = texts.iter().filter(|t| t.contains("[REDACTED]")).count();
        assert!(
            masked >= access.len(),
            "{what}: every access line had its client address masked ({masked})"
        );
    }
    assert!(
        records.iter().any(|r| r
            .message
            .contains("GET /presentations/logstash-monitorama-2013/images/kibana-search.png")),
        "the rest of a line stays"
    );
}

/// A JSON line per level, numbered.
fn leveled(n: u64) -> String {
    let levels = ["debug", "info", "debug", "warn", "error"];
    (0..n)
        .map(|i| {
            format!(
                "{{\"level\":\"{}\",\"msg\":\"event {i}\",\"pod\":\"web-{}\"}}\n",
                levels[i as usize % 5],
                i % 3
            )
        })
        .collect()
}

#[test]
fn a_filter_drops_by_level_counts_it_and_the_checkpoint_still_reaches_the_end() {
    const N: u64 = 2_000;
    let dir = TestDir::new("filter");
    let logs = dir.subdir("logs");
    let file = logs.join("app.log");
    fs::write(&file, leveled(N)).unwrap();
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx)
        .format("json")
        .source(r#"transforms = [{ type = "filter", drop = 'level < "info" or message =~ "^event 1[0-9]$"', name = "no-debug" }]"#);
    let mut agent = Agent::start(&dir, &cfg);
    // Kept: info, warn, error (3 in 5), less the odd ones among "event 10".."event 19".
    let odd_kept = (10..20).filter(|i| i % 5 != 0 && i % 5 != 2).count() as u64;
    let want = N / 5 * 3 - odd_kept;
    wait_progress(Some(&mut agent), "the kept records", STALL, LIMIT, || {
        (rx.lines(), rx.lines() >= want)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    let dropped = |a: &Agent| {
        a.metrics()
            .and_then(|m| {
                m.get_with(
                    "tailship_transform_dropped_total",
                    "transform=\"no-debug\",reason=\"filtered\"",
                )
            })
            .unwrap_or(0.0) as u64
    };
    assert!(
        wait_until(Duration::from_secs(10), || dropped(&agent) == N - want),
        "dropped {}",
        dropped(&agent)
    );
    // The file's last line is kept (N - 1 is `error`), and so the dropped ones before it
    // moved the checkpoint with it.
    stop_clean(&mut agent, &rx);
    let recs = rx.records();
    assert_eq!(recs.len() as u64, want);
    assert!(recs.iter().all(|r| r.str("level") != Some("debug")));
    assert!(!recs.iter().any(|r| r.message == "event 11"));
    let size = fs::metadata(&file).unwrap().len();
    let saved = checkpoint_offsets(&cfg);
    assert!(
        saved.iter().any(|(p, o)| p.ends_with("app.log") && *o == size),
        "{saved:?} (size {size})"
    );
}

#[test]
fn fields_sample_and_throttle_shape_and_count_what_passes() {
    const N: u64 = 1_000;
    let dir = TestDir::new("fields-sample");
    let logs = dir.subdir("logs");
    fs::write(logs.join("app.log"), leveled(N)).unwrap();
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx)
        .format("json")
        .top("[fields]\nteam = \"payments\"")
        .source(
            r#"transforms = [
  { type = "fields", rename = { pod = "k8s.pod" }, set = { env = "${TRANSFORM_TEST_ENV}" }, drop = ["nothing-there"] },
  { type = "sample", rate = 4, key = "fields.k8s.pod", name = "quarter" },
  { type = "throttle", rate = 1000000, name = "loose" },
]"#,
        );
    let mut agent = Agent::start_with(&dir, &cfg, &[], |c| {
        c.env("TRANSFORM_TEST_ENV", "staging");
    });
    // warn and error (2 in 5) are never sampled; of info and debug, 1 in 4 per pod.
    let always = N / 5 * 2;
    let sampled_pool = N - always;
    wait_progress(Some(&mut agent), "the sampled records", STALL, LIMIT, || {
        (rx.lines(), rx.lines() >= always + sampled_pool / 4 - 3)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    let m = |a: &Agent, t: &str| {
        a.metrics()
            .and_then(|m| m.get_with("tailship_transform_dropped_total", &format!("transform=\"{t}\"")))
            .unwrap_or(-1.0)
    };
    assert!(wait_until(Duration::from_secs(10), || m(&agent, "quarter") as u64
        + rx.lines()
        == N));
    assert_eq!(m(&agent, "loose"), 0.0);
    stop_clean(&mut agent, &rx);
    let recs = rx.records();
    for r in &recs {
        assert_eq!(
            r.field("env").and_then(|v| v.as_str()),
            Some("staging"),
            "{}",
            r.brief()
        );
        assert!(
            r.field("k8s.pod").is_some() && r.field("pod").is_none(),
            "{}",
            r.brief()
        );
        assert_eq!(r.field("team").and_then(|v| v.as_str()), Some("payments"));
    }
    let per_pod_info = |pod: &str| {
        recs.iter()
            .filter(|r| r.field("k8s.pod").and_then(|v| v.as_str()) == Some(pod))
            .filter(|r| matches!(r.str("level"), Some("info" | "debug")))
            .count() as u64
    };
    for pod in ["web-0", "web-1", "web-2"] {
        let n = per_pod_info(pod);
        assert!(
            (sampled_pool / 3 / 4..=sampled_pool / 3 / 4 + 1).contains(&n),
            "{pod}: {n}"
        );
    }
}

#[test]
fn a_throttle_lets_through_at_most_its_rate_per_second() {
    const N: u64 = 3_000;
    const RATE: u64 = 200;
    let dir = TestDir::new("throttle");
    let logs = dir.subdir("logs");
    fs::write(logs.join("app.log"), leveled(N)).unwrap();
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx)
        .format("json")
        .source(&format!(
            r#"transforms = [{{ type = "throttle", rate = {RATE}, name = "cap" }}]"#
        ));
    let started = std::time::Instant::now();
    let mut agent = Agent::start(&dir, &cfg);
    let addr = agent.metrics_addr;
    let dropped = || {
        addr.and_then(|a| Metrics::fetch(a).ok())
            .and_then(|m| {
                m.get_with(
                    "tailship_transform_dropped_total",
                    "transform=\"cap\",reason=\"throttled\"",
                )
            })
            .unwrap_or(0.0) as u64
    };
    wait_progress(Some(&mut agent), "every line kept or dropped", STALL, LIMIT, || {
        let seen = rx.lines() + dropped();
        (seen, seen == N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    let seconds = started.elapsed().as_secs() + 1;
    let all_dropped = dropped();
    stop_clean(&mut agent, &rx);
    let kept = rx.lines();
    assert!(kept >= RATE, "at least one second's worth: {kept}");
    assert!(kept <= RATE * seconds, "{kept} in at most {seconds} s");
    assert_eq!(kept + all_dropped, N);
}

#[test]
fn top_level_transforms_apply_to_the_sources_they_name_after_their_own() {
    let dir = TestDir::new("shared-transforms");
    let (app, web) = (dir.subdir("app"), dir.subdir("web"));
    let leaks = leak_lines();
    fs::write(app.join("a.log"), leaks.join("\n") + "\n").unwrap();
    const N: u64 = 100;
    fs::write(web.join("w.log"), leveled(N)).unwrap();
    let rx = Receiver::keeping();
    // App's own transform adds a field holding an address; the shared redaction, after it,
    // masks it. The filter applies to web alone.
    let text = format!(
        r#"data_dir = {data}
[metrics]
address = "127.0.0.1:0"

[[sources]]
name = "app"
include = [{app}]
read_from = "beginning"
transforms = [{{ type = "fields", set = {{ contact = "maria.garcia@example.com" }} }}]

[[sources]]
name = "web"
include = [{web}]
format = "json"
read_from = "beginning"

[[sinks]]
name = "out"
type = "tcp"
address = "{rx}"
batch = {{ linger_ms = 50 }}

[[transforms]]
name = "no-leaks"
type = "redact"
inputs = ["app", "web"]
presets = ["credit_card", "email", "bearer", "jwt", "aws_access_key", "password"]
fields = ["contact"]

[[transforms]]
name = "no-debug"
type = "filter"
inputs = ["web"]
drop = 'level < "info"'
"#,
        data = q(&dir.subdir("data").to_string_lossy()),
        app = q(&format!("{}/*.log", app.display())),
        web = q(&format!("{}/*.log", web.display())),
        rx = rx.addr(),
    );
    let path = dir.join("tailship.toml");
    fs::write(&path, &text).unwrap();

    let mut validate = Agent::spawn(
        &dir,
        &[
            "validate".into(),
            "--print".into(),
            "--config".into(),
            path.display().to_string(),
        ],
        None,
        |_| {},
    );
    assert_eq!(
        validate.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        validate.stderr()
    );
    let printed = fs::read_to_string(&validate.stdout_path).unwrap();
    assert!(
        printed.contains("[[transforms]]") && printed.contains("inputs = [\"app\", \"web\"]"),
        "{printed}"
    );

    let mut agent = Agent::spawn(
        &dir,
        &["--config".into(), path.display().to_string()],
        Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        |_| {},
    );
    let want = leaks.len() as u64 + N / 5 * 3;
    wait_progress(Some(&mut agent), "the kept records", STALL, LIMIT, || {
        (rx.lines(), rx.lines() >= want)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    let dropped = |a: &Agent| {
        a.metrics()
            .and_then(|m| m.get_with("tailship_transform_dropped_total", "transform=\"no-debug\""))
            .unwrap_or(0.0) as u64
    };
    assert!(
        wait_until(Duration::from_secs(10), || dropped(&agent) == N / 5 * 2),
        "dropped {}",
        dropped(&agent)
    );
    stop_clean(&mut agent, &rx);
    let recs = rx.records();
    assert_eq!(recs.len() as u64, want);
    for r in &recs {
        let t = r.json.to_string();
        for s in SECRETS.iter().chain(&["maria.garcia@example.com"]) {
            assert!(!t.contains(s), "{s:?} reached the receiver in {t}");
        }
    }
    let from_app: Vec<_> = recs.iter().filter(|r| r.file().contains("/app/")).collect();
    assert_eq!(from_app.len(), leaks.len());
    assert!(
        from_app
            .iter()
            .all(|r| r.field("contact").and_then(|v| v.as_str()) == Some("[REDACTED]")),
        "the shared redaction ran after app's own transform"
    );
    assert!(recs.iter().all(|r| r.str("level") != Some("debug")));

    // A name no source has is an error with its place.
    let bad = text.replace("inputs = [\"web\"]", "inputs = [\"web\", \"nope\"]");
    fs::write(&path, &bad).unwrap();
    let line = bad.lines().position(|l| l.contains("\"nope\"")).unwrap() + 1;
    let mut validate = Agent::spawn(
        &dir,
        &["validate".into(), "--config".into(), path.display().to_string()],
        None,
        |_| {},
    );
    assert_eq!(validate.wait_exit(Duration::from_secs(15)), Some(2));
    let err = validate.stderr();
    assert!(
        err.contains(&format!("transforms[1].inputs (line {line}, column 10)"))
            && err.contains("no source is named \"nope\""),
        "{err}"
    );
}

#[test]
fn an_ecs_sink_and_a_default_sink_each_get_their_shape() {
    let dir = TestDir::new("shape");
    let logs = dir.subdir("logs");
    fs::write(
        logs.join("app.log"),
        "{\"level\":\"warn\",\"msg\":\"disk almost full\",\"time\":\"2026-01-02T03:04:05Z\"}\nplain line\n",
    )
    .unwrap();
    let plain = Receiver::keeping();
    let ecs = Receiver::keeping();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &plain).format("json");
    let second = format!(
        "\n[[sinks]]\nname = \"ecs\"\ntype = \"tcp\"\naddress = {}\nshape = \"ecs\"\nkeys = {{ message = \"log\" }}\nbatch = {{ linger_ms = 50 }}\n",
        q(&ecs.addr().to_string())
    );
    let path = dir.join("tailship.toml");
    fs::write(&path, cfg.render() + &second).unwrap();
    let mut agent = Agent::spawn(
        &dir,
        &["--config".into(), path.display().to_string()],
        cfg.metrics_addr(),
        |_| {},
    );
    wait_progress(Some(&mut agent), "both records at both sinks", STALL, LIMIT, || {
        let got = plain.lines().min(ecs.lines());
        (got, got >= 2)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    stop_clean(&mut agent, &plain);
    let p = &plain.records()[0].json;
    let e = &ecs.records()[0].json;
    assert_eq!(p["message"], "disk almost full");
    assert!(
        p["timestamp"]
            .as_str()
            .is_some_and(|t| t.starts_with("2026-01-02T03:04:05")),
        "{p}"
    );
    assert_eq!(p["level"], "warn");
    assert_eq!(e["log"], "disk almost full", "{e}");
    assert_eq!(e["@timestamp"], p["timestamp"], "{e}");
    assert_eq!(e["log.level"], "warn", "{e}");
    assert!(
        e["log.file.path"].as_str().is_some_and(|f| f.ends_with("app.log")),
        "{e}"
    );
    assert!(
        e["log.offset"].is_u64() && e["event.id"].is_string() && e.get("message").is_none(),
        "{e}"
    );
    let raw_line = &ecs.records()[1].json;
    assert!(
        raw_line.get("timestamp").is_none() && raw_line["@timestamp"].is_string(),
        "{raw_line}"
    );
}

#[test]
fn each_source_says_how_many_files_it_matches_and_an_empty_glob_warns() {
    let dir = TestDir::new("watches");
    let logs = dir.subdir("logs");
    for name in ["a.log", "b.log"] {
        fs::write(logs.join(name), "x\n").unwrap();
    }
    let rx = Receiver::ndjson();
    let typo = format!("{}/*.lgo", logs.display());
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx)
        .source(&format!("\n[[sources]]\nname = \"typo\"\ninclude = [{}]", q(&typo)));
    let mut agent = Agent::start(&dir, &cfg);
    let files = |a: &Agent, s: &str| {
        a.metrics()
            .and_then(|m| m.get_with("tailship_source_files", &format!("source=\"{s}\"")))
    };
    assert!(
        wait_until(Duration::from_secs(20), || files(&agent, "app") == Some(2.0)),
        "{}",
        agent.diag()
    );
    assert_eq!(files(&agent, "typo"), Some(0.0));
    assert!(
        agent.logged_within("match no file", Duration::from_secs(10)),
        "{}",
        agent.stderr_tail(20)
    );
    let log = agent.stderr();
    assert!(
        log.contains("watching the files the source matches") && log.contains("files=2"),
        "{log}"
    );
    assert_eq!(
        log.matches("match no file").count(),
        1,
        "said once, not at every rescan: {log}"
    );
    stop_clean(&mut agent, &rx);
}
