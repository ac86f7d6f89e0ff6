//! Customer data: event sources (write keys), profiles with identifiers, traits, consents and
//! a timeline, look-up by any identifier, consent with proof, the send check, loyalty,
//! and privacy requests (export, erase).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use sb_app::profiles as app;
#[allow(unused_imports)]
use sb_app::profiles::*;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_source, list_sources))
        .routes(routes!(batch_stats))
        .routes(routes!(lookup))
        .routes(routes!(identifier_types))
        .routes(routes!(get_profile))
        .routes(routes!(timeline))
        .routes(routes!(record_consent))
        .routes(routes!(may_send))
        .routes(routes!(export))
        .routes(routes!(erase))
        .routes(routes!(list_merges))
        .routes(routes!(split))
        .routes(routes!(join_loyalty))
}

/// Creates an event source: a write key for Segment's libraries (point their host at this server).
#[utoipa::path(post, path = "/api/v1/event-sources", tag = "customer data", request_body = CreateSource, responses(
    (status = 201, body = CreatedSource),
    (status = 422, description = "`invalid_request`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_source(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateSource>,
) -> ApiResult<(StatusCode, axum::Json<CreatedSource>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::create_source(&state.app, &principal, body).await?),
    ))
}

/// The workspace's event sources (without their keys).
#[utoipa::path(get, path = "/api/v1/event-sources", tag = "customer data", responses(
    (status = 200, body = Vec<SourceView>)
), security(("bearer" = []), ("session" = [])))]
async fn list_sources(State(state): State<AppState>, principal: Principal) -> ApiResult<axum::Json<Vec<SourceView>>> {
    Ok(axum::Json(app::list_sources(&state.app, &principal).await?))
}

/// The workspace's event-batch queue.
#[utoipa::path(get, path = "/api/v1/event-batches/stats", tag = "customer data", responses(
    (status = 200, body = BatchStats)
), security(("bearer" = []), ("session" = [])))]
async fn batch_stats(State(state): State<AppState>, principal: Principal) -> ApiResult<axum::Json<BatchStats>> {
    Ok(axum::Json(app::batch_stats(&state.app, &principal).await?))
}

/// A customer's profile with identifiers, traits, consents, loyalty and merges.
#[utoipa::path(get, path = "/api/v1/customers/{id}/profile", tag = "customer data", params(("id" = String, Path)), responses(
    (status = 200, body = Profile),
    (status = 404, description = "`customer_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_profile(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Profile>> {
    Ok(axum::Json(app::get_profile(&state.app, &principal, id).await?))
}

/// The identifier kinds identity resolution knows: scope, per-profile limit (and its window),
/// priority (1 strongest; the weakest is dropped when a limit would break), and the values
/// that are never identifiers.
#[utoipa::path(get, path = "/api/v1/identifier-types", tag = "customer data", responses(
    (status = 200, body = Object)
), security(("bearer" = []), ("session" = [])))]
async fn identifier_types(principal: Principal) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(app::identifier_types(&principal).await?))
}

/// Finds the profile holding an identifier (normalised as its kind says: e-mail case, E.164).
#[utoipa::path(get, path = "/api/v1/profiles/lookup", tag = "customer data", params(LookupQuery), responses(
    (status = 200, body = Profile),
    (status = 404, description = "`profile_not_found`", body = ErrorBody),
    (status = 422, description = "`unknown_identifier_kind`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn lookup(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<LookupQuery>,
) -> ApiResult<axum::Json<Profile>> {
    Ok(axum::Json(app::lookup(&state.app, &principal, q).await?))
}

/// The customer's timeline, newest first: events (commerce ones marked), messages on every
/// channel, and order steps.
#[utoipa::path(get, path = "/api/v1/customers/{id}/timeline", tag = "customer data", params(("id" = String, Path), TimelineQuery), responses(
    (status = 200, body = TimelinePage),
    (status = 400, description = "`invalid_cursor`", body = ErrorBody),
    (status = 404, description = "`customer_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn timeline(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> ApiResult<axum::Json<TimelinePage>> {
    Ok(axum::Json(app::timeline(&state.app, &principal, id, q).await?))
}

