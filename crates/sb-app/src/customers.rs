//! Customers: search, profiles, identities, and merging two into one (and undoing it).

use http::StatusCode;
use sb_core::Permission;
use sb_store::audit::{self, Change};
use sb_store::merges::{self, MergeError};
use sb_store::objects::ObjectKind;
use sb_store::{StoreError, conversations, customers};

use crate::error::{AppError, AppResult};
use crate::views::{CustomerView, IdentityView, Page, PageQuery, page};
use crate::{App, Principal};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
pub struct MergeRequest {
    /// The customer to fold into this one (its identities, messages and conversation).
    pub source_customer_id: String,
}

fn merge_error(e: MergeError) -> AppError {
    match e {
        MergeError::NotFound => AppError::not_found("customer_not_found", "no such customer in this workspace"),
        MergeError::SameCustomer => AppError::unprocessable("cannot_merge_into_itself", e.to_string()),
        MergeError::AlreadyMerged => AppError::new(StatusCode::CONFLICT, "customer_already_merged", e.to_string()),
        MergeError::AlreadyUndone => AppError::new(StatusCode::CONFLICT, "merge_already_undone", e.to_string()),
        MergeError::TargetMergedSince => AppError::new(StatusCode::CONFLICT, "target_merged_since", e.to_string()),
        MergeError::Conflict(_) => AppError::new(StatusCode::CONFLICT, "identifier_conflict", e.to_string()),
        MergeError::Store(e) => e.into(),
    }
}

fn profile_json(c: &mut dyn sb_store::Conn, ws: &str, id: &str) -> Result<serde_json::Value, StoreError> {
    let identities: Vec<String> = customers::identities(c, ws, id)?
        .into_iter()
        .map(|i| format!("{}:{}:{}", i.kind, i.scope, i.value))
        .collect();
    Ok(serde_json::json!({ "customer_id": id, "identities": identities }))
}

/// [`merge_into_unaudited`], with a 404 for another workspace's customer audited.
pub async fn merge_into(app: &App, principal: &Principal, id: String, body: MergeRequest) -> AppResult<merges::Merge> {
    let audit_id = id.clone();
    let result = merge_into_unaudited(app, principal, id, body).await;
    crate::access::audited(
        app,
        principal,
        sb_store::objects::ObjectKind::Customer,
        &audit_id,
        result,
    )
    .await
}

