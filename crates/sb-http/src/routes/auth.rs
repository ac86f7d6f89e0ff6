//! Sign-in, sign-out and "who am I", over `sb_app::auth`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use sb_app::auth::{self, SESSION_COOKIE};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal, origin};
use crate::views::{UserView, WorkspaceView};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user: UserView,
    pub workspace: WorkspaceView,
}

/// Signs in with e-mail and password; sets the `sb_session` cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = Me),
    (status = 401, description = "`invalid_credentials`", body = ErrorBody),
    (status = 429, description = "`rate_limited` (per account and per IP)", body = ErrorBody)
))]
async fn login(
    State(state): State<AppState>,
    parts: Parts,
    jar: CookieJar,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<(CookieJar, axum::Json<Me>)> {
    let signed = auth::sign_in(&state.app, &origin(&parts), &body.email, body.password).await?;
    Ok((
        jar.add(state.app.sessions.cookie(signed.secret)),
        axum::Json(Me {
            user: UserView::from(&signed.user),
            workspace: WorkspaceView::from(&signed.workspace),
        }),
    ))
}

/// Ends the session of the cookie sent.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses(
    (status = 204),
    (status = 401, description = "`authentication_required`: no session cookie", body = ErrorBody)
), security(("session" = [])))]
async fn logout(State(state): State<AppState>, jar: CookieJar) -> ApiResult<(CookieJar, StatusCode)> {
    let Some(session) = jar.get(SESSION_COOKIE) else {
        return Err(crate::error::ApiError::unauthenticated());
    };
    auth::sign_out(&state.app, Some(session.value())).await?;
    Ok((jar.remove(state.app.sessions.removal()), StatusCode::NO_CONTENT))
}

/// The caller and their workspace.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", responses(
    (status = 200, body = Me),
    (status = 401, description = "`authentication_required`, `invalid_token`, `session_expired`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn me(State(state): State<AppState>, principal: Principal) -> ApiResult<axum::Json<Me>> {
    let workspace = auth::me(&state.app, &principal).await?;
    Ok(axum::Json(Me {
        user: UserView::from(&principal.user),
        workspace: WorkspaceView::from(&workspace),
    }))
}
