//! The registry client: one per configured upstream.
//!
//! Owns authentication (anonymous or credentialed Bearer tokens, Basic), the token
//! cache, timeouts and retries. It only ever builds URLs from the configured base URL
//! plus a validated repository and reference; the only other hosts it talks to are
//! the token realm and blob redirect targets that the configured upstream itself names.
//! Must not know about the store or HTTP handlers.

mod auth;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::config::UpstreamConfig;
use crate::metrics::Metrics;
use crate::oci::RepoName;

pub use auth::{parse_challenge, Challenge, TokenResponse};

/// What went wrong talking to an upstream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("not found upstream")]
    NotFound,
    #[error("upstream denied access (HTTP {status})")]
    Denied { status: u16 },
    #[error("upstream rate limit (HTTP 429)")]
    TooManyRequests { retry_after: Option<u64> },
    #[error("upstream answered HTTP {status}")]
    Status { status: u16 },
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    /// This node already has `max_concurrency` requests open to the upstream and
    /// none finished within the queue wait.
    #[error("too many requests to the upstream in flight")]
    Busy,
}

impl UpstreamError {
    /// Errors that say "the upstream is unwell", not "the content does not exist":
    /// the ones that justify serving stale content.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::TooManyRequests { .. } | Self::Unreachable(_) | Self::Busy => true,
            Self::Status { status } => *status >= 500,
            Self::NotFound | Self::Denied { .. } | Self::Protocol(_) => false,
        }
    }
}

#[derive(Clone)]
struct Token {
    header: HeaderValue,
    expires: Instant,
}

pub struct Upstream {
    pub cfg: UpstreamConfig,
    http: reqwest::Client,
    /// Bearer tokens by scope, until their expiry.
    tokens: moka::sync::Cache<String, Token>,
    /// Set once the upstream asked for Basic auth: send it up front from then on.
    basic: AtomicBool,
    metrics: Arc<Metrics>,
    /// `max_concurrency` permits: one per request open to the upstream, held until
    /// its body is read or dropped.
    permits: Arc<tokio::sync::Semaphore>,
}

