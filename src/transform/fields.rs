//! `fields`: edits the top-level members of a record's `fields` — lift a nested object's
//! members up, rename, copy, drop, set, and add (only where the key is absent). They run in
//! that order whatever the order of the keys in the config (a TOML table has none); `${VAR}`
//! in a value was expanded when the config was read.
//!
//! A record's new member list is appended to the table and the record pointed at it; the old
//! list stays in the table unused until the batch is dropped (cheaper than moving every other
//! record's fields).

use super::edit::{bytes, parts};
use crate::record::{Field, Records, Table, Text, Value};

/// A `fields` transform whose settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FieldsError {
    #[error("{key:?}: a field name cannot be empty")]
    EmptyName { key: String },
    #[error("nothing to do: give at least one of lift, rename, copy, drop, set, add")]
    Nothing,
}

/// The edits, each list in config key order.
#[derive(Debug, Default)]
pub struct FieldEdits {
    pub lift: Vec<String>,
    pub rename: Vec<(String, String)>,
    pub copy: Vec<(String, String)>,
    pub drop: Vec<String>,
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
}

impl FieldEdits {
    /// Checks the names.
    pub fn check(self) -> Result<FieldEdits, FieldsError> {
        let names = self
            .lift
            .iter()
            .chain(&self.drop)
            .chain(self.rename.iter().chain(&self.copy).flat_map(|(a, b)| [a, b]))
            .chain(self.set.iter().chain(&self.add).map(|(k, _)| k));
        if let Some(n) = names.into_iter().find(|n| n.is_empty()) {
            return Err(FieldsError::EmptyName { key: n.clone() });
        }
        let total =
            self.lift.len() + self.rename.len() + self.copy.len() + self.drop.len() + self.set.len() + self.add.len();
        if total == 0 {
            return Err(FieldsError::Nothing);
        }
        Ok(self)
    }

    pub fn apply(&self, records: &mut Records) {
        if records.is_empty() {
            return;
        }
        let (data, t) = parts(records);
        // The names and values this transform writes, copied into the arena once per batch.
        let pair = |t: &mut Table, (k, v): &(String, String)| (t.push_text(k), Value::Str(t.push_text(v)));
        let set: Vec<(Text, Value)> = self.set.iter().map(|p| pair(t, p)).collect();
        let add: Vec<(Text, Value)> = self.add.iter().map(|p| pair(t, p)).collect();
        let targets = |t: &mut Table, list: &[(String, String)]| -> Vec<Text> {
            list.iter().map(|(_, to)| t.push_text(to)).collect()
        };
        let renamed = targets(t, &self.rename);
        let copied = targets(t, &self.copy);
        for i in 0..t.records.len() {
            let (start, len) = t.records[i].fields;
            let mut list: Vec<Field> = t
                .fields
                .get(start as usize..(start + len) as usize)
                .unwrap_or(&[])
                .to_vec();
            for name in &self.lift {
                lift(data, t, &mut list, name);
            }
            for ((from, to), to_text) in self.rename.iter().zip(&renamed) {
                if let Some(at) = find(data, t, &list, from) {
                    let value = list.remove(at).value;
                    remove(data, t, &mut list, to);
                    list.push(Field { key: *to_text, value });
                }
            }
            for ((from, to), to_text) in self.copy.iter().zip(&copied) {
                if let Some(at) = find(data, t, &list, from) {
                    let value = list[at].value;
                    remove(data, t, &mut list, to);
                    list.push(Field { key: *to_text, value });
                }
            }
            for name in &self.drop {
                remove(data, t, &mut list, name);
            }
            for ((name, _), (key, value)) in self.set.iter().zip(&set) {
                remove(data, t, &mut list, name);
                list.push(Field {
                    key: *key,
                    value: *value,
                });
            }
            for ((name, _), (key, value)) in self.add.iter().zip(&add) {
                if find(data, t, &list, name).is_none() {
                    list.push(Field {
                        key: *key,
                        value: *value,
                    });
                }
            }
            let at = t.fields.len() as u32;
            let n = list.len() as u32;
            t.fields.extend(list);
            t.records[i].fields = (at, n);
        }
    }
}

fn find(data: &[u8], t: &Table, list: &[Field], name: &str) -> Option<usize> {
    list.iter().position(|f| bytes(data, t, f.key) == name.as_bytes())
}

