//! Timers: keyed, movable, fired once into a job.

use sb_sql::Stmt;
use sb_store::jobs;
use sb_store::timers::{self, NewTimer, Timer};

use crate::harness::{Ctx, for_each_backend, tag};

fn timer(ws: Option<&str>, key: &str, due_at: i64) -> NewTimer {
    NewTimer {
        workspace_id: ws.map(str::to_owned),
        timer_key: key.to_owned(),
        queue: "timers".into(),
        kind: "reminder".into(),
        payload: format!(r#"{{"key":"{key}"}}"#),
        due_at,
    }
}

async fn schedule(t: &Ctx, new: NewTimer) -> (String, i64) {
    let now = t.now();
    t.write(move |c| timers::schedule(c, &new, now))
        .await
        .expect("schedule")
}

async fn fire(t: &Ctx, ids: Vec<String>) -> Vec<Timer> {
    let now = t.now();
    t.write(move |c| timers::fire(c, &ids, now)).await.expect("fire")
}

async fn index(t: &Ctx, until: i64) -> Vec<(i64, String)> {
    t.read(move |c| timers::index_entries(c, until))
        .await
        .expect("index entries")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_fires_once_and_enqueues_its_job() {
    for_each_backend(|t: Ctx| async move {
        let ws = t.workspace("acme").await;
        let due = t.now() + 5_000;
        let (id, due_at) = schedule(&t, timer(Some(&ws.id), "remind:1", due)).await;
        assert_eq!(due_at, due);

        assert!(
            fire(&t, vec![id.clone()]).await.is_empty(),
            "{}",
            tag(&t, "not before it is due")
        );
        t.advance(4_999);
        assert!(
            fire(&t, vec![id.clone()]).await.is_empty(),
            "{}",
            tag(&t, "not 1 ms before it is due")
        );
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM timers").await, 1);
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM jobs").await, 0);

        let fired_at = t.advance(1);
        let fired = fire(&t, vec![id.clone(), "no-such-timer".into()]).await;
        assert_eq!(fired.len(), 1, "{}", tag(&t, "due at due_at"));
        let f = &fired[0];
        assert_eq!(
            (f.id.as_str(), f.timer_key.as_str(), f.due_at, f.workspace_id.as_deref()),
            (id.as_str(), "remind:1", due, Some(ws.id.as_str()))
        );
        assert_eq!(
            t.read(timers::count).await.expect("count"),
            0,
            "{}",
            tag(&t, "fired timers are deleted")
        );

        let ws_id = ws.id.clone();
        let ready = t
            .read(move |c| jobs::list_by_state(c, &ws_id, "ready", None, 10))
            .await
            .expect("list jobs");
        assert_eq!(ready.len(), 1, "{}", tag(&t, "the timer's job was enqueued"));
        let job = &ready[0];
        assert_eq!(
            (job.queue.as_str(), job.kind.as_str(), job.payload.as_str()),
            ("timers", "reminder", r#"{"key":"remind:1"}"#)
        );
        assert_eq!(
            (job.run_at, job.dedupe_key.clone()),
            (fired_at, Some(format!("timer:{id}")))
        );

        t.advance(60_000);
        assert!(
            fire(&t, vec![id.clone()]).await.is_empty(),
            "{}",
            tag(&t, "a timer fires once")
        );
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM jobs").await, 1);

        // Two firers racing for the same due timer: exactly one wins.
        let (id2, _) = schedule(&t, timer(None, "remind:2", t.now())).await;
        let now = t.now();
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let (db, ids) = (t.db().clone(), vec![id2.clone()]);
                tokio::spawn(async move { db.write(move |c| timers::fire(c, &ids, now)).await })
            })
            .collect();
        let mut wins = 0;
        for r in racers {
            wins += r.await.expect("racer finished").expect("fire").len();
        }
        assert_eq!(wins, 1, "{}", tag(&t, "concurrent firing fires once"));
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM jobs").await, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescheduling_a_key_moves_the_timer() {
    for_each_backend(|t: Ctx| async move {
        let start = t.now();
        let (id, due) = schedule(&t, timer(None, "follow-up:7", start + 1_000)).await;
        assert_eq!(due, start + 1_000);
        let mut moved = timer(None, "follow-up:7", start + 10_000);
        moved.payload = r#"{"v":2}"#.into();
        moved.kind = "follow_up".into();
        t.advance(10);
        let (same_id, new_due) = schedule(&t, moved).await;
        assert_eq!(
            (same_id.as_str(), new_due),
            (id.as_str(), start + 10_000),
            "{}",
            tag(&t, "same row, new due time")
        );
        assert_eq!(
            t.read(timers::count).await.expect("count"),
            1,
            "{}",
            tag(&t, "one timer per key")
        );
        assert_eq!(
            index(&t, start + 9_999).await,
            vec![],
            "{}",
            tag(&t, "not due at the old time")
        );
        assert_eq!(index(&t, start + 10_000).await, vec![(start + 10_000, id.clone())]);

        t.set_to(start + 1_000);
        assert!(
            fire(&t, vec![id.clone()]).await.is_empty(),
            "{}",
            tag(&t, "the old due time no longer fires")
        );
        t.set_to(start + 10_000);
        let fired = fire(&t, vec![id.clone()]).await;
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].kind.as_str(), fired[0].payload.as_str(), fired[0].created_at),
            ("follow_up", r#"{"v":2}"#, start)
        );

        // Moving earlier works too, and cancelling removes it.
        let (a, _) = schedule(&t, timer(None, "k", start + 50_000)).await;
        let (b, due) = schedule(&t, timer(None, "k", start + 20_000)).await;
        assert_eq!((b, due), (a, start + 20_000));
        let cancelled = t
            .write(|c| Ok((timers::cancel(c, None, "k")?, timers::cancel(c, None, "k")?)))
            .await
            .expect("cancel");
        assert_eq!(cancelled, (true, false));
        assert_eq!(t.read(timers::count).await.expect("count"), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_entries_come_from_due_order() {
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let dues = [now + 500, now + 100, now + 300, now + 100, now + 900, now + 300, now - 50];
        let mut scheduled = Vec::new();
        for (n, due) in dues.iter().enumerate() {
            let (id, at) = schedule(&t, timer(None, &format!("t{n}"), *due)).await;
            scheduled.push((at, id));
        }
        let mut want = scheduled.clone();
        want.sort();
        assert_eq!(index(&t, now + 10_000).await, want, "{}", tag(&t, "all, by (due_at, id)"));
        let until = now + 300;
        let want_until: Vec<_> = want.iter().filter(|(due, _)| *due <= until).cloned().collect();
        assert_eq!(want_until.len(), 5);
        assert_eq!(index(&t, until).await, want_until, "{}", tag(&t, "only those due by `until`, inclusive"));
        assert!(index(&t, now - 51).await.is_empty());

        // Firing what the index says is due fires exactly those, and the index shrinks.
        t.set_to(until);
        let due_ids: Vec<String> = want_until.iter().map(|(_, id)| id.clone()).collect();
        let fired = fire(&t, due_ids.clone()).await;
        assert_eq!(fired.iter().map(|f| f.id.clone()).collect::<Vec<_>>(), due_ids);
        assert_eq!(index(&t, now + 10_000).await, want[5..].to_vec());

        if t.is_sqlite() {
            // The start-up rebuild reads only the covering index.
            let plan = t
                .read(|c| {
                    let rows = c.query(
                        &Stmt::new("EXPLAIN QUERY PLAN SELECT due_at, id FROM timers WHERE due_at <= :until ORDER BY due_at, id")
                            .bind("until", 0),
                    )?;
                    Ok(rows.iter().map(|r| r.get::<String>("detail")).collect::<Result<Vec<_>, _>>()?.join("; "))
                })
                .await
                .expect("query plan");
            assert!(plan.contains("COVERING INDEX timers_due"), "plan: {plan}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_keys_are_scoped_by_workspace() {
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let (a, b) = t
            .write(move |c| {
                Ok::<_, sb_store::StoreError>((
                    sb_store::workspaces::create(c, "a", now)?,
                    sb_store::workspaces::create(c, "b", now)?,
                ))
            })
            .await
            .expect("workspaces");
        let (ta, _) = schedule(&t, timer(Some(&a.id), "snooze:1", now + 1_000)).await;
        let (tb, _) = schedule(&t, timer(Some(&b.id), "snooze:1", now + 9_000)).await;
        assert_ne!(ta, tb, "{}", tag(&t, "the same key in two workspaces is two timers"));
        assert_eq!(t.read(timers::count).await.expect("count"), 2);
        let bid = b.id.clone();
        let cancelled = t
            .write(move |c| timers::cancel(c, Some(&bid), "snooze:1"))
            .await
            .expect("cancel");
        assert!(cancelled);
        t.advance(1_000);
        let fired = fire(&t, vec![ta.clone()]).await;
        assert_eq!(fired.len(), 1, "{}", tag(&t, "A's timer is untouched by B"));
        assert_eq!(fired[0].workspace_id.as_deref(), Some(a.id.as_str()));
        assert_eq!(fired[0].timer_key, "snooze:1");
    })
    .await;
}
