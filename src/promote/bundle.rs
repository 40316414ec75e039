//! Air-gap bundles: a standard OCI image layout in a tar file (what skopeo calls
//! `oci-archive:`), written by `ferry export` and read back by `ferry import`.
//!
//! `index.json` lists one entry per promoted tag (and one per untagged digest or
//! referrer), each annotated with `org.opencontainers.image.ref.name` =
//! `<image>:<tag>` for other tools, and with the image name, tag and source registry
//! under `io.ferry.*` so an import files everything where a sync would have.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferry_storage::store::ByteStream;
use futures_util::StreamExt as _;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

use super::{
    Closure, ImageSpec, ManifestItem, PromoteError, Promotion, RegistryRef, Sink, TagTarget,
};
use crate::oci::{children, Descriptor, Digest, RepoName, Tag};

pub const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANN_IMAGE: &str = "io.ferry.image";
pub const ANN_TAG: &str = "io.ferry.tag";
pub const ANN_REGISTRY: &str = "io.ferry.registry";

type Builder = tar::Builder<std::fs::File>;

/// Writes a bundle: blobs as they arrive, `index.json` at the end.
pub struct ArchiveSink {
    out: PathBuf,
    /// Where the tar is written until it is complete.
    partial: PathBuf,
    /// Blobs are staged here while they download, then appended.
    staging: tempfile::TempDir,
    builder: Arc<Mutex<Option<Builder>>>,
    written: Mutex<HashSet<Digest>>,
    entries: Mutex<Vec<serde_json::Value>>,
    registry: String,
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_mtime(0);
    h.set_cksum();
    h
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

impl ArchiveSink {
    pub fn create(out: &Path, src: &RegistryRef) -> Result<Self, PromoteError> {
        let dir = out
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = out
            .file_name()
            .ok_or_else(|| PromoteError::Usage(format!("{}: not a file name", out.display())))?;
        let partial = dir.join(format!(".{}.partial", name.to_string_lossy()));
        let file = std::fs::File::create(&partial)
            .map_err(|e| PromoteError::Usage(format!("{}: {e}", partial.display())))?;
        let mut builder = tar::Builder::new(file);
        for d in ["blobs/", "blobs/sha256/"] {
            builder.append_data(
                &mut header(0, 0o755, tar::EntryType::Directory),
                d,
                std::io::empty(),
            )?;
        }
        Ok(Self {
            out: out.to_owned(),
            partial,
            staging: tempfile::Builder::new()
                .prefix(".ferry-export")
                .tempdir_in(dir)?,
            builder: Arc::new(Mutex::new(Some(builder))),
            written: Mutex::new(HashSet::new()),
            entries: Mutex::new(Vec::new()),
            registry: src.name.clone(),
        })
    }

