//! The S3 backend (any S3-compatible object store).
//!
//! Layout in the bucket: `<prefix>/blobs/sha256/<first 2 hex>/<64 hex>`, the same
//! content-addressed shape as the fs backend, so several nodes can share a bucket.
//!
//! A write spools every byte to a local file (readers of an in-flight fill follow it)
//! and, once a part's worth has arrived, uploads that part from the spool in the
//! background. The multipart upload is completed only after the whole blob's digest
//! and size verify; a mismatch aborts it. Blobs smaller than one part go up in one
//! `PutObject` at commit. Nothing under the blob prefix ever holds unverified bytes.
//!
//! Uploads that a crash leaves open are recorded in a local journal (written before
//! the first part goes up) and aborted by [`S3Store::clean_up`] at the next start.
//! Uploads without a journal entry (another node's, or lost with the disk) are aborted
//! once older than `abandoned_upload_age`, where the server can list them.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream as SdkBody, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use tokio::fs;
use tokio::task::JoinHandle;

use crate::spool::Spool;
use crate::store::{BlobBody, BlobStore, BlobWriter, ByteSpan, StoreError};
use crate::Digest;

/// S3's smallest part (all but the last part of an upload must be at least this).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Parts uploading at once per fill; more would only queue behind the same link.
const PARTS_IN_FLIGHT: usize = 2;

/// Settings for [`S3Store::connect`].
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the bucket root.
    pub prefix: String,
    pub region: String,
    /// Endpoint URL for S3-compatible stores; `None` for AWS.
    pub endpoint: Option<String>,
    /// `https://host/bucket/key` instead of `https://bucket.host/key`.
    pub path_style: bool,
    /// Static credentials; `None` uses the standard AWS chain (environment, profile,
    /// web identity, ECS and EC2 instance metadata).
    pub credentials: Option<StaticCredentials>,
    pub part_size: u64,
    /// Local directory for spool files and the upload journal. Owned by one node.
    pub spool_dir: PathBuf,
    /// Attempts per request, including the first (throttling, 5xx, timeouts).
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Open multipart uploads without a journal entry are aborted past this age.
    pub abandoned_upload_age: Duration,
}

#[derive(Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|c| format!("{} / <redacted>", c.access_key_id)),
            )
            .field("part_size", &self.part_size)
            .field("spool_dir", &self.spool_dir)
            .finish_non_exhaustive()
    }
}

/// What [`S3Store::clean_up`] found and removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct CleanupReport {
    pub spool_files: usize,
    /// Uploads this node had open when it stopped (from its journal).
    pub journaled_uploads: usize,
    /// Old uploads found by listing the prefix.
    pub stale_uploads: usize,
    /// The server cannot list multipart uploads (some S3-compatible stores).
    pub listing_unsupported: bool,
}

pub struct S3Store {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    bucket: String,
    /// `""` or `"<prefix>/"`.
    key_prefix: String,
    part_size: u64,
    spool: PathBuf,
    journal: PathBuf,
    abandoned_upload_age: Duration,
}

