//! `tail` inputs → `[[sources]]`: paths, where to start, the parser (a tailship `format`) and
//! multiline joining, plus the per-input limits that are global in tailship
//! (`Mem_Buf_Limit` → `max_inflight_bytes`, `Refresh_Interval` → `rescan_interval`,
//! `Rotate_Wait` → `rotate_wait`).

use crate::adapt::multiline::Rule as JoinRule;
use crate::adapt::regex::RegexParser;

use super::filters::Transform;
use super::write::Table;
use super::{seconds, size, ConvertError, FluentBit, Section};

/// A converted `tail` input.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) name: String,
    /// The Fluent Bit tag its records carried (what outputs `Match`).
    pub(crate) tag: String,
    /// `file:line` of the input.
    pub(crate) at: String,
    pub(crate) table: Table,
    /// What the filters matching its tag became, in the filters' order.
    pub(crate) transforms: Vec<Transform>,
}

/// tailship's floor for `max_inflight_bytes`.
const MIN_INFLIGHT: usize = 64 << 10;

/// Why a `tail` key is not carried over, where there is more to say than "no equivalent".
fn tail_reason(key: &str) -> Option<&'static str> {
    Some(match key {
        "skip_long_lines" => "tailship never skips a long line: past max_line_bytes it is split into marked pieces",
        "buffer_chunk_size" => "tailship reads read_buffer_bytes (256 KiB) at a time",
        "path_key" => "every tailship record carries its file's path in `file`",
        "offset_key" => "tailship records carry no byte offset",
        "key" => "the line (or the parsed message) is the record's `message`",
        "ignore_older" => "tailship reads every matching file",
        "tag_regex" => "tailship has no tags; Kubernetes metadata comes from the path (kubernetes_metadata = \"path\")",
        "inotify_watcher" => "tailship always uses inotify, with a stat rescan every rescan_interval behind it",
        "exit_on_eof" => "tailship keeps following files",
        "docker_mode_flush" | "docker_mode_parser" => "the docker format joins partial lines itself",
        "parser_n" => "the first-line parser's pattern starts an event; other lines continue it",
        "storage.type" | "storage.pause_on_chunks_overlimit" => {
            "tailship buffers nothing but the checkpoint: unread lines wait in the file"
        }
        "threaded" => "tailship reads on its own thread always",
        "unicode.encoding" | "generic.encoding" => "tailship reads UTF-8 and marks invalid bytes",
        _ => return None,
    })
}

/// Converts every `tail` input; the global keys they imply go to `top`.
pub(super) fn convert(fb: &FluentBit, top: &mut Table) -> Result<Vec<Source>, ConvertError> {
    let mut out: Vec<Source> = Vec::new();
    let mut inflight: Option<usize> = None;
    let mut rescan: Option<f64> = None;
    let mut rotate_wait: Option<f64> = None;
    for (i, input) in fb.inputs.iter().enumerate() {
        if input.plugin() != "tail" {
            continue;
        }
        let mut t = Table::default();
        let given_tag = input.get("tag");
        let tag = given_tag.map(str::to_owned).unwrap_or_else(|| format!("tail.{i}"));
        let name = unique_name(input.get("alias").unwrap_or(&tag), &out);
        t.note(format!("[INPUT] tail at {}", input.at()));
        t.set("name", name.as_str());
        if given_tag.is_some() {
            t.note(format!(
                "Tag {tag}: tailship has no tags; the sinks below name this source in `inputs` where an output matched the tag"
            ));
        }
        paths(input, &mut t)?;
        start(input, &mut t);
        format_and_multiline(input, fb, &mut t);
        if let Some(v) = input.get("buffer_max_size").and_then(size) {
            t.set("max_line_bytes", v.clamp(256, 64 << 20) as i64);
        }
        if let Some(v) = input.get("mem_buf_limit").and_then(size) {
            inflight = Some(inflight.unwrap_or(0) + v);
        }
        if let Some(v) = input.get("refresh_interval").and_then(seconds) {
            rescan = Some(rescan.map_or(v, |r| r.min(v)));
        }
        if let Some(v) = input.get("rotate_wait").and_then(seconds) {
            rotate_wait = Some(rotate_wait.map_or(v, |r| r.max(v)));
        }
        if input.get("db").is_some() {
            for k in ["db.sync", "db.locking", "db.journal_mode", "db.compare_filename"] {
                input.consume(k);
            }
            t.note(
                "DB: tailship keeps its checkpoints (offset and identity of every file) in data_dir; \
                 Fluent Bit's offsets are not imported, so read_from decides where existing files start",
            );
        }
        t.leftovers(input, &tail_reason);
        out.push(Source {
            name,
            tag,
            at: input.at(),
            table: t,
            transforms: Vec::new(),
        });
    }
    globals(top, inflight, rescan, rotate_wait);
    Ok(out)
}

