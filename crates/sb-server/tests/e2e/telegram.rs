//! Telegram end to end against the Bot API simulator (`sb-sim`): setWebhook on connecting,
//! the secret header, a shared contact linking the phone, photos fetched, blocks recorded
//! and a send to a blocked user failing with Telegram's reason.

use std::time::Duration;

use reqwest::StatusCode;
use sb_sim::clock::SimClock;
use sb_sim::telegram::{TelegramConfig, TelegramSim};
use serde_json::{Value, json};

use crate::harness::{TestServer, code};

async fn control(s: &TestServer, sim: &TelegramSim, path: &str, body: Value) -> Value {
    s.sim_post(sim.control(), path, body).await
}

async fn calls(s: &TestServer, sim: &TelegramSim, method: &str, n: usize) -> Vec<Value> {
    s.provider_calls(sim.control(), "/_sim/telegram/sent", n, |r| {
        r["method"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(method))
    })
    .await
}

#[tokio::test]
async fn telegram_connects_receives_links_a_shared_phone_and_reports_blocks() {
    let s = TestServer::start().await;
    let config = TelegramConfig::default();
    let sim = TelegramSim::start(config.clone(), SimClock::new())
        .await
        .expect("simulator");

    // A wrong bot token: the provider refuses (the admin's to fix: 422), and the account is not kept.
    let (status, body) = s
        .post(
            "/api/v1/channel-accounts",
            &s.admin_token,
            json!({"channel": "telegram", "name": "Bad bot", "settings": {"api_base_url": sim.base_url()},
                   "secrets": {"bot_token": "1:wrong", "secret_token": "s3cret"}}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "provider_refused"),
        "{body}"
    );
    let (_, accounts) = s.get("/api/v1/channel-accounts", &s.admin_token).await;
    assert!(!accounts.to_string().contains("Bad bot"));

    // Connecting sets the webhook with our URL and a secret token.
    let (status, created) = s
        .post(
            "/api/v1/channel-accounts",
            &s.admin_token,
            json!({"channel": "telegram", "name": "Demo bot", "settings": {"api_base_url": sim.base_url()},
                   "secrets": {"bot_token": config.bot_token, "secret_token": "s3cret-token_1"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let set = calls(&s, &sim, "setWebhook", 2)
        .await
        .pop()
        .expect("the accepted setWebhook");
    assert_eq!(set["body"]["url"], created["webhook_url"]);
    assert_eq!(set["body"]["secret_token"], "s3cret-token_1");

    let user = 5_550_001_111_i64;
    let sent = control(
        &s,
        &sim,
        "/_sim/telegram/customer-message",
        json!({"user_id": user, "first_name": "Ana", "last_name": "López", "text": "Hola, ¿hay stock?"}),
    )
    .await;
    assert_eq!(sent["delivered_status"].as_u64(), Some(200), "{sent}");
    let list = s
        .until("/api/v1/conversations?channel=telegram", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let conversation = list["items"][0]["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/conversations/{conversation}/messages");

    // A wrong secret header is refused and stores nothing.
    control(&s, &sim, "/_sim/faults", json!({"wrong_secret": true})).await;
    let refused = control(
        &s,
        &sim,
        "/_sim/telegram/customer-message",
        json!({"user_id": user, "first_name": "Ana", "text": "forged"}),
    )
    .await;
    assert_eq!(refused["delivered_status"].as_u64(), Some(401), "{refused}");
    control(&s, &sim, "/_sim/faults", json!({})).await;

    // The agent answers; she shares her own number, which links her phone identity.
    let (status, reply) = s.post(&path, &s.admin_token, json!({"text": "Sí, en M."})).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    s.until_message(&conversation, reply["id"].as_str().expect("id"), "sent")
        .await;
    let message = &calls(&s, &sim, "sendMessage", 1).await[0];
    assert_eq!(
        (message["body"]["chat_id"].as_i64(), message["body"]["text"].as_str()),
        (Some(user), Some("Sí, en M."))
    );
    control(
        &s,
        &sim,
        "/_sim/telegram/customer-message",
        json!({"user_id": user, "first_name": "Ana", "type": "contact", "phone_number": "34600111222"}),
    )
    .await;
    let (_, found) = s.get("/api/v1/customers?q=%2B34600111222", &s.admin_token).await;
    let mut customer = found["items"][0]["id"].as_str().map(str::to_owned);
    for _ in 0..100 {
        if customer.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (_, found) = s.get("/api/v1/customers?q=%2B34600111222", &s.admin_token).await;
        customer = found["items"][0]["id"].as_str().map(str::to_owned);
    }
    let customer = customer.expect("the shared phone is found");
    let (_, profile) = s.get(&format!("/api/v1/customers/{customer}"), &s.admin_token).await;
    assert_eq!(profile["conversation_id"], conversation.as_str());

    // A photo is fetched through getFile into the attachment store.
    control(
        &s,
        &sim,
        "/_sim/telegram/customer-message",
        json!({"user_id": user, "first_name": "Ana", "type": "photo", "caption": "esta"}),
    )
    .await;
    let thread = s
        .until(&path, |b| {
            b["items"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|m| m["attachments"].as_array().is_some_and(|f| !f.is_empty()))
            })
        })
        .await;
    let photo = thread["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|m| m["attachments"].as_array().is_some_and(|f| !f.is_empty()))
        .cloned()
        .expect("the photo");
    assert_eq!(photo["body"], "📷 Photo: esta");

    // She blocks the bot: recorded, and the next reply fails with Telegram's reason.
    control(
        &s,
        &sim,
        "/_sim/telegram/block",
        json!({"user_id": user, "blocked": true}),
    )
    .await;
    let profile = s
        .until(&format!("/api/v1/customers/{customer}"), |p| {
            p["consents"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["channel"] == "telegram" && c["granted"] == false))
        })
        .await;
    assert!(profile["consents"].to_string().contains("telegram_block"));
    let (_, late) = s.post(&path, &s.admin_token, json!({"text": "¿Sigues ahí?"})).await;
    let failed = s
        .until_message(&conversation, late["id"].as_str().expect("id"), "failed")
        .await;
    assert_eq!(failed["error_code"], "403");
    assert!(
        failed["error_message"].as_str().is_some_and(|m| m.contains("blocked")),
        "{failed}"
    );
    sim.shutdown().await;
    s.server.shutdown().await;
}

/// The demo connects a bot to the Telegram simulator started in-process.
#[tokio::test]
async fn the_demo_telegram_bot_is_wired_to_its_simulator() {
    let s = TestServer::start().await;
    let demo = s.server.demo.as_ref().expect("demo").channels["telegram"].clone();
    let sim = demo["simulator_url"].as_str().expect("simulator url");
    let body: Value = s
        .client
        .post(format!("{sim}/_sim/telegram/customer-message"))
        .json(&json!({"user_id": 42, "first_name": "Demo", "text": "hello bot"}))
        .send()
        .await
        .expect("simulator")
        .json()
        .await
        .expect("json");
    assert_eq!(body["delivered_status"].as_u64(), Some(200), "{body}");
    s.until("/api/v1/conversations?channel=telegram", |b| {
        b["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    s.server.shutdown().await;
}
