//! Shared by the benchmarks.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

/// The blob size the throughput benchmarks move.
pub const SIZE: usize = 64 << 20;

/// `SIZE` deterministic, incompressible bytes (xorshift).
pub fn blob() -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(SIZE);
    while v.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

/// `clients` concurrent GETs of `url`; total time for all of them.
pub async fn fan_out(client: &reqwest::Client, url: &str, clients: usize) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let resp = client.get(&url).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                let mut s = resp.bytes_stream();
                let mut n = 0;
                while let Some(c) = s.next().await {
                    n += c.unwrap().len();
                }
                n
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), SIZE);
    }
    start.elapsed()
}
