//! SMS end to end through the Twilio simulator (`sb-sim`, written from Twilio's docs) wired
//! to the demo's SMS number: signed inbound, replies over the REST API with status callbacks,
//! segment counts for the agent, STOP handled as a consent change with one confirmation, and
//! refused requests that store nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestServer, code};

const CUSTOMER: &str = "+15557654321";

struct Sms {
    sim: String,
    account: String,
    hook: String,
    auth_token: String,
}

fn demo_sms(s: &TestServer) -> Sms {
    let creds = &s.server.demo.as_ref().expect("demo").channels["twilio_sms"];
    let text = |k: &str| creds[k].as_str().expect(k).to_owned();
    Sms {
        sim: text("simulator_url"),
        account: text("account_id"),
        hook: text("webhook_url"),
        auth_token: text("auth_token"),
    }
}

async fn text_in(s: &TestServer, sms: &Sms, from: &str, to: &str, body: &str) -> Value {
    s.sim_post(&sms.sim, "/_sim/inbound", json!({"from": from, "to": to, "body": body}))
        .await
}

/// What the customer's handset received, in order.
async fn handset(s: &TestServer, sms: &Sms, phone: &str) -> Vec<Value> {
    let list = s
        .sim_get(&sms.sim, &format!("/_sim/received?to={}", phone.replace('+', "%2B")))
        .await;
    list.as_array().cloned().unwrap_or_default()
}

