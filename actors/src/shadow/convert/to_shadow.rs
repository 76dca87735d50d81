//! Ditto → Device Shadow: a twin command becomes the shadow requests that carry it out.
//!
//! Mapping (Kanto's): attributes → the classic shadow; feature `f` → named shadow `f`; child thing
//! `{deviceId}:{c}` → named shadows `c` (attributes) and `c:f` (features). A feature's shadow
//! state is its properties flattened plus `definition`; `desiredProperties` → `state.desired`.

use serde_json::{json, Map, Value};

use super::aws::{ShadowId, ShadowOp, ShadowRequest};
use super::ditto::{Action, DittoCommand, DittoError};
use super::filters::{apply_payload_filters, Filters};
use super::json::{get_path, replace_patch, unescape, wrap};
use super::rules::{check_rules, client_token, ShadowRules};

/// The shadow a twin command addresses, and the path inside that shadow's state.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// The whole thing (`/`): attributes and every feature.
    Thing,
    /// `/features` as a whole.
    Features,
    /// Inside one shadow: `section` is `reported` or `desired`, `keys` the path below it.
    Shadow {
        shadow: ShadowId,
        section: Section,
        keys: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Attributes, or feature properties (flattened), or `definition`.
    Reported,
    /// Feature `desiredProperties`.
    Desired,
    /// The whole feature: properties + definition (reported) and desiredProperties (desired).
    Feature,
}

fn target(cmd: &DittoCommand, device_id: &str) -> Result<Target, DittoError> {
    let child = if cmd.thing_id == device_id {
        None
    } else if let Some(c) = cmd
        .thing_id
        .strip_prefix(device_id)
        .and_then(|r| r.strip_prefix(':'))
    {
        Some(c.to_string())
    } else {
        return Err(DittoError(format!(
            "thing {:?} is neither this device ({device_id:?}) nor one of its children",
            cmd.thing_id
        )));
    };
    let segments: Vec<String> = cmd
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(unescape)
        .collect();
    let named = |name: String| ShadowId {
        thing: device_id.to_string(),
        name: Some(name),
    };
    let attributes_shadow = match &child {
        None => ShadowId {
            thing: device_id.to_string(),
            name: None,
        },
        Some(c) => named(c.clone()),
    };
    let feature_shadow = |f: &str| match &child {
        None => named(f.to_string()),
        Some(c) => named(format!("{c}:{f}")),
    };
    match segments.first().map(String::as_str) {
        None => Ok(Target::Thing),
        Some("attributes") => Ok(Target::Shadow {
            shadow: attributes_shadow,
            section: Section::Reported,
            keys: segments[1..].to_vec(),
        }),
        Some("features") => match segments.get(1) {
            None => Ok(Target::Features),
            Some(f) => {
                let shadow = feature_shadow(f);
                let (section, keys) = match segments.get(2).map(String::as_str) {
                    None => (Section::Feature, vec![]),
                    Some("properties") => (Section::Reported, segments[3..].to_vec()),
                    Some("desiredProperties") => (Section::Desired, segments[3..].to_vec()),
                    Some("definition") if segments.len() == 3 => {
                        (Section::Reported, vec!["definition".into()])
                    }
                    Some(other) => {
                        return Err(DittoError(format!(
                            "path {:?}: unknown feature part {other:?}",
                            cmd.path
                        )))
                    }
                };
                Ok(Target::Shadow {
                    shadow,
                    section,
                    keys,
                })
            }
        },
        Some(other) => Err(DittoError(format!(
            "path {:?}: {other:?} is not attributes or features",
            cmd.path
        ))),
    }
}

/// Converts a twin command into shadow requests. `reported` returns the last reported state
/// known for a shadow (for `modify`'s replace semantics); `token` is the request's clientToken.
pub fn to_shadow_requests(
    cmd: &DittoCommand,
    device_id: &str,
    reported: &dyn Fn(&ShadowId) -> Option<Value>,
    filters: &Filters,
    rules: &ShadowRules,
) -> Result<Vec<ShadowRequest>, DittoError> {
    if filters
        .topic
        .as_ref()
        .is_some_and(|r| r.is_match(&cmd.topic))
    {
        return Ok(vec![]);
    }
    let token = cmd.correlation_id.as_deref().map(client_token);
    let value = match &cmd.value {
        Some(v) => {
            match apply_payload_filters(cmd.path.trim_end_matches('/'), v.clone(), filters) {
                Some(v) => Some(v),
                None => return Ok(vec![]),
            }
        }
        None => None,
    };
    // Whole-thing and /features commands fan out into one command per shadow; the filters
    // were applied to the value above already.
    let sub = |path: String, value: Option<Value>| {
        let sub = DittoCommand {
            path,
            value,
            ..cmd.clone()
        };
        to_shadow_requests(&sub, device_id, reported, &Filters::default(), rules)
    };
    let each_feature = |features: Map<String, Value>| -> Result<Vec<ShadowRequest>, DittoError> {
        let per_feature: Vec<Vec<ShadowRequest>> = features
            .into_iter()
            .map(|(f, body)| sub(format!("/features/{f}"), Some(body)))
            .collect::<Result<_, _>>()?;
        Ok(per_feature.concat())
    };
    let mut requests = match (target(cmd, device_id)?, cmd.action) {
        (Target::Thing | Target::Features, Action::Retrieve) => {
            return Err(DittoError(format!(
                "retrieve of {:?} is not supported: retrieve /attributes or /features/{{id}}",
                cmd.path
            )));
        }
        (Target::Features, Action::Delete) => {
            return Err(DittoError(
                "delete of /features as a whole is not supported: delete each /features/{id}"
                    .into(),
            ));
        }
        (Target::Thing, action) => {
            let mut thing = value.unwrap_or(Value::Null);
            let mut out = Vec::new();
            let attributes = thing.get("attributes").cloned();
            if action == Action::Delete || attributes.is_some() {
                out.extend(sub("/attributes".into(), attributes)?);
            }
            if let Some(Value::Object(features)) = thing.get_mut("features").map(Value::take) {
                out.extend(each_feature(features)?);
            }
            out
        }
        (Target::Features, _) => {
            let Some(Value::Object(features)) = value else {
                return Err(DittoError("/features needs an object of features".into()));
            };
            each_feature(features)?
        }
        (
            Target::Shadow {
                shadow,
                section,
                keys,
            },
            action,
        ) => {
            let mut request = shadow_request(
                shadow,
                section,
                &keys,
                action,
                value,
                reported,
                token.clone(),
            )?;
            if let (Some(version), ShadowOp::Update, Value::Object(body)) =
                (cmd.expected_version, request.op, &mut request.payload)
            {
                body.insert("version".into(), json!(version));
            }
            vec![request]
        }
    };
    for r in &mut requests {
        check_rules(r, rules)?;
    }
    Ok(requests)
}

