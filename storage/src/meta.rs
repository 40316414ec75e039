//! Small metadata records kept beside the blobs: which digest a tag pointed at and
//! when that was last confirmed upstream.
//!
//! Tag records make serve-stale work across restarts: with the upstream down, a
//! node still answers a tag with the digest it last saw. The fs implementation keeps
//! one file per tag under `tags/<upstream>/<repo>/@/<tag>`; `@` cannot occur in a
//! repository component, so a tag file never collides with a nested repository.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::fs;

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
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    async fn get_tag(&self, key: &TagKey) -> Result<Option<TagRecord>, StoreError>;
    async fn put_tag(&self, key: &TagKey, record: &TagRecord) -> Result<(), StoreError>;
}

pub struct FsMetaStore {
    root: PathBuf,
}

impl FsMetaStore {
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into().join("tags");
        fs::create_dir_all(&root)
            .await
            .map_err(StoreError::from_io)?;
        Ok(Self { root })
    }

    /// The record's path; refuses any component that could escape the root even
    /// though callers pass validated names (defence in depth).
    fn path(&self, key: &TagKey) -> Result<PathBuf, StoreError> {
        let mut path = self.root.clone();
        let parts = std::iter::once(key.upstream.as_str())
            .chain(key.repo.split('/'))
            .chain(std::iter::once(key.tag.as_str()));
        for part in parts {
            let bad = part.is_empty()
                || part == "."
                || part == ".."
                || part.contains(['/', '\\', '\0', '@']);
            if bad {
                return Err(StoreError::Backend(format!(
                    "unsafe key component {part:?}"
                )));
            }
            path.push(part);
        }
        // Insert the `@` separator before the tag.
        let tag = path.file_name().map(|t| t.to_owned()).unwrap_or_default();
        path.pop();
        Ok(path.join("@").join(tag))
    }
}

#[async_trait]
impl MetaStore for FsMetaStore {
    async fn get_tag(&self, key: &TagKey) -> Result<Option<TagRecord>, StoreError> {
        let text = match fs::read_to_string(self.path(key)?).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // A torn or foreign file reads as "no record": it is only a cache.
        let mut lines = text.lines();
        let digest = lines.next().and_then(|l| Digest::parse(l).ok());
        let secs = lines.next().and_then(|l| l.parse::<u64>().ok());
        Ok(match (digest, secs) {
            (Some(digest), Some(secs)) => Some(TagRecord {
                digest,
                checked_at: UNIX_EPOCH + Duration::from_secs(secs),
            }),
            _ => None,
        })
    }

    async fn put_tag(&self, key: &TagKey, record: &TagRecord) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let dir = path
            .parent()
            .ok_or_else(|| StoreError::Backend("tag path has no parent".into()))?;
        fs::create_dir_all(dir).await.map_err(StoreError::from_io)?;
        let secs = record
            .checked_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, format!("{}\n{}\n", record.digest, secs))
            .await
            .map_err(StoreError::from_io)?;
        fs::rename(&tmp, &path).await.map_err(StoreError::from_io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(repo: &str, tag: &str) -> TagKey {
        TagKey {
            upstream: "docker.io".into(),
            repo: repo.into(),
            tag: tag.into(),
        }
    }

    #[tokio::test]
    async fn round_trip_and_nested_repos_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let meta = FsMetaStore::open(dir.path()).await.unwrap();
        let rec = |b: &[u8]| TagRecord {
            digest: Digest::of(b),
            checked_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        meta.put_tag(&key("a", "b"), &rec(b"1")).await.unwrap();
        meta.put_tag(&key("a/b", "latest"), &rec(b"2"))
            .await
            .unwrap();
        assert_eq!(meta.get_tag(&key("a", "b")).await.unwrap(), Some(rec(b"1")));
        assert_eq!(
            meta.get_tag(&key("a/b", "latest")).await.unwrap(),
            Some(rec(b"2"))
        );
        assert_eq!(meta.get_tag(&key("a", "nope")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn refuses_escaping_keys() {
        let dir = tempfile::tempdir().unwrap();
        let meta = FsMetaStore::open(dir.path()).await.unwrap();
        for k in [
            key("../x", "t"),
            key("a//b", "t"),
            key("a", ".."),
            key("a", "x/y"),
            key("a/@", "t"),
        ] {
            assert!(meta.get_tag(&k).await.is_err(), "{k:?}");
        }
    }
}
