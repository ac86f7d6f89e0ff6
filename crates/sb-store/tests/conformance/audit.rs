//! The audit log.

use sb_store::audit::{self, Actor, AuditEntry, Change};
use serde_json::json;

use crate::harness::{Ctx, for_each_backend, tag};

async fn record(t: &Ctx, ws: &str, action: &'static str, n: i64) {
    let (ws, at) = (ws.to_owned(), t.advance(1));
    t.write(move |c| {
        let actor = Actor {
            kind: "user",
            id: Some(format!("user-{n}")),
            ip: Some("127.0.0.1".into()),
            request_id: Some(format!("req-{n}")),
        };
        let object_id = format!("obj-{n}");
        let change = Change {
            action,
            object_kind: "user",
            object_id: Some(&object_id),
            before: (n % 2 == 0).then(|| json!({ "n": n - 1 })),
            after: Some(json!({ "n": n, "name": "Zoë" })),
        };
        audit::record(c, &ws, &actor, &change, at)
    })
    .await
    .expect("record audit entry");
}

async fn list(t: &Ctx, ws: &str, action: Option<&'static str>, before: Option<String>, limit: i64) -> Vec<AuditEntry> {
    let ws = ws.to_owned();
    t.read(move |c| audit::list(c, &ws, action, before.as_deref(), limit))
        .await
        .expect("list audit entries")
}

fn numbers(entries: &[AuditEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.object_id.clone().unwrap_or_default())
        .collect()
}

fn objs(ns: &[i64]) -> Vec<String> {
    ns.iter().map(|n| format!("obj-{n}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_list_is_newest_first_filtered_and_paged() {
    for_each_backend(|t: Ctx| async move {
        let (a, b) = (t.workspace("a").await, t.workspace("b").await);
        for n in 1..=7 {
            record(&t, &a.id, if n % 2 == 1 { "user.create" } else { "user.update" }, n).await;
            if n % 3 == 0 {
                record(&t, &b.id, "user.create", 100 + n).await;
            }
        }
        record(&t, &a.id, "system.tick", 8).await;

        let all = list(&t, &a.id, None, None, 100).await;
        assert_eq!(
            numbers(&all),
            objs(&[8, 7, 6, 5, 4, 3, 2, 1]),
            "{}",
            tag(&t, "newest first, own workspace only")
        );
        assert!(all.windows(2).all(|w| w[0].id > w[1].id && w[0].at > w[1].at));
        assert!(all.iter().all(|e| e.workspace_id == a.id));

        // Every field comes back as written.
        let six = &all[2];
        assert_eq!(
            (
                six.actor_kind.as_str(),
                six.actor_id.as_deref(),
                six.action.as_str(),
                six.object_kind.as_str()
            ),
            ("user", Some("user-6"), "user.update", "user")
        );
        assert_eq!(
            (six.ip.as_deref(), six.request_id.as_deref()),
            (Some("127.0.0.1"), Some("req-6"))
        );
        let before: serde_json::Value =
            serde_json::from_str(six.before_json.as_deref().expect("before")).expect("json");
        let after: serde_json::Value = serde_json::from_str(six.after_json.as_deref().expect("after")).expect("json");
        assert_eq!((before, after), (json!({ "n": 5 }), json!({ "n": 6, "name": "Zoë" })));
        assert_eq!(all[1].before_json, None, "{}", tag(&t, "absent JSON is NULL"));

        let creates = list(&t, &a.id, Some("user.create"), None, 100).await;
        assert_eq!(
            numbers(&creates),
            objs(&[7, 5, 3, 1]),
            "{}",
            tag(&t, "filtered by action")
        );
        let b_entries = list(&t, &b.id, None, None, 100).await;
        assert_eq!(
            numbers(&b_entries),
            objs(&[106, 103]),
            "{}",
            tag(&t, "b sees only its own")
        );
        assert!(list(&t, "no-such-workspace", None, None, 100).await.is_empty());

        // Cursor paging: each page starts below the last id of the previous one.
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10 {
            let page = list(&t, &a.id, None, cursor.clone(), 3).await;
            if page.is_empty() {
                break;
            }
            cursor = page.last().map(|e| e.id.clone());
            pages.push(numbers(&page));
        }
        assert_eq!(
            pages,
            vec![objs(&[8, 7, 6]), objs(&[5, 4, 3]), objs(&[2, 1])],
            "{}",
            tag(&t, "pages of three, newest first, no overlap")
        );
        let filtered_page = list(&t, &a.id, Some("user.update"), Some(all[2].id.clone()), 10).await;
        assert_eq!(
            numbers(&filtered_page),
            objs(&[4, 2]),
            "{}",
            tag(&t, "filter and cursor together")
        );
    })
    .await;
}
