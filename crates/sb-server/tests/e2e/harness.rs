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
        data_dir: dir.to_path_buf(),
        database: DatabaseConfig::Sqlite(dir.join("switchboard.sqlite")),
        nats_url: None,
        public_url: None,
        demo: true,
        http: sb_http::HttpConfig::default(),
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config(dir.path());
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = sb_server::start(config, listener, Time::System)
            .await
            .expect("server starts");
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
        let resp = self
            .client
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), StatusCode::OK, "login as {email}");
        let cookie = session_cookie(&resp).expect("session cookie");
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