impl S3Store {
    /// Builds the client and checks that the bucket is reachable with the given
    /// credentials, so a bad endpoint, bucket or key fails start-up with one clear
    /// message.
    pub async fn connect(cfg: S3Config) -> Result<Self, StoreError> {
        if cfg.part_size < MIN_PART_SIZE {
            return Err(StoreError::Backend(format!(
                "part size {} is below S3's minimum of {MIN_PART_SIZE} bytes",
                cfg.part_size
            )));
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(cfg.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(cfg.max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(cfg.connect_timeout)
                    .read_timeout(cfg.read_timeout)
                    .build(),
            );
        if let Some(c) = &cfg.credentials {
            loader = loader.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "ferry-config",
            ));
        }
        let sdk = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(cfg.path_style)
            // Checksums only where S3 requires them: many S3-compatible stores do not
            // accept the aws-chunked trailers of the newer defaults, and every blob is
            // verified by its sha256 anyway.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &cfg.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        let client = Client::from_conf(conf.build());

        let journal = cfg.spool_dir.join("uploads");
        fs::create_dir_all(&journal)
            .await
            .map_err(StoreError::from_io)?;
        let key_prefix = if cfg.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", cfg.prefix)
        };
        let store = Self {
            shared: Arc::new(Shared {
                client,
                bucket: cfg.bucket,
                key_prefix,
                part_size: cfg.part_size,
                spool: cfg.spool_dir,
                journal,
                abandoned_upload_age: cfg.abandoned_upload_age,
            }),
        };
        store.check_bucket().await?;
        Ok(store)
    }

    async fn check_bucket(&self) -> Result<(), StoreError> {
        let s = &self.shared;
        match s.client.head_bucket().bucket(&s.bucket).send().await {
            Ok(_) => Ok(()),
            Err(err) => Err(StoreError::Backend(match status(&err) {
                Some(404) => format!("bucket {:?} does not exist", s.bucket),
                Some(401 | 403) => format!(
                    "access to bucket {:?} denied: check the credentials and the bucket policy",
                    s.bucket
                ),
                Some(301) => format!(
                    "bucket {:?} is in another region than the configured one",
                    s.bucket
                ),
                Some(code) => format!(
                    "bucket {:?}: the store answered HTTP {code}: {}",
                    s.bucket,
                    chain(&err)
                ),
                None => format!("cannot reach bucket {:?}: {}", s.bucket, chain(&err)),
            })),
        }
    }

    /// The object key of a blob. The digest's hex is validated, so the key never
    /// leaves the prefix.
    pub fn blob_key(&self, digest: &Digest) -> String {
        self.shared.blob_key(digest)
    }

    /// Removes what a previous run of this node left behind: spool files, uploads
    /// in its journal, and (where the server can list them) uploads under the prefix
    /// older than `abandoned_upload_age`. Only the node that owns the spool directory
    /// may call this, at start-up.
    pub async fn clean_up(&self) -> Result<CleanupReport, StoreError> {
        let s = &self.shared;
        let mut report = CleanupReport::default();
        let mut entries = fs::read_dir(&s.spool).await?;
        while let Some(entry) = entries.next_entry().await? {
            if entry.file_type().await?.is_file() && fs::remove_file(entry.path()).await.is_ok() {
                report.spool_files += 1;
            }
        }
        let mut entries = fs::read_dir(&s.journal).await?;
        while let Some(entry) = entries.next_entry().await? {
            let text = fs::read_to_string(entry.path()).await.unwrap_or_default();
            if let Some((key, upload_id)) = text.trim_end().split_once('\n') {
                s.abort_upload(key, upload_id).await?;
                report.journaled_uploads += 1;
            }
            fs::remove_file(entry.path()).await?;
        }
        match s.abort_stale_uploads().await {
            Ok(n) => report.stale_uploads = n,
            Err(StaleListing::Unsupported) => report.listing_unsupported = true,
            Err(StaleListing::Failed(e)) => return Err(e),
        }
        Ok(report)
    }
}

enum StaleListing {
    Unsupported,
    Failed(StoreError),
}

impl Shared {
    fn blob_key(&self, digest: &Digest) -> String {
        let hex = digest.hex();
        format!("{}blobs/sha256/{}/{}", self.key_prefix, &hex[..2], hex)
    }

