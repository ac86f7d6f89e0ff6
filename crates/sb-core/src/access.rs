//! Who may do what: the permission matrix, written once. A role holds permissions; each
//! permission reaches exactly one kind of data. Every use case in `sb-app` asks for one
//! permission, and the README's table and the permission-matrix test are rendered from here.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Agent,
    Marketer,
    StoreStaff,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Agent, Role::Marketer, Role::StoreStaff];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Marketer => "marketer",
            Role::StoreStaff => "store_staff",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The role × permission half of the matrix.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Agent => matches!(
                permission,
                ReadOwnAccount
                    | ManageOwnTokens
                    | ReadConversations
                    | ReplyConversations
                    | ReadCustomers
                    | ManageCustomers
                    | ReadConsent
                    | ManageConsent
                    | ReadOrders
                    | PlaceOrders
                    | ReadInventory
            ),
            Role::Marketer => matches!(
                permission,
                ReadOwnAccount
                    | ManageOwnTokens
                    | ReadCustomers
                    | ManageCustomers
                    | ReadConsent
                    | ManageConsent
                    | ManageCampaigns
                    | ReadAnalytics
                    | ReadOrders
            ),
            Role::StoreStaff => matches!(
                permission,
                ReadOwnAccount
                    | ManageOwnTokens
                    | ReadCustomers
                    | ManageCustomers
                    | ReadConsent
                    | ManageConsent
                    | ReadOrders
                    | PlaceOrders
                    | ManageOrders
                    | ReadInventory
                    | ManageInventory
            ),
        }
    }
}

/// What a use case needs. Admin-only permissions are listed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    ManageUsers,
    ManageWorkspace,
    ReadAuditLog,
    ManageJobs,
    /// Outgoing webhooks: endpoints, their secrets and delivery logs. The events they carry
    /// reach every kind of data, so this is the admins'.
    ManageWebhooks,
    /// Export or erase a customer's data (GDPR requests).
    ManagePrivacy,
    ReadOwnAccount,
    ManageOwnTokens,
    /// Messages, private notes and attachments, wherever they are shown (the inbox, a
    /// customer's timeline, the live stream).
    ReadConversations,
    ReplyConversations,
    ReadCustomers,
    /// Change a profile: identities, merges, loyalty.
    ManageCustomers,
    /// Whether a customer may be sent marketing, and the consent history.
    ReadConsent,
    ManageConsent,
    ManageCampaigns,
    /// Reports and the dashboard.
    ReadAnalytics,
    ReadOrders,
    /// Open carts for customers, change their lines, check out and place orders: a sale in
    /// any channel, an agent's from a conversation included.
    PlaceOrders,
    /// Run fulfilment: ready, hand over, ship, cancel, returns.
    ManageOrders,
    ReadInventory,
    ManageInventory,
}

/// The kinds of data a permission reaches (the permission × data kind half of the matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    /// The signed-in user's own account and API tokens.
    OwnAccount,
    /// Users, the workspace, channel accounts, jobs, webhooks, the audit log.
    Settings,
    ConversationContent,
    CustomerProfile,
    Consent,
    Orders,
    Stock,
    Marketing,
    Analytics,
}

impl DataKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::OwnAccount => "own account",
            DataKind::Settings => "settings",
            DataKind::ConversationContent => "conversation content",
            DataKind::CustomerProfile => "customer profile",
            DataKind::Consent => "consent",
            DataKind::Orders => "orders",
            DataKind::Stock => "stock",
            DataKind::Marketing => "marketing",
            DataKind::Analytics => "analytics",
        }
    }
}

