//! Promotion, pre-seeding and air-gap bundles: `ferry sync`, `ferry export`,
//! `ferry import` and `ferry audit` (DESIGN §6).
//!
//! Every command is the same pipeline: a [`Source`] (a registry, or an unpacked
//! bundle) is walked into a [`Closure`] per promoted digest (every manifest of a
//! multi-arch index, every blob, and referrers when asked), each [`Sink`] (a node's
//! store, a registry, a bundle being written) is asked what it lacks, the plan is
//! checked for tag moves, and only what is missing is copied, each blob through a
//! digest check. Owns no HTTP serving; uses the upstream client, the config and the
//! storage crate.

pub mod audit;
pub mod bundle;
pub mod commands;
pub mod manifest;
pub mod node;
pub mod registry;
pub mod source;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_storage::store::ByteStream;
use ferry_storage::{IndexError, StoreError, Verifier};
use futures_util::{Stream, StreamExt as _};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::admin::human;

use crate::oci::{children, media_type_of, Descriptor, Digest, RepoName, Tag};
pub use manifest::{ImageSpec, Promotion, RegistryRef};

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("{file}{}: {message}", key_suffix(.key))]
    Manifest {
        file: String,
        key: String,
        message: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("source {0}")]
    Source(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("destination {0}")]
    Dest(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Index(#[from] IndexError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
}

fn key_suffix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(": {key}")
    }
}

/// A manifest with its bytes, already checked against its digest.
#[derive(Debug, Clone)]
pub struct ManifestItem {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

impl ManifestItem {
    /// Checks `bytes` against `digest` and reads the media type.
    pub fn verified(
        digest: &Digest,
        bytes: Bytes,
        declared: Option<&str>,
    ) -> Result<Self, PromoteError> {
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(PromoteError::Corrupt(format!(
                "manifest {digest}: the source's bytes hash to {actual}"
            )));
        }
        let media_type = media_type_of(&bytes)
            .or_else(|| declared.map(str::to_owned))
            .ok_or_else(|| PromoteError::Corrupt(format!("{digest} is not a manifest")))?;
        Ok(Self {
            digest: digest.clone(),
            media_type,
            bytes,
        })
    }

    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
        }
    }
}

/// A tag a destination should carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTarget {
    pub tag: Tag,
    pub digest: Digest,
    /// Legacy referrer tags (`sha256-<hex>.sig`) follow the source: cosign rewrites
    /// them when it adds a signature. Declared tags never move.
    pub movable: bool,
}

/// Everything one promoted digest brings, in the order it is copied.
#[derive(Debug, Clone)]
pub struct Closure {
    pub image: RepoName,
    pub root: Digest,
    /// Children before parents (so no destination ever holds a manifest whose
    /// content it lacks), then referrers.
    pub manifests: Vec<ManifestItem>,
    pub blobs: Vec<Descriptor>,
    pub tags: Vec<TagTarget>,
}

impl Closure {
    pub fn digests(&self) -> impl Iterator<Item = &Digest> {
        self.manifests
            .iter()
            .map(|m| &m.digest)
            .chain(self.blobs.iter().map(|b| &b.digest))
    }
}

/// Where content comes from.
#[async_trait]
pub trait Source: Send + Sync {
    fn describe(&self) -> String;
    /// A manifest by digest or tag, with the media type the source declared;
    /// `None` when the source does not have it.
    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &str,
    ) -> Result<Option<(Bytes, Option<String>)>, PromoteError>;
    async fn blob(&self, repo: &RepoName, digest: &Digest) -> Result<ByteStream, PromoteError>;
    /// Manifests whose `subject` is `digest` (the OCI referrers API).
    async fn referrers(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, PromoteError>;
}

