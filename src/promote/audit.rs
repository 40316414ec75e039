//! `ferry audit`: the promoter's auditor. Compares what a node holds as promoted
//! (pinned content and immutable tags) with a promotion manifest, reading only the
//! node's own store and index, so it works on an air-gapped node.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use super::node::{NodeStore, Placement};
use super::{is_legacy_referrer_tag, PromoteError, Promotion};
use crate::oci::{children, Digest};

pub struct AuditReport {
    pub text: String,
    pub problems: usize,
}

/// Checks every promoted digest (with all it references), every tag, and that the
/// node holds no promoted tag or pinned content that the manifest does not name.
pub async fn audit(
    promotion: &Promotion,
    node: &NodeStore,
    placement: &Placement,
) -> Result<AuditReport, PromoteError> {
    let mut problems = BTreeSet::new();
    let mut expected: HashSet<Digest> = HashSet::new();
    let mut expected_tags = HashSet::new();
    let upstream = &placement.upstream.name;
    let with_referrers = promotion.images.iter().any(|i| i.referrers);
    let tags = node.pinned_tags(upstream)?;
    let mut checked = 0u64;
    for image in &promotion.images {
        let repo = placement.repo(&image.name)?.to_string();
        let mut roots: Vec<&Digest> = image.dmap.keys().collect();
        // Legacy referrer tags of what was promoted are expected, not required.
        for ((r, tag), d) in &tags {
            if *r == repo && is_legacy_referrer_tag(tag) {
                roots.push(d);
                expected_tags.insert((r.clone(), tag.clone()));
            }
        }
        for root in roots {
            for d in crate::admin::reachable(&node.store, root).await? {
                if !expected.insert(d.clone()) {
                    continue;
                }
                checked += 1;
                let what = if d == *root {
                    format!("{repo}@{d}")
                } else {
                    format!("{d} (of {repo}@{root})")
                };
                if node.store.inner().stat(&d).await?.is_none() {
                    problems.insert(format!("MISSING {what}: not in the store"));
                    continue;
                }
                match node.index().entry(&d)? {
                    None => {
                        problems.insert(format!("UNINDEXED {what}: stored but not in the index"));
                    }
                    Some(e) if !e.pinned => {
                        problems.insert(format!("UNPINNED {what}: evictable"));
                    }
                    Some(_) => {}
                }
            }
        }
        for (root, wanted) in &image.dmap {
            for tag in wanted {
                expected_tags.insert((repo.clone(), tag.to_string()));
                match tags.get(&(repo.clone(), tag.to_string())) {
                    None => {
                        problems.insert(format!("MISSING tag {repo}:{tag} (should be {root})"));
                    }
                    Some(d) if d != root => {
                        problems.insert(format!(
                            "MOVED tag {repo}:{tag} is {d}; the manifest says {root}"
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    for ((repo, tag), d) in &tags {
        if !expected_tags.contains(&(repo.clone(), tag.clone())) {
            problems.insert(format!(
                "UNEXPECTED tag {repo}:{tag} ({d}) is promoted but not in the manifest"
            ));
        }
    }
    if with_referrers {
        // Referrers found through the referrers API have no tag: they are expected
        // when their subject is (and so is everything under them).
        loop {
            let mut adopted = Vec::new();
            for (d, e) in node.index().blobs()? {
                if !e.pinned || expected.contains(&d) {
                    continue;
                }
                let Some(bytes) = node.manifest_bytes(&d).await? else {
                    continue;
                };
                if let Ok(Some(subject)) = children(&bytes).map(|c| c.subject) {
                    if expected.contains(&subject.digest) {
                        adopted.push(d);
                    }
                }
            }
            if adopted.is_empty() {
                break;
            }
            for d in adopted {
                expected.extend(node.stored_closure(&d).await?);
            }
        }
    }
    for (d, e) in node.index().blobs()? {
        if e.pinned && !expected.contains(&d) {
            problems.insert(format!(
                "UNEXPECTED pinned {d} ({} bytes) is not named by the manifest",
                e.size
            ));
        }
    }
    let mut text = String::new();
    for p in &problems {
        let _ = writeln!(text, "{p}");
    }
    let _ = writeln!(
        text,
        "audit of {} ({upstream}) against {}: {checked} digest(s) and {} tag(s) checked, {} problem(s)",
        node.config.storage.location(),
        promotion.source_file,
        expected_tags.len(),
        problems.len()
    );
    Ok(AuditReport {
        text,
        problems: problems.len(),
    })
}
