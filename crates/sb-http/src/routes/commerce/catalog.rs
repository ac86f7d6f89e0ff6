//! Locations (stores, warehouses) and the catalogue.

use axum::extract::State;
use axum::http::StatusCode;
use sb_store::catalog::{self};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use sb_app::commerce::catalog as app;
#[allow(unused_imports)]
use sb_app::commerce::catalog::*;

/// Adds a store or warehouse (audited).
#[utoipa::path(post, path = "/api/v1/locations", tag = "commerce", request_body = CreateLocation, responses(
    (status = 201, description = "the location"),
    (status = 409, description = "`location_code_taken`", body = ErrorBody),
    (status = 422, description = "`invalid_location`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn create_location(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateLocation>,
) -> ApiResult<(StatusCode, axum::Json<catalog::Location>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::create_location(&state.app, &principal, body).await?),
    ))
}

/// The workspace's locations.
#[utoipa::path(get, path = "/api/v1/locations", tag = "commerce", responses(
    (status = 200, description = "`{items: [location]}`")
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn list_locations(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::list_locations(&state.app, &principal).await?))
}

/// Adds a product with its variants; each variant is stocked as an item of its own SKU, or
/// as a kit of other items.
#[utoipa::path(post, path = "/api/v1/products", tag = "commerce", request_body = CreateProduct, responses(
    (status = 201, description = "`{product, variants}`"),
    (status = 409, description = "`sku_taken`", body = ErrorBody),
    (status = 422, description = "`invalid_product`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn create_product(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateProduct>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::create_product(&state.app, &principal, body).await?),
    ))
}

/// The catalogue.
#[utoipa::path(get, path = "/api/v1/products", tag = "commerce", responses(
    (status = 200, description = "`{items: [{product, variants}]}`")
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn list_products(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::list_products(&state.app, &principal).await?))
}
