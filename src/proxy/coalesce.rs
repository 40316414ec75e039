//! Request coalescing: concurrent callers with the same key share one execution.
//!
//! Used for manifest fetches and tag revalidations, so a burst of clients asking for
//! the same cold or expired tag sends one request upstream, not one each. (Blobs have
//! their own, streaming, mechanism in `fill`.) If the caller running the work is
//! cancelled, a waiting caller takes it over.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub struct Coalesce<K, V> {
    running: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for Coalesce<K, V> {
    fn default() -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Coalesce<K, V> {
    /// Runs `work` unless a call with the same key is running, in which case its result is shared.
    pub async fn run<F, Fut>(&self, key: &K, work: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running.entry(key.clone()).or_default().clone()
        };
        let value = cell.get_or_init(work).await.clone();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            running.remove(key);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let c = Arc::new(Coalesce::<u32, u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (c, runs) = (c.clone(), runs.clone());
                tokio::spawn(async move {
                    c.run(&7, || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        42
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 42);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Finished keys are forgotten: the next call runs again.
        assert_eq!(c.run(&7, || async { 43 }).await, 43);
    }

    #[tokio::test]
    async fn a_cancelled_runner_is_taken_over() {
        let c = Arc::new(Coalesce::<u32, u32>::default());
        let c2 = c.clone();
        let first = tokio::spawn(async move {
            c2.run(&1, || async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                0
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let c3 = c.clone();
        let second = tokio::spawn(async move { c3.run(&1, || async { 5 }).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.abort();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), second)
                .await
                .unwrap()
                .unwrap(),
            5
        );
    }
}
