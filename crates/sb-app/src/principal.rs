//! The acting principal: a user of one workspace, signed in by a session or an API token.

use sb_core::Permission;
use sb_store::audit::Actor;
use sb_store::users::User;

use crate::error::AppError;

#[derive(Debug, Clone)]
pub enum Via {
    Session,
    Token(String),
}

/// Who is calling. Resolved by `auth::authenticate_token` or `auth::authenticate_session`.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub via: Via,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl Principal {
    pub fn workspace_id(&self) -> &str {
        &self.user.workspace_id
    }

    /// Whether the matrix gives this principal's role the permission.
    pub fn may(&self, permission: Permission) -> bool {
        self.user.role().allows(permission)
    }

    /// Every use case starts with this, for the permission of the data it touches.
    pub fn require(&self, permission: Permission) -> Result<(), AppError> {
        if self.may(permission) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "the {} role may not do this (needs `{}`, for {})",
                self.user.role,
                permission.as_str(),
                permission.data_kind().as_str()
            )))
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            kind: match self.via {
                Via::Session => "user",
                Via::Token(_) => "token",
            },
            id: Some(self.user.id.clone()),
            ip: self.ip.clone(),
            request_id: self.request_id.clone(),
        }
    }
}
