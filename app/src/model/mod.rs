//! Types shared by the server and the browser: ids, views returned by the API, requests, and
//! the validation rules. Nothing here touches a database or the network.

mod error;
mod validate;

pub use error::{ApiError, ErrorEnvelope};
pub use validate::*;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

id_type!(
    /// A user's id: a UUIDv7 string, time-ordered.
    UserId
);
id_type!(
    /// A project's id: a UUIDv7 string.
    ProjectId
);
id_type!(
    /// A personal API token's id (not the secret): a UUIDv7 string.
    ApiTokenId
);
id_type!(
    /// A node's id.
    NodeId
);
id_type!(
    /// A plan's id (`plan-small` for the seeded ones, UUIDv7 for others).
    PlanId
);

mod backup;
mod backup_destination;
mod build;
mod deployment;
mod deployment_form;
mod domain;
mod metrics;
mod validate_spec;
pub use backup::*;
pub use backup_destination::*;
pub use build::*;
pub use deployment::*;
pub use deployment_form::DeploymentForm;
pub use domain::*;
pub use metrics::*;
pub use validate_spec::*;

/// Platform-wide role of a user. `Admin` runs the platform and sees every project;
/// `Customer` sees only the projects they are a member of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    Admin,
    Customer,
}

impl UserRole {
    /// The stored and displayed form: `admin` or `customer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Customer => "customer",
        }
    }

    /// Parses `admin` / `customer`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "customer" => Some(Self::Customer),
            _ => None,
        }
    }
}

/// A member's role within one project. Owners manage members and may delete the project;
/// members use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Owner,
    Member,
}

impl MemberRole {
    /// The stored and displayed form: `owner` or `member`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
        }
    }

    /// Parses `owner` / `member`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Self::Owner),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// A user as the API shows it. Never carries a password hash or a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: UserRole,
    /// True until the user replaces a generated one-time password.
    pub must_change_password: bool,
    /// Unix epoch milliseconds.
    pub created_at_ms: i64,
}

/// A project as the API shows it to one caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ProjectView {
    pub id: ProjectId,
    pub name: String,
    /// The caller's role in the project; `None` for an admin who is not a member.
    pub my_role: Option<MemberRole>,
    pub member_count: i64,
    /// Unix epoch milliseconds.
    pub created_at_ms: i64,
}

/// One member of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct MemberView {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: MemberRole,
    /// Unix epoch milliseconds.
    pub added_at_ms: i64,
}

/// One entry of the audit log: who did what to which object, when, from which address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuditEventView {
    pub id: String,
    /// Email of the acting user, or `system` for Berth itself.
    pub actor: String,
    /// Dotted verb, e.g. `project.create`, `member.add`, `user.sign_in_failed`.
    pub action: String,
    /// What was acted on, e.g. `project:<id>`.
    pub target: String,
    /// Free-form details (JSON text) with no secrets in it.
    pub detail: String,
    pub client_addr: Option<String>,
    /// Unix epoch milliseconds.
    pub created_at_ms: i64,
}

/// A personal API token as listed; the secret is shown once at creation and never again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ApiTokenView {
    pub id: ApiTokenId,
    pub name: String,
    /// First characters of the secret, to tell tokens apart (`berth_abc1…`).
    pub prefix: String,
    /// Unix epoch milliseconds; `None` for a token that does not expire.
    pub expires_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// A newly created token: the only time its secret is returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NewApiToken {
    pub token: ApiTokenView,
    /// Send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// Request to create a project.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CreateProject {
    pub name: String,
}

/// Request to rename a project.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RenameProject {
    pub name: String,
}

/// Request to delete a project: `confirm_name` must equal the project's name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeleteProject {
    pub confirm_name: String,
}

/// Request to add an existing user to a project by email.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AddMember {
    pub email: String,
    pub role: MemberRole,
}

/// Request to create a user (admins only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CreateUser {
    pub email: String,
    pub display_name: String,
    pub role: UserRole,
    pub password: String,
}

/// Request to create a personal API token. `expires_in_days` of `None` means no expiry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CreateApiToken {
    pub name: String,
    pub expires_in_days: Option<u32>,
}

/// Request to change the caller's own password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
}

/// What the sign-in page needs to know before anyone is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInOptions {
    /// Whether "Sign in with SSO" is offered (an OIDC issuer is configured).
    pub sso_enabled: bool,
    /// Label of the SSO button, e.g. the identity provider's name.
    pub sso_label: String,
}

/// Whether placement may use a node. `Draining` and `Down` nodes are never chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Active,
    Draining,
    Down,
}

impl NodeState {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draining => "draining",
            Self::Down => "down",
        }
    }

    /// Parses `active` / `draining` / `down`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "draining" => Some(Self::Draining),
            "down" => Some(Self::Down),
            _ => None,
        }
    }
}

