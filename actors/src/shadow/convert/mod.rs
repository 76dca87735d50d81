//! Pure Eclipse Ditto twin-channel ⇄ AWS Device Shadow conversion. No I/O: the last reported
//! state of a shadow comes in as an argument, requests and responses go out as values.
//!
//! - [`ditto`]: which payloads are twin commands, and parsing them;
//! - [`aws`]: shadow ids, operations and requests;
//! - [`rules`]: AWS's limits (clientToken, shadow names, state size and depth);
//! - [`filters`]: Kanto's topic and payload filters;
//! - [`to_shadow`]: a twin command → shadow requests;
//! - [`to_ditto`]: shadow answers and deltas → Ditto responses, errors and commands;
//! - [`json`]: path and patch helpers both directions share.

pub mod aws;
pub mod ditto;
pub mod filters;
pub mod json;
pub mod rules;
pub mod to_ditto;
pub mod to_shadow;

pub use aws::{ShadowId, ShadowOp, ShadowRequest};
pub use ditto::{classify, Action, Classified, DittoCommand, DittoError};
pub use filters::Filters;
pub use json::{merge, replace_patch};
pub use rules::{client_token, ShadowRules, MAX_CLIENT_TOKEN};
pub use to_ditto::{
    accepted_status, delta_to_ditto, ditto_error, ditto_response, rejected_status, retrieve_value,
    Pending,
};
pub use to_shadow::to_shadow_requests;

#[cfg(test)]
mod tests;
