//! The admins' webhook settings: endpoints with their event types, the secret shown once,
//! rotation, a test event, enable and disable, the delivery log with resend, and replay of a
//! time range. Plain forms that post and come back (no script needed); every write goes
//! through `sb_app::webhooks`, the JSON API's own use cases.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use sb_app::App;
use sb_app::webhooks::{self, AttemptQuery, CreateEndpoint, DeliveryQuery, Replay, RotateSecret, UpdateEndpoint};
use sb_core::clock::rfc3339;
use sb_store::webhooks::Endpoint;
use sb_webhooks::catalogue::CATALOGUE;

use crate::web::{Chrome, Signed, WebError, WebResult};

const PAGE: &str = "/app/settings/webhooks";
/// What a form post leaves for the page it redirects to (post, redirect, get: a reload does
/// not post again): a notice, or a new secret to show once. Scoped to these pages, short-lived,
/// read once.
const FLASH: &str = "sb_webhook_flash";

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Flash {
    notice: Option<String>,
    secret: Option<String>,
}

fn redirect_with(state: &App, jar: CookieJar, to: &str, flash: Flash) -> Response {
    let value: String =
        form_urlencoded::byte_serialize(serde_json::to_string(&flash).unwrap_or_default().as_bytes()).collect();
    let cookie = Cookie::build((FLASH, value))
        .path(PAGE)
        .http_only(true)
        .secure(state.sessions.secure_cookies)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(120))
        .build();
    (jar.add(cookie), Redirect::to(to)).into_response()
}

/// The flash left for this page, and the jar that forgets it.
fn take_flash(jar: CookieJar) -> (Flash, CookieJar) {
    let Some(c) = jar.get(FLASH) else {
        return (Flash::default(), jar);
    };
    let decoded: String = form_urlencoded::parse(format!("v={}", c.value()).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let flash = serde_json::from_str(&decoded).unwrap_or_default();
    (flash, jar.remove(Cookie::build(FLASH).path(PAGE).build()))
}

pub struct EventChoice {
    pub name: &'static str,
    pub description: &'static str,
    pub checked: bool,
}

/// The catalogue's event types by group, in catalogue order, checked where selected.
pub struct EventGroup {
    pub name: &'static str,
    pub choices: Vec<EventChoice>,
}

fn choices(selected: &[String]) -> Vec<EventGroup> {
    let mut groups: Vec<EventGroup> = Vec::new();
    for e in CATALOGUE {
        let choice = EventChoice {
            name: e.name,
            description: e.description,
            checked: selected.iter().any(|s| s == e.name),
        };
        match groups.iter_mut().find(|g| g.name == e.group) {
            Some(g) => g.choices.push(choice),
            None => groups.push(EventGroup {
                name: e.group,
                choices: vec![choice],
            }),
        }
    }
    groups
}

pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub description: String,
    pub status: String,
    pub status_label: String,
    pub reason: Option<String>,
    pub types: String,
    pub ordered: bool,
    pub failing_since: Option<String>,
}

fn status_label(status: &str) -> &'static str {
    match status {
        "enabled" => "Enabled",
        "disabled" => "Disabled",
        _ => "Disabled: failing",
    }
}

