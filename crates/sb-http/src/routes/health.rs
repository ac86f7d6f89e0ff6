use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The process can serve: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Health),
    (status = 503, description = "`database_unavailable`", body = ErrorBody)
))]
async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.db.ping()).await {
        Ok(Ok(())) => Ok(axum::Json(Health { status: "ready" })),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is not reachable",
        )),
    }
}

/// Prometheus text exposition, for a scraper that sends the configured metrics token
/// (`metrics_token`); off when none is configured.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, content_type = "text/plain", body = String),
    (status = 401, description = "`authentication_required`, `invalid_metrics_token`", body = ErrorBody),
    (status = 404, description = "`metrics_disabled`: no metrics token is configured", body = ErrorBody)
), security(("metrics_token" = [])))]
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(sent) = sent else {
        return Err(ApiError::unauthenticated());
    };
    let Some(expected) = state.config.metrics_token.as_deref() else {
        return Err(ApiError::not_found(
            "metrics_disabled",
            "set metrics_token (SWITCHBOARD_METRICS_TOKEN) to scrape /metrics",
        ));
    };
    if !sb_core::credentials::constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_metrics_token",
            "send the metrics token as `Authorization: Bearer <token>`",
        ));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}
