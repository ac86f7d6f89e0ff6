//! Inbox invariants on both backends.

use sb_store::channel_accounts;
use sb_store::customers::{self, Hint};
use sb_store::workspaces;

use crate::harness::{Ctx, for_each_backend, tag};

/// Many messages from one new person, processed at once on several connections, make one
/// customer: a shared global identifier never ends up on two customers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resolutions_of_one_identifier_make_one_customer() {
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let (ws, accounts) = t
            .write(move |c| {
                let ws = workspaces::create(c, "w", now)?;
                let mut accounts = Vec::new();
                for n in 0..4 {
                    accounts.push(channel_accounts::create(c, &ws.id, "api", &format!("a{n}"), "{}", "{}", now)?.id);
                }
                Ok((ws.id, accounts))
            })
            .await
            .expect("setup");
        let mut tasks = Vec::new();
        for n in 0..16 {
            let (db, ws, account) = (t.store.db.clone(), ws.clone(), accounts[n % 4].clone());
            tasks.push(tokio::spawn(async move {
                db.write(move |c| {
                    let user = format!("user-{n}");
                    let hints = [
                        Hint {
                            kind: "api",
                            value: &user,
                            verified: true,
                        },
                        Hint {
                            kind: "email",
                            value: "ana@example.com",
                            verified: true,
                        },
                    ];
                    customers::resolve(c, &ws, &account, &hints, Some("Ana"), now)
                })
                .await
            }));
        }
        let mut owners = Vec::new();
        for task in tasks {
            owners.push(task.await.expect("task").expect("resolve"));
        }
        owners.sort();
        owners.dedup();
        assert_eq!(owners.len(), 1, "{}", tag(&t, "one customer"));
        assert_eq!(
            t.count("SELECT COUNT(*) AS n FROM customers").await,
            1,
            "{}",
            tag(&t, "one customer row")
        );
        assert_eq!(
            t.count("SELECT COUNT(*) AS n FROM identities").await,
            17,
            "{}",
            tag(&t, "16 scoped ids and one e-mail")
        );
    })
    .await;
}

/// The widget's store parts behave alike on both backends: an unverified claim never attaches
/// what someone holds and is taken over by a verified holder; uploads are claimed once, by
/// their uploader only; "seen" moves only sent and delivered messages to read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_uploads_and_seen_behave_alike_on_both_backends() {
    use sb_store::attachments::{self, NewAttachment};
    use sb_store::conversations;
    use sb_store::messages::{self, NewMessage};
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let outcome = t
            .write(move |c| {
                let ws = workspaces::create(c, "w", now)?.id;
                let widget = channel_accounts::create(c, &ws, "widget", "site", "{}", "{}", now)?.id;
                let visitor = |c: &mut dyn sb_store::Conn, id: &str| {
                    let hint = Hint {
                        kind: "visitor",
                        value: id,
                        verified: true,
                    };
                    customers::resolve(c, &ws, &widget, &[hint], None, now)
                };
                let (claimer, real) = (visitor(c, "v-1")?, visitor(c, "v-2")?);
                let claim = Hint {
                    kind: "user_id",
                    value: "cust-9",
                    verified: false,
                };
                let claimed = customers::attach(c, &ws, &claimer, &claim, "", now)?;
                let verified_before = customers::find_verified_owner(c, &ws, "user_id", "", "cust-9")?;
                let taken = customers::attach_verified(c, &ws, &real, "user_id", "", "cust-9", now)?;
                let owner_after = customers::find_verified_owner(c, &ws, "user_id", "", "cust-9")?;
                let again = customers::attach_verified(c, &ws, &claimer, "user_id", "", "cust-9", now)?;

                let file = NewAttachment {
                    workspace_id: &ws,
                    channel_account_id: Some(&widget),
                    customer_id: Some(&real),
                    filename: "a.txt",
                    content_type: "text/plain",
                    data: b"hello",
                };
                let meta = attachments::insert(c, &file, now)?;
                let ids = vec![meta.id.clone()];
                let not_theirs = attachments::unclaimed(c, &ws, &claimer, &ids)?;
                let conversation = conversations::for_customer(c, &ws, &real, now)?;
                let reply = |c: &mut dyn sb_store::Conn, status: &str, at: i64| {
                    let new = NewMessage {
                        workspace_id: &ws,
                        conversation_id: &conversation.id,
                        customer_id: &real,
                        channel_account_id: Some(&widget),
                        channel: Some("widget"),
                        direction: "outbound",
                        author_kind: "user",
                        author_id: None,
                        body: "hi",
                        provider_message_id: None,
                        status,
                        sent_at: at,
                        attachments_json: "[]",
                        template_json: None,
                        purpose: "conversation",
                        meta_json: None,
                    };
                    Ok::<_, sb_store::StoreError>(messages::insert(c, &new, now)?.expect("inserted").id)
                };
                let sent = reply(c, "sent", now)?;
                reply(c, "queued", now)?;
                reply(c, "failed", now)?;
                reply(c, "sent", now + 10_000)?;
                let claimed_by = attachments::claim(c, &ws, &real, &ids, &sent)?.map(|m| m.len());
                let twice = attachments::claim(c, &ws, &real, &ids, &sent)?;
                let read = messages::mark_read_through(c, &ws, &conversation.id, &widget, now, now)?;
                let bytes = attachments::get(c, &ws, &meta.id)?.map(|a| a.data);
                Ok((
                    claimed,
                    verified_before,
                    taken,
                    owner_after == Some(real.clone()),
                    again,
                    not_theirs.is_none(),
                    claimed_by,
                    twice.is_none(),
                    read.iter().map(|m| m.id.clone()).collect::<Vec<_>>() == vec![sent],
                    bytes,
                ))
            })
            .await
            .expect("widget store parts");
        assert_eq!(
            outcome,
            (
                true,
                None,
                true,
                true,
                false,
                true,
                Some(1),
                true,
                true,
                Some(b"hello".to_vec())
            ),
            "{}",
            tag(&t, "claims, uploads, seen")
        );
    })
    .await;
}

