//! Customer data through the public API: Segment batches as the official libraries send
//! them, identity resolution across events and channels, consent with proof, automatic merges
//! that can be undone, privacy export and erasure, and scenario 12.

use std::io::Write;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestServer, code};

pub(crate) fn write_key(s: &TestServer) -> String {
    let demo = s.server.demo.as_ref().expect("demo");
    assert_eq!(
        demo.segment["host"], s.base,
        "the demo says where Segment libraries send"
    );
    demo.segment["write_key"].as_str().expect("write key").to_owned()
}

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

/// Posts to `/v1/{call}` with the write key as the Basic user, like analytics-python 2.x.
pub(crate) async fn segment(s: &TestServer, call: &str, key: &str, body: &Value) -> (StatusCode, Value) {
    let resp = s
        .client
        .post(format!("{}/v1/{call}", s.base))
        .header("authorization", basic(key))
        .header("user-agent", "analytics-python/2.4.0")
        .json(body)
        .send()
        .await
        .expect("segment call");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn profile_by(s: &TestServer, kind: &str, value: &str) -> (StatusCode, Value) {
    s.get(
        &format!(
            "/api/v1/profiles/lookup?kind={kind}&value={}",
            value.replace('+', "%2B").replace('@', "%40")
        ),
        &s.admin_token,
    )
    .await
}

/// Waits until the profile holding `kind=value` satisfies `done`.
async fn until_profile(s: &TestServer, kind: &str, value: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (status, body) = profile_by(s, kind, value).await;
        if status == StatusCode::OK && done(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the profile of {kind}={value} never got there; last: {last}");
}

fn kinds(profile: &Value) -> Vec<String> {
    let mut k: Vec<String> = profile["identifiers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "{}={}",
                i["kind"].as_str().unwrap_or(""),
                i["value"].as_str().unwrap_or("")
            )
        })
        .collect();
    k.sort();
    k
}

