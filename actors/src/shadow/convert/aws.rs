//! The AWS side of the conversion: which Device Shadow a request addresses ([`ShadowId`]), the
//! operation on it, and the request itself with its MQTT topic.

use serde_json::Value;

use crate::topics;

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
        topics::shadow_prefix(&self.thing, self.name.as_deref())
    }

    /// Parses `$aws/things/{thing}/shadow[/name/{name}]/{rest}` into the id and `rest`.
    pub fn parse_topic(topic: &str) -> Option<(ShadowId, String)> {
        let (thing, name, rest) = topics::parse_shadow_topic(topic)?;
        Some((
            ShadowId {
                thing: thing.into(),
                name: name.map(str::to_string),
            },
            rest.into(),
        ))
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
