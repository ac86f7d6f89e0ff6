//! Signing in and out, and who a request's credentials belong to. The JSON API's login and
//! token header and the web app's sign-in form and session cookie all come through here (the
//! cookie's attributes included, so both front ends set the same one).

use std::time::Duration;

use http::{HeaderMap, StatusCode, header};
use sb_core::{Permission, credentials};
use sb_store::audit::{self, Actor, Change};
use sb_store::{sessions, tokens, users, workspaces};

use crate::error::{AppError, AppResult};
use crate::{App, Principal, Via};

/// The name of the session cookie both front ends set.
pub const SESSION_COOKIE: &str = "sb_session";

#[derive(Debug, Clone)]
pub struct SessionPolicy {
    pub ttl: Duration,
    /// Set `Secure` on the session cookie (when served over HTTPS).
    pub secure_cookies: bool,
}

impl SessionPolicy {
    /// The cookie that carries a session's secret: no Max-Age (the browser drops it on close;
    /// the server expires the session after its TTL), not readable by scripts, not sent on
    /// cross-site posts.
    pub fn cookie(&self, secret: String) -> cookie::Cookie<'static> {
        cookie::Cookie::build((SESSION_COOKIE, secret))
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .secure(self.secure_cookies)
            .path("/")
            .build()
    }

    /// What removes the session cookie from the browser.
    pub fn removal(&self) -> cookie::Cookie<'static> {
        cookie::Cookie::build(SESSION_COOKIE).path("/").build()
    }
}

/// Where a request comes from, for the audit log and the rate limits.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

/// A hash to verify against when the account does not exist, so timing does not tell.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| credentials::hash_password("no such account"))
}

/// A session opened by [`sign_in`]: the secret goes in the cookie, only its digest is stored.
pub struct SignedIn {
    pub secret: String,
    pub user: users::User,
    pub workspace: workspaces::Workspace,
}

/// Checks e-mail and password (rate-limited per account and IP, failures audited) and opens a
/// server-side session.
pub async fn sign_in(app: &App, origin: &Origin, email: &str, password: String) -> AppResult<SignedIn> {
    let email = users::normalise_email(email);
    app.login_limiter
        .check(&email, origin.ip.as_deref())
        .map_err(AppError::rate_limited)?;

    let lookup = email.clone();
    let found = app
        .store
        .db
        .read(move |c| users::credentials_by_email(c, &lookup))
        .await?;
    let hash = found
        .as_ref()
        .map_or_else(|| dummy_hash().to_owned(), |(_, h)| h.clone());
    let verified = tokio::task::spawn_blocking(move || credentials::verify_password(&password, &hash))
        .await
        .map_err(AppError::internal)?;
    let now = app.store.now();
    let actor = |user: &users::User| Actor {
        kind: "user",
        id: Some(user.id.clone()),
        ip: origin.ip.clone(),
        request_id: origin.request_id.clone(),
    };
    let user = match found {
        Some((user, _)) if verified && !user.disabled => user,
        other => {
            if let Some((user, _)) = other {
                let (ws, actor) = (user.workspace_id.clone(), actor(&user));
                app.store
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
            return Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong e-mail or password",
            ));
        }
    };
    let secret = credentials::random_secret();
    let digest = credentials::secret_digest(&secret);
    let ttl = app.sessions.ttl.as_millis() as i64;
    let (u, a) = (user.clone(), actor(&user));
    let workspace = app
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
        .ok_or_else(|| AppError::internal("user without workspace"))?;
    Ok(SignedIn {
        secret,
        user,
        workspace,
    })
}

/// Ends the session whose cookie secret this is (nothing when there is none).
pub async fn sign_out(app: &App, session_secret: Option<&str>) -> AppResult<()> {
    if let Some(secret) = session_secret {
        let digest = credentials::secret_digest(secret);
        app.store.db.write(move |c| sessions::delete(c, &digest)).await?;
    }
    Ok(())
}

