//! The inventory ledger: the last units never oversell under concurrency, replays have one
//! effect, holds resolve once, and a model-based property test (random receive, adjust,
//! set aside, reserve, commit, release, expire, fulfil, return, transfer) agrees with an
//! in-memory model after every step while the ledger replays to the balances.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sb_core::inventory::{Balance, Bucket, Movement};
use sb_store::catalog::{self, NewLocation, NewVariant};
use sb_store::inventory::{self, Change, InventoryError, Line, NewReservation, Outcome, Resolution};

use crate::harness::{Ctx, for_each_backend};

/// A workspace with `locations` stores and one product per SKU.
async fn shop(t: &Ctx, skus: &[&str], locations: usize) -> (String, Vec<String>, Vec<String>) {
    let ws = t.workspace("shop").await.id;
    let (w, now) = (ws.clone(), t.now());
    let skus: Vec<String> = skus.iter().map(|s| s.to_string()).collect();
    let (items, locs) = t
        .write(move |c| {
            let mut locs = Vec::new();
            for i in 0..locations {
                let code = format!("S{i}");
                let location = catalog::create_location(
                    c,
                    &NewLocation {
                        workspace_id: &w,
                        code: &code,
                        kind: "store",
                        name: &code,
                        address: "Main street",
                        lat: Some(40.0 + i as f64),
                        lng: Some(-3.0),
                        timezone: "Europe/Madrid",
                        can_ship: true,
                        can_pickup: true,
                        accepts_returns: true,
                        pickup_prep_minutes: 30,
                        pickup_hold_days: 5,
                        daily_capacity: None,
                        routing_rank: 0,
                    },
                    now,
                )?
                .expect("new code");
                locs.push(location.id);
            }
            let mut items = Vec::new();
            for sku in &skus {
                let variant = NewVariant {
                    sku: sku.clone(),
                    title: sku.clone(),
                    price_minor: 1999,
                    currency: "EUR".into(),
                    components: Vec::new(),
                };
                catalog::create_product(c, &w, sku, "", &[variant], now)?;
                items.push(catalog::find_item(c, &w, sku)?.expect("item"));
            }
            Ok((items, locs))
        })
        .await
        .expect("shop");
    (ws, items, locs)
}

fn line(item: &str, location: &str, movement: Movement) -> Line {
    Line {
        item_id: item.to_owned(),
        location_id: location.to_owned(),
        movement,
    }
}

async fn apply(t: &Ctx, ws: &str, key: &str, lines: Vec<Line>) -> Result<Outcome, InventoryError> {
    let (ws, key, now) = (ws.to_owned(), key.to_owned(), t.now());
    t.store
        .db
        .write(move |c| {
            let change = Change {
                workspace_id: &ws,
                idempotency_key: &key,
                reason: "test",
                actor: "test",
                reference_type: "manual",
                reference_id: None,
                lines,
            };
            inventory::apply(c, &change, now)
        })
        .await
}

async fn balance(t: &Ctx, ws: &str, item: &str, location: &str) -> Balance {
    let (ws, item, location) = (ws.to_owned(), item.to_owned(), location.to_owned());
    t.store
        .db
        .read(move |c| inventory::balance(c, &ws, &item, &location))
        .await
        .expect("balance")
}

