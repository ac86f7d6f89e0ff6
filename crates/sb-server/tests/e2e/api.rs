use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestServer, code, session_cookie};

#[tokio::test]
async fn health_readiness_metrics_and_openapi_document() {
    let s = TestServer::start().await;
    let (status, body) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, body) = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    let resp = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .expect("request");
    assert!(
        resp.headers().contains_key("x-request-id"),
        "every response carries a request id"
    );
    // /metrics is off without a metrics token (see `metrics_need_the_configured_token`).
    let (status, off) = s.get("/metrics", "some-token").await;
    assert_eq!(
        (status, crate::harness::code(&off)),
        (StatusCode::NOT_FOUND, "metrics_disabled")
    );
    let (status, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/auth/login",
        "/api/v1/me",
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/jobs",
        "/api/v1/jobs/{id}/retry",
        "/api/v1/workspaces",
        "/api/v1/audit",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI documents {path}");
    }
    s.server.shutdown().await;
}

#[tokio::test]
async fn metrics_need_the_configured_token() {
    let s = TestServer::start_with(|c| c.http.metrics_token = Some("scrape-me-please-0123".into())).await;
    let (status, refused) = s.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(
        (status, crate::harness::code(&refused)),
        (StatusCode::UNAUTHORIZED, "authentication_required")
    );
    let (status, _) = s.get("/metrics", &s.admin_token).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a user's API token is not the metrics token"
    );
    let (status, metrics) = s.get("/metrics", "scrape-me-please-0123").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("switchboard_http_requests_total")),
        "{metrics}"
    );
    s.server.shutdown().await;
}

/// Public routes; webhooks authenticate by the channel's signature instead (tested in `inbox`),
/// Segment calls by their write key (tested in `cdp`).
const PUBLIC: [&str; 10] = [
    "/v1/{call}",
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/auth/login",
    "/api/v1/auth/logout",
    "/hooks/{channel}/{account_id}",
    "/widget/v1/sessions",
    "/storefront/v1/{website_token}/availability",
    "/storefront/v1/{website_token}/availability/events",
];

