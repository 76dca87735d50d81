//! Eclipse Ditto twin commands from local applications → AWS Device Shadow requests, and the
//! shadow service's answers and deltas → Ditto responses and commands locally.
//!
//! Two halves, because a twin command must be journaled before the intake acknowledges it:
//! - [`ShadowIngest`] runs on the local intake's thread: it converts (pure [`convert`]), hands
//!   the requests back to be journaled like any uplink message, and — once the journal accepted
//!   a request — keeps the last reported state per shadow in the store's `ShadowCache` (what `modify` needs
//!   to null removed keys; it survives restarts, so no `get` is needed at start).
//! - [`ShadowMapper`] is the actor: it remembers pending requests by clientToken (bounded, with a
//!   TTL) and turns `accepted` / `rejected` / `delta` / `documents` into local Ditto messages.

pub mod convert;
mod ingest;
mod mapper;
mod messages;

pub use ingest::{ShadowIngest, ShadowUplink};
pub use mapper::{ShadowMapper, MAX_PENDING, PENDING_TTL};
pub use messages::{LocalDittoError, ShadowRequested};

#[cfg(test)]
mod tests;
