//! Orders and their fulfilments across the upgrade that introduced fulfilments: orders
//! placed before it get one fulfilment each (at their location, with their items), so
//! shipping or cancelling them moves exactly their stock.

use sb_core::inventory::Movement;
use sb_sql::Stmt;
use sb_store::catalog::{self, NewVariant};
use sb_store::inventory::{self, Change, Line};
use sb_store::{StoreError, migrations, orders};

use crate::harness::{Ctx, Start, for_each_backend_from, tag};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_placed_before_fulfilments_get_one_each() {
    for_each_backend_from(Start::Empty, |t: Ctx| async move {
        let all = migrations::for_backend(t.backend);
        let before = all
            .iter()
            .position(|m| m.name == "0018_fulfillments_transfers")
            .expect("the fulfilments migration is listed");
        sb_sql::migrate::run(&t.store.db, &all[..before], t.now())
            .await
            .expect("migrate to the version before fulfilments");
        let ws = t.workspace("upgrade").await.id;
        let (w, now) = (ws.clone(), t.now());
        let (item, shipped, ready) = t
            .write(move |c| {
                // The location as that schema had it (no routing rank yet).
                let location_id = sb_core::new_id();
                c.execute(
                    &Stmt::new(
                        "INSERT INTO locations (id, workspace_id, code, kind, name, address, lat, lng, timezone, can_ship,
                                                can_pickup, accepts_returns, pickup_prep_minutes, pickup_hold_days,
                                                daily_capacity, active, created_at, updated_at)
                         VALUES (:id, :ws, 'OLD-1', 'store', 'Old store', 'Main street', NULL, NULL, 'Europe/Madrid',
                                 TRUE, TRUE, TRUE, 30, 5, NULL, TRUE, :now, :now)",
                    )
                    .bind("id", &location_id)
                    .bind("ws", &w)
                    .bind("now", now),
                )?;
                let variant = NewVariant {
                    sku: "OLD-SKU".into(),
                    title: "Old".into(),
                    price_minor: 500,
                    currency: "EUR".into(),
                    components: Vec::new(),
                };
                catalog::create_product(c, &w, "Old", "", &[variant], now)?;
                let item = catalog::find_item(c, &w, "OLD-SKU")?.expect("item");
                let variant = catalog::variant_by_sku(c, &w, "OLD-SKU")?.expect("variant").id;
                let stock = |key: &'static str, movement: Movement| Change {
                    workspace_id: &w,
                    idempotency_key: key,
                    reason: "received",
                    actor: "test",
                    reference_type: "manual",
                    reference_id: None,
                    lines: vec![Line {
                        item_id: item.clone(),
                        location_id: location_id.clone(),
                        movement,
                    }],
                };
                inventory::apply(c, &stock("delivery", Movement::Receive { quantity: 10 }), now)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                inventory::apply(c, &stock("old-orders", Movement::CommitDirect { quantity: 5 }), now)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                let mut ids = Vec::new();
                for (number, fulfillment, status, quantity) in
                    [("1", "ship", "placed", 2_i64), ("2", "pickup", "ready_for_pickup", 3)]
                {
                    let id = sb_core::new_id();
                    c.execute(
                        &Stmt::new(
                            "INSERT INTO orders (id, workspace_id, number, customer_id, channel, cart_id, idempotency_key,
                                                 fulfillment, location_id, status, pickup_code, ready_at, pickup_deadline,
                                                 total_minor, currency, placed_at, updated_at)
                             VALUES (:id, :ws, :number, 'customer', 'web', NULL, :number, :fulfillment, :location, :status,
                                     NULL, NULL, NULL, 0, 'EUR', :now, :now)",
                        )
                        .bind("id", &id)
                        .bind("ws", &w)
                        .bind("number", number)
                        .bind("fulfillment", fulfillment)
                        .bind("location", &location_id)
                        .bind("status", status)
                        .bind("now", now),
                    )?;
                    c.execute(
                        &Stmt::new(
                            "INSERT INTO order_lines (order_id, variant_id, sku, title, quantity, unit_price_minor)
                             VALUES (:order, :variant, 'OLD-SKU', 'Old', :q, 500)",
                        )
                        .bind("order", &id)
                        .bind("variant", &variant)
                        .bind("q", quantity),
                    )?;
                    ids.push(id);
                }
                Ok((item, ids[0].clone(), ids[1].clone()))
            })
            .await
            .expect("orders placed before the upgrade");

        t.store.migrate().await.expect("the upgrade");
        let (w, now) = (ws.clone(), t.now());
        let (parts, balance, problems) = t
            .write(move |c| {
                let fail = |e: orders::OrderError| StoreError::Invalid(e.to_string());
                let mut parts = Vec::new();
                for order in [&shipped, &ready] {
                    for f in orders::fulfillments(c, &w, order).map_err(fail)? {
                        let lines = orders::fulfillment_lines(c, &f.id).map_err(fail)?;
                        parts.push((f.status, lines.iter().map(|l| l.quantity).sum::<i64>()));
                    }
                }
                orders::ship(c, &w, &shipped, "test", now).map_err(fail)?;
                orders::cancel(c, &w, &ready, "not_collected", "test", now).map_err(fail)?;
                let location = orders::get(c, &w, &shipped).map_err(fail)?.expect("order").location_id;
                let balance = inventory::balance(c, &w, &item, &location).map_err(|e| StoreError::Invalid(e.to_string()))?;
                let problems = inventory::check(c, &w).map_err(|e| StoreError::Invalid(e.to_string()))?;
                Ok((parts, balance, problems))
            })
            .await
            .expect("ship and cancel after the upgrade");
        assert_eq!(
            parts,
            [("placed".to_owned(), 2), ("placed".to_owned(), 3)],
            "{}",
            tag(&t, "one fulfilment per old order, with its units")
        );
        assert_eq!(
            (balance.on_hand, balance.committed, balance.available()),
            (8, 0, 8),
            "{}",
            tag(&t, "two shipped, three sellable again")
        );
        assert!(problems.is_empty(), "{problems:?}");
    })
    .await;
}
