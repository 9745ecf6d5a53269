//! `tailship convert` on Fluent Bit's own example configs (`tests/data/fluent-bit/`, written
//! out by hand from its documentation; the README there names each page): every example, in
//! both the classic and the YAML format, converts, and the real binary's `validate` accepts the
//! result; the mapped values and the "not carried over" comments are checked one by one; the
//! converted multiline example joins a Java stack trace the way Fluent Bit's does, end to end;
//! broken Fluent Bit configs exit 2 naming the file and line.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::*;

/// Runs the binary with `args` and `env`; (exit code, stdout, stderr), -1 if it did not exit
/// within 15 s (then it is killed).
fn run(dir: &TestDir, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut a = Agent::spawn(dir, &args, None, |cmd| {
        for (k, v) in env {
            cmd.env(k, v);
        }
    });
    let code = a.wait_exit(Duration::from_secs(15));
    if code.is_none() {
        a.kill9();
    }
    let stdout = fs::read_to_string(&a.stdout_path).unwrap_or_default();
    (code.unwrap_or(-1), stdout, a.stderr())
}

fn example(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fluent-bit")
        .join(rel);
    assert!(p.exists(), "test data {} is missing", p.display());
    p
}

/// A converted example: its text, its TOML, and where it was written.
struct Converted {
    text: String,
    toml: toml::Table,
    path: PathBuf,
}

impl Converted {
    fn source(&self, i: usize) -> &toml::Table {
        self.toml["sources"][i].as_table().expect("a source table")
    }

    fn sink(&self, name: &str) -> &toml::Table {
        self.toml["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"].as_str() == Some(name))
            .and_then(|s| s.as_table())
            .unwrap_or_else(|| panic!("no sink {name} in\n{}", self.text))
    }

    fn comments(&self) -> Vec<&str> {
        self.text.lines().filter(|l| l.starts_with('#')).collect()
    }

    /// Asserts that some comment contains every one of `parts`.
    fn has_comment(&self, parts: &[&str]) {
        assert!(
            self.comments().iter().any(|c| parts.iter().all(|p| c.contains(p))),
            "no comment with {parts:?} in\n{}",
            self.text
        );
    }
}

