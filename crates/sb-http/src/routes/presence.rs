//! Agents' presence: a heartbeat sets online / busy / offline and the agent's capacity; new
//! conversations are assigned round-robin among online agents under their capacity.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use crate::views::Page;
use sb_app::presence as app;
#[allow(unused_imports)]
use sb_app::presence::*;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_presence, heartbeat))
}

/// The caller's heartbeat: sets their status and capacity.
#[utoipa::path(post, path = "/api/v1/presence", tag = "inbox", request_body = Heartbeat, responses(
    (status = 200, body = PresenceView),
    (status = 422, description = "`invalid_status`, `invalid_capacity`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn heartbeat(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<Heartbeat>,
) -> ApiResult<axum::Json<PresenceView>> {
    Ok(axum::Json(app::heartbeat(&state.app, &principal, body).await?))
}

/// Every agent's presence and load.
#[utoipa::path(get, path = "/api/v1/presence", tag = "inbox", responses(
    (status = 200, body = inline(Page<PresenceView>))
), security(("bearer" = []), ("session" = [])))]
async fn list_presence(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<Page<PresenceView>>> {
    Ok(axum::Json(app::list_presence(&state.app, &principal).await?))
}
