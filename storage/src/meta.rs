//! Metadata records beside the blobs: which digest a tag pointed at and when that
//! was last confirmed upstream, and which repositories hold which manifests.
//!
//! Tag records make serve-stale work across restarts: with the upstream down, a node
//! still answers a tag with the digest it last saw. The [`crate::Index`] implements
//! this trait; the proxy only sees the trait.

use std::time::SystemTime;

use async_trait::async_trait;

use crate::{Digest, StoreError};

/// Identifies a tag of a repository on one upstream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagKey {
    pub upstream: String,
    pub repo: String,
    pub tag: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRecord {
    pub digest: Digest,
    /// When the upstream last confirmed this tag → digest mapping.
    pub checked_at: SystemTime,
    /// Set by promotion: the tag is immutable here. It is served without asking the
    /// upstream and only `ferry sync --allow-tag-move` or `--prune` changes it.
    pub pinned: bool,
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    async fn get_tag(&self, key: &TagKey) -> Result<Option<TagRecord>, StoreError>;
    async fn put_tag(&self, key: &TagKey, record: &TagRecord) -> Result<(), StoreError>;
    /// Records that `repo` on `upstream` has the manifest `digest` (so eviction of the
    /// manifest can drop the record and the tags that point at it).
    async fn add_manifest(
        &self,
        upstream: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<(), StoreError>;
    /// The manifests this node holds for a repository.
    async fn repo_manifests(&self, upstream: &str, repo: &str) -> Result<Vec<Digest>, StoreError>;
    /// The tags this node knows for a repository (promoted ones and those it cached),
    /// sorted: what it can list when the upstream cannot be asked.
    async fn repo_tags(&self, upstream: &str, repo: &str) -> Result<Vec<String>, StoreError>;
}
