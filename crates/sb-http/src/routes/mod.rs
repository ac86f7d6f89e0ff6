//! One module per resource. A handler extracts its input, calls its use case in `sb-app`
//! (which asks for the permission) and renders JSON; the provider webhooks, the widget, the
//! storefront and Segment ingestion authenticate by their own signatures, tokens and keys.

mod attachments;
pub(crate) mod auth;
pub mod canned_responses;
mod channel_accounts;
pub(crate) mod commerce;
pub(crate) mod conversations;
pub(crate) mod customers;
mod events;
mod health;
mod jobs;
mod journeys;
mod links;
mod presence;
mod profiles;
mod segment;
pub(crate) mod storefront;
mod system;
mod tokens;
mod unsubscribe;
mod users;
mod webhook_endpoints;
mod webhooks;
pub(crate) mod widget;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::router())
        .merge(auth::router())
        .merge(users::router())
        .merge(tokens::router())
        .merge(canned_responses::router())
        .merge(jobs::router())
        .merge(journeys::router())
        .merge(system::router())
        .merge(channel_accounts::router())
        .merge(conversations::router())
        .merge(customers::router())
        .merge(webhooks::router())
        .merge(webhook_endpoints::router())
        .merge(events::router())
        .merge(presence::router())
        .merge(widget::router())
        .merge(attachments::router())
        .merge(unsubscribe::router())
        .merge(links::router())
        .merge(commerce::router())
        .merge(profiles::router())
        .merge(segment::router().layer(tower_http::cors::CorsLayer::permissive()))
        // Any shop page may read stock levels; nothing here needs or sends credentials.
        .merge(storefront::router().layer(tower_http::cors::CorsLayer::permissive()))
}
