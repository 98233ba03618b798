//! What the User resource accepts, by canonical attribute name.

/// How an attribute is shaped and who may write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A single string.
    String,
    /// A single boolean.
    Boolean,
    /// A single complex value with these sub-attributes.
    Complex(&'static [&'static str]),
    /// A multi-valued complex attribute.
    MultiComplex,
    /// Set by the service provider only; writes are ignored on PUT/POST
    /// (RFC 7644 §3.5.1) and refused by PATCH.
    ReadOnly,
    /// Accepted, never stored or returned (RFC 7643 §4.1.1 `password`).
    WriteOnly,
}

pub(crate) const NAME_SUBS: &[&str] =
    &["formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix"];

/// The enterprise User extension; stored as an opaque object.
pub(crate) const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Core User attributes (RFC 7643 §4.1) with their shapes.
pub(crate) const USER_ATTRIBUTES: &[(&str, Shape)] = &[
    ("id", Shape::ReadOnly),
    ("meta", Shape::ReadOnly),
    ("groups", Shape::ReadOnly),
    ("schemas", Shape::ReadOnly),
    ("password", Shape::WriteOnly),
    ("externalId", Shape::String),
    ("userName", Shape::String),
    ("displayName", Shape::String),
    ("nickName", Shape::String),
    ("profileUrl", Shape::String),
    ("title", Shape::String),
    ("userType", Shape::String),
    ("preferredLanguage", Shape::String),
    ("locale", Shape::String),
    ("timezone", Shape::String),
    ("active", Shape::Boolean),
    ("name", Shape::Complex(NAME_SUBS)),
    ("emails", Shape::MultiComplex),
    ("phoneNumbers", Shape::MultiComplex),
    ("ims", Shape::MultiComplex),
    ("photos", Shape::MultiComplex),
    ("addresses", Shape::MultiComplex),
    ("entitlements", Shape::MultiComplex),
    ("roles", Shape::MultiComplex),
    ("x509Certificates", Shape::MultiComplex),
];

/// The canonical spelling and shape of an attribute name, case-insensitively.
pub(crate) fn lookup(name: &str) -> Option<(&'static str, Shape)> {
    if name.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
        return Some((ENTERPRISE_SCHEMA, Shape::Complex(&[])));
    }
    USER_ATTRIBUTES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).copied()
}

/// Canonical spelling of a `name` sub-attribute.
pub(crate) fn name_sub(sub: &str) -> Option<&'static str> {
    NAME_SUBS.iter().find(|n| n.eq_ignore_ascii_case(sub)).copied()
}
