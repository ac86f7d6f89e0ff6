//! The unified inbox over HTTP with the generic API channel: scenarios 1 and 2 of PRODUCT.md
//! and the ingest and outbox invariants.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{EventStream, Receiver, TestServer, code};

fn message(id: &str, from: Value, text: &str) -> Value {
    json!({"type": "message", "id": id, "from": from, "text": text})
}

async fn conversations(s: &TestServer, expected: usize) -> Value {
    s.until("/api/v1/conversations", |b| {
        b["items"].as_array().is_some_and(|a| a.len() == expected)
    })
    .await
}

#[tokio::test]
async fn scenario_01_one_identity() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let loyalty = s.api_account("loyalty app", &r.url).await;

    let ana = json!({"id": "u1", "name": "Ana López", "email": "Ana@Example.com"});
    assert_eq!(
        s.deliver(&shop, &message("a-1", ana, "¿Tienen talla M?")).await.0,
        StatusCode::OK
    );
    let same_email = json!({"id": "v9", "email": "ana@example.com", "phone": "+34 600 111 222"});
    assert_eq!(
        s.deliver(&loyalty, &message("b-1", same_email, "My points?")).await.0,
        StatusCode::OK
    );
    // The same scoped id on another account is somebody else.
    assert_eq!(
        s.deliver(&loyalty, &message("b-2", json!({"id": "u1"}), "hi")).await.0,
        StatusCode::OK
    );
    conversations(&s, 2).await;

    let (_, found) = s.get("/api/v1/customers?q=ana@example", &s.admin_token).await;
    let items = found["items"].as_array().expect("items");
    assert_eq!(
        items.len(),
        1,
        "the e-mail links both channels to one customer: {found}"
    );
    let id = items[0]["id"].as_str().expect("id");
    let (_, profile) = s.get(&format!("/api/v1/customers/{id}"), &s.admin_token).await;
    assert_eq!(profile["name"], "Ana López");
    assert_eq!(profile["phone"], "+34600111222");
    let mut identities: Vec<(String, String, bool)> = profile["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .map(|i| {
            let kind = i["kind"].as_str().unwrap_or("").to_owned();
            let scope = i["scope"].as_str().unwrap_or("");
            let scoped = if scope == shop.id {
                "shop"
            } else if scope == loyalty.id {
                "loyalty"
            } else {
                scope
            };
            (
                format!("{kind}:{}", i["value"].as_str().unwrap_or("")),
                scoped.to_owned(),
                i["verified"] == true,
            )
        })
        .collect();
    identities.sort();
    assert_eq!(
        identities,
        vec![
            ("api:u1".to_owned(), "shop".to_owned(), true),
            ("api:v9".to_owned(), "loyalty".to_owned(), true),
            ("email:ana@example.com".to_owned(), String::new(), true),
            ("phone:+34600111222".to_owned(), String::new(), true),
        ]
    );
    let (_, both) = s.get("/api/v1/customers?q=u1", &s.admin_token).await;
    assert_eq!(
        both["items"].as_array().map(Vec::len),
        Some(2),
        "scoped ids do not link across accounts"
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn scenario_02_one_thread() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let loyalty = s.api_account("loyalty app", &r.url).await;
    let t0 = 1_795_545_600_000i64;
    let first = json!({"type": "message", "id": "a-1", "from": {"id": "u1", "email": "ana@example.com"}, "text": "today, on the shop app", "sent_at_ms": t0});
    let second = json!({"type": "message", "id": "b-1", "from": {"id": "v9", "email": "ana@example.com"}, "text": "tomorrow, on the loyalty app", "sent_at_ms": t0 + 86_400_000});
    // Delivered out of order: the thread is ordered by when the customer wrote.
    assert_eq!(s.deliver(&loyalty, &second).await.0, StatusCode::OK);
    assert_eq!(s.deliver(&shop, &first).await.0, StatusCode::OK);
    let list = s
        .until("/api/v1/conversations", |b| {
            b["items"][0]["unread_count"].as_i64() == Some(2)
        })
        .await;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(1),
        "one conversation for the person"
    );
    let conversation = list["items"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        list["items"][0]["last_inbound_account_id"].as_str(),
        Some(loyalty.id.as_str())
    );

    let (_, thread) = s
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
        )
        .await;
    let marks: Vec<(&str, &str)> = thread["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| {
            (
                m["body"].as_str().unwrap_or(""),
                m["channel_account_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        marks,
        [
            ("today, on the shop app", shop.id.as_str()),
            ("tomorrow, on the loyalty app", loyalty.id.as_str())
        ]
    );

    let (_, detail) = s
        .get(&format!("/api/v1/conversations/{conversation}"), &s.admin_token)
        .await;
    let options = detail["reply_options"].as_array().expect("options");
    for o in options {
        let ours = o["channel_account_id"] == shop.id.as_str() || o["channel_account_id"] == loyalty.id.as_str();
        if ours {
            assert_eq!(o["allowed"], true, "{o}");
        } else if o["channel"] == "email" {
            // Her e-mail address is global: the demo's mailbox can write to her too.
            assert_eq!(
                (o["allowed"].as_bool(), o["address"].as_str()),
                (Some(true), Some("ana@example.com")),
                "{o}"
            );
        } else {
            // The demo's own API account: the customer has no address there, and it says so.
            assert_eq!(
                (o["allowed"].as_bool(), o["reason"].as_str()),
                (Some(false), Some("no_address")),
                "{o}"
            );
        }
    }
    let default: Vec<&str> = options
        .iter()
        .filter(|o| o["default"] == true)
        .filter_map(|o| o["channel_account_id"].as_str())
        .collect();
    assert_eq!(
        default,
        [loyalty.id.as_str()],
        "the default is where the customer last wrote"
    );

    // Reply without choosing: it goes out on the loyalty app, to the customer's id there, signed.
    let (status, reply) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
            json!({"text": "Hi Ana, 120 points"}),
        )
        .await;
    assert_eq!(
        (status, reply["status"].as_str()),
        (StatusCode::CREATED, Some("queued")),
        "{reply}"
    );
    let reply_id = reply["id"].as_str().expect("id").to_owned();
    let provider_id = s.until_message(&conversation, &reply_id, "sent").await["provider_message_id"]
        .as_str()
        .expect("provider id")
        .to_owned();
    let got = r.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["to"], "v9");
    assert_eq!(got[0].1["text"], "Hi Ana, 120 points");
    let (header, raw) = got[0].0.split_once('\n').expect("signature and body");
    assert!(
        sb_channels::signing::verify(
            &loyalty.secret,
            Some(header),
            raw.as_bytes(),
            sb_core::Clock::now_ms(&sb_core::SystemClock)
        )
        .is_ok(),
        "our outbound webhook is signed with the account's secret"
    );

    // Or pick the shop app explicitly.
    let (status, _) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
            json!({"text": "Your size M is in stock", "channel_account_id": shop.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for _ in 0..200 {
        if r.received().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(r.received()[1].1["to"], "u1");

    // Status reports: delivered, read, then a late delivered that must not win.
    for (n, status) in ["delivered", "read", "delivered"].iter().enumerate() {
        let report = json!({"type": "status", "id": format!("st-{n}"), "message_id": provider_id, "status": status});
        assert_eq!(s.deliver(&loyalty, &report).await.0, StatusCode::OK);
    }
    s.until_message(&conversation, &reply_id, "read").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (_, thread) = s
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
        )
        .await;
    let reply = thread["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|m| m["id"] == reply_id.as_str())
        .cloned();
    assert_eq!(
        reply.map(|m| m["status"].clone()),
        Some(json!("read")),
        "a late delivered never overwrites read"
    );

    // A private note is in the thread and is never sent.
    let (status, note) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/notes"),
            &s.admin_token,
            json!({"text": "VIP"}),
        )
        .await;
    assert_eq!(
        (status, note["direction"].as_str()),
        (StatusCode::CREATED, Some("note"))
    );
    let (_, read) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/read"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(read["unread_count"], 0);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(r.received().len(), 2, "the note went nowhere");
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_provider_retry_is_acknowledged_and_changes_nothing() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let m = message("dup-1", json!({"id": "u1"}), "once");
    let (status, first) = s.deliver(&shop, &m).await;
    assert_eq!((status, first["status"].as_str()), (StatusCode::OK, Some("accepted")));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // a new timestamp, a new signature
    let (status, again) = s.deliver(&shop, &m).await;
    assert_eq!((status, again["status"].as_str()), (StatusCode::OK, Some("duplicate")));
    let list = conversations(&s, 1).await;
    let id = list["items"][0]["id"].as_str().expect("id");
    let thread = s
        .until(&format!("/api/v1/conversations/{id}/messages"), |b| {
            b["items"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(thread["items"].as_array().map(Vec::len), Some(1));
    s.server.shutdown().await;
}

async fn stored_requests(s: &TestServer) -> i64 {
    s.server
        .store
        .db
        .read(|c| {
            c.query_one(&sb_sql::Stmt::new("SELECT COUNT(*) AS n FROM inbound_requests"))?
                .get::<i64>("n")
        })
        .await
        .expect("count")
}

#[tokio::test]
async fn bad_webhooks_get_their_error_code_and_store_nothing() {
    let s = TestServer::start_with(|c| c.http.max_body_bytes = 64 * 1024).await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let body = serde_json::to_vec(&message("m-1", json!({"id": "u1"}), "hi")).expect("json");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let sign = |secret: &str, at: i64, bytes: &[u8]| sb_channels::signing::sign(secret, at, bytes);
    let header = sb_channels::signing::HEADER;
    let big = serde_json::to_vec(&message("m-2", json!({"id": "u1"}), &"x".repeat(100_000))).expect("json");
    // (url, headers, body, expected status, expected code)
    type Case<'a> = (String, Vec<(&'a str, String)>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            shop.hook.clone(),
            vec![],
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "missing_signature",
        ),
        (
            shop.hook.clone(),
            vec![(header, sign("wrong", now, &body))],
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            shop.hook.clone(),
            vec![(header, sign(&shop.secret, now - 600, &body))],
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "expired_timestamp",
        ),
        (
            shop.hook.clone(),
            vec![(header, sign(&shop.secret, now, b"{oops"))],
            b"{oops".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_payload",
        ),
        (
            shop.hook.clone(),
            vec![(header, sign(&shop.secret, now, &big))],
            big.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            format!("{}/hooks/api/{}", s.base, sb_core::new_id()),
            vec![(header, sign(&shop.secret, now, &body))],
            body.clone(),
            StatusCode::NOT_FOUND,
            "channel_account_not_found",
        ),
        (
            shop.hook.replace("/hooks/api/", "/hooks/whatsapp/"),
            vec![(header, sign(&shop.secret, now, &body))],
            body.clone(),
            StatusCode::NOT_FOUND,
            "channel_account_not_found",
        ),
    ];
    for (url, headers, bytes, status, expected) in cases {
        let (got, resp) = s.raw_post(&url, headers, bytes).await;
        assert_eq!((got, code(&resp)), (status, expected), "{resp}");
    }
    assert_eq!(stored_requests(&s).await, 0, "nothing was stored");
    // A replay of exactly the same signed bytes is refused; the first delivery stands.
    let signed = vec![(header, sign(&shop.secret, now, &body))];
    assert_eq!(
        s.raw_post(&shop.hook, signed.clone(), body.clone()).await.0,
        StatusCode::OK
    );
    let (status, resp) = s.raw_post(&shop.hook, signed, body).await;
    assert_eq!((status, code(&resp)), (StatusCode::CONFLICT, "request_replayed"));
    assert_eq!(stored_requests(&s).await, 1);
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_failed_send_shows_the_providers_reason_and_can_be_retried() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    s.deliver(&shop, &message("m-1", json!({"id": "u1"}), "hello")).await;
    let list = conversations(&s, 1).await;
    let conversation = list["items"][0]["id"].as_str().expect("id").to_owned();
    r.status.store(400, std::sync::atomic::Ordering::SeqCst);
    let (_, reply) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
            json!({"text": "hi"}),
        )
        .await;
    let id = reply["id"].as_str().expect("id").to_owned();
    let failed = s.until_message(&conversation, &id, "failed").await;
    assert_eq!(failed["error_code"], "http_400");
    assert_eq!(failed["error_message"], "unknown recipient");
    r.status.store(200, std::sync::atomic::Ordering::SeqCst);
    let (status, retried) = s
        .post(&format!("/api/v1/messages/{id}/retry"), &s.admin_token, json!({}))
        .await;
    assert_eq!((status, retried["status"].as_str()), (StatusCode::OK, Some("queued")));
    s.until_message(&conversation, &id, "sent").await;
    let (status, body) = s
        .post(&format!("/api/v1/messages/{id}/retry"), &s.admin_token, json!({}))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "message_not_failed"));
    s.server.shutdown().await;
}

