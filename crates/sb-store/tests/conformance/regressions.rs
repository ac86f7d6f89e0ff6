//! Regression tests for bugs found by this suite, now fixed, and for the semantics decided
//! while fixing them.

use sb_sql::{Stmt, Value};
use sb_store::StoreError;
use sb_store::jobs::{self, NewJob};

use crate::harness::{Ctx, for_each_backend, tag};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_concurrency_key_does_not_starve_other_jobs() {
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let cold = t
            .write(move |c| {
                for n in 0..40 {
                    jobs::enqueue(
                        c,
                        &NewJob::new("q", "hot", n.to_string(), now).concurrency("shop:hot"),
                        now,
                    )?;
                }
                jobs::enqueue(c, &NewJob::new("q", "cold", "{}", now + 1), now)
            })
            .await
            .expect("enqueue")
            .expect("no dedupe key");
        t.advance(10);
        let now = t.now();
        let first = t
            .write(move |c| jobs::claim(c, "q", "w1", now, 30_000, 1))
            .await
            .expect("claim");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].kind, "hot");
        // One hot job runs; the other 39 wait for it. The keyless job is due and free.
        let second = t
            .write(move |c| jobs::claim(c, "q", "w2", now, 30_000, 1))
            .await
            .expect("claim");
        assert_eq!(
            second.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            vec![cold.as_str()],
            "{}",
            tag(
                &t,
                "a due job with a free (or no) key is claimed whatever waits ahead of it"
            )
        );
    })
    .await;
}

/// A dead job is unresolved work: it keeps its de-duplication key until it is retried and
/// finishes, so a duplicate enqueue cannot create a second copy of the same work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_job_keeps_its_dedupe_key_until_it_is_retried_and_finishes() {
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let ws = t
            .write(move |c| sb_store::workspaces::create(c, "w", now))
            .await
            .expect("workspace");
        let job = NewJob::new("q", "sync", "{}", now)
            .workspace(&ws.id)
            .dedupe("sync:1")
            .max_attempts(1);
        let first = job.clone();
        let id = t
            .write(move |c| jobs::enqueue(c, &first, now))
            .await
            .expect("enqueue")
            .expect("first");
        let claimed = t
            .write(move |c| jobs::claim(c, "q", "w", now, 30_000, 1))
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        let dead = id.clone();
        assert!(
            t.write(move |c| jobs::fail(c, &dead, "w", "gave up", None, now))
                .await
                .expect("fail")
        );
        let again = job.clone();
        let duplicate = t
            .write(move |c| jobs::enqueue(c, &again, now))
            .await
            .expect("enqueue again");
        assert!(duplicate.is_none(), "{}", tag(&t, "the dead job still holds the key"));
        let (wsid, rid) = (ws.id.clone(), id.clone());
        let retried = t
            .write(move |c| jobs::retry_dead(c, &wsid, &rid, now))
            .await
            .expect("retry");
        assert!(retried.is_some_and(|j| j.state == "ready"));
        let claimed = t
            .write(move |c| jobs::claim(c, "q", "w", now, 30_000, 1))
            .await
            .expect("claim");
        let done = claimed[0].id.clone();
        assert!(t.write(move |c| jobs::complete(c, &done, "w")).await.expect("complete"));
        let fresh = t
            .write(move |c| jobs::enqueue(c, &job, now))
            .await
            .expect("enqueue after finish");
        assert!(fresh.is_some(), "{}", tag(&t, "a finished job frees its key"));
    })
    .await;
}

/// A statement, the value bound to `:x`, and what an acceptable result looks like.
type Case = (&'static str, Value, fn(&Value) -> bool);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_bound_to_another_type_is_converted_or_rejected() {
    for_each_backend(|t: Ctx| async move {
        let cases: [Case; 3] = [
            ("SELECT CAST(:x AS BIGINT) AS v", Value::F64(1.5), |v| {
                matches!(v, Value::I64(1 | 2))
            }),
            ("SELECT CAST(:x AS BIGINT) AS v", Value::Text("12345678".into()), |v| {
                *v == Value::I64(12_345_678)
            }),
            ("SELECT CAST(:x AS TEXT) AS v", Value::I64(0x4142_4344_4546_4748), |v| {
                *v == Value::Text(0x4142_4344_4546_4748_i64.to_string())
            }),
        ];
        for (sql, value, fine) in cases {
            let bound = value.clone();
            let got: Result<Option<Value>, StoreError> = t
                .read(move |c| Ok(c.query_one(&Stmt::new(sql).bind("x", bound))?.value("v").cloned()))
                .await;
            if let Ok(Some(v)) = &got {
                assert!(fine(v), "{}: {value:?} read back as {v:?}", tag(&t, sql));
            }
        }
    })
    .await;
}

/// Both backends end a unit of work at its first failed statement, so code that catches an
/// error and goes on cannot work on one backend and fail on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_statement_ends_the_unit_of_work_on_every_backend() {
    for_each_backend(|t: Ctx| async move {
        let insert = |id: &'static str| {
            Stmt::new("INSERT INTO workspaces (id, name, created_at) VALUES (:id, 'w', 0)").bind("id", id)
        };
        let result = t
            .write(move |c| {
                c.execute(&insert("a"))?;
                let duplicate = c.execute(&insert("a"));
                assert!(duplicate.is_err_and(|e| e.is_unique_violation()));
                let after = c.execute(&insert("b"));
                assert!(matches!(after, Err(sb_sql::SqlError::Aborted(_))), "{after:?}");
                after.map(|_| ()).map_err(sb_store::StoreError::from)
            })
            .await;
        assert!(result.is_err(), "{}", tag(&t, "the unit failed"));
        assert_eq!(
            t.count("SELECT COUNT(*) AS n FROM workspaces").await,
            0,
            "{}",
            tag(&t, "and nothing of it was kept")
        );
    })
    .await;
}
