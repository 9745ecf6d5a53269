//! The reader of Fluent Bit's classic `.conf` format: `[SECTION]` headers, indented `Key Value`
//! entries, full-line `#` comments, `@INCLUDE FILE` (with `*` wildcards) and `@SET KEY=VALUE`.
//!
//! Hand-written because no crate reads this format: it looks like INI but is not (keys and
//! values are split by spaces, not `=`; a key may repeat; entries must be indented, all of a
//! section alike; `@` commands sit between sections), and an INI crate would accept files
//! Fluent Bit rejects and reject ones it accepts. The format is small, so is this reader.

use std::path::{Path, PathBuf};

use super::{read_into, substitute, ConvertError, FluentBit, Rule, Section};

/// The section being filled: its kind (lower-case) and the indentation of its first entry,
/// which every other entry of it must share.
struct Open {
    kind: String,
    section: Section,
    indent: Option<(String, usize)>,
}

/// Reads `text` (the contents of `path`) into `fb`.
pub(super) fn read(
    path: &Path,
    text: &str,
    fb: &mut FluentBit,
    vars: &mut Vec<(String, String)>,
    depth: usize,
) -> Result<(), ConvertError> {
    let error = |line: usize, message: String| ConvertError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
    let mut open: Option<Open> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if !indented && trimmed.starts_with('@') {
            close(open.take(), fb);
            command(path, line_no, trimmed, fb, vars, depth)?;
        } else if !indented && trimmed.starts_with('[') {
            close(open.take(), fb);
            let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
                return Err(error(
                    line_no,
                    format!("{trimmed:?}: a section header is [NAME] alone on its line"),
                ));
            };
            open = Some(Open {
                kind: name.trim().to_ascii_lowercase(),
                section: Section::new(path, line_no),
                indent: None,
            });
        } else if !indented {
            return Err(error(
                line_no,
                format!("{trimmed:?}: entries must be indented under a [SECTION] header"),
            ));
        } else {
            let Some(o) = open.as_mut() else {
                return Err(error(line_no, format!("{trimmed:?}: an entry before any [SECTION]")));
            };
            entry(o, line, line_no, vars).map_err(|Message(m)| error(line_no, m))?;
        }
    }
    close(open, fb);
    Ok(())
}

/// Adds one indented line to the open section; an error is the message for
/// `ConvertError::Syntax`, which the caller gives its path and line.
fn entry(o: &mut Open, line: &str, line_no: usize, vars: &[(String, String)]) -> Result<(), Message> {
    let indent: String = line.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
    match &o.indent {
        None => o.indent = Some((indent, line_no)),
        Some((first, first_line)) if *first != indent => {
            return Err(Message(format!(
                "indented by {} where line {first_line} of the same section is indented by {} \
                 (Fluent Bit needs one indentation per section)",
                describe(&indent),
                describe(first)
            )))
        }
        Some(_) => {}
    }
    let body = line.trim();
    let (key, value) = match body.split_once([' ', '\t']) {
        Some((k, v)) => (k, v.trim()),
        None => return Err(Message(format!("key {body:?} has no value"))),
    };
    let value = substitute(value, vars);
    if o.kind == "multiline_parser" && key.eq_ignore_ascii_case("rule") {
        let rule = parse_rule(&value, line_no).ok_or_else(|| {
            Message(format!(
                "rule {value:?}: write it as \"state\" \"/regex/\" \"next_state\""
            ))
        })?;
        o.section.rules.push(rule);
    } else {
        o.section.push(key, &value, line_no);
    }
    Ok(())
}

/// What is wrong with one entry, in words (the line and path are the caller's).
struct Message(String);

fn describe(indent: &str) -> String {
    let tabs = indent.chars().filter(|c| *c == '\t').count();
    let spaces = indent.len() - tabs;
    match (spaces, tabs) {
        (s, 0) => format!("{s} space{}", if s == 1 { "" } else { "s" }),
        (0, t) => format!("{t} tab{}", if t == 1 { "" } else { "s" }),
        (s, t) => format!("{s} spaces and {t} tabs"),
    }
}

/// `"start_state" "/regex/" "cont"` → the rule. The regex may itself hold quotes, so the first
/// and last quoted words are taken and the regex is what lies between.
fn parse_rule(value: &str, line: usize) -> Option<Rule> {
    let v = value.trim();
    let rest = v.strip_prefix('"')?;
    let (state, rest) = rest.split_once('"')?;
    let rest = rest.trim().strip_suffix('"')?;
    let (middle, _next) = rest.rsplit_once('"')?;
    let regex = middle.trim().strip_prefix('"')?.strip_suffix('"')?.trim();
    let regex = regex.strip_prefix('/')?.strip_suffix('/')?;
    Some(Rule {
        state: state.to_owned(),
        regex: regex.to_owned(),
        line,
    })
}

