//! The journey engine's invariants (cdp-journeys.md c.3) under random interleavings of cart
//! changes, purchases (some arriving late), clock moves and runner rounds, where a round may
//! run a step twice from the same stale read (a duplicate timer, a second worker):
//! 1. no send is planned for an instance after its exit (the exit's own send excepted), and
//!    the exit leaves no planned send behind;
//! 2. at most one live instance per (journey, customer, key);
//! 3. at most one delivery per (instance, step, loop): running a step twice plans it once;
//! 4. a timer that fires for an instance that moved on does nothing: no reminder goes out
//!    sooner than an hour after the cart's last change, even from a stale read.

use std::sync::Arc;

use proptest::prelude::*;
use sb_core::journey::Definition;
use sb_engine::ManualClock;
use sb_journeys::Settings;
use sb_sql::Db;
use sb_sql::sqlite::{SqliteExecutor, SqliteOptions};
use sb_store::journeys::{self, Definitions, Event};
use sb_store::{Stmt, Store, StoreError};
use serde_json::json;

const WS: &str = "ws-prop";
const MINUTE: i64 = 60_000;

#[derive(Debug, Clone)]
enum Op {
    /// A cart change (enters the journey, or restarts its wait).
    CartChange {
        customer: u8,
        cart: u8,
    },
    /// A purchase of the cart; `late` minutes before now (it arrives late).
    Purchase {
        customer: u8,
        cart: u8,
        late: u8,
    },
    Advance {
        minutes: u16,
    },
    /// A runner round: `between` (a cart change) lands after the round read the due
    /// instances and before it steps them; `twice`: every one is stepped a second time from
    /// the same (now stale) read.
    Round {
        twice: bool,
        between: Option<(u8, u8)>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, 0u8..2).prop_map(|(customer, cart)| Op::CartChange { customer, cart }),
        1 => (0u8..3, 0u8..2, 0u8..90).prop_map(|(customer, cart, late)| Op::Purchase { customer, cart, late }),
        3 => (0u16..1600).prop_map(|minutes| Op::Advance { minutes }),
        3 => (any::<bool>(), prop::option::of((0u8..3, 0u8..2))).prop_map(|(twice, between)| Op::Round { twice, between }),
    ]
}

fn definition() -> Definition {
    serde_json::from_value(json!({
        "trigger": {"event": "Product Added"},
        "correlation_key": "cart_id",
        "exit_rules": [{"event": "Order Completed", "match_key": true,
                        "then": {"purpose": "transactional", "message": {"headline": "Thanks", "body": "x"}}}],
        "steps": [
            {"id": "idle", "type": "wait_for", "restart_on": ["Product Added"], "match_key": true, "timeout_minutes": 60},
            {"id": "remind", "type": "send", "message": {"headline": "Your cart", "body": "x"}},
            {"id": "day", "type": "delay", "minutes": 1440},
            {"id": "again", "type": "send", "message": {"headline": "Still there", "body": "x"}}
        ]
    }))
    .expect("definition")
}

async fn store(dir: &std::path::Path, clock: Arc<ManualClock>) -> Store {
    let exec = SqliteExecutor::open(&SqliteOptions::new(dir.join("p.sqlite"))).expect("open");
    let store = Store::new(Db::new(Arc::new(exec)), clock);
    store.migrate().await.expect("migrate");
    let def = definition();
    store
        .db
        .write(move |c| {
            c.execute(
                &Stmt::new("INSERT INTO workspaces (id, name, created_at) VALUES (:id, 'prop', 0)").bind("id", WS),
            )?;
            let j = journeys::create(c, WS, "cart", &def, None, 0)?;
            journeys::set_state(c, WS, &j.id, "active", 0)?;
            Ok::<_, StoreError>(())
        })
        .await
        .expect("seed");
    store
}

/// Cart changes as they happened: (customer, key, at).
type Changes = std::sync::Mutex<Vec<(String, String, i64)>>;

fn cart_change(
    c: &mut dyn sb_store::Conn,
    changes: &Changes,
    customer: u8,
    cart: u8,
    now: i64,
) -> Result<(), StoreError> {
    let customer = format!("c{customer}");
    let key = format!("{customer}-k{cart}");
    changes
        .lock()
        .expect("changes")
        .push((customer.clone(), key.clone(), now));
    let props = json!({ "cart_id": key });
    let event = Event {
        name: "Product Added",
        properties: &props,
        at: now,
    };
    journeys::on_event(c, WS, &customer, event, now)?;
    Ok(())
}

