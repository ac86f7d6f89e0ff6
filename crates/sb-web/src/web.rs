//! What every page shares: the signed-in user (the `sb-http` session), the page frame, and how
//! errors and form posts answer a browser with or without htmx.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sb_core::Permission;
use sb_http::extract::{Principal, Via};
use sb_http::{ApiError, AppState};

use crate::assets;

/// A signed-in user of the web app. Only the session cookie counts (API tokens are for the API),
/// and writes pass the same same-origin check as cookie-authenticated API writes (the
/// `Principal` extractor applies it).
pub struct Signed(pub Principal);

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let htmx = is_htmx(&parts.headers);
        match Principal::from_request_parts(parts, state).await {
            Ok(p) if matches!(p.via, Via::Session) => Ok(Signed(p)),
            Ok(_) => Err(to_login(htmx)),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(to_login(htmx)),
            Err(e) => Err(WebError::from(e).with_htmx(htmx).into_response()),
        }
    }
}

fn to_login(htmx: bool) -> Response {
    if htmx {
        // htmx follows this with a full page load instead of swapping a fragment.
        ([("HX-Redirect", "/app/login")], StatusCode::UNAUTHORIZED).into_response()
    } else {
        Redirect::to("/app/login").into_response()
    }
}

impl Signed {
    pub fn ws(&self) -> String {
        self.0.workspace_id().to_owned()
    }

    pub fn may(&self, permission: Permission) -> bool {
        self.0.user.role().allows(permission)
    }

    pub fn require(&self, permission: Permission) -> Result<(), WebError> {
        self.0.require(permission).map_err(WebError::from)
    }

    pub fn chrome(&self, section: &'static str) -> Chrome {
        Chrome {
            user_name: self.0.user.name.clone(),
            role: self.0.user.role.replace('_', " "),
            section,
            inbox: self.may(Permission::ReadConversations),
            store: self.may(Permission::ManageOrders),
            stock: self.may(Permission::ReadInventory),
            lookup: self.may(Permission::ReadCustomers) && self.may(Permission::ReadOrders),
            canned: self.may(Permission::ReplyConversations),
            live: self.may(Permission::ReadConversations),
        }
    }
}

/// The frame around every page: who is signed in and which sections their role may open.
pub struct Chrome {
    pub user_name: String,
    pub role: String,
    /// `inbox`, `store`, `stock`, `lookup`, `canned`: the section the page belongs to.
    pub section: &'static str,
    pub inbox: bool,
    pub store: bool,
    pub stock: bool,
    pub lookup: bool,
    /// The workspace's canned responses (everyone who replies manages them).
    pub canned: bool,
    /// The page subscribes to the agent's event stream (only roles that may read conversations).
    pub live: bool,
}

impl Chrome {
    pub fn asset(&self, name: &str) -> String {
        assets::url(name)
    }

    pub fn current(&self, section: &str) -> &'static str {
        if self.section == section { "page" } else { "false" }
    }
}

pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// An error as a page (a plain request) or as a message swapped into the page's notice area
/// (an htmx request, answered 200 so that htmx swaps it).
pub struct WebError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub htmx: bool,
    /// Where an htmx request shows it (a CSS selector); the page's notice area by default.
    pub target: &'static str,
}

impl WebError {
    pub fn with_htmx(mut self, htmx: bool) -> Self {
        self.htmx = htmx;
        self
    }

    pub fn at(mut self, target: &'static str) -> Self {
        self.target = target;
        self
    }
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        WebError {
            status: e.status,
            code: e.code,
            message: e.message,
            htmx: false,
            target: "#notice",
        }
    }
}

impl From<sb_store::StoreError> for WebError {
    fn from(e: sb_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "partials/notice.html")]
pub struct Notice<'a> {
    pub kind: &'a str,
    pub code: &'a str,
    pub message: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "web app error");
        }
        let notice = Notice {
            kind: "error",
            code: self.code,
            message: &self.message,
        };
        if self.htmx {
            let body = notice.render().unwrap_or_default();
            let mut resp = axum::response::Html(body).into_response();
            let h = resp.headers_mut();
            h.insert("HX-Retarget", HeaderValue::from_static(self.target));
            h.insert("HX-Reswap", HeaderValue::from_static("innerHTML"));
            return resp;
        }
        let page = ErrorPage {
            status: self.status.as_u16(),
            code: self.code,
            message: &self.message,
        };
        (self.status, page).into_response()
    }
}

pub type WebResult<T> = Result<T, WebError>;

/// After a form post: htmx swaps the fragment; a plain browser (no script) goes back to the page.
pub fn after_post(headers: &HeaderMap, fragment: impl IntoResponse, back: &str) -> Response {
    if is_htmx(headers) {
        fragment.into_response()
    } else {
        Redirect::to(back).into_response()
    }
}

/// Any other `/app/…` address: a page, not the API's JSON 404.
pub async fn not_found() -> WebError {
    ApiError::not_found("page_not_found", "there is no such page").into()
}
