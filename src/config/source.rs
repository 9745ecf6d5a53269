//! A source's settings (`[[sources]]`): which files, in which format, joined how, and their
//! validation from the file's keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use globset::{GlobSet, GlobSetBuilder};

use super::file::{duration, MultilineFileConfig, SourceFileConfig};
use super::input::{self, InputSettings, SEGMENT_SUFFIX};
use super::{DEFAULT_MAX_LINE_BYTES, DEFAULT_PARTIAL_LINE_TIMEOUT};
use crate::adapt::multiline::Rule;
use crate::adapt::regex::{RegexError, RegexParser};
use crate::transform::Transforms;

#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub name: String,
    /// The include patterns as written (after `${VAR}` expansion), for discovery roots.
    pub include: Vec<String>,
    pub include_set: GlobSet,
    pub exclude_set: GlobSet,
    pub format: Format,
    pub read_from: ReadFrom,
    pub max_line_bytes: usize,
    pub partial_line_timeout: Duration,
    /// Joining continuation lines (stack traces) into the event that starts them.
    pub multiline: Option<MultilineSettings>,
    /// Static fields of every record of the source (global `[fields]` merged under the
    /// source's own), in key order.
    pub fields: Vec<(String, String)>,
    /// Derive `k8s.*` resource attributes from `/var/log/pods/<ns>_<pod>_<uid>/<container>/`
    /// paths (node mode; see `adapt::k8s_path`).
    pub kubernetes_path_metadata: bool,
    /// Which symbolic links found by the include globs are followed (`tail::admit`).
    pub follow_symlinks: FollowSymlinks,
    /// Directories a followed link may lead into besides the literal root of the glob that
    /// matched it (node mode: `/var/log/containers/*.log` links into `/var/log/pods`).
    pub symlink_roots: Vec<PathBuf>,
    /// Reject lines that break the format's RFC rather than salvage them with a
    /// `parse_warning` (only the `STRICT_FORMATS`).
    pub strict: bool,
    /// What runs on the source's records after adapt (`config::transform`): its own
    /// transforms, then the top-level ones naming it.
    pub transforms: Transforms,
    /// Its own transforms as written, for `validate --print`.
    pub written_transforms: Vec<toml::Table>,
    /// A network source: what it listens on. Its files are its spool's segments, read in the
    /// `json` format.
    pub input: Option<InputSettings>,
}

/// Which symbolic links a source follows. A link is "followed" when the file it finally leads
/// to (every link on the way resolved) is tailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowSymlinks {
    /// Only to a file under the literal root of the glob that matched the link (`/var/log` for
    /// `/var/log/**/*.log`) or under one of `symlink_roots`.
    WithinRoot,
    /// To any file (still never to one of the agent's own files).
    Any,
    /// Never: a link, or a path through a linked directory, is skipped.
    None,
}

/// How a source's lines are turned into records (see `adapt`).
#[derive(Debug, Clone)]
pub enum Format {
    Raw,
    Json,
    Logfmt,
    Cri,
    Docker,
    Syslog,
    Combined,
    Common,
    Klog,
    Regex(Arc<RegexParser>),
    /// Picked per file from its first lines (`adapt::detect`).
    Auto,
}

/// The formats that have a strict mode (`strict = true`).
pub const STRICT_FORMATS: [&str; 4] = ["syslog", "logfmt", "combined", "common"];

/// The format names `format =` takes, for messages.
pub const FORMAT_NAMES: &str = "raw, json, logfmt, cri, docker, syslog, combined, common, klog, regex, auto";

impl Format {
    /// The config name of the format.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Json => "json",
            Format::Logfmt => "logfmt",
            Format::Cri => "cri",
            Format::Docker => "docker",
            Format::Syslog => "syslog",
            Format::Combined => "combined",
            Format::Common => "common",
            Format::Klog => "klog",
            Format::Regex(_) => "regex",
            Format::Auto => "auto",
        }
    }
}

/// A source's `multiline` table, checked.
#[derive(Debug, Clone)]
pub struct MultilineSettings {
    pub rule: Rule,
    pub max_lines: usize,
    pub max_bytes: usize,
    /// The last event of a file that went quiet is shipped after this long.
    pub timeout: Duration,
}

/// Defaults of the `multiline` table.
pub const DEFAULT_MULTILINE_MAX_LINES: usize = 500;
pub const DEFAULT_MULTILINE_MAX_BYTES: usize = 1 << 20;
pub const DEFAULT_MULTILINE_TIMEOUT_MS: u64 = 1000;