fn remove(data: &[u8], t: &Table, list: &mut Vec<Field>, name: &str) {
    list.retain(|f| bytes(data, t, f.key) != name.as_bytes());
}

/// Replaces the member `name` by its own members when it is an object (a nested map, or JSON
/// text holding an object); a member of the same name already there gives way.
fn lift(data: &[u8], t: &mut Table, list: &mut Vec<Field>, name: &str) {
    let Some(at) = find(data, t, list, name) else { return };
    let members: Vec<Field> = match list[at].value {
        Value::Map { start, len } => t
            .fields
            .get(start as usize..(start + len) as usize)
            .unwrap_or(&[])
            .to_vec(),
        Value::Json(text) => {
            let parsed = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes(data, t, text));
            let Ok(map) = parsed else { return };
            map.iter()
                .map(|(k, v)| {
                    let key = t.push_text(k);
                    let value = match v {
                        serde_json::Value::String(s) => Value::Str(t.push_text(s)),
                        other => Value::Json(t.push_text(&other.to_string())),
                    };
                    Field { key, value }
                })
                .collect()
        }
        _ => return,
    };
    list.remove(at);
    for m in members {
        let key = bytes(data, t, m.key).to_vec();
        list.retain(|f| bytes(data, t, f.key) != key.as_slice());
        list.push(m);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::testing::{context, records, Rec};

    fn edited(fields: serde_json::Value, edits: FieldEdits) -> serde_json::Value {
        let r = records(
            context("/l/a.log", "x:", &[], &[]),
            vec![Rec {
                message: Some("m"),
                fields: Some(fields),
                ..Default::default()
            }],
        );
        let mut r = std::sync::Arc::try_unwrap(r).unwrap();
        edits.check().unwrap().apply(&mut r);
        let rec = r.record_at(0).unwrap().0;
        let mut out = serde_json::Map::new();
        for f in rec.fields() {
            let v = match f.value {
                crate::record::ValueRef::Str(s) => json!(s),
                crate::record::ValueRef::Int(n) => json!(n),
                crate::record::ValueRef::Json(j) => serde_json::from_str(&j).unwrap(),
                crate::record::ValueRef::Map(m) => json!(format!("map of {}", m.len())),
                other => json!(format!("{other:?}")),
            };
            out.insert(f.key.into_owned(), v);
        }
        serde_json::Value::Object(out)
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn every_edit_in_its_order() {
        let out = edited(
            json!({"user": "ana", "k8s": {"pod": "web-1", "ns": "shop"}, "secret": "x", "env": "dev"}),
            FieldEdits {
                lift: vec!["k8s".into()],
                rename: pairs(&[("user", "user.name")]),
                copy: pairs(&[("pod", "pod_copy")]),
                drop: vec!["secret".into()],
                set: pairs(&[("env", "prod")]),
                add: pairs(&[("team", "payments"), ("ns", "not over the lifted one")]),
            },
        );
        assert_eq!(
            out,
            json!({"pod": "web-1", "ns": "shop", "user.name": "ana", "pod_copy": "web-1", "env": "prod", "team": "payments"})
        );
    }

    #[test]
    fn lifting_json_text_and_leaving_non_objects() {
        let mut t = Table::default();
        let key = t.push_text("kubernetes");
        let value = Value::Json(t.push_text(r#"{"pod":"web-1","restarts":3}"#));
        let list = vec![Field { key, value }];
        t.fields.extend(list.clone());
        let mut list = list;
        lift(&[], &mut t, &mut list, "kubernetes");
        let keys: Vec<&[u8]> = list.iter().map(|f| bytes(&[], &t, f.key)).collect();
        assert_eq!(keys, vec![&b"pod"[..], b"restarts"]);
        let out = edited(
            json!({"n": 3}),
            FieldEdits {
                lift: vec!["n".into()],
                ..Default::default()
            },
        );
        assert_eq!(out, json!({"n": 3}), "a number has no members to lift");
    }

    #[test]
    fn empty_names_and_no_edits_are_refused() {
        assert!(FieldEdits::default().check().is_err());
        assert!(FieldEdits {
            drop: vec![String::new()],
            ..Default::default()
        }
        .check()
        .is_err());
    }
}
