//! Every metric ferry exports, named in one place (Prometheus conventions:
//! `ferry_<thing>_total` counters, `_bytes`, `_seconds`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route, method and status.
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    /// Cache lookups by kind (blob, manifest) and result (hit, miss, coalesced, stale).
    pub cache_lookups: IntCounterVec,
    /// Requests to upstreams by upstream, method and status ("error" when none came back).
    pub upstream_requests: IntCounterVec,
    /// Body bytes received from upstreams.
    pub upstream_bytes: IntCounterVec,
    /// Blob fills running now.
    pub fills_in_flight: IntGauge,
    /// Fills by outcome (committed, failed).
    pub fills: IntCounterVec,
    /// Body bytes sent to clients, by kind.
    pub served_bytes: IntCounterVec,
    /// Bytes and blobs the cache holds, and how much of it is pinned.
    pub cache_bytes: IntGauge,
    pub cache_blobs: IntGauge,
    pub cache_pinned_bytes: IntGauge,
    /// Blobs and bytes evicted.
    pub evictions: IntCounter,
    pub evicted_bytes: IntCounter,
    /// Time to write a batch of access times to the index.
    pub index_flush: Histogram,
}

impl Metrics {
    /// Where other parts (the HTTP server's limits) register their metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let http_requests = counter(
            "ferry_http_requests_total",
            "HTTP requests served",
            &["route", "method", "status"],
        )?;
        let cache_lookups = counter(
            "ferry_cache_lookups_total",
            "Cache lookups by kind and result",
            &["kind", "result"],
        )?;
        let upstream_requests = counter(
            "ferry_upstream_requests_total",
            "Requests sent to upstream registries",
            &["upstream", "method", "status"],
        )?;
        let upstream_bytes = counter(
            "ferry_upstream_received_bytes_total",
            "Body bytes received from upstreams",
            &["upstream"],
        )?;
        let fills = counter("ferry_fills_total", "Blob fills by outcome", &["outcome"])?;
        let served_bytes = counter(
            "ferry_served_bytes_total",
            "Body bytes sent to clients",
            &["kind"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "ferry_http_request_duration_seconds",
                "Time to response headers",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(http_duration.clone()))?;
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let fills_in_flight = gauge("ferry_fills_in_flight", "Blob fills running now")?;
        let cache_bytes = gauge("ferry_cache_bytes", "Bytes of content the cache holds")?;
        let cache_blobs = gauge(
            "ferry_cache_blobs",
            "Blobs (layers, configs, manifests) the cache holds",
        )?;
        let cache_pinned_bytes = gauge(
            "ferry_cache_pinned_bytes",
            "Bytes of pinned content, never evicted",
        )?;
        let single = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let evictions = single(
            "ferry_evictions_total",
            "Blobs evicted to stay within the size limit",
        )?;
        let evicted_bytes = single(
            "ferry_evicted_bytes_total",
            "Bytes evicted to stay within the size limit",
        )?;
        let index_flush = Histogram::with_opts(
            HistogramOpts::new(
                "ferry_index_flush_duration_seconds",
                "Time to write a batch of access times to the index",
            )
            .buckets(vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
            ]),
        )?;
        registry.register(Box::new(index_flush.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            cache_lookups,
            upstream_requests,
            upstream_bytes,
            fills_in_flight,
            fills,
            served_bytes,
            cache_bytes,
            cache_blobs,
            cache_pinned_bytes,
            evictions,
            evicted_bytes,
            index_flush,
        })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Counts a cache lookup, and notes its result for the request's access log.
    pub fn cache(&self, kind: &str, result: &'static str) {
        self.cache_lookups.with_label_values(&[kind, result]).inc();
        crate::access::cache(result);
    }
}
