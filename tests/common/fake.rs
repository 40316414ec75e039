//! An in-process upstream for faults a real registry cannot produce on demand:
//! wrong bytes, cut bodies, 429s, 500s, slow streams, a token service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;

#[derive(Clone, Debug)]
pub enum Fault {
    /// Same length, last byte flipped.
    WrongBytes,
    /// Every GET without a Range sends the first `at` bytes, then drops the connection.
    CutAt(usize),
    /// 429 with `Retry-After`.
    TooMany(u64),
    /// The first `n` requests answer 500.
    FailFirst(usize),
    /// Chunks of `chunk` bytes with `delay` between them.
    Slow { chunk: usize, delay: Duration },
    /// No Content-Length (chunked body).
    NoLength,
    /// Ignore Range headers (answer 200 with the whole body).
    IgnoreRange,
    /// Wait this long before answering.
    Delay(Duration),
}

#[derive(Default)]
pub struct FakeState {
    pub blobs: Mutex<HashMap<String, Bytes>>,
    /// (repo, reference) → (body, media type); a tag and its digest are separate entries.
    pub manifests: Mutex<HashMap<(String, String), (Bytes, String)>>,
    pub faults: Mutex<HashMap<String, Vec<Fault>>>,
    /// Request counts by "METHOD /path".
    pub hits: Mutex<HashMap<String, usize>>,
    pub token_requests: AtomicUsize,
    /// When set, /v2 requests need `Bearer <token>` from /token, which needs these Basic credentials (if Some).
    pub bearer: Mutex<Option<Option<(String, String)>>>,
    /// When set, /v2 requests need exactly these Basic credentials.
    pub basic: Mutex<Option<(String, String)>>,
    /// Referrers by subject digest: (artifactType, descriptor JSON).
    pub referrers: Mutex<HashMap<String, Vec<(String, serde_json::Value)>>>,
    /// Every Authorization header seen on /v2 requests.
    pub seen_auth: Mutex<Vec<String>>,
    pub addr: Mutex<Option<SocketAddr>>,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub url: String,
    pub state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeUpstream {
    pub async fn start() -> Self {
        let state = Arc::new(FakeState::default());
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        *state.addr.lock().unwrap() = Some(addr);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// Adds a blob and returns its digest.
    pub fn add_blob(&self, data: impl Into<Bytes>) -> String {
        let data = data.into();
        let digest = format!("sha256:{}", super::sha256_hex(&data));
        self.state
            .blobs
            .lock()
            .unwrap()
            .insert(digest.clone(), data);
        digest
    }

    /// Adds a manifest under its digest and `tag`; returns the digest.
    pub fn add_manifest(&self, repo: &str, tag: &str, body: &[u8], media_type: &str) -> String {
        let digest = format!("sha256:{}", super::sha256_hex(body));
        let mut m = self.state.manifests.lock().unwrap();
        let v = (Bytes::copy_from_slice(body), media_type.to_owned());
        m.insert((repo.to_owned(), tag.to_owned()), v.clone());
        m.insert((repo.to_owned(), digest.clone()), v);
        digest
    }

    /// Adds the smallest valid OCI image manifest under `tag`; returns its digest.
    pub fn add_oci_manifest(&self, repo: &str, tag: &str) -> String {
        let mt = "application/vnd.oci.image.manifest.v1+json";
        let body = format!(r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{}},"layers":[]}}"#);
        self.add_manifest(repo, tag, body.as_bytes(), mt)
    }

    pub fn fault(&self, key: &str, fault: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .push(fault);
    }

    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    pub fn hits(&self, method: &str, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(&format!("{method} {path}"))
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    pub fn require_basic(&self, user: &str, pass: &str) {
        *self.state.basic.lock().unwrap() = Some((user.to_owned(), pass.to_owned()));
    }

    pub fn add_referrer(&self, subject: &str, artifact_type: &str, descriptor: serde_json::Value) {
        self.state
            .referrers
            .lock()
            .unwrap()
            .entry(subject.to_owned())
            .or_default()
            .push((artifact_type.to_owned(), descriptor));
    }

    pub fn require_bearer(&self, basic: Option<(&str, &str)>) {
        *self.state.bearer.lock().unwrap() = Some(basic.map(|(u, p)| (u.to_owned(), p.to_owned())));
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn has_basic(headers: &HeaderMap, user: &str, pass: &str) -> bool {
    use base64::Engine as _;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    );
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(want.as_str())
}

fn oci_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"errors":[{{"code":"{code}","message":"x"}}]}}"#),
    )
        .into_response()
}