/// A node (one Docker engine) with its capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NodeView {
    pub id: NodeId,
    pub name: String,
    pub region: String,
    pub availability_zone: String,
    /// `unix:///var/run/docker.sock`, `tcp://host:port` or `ssh://user@host`.
    pub endpoint: String,
    /// Thousandths of a CPU core (`NCPU` × 1000 for a registered engine).
    pub cpu_millicores: i64,
    /// Bytes (`MemTotal`).
    pub memory_bytes: i64,
    pub max_instances: i64,
    pub state: NodeState,
    pub engine_version: Option<String>,
    /// Unix epoch milliseconds of the last successful contact.
    pub last_seen_at_ms: Option<i64>,
    /// Why the last contact with the engine failed; `None` while it answers. Placement skips
    /// a node with an error.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Whether Berth holds TLS client credentials or an SSH identity for the node (never the
    /// credentials themselves).
    #[serde(default)]
    pub has_credentials: bool,
    /// The IP address the ingress reaches the node's instances at (their HTTP port published
    /// on it); `None`: their address on the project network, reachable on the same host only.
    #[serde(default)]
    pub advertise_address: Option<String>,
    /// Instances placed on the node now.
    #[serde(default)]
    pub instances: i64,
    /// CPU reserved by those instances' plans, thousandths of a core.
    #[serde(default)]
    pub cpu_allocated_millicores: i64,
    /// Memory reserved by those instances' plans, bytes.
    #[serde(default)]
    pub memory_allocated_bytes: i64,
    /// CPU the node's instances use right now (their newest samples, at most 10 s old,
    /// added up), thousandths of a core; `None` where this process runs no metrics
    /// streamer.
    #[serde(default)]
    pub cpu_used_millicores: Option<i64>,
    /// Memory those instances use right now, bytes; `None` as above.
    #[serde(default)]
    pub memory_used_bytes: Option<i64>,
    /// What runs on the node: deployments with their instance counts, by project and name.
    #[serde(default)]
    pub workloads: Vec<NodeWorkload>,
}

/// A deployment's instances on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NodeWorkload {
    pub deployment_id: DeploymentId,
    pub project_name: String,
    pub deployment_name: String,
    pub instances: i64,
}

/// A plan: the resources one instance gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PlanView {
    pub id: PlanId,
    pub name: String,
    /// Thousandths of a CPU core (250 = a quarter core).
    pub cpu_millicores: i64,
    pub memory_bytes: i64,
    pub storage_bytes: i64,
}

/// A Docker engine to add as a node (admins). Berth connects with the credentials given,
/// reads the capacity from the engine, and stores the node only if that works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AddNode {
    /// Unique, a DNS label of 1–30 characters.
    pub name: String,
    /// Created if missing (DNS label).
    pub region: String,
    /// Created in the region if missing (DNS label).
    pub availability_zone: String,
    /// `tcp://host:port` (TLS with a client certificate), `ssh://user@host[:port]` or
    /// `unix:///path/to/docker.sock`.
    pub endpoint: String,
    /// Most instances placed on the node; default 100; 1–10000.
    #[serde(default)]
    pub max_instances: Option<i64>,
    /// The node's IP address on the private network between it and the ingress (IPv4 or
    /// IPv6, not `0.0.0.0`/`::`). Instances publish their HTTP port on it and the ingress
    /// routes there. Leave it out only for an engine on the ingress's own host, whose
    /// instances are reached at their bridge address.
    #[serde(default)]
    pub advertise_address: Option<String>,
    /// `tcp://` only: PEM of the CA that signed the engine's server certificate.
    #[serde(default)]
    pub tls_ca_pem: Option<String>,
    /// `tcp://` only: PEM of the client certificate Berth presents.
    #[serde(default)]
    pub tls_cert_pem: Option<String>,
    /// The client certificate's private key (`tcp://`, required) or the SSH identity
    /// (`ssh://`, optional: without it the `ssh` client's own keys and agent are used). Stored
    /// encrypted, never returned.
    #[serde(default)]
    pub private_key_pem: Option<String>,
}

/// A plan to create, or the new values of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PlanSpec {
    pub name: String,
    /// 10–256000 (0.01–256 cores).
    pub cpu_millicores: i64,
    /// 6 MiB (Docker's minimum) to 1 TiB.
    pub memory_bytes: i64,
    /// 0 to 100 TiB.
    pub storage_bytes: i64,
}

/// How placement orders the nodes of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PlacementStrategy {
    /// The node with the fewest instances (then the least CPU reserved).
    LeastLoaded,
    /// Nodes in turn.
    RoundRobin,
    /// Only nodes where the plan fits in capacity minus what is reserved; the one left with
    /// the most room.
    ResourceBased,
}

impl PlacementStrategy {
    /// The stored form: `least-loaded`, `round-robin`, `resource-based`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LeastLoaded => "least-loaded",
            Self::RoundRobin => "round-robin",
            Self::ResourceBased => "resource-based",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "least-loaded" => Some(Self::LeastLoaded),
            "round-robin" => Some(Self::RoundRobin),
            "resource-based" => Some(Self::ResourceBased),
            _ => None,
        }
    }
}

/// A region and the placement strategy used inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RegionView {
    pub name: String,
    pub placement_strategy: PlacementStrategy,
}

/// Request to change a region's placement strategy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SetPlacementStrategy {
    pub placement_strategy: PlacementStrategy,
}

/// Request to change a node's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SetNodeState {
    pub state: NodeState,
}
