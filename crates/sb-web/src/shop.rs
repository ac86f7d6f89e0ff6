//! The demo storefront: the catalogue with the chat widget, and "check availability at your
//! store" answered with shopper levels (in stock / low / out), never unit counts. The widget's
//! website token names the workspace, as on the widget's own demo page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use sb_app::{App, AppError, storefront};
use sb_core::inventory::StockLevel;
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

pub async fn storefront(State(state): State<App>, Path(website_token): Path<String>) -> WebResult<Response> {
    let products = storefront::catalogue(&state, &website_token).await?;
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
    State(state): State<App>,
    Path(website_token): Path<String>,
    Query(q): Query<SkuQuery>,
) -> WebResult<AvailabilityFragment> {
    let found = storefront::availability(&state, &website_token, q.sku, None).await?;
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
pub async fn only_storefront(State(state): State<App>) -> WebResult<axum::response::Redirect> {
    match storefront::only_website(&state).await? {
        Some(token) => Ok(axum::response::Redirect::to(&format!("/shop/{token}"))),
        None => Err(WebError::from(AppError::not_found(
            "widget_not_found",
            "open the shop at /shop/<website token>",
        ))),
    }
}
