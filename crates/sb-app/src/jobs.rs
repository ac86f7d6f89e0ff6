//! The job queue, for admins: what is waiting, failed, and retrying it.

use crate::error::{AppError, AppResult};
use crate::views::{JobView, Page, PageQuery, page};
use crate::{App, Principal};
use sb_core::Permission;
use sb_store::audit::{self, Change};
use sb_store::jobs;
use sb_store::objects::ObjectKind;
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// `dead` (default) or `ready`.
    pub state: Option<String>,
}
/// Background jobs of the workspace; by default the dead ones (out of attempts).
pub async fn list_jobs(app: &App, principal: &Principal, filter: JobFilter, q: PageQuery) -> AppResult<Page<JobView>> {
    principal.require(Permission::ManageJobs)?;
    let job_state = filter.state.unwrap_or_else(|| "dead".into());
    if !matches!(job_state.as_str(), "dead" | "ready") {
        return Err(AppError::invalid("invalid_state", "state must be `dead` or `ready`"));
    }
    let (ws, after, limit) = (principal.workspace_id().to_owned(), q.after()?, q.limit()?);
    let rows = app
        .store
        .db
        .read(move |c| jobs::list_by_state(c, &ws, &job_state, after.as_deref(), limit))
        .await?;
    Ok(page(&rows, limit, |j| &j.id))
}
/// Puts a dead job back in its queue with a fresh attempt budget.
pub async fn retry_job(app: &App, principal: &Principal, id: String) -> AppResult<JobView> {
    principal.require(Permission::ManageJobs)?;
    let (ws, jid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.clone(),
        principal.actor(),
        app.store.now(),
    );
    let job = app
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
            app.engine.notify_jobs();
            Ok(JobView::from(&j))
        }
        None => Err(crate::access::not_found(app, principal, ObjectKind::Job, &id, "job_not_found").await),
    }
}
