//! Every few seconds, as a durable job on a timer (one pending run however often it is
//! scheduled): expires checkout holds whose time has passed (until swept an expired hold
//! still blocks its stock: the safe direction) and cancels pickup orders not collected by
//! their deadline, which makes their stock sellable again. Staff screens following
//! availability get the change pushed, as for any other stock change.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sb_engine::{Engine, JobContext, JobError, JobHandler};
use sb_inbox::live::Live;
use sb_store::live_events::LiveEvent;
use sb_store::timers::NewTimer;
use sb_store::{Conn, StoreError};

const KIND: &str = "inventory.expire_holds";
const EVERY_MS: i64 = 5_000;
/// Holds expired per transaction.
const BATCH: i64 = 500;

struct ExpireHolds {
    live: Live,
}

/// The availability events for what changed, per workspace, written in the same transaction.
fn changed(
    c: &mut dyn Conn,
    touched: BTreeMap<String, Vec<(String, String)>>,
    now: i64,
) -> Result<Vec<LiveEvent>, StoreError> {
    let mut events = Vec::new();
    for (ws, items) in touched {
        events.extend(crate::live::availability_changed(c, &ws, items, now)?);
    }
    Ok(events)
}

#[async_trait]
impl JobHandler for ExpireHolds {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let now = ctx.engine.time().now_ms();
        loop {
            let (expired, events) = ctx
                .store
                .db
                .write(move |c| {
                    let expired = sb_store::inventory::expire_due(c, now, BATCH)?;
                    let mut touched: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
                    for (ws, hold) in &expired {
                        touched
                            .entry(ws.clone())
                            .or_default()
                            .push((hold.item_id.clone(), hold.location_id.clone()));
                    }
                    let events = changed(c, touched, now)?;
                    Ok::<_, sb_store::inventory::InventoryError>((expired.len(), events))
                })
                .await
                .map_err(|e| JobError::Retry(e.to_string()))?;
            self.live.publish(&events).await;
            if expired > 0 {
                tracing::info!(expired, "expired checkout holds");
            }
            if (expired as i64) < BATCH {
                break;
            }
        }
        let (canceled, events) = ctx
            .store
            .db
            .write(move |c| {
                let canceled = sb_store::orders::cancel_uncollected(c, now, BATCH)?;
                let mut touched: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
                for (ws, order) in &canceled {
                    for line in sb_store::orders::lines(c, &order.id)? {
                        for (item, _) in sb_store::catalog::components(c, &line.variant_id)? {
                            touched
                                .entry(ws.clone())
                                .or_default()
                                .push((item, order.location_id.clone()));
                        }
                    }
                }
                let events = changed(c, touched, now)?;
                Ok::<_, sb_store::orders::OrderError>((canceled.len(), events))
            })
            .await
            .map_err(|e| JobError::Retry(e.to_string()))?;
        self.live.publish(&events).await;
        if canceled > 0 {
            tracing::info!(canceled, "cancelled pickup orders not collected in time");
        }
        schedule(&ctx.engine).await?;
        Ok(())
    }
}

/// `live` carries the availability changes to staff screens.
pub fn register(engine: &Engine, live: &Live) {
    engine.register(KIND, ExpireHolds { live: live.clone() });
}

/// (Re)schedules the next sweep.
pub async fn schedule(engine: &Engine) -> Result<(), StoreError> {
    engine
        .schedule(NewTimer {
            workspace_id: None,
            timer_key: "inventory:expire_holds".into(),
            queue: "default".into(),
            kind: KIND.into(),
            payload: "{}".into(),
            due_at: engine.time().now_ms() + EVERY_MS,
        })
        .await?;
    Ok(())
}