    fn blobs_prefix(&self) -> String {
        format!("{}blobs/sha256/", self.key_prefix)
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already completed or aborted.
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(sdk_error("abort upload of", key, e)),
        }
    }

    async fn abort_stale_uploads(&self) -> Result<usize, StaleListing> {
        let prefix = self.blobs_prefix();
        let cutoff = SystemTime::now()
            .checked_sub(self.abandoned_upload_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut aborted = 0;
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e)
                    if matches!(status(&e), Some(501 | 405))
                        || e.code() == Some("NotImplemented") =>
                {
                    return Err(StaleListing::Unsupported)
                }
                Err(e) => {
                    return Err(StaleListing::Failed(sdk_error(
                        "list uploads under",
                        &prefix,
                        e,
                    )))
                }
            };
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let started = upload
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::now());
                if started <= cutoff {
                    self.abort_upload(key, id)
                        .await
                        .map_err(StaleListing::Failed)?;
                    aborted += 1;
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(aborted);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(aborted);
            }
        }
    }

    async fn list_sized(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let prefix = self.blobs_prefix();
        let mut out = Vec::new();
        let mut token = None::<String>;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| sdk_error("list", &prefix, e))?;
            for object in page.contents() {
                let Some(rest) = object.key().and_then(|k| k.strip_prefix(prefix.as_str())) else {
                    continue;
                };
                // `<2 hex>/<64 hex>`; anything else under the prefix is not ours.
                let Some((shard, hex)) = rest.split_once('/') else {
                    continue;
                };
                match Digest::from_hex(hex) {
                    Ok(d) if hex.starts_with(shard) && shard.len() == 2 => {
                        out.push((d, object.size().unwrap_or(0).max(0) as u64));
                    }
                    _ => {}
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The HTTP status of a failed S3 call, when the server answered.
fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn sdk_error<E>(op: &str, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Backend(format!("s3 {op} {key}: {}", chain(&err)))
}

/// An error and its sources as one line, `outer: inner: root`, skipping a source
/// whose text its parent already shows.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut last = out.clone();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !last.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        source = e.source();
    }
    out
}

/// Total size from a `Content-Range: bytes a-b/N` header.
fn range_total(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.parse().ok()
}

#[async_trait]
impl BlobStore for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn shared(&self) -> bool {
        true
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let s = &self.shared;
        let key = s.blob_key(digest);
        match s
            .client
            .head_object()
            .bucket(&s.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(sdk_error("head", &key, e)),
        }
    }

    async fn get(
        &self,
        digest: &Digest,
        span: Option<ByteSpan>,
    ) -> Result<Option<BlobBody>, StoreError> {
        let s = &self.shared;
        let key = s.blob_key(digest);
        let mut req = s.client.get_object().bucket(&s.bucket).key(&key);
        if let Some(span) = span {
            if span.start > span.end {
                return Err(StoreError::SpanOutOfRange {
                    start: span.start,
                    end: span.end,
                    size: self.stat(digest).await?.unwrap_or(0),
                });
            }
            req = req.range(format!("bytes={}-{}", span.start, span.end));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) if status(&e) == Some(416) => {
                let Some(size) = self.stat(digest).await? else {
                    return Ok(None);
                };
                let span = span.unwrap_or(ByteSpan { start: 0, end: 0 });
                return Err(StoreError::SpanOutOfRange {
                    start: span.start,
                    end: span.end,
                    size,
                });
            }
            Err(e) => return Err(sdk_error("get", &key, e)),
        };
        let length = out.content_length().unwrap_or(0).max(0) as u64;
        let size = match span {
            None => length,
            Some(span) => {
                let size = out.content_range().and_then(range_total).unwrap_or(length);
                // S3 clips a range that runs past the end; our contract refuses it.
                if span.end >= size {
                    return Err(StoreError::SpanOutOfRange {
                        start: span.start,
                        end: span.end,
                        size,
                    });
                }
                size
            }
        };
        let stream = futures_util::stream::try_unfold(out.body, |mut body| async move {
            match body.try_next().await {
                Ok(Some(chunk)) => Ok(Some((chunk, body))),
                Ok(None) => Ok(None),
                Err(e) => Err(io::Error::other(e)),
            }
        });
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
        let s = &self.shared;
        let spool = Spool::create_in(&s.spool, digest, expected_size).await?;
        Ok(Box::new(S3Writer {
            journal_path: s.journal.join(spool.name()),
            spool,
            shared: s.clone(),
            key: s.blob_key(digest),
            upload_id: None,
            next_part_start: 0,
            in_flight: VecDeque::new(),
            completed: Vec::new(),
            done: false,
        }))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        let s = &self.shared;
        if self.stat(digest).await?.is_none() {
            return Ok(false);
        }
        let key = s.blob_key(digest);
        s.client
            .delete_object()
            .bucket(&s.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| sdk_error("delete", &key, e))?;
        Ok(true)
    }

    async fn list(&self) -> Result<Vec<Digest>, StoreError> {
        Ok(self
            .shared
            .list_sized()
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .collect())
    }

    async fn list_sized(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        self.shared.list_sized().await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.check_bucket().await
    }

    async fn presigned_get(
        &self,
        digest: &Digest,
        expires: Duration,
    ) -> Result<Option<String>, StoreError> {
        let s = &self.shared;
        let key = s.blob_key(digest);
        let config = PresigningConfig::expires_in(expires)
            .map_err(|e| StoreError::Backend(format!("presign {key}: {e}")))?;
        let request = s
            .client
            .get_object()
            .bucket(&s.bucket)
            .key(&key)
            .presigned(config)
            .await
            .map_err(|e| sdk_error("presign", &key, e))?;
        Ok(Some(request.uri().to_owned()))
    }
}

