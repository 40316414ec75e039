//! `ferry redirect`: the HTTP front of the routing decision, the nodes' health
//! probes, `/status`, `/metrics` and reload.
//!
//! The request path reads one `Arc` (the current fleet) and a few atomics: no locks
//! held across awaits, no I/O. Reload builds a whole new fleet and swaps it in;
//! requests in flight finish on the fleet they started with. A node whose URL stays
//! across a reload keeps its health state.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::{Decision, Routing, Target};
use crate::config::redirect::RedirectConfig;
use crate::oci::{ErrorCode, OciError};

/// Health of one node, shared across reloads by URL.
#[derive(Default)]
pub struct NodeHealth {
    up: AtomicBool,
    probed: AtomicBool,
    successes: AtomicU32,
    failures: AtomicU32,
    /// Unix seconds of the last state change.
    changed_at: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl NodeHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

/// One generation of config: the routing table and each node's health.
pub struct Fleet {
    pub routing: Routing,
    pub health: Vec<Arc<NodeHealth>>,
}

const OUTCOMES: [&str; 8] = [
    "node",
    "upstream",
    "info",
    "artifacts",
    "api",
    "not_found",
    "method_not_allowed",
    "bad_request",
];

struct Metrics {
    registry: Registry,
    /// One counter per outcome, resolved once: no label hashing per request.
    outcomes: [prometheus::IntCounter; 8],
    node_up: IntGaugeVec,
    transitions: IntCounterVec,
    reloads: IntCounterVec,
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "ferry_redirect_requests_total",
                "Requests answered, by outcome (node, upstream, info, artifacts, api, not_found, method_not_allowed, bad_request)",
            ),
            &["outcome"],
        )?;
        let node_up = IntGaugeVec::new(
            Opts::new(
                "ferry_redirect_node_up",
                "1 when the node passes its health checks",
            ),
            &["node", "region"],
        )?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "ferry_redirect_node_transitions_total",
                "Health state changes, by node and new state",
            ),
            &["node", "state"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("ferry_redirect_reloads_total", "Config reloads, by result"),
            &["result"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let outcomes = OUTCOMES.map(|o| requests.with_label_values(&[o]));
        registry.register(Box::new(node_up.clone()))?;
        registry.register(Box::new(transitions.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        Ok(Self {
            registry,
            outcomes,
            node_up,
            transitions,
            reloads,
        })
    }
}

pub struct Redirector {
    fleet: ArcSwap<Fleet>,
    /// TLS, limits and access log (from the config at start; a reload re-reads the
    /// TLS files but not `[limits]`).
    server: Arc<crate::http::serve::Server>,
    metrics: Metrics,
    probe: reqwest::Client,
    /// Where reload reads the config from.
    path: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot set up metrics")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Server(#[from] crate::http::serve::ServerError),
    #[error("cannot build the probe client")]
    Client(#[from] reqwest::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server error")]
    Serve(#[source] std::io::Error),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Redirector {
    /// Builds the redirector and starts probing the config's nodes. `path` is
    /// re-read by [`Redirector::reload`].
    pub fn start(
        config: RedirectConfig,
        path: Option<PathBuf>,
    ) -> Result<Arc<Self>, RedirectError> {
        let metrics = Metrics::new()?;
        let server = crate::http::serve::Server::new(&config.server, &metrics.registry)?;
        let fleet = Fleet {
            health: config.nodes.iter().map(|_| Arc::default()).collect(),
            routing: Routing::new(config)?,
        };
        let this = Arc::new(Self {
            fleet: ArcSwap::from_pointee(fleet),
            server,
            metrics,
            probe: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            path,
        });
        let fleet = this.fleet.load_full();
        this.spawn_probes(&fleet);
        this.spawn_watch(&fleet);
        Ok(this)
    }

    pub fn fleet(&self) -> Arc<Fleet> {
        self.fleet.load_full()
    }

    /// Re-reads the config file; a bad file is logged and the running config kept.
    pub fn reload(self: &Arc<Self>) -> Result<(), RedirectError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let result = RedirectConfig::load(path).and_then(Routing::new);
        let routing = match result {
            Ok(r) => r,
            Err(e) => {
                self.metrics.reloads.with_label_values(&["rejected"]).inc();
                tracing::error!(error = %e, "config reload rejected; keeping the running config");
                return Err(e.into());
            }
        };
        let old = self.fleet.load_full();
        let health = routing
            .config
            .nodes
            .iter()
            .map(|n| {
                old.routing
                    .config
                    .nodes
                    .iter()
                    .position(|o| o.url == n.url)
                    .map_or_else(Arc::default, |i| old.health[i].clone())
            })
            .collect();
        let fleet = Arc::new(Fleet { routing, health });
        self.metrics.node_up.reset();
        self.fleet.store(fleet.clone());
        self.spawn_probes(&fleet);
        self.spawn_watch(&fleet);
        self.metrics.reloads.with_label_values(&["applied"]).inc();
        tracing::info!(
            regions = fleet.routing.config.regions.len(),
            nodes = fleet.routing.config.nodes.len(),
            prefixes = fleet.routing.prefix_count(),
            "config reloaded"
        );
        Ok(())
    }

    /// Ticks every `every` (the first at once) for as long as `fleet` is the current
    /// fleet: a reload replaces it, and the new fleet has its own tasks.
    fn ticker(self: &Arc<Self>, fleet: &Arc<Fleet>, every: Duration) -> FleetTicker {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        FleetTicker {
            this: Arc::downgrade(self),
            fleet: Arc::downgrade(fleet),
            tick,
        }
    }

    /// Probes every node of `fleet` each interval until the fleet is replaced.
    fn spawn_probes(self: &Arc<Self>, fleet: &Arc<Fleet>) {
        let health = fleet.routing.config.health;
        let mut ticks = self.ticker(fleet, health.interval);
        tokio::spawn(async move {
            while let Some((this, fleet)) = ticks.next().await {
                let probes = fleet
                    .routing
                    .config
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| this.probe_node(&fleet, i, n.url.clone(), health.timeout));
                futures_util::future::join_all(probes).await;
            }
        });
    }

    /// With `watch` set, looks at the config file and the range files every
    /// interval and reloads when one of them changed (size, modification time or
    /// inode, so an editor's rename or a Kubernetes ConfigMap's symlink swap counts),
    /// until the fleet is replaced; the new fleet has its own watcher. A change
    /// that does not load is logged once and waits for the next change.
    fn spawn_watch(self: &Arc<Self>, fleet: &Arc<Fleet>) {
        let Some(every) = fleet.routing.config.watch else {
            return;
        };
        if self.path.is_none() {
            return;
        }
        let files = fleet.routing.config.files.clone();
        let mut seen = stamps(&files);
        let mut ticks = self.ticker(fleet, every);
        tokio::spawn(async move {
            while let Some((this, _)) = ticks.next().await {
                let now = stamps(&files);
                if now == seen {
                    continue;
                }
                let changed: Vec<_> = files
                    .iter()
                    .zip(now.iter().zip(&seen))
                    .filter(|(_, (a, b))| a != b)
                    .map(|(f, _)| f.display().to_string())
                    .collect();
                tracing::info!(files = ?changed, "config files changed; reloading");
                seen = now;
                // A rejected reload was logged and counted by `reload`.
                let _ = this.reload();
            }
        });
    }

    async fn probe_node(&self, fleet: &Fleet, i: usize, url: url::Url, timeout: Duration) {
        let base = url.as_str().trim_end_matches('/');
        let target = format!("{base}/readyz");
        let result = match self.probe.get(&target).timeout(timeout).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("/readyz answered {}", r.status())),
            Err(e) if e.is_timeout() => Err(format!("no answer within {timeout:?}")),
            Err(e) => Err(format!("cannot connect: {e}")),
        };
        let cfg = &fleet.routing.config;
        let node = &cfg.nodes[i];
        let h = &fleet.health[i];
        let first = !h.probed.swap(true, Ordering::Relaxed);
        let region = cfg.regions[node.region].name.as_str();
        match result {
            Ok(()) => {
                h.failures.store(0, Ordering::Relaxed);
                let n = h.successes.fetch_add(1, Ordering::Relaxed) + 1;
                // The first probe after start-up decides at once.
                if !h.is_up() && (first || n >= cfg.health.healthy_threshold) {
                    h.up.store(true, Ordering::Relaxed);
                    h.changed_at.store(now_secs(), Ordering::Relaxed);
                    self.metrics
                        .transitions
                        .with_label_values(&[base, "up"])
                        .inc();
                    tracing::info!(node = base, region, "node is up");
                }
            }
            Err(e) => {
                h.successes.store(0, Ordering::Relaxed);
                let n = h.failures.fetch_add(1, Ordering::Relaxed) + 1;
                // A node found down at start-up is reported at once, too.
                if first || (h.is_up() && n >= cfg.health.unhealthy_threshold) {
                    h.up.store(false, Ordering::Relaxed);
                    h.changed_at.store(now_secs(), Ordering::Relaxed);
                    self.metrics
                        .transitions
                        .with_label_values(&[base, "down"])
                        .inc();
                    tracing::warn!(node = base, region, error = %e, "node is down");
                }
                if let Ok(mut last) = h.last_error.lock() {
                    *last = Some(e);
                }
            }
        }
        self.metrics
            .node_up
            .with_label_values(&[base, region])
            .set(i64::from(h.is_up()));
    }

    fn status_json(&self) -> serde_json::Value {
        let fleet = self.fleet.load();
        let cfg = &fleet.routing.config;
        serde_json::json!({
            "upstream": cfg.upstream.as_str().trim_end_matches('/'),
            "prefixes": fleet.routing.prefix_count(),
            "regions": cfg.regions.iter().map(|r| serde_json::json!({
                "name": r.name,
                "cidrs": r.cidrs.len(),
                "fallback": r.fallback.iter().map(|f| cfg.regions[*f].name.as_str()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "nodes": cfg.nodes.iter().zip(&fleet.health).map(|(n, h)| serde_json::json!({
                "url": n.url.as_str().trim_end_matches('/'),
                "region": cfg.regions[n.region].name,
                "weight": n.weight,
                "drain": n.drain,
                "healthy": h.is_up(),
                "probed": h.probed.load(Ordering::Relaxed),
                "since": h.changed_at.load(Ordering::Relaxed),
                "last_error": h.last_error.lock().ok().and_then(|e| e.clone()),
            })).collect::<Vec<_>>(),
        })
    }
}

/// See [`Redirector::ticker`].
struct FleetTicker {
    this: Weak<Redirector>,
    fleet: Weak<Fleet>,
    tick: tokio::time::Interval,
}

impl FleetTicker {
    async fn next(&mut self) -> Option<(Arc<Redirector>, Arc<Fleet>)> {
        self.tick.tick().await;
        let (this, fleet) = (self.this.upgrade()?, self.fleet.upgrade()?);
        Arc::ptr_eq(&this.fleet.load(), &fleet).then_some((this, fleet))
    }
}

/// What the watcher compares: each file's size, modification time and identity, or
/// `None` while it cannot be read.
type Stamp = Option<(u64, Option<SystemTime>, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            #[cfg(unix)]
            let id = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let id = 0;
            Some((m.len(), m.modified().ok(), id))
        })
        .collect()
}

fn oci_error(code: ErrorCode, message: &str) -> Response {
    crate::http::error_response(OciError::new(code, message))
}

/// The redirector as a connection handler.
#[derive(Clone)]
struct Handler(Arc<Redirector>);

impl crate::http::serve::Handler for Handler {
    async fn call(&self, peer: SocketAddr, req: Request) -> Response {
        handle(&self.0, peer, &req)
    }
}

fn handle(r: &Redirector, peer: SocketAddr, req: &Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path();
    let get = method == Method::GET || method == Method::HEAD;
    match path {
        "/status" if get => {
            let mut resp = Response::new(Body::from(r.status_json().to_string()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return resp;
        }
        "/metrics" if get => {
            let text = prometheus::TextEncoder::new()
                .encode_to_string(&r.metrics.registry.gather())
                .unwrap_or_default();
            return Response::new(Body::from(text));
        }
        "/healthz" if get => return Response::new(Body::from("ok\n")),
        _ => {}
    }
    // Every X-Forwarded-For header, in order, as one list.
    let xff: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = (!xff.is_empty()).then(|| xff.join(","));
    let fleet = r.fleet.load();
    let client = fleet.routing.client_ip(peer.ip(), xff.as_deref());
    let decision = fleet
        .routing
        .decide(method.as_str(), path, req.uri().query(), client, &|i| {
            fleet.health.get(i).is_some_and(|h| h.is_up())
        });
    // Indexes into OUTCOMES.
    let outcome = match &decision {
        Decision::Redirect(Target::Node(_), _) => 0,
        Decision::Redirect(Target::Upstream, _) => 1,
        Decision::Redirect(Target::Info, _) => 2,
        Decision::Redirect(Target::Artifacts, _) => 3,
        Decision::ApiVersion => 4,
        Decision::NotFound => 5,
        Decision::MethodNotAllowed => 6,
        Decision::Bad(_) => 7,
    };
    r.metrics.outcomes[outcome].inc();
    let v2 = path.starts_with("/v2");
    match decision {
        Decision::Redirect(_, location) => {
            let Ok(location) = HeaderValue::from_maybe_shared(bytes::Bytes::from(location)) else {
                return oci_error(ErrorCode::Unknown, "cannot build a redirect");
            };
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::from_u16(fleet.routing.config.status)
                .unwrap_or(StatusCode::TEMPORARY_REDIRECT);
            resp.headers_mut().insert(header::LOCATION, location);
            resp
        }
        Decision::ApiVersion => crate::http::api_version_response(),
        Decision::Bad(e) => crate::http::error_response(e),
        Decision::NotFound if v2 => oci_error(ErrorCode::NameUnknown, "not found"),
        // UNSUPPORTED is a 405.
        Decision::MethodNotAllowed if v2 => oci_error(
            ErrorCode::Unsupported,
            "the redirector only answers GET and HEAD",
        ),
        Decision::NotFound => {
            let mut resp = Response::new(Body::from("not found\n"));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
        Decision::MethodNotAllowed => {
            let mut resp = Response::new(Body::from("method not allowed\n"));
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            resp
        }
    }
}

/// Serves on `listener` until `shutdown`, with one worker thread per CPU: a
/// redirect is a few microseconds of CPU and no I/O, so each connection stays on
/// the thread that accepted it.
pub async fn run(
    listener: tokio::net::TcpListener,
    r: Arc<Redirector>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RedirectError> {
    r.server
        .clone()
        .serve_on_workers(
            listener,
            Handler(r),
            crate::http::serve::default_workers(),
            shutdown,
        )
        .await
        .map_err(RedirectError::Serve)
}

/// `ferry redirect --config FILE`: serve, reload on SIGHUP, stop on `shutdown`.
pub async fn serve(
    config: RedirectConfig,
    path: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RedirectError> {
    let addr = config.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RedirectError::Bind { addr, source })?;
    let r = Redirector::start(config, Some(path))?;
    #[cfg(unix)]
    {
        let weak = Arc::downgrade(&r);
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let Some(r) = weak.upgrade() else { return };
                    let _ = r.reload();
                }
            });
        }
    }
    let fleet = r.fleet();
    tracing::info!(
        listen = %addr,
        tls = r.server.is_tls(),
        regions = fleet.routing.config.regions.len(),
        nodes = fleet.routing.config.nodes.len(),
        prefixes = fleet.routing.prefix_count(),
        "ferry redirector serving"
    );
    run(listener, r, shutdown).await
}
