//! # awslink-actors
//!
//! The actors of awslink and the typed messages between them (see `ARCHITECTURE.md`).
//!
//! ```text
//!  local apps ⇄ Mosquitto ⇄ LocalBroker ──(journal append)──▶ Buffer ──(Publisher)──▶ AWS IoT
//!                               ▲                               ▲ ◀── Acked ──┘         │
//!                               └──────── LocalPublish ◀────────┼── CloudInbound ◀── CloudLink
//!  Supervisor: starts a CloudLink per attempt, LinkEvent Up{publisher}/Down, backoff,
//!              LinkChanged → Buffer, ConnectionStatus → StatusPublisher
//!  StatusPublisher: retained status topic, edge/thing/response, awslink::metrics log lines
//! ```
//!
//! Pure logic lives in [`topics`], [`routes`], [`billing`], [`backoff`], [`store::record`] (encoding), [`drain::state`]
//! (the drain's rules) and [`status`] payload functions; actors are thin shells around them.
//! Actors know their peers only as `Recipient<M>` (the Buffer its link as a
//! [`model::Publish`] handle); `awslink`'s `app.rs` wires them.

pub mod address;
pub mod backoff;
pub mod billing;
pub mod clock;
pub mod cloud;
pub mod drain;
pub mod fatal;
pub mod fault;
pub mod local;
pub mod messages;
pub mod metrics;
pub mod model;
pub mod pkcs11;
pub mod quota;
pub mod routes;
pub mod shadow;
pub mod status;
pub mod store;
pub mod supervisor;
/// Probe recipients for testing one actor alone.
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tls;
pub mod topics;
pub mod tpm;
