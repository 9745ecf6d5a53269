//! `[FILTER]`s → the `transforms` of the sources their `Match` selects: `grep` → `filter`,
//! `modify` and `record_modifier` → `fields`, `nest` (lift) → `fields`, `throttle` →
//! `throttle`. A filter is carried over only when the transform does what Fluent Bit's filter
//! does to every record it keeps; where it would not (a `modify` `Condition`, a nested record
//! accessor key, a regex the `regex` crate cannot compile), the whole filter becomes a "not
//! carried over" comment instead, because half a filter changes records Fluent Bit leaves alone.

use super::sinks::selected;
use super::sources::Source;
use super::write::{shown, where_, Table};
use super::{seconds, FluentBit, Section};

/// One transform as the ordered keys of its inline table (`type` first, as people write it).
pub(crate) type Transform = Vec<(String, toml::Value)>;

/// A filter carried over: its transform, and remarks on how it differs from Fluent Bit's.
struct Mapped {
    transform: Transform,
    remarks: Vec<String>,
}

/// Maps every filter onto the sources it matches, in the order of the filters; what cannot be
/// mapped is explained in `notes`.
pub(super) fn convert(fb: &FluentBit, sources: &mut [Source], notes: &mut Table) {
    for f in &fb.filters {
        let plugin = f.plugin();
        let mapped = match plugin.as_str() {
            "grep" => grep(f),
            "modify" => modify(f),
            "record_modifier" => record_modifier(f),
            "nest" => nest(f),
            "throttle" => throttle(f),
            other => Err(no_transform(other).to_owned()),
        };
        let mapped = match mapped {
            Ok(m) => m,
            Err(why) => {
                notes.note(format!("not carried over: [FILTER] {plugin} at {}: {why}", f.at()));
                for e in f.entries.iter().filter(|e| !e.key.eq_ignore_ascii_case("name")) {
                    notes.note(format!("    {} ({})", shown(e), where_(f, e)));
                }
                continue;
            }
        };
        let names: Vec<String> = selected(f, sources, notes, "it applies to every source")
            .iter()
            .map(|s| s.name.clone())
            .collect();
        if names.is_empty() {
            notes.note(format!(
                "not carried over: [FILTER] {plugin} at {}: its Match selects no tail input",
                f.at()
            ));
        }
        if plugin == "throttle" && names.len() > 1 {
            notes.note(format!(
                "[FILTER] throttle at {}: Fluent Bit counts the records of all {} matched inputs together; each source below has its own throttle at that rate",
                f.at(),
                names.len()
            ));
        }
        for s in sources.iter_mut().filter(|s| names.contains(&s.name)) {
            s.table.note(format!(
                "transforms[{}]: [FILTER] {plugin} at {}",
                s.transforms.len(),
                f.at()
            ));
            for r in &mapped.remarks {
                s.table.note(format!("    {r}"));
            }
            s.transforms.push(mapped.transform.clone());
        }
        notes.leftovers(f, &|_| Some("no tailship equivalent in this transform"));
    }
}

/// Why a filter plugin has no transform.
fn no_transform(plugin: &str) -> &'static str {
    match plugin {
        "lua" | "rewrite_tag" | "wasm" => "tailship has no such transform; records are shipped unchanged",
        "kubernetes" => {
            "tailship takes k8s.namespace.name, k8s.pod.name and k8s.container.name from the log file's path (no API calls); pod labels and annotations are not added"
        }
        "multiline" => "join lines in the source instead: its multiline table (preset or start)",
        "parser" => "parse in the source instead: its format",
        _ => "tailship has no such filter",
    }
}

/// A Fluent Bit record key as a condition's subject: `log` (the line as tail read it) and
/// `message` are the record's message; other keys are members of `fields`. A nested record
/// accessor (`$a['b']`) has no subject: conditions read top-level members only.
fn subject(key: &str) -> Result<String, String> {
    let name = key.strip_prefix('$').unwrap_or(key);
    if name.is_empty() || name.contains(['[', ']', '\'', '"']) {
        return Err(format!(
            "{key}: a nested key; tailship's conditions read top-level members of fields (lift the object first with a fields transform)"
        ));
    }
    Ok(match name {
        "log" | "message" => "message".to_owned(),
        "level" | "stream" => name.to_owned(),
        other => format!("fields.{other}"),
    })
}

/// A quoted string of the condition language: `\` and `"` escaped, the rest as written.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A `KEY REGEX` rule as a `=~` comparison.
fn rule(value: &str, remarks: &mut Vec<String>) -> Result<String, String> {
    let (key, re) = value
        .split_once(char::is_whitespace)
        .map(|(k, r)| (k, r.trim()))
        .ok_or_else(|| format!("{value:?}: not KEY REGEX"))?;
    let subject = subject(key)?;
    let re = if subject == "level" {
        remarks.push(format!(
            "{key}: tailship's level is one of trace, debug, info, warn, error, fatal (compared without case here): check that {re:?} matches those names"
        ));
        format!("(?i){re}")
    } else {
        re.to_owned()
    };
    regex::Regex::new(&re).map_err(|e| format!("{key} {re}: the regex crate cannot compile it: {e}"))?;
    Ok(format!("{subject} =~ {}", quoted(&re)))
}

