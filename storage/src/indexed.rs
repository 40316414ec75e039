//! A [`BlobStore`] that keeps the [`Index`] in step with another store.
//!
//! Wraps any backend: presence and size come from the index (no disk access on the
//! hit path), reads are leased (a leased blob is never evicted) and touched (in
//! memory), commits are recorded, and admission of a new fill evicts ahead of it when
//! the store would grow past its size limit. Eviction itself is policy in
//! [`Index::plan_eviction`]; this type carries it out and reconciles index and store
//! after a crash.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::audit::{AuditAction, AuditEvent, AuditLog};
use crate::index::{Index, Lease};
use crate::store::{BlobBody, BlobStore, BlobWriter, ByteSpan, StoreError};
use crate::{Digest, Verifier};

/// Size limit and watermarks (fractions of `max_size`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_size: Option<u64>,
    pub high_watermark: f64,
    pub low_watermark: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_size: None,
            high_watermark: 0.9,
            low_watermark: 0.8,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EvictReport {
    pub blobs: u64,
    pub bytes: u64,
}

/// What reconciliation found (and, with `repair`, fixed).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Indexed, but the store has no content.
    pub missing_content: Vec<Digest>,
    /// Stored and verified, but not indexed.
    pub unindexed: Vec<Digest>,
    /// In a shared store, not indexed by this node: another node's fill. Adopted
    /// (with `repair`) at its listed size; not a problem.
    pub adoptable: Vec<Digest>,
    /// Stored, not indexed, and not matching its digest.
    pub unindexed_corrupt: Vec<Digest>,
    /// Indexed content that does not match its digest (only checked with `verify_all`).
    pub corrupt: Vec<Digest>,
    /// Indexed size differs from the stored size.
    pub size_mismatch: Vec<Digest>,
    pub checked: u64,
}

impl ReconcileReport {
    pub fn is_clean(&self) -> bool {
        self.missing_content.is_empty()
            && self.unindexed.is_empty()
            && self.unindexed_corrupt.is_empty()
            && self.corrupt.is_empty()
            && self.size_mismatch.is_empty()
    }
}

pub struct IndexedStore {
    inner: Arc<dyn BlobStore>,
    index: Arc<Index>,
    shared: Arc<Shared>,
    evicted_blobs: AtomicU64,
    evicted_bytes: AtomicU64,
    audit: Option<AuditLog>,
}

/// State the store shares with its writers.
struct Shared {
    limits: Limits,
    /// Bytes promised to fills in flight (their expected sizes).
    reserved: AtomicU64,
    /// Woken when the store is over its high watermark or the disk filled up.
    pressure: Notify,
    disk_full: AtomicBool,
}

impl Shared {
    fn over_high_watermark(&self, index: &Index) -> bool {
        self.limits.max_size.is_some_and(|max| {
            let used = index.totals().bytes + self.reserved.load(Ordering::Relaxed);
            used as f64 > max as f64 * self.limits.high_watermark
        })
    }
}

