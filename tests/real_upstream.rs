//! The mirror against a real upstream (Debian's docker-registry, i.e. distribution)
//! and a real client (skopeo).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::image::{verify_layout, Image};
use common::registry::{skopeo_pull, Registry};
use common::{client, sha256_hex, TestFerry};

const CONTAINERD_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

async fn ferry_for(reg: &Registry, extra: &str) -> TestFerry {
    TestFerry::start(&format!(
        "{extra}[[upstream]]\nname = \"local\"\nurl = \"{}\"\n",
        reg.url
    ))
    .await
}

fn upstream_gets(f: &TestFerry) -> f64 {
    f.metric("ferry_upstream_requests_total", &[("method", "GET")])
}

#[tokio::test]
async fn skopeo_pulls_through_path_prefix() {
    let reg = Registry::start().await;
    let image = Image::random(&[1 << 20, 3 << 20]);
    reg.push(&image, "team/app", "v1");
    let ferry = ferry_for(&reg, "").await;
    let r = format!("docker://{}/local/team/app:v1", ferry.addr);
    let out = tokio::task::spawn_blocking(move || skopeo_pull(&r, None))
        .await
        .unwrap()
        .unwrap();
    verify_layout(out.path(), &image);
    for b in image.blobs() {
        assert!(
            ferry.blob_path(&b.digest).exists(),
            "{} not cached",
            b.digest
        );
    }
    // Pull again by digest: everything is a hit, the upstream is not asked.
    let before = upstream_gets(&ferry)
        + ferry.metric("ferry_upstream_requests_total", &[("method", "HEAD")]);
    let r = format!(
        "docker://{}/local/team/app@{}",
        ferry.addr, image.manifest.digest
    );
    let out = tokio::task::spawn_blocking(move || skopeo_pull(&r, None))
        .await
        .unwrap()
        .unwrap();
    verify_layout(out.path(), &image);
    let after = upstream_gets(&ferry)
        + ferry.metric("ferry_upstream_requests_total", &[("method", "HEAD")]);
    assert_eq!(
        before, after,
        "a cached pull by digest contacted the upstream"
    );
}

#[tokio::test]
async fn skopeo_pulls_through_a_registries_conf_mirror() {
    let reg = Registry::start().await;
    let image = Image::random(&[2 << 20]);
    reg.push(&image, "mirrored/app", "v2");
    let ferry = ferry_for(&reg, "").await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("registries.conf");
    // The primary location is unreachable: success proves the pull went through ferry.
    std::fs::write(
        &conf,
        format!(
            "unqualified-search-registries = []\n[[registry]]\nlocation = \"127.0.0.1:1\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"{}/local\"\ninsecure = true\n",
            ferry.addr
        ),
    )
    .unwrap();
    let conf_s = conf.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        skopeo_pull("docker://127.0.0.1:1/mirrored/app:v2", Some(&conf_s))
    })
    .await
    .unwrap()
    .unwrap();
    verify_layout(out.path(), &image);
    assert!(
        ferry.metric(
            "ferry_cache_lookups_total",
            &[("kind", "blob"), ("result", "miss")]
        ) >= 2.0
    );
}

