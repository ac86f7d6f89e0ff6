//! The public storefront API: what a shop page may tell anyone about stock. A website
//! widget's public token names the workspace (it is already in the page's `<script>` tag);
//! answers carry levels (in stock / low / out of stock), never unit counts, so competitors
//! learn nothing a shopper could not see on the shelf.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use governor::DefaultKeyedRateLimiter;
use sb_core::inventory::StockLevel;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::events::{View, live_stream};
use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use sb_app::commerce::inventory::AvailabilityQuery;
use sb_app::storefront::workspace_of_website;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(availability))
        .routes(routes!(availability_events))
}

/// Requests per client IP to the public routes: a burst of 100, then 20 a second — far more
/// than shoppers' pages ask, far less than a scraper or a flood of open streams would.
pub struct StorefrontLimiter(DefaultKeyedRateLimiter<String>);

impl Default for StorefrontLimiter {
    fn default() -> Self {
        StorefrontLimiter(sb_app::limits::keyed_per_second(20, 100))
    }
}

impl StorefrontLimiter {
    /// Forgets clients not seen lately (the limiter keeps one entry per IP).
    pub fn forget_idle(&self) {
        self.0.retain_recent();
    }
}

/// A public caller within its IP's rate limit (`rate_limited` with `Retry-After` otherwise).
pub struct Limited;

impl FromRequestParts<AppState> for Limited {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ip = crate::extract::client_ip(parts).unwrap_or_default();
        state
            .storefront_limiter
            .0
            .check_key(&ip)
            .map_err(|_| ApiError::rate_limited(1))?;
        if state.storefront_limiter.0.len() > 100_000 {
            state.storefront_limiter.forget_idle();
        }
        Ok(Limited)
    }
}

#[derive(Serialize, ToSchema)]
pub struct PublicAvailability {
    pub sku: String,
    pub title: String,
    pub locations: Vec<PublicLocation>,
}

#[derive(Serialize, ToSchema)]
pub struct PublicLocation {
    pub location_id: String,
    pub name: String,
    /// `in_stock`, `low` or `out_of_stock`.
    #[schema(value_type = String)]
    pub level: StockLevel,
    pub distance_km: Option<f64>,
    pub can_pickup: bool,
    /// Minutes until a pickup order can be collected here, when pickup is offered.
    pub pickup_ready_minutes: Option<i64>,
}

/// "Available at my local branch" for shoppers: every active location with its stock level,
/// nearest to `lat`/`lng` first. No authentication; levels only.
#[utoipa::path(get, path = "/storefront/v1/{website_token}/availability", tag = "storefront",
    params(("website_token" = String, Path, description = "the website widget's public token"), AvailabilityQuery),
    responses(
        (status = 200, body = PublicAvailability),
        (status = 400, description = "`invalid_position`", body = ErrorBody),
        (status = 404, description = "`widget_not_found`, `not_found` (no such SKU)", body = ErrorBody),
        (status = 429, description = "`rate_limited` (per client IP)", body = ErrorBody)
    ))]
async fn availability(
    _: Limited,
    State(state): State<AppState>,
    Path(website_token): Path<String>,
    Query(q): Query<AvailabilityQuery>,
) -> ApiResult<axum::Json<PublicAvailability>> {
    let near = match (q.lat, q.lng) {
        (Some(lat), Some(lng)) if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng) => Some((lat, lng)),
        (None, None) => None,
        _ => {
            return Err(ApiError::invalid(
                "invalid_position",
                "give both lat (−90…90) and lng (−180…180), or neither",
            ));
        }
    };
    let found = sb_app::storefront::availability(&state.app, &website_token, q.sku, near).await?;
    Ok(axum::Json(PublicAvailability {
        sku: found.sku,
        title: found.title,
        locations: found
            .locations
            .into_iter()
            .map(|l| PublicLocation {
                location_id: l.location_id,
                name: l.name,
                level: l.level,
                distance_km: l.distance_km.map(|d| (d * 10.0).round() / 10.0),
                can_pickup: l.can_pickup,
                pickup_ready_minutes: l.pickup_ready_minutes,
            })
            .collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StorefrontEventsQuery {
    /// Only these SKUs (comma-separated inventory item SKUs); every SKU when absent.
    pub skus: Option<String>,
    /// Replay changes after this event id (what `Last-Event-ID` does on reconnect).
    pub after: Option<i64>,
}

/// Live stock levels for shoppers: an `availability` event (`{sku, location_id, level}`) each
/// time stock changes at a location, with ids that `Last-Event-ID` resumes from.
#[utoipa::path(get, path = "/storefront/v1/{website_token}/availability/events", tag = "storefront",
    params(("website_token" = String, Path, description = "the website widget's public token"), StorefrontEventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event received")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "`event: availability`, `data: {sku, location_id, level}`"),
        (status = 400, description = "`invalid_skus`", body = ErrorBody),
        (status = 404, description = "`widget_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (per client IP)", body = ErrorBody),
        (status = 503, description = "`bus_unavailable`", body = ErrorBody)
    ))]
async fn availability_events(
    _: Limited,
    State(state): State<AppState>,
    Path(website_token): Path<String>,
    headers: HeaderMap,
    Query(q): Query<StorefrontEventsQuery>,
) -> ApiResult<axum::response::Response> {
    let ws = workspace_of_website(&state.app, &website_token).await?;
    let skus = q.skus.as_deref().map(|list| {
        Arc::new(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<HashSet<_>>(),
        )
    });
    if skus.as_ref().is_some_and(|s| s.is_empty() || s.len() > 100) {
        return Err(ApiError::invalid(
            "invalid_skus",
            "name 1–100 SKUs, separated by commas",
        ));
    }
    live_stream(&state, ws, &headers, q.after, View::Storefront { skus }).await
}