/// Records a consent statement with its proof (append-only; the current view follows the
/// newest statement). Audited.
#[utoipa::path(post, path = "/api/v1/customers/{id}/consents", tag = "customer data", params(("id" = String, Path)), request_body = RecordConsent, responses(
    (status = 201, body = Profile),
    (status = 404, description = "`customer_not_found`", body = ErrorBody),
    (status = 422, description = "`invalid_consent`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn record_consent(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RecordConsent>,
) -> ApiResult<(StatusCode, axum::Json<Profile>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::record_consent(&state.app, &principal, id, body).await?),
    ))
}

/// May we send this purpose on this channel to this customer now, and if not, why. The
/// outbox asks the same question before every send.
#[utoipa::path(get, path = "/api/v1/customers/{id}/may-send", tag = "customer data", params(("id" = String, Path), MaySendQuery), responses(
    (status = 200, body = SendVerdict),
    (status = 404, description = "`customer_not_found`", body = ErrorBody),
    (status = 422, description = "`invalid_purpose`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn may_send(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<MaySendQuery>,
) -> ApiResult<axum::Json<SendVerdict>> {
    Ok(axum::Json(app::may_send(&state.app, &principal, id, q).await?))
}

/// Everything stored about a customer, as JSON (a data-access or portability request). Audited.
#[utoipa::path(get, path = "/api/v1/customers/{id}/export", tag = "customer data", params(("id" = String, Path)), responses(
    (status = 200, body = Object),
    (status = 404, description = "`customer_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn export(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(app::export(&state.app, &principal, id).await?))
}

/// Erases a customer: their events, traits, identifiers, messages, consents and loyalty
/// membership are deleted, orders are kept for the books without the person, and hashes of
/// their identifiers stop the same person's events from being stored again. Audited.
#[utoipa::path(post, path = "/api/v1/customers/{id}/erase", tag = "customer data", params(("id" = String, Path)), responses(
    (status = 200, body = Object),
    (status = 404, description = "`customer_not_found`", body = ErrorBody),
    (status = 409, description = "`customer_merged`: erase the customer it was merged into", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn erase(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(app::erase(&state.app, &principal, id).await?))
}

/// The merges a customer took part in (by an agent, or automatic with their evidence);
/// undo one with `POST /api/v1/customer-merges/{id}/undo`.
#[utoipa::path(get, path = "/api/v1/customers/{id}/merges", tag = "customer data", params(("id" = String, Path)), responses(
    (status = 200, body = Vec<Object>),
    (status = 404, description = "`customer_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn list_merges(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<Value>>> {
    Ok(axum::Json(app::list_merges(&state.app, &principal, id).await?))
}

/// Splits identifiers off a profile by hand: they and the events they carried move to a new
/// profile (returned). Audited; merging the two again is an ordinary, undoable merge.
#[utoipa::path(post, path = "/api/v1/customers/{id}/split", tag = "customer data", params(("id" = String, Path)),
    request_body = SplitRequest, responses(
    (status = 201, body = Profile),
    (status = 404, description = "`customer_not_found`", body = ErrorBody),
    (status = 409, description = "`customer_merged`", body = ErrorBody),
    (status = 422, description = "`invalid_split`: an identifier the profile does not hold", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn split(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SplitRequest>,
) -> ApiResult<(StatusCode, axum::Json<Profile>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::split(&state.app, &principal, id, body).await?),
    ))
}

/// Enrols a visitor or customer in the loyalty programme: resolves who they are from the
/// identifiers given (stitching an anonymous visitor's history), issues a loyalty id and
/// records the incentive. Audited.
#[utoipa::path(post, path = "/api/v1/loyalty/members", tag = "customer data", request_body = JoinLoyalty, responses(
    (status = 201, body = Membership),
    (status = 422, description = "`invalid_identifier`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn join_loyalty(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<JoinLoyalty>,
) -> ApiResult<(StatusCode, axum::Json<Membership>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::join_loyalty(&state.app, &principal, body).await?),
    ))
}
