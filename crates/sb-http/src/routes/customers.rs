use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use crate::views::{CustomerView, IdentityView, MergeView, Page, PageQuery};
use sb_app::customers as app;
#[allow(unused_imports)]
use sb_app::customers::*;
use sb_app::customers::{MergeRequest, merge_into, undo_merge_as};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_customers))
        .routes(routes!(get_customer))
        .routes(routes!(merge_customers))
        .routes(routes!(add_identity))
        .routes(routes!(undo_merge))
}

/// Finds customers by name, e-mail, phone or any identifier.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", params(CustomerQuery, PageQuery), responses(
    (status = 200, body = inline(Page<CustomerView>))
), security(("bearer" = []), ("session" = [])))]
async fn search_customers(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<CustomerQuery>,
    Query(p): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<CustomerView>>> {
    Ok(axum::Json(app::search_customers(&state.app, &principal, q, p).await?))
}

/// A customer with identities per channel and their conversation.
#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers", params(("id" = String, Path)), responses(
    (status = 200, body = CustomerProfile),
    (status = 404, description = "`customer_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_customer(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CustomerProfile>> {
    Ok(axum::Json(app::get_customer(&state.app, &principal, id).await?))
}

/// An agent links an e-mail address or phone number to this customer (they said it is
/// theirs): mail or texts from it join this customer's conversation. Audited. When another
/// customer holds it, merge the two instead.
#[utoipa::path(post, path = "/api/v1/customers/{id}/identities", tag = "customers", params(("id" = String, Path)),
    request_body = AddIdentity, responses(
    (status = 201, body = IdentityView),
    (status = 404, description = "`customer_not_found`", body = ErrorBody),
    (status = 409, description = "`identity_taken`: another customer holds it (merge them)", body = ErrorBody),
    (status = 422, description = "`invalid_identity`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn add_identity(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AddIdentity>,
) -> ApiResult<(StatusCode, axum::Json<IdentityView>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::add_identity(&state.app, &principal, id, body).await?),
    ))
}

/// Merges another customer into this one: identities, messages and conversation move here.
/// Audited; undo with `POST /api/v1/customer-merges/{id}/undo`.
#[utoipa::path(post, path = "/api/v1/customers/{id}/merge", tag = "customers", params(("id" = String, Path)), request_body = MergeRequest, responses(
    (status = 200, body = MergeView),
    (status = 404, description = "`customer_not_found`", body = ErrorBody),
    (status = 409, description = "`customer_already_merged`", body = ErrorBody),
    (status = 422, description = "`cannot_merge_into_itself`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn merge_customers(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MergeRequest>,
) -> ApiResult<axum::Json<MergeView>> {
    Ok(axum::Json(MergeView::from(
        &merge_into(&state.app, &principal, id, body).await?,
    )))
}

/// Undoes a merge: each customer gets back its identities, messages and conversation.
#[utoipa::path(post, path = "/api/v1/customer-merges/{id}/undo", tag = "customers", params(("id" = String, Path)), responses(
    (status = 200, body = MergeView),
    (status = 404, description = "`merge_not_found`", body = ErrorBody),
    (status = 409, description = "`merge_already_undone`, `target_merged_since`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn undo_merge(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<MergeView>> {
    Ok(axum::Json(MergeView::from(
        &undo_merge_as(&state.app, &principal, id).await?,
    )))
}
