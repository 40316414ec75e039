//! Background upkeep of the cache: writes access times to the index in batches
//! (every second, so the hit path never writes), evicts when the store is over its
//! high watermark or the disk filled up, and keeps the cache gauges current.
//! Runs as one task that outlives requests and is stopped, with a last flush, at
//! shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_storage::{IndexedStore, NodeStats};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

const FLUSH_EVERY: Duration = Duration::from_secs(1);

pub struct Maintenance {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Maintenance {
    pub fn spawn(store: Arc<IndexedStore>, metrics: Arc<Metrics>) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let started_at = ferry_storage::index::now_ms() / 1000;
        let task = tokio::spawn(run(store, metrics, started_at, stop_rx));
        Self { stop, task }
    }

    /// Stops the task after a last flush of access times and a sync of the index.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    store: Arc<IndexedStore>,
    metrics: Arc<Metrics>,
    started_at: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut evicted_seen = (0, 0);
    loop {
        tokio::select! {
            _ = tick.tick() => flush(&store, &metrics, started_at).await,
            () = store.pressure() => {}
            _ = stop.changed() => break,
        }
        let excess = store.excess();
        if excess > 0 {
            match store.evict(excess).await {
                Ok(r) => tracing::info!(
                    blobs = r.blobs,
                    bytes = r.bytes,
                    "evicted least recently used content"
                ),
                Err(e) => tracing::warn!(error = %e, "eviction failed"),
            }
        }
        let (blobs, bytes) = store.evicted();
        metrics.evictions.inc_by(blobs - evicted_seen.0);
        metrics.evicted_bytes.inc_by(bytes - evicted_seen.1);
        evicted_seen = (blobs, bytes);
        let totals = store.index().totals();
        metrics.cache_bytes.set(totals.bytes as i64);
        metrics.cache_blobs.set(totals.blobs as i64);
        metrics.cache_pinned_bytes.set(totals.pinned_bytes as i64);
    }
    flush(&store, &metrics, started_at).await;
    let index = store.index().clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || index.sync()).await {
        tracing::warn!(error = %e, "syncing the index at shutdown failed");
    }
}

/// Writes pending access times and this node's hit counters.
async fn flush(store: &IndexedStore, metrics: &Arc<Metrics>, started_at: u64) {
    let index = store.index().clone();
    let lookups = |result: &str| {
        ["blob", "manifest"]
            .iter()
            .map(|k| metrics.cache_lookups.with_label_values(&[k, result]).get())
            .sum::<u64>()
    };
    let stats = NodeStats {
        started_at,
        hits: lookups("hit") + lookups("revalidated"),
        misses: lookups("miss"),
    };
    let start = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        index.flush()?;
        index.save_node_stats(stats)
    })
    .await;
    metrics.index_flush.observe(start.elapsed().as_secs_f64());
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "flushing access times failed"),
        Err(e) => tracing::warn!(error = %e, "flush task failed"),
    }
}