/// Converts example `rel`, writes the result into `dir`, and checks that `tailship validate`
/// accepts it (with `env` for the `${VAR}`s the example leaves to the environment).
fn convert(dir: &TestDir, rel: &str, env: &[(&str, &str)]) -> Converted {
    let input = example(rel);
    let (code, text, stderr) = run(dir, &["convert", input.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "convert {rel}: {stderr}");
    let toml: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: not TOML: {e}\n{text}"));
    let path = dir.join(&format!("{}.toml", rel.replace('/', "-")));
    fs::write(&path, &text).unwrap();
    let (code, out, stderr) = run(dir, &["validate", "--config", path.to_str().unwrap()], env);
    assert_eq!(code, 0, "validate of converted {rel}: {stderr}\n{text}");
    assert!(out.contains(": ok ("), "{out}");
    Converted { text, toml, path }
}

fn strings(v: &toml::Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
}

#[test]
fn the_tail_getting_started_example_converts_alike_from_both_formats() {
    let dir = TestDir::new("convert-syslog");
    let conf = convert(&dir, "tail-syslog.conf", &[]);
    let yaml = convert(&dir, "tail-syslog.yaml", &[]);
    for c in [&conf, &yaml] {
        let src = c.source(0);
        assert_eq!(strings(&src["include"]), ["/var/log/syslog"]);
        assert_eq!(src["format"].as_str(), Some("raw"));
        // Fluent Bit starts existing files at their end unless Read_from_Head is on.
        assert_eq!(src["read_from"].as_str(), Some("end"));
        c.has_comment(&["Read_from_Head was not set"]);
        let sink = &c.toml["sinks"][0];
        assert_eq!(sink["type"].as_str(), Some("stdout"));
        assert!(sink.get("inputs").is_none(), "Match * reads every source");
        assert_eq!(c.toml["metrics"]["enabled"].as_bool(), Some(false));
    }
    assert_eq!(conf.toml, yaml.toml, "the two formats say the same thing");
}

#[test]
fn the_kubernetes_daemonset_example_maps_tail_service_filter_and_es() {
    let dir = TestDir::new("convert-k8s");
    let c = convert(
        &dir,
        "kubernetes/fluent-bit.conf",
        &[
            ("FLUENT_ELASTICSEARCH_HOST", "es.logging"),
            ("FLUENT_ELASTICSEARCH_PORT", "9200"),
        ],
    );
    let src = c.source(0);
    assert_eq!(src["name"].as_str(), Some("kube"));
    assert_eq!(strings(&src["include"]), ["/var/log/containers/*.log"]);
    assert_eq!(src["format"].as_str(), Some("auto"), "multiline.parser docker, cri");
    assert_eq!(
        c.toml["max_inflight_bytes"].as_integer(),
        Some(5_000_000),
        "Mem_Buf_Limit 5MB"
    );
    assert_eq!(
        c.toml["rescan_interval"].as_str(),
        Some("10000ms"),
        "Refresh_Interval 10"
    );
    assert_eq!(c.toml["metrics"]["address"].as_str(), Some("0.0.0.0:2020"));
    let es = c.sink("elasticsearch0");
    assert_eq!(es["type"].as_str(), Some("elasticsearch"));
    assert_eq!(
        es["url"].as_str(),
        Some("http://${FLUENT_ELASTICSEARCH_HOST}:${FLUENT_ELASTICSEARCH_PORT}"),
        "Fluent Bit's ${{VAR}}s are left for tailship to expand"
    );
    assert_eq!(es["index"].as_str(), Some("logstash-%Y.%m.%d"), "Logstash_Format On");
    assert!(
        es.get("retry").is_none(),
        "Retry_Limit False: retry forever, tailship's default"
    );
    c.has_comment(&["DB: tailship keeps its checkpoints"]);
    c.has_comment(&["not carried over: Skip_Long_Lines On", "input-kubernetes.conf:8"]);
    c.has_comment(&[
        "not carried over: [FILTER] kubernetes",
        "filter-kubernetes.conf:1",
        "log file's path",
    ]);
    c.has_comment(&["Kube_URL https://kubernetes.default.svc:443"]);
    c.has_comment(&["not carried over: Replace_Dots On", "output-elasticsearch.conf:7"]);
    c.has_comment(&["Log_Level info", "TAILSHIP_LOG"]);
    c.has_comment(&["not carried over: Flush 1", "batch.linger_ms"]);
    c.has_comment(&["not carried over: Daemon off"]);
}

/// The converted multiline example, run: Fluent Bit's documented output for this input is
/// three records (the line before, the joined trace, the line after), and so is tailship's.
#[test]
fn the_multiline_example_converts_from_both_formats_and_joins_the_trace() {
    let dir = TestDir::new("convert-multiline");
    for rel in ["multiline/fluent-bit.conf", "multiline/fluent-bit.yaml"] {
        let c = convert(&dir, rel, &[]);
        let src = c.source(0);
        assert_eq!(strings(&src["include"]), ["test.log"]);
        assert_eq!(src["read_from"].as_str(), Some("beginning"));
        assert_eq!(src["multiline"]["continue"].as_str(), Some(r"^\s+at.*"));
        assert_eq!(src["multiline"]["timeout_ms"].as_integer(), Some(1000));
        c.has_comment(&["multiline parser multiline-regex-test", "continuation rules"]);
    }
    let c = convert(&dir, "multiline/fluent-bit.conf", &[]);
    fs::copy(example("multiline/test.log"), dir.join("test.log")).unwrap();
    let data = dir.subdir("data");
    let config = format!("data_dir = {}\n{}", q(&data.to_string_lossy()), c.text);
    fs::write(&c.path, config).unwrap();
    let mut agent = Agent::spawn(
        &dir,
        &["--config".into(), c.path.to_string_lossy().into_owned()],
        None,
        |_| {},
    );
    let messages = |agent: &Agent| -> Vec<String> {
        fs::read_to_string(&agent.stdout_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|r| r["message"].as_str().map(str::to_owned))
            .collect()
    };
    let done = wait_until(Duration::from_secs(30), || {
        messages(&agent).len() >= 3 || !agent.alive()
    });
    agent.sigterm();
    assert_eq!(agent.wait_exit(Duration::from_secs(30)), Some(0), "{}", agent.stderr());
    let got = messages(&agent);
    assert!(done, "three records expected, got {got:?}\n{}", agent.stderr());
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], "single line...");
    assert!(
        got[1].starts_with("Dec 14 06:41:08 Exception in thread \"main\""),
        "{got:?}"
    );
    assert!(
        got[1].ends_with("at com.myproject.module.MyProject.main(MyProject.java:6)"),
        "{got:?}"
    );
    assert_eq!(got[1].lines().count(), 6);
    assert_eq!(got[2], "another line...");
}