impl From<&Endpoint> for EndpointRow {
    fn from(e: &Endpoint) -> Self {
        EndpointRow {
            id: e.id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            status: e.status.clone(),
            status_label: status_label(&e.status).to_owned(),
            reason: e.disabled_reason.clone(),
            types: e.event_types().join(", "),
            ordered: e.ordered,
            failing_since: e.first_failure_at.map(rfc3339),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "webhooks.html")]
pub struct ListPage {
    pub chrome: Chrome,
    pub endpoints: Vec<EndpointRow>,
    pub choices: Vec<EventGroup>,
    pub error: Option<(String, &'static str)>,
    pub url: String,
    pub description: String,
}

pub async fn list_page(State(state): State<App>, signed: Signed) -> WebResult<ListPage> {
    list(&state, &signed, None, String::new(), String::new(), &[]).await
}

async fn list(
    state: &App,
    signed: &Signed,
    error: Option<(String, &'static str)>,
    url: String,
    description: String,
    selected: &[String],
) -> WebResult<ListPage> {
    let endpoints = webhooks::list(state, &signed.0).await?;
    Ok(ListPage {
        chrome: signed.chrome("webhooks"),
        endpoints: endpoints.iter().map(EndpointRow::from).collect(),
        choices: choices(selected),
        error,
        url,
        description,
    })
}

/// The endpoint form's fields: `event_types` repeats, one per checked box.
fn form_fields(body: &[u8]) -> (Vec<(String, String)>, Vec<String>) {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let types = pairs
        .iter()
        .filter(|(k, _)| k == "event_types")
        .map(|(_, v)| v.clone())
        .collect();
    (pairs, types)
}

fn field(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// Checks the posted form for NUL characters, as the web app's `Form` does.
fn refuse_nul(pairs: &[(String, String)]) -> WebResult<()> {
    if pairs.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
        return Err(sb_app::AppError::unprocessable("invalid_text", "text may not contain NUL characters").into());
    }
    Ok(())
}

/// Adds an endpoint and shows it with its secret, this once.
pub async fn create(State(state): State<App>, signed: Signed, jar: CookieJar, body: axum::body::Bytes) -> Response {
    let (pairs, types) = form_fields(&body);
    if let Err(e) = refuse_nul(&pairs) {
        return e.into_response();
    }
    let url = field(&pairs, "url").unwrap_or_default();
    let description = field(&pairs, "description").unwrap_or_default();
    let request = CreateEndpoint {
        url: url.clone(),
        description: Some(description.clone()),
        event_types: types.clone(),
        ordered: field(&pairs, "ordered").is_some(),
    };
    match webhooks::create(&state, &signed.0, request).await {
        Ok((endpoint, secret)) => redirect_with(
            &state,
            jar,
            &format!("{PAGE}/{}", endpoint.id),
            Flash {
                notice: None,
                secret: Some(secret),
            },
        ),
        Err(e) => {
            // The form keeps what was typed; the reason shows above it.
            let message = (e.message.clone(), e.code);
            match list(&state, &signed, Some(message), url, description, &types).await {
                Ok(page) => (e.status, page).into_response(),
                Err(e) => e.into_response(),
            }
        }
    }
}

pub struct DeliveryLine {
    pub message_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub last: String,
    pub next: String,
    pub at: String,
}

pub struct AttemptLine {
    pub at: String,
    pub signed_at: i64,
    pub message_id: String,
    pub attempt: i64,
    pub trigger: String,
    pub outcome: String,
    pub ok: bool,
    pub latency_ms: i64,
    pub excerpt: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "webhook.html")]
pub struct DetailPage {
    pub chrome: Chrome,
    pub endpoint: EndpointRow,
    pub choices: Vec<EventGroup>,
    /// Shown once, after creation or rotation.
    pub secret: Option<String>,
    pub previous_until: Option<String>,
    pub notice: Option<String>,
    pub counts: String,
    pub deliveries: Vec<DeliveryLine>,
    pub attempts: Vec<AttemptLine>,
}

async fn detail(
    state: &App,
    signed: &Signed,
    id: &str,
    secret: Option<String>,
    notice: Option<String>,
) -> WebResult<DetailPage> {
    let endpoint = webhooks::get(state, &signed.0, id).await?;
    let counts = webhooks::counts(state, &signed.0, id).await?;
    let deliveries = webhooks::deliveries(
        state,
        &signed.0,
        id,
        DeliveryQuery {
            status: None,
            limit: Some(50),
        },
    )
    .await?;
    let attempts = webhooks::attempts(
        state,
        &signed.0,
        id,
        AttemptQuery {
            message_id: None,
            limit: Some(50),
        },
    )
    .await?;
    let now = state.now();
    let counts = ["pending", "succeeded", "failed"]
        .iter()
        .map(|s| {
            let n = counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
            format!("{n} {s}")
        })
        .collect::<Vec<_>>()
        .join(" · ");
    Ok(DetailPage {
        chrome: signed.chrome("webhooks"),
        choices: choices(&endpoint.event_types()),
        previous_until: endpoint.previous_secret_until.filter(|u| *u > now).map(rfc3339),
        endpoint: EndpointRow::from(&endpoint),
        secret,
        notice,
        counts,
        deliveries: deliveries
            .iter()
            .map(|d| DeliveryLine {
                message_id: d.message_id.clone(),
                event_type: d.event_type.clone(),
                status: d.status.clone(),
                attempts: d.attempts,
                last: match (d.last_status, &d.last_error) {
                    (Some(s), _) => format!("HTTP {s}"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "—".into(),
                },
                next: if d.status == "pending" {
                    rfc3339(d.next_attempt_at)
                } else {
                    "—".into()
                },
                at: rfc3339(d.created_at),
            })
            .collect(),
        attempts: attempts.iter().map(AttemptLine::from).collect(),
    })
}

impl From<&sb_store::webhooks::Attempt> for AttemptLine {
    fn from(a: &sb_store::webhooks::Attempt) -> Self {
        AttemptLine {
            at: rfc3339(a.at),
            signed_at: a.signed_at,
            message_id: a.message_id.clone(),
            attempt: a.attempt,
            trigger: a.trigger_kind.clone(),
            ok: a.response_status.is_some_and(|s| (200..300).contains(&s)),
            outcome: match (a.response_status, &a.error) {
                (Some(s), _) => format!("HTTP {s}"),
                (None, Some(e)) => e.clone(),
                (None, None) => "—".into(),
            },
            latency_ms: a.latency_ms,
            excerpt: a
                .response_excerpt
                .clone()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "webhook_message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub endpoint_id: String,
    pub endpoint_url: String,
    pub message_id: String,
    pub body: String,
    pub attempts: Vec<AttemptLine>,
}

/// One message: the body as it was signed and every attempt (the log's request view).
pub async fn message_page(
    State(state): State<App>,
    signed: Signed,
    Path((id, message_id)): Path<(String, String)>,
) -> WebResult<MessagePage> {
    let endpoint = webhooks::get(&state, &signed.0, &id).await?;
    let message = webhooks::message(&state, &signed.0, &id, &message_id).await?;
    let attempts = webhooks::attempts(
        &state,
        &signed.0,
        &id,
        AttemptQuery {
            message_id: Some(message_id.clone()),
            limit: Some(200),
        },
    )
    .await?;
    Ok(MessagePage {
        chrome: signed.chrome("webhooks"),
        endpoint_id: endpoint.id,
        endpoint_url: endpoint.url,
        message_id,
        body: message.raw_body,
        attempts: attempts.iter().map(AttemptLine::from).collect(),
    })
}

pub async fn detail_page(State(state): State<App>, signed: Signed, jar: CookieJar, Path(id): Path<String>) -> Response {
    let (flash, jar) = take_flash(jar);
    match detail(&state, &signed, &id, flash.secret, flash.notice).await {
        Ok(page) => (jar, page).into_response(),
        Err(e) => e.into_response(),
    }
}

fn back(id: &str) -> Response {
    Redirect::to(&format!("{PAGE}/{id}")).into_response()
}

fn back_with_notice(state: &App, jar: CookieJar, id: &str, notice: String) -> Response {
    let flash = Flash {
        notice: Some(notice),
        secret: None,
    };
    redirect_with(state, jar, &format!("{PAGE}/{id}"), flash)
}

/// Saves the settings form (URL, description, event types, ordering).
pub async fn update(
    State(state): State<App>,
    signed: Signed,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (pairs, types) = form_fields(&body);
    if let Err(e) = refuse_nul(&pairs) {
        return e.into_response();
    }
    let change = UpdateEndpoint {
        url: field(&pairs, "url"),
        description: field(&pairs, "description"),
        event_types: Some(types),
        ordered: Some(field(&pairs, "ordered").is_some()),
        enabled: None,
    };
    match webhooks::update(&state, &signed.0, &id, change).await {
        Ok(_) => back(&id),
        Err(e) => WebError::from(e).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub struct EnableForm {
    enabled: String,
}

pub async fn set_enabled(
    State(state): State<App>,
    signed: Signed,
    Path(id): Path<String>,
    crate::web::Form(form): crate::web::Form<EnableForm>,
) -> Response {
    let change = UpdateEndpoint {
        url: None,
        description: None,
        event_types: None,
        ordered: None,
        enabled: Some(form.enabled == "true"),
    };
    match webhooks::update(&state, &signed.0, &id, change).await {
        Ok(_) => back(&id),
        Err(e) => WebError::from(e).into_response(),
    }
}

pub async fn rotate(State(state): State<App>, signed: Signed, jar: CookieJar, Path(id): Path<String>) -> Response {
    match webhooks::rotate_secret(&state, &signed.0, &id, RotateSecret::default()).await {
        Ok((_, secret)) => {
            let flash = Flash {
                notice: None,
                secret: Some(secret),
            };
            redirect_with(&state, jar, &format!("{PAGE}/{id}"), flash)
        }
        Err(e) => WebError::from(e).into_response(),
    }
}

pub async fn test(State(state): State<App>, signed: Signed, jar: CookieJar, Path(id): Path<String>) -> Response {
    match webhooks::send_test(&state, &signed.0, &id).await {
        Ok(message_id) => {
            let notice = format!("Test event {message_id} queued; its attempt appears in the log below.");
            back_with_notice(&state, jar, &id, notice)
        }
        Err(e) => WebError::from(e).into_response(),
    }
}

pub async fn delete(State(state): State<App>, signed: Signed, Path(id): Path<String>) -> Response {
    match webhooks::remove(&state, &signed.0, &id).await {
        Ok(()) => Redirect::to(PAGE).into_response(),
        Err(e) => WebError::from(e).into_response(),
    }
}

pub async fn resend(
    State(state): State<App>,
    signed: Signed,
    jar: CookieJar,
    Path((id, message_id)): Path<(String, String)>,
) -> Response {
    match webhooks::resend(&state, &signed.0, &id, &message_id).await {
        Ok(()) => back_with_notice(&state, jar, &id, format!("{message_id} will be sent again now.")),
        Err(e) => WebError::from(e).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub struct ReplayForm {
    since: String,
    #[serde(default)]
    until: String,
}

/// `datetime-local` sends `2026-12-07T10:00`; the page says the times are UTC.
fn as_utc(local: &str) -> String {
    let local = local.trim();
    match local.len() {
        16 => format!("{local}:00Z"),
        19 => format!("{local}Z"),
        _ => local.to_owned(),
    }
}

pub async fn replay(
    State(state): State<App>,
    signed: Signed,
    jar: CookieJar,
    Path(id): Path<String>,
    crate::web::Form(form): crate::web::Form<ReplayForm>,
) -> Response {
    let body = Replay {
        since: as_utc(&form.since),
        until: Some(form.until).filter(|u| !u.trim().is_empty()).map(|u| as_utc(&u)),
    };
    match webhooks::replay(&state, &signed.0, &id, body).await {
        Ok(queued) => back_with_notice(&state, jar, &id, format!("{queued} messages queued again.")),
        Err(e) => WebError::from(e).into_response(),
    }
}
