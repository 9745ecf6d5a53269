//! The reader of Fluent Bit's YAML format: `env`, `includes`, `service`, `pipeline` (`inputs`,
//! `filters`, `outputs`), `parsers` and `multiline_parsers`, into the shared section model.
//!
//! The YAML itself is parsed by `yaml-rust2` (a maintained, pure-Rust YAML 1.2 parser that
//! passes the YAML test suite; `serde_yaml` is unmaintained and `serde_yml` was withdrawn as
//! unsound). Its event API is used rather than its document tree because the events carry
//! line numbers, which the tree drops: every converted setting and every error names its line.

use std::path::Path;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::{read_into, substitute, ConvertError, FluentBit, Rule, Section};

/// A YAML node with the line it starts on. Scalars stay text: Fluent Bit reads every value as
/// a string, so `on`, `5` and `true` need no typing here.
#[derive(Debug, Clone)]
enum Node {
    Scalar(String, usize),
    List(Vec<Node>, usize),
    Map(Vec<(String, Node)>, usize),
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Scalar(_, l) | Node::List(_, l) | Node::Map(_, l) => *l,
        }
    }
}

/// Builds `Node`s from the parser's events. Aliases are resolved to a copy of their anchor.
#[derive(Default)]
struct Builder {
    stack: Vec<Node>,
    /// Keys of maps under construction, waiting for their value.
    keys: Vec<Option<String>>,
    anchors: Vec<(usize, Node)>,
    pending_anchor: Vec<usize>,
    root: Option<Node>,
    error: Option<(usize, String)>,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::MappingStart(anchor, _) => self.open(Node::Map(Vec::new(), line), anchor),
            Event::SequenceStart(anchor, _) => self.open(Node::List(Vec::new(), line), anchor),
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(node) = self.stack.pop() {
                    self.keys.pop();
                    let anchor = self.pending_anchor.pop().unwrap_or(0);
                    self.add(node, anchor);
                }
            }
            Event::Scalar(value, _, anchor, _) => self.add(Node::Scalar(value, line), anchor),
            Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                Some((_, node)) => self.add(node.clone(), 0),
                None => self.error = Some((line, "an alias to an unknown anchor".into())),
            },
            _ => {}
        }
    }
}

impl Builder {
    fn open(&mut self, node: Node, anchor: usize) {
        self.stack.push(node);
        self.keys.push(None);
        self.pending_anchor.push(anchor);
    }

    fn add(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root.get_or_insert(node);
            return;
        };
        match parent {
            Node::List(items, _) => items.push(node),
            Node::Map(entries, _) => {
                let key = self.keys.last_mut().expect("a key slot per open map");
                match key.take() {
                    Some(k) => entries.push((k, node)),
                    None => match node {
                        Node::Scalar(k, _) => *key = Some(k),
                        other => {
                            self.error = Some((other.line(), "a mapping key must be plain text".into()));
                        }
                    },
                }
            }
            Node::Scalar(..) => {}
        }
    }
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
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, false)
        .map_err(|e| error(e.marker().line(), e.info().to_owned()))?;
    if let Some((line, message)) = builder.error {
        return Err(error(line, message));
    }
    let root = match builder.root {
        None => return Ok(()),
        Some(Node::Map(entries, _)) => entries,
        Some(other) => {
            return Err(error(
                other.line(),
                "the top level must be a mapping (service:, pipeline:, …)".into(),
            ))
        }
    };
    // `env` first: Fluent Bit applies it to the whole file, wherever it stands.
    for (key, node) in root.iter().filter(|(k, _)| k.eq_ignore_ascii_case("env")) {
        for (k, v) in map(key, node).map_err(|(l, m)| error(l, m))? {
            let value = scalar(&k, &v).map_err(|(l, m)| error(l, m))?;
            vars.push((k, substitute(&value, vars)));
        }
    }
    for (key, node) in &root {
        let put = |list: &mut Vec<Section>| sections(path, key, node, vars, list).map_err(|(l, m)| error(l, m));
        match key.to_ascii_lowercase().as_str() {
            "env" => {}
            "service" => {
                let mut section = Section::new(path, node.line());
                fill(&mut section, key, node, vars).map_err(|(l, m)| error(l, m))?;
                fb.service.push(section);
            }
            "pipeline" => pipeline(path, key, node, vars, fb).map_err(|(l, m)| error(l, m))?,
            "parsers" => put(&mut fb.parsers)?,
            "multiline_parsers" => put(&mut fb.multiline_parsers)?,
            "includes" => {
                let Node::List(files, _) = node else {
                    return Err(error(node.line(), "includes: a list of files".into()));
                };
                let dir = path.parent().unwrap_or(Path::new("."));
                for f in files {
                    let name = scalar("includes", f).map_err(|(l, m)| error(l, m))?;
                    read_into(&dir.join(substitute(&name, vars)), fb, vars, depth + 1)?;
                }
            }
            _ => {
                let mut section = Section::new(path, node.line());
                section.push(key, "(a block)", node.line());
                fb.other.push((key.to_ascii_lowercase(), section));
            }
        }
    }
    Ok(())
}