/// Where content goes. Each sink maps an image name to its own repository.
#[async_trait]
pub trait Sink: Send + Sync {
    fn describe(&self) -> String;
    async fn has_blob(&self, image: &RepoName, blob: &Descriptor) -> Result<bool, PromoteError>;
    /// Stores a blob from a stream that already fails on a digest mismatch.
    async fn put_blob(
        &self,
        image: &RepoName,
        blob: &Descriptor,
        body: ByteStream,
    ) -> Result<(), PromoteError>;
    async fn has_manifest(&self, image: &RepoName, digest: &Digest) -> Result<bool, PromoteError>;
    async fn put_manifest(&self, image: &RepoName, item: &ManifestItem)
        -> Result<(), PromoteError>;
    /// What an existing tag points at (for a node: only promoted, immutable tags).
    async fn tag(&self, image: &RepoName, tag: &Tag) -> Result<Option<Digest>, PromoteError>;
    async fn set_tag(
        &self,
        image: &RepoName,
        tag: &Tag,
        item: &ManifestItem,
    ) -> Result<(), PromoteError>;
    /// Called once an image's content and tags are all in: pins it (node) or lists
    /// it (bundle). Returns how many digests were newly pinned.
    async fn complete(&self, closure: &Closure) -> Result<u64, PromoteError>;
    /// Removes what this run wrote for an image that then failed, where the sink
    /// can; returns how many digests it removed.
    async fn discard(&self, written: &[Digest]) -> usize;
    /// With `--prune`: removes promoted tags of the manifest's images that `keep`
    /// does not list, and the content only they held. Returns one line per change.
    async fn prune(
        &self,
        keep: &BTreeMap<RepoName, Vec<TagTarget>>,
        keep_digests: &HashSet<Digest>,
        dry_run: bool,
    ) -> Result<Vec<String>, PromoteError>;
    /// Makes everything durable (flushes an index, closes a bundle).
    async fn finish(&self) -> Result<(), PromoteError>;
}

// ---- walking a source ---------------------------------------------------------------

/// The legacy tag scheme cosign and others use for a digest's referrers.
const LEGACY_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// Whether a tag is a legacy referrer tag (`sha256-<64 hex>.sig|.att|.sbom`).
pub fn is_legacy_referrer_tag(tag: &str) -> bool {
    let Some((hex, suffix)) = tag
        .strip_prefix("sha256-")
        .and_then(|rest| rest.split_once('.'))
    else {
        return false;
    };
    hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && LEGACY_SUFFIXES.contains(&suffix)
}

/// Bounds a walk: no real image has more manifests than this.
const MAX_MANIFESTS: usize = 10_000;

struct Walk<'a> {
    src: &'a dyn Source,
    repo: &'a RepoName,
    seen: HashSet<Digest>,
    blob_seen: HashSet<Digest>,
    manifests: Vec<ManifestItem>,
    blobs: Vec<Descriptor>,
}

impl Walk<'_> {
    async fn fetch(&self, digest: &Digest) -> Result<ManifestItem, PromoteError> {
        let (bytes, declared) = self
            .src
            .manifest(self.repo, &digest.to_string())
            .await?
            .ok_or_else(|| {
                PromoteError::Source(format!(
                    "{}: {}@{digest} not found",
                    self.src.describe(),
                    self.repo
                ))
            })?;
        ManifestItem::verified(digest, bytes, declared.as_deref())
    }

    /// Adds `root` and everything under it, children first.
    async fn add(&mut self, root: &Digest) -> Result<(), PromoteError> {
        let mut stack = vec![(root.clone(), None::<ManifestItem>)];
        while let Some((digest, fetched)) = stack.pop() {
            if let Some(item) = fetched {
                self.manifests.push(item);
                continue;
            }
            if !self.seen.insert(digest.clone()) {
                continue;
            }
            if self.seen.len() > MAX_MANIFESTS {
                return Err(PromoteError::Source(format!(
                    "{}: more than {MAX_MANIFESTS} manifests under {root}",
                    self.repo
                )));
            }
            let item = self.fetch(&digest).await?;
            let kids = children(&item.bytes)
                .map_err(|e| PromoteError::Source(format!("{}@{digest}: {e}", self.repo)))?;
            for blob in kids.blobs {
                if self.blob_seen.insert(blob.digest.clone()) {
                    self.blobs.push(blob);
                }
            }
            stack.push((digest, Some(item)));
            for m in kids.manifests.into_iter().rev() {
                stack.push((m.digest, None));
            }
        }
        Ok(())
    }
}

