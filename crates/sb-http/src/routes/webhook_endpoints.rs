//! Outgoing webhooks (Standard Webhooks): the event catalogue, endpoints, their secrets, the
//! delivery log, resend and replay. Admins only (`manage_webhooks`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use sb_app::webhooks::{
    self, AttemptQuery, AttemptView, CreateEndpoint, DeliveryQuery, DeliveryView, EndpointView, EndpointWithSecret,
    EventTypeView, MessageView, Replay, ReplayResult, RotateSecret, TestResult, UpdateEndpoint,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_event_types))
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
        .routes(routes!(list_deliveries))
        .routes(routes!(list_attempts))
        .routes(routes!(get_message))
        .routes(routes!(resend))
        .routes(routes!(replay))
}

#[derive(Serialize, ToSchema)]
pub struct EventTypeList {
    pub items: Vec<EventTypeView>,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointView>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryView>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptList {
    pub items: Vec<AttemptView>,
}

/// The event types an endpoint can subscribe to. Every request carries `webhook-id` (the
/// message id, the same on every retry: de-duplicate on it), `webhook-timestamp` and
/// `webhook-signature` (`v1,<base64 HMAC-SHA256>` over `id.timestamp.body`); the body is
/// `{id, type, timestamp, workspace_id, sequence, data}`.
#[utoipa::path(get, path = "/api/v1/webhook-event-types", tag = "webhooks", responses(
    (status = 200, body = EventTypeList)
), security(("bearer" = []), ("session" = [])))]
async fn list_event_types(principal: Principal) -> ApiResult<axum::Json<EventTypeList>> {
    Ok(axum::Json(EventTypeList {
        items: webhooks::event_types(&principal)?,
    }))
}

/// The workspace's webhook endpoints.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints", tag = "webhooks", responses(
    (status = 200, body = EndpointList)
), security(("bearer" = []), ("session" = [])))]
async fn list_endpoints(State(state): State<AppState>, principal: Principal) -> ApiResult<axum::Json<EndpointList>> {
    let rows = webhooks::list(&state.app, &principal).await?;
    Ok(axum::Json(EndpointList {
        items: rows.iter().map(EndpointView::from).collect(),
    }))
}

/// Adds an endpoint. The answer holds its signing secret, shown this once.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints", tag = "webhooks", request_body = CreateEndpoint, responses(
    (status = 201, body = EndpointWithSecret),
    (status = 409, description = "`too_many_webhook_endpoints`", body = ErrorBody),
    (status = 422, description = "`invalid_webhook_endpoint`, `unknown_event_type`, `webhook_address_not_allowed` (loopback, private, link-local or metadata address)", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateEndpoint>,
) -> ApiResult<(StatusCode, axum::Json<EndpointWithSecret>)> {
    let (endpoint, secret) = webhooks::create(&state.app, &principal, body).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(EndpointWithSecret {
            endpoint: EndpointView::from(&endpoint),
            secret,
        }),
    ))
}

/// One endpoint.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{id}", tag = "webhooks", params(("id" = String, Path)), responses(
    (status = 200, body = EndpointView),
    (status = 404, description = "`webhook_endpoint_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<EndpointView>> {
    let endpoint = webhooks::get(&state.app, &principal, &id).await?;
    Ok(axum::Json(EndpointView::from(&endpoint)))
}

/// Changes an endpoint: URL, description, event types, ordering; enables or disables it.
#[utoipa::path(patch, path = "/api/v1/webhook-endpoints/{id}", tag = "webhooks", params(("id" = String, Path)), request_body = UpdateEndpoint, responses(
    (status = 200, body = EndpointView),
    (status = 404, description = "`webhook_endpoint_not_found`", body = ErrorBody),
    (status = 422, description = "`invalid_webhook_endpoint`, `unknown_event_type`, `webhook_address_not_allowed`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn update_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateEndpoint>,
) -> ApiResult<axum::Json<EndpointView>> {
    let endpoint = webhooks::update(&state.app, &principal, &id, body).await?;
    Ok(axum::Json(EndpointView::from(&endpoint)))
}