/// Where to start in a file that is already there at the agent's first start and has no
/// checkpoint. Files created later are always read from their first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Beginning,
    End,
}

/// Validates every source; `global_fields` are the top-level `[fields]`. `node_mode`: the
/// agent has no pod identity of its own (no `POD_NAMESPACE`), so `kubernetes_metadata`
/// defaults to `"path"`; a sidecar's default is `"none"`.
pub(super) fn validate_all(
    sources: Vec<SourceFileConfig>,
    global_fields: &BTreeMap<String, String>,
    node_mode: bool,
    data_dir: &Path,
    problem: &mut dyn FnMut(String, String),
) -> Vec<SourceSettings> {
    if sources.is_empty() {
        problem("sources".into(), "at least one [[sources]] entry is needed".into());
    }
    let mut out: Vec<SourceSettings> = Vec::new();
    let mut transform_names = Vec::new();
    for (i, mut s) in sources.into_iter().enumerate() {
        let transforms = std::mem::take(&mut s.transforms);
        let mut settings = match s.kind.clone() {
            Some(kind) => network(i, &kind, s, global_fields, data_dir, problem),
            None => validate(i, s, global_fields, node_mode, problem),
        };
        let at = |k: &str| format!("sources[{i}].{k}");
        (settings.transforms, settings.written_transforms) =
            super::transform::validate_all(transforms, &settings.name, &at, &mut transform_names, problem);
        if out.iter().any(|o| o.name == settings.name) {
            problem(
                format!("sources[{i}].name"),
                format!("{:?} is used by two sources", settings.name),
            );
        }
        let spool = |s: &SourceSettings| s.input.as_ref().map(|n| n.spool.dir.clone());
        if spool(&settings).is_some() && out.iter().any(|o| spool(o) == spool(&settings)) {
            problem(
                format!("sources[{i}].name"),
                format!(
                    "{:?} shares its spool directory with another source: rename one",
                    settings.name
                ),
            );
        }
        out.push(settings);
    }
    out
}

/// Validates network source `i` (`type = "otlp"`, ...): its spool's segments are its files,
/// in the `json` format, read from their first byte.
fn network(
    i: usize,
    kind: &str,
    s: SourceFileConfig,
    global_fields: &BTreeMap<String, String>,
    data_dir: &Path,
    problem: &mut dyn FnMut(String, String),
) -> SourceSettings {
    let at = |k: &str| format!("sources[{i}].{k}");
    let name = s.name.clone().unwrap_or_else(|| format!("source{i}"));
    for key in input::file_keys(&s) {
        problem(
            at(key),
            format!("a source of type {kind:?} takes no {key}: its records come from the network"),
        );
    }
    let input = input::validate(kind, &name, &s, data_dir, &at, problem);
    let max_line_bytes = s.max_line_bytes.unwrap_or(DEFAULT_MAX_LINE_BYTES);
    if !(256..=64 << 20).contains(&max_line_bytes) {
        problem(
            at("max_line_bytes"),
            format!("{max_line_bytes} is out of range 256..=67108864"),
        );
    }
    let dir = input::spool_dir(data_dir, &name);
    let include = vec![format!("{}/*{SEGMENT_SUFFIX}", dir.display())];
    let include_set = build_globs(&include, &at("name"), problem);
    let mut fields = global_fields.clone();
    fields.extend(s.fields);
    SourceSettings {
        name,
        include,
        include_set,
        exclude_set: GlobSet::empty(),
        format: Format::Json,
        read_from: ReadFrom::Beginning,
        // Records are whole lines of the spool: a line longer than this is refused by the
        // input, never split by the tailer.
        max_line_bytes,
        // A line is written whole, so one without its newline is being written right now.
        partial_line_timeout: SPOOL_PARTIAL_LINE_TIMEOUT,
        multiline: None,
        fields: fields.into_iter().collect(),
        kubernetes_path_metadata: false,
        // The agent writes the spool itself: a link there is nobody's to follow.
        follow_symlinks: FollowSymlinks::None,
        symlink_roots: Vec::new(),
        strict: false,
        transforms: Transforms::default(),
        written_transforms: Vec::new(),
        input,
    }
}

