//! Agents' presence: heartbeats and who is online.

use crate::error::{AppError, AppResult};
use crate::views::Page;
use crate::{App, Principal};
use sb_core::Permission;
use sb_store::presence::{self, Presence};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
pub struct Heartbeat {
    /// `online`, `busy` or `offline`. Send it at least every 60 s while online.
    #[schema(value_type = crate::views::names::Presence)]
    pub status: String,
    /// Open conversations the agent takes at most (default 10).
    pub capacity: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct PresenceView {
    pub user_id: String,
    /// `online`, `busy` or `offline` (a missed heartbeat counts as offline).
    pub status: String,
    pub capacity: i64,
    pub open_assigned: i64,
    pub heartbeat_at: String,
}

fn view(p: &Presence, now: i64) -> PresenceView {
    PresenceView {
        user_id: p.user_id.clone(),
        status: p.effective_status(now).to_owned(),
        capacity: p.capacity,
        open_assigned: p.open_assigned,
        heartbeat_at: sb_core::clock::rfc3339(p.heartbeat_at),
    }
}
/// The caller's heartbeat: sets their status and capacity.
pub async fn heartbeat(app: &App, principal: &Principal, body: Heartbeat) -> AppResult<PresenceView> {
    principal.require(Permission::ReadConversations)?;
    if !matches!(body.status.as_str(), "online" | "busy" | "offline") {
        return Err(AppError::unprocessable(
            "invalid_status",
            "status must be online, busy or offline",
        ));
    }
    let capacity = body.capacity.unwrap_or(10);
    if !(0..=1000).contains(&capacity) {
        return Err(AppError::unprocessable("invalid_capacity", "capacity must be 0–1000"));
    }
    let (ws, user, now) = (
        principal.workspace_id().to_owned(),
        principal.user.id.clone(),
        app.store.now(),
    );
    let mine = app
        .store
        .db
        .write(move |c| {
            presence::heartbeat(c, &ws, &user, &body.status, capacity, now)?;
            Ok::<_, sb_store::StoreError>(presence::list(c, &ws)?.into_iter().find(|p| p.user_id == user))
        })
        .await?
        .ok_or_else(|| AppError::internal("presence row missing after heartbeat"))?;
    let view = view(&mine, now);
    let data = serde_json::json!({ "user_id": view.user_id, "status": view.status, "capacity": view.capacity });
    app.live
        .publish_ephemeral(principal.workspace_id(), "presence", None, data)
        .await;
    Ok(view)
}
/// Every agent's presence and load.
pub async fn list_presence(app: &App, principal: &Principal) -> AppResult<Page<PresenceView>> {
    principal.require(Permission::ReadConversations)?;
    let (ws, now) = (principal.workspace_id().to_owned(), app.store.now());
    let rows = app.store.db.read(move |c| presence::list(c, &ws)).await?;
    Ok(Page {
        items: rows.iter().map(|p| view(p, now)).collect(),
        next_cursor: None,
    })
}
