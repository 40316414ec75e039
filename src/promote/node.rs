//! A ferry node's own store as a promotion destination: the admin path that writes
//! the store directly. It opens the node's index for writing, which RocksDB allows
//! one process at a time, so the node is stopped while it runs (its files are the
//! authorization: only who may write the node's data directory may promote).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use ferry_storage::store::{read_to_vec, ByteStream};
use ferry_storage::{
    AuditAction, AuditEvent, AuditLog, BlobStore as _, Index, IndexedStore, TagKey, TagRecord,
};

use super::{Closure, ManifestItem, PromoteError, RegistryRef, Sink, TagTarget};
use crate::config::{Config, UpstreamConfig};
use crate::oci::{Descriptor, Digest, RepoName, Tag, MAX_MANIFEST_BYTES};

pub struct NodeStore {
    pub store: Arc<IndexedStore>,
    pub config: Config,
    pub audit: Option<AuditLog>,
}

impl NodeStore {
    /// Opens a stopped node's store and index for writing (or reading only).
    pub async fn open(config: &Config, write: bool) -> Result<Self, PromoteError> {
        let store = crate::admin::open_offline(config, write).await?;
        Ok(Self {
            audit: store.audit().cloned(),
            store: Arc::new(store),
            config: config.clone(),
        })
    }

    pub fn index(&self) -> &Arc<Index> {
        self.store.index()
    }

