//! The web app (`sb-web`) in a real headless Chromium, driven over WebDriver (fantoccini),
//! against a real server with the demo's simulators; plus its access rules over plain HTTP.
//! Without `chromedriver` on the PATH the browser tests print that they were skipped and pass
//! (CI installs it). Screenshots go to `target/screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Receiver, TestServer, session_cookie};

/// A valid 1×1 PNG.
const ONE_PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0x7a, 0x5e, 0xab, 0x3f, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// One browser at a time: the machine has two cores and each test starts its own server too.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Browser {
    client: Client,
    session: Option<String>,
    driver: Driver,
}

/// chromedriver, stopped when dropped (also when a test panics before the session exists).
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Ends the session (Chromium quits) at the end of a test that got there.
    async fn close(mut self) {
        self.session = None;
        self.client.clone().close().await.expect("close the session");
    }
}

impl Drop for Browser {
    /// A test that panics never reaches `close()`: end the session here (chromedriver then
    /// quits Chromium), with a plain blocking request since `drop` cannot await.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let Some(session) = &self.session else { return };
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.driver.port)) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.driver.port
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            let _ = stream.read_to_end(&mut Vec::new());
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file())
}

/// Starts chromedriver on a free port and a headless Chromium session; `None` (test skipped)
/// when chromedriver is not installed.
async fn browser(test: &str) -> Option<Browser> {
    let Some(chromedriver) = on_path("chromedriver") else {
        eprintln!("{test}: skipped, chromedriver is not installed (apt-get install chromium chromium-driver)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let driver = Driver {
        child: Command::new(chromedriver)
            .arg(format!("--port={port}"))
            // A zone far from UTC (and without summer time), so shown times prove they are local.
            .env("TZ", "Asia/Kolkata")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
        port,
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut options = json!({"args": [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--window-size=1366,900", "--lang=en-US"
    ]});
    // Debian's /usr/bin/chromium is a wrapper script; give chromedriver the real binary.
    if std::path::Path::new("/usr/lib/chromium/chromium").is_file() {
        options["binary"] = json!("/usr/lib/chromium/chromium");
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    // fantoccini's rustls needs a process-wide provider; ring is the one the workspace uses.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let client = ClientBuilder::rustls()
        .expect("rustls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    let session = client.session_id().await.expect("session id");
    Some(Browser {
        client,
        session,
        driver,
    })
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn save_screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(name), png).expect("write screenshot");
}

async fn save_element_screenshot(c: &Client, css: &str, name: &str) {
    let png = c
        .find(Locator::Css(css))
        .await
        .expect("element")
        .screenshot()
        .await
        .expect("screenshot");
    std::fs::write(screenshot_dir().join(name), png).expect("write screenshot");
}

/// The text of the first element matching `css`, once it contains `needle` (bounded wait).
async fn until_text(c: &Client, css: &str, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..150 {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(text) = e.text().await
        {
            // Compared as the user reads it, whatever CSS does to the case.
            if text.to_lowercase().contains(&needle.to_lowercase()) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Leave evidence: what the page looked like when the wait gave up.
    let _ = std::fs::write(
        screenshot_dir().join("gave-up.png"),
        c.screenshot().await.unwrap_or_default(),
    );
    let html = js(c, "return document.body.outerHTML;").await;
    let _ = std::fs::write(screenshot_dir().join("gave-up.html"), html.as_str().unwrap_or_default());
    panic!("{css} never showed {needle:?}; last text: {last:?}; the page is in target/screenshots/gave-up.html");
}

/// Runs a find-and-act step again when the element was replaced under it (a live refresh).
async fn retry_stale<F, Fut>(step: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), fantoccini::error::CmdError>>,
{
    let mut last = None;
    for _ in 0..5 {
        match step().await {
            Ok(()) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("step kept failing: {last:?}");
}

/// The conversation's row in the list shows no unread badge (bounded wait).
async fn no_badge(c: &Client, conversation: &str) {
    let badge = format!("#conv-{conversation} .badge");
    for _ in 0..50 {
        if c.find(Locator::Css(&badge)).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = js(c, "return document.getElementById('conversation-list').outerHTML;").await;
    panic!("an unread badge stayed on the open conversation: {list}");
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("script runs")
}

async fn sign_in(c: &Client, s: &TestServer, email: &str, password: &str) {
    c.goto(&format!("{}/app/login", s.base)).await.expect("login page");
    c.find(Locator::Css("#email"))
        .await
        .expect("email")
        .send_keys(email)
        .await
        .expect("type");
    c.find(Locator::Css("#password"))
        .await
        .expect("password")
        .send_keys(password)
        .await
        .expect("type");
    c.find(Locator::Css("button[type=submit]"))
        .await
        .expect("button")
        .click()
        .await
        .expect("submit");
}

/// Marks the page: a reload or navigation would clear the mark.
async fn mark_page(c: &Client) {
    js(c, "window.__sameDocument = true; return true;").await;
}

async fn same_page(c: &Client) -> bool {
    js(c, "return window.__sameDocument === true;").await == json!(true)
}

/// Waits until the htmx SSE extension has its stream open, so pushes are not missed.
async fn until_live(c: &Client) {
    for _ in 0..100 {
        let open = js(
            c,
            "var d = document.body['htmx-internal-data']; \
             return !!(d && d.sseEventSource && d.sseEventSource.readyState === 1);",
        )
        .await;
        if open == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page's event stream never opened");
}

fn demo_sim(s: &TestServer, channel: &str) -> String {
    let demo = s.server.demo.as_ref().expect("demo");
    demo.channels[channel]["simulator_url"]
        .as_str()
        .expect("simulator url")
        .to_owned()
}

async fn whatsapp_says(s: &TestServer, sim: &str, from: &str, name: &str, text: &str) {
    let answer = s
        .sim_post(
            sim,
            "/_sim/whatsapp/customer-message",
            json!({"from": from, "name": name, "text": text}),
        )
        .await;
    assert_eq!(answer["delivered_status"].as_u64(), Some(200), "{answer}");
}

/// The texts our server sent to the WhatsApp simulator.
async fn whatsapp_sent_texts(s: &TestServer, sim: &str) -> Vec<String> {
    s.sim_get(sim, "/_sim/whatsapp/sent")
        .await
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/messages")))
        .filter_map(|r| r["body"]["text"]["body"].as_str().map(str::to_owned))
        .collect()
}

async fn only_conversation(s: &TestServer) -> (String, String) {
    let list = s
        .until("/api/v1/conversations?status=open", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let c = &list["items"][0];
    (
        c["id"].as_str().expect("id").to_owned(),
        c["customer_id"].as_str().expect("customer").to_owned(),
    )
}

async fn location_id(s: &TestServer, code: &str) -> String {
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

async fn cart_with(s: &TestServer, customer: &str, lines: &[(&str, i64)]) -> String {
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

/// A pickup order at Madrid Centro; returns (id, number).
async fn pickup_order(s: &TestServer, customer: &str, sku: &str, key: &str) -> (String, String) {
    let cart = cart_with(s, customer, &[(sku, 1)]).await;
    let madrid = location_id(s, "MAD-CENTRO").await;
    let (status, placed) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": cart, "idempotency_key": key, "fulfillment": "pickup", "location_id": madrid}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    (
        placed["order"]["id"].as_str().expect("id").to_owned(),
        placed["order"]["number"].as_str().expect("number").to_owned(),
    )
}

/// An agent signs in, a WhatsApp message shows up live in the list and then in the open
/// thread (no reload), the customer panel shows the customer's identities, pickup code and
/// cart, and the agent's reply reaches the WhatsApp customer through the simulator and its
/// delivery status updates live.
#[tokio::test]
async fn browser_agent_signs_in_sees_whatsapp_live_and_replies() {
    let _one = ONE_BROWSER.lock().await;
    let Some(b) = browser("browser_agent_signs_in_sees_whatsapp_live_and_replies").await else {
        return;
    };
    let c = &b.client;
    let s = TestServer::start().await;
    let sim = demo_sim(&s, "whatsapp");
    let (email, password) = s.demo_user("agent");

    // A wrong password is refused on the page; the right one lands in the inbox.
    sign_in(c, &s, &email, "not the password").await;
    until_text(c, "#login-error", "wrong e-mail or password").await;
    sign_in(c, &s, &email, &password).await;
    until_text(c, "#list-title", "Conversations").await;
    assert!(c.current_url().await.expect("url").path().ends_with("/app/inbox"));
    until_text(c, ".top .user", "Alex Agent").await;
    until_live(c).await;
    mark_page(c).await;

    whatsapp_says(
        &s,
        &sim,
        "34600111222",
        "Ana García",
        "Hola, is the trail jacket back in stock?",
    )
    .await;
    let row = until_text(c, "#conversation-list", "Hola, is the trail jacket back in stock?").await;
    assert!(row.contains("Ana García") && row.contains("WhatsApp"), "{row}");
    until_text(c, "#conversation-list .badge", "1").await;
    assert!(same_page(c).await, "the list updated without a reload");

    // Commerce context for the panel: a ready pickup order and a cart.
    let (conversation, customer) = only_conversation(&s).await;
    let (order, number) = pickup_order(&s, &customer, "JKT-BLU-M", "web-order-1").await;
    let (status, ready) = s
        .post(&format!("/api/v1/orders/{order}/ready"), &s.admin_token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let code = ready["order"]["pickup_code"].as_str().expect("code").to_owned();
    cart_with(&s, &customer, &[("BOOT-42", 1)]).await;

    // Live events re-render the list: a row found mid-swap is stale, so find it again.
    let row = format!("#conv-{conversation} a");
    retry_stale(|| async { c.find(Locator::Css(&row)).await?.click().await }).await;
    until_text(c, "#thread", "Hola, is the trail jacket back in stock?").await;
    // Times show in the viewer's zone (UTC+05:30 here), not the server's UTC.
    let (iso, shown) = {
        let pair = js(
            c,
            "var t = document.querySelector('#thread time'); return [t.getAttribute('datetime'), t.textContent];",
        )
        .await;
        (
            pair[0].as_str().unwrap_or_default().to_owned(),
            pair[1].as_str().unwrap_or_default().to_owned(),
        )
    };
    let utc_minutes = iso[11..13].parse::<i64>().expect("hour") * 60 + iso[14..16].parse::<i64>().expect("minute");
    let local = (utc_minutes + 330) % (24 * 60);
    assert!(
        shown.ends_with(&format!("{:02}:{:02}", local / 60, local % 60)),
        "{iso} shown as {shown}"
    );
    let panel = until_text(c, "#customer-panel", &code).await;
    assert!(panel.contains(&number) && panel.contains("Madrid Centro"), "{panel}");
    assert!(panel.contains("34600111222"), "the WhatsApp identity: {panel}");
    let flat = panel.replace('\n', " ");
    assert!(flat.contains("1 × EU 42 BOOT-42 129.99 EUR"), "the cart: {panel}");
    assert!(panel.contains("1 × Blue M (JKT-BLU-M)"), "the order's lines: {panel}");
    // Opening it marks it read: the badge goes, live.
    s.until(&format!("/api/v1/conversations/{conversation}"), |b| {
        b["unread_count"].as_i64() == Some(0)
    })
    .await;
    no_badge(c, &conversation).await;
    let rule = until_text(c, "#reply-rule", "WhatsApp").await;
    assert!(rule.starts_with("A reply can go out now on WhatsApp"), "{rule}");
    until_live(c).await;
    mark_page(c).await;

    // A second message lands in the open thread live.
    // Keyboard focus on the list survives its live refresh.
    js(
        c,
        &format!("document.querySelector('#conv-{conversation} a').focus(); return true;"),
    )
    .await;
    whatsapp_says(&s, &sim, "34600111222", "Ana García", "Size M please").await;
    until_text(c, "#thread", "Size M please").await;
    until_text(c, "#conversation-list", "Size M please").await;
    // Refreshes may still be settling (the read mark refreshes the list once more).
    let row = json!(format!("conv-{conversation}"));
    let mut focused = Value::Null;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        focused = js(
            c,
            "var a = document.activeElement; return a && a.closest('li') ? a.closest('li').id : null;",
        )
        .await;
    }
    assert_eq!(focused, row, "focus kept on the same row");
    assert!(same_page(c).await, "the thread updated without a reload");
    // Read while open: no badge comes back for what the agent is looking at.
    s.until(&format!("/api/v1/conversations/{conversation}"), |b| {
        b["unread_count"].as_i64() == Some(0)
    })
    .await;
    no_badge(c, &conversation).await;

    // The reply goes out on WhatsApp (the channel she last used) and is delivered.
    c.find(Locator::Css("#composer-text"))
        .await
        .expect("composer")
        .send_keys("Yes! Size M is waiting for you in Madrid.")
        .await
        .expect("type");
    c.find(Locator::Css("#send"))
        .await
        .expect("send")
        .click()
        .await
        .expect("click");
    until_text(
        c,
        "#thread .msg-outbound:last-child",
        "Yes! Size M is waiting for you in Madrid.",
    )
    .await;
    for _ in 0..100 {
        if whatsapp_sent_texts(&s, &sim)
            .await
            .iter()
            .any(|t| t == "Yes! Size M is waiting for you in Madrid.")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        whatsapp_sent_texts(&s, &sim)
            .await
            .contains(&"Yes! Size M is waiting for you in Madrid.".to_owned()),
        "the simulator received the reply"
    );
    until_text(c, "#thread .msg-outbound:last-child .delivery", "delivered").await;
    let text = js(c, "return document.getElementById('composer-text').value;").await;
    assert_eq!(text, json!(""), "the composer is cleared after sending");
    assert!(same_page(c).await);
    // The next send carries a key of its own: a second message, not the first one again.
    let first_key = js(c, "return document.getElementById('composer-key').value;").await;
    c.find(Locator::Css("#composer-text"))
        .await
        .expect("composer")
        .send_keys("L is there too.")
        .await
        .expect("type");
    c.find(Locator::Css("#send"))
        .await
        .expect("send")
        .click()
        .await
        .expect("click");
    until_text(c, "#thread .msg-outbound:last-child", "L is there too.").await;
    let second_key = js(c, "return document.getElementById('composer-key').value;").await;
    assert_ne!(first_key, second_key, "each send has its own idempotency key");

    // Picking SMS shows its rule and, while typing, the segments the carrier will bill.
    c.find(Locator::XPath(
        "//select[@id='channel-picker']/option[starts-with(normalize-space(.), 'SMS')]",
    ))
    .await
    .expect("an SMS option")
    .click()
    .await
    .expect("pick SMS");
    until_text(c, "#reply-rule", "SMS").await;
    c.find(Locator::Css("#composer-text"))
        .await
        .expect("composer")
        .send_keys(&"Your boots are ready 🥾 ".repeat(3))
        .await
        .expect("type");
    let measure = until_text(c, "#measure", "SMS segments").await;
    assert!(
        measure.contains("2 SMS segments") && measure.contains("Unicode"),
        "{measure}"
    );

    let (_, detail) = s
        .get(&format!("/api/v1/conversations/{conversation}"), &s.admin_token)
        .await;
    assert_eq!(detail["unread_count"], 0, "{detail}");
    no_badge(c, &conversation).await;
    save_screenshot(c, "inbox.png").await;
    save_element_screenshot(c, "#customer-panel", "customer-panel.png").await;
    c.set_window_size(390, 844).await.expect("phone size");
    c.refresh().await.expect("reload");
    until_text(c, "#thread", "Size M please").await;
    save_screenshot(c, "inbox-phone.png").await;
    let too_wide = js(
        c,
        "return Array.from(document.querySelectorAll('body *')) \
           .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1) \
           .map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5);",
    )
    .await;
    assert_eq!(too_wide, json!([]), "no sideways scrolling on a phone");

    b.close().await;
    s.server.shutdown().await;
}

/// Text typed in the composer (and the focus) survive live updates of the thread, the list,
/// the header and the customer panel.
#[tokio::test]
async fn browser_composer_keeps_typed_text_and_focus_through_live_updates() {
    let _one = ONE_BROWSER.lock().await;
    let Some(b) = browser("browser_composer_keeps_typed_text_and_focus_through_live_updates").await else {
        return;
    };
    let c = &b.client;
    let s = TestServer::start().await;
    let sim = demo_sim(&s, "whatsapp");
    whatsapp_says(&s, &sim, "34600999888", "Bruno", "First question").await;
    let (conversation, _) = only_conversation(&s).await;
    let (email, password) = s.demo_user("agent");
    sign_in(c, &s, &email, &password).await;
    until_text(c, "#list-title", "Conversations").await;
    c.goto(&format!("{}/app/conversations/{conversation}", s.base))
        .await
        .expect("open");
    until_text(c, "#thread", "First question").await;
    until_live(c).await;
    mark_page(c).await;

    let composer = c.find(Locator::Css("#composer-text")).await.expect("composer");
    composer.click().await.expect("focus");
    composer
        .send_keys("Half-written answer about sizes")
        .await
        .expect("type");
    // Live updates: a customer message (thread, list, panel) and a status change (header).
    whatsapp_says(&s, &sim, "34600999888", "Bruno", "Second question, while you type").await;
    until_text(c, "#thread", "Second question, while you type").await;
    until_text(c, "#conversation-list", "Second question, while you type").await;
    let (status, _) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/status"),
            &s.admin_token,
            json!({"status": "pending"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    until_text(c, "#conversation-status", "pending").await;

    let state = js(
        c,
        "return [document.getElementById('composer-text').value, document.activeElement && document.activeElement.id];",
    )
    .await;
    assert_eq!(
        state,
        json!(["Half-written answer about sizes", "composer-text"]),
        "text and focus kept"
    );
    assert!(same_page(c).await);
    // And it still sends, from the keyboard (Ctrl+Enter).
    let ctrl_enter = format!("{}{}", Key::Control, Key::Enter);
    composer.send_keys(" — M and L.").await.expect("type");
    composer.send_keys(&ctrl_enter).await.expect("ctrl+enter");
    until_text(
        c,
        "#thread .msg-outbound:last-child",
        "Half-written answer about sizes — M and L.",
    )
    .await;

    // Label (typed, then Enter), assign to me, snooze: each changes the conversation and the header.
    let label = c.find(Locator::Css("#new-label")).await.expect("label input");
    label.send_keys("vip").await.expect("type");
    label.send_keys(&Key::Enter.to_string()).await.expect("enter");
    until_text(c, "#conversation-header .label-list", "vip").await;
    let (me, _) = s.demo_user("agent");
    let (_, users) = s.get("/api/v1/users", &s.admin_token).await;
    let my_id = users["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["email"] == me.as_str())
        .and_then(|u| u["id"].as_str())
        .expect("me")
        .to_owned();
    // A live refresh may replace the header between finding and using an element: retry then.
    retry_stale(|| async {
        let select = c.find(Locator::Css("#assignee")).await?;
        select.select_by_value(&my_id).await?;
        c.find(Locator::XPath("//form[.//select[@id='assignee']]//button"))
            .await?
            .click()
            .await
    })
    .await;
    until_text(c, "#conversation-header .assignee", "Assigned to Alex Agent").await;
    retry_stale(|| async {
        c.find(Locator::XPath("//button[@name='snooze_hours' and @value='4']"))
            .await?
            .click()
            .await
    })
    .await;
    until_text(c, "#conversation-status", "snoozed until").await;
    let (_, detail) = s
        .get(&format!("/api/v1/conversations/{conversation}"), &s.admin_token)
        .await;
    assert_eq!(
        (
            detail["status"].as_str(),
            detail["assignee_id"].as_str(),
            detail["labels"].clone()
        ),
        (Some("snoozed"), Some(my_id.as_str()), json!(["vip"])),
        "{detail}"
    );

    // A pre-approved WhatsApp template with its parameters (what works after the 24-hour window).
    c.find(Locator::Css("#template-area summary"))
        .await
        .expect("templates")
        .click()
        .await
        .expect("open");
    c.find(Locator::Css("#template-picker"))
        .await
        .expect("template picker")
        .select_by_value("order_update|en_US")
        .await
        .expect("choose");
    until_text(c, "#template-area .template-body", "your order").await;
    c.find(Locator::Css("#template-param-1"))
        .await
        .expect("parameter 1")
        .send_keys("Bruno")
        .await
        .expect("type");
    c.find(Locator::Css("#template-param-2"))
        .await
        .expect("parameter 2")
        .send_keys("1042")
        .await
        .expect("type");
    save_screenshot(c, "composer-template.png").await;
    c.find(Locator::Css("#send"))
        .await
        .expect("send")
        .click()
        .await
        .expect("click");
    until_text(
        c,
        "#thread .msg-outbound:last-child",
        "Hi Bruno, your order 1042 is on its way.",
    )
    .await;
    let mut template = Value::Null;
    for _ in 0..100 {
        let sent = s.sim_get(&sim, "/_sim/whatsapp/sent").await;
        if let Some(t) = sent
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["body"]["type"] == "template")
        {
            template = t["body"]["template"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(template["name"], "order_update", "{template}");
    let params: Vec<&str> = template["components"][0]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert_eq!(params, ["Bruno", "1042"], "{template}");

    // A file: uploaded when picked, sent with the reply, shown in the thread, delivered as an image.
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("label.png");
    std::fs::write(&png, ONE_PIXEL_PNG).expect("png");
    c.find(Locator::Css("#attach"))
        .await
        .expect("file input")
        .send_keys(png.to_str().expect("path"))
        .await
        .expect("pick file");
    until_text(c, "#attachments", "label.png").await;
    c.find(Locator::Css("#composer-text"))
        .await
        .expect("composer")
        .send_keys("Here is your return label.")
        .await
        .expect("type");
    c.find(Locator::Css("#send"))
        .await
        .expect("send")
        .click()
        .await
        .expect("click");
    let last = until_text(c, "#thread .msg-outbound:last-child", "Here is your return label.").await;
    assert!(last.contains("label.png"), "{last}");
    assert_eq!(
        js(c, "return document.getElementById('attachments').children.length;").await,
        json!(0),
        "the composer lets go of the sent file"
    );
    let mut image = Value::Null;
    for _ in 0..100 {
        let sent = s.sim_get(&sim, "/_sim/whatsapp/sent").await;
        if let Some(r) = sent
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["body"]["type"] == "image")
        {
            image = r["body"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(image["to"], "34600999888", "{image}");
    b.close().await;
    s.server.shutdown().await;
}

/// A send the provider refuses shows its reason in the thread; after the provider recovers,
/// Retry sends it and the failure goes away.
#[tokio::test]
async fn browser_failed_send_shows_reason_and_retry_delivers() {
    let _one = ONE_BROWSER.lock().await;
    let Some(b) = browser("browser_failed_send_shows_reason_and_retry_delivers").await else {
        return;
    };
    let c = &b.client;
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let hello = json!({"type": "message", "id": "m-1", "from": {"id": "u-cleo", "name": "Cleo"}, "text": "Where is my parcel?"});
    assert_eq!(s.deliver(&shop, &hello).await.0, StatusCode::OK);
    let (conversation, _) = only_conversation(&s).await;
    r.status.store(400, std::sync::atomic::Ordering::SeqCst);

    let (email, password) = s.demo_user("agent");
    sign_in(c, &s, &email, &password).await;
    until_text(c, "#list-title", "Conversations").await;
    c.goto(&format!("{}/app/conversations/{conversation}", s.base))
        .await
        .expect("open");
    until_text(c, "#thread", "Where is my parcel?").await;
    until_live(c).await;
    c.find(Locator::Css("#composer-text"))
        .await
        .expect("composer")
        .send_keys("It left the warehouse this morning.")
        .await
        .expect("type");
    c.find(Locator::Css("#send"))
        .await
        .expect("send")
        .click()
        .await
        .expect("click");
    let failure = until_text(c, "#thread .msg-failed .failure", "unknown recipient").await;
    assert!(failure.contains("http_400"), "the provider's code: {failure}");
    until_text(c, "#thread .msg-failed .delivery", "failed").await;

    r.status.store(200, std::sync::atomic::Ordering::SeqCst);
    c.find(Locator::Css("#thread .msg-failed button.retry"))
        .await
        .expect("retry button")
        .click()
        .await
        .expect("retry");
    until_text(c, "#thread .msg-outbound:last-child .delivery", "sent").await;
    for _ in 0..100 {
        if c.find(Locator::Css("#thread .msg-failed")).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        c.find(Locator::Css("#thread .msg-failed")).await.is_err(),
        "the failure is gone"
    );
    let sent: Vec<String> = r
        .received()
        .iter()
        .filter_map(|(_, body)| body["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        sent,
        vec![
            "It left the warehouse this morning.",
            "It left the warehouse this morning."
        ],
        "refused once, then accepted"
    );
    b.close().await;
    s.server.shutdown().await;
}

/// A store employee signs in to the pickup queue, marks an order ready (the customer is told
/// on her channel, with the code), a wrong code is refused, and the right one hands it over.
#[tokio::test]
async fn browser_store_employee_marks_pickup_ready_and_hands_it_over() {
    let _one = ONE_BROWSER.lock().await;
    let Some(b) = browser("browser_store_employee_marks_pickup_ready_and_hands_it_over").await else {
        return;
    };
    let c = &b.client;
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let hello = json!({"type": "message", "id": "m-1", "from": {"id": "u-dora", "name": "Dora", "email": "dora@example.com"}, "text": "hi"});
    assert_eq!(s.deliver(&shop, &hello).await.0, StatusCode::OK);
    let (_, customer) = only_conversation(&s).await;
    let (order, number) = pickup_order(&s, &customer, "JKT-BLU-S", "web-pickup-1").await;
    pickup_order(&s, &customer, "BOOT-43", "web-pickup-2").await;

    let (email, password) = s.demo_user("store_staff");
    sign_in(c, &s, &email, &password).await;
    let row = until_text(c, &format!("#order-{number}"), "Dora").await;
    assert!(
        row.contains("1 × Blue S (JKT-BLU-S)") && row.contains("Madrid Centro") && row.contains("placed"),
        "{row}"
    );
    assert!(c.current_url().await.expect("url").path().ends_with("/app/store"));
    // Store staff have no inbox.
    assert!(c.find(Locator::Css("nav a[href='/app/inbox']")).await.is_err());
    save_screenshot(c, "pickup-queue.png").await;

    c.find(Locator::Css(&format!("#order-{number} button")))
        .await
        .expect("mark ready")
        .click()
        .await
        .expect("click");
    until_text(c, "#pickup-queue .notice", &format!("Order {number} is ready")).await;
    until_text(c, &format!("#order-{number}"), "ready for pickup").await;
    let mut notice = String::new();
    for _ in 0..100 {
        if let Some((_, body)) = r
            .received()
            .into_iter()
            .find(|(_, b)| b["text"].as_str().is_some_and(|t| t.contains("ready for pickup")))
        {
            notice = body["text"].as_str().unwrap_or_default().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(notice.contains(&number) && notice.contains("Madrid Centro"), "{notice}");
    let (_, detail) = s.get(&format!("/api/v1/orders/{order}"), &s.admin_token).await;
    let code = detail["order"]["pickup_code"].as_str().expect("code").to_owned();
    assert!(notice.contains(&code), "the notice carries the code: {notice}");
    save_screenshot(c, "pickup-queue-ready.png").await;

    let code_input = format!("#code-{number}");
    c.find(Locator::Css(&code_input))
        .await
        .expect("code input")
        .send_keys("999999x")
        .await
        .expect("type");
    c.find(Locator::Css(&format!("#order-{number} button")))
        .await
        .expect("hand over")
        .click()
        .await
        .expect("click");
    until_text(c, "#notice", "invalid_order").await;
    let (_, still) = s.get(&format!("/api/v1/orders/{order}"), &s.admin_token).await;
    assert_eq!(still["order"]["status"], "ready_for_pickup");

    let input = c.find(Locator::Css(&code_input)).await.expect("code input");
    input.clear().await.expect("clear");
    input.send_keys(&code).await.expect("type");
    c.find(Locator::Css(&format!("#order-{number} button")))
        .await
        .expect("hand over")
        .click()
        .await
        .expect("click");
    until_text(c, "#pickup-queue .notice", &format!("Order {number} handed over")).await;
    assert!(
        c.find(Locator::Css(&format!("#order-{number}"))).await.is_err(),
        "gone from the queue"
    );
    let (_, done) = s.get(&format!("/api/v1/orders/{order}"), &s.admin_token).await;
    assert_eq!(done["order"]["status"], "picked_up");

    // Return anywhere: the jacket comes back at Barcelona, sellable there at once.
    let available_in_barcelona = || async {
        let (_, a) = s
            .get("/api/v1/inventory/availability?sku=JKT-BLU-S", &s.admin_token)
            .await;
        a["locations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["code"] == "BCN-GRACIA")
            .and_then(|l| l["available"].as_i64())
            .expect("Barcelona")
    };
    let before = available_in_barcelona().await;
    c.goto(&format!("{}/app/lookup?q={number}", s.base))
        .await
        .expect("lookup");
    until_text(c, "#return-form", "Take a return").await;
    c.find(Locator::XPath(
        "//select[@id='return-location']/option[normalize-space(.)='Barcelona Gràcia']",
    ))
    .await
    .expect("Barcelona")
    .click()
    .await
    .expect("pick");
    let qty = c.find(Locator::Css("#return-qty-JKT-BLU-S")).await.expect("quantity");
    qty.clear().await.expect("clear");
    qty.send_keys("1").await.expect("type");
    c.find(Locator::Css("#return-reason"))
        .await
        .expect("reason")
        .send_keys("too small")
        .await
        .expect("type");
    c.find(Locator::Css("#return-form button[type=submit]"))
        .await
        .expect("take")
        .click()
        .await
        .expect("click");
    until_text(c, "#return-result", "Return taken: 1 item back, 89.99 EUR refunded.").await;
    assert_eq!(
        available_in_barcelona().await,
        before + 1,
        "restocked where it came back"
    );
    // The same form sent again is the same return (one form, one idempotency key).
    c.find(Locator::Css("#return-form button[type=submit]"))
        .await
        .expect("take")
        .click()
        .await
        .expect("click");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(available_in_barcelona().await, before + 1, "not restocked twice");
    save_screenshot(c, "return.png").await;
    b.close().await;
    s.server.shutdown().await;
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Signs in through the web form; returns the `sb_session=…` cookie pair.
async fn web_session(s: &TestServer, email: &str, password: &str) -> String {
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}/app/login", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("email", email), ("password", password)]))
        .send()
        .await
        .expect("login");
    session_cookie(&resp).expect("session cookie")
}

/// Over plain HTTP: anonymous visitors go to the sign-in page, roles see only their pages,
/// a cross-origin form post is refused like a cookie API write, and another workspace's
/// conversation is a 404 (audited), never its content.
#[tokio::test]
async fn web_pages_follow_roles_origins_and_workspaces() {
    let s = TestServer::start().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = no_redirects
        .get(format!("{}/app/inbox", s.base))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/app/login");
    let resp = no_redirects
        .get(format!("{}/app/no-such-page", s.base))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap_or_default().contains("<h1>Not found</h1>"));

    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let hello =
        json!({"type": "message", "id": "m-1", "from": {"id": "u-eve", "name": "Eve"}, "text": "secret order details"});
    s.deliver(&shop, &hello).await;
    let (conversation, _) = only_conversation(&s).await;

    let get = |cookie: String, path: String| {
        let client = no_redirects.clone();
        let url = format!("{}{}", s.base, path);
        async move {
            let resp = client.get(url).header("cookie", cookie).send().await.expect("get");
            (resp.status(), resp.text().await.unwrap_or_default())
        }
    };
    let (email, password) = s.demo_user("store_staff");
    let staff = web_session(&s, &email, &password).await;
    let (status, body) = get(staff.clone(), format!("/app/conversations/{conversation}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!body.contains("secret order details"));
    let (status, body) = get(staff.clone(), "/app/store".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Pickup queue"));

    let (email, password) = s.demo_user("agent");
    let agent = web_session(&s, &email, &password).await;
    let (status, body) = get(agent.clone(), format!("/app/conversations/{conversation}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("secret order details"));
    let (status, _) = get(agent.clone(), "/app/store".into()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "agents do not run the pickup counter");

    // Canned responses: for those who reply, not for store staff.
    let (status, body) = get(staff.clone(), "/app/canned-responses".into()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, store_page) = get(staff.clone(), "/app/store".into()).await;
    assert!(
        !store_page.contains("/app/canned-responses"),
        "no header link for store staff"
    );
    let (status, body) = get(agent.clone(), "/app/canned-responses".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("/hours") && body.contains("/returns"), "{body}");
    // A plain form post (no htmx) adds one and comes back to the page; from another site it is refused.
    let add_form = form(&[
        ("short_code", "/Thanks"),
        ("content", "Thank you for shopping with us!"),
    ]);
    let post_add = |origin: String| {
        no_redirects
            .post(format!("{}/app/canned-responses", s.base))
            .header("cookie", agent.clone())
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(add_form.clone())
            .send()
    };
    let resp = post_add("https://evil.example".into()).await.expect("post");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post_add(s.base.clone()).await.expect("post");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/app/canned-responses");
    let (_, added) = s.get("/api/v1/canned-responses?q=thanks", &s.admin_token).await;
    assert_eq!(
        added["items"][0]["short_code"], "thanks",
        "the code is kept without its slash, in lower case"
    );

    // A form post from another site is refused and changes nothing.
    let resp = no_redirects
        .post(format!("{}/app/conversations/{conversation}/status", s.base))
        .header("cookie", agent.clone())
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("status", "resolved")]))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap_or_default().contains("csrf_rejected"));
    let (_, detail) = s
        .get(&format!("/api/v1/conversations/{conversation}"), &s.admin_token)
        .await;
    assert_eq!(detail["status"], "open");
    // The same post from our own page works (and a plain form post comes back to the page).
    let resp = no_redirects
        .post(format!("{}/app/conversations/{conversation}/status", s.base))
        .header("cookie", agent.clone())
        .header("origin", s.base.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("status", "resolved")]))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, detail) = s
        .get(&format!("/api/v1/conversations/{conversation}"), &s.admin_token)
        .await;
    assert_eq!(detail["status"], "resolved");

    // Another workspace's admin: 404 for every page of this conversation, and audited.
    let (status, _) = s
        .post(
            "/api/v1/workspaces",
            &s.admin_token,
            json!({"name": "Other", "admin_email": "o@other.test", "admin_name": "O", "admin_password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let other = web_session(&s, "o@other.test", "correct horse battery").await;
    for path in ["", "/thread", "/header", "/customer"] {
        let (status, body) = get(other.clone(), format!("/app/conversations/{conversation}{path}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(
            !body.contains("secret order details") && !body.contains("Eve"),
            "{path}"
        );
    }
    let (status, body) = get(other.clone(), "/app/inbox?status=any".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("secret order details") && body.contains("No conversations here."));
    let other_token = s.token_for("o@other.test", "correct horse battery").await;
    let (_, audit) = s
        .get("/api/v1/audit?action=access.cross_workspace_denied", &other_token)
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(4));
    s.server.shutdown().await;
}

/// Store staff search live stock (as they type) and look an order up by number; a shopper on
/// the demo storefront checks availability at the stores (levels, never unit counts) next to
/// the chat bubble.
#[tokio::test]
async fn browser_stock_search_lookup_and_storefront_availability() {
    let _one = ONE_BROWSER.lock().await;
    let Some(b) = browser("browser_stock_search_lookup_and_storefront_availability").await else {
        return;
    };
    let c = &b.client;
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    let hello = json!({"type": "message", "id": "m-1", "from": {"id": "u-finn", "name": "Finn", "email": "finn@example.com"}, "text": "hi"});
    assert_eq!(s.deliver(&shop, &hello).await.0, StatusCode::OK);
    let (_, customer) = only_conversation(&s).await;
    let (_, number) = pickup_order(&s, &customer, "BOOT-42", "web-stock-1").await;

    let (email, password) = s.demo_user("store_staff");
    sign_in(c, &s, &email, &password).await;
    until_text(c, "h1", "Pickup queue").await;
    c.goto(&format!("{}/app/stock", s.base)).await.expect("stock");
    until_text(c, "#stock-table", "JKT-BLU-S").await;
    mark_page(c).await;
    c.find(Locator::Css("#q"))
        .await
        .expect("search")
        .send_keys("boot")
        .await
        .expect("type");
    let mut table = String::new();
    for _ in 0..100 {
        // The table is swapped as the search narrows: an element read mid-swap is stale.
        let read = match c.find(Locator::Css("#stock-table")).await {
            Ok(element) => element.text().await.ok(),
            Err(_) => None,
        };
        if let Some(text) = read {
            table = text;
            if !table.contains("JKT-BLU-S") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        table.contains("BOOT-42") && table.contains("BOOT-43") && !table.contains("JKT-BLU-S"),
        "{table}"
    );
    assert!(same_page(c).await, "searched without a page load");
    // Madrid's column shows what the API says is available there (one pair is committed to the order).
    let (_, availability) = s
        .get("/api/v1/inventory/availability?sku=BOOT-42", &s.admin_token)
        .await;
    let madrid = availability["locations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["code"] == "MAD-CENTRO")
        .and_then(|l| l["available"].as_i64())
        .expect("Madrid");
    let header: Vec<String> = js(
        c,
        "return Array.from(document.querySelectorAll('#stock-table thead th')).map(th => th.textContent.trim());",
    )
    .await
    .as_array()
    .into_iter()
    .flatten()
    .filter_map(|v| v.as_str().map(str::to_owned))
    .collect();
    let column = header.iter().position(|h| h == "Madrid Centro").expect("Madrid column");
    let cell = js(
        c,
        &format!("return Array.from(document.querySelectorAll('#stock-table tbody tr')).find(tr => tr.textContent.includes('BOOT-42')).children[{column}].textContent.trim();"),
    )
    .await;
    assert_eq!(cell, json!(madrid.to_string()));
    save_screenshot(c, "stock.png").await;

    c.goto(&format!("{}/app/lookup?q={number}", s.base))
        .await
        .expect("lookup");
    let found = until_text(c, "#main", &format!("Order {number}")).await;
    assert!(
        found.contains("Finn") && found.contains("1 × EU 42 (BOOT-42)"),
        "{found}"
    );
    c.goto(&format!("{}/app/lookup?q=finn%40example.com", s.base))
        .await
        .expect("lookup");
    let found = until_text(c, "#main", "finn@example.com").await;
    assert!(found.contains(&number), "{found}");

    // The storefront, as a shopper (no session needed).
    let token = s.server.demo.as_ref().expect("demo").channels["widget"]["website_token"]
        .as_str()
        .expect("token")
        .to_owned();
    c.goto(&format!("{}/shop", s.base)).await.expect("shop");
    until_text(c, "#main", "Trail jacket").await;
    assert!(
        c.current_url()
            .await
            .expect("url")
            .path()
            .ends_with(&format!("/shop/{token}")),
        "/shop leads to the one website's shop"
    );
    let jacket = c
        .find(Locator::XPath("//article[h2[text()='Trail jacket']]"))
        .await
        .expect("jacket card");
    jacket
        .find(Locator::Css("select"))
        .await
        .expect("variant")
        .select_by_value("JKT-BLU-S")
        .await
        .expect("select");
    jacket
        .find(Locator::Css("button"))
        .await
        .expect("check")
        .click()
        .await
        .expect("click");
    let mut levels = String::new();
    for _ in 0..100 {
        // The answer is swapped in by htmx: an element read mid-swap is stale.
        let read = match jacket.find(Locator::Css(".availability")).await {
            Ok(element) => element.text().await.ok(),
            Err(_) => None,
        };
        if let Some(text) = read {
            levels = text;
            if levels.contains("Valencia") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(levels.contains("Madrid Centro\nOnly a few left"), "{levels}");
    assert!(levels.contains("Valencia Ruzafa\nOut of stock"), "{levels}");
    assert!(
        !levels.contains("Zaragoza"),
        "the warehouse is no pickup store: {levels}"
    );
    assert!(
        !levels.chars().any(|ch| ch.is_ascii_digit()),
        "levels, not unit counts: {levels}"
    );
    c.wait()
        .for_element(Locator::Css("#switchboard-widget"))
        .await
        .expect("the chat bubble is on the page");
    save_screenshot(c, "storefront.png").await;
    b.close().await;
    s.server.shutdown().await;
}

/// The web app's own queries (the thread's latest messages, the pickup queue, an order by
/// number) on PostgreSQL, through the pages.
#[tokio::test]
async fn web_pages_run_on_postgres() {
    use sb_sql::postgres::{PgExecutor, PgOptions};
    use sb_sql::{Db, SqlError};
    let Ok(url) = std::env::var("SWITCHBOARD_TEST_PG_URL") else {
        println!("PostgreSQL half skipped: SWITCHBOARD_TEST_PG_URL is not set");
        return;
    };
    let admin = Db::new(std::sync::Arc::new(
        PgExecutor::connect(&PgOptions::new(url.clone()))
            .await
            .expect("PostgreSQL reachable"),
    ));
    let schema = format!("sb_web_{}", sb_core::new_id().replace('-', ""));
    let ddl = format!("CREATE SCHEMA {schema}");
    admin
        .write(move |c| c.execute_script(&ddl))
        .await
        .map_err(|e: SqlError| e)
        .expect("schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    let s = TestServer::start_with(|c| c.database = sb_server::config::DatabaseConfig::Postgres(schema_url)).await;

    let r = Receiver::start().await;
    let shop = s.api_account("shop app", &r.url).await;
    for (id, text) in [("m-1", "first on postgres"), ("m-2", "second on postgres")] {
        let hello = json!({"type": "message", "id": id, "from": {"id": "u-gus", "name": "Gus"}, "text": text});
        assert_eq!(s.deliver(&shop, &hello).await.0, StatusCode::OK);
    }
    s.until("/api/v1/conversations?status=open", |b| {
        b["items"][0]["unread_count"].as_i64() == Some(2)
    })
    .await;
    let (conversation, customer) = only_conversation(&s).await;
    let (_, number) = pickup_order(&s, &customer, "GLV-1", "web-pg-1").await;
    let get = |cookie: String, path: String| {
        let client = s.client.clone();
        let url = format!("{}{}", s.base, path);
        async move {
            let resp = client.get(url).header("cookie", cookie).send().await.expect("get");
            (resp.status(), resp.text().await.unwrap_or_default())
        }
    };
    let (email, password) = s.demo_user("agent");
    let agent = web_session(&s, &email, &password).await;
    let (status, list) = get(agent.clone(), "/app/inbox".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains("second on postgres") && !list.contains("first on postgres"),
        "the latest message is the preview"
    );
    let (status, page) = get(agent.clone(), format!("/app/conversations/{conversation}")).await;
    assert_eq!(status, StatusCode::OK);
    let thread = &page[page.find("id=\"thread\"").expect("thread")..];
    let (first, second) = (
        thread.find("first on postgres").expect("first"),
        thread.find("second on postgres").expect("second"),
    );
    assert!(first < second, "oldest first in the thread");
    assert!(page.contains(&number), "the order in the customer panel");

    let (email, password) = s.demo_user("store_staff");
    let staff = web_session(&s, &email, &password).await;
    let (status, queue) = get(staff.clone(), "/app/store".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(queue.contains(&format!("id=\"order-{number}\"")), "{queue}");
    let (status, found) = get(staff.clone(), format!("/app/lookup?q={number}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(found.contains(&format!("Order {number}")));

    s.server.shutdown().await;
    let ddl = format!("DROP SCHEMA {schema} CASCADE");
    admin
        .write(move |c| c.execute_script(&ddl))
        .await
        .map_err(|e: SqlError| e)
        .expect("drop schema");
    admin.close().await;
}

/// Website chat, live both ways: a visitor's message appears in the agent's list and thread
/// without a reload, the visitor's typing shows above the composer, the agent's typing and
/// reply reach the visitor's widget socket.
#[tokio::test]
async fn browser_website_chat_live_with_typing_both_ways() {
    use crate::widget_client::{Widget, demo_website_token};
    let _one = ONE_BROWSER.lock().await;
    let Some(b) = browser("browser_website_chat_live_with_typing_both_ways").await else {
        return;
    };
    let c = &b.client;
    let s = TestServer::start().await;
    let w = Widget::start(&s, &demo_website_token(&s)).await;
    let view = w.conversation().await;
    let mut socket = w.connect(view["last_seq"].as_i64()).await;

    let (email, password) = s.demo_user("agent");
    sign_in(c, &s, &email, &password).await;
    until_text(c, "#list-title", "Conversations").await;
    until_live(c).await;
    mark_page(c).await;
    // The open app keeps the agent online (round-robin assigns to online agents), and the
    // status picker changes it.
    let presence_of = |status: &'static str| {
        let s = &s;
        async move {
            s.until("/api/v1/presence", |b| {
                b["items"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|p| p["status"] == status))
            })
            .await
        }
    };
    presence_of("online").await;
    c.find(Locator::Css("#presence"))
        .await
        .expect("status picker")
        .select_by_value("busy")
        .await
        .expect("busy");
    presence_of("busy").await;
    w.say("echo-1", "Do you ship to the Canary Islands?").await;
    let row = until_text(c, "#conversation-list", "Do you ship to the Canary Islands?").await;
    assert!(row.contains("Web chat"), "{row}");
    assert!(same_page(c).await);

    let (conversation, _) = only_conversation(&s).await;
    // Live events re-render the list: a row found mid-swap is stale, so find it again.
    let row = format!("#conv-{conversation} a");
    retry_stale(|| async { c.find(Locator::Css(&row)).await?.click().await }).await;
    until_text(c, "#thread", "Do you ship to the Canary Islands?").await;
    until_live(c).await;
    mark_page(c).await;

    let (status, _) = w.post("/widget/v1/typing", json!({"on": true})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    until_text(c, "#typing", "is typing").await;
    let (status, _) = w.post("/widget/v1/typing", json!({"on": false})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for _ in 0..50 {
        if js(c, "return document.getElementById('typing').textContent;").await == json!("") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        js(c, "return document.getElementById('typing').textContent;").await,
        json!("")
    );

    let composer = c.find(Locator::Css("#composer-text")).await.expect("composer");
    composer.send_keys("Yes, in 3–5 days.").await.expect("type");
    assert_eq!(
        socket.next_of("typing").await["on"],
        true,
        "the visitor sees the agent typing"
    );
    c.find(Locator::Css("#send"))
        .await
        .expect("send")
        .click()
        .await
        .expect("click");
    let frame = socket.next_of("message.created").await;
    assert_eq!(
        (
            frame["message"]["text"].as_str().or(frame["message"]["body"].as_str()),
            frame["message"]["author"].as_str()
        ),
        (Some("Yes, in 3–5 days."), Some("agent")),
        "{frame}"
    );
    until_text(c, "#thread .msg-outbound:last-child", "Yes, in 3–5 days.").await;
    assert!(same_page(c).await);

    // Handoff: the chat continues on WhatsApp at the number the visitor gave.
    c.find(Locator::Css(".handoff summary"))
        .await
        .expect("handoff")
        .click()
        .await
        .expect("open");
    c.find(Locator::XPath(
        "//select[@id='handoff-channel']/option[starts-with(normalize-space(.), 'WhatsApp')]",
    ))
    .await
    .expect("a WhatsApp option")
    .click()
    .await
    .expect("pick");
    c.find(Locator::Css("#handoff-address"))
        .await
        .expect("address")
        .send_keys("+34 600 777 888")
        .await
        .expect("type");
    c.find(Locator::Css("#handoff button"))
        .await
        .expect("move")
        .click()
        .await
        .expect("click");
    let thread = until_text(c, "#thread", "This conversation continues on WhatsApp").await;
    assert!(thread.contains("we are continuing your website chat here"), "{thread}");
    assert!(
        c.find(Locator::Css("#thread .ch-whatsapp")).await.is_ok(),
        "the first message is marked WhatsApp"
    );
    let sim = demo_sim(&s, "whatsapp");
    let mut first = Value::Null;
    for _ in 0..100 {
        let sent = s.sim_get(&sim, "/_sim/whatsapp/sent").await;
        if let Some(r) = sent
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["body"]["to"] == "34600777888")
        {
            first = r["body"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first["template"]["name"], "handoff_follow_up", "{first}");
    socket.close().await;
    b.close().await;
    s.server.shutdown().await;
}

/// Canned responses: the agent adds one on the library page (a taken code is refused there),
/// then in the composer, after a greeting, inserts one from the picker and one by typing its
/// `/code` and Tab; the greeting stays, and the customer's WhatsApp receives the whole text.
#[tokio::test]
async fn browser_agent_inserts_canned_responses_into_the_composer() {
    let _one = ONE_BROWSER.lock().await;
    let Some(b) = browser("browser_agent_inserts_canned_responses_into_the_composer").await else {
        return;
    };
    let c = &b.client;
    let s = TestServer::start().await;
    let sim = demo_sim(&s, "whatsapp");
    let (email, password) = s.demo_user("agent");
    let (_, seeded) = s.get("/api/v1/canned-responses?q=pickup", &s.admin_token).await;
    let pickup = seeded["items"][0]["content"]
        .as_str()
        .expect("the demo's pickup text")
        .to_owned();

    sign_in(c, &s, &email, &password).await;
    until_text(c, "#list-title", "Conversations").await;
    c.find(Locator::Css(".top nav a[href='/app/canned-responses']"))
        .await
        .expect("a header link")
        .click()
        .await
        .expect("open the library");
    until_text(c, "#canned-list", "/returns").await;
    let add = |code: &'static str, text: &'static str| async move {
        c.find(Locator::Css("#canned-code"))
            .await
            .expect("code field")
            .send_keys(code)
            .await
            .expect("type");
        c.find(Locator::Css("#canned-content"))
            .await
            .expect("text field")
            .send_keys(text)
            .await
            .expect("type");
        c.find(Locator::Css("#canned-form button[type=submit]"))
            .await
            .expect("add button")
            .click()
            .await
            .expect("add");
    };
    add("hours", "Another text for a taken code.").await;
    until_text(c, "#canned-error", "canned_response_exists").await;
    js(c, "document.getElementById('canned-form').reset(); return true;").await;
    add("sizes", "Our jackets run true to size.").await;
    until_text(c, "#canned-list", "/sizes").await;
    let cleared = js(c, "return document.getElementById('canned-code').value;").await;
    assert_eq!(cleared, json!(""), "the form clears after adding");
    save_screenshot(c, "canned-responses.png").await;
    c.find(Locator::Css("#canned-list button[aria-label='Delete /returns']"))
        .await
        .expect("the delete button of /returns")
        .click()
        .await
        .expect("delete");
    let mut listed = String::new();
    for _ in 0..50 {
        listed = c
            .find(Locator::Css("#canned-list"))
            .await
            .expect("list")
            .text()
            .await
            .unwrap_or_default();
        // Read while the list is being replaced, the element can be gone for a moment (an
        // empty text): wait for the new list, not just for the old entry to disappear.
        if !listed.contains("/returns") && listed.contains("/sizes") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!listed.contains("/returns") && listed.contains("/sizes"), "{listed}");

    whatsapp_says(&s, &sim, "34600111222", "Ana García", "Can I pick up my jacket today?").await;
    let (conversation, _) = only_conversation(&s).await;
    c.goto(&format!("{}/app/conversations/{conversation}", s.base))
        .await
        .expect("open the conversation");
    until_text(c, "#thread", "Can I pick up my jacket today?").await;
    until_text(c, "#canned-area", "/sizes").await;

    let composer = c.find(Locator::Css("#composer-text")).await.expect("composer");
    composer.send_keys("Hi Ana!").await.expect("type");
    c.find(Locator::Css("#canned-picker option[value='pickup']"))
        .await
        .expect("the pickup option")
        .click()
        .await
        .expect("choose");
    c.find(Locator::Css("#canned-insert"))
        .await
        .expect("insert button")
        .click()
        .await
        .expect("insert");
    let text = js(c, "return document.getElementById('composer-text').value;").await;
    assert_eq!(
        text,
        json!(format!("Hi Ana! {pickup}")),
        "inserted after what was typed"
    );
    let focused = js(c, "return document.activeElement.id;").await;
    assert_eq!(focused, json!("composer-text"), "the caret is back in the composer");

    let composer = c.find(Locator::Css("#composer-text")).await.expect("composer");
    composer.send_keys(" /siz").await.expect("type");
    until_text(c, "#canned-hint", "Tab inserts /sizes").await;
    composer.send_keys(&Key::Tab.to_string()).await.expect("tab");
    let expected = format!("Hi Ana! {pickup} Our jackets run true to size.");
    let text = js(c, "return document.getElementById('composer-text').value;").await;
    assert_eq!(text, json!(expected), "/code expands in place");

    save_element_screenshot(c, "#composer", "composer-canned.png").await;
    c.find(Locator::Css("#send"))
        .await
        .expect("send")
        .click()
        .await
        .expect("click");
    until_text(c, "#thread .msg-outbound:last-child", "Our jackets run true to size.").await;
    for _ in 0..100 {
        if whatsapp_sent_texts(&s, &sim).await.contains(&expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        whatsapp_sent_texts(&s, &sim).await.contains(&expected),
        "the customer's WhatsApp received the text with both canned responses"
    );
    b.close().await;
    s.server.shutdown().await;
}

/// The customer panel shows what customer data knows (recent events, loyalty), previews what
/// merging another customer in would move, merges, and undoes the merge — all in place.
#[tokio::test]
async fn browser_customer_panel_merges_with_a_preview_and_undoes() {
    let _one = ONE_BROWSER.lock().await;
    let Some(b) = browser("browser_customer_panel_merges_with_a_preview_and_undoes").await else {
        return;
    };
    let c = &b.client;
    let s = TestServer::start().await;
    let sim = demo_sim(&s, "whatsapp");
    let (email, password) = s.demo_user("agent");
    whatsapp_says(&s, &sim, "34600111333", "Nora", "Hi, it's Nora from the web shop").await;
    let (conversation, customer) = only_conversation(&s).await;
    // The same person browsed the web shop and joined the loyalty programme with her e-mail.
    let key = s.server.demo.as_ref().expect("demo").segment["write_key"]
        .as_str()
        .expect("write key")
        .to_owned();
    let resp = s
        .client
        .post(format!("{}/v1/batch", s.base))
        .json(&json!({"writeKey": key, "batch": [
            {"type": "identify", "anonymousId": "web-nora", "messageId": "n-1", "traits": {"email": "nora@example.com"}},
            {"type": "track", "event": "Product Added", "anonymousId": "web-nora", "messageId": "n-2",
             "properties": {"sku": "GLV-1"}},
        ]}))
        .send()
        .await
        .expect("segment batch");
    assert_eq!(resp.status(), StatusCode::OK);
    s.until("/api/v1/profiles/lookup?kind=email&value=nora%40example.com", |p| {
        p["identifiers"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let (status, member) = s
        .post(
            "/api/v1/loyalty/members",
            &s.admin_token,
            json!({"email": "nora@example.com", "incentive": "free gloves"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{member}");
    let web_profile = member["customer_id"].as_str().expect("id").to_owned();
    assert_ne!(web_profile, customer);

    sign_in(c, &s, &email, &password).await;
    until_text(c, "#list-title", "Conversations").await;
    c.goto(&format!("{}/app/conversations/{conversation}", s.base))
        .await
        .expect("open the conversation");
    until_text(c, "#recent-events", "None yet").await;

    // The preview says what would move before anything does.
    let search = c.find(Locator::Css("#merge-q")).await.expect("merge search");
    search.send_keys("nora@example.com").await.expect("type");
    c.find(Locator::Css("#merge-search button"))
        .await
        .expect("find")
        .click()
        .await
        .expect("click");
    let preview = until_text(c, "#merge-candidates", "Merging moves here").await;
    assert!(
        preview.contains("3 identities") && preview.contains("2 events") && preview.contains("0 messages"),
        "{preview}"
    );
    assert!(preview.contains("nora@example.com"), "{preview}");
    let (_, still_apart) = s
        .get(&format!("/api/v1/customers/{customer}/profile"), &s.admin_token)
        .await;
    assert_eq!(
        still_apart["identifiers"].as_array().map(Vec::len),
        Some(1),
        "a preview changes nothing"
    );

    c.find(Locator::Css("#merge-candidates .confirm-merge"))
        .await
        .expect("merge button")
        .click()
        .await
        .expect("merge");
    let panel = until_text(c, "#merges", "merged in").await;
    assert!(panel.contains("manual"), "{panel}");
    let events = until_text(c, "#recent-events", "Product Added").await;
    assert!(events.contains("commerce"), "{events}");
    until_text(c, "#loyalty", "free gloves").await;
    let ids = until_text(c, "#identities", "nora@example.com").await;
    assert!(ids.contains("34600111333"), "{ids}");
    save_element_screenshot(c, "#customer-panel", "customer-panel-merged.png").await;

    // Undo puts each side back.
    c.find(Locator::Css("#merges .undo-merge"))
        .await
        .expect("undo button")
        .click()
        .await
        .expect("undo");
    until_text(c, "#merges", "undone").await;
    until_text(c, "#recent-events", "None yet").await;
    let (_, apart) = s
        .get(&format!("/api/v1/customers/{customer}/profile"), &s.admin_token)
        .await;
    assert_eq!(apart["identifiers"].as_array().map(Vec::len), Some(1), "{apart}");
    let (_, web) = s
        .get(&format!("/api/v1/customers/{web_profile}/profile"), &s.admin_token)
        .await;
    assert_eq!(web["loyalty"]["incentive"], "free gloves", "{web}");
    s.server.shutdown().await;
}

/// The pickup queue shows an order whose stock is still on its way by transfer with a
/// "Receive transfer" step instead of "Mark ready"; receiving it there (a same-origin form
/// post) puts the units at the store and the order can be prepared.
#[tokio::test]
async fn pickup_queue_receives_a_transfer_before_the_order_is_ready() {
    use crate::commerce::{cart_with, change, customer_with_a_channel, location_id, product};
    let s = TestServer::start().await;
    let r = Receiver::start().await;
    let ana = customer_with_a_channel(&s, &r).await;
    let madrid = location_id(&s, "MAD-CENTRO").await;
    let warehouse = location_id(&s, "ZGZ-WH").await;
    product(&s, "WEB-XFER-1", 1200).await;
    let (status, _) = change(
        &s,
        "web-xfer-stock",
        json!([{"sku": "WEB-XFER-1", "location_id": warehouse, "movement": {"kind": "receive", "quantity": 2}}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let cart = cart_with(&s, &ana, &[("WEB-XFER-1", 1)]).await;
    let (status, placed) = s
        .post(
            "/api/v1/orders",
            &s.admin_token,
            json!({"cart_id": cart, "idempotency_key": "web-xfer", "fulfillment": "pickup", "location_id": madrid,
                   "allow_transfer": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let number = placed["order"]["number"].as_str().expect("number").to_owned();
    let transfer = placed["order"]["transfers"][0]["id"]
        .as_str()
        .expect("transfer")
        .to_owned();

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let (email, password) = s.demo_user("store_staff");
    let staff = web_session(&s, &email, &password).await;
    let queue = |cookie: String| {
        let (client, url) = (no_redirects.clone(), format!("{}/app/store?location={madrid}", s.base));
        async move {
            let resp = client.get(url).header("cookie", cookie).send().await.expect("get");
            resp.text().await.unwrap_or_default()
        }
    };
    let page = queue(staff.clone()).await;
    let row = &page[page
        .find(&format!("id=\"order-{number}\""))
        .expect("the order is queued")..];
    let row = &row[..row.find("</tr>").unwrap_or(row.len())];
    assert!(
        row.contains(&format!("/app/transfers/{transfer}/receive")) && row.contains("Zaragoza"),
        "{row}"
    );
    assert!(!row.contains("Mark ready"), "{row}");

    let resp = no_redirects
        .post(format!("{}/app/transfers/{transfer}/receive", s.base))
        .header("cookie", staff.clone())
        .header("origin", s.base.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("location", madrid.as_str())]))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, received) = s.get(&format!("/api/v1/transfers/{transfer}"), &s.admin_token).await;
    assert_eq!(received["status"], "received", "{received}");
    let page = queue(staff).await;
    let row = &page[page
        .find(&format!("id=\"order-{number}\""))
        .expect("the order is queued")..];
    let row = &row[..row.find("</tr>").unwrap_or(row.len())];
    assert!(row.contains("Mark ready") && !row.contains("Receive transfer"), "{row}");
}

/// An admin connects an integration: adds an endpoint with its events, copies the secret
/// shown once, sends a test event and reads the attempt in the log; a bad URL is refused
/// with a sentence and its code, keeping what was typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_admin_connects_a_webhook_endpoint_and_reads_its_log() {
    let _one = ONE_BROWSER.lock().await;
    let Some(b) = browser("browser_admin_connects_a_webhook_endpoint_and_reads_its_log").await else {
        return;
    };
    let c = &b.client;
    let s = TestServer::start_with(|c| c.webhooks_allow_private_networks = true).await;
    let r = Receiver::start().await;
    sign_in(c, &s, &s.admin_email, &s.admin_password).await;
    c.find(Locator::Css(".top nav a[href='/app/settings/webhooks']"))
        .await
        .expect("a Webhooks link for admins")
        .click()
        .await
        .expect("open webhooks");
    until_text(c, "#endpoints", "No endpoints yet").await;

    // A URL the guard refuses: the reason and its code, the form keeps the description.
    let fill = |url: &'static str| async move {
        let field = c.find(Locator::Css("#webhook-url")).await.expect("url field");
        field.clear().await.expect("clear");
        field.send_keys(url).await.expect("type");
    };
    fill("ftp://files.example.com/in").await;
    c.find(Locator::Css("#webhook-description"))
        .await
        .expect("description")
        .send_keys("Order sync")
        .await
        .expect("type");
    for name in ["message.created", "webhook.test"] {
        c.find(Locator::Css(&format!("input[name=event_types][value='{name}']")))
            .await
            .expect("an event type box")
            .click()
            .await
            .expect("check");
    }
    c.find(Locator::Css("#webhook-form button[type=submit]"))
        .await
        .expect("add")
        .click()
        .await
        .expect("submit");
    until_text(c, "#webhook-form", "invalid_webhook_endpoint").await;
    let kept = js(c, "return document.getElementById('webhook-description').value;").await;
    assert_eq!(kept, json!("Order sync"), "the form keeps what was typed");
    let checked = js(
        c,
        "return [...document.querySelectorAll('input[name=event_types]:checked')].map(e => e.value);",
    )
    .await;
    assert_eq!(checked, json!(["message.created", "webhook.test"]));

    // The receiver's URL: created, and the secret is shown once.
    let url: &'static str = Box::leak(r.url.clone().into_boxed_str());
    fill(url).await;
    c.find(Locator::Css("#webhook-form button[type=submit]"))
        .await
        .expect("add")
        .click()
        .await
        .expect("submit");
    let secret = until_text(c, "#webhook-secret", "whsec_").await;
    assert!(secret.trim().starts_with("whsec_"));
    save_screenshot(c, "webhook-created.png").await;

    // A test event arrives, signed, and its attempt is in the log.
    c.find(Locator::Css("form[action$='/test'] button"))
        .await
        .expect("test button")
        .click()
        .await
        .expect("send test");
    until_text(c, ".notice.ok", "queued").await;
    let start = std::time::Instant::now();
    while r.received().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the test event never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut logged = String::new();
    for _ in 0..50 {
        c.refresh().await.expect("reload");
        logged = c
            .find(Locator::Css("#attempts"))
            .await
            .expect("attempt log")
            .text()
            .await
            .unwrap_or_default();
        if logged.contains("HTTP 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(logged.contains("HTTP 200"), "{logged}");
    assert!(
        !c.source().await.expect("page").contains(secret.trim()),
        "the secret is not shown again"
    );
    until_text(c, "#deliveries", "webhook.test").await;
    assert_eq!(
        r.received().len(),
        1,
        "reloading the page after a post sends nothing again"
    );
    save_screenshot(c, "webhook-log.png").await;

    // The request view: the body exactly as signed, with its attempts.
    c.find(Locator::Css("#deliveries a[href*='/messages/']"))
        .await
        .expect("a message link")
        .click()
        .await
        .expect("open the message");
    let body = until_text(c, "#message-body", "webhook.test").await;
    assert!(body.contains("\"type\":\"webhook.test\""), "{body}");
    until_text(c, "#message-attempts", "HTTP 200").await;
    save_screenshot(c, "webhook-message.png").await;

    // Back on the list: the endpoint, its events and its state.
    c.goto(&format!("{}/app/settings/webhooks", s.base))
        .await
        .expect("list");
    let listed = until_text(c, "#endpoints", "Enabled").await;
    assert!(listed.contains("message.created, webhook.test"), "{listed}");
    save_screenshot(c, "webhooks.png").await;
}

/// Scenario 5 and 6, the marketer's half: the journeys list with live counts, the demo's
/// abandoned-cart journey previewed per channel for a real customer, and a new journey built
/// step by step in forms, refused with its code while a template is wrong, then saved and
/// activated.
#[tokio::test]
async fn browser_marketer_builds_previews_and_activates_a_journey() {
    let _one = ONE_BROWSER.lock().await;
    let Some(b) = browser("browser_marketer_builds_previews_and_activates_a_journey").await else {
        return;
    };
    let c = &b.client;
    let s = TestServer::start_with_journeys(sb_engine::Time::System, |_| {}).await;
    let (email, password) = s.demo_user("marketer");
    sign_in(c, &s, &email, &password).await;
    // A marketer lands on the journeys.
    let list = until_text(c, "#journeys", "Abandoned cart").await;
    assert!(list.contains("Thank you after a purchase"), "{list}");
    assert!(list.to_lowercase().contains("active"), "{list}");
    save_screenshot(c, "journeys-list.png").await;

    // The abandoned-cart journey, previewed for a demo customer on every channel.
    c.find(Locator::LinkText("Abandoned cart"))
        .await
        .expect("journey link")
        .click()
        .await
        .expect("open");
    until_text(c, "#step-reminder", "Headline").await;
    let field = c.find(Locator::Css("#preview-customer")).await.expect("preview field");
    field.send_keys("lucia.fernandez@example.com").await.expect("type");
    c.find(Locator::Css(".preview-form button"))
        .await
        .expect("preview")
        .click()
        .await
        .expect("submit");
    let sms = until_text(c, "#step-reminder .preview-sms", "segment").await;
    assert!(sms.contains("Lucía"), "rendered for the customer: {sms}");
    let whatsapp = until_text(c, "#step-reminder .preview-whatsapp", "cart_reminder").await;
    assert!(whatsapp.contains("Template"), "{whatsapp}");
    let email_preview = until_text(c, "#step-reminder .preview-email", "Subject").await;
    assert!(email_preview.contains("your cart is waiting"), "{email_preview}");
    save_element_screenshot(c, "#step-reminder", "journey-preview.png").await;

    // A new journey: a wrong variable is refused with its code and the form keeps the text.
    c.goto(&format!("{}/app/journeys/new", s.base)).await.expect("new");
    c.find(Locator::Css("#j-name"))
        .await
        .expect("name")
        .send_keys("Welcome back")
        .await
        .expect("type");
    let trigger = c.find(Locator::Css("#j-trigger")).await.expect("trigger");
    trigger.clear().await.expect("clear");
    trigger.send_keys("Order Completed").await.expect("type");
    c.find(Locator::Css("#s0-h"))
        .await
        .expect("headline")
        .send_keys("Thanks, {{ customer.nickname }}")
        .await
        .expect("type");
    c.find(Locator::Css("#s0-b"))
        .await
        .expect("body")
        .send_keys("Your order {{ event.properties.number }} is in.")
        .await
        .expect("type");
    c.find(Locator::Css("#save-journey"))
        .await
        .expect("save")
        .click()
        .await
        .expect("submit");
    let refused = until_text(c, ".notice.error", "template_error").await;
    assert!(refused.contains("nickname"), "{refused}");
    let kept = js(c, "return document.getElementById('s0-b').value;").await;
    assert_eq!(kept, json!("Your order {{ event.properties.number }} is in."));

    // Fixed, with a wait before the message added and moved up; saved, then activated.
    let headline = c.find(Locator::Css("#s0-h")).await.expect("headline");
    headline.clear().await.expect("clear");
    headline
        .send_keys("Thanks, {{ customer.first_name }}")
        .await
        .expect("type");
    c.find(Locator::Css("#new-step option[value=delay]"))
        .await
        .expect("delay option")
        .click()
        .await
        .expect("choose");
    c.find(Locator::Css(".add-step button"))
        .await
        .expect("add step")
        .click()
        .await
        .expect("add");
    until_text(c, ".notice", "Unsaved changes").await;
    c.find(Locator::Css("button[value='up:1']"))
        .await
        .expect("move up")
        .click()
        .await
        .expect("move");
    until_text(c, "ol.steps > li:first-child .mark", "delay").await;
    save_element_screenshot(c, "ol.steps", "journey-builder.png").await;
    c.find(Locator::Css("#save-journey"))
        .await
        .expect("save")
        .click()
        .await
        .expect("submit");
    until_text(c, ".notice", "Saved as version 1").await;
    c.find(Locator::Css("form[action$='/activate'] button"))
        .await
        .expect("activate")
        .click()
        .await
        .expect("activate");
    until_text(c, ".notice", "The journey is active").await;
    let (_, all) = s.get("/api/v1/journeys", &s.admin_token).await;
    let made = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|j| j["name"] == "Welcome back")
        .cloned()
        .expect("saved");
    assert_eq!(made["state"], "active");
    assert_eq!(made["definition"]["steps"][0]["type"], "delay", "{made}");
    assert_eq!(made["definition"]["steps"][1]["type"], "send", "{made}");
}
