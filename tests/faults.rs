//! Faults a real registry cannot produce on demand, through the fake upstream: each
//! asserts what clients receive and what is (not) stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::fake::{FakeUpstream, Fault};
use common::{client, sha256_hex, TestFerry};
use futures_util::StreamExt;
use rand::RngCore;

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

async fn setup() -> (FakeUpstream, TestFerry) {
    let up = FakeUpstream::start().await;
    let ferry = TestFerry::start(&format!(
        "[[upstream]]\nname = \"fake\"\nurl = \"{}\"\ndefault = true\nretries = 2\nread_timeout = \"5s\"\n",
        up.url
    ))
    .await;
    (up, ferry)
}

/// Reads a whole body, returning the bytes or the transport error.
async fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    let resp = client().get(url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
    Ok((status, body.to_vec()))
}

#[tokio::test]
async fn wrong_bytes_abort_the_client_and_store_nothing() {
    let (up, ferry) = setup().await;
    let data = random(3 << 20);
    let digest = up.add_blob(data.clone());
    up.fault(&digest, Fault::WrongBytes);
    let url = format!("{}/v2/app/blobs/{digest}", ferry.url);
    match fetch(&url).await {
        Ok((200, body)) => panic!(
            "client received a complete body of {} bytes that did not verify",
            body.len()
        ),
        Ok((status, _)) => assert!(status >= 500, "status {status}"),
        Err(_) => {} // stream aborted: the client sees a transport error
    }
    assert!(!ferry.blob_path(&digest).exists(), "corrupt blob stored");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ferry.temp_files(), 0, "temp file left behind");
    assert_eq!(
        ferry.metric("ferry_fills_total", &[("outcome", "failed")]),
        1.0
    );
    // Once the upstream is fixed, the next request fills correctly.
    up.clear_faults();
    let (status, body) = fetch(&url).await.unwrap();
    assert_eq!((status, sha256_hex(&body)), (200, sha256_hex(&data)));
    assert!(ferry.blob_path(&digest).exists());
}

#[tokio::test]
async fn truncated_body_is_resumed_with_range() {
    let (up, ferry) = setup().await;
    let data = random(4 << 20);
    let digest = up.add_blob(data.clone());
    up.fault(&digest, Fault::CutAt(1 << 20));
    let (status, body) = fetch(&format!("{}/v2/app/blobs/{digest}", ferry.url))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.len(), data.len());
    assert_eq!(sha256_hex(&body), sha256_hex(&data));
    // One full GET, cut, then a resumed one (the fake counts both under the same path).
    assert_eq!(up.hits("GET", &format!("/v2/app/blobs/{digest}")), 2);
    assert!(ferry.blob_path(&digest).exists());
}

#[tokio::test]
async fn resume_against_an_upstream_that_ignores_range() {
    let (up, ferry) = setup().await;
    let data = random(2 << 20);
    let digest = up.add_blob(data.clone());
    up.fault(&digest, Fault::CutAt(700_000));
    up.fault(&digest, Fault::IgnoreRange);
    // Every full GET is cut, so resumes never finish: the client must get an error, not a short body.
    let r = fetch(&format!("{}/v2/app/blobs/{digest}", ferry.url)).await;
    assert!(
        r.is_err() || r.as_ref().unwrap().0 >= 500,
        "{:?}",
        r.map(|(s, b)| (s, b.len()))
    );
    assert!(!ferry.blob_path(&digest).exists());
}

