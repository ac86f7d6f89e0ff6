//! Canned responses over the JSON API: the demo's library, CRUD by an agent, the error codes,
//! and workspace isolation.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestServer, code};

fn short_codes(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["short_code"].as_str().expect("short_code"))
        .collect()
}

#[tokio::test]
async fn agents_manage_the_workspace_library_of_canned_responses() {
    let s = TestServer::start().await;
    let (email, password) = s.demo_user("agent");
    let agent = s.token_for(&email, &password).await;

    let (status, seeded) = s.get("/api/v1/canned-responses", &agent).await;
    assert_eq!(status, StatusCode::OK, "{seeded}");
    assert_eq!(
        short_codes(&seeded),
        ["hours", "pickup", "returns"],
        "the demo seeds three"
    );

    let (status, created) = s
        .post(
            "/api/v1/canned-responses",
            &agent,
            json!({"short_code": "order_status", "content": "You can follow your ORDER at any time from the e-mail we sent."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        created["created_by"].as_str().map(str::len),
        Some(id.len()),
        "the agent's user id"
    );

    let (_, found) = s.get("/api/v1/canned-responses?q=FOLLOW%20your", &agent).await;
    assert_eq!(
        short_codes(&found),
        ["order_status"],
        "search ignores case over the content"
    );
    let (_, found) = s.get("/api/v1/canned-responses?q=RETURN", &agent).await;
    assert_eq!(short_codes(&found), ["returns"]);

    let (status, updated) = s
        .call(
            Method::PATCH,
            &format!("/api/v1/canned-responses/{id}"),
            Some(&agent),
            Some(json!({"content": "Track your order from the link in our e-mail."})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["short_code"], "order_status");
    assert_eq!(updated["content"], "Track your order from the link in our e-mail.");

    // A taken short code, on create and on rename.
    let (status, body) = s
        .post(
            "/api/v1/canned-responses",
            &agent,
            json!({"short_code": "hours", "content": "again"}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "canned_response_exists"));
    let (status, body) = s
        .call(
            Method::PATCH,
            &format!("/api/v1/canned-responses/{id}"),
            Some(&agent),
            Some(json!({"short_code": "returns"})),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "canned_response_exists"));

    // Invalid short codes and contents.
    let too_long_code = "x".repeat(51);
    let too_long_content = "x".repeat(5_001);
    for body in [
        json!({"short_code": "", "content": "text"}),
        json!({"short_code": "Hours", "content": "text"}),
        json!({"short_code": "two words", "content": "text"}),
        json!({"short_code": too_long_code, "content": "text"}),
        json!({"short_code": "fine", "content": ""}),
        json!({"short_code": "fine", "content": "   "}),
        json!({"short_code": "fine", "content": too_long_content}),
    ] {
        let (status, resp) = s.post("/api/v1/canned-responses", &agent, body.clone()).await;
        assert_eq!(
            (status, code(&resp)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_canned_response"),
            "{body}"
        );
    }
    let (status, body) = s
        .call(
            Method::PATCH,
            &format!("/api/v1/canned-responses/{id}"),
            Some(&agent),
            Some(json!({"short_code": "no/slash"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_canned_response")
    );
    let longest = s
        .post(
            "/api/v1/canned-responses",
            &agent,
            json!({"short_code": "x".repeat(50), "content": "é".repeat(5_000)}),
        )
        .await;
    assert_eq!(longest.0, StatusCode::CREATED, "limits count characters, not bytes");

    // Store staff do not reply to conversations, so they do not see the library.
    let (email, password) = s.demo_user("store_staff");
    let staff = s.token_for(&email, &password).await;
    let (status, _) = s.get("/api/v1/canned-responses", &staff).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/canned-responses/{id}"),
            Some(&agent),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/canned-responses/{id}"),
            Some(&agent),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "canned_response_not_found")
    );
    let (_, list) = s.get("/api/v1/canned-responses", &agent).await;
    assert!(!short_codes(&list).contains(&"order_status"));

    let (_, audit) = s.get("/api/v1/audit?limit=200", &s.admin_token).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["object_id"].as_str() == Some(id.as_str()))
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "canned_response.created",
        "canned_response.updated",
        "canned_response.deleted",
    ] {
        assert!(actions.contains(&action), "{action} audited: {audit}");
    }
    s.server.shutdown().await;
}

#[tokio::test]
async fn another_workspaces_canned_response_is_not_found() {
    let s = TestServer::start().await;
    let (status, created) = s
        .post(
            "/api/v1/workspaces",
            &s.admin_token,
            json!({"name": "Other Shop", "admin_email": "owner@other.test", "admin_name": "Olive", "admin_password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let b_token = s.token_for("owner@other.test", "correct horse battery").await;
    let (_, b_list) = s.get("/api/v1/canned-responses", &b_token).await;
    assert!(
        short_codes(&b_list).is_empty(),
        "a new workspace starts with an empty library"
    );
    let (status, b_hours) = s
        .post(
            "/api/v1/canned-responses",
            &b_token,
            json!({"short_code": "hours", "content": "Other Shop opens at noon."}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the same short code in another workspace: {b_hours}"
    );
    let b_id = b_hours["id"].as_str().expect("id");

    let path = format!("/api/v1/canned-responses/{b_id}");
    let (status, body) = s
        .call(
            Method::PATCH,
            &path,
            Some(&s.admin_token),
            Some(json!({"content": "hijacked"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "canned_response_not_found")
    );
    let (status, body) = s.call(Method::DELETE, &path, Some(&s.admin_token), None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "canned_response_not_found")
    );
    let (_, a_list) = s.get("/api/v1/canned-responses?q=noon", &s.admin_token).await;
    assert!(short_codes(&a_list).is_empty(), "A does not see B's responses");

    let (_, b_list) = s.get("/api/v1/canned-responses", &b_token).await;
    assert_eq!(
        b_list["items"][0]["content"], "Other Shop opens at noon.",
        "B's response is untouched"
    );
    let (_, audit) = s
        .get("/api/v1/audit?action=access.cross_workspace_denied", &s.admin_token)
        .await;
    let denied = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["object_kind"] == "canned_response" && e["object_id"].as_str() == Some(b_id))
        .count();
    assert_eq!(denied, 2, "{audit}");
    s.server.shutdown().await;
}
