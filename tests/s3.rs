//! Nodes whose store is a real S3-compatible server (s3s-fs on loopback), with a
//! real upstream (distribution), a real client (skopeo) and the fake upstream for
//! faults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::fake::{FakeUpstream, Fault};
use common::image::{verify_layout, Image};
use common::registry::{skopeo_pull, Registry};
use common::s3::{blob_key, storage_table};
use common::{client, sha256_hex, TestFerry};
use ferry::cli::IndexCommand;
use ferry_storage::s3_testing::S3Server;

fn upstream(url: &str) -> String {
    format!("[[upstream]]\nname = \"local\"\nurl = \"{url}\"\n")
}

fn upstream_gets(f: &TestFerry) -> f64 {
    f.metric("ferry_upstream_requests_total", &[("method", "GET")])
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn skopeo_pulls_through_s3_and_a_second_node_shares_the_bucket() {
    let mut reg = Registry::start().await;
    // One layer spans two 5 MiB parts (a multipart upload), one is a single PUT.
    let image = Image::random(&[7 << 20, 300_000]);
    reg.push(&image, "team/app", "v1");
    let s3 = S3Server::start().await;
    let table = storage_table(&s3, "eu", "");
    let a = TestFerry::start(&format!("{}{table}", upstream(&reg.url))).await;
    // Started before the content exists: it learns of it on its first miss.
    let b = TestFerry::start(&format!("{}{table}", upstream(&reg.url))).await;

    let r = format!("docker://{}/local/team/app:v1", a.addr);
    let out = tokio::task::spawn_blocking(move || skopeo_pull(&r, None))
        .await
        .unwrap()
        .unwrap();
    verify_layout(out.path(), &image);

    // Every blob (layers, config, manifest) sits under its content-addressed key,
    // and the object's bytes hash to the digest.
    let keys = s3.keys();
    for b in image.blobs() {
        let key = blob_key("eu", &b.digest);
        assert!(keys.contains(&key), "{key} not in {keys:?}");
        let bytes = std::fs::read(s3.object_path(&key)).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), b.digest);
    }
    assert!(
        keys.iter().all(|k| k.starts_with("eu/blobs/sha256/")),
        "{keys:?}"
    );
    assert_eq!(s3.open_upload_parts(), 0);
    assert!(a.data.join("spool").read_dir().unwrap().all(|e| e
        .unwrap()
        .file_type()
        .unwrap()
        .is_dir()));

    // `ferry index check` compares the node's index with the bucket.
    let check = ferry::admin::run(
        &IndexCommand::Check {
            verify: true,
            repair: false,
        },
        &a.config,
    )
    .await
    .unwrap();
    assert!(check.ok, "{}", check.text);

    // A second node on the same bucket serves the content without the upstream.
    let layer = &image.layers[0];
    let resp = client()
        .get(format!(
            "{}/v2/local/team/app/blobs/{}",
            b.url, layer.digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), layer.bytes);
    assert_eq!(upstream_gets(&b), 0.0, "second node fetched from upstream");
    // A third node, started after the fill, adopts the bucket's content at start-up;
    // with the upstream gone, a pull by digest through it still works.
    reg.stop();
    let c = TestFerry::start(&format!("{}{table}", upstream(&reg.url))).await;
    let r = format!(
        "docker://{}/local/team/app@{}",
        c.addr, image.manifest.digest
    );
    let out = tokio::task::spawn_blocking(move || skopeo_pull(&r, None))
        .await
        .unwrap()
        .unwrap();
    verify_layout(out.path(), &image);
    assert_eq!(upstream_gets(&c), 0.0);
    assert_eq!(
        c.metric(
            "ferry_cache_lookups_total",
            &[("kind", "blob"), ("result", "miss")]
        ),
        0.0
    );
}

#[tokio::test]
async fn redirect_mode_answers_hits_with_a_presigned_url() {
    let reg = Registry::start().await;
    let image = Image::random(&[6 << 20, 1000]);
    reg.push(&image, "team/app", "v1");
    let s3 = S3Server::start().await;
    let table = storage_table(&s3, "r", "redirect = true\nredirect_expiry = \"2m\"\n");
    let f = TestFerry::start(&format!("{}{table}", upstream(&reg.url))).await;
    let layer = &image.layers[0];
    let url = format!("{}/v2/local/team/app/blobs/{}", f.url, layer.digest);
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // A miss streams from the upstream while the blob is filled.
    let first = no_redirects.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.bytes().await.unwrap(), layer.bytes);

    // A hit is a 307 to the object in the store, signed and expiring.
    let hit = no_redirects.get(&url).send().await.unwrap();
    assert_eq!(hit.status(), 307);
    let location = hit.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/{}/r/blobs/sha256/", s3.endpoint, s3.bucket)),
        "{location}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(location.contains("X-Amz-Expires=120"), "{location}");
    assert_eq!(
        hit.headers()["docker-content-digest"],
        layer.digest.as_str()
    );
    let fetched = client().get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap(), layer.bytes);
    // A tampered signature is refused by the store.
    let forged = location.replace("X-Amz-Expires=120", "X-Amz-Expires=999999");
    assert_eq!(client().get(&forged).send().await.unwrap().status(), 403);

    // HEAD answers locally from the index.
    let head = no_redirects.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        layer.bytes.len().to_string().as_str()
    );

    // A real client follows the redirects.
    let r = format!("docker://{}/local/team/app:v1", f.addr);
    let out = tokio::task::spawn_blocking(move || skopeo_pull(&r, None))
        .await
        .unwrap()
        .unwrap();
    verify_layout(out.path(), &image);
    assert!(f.metric("ferry_cache_lookups_total", &[("result", "redirect")]) >= 2.0);
}

