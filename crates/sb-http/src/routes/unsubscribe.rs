//! One-click unsubscribe (RFC 8058) from the link in marketing mail's `List-Unsubscribe`.
//! The link is signed for one address on one account. A `POST` (a mail client's one-click,
//! or the confirmation page's button) revokes marketing consent on that channel, without
//! cookies, login or redirect; a `GET` only shows the confirmation page, because link
//! scanners fetch every URL in a message.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().route(
        "/unsubscribe/{account_id}/{address}/{sig}",
        axum::routing::get(confirm_page).post(unsubscribe),
    )
}

/// The account and address the link names, when its signature holds.
async fn check(
    state: &AppState,
    account_id: String,
    address: String,
    sig: String,
) -> ApiResult<(String, String, String)> {
    let invalid = || ApiError::not_found("unsubscribe_link_invalid", "this unsubscribe link is not valid");
    if !sb_core::ids::is_id(&account_id) {
        return Err(invalid());
    }
    let found = state
        .store
        .db
        .read(move |c| sb_store::channel_accounts::for_webhook(c, &account_id))
        .await?
        .ok_or_else(invalid)?;
    let (account, secrets) = found;
    let key = sb_core::credentials::secret_digest(&secrets);
    if !sb_channels::signing::unsubscribe_signature_valid(&key, &account.id, &address, &sig) {
        return Err(invalid());
    }
    Ok((account.workspace_id, account.channel, address))
}

async fn confirm_page(
    State(state): State<AppState>,
    Path((account_id, address, sig)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let (_, _, address) = check(&state, account_id, address, sig).await?;
    let shown = address
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    Ok(Html(format!(
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>\
         <main style=\"font-family:system-ui;max-width:30rem;margin:4rem auto\">\
         <h1>Unsubscribe</h1><p>Stop marketing e-mail to <b>{shown}</b>?</p>\
         <form method=post><input type=hidden name=List-Unsubscribe value=One-Click>\
         <button type=submit>Unsubscribe</button></form></main>"
    ))
    .into_response())
}

async fn unsubscribe(
    State(state): State<AppState>,
    Path((account_id, address, sig)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let (ws, channel, address) = check(&state, account_id, address, sig).await?;
    let now = state.store.now();
    state
        .store
        .db
        .write(move |c| {
            let customer = sb_store::customers::find_identity_owner(c, &ws, "email", "", &address)?;
            match customer {
                Some(customer) => sb_store::consents::record(
                    c,
                    &sb_store::consents::Change {
                        workspace_id: &ws,
                        customer_id: &customer,
                        channel: &channel,
                        purpose: "marketing",
                        granted: false,
                        source: "list_unsubscribe",
                        at: now,
                        proof: serde_json::json!({"text_shown": "One-click unsubscribe (RFC 8058)", "address": address}),
                    },
                ),
                // Nobody holds the address any more: keep the wish on the address itself.
                None => sb_store::suppressions::add(c, &ws, &channel, &address, "unsubscribed", "one-click", now),
            }
        })
        .await?;
    metrics::counter!("switchboard_unsubscribes_total").increment(1);
    Ok((
        StatusCode::OK,
        Html("<!doctype html><meta charset=utf-8><title>Unsubscribed</title><p>You are unsubscribed.</p>"),
    )
        .into_response())
}
