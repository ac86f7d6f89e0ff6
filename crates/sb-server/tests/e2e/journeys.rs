//! Journeys end to end (scenario 5): the demo's abandoned-cart and thank-you journeys on a
//! simulated clock, the WhatsApp simulator receiving what was sent, late and out-of-order
//! events, consent, a product block that leaves out what was bought, and definitions refused
//! at save.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::commerce::{cart_with, location_id};
use crate::harness::{TestServer, code};
use crate::whatsapp::{Setup, control, setup_with};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// The first `hh:00` UTC after `ms`.
fn next_utc_hour(ms: i64, hh: i64) -> i64 {
    let day = ms - ms.rem_euclid(24 * HOUR);
    let at = day + hh * HOUR;
    if at > ms { at } else { at + 24 * HOUR }
}

fn set_clock(t: &Setup, ms: i64) {
    t.clock.as_ref().expect("manual clock").set(ms);
    t.sim_clock.set(ms);
}

fn now(t: &Setup) -> i64 {
    sb_core::Clock::now_ms(t.clock.as_ref().expect("manual clock").as_ref())
}

/// A customer writes on WhatsApp and opts in to marketing there; returns their id.
async fn whatsapp_customer(t: &Setup, phone: &str, name: &str) -> String {
    let s = &t.s;
    let delivered = control(
        s,
        &t.sim,
        "/_sim/whatsapp/customer-message",
        json!({"from": phone, "name": name, "text": "hi"}),
    )
    .await;
    assert_eq!(delivered["delivered_status"].as_u64(), Some(200), "{delivered}");
    let found = s
        .until(&format!("/api/v1/customers?q={phone}"), |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let id = found["items"][0]["id"].as_str().expect("customer").to_owned();
    let (status, body) = s
        .post(
            &format!("/api/v1/customers/{id}/consents"),
            &s.admin_token,
            json!({"channel": "whatsapp", "purpose": "marketing", "granted": true,
                   "source": "signup_form", "text_shown": "Send me offers on WhatsApp"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    id
}

/// Message sends to `to` the simulator logged, once there are at least `n`.
async fn sends_to(t: &Setup, to: &str, n: usize) -> Vec<Value> {
    t.s.provider_calls(t.sim.control(), "/_sim/whatsapp/sent", n, |r| {
        r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/messages")) && r["body"]["to"] == to
    })
    .await
}

/// What the simulator received for `to` now (after giving the runner a moment).
async fn sends_now(t: &Setup, to: &str) -> Vec<Value> {
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    sends_to(t, to, 0).await
}

fn text_of(send: &Value) -> String {
    match send["body"]["type"].as_str() {
        Some("template") => send["body"]["template"].to_string(),
        _ => send["body"]["text"]["body"].as_str().unwrap_or_default().to_owned(),
    }
}

async fn journeys_of(s: &TestServer, customer: &str) -> Vec<Value> {
    let (status, body) = s
        .get(&format!("/api/v1/customers/{customer}/journeys"), &s.admin_token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

async fn until_journey(s: &TestServer, customer: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..300 {
        let list = journeys_of(s, customer).await;
        if done(&list) {
            return list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "the customer's journeys never reached the expected state: {:?}",
        journeys_of(s, customer).await
    );
}

fn named<'a>(list: &'a [Value], name: &str) -> Vec<&'a Value> {
    list.iter().filter(|j| j["journey_name"] == name).collect()
}

async fn put_line(s: &TestServer, cart: &str, sku: &str, quantity: i64) {
    let (status, body) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/carts/{cart}/lines/{sku}"),
            Some(&s.admin_token),
            Some(json!({"quantity": quantity})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn scenario_05_contextual_messaging() {
    let t = setup_with(true, true).await;
    let s = &t.s;
    // Ten in the morning (UTC, the customers' zone): outside the journeys' quiet hours.
    let t0 = next_utc_hour(now(&t), 10);
    set_clock(&t, t0);

    // A marketer adds a cross-sell: two hours after a purchase, products not bought yet.
    let (email, password) = s.demo_user("marketer");
    let marketer = s.token_for(&email, &password).await;
    let cross_sell = json!({
        "name": "Cross-sell after a purchase",
        "definition": {
            "trigger": {"event": "Order Completed"},
            "correlation_key": "order_id",
            "steps": [
                {"id": "later", "type": "delay", "minutes": 120},
                {"id": "not_a_poncho_owner", "type": "branch",
                 "condition": {"type": "not", "condition": {"type": "purchased", "sku": "PONCHO-1"}}},
                {"id": "suggest", "type": "send", "message": {
                    "headline": "You might also like",
                    "body": "{% for p in products %}{{ p.name }} ({{ p.price }}){% unless forloop.last %}; {% endunless %}{% endfor %}",
                    "products": {"type": "pick", "skus": ["BOOT-42", "GLV-1", "PONCHO-1"]}
                }}
            ]
        }
    });
    let (status, created) = s.post("/api/v1/journeys", &marketer, cross_sell).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let cross_id = created["id"].as_str().expect("id").to_owned();
    let (status, active) = s
        .post(&format!("/api/v1/journeys/{cross_id}/activate"), &marketer, json!({}))
        .await;
    assert_eq!(
        (status, active["state"].as_str()),
        (StatusCode::OK, Some("active")),
        "{active}"
    );

    // Ana and Dan write on WhatsApp and opt in to marketing there; Dan then opts out.
    let ana = whatsapp_customer(&t, "34600111222", "Ana López").await;
    let dan = whatsapp_customer(&t, "34600555666", "Dan Ortiz").await;
    let (status, body) = s
        .post(
            &format!("/api/v1/customers/{dan}/consents"),
            &s.admin_token,
            json!({"channel": "whatsapp", "purpose": "marketing", "granted": false, "source": "preference_center"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Both fill a cart and leave. Ana comes back half an hour later and adds boots.
    let ana_cart = cart_with(s, &ana, &[("JKT-BLU-M", 1), ("GLV-1", 2)]).await;
    let dan_cart = cart_with(s, &dan, &[("GLV-1", 1)]).await;
    let list = until_journey(s, &ana, |l| !named(l, "Abandoned cart").is_empty()).await;
    let cart_journey = named(&list, "Abandoned cart")[0].clone();
    assert_eq!(cart_journey["step_id"], "cart_idle_1h", "{cart_journey}");
    assert_eq!(cart_journey["next_send"]["step_id"], "reminder", "{cart_journey}");
    assert_eq!(cart_journey["next_send"]["channel"], "whatsapp", "{cart_journey}");
    set_clock(&t, t0 + 30 * MINUTE);
    put_line(s, &ana_cart, "BOOT-42", 1).await;

    // At 1 h 15: Dan's reminder came due and was refused for his opt-out; Ana's waits, as
    // her cart changed 45 minutes ago.
    set_clock(&t, t0 + 75 * MINUTE);
    let dans = until_journey(s, &dan, |l| {
        named(l, "Abandoned cart").first().is_some_and(|j| {
            j["deliveries"]
                .as_array()
                .is_some_and(|d| !d.is_empty() && d[0]["state"] != "planned")
        })
    })
    .await;
    let refused = &named(&dans, "Abandoned cart")[0]["deliveries"][0];
    assert_eq!(
        (refused["state"].as_str(), refused["reason_code"].as_str()),
        (Some("suppressed"), Some("consent_revoked")),
        "{refused}"
    );
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("opted out of marketing on whatsapp")),
        "the delivery says why: {refused}"
    );
    assert!(sends_now(&t, "34600555666").await.is_empty(), "nothing went to Dan");
    assert!(
        sends_now(&t, "34600111222").await.is_empty(),
        "Ana's wait restarted with her last change"
    );
    assert!(dan_cart != ana_cart);

    // At 1 h 31 (an hour after her last change): the reminder, with her cart, on WhatsApp.
    set_clock(&t, t0 + 91 * MINUTE);
    let reminder = text_of(&sends_to(&t, "34600111222", 1).await[0]);
    for item in [
        "Trail jacket Blue M",
        "Wool gloves × 2",
        "Hiking boots EU 42",
        "Finish your order",
    ] {
        assert!(reminder.contains(item), "{item} in {reminder}");
    }
    let list = until_journey(s, &ana, |l| {
        named(l, "Abandoned cart")
            .first()
            .is_some_and(|j| j["deliveries"][0]["state"] == "queued")
    })
    .await;
    let delivery = &named(&list, "Abandoned cart")[0]["deliveries"][0];
    assert!(
        delivery["reason"].as_str().is_some_and(|r| r.contains("last wrote on")),
        "the delivery says why WhatsApp: {delivery}"
    );

    // She buys before the second reminder: the sequence ends, one thank-you goes out.
    let madrid = location_id(s, "MAD-CENTRO").await;
    let (status, placed) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": ana_cart, "idempotency_key": "ana-1", "fulfillment": "pickup", "location_id": madrid}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let sent = sends_to(&t, "34600111222", 2).await;
    assert!(
        text_of(&sent[1]).contains("Thank you for your order"),
        "{}",
        text_of(&sent[1])
    );
    let list = until_journey(s, &ana, |l| {
        named(l, "Abandoned cart")
            .first()
            .is_some_and(|j| j["state"] == "exited")
    })
    .await;
    let ended = named(&list, "Abandoned cart")[0];
    assert_eq!(ended["end_reason"], "exit: Order Completed", "{ended}");
    assert_eq!(ended["converted"], true, "the purchase is the journey's goal");

    // Two hours later the cross-sell: the poncho, not what she just bought.
    set_clock(&t, t0 + 215 * MINUTE);
    let sent = sends_to(&t, "34600111222", 3).await;
    let suggestion = text_of(&sent[2]);
    assert!(suggestion.contains("Rain poncho"), "{suggestion}");
    assert!(
        !suggestion.contains("Hiking boots") && !suggestion.contains("Wool gloves"),
        "nothing she bought is promoted: {suggestion}"
    );

    // A day later: no second reminder, and still one thank-you.
    set_clock(&t, t0 + 26 * HOUR);
    let all = sends_now(&t, "34600111222").await;
    let texts: Vec<String> = all.iter().map(text_of).collect();
    assert_eq!(all.len(), 3, "{texts:?}");
    assert_eq!(
        texts.iter().filter(|t| t.contains("Thank you for your order")).count(),
        1
    );

    // Out of order: Cy's purchase (Segment, from the web shop) arrives before the cart event
    // it follows; the late "Product Added" starts nothing.
    let key = crate::cdp::write_key(s);
    let cy = json!({"phone": "+34600777888", "email": "cy@example.com"});
    let placed_at = now(&t) - 5 * MINUTE;
    let (status, _) = crate::cdp::segment(
        s,
        "track",
        &key,
        &json!({"userId": "cy-1", "event": "Order Completed", "context": {"traits": cy},
                "properties": {"cart_id": "web-cart-9", "total": 30},
                "timestamp": sb_core::clock::rfc3339(placed_at), "messageId": "cy-order"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let cy_id = s
        .until("/api/v1/customers?q=cy%40example.com", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await["items"][0]["id"]
        .as_str()
        .expect("cy")
        .to_owned();
    let (status, _) = crate::cdp::segment(
        s,
        "track",
        &key,
        &json!({"userId": "cy-1", "event": "Product Added", "context": {"traits": cy},
                "properties": {"cart_id": "web-cart-9", "sku": "GLV-1"},
                "timestamp": sb_core::clock::rfc3339(placed_at - 20 * MINUTE), "messageId": "cy-add"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    s.until(&format!("/api/v1/customers/{cy_id}/timeline"), |b| {
        b["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["name"] == "Product Added"))
    })
    .await;
    assert!(
        named(&journeys_of(s, &cy_id).await, "Abandoned cart").is_empty(),
        "a cart event older than the purchase it led to starts no reminder"
    );

    // Late: Bea's cart comes due at 21:16, inside quiet hours, so the reminder is held; her
    // purchase, made at 21:10 but received at 21:30, stops it.
    let evening = next_utc_hour(now(&t), 20) + 15 * MINUTE;
    set_clock(&t, evening);
    let bea = whatsapp_customer(&t, "34600333444", "Bea Soto").await;
    let bea_cart = cart_with(s, &bea, &[("PONCHO-1", 1)]).await;
    until_journey(s, &bea, |l| !named(l, "Abandoned cart").is_empty()).await;
    set_clock(&t, evening + 61 * MINUTE);
    let list = until_journey(s, &bea, |l| {
        named(l, "Abandoned cart")
            .first()
            .is_some_and(|j| j["deliveries"][0]["state"] == "deferred")
    })
    .await;
    let held = &named(&list, "Abandoned cart")[0]["deliveries"][0];
    assert_eq!(held["reason_code"], "quiet_hours", "{held}");
    set_clock(&t, evening + 75 * MINUTE);
    let (status, _) = crate::cdp::segment(
        s,
        "track",
        &key,
        &json!({"userId": "bea-1", "event": "Order Completed",
                "context": {"traits": {"phone": "+34600333444"}},
                "properties": {"cart_id": bea_cart, "total": 29.99},
                "timestamp": sb_core::clock::rfc3339(evening + 55 * MINUTE), "messageId": "bea-order"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let list = until_journey(s, &bea, |l| {
        named(l, "Abandoned cart")
            .first()
            .is_some_and(|j| j["state"] == "exited")
    })
    .await;
    let held = &named(&list, "Abandoned cart")[0]["deliveries"][0];
    assert_eq!(
        (held["state"].as_str(), held["reason_code"].as_str()),
        (Some("suppressed"), Some("journey_exited")),
        "{held}"
    );
    set_clock(&t, evening + 12 * HOUR);
    let to_bea: Vec<String> = sends_now(&t, "34600333444").await.iter().map(text_of).collect();
    assert!(to_bea.is_empty(), "the held reminder never went: {to_bea:?}");
}

#[tokio::test]
async fn bad_journey_definitions_are_refused_at_save_and_nothing_is_activated() {
    let s = TestServer::start().await;
    let (email, password) = s.demo_user("marketer");
    let marketer = s.token_for(&email, &password).await;
    let send = |body: &str| json!({"id": "send", "type": "send", "message": {"headline": "Hi", "body": body}});
    let cases = [
        (
            "journey_cycle",
            json!({"trigger": {"event": "Product Added"}, "steps": [
                {"id": "a", "type": "delay", "minutes": 5},
                {"id": "b", "type": "branch", "condition": {"type": "cart_has_items"}, "otherwise": "a"}]}),
        ),
        (
            "unknown_event_property",
            json!({"trigger": {"event": "Product Added", "filter": [{"property": "colour", "op": "eq", "value": "red"}]},
                   "steps": [send("x")]}),
        ),
        (
            "template_error",
            json!({"trigger": {"event": "Product Added"}, "steps": [send("Hi {{ customer.nickname }}")]}),
        ),
        (
            "template_error",
            json!({"trigger": {"event": "Product Added"}, "steps": [send("{{ cart.total | sparkle }}")]}),
        ),
        (
            "template_required",
            json!({"trigger": {"event": "Product Added"}, "steps": [
                {"id": "send", "type": "send", "channel": "whatsapp", "message": {"headline": "Hi", "body": "x"}}]}),
        ),
        (
            "invalid_definition",
            json!({"trigger": {"event": "Product Added"}, "steps": [{"id": "x", "type": "teleport"}]}),
        ),
    ];
    for (expected, definition) in cases {
        let (status, body) = s
            .post(
                "/api/v1/journeys",
                &marketer,
                json!({"name": "Broken", "definition": definition}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, expected),
            "{body}"
        );
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (_, list) = s.get("/api/v1/journeys", &marketer).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert!(!names.contains(&"Broken"), "nothing was saved: {names:?}");
    // Agents do not manage journeys.
    let (email, password) = s.demo_user("agent");
    let agent = s.token_for(&email, &password).await;
    let (status, _) = s.get("/api/v1/journeys", &agent).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// kill -9 while a journey is sending to 300 customers (two messages each): after the
/// restart every step has run, no delivery or message exists twice, and the receiver got
/// every message (a resend of a message in flight at the kill carries the same message id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_journey_sends_nothing_twice_and_loses_no_step() {
    const CUSTOMERS: usize = 300;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client");
    let mut server = crate::nothing_lost::spawn_with(&data, port, &[]);
    crate::nothing_lost::wait_ready(&client, &base).await;
    let creds: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo-credentials.json")).expect("credentials"))
            .expect("json");
    let token = creds["api_token"].as_str().expect("token").to_owned();
    let call = |method: reqwest::Method, path: String, body: Value| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            let r = client
                .request(method, format!("{base}{path}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .expect("call");
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "{path}: {status} {body}");
            body
        }
    };
    // Only this test's journey runs.
    let list = call(reqwest::Method::GET, "/api/v1/journeys".into(), json!(null)).await;
    for j in list["items"].as_array().expect("items") {
        let id = j["id"].as_str().expect("id");
        call(
            reqwest::Method::POST,
            format!("/api/v1/journeys/{id}/archive"),
            json!({}),
        )
        .await;
    }
    let receiver = crate::harness::Receiver::start().await;
    let account = call(
        reqwest::Method::POST,
        "/api/v1/channel-accounts".into(),
        json!({"channel": "api", "name": "app", "settings": {"webhook_url": receiver.url}}),
    )
    .await;
    let hook = account["webhook_url"].as_str().expect("hook").to_owned();
    let secret = account["secrets"]["secret"].as_str().expect("secret").to_owned();
    // Each customer writes once (an address on the account), then fills a cart.
    for n in 0..CUSTOMERS {
        let body = serde_json::to_vec(&json!({"type": "message", "id": format!("in-{n}"),
            "from": {"id": format!("k9-{n}"), "name": format!("Customer {n}")}, "text": "hello"}))
        .expect("json");
        let r = client
            .post(&hook)
            .header("content-type", "application/json")
            .header(
                sb_channels::signing::HEADER,
                sb_channels::signing::sign(&secret, crate::nothing_lost::now_secs(), &body),
            )
            .body(body)
            .send()
            .await
            .expect("inbound");
        assert!(r.status().is_success());
    }
    let mut customers = Vec::new();
    for _ in 0..300 {
        let found = call(
            reqwest::Method::GET,
            "/api/v1/customers?q=k9-&limit=200".into(),
            json!(null),
        )
        .await;
        let more = call(
            reqwest::Method::GET,
            format!(
                "/api/v1/customers?q=k9-&limit=200&cursor={}",
                found["next_cursor"].as_str().unwrap_or_default()
            ),
            json!(null),
        )
        .await;
        customers = found["items"]
            .as_array()
            .into_iter()
            .chain(more["items"].as_array())
            .flatten()
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect::<Vec<_>>();
        if customers.len() == CUSTOMERS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(customers.len(), CUSTOMERS, "every customer was taken in");
    let journey = call(
        reqwest::Method::POST,
        "/api/v1/journeys".into(),
        json!({"name": "Welcome pair", "definition": {
            "trigger": {"event": "Product Added"}, "correlation_key": "cart_id",
            "steps": [
                {"id": "first", "type": "send", "purpose": "transactional", "message": {"headline": "Hello {{ customer.name }}", "body": "one"}},
                {"id": "second", "type": "send", "purpose": "transactional", "message": {"headline": "Again {{ customer.name }}", "body": "two"}}
            ]}}),
    )
    .await;
    let jid = journey["id"].as_str().expect("id").to_owned();
    call(
        reqwest::Method::POST,
        format!("/api/v1/journeys/{jid}/activate"),
        json!({}),
    )
    .await;
    for customer in &customers {
        let cart = call(
            reqwest::Method::POST,
            "/api/v1/carts".into(),
            json!({"customer_id": customer}),
        )
        .await;
        let cart = cart["cart"]["id"].as_str().expect("cart").to_owned();
        call(
            reqwest::Method::PUT,
            format!("/api/v1/carts/{cart}/lines/GLV-1"),
            json!({"quantity": 1}),
        )
        .await;
    }
    // Kill it once some messages went out, start it again on the same data.
    let start = std::time::Instant::now();
    while receiver.received().len() < CUSTOMERS / 3 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the journey never started sending"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill().expect("SIGKILL");
    let _ = server.wait();
    let before = receiver.received().len();
    let mut second = crate::nothing_lost::spawn_with(&data, port, &[]);
    crate::nothing_lost::wait_ready(&client, &base).await;
    let ids = || {
        receiver
            .received()
            .iter()
            .filter_map(|(_, b)| b["message_id"].as_str().map(str::to_owned))
            .collect::<std::collections::HashSet<_>>()
    };
    let start = std::time::Instant::now();
    while ids().len() < 2 * CUSTOMERS {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(180),
            "only {} of {} messages arrived",
            ids().len(),
            2 * CUSTOMERS
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Exactly one delivery and one message per step and customer.
    let db_path = data.join("switchboard.sqlite");
    let exec = sb_sql::sqlite::SqliteExecutor::open(&sb_sql::sqlite::SqliteOptions::new(&db_path)).expect("open");
    let db = sb_sql::Db::new(std::sync::Arc::new(exec));
    let scalar = |sql: &'static str| {
        let db = db.clone();
        async move {
            db.read(move |c| c.query_one(&sb_sql::Stmt::new(sql))?.get::<i64>("n"))
                .await
                .expect(sql)
        }
    };
    assert_eq!(
        scalar("SELECT COUNT(*) AS n FROM deliveries WHERE state = 'queued'").await,
        2 * CUSTOMERS as i64
    );
    assert_eq!(
        scalar("SELECT COUNT(*) AS n FROM (SELECT instance_id, step_id FROM deliveries GROUP BY instance_id, step_id HAVING COUNT(*) > 1) t").await,
        0
    );
    assert_eq!(
        scalar("SELECT COUNT(*) AS n FROM messages WHERE direction = 'outbound'").await,
        2 * CUSTOMERS as i64,
        "one message per delivery"
    );
    assert_eq!(
        scalar("SELECT COUNT(*) AS n FROM journey_instances WHERE state = 'completed'").await,
        CUSTOMERS as i64
    );
    let requests = receiver.received().len();
    eprintln!(
        "kill -9 during a journey: {before} messages received before the kill; {requests} requests for {} messages in all",
        2 * CUSTOMERS
    );
    db.close().await;
    let _ = std::process::Command::new("kill").arg(second.id().to_string()).status();
    let _ = second.wait();
}

fn demo_sim(s: &TestServer, channel: &str) -> String {
    s.server.demo.as_ref().expect("demo").channels[channel]["simulator_url"]
        .as_str()
        .expect("simulator url")
        .to_owned()
}

async fn consent(s: &TestServer, customer: &str, channel: &str) {
    let (status, body) = s
        .post(
            &format!("/api/v1/customers/{customer}/consents"),
            &s.admin_token,
            json!({"channel": channel, "purpose": "marketing", "granted": true,
                   "source": "signup_form", "text_shown": "Send me offers"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn customer_by(s: &TestServer, q: &str) -> String {
    s.until(&format!("/api/v1/customers?q={q}"), |b| {
        b["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await["items"][0]["id"]
        .as_str()
        .expect("customer")
        .to_owned()
}

/// Scenario 6: one message, written once, sent to six customers whose preferred channels
/// differ, as each provider's simulator (and the visitor's widget) received it.
#[tokio::test]
async fn scenario_06_one_message_per_channel() {
    let clock = sb_engine::ManualClock::new(sb_core::Clock::now_ms(&sb_core::SystemClock));
    let s = TestServer::start_with_journeys(sb_engine::Time::Manual(clock.clone()), |_| {}).await;
    let (wa, sms, mail, ig, tg) = (
        demo_sim(&s, "whatsapp"),
        demo_sim(&s, "twilio_sms"),
        demo_sim(&s, "email"),
        demo_sim(&s, "instagram"),
        demo_sim(&s, "telegram"),
    );
    // Only this message goes out.
    let (_, list) = s.get("/api/v1/journeys", &s.admin_token).await;
    for j in list["items"].as_array().expect("items") {
        let id = j["id"].as_str().expect("id");
        s.post(&format!("/api/v1/journeys/{id}/archive"), &s.admin_token, json!({}))
            .await;
    }
    // WhatsApp: she wrote more than a day ago, so only the approved template may go.
    s.sim_post(
        &wa,
        "/_sim/whatsapp/customer-message",
        json!({"from": "34600900100", "name": "Wanda", "text": "hi"}),
    )
    .await;
    let wanda = customer_by(&s, "34600900100").await;
    clock.advance(25 * HOUR);
    s.sim_post(
        &sms,
        "/_sim/inbound",
        json!({"from": "+15557650001", "to": "+15551230000", "body": "hello"}),
    )
    .await;
    let sam = customer_by(&s, "%2B15557650001").await;
    let address = s.server.demo.as_ref().expect("demo").channels["email"]["address"]
        .as_str()
        .expect("address")
        .to_owned();
    s.sim_post(
        &mail,
        "/_sim/send",
        json!({"from": "emma@example.test", "to": address, "subject": "Hi", "text": "hello"}),
    )
    .await;
    let emma = customer_by(&s, "emma%40example.test").await;
    s.sim_post(
        &ig,
        "/_sim/messenger/customer-message",
        json!({"psid": "17841400555000111", "text": "hello"}),
    )
    .await;
    s.sim_post(
        &tg,
        "/_sim/telegram/customer-message",
        json!({"user_id": 4242, "first_name": "Tomás", "text": "hello"}),
    )
    .await;
    let conversations = |channel: &'static str| {
        let s = &s;
        async move {
            let list = s
                .until(&format!("/api/v1/conversations?channel={channel}"), |b| {
                    b["items"].as_array().is_some_and(|a| a.len() == 1)
                })
                .await;
            let conversation = list["items"][0]["id"].as_str().expect("conversation").to_owned();
            let (_, detail) = s
                .get(&format!("/api/v1/conversations/{conversation}"), &s.admin_token)
                .await;
            detail["customer"]["id"].as_str().expect("customer").to_owned()
        }
    };
    let ida = conversations("instagram").await;
    let tomas = conversations("telegram").await;
    // A website visitor, with the chat open.
    let token = crate::widget_client::demo_website_token(&s);
    let visitor = crate::widget_client::Widget::start(&s, &token).await;
    visitor.say("w-1", "hello").await;
    let mut socket = visitor.connect(None).await;
    let vera = conversations("widget").await;
    for (customer, channel) in [
        (&wanda, "whatsapp"),
        (&sam, "twilio_sms"),
        (&emma, "email"),
        (&ida, "instagram"),
        (&tomas, "telegram"),
        (&vera, "widget"),
    ] {
        consent(&s, customer, channel).await;
    }

    let (email, password) = s.demo_user("marketer");
    let marketer = s.token_for(&email, &password).await;
    let (status, created) = s
        .post(
            "/api/v1/journeys",
            &marketer,
            json!({"name": "Spring sale", "definition": {
                "trigger": {"event": "Product Added"},
                "steps": [{"id": "announce", "type": "send", "message": {
                    "headline": "Tom & Jerry <3 spring sale",
                    "body": "{{ customer.first_name | default: 'Hello' }}, boots and jackets are 20% off this week.",
                    "image_url": "https://shop.example/img/spring.jpg",
                    "cta_label": "Shop the sale",
                    "cta_url": "https://shop.example/sale?c={{ customer.id }}",
                    "quick_replies": ["Show me", "Not now"],
                    "products": {"type": "cart"},
                    "variants": {"whatsapp": {"template": "cart_reminder", "language": "en_US", "parameters": [
                        "{{ customer.first_name | default: 'there' }}",
                        "{% for item in cart.items %}{{ item.name }}{% endfor %}",
                        "https://shop.example/sale"
                    ]}}
                }}]
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, _) = s
        .post(&format!("/api/v1/journeys/{id}/activate"), &marketer, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    for customer in [&wanda, &sam, &emma, &ida, &tomas, &vera] {
        cart_with(&s, customer, &[("GLV-1", 1)]).await;
    }

    // WhatsApp: the approved template with the mapped parameters.
    let sent = s
        .provider_calls(&wa, "/_sim/whatsapp/sent", 1, |r| {
            r["method"] == "POST" && r["body"]["to"] == "34600900100"
        })
        .await;
    let body = &sent[0]["body"];
    assert_eq!(body["type"], "template", "{body}");
    assert_eq!(body["template"]["name"], "cart_reminder");
    let params: Vec<&str> = body["template"]["components"][0]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert_eq!(params, ["Wanda", "Wool gloves", "https://shop.example/sale"]);

    // SMS: concise, within two segments, the link whole.
    let got = s
        .provider_calls(&sms, "/_sim/received?to=%2B15557650001", 1, |r| r["kind"] == "message")
        .await;
    let text = got[0]["body"].as_str().expect("sms body");
    assert!(sb_core::sms::segments(text).segments <= 2, "{text}");
    // The link goes through our own redirect, to this message's URL only.
    let short = text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{}/l/", s.base)))
        .unwrap_or_else(|| panic!("a short link in {text}"))
        .to_owned();
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let hop = no_follow.get(&short).send().await.expect("follow");
    assert_eq!(hop.status(), StatusCode::FOUND);
    assert_eq!(
        hop.headers()["location"].to_str().expect("location"),
        format!("https://shop.example/sale?c={sam}")
    );
    let forged = no_follow
        .get(format!("{}/l/notALinkOfOurs", s.base))
        .send()
        .await
        .expect("forged");
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);

    // E-mail: HTML and text, the one-click unsubscribe headers.
    let got = s
        .provider_calls(&mail, "/_sim/messages?to=emma@example.test", 1, |_| true)
        .await
        .remove(0);
    assert_eq!(got["subject"], "Tom & Jerry <3 spring sale");
    let html = got["html"].as_str().expect("html part");
    assert!(html.contains("Tom &amp; Jerry &lt;3 spring sale"), "{html}");
    assert!(
        html.contains("https://shop.example/img/spring.jpg") && html.contains("Shop the sale"),
        "{html}"
    );
    assert!(
        got["text"].as_str().is_some_and(|t| t.contains("boots and jackets")),
        "{got}"
    );
    assert!(
        got["list_unsubscribe"]
            .as_str()
            .is_some_and(|u| u.contains("/unsubscribe/")),
        "{got}"
    );
    assert_eq!(got["list_unsubscribe_post"], "List-Unsubscribe=One-Click");

    // Instagram: the image, then the text with the quick replies.
    let got = s
        .provider_calls(&ig, "/_sim/messenger/sent", 2, |r| {
            r["method"] == "POST" && r["body"]["recipient"]["id"] == "17841400555000111"
        })
        .await;
    assert_eq!(
        got[0]["body"]["message"]["attachment"]["payload"]["url"],
        "https://shop.example/img/spring.jpg"
    );
    assert!(
        got[1]["body"]["message"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Tom & Jerry"))
    );
    assert_eq!(got[1]["body"]["message"]["quick_replies"][0]["title"], "Show me");

    // Telegram: HTML parse mode, escaped, with the photo.
    let got = s
        .provider_calls(&tg, "/_sim/telegram/sent", 1, |r| {
            r["method"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case("sendPhoto") || m.eq_ignore_ascii_case("sendMessage"))
                && r["body"]["chat_id"] == 4242
        })
        .await;
    let body = &got[0]["body"];
    assert_eq!(body["parse_mode"], "HTML", "{body}");
    let caption = body["caption"].as_str().or(body["text"].as_str()).expect("text");
    assert!(
        caption.starts_with("<b>Tom &amp; Jerry &lt;3 spring sale</b>"),
        "{caption}"
    );
    assert!(caption.contains("<a href=\"https://shop.example/sale?c="), "{caption}");
    // The website widget: a card, live on the visitor's socket.
    let card = loop {
        let frame = socket.next_of("message.created").await;
        if frame["message"]["direction"] == "outbound" {
            break frame["message"]["card"].clone();
        }
    };
    assert_eq!(card["title"], "Tom & Jerry <3 spring sale", "{card}");
    assert_eq!(card["image_url"], "https://shop.example/img/spring.jpg");
    assert_eq!(card["button_label"], "Shop the sale");
    assert!(
        card["text"].as_str().is_some_and(|t| t.contains("Wool gloves")),
        "{card}"
    );

    // The Bot API accepted the markup (the simulator parses it as Telegram does).
    let accepted = s
        .provider_calls(&tg, "/_sim/telegram/sent", 1, |r| {
            r["body"]["chat_id"] == 4242 && r["ok"] == true
        })
        .await;
    assert_eq!(accepted.len(), 1, "{accepted:?}");
}

/// The journey engine on PostgreSQL: entry, a purchase that exits, the timer that fires and
/// the delivery that goes out through the outbox, in a schema of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_run_on_postgres() {
    let Some((admin, schema, schema_url)) = crate::harness::pg_schema().await else {
        println!("PostgreSQL half skipped: SWITCHBOARD_TEST_PG_URL is not set");
        return;
    };
    let clock = sb_engine::ManualClock::new(sb_core::Clock::now_ms(&sb_core::SystemClock));
    let s = TestServer::start_with_journeys(sb_engine::Time::Manual(clock.clone()), |c| {
        c.database = sb_server::config::DatabaseConfig::Postgres(schema_url);
    })
    .await;
    let (_, list) = s.get("/api/v1/journeys", &s.admin_token).await;
    for j in list["items"].as_array().expect("items") {
        let id = j["id"].as_str().expect("id");
        s.post(&format!("/api/v1/journeys/{id}/archive"), &s.admin_token, json!({}))
            .await;
    }
    let r = crate::harness::Receiver::start().await;
    let app = s.api_account("app", &r.url).await;
    for who in ["pg-ana", "pg-bob"] {
        let (status, _) = s
            .deliver(
                &app,
                &json!({"type": "message", "id": format!("m-{who}"), "from": {"id": who, "name": who}, "text": "hi"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let ana = customer_by(&s, "pg-ana").await;
    let bob = customer_by(&s, "pg-bob").await;
    let (status, created) = s
        .post(
            "/api/v1/journeys",
            &s.admin_token,
            json!({"name": "Cart on PG", "definition": {
                "trigger": {"event": "Product Added"}, "correlation_key": "cart_id",
                "exit_rules": [{"event": "Order Completed", "match_key": true}],
                "goal": {"event": "Order Completed", "window_hours": 24},
                "steps": [
                    {"id": "idle", "type": "wait_for", "restart_on": ["Product Added"], "match_key": true, "timeout_minutes": 60},
                    {"id": "remind", "type": "send", "purpose": "transactional",
                     "message": {"headline": "{{ customer.name }}, your cart", "body": "{{ cart.total }}", "products": {"type": "cart"}}}
                ]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    s.post(&format!("/api/v1/journeys/{id}/activate"), &s.admin_token, json!({}))
        .await;
    cart_with(&s, &ana, &[("GLV-1", 2)]).await;
    let bob_cart = cart_with(&s, &bob, &[("GLV-1", 1)]).await;
    until_journey(&s, &bob, |l| !named(l, "Cart on PG").is_empty()).await;
    let madrid = location_id(&s, "MAD-CENTRO").await;
    let (status, placed) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": bob_cart, "idempotency_key": "pg-bob-1", "fulfillment": "pickup", "location_id": madrid}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let bobs = until_journey(&s, &bob, |l| {
        named(l, "Cart on PG").first().is_some_and(|j| j["state"] == "exited")
    })
    .await;
    assert_eq!(named(&bobs, "Cart on PG")[0]["converted"], true);
    clock.advance(61 * MINUTE);
    let anas = until_journey(&s, &ana, |l| {
        named(l, "Cart on PG")
            .first()
            .is_some_and(|j| j["deliveries"][0]["state"] == "queued")
    })
    .await;
    assert_eq!(named(&anas, "Cart on PG")[0]["state"], "completed");
    let start = std::time::Instant::now();
    while !r
        .received()
        .iter()
        .any(|(_, b)| b["text"].as_str().is_some_and(|t| t.contains("pg-ana, your cart")))
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the reminder never arrived: {:?}",
            r.received()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let to_bob = r
        .received()
        .iter()
        .filter(|(_, b)| b["text"].as_str().is_some_and(|t| t.contains("pg-bob")))
        .count();
    assert_eq!(to_bob, 0, "the purchase stopped Bob's reminder");
    s.server.shutdown().await;
    crate::harness::drop_pg_schema(&admin, &schema).await;
}