/// `grep`: `Regex` rules keep, `Exclude` rules drop; `Logical_Op` joins them (legacy: every
/// Regex and no Exclude).
fn grep(f: &Section) -> Result<Mapped, String> {
    let mut remarks = Vec::new();
    let keep: Vec<String> = f
        .all("regex")
        .iter()
        .map(|v| rule(v, &mut remarks))
        .collect::<Result<_, _>>()?;
    let drop: Vec<String> = f
        .all("exclude")
        .iter()
        .map(|v| rule(v, &mut remarks))
        .collect::<Result<_, _>>()?;
    let op = f.get("logical_op").unwrap_or("legacy").to_ascii_lowercase();
    let (keep_op, drop_op) = match op.as_str() {
        "legacy" => (" and ", " or "),
        "and" => (" and ", " and "),
        "or" => (" or ", " or "),
        other => return Err(format!("Logical_Op {other}: not AND, OR or legacy")),
    };
    let (key, condition) = match (keep.is_empty(), drop.is_empty()) {
        (true, true) => return Err("it has no Regex or Exclude rule".into()),
        (false, true) => ("keep", keep.join(keep_op)),
        (true, false) => ("drop", drop.join(drop_op)),
        (false, false) if op == "legacy" => (
            "keep",
            format!("{} and not ({})", keep.join(" and "), drop.join(" or ")),
        ),
        (false, false) => {
            return Err("Logical_Op with both Regex and Exclude rules, which Fluent Bit refuses too".into())
        }
    };
    Ok(Mapped {
        transform: vec![("type".into(), "filter".into()), (key.into(), condition.into())],
        remarks,
    })
}

/// The edits of a `fields` transform, in the order rules name them.
#[derive(Default)]
struct Edits {
    lift: Vec<toml::Value>,
    rename: toml::Table,
    copy: toml::Table,
    drop: Vec<toml::Value>,
    set: toml::Table,
    add: toml::Table,
}

impl Edits {
    fn into_mapped(self, mut remarks: Vec<String>) -> Result<Mapped, String> {
        let mut t: Transform = vec![("type".into(), "fields".into())];
        let lists = [("lift", self.lift), ("drop", self.drop)];
        let tables = [
            ("rename", self.rename),
            ("copy", self.copy),
            ("set", self.set),
            ("add", self.add),
        ];
        let kinds =
            lists.iter().filter(|(_, l)| !l.is_empty()).count() + tables.iter().filter(|(_, m)| !m.is_empty()).count();
        if kinds == 0 {
            return Err("none of its rules is one tailship's fields transform has".into());
        }
        if kinds > 1 {
            remarks.push(
                "tailship applies lift, rename, copy, drop, set, add in that order, whatever the order of the rules"
                    .into(),
            );
        }
        for (k, l) in lists.into_iter().filter(|(_, l)| !l.is_empty()) {
            t.push((k.into(), toml::Value::Array(l)));
        }
        for (k, m) in tables.into_iter().filter(|(_, m)| !m.is_empty()) {
            t.push((k.into(), toml::Value::Table(m)));
        }
        Ok(Mapped { transform: t, remarks })
    }
}

/// `KEY VALUE` of a rule.
fn pair(rule: &str, value: &str) -> Result<(String, String), String> {
    value
        .split_once(char::is_whitespace)
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .filter(|(_, v)| !v.is_empty())
        .ok_or_else(|| format!("{rule} {value}: not KEY VALUE"))
}

/// Whether a rule's key is the line itself, which `fields` does not edit.
fn is_message(key: &str, rule: &str, remarks: &mut Vec<String>) -> bool {
    let yes = matches!(key, "log" | "message");
    if yes {
        remarks.push(format!(
            "not carried over: {rule} {key}: a fields transform edits members of fields, not the message"
        ));
    }
    yes
}

