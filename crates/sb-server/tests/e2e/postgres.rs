//! The same server on PostgreSQL: the HTTP API, auth, isolation, audit and jobs through the
//! PostgreSQL executor, in a schema of its own that is dropped afterwards.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use sb_server::config::DatabaseConfig;
use sb_sql::postgres::{PgExecutor, PgOptions};
use sb_sql::{Db, SqlError};
use serde_json::json;

use crate::harness::{TestServer, code};
use crate::widget_client::{Widget, demo_website_token};

#[tokio::test]
async fn the_api_runs_on_postgres() {
    let Ok(url) = std::env::var("SWITCHBOARD_TEST_PG_URL") else {
        println!("PostgreSQL half skipped: SWITCHBOARD_TEST_PG_URL is not set");
        return;
    };
    let admin = Db::new(Arc::new(
        PgExecutor::connect(&PgOptions::new(url.clone()))
            .await
            .expect("PostgreSQL reachable"),
    ));
    let schema = format!("sb_e2e_{}", sb_core::new_id().replace('-', ""));
    let ddl = format!("CREATE SCHEMA {schema}");
    admin
        .write(move |c| c.execute_script(&ddl))
        .await
        .map_err(|e: SqlError| e)
        .expect("schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");

    let s = TestServer::start_with(|c| c.database = DatabaseConfig::Postgres(schema_url)).await;
    let (status, _) = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, created) = s
        .post(
            "/api/v1/workspaces",
            &s.admin_token,
            json!({"name": "PG Shop", "admin_email": "pg@other.test", "admin_name": "P", "admin_password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let b_admin = created["admin"]["id"].as_str().expect("id").to_owned();
    let b_token = s.token_for("pg@other.test", "correct horse battery").await;
    let (status, body) = s.get(&format!("/api/v1/users/{b_admin}"), &s.admin_token).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "user_not_found"));
    let (_, audit) = s
        .get("/api/v1/audit?action=access.cross_workspace_denied", &s.admin_token)
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
    let (status, body) = s.get("/api/v1/users", &b_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["items"].as_array().map(Vec::len),
        Some(1),
        "B sees only its own user"
    );

    // A job with no handler dies and is retryable, through the PostgreSQL claim path.
    let (_, me) = s.get("/api/v1/me", &s.admin_token).await;
    let ws = me["workspace"]["id"].as_str().expect("workspace").to_owned();
    let job = sb_store::jobs::NewJob::new("default", "no.such.kind", "{}", s.server.store.now()).workspace(&ws);
    let id = s.server.engine.enqueue(job).await.expect("enqueue").expect("id");
    let mut dead = false;
    for _ in 0..200 {
        let (_, list) = s.get("/api/v1/jobs", &s.admin_token).await;
        if list["items"][0]["id"].as_str() == Some(id.as_str()) {
            dead = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(dead, "the job died and is listed");
    let (status, _) = s
        .post(&format!("/api/v1/jobs/{id}/retry"), &s.admin_token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    // The inbox on PostgreSQL: ingest, one conversation per customer, a reply through the
    // outbox, a status report, a merge and its undo, the live log.
    let r = crate::harness::Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let loyalty = s.api_account("loyalty app", &r.url).await;
    let m = |id: &str, from: serde_json::Value| json!({"type": "message", "id": id, "from": from, "text": id});
    assert_eq!(
        s.deliver(&shop, &m("a-1", json!({"id": "u1", "email": "ana@example.com"})))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        s.deliver(&loyalty, &m("b-1", json!({"id": "v9", "email": "ana@example.com"})))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        s.deliver(&loyalty, &m("b-2", json!({"id": "w7"}))).await.0,
        StatusCode::OK
    );
    let list = s
        .until("/api/v1/conversations", |b| {
            let items = b["items"].as_array();
            let unread: i64 = items.map_or(0, |a| a.iter().filter_map(|c| c["unread_count"].as_i64()).sum());
            items.is_some_and(|a| a.len() == 2) && unread == 3
        })
        .await;
    let ana = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|c| c["unread_count"] == 2)
        .expect("Ana's conversation");
    let conversation = ana["id"].as_str().expect("id").to_owned();
    let (status, reply) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let reply_id = reply["id"].as_str().expect("id").to_owned();
    let provider_id = s.until_message(&conversation, &reply_id, "sent").await["provider_message_id"]
        .as_str()
        .expect("provider id")
        .to_owned();
    assert_eq!(
        r.received()[0].1["to"],
        "v9",
        "the reply went where the customer last wrote"
    );
    let report = json!({"type": "status", "id": "st-1", "message_id": provider_id, "status": "read"});
    assert_eq!(s.deliver(&loyalty, &report).await.0, StatusCode::OK);
    s.until_message(&conversation, &reply_id, "read").await;
    let (_, w7) = s.get("/api/v1/customers?q=w7", &s.admin_token).await;
    let source = w7["items"][0]["id"].as_str().expect("id").to_owned();
    let (_, ana_customer) = s.get("/api/v1/customers?q=ana@example", &s.admin_token).await;
    let target = ana_customer["items"][0]["id"].as_str().expect("id").to_owned();
    let (status, merge) = s
        .post(
            &format!("/api/v1/customers/{target}/merge"),
            &s.admin_token,
            json!({"source_customer_id": source}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{merge}");
    s.until("/api/v1/conversations", |b| {
        b["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let merge_id = merge["id"].as_str().expect("id");
    let (status, _) = s
        .post(
            &format!("/api/v1/customer-merges/{merge_id}/undo"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s.until("/api/v1/conversations", |b| {
        b["items"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;

    // The website widget on PostgreSQL: echo ids, the socket, a verified identify, an upload.
    let w = Widget::start(&s, &demo_website_token(&s)).await;
    let mut socket = w.connect(w.conversation().await["last_seq"].as_i64()).await;
    let said = w.say("pg-1", "hello from the site").await;
    assert_eq!(w.say("pg-1", "hello from the site").await["id"], said["id"]);
    assert_eq!(socket.next_of("message.created").await["message"]["id"], said["id"]);
    let secret = s.server.demo.as_ref().expect("demo").channels["widget"]["hmac_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let hash = sb_channels::widget::identifier_hash(&secret, "pg-user");
    let (status, body) = w
        .post(
            "/widget/v1/identify",
            json!({"identifier": "pg-user", "identifier_hash": hash}),
        )
        .await;
    assert_eq!(
        (status, body["verified"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{body}"
    );
    let resp = s
        .client
        .post(format!("{}/widget/v1/attachments?filename=a.txt", s.base))
        .bearer_auth(&w.token)
        .header("content-type", "text/plain")
        .body("a note")
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let file: serde_json::Value = resp.json().await.expect("json");
    let (status, body) = w
        .post(
            "/widget/v1/messages",
            json!({"echo_id": "pg-2", "attachment_ids": [file["id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    socket.close().await;

    // Customer data on PostgreSQL: a Segment batch stored and processed, an anonymous
    // visitor's profile merged into the member's by a shared phone, the timeline.
    let key = s.server.demo.as_ref().expect("demo").segment["write_key"]
        .as_str()
        .expect("write key")
        .to_owned();
    let batch = json!({"writeKey": key, "batch": [
        {"type": "identify", "userId": "pg-u1", "messageId": "pg-e1", "traits": {"phone": "+34600123123", "name": "Pia"}},
        {"type": "track", "event": "Product Added", "anonymousId": "pg-a1", "messageId": "pg-e2",
         "properties": {"sku": "GLV-1", "cart_id": "pg-c1"}},
        {"type": "identify", "anonymousId": "pg-a1", "messageId": "pg-e3", "traits": {"phone": "+34 600 123 123"}},
    ]});
    let resp = s
        .client
        .post(format!("{}/v1/batch", s.base))
        .json(&batch)
        .send()
        .await
        .expect("batch");
    assert_eq!(resp.status(), StatusCode::OK);
    let profile = s
        .until("/api/v1/profiles/lookup?kind=anonymous_id&value=pg-a1", |p| {
            p["identifiers"].as_array().is_some_and(|a| a.len() == 3)
        })
        .await;
    assert_eq!(profile["traits"]["name"]["value"], "Pia");
    assert_eq!(profile["merges"][0]["rule"], "shared_identifier");
    let customer = profile["customer"]["id"].as_str().expect("id");
    let (_, timeline) = s
        .get(&format!("/api/v1/customers/{customer}/timeline"), &s.admin_token)
        .await;
    assert!(
        timeline["items"]
            .as_array()
            .is_some_and(|t| t.iter().any(|i| i["name"] == "Product Added")),
        "{timeline}"
    );

    // Two routed shipments race for the nearest store's last units (3 left, 2 wanted each):
    // the one that loses is planned again on the new balances and ships from elsewhere.
    let (_, customers) = s.get("/api/v1/customers?limit=10", &s.admin_token).await;
    let buyers: Vec<String> = customers["items"]
        .as_array()
        .expect("customers")
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .take(2)
        .collect();
    assert_eq!(buyers.len(), 2, "{customers}");
    let mut carts = Vec::new();
    for buyer in &buyers {
        let (status, cart) = s
            .post(
                "/api/v1/carts",
                &s.admin_token,
                json!({"customer_id": buyer, "channel": "web"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{cart}");
        let id = cart["cart"]["id"].as_str().expect("cart").to_owned();
        let (status, body) = s
            .call(
                Method::PUT,
                &format!("/api/v1/carts/{id}/lines/JKT-BLU-L"),
                Some(&s.admin_token),
                Some(json!({"quantity": 2})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        carts.push(id);
    }
    let order = |cart: String| {
        let s = &s;
        async move {
            s.post(
                "/api/v1/orders",
                &s.admin_token,
                json!({"cart_id": cart, "idempotency_key": format!("race-{cart}"), "fulfillment": "ship",
                       "ship_to": {"lat": 40.4168, "lng": -3.7038}}),
            )
            .await
        }
    };
    let (a, b) = tokio::join!(order(carts[0].clone()), order(carts[1].clone()));
    assert_eq!(
        (a.0, b.0),
        (StatusCode::CREATED, StatusCode::CREATED),
        "{} {}",
        a.1,
        b.1
    );
    assert_ne!(
        a.1["order"]["location_id"], b.1["order"]["location_id"],
        "one of them ships from elsewhere"
    );

    // Split shipments and pickups sourced by transfer, the same flows as on SQLite.
    crate::commerce::split_shipment_flow(&s, &buyers[0]).await;
    crate::commerce::pickup_transfer_flow(&s, &buyers[1]).await;
    // Two pickups at Madrid sourced by transfer race for the warehouse's two lamps: the one
    // that loses is planned again and brings its lamps from Barcelona.
    let madrid = crate::commerce::location_id(&s, "MAD-CENTRO").await;
    let warehouse = crate::commerce::location_id(&s, "ZGZ-WH").await;
    let barcelona = crate::commerce::location_id(&s, "BCN-GRACIA").await;
    crate::commerce::product(&s, "RACE-LAMP", 1000).await;
    let (status, _) = crate::commerce::change(
        &s,
        "race-lamps",
        json!([{"sku": "RACE-LAMP", "location_id": warehouse, "movement": {"kind": "receive", "quantity": 2}},
               {"sku": "RACE-LAMP", "location_id": barcelona, "movement": {"kind": "receive", "quantity": 2}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut carts = Vec::new();
    for buyer in &buyers {
        carts.push(crate::commerce::cart_with(&s, buyer, &[("RACE-LAMP", 2)]).await);
    }
    let pickup = |cart: String| {
        let (s, madrid) = (&s, madrid.clone());
        async move {
            s.post(
                "/api/v1/orders",
                &s.admin_token,
                json!({"cart_id": cart, "idempotency_key": format!("race-pickup-{cart}"), "fulfillment": "pickup",
                       "location_id": madrid, "allow_transfer": true}),
            )
            .await
        }
    };
    let (a, b) = tokio::join!(pickup(carts[0].clone()), pickup(carts[1].clone()));
    assert_eq!(
        (a.0, b.0),
        (StatusCode::CREATED, StatusCode::CREATED),
        "{} {}",
        a.1,
        b.1
    );
    let mut senders = [
        a.1["order"]["transfers"][0]["from_location_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        b.1["order"]["transfers"][0]["from_location_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ];
    senders.sort();
    let mut expected = [warehouse.clone(), barcelona.clone()];
    expected.sort();
    assert_eq!(senders, expected, "one from each: {} {}", a.1, b.1);
    let (_, checked) = s.get("/api/v1/inventory/check", &s.admin_token).await;
    assert_eq!(checked["problems"], json!([]));

    // Another workspace sees none of it: its ids are unknown there.
    let (_, sent) = s.get("/api/v1/transfers?limit=1", &s.admin_token).await;
    let transfer = sent["items"][0]["id"].as_str().expect("a transfer").to_owned();
    let (_, orders) = s
        .get(&format!("/api/v1/customers/{}/orders", buyers[0]), &s.admin_token)
        .await;
    let split = orders["items"]
        .as_array()
        .expect("orders")
        .iter()
        .find_map(|o| o["id"].as_str().map(str::to_owned))
        .expect("an order");
    for (path, body) in [
        (format!("/api/v1/transfers/{transfer}"), None),
        (format!("/api/v1/transfers/{transfer}/receive"), Some(json!({}))),
        (
            format!("/api/v1/orders/{split}/fulfillments/{split}/ship"),
            Some(json!({})),
        ),
    ] {
        let method = if body.is_some() { Method::POST } else { Method::GET };
        let (status, answer) = s.call(method, &path, Some(&b_token), body).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}: {answer}"
        );
    }
    let (_, listed) = s.get("/api/v1/transfers", &b_token).await;
    assert_eq!(listed["items"], json!([]), "{listed}");

    s.server.shutdown().await;
    let ddl = format!("DROP SCHEMA {schema} CASCADE");
    admin
        .write(move |c| c.execute_script(&ddl))
        .await
        .map_err(|e: SqlError| e)
        .expect("drop schema");
    admin.close().await;
}
