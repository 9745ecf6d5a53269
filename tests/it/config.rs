//! The command line and the config contract: a bad config (unknown key, bad value, missing
//! sink address, unset `${VAR}`, bad glob, …) makes both `tailship validate` and a run exit 2
//! with a message naming the key; a good one validates; `--help`, `--version`; the config may
//! come from `TAILSHIP_CONFIG`; a failure at start (a busy metrics port) is one error line with
//! a hint; on a host the records' resource names the host, not a pod.

use std::fs;
use std::time::Duration;

use crate::util::*;

/// Runs the binary with `args` and returns (exit code, stderr, stdout); the code is -1 if it
/// did not exit within 15 s (a run on a config that was wrongly accepted goes on forever; it is
/// killed).
fn run(dir: &TestDir, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut a = Agent::spawn(dir, &args, None, |cmd| {
        for (k, v) in env {
            cmd.env(k, v);
        }
    });
    let code = a.wait_exit(Duration::from_secs(15));
    let stdout = fs::read_to_string(&a.stdout_path).unwrap_or_default();
    let stderr = a.stderr();
    if code.is_none() {
        a.kill9();
    }
    (code.unwrap_or(-1), stderr, stdout)
}

/// A valid config with `logs/*.log` → tcp on a port nobody listens on; `edit` breaks it.
fn base(dir: &TestDir) -> String {
    format!(
        "data_dir = {}\n[metrics]\nenabled = false\n\n[[sources]]\nname = \"app\"\ninclude = [{}]\nformat = \"raw\"\nread_from = \"beginning\"\n\n[[sinks]]\nname = \"out\"\ntype = \"tcp\"\naddress = \"127.0.0.1:{}\"\nencoding = \"ndjson\"\n",
        q(&dir.subdir("data").to_string_lossy()),
        q(&format!("{}/*.log", dir.subdir("logs").display())),
        free_port()
    )
}

