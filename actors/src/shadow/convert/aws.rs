//! The AWS side of the conversion: which Device Shadow a request addresses ([`ShadowId`]), the
//! operation on it, and the request itself with its MQTT topic.

use serde_json::Value;

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
