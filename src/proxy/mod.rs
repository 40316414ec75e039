//! The pull-through cache: decides which upstream a request is for, serves what the
//! store has, and fetches (once) what it lacks.
//!
//! Uses `upstream` and `ferry_storage`; knows nothing of axum. Handlers call
//! [`Mirror::route`] and then one of the `blob` / `manifest` / `tags` / `referrers`
//! methods, and turn the reply into a response.

mod blobs;
mod coalesce;
pub mod error;
pub mod fill;
mod manifests;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_storage::{BlobStore, MetaStore, TagKey, TagRecord};

pub use blobs::BlobReply;
pub use error::{Kind, ProxyError};
pub use manifests::{ManifestReply, ReferrersReply, TagsReply};

use crate::config::{Config, UpstreamConfig};
use crate::metrics::Metrics;
use crate::oci::{Digest, RepoName};
use crate::upstream::Upstream;

/// An upstream and the repository name to ask it for.
#[derive(Clone)]
pub struct Route {
    pub upstream: Arc<Upstream>,
    pub repo: RepoName,
}

/// (upstream, repository, tag or digest): one manifest fetch or tag revalidation.
type FetchKey = (String, String, String);
type FetchResult = Result<ManifestReply, error::SharedError>;

/// (upstream, repository, subject digest, artifactType filter).
type ReferrersKey = (String, String, Digest, Option<String>);

pub struct Mirror {
    upstreams: Vec<Arc<Upstream>>,
    /// The same upstreams' settings, for [`route_name`].
    configs: Vec<UpstreamConfig>,
    store: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    fills: Arc<fill::Fills>,
    metrics: Arc<Metrics>,
    /// Hot manifests by digest, bounded by bytes.
    manifests: moka::future::Cache<Digest, ManifestReply>,
    /// Tag answers: the record and when this process last confirmed it.
    tags: moka::future::Cache<TagKey, (TagRecord, Instant)>,
    /// Referrers responses by (upstream, repo, digest, artifactType), expiring after the manifest TTL.
    referrers: moka::future::Cache<ReferrersKey, (Bytes, String)>,
    /// Concurrent misses and revalidations of one manifest share one upstream request.
    fetches: coalesce::Coalesce<FetchKey, FetchResult>,
    /// Answer blob hits with a presigned store URL valid this long (S3 `redirect`).
    redirect: Option<std::time::Duration>,
    /// Where committed fills are recorded.
    audit: Option<ferry_storage::AuditLog>,
}

impl Mirror {
    pub fn new(
        config: &Config,
        store: Arc<dyn BlobStore>,
        meta: Arc<dyn MetaStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| Upstream::new(u.clone(), metrics.clone()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let manifests = moka::future::Cache::builder()
            .weigher(|_k: &Digest, v: &ManifestReply| {
                u32::try_from(v.bytes.len()).unwrap_or(u32::MAX)
            })
            .max_capacity(config.manifest_cache_size)
            .build();
        Ok(Self {
            upstreams,
            configs: config.upstreams.clone(),
            store,
            meta,
            fills: Arc::default(),
            metrics,
            manifests,
            tags: moka::future::Cache::builder().max_capacity(100_000).build(),
            referrers: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(config.manifest_ttl)
                .build(),
            fetches: coalesce::Coalesce::default(),
            redirect: config.storage.redirect(),
            audit: None,
        })
    }

    /// Records every committed fill in `log`.
    pub fn with_audit(mut self, log: Option<ferry_storage::AuditLog>) -> Self {
        self.audit = log;
        self
    }

    /// Appends a committed fill of `digest` from `route` to the audit log.
    fn audit_fill(&self, route: &Route, digest: &Digest, size: u64) {
        audit_fill(self.audit.as_ref(), route, digest, size);
    }

    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    pub fn fills_in_flight(&self) -> usize {
        self.fills.len()
    }

    /// Picks the upstream for a request: see [`route_name`].
    pub fn route(&self, raw_name: &str, ns: Option<&str>) -> Result<Route, ProxyError> {
        let (i, repo) = route_name(&self.configs, raw_name, ns)?;
        let upstream = self
            .upstreams
            .get(i)
            .cloned()
            .ok_or(ProxyError::NoDefaultUpstream)?;
        crate::access::upstream(&self.configs[i].name);
        Ok(Route { upstream, repo })
    }
}

fn audit_fill(log: Option<&ferry_storage::AuditLog>, route: &Route, digest: &Digest, size: u64) {
    if let Some(log) = log {
        log.record_or_warn(
            ferry_storage::AuditEvent::new(ferry_storage::AuditAction::Fill, digest)
                .size(size)
                .repo(route.upstream.name(), route.repo.as_str()),
        );
    }
}

/// The routing rule (DESIGN §3, a contract): a path prefix naming an upstream, then
/// containerd's `ns`, then the default upstream. Returns the upstream's position in
/// `upstreams` and the repository name to ask it for (with Docker Hub's `library/`).
pub fn route_name(
    upstreams: &[UpstreamConfig],
    raw_name: &str,
    ns: Option<&str>,
) -> Result<(usize, RepoName), ProxyError> {
    let by_prefix = raw_name.split_once('/').and_then(|(first, rest)| {
        upstreams
            .iter()
            .position(|u| u.name == first)
            .map(|i| (i, rest))
    });
    let (i, name) = match (by_prefix, ns) {
        (Some(found), _) => found,
        (None, Some(ns)) => {
            let i = upstreams
                .iter()
                .position(|u| u.matches_ns(ns))
                .ok_or_else(|| ProxyError::UnknownUpstream(ns.chars().take(255).collect()))?;
            (i, raw_name)
        }
        (None, None) => (
            upstreams
                .iter()
                .position(|u| u.default)
                .ok_or(ProxyError::NoDefaultUpstream)?,
            raw_name,
        ),
    };
    let mut repo = RepoName::parse(name).map_err(|e| ProxyError::Oci(e.into()))?;
    if upstreams[i].library_prefix {
        repo = repo.with_library_prefix();
    }
    Ok((i, repo))
}

#[cfg(test)]
mod tests;
