//! WhatsApp Cloud API simulator, driven as our adapter and tests would.

mod common;

use common::{Receiver, get_json, post_json};
use sb_sim::{SimClock, WhatsAppConfig, WhatsAppSim, hub_signature};
use serde_json::{Value, json};

const TOKEN: &str = "sim-access-token";
const DAY: i64 = 24 * 60 * 60 * 1000;

struct Env {
    sim: WhatsAppSim,
    rx: Receiver,
    clock: SimClock,
    http: reqwest::Client,
}

impl Env {
    async fn new() -> Env {
        Self::with_clock(SimClock::new()).await
    }

    async fn with_clock(clock: SimClock) -> Env {
        let rx = Receiver::start().await;
        let cfg = WhatsAppConfig {
            webhook_url: Some(rx.url.clone()),
            ..WhatsAppConfig::default()
        };
        let sim = WhatsAppSim::start(cfg, clock.clone()).await.unwrap();
        Env {
            sim,
            rx,
            clock,
            http: reqwest::Client::new(),
        }
    }

    fn ctl(&self, path: &str) -> String {
        format!("{}/_sim/whatsapp/{path}", self.sim.control())
    }

    async fn customer(&self, body: Value) -> Value {
        let (s, v) = post_json(&self.http, &self.ctl("customer-message"), body).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn send(&self, body: Value) -> (u16, Value) {
        let url = format!("{}/v21.0/990000000000001/messages", self.sim.base_url());
        let resp = self.http.post(url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// Waits for a status webhook for `wamid` with `status`.
    async fn status_hook(&self, wamid: &str, status: &str) -> Value {
        let v = self
            .rx
            .wait_until(|b| {
                b["entry"][0]["changes"][0]["value"]["statuses"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|s| s["id"] == wamid && s["status"] == status))
            })
            .await;
        v["entry"][0]["changes"][0]["value"]["statuses"][0].clone()
    }
}

fn text(to: &str, body: &str) -> Value {
    json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
            "text": { "body": body }, "biz_opaque_callback_data": "outbox:42" })
}

fn template(name: &str, params: &[&str]) -> Value {
    let p: Vec<Value> = params.iter().map(|t| json!({ "type": "text", "text": t })).collect();
    json!({ "messaging_product": "whatsapp", "to": "34600111222", "type": "template",
            "template": { "name": name, "language": { "code": "en_US" },
                          "components": [ { "type": "body", "parameters": p } ] } })
}

const A1_BODY: &str = concat!(
    r#"{"object":"whatsapp_business_account","entry":[{"id":"880000000000001","changes":[{"value":{"messagi"#,
    r#"ng_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"990000000"#,
    r#"000001"},"contacts":[{"profile":{"name":"Ana L\u00f3pez"},"wa_id":"34600111222"}],"messages":[{"from"#,
    r#"":"34600111222","id":"wamid.DEMO1","timestamp":"1767225600","type":"text","text":{"body":"Hola, \u00"#,
    r#"bftienen talla M?"}}]},"field":"messages"}]}]}"#,
);

#[tokio::test]
async fn appendix_a1_vector_byte_for_byte() {
    assert_eq!(A1_BODY.len(), 446);
    assert_eq!(
        hub_signature("demo-app-secret", A1_BODY.as_bytes()),
        "sha256=4394a2e65f74d9495c09706cde5fc0fcc0cdc0a8846adbe5ab6104dba57f28a6"
    );
    // Re-serialising with raw UTF-8 gives the other MAC of the note.
    let reserialised = A1_BODY.replace("\\u00f3", "ó").replace("\\u00bf", "¿");
    assert_eq!(
        hub_signature("demo-app-secret", reserialised.as_bytes()),
        "sha256=aee4116cc04ac9f5e47ec4a93a504a6ddd470a591f143258ab813d2e574273e9"
    );

    // The simulator itself emits exactly those bytes.
    let env = Env::with_clock(SimClock::fixed(1_767_225_600_000)).await;
    let v = env
        .customer(
            json!({ "from": "34600111222", "name": "Ana López", "text": "Hola, ¿tienen talla M?",
                          "id": "wamid.DEMO1" }),
        )
        .await;
    assert_eq!(v["wamid"], "wamid.DEMO1");
    assert_eq!(v["delivered_status"], 200);
    let hits = env.rx.wait_for(1).await;
    assert_eq!(hits[0].text(), A1_BODY);
    assert_eq!(
        hits[0].signature().unwrap(),
        "sha256=4394a2e65f74d9495c09706cde5fc0fcc0cdc0a8846adbe5ab6104dba57f28a6"
    );
    assert_eq!(hits[0].headers["content-type"], "application/json");
}

