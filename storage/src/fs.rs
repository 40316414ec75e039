//! The local-disk backend.
//!
//! Layout under the root: `blobs/sha256/<first 2 hex>/<64 hex>` for content and
//! `tmp/` for writes in progress. A write goes to a fresh temp file, is fsynced,
//! verified, renamed into place and the directory fsynced, so a blob path only ever
//! holds complete, verified content. Temp files left by a crash are removed at open.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::spool::Spool;
use crate::store::{BlobBody, BlobStore, BlobWriter, ByteSpan, StoreError};
use crate::Digest;

/// Read buffer for serving: large enough that a 64 MiB blob is a few hundred syscalls.
const READ_CHUNK: usize = 256 * 1024;

pub struct FsStore {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let blobs = root.join("blobs").join("sha256");
        let tmp = root.join("tmp");
        fs::create_dir_all(&blobs)
            .await
            .map_err(StoreError::from_io)?;
        fs::create_dir_all(&tmp)
            .await
            .map_err(StoreError::from_io)?;
        Ok(Self { root, blobs, tmp })
    }

    /// Removes temp files left by a crash. Only the process that owns the store (the
    /// node, at start-up) may call this: the files may be another process's writes.
    pub async fn remove_temp_files(&self) -> Result<usize, StoreError> {
        let mut leftovers = fs::read_dir(&self.tmp).await?;
        let mut removed = 0usize;
        while let Some(entry) = leftovers.next_entry().await? {
            if fs::remove_file(entry.path()).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a digest's content lives. The digest's hex is validated, so this can
    /// never point outside the store.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs.join(&hex[..2]).join(hex)
    }
}

#[async_trait]
impl BlobStore for FsStore {
    fn kind(&self) -> &'static str {
        "fs"
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(
        &self,
        digest: &Digest,
        span: Option<ByteSpan>,
    ) -> Result<Option<BlobBody>, StoreError> {
        let mut file = match fs::File::open(self.blob_path(digest)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        let (start, len) = match span {
            None => (0, size),
            Some(s) if s.end < size && s.start <= s.end => (s.start, s.len()),
            Some(s) => {
                return Err(StoreError::SpanOutOfRange {
                    start: s.start,
                    end: s.end,
                    size,
                })
            }
        };
        if start > 0 {
            file.seek(SeekFrom::Start(start)).await?;
        }
        let stream = ReaderStream::with_capacity(file.take(len), READ_CHUNK);
        Ok(Some(BlobBody {
            size,
            stream: Box::pin(stream),
        }))
    }

    async fn writer(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StoreError> {
        Ok(Box::new(FsWriter {
            spool: Spool::create_in(&self.tmp, digest, expected_size).await?,
            final_path: self.blob_path(digest),
        }))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        match fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        let mut shards = fs::read_dir(&self.blobs).await?;
        while let Some(shard) = shards.next_entry().await? {
            if !shard.file_type().await?.is_dir() {
                continue;
            }
            let mut files = fs::read_dir(shard.path()).await?;
            while let Some(file) = files.next_entry().await? {
                if let Some(d) = file
                    .file_name()
                    .to_str()
                    .and_then(|n| Digest::from_hex(n).ok())
                {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        fs::metadata(&self.blobs).await?;
        fs::metadata(&self.tmp).await?;
        Ok(())
    }
}

struct FsWriter {
    /// The temp file; dropping the writer before the rename removes it.
    spool: Spool,
    final_path: PathBuf,
}

#[async_trait]
impl BlobWriter for FsWriter {
    async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.spool.write(data).await
    }

    fn written(&self) -> u64 {
        self.spool.written()
    }

    fn spool_path(&self) -> Option<&Path> {
        Some(self.spool.path())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, StoreError> {
        let (size, file) = self.spool.verify().await?;
        file.sync_all().await.map_err(StoreError::from_io)?;
        drop(file);
        let parent = self
            .final_path
            .parent()
            .ok_or_else(|| StoreError::Backend("blob path has no parent".into()))?
            .to_path_buf();
        fs::create_dir_all(&parent)
            .await
            .map_err(StoreError::from_io)?;
        fs::rename(self.spool.path(), &self.final_path)
            .await
            .map_err(StoreError::from_io)?;
        // The rename is durable only once the directory entry is.
        fs::File::open(&parent).await?.sync_all().await?;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fs_store_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        crate::conformance::run(&store).await.unwrap();
    }

    #[tokio::test]
    async fn leftover_temp_files_are_removed_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        let mut w = store.writer(&Digest::of(b"x"), None).await.unwrap();
        w.write(b"x").await.unwrap();
        std::mem::forget(w); // as if the process died mid-write
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            1
        );
        let again = FsStore::open(dir.path()).await.unwrap();
        let temp_files = || std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        assert_eq!(
            temp_files(),
            1,
            "open alone keeps them (they may be another process's)"
        );
        assert_eq!(again.remove_temp_files().await.unwrap(), 1);
        assert_eq!(temp_files(), 0);
    }
}
