//! Who may open each page: the page × permission table of the web app, the pages' half of the
//! matrix in `sb_core::access`. The signed-in extractor (`web::Signed`) applies it before a
//! page reads its form, so a role without the permission sees the refusal page whatever it
//! sends; the use case behind the page asks again. The permission-matrix test opens every
//! page as every role and checks each answer against this table.

use sb_core::Permission;
use sb_core::Permission::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAccess {
    /// Anyone: sign-in, the assets, the demo shop.
    Public,
    /// Any signed-in user (the landing redirect, signing out).
    SignedIn,
    /// A signed-in user whose role has this permission.
    Needs(Permission),
}

use PageAccess::*;

/// Every route of the web app: method, path as the router writes it, and who may open it.
pub const PAGES: &[(&str, &str, PageAccess)] = &[
    ("GET", "/app/static/{name}", Public),
    ("GET", "/app", SignedIn),
    ("GET", "/app/login", Public),
    ("POST", "/app/login", Public),
    ("POST", "/app/logout", SignedIn),
    ("GET", "/app/inbox", Needs(ReadConversations)),
    ("GET", "/app/inbox/list", Needs(ReadConversations)),
    ("GET", "/app/conversations/{id}", Needs(ReadConversations)),
    ("GET", "/app/conversations/{id}/thread", Needs(ReadConversations)),
    ("GET", "/app/conversations/{id}/header", Needs(ReadConversations)),
    ("GET", "/app/conversations/{id}/customer", Needs(ReadConversations)),
    (
        "GET",
        "/app/conversations/{id}/merge-candidates",
        Needs(ReplyConversations),
    ),
    ("POST", "/app/conversations/{id}/merge", Needs(ReplyConversations)),
    (
        "POST",
        "/app/conversations/{id}/merges/{merge_id}/undo",
        Needs(ReplyConversations),
    ),
    ("POST", "/app/conversations/{id}/reply", Needs(ReplyConversations)),
    ("GET", "/app/conversations/{id}/measure", Needs(ReplyConversations)),
    ("GET", "/app/conversations/{id}/templates", Needs(ReplyConversations)),
    ("POST", "/app/conversations/{id}/handoff", Needs(ReplyConversations)),
    ("POST", "/app/conversations/{id}/status", Needs(ReplyConversations)),
    ("POST", "/app/conversations/{id}/assign", Needs(ReplyConversations)),
    ("POST", "/app/conversations/{id}/labels", Needs(ReplyConversations)),
    ("POST", "/app/conversations/{id}/read", Needs(ReplyConversations)),
    ("POST", "/app/messages/{id}/retry", Needs(ReplyConversations)),
    ("GET", "/app/journeys", Needs(ManageCampaigns)),
    ("GET", "/app/journeys/new", Needs(ManageCampaigns)),
    ("POST", "/app/journeys/new", Needs(ManageCampaigns)),
    ("GET", "/app/journeys/{id}", Needs(ManageCampaigns)),
    ("POST", "/app/journeys/{id}", Needs(ManageCampaigns)),
    ("POST", "/app/journeys/{id}/{action}", Needs(ManageCampaigns)),
    ("GET", "/app/store", Needs(ManageOrders)),
    ("GET", "/app/store/queue", Needs(ManageOrders)),
    ("POST", "/app/orders/{id}/ready", Needs(ManageOrders)),
    ("POST", "/app/orders/{id}/pickup", Needs(ManageOrders)),
    ("POST", "/app/transfers/{id}/receive", Needs(ManageInventory)),
    ("POST", "/app/orders/{id}/return", Needs(ManageOrders)),
    ("GET", "/app/stock", Needs(ReadInventory)),
    ("GET", "/app/lookup", Needs(ReadOrders)),
    ("GET", "/app/canned-responses", Needs(ReplyConversations)),
    ("POST", "/app/canned-responses", Needs(ReplyConversations)),
    ("GET", "/app/canned-responses/picker", Needs(ReplyConversations)),
    ("POST", "/app/canned-responses/{id}/delete", Needs(ReplyConversations)),
    ("GET", "/app/settings/webhooks", Needs(ManageWebhooks)),
    ("POST", "/app/settings/webhooks", Needs(ManageWebhooks)),
    ("GET", "/app/settings/webhooks/{id}", Needs(ManageWebhooks)),
    ("POST", "/app/settings/webhooks/{id}", Needs(ManageWebhooks)),
    ("POST", "/app/settings/webhooks/{id}/enabled", Needs(ManageWebhooks)),
    ("POST", "/app/settings/webhooks/{id}/rotate", Needs(ManageWebhooks)),
    ("POST", "/app/settings/webhooks/{id}/test", Needs(ManageWebhooks)),
    ("POST", "/app/settings/webhooks/{id}/delete", Needs(ManageWebhooks)),
    ("POST", "/app/settings/webhooks/{id}/replay", Needs(ManageWebhooks)),
    (
        "GET",
        "/app/settings/webhooks/{id}/messages/{message_id}",
        Needs(ManageWebhooks),
    ),
    (
        "POST",
        "/app/settings/webhooks/{id}/messages/{message_id}/resend",
        Needs(ManageWebhooks),
    ),
    ("GET", "/app/{*rest}", Public),
    ("GET", "/shop", Public),
    ("GET", "/shop/{website_token}", Public),
    ("GET", "/shop/{website_token}/availability", Public),
];

/// Who may open `method path` (the router's path pattern), if the page is in the table.
pub fn of(method: &str, path: &str) -> Option<PageAccess> {
    PAGES
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
        .map(|(_, _, a)| *a)
}
