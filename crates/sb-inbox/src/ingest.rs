//! Webhook ingest: verify over the raw bytes, refuse replays, store the request and enqueue
//! its processing in one transaction, and only then let the caller answer 2xx.

use sb_core::credentials::secret_digest;
use sb_engine::Engine;
use sb_store::jobs::{self, NewJob};
use sb_store::{StoreError, channel_accounts, inbound};

use crate::{Channels, PROCESS_KIND, QUEUE, account_of};

#[derive(Debug)]
pub enum IngestOutcome {
    /// Stored now; processing is queued.
    Accepted,
    /// The account already has this request (a provider retry): nothing changed.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no such channel account")]
    UnknownAccount,
    #[error("this channel account is disabled")]
    Disabled,
    #[error(transparent)]
    Channel(#[from] sb_channels::ChannelError),
    #[error("this exact request was received before")]
    Replayed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn ingest(
    engine: &Engine,
    channels: &Channels,
    channel_kind: &str,
    account_id: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<IngestOutcome, IngestError> {
    let store = engine.store();
    let channel = channels.get(channel_kind).ok_or(IngestError::UnknownAccount)?.clone();
    let id = account_id.to_owned();
    let (account, secrets) = store
        .db
        .read(move |c| channel_accounts::for_webhook(c, &id))
        .await?
        .ok_or(IngestError::UnknownAccount)?;
    if account.channel != channel_kind {
        return Err(IngestError::UnknownAccount);
    }
    if account.disabled {
        return Err(IngestError::Disabled);
    }
    let now = store.now();
    let verified = channel.verify(
        &sb_channels::RawRequest {
            headers: &headers,
            body: &body,
        },
        &account_of(&account, &secrets),
        now,
    )?;
    // A replay is the same signed bytes again; a provider retry with a fresh signature is a
    // duplicate that we acknowledge.
    let signature = headers
        .iter()
        .filter(|(n, _)| n.contains("signature") || n.contains("secret-token"))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let signature = secret_digest(&format!("{signature}\n{}", String::from_utf8_lossy(&body)));
    let headers_json = serde_json::to_string(
        &headers
            .iter()
            .filter(|(n, _)| !n.contains("authorization"))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| "[]".into());
    let (ws, account_id) = (account.workspace_id.clone(), account.id.clone());
    let outcome = store
        .db
        .write(move |c| {
            if inbound::signature_seen(c, &account_id, &signature)? {
                return Ok(Err(IngestError::Replayed));
            }
            let new = inbound::NewInbound {
                workspace_id: &ws,
                channel_account_id: &account_id,
                dedupe_key: &verified.dedupe_key,
                signature_digest: &signature,
                headers_json: &headers_json,
                body: &body,
            };
            let Some(request_id) = inbound::store(c, &new, now)? else {
                return Ok(Ok(IngestOutcome::Duplicate));
            };
            let payload = serde_json::json!({ "request_id": request_id }).to_string();
            let job = NewJob::new(QUEUE, PROCESS_KIND, payload, now)
                .workspace(&ws)
                .dedupe(format!("inbound:{request_id}"));
            jobs::enqueue(c, &job, now)?;
            Ok::<_, StoreError>(Ok(IngestOutcome::Accepted))
        })
        .await??;
    if matches!(outcome, IngestOutcome::Accepted) {
        engine.notify_jobs();
        metrics::counter!("switchboard_inbound_accepted_total", "channel" => channel_kind.to_owned()).increment(1);
    }
    Ok(outcome)
}