async fn apply(store: &Store, clock: &ManualClock, changes: &Arc<Changes>, op: &Op) {
    let now = sb_core::Clock::now_ms(clock);
    match *op {
        Op::CartChange { customer, cart } => {
            let changes = changes.clone();
            store
                .db
                .write(move |c| cart_change(c, &changes, customer, cart, now))
                .await
                .expect("cart change");
        }
        Op::Purchase { customer, cart, late } => {
            let (name, at) = ("Order Completed", now - i64::from(late) * MINUTE);
            let customer = format!("c{customer}");
            let props = json!({"cart_id": format!("{customer}-k{cart}")});
            // Purchases are stored as events, where a late arrival can be found again.
            store
                .db
                .write(move |c| {
                    {
                        c.execute(
                            &Stmt::new(
                                "INSERT INTO events (id, workspace_id, message_id, type, name, category, customer_id, ts,
                                     received_at, properties_json, traits_json, context_json, integrations_json)
                                 VALUES (:id, :ws, :id, 'track', :name, 'commerce', :customer, :at, :now, :props, '{}', '{}', '{}')",
                            )
                            .bind("id", sb_core::new_id())
                            .bind("now", now)
                            .bind("ws", WS)
                            .bind("customer", &customer)
                            .bind("name", name)
                            .bind("props", props.to_string())
                            .bind("at", at),
                        )?;
                    }
                    let event = Event {
                        name,
                        properties: &props,
                        at,
                    };
                    journeys::on_event(c, WS, &customer, event, now)
                })
                .await
                .expect("event");
        }
        Op::Advance { minutes } => clock.advance(i64::from(minutes) * MINUTE),
        Op::Round { twice, between } => {
            let settings = Settings::default();
            let changes = changes.clone();
            store
                .db
                .write(move |c| {
                    let due = journeys::due(c, now, 100)?;
                    // The race: an event lands after the timer read the instance.
                    if let Some((customer, cart)) = between {
                        cart_change(c, &changes, customer, cart, now)?;
                    }
                    let mut defs = Definitions::default();
                    for inst in &due {
                        sb_journeys::runner::step(c, &settings, &mut defs, inst, now)?;
                    }
                    if twice {
                        for inst in &due {
                            sb_journeys::runner::step(c, &settings, &mut defs, inst, now)?;
                        }
                    }
                    Ok::<_, StoreError>(())
                })
                .await
                .expect("round");
        }
    }
}