async fn handle(
    State(st): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_owned();
    let count = {
        let mut hits = st.hits.lock().unwrap();
        let c = hits.entry(format!("{method} {path}")).or_default();
        *c += 1;
        *c
    };
    if path == "/token" {
        st.token_requests.fetch_add(1, Ordering::SeqCst);
        let need = st.bearer.lock().unwrap().clone();
        if let Some(Some((u, p))) = need {
            if !has_basic(&headers, &u, &p) {
                return oci_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
            }
        }
        let scope = uri.query().unwrap_or_default().to_owned();
        return (
            StatusCode::OK,
            format!(
                r#"{{"token":"tok-{}","expires_in":300,"scope":"{}"}}"#,
                scope.len(),
                scope.len()
            ),
        )
            .into_response();
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return oci_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    };
    if rest.is_empty() {
        return (StatusCode::OK, "{}").into_response();
    }
    if let Some(a) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        st.seen_auth.lock().unwrap().push(a.to_owned());
    }
    let basic = st.basic.lock().unwrap().clone();
    if let Some((u, p)) = basic {
        if !has_basic(&headers, &u, &p) {
            let mut r = oci_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                r#"Basic realm="fake""#.parse().unwrap(),
            );
            return r;
        }
    }
    if let Some((_, subject)) = rest.rsplit_once("/referrers/") {
        let q = uri.query().unwrap_or_default().to_owned();
        let filter = q
            .strip_prefix("artifactType=")
            .map(|t| t.replace("%2F", "/").replace("%2B", "+"));
        let all = st
            .referrers
            .lock()
            .unwrap()
            .get(subject)
            .cloned()
            .unwrap_or_default();
        let manifests: Vec<_> = all
            .into_iter()
            .filter(|(t, _)| filter.as_ref().is_none_or(|f| f == t))
            .map(|(_, d)| d)
            .collect();
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        let mut r = (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/vnd.oci.image.index.v1+json",
            )],
            body.to_string(),
        )
            .into_response();
        if filter.is_some() {
            r.headers_mut()
                .insert("oci-filters-applied", "artifactType".parse().unwrap());
        }
        return r;
    }
    if st.bearer.lock().unwrap().is_some() {
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer tok-"));
        if !ok {
            let addr = st.addr.lock().unwrap().unwrap();
            let repo = rest
                .split("/manifests/")
                .next()
                .unwrap_or("")
                .split("/blobs/")
                .next()
                .unwrap_or("");
            let challenge = format!(
                r#"Bearer realm="http://{addr}/token",service="fake",scope="repository:{repo}:pull""#
            );
            let mut r = oci_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
            return r;
        }
    }
    let (key, body, media_type) = if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        let m = st
            .manifests
            .lock()
            .unwrap()
            .get(&(repo.to_owned(), reference.to_owned()))
            .cloned();
        match m {
            Some((b, mt)) => (reference.to_owned(), b, mt),
            None => return oci_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        }
    } else if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        match st.blobs.lock().unwrap().get(digest).cloned() {
            Some(b) => (digest.to_owned(), b, "application/octet-stream".to_owned()),
            None => return oci_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        }
    } else if let Some(repo) = rest.strip_suffix("/tags/list") {
        // Pages of two, like a registry that honours n/last.
        let q = uri.query().unwrap_or_default();
        if q.contains("last=b") {
            return (
                StatusCode::OK,
                format!(r#"{{"name":"{repo}","tags":["c"]}}"#),
            )
                .into_response();
        }
        let mut r = (
            StatusCode::OK,
            format!(r#"{{"name":"{repo}","tags":["a","b"]}}"#),
        )
            .into_response();
        if q.contains("n=2") {
            let link = format!(r#"</v2/{repo}/tags/list?last=b&n=2>; rel="next""#);
            r.headers_mut().insert(header::LINK, link.parse().unwrap());
        }
        return r;
    } else {
        return oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    };
    let digest = format!("sha256:{}", super::sha256_hex(&body));
    let faults = st
        .faults
        .lock()
        .unwrap()
        .get(&key)
        .cloned()
        .unwrap_or_default();
    let mut body = body;
    let mut slow = None;
    let mut no_length = false;
    let mut cut = None;
    let mut honour_range = true;
    for f in faults {
        match f {
            Fault::WrongBytes => {
                let mut v = body.to_vec();
                if let Some(last) = v.last_mut() {
                    *last ^= 0xff;
                }
                body = v.into();
            }
            Fault::TooMany(secs) => {
                let mut r = oci_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
                r.headers_mut().insert(header::RETRY_AFTER, secs.into());
                return r;
            }
            Fault::FailFirst(n) if count <= n => {
                return oci_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN")
            }
            Fault::FailFirst(_) => {}
            Fault::CutAt(at) => cut = Some(at),
            Fault::Slow { chunk, delay } => slow = Some((chunk, delay)),
            Fault::NoLength => no_length = true,
            Fault::IgnoreRange => honour_range = false,
            Fault::Delay(d) => tokio::time::sleep(d).await,
        }
    }
    let total = body.len();
    let mut status = StatusCode::OK;
    let mut start = 0usize;
    if let Some(r) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| honour_range)
    {
        if let Some(s) = r
            .strip_prefix("bytes=")
            .and_then(|s| s.strip_suffix('-'))
            .and_then(|s| s.parse().ok())
        {
            start = s;
            status = StatusCode::PARTIAL_CONTENT;
            cut = None; // resumes succeed
        }
    }
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, media_type)
        .header("docker-content-digest", digest);
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", total - 1),
        );
    }
    if !no_length {
        resp = resp.header(header::CONTENT_LENGTH, total - start);
    }
    if method == Method::HEAD {
        return resp.body(Body::empty()).unwrap();
    }
    let data = body.slice(start..);
    let (chunk, delay) = slow.unwrap_or((256 * 1024, Duration::ZERO));
    let limit = cut.unwrap_or(usize::MAX);
    let stream = async_stream(data, chunk, delay, limit);
    resp.body(Body::from_stream(stream)).unwrap()
}

fn async_stream(
    data: Bytes,
    chunk: usize,
    delay: Duration,
    limit: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold((0usize, data), move |(pos, data)| async move {
        if pos >= data.len() {
            return None;
        }
        if pos >= limit {
            return Some((Err(std::io::Error::other("cut")), (data.len(), data)));
        }
        if !delay.is_zero() && pos > 0 {
            tokio::time::sleep(delay).await;
        }
        let end = (pos + chunk).min(data.len()).min(limit.max(pos + 1));
        let item = data.slice(pos..end);
        Some((Ok(item), (end, data)))
    })
}
