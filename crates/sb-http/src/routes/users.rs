use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sb_core::{Permission, Role, credentials};
use sb_store::audit::{self, Change};
use sb_store::objects::ObjectKind;
use sb_store::users::{self, NewUser};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use crate::views::{Page, PageQuery, UserView, page};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
}

pub const MIN_PASSWORD_LEN: usize = 10;

pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::unprocessable(
            "weak_password",
            format!("passwords need at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

/// Checks the password rule, then hashes it on a blocking thread (argon2 is slow on purpose).
pub async fn new_password_hash(password: &str) -> Result<String, ApiError> {
    check_password(password)?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || credentials::hash_password(&password))
        .await
        .map_err(ApiError::internal)
}

/// E-mail addresses are unique across the instance (they are the sign-in name).
pub fn email_taken(e: sb_store::StoreError) -> ApiError {
    match e {
        sb_store::StoreError::Conflict(_) => ApiError::new(
            StatusCode::CONFLICT,
            "email_taken",
            "a user with this e-mail already exists",
        ),
        other => other.into(),
    }
}

pub fn parse_role(role: &str) -> Result<Role, ApiError> {
    Role::parse(role).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_role",
            "role must be one of admin, agent, marketer, store_staff",
        )
    })
}

#[derive(Deserialize, ToSchema)]
pub struct CreateUser {
    pub email: String,
    pub name: String,
    /// `admin`, `agent`, `marketer` or `store_staff`.
    pub role: String,
    /// At least 10 characters.
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateUser {
    pub role: Option<String>,
    pub disabled: Option<bool>,
}

/// Users of the caller's workspace.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery), responses(
    (status = 200, body = inline(Page<UserView>)),
    (status = 403, description = "`permission_denied`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<UserView>>> {
    principal.require(Permission::ManageUsers)?;
    let (ws, after, limit) = (principal.workspace_id().to_owned(), q.after()?, q.limit());
    let rows = state
        .store
        .db
        .read(move |c| users::list(c, &ws, after.as_deref(), limit))
        .await?;
    Ok(axum::Json(page(&rows, limit, |u| &u.id)))
}

/// Adds a user to the caller's workspace.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser, responses(
    (status = 201, body = UserView),
    (status = 409, description = "`email_taken`", body = ErrorBody),
    (status = 422, description = "`invalid_role`, `weak_password`, `invalid_request`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, axum::Json<UserView>)> {
    principal.require(Permission::ManageUsers)?;
    let role = parse_role(&body.role)?;
    let hash = new_password_hash(&body.password).await?;
    let (ws, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let user = state
        .store
        .db
        .write(move |c| {
            let new = NewUser {
                workspace_id: &ws,
                email: &body.email,
                name: &body.name,
                role,
                password_hash: &hash,
                is_owner: false,
            };
            let user = users::create(c, &new, now)?;
            let change = Change {
                action: "user.created",
                object_kind: "user",
                object_id: Some(&user.id),
                before: None,
                after: Some(serde_json::to_value(UserView::from(&user)).unwrap_or_default()),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, sb_store::StoreError>(user)
        })
        .await
        .map_err(email_taken)?;
    Ok((StatusCode::CREATED, axum::Json(UserView::from(&user))))
}

/// One user of the caller's workspace.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path)), responses(
    (status = 200, body = UserView),
    (status = 404, description = "`user_not_found` (also for another workspace's user)", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<UserView>> {
    if id != principal.user.id {
        principal.require(Permission::ManageUsers)?;
    }
    let (ws, uid) = (principal.workspace_id().to_owned(), id.clone());
    match state.store.db.read(move |c| users::get(c, &ws, &uid)).await? {
        Some(u) => Ok(axum::Json(UserView::from(&u))),
        None => Err(super::not_found(&state, &principal, ObjectKind::User, &id, "user_not_found").await),
    }
}

/// Changes a user's role or disables the account (which ends its sessions and tokens).
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path)), request_body = UpdateUser, responses(
    (status = 200, body = UserView),
    (status = 404, description = "`user_not_found`", body = ErrorBody),
    (status = 422, description = "`invalid_role`, `cannot_change_own_account`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn update_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> ApiResult<axum::Json<UserView>> {
    principal.require(Permission::ManageUsers)?;
    if id == principal.user.id {
        return Err(ApiError::unprocessable(
            "cannot_change_own_account",
            "ask another admin to change your own role or status",
        ));
    }
    let role = body.role.as_deref().map(parse_role).transpose()?;
    let (ws, uid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.clone(),
        principal.actor(),
        state.store.now(),
    );
    let updated = state
        .store
        .db
        .write(move |c| {
            let Some(before) = users::get(c, &ws, &uid)? else {
                return Ok(None);
            };
            if let Some(role) = role {
                users::update_role(c, &ws, &uid, role, now)?;
            }
            if let Some(disabled) = body.disabled {
                users::set_disabled(c, &ws, &uid, disabled, now)?;
            }
            let after = users::get(c, &ws, &uid)?.ok_or(sb_store::StoreError::NotFound("user"))?;
            let change = Change {
                action: "user.updated",
                object_kind: "user",
                object_id: Some(&uid),
                before: Some(serde_json::to_value(UserView::from(&before)).unwrap_or_default()),
                after: Some(serde_json::to_value(UserView::from(&after)).unwrap_or_default()),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, sb_store::StoreError>(Some(after))
        })
        .await?;
    match updated {
        Some(u) => Ok(axum::Json(UserView::from(&u))),
        None => Err(super::not_found(&state, &principal, ObjectKind::User, &id, "user_not_found").await),
    }
}
