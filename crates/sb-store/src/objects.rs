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
        }
    }
}

pub fn owner_workspace(c: &mut dyn Conn, kind: ObjectKind, id: &str) -> Result<Option<String>> {
    let sql = match kind {
        ObjectKind::User => "SELECT workspace_id FROM users WHERE id = :id",
        ObjectKind::ApiToken => "SELECT workspace_id FROM api_tokens WHERE id = :id",
        ObjectKind::Job => "SELECT workspace_id FROM jobs WHERE id = :id",
        ObjectKind::ChannelAccount => "SELECT workspace_id FROM channel_accounts WHERE id = :id",
        ObjectKind::Customer => "SELECT workspace_id FROM customers WHERE id = :id",
        ObjectKind::Conversation => "SELECT workspace_id FROM conversations WHERE id = :id",
        ObjectKind::Message => "SELECT workspace_id FROM messages WHERE id = :id",
        ObjectKind::CannedResponse => "SELECT workspace_id FROM canned_responses WHERE id = :id",
    };
    Ok(match c.query_opt(&Stmt::new(sql).bind("id", id))? {
        Some(r) => r.get::<Option<String>>("workspace_id")?,
        None => None,
    })
}
