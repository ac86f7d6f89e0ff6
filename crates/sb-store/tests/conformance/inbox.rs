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
