//! `ferry index ...`: inspect, check, repair and garbage-collect a node's cache index,
//! and pin content. Returns text for the binary to print; never prints itself.
//!
//! Read-only commands (`stats`, `ls`, `check` without `--repair`) work while the node
//! runs. Commands that write (`check --repair`, `gc`, `pin`, `unpin`) need the index to
//! themselves: RocksDB allows one writer, so stop the node first.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ferry_storage::store::read_to_vec;
use ferry_storage::{AuditAction, AuditEvent, Digest, Index, IndexError, IndexedStore, TagKey};

use crate::cli::{IndexCommand, LsOrder};
use crate::config::Config;
use crate::oci::{Reference, MAX_MANIFEST_BYTES};
use crate::proxy::{route_name, ProxyError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Index(#[from] IndexError),
    #[error("storage: {0}")]
    Store(#[from] ferry_storage::StoreError),
    #[error("{0}")]
    Usage(String),
}

/// What a command printed, and whether it found the node healthy.
pub struct Outcome {
    pub text: String,
    pub ok: bool,
}

pub async fn run(cmd: &IndexCommand, config: &Config) -> Result<Outcome, AdminError> {
    let writes = match cmd {
        IndexCommand::Check { repair, .. } => *repair,
        IndexCommand::Gc | IndexCommand::Pin { .. } | IndexCommand::Unpin { .. } => true,
        IndexCommand::Stats | IndexCommand::Ls { .. } => false,
    };
    let path = config.storage.index_path.clone();
    if !path.exists() {
        return Err(AdminError::Usage(format!(
            "no cache index at {} (has a node run with this config?)",
            path.display()
        )));
    }
    let store = open_offline(config, writes).await?;
    let index = store.index().clone();
    let outcome = match cmd {
        IndexCommand::Stats => stats(&index, config)?,
        IndexCommand::Ls { order, limit } => ls(&index, *order, *limit)?,
        IndexCommand::Check { verify, repair } => check(&store, *verify, *repair).await?,
        IndexCommand::Gc => gc(&store).await?,
        IndexCommand::Pin { reference } => pin(&store, config, reference, true).await?,
        IndexCommand::Unpin { reference } => pin(&store, config, reference, false).await?,
    };
    if writes {
        index.sync()?;
    }
    Ok(outcome)
}

/// Opens a node's store and index from outside the node: for writing (RocksDB
/// allows one writer, so the node must be stopped; changes are recorded in the audit
/// log as `cli:<user>`) or read-only (works beside a running node).
pub async fn open_offline(config: &Config, write: bool) -> Result<IndexedStore, AdminError> {
    let path = config.storage.index_path.clone();
    let index = tokio::task::spawn_blocking(move || {
        if write {
            Index::open(&path)
        } else {
            Index::open_read_only(&path)
        }
    })
    .await
    .map_err(|e| AdminError::Usage(e.to_string()))?
    .map_err(|e| match e {
        IndexError::Locked(_) => AdminError::Usage(format!(
            "{e}\nthis command changes the store: stop the node first (RocksDB allows one writer; \
             commands that only read work while it runs)"
        )),
        other => AdminError::Index(other),
    })?;
    let backend = crate::open_backend(&config.storage, false).await?;
    let mut store = IndexedStore::new(backend, Arc::new(index), config.storage.limits);
    if write {
        if let Some(log) = crate::open_audit(&config.storage, &crate::cli_actor())? {
            store = store.with_audit(log);
        }
    }
    Ok(store)
}

/// Bytes in binary units, one decimal: `3.0 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn time_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn stats(index: &Index, config: &Config) -> Result<Outcome, AdminError> {
    let t = index.totals();
    let (manifests, repos) = index.manifest_counts()?;
    let tags = index.tags()?.len();
    let blobs = index.blobs()?;
    let mut out = String::new();
    let _ = writeln!(out, "index            {}", index.path());
    let _ = writeln!(out, "bytes            {} ({})", t.bytes, human(t.bytes));
    let _ = writeln!(out, "blobs            {}", t.blobs);
    let _ = writeln!(
        out,
        "pinned           {} ({})",
        t.pinned_bytes,
        human(t.pinned_bytes)
    );
    let _ = writeln!(out, "manifests        {manifests} in {repos} repositories");
    let _ = writeln!(out, "tags             {tags}");
    match config.storage.limits.max_size {
        Some(max) => {
            let l = config.storage.limits;
            let used = t.bytes as f64 / max as f64 * 100.0;
            let _ = writeln!(
                out,
                "limit            {} ({used:.1}% used; evicts from {:.0}% down to {:.0}%)",
                human(max),
                l.high_watermark * 100.0,
                l.low_watermark * 100.0
            );
        }
        None => {
            let _ = writeln!(out, "limit            none");
        }
    }
    match index.node_stats()? {
        Some(s) if s.hits + s.misses > 0 => {
            let ratio = s.hits as f64 / (s.hits + s.misses) as f64 * 100.0;
            let since = time_ms(s.started_at * 1000);
            let _ = writeln!(
                out,
                "hit ratio        {ratio:.1}% ({} hits, {} misses since {since})",
                s.hits, s.misses
            );
        }
        _ => {
            let _ = writeln!(out, "hit ratio        no requests recorded");
        }
    }
    if let Some((d, e)) = blobs.iter().min_by_key(|(_, e)| e.last_access) {
        let _ = writeln!(out, "oldest access    {} ({d})", time_ms(e.last_access));
    }
    Ok(Outcome {
        text: out,
        ok: true,
    })
}

fn ls(index: &Index, order: LsOrder, limit: usize) -> Result<Outcome, AdminError> {
    let mut blobs = index.blobs()?;
    match order {
        LsOrder::Size => blobs.sort_by_key(|b| std::cmp::Reverse(b.1.size)),
        LsOrder::Lru => blobs.sort_by_key(|(_, e)| e.last_access),
    }
    let mut out = format!(
        "{:<71} {:>12} {:<20} {:<6} media type\n",
        "digest", "size", "last access", "pinned"
    );
    for (d, e) in blobs.into_iter().take(limit) {
        let _ = writeln!(
            out,
            "{d:<71} {:>12} {:<20} {:<6} {}",
            e.size,
            time_ms(e.last_access),
            if e.pinned { "yes" } else { "no" },
            e.media_type.as_deref().unwrap_or("-")
        );
    }
    Ok(Outcome {
        text: out,
        ok: true,
    })
}

async fn check(store: &IndexedStore, verify: bool, repair: bool) -> Result<Outcome, AdminError> {
    let r = store.reconcile(repair, verify).await?;
    let mut out = String::new();
    let verb = if repair { "fixed" } else { "found" };
    let mut list = |what: &str, items: &[Digest], fix: &str| {
        for d in items {
            let _ = writeln!(out, "{what}: {d}{}", if repair { fix } else { "" });
        }
    };
    list(
        "indexed but missing from the store",
        &r.missing_content,
        " (entry dropped)",
    );
    list(
        "stored but not indexed",
        &r.unindexed,
        " (verified and indexed)",
    );
    list(
        "stored, not indexed, digest mismatch",
        &r.unindexed_corrupt,
        " (deleted)",
    );
    list("digest mismatch", &r.corrupt, " (deleted)");
    list(
        "size differs from the index",
        &r.size_mismatch,
        " (deleted)",
    );
    if !r.adoptable.is_empty() {
        let _ = writeln!(
            out,
            "{} blob(s) in the shared store not indexed by this node (not a problem){}",
            r.adoptable.len(),
            if repair { "; adopted" } else { "" }
        );
    }
    let problems = r.missing_content.len()
        + r.unindexed.len()
        + r.unindexed_corrupt.len()
        + r.corrupt.len()
        + r.size_mismatch.len();
    let _ = writeln!(
        out,
        "checked {} blobs{}: {problems} problem(s) {verb}",
        r.checked,
        if verify { " (digests recomputed)" } else { "" }
    );
    Ok(Outcome {
        text: out,
        ok: problems == 0 || repair,
    })
}

async fn gc(store: &IndexedStore) -> Result<Outcome, AdminError> {
    let limits = store.limits();
    let Some(max) = limits.max_size else {
        return Ok(Outcome {
            text: "no storage.max_size configured: nothing to evict\n".into(),
            ok: true,
        });
    };
    let used = store.index().totals().bytes;
    let target = (max as f64 * limits.low_watermark) as u64;
    let report = store.evict(used.saturating_sub(target)).await?;
    let text = format!(
        "evicted {} blobs ({}); cache now {} of {}\n",
        report.blobs,
        human(report.bytes),
        human(store.index().totals().bytes),
        human(max)
    );
    Ok(Outcome { text, ok: true })
}

/// Resolves `REF` (`sha256:…`, `NAME@sha256:…`, `NAME:TAG` or `NAME`) to a digest,
/// with the node's own routing rules for NAME.
fn resolve(index: &Index, config: &Config, reference: &str) -> Result<Digest, AdminError> {
    if let Ok(d) = Digest::parse(reference) {
        return Ok(d);
    }
    let (name, r) = match reference.rsplit_once('@') {
        Some((n, d)) => (n, d),
        None => match reference.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((n, t)) => (n, t),
            None => (reference, "latest"),
        },
    };
    let bad = |e: ProxyError| AdminError::Usage(format!("{reference}: {e}"));
    let (i, repo) = route_name(&config.upstreams, name, None).map_err(bad)?;
    match Reference::parse(r).map_err(|e| AdminError::Usage(format!("{reference}: {e}")))? {
        Reference::Digest(d) => Ok(d),
        Reference::Tag(tag) => {
            let key = TagKey {
                upstream: config.upstreams[i].name.clone(),
                repo: repo.to_string(),
                tag: tag.to_string(),
            };
            index.get_tag_sync(&key)?.map(|r| r.digest).ok_or_else(|| {
                AdminError::Usage(format!(
                    "{reference}: this node has no record of {}/{repo}:{tag}; pull it through the node first",
                    key.upstream
                ))
            })
        }
    }
}

