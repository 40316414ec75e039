//! Cache index benchmarks (criterion):
//! - `hit_path/{fs,indexed}`: stat + read of a cached 4 KiB blob, without and with the
//!   index (the index adds a RocksDB point read, an in-memory touch and a lease);
//! - `eviction_1m/plan_100k`: choosing 100k LRU victims in an index of 1,000,000 blobs;
//! - `eviction_1m/remove_10k`: removing 10k victims (index batch + no disk: empty store);
//! - `eviction_1m/hit_while_evicting`: one index lookup + touch while another thread
//!   plans and removes victims continuously — serving must not stall;
//! - `recovery_100k`: start-up reconciliation of a store of 100,000 blobs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ferry_storage::{BlobStore, Digest, FsStore, Index, IndexedStore, Limits};
use futures_util::StreamExt;

fn digest(i: u64) -> Digest {
    Digest::of(&i.to_le_bytes())
}

async fn read_all(store: &dyn BlobStore, d: &Digest) -> usize {
    let _ = store.stat(d).await.unwrap().unwrap();
    let mut s = store.get(d, None).await.unwrap().unwrap().stream;
    let mut n = 0;
    while let Some(c) = s.next().await {
        n += c.unwrap().len();
    }
    n
}

fn hit_path(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = vec![7u8; 4096];
    let d = Digest::of(&data);
    let (fs, indexed) = rt.block_on(async {
        let fs = Arc::new(FsStore::open(dir.path().join("store")).await.unwrap());
        let index = Arc::new(Index::open(&dir.path().join("index")).unwrap());
        let indexed = IndexedStore::new(fs.clone(), index, Limits::default());
        let mut w = indexed.writer(&d, Some(4096)).await.unwrap();
        w.write(&data).await.unwrap();
        w.commit().await.unwrap();
        (fs, indexed)
    });
    let mut g = c.benchmark_group("hit_path");
    g.bench_function("fs", |b| b.to_async(&rt).iter(|| read_all(&*fs, &d)));
    g.bench_function("indexed", |b| {
        b.to_async(&rt).iter(|| read_all(&indexed, &d))
    });
    g.finish();
}

/// An index of `n` blobs of 1 MiB with increasing access times.
fn big_index(dir: &std::path::Path, n: u64) -> Arc<Index> {
    let index = Arc::new(Index::open(dir).unwrap());
    for i in 0..n {
        index.insert_blob(&digest(i), 1 << 20, None).unwrap();
    }
    index
}

fn eviction(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let index = big_index(dir.path(), 1_000_000);
    eprintln!("built an index of 1,000,000 blobs in {:?}", start.elapsed());
    let mut g = c.benchmark_group("eviction_1m");
    g.sample_size(10);
    g.bench_function("plan_100k", |b| {
        b.iter(|| assert_eq!(index.plan_eviction(100_000 << 20).unwrap().len(), 100_000))
    });
    g.bench_function("remove_10k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let victims = index.plan_eviction(10_000 << 20).unwrap();
                let t = Instant::now();
                for (d, _) in &victims {
                    index.remove_blob(d).unwrap();
                }
                total += t.elapsed();
                for (d, size) in victims {
                    index.insert_blob(&d, size, None).unwrap();
                }
            }
            total
        })
    });
    // Serving while eviction runs flat out on another thread.
    let stop = Arc::new(AtomicBool::new(false));
    let evictor = {
        let (index, stop) = (index.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let victims = index.plan_eviction(5_000 << 20).unwrap();
                for (d, _) in &victims {
                    index.remove_blob(d).unwrap();
                }
                for (d, size) in victims {
                    index.insert_blob(&d, size, None).unwrap();
                }
            }
        })
    };
    let hot = digest(999_999);
    g.sample_size(50);
    g.bench_function("hit_while_evicting", |b| {
        b.iter(|| {
            let e = index.entry(&hot).unwrap();
            index.touch(&hot);
            e
        })
    });
    stop.store(true, Ordering::Relaxed);
    evictor.join().unwrap();
    g.bench_function("hit_idle", |b| {
        b.iter(|| {
            let e = index.entry(&hot).unwrap();
            index.touch(&hot);
            e
        })
    });
    g.finish();
}

fn recovery(c: &mut Criterion) {
    const N: u64 = 100_000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store");
    let index_path = dir.path().join("index");
    let start = Instant::now();
    rt.block_on(async {
        let fs = Arc::new(FsStore::open(&store_path).await.unwrap());
        let index = Arc::new(Index::open(&index_path).unwrap());
        let store = IndexedStore::new(fs, index, Limits::default());
        for i in 0..N {
            let data = i.to_le_bytes();
            let mut w = store.writer(&Digest::of(&data), Some(8)).await.unwrap();
            w.write(&data).await.unwrap();
            w.commit().await.unwrap();
        }
    });
    eprintln!("built a store of {N} blobs in {:?}", start.elapsed());
    let mut g = c.benchmark_group("recovery_100k");
    g.sample_size(10);
    g.bench_function("open_and_reconcile", |b| {
        b.to_async(&rt).iter(|| async {
            let fs = Arc::new(FsStore::open(&store_path).await.unwrap());
            let index = Arc::new(Index::open(&index_path).unwrap());
            let store = IndexedStore::new(fs, index, Limits::default());
            let report = store.reconcile(true, false).await.unwrap();
            assert!(report.is_clean());
            assert_eq!(report.checked, N);
        })
    });
    g.finish();
}

criterion_group!(benches, hit_path, eviction, recovery);
criterion_main!(benches);
