//! The agents' and store staff's web app: server-rendered askama pages under `/app/…`, made
//! live with htmx and its SSE extension (both vendored under `static/vendor/`, embedded in
//! the binary). Every page runs on a server-side session of `sb_app::auth` and calls the same
//! use cases as the JSON API (`sb-app`), always in the session's workspace; a page that composes
//! its own store reads makes them through `sb_app::read_as`, after the permission they need.

mod assets;
mod auth;
mod canned;
mod customer;
mod format;
mod inbox;
mod journeys;
pub mod pages;
mod shop;
mod store;
mod web;
mod webhooks;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use sb_app::App;

/// The web app's routes, on any state that holds the application (`sb-server` merges them with
/// `sb_http::app`, whose state does).
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    App: FromRef<S>,
{
    Router::new()
        .route("/app/static/{name}", get(assets::serve))
        .route("/app", get(auth::home))
        .route("/app/login", get(auth::login_page).post(auth::login))
        .route("/app/logout", post(auth::logout))
        .route("/app/inbox", get(inbox::inbox_page))
        .route("/app/inbox/list", get(inbox::list_fragment))
        .route("/app/conversations/{id}", get(inbox::conversation_page))
        .route("/app/conversations/{id}/thread", get(inbox::thread_fragment))
        .route("/app/conversations/{id}/header", get(inbox::header_fragment))
        .route("/app/conversations/{id}/customer", get(inbox::customer_fragment))
        .route("/app/conversations/{id}/merge-candidates", get(inbox::merge_candidates))
        .route("/app/conversations/{id}/merge", post(inbox::merge))
        .route(
            "/app/conversations/{id}/merges/{merge_id}/undo",
            post(inbox::undo_merge),
        )
        .route("/app/conversations/{id}/reply", post(inbox::reply))
        .route("/app/conversations/{id}/measure", get(inbox::measure))
        .route("/app/conversations/{id}/templates", get(inbox::templates))
        .route("/app/conversations/{id}/handoff", post(inbox::handoff))
        .route("/app/conversations/{id}/status", post(inbox::change_status))
        .route("/app/conversations/{id}/assign", post(inbox::assign))
        .route("/app/conversations/{id}/labels", post(inbox::labels))
        .route("/app/conversations/{id}/read", post(inbox::mark_read))
        .route("/app/messages/{id}/retry", post(inbox::retry))
        .route("/app/store", get(store::pickup_page))
        .route("/app/store/queue", get(store::queue_fragment))
        .route("/app/orders/{id}/ready", post(store::mark_ready))
        .route("/app/orders/{id}/pickup", post(store::hand_over))
        .route("/app/transfers/{id}/receive", post(store::receive_transfer))
        .route("/app/orders/{id}/return", post(store::take_return))
        .route("/app/stock", get(store::stock_page))
        .route("/app/lookup", get(store::lookup_page))
        .route("/app/canned-responses", get(canned::page).post(canned::add))
        .route("/app/canned-responses/picker", get(canned::picker))
        .route("/app/canned-responses/{id}/delete", post(canned::delete))
        .route("/app/journeys", get(journeys::list_page))
        .route("/app/journeys/new", get(journeys::new_page).post(journeys::post_new))
        .route(
            "/app/journeys/{id}",
            get(journeys::builder_page).post(journeys::post_existing),
        )
        .route("/app/journeys/{id}/{action}", post(journeys::transition))
        .route(
            "/app/settings/webhooks",
            get(webhooks::list_page).post(webhooks::create),
        )
        .route(
            "/app/settings/webhooks/{id}",
            get(webhooks::detail_page).post(webhooks::update),
        )
        .route("/app/settings/webhooks/{id}/enabled", post(webhooks::set_enabled))
        .route("/app/settings/webhooks/{id}/rotate", post(webhooks::rotate))
        .route("/app/settings/webhooks/{id}/test", post(webhooks::test))
        .route("/app/settings/webhooks/{id}/delete", post(webhooks::delete))
        .route("/app/settings/webhooks/{id}/replay", post(webhooks::replay))
        .route(
            "/app/settings/webhooks/{id}/messages/{message_id}",
            get(webhooks::message_page),
        )
        .route(
            "/app/settings/webhooks/{id}/messages/{message_id}/resend",
            post(webhooks::resend),
        )
        .route("/app/{*rest}", get(web::not_found))
        .route("/shop", get(shop::only_storefront))
        .route("/shop/{website_token}", get(shop::storefront))
        .route("/shop/{website_token}/availability", get(shop::availability))
        .layer(axum::middleware::from_fn(web::security_headers))
}