/// Removes an endpoint with its delivery log.
#[utoipa::path(delete, path = "/api/v1/webhook-endpoints/{id}", tag = "webhooks", params(("id" = String, Path)), responses(
    (status = 204),
    (status = 404, description = "`webhook_endpoint_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn delete_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    webhooks::remove(&state.app, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the signing secret. The new one is in the answer, shown this once; the old one
/// keeps signing beside it (a second `v1,` entry) for `keep_previous_secs`.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path)), request_body = RotateSecret, responses(
    (status = 200, body = EndpointWithSecret),
    (status = 404, description = "`webhook_endpoint_not_found`", body = ErrorBody),
    (status = 422, description = "`invalid_webhook_endpoint`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RotateSecret>,
) -> ApiResult<axum::Json<EndpointWithSecret>> {
    let (endpoint, secret) = webhooks::rotate_secret(&state.app, &principal, &id, body).await?;
    Ok(axum::Json(EndpointWithSecret {
        endpoint: EndpointView::from(&endpoint),
        secret,
    }))
}

/// Sends a `webhook.test` event to the endpoint.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/test", tag = "webhooks", params(("id" = String, Path)), responses(
    (status = 202, body = TestResult),
    (status = 404, description = "`webhook_endpoint_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn send_test(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<TestResult>)> {
    let message_id = webhooks::send_test(&state.app, &principal, &id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(TestResult { message_id })))
}

/// The endpoint's deliveries, newest first: one per message, with its state.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{id}/deliveries", tag = "webhooks", params(("id" = String, Path), DeliveryQuery), responses(
    (status = 200, body = DeliveryList),
    (status = 404, description = "`webhook_endpoint_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn list_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult<axum::Json<DeliveryList>> {
    let rows = webhooks::deliveries(&state.app, &principal, &id, q).await?;
    Ok(axum::Json(DeliveryList {
        items: rows.iter().map(DeliveryView::from).collect(),
    }))
}

/// The endpoint's attempt log, newest first: each request, the response status and the start
/// of its body, the latency.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{id}/attempts", tag = "webhooks", params(("id" = String, Path), AttemptQuery), responses(
    (status = 200, body = AttemptList),
    (status = 404, description = "`webhook_endpoint_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn list_attempts(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<AttemptQuery>,
) -> ApiResult<axum::Json<AttemptList>> {
    let rows = webhooks::attempts(&state.app, &principal, &id, q).await?;
    Ok(axum::Json(AttemptList {
        items: rows.iter().map(AttemptView::from).collect(),
    }))
}

/// One message as the endpoint was sent it: the body exactly as signed, and every attempt
/// (the request's `webhook-timestamp`, the answer, the latency).
#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{id}/messages/{message_id}", tag = "webhooks", params(("id" = String, Path), ("message_id" = String, Path)), responses(
    (status = 200, body = MessageView),
    (status = 404, description = "`webhook_endpoint_not_found`, `webhook_message_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_message(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, message_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<MessageView>> {
    Ok(axum::Json(
        webhooks::message(&state.app, &principal, &id, &message_id).await?,
    ))
}

/// Sends one message to the endpoint again now (the same `webhook-id`), on a fresh schedule.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/messages/{message_id}/resend", tag = "webhooks", params(("id" = String, Path), ("message_id" = String, Path)), responses(
    (status = 202),
    (status = 404, description = "`webhook_endpoint_not_found`, `webhook_message_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn resend(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, message_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    webhooks::resend(&state.app, &principal, &id, &message_id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Queues again every message of the endpoint's types in a time range that it did not
/// receive: failed ones, and those created while it was disabled (at most 10,000 a call).
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/replay", tag = "webhooks", params(("id" = String, Path)), request_body = Replay, responses(
    (status = 202, body = ReplayResult),
    (status = 404, description = "`webhook_endpoint_not_found`", body = ErrorBody),
    (status = 422, description = "`invalid_time_range`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn replay(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Replay>,
) -> ApiResult<(StatusCode, axum::Json<ReplayResult>)> {
    let queued = webhooks::replay(&state.app, &principal, &id, body).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(ReplayResult { queued })))
}
