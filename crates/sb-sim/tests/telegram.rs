//! Telegram Bot API simulator, driven as our adapter and tests would.

mod common;

use common::{Receiver, get_json, post_json};
use sb_sim::{SimClock, TelegramConfig, TelegramSim};
use serde_json::{Value, json};

const USER: i64 = 5_550_001_111;
const SECRET: &str = "s3cr3t_Token-1";

struct Env {
    sim: TelegramSim,
    rx: Receiver,
    clock: SimClock,
    http: reqwest::Client,
    token: String,
}

impl Env {
    async fn new() -> Env {
        let rx = Receiver::start().await;
        let clock = SimClock::fixed(1_767_225_600_000);
        let cfg = TelegramConfig::default();
        let token = cfg.bot_token.clone();
        let sim = TelegramSim::start(cfg, clock.clone()).await.unwrap();
        let env = Env {
            sim,
            rx,
            clock,
            http: reqwest::Client::new(),
            token,
        };
        let (s, v) = post_json(&env.http, &env.ctl("retry"), json!({ "initial_ms": 50, "max_ms": 200 })).await;
        assert_eq!(s, 200, "{v}");
        env
    }

    /// Env with the webhook set (with the secret).
    async fn hooked() -> Env {
        let env = Env::new().await;
        let (s, v) = env
            .api("setWebhook", json!({ "url": env.rx.url, "secret_token": SECRET }))
            .await;
        assert_eq!(s, 200, "{v}");
        env
    }

    fn ctl(&self, path: &str) -> String {
        format!("{}/_sim/telegram/{path}", self.sim.control())
    }

    async fn api(&self, method: &str, body: Value) -> (u16, Value) {
        let url = format!("{}/bot{}/{method}", self.sim.base_url(), self.token);
        post_json(&self.http, &url, body).await
    }

