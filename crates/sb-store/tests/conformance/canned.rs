//! Canned responses: the workspace's shared reply library.

use sb_store::StoreError;
use sb_store::canned_responses;
use sb_store::objects::{self, ObjectKind};

use crate::harness::{Ctx, for_each_backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_responses_are_created_searched_updated_and_deleted() {
    for_each_backend(|t: Ctx| async move {
        let ws = t.workspace("canned").await;
        let agent = t.user(&ws.id, "agent@example.com").await;
        let (w, by, now) = (ws.id.clone(), agent.id.clone(), t.now());
        let (hours, pickup) = t
            .write(move |c| {
                let hours = canned_responses::create(c, &w, "hours", "We are open Mon–Sat, 9 to 18.", Some(&by), now)?;
                let pickup =
                    canned_responses::create(c, &w, "pickup_store", "Pick up at the Main Street STORE.", None, now)?;
                canned_responses::create(c, &w, "returns", "Returns are free within 30 days.", None, now)?;
                Ok((hours, pickup))
            })
            .await
            .expect("created");
        assert_eq!(hours.created_by.as_deref(), Some(agent.id.as_str()));

        let w = ws.id.clone();
        let (all, by_code, by_content_any_case, underscore, none, found) = t
            .read(move |c| {
                let codes =
                    |v: Vec<canned_responses::CannedResponse>| v.into_iter().map(|r| r.short_code).collect::<Vec<_>>();
                Ok((
                    codes(canned_responses::list(c, &w, None, 100)?),
                    codes(canned_responses::list(c, &w, Some("HOU"), 100)?),
                    codes(canned_responses::list(c, &w, Some("store"), 100)?),
                    codes(canned_responses::list(c, &w, Some("p_s"), 100)?),
                    codes(canned_responses::list(c, &w, Some("nothing like it"), 100)?),
                    canned_responses::find_by_short_code(c, &w, "returns")?.map(|r| r.content),
                ))
            })
            .await
            .expect("listed");
        assert_eq!(all, ["hours", "pickup_store", "returns"], "ordered by short code");
        assert_eq!(by_code, ["hours"], "search ignores case on the short code");
        assert_eq!(
            by_content_any_case,
            ["pickup_store"],
            "search ignores case on the content"
        );
        assert_eq!(
            underscore,
            ["pickup_store"],
            "an underscore in the term is literal, not a wildcard"
        );
        assert!(none.is_empty());
        assert_eq!(found.as_deref(), Some("Returns are free within 30 days."));

        let (w, id, later) = (ws.id.clone(), hours.id.clone(), t.advance(1000));
        let updated = t
            .write(move |c| canned_responses::update(c, &w, &id, Some("opening_hours"), None, later))
            .await
            .expect("updated")
            .expect("exists");
        assert_eq!(updated.short_code, "opening_hours");
        assert_eq!(
            updated.content, hours.content,
            "content kept when only the code changes"
        );
        assert_eq!((updated.created_at, updated.updated_at), (hours.created_at, later));

        let (w, id) = (ws.id.clone(), pickup.id.clone());
        let (deleted, deleted_again, gone) = t
            .write(move |c| {
                Ok((
                    canned_responses::delete(c, &w, &id)?,
                    canned_responses::delete(c, &w, &id)?,
                    canned_responses::get(c, &w, &id)?.is_none(),
                ))
            })
            .await
            .expect("deleted");
        assert!(deleted && !deleted_again && gone);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_short_codes_are_refused_within_a_workspace_only() {
    for_each_backend(|t: Ctx| async move {
        let (a, b) = (t.workspace("a").await, t.workspace("b").await);
        let (wa, wb, now) = (a.id.clone(), b.id.clone(), t.now());
        let (in_a, in_b) = t
            .write(move |c| {
                Ok((
                    canned_responses::create(c, &wa, "hours", "A's hours", None, now)?,
                    canned_responses::create(c, &wb, "hours", "B's hours", None, now)?,
                ))
            })
            .await
            .expect("the same short code in two workspaces");

        let wa = a.id.clone();
        let duplicate = t
            .write(move |c| canned_responses::create(c, &wa, "hours", "again", None, now))
            .await;
        assert!(matches!(duplicate, Err(StoreError::Conflict(_))), "{duplicate:?}");

        let (wa, now) = (a.id.clone(), t.now());
        let other = t
            .write(move |c| canned_responses::create(c, &wa, "returns", "Free returns.", None, now))
            .await
            .expect("another code");
        let (wa, id) = (a.id.clone(), other.id.clone());
        let renamed_onto_taken = t
            .write(move |c| canned_responses::update(c, &wa, &id, Some("hours"), None, now))
            .await;
        assert!(
            matches!(renamed_onto_taken, Err(StoreError::Conflict(_))),
            "{renamed_onto_taken:?}"
        );

        // Workspace A cannot see, change or delete B's response.
        let (wa, b_id) = (a.id.clone(), in_b.id.clone());
        let (listed, got, updated, deleted, owner) = t
            .write(move |c| {
                Ok((
                    canned_responses::list(c, &wa, None, 100)?
                        .into_iter()
                        .map(|r| r.content)
                        .collect::<Vec<_>>(),
                    canned_responses::get(c, &wa, &b_id)?,
                    canned_responses::update(c, &wa, &b_id, None, Some("hijacked"), now)?,
                    canned_responses::delete(c, &wa, &b_id)?,
                    objects::owner_workspace(c, ObjectKind::CannedResponse, &b_id)?,
                ))
            })
            .await
            .expect("cross-workspace calls");
        assert_eq!(listed, ["A's hours", "Free returns."]);
        assert!(got.is_none() && updated.is_none() && !deleted);
        assert_eq!(owner.as_deref(), Some(b.id.as_str()));

        let (wb, b_id) = (b.id.clone(), in_b.id.clone());
        let b_still = t
            .read(move |c| canned_responses::get(c, &wb, &b_id))
            .await
            .expect("read")
            .expect("B's response is untouched");
        assert_eq!(b_still.content, "B's hours");
        assert_ne!(in_a.id, in_b.id);
    })
    .await;
}
