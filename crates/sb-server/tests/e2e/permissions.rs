//! The permission matrix, enumerated: every operation of the OpenAPI document and every page
//! of the web app, called as an anonymous caller, an agent, a marketer, a store employee, an
//! admin and another workspace's admin, each answer checked against the tables
//! (`x-permission` in the document, from `sb_http::access::ROUTES`; `sb_web::pages::PAGES`)
//! and the role × permission matrix of `sb_core::access`. A route or page without an entry
//! fails the test.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use sb_core::{Permission, Role};
use sb_web::pages::{PAGES, PageAccess};
use serde_json::{Value, json};

use crate::harness::{Receiver, TestServer};

/// A caller of the test: who, and the credentials they send.
struct Caller {
    name: &'static str,
    /// `None` for the other workspace's admin and the anonymous caller.
    role: Option<Role>,
    other_workspace: bool,
    token: Option<String>,
    cookie: Option<String>,
}

/// Ids of this workspace's objects, by what the path names them.
pub(crate) struct Fixture {
    pub ids: BTreeMap<&'static str, String>,
    pub sku: String,
    pub website_token: String,
}

impl Fixture {
    /// Every id of this workspace the test uses: the other workspace's admin must never see one.
    fn all(&self) -> Vec<&String> {
        self.ids.values().collect()
    }

    /// A path with its parameters filled with this workspace's objects.
    fn fill(&self, path: &str) -> String {
        let segments: Vec<&str> = path.split('/').collect();
        let mut out = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                out.push((*seg).to_owned());
                continue;
            };
            let before = if i > 0 { segments[i - 1] } else { "" };
            let value = match name {
                "id" => self.ids.get(resource(before)).cloned().unwrap_or_else(random_id),
                "action" if path.contains("/orders/") => "ready".into(),
                "action" if path.contains("/transfers/") => "receive".into(),
                "action" => "release".into(),
                "sku" => self.sku.clone(),
                "name" => "app.css".into(),
                "*rest" => "no-such-page".into(),
                "website_token" => self.website_token.clone(),
                _ => random_id(),
            };
            out.push(value);
        }
        out.join("/")
    }
}

/// The kind of object a path's `{id}` names, from the segment before it.
fn resource(segment: &str) -> &'static str {
    match segment {
        "conversations" => "conversation",
        "customers" => "customer",
        "users" => "user",
        "tokens" => "token",
        "canned-responses" => "canned_response",
        "channel-accounts" => "channel_account",
        "carts" => "cart",
        "orders" => "order",
        "transfers" => "transfer",
        "messages" => "message",
        "attachments" => "attachment",
        _ => "unknown",
    }
}

fn random_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The smallest value the schema accepts, so that a request gets past JSON decoding and the
/// answer is the use case's.
fn example(schema: &Value, doc: &Value, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or_default();
        return example(&doc["components"]["schemas"][name], doc, depth + 1);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(first) = schema[key]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["type"] != "null").or(a.first()))
        {
            return example(first, doc, depth + 1);
        }
    }
    if let Some(first) = schema["enum"].as_array().and_then(|a| a.first()) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::Array(types) => types.iter().find(|t| *t != "null").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    match kind.as_str() {
        Some("object") | None if schema["properties"].is_object() => {
            let mut out = serde_json::Map::new();
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                out.insert(name.to_owned(), example(&schema["properties"][name], doc, depth + 1));
            }
            Value::Object(out)
        }
        Some("object") => json!({}),
        Some("array") => json!([]),
        Some("integer") => json!(1),
        Some("number") => json!(1.0),
        Some("boolean") => json!(false),
        Some("string") => json!("x"),
        _ => Value::Null,
    }
}

/// One request of the test, with what it sends.
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<RequestBody>,
}

