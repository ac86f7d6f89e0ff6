//! Tenancy, sessions and API tokens.

use sb_core::Role;
use sb_core::credentials::{new_api_token, random_secret, secret_digest};
use sb_store::jobs::{self, NewJob};
use sb_store::objects::{self, ObjectKind};
use sb_store::{sessions, tokens, users};

use crate::harness::{Ctx, for_each_backend, tag};

const HOUR: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_tokens_are_scoped_by_workspace() {
    for_each_backend(|t: Ctx| async move {
        let (a, b) = (t.workspace("a").await, t.workspace("b").await);
        let (ua, ub) = (
            t.user(&a.id, "ua@example.com").await,
            t.user(&b.id, "ub@example.com").await,
        );
        let secret_b = new_api_token();
        let (user_b, digest_b, now) = (ub.clone(), secret_digest(&secret_b), t.now());
        let tb = t
            .write(move |c| tokens::create(c, &user_b, "b's token", &digest_b, now))
            .await
            .expect("token b");
        let user_a = ua.clone();
        let ta = t
            .write(move |c| tokens::create(c, &user_a, "a's token", &secret_digest("a-secret"), now))
            .await
            .expect("token a");
        let job_b = {
            let ws = b.id.clone();
            t.write(move |c| jobs::enqueue(c, &NewJob::new("q", "k", "{}", now).workspace(&ws), now))
                .await
                .expect("job b")
                .expect("not a duplicate")
        };

        let (a_id, b_id, ub_id, ua_id, tb_id, job_b_id) = (
            a.id.clone(),
            b.id.clone(),
            ub.id.clone(),
            ua.id.clone(),
            tb.id.clone(),
            job_b.clone(),
        );
        let later = t.advance(1000);
        let seen = t
            .write(move |c| {
                Ok((
                    users::get(c, &a_id, &ub_id)?.is_none(),
                    users::get(c, &b_id, &ub_id)?.map(|u| u.email),
                    users::list(c, &a_id, None, 100)?
                        .into_iter()
                        .map(|u| u.id)
                        .collect::<Vec<_>>(),
                    users::update_role(c, &a_id, &ub_id, Role::Admin, later)?,
                    users::set_disabled(c, &a_id, &ub_id, true, later)?,
                    tokens::get(c, &a_id, &tb_id)?.is_none(),
                    tokens::list(c, &a_id, None, None, 100)?
                        .into_iter()
                        .map(|t| t.id)
                        .collect::<Vec<_>>(),
                    tokens::list(c, &a_id, Some(&ub_id), None, 100)?.len(),
                    tokens::revoke(c, &a_id, &tb_id, later)?,
                    jobs::get(c, &a_id, &job_b_id)?.is_none(),
                    jobs::retry_dead(c, &a_id, &job_b_id, later)?.is_none(),
                    (
                        objects::owner_workspace(c, ObjectKind::User, &ub_id)?,
                        objects::owner_workspace(c, ObjectKind::User, &ua_id)?,
                        objects::owner_workspace(c, ObjectKind::ApiToken, &tb_id)?,
                        objects::owner_workspace(c, ObjectKind::Job, &job_b_id)?,
                        objects::owner_workspace(c, ObjectKind::User, "no-such-id")?,
                    ),
                ))
            })
            .await
            .expect("cross-workspace calls");
        let (
            hidden_user,
            own_user,
            a_users,
            role_changed,
            disabled,
            hidden_token,
            a_tokens,
            a_tokens_of_b,
            revoked,
            hidden_job,
            retried,
            owners,
        ) = seen;
        assert!(hidden_user, "{}", tag(&t, "users::get(a, user of b) is None"));
        assert_eq!(own_user.as_deref(), Some("ub@example.com"));
        assert_eq!(
            a_users,
            vec![ua.id.clone()],
            "{}",
            tag(&t, "a lists only its own users")
        );
        assert!(!role_changed && !disabled, "{}", tag(&t, "a cannot change b's user"));
        assert!(hidden_token, "{}", tag(&t, "tokens::get(a, token of b) is None"));
        assert_eq!(
            a_tokens,
            vec![ta.id.clone()],
            "{}",
            tag(&t, "a lists only its own tokens")
        );
        assert_eq!(a_tokens_of_b, 0);
        assert!(!revoked, "{}", tag(&t, "a cannot revoke b's token"));
        assert!(hidden_job && retried, "{}", tag(&t, "a cannot see or retry b's job"));
        assert_eq!(
            owners,
            (
                Some(b.id.clone()),
                Some(a.id.clone()),
                Some(b.id.clone()),
                Some(b.id.clone()),
                None
            ),
            "{}",
            tag(&t, "owner_workspace reports the real owner")
        );

        // b's user and token are untouched.
        let (b_id, ub_id, tb_id) = (b.id.clone(), ub.id.clone(), tb.id.clone());
        let (user, token, auth) = t
            .read(move |c| {
                Ok((
                    users::get(c, &b_id, &ub_id)?.expect("b's user"),
                    tokens::get(c, &b_id, &tb_id)?.expect("b's token"),
                    tokens::authenticate(c, &secret_digest(&secret_b))?,
                ))
            })
            .await
            .expect("read b");
        assert_eq!(
            (user.role(), user.disabled, user.updated_at),
            (Role::Agent, false, user.created_at)
        );
        assert_eq!(token.revoked_at, None);
        let (token_id, _last_used, who) = auth.expect("b's token still authenticates");
        assert_eq!((token_id, who.id, who.workspace_id), (tb.id, ub.id, b.id));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_yields_no_user() {
    for_each_backend(|t: Ctx| async move {
        let ws = t.workspace("acme").await;
        let user = t.user(&ws.id, "ana@example.com").await;
        let secret = random_secret();
        let digest = secret_digest(&secret);
        let (d, u, start) = (digest.clone(), user.clone(), t.now());
        t.write(move |c| sessions::create(c, &d, &u, start, HOUR))
            .await
            .expect("create session");

        let user_at = |at: i64, d: String| t.read(move |c| sessions::user_for(c, &d, at));
        let found = user_at(start, digest.clone()).await.expect("look up");
        assert_eq!(
            found.map(|u| u.id),
            Some(user.id.clone()),
            "{}",
            tag(&t, "a fresh session yields its user")
        );
        let found = user_at(start + HOUR - 1, digest.clone()).await.expect("look up");
        assert!(found.is_some(), "{}", tag(&t, "valid until just before expiry"));
        let found = user_at(start + HOUR, digest.clone()).await.expect("look up");
        assert!(found.is_none(), "{}", tag(&t, "expired at expires_at"));
        let found = user_at(start, secret.clone()).await.expect("look up");
        assert!(found.is_none(), "{}", tag(&t, "the raw secret is not what is stored"));

        // Expired sessions are swept; live ones stay.
        let (d2, u2) = (secret_digest("second"), user.clone());
        t.write(move |c| sessions::create(c, &d2, &u2, start + HOUR, HOUR))
            .await
            .expect("second session");
        let swept = t
            .write(move |c| sessions::delete_expired(c, start + HOUR))
            .await
            .expect("sweep");
        assert_eq!(swept, 1);
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM sessions").await, 1);
        let d2 = secret_digest("second");
        assert!(t.write(move |c| sessions::delete(c, &d2)).await.expect("sign out"));
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM sessions").await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_user_yields_no_user() {
    for_each_backend(|t: Ctx| async move {
        let ws = t.workspace("acme").await;
        let user = t.user(&ws.id, "ana@example.com").await;
        let (session, token) = (secret_digest("session"), secret_digest(&new_api_token()));
        let (s, tk, u, now) = (session.clone(), token.clone(), user.clone(), t.now());
        t.write(move |c| {
            sessions::create(c, &s, &u, now, HOUR)?;
            tokens::create(c, &u, "cli", &tk, now)
        })
        .await
        .expect("session and token");

        let probe = |session: String, token: String| {
            t.read(move |c| {
                Ok((
                    sessions::user_for(c, &session, now)?.is_some(),
                    tokens::authenticate(c, &token)?.is_some(),
                ))
            })
        };
        assert_eq!(
            probe(session.clone(), token.clone()).await.expect("probe"),
            (true, true)
        );

        let (ws_id, user_id) = (ws.id.clone(), user.id.clone());
        let changed = t
            .write(move |c| users::set_disabled(c, &ws_id, &user_id, true, now + 1))
            .await
            .expect("disable");
        assert!(changed);
        assert_eq!(
            probe(session.clone(), token.clone()).await.expect("probe"),
            (false, false),
            "{}",
            tag(&t, "a disabled user has neither sessions nor tokens")
        );

        let (ws_id, user_id) = (ws.id.clone(), user.id.clone());
        t.write(move |c| users::set_disabled(c, &ws_id, &user_id, false, now + 2))
            .await
            .expect("enable");
        assert_eq!(
            probe(session, token).await.expect("probe"),
            (true, true),
            "{}",
            tag(&t, "re-enabled")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_no_longer_authenticates() {
    for_each_backend(|t: Ctx| async move {
        let ws = t.workspace("acme").await;
        let user = t.user(&ws.id, "ana@example.com").await;
        let secret = new_api_token();
        let digest = secret_digest(&secret);
        let (d, u, now) = (digest.clone(), user.clone(), t.now());
        let token = t
            .write(move |c| tokens::create(c, &u, "cli", &d, now))
            .await
            .expect("create token");
        assert_eq!((token.last_used_at, token.revoked_at), (None, None));

        let authenticate = |d: String| t.read(move |c| tokens::authenticate(c, &d));
        let (token_id, last_used, who) = authenticate(digest.clone())
            .await
            .expect("authenticate")
            .expect("by digest");
        assert_eq!(
            (token_id.as_str(), who.id.as_str(), who.workspace_id.as_str()),
            (token.id.as_str(), user.id.as_str(), ws.id.as_str())
        );
        assert_eq!(last_used, None);
        assert!(
            authenticate(secret.clone()).await.expect("authenticate").is_none(),
            "{}",
            tag(&t, "not by the raw secret")
        );

        let (ws_id, id) = (ws.id.clone(), token.id.clone());
        let touched_at = t.advance(5);
        t.write(move |c| tokens::touch(c, &ws_id, &id, touched_at))
            .await
            .expect("touch");
        let (_, last_used, _) = authenticate(digest.clone())
            .await
            .expect("authenticate")
            .expect("still valid");
        assert_eq!(
            last_used,
            Some(touched_at),
            "{}",
            tag(&t, "authenticate reports the last use")
        );
        let (ws_id, id) = (ws.id.clone(), token.id.clone());
        let revoked_at = t.advance(5);
        let (first, second) = t
            .write(move |c| {
                Ok((
                    tokens::revoke(c, &ws_id, &id, revoked_at)?,
                    tokens::revoke(c, &ws_id, &id, revoked_at + 1)?,
                ))
            })
            .await
            .expect("revoke");
        assert!(
            first && !second,
            "{}",
            tag(&t, "revoking twice changes nothing the second time")
        );
        assert!(
            authenticate(digest).await.expect("authenticate").is_none(),
            "{}",
            tag(&t, "revoked")
        );

        let (ws_id, id) = (ws.id.clone(), token.id.clone());
        let stored = t
            .read(move |c| tokens::get(c, &ws_id, &id))
            .await
            .expect("get")
            .expect("still listed");
        assert_eq!(
            (stored.last_used_at, stored.revoked_at),
            (Some(touched_at), Some(revoked_at))
        );
    })
    .await;
}
