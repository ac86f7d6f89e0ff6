//! Who may call each API route: the route × permission table, the HTTP half of the matrix
//! whose role × permission and permission × data kind halves are `sb_core::access`. The
//! permission itself is asked by the use case in `sb-app`; this table documents it: every
//! operation of the OpenAPI document carries its entry as `x-permission`, and the
//! permission-matrix test calls every operation as every role and checks each answer against it.

use sb_core::Permission;
use sb_core::Permission::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (rate-limited where it costs us: sign-in, the storefront).
    Public,
    /// Whoever holds the session cookie (signing out).
    Session,
    /// A website visitor's token from `POST /widget/v1/sessions`.
    Visitor,
    /// A provider's signature over the raw request (webhooks).
    Signature,
    /// An event source's write key (Segment-compatible ingestion).
    WriteKey,
    /// The instance owner: the admin who set up the instance.
    InstanceOwner,
    /// The configured metrics token (a Prometheus scraper).
    MetricsToken,
    /// A signed-in user whose role has this permission.
    Needs(Permission),
}

impl Access {
    /// As the OpenAPI document's `x-permission` states it.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Session => "session",
            Access::Visitor => "visitor_token",
            Access::Signature => "provider_signature",
            Access::WriteKey => "write_key",
            Access::InstanceOwner => "instance_owner",
            Access::MetricsToken => "metrics_token",
            Access::Needs(p) => p.as_str(),
        }
    }
}

use Access::*;

