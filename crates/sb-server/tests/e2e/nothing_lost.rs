//! `nothing_lost`: 10,000 messages posted over the API channel while the server is killed
//! with SIGKILL and restarted. Clients retry like a provider until they get a 2xx; every
//! acknowledged message must then be present exactly once, and processed.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const MESSAGES: usize = 10_000;
const CLIENTS: usize = 32;
const KILL_AFTER: usize = 3_000;

fn spawn(data: &std::path::Path, port: u16) -> Child {
    spawn_with(data, port, &[])
}

/// The `switchboard` binary on SQLite in `data`, listening on `port`, with `extra` flags.
pub(crate) fn spawn_with(data: &std::path::Path, port: u16, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().expect("path"),
        ])
        .args(extra)
        .env_remove("SWITCHBOARD_DATABASE_URL")
        .env_remove("SWITCHBOARD_NATS_URL")
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn switchboard")
}

pub(crate) async fn wait_ready(client: &reqwest::Client, base: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let first = Arc::new(Mutex::new(Some(spawn(&data, port))));
    wait_ready(&client, &base).await;
    let creds: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo-credentials.json")).expect("credentials"))
            .expect("json");
    let token = creds["api_token"].as_str().expect("token").to_owned();
    let account: Value = client
        .post(format!("{base}/api/v1/channel-accounts"))
        .bearer_auth(&token)
        .json(&json!({"channel": "api", "name": "load", "settings": {"webhook_url": "http://127.0.0.1:9/unused"}}))
        .send()
        .await
        .expect("create account")
        .json()
        .await
        .expect("json");
    let hook = account["webhook_url"].as_str().expect("hook").to_owned();
    let secret = account["secrets"]["secret"].as_str().expect("secret").to_owned();

    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (client, hook, secret, next, acked, acked_count) = (
            client.clone(),
            hook.clone(),
            secret.clone(),
            next.clone(),
            acked.clone(),
            acked_count.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= MESSAGES {
                    return;
                }
                let id = format!("n-{n}");
                let body = serde_json::to_vec(&json!({
                    "type": "message", "id": id, "from": {"id": format!("c-{}", n % 500)}, "text": format!("message {n}")
                }))
                .expect("json");
                // Retry like a provider until acknowledged (bounded).
                loop {
                    assert!(Instant::now() < deadline, "message {id} was never acknowledged");
                    let signature = sb_channels::signing::sign(&secret, now_secs(), &body);
                    let sent = client
                        .post(&hook)
                        .header("content-type", "application/json")
                        .header(sb_channels::signing::HEADER, signature)
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r) if r.status().as_u16() == 409 => break, // the same signed bytes were stored: acknowledged before
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                acked.lock().expect("lock").insert(id);
                acked_count.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // Kill the server mid-stream, then start it again on the same port.
    while acked_count.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(Instant::now() < deadline, "too slow before the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut victim = first.lock().expect("lock").take().expect("first server");
    victim.kill().expect("SIGKILL");
    let _ = victim.wait();
    let killed_at = acked_count.load(Ordering::SeqCst);
    let mut second = spawn(&data, port);
    for c in clients {
        c.await.expect("client task");
    }
    let acked: HashSet<String> = acked.lock().expect("lock").clone();
    assert_eq!(acked.len(), MESSAGES, "every message was acknowledged in the end");

    // Every acknowledged message is stored exactly once and processed.
    let db_path = data.join("switchboard.sqlite");
    let exec = sb_sql::sqlite::SqliteExecutor::open(&sb_sql::sqlite::SqliteOptions::new(&db_path)).expect("open");
    let db = sb_sql::Db::new(Arc::new(exec));
    let scalar = |sql: &'static str| {
        let db = db.clone();
        async move {
            db.read(move |c| c.query_one(&sb_sql::Stmt::new(sql))?.get::<i64>("n"))
                .await
                .expect(sql)
        }
    };
    let start = Instant::now();
    while scalar("SELECT COUNT(*) AS n FROM inbound_requests WHERE processed_at IS NULL").await > 0 {
        assert!(start.elapsed() < Duration::from_secs(120), "processing did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        scalar("SELECT COUNT(*) AS n FROM inbound_requests").await,
        MESSAGES as i64
    );
    assert_eq!(
        scalar("SELECT COUNT(*) AS n FROM messages WHERE direction = 'inbound'").await,
        MESSAGES as i64
    );
    let stored: HashSet<String> = db
        .read(|c| {
            c.query(&sb_sql::Stmt::new(
                "SELECT provider_message_id FROM messages WHERE direction = 'inbound'",
            ))?
            .iter()
            .map(|r| r.get::<String>("provider_message_id"))
            .collect::<Result<HashSet<_>, _>>()
        })
        .await
        .expect("ids");
    assert_eq!(stored, acked, "exactly the acknowledged messages, each once");
    assert_eq!(scalar("SELECT COUNT(*) AS n FROM conversations").await, 500);
    db.close().await;
    let _ = Command::new("kill").arg(second.id().to_string()).status();
    let _ = second.wait();
    println!("nothing_lost: killed after {killed_at} acknowledgements; {MESSAGES} stored once and processed");
}
