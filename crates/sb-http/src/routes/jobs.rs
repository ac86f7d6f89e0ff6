use axum::extract::{Path, Query, State};
use sb_core::Permission;
use sb_store::audit::{self, Change};
use sb_store::jobs;
use sb_store::objects::ObjectKind;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Principal;
use crate::views::{JobView, Page, PageQuery, page};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(retry_job))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// `dead` (default) or `ready`.
    pub state: Option<String>,
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
    principal.require(Permission::ManageJobs)?;
    let job_state = filter.state.unwrap_or_else(|| "dead".into());
    if !matches!(job_state.as_str(), "dead" | "ready") {
        return Err(ApiError::invalid("invalid_state", "state must be `dead` or `ready`"));
    }
    let (ws, after, limit) = (principal.workspace_id().to_owned(), q.after()?, q.limit());
    let rows = state
        .store
        .db
        .read(move |c| jobs::list_by_state(c, &ws, &job_state, after.as_deref(), limit))
        .await?;
    Ok(axum::Json(page(&rows, limit, |j| &j.id)))
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
    principal.require(Permission::ManageJobs)?;
    let (ws, jid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.clone(),
        principal.actor(),
        state.store.now(),
    );
    let job = state
        .store
        .db
        .write(move |c| {
            let job = jobs::retry_dead(c, &ws, &jid, now)?;
            if job.is_some() {
                let change = Change {
                    action: "job.retried",
                    object_kind: "job",
                    object_id: Some(&jid),
                    before: None,
                    after: None,
                };
                audit::record(c, &ws, &actor, &change, now)?;
            }
            Ok::<_, sb_store::StoreError>(job)
        })
        .await?;
    match job {
        Some(j) => {
            state.engine.notify_jobs();
            Ok(axum::Json(JobView::from(&j)))
        }
        None => Err(super::not_found(&state, &principal, ObjectKind::Job, &id, "job_not_found").await),
    }
}
