//! The connection loop shared by `ferry serve` and `ferry redirect`: accept, TLS
//! (optional), HTTP/1.1 or HTTP/2 (ALPN over TLS, prior knowledge in plain text), the
//! limits of `[limits]`, one access-log line per request, and on shutdown: stop
//! accepting and let open connections finish what they are answering.
//!
//! [`Server::serve_on_workers`] runs the loop on several single-threaded runtimes that
//! accept from one listening socket, the way nginx runs worker processes: a
//! connection lives on the thread that accepted it, so answering a request never
//! hands work to another thread. That suits the redirector, whose requests are
//! microseconds of CPU and no I/O; the mirror node, whose requests wait on disks
//! and upstreams, uses the multi-threaded runtime it runs on.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::either::Either;
use tokio_util::task::TaskTracker;

use super::tls::{ReloadingTls, TlsError};
use crate::access::AccessNote;
use crate::config::server::{Limits, ServerOptions};
use crate::oci::{ErrorCode, OciError};

/// A request handler: given the peer, answers each request.
pub trait Handler: Clone + Send + Sync + 'static {
    fn call(&self, peer: SocketAddr, req: Request) -> impl Future<Output = Response> + Send;
}

/// Open connections per client address.
#[derive(Default)]
struct ConnTable(Mutex<HashMap<IpAddr, u32>>);

/// One counted connection; uncounted on drop.
struct ConnGuard(Arc<ConnTable>, IpAddr);

impl ConnTable {
    /// Counts a connection from `ip`; false when that makes more than `limit`.
    fn enter(self: &Arc<Self>, ip: IpAddr, limit: Option<u32>) -> (ConnGuard, bool) {
        let mut within = true;
        if let Ok(mut m) = self.0.lock() {
            let n = m.entry(ip).or_insert(0);
            *n += 1;
            within = limit.is_none_or(|l| *n <= l);
        }
        (ConnGuard(self.clone(), ip), within)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.0 .0.lock() {
            if let Some(n) = m.get_mut(&self.1) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.1);
                }
            }
        }
    }
}

/// The server side of either mode, built from `[tls]`, `[limits]` and `[log]`.
pub struct Server {
    limits: Limits,
    access_log: bool,
    tls: Option<Arc<ReloadingTls>>,
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    conns: Arc<ConnTable>,
    builder: auto::Builder<TokioExecutor>,
    /// Requests refused by a limit, by reason.
    refused: IntCounterVec,
}

