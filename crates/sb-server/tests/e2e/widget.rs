//! The website chat widget end to end, through the headless widget client: echo ids and
//! resume (nothing lost or repeated), typing both ways, pre-chat and identify (only a valid
//! identifier_hash merges), attachments, bad input, and scenario 3 (channel handoff).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{EventStream, Receiver, TestServer, code};
use crate::widget_client::{Widget, demo_website_token};

fn api_message(id: &str, from: Value, text: &str) -> Value {
    json!({"type": "message", "id": id, "from": from, "text": text})
}

fn demo_hmac_secret(s: &TestServer) -> String {
    let demo = s.server.demo.as_ref().expect("demo");
    demo.channels["widget"]["hmac_secret"]
        .as_str()
        .expect("hmac secret")
        .to_owned()
}

/// The one conversation on `channel`, once it exists.
async fn conversation_on(s: &TestServer, channel: &str, expected: usize) -> Vec<String> {
    let list = s
        .until(&format!("/api/v1/conversations?channel={channel}"), |b| {
            b["items"].as_array().is_some_and(|a| a.len() == expected)
        })
        .await;
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn agent_thread(s: &TestServer, conversation: &str) -> Vec<Value> {
    let (status, thread) = s
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{thread}");
    thread["items"].as_array().expect("items").clone()
}

fn ids(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn widget_chat_shows_each_message_once_in_order_across_reconnects_with_typing_both_ways() {
    let s = TestServer::start().await;
    let w = Widget::start(&s, &demo_website_token(&s)).await;
    assert_eq!(w.settings["title"], "Demo Shop");
    let view = w.conversation().await;
    assert_eq!(view["messages"], json!([]));
    let mut socket = w.connect(view["last_seq"].as_i64()).await;
    let presence = socket.next().await;
    assert_eq!(presence, json!({"type": "presence", "agents_online": false}));

    // A retry with the same echo id (the answer was lost) stores nothing new.
    let first = w.say("echo-1", "Is the blue jacket in stock?").await;
    assert_eq!(
        (
            first["echo_id"].as_str(),
            first["direction"].as_str(),
            first["author"].as_str()
        ),
        (Some("echo-1"), Some("inbound"), Some("customer"))
    );
    let (status, again) = w
        .post(
            "/widget/v1/messages",
            json!({"echo_id": "echo-1", "text": "Is the blue jacket in stock?"}),
        )
        .await;
    assert_eq!((status, &again["message"]["id"]), (StatusCode::OK, &first["id"]));
    let frame = socket.next_of("message.created").await;
    assert_eq!(frame["message"]["id"], first["id"]);
    assert_eq!(frame["message"]["echo_id"], "echo-1");
    let conversation = conversation_on(&s, "widget", 1).await.remove(0);

    // The agent answers on the widget (the channel the customer last used) and types.
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let (status, reply) = s.post(&path, &s.admin_token, json!({"text": "Yes, in M and L."})).await;
    assert_eq!(
        (status, reply["channel"].as_str()),
        (StatusCode::CREATED, Some("widget")),
        "{reply}"
    );
    let frame = socket.next_of("message.created").await;
    assert_eq!(
        (
            &frame["message"]["id"],
            frame["message"]["direction"].as_str(),
            frame["message"]["author"].as_str()
        ),
        (&reply["id"], Some("outbound"), Some("agent"))
    );
    let typing_path = format!("/api/v1/conversations/{conversation}/typing");
    s.post(&typing_path, &s.admin_token, json!({"on": true})).await;
    assert_eq!(socket.next_of("typing").await["on"], true);

    // The visitor's typing reaches the agents' stream.
    let mut agents = EventStream::open(&s, None).await;
    let (status, _) = w.post("/widget/v1/typing", json!({"on": true})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (id, kind, data) = loop {
        let frame = agents.next_frame().await;
        if frame.1 == "typing" {
            break frame;
        }
    };
    assert_eq!(
        (
            id,
            kind.as_str(),
            data["conversation_id"].as_str(),
            data["data"]["author"].as_str()
        ),
        (None, "typing", Some(conversation.as_str()), Some("customer"))
    );

    // The socket drops; two replies arrive meanwhile; resuming gets exactly those.
    let resume = socket.last_seq;
    socket.close().await;
    let (_, second) = s
        .post(&path, &s.admin_token, json!({"text": "Shall I reserve one?"}))
        .await;
    let (_, third) = s.post(&path, &s.admin_token, json!({"text": "It is 49 EUR."})).await;
    let mut socket = w.connect(Some(resume)).await;
    let mut created = Vec::new();
    while let Some(frame) = socket.try_next(Duration::from_millis(800)).await {
        if frame["type"] == "message.created" {
            created.push(frame["message"]["id"].clone());
        }
    }
    assert_eq!(created, vec![second["id"].clone(), third["id"].clone()]);

    // Messages over the socket are acknowledged, once per echo id.
    let frame = json!({"type": "message", "echo_id": "echo-ws", "text": "Yes please, size M."});
    socket.send(frame.clone()).await;
    let ack = socket.next_of("ack").await;
    socket.send(frame).await;
    let ack_again = socket.next_of("ack").await;
    assert_eq!(ack["message"]["id"], ack_again["message"]["id"]);
    assert_eq!(ack["echo_id"], "echo-ws");

    // Seen: the agent's messages on the widget become read.
    s.until_message(&conversation, third["id"].as_str().expect("id"), "sent")
        .await;
    let (status, seen) = w.post("/widget/v1/seen", json!({})).await;
    assert_eq!((status, seen["updated"].as_i64()), (StatusCode::OK, Some(3)));
    s.until_message(&conversation, third["id"].as_str().expect("id"), "read")
        .await;

    // Reloading shows every message once, in order, as the agent's thread has them.
    let view = w.conversation().await;
    let expected = [
        first["id"].clone(),
        reply["id"].clone(),
        second["id"].clone(),
        third["id"].clone(),
        ack["message"]["id"].clone(),
    ];
    let expected: Vec<String> = expected.iter().map(|v| v.as_str().expect("id").to_owned()).collect();
    assert_eq!(ids(&view["messages"]), expected);
    let agent: Vec<String> = agent_thread(&s, &conversation)
        .await
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(agent, expected);
    socket.close().await;

    // The SSE fallback carries the same frames, resumable by Last-Event-ID.
    let url = format!("{}/widget/v1/events?token={}", s.base, w.token);
    let mut feed = EventStream::open_url(&s, &url, None, Some(&resume.to_string())).await;
    let mut seen_ids = Vec::new();
    while seen_ids.len() < 2 {
        let (_, _, data) = feed.next_frame().await;
        if data["type"] == "message.created" {
            seen_ids.push(data["message"]["id"].clone());
        }
    }
    assert_eq!(seen_ids, vec![second["id"].clone(), third["id"].clone()]);
    s.server.shutdown().await;
}

#[tokio::test]
async fn an_unverified_identify_never_merges_and_a_valid_identifier_hash_does() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let website = demo_website_token(&s);
    let secret = demo_hmac_secret(&s);
    let hash = |id: &str| sb_channels::widget::identifier_hash(&secret, id);

    // Ann is known from the shop app by her e-mail.
    let from = json!({"id": "ann", "email": "ann@example.com", "name": "Ann"});
    s.deliver(&shop, &api_message("a-1", from, "Where is my order?")).await;
    let ann_conversation = conversation_on(&s, "api", 1).await.remove(0);

    // Someone types Ann's e-mail into the pre-chat form: no merge, and it is not theirs.
    let stranger = Widget::start(&s, &website).await;
    let (status, body) = stranger
        .post(
            "/widget/v1/contact",
            json!({"name": "Not Ann", "email": "ANN@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["customer"]["name"].as_str(), &body["customer"]["email"]),
        (Some("Not Ann"), &Value::Null)
    );
    stranger.say("s-1", "show me the order").await;
    let (_, bad) = stranger
        .post("/widget/v1/contact", json!({"email": "not-an-email"}))
        .await;
    assert_eq!(code(&bad), "invalid_email");
    let view = stranger.conversation().await;
    assert_eq!(view["messages"].as_array().map(Vec::len), Some(1));
    let ann_thread = agent_thread(&s, &ann_conversation).await;
    assert_eq!(ann_thread.len(), 1, "the stranger's chat is not in Ann's thread");
    let (_, found) = s.get("/api/v1/customers?q=ann@example.com", &s.admin_token).await;
    assert_eq!(found["items"].as_array().map(Vec::len), Some(1), "{found}");

    // Ann signs in on the shop's site on her laptop: the site vouches with identifier_hash.
    let laptop = Widget::start(&s, &website).await;
    let (status, body) = laptop
        .post(
            "/widget/v1/identify",
            json!({"identifier": "cust-42", "identifier_hash": hash("cust-42"), "name": "Ann"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["verified"].as_bool(), &body["merged_into"]),
        (Some(true), &Value::Null)
    );
    laptop.say("l-1", "hi from my laptop").await;

    // The stranger claims cust-42 without a hash, or with a wrong one: nothing of Ann's.
    let (status, body) = stranger
        .post("/widget/v1/identify", json!({"identifier": "cust-42"}))
        .await;
    assert_eq!(
        (status, body["verified"].as_bool(), &body["merged_into"]),
        (StatusCode::OK, Some(false), &Value::Null)
    );
    let (status, body) = stranger
        .post(
            "/widget/v1/identify",
            json!({"identifier": "cust-42", "identifier_hash": hash("cust-43")}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_identifier_hash")
    );
    let view = stranger.conversation().await;
    assert_eq!(view["messages"].as_array().map(Vec::len), Some(1));

    // Ann on her phone, verified: becomes the laptop's customer and sees that chat.
    let phone = Widget::start(&s, &website).await;
    let (status, body) = phone
        .post(
            "/widget/v1/identify",
            json!({"identifier": "cust-42", "identifier_hash": hash("cust-42").to_uppercase()}),
        )
        .await;
    assert_eq!(
        (status, body["verified"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{body}"
    );
    assert!(body["merged_into"].is_string());
    let rotated = Widget {
        token: body["token"].as_str().expect("token").to_owned(),
        ..phone
    };
    let view = rotated.conversation().await;
    let bodies: Vec<&str> = view["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["hi from my laptop"]);
    let (_, audit) = s.get("/api/v1/audit?action=customer.merged", &s.admin_token).await;
    assert!(audit.to_string().contains("verified widget identify"), "{audit}");

    // A claim made first does not capture the real user later.
    let claimer = Widget::start(&s, &website).await;
    claimer
        .post("/widget/v1/identify", json!({"identifier": "cust-99"}))
        .await;
    claimer.say("c-1", "I am cust-99, honest").await;
    let real = Widget::start(&s, &website).await;
    let (_, body) = real
        .post(
            "/widget/v1/identify",
            json!({"identifier": "cust-99", "identifier_hash": hash("cust-99")}),
        )
        .await;
    assert_eq!(
        (body["verified"].as_bool(), &body["merged_into"]),
        (Some(true), &Value::Null)
    );
    assert_eq!(real.conversation().await["messages"], json!([]));

    // A widget that requires the hash refuses identify without one.
    let (status, strict) = s
        .post(
            "/api/v1/channel-accounts",
            &s.admin_token,
            json!({"channel": "widget", "name": "Strict site", "settings": {"hmac_mandatory": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{strict}");
    assert!(strict["secrets"]["hmac_secret"].is_string() && strict["secrets"]["token_key"].is_string());
    let visitor = Widget::start(&s, strict["id"].as_str().expect("id")).await;
    let (status, body) = visitor
        .post("/widget/v1/identify", json!({"identifier": "cust-42"}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "identifier_hash_required")
    );
    s.server.shutdown().await;
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

async fn upload(s: &TestServer, w: &Widget<'_>, name: &str, content_type: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let resp = s
        .client
        .post(format!("{}/widget/v1/attachments?filename={name}", s.base))
        .bearer_auth(&w.token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn widget_attachments_are_checked_and_only_their_uploader_can_use_them() {
    let s = TestServer::start().await;
    let w = Widget::start(&s, &demo_website_token(&s)).await;
    let (status, file) = upload(&s, &w, "photo.png", "image/png", PNG.to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!(
        (file["filename"].as_str(), file["size"].as_u64()),
        (Some("photo.png"), Some(PNG.len() as u64))
    );
    let (status, body) = w
        .post(
            "/widget/v1/messages",
            json!({"echo_id": "with-photo", "attachment_ids": [file["id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let attached = &body["message"]["attachments"][0];
    assert_eq!(
        (&attached["id"], attached["content_type"].as_str()),
        (&file["id"], Some("image/png"))
    );

    // The visitor downloads it; it is served so it can never run as a page.
    let url = format!("{}{}?token={}", s.base, attached["url"].as_str().expect("url"), w.token);
    let resp = s.client.get(&url).send().await.expect("download");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.bytes().await.expect("bytes").as_ref(), PNG);

    // The agent sees the attachment on the message.
    let conversation = conversation_on(&s, "widget", 1).await.remove(0);
    let thread = agent_thread(&s, &conversation).await;
    assert_eq!(thread[0]["attachments"][0]["id"], file["id"], "{thread:?}");
    let agent_url = format!(
        "{}{}",
        s.base,
        thread[0]["attachments"][0]["url"].as_str().expect("url")
    );
    let resp = s
        .client
        .get(&agent_url)
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .expect("download");
    assert_eq!(resp.bytes().await.expect("bytes").as_ref(), PNG);

    // Another visitor can neither fetch nor attach it; it cannot be attached twice.
    let other = Widget::start(&s, &demo_website_token(&s)).await;
    let (status, body) = other
        .get(&format!("/widget/v1/attachments/{}", file["id"].as_str().expect("id")))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "attachment_not_found"));
    let (status, body) = other
        .post(
            "/widget/v1/messages",
            json!({"echo_id": "steal", "attachment_ids": [file["id"]]}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "attachment_not_found")
    );
    let (status, _) = w
        .post(
            "/widget/v1/messages",
            json!({"echo_id": "twice", "attachment_ids": [file["id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Type and content are checked; an oversize file is refused.
    let (status, body) = upload(&s, &w, "page.html", "text/html", b"<script>alert(1)</script>".to_vec()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_attachment_type")
    );
    let (status, body) = upload(&s, &w, "fake.png", "image/png", b"MZ\x90\0 not a png".to_vec()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_attachment_type")
    );
    let big = vec![b'a'; sb_channels::widget::DEFAULT_MAX_UPLOAD_BYTES + 1];
    let (status, body) = upload(&s, &w, "big.txt", "text/plain", big).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "attachment_too_large")
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn bad_widget_requests_get_their_error_code_and_change_nothing() {
    let s = TestServer::start().await;
    let website = demo_website_token(&s);
    let w = Widget::start(&s, &website).await;

    let (status, body) = s.call(Method::GET, "/widget/v1/conversation", None, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "authentication_required")
    );
    let forged = w.token.replace(&w.visitor_id, &sb_core::new_id());
    let (status, body) = s
        .call(Method::GET, "/widget/v1/conversation", Some(&forged), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_visitor_token")
    );
    let (status, body) = s
        .call(
            Method::POST,
            "/widget/v1/sessions",
            None,
            Some(json!({"website_token": sb_core::new_id()})),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "widget_not_found"));
    // The API channel's id is not a website token.
    let (_, accounts) = s.get("/api/v1/channel-accounts", &s.admin_token).await;
    let api_id = accounts["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|a| a["channel"] == "api")
        .expect("demo api account")["id"]
        .clone();
    let (status, _) = s
        .call(
            Method::POST,
            "/widget/v1/sessions",
            None,
            Some(json!({"website_token": api_id})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    for (body, expected) in [
        (json!({"echo_id": "", "text": "x"}), "invalid_echo_id"),
        (json!({"echo_id": "a b", "text": "x"}), "invalid_echo_id"),
        (json!({"echo_id": "e", "text": "   "}), "empty_message"),
        (json!({"echo_id": "e", "text": "x".repeat(10_001)}), "text_too_long"),
        (
            json!({"echo_id": "e", "attachment_ids": [sb_core::new_id()]}),
            "attachment_not_found",
        ),
    ] {
        let (status, resp) = w.post("/widget/v1/messages", body).await;
        assert_eq!((status, code(&resp)), (StatusCode::UNPROCESSABLE_ENTITY, expected));
    }
    let resp = s
        .client
        .post(format!("{}/widget/v1/messages", s.base))
        .bearer_auth(&w.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(w.conversation().await["messages"], json!([]));

    // A widget limited to one site refuses pages of other origins.
    let (_, strict) = s
        .post(
            "/api/v1/channel-accounts",
            &s.admin_token,
            json!({"channel": "widget", "name": "Shop site", "settings": {"allowed_origins": ["https://shop.example"]}}),
        )
        .await;
    let start = |origin: &'static str| {
        s.client
            .post(format!("{}/widget/v1/sessions", s.base))
            .header("origin", origin)
            .json(&json!({"website_token": strict["id"]}))
            .send()
    };
    assert_eq!(
        start("https://evil.example").await.expect("request").status(),
        StatusCode::FORBIDDEN
    );
    let ok = start("https://shop.example").await.expect("request");
    assert_eq!(ok.status(), StatusCode::CREATED);
    assert_eq!(ok.headers()["access-control-allow-origin"], "*");
    let (status, body) = s
        .post(
            "/api/v1/channel-accounts",
            &s.admin_token,
            json!({"channel": "widget", "name": "Bad", "settings": {"allowed_origins": ["shop.example/"]}}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_settings")
    );

    // The script and the demo page are served.
    let script = s
        .client
        .get(format!("{}/widget.js", s.base))
        .send()
        .await
        .expect("script");
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/javascript")
    );
    let demo = s.server.demo.as_ref().expect("demo");
    let page_url = demo.channels["widget"]["page_url"].as_str().expect("page url");
    let page = s
        .client
        .get(page_url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains(&format!("data-website-token=\"{website}\"")), "{page}");
    assert!(page.contains(&format!("{}/widget.js", s.base)));
    s.server.shutdown().await;
}

/// Scenario 3: a website chat moves to another channel when the customer leaves the desk;
/// the customer continues there and the agent keeps the whole thread.
#[tokio::test]
async fn scenario_03_handoff() {
    let s = TestServer::start().await;
    let phone_app = Receiver::start().await;
    // The customer's messaging app, connected as a channel account (the WhatsApp issue adds
    // the same flow for WhatsApp).
    let app = s.api_account("messaging app", &phone_app.url).await;
    let w = Widget::start(&s, &demo_website_token(&s)).await;
    let targets = w.settings["handoff"].as_array().expect("handoff targets");
    assert!(
        targets
            .iter()
            .any(|t| t["channel_account_id"] == app.id.as_str() && t["address_kind"] == "api")
    );

    w.post(
        "/widget/v1/contact",
        json!({"name": "Grace", "email": "grace@example.com"}),
    )
    .await;
    let mut socket = w
        .connect(Some(w.conversation().await["last_seq"].as_i64().expect("seq")))
        .await;
    w.say("g-1", "Which size should I take for the rain jacket?").await;
    let conversation = conversation_on(&s, "widget", 1).await.remove(0);
    let path = format!("/api/v1/conversations/{conversation}/messages");
    s.post(&path, &s.admin_token, json!({"text": "What do you usually wear?"}))
        .await;

    // Grace leaves the desk: she picks the app and gives her id there.
    let (status, body) = w
        .post(
            "/widget/v1/handoff",
            json!({"channel_account_id": app.id, "address": "grace-phone"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"]["channel"], "api");
    let notice = loop {
        let frame = socket.next_of("message.created").await;
        if frame["message"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("continues on messaging app"))
        {
            break frame;
        }
    };
    assert_eq!(notice["message"]["channel"], "widget");

    // The first message on the app refers to the conversation.
    let reference = sb_inbox::widget::conversation_ref(&conversation);
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some((_, m)) = phone_app.received().into_iter().next() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the first message reaches the app");
    assert_eq!(
        (first["to"].as_str(), first["conversation_id"].as_str()),
        (Some("grace-phone"), Some(conversation.as_str()))
    );
    assert!(
        first["text"].as_str().expect("text").contains(&format!("#{reference}")),
        "{first}"
    );

    // Grace answers on her phone: same conversation, full history.
    let (status, _) = s
        .deliver(&app, &api_message("app-1", json!({"id": "grace-phone"}), "M, usually."))
        .await;
    assert!(status.is_success());
    let thread = s
        .until(&path, |b| b["items"].as_array().is_some_and(|a| a.len() == 5))
        .await;
    let lines: Vec<(String, String)> = thread["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| {
            (
                m["channel"].as_str().unwrap_or("").to_owned(),
                m["body"].as_str().unwrap_or("").chars().take(24).collect(),
            )
        })
        .collect();
    let channels: Vec<&str> = lines.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(channels, vec!["widget", "widget", "api", "widget", "api"], "{lines:?}");
    assert_eq!(lines[4].1, "M, usually.");
    assert_eq!(conversation_on(&s, "api", 1).await, vec![conversation.clone()]);

    // The agent's next reply goes to the app by default.
    let (status, reply) = s.post(&path, &s.admin_token, json!({"text": "Then take M."})).await;
    assert_eq!(
        (status, reply["channel_account_id"].as_str()),
        (StatusCode::CREATED, Some(app.id.as_str()))
    );
    s.until_message(&conversation, reply["id"].as_str().expect("id"), "sent")
        .await;
    assert_eq!(phone_app.received().len(), 2);

    // An agent can hand off too (audited); an address that is someone else's is refused.
    let other = Widget::start(&s, &demo_website_token(&s)).await;
    other.say("o-1", "hello").await;
    let ids = conversation_on(&s, "widget", 2).await;
    let other_conversation = ids
        .into_iter()
        .find(|c| *c != conversation)
        .expect("second conversation");
    let handoff = format!("/api/v1/conversations/{other_conversation}/handoff");
    let (status, body) = s
        .post(
            &handoff,
            &s.admin_token,
            json!({"channel_account_id": app.id, "address": "grace-phone"}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "identity_conflict"));
    let (status, body) = s
        .post(
            &handoff,
            &s.admin_token,
            json!({"channel_account_id": app.id, "address": "otto-phone"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, audit) = s
        .get("/api/v1/audit?action=conversation.handed_off", &s.admin_token)
        .await;
    assert!(audit.to_string().contains("otto-phone"), "{audit}");
    socket.close().await;
    s.server.shutdown().await;
}
