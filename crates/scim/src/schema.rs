//! The schemas we serve, as data.
//!
//! One table per schema drives validation of incoming documents *and* the
//! `/Schemas` discovery endpoint, so what is advertised is exactly what is
//! enforced (scim2-tester writes every advertised attribute and expects it
//! back).

/// SCIM attribute data types (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// `string`
    String,
    /// `boolean`
    Boolean,
    /// `complex`
    Complex,
    /// `reference`, with its `referenceTypes`.
    Reference(&'static [&'static str]),
    /// `dateTime`
    DateTime,
    /// `binary` (base64)
    Binary,
}

impl Type {
    fn wire(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Complex => "complex",
            Type::Reference(_) => "reference",
            Type::DateTime => "dateTime",
            Type::Binary => "binary",
        }
    }
}

/// Who may write an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Set by the service provider only.
    ReadOnly,
    /// Client-writable.
    ReadWrite,
    /// Accepted on write, never returned.
    WriteOnly,
}

/// One attribute definition.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub name: &'static str,
    pub ty: Type,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub sub: &'static [Attr],
    pub canonical: &'static [&'static str],
    pub description: &'static str,
    /// Names something (`userName`, `externalId`, a group's `displayName`):
    /// invisible formatting and direction characters are refused, and the
    /// identifier length limit applies.
    pub identifier: bool,
    /// May hold line breaks (`addresses.formatted`); every other string is
    /// single-line and refuses control characters.
    pub multiline: bool,
}

const fn s(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        ty: Type::String,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        sub: &[],
        canonical: &[],
        description,
        identifier: false,
        multiline: false,
    }
}

const fn ident(a: Attr) -> Attr {
    Attr { identifier: true, ..a }
}

const fn with(a: Attr, ty: Type) -> Attr {
    Attr { ty, ..a }
}

const fn multi(name: &'static str, description: &'static str, sub: &'static [Attr]) -> Attr {
    Attr { multi: true, ty: Type::Complex, sub, ..s(name, description) }
}

const TYPE_PRIMARY_DISPLAY: [Attr; 3] = [
    s("display", "A human-readable name, primarily used for display purposes."),
    s("type", "A label indicating the attribute's function."),
    with(s("primary", "Whether this is the primary value."), Type::Boolean),
];

macro_rules! valued {
    ($value:expr) => {
        &[$value, TYPE_PRIMARY_DISPLAY[0], TYPE_PRIMARY_DISPLAY[1], TYPE_PRIMARY_DISPLAY[2]]
    };
}

/// Core User schema URN.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Enterprise User extension URN.
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Lockstep's extension for non-human identities. Under the
/// `urn:ietf:params:scim:schemas:extension:<name>:2.0:User` pattern because
/// Entra ID's attribute mapping only offers custom extensions named so.
pub const LOCKSTEP_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:lockstep:2.0:User";

/// Agent schema URN (`draft-abbey-scim-agent-extension-00`,
/// `draft-wzdk-scim-agent-resource-00`).
pub const AGENT_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Agent";

/// AgenticApplication schema URN (`draft-abbey-scim-agent-extension-00`).
pub const AGENTIC_APPLICATION_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:AgenticApplication";

