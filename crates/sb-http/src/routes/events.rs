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
use std::sync::Arc;

use sb_core::Permission;
use sb_inbox::live::{Delivery, sse_data};
use sb_store::live_events;
use serde::Deserialize;
use tokio::sync::broadcast;
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

/// What a stream shows of the workspace's events.
#[derive(Clone)]
pub(crate) enum View {
    /// Everything, as logged (the agents' stream).
    Agent,
    /// Shoppers: availability changes as levels, never unit counts, optionally for some SKUs only.
    Storefront {
        skus: Option<Arc<std::collections::HashSet<String>>>,
    },
}

impl View {
    /// The event's SSE `(kind, data)` in this view, or `None` when the view does not show it.
    /// `payload` and `agent_data` are computed only when the view needs them.
    fn render(
        &self,
        kind: &str,
        payload: impl FnOnce() -> serde_json::Value,
        agent_data: impl FnOnce() -> String,
    ) -> Option<(String, String)> {
        match self {
            View::Agent => Some((kind.to_owned(), agent_data())),
            View::Storefront { skus } => {
                if kind != sb_commerce::live::AVAILABILITY_CHANGED {
                    return None;
                }
                let payload = payload();
                let sku = payload["sku"].as_str()?;
                if skus.as_ref().is_some_and(|wanted| !wanted.contains(sku)) {
                    return None;
                }
                let data = serde_json::json!({
                    "sku": sku,
                    "location_id": payload["location_id"],
                    "level": payload["level"],
                });
                Some(("availability".to_owned(), data.to_string()))
            }
        }
    }
}

struct Cursor {
    db: sb_sql::Db,
    ws: String,
    last: i64,
    view: View,
    deliveries: broadcast::Receiver<Arc<Delivery>>,
    /// Logged events in order: (seq, kind and data, or `None` where the view skips it).
    pending: VecDeque<(i64, Option<(String, String)>)>,
    /// Typing and presence: sent as they come, without an id, never replayed.
    ephemeral: VecDeque<Event>,
    /// Nothing newer than `last` is in the log that the bus has not announced.
    caught_up: bool,
    /// The server is draining: end the stream (the client reconnects elsewhere, with Last-Event-ID).
    draining: tokio::sync::watch::Receiver<bool>,
}

impl Cursor {
    /// A cursor after `last` (the caller subscribed to `deliveries` before choosing `last`,
    /// so nothing committed in between is missed).
    fn new(
        state: &AppState,
        ws: String,
        last: i64,
        view: View,
        deliveries: broadcast::Receiver<Arc<Delivery>>,
    ) -> Cursor {
        Cursor {
            db: state.store.db.clone(),
            ws,
            last,
            view,
            deliveries,
            pending: VecDeque::new(),
            ephemeral: VecDeque::new(),
            caught_up: false,
            draining: state.draining(),
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures_util::stream::unfold(self, next_event)
    }
}

/// Where a stream resumes: `Last-Event-ID`, else `?after=`, else from now on.
async fn resume_point(state: &AppState, ws: &str, headers: &HeaderMap, after: Option<i64>) -> ApiResult<i64> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(after);
    Ok(match resume {
        Some(seq) => seq.max(0),
        None => {
            let w = ws.to_owned();
            state.store.db.read(move |c| live_events::latest(c, &w)).await?
        }
    })
}

async fn next_event(mut c: Cursor) -> Option<(Result<Event, Infallible>, Cursor)> {
    loop {
        if *c.draining.borrow() {
            return None;
        }
        if let Some(e) = c.ephemeral.pop_front() {
            return Some((Ok(e), c));
        }
        if let Some((seq, shown)) = c.pending.pop_front() {
            if seq <= c.last {
                continue; // already sent (the log and the bus both carried it)
            }
            c.last = seq;
            let Some((kind, data)) = shown else { continue };
            return Some((Ok(Event::default().id(seq.to_string()).event(kind).data(data)), c));
        }
        if !c.caught_up {
            let (ws, last) = (c.ws.clone(), c.last);
            match c.db.read(move |conn| live_events::after(conn, &ws, last, 200)).await {
                Ok(events) => {
                    c.caught_up = events.len() < 200;
                    let view = &c.view;
                    c.pending.extend(events.iter().map(|e| {
                        let payload = || serde_json::from_str(&e.payload_json).unwrap_or_default();
                        (e.seq, view.render(&e.kind, payload, || sse_data(e)))
                    }));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading live events failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            continue;
        }
        let delivery = tokio::select! {
            delivery = c.deliveries.recv() => delivery,
            _ = c.draining.wait_for(|d| *d) => return None,
        };
        match delivery.as_deref() {
            // The next one in order: no need to read the log.
            Ok(Delivery::Logged {
                event,
                payload,
                sse_data,
            }) if event.seq == c.last + 1 => {
                let shown = c.view.render(&event.kind, || payload.clone(), || sse_data.clone());
                c.pending.push_back((event.seq, shown));
            }
            Ok(Delivery::Logged { event, .. }) if event.seq <= c.last => {}
            Ok(Delivery::Ephemeral { .. }) if !matches!(c.view, View::Agent) => {}
            Ok(Delivery::Ephemeral { kind, sse_data, .. }) => {
                c.ephemeral
                    .push_back(Event::default().event(kind.as_str()).data(sse_data.as_str()));
            }
            Err(broadcast::error::RecvError::Closed) => return None,
            // A gap (published out of order) or this stream fell behind: read the log.
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
    live_stream(&state, ws, &headers, q.after, View::Agent).await
}

/// The workspace's events in `view` as server-sent events, from where the client resumes.
pub(crate) async fn live_stream(
    state: &AppState,
    ws: String,
    headers: &HeaderMap,
    after: Option<i64>,
    view: View,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
    // Subscribe before reading the log, so nothing committed in between is missed.
    let deliveries = state
        .live
        .subscribe(&ws)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "bus_unavailable", e.to_string()))?;
    let last = resume_point(state, &ws, headers, after).await?;
    let stream = Cursor::new(state, ws, last, view, deliveries).into_stream();
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
