//! Outgoing webhooks, the admins' use cases: endpoints with their event types, secrets shown
//! once and rotated with an overlap, a test event, the delivery log, resend and replay.

use http::StatusCode;
use sb_core::Permission;
use sb_core::clock::rfc3339;
use sb_core::standard_webhooks;
use sb_store::StoreError;
use sb_store::audit::{self, Change};
use sb_store::objects::ObjectKind;
use sb_store::webhooks::{self as store, Attempt, DeliveryRow, Endpoint, EndpointChange, NewEndpoint};
use sb_webhooks::catalogue::{self, CATALOGUE};
use sb_webhooks::guard::{self, Refusal};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{AppError, AppResult};
use crate::{App, Principal};

/// Endpoints a workspace may have.
const MAX_ENDPOINTS: usize = 50;
const MAX_URL_CHARS: usize = 2_000;
const MAX_DESCRIPTION_CHARS: usize = 500;
/// How long a rotated-out secret keeps signing, by default and at most.
const DEFAULT_OVERLAP_SECS: i64 = 86_400;
const MAX_OVERLAP_SECS: i64 = 7 * 86_400;
/// Messages a replay queues at most (ask again for the rest).
const REPLAY_LIMIT: i64 = 10_000;

#[derive(Serialize, ToSchema)]
pub struct EventTypeView {
    /// e.g. `message.created`.
    pub name: &'static str,
    pub group: &'static str,
    pub description: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    /// Delivered one at a time in event order.
    pub ordered: bool,
    /// `enabled`, `disabled` (by an admin) or `failing` (disabled after days of failures or a 410).
    #[schema(example = "enabled")]
    pub status: String,
    pub disabled_reason: Option<String>,
    /// Since when every delivery has failed (RFC 3339), when they do.
    pub failing_since: Option<String>,
    /// Until when the previous secret still signs, during a rotation.
    pub previous_secret_valid_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Endpoint> for EndpointView {
    fn from(e: &Endpoint) -> Self {
        EndpointView {
            id: e.id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: e.event_types(),
            ordered: e.ordered,
            status: e.status.clone(),
            disabled_reason: e.disabled_reason.clone(),
            failing_since: e.first_failure_at.map(rfc3339),
            previous_secret_valid_until: e.previous_secret_until.map(rfc3339),
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

/// An endpoint with its secret: the one time the secret is shown (creation, rotation).
#[derive(Serialize, ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_…`: verify signatures with it. It is not shown again.
    pub secret: String,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateEndpoint {
    /// Where events are POSTed: an http(s) URL on a public address.
    #[schema(max_length = 2000)]
    pub url: String,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Names from `GET /api/v1/webhook-event-types`; at least one.
    #[schema(min_items = 1)]
    pub event_types: Vec<String>,
    /// Deliver one at a time, in the order the events happened (default false).
    #[serde(default)]
    pub ordered: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateEndpoint {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub ordered: Option<bool>,
    /// `true` enables (also an endpoint disabled for failing), `false` disables.
    pub enabled: Option<bool>,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct RotateSecret {
    /// How long the old secret keeps signing beside the new one, in seconds (0–604800,
    /// default 86400).
    #[schema(minimum = 0, maximum = 604800)]
    pub keep_previous_secs: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct Replay {
    /// Start of the range (RFC 3339), inclusive.
    pub since: String,
    /// End of the range (RFC 3339), exclusive; default now.
    pub until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayResult {
    /// Messages queued again (those the endpoint did not receive).
    pub queued: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TestResult {
    /// The `webhook-id` of the test message.
    pub message_id: String,
}

#[derive(Deserialize, IntoParams)]
pub struct DeliveryQuery {
    /// `pending`, `succeeded` or `failed`.
    #[param(value_type = Option<crate::views::names::DeliveryState>)]
    pub status: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
pub struct AttemptQuery {
    /// Only the attempts of this message (`webhook-id`).
    pub message_id: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub message_id: String,
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: i64,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    pub last_response_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&DeliveryRow> for DeliveryView {
    fn from(d: &DeliveryRow) -> Self {
        DeliveryView {
            message_id: d.message_id.clone(),
            event_type: d.event_type.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
            next_attempt_at: (d.status == "pending").then(|| rfc3339(d.next_attempt_at)),
            last_response_status: d.last_status,
            last_error: d.last_error.clone(),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    pub message_id: String,
    /// 1 for the first try.
    pub attempt: i64,
    /// `scheduled` or `manual` (a resend or a replay).
    pub trigger: String,
    /// The request: where it went, the signed timestamp and the body sent.
    pub url: String,
    pub webhook_timestamp: i64,
    pub response_status: Option<i64>,
    /// The first kilobyte of the response body.
    pub response_excerpt: Option<String>,
    /// Why no response came (connection refused, timeout, address refused by the guard).
    pub error: Option<String>,
    pub latency_ms: i64,
    pub at: String,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        AttemptView {
            message_id: a.message_id.clone(),
            attempt: a.attempt,
            trigger: a.trigger_kind.clone(),
            url: a.url.clone(),
            webhook_timestamp: a.signed_at,
            response_status: a.response_status,
            response_excerpt: a.response_excerpt.clone(),
            error: a.error.clone(),
            latency_ms: a.latency_ms,
            at: rfc3339(a.at),
        }
    }
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::unprocessable("invalid_webhook_endpoint", message)
}

fn refusal(r: Refusal) -> AppError {
    match r {
        Refusal::InvalidUrl(m) => invalid(m),
        Refusal::AddressNotAllowed(m) => AppError::unprocessable("webhook_address_not_allowed", m),
    }
}

async fn check_url(app: &App, url: &str) -> AppResult<String> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(invalid(format!("the URL is longer than {MAX_URL_CHARS} characters")));
    }
    let url = url.trim();
    guard::check(url, app.webhooks.allow_private).await.map_err(refusal)?;
    Ok(url.to_owned())
}

fn check_types(types: &[String]) -> AppResult<Vec<String>> {
    if types.is_empty() {
        return Err(invalid("choose at least one event type"));
    }
    let mut out: Vec<String> = Vec::new();
    for t in types {
        if catalogue::find(t).is_none() {
            return Err(AppError::unprocessable(
                "unknown_event_type",
                format!("{t} is not an event type; GET /api/v1/webhook-event-types lists them"),
            )
            .with_details(serde_json::json!({ "event_type": t })));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

fn check_description(d: &str) -> AppResult<String> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(invalid(format!(
            "the description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(d.trim().to_owned())
}

fn audit_change<'a>(
    action: &'static str,
    id: &'a str,
    before: Option<&Endpoint>,
    after: Option<&Endpoint>,
) -> Change<'a> {
    let view = |e: &Endpoint| serde_json::to_value(EndpointView::from(e)).unwrap_or_default();
    Change {
        action,
        object_kind: "webhook_endpoint",
        object_id: Some(id),
        before: before.map(view),
        after: after.map(view),
    }
}

async fn not_found(app: &App, principal: &Principal, id: &str) -> AppError {
    crate::access::not_found(
        app,
        principal,
        ObjectKind::WebhookEndpoint,
        id,
        "webhook_endpoint_not_found",
    )
    .await
}

pub fn event_types(principal: &Principal) -> AppResult<Vec<EventTypeView>> {
    principal.require(Permission::ManageWebhooks)?;
    Ok(CATALOGUE
        .iter()
        .map(|e| EventTypeView {
            name: e.name,
            group: e.group,
            description: e.description,
        })
        .collect())
}

pub async fn list(app: &App, principal: &Principal) -> AppResult<Vec<Endpoint>> {
    principal.require(Permission::ManageWebhooks)?;
    let ws = principal.workspace_id().to_owned();
    Ok(app.store.db.read(move |c| store::list(c, &ws)).await?)
}

pub async fn get(app: &App, principal: &Principal, id: &str) -> AppResult<Endpoint> {
    principal.require(Permission::ManageWebhooks)?;
    let (ws, eid) = (principal.workspace_id().to_owned(), id.to_owned());
    match app.store.db.read(move |c| store::get(c, &ws, &eid)).await? {
        Some(e) => Ok(e),
        None => Err(not_found(app, principal, id).await),
    }
}

/// Delivery counts by status, for the settings page.
pub async fn counts(app: &App, principal: &Principal, id: &str) -> AppResult<Vec<(String, i64)>> {
    let endpoint = get(app, principal, id).await?;
    let ws = principal.workspace_id().to_owned();
    Ok(app.store.db.read(move |c| store::counts(c, &ws, &endpoint.id)).await?)
}

pub async fn create(app: &App, principal: &Principal, body: CreateEndpoint) -> AppResult<(Endpoint, String)> {
    principal.require(Permission::ManageWebhooks)?;
    let url = check_url(app, &body.url).await?;
    let types = check_types(&body.event_types)?;
    let description = check_description(body.description.as_deref().unwrap_or_default())?;
    let secret = standard_webhooks::generate_secret();
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.now());
    let returned_secret = secret.clone();
    let created = app
        .store
        .db
        .write(move |c| {
            if store::list(c, &ws)?.len() >= MAX_ENDPOINTS {
                return Ok(None);
            }
            let endpoint = store::create(
                c,
                &NewEndpoint {
                    workspace_id: &ws,
                    url: &url,
                    description: &description,
                    event_types: &types,
                    ordered: body.ordered,
                    secret: &secret,
                },
                now,
            )?;
            audit::record(
                c,
                &ws,
                &actor,
                &audit_change("webhook_endpoint.created", &endpoint.id, None, Some(&endpoint)),
                now,
            )?;
            Ok::<_, StoreError>(Some(endpoint))
        })
        .await?;
    match created {
        Some(endpoint) => Ok((endpoint, returned_secret)),
        None => Err(AppError::new(
            StatusCode::CONFLICT,
            "too_many_webhook_endpoints",
            format!("a workspace has at most {MAX_ENDPOINTS} endpoints; remove one first"),
        )),
    }
}

pub async fn update(app: &App, principal: &Principal, id: &str, body: UpdateEndpoint) -> AppResult<Endpoint> {
    principal.require(Permission::ManageWebhooks)?;
    let url = match &body.url {
        Some(u) => Some(check_url(app, u).await?),
        None => None,
    };
    let types = body.event_types.as_deref().map(check_types).transpose()?;
    let description = body.description.as_deref().map(check_description).transpose()?;
    let (ws, eid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        app.now(),
    );
    let updated = app
        .store
        .db
        .write(move |c| {
            let Some(before) = store::get(c, &ws, &eid)? else {
                return Ok(None);
            };
            let change = EndpointChange {
                url: url.as_deref(),
                description: description.as_deref(),
                event_types: types.as_deref(),
                ordered: body.ordered,
                enabled: body.enabled,
            };
            let after = store::update(c, &ws, &eid, &change, now)?.ok_or(StoreError::NotFound("webhook endpoint"))?;
            audit::record(
                c,
                &ws,
                &actor,
                &audit_change("webhook_endpoint.updated", &eid, Some(&before), Some(&after)),
                now,
            )?;
            Ok::<_, StoreError>(Some(after))
        })
        .await?;
    match updated {
        Some(e) => {
            app.webhooks.wake.notify_one();
            Ok(e)
        }
        None => Err(not_found(app, principal, id).await),
    }
}

pub async fn remove(app: &App, principal: &Principal, id: &str) -> AppResult<()> {
    principal.require(Permission::ManageWebhooks)?;
    let (ws, eid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        app.now(),
    );
    let removed = app
        .store
        .db
        .write(move |c| {
            let Some(before) = store::get(c, &ws, &eid)? else {
                return Ok(false);
            };
            store::delete(c, &ws, &eid)?;
            audit::record(
                c,
                &ws,
                &actor,
                &audit_change("webhook_endpoint.deleted", &eid, Some(&before), None),
                now,
            )?;
            Ok::<_, StoreError>(true)
        })
        .await?;
    if removed {
        Ok(())
    } else {
        Err(not_found(app, principal, id).await)
    }
}

/// A new secret, shown once; the old one keeps signing for the overlap.
pub async fn rotate_secret(
    app: &App,
    principal: &Principal,
    id: &str,
    body: RotateSecret,
) -> AppResult<(Endpoint, String)> {
    principal.require(Permission::ManageWebhooks)?;
    let overlap = body.keep_previous_secs.unwrap_or(DEFAULT_OVERLAP_SECS);
    if !(0..=MAX_OVERLAP_SECS).contains(&overlap) {
        return Err(invalid(format!(
            "keep_previous_secs must be between 0 and {MAX_OVERLAP_SECS}"
        )));
    }
    let secret = standard_webhooks::generate_secret();
    let (ws, eid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        app.now(),
    );
    let returned = secret.clone();
    let rotated = app
        .store
        .db
        .write(move |c| {
            let Some(before) = store::get(c, &ws, &eid)? else {
                return Ok(None);
            };
            let after = store::rotate_secret(c, &ws, &eid, &secret, now + overlap * 1000, now)?
                .ok_or(StoreError::NotFound("webhook endpoint"))?;
            audit::record(
                c,
                &ws,
                &actor,
                &audit_change("webhook_endpoint.secret_rotated", &eid, Some(&before), Some(&after)),
                now,
            )?;
            Ok::<_, StoreError>(Some(after))
        })
        .await?;
    match rotated {
        Some(e) => Ok((e, returned)),
        None => Err(not_found(app, principal, id).await),
    }
}

/// Queues a `webhook.test` message to the endpoint.
pub async fn send_test(app: &App, principal: &Principal, id: &str) -> AppResult<String> {
    let endpoint = get(app, principal, id).await?;
    let now = app.now();
    let message_id = app
        .store
        .db
        .write(move |c| sb_webhooks::dispatch::test_message(c, &endpoint, now))
        .await?;
    app.webhooks.wake.notify_one();
    Ok(message_id)
}

pub async fn deliveries(app: &App, principal: &Principal, id: &str, q: DeliveryQuery) -> AppResult<Vec<DeliveryRow>> {
    principal.require(Permission::ManageWebhooks)?;
    let limit = crate::views::page_limit(q.limit)?;
    if let Some(s) = &q.status
        && !matches!(s.as_str(), "pending" | "succeeded" | "failed")
    {
        return Err(AppError::invalid(
            "invalid_status",
            "status is one of pending, succeeded, failed",
        ));
    }
    let endpoint = get(app, principal, id).await?;
    let ws = principal.workspace_id().to_owned();
    Ok(app
        .store
        .db
        .read(move |c| store::deliveries(c, &ws, &endpoint.id, q.status.as_deref(), limit))
        .await?)
}

pub async fn attempts(app: &App, principal: &Principal, id: &str, q: AttemptQuery) -> AppResult<Vec<Attempt>> {
    principal.require(Permission::ManageWebhooks)?;
    let limit = crate::views::page_limit(q.limit)?;
    let endpoint = get(app, principal, id).await?;
    let ws = principal.workspace_id().to_owned();
    Ok(app
        .store
        .db
        .read(move |c| store::attempts(c, &ws, &endpoint.id, q.message_id.as_deref(), limit))
        .await?)
}

#[derive(Serialize, ToSchema)]
pub struct MessageView {
    /// The `webhook-id` header and the body's `id`.
    pub id: String,
    /// The body, parsed.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// The body exactly as it was signed and sent (the bytes a signature check covers).
    pub raw_body: String,
    /// Every request made with it to this endpoint, newest first.
    pub attempts: Vec<AttemptView>,
}

/// One message as the endpoint was sent it: the request's body and every attempt.
pub async fn message(app: &App, principal: &Principal, id: &str, message_id: &str) -> AppResult<MessageView> {
    let body = message_body(app, principal, id, message_id).await?;
    let attempts = attempts(
        app,
        principal,
        id,
        AttemptQuery {
            message_id: Some(message_id.to_owned()),
            limit: Some(200),
        },
    )
    .await?;
    Ok(MessageView {
        id: message_id.to_owned(),
        body: serde_json::from_str(&body).unwrap_or_default(),
        raw_body: body,
        attempts: attempts.iter().map(AttemptView::from).collect(),
    })
}

/// The exact body of a message as it was signed (the log's request view).
async fn message_body(app: &App, principal: &Principal, id: &str, message_id: &str) -> AppResult<String> {
    let _endpoint = get(app, principal, id).await?;
    let (ws, mid) = (principal.workspace_id().to_owned(), message_id.to_owned());
    app.store
        .db
        .read(move |c| store::message_body(c, &ws, &mid))
        .await?
        .ok_or_else(|| AppError::not_found("webhook_message_not_found", format!("no message {message_id}")))
}

/// Sends a message to the endpoint again now.
pub async fn resend(app: &App, principal: &Principal, id: &str, message_id: &str) -> AppResult<()> {
    let endpoint = get(app, principal, id).await?;
    let (ws, mid, actor, now) = (
        principal.workspace_id().to_owned(),
        message_id.to_owned(),
        principal.actor(),
        app.now(),
    );
    let found = app
        .store
        .db
        .write(move |c| {
            if !store::resend(c, &ws, &endpoint.id, &mid, now)? {
                return Ok(false);
            }
            let change = Change {
                action: "webhook_message.resent",
                object_kind: "webhook_endpoint",
                object_id: Some(&endpoint.id),
                before: None,
                after: Some(serde_json::json!({ "message_id": mid })),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, StoreError>(true)
        })
        .await?;
    if !found {
        return Err(AppError::not_found(
            "webhook_message_not_found",
            format!("the endpoint has no message {message_id}"),
        ));
    }
    app.webhooks.wake.notify_one();
    Ok(())
}

fn parse_time(field: &str, value: &str) -> AppResult<i64> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            AppError::unprocessable(
                "invalid_time_range",
                format!("{field} must be an RFC 3339 time such as 2026-12-01T00:00:00Z"),
            )
        })
}

/// Queues again what the endpoint did not receive in a time range (failed, or created while
/// it was disabled).
pub async fn replay(app: &App, principal: &Principal, id: &str, body: Replay) -> AppResult<u64> {
    principal.require(Permission::ManageWebhooks)?;
    let since = parse_time("since", &body.since)?;
    let now = app.now();
    let until = body
        .until
        .as_deref()
        .map(|u| parse_time("until", u))
        .transpose()?
        .unwrap_or(now + 1);
    if until <= since {
        return Err(AppError::unprocessable(
            "invalid_time_range",
            "until must be after since",
        ));
    }
    let endpoint = get(app, principal, id).await?;
    let (ws, actor) = (principal.workspace_id().to_owned(), principal.actor());
    let queued = app
        .store
        .db
        .write(move |c| {
            let queued = store::replay(c, &endpoint, since, until, REPLAY_LIMIT, now)?;
            let change = Change {
                action: "webhook_endpoint.replayed",
                object_kind: "webhook_endpoint",
                object_id: Some(&endpoint.id),
                before: None,
                after: Some(serde_json::json!({
                    "since": rfc3339(since), "until": rfc3339(until), "queued": queued,
                })),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, StoreError>(queued)
        })
        .await?;
    app.webhooks.wake.notify_one();
    Ok(queued)
}
