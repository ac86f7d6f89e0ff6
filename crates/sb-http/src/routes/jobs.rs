use axum::extract::{Path, Query, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Principal;
use crate::views::{JobView, Page, PageQuery};
use sb_app::jobs as app;
#[allow(unused_imports)]
use sb_app::jobs::*;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(retry_job))
}

/// Background jobs of the workspace; by default the dead ones (out of attempts).
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(JobFilter, PageQuery), responses(
    (status = 200, body = inline(Page<JobView>)),
    (status = 400, description = "`invalid_state`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn list_jobs(
    State(state): State<AppState>,
    principal: Principal,
    Query(filter): Query<JobFilter>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<JobView>>> {
    Ok(axum::Json(app::list_jobs(&state.app, &principal, filter, q).await?))
}

/// Puts a dead job back in its queue with a fresh attempt budget.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path)), responses(
    (status = 200, body = JobView),
    (status = 404, description = "`job_not_found` (or not dead)", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn retry_job(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<JobView>> {
    Ok(axum::Json(app::retry_job(&state.app, &principal, id).await?))
}