/// Merges `body.source_customer_id` into customer `id` as `principal` (the JSON route and the
/// web app's customer panel).
async fn merge_into_unaudited(
    app: &App,
    principal: &Principal,
    id: String,
    body: MergeRequest,
) -> AppResult<merges::Merge> {
    principal.require(Permission::ReplyConversations)?;
    let (ws, target, source, actor, now) = (
        principal.workspace_id().to_owned(),
        id.clone(),
        body.source_customer_id.clone(),
        principal.actor(),
        app.store.now(),
    );
    let outcome = app
        .store
        .db
        .write(move |c| {
            let before = serde_json::json!([profile_json(c, &ws, &target)?, profile_json(c, &ws, &source)?]);
            let merge = match merges::merge(c, &ws, &target, &source, actor.id.as_deref(), now) {
                Ok(m) => m,
                Err(MergeError::Store(e)) => return Err(e),
                Err(other) => return Ok(Err(other)),
            };
            let change = Change {
                action: "customer.merged",
                object_kind: "customer",
                object_id: Some(&target),
                before: Some(before),
                after: Some(serde_json::json!({ "merge_id": merge.id, "target": profile_json(c, &ws, &target)? })),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            let mut events = Vec::new();
            if let Some(cid) = merge.target_conversation_id.as_deref()
                && let Some(conversation) = conversations::get(c, &ws, cid)?
            {
                events.push(sb_inbox::live::conversation_event(c, &conversation, now)?);
            }
            Ok(Ok((merge, events)))
        })
        .await?;
    match outcome {
        Ok((merge, events)) => {
            app.live.publish(&events).await;
            Ok(merge)
        }
        Err(MergeError::NotFound) => {
            let (ws, target) = (principal.workspace_id().to_owned(), id.clone());
            let target_exists = app
                .store
                .db
                .read(move |c| customers::get(c, &ws, &target))
                .await?
                .is_some();
            let missing = if target_exists { body.source_customer_id } else { id };
            Err(crate::access::not_found(app, principal, ObjectKind::Customer, &missing, "customer_not_found").await)
        }
        Err(other) => Err(merge_error(other)),
    }
}

/// [`undo_merge_as_unaudited`], with a 404 for another workspace's merge audited.
pub async fn undo_merge_as(app: &App, principal: &Principal, id: String) -> AppResult<merges::Merge> {
    let audit_id = id.clone();
    let result = undo_merge_as_unaudited(app, principal, id).await;
    crate::access::audited(app, principal, sb_store::objects::ObjectKind::Merge, &audit_id, result).await
}

/// Undoes merge `id` as `principal` (the JSON route and the web app's customer panel).
async fn undo_merge_as_unaudited(app: &App, principal: &Principal, id: String) -> AppResult<merges::Merge> {
    principal.require(Permission::ReplyConversations)?;
    let (ws, mid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.clone(),
        principal.actor(),
        app.store.now(),
    );
    let outcome = app
        .store
        .db
        .write(move |c| {
            let merge = match merges::undo(c, &ws, &mid, now) {
                Ok(m) => m,
                Err(MergeError::Store(e)) => return Err(e),
                Err(other) => return Ok(Err(other)),
            };
            let change = Change {
                action: "customer.merge_undone",
                object_kind: "customer",
                object_id: Some(&merge.target_customer_id),
                before: Some(serde_json::json!({ "merge_id": merge.id })),
                after: Some(serde_json::json!([
                    profile_json(c, &ws, &merge.target_customer_id)?,
                    profile_json(c, &ws, &merge.source_customer_id)?
                ])),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            let mut events = Vec::new();
            for cid in [&merge.target_conversation_id, &merge.source_conversation_id]
                .into_iter()
                .flatten()
            {
                if let Some(conversation) = conversations::get(c, &ws, cid)? {
                    events.push(sb_inbox::live::conversation_event(c, &conversation, now)?);
                }
            }
            Ok(Ok((merge, events)))
        })
        .await?;
    match outcome {
        Ok((merge, events)) => {
            app.live.publish(&events).await;
            Ok(merge)
        }
        Err(MergeError::NotFound) => Err(AppError::not_found(
            "merge_not_found",
            "no such merge in this workspace",
        )),
        Err(other) => Err(merge_error(other)),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// Part of a name, e-mail, phone or any identifier.
    pub q: Option<String>,
}
/// Finds customers by name, e-mail, phone or any identifier.
pub async fn search_customers(
    app: &App,
    principal: &Principal,
    q: CustomerQuery,
    p: PageQuery,
) -> AppResult<Page<CustomerView>> {
    principal.require(Permission::ReadCustomers)?;
    let (ws, after, limit, query) = (
        principal.workspace_id().to_owned(),
        p.after()?,
        p.limit()?,
        q.q.unwrap_or_default(),
    );
    let rows = app
        .store
        .db
        .read(move |c| customers::search(c, &ws, &query, after.as_deref(), limit))
        .await?;
    Ok(page(&rows, limit, |c| &c.id))
}

#[derive(Serialize, ToSchema)]
pub struct CustomerProfile {
    #[serde(flatten)]
    pub customer: CustomerView,
    pub identities: Vec<IdentityView>,
    /// The customer's one conversation, if they have written.
    pub conversation_id: Option<String>,
    /// Per channel and purpose: granted or withdrawn, where and when it was stated.
    #[schema(value_type = Vec<Object>)]
    pub consents: Vec<serde_json::Value>,
}
/// A customer with identities per channel and their conversation.
pub async fn get_customer(app: &App, principal: &Principal, id: String) -> AppResult<CustomerProfile> {
    principal.require(Permission::ReadCustomers)?;
    let (ws, cid) = (principal.workspace_id().to_owned(), id.clone());
    let found = app
        .store
        .db
        .read(move |c| {
            let Some(customer) = customers::get(c, &ws, &cid)? else {
                return Ok(None);
            };
            let identities = customers::identities(c, &ws, &cid)?;
            let consents = sb_store::consents::list(c, &ws, &cid)?;
            let conversation = conversations::id_for_customer(c, &ws, &cid)?;
            Ok::<_, StoreError>(Some((customer, identities, conversation, consents)))
        })
        .await?;
    match found {
        Some((customer, identities, conversation_id, consents)) => Ok(CustomerProfile {
            // Consent is a kind of data of its own (`read_consent`).
            consents: consents
                .iter()
                .filter(|_| principal.may(Permission::ReadConsent))
                .map(|c| {
                    serde_json::json!({
                        "channel": c.channel, "purpose": c.purpose, "granted": c.granted,
                        "source": c.source, "at": sb_core::clock::rfc3339(c.at),
                    })
                })
                .collect(),
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
        }),
        None => Err(crate::access::not_found(app, principal, ObjectKind::Customer, &id, "customer_not_found").await),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct AddIdentity {
    /// `email` or `phone` (E.164).
    pub kind: String,
    pub value: String,
}
/// An agent links an e-mail address or phone number to this customer (they said it is
/// theirs): mail or texts from it join this customer's conversation. Audited. When another
/// customer holds it, merge the two instead.
pub async fn add_identity(app: &App, principal: &Principal, id: String, body: AddIdentity) -> AppResult<IdentityView> {
    principal.require(Permission::ReplyConversations)?;
    let value = match body.kind.as_str() {
        "email" => sb_core::inbox::normalise_email(&body.value),
        "phone" => sb_core::inbox::normalise_phone(&body.value),
        _ => None,
    }
    .ok_or_else(|| {
        AppError::unprocessable(
            "invalid_identity",
            "kind must be `email` or `phone` with a valid address (phone in E.164, e.g. +34600111222)",
        )
    })?;
    let (ws, cid, kind, actor, now, normalised) = (
        principal.workspace_id().to_owned(),
        id.clone(),
        body.kind.clone(),
        principal.actor(),
        app.store.now(),
        value.clone(),
    );
    let outcome = app
        .store
        .db
        .write(move |c| {
            if customers::get(c, &ws, &cid)?.is_none() {
                return Ok(Err(None));
            }
            if let Some(owner) = customers::find_identity_owner(c, &ws, &kind, "", &value)? {
                return Ok(if owner == cid { Ok(()) } else { Err(Some(owner)) });
            }
            let hint = customers::Hint {
                kind: &kind,
                value: &value,
                verified: true,
            };
            customers::attach(c, &ws, &cid, &hint, "", now)?;
            let (email, phone) = match kind.as_str() {
                "email" => (Some(value.as_str()), None),
                _ => (None, Some(value.as_str())),
            };
            customers::fill_profile(c, &ws, &cid, None, email, phone, now)?;
            let change = Change {
                action: "customer.identity_added",
                object_kind: "customer",
                object_id: Some(&cid),
                before: None,
                after: Some(serde_json::json!({ "kind": kind, "value": value })),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, StoreError>(Ok(()))
        })
        .await?;
    match outcome {
        Ok(()) => Ok(IdentityView {
            kind: body.kind,
            scope: String::new(),
            value: normalised,
            verified: true,
        }),
        Err(None) => {
            Err(crate::access::not_found(app, principal, ObjectKind::Customer, &id, "customer_not_found").await)
        }
        Err(Some(owner)) => Err(AppError::new(
            StatusCode::CONFLICT,
            "identity_taken",
            format!("customer {owner} holds this identity: merge the two customers instead"),
        )),
    }
}