#[tokio::test]
async fn upstream_429_is_passed_on_with_retry_after() {
    let (up, ferry) = setup().await;
    let digest = up.add_blob(random(1000));
    up.fault(&digest, Fault::TooMany(17));
    let resp = client()
        .get(format!("{}/v2/app/blobs/{digest}", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "17");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    // 429 is not retried (that would hammer a rate-limited upstream).
    assert_eq!(up.hits("GET", &format!("/v2/app/blobs/{digest}")), 1);
}

#[tokio::test]
async fn upstream_500_then_success_is_retried() {
    let (up, ferry) = setup().await;
    let data = random(5000);
    let digest = up.add_blob(data.clone());
    up.fault(&digest, Fault::FailFirst(2));
    let (status, body) = fetch(&format!("{}/v2/app/blobs/{digest}", ferry.url))
        .await
        .unwrap();
    assert_eq!((status, body), (200, data));
    assert_eq!(up.hits("GET", &format!("/v2/app/blobs/{digest}")), 3);
}

#[tokio::test]
async fn upstream_500_beyond_retries_is_503() {
    let (up, ferry) = setup().await;
    let digest = up.add_blob(random(10));
    up.fault(&digest, Fault::FailFirst(100));
    let resp = client()
        .get(format!("{}/v2/app/blobs/{digest}", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        up.hits("GET", &format!("/v2/app/blobs/{digest}")),
        3,
        "first try + 2 retries"
    );
    assert!(!ferry.blob_path(&digest).exists());
}

#[tokio::test]
async fn anonymous_token_flow_and_token_cache() {
    let (up, ferry) = setup().await;
    up.require_bearer(None);
    let d1 = up.add_blob(random(100));
    let d2 = up.add_blob(random(100));
    for d in [&d1, &d2] {
        let (status, _) = fetch(&format!("{}/v2/team/app/blobs/{d}", ferry.url))
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    // One token for the scope, reused for the second blob.
    assert_eq!(
        up.state
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn credentialed_token_flow_and_no_unauthorized_relay() {
    let up = FakeUpstream::start().await;
    up.require_bearer(Some(("bot", "s3cret-pw")));
    let digest = up.add_blob(random(100));
    let cfg = |pw: &str| {
        format!("[[upstream]]\nname = \"fake\"\nurl = \"{}\"\ndefault = true\nusername = \"bot\"\npassword = \"{pw}\"\n", up.url)
    };
    let good = TestFerry::start(&cfg("s3cret-pw")).await;
    let resp = client()
        .get(format!("{}/v2/app/blobs/{digest}", good.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bad = TestFerry::start(&cfg("wrong")).await;
    let resp = client()
        .get(format!("{}/v2/app/blobs/{digest}", bad.url))
        .send()
        .await
        .unwrap();
    // The upstream refused us; the client must not be asked to log in to ferry.
    assert_eq!(resp.status(), 403);
    assert!(!resp.headers().contains_key("www-authenticate"));
    let body = resp.text().await.unwrap();
    assert!(body.contains("DENIED"), "{body}");
    assert!(
        !body.contains("s3cret") && !body.contains("wrong"),
        "credentials leaked: {body}"
    );
}

#[tokio::test]
async fn slow_stream_reaches_the_client_before_the_blob_is_complete() {
    let (up, ferry) = setup().await;
    let data = random(2 << 20);
    let digest = up.add_blob(data.clone());
    // 32 chunks of 64 KiB, 50 ms apart: about 1.6 s for the whole blob.
    up.fault(
        &digest,
        Fault::Slow {
            chunk: 64 * 1024,
            delay: Duration::from_millis(50),
        },
    );
    let start = Instant::now();
    let resp = client()
        .get(format!("{}/v2/app/blobs/{digest}", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(data.len() as u64));
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = start.elapsed();
    assert!(!first.is_empty());
    let mut got = first.to_vec();
    while let Some(c) = stream.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    let total = start.elapsed();
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    assert!(
        first_at * 4 < total,
        "first bytes after {first_at:?} of {total:?}: the client waited for the whole blob"
    );
}

#[tokio::test]
async fn unknown_length_upstream_is_streamed_and_verified() {
    let (up, ferry) = setup().await;
    let data = random(1 << 20);
    let digest = up.add_blob(data.clone());
    up.fault(&digest, Fault::NoLength);
    let (status, body) = fetch(&format!("{}/v2/app/blobs/{digest}", ferry.url))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&body), sha256_hex(&data));
    // A Range on a hit afterwards.
    let resp = client()
        .get(format!("{}/v2/app/blobs/{digest}", ferry.url))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[10..20]);
}

#[tokio::test]
async fn thirty_two_cold_clients_one_upstream_get() {
    let (up, ferry) = setup().await;
    let data = random(64 << 20);
    let digest = up.add_blob(data.clone());
    // Slow enough that every client arrives while the fill runs.
    up.fault(
        &digest,
        Fault::Slow {
            chunk: 1 << 20,
            delay: Duration::from_millis(10),
        },
    );
    let want = sha256_hex(&data);
    let url = format!("{}/v2/app/blobs/{digest}", ferry.url);

    // One client that reads the headers and then stops reading.
    let stalled = client().get(&url).send().await.unwrap();
    assert_eq!(stalled.status(), 200);

    let mut tasks = Vec::new();
    for i in 0..32 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = client().get(&url);
            // A few clients ask for ranges of the in-flight blob.
            if i % 8 == 7 {
                req = req.header("range", format!("bytes={}-", i << 20));
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (i, status, resp.bytes().await.unwrap())
        }));
    }
    let deadline = Duration::from_secs(60);
    for t in tasks {
        let (i, status, body) = tokio::time::timeout(deadline, t)
            .await
            .expect("a client was held up")
            .unwrap();
        if i % 8 == 7 {
            assert_eq!(status, 206);
            assert_eq!(
                sha256_hex(&body),
                sha256_hex(&data[i << 20..]),
                "range client {i}"
            );
        } else {
            assert_eq!(status, 200);
            assert_eq!(sha256_hex(&body), want, "client {i}");
        }
    }
    assert_eq!(
        up.hits("GET", &format!("/v2/app/blobs/{digest}")),
        1,
        "exactly one upstream GET"
    );
    assert!(ferry.blob_path(&digest).exists());
    drop(stalled);
}

#[tokio::test]
async fn fill_survives_client_disconnect() {
    let (up, ferry) = setup().await;
    let data = random(4 << 20);
    let digest = up.add_blob(data.clone());
    up.fault(
        &digest,
        Fault::Slow {
            chunk: 256 * 1024,
            delay: Duration::from_millis(20),
        },
    );
    let url = format!("{}/v2/app/blobs/{digest}", ferry.url);
    let resp = client().get(&url).send().await.unwrap();
    let mut s = resp.bytes_stream();
    let _ = s.next().await;
    drop(s); // the only client goes away
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ferry.blob_path(&digest).exists() {
        assert!(
            Instant::now() < deadline,
            "fill did not complete after the client left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Now a hit with no upstream contact.
    let before = up.total_hits();
    let (status, body) = fetch(&url).await.unwrap();
    assert_eq!((status, sha256_hex(&body)), (200, sha256_hex(&data)));
    assert_eq!(up.total_hits(), before);
}

#[tokio::test]
async fn manifest_with_wrong_digest_is_refused() {
    let (up, ferry) = setup().await;
    let digest = up.add_oci_manifest("app", "v1");
    up.fault("v1", Fault::WrongBytes);
    let resp = client()
        .get(format!("{}/v2/app/manifests/v1", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(!ferry.blob_path(&digest).exists());
    up.clear_faults();
    let resp = client()
        .get(format!("{}/v2/app/manifests/v1", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
}

#[tokio::test]
async fn stale_tag_served_when_upstream_fails_and_404_is_not_masked() {
    let up = FakeUpstream::start().await;
    let ferry = TestFerry::start(&format!(
        "manifest_ttl = \"0s\"\n[[upstream]]\nname = \"fake\"\nurl = \"{}\"\ndefault = true\nretries = 0\n",
        up.url
    ))
    .await;
    let digest = up.add_oci_manifest("app", "v1");
    let get = || {
        client()
            .get(format!("{}/v2/app/manifests/v1", ferry.url))
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    for fault in [Fault::TooMany(5), Fault::FailFirst(1000)] {
        up.clear_faults();
        up.fault("v1", fault.clone());
        let resp = get().await.unwrap();
        assert_eq!(resp.status(), 200, "{fault:?}");
        assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
    }
    assert!(
        ferry.metric(
            "ferry_cache_lookups_total",
            &[("kind", "manifest"), ("result", "stale")]
        ) >= 2.0
    );
    // A tag deleted upstream is gone, not served stale.
    up.clear_faults();
    up.state
        .manifests
        .lock()
        .unwrap()
        .remove(&("app".to_owned(), "v1".to_owned()));
    assert_eq!(get().await.unwrap().status(), 404);
}

#[tokio::test]
async fn tags_pages_link_back_through_ferry() {
    let up = FakeUpstream::start().await;
    let ferry = TestFerry::start(&format!(
        "[[upstream]]\nname = \"fake\"\nurl = \"{}\"\n",
        up.url
    ))
    .await;
    let c = client();
    let r = c
        .get(format!("{}/v2/fake/team/app/tags/list?n=2", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(
        link,
        r#"</v2/fake/team/app/tags/list?n=2&last=b>; rel="next""#
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["a", "b"]));
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    let r = c.get(format!("{}{next}", ferry.url)).send().await.unwrap();
    assert!(r.headers().get("link").is_none());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["c"]));
    // A non-numeric n is refused before anything goes upstream.
    let before = up.total_hits();
    let r = c
        .get(format!("{}/v2/fake/team/app/tags/list?n=lots", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(up.total_hits(), before);
}

#[tokio::test]
async fn concurrent_manifest_misses_share_one_upstream_request() {
    let (up, ferry) = setup().await;
    let digest = up.add_oci_manifest("app", "v1");
    up.fault("v1", Fault::Delay(Duration::from_millis(300)));
    up.fault(&digest, Fault::Delay(Duration::from_millis(300)));
    for reference in ["v1", digest.as_str()] {
        let url = format!("{}/v2/app/manifests/{reference}", ferry.url);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { client().get(&url).send().await.unwrap() })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        }
    }
    assert_eq!(
        up.hits("HEAD", "/v2/app/manifests/v1"),
        1,
        "one revalidation"
    );
    assert_eq!(
        up.hits("GET", "/v2/app/manifests/v1"),
        1,
        "one fetch by tag"
    );
    // The digest was stored by the tag fetch: no request by digest at all.
    assert_eq!(up.hits("GET", &format!("/v2/app/manifests/{digest}")), 0);
}

#[tokio::test]
async fn basic_auth_upstream() {
    let up = FakeUpstream::start().await;
    up.require_basic("bot", "pw");
    let digest = up.add_blob(random(100));
    let ferry = TestFerry::start(&format!(
        "[[upstream]]\nname = \"fake\"\nurl = \"{}\"\ndefault = true\nusername = \"bot\"\npassword = \"pw\"\n",
        up.url
    ))
    .await;
    for _ in 0..2 {
        let d = up.add_blob(random(10));
        let r = client()
            .get(format!("{}/v2/app/blobs/{d}", ferry.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = client()
        .get(format!("{}/v2/app/blobs/{digest}", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // After the first challenge, credentials go up front: 1 challenged + 3 authenticated requests.
    let seen = up.state.seen_auth.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|a| a.starts_with("Basic ")));
}

#[tokio::test]
async fn referrers_are_passed_through_and_cached() {
    let (up, ferry) = setup().await;
    let subject = format!("sha256:{}", "5".repeat(64));
    let sig = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "6".repeat(64)), "size": 10, "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json"});
    let sbom = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "7".repeat(64)), "size": 11, "artifactType": "application/spdx+json"});
    up.add_referrer(
        &subject,
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        sig,
    );
    up.add_referrer(&subject, "application/spdx+json", sbom);
    let url = format!("{}/v2/team/app/referrers/{subject}", ferry.url);
    for _ in 0..3 {
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "application/vnd.oci.image.index.v1+json"
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["manifests"].as_array().unwrap().len(), 2);
    }
    assert_eq!(
        up.hits("GET", &format!("/v2/team/app/referrers/{subject}")),
        1,
        "cached by digest"
    );
    let r = client()
        .get(format!("{url}?artifactType=application/spdx%2Bjson"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        body["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
    let r = client()
        .get(format!("{}/v2/team/app/referrers/sha256:nope", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn indexes_and_lists_keep_their_media_types() {
    let (up, ferry) = setup().await;
    let cases = [
        (
            "oci-index",
            "application/vnd.oci.image.index.v1+json",
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
        ),
        (
            "oci-index-no-mt",
            "application/vnd.oci.image.index.v1+json",
            r#"{"schemaVersion":2,"manifests":[]}"#,
        ),
        (
            "docker-list",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#,
        ),
        (
            "docker-v2",
            "application/vnd.docker.distribution.manifest.v2+json",
            r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{},"layers":[]}"#,
        ),
    ];
    for (tag, mt, body) in cases {
        let digest = up.add_manifest("deep/a.b/c_d/e-f/g", tag, body.as_bytes(), mt);
        for reference in [tag, digest.as_str()] {
            let r = client()
                .get(format!(
                    "{}/v2/deep/a.b/c_d/e-f/g/manifests/{reference}",
                    ferry.url
                ))
                .header("accept", ferry::oci::MANIFEST_ACCEPT)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{tag} {reference}");
            assert_eq!(r.headers()["content-type"], mt, "{tag} {reference}");
            assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
            assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_bytes());
        }
    }
    // A client that takes only single-platform manifests does not get an index.
    let r = client()
        .get(format!(
            "{}/v2/deep/a.b/c_d/e-f/g/manifests/oci-index",
            ferry.url
        ))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(common::error_code(r).await, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn stalled_upstream_times_out_and_stores_nothing() {
    let up = FakeUpstream::start().await;
    let ferry = TestFerry::start(&format!(
        "[[upstream]]\nname = \"fake\"\nurl = \"{}\"\ndefault = true\nread_timeout = \"300ms\"\nretries = 0\n",
        up.url
    ))
    .await;
    let digest = up.add_blob(random(2 << 20));
    // One chunk, then silence far longer than the read timeout, on every attempt.
    up.fault(
        &digest,
        Fault::Slow {
            chunk: 64 * 1024,
            delay: Duration::from_secs(30),
        },
    );
    let start = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        fetch(&format!("{}/v2/app/blobs/{digest}", ferry.url)),
    )
    .await
    .expect("a stalled upstream must not hang the client");
    assert!(
        r.is_err() || r.as_ref().unwrap().0 >= 500,
        "{:?}",
        r.map(|(s, b)| (s, b.len()))
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!ferry.blob_path(&digest).exists());
    assert_eq!(ferry.temp_files(), 0);
}

#[tokio::test]
async fn head_of_a_missing_blob_does_not_start_a_download() {
    let (up, ferry) = setup().await;
    let data = random(300_000);
    let digest = up.add_blob(data.clone());
    let r = client()
        .head(format!("{}/v2/app/blobs/{digest}", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "300000");
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(up.hits("HEAD", &format!("/v2/app/blobs/{digest}")), 1);
    assert_eq!(up.hits("GET", &format!("/v2/app/blobs/{digest}")), 0);
    assert!(!ferry.blob_path(&digest).exists());
    let missing = format!("sha256:{}", "9".repeat(64));
    let r = client()
        .head(format!("{}/v2/app/blobs/{missing}", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
