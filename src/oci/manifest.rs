//! Manifest media types and the little of manifest parsing a mirror needs.

/// Distribution's own limit; also bounds the memory one manifest fetch can take.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

pub struct MediaTypes;

impl MediaTypes {
    pub const OCI_MANIFEST: &'static str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &'static str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &'static str =
        "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &'static str =
        "application/vnd.docker.distribution.manifest.list.v2+json";

    /// Whether a client's `Accept` header admits `media_type`. No header, or a
    /// wildcard, admits everything: curl and older clients send none.
    pub fn accepts(accept: &[&str], media_type: &str) -> bool {
        let mut any = false;
        for value in accept {
            for item in value.split(',') {
                let mt = item.split(';').next().unwrap_or("").trim();
                if mt.is_empty() {
                    continue;
                }
                any = true;
                if mt == "*/*" || mt == "application/*" || mt.eq_ignore_ascii_case(media_type) {
                    return true;
                }
            }
        }
        !any
    }
}

/// What ferry asks upstreams for: every manifest kind, so one cached copy per tag
/// serves every client.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json;q=0.9, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, \
application/vnd.docker.distribution.manifest.v1+json;q=0.5";

/// The media type a manifest declares, or that its shape implies (OCI manifests
/// may omit `mediaType`). `None` when the bytes are not shaped like a manifest, so
/// that, say, an image config blob is never served as one.
pub fn media_type_of(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let obj = value.as_object()?;
    let schema = obj.get("schemaVersion").and_then(|v| v.as_u64())?;
    if let Some(mt) = obj.get("mediaType").and_then(|v| v.as_str()) {
        return Some(mt.to_owned());
    }
    let mt = if schema == 1 && obj.contains_key("fsLayers") {
        "application/vnd.docker.distribution.manifest.v1+prettyjws"
    } else if schema == 2 && obj.get("manifests").is_some_and(|m| m.is_array()) {
        MediaTypes::OCI_INDEX
    } else if schema == 2 && obj.get("config").is_some_and(|c| c.is_object()) {
        MediaTypes::OCI_MANIFEST
    } else {
        return None;
    };
    Some(mt.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matching() {
        let oci = MediaTypes::OCI_MANIFEST;
        assert!(MediaTypes::accepts(&[], oci));
        assert!(MediaTypes::accepts(&["*/*"], oci));
        assert!(MediaTypes::accepts(&[MANIFEST_ACCEPT], oci));
        assert!(MediaTypes::accepts(
            &[
                "text/html",
                "application/vnd.oci.image.manifest.v1+json;q=0.5"
            ],
            oci
        ));
        assert!(!MediaTypes::accepts(
            &[MediaTypes::DOCKER_MANIFEST],
            MediaTypes::OCI_INDEX
        ));
    }

    #[test]
    fn media_type_detection() {
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"mediaType":"x/y"}"#).as_deref(),
            Some("x/y")
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some(MediaTypes::OCI_INDEX)
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"config":{}}"#).as_deref(),
            Some(MediaTypes::OCI_MANIFEST)
        );
        assert_eq!(media_type_of(b"[1]"), None);
        // An image config is JSON but not a manifest.
        assert_eq!(
            media_type_of(br#"{"architecture":"amd64","os":"linux","rootfs":{}}"#),
            None
        );
        assert_eq!(media_type_of(br#"{"schemaVersion":2}"#), None);
        assert_eq!(media_type_of(b"not json"), None);
    }
}