/// `modify`: `Set`, `Add`, `Remove`, `Rename`/`Hard_rename`, `Copy`/`Hard_copy`. A `Condition`
/// makes the filter conditional, which `fields` is not: then nothing is carried over.
fn modify(f: &Section) -> Result<Mapped, String> {
    if let Some(c) = f.entries.iter().find(|e| e.key.eq_ignore_ascii_case("condition")) {
        return Err(format!(
            "Condition {}: tailship's fields transform applies to every record, so this filter's rules would change records Fluent Bit leaves alone",
            c.value
        ));
    }
    let mut e = Edits::default();
    let mut remarks = Vec::new();
    for entry in &f.entries {
        let rule = entry.key.to_ascii_lowercase();
        let target = match rule.as_str() {
            "set" => &mut e.set,
            "add" => &mut e.add,
            "rename" | "hard_rename" => &mut e.rename,
            "copy" | "hard_copy" => &mut e.copy,
            "remove" => {
                f.consume(&rule);
                if !is_message(entry.value.trim(), &entry.key, &mut remarks) {
                    e.drop.push(entry.value.trim().into());
                }
                continue;
            }
            "remove_wildcard" | "remove_regex" | "move_to_start" | "move_to_end" => {
                f.consume(&rule);
                remarks.push(format!(
                    "not carried over: {} {}: list the fields to drop by name",
                    entry.key, entry.value
                ));
                continue;
            }
            _ => continue,
        };
        // Carried over or explained in a remark below: not a leftover.
        f.consume(&rule);
        let (k, v) = pair(&entry.key, &entry.value)?;
        if rule == "rename" || rule == "copy" {
            remarks.push(format!(
                "{} {k} {v}: where a field {v} exists, Fluent Bit leaves the record alone; tailship replaces it (as Hard_{rule} does)",
                entry.key
            ));
        }
        if !is_message(&k, &entry.key, &mut remarks) && !is_message(&v, &entry.key, &mut remarks) {
            target.insert(k, toml::Value::String(v));
        }
    }
    e.into_mapped(remarks)
}

/// `record_modifier`: `Record KEY VALUE` sets, `Remove_key` drops; an allowlist has no
/// counterpart.
fn record_modifier(f: &Section) -> Result<Mapped, String> {
    let mut e = Edits::default();
    let mut remarks = Vec::new();
    for value in f.all("record") {
        let (k, v) = pair("Record", value)?;
        if !is_message(&k, "Record", &mut remarks) {
            e.set.insert(k, toml::Value::String(v));
        }
    }
    for key in f.all("remove_key") {
        if !is_message(key.trim(), "Remove_key", &mut remarks) {
            e.drop.push(key.trim().into());
        }
    }
    for k in ["allowlist_key", "whitelist_key"] {
        for v in f.all(k) {
            remarks.push(format!(
                "not carried over: {k} {v}: tailship has no allowlist; drop the other fields by name"
            ));
        }
    }
    e.into_mapped(remarks)
}

/// `nest` with `Operation lift` and no prefix → `lift`.
fn nest(f: &Section) -> Result<Mapped, String> {
    let op = f.get("operation").unwrap_or("").to_ascii_lowercase();
    let under = f.get("nested_under");
    let prefixed = f.get("add_prefix").is_some() || f.get("remove_prefix").is_some();
    match (op.as_str(), under) {
        ("lift", Some(under)) if !prefixed => {
            let mut e = Edits::default();
            e.lift.push(under.trim().into());
            e.into_mapped(Vec::new())
        }
        ("lift", _) if prefixed => Err("Add_Prefix/Remove_Prefix: tailship's lift keeps the names as they are".into()),
        ("lift", None) => Err("Operation lift without Nested_under".into()),
        _ => Err(format!(
            "Operation {op}: tailship's fields transform lifts an object's members but does not nest fields"
        )),
    }
}

/// `throttle`: `Rate` records per `Interval` (averaged over `Window` intervals) → records per
/// second, rounded up.
fn throttle(f: &Section) -> Result<Mapped, String> {
    let rate: f64 = f
        .get("rate")
        .ok_or("it has no Rate")?
        .trim()
        .parse()
        .map_err(|_| "Rate is not a number".to_owned())?;
    let interval = match f.get("interval") {
        Some(i) => seconds(i).ok_or_else(|| format!("Interval {i}: not a duration"))?,
        None => 1.0,
    };
    if !(rate > 0.0 && interval > 0.0) {
        return Err("Rate and Interval must be above 0".into());
    }
    let per_second = (rate / interval).ceil() as i64;
    let mut remarks = vec![format!(
        "Rate {rate} per {interval} s = {per_second} records per second"
    )];
    if let Some(w) = f.get("window") {
        remarks.push(format!(
            "Window {w}: Fluent Bit averages the rate over Window intervals; tailship counts each whole second, so a burst Fluent Bit would let through is cut at the second's rate"
        ));
    }
    f.consume("print_status");
    Ok(Mapped {
        transform: vec![
            ("type".into(), "throttle".into()),
            ("rate".into(), per_second.max(1).into()),
        ],
        remarks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::Condition;

    #[test]
    fn rules_become_conditions_the_filter_parser_reads_back() {
        let mut remarks = Vec::new();
        let c = rule(r#"log ^.*\bDEBUG "x"$"#, &mut remarks).unwrap();
        assert_eq!(c, r#"message =~ "^.*\\bDEBUG \"x\"$""#);
        Condition::parse(&c).unwrap();
        assert_eq!(rule("$app web-.*", &mut remarks).unwrap(), r#"fields.app =~ "web-.*""#);
        assert_eq!(rule("level ^ERR", &mut remarks).unwrap(), r#"level =~ "(?i)^ERR""#);
        assert_eq!(remarks.len(), 1);
        assert!(rule("$kubernetes['labels']['app'] web", &mut remarks).is_err());
        assert!(rule("log (unclosed", &mut remarks).is_err());
        assert!(rule("log", &mut remarks).is_err());
    }
}
