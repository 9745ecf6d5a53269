//! `tailship convert`: reads a Fluent Bit config (classic `.conf` in `classic`, YAML in `yaml`)
//! into one neutral model — sections of case-insensitive key/value entries that remember their
//! file and line — and maps it onto a tailship TOML config (`sources` for `tail` inputs and
//! their parsers, `sinks` for outputs, `write` for the commented TOML). Every setting the
//! mapping does not consume is written back as a comment saying why, so nothing is dropped
//! unseen. The two readers share the model so the mapping is written once.

use std::cell::Cell;
use std::path::{Path, PathBuf};

mod classic;
#[cfg(test)]
mod edge_tests;
mod filters;
mod service;
mod sinks;
mod sources;
mod write;
mod yaml;

/// Why a Fluent Bit config could not be read. Each variant names the file (and the line where
/// one is known), so the user can go straight to it.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: @INCLUDE/includes nest deeper than {MAX_INCLUDE_DEPTH} files (a loop?)")]
    IncludeDepth { path: PathBuf },
    #[error("{path}: no `tail` input to convert: tailship reads log files, and this config has no input named tail")]
    NoTailInput { path: PathBuf },
}

/// Includes deeper than this are taken for a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// One `key value` setting as written, with the line it is on.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The key as written (keys are compared without case).
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) line: usize,
    /// Set when the mapping carried this entry over (or explained it); the rest become
    /// "not carried over" comments.
    used: Cell<bool>,
}

/// One rule of a multiline parser: in `state`, a line matching `regex` moves to `next`.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) state: String,
    pub(crate) regex: String,
    pub(crate) line: usize,
}

/// A section (`[INPUT]`, a YAML `inputs` item, …): its entries in order.
#[derive(Debug)]
pub(crate) struct Section {
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
    pub(crate) entries: Vec<Entry>,
    /// The `rule` lines of a multiline parser.
    pub(crate) rules: Vec<Rule>,
}

impl Section {
    pub(crate) fn new(file: &Path, line: usize) -> Section {
        Section {
            file: file.to_owned(),
            line,
            entries: Vec::new(),
            rules: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, key: &str, value: &str, line: usize) {
        self.entries.push(Entry {
            key: key.to_owned(),
            value: value.to_owned(),
            line,
            used: Cell::new(false),
        });
    }

    /// The last value of `key` (Fluent Bit lets a later line win), marked as used along with
    /// the lines it overrides.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.all(key).pop()
    }

    /// Every value of a key that may repeat (`Header`, `Parsers_File`), marked as used.
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|e| e.key.eq_ignore_ascii_case(key))
            .map(|e| {
                e.used.set(true);
                e.value.as_str()
            })
            .collect()
    }

    /// A Fluent Bit boolean (`on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0`); `None` when
    /// unset or not a boolean (then the entry stays unused and is reported).
    pub(crate) fn flag(&self, key: &str) -> Option<bool> {
        let value = self.get(key)?;
        let parsed = match value.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => Some(true),
            "off" | "false" | "no" | "0" => Some(false),
            _ => None,
        };
        if parsed.is_none() {
            self.unuse(key);
        }
        parsed
    }

    /// Marks `key` as consumed without reading it (it is explained by a comment elsewhere).
    pub(crate) fn consume(&self, key: &str) {
        self.all(key);
    }

    fn unuse(&self, key: &str) {
        for e in self.entries.iter().filter(|e| e.key.eq_ignore_ascii_case(key)) {
            e.used.set(false);
        }
    }

    /// The plugin name (`Name`), lower-cased.
    pub(crate) fn plugin(&self) -> String {
        self.get("name").unwrap_or("").to_ascii_lowercase()
    }

    /// The entries nothing consumed.
    pub(crate) fn unused(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.used.get())
    }

    /// `file:line` of the section, for comments.
    pub(crate) fn at(&self) -> String {
        format!("{}:{}", file_name(&self.file), self.line)
    }
}

/// A whole Fluent Bit configuration, includes and parsers files read.
#[derive(Debug, Default)]
pub(crate) struct FluentBit {
    pub(crate) service: Vec<Section>,
    pub(crate) inputs: Vec<Section>,
    pub(crate) filters: Vec<Section>,
    pub(crate) outputs: Vec<Section>,
    pub(crate) parsers: Vec<Section>,
    pub(crate) multiline_parsers: Vec<Section>,
    /// Sections of kinds tailship has no counterpart for (`[PLUGINS]`, `upstream_servers`, …):
    /// their kind and where they are.
    pub(crate) other: Vec<(String, Section)>,
    /// Parsers files that were named but could not be found (the stock `parsers.conf` is often
    /// not next to a config copied out of a cluster).
    pub(crate) missing_parsers_files: Vec<PathBuf>,
}