fn close(open: Option<Open>, fb: &mut FluentBit) {
    let Some(o) = open else { return };
    match o.kind.as_str() {
        "service" => fb.service.push(o.section),
        "input" => fb.inputs.push(o.section),
        "filter" => fb.filters.push(o.section),
        "output" => fb.outputs.push(o.section),
        "parser" => fb.parsers.push(o.section),
        "multiline_parser" => fb.multiline_parsers.push(o.section),
        _ => fb.other.push((o.kind, o.section)),
    }
}

/// `@INCLUDE` and `@SET`.
fn command(
    path: &Path,
    line: usize,
    text: &str,
    fb: &mut FluentBit,
    vars: &mut Vec<(String, String)>,
    depth: usize,
) -> Result<(), ConvertError> {
    let error = |message: String| ConvertError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
    let (name, arg) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    let arg = arg.trim();
    match name.to_ascii_uppercase().as_str() {
        "@SET" => {
            let Some((k, v)) = arg.split_once('=') else {
                return Err(error(format!("{text:?}: write @SET KEY=VALUE")));
            };
            let v = substitute(v.trim(), vars);
            vars.push((k.trim().to_owned(), v));
            Ok(())
        }
        "@INCLUDE" if !arg.is_empty() => {
            let dir = path.parent().unwrap_or(Path::new("."));
            for file in include_files(&dir.join(substitute(arg, vars))).map_err(error)? {
                read_into(&file, fb, vars, depth + 1)?;
            }
            Ok(())
        }
        "@INCLUDE" => Err(error("@INCLUDE needs a file".into())),
        _ => Err(error(format!(
            "{name:?} is not a command Fluent Bit knows (@INCLUDE, @SET)"
        ))),
    }
}

/// The files an `@INCLUDE` names: the path itself, or the files its last part's wildcard
/// matches, in name order (so the result does not depend on the directory's order).
fn include_files(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?', '[']) {
        return Ok(vec![pattern.to_owned()]);
    }
    let glob = globset::Glob::new(&name)
        .map_err(|e| format!("@INCLUDE {name:?}: {e}"))?
        .compile_matcher();
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(dir).map_err(|e| format!("@INCLUDE: cannot list {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| glob.is_match(n)))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FluentBit, ConvertError> {
        let mut fb = FluentBit::default();
        read(Path::new("/nowhere/fluent-bit.conf"), text, &mut fb, &mut Vec::new(), 0)?;
        Ok(fb)
    }

    #[test]
    fn sections_entries_and_variables() {
        let fb = parse(
            "@SET dir=/var/log\n[SERVICE]\n    Flush 1\n\n[INPUT]\n    # a comment\n    Name  tail\n    Path  ${dir}/*.log\n[output]\n\tName stdout\n\tMatch *\n",
        )
        .unwrap();
        assert_eq!(fb.service.len(), 1);
        assert_eq!(fb.inputs[0].get("path"), Some("/var/log/*.log"));
        assert_eq!(fb.inputs[0].line, 5);
        assert_eq!(fb.outputs[0].get("MATCH"), Some("*"));
    }

    #[test]
    fn multiline_rules() {
        let fb = parse(
            "[MULTILINE_PARSER]\n    name multiline-regex-test\n    type regex\n    rule \"start_state\" \"/([a-zA-Z]+ \\d+ \\d+\\:\\d+\\:\\d+)(.*)/\" \"cont\"\n    rule \"cont\" \"/^\\s+at.*/\" \"cont\"\n",
        )
        .unwrap();
        let rules = &fb.multiline_parsers[0].rules;
        assert_eq!(rules[0].state, "start_state");
        assert_eq!(rules[0].regex, "([a-zA-Z]+ \\d+ \\d+\\:\\d+\\:\\d+)(.*)");
        assert_eq!(rules[1].regex, "^\\s+at.*");
    }

    #[test]
    fn mistakes_name_their_line() {
        let cases = [
            ("[INPUT]\nName tail\n", 2, "indented"),
            ("    Name tail\n", 1, "before any [SECTION]"),
            ("[INPUT]\n    Name tail\n  Path /x\n", 3, "line 2"),
            ("[INPUT]\n    Name\n", 2, "no value"),
            ("[INPUT\n", 1, "header"),
            ("@INCLUDE\n", 1, "needs a file"),
            ("@SET novalue\n", 1, "KEY=VALUE"),
            ("@FOO bar\n", 1, "@FOO"),
            ("[MULTILINE_PARSER]\n    rule start /x/ cont\n", 2, "rule"),
        ];
        for (text, line, what) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(&format!("fluent-bit.conf:{line}:")), "{text:?}: {err}");
            assert!(err.contains(what), "{text:?}: {what} missing from {err}");
        }
    }

    #[test]
    fn a_missing_include_names_the_file() {
        let err = parse("@INCLUDE inputs.conf\n").unwrap_err().to_string();
        assert!(err.contains("/nowhere/inputs.conf"), "{err}");
    }
}
