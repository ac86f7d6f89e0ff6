//! Live push: one server-sent-events stream per agent. Every event has the workspace's
//! sequence number as its id; reconnecting with `Last-Event-ID` replays what was missed from
//! the event log, so nothing is lost or repeated across reconnects.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use sb_bus::Subscription;
use sb_core::Permission;
use sb_core::clock::rfc3339;
use sb_inbox::live::BusMessage;
use sb_store::live_events::{self, LiveEvent};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Principal;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay events after this sequence number (what `Last-Event-ID` does on reconnect).
    pub after: Option<i64>,
}

struct Cursor {
    db: sb_sql::Db,
    ws: String,
    last: i64,
    subscription: Subscription,
    pending: VecDeque<LiveEvent>,
    /// Typing and presence: sent as they come, without an id, never replayed.
    ephemeral: VecDeque<Event>,
    /// Nothing newer than `last` is in the log that the bus has not announced.
    caught_up: bool,
    /// The server is draining: end the stream (the client reconnects elsewhere, with Last-Event-ID).
    draining: tokio::sync::watch::Receiver<bool>,
}

fn to_sse(e: &LiveEvent) -> Event {
    let payload: serde_json::Value = serde_json::from_str(&e.payload_json).unwrap_or_default();
    let data = serde_json::json!({
        "seq": e.seq,
        "kind": e.kind,
        "conversation_id": e.conversation_id,
        "occurred_at": rfc3339(e.at),
        "occurred_at_ms": e.at,
        "data": payload,
    });
    Event::default()
        .id(e.seq.to_string())
        .event(e.kind.clone())
        .data(data.to_string())
}

async fn next_event(mut c: Cursor) -> Option<(Result<Event, Infallible>, Cursor)> {
    loop {
        if *c.draining.borrow() {
            return None;
        }
        if let Some(e) = c.ephemeral.pop_front() {
            return Some((Ok(e), c));
        }
        if let Some(e) = c.pending.pop_front() {
            if e.seq <= c.last {
                continue; // already sent (the log and the bus both carried it)
            }
            c.last = e.seq;
            return Some((Ok(to_sse(&e)), c));
        }
        if !c.caught_up {
            let (ws, last) = (c.ws.clone(), c.last);
            match c.db.read(move |conn| live_events::after(conn, &ws, last, 200)).await {
                Ok(events) => {
                    c.caught_up = events.len() < 200;
                    c.pending.extend(events);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading live events failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            continue;
        }
        let message = tokio::select! {
            message = c.subscription.next() => message?,
            _ = c.draining.wait_for(|d| *d) => return None,
        };
        match serde_json::from_slice::<BusMessage>(&message.payload) {
            // The next one in order: no need to read the log.
            Ok(BusMessage::Logged(e)) if e.seq == c.last + 1 => c.pending.push_back(e),
            Ok(BusMessage::Logged(e)) if e.seq <= c.last => {}
            Ok(BusMessage::Ephemeral {
                kind,
                conversation_id,
                data,
            }) => {
                let body = serde_json::json!({ "kind": kind, "conversation_id": conversation_id, "data": data });
                c.ephemeral
                    .push_back(Event::default().event(kind).data(body.to_string()));
            }
            // A gap (events published out of order) or an unreadable message: read the log.
            _ => c.caught_up = false,
        }
    }
}

/// The agent's live stream: `message.created`, `message.updated`, `conversation.updated` (with
/// ids, replayed after a reconnect) and `typing`, `presence` (without ids, live only).
#[utoipa::path(get, path = "/api/v1/events", tag = "inbox", params(EventsQuery,
    ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event received; the stream replays what followed")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "events with `id` = sequence number, `event` = kind, `data` = JSON"),
        (status = 503, description = "`bus_unavailable`", body = ErrorBody)
    ), security(("bearer" = []), ("session" = [])))]
async fn events(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    principal.require(Permission::ReadConversations)?;
    let ws = principal.workspace_id().to_owned();
    // Subscribe before reading the log, so nothing committed in between is missed.
    let subscription = state
        .live
        .bus()
        .subscribe(&sb_inbox::live::subject(&ws))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "bus_unavailable", e.to_string()))?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.after);
    let last = match resume {
        Some(seq) => seq.max(0),
        None => {
            let w = ws.clone();
            state.store.db.read(move |c| live_events::latest(c, &w)).await?
        }
    };
    let cursor = Cursor {
        db: state.store.db.clone(),
        ws,
        last,
        subscription,
        pending: VecDeque::new(),
        ephemeral: VecDeque::new(),
        caught_up: false,
        draining: state.draining(),
    };
    let stream = futures_util::stream::unfold(cursor, next_event);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