type PartTask = JoinHandle<Result<CompletedPart, StoreError>>;

struct S3Writer {
    /// Every byte so far, hashed; parts are uploaded from it. Removed on drop.
    spool: Spool,
    shared: Arc<Shared>,
    key: String,
    journal_path: PathBuf,
    /// Set once the multipart upload is created (the first full part).
    upload_id: Option<String>,
    /// Spool offset where the next part starts.
    next_part_start: u64,
    in_flight: VecDeque<PartTask>,
    completed: Vec<CompletedPart>,
    /// The blob is committed: drop has no upload to abort.
    done: bool,
}

impl S3Writer {
    async fn upload_id(&mut self) -> Result<String, StoreError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let s = &self.shared;
        let out = s
            .client
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key(&self.key)
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(|e| sdk_error("start upload of", &self.key, e))?;
        let id = out
            .upload_id()
            .ok_or_else(|| StoreError::Backend(format!("s3 gave no upload id for {}", self.key)))?
            .to_owned();
        self.upload_id = Some(id.clone());
        // Journal it before any part goes up, so a crash from here on is cleaned up.
        fs::write(&self.journal_path, format!("{}\n{}\n", self.key, id))
            .await
            .map_err(StoreError::from_io)?;
        Ok(id)
    }

    async fn spool_body(&self, offset: u64, len: u64) -> Result<SdkBody, StoreError> {
        SdkBody::read_from()
            .path(self.spool.path())
            .offset(offset)
            .length(Length::Exact(len))
            .build()
            .await
            .map_err(|e| StoreError::Backend(format!("read spool {:?}: {e}", self.spool.path())))
    }

    /// Starts uploading spool bytes `offset..offset+len` as the next part, waiting
    /// for older parts when too many are in flight.
    async fn start_part(&mut self, offset: u64, len: u64) -> Result<(), StoreError> {
        let upload_id = self.upload_id().await?;
        let number = i32::try_from(self.completed.len() + self.in_flight.len() + 1)
            .map_err(|_| StoreError::Backend("too many parts".into()))?;
        let body = self.spool_body(offset, len).await?;
        let s = &self.shared;
        let key = self.key.clone();
        let send = s
            .client
            .upload_part()
            .bucket(&s.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(len as i64)
            .body(body)
            .send();
        self.in_flight.push_back(tokio::spawn(async move {
            let out = send
                .await
                .map_err(|e| sdk_error(&format!("upload part {number} of"), &key, e))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build())
        }));
        while self.in_flight.len() > PARTS_IN_FLIGHT {
            self.finish_oldest_part().await?;
        }
        Ok(())
    }

    async fn finish_oldest_part(&mut self) -> Result<(), StoreError> {
        if let Some(task) = self.in_flight.pop_front() {
            let part = task
                .await
                .map_err(|e| StoreError::Backend(format!("part upload task: {e}")))??;
            self.completed.push(part);
        }
        Ok(())
    }

    async fn finish(&mut self, size: u64) -> Result<(), StoreError> {
        let s = self.shared.clone();
        if self.upload_id.is_none() {
            let body = self.spool_body(0, size).await?;
            s.client
                .put_object()
                .bucket(&s.bucket)
                .key(&self.key)
                .content_type("application/octet-stream")
                .content_length(size as i64)
                .body(body)
                .send()
                .await
                .map_err(|e| sdk_error("put", &self.key, e))?;
            return Ok(());
        }
        if size > self.next_part_start {
            self.start_part(self.next_part_start, size - self.next_part_start)
                .await?;
        }
        while !self.in_flight.is_empty() {
            self.finish_oldest_part().await?;
        }
        let upload_id = self.upload_id().await?;
        let parts = std::mem::take(&mut self.completed);
        s.client
            .complete_multipart_upload()
            .bucket(&s.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("complete upload of", &self.key, e))?;
        Ok(())
    }

    /// Stops part uploads and aborts the multipart upload, so nothing of this write
    /// stays in the bucket.
    async fn abort(&mut self) {
        for task in self.in_flight.drain(..) {
            task.abort();
        }
        if let Some(id) = self.upload_id.take() {
            match self.shared.abort_upload(&self.key, &id).await {
                Ok(()) => {
                    let _ = fs::remove_file(&self.journal_path).await;
                }
                // The journal entry stays, so the next start-up retries the abort.
                Err(e) => tracing::warn!(key = %self.key, error = %e, "could not abort upload"),
            }
        }
    }
}

