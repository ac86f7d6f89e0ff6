//! What every page shares: the signed-in user (a session of `sb_app::auth`), the page frame, and how
//! errors and form posts answer a browser with or without htmx.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::FromRef;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use sb_app::auth::{self, Origin, SESSION_COOKIE};
use sb_app::{App, AppError, Principal, Via};
use sb_core::Permission;

use crate::assets;
use crate::pages::PageAccess;

/// A signed-in user of the web app. Only the session cookie counts (API tokens are for the API),
/// and writes pass the same same-origin check as cookie-authenticated API writes.
pub struct Signed(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Signed
where
    App: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let htmx = is_htmx(&parts.headers);
        let app = App::from_ref(state);
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Err(to_login(htmx));
        };
        let write = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if write && !auth::same_origin(&parts.headers, &app.base_url) {
            return Err(WebError::from(auth::cross_origin_refused())
                .with_htmx(htmx)
                .into_response());
        }
        match auth::authenticate_session(&app, cookie.value(), origin(parts)).await {
            Ok(p) if matches!(p.via, Via::Session) => {
                admit(parts, &p).map_err(|e| e.with_htmx(htmx).into_response())?;
                Ok(Signed(p))
            }
            Ok(_) => Err(to_login(htmx)),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(to_login(htmx)),
            Err(e) => Err(WebError::from(e).with_htmx(htmx).into_response()),
        }
    }
}

/// The page's entry in `pages::PAGES` for this principal: a page that is not listed, or whose
/// permission the role lacks, is refused before it reads anything.
fn admit(parts: &Parts, principal: &Principal) -> Result<(), WebError> {
    let path = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    match crate::pages::of(parts.method.as_str(), &path) {
        Some(PageAccess::Public | PageAccess::SignedIn) => Ok(()),
        Some(PageAccess::Needs(permission)) => principal.require(permission).map_err(WebError::from),
        None => Err(AppError::forbidden("this page has no entry in the web app's permission table").into()),
    }
}

/// Where a request comes from, for the audit log and the sign-in limits.
pub fn origin(parts: &Parts) -> Origin {
    Origin {
        ip: parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        request_id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
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
            webhooks: self.may(Permission::ManageWebhooks),
            journeys: self.may(Permission::ManageCampaigns),
            live: self.may(Permission::ReadConversations),
        }
    }
}

/// The frame around every page: who is signed in and which sections their role may open.
pub struct Chrome {
    pub user_name: String,
    pub role: String,
    /// `inbox`, `store`, `stock`, `lookup`, `canned`, `webhooks`: the section the page belongs to.
    pub section: &'static str,
    pub inbox: bool,
    pub store: bool,
    pub stock: bool,
    pub lookup: bool,
    /// The workspace's canned responses (everyone who replies manages them).
    pub canned: bool,
    /// The workspace's outgoing webhooks (admins).
    pub webhooks: bool,
    /// Journeys (marketers and admins).
    pub journeys: bool,
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

impl From<AppError> for WebError {
    fn from(e: AppError) -> Self {
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
        AppError::from(e).into()
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
    AppError::not_found("page_not_found", "there is no such page").into()
}

/// What the agents' pages may load: only this server's scripts, styles (htmx adds an inline
/// indicator style), images and connections, and no page may frame them. The demo shop, which
/// loads the chat widget, is only kept out of frames.
const APP_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; \
    form-action 'self'; frame-ancestors 'none'";

pub async fn security_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let app = request.uri().path().starts_with("/app");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    let csp = if app { APP_CSP } else { "frame-ancestors 'none'" };
    h.insert("content-security-policy", HeaderValue::from_static(csp));
    response
}

/// A form post (`application/x-www-form-urlencoded`), refused when a field holds a NUL
/// character: no stored text may hold one.
pub struct Form<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Form<T> {
    type Rejection = WebError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let htmx = is_htmx(req.headers());
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| WebError::from(AppError::invalid("invalid_body", e.body_text())).with_htmx(htmx))?;
        let decoded: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        if decoded.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
            return Err(WebError::from(AppError::unprocessable(
                "invalid_text",
                "text may not contain NUL characters",
            ))
            .with_htmx(htmx));
        }
        serde_urlencoded::from_bytes(&body).map(Form).map_err(|e| {
            WebError::from(AppError::unprocessable(
                "invalid_form",
                format!("the form is incomplete: {e}"),
            ))
            .with_htmx(htmx)
        })
    }
}
