//! `[SERVICE]` → tailship's top-level keys and `[metrics]`; sections tailship has no
//! counterpart for, and inputs other than `tail` → comments.

use super::write::Table;
use super::{file_name, seconds, FluentBit};

fn service_reason(key: &str) -> Option<&'static str> {
    Some(match key {
        "flush" => "tailship ships a batch when it is full or batch.linger_ms (200 ms) after its first record",
        "daemon" => "run tailship in the foreground under systemd (contrib/) or as a container",
        "log_file" => "tailship logs to stderr",
        k if k.starts_with("storage.") => {
            "tailship buffers nothing but the checkpoint: unread lines wait in the files; data_dir holds checkpoints and dead letters"
        }
        "health_check" | "hc_errors_count" | "hc_retry_failure_count" | "hc_period" => {
            "watch tailship_* metrics (e.g. the sinks' failures) instead"
        }
        "plugins_file" | "streams_file" => "tailship has no plugins or stream processor",
        "coro_stack_size" | "scheduler.base" | "scheduler.cap" => "no tailship equivalent",
        _ => return None,
    })
}

/// The service section(s) into top-level keys and `[metrics]`.
pub(super) fn convert(fb: &FluentBit, top: &mut Table, metrics: &mut Table) {
    for file in &fb.missing_parsers_files {
        top.note(format!(
            "parsers file {} was not found: parsers are taken as Fluent Bit's stock ones where tailship has a format",
            file.display()
        ));
    }
    let mut http_server = None;
    let mut listen = None;
    let mut port = None;
    for s in &fb.service {
        if let Some(level) = s.get("log_level") {
            top.note(format!(
                "Log_Level {level}: tailship's own log level is the TAILSHIP_LOG environment variable (e.g. TAILSHIP_LOG={level})"
            ));
        }
        if let Some(grace) = s.get("grace").and_then(seconds) {
            top.note("Grace: how long a stop may take to deliver what was read");
            top.set("shutdown_timeout", format!("{}ms", (grace * 1000.0).round() as u64));
        }
        http_server = s.flag("http_server").or(http_server);
        listen = s.get("http_listen").map(str::to_owned).or(listen);
        port = s.get("http_port").map(str::to_owned).or(port);
        s.consume("parsers_file");
        top.leftovers(s, &service_reason);
    }
    if http_server == Some(true) {
        let listen = listen.unwrap_or_else(|| "0.0.0.0".into());
        let port = port.unwrap_or_else(|| "2020".into());
        metrics.note("HTTP_Server On: tailship serves Prometheus metrics at /metrics on this address");
        metrics.set("address", format!("{listen}:{port}"));
    } else {
        metrics.note(
            "Fluent Bit's HTTP server was off. tailship's metrics endpoint (127.0.0.1:9090/metrics) is worth having: delete this line to turn it on",
        );
        metrics.set("enabled", false);
    }
}

/// Sections tailship has no counterpart for, and inputs other than `tail`, as comments.
pub(super) fn others(fb: &FluentBit, notes: &mut Table) {
    for (kind, s) in &fb.other {
        notes.note(format!(
            "not carried over: [{}] at {}:{}: tailship has no counterpart",
            kind.to_ascii_uppercase(),
            file_name(&s.file),
            s.line
        ));
    }
    for i in fb.inputs.iter().filter(|i| i.plugin() != "tail") {
        notes.note(format!(
            "not carried over: [INPUT] {} at {}: tailship reads files only (tail)",
            i.plugin(),
            i.at()
        ));
    }
}