/// Resolves one promoted digest into everything it brings.
pub async fn closure(
    src: &dyn Source,
    src_repo: &RepoName,
    image: &ImageSpec,
    root: &Digest,
) -> Result<Closure, PromoteError> {
    let mut walk = Walk {
        src,
        repo: src_repo,
        seen: HashSet::new(),
        blob_seen: HashSet::new(),
        manifests: Vec::new(),
        blobs: Vec::new(),
    };
    walk.add(root).await?;
    let mut tags: Vec<TagTarget> = image
        .dmap
        .get(root)
        .into_iter()
        .flatten()
        .map(|tag| TagTarget {
            tag: tag.clone(),
            digest: root.clone(),
            movable: is_legacy_referrer_tag(tag.as_str()),
        })
        .collect();
    if image.referrers {
        // Referrers of every manifest of the image, and theirs (a signature of an
        // attestation), two levels down.
        let mut subjects: Vec<Digest> = walk.manifests.iter().map(|m| m.digest.clone()).collect();
        for _level in 0..2 {
            let mut found = Vec::new();
            for subject in &subjects {
                for r in src.referrers(src_repo, subject).await? {
                    if !walk.seen.contains(&r.digest) {
                        walk.add(&r.digest).await?;
                        found.push(r.digest);
                    }
                }
                for suffix in LEGACY_SUFFIXES {
                    let tag = format!("sha256-{}.{suffix}", subject.hex());
                    let Some((bytes, declared)) = src.manifest(src_repo, &tag).await? else {
                        continue;
                    };
                    let digest = Digest::of(&bytes);
                    let item = ManifestItem::verified(&digest, bytes, declared.as_deref())?;
                    if !walk.seen.contains(&digest) {
                        walk.add(&item.digest).await?;
                        found.push(digest.clone());
                    }
                    if let Some(tag) = Tag::parse(&tag) {
                        tags.push(TagTarget {
                            tag,
                            digest,
                            movable: true,
                        });
                    }
                }
            }
            subjects = found;
        }
    }
    Ok(Closure {
        image: image.name.clone(),
        root: root.clone(),
        manifests: walk.manifests,
        blobs: walk.blobs,
        tags,
    })
}

// ---- planning ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagAction {
    Create,
    Keep,
    /// Would move an existing tag from `from`: refused unless `--allow-tag-move`
    /// (or the tag is a legacy referrer tag).
    Move {
        from: Digest,
    },
}

/// What one sink lacks of one closure.
#[derive(Debug, Clone)]
pub struct Step {
    pub closure: usize,
    pub blobs: Vec<Descriptor>,
    pub manifests: Vec<usize>,
    pub tags: Vec<(TagTarget, TagAction)>,
}

impl Step {
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
    fn is_noop(&self) -> bool {
        self.blobs.is_empty()
            && self.manifests.is_empty()
            && self.tags.iter().all(|(_, a)| *a == TagAction::Keep)
    }
}

async fn plan_step(
    sink: &dyn Sink,
    closures: &[Closure],
    index: usize,
) -> Result<Step, PromoteError> {
    let c = &closures[index];
    let mut step = Step {
        closure: index,
        blobs: Vec::new(),
        manifests: Vec::new(),
        tags: Vec::new(),
    };
    for b in &c.blobs {
        if !sink.has_blob(&c.image, b).await? {
            step.blobs.push(b.clone());
        }
    }
    for (i, m) in c.manifests.iter().enumerate() {
        if !sink.has_manifest(&c.image, &m.digest).await? {
            step.manifests.push(i);
        }
    }
    for t in &c.tags {
        let action = match sink.tag(&c.image, &t.tag).await? {
            None => TagAction::Create,
            Some(d) if d == t.digest => TagAction::Keep,
            Some(from) => TagAction::Move { from },
        };
        step.tags.push((t.clone(), action));
    }
    Ok(step)
}

/// Options common to sync and import.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    pub allow_tag_move: bool,
    pub prune: bool,
}

/// What a run did, for the summary and the exit status.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub blobs: u64,
    pub bytes: u64,
    pub manifests: u64,
    pub tags: u64,
    pub pinned: u64,
    pub failed: u64,
}

pub struct Report {
    pub ok: bool,
    pub totals: Totals,
}

/// Prints lines above the progress bars (the caller decides where lines go).
pub type Out<'a> = &'a (dyn Fn(&str) + Sync);

fn short(d: &Digest) -> String {
    format!("sha256:{}", &d.hex()[..12])
}