/// An upstream's answer. It holds one of the upstream's concurrency permits until
/// its body has been read or it is dropped.
pub struct UpstreamResponse {
    resp: reqwest::Response,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl std::ops::Deref for UpstreamResponse {
    type Target = reqwest::Response;
    fn deref(&self) -> &reqwest::Response {
        &self.resp
    }
}

impl UpstreamResponse {
    /// The body as a stream, still holding the permit.
    pub fn bytes_stream(
        self,
    ) -> impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static {
        use futures_util::StreamExt as _;
        let permit = self.permit;
        self.resp.bytes_stream().map(move |chunk| {
            let _held = &permit;
            chunk
        })
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Upstream {
    pub fn new(cfg: UpstreamConfig, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()?;
        Ok(Self {
            permits: Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrency as usize)),
            cfg,
            http,
            tokens: moka::sync::Cache::builder().max_capacity(10_000).build(),
            basic: AtomicBool::new(false),
            metrics,
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    fn url(&self, repo: &RepoName, suffix: &str) -> String {
        format!("{}v2/{}/{}", self.cfg.url, repo, suffix)
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        let c = self.cfg.credentials.as_ref()?;
        basic_auth(&c.username, &c.password)
    }

    fn cached_auth(&self, scope: &str) -> Option<HeaderValue> {
        if let Some(t) = self
            .tokens
            .get(scope)
            .filter(|t| t.expires > Instant::now())
        {
            return Some(t.header);
        }
        if self.basic.load(Ordering::Relaxed) {
            return self.basic_header();
        }
        None
    }

    /// Sends a GET/HEAD for `/v2/<repo>/<suffix>`, authenticating and retrying as
    /// needed. Only 2xx answers come back as `Ok`.
    pub async fn request(
        &self,
        method: Method,
        repo: &RepoName,
        suffix: &str,
        query: &[(&str, String)],
        headers: HeaderMap,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let permit =
            tokio::time::timeout(self.cfg.queue_timeout, self.permits.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or(UpstreamError::Busy)?;
        let scope = format!("repository:{repo}:pull");
        let url = self.url(repo, suffix);
        let mut auth = self.cached_auth(&scope);
        let mut authenticated_retry = false;
        let mut attempt = 0u32;
        loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .headers(headers.clone());
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(a) = &auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            let result = req.send().await;
            let status_label = match &result {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "error".to_owned(),
            };
            self.metrics
                .upstream_requests
                .with_label_values(&[self.name(), method.as_str(), &status_label])
                .inc();
            let err = match result {
                Ok(resp) if resp.status().is_success() => {
                    return Ok(UpstreamResponse { resp, permit })
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !authenticated_retry => {
                    authenticated_retry = true;
                    auth = Some(self.authenticate(&resp, &scope).await?);
                    continue;
                }
                Ok(resp) => match resp.status().as_u16() {
                    404 => return Err(UpstreamError::NotFound),
                    s @ (401 | 403) => return Err(UpstreamError::Denied { status: s }),
                    429 => {
                        return Err(UpstreamError::TooManyRequests {
                            retry_after: retry_after(resp.headers()),
                        })
                    }
                    s => UpstreamError::Status { status: s },
                },
                Err(e) => UpstreamError::Unreachable(describe(&e)),
            };
            let retryable = matches!(err, UpstreamError::Unreachable(_))
                || matches!(err, UpstreamError::Status { status } if status >= 500);
            if !retryable || attempt >= self.cfg.retries {
                return Err(err);
            }
            let delay = backoff(attempt);
            tracing::debug!(upstream = self.name(), %url, error = %err, attempt, ?delay, "retrying upstream request");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Answers a 401 challenge: fetches a Bearer token (cached per scope) or switches to Basic.
    async fn authenticate(
        &self,
        resp: &reqwest::Response,
        scope: &str,
    ) -> Result<HeaderValue, UpstreamError> {
        let challenge = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge)
            .ok_or(UpstreamError::Denied { status: 401 })?;
        match challenge {
            Challenge::Basic => {
                self.basic.store(true, Ordering::Relaxed);
                self.basic_header()
                    .ok_or(UpstreamError::Denied { status: 401 })
            }
            Challenge::Bearer {
                realm,
                service,
                scope: challenge_scope,
            } => {
                let scope = challenge_scope.unwrap_or_else(|| scope.to_owned());
                self.fetch_token(&realm, service.as_deref(), &scope).await
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<HeaderValue, UpstreamError> {
        let realm_url = url::Url::parse(realm)
            .map_err(|e| UpstreamError::Protocol(format!("token realm {realm:?}: {e}")))?;
        // Never downgrade: an https upstream's credentials only travel over https.
        let scheme_ok = realm_url.scheme() == "https"
            || (realm_url.scheme() == "http" && self.cfg.url.scheme() == "http");
        if !scheme_ok {
            return Err(UpstreamError::Protocol(format!(
                "token realm {realm:?} is not https"
            )));
        }
        let mut query = vec![("scope", scope.to_owned())];
        if let Some(s) = service {
            query.push(("service", s.to_owned()));
        }
        let mut req = self.http.get(realm_url).query(&query);
        if let Some(basic) = self.basic_header() {
            req = req.header(AUTHORIZATION, basic);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable(describe(&e)))?;
        self.metrics
            .upstream_requests
            .with_label_values(&[self.name(), "TOKEN", resp.status().as_str()])
            .inc();
        match resp.status().as_u16() {
            200..=299 => {}
            s @ (401 | 403) => return Err(UpstreamError::Denied { status: s }),
            429 => {
                return Err(UpstreamError::TooManyRequests {
                    retry_after: retry_after(resp.headers()),
                })
            }
            s => return Err(UpstreamError::Status { status: s }),
        }
        let body: auth::TokenResponse = resp
            .json()
            .await
            .map_err(|e| UpstreamError::Protocol(format!("token response: {e}")))?;
        let (token, ttl) = body
            .token()
            .ok_or_else(|| UpstreamError::Protocol("token response has no token".into()))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            UpstreamError::Protocol("token has characters not allowed in a header".into())
        })?;
        header.set_sensitive(true);
        // Renew a little early so a token never expires between check and use.
        let expires =
            Instant::now() + Duration::from_secs(ttl).saturating_sub(Duration::from_secs(5));
        self.tokens.insert(
            scope.to_owned(),
            Token {
                header: header.clone(),
                expires,
            },
        );
        Ok(header)
    }
}

/// An `Authorization: Basic` value, marked sensitive so it never appears in logs.
pub fn basic_auth(username: &str, password: &str) -> Option<HeaderValue> {
    let raw = format!("{username}:{password}");
    let mut v = HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
    .ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Exponential backoff: 100 ms, 400 ms, 1.6 s, then 2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(4u64.saturating_pow(attempt))).min(MAX_BACKOFF)
}

/// `Retry-After` in seconds (the delta-seconds form; an HTTP date counts as unknown).
pub fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

/// A reqwest error with its cause chain, without the URL's query string.
pub fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(400));
        assert_eq!(backoff(5), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn transient_errors() {
        assert!(UpstreamError::Status { status: 502 }.is_transient());
        assert!(UpstreamError::TooManyRequests { retry_after: None }.is_transient());
        assert!(!UpstreamError::NotFound.is_transient());
        assert!(!UpstreamError::Denied { status: 401 }.is_transient());
    }
}
