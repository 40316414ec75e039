//! Any OCI registry that accepts pushes as a promotion destination (the push half
//! of the distribution spec: uploads, manifests by digest and tag).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ferry_storage::store::ByteStream;
use reqwest::header::{
    HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{RequestBuilder, Response, StatusCode};

use super::{Closure, ManifestItem, PromoteError, RegistryRef, Sink, TagTarget};
use crate::oci::{Descriptor, Digest, RepoName, Tag, MANIFEST_ACCEPT};
use crate::upstream::{basic_auth, describe, parse_challenge, Challenge, TokenResponse};

pub struct RegistrySink {
    reg: RegistryRef,
    http: reqwest::Client,
    /// Authorization per repository, once a challenge has been answered.
    auth: Mutex<HashMap<String, HeaderValue>>,
}

impl RegistrySink {
    pub fn new(reg: &RegistryRef) -> Result<Self, PromoteError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PromoteError::Usage(format!("HTTP client: {e}")))?;
        Ok(Self {
            reg: reg.clone(),
            http,
            auth: Mutex::new(HashMap::new()),
        })
    }

    fn url(&self, repo: &RepoName, suffix: &str) -> String {
        format!("{}v2/{repo}/{suffix}", self.reg.base)
    }

    fn err(&self, what: &str, detail: impl std::fmt::Display) -> PromoteError {
        PromoteError::Dest(format!("{}: {what}: {detail}", self.reg.name))
    }

    fn basic(&self) -> Option<HeaderValue> {
        let user = self.reg.username.as_ref()?;
        basic_auth(user, self.reg.password.as_deref().unwrap_or_default())
    }

    /// The authorization a challenge for `repo` was answered with, if any yet.
    fn known_auth(&self, repo: &RepoName) -> Option<HeaderValue> {
        self.auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(repo.as_str())
            .cloned()
    }

    /// Sends a request built by `build`; on a 401, answers the challenge (Basic, or
    /// a Bearer token scoped to push this repository) and sends it once more.
    async fn send(
        &self,
        repo: &RepoName,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, PromoteError> {
        for attempt in 0..2 {
            let mut req = build();
            if let Some(a) = self.known_auth(repo) {
                req = req.header(AUTHORIZATION, a);
            }
            let resp = req.send().await.map_err(|e| self.err(what, e))?;
            if resp.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(resp);
            }
            let header = self.answer(repo, &resp).await?;
            self.auth
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(repo.to_string(), header);
        }
        Err(self.err(what, "authentication failed"))
    }

    async fn answer(&self, repo: &RepoName, resp: &Response) -> Result<HeaderValue, PromoteError> {
        let challenge = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge);
        match challenge {
            Some(Challenge::Basic) => self
                .basic()
                .ok_or_else(|| self.err("push", "the registry wants a username and password_file")),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let mut query = vec![("scope", format!("repository:{repo}:pull,push"))];
                if let Some(s) = service {
                    query.push(("service", s));
                }
                let mut req = self.http.get(&realm).query(&query);
                if let Some(b) = self.basic() {
                    req = req.header(AUTHORIZATION, b);
                }
                let resp = req.send().await.map_err(|e| self.err("token", e))?;
                if !resp.status().is_success() {
                    return Err(self.err("token", format!("HTTP {}", resp.status())));
                }
                let body: TokenResponse = resp.json().await.map_err(|e| self.err("token", e))?;
                let (token, _) = body.token().ok_or_else(|| self.err("token", "no token"))?;
                let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| self.err("token", "not a header value"))?;
                v.set_sensitive(true);
                Ok(v)
            }
            None => Err(self.err("push", "HTTP 401 without a usable challenge")),
        }
    }

    async fn exists(
        &self,
        repo: &RepoName,
        suffix: &str,
    ) -> Result<Option<Response>, PromoteError> {
        let url = self.url(repo, suffix);
        let resp = self
            .send(repo, suffix, || {
                self.http
                    .head(&url)
                    .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(self.err(suffix, format!("HTTP {s}"))),
        }
    }

    async fn put_manifest_as(
        &self,
        image: &RepoName,
        reference: &str,
        item: &ManifestItem,
    ) -> Result<(), PromoteError> {
        let repo = self.reg.repo(image)?;
        let url = self.url(&repo, &format!("manifests/{reference}"));
        let resp = self
            .send(&repo, reference, || {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, item.media_type.as_str())
                    .body(item.bytes.clone())
            })
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(self.err(
                &format!("PUT manifest {repo}:{reference}"),
                format!("HTTP {status} {}", body.trim()),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for RegistrySink {
    fn describe(&self) -> String {
        format!("registry {}", self.reg.name)
    }

    async fn has_blob(&self, image: &RepoName, blob: &Descriptor) -> Result<bool, PromoteError> {
        let repo = self.reg.repo(image)?;
        Ok(self
            .exists(&repo, &format!("blobs/{}", blob.digest))
            .await?
            .is_some())
    }

    async fn put_blob(
        &self,
        image: &RepoName,
        blob: &Descriptor,
        body: ByteStream,
    ) -> Result<(), PromoteError> {
        let repo = self.reg.repo(image)?;
        let what = format!("upload {}", blob.digest);
        let start = self.url(&repo, "blobs/uploads/");
        let resp = self
            .send(&repo, &what, || {
                self.http.post(&start).header(CONTENT_LENGTH, "0")
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.err(
                &what,
                format!("starting the upload: HTTP {}", resp.status()),
            ));
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.err(&what, "no Location for the upload"))?;
        // The upload URL must stay on the registry we were given.
        let mut url = self
            .reg
            .base
            .join(location)
            .map_err(|e| self.err(&what, e))?;
        if url.origin() != self.reg.base.origin() {
            return Err(self.err(&what, format!("upload location {url} is on another host")));
        }
        url.query_pairs_mut()
            .append_pair("digest", &blob.digest.to_string());
        let auth = self.known_auth(&repo);
        let mut req = self
            .http
            .put(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, blob.size)
            .body(reqwest::Body::wrap_stream(body));
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.err(&what, describe(&e)))?;
        if resp.status() != StatusCode::CREATED {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(self.err(&what, format!("HTTP {status} {}", body.trim())));
        }
        Ok(())
    }

    async fn has_manifest(&self, image: &RepoName, digest: &Digest) -> Result<bool, PromoteError> {
        let repo = self.reg.repo(image)?;
        Ok(self
            .exists(&repo, &format!("manifests/{digest}"))
            .await?
            .is_some())
    }

    async fn put_manifest(
        &self,
        image: &RepoName,
        item: &ManifestItem,
    ) -> Result<(), PromoteError> {
        self.put_manifest_as(image, &item.digest.to_string(), item)
            .await
    }

    async fn tag(&self, image: &RepoName, tag: &Tag) -> Result<Option<Digest>, PromoteError> {
        let repo = self.reg.repo(image)?;
        let Some(resp) = self.exists(&repo, &format!("manifests/{tag}")).await? else {
            return Ok(None);
        };
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok())
            .ok_or_else(|| self.err(&format!("{repo}:{tag}"), "no Docker-Content-Digest"))?;
        Ok(Some(digest))
    }

    async fn set_tag(
        &self,
        image: &RepoName,
        tag: &Tag,
        item: &ManifestItem,
    ) -> Result<(), PromoteError> {
        self.put_manifest_as(image, tag.as_str(), item).await
    }

    async fn complete(&self, _closure: &Closure) -> Result<u64, PromoteError> {
        // A registry has no pins: what it holds stays until someone deletes it.
        Ok(0)
    }

    async fn discard(&self, _written: &[Digest]) -> usize {
        // Blobs without a manifest are the registry's garbage collector's to remove;
        // the distribution API has no way to delete them one by one reliably.
        0
    }

    async fn prune(
        &self,
        _keep: &BTreeMap<RepoName, Vec<TagTarget>>,
        _keep_digests: &HashSet<Digest>,
        _dry_run: bool,
    ) -> Result<Vec<String>, PromoteError> {
        Err(PromoteError::Usage(format!(
            "--prune is not implemented for registry destinations ({}); prune node stores only",
            self.reg.name
        )))
    }

    async fn finish(&self) -> Result<(), PromoteError> {
        Ok(())
    }
}
