//! The demo storefront: the catalogue with the chat widget, and "check availability at your
//! store" answered with shopper levels (in stock / low / out), never unit counts. The widget's
//! website token names the workspace, as on the widget's own demo page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use sb_core::inventory::StockLevel;
use sb_http::{ApiError, AppState};
use sb_store::{catalog, channel_accounts};
use serde::Deserialize;

use crate::format::money;
use crate::web::{WebError, WebResult};

pub struct ShopItem {
    pub product: String,
    pub description: String,
    pub variants: Vec<(String, String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "shop.html")]
pub struct Storefront {
    pub origin: String,
    pub website_token: String,
    pub items: Vec<ShopItem>,
    pub css: String,
    pub htmx: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/shop_availability.html")]
pub struct AvailabilityFragment {
    pub title: String,
    pub stores: Vec<(String, &'static str, &'static str)>,
}

/// The workspace behind a widget's public website token.
async fn workspace_of(state: &AppState, website_token: &str) -> WebResult<String> {
    Ok(sb_http::shared::workspace_of_website(state, website_token).await?)
}

pub async fn storefront(State(state): State<AppState>, Path(website_token): Path<String>) -> WebResult<Response> {
    let ws = workspace_of(&state, &website_token).await?;
    let products = state.store.db.read(move |c| catalog::products(c, &ws)).await?;
    let items = products
        .into_iter()
        .map(|(p, variants)| ShopItem {
            product: p.title,
            description: p.description,
            variants: variants
                .into_iter()
                .map(|v| (v.sku, v.title, money(v.price_minor, &v.currency)))
                .collect(),
        })
        .collect();
    Ok(Storefront {
        origin: state.base_url.trim_end_matches('/').to_owned(),
        website_token,
        items,
        css: crate::assets::url("app.css"),
        htmx: crate::assets::url("htmx.min.js"),
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct SkuQuery {
    sku: String,
}

pub async fn availability(
    State(state): State<AppState>,
    Path(website_token): Path<String>,
    Query(q): Query<SkuQuery>,
) -> WebResult<AvailabilityFragment> {
    let ws = workspace_of(&state, &website_token).await?;
    let found = state
        .store
        .db
        .read(move |c| sb_commerce::availability(c, &ws, &q.sku, None))
        .await?
        .ok_or_else(|| WebError::from(ApiError::not_found("not_found", "no such product")))?;
    Ok(AvailabilityFragment {
        title: found.title,
        stores: found
            .locations
            .into_iter()
            .filter(|l| l.can_pickup)
            .map(|l| {
                let (text, class) = match l.level {
                    StockLevel::InStock => ("In stock", "lvl-in"),
                    StockLevel::Low => ("Only a few left", "lvl-low"),
                    StockLevel::OutOfStock => ("Out of stock", "lvl-out"),
                };
                (l.name, text, class)
            })
            .collect(),
    })
}

/// `/shop`: the storefront of this instance's website widget when there is exactly one (the
/// demo's); otherwise the address must name the shop.
pub async fn only_storefront(State(state): State<AppState>) -> WebResult<axum::response::Redirect> {
    let widgets = state
        .store
        .db
        .read(|c| channel_accounts::enabled_of_kind(c, "widget"))
        .await?;
    match widgets.as_slice() {
        [(account, _)] => Ok(axum::response::Redirect::to(&format!("/shop/{}", account.id))),
        _ => Err(WebError::from(ApiError::not_found(
            "widget_not_found",
            "open the shop at /shop/<website token>",
        ))),
    }
}
