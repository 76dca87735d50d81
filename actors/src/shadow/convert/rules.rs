//! AWS Device Shadow rules checked before anything is sent: clientToken length, shadow names,
//! state size and nesting depth (`docs/aws-iot.md`, "Device Shadow rules").

use serde_json::Value;

use super::aws::ShadowRequest;
use super::ditto::DittoError;

/// Longest clientToken AWS accepts.
pub const MAX_CLIENT_TOKEN: usize = 64;

/// Limits checked before anything is sent.
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

/// The clientToken for a correlation id: itself when ≤ 64 bytes, else a SHA-256 hex prefix.
pub fn client_token(correlation_id: &str) -> String {
    if correlation_id.len() <= MAX_CLIENT_TOKEN && !correlation_id.is_empty() {
        return correlation_id.to_string();
    }
    let digest = openssl::sha::sha256(correlation_id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..MAX_CLIENT_TOKEN].to_string()
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Refuses a request AWS would reject: a shadow name outside `[a-zA-Z0-9:_-]{1,64}`, or a state
/// larger or deeper than `rules` allow.
pub(super) fn check_rules(r: &ShadowRequest, rules: &ShadowRules) -> Result<(), DittoError> {
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
