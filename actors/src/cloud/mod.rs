//! The connection to AWS IoT: the [`CloudLink`] actor ([`link`]), the MQTT session on its own
//! I/O thread ([`session`]), the [`Publisher`] the drain publishes through ([`publisher`]) with
//! the packet ids of its unacknowledged publishes ([`inflight`]), and the TLS connection that
//! names why a handshake failed ([`tls_probe`]).

pub mod inflight;
pub mod link;
pub mod publisher;
pub mod session;
pub mod tls_probe;

pub use link::CloudLink;
pub use publisher::Publisher;
