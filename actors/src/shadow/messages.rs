//! The two actix messages [`ShadowIngest`](super::ShadowIngest) sends to the
//! [`ShadowMapper`](super::ShadowMapper): a journaled request to answer later, and a command to
//! answer with an error at once.

use actix::prelude::*;

use super::convert::Pending;

/// Callback → actor: a request was journaled; answer the caller when AWS replies.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ShadowRequested {
    /// clientToken of the request(s).
    pub token: String,
    /// Who to answer.
    pub pending: Pending,
    /// Number of shadow requests sent for this command (a whole-thing modify fans out).
    pub requests: usize,
}

/// Callback → actor: answer a Ditto command with an error without contacting AWS.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct LocalDittoError {
    /// Ditto topic of the command.
    pub topic: String,
    /// Its path.
    pub path: String,
    /// Correlation id to answer with.
    pub correlation_id: String,
    /// HTTP-like status.
    pub status: u16,
    /// What was wrong.
    pub message: String,
}