/// Reads the Fluent Bit config at `path` (YAML for `.yaml`/`.yml`, classic otherwise) and
/// returns the equivalent tailship config as commented TOML.
pub fn convert(path: &Path) -> Result<String, ConvertError> {
    let mut fb = FluentBit::default();
    read_into(path, &mut fb, &mut Vec::new(), 0)?;
    read_parsers_files(path, &mut fb)?;
    if !fb.inputs.iter().any(|i| i.plugin() == "tail") {
        return Err(ConvertError::NoTailInput { path: path.to_owned() });
    }
    write::document(path, &fb)
}

/// Reads one file (the main config or an include) into `fb`; `vars` are the `@SET` / `env`
/// variables seen so far, which later files see too.
pub(crate) fn read_into(
    path: &Path,
    fb: &mut FluentBit,
    vars: &mut Vec<(String, String)>,
    depth: usize,
) -> Result<(), ConvertError> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(ConvertError::IncludeDepth { path: path.to_owned() });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConvertError::Read {
        path: path.to_owned(),
        source,
    })?;
    if is_yaml(path) {
        yaml::read(path, &text, fb, vars, depth)
    } else {
        classic::read(path, &text, fb, vars, depth)
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("yaml" | "yml")
    )
}

/// Reads the `parsers_file`s the service names, relative to the main config's directory.
fn read_parsers_files(main: &Path, fb: &mut FluentBit) -> Result<(), ConvertError> {
    let dir = main.parent().unwrap_or(Path::new("."));
    let files: Vec<PathBuf> = fb
        .service
        .iter()
        .flat_map(|s| s.all("parsers_file"))
        .map(|f| dir.join(f))
        .collect();
    for file in files {
        if !file.exists() {
            fb.missing_parsers_files.push(file);
            continue;
        }
        // A parsers file declares parsers only; its own @SET variables stay its own.
        read_into(&file, fb, &mut Vec::new(), 1)?;
    }
    Ok(())
}

/// Replaces `${NAME}` by the value of a variable set in the config (`@SET`, `env:`). Names the
/// config does not set are left as they are: tailship expands `${NAME}` from the environment
/// when it loads its config, as Fluent Bit did.
pub(crate) fn substitute(value: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match vars.iter().rev().find(|(k, _)| k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The last part of a path, for short `file:line` references.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A Fluent Bit size (`32k`, `5MB`, `1G`; decimal units, as Fluent Bit defines them) in bytes.
pub(crate) fn size(text: &str) -> Option<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 0.0 && bytes < usize::MAX as f64).then_some(bytes as usize)
}

/// A Fluent Bit time in seconds (`5`, `1.5`, or with an `s`/`m`/`h` suffix as some keys take).
pub(crate) fn seconds(text: &str) -> Option<f64> {
    let t = text.trim().to_ascii_lowercase();
    let (number, factor) = match t.as_bytes().last()? {
        b's' => (&t[..t.len() - 1], 1.0),
        b'm' => (&t[..t.len() - 1], 60.0),
        b'h' => (&t[..t.len() - 1], 3600.0),
        _ => (t.as_str(), 1.0),
    };
    let v: f64 = number.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_decimal_as_fluent_bit_defines_them() {
        assert_eq!(size("32k"), Some(32_000));
        assert_eq!(size("5MB"), Some(5_000_000));
        assert_eq!(size("1G"), Some(1_000_000_000));
        assert_eq!(size("4096"), Some(4096));
        assert_eq!(size("lots"), None);
        assert_eq!(size("5 TB"), None);
    }

    #[test]
    fn seconds_take_plain_and_suffixed_numbers() {
        assert_eq!(seconds("10"), Some(10.0));
        assert_eq!(seconds("0.5"), Some(0.5));
        assert_eq!(seconds("2m"), Some(120.0));
        assert_eq!(seconds("soon"), None);
    }

    #[test]
    fn variables_set_in_the_config_are_replaced_and_others_kept() {
        let vars = vec![("MY_TOPIC".to_owned(), "app".to_owned())];
        assert_eq!(substitute("/var/log/${MY_TOPIC}/*.log", &vars), "/var/log/app/*.log");
        assert_eq!(substitute("${HOME}/x", &vars), "${HOME}/x");
        assert_eq!(substitute("a ${open", &vars), "a ${open");
    }

    #[test]
    fn keys_are_case_insensitive_and_the_last_one_wins() {
        let mut s = Section::new(Path::new("x.conf"), 1);
        s.push("Path", "/a", 2);
        s.push("PATH", "/b", 3);
        s.push("Read_From_Head", "On", 4);
        s.push("Skip_Long_Lines", "maybe", 5);
        assert_eq!(s.get("path"), Some("/b"));
        assert_eq!(s.flag("read_from_head"), Some(true));
        assert_eq!(s.flag("skip_long_lines"), None);
        let unused: Vec<_> = s.unused().map(|e| e.key.as_str()).collect();
        assert_eq!(unused, ["Skip_Long_Lines"]);
    }
}