impl Server {
    /// Loads the TLS files (if any) and registers `ferry_http_refused_total` in
    /// `registry`. Call within a runtime: it starts the certificate watch and the
    /// rate limiter's upkeep.
    pub fn new(opts: &ServerOptions, registry: &Registry) -> Result<Arc<Self>, ServerError> {
        let tls = opts.tls.clone().map(ReloadingTls::new).transpose()?;
        if let Some(t) = &tls {
            t.spawn_watch();
            t.reload_on_sighup();
        }
        let l = &opts.limits;
        let rate = l.requests_per_second.and_then(NonZeroU32::new).map(|rps| {
            let burst = NonZeroU32::new(l.burst).unwrap_or(rps);
            RateLimiter::keyed(Quota::per_second(rps).allow_burst(burst))
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(l.header_read_timeout)
            .max_buf_size(l.max_header_size.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(l.max_header_size).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(l.header_read_timeout))
            .keep_alive_timeout(Duration::from_secs(20));
        let refused = IntCounterVec::new(
            Opts::new(
                "ferry_http_refused_total",
                "Requests refused by a limit, by reason (rate, connections, header_size, body_size, timeout)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        let this = Arc::new(Self {
            limits: l.clone(),
            access_log: opts.log.access_log,
            tls,
            rate,
            conns: Arc::default(),
            builder,
            refused,
        });
        if this.rate.is_some() {
            let weak = Arc::downgrade(&this);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    let Some(this) = weak.upgrade() else { return };
                    if let Some(r) = &this.rate {
                        r.retain_recent();
                        r.shrink_to_fit();
                    }
                }
            });
        }
        Ok(this)
    }

    pub fn shutdown_grace(&self) -> Duration {
        self.limits.shutdown_grace
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Accepts on `listener` until `stop` turns true, then waits for open
    /// connections to finish the requests they are answering. (The caller bounds
    /// that wait.)
    pub async fn serve<H: Handler>(
        self: Arc<Self>,
        listener: TcpListener,
        handler: H,
        mut stop: watch::Receiver<bool>,
    ) {
        let tracker = TaskTracker::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of
                        // spinning, and keep serving the connections already open.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = stopped(&mut stop) => break,
            };
            let _ = stream.set_nodelay(true);
            let (guard, within) = self
                .conns
                .enter(peer.ip(), self.limits.connections_per_client);
            let conn = self
                .clone()
                .connection(stream, peer, within, handler.clone(), stop.clone());
            tracker.spawn(async move {
                let _counted = guard;
                conn.await;
            });
        }
        drop(listener);
        tracker.close();
        tracker.wait().await;
    }

    async fn connection<H: Handler>(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        within_limit: bool,
        handler: H,
        mut stop: watch::Receiver<bool>,
    ) {
        let io = match &self.tls {
            None => Either::Left(stream),
            Some(tls) => {
                let handshake = tls.acceptor().accept(stream);
                match tokio::time::timeout(self.limits.header_read_timeout, handshake).await {
                    Ok(Ok(s)) => Either::Right(s),
                    Ok(Err(e)) => {
                        tracing::debug!(client = %peer.ip(), error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                }
            }
        };
        let activity = Arc::new(Activity::new());
        let io = IdleIo {
            inner: io,
            activity: activity.clone(),
        };
        let this = self.clone();
        let busy = activity.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let this = this.clone();
            let handler = handler.clone();
            let busy = busy.clone();
            async move {
                busy.in_flight.fetch_add(1, Ordering::Relaxed);
                let resp = this.respond(peer, within_limit, req, &handler).await;
                busy.in_flight.fetch_sub(1, Ordering::Relaxed);
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let idle = self.limits.idle_timeout;
        let mut check = tokio::time::interval(idle.min(Duration::from_secs(5)) / 2);
        let (mut seen, mut quiet_since) = (0, tokio::time::Instant::now());
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                    return;
                }
                now = check.tick() => {
                    // No bytes either way and no request being answered: close. (A
                    // download in progress writes, so it is never idle.)
                    let events = activity.events.load(Ordering::Relaxed);
                    if events != seen || activity.in_flight.load(Ordering::Relaxed) > 0 {
                        (seen, quiet_since) = (events, now);
                    } else if now - quiet_since >= idle {
                        return;
                    }
                }
            }
        }
    }

    fn refuse(&self, reason: &str, err: OciError) -> Response {
        self.refused.with_label_values(&[reason]).inc();
        super::error_response(err)
    }

    async fn respond<H: Handler>(
        &self,
        peer: SocketAddr,
        within_limit: bool,
        req: hyper::Request<Incoming>,
        handler: &H,
    ) -> Response {
        // Only a logged request pays for the clock, the note and the copies.
        let logged = self.access_log.then(|| {
            (
                Instant::now(),
                req.method().clone(),
                req.uri().path().to_owned(),
                Arc::new(Mutex::new(AccessNote::default())),
            )
        });
        let ip = peer.ip();
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        // hyper stops reading a head at about max_header_size (it may read up to twice
        // that in one go); this makes the limit exact.
        let head_bytes: usize = req.uri().path().len()
            + req.uri().query().map_or(0, str::len)
            + req
                .headers()
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        let mut resp = if head_bytes > self.limits.max_header_size {
            self.refused.with_label_values(&["header_size"]).inc();
            let mut r = Response::new(Body::from("request header fields too large\n"));
            *r.status_mut() = axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            r
        } else if !within_limit {
            let mut r = self.refuse(
                "connections",
                too_many("too many open connections from your address", 1),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        } else if let Some(wait) = self.rate.as_ref().and_then(|r| r.check_key(&ip).err()) {
            let secs = wait.wait_time_from(DefaultClock::default().now()).as_secs() + 1;
            self.refuse("rate", too_many("request rate limit reached", secs))
        } else if declared.is_some_and(|n| n > self.limits.max_body_size) {
            self.refuse(
                "body_size",
                OciError::new(
                    ErrorCode::SizeInvalid,
                    format!(
                        "request body over the limit of {} bytes",
                        self.limits.max_body_size
                    ),
                ),
            )
        } else {
            let max = usize::try_from(self.limits.max_body_size).unwrap_or(usize::MAX);
            let req = req.map(|b| Body::new(http_body_util::Limited::new(b, max)));
            let answer = handler.call(peer, req);
            let limit = self.limits.request_timeout;
            let answered = match &logged {
                Some((_, _, _, note)) => {
                    tokio::time::timeout(limit, crate::access::scope(note.clone(), answer)).await
                }
                None => tokio::time::timeout(limit, answer).await,
            };
            match answered {
                Ok(r) => r,
                Err(_) => self.refuse(
                    "timeout",
                    OciError::new(
                        ErrorCode::Unavailable,
                        format!(
                            "no answer within {}",
                            humantime::format_duration(self.limits.request_timeout)
                        ),
                    ),
                ),
            }
        };
        if let Some((start, method, path, note)) = logged {
            let note = note.lock().map(|n| n.clone()).unwrap_or_default();
            let status = resp.status().as_u16();
            resp = resp.map(|body| {
                Body::new(LoggedBody {
                    inner: body,
                    bytes: 0,
                    line: Some(AccessLine {
                        start,
                        ip,
                        method,
                        path,
                        status,
                        note,
                    }),
                })
            });
        }
        resp
    }

    /// Serves `handler` on `workers` threads, each a single-threaded runtime
    /// accepting from its own handle on `listener`, until `shutdown` resolves; then
    /// stops accepting and returns once every worker's connections have finished,
    /// or when `limits.shutdown_grace` is over.
    pub async fn serve_on_workers<H: Handler>(
        self: Arc<Self>,
        listener: TcpListener,
        handler: H,
        workers: usize,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let listener = listener.into_std()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<std::io::Result<()>>(1);
        let workers = workers.max(1);
        for i in 0..workers {
            let listener = listener.try_clone()?;
            let handler = handler.clone();
            let stop = stop_rx.clone();
            let done = done_tx.clone();
            let this = self.clone();
            std::thread::Builder::new()
                .name(format!("ferry-http-{i}"))
                .spawn(move || {
                    let result = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .and_then(|rt| {
                            rt.block_on(async {
                                let listener = TcpListener::from_std(listener)?;
                                this.serve(listener, handler, stop).await;
                                Ok(())
                            })
                        });
                    let _ = done.blocking_send(result);
                })?;
        }
        drop((listener, done_tx));
        let mut shutdown = std::pin::pin!(shutdown);
        let mut finished = 0;
        let mut first_error = None;
        let mut deadline = None;
        loop {
            let grace_over = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown, if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + self.limits.shutdown_grace);
                    let _ = stop_tx.send(true);
                }
                () = grace_over => {
                    tracing::warn!(grace = ?self.limits.shutdown_grace, "connections still open after the grace period; closing them");
                    break;
                }
                result = done_rx.recv() => match result {
                    Some(r) => {
                        finished += 1;
                        if let Err(e) = r {
                            // A worker that cannot run stops them all.
                            let _ = stop_tx.send(true);
                            first_error.get_or_insert(e);
                        }
                        if finished == workers { break; }
                    }
                    None => break,
                },
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot set up metrics")]
    Metrics(#[from] prometheus::Error),
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn too_many(message: &str, retry_after: u64) -> OciError {
    let mut e = OciError::new(ErrorCode::TooManyRequests, message);
    e.retry_after = Some(retry_after);
    e
}

/// Worker threads for [`Server::serve_on_workers`]: one per CPU this process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether a connection moved bytes, and how many requests it is answering. Reads
/// and writes only bump a counter (no clock on the I/O path); the connection's
/// watchdog compares it between ticks.
struct Activity {
    events: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            events: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// A connection's socket, noting every read and write in its [`Activity`].
struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct AccessLine {
    start: Instant,
    ip: IpAddr,
    method: axum::http::Method,
    path: String,
    status: u16,
    note: AccessNote,
}

/// A response body that counts what it sends and writes the access-log line when it
/// is done (finished, or dropped because the client went away).
struct LoggedBody {
    inner: Body,
    bytes: u64,
    line: Option<AccessLine>,
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &frame {
            if let Some(d) = f.data_ref() {
                self.bytes += d.len() as u64;
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(l) = self.line.take() {
            tracing::info!(
                target: "ferry::access",
                client = %l.ip,
                method = %l.method,
                path = %l.path,
                status = l.status,
                bytes = self.bytes,
                duration_ms = l.start.elapsed().as_secs_f64() * 1000.0,
                upstream = l.note.upstream.as_deref().unwrap_or("-"),
                cache = l.note.cache.unwrap_or("-"),
                "request"
            );
        }
    }
}
