//! The journal on disk: the sled-backed uplink queue ([`journal`]) and its record encoding
//! ([`record`]). The drain that empties it lives in `crate::drain`.

pub mod journal;
pub mod record;