fn globals(top: &mut Table, inflight: Option<usize>, rescan: Option<f64>, rotate_wait: Option<f64>) {
    if let Some(v) = inflight {
        top.note(
            "Mem_Buf_Limit (summed over the tail inputs): tailship's one budget of bytes read but not yet \
             delivered; at the cap it stops reading (the lines wait in the files), it never drops",
        );
        top.set("max_inflight_bytes", v.max(MIN_INFLIGHT) as i64);
    }
    if let Some(v) = rescan {
        top.note(
            "Refresh_Interval (the smallest): tailship finds new files through inotify at once; this is its stat rescan behind it",
        );
        top.set(
            "rescan_interval",
            format!("{}ms", (v.max(0.01) * 1000.0).round() as u64),
        );
    }
    if let Some(v) = rotate_wait {
        top.note("Rotate_Wait (the largest)");
        top.set("rotate_wait", format!("{}ms", (v * 1000.0).round() as u64));
    }
}

/// A source name from the tag or alias: tags like `kube.*` lose their wildcard.
fn unique_name(wanted: &str, taken: &[Source]) -> String {
    let base: String = wanted
        .trim_end_matches('*')
        .trim_end_matches('.')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = if base.is_empty() { "tail".to_owned() } else { base };
    let mut name = base.clone();
    let mut n = 2;
    while taken.iter().any(|s| s.name == name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// `Path` and `Exclude_Path` (comma-separated) → `include` and `exclude`.
fn paths(input: &Section, t: &mut Table) -> Result<(), ConvertError> {
    let Some(path) = input.get("path") else {
        return Err(ConvertError::Syntax {
            path: input.file.clone(),
            line: input.line,
            message: "this tail input has no Path".into(),
        });
    };
    let include: Vec<toml::Value> = split(path).map(toml::Value::from).collect();
    t.set("include", toml::Value::Array(include));
    if let Some(exclude) = input.get("exclude_path") {
        // Fluent Bit matches an exclude pattern against the whole path, `*` crossing `/`;
        // tailship's globs keep `*` inside one directory, so a relative pattern gets `**/`.
        let mut patterns: Vec<toml::Value> = split(exclude)
            .map(|p| {
                if p.starts_with('/') || p.starts_with("**") {
                    p.to_owned()
                } else {
                    format!("**/{p}")
                }
            })
            .map(toml::Value::from)
            .collect();
        for default in ["**/*.gz", "**/*.zst", "**/*.bz2", "**/*.xz"] {
            if !patterns.iter().any(|p| p.as_str() == Some(default)) {
                patterns.push(default.into());
            }
        }
        t.note("Exclude_Path, with tailship's default exclusion of compressed files kept");
        t.set("exclude", toml::Value::Array(patterns));
    }
    if path.contains("/var/log/containers/") || path.contains("/var/log/pods/") {
        t.note("Kubernetes: k8s.namespace.name, k8s.pod.name and k8s.container.name come from these paths (kubernetes_metadata = \"path\", the default)");
    }
    if path.contains("/var/log/containers/") {
        // The kubelet's links there lead into /var/log/pods, outside the glob's root.
        t.note("/var/log/containers holds links into /var/log/pods, which follow_symlinks = \"within_root\" (the default) follows only into symlink_roots");
        t.set(
            "symlink_roots",
            toml::Value::Array(vec![toml::Value::from("/var/log/pods")]),
        );
    }
    Ok(())
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// `Read_from_Head` → `read_from`. The defaults differ (Fluent Bit: the end; tailship: the
/// beginning), so the value is always written.
fn start(input: &Section, t: &mut Table) {
    match input.flag("read_from_head") {
        Some(true) => t.set("read_from", "beginning"),
        Some(false) => t.set("read_from", "end"),
        None => {
            t.note("Read_from_Head was not set: Fluent Bit's default is to start existing files at their end (tailship's default is the beginning)");
            t.set("read_from", "end");
        }
    }
}

/// `Parser`, `multiline.parser`, and the old `Multiline`/`Parser_Firstline`/`Docker_Mode` keys.
fn format_and_multiline(input: &Section, fb: &FluentBit, t: &mut Table) {
    let mut format: Option<Format> = None;
    let mut join: Option<Join> = None;
    if let Some(list) = input.get("multiline.parser") {
        let names: Vec<String> = split(list).map(str::to_ascii_lowercase).collect();
        let docker = names.iter().any(|n| n == "docker");
        let cri = names.iter().any(|n| n == "cri");
        match (docker, cri) {
            (true, true) => {
                t.note("multiline.parser docker, cri: format \"auto\" tells the two apart per file, and both join the runtime's partial lines");
                format = Some(Format::named("auto"));
            }
            (true, false) => format = Some(Format::named("docker")),
            (false, true) => format = Some(Format::named("cri")),
            _ => {}
        }
        for name in names.iter().filter(|n| *n != "docker" && *n != "cri") {
            if join.is_some() {
                t.note(format!(
                    "not carried over: multiline.parser {name}: tailship joins with one rule per source"
                ));
                continue;
            }
            join = multiline_parser(name, fb, t);
        }
        if input.get("parser").is_some() {
            t.note("Parser is ignored by Fluent Bit when multiline.parser is set; so it is here");
        }
    } else if let Some(name) = input.get("parser") {
        format = Some(parser_format(name, fb, t));
    }
    if input.flag("docker_mode") == Some(true) && format.is_none() {
        t.note("Docker_Mode On: the docker format joins the runtime's partial lines");
        format = Some(Format::named("docker"));
    }
    if input.flag("multiline") == Some(true) {
        match input.get("parser_firstline").map(|n| (n, find(&fb.parsers, n))) {
            Some((_, Some(p))) if p.get("regex").is_some() => {
                let regex = p.get("regex").unwrap_or_default().to_owned();
                join = checked("start", &regex, t, "Parser_Firstline");
            }
            Some((name, _)) => t.note(format!(
                "not carried over: Multiline On with Parser_Firstline {name}: no regex parser of that name was read"
            )),
            None => t.note("not carried over: Multiline On without Parser_Firstline"),
        }
        if let (Some(j), Some(ms)) = (join.as_mut(), input.get("multiline_flush").and_then(seconds)) {
            j.timeout_ms = Some((ms * 1000.0).round().max(1.0) as u64);
        }
    }
    let format = format.unwrap_or_else(|| Format::named("raw"));
    t.set("format", format.name);
    if let Some(pattern) = format.pattern {
        t.set("pattern", pattern);
    }
    if let Some(tf) = format.timestamp_format {
        t.set("timestamp_format", tf);
    }
    if let Some(j) = join {
        t.set(&format!("multiline.{}", j.key), j.value);
        if let Some(ms) = j.timeout_ms {
            t.set("multiline.timeout_ms", ms.clamp(1, 3_600_000) as i64);
        }
    }
}

/// A tailship `format` with its `regex` keys.
struct Format {
    name: &'static str,
    pattern: Option<String>,
    timestamp_format: Option<String>,
}

impl Format {
    fn named(name: &'static str) -> Format {
        Format {
            name,
            pattern: None,
            timestamp_format: None,
        }
    }
}

/// A tailship `multiline` table: `preset`, `start` or `continue`, and its value.
struct Join {
    key: &'static str,
    value: String,
    timeout_ms: Option<u64>,
}

fn find<'a>(sections: &'a [Section], name: &str) -> Option<&'a Section> {
    sections.iter().rev().find(|s| {
        s.entries
            .iter()
            .any(|e| e.key.eq_ignore_ascii_case("name") && e.value.eq_ignore_ascii_case(name))
    })
}

/// The tailship format for Fluent Bit parser `name`: the parser read from a parsers file, or
/// Fluent Bit's stock parser of that name.
fn parser_format(name: &str, fb: &FluentBit, t: &mut Table) -> Format {
    let lower = name.to_ascii_lowercase();
    // The container runtimes' formats are tailship formats of their own, whatever regex or
    // JSON settings a parsers file gives them.
    if lower == "docker" || lower == "cri" || lower == "containerd" {
        t.note(format!(
            "Parser {name}: tailship's {} format",
            if lower == "docker" { "docker" } else { "cri" }
        ));
        return Format::named(if lower == "docker" { "docker" } else { "cri" });
    }
    let Some(p) = find(&fb.parsers, name) else {
        return stock_parser(name, &lower, t);
    };
    p.consume("name");
    let kind = p.get("format").unwrap_or("").to_ascii_lowercase();
    let format = match kind.as_str() {
        "json" => {
            if let Some(k) = p.get("time_key") {
                t.note(format!(
                    "Parser {name} Time_Key {k}: the json format reads the time from timestamp, time, ts or @timestamp"
                ));
            }
            p.consume("time_format");
            Format::named("json")
        }
        "logfmt" => Format::named("logfmt"),
        "regex" => regex_format(name, p, t),
        other => {
            t.note(format!(
                "not carried over: Parser {name} (Format {other}, {}): tailship has no such format; lines stay raw",
                p.at()
            ));
            Format::named("raw")
        }
    };
    t.leftovers(p, &|key| match key {
        "time_keep" => Some("tailship keeps the parsed fields and sets the record's timestamp"),
        "types" => Some("tailship keeps captured values as text"),
        "decode_field" | "decode_field_as" => Some("tailship has no decoders"),
        _ => None,
    });
    format
}

/// Fluent Bit's stock parsers (its `parsers.conf`) that have a tailship format.
fn stock_parser(name: &str, lower: &str, t: &mut Table) -> Format {
    let format = match lower {
        "json" => "json",
        "logfmt" => "logfmt",
        "apache" | "apache2" | "nginx" => "combined",
        "syslog-rfc5424" | "syslog-rfc3164" | "syslog-rfc3164-local" => "syslog",
        _ => {
            t.note(format!(
                "not carried over: Parser {name}: not in any parsers file read here and not a stock parser tailship knows; lines stay raw"
            ));
            return Format::named("raw");
        }
    };
    t.note(format!(
        "Parser {name}: not in a parsers file read here; taken as Fluent Bit's stock parser of that name"
    ));
    Format::named(format)
}

/// A `Format regex` parser → `format = "regex"`: the `Time_Key` capture is renamed
/// `timestamp` (the name tailship reads the time from) and `Time_Format` is kept when
/// tailship's time layouts accept it.
fn regex_format(name: &str, p: &Section, t: &mut Table) -> Format {
    let Some(regex) = p.get("regex") else {
        t.note(format!("not carried over: Parser {name} has no Regex; lines stay raw"));
        return Format::named("raw");
    };
    let mut pattern = regex.to_owned();
    if let Some(key) = p.get("time_key") {
        for open in ["(?<", "(?P<"] {
            pattern = pattern.replace(&format!("{open}{key}>"), "(?<timestamp>");
        }
    }
    let time_format = p.get("time_format").map(str::to_owned);
    let has_time = pattern.contains("(?<timestamp>") || pattern.contains("(?P<timestamp>");
    let time_format = time_format.filter(|_| has_time);
    match RegexParser::new(&pattern, time_format.as_deref()) {
        Ok(_) => Format {
            name: "regex",
            pattern: Some(pattern),
            timestamp_format: time_format,
        },
        Err(e) => match RegexParser::new(&pattern, None) {
            Ok(_) => {
                t.note(format!(
                    "not carried over: Parser {name} Time_Format: {e}; the time is read without it"
                ));
                Format {
                    name: "regex",
                    pattern: Some(pattern),
                    timestamp_format: None,
                }
            }
            Err(e) => {
                t.note(format!(
                    "not carried over: Parser {name} ({}): its Regex does not compile as a Rust regex ({e}); lines stay raw",
                    p.at()
                ));
                Format::named("raw")
            }
        },
    }
}

/// A `multiline.parser` name that is not a container runtime: a language preset, or a
/// `[MULTILINE_PARSER]` read from the config.
fn multiline_parser(name: &str, fb: &FluentBit, t: &mut Table) -> Option<Join> {
    if matches!(name, "java" | "python" | "go") {
        return Some(Join {
            key: "preset",
            value: name.to_owned(),
            timeout_ms: None,
        });
    }
    let Some(p) = find(&fb.multiline_parsers, name) else {
        t.note(format!(
            "not carried over: multiline.parser {name}: neither a preset tailship has (java, python, go) nor a [MULTILINE_PARSER] read here"
        ));
        return None;
    };
    p.consume("name");
    if let Some(kind) = p.get("type").filter(|k| !k.eq_ignore_ascii_case("regex")) {
        t.note(format!(
            "not carried over: multiline parser {name} of type {kind}: only regex rules convert"
        ));
        return None;
    }
    let Some(first) = p.rules.iter().find(|r| r.state.eq_ignore_ascii_case("start_state")) else {
        t.note(format!(
            "not carried over: multiline parser {name} has no start_state rule"
        ));
        return None;
    };
    // Fluent Bit: an event starts at a start_state line and goes on while lines match a
    // continuation rule; any other line stands alone. tailship's `continue` pattern says the
    // same (a line that does not continue begins an event), so the continuation rules are
    // what carries over; without them the start rule is all there is.
    let cont: Vec<&str> = p
        .rules
        .iter()
        .filter(|r| !r.state.eq_ignore_ascii_case("start_state"))
        .map(|r| r.regex.as_str())
        .collect();
    let what = format!("multiline parser {name} ({})", p.at());
    let mut join = if cont.is_empty() {
        checked("start", &first.regex, t, &what)?
    } else {
        let pattern = if cont.len() == 1 {
            cont[0].to_owned()
        } else {
            cont.iter().map(|r| format!("(?:{r})")).collect::<Vec<_>>().join("|")
        };
        t.note(format!(
            "{what}: lines matching its continuation rules continue an event, any other line begins one (its start_state rule, line {}, is implied)",
            first.line
        ));
        checked("continue", &pattern, t, &what)?
    };
    join.timeout_ms = p.get("flush_timeout").and_then(|v| v.trim().parse::<u64>().ok());
    t.leftovers(p, &|_| Some("tailship's multiline table has no such key"));
    Some(join)
}

/// A `start` or `continue` pattern that tailship's regex engine accepts, or a note saying why
/// not.
fn checked(key: &'static str, regex: &str, t: &mut Table, what: &str) -> Option<Join> {
    match JoinRule::start(regex) {
        Ok(_) => Some(Join {
            key,
            value: regex.to_owned(),
            timeout_ms: None,
        }),
        Err(e) => {
            t.note(format!("not carried over: {what}: {e}"));
            None
        }
    }
}
