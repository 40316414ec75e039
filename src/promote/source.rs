//! Sources: a registry (through the same client the mirror uses upstream) and an
//! unpacked OCI image layout (a bundle being imported).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_storage::store::{read_to_vec, ByteStream};
use futures_util::StreamExt as _;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::Method;

use super::{PromoteError, RegistryRef, Source};
use crate::config::{Credentials, UpstreamConfig};
use crate::metrics::Metrics;
use crate::oci::{Descriptor, Digest, RepoName, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};
use crate::upstream::{Upstream, UpstreamError, UpstreamResponse};

/// The client settings for a promotion's source registry.
pub fn upstream_config(reg: &RegistryRef) -> UpstreamConfig {
    UpstreamConfig {
        name: reg.name.clone(),
        url: reg.base.clone(),
        aliases: Vec::new(),
        default: false,
        library_prefix: false,
        credentials: reg.username.as_ref().map(|u| Credentials {
            username: u.clone(),
            password: reg.password.clone().unwrap_or_default(),
        }),
        manifest_ttl: Duration::ZERO,
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(60),
        retries: 3,
        max_concurrency: 16,
        // Promotion waits its turn rather than failing.
        queue_timeout: Duration::from_secs(3600),
    }
}

pub struct RegistrySource {
    upstream: Upstream,
    name: String,
}

impl RegistrySource {
    pub fn new(reg: &RegistryRef) -> Result<Self, PromoteError> {
        let metrics = Arc::new(Metrics::new().map_err(|e| PromoteError::Usage(e.to_string()))?);
        let upstream = Upstream::new(upstream_config(reg), metrics)
            .map_err(|e| PromoteError::Usage(format!("HTTP client: {e}")))?;
        Ok(Self {
            upstream,
            name: reg.name.clone(),
        })
    }

    fn err(&self, what: String, e: UpstreamError) -> PromoteError {
        PromoteError::Source(format!("{}: {what}: {e}", self.name))
    }
}

fn accept(value: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static(value));
    h
}

/// A response body as a store-style byte stream.
fn body(resp: UpstreamResponse) -> ByteStream {
    Box::pin(
        resp.bytes_stream()
            .map(|c| c.map_err(std::io::Error::other)),
    )
}

#[async_trait]
impl Source for RegistrySource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &str,
    ) -> Result<Option<(Bytes, Option<String>)>, PromoteError> {
        let what = format!("{repo}:{reference}");
        let resp = match self
            .upstream
            .request(
                Method::GET,
                repo,
                &format!("manifests/{reference}"),
                &[],
                accept(MANIFEST_ACCEPT),
            )
            .await
        {
            Ok(r) => r,
            Err(UpstreamError::NotFound) => return Ok(None),
            Err(e) => return Err(self.err(what, e)),
        };
        let declared = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_to_vec(body(resp), MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| PromoteError::Source(format!("{}: {what}: {e}", self.name)))?;
        Ok(Some((bytes.into(), declared)))
    }

    async fn blob(&self, repo: &RepoName, digest: &Digest) -> Result<ByteStream, PromoteError> {
        let resp = self
            .upstream
            .request(
                Method::GET,
                repo,
                &format!("blobs/{digest}"),
                &[],
                HeaderMap::new(),
            )
            .await
            .map_err(|e| self.err(format!("{repo}@{digest}"), e))?;
        Ok(body(resp))
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, PromoteError> {
        let resp = match self
            .upstream
            .request(
                Method::GET,
                repo,
                &format!("referrers/{digest}"),
                &[],
                accept("application/vnd.oci.image.index.v1+json"),
            )
            .await
        {
            Ok(r) => r,
            // Registries without the referrers API (distribution 2.x) answer 404:
            // their referrers, if any, are behind the legacy tags.
            Err(UpstreamError::NotFound | UpstreamError::Status { status: 405 }) => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(self.err(format!("referrers of {repo}@{digest}"), e)),
        };
        let bytes = read_to_vec(body(resp), MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| PromoteError::Source(format!("referrers of {digest}: {e}")))?;
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| PromoteError::Source(format!("referrers of {digest}: {e}")))?;
        Ok(index.manifests)
    }
}

/// An unpacked OCI image layout: `oci-layout`, `index.json`, `blobs/sha256/<hex>`.
pub struct LayoutSource {
    dir: PathBuf,
}

impl LayoutSource {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    pub fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
        dir.join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }
}

#[async_trait]
impl Source for LayoutSource {
    fn describe(&self) -> String {
        format!("bundle {}", self.dir.display())
    }

    async fn manifest(
        &self,
        _repo: &RepoName,
        reference: &str,
    ) -> Result<Option<(Bytes, Option<String>)>, PromoteError> {
        // A layout has no tags of its own: every manifest is named by digest.
        let Ok(digest) = Digest::parse(reference) else {
            return Ok(None);
        };
        let path = Self::blob_path(&self.dir, &digest);
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.len() > MAX_MANIFEST_BYTES as u64 => {
                return Err(PromoteError::Corrupt(format!(
                    "{}: {digest} is too large for a manifest",
                    self.describe()
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        Ok(Some((tokio::fs::read(&path).await?.into(), None)))
    }

    async fn blob(&self, _repo: &RepoName, digest: &Digest) -> Result<ByteStream, PromoteError> {
        let path = Self::blob_path(&self.dir, digest);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| PromoteError::Source(format!("{}: {digest}: {e}", self.describe())))?;
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            file,
            256 * 1024,
        )))
    }

    async fn referrers(
        &self,
        _repo: &RepoName,
        _digest: &Digest,
    ) -> Result<Vec<Descriptor>, PromoteError> {
        // A bundle lists its referrers in index.json, as images of their own.
        Ok(Vec::new())
    }
}