/// Resolves every closure from the source; a digest that cannot be resolved is
/// reported and left out (the run then fails).
pub async fn resolve(
    src: &dyn Source,
    promotion: &Promotion,
    out: Out<'_>,
) -> Result<(Vec<Closure>, Vec<String>), PromoteError> {
    let mut closures = Vec::new();
    let mut errors = Vec::new();
    for image in &promotion.images {
        let src_repo = promotion.src.repo(&image.name)?;
        for digest in image.dmap.keys() {
            match closure(src, &src_repo, image, digest).await {
                Ok(c) => closures.push(c),
                Err(e) => {
                    let line = format!("FAILED {}@{}: {e}", image.name, short(digest));
                    out(&line);
                    errors.push(line);
                }
            }
        }
    }
    Ok((closures, errors))
}

/// Plans and (unless `dry_run`) copies `closures` into every sink.
pub async fn run(
    src: &dyn Source,
    promotion: &Promotion,
    closures: &[Closure],
    sinks: &[&dyn Sink],
    opts: RunOptions,
    out: Out<'_>,
) -> Result<Report, PromoteError> {
    let mut ok = true;
    let mut totals = Totals::default();
    // Plan everything first: a refused tag move stops the run before any copy.
    let mut plans = Vec::new();
    let mut conflicts = Vec::new();
    for sink in sinks {
        let mut steps = Vec::new();
        for i in 0..closures.len() {
            let step = plan_step(*sink, closures, i).await?;
            for (t, action) in &step.tags {
                if let TagAction::Move { from } = action {
                    if !t.movable && !opts.allow_tag_move {
                        conflicts.push(format!(
                            "CONFLICT {}: {}:{} is {from}; the manifest says {}",
                            sink.describe(),
                            closures[i].image,
                            t.tag,
                            t.digest
                        ));
                    }
                }
            }
            steps.push(step);
        }
        plans.push(steps);
    }
    for (sink, steps) in sinks.iter().zip(&plans) {
        let (blobs, bytes, manifests) = steps.iter().fold((0, 0, 0), |acc, s| {
            (
                acc.0 + s.blobs.len(),
                acc.1 + s.bytes(),
                acc.2 + s.manifests.len(),
            )
        });
        let line = format!(
            "plan for {}: {blobs} blob(s) ({}), {manifests} manifest(s) to copy",
            sink.describe(),
            human(bytes)
        );
        out(&line);
        for step in steps {
            let c = &closures[step.closure];
            if step.is_noop() {
                continue;
            }
            let mut tags = String::new();
            for (t, action) in &step.tags {
                match action {
                    TagAction::Create => {
                        let _ = write!(tags, " +{}", t.tag);
                    }
                    TagAction::Move { from } => {
                        let _ = write!(tags, " {}({}→{})", t.tag, short(from), short(&t.digest));
                    }
                    TagAction::Keep => {}
                }
            }
            let line = format!(
                "  {}@{}: {} blob(s) ({}), {} manifest(s){}{tags}",
                c.image,
                short(&c.root),
                step.blobs.len(),
                human(step.bytes()),
                step.manifests.len(),
                if tags.is_empty() { "" } else { ", tags" },
            );
            out(&line);
        }
    }
    if !conflicts.is_empty() {
        for line in &conflicts {
            out(line);
        }
        let line = format!(
            "refused: {} tag(s) would move; promoted tags are immutable (--allow-tag-move overrides). Nothing was copied.",
            conflicts.len()
        );
        out(&line);
        return Ok(Report { ok: false, totals });
    }
    let keep = desired_tags(closures);
    let keep_digests: HashSet<Digest> =
        closures.iter().flat_map(|c| c.digests().cloned()).collect();
    if opts.dry_run {
        if opts.prune {
            for sink in sinks {
                for line in sink.prune(&keep, &keep_digests, true).await? {
                    out(&line);
                }
            }
        }
        out("dry run: nothing copied");
        return Ok(Report { ok, totals });
    }
    let bars = MultiProgress::new();
    for (sink, steps) in sinks.iter().zip(&plans) {
        let total: u64 = steps.iter().map(Step::bytes).sum();
        let bar = bars.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .map_err(|e| PromoteError::Usage(e.to_string()))?
            .progress_chars("=> "),
        );
        bar.set_prefix(sink.describe());
        for step in steps {
            let c = &closures[step.closure];
            bar.set_message(format!("{}@{}", c.image, short(&c.root)));
            let src_repo = promotion.src.repo(&c.image)?;
            let mut written = Vec::new();
            match copy_step(
                src,
                &src_repo,
                *sink,
                c,
                step,
                &bar,
                &mut written,
                &mut totals,
            )
            .await
            {
                Ok(()) => {}
                Err(e) => {
                    ok = false;
                    totals.failed += 1;
                    let removed = sink.discard(&written).await;
                    let line = format!(
                        "FAILED {}: {}@{}: {e}{}",
                        sink.describe(),
                        c.image,
                        short(&c.root),
                        if removed == 0 {
                            String::new()
                        } else {
                            format!(" ({removed} digest(s) written by this run removed)")
                        }
                    );
                    bars.suspend(|| out(&line));
                }
            }
        }
        bar.finish_and_clear();
        if opts.prune {
            for line in sink.prune(&keep, &keep_digests, false).await? {
                bars.suspend(|| out(&line));
            }
        }
        sink.finish().await?;
    }
    let line = format!(
        "copied {} blob(s) ({}) and {} manifest(s); set {} tag(s); pinned {} digest(s); {} image(s) failed",
        totals.blobs,
        human(totals.bytes),
        totals.manifests,
        totals.tags,
        totals.pinned,
        totals.failed
    );
    out(&line);
    Ok(Report { ok, totals })
}