struct Reservation {
    shared: Arc<Shared>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shared
            .reserved
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl IndexedStore {
    pub fn new(inner: Arc<dyn BlobStore>, index: Arc<Index>, limits: Limits) -> Self {
        let shared = Shared {
            limits,
            reserved: AtomicU64::new(0),
            pressure: Notify::new(),
            disk_full: AtomicBool::new(false),
        };
        Self {
            inner,
            index,
            shared: Arc::new(shared),
            evicted_blobs: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
            audit: None,
        }
    }

    /// Records evictions and deletions in `log`.
    pub fn with_audit(mut self, log: AuditLog) -> Self {
        self.audit = Some(log);
        self
    }

    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    fn record(&self, action: AuditAction, digest: &Digest, size: Option<u64>) {
        if let Some(log) = &self.audit {
            let mut event = AuditEvent::new(action, digest);
            event.size = size;
            log.record_or_warn(event);
        }
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    pub fn inner(&self) -> &Arc<dyn BlobStore> {
        &self.inner
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// Resolves when there may be something to evict.
    pub async fn pressure(&self) {
        self.shared.pressure.notified().await;
    }

    /// (blobs, bytes) evicted since start.
    pub fn evicted(&self) -> (u64, u64) {
        (
            self.evicted_blobs.load(Ordering::Relaxed),
            self.evicted_bytes.load(Ordering::Relaxed),
        )
    }

    /// Bytes to free now: down to the low watermark once over the high one, or a tenth
    /// of the cache after the disk filled up.
    pub fn excess(&self) -> u64 {
        let used = self.index.totals().bytes + self.shared.reserved.load(Ordering::Relaxed);
        let limits = self.shared.limits;
        let mut free = 0;
        if let Some(max) = limits
            .max_size
            .filter(|_| self.shared.over_high_watermark(&self.index))
        {
            free = used.saturating_sub((max as f64 * limits.low_watermark) as u64);
        }
        if self.shared.disk_full.swap(false, Ordering::Relaxed) {
            free = free.max(self.index.totals().bytes / 10);
        }
        free
    }

    /// Evicts least-recently-used unpinned, unleased blobs until `bytes` are freed.
    pub async fn evict(&self, bytes: u64) -> Result<EvictReport, StoreError> {
        if bytes == 0 {
            return Ok(EvictReport::default());
        }
        let index = self.index.clone();
        let victims = tokio::task::spawn_blocking(move || {
            index.flush()?;
            index.plan_eviction(bytes)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("eviction task: {e}")))??;
        let mut report = EvictReport::default();
        for (digest, size) in victims {
            // Index first: a crash between the two leaves content without an entry,
            // which start-up re-verifies, rather than an entry without content.
            if self.index.remove_blob(&digest)?.is_none() {
                continue;
            }
            self.inner.delete(&digest).await?;
            self.record(AuditAction::Evict, &digest, Some(size));
            report.blobs += 1;
            report.bytes += size;
            tracing::debug!(%digest, size, "evicted");
        }
        self.evicted_blobs
            .fetch_add(report.blobs, Ordering::Relaxed);
        self.evicted_bytes
            .fetch_add(report.bytes, Ordering::Relaxed);
        Ok(report)
    }

    /// Makes room for `incoming` bytes before a fill starts writing.
    async fn admit(&self, incoming: u64) -> Result<(), StoreError> {
        let Some(max) = self.shared.limits.max_size else {
            return Ok(());
        };
        let used = self.index.totals().bytes + self.shared.reserved.load(Ordering::Relaxed);
        if used + incoming <= max {
            return Ok(());
        }
        let target = (max as f64 * self.shared.limits.low_watermark) as u64;
        let report = self.evict((used + incoming).saturating_sub(target)).await?;
        tracing::debug!(incoming, freed = report.bytes, "evicted ahead of a fill");
        Ok(())
    }

    /// Compares index and store; with `repair`, drops entries without content,
    /// re-indexes verified content without entries and deletes the rest. With
    /// `verify_all`, every indexed blob's digest is recomputed too.
    pub async fn reconcile(
        &self,
        repair: bool,
        verify_all: bool,
    ) -> Result<ReconcileReport, StoreError> {
        let index = self.index.clone();
        let indexed = tokio::task::spawn_blocking(move || index.blobs())
            .await
            .map_err(|e| StoreError::Backend(format!("index scan: {e}")))??;
        let shared = self.inner.shared();
        let (stored, listed_sizes): (HashSet<Digest>, HashMap<Digest, u64>) = if shared {
            let sized = self.inner.list_sized().await?;
            (
                sized.iter().map(|(d, _)| d.clone()).collect(),
                sized.into_iter().collect(),
            )
        } else {
            (
                self.inner.list().await?.into_iter().collect(),
                HashMap::new(),
            )
        };
        let mut report = ReconcileReport::default();
        let mut indexed_set = HashSet::with_capacity(indexed.len());
        for (digest, entry) in indexed {
            report.checked += 1;
            indexed_set.insert(digest.clone());
            if !stored.contains(&digest) {
                if repair {
                    self.index.remove_blob(&digest)?;
                    self.record(AuditAction::Delete, &digest, Some(entry.size));
                }
                report.missing_content.push(digest);
                continue;
            }
            if verify_all {
                let bad = match verify(&*self.inner, &digest).await? {
                    Some(size) if size == entry.size => false,
                    Some(_) => {
                        report.size_mismatch.push(digest.clone());
                        true
                    }
                    None => {
                        report.corrupt.push(digest.clone());
                        true
                    }
                };
                if repair && bad {
                    self.index.remove_blob(&digest)?;
                    self.inner.delete(&digest).await?;
                    self.record(AuditAction::Delete, &digest, Some(entry.size));
                }
            }
        }
        for digest in stored.difference(&indexed_set) {
            report.checked += 1;
            // A shared store's objects were verified by whichever node wrote them;
            // re-hashing a whole bucket at every start would cost its full size in
            // reads. `verify_all` (`ferry index check --verify`) still hashes them.
            let listed = listed_sizes.get(digest).copied().filter(|_| !verify_all);
            let size = match listed {
                Some(size) => Some(size),
                None => verify(&*self.inner, digest).await?,
            };
            match size {
                Some(size) => {
                    if repair {
                        self.index.insert_blob(digest, size, None)?;
                    }
                    if shared {
                        report.adoptable.push(digest.clone());
                    } else {
                        report.unindexed.push(digest.clone());
                    }
                }
                None => {
                    if repair {
                        self.inner.delete(digest).await?;
                        self.record(AuditAction::Delete, digest, None);
                    }
                    report.unindexed_corrupt.push(digest.clone());
                }
            }
        }
        Ok(report)
    }
}

/// Recomputes a stored blob's digest: `Some(size)` when it matches.
async fn verify(store: &dyn BlobStore, digest: &Digest) -> Result<Option<u64>, StoreError> {
    let Some(body) = store.get(digest, None).await? else {
        return Ok(None);
    };
    let mut v = Verifier::new();
    let mut stream = body.stream;
    while let Some(chunk) = stream.next().await {
        v.update(&chunk?);
    }
    let size = v.len();
    Ok((v.finish() == *digest).then_some(size))
}

#[async_trait]
impl BlobStore for IndexedStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let entry = self.index.entry(digest)?;
        if let Some(entry) = entry {
            self.index.touch(digest);
            return Ok(Some(entry.size));
        }
        if !self.inner.shared() {
            return Ok(None);
        }
        // Another node may have stored it in the shared bucket: adopt it.
        let size = self.inner.stat(digest).await?;
        if let Some(size) = size {
            self.index.insert_blob(digest, size, None)?;
            self.index.touch(digest);
        }
        Ok(size)
    }

    async fn get(
        &self,
        digest: &Digest,
        span: Option<ByteSpan>,
    ) -> Result<Option<BlobBody>, StoreError> {
        let lease = self.index.lease(digest);
        match self.inner.get(digest, span).await? {
            Some(body) => {
                self.index.touch(digest);
                Ok(Some(BlobBody {
                    size: body.size,
                    stream: Box::pin(LeasedStream {
                        inner: body.stream,
                        _lease: lease,
                    }),
                }))
            }
            None => {
                // Content gone behind our back: forget it so the next request refetches.
                if let Some(entry) = self.index.remove_blob(digest)? {
                    tracing::warn!(%digest, "indexed blob missing from the store; dropped from the index");
                    self.record(AuditAction::Delete, digest, Some(entry.size));
                }
                Ok(None)
            }
        }
    }

    async fn writer(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StoreError> {
        let bytes = expected_size.unwrap_or(0);
        self.admit(bytes).await?;
        self.shared.reserved.fetch_add(bytes, Ordering::Relaxed);
        let reservation = Reservation {
            shared: self.shared.clone(),
            bytes,
        };
        let inner = self.inner.writer(digest, expected_size).await?;
        Ok(Box::new(IndexedWriter {
            inner,
            digest: digest.clone(),
            media_type: None,
            index: self.index.clone(),
            reservation,
        }))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        let entry = self.index.remove_blob(digest)?;
        let deleted = self.inner.delete(digest).await?;
        if deleted || entry.is_some() {
            self.record(AuditAction::Delete, digest, entry.map(|e| e.size));
        }
        Ok(deleted)
    }

    async fn list(&self) -> Result<Vec<Digest>, StoreError> {
        self.inner.list().await
    }

    async fn list_sized(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        self.inner.list_sized().await
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }

    async fn presigned_get(
        &self,
        digest: &Digest,
        expires: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        let url = self.inner.presigned_get(digest, expires).await?;
        if url.is_some() {
            self.index.touch(digest);
        }
        Ok(url)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready().await
    }
}

/// A read stream that holds its blob's lease until dropped.
struct LeasedStream {
    inner: crate::store::ByteStream,
    _lease: Lease,
}

impl futures_util::Stream for LeasedStream {
    type Item = std::io::Result<bytes::Bytes>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct IndexedWriter {
    inner: Box<dyn BlobWriter>,
    digest: Digest,
    media_type: Option<String>,
    index: Arc<Index>,
    reservation: Reservation,
}

#[async_trait]
impl BlobWriter for IndexedWriter {
    async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let result = self.inner.write(data).await;
        if let Err(StoreError::NoSpace(_)) = &result {
            // The janitor frees space for the fills that come after this one.
            self.reservation
                .shared
                .disk_full
                .store(true, Ordering::Relaxed);
            self.reservation.shared.pressure.notify_one();
        }
        result
    }

    fn written(&self) -> u64 {
        self.inner.written()
    }

    fn spool_path(&self) -> Option<&Path> {
        self.inner.spool_path()
    }

    fn set_media_type(&mut self, media_type: &str) {
        self.media_type = Some(media_type.to_owned());
    }

    async fn commit(self: Box<Self>) -> Result<u64, StoreError> {
        let this = *self;
        let size = this.inner.commit().await?;
        this.index
            .insert_blob(&this.digest, size, this.media_type.as_deref())?;
        let shared = &this.reservation.shared;
        if shared.over_high_watermark(&this.index) {
            shared.pressure.notify_one();
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FsStore;

    async fn store(dir: &Path, limits: Limits) -> IndexedStore {
        let fs = Arc::new(FsStore::open(dir.join("store")).await.unwrap());
        let index = Arc::new(Index::open(&dir.join("index")).unwrap());
        IndexedStore::new(fs, index, limits)
    }

    async fn put(s: &IndexedStore, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        let mut w = s.writer(&d, Some(data.len() as u64)).await.unwrap();
        w.write(data).await.unwrap();
        w.commit().await.unwrap();
        d
    }

    #[tokio::test]
    async fn indexed_store_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), Limits::default()).await;
        crate::conformance::run(&s).await.unwrap();
        // Nothing the suite refused is indexed.
        let listed: HashSet<Digest> = s.list().await.unwrap().into_iter().collect();
        let indexed: HashSet<Digest> = s
            .index()
            .blobs()
            .unwrap()
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        assert_eq!(listed, indexed);
    }

    #[tokio::test]
    async fn reconcile_finds_and_repairs_both_directions() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), Limits::default()).await;
        let kept = put(&s, b"kept").await;
        let gone = put(&s, b"gone").await;
        s.inner().delete(&gone).await.unwrap();
        // Content without an entry, one good and one corrupt.
        let good = Digest::of(b"good");
        let mut w = s.inner().writer(&good, None).await.unwrap();
        w.write(b"good").await.unwrap();
        w.commit().await.unwrap();
        let bad = Digest::of(b"expected");
        let path = dir.path().join("store/blobs/sha256").join(&bad.hex()[..2]);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join(bad.hex()), b"other").unwrap();

        let r = s.reconcile(false, false).await.unwrap();
        assert_eq!(
            (
                r.missing_content.clone(),
                r.unindexed.clone(),
                r.unindexed_corrupt.clone()
            ),
            (vec![gone.clone()], vec![good.clone()], vec![bad.clone()])
        );
        assert!(!r.is_clean());
        let r = s.reconcile(true, false).await.unwrap();
        assert!(!r.is_clean(), "the repairing pass reports what it fixed");
        let r = s.reconcile(false, true).await.unwrap();
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(s.stat(&good).await.unwrap(), Some(4));
        assert_eq!(s.stat(&gone).await.unwrap(), None);
        assert_eq!(s.inner().stat(&bad).await.unwrap(), None);
        assert_eq!(s.stat(&kept).await.unwrap(), Some(4));
    }

    #[tokio::test]
    async fn admission_evicts_ahead_of_a_fill_and_leases_protect_readers() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_size: Some(1000),
            high_watermark: 0.9,
            low_watermark: 0.5,
        };
        let s = store(dir.path(), limits).await;
        let blobs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 200]).collect();
        let mut ds = Vec::new();
        for b in &blobs {
            ds.push(put(&s, b).await);
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        assert_eq!(s.index().totals().bytes, 800);
        // Hold the oldest blob open: it must not be evicted.
        let reading = s.get(&ds[0], None).await.unwrap().unwrap();
        // 800 + 300 > 1000: admission frees 600 bytes (to the 500-byte low watermark,
        // counting the incoming 300): the three oldest blobs that are not being read.
        put(&s, &[9u8; 300]).await;
        assert_eq!(s.index().totals().bytes, 500);
        assert!(
            s.inner().stat(&ds[0]).await.unwrap().is_some(),
            "a blob being read was evicted"
        );
        for d in &ds[1..] {
            assert!(s.inner().stat(d).await.unwrap().is_none(), "{d} stayed");
        }
        drop(reading);
        assert_eq!(s.evicted(), (3, 600));
        // Over the high watermark after commits → excess brings it to the low watermark.
        let excess = s.excess();
        let used = s.index().totals().bytes;
        assert!(
            used <= 900 || excess == used - 500,
            "used {used} excess {excess}"
        );
    }
}