enum RequestBody {
    Json(Value),
    Bytes(&'static str),
    Form,
}

async fn send(s: &TestServer, client: &reqwest::Client, caller: &Caller, call: &Call) -> (StatusCode, String) {
    let mut url = format!("{}{}", s.base, call.path);
    if !call.query.is_empty() {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &call.query {
            q.append_pair(k, v);
        }
        url = format!("{url}?{}", q.finish());
    }
    let mut req = client.request(call.method.clone(), url);
    if let Some(t) = &caller.token {
        req = req.bearer_auth(t);
    }
    if let Some(c) = &caller.cookie {
        // Our own pages post from our own origin.
        req = req.header("cookie", c).header("origin", s.base.clone());
    }
    req = match &call.body {
        Some(RequestBody::Json(v)) => req.json(v),
        Some(RequestBody::Bytes(content_type)) => req.header("content-type", *content_type).body("hello"),
        Some(RequestBody::Form) => req.header("content-type", "application/x-www-form-urlencoded").body(""),
        None => req,
    };
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(|l| format!("→ {l} "))
        .unwrap_or_default();
    let streaming = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        // A live stream that opened: its status is the answer; it would not end by itself.
        return (status, location);
    }
    (status, location + &resp.text().await.unwrap_or_default())
}

pub(crate) async fn fixture(s: &TestServer) -> Fixture {
    let mut ids = BTreeMap::new();
    let r = Receiver::start().await;
    let customer = crate::commerce::customer_with_a_channel(s, &r).await;
    let conversation = s.conversation_of(&customer).await;
    let (_, thread) = s
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
        )
        .await;
    ids.insert(
        "message",
        thread["items"][0]["id"].as_str().expect("message").to_owned(),
    );
    let (status, account) = s.get("/api/v1/channel-accounts", &s.admin_token).await;
    assert_eq!(status, StatusCode::OK);
    let accounts = account["items"].as_array().cloned().unwrap_or_default();
    ids.insert(
        "channel_account",
        accounts[0]["id"].as_str().expect("account").to_owned(),
    );
    let website_token = accounts
        .iter()
        .find(|a| a["channel"] == "widget")
        .and_then(|a| a["id"].as_str())
        .expect("the demo's widget")
        .to_owned();
    let (_, canned) = s.get("/api/v1/canned-responses", &s.admin_token).await;
    ids.insert(
        "canned_response",
        canned["items"][0]["id"].as_str().expect("canned").to_owned(),
    );
    let (_, users) = s.get("/api/v1/users", &s.admin_token).await;
    let second_agent = users["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["role"] == "agent")
        .nth(1)
        .and_then(|u| u["id"].as_str())
        .expect("a second agent")
        .to_owned();
    ids.insert("user", second_agent);
    let (status, spare) = s.post("/api/v1/tokens", &s.admin_token, json!({"name": "spare"})).await;
    assert_eq!(status, StatusCode::CREATED, "{spare}");
    ids.insert("token", spare["id"].as_str().expect("token").to_owned());
    let sku = "JKT-BLU-M".to_owned();
    let cart = crate::commerce::cart_with(s, &customer, &[(&sku, 1)]).await;
    let madrid = crate::commerce::location_id(s, "MAD-CENTRO").await;
    let (status, placed) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": cart, "idempotency_key": "matrix-1", "fulfillment": "pickup", "location_id": madrid}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    ids.insert("order", placed["order"]["id"].as_str().expect("order").to_owned());
    let cart = crate::commerce::cart_with(s, &customer, &[(&sku, 1)]).await;
    ids.insert("cart", cart);
    let (_, locations) = s.get("/api/v1/locations", &s.admin_token).await;
    let other = locations["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["id"].as_str())
        .find(|id| *id != madrid)
        .expect("a second location")
        .to_owned();
    let (status, transfer) = s
        .post(
            "/api/v1/transfers",
            &s.admin_token,
            json!({"idempotency_key": "matrix-t", "from_location_id": madrid, "to_location_id": other,
                   "lines": [{"sku": sku, "quantity": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{transfer}");
    ids.insert("transfer", transfer["id"].as_str().expect("transfer").to_owned());
    let upload = s
        .client
        .post(format!("{}/api/v1/attachments?filename=a.txt", s.base))
        .bearer_auth(&s.admin_token)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), StatusCode::CREATED);
    let upload: Value = upload.json().await.expect("json");
    ids.insert("attachment", upload["id"].as_str().expect("attachment").to_owned());
    ids.insert("customer", customer);
    ids.insert("conversation", conversation);
    Fixture {
        ids,
        sku,
        website_token,
    }
}

/// Calls that change or end what later calls use go last.
fn order_key(method: &str, path: &str) -> (u8, String) {
    let last = method == "delete" || path.ends_with("/erase") || path.contains("/auth/");
    let write = method != "get";
    (u8::from(write) + 2 * u8::from(last), format!("{path} {method}"))
}

#[tokio::test]
async fn every_route_and_page_answers_each_role_as_the_matrix_says() {
    let s = TestServer::start().await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client");

    // The callers: one of each role of the demo workspace, another workspace's admin, nobody.
    let mut callers = vec![Caller {
        name: "anonymous",
        role: None,
        other_workspace: false,
        token: None,
        cookie: None,
    }];
    for (name, role) in [
        ("admin", Role::Admin),
        ("agent", Role::Agent),
        ("marketer", Role::Marketer),
        ("store employee", Role::StoreStaff),
    ] {
        let (email, password) = s.demo_user(role.as_str());
        let (cookie, token) = (
            s.session_for(&email, &password).await,
            s.token_for(&email, &password).await,
        );
        callers.push(Caller {
            name,
            role: Some(role),
            other_workspace: false,
            token: Some(token),
            cookie: Some(cookie),
        });
    }
    let token = s.other_workspace_admin().await;
    let cookie = s
        .session_for("boss@elsewhere.example", crate::harness::OTHER_ADMIN_PASSWORD)
        .await;
    callers.push(Caller {
        name: "another workspace's admin",
        role: Some(Role::Admin),
        other_workspace: true,
        token: Some(token),
        cookie: Some(cookie),
    });
    let fixture = fixture(&s).await;
    let ours = fixture.all();

    let (_, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            operations.push((order_key(method, path), method.clone(), path.clone(), op.clone()));
        }
    }
    operations.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(operations.len() > 90, "the document lists every operation");

    let mut problems = Vec::new();
    let mut checked = 0;
    for (_, method, template, op) in &operations {
        let access = op["x-permission"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {template} has no x-permission: add it to sb_http::access::ROUTES"));
        let permission = Permission::parse(access);
        let owner_only = access == "instance_owner";
        if permission.is_none() && !owner_only {
            // Public, the session, a visitor's token, a provider's signature or a write key: no
            // role of ours is involved. They are listed, and checked by their own tests.
            assert!(
                [
                    "public",
                    "session",
                    "visitor_token",
                    "provider_signature",
                    "write_key",
                    "metrics_token"
                ]
                .contains(&access),
                "{method} {template}: unknown access {access}"
            );
            continue;
        }
        let mut query = Vec::new();
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] == "query" && p["required"] == true {
                let value = example(&p["schema"], &doc, 0);
                let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                query.push((p["name"].as_str().unwrap_or_default().to_owned(), text));
            }
        }
        let body = op["requestBody"]["content"].as_object().and_then(|content| {
            if let Some(json) = content.get("application/json") {
                Some(RequestBody::Json(example(&json["schema"], &doc, 0)))
            } else {
                content.keys().next().map(|_| RequestBody::Bytes("text/plain"))
            }
        });
        let call = Call {
            method: Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"),
            path: fixture.fill(template),
            query,
            body,
        };
        let names_ours = template.contains('{');
        for caller in &callers {
            let caller = Caller {
                cookie: None,
                name: caller.name,
                role: caller.role,
                other_workspace: caller.other_workspace,
                token: caller.token.clone(),
            };
            let (status, text) = send(&s, &plain, &caller, &call).await;
            checked += 1;
            let what = format!("{method} {template} as {}: {status} {text:.200}", caller.name);
            if status.is_server_error() {
                problems.push(format!("server error: {what}"));
                continue;
            }
            let Some(role) = caller.role else {
                if status != StatusCode::UNAUTHORIZED {
                    problems.push(format!("not refused without credentials: {what}"));
                }
                continue;
            };
            let allowed = match permission {
                Some(p) => role.allows(p),
                None => role == Role::Admin && !caller.other_workspace,
            };
            if !allowed {
                if status != StatusCode::FORBIDDEN || !text.contains("permission_denied") {
                    problems.push(format!("expected 403 permission_denied: {what}"));
                }
                continue;
            }
            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                problems.push(format!("refused though the matrix allows it: {what}"));
                continue;
            }
            if caller.other_workspace {
                if names_ours && status.is_success() {
                    problems.push(format!("another workspace's id answered: {what}"));
                }
                // The id it asked for comes back in the refusal, and its own audit log records
                // the attempt; nothing else of ours may appear.
                let leaked = ours
                    .iter()
                    .find(|id| text.contains(id.as_str()) && !call.path.contains(id.as_str()));
                if let Some(id) = leaked.filter(|_| template != "/api/v1/audit") {
                    problems.push(format!("another workspace's id {id} in the answer: {what}"));
                }
            }
        }
    }

    // The pages: signed in with the session cookie, as a browser is.
    // Signing out goes last: it ends the session the other pages use.
    let mut pages: Vec<_> = PAGES
        .iter()
        .filter(|(_, _, access)| *access != PageAccess::Public)
        .collect();
    pages.sort_by_key(|(_, path, _)| *path == "/app/logout");
    for (method, template, access) in &pages {
        let call = Call {
            method: Method::from_bytes(method.as_bytes()).expect("method"),
            path: fixture.fill(template),
            query: Vec::new(),
            body: (*method == "POST").then_some(RequestBody::Form),
        };
        for caller in &callers {
            let caller = Caller {
                token: None,
                name: caller.name,
                role: caller.role,
                other_workspace: caller.other_workspace,
                cookie: caller.cookie.clone(),
            };
            let (status, text) = send(&s, &plain, &caller, &call).await;
            checked += 1;
            let what = format!("page {method} {template} as {}: {status} {text:.200}", caller.name);
            if status.is_server_error() {
                problems.push(format!("server error: {what}"));
                continue;
            }
            let Some(role) = caller.role else {
                // A browser without a session goes to the sign-in page.
                if !status.is_redirection() && status != StatusCode::UNAUTHORIZED {
                    problems.push(format!("not sent to sign in: {what}"));
                }
                continue;
            };
            let allowed = match access {
                PageAccess::Needs(p) => role.allows(*p),
                _ => true,
            };
            if !allowed {
                if status != StatusCode::FORBIDDEN || !text.contains("permission_denied") {
                    problems.push(format!("expected 403 permission_denied: {what}"));
                }
                continue;
            }
            // Signing out ends at the sign-in page: that is its success.
            let to_sign_in = status.is_redirection() && text.starts_with("→ /app/login") && *template != "/app/logout";
            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) || to_sign_in {
                problems.push(format!("refused though the matrix allows it: {what}"));
                continue;
            }
            if caller.other_workspace {
                if template.contains("{id}") && status.is_success() {
                    problems.push(format!("another workspace's page answered: {what}"));
                }
                let leaked = ours
                    .iter()
                    .find(|id| text.contains(id.as_str()) && !call.path.contains(id.as_str()));
                if let Some(id) = leaked {
                    problems.push(format!("another workspace's id {id} on the page: {what}"));
                }
            }
        }
    }
    assert!(checked > 600, "{checked} answers checked");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[tokio::test]
async fn a_store_employee_and_a_marketer_see_a_customers_timeline_without_the_conversation() {
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let customer = crate::commerce::customer_with_a_channel(&s, &r).await;
    let path = format!("/api/v1/customers/{customer}/timeline");
    let admin = s
        .until(&path, |b| {
            b["items"]
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["source"] == "message"))
        })
        .await;
    assert!(
        admin.to_string().contains("\"hi\""),
        "the admin reads the message: {admin}"
    );
    for role in ["store_staff", "marketer"] {
        let (email, password) = s.demo_user(role);
        let token = s.token_for(&email, &password).await;
        let (status, timeline) = s.get(&path, &token).await;
        assert_eq!(status, StatusCode::OK, "{role}: {timeline}");
        let items = timeline["items"].as_array().expect("items");
        assert!(
            items.iter().all(|e| e["source"] != "message"),
            "{role} sees no message on the timeline: {timeline}"
        );
        // The conversation itself stays closed to them.
        let (_, list) = s.get("/api/v1/conversations", &token).await;
        assert_eq!(list["error"]["code"], "permission_denied", "{role}");
    }
    let (email, password) = s.demo_user("agent");
    let token = s.token_for(&email, &password).await;
    let (_, timeline) = s.get(&path, &token).await;
    assert!(timeline.to_string().contains("\"hi\""), "an agent reads it: {timeline}");
}