fn desired_tags(closures: &[Closure]) -> BTreeMap<RepoName, Vec<TagTarget>> {
    let mut keep: BTreeMap<RepoName, Vec<TagTarget>> = BTreeMap::new();
    for c in closures {
        keep.entry(c.image.clone())
            .or_default()
            .extend(c.tags.iter().cloned());
    }
    keep
}

/// Parallel blob copies per image.
const BLOB_CONCURRENCY: usize = 4;

#[allow(clippy::too_many_arguments)]
async fn copy_step(
    src: &dyn Source,
    src_repo: &RepoName,
    sink: &dyn Sink,
    c: &Closure,
    step: &Step,
    bar: &ProgressBar,
    written: &mut Vec<Digest>,
    totals: &mut Totals,
) -> Result<(), PromoteError> {
    let results: Vec<(Digest, u64, Result<(), PromoteError>)> =
        futures_util::stream::iter(step.blobs.iter())
            .map(|blob| async move {
                let result = async {
                    let body = src.blob(src_repo, &blob.digest).await?;
                    let body = verifying(body, blob.clone(), bar.clone());
                    sink.put_blob(&c.image, blob, body).await
                }
                .await;
                (blob.digest.clone(), blob.size, result)
            })
            .buffer_unordered(BLOB_CONCURRENCY)
            .collect()
            .await;
    let mut first_error = None;
    for (digest, size, result) in results {
        match result {
            Ok(()) => {
                written.push(digest);
                totals.blobs += 1;
                totals.bytes += size;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    for &i in &step.manifests {
        let m = &c.manifests[i];
        sink.put_manifest(&c.image, m).await?;
        written.push(m.digest.clone());
        totals.manifests += 1;
    }
    for (t, action) in &step.tags {
        if *action == TagAction::Keep {
            continue;
        }
        let item = c
            .manifests
            .iter()
            .find(|m| m.digest == t.digest)
            .ok_or_else(|| PromoteError::Corrupt(format!("tag {} names no manifest", t.tag)))?;
        sink.set_tag(&c.image, &t.tag, item).await?;
        totals.tags += 1;
    }
    totals.pinned += sink.complete(c).await?;
    Ok(())
}

// ---- verification ---------------------------------------------------------------------

/// A stream that hashes what passes through and checks the digest when the last
/// byte the descriptor promises arrives: on a mismatch it yields an error *instead
/// of* that last chunk, so no sink ever receives a complete wrong blob (even one
/// that stops reading at its Content-Length). A short or long body fails too.
pub fn verifying(inner: ByteStream, expected: Descriptor, bar: ProgressBar) -> ByteStream {
    Box::pin(Verifying {
        inner,
        expected,
        state: VerifyState::Reading(Verifier::new()),
        bar,
    })
}

enum VerifyState {
    Reading(Verifier),
    Verified,
    Failed,
}

struct Verifying {
    inner: ByteStream,
    expected: Descriptor,
    state: VerifyState,
    bar: ProgressBar,
}

impl Verifying {
    fn fail(&mut self, message: String) -> Poll<Option<std::io::Result<Bytes>>> {
        self.state = VerifyState::Failed;
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            message,
        ))))
    }
}

