//! E-mail end to end with the demo's support mailbox and the mail simulator (`sb-sim`):
//! customer mail in through our SMTP listener and Mailgun's signed webhook, replies out over
//! SMTP submission (STARTTLS, AUTH) threaded in the customer's client, bounces and one-click
//! unsubscribes ending marketing, and bad input refused with nothing stored. Also scenario 2
//! across Telegram and e-mail.

use reqwest::StatusCode;
use sb_engine::{ManualClock, Time};
use serde_json::{Value, json};

use crate::harness::{TestServer, code};

struct Mail {
    sim: String,
    account: String,
    address: String,
    mailgun: String,
}

fn demo_mail(s: &TestServer) -> Mail {
    let creds = &s.server.demo.as_ref().expect("demo").channels["email"];
    let text = |k: &str| creds[k].as_str().expect(k).to_owned();
    Mail {
        sim: text("simulator_url"),
        account: text("account_id"),
        address: text("address"),
        mailgun: text("mailgun_webhook_url"),
    }
}

/// A customer writes (the simulator composes the MIME and delivers it `via`).
async fn customer_writes(s: &TestServer, mail: &Mail, message: Value) -> Value {
    let mut message = message;
    message["to"] = json!(mail.address);
    s.sim_post(&mail.sim, "/_sim/send", message).await
}

/// Mail our product sent to `to`, once there are `n`.
async fn mailbox(s: &TestServer, mail: &Mail, to: &str, n: usize) -> Vec<Value> {
    s.provider_calls(&mail.sim, &format!("/_sim/messages?to={to}"), n, |_| true)
        .await
}

