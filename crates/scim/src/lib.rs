//! SCIM 2.0 semantics over JSON documents: the resource schemas (which both
//! validate documents and render discovery), the User and Agent mappings, the PATCH
//! engine, the filter grammar and its evaluation. No I/O and no HTTP: the
//! `http` crate routes requests here and the engine commits the results.
//!
//! Resources are handled as `serde_json::Value` documents rather than
//! derived structs because SCIM attribute names are case-insensitive and
//! PATCH paths address arbitrary attributes; every document is validated
//! into a domain type before it is stored, whether it arrived by POST, PUT or
//! PATCH.

mod agent;
pub mod discovery;
mod document;
mod error;
pub mod eval;
pub mod filter;
mod group;
mod patch;
mod query;
pub mod schema;
mod user;

pub use agent::{AGENT, AGENTIC_APPLICATION, AGENTIC_APPLICATIONS, AGENTS, NonHumanResource};
pub use document::{GROUP, Limits, RESOURCE_TYPES, ResourceSchema, USER, project, validate_document};
pub use error::{ScimProblem, ScimType};
pub use group::{group_from_document, group_to_document, group_to_document_named};
pub use patch::apply_patch;
pub use query::{
    DEFAULT_COUNT, ListParams, ListPlan, MAX_COUNT, MAX_EXAMINED, group_list_query, kind_only, list_query,
    non_human_list_query,
};
pub use user::{etag, patch_user, user_from_document, user_matches, user_to_document};
