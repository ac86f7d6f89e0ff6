//! Answers for ids the caller's workspace does not have: always a plain 404, and when the id
//! belongs to another workspace the attempt is written to the audit log.

use sb_store::audit::{self, Change};
use sb_store::objects::{self, ObjectKind};

use crate::error::{AppError, AppResult};
use crate::{App, Principal};

pub async fn not_found(app: &App, principal: &Principal, kind: ObjectKind, id: &str, code: &'static str) -> AppError {
    record_if_foreign(app, principal, kind, id).await;
    AppError::not_found(
        code,
        format!("no {} with id {id} in this workspace", kind.as_str().replace('_', " ")),
    )
}

/// A use case's answer for `id`, with the attempt audited when it was a 404 for another
/// workspace's object (for use cases whose 404 comes from deeper down).
pub async fn audited<T>(
    app: &App,
    principal: &Principal,
    kind: ObjectKind,
    id: &str,
    result: AppResult<T>,
) -> AppResult<T> {
    if let Err(e) = &result
        && e.status == http::StatusCode::NOT_FOUND
    {
        record_if_foreign(app, principal, kind, id).await;
    }
    result
}

/// Writes `access.cross_workspace_denied` to the caller's workspace's audit log.
pub fn record_denied(
    c: &mut dyn sb_store::Conn,
    ws: &str,
    actor: &sb_store::audit::Actor,
    object_kind: &str,
    object_id: &str,
    now: i64,
) -> Result<(), sb_store::StoreError> {
    let change = Change {
        action: "access.cross_workspace_denied",
        object_kind,
        object_id: Some(object_id),
        before: None,
        after: None,
    };
    audit::record(c, ws, actor, &change, now)?;
    tracing::warn!(workspace_id = %ws, object_id, "cross-workspace access denied");
    Ok(())
}

/// Writes `access.cross_workspace_denied` when `id` is another workspace's object.
async fn record_if_foreign(app: &App, principal: &Principal, kind: ObjectKind, id: &str) {
    let (ws, id_owned, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        app.store.now(),
    );
    let recorded = app
        .store
        .db
        .write(move |c| {
            let owner = objects::owner_workspace(c, kind, &id_owned)?;
            if owner.as_deref().is_some_and(|o| o != ws) {
                record_denied(c, &ws, &actor, kind.as_str(), &id_owned, now)?;
            }
            Ok::<_, sb_store::StoreError>(())
        })
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "could not audit a denied access");
    }
}
