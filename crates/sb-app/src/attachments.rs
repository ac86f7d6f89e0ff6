//! Files agents attach to replies, and the files on messages they read.

use sb_core::Permission;
use sb_store::attachments;

use crate::error::AppResult;
use crate::{App, AppError, Principal};

/// An agent's upload (the widget's checks: type by content, size), kept until it is sent.
pub async fn upload(
    app: &App,
    principal: &Principal,
    filename: Option<&str>,
    content_type: &str,
    body: bytes::Bytes,
) -> AppResult<attachments::AttachmentMeta> {
    principal.require(Permission::ReplyConversations)?;
    let max = sb_channels::widget::DEFAULT_MAX_UPLOAD_BYTES;
    let kind = sb_channels::widget::check_attachment(content_type, &body, max)
        .map_err(|e| AppError::from(sb_inbox::widget::WidgetError::from(e)))?;
    let name = sb_channels::widget::clean_filename(filename.unwrap_or("file"));
    let (ws, now) = (principal.workspace_id().to_owned(), app.store.now());
    Ok(app
        .store
        .db
        .write(move |c| {
            let new = attachments::NewAttachment {
                workspace_id: &ws,
                channel_account_id: None,
                customer_id: None,
                filename: &name,
                content_type: kind,
                data: &body,
            };
            attachments::insert(c, &new, now)
        })
        .await?)
}

/// A file on a message: conversation content.
pub async fn download(app: &App, principal: &Principal, id: &str) -> AppResult<attachments::Attachment> {
    principal.require(Permission::ReadConversations)?;
    let (ws, aid) = (principal.workspace_id().to_owned(), id.to_owned());
    match app.store.db.read(move |c| attachments::get(c, &ws, &aid)).await? {
        Some(file) => Ok(file),
        None => Err(crate::access::not_found(
            app,
            principal,
            sb_store::objects::ObjectKind::Attachment,
            id,
            "attachment_not_found",
        )
        .await),
    }
}