#[test]
fn bad_configs_exit_2_naming_the_key_in_validate_and_run() {
    let dir = TestDir::new("bad-config");
    let good = base(&dir);
    let var = "TAILSHIP_IT_SURELY_UNSET_VAR";
    // (what, config text, words that must appear on stderr)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown top-level key",
            format!("colour = \"blue\"\n{good}"),
            vec!["colour"],
        ),
        (
            "unknown key in a source",
            good.replace("format = \"raw\"", "format = \"raw\"\nreed_from = \"end\""),
            vec!["reed_from"],
        ),
        (
            "unknown key in a sink",
            good.replace("encoding = \"ndjson\"", "encoding = \"ndjson\"\nadress = \"x:1\""),
            vec!["adress"],
        ),
        (
            "bad enum value",
            good.replace("read_from = \"beginning\"", "read_from = \"middle\""),
            vec!["read_from"],
        ),
        (
            "bad format",
            good.replace("format = \"raw\"", "format = \"yaml\""),
            vec!["format"],
        ),
        (
            "bad duration",
            format!("shutdown_timeout = \"soon\"\n{good}"),
            vec!["shutdown_timeout"],
        ),
        (
            "wrong type",
            format!("max_inflight_bytes = \"lots\"\n{good}"),
            vec!["max_inflight_bytes"],
        ),
        (
            "missing tcp sink address",
            good.lines()
                .filter(|l| !l.starts_with("address"))
                .collect::<Vec<_>>()
                .join("\n"),
            vec!["address"],
        ),
        (
            "bad sink address",
            good.replace("address = \"127.0.0.1:", "address = \"nowhere:port"),
            vec!["address"],
        ),
        (
            "unknown sink type",
            good.replace("type = \"tcp\"", "type = \"carrier-pigeon\""),
            vec!["type"],
        ),
        (
            "unset ${VAR}",
            good.replace("include = [\"", &format!("include = [\"${{{var}}}")),
            vec!["include", var],
        ),
        (
            "bad glob",
            good.replace("/*.log\"]", "/[unclosed.log\"]"),
            vec!["include"],
        ),
        (
            "no sources",
            {
                let (head, rest) = good.split_once("[[sources]]").unwrap();
                let (_, sinks) = rest.split_once("[[sinks]]").unwrap();
                format!("{head}[[sinks]]{sinks}")
            },
            vec!["sources"],
        ),
        (
            "bad metrics address",
            good.replace("[metrics]\nenabled = false", "[metrics]\naddress = \"not an address\""),
            vec!["address"],
        ),
        ("not TOML", "this is = = not toml [".to_owned(), vec![]),
    ];
    let mut failures = Vec::new();
    for (i, (what, text, words)) in cases.iter().enumerate() {
        assert_ne!(text, &good, "case {what:?} did not change the config");
        let path = dir.join(&format!("bad-{i}.toml"));
        fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        for mode in [vec!["validate", "--config", p], vec!["--config", p]] {
            let (code, stderr, _) = run(&dir, &mode, &[]);
            let missing: Vec<&&str> = words.iter().filter(|w| !stderr.contains(**w)).collect();
            if code != 2 || !missing.is_empty() {
                failures.push(format!(
                    "{what} (`tailship {}`): exit {code} (-1: still running after 15 s), stderr lacks {missing:?}:\n{}\n--- config:\n{text}",
                    mode.join(" "),
                    stderr.trim()
                ));
            }
        }
    }
    // Arguments: a missing config file and an unknown flag are errors of the invocation.
    for args in [
        vec!["--config", "/nonexistent/tailship.toml"],
        vec!["--bogus-flag"],
        vec!["validate", "--config", "/nonexistent/tailship.toml"],
    ] {
        let (code, stderr, _) = run(&dir, &args, &[]);
        if code != 2 {
            failures.push(format!(
                "`tailship {}`: exit {code} (want 2):\n{}",
                args.join(" "),
                stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_good_config_validates_and_help_and_version_work() {
    let dir = TestDir::new("good-config");
    let path = dir.join("good.toml");
    fs::write(&path, base(&dir)).unwrap();
    let (code, stderr, out) = run(&dir, &["validate", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "a good config validates: {stderr}");
    assert!(out.trim_end().ends_with("ok (1 source, 1 sink)"), "{out}");

    // `${VAR}` expansion and `${VAR:-default}`.
    let logs = dir.subdir("logs");
    let text = base(&dir)
        .replace(
            &q(&format!("{}/*.log", logs.display())),
            "\"${TAILSHIP_IT_LOG_ROOT}/*.log\"",
        )
        .replace(
            &format!("data_dir = {}", q(&dir.join("data").to_string_lossy())),
            &format!(
                "data_dir = \"${{TAILSHIP_IT_SURELY_UNSET_VAR:-{}}}\"",
                dir.join("data").display()
            ),
        );
    assert!(
        text.contains("${TAILSHIP_IT_LOG_ROOT}") && text.contains(":-"),
        "{text}"
    );
    let path2 = dir.join("vars.toml");
    fs::write(&path2, &text).unwrap();
    let (code, stderr, _) = run(
        &dir,
        &["validate", "--config", path2.to_str().unwrap()],
        &[("TAILSHIP_IT_LOG_ROOT", logs.to_str().unwrap())],
    );
    assert_eq!(code, 0, "${{VAR}} and ${{VAR:-default}} expand: {stderr}\n{text}");

    let (code, _, out) = run(&dir, &["--help"], &[]);
    assert_eq!(code, 0, "--help exits 0");
    assert!(
        out.contains("--config") && out.contains("validate"),
        "--help lists --config and validate:\n{out}"
    );
    for word in [
        "TAILSHIP_CONFIG",
        "TAILSHIP_LOG",
        "POD_NAME",
        "HOSTNAME",
        "Exit status",
        "README.md",
    ] {
        assert!(out.contains(word), "--help names {word}:\n{out}");
    }
    for code in ["0", "1", "2"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "--help explains exit {code}:\n{out}"
        );
    }
    let (code, _, out) = run(&dir, &["--version"], &[]);
    assert_eq!(code, 0, "--version exits 0");
    assert!(
        out.contains(env!("CARGO_PKG_VERSION")),
        "--version prints {}: {out}",
        env!("CARGO_PKG_VERSION")
    );
    // The commit, from build.rs: this test runs in a git checkout when git is there to ask.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let commit = out.split("(commit ").nth(1).and_then(|r| r.split(')').next());
    assert!(
        commit.is_some_and(|c| !c.is_empty()),
        "--version names the commit: {out}"
    );
    if let Some(head) = head {
        // Built from this checkout, possibly a commit or two ago while iterating: a hex id.
        let c = commit.unwrap();
        assert!(
            c.len() >= 7 && c.chars().all(|ch| ch.is_ascii_hexdigit()),
            "{out} (HEAD is {head})"
        );
    }
}

#[test]
fn a_busy_metrics_port_is_one_error_line_with_a_hint() {
    let dir = TestDir::new("busy-port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let path = dir.join("busy.toml");
    let text = base(&dir).replace(
        "[metrics]\nenabled = false\n",
        &format!("[metrics]\naddress = \"{addr}\"\n"),
    );
    assert!(text.contains(&addr.to_string()), "{text}");
    fs::write(&path, text).unwrap();
    let (code, stderr, _) = run(&dir, &["--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "a port in use is a run-time failure: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(&addr.to_string())).collect();
    assert_eq!(errors.len(), 1, "the error is printed once:\n{stderr}");
    assert_eq!(
        errors[0].matches("os error").count(),
        1,
        "the OS error once: {}",
        errors[0]
    );
    assert!(errors[0].contains("set metrics.address"), "with the fix: {}", errors[0]);

    // With the agent's log filter off, stderr still gets it, once.
    let (code, stderr, _) = run(&dir, &["--config", path.to_str().unwrap()], &[("TAILSHIP_LOG", "off")]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.matches(&addr.to_string()).count(), 1, "{stderr}");
    assert!(stderr.contains("set metrics.address"), "{stderr}");
    drop(taken);
}

#[test]
fn the_config_can_come_from_tailship_config() {
    let dir = TestDir::new("env-config");
    let logs = dir.subdir("logs");
    fs::write(logs.join("a.log"), corpus().lines("env", 0, 10)).unwrap();
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let path = dir.join("env.toml");
    fs::write(&path, cfg.render()).unwrap();
    let mut agent = Agent::spawn(&dir, &[], cfg.metrics_addr(), |cmd| {
        cmd.env("TAILSHIP_CONFIG", &path);
    });
    wait_progress(Some(&mut agent), "10 lines", STALL, LIMIT, || {
        (rx.unique("env"), rx.unique("env") >= 10)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);

    // And a bad config given that way is rejected the same way.
    let bad = dir.join("bad.toml");
    fs::write(&bad, format!("colour = \"blue\"\n{}", cfg.render())).unwrap();
    let (code, stderr, _) = run(&dir, &[], &[("TAILSHIP_CONFIG", bad.to_str().unwrap())]);
    assert_eq!(code, 2, "bad config via TAILSHIP_CONFIG exits 2: {stderr}");
    assert!(stderr.contains("colour"), "names the key: {stderr}");
}

/// Host mode: outside Kubernetes, variables named like the Downward API's are not the pod's,
/// and `host.name` is the kernel's host name when `HOSTNAME` is not exported (systemd).
#[test]
fn on_a_host_the_resource_is_the_host_not_a_pod() {
    let dir = TestDir::new("host-mode");
    let logs = dir.subdir("logs");
    fs::write(logs.join("a.log"), corpus().lines("host", 0, 5)).unwrap();
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let mut agent = Agent::start_with(&dir, &cfg, &[], |cmd| {
        cmd.env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAME")
            .env_remove("HOSTNAME")
            .env("NODE_NAME", "not-a-node")
            .env("CONTAINER_NAME", "not-a-container");
    });
    wait_progress(Some(&mut agent), "5 records", STALL, LIMIT, || {
        (rx.lines(), rx.lines() >= 5)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);
    let kernel = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for r in rx.records() {
        let res = &r.json["resource"];
        assert_eq!(res["host.name"], kernel.trim(), "{}", r.json);
        assert!(
            res.as_object().unwrap().keys().all(|k| !k.starts_with("k8s.")),
            "no k8s.* attributes on a host: {}",
            r.json
        );
    }
}
