//! Which workspace owns an id, whatever the caller's workspace. Used only to audit an
//! attempt to reach another workspace's object; the caller still gets a plain 404.

use sb_sql::{Conn, Stmt};

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    User,
    ApiToken,
    Job,
    ChannelAccount,
    Customer,
    Conversation,
    Message,
    CannedResponse,
    Attachment,
    Cart,
    Order,
    Fulfillment,
    Transfer,
    Reservation,
    Merge,
    Location,
    WebhookEndpoint,
    Journey,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::User => "user",
            ObjectKind::ApiToken => "api_token",
            ObjectKind::Job => "job",
            ObjectKind::ChannelAccount => "channel_account",
            ObjectKind::Customer => "customer",
            ObjectKind::Conversation => "conversation",
            ObjectKind::Message => "message",
            ObjectKind::CannedResponse => "canned_response",
            ObjectKind::Attachment => "attachment",
            ObjectKind::Cart => "cart",
            ObjectKind::Order => "order",
            ObjectKind::Fulfillment => "fulfillment",
            ObjectKind::Transfer => "transfer",
            ObjectKind::Reservation => "reservation",
            ObjectKind::Merge => "merge",
            ObjectKind::Location => "location",
            ObjectKind::WebhookEndpoint => "webhook_endpoint",
            ObjectKind::Journey => "journey",
        }
    }
}

pub fn owner_workspace(c: &mut dyn Conn, kind: ObjectKind, id: &str) -> Result<Option<String>> {
    let sql = match kind {
        ObjectKind::User => "SELECT workspace_id FROM users WHERE id = :id",
        ObjectKind::WebhookEndpoint => "SELECT workspace_id FROM webhook_endpoints WHERE id = :id",
        ObjectKind::Journey => "SELECT workspace_id FROM journeys WHERE id = :id",
        ObjectKind::ApiToken => "SELECT workspace_id FROM api_tokens WHERE id = :id",
        ObjectKind::Job => "SELECT workspace_id FROM jobs WHERE id = :id",
        ObjectKind::ChannelAccount => "SELECT workspace_id FROM channel_accounts WHERE id = :id",
        ObjectKind::Customer => "SELECT workspace_id FROM customers WHERE id = :id",
        ObjectKind::Conversation => "SELECT workspace_id FROM conversations WHERE id = :id",
        ObjectKind::Message => "SELECT workspace_id FROM messages WHERE id = :id",
        ObjectKind::CannedResponse => "SELECT workspace_id FROM canned_responses WHERE id = :id",
        ObjectKind::Attachment => "SELECT workspace_id FROM attachments WHERE id = :id",
        ObjectKind::Cart => "SELECT workspace_id FROM carts WHERE id = :id",
        ObjectKind::Order => "SELECT workspace_id FROM orders WHERE id = :id",
        ObjectKind::Fulfillment => "SELECT workspace_id FROM order_fulfillments WHERE id = :id",
        ObjectKind::Transfer => "SELECT workspace_id FROM transfers WHERE id = :id",
        ObjectKind::Reservation => "SELECT workspace_id FROM reservations WHERE id = :id",
        ObjectKind::Merge => "SELECT workspace_id FROM customer_merges WHERE id = :id",
        ObjectKind::Location => "SELECT workspace_id FROM locations WHERE id = :id",
    };
    Ok(match c.query_opt(&Stmt::new(sql).bind("id", id))? {
        Some(r) => r.get::<Option<String>>("workspace_id")?,
        None => None,
    })
}
