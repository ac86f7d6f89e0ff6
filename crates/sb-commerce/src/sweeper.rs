//! Every few seconds, as a durable job on a timer (one pending run however often it is
//! scheduled): expires checkout holds whose time has passed (until swept an expired hold
//! still blocks its stock: the safe direction) and cancels pickup orders not collected by
//! their deadline, which makes their stock sellable again.

use async_trait::async_trait;
use sb_engine::{Engine, JobContext, JobError, JobHandler};
use sb_store::StoreError;
use sb_store::timers::NewTimer;

const KIND: &str = "inventory.expire_holds";
const EVERY_MS: i64 = 5_000;
/// Holds expired per transaction.
const BATCH: i64 = 500;

struct ExpireHolds;

#[async_trait]
impl JobHandler for ExpireHolds {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let now = ctx.engine.time().now_ms();
        loop {
            let expired = ctx
                .store
                .db
                .write(move |c| sb_store::inventory::expire_due(c, now, BATCH))
                .await
                .map_err(|e| JobError::Retry(e.to_string()))?;
            if expired > 0 {
                tracing::info!(expired, "expired checkout holds");
            }
            if (expired as i64) < BATCH {
                break;
            }
        }
        let canceled = ctx
            .store
            .db
            .write(move |c| sb_store::orders::cancel_uncollected(c, now, BATCH))
            .await
            .map_err(|e| JobError::Retry(e.to_string()))?;
        if !canceled.is_empty() {
            tracing::info!(
                canceled = canceled.len(),
                "cancelled pickup orders not collected in time"
            );
        }
        schedule(&ctx.engine).await?;
        Ok(())
    }
}

pub fn register(engine: &Engine) {
    engine.register(KIND, ExpireHolds);
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