/// Every API operation: method, path as the OpenAPI document writes it, and who may call it.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("POST", "/api/v1/attachments", Needs(ReplyConversations)),
    ("GET", "/api/v1/attachments/{id}", Needs(ReadConversations)),
    ("GET", "/api/v1/audit", Needs(ReadAuditLog)),
    ("POST", "/api/v1/auth/login", Public),
    ("POST", "/api/v1/auth/logout", Session),
    ("GET", "/api/v1/canned-responses", Needs(ReplyConversations)),
    ("POST", "/api/v1/canned-responses", Needs(ReplyConversations)),
    ("DELETE", "/api/v1/canned-responses/{id}", Needs(ReplyConversations)),
    ("PATCH", "/api/v1/canned-responses/{id}", Needs(ReplyConversations)),
    ("POST", "/api/v1/carts", Needs(PlaceOrders)),
    ("GET", "/api/v1/carts/{id}", Needs(ReadOrders)),
    ("POST", "/api/v1/carts/{id}/assign", Needs(PlaceOrders)),
    ("POST", "/api/v1/carts/{id}/checkout", Needs(PlaceOrders)),
    ("PUT", "/api/v1/carts/{id}/lines/{sku}", Needs(PlaceOrders)),
    ("GET", "/api/v1/channel-accounts", Needs(ReadConversations)),
    ("POST", "/api/v1/channel-accounts", Needs(ManageWorkspace)),
    ("GET", "/api/v1/channel-accounts/{id}", Needs(ReadConversations)),
    (
        "POST",
        "/api/v1/channel-accounts/{id}/measure",
        Needs(ReplyConversations),
    ),
    (
        "GET",
        "/api/v1/channel-accounts/{id}/templates",
        Needs(ReadConversations),
    ),
    (
        "POST",
        "/api/v1/channel-accounts/{id}/templates/sync",
        Needs(ManageWorkspace),
    ),
    ("GET", "/api/v1/conversations", Needs(ReadConversations)),
    ("GET", "/api/v1/conversations/{id}", Needs(ReadConversations)),
    ("POST", "/api/v1/conversations/{id}/assign", Needs(ReplyConversations)),
    ("POST", "/api/v1/conversations/{id}/handoff", Needs(ReplyConversations)),
    ("POST", "/api/v1/conversations/{id}/labels", Needs(ReplyConversations)),
    ("GET", "/api/v1/conversations/{id}/messages", Needs(ReadConversations)),
    ("POST", "/api/v1/conversations/{id}/messages", Needs(ReplyConversations)),
    ("POST", "/api/v1/conversations/{id}/notes", Needs(ReplyConversations)),
    ("POST", "/api/v1/conversations/{id}/read", Needs(ReplyConversations)),
    ("POST", "/api/v1/conversations/{id}/status", Needs(ReplyConversations)),
    ("POST", "/api/v1/conversations/{id}/typing", Needs(ReplyConversations)),
    ("POST", "/api/v1/customer-merges/{id}/undo", Needs(ReplyConversations)),
    ("GET", "/api/v1/customers", Needs(ReadCustomers)),
    ("GET", "/api/v1/customers/{id}", Needs(ReadCustomers)),
    ("GET", "/api/v1/customers/{id}/cart", Needs(ReadOrders)),
    ("POST", "/api/v1/customers/{id}/consents", Needs(ManageConsent)),
    ("POST", "/api/v1/customers/{id}/erase", Needs(ManagePrivacy)),
    ("GET", "/api/v1/customers/{id}/export", Needs(ManagePrivacy)),
    ("POST", "/api/v1/customers/{id}/identities", Needs(ReplyConversations)),
    ("GET", "/api/v1/customers/{id}/may-send", Needs(ReadConsent)),
    ("POST", "/api/v1/customers/{id}/merge", Needs(ReplyConversations)),
    ("GET", "/api/v1/customers/{id}/merges", Needs(ReadCustomers)),
    ("GET", "/api/v1/customers/{id}/orders", Needs(ReadOrders)),
    ("GET", "/api/v1/customers/{id}/profile", Needs(ReadCustomers)),
    ("POST", "/api/v1/customers/{id}/split", Needs(ReplyConversations)),
    ("GET", "/api/v1/customers/{id}/timeline", Needs(ReadCustomers)),
    ("GET", "/api/v1/event-batches/stats", Needs(ManageJobs)),
    ("GET", "/api/v1/event-sources", Needs(ManageWorkspace)),
    ("POST", "/api/v1/event-sources", Needs(ManageWorkspace)),
    ("GET", "/api/v1/events", Needs(ReadConversations)),
    ("GET", "/api/v1/identifier-types", Needs(ReadCustomers)),
    ("GET", "/api/v1/inbound-requests/stats", Needs(ManageJobs)),
    ("GET", "/api/v1/inventory/availability", Needs(ReadInventory)),
    ("POST", "/api/v1/inventory/changes", Needs(ManageInventory)),
    ("GET", "/api/v1/inventory/check", Needs(ManageInventory)),
    ("POST", "/api/v1/inventory/reservations", Needs(ManageOrders)),
    (
        "POST",
        "/api/v1/inventory/reservations/{id}/{action}",
        Needs(ManageOrders),
    ),
    ("GET", "/api/v1/jobs", Needs(ManageJobs)),
    ("POST", "/api/v1/jobs/{id}/retry", Needs(ManageJobs)),
    ("GET", "/api/v1/locations", Needs(ReadInventory)),
    ("POST", "/api/v1/locations", Needs(ManageInventory)),
    ("POST", "/api/v1/loyalty/members", Needs(ManageCustomers)),
    ("GET", "/api/v1/me", Needs(ReadOwnAccount)),
    ("POST", "/api/v1/messages/{id}/retry", Needs(ReplyConversations)),
    ("POST", "/api/v1/orders", Needs(PlaceOrders)),
    ("GET", "/api/v1/orders/{id}", Needs(ReadOrders)),
    (
        "POST",
        "/api/v1/orders/{id}/fulfillments/{fulfillment_id}/ship",
        Needs(ManageOrders),
    ),
    ("POST", "/api/v1/orders/{id}/returns", Needs(ManageOrders)),
    ("POST", "/api/v1/orders/{id}/{action}", Needs(ManageOrders)),
    ("GET", "/api/v1/presence", Needs(ReadConversations)),
    ("POST", "/api/v1/presence", Needs(ReadConversations)),
    ("GET", "/api/v1/products", Needs(ReadInventory)),
    ("POST", "/api/v1/products", Needs(ManageInventory)),
    ("GET", "/api/v1/profiles/lookup", Needs(ReadCustomers)),
    ("GET", "/api/v1/tokens", Needs(ManageOwnTokens)),
    ("POST", "/api/v1/tokens", Needs(ManageOwnTokens)),
    ("DELETE", "/api/v1/tokens/{id}", Needs(ManageOwnTokens)),
    ("GET", "/api/v1/transfers", Needs(ReadInventory)),
    ("POST", "/api/v1/transfers", Needs(ManageInventory)),
    ("GET", "/api/v1/transfers/{id}", Needs(ReadInventory)),
    ("POST", "/api/v1/transfers/{id}/{action}", Needs(ManageInventory)),
    ("GET", "/api/v1/users", Needs(ManageUsers)),
    ("POST", "/api/v1/users", Needs(ManageUsers)),
    ("GET", "/api/v1/users/{id}", Needs(ManageUsers)),
    ("PATCH", "/api/v1/users/{id}", Needs(ManageUsers)),
    ("GET", "/api/v1/journeys", Needs(ManageCampaigns)),
    ("POST", "/api/v1/journeys", Needs(ManageCampaigns)),
    ("GET", "/api/v1/journeys/{id}", Needs(ManageCampaigns)),
    ("PUT", "/api/v1/journeys/{id}", Needs(ManageCampaigns)),
    ("POST", "/api/v1/journeys/{id}/{action}", Needs(ManageCampaigns)),
    ("GET", "/api/v1/journeys/{id}/preview", Needs(ManageCampaigns)),
    ("GET", "/api/v1/customers/{id}/journeys", Needs(ReadCustomers)),
    ("GET", "/api/v1/webhook-endpoints", Needs(ManageWebhooks)),
    ("POST", "/api/v1/webhook-endpoints", Needs(ManageWebhooks)),
    ("DELETE", "/api/v1/webhook-endpoints/{id}", Needs(ManageWebhooks)),
    ("GET", "/api/v1/webhook-endpoints/{id}", Needs(ManageWebhooks)),
    ("PATCH", "/api/v1/webhook-endpoints/{id}", Needs(ManageWebhooks)),
    ("GET", "/api/v1/webhook-endpoints/{id}/attempts", Needs(ManageWebhooks)),
    (
        "GET",
        "/api/v1/webhook-endpoints/{id}/deliveries",
        Needs(ManageWebhooks),
    ),
    (
        "GET",
        "/api/v1/webhook-endpoints/{id}/messages/{message_id}",
        Needs(ManageWebhooks),
    ),
    (
        "POST",
        "/api/v1/webhook-endpoints/{id}/messages/{message_id}/resend",
        Needs(ManageWebhooks),
    ),
    ("POST", "/api/v1/webhook-endpoints/{id}/replay", Needs(ManageWebhooks)),
    (
        "POST",
        "/api/v1/webhook-endpoints/{id}/rotate-secret",
        Needs(ManageWebhooks),
    ),
    ("POST", "/api/v1/webhook-endpoints/{id}/test", Needs(ManageWebhooks)),
    ("GET", "/api/v1/webhook-event-types", Needs(ManageWebhooks)),
    ("POST", "/api/v1/workspaces", InstanceOwner),
    ("GET", "/healthz", Public),
    ("GET", "/hooks/{channel}/{account_id}", Signature),
    ("POST", "/hooks/{channel}/{account_id}", Signature),
    ("GET", "/metrics", MetricsToken),
    ("GET", "/readyz", Public),
    ("GET", "/storefront/v1/{website_token}/availability", Public),
    ("GET", "/storefront/v1/{website_token}/availability/events", Public),
    ("POST", "/v1/{call}", WriteKey),
    ("POST", "/widget/v1/attachments", Visitor),
    ("GET", "/widget/v1/attachments/{id}", Visitor),
    ("POST", "/widget/v1/contact", Visitor),
    ("GET", "/widget/v1/conversation", Visitor),
    ("GET", "/widget/v1/events", Visitor),
    ("POST", "/widget/v1/handoff", Visitor),
    ("POST", "/widget/v1/identify", Visitor),
    ("POST", "/widget/v1/messages", Visitor),
    ("POST", "/widget/v1/seen", Visitor),
    ("POST", "/widget/v1/sessions", Public),
    ("GET", "/widget/v1/socket", Visitor),
    ("POST", "/widget/v1/typing", Visitor),
];

