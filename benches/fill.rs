//! Criterion micro-benchmarks of the verify-and-fan-out path:
//! - `verify`: sha256 + byte count over a 64 MiB blob (the floor for any fill);
//! - `fs_write_commit`: the fs store's hash-while-writing, fsync and rename;
//! - `cold_fill/N`: N clients requesting one cold 64 MiB blob from an in-process ferry
//!   whose upstream serves from memory — one upstream GET, N verified streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Uri};
use axum::response::Response;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_storage::{BlobStore, Digest, FsStore, Verifier};

mod common;

use common::{blob, fan_out, SIZE};

fn verify(c: &mut Criterion) {
    let data = blob();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    g.bench_function("sha256_64MiB", |b| {
        b.iter(|| {
            let mut v = Verifier::new();
            for chunk in data.chunks(256 * 1024) {
                v.update(chunk);
            }
            v.finish()
        })
    });
    g.finish();
}

fn fs_write_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = blob();
    let digest = Digest::of(&data);
    let mut g = c.benchmark_group("fs_write_commit");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    g.bench_function("64MiB", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let data = data.clone();
            let digest = digest.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let store = FsStore::open(dir.path()).await.unwrap();
                    let start = Instant::now();
                    let mut w = store.writer(&digest, Some(SIZE as u64)).await.unwrap();
                    for chunk in data.chunks(64 * 1024) {
                        w.write(chunk).await.unwrap();
                    }
                    w.commit().await.unwrap();
                    total += start.elapsed();
                }
                total
            }
        })
    });
    g.finish();
}

struct Upstream {
    data: Bytes,
    gets: AtomicUsize,
}

async fn serve_blob(State(up): State<Arc<Upstream>>, uri: Uri) -> Response {
    if uri.path() == "/v2/" {
        return Response::new(Body::from("{}"));
    }
    up.gets.fetch_add(1, Ordering::Relaxed);
    let data = up.data.clone();
    // Stream in 64 KiB chunks, as a network upstream would arrive.
    let chunks = futures_util::stream::iter(
        (0..data.len())
            .step_by(64 * 1024)
            .map(move |i| Ok::<_, std::io::Error>(data.slice(i..(i + 64 * 1024).min(data.len())))),
    );
    let mut r = Response::new(Body::from_stream(chunks));
    r.headers_mut().insert(header::CONTENT_LENGTH, SIZE.into());
    r
}

fn cold_fill(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = blob();
    let digest = Digest::of(&data);
    let up = Arc::new(Upstream {
        data: data.clone(),
        gets: AtomicUsize::new(0),
    });
    let up_addr = rt.block_on(async {
        let app = axum::Router::new()
            .fallback(serve_blob)
            .with_state(up.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut g = c.benchmark_group("cold_fill");
    g.sample_size(10);
    for clients in [1usize, 8, 32] {
        g.throughput(Throughput::Bytes((SIZE * clients) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(clients), &clients, |b, &clients| {
            b.to_async(&rt).iter_custom(|iters| {
                let client = client.clone();
                let digest = digest.clone();
                let up = up.clone();
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = tempfile::tempdir().unwrap();
                        let text = format!(
                            "[storage]\npath = {:?}\n[[upstream]]\nname = \"up\"\nurl = \"http://{up_addr}\"\ndefault = true\n",
                            dir.path().display().to_string()
                        );
                        let config = ferry::config::Config::from_toml(&text, "bench", None).unwrap();
                        let app = ferry::build_app(&config).await.unwrap();
                        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                        let addr = l.local_addr().unwrap();
                        let server = tokio::spawn(ferry::run_app(l, app, std::future::pending()));
                        let url = format!("http://{addr}/v2/bench/blobs/{digest}");
                        let before = up.gets.load(Ordering::Relaxed);
                        total += fan_out(&client, &url, clients).await;
                        assert_eq!(up.gets.load(Ordering::Relaxed) - before, 1, "one upstream GET per cold blob");
                        server.abort();
                    }
                    total
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, verify, fs_write_commit, cold_fill);
criterion_main!(benches);
