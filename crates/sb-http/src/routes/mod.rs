//! One module per resource. Every handler states the permission it needs.

mod attachments;
pub(crate) mod auth;
pub mod canned_responses;
mod channel_accounts;
pub(crate) mod commerce;
pub(crate) mod conversations;
pub(crate) mod customers;
mod events;
mod health;
mod jobs;
mod presence;
mod profiles;
mod segment;
pub(crate) mod storefront;
mod system;
mod tokens;
mod unsubscribe;
mod users;
mod webhooks;
pub(crate) mod widget;

use sb_store::audit::{self, Change};
use sb_store::objects::{self, ObjectKind};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Principal;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::router())
        .merge(auth::router())
        .merge(users::router())
        .merge(tokens::router())
        .merge(canned_responses::router())
        .merge(jobs::router())
        .merge(system::router())
        .merge(channel_accounts::router())
        .merge(conversations::router())
        .merge(customers::router())
        .merge(webhooks::router())
        .merge(events::router())
        .merge(presence::router())
        .merge(widget::router())
        .merge(attachments::router())
        .merge(unsubscribe::router())
        .merge(commerce::router())
        .merge(profiles::router())
        .merge(segment::router().layer(tower_http::cors::CorsLayer::permissive()))
        // Any shop page may read stock levels; nothing here needs or sends credentials.
        .merge(storefront::router().layer(tower_http::cors::CorsLayer::permissive()))
}

/// The answer for an id the caller's workspace does not have: always a plain 404, and when
/// the id belongs to another workspace the attempt is written to the audit log.
pub async fn not_found(
    state: &AppState,
    principal: &Principal,
    kind: ObjectKind,
    id: &str,
    code: &'static str,
) -> ApiError {
    let (ws, id_owned, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let recorded = state
        .store
        .db
        .write(move |c| {
            let owner = objects::owner_workspace(c, kind, &id_owned)?;
            if owner.as_deref().is_some_and(|o| o != ws) {
                let change = Change {
                    action: "access.cross_workspace_denied",
                    object_kind: kind.as_str(),
                    object_id: Some(&id_owned),
                    before: None,
                    after: None,
                };
                audit::record(c, &ws, &actor, &change, now)?;
                tracing::warn!(workspace_id = %ws, object_id = %id_owned, "cross-workspace access denied");
            }
            Ok::<_, sb_store::StoreError>(())
        })
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "could not audit a denied access");
    }
    ApiError::not_found(
        code,
        format!("no {} with id {id} in this workspace", kind.as_str().replace('_', " ")),
    )
}
