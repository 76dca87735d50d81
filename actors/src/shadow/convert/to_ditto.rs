//! Device Shadow → Ditto: the shadow service's answers and deltas become Ditto responses, errors
//! and `modify` commands for the local applications.

use serde_json::{json, Value};

use super::aws::ShadowId;
use super::ditto::Action;
use super::json::{get_path, unescape};

/// A pending twin command, remembered by clientToken until its answer arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The Ditto topic of the command.
    pub topic: String,
    /// Its path.
    pub path: String,
    /// Its action.
    pub action: Action,
    /// Correlation id to answer with.
    pub correlation_id: String,
    /// Whether the caller wants an answer.
    pub response_required: bool,
}

/// A Ditto response to a command.
pub fn ditto_response(p: &Pending, status: u16, value: Option<Value>) -> Value {
    let topic = p.topic.clone();
    let mut out = json!({
        "topic": topic,
        "headers": {"correlation-id": p.correlation_id, "response-required": false},
        "path": p.path,
        "status": status,
    });
    if let Some(v) = value {
        out["value"] = v;
    }
    out
}

/// A Ditto error response (`things:…` error envelope with AWS's code and message kept).
pub fn ditto_error(
    topic: &str,
    path: &str,
    correlation_id: &str,
    status: u16,
    message: &str,
) -> Value {
    // {namespace}/{name}/things/twin/commands/{action} → {namespace}/{name}/things/twin/errors
    let parts: Vec<&str> = topic.split('/').collect();
    let error_topic = match parts.get(..4) {
        Some(head) => format!("{}/errors", head.join("/")),
        None => topic.to_string(),
    };
    json!({
        "topic": error_topic,
        "headers": {"correlation-id": correlation_id, "response-required": false},
        "path": path,
        "status": status,
        "value": {"status": status, "error": "things:shadow.request.failed", "message": message},
    })
}

/// Status for an accepted shadow request: 200 with a value for retrieve, else 204.
pub fn accepted_status(action: Action) -> u16 {
    if action == Action::Retrieve {
        200
    } else {
        204
    }
}

/// The Ditto status for the `code` of a shadow `…/rejected` document: AWS's code when it is an
/// HTTP error status (400 to 599), otherwise why it is not (the caller answers 500 then).
pub fn rejected_status(code: Option<&Value>) -> Result<u16, String> {
    match code {
        None => Err("no \"code\"".into()),
        Some(code) => match code.as_u64() {
            Some(n @ 400..=599) => Ok(n as u16),
            _ => Err(format!(
                "\"code\" {code} is not an HTTP error status (400 to 599)"
            )),
        },
    }
}

/// The value a `retrieve` answers with, taken from a `get/accepted` document.
pub fn retrieve_value(p: &Pending, device_id: &str, document: &Value) -> Value {
    let state = document.get("state").cloned().unwrap_or(Value::Null);
    let reported = state.get("reported").cloned().unwrap_or(json!({}));
    let desired = state.get("desired").cloned();
    let segments: Vec<String> = p
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(unescape)
        .collect();
    let _ = device_id;
    match segments.first().map(String::as_str) {
        Some("attributes") => get_path(Some(&reported), &segments[1..])
            .cloned()
            .unwrap_or(Value::Null),
        Some("features") if segments.len() == 2 => {
            let mut properties = reported.clone();
            let definition = properties
                .as_object_mut()
                .and_then(|m| m.remove("definition"));
            let mut feature = json!({ "properties": properties });
            if let Some(d) = definition {
                feature["definition"] = d;
            }
            if let Some(d) = desired {
                feature["desiredProperties"] = d;
            }
            feature
        }
        Some("features") => match segments.get(2).map(String::as_str) {
            Some("desiredProperties") => get_path(desired.as_ref(), &segments[3..])
                .cloned()
                .unwrap_or(Value::Null),
            Some("definition") => reported.get("definition").cloned().unwrap_or(Value::Null),
            _ => get_path(Some(&reported), &segments[3..])
                .cloned()
                .unwrap_or(Value::Null),
        },
        _ => reported,
    }
}

/// The Ditto command that tells the device what the cloud wants: a `modify` of the feature's
/// `desiredProperties` (named shadow) or of `/attributes` (classic shadow) with the delta.
/// Returns the Ditto thing id it is for and the message.
pub fn delta_to_ditto(
    shadow: &ShadowId,
    device_id: &str,
    delta: &Value,
) -> Option<(String, Value)> {
    let state = delta.get("state")?.clone();
    let (thing, path) = match &shadow.name {
        None => (device_id.to_string(), "/attributes".to_string()),
        Some(name) => match name.split_once(':') {
            Some((child, feature)) => (
                format!("{device_id}:{child}"),
                format!("/features/{feature}/desiredProperties"),
            ),
            None => (
                device_id.to_string(),
                format!("/features/{name}/desiredProperties"),
            ),
        },
    };
    let (namespace, name) = thing.split_once(':').unwrap_or(("", &thing));
    let message = json!({
        "topic": format!("{namespace}/{name}/things/twin/commands/modify"),
        "headers": {"response-required": false, "version": delta.get("version").cloned().unwrap_or(Value::Null)},
        "path": path,
        "value": state,
    });
    Some((thing, message))
}
