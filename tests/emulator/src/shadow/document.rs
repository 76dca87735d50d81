//! Pure Device Shadow document logic: request validation, deep merge, metadata, delta,
//! and the JSON of every response. Time comes in as `now` (Unix seconds).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A JSON object.
pub type Object = Map<String, Value>;

/// Shadow service limits (AWS's quotas, see the README); all configurable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowLimits {
    /// desired + reported, serialized compactly, in bytes (AWS: 8 KB, read as 8192).
    pub max_state_bytes: usize,
    /// Whole request payload in bytes (AWS: 128 KB, read as 131072).
    pub max_request_bytes: usize,
    /// Nesting depth of `desired` / `reported` (AWS: 6); arrays count as a level.
    pub max_depth: usize,
    /// Longest clientToken in bytes (AWS: 64).
    pub max_client_token: usize,
    /// Update requests per second per thing, beyond which 429 (AWS: ~10); `None` = unlimited.
    pub updates_per_second: Option<u32>,
}

impl Default for ShadowLimits {
    fn default() -> Self {
        ShadowLimits {
            max_state_bytes: 8 * 1024,
            max_request_bytes: 128 * 1024,
            max_depth: 6,
            max_client_token: 64,
            updates_per_second: Some(10),
        }
    }
}

/// A rejected request: the `code` and `message` published on `.../rejected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowError {
    /// HTTP-like status: 400, 404, 409, 413, 429.
    pub code: u16,
    /// AWS-style message.
    pub message: String,
}

impl ShadowError {
    /// An error with `code` and `message`.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        ShadowError {
            code,
            message: message.into(),
        }
    }

    /// The `.../rejected` payload.
    pub fn to_json(&self, now: u64, client_token: Option<&str>) -> Value {
        let mut v = json!({"code": self.code, "message": self.message, "timestamp": now});
        if let Some(t) = client_token {
            v["clientToken"] = json!(t);
        }
        v
    }
}

/// One shadow as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowDocument {
    /// `state.desired`, absent when empty.
    pub desired: Option<Object>,
    /// `state.reported`, absent when empty.
    pub reported: Option<Object>,
    /// `metadata.desired`: the same tree with `{"timestamp": T}` leaves.
    pub metadata_desired: Option<Object>,
    /// `metadata.reported`.
    pub metadata_reported: Option<Object>,
    /// Incremented by every accepted update.
    pub version: u64,
}

/// A section of an update request: absent, `null` (delete the section) or an object.
#[derive(Debug, Clone, PartialEq)]
pub enum SectionUpdate {
    /// Not in the request.
    Absent,
    /// `null`: delete the whole section.
    Clear,
    /// An object to deep-merge.
    Merge(Object),
}

/// A validated update request.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRequest {
    /// `state.desired`.
    pub desired: SectionUpdate,
    /// `state.reported`.
    pub reported: SectionUpdate,
    /// The `state` node exactly as sent (echoed in `update/accepted`).
    pub state: Value,
    /// `clientToken`.
    pub client_token: Option<String>,
    /// `version` for optimistic locking.
    pub version: Option<u64>,
}

/// `clientToken` and `version` of a request (the fields every request may carry).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimpleRequest {
    /// `clientToken`.
    pub client_token: Option<String>,
    /// `version`.
    pub version: Option<u64>,
}

/// AWS's message for a payload that is not a JSON object (and, the emulator's choice, for
/// an array containing `null`, which AWS rejects without documenting the text).
pub const INVALID_JSON: &str = "Invalid JSON";

/// Nesting depth: a scalar is 0, an object or array is 1 + its deepest member.
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Best-effort clientToken of a payload, for echoing in errors found before validation ends.
pub fn client_token_of(payload: &[u8], limits: &ShadowLimits) -> Option<String> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let t = v.get("clientToken")?.as_str()?;
    (t.len() <= limits.max_client_token).then(|| t.to_string())
}

