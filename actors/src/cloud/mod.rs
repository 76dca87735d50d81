//! The connection to AWS IoT: the [`CloudLink`] actor ([`link`]), the paho [`Publisher`] the
//! drain publishes through ([`publisher`]) with its queue of delivery tokens ([`tokens`]), and the TLS probe that explains failed handshakes
//! ([`tls_probe`]).

pub mod link;
pub mod publisher;
pub mod tls_probe;
pub mod tokens;

pub use link::CloudLink;
pub use publisher::Publisher;