#[tokio::test]
async fn bodies_are_ascii_and_signed_over_the_escaped_bytes() {
    let env = Env::new().await;
    env.customer(json!({ "from": "+34 600 111 222", "name": "Ana López", "text": "¡Gracias! 👍" }))
        .await;
    let hit = &env.rx.wait_for(1).await[0];
    let raw = hit.text();
    assert!(raw.is_ascii());
    assert!(raw.contains(r#""name":"Ana L\u00f3pez""#), "{raw}");
    assert!(raw.contains(r#"\u00a1Gracias! \ud83d\udc4d"#), "{raw}");
    assert_eq!(hit.signature().unwrap(), hub_signature("demo-app-secret", &hit.body));
    let v = hit.json();
    let value = &v["entry"][0]["changes"][0]["value"];
    assert_eq!(value["contacts"][0]["profile"]["name"], "Ana López");
    assert_eq!(value["messages"][0]["text"]["body"], "¡Gracias! 👍");
    assert_eq!(value["messages"][0]["from"], "34600111222");
    let id = value["messages"][0]["id"].as_str().unwrap();
    assert!(id.starts_with("wamid.") && id.len() > 40, "{id}");
    let ts = value["messages"][0]["timestamp"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    assert!((ts - env.clock.now_ms() / 1000).abs() <= 1);
}

#[tokio::test]
async fn template_validation() {
    let env = Env::new().await;
    // Templates are listed with their BODY text.
    let url = format!("{}/v21.0/880000000000001/message_templates", env.sim.base_url());
    let list: Value = env
        .http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["order_update", "chat_follow_up"]);
    assert_eq!(
        list["data"][0]["components"][0]["text"],
        "Hi {{1}}, your order {{2}} is on its way."
    );
    assert_eq!(list["data"][0]["status"], "APPROVED");

    let (s, v) = env.send(template("no_such_template", &["Ana"])).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], 132001);
    assert_eq!(v["error"]["type"], "OAuthException");
    assert_eq!(v["error"]["error_data"]["messaging_product"], "whatsapp");
    assert!(v["error"]["fbtrace_id"].is_string());

    let (s, v) = env.send(template("order_update", &["Ana"])).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], 132000);
    assert!(v["error"]["error_data"]["details"].as_str().unwrap().contains("(1)"));

    // Wrong language is "does not exist in the translation" too.
    let mut wrong_lang = template("order_update", &["Ana", "1042"]);
    wrong_lang["template"]["language"]["code"] = json!("es");
    assert_eq!(env.send(wrong_lang).await.1["error"]["code"], 132001);

    // Templates need no open window: accepted, then sent + delivered with regular utility pricing.
    let (s, v) = env.send(template("order_update", &["Ana", "1042"])).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["messaging_product"], "whatsapp");
    assert_eq!(
        v["contacts"][0],
        json!({ "input": "34600111222", "wa_id": "34600111222" })
    );
    assert_eq!(v["messages"][0]["message_status"], "accepted");
    let wamid = v["messages"][0]["id"].as_str().unwrap();
    let delivered = env.status_hook(wamid, "delivered").await;
    assert_eq!(delivered["pricing"]["category"], "utility");
    assert_eq!(delivered["pricing"]["type"], "regular");
    assert_eq!(delivered["pricing"]["pricing_model"], "PMP");

    // A template added through the control API, upper-case component type as pywa sends it.
    let (s, _) = post_json(
        &env.http,
        &env.ctl("templates"),
        json!({ "name": "promo", "language": "en_US", "category": "MARKETING", "body": "Hello {{first_name}}" }),
    )
    .await;
    assert_eq!(s, 200);
    let mut named = template("promo", &["Ana"]);
    named["template"]["components"][0]["type"] = json!("BODY");
    assert_eq!(
        env.send(named.clone()).await.1["error"]["code"],
        132000,
        "named params need parameter_name"
    );
    named["template"]["components"][0]["parameters"][0]["parameter_name"] = json!("first_name");
    assert_eq!(env.send(named).await.0, 200);
}

