//! The behaviour every [`BlobStore`] backend must show, as one suite that each
//! backend's tests call with a fresh, empty store.

use std::collections::HashSet;

use futures_util::StreamExt;

use crate::store::{read_to_vec, BlobStore, ByteSpan, StoreError};
use crate::Digest;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

async fn read_all(
    store: &dyn BlobStore,
    d: &Digest,
    span: Option<ByteSpan>,
) -> Result<Vec<u8>, String> {
    let body = store
        .get(d, span)
        .await
        .map_err(|e| format!("get {d}: {e}"))?
        .ok_or_else(|| format!("get {d}: absent"))?;
    read_to_vec(body.stream, usize::MAX)
        .await
        .map_err(|e| format!("read {d}: {e}"))
}

async fn put(
    store: &dyn BlobStore,
    data: &[u8],
    expected_size: Option<u64>,
) -> Result<u64, StoreError> {
    let d = Digest::of(data);
    let mut w = store.writer(&d, expected_size).await?;
    for chunk in data.chunks(7919) {
        w.write(chunk).await?;
    }
    w.commit().await
}

/// Runs the suite; the error names the first broken promise.
pub async fn run(store: &dyn BlobStore) -> Result<(), String> {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let d = Digest::of(&data);

    // Absent content.
    ensure!(
        store.stat(&d).await.map_err(|e| e.to_string())?.is_none(),
        "stat of absent blob"
    );
    ensure!(
        store
            .get(&d, None)
            .await
            .map_err(|e| e.to_string())?
            .is_none(),
        "get of absent blob"
    );
    ensure!(
        !store.delete(&d).await.map_err(|e| e.to_string())?,
        "delete of absent blob"
    );

    // A good write becomes visible whole and by span.
    let n = put(store, &data, Some(data.len() as u64))
        .await
        .map_err(|e| e.to_string())?;
    ensure!(n == data.len() as u64, "commit returned size {n}");
    ensure!(
        store.stat(&d).await.map_err(|e| e.to_string())? == Some(data.len() as u64),
        "stat size"
    );
    ensure!(
        read_all(store, &d, None).await? == data,
        "whole read differs"
    );
    let span = ByteSpan {
        start: 1000,
        end: 150_000,
    };
    ensure!(
        read_all(store, &d, Some(span)).await? == data[1000..=150_000],
        "span read differs"
    );
    let last = ByteSpan {
        start: data.len() as u64 - 1,
        end: data.len() as u64 - 1,
    };
    ensure!(
        read_all(store, &d, Some(last)).await? == data[data.len() - 1..],
        "last byte differs"
    );
    let past = ByteSpan {
        start: 10,
        end: data.len() as u64,
    };
    ensure!(
        matches!(
            store.get(&d, Some(past)).await,
            Err(StoreError::SpanOutOfRange { .. })
        ),
        "span past the end accepted"
    );
    ensure!(
        store.list().await.map_err(|e| e.to_string())?.contains(&d),
        "list misses blob"
    );

    // Wrong content under a digest is refused and leaves nothing.
    let other = Digest::of(b"something else");
    let mut w = store
        .writer(&other, None)
        .await
        .map_err(|e| e.to_string())?;
    w.write(b"not it").await.map_err(|e| e.to_string())?;
    let spool = w.spool_path().map(|p| p.to_path_buf());
    ensure!(
        matches!(w.commit().await, Err(StoreError::DigestMismatch { .. })),
        "digest mismatch committed"
    );
    ensure!(
        store
            .stat(&other)
            .await
            .map_err(|e| e.to_string())?
            .is_none(),
        "mismatched blob visible"
    );
    if let Some(p) = spool {
        ensure!(!p.exists(), "spool {p:?} kept after mismatch");
    }

    // A size that differs from the expected one is refused, too long or too short.
    let small = b"twelve bytes";
    for expected in [5u64, 20] {
        let r = put(store, small, Some(expected)).await;
        ensure!(
            matches!(r, Err(StoreError::SizeMismatch { .. })),
            "size {expected} accepted: {r:?}"
        );
        ensure!(
            store
                .stat(&Digest::of(small))
                .await
                .map_err(|e| e.to_string())?
                .is_none(),
            "short blob visible"
        );
    }

    // Dropping a writer aborts it.
    let dropped = Digest::of(b"dropped");
    let mut w = store
        .writer(&dropped, None)
        .await
        .map_err(|e| e.to_string())?;
    w.write(b"dropped").await.map_err(|e| e.to_string())?;
    let spool = w.spool_path().map(|p| p.to_path_buf());
    drop(w);
    ensure!(
        store
            .stat(&dropped)
            .await
            .map_err(|e| e.to_string())?
            .is_none(),
        "dropped write visible"
    );
    if let Some(p) = spool {
        ensure!(!p.exists(), "spool {p:?} kept after drop");
    }

    // The empty blob is a real blob.
    put(store, b"", Some(0)).await.map_err(|e| e.to_string())?;
    ensure!(
        read_all(store, &Digest::of(b""), None).await?.is_empty(),
        "empty blob"
    );

    // Concurrent writers of one digest both succeed and the content is intact.
    let (a, b) = tokio::join!(
        put(store, &data[..5000], None),
        put(store, &data[..5000], None)
    );
    ensure!(a.is_ok() && b.is_ok(), "concurrent writes: {a:?} {b:?}");
    ensure!(
        read_all(store, &Digest::of(&data[..5000]), None).await? == data[..5000],
        "concurrent content"
    );

    // Streams are chunked, not one allocation of the whole blob.
    let body = store
        .get(&d, None)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("absent")?;
    ensure!(body.size == data.len() as u64, "body size");
    let chunks: Vec<_> = body.stream.collect().await;
    ensure!(!chunks.is_empty(), "no chunks");

    // Delete removes.
    ensure!(
        store.delete(&d).await.map_err(|e| e.to_string())?,
        "delete returned false"
    );
    ensure!(
        store.stat(&d).await.map_err(|e| e.to_string())?.is_none(),
        "deleted blob still there"
    );
    let listed: HashSet<_> = store
        .list()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    ensure!(!listed.contains(&d), "deleted blob listed");
    store.ready().await.map_err(|e| e.to_string())?;
    Ok(())
}
