//! Every wire format Lockstep speaks, and the only serde boundary.
//!
//! Types here mirror documents on the wire exactly (field names, optional
//! fields, error shapes); conversion from domain types is explicit so that a
//! change to an internal type can never silently change a protocol.

pub mod admin;
pub mod oauth;
pub mod scim;
pub mod sources;
mod time;

pub use time::{format_rfc3339, parse_rfc3339};