async fn conversation_of(s: &TestServer, email: &str) -> String {
    let found = s
        .until(&format!("/api/v1/customers?q={email}"), |b| {
            b["items"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    let customer = found["items"][0]["id"].as_str().expect("customer");
    let profile = s
        .until(&format!("/api/v1/customers/{customer}"), |b| {
            b["conversation_id"].is_string()
        })
        .await;
    profile["conversation_id"].as_str().expect("conversation").to_owned()
}

async fn messages(s: &TestServer, conversation: &str, n: usize) -> Vec<Value> {
    let thread = s
        .until(&format!("/api/v1/conversations/{conversation}/messages"), |b| {
            b["items"].as_array().is_some_and(|a| a.len() >= n)
        })
        .await;
    thread["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn email_in_by_smtp_and_mailgun_replies_thread_and_bad_mail_stores_nothing() {
    let s = TestServer::start().await;
    let mail = demo_mail(&s);

    // In through our SMTP listener: the reply part only, the signature cut, the file kept.
    let sent = customer_writes(
        &s,
        &mail,
        json!({"from": "Ana López <ana@example.test>", "subject": "Pickup for order 1042",
               "text": "Is my order ready?\n\n-- \nAna López\n+34 600 111 222",
               "attachments": [{"filename": "receipt.pdf", "content_type": "application/pdf", "base64": "JVBERi0xLjQK"}],
               "via": "smtp"}),
    )
    .await;
    assert_eq!(sent["delivery"]["status"].as_u64(), Some(250), "{sent}");
    let conversation = conversation_of(&s, "ana%40example.test").await;
    let first = messages(&s, &conversation, 1).await.remove(0);
    assert_eq!(first["body"], "Is my order ready?", "{first}");
    assert_eq!(first["channel"], "email");
    assert_eq!(first["meta"]["subject"], "Pickup for order 1042");
    assert_eq!(first["attachments"][0]["filename"], "receipt.pdf", "{first}");
    let customer_id = first["meta"]["message_id"].as_str().expect("message id").to_owned();

    // The reply goes out by SMTP submission, threaded under the customer's message.
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let (status, reply) = s
        .post(
            &path,
            &s.admin_token,
            json!({"text": "Yes, it is ready at the front desk."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let reply = s
        .until_message(&conversation, reply["id"].as_str().expect("id"), "sent")
        .await;
    let got = mailbox(&s, &mail, "ana@example.test", 1).await.remove(0);
    assert_eq!(got["in_reply_to"], format!("<{customer_id}>"), "{got}");
    assert!(
        got["references"].as_str().is_some_and(|r| r.contains(&customer_id)),
        "{got}"
    );
    assert_eq!(got["subject"], "Re: Pickup for order 1042");
    assert_eq!(
        got["message_id"].as_str().map(|m| m.trim_matches(['<', '>'])),
        reply["provider_message_id"].as_str()
    );
    assert_eq!(
        (got["tls"].as_bool(), got["auth_user"].as_str()),
        (Some(true), Some("switchboard"))
    );
    assert!(
        got["envelope_from"].as_str().is_some_and(|e| e.starts_with("bounce+")),
        "{got}"
    );
    assert!(
        got["list_unsubscribe"].is_null(),
        "no unsubscribe header on a conversation reply"
    );

    // She answers from her client through the Mailgun route: quoted history stripped.
    let answered = customer_writes(
        &s,
        &mail,
        json!({"from": "ana@example.test", "in_reply_to_id": got["id"], "via": "mailgun",
               "text": "Great, coming at 5.\n\nOn Tue, 1 Jan 2026 at 10:00, Acme Outfitters Support <support@acme-outfitters.example> wrote:\n> Yes, it is ready at the front desk."}),
    )
    .await;
    assert_eq!(answered["delivery"]["status"].as_u64(), Some(200), "{answered}");
    let thread = messages(&s, &conversation, 3).await;
    assert_eq!(thread[2]["body"], "Great, coming at 5.", "{:?}", thread[2]);
    assert!(
        thread[2]["meta"]["quoted"]
            .as_str()
            .is_some_and(|q| q.contains("wrote:"))
    );

    // An out-of-office is kept and flagged as automatic.
    customer_writes(
        &s,
        &mail,
        json!({"from": "ana@example.test", "subject": "Out of office", "text": "I am away until Monday.",
               "auto_submitted": "auto-replied", "via": "smtp"}),
    )
    .await;
    let thread = messages(&s, &conversation, 4).await;
    assert_eq!(thread[3]["meta"]["automatic"], true, "{:?}", thread[3]);

    // Unreadable mail is refused at DATA; a forged Mailgun post is refused; neither is stored.
    let malformed = s
        .sim_post(
            &mail.sim,
            "/_sim/send_raw",
            json!({"raw": "this is not an e-mail at all", "via": "smtp",
                   "envelope_from": "x@example.test", "recipients": [mail.address]}),
        )
        .await;
    assert_eq!(malformed["delivery"]["status"].as_u64(), Some(550), "{malformed}");
    let forged = "timestamp=1767225600&token=a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829&signature=00&body-mime=From%3A%20a%40x.test%0D%0A%0D%0Ahi";
    let (status, body) = s
        .raw_post(
            &mail.mailgun,
            vec![("content-type", "application/x-www-form-urlencoded".into())],
            forged.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_signature"),
        "{body}"
    );

    // The same message delivered twice (a relay retry) is one message.
    let raw = "From: ana@example.test\r\nTo: support@acme-outfitters.example\r\nSubject: again\r\nMessage-ID: <retry-1@example.test>\r\n\r\nSent twice\r\n";
    for _ in 0..2 {
        let answer = s
            .sim_post(&mail.sim, "/_sim/send_raw", json!({"raw": raw, "via": "smtp"}))
            .await;
        assert_eq!(answer["delivery"]["status"].as_u64(), Some(250), "{answer}");
    }
    let thread = messages(&s, &conversation, 5).await;
    let bodies: Vec<&str> = thread.iter().filter_map(|m| m["body"].as_str()).collect();
    assert_eq!(bodies.iter().filter(|b| **b == "Sent twice").count(), 1, "{bodies:?}");
    assert_eq!(bodies.len(), 5, "{bodies:?}");
    assert_eq!(
        mail.account,
        thread[0]["channel_account_id"].as_str().unwrap_or_default()
    );
}

#[tokio::test]
async fn email_bounces_suppress_the_address_and_one_click_unsubscribe_revokes_marketing() {
    let s = TestServer::start().await;
    let mail = demo_mail(&s);
    for who in ["bob@example.test", "carol@example.test"] {
        customer_writes(
            &s,
            &mail,
            json!({"from": who, "subject": "Hi", "text": "Hello", "via": "smtp"}),
        )
        .await;
    }
    let bob = conversation_of(&s, "bob%40example.test").await;
    let carol = conversation_of(&s, "carol%40example.test").await;
    let marketing = |text: &str| json!({"text": text, "purpose": "marketing"});
    s.opt_in_marketing(&bob, "email").await;
    s.opt_in_marketing(&carol, "email").await;

    // Marketing mail carries the one-click headers; a link scanner's GET changes nothing,
    // the client's one-click POST unsubscribes, and the next campaign mail is refused.
    let (status, offer) = s
        .post(
            &format!("/api/v1/conversations/{bob}/messages"),
            &s.admin_token,
            marketing("Spring sale"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{offer}");
    let got = mailbox(&s, &mail, "bob@example.test", 1).await.remove(0);
    assert!(
        got["list_unsubscribe"]
            .as_str()
            .is_some_and(|u| u.contains("/unsubscribe/")),
        "{got}"
    );
    assert_eq!(got["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
    let id = got["id"].as_str().expect("id");
    let scan = s.sim_post(&mail.sim, &format!("/_sim/prefetch/{id}"), json!({})).await;
    assert_eq!(scan["status"].as_u64(), Some(200), "{scan}");
    let (status, still) = s
        .post(
            &format!("/api/v1/conversations/{bob}/messages"),
            &s.admin_token,
            marketing("Still on"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "a prefetch does not unsubscribe: {still}");
    let click = s
        .sim_post(&mail.sim, &format!("/_sim/unsubscribe/{id}"), json!({}))
        .await;
    assert_eq!(click["status"].as_u64(), Some(200), "{click}");
    let (status, refused) = s
        .post(
            &format!("/api/v1/conversations/{bob}/messages"),
            &s.admin_token,
            marketing("Last chance"),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::UNPROCESSABLE_ENTITY, "consent_revoked"),
        "{refused}"
    );

    // A hard bounce (a DSN to our VERP address) fails the message and suppresses the address.
    let (_, sent) = s
        .post(
            &format!("/api/v1/conversations/{carol}/messages"),
            &s.admin_token,
            marketing("Spring sale"),
        )
        .await;
    let sent_id = sent["id"].as_str().expect("id").to_owned();
    s.until_message(&carol, &sent_id, "sent").await;
    let got = mailbox(&s, &mail, "carol@example.test", 1).await.remove(0);
    let bounce = s
        .sim_post(
            &mail.sim,
            &format!("/_sim/bounce/{}", got["id"].as_str().expect("id")),
            json!({"status": "5.1.1", "diagnostic": "550 5.1.1 user unknown", "via": "smtp"}),
        )
        .await;
    assert_eq!(bounce["delivery"]["status"].as_u64(), Some(250), "{bounce}");
    let failed = s.until_message(&carol, &sent_id, "failed").await;
    assert_eq!(failed["error_code"], "5.1.1", "{failed}");
    let (status, refused) = s
        .post(
            &format!("/api/v1/conversations/{carol}/messages"),
            &s.admin_token,
            marketing("Again"),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::UNPROCESSABLE_ENTITY, "address_suppressed"),
        "{refused}"
    );
    // The bounce is not a customer message in her thread.
    let thread = messages(&s, &carol, 2).await;
    assert!(
        thread
            .iter()
            .all(|m| m["author_kind"] != "customer" || m["body"] == "Hello"),
        "{thread:?}"
    );
}

/// Scenario 2: a customer writes on Telegram today and e-mails tomorrow; the agent sees one
/// conversation, messages in time order with their channels, replies by e-mail (the channel
/// she last used) and then picks Telegram for a second reply.
#[tokio::test]
async fn scenario_02_one_thread_telegram_email() {
    let day = 86_400_000;
    let clock = ManualClock::new(sb_core::Clock::now_ms(&sb_core::SystemClock));
    let s = TestServer::start_at(Time::Manual(clock.clone()), |_| {}).await;
    let mail = demo_mail(&s);
    let creds = &s.server.demo.as_ref().expect("demo").channels["telegram"];
    let telegram_sim = creds["simulator_url"].as_str().expect("telegram simulator").to_owned();
    let telegram_account = creds["account_id"].as_str().expect("account").to_owned();
    let now = sb_core::Clock::now_ms(clock.as_ref());
    for sim in [&telegram_sim, &mail.sim] {
        s.sim_post(sim, "/_sim/clock", json!({"set_ms": now})).await;
    }

    // Today, on Telegram.
    let user = 5_550_002_222_i64;
    let sent = s
        .sim_post(
            &telegram_sim,
            "/_sim/telegram/customer-message",
            json!({"user_id": user, "first_name": "Ana", "text": "Do you have the blue jacket in M?"}),
        )
        .await;
    assert_eq!(sent["delivered_status"].as_u64(), Some(200), "{sent}");
    let list = s
        .until("/api/v1/conversations?channel=telegram", |b| {
            b["items"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let conversation = list["items"][0]["id"].as_str().expect("id").to_owned();
    let (_, detail) = s
        .get(&format!("/api/v1/conversations/{conversation}"), &s.admin_token)
        .await;
    let customer = detail["customer"]["id"].as_str().expect("customer").to_owned();
    // She tells the agent her e-mail address; the agent links it to her profile.
    let (status, linked) = s
        .post(
            &format!("/api/v1/customers/{customer}/identities"),
            &s.admin_token,
            json!({"kind": "email", "value": "Ana@Example.test"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{linked}");

    // Tomorrow, by e-mail.
    clock.advance(day);
    for sim in [&telegram_sim, &mail.sim] {
        s.sim_post(sim, "/_sim/clock", json!({"advance_ms": day})).await;
    }
    customer_writes(
        &s,
        &mail,
        json!({"from": "Ana <ana@example.test>", "subject": "Blue jacket", "text": "Any news on the jacket?", "via": "smtp"}),
    )
    .await;
    let thread = messages(&s, &conversation, 2).await;
    let marks: Vec<(&str, &str)> = thread
        .iter()
        .map(|m| (m["body"].as_str().unwrap_or(""), m["channel"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        marks,
        vec![
            ("Do you have the blue jacket in M?", "telegram"),
            ("Any news on the jacket?", "email")
        ]
    );
    let list = s.get("/api/v1/conversations", &s.admin_token).await.1;
    let theirs: Vec<&Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["customer_id"] == customer.as_str())
        .collect();
    assert_eq!(theirs.len(), 1, "one conversation: {list}");
    assert_eq!(theirs[0]["last_inbound_account_id"], mail.account.as_str());

    // The default reply goes by e-mail, the channel she used last.
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let (status, by_mail) = s
        .post(&path, &s.admin_token, json!({"text": "Yes, it is back in stock."}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{by_mail}");
    assert_eq!(by_mail["channel"], "email");
    s.until_message(&conversation, by_mail["id"].as_str().expect("id"), "sent")
        .await;
    let got = mailbox(&s, &mail, "ana@example.test", 1).await.remove(0);
    assert_eq!(got["subject"], "Re: Blue jacket");

    // A second reply, chosen for Telegram, reaches the Telegram simulator.
    let (status, by_telegram) = s
        .post(
            &path,
            &s.admin_token,
            json!({"text": "I have put one aside for you.", "channel_account_id": telegram_account}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{by_telegram}");
    assert_eq!(by_telegram["channel"], "telegram");
    s.until_message(&conversation, by_telegram["id"].as_str().expect("id"), "sent")
        .await;
    let calls = s
        .provider_calls(&telegram_sim, "/_sim/telegram/sent", 1, |r| {
            r["method"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case("sendMessage"))
        })
        .await;
    assert_eq!(calls[0]["body"]["chat_id"].as_i64(), Some(user));
    assert_eq!(calls[0]["body"]["text"], "I have put one aside for you.");
}