    async fn append(&self, name: String, data: AppendData) -> Result<(), PromoteError> {
        let builder = self.builder.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut guard = builder.lock().unwrap_or_else(|p| p.into_inner());
            let b = guard
                .as_mut()
                .ok_or_else(|| std::io::Error::other("bundle already closed"))?;
            match data {
                AppendData::Bytes(bytes) => b.append_data(
                    &mut header(bytes.len() as u64, 0o644, tar::EntryType::Regular),
                    &name,
                    bytes.as_slice(),
                ),
                AppendData::File(path, size) => {
                    let f = std::fs::File::open(&path)?;
                    b.append_data(&mut header(size, 0o644, tar::EntryType::Regular), &name, f)?;
                    std::fs::remove_file(&path)
                }
            }
        })
        .await
        .map_err(|e| PromoteError::Usage(e.to_string()))??;
        Ok(())
    }

    fn entry(&self, item: &Descriptor, image: &RepoName, tag: Option<&Tag>) {
        let mut ann = serde_json::Map::new();
        ann.insert(ANN_IMAGE.into(), json!(image.as_str()));
        ann.insert(ANN_REGISTRY.into(), json!(self.registry));
        if let Some(t) = tag {
            ann.insert(ANN_REF_NAME.into(), json!(format!("{image}:{t}")));
            ann.insert(ANN_TAG.into(), json!(t.as_str()));
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(json!({
                "mediaType": item.media_type,
                "digest": item.digest,
                "size": item.size,
                "annotations": ann,
            }));
    }

    /// Moves the finished bundle to its name (after a run without failures).
    pub fn publish(&self) -> Result<(), PromoteError> {
        std::fs::rename(&self.partial, &self.out)?;
        Ok(())
    }

    /// Removes an unfinished or failed bundle.
    pub fn abandon(&self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

enum AppendData {
    Bytes(Vec<u8>),
    File(PathBuf, u64),
}

#[async_trait]
impl Sink for ArchiveSink {
    fn describe(&self) -> String {
        format!("bundle {}", self.out.display())
    }

    async fn has_blob(&self, _image: &RepoName, blob: &Descriptor) -> Result<bool, PromoteError> {
        Ok(self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&blob.digest))
    }

    async fn put_blob(
        &self,
        _image: &RepoName,
        blob: &Descriptor,
        mut body: ByteStream,
    ) -> Result<(), PromoteError> {
        let path = self.staging.path().join(blob.digest.hex());
        let mut file = tokio::fs::File::create(&path).await?;
        let copied = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| PromoteError::Corrupt(e.to_string()))?;
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            Ok::<_, PromoteError>(())
        }
        .await;
        drop(file);
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        // The body verified itself as it ended: the staged file is the blob.
        let first = self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(blob.digest.clone());
        if first {
            self.append(blob_name(&blob.digest), AppendData::File(path, blob.size))
                .await?;
        }
        Ok(())
    }

    async fn has_manifest(&self, _image: &RepoName, digest: &Digest) -> Result<bool, PromoteError> {
        Ok(self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(digest))
    }

    async fn put_manifest(
        &self,
        _image: &RepoName,
        item: &ManifestItem,
    ) -> Result<(), PromoteError> {
        let first = self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(item.digest.clone());
        if first {
            self.append(
                blob_name(&item.digest),
                AppendData::Bytes(item.bytes.to_vec()),
            )
            .await?;
        }
        Ok(())
    }

    async fn tag(&self, _image: &RepoName, _tag: &Tag) -> Result<Option<Digest>, PromoteError> {
        Ok(None)
    }

    async fn set_tag(
        &self,
        image: &RepoName,
        tag: &Tag,
        item: &ManifestItem,
    ) -> Result<(), PromoteError> {
        self.entry(&item.descriptor(), image, Some(tag));
        Ok(())
    }

    async fn complete(&self, closure: &Closure) -> Result<u64, PromoteError> {
        // Untagged roots (a digest promoted without tags, a referrer found through
        // the API) get an entry too, or an import would not know of them.
        let mut child = HashSet::new();
        for m in &closure.manifests {
            if let Ok(kids) = children(&m.bytes) {
                child.extend(kids.manifests.into_iter().map(|d| d.digest));
            }
        }
        let tagged: HashSet<&Digest> = closure.tags.iter().map(|t| &t.digest).collect();
        for m in &closure.manifests {
            if !child.contains(&m.digest) && !tagged.contains(&m.digest) {
                self.entry(&m.descriptor(), &closure.image, None);
            }
        }
        Ok(0)
    }

    async fn discard(&self, _written: &[Digest]) -> usize {
        // Already in the tar; the failed run abandons the whole bundle.
        0
    }

    async fn prune(
        &self,
        _keep: &BTreeMap<RepoName, Vec<TagTarget>>,
        _keep_digests: &HashSet<Digest>,
        _dry_run: bool,
    ) -> Result<Vec<String>, PromoteError> {
        Ok(Vec::new())
    }

    async fn finish(&self) -> Result<(), PromoteError> {
        let manifests =
            std::mem::take(&mut *self.entries.lock().unwrap_or_else(|p| p.into_inner()));
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let index = serde_json::to_vec_pretty(&index).map_err(std::io::Error::other)?;
        self.append(
            "oci-layout".into(),
            AppendData::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        )
        .await?;
        self.append("index.json".into(), AppendData::Bytes(index))
            .await?;
        let builder = self.builder.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let b = builder
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .ok_or_else(|| std::io::Error::other("bundle already closed"))?;
            let mut file = b.into_inner()?;
            file.flush()?;
            file.sync_all()
        })
        .await
        .map_err(|e| PromoteError::Usage(e.to_string()))??;
        Ok(())
    }
}

// ---- reading a bundle -----------------------------------------------------------------