async fn check(store: &Store, changes: &Changes) -> Result<(), String> {
    let reminders = store
        .db
        .read(|c| {
            c.query(&Stmt::new(
                "SELECT i.customer_id AS customer, i.correlation AS key, d.created_at AS at FROM deliveries d
                 JOIN journey_instances i ON i.id = d.instance_id WHERE d.step_id = 'remind'",
            ))
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r.get::<String>("customer").unwrap_or_default(),
                            r.get::<String>("key").unwrap_or_default(),
                            r.get::<i64>("at").unwrap_or_default(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await
        .map_err(|e| e.to_string())?;
    for (customer, key, at) in reminders {
        let last = changes
            .lock()
            .expect("changes")
            .iter()
            .filter(|(c, k, t)| *c == customer && *k == key && *t <= at)
            .map(|(_, _, t)| *t)
            .max();
        if let Some(last) = last
            && at < last + 60 * MINUTE
        {
            return Err(format!(
                "a reminder for {key} went {} min after the cart changed",
                (at - last) / MINUTE
            ));
        }
    }
    store
        .db
        .read(|c| {
            let mut n = |sql: &'static str| -> Result<i64, StoreError> { Ok(c.query_one(&Stmt::new(sql))?.get("n")?) };
            let after_exit = n("SELECT COUNT(*) AS n FROM deliveries d JOIN journey_instances i ON i.id = d.instance_id
                 WHERE i.state = 'exited' AND d.origin = 'journey' AND d.created_at > i.ended_at")?;
            let left_planned = n("SELECT COUNT(*) AS n FROM deliveries d JOIN journey_instances i ON i.id = d.instance_id
                 WHERE i.state = 'exited' AND d.origin = 'journey' AND d.state IN ('planned', 'deferred')")?;
            let twice_live = n("SELECT COUNT(*) AS n FROM (SELECT journey_id, customer_id, correlation FROM journey_instances
                 WHERE state IN ('active', 'waiting') GROUP BY journey_id, customer_id, correlation HAVING COUNT(*) > 1) t")?;
            let twice_sent = n("SELECT COUNT(*) AS n FROM (SELECT instance_id, step_id FROM deliveries
                 GROUP BY instance_id, step_id HAVING COUNT(*) > 1) t")?;
            Ok::<_, StoreError>((after_exit, left_planned, twice_live, twice_sent))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|(after_exit, left_planned, twice_live, twice_sent)| {
            if after_exit > 0 {
                return Err(format!("{after_exit} send(s) planned after an exit"));
            }
            if left_planned > 0 {
                return Err(format!("{left_planned} planned send(s) left behind by an exit"));
            }
            if twice_live > 0 {
                return Err(format!("{twice_live} key(s) with two live instances"));
            }
            if twice_sent > 0 {
                return Err(format!("{twice_sent} step(s) planned twice"));
            }
            Ok(())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn no_send_after_exit_one_live_instance_per_key_each_step_once(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let result = rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let clock = ManualClock::new(1_800_000_000_000);
            let store = store(dir.path(), clock.clone()).await;
            let changes = Arc::new(Changes::default());
            for op in &ops {
                apply(&store, &clock, &changes, op).await;
                check(&store, &changes).await?;
                // Ops are apart in time, so time orders them.
                clock.advance(1);
            }
            // Everything due runs out: the invariants still hold at the end.
            for _ in 0..4 {
                clock.advance(2_000 * MINUTE);
                apply(&store, &clock, &changes, &Op::Round { twice: true, between: None }).await;
                apply(&store, &clock, &changes, &Op::Round { twice: false, between: None }).await;
            }
            check(&store, &changes).await
        });
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

/// The exit's own send goes once, and only for an exit: a purchase plans one thank-you,
/// whatever runs twice.
#[tokio::test]
async fn an_exit_sends_its_own_message_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_800_000_000_000);
    let store = store(dir.path(), clock.clone()).await;
    let changes = Arc::new(Changes::default());
    let ops = [
        Op::CartChange { customer: 0, cart: 0 },
        Op::Round {
            twice: true,
            between: None,
        },
        Op::Advance { minutes: 61 },
        Op::Round {
            twice: true,
            between: None,
        },
        Op::Purchase {
            customer: 0,
            cart: 0,
            late: 0,
        },
        Op::Round {
            twice: true,
            between: None,
        },
        Op::Advance { minutes: 2000 },
        Op::Round {
            twice: true,
            between: None,
        },
    ];
    for op in &ops {
        apply(&store, &clock, &changes, op).await;
    }
    check(&store, &changes).await.expect("invariants");
    let rows = store
        .db
        .read(|c| {
            c.query(&Stmt::new(
                "SELECT step_id, origin FROM deliveries ORDER BY created_at, step_id",
            ))
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r.get::<String>("step_id").unwrap_or_default(),
                            r.get::<String>("origin").unwrap_or_default(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await
        .expect("rows");
    let mut rows = rows;
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("exit:0".to_owned(), "journey_exit".to_owned()),
            ("remind".to_owned(), "journey".to_owned())
        ]
    );
}

/// Invariant 2 across a merge: two customers in the same journey with the same key become
/// one customer with one live instance, the older; the newer ends as `merged`.
#[tokio::test]
async fn a_merge_keeps_one_live_instance_per_key_the_older() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_800_000_000_000);
    let store = store(dir.path(), clock.clone()).await;
    let changes = Arc::new(Changes::default());
    store
        .db
        .write(|c| {
            for id in ["c0", "c1"] {
                c.execute(
                    &Stmt::new(
                        "INSERT INTO customers (id, workspace_id, attributes_json, created_at, updated_at)
                         VALUES (:id, :ws, '{}', 0, 0)",
                    )
                    .bind("id", id)
                    .bind("ws", WS),
                )?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .expect("customers");
    // The same cart key for both (a shared device's cart before sign-in).
    let shared = |customer: &'static str| {
        let store = store.clone();
        let now = sb_core::Clock::now_ms(clock.as_ref());
        async move {
            store
                .db
                .write(move |c| {
                    let props = json!({"cart_id": "shared"});
                    let event = Event {
                        name: "Product Added",
                        properties: &props,
                        at: now,
                    };
                    journeys::on_event(c, WS, customer, event, now)
                })
                .await
                .expect("event")
        }
    };
    shared("c0").await;
    clock.advance(MINUTE);
    shared("c1").await;
    let now = sb_core::Clock::now_ms(clock.as_ref());
    store
        .db
        .write(move |c| {
            sb_store::merges::merge(c, WS, "c1", "c0", None, now).map_err(|e| StoreError::Invalid(e.to_string()))
        })
        .await
        .expect("merge");
    check(&store, &changes).await.expect("invariants");
    let rows = store
        .db
        .read(|c| {
            c.query(&Stmt::new(
                "SELECT customer_id, state, end_reason, entered_at FROM journey_instances ORDER BY entered_at",
            ))
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r.get::<String>("customer_id").unwrap_or_default(),
                            r.get::<String>("state").unwrap_or_default(),
                            r.get::<Option<String>>("end_reason").unwrap_or_default(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await
        .expect("rows");
    assert_eq!(
        rows,
        vec![
            ("c1".to_owned(), "active".to_owned(), None),
            ("c1".to_owned(), "exited".to_owned(), Some("merged".to_owned())),
        ],
        "the older instance (c0's) now belongs to c1 and goes on; c1's own ends"
    );
}