/// Pins (or unpins) a manifest and everything it references that the store holds.
async fn pin(
    store: &IndexedStore,
    config: &Config,
    reference: &str,
    pinned: bool,
) -> Result<Outcome, AdminError> {
    let root = resolve(store.index(), config, reference)?;
    let mut changed = BTreeSet::new();
    let mut missing = BTreeSet::new();
    for d in reachable(store, &root).await? {
        let Some(entry) = store.index().entry(&d)? else {
            missing.insert(d);
            continue;
        };
        store.index().set_pinned(&d, pinned)?;
        if entry.pinned != pinned {
            if let Some(log) = store.audit() {
                let action = if pinned {
                    AuditAction::Pin
                } else {
                    AuditAction::Unpin
                };
                log.record(AuditEvent::new(action, &d).size(entry.size))
                    .map_err(ferry_storage::StoreError::Io)?;
            }
        }
        changed.insert(d);
    }
    let verb = if pinned { "pinned" } else { "unpinned" };
    let mut out = format!(
        "{verb} {} blob(s) for {reference} ({root})\n",
        changed.len()
    );
    for d in &missing {
        let _ = writeln!(out, "not in the store (pull it first): {d}");
    }
    Ok(Outcome {
        text: out,
        ok: missing.is_empty(),
    })
}

/// `root` and every digest reachable from it through the manifests the store
/// holds (configs, layers, an index's manifests), whether or not the store holds
/// the digest itself. Only `root` and the manifests under it are read: configs and
/// layers are named, never opened.
pub async fn reachable(
    store: &IndexedStore,
    root: &Digest,
) -> Result<Vec<Digest>, ferry_storage::StoreError> {
    let mut todo = vec![(root.clone(), true)];
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while let Some((d, may_be_manifest)) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        if may_be_manifest {
            if let Some(body) = store.inner().get(&d, None).await? {
                if body.size <= MAX_MANIFEST_BYTES as u64 {
                    let bytes = read_to_vec(body.stream, MAX_MANIFEST_BYTES).await?;
                    if let Ok(c) = crate::oci::children(&bytes) {
                        todo.extend(c.manifests.into_iter().map(|m| (m.digest, true)));
                        todo.extend(c.blobs.into_iter().map(|b| (b.digest, false)));
                    }
                }
            }
        }
        out.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
