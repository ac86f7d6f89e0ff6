//! WhatsApp end to end against the WhatsApp Cloud API simulator (`sb-sim`, written from the
//! provider's documentation): the handshake, signatures, batched and duplicate deliveries,
//! statuses overtaking our bookkeeping, the 24-hour window with templates, and scenario 3
//! with WhatsApp as the channel the chat moves to.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use sb_engine::{ManualClock, Time};
use sb_sim::clock::SimClock;
use sb_sim::whatsapp::{WhatsAppConfig, WhatsAppSim};
use serde_json::{Value, json};

use crate::harness::{TestServer, code};
use crate::widget_client::{Widget, demo_website_token};

const HANDOFF_TEMPLATE: &str =
    "Hi {{1}}, this is {{2}}: we are continuing your website chat here (ref #{{3}}). Reply to this message to go on.";

pub(crate) struct Setup {
    pub s: TestServer,
    pub sim: WhatsAppSim,
    pub account: String,
    pub clock: Option<Arc<ManualClock>>,
    pub sim_clock: SimClock,
}

async fn setup(manual: bool) -> Setup {
    setup_with(manual, false).await
}

/// A server (with the demo's journeys when `journeys`) and a WhatsApp account on its own
/// simulator.
pub(crate) async fn setup_with(manual: bool, journeys: bool) -> Setup {
    let clock = manual.then(|| ManualClock::new(sb_core::Clock::now_ms(&sb_core::SystemClock)));
    let time = clock.clone().map_or(Time::System, Time::Manual);
    let s = if journeys {
        TestServer::start_with_journeys(time, |_| {}).await
    } else {
        TestServer::start_at(time, |_| {}).await
    };
    let sim_clock = SimClock::new();
    if let Some(c) = &clock {
        sim_clock.set(sb_core::Clock::now_ms(c.as_ref()));
    }
    let config = WhatsAppConfig {
        app_secret: "demo-app-secret".into(),
        verify_token: "verify-me".into(),
        access_token: "wa-access-token".into(),
        phone_number_id: "990000000000001".into(),
        display_phone_number: "15550001111".into(),
        waba_id: "880000000000001".into(),
        webhook_url: None,
    };
    let sim = WhatsAppSim::start(config, sim_clock.clone())
        .await
        .expect("simulator starts");
    let (status, created) = s
        .post(
            "/api/v1/channel-accounts",
            &s.admin_token,
            json!({
                "channel": "whatsapp",
                "name": "WhatsApp +1 555 000 1111",
                "settings": {
                    "phone_number_id": "990000000000001",
                    "waba_id": "880000000000001",
                    "api_base_url": sim.base_url(),
                    "handoff_template": {"name": "handoff_follow_up", "language": "en_US"}
                },
                "secrets": {"app_secret": "demo-app-secret", "access_token": "wa-access-token", "verify_token": "verify-me"}
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let account = created["id"].as_str().expect("id").to_owned();
    let hook = created["webhook_url"].as_str().expect("webhook url").to_owned();
    control(&s, &sim, "/_sim/whatsapp/webhook", json!({ "url": hook })).await;
    control(
        &s,
        &sim,
        "/_sim/whatsapp/templates",
        json!({"name": "handoff_follow_up", "language": "en_US", "category": "UTILITY", "body": HANDOFF_TEMPLATE}),
    )
    .await;
    let (status, synced) = s
        .post(
            &format!("/api/v1/channel-accounts/{account}/templates/sync"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{synced}");
    assert!(synced["items"].as_array().is_some_and(|t| t.len() >= 3), "{synced}");
    Setup {
        s,
        sim,
        account,
        clock,
        sim_clock,
    }
}

pub(crate) async fn control(s: &TestServer, sim: &WhatsAppSim, path: &str, body: Value) -> Value {
    s.sim_post(sim.control(), path, body).await
}

async fn sim_get(s: &TestServer, sim: &WhatsAppSim, path: &str) -> Value {
    s.sim_get(sim.control(), path).await
}

/// What our server sent to the provider (message sends only: the simulator logs every call,
/// template listings too), once `n` are there.
pub(crate) async fn sent(s: &TestServer, sim: &WhatsAppSim, n: usize) -> Vec<Value> {
    s.provider_calls(sim.control(), "/_sim/whatsapp/sent", n, |r| {
        r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/messages"))
    })
    .await
}

async fn whatsapp_conversations(s: &TestServer, n: usize) -> Vec<Value> {
    let list = s
        .until("/api/v1/conversations?channel=whatsapp", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == n)
        })
        .await;
    list["items"].as_array().expect("items").clone()
}

async fn thread(s: &TestServer, conversation: &str, n: usize) -> Vec<Value> {
    let body = s
        .until(&format!("/api/v1/conversations/{conversation}/messages"), |b| {
            b["items"].as_array().is_some_and(|a| a.len() == n)
        })
        .await;
    body["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn whatsapp_webhooks_are_verified_batched_deduplicated_and_statuses_apply_in_order() {
    let t = setup(false).await;
    let (s, sim) = (&t.s, &t.sim);

    // The GET handshake echoes the challenge only for our verify token.
    let ok = control(s, sim, "/_sim/whatsapp/verify-webhook", json!({})).await;
    assert_eq!(
        (ok["status"].as_u64(), ok["echoed"].as_bool()),
        (Some(200), Some(true)),
        "{ok}"
    );
    let wrong = control(
        s,
        sim,
        "/_sim/whatsapp/verify-webhook",
        json!({"verify_token": "wrong"}),
    )
    .await;
    assert_eq!(
        (wrong["status"].as_u64(), wrong["echoed"].as_bool()),
        (Some(403), Some(false)),
        "{wrong}"
    );

    // A customer writes (non-ASCII, sent escaped and signed over the escaped bytes).
    let first = control(
        s,
        sim,
        "/_sim/whatsapp/customer-message",
        json!({"from": "34600111222", "name": "Ana López", "text": "Hola, ¿tienen la talla M? 👍"}),
    )
    .await;
    assert_eq!(first["delivered_status"].as_u64(), Some(200), "{first}");
    let conversation = whatsapp_conversations(s, 1).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let messages = thread(s, &conversation, 1).await;
    assert_eq!(messages[0]["body"], "Hola, ¿tienen la talla M? 👍");
    let (_, customer) = s.get("/api/v1/customers?q=34600111222", &s.admin_token).await;
    assert_eq!(customer["items"][0]["name"], "Ana López");

    // A bad signature is refused and stores nothing; duplicates are dropped.
    control(s, sim, "/_sim/faults", json!({"bad_signature": true})).await;
    let refused = control(
        s,
        sim,
        "/_sim/whatsapp/customer-message",
        json!({"from": "34600111222", "text": "forged"}),
    )
    .await;
    assert_eq!(refused["delivered_status"].as_u64(), Some(401), "{refused}");
    control(s, sim, "/_sim/faults", json!({"duplicate_webhooks": true})).await;
    control(
        s,
        sim,
        "/_sim/whatsapp/customer-message",
        json!({"from": "34600111222", "text": "once"}),
    )
    .await;
    control(s, sim, "/_sim/faults", json!({})).await;
    // The duplicate (Meta's retry: the same bytes, the same signature) was acknowledged with
    // 200, so the provider stops retrying.
    let deliveries = sim_get(s, sim, "/_sim/whatsapp/deliveries").await;
    let statuses: Vec<u64> = deliveries
        .as_array()
        .expect("deliveries")
        .iter()
        .filter_map(|d| d["status"].as_u64())
        .collect();
    assert!(statuses.iter().all(|st| *st == 200 || *st == 401), "{statuses:?}");
    // Several messages in one POST are all handled.
    control(
        s,
        sim,
        "/_sim/whatsapp/batch",
        json!({"messages": [
            {"from": "34600111222", "text": "batched one"},
            {"from": "34600999888", "name": "Bea", "text": "batched two"}
        ]}),
    )
    .await;
    let bodies: Vec<String> = thread(s, &conversation, 3)
        .await
        .iter()
        .map(|m| m["body"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(bodies[1..], ["once".to_owned(), "batched one".to_owned()]);
    whatsapp_conversations(s, 2).await;

    // Statuses sent at once can overtake our own record of the send: they still apply.
    control(s, sim, "/_sim/whatsapp/options", json!({"status_delay_ms": 0})).await;
    // The agent answers inside the window; the provider's statuses move it forward only.
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let (status, reply) = s.post(&path, &s.admin_token, json!({"text": "Sí, en azul."})).await;
    assert_eq!(
        (status, reply["channel"].as_str()),
        (StatusCode::CREATED, Some("whatsapp")),
        "{reply}"
    );
    let reply_id = reply["id"].as_str().expect("id");
    let request = &sent(s, sim, 1).await[0];
    assert_eq!(request["body"]["to"], "34600111222");
    assert_eq!(request["body"]["text"]["body"], "Sí, en azul.");
    assert_eq!(request["body"]["biz_opaque_callback_data"], reply_id);
    assert_eq!(request["headers"]["authorization"], "Bearer wa-access-token");
    s.until_message(&conversation, reply_id, "delivered").await;
    let wamid = request["wamid"].as_str().expect("wamid");
    control(
        s,
        sim,
        "/_sim/whatsapp/status",
        json!({"message_id": wamid, "status": "read"}),
    )
    .await;
    s.until_message(&conversation, reply_id, "read").await;
    control(
        s,
        sim,
        "/_sim/whatsapp/status",
        json!({"message_id": wamid, "status": "delivered"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.until_message(&conversation, reply_id, "read").await;

    // Media arrives as an id: fetched through the media API into the attachment store.
    control(
        s,
        sim,
        "/_sim/whatsapp/customer-message",
        json!({"from": "34600111222", "type": "image", "caption": "este modelo", "mime_type": "image/png"}),
    )
    .await;
    let messages = s
        .until(&format!("/api/v1/conversations/{conversation}/messages"), |b| {
            b["items"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|m| m["attachments"].as_array().is_some_and(|f| !f.is_empty()))
            })
        })
        .await;
    let with_file = messages["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|m| m["attachments"].as_array().is_some_and(|f| !f.is_empty()))
        .cloned()
        .expect("a message with its file");
    assert_eq!(with_file["body"], "📷 Image: este modelo");
    let url = format!(
        "{}{}",
        s.base,
        with_file["attachments"][0]["url"].as_str().expect("url")
    );
    let file = s
        .client
        .get(&url)
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .expect("download");
    assert_eq!(file.headers()["content-type"], "image/png");
    assert!(file.bytes().await.expect("bytes").starts_with(b"\x89PNG"));

    // An agent sends a file: the provider gets a signed, expiring link to it.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    let upload: Value = s
        .client
        .post(format!("{}/api/v1/attachments?filename=navy.png", s.base))
        .bearer_auth(&s.admin_token)
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    let (status, with_photo) = s
        .post(
            &path,
            &s.admin_token,
            json!({"text": "This one?", "attachment_ids": [upload["id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{with_photo}");
    let request = sent(s, sim, 2).await[1].clone();
    assert_eq!(
        (
            request["body"]["type"].as_str(),
            request["body"]["image"]["caption"].as_str()
        ),
        (Some("image"), Some("This one?"))
    );
    let link = request["body"]["image"]["link"].as_str().expect("link").to_owned();
    let fetched = s.client.get(&link).send().await.expect("fetch");
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.bytes().await.expect("bytes").to_vec(), png);
    let tampered = link.replace("sig=", "sig=00");
    assert_eq!(
        s.client.get(&tampered).send().await.expect("fetch").status(),
        StatusCode::NOT_FOUND
    );
    let (status, body) = s
        .post(
            &path,
            &s.admin_token,
            json!({"text": "again", "attachment_ids": [upload["id"]]}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "attachment_not_found")
    );

    // Marketing stop and resume (WhatsApp's own control, and the STOP keyword) are recorded
    // as the customer's marketing consent on WhatsApp.
    let customer_id = customer["items"][0]["id"].as_str().expect("customer id").to_owned();
    let consent = |profile: &Value| {
        profile["consents"]
            .as_array()
            .and_then(|list| {
                list.iter()
                    .find(|c| c["channel"] == "whatsapp" && c["purpose"] == "marketing")
                    .cloned()
            })
            .map(|c| (c["granted"].as_bool(), c["source"].as_str().map(str::to_owned)))
    };
    control(
        s,
        sim,
        "/_sim/whatsapp/user-preferences",
        json!({"wa_id": "34600111222", "value": "stop"}),
    )
    .await;
    let profile = s
        .until(&format!("/api/v1/customers/{customer_id}"), |p| consent(p).is_some())
        .await;
    assert_eq!(
        consent(&profile),
        Some((Some(false), Some("whatsapp_preferences".to_owned())))
    );
    control(
        s,
        sim,
        "/_sim/whatsapp/user-preferences",
        json!({"wa_id": "34600111222", "value": "resume"}),
    )
    .await;
    s.until(&format!("/api/v1/customers/{customer_id}"), |p| {
        consent(p).is_some_and(|c| c.0 == Some(true))
    })
    .await;
    control(
        s,
        sim,
        "/_sim/whatsapp/customer-message",
        json!({"from": "34600111222", "text": " stop "}),
    )
    .await;
    let profile = s
        .until(&format!("/api/v1/customers/{customer_id}"), |p| {
            consent(p).is_some_and(|c| c.0 == Some(false))
        })
        .await;
    assert_eq!(consent(&profile), Some((Some(false), Some("keyword".to_owned()))));

    // A malformed body with a valid signature is refused with its code.
    let account = &t.account;
    let body = br#"{"object":"page","entry":[]}"#.to_vec();
    let signature = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"demo-app-secret").expect("key");
        mac.update(&body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let (status, resp) = s
        .raw_post(
            &format!("{}/hooks/whatsapp/{account}", s.base),
            vec![("x-hub-signature-256", signature)],
            body,
        )
        .await;
    assert_eq!((status, code(&resp)), (StatusCode::BAD_REQUEST, "malformed_payload"));
    t.sim.shutdown().await;
    t.s.server.shutdown().await;
}

#[tokio::test]
async fn outside_the_24_hour_window_free_text_is_refused_and_a_template_goes_through() {
    let t = setup(true).await;
    let (s, sim) = (&t.s, &t.sim);
    control(
        s,
        sim,
        "/_sim/whatsapp/customer-message",
        json!({"from": "34600111222", "name": "Ana", "text": "¿Llegó mi pedido?"}),
    )
    .await;
    let conversation = whatsapp_conversations(s, 1).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let (status, _) = s.post(&path, &s.admin_token, json!({"text": "Mañana."})).await;
    assert_eq!(status, StatusCode::CREATED);
    sent(s, sim, 1).await;

    // 25 hours later, on both clocks.
    let day = 25 * 3_600_000;
    t.clock.as_ref().expect("manual clock").advance(day);
    t.sim_clock.advance(day);
    let (_, view) = s
        .get(&format!("/api/v1/conversations/{conversation}"), &s.admin_token)
        .await;
    let option = view["reply_options"]
        .as_array()
        .expect("options")
        .iter()
        .find(|o| o["channel_account_id"] == t.account.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (option["allowed"].as_bool(), option["reason"].as_str()),
        (Some(false), Some("reply_window_closed"))
    );
    let (status, body) = s.post(&path, &s.admin_token, json!({"text": "¿Sigues ahí?"})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "reply_window_closed")
    );
    for (template, expected) in [
        (
            json!({"name": "order_update", "language": "en_US", "parameters": ["Ana"]}),
            "template_parameters_mismatch",
        ),
        (
            json!({"name": "no_such", "language": "en_US", "parameters": []}),
            "template_not_found",
        ),
    ] {
        let (status, body) = s.post(&path, &s.admin_token, json!({"template": template})).await;
        assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, expected));
    }
    let (status, message) = s
        .post(
            &path,
            &s.admin_token,
            json!({"template": {"name": "order_update", "language": "en_US", "parameters": ["Ana", "1042"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert_eq!(message["body"], "Hi Ana, your order 1042 is on its way.");
    let requests = sent(s, sim, 2).await;
    assert_eq!(requests[1]["body"]["type"], "template");
    assert_eq!(requests[1]["body"]["template"]["name"], "order_update");
    s.until_message(&conversation, message["id"].as_str().expect("id"), "delivered")
        .await;
    // Only the customer's reply opens the window again.
    control(
        s,
        sim,
        "/_sim/whatsapp/customer-message",
        json!({"from": "34600111222", "text": "¡Gracias!"}),
    )
    .await;
    thread(s, &conversation, 4).await;
    let (status, _) = s.post(&path, &s.admin_token, json!({"text": "De nada."})).await;
    assert_eq!(status, StatusCode::CREATED);
    // She changes her number: the same customer, and replies go to the new one.
    control(
        s,
        sim,
        "/_sim/whatsapp/customer-message",
        json!({"from": "34600111222", "type": "system", "new_wa_id": "34600999000"}),
    )
    .await;
    thread(s, &conversation, 6).await;
    let (status, _) = s
        .post(&path, &s.admin_token, json!({"text": "Noted your new number."}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let requests = sent(s, sim, 4).await;
    assert_eq!(requests[3]["body"]["to"], "34600999000");
    t.sim.shutdown().await;
    t.s.server.shutdown().await;
}

/// Scenario 3 on WhatsApp: a website chat moves to WhatsApp when the customer leaves the
/// desk; the customer continues from the phone and the agent keeps one thread.
#[tokio::test]
async fn scenario_03_handoff_whatsapp() {
    let t = setup(false).await;
    let (s, sim) = (&t.s, &t.sim);
    let w = Widget::start(s, &demo_website_token(s)).await;
    let target = w.settings["handoff"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|h| h["channel"] == "whatsapp")
        .cloned()
        .expect("WhatsApp is offered");
    assert_eq!(target["address_kind"], "phone");
    w.post("/widget/v1/contact", json!({"name": "Grace Hopper"})).await;
    w.say("g-1", "Do you have the rain jacket in M?").await;
    let conversation = s
        .until("/api/v1/conversations?channel=widget", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/api/v1/conversations/{conversation}/messages");
    s.post(&path, &s.admin_token, json!({"text": "Yes! Shall I reserve one?"}))
        .await;

    // She leaves the desk and continues on WhatsApp: the window there is closed, so the
    // first message is the handoff template, quoting the conversation.
    let (status, body) = w
        .post(
            "/widget/v1/handoff",
            json!({"channel_account_id": t.account, "address": "+34 600 111 222"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let request = &sent(s, sim, 1).await[0];
    assert_eq!(request["body"]["to"], "34600111222");
    assert_eq!(request["body"]["template"]["name"], "handoff_follow_up");
    let reference = sb_inbox::widget::conversation_ref(&conversation);
    let parameters = &request["body"]["template"]["components"][0]["parameters"];
    assert_eq!(
        parameters,
        &json!([{"type": "text", "text": "Grace"}, {"type": "text", "text": "Demo Shop"}, {"type": "text", "text": reference}])
    );

    // She answers from the phone: same conversation, full history; the agent's next reply
    // goes to WhatsApp as free text (the window is open now).
    control(
        s,
        sim,
        "/_sim/whatsapp/customer-message",
        json!({"from": "34600111222", "name": "Grace", "text": "Yes please, M."}),
    )
    .await;
    let messages = thread(s, &conversation, 5).await;
    let channels: Vec<&str> = messages.iter().map(|m| m["channel"].as_str().unwrap_or("")).collect();
    assert_eq!(channels, ["widget", "widget", "whatsapp", "widget", "whatsapp"]);
    assert_eq!(messages.last().expect("last")["body"], "Yes please, M.");
    let (status, reply) = s
        .post(&path, &s.admin_token, json!({"text": "Reserved, size M."}))
        .await;
    assert_eq!(
        (status, reply["channel"].as_str()),
        (StatusCode::CREATED, Some("whatsapp")),
        "{reply}"
    );
    let requests = sent(s, sim, 2).await;
    assert_eq!(requests[1]["body"]["text"]["body"], "Reserved, size M.");
    assert_eq!(whatsapp_conversations(s, 1).await[0]["id"], conversation.as_str());
    t.sim.shutdown().await;
    t.s.server.shutdown().await;
}

/// The demo starts the simulator in-process and wires its WhatsApp account to it: a person
/// plays the customer through the simulator and answers in the inbox.
#[tokio::test]
async fn the_demo_whatsapp_account_is_wired_to_its_simulator() {
    let s = TestServer::start().await;
    let demo = s.server.demo.as_ref().expect("demo").channels["whatsapp"].clone();
    let sim = demo["simulator_url"].as_str().expect("simulator url");
    let resp = s
        .client
        .post(format!("{sim}/_sim/whatsapp/customer-message"))
        .json(&json!({"from": "447700900123", "name": "Demo Customer", "text": "Is this thing on?"}))
        .send()
        .await
        .expect("simulator");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["delivered_status"].as_u64(), Some(200), "{body}");
    let conversation = whatsapp_conversations(&s, 1).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let (status, reply) = s.post(&path, &s.admin_token, json!({"text": "Loud and clear."})).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    s.until_message(&conversation, reply["id"].as_str().expect("id"), "delivered")
        .await;
    let (_, templates) = s
        .get(
            &format!(
                "/api/v1/channel-accounts/{}/templates",
                demo["account_id"].as_str().expect("id")
            ),
            &s.admin_token,
        )
        .await;
    assert!(
        templates["items"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "handoff_follow_up")),
        "{templates}"
    );
    s.server.shutdown().await;
}
