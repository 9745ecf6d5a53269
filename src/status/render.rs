//! `tailship status` for people: a table of files (with a progress bar under each file still
//! behind) and a table of sinks. Plain text, redrawn by `--watch`: one bar per table row is a
//! line of text, which a progress-bar crate's terminal handling (it owns the lines it draws)
//! would only fight with, and plain text reads the same in a pipe or a CI log.

use std::fmt::Write as _;

use super::{Agent, FileStatus, SinkStatus, Status};

const BAR_WIDTH: usize = 30;

/// The status as the tables described in the module doc.
pub fn table(s: &Status) -> String {
    let mut out = String::new();
    let _ = match s.agent {
        Agent::Running => writeln!(out, "agent: running"),
        Agent::Stopped => writeln!(out, "agent: not running (from data_dir and the files)"),
    };
    out.push('\n');
    if !s.files_shown {
        out.push_str("files: not shown to callers on other hosts (run tailship status where the agent runs)\n");
    } else if s.files.is_empty() {
        out.push_str("files: none\n");
    } else {
        files(&mut out, &s.files, s.at_ms);
    }
    out.push('\n');
    sinks(&mut out, &s.sinks, s.at_ms);
    out
}

fn files(out: &mut String, files: &[FileStatus], now_ms: u64) {
    let head = [
        "PATH",
        "SOURCE",
        "FORMAT",
        "STATE",
        "SIZE",
        "COMMITTED",
        "BEHIND",
        "ETA",
        "LAST READ",
    ];
    let rows: Vec<[String; 9]> = files
        .iter()
        .map(|f| {
            let state = match &f.reason {
                Some(r) => format!("{}: {r}", f.state.name()),
                None => f.state.name().to_owned(),
            };
            [
                crate::logsafe::escape(&f.path).into_owned(),
                f.source.clone(),
                f.format.clone(),
                state,
                opt(f.size.map(bytes)),
                opt(f.committed_offset.map(bytes)),
                opt(f.bytes_behind.map(bytes)),
                opt(f.seconds_behind.map(seconds)),
                opt(f.last_read_ms.map(|t| ago(now_ms, t))),
            ]
        })
        .collect();
    let bars: Vec<Option<String>> = files.iter().map(bar).collect();
    write_table(out, &head, &rows, &bars);
}

fn sinks(out: &mut String, sinks: &[SinkStatus], now_ms: u64) {
    let head = [
        "SINK",
        "TYPE",
        "UP",
        "LAST SUCCESS",
        "RETRIES",
        "ERRORS",
        "DEAD-LETTERED",
    ];
    let rows: Vec<[String; 7]> = sinks
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.kind.clone(),
                opt(s.up.map(|u| if u { "up" } else { "down" }.to_owned())),
                match (s.up, s.last_success_ms) {
                    (_, Some(t)) => ago(now_ms, t),
                    (Some(_), None) => "never".to_owned(),
                    _ => "-".to_owned(),
                },
                opt(s.retries.map(|n| n.to_string())),
                opt(s.errors.map(|n| n.to_string())),
                opt(s.dead_lettered.map(|n| n.to_string())),
            ]
        })
        .collect();
    write_table(out, &head, &rows, &vec![None; rows.len()]);
}

/// Columns padded to their widest cell; a row's bar, if any, on the line below it.
fn write_table<const N: usize>(out: &mut String, head: &[&str; N], rows: &[[String; N]], bars: &[Option<String>]) {
    let mut widths = head.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, w) in cells.zip(widths) {
            let _ = write!(text, "{cell:<w$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(out, &mut head.iter().copied());
    for (row, bar) in rows.iter().zip(bars) {
        line(out, &mut row.iter().map(String::as_str));
        if let Some(bar) = bar {
            out.push_str(bar);
            out.push('\n');
        }
    }
}

/// `  [#########.........] 45%  1.2 MiB of 2.7 MiB` for a file still behind.
fn bar(f: &FileStatus) -> Option<String> {
    let (size, done) = (f.size?, f.committed_offset?);
    if done >= size || size == 0 {
        return None;
    }
    let fraction = done as f64 / size as f64;
    let filled = ((fraction * BAR_WIDTH as f64) as usize).min(BAR_WIDTH);
    Some(format!(
        "  [{}{}] {:>3}%  {} of {}",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled),
        (fraction * 100.0) as u32,
        bytes(done),
        bytes(size)
    ))
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".to_owned())
}

pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

pub(crate) fn seconds(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn ago(now_ms: u64, then_ms: u64) -> String {
    format!("{} ago", seconds(now_ms.saturating_sub(then_ms) as f64 / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::super::FileState;
    use super::*;

    #[test]
    fn a_file_behind_gets_a_bar_under_its_row() {
        let f = FileStatus {
            path: "/l/a.log".into(),
            source: "app".into(),
            format: "json".into(),
            state: FileState::Reading,
            reason: None,
            size: Some(4 << 20),
            read_offset: Some(3 << 20),
            committed_offset: Some(1 << 20),
            bytes_behind: Some(3 << 20),
            rate: Some(1048576.0),
            seconds_behind: Some(3.0),
            last_read_ms: Some(9_000),
        };
        let s = Status {
            agent: Agent::Running,
            at_ms: 10_000,
            files_shown: true,
            files: vec![
                f.clone(),
                FileStatus {
                    committed_offset: Some(4 << 20),
                    ..f
                },
            ],
            sinks: Vec::new(),
        };
        let text = table(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[3].starts_with("/l/a.log") && lines[3].contains("3.0 MiB"),
            "{text}"
        );
        assert!(lines[3].contains("3s") && lines[3].ends_with("1s ago"), "{text}");
        assert_eq!(
            lines[4],
            format!("  [{}{}]  25%  1.0 MiB of 4.0 MiB", "#".repeat(7), ".".repeat(23))
        );
        assert!(lines[5].starts_with("/l/a.log"), "no bar when caught up: {text}");
    }
}
