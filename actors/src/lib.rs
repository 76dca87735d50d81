//! # awslink-actors
//!
//! The actors of awslink, the typed messages between them, and the pure logic and stores they
//! use (the whole picture, with every file's job: `ARCHITECTURE.md`).
//!
//! ```text
//!  local apps ⇄ Mosquitto ⇄ local::intake (rumqttc) ──commit──▶ store (sled journal)
//!                  ▲                                                │ Journaled
//!                  │                                                ▼
//!                  │                      drain::Buffer ──Publish (cloud::Publisher)──▶ AWS IoT
//!                  │                            ▲ Acked, LinkChanged         ▲            │
//!                  │                            │                  cloud::CloudLink ◀─────┘
//!         local::LocalBroker ◀── CloudInbound ──┼──────────────────────────┘ (downlink store)
//!  supervisor::Supervisor: one CloudLink per attempt, backoff, LinkChanged → Buffer,
//!                          ConnectionStatus → status::StatusPublisher
//!  shadow: ShadowIngest (on the intake thread) and the ShadowMapper actor
//! ```
//!
//! Pure logic lives in [`topics`], [`routes`], [`billing`], [`backoff`], [`quota`],
//! [`store::record`] (encoding), [`lanes`] (which lane a message goes to), [`drain::state`],
//! [`drain::lanes`] and [`drain::schedule`] (the drain's rules per lane, the shared window, expiry,
//! which lane gets each publish), [`cloud::inflight`] (packet ids, dropped publishes),
//! [`local::intake::hold`]
//! (flow control), [`shadow::convert`] and the [`status`] payload functions; actors are thin
//! shells around them. Actors know their peers only as `Recipient<M>` (the Buffer its link as a
//! [`model::Publish`] handle); the `awslink` binary's `src/wiring.rs` wires them.

pub mod address;
pub mod backoff;
pub mod batching;
pub mod billing;
pub mod clock;
pub mod cloud;
pub mod drain;
pub mod fatal;
pub mod fault;
pub mod lanes;
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
mod sync;
/// Probe recipients for testing one actor alone.
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tls;
pub mod topics;
pub mod tpm;