async fn timeline(s: &TestServer, customer: &str) -> Vec<Value> {
    let (status, body) = s
        .get(
            &format!("/api/v1/customers/{customer}/timeline?limit=200"),
            &s.admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn scenario_12_first_party_data() {
    let s = TestServer::start().await;
    let key = write_key(&s);
    let anon = "anon-7f3e";
    let phone = "+34612000777";
    // A visitor browses anonymously and adds a jacket to the cart (analytics-node's shape).
    let browse = json!({
        "batch": [
            {"type": "page", "name": "Home", "anonymousId": anon, "messageId": "s12-1",
             "timestamp": "2026-11-20T10:00:00.000Z", "_metadata": {"nodeVersion": "22"}},
            {"type": "page", "name": "Trail jacket", "anonymousId": anon, "messageId": "s12-2",
             "timestamp": "2026-11-20T10:01:00.000Z", "properties": {"path": "/p/trail-jacket"}},
            {"type": "track", "event": "Product Added", "anonymousId": anon, "messageId": "s12-3",
             "timestamp": "2026-11-20T10:02:00.000Z",
             "properties": {"cart_id": "cart-s12", "sku": "JKT-BLU-M", "price": 89.99, "quantity": 1}},
        ],
        "sentAt": "2026-11-20T10:02:01.000Z",
        "writeKey": key,
    });
    let (status, body) = segment(&s, "batch", &key, &browse).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"success": true})));
    let visitor = until_profile(&s, "anonymous_id", anon, |_| true).await;
    assert_eq!(kinds(&visitor), vec![format!("anonymous_id={anon}")]);

    // Sign-up: the same browser identifies with a user id, e-mail and phone.
    let signup = json!({"userId": "shop-9001", "anonymousId": anon, "messageId": "s12-4",
                        "traits": {"email": "Nora@Example.com", "phone": phone, "name": "Nora Vidal"}});
    let (status, _) = segment(&s, "identify", &key, &signup).await;
    assert_eq!(status, StatusCode::OK);
    let known = until_profile(&s, "email", "nora@example.com", |p| {
        p["identifiers"].as_array().is_some_and(|a| a.len() == 4)
    })
    .await;
    let customer = known["customer"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        visitor["customer"]["id"], customer,
        "the visitor's profile became the member's"
    );
    assert_eq!(known["traits"]["name"]["value"], "Nora Vidal");
    assert!(
        known["traits"]["name"]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("segment:"))
    );

    // Then a WhatsApp message from the same phone (through the provider simulator).
    let sim = s.server.demo.as_ref().expect("demo").channels["whatsapp"]["simulator_url"]
        .as_str()
        .expect("simulator")
        .to_owned();
    let sent: Value = s
        .client
        .post(format!("{sim}/_sim/whatsapp/customer-message"))
        .json(&json!({"from": phone.trim_start_matches('+'), "name": "Nora", "text": "Is the jacket in stock in Madrid?"}))
        .send()
        .await
        .expect("simulator")
        .json()
        .await
        .expect("json");
    assert_eq!(sent["delivered_status"].as_u64(), Some(200), "{sent}");
    let everything = until_profile(&s, "phone", phone, |p| p["customer"]["id"] == customer.as_str()).await;
    assert_eq!(
        kinds(&everything),
        vec![
            format!("anonymous_id={anon}"),
            "email=nora@example.com".to_owned(),
            format!("phone={phone}"),
            "user_id=shop-9001".to_owned(),
        ],
        "one profile: the WhatsApp number is the phone the customer signed up with"
    );
    let items = loop {
        let items = timeline(&s, &customer).await;
        if items.iter().any(|i| i["source"] == "message") {
            break items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let pages = items
        .iter()
        .filter(|i| i["source"] == "event" && i["kind"] == "page")
        .count();
    assert_eq!(pages, 2, "the anonymous page views are on the profile: {items:?}");
    let added = items
        .iter()
        .find(|i| i["name"] == "Product Added")
        .expect("Product Added");
    assert_eq!(added["kind"], "commerce");
    assert_eq!(added["detail"]["cart_id"], "cart-s12");
    let message = items
        .iter()
        .find(|i| i["source"] == "message")
        .expect("the WhatsApp message");
    assert_eq!(message["channel"], "whatsapp");
    // Skew-corrected: made 1 s before it was sent, so 1 s before we received it; newest first.
    let ts: Vec<&str> = items.iter().map(|i| i["at"].as_str().unwrap_or("")).collect();
    let mut sorted = ts.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ts, sorted);

    // Marketing consent on WhatsApp is absent until given (a message is not an opt-in)…
    let check = format!("/api/v1/customers/{customer}/may-send?channel=whatsapp&purpose=marketing");
    let (_, verdict) = s.get(&check, &s.admin_token).await;
    assert_eq!(
        verdict,
        json!({"allowed": false, "code": "consent_missing",
        "reason": "the customer has not opted in to marketing on whatsapp"})
    );
    let (_, service) = s
        .get(
            &format!("/api/v1/customers/{customer}/may-send?channel=whatsapp&purpose=service"),
            &s.admin_token,
        )
        .await;
    assert_eq!(service["allowed"], true);
    // …and once given, it is kept with its proof.
    let (status, body) = s
        .post(
            &format!("/api/v1/customers/{customer}/consents"),
            &s.admin_token,
            json!({"channel": "whatsapp", "purpose": "marketing", "granted": true, "source": "checkout",
                   "text_shown": "Send me offers on WhatsApp", "ip": "198.51.100.4"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let history = &body["consents"]["history"];
    assert_eq!(
        history[0]["proof"]["text_shown"], "Send me offers on WhatsApp",
        "{body}"
    );
    assert_eq!(history[0]["proof"]["ip"], "198.51.100.4");
    let (_, verdict) = s.get(&check, &s.admin_token).await;
    assert_eq!(verdict["allowed"], true, "{verdict}");
    // Granting without the text the customer saw is no proof.
    let (status, body) = s
        .post(
            &format!("/api/v1/customers/{customer}/consents"),
            &s.admin_token,
            json!({"channel": "email", "purpose": "marketing", "granted": true, "source": "checkout"}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_consent")
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn segment_batches_are_authenticated_limited_deduplicated_and_replays_change_nothing() {
    let s = TestServer::start().await;
    let key = write_key(&s);
    let batch = json!({"batch": [
        {"type": "identify", "userId": "u-replay", "messageId": "r-1", "traits": {"email": "replay@example.com"}},
        {"type": "track", "event": "Order Completed", "userId": "u-replay", "messageId": "r-2",
         "properties": {"order_id": "W-1", "total": 10}},
    ]});
    // Wrong or missing write key: 401, nothing stored.
    for (auth, body) in [(Some(basic("wk_wrong")), batch.clone()), (None, batch.clone())] {
        let mut req = s.client.post(format!("{}/v1/batch", s.base)).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.expect("call");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(code(&body), "invalid_write_key");
    }
    // Bad input: the documented 400s.
    for (body, want) in [
        (
            json!({"batch": [{"type": "track", "event": "X", "messageId": "b-1"}]}),
            "no_user_anon_id",
        ),
        (
            json!({"batch": [{"type": "track", "userId": "u", "messageId": "b-2"}]}),
            "missing_event",
        ),
        (
            json!({"batch": [{"type": "page", "userId": "u", "name": "x".repeat(40_000)}]}),
            "event_too_large",
        ),
        (json!({"nope": []}), "invalid_batch"),
    ] {
        let (status, answer) = segment(&s, "batch", &key, &body).await;
        assert_eq!((status, code(&answer)), (StatusCode::BAD_REQUEST, want), "{answer}");
    }
    let resp = s
        .client
        .post(format!("{}/v1/batch", s.base))
        .header("authorization", basic(&key))
        .header("content-type", "application/json")
        .body("{\"batch\": [")
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let big = json!({"batch": (0..30).map(|n| json!({"type": "page", "userId": "u", "messageId": format!("big-{n}"),
        "properties": {"pad": "y".repeat(20_000)}})).collect::<Vec<_>>()});
    let (status, answer) = segment(&s, "batch", &key, &big).await;
    assert_eq!((status, code(&answer)), (StatusCode::BAD_REQUEST, "batch_too_large"));
    assert_eq!(
        profile_by(&s, "user_id", "u").await.0,
        StatusCode::NOT_FOUND,
        "nothing of the bad batches stored"
    );

    // The same batch three times (a client retrying, once gzipped as RudderStack sends it):
    // one identify and one order on the profile.
    let (status, _) = segment(&s, "batch", &key, &batch).await;
    assert_eq!(status, StatusCode::OK);
    let first = until_profile(&s, "user_id", "u-replay", |p| {
        p["traits"]["email"]["value"] == "replay@example.com"
    })
    .await;
    let customer = first["customer"]["id"].as_str().expect("id").to_owned();
    let before = loop {
        let t = timeline(&s, &customer).await;
        if t.len() == 2 {
            break t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let (status, _) = segment(&s, "batch", &key, &batch).await;
    assert_eq!(status, StatusCode::OK);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(batch.to_string().as_bytes()).expect("gzip");
    let resp = s
        .client
        .post(format!("{}/v1/batch", s.base))
        .header("authorization", basic(&key))
        .header("content-encoding", "gzip")
        .header("content-type", "text/plain")
        .body(gz.finish().expect("gzip"))
        .send()
        .await
        .expect("call");
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "exactly 200: older clients retry anything else"
    );
    // Let processing catch up, then compare.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = timeline(&s, &customer).await;
    assert_eq!(before, after, "replays changed nothing");
    let (_, again) = profile_by(&s, "user_id", "u-replay").await;
    assert_eq!(first, again);

    // Above the source's rate: 429 with Retry-After, nothing stored.
    let (status, created) = s
        .post(
            "/api/v1/event-sources",
            &s.admin_token,
            json!({"name": "slow", "events_per_second": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let slow = created["write_key"].as_str().expect("key").to_owned();
    let burst = json!({"batch": (0..6).map(|n| json!({"type": "page", "userId": "u-slow", "messageId": format!("slow-{n}")})).collect::<Vec<_>>()});
    let resp = s
        .client
        .post(format!("{}/v1/batch", s.base))
        .header("authorization", basic(&slow))
        .json(&burst)
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_some());
    let (status, _) = segment(
        &s,
        "batch",
        &slow,
        &json!({"batch": [{"type": "page", "userId": "u-slow", "messageId": "slow-ok"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "within the rate it goes through");
    s.server.shutdown().await;
}

#[tokio::test]
async fn automatic_merges_are_logged_with_evidence_and_undone_exactly() {
    let s = TestServer::start().await;
    let key = write_key(&s);
    // Two profiles: a phone buyer in a store and an anonymous web visitor.
    let (status, _) = segment(&s, "batch", &key, &json!({"batch": [
        {"type": "identify", "userId": "pos-1", "messageId": "m-1", "traits": {"phone": "+34600999001", "tier": "gold"},
         "timestamp": "2026-11-01T10:00:00Z"},
        {"type": "page", "anonymousId": "web-1", "messageId": "m-2", "name": "Boots"},
        {"type": "identify", "anonymousId": "web-1", "messageId": "m-3", "traits": {"tier": "silver"},
         "timestamp": "2026-10-01T10:00:00Z"},
    ]})).await;
    assert_eq!(status, StatusCode::OK);
    let pos = until_profile(&s, "user_id", "pos-1", |_| true).await;
    let web = until_profile(&s, "anonymous_id", "web-1", |p| {
        p["traits"]["tier"]["value"] == "silver"
    })
    .await;
    let (pos_id, web_id) = (
        pos["customer"]["id"].as_str().expect("id"),
        web["customer"]["id"].as_str().expect("id"),
    );
    assert_ne!(pos_id, web_id);
    // The visitor types their phone at checkout: the shared phone joins the two.
    let (status, _) = segment(
        &s,
        "track",
        &key,
        &json!({"event": "Checkout Started", "anonymousId": "web-1",
        "messageId": "m-4", "context": {"traits": {"phone": "+34 600 999 001"}}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let merged = until_profile(&s, "anonymous_id", "web-1", |p| p["customer"]["id"] == pos_id).await;
    assert_eq!(
        merged["traits"]["tier"]["value"], "gold",
        "the newer statement by event time wins, not the later arrival"
    );
    let merge = &merged["merges"][0];
    assert_eq!(merge["rule"], "shared_identifier");
    assert_eq!(merge["source_customer_id"], web_id);
    assert_eq!(merge["evidence"]["identifier"]["kind"], "phone", "{merge}");
    assert!(
        timeline(&s, pos_id).await.iter().any(|i| i["name"] == "Boots"),
        "the visitor's page view moved"
    );

    // Two different user ids never merge, even through a shared e-mail.
    let (status, _) = segment(
        &s,
        "batch",
        &key,
        &json!({"batch": [
            {"type": "identify", "userId": "pos-2", "messageId": "m-5", "traits": {"email": "shared@example.com"}},
            {"type": "identify", "userId": "pos-3", "messageId": "m-6", "traits": {"email": "shared@example.com"}},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let two = until_profile(&s, "user_id", "pos-2", |_| true).await;
    let three = until_profile(&s, "user_id", "pos-3", |_| true).await;
    assert_ne!(two["customer"]["id"], three["customer"]["id"]);
    assert_eq!(kinds(&three), vec!["user_id=pos-3".to_owned()]);
    // Nor by hand.
    let (status, answer) = s
        .post(
            &format!(
                "/api/v1/customers/{}/merge",
                two["customer"]["id"].as_str().expect("id")
            ),
            &s.admin_token,
            json!({"source_customer_id": three["customer"]["id"]}),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::CONFLICT, "identifier_conflict"),
        "{answer}"
    );

    // Undo (split): each side gets back its identifiers, events and traits.
    let (status, undone) = s
        .post(
            &format!("/api/v1/customer-merges/{}/undo", merge["id"].as_str().expect("id")),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{undone}");
    let (_, web_again) = profile_by(&s, "anonymous_id", "web-1").await;
    assert_eq!(web_again["customer"]["id"], web_id);
    assert_eq!(kinds(&web_again), vec!["anonymous_id=web-1".to_owned()]);
    assert_eq!(web_again["traits"]["tier"]["value"], "silver");
    let (_, pos_again) = profile_by(&s, "user_id", "pos-1").await;
    assert_eq!(pos_again["traits"]["tier"]["value"], "gold");
    assert!(timeline(&s, web_id).await.iter().any(|i| i["name"] == "Boots"));
    assert!(!timeline(&s, pos_id).await.iter().any(|i| i["name"] == "Boots"));

    // Split by hand: a kiosk's anonymous id that two shoppers used goes to a profile of its own,
    // with the events it carried.
    let (status, _) = segment(
        &s,
        "batch",
        &key,
        &json!({"batch": [
            {"type": "identify", "userId": "pos-1", "anonymousId": "kiosk-9", "messageId": "m-7"},
            {"type": "page", "anonymousId": "kiosk-9", "messageId": "m-8", "name": "Kiosk"},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    until_profile(&s, "anonymous_id", "kiosk-9", |p| p["customer"]["id"] == pos_id).await;
    while !timeline(&s, pos_id).await.iter().any(|i| i["name"] == "Kiosk") {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, kiosk) = s
        .post(
            &format!("/api/v1/customers/{pos_id}/split"),
            &s.admin_token,
            json!({"identifiers": [{"kind": "anonymous_id", "value": "kiosk-9"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{kiosk}");
    assert_eq!(kinds(&kiosk), vec!["anonymous_id=kiosk-9".to_owned()]);
    let kiosk_id = kiosk["customer"]["id"].as_str().expect("id");
    assert!(timeline(&s, kiosk_id).await.iter().any(|i| i["name"] == "Kiosk"));
    assert!(!timeline(&s, pos_id).await.iter().any(|i| i["name"] == "Kiosk"));
    assert!(!kinds(&profile_by(&s, "user_id", "pos-1").await.1).contains(&"anonymous_id=kiosk-9".to_owned()));
    let (status, answer) = s
        .post(
            &format!("/api/v1/customers/{pos_id}/split"),
            &s.admin_token,
            json!({"identifiers": [{"kind": "email", "value": "nobody@example.com"}]}),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_split")
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn privacy_export_and_erasure_are_audited_and_erased_people_are_not_recreated() {
    let s = TestServer::start().await;
    let key = write_key(&s);
    let (status, _) = segment(&s, "batch", &key, &json!({"batch": [
        {"type": "identify", "userId": "gdpr-1", "messageId": "g-1", "traits": {"email": "erase.me@example.com", "name": "Eve"}},
        {"type": "track", "event": "Product Viewed", "userId": "gdpr-1", "messageId": "g-2", "properties": {"sku": "GLV-1"}},
    ]})).await;
    assert_eq!(status, StatusCode::OK);
    let p = until_profile(&s, "user_id", "gdpr-1", |p| p["traits"]["name"]["value"] == "Eve").await;
    let customer = p["customer"]["id"].as_str().expect("id").to_owned();
    // Agents may not; admins may.
    let (email, password) = s.demo_user("agent");
    let agent = s.token_for(&email, &password).await;
    let (status, _) = s.get(&format!("/api/v1/customers/{customer}/export"), &agent).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let export = loop {
        let (status, export) = s
            .get(&format!("/api/v1/customers/{customer}/export"), &s.admin_token)
            .await;
        assert_eq!(status, StatusCode::OK, "{export}");
        if export["events"].as_array().is_some_and(|e| e.len() == 2) {
            break export;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(export["customer"]["email"], "erase.me@example.com");
    assert_eq!(export["events"][1]["properties"]["sku"], "GLV-1", "{export}");
    let (status, erased) = s
        .post(
            &format!("/api/v1/customers/{customer}/erase"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["deleted"]["events"], 2);
    assert_eq!(profile_by(&s, "user_id", "gdpr-1").await.0, StatusCode::NOT_FOUND);
    let (_, tomb) = s
        .get(&format!("/api/v1/customers/{customer}/export"), &s.admin_token)
        .await;
    assert_eq!(tomb["customer"]["email"], Value::Null);
    assert_eq!(tomb["events"], json!([]));
    assert_eq!(tomb["identifiers"], json!([]));
    // The same person's events again: not stored, no new profile.
    let (status, _) = segment(
        &s,
        "track",
        &key,
        &json!({"event": "Product Viewed", "userId": "gdpr-1", "messageId": "g-3"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(profile_by(&s, "user_id", "gdpr-1").await.0, StatusCode::NOT_FOUND);
    let (_, audit) = s.get("/api/v1/audit?limit=200", &s.admin_token).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"customer.exported") && actions.contains(&"customer.erased"),
        "{actions:?}"
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn joining_the_loyalty_programme_stitches_the_visitors_history() {
    let s = TestServer::start().await;
    let key = write_key(&s);
    let (status, _) = segment(
        &s,
        "p",
        &key,
        &json!({"anonymousId": "kiosk-1", "name": "Loyalty", "messageId": "l-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the browser library's short form");
    until_profile(&s, "anonymous_id", "kiosk-1", |_| true).await;
    let (status, member) = s
        .post(
            "/api/v1/loyalty/members",
            &s.admin_token,
            json!({"anonymous_id": "kiosk-1", "email": "leo@example.com", "incentive": "10% off the next order"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{member}");
    let loyalty_id = member["loyalty_id"].as_str().expect("loyalty id");
    let (_, p) = profile_by(&s, "loyalty_id", loyalty_id).await;
    assert_eq!(p["loyalty"]["incentive"], "10% off the next order");
    assert!(kinds(&p).contains(&"email=leo@example.com".to_owned()));
    let items = timeline(&s, member["customer_id"].as_str().expect("id")).await;
    assert!(
        items.iter().any(|i| i["name"] == "Loyalty"),
        "the visit before joining is on the member's timeline"
    );
    let (status, answer) = s
        .get("/api/v1/profiles/lookup?kind=shoe_size&value=42", &s.admin_token)
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_identifier_kind")
    );
    s.server.shutdown().await;
}
