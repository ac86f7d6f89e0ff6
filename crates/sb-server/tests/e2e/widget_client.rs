//! A headless website-chat widget (channels.md §10): starts a visitor session, calls the
//! widget API with its token, and reads the visitor's live feed over a real WebSocket.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::harness::TestServer;

pub struct Widget<'a> {
    pub server: &'a TestServer,
    pub token: String,
    pub visitor_id: String,
    pub settings: Value,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct WidgetSocket {
    socket: Socket,
    /// The highest `seq` seen, to resume from.
    pub last_seq: i64,
}

/// The demo workspace's website widget.
pub fn demo_website_token(s: &TestServer) -> String {
    let demo = s.server.demo.as_ref().expect("demo");
    demo.channels["widget"]["website_token"]
        .as_str()
        .expect("demo widget")
        .to_owned()
}

impl<'a> Widget<'a> {
    pub async fn start(server: &'a TestServer, website_token: &str) -> Widget<'a> {
        let (status, body) = server
            .call(
                Method::POST,
                "/widget/v1/sessions",
                None,
                Some(json!({ "website_token": website_token })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Widget {
            server,
            token: body["token"].as_str().expect("token").to_owned(),
            visitor_id: body["visitor_id"].as_str().expect("visitor id").to_owned(),
            settings: body["settings"].clone(),
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.server.call(Method::GET, path, Some(&self.token), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.server
            .call(Method::POST, path, Some(&self.token), Some(body))
            .await
    }

    /// Sends a message; asserts it was stored (now or before) and returns it.
    pub async fn say(&self, echo_id: &str, text: &str) -> Value {
        let (status, body) = self
            .post("/widget/v1/messages", json!({ "echo_id": echo_id, "text": text }))
            .await;
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{status} {body}"
        );
        body["message"].clone()
    }

    pub async fn conversation(&self) -> Value {
        let (status, body) = self.get("/widget/v1/conversation").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn connect(&self, after: Option<i64>) -> WidgetSocket {
        let mut url = format!(
            "{}/widget/v1/socket?token={}",
            self.server.base.replace("http://", "ws://"),
            self.token
        );
        if let Some(after) = after {
            url.push_str(&format!("&after={after}"));
        }
        let (socket, response) = tokio_tungstenite::connect_async(url).await.expect("socket opens");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        WidgetSocket {
            socket,
            last_seq: after.unwrap_or(0),
        }
    }
}

impl WidgetSocket {
    /// The next frame within a few seconds (pings are skipped).
    pub async fn next(&mut self) -> Value {
        self.try_next(Duration::from_secs(10)).await.expect("a frame in time")
    }

    pub async fn try_next(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next()).await.ok()?;
            match message.expect("socket open").expect("socket readable") {
                WsMessage::Text(text) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("frames are JSON");
                    if let Some(seq) = frame["seq"].as_i64() {
                        assert!(seq > self.last_seq, "frames arrive in order and never repeat: {frame}");
                        self.last_seq = seq;
                    }
                    return Some(frame);
                }
                WsMessage::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// The next frame of `kind`, skipping others (presence, typing…).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        for _ in 0..50 {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
        panic!("no `{kind}` frame");
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(WsMessage::Text(frame.to_string().into()))
            .await
            .expect("send a frame");
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