fn parse_object(
    payload: &[u8],
    limits: &ShadowLimits,
    allow_empty: bool,
) -> Result<Object, ShadowError> {
    if payload.len() > limits.max_request_bytes {
        return Err(ShadowError::new(
            413,
            "The payload exceeds the maximum size allowed",
        ));
    }
    if allow_empty && payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Object::new());
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) | Err(_) => Err(ShadowError::new(400, INVALID_JSON)),
    }
}

/// `clientToken` (a string of at most 64 bytes) and, when `with_version`, `version` (a
/// non-negative integer); every other top-level field is ignored, as AWS ignores it.
fn common_fields(
    m: &Object,
    limits: &ShadowLimits,
    with_version: bool,
) -> Result<SimpleRequest, ShadowError> {
    let client_token = match m.get("clientToken") {
        None => None,
        Some(Value::String(t)) if t.len() <= limits.max_client_token => Some(t.clone()),
        Some(_) => return Err(ShadowError::new(400, "Invalid clientToken")),
    };
    let version = match m.get("version").filter(|_| with_version) {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| ShadowError::new(400, "Invalid version"))?,
        ),
    };
    Ok(SimpleRequest {
        client_token,
        version,
    })
}

/// Validates a get request (empty payload or `{"clientToken":..}`; other fields ignored).
pub fn parse_get(payload: &[u8], limits: &ShadowLimits) -> Result<SimpleRequest, ShadowError> {
    let m = parse_object(payload, limits, true)?;
    common_fields(&m, limits, false)
}

/// Whether `v` holds a `null` anywhere inside an array, at any depth (AWS rejects arrays with
/// null values; a null in an object inside an array is rejected too, the stricter reading).
pub fn has_null_in_array(v: &Value) -> bool {
    fn walk(v: &Value, in_array: bool) -> bool {
        match v {
            Value::Null => in_array,
            Value::Array(a) => a.iter().any(|e| walk(e, true)),
            Value::Object(m) => m.values().any(|e| walk(e, in_array)),
            _ => false,
        }
    }
    walk(v, false)
}

fn too_deep(limits: &ShadowLimits) -> ShadowError {
    ShadowError::new(
        400,
        format!(
            "JSON contains too many levels of nesting; maximum is {}",
            limits.max_depth
        ),
    )
}

fn too_large() -> ShadowError {
    ShadowError::new(413, "The payload exceeds the maximum size allowed")
}

/// `state[name]`; `not_object` is AWS's 400 text when it is neither an object nor `null`.
fn section(
    state: &Object,
    name: &str,
    not_object: &'static str,
    limits: &ShadowLimits,
) -> Result<SectionUpdate, ShadowError> {
    match state.get(name) {
        None => Ok(SectionUpdate::Absent),
        Some(Value::Null) => Ok(SectionUpdate::Clear),
        Some(v @ Value::Object(m)) => {
            if depth(v) > limits.max_depth {
                return Err(too_deep(limits));
            }
            if has_null_in_array(v) {
                return Err(ShadowError::new(400, INVALID_JSON));
            }
            Ok(SectionUpdate::Merge(m.clone()))
        }
        Some(_) => Err(ShadowError::new(400, not_object)),
    }
}

/// Validates an update request against AWS's rules and `limits`.
pub fn parse_update(payload: &[u8], limits: &ShadowLimits) -> Result<UpdateRequest, ShadowError> {
    let m = parse_object(payload, limits, false)?;
    let common = common_fields(&m, limits, true)?;
    let state = match m.get("state") {
        None => return Err(ShadowError::new(400, "Missing required node: state")),
        Some(Value::Object(s)) => s,
        Some(_) => return Err(ShadowError::new(400, "State node must be an object")),
    };
    if state.keys().any(|k| k != "desired" && k != "reported") {
        return Err(ShadowError::new(400, "State contains an invalid node"));
    }
    let desired = section(state, "desired", "Desired node must be an object", limits)?;
    let reported = section(state, "reported", "Reported node must be an object", limits)?;
    if desired == SectionUpdate::Absent && reported == SectionUpdate::Absent {
        return Err(ShadowError::new(
            400,
            "State node must contain desired or reported",
        ));
    }
    let state_value = Value::Object(state.clone());
    if state_value.to_string().len() > limits.max_state_bytes {
        return Err(too_large());
    }
    Ok(UpdateRequest {
        desired,
        reported,
        state: state_value,
        client_token: common.client_token,
        version: common.version,
    })
}

