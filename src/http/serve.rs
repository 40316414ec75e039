//! The connection loop shared by `ferry serve` and `ferry redirect`: accept, set
//! `TCP_NODELAY`, speak HTTP/1.1 or h2c (hyper's auto builder), and on shutdown stop
//! accepting and let open connections finish their requests.
//!
//! [`serve_on_workers`] runs the loop on several single-threaded runtimes that
//! accept from one listening socket, the way nginx runs worker processes: a
//! connection lives on the thread that accepted it, so answering a request never
//! hands work to another thread. That suits the redirector, whose requests are
//! microseconds of CPU and no I/O; the mirror node, whose requests wait on disks
//! and upstreams, uses the multi-threaded runtime it runs on.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a request's head may take: larger heads get 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A per-connection request handler: given the peer, answers each request.
pub trait Handler: Clone + Send + 'static {
    fn call(&self, peer: SocketAddr, req: Request) -> impl Future<Output = Response> + Send;
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    b
}

/// Accepts on `listener` until `stop` turns true, then waits for open connections
/// to finish the requests they are answering. (The caller bounds that wait.)
pub async fn serve_connections<H: Handler>(
    listener: TcpListener,
    handler: H,
    mut stop: watch::Receiver<bool>,
) {
    let builder = builder();
    let graceful = GracefulShutdown::new();
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
            _ = stop.wait_for(|s| *s) => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.call(peer, req.map(Body::new)).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(graceful.watch(conn));
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves `handler` on `workers` threads, each a single-threaded runtime accepting
/// from its own handle on `listener`, until `shutdown` resolves; then stops
/// accepting and returns once every worker's connections have finished.
pub async fn serve_on_workers<H: Handler>(
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
        std::thread::Builder::new()
            .name(format!("ferry-http-{i}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        rt.block_on(async {
                            let listener = TcpListener::from_std(listener)?;
                            serve_connections(listener, handler, stop).await;
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
    let mut stopping = false;
    loop {
        tokio::select! {
            () = &mut shutdown, if !stopping => {
                stopping = true;
                let _ = stop_tx.send(true);
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

/// Worker threads for [`serve_on_workers`]: one per CPU this process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
