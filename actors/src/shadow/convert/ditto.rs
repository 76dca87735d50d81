//! The Ditto side of the conversion: which local payloads are Eclipse Ditto twin commands, and
//! parsing them into a [`DittoCommand`].

use serde_json::{Map, Value};

/// Ditto twin command actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `create` (replaces, like modify).
    Create,
    /// `modify` (replaces the value at the path).
    Modify,
    /// `merge` (JSON merge patch).
    Merge,
    /// `delete`.
    Delete,
    /// `retrieve` (→ shadow `get`).
    Retrieve,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "create" => Action::Create,
            "modify" => Action::Modify,
            "merge" => Action::Merge,
            "delete" => Action::Delete,
            "retrieve" => Action::Retrieve,
            _ => return None,
        })
    }

    /// The Ditto name.
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Modify => "modify",
            Action::Merge => "merge",
            Action::Delete => "delete",
            Action::Retrieve => "retrieve",
        }
    }
}

/// A parsed Ditto twin command.
#[derive(Debug, Clone, PartialEq)]
pub struct DittoCommand {
    /// `{namespace}:{name}`.
    pub thing_id: String,
    /// The Ditto topic as received.
    pub topic: String,
    /// What to do.
    pub action: Action,
    /// JSON pointer, e.g. `/features/temp/properties/value`.
    pub path: String,
    /// The value (absent for delete/retrieve).
    pub value: Option<Value>,
    /// `headers.correlation-id`.
    pub correlation_id: Option<String>,
    /// `headers.response-required` (default true).
    pub response_required: bool,
    /// `headers.if-match: "rev:N"` → the shadow `version` AWS must currently have (optimistic
    /// locking: a mismatch is answered 409).
    pub expected_version: Option<u64>,
}

/// Why a Ditto message cannot be converted; becomes a Ditto error response (status 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DittoError(pub String);

/// What a local payload is.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    /// Not a Ditto twin command: forward it as telemetry/event.
    NotDitto,
    /// A twin command.
    Command(DittoCommand),
    /// Looks like a twin command but is broken; the correlation id if one could be read.
    Invalid(DittoError, Option<String>),
}

/// Decides whether `payload` is a Ditto twin command and parses it.
pub fn classify(payload: &[u8]) -> Classified {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(payload) else {
        return Classified::NotDitto;
    };
    let Some(topic) = obj.get("topic").and_then(Value::as_str) else {
        return Classified::NotDitto;
    };
    if !topic.contains("/things/twin/commands/") {
        return Classified::NotDitto;
    }
    let headers = obj.get("headers").and_then(Value::as_object);
    let correlation_id = headers
        .and_then(|h| h.get("correlation-id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    match parse_command(topic, &obj, headers) {
        Ok(cmd) => Classified::Command(cmd),
        Err(e) => Classified::Invalid(e, correlation_id),
    }
}

fn parse_command(
    topic: &str,
    obj: &Map<String, Value>,
    headers: Option<&Map<String, Value>>,
) -> Result<DittoCommand, DittoError> {
    let parts: Vec<&str> = topic.split('/').collect();
    if parts.len() != 6 || parts[0].is_empty() || parts[1].is_empty() {
        return Err(DittoError(format!(
            "topic {topic:?} is not {{namespace}}/{{name}}/things/twin/commands/{{action}}"
        )));
    }
    let action = Action::parse(parts[5])
        .ok_or_else(|| DittoError(format!("twin command {:?} is not supported", parts[5])))?;
    let path = match obj.get("path") {
        Some(Value::String(p)) if p.starts_with('/') => p.trim_end_matches('/').to_string(),
        Some(Value::String(p)) => return Err(DittoError(format!("path {p:?} must start with /"))),
        None => return Err(DittoError("missing \"path\"".into())),
        Some(_) => return Err(DittoError("\"path\" must be a string".into())),
    };
    let value = obj.get("value").cloned();
    if matches!(action, Action::Create | Action::Modify | Action::Merge) && value.is_none() {
        return Err(DittoError(format!("{} needs a \"value\"", action.name())));
    }
    let response_required = headers
        .and_then(|h| h.get("response-required"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok(DittoCommand {
        thing_id: format!("{}:{}", parts[0], parts[1]),
        topic: topic.to_string(),
        action,
        path: if path.is_empty() { "/".into() } else { path },
        value,
        correlation_id: headers
            .and_then(|h| h.get("correlation-id"))
            .and_then(Value::as_str)
            .map(str::to_string),
        response_required,
        expected_version: headers
            .and_then(|h| h.get("if-match"))
            .and_then(Value::as_str)
            .and_then(|m| m.trim_matches('"').strip_prefix("rev:"))
            .and_then(|n| n.parse().ok()),
    })
}
