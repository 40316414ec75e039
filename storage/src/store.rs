//! The storage contract: what every backend promises.
//!
//! A backend stores immutable blobs under their digest. Writes go through a
//! [`BlobWriter`] that hashes as it writes and only makes the blob visible in
//! [`BlobWriter::commit`] once the sha256 and (if given) the size match. Dropping a
//! writer without committing discards everything it wrote.

use std::io;
use std::path::Path;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::Digest;

/// A boxed stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>;

/// An inclusive byte span `start..=end` of a blob, already checked against its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSpan {
    pub start: u64,
    pub end: u64,
}

impl ByteSpan {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Bytes of a stored blob, with the blob's full size.
pub struct BlobBody {
    /// Size of the whole blob (not of the span).
    pub size: u64,
    pub stream: ByteStream,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("content digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("byte span {start}-{end} is outside a blob of {size} bytes")]
    SpanOutOfRange { start: u64, end: u64, size: u64 },
    #[error("storage is full: {0}")]
    NoSpace(#[source] io::Error),
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("storage backend error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Maps an I/O error, keeping "disk full" recognisable to callers.
    pub fn from_io(err: io::Error) -> Self {
        if err.raw_os_error() == Some(28) || err.kind() == io::ErrorKind::StorageFull {
            StoreError::NoSpace(err)
        } else {
            StoreError::Io(err)
        }
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Short backend name for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// Size of a stored blob, or `None` when absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError>;

    /// The blob's bytes (all, or `span`), or `None` when absent.
    async fn get(
        &self,
        digest: &Digest,
        span: Option<ByteSpan>,
    ) -> Result<Option<BlobBody>, StoreError>;

    /// Starts writing a blob. `expected_size`, when known, is checked at commit.
    async fn writer(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StoreError>;

    /// Removes a blob; `Ok(false)` if it was not there.
    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError>;

    /// Every stored digest.
    async fn list(&self) -> Result<Vec<Digest>, StoreError>;

    /// Every stored digest with its size. Backends that learn sizes from their
    /// listing override this; the default asks for each size.
    async fn list_sized(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let mut out = Vec::new();
        for digest in self.list().await? {
            if let Some(size) = self.stat(&digest).await? {
                out.push((digest, size));
            }
        }
        Ok(out)
    }

    /// Whether other nodes may write to this store too (a shared bucket). A shared
    /// store is asked on an index miss, and content found there is adopted at its
    /// listed size: only a verified write can create a blob, on any node.
    fn shared(&self) -> bool {
        false
    }

    /// A URL from which a client may GET the blob directly for `expires`, when the
    /// backend can issue one (S3 presigned URLs).
    async fn presigned_get(
        &self,
        _digest: &Digest,
        _expires: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Whether the backend can serve requests now (for `/readyz`).
    async fn ready(&self) -> Result<(), StoreError>;
}

/// An in-progress write. Hashes every byte; commit verifies; drop aborts.
#[async_trait]
pub trait BlobWriter: Send + Sync {
    async fn write(&mut self, data: &[u8]) -> Result<(), StoreError>;

    /// Bytes written so far.
    fn written(&self) -> u64;

    /// A local file that holds every byte written so far, when the backend has one.
    /// Concurrent readers of an in-flight blob follow this file instead of waiting.
    fn spool_path(&self) -> Option<&Path>;

    /// Records the content's media type, when the caller knows it (manifests).
    fn set_media_type(&mut self, _media_type: &str) {}

    /// Verifies digest and size, then makes the blob durable and visible. On a
    /// mismatch nothing is stored and the error says what differed.
    async fn commit(self: Box<Self>) -> Result<u64, StoreError>;
}

/// Reads a byte stream into memory, refusing more than `limit` bytes.
pub async fn read_to_vec(mut stream: ByteStream, limit: usize) -> io::Result<Vec<u8>> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "object exceeds size limit",
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