    async fn customer(&self, body: Value) -> Value {
        let (s, v) = post_json(&self.http, &self.ctl("customer-message"), body).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn say(&self, text: &str) -> Value {
        self.customer(
            json!({ "user_id": USER, "first_name": "Ana", "last_name": "López", "username": "ana_lz",
                              "text": text }),
        )
        .await
    }
}

#[tokio::test]
async fn set_webhook_and_customer_message_with_secret() {
    let env = Env::new().await;
    let (s, v) = env
        .api(
            "setWebhook",
            json!({ "url": env.rx.url, "secret_token": SECRET, "max_connections": 10 }),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({ "ok": true, "result": true, "description": "Webhook was set" })
    );
    let (_, info) = env.api("getWebhookInfo", json!({})).await;
    assert_eq!(info["result"]["url"], env.rx.url);
    assert_eq!(info["result"]["pending_update_count"], 0);

    let v = env.say("Hola, ¿hay stock de la talla M?").await;
    assert_eq!(v["delivered_status"], 200);
    assert_eq!(v["message_id"], 1);
    let first_update = v["update_id"].as_i64().unwrap();
    let hit = env.rx.wait_for(1).await[0].clone();
    assert_eq!(
        hit.headers
            .get("x-telegram-bot-api-secret-token")
            .unwrap()
            .to_str()
            .unwrap(),
        SECRET
    );
    assert_eq!(hit.headers.get("content-type").unwrap(), "application/json");
    assert!(
        hit.text().starts_with("{\"update_id\":"),
        "update_id first: {}",
        hit.text()
    );
    assert!(hit.text().contains("López"), "UTF-8 on the wire");
    let u = hit.json();
    assert_eq!(u["update_id"], first_update);
    let m = &u["message"];
    assert_eq!(m["text"], "Hola, ¿hay stock de la talla M?");
    assert_eq!(m["from"]["id"], USER);
    assert_eq!(m["from"]["is_bot"], false);
    assert_eq!(m["chat"]["id"], USER);
    assert_eq!(m["chat"]["type"], "private");
    assert_eq!(m["date"], 1_767_225_600);

    // Reply with HTML, method name in another case, legacy reply_to_message_id.
    let (s, v) = env
        .api(
            "SENDMESSAGE",
            json!({ "chat_id": USER, "text": "Tu pedido <b>1042</b> est&aacute; listo.", "parse_mode": "HTML",
                    "reply_to_message_id": 1 }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true);
    let r = &v["result"];
    assert_eq!(r["message_id"], 2);
    assert_eq!(r["from"]["id"], 7_012_345_678i64);
    assert_eq!(r["from"]["is_bot"], true);
    assert_eq!(r["text"], "Tu pedido 1042 est&aacute; listo.");
    assert_eq!(r["reply_to_message"]["message_id"], 1);

    // The next update id is sequential; reply_parameters form.
    env.clock.advance(2_000);
    let v2 = env.say("sí, esa").await;
    assert_eq!(v2["update_id"].as_i64().unwrap(), first_update + 1);
    let (s, v) = env
        .api(
            "sendMessage",
            json!({ "chat_id": USER, "text": "ok", "reply_parameters": { "message_id": 3 } }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["reply_to_message"]["text"], "sí, esa");

    let (s, v) = env.api("getMe", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(v["result"]["username"], "acme_support_bot");

    // Wrong token.
    let url = format!("{}/bot123:nope/sendMessage", env.sim.base_url());
    let (s, v) = post_json(&env.http, &url, json!({ "chat_id": USER, "text": "x" })).await;
    assert_eq!(s, 401);
    assert_eq!(
        v,
        json!({ "ok": false, "error_code": 401, "description": "Unauthorized" })
    );

    // Everything is in the sent log.
    let sent = get_json(&env.http, &env.ctl("sent")).await;
    let methods: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "setWebhook",
            "getWebhookInfo",
            "sendMessage",
            "sendMessage",
            "getMe",
            "sendMessage"
        ]
    );
    assert_eq!(sent[2]["called_as"], "SENDMESSAGE");
    assert_eq!(sent[2]["body"]["parse_mode"], "HTML");
    assert_eq!(sent[2]["status"], 200);
    assert_eq!(sent[2]["message_id"], 2);
    assert_eq!(sent[5]["status"], 401);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn form_bodies_are_accepted() {
    let env = Env::hooked().await;
    env.say("hi").await;
    let url = format!("{}/bot{}/sendmessage", env.sim.base_url(), env.token);
    let resp = env
        .http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "chat_id={USER}&text=hola+mundo&reply_parameters=%7B%22message_id%22%3A1%7D"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["result"]["text"], "hola mundo");
    assert_eq!(v["result"]["reply_to_message"]["message_id"], 1);
}

#[tokio::test]
async fn per_chat_order_and_retry_after_500() {
    let env = Env::hooked().await;
    env.rx.script(&[500]);
    let v1 = env.say("first").await;
    assert_eq!(v1["delivered_status"], 500);
    // Second message of the same chat: queued behind the first until it gets a 2xx.
    let v2 = env
        .customer(json!({ "user_id": USER, "first_name": "Ana", "text": "second", "wait": false }))
        .await;
    // Another chat is not held back.
    let other = env
        .customer(json!({ "user_id": 5_550_002_222i64, "first_name": "Bo", "text": "other" }))
        .await;
    assert_eq!(other["delivered_status"], 200);

    let hits = env.rx.wait_for(4).await;
    let chat_a: Vec<(String, u16)> = hits
        .iter()
        .filter(|h| h.json()["message"]["chat"]["id"] == USER)
        .map(|h| (h.json()["message"]["text"].as_str().unwrap().to_string(), h.answered))
        .collect();
    assert_eq!(
        chat_a,
        [
            ("first".to_string(), 500),
            ("first".to_string(), 200),
            ("second".to_string(), 200)
        ]
    );
    // Chat B arrived while chat A was waiting for its retry.
    let pos_b = hits
        .iter()
        .position(|h| h.json()["message"]["text"] == "other")
        .unwrap();
    assert!(pos_b < 3, "other chat delivered in parallel");

    let deliveries = get_json(&env.http, &env.ctl("deliveries")).await;
    let first: Vec<&Value> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["update_id"] == v1["update_id"])
        .collect();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["status"], 500);
    assert_eq!(first[0]["secret_token"], SECRET);
    assert_eq!(first[1]["attempt"], 2);
    assert_eq!(first[1]["status"], 200);
    assert!(v2["update_id"].as_i64().unwrap() > v1["update_id"].as_i64().unwrap());

    let (_, info) = env.api("getWebhookInfo", json!({})).await;
    assert!(
        info["result"]["last_error_message"]
            .as_str()
            .unwrap()
            .starts_with("Wrong response from the webhook: 500")
    );
    assert_eq!(info["result"]["last_error_date"], 1_767_225_600);
}