/// A spool line is written with one `write`; the tailer waits this long for its newline.
const SPOOL_PARTIAL_LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// Validates source `i`.
fn validate(
    i: usize,
    s: SourceFileConfig,
    global_fields: &BTreeMap<String, String>,
    node_mode: bool,
    problem: &mut dyn FnMut(String, String),
) -> SourceSettings {
    let at = |k: &str| format!("sources[{i}].{k}");
    let name = s.name.clone().unwrap_or_else(|| format!("source{i}"));
    for key in input::network_keys(&s) {
        problem(at(key), "only a network source (with a type) takes it".into());
    }
    if s.include.is_empty() {
        problem(
            at("include"),
            "missing; list at least one glob, e.g. [\"/var/log/*.log\"]".into(),
        );
    }
    let include_set = build_globs(&s.include, &at("include"), problem);
    let exclude = s
        .exclude
        .clone()
        .unwrap_or_else(|| vec!["**/*.gz".into(), "**/*.zst".into(), "**/*.bz2".into(), "**/*.xz".into()]);
    let exclude_set = build_globs(&exclude, &at("exclude"), problem);
    let format = format(&s, &at, problem);
    if s.strict && !STRICT_FORMATS.contains(&s.format.as_deref().unwrap_or("raw")) {
        problem(
            at("strict"),
            format!("only these formats have a strict mode: {}", STRICT_FORMATS.join(", ")),
        );
    }
    let multiline = s.multiline.as_ref().and_then(|m| multiline(m, &at, problem));
    let mut fields = global_fields.clone();
    fields.extend(s.fields.clone());
    let kubernetes_path_metadata = kubernetes_metadata(&s, node_mode, &at, problem);
    let follow_symlinks = follow_symlinks(&s, &at, problem);
    let read_from = match s.read_from.as_deref().unwrap_or("beginning") {
        "beginning" => ReadFrom::Beginning,
        "end" => ReadFrom::End,
        other => {
            problem(at("read_from"), format!("{other:?} must be \"beginning\" or \"end\""));
            ReadFrom::Beginning
        }
    };
    let max_line_bytes = s.max_line_bytes.unwrap_or(DEFAULT_MAX_LINE_BYTES);
    if !(256..=64 << 20).contains(&max_line_bytes) {
        problem(
            at("max_line_bytes"),
            format!("{max_line_bytes} is out of range 256..=67108864"),
        );
    }
    let partial_line_timeout = duration(
        &at("partial_line_timeout"),
        &s.partial_line_timeout,
        DEFAULT_PARTIAL_LINE_TIMEOUT,
        problem,
    );
    SourceSettings {
        name,
        include: s.include,
        include_set,
        exclude_set,
        format,
        read_from,
        max_line_bytes,
        partial_line_timeout,
        multiline,
        fields: fields.into_iter().collect(),
        kubernetes_path_metadata,
        follow_symlinks,
        symlink_roots: s.symlink_roots,
        strict: s.strict,
        transforms: Transforms::default(),
        written_transforms: Vec::new(),
        input: None,
    }
}

