//! Tests of the config's two syntaxes and its messages: YAML and TOML give the same settings,
//! every unknown key is reported at once with its line, and `validate --print` masks secrets.

use std::path::{Path, PathBuf};

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut out = Vec::new();
    for dir in [root.clone(), root.join("formats")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn yaml_and_toml_examples_agree() {
    let tomls = examples();
    assert!(tomls.len() >= 10, "examples not found: {tomls:?}");
    for toml_path in tomls {
        let yaml_path = toml_path.with_extension("yaml");
        let yaml_text = std::fs::read_to_string(&yaml_path).unwrap_or_else(|e| {
            panic!(
                "{} has no YAML version {}: {e}",
                toml_path.display(),
                yaml_path.display()
            )
        });
        let toml_text = std::fs::read_to_string(&toml_path).unwrap();
        let from_toml =
            Settings::parse(&toml_path, Syntax::Toml, &toml_text, &no_env).unwrap_or_else(|e| panic!("{e}"));
        let from_yaml =
            Settings::parse(&yaml_path, Syntax::Yaml, &yaml_text, &no_env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_toml.effective(), from_yaml.effective(), "{}", toml_path.display());
        // Everything, not only what --print shows (compiled patterns print their source).
        // The config file itself is one of the agent's own files: its name is the one difference.
        let (toml_name, yaml_name) = (toml_path.display().to_string(), yaml_path.display().to_string());
        assert_eq!(
            format!("{from_toml:?}"),
            format!("{from_yaml:?}").replace(&yaml_name, &toml_name),
            "{}",
            toml_path.display()
        );
        // The effective config is itself a config that gives the same settings.
        let again = Settings::parse(&toml_path, Syntax::Toml, &from_toml.effective(), &no_env)
            .unwrap_or_else(|e| panic!("{}: --print output does not load: {e}", toml_path.display()));
        assert_eq!(again.effective(), from_toml.effective(), "{}", toml_path.display());
    }
}

const TOML_TYPOS: &str = r#"data_dir = "/tmp/x"
shutdown_timout = "5s"

[metrics]
adress = "127.0.0.1:1"

[[sources]]
name = "app"
include = ["/l/*.log"]
fromat = "json"

[[sinks]]
type = "tcp"
address = "127.0.0.1:1"
bacth = { max_events = 5 }
colour = "red"
"#;

const YAML_TYPOS: &str = r#"data_dir: /tmp/x
shutdown_timout: 5s
metrics:
  adress: 127.0.0.1:1
sources:
  - name: app
    include: [/l/*.log]
    fromat: json
sinks:
  - type: tcp
    address: 127.0.0.1:1
    bacth: {max_events: 5}
    colour: red
"#;

fn problems(syntax: Syntax, text: &str) -> Vec<Problem> {
    match Settings::parse(Path::new("/etc/t/agent"), syntax, text, &no_env) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_unknown_key_is_reported_at_once_with_its_line_and_a_guess() {
    let expected = [
        ("shutdown_timout", 2, Some("shutdown_timeout")),
        ("metrics.adress", 5, Some("address")),
        ("sources[0].fromat", 10, Some("format")),
        ("sinks[0].bacth", 15, Some("batch")),
        ("sinks[0].colour", 16, None),
    ];
    let yaml_lines = [2, 4, 8, 12, 13];
    for (syntax, text, lines) in [
        (Syntax::Toml, TOML_TYPOS, expected.map(|e| e.1)),
        (Syntax::Yaml, YAML_TYPOS, yaml_lines),
    ] {
        let found = problems(syntax, text);
        assert_eq!(found.len(), expected.len(), "{syntax:?}: {found:#?}");
        for ((key, _, guess), (p, line)) in expected.iter().zip(found.iter().zip(lines)) {
            let shown = p.to_string();
            assert!(
                shown.starts_with(&format!("{key} (line {line}, column ")),
                "{syntax:?}: {shown}"
            );
            match guess {
                Some(g) => assert!(shown.contains(&format!("did you mean {g:?}?")), "{shown}"),
                None => assert!(!shown.contains("did you mean"), "{shown}"),
            }
        }
    }
}

#[test]
fn validation_problems_and_type_errors_name_their_line() {
    let yaml = "sources:\n  - name: app\n    include: [/l/*.log]\n    format: xml\nsinks:\n  - type: tcp\n";
    let found: Vec<String> = problems(Syntax::Yaml, yaml).iter().map(ToString::to_string).collect();
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("sources[0].format (line 4, column 13)")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.starts_with("sinks[0].address (line 6, column ")),
        "the sink lacking it: {found:?}"
    );
    let wrong = "sources:\n  - name: app\n    include: /l/*.log\n";
    let found = problems(Syntax::Yaml, wrong);
    assert!(
        found[0]
            .to_string()
            .starts_with("sources[0].include (line 3, column 14)"),
        "{found:?}"
    );
    match Settings::parse(Path::new("t.yaml"), Syntax::Yaml, "sources:\n  - name: [\n", &no_env) {
        Err(ConfigError::Parse { message, .. }) => assert!(message.starts_with("line 3, column"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn yaml_values_are_typed_as_the_schema_asks() {
    let yaml = "data_dir: /tmp/x\nmax_open_files: 100\nshutdown_timeout: 3\nrotate_wait: 250ms\nsources:\n  - name: app\n    include: [/l/*.log]\n    fields: {port: \"80\"}\nsinks:\n  - type: tcp\n    address: 127.0.0.1:1\n";
    let s = Settings::parse(Path::new("t.yml"), Syntax::Yaml, yaml, &no_env).unwrap();
    assert_eq!(s.max_open_files, 100);
    assert_eq!(s.shutdown_timeout, Duration::from_secs(3));
    assert_eq!(s.rotate_wait, Duration::from_millis(250));
    // An unquoted number where text is expected is a type error, named with its place.
    let found = problems(Syntax::Yaml, &yaml.replace("\"80\"", "80"));
    assert!(
        found[0]
            .to_string()
            .starts_with("sources[0].fields.port (line 8, column 20)"),
        "{found:?}"
    );
}

#[test]
fn print_masks_secrets_and_variables_are_expanded() {
    let text = r#"
        data_dir = "/tmp/x"
        [[sources]]
        name = "app"
        include = ["${DIR}/*.log"]
        [[sinks]]
        type = "http"
        url = "https://collector.example/ingest?api_key=k3y-in-query"
        headers = { "X-Api-Key" = "h3ader-secret" }
        auth = { strategy = "bearer", token = "${TOKEN}" }
    "#;
    let env = |name: &str| match name {
        "DIR" => Some("/var/log/app".to_owned()),
        "TOKEN" => Some("t0ken-from-env".to_owned()),
        _ => None,
    };
    let s = Settings::parse(Path::new("/etc/t.toml"), Syntax::Toml, text, &env).unwrap();
    let shown = s.effective();
    for secret in ["k3y-in-query", "h3ader-secret", "t0ken-from-env"] {
        assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
    }
    assert!(shown.contains("/var/log/app/*.log"), "{shown}");
    assert!(
        shown.contains("shutdown_timeout = \"25s\""),
        "defaults filled in: {shown}"
    );
    assert!(shown.contains("token = \"<masked>\""), "{shown}");
}

#[test]
fn print_gives_a_config_with_the_same_settings_for_every_sink_type() {
    let text = r#"
        data_dir = "/tmp/x"
        [[sources]]
        name = "app"
        include = ["/l/*.log"]
        format = "regex"
        pattern = '^(?P<level>\w+) (?P<message>.*)$'
        multiline = { start = '^\w', max_lines = 7 }
        fields = { team = "a" }
        [[sinks]]
        name = "h"
        type = "http"
        url = "https://c.example/in"
        encoding = "json_array"
        compression = "zstd"
        headers = { "X-Key" = "v4lue" }
        auth = { strategy = "basic", user = "u", password = "p4ss" }
        tls = { insecure_skip_verify = true }
        retry = { max_retries = 3, initial_backoff = "2s" }
        [[sinks]]
        name = "es"
        type = "elasticsearch"
        url = "http://es.example:9200"
        data_stream = "logs-app-default"
        [[sinks]]
        name = "loki"
        type = "loki"
        url = "http://loki.example:3100"
        labels = { app = "resource.service.name", level = "level" }
        tenant_id = "t1"
        line = "record"
        [[sinks]]
        name = "otlp"
        type = "otlp"
        url = "http://otel.example:4318"
        encoding = "json"
        [[sinks]]
        name = "hec"
        type = "splunk_hec"
        url = "https://splunk.example:8088"
        auth = { token = "t0ken" }
        index = "main"
        sourcetype = "app"
        [[sinks]]
        name = "f"
        type = "file"
        path = "out.ndjson"
        encoding = "raw"
    "#;
    let s = Settings::parse(Path::new("/etc/t/a.toml"), Syntax::Toml, text, &no_env).unwrap();
    let printed = s.effective();
    let again = Settings::parse(Path::new("/etc/t/a.toml"), Syntax::Toml, &printed, &no_env)
        .unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(again.effective(), printed);
    for secret in ["v4lue", "p4ss", "t0ken"] {
        assert!(!printed.contains(secret), "{secret}:\n{printed}");
    }
}
