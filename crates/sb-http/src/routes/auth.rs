use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use sb_core::{Permission, credentials};
use sb_store::audit::{self, Actor, Change};
use sb_store::{sessions, users, workspaces};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal, SESSION_COOKIE, client_ip, request_id};
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

/// A hash to verify against when the account does not exist, so timing does not tell.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| credentials::hash_password("no such account"))
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
    let (secret, user, workspace) = sign_in(&state, &parts, &body.email, body.password).await?;
    Ok((
        jar.add(session_cookie(&state, secret)),
        axum::Json(Me {
            user: UserView::from(&user),
            workspace: WorkspaceView::from(&workspace),
        }),
    ))
}

/// Checks e-mail and password (rate-limited per account and IP, failures audited) and opens a
/// server-side session; returns the session secret for the cookie. The JSON login and the web
/// app's sign-in form both come through here.
pub async fn sign_in(
    state: &AppState,
    parts: &Parts,
    email: &str,
    password: String,
) -> ApiResult<(String, users::User, workspaces::Workspace)> {
    let ip = client_ip(parts);
    let email = users::normalise_email(email);
    state
        .limiter
        .check(&email, ip.as_deref())
        .map_err(ApiError::rate_limited)?;

    let lookup = email.clone();
    let found = state
        .store
        .db
        .read(move |c| users::credentials_by_email(c, &lookup))
        .await?;
    let hash = found
        .as_ref()
        .map_or_else(|| dummy_hash().to_owned(), |(_, h)| h.clone());
    let verified = tokio::task::spawn_blocking(move || credentials::verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    let now = state.store.now();
    let actor = |user: &users::User| Actor {
        kind: "user",
        id: Some(user.id.clone()),
        ip: ip.clone(),
        request_id: request_id(parts),
    };
    let user = match found {
        Some((user, _)) if verified && !user.disabled => user,
        other => {
            if let Some((user, _)) = other {
                let (ws, actor) = (user.workspace_id.clone(), actor(&user));
                state
                    .store
                    .db
                    .write(move |c| {
                        let change = Change {
                            action: "auth.login_failed",
                            object_kind: "user",
                            object_id: actor.id.as_deref(),
                            before: None,
                            after: None,
                        };
                        audit::record(c, &ws, &actor, &change, now)
                    })
                    .await?;
            }
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong e-mail or password",
            ));
        }
    };
    let secret = credentials::random_secret();
    let digest = credentials::secret_digest(&secret);
    let ttl = state.config.session_ttl.as_millis() as i64;
    let (u, a) = (user.clone(), actor(&user));
    let workspace = state
        .store
        .db
        .write(move |c| {
            sessions::create(c, &digest, &u, now, ttl)?;
            let change = Change {
                action: "auth.login",
                object_kind: "user",
                object_id: Some(&u.id),
                before: None,
                after: None,
            };
            audit::record(c, &u.workspace_id, &a, &change, now)?;
            workspaces::get(c, &u.workspace_id)
        })
        .await?
        .ok_or_else(|| ApiError::internal("user without workspace"))?;
    Ok((secret, user, workspace))
}

/// The session cookie for a secret from `sign_in`.
pub fn session_cookie(state: &AppState, secret: String) -> Cookie<'static> {
    // A session cookie (no Max-Age): the browser drops it on close, the server expires it after the TTL.
    Cookie::build((SESSION_COOKIE, secret))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.secure_cookies)
        .path("/")
        .build()
}

/// Ends the session of the cookie sent (if any) and removes the cookie.
pub async fn sign_out(state: &AppState, jar: CookieJar) -> ApiResult<CookieJar> {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        let digest = credentials::secret_digest(cookie.value());
        state.store.db.write(move |c| sessions::delete(c, &digest)).await?;
    }
    Ok(jar.remove(Cookie::build(SESSION_COOKIE).path("/")))
}

/// Ends the session of the cookie sent.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204)), security(("session" = [])))]
async fn logout(State(state): State<AppState>, jar: CookieJar) -> ApiResult<(CookieJar, StatusCode)> {
    Ok((sign_out(&state, jar).await?, StatusCode::NO_CONTENT))
}

/// The caller and their workspace.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", responses(
    (status = 200, body = Me),
    (status = 401, description = "`authentication_required`, `invalid_token`, `session_expired`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn me(State(state): State<AppState>, principal: Principal) -> ApiResult<axum::Json<Me>> {
    principal.require(Permission::ReadOwnAccount)?;
    let ws = principal.workspace_id().to_owned();
    let workspace = state
        .store
        .db
        .read(move |c| workspaces::get(c, &ws))
        .await?
        .ok_or_else(|| ApiError::internal("user without workspace"))?;
    Ok(axum::Json(Me {
        user: UserView::from(&principal.user),
        workspace: WorkspaceView::from(&workspace),
    }))
}
