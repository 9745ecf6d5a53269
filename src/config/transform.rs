//! A source's `transforms = [...]`: the list as written, and its validation into the runtime
//! `transform::Transforms` (patterns compiled, conditions parsed, names checked) once, at
//! start. Each problem names its key, e.g. `sources[0].transforms[1].keep`.
//!
//! Transforms are written per source, or once as a top-level `[[transforms]]` with the
//! `inputs` (source names) it applies to. Either way they run on the adapt worker on one
//! source's records before the sinks get them, as one ordered list per source: the source's
//! own `transforms` first, then the top-level ones naming it in file order — so a shared
//! `redact` or `throttle` sees records as the source's own transforms left them, fields they
//! added included, and nothing a source adds escapes a redaction meant for every source. A
//! top-level transform is one transform however many sources it names: one `transform` label
//! on the drop counter, one `sample` count and one `throttle` window per key across them. It
//! is not a graph: a transform never feeds another one or only some sinks, which this seam
//! could not do.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::record::Level;
use crate::transform::{
    Condition, FieldEdits, Filter, KeyOf, Kind, Redact, RedactError, Replace, Sample, Step, Throttle, Transforms,
};

/// One transform as written; `type` says which. Written back as given by `validate --print`
/// (`written`): the runtime form keeps compiled patterns and parsed conditions, not their text.
#[derive(Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum TransformFileConfig {
    Filter {
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        keep: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        drop: Option<String>,
    },
    Fields {
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default)]
        lift: Vec<String>,
        #[serde(default)]
        rename: BTreeMap<String, String>,
        #[serde(default)]
        copy: BTreeMap<String, String>,
        #[serde(default)]
        drop: Vec<String>,
        #[serde(default)]
        set: BTreeMap<String, String>,
        #[serde(default)]
        add: BTreeMap<String, String>,
    },
    Redact {
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default)]
        presets: Vec<String>,
        #[serde(default)]
        patterns: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<bool>,
        #[serde(default)]
        fields: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mask: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        hash_key: Option<String>,
    },
    Sample {
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        rate: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        keep_level: Option<String>,
    },
    Throttle {
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        rate: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
}

/// A top-level `[[transforms]]` as `validate --print` shows it; what it does runs in the
/// transforms of the sources it names.
#[derive(Debug, Clone)]
pub struct SharedTransform {
    /// As written, less `inputs` (`written`).
    pub written: toml::Table,
    /// Indexes into `Settings::sources`.
    pub inputs: Vec<usize>,
}

/// A transform as written, for `validate --print`, its `hash_key` masked.
fn written(t: &TransformFileConfig) -> toml::Table {
    let mut table = toml::Table::try_from(t).unwrap_or_default();
    if let Some(key) = table.get_mut("hash_key") {
        *key = toml::Value::String(super::print::MASKED.into());
    }
    table
}

/// The mask when `redact` has neither `mask` nor `hash_key`.
pub const DEFAULT_MASK: &str = "[REDACTED]";

/// Validates source `source`'s list; `at(k)` names key `k` of the source. `names` are the
/// transform names taken so far (across sources: they label one metric).
pub(super) fn validate_all(
    list: Vec<TransformFileConfig>,
    source: &str,
    at: &dyn Fn(&str) -> String,
    names: &mut Vec<String>,
    problem: &mut dyn FnMut(String, String),
) -> (Transforms, Vec<toml::Table>) {
    let (mut steps, mut shown) = (Vec::new(), Vec::new());
    for (i, mut t) in list.into_iter().enumerate() {
        let key = |k: &str| at(&format!("transforms[{i}].{k}"));
        if inputs(&mut t).is_some() {
            let message = "only a top-level [[transforms]] names its inputs; a source's own transforms apply to it";
            problem(key("inputs"), message.into());
        }
        shown.push(written(&t));
        let kind_name = type_name(&t);
        let (name, kind) = validate(t, &key, problem);
        let name = name.unwrap_or_else(|| format!("{source}.{i}.{kind_name}"));
        if names.contains(&name) {
            problem(key("name"), format!("{name:?} is used by two transforms"));
        }
        names.push(name.clone());
        if let Some(kind) = kind {
            steps.push(Step::new(name, kind));
        }
    }
    (Transforms::new(steps), shown)
}

