//! Manifests, tags and referrers.
//!
//! Manifests are content: stored by digest in the blob store, verified, kept
//! forever and never revalidated. A tag is a pointer with a TTL: after
//! `manifest_ttl` it is revalidated with a HEAD upstream; when the upstream is
//! down, rate-limiting or failing, the last known digest is served (stale).

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use ferry_storage::{TagKey, TagRecord};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, LINK};
use reqwest::Method;

use super::error::{Kind, ProxyError, SharedError};
use super::{Mirror, Route};
use crate::oci::{
    media_type_of, Digest, MediaTypes, Reference, Tag, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES,
};
use crate::upstream::UpstreamError;

/// Bounds a tag list or referrers response held in memory.
const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct ManifestReply {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

pub struct TagsReply {
    pub body: Bytes,
    /// The upstream's next page, as (n, last), for the client's Link header.
    pub next: Option<(Option<String>, String)>,
}

pub struct ReferrersReply {
    pub body: Bytes,
    pub content_type: String,
    /// The `OCI-Filters-Applied` value, when the upstream filtered.
    pub filters_applied: Option<String>,
}

impl Mirror {
    /// A manifest by tag or digest, checked against the client's `Accept`.
    pub async fn manifest(
        &self,
        route: &Route,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<ManifestReply, ProxyError> {
        let reply = match reference {
            Reference::Digest(d) => self.manifest_by_digest(route, d).await?,
            Reference::Tag(t) => self.manifest_by_tag(route, t).await?,
        };
        if !MediaTypes::accepts(accept, &reply.media_type) {
            return Err(ProxyError::NotAcceptable(reply.media_type));
        }
        Ok(reply)
    }

    async fn manifest_by_digest(
        &self,
        route: &Route,
        digest: &Digest,
    ) -> Result<ManifestReply, ProxyError> {
        if let Some(m) = self.local_manifest(digest).await? {
            self.metrics.cache("manifest", "hit");
            return Ok(m);
        }
        self.metrics.cache("manifest", "miss");
        self.fetch_manifest(route, &digest.to_string(), Some(digest))
            .await
    }

    async fn manifest_by_tag(&self, route: &Route, tag: &Tag) -> Result<ManifestReply, ProxyError> {
        let key = TagKey {
            upstream: route.upstream.name().to_owned(),
            repo: route.repo.to_string(),
            tag: tag.to_string(),
        };
        let ttl = route.upstream.cfg.manifest_ttl;
        let known = match self.tags.get(&key).await {
            Some(hot) => Some(hot),
            None => self.meta.get_tag(&key).await?.map(|r| {
                // Restore freshness from the persisted check time.
                let age = SystemTime::now()
                    .duration_since(r.checked_at)
                    .unwrap_or_default();
                let checked = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                (r, checked)
            }),
        };
        if let Some((record, checked)) = &known {
            if record.pinned {
                // A promoted tag is immutable here: never revalidated, never moved.
                return self.manifest_by_digest(route, &record.digest).await;
            }
            if checked.elapsed() < ttl {
                if let Some(m) = self.local_manifest(&record.digest).await? {
                    self.metrics.cache("manifest", "hit");
                    return Ok(m);
                }
            }
        }
        let fetch_key = (key.upstream.clone(), key.repo.clone(), key.tag.clone());
        let revalidated = self
            .fetches
            .run(&fetch_key, || async {
                self.revalidate_tag(route, &key)
                    .await
                    .map_err(SharedError::from)
            })
            .await
            .map_err(ProxyError::Shared);
        match revalidated {
            Ok(m) => Ok(m),
            Err(e) if e.upstream_is_down() => {
                let Some((record, _)) = known else {
                    return Err(e);
                };
                let Some(m) = self.local_manifest(&record.digest).await? else {
                    return Err(e);
                };
                self.metrics.cache("manifest", "stale");
                tracing::warn!(upstream = route.upstream.name(), repo = %route.repo, tag = %tag, digest = %m.digest, error = %e, "serving stale tag");
                Ok(m)
            }
            Err(e) => Err(e),
        }
    }

    /// Asks the upstream what a tag points at now (HEAD, which Docker Hub does not
    /// count against pull limits), fetching the manifest only if it is new to us.
    async fn revalidate_tag(
        &self,
        route: &Route,
        key: &TagKey,
    ) -> Result<ManifestReply, ProxyError> {
        let suffix = format!("manifests/{}", key.tag);
        let head = route
            .upstream
            .request(Method::HEAD, &route.repo, &suffix, &[], accept_headers())
            .await;
        let reply = match head {
            Ok(resp) => {
                let digest = header_digest(resp.headers());
                let local = match &digest {
                    Some(d) => self.local_manifest(d).await?,
                    None => None,
                };
                match local {
                    Some(m) => {
                        self.metrics.cache("manifest", "revalidated");
                        m
                    }
                    None => {
                        self.metrics.cache("manifest", "miss");
                        self.fetch_manifest(route, &key.tag, None).await?
                    }
                }
            }
            // Not found, denied, rate-limited or down: the caller decides.
            Err(
                err @ (UpstreamError::NotFound
                | UpstreamError::Denied { .. }
                | UpstreamError::TooManyRequests { .. }
                | UpstreamError::Unreachable(_)),
            ) => {
                return Err(ProxyError::Upstream {
                    kind: Kind::Manifest,
                    err,
                })
            }
            Err(err @ UpstreamError::Status { status }) if status >= 500 => {
                return Err(ProxyError::Upstream {
                    kind: Kind::Manifest,
                    err,
                })
            }
            // Some registries do not answer HEAD properly; a GET settles it.
            Err(_) => {
                self.metrics.cache("manifest", "miss");
                self.fetch_manifest(route, &key.tag, None).await?
            }
        };
        let record = TagRecord {
            digest: reply.digest.clone(),
            checked_at: SystemTime::now(),
            pinned: false,
        };
        if let Err(e) = self.meta.put_tag(key, &record).await {
            tracing::warn!(error = %e, "could not persist tag record");
        }
        self.tags
            .insert(key.clone(), (record, Instant::now()))
            .await;
        Ok(reply)
    }

    /// A stored manifest: from memory, else from the store.
    async fn local_manifest(&self, digest: &Digest) -> Result<Option<ManifestReply>, ProxyError> {
        if let Some(m) = self.manifests.get(digest).await {
            // The store stays the authority (and the index learns of the use): a manifest
            // evicted from the store is not served from memory either.
            if self.store.stat(digest).await?.is_some() {
                return Ok(Some(m));
            }
            self.manifests.invalidate(digest).await;
        }
        let Some(body) = self.store.get(digest, None).await? else {
            return Ok(None);
        };
        if body.size > MAX_MANIFEST_BYTES as u64 {
            return Ok(None); // some other blob, not a manifest
        }
        let bytes = ferry_storage::store::read_to_vec(body.stream, MAX_MANIFEST_BYTES)
            .await
            .map_err(ferry_storage::StoreError::Io)?;
        let Some(media_type) = media_type_of(&bytes) else {
            return Ok(None);
        };
        let m = ManifestReply {
            digest: digest.clone(),
            media_type,
            bytes: bytes.into(),
        };
        self.manifests.insert(digest.clone(), m.clone()).await;
        Ok(Some(m))
    }

    /// GETs a manifest, verifies it and stores it by digest.
    async fn fetch_manifest(
        &self,
        route: &Route,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<ManifestReply, ProxyError> {
        let resp = route
            .upstream
            .request(
                Method::GET,
                &route.repo,
                &format!("manifests/{reference}"),
                &[],
                accept_headers(),
            )
            .await
            .map_err(ProxyError::upstream(Kind::Manifest))?;
        let claimed = header_digest(resp.headers());
        let bytes = read_limited(
            resp,
            MAX_MANIFEST_BYTES,
            route.upstream.name(),
            &self.metrics,
        )
        .await?;
        let digest = Digest::of(&bytes);
        for want in [expected, claimed.as_ref()].into_iter().flatten() {
            if *want != digest {
                return Err(ProxyError::Corrupt(format!(
                    "manifest {reference}: expected {want}, got {digest}"
                )));
            }
        }
        let media_type = media_type_of(&bytes)
            .ok_or_else(|| ProxyError::BadManifest(format!("{reference} is not a JSON object")))?;
        if self.store.stat(&digest).await?.is_none() {
            let mut w = self.store.writer(&digest, Some(bytes.len() as u64)).await?;
            w.set_media_type(&media_type);
            w.write(&bytes).await?;
            let size = w.commit().await?;
            self.audit_fill(route, &digest, size);
        }
        self.meta
            .add_manifest(route.upstream.name(), route.repo.as_str(), &digest)
            .await?;
        let m = ManifestReply {
            digest: digest.clone(),
            media_type,
            bytes,
        };
        self.manifests.insert(digest, m.clone()).await;
        Ok(m)
    }

    /// Tag list, passed through (not cached: it is small and must be current).
    pub async fn tags(
        &self,
        route: &Route,
        n: Option<&str>,
        last: Option<&str>,
    ) -> Result<TagsReply, ProxyError> {
        let mut query = Vec::new();
        if let Some(n) = n {
            query.push(("n", n.to_owned()));
        }
        if let Some(last) = last {
            query.push(("last", last.to_owned()));
        }
        let resp = match route
            .upstream
            .request(
                Method::GET,
                &route.repo,
                "tags/list",
                &query,
                HeaderMap::new(),
            )
            .await
        {
            Ok(resp) => resp,
            Err(err) => {
                let e = ProxyError::Upstream {
                    kind: Kind::Tags,
                    err,
                };
                if e.upstream_is_down() {
                    if let Some(reply) = self.local_tags(route, n, last).await? {
                        tracing::warn!(upstream = route.upstream.name(), repo = %route.repo, error = %e, "listing the tags this node knows");
                        return Ok(reply);
                    }
                }
                return Err(e);
            }
        };
        let next = resp
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_next_link);
        let body = read_limited(resp, MAX_LIST_BYTES, route.upstream.name(), &self.metrics).await?;
        Ok(TagsReply { body, next })
    }

    /// The tags this node holds for a repository (promoted, and cached from earlier
    /// answers), as the upstream would list them: sorted, after `last`, at most `n`.
    /// `None` when it knows none.
    async fn local_tags(
        &self,
        route: &Route,
        n: Option<&str>,
        last: Option<&str>,
    ) -> Result<Option<TagsReply>, ProxyError> {
        let mut tags = self
            .meta
            .repo_tags(route.upstream.name(), route.repo.as_str())
            .await?;
        if tags.is_empty() {
            return Ok(None);
        }
        if let Some(last) = last {
            tags.retain(|t| t.as_str() > last);
        }
        if let Some(n) = n.and_then(|n| n.parse::<usize>().ok()) {
            tags.truncate(n);
        }
        self.metrics.cache("tags", "stale");
        let body = serde_json::json!({"name": route.repo.as_str(), "tags": tags});
        Ok(Some(TagsReply {
            body: body.to_string().into(),
            next: None,
        }))
    }

    /// The referrers of `digest` among the manifests this node holds for the
    /// repository (promoted signatures and attestations), as an OCI image index.
    async fn local_referrers(
        &self,
        route: &Route,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ReferrersReply, ProxyError> {
        let mut manifests = Vec::new();
        for d in self
            .meta
            .repo_manifests(route.upstream.name(), route.repo.as_str())
            .await?
        {
            let Some(m) = self.local_manifest(&d).await? else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.bytes) else {
                continue;
            };
            let subject = v.pointer("/subject/digest").and_then(|s| s.as_str());
            if subject != Some(digest.to_string().as_str()) {
                continue;
            }
            // The spec: artifactType, else the config's media type.
            let kind = v
                .get("artifactType")
                .or_else(|| v.pointer("/config/mediaType"))
                .and_then(|t| t.as_str())
                .unwrap_or_default();
            if artifact_type.is_some_and(|want| want != kind) {
                continue;
            }
            let mut desc = serde_json::json!({
                "mediaType": m.media_type,
                "digest": m.digest.to_string(),
                "size": m.bytes.len(),
                "artifactType": kind,
            });
            if let Some(a) = v.get("annotations") {
                desc["annotations"] = a.clone();
            }
            manifests.push(desc);
        }
        self.metrics.cache("referrers", "stale");
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MediaTypes::OCI_INDEX,
            "manifests": manifests,
        });
        Ok(ReferrersReply {
            body: body.to_string().into(),
            content_type: MediaTypes::OCI_INDEX.to_owned(),
            filters_applied: artifact_type.map(|_| "artifactType".into()),
        })
    }

    /// Referrers of a digest, passed through and cached for the manifest TTL.
    pub async fn referrers(
        &self,
        route: &Route,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ReferrersReply, ProxyError> {
        let key = (
            route.upstream.name().to_owned(),
            route.repo.to_string(),
            digest.clone(),
            artifact_type.map(str::to_owned),
        );
        if let Some((body, content_type)) = self.referrers.get(&key).await {
            self.metrics.cache("referrers", "hit");
            return Ok(ReferrersReply {
                body,
                content_type,
                filters_applied: artifact_type.map(|_| "artifactType".into()),
            });
        }
        self.metrics.cache("referrers", "miss");
        let query: Vec<(&str, String)> = artifact_type
            .map(|t| ("artifactType", t.to_owned()))
            .into_iter()
            .collect();
        let resp = match route
            .upstream
            .request(
                Method::GET,
                &route.repo,
                &format!("referrers/{digest}"),
                &query,
                HeaderMap::new(),
            )
            .await
        {
            Ok(resp) => resp,
            Err(err) => {
                let e = ProxyError::Upstream {
                    kind: Kind::Referrers,
                    err,
                };
                if e.upstream_is_down() {
                    tracing::warn!(upstream = route.upstream.name(), repo = %route.repo, %digest, error = %e, "listing the referrers this node holds");
                    return self.local_referrers(route, digest, artifact_type).await;
                }
                return Err(e);
            }
        };
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(MediaTypes::OCI_INDEX)
            .to_owned();
        let filters_applied = resp
            .headers()
            .get("oci-filters-applied")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(
            resp,
            MAX_MANIFEST_BYTES,
            route.upstream.name(),
            &self.metrics,
        )
        .await?;
        if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
            return Err(ProxyError::BadManifest(
                "referrers response is not JSON".into(),
            ));
        }
        // Only cache what the upstream filtered as asked, so a later answer is the same.
        if artifact_type.is_none() || filters_applied.is_some() {
            self.referrers
                .insert(key, (body.clone(), content_type.clone()))
                .await;
        }
        Ok(ReferrersReply {
            body,
            content_type,
            filters_applied,
        })
    }
}

