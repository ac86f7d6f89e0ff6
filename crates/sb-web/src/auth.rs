//! Sign-in and sign-out, on the server-side sessions of `sb_app::auth` (the JSON login's rate
//! limits and audit).

use crate::web::Form;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use sb_app::App;
use sb_app::auth::{self, SESSION_COOKIE};
use sb_core::Permission;
use serde::Deserialize;

use crate::web::{Signed, WebError};

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    email: String,
    error: Option<String>,
    css: String,
}

impl LoginPage {
    fn new(email: String, error: Option<String>) -> Self {
        LoginPage {
            email,
            error,
            css: crate::assets::url("app.css"),
        }
    }
}

pub async fn login_page() -> impl IntoResponse {
    LoginPage::new(String::new(), None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
}

pub async fn login(State(state): State<App>, parts: Parts, jar: CookieJar, Form(form): Form<LoginForm>) -> Response {
    // Login CSRF: only our own pages may sign someone in.
    if !auth::same_origin(&parts.headers, &state.base_url) {
        return WebError::from(sb_app::AppError::forbidden("cross-origin sign-in refused").with_code("csrf_rejected"))
            .into_response();
    }
    match auth::sign_in(&state, &crate::web::origin(&parts), &form.email, form.password).await {
        Ok(signed) => {
            let landing = landing_for(signed.user.role());
            (jar.add(state.sessions.cookie(signed.secret)), Redirect::to(landing)).into_response()
        }
        Err(e) => {
            let status = e.status;
            let page = LoginPage::new(form.email, Some(e.message));
            let mut resp = page.into_response();
            *resp.status_mut() = if status == StatusCode::TOO_MANY_REQUESTS {
                status
            } else {
                StatusCode::UNAUTHORIZED
            };
            resp
        }
    }
}

/// Where a role starts: agents in the inbox, store staff at the pickup counter.
fn landing_for(role: sb_core::Role) -> &'static str {
    if role.allows(Permission::ReadConversations) {
        "/app/inbox"
    } else if role.allows(Permission::ManageOrders) {
        "/app/store"
    } else if role.allows(Permission::ManageCampaigns) {
        "/app/journeys"
    } else {
        "/app/lookup"
    }
}

pub async fn home(signed: Signed) -> Redirect {
    Redirect::to(landing_for(signed.0.user.role()))
}

pub async fn logout(State(state): State<App>, _signed: Signed, jar: CookieJar) -> Response {
    match auth::sign_out(&state, jar.get(SESSION_COOKIE).map(|c| c.value())).await {
        Ok(()) => (jar.remove(state.sessions.removal()), Redirect::to("/app/login")).into_response(),
        Err(e) => WebError::from(e).into_response(),
    }
}