/// Core Group schema URN.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// Core User attributes (RFC 7643 §4.1) that Lockstep stores and returns.
/// `id`, `meta` and `groups` are read-only and rendered by the server.
pub const USER_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        ..ident(s(
            "userName",
            "Unique identifier for the User, used to sign in. Unique, compared ignoring case and width.",
        ))
    },
    Attr { case_exact: true, ..ident(s("externalId", "The provisioning client's identifier for the User.")) },
    Attr {
        ty: Type::Complex,
        sub: &[
            s("formatted", "The full name, formatted for display."),
            s("familyName", "The family name."),
            s("givenName", "The given name."),
            s("middleName", "The middle name(s)."),
            s("honorificPrefix", "Honorific prefix(es)."),
            s("honorificSuffix", "Honorific suffix(es)."),
        ],
        ..s("name", "The components of the User's name.")
    },
    s("displayName", "The name of the User, suitable for display."),
    s("nickName", "The casual way to address the User."),
    with(s("profileUrl", "A URI pointing to the User's online profile."), Type::Reference(&["external"])),
    s("title", "The User's title."),
    s("userType", "The relationship between the organisation and the User."),
    s("preferredLanguage", "The User's preferred language."),
    s("locale", "The User's default location for localisation."),
    s("timezone", "The User's time zone, in IANA format."),
    // Advertised as required because every identity has a definite status and
    // it cannot be removed; a document that omits it is still accepted (true
    // on create, unchanged on replace), as some HR tools never send it.
    Attr {
        required: true,
        ..with(
            s("active", "The User's administrative status. false revokes every session of the User."),
            Type::Boolean,
        )
    },
    Attr {
        mutability: Mutability::WriteOnly,
        ..s(
            "password",
            "Accepted and discarded: Lockstep does not authenticate with passwords. Never returned.",
        )
    },
    multi("emails", "Email addresses for the User.", valued!(s("value", "The email address."))),
    multi("phoneNumbers", "Phone numbers for the User.", valued!(s("value", "The phone number."))),
    multi("ims", "Instant messaging addresses.", valued!(s("value", "The address."))),
    multi(
        "photos",
        "URLs of photos of the User.",
        valued!(with(s("value", "The URL of the photo."), Type::Reference(&["external"]))),
    ),
    multi(
        "addresses",
        "Physical mailing addresses.",
        &[
            Attr { multiline: true, ..s("formatted", "The full address, formatted for display.") },
            s("streetAddress", "The street address."),
            s("locality", "The city or locality."),
            s("region", "The state or region."),
            s("postalCode", "The postal code."),
            s("country", "The country."),
            TYPE_PRIMARY_DISPLAY[1],
            TYPE_PRIMARY_DISPLAY[2],
        ],
    ),
    Attr {
        mutability: Mutability::ReadOnly,
        ..multi(
            "groups",
            "The Groups the User belongs to. Read-only: membership changes through /Groups.",
            &[
                Attr {
                    mutability: Mutability::ReadOnly,
                    ..with(s("value", "The id of the Group."), Type::String)
                },
                Attr {
                    mutability: Mutability::ReadOnly,
                    ..with(s("$ref", "The URI of the Group."), Type::Reference(&["Group"]))
                },
                Attr { mutability: Mutability::ReadOnly, ..s("display", "The Group's displayName.") },
                Attr {
                    mutability: Mutability::ReadOnly,
                    canonical: &["direct"],
                    ..s("type", "How the User is a member.")
                },
            ],
        )
    },
    multi("entitlements", "Entitlements of the User.", valued!(s("value", "The entitlement."))),
    multi("roles", "Roles of the User.", valued!(s("value", "The role."))),
    multi(
        "x509Certificates",
        "X.509 certificates of the User.",
        valued!(with(s("value", "The DER certificate, base64."), Type::Binary)),
    ),
];

/// Enterprise User extension attributes (RFC 7643 §4.3).
pub const ENTERPRISE_ATTRS: &[Attr] = &[
    s("employeeNumber", "Numeric or alphanumeric identifier assigned to the person."),
    s("costCenter", "Name of a cost center."),
    s("organization", "Name of an organization."),
    s("division", "Name of a division."),
    s("department", "Name of a department."),
    Attr {
        ty: Type::Complex,
        sub: &[
            with(s("value", "The id of the manager's User."), Type::Reference(&["User"])),
            with(s("$ref", "The URI of the manager's User."), Type::Reference(&["User"])),
            Attr { mutability: Mutability::ReadOnly, ..s("displayName", "The manager's displayName.") },
        ],
        ..s("manager", "The User's manager.")
    },
];

/// The identity kinds a User may have (an agent is an Agent resource).
const USER_KINDS: &[&str] = &["human", "service_account", "workload", "api_client"];

/// Lockstep extension attributes.
pub const LOCKSTEP_ATTRS: &[Attr] = &[
    Attr {
        case_exact: true,
        canonical: USER_KINDS,
        ..s(
            "identityKind",
            "What the identity is. Non-human kinds need an owner. Agents are Agent resources (/Agents).",
        )
    },
    Attr {
        ty: Type::Complex,
        sub: &[
            with(s("value", "The id of the owning human User."), Type::Reference(&["User"])),
            with(s("$ref", "The URI of the owning User."), Type::Reference(&["User"])),
        ],
        ..s("owner", "The human accountable for a non-human identity (required for those).")
    },
    Attr {
        case_exact: true,
        canonical: lockstep_domain::RiskTier::NAMES,
        ..s(
            "riskTier",
            "The identity's risk tier: privileged puts it in the privileged policy tier, non_human in the non-human one.",
        )
    },
];

