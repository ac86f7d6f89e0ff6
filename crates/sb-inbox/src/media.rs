//! Files a provider holds for an inbound message (WhatsApp media ids) are fetched after the
//! message is stored, by a durable job, into the attachment store; the message then shows
//! them (`message.updated`). A provider's links expire, so this runs at once and retries.

use async_trait::async_trait;
use sb_channels::MediaRef;
use sb_engine::{JobContext, JobError, JobHandler};
use sb_store::attachments::{self, NewAttachment};
use sb_store::jobs::{self, NewJob};
use sb_store::messages::{self, Message};
use sb_store::{Conn, StoreError, channel_accounts};
use serde::{Deserialize, Serialize};

use crate::live::{self, Live};
use crate::{Channels, MEDIA_KIND, QUEUE, account_of};

/// Larger files are not kept (WhatsApp documents go up to 100 MB; the inbox keeps 16 MB).
const MAX_MEDIA_BYTES: usize = 16 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Payload {
    message_id: String,
    media: Vec<MediaRef>,
}

/// Queues the fetch of a stored message's media, in the caller's transaction.
pub(crate) fn enqueue_fetch(
    c: &mut dyn Conn,
    message: &Message,
    media: &[MediaRef],
    now: i64,
) -> Result<(), StoreError> {
    let payload = serde_json::to_string(&Payload {
        message_id: message.id.clone(),
        media: media.to_vec(),
    })
    .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let job = NewJob::new(QUEUE, MEDIA_KIND, payload, now)
        .workspace(&message.workspace_id)
        .dedupe(format!("media:{}", message.id))
        .max_attempts(6);
    jobs::enqueue(c, &job, now)?;
    Ok(())
}

pub struct FetchMedia {
    pub channels: Channels,
    pub live: Live,
}

#[async_trait]
impl JobHandler for FetchMedia {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let payload: Payload = ctx.payload()?;
        let ws = ctx.workspace_id()?;
        let (w, id) = (ws.clone(), payload.message_id.clone());
        let loaded = ctx
            .store
            .db
            .read(move |c| {
                let Some(message) = messages::get(c, &w, &id)? else {
                    return Ok(None);
                };
                let Some(account_id) = message.channel_account_id.clone() else {
                    return Ok(None);
                };
                Ok::<_, StoreError>(channel_accounts::for_webhook(c, &account_id)?.map(|a| (message, a)))
            })
            .await?;
        let Some((message, (account, secrets))) = loaded else {
            return Ok(());
        };
        let Some(channel) = self.channels.get(&account.channel).cloned() else {
            return Ok(());
        };
        let mut files = Vec::new();
        for media in &payload.media {
            let fetched = channel
                .fetch_media(&account_of(&account, &secrets), &media.id)
                .await
                .map_err(|e| {
                    if e.retryable {
                        JobError::Retry(e.to_string())
                    } else {
                        JobError::Permanent(e.to_string())
                    }
                })?;
            if let Some((bytes, mime)) = fetched.filter(|(b, _)| !b.is_empty() && b.len() <= MAX_MEDIA_BYTES) {
                let extension = mime
                    .split('/')
                    .nth(1)
                    .unwrap_or("bin")
                    .split(';')
                    .next()
                    .unwrap_or("bin");
                let name = media
                    .filename
                    .clone()
                    .unwrap_or_else(|| format!("{}.{extension}", media.id));
                files.push((sb_channels::widget::clean_filename(&name), mime, bytes));
            }
        }
        if files.is_empty() {
            return Ok(());
        }
        let now = ctx.store.now();
        let events = ctx
            .store
            .db
            .write(move |c| {
                let ws = message.workspace_id.as_str();
                let mut metas = Vec::new();
                for (name, mime, bytes) in &files {
                    let new = NewAttachment {
                        workspace_id: ws,
                        channel_account_id: message.channel_account_id.as_deref(),
                        customer_id: Some(&message.customer_id),
                        filename: name,
                        content_type: mime,
                        data: bytes,
                    };
                    metas.push(attachments::insert(c, &new, now)?);
                }
                let ids: Vec<String> = metas.iter().map(|m| m.id.clone()).collect();
                attachments::claim(c, ws, &message.customer_id, &ids, &message.id)?;
                let json = serde_json::to_string(&metas).unwrap_or_else(|_| "[]".into());
                let Some(updated) = messages::set_attachments(c, ws, &message.id, &json, now)? else {
                    return Ok(Vec::new());
                };
                Ok::<_, StoreError>(vec![live::message_event(c, "message.updated", &updated, now)?])
            })
            .await?;
        self.live.publish(&events).await;
        Ok(())
    }
}
