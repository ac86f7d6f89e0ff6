//! Commerce over the public API: stores and a warehouse, a catalogue with a kit, stock
//! received through the ledger, "available at my local branch" nearest first, checkout holds
//! committed, released and expired, replays with one effect, and bad input refused with
//! nothing changed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{EventStream, TestServer, code};

async fn location(s: &TestServer, code: &str, name: &str, lat: f64, lng: f64, kind: &str) -> String {
    let (status, body) = s
        .post(
            "/api/v1/locations",
            &s.admin_token,
            json!({"code": code, "kind": kind, "name": name, "address": "Calle Mayor 1", "lat": lat, "lng": lng,
                   "timezone": "Europe/Madrid", "can_pickup": kind == "store", "accepts_returns": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().expect("id").to_owned()
}

pub(crate) async fn change(s: &TestServer, key: &str, lines: Value) -> (StatusCode, Value) {
    s.post(
        "/api/v1/inventory/changes",
        &s.admin_token,
        json!({"idempotency_key": key, "reason": "received", "lines": lines}),
    )
    .await
}

async fn availability(s: &TestServer, sku: &str) -> Value {
    let (status, body) = s
        .get(
            &format!("/api/v1/inventory/availability?sku={sku}&lat=40.4168&lng=-3.7038"),
            &s.admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn at<'a>(availability: &'a Value, code: &str) -> &'a Value {
    availability["locations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["code"] == code)
        .expect("location listed")
}

#[tokio::test]
async fn scenario_08_live_inventory() {
    let s = TestServer::start().await;
    let madrid = location(&s, "MAD-1", "Madrid Centro", 40.4169, -3.7035, "store").await;
    let toledo = location(&s, "TOL-1", "Toledo", 39.8628, -4.0273, "store").await;
    let warehouse = location(&s, "WH-1", "Zaragoza warehouse", 41.6488, -0.8891, "warehouse").await;
    let (status, dup) = s
        .post(
            "/api/v1/locations",
            &s.admin_token,
            json!({"code": "MAD-1", "kind": "store", "name": "again", "timezone": "Europe/Madrid"}),
        )
        .await;
    assert_eq!((status, code(&dup)), (StatusCode::CONFLICT, "location_code_taken"));

    let (status, product) = s
        .post(
            "/api/v1/products",
            &s.admin_token,
            json!({"title": "Trail jacket", "variants": [
                {"sku": "TJ-BLU-M", "title": "Blue M", "price_minor": 8999, "currency": "EUR"},
                {"sku": "TJ-SET", "title": "Jacket + gloves", "price_minor": 10999, "currency": "EUR",
                 "components": [{"sku": "TJ-BLU-M", "quantity": 1}, {"sku": "TG-1", "quantity": 2}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let (status, taken) = s
        .post(
            "/api/v1/products",
            &s.admin_token,
            json!({"title": "Copy", "variants": [{"sku": "TJ-BLU-M", "title": "x", "price_minor": 1, "currency": "EUR"}]}),
        )
        .await;
    assert_eq!((status, code(&taken)), (StatusCode::CONFLICT, "sku_taken"), "{taken}");

    // A delivery, sent twice (a retry): one effect.
    let delivery = json!([
        {"sku": "TJ-BLU-M", "location_id": madrid, "movement": {"kind": "receive", "quantity": 2}},
        {"sku": "TJ-BLU-M", "location_id": toledo, "movement": {"kind": "receive", "quantity": 5}},
        {"sku": "TJ-BLU-M", "location_id": warehouse, "movement": {"kind": "receive", "quantity": 40}},
        {"sku": "TG-1", "location_id": toledo, "movement": {"kind": "receive", "quantity": 5}}
    ]);
    let (status, first) = change(&s, "delivery-1", delivery.clone()).await;
    assert_eq!(
        (status, first["replayed"].as_bool()),
        (StatusCode::CREATED, Some(false)),
        "{first}"
    );
    let (_, again) = change(&s, "delivery-1", delivery).await;
    assert_eq!(
        (again["replayed"].as_bool(), &again["group_id"]),
        (Some(true), &first["group_id"])
    );
    let (status, reused) = change(
        &s,
        "delivery-1",
        json!([{"sku": "TJ-BLU-M", "location_id": madrid, "movement": {"kind": "receive", "quantity": 9}}]),
    )
    .await;
    assert_eq!(
        (status, code(&reused)),
        (StatusCode::CONFLICT, "idempotency_key_reused")
    );

    // Nearest first from central Madrid, with levels for shoppers; the kit counts in sets.
    let jacket = availability(&s, "TJ-BLU-M").await;
    // (The demo's own shops are listed too; ours come in distance order.)
    let order: Vec<&str> = jacket["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .filter_map(|l| l["code"].as_str())
        .filter(|c| c.ends_with("-1"))
        .collect();
    assert_eq!(order, ["MAD-1", "TOL-1", "WH-1"], "{jacket}");
    assert_eq!(
        (
            at(&jacket, "MAD-1")["available"].as_i64(),
            at(&jacket, "MAD-1")["level"].as_str()
        ),
        (Some(2), Some("low"))
    );
    assert_eq!(at(&jacket, "WH-1")["level"], "in_stock");
    let kit = availability(&s, "TJ-SET").await;
    assert_eq!(
        at(&kit, "TOL-1")["available"],
        2,
        "5 jackets and 5 gloves make 2 sets: {kit}"
    );
    assert_eq!(at(&kit, "MAD-1")["level"], "out_of_stock");

    // Staff screens follow availability live: a count at Madrid is pushed at once.
    let mut stream = EventStream::open(&s, None).await;
    let (status, _) = change(
        &s,
        "count-1",
        json!([{"sku": "TJ-BLU-M", "location_id": madrid, "movement": {"kind": "adjust", "delta": 1}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, kind, pushed) = stream.next().await;
    assert_eq!(kind, "inventory.availability_changed");
    let pushed = &pushed["data"];
    assert_eq!(
        (
            pushed["sku"].as_str(),
            pushed["location_id"].as_str(),
            pushed["available"].as_i64()
        ),
        (Some("TJ-BLU-M"), Some(madrid.as_str()), Some(3)),
        "{pushed}"
    );
    let (status, _) = change(
        &s,
        "count-2",
        json!([{"sku": "TJ-BLU-M", "location_id": madrid, "movement": {"kind": "adjust", "delta": -1}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(stream.next().await.2["data"]["available"], 2);

    // A checkout holds the last two in Madrid; a third buyer is told there is not enough.
    let hold = |key: &str, quantity: i64, ttl: i64| {
        json!({"idempotency_key": key, "sku": "TJ-BLU-M", "location_id": madrid, "quantity": quantity,
               "ttl_seconds": ttl, "owner_type": "cart", "owner_id": "cart-1"})
    };
    let (status, held) = s
        .post("/api/v1/inventory/reservations", &s.admin_token, hold("c1", 2, 600))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    let (status, short) = s
        .post("/api/v1/inventory/reservations", &s.admin_token, hold("c2", 1, 600))
        .await;
    assert_eq!(
        (status, code(&short)),
        (StatusCode::CONFLICT, "insufficient_stock"),
        "{short}"
    );
    assert_eq!(short["error"]["details"]["available"], 0);
    assert_eq!(at(&availability(&s, "TJ-BLU-M").await, "MAD-1")["available"], 0);
    let id = held["id"].as_str().expect("id");
    let (status, committed) = s
        .post(
            &format!("/api/v1/inventory/reservations/{id}/commit"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, committed["status"].as_str()),
        (StatusCode::OK, Some("committed"))
    );
    let (status, late) = s
        .post(
            &format!("/api/v1/inventory/reservations/{id}/release"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!((status, code(&late)), (StatusCode::CONFLICT, "reservation_resolved"));

    // A released hold gives its units back at once.
    let (_, toledo_hold) = s
        .post(
            "/api/v1/inventory/reservations",
            &s.admin_token,
            json!({"idempotency_key": "c3", "sku": "TJ-BLU-M", "location_id": toledo, "quantity": 4}),
        )
        .await;
    assert_eq!(at(&availability(&s, "TJ-BLU-M").await, "TOL-1")["available"], 1);
    let id = toledo_hold["id"].as_str().expect("id");
    s.post(
        &format!("/api/v1/inventory/reservations/{id}/release"),
        &s.admin_token,
        json!({}),
    )
    .await;
    assert_eq!(at(&availability(&s, "TJ-BLU-M").await, "TOL-1")["available"], 5);

    // Bad input: an unknown SKU, a hold through the generic endpoint, a count below zero.
    let (status, body) = change(
        &s,
        "x1",
        json!([{"sku": "NOPE", "location_id": madrid, "movement": {"kind": "receive", "quantity": 1}}]),
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = change(
        &s,
        "x2",
        json!([{"sku": "TJ-BLU-M", "location_id": madrid, "movement": {"kind": "reserve", "quantity": 1}}]),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_inventory_change")
    );
    let (status, body) = change(
        &s,
        "x3",
        json!([{"sku": "TJ-BLU-M", "location_id": warehouse, "movement": {"kind": "adjust", "delta": -41}}]),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "insufficient_stock"),
        "{body}"
    );
    assert_eq!(at(&availability(&s, "TJ-BLU-M").await, "WH-1")["available"], 40);

    let (_, checked) = s.get("/api/v1/inventory/check", &s.admin_token).await;
    assert_eq!(checked["problems"], json!([]), "the ledger replays to the balances");
}

/// Scenario 7: added on the phone app, waiting on the laptop. The guest cart becomes the
/// customer's at sign-in, the laptop opens the same cart, what one device adds the other
/// sees, and a second guest cart merges into hers (quantities add up) instead of replacing it.
#[tokio::test]
async fn scenario_07_cart_across_devices() {
    let s = TestServer::start().await;
    let r = crate::harness::Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let hello =
        json!({"type": "message", "id": "m-1", "from": {"id": "u-ana", "email": "ana@example.com"}, "text": "hi"});
    assert_eq!(s.deliver(&shop, &hello).await.0, StatusCode::OK);
    let found = s
        .until("/api/v1/customers?q=ana%40example.com", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let ana = found["items"][0]["id"].as_str().expect("customer").to_owned();

    // On the phone, before signing in: a guest cart.
    let (status, phone) = s
        .post(
            "/api/v1/carts",
            &s.admin_token,
            json!({"anonymous_id": "phone-7f3a", "channel": "app"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{phone}");
    let phone_cart = phone["cart"]["id"].as_str().expect("cart").to_owned();
    let put = |cart: &str, sku: &str, quantity: i64| {
        let path = format!("/api/v1/carts/{cart}/lines/{sku}");
        let s = &s;
        async move {
            let (status, body) = s
                .call(
                    reqwest::Method::PUT,
                    &path,
                    Some(&s.admin_token),
                    Some(json!({"quantity": quantity})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    put(&phone_cart, "JKT-BLU-M", 1).await;
    let after = put(&phone_cart, "GLV-1", 2).await;
    assert_eq!(after["total_minor"], 8999 + 2 * 1999);
    assert_eq!(after["lines"][0]["enough_stock"], true, "{after}");

    // She signs in on the phone: the cart is hers.
    let (status, signed_in) = s
        .post(
            &format!("/api/v1/carts/{phone_cart}/assign"),
            &s.admin_token,
            json!({"customer_id": ana}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{signed_in}");
    assert_eq!(signed_in["cart"]["customer_id"], ana.as_str());

    // On the laptop she finds the same cart, and adds boots; the phone sees them.
    let (_, laptop) = s
        .post(
            "/api/v1/carts",
            &s.admin_token,
            json!({"customer_id": ana, "channel": "web"}),
        )
        .await;
    assert_eq!(laptop["cart"]["id"], phone_cart.as_str(), "one cart for the customer");
    put(&phone_cart, "BOOT-42", 1).await;
    let (_, on_phone) = s.get(&format!("/api/v1/carts/{phone_cart}"), &s.admin_token).await;
    let skus: Vec<&str> = on_phone["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["sku"].as_str())
        .collect();
    assert_eq!(skus, ["JKT-BLU-M", "GLV-1", "BOOT-42"]);
    let (_, hers) = s.get(&format!("/api/v1/customers/{ana}/cart"), &s.admin_token).await;
    assert_eq!(hers["cart"]["id"], phone_cart.as_str());

    // A guest cart from a tablet merges into hers at sign-in; doing it twice changes nothing.
    let (_, tablet) = s
        .post("/api/v1/carts", &s.admin_token, json!({"anonymous_id": "tablet-01"}))
        .await;
    let tablet_cart = tablet["cart"]["id"].as_str().expect("cart").to_owned();
    put(&tablet_cart, "GLV-1", 1).await;
    for _ in 0..2 {
        let (status, merged) = s
            .post(
                &format!("/api/v1/carts/{tablet_cart}/assign"),
                &s.admin_token,
                json!({"customer_id": ana}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{merged}");
        assert_eq!(merged["cart"]["id"], phone_cart.as_str());
        let gloves = merged["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .find(|l| l["sku"] == "GLV-1")
            .expect("gloves")
            .clone();
        assert_eq!(gloves["quantity"], 3, "{merged}");
    }
    let (_, old) = s.get(&format!("/api/v1/carts/{tablet_cart}"), &s.admin_token).await;
    assert_eq!(
        (old["cart"]["status"].as_str(), old["cart"]["merged_into"].as_str()),
        (Some("merged"), Some(phone_cart.as_str()))
    );
    // Every device's cart changes are on her timeline as spec commerce events, the guest ones
    // since she signed in.
    let (_, timeline) = s
        .get(&format!("/api/v1/customers/{ana}/timeline?limit=200"), &s.admin_token)
        .await;
    let mut added: Vec<&str> = timeline["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["name"] == "Product Added" && i["kind"] == "commerce")
        .filter_map(|i| i["detail"]["sku"].as_str())
        .collect();
    added.sort();
    assert_eq!(added, ["BOOT-42", "GLV-1", "GLV-1", "JKT-BLU-M"], "{timeline}");
    let (status, closed) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/carts/{tablet_cart}/lines/GLV-1"),
            Some(&s.admin_token),
            Some(json!({"quantity": 5})),
        )
        .await;
    assert_eq!((status, code(&closed)), (StatusCode::CONFLICT, "cart_conflict"));
    // Someone else's customer cart cannot be taken over.
    let (status, unknown) = s
        .post(
            &format!("/api/v1/carts/{phone_cart}/assign"),
            &s.admin_token,
            json!({"customer_id": "nobody"}),
        )
        .await;
    assert_eq!((status, code(&unknown)), (StatusCode::NOT_FOUND, "customer_not_found"));
}

/// A customer with a conversation on an API channel (its webhook is `r`), and her id.
pub(crate) async fn customer_with_a_channel(s: &TestServer, r: &crate::harness::Receiver) -> String {
    let shop = s.api_account("shop app", &r.url).await;
    let hello =
        json!({"type": "message", "id": "m-1", "from": {"id": "u-ana", "email": "ana@example.com"}, "text": "hi"});
    assert_eq!(s.deliver(&shop, &hello).await.0, StatusCode::OK);
    let found = s
        .until("/api/v1/customers?q=ana%40example.com", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    found["items"][0]["id"].as_str().expect("customer").to_owned()
}

pub(crate) async fn cart_with(s: &TestServer, customer: &str, lines: &[(&str, i64)]) -> String {
    let (_, cart) = s
        .post("/api/v1/carts", &s.admin_token, json!({"customer_id": customer}))
        .await;
    let id = cart["cart"]["id"].as_str().expect("cart").to_owned();
    for (sku, quantity) in lines {
        let (status, body) = s
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/carts/{id}/lines/{sku}"),
                Some(&s.admin_token),
                Some(json!({"quantity": quantity})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    id
}

pub(crate) async fn location_id(s: &TestServer, code: &str) -> String {
    let (_, list) = s.get("/api/v1/locations", &s.admin_token).await;
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["code"] == code)
        .and_then(|l| l["id"].as_str())
        .expect("location")
        .to_owned()
}

async fn order_action(s: &TestServer, order: &str, action: &str, body: Value) -> (StatusCode, Value) {
    s.post(&format!("/api/v1/orders/{order}/{action}"), &s.admin_token, body)
        .await
}

/// Scenario 9: the order reserves stock at the chosen store; staff mark it ready; the
/// customer is told on her channel; pickup consumes the stock, and a missed deadline cancels
/// the order and makes the stock sellable again.
#[tokio::test]
async fn scenario_09_bopis() {
    let clock = sb_engine::ManualClock::new(sb_core::Clock::now_ms(&sb_core::SystemClock));
    let s = TestServer::start_at(sb_engine::Time::Manual(clock.clone()), |_| {}).await;
    let r = crate::harness::Receiver::start().await;
    let ana = customer_with_a_channel(&s, &r).await;
    let madrid = location_id(&s, "MAD-CENTRO").await;
    let available = |sku: &'static str, code: &'static str| {
        let s = &s;
        async move {
            at(&availability(s, sku).await, code)["available"]
                .as_i64()
                .expect("available")
        }
    };
    assert_eq!(available("JKT-BLU-M", "MAD-CENTRO").await, 3);

    let cart = cart_with(&s, &ana, &[("JKT-BLU-M", 1)]).await;
    let place =
        json!({"cart_id": cart, "idempotency_key": "checkout-1", "fulfillment": "pickup", "location_id": madrid});
    let (status, placed) = s.post("/api/v1/orders", &s.admin_token, place.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order = placed["order"]["id"].as_str().expect("order").to_owned();
    assert_eq!(
        (
            placed["order"]["status"].as_str(),
            placed["order"]["total_minor"].as_i64()
        ),
        (Some("placed"), Some(8999))
    );
    // A retried checkout is the same order; the stock is committed once.
    let (_, again) = s.post("/api/v1/orders", &s.admin_token, place).await;
    assert_eq!(again["order"]["id"], order.as_str());
    assert_eq!(available("JKT-BLU-M", "MAD-CENTRO").await, 2);

    // Ready: a code and a deadline, and the customer is told on her channel, once.
    let (status, ready) = order_action(&s, &order, "ready", json!({})).await;
    assert_eq!(
        (status, ready["order"]["status"].as_str()),
        (StatusCode::OK, Some("ready_for_pickup")),
        "{ready}"
    );
    let code = ready["order"]["pickup_code"].as_str().expect("code").to_owned();
    order_action(&s, &order, "ready", json!({})).await;
    let mut told = Vec::new();
    for _ in 0..200 {
        told = r.received();
        if !told.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let told_now = r.received();
    assert_eq!(told_now.len(), 1, "one notice: {told_now:?}");
    let text = told[0].1["text"].as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains("ready for pickup at Madrid Centro") && text.contains(&code),
        "{text}"
    );

    // The wrong code is refused; the right one hands it over and the stock leaves the store.
    let (status, wrong) = order_action(&s, &order, "pickup", json!({"code": "000000x"})).await;
    assert_eq!(
        (status, code_of(&wrong)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_order")
    );
    let (status, done) = order_action(&s, &order, "pickup", json!({"code": code})).await;
    assert_eq!(
        (status, done["order"]["status"].as_str()),
        (StatusCode::OK, Some("picked_up")),
        "{done}"
    );
    assert_eq!(available("JKT-BLU-M", "MAD-CENTRO").await, 2, "sold units stay gone");

    // A second order is never collected: after the deadline the sweeper cancels it and the
    // units are sellable again.
    let barcelona = location_id(&s, "BCN-GRACIA").await;
    let cart = cart_with(&s, &ana, &[("GLV-1", 3)]).await;
    let (_, placed) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": cart, "idempotency_key": "checkout-2", "fulfillment": "pickup", "location_id": barcelona}),
        )
        .await;
    let second = placed["order"]["id"].as_str().expect("order").to_owned();
    assert_eq!(available("GLV-1", "BCN-GRACIA").await, 5);
    order_action(&s, &second, "ready", json!({})).await;
    clock.advance(6 * 86_400_000);
    let mut status = String::new();
    for _ in 0..300 {
        s.server.engine.notify_jobs();
        let (_, body) = s.get(&format!("/api/v1/orders/{second}"), &s.admin_token).await;
        status = body["order"]["status"].as_str().unwrap_or_default().to_owned();
        if status == "canceled" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, "canceled");
    assert_eq!(available("GLV-1", "BCN-GRACIA").await, 8);

    // Every step is on her timeline under the e-commerce spec's names.
    let (_, history) = s.get(&format!("/api/v1/customers/{ana}/orders"), &s.admin_token).await;
    let names: Vec<&str> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Order Completed",
            "Order Ready For Pickup",
            "Order Picked Up",
            "Order Completed",
            "Order Ready For Pickup",
            "Order Cancelled"
        ]
    );
    assert_eq!(history["events"][5]["properties"]["reason"], "not_collected");
    let (_, checked) = s.get("/api/v1/inventory/check", &s.admin_token).await;
    assert_eq!(checked["problems"], json!([]));
}

fn code_of(body: &Value) -> &str {
    code(body)
}

/// Scenario 10: any store can ship. An order for an item only a store has is routed there
/// and shipped from it; one that all the locations together cannot send is refused, changing
/// nothing.
#[tokio::test]
async fn scenario_10_ship_from_store() {
    let s = TestServer::start().await;
    let r = crate::harness::Receiver::start().await;
    let ana = customer_with_a_channel(&s, &r).await;
    let valencia = location_id(&s, "VLC-RUZAFA").await;
    let madrid = location_id(&s, "MAD-CENTRO").await;
    let (status, _) = s
        .post(
            "/api/v1/products",
            &s.admin_token,
            json!({"title": "Lantern", "variants": [{"sku": "LANTERN-1", "title": "Lantern", "price_minor": 2500, "currency": "EUR"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = change(
        &s,
        "lanterns",
        json!([{"sku": "LANTERN-1", "location_id": valencia, "movement": {"kind": "receive", "quantity": 2}},
               {"sku": "LANTERN-1", "location_id": madrid, "movement": {"kind": "receive", "quantity": 1}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // Four lanterns: not even all the locations together have them.
    let cart = cart_with(&s, &ana, &[("LANTERN-1", 4)]).await;
    let (status, refused) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": cart, "idempotency_key": "ship-0", "fulfillment": "ship"}),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "insufficient_stock"),
        "{refused}"
    );
    assert_eq!(at(&availability(&s, "LANTERN-1").await, "VLC-RUZAFA")["available"], 2);

    // Two: Valencia (a store) can send them all, so it ships from there.
    let (status, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/carts/{cart}/lines/LANTERN-1"),
            Some(&s.admin_token),
            Some(json!({"quantity": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, placed) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": cart, "idempotency_key": "ship-1", "fulfillment": "ship"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(
        placed["order"]["location_id"],
        valencia.as_str(),
        "routed to the store that has them all"
    );
    let order = placed["order"]["id"].as_str().expect("order").to_owned();
    let (status, shipped) = order_action(&s, &order, "ship", json!({})).await;
    assert_eq!(
        (status, shipped["order"]["status"].as_str()),
        (StatusCode::OK, Some("shipped"))
    );
    let (status, again) = order_action(&s, &order, "pickup", json!({"code": "1"})).await;
    assert_eq!((status, code(&again)), (StatusCode::CONFLICT, "order_state"));
    let lantern = availability(&s, "LANTERN-1").await;
    assert_eq!(at(&lantern, "VLC-RUZAFA")["available"], 0);
    assert_eq!(at(&lantern, "MAD-CENTRO")["available"], 1);

    // When several locations could send it, the nearest to the destination does.
    let (status, _) = change(
        &s,
        "more lanterns",
        json!([{"sku": "LANTERN-1", "location_id": valencia, "movement": {"kind": "receive", "quantity": 5}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    for (key, lat, lng, expected) in [
        ("near-madrid", 40.45, -3.69, &madrid),
        ("near-valencia", 39.47, -0.38, &valencia),
    ] {
        let cart = cart_with(&s, &ana, &[("LANTERN-1", 1)]).await;
        let (status, placed) = s
            .post(
                "/api/v1/orders",
                &s.admin_token,
                json!({"cart_id": cart, "idempotency_key": key, "fulfillment": "ship", "ship_to": {"lat": lat, "lng": lng}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        assert_eq!(placed["order"]["location_id"], expected.as_str(), "{key}");
    }
    let (_, checked) = s.get("/api/v1/inventory/check", &s.admin_token).await;
    assert_eq!(checked["problems"], json!([]));
}

/// Scenario 11: bought online and shipped from the warehouse, brought back to a store. One
/// unit is restocked there (sellable at that store at once), one is damaged (on hand, not
/// sellable); the refund is recorded from the price paid; nothing can come back twice.
#[tokio::test]
async fn scenario_11_return_anywhere() {
    let s = TestServer::start().await;
    let r = crate::harness::Receiver::start().await;
    let ana = customer_with_a_channel(&s, &r).await;
    let barcelona = location_id(&s, "BCN-GRACIA").await;
    let warehouse = location_id(&s, "ZGZ-WH").await;
    let cart = cart_with(&s, &ana, &[("BOOT-43", 2)]).await;
    let (_, placed) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": cart, "idempotency_key": "o-1", "fulfillment": "ship"}),
        )
        .await;
    assert_eq!(placed["order"]["location_id"], warehouse.as_str(), "{placed}");
    let order = placed["order"]["id"].as_str().expect("order").to_owned();
    // Nothing to return before it left.
    let give_back = json!({"idempotency_key": "ret-1", "location_id": barcelona, "reason": "too small",
        "lines": [{"sku": "BOOT-43", "quantity": 1, "disposition": "restock"},
                  {"sku": "BOOT-43", "quantity": 1, "disposition": "damaged"}]});
    let (status, early) = s
        .post(
            &format!("/api/v1/orders/{order}/returns"),
            &s.admin_token,
            give_back.clone(),
        )
        .await;
    assert_eq!((status, code(&early)), (StatusCode::CONFLICT, "order_state"));
    order_action(&s, &order, "ship", json!({})).await;
    assert_eq!(at(&availability(&s, "BOOT-43").await, "BCN-GRACIA")["available"], 1);

    let (status, received) = s
        .post(
            &format!("/api/v1/orders/{order}/returns"),
            &s.admin_token,
            give_back.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{received}");
    assert_eq!(received["return"]["refund_minor"], 2 * 12999);
    assert_eq!(received["return"]["location_id"], barcelona.as_str());
    assert_eq!(
        at(&availability(&s, "BOOT-43").await, "BCN-GRACIA")["available"],
        2,
        "the restocked pair is sellable in Barcelona; the damaged one is not"
    );
    // The same hand-in again is the same return.
    let (_, again) = s
        .post(&format!("/api/v1/orders/{order}/returns"), &s.admin_token, give_back)
        .await;
    assert_eq!(again["return"]["id"], received["return"]["id"]);
    // More than was bought cannot come back.
    let (status, too_many) = s
        .post(
            &format!("/api/v1/orders/{order}/returns"),
            &s.admin_token,
            json!({"idempotency_key": "ret-2", "location_id": barcelona,
                   "lines": [{"sku": "BOOT-43", "quantity": 1, "disposition": "restock"}]}),
        )
        .await;
    assert_eq!(
        (status, code(&too_many)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_order"),
        "{too_many}"
    );

    let (_, history) = s.get(&format!("/api/v1/customers/{ana}/orders"), &s.admin_token).await;
    let refunded = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["name"] == "Order Refunded")
        .expect("Order Refunded on the timeline")
        .clone();
    assert_eq!(refunded["properties"]["total"], 2 * 12999);
    assert_eq!(refunded["properties"]["location"], "Barcelona Gràcia");
    let (_, checked) = s.get("/api/v1/inventory/check", &s.admin_token).await;
    assert_eq!(checked["problems"], json!([]));
}

/// Checkout holds: starting the checkout holds the cart's stock at the store (again: the
/// same holds), the order commits them, and a checkout abandoned past its time gives the
/// stock back through the sweeper.
#[tokio::test]
async fn checkout_holds_stock_until_the_order_or_until_they_expire() {
    let clock = sb_engine::ManualClock::new(sb_core::Clock::now_ms(&sb_core::SystemClock));
    let s = TestServer::start_at(sb_engine::Time::Manual(clock.clone()), |_| {}).await;
    let r = crate::harness::Receiver::start().await;
    let ana = customer_with_a_channel(&s, &r).await;
    let madrid = location_id(&s, "MAD-CENTRO").await;
    let left = || {
        let s = &s;
        async move {
            at(&availability(s, "JKT-BLU-L").await, "MAD-CENTRO")["available"]
                .as_i64()
                .expect("available")
        }
    };
    assert_eq!(left().await, 3);

    let cart = cart_with(&s, &ana, &[("JKT-BLU-L", 2)]).await;
    let start = json!({"fulfillment": "pickup", "location_id": madrid, "hold_seconds": 600});
    let (status, first) = s
        .post(&format!("/api/v1/carts/{cart}/checkout"), &s.admin_token, start.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(left().await, 1, "held for this checkout");
    let (_, again) = s
        .post(&format!("/api/v1/carts/{cart}/checkout"), &s.admin_token, start)
        .await;
    assert_eq!(again["holds"][0]["id"], first["holds"][0]["id"], "the same holds");
    let (_, timeline) = s
        .get(&format!("/api/v1/customers/{ana}/timeline"), &s.admin_token)
        .await;
    let started: Vec<&serde_json::Value> = timeline["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["name"] == "Checkout Started")
        .collect();
    assert_eq!(started.len(), 1, "asking again is the same checkout: {timeline}");
    assert_eq!(started[0]["detail"]["value"], 2.0 * 89.99);
    let (status, placed) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": cart, "idempotency_key": "hold-1", "fulfillment": "pickup", "location_id": madrid}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(
        left().await,
        1,
        "the holds became the order's commitment, not a second take"
    );

    // An abandoned checkout: after its time the sweeper gives the unit back.
    let cart = cart_with(&s, &ana, &[("JKT-BLU-L", 1)]).await;
    let (status, _) = s
        .post(
            &format!("/api/v1/carts/{cart}/checkout"),
            &s.admin_token,
            json!({"fulfillment": "pickup", "location_id": madrid, "hold_seconds": 60}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(left().await, 0);
    let mut stream = EventStream::open(&s, None).await;
    clock.advance(61_000);
    let mut now_left = 0;
    for _ in 0..300 {
        s.server.engine.notify_jobs();
        now_left = left().await;
        if now_left == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(now_left, 1, "the expired hold was swept");
    // Staff screens following availability see the unit come back.
    let pushed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let (_, kind, event) = stream.next().await;
            if kind == "inventory.availability_changed" && event["data"]["sku"] == "JKT-BLU-L" {
                return event;
            }
        }
    })
    .await
    .expect("the sweep's availability change is pushed");
    assert_eq!(
        (
            pushed["data"]["location_id"].as_str(),
            pushed["data"]["available"].as_i64()
        ),
        (Some(madrid.as_str()), Some(1)),
        "{pushed}"
    );
    let (_, checked) = s.get("/api/v1/inventory/check", &s.admin_token).await;
    assert_eq!(checked["problems"], json!([]));
}

/// A location's daily capacity: once it has taken that many orders today (its own calendar
/// day), a shopper choosing it is told so and routing sends shipments elsewhere.
#[tokio::test]
async fn a_location_at_its_daily_capacity_takes_no_more_orders_today() {
    let s = TestServer::start().await;
    let r = crate::harness::Receiver::start().await;
    let ana = customer_with_a_channel(&s, &r).await;
    let (status, body) = s
        .post(
            "/api/v1/locations",
            &s.admin_token,
            json!({"code": "CAP-1", "kind": "store", "name": "Small shop", "address": "Gran Vía 1",
                   "lat": 40.4168, "lng": -3.7038, "timezone": "Europe/Madrid",
                   "can_pickup": true, "daily_capacity": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let small = body["id"].as_str().expect("id").to_owned();
    let (status, body) = change(
        &s,
        "cap-stock",
        json!([{"sku": "GLV-1", "location_id": small, "movement": {"kind": "receive", "quantity": 50}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let order = |cart: String, key: &'static str, body: Value| {
        let s = &s;
        async move {
            let mut request = body;
            request["cart_id"] = json!(cart);
            request["idempotency_key"] = json!(key);
            s.post("/api/v1/orders", &s.admin_token, request).await
        }
    };
    let pickup = json!({"fulfillment": "pickup", "location_id": small});
    let cart = cart_with(&s, &ana, &[("GLV-1", 1)]).await;
    let (status, first) = order(cart, "cap-1", pickup.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let cart = cart_with(&s, &ana, &[("GLV-1", 1)]).await;
    let (status, refused) = order(cart.clone(), "cap-2", pickup).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "location_at_capacity"),
        "{refused}"
    );
    // The nearest location to this address is the full one: routing ships from another.
    let (status, shipped) = order(
        cart,
        "cap-3",
        json!({"fulfillment": "ship", "ship_to": {"lat": 40.4168, "lng": -3.7038}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{shipped}");
    assert_ne!(shipped["order"]["location_id"], small.as_str());
    // A cancelled order gives its slot back.
    let first_id = first["order"]["id"].as_str().expect("id");
    let (status, body) = s
        .post(
            &format!("/api/v1/orders/{first_id}/cancel"),
            &s.admin_token,
            json!({"reason": "changed her mind"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cart = cart_with(&s, &ana, &[("GLV-1", 1)]).await;
    let (status, again) = order(cart, "cap-4", json!({"fulfillment": "pickup", "location_id": small})).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
}

pub(crate) async fn product(s: &TestServer, sku: &str, price: i64) {
    let (status, body) = s
        .post(
            "/api/v1/products",
            &s.admin_token,
            json!({"title": sku, "variants": [{"sku": sku, "title": sku, "price_minor": price, "currency": "EUR"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn available_at(s: &TestServer, sku: &str, code: &str) -> i64 {
    at(&availability(s, sku).await, code)["available"]
        .as_i64()
        .expect("available")
}

async fn check_clean(s: &TestServer) {
    let (status, checked) = s.get("/api/v1/inventory/check", &s.admin_token).await;
    assert_eq!(status, StatusCode::OK, "{checked}");
    assert_eq!(checked["problems"], json!([]), "ledger and balances agree");
}

/// Split shipments ("fewest shipments", commerce.md §8.5): no single location has both SKUs,
/// so one order gets two fulfilments, each shipping on its own from its location; the order
/// is shipped after both. A cancelled split order gives every location its stock back, and
/// once one location has everything the order is a single fulfilment there.
pub async fn split_shipment_flow(s: &TestServer, customer: &str) {
    let valencia = location_id(s, "VLC-RUZAFA").await;
    let madrid = location_id(s, "MAD-CENTRO").await;
    product(s, "SPLIT-TENT", 15000).await;
    product(s, "SPLIT-STOVE", 4500).await;
    let (status, body) = change(
        s,
        "split-stock",
        json!([{"sku": "SPLIT-TENT", "location_id": valencia, "movement": {"kind": "receive", "quantity": 3}},
               {"sku": "SPLIT-STOVE", "location_id": madrid, "movement": {"kind": "receive", "quantity": 3}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let cart = cart_with(s, customer, &[("SPLIT-TENT", 1), ("SPLIT-STOVE", 1)]).await;
    let place = json!({"cart_id": cart, "idempotency_key": "split-1", "fulfillment": "ship",
                       "ship_to": {"lat": 40.4168, "lng": -3.7038}});
    let (status, placed) = s.post("/api/v1/orders", &s.admin_token, place.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order = placed["order"]["id"].as_str().expect("order").to_owned();
    let parts = placed["order"]["fulfillments"]
        .as_array()
        .expect("fulfillments")
        .clone();
    assert_eq!(parts.len(), 2, "one fulfilment per location: {placed}");
    let sent_from = |sku: &str| {
        parts
            .iter()
            .find(|f| f["lines"].as_array().is_some_and(|l| l.iter().any(|l| l["sku"] == sku)))
            .expect("a fulfilment sends it")
            .clone()
    };
    let (tent, stove) = (sent_from("SPLIT-TENT"), sent_from("SPLIT-STOVE"));
    assert_eq!(tent["location_id"], valencia.as_str());
    assert_eq!(stove["location_id"], madrid.as_str());
    assert_eq!(
        (tent["lines"][0]["quantity"].as_i64(), tent["status"].as_str()),
        (Some(1), Some("placed"))
    );
    assert_eq!(
        placed["order"]["location_id"], parts[0]["location_id"],
        "the primary location"
    );
    // A retried checkout is the same order, stock taken once.
    let (_, again) = s.post("/api/v1/orders", &s.admin_token, place).await;
    assert_eq!(again["order"]["id"], order.as_str());
    assert_eq!(available_at(s, "SPLIT-TENT", "VLC-RUZAFA").await, 2);
    assert_eq!(available_at(s, "SPLIT-STOVE", "MAD-CENTRO").await, 2);

    // Valencia ships its part: the order waits for Madrid's.
    let ship = |fid: String| {
        let (s, order) = (s, order.clone());
        async move {
            s.post(
                &format!("/api/v1/orders/{order}/fulfillments/{fid}/ship"),
                &s.admin_token,
                json!({}),
            )
            .await
        }
    };
    let tent_id = tent["id"].as_str().expect("id").to_owned();
    let (status, first) = ship(tent_id.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["order"]["status"], "placed", "one of two shipped: {first}");
    let (status, again) = ship(tent_id).await;
    assert_eq!(
        (status, again["order"]["status"].as_str()),
        (StatusCode::OK, Some("placed"))
    );
    // Part of it has left: it can no longer be cancelled.
    let (status, refused) = order_action(s, &order, "cancel", json!({})).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "order_state"),
        "{refused}"
    );
    let (status, unknown) = ship("no-such-fulfilment".into()).await;
    assert_eq!((status, code(&unknown)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, done) = ship(stove["id"].as_str().expect("id").to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["order"]["status"], "shipped", "shipped after both: {done}");
    assert!(
        done["order"]["fulfillments"]
            .as_array()
            .expect("fulfillments")
            .iter()
            .all(|f| f["status"] == "shipped")
    );
    // Shipped units are gone from the shelves; what is left is still sellable.
    assert_eq!(available_at(s, "SPLIT-TENT", "VLC-RUZAFA").await, 2);
    assert_eq!(available_at(s, "SPLIT-STOVE", "MAD-CENTRO").await, 2);
    let (_, history) = s
        .get(&format!("/api/v1/customers/{customer}/orders"), &s.admin_token)
        .await;
    let shipped_from: Vec<&str> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["name"] == "Order Shipped" && e["order_id"] == order.as_str())
        .filter_map(|e| e["properties"]["location_id"].as_str())
        .collect();
    assert_eq!(
        shipped_from,
        [valencia.as_str(), madrid.as_str()],
        "one event per fulfilment"
    );

    // A split order cancelled before anything left: both locations get their units back.
    // Its checkout first holds the units at both locations; the order commits those holds.
    let cart = cart_with(s, customer, &[("SPLIT-TENT", 1), ("SPLIT-STOVE", 1)]).await;
    let (status, started) = s
        .post(
            &format!("/api/v1/carts/{cart}/checkout"),
            &s.admin_token,
            json!({"fulfillment": "ship", "hold_seconds": 600}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let mut held_at: Vec<&str> = started["holds"]
        .as_array()
        .expect("holds")
        .iter()
        .filter_map(|h| h["location_id"].as_str())
        .collect();
    held_at.sort();
    let mut both = [valencia.as_str(), madrid.as_str()];
    both.sort();
    assert_eq!(held_at, both, "held where each part ships from: {started}");
    assert_eq!(available_at(s, "SPLIT-TENT", "VLC-RUZAFA").await, 1);
    let (_, again) = s
        .post(
            &format!("/api/v1/carts/{cart}/checkout"),
            &s.admin_token,
            json!({"fulfillment": "ship", "hold_seconds": 600}),
        )
        .await;
    assert_eq!(again["holds"], started["holds"], "asking again keeps the same holds");
    let (status, placed) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": cart, "idempotency_key": "split-2", "fulfillment": "ship"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["order"]["fulfillments"].as_array().map(Vec::len), Some(2));
    assert_eq!(available_at(s, "SPLIT-TENT", "VLC-RUZAFA").await, 1);
    assert_eq!(available_at(s, "SPLIT-STOVE", "MAD-CENTRO").await, 1);
    let second = placed["order"]["id"].as_str().expect("order");
    let (status, canceled) = order_action(s, second, "cancel", json!({"reason": "changed her mind"})).await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert!(
        canceled["order"]["fulfillments"]
            .as_array()
            .expect("fulfillments")
            .iter()
            .all(|f| f["status"] == "canceled")
    );
    assert_eq!(available_at(s, "SPLIT-TENT", "VLC-RUZAFA").await, 2);
    assert_eq!(available_at(s, "SPLIT-STOVE", "MAD-CENTRO").await, 2);

    // Valencia gets stoves too: the next order is one fulfilment there, not a split.
    let (status, _) = change(
        s,
        "split-stoves-vlc",
        json!([{"sku": "SPLIT-STOVE", "location_id": valencia, "movement": {"kind": "receive", "quantity": 2}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let cart = cart_with(s, customer, &[("SPLIT-TENT", 1), ("SPLIT-STOVE", 1)]).await;
    let (status, placed) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": cart, "idempotency_key": "split-3", "fulfillment": "ship",
                   "ship_to": {"lat": 40.4168, "lng": -3.7038}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let parts = placed["order"]["fulfillments"].as_array().expect("fulfillments");
    assert_eq!(
        parts.len(),
        1,
        "a single location first, even though Madrid is nearer: {placed}"
    );
    assert_eq!(parts[0]["location_id"], valencia.as_str());
    assert_eq!(parts[0]["lines"].as_array().map(Vec::len), Some(2));
    let third = placed["order"]["id"].as_str().expect("order");
    let (status, shipped) = order_action(s, third, "ship", json!({})).await;
    assert_eq!(
        (status, shipped["order"]["status"].as_str()),
        (StatusCode::OK, Some("shipped"))
    );
    assert_eq!(available_at(s, "SPLIT-STOVE", "VLC-RUZAFA").await, 1);
    check_clean(s).await;
}

/// Routing order (commerce.md §8.5, issue 8 item 6): one location for everything, then the
/// merchant's rank, then distance. A far location ranked first sends the order rather than a
/// near one; but a location that has everything beats a better-ranked one that would split it.
#[tokio::test]
async fn routing_prefers_one_location_then_the_merchants_rank_then_distance() {
    let s = TestServer::start().await;
    let r = crate::harness::Receiver::start().await;
    let ana = customer_with_a_channel(&s, &r).await;
    let ranked = |code: &str, lat: f64, lng: f64, rank: i64| {
        json!({"code": code, "kind": "warehouse", "name": code, "lat": lat, "lng": lng,
               "timezone": "Europe/Madrid", "routing_rank": rank})
    };
    let (status, near) = s
        .post(
            "/api/v1/locations",
            &s.admin_token,
            ranked("RANK-NEAR", 40.42, -3.70, 5),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{near}");
    assert_eq!(near["routing_rank"], 5);
    let (_, far) = s
        .post("/api/v1/locations", &s.admin_token, ranked("RANK-FAR", 41.38, 2.17, 1))
        .await;
    let (near, far) = (near["id"].as_str().expect("id"), far["id"].as_str().expect("id"));
    product(&s, "RANK-ROPE", 1200).await;
    product(&s, "RANK-PEGS", 800).await;
    let (status, body) = change(
        &s,
        "rank-stock",
        json!([{"sku": "RANK-ROPE", "location_id": near, "movement": {"kind": "receive", "quantity": 3}},
               {"sku": "RANK-ROPE", "location_id": far, "movement": {"kind": "receive", "quantity": 3}},
               {"sku": "RANK-PEGS", "location_id": near, "movement": {"kind": "receive", "quantity": 3}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let madrid = json!({"lat": 40.4168, "lng": -3.7038});
    let ship = |cart: String, key: &str| json!({"cart_id": cart, "idempotency_key": key, "fulfillment": "ship", "ship_to": madrid});

    let cart = cart_with(&s, &ana, &[("RANK-ROPE", 1)]).await;
    let (status, placed) = s.post("/api/v1/orders", &s.admin_token, ship(cart, "rank-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["order"]["location_id"], far, "rank before distance: {placed}");

    let cart = cart_with(&s, &ana, &[("RANK-ROPE", 1), ("RANK-PEGS", 1)]).await;
    let (status, placed) = s.post("/api/v1/orders", &s.admin_token, ship(cart, "rank-2")).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let parts = placed["order"]["fulfillments"].as_array().expect("fulfillments");
    assert_eq!(
        (parts.len(), placed["order"]["location_id"].as_str()),
        (1, Some(near)),
        "one location for everything before rank: {placed}"
    );
}

#[tokio::test]
async fn split_shipment_when_no_single_location_has_everything() {
    let s = TestServer::start().await;
    let r = crate::harness::Receiver::start().await;
    let ana = customer_with_a_channel(&s, &r).await;
    split_shipment_flow(&s, &ana).await;
}

async fn transfer_of(s: &TestServer, id: &str) -> Value {
    let (status, body) = s.get(&format!("/api/v1/transfers/{id}"), &s.admin_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Pickup sourced by transfer (commerce.md §5 "Pickup sourcing", §8.5.6): Madrid lacks the
/// lamps; without `allow_transfer` the order is refused, with it the warehouse sends them
/// (off its shelf, in transit), the order cannot be ready before they are received, and
/// once received they are committed to it at the store and handed over with the code.
/// Cancelling returns the units wherever they are; plain transfers replay by key.
pub async fn pickup_transfer_flow(s: &TestServer, customer: &str) {
    let madrid = location_id(s, "MAD-CENTRO").await;
    let warehouse = location_id(s, "ZGZ-WH").await;
    product(s, "XFER-LAMP", 3900).await;
    let (status, body) = change(
        s,
        "xfer-stock",
        json!([{"sku": "XFER-LAMP", "location_id": warehouse, "movement": {"kind": "receive", "quantity": 6}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let pickup = |cart: &str, key: &str, allow: bool| {
        json!({"cart_id": cart, "idempotency_key": key, "fulfillment": "pickup", "location_id": madrid,
               "allow_transfer": allow})
    };
    // The pickup option says how long it takes: longer when the store has to get it first.
    let lamp = availability(s, "XFER-LAMP").await;
    let at_madrid = at(&lamp, "MAD-CENTRO");
    assert_eq!(at_madrid["pickup_by_transfer"], true, "{lamp}");
    let jacket = availability(s, "JKT-BLU-M").await;
    assert_eq!(at(&jacket, "MAD-CENTRO")["pickup_by_transfer"], false, "{jacket}");
    assert!(
        at_madrid["pickup_ready_minutes"].as_i64() > at(&jacket, "MAD-CENTRO")["pickup_ready_minutes"].as_i64(),
        "{lamp} {jacket}"
    );

    let cart = cart_with(s, customer, &[("XFER-LAMP", 2)]).await;
    let (status, refused) = s
        .post("/api/v1/orders", &s.admin_token, pickup(&cart, "xfer-0", false))
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "insufficient_stock"),
        "{refused}"
    );
    assert_eq!(available_at(s, "XFER-LAMP", "ZGZ-WH").await, 6, "nothing taken");

    let (status, placed) = s
        .post("/api/v1/orders", &s.admin_token, pickup(&cart, "xfer-1", true))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order = placed["order"]["id"].as_str().expect("order").to_owned();
    let transfers = placed["order"]["transfers"].as_array().expect("transfers").clone();
    assert_eq!(transfers.len(), 1, "{placed}");
    let transfer = transfers[0]["id"].as_str().expect("transfer").to_owned();
    assert_eq!(
        (
            transfers[0]["status"].as_str(),
            transfers[0]["from_location_id"].as_str(),
            transfers[0]["to_location_id"].as_str(),
            transfers[0]["lines"][0]["qty_sent"].as_i64()
        ),
        (
            Some("in_transit"),
            Some(warehouse.as_str()),
            Some(madrid.as_str()),
            Some(2)
        )
    );
    assert_eq!(placed["order"]["fulfillments"][0]["location_id"], madrid.as_str());
    assert_eq!(
        available_at(s, "XFER-LAMP", "ZGZ-WH").await,
        4,
        "off the warehouse shelf"
    );
    assert_eq!(
        available_at(s, "XFER-LAMP", "MAD-CENTRO").await,
        0,
        "on its way, not on hand"
    );
    let (_, incoming) = s
        .get(
            &format!("/api/v1/transfers?location_id={madrid}&status=in_transit"),
            &s.admin_token,
        )
        .await;
    assert!(
        incoming["items"]
            .as_array()
            .is_some_and(|l| l.iter().any(|t| t["id"] == transfer.as_str())),
        "{incoming}"
    );

    // Not ready before the lamps arrive.
    let (status, early) = order_action(s, &order, "ready", json!({})).await;
    assert_eq!(
        (status, code(&early)),
        (StatusCode::CONFLICT, "transfer_not_received"),
        "{early}"
    );
    let (status, received) = s
        .post(
            &format!("/api/v1/transfers/{transfer}/receive"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, received["status"].as_str()),
        (StatusCode::OK, Some("received")),
        "{received}"
    );
    assert_eq!(received["lines"][0]["qty_received"], 2);
    let (status, again) = s
        .post(
            &format!("/api/v1/transfers/{transfer}/receive"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!((status, again["status"].as_str()), (StatusCode::OK, Some("received")));
    assert_eq!(
        available_at(s, "XFER-LAMP", "MAD-CENTRO").await,
        0,
        "committed to the order"
    );
    let (_, audit) = s.get("/api/v1/audit?action=transfer.received", &s.admin_token).await;
    assert_eq!(
        audit["items"].as_array().map(Vec::len),
        Some(1),
        "audited once: {audit}"
    );
    let (status, ready) = order_action(s, &order, "ready", json!({})).await;
    assert_eq!(
        (status, ready["order"]["status"].as_str()),
        (StatusCode::OK, Some("ready_for_pickup")),
        "{ready}"
    );
    let pickup_code = ready["order"]["pickup_code"].as_str().expect("code").to_owned();
    let (status, done) = order_action(s, &order, "pickup", json!({"code": pickup_code})).await;
    assert_eq!(
        (status, done["order"]["status"].as_str()),
        (StatusCode::OK, Some("picked_up")),
        "{done}"
    );
    assert_eq!(available_at(s, "XFER-LAMP", "MAD-CENTRO").await, 0);
    assert_eq!(available_at(s, "XFER-LAMP", "ZGZ-WH").await, 4);
    check_clean(s).await;

    // Madrid has one lamp: a pickup of three takes it and brings two. Cancelled while they
    // are on the way, they go back to the warehouse and Madrid's lamp is sellable again.
    let (status, _) = change(
        s,
        "xfer-madrid-one",
        json!([{"sku": "XFER-LAMP", "location_id": madrid, "movement": {"kind": "receive", "quantity": 1}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let cart = cart_with(s, customer, &[("XFER-LAMP", 3)]).await;
    // Its checkout holds Madrid's lamp and the two the warehouse will send; asking again
    // keeps the same holds, and the order turns them into the commitment and the transfer.
    let start = json!({"fulfillment": "pickup", "location_id": madrid, "allow_transfer": true, "hold_seconds": 600});
    let (status, started) = s
        .post(&format!("/api/v1/carts/{cart}/checkout"), &s.admin_token, start.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["holds"].as_array().map(Vec::len), Some(2), "{started}");
    assert_eq!(available_at(s, "XFER-LAMP", "MAD-CENTRO").await, 0);
    assert_eq!(available_at(s, "XFER-LAMP", "ZGZ-WH").await, 2);
    let (_, again) = s
        .post(&format!("/api/v1/carts/{cart}/checkout"), &s.admin_token, start)
        .await;
    assert_eq!(again["holds"], started["holds"], "the same holds");
    let (status, placed) = s
        .post("/api/v1/orders", &s.admin_token, pickup(&cart, "xfer-2", true))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(
        placed["order"]["transfers"][0]["lines"][0]["qty_sent"], 2,
        "only what Madrid lacks"
    );
    assert_eq!(available_at(s, "XFER-LAMP", "MAD-CENTRO").await, 0);
    assert_eq!(available_at(s, "XFER-LAMP", "ZGZ-WH").await, 2);
    let second = placed["order"]["id"].as_str().expect("order").to_owned();
    let second_transfer = placed["order"]["transfers"][0]["id"].as_str().expect("id").to_owned();
    let (status, refused) = s
        .post(
            &format!("/api/v1/transfers/{second_transfer}/cancel"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "transfer_state"),
        "cancel the order instead"
    );
    let (status, canceled) = order_action(s, &second, "cancel", json!({"reason": "changed her mind"})).await;
    assert_eq!(
        (status, canceled["order"]["status"].as_str()),
        (StatusCode::OK, Some("canceled")),
        "{canceled}"
    );
    assert_eq!(transfer_of(s, &second_transfer).await["status"], "canceled");
    assert_eq!(available_at(s, "XFER-LAMP", "MAD-CENTRO").await, 1);
    assert_eq!(
        available_at(s, "XFER-LAMP", "ZGZ-WH").await,
        4,
        "back on the warehouse shelf"
    );
    check_clean(s).await;

    // Cancelled after the lamps arrived: they stay at the store, sellable there.
    let cart = cart_with(s, customer, &[("XFER-LAMP", 2)]).await;
    let (status, placed) = s
        .post("/api/v1/orders", &s.admin_token, pickup(&cart, "xfer-3", true))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let third = placed["order"]["id"].as_str().expect("order").to_owned();
    let third_transfer = placed["order"]["transfers"][0]["id"].as_str().expect("id").to_owned();
    let (status, _) = s
        .post(
            &format!("/api/v1/transfers/{third_transfer}/receive"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = order_action(s, &third, "cancel", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        available_at(s, "XFER-LAMP", "MAD-CENTRO").await,
        2,
        "Madrid's own lamp and the one that came"
    );
    assert_eq!(available_at(s, "XFER-LAMP", "ZGZ-WH").await, 3);
    check_clean(s).await;

    // A plain transfer: the same key again is the same transfer; with another request, 409.
    let send = |quantity: i64| {
        json!({"idempotency_key": "restock-bcn", "from_location_id": warehouse, "to_location_id": madrid,
               "lines": [{"sku": "XFER-LAMP", "quantity": quantity}]})
    };
    let (status, sent) = s.post("/api/v1/transfers", &s.admin_token, send(1)).await;
    assert_eq!(
        (status, sent["status"].as_str()),
        (StatusCode::CREATED, Some("in_transit")),
        "{sent}"
    );
    let (_, again) = s.post("/api/v1/transfers", &s.admin_token, send(1)).await;
    assert_eq!(again["id"], sent["id"]);
    let (status, reused) = s.post("/api/v1/transfers", &s.admin_token, send(2)).await;
    assert_eq!(
        (status, code(&reused)),
        (StatusCode::CONFLICT, "idempotency_key_reused")
    );
    let (status, too_many) = s
        .post(
            "/api/v1/transfers",
            &s.admin_token,
            json!({"idempotency_key": "too-many", "from_location_id": warehouse, "to_location_id": madrid,
                   "lines": [{"sku": "XFER-LAMP", "quantity": 50}]}),
        )
        .await;
    assert_eq!((status, code(&too_many)), (StatusCode::CONFLICT, "insufficient_stock"));
    assert_eq!(available_at(s, "XFER-LAMP", "ZGZ-WH").await, 2);
    let id = sent["id"].as_str().expect("id");
    let (status, _) = s
        .post(&format!("/api/v1/transfers/{id}/receive"), &s.admin_token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(available_at(s, "XFER-LAMP", "MAD-CENTRO").await, 3);
    check_clean(s).await;

    // Two sent, one lost on the way: one arrives, one is written off (sent = received + lost).
    let (status, sent) = s
        .post(
            "/api/v1/transfers",
            &s.admin_token,
            json!({"idempotency_key": "restock-2", "from_location_id": warehouse, "to_location_id": madrid,
                   "lines": [{"sku": "XFER-LAMP", "quantity": 2}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let id = sent["id"].as_str().expect("id");
    let (status, wrong) = s
        .post(
            &format!("/api/v1/transfers/{id}/receive"),
            &s.admin_token,
            json!({"lost": [{"sku": "XFER-LAMP", "quantity": 3}]}),
        )
        .await;
    assert_eq!(
        (status, code(&wrong)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_order")
    );
    let (status, received) = s
        .post(
            &format!("/api/v1/transfers/{id}/receive"),
            &s.admin_token,
            json!({"lost": [{"sku": "XFER-LAMP", "quantity": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{received}");
    assert_eq!(
        (
            received["lines"][0]["qty_sent"].as_i64(),
            received["lines"][0]["qty_received"].as_i64(),
            received["lines"][0]["qty_lost"].as_i64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(available_at(s, "XFER-LAMP", "MAD-CENTRO").await, 4);
    assert_eq!(available_at(s, "XFER-LAMP", "ZGZ-WH").await, 0);
    check_clean(s).await;
}

#[tokio::test]
async fn pickup_with_transfer_from_another_location() {
    let s = TestServer::start().await;
    let r = crate::harness::Receiver::start().await;
    let ana = customer_with_a_channel(&s, &r).await;
    pickup_transfer_flow(&s, &ana).await;
}

/// A stock count (commerce.md §3.2, Shopify's `compareQuantity`): the counted quantity
/// replaces on hand only while on hand is still what the counter was shown; a count
/// overtaken by a movement is refused with the quantity now on hand and changes nothing, a
/// count below what is promised is refused, and a replay has one effect.
#[tokio::test]
async fn a_stock_count_applies_only_to_what_the_counter_saw() {
    let s = TestServer::start().await;
    let shop = location(&s, "CNT-1", "Count shop", 40.4, -3.7, "store").await;
    product(&s, "CNT-SKU", 1500).await;
    let line = |movement: Value| json!([{"sku": "CNT-SKU", "location_id": shop, "movement": movement}]);
    let (status, body) = change(&s, "cnt-delivery", line(json!({"kind": "receive", "quantity": 10}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Two units missing on the shelf.
    let count = line(json!({"kind": "count", "counted": 8, "expected": 10}));
    let (status, first) = change(&s, "cnt-1", count.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(available_at(&s, "CNT-SKU", "CNT-1").await, 8);
    let (status, again) = change(&s, "cnt-1", count).await;
    assert_eq!((status, again["replayed"].as_bool()), (StatusCode::CREATED, Some(true)));
    assert_eq!(available_at(&s, "CNT-SKU", "CNT-1").await, 8, "a replay has no effect");

    // A second counter still looking at the old figure: refused, told what is on hand now.
    let (status, stale) = change(
        &s,
        "cnt-2",
        line(json!({"kind": "count", "counted": 12, "expected": 10})),
    )
    .await;
    assert_eq!(
        (status, code(&stale)),
        (StatusCode::CONFLICT, "count_outdated"),
        "{stale}"
    );
    assert_eq!(stale["error"]["details"]["on_hand"], 8, "{stale}");
    assert_eq!(
        available_at(&s, "CNT-SKU", "CNT-1").await,
        8,
        "a refused count changes nothing"
    );

    // Five units held for a checkout: a count of 3 cannot be true of a shelf that holds them.
    let (status, hold) = s
        .post(
            "/api/v1/inventory/reservations",
            &s.admin_token,
            json!({"idempotency_key": "cnt-hold", "sku": "CNT-SKU", "location_id": shop, "quantity": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (status, short) = change(&s, "cnt-3", line(json!({"kind": "count", "counted": 3, "expected": 8}))).await;
    assert_eq!(
        (status, code(&short)),
        (StatusCode::CONFLICT, "insufficient_stock"),
        "{short}"
    );
    // A count that confirms the figure changes nothing and is accepted.
    let (status, body) = change(&s, "cnt-4", line(json!({"kind": "count", "counted": 8, "expected": 8}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(available_at(&s, "CNT-SKU", "CNT-1").await, 3);

    // Bad counts: negative, or mixed with another movement of the same shelf.
    let (status, bad) = change(
        &s,
        "cnt-5",
        line(json!({"kind": "count", "counted": -1, "expected": 8})),
    )
    .await;
    assert_eq!(
        (status, code(&bad)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_inventory_change")
    );
    let mixed = json!([
        {"sku": "CNT-SKU", "location_id": shop, "movement": {"kind": "count", "counted": 9, "expected": 8}},
        {"sku": "CNT-SKU", "location_id": shop, "movement": {"kind": "receive", "quantity": 1}}
    ]);
    let (status, bad) = change(&s, "cnt-6", mixed).await;
    assert_eq!(
        (status, code(&bad)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_inventory_change")
    );
    assert_eq!(available_at(&s, "CNT-SKU", "CNT-1").await, 3);
    check_clean(&s).await;
}

/// Scenario 8 for shoppers: "is it in stock at my branch" without signing in, by the
/// website's public token — levels nearest first, never unit counts — and a live stream of
/// level changes for the SKUs a page shows, resumable by `Last-Event-ID`.
#[tokio::test]
async fn storefront_availability_shows_levels_and_streams_changes() {
    let s = TestServer::start().await;
    let website = crate::widget_client::demo_website_token(&s);
    let shop = location(&s, "PUB-1", "Public test shop", 40.0, -3.0, "store").await;
    product(&s, "PUB-SKU", 2500).await;
    product(&s, "PUB-OTHER", 2500).await;
    let line = |sku: &str, movement: Value| json!([{"sku": sku, "location_id": shop, "movement": movement}]);
    let (status, body) = change(
        &s,
        "pub-in",
        line("PUB-SKU", json!({"kind": "receive", "quantity": 10})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let public = |path: String| {
        let s = &s;
        async move {
            let resp = s
                .client
                .get(format!("{}{path}", s.base))
                .header("origin", "https://shop.example")
                .send()
                .await
                .expect("request");
            let cors = resp
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            (resp.status(), cors, resp.json::<Value>().await.expect("json"))
        }
    };
    let (status, cors, found) = public(format!(
        "/storefront/v1/{website}/availability?sku=PUB-SKU&lat=40.0&lng=-3.0"
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(cors.as_deref(), Some("*"), "any shop page may ask");
    let first = &found["locations"][0];
    assert_eq!(
        (first["name"].as_str(), first["level"].as_str()),
        (Some("Public test shop"), Some("in_stock"))
    );
    assert_eq!(first["distance_km"], 0.0);
    for l in found["locations"].as_array().expect("locations") {
        let keys: Vec<&String> = l.as_object().expect("object").keys().collect();
        assert!(
            !keys
                .iter()
                .any(|k| ["available", "on_hand", "balance", "code"].contains(&k.as_str())),
            "shoppers see levels, not counts: {l}"
        );
    }

    // Bad requests, each with its code.
    let (status, _, body) = public(format!("/storefront/v1/{}/availability?sku=PUB-SKU", sb_core::new_id())).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "widget_not_found"));
    let (status, _, body) = public("/storefront/v1/not-a-token/availability?sku=PUB-SKU".into()).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "widget_not_found"));
    let (status, _, body) = public(format!("/storefront/v1/{website}/availability?sku=NOPE")).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _, body) = public(format!("/storefront/v1/{website}/availability?sku=PUB-SKU&lat=40")).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_position"));
    let (status, _, body) = public(format!("/storefront/v1/{website}/availability/events?skus=,")).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_skus"));

    // Live: only the SKU asked for, as levels.
    let stream_url = format!("{}/storefront/v1/{website}/availability/events?skus=PUB-SKU", s.base);
    let mut stream = EventStream::open_url(&s, &stream_url, None, None).await;
    let (status, body) = change(&s, "pub-sold", line("PUB-SKU", json!({"kind": "adjust", "delta": -8}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = change(
        &s,
        "pub-other",
        line("PUB-OTHER", json!({"kind": "receive", "quantity": 4})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = change(&s, "pub-gone", line("PUB-SKU", json!({"kind": "adjust", "delta": -2}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (low_id, kind, low) = stream.next().await;
    assert_eq!(kind, "availability");
    assert_eq!(low, json!({"sku": "PUB-SKU", "location_id": shop, "level": "low"}));
    let (out_id, _, out) = stream.next().await;
    assert_eq!(
        out,
        json!({"sku": "PUB-SKU", "location_id": shop, "level": "out_of_stock"}),
        "PUB-OTHER is filtered out"
    );
    assert!(out_id > low_id);

    // A page that lost its connection resumes after the last event it saw.
    let mut resumed = EventStream::open_url(&s, &stream_url, None, Some(&low_id.to_string())).await;
    let (id, _, again) = resumed.next().await;
    assert_eq!((id, again), (out_id, out));

    // Public, so limited per client IP: a flood is told to wait.
    let mut limited = None;
    for _ in 0..400 {
        let resp = s
            .client
            .get(format!("{}/storefront/v1/{website}/availability?sku=PUB-SKU", s.base))
            .send()
            .await
            .expect("request");
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or("").to_owned());
            limited = Some((wait, resp.json::<Value>().await.expect("json")));
            break;
        }
    }
    let (wait, body) = limited.expect("a flood from one address is limited");
    assert_eq!(code(&body), "rate_limited");
    assert!(
        wait.is_some_and(|w| w.parse::<u64>().is_ok_and(|s| s >= 1)),
        "Retry-After"
    );
}

/// Orders from any sales channel, chat included: an agent opens a cart for the customer they
/// are talking to, on the `chat` channel, and places a pickup order for them. The order is
/// the customer's and says it was sold in chat; running the counter (ready, hand over) stays
/// with store staff, and a marketer may not sell.
#[tokio::test]
async fn an_agent_places_an_order_for_the_customer_of_a_conversation() {
    let s = TestServer::start().await;
    let r = crate::harness::Receiver::start().await;
    let ana = customer_with_a_channel(&s, &r).await;
    let shop = location(&s, "CHAT-1", "Chat pickup shop", 40.4, -3.7, "store").await;
    product(&s, "CHAT-SKU", 1999).await;
    let line = json!([{"sku": "CHAT-SKU", "location_id": shop, "movement": {"kind": "receive", "quantity": 3}}]);
    assert_eq!(change(&s, "chat-in", line).await.0, StatusCode::CREATED);
    let (email, password) = s.demo_user("agent");
    let agent = s.token_for(&email, &password).await;

    // The agent sees whom they are talking to.
    let (status, customer) = s.get(&format!("/api/v1/customers/{ana}"), &agent).await;
    assert_eq!(status, StatusCode::OK, "{customer}");
    let (status, bad) = s
        .post("/api/v1/carts", &agent, json!({"customer_id": ana, "channel": "fax"}))
        .await;
    assert_eq!(
        (status, code(&bad)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_sales_channel")
    );
    let (status, cart) = s
        .post("/api/v1/carts", &agent, json!({"customer_id": ana, "channel": "chat"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cart}");
    let cart_id = cart["cart"]["id"].as_str().expect("cart").to_owned();
    let (status, body) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/carts/{cart_id}/lines/CHAT-SKU"),
            Some(&agent),
            Some(json!({"quantity": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, placed) = s
        .post(
            "/api/v1/orders",
            &agent,
            json!({"cart_id": cart_id, "idempotency_key": "chat-order-1", "fulfillment": "pickup", "location_id": shop}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order = &placed["order"];
    assert_eq!(
        (order["channel"].as_str(), order["customer_id"].as_str()),
        (Some("chat"), Some(ana.as_str()))
    );
    let order_id = order["id"].as_str().expect("order").to_owned();
    assert_eq!(
        available_at(&s, "CHAT-SKU", "CHAT-1").await,
        1,
        "the order holds its units"
    );

    let (status, orders) = s.get(&format!("/api/v1/customers/{ana}/orders"), &agent).await;
    assert_eq!(status, StatusCode::OK, "{orders}");
    assert!(
        orders.to_string().contains(&order_id),
        "the order is on the customer's record: {orders}"
    );

    // The counter is store staff's; a marketer sells nothing.
    let (status, refused) = s
        .post(&format!("/api/v1/orders/{order_id}/ready"), &agent, json!({}))
        .await;
    assert_eq!((status, code(&refused)), (StatusCode::FORBIDDEN, "permission_denied"));
    let (email, password) = s.demo_user("marketer");
    let marketer = s.token_for(&email, &password).await;
    let (status, refused) = s
        .post(
            "/api/v1/carts",
            &marketer,
            json!({"customer_id": ana, "channel": "chat"}),
        )
        .await;
    assert_eq!((status, code(&refused)), (StatusCode::FORBIDDEN, "permission_denied"));
    check_clean(&s).await;
}
