//! SCIM 2.0 envelopes (RFC 7644): errors, list responses, PATCH requests.
//!
//! Resource bodies themselves are handled as JSON documents by the `scim`
//! crate, because SCIM attribute names are case-insensitive and extension
//! schemas are open-ended, which a derived struct cannot express.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Error message schema.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// List response schema.
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// PATCH request schema.
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The SCIM media type.
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";

/// RFC 7644 §3.12 error body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScimError {
    /// Always [`ERROR_SCHEMA`].
    pub schemas: Vec<String>,
    /// HTTP status as a string, as the RFC requires.
    pub status: String,
    /// `invalidFilter`, `uniqueness`, … for 400 and 409.
    #[serde(rename = "scimType", skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    /// Human-readable detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ScimError {
    /// An error body.
    pub fn new(status: u16, scim_type: Option<&str>, detail: impl Into<String>) -> Self {
        Self {
            schemas: vec![ERROR_SCHEMA.to_owned()],
            status: status.to_string(),
            scim_type: scim_type.map(str::to_owned),
            detail: Some(detail.into()),
        }
    }
}

/// RFC 7644 §3.4.2 list response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    /// Always [`LIST_SCHEMA`].
    pub schemas: Vec<String>,
    /// Matches in total.
    #[serde(rename = "totalResults")]
    pub total_results: usize,
    /// 1-based index of the first item.
    #[serde(rename = "startIndex")]
    pub start_index: usize,
    /// Items on this page.
    #[serde(rename = "itemsPerPage")]
    pub items_per_page: usize,
    /// The resources.
    #[serde(rename = "Resources")]
    pub resources: Vec<Value>,
}

impl ListResponse {
    /// A page.
    pub fn new(total_results: usize, start_index: usize, resources: Vec<Value>) -> Self {
        Self {
            schemas: vec![LIST_SCHEMA.to_owned()],
            total_results,
            start_index,
            items_per_page: resources.len(),
            resources,
        }
    }
}

/// RFC 7644 §3.5.2 PATCH request.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PatchRequest {
    /// Must contain [`PATCH_SCHEMA`].
    pub schemas: Vec<String>,
    /// The operations, applied in order, all or nothing.
    #[serde(rename = "Operations")]
    pub operations: Vec<PatchOperation>,
}

/// One PATCH operation.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PatchOperation {
    /// `add`, `remove` or `replace`, in any case (Entra ID sends `Replace`).
    pub op: String,
    /// Attribute path; absent for whole-resource operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The value; absent for `remove`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// Search request schema.
pub const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// RFC 7644 §3.4.3 `POST /.search` body.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SearchRequest {
    /// Must contain [`SEARCH_SCHEMA`].
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Filter expression.
    #[serde(default)]
    pub filter: Option<String>,
    /// 1-based start index.
    #[serde(rename = "startIndex", default)]
    pub start_index: Option<i64>,
    /// Page size.
    #[serde(default)]
    pub count: Option<i64>,
    /// Attributes to return.
    #[serde(default)]
    pub attributes: Option<Vec<String>>,
    /// Attributes to leave out.
    #[serde(rename = "excludedAttributes", default)]
    pub excluded_attributes: Option<Vec<String>>,
    /// Not supported (advertised as such); refused if present.
    #[serde(rename = "sortBy", default)]
    pub sort_by: Option<String>,
    /// Not supported; refused if present.
    #[serde(rename = "sortOrder", default)]
    pub sort_order: Option<String>,
}