async fn thread(s: &TestServer, conversation: &str) -> Vec<Value> {
    let (_, body) = s
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
        )
        .await;
    body["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn sms_replies_go_out_signed_callbacks_apply_and_stop_ends_marketing_with_one_confirmation() {
    let s = TestServer::start().await;
    let sms = demo_sms(&s);

    let sent = text_in(&s, &sms, CUSTOMER, "+15551230000", "Is my order ready?").await;
    assert_eq!(sent["delivered_status"].as_u64(), Some(200), "{sent}");
    let list = s
        .until("/api/v1/conversations?channel=twilio_sms", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let conversation = list["items"][0]["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let (_, detail) = s
        .get(&format!("/api/v1/conversations/{conversation}"), &s.admin_token)
        .await;
    assert_eq!(detail["customer"]["phone"], CUSTOMER, "{detail}");

    // The agent sees what a text costs before sending it (Appendix B's en-dash row).
    let (status, measure) = s
        .post(
            &format!("/api/v1/channel-accounts/{}/measure", sms.account),
            &s.admin_token,
            json!({"text": "Total: 25€ – pay at pickup"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{measure}");
    assert_eq!(
        (
            measure["segments"]["encoding"].as_str(),
            measure["segments"]["segments"].as_u64()
        ),
        (Some("ucs2"), Some(1)),
        "{measure}"
    );

    // A reply goes out through the REST API with Basic auth and our status callback, and
    // the provider's callbacks move it to delivered.
    let (status, reply) = s
        .post(&path, &s.admin_token, json!({"text": "Yes, ready for pickup."}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let delivered = s
        .until_message(&conversation, reply["id"].as_str().expect("id"), "delivered")
        .await;
    let calls = s
        .provider_calls(&sms.sim, "/_sim/outbox", 1, |r| r["method"] == "POST")
        .await;
    let params: Vec<(String, String)> = serde_json::from_value(calls[0]["params"].clone()).expect("params");
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(param("To"), Some(CUSTOMER));
    assert_eq!(param("From"), Some("+15551230000"));
    assert_eq!(param("Body"), Some("Yes, ready for pickup."));
    assert_eq!(param("StatusCallback"), Some(sms.hook.as_str()));
    assert_eq!(calls[0]["auth_user"], "AC0000000000000000000000000000demo");
    assert_eq!(delivered["provider_message_id"], calls[0]["sid"]);

    // A carrier failure arrives as `undelivered` with its code, explained for the agent.
    let (_, second) = s.post(&path, &s.admin_token, json!({"text": "See you soon"})).await;
    let second_id = second["id"].as_str().expect("id");
    let sent = s.until_message(&conversation, second_id, "sent").await;
    let sid = sent["provider_message_id"].as_str().expect("sid").to_owned();
    s.sim_post(
        &sms.sim,
        &format!("/_sim/fail/{sid}?code=30003&status=undelivered"),
        json!({}),
    )
    .await;
    let failed = s.until_message(&conversation, second_id, "failed").await;
    assert_eq!(failed["error_code"], "30003", "{failed}");
    assert!(
        failed["error_message"]
            .as_str()
            .is_some_and(|m| m.to_lowercase().contains("unreachable")),
        "{failed}"
    );

    // Marketing needs an opt-in: refused before it, sent after it.
    let (status, refused) = s
        .post(
            &path,
            &s.admin_token,
            json!({"text": "Too early", "purpose": "marketing"}),
        )
        .await;
    assert_eq!(code(&refused), "consent_missing", "{status} {refused}");
    s.opt_in_marketing(&conversation, "twilio_sms").await;
    let (status, offer) = s
        .post(
            &path,
            &s.admin_token,
            json!({"text": "20% off this weekend", "purpose": "marketing"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{offer}");
    assert_eq!(offer["purpose"], "marketing");
    s.until_message(&conversation, offer["id"].as_str().expect("id"), "sent")
        .await;

    // STOP: the provider confirms once (its default handling), we record the opt-out, and the
    // next marketing text is refused before anything is sent.
    let stop = text_in(&s, &sms, CUSTOMER, "+15551230000", "STOP").await;
    assert_eq!(stop["delivered_status"].as_u64(), Some(200), "{stop}");
    let customer = detail["customer"]["id"].as_str().expect("customer").to_owned();
    s.until(&format!("/api/v1/customers/{customer}"), |b| {
        b["consents"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["channel"] == "twilio_sms" && c["granted"] == false))
    })
    .await;
    let (status, refused) = s
        .post(
            &path,
            &s.admin_token,
            json!({"text": "Last chance: 30% off", "purpose": "marketing"}),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::UNPROCESSABLE_ENTITY, "consent_revoked"),
        "{refused}"
    );
    let confirmations: Vec<Value> = handset(&s, &sms, CUSTOMER)
        .await
        .into_iter()
        .filter(|m| m["kind"] != "message")
        .collect();
    assert_eq!(confirmations.len(), 1, "one confirmation: {confirmations:?}");
    assert!(
        confirmations[0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("unsubscribed")),
        "{confirmations:?}"
    );
    // The STOP itself is in the thread for the agent.
    assert!(thread(&s, &conversation).await.iter().any(|m| m["body"] == "STOP"));
}

#[tokio::test]
async fn sms_requests_with_bad_signatures_or_missing_fields_store_nothing() {
    let s = TestServer::start().await;
    let sms = demo_sms(&s);
    text_in(&s, &sms, CUSTOMER, "+15551230000", "hello").await;
    let list = s
        .until("/api/v1/conversations?channel=twilio_sms", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let conversation = list["items"][0]["id"].as_str().expect("id").to_owned();

    for fault in [json!({"bad_signature": true}), json!({"missing_signature": true})] {
        s.sim_post(&sms.sim, "/_sim/faults", fault.clone()).await;
        let answer = text_in(&s, &sms, CUSTOMER, "+15551230000", "forged").await;
        assert_eq!(answer["delivered_status"].as_u64(), Some(401), "{fault}: {answer}");
    }
    s.sim_post(&sms.sim, "/_sim/faults", json!({})).await;

    // Signed correctly but without `From`: a clear error, nothing stored.
    let params = vec![
        ("AccountSid".to_owned(), "AC0000000000000000000000000000demo".to_owned()),
        ("MessageSid".to_owned(), "SM00000000000000000000000000000099".to_owned()),
        ("Body".to_owned(), "no sender".to_owned()),
    ];
    let signature = sb_channels::twilio::signature(&sms.auth_token, &sms.hook, &params);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish()
        .into_bytes();
    let (status, answer) = s
        .raw_post(
            &sms.hook,
            vec![
                ("x-twilio-signature", signature),
                ("content-type", "application/x-www-form-urlencoded".into()),
            ],
            body,
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "malformed_payload"),
        "{answer}"
    );

    // A duplicate delivery of the same MessageSid is acknowledged and dropped.
    s.sim_post(&sms.sim, "/_sim/faults", json!({"duplicate_webhooks": true}))
        .await;
    text_in(&s, &sms, CUSTOMER, "+15551230000", "twice?").await;
    s.sim_post(&sms.sim, "/_sim/faults", json!({})).await;
    s.until(&format!("/api/v1/conversations/{conversation}/messages"), |b| {
        b["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|m| m["body"] == "twice?"))
    })
    .await;
    let bodies: Vec<String> = thread(&s, &conversation)
        .await
        .iter()
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(bodies, vec!["hello", "twice?"], "nothing forged, nothing twice");
}

#[tokio::test]
async fn sms_keywords_we_confirm_ourselves_are_confirmed_once() {
    let s = TestServer::start().await;
    let sms = demo_sms(&s);
    // A number whose provider leaves keywords to us.
    let (status, created) = s
        .post(
            "/api/v1/channel-accounts",
            &s.admin_token,
            json!({"channel": "twilio_sms", "name": "Second number",
                   "settings": {"account_sid": "AC0000000000000000000000000000demo", "from": "+15551230001",
                                "api_base_url": sms.sim, "keyword_replies": "switchboard",
                                "business_name": "Acme"},
                   "secrets": {"auth_token": sms.auth_token}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let hook = created["webhook_url"].as_str().expect("hook").to_owned();
    s.sim_post(
        &sms.sim,
        "/_sim/numbers",
        json!({"phone": "+15551230001", "sms_url": hook}),
    )
    .await;
    s.sim_post(&sms.sim, "/_sim/options", json!({"keyword_engine": false}))
        .await;

    // Without an auth token the account is refused, saying what is missing.
    let (status, refused) = s
        .post(
            "/api/v1/channel-accounts",
            &s.admin_token,
            json!({"channel": "twilio_sms", "name": "No token",
                   "settings": {"account_sid": "AC0000000000000000000000000000demo", "from": "+15551230002"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused.to_string().contains("auth_token"), "{refused}");

    // STOP delivered twice (a provider retry): one confirmation, from us, sent once.
    s.sim_post(&sms.sim, "/_sim/faults", json!({"duplicate_webhooks": true}))
        .await;
    text_in(&s, &sms, CUSTOMER, "+15551230001", "stop").await;
    s.sim_post(&sms.sim, "/_sim/faults", json!({})).await;
    let calls = s
        .provider_calls(&sms.sim, "/_sim/outbox", 1, |r| r["method"] == "POST")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let calls_after = s.sim_get(&sms.sim, "/_sim/outbox").await;
    let confirmations: Vec<&Value> = calls_after
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["method"] == "POST")
        .collect();
    assert_eq!(confirmations.len(), 1, "{calls_after}");
    let body = confirmations[0]["params"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p[0] == "Body")
        .and_then(|p| p[1].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(body.contains("unsubscribed from Acme"), "{body}");
    assert_eq!(calls[0]["params"], confirmations[0]["params"]);
}

/// WhatsApp through the same provider: `whatsapp:` addresses, the customer's number linking
/// them to their SMS thread, and free text only inside the 24-hour window.
#[tokio::test]
async fn whatsapp_through_twilio_joins_the_phone_thread_and_keeps_the_window() {
    let clock = sb_engine::ManualClock::new(sb_core::Clock::now_ms(&sb_core::SystemClock));
    let s = TestServer::start_at(sb_engine::Time::Manual(clock.clone()), |_| {}).await;
    let sms = demo_sms(&s);
    let (status, created) = s
        .post(
            "/api/v1/channel-accounts",
            &s.admin_token,
            json!({"channel": "twilio_whatsapp", "name": "WhatsApp via Twilio",
                   "settings": {"account_sid": "AC0000000000000000000000000000demo", "from": "whatsapp:+15550009999",
                                "api_base_url": sms.sim},
                   "secrets": {"auth_token": sms.auth_token}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let hook = created["webhook_url"].as_str().expect("hook").to_owned();
    s.sim_post(
        &sms.sim,
        "/_sim/numbers",
        json!({"phone": "whatsapp:+15550009999", "sms_url": hook}),
    )
    .await;

    // The same person texts first, then writes on WhatsApp: one conversation.
    text_in(&s, &sms, CUSTOMER, "+15551230000", "Hi by SMS").await;
    let sent = s
        .sim_post(
            &sms.sim,
            "/_sim/inbound",
            json!({"from": format!("whatsapp:{CUSTOMER}"), "to": "whatsapp:+15550009999", "body": "And now on WhatsApp",
                   "profile_name": "Ana"}),
        )
        .await;
    assert_eq!(sent["delivered_status"].as_u64(), Some(200), "{sent}");
    let list = s
        .until("/api/v1/conversations", |b| {
            b["items"][0]["unread_count"].as_i64() == Some(2)
        })
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    let conversation = list["items"][0]["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/conversations/{conversation}/messages");

    // The reply goes to WhatsApp (last used) with the prefixed addresses.
    let (status, reply) = s.post(&path, &s.admin_token, json!({"text": "Hola Ana"})).await;
    assert_eq!(
        (status, reply["channel"].as_str()),
        (StatusCode::CREATED, Some("twilio_whatsapp")),
        "{reply}"
    );
    s.until_message(&conversation, reply["id"].as_str().expect("id"), "delivered")
        .await;
    let calls = s
        .provider_calls(&sms.sim, "/_sim/outbox", 1, |r| {
            r["method"] == "POST" && r["params"].to_string().contains("whatsapp:+15550009999")
        })
        .await;
    let params = calls[0]["params"].to_string();
    assert!(
        params.contains(&format!("[\"To\",\"whatsapp:{CUSTOMER}\"]")),
        "{params}"
    );

    // A day later the window is closed: free text is refused before anything is sent.
    clock.advance(25 * 3_600_000);
    let (status, refused) = s.post(&path, &s.admin_token, json!({"text": "Still there?"})).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::UNPROCESSABLE_ENTITY, "reply_window_closed"),
        "{refused}"
    );
}

/// MMS both ways: the customer's picture fetched from the provider with the account's
/// credentials (through its redirect to the CDN), and an agent's picture handed to the
/// provider as a signed link it can fetch.
#[tokio::test]
async fn mms_pictures_come_in_with_the_accounts_credentials_and_go_out_as_signed_links() {
    let s = TestServer::start().await;
    let sms = demo_sms(&s);
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&png);
    let sent = s
        .sim_post(
            &sms.sim,
            "/_sim/inbound",
            json!({"from": CUSTOMER, "to": "+15551230000", "body": "",
                   "media": [{"content_type": "image/png", "bytes_base64": encoded}]}),
        )
        .await;
    assert_eq!(sent["delivered_status"].as_u64(), Some(200), "{sent}");
    let list = s
        .until("/api/v1/conversations?channel=twilio_sms", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let conversation = list["items"][0]["id"].as_str().expect("id").to_owned();
    let thread = s
        .until(&format!("/api/v1/conversations/{conversation}/messages"), |b| {
            b["items"][0]["attachments"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let picture = &thread["items"][0];
    assert_eq!(picture["body"], "📎 1 file");
    assert_eq!(picture["attachments"][0]["content_type"], "image/png");
    let file = s
        .client
        .get(format!(
            "{}{}",
            s.base,
            picture["attachments"][0]["url"].as_str().expect("url")
        ))
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .expect("download");
    assert_eq!(file.bytes().await.expect("bytes").to_vec(), png);

    // The agent sends a picture back: the provider fetches our signed link.
    let upload: Value = s
        .client
        .post(format!("{}/api/v1/attachments?filename=jacket.png", s.base))
        .bearer_auth(&s.admin_token)
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    let (status, reply) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
            json!({"text": "This one?", "attachment_ids": [upload["id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let sent = s
        .until_message(&conversation, reply["id"].as_str().expect("id"), "delivered")
        .await;
    let sid = sent["provider_message_id"].as_str().expect("sid").to_owned();
    assert!(sid.starts_with("MM"), "an MMS: {sid}");
    let messages = s.sim_get(&sms.sim, &format!("/_sim/messages?sid={sid}")).await;
    let fetch = &messages[0]["media_fetches"][0];
    assert_eq!(
        (
            fetch["status"].as_u64(),
            fetch["content_type"].as_str(),
            fetch["size"].as_u64()
        ),
        (Some(200), Some("image/png"), Some(png.len() as u64)),
        "{messages}"
    );
    assert!(
        fetch["url"]
            .as_str()
            .is_some_and(|u| u.contains("/media/") && u.contains("sig=")),
        "{fetch}"
    );
}
