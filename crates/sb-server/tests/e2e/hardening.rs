//! The defects a hostile test found, each proven fixed: cross-workspace attempts audited on
//! every kind of object, the widget's non-webhook, cookie writes from other sites, the web
//! app's security headers.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestServer, code};

#[tokio::test]
async fn every_kind_of_object_reached_from_another_workspace_is_audited() {
    let s = TestServer::start().await;
    let fixture = crate::permissions::fixture(&s).await;
    let madrid = crate::commerce::location_id(&s, "MAD-CENTRO").await;
    let (status, held) = s
        .post(
            "/api/v1/inventory/reservations",
            &s.admin_token,
            json!({"idempotency_key": "audit-r", "sku": fixture.sku, "location_id": madrid, "quantity": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    let reservation = held["id"].as_str().expect("reservation").to_owned();
    // A merge of two of this workspace's customers.
    let r = crate::harness::Receiver::start().await;
    let shop = s.api_account("second app", &r.url).await;
    let hello =
        json!({"type": "message", "id": "m-b", "from": {"id": "u-bea", "email": "bea@example.com"}, "text": "hi"});
    assert_eq!(s.deliver(&shop, &hello).await.0, StatusCode::OK);
    let found = s
        .until("/api/v1/customers?q=bea%40example.com", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let bea = found["items"][0]["id"].as_str().expect("bea").to_owned();
    let customer = fixture.ids["customer"].clone();
    let (status, merged) = s
        .post(
            &format!("/api/v1/customers/{customer}/merge"),
            &s.admin_token,
            json!({"source_customer_id": bea}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{merged}");
    let merge = merged["id"].as_str().expect("merge").to_owned();

    let boss = s.other_workspace_admin().await;
    let (cart, order, transfer, attachment) = (
        &fixture.ids["cart"],
        &fixture.ids["order"],
        &fixture.ids["transfer"],
        &fixture.ids["attachment"],
    );
    let attempts: Vec<(Method, String, Option<Value>, &str)> = vec![
        (Method::GET, format!("/api/v1/carts/{cart}"), None, "cart"),
        (
            Method::PUT,
            format!("/api/v1/carts/{cart}/lines/{}", fixture.sku),
            Some(json!({"quantity": 1})),
            "cart",
        ),
        (Method::GET, format!("/api/v1/orders/{order}"), None, "order"),
        (
            Method::POST,
            format!("/api/v1/orders/{order}/cancel"),
            Some(json!({})),
            "order",
        ),
        (
            Method::POST,
            format!("/api/v1/orders/{order}/fulfillments/{order}/ship"),
            None,
            "order",
        ),
        (Method::GET, format!("/api/v1/transfers/{transfer}"), None, "transfer"),
        (
            Method::POST,
            format!("/api/v1/inventory/reservations/{reservation}/release"),
            None,
            "reservation",
        ),
        (
            Method::GET,
            format!("/api/v1/attachments/{attachment}"),
            None,
            "attachment",
        ),
        (
            Method::POST,
            format!("/api/v1/customer-merges/{merge}/undo"),
            None,
            "merge",
        ),
        (
            Method::GET,
            "/api/v1/profiles/lookup?kind=email&value=ana%40example.com".to_owned(),
            None,
            "identifier",
        ),
    ];
    for (method, path, body, kind) in &attempts {
        let (status, answer) = s.call(method.clone(), path, Some(&boss), body.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        let (_, audit) = s.get("/api/v1/audit?action=access.cross_workspace_denied", &boss).await;
        assert!(
            audit["items"]
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["object_kind"] == *kind)),
            "{method} {path}: no `{kind}` entry in {audit}"
        );
    }
    // Nothing of the other workspace changed: the order is still placed, the merge in force.
    let (_, still) = s.get(&format!("/api/v1/orders/{order}"), &s.admin_token).await;
    assert_eq!(still["order"]["status"], "placed", "{still}");
}

#[tokio::test]
async fn a_webhook_to_the_website_widget_finds_no_account() {
    let s = TestServer::start().await;
    let fixture = crate::permissions::fixture(&s).await;
    for token in [fixture.website_token.as_str(), "not-an-id"] {
        let (status, body) = s
            .raw_post(&format!("{}/hooks/widget/{token}", s.base), vec![], b"{}".to_vec())
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "channel_account_not_found"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn cookie_writes_from_another_site_are_refused_whatever_header_says_so() {
    let s = TestServer::start().await;
    let (email, password) = s.demo_user("agent");
    let cookie = s.session_for(&email, &password).await;
    let http_twin = s.base.replacen("http://", "https://", 1);
    let write = |headers: Vec<(&'static str, String)>| {
        let mut req = s
            .client
            .post(format!("{}/api/v1/canned-responses", s.base))
            .header("cookie", cookie.clone())
            .json(&json!({"short_code": "x1", "content": "hello"}));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    for (what, headers) in [
        (
            "a cross-site Referer",
            vec![("referer", "https://evil.example/page".to_owned())],
        ),
        (
            "Sec-Fetch-Site: cross-site",
            vec![("sec-fetch-site", "cross-site".to_owned())],
        ),
        ("another scheme", vec![("origin", http_twin.clone())]),
        ("another origin", vec![("origin", "https://evil.example".to_owned())]),
    ] {
        let resp = write(headers).await.expect("request");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{what}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(code(&body), "csrf_rejected", "{what}");
    }
    let (_, list) = s.get("/api/v1/canned-responses?q=x1", &s.admin_token).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "nothing was written");
    // Our own page's request goes through.
    let resp = write(vec![
        ("origin", s.base.clone()),
        ("sec-fetch-site", "same-origin".to_owned()),
    ])
    .await
    .expect("request");
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn the_web_app_cannot_be_framed_and_loads_only_its_own_scripts() {
    let s = TestServer::start().await;
    for path in ["/app/login", "/app/inbox", "/shop"] {
        let resp = s.client.get(format!("{}{path}", s.base)).send().await.expect("page");
        let h = resp.headers();
        assert_eq!(
            h.get("x-frame-options").map(|v| v.as_bytes()),
            Some(&b"DENY"[..]),
            "{path}"
        );
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        if path.starts_with("/app") {
            assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        }
    }
}

#[tokio::test]
async fn out_of_range_numbers_and_unchecked_text_are_refused_and_change_nothing() {
    let s = TestServer::start().await;
    let madrid = crate::commerce::location_id(&s, "MAD-CENTRO").await;
    let on_hand = |body: &Value| {
        body["locations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["location_id"] == madrid.as_str())
            .map(|l| l["on_hand"].clone())
    };
    let (_, before) = s
        .get("/api/v1/inventory/availability?sku=JKT-BLU-M", &s.admin_token)
        .await;
    // Stock beyond 64 bits answered 500; now a bound with a clear code.
    for quantity in [i64::MAX, 1_000_000_001] {
        let (status, body) = crate::commerce::change(
            &s,
            &format!("huge-{quantity}"),
            json!([{"sku": "JKT-BLU-M", "location_id": madrid, "movement": {"kind": "receive", "quantity": quantity}}]),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_inventory_change"),
            "{body}"
        );
    }
    let (_, after) = s
        .get("/api/v1/inventory/availability?sku=JKT-BLU-M", &s.admin_token)
        .await;
    assert_eq!(on_hand(&before), on_hand(&after), "nothing received");

    // A price that lets a cart's total overflow is refused where it is set.
    let (status, body) = s
        .post(
            "/api/v1/products",
            &s.admin_token,
            json!({"title": "Gold", "variants": [{"sku": "GOLD-1", "title": "Bar", "price_minor": 4_611_686_018_427_387_904_i64, "currency": "EUR"}]}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_product"),
        "{body}"
    );

    // A time zone that is not one.
    let (status, body) = s
        .post(
            "/api/v1/locations",
            &s.admin_token,
            json!({"code": "MARS-1", "kind": "store", "name": "Olympus", "timezone": "Mars/Olympus"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, locations) = s.get("/api/v1/locations", &s.admin_token).await;
    assert!(!locations.to_string().contains("MARS-1"));

    // A note without end, and NUL characters, in the API and in the web app's forms.
    let r = crate::harness::Receiver::start().await;
    let customer = crate::commerce::customer_with_a_channel(&s, &r).await;
    let conversation = s.conversation_of(&customer).await;
    let notes = format!("/api/v1/conversations/{conversation}/notes");
    let (status, body) = s
        .post(&notes, &s.admin_token, json!({"text": "n".repeat(10_001)}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "text_too_long"),
        "{body}"
    );
    let (status, body) = s.post(&notes, &s.admin_token, json!({"text": "a\u{0}b"})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_text"),
        "{body}"
    );
    let (status, _) = s
        .post(&notes, &s.admin_token, json!({"text": "a \\u0000 b, typed"}))
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a backslash and u0000 typed as text is text"
    );
    let (email, password) = s.demo_user("agent");
    let cookie = s.session_for(&email, &password).await;
    let resp = s
        .client
        .post(format!("{}/app/conversations/{conversation}/reply", s.base))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=a%00b&note=on")
        .send()
        .await
        .expect("form");
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.text().await.unwrap_or_default().contains("invalid_text"));
    let (_, thread) = s
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
        )
        .await;
    assert!(!thread.to_string().contains("\\u0000b"), "no NUL stored: {thread}");
}

#[tokio::test]
async fn a_mailgun_token_is_accepted_once_whatever_message_comes_with_it() {
    let s = TestServer::start().await;
    let creds = &s.server.demo.as_ref().expect("demo").channels["email"];
    let hook = creds["mailgun_webhook_url"].as_str().expect("hook").to_owned();
    let key = creds["mailgun_signing_key"].as_str().expect("key").to_owned();
    let timestamp = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs())
    .to_string();
    let token = "f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978879";
    let signature = sb_channels::email::mailgun::signature(&key, &timestamp, token);
    let post = |message_id: &str, text: &str| {
        let mime = format!(
            "From: eve@example.test\r\nTo: support@acme-outfitters.example\r\nSubject: hi\r\nMessage-ID: <{message_id}>\r\n\r\n{text}\r\n"
        );
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("timestamp", &timestamp)
            .append_pair("token", token)
            .append_pair("signature", &signature)
            .append_pair("body-mime", &mime)
            .finish();
        s.raw_post(
            &hook,
            vec![("content-type", "application/x-www-form-urlencoded".into())],
            form.into_bytes(),
        )
    };
    let (status, first) = post("first@example.test", "the real one").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // The same signed triple with another message: a replay, refused and not stored.
    let (status, second) = post("second@example.test", "send the refund to me").await;
    assert_eq!(
        (status, code(&second)),
        (StatusCode::CONFLICT, "request_replayed"),
        "{second}"
    );
    let found = s
        .until("/api/v1/customers?q=eve%40example.test", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let customer = found["items"][0]["id"].as_str().expect("customer");
    let again = s
        .until(&format!("/api/v1/customers/{customer}/timeline"), |b| {
            b.to_string().contains("the real one")
        })
        .await;
    let text = again.to_string();
    assert!(text.contains("the real one"), "{again}");
    assert!(!text.contains("send the refund"), "{again}");
}

#[tokio::test]
async fn one_client_cannot_flood_the_inbox_with_widget_sessions_and_admins_see_it() {
    let s = TestServer::start().await;
    let fixture = crate::permissions::fixture(&s).await;
    let (_, before) = s.get("/api/v1/customers?limit=200", &s.admin_token).await;
    let customers_before = before["items"].as_array().map_or(0, Vec::len);
    let (mut started, mut refused) = (0, 0);
    for _ in 0..60 {
        let (status, body) = s
            .call(
                Method::POST,
                "/widget/v1/sessions",
                None,
                Some(json!({"website_token": fixture.website_token})),
            )
            .await;
        match status {
            StatusCode::CREATED => started += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(code(&body), "rate_limited");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(started <= 25, "{started} sessions from one address in a burst");
    assert!(refused >= 35, "{refused} refused");
    let (_, after) = s.get("/api/v1/customers?limit=200", &s.admin_token).await;
    let customers_after = after["items"].as_array().map_or(0, Vec::len);
    assert_eq!(
        customers_after, customers_before,
        "a session makes no customer; the first message does"
    );
    let (_, audit) = s
        .get("/api/v1/audit?action=widget.sessions_limited", &s.admin_token)
        .await;
    let entries = audit["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "one entry a minute, not one a request: {audit}");
    assert_eq!(entries[0]["object_id"], fixture.website_token.as_str());
}

#[tokio::test]
async fn a_reply_retried_with_its_idempotency_key_is_sent_once() {
    let s = TestServer::start().await;
    let r = crate::harness::Receiver::start().await;
    let customer = crate::commerce::customer_with_a_channel(&s, &r).await;
    let conversation = s.conversation_of(&customer).await;
    let reply = |key: &'static str, text: &'static str| {
        s.client
            .post(format!("{}/api/v1/conversations/{conversation}/messages", s.base))
            .bearer_auth(&s.admin_token)
            .header("idempotency-key", key)
            .json(&json!({ "text": text }))
            .send()
    };
    // The first answer is "lost"; the client sends the same request again, twice.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let resp = reply("reply-7f3a", "Your order ships today").await.expect("reply");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.expect("json");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one message: {ids:?}");
    s.until_message(&conversation, &ids[0], "sent").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sent: Vec<_> = r
        .received()
        .into_iter()
        .filter(|(_, b)| b.to_string().contains("Your order ships today"))
        .collect();
    assert_eq!(sent.len(), 1, "the provider got it once: {sent:?}");
    // The body's key does the same; a new key is a new message.
    let (status, other) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/notes"),
            &s.admin_token,
            json!({"text": "checked stock", "idempotency_key": "note-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, again) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/notes"),
            &s.admin_token,
            json!({"text": "checked stock", "idempotency_key": "note-1"}),
        )
        .await;
    assert_eq!(other["id"], again["id"]);
    let (_, thread) = s
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
        )
        .await;
    let texts: Vec<&str> = thread["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(texts.iter().filter(|t| **t == "checked stock").count(), 1, "{texts:?}");
    assert_eq!(
        texts.iter().filter(|t| **t == "Your order ships today").count(),
        1,
        "{texts:?}"
    );
}

#[tokio::test]
async fn every_mutating_route_takes_an_idempotency_key() {
    let s = TestServer::start().await;
    let post = |key: &'static str, body: Value| {
        s.client
            .post(format!("{}/api/v1/canned-responses", s.base))
            .bearer_auth(&s.admin_token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = post("k-1", json!({"short_code": "thanks", "content": "Thank you!"}))
        .await
        .expect("post");
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    // The answer was lost: the same request again gets the same answer and changes nothing.
    let again = post("k-1", json!({"short_code": "thanks", "content": "Thank you!"}))
        .await
        .expect("post");
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(
        again.headers().get("idempotent-replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let again: Value = again.json().await.expect("json");
    assert_eq!(first["id"], again["id"]);
    // The key with another request is refused; without a key, the same request is a conflict.
    let other = post("k-1", json!({"short_code": "thanks2", "content": "Thanks!"}))
        .await
        .expect("post");
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let other: Value = other.json().await.expect("json");
    assert_eq!(code(&other), "idempotency_key_reused");
    let (_, list) = s.get("/api/v1/canned-responses?q=thanks", &s.admin_token).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    // A refusal is an answer too: kept and given again, never run twice.
    let (email, password) = s.demo_user("marketer");
    let marketer = s.token_for(&email, &password).await;
    for _ in 0..2 {
        let resp = s
            .client
            .post(format!("{}/api/v1/canned-responses", s.base))
            .bearer_auth(&marketer)
            .header("idempotency-key", "k-1")
            .json(&json!({"short_code": "nope", "content": "x"}))
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "each credential has its own keys");
    }
    let (status, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let params = doc["paths"]["/api/v1/canned-responses"]["post"]["parameters"].to_string();
    assert!(params.contains("Idempotency-Key"), "documented: {params}");
}

#[tokio::test]
async fn a_webhook_to_an_account_without_its_signing_secret_is_refused_not_a_server_error() {
    let s = TestServer::start().await;
    // Setting one up without the secret its provider signs with is refused, saying which.
    for (channel, secrets, missing) in [
        ("instagram", None, "app_secret"),
        ("whatsapp", Some(json!({"access_token": "t"})), "app_secret"),
        ("twilio_sms", Some(json!({"auth_token": " "})), "auth_token"),
    ] {
        let mut body = json!({"channel": channel, "name": "Half set up", "settings": {
            "phone_number_id": "1", "from": "+15550001111", "account_sid": format!("AC{}", "0".repeat(32))}});
        if let Some(secrets) = secrets {
            body["secrets"] = secrets;
        }
        let (status, answer) = s.post("/api/v1/channel-accounts", &s.admin_token, body).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, "missing_signing_secret"),
            "{channel}: {answer}"
        );
        assert_eq!(answer["error"]["details"]["missing"], json!([missing]));
    }
    let (_, accounts) = s.get("/api/v1/channel-accounts", &s.admin_token).await;
    assert!(!accounts.to_string().contains("Half set up"), "nothing was kept");

    // One that lost it anyway (set up before this rule, or edited in the database): a
    // webhook to it is a refusal, not a server error.
    let (_, me) = s.get("/api/v1/me", &s.admin_token).await;
    let ws = me["user"]["workspace_id"].as_str().expect("workspace").to_owned();
    let account = s
        .server
        .store
        .db
        .write(move |c| {
            sb_store::channel_accounts::create(c, &ws, "instagram", "Old account", "{}", r#"{"app_secret":""}"#, 0)
        })
        .await
        .expect("stored");
    let hook = format!("{}/hooks/instagram/{}", s.base, account.id);
    let (status, body) = s.raw_post(&hook, vec![], b"{}".to_vec()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "channel_account_not_configured"),
        "{body}"
    );
}

/// The document states the bounds and the fixed values of inputs, and the server holds to
/// them: a page size outside 1–200 is refused, not quietly changed.
#[tokio::test]
async fn bounds_and_enums_are_in_the_document_and_enforced() {
    let s = TestServer::start().await;
    for path in [
        "/api/v1/users?limit=500",
        "/api/v1/users?limit=0",
        "/api/v1/conversations?limit=201",
        "/api/v1/transfers?limit=-1",
    ] {
        let (status, body) = s.get(path, &s.admin_token).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_limit"),
            "{path}: {body}"
        );
    }
    let (status, body) = s.get("/api/v1/users?limit=200", &s.admin_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    let param = |path: &str, name: &str| -> serde_json::Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))
    };
    let limit = param("/api/v1/users", "limit");
    assert_eq!(
        (limit["schema"]["minimum"].as_f64(), limit["schema"]["maximum"].as_f64()),
        (Some(1.0), Some(200.0)),
        "{limit}"
    );
    let status = param("/api/v1/conversations", "status").to_string();
    assert!(status.contains("ConversationStatus"), "{status}");
    let statuses = doc["components"]["schemas"]["ConversationStatus"]["enum"].clone();
    assert_eq!(statuses, json!(["open", "pending", "snoozed", "resolved"]));
    let roles = doc["components"]["schemas"]["Role"]["enum"].clone();
    assert_eq!(roles, json!(["admin", "agent", "marketer", "store_staff"]));
}
