//! Journeys (marketing automation): definitions and their versions, activate, pause,
//! resume, archive, a preview per channel for a real customer, and a customer's journeys.
//! Marketers and admins (`manage_campaigns`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use sb_app::journeys::{self, CustomerJourney, JourneyView, Preview, SaveJourney};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_journeys, create_journey))
        .routes(routes!(get_journey, update_journey))
        .routes(routes!(transition))
        .routes(routes!(preview))
        .routes(routes!(customer_journeys))
}

#[derive(Serialize, ToSchema)]
pub struct JourneyList {
    pub items: Vec<JourneyView>,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerJourneyList {
    pub items: Vec<CustomerJourney>,
}

/// The workspace's journeys (archived ones left out), with live counts per step.
#[utoipa::path(get, path = "/api/v1/journeys", tag = "journeys", responses(
    (status = 200, body = JourneyList)
), security(("bearer" = []), ("session" = [])))]
async fn list_journeys(State(state): State<AppState>, principal: Principal) -> ApiResult<axum::Json<JourneyList>> {
    Ok(axum::Json(JourneyList {
        items: journeys::list(&state.app, &principal).await?,
    }))
}

const REFUSALS: &str = "`invalid_definition`, `invalid_journey`, `journey_cycle`, `unknown_step`, \
    `unknown_event_property`, `template_error`, `template_required`, `unknown_channel`, `missing_correlation_key`, \
    `invalid_time`, `invalid_delay`, `invalid_wait`, `duplicate_step_id`, `no_steps`";

/// Saves a journey as a draft. The definition is checked in full: steps only jump forward,
/// filters name properties the events carry, every template renders (strict Liquid).
#[utoipa::path(post, path = "/api/v1/journeys", tag = "journeys", request_body = SaveJourney, responses(
    (status = 201, body = JourneyView),
    (status = 422, description = REFUSALS, body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_journey(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<SaveJourney>,
) -> ApiResult<(StatusCode, axum::Json<JourneyView>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(journeys::create(&state.app, &principal, body).await?),
    ))
}

/// One journey.
#[utoipa::path(get, path = "/api/v1/journeys/{id}", tag = "journeys", params(("id" = String, Path)), responses(
    (status = 200, body = JourneyView),
    (status = 404, description = "`journey_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_journey(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<JourneyView>> {
    Ok(axum::Json(journeys::get(&state.app, &principal, &id).await?))
}

/// Saves a new version: customers entering from now on follow it; those inside keep theirs.
#[utoipa::path(put, path = "/api/v1/journeys/{id}", tag = "journeys", params(("id" = String, Path)), request_body = SaveJourney, responses(
    (status = 200, body = JourneyView),
    (status = 404, description = "`journey_not_found`", body = ErrorBody),
    (status = 422, description = REFUSALS, body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn update_journey(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SaveJourney>,
) -> ApiResult<axum::Json<JourneyView>> {
    Ok(axum::Json(journeys::update(&state.app, &principal, &id, body).await?))
}

/// `activate`, `pause` (instances wait where they are), `resume` or `archive`.
#[utoipa::path(post, path = "/api/v1/journeys/{id}/{action}", tag = "journeys", params(
    ("id" = String, Path),
    ("action" = String, Path, description = "activate, pause, resume or archive")
), responses(
    (status = 200, body = JourneyView),
    (status = 404, description = "`journey_not_found`", body = ErrorBody),
    (status = 409, description = "`invalid_journey_state`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn transition(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<axum::Json<JourneyView>> {
    Ok(axum::Json(
        journeys::transition(&state.app, &principal, &id, &action).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
pub struct PreviewQuery {
    /// A send step of the journey.
    pub step_id: String,
    /// The customer to render it for.
    pub customer_id: String,
}

/// A send step rendered for a real customer on every channel, with the channel they would
/// get it on now and why.
#[utoipa::path(get, path = "/api/v1/journeys/{id}/preview", tag = "journeys", params(("id" = String, Path), PreviewQuery), responses(
    (status = 200, body = Preview),
    (status = 404, description = "`journey_not_found`, `step_not_found`, `customer_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn preview(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> ApiResult<axum::Json<Preview>> {
    Ok(axum::Json(
        journeys::preview(&state.app, &principal, &id, &q.step_id, &q.customer_id).await?,
    ))
}

/// The journeys a customer is in (and was lately): step, next send with its time and
/// channel, and every delivery with why it went where it went, or why not.
#[utoipa::path(get, path = "/api/v1/customers/{id}/journeys", tag = "journeys", params(("id" = String, Path)), responses(
    (status = 200, body = CustomerJourneyList)
), security(("bearer" = []), ("session" = [])))]
async fn customer_journeys(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CustomerJourneyList>> {
    Ok(axum::Json(CustomerJourneyList {
        items: journeys::of_customer(&state.app, &principal, &id).await?,
    }))
}
