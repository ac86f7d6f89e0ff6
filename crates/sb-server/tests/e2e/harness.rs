use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use sb_engine::Time;
use sb_server::config::{Config, DatabaseConfig};
use serde_json::Value;

pub struct TestServer {
    pub server: sb_server::Server,
    pub client: Client,
    pub base: String,
    pub admin_token: String,
    pub admin_email: String,
    pub admin_password: String,
    _dir: tempfile::TempDir,
}

pub fn config(dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        smtp_listen: Some("127.0.0.1:0".parse().expect("address")),
        data_dir: dir.to_path_buf(),
        database: DatabaseConfig::Sqlite(dir.join("switchboard.sqlite")),
        nats_url: None,
        public_url: None,
        demo: true,
        http: sb_http::HttpConfig::default(),
        webhooks_allow_private_networks: false,
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_at(Time::System, adjust).await
    }

    /// A server on the given clock (`Time::Manual` to move time in a test). The demo's
    /// journeys are archived, so that a test of something else sees no automated message;
    /// `start_with_journeys` keeps them.
    pub async fn start_at(time: Time, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let s = Self::start_with_journeys(time, adjust).await;
        s.server
            .store
            .db
            .execute(sb_store::Stmt::new("UPDATE journeys SET state = 'archived'"))
            .await
            .expect("demo journeys archived");
        s
    }

    /// A server with the demo's journeys active.
    pub async fn start_with_journeys(time: Time, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config(dir.path());
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = sb_server::start(config, listener, time).await.expect("server starts");
        let demo = server.demo.clone().expect("demo workspace on first start");
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        TestServer {
            base: format!("http://{}", server.addr),
            admin_token: demo.api_token.clone(),
            admin_email: demo.users[0].email.clone(),
            admin_password: demo.users[0].password.clone(),
            server,
            client,
            _dir: dir,
        }
    }

    pub fn demo_user(&self, role: &str) -> (String, String) {
        let demo = self.server.demo.as_ref().expect("demo");
        let u = demo.users.iter().find(|u| u.role == role).expect("demo user with role");
        (u.email.clone(), u.password.clone())
    }

    /// Sends a request with an optional bearer token and JSON body; returns status and JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Signs in and returns a new API token for that user.
    pub async fn token_for(&self, email: &str, password: &str) -> String {
        let cookie = self.session_for(email, password).await;
        let resp = self
            .client
            .post(format!("{}/api/v1/tokens", self.base))
            .header("cookie", cookie)
            .json(&serde_json::json!({ "name": "test" }))
            .send()
            .await
            .expect("create token");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.expect("json");
        body["secret"].as_str().expect("secret").to_owned()
    }
}

