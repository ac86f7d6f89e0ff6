//! A tiny webhook receiver standing in for our server in the simulator tests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Hit {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub answered: u16,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("utf-8")
    }

    pub fn signature(&self) -> Option<String> {
        self.headers
            .get("x-hub-signature-256")
            .map(|v| v.to_str().unwrap().to_string())
    }
}

#[derive(Default)]
struct Inner {
    hits: Vec<Hit>,
    script: VecDeque<u16>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

/// Verify token the receiver accepts in the GET handshake.
pub const VERIFY_TOKEN: &str = "sw-verify";

impl Receiver {
    /// Answers 200 unless scripted otherwise; GET answers Meta's handshake.
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/hook", post(on_post).get(on_get))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            inner,
        }
    }

    /// The next POSTs are answered with these statuses, in order (then 200).
    pub fn script(&self, statuses: &[u16]) {
        self.inner.lock().unwrap().script.extend(statuses.iter().copied());
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inner.lock().unwrap().hits.clone()
    }

    /// Waits (≤ 3 s) until at least `n` POSTs arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Hit> {
        for _ in 0..600 {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("expected {n} webhook POSTs, got {}", self.hits().len());
    }

    /// Waits until a POST whose body matches `pred` arrived and returns it.
    pub async fn wait_until(&self, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            if let Some(v) = self.hits().iter().map(Hit::json).find(|v| pred(v)) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "no matching webhook; got {:#?}",
            self.hits().iter().map(Hit::json).collect::<Vec<_>>()
        );
    }
}

async fn on_post(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut g = inner.lock().unwrap();
    let status = g.script.pop_front().unwrap_or(200);
    g.hits.push(Hit {
        headers,
        body,
        answered: status,
    });
    StatusCode::from_u16(status).unwrap().into_response()
}

async fn on_get(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let ok = q.get("hub.mode").map(String::as_str) == Some("subscribe")
        && q.get("hub.verify_token").map(String::as_str) == Some(VERIFY_TOKEN);
    match (ok, q.get("hub.challenge")) {
        (true, Some(c)) => (StatusCode::OK, c.clone()).into_response(),
        _ => (StatusCode::FORBIDDEN, "Forbidden").into_response(),
    }
}

/// POST JSON and return (status, body).
pub async fn post_json(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let resp = client.post(url).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json::<Value>().await.unwrap()
}
