//! Webhook ingest: verify over the raw bytes, store the request (refusing replays) in one
//! statement, and only then let the caller answer 2xx. Processing picks the request up in
//! its next batch; [`Intake::notify`] wakes it at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sb_core::credentials::secret_digest;
use sb_store::channel_accounts::{self, ChannelAccount};
use sb_store::inbound::{self, Stored};
use sb_store::{Store, StoreError};
use tokio::sync::Notify;

use crate::{Channels, account_of};

/// A changed secret or a disabled account takes effect within this long.
const ACCOUNT_CACHE_TTL: Duration = Duration::from_secs(5);

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

impl From<sb_sql::SqlError> for IngestError {
    fn from(e: sb_sql::SqlError) -> Self {
        IngestError::Store(StoreError::Sql(e))
    }
}

type CachedAccount = (Instant, Option<(ChannelAccount, String)>);

/// What ingest shares with the processor: the wake-up, and channel accounts read recently
/// (every webhook needs its account's secret; reading it each time costs a round trip).
#[derive(Clone, Default)]
pub struct Intake {
    notify: Arc<Notify>,
    accounts: Arc<Mutex<HashMap<String, CachedAccount>>>,
}

impl Intake {
    /// Wakes the processor: something was stored.
    pub fn notify(&self) {
        self.notify.notify_one();
    }

    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    async fn account(&self, store: &Store, id: &str) -> Result<Option<(ChannelAccount, String)>, StoreError> {
        if let Some((at, found)) = self.accounts.lock().expect("account cache").get(id)
            && at.elapsed() < ACCOUNT_CACHE_TTL
        {
            return Ok(found.clone());
        }
        let key = id.to_owned();
        let found = store.db.read(move |c| channel_accounts::for_webhook(c, &key)).await?;
        let mut cache = self.accounts.lock().expect("account cache");
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _)| at.elapsed() < ACCOUNT_CACHE_TTL);
        }
        cache.insert(id.to_owned(), (Instant::now(), found.clone()));
        Ok(found)
    }
}

/// A provider's request as it reached us.
pub struct WebhookRequest<'a> {
    pub channel_kind: &'a str,
    pub account_id: &'a str,
    /// The public URL it was posted to, query included.
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub async fn ingest(
    store: &Store,
    channels: &Channels,
    intake: &Intake,
    request: WebhookRequest<'_>,
) -> Result<IngestOutcome, IngestError> {
    let WebhookRequest {
        channel_kind,
        account_id,
        url,
        headers,
        body,
    } = request;
    let (channel, account, secrets) = usable_account(channels, store, intake, channel_kind, account_id).await?;
    let now = store.now();
    let verified = channel.verify(
        &sb_channels::RawRequest {
            url,
            headers: &headers,
            body: &body,
        },
        &account_of(&account, &secrets),
        now,
    )?;
    // A replay is the same signed bytes again; a provider retry with a fresh signature is a
    // duplicate that we acknowledge.
    let signature = request_digest(&headers, &body);
    let headers_json = serde_json::to_string(
        &headers
            .iter()
            .filter(|(n, _)| !n.contains("authorization"))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| "[]".into());
    let replay_is_refused = channel.signs_timestamp();
    let replay_token = verified
        .replay_token
        .as_ref()
        .map(|(token, window_ms)| (secret_digest(token), now + window_ms));
    let body = verified.store_body.unwrap_or(body);
    let request = Verified {
        replay_token,
        account: &account,
        dedupe_key: verified.dedupe_key,
        signature,
        headers_json,
        body,
    };
    store_verified(store, intake, request, now, replay_is_refused).await
}

/// SHA-256 (hex) of the signature headers joined by newlines, a newline, then the body: the
/// digest `secret_digest` gives of that text (what rows stored earlier hold), without copying
/// the body into a string.
fn request_digest(headers: &[(String, String)], body: &[u8]) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    let signatures = headers
        .iter()
        .filter(|(n, _)| n.contains("signature") || n.contains("secret-token"));
    let mut any = false;
    for (_, value) in signatures {
        hash.update(value.as_bytes());
        hash.update(b"\n");
        any = true;
    }
    if !any {
        hash.update(b"\n");
    }
    hash.update(body);
    hex::encode(hash.finalize())
}