/// `value` with every `null` member of its objects removed (nested objects included).
pub fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Deep-merges `patch` into `target`: objects merge recursively, `null` deletes the key,
/// everything else (arrays included) replaces the old value whole.
pub fn merge(target: &mut Object, patch: &Object) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => match target.get_mut(k) {
                Some(Value::Object(t)) => merge(t, p),
                _ => {
                    target.insert(k.clone(), strip_nulls(v));
                }
            },
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The metadata tree of `patch`: every leaf (scalar, array or null) becomes `{"timestamp": now}`.
pub fn metadata_of(patch: &Object, now: u64) -> Object {
    patch
        .iter()
        .map(|(k, v)| {
            let m = match v {
                Value::Object(o) => Value::Object(metadata_of(o, now)),
                _ => json!({ "timestamp": now }),
            };
            (k.clone(), m)
        })
        .collect()
}

/// Applies `patch` to a metadata tree the way [`merge`] applies it to the state.
pub fn merge_metadata(meta: &mut Object, patch: &Object, now: u64) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                meta.remove(k);
            }
            Value::Object(p) => {
                // A leaf's metadata is {"timestamp":..}; an object's is a tree of its keys.
                let replace_leaf = match meta.get(k) {
                    Some(Value::Object(o)) => is_leaf_metadata(o),
                    _ => true,
                };
                if replace_leaf {
                    meta.insert(
                        k.clone(),
                        Value::Object(metadata_of(&strip_nulls_obj(p), now)),
                    );
                } else if let Some(Value::Object(t)) = meta.get_mut(k) {
                    merge_metadata(t, p, now);
                }
            }
            _ => {
                meta.insert(k.clone(), json!({ "timestamp": now }));
            }
        }
    }
}

/// Whether a metadata node is a leaf `{"timestamp": T}` rather than a tree of keys.
fn is_leaf_metadata(o: &Object) -> bool {
    o.len() == 1 && o.get("timestamp").is_some_and(Value::is_number)
}

fn strip_nulls_obj(o: &Object) -> Object {
    match strip_nulls(&Value::Object(o.clone())) {
        Value::Object(m) => m,
        _ => Object::new(),
    }
}

