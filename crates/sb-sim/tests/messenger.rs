//! Messenger / Instagram simulator, driven as our adapter and tests would.

mod common;

use common::{Receiver, get_json, post_json};
use sb_sim::{MessengerConfig, MessengerSim, SimClock, hub_signature};
use serde_json::{Value, json};

const TOKEN: &str = "sim-page-token";
const HOUR: i64 = 60 * 60 * 1000;
const PSID: &str = "7012004455667788";

struct Env {
    sim: MessengerSim,
    rx: Receiver,
    clock: SimClock,
    http: reqwest::Client,
}

impl Env {
    async fn new(cfg: MessengerConfig) -> Env {
        let rx = Receiver::start().await;
        let clock = SimClock::new();
        let cfg = MessengerConfig {
            webhook_url: Some(rx.url.clone()),
            ..cfg
        };
        let sim = MessengerSim::start(cfg, clock.clone()).await.unwrap();
        Env {
            sim,
            rx,
            clock,
            http: reqwest::Client::new(),
        }
    }

    fn ctl(&self, path: &str) -> String {
        format!("{}/_sim/messenger/{path}", self.sim.control())
    }

    async fn customer(&self, body: Value) -> Value {
        let (s, v) = post_json(&self.http, &self.ctl("customer-message"), body).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Send API call with the token as query parameter (Meta's samples).
    async fn send(&self, body: Value) -> (u16, Value) {
        let url = format!("{}/v21.0/me/messages?access_token={TOKEN}", self.sim.base_url());
        let resp = self.http.post(url).json(&body).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }
}

fn reply(text: &str) -> Value {
    json!({ "recipient": { "id": PSID }, "messaging_type": "RESPONSE", "message": { "text": text } })
}

fn human_agent(text: &str) -> Value {
    json!({ "recipient": { "id": PSID }, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT",
            "message": { "text": text } })
}

fn event(v: &Value) -> &Value {
    &v["entry"][0]["messaging"][0]
}

#[tokio::test]
async fn messenger_window_and_human_agent() {
    let env = Env::new(MessengerConfig::default()).await;
    let v = env
        .customer(
            json!({ "psid": PSID, "name": "Ana López", "text": "Is the blue one in stock?",
                                 "quick_reply_payload": "STOCK_QUERY" }),
        )
        .await;
    let inbound_mid = v["mid"].as_str().unwrap().to_string();
    assert!(inbound_mid.starts_with("m_"));
    let hook = env.rx.wait_for(1).await[0].clone();
    assert!(hook.text().is_ascii());
    assert_eq!(hook.signature().unwrap(), hub_signature("demo-app-secret", &hook.body));
    let body = hook.json();
    assert_eq!(body["object"], "page");
    assert_eq!(body["entry"][0]["id"], "104400112233445");
    assert!(body["entry"][0]["time"].is_i64());
    let ev = event(&body);
    assert_eq!(ev["sender"]["id"], PSID);
    assert_eq!(ev["recipient"]["id"], "104400112233445");
    assert!(ev["timestamp"].is_i64());
    assert_eq!(ev["message"]["mid"], inbound_mid.as_str());
    assert_eq!(ev["message"]["quick_reply"]["payload"], "STOCK_QUERY");

    // Inside 24 h: accepted, then an echo with the same mid, then a delivery receipt.
    let (s, r) = env.send(reply("Yes! Navy in M and L.")).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["recipient_id"], PSID);
    let mid = r["message_id"].as_str().unwrap().to_string();
    let echo = env.rx.wait_until(|b| event(b)["message"]["is_echo"] == true).await;
    let e = event(&echo);
    assert_eq!(e["message"]["mid"], mid.as_str());
    assert_eq!(e["message"]["text"], "Yes! Navy in M and L.");
    assert!(e["message"]["app_id"].is_i64());
    assert_eq!(e["sender"]["id"], "104400112233445");
    assert_eq!(e["recipient"]["id"], PSID);
    let delivery = env.rx.wait_until(|b| event(b).get("delivery").is_some()).await;
    assert_eq!(event(&delivery)["delivery"]["mids"][0], mid.as_str());

    // 25 h later: the standard window is closed ...
    env.clock.advance(25 * HOUR);
    let (s, r) = env.send(reply("Still there?")).await;
    assert_eq!(s, 400);
    assert_eq!(r["error"]["code"], 10);
    assert_eq!(r["error"]["error_subcode"], 2018278);
    assert_eq!(r["error"]["type"], "OAuthException");
    // ... but a human agent may answer within 7 days.
    let (s, r) = env.send(human_agent("Following up on your return request…")).await;
    assert_eq!(s, 200, "{r}");
    // Not after 7 days.
    env.clock.advance(6 * 24 * HOUR);
    let (s, r) = env.send(human_agent("Hello?")).await;
    assert_eq!(
        (s, r["error"]["code"].as_i64(), r["error"]["error_subcode"].as_i64()),
        (400, Some(10), Some(2018278))
    );

    // Without the Human Agent feature the tag is refused even inside 7 days.
    env.customer(json!({ "psid": PSID, "text": "back" })).await;
    env.clock.advance(30 * HOUR);
    post_json(&env.http, &env.ctl("options"), json!({ "human_agent_approved": false })).await;
    assert_eq!(env.send(human_agent("x")).await.1["error"]["code"], 200);
}

#[tokio::test]
async fn send_api_validation_and_auth() {
    let env = Env::new(MessengerConfig::default()).await;
    env.customer(json!({ "psid": PSID, "text": "hi" })).await;
    let base = env.sim.base_url();

    // Bearer works on /{page_id}/messages; no token → 401/190.
    let url = format!("{base}/v21.0/104400112233445/messages");
    let r = env
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&reply("ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = env.http.post(&url).json(&reply("ok")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], 190);

    // Form-encoded with JSON-valued fields, as in Meta's curl samples.
    let form = format!(
        "recipient=%7B%22id%22%3A%22{PSID}%22%7D&messaging_type=RESPONSE\
         &message=%7B%22text%22%3A%22hola%22%7D&access_token={TOKEN}"
    );
    let r = env
        .http
        .post(format!("{base}/v21.0/me/messages"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // messaging_type is required on Messenger; tags only with MESSAGE_TAG; only HUMAN_AGENT.
    let (s, _) = env
        .send(json!({ "recipient": { "id": PSID }, "message": { "text": "x" } }))
        .await;
    assert_eq!(s, 400);
    let (s, _) = env
        .send(json!({ "recipient": { "id": PSID }, "messaging_type": "FOO", "message": { "text": "x" } }))
        .await;
    assert_eq!(s, 400);
    let mut bad_tag = human_agent("x");
    bad_tag["tag"] = json!("ACCOUNT_UPDATE");
    assert_eq!(env.send(bad_tag).await.0, 400);
    assert_eq!(
        env.send(json!({ "recipient": { "id": PSID }, "messaging_type": "MESSAGE_TAG", "message": { "text": "x" } }))
            .await
            .0,
        400
    );
    // Text limit 2,000 characters.
    assert_eq!(env.send(reply(&"é".repeat(2000))).await.0, 200);
    assert_eq!(env.send(reply(&"a".repeat(2001))).await.0, 400);
    // Attachments by URL.
    let (s, r) = env
        .send(json!({ "recipient": { "id": PSID }, "messaging_type": "RESPONSE",
                      "message": { "attachment": { "type": "image",
                                   "payload": { "url": "https://cdn.example.test/p/navy.jpg",
                                                "is_reusable": true } } } }))
        .await;
    assert_eq!(s, 200);
    assert!(r["attachment_id"].is_string());

    // Unknown PSID, blocked user, typing indicator.
    let mut other = reply("x");
    other["recipient"]["id"] = json!("999");
    let (s, r) = env.send(other).await;
    assert_eq!(
        (s, r["error"]["code"].as_i64(), r["error"]["error_subcode"].as_i64()),
        (400, Some(100), Some(2018001))
    );
    let (s, r) = env
        .send(json!({ "recipient": { "id": PSID }, "sender_action": "typing_on" }))
        .await;
    assert_eq!((s, &r["recipient_id"]), (200, &json!(PSID)));
    post_json(&env.http, &env.ctl("blocked"), json!({ "psid": PSID })).await;
    let (s, r) = env.send(reply("x")).await;
    assert_eq!((s, r["error"]["code"].as_i64()), (400, Some(551)));

    // The sent log has every call in order, with raw bodies and headers.
    let log = get_json(&env.http, &env.ctl("sent")).await;
    let log = log.as_array().unwrap();
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["headers"]["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(log[2]["body"]["message"]["text"], "hola");
    assert!(log[2]["raw_body"].as_str().unwrap().starts_with("recipient="));
    assert!(log.last().unwrap()["response"]["error"]["code"] == 551);
}

#[tokio::test]
async fn instagram_shapes_limits_and_duplicates() {
    let env = Env::new(MessengerConfig::instagram_default()).await;
    let igsid = "17841400555000111";
    let v = env
        .customer(json!({ "psid": igsid, "text": "do you ship to Porto?" }))
        .await;
    let inbound = v["mid"].as_str().unwrap().to_string();
    assert!(inbound.starts_with("aWdf"), "{inbound}");
    let body = env.rx.wait_for(1).await[0].json();
    assert_eq!(body["object"], "instagram");
    assert_eq!(body["entry"][0]["id"], "17841400999888777");
    assert_eq!(event(&body)["recipient"]["id"], "17841400999888777");

    // Instagram bodies may omit messaging_type; text limit is 1,000 bytes.
    let send = |text: String| json!({ "recipient": { "id": igsid }, "message": { "text": text } });
    let url = format!("{}/v21.0/17841400999888777/messages", env.sim.base_url());
    let post = |b: Value| {
        let http = env.http.clone();
        let url = url.clone();
        async move {
            let r = http.post(url).bearer_auth(TOKEN).json(&b).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(post(send("é".repeat(501))).await.0, 400, "1,002 bytes");
    let (s, r) = post(send("é".repeat(500))).await;
    assert_eq!(s, 200, "{r}");
    let mid = r["message_id"].as_str().unwrap().to_string();
    let echo = env.rx.wait_until(|b| event(b)["message"]["is_echo"] == true).await;
    assert_eq!(event(&echo)["message"]["mid"], mid.as_str());
    assert_eq!(event(&echo)["sender"]["id"], "17841400999888777");

    // Read receipts name the mid; there are no delivery receipts.
    let (s, _) = post_json(
        &env.http,
        &env.ctl("status"),
        json!({ "message_id": mid, "status": "read" }),
    )
    .await;
    assert_eq!(s, 200);
    let read = env.rx.wait_until(|b| event(b).get("read").is_some()).await;
    assert_eq!(event(&read)["read"]["mid"], mid.as_str());
    let (s, _) = post_json(
        &env.http,
        &env.ctl("status"),
        json!({ "message_id": mid, "status": "delivery" }),
    )
    .await;
    assert_eq!(s, 400);
    assert!(env.rx.hits().iter().all(|h| event(&h.json()).get("delivery").is_none()));

    // Dual-login duplicates: each event arrives twice.
    post_json(&env.http, &env.ctl("options"), json!({ "emit_twice": true })).await;
    let n = env.rx.hits().len();
    env.customer(json!({ "psid": igsid, "type": "deleted", "target_mid": inbound }))
        .await;
    let hits = env.rx.wait_for(n + 2).await;
    assert_eq!(hits[n].body, hits[n + 1].body);
    assert_eq!(event(&hits[n].json())["message"]["is_deleted"], true);

    // Outside 24 h only HUMAN_AGENT works, up to 7 days.
    env.clock.advance(25 * HOUR);
    let (s, r) = post(send("hello".into())).await;
    assert_eq!(
        (s, r["error"]["code"].as_i64(), r["error"]["error_subcode"].as_i64()),
        (400, Some(10), Some(2018278))
    );
    let tagged = json!({ "recipient": { "id": igsid }, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT",
                         "message": { "text": "An agent here" } });
    assert_eq!(post(tagged).await.0, 200);
}

#[tokio::test]
async fn messenger_batch_handshake_and_receipts() {
    let env = Env::new(MessengerConfig::default()).await;
    let (s, v) = post_json(
        &env.http,
        &env.ctl("batch"),
        json!({ "events": [
            { "psid": PSID, "text": "one" },
            { "psid": PSID, "type": "image" },
            { "psid": "7012004455669999", "type": "postback", "payload": "GET_STARTED", "title": "Get Started" },
        ] }),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let body = env.rx.wait_for(1).await[0].json();
    assert_eq!(body["entry"].as_array().unwrap().len(), 3);
    assert_eq!(
        body["entry"][1]["messaging"][0]["message"]["attachments"][0]["type"],
        "image"
    );
    assert_eq!(body["entry"][2]["messaging"][0]["postback"]["payload"], "GET_STARTED");

    let (_, v) = post_json(&env.http, &env.ctl("verify-webhook"), json!({})).await;
    assert_eq!((v["status"].as_i64(), v["echoed"].as_bool()), (Some(200), Some(true)));

    post_json(&env.http, &env.ctl("options"), json!({ "auto_delivery": false })).await;
    let (_, r) = env.send(reply("hi")).await;
    let mid = r["message_id"].as_str().unwrap();
    post_json(
        &env.http,
        &env.ctl("status"),
        json!({ "message_id": mid, "status": "read" }),
    )
    .await;
    let read = env.rx.wait_until(|b| event(b).get("read").is_some()).await;
    assert!(event(&read)["read"]["watermark"].is_i64());
    post_json(
        &env.http,
        &env.ctl("status"),
        json!({ "message_id": mid, "status": "delivery", "omit_mids": true }),
    )
    .await;
    let d = env.rx.wait_until(|b| event(b).get("delivery").is_some()).await;
    assert!(event(&d)["delivery"].get("mids").is_none());
    assert!(event(&d)["delivery"]["watermark"].is_i64());
}

/// Customer attachments without `attachment_url` are served by the simulator's own
/// expiring, public CDN links (`/cdn/{kind}/{id}?oh=..&oe=..`).
#[tokio::test]
async fn attachment_cdn_links_are_public_and_expire() {
    let env = Env::new(MessengerConfig::default()).await;
    let base = env.sim.base_url().to_string();
    let plain = reqwest::Client::new();

    env.customer(json!({ "psid": PSID, "type": "image" })).await;
    let hook = env.rx.wait_for(1).await[0].json();
    let att = &event(&hook)["message"]["attachments"][0];
    assert_eq!(att["type"], "image");
    let url = att["payload"]["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{base}/cdn/image/")), "{url}");
    let (_, query) = url.split_once('?').unwrap();
    let oe = query.split('&').find_map(|kv| kv.strip_prefix("oe=")).unwrap();
    let oe_secs = i64::from_str_radix(oe, 16).unwrap();
    let in_an_hour = (env.clock.now_ms() + HOUR) / 1000;
    assert!((oe_secs - in_an_hour).abs() <= 2, "oe {oe_secs} vs {in_an_hour}");
    assert!(query.split('&').any(|kv| kv.starts_with("oh=") && kv.len() > 10));

    // No token needed; real PNG bytes with the right Content-Type.
    let r = plain.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.bytes().await.unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));

    // A wrong `oh` (or a tampered `oe`) is refused.
    let (path, _) = url.split_once('?').unwrap();
    let bad = format!("{path}?oh=00_deadbeef&oe={oe}");
    assert_eq!(plain.get(&bad).send().await.unwrap().status().as_u16(), 403);
    let bumped = url.replace(&format!("oe={oe}"), &format!("oe={:08X}", oe_secs + 3600));
    assert_eq!(plain.get(&bumped).send().await.unwrap().status().as_u16(), 403);
    assert_eq!(
        plain
            .get(format!("{base}/cdn/image/1?oh=x&oe=0"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );

    // Caller-supplied bytes and type; files default to a PDF.
    env.customer(json!({ "psid": PSID, "type": "audio", "data_base64": "AAECAw==", "mime_type": "audio/aac" }))
        .await;
    env.customer(json!({ "psid": PSID, "type": "file" })).await;
    let hooks = env.rx.wait_for(3).await;
    let audio_url = event(&hooks[1].json())["message"]["attachments"][0]["payload"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let r = plain.get(&audio_url).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "audio/aac");
    assert_eq!(&r.bytes().await.unwrap()[..], &[0u8, 1, 2, 3]);
    let file_url = event(&hooks[2].json())["message"]["attachments"][0]["payload"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(file_url.contains("/cdn/file/"));
    let r = plain.get(&file_url).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert!(r.bytes().await.unwrap().starts_with(b"%PDF-1.4"));

    // An explicit attachment_url is passed through untouched.
    env.customer(json!({ "psid": PSID, "type": "video", "attachment_url": "https://example.test/v.mp4" }))
        .await;
    let v = env.rx.wait_for(4).await[3].json();
    assert_eq!(
        event(&v)["message"]["attachments"][0]["payload"]["url"],
        "https://example.test/v.mp4"
    );

    // One hour later on the SimClock the links are dead.
    env.clock.advance(HOUR + 1_000);
    assert_eq!(plain.get(&url).send().await.unwrap().status().as_u16(), 403);
    assert_eq!(plain.get(&file_url).send().await.unwrap().status().as_u16(), 403);
}

#[tokio::test]
async fn customer_page_is_served() {
    for (cfg, name, id) in [
        (MessengerConfig::default(), "Messenger", "PSID"),
        (MessengerConfig::instagram_default(), "Instagram", "IGSID"),
    ] {
        let env = Env::new(cfg).await;
        let r = env.http.get(format!("{}/", env.sim.base_url())).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = r.text().await.unwrap();
        assert!(html.contains(&format!("<title>{name} simulator — play the customer</title>")));
        assert!(html.contains("<form id=\"send\">") && html.contains(id));
        assert!(html.contains("\"/_sim/messenger\"") && html.contains("\"psid\""));
        assert!(html.contains("/customer-message") && html.contains("/sent") && html.contains("/status"));
    }
}
