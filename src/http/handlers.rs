//! Request handlers: parse, call the mirror, shape the response. Nothing else.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use super::auth::Who;
use super::{AppState, Endpoint, EndpointError, RouteLabel};
use crate::oci::{ByteRange, ErrorCode, OciError};
use crate::proxy::{BlobReply, ManifestReply};

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// `200 {}` with `Docker-Distribution-API-Version`: the answer to `GET /v2/`.
pub fn api_version_response() -> Response {
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{}",
    )
        .into_response();
    r.headers_mut()
        .insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    r
}

pub async fn v2_base(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let mut resp = match base(&state, &method, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(RouteLabel("base"));
    resp
}

/// `GET /v2/`: 200, unless credentials are wrong, or some content needs them and
/// none came (the challenge tells clients to send theirs).
async fn base(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, OciError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(unsupported(method));
    }
    if let Some(auth) = &state.auth {
        if auth.identify(headers).await? == Who::Anonymous && auth.protects_anything() {
            return Err(auth.challenge("authentication required"));
        }
    }
    Ok(api_version_response())
}

/// Routes `name` (as the client named it) to its upstream, and checks the caller
/// may pull it from there.
async fn authorized_route(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    ns: Option<&str>,
) -> Result<crate::proxy::Route, OciError> {
    let route = state.mirror.route(name, ns)?;
    if let Some(auth) = &state.auth {
        let who = auth.identify(headers).await?;
        if who == Who::Anonymous && auth.protects(&route.upstream.cfg.name, name) {
            return Err(auth.challenge("authentication required"));
        }
    }
    Ok(route)
}

pub async fn v2(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    // The raw path, not axum's decoded capture: "%2F" must not become a separator.
    let rest = uri.path().strip_prefix("/v2/").unwrap_or_default();
    let (label, result) = match Endpoint::parse(rest) {
        Ok(endpoint) => {
            let label = endpoint.route_label();
            (
                label,
                dispatch(&state, &method, endpoint, uri.query(), &headers).await,
            )
        }
        Err(EndpointError::Bad(e)) => ("invalid", Err(e)),
        Err(EndpointError::NotFound) => ("other", Err(unknown_path())),
    };
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    resp.extensions_mut().insert(RouteLabel(label));
    resp
}

async fn dispatch(
    state: &AppState,
    method: &Method,
    endpoint: Endpoint,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, OciError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(unsupported(method));
    }
    let head = method == Method::HEAD;
    let q = Query::parse(query);
    let mirror = &state.mirror;
    match endpoint {
        Endpoint::Base => base(state, method, headers).await,
        Endpoint::Upload => Err(unsupported(method)),
        Endpoint::Manifest { name, reference } => {
            let route = authorized_route(state, headers, &name, q.ns.as_deref()).await?;
            let accept: Vec<&str> = headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let m = mirror.manifest(&route, &reference, &accept).await?;
            Ok(manifest_response(m, head, state))
        }
        Endpoint::Blob { name, digest } => {
            let route = authorized_route(state, headers, &name, q.ns.as_deref()).await?;
            let range = match headers.get(header::RANGE) {
                Some(v) => Some(ByteRange::parse(v.to_str().unwrap_or_default())?),
                None => None,
            };
            let reply = mirror.blob(&route, &digest, range, head).await?;
            Ok(blob_response(reply, &digest.to_string(), state))
        }
        Endpoint::Tags { name } => {
            let route = authorized_route(state, headers, &name, q.ns.as_deref()).await?;
            if q.n.as_deref().is_some_and(|n| n.parse::<u32>().is_err()) {
                return Err(OciError::new(
                    ErrorCode::PaginationNumberInvalid,
                    "n must be a non-negative integer",
                ));
            }
            let tags = mirror
                .tags(&route, q.n.as_deref(), q.last.as_deref())
                .await?;
            let mut resp = json_response(tags.body, "application/json", head);
            if let Some((n, last)) = tags.next {
                let mut qs = url::form_urlencoded::Serializer::new(String::new());
                if let Some(n) = n {
                    qs.append_pair("n", &n);
                }
                qs.append_pair("last", &last);
                if let Some(ns) = &q.ns {
                    qs.append_pair("ns", ns);
                }
                let link = format!("</v2/{name}/tags/list?{}>; rel=\"next\"", qs.finish());
                if let Ok(v) = HeaderValue::from_str(&link) {
                    resp.headers_mut().insert(header::LINK, v);
                }
            }
            Ok(resp)
        }
        Endpoint::Referrers { name, digest } => {
            let route = authorized_route(state, headers, &name, q.ns.as_deref()).await?;
            let r = mirror
                .referrers(&route, &digest, q.artifact_type.as_deref())
                .await?;
            let mut resp = json_response(r.body, &r.content_type, head);
            if let Some(f) = r
                .filters_applied
                .and_then(|f| HeaderValue::from_str(&f).ok())
            {
                resp.headers_mut().insert("oci-filters-applied", f);
            }
            Ok(resp)
        }
    }
}

#[derive(Default)]
struct Query {
    ns: Option<String>,
    n: Option<String>,
    last: Option<String>,
    artifact_type: Option<String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Self {
        let mut q = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let slot = match &*k {
                "ns" => &mut q.ns,
                "n" => &mut q.n,
                "last" => &mut q.last,
                "artifactType" => &mut q.artifact_type,
                _ => continue,
            };
            slot.get_or_insert_with(|| v.into_owned());
        }
        q
    }
}

fn unsupported(method: &Method) -> OciError {
    OciError::new(ErrorCode::Unsupported, "this is a read-only mirror")
        .with_detail(format!("{method} is not supported"))
}

fn unknown_path() -> OciError {
    OciError::new(ErrorCode::NameUnknown, "unknown API endpoint")
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

fn manifest_response(m: ManifestReply, head: bool, state: &AppState) -> Response {
    let len = m.bytes.len();
    let body = if head {
        Body::empty()
    } else {
        state
            .metrics
            .served_bytes
            .with_label_values(&["manifest"])
            .inc_by(len as u64);
        Body::from(m.bytes)
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(&m.media_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert("docker-content-digest", header_value(&m.digest.to_string()));
    h.insert(header::ETAG, header_value(&format!("\"{}\"", m.digest)));
    h.insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    resp
}

fn blob_response(reply: BlobReply, digest: &str, state: &AppState) -> Response {
    if let Some(url) = &reply.redirect {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        let h = resp.headers_mut();
        h.insert(header::LOCATION, header_value(url));
        h.insert("docker-content-digest", header_value(digest));
        h.insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
        return resp;
    }
    let body = match reply.body {
        None => Body::empty(),
        Some(stream) => {
            let counter = state.metrics.served_bytes.with_label_values(&["blob"]);
            Body::from_stream(stream.inspect_ok(move |chunk| counter.inc_by(chunk.len() as u64)))
        }
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("docker-content-digest", header_value(digest));
    h.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000, immutable"),
    );
    h.insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    match (reply.span, reply.size) {
        (Some(span), Some(size)) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(span.len()));
            h.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {}-{}/{size}", span.start, span.end)),
            );
        }
        (_, Some(size)) => {
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
        (_, None) => {}
    }
    resp
}

fn json_response(body: bytes::Bytes, content_type: &str, head: bool) -> Response {
    let len = body.len();
    let mut resp = Response::new(if head {
        Body::empty()
    } else {
        Body::from(body)
    });
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    resp
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.mirror.store().ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storage not ready: {e}\n"),
        )
            .into_response(),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

pub async fn not_found() -> Response {
    OciError::new(ErrorCode::NameUnknown, "not found").into_response()
}
