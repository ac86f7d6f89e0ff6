//! Customer profiles: identities, traits, the timeline, consent, privacy requests, loyalty.

use crate::error::{AppError, AppResult};
use crate::{App, Principal};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use sb_core::{Permission, credentials};
use sb_store::audit::{self, Change};
use sb_store::objects::ObjectKind;
use sb_store::{StoreError, consents, customers, event_sources, events, merges, profiles};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
pub struct CreateSource {
    /// What sends with this key, e.g. "web shop".
    pub name: String,
    /// Above this rate the source gets 429 with Retry-After (default 200,000).
    pub events_per_second: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct SourceView {
    pub id: String,
    pub name: String,
    pub events_per_second: i64,
    pub disabled: bool,
    pub created_at: String,
}

impl From<&event_sources::EventSource> for SourceView {
    fn from(s: &event_sources::EventSource) -> Self {
        SourceView {
            id: s.id.clone(),
            name: s.name.clone(),
            events_per_second: s.events_per_second,
            disabled: s.disabled,
            created_at: sb_core::clock::rfc3339(s.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedSource {
    #[serde(flatten)]
    pub source: SourceView,
    /// The write key Segment libraries send. Shown only in this response; stored hashed.
    pub write_key: String,
}

pub const DEFAULT_EVENTS_PER_SECOND: i64 = 200_000;
/// Creates an event source: a write key for Segment's libraries (point their host at this server).
pub async fn create_source(app: &App, principal: &Principal, body: CreateSource) -> AppResult<CreatedSource> {
    principal.require(Permission::ManageWorkspace)?;
    let name = body.name.trim().to_owned();
    let rate = body.events_per_second.unwrap_or(DEFAULT_EVENTS_PER_SECOND);
    if name.is_empty() || name.len() > 100 || !(1..=10_000_000).contains(&rate) {
        return Err(AppError::unprocessable(
            "invalid_request",
            "name must be 1–100 characters and events_per_second 1–10,000,000",
        ));
    }
    let write_key = format!("wk_{}", credentials::random_secret());
    let digest = credentials::secret_digest(&write_key);
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let source = app
        .store
        .db
        .write(move |c| {
            let source = event_sources::create(c, &ws, &name, &digest, rate, now)?;
            let change = Change {
                action: "event_source.created",
                object_kind: "event_source",
                object_id: Some(&source.id),
                before: None,
                after: Some(serde_json::to_value(SourceView::from(&source)).unwrap_or_default()),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, StoreError>(source)
        })
        .await?;
    Ok(CreatedSource {
        source: SourceView::from(&source),
        write_key,
    })
}
/// The workspace's event sources (without their keys).
pub async fn list_sources(app: &App, principal: &Principal) -> AppResult<Vec<SourceView>> {
    principal.require(Permission::ManageWorkspace)?;
    let ws = principal.workspace_id().to_owned();
    let sources = app.store.db.read(move |c| event_sources::list(c, &ws)).await?;
    Ok(sources.iter().map(SourceView::from).collect())
}

#[derive(Serialize, ToSchema)]
pub struct BatchStats {
    /// Batches stored (acknowledged) and not yet processed into events.
    pub queued: i64,
    /// Of those, batches that failed five times and wait for an operator.
    pub set_aside: i64,
}
/// The workspace's event-batch queue.
pub async fn batch_stats(app: &App, principal: &Principal) -> AppResult<BatchStats> {
    principal.require(Permission::ManageJobs)?;
    let ws = principal.workspace_id().to_owned();
    let (queued, set_aside) = app.store.db.read(move |c| events::queue_stats(c, &ws)).await?;
    Ok(BatchStats { queued, set_aside })
}

/// A customer's profile: who they are on every channel, what we know and may do.
#[derive(Serialize, ToSchema)]
pub struct Profile {
    #[schema(value_type = Object)]
    pub customer: Value,
    /// Identifiers with their kind, scope ('' = global) and when first seen.
    #[schema(value_type = Vec<Object>)]
    pub identifiers: Vec<Value>,
    /// Trait name → `{value, source, at, event_id}`; the newest statement by event time wins.
    #[schema(value_type = Object)]
    pub traits: Value,
    /// Current consent per channel and purpose, and every statement with its proof.
    #[schema(value_type = Object)]
    pub consents: Value,
    #[schema(value_type = Option<Object>)]
    pub loyalty: Option<Value>,
    /// Customers merged into this one (or this one into another), with the rule and evidence.
    #[schema(value_type = Vec<Object>)]
    pub merges: Vec<Value>,
}

fn merge_view(m: &merges::Merge) -> Value {
    json!({
        "id": m.id, "target_customer_id": m.target_customer_id, "source_customer_id": m.source_customer_id,
        "rule": m.rule, "evidence": serde_json::from_str::<Value>(&m.evidence_json).unwrap_or_default(),
        "actor_id": m.actor_id, "merged_at": sb_core::clock::rfc3339(m.merged_at),
        "undone_at": m.undone_at.map(sb_core::clock::rfc3339),
    })
}

fn load_profile(c: &mut dyn sb_store::Conn, ws: &str, id: &str) -> Result<Option<Profile>, StoreError> {
    let Some(customer) = customers::get(c, ws, id)? else {
        return Ok(None);
    };
    let identifiers = customers::identities(c, ws, id)?
        .into_iter()
        .map(|i| {
            json!({"kind": i.kind, "scope": i.scope, "value": i.value, "verified": i.verified,
                   "first_seen": sb_core::clock::rfc3339(i.created_at)})
        })
        .collect();
    let mut traits = serde_json::Map::new();
    for t in profiles::traits(c, ws, id)? {
        traits.insert(
            t.name.clone(),
            json!({"value": serde_json::from_str::<Value>(&t.value_json).unwrap_or(Value::Null),
                   "source": t.source, "event_id": t.event_id, "at": sb_core::clock::rfc3339(t.at)}),
        );
    }
    let current: Vec<Value> = consents::list(c, ws, id)?
        .iter()
        .map(|k| {
            json!({"channel": k.channel, "purpose": k.purpose, "granted": k.granted, "source": k.source,
                   "at": sb_core::clock::rfc3339(k.at)})
        })
        .collect();
    let history: Vec<Value> = consents::history(c, ws, id)?
        .iter()
        .map(|k| {
            json!({"id": k.id, "channel": k.channel, "purpose": k.purpose, "granted": k.granted, "source": k.source,
                   "at": sb_core::clock::rfc3339(k.at),
                   "proof": serde_json::from_str::<Value>(&k.proof_json).unwrap_or_default()})
        })
        .collect();
    let loyalty = profiles::loyalty(c, ws, id)?.map(|m| {
        json!({"loyalty_id": m.loyalty_id, "incentive": m.incentive, "joined_at": sb_core::clock::rfc3339(m.joined_at)})
    });
    let merges = merges::list_for(c, ws, id)?.iter().map(merge_view).collect();
    Ok(Some(Profile {
        customer: json!({
            "id": customer.id, "name": customer.name, "email": customer.email, "phone": customer.phone,
            "merged_into": customer.merged_into, "created_at": sb_core::clock::rfc3339(customer.created_at),
        }),
        identifiers,
        traits: Value::Object(traits),
        consents: json!({"current": current, "history": history}),
        loyalty,
        merges,
    }))
}

async fn profile_or_404(app: &App, principal: &Principal, id: String) -> AppResult<Profile> {
    let (ws, cid) = (principal.workspace_id().to_owned(), id.clone());
    match app.store.db.read(move |c| load_profile(c, &ws, &cid)).await? {
        Some(p) => Ok(p),
        None => Err(crate::access::not_found(app, principal, ObjectKind::Customer, &id, "customer_not_found").await),
    }
}
/// A customer's profile with identifiers, traits, consents, loyalty and merges.
pub async fn get_profile(app: &App, principal: &Principal, id: String) -> AppResult<Profile> {
    principal.require(Permission::ReadCustomers)?;
    profile_or_404(app, principal, id).await
}
/// The identifier kinds identity resolution knows: scope, per-profile limit (and its window),
/// priority (1 strongest; the weakest is dropped when a limit would break), and the values
/// that are never identifiers.
pub async fn identifier_types(principal: &Principal) -> AppResult<Value> {
    principal.require(Permission::ReadCustomers)?;
    Ok(json!({
        "items": sb_core::identity::RULES,
        "blocked_values": sb_core::identity::BLOCKED,
        "blocked_pattern": "^[0-]*$",
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupQuery {
    /// `user_id`, `email`, `phone`, `anonymous_id`, `loyalty_id`, `device_id`, or a channel's
    /// scoped kind (`messenger_psid`, `instagram_igsid`, `telegram_user`, `whatsapp_bsuid`).
    pub kind: String,
    pub value: String,
    /// The channel account id for scoped kinds.
    pub scope: Option<String>,
}
/// Finds the profile holding an identifier (normalised as its kind says: e-mail case, E.164).
pub async fn lookup(app: &App, principal: &Principal, q: LookupQuery) -> AppResult<Profile> {
    principal.require(Permission::ReadCustomers)?;
    if sb_core::identity::rule_for(&q.kind).is_none() {
        return Err(AppError::unprocessable(
            "unknown_identifier_kind",
            format!("no identifier kind `{}`", q.kind),
        ));
    }
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.now());
    let scope = q.scope.unwrap_or_default();
    let (w, k, sc, v) = (ws.clone(), q.kind.clone(), scope.clone(), q.value.clone());
    let found = app.store.db.read(move |c| profiles::lookup(c, &w, &k, &sc, &v)).await?;
    if found.is_none() {
        // Looking up another workspace's customer by identifier is audited like an id.
        app.store
            .db
            .write(move |c| {
                if profiles::held_elsewhere(c, &ws, &q.kind, &scope, &q.value)? {
                    crate::access::record_denied(c, &ws, &actor, "identifier", &q.kind, now)?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
    }
    match found {
        Some(id) => profile_or_404(app, principal, id).await,
        None => Err(AppError::not_found("profile_not_found", "nobody holds that identifier")),
    }
}

#[derive(Serialize, ToSchema)]
pub struct TimelinePage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn timeline_view(e: &events::TimelineEntry) -> Value {
    let detail = if e.source == "message" {
        json!({ "text": e.detail })
    } else {
        serde_json::from_str(&e.detail).unwrap_or(Value::Null)
    };
    json!({"id": e.id, "source": e.source, "kind": e.kind, "name": e.name, "channel": e.channel,
           "at": sb_core::clock::rfc3339(e.at), "detail": detail})
}
/// The customer's timeline, newest first: events (commerce ones marked), messages on every
/// channel (for roles that may read conversations), and order steps.
pub async fn timeline(app: &App, principal: &Principal, id: String, q: TimelineQuery) -> AppResult<TimelinePage> {
    principal.require(Permission::ReadCustomers)?;
    let limit = crate::views::page_limit(q.limit)?;
    let before = match &q.cursor {
        None => None,
        Some(c) => {
            let decoded = URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| {
                    s.split_once('|')
                        .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned())))
                });
            Some(decoded.ok_or_else(|| AppError::invalid("invalid_cursor", "the cursor is not one we gave out"))?)
        }
    };
    let (ws, cid) = (principal.workspace_id().to_owned(), id.clone());
    let rows = app
        .store
        .db
        .read(move |c| {
            if customers::get(c, &ws, &cid)?.is_none() {
                return Ok(None);
            }
            let before = before.as_ref().map(|(at, id)| (*at, id.as_str()));
            Ok::<_, StoreError>(Some(events::timeline(c, &ws, &cid, before, limit)?))
        })
        .await?;
    let Some(rows) = rows else {
        return Err(crate::access::not_found(app, principal, ObjectKind::Customer, &id, "customer_not_found").await);
    };
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| {
            rows.last()
                .map(|r| URL_SAFE_NO_PAD.encode(format!("{}|{}", r.at, r.id)))
        })
        .flatten();
    // Messages and notes are conversation content: only a role that may read conversations
    // sees them here, as in the inbox.
    let content = principal.may(Permission::ReadConversations);
    Ok(TimelinePage {
        items: rows
            .iter()
            .filter(|e| content || e.source != "message")
            .map(timeline_view)
            .collect(),
        next_cursor,
    })
}

#[derive(Deserialize, ToSchema)]
pub struct RecordConsent {
    /// The channel kind: `whatsapp`, `email`, `twilio_sms`, `messenger`, …
    pub channel: String,
    /// `service`, `transactional` or `marketing`.
    pub purpose: String,
    pub granted: bool,
    /// Where it was stated: `signup_form`, `checkout`, `phone_call`, …
    pub source: String,
    /// The words the customer saw and agreed to (required when granting).
    pub text_shown: Option<String>,
    /// The customer's IP address, if stated online.
    pub ip: Option<String>,
    /// The event that carried the statement, if any.
    pub event_id: Option<String>,
}
/// Records a consent statement with its proof (append-only; the current view follows the
/// newest statement). Audited.
pub async fn record_consent(app: &App, principal: &Principal, id: String, body: RecordConsent) -> AppResult<Profile> {
    principal.require(Permission::ManageConsent)?;
    if !sb_core::consent::PURPOSES.contains(&body.purpose.as_str()) {
        return Err(AppError::unprocessable(
            "invalid_consent",
            format!("purpose must be one of {}", sb_core::consent::PURPOSES.join(", ")),
        ));
    }
    let text_shown = body.text_shown.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if body.channel.trim().is_empty() || body.source.trim().is_empty() || (body.granted && text_shown.is_none()) {
        return Err(AppError::unprocessable(
            "invalid_consent",
            "channel and source are required, and text_shown (what the customer agreed to) when granting",
        ));
    }
    let recorder = principal.actor();
    let proof = json!({"text_shown": text_shown, "ip": body.ip, "event_id": body.event_id,
                       "recorded_by": {"kind": recorder.kind, "id": recorder.id, "ip": recorder.ip}});
    let (ws, cid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.clone(),
        principal.actor(),
        app.store.now(),
    );
    let recorded = app
        .store
        .db
        .write(move |c| {
            match customers::get(c, &ws, &cid)? {
                Some(cu) if cu.merged_into.is_none() && cu.erased_at.is_none() => {}
                _ => return Ok(false),
            }
            let change = consents::Change {
                workspace_id: &ws,
                customer_id: &cid,
                channel: &body.channel,
                purpose: &body.purpose,
                granted: body.granted,
                source: &body.source,
                at: now,
                proof: proof.clone(),
            };
            consents::record(c, &change)?;
            let audit_change = Change {
                action: "consent.recorded",
                object_kind: "customer",
                object_id: Some(&cid),
                before: None,
                after: Some(
                    json!({"channel": body.channel, "purpose": body.purpose, "granted": body.granted,
                                   "source": body.source, "proof": proof}),
                ),
            };
            audit::record(c, &ws, &actor, &audit_change, now)?;
            Ok::<_, StoreError>(true)
        })
        .await?;
    if !recorded {
        return Err(crate::access::not_found(app, principal, ObjectKind::Customer, &id, "customer_not_found").await);
    }
    let profile = profile_or_404(app, principal, id).await?;
    Ok(profile)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MaySendQuery {
    pub channel: String,
    /// `service`, `transactional` or `marketing`.
    pub purpose: String,
}

#[derive(Serialize, ToSchema)]
pub struct SendVerdict {
    pub allowed: bool,
    /// Why not: `consent_missing`, `consent_revoked`, `address_suppressed`, `customer_erased`.
    pub code: Option<String>,
    pub reason: Option<String>,
}
/// May we send this purpose on this channel to this customer now, and if not, why. The
/// outbox asks the same question before every send.
pub async fn may_send(app: &App, principal: &Principal, id: String, q: MaySendQuery) -> AppResult<SendVerdict> {
    principal.require(Permission::ReadConsent)?;
    let purpose = match q.purpose.as_str() {
        "service" => sb_core::inbox::Purpose::Conversation,
        other => sb_core::inbox::Purpose::parse(other)
            .filter(|p| *p != sb_core::inbox::Purpose::Conversation)
            .ok_or_else(|| {
                AppError::unprocessable("invalid_purpose", "purpose: service, transactional or marketing")
            })?,
    };
    let (ws, cid) = (principal.workspace_id().to_owned(), id.clone());
    let verdict = app
        .store
        .db
        .read(move |c| {
            if customers::get(c, &ws, &cid)?.is_none() {
                return Ok(None);
            }
            // The first of the customer's addresses that is suppressed on the channel decides.
            let mut verdict = consents::may_send(c, &ws, &cid, &q.channel, None, purpose)?;
            if verdict.is_ok() {
                for identity in customers::identities(c, &ws, &cid)? {
                    let v = consents::may_send(c, &ws, &cid, &q.channel, Some(&identity.value), purpose)?;
                    if v.is_err() {
                        verdict = v;
                        break;
                    }
                }
            }
            Ok::<_, StoreError>(Some(verdict))
        })
        .await?;
    match verdict {
        Some(Ok(())) => Ok(SendVerdict {
            allowed: true,
            code: None,
            reason: None,
        }),
        Some(Err(r)) => Ok(SendVerdict {
            allowed: false,
            code: Some(r.code.to_owned()),
            reason: Some(r.reason),
        }),
        None => Err(crate::access::not_found(app, principal, ObjectKind::Customer, &id, "customer_not_found").await),
    }
}

/// Runs `act` on customer `id` of the caller's workspace in one transaction and audits it as
/// `action`, with what `act` reports as the change; a missing customer is a 404 (audited when
/// the id belongs to another workspace). Store errors are left to the caller to name.
async fn audited_on_customer<T, F>(
    app: &App,
    principal: &Principal,
    id: &str,
    action: &'static str,
    act: F,
) -> AppResult<Result<T, StoreError>>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn sb_store::Conn, &str, &str, i64) -> Result<(T, Option<Value>), StoreError> + Send + 'static,
{
    let (ws, cid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        app.store.now(),
    );
    let outcome = app
        .store
        .db
        .write(move |c| {
            if customers::get(c, &ws, &cid)?.is_none() {
                return Ok(None);
            }
            let (done, after) = act(c, &ws, &cid, now)?;
            let change = Change {
                action,
                object_kind: "customer",
                object_id: Some(&cid),
                before: None,
                after,
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, StoreError>(Some(done))
        })
        .await;
    match outcome {
        Ok(Some(done)) => Ok(Ok(done)),
        Ok(None) => Err(crate::access::not_found(app, principal, ObjectKind::Customer, id, "customer_not_found").await),
        Err(e) => Ok(Err(e)),
    }
}
/// Everything stored about a customer, as JSON (a data-access or portability request). Audited.
pub async fn export(app: &App, principal: &Principal, id: String) -> AppResult<Value> {
    principal.require(Permission::ManagePrivacy)?;
    let exported = audited_on_customer(app, principal, &id, "customer.exported", |c, ws, cid, _| {
        Ok((profiles::export(c, ws, cid)?, None))
    })
    .await?;
    Ok(exported?)
}
/// Erases a customer: their events, traits, identifiers, messages, consents and loyalty
/// membership are deleted, orders are kept for the books without the person, and hashes of
/// their identifiers stop the same person's events from being stored again. Audited.
pub async fn erase(app: &App, principal: &Principal, id: String) -> AppResult<Value> {
    principal.require(Permission::ManagePrivacy)?;
    let erased = audited_on_customer(app, principal, &id, "customer.erased", |c, ws, cid, now| {
        let deleted = profiles::erase(c, ws, cid, now)?;
        Ok((deleted.clone(), Some(Value::Object(deleted))))
    })
    .await?;
    match erased {
        Ok(deleted) => Ok(json!({ "erased": true, "deleted": deleted })),
        Err(StoreError::Conflict(m)) => Err(AppError::new(StatusCode::CONFLICT, "customer_merged", m)),
        Err(e) => Err(e.into()),
    }
}
/// The merges a customer took part in (by an agent, or automatic with their evidence);
/// undo one with `POST /api/v1/customer-merges/{id}/undo`.
pub async fn list_merges(app: &App, principal: &Principal, id: String) -> AppResult<Vec<Value>> {
    principal.require(Permission::ReadCustomers)?;
    let (ws, cid) = (principal.workspace_id().to_owned(), id.clone());
    let found = app
        .store
        .db
        .read(move |c| {
            if customers::get(c, &ws, &cid)?.is_none() {
                return Ok(None);
            }
            Ok::<_, StoreError>(Some(merges::list_for(c, &ws, &cid)?))
        })
        .await?;
    match found {
        Some(list) => Ok(list.iter().map(merge_view).collect()),
        None => Err(crate::access::not_found(app, principal, ObjectKind::Customer, &id, "customer_not_found").await),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct IdentifierRef {
    pub kind: String,
    /// '' (or absent) for global identifiers; the channel account id for scoped ones.
    #[serde(default)]
    pub scope: String,
    pub value: String,
}

#[derive(Deserialize, ToSchema)]
pub struct SplitRequest {
    /// The identifiers that belong to someone else.
    pub identifiers: Vec<IdentifierRef>,
}
/// Splits identifiers off a profile by hand: they and the events they carried move to a new
/// profile (returned). Audited; merging the two again is an ordinary, undoable merge.
pub async fn split(app: &App, principal: &Principal, id: String, body: SplitRequest) -> AppResult<Profile> {
    principal.require(Permission::ReplyConversations)?;
    let ids: Vec<sb_core::identity::Identifier> = body
        .identifiers
        .iter()
        .map(|i| sb_core::identity::Identifier::new(&i.kind, &i.scope, &i.value))
        .collect();
    let result = audited_on_customer(app, principal, &id, "customer.split", move |c, ws, cid, now| {
        let new = profiles::split(c, ws, cid, &ids, now)?;
        let after = json!({"new_customer_id": new, "identifiers": ids});
        Ok((new, Some(after)))
    })
    .await?;
    match result {
        Ok(new) => {
            let profile = profile_or_404(app, principal, new).await?;
            Ok(profile)
        }
        Err(StoreError::Invalid(m)) => Err(AppError::unprocessable("invalid_split", m)),
        Err(StoreError::Conflict(m)) => Err(AppError::new(StatusCode::CONFLICT, "customer_merged", m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct JoinLoyalty {
    /// The visitor as known so far: any of these identify them (an anonymous id stitches the
    /// visitor's earlier events to the member's profile).
    pub anonymous_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub user_id: Option<String>,
    /// What they were given for joining, e.g. "10% off the next order".
    pub incentive: String,
}

#[derive(Serialize, ToSchema)]
pub struct Membership {
    pub customer_id: String,
    pub loyalty_id: String,
    pub incentive: String,
    pub joined_at: String,
    /// Profiles merged into the member's by this sign-up.
    pub merges: Vec<String>,
}
/// Enrols a visitor or customer in the loyalty programme: resolves who they are from the
/// identifiers given (stitching an anonymous visitor's history), issues a loyalty id and
/// records the incentive. Audited.
pub async fn join_loyalty(app: &App, principal: &Principal, body: JoinLoyalty) -> AppResult<Membership> {
    principal.require(Permission::ManageCustomers)?;
    let mut ids = Vec::new();
    for (kind, raw) in [
        ("user_id", &body.user_id),
        ("email", &body.email),
        ("phone", &body.phone),
        ("anonymous_id", &body.anonymous_id),
    ] {
        if let Some(raw) = raw {
            let value = sb_core::identity::normalise(kind, raw)
                .map_err(|e| AppError::unprocessable("invalid_identifier", e.to_string()))?;
            ids.push(sb_core::identity::Identifier::new(kind, "", &value));
        }
    }
    let incentive = body.incentive.trim().to_owned();
    if ids.is_empty() || incentive.is_empty() {
        return Err(AppError::unprocessable(
            "invalid_identifier",
            "give at least one of anonymous_id, email, phone, user_id, and the incentive",
        ));
    }
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let (member, merged) = app
        .store
        .db
        .write(move |c| {
            let resolution = profiles::resolve(c, &ws, &ids, None, now)?;
            let member = profiles::join_loyalty(c, &ws, &resolution.customer_id, &incentive, now)?;
            let change = Change {
                action: "loyalty.joined",
                object_kind: "customer",
                object_id: Some(&member.customer_id),
                before: None,
                after: Some(json!({"loyalty_id": member.loyalty_id, "incentive": member.incentive})),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, StoreError>((member, resolution.merges))
        })
        .await?;
    Ok(Membership {
        customer_id: member.customer_id,
        loyalty_id: member.loyalty_id,
        incentive: member.incentive,
        joined_at: sb_core::clock::rfc3339(member.joined_at),
        merges: merged,
    })
}