#[tokio::test]
async fn containerd_ns_routing_default_and_library_prefix() {
    let reg = Registry::start().await;
    let image = Image::random(&[1000]);
    reg.push(&image, "library/alpine", "3");
    reg.push(&image, "org/tool", "1");
    // Not default: reachable by ns or prefix only.
    let ferry = ferry_for(&reg, "").await;
    let c = client();
    let url = |p: &str| format!("{}{p}", ferry.url);
    let head = |p: String| c.head(p).header("accept", CONTAINERD_ACCEPT).send();
    let r = head(url(&format!("/v2/org/tool/manifests/1?ns={}", reg.host)))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"],
        image.manifest.digest.as_str()
    );
    assert_eq!(
        r.headers()["content-length"],
        image.manifest.bytes.len().to_string().as_str()
    );
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(r.bytes().await.unwrap().is_empty(), "HEAD has no body");
    // No prefix, no ns, no default upstream.
    let r = head(url("/v2/org/tool/manifests/1")).await.unwrap();
    assert_eq!(r.status(), 404);
    // An ns the config does not name is refused without contacting anything.
    let r = c
        .get(url("/v2/org/tool/manifests/1?ns=registry.evil.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(common::error_code(r).await, "NAME_UNKNOWN");

    // As the default upstream with Docker Hub's library/ rule.
    let hub = TestFerry::start(&format!(
        "[[upstream]]\nname = \"hub\"\nurl = \"{}\"\ndefault = true\nlibrary_prefix = true\n",
        reg.url
    ))
    .await;
    for path in [
        "/v2/alpine/manifests/3",
        "/v2/library/alpine/manifests/3",
        "/v2/hub/alpine/manifests/3",
    ] {
        let r = c.get(format!("{}{path}", hub.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            sha256_hex(&r.bytes().await.unwrap()),
            image.manifest.digest.trim_start_matches("sha256:")
        );
    }
}

#[tokio::test]
async fn cached_content_survives_an_upstream_outage() {
    let mut reg = Registry::start().await;
    let image = Image::random(&[500_000]);
    reg.push(&image, "team/app", "v1");
    let ferry = ferry_for(&reg, "manifest_ttl = \"0s\"\n").await;
    let r = format!("docker://{}/local/team/app:v1", ferry.addr);
    tokio::task::spawn_blocking(move || skopeo_pull(&r, None))
        .await
        .unwrap()
        .unwrap();
    reg.stop();
    let c = client();
    // By digest: served from the store.
    let m = c
        .get(format!(
            "{}/v2/local/team/app/manifests/{}",
            ferry.url, image.manifest.digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    // By tag, past its TTL: stale but served.
    let t = c
        .get(format!("{}/v2/local/team/app/manifests/v1", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(t.status(), 200);
    assert_eq!(
        t.headers()["docker-content-digest"],
        image.manifest.digest.as_str()
    );
    // A whole pull works with the upstream down.
    let r = format!("docker://{}/local/team/app:v1", ferry.addr);
    let out = tokio::task::spawn_blocking(move || skopeo_pull(&r, None))
        .await
        .unwrap()
        .unwrap();
    verify_layout(out.path(), &image);
    // Uncached content is a fast, clear 503.
    let r = c
        .get(format!("{}/v2/local/team/app/manifests/v9", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(common::error_code(r).await, "UNAVAILABLE");

    // After a restart of ferry (same data), the tag is still known.
    let data = ferry.data.clone();
    let cfg = format!(
        "manifest_ttl = \"0s\"\n[[upstream]]\nname = \"local\"\nurl = \"{}\"\n",
        reg.url
    );
    let _keep = ferry.stop().await;
    let again = TestFerry::start_at(&cfg, &data).await;
    let t = c
        .get(format!("{}/v2/local/team/app/manifests/v1", again.url))
        .send()
        .await
        .unwrap();
    assert_eq!(t.status(), 200);
    // And a moved tag is picked up once the upstream is back.
    reg.restart().await;
    let newer = Image::random(&[1000]);
    reg.push(&newer, "team/app", "v1");
    let t = c
        .get(format!("{}/v2/local/team/app/manifests/v1", again.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.headers()["docker-content-digest"],
        newer.manifest.digest.as_str()
    );
}

#[tokio::test]
async fn tags_list_is_passed_through() {
    let reg = Registry::start().await;
    let image = Image::random(&[100]);
    for t in ["a1", "b2", "c3"] {
        reg.push(&image, "team/app", t);
    }
    let ferry = ferry_for(&reg, "").await;
    let c = client();
    let r = c
        .get(format!("{}/v2/local/team/app/tags/list", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let mut tags: Vec<String> = serde_json::from_value(body["tags"].clone()).unwrap();
    tags.sort(); // distribution 2.8 lists tags in storage order
    assert_eq!(tags, ["a1", "b2", "c3"]);
    let r = c
        .get(format!("{}/v2/local/nope/tags/list", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(common::error_code(r).await, "NAME_UNKNOWN");
}

#[tokio::test]
async fn ranges_and_bad_input_get_oci_errors() {
    let reg = Registry::start().await;
    let image = Image::random(&[100_000]);
    reg.push(&image, "team/app", "v1");
    let ferry = ferry_for(&reg, "").await;
    let layer = &image.layers[0];
    let size = layer.bytes.len();
    let blob = format!("{}/v2/local/team/app/blobs/{}", ferry.url, layer.digest);
    let c = client();
    // Cold Range: served from the in-flight fill.
    let r = c
        .get(&blob)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100-199/{size}").as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &layer.bytes[100..200]);
    // Warm whole, suffix, open-ended.
    let r = c.get(&blob).send().await.unwrap();
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap().as_ref(), layer.bytes.as_slice());
    let r = c
        .get(&blob)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &layer.bytes[size - 10..]);
    let r = c
        .get(&blob)
        .header("range", format!("bytes={}-", size - 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().len(), 5);
    let r = c.head(&blob).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    assert_eq!(r.headers()["docker-content-digest"], layer.digest.as_str());

    let d0 = format!("sha256:{}", "0".repeat(64));
    let past_end = format!("bytes={size}-");
    let cases: Vec<(reqwest::Method, String, Option<&str>, u16, &str)> = vec![
        (
            reqwest::Method::GET,
            blob.clone(),
            Some(past_end.as_str()),
            416,
            "RANGE_INVALID",
        ),
        (
            reqwest::Method::GET,
            blob.clone(),
            Some("bytes=5-1"),
            400,
            "RANGE_INVALID",
        ),
        (
            reqwest::Method::GET,
            blob.clone(),
            Some("bytes=0-1,4-5"),
            400,
            "RANGE_INVALID",
        ),
        (
            reqwest::Method::GET,
            blob.clone(),
            Some("lines=1-2"),
            400,
            "RANGE_INVALID",
        ),
        (
            reqwest::Method::GET,
            format!("{}/v2/local/team/app/blobs/sha256:zz", ferry.url),
            None,
            400,
            "DIGEST_INVALID",
        ),
        (
            reqwest::Method::GET,
            format!("{}/v2/local/team/app/blobs/md5:abc", ferry.url),
            None,
            400,
            "DIGEST_INVALID",
        ),
        (
            reqwest::Method::GET,
            format!("{}/v2/local/Team/app/manifests/v1", ferry.url),
            None,
            400,
            "NAME_INVALID",
        ),
        (
            reqwest::Method::GET,
            format!("{}/v2/local/a..b/manifests/v1", ferry.url),
            None,
            400,
            "NAME_INVALID",
        ),
        (
            reqwest::Method::GET,
            format!("{}/v2/local/team/app/manifests/-v1", ferry.url),
            None,
            400,
            "TAG_INVALID",
        ),
        (
            reqwest::Method::GET,
            format!("{}/v2/local/team/app/blobs/{d0}", ferry.url),
            None,
            404,
            "BLOB_UNKNOWN",
        ),
        (
            reqwest::Method::GET,
            format!("{}/v2/local/team/app/manifests/nope", ferry.url),
            None,
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            reqwest::Method::GET,
            format!("{}/v2/local/team/app/whatever", ferry.url),
            None,
            404,
            "NAME_UNKNOWN",
        ),
        (
            reqwest::Method::PUT,
            format!("{}/v2/local/team/app/manifests/v1", ferry.url),
            None,
            405,
            "UNSUPPORTED",
        ),
        (
            reqwest::Method::POST,
            format!("{}/v2/local/team/app/blobs/uploads/", ferry.url),
            None,
            405,
            "UNSUPPORTED",
        ),
        (
            reqwest::Method::DELETE,
            blob.clone(),
            None,
            405,
            "UNSUPPORTED",
        ),
        (
            reqwest::Method::PATCH,
            format!("{}/v2/local/team/app/blobs/uploads/abc", ferry.url),
            None,
            405,
            "UNSUPPORTED",
        ),
    ];
    for (method, url, range, status, code) in cases {
        let mut req = c.request(method.clone(), &url);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {url} {range:?}");
        assert_eq!(r.headers()["content-type"], "application/json");
        if status == 416 {
            assert_eq!(
                r.headers()["content-range"],
                format!("bytes */{size}").as_str()
            );
        }
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], code, "{method} {url} {range:?}");
    }
    // Accept negotiation: a client that only takes Docker schema 2 cannot get an OCI manifest.
    let r = c
        .get(format!("{}/v2/local/team/app/manifests/v1", ferry.url))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Nothing above was a server error.
    assert_eq!(
        ferry.metric("ferry_http_requests_total", &[("status", "500")]),
        0.0
    );

    // Base, health, metrics.
    let r = c.get(format!("{}/v2/", ferry.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(
        c.get(format!("{}/healthz", ferry.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{}/readyz", ferry.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let m = c
        .get(format!("{}/metrics", ferry.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "ferry_http_requests_total",
        "ferry_cache_lookups_total",
        "ferry_upstream_requests_total",
        "ferry_upstream_received_bytes_total",
        "ferry_fills_in_flight",
        "ferry_served_bytes_total",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test]
async fn containerd_pulls_through_hosts_toml() {
    let reg = Registry::start().await;
    let image = Image::random(&[1 << 20, 2 << 20]);
    reg.push(&image, "team/app", "v1");
    // containerd will ask for 127.0.0.1:1, which is unreachable: only the mirror can answer.
    // ferry knows that name as an alias of the real upstream.
    let ferry = TestFerry::start(&format!(
        "[[upstream]]\nname = \"local\"\nurl = \"{}\"\naliases = [\"127.0.0.1:1\"]\n",
        reg.url
    ))
    .await;
    let ctd = common::containerd::Containerd::start().await;
    let hosts = tempfile::tempdir().unwrap();
    common::containerd::Containerd::hosts_dir(hosts.path(), "127.0.0.1:1", &ferry.url);
    let hosts_s = hosts.path().display().to_string();
    let (out, ctd) = tokio::task::spawn_blocking(move || {
        let out = ctd.ctr(&[
            "images",
            "pull",
            "--hosts-dir",
            &hosts_s,
            "127.0.0.1:1/team/app:v1",
        ]);
        (out, ctd)
    })
    .await
    .unwrap();
    out.unwrap_or_else(|e| panic!("{e}\n{}", ctd.log()));
    // containerd verified every digest and unpacked the layers; check it has them all.
    let images = ctd.ctr(&["images", "ls", "-q"]).unwrap();
    assert!(images.contains("127.0.0.1:1/team/app:v1"), "{images}");
    let content = ctd.ctr(&["content", "ls", "-q"]).unwrap();
    for b in image.blobs() {
        assert!(
            content.contains(&b.digest),
            "{} not in containerd's store:\n{content}",
            b.digest
        );
    }
    assert!(
        ferry.metric(
            "ferry_cache_lookups_total",
            &[("kind", "blob"), ("result", "miss")]
        ) >= 3.0
    );
}
