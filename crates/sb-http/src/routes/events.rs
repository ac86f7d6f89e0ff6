//! Live push: one server-sent-events stream per agent. Every event has the workspace's
//! sequence number as its id; reconnecting with `Last-Event-ID` replays what was missed from
//! the event log, so nothing is lost or repeated across reconnects.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

use sb_inbox::live::{Delivery, agent_frame, sse_frame};
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

/// The event kinds the agents' stream shows, by prefix.
const AGENT_KINDS: [&str; 3] = ["message.", "conversation.", "inventory."];

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
    /// Event `seq`'s SSE frame in this view, or `None` when the view does not show it.
    /// `payload` and `agent_frame` are computed only when the view needs them.
    fn render(
        &self,
        seq: i64,
        kind: &str,
        payload: impl FnOnce() -> serde_json::Value,
        agent_frame: impl FnOnce() -> Bytes,
    ) -> Option<Bytes> {
        match self {
            // The inbox's stream: the workspace log's facts about customers, consent and
            // orders are for webhooks and other permissions, not for this stream.
            View::Agent => AGENT_KINDS
                .iter()
                .any(|prefix| kind.starts_with(prefix))
                .then(agent_frame),
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
                Some(sse_frame(Some(seq), "availability", &data.to_string()))
            }
        }
    }
}

/// A comment line: keeps proxies from closing a quiet stream.
const KEEP_ALIVE: &[u8] = b":\n\n";
/// How long a stream may stay quiet before it sends [`KEEP_ALIVE`].
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);
/// A chunk carries at most this much: what is ready beyond it goes in the next write.
const MAX_CHUNK: usize = 64 * 1024;

