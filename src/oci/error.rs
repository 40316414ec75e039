//! OCI error codes and the error body, registered once with their HTTP status
//! (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes>).

use serde::Serialize;

/// Every error code ferry answers with. The status of each is decided here and
/// nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    ManifestUnknown,
    NameUnknown,
    NameInvalid,
    TagInvalid,
    DigestInvalid,
    ManifestInvalid,
    /// A malformed or multi-part Range header.
    RangeInvalid,
    /// A well-formed Range that lies outside the blob.
    RangeNotSatisfiable,
    /// A tag-list `n` that is not a number (distribution's code).
    PaginationNumberInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    /// A request body over the configured limit (413).
    SizeInvalid,
    TooManyRequests,
    Unavailable,
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::TagInvalid => "TAG_INVALID",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::RangeInvalid | Self::RangeNotSatisfiable => "RANGE_INVALID",
            Self::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported => "UNSUPPORTED",
            Self::SizeInvalid => "SIZE_INVALID",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::Unavailable => "UNAVAILABLE",
            Self::Unknown => "UNKNOWN",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::BlobUnknown | Self::ManifestUnknown | Self::NameUnknown => 404,
            Self::NameInvalid
            | Self::TagInvalid
            | Self::DigestInvalid
            | Self::ManifestInvalid
            | Self::RangeInvalid
            | Self::PaginationNumberInvalid => 400,
            Self::RangeNotSatisfiable => 416,
            Self::Unauthorized => 401,
            Self::Denied => 403,
            Self::Unsupported => 405,
            Self::SizeInvalid => 413,
            Self::TooManyRequests => 429,
            Self::Unavailable => 503,
            Self::Unknown => 500,
        }
    }
}

/// One error as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciError {
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<String>,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
    /// Blob size for `Content-Range: bytes */N` on 416.
    pub blob_size: Option<u64>,
    /// `WWW-Authenticate` for a 401 from this node's own access control.
    pub challenge: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

impl OciError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            detail: None,
            retry_after: None,
            blob_size: None,
            challenge: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// `{"errors":[{"code","message","detail"}]}`.
    pub fn body_json(&self) -> String {
        let body = Body {
            errors: [Entry {
                code: self.code.as_str(),
                message: &self.message,
                detail: self.detail.as_deref(),
            }],
        };
        serde_json::to_string(&body)
            .unwrap_or_else(|_| r#"{"errors":[{"code":"UNKNOWN","message":"error"}]}"#.to_owned())
    }
}

impl std::fmt::Display for OciError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for OciError {}

impl From<super::name::NameError> for OciError {
    fn from(e: super::name::NameError) -> Self {
        OciError::new(ErrorCode::NameInvalid, "invalid repository name").with_detail(e.to_string())
    }
}

impl From<super::DigestError> for OciError {
    fn from(e: super::DigestError) -> Self {
        OciError::new(ErrorCode::DigestInvalid, "invalid digest").with_detail(e.to_string())
    }
}

impl From<super::name::ReferenceError> for OciError {
    fn from(e: super::name::ReferenceError) -> Self {
        match e {
            super::name::ReferenceError::BadDigest(d) => d.into(),
            super::name::ReferenceError::BadTag(_) => {
                OciError::new(ErrorCode::TagInvalid, "invalid tag").with_detail(e.to_string())
            }
        }
    }
}

impl From<super::RangeError> for OciError {
    fn from(e: super::RangeError) -> Self {
        match e {
            super::RangeError::Malformed | super::RangeError::Multiple => {
                OciError::new(ErrorCode::RangeInvalid, "invalid Range header")
                    .with_detail(e.to_string())
            }
            super::RangeError::Unsatisfiable(size) => {
                let mut err = OciError::new(
                    ErrorCode::RangeNotSatisfiable,
                    "requested range not satisfiable",
                );
                err.blob_size = Some(size);
                err
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let e = OciError::new(ErrorCode::BlobUnknown, "blob unknown").with_detail("sha256:x");
        let v: serde_json::Value = serde_json::from_str(&e.body_json()).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["detail"], "sha256:x");
        assert_eq!(ErrorCode::TooManyRequests.status(), 429);
    }
}