/// Who may call `method path`, if the route is in the table.
pub fn of(method: &str, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
        .map(|(_, _, a)| *a)
}

/// Writes each operation's entry into the OpenAPI document as `x-permission`, and the error
/// answers every operation can give besides its own: 400 for parameters that do not parse,
/// 400/413/415/422 for a body, 401 and 403 where a credential or permission is asked, 429
/// where the route is rate-limited.
pub fn annotate(doc: &mut serde_json::Value) {
    use serde_json::json;
    let error = |description: &str| {
        json!({"description": description,
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
    };
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            let Some(access) = of(method, path) else { continue };
            let Some(op) = op.as_object_mut() else { continue };
            op.insert("x-permission".into(), serde_json::Value::from(access.as_str()));
            let has_params = op
                .get("parameters")
                .and_then(|p| p.as_array())
                .is_some_and(|p| !p.is_empty())
                || path.contains('{');
            let has_body = op.contains_key("requestBody");
            let mut add = Vec::new();
            if has_params || has_body {
                add.push((
                    "400",
                    "`invalid_parameters`, `malformed_json`: the request does not parse",
                ));
            }
            if has_body {
                add.push(("413", "`payload_too_large`"));
                add.push(("415", "`unsupported_media_type`"));
                add.push(("422", "`invalid_request`: the body does not match the schema"));
            }
            let keyed = matches!(access, Needs(_) | InstanceOwner)
                && matches!(method.as_str(), "post" | "put" | "patch" | "delete");
            if keyed {
                let parameters = op
                    .entry("parameters")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .expect("parameters is a list");
                if !parameters.iter().any(|p| p["name"] == "Idempotency-Key") {
                    parameters.push(json!({
                        "name": "Idempotency-Key", "in": "header", "required": false,
                        "description": "The client's key for this request (1–200 characters): a retry with the same key gets the first answer and changes nothing more; kept a day",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200}
                    }));
                }
                add.push((
                    "409",
                    "`request_in_progress`: the same key is still running; `idempotency_key_reused`",
                ));
                add.push((
                    "422",
                    "`idempotency_key_reused`: the key was sent with another request; `invalid_idempotency_key`",
                ));
            }
            match access {
                Needs(_) | InstanceOwner => {
                    add.push(("401", "`authentication_required`, `invalid_token`, `session_expired`"));
                    add.push(("403", "`permission_denied`, `csrf_rejected`"));
                }
                Visitor | MetricsToken | Signature | WriteKey => {
                    add.push(("401", "the credential is missing or wrong"));
                }
                Public | Session => add.push(("429", "`rate_limited`")),
            }
            if matches!(access, Visitor | WriteKey) {
                add.push(("429", "`rate_limited`"));
            }
            if path.contains('{') {
                add.push(("404", "`not_found`: nothing with that id in this workspace"));
            }
            let responses = op
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("responses is an object");
            for (status, description) in add {
                responses.entry(status).or_insert_with(|| error(description));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_has_exactly_one_entry_and_every_entry_an_operation() {
        let (_, doc) = crate::api();
        let doc = serde_json::to_value(&doc).expect("the document serialises");
        let mut operations = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                operations.push((method.to_uppercase(), path.clone()));
            }
        }
        for (method, path) in &operations {
            assert!(
                super::of(method, path).is_some(),
                "{method} {path} has no entry in access::ROUTES"
            );
        }
        for (method, path, _) in super::ROUTES {
            assert!(
                operations.iter().any(|(m, p)| m == method && p == path),
                "access::ROUTES lists {method} {path}, which the document does not have"
            );
        }
        assert_eq!(operations.len(), super::ROUTES.len(), "a route is listed twice");
    }
}