/// Validates the top-level `[[transforms]]` and appends each to the transforms of the sources
/// its `inputs` name (the module doc says why after their own). `names` are the transform
/// names the sources took.
pub(super) fn validate_shared(
    list: Vec<TransformFileConfig>,
    sources: &mut [super::SourceSettings],
    names: &mut Vec<String>,
    problem: &mut dyn FnMut(String, String),
) -> Vec<SharedTransform> {
    let mut shared = Vec::new();
    for (i, mut t) in list.into_iter().enumerate() {
        let key = |k: &str| format!("transforms[{i}].{k}");
        let mut reads = Vec::new();
        match inputs(&mut t) {
            Some(list) if !list.is_empty() => {
                for n in list {
                    match sources.iter().position(|s| s.name == n) {
                        Some(s) if !reads.contains(&s) => reads.push(s),
                        Some(_) => {}
                        None => problem(key("inputs"), format!("no source is named {n:?}")),
                    }
                }
            }
            _ => problem(
                key("inputs"),
                "name the sources it applies to: inputs = [\"<source>\", …]".into(),
            ),
        }
        let shown = written(&t);
        let kind_name = type_name(&t);
        let (name, kind) = validate(t, &key, problem);
        let name = name.unwrap_or_else(|| format!("transforms.{i}.{kind_name}"));
        if names.contains(&name) {
            problem(key("name"), format!("{name:?} is used by two transforms"));
        }
        names.push(name.clone());
        if let Some(kind) = kind {
            shared.push(SharedTransform {
                written: shown,
                inputs: reads.clone(),
            });
            let step = Arc::new(Step::new(name, kind));
            for s in reads {
                sources[s].transforms = sources[s].transforms.then(Arc::clone(&step));
            }
        }
    }
    shared
}

/// Takes a transform's `inputs` out of it.
fn inputs(t: &mut TransformFileConfig) -> Option<Vec<String>> {
    match t {
        TransformFileConfig::Filter { inputs, .. }
        | TransformFileConfig::Fields { inputs, .. }
        | TransformFileConfig::Redact { inputs, .. }
        | TransformFileConfig::Sample { inputs, .. }
        | TransformFileConfig::Throttle { inputs, .. } => inputs.take(),
    }
}

fn type_name(t: &TransformFileConfig) -> &'static str {
    match t {
        TransformFileConfig::Filter { .. } => "filter",
        TransformFileConfig::Fields { .. } => "fields",
        TransformFileConfig::Redact { .. } => "redact",
        TransformFileConfig::Sample { .. } => "sample",
        TransformFileConfig::Throttle { .. } => "throttle",
    }
}