#[async_trait]
impl BlobWriter for S3Writer {
    async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.spool.write(data).await?;
        let part_size = self.shared.part_size;
        while self.spool.written() - self.next_part_start >= part_size {
            self.start_part(self.next_part_start, part_size).await?;
            self.next_part_start += part_size;
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.spool.written()
    }

    fn spool_path(&self) -> Option<&Path> {
        Some(self.spool.path())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, StoreError> {
        let size = match self.spool.verify().await {
            Ok((size, _file)) => size,
            Err(e) => {
                self.abort().await;
                return Err(e);
            }
        };
        if let Err(e) = self.finish(size).await {
            self.abort().await;
            return Err(e);
        }
        self.done = true;
        let _ = fs::remove_file(&self.journal_path).await;
        Ok(size)
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for task in self.in_flight.drain(..) {
            task.abort();
        }
        let Some(id) = self.upload_id.take() else {
            return;
        };
        // Abandoned mid-write (client gone, upstream failed): abort in the background.
        // Without a runtime the journal entry stays for the next start-up.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            let key = self.key.clone();
            let journal = self.journal_path.clone();
            rt.spawn(async move {
                if shared.abort_upload(&key, &id).await.is_ok() {
                    let _ = fs::remove_file(journal).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3_testing::S3Server;
    use crate::store::read_to_vec;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
            .unwrap_or(0)
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn content_range_total() {
        assert_eq!(range_total("bytes 0-9/100"), Some(100));
        assert_eq!(range_total("bytes */100"), Some(100));
        assert_eq!(range_total("garbage"), None);
    }

    #[tokio::test]
    async fn s3_store_passes_conformance() {
        let server = S3Server::start().await;
        let spool = tempfile::tempdir().unwrap();
        let store = S3Store::connect(server.config("conf", spool.path()))
            .await
            .unwrap();
        crate::conformance::run(&store).await.unwrap();
        assert!(
            server
                .keys()
                .iter()
                .all(|k| k.starts_with("conf/blobs/sha256/")),
            "{:?}",
            server.keys()
        );
    }

    #[tokio::test]
    async fn multipart_fill_is_invisible_until_verified_then_complete() {
        let server = S3Server::start().await;
        let spool = tempfile::tempdir().unwrap();
        let store = S3Store::connect(server.config("", spool.path()))
            .await
            .unwrap();
        let body = data(12 * 1024 * 1024 + 123);
        let d = Digest::of(&body);
        let mut w = store.writer(&d, Some(body.len() as u64)).await.unwrap();
        for chunk in body.chunks(1 << 20) {
            w.write(chunk).await.unwrap();
        }
        wait_for("two parts uploaded", || server.open_upload_parts() == 2).await;
        assert_eq!(store.stat(&d).await.unwrap(), None, "visible before commit");
        assert_eq!(files(&spool.path().join("uploads")), 1, "upload journaled");
        assert_eq!(w.commit().await.unwrap(), body.len() as u64);

        assert_eq!(store.stat(&d).await.unwrap(), Some(body.len() as u64));
        let key = store.blob_key(&d);
        assert_eq!(key, format!("blobs/sha256/{}/{}", &d.hex()[..2], d.hex()));
        assert_eq!(std::fs::read(server.object_path(&key)).unwrap(), body);
        // A span across the first part boundary.
        let span = ByteSpan {
            start: MIN_PART_SIZE - 10,
            end: MIN_PART_SIZE + 10,
        };
        let got = store.get(&d, Some(span)).await.unwrap().unwrap();
        assert_eq!(got.size, body.len() as u64);
        let got = read_to_vec(got.stream, usize::MAX).await.unwrap();
        assert_eq!(got, body[span.start as usize..=span.end as usize]);
        assert_eq!(server.open_upload_parts(), 0);
        assert_eq!(files(&spool.path().join("uploads")), 0, "journal cleared");
        assert_eq!(files(spool.path()), 0, "spool removed");
        assert_eq!(
            store.list_sized().await.unwrap(),
            vec![(d, body.len() as u64)]
        );
    }

    #[tokio::test]
    async fn digest_mismatch_after_parts_aborts_the_upload() {
        let server = S3Server::start().await;
        let spool = tempfile::tempdir().unwrap();
        let store = S3Store::connect(server.config("p", spool.path()))
            .await
            .unwrap();
        let body = data(11 * 1024 * 1024);
        let claimed = Digest::of(b"not this content");
        let mut w = store.writer(&claimed, None).await.unwrap();
        w.write(&body).await.unwrap();
        let err = w.commit().await.unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert_eq!(store.stat(&claimed).await.unwrap(), None);
        assert!(server.keys().is_empty(), "{:?}", server.keys());
        assert_eq!(server.open_upload_parts(), 0, "parts left behind");
        assert_eq!(files(&spool.path().join("uploads")), 0);
        assert_eq!(files(spool.path()), 0);
    }

    #[tokio::test]
    async fn an_upload_left_by_a_crash_is_aborted_at_the_next_start() {
        let server = S3Server::start().await;
        let spool = tempfile::tempdir().unwrap();
        let store = S3Store::connect(server.config("", spool.path()))
            .await
            .unwrap();
        let body = data(11 * 1024 * 1024);
        let d = Digest::of(&body);
        let mut w = store.writer(&d, None).await.unwrap();
        w.write(&body).await.unwrap();
        std::mem::forget(w); // the process dies: no commit, no drop
        wait_for("parts uploaded", || server.open_upload_parts() == 2).await;
        drop(store);

        let store = S3Store::connect(server.config("", spool.path()))
            .await
            .unwrap();
        let report = store.clean_up().await.unwrap();
        assert_eq!(report.journaled_uploads, 1, "{report:?}");
        assert_eq!(report.spool_files, 1, "{report:?}");
        // s3s-fs cannot list multipart uploads; the journal covers this node's own.
        assert!(report.listing_unsupported, "{report:?}");
        assert_eq!(server.open_upload_parts(), 0);
        assert_eq!(files(&spool.path().join("uploads")), 0);
        assert_eq!(store.stat(&d).await.unwrap(), None);
    }

    #[tokio::test]
    async fn server_outage_mid_fill_fails_the_write_and_leaves_nothing() {
        let mut server = S3Server::start().await;
        let spool = tempfile::tempdir().unwrap();
        let store = S3Store::connect(server.config("", spool.path()))
            .await
            .unwrap();
        let body = data(12 * 1024 * 1024);
        let d = Digest::of(&body);
        let mut w = store.writer(&d, None).await.unwrap();
        w.write(&body[..6 << 20]).await.unwrap();
        wait_for("first part uploaded", || server.open_upload_parts() == 1).await;
        server.stop();
        let started = std::time::Instant::now();
        let result = async {
            w.write(&body[6 << 20..]).await?;
            w.commit().await
        }
        .await;
        assert!(result.is_err(), "a write with the store down succeeded");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(files(spool.path()), 0, "spool kept");

        server.restart().await;
        assert_eq!(store.stat(&d).await.unwrap(), None);
        // The abort could not reach the server; the journal lets the next start do it.
        let report = store.clean_up().await.unwrap();
        assert_eq!(report.journaled_uploads, 1, "{report:?}");
        assert_eq!(server.open_upload_parts(), 0);
    }

    #[tokio::test]
    async fn throttling_5xx_and_timeouts_are_retried_with_backoff() {
        use crate::s3_testing::{Fault, FaultProxy};
        let server = S3Server::start().await;
        let spool = tempfile::tempdir().unwrap();
        let body = data(6 * 1024 * 1024);
        let d = Digest::of(&body);
        let faults = [
            Fault::Status(503, "SlowDown"),
            Fault::Status(500, "InternalError"),
            Fault::Stall,
        ];
        for fault in faults {
            // Two spoiled connections, then the real server: within 3 attempts.
            let proxy = FaultProxy::start(&server, fault, 2).await;
            let mut cfg = server.config(
                &format!("{fault:?}").replace(['(', ')', ' ', ',', '"'], ""),
                spool.path(),
            );
            cfg.endpoint = Some(proxy.endpoint.clone());
            cfg.read_timeout = Duration::from_millis(500);
            let store = S3Store::connect(cfg)
                .await
                .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
            assert!(proxy.connections() >= 3, "{fault:?}: no retries seen");
            let mut w = store.writer(&d, None).await.unwrap();
            w.write(&body).await.unwrap();
            w.commit().await.unwrap();
            assert_eq!(store.stat(&d).await.unwrap(), Some(body.len() as u64));
        }

        // Past max_attempts the error says what the store answered.
        let proxy = FaultProxy::start(&server, Fault::Status(503, "SlowDown"), 100).await;
        let mut cfg = server.config("", spool.path());
        cfg.endpoint = Some(proxy.endpoint.clone());
        let err = S3Store::connect(cfg).await.err().unwrap().to_string();
        assert!(err.contains("503"), "{err}");
        assert_eq!(proxy.connections(), 3, "max_attempts = 3");
    }

    #[tokio::test]
    async fn missing_bucket_and_bad_credentials_fail_with_a_clear_message() {
        let server = S3Server::start().await;
        let spool = tempfile::tempdir().unwrap();
        let mut cfg = server.config("", spool.path());
        cfg.bucket = "no-such-bucket".into();
        let err = S3Store::connect(cfg).await.err().unwrap().to_string();
        assert!(err.contains("\"no-such-bucket\" does not exist"), "{err}");

        let mut cfg = server.config("", spool.path());
        if let Some(c) = cfg.credentials.as_mut() {
            c.secret_access_key = "wrong".into();
        }
        let err = S3Store::connect(cfg).await.err().unwrap().to_string();
        assert!(err.contains("denied"), "{err}");
        assert!(!err.contains("wrong"), "secret in message: {err}");

        let mut cfg = server.config("", spool.path());
        cfg.endpoint = Some(format!(
            "http://127.0.0.1:{}",
            crate::s3_testing::unused_port()
        ));
        cfg.max_attempts = 1;
        let err = S3Store::connect(cfg).await.err().unwrap().to_string();
        assert!(err.contains("cannot reach bucket"), "{err}");
    }
}
