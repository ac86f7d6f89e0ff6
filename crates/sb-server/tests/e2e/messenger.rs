//! Messenger and Instagram end to end against the Meta Messenger-platform simulator
//! (`sb-sim`): page-scoped customers, our echoes recognised (one thread line per message),
//! delivery and read receipts, and the 24-hour / 7-day (HUMAN_AGENT) windows.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use sb_engine::{ManualClock, Time};
use sb_sim::clock::SimClock;
use sb_sim::messenger::{MessengerConfig, MessengerSim};
use serde_json::{Value, json};

use crate::harness::{TestServer, code};

struct Setup {
    s: TestServer,
    sim: MessengerSim,
    account: String,
    clock: Arc<ManualClock>,
    sim_clock: SimClock,
}

async fn setup(instagram: bool) -> Setup {
    let clock = ManualClock::new(sb_core::Clock::now_ms(&sb_core::SystemClock));
    let s = TestServer::start_at(Time::Manual(clock.clone()), |_| {}).await;
    let sim_clock = SimClock::new();
    sim_clock.set(sb_core::Clock::now_ms(clock.as_ref()));
    let config = if instagram {
        MessengerConfig::instagram_default()
    } else {
        MessengerConfig::default()
    };
    let sim = MessengerSim::start(config.clone(), sim_clock.clone())
        .await
        .expect("simulator");
    let (channel, id_setting, id) = if instagram {
        (
            "instagram",
            "ig_account_id",
            config.ig_account_id.clone().unwrap_or_default(),
        )
    } else {
        ("messenger", "page_id", config.page_id.clone())
    };
    let (status, created) = s
        .post(
            "/api/v1/channel-accounts",
            &s.admin_token,
            json!({
                "channel": channel,
                "name": format!("Demo {channel}"),
                "settings": {id_setting: id, "api_base_url": sim.base_url()},
                "secrets": {"app_secret": config.app_secret, "page_access_token": config.page_access_token,
                            "verify_token": config.verify_token}
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let hook = created["webhook_url"].as_str().expect("hook").to_owned();
    let account = created["id"].as_str().expect("id").to_owned();
    let verified = control(
        &s,
        &sim,
        "/_sim/messenger/webhook",
        json!({"url": hook, "verify": true}),
    )
    .await;
    assert!(verified.to_string().contains("true"), "{verified}");
    Setup {
        s,
        sim,
        account,
        clock,
        sim_clock,
    }
}

async fn control(s: &TestServer, sim: &MessengerSim, path: &str, body: Value) -> Value {
    s.sim_post(sim.control(), path, body).await
}

async fn sends(s: &TestServer, sim: &MessengerSim, n: usize) -> Vec<Value> {
    s.provider_calls(sim.control(), "/_sim/messenger/sent", n, |r| {
        r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/messages"))
    })
    .await
}

async fn one_conversation(s: &TestServer, channel: &str) -> String {
    let list = s
        .until(&format!("/api/v1/conversations?channel={channel}"), |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    list["items"][0]["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn messenger_echoes_receipts_and_the_human_agent_window() {
    let t = setup(false).await;
    let (s, sim) = (&t.s, &t.sim);
    let psid = "7012004455667788";
    let sent = control(
        s,
        sim,
        "/_sim/messenger/customer-message",
        json!({"psid": psid, "text": "Is the blue one in stock? ¿Sí?"}),
    )
    .await;
    assert_eq!(sent["delivered_status"].as_u64(), Some(200), "{sent}");
    let conversation = one_conversation(s, "messenger").await;
    let path = format!("/api/v1/conversations/{conversation}/messages");

    // Our reply goes out as RESPONSE; its echo does not add a line; the receipt moves it on.
    let (status, reply) = s.post(&path, &s.admin_token, json!({"text": "Yes, in M and L."})).await;
    assert_eq!(
        (status, reply["channel"].as_str()),
        (StatusCode::CREATED, Some("messenger")),
        "{reply}"
    );
    let request = &sends(s, sim, 1).await[0];
    assert_eq!(request["body"]["recipient"]["id"], psid);
    assert_eq!(request["body"]["messaging_type"], "RESPONSE");
    let reply_id = reply["id"].as_str().expect("id");
    s.until_message(&conversation, reply_id, "delivered").await;
    control(
        s,
        sim,
        "/_sim/messenger/status",
        json!({"psid": psid, "status": "read"}),
    )
    .await;
    s.until_message(&conversation, reply_id, "read").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, thread) = s.get(&path, &s.admin_token).await;
    assert_eq!(
        thread["items"].as_array().map(Vec::len),
        Some(2),
        "the echo added nothing: {thread}"
    );

    // A reply typed in Meta's own inbox comes back only as an echo: it joins the thread as
    // an agent's message (once, however often the echo is delivered).
    let echo = json!({"object": "page", "entry": [{"id": "104400112233445", "time": 1, "messaging": [{
        "sender": {"id": "104400112233445"}, "recipient": {"id": psid}, "timestamp": 1_767_225_600_000_i64,
        "message": {"mid": "m_TYPED_IN_META", "is_echo": true, "app_id": 263902037430900_i64, "text": "Typed in Business Suite"}
    }]}]})
    .to_string()
    .into_bytes();
    let signature = sb_sim::hub_signature("demo-app-secret", &echo);
    let hook = format!("{}/hooks/messenger/{}", s.base, t.account);
    for _ in 0..2 {
        let (status, body) = s
            .raw_post(&hook, vec![("x-hub-signature-256", signature.clone())], echo.clone())
            .await;
        assert!(status.is_success(), "{body}");
    }
    let messages = s
        .until(&path, |b| {
            b["items"]
                .as_array()
                .is_some_and(|a| a.iter().any(|m| m["body"] == "Typed in Business Suite"))
        })
        .await;
    let typed: Vec<&Value> = messages["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|m| m["body"] == "Typed in Business Suite")
        .collect();
    assert_eq!(typed.len(), 1);
    assert_eq!(
        (typed[0]["direction"].as_str(), typed[0]["author_kind"].as_str()),
        (Some("outbound"), Some("user"))
    );

    // A photo arrives as an expiring CDN link: fetched into the attachment store.
    control(
        s,
        sim,
        "/_sim/messenger/customer-message",
        json!({"psid": psid, "type": "image"}),
    )
    .await;
    let messages = s
        .until(&path, |b| {
            b["items"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|m| m["attachments"].as_array().is_some_and(|f| !f.is_empty()))
            })
        })
        .await;
    let file = messages["items"]
        .as_array()
        .expect("items")
        .iter()
        .find_map(|m| m["attachments"].as_array().and_then(|f| f.first()).cloned())
        .expect("a file");
    assert_eq!(file["content_type"], "image/png");
    let url = format!("{}{}", s.base, file["url"].as_str().expect("url"));
    let bytes = s
        .client
        .get(&url)
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert!(bytes.starts_with(b"\x89PNG"));

    // Two days later only a person may answer, tagged HUMAN_AGENT; after 7 days nobody.
    let day = 24 * 3_600_000;
    t.clock.advance(2 * day);
    t.sim_clock.advance(2 * day);
    let (status, late) = s
        .post(&path, &s.admin_token, json!({"text": "Still interested?"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{late}");
    let request = &sends(s, sim, 2).await[1];
    assert_eq!(
        (
            request["body"]["messaging_type"].as_str(),
            request["body"]["tag"].as_str()
        ),
        (Some("MESSAGE_TAG"), Some("HUMAN_AGENT"))
    );
    s.until_message(&conversation, late["id"].as_str().expect("id"), "delivered")
        .await;
    t.clock.advance(6 * day);
    t.sim_clock.advance(6 * day);
    let (status, body) = s.post(&path, &s.admin_token, json!({"text": "Hello?"})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "reply_window_closed")
    );
    t.sim.shutdown().await;
    t.s.server.shutdown().await;
}

#[tokio::test]
async fn instagram_messages_and_reads_by_message_id() {
    let t = setup(true).await;
    let (s, sim) = (&t.s, &t.sim);
    let igsid = "17841400555000111";
    // Accounts connected both ways get every event twice: one message in the thread.
    control(s, sim, "/_sim/messenger/options", json!({"emit_twice": true})).await;
    control(
        s,
        sim,
        "/_sim/messenger/customer-message",
        json!({"psid": igsid, "text": "do you ship to Porto?"}),
    )
    .await;
    let conversation = one_conversation(s, "instagram").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, thread) = s
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
        )
        .await;
    assert_eq!(thread["items"].as_array().map(Vec::len), Some(1), "{thread}");
    control(s, sim, "/_sim/messenger/options", json!({"emit_twice": false})).await;
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let (status, reply) = s.post(&path, &s.admin_token, json!({"text": "We do!"})).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let reply_id = reply["id"].as_str().expect("id");
    s.until_message(&conversation, reply_id, "sent").await;
    let mid = sends(s, sim, 1).await[0]["mid"].as_str().expect("mid").to_owned();
    control(
        s,
        sim,
        "/_sim/messenger/status",
        json!({"message_id": mid, "status": "read"}),
    )
    .await;
    s.until_message(&conversation, reply_id, "read").await;
    let (status, body) = s.post(&path, &s.admin_token, json!({"text": "x".repeat(1_001)})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "text_too_long")
    );
    t.sim.shutdown().await;
    t.s.server.shutdown().await;
}

/// The demo wires Messenger and Instagram accounts to simulators started in-process.
#[tokio::test]
async fn the_demo_messenger_and_instagram_accounts_are_wired_to_their_simulators() {
    let s = TestServer::start().await;
    for (channel, sender) in [("messenger", "7012004455667788"), ("instagram", "17841400555000111")] {
        let demo = s.server.demo.as_ref().expect("demo").channels[channel].clone();
        let sim = demo["simulator_url"].as_str().expect("simulator url");
        let body: Value = s
            .client
            .post(format!("{sim}/_sim/messenger/customer-message"))
            .json(&json!({"psid": sender, "text": format!("hello over {channel}")}))
            .send()
            .await
            .expect("simulator")
            .json()
            .await
            .expect("json");
        assert_eq!(body["delivered_status"].as_u64(), Some(200), "{channel}: {body}");
        let conversation = one_conversation(&s, channel).await;
        let path = format!("/api/v1/conversations/{conversation}/messages");
        let (status, reply) = s.post(&path, &s.admin_token, json!({"text": "hi!"})).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        s.until_message(&conversation, reply["id"].as_str().expect("id"), "sent")
            .await;
    }
    s.server.shutdown().await;
}
