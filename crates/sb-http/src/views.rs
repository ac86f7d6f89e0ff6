//! What the API returns: store rows with times as RFC 3339 and no secrets.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sb_core::clock::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub workspace_id: String,
    pub email: String,
    pub name: String,
    /// `admin`, `agent`, `marketer` or `store_staff`.
    pub role: String,
    pub is_owner: bool,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&sb_store::users::User> for UserView {
    fn from(u: &sb_store::users::User) -> Self {
        UserView {
            id: u.id.clone(),
            workspace_id: u.workspace_id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.clone(),
            is_owner: u.is_owner,
            disabled: u.disabled,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<&sb_store::tokens::ApiToken> for TokenView {
    fn from(t: &sb_store::tokens::ApiToken) -> Self {
        TokenView {
            id: t.id.clone(),
            user_id: t.user_id.clone(),
            name: t.name.clone(),
            created_at: rfc3339(t.created_at),
            last_used_at: t.last_used_at.map(rfc3339),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditView {
    pub id: String,
    /// `user`, `token`, `system` or `anonymous`.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub object_kind: String,
    pub object_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub at: String,
}

impl From<&sb_store::audit::AuditEntry> for AuditView {
    fn from(a: &sb_store::audit::AuditEntry) -> Self {
        let json = |s: &Option<String>| s.as_deref().and_then(|t| serde_json::from_str(t).ok());
        AuditView {
            id: a.id.clone(),
            actor_kind: a.actor_kind.clone(),
            actor_id: a.actor_id.clone(),
            action: a.action.clone(),
            object_kind: a.object_kind.clone(),
            object_id: a.object_id.clone(),
            before: json(&a.before_json),
            after: json(&a.after_json),
            ip: a.ip.clone(),
            request_id: a.request_id.clone(),
            at: rfc3339(a.at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub queue: String,
    pub kind: String,
    /// `ready` or `dead`.
    pub state: String,
    pub payload: serde_json::Value,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&sb_store::jobs::Job> for JobView {
    fn from(j: &sb_store::jobs::Job) -> Self {
        JobView {
            id: j.id.clone(),
            queue: j.queue.clone(),
            kind: j.kind.clone(),
            state: j.state.clone(),
            payload: serde_json::from_str(&j.payload).unwrap_or(serde_json::Value::Null),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            run_at: rfc3339(j.run_at),
            last_error: j.last_error.clone(),
            created_at: rfc3339(j.created_at),
            updated_at: rfc3339(j.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WorkspaceView {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

impl From<&sb_store::workspaces::Workspace> for WorkspaceView {
    fn from(w: &sb_store::workspaces::Workspace) -> Self {
        WorkspaceView {
            id: w.id.clone(),
            name: w.name.clone(),
            created_at: rfc3339(w.created_at),
        }
    }
}

/// `{"items": [...], "next_cursor": ...}`.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> i64 {
        sb_store::page_limit(self.limit)
    }

    /// The id the cursor stands for.
    pub fn after(&self) -> Result<Option<String>, ApiError> {
        match &self.cursor {
            None => Ok(None),
            Some(c) => URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|id| sb_core::ids::is_id(id))
                .map(Some)
                .ok_or_else(|| ApiError::invalid("invalid_cursor", "the cursor is not one this API returned")),
        }
    }
}

/// Builds a page; a full page gets a cursor pointing after its last item.
pub fn page<R, V>(rows: &[R], limit: i64, id: impl Fn(&R) -> &str) -> Page<V>
where
    V: for<'a> From<&'a R>,
{
    let next_cursor = if rows.len() as i64 == limit {
        rows.last().map(|r| URL_SAFE_NO_PAD.encode(id(r)))
    } else {
        None
    };
    Page {
        items: rows.iter().map(V::from).collect(),
        next_cursor,
    }
}