#[tokio::test]
async fn wrong_digest_from_upstream_leaves_nothing_in_the_bucket() {
    let up = FakeUpstream::start().await;
    let data: Vec<u8> = (0..(11 << 20)).map(|i| (i % 253) as u8).collect();
    let digest = up.add_blob(data.clone());
    up.fault(&digest, Fault::WrongBytes);
    let s3 = S3Server::start().await;
    let f = TestFerry::start(&format!(
        "{}{}",
        upstream(&up.url),
        storage_table(&s3, "w", "")
    ))
    .await;
    let url = format!("{}/v2/local/x/blobs/{digest}", f.url);
    let resp = client().get(&url).send().await.unwrap();
    // Headers may already be out; the body must then be cut short, never complete.
    if resp.status() == 200 {
        let body = resp.bytes().await;
        assert!(
            body.is_err() || body.unwrap().len() < data.len(),
            "corrupt body delivered whole"
        );
    }
    eventually("the upload to be aborted", || s3.open_upload_parts() == 0).await;
    assert!(s3.keys().is_empty(), "{:?}", s3.keys());

    // Once the upstream is fixed the same blob fills and verifies.
    up.clear_faults();
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), data);
    eventually("the object to appear", || {
        s3.keys() == vec![blob_key("w", &digest)]
    })
    .await;
}

#[tokio::test]
async fn s3_outage_mid_fill_fails_cleanly_and_the_next_start_cleans_up() {
    let up = FakeUpstream::start().await;
    let data: Vec<u8> = (0..(12 << 20)).map(|i| (i % 241) as u8).collect();
    let digest = up.add_blob(data.clone());
    up.fault(
        &digest,
        Fault::Slow {
            chunk: 1 << 20,
            delay: Duration::from_millis(100),
        },
    );
    let mut s3 = S3Server::start().await;
    let config = format!("{}{}", upstream(&up.url), storage_table(&s3, "o", ""));
    let f = TestFerry::start(&config).await;
    let url = format!("{}/v2/local/x/blobs/{digest}", f.url);
    let reader = tokio::spawn(async move {
        let resp = client().get(&url).send().await.unwrap();
        (resp.status(), resp.bytes().await.map(|b| b.len()))
    });
    eventually("a part to be uploaded", || s3.open_upload_parts() >= 1).await;
    s3.stop();
    let (status, body) = reader.await.unwrap();
    assert!(
        status != 200 || body.as_ref().map_or(true, |n| *n < data.len()),
        "a fill whose store failed was served whole: {status} {body:?}"
    );
    assert!(s3.keys().is_empty(), "{:?}", s3.keys());

    s3.restart().await;
    let data_dir = f.data.clone();
    let dir = f.stop().await;
    // The abort could not reach the store while it was down: the next start does it.
    assert!(s3.open_upload_parts() >= 1);
    let f = TestFerry::start_at(&config, &data_dir).await;
    assert_eq!(s3.open_upload_parts(), 0, "abandoned upload not aborted");
    up.clear_faults();
    let resp = client()
        .get(format!("{}/v2/local/x/blobs/{digest}", f.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), data);
    drop(dir);
}

#[tokio::test]
async fn a_bad_bucket_fails_start_up_with_a_clear_error() {
    let s3 = S3Server::start().await;
    let table = storage_table(&s3, "", "").replace("bucket = \"ferry\"", "bucket = \"absent\"");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}{}",
        upstream("http://127.0.0.1:1"),
        table.replacen(
            "[storage]\n",
            &format!("[storage]\npath = {:?}\n", dir.path()),
            1
        )
    );
    let config = ferry::config::Config::from_toml(&text, "t.toml", None).unwrap();
    let err = ferry::build_app(&config).await.err().unwrap();
    let err = format!("{:#}", anyhow::Error::from(err));
    assert!(err.contains("s3://absent/"), "{err}");
    assert!(err.contains("bucket \"absent\" does not exist"), "{err}");
}

#[tokio::test]
async fn concurrent_clients_of_a_cold_blob_share_one_fill_through_the_spool() {
    let up = FakeUpstream::start().await;
    let data: Vec<u8> = (0..(12 << 20)).map(|i| (i % 239) as u8).collect();
    let digest = up.add_blob(data.clone());
    up.fault(
        &digest,
        Fault::Slow {
            chunk: 1 << 20,
            delay: Duration::from_millis(30),
        },
    );
    let s3 = S3Server::start().await;
    let f = TestFerry::start(&format!(
        "{}{}",
        upstream(&up.url),
        storage_table(&s3, "c", "")
    ))
    .await;
    let url = format!("{}/v2/local/x/blobs/{digest}", f.url);
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut req = client().get(&url);
                if i % 2 == 1 {
                    req = req.header("range", "bytes=5000000-9999999");
                }
                let resp = req.send().await.unwrap();
                (resp.status().as_u16(), resp.bytes().await.unwrap())
            })
        })
        .collect();
    for (i, r) in readers.into_iter().enumerate() {
        let (status, body) = r.await.unwrap();
        if i % 2 == 1 {
            assert_eq!(status, 206);
            assert_eq!(body, data[5_000_000..10_000_000]);
        } else {
            assert_eq!(status, 200);
            assert_eq!(body, data);
        }
    }
    assert_eq!(up.hits("GET", &format!("/v2/x/blobs/{digest}")), 1);
    eventually("the object to appear", || {
        s3.keys() == vec![blob_key("c", &digest)]
    })
    .await;
}