#[test]
fn outputs_filters_and_routing_from_the_classic_format() {
    let dir = TestDir::new("convert-outputs-conf");
    let c = convert(&dir, "outputs/fluent-bit.conf", &[("SPLUNK_TOKEN", "t0k")]);
    let web = c.source(0);
    assert_eq!(web["name"].as_str(), Some("app.web"));
    assert_eq!(strings(&web["include"]), ["/var/log/web/*.log", "/var/log/web/*.txt"]);
    assert_eq!(strings(&web["exclude"])[..2], ["**/*.gz", "**/*.zip"]);
    assert_eq!(web["format"].as_str(), Some("combined"), "the stock nginx parser");
    assert_eq!(web["read_from"].as_str(), Some("beginning"));
    assert_eq!(web["max_line_bytes"].as_integer(), Some(64_000));
    assert_eq!(c.toml["rotate_wait"].as_str(), Some("30000ms"));
    assert_eq!(c.toml["shutdown_timeout"].as_str(), Some("10000ms"), "Grace 10");
    let db = c.source(1);
    assert_eq!(db["multiline"]["preset"].as_str(), Some("java"));
    assert_eq!(db["read_from"].as_str(), Some("end"));
    assert_eq!(
        c.toml["sources"].as_array().unwrap().len(),
        2,
        "the cpu input is no source"
    );

    let http = c.sink("http0");
    assert!(http.get("inputs").is_none(), "app.* matches both tail inputs");
    assert_eq!(http["url"].as_str(), Some("http://192.168.2.3:80/something"));
    assert_eq!(http["encoding"].as_str(), Some("json_array"), "Format json");
    assert_eq!(http["headers"]["X-Key-A"].as_str(), Some("Value_A"));
    assert_eq!(http["auth"]["strategy"].as_str(), Some("basic"));
    assert_eq!(http["auth"]["user"].as_str(), Some("admin"));
    let loki = c.sink("loki1");
    assert_eq!(strings(&loki["inputs"]), ["app.web"]);
    assert_eq!(loki["url"].as_str(), Some("http://127.0.0.1:3100"));
    assert_eq!(loki["labels"]["stream"].as_str(), Some("stream"));
    assert_eq!(loki["line"].as_str(), Some("record"), "line_format json");
    let otlp = c.sink("otlp2");
    assert_eq!(strings(&otlp["inputs"]), ["app.db"]);
    assert_eq!(otlp["url"].as_str(), Some("https://localhost:443/v1/logs"));
    assert_eq!(otlp["tls"]["insecure_skip_verify"].as_bool(), Some(true));
    let splunk = c.sink("splunk_hec3");
    assert_eq!(splunk["url"].as_str(), Some("https://127.0.0.1:8088"));
    assert_eq!(splunk["auth"]["token"].as_str(), Some("${SPLUNK_TOKEN}"));
    assert_eq!(c.sink("tcp4")["address"].as_str(), Some("127.0.0.1:5170"));
    assert_eq!(c.sink("file5")["path"].as_str(), Some("/tmp/fluent-bit-out/file5.log"));

    c.has_comment(&["not carried over: [OUTPUT] forward", "no forward"]);
    c.has_comment(&["not carried over: [OUTPUT] stdout", "matches no tail input"]);
    c.has_comment(&["not carried over: [INPUT] cpu", "files only"]);
    // Grep's example (`Regex log aa`, Match app.*) on both sources, modify's (`Add user
    // coralogix`, Match app.web) on the web source only.
    let keep = Some(r#"message =~ "aa""#);
    let listed = |src: &toml::Table| src["transforms"].as_array().map_or(0, |a| a.len());
    assert_eq!(listed(web), 2, "{}", c.text);
    assert_eq!(web["transforms"][0]["keep"].as_str(), keep);
    assert_eq!(web["transforms"][1]["add"]["user"].as_str(), Some("coralogix"));
    assert_eq!(listed(db), 1, "{}", c.text);
    assert_eq!(db["transforms"][0]["keep"].as_str(), keep);
    c.has_comment(&["transforms[0]: [FILTER] grep at fluent-bit.conf:28"]);
    c.has_comment(&["transforms[1]: [FILTER] modify at fluent-bit.conf:33"]);
    c.has_comment(&["not carried over: label job=fluentbit"]);
    c.has_comment(&["not carried over: Path_Key filename", "`file`"]);
    c.has_comment(&["not carried over: Traces_uri /v1/traces"]);
    c.has_comment(&["Retry_Limit is 1"]);
    c.has_comment(&["auth.password is written in clear", "auth.password_file"]);
    // A password may be carried over into its key, never into a comment.
    assert!(c.comments().iter().all(|l| !l.contains("s3cr3t")), "{}", c.text);
}

#[test]
fn parsers_es_loki_and_service_from_the_yaml_format() {
    let dir = TestDir::new("convert-outputs-yaml");
    let c = convert(&dir, "outputs/fluent-bit.yaml", &[("ES_PASSWORD", "pw")]);
    let web = c.source(0);
    assert_eq!(web["format"].as_str(), Some("regex"));
    assert_eq!(
        web["pattern"].as_str(),
        Some("^(?<timestamp>[^ ]+) (?<level>[A-Z]+) (?<message>.*)$"),
        "the Time_Key capture is renamed timestamp"
    );
    assert_eq!(web["timestamp_format"].as_str(), Some("%Y-%m-%dT%H:%M:%S"));
    assert_eq!(c.source(1)["format"].as_str(), Some("logfmt"));
    assert_eq!(
        c.toml["max_inflight_bytes"].as_integer(),
        Some(70_000_000),
        "50MB + 20MB"
    );
    assert_eq!(c.toml["metrics"]["address"].as_str(), Some("0.0.0.0:2021"));
    let es = c.sink("elasticsearch0");
    assert_eq!(strings(&es["inputs"]), ["app.web"]);
    assert_eq!(es["url"].as_str(), Some("http://es.logging.svc:9200"));
    assert_eq!(es["index"].as_str(), Some("my-index"));
    assert_eq!(es["auth"]["password"].as_str(), Some("${ES_PASSWORD}"));
    assert_eq!(es["retry"]["max_retries"].as_integer(), Some(5));
    let loki = c.sink("loki1");
    assert_eq!(loki["labels"]["app"].as_str(), Some("resource.k8s.container.name"));
    assert_eq!(loki["labels"]["level"].as_str(), Some("level"));
    assert_eq!(loki["tenant_id"].as_str(), Some("team-a"));
    c.has_comment(&["not carried over: suppress_type_name on", "fluent-bit.yaml:43", "_type"]);
    assert_eq!(
        c.source(0)["transforms"][0]["drop"].as_str(),
        Some(r#"message =~ "^DEBUG""#),
        "{}",
        c.text
    );
    c.has_comment(&["transforms[0]: [FILTER] grep at fluent-bit.yaml:31"]);
    c.has_comment(&["not carried over: [OUTPUT] forward"]);
}

#[test]
fn broken_fluent_bit_configs_exit_2_naming_file_and_line() {
    let dir = TestDir::new("convert-bad");
    let cases: &[(&str, &str, &str)] = &[
        ("a.conf", "[INPUT]\n    Name tail\nPath /x\n", "a.conf:3:"),
        ("b.conf", "[INPUT]\n    Name tail\n  Path /x\n", "b.conf:3:"),
        ("c.conf", "[INPUT]\n    Name tail\n    Path\n", "c.conf:3:"),
        (
            "d.conf",
            "[INPUT]\n    Name tail\n",
            "d.conf:1: this tail input has no Path",
        ),
        ("e.conf", "[INPUT]\n    Name cpu\n", "no `tail` input"),
        ("f.conf", "@INCLUDE missing.conf\n", "missing.conf"),
        (
            "g.yaml",
            "pipeline:\n  inputs:\n    - name: tail\n   path: x\n",
            "g.yaml:4:",
        ),
        ("h.yaml", "pipeline:\n  inputs: tail\n", "h.yaml:2:"),
        (
            "i.yaml",
            "pipeline:\n  inputs:\n    - name: tail\n      path: [a\n",
            "i.yaml:",
        ),
    ];
    for (name, text, expected) in cases {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        let (code, out, stderr) = run(&dir, &["convert", path.to_str().unwrap()], &[]);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(out.is_empty(), "{name}: nothing on stdout when it fails: {out}");
        assert!(stderr.contains(expected), "{name}: {expected:?} missing from {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
    }
    let (code, _, stderr) = run(&dir, &["convert", "/nonexistent/fluent-bit.conf"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/fluent-bit.conf"), "{stderr}");
}

#[test]
fn filters_become_the_sources_transforms_and_filter_as_fluent_bit_would() {
    let dir = TestDir::new("convert-filters");
    let yaml = convert(&dir, "filters/fluent-bit.yaml", &[]);
    let c = convert(&dir, "filters/fluent-bit.conf", &[]);
    for i in 0..2 {
        assert_eq!(
            c.source(i).get("transforms"),
            yaml.source(i).get("transforms"),
            "source {i}: the classic and YAML forms differ\n{}\n{}",
            c.text,
            yaml.text
        );
    }
    let web = c.source(0);
    let jobs = c.source(1);
    let list = |src: &toml::Table| -> Vec<toml::Table> {
        src["transforms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_table().unwrap().clone())
            .collect()
    };
    let web_t = list(web);
    let jobs_t = list(jobs);
    let noise = r#"message =~ "^.*DEBUG.*$" or message =~ "healthz""#;
    assert_eq!(web_t[0]["drop"].as_str(), Some(noise), "{}", c.text);
    assert_eq!(jobs_t[0]["drop"].as_str(), Some(noise));
    assert_eq!(
        jobs_t[1]["keep"].as_str(),
        Some(r#"message =~ "job" and message =~ "finished""#),
        "legacy Regex rules all have to match"
    );
    assert_eq!(web_t[1]["type"].as_str(), Some("fields"));
    assert_eq!(web_t[1]["add"]["service"].as_str(), Some("checkout"));
    assert_eq!(web_t[1]["set"]["env"].as_str(), Some("production"));
    assert_eq!(web_t[1]["rename"]["hostname"].as_str(), Some("host"));
    assert_eq!(strings(&web_t[1]["drop"]), ["password"]);
    assert_eq!(jobs_t[2]["set"]["team"].as_str(), Some("batch"), "record_modifier");
    assert_eq!(strings(&jobs_t[2]["drop"]), ["tmp"]);
    assert_eq!(strings(&jobs_t[3]["lift"]), ["kubernetes"], "nest lift");
    assert_eq!(web_t[2]["type"].as_str(), Some("throttle"));
    assert_eq!(web_t[2]["rate"].as_integer(), Some(1000));
    assert_eq!((web_t.len(), jobs_t.len()), (3, 5), "{}", c.text);
    c.has_comment(&["not carried over: [FILTER] grep", "nested key"]);
    c.has_comment(&[
        "not carried over: [FILTER] modify",
        "Condition Key_Value_Equals level error",
    ]);
    c.has_comment(&["not carried over: [FILTER] lua", "no such transform"]);
    c.has_comment(&["Window 300", "averages"]);
    c.has_comment(&["Fluent Bit counts the records of all 2 matched inputs together"]);

    // The converted config, run: each file's noise and non-matching lines are dropped, the
    // fields added, everything else delivered.
    fs::write(
        dir.join("app.log"),
        "GET /index 200\nDEBUG cache warm\nGET /healthz 200\nPOST /pay 201\n",
    )
    .unwrap();
    fs::write(
        dir.join("jobs.log"),
        "job 1 started\njob 1 finished\nDEBUG job 2 finished\ncleanup finished\njob 3 finished\n",
    )
    .unwrap();
    let data = dir.subdir("data");
    fs::write(
        &c.path,
        format!("data_dir = {}\n{}", q(&data.to_string_lossy()), c.text),
    )
    .unwrap();
    let mut agent = Agent::spawn(
        &dir,
        &["--config".into(), c.path.to_string_lossy().into_owned()],
        None,
        |_| {},
    );
    let records = |agent: &Agent| -> Vec<serde_json::Value> {
        fs::read_to_string(&agent.stdout_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let done = wait_until(Duration::from_secs(30), || records(&agent).len() >= 4 || !agent.alive());
    agent.sigterm();
    assert_eq!(agent.wait_exit(Duration::from_secs(30)), Some(0), "{}", agent.stderr());
    let got = records(&agent);
    assert!(done, "four records expected, got {got:?}\n{}", agent.stderr());
    let of = |file: &str| -> Vec<&serde_json::Value> {
        got.iter()
            .filter(|r| r["file"].as_str().is_some_and(|f| f.ends_with(file)))
            .collect()
    };
    let web_msgs: Vec<&str> = of("app.log").iter().map(|r| r["message"].as_str().unwrap()).collect();
    assert_eq!(web_msgs, ["GET /index 200", "POST /pay 201"], "{got:?}");
    for r in of("app.log") {
        assert_eq!(r["fields"]["service"], "checkout", "{r}");
        assert_eq!(r["fields"]["env"], "production", "{r}");
    }
    let job_msgs: Vec<&str> = of("jobs.log").iter().map(|r| r["message"].as_str().unwrap()).collect();
    assert_eq!(job_msgs, ["job 1 finished", "job 3 finished"], "{got:?}");
    for r in of("jobs.log") {
        assert_eq!(r["fields"]["team"], "batch", "{r}");
    }
    assert_eq!(got.len(), 4, "{got:?}");
}
