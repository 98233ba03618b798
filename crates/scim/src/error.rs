//! SCIM errors (RFC 7644 §3.12), before they become JSON.

use std::fmt;

/// The `scimType` values we emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    /// The filter syntax was invalid.
    InvalidFilter,
    /// The request body was not valid SCIM.
    InvalidSyntax,
    /// A PATCH path was invalid.
    InvalidPath,
    /// A PATCH path selected nothing, or no path where one is required.
    NoTarget,
    /// A value was of the wrong type or out of range.
    InvalidValue,
    /// An attempt to change a read-only attribute.
    Mutability,
    /// A uniqueness constraint (409).
    Uniqueness,
    /// The filter would select too many results.
    TooMany,
}

impl ScimType {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::Mutability => "mutability",
            ScimType::Uniqueness => "uniqueness",
            ScimType::TooMany => "tooMany",
        }
    }
}

/// A SCIM error: HTTP status, `scimType` and detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimProblem {
    /// HTTP status.
    pub status: u16,
    /// `scimType`, for 400 and 409.
    pub scim_type: Option<ScimType>,
    /// Human-readable detail.
    pub detail: String,
}

impl ScimProblem {
    /// A 400 with a `scimType`.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self { status: 400, scim_type: Some(scim_type), detail: detail.into() }
    }
}

impl fmt::Display for ScimProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scim_type {
            Some(t) => write!(f, "{} {}: {}", self.status, t.as_str(), self.detail),
            None => write!(f, "{}: {}", self.status, self.detail),
        }
    }
}

impl std::error::Error for ScimProblem {}