/// The user of an API token (`Authorization: Bearer …`).
pub async fn authenticate_token(app: &App, token: &str, origin: Origin) -> AppResult<Principal> {
    let now = app.store.now();
    let digest = credentials::secret_digest(token);
    let found = app.store.db.read(move |c| tokens::authenticate(c, &digest)).await?;
    let Some((token_id, last_used, user)) = found else {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the API token is unknown or revoked",
        ));
    };
    // Record use at most once a minute, so reads stay reads.
    if last_used.is_none_or(|t| t < now - 60_000) {
        let (ws, id) = (user.workspace_id.clone(), token_id.clone());
        app.store.db.write(move |c| tokens::touch(c, &ws, &id, now)).await?;
    }
    Ok(Principal {
        user,
        via: Via::Token(token_id),
        ip: origin.ip,
        request_id: origin.request_id,
    })
}

/// The user of a session cookie's secret.
pub async fn authenticate_session(app: &App, secret: &str, origin: Origin) -> AppResult<Principal> {
    let now = app.store.now();
    let digest = credentials::secret_digest(secret);
    let user = app.store.db.read(move |c| sessions::user_for(c, &digest, now)).await?;
    match user {
        Some(user) => Ok(Principal {
            user,
            via: Via::Session,
            ip: origin.ip,
            request_id: origin.request_id,
        }),
        None => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "session_expired",
            "the session has ended; sign in again",
        )),
    }
}

/// The refusal for a cookie-authenticated write from another site.
pub fn cross_origin_refused() -> AppError {
    AppError::forbidden("cross-origin request with a session cookie refused").with_code("csrf_rejected")
}

/// Whether a request carrying a session cookie comes from our own pages. Every
/// cookie-authenticated write, and sign-in, must pass this. A browser says where a request
/// comes from in `Origin` (every cross-site POST), `Sec-Fetch-Site` and `Referer`; each one
/// present must name this server, scheme included: our public URL's origin, or the `Host` the
/// request was sent to under our public URL's scheme. A request with none of the three is not
/// a browser's cross-site request.
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let ours = origin_of(public_url);
    let scheme = public_url.split_once("://").map_or("http", |(s, _)| s);
    let host = header("host").unwrap_or("");
    let is_ours = |origin: &str| {
        origin.eq_ignore_ascii_case(ours)
            || (!host.is_empty() && origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")))
    };
    if let Some(site) = header("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    if let Some(origin) = header(header::ORIGIN.as_str()) {
        return is_ours(origin);
    }
    match header(header::REFERER.as_str()) {
        Some(referer) => is_ours(origin_of(referer)),
        None => true,
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..].find('/').map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// The caller and their workspace.
pub async fn me(app: &App, principal: &Principal) -> AppResult<workspaces::Workspace> {
    principal.require(Permission::ReadOwnAccount)?;
    let ws = principal.workspace_id().to_owned();
    app.store
        .db
        .read(move |c| workspaces::get(c, &ws))
        .await?
        .ok_or_else(|| AppError::internal("user without workspace"))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", "shop.example:8080".parse().unwrap());
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_our_own_pages_write_with_a_session_cookie() {
        let ours = "https://shop.example:8080";
        let ok = |pairs: &[(&'static str, &str)]| super::same_origin(&headers(pairs), ours);
        assert!(ok(&[]), "no browser headers: not a cross-site request");
        assert!(ok(&[("origin", "https://shop.example:8080")]));
        assert!(ok(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://shop.example:8080")
        ]));
        assert!(ok(&[("referer", "https://shop.example:8080/app/inbox")]));
        assert!(!ok(&[("origin", "https://evil.example")]));
        assert!(!ok(&[("origin", "http://shop.example:8080")]), "the scheme counts");
        assert!(
            !ok(&[("referer", "https://evil.example/page")]),
            "a cross-site Referer without Origin"
        );
        assert!(
            !ok(&[("sec-fetch-site", "cross-site")]),
            "Sec-Fetch-Site without Origin"
        );
        assert!(
            !ok(&[("sec-fetch-site", "same-site")]),
            "a sibling subdomain is another origin"
        );
        assert!(!ok(&[("origin", "null")]));
    }
}
