//! The converter's corner cases, each converted and then validated by `config::Settings` (the
//! same check `tailship validate` makes), so a mapping can never write a key tailship rejects.
//! The documented examples run through the binary in `tests/it/convert.rs`.

use std::path::Path;

use crate::config::{Format, Settings, SinkKind};

/// Converts `text` (written as `name` in a scratch directory) and validates the result.
fn convert(name: &str, text: &str) -> (String, Settings) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let toml = super::convert(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let settings = Settings::from_toml(&dir.path().join("tailship.toml"), &toml, &|_| None)
        .unwrap_or_else(|e| panic!("{name}: the output does not validate: {e}\n{toml}"));
    (toml, settings)
}

#[test]
fn only_unsupported_outputs_still_give_a_sink() {
    let (toml, s) = convert(
        "f.conf",
        "[INPUT]\n    Name tail\n    Path /l/*.log\n[OUTPUT]\n    Name forward\n    Match *\n",
    );
    assert!(matches!(s.sinks[0].kind, SinkKind::Stdout), "{toml}");
    assert!(toml.contains("No output converted"), "{toml}");
    assert!(toml.contains("not carried over: [OUTPUT] forward"), "{toml}");
}

#[test]
fn the_early_yaml_form_names_the_plugin_by_its_key() {
    let (_, s) = convert(
        "f.yaml",
        "pipeline:\n  inputs:\n    - tail:\n        path: /var/log/containers/*.log\n        multiline.parser: docker, cri\n  outputs:\n    - stdout:\n        match: '*'\n",
    );
    assert!(matches!(s.sources[0].format, Format::Auto));
    // The kubelet's links there lead into /var/log/pods: followed only with that root.
    assert_eq!(s.sources[0].symlink_roots, [std::path::PathBuf::from("/var/log/pods")]);
}

#[test]
fn old_multiline_keys_docker_mode_match_regex_and_an_input_nothing_reads() {
    let (toml, s) = convert(
        "f.conf",
        concat!(
            "[PARSER]\n    Name first\n    Format regex\n    Regex ^(?<time>\\d{4}-\\d\\d-\\d\\d) (?<message>.*)\n",
            "[INPUT]\n    Name tail\n    Tag a\n    Path /a/*.log\n    Multiline On\n    Parser_Firstline first\n    Multiline_Flush 2\n",
            "[INPUT]\n    Name tail\n    Tag b\n    Path /b/*.log\n    Docker_Mode On\n",
            "[INPUT]\n    Name tail\n    Tag c\n    Path /c/*.log\n",
            "[OUTPUT]\n    Name stdout\n    Match_Regex ^(a|b)$\n",
        ),
    );
    let m = s.sources[0]
        .multiline
        .as_ref()
        .expect("Parser_Firstline → multiline.start");
    assert!(m.rule.begins("2026-11-30 boot"), "{toml}");
    assert!(!m.rule.begins("  at x"), "{toml}");
    assert_eq!(m.timeout.as_millis(), 2000);
    assert!(matches!(s.sources[1].format, Format::Docker));
    assert_eq!(s.sources.len(), 2, "no output reads c: {toml}");
    assert_eq!(s.sinks[0].inputs, vec![0, 1], "Match_Regex ^(a|b)$");
    assert!(
        toml.contains("the tail input tagged c (f.conf:17): no output matches"),
        "{toml}"
    );
}

#[test]
fn parsers_tailship_cannot_take_leave_the_source_raw_with_a_comment() {
    let (toml, s) = convert(
        "f.conf",
        concat!(
            "[PARSER]\n    Name lookbehind\n    Format regex\n    Regex (?<=x)(?<message>.*)\n",
            "[PARSER]\n    Name odd_time\n    Format regex\n    Regex ^(?<t>\\S+) (?<message>.*)$\n    Time_Key t\n    Time_Format %Q\n",
            "[PARSER]\n    Name labelled\n    Format ltsv\n",
            "[INPUT]\n    Name tail\n    Tag a\n    Path /a/*.log\n    Parser lookbehind\n",
            "[INPUT]\n    Name tail\n    Tag b\n    Path /b/*.log\n    Parser odd_time\n",
            "[INPUT]\n    Name tail\n    Tag c\n    Path /c/*.log\n    Parser labelled\n",
            "[INPUT]\n    Name tail\n    Tag d\n    Path /d/*.log\n    Parser no_such_parser\n",
            "[OUTPUT]\n    Name stdout\n    Match *\n",
        ),
    );
    assert!(matches!(s.sources[0].format, Format::Raw), "{toml}");
    assert!(toml.contains("does not compile as a Rust regex"), "{toml}");
    assert!(
        matches!(s.sources[1].format, Format::Regex(_)),
        "kept without its time layout: {toml}"
    );
    assert!(toml.contains("Parser odd_time Time_Format"), "{toml}");
    assert!(matches!(s.sources[2].format, Format::Raw));
    assert!(toml.contains("Format ltsv"), "{toml}");
    assert!(
        toml.contains("Parser no_such_parser: not in any parsers file"),
        "{toml}"
    );
}

#[test]
fn includes_with_wildcards_and_set_variables() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf.d");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(
        conf.join("10-in.conf"),
        "[INPUT]\n    Name tail\n    Tag app\n    Path ${LOGS}/*.log\n",
    )
    .unwrap();
    std::fs::write(
        conf.join("20-out.conf"),
        "[OUTPUT]\n    Name tcp\n    Match app\n    Host ${COLLECTOR}\n    Port 5170\n    Format json_lines\n",
    )
    .unwrap();
    let main = dir.path().join("fluent-bit.conf");
    std::fs::write(
        &main,
        "@SET LOGS=/srv/logs\n@SET COLLECTOR=collector.local\n[SERVICE]\n    Parsers_File missing.conf\n@INCLUDE conf.d/*.conf\n",
    )
    .unwrap();
    let toml = super::convert(&main).unwrap();
    let s = Settings::from_toml(Path::new("/etc/t.toml"), &toml, &|_| None).unwrap();
    assert_eq!(s.sources[0].include, vec!["/srv/logs/*.log"]);
    assert!(matches!(&s.sinks[0].kind, SinkKind::Tcp(t) if t.address == "collector.local:5170"));
    assert!(toml.contains("missing.conf was not found"), "{toml}");
}

#[test]
fn an_include_loop_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("loop.conf");
    std::fs::write(&main, "@INCLUDE loop.conf\n").unwrap();
    let err = super::convert(&main).unwrap_err().to_string();
    assert!(err.contains("nest deeper"), "{err}");
}
