//! `/l/{token}`: the short links of automated SMS. A click is counted and redirected to the
//! URL registered for that message; nothing else can be reached through it (no open
//! redirect). Public and rate-limited per IP like the storefront.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::routes::storefront::Limited;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().route("/l/{token}", axum::routing::get(follow))
}

async fn follow(State(state): State<AppState>, _limited: Limited, Path(token): Path<String>) -> Response {
    match sb_app::journeys::follow_link(&state.app, &token).await {
        Ok(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Err(e) => (
            e.status,
            Html(format!(
                "<!doctype html><meta charset=\"utf-8\"><title>Link not found</title>\
                 <p>This link is not valid, or no longer is. <small>({})</small></p>",
                e.code
            )),
        )
            .into_response(),
    }
}
