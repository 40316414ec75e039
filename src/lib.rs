//! ferry: a pull-through caching OCI registry mirror.
//!
//! # Layout
//! - [`oci`]: pure protocol types (names, references, ranges, media types, error codes).
//! - [`config`]: the config file, validated into typed settings.
//! - [`upstream`]: the registry client (auth, token cache, retries).
//! - [`proxy`]: the cache logic: routing to upstreams, manifests and tags, blob fills.
//! - [`http`]: router, handlers and middleware over [`proxy::Mirror`].
//! - [`metrics`]: every exported metric.
//! - `ferry_storage` (crate `storage/`): blob stores and metadata; no HTTP.
//!
//! Dependencies point one way: `http` → `proxy` → (`upstream`, `ferry_storage`) → `oci`.

pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod oci;
pub mod proxy;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use ferry_storage::{FsMetaStore, FsStore, StoreError};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::Mirror;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open storage at {path}: {source}")]
    Storage { path: String, source: StoreError },
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// A built node: its router plus handles that tests and the binary use.
pub struct App {
    pub router: Router,
    pub mirror: Arc<Mirror>,
    pub metrics: Arc<Metrics>,
}

/// Opens storage and builds the node's router.
pub async fn build_app(config: &Config) -> Result<App, StartError> {
    let storage_err = |source| StartError::Storage {
        path: config.storage.path.display().to_string(),
        source,
    };
    let store = Arc::new(
        FsStore::open(&config.storage.path)
            .await
            .map_err(storage_err)?,
    );
    let meta = Arc::new(
        FsMetaStore::open(&config.storage.path)
            .await
            .map_err(storage_err)?,
    );
    let metrics = Arc::new(Metrics::new()?);
    let mirror = Arc::new(Mirror::new(config, store, meta, metrics.clone())?);
    let router = http::router(http::AppState {
        mirror: mirror.clone(),
        metrics: metrics.clone(),
    });
    Ok(App {
        router,
        mirror,
        metrics,
    })
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains connections.
pub async fn run(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(StartError::Serve)
}

/// `ferry serve`: bind, build, run.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app = build_app(&config).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
    tracing::info!(
        listen = %config.listen,
        storage = %config.storage.path.display(),
        upstreams = ?config.upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        "ferry mirror serving"
    );
    run(listener, app.router, shutdown).await
}
