//! ferry: a pull-through caching OCI registry mirror.
//!
//! # Layout
//! - [`oci`]: pure protocol types (names, references, ranges, media types, error codes).
//! - [`config`]: the config file, validated into typed settings.
//! - [`upstream`]: the registry client (auth, token cache, retries).
//! - [`proxy`]: the cache logic: routing to upstreams, manifests and tags, blob fills.
//! - [`http`]: router, handlers and middleware over [`proxy::Mirror`].
//! - [`redirect`]: the redirector's routing decision (client → region → node).
//! - [`metrics`]: every exported metric.
//! - [`cache`]: background upkeep: access-time flushes and eviction.
//! - [`admin`]: the `ferry index` commands.
//! - [`promote`]: promotion manifests, `ferry sync|export|import|audit`, air-gap bundles.
//! - [`access`]: per-request notes (upstream, cache result) for the access log.
//! - `ferry_storage` (crate `storage/`): blob stores, the RocksDB index, eviction; no HTTP.
//!
//! Dependencies point one way: `http` → `proxy` → (`upstream`, `ferry_storage`) → `oci`.

pub mod access;
pub mod admin;
pub mod cache;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod oci;
pub mod promote;
pub mod proxy;
pub mod redirect;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use ferry_storage::{
    AuditLog, BlobStore, FsStore, Index, IndexError, IndexedStore, MetaStore, S3Store, StoreError,
};
use tokio::net::TcpListener;

use crate::config::{Backend, Config, StorageConfig};
use crate::metrics::Metrics;
use crate::proxy::Mirror;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open storage at {path}")]
    Storage { path: String, source: StoreError },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("cannot set up metrics")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot build the HTTP client")]
    Client(#[from] reqwest::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Server(#[from] http::serve::ServerError),
}

/// A built node: its router plus handles that tests and the binary use.
pub struct App {
    pub router: Router,
    /// TLS, limits and access log, from `[tls]`, `[limits]`, `[log]`.
    pub server: Arc<http::serve::Server>,
    pub mirror: Arc<Mirror>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<IndexedStore>,
    pub maintenance: cache::Maintenance,
}

/// Opens storage and the index, reconciles them after whatever the last run left
/// behind, and builds the node's router.
pub async fn build_app(config: &Config) -> Result<App, StartError> {
    let storage_err = |source| StartError::Storage {
        path: config.storage.location(),
        source,
    };
    let backend = open_backend(&config.storage, true)
        .await
        .map_err(storage_err)?;
    let index_path = config.storage.index_path.clone();
    let index = tokio::task::spawn_blocking(move || Index::open(&index_path))
        .await
        .map_err(|e| StartError::Index(IndexError::Other(e.to_string())))??;
    let index = Arc::new(index);
    let audit = open_audit(&config.storage, "proxy").map_err(storage_err)?;
    let mut store = IndexedStore::new(backend, index.clone(), config.storage.limits);
    if let Some(log) = audit.clone() {
        store = store.with_audit(log);
    }
    let store = Arc::new(store);
    let started = std::time::Instant::now();
    let report = store.reconcile(true, false).await.map_err(storage_err)?;
    let totals = index.totals();
    tracing::info!(
        blobs = totals.blobs,
        bytes = totals.bytes,
        adopted_from_shared_store = report.adoptable.len(),
        entries_without_content = report.missing_content.len(),
        reindexed = report.unindexed.len(),
        corrupt_deleted = report.unindexed_corrupt.len(),
        took = ?started.elapsed(),
        "store and index reconciled"
    );
    let metrics = Arc::new(Metrics::new()?);
    let blob_store: Arc<dyn BlobStore> = store.clone();
    let meta: Arc<dyn MetaStore> = index;
    let mirror =
        Arc::new(Mirror::new(config, blob_store, meta, metrics.clone())?.with_audit(audit));
    let router = http::router(http::AppState {
        mirror: mirror.clone(),
        metrics: metrics.clone(),
        auth: config
            .auth
            .clone()
            .map(|a| Arc::new(http::auth::Auth::new(a))),
    });
    let maintenance = cache::Maintenance::spawn(store.clone(), metrics.clone());
    let server = http::serve::Server::new(&config.server, metrics.registry())?;
    Ok(App {
        router,
        server,
        mirror,
        metrics,
        store,
        maintenance,
    })
}

