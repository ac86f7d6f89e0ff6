//! The HTTP layer: axum routes for the agents' and admin API, health and metrics, auth
//! (sessions and API tokens), error mapping and the OpenAPI document. Only this crate (and
//! the UI crate) knows about HTTP. Handlers only extract input, call their use case in
//! `sb-app` and render JSON.

/// The API's errors are the use cases' own (`sb_app::AppError`), under the names the routes use.
pub mod error {
    pub use sb_app::error::{AppError as ApiError, AppResult as ApiResult, ErrorBody, ErrorDetail};
}
pub mod access;
pub mod extract;
mod idempotency;
mod metrics_layer;
pub(crate) mod routes;
pub(crate) use sb_app::views;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;
use sb_app::App;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, ApiResult};
pub use sb_app::limits::LoginLimits;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// A request that takes longer is answered 503 `request_timeout`.
    pub request_timeout: Duration,
    pub session_ttl: Duration,
    /// Set `Secure` on cookies (when served over HTTPS).
    pub secure_cookies: bool,
    pub login_limits: LoginLimits,
    /// `/metrics` answers only `Authorization: Bearer <this>`; unset, it is off.
    pub metrics_token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            login_limits: LoginLimits::default(),
            metrics_token: None,
        }
    }
}

/// Everything a handler can reach: the application (its services, through `Deref`) and what
/// only HTTP needs. Cloned for every request (axum's `State`), so it is one shared pointer:
/// cloning the fields one by one cost a few percent of ingest.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The web app's pages run on the application alone.
impl FromRef<AppState> for App {
    fn from_ref(state: &AppState) -> App {
        state.app.clone()
    }
}

pub struct SharedState {
    /// The use cases' services; every route's work goes through `sb_app`.
    pub app: App,
    pub config: Arc<HttpConfig>,
    pub metrics: PrometheusHandle,
    visitor_limiter: Arc<routes::widget::VisitorLimiter>,
    session_limiter: Arc<routes::widget::SessionLimiter>,
    storefront_limiter: Arc<routes::storefront::StorefrontLimiter>,
    /// Flipped when the server starts draining: long-lived streams end so the drain can finish.
    draining: Arc<tokio::sync::watch::Sender<bool>>,
}

impl std::ops::Deref for SharedState {
    type Target = sb_app::Services;

    fn deref(&self) -> &sb_app::Services {
        &self.app
    }
}

impl AppState {
    pub fn new(app: App, config: HttpConfig) -> Self {
        AppState(Arc::new(SharedState {
            app,
            config: Arc::new(config),
            metrics: metrics_layer::handle(),
            visitor_limiter: Arc::default(),
            session_limiter: Arc::default(),
            storefront_limiter: Arc::default(),
            draining: Arc::new(tokio::sync::watch::channel(false).0),
        }))
    }

    /// Ends every open event stream; call when the server starts draining.
    pub fn begin_drain(&self) {
        self.draining.send_replace(true);
    }

    pub(crate) fn draining(&self) -> tokio::sync::watch::Receiver<bool> {
        self.draining.subscribe()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard API", description = "Omnichannel inbox, customer data and commerce. Errors are `{\"error\":{\"code\",\"message\"}}` with stable codes."),
    components(schemas(error::ErrorBody)),
    modifiers(&SecurityAddon)
)]
struct ApiDoc;

struct SecurityAddon;
impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "visitor",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a website visitor's token from POST /widget/v1/sessions"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("the configured metrics_token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(extract::SESSION_COOKIE))),
        );
    }
}

/// The API routes and their OpenAPI document.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::router())
        .split_for_parts()
}

/// The whole HTTP application with its middleware.
pub fn app(state: AppState) -> Router {
    app_with(state, Router::new())
}

/// The application with more routes (the web app's pages) under the same middleware: request
/// ids, tracing, metrics, the request timeout and the body limit.
pub fn app_with(state: AppState, pages: Router<AppState>) -> Router {
    let (api, openapi) = api();
    // axum's own rejections (a query string or path that does not parse) are plain text; the
    // API answers every error in its JSON shape.
    let api = api
        .layer(axum::middleware::map_response(errors_as_json))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent,
        ))
        .merge(pages);
    // Served as the bytes serialised once: the document's own structure is a few MB of heap.
    let mut openapi = serde_json::to_value(&openapi).expect("the OpenAPI document serialises");
    access::annotate(&mut openapi);
    let openapi = bytes::Bytes::from(serde_json::to_vec(&openapi).expect("the OpenAPI document serialises"));
    let x_request_id = HeaderName::from_static("x-request-id");
    let timeout = state.config.request_timeout;
    api.route(
        "/api/openapi.json",
        axum::routing::get(move || {
            let doc = openapi.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], doc) }
        }),
    )
    .fallback(|| async { ApiError::not_found("route_not_found", "no such route") })
    .method_not_allowed_fallback(|| async {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not accept that method",
        )
    })
    .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
    .layer(axum::middleware::from_fn(move |req, next| {
        metrics_layer::track(req, next, timeout)
    }))
    .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
    }))
    .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
    .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
    .with_state(state)
}

/// A plain-text error from an extractor, as `{"error":{"code","message"}}`.
async fn errors_as_json(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() && plain) {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "invalid_parameters",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        _ => "invalid_request",
    };
    ApiError::new(status, code, text).into_response()
}

/// Answers a request that took too long (used by the timeout middleware).
pub(crate) fn timed_out() -> axum::response::Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "request_timeout",
        "the request took too long",
    )
    .into_response()
}
