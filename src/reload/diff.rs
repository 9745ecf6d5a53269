//! What a reload has to rebuild: the running settings compared with the new ones. Only one
//! case is rebuilt in part — some sinks' own settings changed (their address, batching,
//! headers, …) and nothing else — because only there the pieces around the rebuilt part stay
//! valid: the adapt workers render each source once in the shape of its first NDJSON sink and
//! share that rendering between sinks, and the checkpoint keeps one acknowledgement per sink
//! per file of the sources it reads. A change to those (a sink added, removed, renamed or
//! reordered, reading other sources, of another type, encoding or shape) or to a source, its
//! transforms or a global setting restarts the whole pipeline, as before.

use crate::config::Settings;
use crate::pipeline::writes_ndjson;

/// What a reload does.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The new settings are the running ones.
    Unchanged,
    /// Only these sinks (indexes, the same in both) changed, each keeping what the rest of
    /// the pipeline relies on: rebuild them alone.
    Sinks(Vec<usize>),
    /// Stop and start the whole pipeline; why, for the log.
    Whole(String),
}

/// Settings compared through their `Debug` text: they hold compiled regexes and shapes with
/// no `PartialEq`, and the text shows every value that makes a difference.
fn same<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

pub fn plan(old: &Settings, new: &Settings) -> Plan {
    if same(old, new) {
        return Plan::Unchanged;
    }
    if !same(&old.sources, &new.sources) {
        return Plan::Whole("a source or its transforms changed".into());
    }
    let without_sinks = |s: &Settings| Settings {
        sinks: Vec::new(),
        ..s.clone()
    };
    if !same(&without_sinks(old), &without_sinks(new)) {
        return Plan::Whole("a setting outside [[sources]] and [[sinks]] changed".into());
    }
    let names = |s: &Settings| s.sinks.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
    if names(old) != names(new) {
        return Plan::Whole("sinks were added, removed or reordered".into());
    }
    let mut changed = Vec::new();
    for (i, (a, b)) in old.sinks.iter().zip(&new.sinks).enumerate() {
        if same(a, b) {
            continue;
        }
        let why = if a.inputs != b.inputs {
            "reads other sources"
        } else if a.kind.type_name() != b.kind.type_name() {
            "changed its type"
        } else if writes_ndjson(a) != writes_ndjson(b) || (writes_ndjson(a) && a.shape != b.shape) {
            // The adapt workers render a source for its NDJSON sinks of one shape at once.
            "changed its encoding or shape"
        } else {
            changed.push(i);
            continue;
        };
        return Plan::Whole(format!("sink {} {why}", a.name));
    }
    Plan::Sinks(changed)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn settings(sink_b: &str, extra: &str) -> Settings {
        let text = format!(
            "data_dir = \"/tmp/d\"\n[metrics]\nenabled = false\n\
             [[sources]]\nname = \"app\"\ninclude = [\"/tmp/l/*.log\"]\n\
             [[sources]]\nname = \"web\"\ninclude = [\"/tmp/w/*.log\"]\n\
             [[sinks]]\nname = \"a\"\ntype = \"tcp\"\naddress = \"127.0.0.1:9\"\n\
             [[sinks]]\nname = \"b\"\n{sink_b}\n{extra}"
        );
        Settings::from_toml(Path::new("t.toml"), &text, &|_| None).unwrap()
    }

    const B: &str = "type = \"tcp\"\naddress = \"127.0.0.1:10\"\n";

    #[test]
    fn only_the_sinks_whose_own_settings_changed_are_rebuilt() {
        let old = settings(B, "");
        assert_eq!(plan(&old, &settings(B, "")), Plan::Unchanged);
        let moved = B.replace(":10", ":11");
        assert_eq!(plan(&old, &settings(&moved, "")), Plan::Sinks(vec![1]));
        let batched = format!("{B}batch = {{ max_events = 7 }}\n");
        assert_eq!(plan(&old, &settings(&batched, "")), Plan::Sinks(vec![1]));
    }

    #[test]
    fn what_the_rest_relies_on_restarts_everything() {
        let old = settings(B, "");
        let whole = |new: Settings| matches!(plan(&old, &new), Plan::Whole(_));
        assert!(whole(settings(&format!("{B}inputs = [\"app\"]\n"), "")), "inputs");
        assert!(whole(settings("type = \"stdout\"\n", "")), "type");
        assert!(whole(settings(&format!("{B}encoding = \"raw\"\n"), "")), "encoding");
        assert!(whole(settings(&format!("{B}shape = \"ecs\"\n"), "")), "shape");
        let third = "[[sinks]]\nname = \"c\"\ntype = \"stdout\"\n";
        assert!(whole(settings(B, third)), "a sink added");
        let mut source = old.clone();
        source.sources[1].include.push("/tmp/x/*.log".into());
        assert!(whole(source), "a source");
        let mut global = old.clone();
        global.max_inflight_bytes += 1;
        assert!(whole(global), "a global setting");
    }
}