#[tokio::test]
async fn status_assignment_labels_and_snooze() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    s.deliver(&shop, &message("m-1", json!({"id": "u1"}), "hello")).await;
    let list = conversations(&s, 1).await;
    let id = list["items"][0]["id"].as_str().expect("id").to_owned();
    let (email, password) = s.demo_user("agent");
    let agent = s.token_for(&email, &password).await;
    let (_, me) = s.get("/api/v1/me", &agent).await;
    let agent_id = me["user"]["id"].as_str().expect("id").to_owned();

    let (status, assigned) = s
        .post(
            &format!("/api/v1/conversations/{id}/assign"),
            &agent,
            json!({"assignee_id": agent_id}),
        )
        .await;
    assert_eq!(
        (status, assigned["assignee_id"].as_str()),
        (StatusCode::OK, Some(agent_id.as_str()))
    );
    let (_, mine) = s.get("/api/v1/conversations?assignee=me", &agent).await;
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(1));
    let (_, unassigned) = s.get("/api/v1/conversations?assignee=none", &agent).await;
    assert_eq!(unassigned["items"].as_array().map(Vec::len), Some(0));
    let (status, body) = s
        .post(
            &format!("/api/v1/conversations/{id}/assign"),
            &agent,
            json!({"assignee_id": sb_core::new_id()}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_assignee")
    );

    let (_, labels) = s
        .post(
            &format!("/api/v1/conversations/{id}/labels"),
            &agent,
            json!({"add": ["vip", "size"], "remove": []}),
        )
        .await;
    assert_eq!(labels["labels"], json!(["size", "vip"]));
    let (_, vip) = s
        .get("/api/v1/conversations?label=vip&channel=api&unread=true", &agent)
        .await;
    assert_eq!(vip["items"].as_array().map(Vec::len), Some(1));

    // Resolved, then the customer writes again: open.
    let (_, resolved) = s
        .post(
            &format!("/api/v1/conversations/{id}/status"),
            &agent,
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(resolved["status"], "resolved");
    s.deliver(&shop, &message("m-2", json!({"id": "u1"}), "one more thing"))
        .await;
    s.until(&format!("/api/v1/conversations/{id}"), |b| b["status"] == "open")
        .await;

    // Snoozed: it opens again by itself when the snooze ends (a durable timer).
    let until = sb_core::clock::rfc3339(sb_core::Clock::now_ms(&sb_core::SystemClock) + 2_000);
    let (status, snoozed) = s
        .post(
            &format!("/api/v1/conversations/{id}/status"),
            &agent,
            json!({"status": "snoozed", "snooze_until": until}),
        )
        .await;
    assert_eq!(
        (status, snoozed["status"].as_str()),
        (StatusCode::OK, Some("snoozed")),
        "{snoozed}"
    );
    s.until(&format!("/api/v1/conversations/{id}"), |b| b["status"] == "open")
        .await;

    for bad in [
        json!({"status": "closed"}),
        json!({"status": "snoozed"}),
        json!({"status": "snoozed", "snooze_until": "2001-01-01T00:00:00Z"}),
    ] {
        let (status, body) = s.post(&format!("/api/v1/conversations/{id}/status"), &agent, bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let (_, audit) = s
        .get("/api/v1/audit?action=conversation.assigned", &s.admin_token)
        .await;
    assert_eq!(
        audit["items"][0]["after"]["assignee_id"].as_str(),
        Some(agent_id.as_str())
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn another_workspaces_conversation_is_404_and_audited() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    s.deliver(&shop, &message("m-1", json!({"id": "u1"}), "hello")).await;
    let list = conversations(&s, 1).await;
    let id = list["items"][0]["id"].as_str().expect("id").to_owned();
    let (status, _) = s
        .post(
            "/api/v1/workspaces",
            &s.admin_token,
            json!({"name": "Other", "admin_email": "o@other.test", "admin_name": "O", "admin_password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let other = s.token_for("o@other.test", "correct horse battery").await;
    for path in [
        format!("/api/v1/conversations/{id}"),
        format!("/api/v1/conversations/{id}/messages"),
    ] {
        let (status, body) = s.get(&path, &other).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "conversation_not_found"),
            "{path}"
        );
    }
    let (status, body) = s
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &other,
            json!({"text": "hijack"}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "conversation_not_found"));
    let (_, list) = s.get("/api/v1/conversations", &other).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
    let (_, audit) = s
        .get("/api/v1/audit?action=access.cross_workspace_denied", &other)
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(3));
    assert!(r.received().is_empty(), "nothing was sent");
    s.server.shutdown().await;
}

#[tokio::test]
async fn live_push_replays_what_was_missed_after_a_reconnect() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;

    let mut stream = EventStream::open(&s, None).await;
    s.deliver(&shop, &message("m-1", json!({"id": "u1"}), "first")).await;
    let (first_id, kind, data) = stream.next().await;
    assert_eq!(
        (kind.as_str(), data["data"]["body"].as_str()),
        ("message.created", Some("first"))
    );
    let conversation = data["conversation_id"].as_str().expect("conversation").to_owned();
    let (last_id, kind, data) = stream.next().await;
    assert_eq!(
        (kind.as_str(), data["data"]["unread_count"].as_i64()),
        ("conversation.updated", Some(1))
    );
    assert_eq!(last_id, first_id + 1);
    drop(stream); // the agent's connection drops

    s.deliver(&shop, &message("m-2", json!({"id": "u1"}), "second")).await;
    s.deliver(&shop, &message("m-3", json!({"id": "u1"}), "third")).await;
    s.until(&format!("/api/v1/conversations/{conversation}"), |b| {
        b["unread_count"] == 3
    })
    .await;
    let (status, _) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/notes"),
            &s.admin_token,
            json!({"text": "note"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let mut stream = EventStream::open(&s, Some(&last_id.to_string())).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (id, kind, data) = stream.next().await;
        seen.push((id, kind, data["data"]["body"].as_str().map(str::to_owned)));
    }
    let ids: Vec<i64> = seen.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(
        ids,
        (last_id + 1..=last_id + 5).collect::<Vec<_>>(),
        "every missed event once, in order"
    );
    let bodies: Vec<&str> = seen
        .iter()
        .filter_map(|(_, k, b)| (k == "message.created").then_some(b.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(bodies, ["second", "third", "note"]);

    // And it goes on live after the replay.
    let (status, _) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/status"),
            &s.admin_token,
            json!({"status": "pending"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (id, kind, data) = stream.next().await;
    assert_eq!(
        (id, kind.as_str(), data["data"]["status"].as_str()),
        (last_id + 6, "conversation.updated", Some("pending"))
    );
    s.server.shutdown().await;
}

async fn customer_id(s: &TestServer, query: &str) -> String {
    let (_, found) = s.get(&format!("/api/v1/customers?q={query}"), &s.admin_token).await;
    let items = found["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "one customer for {query}: {found}");
    items[0]["id"].as_str().expect("id").to_owned()
}

async fn thread_bodies(s: &TestServer, conversation: &str) -> Vec<String> {
    let (_, thread) = s
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
        )
        .await;
    thread["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn an_agent_merges_two_customers_and_undoing_restores_both() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let loyalty = s.api_account("loyalty app", &r.url).await;
    s.deliver(
        &shop,
        &message("a-1", json!({"id": "ana-shop", "name": "Ana"}), "from the shop"),
    )
    .await;
    s.deliver(
        &loyalty,
        &message("b-1", json!({"id": "ana-loyalty", "name": "A. López"}), "from loyalty"),
    )
    .await;
    conversations(&s, 2).await;
    let target = customer_id(&s, "ana-shop").await;
    let source = customer_id(&s, "ana-loyalty").await;
    let (_, t) = s.get(&format!("/api/v1/customers/{target}"), &s.admin_token).await;
    let target_conversation = t["conversation_id"].as_str().expect("conversation").to_owned();
    let (_, so) = s.get(&format!("/api/v1/customers/{source}"), &s.admin_token).await;
    let source_conversation = so["conversation_id"].as_str().expect("conversation").to_owned();

    // Merge: one customer, one conversation with both threads.
    let (status, merge) = s
        .post(
            &format!("/api/v1/customers/{target}/merge"),
            &s.admin_token,
            json!({"source_customer_id": source}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{merge}");
    assert_eq!(
        (merge["moved_identities"].as_i64(), merge["moved_messages"].as_i64()),
        (Some(1), Some(1))
    );
    let merge_id = merge["id"].as_str().expect("merge id").to_owned();
    let list = conversations(&s, 1).await;
    assert_eq!(list["items"][0]["id"].as_str(), Some(target_conversation.as_str()));
    assert_eq!(
        thread_bodies(&s, &target_conversation).await,
        ["from the shop", "from loyalty"]
    );
    assert_eq!(
        customer_id(&s, "ana-loyalty").await,
        target,
        "the loyalty id now finds the merged customer"
    );
    let (_, merged) = s.get(&format!("/api/v1/customers/{source}"), &s.admin_token).await;
    assert_eq!(merged["merged_into"].as_str(), Some(target.as_str()));
    // New messages on the merged identity land in the one conversation.
    s.deliver(
        &loyalty,
        &message("b-2", json!({"id": "ana-loyalty"}), "after the merge"),
    )
    .await;
    s.until(&format!("/api/v1/conversations/{target_conversation}/messages"), |b| {
        b["items"].as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    let (status, body) = s
        .post(
            &format!("/api/v1/customers/{target}/merge"),
            &s.admin_token,
            json!({"source_customer_id": source}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "customer_already_merged"));

    // Undo: each side gets back its identities, messages and conversation.
    let (status, undone) = s
        .post(
            &format!("/api/v1/customer-merges/{merge_id}/undo"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{undone}");
    assert!(undone["undone_at"].is_string());
    conversations(&s, 2).await;
    assert_eq!(thread_bodies(&s, &source_conversation).await, ["from loyalty"]);
    assert_eq!(
        thread_bodies(&s, &target_conversation).await,
        ["from the shop", "after the merge"],
        "what arrived after the merge stays where it was answered"
    );
    assert_eq!(customer_id(&s, "ana-loyalty").await, source, "the identity went back");
    let (_, restored) = s.get(&format!("/api/v1/customers/{source}"), &s.admin_token).await;
    assert!(restored["merged_into"].is_null());
    let (status, body) = s
        .post(
            &format!("/api/v1/customer-merges/{merge_id}/undo"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "merge_already_undone"));

    // Both steps are in the audit log with what changed.
    let (_, audit) = s.get("/api/v1/audit?action=customer.merged", &s.admin_token).await;
    assert_eq!(audit["items"][0]["after"]["merge_id"].as_str(), Some(merge_id.as_str()));
    let (_, audit) = s
        .get("/api/v1/audit?action=customer.merge_undone", &s.admin_token)
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
    let (status, body) = s
        .post(
            &format!("/api/v1/customers/{target}/merge"),
            &s.admin_token,
            json!({"source_customer_id": target}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "cannot_merge_into_itself")
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn new_conversations_go_round_robin_to_online_agents_within_their_capacity() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let mut agents = Vec::new();
    for (n, capacity) in [(1, 2), (2, 1)] {
        let (email, password) = (format!("agent{n}@demo.switchboard.local"), {
            let demo = s.server.demo.as_ref().expect("demo");
            demo.users
                .iter()
                .find(|u| u.email == format!("agent{n}@demo.switchboard.local"))
                .expect("agent")
                .password
                .clone()
        });
        let token = s.token_for(&email, &password).await;
        let (status, me) = s
            .post(
                "/api/v1/presence",
                &token,
                json!({"status": "online", "capacity": capacity}),
            )
            .await;
        assert_eq!(
            (status, me["status"].as_str()),
            (StatusCode::OK, Some("online")),
            "{me}"
        );
        agents.push((me["user_id"].as_str().expect("id").to_owned(), capacity, token));
    }
    let mut assignees = Vec::new();
    for n in 0..4 {
        s.deliver(
            &shop,
            &message(&format!("m-{n}"), json!({"id": format!("customer-{n}")}), "hello"),
        )
        .await;
        let list = conversations(&s, n + 1).await;
        let newest = &list["items"][0];
        assignees.push(newest["assignee_id"].as_str().map(str::to_owned));
    }
    assert_ne!(
        assignees[0], assignees[1],
        "round robin: the second new conversation goes to the other agent"
    );
    for (id, capacity, _) in &agents {
        let taken = assignees.iter().filter(|a| a.as_deref() == Some(id.as_str())).count();
        assert_eq!(
            taken as i64, *capacity,
            "agent {id} takes up to its capacity: {assignees:?}"
        );
    }
    assert_eq!(
        assignees[3], None,
        "nobody has capacity left: the fourth waits unassigned"
    );
    let (_, presence) = s.get("/api/v1/presence", &s.admin_token).await;
    assert!(
        presence["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|p| p["open_assigned"] == p["capacity"]),
        "{presence}"
    );

    // A busy agent gets nothing new, even with capacity.
    let (_, token) = (&agents[0].0, &agents[0].2);
    s.post("/api/v1/presence", token, json!({"status": "busy", "capacity": 10}))
        .await;
    s.deliver(&shop, &message("m-9", json!({"id": "customer-9"}), "hello"))
        .await;
    let list = conversations(&s, 5).await;
    assert!(list["items"][0]["assignee_id"].is_null());
    let (status, body) = s.post("/api/v1/presence", token, json!({"status": "away"})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_status")
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn typing_and_presence_reach_the_stream_live_without_taking_event_ids() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    s.deliver(&shop, &message("m-1", json!({"id": "u1"}), "hello")).await;
    let list = conversations(&s, 1).await;
    let conversation = list["items"][0]["id"].as_str().expect("id").to_owned();
    let mut stream = EventStream::open(&s, None).await;

    let (status, _) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/typing"),
            &s.admin_token,
            json!({"on": true}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (id, kind, data) = stream.next_frame().await;
    assert_eq!(
        (
            id,
            kind.as_str(),
            data["conversation_id"].as_str(),
            data["data"]["on"].as_bool()
        ),
        (None, "typing", Some(conversation.as_str()), Some(true))
    );
    let (_, me) = s
        .post("/api/v1/presence", &s.admin_token, json!({"status": "busy"}))
        .await;
    let (id, kind, data) = stream.next_frame().await;
    assert_eq!(
        (id, kind.as_str(), data["data"]["status"].as_str()),
        (None, "presence", Some("busy"))
    );
    assert_eq!(data["data"]["user_id"], me["user_id"]);

    // Ephemeral events take no sequence numbers and are not replayed.
    s.deliver(&shop, &message("m-2", json!({"id": "u1"}), "again")).await;
    let (created, kind, _) = stream.next().await;
    assert_eq!(kind, "message.created");
    drop(stream);
    let mut replay = EventStream::open(&s, Some(&(created - 1).to_string())).await;
    let (id, kind, _) = replay.next_frame().await;
    assert_eq!((id, kind.as_str()), (Some(created), "message.created"));
    let (status, body) = s
        .post(
            &format!("/api/v1/conversations/{}/typing", sb_core::new_id()),
            &s.admin_token,
            json!({"on": true}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "conversation_not_found"));
    s.server.shutdown().await;
}
