//! Durable jobs: the transactional outbox, de-duplication, claiming, leases, concurrency
//! keys, failure and retry.

use std::collections::HashMap;

use sb_store::StoreError;
use sb_store::jobs::{self, Job, NewJob};
use sb_store::workspaces;

use crate::harness::{Ctx, for_each_backend, tag};

const LEASE: i64 = 30_000;

async fn enqueue(t: &Ctx, job: NewJob) -> Option<String> {
    let now = t.now();
    t.write(move |c| jobs::enqueue(c, &job, now)).await.expect("enqueue")
}

async fn claim(t: &Ctx, queue: &'static str, owner: &'static str, limit: i64) -> Vec<Job> {
    let now = t.now();
    t.write(move |c| jobs::claim(c, queue, owner, now, LEASE, limit))
        .await
        .expect("claim")
}

async fn complete(t: &Ctx, id: &str, owner: &'static str) -> bool {
    let id = id.to_owned();
    t.write(move |c| jobs::complete(c, &id, owner)).await.expect("complete")
}

async fn get(t: &Ctx, ws: &str, id: &str) -> Option<Job> {
    let (ws, id) = (ws.to_owned(), id.to_owned());
    t.read(move |c| jobs::get(c, &ws, &id)).await.expect("get job")
}

async fn next_due(t: &Ctx, queue: &'static str) -> Option<i64> {
    t.read(move |c| jobs::next_due(c, queue)).await.expect("next_due")
}

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_inside_a_rolled_back_transaction_leaves_no_job() {
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let failed = t
            .write(move |c| {
                let ws = workspaces::create(c, "doomed", now)?;
                let job = NewJob::new("mail", "welcome", r#"{"ws":"doomed"}"#, now)
                    .workspace(&ws.id)
                    .dedupe("welcome:doomed");
                jobs::enqueue(c, &job, now)?.expect("enqueued inside the transaction");
                Err::<(), _>(StoreError::Invalid("the domain write failed after enqueueing".into()))
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Invalid(_))));
        assert_eq!(
            t.count("SELECT COUNT(*) AS n FROM jobs").await,
            0,
            "{}",
            tag(&t, "no job without its domain write")
        );
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM workspaces").await, 0);
        assert!(claim(&t, "mail", "w", 10).await.is_empty());

        // The same unit committed: both rows, and the rolled-back dedupe key was never held.
        let (ws, job_id) = t
            .write(move |c| {
                let ws = workspaces::create(c, "kept", now)?;
                let job = NewJob::new("mail", "welcome", r#"{"ws":"kept"}"#, now)
                    .workspace(&ws.id)
                    .dedupe("welcome:doomed");
                Ok((ws, jobs::enqueue(c, &job, now)?))
            })
            .await
            .expect("commit");
        let job_id = job_id.expect("the dedupe key is free");
        let job = get(&t, &ws.id, &job_id)
            .await
            .expect("job committed with its workspace");
        assert_eq!(
            (job.queue.as_str(), job.kind.as_str(), job.state.as_str(), job.attempts),
            ("mail", "welcome", "ready", 0)
        );
        assert_eq!(
            (job.payload.as_str(), job.run_at, job.created_at),
            (r#"{"ws":"kept"}"#, now, now)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_key_keeps_one_live_job() {
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let first = enqueue(&t, NewJob::new("q", "sync", "1", now).dedupe("sync:42"))
            .await
            .expect("first");
        assert_eq!(
            enqueue(&t, NewJob::new("q", "sync", "2", now).dedupe("sync:42")).await,
            None,
            "{}",
            tag(&t, "duplicate")
        );
        let (in_one_tx_a, in_one_tx_b) = t
            .write(move |c| {
                let job = NewJob::new("q", "sync", "3", now).dedupe("sync:43");
                Ok((jobs::enqueue(c, &job, now)?, jobs::enqueue(c, &job, now)?))
            })
            .await
            .expect("twice in one transaction");
        assert!(
            in_one_tx_a.is_some() && in_one_tx_b.is_none(),
            "{}",
            tag(&t, "duplicate in the same transaction")
        );
        // Jobs without a key are never de-duplicated.
        assert!(enqueue(&t, NewJob::new("q", "free", "", now)).await.is_some());
        assert!(enqueue(&t, NewJob::new("q", "free", "", now)).await.is_some());
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM jobs").await, 4);

        // While the job runs the key is still taken; once finished it is free again.
        let claimed = claim(&t, "q", "w", 10).await;
        assert_eq!(claimed.len(), 4);
        let running = claimed.iter().find(|j| j.id == first).expect("first claimed");
        assert_eq!(running.payload, "1", "{}", tag(&t, "the first payload was kept"));
        assert_eq!(
            enqueue(&t, NewJob::new("q", "sync", "4", now).dedupe("sync:42")).await,
            None
        );
        assert!(complete(&t, &first, "w").await);
        let again = enqueue(&t, NewJob::new("q", "sync", "5", now).dedupe("sync:42"))
            .await
            .expect("key free after completion");
        assert_ne!(again, first);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_respects_run_at_and_leases() {
    for_each_backend(|t: Ctx| async move {
        let ws = t.workspace("acme").await;
        let start = t.now();
        let id = enqueue(&t, NewJob::new("q", "later", "{}", start + 1000).workspace(&ws.id))
            .await
            .expect("enqueue");
        enqueue(&t, NewJob::new("other", "elsewhere", "{}", start))
            .await
            .expect("a job in another queue");
        assert_eq!(next_due(&t, "q").await, Some(start + 1000));
        assert_eq!(next_due(&t, "empty").await, None);

        assert!(
            claim(&t, "q", "w1", 10).await.is_empty(),
            "{}",
            tag(&t, "not before run_at")
        );
        t.advance(999);
        assert!(
            claim(&t, "q", "w1", 10).await.is_empty(),
            "{}",
            tag(&t, "not 1 ms before run_at")
        );
        let at = t.advance(1);
        let first = claim(&t, "q", "w1", 10).await;
        assert_eq!(ids(&first), vec![id.as_str()], "{}", tag(&t, "due at run_at"));
        let job = &first[0];
        assert_eq!(
            (job.attempts, job.lease_owner.as_deref(), job.lease_until),
            (1, Some("w1"), Some(at + LEASE))
        );
        assert_eq!(
            next_due(&t, "q").await,
            Some(at + LEASE),
            "{}",
            tag(&t, "a running job is next due at its lease end")
        );

        assert!(
            claim(&t, "q", "w2", 10).await.is_empty(),
            "{}",
            tag(&t, "a leased job is not claimed again")
        );
        t.set_to(at + LEASE);
        assert!(
            claim(&t, "q", "w2", 10).await.is_empty(),
            "{}",
            tag(&t, "the lease holds through lease_until")
        );
        t.advance(1);
        let second = claim(&t, "q", "w2", 10).await;
        assert_eq!(
            ids(&second),
            vec![id.as_str()],
            "{}",
            tag(&t, "claimed again after the lease expired")
        );
        assert_eq!((second[0].attempts, second[0].lease_owner.as_deref()), (2, Some("w2")));

        assert!(
            !complete(&t, &id, "w1").await,
            "{}",
            tag(&t, "the old owner lost the job")
        );
        assert!(complete(&t, &id, "w2").await);
        assert!(
            get(&t, &ws.id, &id).await.is_none(),
            "{}",
            tag(&t, "a finished job is deleted")
        );
        assert_eq!(next_due(&t, "q").await, None);
        assert_eq!(
            claim(&t, "other", "w3", 10).await.len(),
            1,
            "{}",
            tag(&t, "queues are separate")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_key_allows_one_running_job_per_key() {
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let k1 = enqueue(&t, NewJob::new("q", "sync", "1", now).concurrency("shop:1"))
            .await
            .expect("k1");
        let k2 = enqueue(&t, NewJob::new("q", "sync", "2", now + 1).concurrency("shop:1"))
            .await
            .expect("k2");
        let other = enqueue(&t, NewJob::new("q", "sync", "3", now + 2).concurrency("shop:2"))
            .await
            .expect("other key");
        let free = enqueue(&t, NewJob::new("q", "sync", "4", now + 3))
            .await
            .expect("no key");
        t.advance(10);

        let mut first: Vec<String> = claim(&t, "q", "w1", 10).await.into_iter().map(|j| j.id).collect();
        first.sort();
        let mut want = vec![k1.clone(), other.clone(), free.clone()];
        want.sort();
        assert_eq!(
            first,
            want,
            "{}",
            tag(&t, "one job per key in one claim, keyless jobs always")
        );
        assert!(
            claim(&t, "q", "w2", 10).await.is_empty(),
            "{}",
            tag(&t, "the key is held by a running job")
        );

        assert!(complete(&t, &k1, "w1").await);
        let second = claim(&t, "q", "w2", 10).await;
        assert_eq!(
            ids(&second),
            vec![k2.as_str()],
            "{}",
            tag(&t, "the next job of the key runs once the first finished")
        );

        // An expired lease frees the key as well.
        let third = enqueue(&t, NewJob::new("q", "sync", "5", t.now()).concurrency("shop:1"))
            .await
            .expect("k3");
        assert!(claim(&t, "q", "w3", 10).await.is_empty());
        t.advance(LEASE + 1);
        let mut after: Vec<String> = claim(&t, "q", "w3", 10).await.into_iter().map(|j| j.id).collect();
        after.sort();
        // k2's lease expired too: k2 (earlier run_at) is re-claimed and k3 still waits, and the
        // other expired jobs come back.
        let mut want = vec![k2.clone(), other, free];
        want.sort();
        assert_eq!(after, want, "{}", tag(&t, "expired leases release their keys"));
        assert!(!after.contains(&third));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_then_dead_after_max_attempts_and_retry_dead() {
    for_each_backend(|t: Ctx| async move {
        let ws = t.workspace("acme").await;
        let id = enqueue(
            &t,
            NewJob::new("q", "flaky", "{}", t.now())
                .workspace(&ws.id)
                .max_attempts(3),
        )
        .await
        .expect("enqueue");

        // A worker's loop: retry with back-off while attempts remain, then give up.
        let mut outcomes = Vec::new();
        for round in 0..10 {
            let claimed = claim(&t, "q", "w", 1).await;
            let Some(job) = claimed.into_iter().next() else {
                if t.count("SELECT COUNT(*) AS n FROM jobs WHERE state = 'dead'").await == 1 {
                    break;
                }
                t.advance(1_000);
                continue;
            };
            let retry_at = (job.attempts < job.max_attempts).then(|| t.now() + 1_000);
            let (jid, now) = (job.id.clone(), t.now());
            let error = format!("attempt {} failed: {}", job.attempts, "é".repeat(3000));
            let failed = t
                .write(move |c| jobs::fail(c, &jid, "w", &error, retry_at, now))
                .await
                .expect("fail");
            assert!(failed, "{}", tag(&t, "the owner records the failure"));
            outcomes.push((job.attempts, retry_at.is_some()));
            assert!(round < 9, "bounded");
        }
        assert_eq!(
            outcomes,
            vec![(1, true), (2, true), (3, false)],
            "{}",
            tag(&t, "dead after max_attempts")
        );

        let dead = get(&t, &ws.id, &id).await.expect("dead jobs are kept");
        assert_eq!(
            (dead.state.as_str(), dead.attempts, dead.lease_owner.as_deref()),
            ("dead", 3, None)
        );
        let last_error = dead.last_error.expect("last error kept");
        assert!(last_error.starts_with("attempt 3 failed"));
        assert_eq!(
            last_error.chars().count(),
            2000,
            "{}",
            tag(&t, "errors are cut to 2000 characters")
        );
        t.advance(LEASE * 10);
        assert!(
            claim(&t, "q", "w", 10).await.is_empty(),
            "{}",
            tag(&t, "dead jobs are never claimed")
        );
        let ws_id = ws.id.clone();
        let dead_list = t
            .read(move |c| jobs::list_by_state(c, &ws_id, "dead", None, 10))
            .await
            .expect("list dead");
        assert_eq!(ids(&dead_list), vec![id.as_str()]);

        let (ws_id, jid, now) = (ws.id.clone(), id.clone(), t.now());
        let retried = t
            .write(move |c| jobs::retry_dead(c, &ws_id, &jid, now))
            .await
            .expect("retry")
            .expect("was dead");
        assert_eq!(
            (retried.state.as_str(), retried.attempts, retried.run_at),
            ("ready", 0, now)
        );
        let (ws_id, jid) = (ws.id.clone(), id.clone());
        assert!(
            t.write(move |c| jobs::retry_dead(c, &ws_id, &jid, now))
                .await
                .expect("retry")
                .is_none(),
            "only dead jobs"
        );
        let again = claim(&t, "q", "w", 10).await;
        assert_eq!(
            (ids(&again), again[0].attempts),
            (vec![id.as_str()], 1),
            "{}",
            tag(&t, "a fresh attempt budget")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_does_not_count_the_attempt() {
    for_each_backend(|t: Ctx| async move {
        let ws = t.workspace("acme").await;
        let id = enqueue(&t, NewJob::new("q", "k", "{}", t.now()).workspace(&ws.id))
            .await
            .expect("enqueue");
        let first = claim(&t, "q", "w1", 1).await;
        assert_eq!(first[0].attempts, 1);

        let (jid, now) = (id.clone(), t.now());
        let (by_stranger, by_owner, twice) = t
            .write(move |c| {
                Ok((
                    jobs::release(c, &jid, "w2", now)?,
                    jobs::release(c, &jid, "w1", now)?,
                    jobs::release(c, &jid, "w1", now)?,
                ))
            })
            .await
            .expect("release");
        assert!(
            !by_stranger && by_owner && !twice,
            "{}",
            tag(&t, "only the owner releases, once")
        );
        let released = get(&t, &ws.id, &id).await.expect("still there");
        assert_eq!(
            (released.attempts, released.lease_owner, released.lease_until),
            (0, None, None)
        );

        let second = claim(&t, "q", "w2", 1).await;
        assert_eq!(
            (ids(&second), second[0].attempts),
            (vec![id.as_str()], 1),
            "{}",
            tag(&t, "claimable at once, same attempt")
        );

        // Extending a lease keeps the job away from other claimers.
        let until = t.now() + LEASE * 3;
        let extended = t
            .write(move |c| jobs::extend_leases(c, "w2", until))
            .await
            .expect("extend");
        assert_eq!(extended, 1);
        t.advance(LEASE * 2);
        assert!(
            claim(&t, "q", "w3", 1).await.is_empty(),
            "{}",
            tag(&t, "extended lease holds")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_never_claim_the_same_job() {
    const JOBS: usize = 500;
    const CLAIMERS: usize = 6;
    const OWNERS: [&str; CLAIMERS] = ["c0", "c1", "c2", "c3", "c4", "c5"];
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let enqueued: Vec<String> = t
            .write(move |c| {
                let mut ids = Vec::with_capacity(JOBS);
                for n in 0..JOBS {
                    let job = NewJob::new("bulk", "n", n.to_string(), now - (n % 7) as i64);
                    ids.push(jobs::enqueue(c, &job, now)?.expect("no dedupe key"));
                }
                for n in 0..20 {
                    jobs::enqueue(c, &NewJob::new("elsewhere", "n", n.to_string(), now), now)?;
                }
                Ok(ids)
            })
            .await
            .expect("enqueue the batch");

        let tasks: Vec<_> = OWNERS
            .iter()
            .enumerate()
            .map(|(n, &owner)| {
                let db = t.db().clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    let limit = 1 + (n as i64 % 4);
                    for _ in 0..JOBS {
                        let claimed: Vec<Job> = db
                            .write(move |c| jobs::claim(c, "bulk", owner, now, LEASE, limit))
                            .await
                            .expect("claim");
                        if claimed.is_empty() {
                            break;
                        }
                        let claimed: Vec<String> = claimed.into_iter().map(|j| j.id).collect();
                        let done = claimed.clone();
                        let completed = db
                            .write(move |c| {
                                let mut n = 0;
                                for id in &done {
                                    n += usize::from(jobs::complete(c, id, owner)?);
                                }
                                Ok::<_, StoreError>(n)
                            })
                            .await
                            .expect("complete");
                        assert_eq!(completed, claimed.len(), "{owner} still held everything it claimed");
                        mine.extend(claimed);
                    }
                    mine
                })
            })
            .collect();

        let mut times_claimed: HashMap<String, usize> = HashMap::new();
        let mut per_claimer = Vec::new();
        for task in tasks {
            let mine = task.await.expect("claimer finished");
            per_claimer.push(mine.len());
            for id in mine {
                *times_claimed.entry(id).or_default() += 1;
            }
        }
        let twice: Vec<_> = times_claimed.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{}: {twice:?}",
            tag(&t, "jobs claimed more than once")
        );
        let never: Vec<_> = enqueued.iter().filter(|id| !times_claimed.contains_key(*id)).collect();
        assert!(
            never.is_empty(),
            "{}: {} never claimed",
            tag(&t, "every job claimed"),
            never.len()
        );
        assert_eq!(
            times_claimed.len(),
            JOBS,
            "{}: per claimer {per_claimer:?}",
            tag(&t, "only the queue's jobs")
        );
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM jobs WHERE queue = 'bulk'").await, 0);
        assert_eq!(
            t.count("SELECT COUNT(*) AS n FROM jobs WHERE queue = 'elsewhere'")
                .await,
            20
        );
    })
    .await;
}
