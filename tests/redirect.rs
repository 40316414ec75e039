//! The redirector end to end on loopback: two real ferry nodes on 127.0.0.10 and
//! 127.0.0.11 in different regions, clients bound to 127.0.0.2 and 127.0.0.3, a real
//! upstream (distribution) and a real client (skopeo).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::image::{verify_layout, Image};
use common::registry::{skopeo_pull, Registry};
use common::TestFerry;
use ferry::config::redirect::RedirectConfig;
use ferry::redirect::server::{self, Redirector};

struct Front {
    url: String,
    redirector: Arc<Redirector>,
    config_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn config_text(upstream: &str, a: &str, b: &str, extra_a: &str) -> String {
    format!(
        "upstream = \"{upstream}\"\ninfo_url = \"https://docs.example/mirror\"\n\
         default_region = \"b\"\ntrusted_proxies = [\"127.0.0.5/32\"]\n\
         [[region]]\nname = \"a\"\ncidrs = [\"127.0.0.2/32\"]\nfallback = [\"b\"]\n\
         [[region]]\nname = \"b\"\ncidrs = [\"127.0.0.3/32\"]\nfallback = [\"a\"]\n\
         [[node]]\nurl = \"{a}\"\nregion = \"a\"\n{extra_a}\
         [[node]]\nurl = \"{b}\"\nregion = \"b\"\n\
         [health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\nunhealthy_threshold = 2\nhealthy_threshold = 2\n"
    )
}

async fn front(text: &str) -> Front {
    front_with(text, &[]).await
}

/// A redirector on `text`, with `files` (name, content) written beside its config.
async fn front_with(text: &str, files: &[(&str, String)]) -> Front {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let config_path = dir.path().join("redirect.toml");
    std::fs::write(&config_path, text).unwrap();
    let config = RedirectConfig::load(&config_path).unwrap();
    let redirector = Redirector::start(config, Some(config_path.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server::run(
        listener,
        redirector.clone(),
        std::future::pending(),
    ));
    Front {
        url,
        redirector,
        config_path,
        _dir: dir,
    }
}

/// A client whose requests come from `ip`, not following redirects.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn location(c: &reqwest::Client, url: &str) -> String {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 307, "{url}");
    r.headers()["location"].to_str().unwrap().to_owned()
}

async fn until(what: &str, within: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Two nodes on `ips` (regions a and b) in front of `reg`, and a redirector once
/// both are up.
async fn fleet(reg: &Registry, ips: [&str; 2]) -> (TestFerry, TestFerry, Front) {
    fleet_with(reg, ips, |text| text, &[]).await
}

/// As [`fleet`], with the redirector's config text passed through `edit`.
async fn fleet_with(
    reg: &Registry,
    ips: [&str; 2],
    edit: impl FnOnce(String) -> String,
    files: &[(&str, String)],
) -> (TestFerry, TestFerry, Front) {
    let node_cfg = format!(
        "[[upstream]]\nname = \"up\"\nurl = \"{}\"\ndefault = true\n",
        reg.url
    );
    let a = TestFerry::start_on(ips[0], &node_cfg).await;
    let b = TestFerry::start_on(ips[1], &node_cfg).await;
    let f = front_with(&edit(config_text(&reg.url, &a.url, &b.url, "")), files).await;
    until("both nodes up", Duration::from_secs(5), async || {
        nodes_up(&f).await == 2
    })
    .await;
    (a, b, f)
}

async fn nodes_up(f: &Front) -> usize {
    let status: serde_json::Value = reqwest::get(format!("{}/status", f.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["healthy"] == true)
        .count()
}

#[tokio::test]
async fn clients_land_on_their_region_and_fail_over() {
    let reg = Registry::start().await;
    let image = Image::random(&[1 << 20]);
    reg.push(&image, "team/app", "v1");
    let (a, b, f) = fleet(&reg, ["127.0.0.10", "127.0.0.11"]).await;

    let layer = &image.layers[0].digest;
    let blob = format!("{}/v2/team/app/blobs/{layer}", f.url);
    let from_a = client_from("127.0.0.2");
    let from_b = client_from("127.0.0.3");
    assert_eq!(
        location(&from_a, &blob).await,
        format!("{}/v2/team/app/blobs/{layer}", a.url)
    );
    assert_eq!(
        location(&from_b, &blob).await,
        format!("{}/v2/team/app/blobs/{layer}", b.url)
    );
    // Manifests go to the upstream.
    assert_eq!(
        location(&from_a, &format!("{}/v2/team/app/manifests/v1", f.url)).await,
        format!("{}/v2/team/app/manifests/v1", reg.url)
    );
    // A spoofed X-Forwarded-For from an untrusted peer changes nothing; from a trusted
    // proxy it is believed.
    let claims_a = |c: reqwest::Client| {
        let blob = blob.clone();
        async move {
            let r = c
                .get(&blob)
                .header("x-forwarded-for", "127.0.0.2")
                .send()
                .await
                .unwrap();
            r.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    assert!(claims_a(client_from("127.0.0.3")).await.starts_with(&b.url));
    assert!(claims_a(client_from("127.0.0.5")).await.starts_with(&a.url));

    // The redirect target really serves the blob.
    let body = reqwest::get(location(&from_a, &blob).await)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body, image.layers[0].bytes);

    // Node a stops: its clients move to the fallback within the health interval.
    let a_url = a.url.clone();
    let _ = a.stop().await;
    let started = Instant::now();
    until("failover to b", Duration::from_secs(3), async || {
        location(&from_a, &blob).await.starts_with(&b.url)
    })
    .await;
    let took = started.elapsed();
    // 2 failed probes at 200 ms, each up to a 150 ms timeout (connection refused is faster).
    assert!(took < Duration::from_millis(1200), "failover took {took:?}");
    let status: serde_json::Value = reqwest::get(format!("{}/status", f.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let node_a = &status["nodes"][0];
    assert_eq!(node_a["url"], a_url.as_str());
    assert_eq!(node_a["healthy"], false);
    assert!(
        node_a["last_error"].as_str().unwrap().contains("connect"),
        "{node_a}"
    );
    let metrics = metrics(&f).await;
    assert!(
        metrics.contains("ferry_redirect_node_transitions_total"),
        "{metrics}"
    );

    // skopeo pulls through the redirector (manifests from the upstream, blobs from b).
    let r = format!(
        "docker://{}/team/app:v1",
        f.url.trim_start_matches("http://")
    );
    let out = tokio::task::spawn_blocking(move || skopeo_pull(&r, None))
        .await
        .unwrap()
        .unwrap();
    verify_layout(out.path(), &image);
    assert!(b.metric("ferry_cache_lookups_total", &[("kind", "blob")]) >= 1.0);
}

#[tokio::test]
async fn reload_applies_a_good_config_and_keeps_the_old_on_a_bad_one() {
    let reg = Registry::start().await;
    let (a, b, f) = fleet(&reg, ["127.0.0.12", "127.0.0.13"]).await;
    let from_a = client_from("127.0.0.2");
    let blob = format!("{}/v2/x/blobs/sha256:{}", f.url, "a".repeat(64));
    assert!(location(&from_a, &blob).await.starts_with(&a.url));

    // A bad file is refused; the running config keeps working.
    std::fs::write(&f.config_path, "upstream = \"ftp://nope\"\n").unwrap();
    assert!(f.redirector.reload().is_err());
    assert!(location(&from_a, &blob).await.starts_with(&a.url));

    // Draining a by config sends its clients to b, without a restart; b stays up.
    std::fs::write(
        &f.config_path,
        config_text(&reg.url, &a.url, &b.url, "drain = true\n"),
    )
    .unwrap();
    f.redirector.reload().unwrap();
    assert!(location(&from_a, &blob).await.starts_with(&b.url));
    assert_eq!(nodes_up(&f).await, 2, "health carried across the reload");
}

/// An AWS ip-ranges.json with one prefix in provider region "x-1".
fn aws_ranges(prefix: &str) -> String {
    format!(
        "{{\"prefixes\": [{{\"ip_prefix\": \"{prefix}\", \"region\": \"x-1\", \"service\": \"AMAZON\"}}], \"ipv6_prefixes\": []}}"
    )
}

async fn metrics(f: &Front) -> String {
    reqwest::get(format!("{}/metrics", f.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn reloads(f: &Front, result: &str) -> u64 {
    let metrics = metrics(f).await;
    let line = format!("ferry_redirect_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn watch_reloads_changed_config_and_range_files() {
    let reg = Registry::start().await;
    // 127.0.0.6 is in region a only through a provider range file.
    let ranges =
        "[[region.ranges]]\nfile = \"ranges.json\"\nformat = \"aws\"\nregions = [\"x-1\"]\n";
    let (a, b, f) = fleet_with(
        &reg,
        ["127.0.0.14", "127.0.0.15"],
        |text| {
            format!("watch = \"100ms\"\n{text}").replacen(
                "fallback = [\"b\"]\n",
                &format!("fallback = [\"b\"]\n{ranges}"),
                1,
            )
        },
        &[("ranges.json", aws_ranges("127.0.0.6/32"))],
    )
    .await;
    let dir = f.config_path.parent().unwrap().to_owned();
    let good = std::fs::read_to_string(&f.config_path).unwrap();
    let blob = format!("{}/v2/x/blobs/sha256:{}", f.url, "a".repeat(64));
    let from_6 = client_from("127.0.0.6");
    let from_2 = client_from("127.0.0.2");
    assert!(location(&from_6, &blob).await.starts_with(&a.url));
    let within = Duration::from_secs(5);

    // The range file changes: 127.0.0.6 is no longer region a's, so it falls to the
    // default region b. No signal is sent.
    std::fs::write(dir.join("ranges.json"), aws_ranges("127.0.0.7/32")).unwrap();
    until("the range file reloaded", within, async || {
        location(&from_6, &blob).await.starts_with(&b.url)
    })
    .await;
    assert_eq!(reloads(&f, "applied").await, 1);
    assert!(location(&client_from("127.0.0.7"), &blob)
        .await
        .starts_with(&a.url));

    // A bad config file is rejected once and the running one kept.
    std::fs::write(
        &f.config_path,
        "watch = \"100ms\"\nupstream = \"ftp://nope\"\n",
    )
    .unwrap();
    until("the bad file rejected", within, async || {
        reloads(&f, "rejected").await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        reloads(&f, "rejected").await,
        1,
        "rejected again without a change"
    );
    assert!(location(&from_2, &blob).await.starts_with(&a.url));
    assert_eq!(nodes_up(&f).await, 2);

    // An editor's save (write a new file, rename it over the old) that drains a.
    let tmp = dir.join("redirect.toml.new");
    std::fs::write(
        &tmp,
        good.replacen("region = \"a\"\n", "region = \"a\"\ndrain = true\n", 1),
    )
    .unwrap();
    std::fs::rename(&tmp, &f.config_path).unwrap();
    until("the drained config applied", within, async || {
        location(&from_2, &blob).await.starts_with(&b.url)
    })
    .await;
    assert_eq!(reloads(&f, "applied").await, 2);
    assert_eq!(nodes_up(&f).await, 2, "health carried across the reload");
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_server_stays_up() {
    let f = front(&config_text(
        "http://127.0.0.1:9",
        "http://127.0.0.10:1",
        "http://127.0.0.11:1",
        "",
    ))
    .await;
    let c = client_from("127.0.0.2");
    let blob = format!("/v2/x/blobs/sha256:{}", "b".repeat(64));
    // No node is healthy: the upstream.
    assert_eq!(
        location(&c, &format!("{}{blob}", f.url)).await,
        format!("http://127.0.0.1:9{blob}")
    );
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = c
            .request(method.parse().unwrap(), format!("{}{blob}", f.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
    }
    let r = c
        .get(format!("{}/v2/UPPER/blobs/sha256:00", f.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(common::error_code(r).await, "DIGEST_INVALID");
    let r = c
        .get(format!("{}/v2/a/../b/blobs/{}", f.url, &blob[10..]))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 400 || r.status() == 404, "{}", r.status());
    assert_eq!(
        c.get(format!("{}/nothing", f.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = c.get(format!("{}/v2/", f.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(
        location(&c, &format!("{}/", f.url)).await,
        "https://docs.example/mirror"
    );
    // A huge header is refused by the HTTP layer, not by a crash.
    let r = c
        .get(format!("{}{blob}", f.url))
        .header("x-junk", "j".repeat(1 << 20))
        .send()
        .await;
    if let Ok(r) = r {
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    // A header-injection attempt in the query never reaches the Location.
    let r = c
        .get(format!("{}/v2/x/tags/list?n=1%0d%0aSet-Cookie:%20x", f.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "http://127.0.0.1:9/v2/x/tags/list");
    assert_eq!(
        c.get(format!("{}/v2/", f.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