impl TestServer {
    /// Signs in over the JSON API and returns the session cookie (`sb_session=…`).
    pub async fn session_for(&self, email: &str, password: &str) -> String {
        let resp = self
            .client
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), StatusCode::OK, "sign-in as {email}");
        session_cookie(&resp).expect("session cookie")
    }

    /// The conversation of a customer of the demo workspace.
    pub async fn conversation_of(&self, customer: &str) -> String {
        let (status, body) = self
            .get(&format!("/api/v1/customers/{customer}"), &self.admin_token)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["conversation_id"].as_str().expect("a conversation").to_owned()
    }

    /// Another workspace with an admin (`boss@elsewhere.example`); returns that admin's token.
    pub async fn other_workspace_admin(&self) -> String {
        let (status, body) = self
            .post(
                "/api/v1/workspaces",
                &self.admin_token,
                serde_json::json!({"name": "Elsewhere", "admin_email": "boss@elsewhere.example",
                       "admin_name": "Boss", "admin_password": OTHER_ADMIN_PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.token_for("boss@elsewhere.example", OTHER_ADMIN_PASSWORD).await
    }
}

pub const OTHER_ADMIN_PASSWORD: &str = "a long password 123";

pub fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sb_session="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// A channel account of the generic API channel: its id, signing secret and webhook URL.
pub struct ApiAccount {
    pub id: String,
    pub secret: String,
    pub hook: String,
}

impl TestServer {
    pub async fn api_account(&self, name: &str, webhook_url: &str) -> ApiAccount {
        let (status, body) = self
            .post(
                "/api/v1/channel-accounts",
                &self.admin_token,
                serde_json::json!({"channel": "api", "name": name, "settings": {"webhook_url": webhook_url}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ApiAccount {
            id: body["id"].as_str().expect("id").to_owned(),
            secret: body["secrets"]["secret"].as_str().expect("secret").to_owned(),
            hook: body["webhook_url"].as_str().expect("webhook url").to_owned(),
        }
    }

    /// Posts `body` to the account's webhook, signed now.
    pub async fn deliver(&self, account: &ApiAccount, body: &Value) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs() as i64;
        let signature = sb_channels::signing::sign(&account.secret, now, &bytes);
        self.raw_post(&account.hook, vec![(sb_channels::signing::HEADER, signature)], bytes)
            .await
    }

    pub async fn raw_post(&self, url: &str, headers: Vec<(&str, String)>, body: Vec<u8>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        for (n, v) in headers {
            req = req.header(n, v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Polls the thread until the message has `status`; returns the message.
    pub async fn until_message(&self, conversation: &str, message_id: &str, status: &str) -> Value {
        let thread = self
            .until(&format!("/api/v1/conversations/{conversation}/messages"), |b| {
                b["items"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|m| m["id"] == message_id && m["status"] == status))
            })
            .await;
        thread["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["id"] == message_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The conversation's customer opts in to marketing on `channel`, with the text they saw.
    pub async fn opt_in_marketing(&self, conversation: &str, channel: &str) {
        let (_, detail) = self
            .get(&format!("/api/v1/conversations/{conversation}"), &self.admin_token)
            .await;
        let customer = detail["customer"]["id"].as_str().expect("customer id").to_owned();
        let (status, body) = self
            .post(
                &format!("/api/v1/customers/{customer}/consents"),
                &self.admin_token,
                serde_json::json!({"channel": channel, "purpose": "marketing", "granted": true,
                                   "source": "signup_form", "text_shown": "Send me offers", "ip": "203.0.113.9"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Polls `path` until `done` holds (bounded).
    pub async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..300 {
            let (_, body) = self.get(path, &self.admin_token).await;
            if done(&body) {
                return body;
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{path} never reached the expected state; last: {last}");
    }
}

/// Talking to a provider simulator's control API (`sb-sim`).
impl TestServer {
    /// `POST {base}{path}` with a JSON body; asserts success and returns the answer.
    pub async fn sim_post(&self, base: &str, path: &str, body: Value) -> Value {
        let resp = self
            .client
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .expect("simulator control");
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    pub async fn sim_get(&self, base: &str, path: &str) -> Value {
        self.client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("simulator control")
            .json()
            .await
            .expect("json")
    }

    /// The provider calls the simulator logged at `{base}{log}` that `keep` selects, once
    /// there are at least `n` (bounded wait).
    pub async fn provider_calls(&self, base: &str, log: &str, n: usize, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        for _ in 0..300 {
            let list = self.sim_get(base, log).await;
            let found: Vec<Value> = list
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| keep(r))
                .cloned()
                .collect();
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the provider never got {n} such calls at {log}");
    }
}

/// What the receiver recorded: signature header and raw body, and the parsed body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;
type ReceiverState = (Received, std::sync::Arc<std::sync::atomic::AtomicU16>);

/// Stands in for a business's integration endpoint: records the signed webhooks we send and
/// answers with the status it is told to.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub got: Received,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        use axum::extract::State;
        use axum::http::HeaderMap;
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200));
        let state = (got.clone(), status.clone());
        let app = axum::Router::new()
            .route(
                "/inbound",
                axum::routing::post(
                    |State((got, status)): State<ReceiverState>,
                     headers: HeaderMap,
                     body: axum::body::Bytes| async move {
                        let signature = headers
                            .get(sb_channels::signing::HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let n = {
                            let mut g = got.lock().expect("lock");
                            g.push((format!("{signature}\n{}", String::from_utf8_lossy(&body)), json));
                            g.len()
                        };
                        let code = status.load(std::sync::atomic::Ordering::SeqCst);
                        let code = axum::http::StatusCode::from_u16(code).expect("status");
                        let reply = if code.is_success() {
                            serde_json::json!({"id": format!("prov-{n}")}).to_string()
                        } else {
                            "unknown recipient".to_owned()
                        };
                        (code, reply)
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/inbound"),
            got,
            status,
        }
    }

    pub fn received(&self) -> Vec<(String, Value)> {
        self.got.lock().expect("lock").clone()
    }
}

/// Reads server-sent events from a streaming response.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// The agents' stream, as the demo admin.
    pub async fn open(s: &TestServer, last_event_id: Option<&str>) -> EventStream {
        Self::open_url(
            s,
            &format!("{}/api/v1/events", s.base),
            Some(&s.admin_token),
            last_event_id,
        )
        .await
    }

    pub async fn open_url(s: &TestServer, url: &str, bearer: Option<&str>, last_event_id: Option<&str>) -> EventStream {
        let mut req = s.client.get(url);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let response = req.send().await.expect("events");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with("text/event-stream")
        );
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event that has an id, as (id, kind, data), within a few seconds.
    pub async fn next(&mut self) -> (i64, String, Value) {
        loop {
            if let (Some(id), kind, data) = self.next_frame().await {
                return (id, kind, data);
            }
        }
    }

    /// The next event, with its id if it has one (ephemeral events have none).
    pub async fn next_frame(&mut self) -> (Option<i64>, String, Value) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::new(), String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return (id, kind, serde_json::from_str(&data).expect("event data is JSON"));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event in time");
            let chunk = chunk.expect("stream readable").expect("stream open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A schema of its own on the test PostgreSQL server (`SWITCHBOARD_TEST_PG_URL`), or `None`
/// when the variable is not set: the admin connection, the schema's name and a URL whose
/// `search_path` is that schema. Drop it with [`drop_pg_schema`].
pub async fn pg_schema() -> Option<(sb_sql::Db, String, String)> {
    let url = std::env::var("SWITCHBOARD_TEST_PG_URL").ok()?;
    let admin = sb_sql::Db::new(std::sync::Arc::new(
        sb_sql::postgres::PgExecutor::connect(&sb_sql::postgres::PgOptions::new(url.clone()))
            .await
            .expect("PostgreSQL reachable"),
    ));
    let schema = format!("sb_e2e_{}", sb_core::new_id().replace('-', ""));
    let ddl = format!("CREATE SCHEMA {schema}");
    admin.write(move |c| c.execute_script(&ddl)).await.expect("schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    Some((admin, schema, schema_url))
}

pub async fn drop_pg_schema(admin: &sb_sql::Db, schema: &str) {
    let ddl = format!("DROP SCHEMA {schema} CASCADE");
    let _ = admin.write(move |c| c.execute_script(&ddl)).await;
}