/// Unpacks a bundle's layout into `into`. Only `oci-layout`, `index.json` and
/// `blobs/<alg>/<hex>` are written; links, devices and any path that would leave
/// `into` are refused, other files are skipped.
pub fn unpack(bundle: &Path, into: &Path) -> Result<usize, PromoteError> {
    let bad = |m: String| PromoteError::Corrupt(format!("{}: {m}", bundle.display()));
    let file = std::fs::File::open(bundle)
        .map_err(|e| PromoteError::Usage(format!("{}: {e}", bundle.display())))?;
    let mut archive = tar::Archive::new(file);
    let mut files = 0;
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let mut parts = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                Component::CurDir => {}
                _ => return Err(bad(format!("entry {} leaves the bundle", path.display()))),
            }
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!(
                "entry {} is not a regular file",
                path.display()
            )));
        }
        let wanted = match parts.as_slice() {
            [f] if f == "oci-layout" || f == "index.json" => true,
            [b, alg, hex] if b == "blobs" => alg == "sha256" && Digest::from_hex(hex).is_ok(),
            _ => false,
        };
        if !wanted {
            tracing::warn!(entry = %path.display(), "skipping a file that is not part of an OCI layout");
            continue;
        }
        let dest = parts.iter().fold(into.to_path_buf(), |p, c| p.join(c));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&dest)?;
        std::io::copy(&mut entry, &mut out)?;
        files += 1;
    }
    if !into.join("index.json").exists() {
        return Err(bad("has no index.json: not an OCI image layout".into()));
    }
    Ok(files)
}

#[derive(serde::Deserialize)]
struct LayoutIndex {
    #[serde(default)]
    manifests: Vec<LayoutEntry>,
}

#[derive(serde::Deserialize)]
struct LayoutEntry {
    digest: Digest,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The promotion a bundle describes: its images, digests and tags, from the source
/// registry it was exported from (`registry` overrides, or names one when the
/// layout was not written by ferry).
pub fn promotion(
    dir: &Path,
    label: &str,
    registry: Option<&str>,
) -> Result<Promotion, PromoteError> {
    let bad = |m: String| PromoteError::Corrupt(format!("{label}: {m}"));
    let text = std::fs::read(dir.join("index.json"))?;
    let index: LayoutIndex =
        serde_json::from_slice(&text).map_err(|e| bad(format!("index.json: {e}")))?;
    let mut src: Option<String> = registry.map(str::to_owned);
    let mut images: BTreeMap<RepoName, BTreeMap<Digest, BTreeSet<Tag>>> = BTreeMap::new();
    for (i, e) in index.manifests.iter().enumerate() {
        let ann = &e.annotations;
        let (name, tag) = match (ann.get(ANN_IMAGE), ann.get(ANN_REF_NAME)) {
            (Some(image), _) => (image.clone(), ann.get(ANN_TAG).cloned()),
            (None, Some(r)) => match r.rsplit_once(':') {
                Some((n, t)) if !n.is_empty() => (n.to_owned(), Some(t.to_owned())),
                _ => {
                    return Err(bad(format!(
                        "index.json manifests[{i}]: ref name {r:?} is not <image>:<tag>"
                    )))
                }
            },
            (None, None) => {
                return Err(bad(format!(
                    "index.json manifests[{i}] names no image (no {ANN_IMAGE} or {ANN_REF_NAME} annotation)"
                )))
            }
        };
        if src.is_none() {
            src = ann.get(ANN_REGISTRY).cloned();
        }
        let name = RepoName::parse(&name)
            .map_err(|e| bad(format!("index.json manifests[{i}]: image {name:?}: {e}")))?;
        let tags = images
            .entry(name)
            .or_default()
            .entry(e.digest.clone())
            .or_default();
        if let Some(t) = tag {
            tags.insert(
                Tag::parse(&t)
                    .ok_or_else(|| bad(format!("index.json manifests[{i}]: {t:?} is not a tag")))?,
            );
        }
    }
    let src = src.ok_or_else(|| {
        bad("does not say which registry it came from; give --registry HOST[/PATH]".into())
    })?;
    let src = RegistryRef::parse(&src).map_err(|e| bad(format!("registry {src:?}: {e}")))?;
    Ok(Promotion {
        source_file: label.to_owned(),
        src,
        destinations: Vec::new(),
        images: images
            .into_iter()
            .map(|(name, dmap)| ImageSpec {
                name,
                dmap,
                referrers: false,
            })
            .collect(),
    })
}