/// One transform: its name if given, and what it does if it is valid.
fn validate(
    t: TransformFileConfig,
    key: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> (Option<String>, Option<Kind>) {
    match t {
        TransformFileConfig::Filter { name, keep, drop, .. } => (name, filter(keep, drop, key, problem)),
        TransformFileConfig::Fields {
            name,
            lift,
            rename,
            copy,
            drop,
            set,
            add,
            ..
        } => {
            let edits = FieldEdits {
                lift,
                rename: rename.into_iter().collect(),
                copy: copy.into_iter().collect(),
                drop,
                set: set.into_iter().collect(),
                add: add.into_iter().collect(),
            };
            let kind = edits.check().map_err(|e| problem(key("type"), e.to_string())).ok();
            (name, kind.map(Kind::Fields))
        }
        TransformFileConfig::Redact {
            name,
            presets,
            patterns,
            message,
            fields,
            mask,
            hash_key,
            ..
        } => {
            let lists = (presets, patterns, fields);
            (name, redact(lists, message, mask, hash_key, key, problem))
        }
        TransformFileConfig::Sample {
            name,
            rate,
            key: by,
            keep_level,
            ..
        } => {
            if rate == 0 {
                problem(key("rate"), "must be at least 1 (keep 1 in rate)".into());
            }
            let keep_level = match keep_level.as_deref().unwrap_or("warn") {
                "none" => None,
                l => level(l).or_else(|| {
                    let message = format!("{l:?} is not a level: trace, debug, info, warn, error, fatal or none");
                    problem(key("keep_level"), message);
                    None
                }),
            };
            let by = by_key(by, key, problem);
            (name, Some(Kind::Sample(Sample::new(rate, by, keep_level))))
        }
        TransformFileConfig::Throttle {
            name, rate, key: by, ..
        } => {
            if rate == 0 {
                problem(key("rate"), "must be at least 1 (records per second)".into());
            }
            let by = by_key(by, key, problem);
            (name, Some(Kind::Throttle(Throttle::new(rate, by))))
        }
    }
}

/// A `filter`: exactly one of `keep` and `drop`, a condition that parses.
fn filter(
    keep: Option<String>,
    drop: Option<String>,
    key: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> Option<Kind> {
    let (text, keep, k) = match (keep, drop) {
        (Some(c), None) => (c, true, "keep"),
        (None, Some(c)) => (c, false, "drop"),
        _ => {
            let message = "give one of keep = \"<condition>\" or drop = \"<condition>\"";
            problem(key("keep"), message.into());
            return None;
        }
    };
    let condition = Condition::parse(&text)
        .map_err(|e| problem(key(k), e.to_string()))
        .ok()?;
    Some(Kind::Filter(Filter { condition, keep }))
}

/// A `redact`: its patterns build, a mask or a long enough key.
fn redact(
    (presets, patterns, fields): (Vec<String>, Vec<String>, Vec<String>),
    message: Option<bool>,
    mask: Option<String>,
    hash_key: Option<String>,
    key: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> Option<Kind> {
    let replace = match (mask, hash_key) {
        (Some(_), Some(_)) => {
            problem(key("mask"), "give mask or hash_key, not both".into());
            return None;
        }
        (_, Some(k)) => Replace::Hash(k.into_bytes()),
        (m, None) => Replace::Mask(m.unwrap_or_else(|| DEFAULT_MASK.to_owned())),
    };
    let built = Redact::new(&presets, &patterns, message.unwrap_or(true), fields, replace);
    let r = built
        .map_err(|e| {
            let k = match &e {
                RedactError::Preset { .. } => "presets".to_owned(),
                RedactError::Pattern { index, .. } => format!("patterns[{index}]"),
                RedactError::ShortKey => "hash_key".to_owned(),
                RedactError::Build(_) | RedactError::Nothing => "patterns".to_owned(),
            };
            problem(key(&k), e.to_string());
        })
        .ok()?;
    Some(Kind::Redact(r))
}

fn by_key(by: Option<String>, key: &dyn Fn(&str) -> String, problem: &mut dyn FnMut(String, String)) -> Option<KeyOf> {
    let by = by?;
    let parsed = KeyOf::parse(&by);
    if parsed.is_none() {
        problem(key("key"), "name level, message, stream, file or fields.NAME".into());
    }
    parsed
}

fn level(name: &str) -> Option<Level> {
    Some(match name {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "info" => Level::Info,
        "warn" => Level::Warn,
        "error" => Level::Error,
        "fatal" => Level::Fatal,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use crate::config::Settings;

    fn load(transforms: &str) -> Result<Settings, String> {
        let text = format!(
            "data_dir = \"/tmp/x\"\n[[sources]]\nname = \"app\"\ninclude = [\"/l/*.log\"]\ntransforms = [\n{transforms}\n]\n[[sinks]]\ntype = \"stdout\"\n"
        );
        Settings::from_toml(Path::new("t.toml"), &text, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn a_list_of_every_kind_is_read_in_order_with_names() {
        let s = load(
            r#"{ type = "filter", drop = 'level < "info"' },
               { type = "fields", set = { env = "prod" } },
               { type = "redact", presets = ["email", "credit_card"], fields = ["user"] },
               { type = "sample", rate = 10, key = "fields.pod", name = "by-pod" },
               { type = "throttle", rate = 100 },"#,
        )
        .unwrap();
        let counters = s.sources[0].transforms.counters();
        let names: Vec<(&str, &str)> = counters.iter().map(|c| (c.transform.as_str(), c.reason)).collect();
        assert_eq!(
            names,
            vec![
                ("app.0.filter", "filtered"),
                ("by-pod", "sampled"),
                ("app.4.throttle", "throttled")
            ]
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        for (t, key) in [
            (r#"{ type = "filter" }"#, "sources[0].transforms[0].keep"),
            (
                r#"{ type = "filter", keep = 'level >= "loud"' }"#,
                "sources[0].transforms[0].keep",
            ),
            (
                r#"{ type = "filter", drop = 'message =~ "("' }"#,
                "sources[0].transforms[0].drop",
            ),
            (
                r#"{ type = "redact", presets = ["ssn"] }"#,
                "sources[0].transforms[0].presets",
            ),
            (
                r#"{ type = "redact", patterns = ["x", "("] }"#,
                "sources[0].transforms[0].patterns[1]",
            ),
            (
                r#"{ type = "redact", presets = ["email"], hash_key = "short" }"#,
                "sources[0].transforms[0].hash_key",
            ),
            (
                r#"{ type = "redact", presets = ["email"], mask = "x", hash_key = "0123456789abcdef0" }"#,
                "sources[0].transforms[0].mask",
            ),
            (r#"{ type = "sample", rate = 0 }"#, "sources[0].transforms[0].rate"),
            (
                r#"{ type = "sample", rate = 2, keep_level = "loud" }"#,
                "sources[0].transforms[0].keep_level",
            ),
            (
                r#"{ type = "throttle", rate = 5, key = "" }"#,
                "sources[0].transforms[0].key",
            ),
            (r#"{ type = "fields" }"#, "sources[0].transforms[0].type"),
            (
                r#"{ type = "throttle", rate = 1, name = "t" }, { type = "throttle", rate = 1, name = "t" }"#,
                "sources[0].transforms[1].name",
            ),
        ] {
            let err = load(t).unwrap_err();
            assert!(err.contains(key), "{t}: {key} missing from {err}");
        }
        for (t, word) in [
            (r#"{ type = "grep" }"#, "grep"),
            (r#"{ type = "filter", keep = 'level >= "info"', colour = 1 }"#, "colour"),
        ] {
            let err = load(t).unwrap_err();
            assert!(err.contains(word), "{t}: {err}");
        }
    }

    /// A config of sources `app` and `web`, `app` with its own `transforms`, then `rest`.
    fn shared(own: &str, rest: &str) -> Result<Settings, String> {
        let text = format!(
            "data_dir = \"/tmp/x\"\n[[sources]]\nname = \"app\"\ninclude = [\"/l/*.log\"]\ntransforms = [{own}]\n\
             [[sources]]\nname = \"web\"\ninclude = [\"/w/*.log\"]\n[[sinks]]\ntype = \"stdout\"\n{rest}"
        );
        Settings::from_toml(Path::new("t.toml"), &text, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn top_level_transforms_run_after_a_sources_own_on_the_sources_they_name() {
        let s = shared(
            r#"{ type = "filter", drop = 'level < "info"', name = "own" }"#,
            "[[transforms]]\nname = \"cap\"\ntype = \"throttle\"\nrate = 5\ninputs = [\"web\", \"app\"]\n\
             [[transforms]]\ntype = \"sample\"\nrate = 2\ninputs = [\"web\"]\n",
        )
        .unwrap();
        let names = |i: usize| s.sources[i].transforms.names().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(names(0), ["own", "cap"]);
        assert_eq!(names(1), ["cap", "transforms.1.sample"]);
        // One throttle across both sources: one counter series.
        let cap = |i: usize| {
            s.sources[i]
                .transforms
                .counters()
                .into_iter()
                .find(|c| c.transform == "cap")
                .unwrap()
        };
        assert!(Arc::ptr_eq(&cap(0).count, &cap(1).count));
        let printed = s.effective();
        assert!(
            printed.contains("[[transforms]]") && printed.contains("inputs = [\"web\", \"app\"]"),
            "{printed}"
        );
        let again =
            Settings::from_toml(Path::new("t.toml"), &printed, &|_| None).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(again.effective(), printed);
        let yaml = r#"
data_dir: /tmp/x
sources:
  - name: app
    include: ["/l/*.log"]
    transforms:
      - { type: filter, drop: 'level < "info"', name: own }
  - name: web
    include: ["/w/*.log"]
sinks:
  - type: stdout
transforms:
  - name: cap
    type: throttle
    rate: 5
    inputs: [web, app]
  - type: sample
    rate: 2
    inputs: [web]
"#;
        let from_yaml = Settings::parse(Path::new("t.yaml"), crate::config::Syntax::Yaml, yaml, &|_| None).unwrap();
        assert_eq!(from_yaml.effective(), printed);
    }

    #[test]
    fn a_top_level_transform_names_known_sources_with_line_and_column() {
        let rest = "[[transforms]]\ntype = \"sample\"\nrate = 2\ninputs = [\"web\", \"nope\"]\n";
        let err = shared("", rest).unwrap_err();
        assert!(
            err.contains("transforms[0].inputs (line 14, column 10)") && err.contains("no source is named \"nope\""),
            "{err}"
        );
        let err = shared("", "[[transforms]]\ntype = \"sample\"\nrate = 2\n").unwrap_err();
        assert!(err.contains("transforms[0].inputs"), "{err}");
        let err = shared(r#"{ type = "sample", rate = 2, inputs = ["web"] }"#, "").unwrap_err();
        assert!(err.contains("sources[0].transforms[0].inputs"), "{err}");
        let twice = "[[transforms]]\nname = \"x\"\ntype = \"sample\"\nrate = 2\ninputs = [\"web\"]\n";
        let err = shared(r#"{ type = "sample", rate = 2, name = "x" }"#, twice).unwrap_err();
        assert!(
            err.contains("transforms[0].name") && err.contains("used by two"),
            "{err}"
        );
    }

    #[test]
    fn the_hash_key_never_shows_in_a_message() {
        let err = load(r#"{ type = "redact", presets = ["ssn"], hash_key = "s3cret-s3cret-s3cret" }"#).unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