fn accept_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
    h
}

/// The sha256 `Docker-Content-Digest` an upstream claims, if any.
fn header_digest(headers: &HeaderMap) -> Option<Digest> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v.trim()).ok())
}

async fn read_limited(
    resp: crate::upstream::UpstreamResponse,
    limit: usize,
    upstream: &str,
    metrics: &crate::metrics::Metrics,
) -> Result<Bytes, ProxyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ProxyError::BadManifest(format!(
            "response is larger than {limit} bytes"
        )));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ProxyError::Upstream {
            kind: Kind::Manifest,
            err: UpstreamError::Unreachable(format!("reading body: {e}")),
        })?;
        metrics
            .upstream_bytes
            .with_label_values(&[upstream])
            .inc_by(chunk.len() as u64);
        if out.len() + chunk.len() > limit {
            return Err(ProxyError::BadManifest(format!(
                "response is larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

/// `</v2/x/tags/list?n=10&last=abc>; rel="next"` → (Some("10"), "abc").
fn parse_next_link(link: &str) -> Option<(Option<String>, String)> {
    if !link.contains("rel=\"next\"") && !link.contains("rel=next") {
        return None;
    }
    let target = link.split_once('<')?.1.split_once('>')?.0;
    let query = target.split_once('?')?.1;
    let mut n = None;
    let mut last = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "n" => n = Some(v.into_owned()),
            "last" => last = Some(v.into_owned()),
            _ => {}
        }
    }
    Some((n, last?))
}

#[cfg(test)]
mod tests {
    use super::parse_next_link;

    #[test]
    fn next_links() {
        assert_eq!(
            parse_next_link(r#"</v2/library/a/tags/list?last=v1&n=2>; rel="next""#),
            Some((Some("2".into()), "v1".into()))
        );
        assert_eq!(
            parse_next_link(r#"</v2/a/tags/list?n=2>; rel="next""#),
            None
        );
        assert_eq!(parse_next_link("garbage"), None);
    }
}