/// The inbound queue: one statement stores a request and tells a provider retry from a replay;
/// batches come oldest first; a request set aside after failures leaves the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_requests_queue_in_order_and_tell_retries_from_replays() {
    use sb_store::inbound::{self, NewInbound, Stored};
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let outcome = t
            .write(move |c| {
                let ws = workspaces::create(c, "w", now)?.id;
                let account = channel_accounts::create(c, &ws, "api", "a", "{}", "{}", now)?.id;
                let mut store = |key: &str, signature: &str, at: i64| {
                    let new = NewInbound {
                        workspace_id: &ws,
                        channel_account_id: &account,
                        dedupe_key: key,
                        signature_digest: signature,
                        headers_json: "[]",
                        body: b"{}",
                    };
                    inbound::store(c, &new, at)
                };
                let first = store("m-1", "sig-1", now + 2)?;
                let retry = store("m-1", "sig-1b", now + 3)?;
                let replay = store("m-1", "sig-1", now + 4)?;
                let second = store("m-0", "sig-0", now + 1)?;
                let batch: Vec<String> = inbound::claim_batch(c, 10)?.into_iter().map(|r| r.dedupe_key).collect();
                let Stored::New(first_id) = first.clone() else {
                    return Ok((first, retry, replay, batch, Vec::new()));
                };
                inbound::record_failure(c, &first_id, "boom", false, now)?;
                inbound::record_failure(c, &first_id, "boom", true, now)?;
                let left: Vec<String> = inbound::claim_batch(c, 10)?.into_iter().map(|r| r.dedupe_key).collect();
                let _ = second;
                Ok((first, retry, replay, batch, left))
            })
            .await
            .expect("inbound queue");
        assert!(matches!(outcome.0, Stored::New(_)), "{}", tag(&t, "stored"));
        assert_eq!(
            (outcome.1, outcome.2, outcome.3, outcome.4),
            (
                Stored::Duplicate,
                Stored::Replayed,
                vec!["m-0".to_owned(), "m-1".to_owned()],
                vec!["m-0".to_owned()]
            ),
            "{}",
            tag(&t, "retry, replay, order, set aside")
        );
    })
    .await;
}
