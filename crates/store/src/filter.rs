//! Listings: the indexed fields a query can select on, and their reference
//! semantics.

use lockstep_domain::{Group, Identity, IdentityStatus};

/// A text comparison, as SCIM filters spell them (`ne` is `Not(Eq)`, `pr`
/// is [`Filter::Present`]). Ordering compares code points, the order in
/// which both Rust strings and SQLite's `BINARY` collation sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextOp {
    /// Equal.
    Eq,
    /// Starts with.
    StartsWith,
    /// Ends with.
    EndsWith,
    /// Contains.
    Contains,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

impl TextOp {
    /// Whether `actual` compares to `expected` (both already case-folded
    /// where the field ignores case).
    pub fn holds(self, actual: &str, expected: &str) -> bool {
        match self {
            TextOp::Eq => actual == expected,
            TextOp::StartsWith => actual.starts_with(expected),
            TextOp::EndsWith => actual.ends_with(expected),
            TextOp::Contains => actual.contains(expected),
            TextOp::Gt => actual > expected,
            TextOp::Ge => actual >= expected,
            TextOp::Lt => actual < expected,
            TextOp::Le => actual <= expected,
        }
    }
}

/// A selection over searchable fields `F`: a boolean tree of text
/// comparisons. Two-valued: a comparison on an absent value is false, so
/// `Not` of it is true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter<F> {
    /// Everything.
    All,
    /// Some value of `field` compares to `value` (case-folded by the
    /// backend when the field ignores case).
    Text {
        /// Which field.
        field: F,
        /// How.
        op: TextOp,
        /// The operand.
        value: String,
    },
    /// `field` has a non-empty value.
    Present(F),
    /// Every part holds.
    And(Vec<Filter<F>>),
    /// Some part holds.
    Or(Vec<Filter<F>>),
    /// The part does not hold.
    Not(Box<Filter<F>>),
}

impl<F> Filter<F> {
    /// `field eq value`.
    pub fn eq(field: F, value: impl Into<String>) -> Self {
        Filter::Text { field, op: TextOp::Eq, value: value.into() }
    }

    /// Evaluates the filter given a field's values (the reference
    /// semantics every backend must reproduce).
    pub fn holds<'a, V>(&self, values: &V) -> bool
    where
        F: Copy + SearchField,
        V: Fn(F) -> Vec<std::borrow::Cow<'a, str>>,
    {
        match self {
            Filter::All => true,
            Filter::Text { field, op, value } => {
                let expected = field.fold(value);
                values(*field).iter().any(|v| op.holds(&field.fold(v), &expected))
            }
            Filter::Present(field) => values(*field).iter().any(|v| !v.is_empty()),
            Filter::And(parts) => parts.iter().all(|p| p.holds(values)),
            Filter::Or(parts) => parts.iter().any(|p| p.holds(values)),
            Filter::Not(part) => !part.holds(values),
        }
    }
}

/// A field filters can select on.
pub trait SearchField: Copy {
    /// Whether comparisons ignore case (SCIM `caseExact: false`).
    fn ignores_case(self) -> bool;

    /// Whether a resource can hold several values (then "not equal" is not
    /// "not (equal)": some *other* value may differ).
    fn multi_valued(self) -> bool {
        false
    }

    /// Whether the field is a boolean spelled `"true"` / `"false"`.
    fn boolean(self) -> bool {
        false
    }

    /// `text` as compared: under the identifier key ([`lockstep_domain::text::fold`]:
    /// width, compatibility forms and case) when the field ignores case.
    fn fold(self, text: &str) -> String {
        if self.ignores_case() { lockstep_domain::text::fold(text) } else { text.to_owned() }
    }
}

/// The identity fields a listing can select on. Each is backed by an index
/// in every backend (B-tree for equality, order and prefix; trigrams for
/// substring and suffix), because these are what provisioning clients
/// query and a directory scan per lookup would not survive a large tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentityField {
    /// The identity id (exact).
    Id,
    /// `userName` (ignores case).
    UserName,
    /// `externalId` (exact).
    ExternalId,
    /// `displayName` (ignores case).
    DisplayName,
    /// Any of the identity's e-mail addresses (ignores case).
    Email,
    /// `"true"` when the identity is active, else `"false"`.
    Active,
    /// The identity kind's name (ignores case).
    Kind,
}

impl SearchField for IdentityField {
    fn ignores_case(self) -> bool {
        !matches!(self, IdentityField::Id | IdentityField::ExternalId)
    }

    fn multi_valued(self) -> bool {
        self == IdentityField::Email
    }

    fn boolean(self) -> bool {
        self == IdentityField::Active
    }
}

impl IdentityField {
    /// The values of this field on `identity`.
    pub fn values(self, identity: &Identity) -> Vec<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            IdentityField::Id => vec![Cow::Owned(identity.id.to_string())],
            IdentityField::UserName => vec![Cow::Borrowed(identity.user_name.as_str())],
            IdentityField::ExternalId => {
                identity.external_id.as_deref().map(Cow::Borrowed).into_iter().collect()
            }
            IdentityField::DisplayName => {
                identity.display_name.as_deref().map(Cow::Borrowed).into_iter().collect()
            }
            // An empty address is no address (SCIM drops them on input).
            IdentityField::Email => {
                identity.emails.iter().filter(|e| !e.is_empty()).map(|e| Cow::Borrowed(e.as_str())).collect()
            }
            IdentityField::Active => {
                vec![Cow::Borrowed(if identity.status == IdentityStatus::Active { "true" } else { "false" })]
            }
            IdentityField::Kind => vec![Cow::Borrowed(identity.kind.as_str())],
        }
    }
}

/// Which identities a listing selects (always live ones).
pub type IdentityFilter = Filter<IdentityField>;

/// A page request over live identities, ordered by creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityQuery {
    /// Selection.
    pub filter: IdentityFilter,
    /// Zero-based offset.
    pub offset: usize,
    /// Maximum number of items.
    pub limit: usize,
}

/// A page of identities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityPage {
    /// How many identities match in total.
    pub total: usize,
    /// The page.
    pub items: Vec<Identity>,
}

/// The group fields a listing can select on, each indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupField {
    /// The group id (exact).
    Id,
    /// `displayName` (ignores case).
    DisplayName,
    /// `externalId` (exact).
    ExternalId,
}

impl SearchField for GroupField {
    fn ignores_case(self) -> bool {
        matches!(self, GroupField::DisplayName)
    }
}

impl GroupField {
    /// The values of this field on `group`.
    pub fn values(self, group: &Group) -> Vec<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            GroupField::Id => vec![Cow::Owned(group.id.to_string())],
            GroupField::DisplayName => vec![Cow::Borrowed(group.display_name.as_str())],
            GroupField::ExternalId => group.external_id.as_deref().map(Cow::Borrowed).into_iter().collect(),
        }
    }
}

/// Which groups a listing selects.
pub type GroupFilter = Filter<GroupField>;

/// A page request over groups, ordered by creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupQuery {
    /// Selection.
    pub filter: GroupFilter,
    /// Zero-based offset.
    pub offset: usize,
    /// Maximum number of items.
    pub limit: usize,
}

/// A page of groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPage {
    /// How many groups match in total.
    pub total: usize,
    /// The page.
    pub items: Vec<Group>,
}
