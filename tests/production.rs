//! What production needs: TLS (HTTP/2 and HTTP/1.1, rotation without restart,
//! client certificates), client access control, limits, access logs that never carry
//! upstream credentials, and a graceful SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::fake::{FakeUpstream, Fault};
use common::image::{verify_layout, Image};
use common::node::Node;
use common::pki::{ca, leaf};
use common::registry::{skopeo, Registry};
use common::{sha256_hex, TestFerry};

/// Replaces `to` with `from`'s content in one rename, as cert-manager does.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn https_client(ca: &Path, http1: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca);
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// A directory skopeo reads as "trust these CAs" (`--src-cert-dir`).
fn cert_dir(ca: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(ca, d.path().join("ca.crt")).unwrap();
    d
}

fn skopeo_pull_tls(
    reference: &str,
    certs: &Path,
    creds: Option<&str>,
) -> Result<tempfile::TempDir, String> {
    let out = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:pulled", out.path().display());
    let certs = format!("--src-cert-dir={}", certs.display());
    let mut args = vec!["copy", certs.as_str()];
    let creds = creds.map(|c| format!("--src-creds={c}"));
    if let Some(c) = &creds {
        args.push(c);
    }
    args.extend([reference, dest.as_str()]);
    skopeo(&args)?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_h2_and_http1_and_picks_up_a_rotated_certificate() {
    let reg = Registry::start().await;
    let image = Image::random(&[200_000]);
    reg.push(&image, "app", "v1");
    let pki = tempfile::tempdir().unwrap();
    let p = pki.path();
    let ca1 = ca(p, "one");
    let (crt1, key1) = leaf(p, "one", "server1");
    let ca2 = ca(p, "two");
    let (crt2, key2) = leaf(p, "two", "server2");
    let (cert, key) = (p.join("tls.crt"), p.join("tls.key"));
    install(&crt1, &cert);
    install(&key1, &key);

    let ferry = TestFerry::start(&format!(
        "[tls]\ncert = {cert:?}\nkey = {key:?}\nreload_interval = \"1s\"\n\
         [[upstream]]\nname = \"reg\"\nurl = \"{}\"\ndefault = true\n",
        reg.url
    ))
    .await;
    let https = format!("https://127.0.0.1:{}", ferry.addr.port());

    // HTTP/2 by ALPN, and HTTP/1.1 for clients that only speak that.
    for (http1, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let r = https_client(&ca1, http1)
            .get(format!("{https}/v2/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), version);
    }
    // Plain HTTP on the TLS port gets nowhere.
    assert!(common::client()
        .get(format!("{}/v2/", ferry.url))
        .send()
        .await
        .is_err());

    let certs1 = cert_dir(&ca1);
    let pulled = skopeo_pull_tls(
        &format!("docker://127.0.0.1:{}/app:v1", ferry.addr.port()),
        certs1.path(),
        None,
    )
    .unwrap();
    verify_layout(pulled.path(), &image);

    // Rotate to a certificate from another CA, key first: the half-written pair is
    // rejected (and logged), the complete one is picked up without a restart.
    install(&key2, &key);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    install(&crt2, &cert);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if https_client(&ca2, false)
            .get(format!("{https}/v2/"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        https_client(&ca1, false)
            .get(format!("{https}/v2/"))
            .send()
            .await
            .is_err(),
        "the old certificate is still served"
    );
    let certs2 = cert_dir(&ca2);
    let pulled = skopeo_pull_tls(
        &format!("docker://127.0.0.1:{}/app:v1", ferry.addr.port()),
        certs2.path(),
        None,
    )
    .unwrap();
    verify_layout(pulled.path(), &image);
    ferry.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let pki = tempfile::tempdir().unwrap();
    let p = pki.path();
    let server_ca = ca(p, "srv");
    let (cert, key) = leaf(p, "srv", "server");
    let client_ca = ca(p, "cli");
    let (ccert, ckey) = leaf(p, "cli", "client");
    let ferry = TestFerry::start(&format!(
        "[tls]\ncert = {cert:?}\nkey = {key:?}\nclient_ca = {client_ca:?}\n\
         [[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:9\"\ndefault = true\n"
    ))
    .await;
    let url = format!("https://127.0.0.1:{}/v2/", ferry.addr.port());
    assert!(https_client(&server_ca, false)
        .get(&url)
        .send()
        .await
        .is_err());
    let mut pem = std::fs::read(&ccert).unwrap();
    pem.extend(std::fs::read(&ckey).unwrap());
    let with_cert = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&server_ca).unwrap()).unwrap(),
        )
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    assert_eq!(with_cert.get(&url).send().await.unwrap().status(), 200);
    ferry.stop().await;
}

// ---- access control ----------------------------------------------------------------------

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_repositories_challenge_and_skopeo_logs_in() {
    let reg = Registry::start().await;
    let public = Image::random(&[50_000]);
    let private = Image::random(&[60_000]);
    reg.push(&public, "open/app", "v1");
    reg.push(&private, "private/app", "v1");
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!(
            "# users\nalice:{}\n",
            bcrypt::hash("wonderland", 5).unwrap()
        ),
    )
    .unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ci:ci-token-0123456789abcdef\n").unwrap();
    let ferry = TestFerry::start(&format!(
        "[auth]\nhtpasswd = {htpasswd:?}\ntokens = {tokens:?}\nprotected_repositories = [\"private\"]\n\
         [[upstream]]\nname = \"reg\"\nurl = \"{}\"\ndefault = true\n",
        reg.url
    ))
    .await;
    let c = common::client();
    let manifest = format!("{}/v2/private/app/manifests/v1", ferry.url);

    // The ping challenges anonymous clients, so they know to send credentials.
    let r = c.get(format!("{}/v2/", ferry.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"ferry\"");
    assert_eq!(common::error_code(r).await, "UNAUTHORIZED");
    for (auth, status) in [
        (None, 401),
        (Some(basic("alice", "wrong")), 401),
        (Some(basic("mallory", "wonderland")), 401),
        (Some("Bearer not-a-token".to_owned()), 401),
        (Some(basic("alice", "wonderland")), 200),
        (Some("Bearer ci-token-0123456789abcdef".to_owned()), 200),
    ] {
        let mut req = c
            .get(&manifest)
            .header("accept", "application/vnd.oci.image.manifest.v1+json");
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status, "{auth:?}");
        if status == 401 {
            assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"ferry\"");
        }
    }
    // Wrong credentials are refused even where anonymous pulls are allowed.
    let r = c
        .get(format!("{}/v2/open/app/manifests/v1", ferry.url))
        .header("authorization", basic("alice", "wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Real clients: anonymous where allowed, logged in where not.
    let host = ferry.addr.to_string();
    let pull = |repo: &str, creds: Option<&str>| {
        let out = tempfile::tempdir().unwrap();
        let mut args = vec!["copy".to_owned(), "--src-tls-verify=false".to_owned()];
        if let Some(c) = creds {
            args.push(format!("--src-creds={c}"));
        }
        args.push(format!("docker://{host}/{repo}:v1"));
        args.push(format!("oci:{}:pulled", out.path().display()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        skopeo(&args).map(|()| out)
    };
    verify_layout(pull("open/app", None).unwrap().path(), &public);
    assert!(pull("private/app", None).is_err());
    assert!(pull("private/app", Some("alice:wrong")).is_err());
    verify_layout(
        pull("private/app", Some("alice:wonderland"))
            .unwrap()
            .path(),
        &private,
    );
    ferry.stop().await;
}

// ---- limits ------------------------------------------------------------------------------

/// One request on a raw connection; the response head and body as text.
fn raw(stream: &mut std::net::TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_answer_429_413_431_and_the_server_stays_healthy() {
    let fake = FakeUpstream::start().await;
    let slow = fake.add_blob(vec![7u8; 64 * 1024]);
    fake.fault(
        &slow,
        Fault::Slow {
            chunk: 4096,
            delay: Duration::from_millis(100),
        },
    );
    let other = fake.add_blob(vec![8u8; 1024]);
    let ferry = TestFerry::start(&format!(
        "[limits]\nrequests_per_second = 5\nburst = 10\nconnections_per_client = 3\n\
         max_body_size = \"1KiB\"\nidle_timeout = \"1s\"\n\
         [[upstream]]\nname = \"f\"\nurl = \"{}\"\ndefault = true\nmax_concurrency = 1\nqueue_timeout = \"300ms\"\n",
        fake.url
    ))
    .await;
    let c = common::client();
    let v2 = format!("{}/v2/", ferry.url);

    // A burst over the rate: the first `burst` pass, the rest get 429 + Retry-After.
    let mut codes = Vec::new();
    for _ in 0..20 {
        let r = c.get(&v2).send().await.unwrap();
        if r.status() == 429 {
            let secs: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&secs), "Retry-After {secs}");
            assert_eq!(common::error_code(r).await, "TOOMANYREQUESTS");
            codes.push(429);
        } else {
            codes.push(r.status().as_u16());
        }
    }
    // The burst of 10 passes; at 5/s, at most one more token comes in meanwhile.
    let passed = codes.iter().filter(|c| **c == 200).count();
    assert!((10..=12).contains(&passed), "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == 429).count(),
        20 - passed,
        "{codes:?}"
    );
    // Past Retry-After the client is served again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(c.get(&v2).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Request bodies over the limit: 413; request heads over the limit: 431.
    let r = c.post(&v2).body(vec![0u8; 4096]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(common::error_code(r).await, "SIZE_INVALID");
    let r = c
        .get(&v2)
        .header("x-junk", "j".repeat(100 * 1024))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 431);
    }

    // A connection that sends nothing is closed after idle_timeout.
    let mut idle = std::net::TcpStream::connect(ferry.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let n = idle.read(&mut [0u8; 16]).unwrap_or(0);
    assert_eq!(n, 0, "the server closes an idle connection");
    assert!(started.elapsed() < Duration::from_secs(4));

    // Connections per client: the fourth open connection is answered 429 and closed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut open: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(ferry.addr).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = std::net::TcpStream::connect(ferry.addr).unwrap();
    let head = raw(&mut fourth, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let head = raw(&mut open[0], "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(open);
    drop(fourth);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // One request open to the upstream at a time: while a slow fill holds it, another
    // miss waits `queue_timeout` and gets 429; once it is done, the miss is served.
    let url = |d: &str| format!("{}/v2/x/blobs/{d}", ferry.url);
    let (c1, u1) = (c.clone(), url(&slow));
    let first =
        tokio::spawn(async move { c1.get(u1).send().await.unwrap().bytes().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = c.get(url(&other)).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let body = first.await.unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&body)), slow);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = c.get(url(&other)).send().await.unwrap();
    assert_eq!(r.status(), 200);

    assert!(ferry.metric("ferry_http_refused_total", &[("reason", "rate")]) >= 10.0);
    assert!(ferry.metric("ferry_http_refused_total", &[("reason", "connections")]) >= 1.0);
    assert_eq!(
        c.get(format!("{}/healthz", ferry.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    ferry.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_timeout_answers_503_and_the_redirector_serves_tls() {
    // A node whose upstream takes 5 s to answer, with a 1 s request timeout.
    let fake = FakeUpstream::start().await;
    let digest = fake.add_blob(vec![1u8; 1000]);
    fake.fault(&digest, Fault::Delay(Duration::from_secs(5)));
    let ferry = TestFerry::start(&format!(
        "[limits]\nrequest_timeout = \"1s\"\n\
         [[upstream]]\nname = \"f\"\nurl = \"{}\"\ndefault = true\n",
        fake.url
    ))
    .await;
    let started = Instant::now();
    let r = common::client()
        .get(format!("{}/v2/x/blobs/{digest}", ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(common::error_code(r).await, "UNAVAILABLE");
    assert!(ferry.metric("ferry_http_refused_total", &[("reason", "timeout")]) >= 1.0);
    ferry.stop().await;

    // The redirector takes the same [tls] table.
    let pki = tempfile::tempdir().unwrap();
    let ca = ca(pki.path(), "red");
    let (cert, key) = leaf(pki.path(), "red", "redirector");
    let config = ferry::config::redirect::RedirectConfig::from_toml(
        &format!(
            "upstream = \"http://127.0.0.1:9\"\ninfo_url = \"http://docs.example/\"\n\
             [tls]\ncert = {cert:?}\nkey = {key:?}\n"
        ),
        "redirect.toml",
        None,
    )
    .unwrap();
    let redirector = ferry::redirect::server::Redirector::start(config, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ferry::redirect::server::run(listener, redirector, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!("https://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.headers()["location"], "http://docs.example/");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

// ---- logs and shutdown, on the binary ------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn access_log_is_json_and_upstream_credentials_never_leak() {
    let mut reg = Registry::start().await;
    let image = Image::random(&[80_000]);
    reg.push(&image, "team/app", "v1");
    let (user, password) = ("ferry-upstream", "pw-Zq7-never-in-logs");
    reg.require_basic(user, password).await;
    let dir = tempfile::tempdir().unwrap();
    let port = ferry_storage::s3_testing::unused_port();
    let node = Node::start(
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:{port}\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n\
             [storage]\npath = {:?}\n\
             [[upstream]]\nname = \"reg\"\nurl = \"{}\"\ndefault = true\nusername = \"{user}\"\npassword = \"{password}\"\n\
             [[upstream]]\nname = \"bad\"\nurl = \"{}\"\nusername = \"{user}\"\npassword = \"{password}-wrong\"\n",
            dir.path().join("data"),
            reg.url,
            reg.url
        ),
    )
    .await;
    let host = format!("127.0.0.1:{port}");
    let out = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{host}/team/app:v1"),
        &format!("oci:{}:pulled", out.path().display()),
    ])
    .unwrap();
    verify_layout(out.path(), &image);
    // Failures with credentials involved: wrong upstream password, unknown repo.
    let c = common::client();
    let mut bodies = String::new();
    for path in [
        "/v2/bad/team/app/manifests/v1",
        "/v2/team/nothing/manifests/v1",
        "/v2/team/app/blobs/sha256:abc",
    ] {
        let r = c.get(format!("http://{host}{path}")).send().await.unwrap();
        assert!(
            r.status().is_client_error() || r.status().is_server_error(),
            "{path}"
        );
        bodies.push_str(&format!("{:?}", r.headers()));
        bodies.push_str(&r.text().await.unwrap());
    }
    node.terminate();
    let log = std::fs::read_to_string(dir.path().join("ferry.log")).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    for secret in [password, encoded.as_str()] {
        assert!(
            !log.contains(secret),
            "the log holds an upstream credential"
        );
        assert!(
            !bodies.contains(secret),
            "a response holds an upstream credential"
        );
    }
    // One JSON access line per request, with the fields operators filter on.
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "ferry::access")
        .collect();
    let blob = &image.layers[0].digest;
    let line = access
        .iter()
        .find(|v| {
            v["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(blob.as_str()))
                && v["method"] == "GET"
        })
        .unwrap_or_else(|| panic!("no access line for the layer GET in\n{log}"));
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes"], image.layers[0].bytes.len() as u64);
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["upstream"], "reg");
    assert!(
        ["miss", "hit", "coalesced"].contains(&line["cache"].as_str().unwrap()),
        "{line}"
    );
    assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(access
        .iter()
        .any(|v| v["status"] == 404 || v["status"] == 403 || v["status"] == 503));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_large_download_finish_within_the_grace_period() {
    let fake = FakeUpstream::start().await;
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = fake.add_blob(data.clone());
    // About 2 s to send: 64 chunks of 64 KiB, 30 ms apart.
    fake.fault(
        &digest,
        Fault::Slow {
            chunk: 64 * 1024,
            delay: Duration::from_millis(30),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let port = ferry_storage::s3_testing::unused_port();
    let node = Node::start(
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:{port}\"\n[limits]\nshutdown_grace = \"20s\"\n\
             [storage]\npath = {:?}\n[[upstream]]\nname = \"f\"\nurl = \"{}\"\ndefault = true\n",
            dir.path().join("data"),
            fake.url
        ),
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/v2/x/blobs/{digest}");
    let mut resp = common::client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = resp.chunk().await.unwrap().unwrap().to_vec();
    let stopping = std::thread::spawn(move || node.terminate());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections once SIGTERM arrived...
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting after SIGTERM"
    );
    // ...but the download in flight runs to its end, digest intact.
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(format!("sha256:{}", sha256_hex(&got)), digest);
    stopping.join().unwrap();
    // The fill committed before exit, and the index agrees with the store.
    let check = common::node::index_cmd(&dir.path().join("ferry.toml"), &["check", "--verify"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(common::blob_path_in(&dir.path().join("data"), &digest).is_file());
}