type Located = (usize, String);

/// `pipeline:` — its `inputs`, `filters` and `outputs` lists.
fn pipeline(path: &Path, key: &str, node: &Node, vars: &[(String, String)], fb: &mut FluentBit) -> Result<(), Located> {
    for (sub, list) in map(key, node)? {
        let target = match sub.to_ascii_lowercase().as_str() {
            "inputs" => &mut fb.inputs,
            "filters" => &mut fb.filters,
            "outputs" => &mut fb.outputs,
            _ => return Err((list.line(), format!("pipeline.{sub}: one of inputs, filters, outputs"))),
        };
        sections(path, &sub, &list, vars, target)?;
    }
    Ok(())
}

fn map(key: &str, node: &Node) -> Result<Vec<(String, Node)>, Located> {
    match node {
        Node::Map(entries, _) => Ok(entries.clone()),
        Node::Scalar(s, _) if s.is_empty() || s == "~" || s == "null" => Ok(Vec::new()),
        other => Err((other.line(), format!("{key}: expected a mapping (key: value lines)"))),
    }
}

fn scalar(key: &str, node: &Node) -> Result<String, Located> {
    match node {
        Node::Scalar(s, _) => Ok(s.clone()),
        other => Err((other.line(), format!("{key}: expected a single value"))),
    }
}

/// A list of plugin or parser maps (`- name: tail` …) into sections.
fn sections(
    path: &Path,
    key: &str,
    node: &Node,
    vars: &[(String, String)],
    out: &mut Vec<Section>,
) -> Result<(), Located> {
    let Node::List(items, _) = node else {
        return Err((node.line(), format!("{key}: expected a list (- name: …)")));
    };
    for item in items {
        let mut section = Section::new(path, item.line());
        match item {
            // The early YAML form, `- tail: { path: … }`: the plugin name is the one key.
            Node::Map(entries, _) if entries.len() == 1 && matches!(entries[0].1, Node::Map(..)) => {
                let (name, body) = &entries[0];
                section.push("name", name, item.line());
                fill(&mut section, key, body, vars)?;
            }
            _ => fill(&mut section, key, item, vars)?,
        }
        out.push(section);
    }
    Ok(())
}

/// A map's scalar entries into `section`; a multiline parser's `rules` into its rules. Nested
/// blocks Fluent Bit has no classic form for (`processors`, …) are kept as one entry, so they
/// are reported as not carried over.
fn fill(section: &mut Section, key: &str, node: &Node, vars: &[(String, String)]) -> Result<(), Located> {
    for (k, v) in map(key, node)? {
        match &v {
            Node::Scalar(s, line) => section.push(&k, &substitute(s, vars), *line),
            Node::List(items, _) if k.eq_ignore_ascii_case("rules") => {
                for rule in items {
                    section.rules.push(rule_of(rule, vars)?);
                }
            }
            // A key that may repeat in the classic form (a grep's `regex`, a modify's `set`, an
            // output's `header`): one entry per item, as the repeated lines would be.
            Node::List(items, _) if repeats(&k) && items.iter().all(|i| matches!(i, Node::Scalar(..))) => {
                for item in items {
                    section.push(&k, &substitute(&scalar(&k, item)?, vars), item.line());
                }
            }
            // A list of plain values (`path: [a, b]`) reads as Fluent Bit's comma-separated form.
            Node::List(items, line) if items.iter().all(|i| matches!(i, Node::Scalar(..))) => {
                let joined: Vec<String> = items.iter().filter_map(|i| scalar(&k, i).ok()).collect();
                section.push(&k, &substitute(&joined.join(","), vars), *line);
            }
            other => section.push(&k, "(a nested block)", other.line()),
        }
    }
    Ok(())
}

