//! `scripts/perf-chart.py` draws `docs/performance.svg` from the JSON lines the e2e bench
//! appends (`E2E_RESULT`): the newest raw → tcp run is drawn beside the peers' figures, other
//! paths are ignored, and a file without such a run is an error that says how to make one.
//! Python 3 is required (CI has it for its other tools); without it the test fails.

use std::fs;
use std::process::Command;

use crate::util::*;

fn chart(dir: &TestDir, runs: &str) -> (bool, String, String) {
    let runs_path = dir.join("runs.jsonl");
    let out = dir.join("chart.svg");
    fs::write(&runs_path, runs).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/perf-chart.py");
    let result = Command::new("python3")
        .args([
            script,
            "--runs",
            runs_path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs (the chart script needs it)");
    let svg = fs::read_to_string(&out).unwrap_or_default();
    (
        result.status.success(),
        svg,
        String::from_utf8_lossy(&result.stderr).into_owned(),
    )
}

#[test]
fn the_chart_draws_the_newest_run_beside_the_peers() {
    let dir = TestDir::new("perf-chart");
    // Lines as benches/e2e.rs writes them.
    let runs = concat!(
        r#"{"date":"2026-11-29T10:00:00Z","commit":"aaa","path":"raw → tcp ndjson","bytes":1073741824,"files":1,"cpus":2,"mb_per_s":700.0,"cpu_s_per_gb":1.5,"peak_rss_mib":28.0,"steady":false}"#,
        "\n",
        r#"{"date":"2026-11-30T10:00:00Z","commit":"bbb","path":"raw → tcp ndjson","bytes":1073741824,"files":1,"cpus":2,"mb_per_s":812.4,"cpu_s_per_gb":1.23,"peak_rss_mib":28.0,"steady":false}"#,
        "\n",
        r#"{"date":"2026-12-01T10:00:00Z","commit":"ccc","path":"raw → otlp","bytes":1073741824,"files":1,"cpus":2,"mb_per_s":99.0,"cpu_s_per_gb":9.0,"peak_rss_mib":33.0,"steady":false}"#,
        "\n",
    );
    let (ok, svg, stderr) = chart(&dir, runs);
    assert!(ok, "{stderr}");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    for text in [
        "812 MB/s",
        "1.23 CPU-s/GB",
        "130 MB/s",
        "7.40 CPU-s/GB",
        "54 MB/s",
        "546 MB/s",
        "2026-11-30",
    ] {
        assert!(svg.contains(text), "{text} missing from the chart");
    }
    assert!(!svg.contains("99 MB/s"), "another path's run is not drawn");

    let (ok, _, stderr) = chart(&dir, runs.lines().nth(2).unwrap());
    assert!(!ok, "no raw → tcp run: an error");
    assert!(stderr.contains("E2E_RESULT="), "{stderr}");
}
