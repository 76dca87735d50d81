//! Pure Eclipse Ditto twin-channel ⇄ AWS Device Shadow conversion (DESIGN §5). No I/O: the last
//! reported state of a shadow comes in as an argument, requests and responses go out as values.
//!
//! Mapping (Kanto's): attributes → the classic shadow; feature `f` → named shadow `f`; child thing
//! `{deviceId}:{c}` → named shadows `c` (attributes) and `c:f` (features). A feature's shadow
//! state is its properties flattened plus `definition`; `desiredProperties` → `state.desired`.

use serde_json::{json, Map, Value};

/// Longest clientToken AWS accepts.
pub const MAX_CLIENT_TOKEN: usize = 64;

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

/// Which shadow a piece of the twin lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShadowId {
    /// AWS thing name (the gateway's device id).
    pub thing: String,
    /// `None` = classic shadow.
    pub name: Option<String>,
}

impl ShadowId {
    /// `$aws/things/{thing}/shadow[/name/{name}]`.
    pub fn prefix(&self) -> String {
        match &self.name {
            None => format!("$aws/things/{}/shadow", self.thing),
            Some(n) => format!("$aws/things/{}/shadow/name/{n}", self.thing),
        }
    }

    /// Parses `$aws/things/{thing}/shadow[/name/{name}]/{rest}` into the id and `rest`.
    pub fn parse_topic(topic: &str) -> Option<(ShadowId, String)> {
        let rest = topic.strip_prefix("$aws/things/")?;
        let (thing, rest) = rest.split_once("/shadow/")?;
        if let Some(named) = rest.strip_prefix("name/") {
            let (name, tail) = named.split_once('/')?;
            Some((
                ShadowId {
                    thing: thing.into(),
                    name: Some(name.into()),
                },
                tail.into(),
            ))
        } else {
            Some((
                ShadowId {
                    thing: thing.into(),
                    name: None,
                },
                rest.into(),
            ))
        }
    }
}

/// The shadow operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOp {
    /// `…/update`.
    Update,
    /// `…/get`.
    Get,
    /// `…/delete`.
    Delete,
}

impl ShadowOp {
    /// The topic suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            ShadowOp::Update => "update",
            ShadowOp::Get => "get",
            ShadowOp::Delete => "delete",
        }
    }
}

/// One request to the AWS shadow service.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowRequest {
    /// Target shadow.
    pub shadow: ShadowId,
    /// What to do.
    pub op: ShadowOp,
    /// Request body (with `clientToken`).
    pub payload: Value,
    /// For updates: the `state.reported` patch, to keep the reported cache in step.
    pub reported_patch: Option<Value>,
}

impl ShadowRequest {
    /// The MQTT topic.
    pub fn topic(&self) -> String {
        format!("{}/{}", self.shadow.prefix(), self.op.suffix())
    }
}

/// Limits checked before anything is sent (AWS-IOT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowRules {
    /// desired + reported, bytes.
    pub max_state_bytes: usize,
    /// Nesting depth of desired / reported.
    pub max_depth: usize,
}

impl Default for ShadowRules {
    fn default() -> Self {
        ShadowRules {
            max_state_bytes: 8 * 1024,
            max_depth: 6,
        }
    }
}

/// Kanto's filters: `topicFilter` drops whole messages by Ditto topic, `payloadFilters` drop
/// leaves whose path (e.g. `/features/meter/properties/secret`) matches.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Regex on the Ditto topic.
    pub topic: Option<regex::Regex>,
    /// Regexes on leaf paths.
    pub payload: Vec<regex::Regex>,
}

impl Filters {
    /// Compiles Kanto's `topicFilter` and `payloadFilters`; the error names the bad expression.
    pub fn compile(topic: Option<&str>, payload: &[String]) -> Result<Filters, String> {
        let compile = |r: &str| {
            regex::Regex::new(r).map_err(|e| {
                // regex's message spans lines (pattern, caret, error); keep the last one.
                let text = e.to_string();
                let why = text
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string();
                format!("{r:?} is not a valid regular expression: {why}")
            })
        };
        Ok(Filters {
            topic: topic.map(compile).transpose()?,
            payload: payload
                .iter()
                .map(|r| compile(r))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The clientToken for a correlation id: itself when ≤ 64 bytes, else a SHA-256 hex prefix.
pub fn client_token(correlation_id: &str) -> String {
    if correlation_id.len() <= MAX_CLIENT_TOKEN && !correlation_id.is_empty() {
        return correlation_id.to_string();
    }
    let digest = openssl::sha::sha256(correlation_id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..MAX_CLIENT_TOKEN].to_string()
}

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

fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

/// Wraps `value` in objects along `keys`: `["a","b"]`, v → `{"a":{"b":v}}`.
fn wrap(keys: &[String], value: Value) -> Value {
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

fn get_path<'v>(doc: Option<&'v Value>, keys: &[String]) -> Option<&'v Value> {
    keys.iter().try_fold(doc?, |node, k| node.get(k))
}

/// Drops the leaves whose Ditto path matches a payload filter, then prunes emptied objects.
fn apply_payload_filters(base: &str, value: Value, filters: &Filters) -> Option<Value> {
    if filters.payload.is_empty() {
        return Some(value);
    }
    match value {
        Value::Object(map) => {
            let was_empty = map.is_empty();
            let mut out = Map::new();
            for (k, v) in map {
                if let Some(v) = apply_payload_filters(&format!("{base}/{k}"), v, filters) {
                    out.insert(k, v);
                }
            }
            (was_empty || !out.is_empty()).then_some(Value::Object(out))
        }
        leaf => (!filters.payload.iter().any(|r| r.is_match(base))).then_some(leaf),
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

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn check_rules(r: &ShadowRequest, rules: &ShadowRules) -> Result<(), DittoError> {
    if let Some(name) = &r.shadow.name {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'))
        {
            return Err(DittoError(format!(
                "shadow name {name:?} is not allowed by AWS ([a-zA-Z0-9:_-], 1 to 64 characters)"
            )));
        }
    }
    if let Some(state) = r.payload.get("state") {
        let size = state.to_string().len();
        if size > rules.max_state_bytes {
            return Err(DittoError(format!(
                "shadow state of {size} bytes exceeds AWS's {} bytes",
                rules.max_state_bytes
            )));
        }
        for section in ["reported", "desired"] {
            if let Some(s) = state.get(section) {
                if depth(s) > rules.max_depth {
                    return Err(DittoError(format!(
                        "shadow {section} state is nested {} levels deep; AWS allows {}",
                        depth(s),
                        rules.max_depth
                    )));
                }
            }
        }
    }
    Ok(())
}

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