/// The keys of `desired` whose value differs from `reported`, recursively: nested objects
/// contribute only their differing keys; arrays and scalars compare whole.
pub fn delta(desired: &Object, reported: Option<&Object>) -> Object {
    let mut out = Object::new();
    for (k, d) in desired {
        let r = reported.and_then(|r| r.get(k));
        match (d, r) {
            (Value::Object(dm), Some(Value::Object(rm))) => {
                let sub = delta(dm, Some(rm));
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            (_, Some(r)) if r == d => {}
            _ => {
                out.insert(k.clone(), d.clone());
            }
        }
    }
    out
}

/// Whether delta `after` holds a difference that delta `before` did not: a key that was not
/// in it, or a value that changed (nested objects compared key by key).
pub fn reopens(before: &Object, after: &Object) -> bool {
    after.iter().any(|(k, a)| match (before.get(k), a) {
        (None, _) => true,
        (Some(Value::Object(b)), Value::Object(a)) => reopens(b, a),
        (Some(b), a) => b != a,
    })
}

/// The part of `meta` that covers the keys of `shape` (for the delta's metadata).
pub fn metadata_matching(meta: &Object, shape: &Object) -> Object {
    let mut out = Object::new();
    for (k, v) in shape {
        if let Some(m) = meta.get(k) {
            match (v, m) {
                (Value::Object(s), Value::Object(mo)) if !is_leaf_metadata(mo) => {
                    out.insert(k.clone(), Value::Object(metadata_matching(mo, s)));
                }
                _ => {
                    out.insert(k.clone(), m.clone());
                }
            }
        }
    }
    out
}

fn non_empty(o: Object) -> Option<Object> {
    (!o.is_empty()).then_some(o)
}

impl ShadowDocument {
    /// The current delta (empty when desired matches reported).
    pub fn delta(&self) -> Object {
        match &self.desired {
            Some(d) => delta(d, self.reported.as_ref()),
            None => Object::new(),
        }
    }

    /// `{"desired":..,"reported":..}` with absent sections left out.
    pub fn state_json(&self) -> Value {
        let mut s = Object::new();
        if let Some(d) = &self.desired {
            s.insert("desired".into(), Value::Object(d.clone()));
        }
        if let Some(r) = &self.reported {
            s.insert("reported".into(), Value::Object(r.clone()));
        }
        Value::Object(s)
    }

    /// `{"desired":..,"reported":..}` of the metadata.
    pub fn metadata_json(&self) -> Value {
        let mut s = Object::new();
        if let Some(d) = &self.metadata_desired {
            s.insert("desired".into(), Value::Object(d.clone()));
        }
        if let Some(r) = &self.metadata_reported {
            s.insert("reported".into(), Value::Object(r.clone()));
        }
        Value::Object(s)
    }

    /// The `get/accepted` payload.
    pub fn get_response(&self, now: u64, client_token: Option<&str>) -> Value {
        let mut state = self.state_json();
        let d = self.delta();
        if !d.is_empty() {
            state["delta"] = Value::Object(d);
        }
        let mut v = json!({
            "state": state,
            "metadata": self.metadata_json(),
            "version": self.version,
            "timestamp": now,
        });
        if let Some(t) = client_token {
            v["clientToken"] = json!(t);
        }
        v
    }

    /// `{state, metadata, version}` as in `update/documents`.
    pub fn snapshot_json(&self) -> Value {
        json!({"state": self.state_json(), "metadata": self.metadata_json(), "version": self.version})
    }
}

/// Everything an accepted update produces.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateOutcome {
    /// The new document.
    pub document: ShadowDocument,
    /// `update/accepted` payload.
    pub accepted: Value,
    /// `update/delta` payload, when desired ≠ reported after a request that had `desired`, or
    /// after a reported-only request that re-opened a difference ([`reopens`]).
    pub delta: Option<Value>,
    /// `update/documents` payload.
    pub documents: Value,
}

fn apply_section(
    state: &mut Option<Object>,
    meta: &mut Option<Object>,
    update: &SectionUpdate,
    now: u64,
) {
    match update {
        SectionUpdate::Absent => {}
        SectionUpdate::Clear => {
            *state = None;
            *meta = None;
        }
        SectionUpdate::Merge(patch) => {
            let mut s = state.take().unwrap_or_default();
            merge(&mut s, patch);
            let mut m = meta.take().unwrap_or_default();
            merge_metadata(&mut m, patch, now);
            *state = non_empty(s);
            *meta = non_empty(m);
        }
    }
}

