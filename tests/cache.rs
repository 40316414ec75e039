//! The cache index: eviction under a size limit, pinning, crash recovery, disk full,
//! and the `ferry index` commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::fake::{FakeUpstream, Fault};
use common::image::{verify_layout, Image};
use common::node::{index_cmd, Node};
use common::registry::{skopeo_pull, Registry};
use common::{client, free_port, sha256_hex, TestFerry};
use rand::RngCore;

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

async fn pull(ferry: &TestFerry, repo: String, image: &Image) {
    let r = format!("docker://{}/local/{repo}:v1", ferry.addr);
    let out = tokio::task::spawn_blocking(move || skopeo_pull(&r, None))
        .await
        .unwrap()
        .unwrap();
    verify_layout(out.path(), image);
}

fn present(ferry: &TestFerry, image: &Image) -> bool {
    image.blobs().all(|b| ferry.blob_path(&b.digest).exists())
}

#[tokio::test]
async fn eviction_keeps_the_store_under_its_limit_during_concurrent_pulls() {
    const MIB: u64 = 1 << 20;
    let reg = Registry::start().await;
    let images: Vec<Image> = (0..6)
        .map(|_| Image::random(&[1_500_000, 1_500_000]))
        .collect();
    for (i, image) in images.iter().enumerate() {
        reg.push(image, &format!("team/app{i}"), "v1");
    }
    let largest = images
        .iter()
        .flat_map(|i| i.layers.iter())
        .map(|l| l.bytes.len() as u64)
        .max()
        .unwrap();
    let max = 8 * MIB;
    let ferry = Arc::new(
        TestFerry::start(&format!(
            "[[upstream]]\nname = \"local\"\nurl = \"{}\"\n[storage]\nmax_size = \"8MiB\"\n",
            reg.url
        ))
        .await,
    );
    // Sample the store's size while the pulls run.
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (ferry, peak, done) = (ferry.clone(), peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(ferry.stored_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // 18 MiB of images through an 8 MiB cache, three pulls at a time, twice over.
    for _round in 0..2 {
        for chunk in images.chunks(3).enumerate() {
            let (offset, batch) = chunk;
            let pulls = batch
                .iter()
                .enumerate()
                .map(|(j, image)| pull(&ferry, format!("team/app{}", offset * 3 + j), image));
            futures_util::future::join_all(pulls).await;
        }
    }
    // The most recently used image stays when another is pulled after it.
    pull(&ferry, "team/app0".into(), &images[0]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // let the touch flush
    pull(&ferry, "team/app5".into(), &images[5]).await;
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak <= max + largest,
        "store reached {peak} bytes; limit {max} plus one fill of {largest}"
    );
    assert!(
        present(&ferry, &images[0]),
        "the recently used image was evicted"
    );
    assert!(present(&ferry, &images[5]));
    assert!(
        !present(&ferry, &images[1]) || !present(&ferry, &images[2]),
        "nothing old was evicted"
    );
    assert!(ferry.metric("ferry_evictions_total", &[]) > 0.0);
    assert!(ferry.metric("ferry_cache_bytes", &[]) <= max as f64);
    // Every fill and every eviction is in the audit log, by the node itself.
    let (events, bad) = ferry_storage::AuditLog::read(&ferry.data.join("audit.jsonl")).unwrap();
    assert!(bad.is_empty(), "unparseable audit lines {bad:?}");
    let count = |a: ferry_storage::AuditAction| events.iter().filter(|e| e.action == a).count();
    let evicted = ferry.metric("ferry_evictions_total", &[]) as usize;
    // (The metric is sampled by the janitor, so it may trail the log.)
    assert!(evicted > 0 && count(ferry_storage::AuditAction::Evict) >= evicted);
    let fill = events
        .iter()
        .find(|e| {
            e.action == ferry_storage::AuditAction::Fill && e.digest == images[5].layers[0].digest
        })
        .expect("a fill of app5's layer");
    assert_eq!(
        (
            fill.actor.as_str(),
            fill.upstream.as_deref(),
            fill.repo.as_deref()
        ),
        ("proxy", Some("local"), Some("team/app5"))
    );
    assert_eq!(fill.size, Some(images[5].layers[0].bytes.len() as u64));
}

#[tokio::test]
async fn sigkill_mid_fill_leaves_a_consistent_store_after_restart() {
    let up = FakeUpstream::start().await;
    let blobs: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            let data = random(if i % 2 == 0 { 3 << 20 } else { 200_000 });
            let digest = up.add_blob(data.clone());
            // Half the blobs trickle in, so the kill lands mid-fill.
            if i % 2 == 0 {
                up.fault(
                    &digest,
                    Fault::Slow {
                        chunk: 256 * 1024,
                        delay: Duration::from_millis(100),
                    },
                );
            }
            (digest, data)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!(
        "listen = \"127.0.0.1:{}\"\n[storage]\npath = {:?}\n[[upstream]]\nname = \"fake\"\nurl = \"{}\"\ndefault = true\n",
        free_port(),
        data.display().to_string(),
        up.url
    );
    let node = Node::start(dir.path(), &config).await;
    let tasks: Vec<_> = blobs
        .iter()
        .map(|(d, _)| {
            let url = format!("{}/v2/app/blobs/{d}", node.url);
            tokio::spawn(async move { client().get(&url).send().await.map(|r| r.bytes()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    node.kill9();
    for t in tasks {
        let _ = t.await; // failed or complete: either way the client was told
    }
    // What a crash between rename and index write leaves: content without an entry;
    // and what a torn disk leaves: a file whose bytes are not its name.
    let planted = random(5000);
    let planted_digest = format!("sha256:{}", sha256_hex(&planted));
    let path_of = |d: &str| common::blob_path_in(&data, d);
    std::fs::create_dir_all(path_of(&planted_digest).parent().unwrap()).unwrap();
    std::fs::write(path_of(&planted_digest), &planted).unwrap();
    let torn_digest = format!("sha256:{}", sha256_hex(b"the real content"));
    std::fs::create_dir_all(path_of(&torn_digest).parent().unwrap()).unwrap();
    std::fs::write(path_of(&torn_digest), b"garbage").unwrap();

    let node = Node::start(dir.path(), &config).await;
    // The restarted node reconciled: check (read-only, while it runs) is clean.
    let out = index_cmd(&node.config, &["check", "--verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!path_of(&torn_digest).exists(), "corrupt content kept");
    assert!(
        std::fs::read_dir(data.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "temp files kept"
    );
    // Every pull is correct afterwards, and the planted blob is served without the upstream.
    for (d, bytes) in &blobs {
        let r = client()
            .get(format!("{}/v2/app/blobs/{d}", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(sha256_hex(&r.bytes().await.unwrap()), sha256_hex(bytes));
    }
    let r = client()
        .get(format!("{}/v2/app/blobs/{planted_digest}", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), planted.as_slice());
    node.terminate();
    let out = index_cmd(&dir.path().join("ferry.toml"), &["check", "--verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn pin_gc_stats_and_ls() {
    let up = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let layer = up.add_blob(random(1 << 20));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{layer}","size":1048576}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":1048576}}]}}"#
    );
    let mdigest = up.add_manifest(
        "team/app",
        "v1",
        manifest.as_bytes(),
        "application/vnd.oci.image.manifest.v1+json",
    );
    let others: Vec<String> = (0..6).map(|_| up.add_blob(random(1 << 20))).collect();
    let base = format!(
        "listen = \"127.0.0.1:{}\"\n[[upstream]]\nname = \"fake\"\nurl = \"{}\"\n[storage]\npath = {:?}\n",
        free_port(),
        up.url,
        data.display().to_string()
    );
    // No limit at first: fetch everything.
    let node = Node::start(dir.path(), &base).await;
    let c = client();
    assert_eq!(
        c.get(format!("{}/v2/fake/team/app/manifests/v1", node.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for d in std::iter::once(&layer).chain(&others) {
        let r = c
            .get(format!("{}/v2/fake/team/app/blobs/{d}", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().len(), 1 << 20);
    }
    // Writing commands refuse to share the index with the running node.
    let out = index_cmd(&node.config, &["pin", "fake/team/app:v1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop the node"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.terminate();

    let config = dir.path().join("ferry.toml");
    let out = index_cmd(&config, &["pin", "fake/team/app:v1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pinned 2 blob(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = index_cmd(&config, &["pin", "fake/team/app:v9"]);
    assert!(!out.status.success(), "pinning an unknown tag must fail");

    // Now shrink the limit and collect: the pinned image stays, the rest goes down to the low watermark.
    std::fs::write(&config, format!("{base}max_size = \"4MiB\"\n")).unwrap();
    let out = index_cmd(&config, &["gc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = String::from_utf8(index_cmd(&config, &["stats"]).stdout).unwrap();
    assert!(
        stats.contains("blobs            3\n") || stats.contains("blobs            4\n"),
        "{stats}"
    );
    assert!(stats.contains("hit ratio"), "{stats}");
    let path_of = |d: &str| common::blob_path_in(&data, d);
    assert!(
        path_of(&layer).exists() && path_of(&mdigest).exists(),
        "pinned content evicted"
    );
    let ls =
        String::from_utf8(index_cmd(&config, &["ls", "--order", "size", "--limit", "50"]).stdout)
            .unwrap();
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&layer) && l.contains(" yes ")),
        "{ls}"
    );
    assert!(
        ls.contains("application/vnd.oci.image.manifest.v1+json"),
        "{ls}"
    );
    let out = index_cmd(&config, &["check"]);
    assert!(out.status.success());
    // Unpinned, the image can go too.
    assert!(index_cmd(&config, &["unpin", &mdigest]).status.success());
    std::fs::write(&config, format!("{base}max_size = \"1MiB\"\n")).unwrap();
    assert!(index_cmd(&config, &["gc"]).status.success());
    assert!(!path_of(&layer).exists());
    // A blob deleted behind the index's back is a problem `check` reports and `--repair` fixes.
    let victim = others.iter().find(|d| path_of(d).exists()).cloned();
    if let Some(v) = victim {
        std::fs::remove_file(path_of(&v)).unwrap();
        assert!(!index_cmd(&config, &["check"]).status.success());
        assert!(index_cmd(&config, &["check", "--repair"]).status.success());
        assert!(index_cmd(&config, &["check"]).status.success());
    }
}

#[tokio::test]
async fn disk_full_fails_the_fill_cleanly_and_the_janitor_frees_space() {
    let up = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=20m", "tmpfs"])
        .arg(&data)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        mounted,
        "this test needs to mount a small tmpfs (run the tests as root)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(data.clone());
    let blobs: Vec<(String, Vec<u8>)> = (0..4)
        .map(|_| {
            let b = random(6 << 20);
            (up.add_blob(b.clone()), b)
        })
        .collect();
    // The index lives off the small disk; only blob fills hit the wall.
    let ferry = TestFerry::start_at(
        &format!(
            "[[upstream]]\nname = \"fake\"\nurl = \"{}\"\ndefault = true\n[storage]\nindex_path = {:?}\n",
            up.url,
            dir.path().join("index").display().to_string()
        ),
        &data,
    )
    .await;
    let get = |d: &str| {
        let url = format!("{}/v2/app/blobs/{d}", ferry.url);
        async move {
            let r = client().get(&url).send().await.map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            let body = r.bytes().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body))
        }
    };
    for (d, bytes) in &blobs[..3] {
        let (status, body) = get(d).await.unwrap();
        assert_eq!((status, sha256_hex(&body)), (200, sha256_hex(bytes)));
    }
    // 18 MiB stored on a 20 MiB disk: the fourth 6 MiB blob cannot fit.
    get(&blobs[1].0).await.unwrap(); // blob 1 is now more recent than blob 0
    let r = get(&blobs[3].0).await;
    assert!(
        !matches!(&r, Ok((200, body)) if body.len() == 6 << 20),
        "a fill on a full disk completed"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ferry.temp_files(), 0, "temp file left on the full disk");
    assert!(!ferry.blob_path(&blobs[3].0).exists());
    // Hits keep working.
    let (status, body) = get(&blobs[2].0).await.unwrap();
    assert_eq!((status, sha256_hex(&body)), (200, sha256_hex(&blobs[2].1)));
    // The janitor freed space (the least recently used blob), so the fill now succeeds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ferry.blob_path(&blobs[0].0).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the janitor did not free space"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = get(&blobs[3].0).await.unwrap();
    assert_eq!((status, sha256_hex(&body)), (200, sha256_hex(&blobs[3].1)));
    assert!(
        ferry.blob_path(&blobs[1].0).exists(),
        "the more recently used blob was evicted"
    );
    ferry.stop().await;
}