/// Whether a file's path may name its pod (`kubernetes_metadata`): by default only in node mode.
fn kubernetes_metadata(
    s: &SourceFileConfig,
    node_mode: bool,
    at: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> bool {
    let default_metadata = if node_mode { "path" } else { "none" };
    match s.kubernetes_metadata.as_deref().unwrap_or(default_metadata) {
        "path" => true,
        "none" => false,
        other => {
            problem(
                at("kubernetes_metadata"),
                format!("{other:?} must be \"path\" or \"none\""),
            );
            false
        }
    }
}

/// `follow_symlinks`, with `symlink_roots` checked to be absolute.
fn follow_symlinks(
    s: &SourceFileConfig,
    at: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> FollowSymlinks {
    for (j, root) in s.symlink_roots.iter().enumerate() {
        if !root.is_absolute() {
            problem(
                at(&format!("symlink_roots[{j}]")),
                format!("{:?} must be an absolute directory", root.display().to_string()),
            );
        }
    }
    match s.follow_symlinks.as_deref().unwrap_or("within_root") {
        "within_root" => FollowSymlinks::WithinRoot,
        "any" => FollowSymlinks::Any,
        "none" => FollowSymlinks::None,
        other => {
            problem(
                at("follow_symlinks"),
                format!("{other:?} must be \"within_root\", \"any\" or \"none\""),
            );
            FollowSymlinks::WithinRoot
        }
    }
}

/// The source's `format` (with its `pattern` and `timestamp_format` for `regex`).
fn format(s: &SourceFileConfig, at: &dyn Fn(&str) -> String, problem: &mut dyn FnMut(String, String)) -> Format {
    let format = match s.format.as_deref().unwrap_or("raw") {
        "raw" => Format::Raw,
        "json" => Format::Json,
        "logfmt" => Format::Logfmt,
        "cri" => Format::Cri,
        "docker" => Format::Docker,
        "syslog" => Format::Syslog,
        "combined" => Format::Combined,
        "common" => Format::Common,
        "klog" => Format::Klog,
        "auto" => Format::Auto,
        "regex" => match &s.pattern {
            None => {
                problem(
                    at("pattern"),
                    "missing; the regex format needs a pattern with named captures".into(),
                );
                Format::Raw
            }
            Some(pattern) => match RegexParser::new(pattern, s.timestamp_format.as_deref()) {
                Ok(p) => Format::Regex(Arc::new(p)),
                Err(e) => {
                    let key = if matches!(e, RegexError::TimestampFormat(_)) {
                        "timestamp_format"
                    } else {
                        "pattern"
                    };
                    problem(at(key), e.to_string());
                    Format::Raw
                }
            },
        },
        other => {
            problem(
                at("format"),
                format!("{other:?} is not a known format; one of: {FORMAT_NAMES}"),
            );
            Format::Raw
        }
    };
    if !matches!(format, Format::Regex(_)) && s.format.as_deref() != Some("regex") {
        for (key, set) in [
            ("pattern", s.pattern.is_some()),
            ("timestamp_format", s.timestamp_format.is_some()),
        ] {
            if set {
                problem(at(key), "only the regex format takes it".into());
            }
        }
    }
    format
}

/// The source's `multiline` table.
fn multiline(
    m: &MultilineFileConfig,
    at: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> Option<MultilineSettings> {
    let given = [m.start.is_some(), m.continue_.is_some(), m.preset.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        problem(at("multiline"), "give one of start, continue or preset".into());
        return None;
    }
    let rule = match (&m.start, &m.continue_, &m.preset) {
        (Some(p), _, _) => Rule::start(p).map_err(|e| problem(at("multiline.start"), e.to_string())),
        (_, Some(p), _) => Rule::continuing(p).map_err(|e| problem(at("multiline.continue"), e.to_string())),
        (_, _, Some(p)) => Rule::preset(p).map_err(|e| problem(at("multiline.preset"), e.to_string())),
        (None, None, None) => {
            problem(
                at("multiline"),
                "needs start = \"<regex>\", continue = \"<regex>\" or preset = \"java\" | \"python\" | \"go\"".into(),
            );
            return None;
        }
    }
    .ok()?;
    let max_lines = m.max_lines.unwrap_or(DEFAULT_MULTILINE_MAX_LINES);
    let max_bytes = m.max_bytes.unwrap_or(DEFAULT_MULTILINE_MAX_BYTES);
    let timeout_ms = m.timeout_ms.unwrap_or(DEFAULT_MULTILINE_TIMEOUT_MS);
    if max_lines == 0 {
        problem(at("multiline.max_lines"), "must be at least 1".into());
    }
    if !(256..=64 << 20).contains(&max_bytes) {
        problem(
            at("multiline.max_bytes"),
            format!("{max_bytes} is out of range 256..=67108864"),
        );
    }
    if !(1..=3_600_000).contains(&timeout_ms) {
        problem(
            at("multiline.timeout_ms"),
            format!("{timeout_ms} is out of range 1..=3600000"),
        );
    }
    Some(MultilineSettings {
        rule,
        max_lines,
        max_bytes,
        timeout: Duration::from_millis(timeout_ms),
    })
}

fn build_globs(patterns: &[String], key: &str, problem: &mut dyn FnMut(String, String)) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for (j, p) in patterns.iter().enumerate() {
        // `literal_separator`: `*` stays inside one directory, `**` crosses them, as in a shell.
        match globset::GlobBuilder::new(p).literal_separator(true).build() {
            Ok(g) => {
                builder.add(g);
            }
            Err(e) => problem(format!("{key}[{j}]"), format!("{p:?} is not a valid glob: {e}")),
        }
    }
    builder.build().unwrap_or_else(|e| {
        problem(key.to_owned(), e.to_string());
        GlobSet::empty()
    })
}
