//! The S3 backend against local disk, through real in-process ferry nodes on loopback
//! and a real S3-compatible server (s3s-fs, which `scripts/test.sh` installs):
//! - `warm_blob/{fs,s3}/N`: N clients each GET a cached 64 MiB blob, from a node on
//!   local disk and from a node streaming it from S3;
//! - `warm_blob/s3_direct/N`: the same object straight from the S3 server (a GET of a
//!   presigned URL): the ceiling for streaming through the node;
//! - `redirect/32`: 32 connections asking a `redirect = true` node for a cached blob,
//!   answered with a presigned 307 (reported as requests per second).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_storage::s3_testing::{S3Server, ACCESS_KEY, SECRET_KEY};
use ferry_storage::{BlobStore, Digest};

mod common;

use common::{blob, fan_out, SIZE};

/// A node serving `storage` (a `[storage]` body without `path`) with `data` cached.
async fn node(storage: &str, dir: &std::path::Path, data: &Bytes) -> String {
    let text = format!(
        "[storage]\npath = {:?}\n{storage}\n[[upstream]]\nname = \"up\"\nurl = \"http://127.0.0.1:1\"\ndefault = true\n",
        dir.display().to_string()
    );
    let config = ferry::config::Config::from_toml(&text, "bench", None).unwrap();
    let app = ferry::build_app(&config).await.unwrap();
    let digest = Digest::of(data);
    let mut w = app
        .store
        .writer(&digest, Some(data.len() as u64))
        .await
        .unwrap();
    for chunk in data.chunks(1 << 20) {
        w.write(chunk).await.unwrap();
    }
    w.commit().await.unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(ferry::run_app(l, app, std::future::pending()));
    format!("http://{addr}/v2/bench/blobs/{digest}")
}

fn s3_backend(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = blob();
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let (server, fs_url, s3_url, redirect_url) = rt.block_on(async {
        let server = S3Server::start().await;
        let s3 = format!(
            "backend = \"s3\"\nbucket = {:?}\nendpoint = {:?}\npath_style = true\naccess_key_id = {ACCESS_KEY:?}\nsecret_access_key = {SECRET_KEY:?}\n",
            server.bucket, server.endpoint
        );
        let fs_url = node("", dirs[0].path(), &data).await;
        let s3_url = node(&format!("{s3}prefix = \"stream\""), dirs[1].path(), &data).await;
        let redirect_url = node(
            &format!("{s3}prefix = \"redirect\"\nredirect = true"),
            dirs[2].path(),
            &data,
        )
        .await;
        (server, fs_url, s3_url, redirect_url)
    });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let no_follow = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let presigned = rt.block_on(async {
        let r = no_follow.get(&redirect_url).send().await.unwrap();
        assert_eq!(r.status(), 307);
        r.headers()["location"].to_str().unwrap().to_owned()
    });

    let mut g = c.benchmark_group("warm_blob");
    g.sample_size(10);
    for clients in [1usize, 8, 32] {
        g.throughput(Throughput::Bytes((SIZE * clients) as u64));
        for (name, url) in [("fs", &fs_url), ("s3", &s3_url), ("s3_direct", &presigned)] {
            g.bench_with_input(BenchmarkId::new(name, clients), &clients, |b, &n| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (client, url) = (client.clone(), url.clone());
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += fan_out(&client, &url, n).await;
                        }
                        total
                    }
                })
            });
        }
    }
    g.finish();

    // Each iteration: 32 connections, 32 requests each.
    let mut g = c.benchmark_group("redirect");
    g.throughput(Throughput::Elements(32 * 32));
    g.bench_function("32", |b| {
        b.to_async(&rt).iter(|| {
            let (client, url) = (no_follow.clone(), redirect_url.clone());
            async move {
                let tasks: Vec<_> = (0..32)
                    .map(|_| {
                        let (client, url) = (client.clone(), url.clone());
                        tokio::spawn(async move {
                            for _ in 0..32 {
                                let r = client.get(&url).send().await.unwrap();
                                assert_eq!(r.status(), 307);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            }
        })
    });
    g.finish();
    drop(server);
}

criterion_group!(benches, s3_backend);
criterion_main!(benches);