async fn check(t: &Ctx, ws: &str) -> Vec<String> {
    let ws = ws.to_owned();
    t.store.db.read(move |c| inventory::check(c, &ws)).await.expect("check")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_units_go_to_exactly_as_many_buyers() {
    for_each_backend(|t: Ctx| async move {
        let (ws, items, locs) = shop(&t, &["LAST-1"], 1).await;
        let (item, loc) = (items[0].clone(), locs[0].clone());
        apply(
            &t,
            &ws,
            "receive",
            vec![line(&item, &loc, Movement::Receive { quantity: 3 })],
        )
        .await
        .expect("receive");
        // 1,000 buyers at once, each buying one unit: a hold committed in one transaction.
        let mut buyers = Vec::new();
        for n in 0..1_000 {
            let (t, ws, item, loc) = (t.clone(), ws.clone(), item.clone(), loc.clone());
            buyers.push(tokio::spawn(async move {
                let now = t.now();
                t.store
                    .db
                    .write(move |c| {
                        let key = format!("buyer-{n}");
                        let hold = inventory::reserve(
                            c,
                            &NewReservation {
                                workspace_id: &ws,
                                idempotency_key: &key,
                                actor: "test",
                                item_id: &item,
                                location_id: &loc,
                                quantity: 1,
                                owner_type: "cart",
                                owner_id: None,
                                expires_at: now + 60_000,
                            },
                            now,
                        )?;
                        inventory::resolve(c, &ws, &hold.id, Resolution::Committed, "test", now)
                    })
                    .await
            }));
        }
        let (mut sold, mut refused) = (0, 0);
        for buyer in buyers {
            match buyer.await.expect("task") {
                Ok(_) => sold += 1,
                Err(InventoryError::Insufficient { available: 0, .. }) => refused += 1,
                Err(e) => panic!("[{}] unexpected: {e}", t.backend.name()),
            }
        }
        assert_eq!((sold, refused), (3, 997), "[{}]", t.backend.name());
        let b = balance(&t, &ws, &item, &loc).await;
        assert_eq!((b.on_hand, b.committed, b.reserved, b.available()), (3, 3, 0, 0));
        assert_eq!(check(&t, &ws).await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_key_has_one_effect_and_a_reused_key_is_refused() {
    for_each_backend(|t: Ctx| async move {
        let (ws, items, locs) = shop(&t, &["KEY-1"], 1).await;
        let receive = || vec![line(&items[0], &locs[0], Movement::Receive { quantity: 5 })];
        let first = apply(&t, &ws, "delivery-42", receive()).await.expect("first");
        let again = apply(&t, &ws, "delivery-42", receive()).await.expect("replay");
        assert!(matches!(first, Outcome::Applied { .. }));
        assert!(matches!(&again, Outcome::Replayed { group_id, .. } if group_id == first.group_id()));
        assert_eq!(balance(&t, &ws, &items[0], &locs[0]).await.on_hand, 5);
        let other = vec![line(&items[0], &locs[0], Movement::Receive { quantity: 6 })];
        assert!(matches!(
            apply(&t, &ws, "delivery-42", other).await,
            Err(InventoryError::KeyReused)
        ));
        // A refused change leaves nothing behind, not even its key.
        let too_much = vec![line(&items[0], &locs[0], Movement::Reserve { quantity: 6 })];
        assert!(matches!(
            apply(&t, &ws, "hold-1", too_much).await,
            Err(InventoryError::Insufficient { available: 5, .. })
        ));
        let fine = vec![line(&items[0], &locs[0], Movement::Reserve { quantity: 5 })];
        assert!(matches!(
            apply(&t, &ws, "hold-1", fine).await,
            Ok(Outcome::Applied { .. })
        ));
        // Another workspace's item is not found, and changes nothing.
        let other_ws = t.workspace("other").await.id;
        let theirs = vec![line(&items[0], &locs[0], Movement::Receive { quantity: 1 })];
        assert!(matches!(
            apply(&t, &other_ws, "x", theirs).await,
            Err(InventoryError::NotFound(_))
        ));
        assert_eq!(
            t.count("SELECT COUNT(*) AS n FROM inventory_groups").await,
            2,
            "[{}] only the applied groups remain",
            t.backend.name()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_resolve_once_and_expired_holds_are_swept() {
    for_each_backend(|t: Ctx| async move {
        let (ws, items, locs) = shop(&t, &["HOLD-1"], 1).await;
        let (item, loc) = (items[0].clone(), locs[0].clone());
        apply(
            &t,
            &ws,
            "receive",
            vec![line(&item, &loc, Movement::Receive { quantity: 4 })],
        )
        .await
        .expect("receive");
        let hold = |key: &'static str, ttl: i64| {
            let (t, ws, item, loc) = (t.clone(), ws.clone(), item.clone(), loc.clone());
            async move {
                let now = t.now();
                t.store
                    .db
                    .write(move |c| {
                        inventory::reserve(
                            c,
                            &NewReservation {
                                workspace_id: &ws,
                                idempotency_key: key,
                                actor: "test",
                                item_id: &item,
                                location_id: &loc,
                                quantity: 2,
                                owner_type: "cart",
                                owner_id: Some("cart-1"),
                                expires_at: now + ttl,
                            },
                            now,
                        )
                    })
                    .await
                    .expect("reserve")
            }
        };
        let resolve = |id: String, to: Resolution| {
            let (t, ws) = (t.clone(), ws.clone());
            async move {
                let now = t.now();
                t.store
                    .db
                    .write(move |c| inventory::resolve(c, &ws, &id, to, "test", now))
                    .await
            }
        };
        let first = hold("hold-a", 60_000).await;
        assert_eq!(
            hold("hold-a", 60_000).await.id,
            first.id,
            "the same key is the same hold"
        );
        resolve(first.id.clone(), Resolution::Committed).await.expect("commit");
        resolve(first.id.clone(), Resolution::Committed)
            .await
            .expect("committing again changes nothing");
        assert!(matches!(
            resolve(first.id.clone(), Resolution::Released).await,
            Err(InventoryError::AlreadyResolved(s)) if s == "committed"
        ));
        let second = hold("hold-b", 10_000).await;
        assert_eq!(balance(&t, &ws, &item, &loc).await.available(), 0);
        t.advance(10_000);
        // An expired hold cannot be committed; the sweeper gives the units back.
        assert!(matches!(
            resolve(second.id.clone(), Resolution::Committed).await,
            Err(InventoryError::AlreadyResolved(_))
        ));
        let now = t.now();
        let swept = t
            .store
            .db
            .write(move |c| inventory::expire_due(c, now, 100))
            .await
            .expect("sweep");
        assert_eq!(swept.len(), 1);
        let b = balance(&t, &ws, &item, &loc).await;
        assert_eq!((b.committed, b.reserved, b.available()), (2, 0, 2));
        assert_eq!(check(&t, &ws).await, Vec::<String>::new());
    })
    .await;
}

/// One step of the model-based test.
#[derive(Debug, Clone)]
enum Step {
    Move {
        item: usize,
        location: usize,
        movement: Movement,
    },
    Hold {
        item: usize,
        location: usize,
        quantity: i64,
    },
    Resolve {
        hold: usize,
        to: u8,
    },
    Expire {
        after_ms: i64,
    },
    Transfer {
        item: usize,
        quantity: i64,
    },
    /// A physical count finding `offset` more (or fewer) units than the system showed;
    /// `stale` counts against on hand + 1, as a count overtaken by a sale would.
    Count {
        item: usize,
        location: usize,
        offset: i64,
        stale: bool,
    },
    Replay,
}

fn step() -> impl Strategy<Value = Step> {
    let at = (0usize..2, 0usize..2);
    let q = 1i64..5;
    let movement = prop_oneof![
        q.clone().prop_map(|quantity| Movement::Receive { quantity }),
        (-3i64..4)
            .prop_filter("non-zero", |d| *d != 0)
            .prop_map(|delta| Movement::Adjust { delta }),
        q.clone().prop_map(|quantity| Movement::SetAside {
            bucket: Bucket::Damaged,
            quantity
        }),
        q.clone().prop_map(|quantity| Movement::Resolve {
            bucket: Bucket::Damaged,
            quantity,
            write_off: true
        }),
        q.clone().prop_map(|quantity| Movement::CommitDirect { quantity }),
        q.clone().prop_map(|quantity| Movement::Uncommit { quantity }),
        q.clone().prop_map(|quantity| Movement::Fulfil { quantity }),
        q.clone().prop_map(|quantity| Movement::ReturnIn {
            bucket: Bucket::OnHand,
            quantity
        }),
        q.clone().prop_map(|quantity| Movement::ReturnIn {
            bucket: Bucket::Damaged,
            quantity
        }),
        (-2i64..3)
            .prop_filter("non-zero", |d| *d != 0)
            .prop_map(|delta| Movement::SafetyStock { delta }),
    ];
    prop_oneof![
        4 => (at.clone(), movement).prop_map(|((item, location), movement)| Step::Move { item, location, movement }),
        2 => (at.clone(), q.clone()).prop_map(|((item, location), quantity)| Step::Hold { item, location, quantity }),
        2 => (0usize..8, 0u8..3).prop_map(|(hold, to)| Step::Resolve { hold, to }),
        1 => (1i64..3).prop_map(|m| Step::Expire { after_ms: m * 30_000 }),
        1 => (0usize..2, q).prop_map(|(item, quantity)| Step::Transfer { item, quantity }),
        1 => (at.clone(), -3i64..3, proptest::bool::weighted(0.25))
            .prop_map(|((item, location), offset, stale)| Step::Count { item, location, offset, stale }),
        1 => Just(Step::Replay),
    ]
}

/// The in-memory model: balances per (item, location) and the holds.
#[derive(Default)]
struct Model {
    balances: BTreeMap<(usize, usize), Balance>,
    /// (item, location, quantity, status, expires_at), by the order they were taken.
    holds: Vec<(usize, usize, i64, &'static str, i64)>,
}

impl Model {
    /// Applies the movements all or nothing, as the store must.
    fn apply(&mut self, moves: &[(usize, usize, Movement)]) -> bool {
        let mut next = self.balances.clone();
        for (item, location, movement) in moves {
            let Ok(deltas) = movement.deltas() else { return false };
            let entry = next.entry((*item, *location)).or_default();
            match entry.after(&deltas) {
                Some(b) => *entry = b,
                None => return false,
            }
        }
        self.balances = next;
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_based_random_sequences_keep_every_invariant_and_replay_from_the_ledger() {
    for_each_backend(|t: Ctx| async move {
        let mut runner = TestRunner::deterministic();
        let sequences = if t.is_sqlite() { 24 } else { 12 };
        for run in 0..sequences {
            let steps = proptest::collection::vec(step(), 1..40)
                .new_tree(&mut runner)
                .expect("a sequence")
                .current();
            let (ws, items, locs) = shop(&t, &["A", "B"], 2).await;
            let mut model = Model::default();
            let mut hold_ids: Vec<String> = Vec::new();
            let mut last_key: Option<(String, Vec<Line>)> = None;
            for (n, step) in steps.iter().enumerate() {
                let context = format!("[{}] run {run} step {n}: {step:?}", t.backend.name());
                match step.clone() {
                    Step::Move {
                        item,
                        location,
                        movement,
                    } => {
                        let lines = vec![line(&items[item], &locs[location], movement)];
                        let key = format!("{run}-{n}");
                        let result = apply(&t, &ws, &key, lines.clone()).await;
                        let expected = model.apply(&[(item, location, movement)]);
                        assert_eq!(result.is_ok(), expected, "{context}: {result:?}");
                        if result.is_ok() {
                            last_key = Some((key, lines));
                        }
                    }
                    Step::Count {
                        item,
                        location,
                        offset,
                        stale,
                    } => {
                        let shown = model.balances.get(&(item, location)).copied().unwrap_or_default().on_hand;
                        let expected = shown + i64::from(stale);
                        let movement = Movement::Count {
                            counted: (expected + offset).max(0),
                            expected,
                        };
                        let lines = vec![line(&items[item], &locs[location], movement)];
                        let key = format!("{run}-{n}");
                        let result = apply(&t, &ws, &key, lines.clone()).await;
                        // The model refuses a stale count first, then a shortfall.
                        let applied = !stale && model.apply(&[(item, location, movement)]);
                        assert_eq!(result.is_ok(), applied, "{context}: {result:?}");
                        if stale {
                            assert!(
                                matches!(result, Err(InventoryError::CountOutdated { on_hand, .. }) if on_hand == shown),
                                "{context}: {result:?}"
                            );
                        }
                        if result.is_ok() {
                            last_key = Some((key, lines));
                        }
                    }
                    Step::Transfer { item, quantity } => {
                        // Out of one location and into the other, in one group.
                        let moves = [
                            (item, 0, Movement::TransferOut { quantity }),
                            (item, 1, Movement::Expect { quantity }),
                        ];
                        let lines = moves.iter().map(|(i, l, m)| line(&items[*i], &locs[*l], *m)).collect();
                        let result = apply(&t, &ws, &format!("{run}-{n}"), lines).await;
                        assert_eq!(result.is_ok(), model.apply(&moves), "{context}: {result:?}");
                        if result.is_ok() {
                            let arrive = [(
                                item,
                                1,
                                Movement::TransferIn {
                                    received: quantity,
                                    lost: 0,
                                },
                            )];
                            let lines = vec![line(&items[item], &locs[1], arrive[0].2)];
                            apply(&t, &ws, &format!("{run}-{n}-in"), lines).await.expect(&context);
                            assert!(model.apply(&arrive));
                        }
                    }
                    Step::Hold {
                        item,
                        location,
                        quantity,
                    } => {
                        let (w, it, lo, key, now) = (
                            ws.clone(),
                            items[item].clone(),
                            locs[location].clone(),
                            format!("{run}-{n}"),
                            t.now(),
                        );
                        let result = t
                            .store
                            .db
                            .write(move |c| {
                                inventory::reserve(
                                    c,
                                    &NewReservation {
                                        workspace_id: &w,
                                        idempotency_key: &key,
                                        actor: "test",
                                        item_id: &it,
                                        location_id: &lo,
                                        quantity,
                                        owner_type: "cart",
                                        owner_id: None,
                                        expires_at: now + 30_000,
                                    },
                                    now,
                                )
                            })
                            .await;
                        let expected = model.apply(&[(item, location, Movement::Reserve { quantity })]);
                        assert_eq!(result.is_ok(), expected, "{context}: {result:?}");
                        if let Ok(r) = result {
                            hold_ids.push(r.id);
                            model.holds.push((item, location, quantity, "active", t.now() + 30_000));
                        }
                    }
                    Step::Resolve { hold, to } => {
                        let Some(id) = hold_ids.get(hold).cloned() else {
                            continue;
                        };
                        let to = [Resolution::Committed, Resolution::Released, Resolution::Expired][to as usize];
                        let (w, now) = (ws.clone(), t.now());
                        let result = t
                            .store
                            .db
                            .write(move |c| inventory::resolve(c, &w, &id, to, "test", now))
                            .await;
                        let (item, location, quantity, status, expires_at) = model.holds[hold];
                        let allowed = status == "active" && !(to == Resolution::Committed && expires_at <= t.now());
                        if allowed {
                            let movement = match to {
                                Resolution::Committed => Movement::Commit { quantity },
                                _ => Movement::Unreserve { quantity },
                            };
                            assert!(model.apply(&[(item, location, movement)]), "{context}");
                            model.holds[hold].3 = to.as_str();
                        }
                        let same_again = status == to.as_str();
                        assert_eq!(result.is_ok(), allowed || same_again, "{context}: {result:?}");
                    }
                    Step::Expire { after_ms } => {
                        let now = t.advance(after_ms);
                        t.store
                            .db
                            .write(move |c| inventory::expire_due(c, now, 1_000))
                            .await
                            .expect(&context);
                        for h in model.holds.iter_mut() {
                            if h.3 == "active" && h.4 <= now {
                                h.3 = "expired";
                                let entry = model.balances.entry((h.0, h.1)).or_default();
                                *entry = entry
                                    .after(&Movement::Unreserve { quantity: h.2 }.deltas().expect("valid"))
                                    .expect("an expiry always fits");
                            }
                        }
                    }
                    Step::Replay => {
                        let Some((key, lines)) = last_key.clone() else { continue };
                        let replayed = apply(&t, &ws, &key, lines).await.expect(&context);
                        assert!(matches!(replayed, Outcome::Replayed { .. }), "{context}");
                    }
                }
                for ((item, location), expected) in &model.balances {
                    let stored = balance(&t, &ws, &items[*item], &locs[*location]).await;
                    assert_eq!(&stored, expected, "{context} at ({item}, {location})");
                    assert!(stored.holds(), "{context}");
                }
                assert_eq!(check(&t, &ws).await, Vec::<String>::new(), "{context}");
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_hold_requested_at_once_is_taken_once() {
    for_each_backend(|t: Ctx| async move {
        let (ws, items, locs) = shop(&t, &["RACE-1"], 1).await;
        let (item, loc) = (items[0].clone(), locs[0].clone());
        apply(
            &t,
            &ws,
            "receive",
            vec![line(&item, &loc, Movement::Receive { quantity: 10 })],
        )
        .await
        .expect("receive");
        let hold = |quantity: i64| {
            let (t, ws, item, loc) = (t.clone(), ws.clone(), item.clone(), loc.clone());
            async move {
                let now = t.now();
                t.store
                    .db
                    .write(move |c| {
                        inventory::reserve(
                            c,
                            &NewReservation {
                                workspace_id: &ws,
                                idempotency_key: "checkout-42",
                                actor: "test",
                                item_id: &item,
                                location_id: &loc,
                                quantity,
                                owner_type: "cart",
                                owner_id: None,
                                expires_at: now + 60_000,
                            },
                            now,
                        )
                    })
                    .await
            }
        };
        let tasks: Vec<_> = (0..20).map(|_| tokio::spawn(hold(3))).collect();
        let mut ids = std::collections::BTreeSet::new();
        for task in tasks {
            ids.insert(task.await.expect("task").expect("the same hold").id);
        }
        assert_eq!(ids.len(), 1, "[{}] one hold for one key", t.backend.name());
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM reservations").await, 1);
        assert_eq!(balance(&t, &ws, &item, &loc).await.reserved, 3);
        assert!(matches!(hold(4).await, Err(InventoryError::KeyReused)));
        assert_eq!(check(&t, &ws).await, Vec::<String>::new());
    })
    .await;
}