    /// Where images from `src` are filed on this node: the upstream `upstream` names
    /// (images keep their manifest names), else the upstream that `src`'s host routes
    /// to, as containerd's `?ns=` would (images keep their full source path), else
    /// the default upstream.
    pub fn placement(
        &self,
        src: &RegistryRef,
        upstream: Option<&str>,
    ) -> Result<Placement, PromoteError> {
        let ups = &self.config.upstreams;
        let (u, prefix) = match upstream {
            Some(name) => {
                let u = ups.iter().find(|u| u.name == name).ok_or_else(|| {
                    PromoteError::Usage(format!(
                        "--upstream {name:?}: {} has no such upstream (it has: {})",
                        self.config.source,
                        ups.iter()
                            .map(|u| u.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                (u, String::new())
            }
            None => {
                let host = src.host_port();
                let u = ups
                    .iter()
                    .find(|u| u.matches_ns(&host))
                    .or_else(|| ups.iter().find(|u| u.default))
                    .ok_or_else(|| {
                        PromoteError::Usage(format!(
                            "no upstream of {} serves {host} and none is the default: name one with --upstream",
                            self.config.source
                        ))
                    })?;
                (u, src.prefix.clone())
            }
        };
        Ok(Placement {
            upstream: u.clone(),
            prefix,
        })
    }

    /// A stored manifest's bytes, `None` when absent or not a manifest.
    pub async fn manifest_bytes(&self, digest: &Digest) -> Result<Option<Vec<u8>>, PromoteError> {
        let Some(body) = self.store.inner().get(digest, None).await? else {
            return Ok(None);
        };
        if body.size > MAX_MANIFEST_BYTES as u64 {
            return Ok(None);
        }
        Ok(Some(read_to_vec(body.stream, MAX_MANIFEST_BYTES).await?))
    }

    /// Every digest reachable from `root` through the manifests this store holds.
    pub async fn stored_closure(&self, root: &Digest) -> Result<HashSet<Digest>, PromoteError> {
        Ok(crate::admin::reachable(&self.store, root)
            .await?
            .into_iter()
            .collect())
    }

    /// Promoted (pinned) tags of one upstream: (repo, tag) → digest.
    pub fn pinned_tags(
        &self,
        upstream: &str,
    ) -> Result<BTreeMap<(String, String), Digest>, PromoteError> {
        Ok(self
            .index()
            .tags()?
            .into_iter()
            .filter(|(k, r)| r.pinned && k.upstream == upstream)
            .map(|(k, r)| ((k.repo, k.tag), r.digest))
            .collect())
    }

    fn record(&self, event: AuditEvent) -> Result<(), PromoteError> {
        if let Some(log) = &self.audit {
            log.record(event)?;
        }
        Ok(())
    }
}

/// Where on a node a promotion's images go.
#[derive(Debug, Clone)]
pub struct Placement {
    pub upstream: UpstreamConfig,
    /// Put before each image name (the source registry's path, when placed by host).
    pub prefix: String,
}

impl Placement {
    pub fn repo(&self, image: &RepoName) -> Result<RepoName, PromoteError> {
        let full = if self.prefix.is_empty() {
            image.to_string()
        } else {
            format!("{}/{image}", self.prefix)
        };
        let mut repo = RepoName::parse(&full)
            .map_err(|e| PromoteError::Usage(format!("repository {full:?}: {e}")))?;
        if self.upstream.library_prefix {
            repo = repo.with_library_prefix();
        }
        Ok(repo)
    }

    fn key(&self, image: &RepoName, tag: &str) -> Result<TagKey, PromoteError> {
        Ok(TagKey {
            upstream: self.upstream.name.clone(),
            repo: self.repo(image)?.to_string(),
            tag: tag.to_owned(),
        })
    }
}

pub struct NodeSink {
    node: NodeStore,
    placement: Placement,
    /// The audit action for content this sink writes (promote or import).
    action: AuditAction,
}

impl NodeSink {
    pub fn new(node: NodeStore, placement: Placement, action: AuditAction) -> Self {
        Self {
            node,
            placement,
            action,
        }
    }

    fn event(
        &self,
        action: AuditAction,
        image: &RepoName,
        digest: &Digest,
    ) -> Result<AuditEvent, PromoteError> {
        Ok(AuditEvent::new(action, digest).repo(
            &self.placement.upstream.name,
            self.placement.repo(image)?.as_str(),
        ))
    }
}

#[async_trait]
impl Sink for NodeSink {
    fn describe(&self) -> String {
        format!(
            "node {} ({})",
            self.node.config.storage.location(),
            self.placement.upstream.name
        )
    }

    async fn has_blob(&self, _image: &RepoName, blob: &Descriptor) -> Result<bool, PromoteError> {
        // Ask the store itself: content deleted behind the index's back is missing.
        // Planning changes nothing (a dry run must not); `complete` fixes the index.
        let size = self.node.store.inner().stat(&blob.digest).await?;
        Ok(size == Some(blob.size))
    }

    async fn put_blob(
        &self,
        image: &RepoName,
        blob: &Descriptor,
        body: ByteStream,
    ) -> Result<(), PromoteError> {
        let writer = self
            .node
            .store
            .writer(&blob.digest, Some(blob.size))
            .await?;
        let size = super::write_all(writer, body).await?;
        self.node
            .record(self.event(self.action, image, &blob.digest)?.size(size))
    }

    async fn has_manifest(&self, _image: &RepoName, digest: &Digest) -> Result<bool, PromoteError> {
        Ok(self.node.store.inner().stat(digest).await?.is_some())
    }

    async fn put_manifest(
        &self,
        image: &RepoName,
        item: &ManifestItem,
    ) -> Result<(), PromoteError> {
        let mut writer = self
            .node
            .store
            .writer(&item.digest, Some(item.bytes.len() as u64))
            .await?;
        writer.set_media_type(&item.media_type);
        writer.write(&item.bytes).await?;
        let size = writer.commit().await?;
        self.node
            .record(self.event(self.action, image, &item.digest)?.size(size))
    }

    async fn tag(&self, image: &RepoName, tag: &Tag) -> Result<Option<Digest>, PromoteError> {
        let key = self.placement.key(image, tag.as_str())?;
        Ok(self
            .node
            .index()
            .get_tag_sync(&key)?
            .filter(|r| r.pinned)
            .map(|r| r.digest))
    }

    async fn set_tag(
        &self,
        image: &RepoName,
        tag: &Tag,
        item: &ManifestItem,
    ) -> Result<(), PromoteError> {
        let key = self.placement.key(image, tag.as_str())?;
        self.node.index().put_tag_sync(
            &key,
            &TagRecord {
                digest: item.digest.clone(),
                checked_at: SystemTime::now(),
                pinned: true,
            },
        )?;
        self.node.record(
            self.event(AuditAction::Tag, image, &item.digest)?
                .tag(tag.as_str()),
        )
    }

    async fn complete(&self, closure: &Closure) -> Result<u64, PromoteError> {
        let index = self.node.index();
        let repo = self.placement.repo(&closure.image)?;
        for m in &closure.manifests {
            // Also for manifests the store already had from another repository.
            index.add_manifest(&self.placement.upstream.name, repo.as_str(), &m.digest)?;
        }
        let mut pinned = 0;
        for d in closure.digests() {
            let entry = match index.entry(d)? {
                Some(e) => e,
                // Stored but not indexed (a crash between commit and index write, or
                // another node's object in a shared bucket): index it now.
                None => {
                    let size = self.node.store.inner().stat(d).await?.ok_or_else(|| {
                        PromoteError::Dest(format!("{}: {d} is not in the store", self.describe()))
                    })?;
                    index.insert_blob(d, size, None)?;
                    index.entry(d)?.ok_or_else(|| {
                        PromoteError::Dest(format!("{}: {d} is not in the index", self.describe()))
                    })?
                }
            };
            if !entry.pinned {
                index.set_pinned(d, true)?;
                self.node.record(
                    self.event(AuditAction::Pin, &closure.image, d)?
                        .size(entry.size),
                )?;
                pinned += 1;
            }
        }
        Ok(pinned)
    }

    async fn discard(&self, written: &[Digest]) -> usize {
        let mut removed = 0;
        for d in written {
            match self.node.store.delete(d).await {
                Ok(_) => removed += 1,
                Err(e) => {
                    tracing::warn!(digest = %d, error = %e, "could not remove content of a failed promotion");
                }
            }
        }
        removed
    }

    async fn prune(
        &self,
        keep: &BTreeMap<RepoName, Vec<TagTarget>>,
        keep_digests: &HashSet<Digest>,
        dry_run: bool,
    ) -> Result<Vec<String>, PromoteError> {
        let upstream = self.placement.upstream.name.clone();
        let tags = self.node.pinned_tags(&upstream)?;
        let mut lines = Vec::new();
        let mut dropped = Vec::new();
        for (image, wanted) in keep {
            let repo = self.placement.repo(image)?.to_string();
            for ((r, tag), digest) in &tags {
                if *r != repo
                    || wanted
                        .iter()
                        .any(|t| t.tag.as_str() == tag && t.digest == *digest)
                {
                    continue;
                }
                lines.push(format!(
                    "prune {}: untag {repo}:{tag} ({digest})",
                    self.describe()
                ));
                dropped.push((image.clone(), tag.clone(), digest.clone()));
            }
        }
        if dry_run {
            return Ok(lines);
        }
        for (image, tag, digest) in &dropped {
            self.node
                .index()
                .remove_tag(&self.placement.key(image, tag)?)?;
            self.node
                .record(self.event(AuditAction::Untag, image, digest)?.tag(tag))?;
        }
        // Content still held by a remaining promoted tag (of any upstream) stays.
        let mut held: HashSet<Digest> = keep_digests.clone();
        for (_, r) in self.index().tags()? {
            if r.pinned {
                held.extend(self.node.stored_closure(&r.digest).await?);
            }
        }
        for (_, _, digest) in &dropped {
            for d in self.node.stored_closure(digest).await? {
                if held.contains(&d) || self.node.index().entry(&d)?.is_none() {
                    continue;
                }
                self.node.store.delete(&d).await?;
                lines.push(format!("prune {}: deleted {d}", self.describe()));
            }
        }
        Ok(lines)
    }

    async fn finish(&self) -> Result<(), PromoteError> {
        let index = self.node.index().clone();
        tokio::task::spawn_blocking(move || index.sync())
            .await
            .map_err(|e| PromoteError::Usage(e.to_string()))??;
        Ok(())
    }
}

impl NodeSink {
    fn index(&self) -> &Arc<Index> {
        self.node.index()
    }
}
