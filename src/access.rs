//! What a request's handling learns that its access-log line reports: the upstream it
//! was routed to and the cache's answer. The HTTP server opens a scope per request;
//! the layers below note into it without knowing about HTTP.

use std::sync::{Arc, Mutex};

#[derive(Default, Clone)]
pub struct AccessNote {
    pub upstream: Option<Arc<str>>,
    pub cache: Option<&'static str>,
}

tokio::task_local! {
    static NOTE: Arc<Mutex<AccessNote>>;
}

/// Runs `fut` with `note` as the place its notes go.
pub async fn scope<F: std::future::Future>(note: Arc<Mutex<AccessNote>>, fut: F) -> F::Output {
    NOTE.scope(note, fut).await
}

fn with(f: impl FnOnce(&mut AccessNote)) {
    let _ = NOTE.try_with(|n| {
        if let Ok(mut n) = n.lock() {
            f(&mut n);
        }
    });
}

/// Notes which upstream the request was routed to.
pub fn upstream(name: &str) {
    with(|n| n.upstream = Some(Arc::from(name)));
}

/// Notes the cache's answer (hit, miss, coalesced, ...).
pub fn cache(result: &'static str) {
    with(|n| n.cache = Some(result));
}
