//! `tailship status` through the binary, against a running agent (its API) and a stopped one
//! (`data_dir` and the files); `validate --print` and unknown keys on a YAML config.

use std::fs;
use std::io::Write;
use std::time::Duration;

use crate::util::*;

/// Runs `tailship --config <dir>/tailship.toml ARGS`: (exit code, stdout, stderr).
fn tailship(dir: &TestDir, config: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--config".to_owned(), dir.join(config).to_string_lossy().into_owned()];
    all.extend(args.iter().map(|s| s.to_string()));
    let mut a = Agent::spawn(dir, &all, None, |_| {});
    let code = a.wait_exit(Duration::from_secs(30));
    if code.is_none() {
        a.kill9();
    }
    let stdout = fs::read_to_string(&a.stdout_path).unwrap_or_default();
    (code.unwrap_or(-1), stdout, a.stderr())
}

fn status_json(dir: &TestDir) -> serde_json::Value {
    let (code, out, err) = tailship(dir, "tailship.toml", &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn file<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["files"]
        .as_array()
        .and_then(|files| {
            files
                .iter()
                .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with(name)))
        })
        .unwrap_or_else(|| panic!("{name} not in {status:#}"))
}

#[test]
fn status_of_a_running_agent_then_of_a_stopped_one() {
    let dir = TestDir::new("status");
    let logs = dir.subdir("logs");
    let log = logs.join("a.log");
    fs::write(&log, corpus().lines("s", 0, 1000)).unwrap();
    let made = std::process::Command::new("mkfifo").arg(logs.join("pipe.log")).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo is needed");
    let mut rx = Receiver::ndjson();
    let mut cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx).top("rescan_interval = \"200ms\"");
    // A fixed port: `status` reads the address from the config.
    cfg.metrics_port = Some(free_port());
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "the lines", STALL, LIMIT, || {
        let u = rx.unique("s");
        (u, u >= 1000)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    let size = fs::metadata(&log).unwrap().len();

    let mut caught_up = serde_json::Value::Null;
    let seen = wait_until(Duration::from_secs(20), || {
        caught_up = status_json(&dir);
        caught_up["files"].as_array().is_some_and(|f| f.len() == 2)
            && file(&caught_up, "a.log")["bytes_behind"] == 0
            && file(&caught_up, "a.log")["read_offset"] == size
    });
    assert!(seen, "{caught_up:#}");
    assert_eq!(caught_up["agent"], "running");
    let a = file(&caught_up, "a.log");
    assert_eq!(
        (a["state"].as_str(), a["source"].as_str()),
        (Some("reading"), Some("app")),
        "{a}"
    );
    assert_eq!(
        (a["size"].as_u64(), a["committed_offset"].as_u64()),
        (Some(size), Some(size)),
        "{a}"
    );
    let pipe = file(&caught_up, "pipe.log");
    assert_eq!(pipe["state"], "cannot-open", "{pipe}");
    assert!(
        pipe["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not a regular file")),
        "{pipe}"
    );
    let sink = &caught_up["sinks"][0];
    assert_eq!(
        (sink["name"].as_str(), sink["up"].as_bool()),
        (Some("out"), Some(true)),
        "{sink}"
    );
    assert!(sink["last_success_ms"].as_u64().is_some_and(|t| t > 0), "{sink}");

    // The collector goes away: what is read now is not delivered, and the table shows a bar.
    rx.stop();
    let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&corpus().lines("s", 1000, 5000)).unwrap();
    let mut table = String::new();
    let behind = wait_until(Duration::from_secs(20), || {
        let (code, out, _) = tailship(&dir, "tailship.toml", &["status"]);
        table = out;
        code == 0 && table.contains("  [") && table.contains("% ")
    });
    assert!(behind, "a progress bar for the file behind:\n{table}");
    assert!(
        table.starts_with("agent: running")
            && table.contains("pipe.log")
            && table.contains("cannot open: it is not a regular file"),
        "{table}"
    );
    agent.kill9();

    // No agent: data_dir and the file say how far it got.
    let stopped = status_json(&dir);
    assert_eq!(stopped["agent"], "stopped", "{stopped:#}");
    let a = file(&stopped, "a.log");
    let size = fs::metadata(&log).unwrap().len();
    let committed = a["committed_offset"].as_u64().expect("committed");
    assert!(committed <= size && committed > 0, "{a}");
    assert_eq!(a["bytes_behind"].as_u64(), Some(size - committed), "{a}");
    assert_eq!(a["state"], "closed");
    let (code, table, err) = tailship(&dir, "tailship.toml", &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(table.starts_with("agent: not running"), "{table}");
    if committed < size {
        assert!(table.contains("  ["), "a bar for what is still to ship:\n{table}");
    }
}

const YAML: &str = r#"data_dir: DATA
metrics:
  enabled: false
sources:
  - name: app
    include: [LOGS/*.log]
    format: json
    fromat: json
sinks:
  - name: out
    type: http
    url: http://127.0.0.1:1/in
    auth: {strategy: bearer, token: "s3cret-t0ken"}
    batch: {max_events: 10, lingr_ms: 5}
"#;

#[test]
fn a_yaml_config_validates_prints_and_names_its_mistakes() {
    let dir = TestDir::new("status-yaml");
    let yaml = YAML
        .replace("DATA", &dir.subdir("data").to_string_lossy())
        .replace("LOGS", &dir.subdir("logs").to_string_lossy());
    fs::write(dir.join("bad.yaml"), &yaml).unwrap();
    let (code, _, err) = tailship(&dir, "bad.yaml", &["validate"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("sources[0].fromat (line 8, column 5)") && err.contains("did you mean \"format\"?"),
        "{err}"
    );
    assert!(
        err.contains("sinks[0].batch.lingr_ms (line 14, column 29)") && err.contains("did you mean \"linger_ms\"?"),
        "{err}"
    );
    assert!(!err.contains("s3cret-t0ken"), "{err}");

    let good = yaml.replace("    fromat: json\n", "").replace("lingr_ms", "linger_ms");
    fs::write(dir.join("good.yml"), &good).unwrap();
    let (code, printed, err) = tailship(&dir, "good.yml", &["validate", "--print"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("ok (1 source, 1 sink)"), "{err}");
    assert!(
        !printed.contains("s3cret-t0ken") && printed.contains("<masked>"),
        "{printed}"
    );
    assert!(
        printed.contains("linger_ms = 5") && printed.contains("max_inflight_bytes = "),
        "{printed}"
    );
    // What --print shows is a config that validates to the same.
    fs::write(dir.join("printed.toml"), &printed).unwrap();
    let (code, again, err) = tailship(&dir, "printed.toml", &["validate", "--print"]);
    assert_eq!(code, 0, "{err}\n{printed}");
    assert_eq!(again.replace("<masked>", ""), printed.replace("<masked>", ""));
}
