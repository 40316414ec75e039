//! The proxy's errors, and the one place they become OCI errors.

use ferry_storage::StoreError;

use crate::oci::{Digest, ErrorCode, OciError, RangeError};
use crate::upstream::UpstreamError;

/// What a request was after, so an upstream 404 becomes the right *_UNKNOWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Blob,
    Manifest,
    Tags,
    Referrers,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no upstream is configured for {0:?}")]
    UnknownUpstream(String),
    #[error("the request names no upstream and none is the default")]
    NoDefaultUpstream,
    #[error("{0}")]
    Oci(OciError),
    #[error("manifest of type {0} is not in the Accept header")]
    NotAcceptable(String),
    #[error("{kind:?} request failed upstream: {err}")]
    Upstream { kind: Kind, err: UpstreamError },
    #[error("upstream sent content that does not match {0}")]
    Corrupt(String),
    #[error("upstream sent an invalid manifest: {0}")]
    BadManifest(String),
    #[error(transparent)]
    Range(#[from] RangeError),
    #[error("storage: {0}")]
    Store(StoreError),
    #[error("blob {0} is not available")]
    BlobGone(Digest),
    /// The outcome of a coalesced request, shared by every caller that waited for it.
    #[error("{}", .0.oci)]
    Shared(SharedError),
}

/// A [`ProxyError`] in the form concurrent callers can share.
#[derive(Debug, Clone)]
pub struct SharedError {
    pub oci: OciError,
    pub upstream_down: bool,
}

impl From<ProxyError> for SharedError {
    fn from(e: ProxyError) -> Self {
        Self {
            upstream_down: e.upstream_is_down(),
            oci: e.into(),
        }
    }
}

impl From<StoreError> for ProxyError {
    /// Content that fails verification is the upstream's fault, not storage's.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DigestMismatch { .. } | StoreError::SizeMismatch { .. } => {
                Self::Corrupt(e.to_string())
            }
            other => Self::Store(other),
        }
    }
}

impl ProxyError {
    pub fn upstream(kind: Kind) -> impl FnOnce(UpstreamError) -> Self {
        move |err| Self::Upstream { kind, err }
    }

    /// True when the upstream is unwell (as opposed to "no such thing"): stale content may be served.
    pub fn upstream_is_down(&self) -> bool {
        match self {
            Self::Upstream { err, .. } => err.is_transient(),
            Self::Shared(s) => s.upstream_down,
            Self::UnknownUpstream(_)
            | Self::NoDefaultUpstream
            | Self::Oci(_)
            | Self::NotAcceptable(_)
            | Self::Corrupt(_)
            | Self::BadManifest(_)
            | Self::Range(_)
            | Self::Store(_)
            | Self::BlobGone(_) => false,
        }
    }
}

impl From<ProxyError> for OciError {
    fn from(e: ProxyError) -> Self {
        match e {
            ProxyError::UnknownUpstream(ns) => OciError::new(
                ErrorCode::NameUnknown,
                "no upstream configured for this registry",
            )
            .with_detail(ns),
            ProxyError::NoDefaultUpstream => OciError::new(
                ErrorCode::NameUnknown,
                "name a registry: a path prefix /v2/<upstream>/... or ?ns=<host>",
            ),
            ProxyError::Oci(oci) => oci,
            ProxyError::NotAcceptable(mt) => {
                OciError::new(ErrorCode::ManifestUnknown, "manifest type not accepted").with_detail(
                    format!("the manifest is {mt}, which the Accept header does not list"),
                )
            }
            ProxyError::Upstream { kind, err } => upstream_error(kind, err),
            ProxyError::Corrupt(what) => OciError::new(
                ErrorCode::Unavailable,
                "upstream sent content that does not match its digest",
            )
            .with_detail(what),
            ProxyError::BadManifest(why) => {
                OciError::new(ErrorCode::Unavailable, "upstream sent an invalid manifest")
                    .with_detail(why)
            }
            ProxyError::Range(r) => r.into(),
            ProxyError::Store(StoreError::NoSpace(_)) => {
                OciError::new(ErrorCode::Unavailable, "cache storage is full").with_retry_after(30)
            }
            ProxyError::Store(s) => {
                OciError::new(ErrorCode::Unknown, "storage error").with_detail(s.to_string())
            }
            ProxyError::BlobGone(d) => {
                OciError::new(ErrorCode::BlobUnknown, "blob unknown").with_detail(d.to_string())
            }
            ProxyError::Shared(s) => s.oci,
        }
    }
}

fn upstream_error(kind: Kind, err: UpstreamError) -> OciError {
    let detail = err.to_string();
    match err {
        UpstreamError::NotFound => {
            let (code, msg) = match kind {
                Kind::Blob => (ErrorCode::BlobUnknown, "blob unknown to registry"),
                Kind::Manifest | Kind::Referrers => {
                    (ErrorCode::ManifestUnknown, "manifest unknown")
                }
                Kind::Tags => (
                    ErrorCode::NameUnknown,
                    "repository name not known to registry",
                ),
            };
            OciError::new(code, msg)
        }
        // Never UNAUTHORIZED: that would ask the client to log in to ferry.
        UpstreamError::Denied { .. } => {
            OciError::new(ErrorCode::Denied, "the upstream registry denied access")
                .with_detail(detail)
        }
        UpstreamError::Busy => OciError::new(
            ErrorCode::TooManyRequests,
            "too many requests to the upstream in flight; try again shortly",
        )
        .with_retry_after(1),
        UpstreamError::TooManyRequests { retry_after } => {
            OciError::new(ErrorCode::TooManyRequests, "upstream rate limit reached")
                .with_retry_after(retry_after.unwrap_or(10))
        }
        UpstreamError::Status { .. }
        | UpstreamError::Unreachable(_)
        | UpstreamError::Protocol(_) => {
            OciError::new(ErrorCode::Unavailable, "upstream registry unavailable")
                .with_detail(detail)
                .with_retry_after(5)
        }
    }
}