#[tokio::test]
async fn two_messages_within_a_second_get_429() {
    let env = Env::hooked().await;
    env.say("hola").await;
    let (s, _) = env.api("sendMessage", json!({ "chat_id": USER, "text": "one" })).await;
    assert_eq!(s, 200);
    env.clock.advance(400);
    let (s, v) = env.api("sendMessage", json!({ "chat_id": USER, "text": "two" })).await;
    assert_eq!(s, 429);
    assert_eq!(
        v,
        json!({ "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
                "parameters": { "retry_after": 1 } })
    );
    env.clock.advance(600);
    let (s, v) = env.api("sendMessage", json!({ "chat_id": USER, "text": "two" })).await;
    assert_eq!(s, 200, "{v}");

    // Injected one-shot fault.
    env.clock.advance(5_000);
    let (s, _) = post_json(
        &env.http,
        &format!("{}/_sim/faults", env.sim.control()),
        json!({ "next_send": { "error_code": 429, "retry_after": 3 } }),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .api("sendMessage", json!({ "chat_id": USER, "text": "three" }))
        .await;
    assert_eq!(s, 429);
    assert_eq!(v["description"], "Too Many Requests: retry after 3");
    assert_eq!(v["parameters"]["retry_after"], 3);
    let (s, _) = env
        .api("sendMessage", json!({ "chat_id": USER, "text": "three" }))
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn block_unknown_and_never_started() {
    let env = Env::hooked().await;
    env.say("hola").await;
    let (s, v) = post_json(
        &env.http,
        &env.ctl("block"),
        json!({ "user_id": USER, "blocked": true }),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["delivered_status"], 200);
    let u = env.rx.wait_until(|v| v.get("my_chat_member").is_some()).await;
    let m = &u["my_chat_member"];
    assert_eq!(m["old_chat_member"]["status"], "member");
    assert_eq!(m["new_chat_member"]["status"], "kicked");
    assert_eq!(m["new_chat_member"]["user"]["id"], 7_012_345_678i64);
    assert_eq!(m["from"]["id"], USER);

    let (s, v) = env.api("sendMessage", json!({ "chat_id": USER, "text": "x" })).await;
    assert_eq!(s, 403);
    assert_eq!(
        v,
        json!({ "ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user" })
    );

    let (s, _) = post_json(
        &env.http,
        &env.ctl("block"),
        json!({ "user_id": USER, "blocked": false }),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = env.api("sendMessage", json!({ "chat_id": USER, "text": "x" })).await;
    assert_eq!(s, 200);

    let (s, v) = env.api("sendMessage", json!({ "chat_id": 999, "text": "x" })).await;
    assert_eq!(s, 400);
    assert_eq!(v["description"], "Bad Request: chat not found");

    let (s, _) = post_json(
        &env.http,
        &env.ctl("users"),
        json!({ "user_id": 5_550_003_333i64, "first_name": "Cy" }),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .api("sendMessage", json!({ "chat_id": 5_550_003_333i64, "text": "x" }))
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        v["description"],
        "Forbidden: bot can't initiate conversation with a user"
    );
}

#[tokio::test]
async fn get_updates_conflicts_with_webhook() {
    let env = Env::hooked().await;
    let (s, v) = env.api("getUpdates", json!({})).await;
    assert_eq!(s, 409);
    assert_eq!(v["error_code"], 409);
    assert!(v["description"].as_str().unwrap().starts_with("Conflict"));

    let (s, v) = env.api("deleteWebhook", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(v["description"], "Webhook was deleted");
    let sent = env.say("polled").await;
    assert!(sent["delivered_status"].is_null());
    let (s, v) = env.api("getUpdates", json!({ "offset": 0 })).await;
    assert_eq!(s, 200);
    assert_eq!(v["result"][0]["message"]["text"], "polled");
    let next = v["result"][0]["update_id"].as_i64().unwrap() + 1;
    let (_, v) = env.api("getUpdates", json!({ "offset": next })).await;
    assert_eq!(v["result"], json!([]));
    assert!(env.rx.hits().is_empty());
}

#[tokio::test]
async fn secret_token_is_validated() {
    let env = Env::new().await;
    for bad in ["has space", "semi;colon", "", &"a".repeat(257)] {
        let (s, v) = env
            .api("setWebhook", json!({ "url": env.rx.url, "secret_token": bad }))
            .await;
        assert_eq!(s, 400, "{bad:?} → {v}");
        assert_eq!(v["ok"], false);
        assert!(
            v["description"]
                .as_str()
                .unwrap()
                .starts_with("Bad Request: secret token")
        );
    }
    let (s, _) = env
        .api(
            "setWebhook",
            json!({ "url": env.rx.url, "secret_token": "a".repeat(256) }),
        )
        .await;
    assert_eq!(s, 200);

    // Wrong-secret fault.
    post_json(
        &env.http,
        &format!("{}/_sim/faults", env.sim.control()),
        json!({ "wrong_secret": true }),
    )
    .await;
    env.say("x").await;
    let hit = env.rx.wait_for(1).await[0].clone();
    assert_ne!(
        hit.headers
            .get("x-telegram-bot-api-secret-token")
            .unwrap()
            .to_str()
            .unwrap(),
        "a".repeat(256)
    );
}

#[tokio::test]
async fn customer_photo_can_be_downloaded_and_resent() {
    let env = Env::hooked().await;
    let v = env
        .customer(json!({ "user_id": USER, "first_name": "Ana", "type": "photo", "caption": "este" }))
        .await;
    assert_eq!(v["delivered_status"], 200);
    let u = env.rx.wait_for(1).await[0].json();
    let photo = u["message"]["photo"].as_array().unwrap();
    assert_eq!(u["message"]["caption"], "este");
    let file_id = photo.last().unwrap()["file_id"].as_str().unwrap().to_string();
    let (s, f) = env.api("getFile", json!({ "file_id": file_id })).await;
    assert_eq!(s, 200, "{f}");
    let path = f["result"]["file_path"].as_str().unwrap();
    let url = format!("{}/file/bot{}/{path}", env.sim.base_url(), env.token);
    let bytes = env.http.get(url).send().await.unwrap().bytes().await.unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
    assert_eq!(f["result"]["file_size"], bytes.len());

    let (s, v) = env
        .api(
            "sendPhoto",
            json!({ "chat_id": USER, "photo": file_id, "caption": "la tuya" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["caption"], "la tuya");
    env.clock.advance(1_000);
    let (s, v) = env
        .api(
            "sendDocument",
            json!({ "chat_id": USER, "document": "https://cdn.example.test/f/1042.pdf" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["document"]["file_name"], "1042.pdf");
    env.clock.advance(1_000);
    let (s, v) = env
        .api(
            "sendLocation",
            json!({ "chat_id": USER, "latitude": 40.41678, "longitude": -3.70379 }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["location"]["latitude"], 40.41678);
}

#[tokio::test]
async fn callback_query_and_edit() {
    let env = Env::hooked().await;
    env.say("hola").await;
    env.api(
        "sendMessage",
        json!({ "chat_id": USER, "text": "¿La azul o la negra?" }),
    )
    .await;
    let v = env
        .customer(json!({ "user_id": USER, "type": "callback_query", "data": "blue" }))
        .await;
    let id = v["callback_query_id"].as_str().unwrap().to_string();
    let u = env.rx.wait_until(|v| v.get("callback_query").is_some()).await;
    assert_eq!(u["callback_query"]["data"], "blue");
    assert_eq!(u["callback_query"]["message"]["message_id"], 2);
    let (s, _) = env.api("answerCallbackQuery", json!({ "callback_query_id": id })).await;
    assert_eq!(s, 200);
    let (s, _) = env.api("answerCallbackQuery", json!({ "callback_query_id": id })).await;
    assert_eq!(s, 400);

    let v = env
        .customer(json!({ "user_id": USER, "type": "edited", "text": "hola!", "message_id": 1 }))
        .await;
    assert_eq!(v["message_id"], 1);
    let u = env.rx.wait_until(|v| v.get("edited_message").is_some()).await;
    assert_eq!(u["edited_message"]["text"], "hola!");
    assert!(u["edited_message"]["edit_date"].is_i64());
}

#[tokio::test]
async fn duplicate_fault_and_retry_after_header() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // A receiver answering 503 + Retry-After: 2 the first time, then 200.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let c = Arc::clone(&c);
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "2")]).into_response()
                } else {
                    axum::http::StatusCode::OK.into_response()
                }
            }
        }),
    );
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let env = Env::new().await;
    // Back-off alone would wait 10 s; Retry-After (2 × 25 ms) must win.
    post_json(
        &env.http,
        &env.ctl("retry"),
        json!({ "initial_ms": 10_000, "retry_after_unit_ms": 25 }),
    )
    .await;
    let (s, _) = env.api("setWebhook", json!({ "url": url })).await;
    assert_eq!(s, 200);
    let v = env.say("hola").await;
    assert_eq!(v["delivered_status"], 503);
    for _ in 0..200 {
        if calls.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let d = get_json(&env.http, &env.ctl("deliveries")).await;
    assert_eq!(d[0]["retry_after"], 2);
    assert!(d[0]["secret_token"].is_null());

    // Duplicate fault: same update twice.
    post_json(
        &env.http,
        &format!("{}/_sim/faults", env.sim.control()),
        json!({ "duplicate_updates": true }),
    )
    .await;
    let v = env.say("dup").await;
    for _ in 0..200 {
        if calls.load(Ordering::SeqCst) >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let d = get_json(&env.http, &env.ctl("deliveries")).await;
    let copies: Vec<&Value> = d
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["update_id"] == v["update_id"])
        .collect();
    assert_eq!(copies.len(), 2);
    assert_eq!(copies[0]["body"], copies[1]["body"]);
    assert_eq!(copies[1]["duplicate"], true);
}
