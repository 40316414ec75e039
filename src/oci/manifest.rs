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

/// A content descriptor: what a manifest says about one thing it points at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: ferry_storage::Digest,
    pub size: u64,
}

/// What a manifest points at: further manifests (an index's entries) and blobs (a
/// manifest's config and layers).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Children {
    pub manifests: Vec<Descriptor>,
    pub blobs: Vec<Descriptor>,
    /// What this manifest refers to, when it is a referrer (a signature, an SBOM).
    pub subject: Option<Descriptor>,
}

#[derive(serde::Deserialize)]
struct ManifestShape {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u64>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    /// The short-lived OCI artifact manifest's list.
    #[serde(default)]
    blobs: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    subject: Option<Descriptor>,
}

/// Parses what a manifest or index refers to. Schema 1 manifests (long deprecated,
/// and signed over their own bytes) are refused.
pub fn children(bytes: &[u8]) -> Result<Children, String> {
    let shape: ManifestShape =
        serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
    match shape.schema_version {
        Some(2) => {}
        Some(1) => return Err("Docker schema 1 manifests are not supported".into()),
        other => return Err(format!("unsupported schemaVersion {other:?}")),
    }
    let mut blobs: Vec<Descriptor> = shape.config.into_iter().collect();
    blobs.extend(shape.layers);
    blobs.extend(shape.blobs);
    Ok(Children {
        manifests: shape.manifests,
        blobs,
        subject: shape.subject,
    })
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

    #[test]
    fn children_of_manifests_and_indexes() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":10}}]}}"#,
            MediaTypes::OCI_MANIFEST,
            d('a')
        );
        let c = children(index.as_bytes()).unwrap();
        assert_eq!(c.manifests.len(), 1);
        assert_eq!(c.manifests[0].digest.to_string(), d('a'));
        assert!(c.blobs.is_empty());
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{}","size":2}},"layers":[{{"mediaType":"l","digest":"{}","size":3}}]}}"#,
            d('b'),
            d('c')
        );
        let c = children(manifest.as_bytes()).unwrap();
        let sizes: Vec<u64> = c.blobs.iter().map(|b| b.size).collect();
        assert_eq!(sizes, [2, 3]);
        assert!(children(br#"{"schemaVersion":1,"fsLayers":[]}"#)
            .unwrap_err()
            .contains("schema 1"));
        assert!(
            children(br#"{"schemaVersion":2,"layers":[{"digest":"md5:x","size":1}]}"#).is_err()
        );
        assert!(children(b"[]").is_err());
        // An image config is JSON but names nothing.
        assert!(children(br#"{"architecture":"amd64"}"#).is_err());
    }
}