impl Stream for Verifying {
    type Item = std::io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if matches!(this.state, VerifyState::Failed) {
            return Poll::Ready(None);
        }
        let next = match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(next) => next,
        };
        let (size, digest) = (this.expected.size, this.expected.digest.clone());
        match (next, &mut this.state) {
            (Some(Err(e)), _) => {
                this.state = VerifyState::Failed;
                Poll::Ready(Some(Err(e)))
            }
            (Some(Ok(chunk)), VerifyState::Reading(v)) => {
                v.update(&chunk);
                this.bar.inc(chunk.len() as u64);
                if v.len() < size {
                    return Poll::Ready(Some(Ok(chunk)));
                }
                if v.len() > size {
                    return this.fail(format!(
                        "{digest}: more than the {size} bytes its descriptor gives"
                    ));
                }
                let actual = std::mem::take(v).finish();
                if actual != digest {
                    return this.fail(format!(
                        "digest mismatch: expected {digest}, the source sent {actual}"
                    ));
                }
                this.state = VerifyState::Verified;
                Poll::Ready(Some(Ok(chunk)))
            }
            (Some(Ok(_)), _) => this.fail(format!(
                "{digest}: more than the {size} bytes its descriptor gives"
            )),
            (None, VerifyState::Reading(v)) => {
                let got = v.len();
                // An empty blob is complete before any chunk arrives.
                if size == 0 && std::mem::take(v).finish() == digest {
                    this.state = VerifyState::Verified;
                    return Poll::Ready(None);
                }
                this.fail(format!("{digest}: the source sent {got} of {size} bytes"))
            }
            (None, _) => Poll::Ready(None),
        }
    }
}

/// Copies a stream into a store writer and commits it (the writer checks digest
/// and size again at commit).
pub async fn write_all(
    mut writer: Box<dyn ferry_storage::BlobWriter>,
    mut body: ByteStream,
) -> Result<u64, PromoteError> {
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| PromoteError::Corrupt(e.to_string()))?;
        writer.write(&chunk).await?;
    }
    Ok(writer.commit().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(parts: &[&'static [u8]]) -> ByteStream {
        let items: Vec<std::io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    async fn drain(s: ByteStream) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn verifying_passes_good_bytes_and_fails_bad_ones_at_the_end() {
        let desc = |data: &[u8]| Descriptor {
            media_type: String::new(),
            digest: Digest::of(data),
            size: data.len() as u64,
        };
        let bar = ProgressBar::hidden();
        let good = verifying(stream(&[b"hel", b"lo"]), desc(b"hello"), bar.clone());
        assert_eq!(drain(good).await.unwrap(), b"hello");
        assert_eq!(bar.position(), 5);
        // The wrong last chunk is never passed on: the error comes in its place.
        let mut bad = verifying(stream(&[b"hel", b"p!"]), desc(b"hello"), bar.clone());
        assert_eq!(&bad.next().await.unwrap().unwrap()[..], b"hel");
        let e = bad.next().await.unwrap().unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
        assert!(bad.next().await.is_none());
        let long = verifying(stream(&[b"hell", b"o!"]), desc(b"hello"), bar.clone());
        assert!(drain(long).await.unwrap_err().contains("more than"));
        let after = verifying(stream(&[b"hello", b"!"]), desc(b"hello"), bar.clone());
        assert!(drain(after).await.unwrap_err().contains("more than"));
        let short = verifying(stream(&[b"hell"]), desc(b"hello"), bar.clone());
        assert!(drain(short).await.unwrap_err().contains("4 of 5 bytes"));
        let empty = verifying(stream(&[]), desc(b""), bar);
        assert_eq!(drain(empty).await.unwrap(), b"");
    }

    #[test]
    fn legacy_referrer_tags() {
        let hex = "a".repeat(64);
        assert!(is_legacy_referrer_tag(&format!("sha256-{hex}.sig")));
        assert!(is_legacy_referrer_tag(&format!("sha256-{hex}.att")));
        assert!(!is_legacy_referrer_tag(&format!("sha256-{hex}.exe")));
        assert!(!is_legacy_referrer_tag("sha256-abc.sig"));
        assert!(!is_legacy_referrer_tag("v1.0"));
    }
}