fn shadow_request(
    shadow: ShadowId,
    section: Section,
    keys: &[String],
    action: Action,
    value: Option<Value>,
    reported: &dyn Fn(&ShadowId) -> Option<Value>,
    token: Option<String>,
) -> Result<ShadowRequest, DittoError> {
    let with_token = |mut body: Value| {
        if let (Some(t), Value::Object(m)) = (&token, &mut body) {
            m.insert("clientToken".into(), Value::String(t.clone()));
        }
        body
    };
    let whole_shadow = keys.is_empty() && section != Section::Desired;
    match action {
        Action::Retrieve => Ok(ShadowRequest {
            shadow,
            op: ShadowOp::Get,
            payload: with_token(json!({})),
            reported_patch: None,
        }),
        Action::Delete if whole_shadow => Ok(ShadowRequest {
            shadow,
            op: ShadowOp::Delete,
            payload: with_token(json!({})),
            reported_patch: None,
        }),
        Action::Delete => {
            let (name, patch) = match section {
                Section::Desired => ("desired", wrap(keys, Value::Null)),
                _ => ("reported", wrap(keys, Value::Null)),
            };
            let patch = if keys.is_empty() { Value::Null } else { patch };
            let reported_patch = (name == "reported").then(|| patch.clone());
            Ok(ShadowRequest {
                shadow,
                op: ShadowOp::Update,
                payload: with_token(json!({"state": { name: patch }})),
                reported_patch,
            })
        }
        Action::Create | Action::Modify | Action::Merge => {
            let value = value.unwrap_or(Value::Null);
            let replace = action != Action::Merge;
            let old = reported(&shadow);
            let (reported_new, desired_new) = match section {
                Section::Feature => {
                    let Value::Object(feature) = value else {
                        return Err(DittoError("a feature must be an object".into()));
                    };
                    let mut state = match feature.get("properties") {
                        Some(Value::Object(p)) => p.clone(),
                        Some(_) => {
                            return Err(DittoError(
                                "feature \"properties\" must be an object".into(),
                            ))
                        }
                        None => Map::new(),
                    };
                    if let Some(d) = feature.get("definition") {
                        state.insert("definition".into(), d.clone());
                    }
                    let reported = Value::Object(state);
                    let reported = if replace {
                        replace_patch(old.as_ref(), &reported)
                    } else {
                        reported
                    };
                    (Some(reported), feature.get("desiredProperties").cloned())
                }
                Section::Reported => {
                    let patch = if replace {
                        let old_node = if keys.is_empty() {
                            // properties (or attributes) as a whole: everything but definition
                            old.as_ref().map(|o| {
                                let mut o = o.clone();
                                if let Value::Object(m) = &mut o {
                                    m.remove("definition");
                                }
                                o
                            })
                        } else {
                            get_path(old.as_ref(), keys).cloned()
                        };
                        wrap(keys, replace_patch(old_node.as_ref(), &value))
                    } else {
                        wrap(keys, value)
                    };
                    if !patch.is_object() {
                        return Err(DittoError(
                            "the reported state must be a JSON object".into(),
                        ));
                    }
                    (Some(patch), None)
                }
                Section::Desired => (None, Some(wrap(keys, value))),
            };
            let mut state = Map::new();
            if let Some(r) = &reported_new {
                state.insert("reported".into(), r.clone());
            }
            if let Some(d) = desired_new {
                state.insert("desired".into(), d);
            }
            Ok(ShadowRequest {
                shadow,
                op: ShadowOp::Update,
                payload: with_token(json!({ "state": state })),
                reported_patch: reported_new,
            })
        }
    }
}