#[tokio::test]
async fn free_form_outside_24h_is_accepted_then_fails_131047() {
    let env = Env::new().await;
    env.customer(json!({ "from": "34600111222", "name": "Ana", "text": "hola" }))
        .await;

    // Inside the window: sent then delivered, biz_opaque echoed, service pricing.
    let (s, v) = env.send(text("34600111222", "¿Algo más?")).await;
    assert_eq!(s, 200, "{v}");
    let wamid = v["messages"][0]["id"].as_str().unwrap().to_string();
    let sent = env.status_hook(&wamid, "sent").await;
    let delivered = env.status_hook(&wamid, "delivered").await;
    assert_eq!(sent["recipient_id"], "34600111222");
    assert_eq!(delivered["biz_opaque_callback_data"], "outbox:42");
    assert_eq!(delivered["pricing"]["type"], "free_customer_service");
    assert_eq!(delivered["pricing"]["category"], "service");
    let order: Vec<String> = env
        .rx
        .hits()
        .iter()
        .filter_map(|h| {
            h.json()["entry"][0]["changes"][0]["value"]["statuses"][0]["status"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(order, ["sent", "delivered"]);

    // 25 h later on the SimClock: still HTTP 200 with a wamid, then a failed status.
    env.clock.advance(DAY + 60 * 60 * 1000);
    let (s, v) = env.send(text("34600111222", "¿Sigues ahí?")).await;
    assert_eq!(s, 200, "{v}");
    let wamid = v["messages"][0]["id"].as_str().unwrap();
    let failed = env.status_hook(wamid, "failed").await;
    assert_eq!(failed["errors"][0]["code"], 131047);
    assert_eq!(failed["errors"][0]["title"], "Re-engagement message");
    assert!(failed["errors"][0]["error_data"]["details"].is_string());
    assert_eq!(failed["biz_opaque_callback_data"], "outbox:42");
    assert!(failed.get("pricing").is_none());

    // A template still goes through, and a new customer message reopens the window.
    assert_eq!(env.send(template("chat_follow_up", &["Ana"])).await.0, 200);
    env.customer(json!({ "from": "34600111222", "text": "sí" })).await;
    let (_, v) = env.send(text("34600111222", "¡Bien!")).await;
    env.status_hook(v["messages"][0]["id"].as_str().unwrap(), "delivered")
        .await;
}

#[tokio::test]
async fn unknown_numbers_fail_131026_and_send_faults_are_one_shot() {
    let env = Env::new().await;
    post_json(
        &env.http,
        &env.ctl("unknown-number"),
        json!({ "wa_id": "+44 7700 900123" }),
    )
    .await;
    let (s, v) = env
        .send(template("order_update", &["Bo", "7"]).tap(|b| b["to"] = json!("447700900123")))
        .await;
    assert_eq!(s, 200);
    let failed = env
        .status_hook(v["messages"][0]["id"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(failed["errors"][0]["code"], 131026);

    let fault = json!({ "next_send": { "http_status": 429, "code": 130429, "message": "(#130429) Rate limit hit" } });
    post_json(&env.http, &format!("{}/_sim/faults", env.sim.control()), fault).await;
    let (s, v) = env.send(template("order_update", &["Ana", "1"])).await;
    assert_eq!(s, 429);
    assert_eq!(v["error"]["code"], 130429);
    assert_eq!(v["error"]["message"], "(#130429) Rate limit hit");
    assert_eq!(
        env.send(template("order_update", &["Ana", "1"])).await.0,
        200,
        "one-shot"
    );
}

#[tokio::test]
async fn auth_and_token_expiry() {
    let env = Env::new().await;
    let url = format!("{}/v25.0/990000000000001/messages", env.sim.base_url());
    let body = template("order_update", &["Ana", "1"]);
    let r = env.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], 190);
    let r = env
        .http
        .post(&url)
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    post_json(
        &env.http,
        &format!("{}/_sim/faults", env.sim.control()),
        json!({ "expired_token": true }),
    )
    .await;
    let r = env.http.post(&url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 190);
    assert_eq!(v["error"]["error_subcode"], 463);
    post_json(&env.http, &format!("{}/_sim/faults", env.sim.control()), json!({})).await;
    assert_eq!(env.send(body).await.0, 200);

    // Validation: messaging_product, to xor recipient, type object.
    let (s, v) = env
        .send(json!({ "to": "34600111222", "type": "text", "text": { "body": "x" } }))
        .await;
    assert_eq!((s, v["error"]["code"].as_i64()), (400, Some(100)));
    let (s, v) = env
        .send(
            json!({ "messaging_product": "whatsapp", "to": "34600111222", "recipient": "ES.1234567890",
                      "type": "text", "text": { "body": "x" } }),
        )
        .await;
    assert_eq!((s, v["error"]["code"].as_i64()), (400, Some(131009)));
    let (s, v) = env
        .send(json!({ "messaging_product": "whatsapp", "to": "34600111222", "type": "image", "text": {} }))
        .await;
    assert_eq!((s, v["error"]["code"].as_i64()), (400, Some(131008)));
    let (s, _) = env
        .send(
            json!({ "messaging_product": "whatsapp", "to": "34600111222", "type": "image",
                      "image": { "caption": "x" } }),
        )
        .await;
    assert_eq!(s, 400);
    // Any version segment works; a wrong phone-number id does not.
    let r = env
        .http
        .post(format!("{}/v17.0/123/messages", env.sim.base_url()))
        .bearer_auth(TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn webhook_retries_after_a_500() {
    let env = Env::new().await;
    env.rx.script(&[500, 503]);
    let v = env.customer(json!({ "from": "34600111222", "text": "hola" })).await;
    assert_eq!(v["delivered_status"], 500);
    let hits = env.rx.wait_for(3).await;
    assert_eq!(hits[0].body, hits[2].body, "retries resend the same bytes");
    assert_eq!(hits.iter().map(|h| h.answered).collect::<Vec<_>>(), [500, 503, 200]);
    let deliveries = get_json(&env.http, &env.ctl("deliveries")).await;
    let d = deliveries.as_array().unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(
        d.iter().map(|x| x["attempt"].as_i64().unwrap()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        d.iter().map(|x| x["status"].as_i64().unwrap()).collect::<Vec<_>>(),
        [500, 503, 200]
    );
    assert!(d.iter().all(|x| x["delivery_id"] == d[0]["delivery_id"]));
    assert_eq!(
        d[0]["signature"],
        hub_signature("demo-app-secret", d[0]["body"].as_str().unwrap().as_bytes())
    );

    // max_attempts is configurable: with 2 attempts a permanently failing endpoint gets exactly 2.
    post_json(
        &env.http,
        &env.ctl("retry"),
        json!({ "max_attempts": 2, "initial_ms": 10 }),
    )
    .await;
    env.rx.script(&[500, 500, 500]);
    env.customer(json!({ "from": "34600111222", "text": "otra" })).await;
    env.rx.wait_for(5).await;
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    assert_eq!(env.rx.hits().len(), 5);
}

#[tokio::test]
async fn verification_handshake() {
    let env = Env::new().await;
    let (s, v) = post_json(&env.http, &env.ctl("verify-webhook"), json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], 200);
    assert_eq!(v["echoed"], true);
    let (_, v) = post_json(
        &env.http,
        &env.ctl("verify-webhook"),
        json!({ "verify_token": "wrong" }),
    )
    .await;
    assert_eq!(v["status"], 403);
    assert_eq!(v["echoed"], false);
}

#[tokio::test]
async fn faults_duplicate_bad_signature_out_of_order() {
    let env = Env::new().await;
    let faults = format!("{}/_sim/faults", env.sim.control());
    post_json(
        &env.http,
        &faults,
        json!({ "duplicate_webhooks": true, "bad_signature": true }),
    )
    .await;
    env.customer(json!({ "from": "34600111222", "text": "hola" })).await;
    let hits = env.rx.wait_for(2).await;
    assert_eq!(hits[0].body, hits[1].body);
    assert_ne!(
        hits[0].signature().unwrap(),
        hub_signature("demo-app-secret", &hits[0].body)
    );

    post_json(&env.http, &faults, json!({ "out_of_order_statuses": true })).await;
    let (_, v) = env.send(text("34600111222", "x")).await;
    let wamid = v["messages"][0]["id"].as_str().unwrap();
    env.status_hook(wamid, "sent").await;
    let statuses: Vec<String> = env.rx.hits()[2..]
        .iter()
        .map(|h| {
            h.json()["entry"][0]["changes"][0]["value"]["statuses"][0]["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(statuses, ["delivered", "sent"]);
    assert_eq!(
        env.rx.hits()[2].signature().unwrap(),
        hub_signature("demo-app-secret", &env.rx.hits()[2].body)
    );

    // read only through the control API
    let (s, _) = post_json(
        &env.http,
        &env.ctl("status"),
        json!({ "message_id": wamid, "status": "read" }),
    )
    .await;
    assert_eq!(s, 200);
    let read = env.status_hook(wamid, "read").await;
    assert_eq!(read["recipient_id"], "34600111222");
}

#[tokio::test]
async fn inbound_media_and_download() {
    let env = Env::new().await;
    let v = env
        .customer(json!({ "from": "34600111222", "type": "image", "caption": "este modelo" }))
        .await;
    let media_id = v["media_id"].as_str().unwrap().to_string();
    let hook = env.rx.wait_for(1).await[0].json();
    let img = &hook["entry"][0]["changes"][0]["value"]["messages"][0]["image"];
    assert_eq!(img["id"], media_id.as_str());
    assert_eq!(img["mime_type"], "image/png");
    assert_eq!(img["caption"], "este modelo");

    let meta: Value = env
        .http
        .get(format!("{}/v21.0/{media_id}", env.sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["messaging_product"], "whatsapp");
    assert_eq!(meta["sha256"], img["sha256"]);
    let url = meta["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/media-download/{media_id}?", env.sim.base_url())));
    assert_eq!(
        env.http.get(url).send().await.unwrap().status(),
        401,
        "bearer required on the download too"
    );
    let bytes = env
        .http
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..4], b"\x89PNG");
    assert_eq!(meta["file_size"], bytes.len());
    env.clock.advance(10 * 60 * 1000);
    assert_eq!(
        env.http.get(url).bearer_auth(TOKEN).send().await.unwrap().status(),
        404,
        "URL is short-lived"
    );
}

#[tokio::test]
async fn batch_bsuid_and_sent_log() {
    let env = Env::new().await;
    let (s, v) = post_json(
        &env.http,
        &env.ctl("batch"),
        json!({ "messages": [
            { "from": "34600111222", "name": "Ana", "text": "uno" },
            { "from": "34600111222", "name": "Ana", "text": "dos", "context_id": "wamid.X" },
            { "from": "34600333444", "name": "Bo", "type": "location", "latitude": 40.41678, "longitude": -3.70379 },
        ] }),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["wamids"].as_array().unwrap().len(), 3);
    let hook = env.rx.wait_for(1).await[0].json();
    let value = &hook["entry"][0]["changes"][0]["value"];
    assert_eq!(value["messages"].as_array().unwrap().len(), 3);
    assert_eq!(value["contacts"].as_array().unwrap().len(), 2);
    assert_eq!(
        value["messages"][1]["context"],
        json!({ "from": "15550001111", "id": "wamid.X" })
    );
    assert_eq!(value["messages"][2]["location"]["latitude"], 40.41678);

    // BSUID-only customer: no phone anywhere; we answer by `recipient`.
    let v = env
        .customer(json!({ "from": "34600555666", "name": "Cy", "text": "hi", "bsuid_only": true }))
        .await;
    let bsuid = v["user_id"].as_str().unwrap().to_string();
    let hook = env.rx.wait_for(2).await[1].json();
    let value = &hook["entry"][0]["changes"][0]["value"];
    assert_eq!(value["contacts"][0]["user_id"], bsuid.as_str());
    assert!(value["contacts"][0].get("wa_id").is_none());
    assert!(value["messages"][0].get("from").is_none());
    assert_eq!(value["messages"][0]["from_user_id"], bsuid.as_str());
    let (s, r) = env
        .send(json!({ "messaging_product": "whatsapp", "recipient": bsuid, "type": "text", "text": { "body": "hey" } }))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["contacts"][0]["input"], bsuid.as_str());
    let wamid = r["messages"][0]["id"].as_str().unwrap();
    let sent = env.status_hook(wamid, "delivered").await;
    assert_eq!(sent["recipient_user_id"], bsuid.as_str());

    let log = get_json(&env.http, &env.ctl("sent")).await;
    let last = log.as_array().unwrap().last().unwrap();
    assert_eq!(last["wamid"], wamid);
    assert_eq!(last["to"], bsuid.as_str());
    assert_eq!(last["type"], "text");
    assert_eq!(last["status"], 200);
    assert_eq!(last["body"]["text"]["body"], "hey");
    assert_eq!(last["headers"]["authorization"], format!("Bearer {TOKEN}"));
    assert!(last["raw_body"].as_str().unwrap().contains("\"hey\""));
}

#[tokio::test]
async fn marketing_stop_fails_131050() {
    let env = Env::new().await;
    post_json(
        &env.http,
        &env.ctl("templates"),
        json!({ "name": "promo", "language": "en_US", "category": "MARKETING", "body": "Sale, {{1}}!" }),
    )
    .await;
    let (_, v) = post_json(
        &env.http,
        &env.ctl("user-preferences"),
        json!({ "wa_id": "34600111222", "value": "stop" }),
    )
    .await;
    assert_eq!(v["delivered_status"], 200);
    let hook = env.rx.wait_for(1).await[0].json();
    assert_eq!(hook["entry"][0]["changes"][0]["field"], "user_preferences");
    let pref = &hook["entry"][0]["changes"][0]["value"]["user_preferences"][0];
    assert_eq!(pref["value"], "stop");
    assert_eq!(pref["category"], "marketing_messages");
    assert!(pref["timestamp"].is_i64());

    let (s, v) = env.send(template("promo", &["Ana"])).await;
    assert_eq!(s, 200);
    let failed = env
        .status_hook(v["messages"][0]["id"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(failed["errors"][0]["code"], 131050);
}

#[tokio::test]
async fn clock_control_and_pair_rate() {
    let env = Env::new().await;
    let (_, v) = post_json(
        &env.http,
        &format!("{}/_sim/clock", env.sim.control()),
        json!({ "set_ms": 1_767_225_600_000i64 }),
    )
    .await;
    assert!(v["now_ms"].as_i64().unwrap() >= 1_767_225_600_000);
    assert!(
        env.clock.now_ms() >= 1_767_225_600_000,
        "the Rust handle sees the same clock"
    );

    post_json(
        &env.http,
        &env.ctl("options"),
        json!({ "pair_burst": 2, "auto_statuses": false }),
    )
    .await;
    let body = template("order_update", &["Ana", "1"]);
    assert_eq!(env.send(body.clone()).await.0, 200);
    assert_eq!(env.send(body.clone()).await.0, 200);
    let (s, v) = env.send(body.clone()).await;
    assert_eq!((s, v["error"]["code"].as_i64()), (429, Some(131056)));
    env.clock.advance(6_000);
    assert_eq!(env.send(body).await.0, 200);
}

trait Tap {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for Value {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[tokio::test]
async fn media_upload_then_send_by_id_and_shutdown() {
    let env = Env::new().await;
    let body = b"--BOUND\r\nContent-Disposition: form-data; name=\"messaging_product\"\r\n\r\nwhatsapp\r\n\
--BOUND\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\napplication/pdf\r\n\
--BOUND\r\nContent-Disposition: form-data; name=\"file\"; filename=\"invoice.pdf\"\r\n\
Content-Type: application/pdf\r\n\r\n%PDF-1.4 demo\r\n--BOUND--\r\n";
    let r = env
        .http
        .post(format!("{}/v21.0/990000000000001/media", env.sim.base_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "multipart/form-data; boundary=BOUND")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let meta: Value = env
        .http
        .get(format!("{}/v21.0/{id}", env.sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["mime_type"], "application/pdf");
    assert_eq!(meta["file_size"], 13);
    let bytes = env
        .http
        .get(meta["url"].as_str().unwrap())
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    assert_eq!(&bytes.unwrap()[..], b"%PDF-1.4 demo");

    let base = env.sim.base_url().to_string();
    env.sim.shutdown().await;
    assert!(
        env.http.get(format!("{base}/_sim/clock")).send().await.is_err(),
        "port closed after shutdown"
    );
}

#[tokio::test]
async fn customer_page_is_served() {
    let env = Env::new().await;
    let r = env.http.get(format!("{}/", env.sim.base_url())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(html.contains("<title>WhatsApp simulator — play the customer</title>"));
    assert!(html.contains("<form id=\"send\">"));
    assert!(html.contains("\"/_sim/whatsapp\"") && html.contains("\"from\"") && html.contains("\"wamid\""));
    assert!(html.contains("/customer-message") && html.contains("/sent") && html.contains("/status"));
    assert!(html.contains("setInterval(poll, 2000)"));
}
