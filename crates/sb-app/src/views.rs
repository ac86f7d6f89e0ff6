//! What the use cases return to the JSON API: store rows with times as RFC 3339 and no secrets.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sb_core::clock::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::AppError;

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

/// A page size: 1–200, 50 when not given; anything else is refused (400 `invalid_limit`),
/// as the document's bounds say.
pub fn page_limit(requested: Option<i64>) -> Result<i64, AppError> {
    match requested {
        None => Ok(50),
        Some(n) if (1..=200).contains(&n) => Ok(n),
        Some(_) => Err(AppError::invalid("invalid_limit", "limit must be between 1 and 200")),
    }
}

/// The names the document lists for string fields with a fixed set of values (the values are
/// checked by the use cases; these types only describe them).
pub mod names {
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum ConversationStatus {
        Open,
        Pending,
        Snoozed,
        Resolved,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum Presence {
        Online,
        Busy,
        Offline,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum Role {
        Admin,
        Agent,
        Marketer,
        StoreStaff,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum TransferStatus {
        InTransit,
        Received,
        Canceled,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum DeliveryState {
        Pending,
        Succeeded,
        Failed,
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<i64, AppError> {
        page_limit(self.limit)
    }

    /// The id the cursor stands for.
    pub fn after(&self) -> Result<Option<String>, AppError> {
        match &self.cursor {
            None => Ok(None),
            Some(c) => URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|id| sb_core::ids::is_id(id))
                .map(Some)
                .ok_or_else(|| AppError::invalid("invalid_cursor", "the cursor is not one this API returned")),
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

/// A cursor over `(time, id)`-ordered lists (conversations by activity, a thread by time).
pub fn encode_time_cursor(at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{at}:{id}"))
}

pub fn decode_time_cursor(cursor: Option<&str>) -> Result<Option<(i64, String)>, AppError> {
    let Some(c) = cursor else { return Ok(None) };
    URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (at, id) = s.split_once(':')?;
            Some((at.parse().ok()?, id.to_owned()))
        })
        .filter(|(_, id)| sb_core::ids::is_id(id))
        .map(Some)
        .ok_or_else(|| AppError::invalid("invalid_cursor", "the cursor is not one this API returned"))
}

#[derive(Serialize, ToSchema)]
pub struct ChannelAccountView {
    pub id: String,
    /// `api` (more channels arrive with their issues).
    pub channel: String,
    pub name: String,
    /// Non-secret settings, e.g. `webhook_url` for the API channel.
    pub settings: serde_json::Value,
    pub disabled: bool,
    /// Where the provider (or your integration) posts inbound requests.
    pub webhook_url: String,
    pub created_at: String,
}

impl ChannelAccountView {
    pub fn new(a: &sb_store::channel_accounts::ChannelAccount, base_url: &str) -> Self {
        ChannelAccountView {
            id: a.id.clone(),
            channel: a.channel.clone(),
            name: a.name.clone(),
            settings: serde_json::from_str(&a.settings_json).unwrap_or_default(),
            disabled: a.disabled,
            webhook_url: format!("{base_url}/hooks/{}/{}", a.channel, a.id),
            created_at: rfc3339(a.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IdentityView {
    /// `email`, `phone` (global) or a channel's own kind such as `api` (scoped).
    pub kind: String,
    /// Empty for global identifiers; the channel account id for scoped ones.
    pub scope: String,
    pub value: String,
    pub verified: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerView {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub attributes: serde_json::Value,
    /// The customer this one was merged into (undo the merge to separate them again).
    pub merged_into: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&sb_store::customers::Customer> for CustomerView {
    fn from(c: &sb_store::customers::Customer) -> Self {
        CustomerView {
            id: c.id.clone(),
            name: c.name.clone(),
            email: c.email.clone(),
            phone: c.phone.clone(),
            attributes: serde_json::from_str(&c.attributes_json).unwrap_or_default(),
            merged_into: c.merged_into.clone(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ConversationView {
    pub id: String,
    pub customer_id: String,
    /// `open`, `pending`, `snoozed` or `resolved`.
    pub status: String,
    pub snoozed_until: Option<String>,
    pub assignee_id: Option<String>,
    pub team: Option<String>,
    pub unread_count: i64,
    pub last_message_at: String,
    pub last_inbound_at: Option<String>,
    /// The channel account the customer last wrote on: replies default to it.
    pub last_inbound_account_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&sb_store::conversations::Conversation> for ConversationView {
    fn from(c: &sb_store::conversations::Conversation) -> Self {
        ConversationView {
            id: c.id.clone(),
            customer_id: c.customer_id.clone(),
            status: c.status.clone(),
            snoozed_until: c.snoozed_until.map(rfc3339),
            assignee_id: c.assignee_id.clone(),
            team: c.team.clone(),
            unread_count: c.unread_count,
            last_message_at: rfc3339(c.last_message_at),
            last_inbound_at: c.last_inbound_at.map(rfc3339),
            last_inbound_account_id: c.last_inbound_account_id.clone(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    pub conversation_id: String,
    /// `inbound`, `outbound` or `note`.
    pub direction: String,
    /// The channel it came or went on (`None` for notes).
    pub channel: Option<String>,
    pub channel_account_id: Option<String>,
    /// `customer` or `user` (an agent).
    pub author_kind: String,
    pub author_id: Option<String>,
    pub body: String,
    /// Outbound: `queued`, `sent`, `delivered`, `read` or `failed`; inbound: `received`.
    pub status: String,
    /// The provider's error code and message when `failed`.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub provider_message_id: Option<String>,
    /// `conversation`, `transactional` or `marketing`.
    pub purpose: String,
    /// Channel details (e-mail: `subject`, `message_id`, `quoted` history removed from `body`).
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Value>,
    /// Files on the message; fetch each from `url`.
    pub attachments: Vec<AttachmentView>,
    pub sent_at: String,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct AttachmentView {
    pub id: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub url: String,
}

impl From<&sb_store::messages::Message> for MessageView {
    fn from(m: &sb_store::messages::Message) -> Self {
        MessageView {
            id: m.id.clone(),
            conversation_id: m.conversation_id.clone(),
            direction: m.direction.clone(),
            channel: m.channel.clone(),
            channel_account_id: m.channel_account_id.clone(),
            author_kind: m.author_kind.clone(),
            author_id: m.author_id.clone(),
            body: m.body.clone(),
            status: m.status.clone(),
            error_code: m.error_code.clone(),
            error_message: m.error_message.clone(),
            provider_message_id: m.provider_message_id.clone(),
            purpose: m.purpose.clone(),
            meta: m.meta_json.as_deref().and_then(|j| serde_json::from_str(j).ok()),
            attachments: serde_json::from_str::<Vec<sb_store::attachments::AttachmentMeta>>(&m.attachments_json)
                .unwrap_or_default()
                .into_iter()
                .map(|a| AttachmentView {
                    url: format!("/api/v1/attachments/{}", a.id),
                    id: a.id,
                    filename: a.filename,
                    content_type: a.content_type,
                    size: a.size,
                })
                .collect(),
            sent_at: rfc3339(m.sent_at),
            created_at: rfc3339(m.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ReplyOptionView {
    pub channel_account_id: String,
    pub channel: String,
    pub name: String,
    /// The customer's address on that account.
    pub address: Option<String>,
    /// Whether a free-form reply may go out there now.
    pub allowed: bool,
    /// Why not: `no_address`, `reply_window_closed`, `channel_unavailable`.
    pub reason: Option<String>,
    pub reason_text: Option<String>,
    /// The account the customer last wrote on (the default choice).
    pub default: bool,
}

impl From<&sb_inbox::outbox::ReplyOption> for ReplyOptionView {
    fn from(o: &sb_inbox::outbox::ReplyOption) -> Self {
        ReplyOptionView {
            channel_account_id: o.channel_account_id.clone(),
            channel: o.channel.clone(),
            name: o.name.clone(),
            address: o.address.clone(),
            allowed: o.allowed,
            reason: o.reason.map(str::to_owned),
            reason_text: o.reason_text.clone(),
            default: o.default,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MergeView {
    pub id: String,
    /// The customer that remains.
    pub target_customer_id: String,
    /// The customer merged into the target.
    pub source_customer_id: String,
    pub moved_identities: usize,
    pub moved_messages: usize,
    pub merged_at: String,
    pub undone_at: Option<String>,
}

impl From<&sb_store::merges::Merge> for MergeView {
    fn from(m: &sb_store::merges::Merge) -> Self {
        let count = |json: &str| serde_json::from_str::<Vec<String>>(json).map_or(0, |v| v.len());
        MergeView {
            id: m.id.clone(),
            target_customer_id: m.target_customer_id.clone(),
            source_customer_id: m.source_customer_id.clone(),
            moved_identities: count(&m.identity_ids_json),
            moved_messages: count(&m.message_ids_json),
            merged_at: rfc3339(m.merged_at),
            undone_at: m.undone_at.map(rfc3339),
        }
    }
}