/// Takes in a message one of our own listeners received (SMTP, IMAP) for an account: parsed
/// (a malformed one is refused), stored unless the account has it, then acknowledged.
pub async fn ingest_trusted(
    store: &Store,
    channels: &Channels,
    intake: &Intake,
    channel_kind: &str,
    account_id: &str,
    body: Vec<u8>,
) -> Result<IngestOutcome, IngestError> {
    let (channel, account, secrets) = usable_account(channels, store, intake, channel_kind, account_id).await?;
    let now = store.now();
    let verified = channel.accept_trusted(&body, &account_of(&account, &secrets), now)?;
    let request = Verified {
        replay_token: None,
        account: &account,
        signature: secret_digest(&String::from_utf8_lossy(&body)),
        dedupe_key: verified.dedupe_key,
        headers_json: "[]".into(),
        body: verified.store_body.unwrap_or(body),
    };
    // The same bytes again (an IMAP re-sync) are a duplicate, not an attack.
    store_verified(store, intake, request, now, false).await
}

async fn usable_account(
    channels: &Channels,
    store: &Store,
    intake: &Intake,
    channel_kind: &str,
    account_id: &str,
) -> Result<(std::sync::Arc<dyn sb_channels::Channel>, ChannelAccount, String), IngestError> {
    let channel = channels.get(channel_kind).ok_or(IngestError::UnknownAccount)?.clone();
    if !channel.takes_webhooks() || !sb_core::ids::is_id(account_id) {
        return Err(IngestError::UnknownAccount);
    }
    let (account, secrets) = intake
        .account(store, account_id)
        .await?
        .ok_or(IngestError::UnknownAccount)?;
    if account.channel != channel_kind {
        return Err(IngestError::UnknownAccount);
    }
    if account.disabled {
        return Err(IngestError::Disabled);
    }
    Ok((channel, account, secrets))
}

/// A request that passed its channel's checks, ready to store.
struct Verified<'a> {
    account: &'a ChannelAccount,
    /// The digest of a signed token to remember, and until when (see `Verified::replay_token`
    /// in `sb-channels`).
    replay_token: Option<(String, i64)>,
    dedupe_key: String,
    signature: String,
    headers_json: String,
    body: Vec<u8>,
}

async fn store_verified(
    store: &Store,
    intake: &Intake,
    request: Verified<'_>,
    now: i64,
    replay_is_refused: bool,
) -> Result<IngestOutcome, IngestError> {
    let (ws, account_id, channel_kind) = (
        request.account.workspace_id.clone(),
        request.account.id.clone(),
        request.account.channel.clone(),
    );
    let Verified {
        dedupe_key,
        signature,
        headers_json,
        body,
        replay_token,
        ..
    } = request;
    let token_account = account_id.clone();
    let insert = move |c: &mut dyn sb_store::Conn| {
        let new = inbound::NewInbound {
            workspace_id: &ws,
            channel_account_id: &account_id,
            dedupe_key: &dedupe_key,
            signature_digest: &signature,
            headers_json: &headers_json,
            body: &body,
        };
        inbound::store(c, &new, now)
    };
    let stored = match replay_token {
        // One insert, then a read only when it inserted nothing: a single-statement unit,
        // which joins the writer's group commit without a savepoint of its own.
        None => store.db.write_single(insert).await?,
        // The token is remembered in the transaction that stores its request: a token seen
        // before, with another message, undoes the insert (the same message again is the
        // provider's retry, a duplicate).
        Some((digest, expires)) => {
            store
                .db
                .write(move |c| {
                    let stored = insert(c)?;
                    if matches!(stored, Stored::New(_))
                        && !inbound::remember_token(c, &token_account, &digest, expires)?
                    {
                        return Err(IngestError::Replayed);
                    }
                    Ok(stored)
                })
                .await?
        }
    };
    match stored {
        Stored::New(_) => {
            intake.notify();
            metrics::counter!("switchboard_inbound_accepted_total", "channel" => channel_kind).increment(1);
            Ok(IngestOutcome::Accepted)
        }
        Stored::Duplicate => Ok(IngestOutcome::Duplicate),
        Stored::Replayed if replay_is_refused => Err(IngestError::Replayed),
        // Without a signed timestamp the same bytes again are the provider's retry.
        Stored::Replayed => Ok(IngestOutcome::Duplicate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows stored before this function existed hold `secret_digest` of the joined text: a
    /// replay of their bytes must still be told by its digest.
    #[test]
    fn the_request_digest_is_the_digest_of_the_joined_text() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
        };
        let body = "{\"text\":\"¿tienen la talla M?\"}".as_bytes();
        for (headers, joined) in [
            (h(&[("x-hub-signature-256", "sha256=ab")]), "sha256=ab"),
            (
                h(&[
                    ("x-a-signature", "a"),
                    ("host", "x"),
                    ("x-telegram-bot-api-secret-token", "b"),
                ]),
                "a\nb",
            ),
            (h(&[("host", "x")]), ""),
        ] {
            let old = secret_digest(&format!("{joined}\n{}", String::from_utf8_lossy(body)));
            assert_eq!(request_digest(&headers, body), old, "{joined}");
        }
    }
}