struct Cursor {
    db: sb_sql::Db,
    ws: String,
    last: i64,
    view: View,
    deliveries: broadcast::Receiver<Arc<Delivery>>,
    /// Logged events in order: (seq, frame, or `None` where the view skips it).
    pending: VecDeque<(i64, Option<Bytes>)>,
    /// Typing and presence: sent as they come, without an id, never replayed.
    ephemeral: VecDeque<Bytes>,
    /// Nothing newer than `last` is in the log that the bus has not announced.
    caught_up: bool,
    /// The bus is gone: send what is queued, then end.
    closed: bool,
    /// The server is draining: end the stream (the client reconnects elsewhere, with Last-Event-ID).
    draining: tokio::sync::watch::Receiver<bool>,
    keep_alive: tokio::time::Interval,
    /// Something was written since the keep-alive timer last fired.
    sent_recently: bool,
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
        let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE_EVERY, KEEP_ALIVE_EVERY);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Cursor {
            db: state.store.db.clone(),
            ws,
            last,
            view,
            deliveries,
            pending: VecDeque::new(),
            ephemeral: VecDeque::new(),
            caught_up: false,
            closed: false,
            draining: state.draining(),
            keep_alive,
            sent_recently: false,
        }
    }

    /// The stream's body: one chunk per wake-up, holding every frame that is ready then, so a
    /// burst of events costs one write per stream rather than one per event.
    fn into_body(self) -> Body {
        Body::from_stream(futures_util::stream::unfold(self, |mut c| async move {
            let first = c.next_frame().await?;
            // A frame alone goes out as the shared bytes it is; only a burst is copied together.
            let chunk = match c.ready_frame() {
                None => first,
                Some(second) => {
                    let mut chunk = BytesMut::from(first.as_ref());
                    chunk.extend_from_slice(&second);
                    while chunk.len() < MAX_CHUNK
                        && let Some(frame) = c.ready_frame()
                    {
                        chunk.extend_from_slice(&frame);
                    }
                    chunk.freeze()
                }
            };
            c.sent_recently = true;
            Some((Ok::<_, Infallible>(chunk), c))
        }))
    }

    /// The next queued frame in order, skipping what was already sent or what the view hides.
    fn take_queued(&mut self) -> Option<Bytes> {
        if let Some(frame) = self.ephemeral.pop_front() {
            return Some(frame);
        }
        while let Some((seq, shown)) = self.pending.pop_front() {
            if seq <= self.last {
                continue; // already sent (the log and the bus both carried it)
            }
            self.last = seq;
            if let Some(frame) = shown {
                return Some(frame);
            }
        }
        None
    }

    /// The next frame, waiting for one; `None` ends the stream.
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if *self.draining.borrow() {
                return None;
            }
            if let Some(frame) = self.take_queued() {
                return Some(frame);
            }
            if self.closed {
                return None;
            }
            if !self.caught_up {
                self.read_log().await;
                continue;
            }
            let delivery = tokio::select! {
                delivery = self.deliveries.recv() => delivery,
                _ = self.draining.wait_for(|d| *d) => return None,
                _ = self.keep_alive.tick() => {
                    if !std::mem::take(&mut self.sent_recently) {
                        return Some(Bytes::from_static(KEEP_ALIVE));
                    }
                    continue;
                }
            };
            self.accept(delivery);
        }
    }

    /// A frame that is ready now, without waiting and without reading the log.
    fn ready_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.take_queued() {
                return Some(frame);
            }
            if !self.caught_up || self.closed {
                return None;
            }
            let delivery = match self.deliveries.try_recv() {
                Ok(delivery) => Ok(delivery),
                Err(broadcast::error::TryRecvError::Empty) => return None,
                Err(broadcast::error::TryRecvError::Closed) => Err(broadcast::error::RecvError::Closed),
                Err(broadcast::error::TryRecvError::Lagged(n)) => Err(broadcast::error::RecvError::Lagged(n)),
            };
            self.accept(delivery);
        }
    }

    /// Queues what a delivery from the bus shows in this view.
    fn accept(&mut self, delivery: Result<Arc<Delivery>, broadcast::error::RecvError>) {
        match delivery.as_deref() {
            // The next one in order: no need to read the log.
            Ok(Delivery::Logged {
                event,
                payload,
                agent_frame,
            }) if event.seq == self.last + 1 => {
                let shown = self
                    .view
                    .render(event.seq, &event.kind, || payload.clone(), || agent_frame.clone());
                self.pending.push_back((event.seq, shown));
            }
            Ok(Delivery::Logged { event, .. }) if event.seq <= self.last => {}
            Ok(Delivery::Ephemeral { .. }) if !matches!(self.view, View::Agent) => {}
            Ok(Delivery::Ephemeral { agent_frame, .. }) => self.ephemeral.push_back(agent_frame.clone()),
            Err(broadcast::error::RecvError::Closed) => self.closed = true,
            // A gap (published out of order) or this stream fell behind: read the log.
            _ => self.caught_up = false,
        }
    }

    /// Reads the log after `last` (up to a page), queueing what the view shows.
    async fn read_log(&mut self) {
        let (ws, last) = (self.ws.clone(), self.last);
        match self.db.read(move |conn| live_events::after(conn, &ws, last, 200)).await {
            Ok(events) => {
                self.caught_up = events.len() < 200;
                let view = &self.view;
                self.pending.extend(events.iter().map(|e| {
                    let payload = || serde_json::from_str(&e.payload_json).unwrap_or_default();
                    (e.seq, view.render(e.seq, &e.kind, payload, || agent_frame(e)))
                }));
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading live events failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
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
) -> ApiResult<Response> {
    let ws = sb_app::conversations::open_live_stream(&principal)?;
    live_stream(&state, ws, &headers, q.after, View::Agent).await
}

/// The workspace's events in `view` as server-sent events, from where the client resumes.
pub(crate) async fn live_stream(
    state: &AppState,
    ws: String,
    headers: &HeaderMap,
    after: Option<i64>,
    view: View,
) -> ApiResult<Response> {
    // Subscribe before reading the log, so nothing committed in between is missed.
    let deliveries = state
        .live
        .subscribe(&ws)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "bus_unavailable", e.to_string()))?;
    let last = resume_point(state, &ws, headers, after).await?;
    let body = Cursor::new(state, ws, last, view, deliveries).into_body();
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}
