//! HTTP: the router, thin handlers and the request middleware.
//!
//! Handlers parse the request into typed values, call the [`Mirror`], and turn the
//! reply into a response. Errors travel as [`OciError`]s into one responder, which
//! also attaches the error to the response so the middleware can log it once.

pub mod auth;
pub mod endpoint;
mod handlers;
pub mod serve;
pub mod tls;

pub use handlers::api_version_response;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

pub use endpoint::{Endpoint, EndpointError};

use crate::metrics::Metrics;
use crate::oci::OciError;
use crate::proxy::Mirror;

#[derive(Clone)]
pub struct AppState {
    pub mirror: Arc<Mirror>,
    pub metrics: Arc<Metrics>,
    /// `[auth]`; `None` lets everyone pull.
    pub auth: Option<Arc<auth::Auth>>,
}

/// The route label a handler chose, for metrics.
#[derive(Clone, Copy)]
struct RouteLabel(&'static str);

/// The mirror node's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(handlers::v2_base))
        .route("/v2/", any(handlers::v2_base))
        .route("/v2/{*rest}", any(handlers::v2))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts and times every request, and logs errors once.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let route = resp
        .extensions()
        .get::<RouteLabel>()
        .map_or("other", |r| r.0);
    let status = resp.status();
    state
        .metrics
        .http_requests
        .with_label_values(&[route, method.as_str(), status.as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[route])
        .observe(start.elapsed().as_secs_f64());
    if let Some(err) = resp.extensions().get::<OciError>() {
        if status.is_server_error() {
            tracing::warn!(%method, %path, status = status.as_u16(), error = %err, "request failed");
        } else {
            tracing::debug!(%method, %path, status = status.as_u16(), error = %err, "request refused");
        }
    }
    resp
}

/// The one place an [`OciError`] becomes a response.
pub fn error_response(err: OciError) -> Response {
    let status =
        StatusCode::from_u16(err.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(err.body_json()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    if let Some(secs) = err.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(c) = err
        .challenge
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(header::WWW_AUTHENTICATE, c);
    }
    if let Some(size) = err.blob_size {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp.extensions_mut().insert(err);
    resp
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        error_response(self)
    }
}