impl Permission {
    pub const ALL: [Permission; 21] = [
        Permission::ManageUsers,
        Permission::ManageWorkspace,
        Permission::ReadAuditLog,
        Permission::ManageJobs,
        Permission::ManageWebhooks,
        Permission::ManagePrivacy,
        Permission::ReadOwnAccount,
        Permission::ManageOwnTokens,
        Permission::ReadConversations,
        Permission::ReplyConversations,
        Permission::ReadCustomers,
        Permission::ManageCustomers,
        Permission::ReadConsent,
        Permission::ManageConsent,
        Permission::ManageCampaigns,
        Permission::ReadAnalytics,
        Permission::ReadOrders,
        Permission::PlaceOrders,
        Permission::ManageOrders,
        Permission::ReadInventory,
        Permission::ManageInventory,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ManageUsers => "manage_users",
            Permission::ManageWorkspace => "manage_workspace",
            Permission::ReadAuditLog => "read_audit_log",
            Permission::ManageJobs => "manage_jobs",
            Permission::ManageWebhooks => "manage_webhooks",
            Permission::ManagePrivacy => "manage_privacy",
            Permission::ReadOwnAccount => "read_own_account",
            Permission::ManageOwnTokens => "manage_own_tokens",
            Permission::ReadConversations => "read_conversations",
            Permission::ReplyConversations => "reply_conversations",
            Permission::ReadCustomers => "read_customers",
            Permission::ManageCustomers => "manage_customers",
            Permission::ReadConsent => "read_consent",
            Permission::ManageConsent => "manage_consent",
            Permission::ManageCampaigns => "manage_campaigns",
            Permission::ReadAnalytics => "read_analytics",
            Permission::ReadOrders => "read_orders",
            Permission::PlaceOrders => "place_orders",
            Permission::ManageOrders => "manage_orders",
            Permission::ReadInventory => "read_inventory",
            Permission::ManageInventory => "manage_inventory",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The one kind of data this permission reaches.
    pub fn data_kind(self) -> DataKind {
        use Permission::*;
        match self {
            ReadOwnAccount | ManageOwnTokens => DataKind::OwnAccount,
            ManageUsers | ManageWorkspace | ReadAuditLog | ManageJobs | ManageWebhooks => DataKind::Settings,
            ReadConversations | ReplyConversations => DataKind::ConversationContent,
            ReadCustomers | ManageCustomers | ManagePrivacy => DataKind::CustomerProfile,
            ReadConsent | ManageConsent => DataKind::Consent,
            ManageCampaigns => DataKind::Marketing,
            ReadAnalytics => DataKind::Analytics,
            ReadOrders | PlaceOrders | ManageOrders => DataKind::Orders,
            ReadInventory | ManageInventory => DataKind::Stock,
        }
    }
}

/// The matrix as a Markdown table (permission, data kind, one column per role); the README
/// carries this exact text, and a test keeps the two the same.
pub fn matrix_markdown() -> String {
    let mut out = String::from("| permission | data kind |");
    for role in Role::ALL {
        out.push_str(&format!(" {} |", role.as_str()));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(Role::ALL.len()));
    out.push('\n');
    for p in Permission::ALL {
        out.push_str(&format!("| `{}` | {} |", p.as_str(), p.data_kind().as_str()));
        for role in Role::ALL {
            out.push_str(if role.allows(p) { " ✓ |" } else { " |" });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_only_admin_manages_users() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert!(role.allows(Permission::ReadOwnAccount));
            assert_eq!(role.allows(Permission::ManageUsers), role == Role::Admin);
            assert_eq!(role.allows(Permission::ReadAuditLog), role == Role::Admin);
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn every_permission_is_listed_once_and_named_as_serde_names_it() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), serde_json::json!(p.as_str()));
        }
        let mut names: Vec<_> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len());
    }

    #[test]
    fn only_roles_that_read_conversations_see_conversation_content() {
        for role in Role::ALL {
            for p in Permission::ALL {
                if p.data_kind() == DataKind::ConversationContent && role.allows(p) {
                    assert!(role.allows(Permission::ReadConversations), "{role:?} {p:?}");
                }
            }
        }
        assert!(!Role::StoreStaff.allows(Permission::ReadConversations));
        assert!(!Role::Marketer.allows(Permission::ReadConversations));
    }

    #[test]
    fn whoever_reads_a_profile_reads_its_consent() {
        // A profile shows the customer's consent; the roles must agree.
        for role in Role::ALL {
            assert_eq!(
                role.allows(Permission::ReadCustomers),
                role.allows(Permission::ReadConsent),
                "{role:?}"
            );
        }
    }

    #[test]
    fn the_readme_shows_the_matrix_as_the_code_has_it() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&matrix_markdown()),
            "README.md's permission table differs from access.rs; paste this:\n{}",
            matrix_markdown()
        );
    }
}
