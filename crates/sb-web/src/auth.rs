//! Sign-in and sign-out, on the server-side sessions of `sb-http` (same rate limits and audit).

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use sb_core::Permission;
use sb_http::AppState;
use sb_http::shared::{same_origin, session_cookie, sign_in, sign_out};
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

pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    // Login CSRF: only our own pages may sign someone in.
    if !same_origin(&parts) {
        return WebError::from(sb_http::ApiError::forbidden("cross-origin sign-in refused").with_code("csrf_rejected"))
            .into_response();
    }
    match sign_in(&state, &parts, &form.email, form.password).await {
        Ok((secret, user, _)) => {
            let landing = landing_for(user.role());
            (jar.add(session_cookie(&state, secret)), Redirect::to(landing)).into_response()
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
    } else {
        "/app/lookup"
    }
}

pub async fn home(signed: Signed) -> Redirect {
    Redirect::to(landing_for(signed.0.user.role()))
}

pub async fn logout(State(state): State<AppState>, _signed: Signed, jar: CookieJar) -> Response {
    match sign_out(&state, jar).await {
        Ok(jar) => (jar, Redirect::to("/app/login")).into_response(),
        Err(e) => WebError::from(e).into_response(),
    }
}