/// Keys a classic section may hold several times, each line one more rule or value.
fn repeats(key: &str) -> bool {
    const KEYS: [&str; 15] = [
        "regex",
        "exclude",
        "set",
        "add",
        "remove",
        "rename",
        "hard_rename",
        "copy",
        "hard_copy",
        "record",
        "remove_key",
        "allowlist_key",
        "whitelist_key",
        "condition",
        "header",
    ];
    KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// `{ state: start_state, regex: '/…/', next_state: cont }`.
fn rule_of(node: &Node, vars: &[(String, String)]) -> Result<Rule, Located> {
    let entries = map("rules", node)?;
    let get = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| scalar(name, v))
            .transpose()
    };
    let (Some(state), Some(regex)) = (get("state")?, get("regex")?) else {
        return Err((node.line(), "a rule needs state: and regex:".into()));
    };
    let regex = substitute(&regex, vars);
    let regex = regex
        .strip_prefix('/')
        .and_then(|r| r.strip_suffix('/'))
        .unwrap_or(&regex)
        .to_owned();
    Ok(Rule {
        state,
        regex,
        line: node.line(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FluentBit, ConvertError> {
        let mut fb = FluentBit::default();
        read(Path::new("/nowhere/fluent-bit.yaml"), text, &mut fb, &mut Vec::new(), 0)?;
        Ok(fb)
    }

    #[test]
    fn pipeline_sections_with_lines_and_env() {
        let fb = parse(
            "env:\n  dir: /var/log\nservice:\n  flush: 1\npipeline:\n  inputs:\n    - name: tail\n      path: ${dir}/*.log\n      read_from_head: true\n  outputs:\n    - name: stdout\n      match: '*'\n",
        )
        .unwrap();
        assert_eq!(fb.inputs[0].get("Path"), Some("/var/log/*.log"));
        assert_eq!(fb.inputs[0].line, 7);
        assert_eq!(fb.inputs[0].entries[1].line, 8);
        assert_eq!(fb.outputs[0].get("match"), Some("*"));
        assert_eq!(fb.service[0].get("flush"), Some("1"));
    }

    #[test]
    fn multiline_parser_rules() {
        let fb = parse(
            "multiline_parsers:\n  - name: multiline-regex-test\n    type: regex\n    flush_timeout: 1000\n    rules:\n      - state: start_state\n        regex: '/([a-zA-Z]+ \\d+ \\d+\\:\\d+\\:\\d+)(.*)/'\n        next_state: cont\n      - state: cont\n        regex: '/^\\s+at.*/'\n        next_state: cont\n",
        )
        .unwrap();
        let rules = &fb.multiline_parsers[0].rules;
        assert_eq!(rules[0].regex, "([a-zA-Z]+ \\d+ \\d+\\:\\d+\\:\\d+)(.*)");
        assert_eq!(rules[1].state, "cont");
    }

    #[test]
    fn mistakes_name_their_line() {
        let cases = [
            ("pipeline:\n  inputs:\n    - name: tail\n   path: x\n", 4),
            ("pipeline:\n  inputs: tail\n", 2),
            ("pipeline:\n  outputz: []\n", 2),
            ("- a\n- b\n", 1),
            ("includes: x.yaml\n", 1),
        ];
        for (text, line) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(&format!("fluent-bit.yaml:{line}:")), "{text:?}: {err}");
        }
    }
}
