//! Users of a workspace: invite, change role, disable.

use crate::error::{AppError, AppResult};
use crate::views::{Page, PageQuery, UserView, page};
use crate::{App, Principal};
use http::StatusCode;
use sb_core::{Permission, Role, credentials};
use sb_store::audit::{self, Change};
use sb_store::objects::ObjectKind;
use sb_store::users::{self, NewUser};
use serde::Deserialize;
use utoipa::ToSchema;

pub const MIN_PASSWORD_LEN: usize = 10;

pub fn check_password(password: &str) -> Result<(), AppError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AppError::unprocessable(
            "weak_password",
            format!("passwords need at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

/// Checks the password rule, then hashes it on a blocking thread (argon2 is slow on purpose).
pub async fn new_password_hash(password: &str) -> Result<String, AppError> {
    check_password(password)?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || credentials::hash_password(&password))
        .await
        .map_err(AppError::internal)
}

/// E-mail addresses are unique across the instance (they are the sign-in name).
pub fn email_taken(e: sb_store::StoreError) -> AppError {
    match e {
        sb_store::StoreError::Conflict(_) => AppError::new(
            StatusCode::CONFLICT,
            "email_taken",
            "a user with this e-mail already exists",
        ),
        other => other.into(),
    }
}

pub fn parse_role(role: &str) -> Result<Role, AppError> {
    Role::parse(role).ok_or_else(|| {
        AppError::unprocessable(
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
    #[schema(value_type = crate::views::names::Role)]
    pub role: String,
    /// At least 10 characters.
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateUser {
    #[schema(value_type = Option<crate::views::names::Role>)]
    pub role: Option<String>,
    pub disabled: Option<bool>,
}
/// Users of the caller's workspace.
pub async fn list_users(app: &App, principal: &Principal, q: PageQuery) -> AppResult<Page<UserView>> {
    principal.require(Permission::ManageUsers)?;
    let (ws, after, limit) = (principal.workspace_id().to_owned(), q.after()?, q.limit()?);
    let rows = app
        .store
        .db
        .read(move |c| users::list(c, &ws, after.as_deref(), limit))
        .await?;
    Ok(page(&rows, limit, |u| &u.id))
}
/// Adds a user to the caller's workspace.
pub async fn create_user(app: &App, principal: &Principal, body: CreateUser) -> AppResult<UserView> {
    principal.require(Permission::ManageUsers)?;
    let role = parse_role(&body.role)?;
    let hash = new_password_hash(&body.password).await?;
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let user = app
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
    Ok(UserView::from(&user))
}
/// One user of the caller's workspace.
pub async fn get_user(app: &App, principal: &Principal, id: String) -> AppResult<UserView> {
    if id != principal.user.id {
        principal.require(Permission::ManageUsers)?;
    }
    let (ws, uid) = (principal.workspace_id().to_owned(), id.clone());
    match app.store.db.read(move |c| users::get(c, &ws, &uid)).await? {
        Some(u) => Ok(UserView::from(&u)),
        None => Err(crate::access::not_found(app, principal, ObjectKind::User, &id, "user_not_found").await),
    }
}
/// Changes a user's role or disables the account (which ends its sessions and tokens).
pub async fn update_user(app: &App, principal: &Principal, id: String, body: UpdateUser) -> AppResult<UserView> {
    principal.require(Permission::ManageUsers)?;
    if id == principal.user.id {
        return Err(AppError::unprocessable(
            "cannot_change_own_account",
            "ask another admin to change your own role or status",
        ));
    }
    let role = body.role.as_deref().map(parse_role).transpose()?;
    let (ws, uid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.clone(),
        principal.actor(),
        app.store.now(),
    );
    let updated = app
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
                if disabled {
                    // Disabling ends what the user had open: re-enabling must not bring it back.
                    sb_store::sessions::delete_for_user(c, &ws, &uid)?;
                    sb_store::tokens::revoke_for_user(c, &ws, &uid, now)?;
                }
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
        Some(u) => Ok(UserView::from(&u)),
        None => Err(crate::access::not_found(app, principal, ObjectKind::User, &id, "user_not_found").await),
    }
}
