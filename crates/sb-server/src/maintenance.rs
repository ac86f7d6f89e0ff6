//! Housekeeping that runs as durable jobs on a timer: expired sessions, and webhook tokens past
//! their signature window, are swept hourly.

use async_trait::async_trait;
use sb_engine::{Engine, JobContext, JobError, JobHandler};
use sb_store::timers::NewTimer;
use sb_store::{StoreError, sessions};

const SWEEP_KIND: &str = "maintenance.sweep_sessions";
const SWEEP_EVERY_MS: i64 = 3_600_000;

struct SweepSessions;

#[async_trait]
impl JobHandler for SweepSessions {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let now = ctx.engine.time().now_ms();
        let removed = ctx.store.db.write(move |c| sessions::delete_expired(c, now)).await?;
        let tokens = ctx
            .store
            .db
            .write(move |c| sb_store::inbound::forget_tokens(c, now))
            .await?;
        let keys = ctx
            .store
            .db
            .write(move |c| sb_store::idempotency::forget_before(c, now - sb_store::idempotency::KEEP_MS))
            .await?;
        tracing::info!(
            removed,
            tokens,
            keys,
            "swept expired sessions, signed tokens and idempotency keys"
        );
        schedule(&ctx.engine).await?;
        Ok(())
    }
}

pub fn register(engine: &Engine) {
    engine.register(SWEEP_KIND, SweepSessions);
}

/// (Re)schedules the next sweep; the fixed key keeps one pending sweep however often this runs.
pub async fn schedule(engine: &Engine) -> Result<(), StoreError> {
    let due_at = engine.time().now_ms() + SWEEP_EVERY_MS;
    engine
        .schedule(NewTimer {
            workspace_id: None,
            timer_key: "maintenance:sweep_sessions".into(),
            queue: "default".into(),
            kind: SWEEP_KIND.into(),
            payload: "{}".into(),
            due_at,
        })
        .await?;
    Ok(())
}