/// Opens the store's audit log (`[storage] audit_log`), recording as `actor`.
pub fn open_audit(storage: &StorageConfig, actor: &str) -> Result<Option<AuditLog>, StoreError> {
    storage
        .audit_log
        .as_deref()
        .map(|path| {
            AuditLog::open(path, actor)
                .map_err(|e| StoreError::Backend(format!("audit log {}: {e}", path.display())))
        })
        .transpose()
}

/// The actor the admin commands record in the audit log: `cli:<user>`.
pub fn cli_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

/// Opens the configured blob backend. `owner` is the node itself at start-up: it
/// also removes what a crash left behind (temp and spool files, open multipart
/// uploads), which no other process may do while the node runs.
pub async fn open_backend(
    storage: &StorageConfig,
    owner: bool,
) -> Result<Arc<dyn BlobStore>, StoreError> {
    match &storage.backend {
        Backend::Fs => {
            let fs = FsStore::open(&storage.path).await?;
            if owner {
                let removed = fs.remove_temp_files().await?;
                tracing::info!(temp_files_removed = removed, "fs store opened");
            }
            Ok(Arc::new(fs))
        }
        Backend::S3 { s3, .. } => {
            let store = S3Store::connect((**s3).clone()).await?;
            if owner {
                let r = store.clean_up().await?;
                tracing::info!(
                    spool_files_removed = r.spool_files,
                    journaled_uploads_aborted = r.journaled_uploads,
                    stale_uploads_aborted = r.stale_uploads,
                    upload_listing_supported = !r.listing_unsupported,
                    "s3 store opened"
                );
            }
            Ok(Arc::new(store))
        }
    }
}

/// The node's router as a connection handler; the peer address is available to
/// handlers as `ConnectInfo<SocketAddr>`.
#[derive(Clone)]
struct RouterHandler(Router);

impl http::serve::Handler for RouterHandler {
    async fn call(
        &self,
        peer: std::net::SocketAddr,
        mut req: axum::extract::Request,
    ) -> axum::response::Response {
        use tower::ServiceExt as _;
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        match self.0.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }
}

/// Serves a built node until `shutdown`; then stops accepting, lets open requests
/// finish and fills in flight complete (both within `limits.shutdown_grace`), and
/// stops its background work with a last flush of the index.
pub async fn run_app(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let grace = app.server.shutdown_grace();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serving = app
        .server
        .clone()
        .serve(listener, RouterHandler(app.router), stop_rx);
    let mut serving = std::pin::pin!(serving);
    tokio::select! {
        () = &mut serving => {}
        () = shutdown => {
            let deadline = tokio::time::Instant::now() + grace;
            let _ = stop_tx.send(true);
            if tokio::time::timeout_at(deadline, &mut serving).await.is_err() {
                tracing::warn!(?grace, "requests still open after the grace period; closing them");
            }
            // Fills outlive the requests that started them: give them the rest of
            // the grace period to verify and commit. One cut short leaves only a temp
            // file, which the next start removes.
            while app.mirror.fills_in_flight() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let left = app.mirror.fills_in_flight();
            if left > 0 {
                tracing::warn!(fills = left, "fills still running after the grace period; abandoning them");
            }
        }
    }
    app.maintenance.shutdown().await;
    Ok(())
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
        storage = %config.storage.location(),
        tls = app.server.is_tls(),
        upstreams = ?config.upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        "ferry mirror serving"
    );
    run_app(listener, app, shutdown).await
}
