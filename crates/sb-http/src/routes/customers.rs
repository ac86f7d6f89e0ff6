use axum::extract::{Path, Query, State};
use sb_core::Permission;
use sb_store::objects::ObjectKind;
use sb_store::{StoreError, conversations, customers};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Principal;
use crate::views::{CustomerView, IdentityView, Page, PageQuery, page};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_customers))
        .routes(routes!(get_customer))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// Part of a name, e-mail, phone or any identifier.
    pub q: Option<String>,
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
    principal.require(Permission::ReadCustomers)?;
    let (ws, after, limit, query) = (
        principal.workspace_id().to_owned(),
        p.after()?,
        p.limit(),
        q.q.unwrap_or_default(),
    );
    let rows = state
        .store
        .db
        .read(move |c| customers::search(c, &ws, &query, after.as_deref(), limit))
        .await?;
    Ok(axum::Json(page(&rows, limit, |c| &c.id)))
}

#[derive(Serialize, ToSchema)]
pub struct CustomerProfile {
    #[serde(flatten)]
    pub customer: CustomerView,
    pub identities: Vec<IdentityView>,
    /// The customer's one conversation, if they have written.
    pub conversation_id: Option<String>,
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
    principal.require(Permission::ReadCustomers)?;
    let (ws, cid) = (principal.workspace_id().to_owned(), id.clone());
    let found = state
        .store
        .db
        .read(move |c| {
            let Some(customer) = customers::get(c, &ws, &cid)? else {
                return Ok(None);
            };
            let identities = customers::identities(c, &ws, &cid)?;
            let conversation = conversations::id_for_customer(c, &ws, &cid)?;
            Ok::<_, StoreError>(Some((customer, identities, conversation)))
        })
        .await?;
    match found {
        Some((customer, identities, conversation_id)) => Ok(axum::Json(CustomerProfile {
            customer: CustomerView::from(&customer),
            identities: identities
                .into_iter()
                .map(|i| IdentityView {
                    kind: i.kind,
                    scope: i.scope,
                    value: i.value,
                    verified: i.verified,
                })
                .collect(),
            conversation_id,
        })),
        None => Err(super::not_found(&state, &principal, ObjectKind::Customer, &id, "customer_not_found").await),
    }
}
