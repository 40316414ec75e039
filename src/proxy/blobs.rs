//! Blob requests: hit from the store, or attach to (or start) the digest's fill.

use ferry_storage::store::ByteStream;
use ferry_storage::ByteSpan;
use reqwest::header::HeaderMap;
use reqwest::Method;

use super::error::{Kind, ProxyError};
use super::fill::{self, FillJob, FillState};
use super::{Mirror, Route};
use crate::oci::{ByteRange, Digest};

pub struct BlobReply {
    /// Size of the whole blob, when known (an upstream may stream without a length).
    pub size: Option<u64>,
    /// The part being answered (206), or `None` for the whole blob (200).
    pub span: Option<ByteSpan>,
    /// `None` for HEAD and redirects.
    pub body: Option<ByteStream>,
    /// Send the client here instead (a presigned URL of the blob in the store).
    pub redirect: Option<String>,
}

impl Mirror {
    pub async fn blob(
        &self,
        route: &Route,
        digest: &Digest,
        range: Option<ByteRange>,
        head: bool,
    ) -> Result<BlobReply, ProxyError> {
        if let Some(size) = self.store.stat(digest).await? {
            self.metrics.cache("blob", "hit");
            return self.blob_from_store(digest, size, range, head).await;
        }
        if head {
            return self.blob_head_miss(route, digest, range).await;
        }
        let (fill, new) = self.fills.attach_or_insert(digest);
        if new {
            self.metrics.cache("blob", "miss");
            let job = FillJob {
                fills: self.fills.clone(),
                store: self.store.clone(),
                metrics: self.metrics.clone(),
                route: route.clone(),
                digest: digest.clone(),
                fill: fill.clone(),
                audit: self.audit.clone(),
            };
            tokio::spawn(job.run());
        } else {
            self.metrics.cache("blob", "coalesced");
        }
        let mut rx = fill.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            match state {
                FillState::Connecting => {}
                FillState::Failed(e) => return Err(ProxyError::Oci(e)),
                FillState::Done { size } => {
                    return self.blob_from_store(digest, size, range, false).await
                }
                FillState::Streaming {
                    total: Some(total),
                    spool,
                    ..
                } => {
                    let span = range.map(|r| r.resolve(total)).transpose()?;
                    let body = fill::follow(rx, spool, self.store.clone(), digest.clone(), span);
                    return Ok(BlobReply {
                        size: Some(total),
                        span,
                        body: Some(body),
                        redirect: None,
                    });
                }
                FillState::Streaming {
                    total: None, spool, ..
                } if range.is_none() => {
                    let body = fill::follow(rx, spool, self.store.clone(), digest.clone(), None);
                    return Ok(BlobReply {
                        size: None,
                        span: None,
                        body: Some(body),
                        redirect: None,
                    });
                }
                // A Range on a blob of unknown length waits for the fill to finish.
                FillState::Streaming { total: None, .. } => {}
            }
            if rx.changed().await.is_err() {
                return Err(ProxyError::BlobGone(digest.clone()));
            }
        }
    }

    async fn blob_from_store(
        &self,
        digest: &Digest,
        size: u64,
        range: Option<ByteRange>,
        head: bool,
    ) -> Result<BlobReply, ProxyError> {
        let span = range.map(|r| r.resolve(size)).transpose()?;
        if let Some(expires) = self.redirect.filter(|_| !head) {
            let url = self.store.presigned_get(digest, expires).await?;
            // A URL that cannot be a header value is never sent; stream instead.
            if let Some(url) = url.filter(|u| u.bytes().all(|b| b.is_ascii_graphic())) {
                self.metrics.cache("blob", "redirect");
                return Ok(BlobReply {
                    size: Some(size),
                    span: None,
                    body: None,
                    redirect: Some(url),
                });
            }
        }
        let body = if head {
            None
        } else {
            let body = self
                .store
                .get(digest, span)
                .await?
                .ok_or_else(|| ProxyError::BlobGone(digest.clone()))?;
            Some(body.stream)
        };
        Ok(BlobReply {
            size: Some(size),
            span,
            body,
            redirect: None,
        })
    }

    /// HEAD of a blob we do not have: answer from a running fill, or ask the upstream
    /// with a HEAD (a HEAD never starts a download).
    async fn blob_head_miss(
        &self,
        route: &Route,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobReply, ProxyError> {
        self.metrics.cache("blob", "miss");
        if let Some(fill) = self.fills.get(digest) {
            let mut rx = fill.subscribe();
            loop {
                let state = rx.borrow_and_update().clone();
                match state {
                    FillState::Streaming {
                        total: Some(size), ..
                    }
                    | FillState::Done { size } => {
                        let span = range.map(|r| r.resolve(size)).transpose()?;
                        return Ok(BlobReply {
                            size: Some(size),
                            span,
                            body: None,
                            redirect: None,
                        });
                    }
                    FillState::Failed(e) => return Err(ProxyError::Oci(e)),
                    FillState::Connecting | FillState::Streaming { total: None, .. } => {}
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
        let resp = route
            .upstream
            .request(
                Method::HEAD,
                &route.repo,
                &format!("blobs/{digest}"),
                &[],
                HeaderMap::new(),
            )
            .await
            .map_err(ProxyError::upstream(Kind::Blob))?;
        // Read the header itself: a HEAD response's body length is always 0.
        let size = resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let span = match (range, size) {
            (Some(r), Some(s)) => Some(r.resolve(s)?),
            _ => None,
        };
        Ok(BlobReply {
            size,
            span,
            body: None,
            redirect: None,
        })
    }
}
