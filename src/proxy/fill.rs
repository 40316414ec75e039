//! Fills: one upstream GET per missing blob, shared by every client that wants it.
//!
//! The fill task writes the upstream body into a store writer (which hashes it) and
//! publishes its progress on a `watch` channel. Readers open the writer's spool file
//! and follow it at their own pace, so a slow reader never slows the fill and a
//! disconnect never cancels it. Until the digest is verified, readers are held one
//! byte short of the end: a client can never receive a complete body that did not
//! verify. A mismatch deletes the spool and fails every reader's stream.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use ferry_storage::{BlobStore, ByteSpan};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_RANGE, RANGE};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};

use super::error::{Kind, ProxyError};
use super::Route;
use crate::metrics::Metrics;
use crate::oci::{Digest, OciError};
use crate::upstream::{UpstreamError, UpstreamResponse};

/// Chunk size for readers following a spool file.
const READ_CHUNK: u64 = 256 * 1024;
/// How often a truncated upstream body is resumed with a Range request.
const MAX_RESUMES: u32 = 5;

#[derive(Clone, Debug)]
pub enum FillState {
    /// Waiting for the upstream's response headers.
    Connecting,
    /// Bytes are arriving. `readable` bytes of the spool may be sent to clients.
    Streaming {
        total: Option<u64>,
        readable: u64,
        spool: Arc<PathBuf>,
    },
    /// Verified and committed to the store.
    Done {
        size: u64,
    },
    Failed(OciError),
}

pub struct Fill {
    state: watch::Sender<FillState>,
}

impl Fill {
    pub fn subscribe(&self) -> watch::Receiver<FillState> {
        self.state.subscribe()
    }
}

/// The in-flight fills, by digest.
#[derive(Default)]
pub struct Fills {
    map: Mutex<HashMap<Digest, Arc<Fill>>>,
}

impl Fills {
    /// The running fill for `digest`, or a new one (`true`) that the caller must start.
    pub fn attach_or_insert(&self, digest: &Digest) -> (Arc<Fill>, bool) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(digest) {
            return (f.clone(), false);
        }
        let fill = Arc::new(Fill {
            state: watch::Sender::new(FillState::Connecting),
        });
        map.insert(digest.clone(), fill.clone());
        (fill, true)
    }

    pub fn get(&self, digest: &Digest) -> Option<Arc<Fill>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    fn remove(&self, digest: &Digest, fill: &Arc<Fill>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(digest).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            map.remove(digest);
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything a fill task needs; cloned into the spawned task.
pub struct FillJob {
    pub fills: Arc<Fills>,
    pub store: Arc<dyn BlobStore>,
    pub metrics: Arc<Metrics>,
    pub route: Route,
    pub digest: Digest,
    pub fill: Arc<Fill>,
    pub audit: Option<ferry_storage::AuditLog>,
}

impl FillJob {
    /// Runs the fill to completion and publishes the outcome. Spawned: it outlives
    /// the request that started it.
    pub async fn run(self) {
        self.metrics.fills_in_flight.inc();
        let outcome = self.fetch().await;
        let state = match outcome {
            Ok(size) => {
                self.metrics.fills.with_label_values(&["committed"]).inc();
                super::audit_fill(self.audit.as_ref(), &self.route, &self.digest, size);
                FillState::Done { size }
            }
            Err(e) => {
                self.metrics.fills.with_label_values(&["failed"]).inc();
                tracing::warn!(digest = %self.digest, upstream = self.route.upstream.name(), error = %e, "blob fill failed");
                FillState::Failed(e.into())
            }
        };
        self.fill.state.send_replace(state);
        self.fills.remove(&self.digest, &self.fill);
        self.metrics.fills_in_flight.dec();
    }

    async fn fetch(&self) -> Result<u64, ProxyError> {
        // A fill that finished between the caller's miss and our registration.
        if let Some(size) = self.store.stat(&self.digest).await? {
            return Ok(size);
        }
        let upstream = &self.route.upstream;
        let suffix = format!("blobs/{}", self.digest);
        let resp = upstream
            .request(
                Method::GET,
                &self.route.repo,
                &suffix,
                &[],
                HeaderMap::new(),
            )
            .await
            .map_err(ProxyError::upstream(Kind::Blob))?;
        let total = resp.content_length();
        let mut writer = self.store.writer(&self.digest, total).await?;
        let spool = Arc::new(
            writer
                .spool_path()
                .ok_or_else(|| {
                    ProxyError::Store(ferry_storage::StoreError::Backend(
                        "storage backend has no local spool".into(),
                    ))
                })?
                .to_path_buf(),
        );
        self.fill.state.send_replace(FillState::Streaming {
            total,
            readable: 0,
            spool: spool.clone(),
        });

        let bytes_in = upstream_bytes(&self.metrics, upstream.name());
        let mut body = resp.bytes_stream();
        let mut resumes = 0;
        // Bytes to drop from a resumed body that ignored our Range and started over.
        let mut skip = 0u64;
        loop {
            let ended_cleanly = match body.next().await {
                Some(Ok(mut chunk)) => {
                    bytes_in.inc_by(chunk.len() as u64);
                    if skip > 0 {
                        let n = skip.min(chunk.len() as u64);
                        skip -= n;
                        chunk = chunk.slice(n as usize..);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    let before = writer.written();
                    writer.write(&chunk).await?;
                    let readable = match total {
                        // Hold back the last byte until verified.
                        Some(t) => writer.written().min(t.saturating_sub(1)),
                        // Unknown length: lag one chunk, so the end is never sent unverified.
                        None => before,
                    };
                    self.fill.state.send_modify(|s| {
                        if let FillState::Streaming { readable: r, .. } = s {
                            *r = readable;
                        }
                    });
                    continue;
                }
                Some(Err(e)) => {
                    tracing::debug!(digest = %self.digest, error = %e, "upstream body failed");
                    false
                }
                None => true,
            };
            if ended_cleanly && total.is_none_or(|t| writer.written() >= t) {
                break;
            }
            if resumes >= MAX_RESUMES {
                return Err(ProxyError::Upstream {
                    kind: Kind::Blob,
                    err: UpstreamError::Unreachable(format!(
                        "body ended at {} bytes after {resumes} resumes",
                        writer.written()
                    )),
                });
            }
            resumes += 1;
            let from = writer.written();
            tracing::info!(digest = %self.digest, from, resumes, "upstream body cut short; resuming with Range");
            let (next, next_skip) = self.resume(from).await?;
            body = next.bytes_stream();
            skip = next_skip;
        }
        let size = writer.commit().await?;
        Ok(size)
    }

    /// Asks for the rest of the body from `from`. Returns the response and how many
    /// leading bytes to drop (all of `from` when the upstream ignored the Range).
    async fn resume(&self, from: u64) -> Result<(UpstreamResponse, u64), ProxyError> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes={from}-")) {
            headers.insert(RANGE, v);
        }
        let suffix = format!("blobs/{}", self.digest);
        let resp = self
            .route
            .upstream
            .request(Method::GET, &self.route.repo, &suffix, &[], headers)
            .await
            .map_err(ProxyError::upstream(Kind::Blob))?;
        if resp.status().as_u16() != 206 {
            return Ok((resp, from));
        }
        let start = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.parse::<u64>().ok());
        if start != Some(from) {
            return Err(ProxyError::Upstream {
                kind: Kind::Blob,
                err: UpstreamError::Protocol(format!(
                    "resume from {from} answered with Content-Range {start:?}"
                )),
            });
        }
        Ok((resp, 0))
    }
}