/// Finds an attribute by name, case-insensitively.
pub fn find(attrs: &'static [Attr], name: &str) -> Option<&'static Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Read-only attributes common to every resource.
pub fn is_common_read_only(name: &str) -> bool {
    ["id", "meta", "schemas"].iter().any(|n| n.eq_ignore_ascii_case(name))
}

use serde_json::{Value, json};

fn attr_json(a: &Attr) -> Value {
    let mut v = json!({
        "name": a.name,
        "type": a.ty.wire(),
        "multiValued": a.multi,
        "description": a.description,
        "required": a.required,
        "mutability": match a.mutability {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::WriteOnly => "writeOnly",
        },
        "returned": match a.mutability {
            Mutability::WriteOnly => "never",
            _ if a.name == "id" => "always",
            _ => "default",
        },
        "uniqueness": if a.identifier && matches!(a.name, "userName" | "agentUserName" | "name") { "server" } else { "none" },
    });
    if let Some(obj) = v.as_object_mut() {
        if !matches!(a.ty, Type::Complex | Type::Boolean) {
            obj.insert("caseExact".into(), json!(a.case_exact));
        }
        if let Type::Reference(types) = a.ty {
            obj.insert("referenceTypes".into(), json!(types));
        }
        if !a.canonical.is_empty() {
            obj.insert("canonicalValues".into(), json!(a.canonical));
        }
        if !a.sub.is_empty() {
            obj.insert("subAttributes".into(), Value::Array(a.sub.iter().map(attr_json).collect()));
        }
    }
    v
}

/// A `/Schemas/{id}` document.
pub fn schema_document(id: &str, name: &str, description: &str, attrs: &[Attr], base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    })
}

/// Core Group attributes (RFC 7643 §4.2). Members are Users (no nesting).
pub const GROUP_ATTRS: &[Attr] = &[
    Attr { required: true, ..ident(s("displayName", "A human-readable name for the Group.")) },
    Attr {
        case_exact: true,
        ..ident(s("externalId", "The provisioning client's identifier for the Group."))
    },
    multi(
        "members",
        "The Users in the Group. Removing a member is a directory event for that User.",
        &[
            with(s("value", "The id of the member User."), Type::Reference(&["User"])),
            with(s("$ref", "The URI of the member User."), Type::Reference(&["User"])),
            Attr { canonical: &["User"], ..s("type", "The type of the member; only User is supported.") },
            Attr {
                mutability: Mutability::ReadOnly,
                ..s(
                    "display",
                    "The member's userName (rendered from the member; ignored on input, as Okta Group Push sends it).",
                )
            },
        ],
    ),
];

/// `owners` of agents and agentic applications.
const OWNERS: Attr = multi(
    "owners",
    "The humans accountable for the resource. While none is active it gets no sessions or credentials, and losing the last active owner applies the policy's owner-lost impact.",
    &[
        with(s("value", "The id of the owning User."), Type::Reference(&["User"])),
        with(s("$ref", "The URI of the owning User."), Type::Reference(&["User"])),
        Attr { canonical: &["User"], ..s("type", "The type of the owner; only User is supported.") },
        Attr { mutability: Mutability::ReadOnly, ..s("display", "The owner's userName.") },
    ],
);

/// Agent attributes: the union of the two agent drafts, `name` and
/// `agentUserName` being one handle (see `agent.rs`).
pub const AGENT_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        ..ident(s(
            "agentUserName",
            "Unique handle of the Agent (draft-wzdk). The same value as name: either may be sent, both are returned.",
        ))
    },
    // Read-only in the table (so a client filling every writable attribute
    // does not send two different handles), yet accepted as the handle when
    // agentUserName is absent, and as a PATCH path: see `agent.rs`.
    Attr {
        mutability: Mutability::ReadOnly,
        ..ident(s(
            "name",
            "Unique handle of the Agent (draft-abbey): the same value as agentUserName, accepted in its place when agentUserName is absent.",
        ))
    },
    Attr {
        case_exact: true,
        ..ident(s("externalId", "The provisioning client's identifier for the Agent."))
    },
    s("displayName", "The name of the Agent, suitable for display."),
    s("description", "What the Agent does."),
    s("agentType", "The kind of agent, as the provisioning client classifies it."),
    Attr {
        required: true,
        ..with(
            s(
                "active",
                "Whether the Agent may act. false revokes every session and credential of the Agent.",
            ),
            Type::Boolean,
        )
    },
    OWNERS,
];

/// AgenticApplication attributes (`draft-abbey-scim-agent-extension-00`).
pub const AGENTIC_APPLICATION_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        ..ident(s(
            "name",
            "Unique handle of the AgenticApplication. Compared ignoring case and width; shares its namespace with userName and agentUserName.",
        ))
    },
    Attr {
        case_exact: true,
        ..ident(s("externalId", "The provisioning client's identifier for the AgenticApplication."))
    },
    s("displayName", "The name of the AgenticApplication, suitable for display."),
    s("description", "What the application does."),
    Attr {
        required: true,
        ..with(
            s(
                "active",
                "Whether the application may act. false revokes every session and credential it holds.",
            ),
            Type::Boolean,
        )
    },
    OWNERS,
];