/// Applies a validated update to `current` (`None` = no shadow; `current_version` is then
/// the version of a deleted shadow, or 0). Checks the version and the size of the result.
pub fn apply_update(
    current: Option<&ShadowDocument>,
    current_version: u64,
    req: &UpdateRequest,
    now: u64,
    limits: &ShadowLimits,
) -> Result<UpdateOutcome, ShadowError> {
    if let Some(v) = req.version {
        if v != current_version {
            return Err(ShadowError::new(409, "Version conflict"));
        }
    }
    let mut doc = current.cloned().unwrap_or_default();
    apply_section(
        &mut doc.desired,
        &mut doc.metadata_desired,
        &req.desired,
        now,
    );
    apply_section(
        &mut doc.reported,
        &mut doc.metadata_reported,
        &req.reported,
        now,
    );
    if doc.state_json().to_string().len() > limits.max_state_bytes {
        return Err(too_large());
    }
    doc.version = current_version + 1;

    let request_state = match &req.state {
        Value::Object(o) => o.clone(),
        _ => Object::new(),
    };
    let request_meta: Object = request_state
        .iter()
        .filter_map(|(k, v)| match v {
            Value::Object(o) => Some((k.clone(), Value::Object(metadata_of(o, now)))),
            Value::Null => Some((k.clone(), json!({ "timestamp": now }))),
            _ => None,
        })
        .collect();
    let mut accepted = json!({
        "state": req.state,
        "metadata": request_meta,
        "version": doc.version,
        "timestamp": now,
    });
    let mut documents = json!({
        "current": doc.snapshot_json(),
        "timestamp": now,
    });
    if let Some(prev) = current {
        documents["previous"] = prev.snapshot_json();
    }
    if let Some(t) = &req.client_token {
        accepted["clientToken"] = json!(t);
        documents["clientToken"] = json!(t);
    }
    let after = doc.delta();
    let publish_delta = !after.is_empty()
        && match req.desired {
            SectionUpdate::Merge(_) => true,
            // A reported-only update: only when it re-opens a difference to desired.
            _ => reopens(
                &current.map(ShadowDocument::delta).unwrap_or_default(),
                &after,
            ),
        };
    let delta = publish_delta.then(|| {
        let meta = doc
            .metadata_desired
            .as_ref()
            .map(|m| metadata_matching(m, &after))
            .unwrap_or_default();
        let mut d =
            json!({"state": after, "metadata": meta, "version": doc.version, "timestamp": now});
        if let Some(t) = &req.client_token {
            d["clientToken"] = json!(t);
        }
        d
    });
    Ok(UpdateOutcome {
        document: doc,
        accepted,
        delta,
        documents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn merge_table() {
        // (document, patch, result)
        let rows = [
            (json!({}), json!({"a": 1}), json!({"a": 1})),
            (
                json!({"a": 1, "b": 2}),
                json!({"a": 3}),
                json!({"a": 3, "b": 2}),
            ),
            (json!({"a": 1, "b": 2}), json!({"a": null}), json!({"b": 2})),
            (
                json!({"a": {"x": 1, "y": 2}}),
                json!({"a": {"y": null, "z": 3}}),
                json!({"a": {"x": 1, "z": 3}}),
            ),
            (
                json!({"a": [1, 2, 3]}),
                json!({"a": [4]}),
                json!({"a": [4]}),
            ),
            (
                json!({"a": 1}),
                json!({"a": {"x": 1, "y": null}}),
                json!({"a": {"x": 1}}),
            ),
            (
                json!({"a": {"x": 1}}),
                json!({"a": "flat"}),
                json!({"a": "flat"}),
            ),
            (json!({"a": 1}), json!({"missing": null}), json!({"a": 1})),
        ];
        for (doc, patch, expected) in rows {
            let mut d = obj(doc.clone());
            merge(&mut d, &obj(patch.clone()));
            assert_eq!(Value::Object(d), expected, "{doc} + {patch}");
        }
    }

    #[test]
    fn delta_table() {
        // (desired, reported, delta)
        let rows = [
            (json!({"a": 1}), None, json!({"a": 1})),
            (json!({"a": 1}), Some(json!({"a": 1})), json!({})),
            (json!({"a": 1}), Some(json!({"a": 2})), json!({"a": 1})),
            (json!({"a": 1}), Some(json!({"b": 1})), json!({"a": 1})),
            (
                json!({"a": {"x": 1, "y": 2}}),
                Some(json!({"a": {"x": 1, "y": 3}})),
                json!({"a": {"y": 2}}),
            ),
            (
                json!({"a": {"x": {"deep": true}}}),
                Some(json!({"a": {"x": {"deep": true}}})),
                json!({}),
            ),
            (
                json!({"a": [1, 2]}),
                Some(json!({"a": [2, 1]})),
                json!({"a": [1, 2]}),
            ),
            (
                json!({"a": {"x": 1}}),
                Some(json!({"a": 5})),
                json!({"a": {"x": 1}}),
            ),
            (json!({}), Some(json!({"r": 1})), json!({})),
        ];
        for (desired, reported, expected) in rows {
            let r = reported.clone().map(obj);
            let d = delta(&obj(desired.clone()), r.as_ref());
            assert_eq!(Value::Object(d), expected, "{desired} vs {reported:?}");
        }
    }

    #[test]
    fn depth_table() {
        let rows = [
            (json!(1), 0),
            (json!({}), 1),
            (json!({"a": 1}), 1),
            (json!({"a": {"b": 1}}), 2),
            (json!({"a": [1]}), 2),
            (json!({"1": {"2": {"3": {"4": {"5": {"6": 1}}}}}}), 6),
        ];
        for (v, d) in rows {
            assert_eq!(depth(&v), d, "{v}");
        }
    }

    #[test]
    fn update_request_validation_table() {
        let l = ShadowLimits::default();
        let deep7 =
            json!({"state": {"desired": {"1": {"2": {"3": {"4": {"5": {"6": {"7": 1}}}}}}}}});
        let deep6 = json!({"state": {"desired": {"1": {"2": {"3": {"4": {"5": {"6": 1}}}}}}}});
        let big_state = json!({"state": {"reported": {"s": "x".repeat(8 * 1024)}}});
        let big_request = format!(
            r#"{{"state":{{"reported":{{"a":1}}}},"clientToken":"{}"}}"#,
            " ".repeat(128 * 1024)
        );
        let long_token = json!({"state": {"reported": {"a": 1}}, "clientToken": "t".repeat(65)});
        let max_token = json!({"state": {"reported": {"a": 1}}, "clientToken": "t".repeat(64)});
        let nesting = "JSON contains too many levels of nesting; maximum is 6";
        let too_big = "The payload exceeds the maximum size allowed";
        // (payload, expected error code, exact message) — code 0 = valid. The messages are
        // AWS's texts from its Device Shadow error list.
        let rows: Vec<(String, u16, &str)> = vec![
            (r#"{"state":{"desired":{"a":1}}}"#.into(), 0, ""),
            (
                r#"{"state":{"desired":null},"clientToken":"t","version":3}"#.into(),
                0,
                "",
            ),
            (deep6.to_string(), 0, ""),
            (max_token.to_string(), 0, ""),
            // Unknown top-level fields are ignored, as AWS ignores them.
            (
                r#"{"state":{"reported":{"a":1}},"extra":1,"metadata":{}}"#.into(),
                0,
                "",
            ),
            (
                r#"{"state":{"reported":{"a":[1,[2,"x"],{"b":[]}]}}}"#.into(),
                0,
                "",
            ),
            ("{not json".into(), 400, "Invalid JSON"),
            ("[1,2]".into(), 400, "Invalid JSON"),
            ("".into(), 400, "Invalid JSON"),
            // Arrays cannot hold null, at any depth (AWS rejects them).
            (
                r#"{"state":{"desired":{"colors":[null,"RED"]}}}"#.into(),
                400,
                "Invalid JSON",
            ),
            (
                r#"{"state":{"reported":{"a":{"b":[1,[null]]}}}}"#.into(),
                400,
                "Invalid JSON",
            ),
            (
                r#"{"state":{"reported":{"a":[{"b":null}]}}}"#.into(),
                400,
                "Invalid JSON",
            ),
            (
                r#"{"clientToken":"t"}"#.into(),
                400,
                "Missing required node: state",
            ),
            (r#"{"state":5}"#.into(), 400, "State node must be an object"),
            (
                r#"{"state":{}}"#.into(),
                400,
                "State node must contain desired or reported",
            ),
            (
                r#"{"state":{"delta":{"a":1}}}"#.into(),
                400,
                "State contains an invalid node",
            ),
            (
                r#"{"state":{"desired":[1]}}"#.into(),
                400,
                "Desired node must be an object",
            ),
            (
                r#"{"state":{"reported":"on"}}"#.into(),
                400,
                "Reported node must be an object",
            ),
            (
                r#"{"state":{"reported":{"a":1}},"version":"x"}"#.into(),
                400,
                "Invalid version",
            ),
            (
                r#"{"state":{"reported":{"a":1}},"version":-1}"#.into(),
                400,
                "Invalid version",
            ),
            (long_token.to_string(), 400, "Invalid clientToken"),
            (
                r#"{"state":{"reported":{"a":1}},"clientToken":7}"#.into(),
                400,
                "Invalid clientToken",
            ),
            (deep7.to_string(), 400, nesting),
            (big_state.to_string(), 413, too_big),
            (big_request, 413, too_big),
        ];
        for (payload, code, message) in rows {
            let short: String = payload.chars().take(60).collect();
            match parse_update(payload.as_bytes(), &l) {
                Ok(_) => assert_eq!(code, 0, "{short} accepted"),
                Err(e) => {
                    assert_eq!((e.code, e.message.as_str()), (code, message), "{short}");
                }
            }
        }
    }

    #[test]
    fn get_request_ignores_unknown_fields_and_checks_the_token() {
        let l = ShadowLimits::default();
        let ok = parse_get(br#"{"clientToken":"g","version":"x","other":1}"#, &l).unwrap();
        assert_eq!((ok.client_token.as_deref(), ok.version), (Some("g"), None));
        assert_eq!(parse_get(b"", &l).unwrap(), SimpleRequest::default());
        let rows: [(&[u8], &str); 3] = [
            (b"nope", "Invalid JSON"),
            (br#"{"clientToken":1}"#, "Invalid clientToken"),
            (br#"[]"#, "Invalid JSON"),
        ];
        for (payload, message) in rows {
            let e = parse_get(payload, &l).unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (400, message));
        }
    }

    #[test]
    fn reopens_table() {
        // (delta before, delta after, re-opened)
        let rows = [
            (json!({}), json!({"a": 1}), true),
            (json!({"a": 1}), json!({"a": 1}), false),
            (json!({"a": 1, "b": 2}), json!({"a": 1}), false),
            (json!({"a": 1}), json!({"a": 1, "b": 2}), true),
            (json!({"a": {"x": 1}}), json!({"a": {"x": 1, "y": 2}}), true),
            (
                json!({"a": {"x": 1, "y": 2}}),
                json!({"a": {"x": 1}}),
                false,
            ),
            (json!({"a": 1}), json!({"a": 2}), true),
            (json!({}), json!({}), false),
        ];
        for (before, after, expected) in rows {
            assert_eq!(
                reopens(&obj(before.clone()), &obj(after.clone())),
                expected,
                "{before} -> {after}"
            );
        }
    }

    #[test]
    fn metadata_follows_the_state_tree() {
        let mut meta = Object::new();
        merge_metadata(
            &mut meta,
            &obj(json!({"a": {"x": 1}, "b": [1], "c": 1})),
            10,
        );
        assert_eq!(
            Value::Object(meta.clone()),
            json!({"a": {"x": {"timestamp": 10}}, "b": {"timestamp": 10}, "c": {"timestamp": 10}})
        );
        merge_metadata(&mut meta, &obj(json!({"a": {"y": 2}, "c": null})), 20);
        assert_eq!(
            Value::Object(meta),
            json!({"a": {"x": {"timestamp": 10}, "y": {"timestamp": 20}}, "b": {"timestamp": 10}})
        );
    }
}