/// Walks the OpenAPI document: every route not meant to be public refuses an anonymous caller.
#[tokio::test]
async fn every_documented_route_requires_authentication() {
    let s = TestServer::start().await;
    let (_, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        if PUBLIC.contains(&path.as_str()) {
            continue;
        }
        let concrete = path.replace("{id}", &sb_core::new_id());
        for method in item.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
            let (status, resp) = s.call(method.clone(), &concrete, None, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {resp}");
            assert_eq!(code(&resp), "authentication_required", "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 25, "checked {checked} routes");
    s.server.shutdown().await;
}

#[tokio::test]
async fn roles_limit_what_each_user_may_do() {
    let s = TestServer::start().await;
    let (email, password) = s.demo_user("store_staff");
    let staff = s.token_for(&email, &password).await;
    for path in ["/api/v1/users", "/api/v1/audit", "/api/v1/jobs"] {
        let (status, body) = s.get(path, &staff).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "permission_denied"),
            "{path}"
        );
    }
    let (status, body) = s
        .post(
            "/api/v1/users",
            &staff,
            json!({"email": "x@y.z", "name": "X", "role": "admin", "password": "0123456789ab"}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "permission_denied"));
    let (status, me) = s.get("/api/v1/me", &staff).await;
    assert_eq!(
        (status, me["user"]["role"].as_str()),
        (StatusCode::OK, Some("store_staff"))
    );
    // An admin who is not the instance owner cannot create workspaces.
    let (status, _) = s
        .post(
            "/api/v1/users",
            &s.admin_token,
            json!({"email": "second@demo.test", "name": "Second", "role": "admin", "password": "0123456789ab"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let second = s.token_for("second@demo.test", "0123456789ab").await;
    let (status, body) = s
        .post(
            "/api/v1/workspaces",
            &second,
            json!({"name": "B", "admin_email": "b@b.test", "admin_name": "B", "admin_password": "0123456789ab"}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "permission_denied"));
    s.server.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_401_and_audited() {
    let s = TestServer::start().await;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": s.admin_email, "password": "not the password"})),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "nobody@nowhere.test", "password": "whatever"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials"),
        "unknown accounts look the same"
    );
    let (_, audit) = s.get("/api/v1/audit?action=auth.login_failed", &s.admin_token).await;
    let items = audit["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["ip"].as_str(), Some("127.0.0.1"));
    let (status, body) = s
        .call(Method::GET, "/api/v1/me", Some("sbt_not_a_real_token"), None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_token"));
    s.server.shutdown().await;
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited_per_account() {
    let s = TestServer::start_with(|c| c.http.login_limits.per_account_per_minute = 3).await;
    for _ in 0..3 {
        let (status, _) = s
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": s.admin_email, "password": "wrong password"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let resp = s
        .client
        .post(format!("{}/api/v1/auth/login", s.base))
        .json(&json!({"email": s.admin_email, "password": s.admin_password}))
        .send()
        .await
        .expect("request");
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(resp.headers().contains_key("retry-after"));
    // Another account is not affected.
    let (email, password) = s.demo_user("agent");
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_token_of_workspace_a_gets_404_for_workspace_b_objects_and_the_attempt_is_audited() {
    let s = TestServer::start().await;
    let (status, created) = s
        .post(
            "/api/v1/workspaces",
            &s.admin_token,
            json!({"name": "Other Shop", "admin_email": "owner@other.test", "admin_name": "Olive", "admin_password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let b_admin_id = created["admin"]["id"].as_str().expect("admin id").to_owned();
    let b_token = s.token_for("owner@other.test", "correct horse battery").await;
    let (_, b_tokens) = s.get("/api/v1/tokens", &b_token).await;
    let b_token_id = b_tokens["items"][0]["id"].as_str().expect("token id").to_owned();

    let (status, body) = s.get(&format!("/api/v1/users/{b_admin_id}"), &s.admin_token).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "user_not_found"));
    let (status, body) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{b_token_id}"),
            Some(&s.admin_token),
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "token_not_found"));
    let (status, body) = s
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{b_admin_id}"),
            Some(&s.admin_token),
            Some(json!({"role": "agent"})),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "user_not_found"));

    // Nothing changed in B, and B cannot see A's audit log either.
    let (status, me) = s.get("/api/v1/me", &b_token).await;
    assert_eq!((status, me["user"]["role"].as_str()), (StatusCode::OK, Some("admin")));
    let (_, audit) = s
        .get("/api/v1/audit?action=access.cross_workspace_denied", &s.admin_token)
        .await;
    let denied: Vec<&Value> = audit["items"].as_array().expect("items").iter().collect();
    assert_eq!(denied.len(), 3, "{audit}");
    assert!(
        denied
            .iter()
            .any(|e| e["object_id"].as_str() == Some(b_admin_id.as_str()) && e["object_kind"] == "user")
    );
    assert!(
        denied
            .iter()
            .any(|e| e["object_id"].as_str() == Some(b_token_id.as_str()) && e["object_kind"] == "api_token")
    );
    let (_, b_audit) = s
        .get("/api/v1/audit?action=access.cross_workspace_denied", &b_token)
        .await;
    assert_eq!(b_audit["items"].as_array().map(Vec::len), Some(0));
    // An unknown id is a plain 404 and is not audited as cross-workspace.
    let (status, _) = s
        .get(&format!("/api/v1/users/{}", sb_core::new_id()), &s.admin_token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, audit) = s
        .get("/api/v1/audit?action=access.cross_workspace_denied", &s.admin_token)
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(3));
    s.server.shutdown().await;
}

#[tokio::test]
async fn api_tokens_are_shown_once_stored_hashed_and_revocable() {
    let s = TestServer::start().await;
    let (status, created) = s
        .post("/api/v1/tokens", &s.admin_token, json!({"name": "shop backend"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with("sbt_"));
    let (_, list) = s.get("/api/v1/tokens", &s.admin_token).await;
    assert!(!list.to_string().contains(&secret), "listing never shows a secret");
    let stored: Vec<String> = s
        .server
        .store
        .db
        .read(|c| {
            c.query(&sb_sql::Stmt::new("SELECT token_hash FROM api_tokens"))?
                .iter()
                .map(|r| r.get::<String>("token_hash"))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .expect("read");
    assert!(
        stored.contains(&sb_core::credentials::secret_digest(&secret)),
        "stored as its SHA-256"
    );
    assert!(!stored.contains(&secret));
    let (status, _) = s.get("/api/v1/me", &secret).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&s.admin_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.get("/api/v1/me", &secret).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_token"));
    let (_, audit) = s.get("/api/v1/audit?action=api_token.revoked", &s.admin_token).await;
    assert_eq!(audit["items"][0]["object_id"].as_str(), Some(id.as_str()));
    s.server.shutdown().await;
}

#[tokio::test]
async fn session_cookie_sign_in_me_csrf_and_sign_out() {
    let s = TestServer::start().await;
    let resp = s
        .client
        .post(format!("{}/api/v1/auth/login", s.base))
        .json(&json!({"email": s.admin_email.to_uppercase(), "password": s.admin_password}))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), StatusCode::OK, "e-mail compares case-insensitively");
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let cookie = session_cookie(&resp).expect("cookie");
    let me = s
        .client
        .get(format!("{}/api/v1/me", s.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), StatusCode::OK);
    let cross = s
        .client
        .post(format!("{}/api/v1/tokens", s.base))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .json(&json!({"name": "stolen"}))
        .send()
        .await
        .expect("post");
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let body: Value = cross.json().await.expect("json");
    assert_eq!(code(&body), "csrf_rejected");
    let out = s
        .client
        .post(format!("{}/api/v1/auth/logout", s.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let me = s
        .client
        .get(format!("{}/api/v1/me", s.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    s.server.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_stable_error_code_and_changes_nothing() {
    let s = TestServer::start().await;
    let users_before = s.get("/api/v1/users", &s.admin_token).await.1["items"]
        .as_array()
        .map(Vec::len);
    let send = |body: Vec<u8>, content_type: &'static str| {
        s.client
            .post(format!("{}/api/v1/users", s.base))
            .bearer_auth(&s.admin_token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(Vec<u8>, &str, StatusCode, &str)> = vec![
        (
            b"{not json".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            b"{}".to_vec(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            br#"{"email": 5}"#.to_vec(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            br#"{"email":"a@b.c","name":"A","role":"root","password":"0123456789ab"}"#.to_vec(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_role",
        ),
        (
            br#"{"email":"a@b.c","name":"A","role":"agent","password":"short"}"#.to_vec(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
        ),
        (
            format!(
                r#"{{"email":"a@b.c","name":"{}","role":"agent","password":"0123456789ab"}}"#,
                "x".repeat(2 << 20)
            )
            .into_bytes(),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            format!(
                r#"{{"email":"{}","name":"A","role":"agent","password":"0123456789ab"}}"#,
                s.admin_email
            )
            .into_bytes(),
            "application/json",
            StatusCode::CONFLICT,
            "email_taken",
        ),
    ];
    for (body, content_type, status, expected) in cases {
        let resp = send(body, content_type).await.expect("request");
        assert_eq!(resp.status(), status, "{expected}");
        let json: Value = resp.json().await.expect("error body is JSON");
        assert_eq!(code(&json), expected);
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, body) = s.get("/api/v1/users?cursor=garbage", &s.admin_token).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_cursor"));
    let (status, body) = s.get("/api/v1/nothing-here", &s.admin_token).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "route_not_found"));
    let (status, body) = s.call(Method::PUT, "/api/v1/users", Some(&s.admin_token), None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let users_after = s.get("/api/v1/users", &s.admin_token).await.1["items"]
        .as_array()
        .map(Vec::len);
    assert_eq!(users_before, users_after, "no bad request created a user");
    s.server.shutdown().await;
}

#[tokio::test]
async fn user_changes_are_audited_with_before_and_after_and_disabling_locks_out() {
    let s = TestServer::start().await;
    let (email, password) = s.demo_user("marketer");
    let marketer = s.token_for(&email, &password).await;
    let (_, me) = s.get("/api/v1/me", &marketer).await;
    let id = me["user"]["id"].as_str().expect("id").to_owned();
    let (status, updated) = s
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(&s.admin_token),
            Some(json!({"role": "agent"})),
        )
        .await;
    assert_eq!((status, updated["role"].as_str()), (StatusCode::OK, Some("agent")));
    let (_, audit) = s.get("/api/v1/audit?action=user.updated", &s.admin_token).await;
    let entry = &audit["items"][0];
    assert_eq!(entry["before"]["role"], "marketer");
    assert_eq!(entry["after"]["role"], "agent");
    assert_eq!(entry["actor_kind"], "token");
    let (status, _) = s
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(&s.admin_token),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.get("/api/v1/me", &marketer).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a disabled user's tokens stop working"
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_and_tokens_for_good() {
    let s = TestServer::start().await;
    let (email, password) = s.demo_user("store_staff");
    let token = s.token_for(&email, &password).await;
    let cookie = s.session_for(&email, &password).await;
    let (_, me) = s.get("/api/v1/me", &token).await;
    let id = me["user"]["id"].as_str().expect("id").to_owned();
    let by_cookie = || {
        s.client
            .get(format!("{}/api/v1/me", s.base))
            .header("cookie", cookie.clone())
            .send()
    };
    assert_eq!(by_cookie().await.expect("me").status(), StatusCode::OK);
    for disabled in [true, false] {
        let (status, _) = s
            .call(
                Method::PATCH,
                &format!("/api/v1/users/{id}"),
                Some(&s.admin_token),
                Some(json!({ "disabled": disabled })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    // Enabled again: what was open before the disabling stays ended; signing in again works.
    assert_eq!(
        s.get("/api/v1/me", &token).await.0,
        StatusCode::UNAUTHORIZED,
        "the old token"
    );
    assert_eq!(
        by_cookie().await.expect("me").status(),
        StatusCode::UNAUTHORIZED,
        "the old session"
    );
    let fresh = s.token_for(&email, &password).await;
    assert_eq!(s.get("/api/v1/me", &fresh).await.0, StatusCode::OK);
    s.server.shutdown().await;
}

#[tokio::test]
async fn dead_jobs_are_listed_and_can_be_retried() {
    let s = TestServer::start().await;
    let (_, me) = s.get("/api/v1/me", &s.admin_token).await;
    let ws = me["workspace"]["id"].as_str().expect("workspace").to_owned();
    let job =
        sb_store::jobs::NewJob::new("default", "no.such.kind", r#"{"order":42}"#, s.server.store.now()).workspace(&ws);
    let id = s.server.engine.enqueue(job).await.expect("enqueue").expect("id");
    let mut dead = Value::Null;
    for _ in 0..200 {
        let (_, list) = s.get("/api/v1/jobs?state=dead", &s.admin_token).await;
        if list["items"].as_array().is_some_and(|a| !a.is_empty()) {
            dead = list;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(dead["items"][0]["id"].as_str(), Some(id.as_str()), "{dead}");
    assert!(
        dead["items"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no.such.kind"))
    );
    assert_eq!(dead["items"][0]["payload"]["order"], 42);
    let (status, retried) = s
        .post(&format!("/api/v1/jobs/{id}/retry"), &s.admin_token, json!({}))
        .await;
    assert_eq!(
        (status, retried["state"].as_str(), retried["attempts"].as_i64()),
        (StatusCode::OK, Some("ready"), Some(0))
    );
    let (_, audit) = s.get("/api/v1/audit?action=job.retried", &s.admin_token).await;
    assert_eq!(audit["items"][0]["object_id"].as_str(), Some(id.as_str()));
    let (status, body) = s
        .post(
            &format!("/api/v1/jobs/{}/retry", sb_core::new_id()),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "job_not_found"));
    s.server.shutdown().await;
}

#[tokio::test]
async fn lists_page_with_an_opaque_cursor() {
    let s = TestServer::start().await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/users?limit=2".to_owned();
    loop {
        let (status, page) = s.get(&path, &s.admin_token).await;
        assert_eq!(status, StatusCode::OK);
        for u in page["items"].as_array().expect("items") {
            seen.push(u["email"].as_str().expect("email").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/users?limit=2&cursor={c}"),
            None => break,
        }
        assert!(seen.len() <= 10, "paging terminates");
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        (seen.len(), unique.len()),
        (5, 5),
        "five demo users, each once: {seen:?}"
    );
    s.server.shutdown().await;
}
