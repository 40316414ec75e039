//! Parses a `/v2/...` path into what it asks for. Repository names can have any
//! number of components, so the path is read from the right: the last
//! `/manifests/`, `/blobs/`, `/tags/list` or `/referrers/` decides.

use crate::oci::{Digest, OciError, Reference};

#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`: API version check.
    Base,
    Manifest {
        name: String,
        reference: Reference,
    },
    Blob {
        name: String,
        digest: Digest,
    },
    Tags {
        name: String,
    },
    Referrers {
        name: String,
        digest: Digest,
    },
    /// `/v2/<name>/blobs/uploads/...`: push, which a mirror does not take.
    Upload,
}

#[derive(Debug, PartialEq, Eq)]
pub enum EndpointError {
    NotFound,
    Bad(OciError),
}

impl Endpoint {
    /// `rest` is the path after `/v2/`.
    pub fn parse(rest: &str) -> Result<Self, EndpointError> {
        let rest = rest.trim_start_matches('/');
        if rest.is_empty() {
            return Ok(Self::Base);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Ok(Self::Tags {
                name: name.to_owned(),
            });
        }
        // Uploads first: "/blobs/uploads/" would otherwise parse as a blob digest.
        if let Some((_, tail)) = rest.rsplit_once("/blobs/") {
            if tail == "uploads" || tail.starts_with("uploads/") {
                return Ok(Self::Upload);
            }
        }
        // The reference or digest is the last segment; the separator ends right
        // before it.
        let split = rest.rfind('/').ok_or(EndpointError::NotFound)?;
        let (head, last) = (&rest[..=split], &rest[split + 1..]);
        let (name, kind) = ["/manifests/", "/blobs/", "/referrers/"]
            .iter()
            .find_map(|sep| head.strip_suffix(sep).map(|n| (n, *sep)))
            .ok_or(EndpointError::NotFound)?;
        if name.is_empty() || last.is_empty() {
            return Err(EndpointError::NotFound);
        }
        let name = name.to_owned();
        match kind {
            "/manifests/" => Ok(Self::Manifest {
                name,
                reference: Reference::parse(last).map_err(|e| EndpointError::Bad(e.into()))?,
            }),
            "/blobs/" => Ok(Self::Blob {
                name,
                digest: Digest::parse(last).map_err(|e| EndpointError::Bad(e.into()))?,
            }),
            _ => Ok(Self::Referrers {
                name,
                digest: Digest::parse(last).map_err(|e| EndpointError::Bad(e.into()))?,
            }),
        }
    }

    /// Metric label.
    pub fn route_label(&self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Manifest { .. } => "manifest",
            Self::Blob { .. } => "blob",
            Self::Tags { .. } => "tags",
            Self::Referrers { .. } => "referrers",
            Self::Upload => "upload",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{ErrorCode, Tag};

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn table() {
        let dg = |c| Digest::parse(&d(c)).unwrap();
        let tag = |t: &str| Reference::Tag(Tag::parse(t).unwrap());
        let ok: Vec<(String, Endpoint)> = vec![
            ("".into(), Endpoint::Base),
            ("/".into(), Endpoint::Base),
            (
                "a/manifests/latest".into(),
                Endpoint::Manifest {
                    name: "a".into(),
                    reference: tag("latest"),
                },
            ),
            (
                "a/b/c/d/manifests/v1".into(),
                Endpoint::Manifest {
                    name: "a/b/c/d".into(),
                    reference: tag("v1"),
                },
            ),
            (
                "manifests/manifests/v1".into(),
                Endpoint::Manifest {
                    name: "manifests".into(),
                    reference: tag("v1"),
                },
            ),
            (
                "a/blobs/b/manifests/v1".into(),
                Endpoint::Manifest {
                    name: "a/blobs/b".into(),
                    reference: tag("v1"),
                },
            ),
            (
                format!("a/manifests/{}", d('a')),
                Endpoint::Manifest {
                    name: "a".into(),
                    reference: Reference::Digest(dg('a')),
                },
            ),
            (
                format!("x/y/blobs/{}", d('b')),
                Endpoint::Blob {
                    name: "x/y".into(),
                    digest: dg('b'),
                },
            ),
            (
                format!("x/manifests/blobs/{}", d('b')),
                Endpoint::Blob {
                    name: "x/manifests".into(),
                    digest: dg('b'),
                },
            ),
            (
                "a/b/tags/list".into(),
                Endpoint::Tags { name: "a/b".into() },
            ),
            (
                format!("a/referrers/{}", d('c')),
                Endpoint::Referrers {
                    name: "a".into(),
                    digest: dg('c'),
                },
            ),
            ("a/blobs/uploads/".into(), Endpoint::Upload),
            ("a/blobs/uploads/1234-abcd".into(), Endpoint::Upload),
        ];
        for (path, want) in ok {
            assert_eq!(Endpoint::parse(&path), Ok(want), "{path}");
        }
        for path in [
            "a",
            "a/b",
            "a/manifests/",
            "/manifests/latest",
            "a/tags",
            "a/manifests/x/y",
            "a/blobs/",
        ] {
            assert_eq!(
                Endpoint::parse(path),
                Err(EndpointError::NotFound),
                "{path}"
            );
        }
        let bad: &[(&str, ErrorCode)] = &[
            ("a/blobs/sha256:xyz", ErrorCode::DigestInvalid),
            ("a/blobs/latest", ErrorCode::DigestInvalid),
            ("a/manifests/sha256:12", ErrorCode::DigestInvalid),
            ("a/manifests/-bad", ErrorCode::TagInvalid),
            ("a/referrers/nope", ErrorCode::DigestInvalid),
        ];
        for (path, code) in bad {
            match Endpoint::parse(path) {
                Err(EndpointError::Bad(e)) => assert_eq!(e.code, *code, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
    }
}
