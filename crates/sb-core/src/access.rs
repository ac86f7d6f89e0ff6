//! Roles and what each may do. Every API route names one `Permission`.

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
                    | ReadOrders
                    | PlaceOrders
                    | ReadInventory
            ),
            Role::Marketer => matches!(
                permission,
                ReadOwnAccount | ManageOwnTokens | ReadCustomers | ManageCustomers | ManageCampaigns | ReadOrders
            ),
            Role::StoreStaff => matches!(
                permission,
                ReadOwnAccount
                    | ManageOwnTokens
                    | ReadCustomers
                    | ManageCustomers
                    | ReadOrders
                    | PlaceOrders
                    | ManageOrders
                    | ReadInventory
                    | ManageInventory
            ),
        }
    }
}

/// What a route needs. Admin-only permissions are listed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    ManageUsers,
    ManageWorkspace,
    ReadAuditLog,
    ManageJobs,
    /// Export or erase a customer's data (GDPR requests).
    ManagePrivacy,
    ReadOwnAccount,
    ManageOwnTokens,
    ReadConversations,
    ReplyConversations,
    ReadCustomers,
    /// Record consent, enrol in loyalty.
    ManageCustomers,
    ManageCampaigns,
    ReadOrders,
    /// Open carts for customers, change their lines, check out and place orders: a sale in
    /// any channel, an agent's from a conversation included.
    PlaceOrders,
    /// Run fulfilment: ready, hand over, ship, cancel, returns.
    ManageOrders,
    ReadInventory,
    ManageInventory,
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
}
