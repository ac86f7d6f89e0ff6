//! Turns queued batches into events on customers' timelines, oldest first. A batch leaves the
//! queue in the same transaction that stores its events, so a crash repeats the batch and
//! de-duplication on messageId makes the repeat change nothing.

use std::time::Duration;

use sb_store::{Store, StoreError, events};

use crate::Ingest;

/// Batches read per round; each is processed in a transaction of its own.
const ROUND: i64 = 32;

pub async fn run(store: Store, ingest: Ingest, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        loop {
            match round(&store).await {
                Ok(n) if n as i64 == ROUND && !*stop.borrow() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "processing event batches failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
        tokio::select! {
            _ = ingest.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Processes what is queued now; returns how many batches it read.
pub async fn round(store: &Store) -> Result<usize, StoreError> {
    let batches = store.db.read(|c| events::queued(c, ROUND)).await?;
    let n = batches.len();
    for batch in batches {
        let (id, failed_id) = (batch.id.clone(), batch.id.clone());
        // Background: Segment batches are acknowledged first, applied to profiles right after.
        match store
            .db
            .write_background(move |c| events::process_batch(c, &batch))
            .await
        {
            Ok(Some(outcome)) => {
                metrics::counter!("switchboard_cdp_events_stored_total").increment(outcome.stored as u64);
                metrics::counter!("switchboard_cdp_events_duplicate_total").increment(outcome.duplicates as u64);
                metrics::counter!("switchboard_cdp_merges_total").increment(outcome.merges as u64);
                if !outcome.refused_identifiers.is_empty() {
                    tracing::debug!(batch = %id, refused = ?outcome.refused_identifiers, "identifier values refused");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(batch = %id, error = %e, "an event batch failed");
                let error = e.to_string();
                store
                    .db
                    .write(move |c| events::batch_failed(c, &failed_id, &error))
                    .await?;
            }
        }
    }
    Ok(n)
}
