//! The public storefront: which workspace a website token names.

use sb_store::channel_accounts;

use crate::App;
use crate::error::{AppError, AppResult};

/// The workspace behind a website widget's public token (`widget_not_found` otherwise).
pub async fn workspace_of_website(app: &App, website_token: &str) -> AppResult<String> {
    let id = website_token.to_owned();
    let found = if sb_core::ids::is_id(website_token) {
        app.store
            .db
            .read(move |c| channel_accounts::for_webhook(c, &id))
            .await?
            .filter(|(a, _)| a.channel == "widget" && !a.disabled)
    } else {
        None
    };
    found
        .map(|(a, _)| a.workspace_id)
        .ok_or_else(|| AppError::not_found("widget_not_found", "no shop has this website token"))
}

/// Stock levels of a SKU at every location of the shop, nearest to `near` first; for
/// shoppers, so the JSON storefront and the shop page show levels, never counts.
pub async fn availability(
    app: &App,
    website_token: &str,
    sku: String,
    near: Option<(f64, f64)>,
) -> AppResult<sb_commerce::Availability> {
    let ws = workspace_of_website(app, website_token).await?;
    app.store
        .db
        .read(move |c| sb_commerce::availability(c, &ws, &sku, near))
        .await?
        .ok_or_else(|| AppError::not_found("not_found", "no product with this SKU"))
}

/// The shop's catalogue: products with their variants.
pub async fn catalogue(
    app: &App,
    website_token: &str,
) -> AppResult<Vec<(sb_store::catalog::Product, Vec<sb_store::catalog::Variant>)>> {
    let ws = workspace_of_website(app, website_token).await?;
    Ok(app.store.db.read(move |c| sb_store::catalog::products(c, &ws)).await?)
}

/// The website token of this instance's only website widget (the demo's), if there is one.
pub async fn only_website(app: &App) -> AppResult<Option<String>> {
    let widgets = app
        .store
        .db
        .read(|c| channel_accounts::enabled_of_kind(c, "widget"))
        .await?;
    Ok(match widgets.as_slice() {
        [(account, _)] => Some(account.id.clone()),
        _ => None,
    })
}
