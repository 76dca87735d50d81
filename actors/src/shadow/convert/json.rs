//! JSON helpers both directions share: Ditto path segments, wrapping a value along a path, and
//! the merge / replace patches of the shadow service's document semantics.

use serde_json::{json, Map, Value};

/// A Ditto (JSON Pointer) path segment as a key: `~1` → `/`, `~0` → `~`.
pub(super) fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

/// Wraps `value` in objects along `keys`: `["a","b"]`, v → `{"a":{"b":v}}`.
pub(super) fn wrap(keys: &[String], value: Value) -> Value {
    keys.iter()
        .rev()
        .fold(value, |inner, k| json!({ k.as_str(): inner }))
}

/// The patch that *replaces* `old` with `new`: keys of `old` missing from `new` become `null`,
/// recursively where both sides are objects.
pub fn replace_patch(old: Option<&Value>, new: &Value) -> Value {
    match (old, new) {
        (Some(Value::Object(old)), Value::Object(new)) => {
            let mut out = Map::new();
            for (k, v) in new {
                out.insert(k.clone(), replace_patch(old.get(k), v));
            }
            for k in old.keys() {
                if !new.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        (_, v) => v.clone(),
    }
}

/// AWS's merge of a patch into a document: objects merged recursively, `null` deletes.
pub fn merge(doc: &mut Value, patch: &Value) {
    match (doc, patch) {
        (Value::Object(doc), Value::Object(patch)) => {
            for (k, v) in patch {
                if v.is_null() {
                    doc.remove(k);
                } else {
                    merge(doc.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (doc, patch) => *doc = patch.clone(),
    }
}

/// The value at `keys` inside `doc`, if every step exists.
pub(super) fn get_path<'v>(doc: Option<&'v Value>, keys: &[String]) -> Option<&'v Value> {
    keys.iter().try_fold(doc?, |node, k| node.get(k))
}