fn upstream_bytes(metrics: &Metrics, upstream: &str) -> prometheus::IntCounter {
    metrics.upstream_bytes.with_label_values(&[upstream])
}

/// Streams `span` (or everything, `None`) of an in-flight blob to a client, following
/// the spool as the fill advances. Bounded: at most two chunks are buffered.
pub fn follow(
    rx: watch::Receiver<FillState>,
    spool: Arc<PathBuf>,
    store: Arc<dyn BlobStore>,
    digest: Digest,
    span: Option<ByteSpan>,
) -> ferry_storage::store::ByteStream {
    let (tx, out) = mpsc::channel::<io::Result<Bytes>>(2);
    tokio::spawn(async move {
        if let Err(e) = pump(&tx, rx, &spool, store, &digest, span).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Box::pin(futures_util::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|item| (item, out))
    }))
}

async fn pump(
    tx: &mpsc::Sender<io::Result<Bytes>>,
    mut rx: watch::Receiver<FillState>,
    spool: &PathBuf,
    store: Arc<dyn BlobStore>,
    digest: &Digest,
    span: Option<ByteSpan>,
) -> io::Result<()> {
    let start = span.map_or(0, |s| s.start);
    // Exclusive end, when known up front.
    let end = span.map(|s| s.end + 1);
    let mut file = match tokio::fs::File::open(spool).await {
        Ok(f) => f,
        // The fill already renamed (or removed) the spool: serve its final outcome.
        Err(_) => return from_store(tx, rx, store, digest, span).await,
    };
    file.seek(io::SeekFrom::Start(start)).await?;
    let mut pos = start;
    loop {
        if end.is_some_and(|e| pos >= e) {
            return Ok(());
        }
        let (limit, finished) = match &*rx.borrow_and_update() {
            FillState::Connecting => (0, false),
            FillState::Streaming { readable, .. } => (*readable, false),
            FillState::Done { size } => (*size, true),
            FillState::Failed(e) => return Err(io::Error::other(e.to_string())),
        };
        let upto = end.map_or(limit, |e| e.min(limit));
        if pos < upto {
            let n = (upto - pos).min(READ_CHUNK) as usize;
            let mut buf = BytesMut::zeroed(n);
            file.read_exact(&mut buf).await?;
            pos += n as u64;
            if tx.send(Ok(buf.freeze())).await.is_err() {
                return Ok(()); // the client went away; the fill goes on
            }
            continue;
        }
        if finished {
            return Ok(());
        }
        if rx.changed().await.is_err() && !matches!(&*rx.borrow(), FillState::Done { .. }) {
            return Err(io::Error::other("blob fill ended without an outcome"));
        }
    }
}

async fn from_store(
    tx: &mpsc::Sender<io::Result<Bytes>>,
    mut rx: watch::Receiver<FillState>,
    store: Arc<dyn BlobStore>,
    digest: &Digest,
    span: Option<ByteSpan>,
) -> io::Result<()> {
    loop {
        match &*rx.borrow_and_update() {
            FillState::Done { .. } => break,
            FillState::Failed(e) => return Err(io::Error::other(e.to_string())),
            FillState::Connecting | FillState::Streaming { .. } => {}
        }
        if rx.changed().await.is_err() && !matches!(&*rx.borrow(), FillState::Done { .. }) {
            return Err(io::Error::other("blob fill ended without an outcome"));
        }
    }
    let body = store
        .get(digest, span)
        .await
        .map_err(io::Error::other)?
        .ok_or_else(|| io::Error::other("blob vanished after its fill"))?;
    let mut stream = body.stream;
    while let Some(chunk) = stream.next().await {
        if tx.send(chunk).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
