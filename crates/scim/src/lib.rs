//! SCIM 2.0 semantics over JSON documents: the User resource mapping, the
//! PATCH engine and the filter grammar. No I/O and no HTTP: the `http`
//! crate routes requests here and the engine commits the results.
//!
//! Resources are handled as `serde_json::Value` documents rather than
//! derived structs because SCIM attribute names are case-insensitive and
//! PATCH paths address arbitrary attributes; every document is validated
//! into a domain [`Identity`](lockstep_domain::Identity) before it is
//! stored, whether it arrived by POST, PUT or PATCH.

mod error;
pub mod filter;
mod patch;
mod query;
mod schema;
mod user;

pub use error::{ScimProblem, ScimType};
pub use patch::apply_patch;
pub use query::{ListParams, list_query};
pub use user::{user_from_document, user_to_document};
