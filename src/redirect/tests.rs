use super::*;
use crate::config::redirect::RedirectConfig;

const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

const CONFIG: &str = r#"
upstream = "https://registry.example/"
info_url = "https://docs.example/mirror"
default_region = "us"
trusted_proxies = ["10.255.0.0/16"]

[[region]]
name = "eu"
cidrs = ["203.0.113.0/24", "2001:db8:e::/48"]
fallback = ["us"]

[[region]]
name = "us"
cidrs = ["198.51.100.0/24"]

[[region]]
name = "ap"
cidrs = ["192.0.2.0/24", "192.0.2.128/25"]
fallback = ["eu"]

[[node]]
url = "http://eu-1.example:5000"
region = "eu"

[[node]]
url = "http://eu-2.example:5000/"
region = "eu"

[[node]]
url = "http://us-1.example:5000"
region = "us"

[[node]]
url = "http://ap-1.example:5000"
region = "ap"
drain = true

[[artifacts]]
prefix = "/binaries/kops/"
default = "https://artifacts.example/kops"
regions = { eu = "https://eu.artifacts.example/kops" }
"#;

fn routing(extra: &str) -> Routing {
    let c = RedirectConfig::from_toml(&format!("{extra}{CONFIG}"), "r.toml", None).unwrap();
    Routing::new(c).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const ALL_UP: &dyn Fn(usize) -> bool = &|_| true;

fn loc(d: Decision) -> Option<String> {
    match d {
        Decision::Redirect(_, l) => Some(l),
        _ => None,
    }
}

#[test]
fn routing_table() {
    let r = routing("");
    let blob = format!("/v2/library/alpine/blobs/{D}");
    let eu = |d: &Decision| match d {
        Decision::Redirect(Target::Node(i), l) => {
            *i < 2
                && (l == &format!("http://eu-1.example:5000{blob}")
                    || l == &format!("http://eu-2.example:5000{blob}"))
        }
        _ => false,
    };
    let redirect = |s: &str| Some(s.to_owned());
    // (method, path, query, client, health) → decision
    let us_blob = redirect(&format!("http://us-1.example:5000{blob}"));
    let upstream_blob = redirect(&format!("https://registry.example{blob}"));
    assert!(eu(&r.decide("GET", &blob, None, ip("203.0.113.9"), ALL_UP)));
    assert!(eu(&r.decide(
        "HEAD",
        &blob,
        None,
        ip("2001:db8:e::1"),
        ALL_UP
    )));
    assert_eq!(
        loc(r.decide("GET", &blob, None, ip("198.51.100.7"), ALL_UP)),
        us_blob
    );
    // eu nodes down → fallback us; us down too → upstream.
    assert_eq!(
        loc(r.decide("GET", &blob, None, ip("203.0.113.9"), &|i| i >= 2)),
        us_blob
    );
    assert_eq!(
        r.decide("GET", &blob, None, ip("203.0.113.9"), &|_| false),
        Decision::Redirect(Target::Upstream, upstream_blob.unwrap())
    );
    // ap's only node is drained → its fallback eu.
    assert!(eu(&r.decide("GET", &blob, None, ip("192.0.2.200"), ALL_UP)));
    // Unknown client → default region us.
    assert_eq!(
        loc(r.decide("GET", &blob, None, ip("8.8.8.8"), ALL_UP)),
        us_blob
    );
    // Manifests and tags go upstream, with a harmless query kept.
    assert_eq!(
        loc(r.decide(
            "GET",
            "/v2/library/alpine/manifests/3.20",
            None,
            ip("203.0.113.9"),
            ALL_UP
        )),
        redirect("https://registry.example/v2/library/alpine/manifests/3.20")
    );
    assert_eq!(
        loc(r.decide(
            "GET",
            "/v2/library/alpine/tags/list",
            Some("n=10&last=3.1"),
            ip("203.0.113.9"),
            ALL_UP
        )),
        redirect("https://registry.example/v2/library/alpine/tags/list?n=10&last=3.1")
    );
    assert_eq!(
        loc(r.decide(
            "GET",
            "/v2/library/alpine/tags/list",
            Some("n=1%0d%0aSet-Cookie:x"),
            ip("203.0.113.9"),
            ALL_UP
        )),
        redirect("https://registry.example/v2/library/alpine/tags/list"),
        "an unsafe query is dropped"
    );
    assert_eq!(
        r.decide("GET", "/v2/", None, ip("1.2.3.4"), ALL_UP),
        Decision::ApiVersion
    );
    assert_eq!(
        loc(r.decide("GET", "/", None, ip("1.2.3.4"), ALL_UP)),
        redirect("https://docs.example/mirror")
    );
    assert_eq!(
        r.decide("GET", "/favicon.ico", None, ip("1.2.3.4"), ALL_UP),
        Decision::NotFound
    );
    for m in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        assert_eq!(
            r.decide(m, &blob, None, ip("1.2.3.4"), ALL_UP),
            Decision::MethodNotAllowed
        );
    }
    assert_eq!(
        r.decide("GET", "/v2/x/blobs/uploads/", None, ip("1.2.3.4"), ALL_UP),
        Decision::MethodNotAllowed
    );
    // Artifacts: per-region mirror, else the default.
    assert_eq!(
        loc(r.decide(
            "GET",
            "/binaries/kops/1.30.0/linux/amd64/kops",
            None,
            ip("203.0.113.9"),
            ALL_UP
        )),
        redirect("https://eu.artifacts.example/kops/1.30.0/linux/amd64/kops")
    );
    assert_eq!(
        loc(r.decide(
            "GET",
            "/binaries/kops/1.30.0/kops",
            None,
            ip("198.51.100.7"),
            ALL_UP
        )),
        redirect("https://artifacts.example/kops/1.30.0/kops")
    );
}

#[test]
fn malformed_requests_never_build_a_location() {
    let r = routing("");
    let c = ip("203.0.113.9");
    for path in [
        "/v2/UPPER/blobs/sha256:00",
        "/v2/a/blobs/sha256:zz",
        "/v2/a/blobs/md5:0123",
        "/v2/a/manifests/bad%20tag",
    ] {
        let d = r.decide("GET", path, None, c, ALL_UP);
        assert!(matches!(d, Decision::Bad(_)), "{path}: {d:?}");
    }
    for path in [
        "/v2/..%2f..%2fadmin/blobs/x",
        "/binaries/kops/../../etc/passwd",
        "/binaries/kops/",
        "/binaries/kops/a//b",
        "/binaries/kops/a\r\nLocation: http://evil",
        "//evil.example/",
    ] {
        let d = r.decide("GET", path, None, c, ALL_UP);
        assert!(!matches!(d, Decision::Redirect(..)), "{path}: {d:?}");
    }
    let d = r.decide("GET", &format!("/v2/a/../b/blobs/{D}"), None, c, ALL_UP);
    assert!(matches!(d, Decision::Bad(_)), "{d:?}");
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let r = routing("");
    let proxy = ip("10.255.0.7");
    // Untrusted peer: its header is ignored, spoofed or not.
    assert_eq!(
        r.client_ip(ip("198.51.100.7"), Some("203.0.113.9")),
        ip("198.51.100.7")
    );
    // Trusted peer: the rightmost entry that is not a trusted proxy.
    assert_eq!(r.client_ip(proxy, Some("203.0.113.9")), ip("203.0.113.9"));
    assert_eq!(
        r.client_ip(proxy, Some("1.1.1.1, 203.0.113.9, 10.255.0.8")),
        ip("203.0.113.9"),
        "a client-supplied entry left of the real one is ignored"
    );
    assert_eq!(r.client_ip(proxy, None), proxy);
    assert_eq!(r.client_ip(proxy, Some("garbage")), proxy);
    assert_eq!(r.client_ip(proxy, Some("203.0.113.9, garbage")), proxy);
}

#[test]
fn a_digest_keeps_its_node_and_weights_spread_load() {
    let mut text = String::from(
        "upstream = \"https://u.example\"\n[[region]]\nname = \"r\"\ncidrs = [\"0.0.0.0/0\"]\n",
    );
    for i in 0..4 {
        let w = if i == 0 { 3 } else { 1 };
        text.push_str(&format!(
            "[[node]]\nurl = \"http://n{i}.example\"\nregion = \"r\"\nweight = {w}\n"
        ));
    }
    let r = Routing::new(RedirectConfig::from_toml(&text, "w.toml", None).unwrap()).unwrap();
    let up = [true; 4];
    let all = |h: [bool; 4]| move |i: usize| h[i];
    let mut counts = [0usize; 4];
    for i in 0..6000 {
        let key = format!("sha256:{i:064x}");
        let n = r.pick_node(Some(0), &key, &all(up)).unwrap();
        assert_eq!(r.pick_node(Some(0), &key, &all(up)), Some(n), "stable");
        counts[n] += 1;
        // Taking another node down never moves this digest unless it was on that node.
        let mut down = up;
        down[(n + 1) % 4] = false;
        assert_eq!(r.pick_node(Some(0), &key, &all(down)), Some(n));
    }
    // Weight 3 of 6: about half the digests.
    assert!((2700..3300).contains(&counts[0]), "{counts:?}");
    for c in &counts[1..] {
        assert!((800..1200).contains(c), "{counts:?}");
    }
}

#[test]
fn config_errors_name_the_key() {
    let base = "upstream = \"https://u.example\"\n";
    let cases = [
        ("", "upstream"),
        ("upstream = \"ftp://x\"\n", "upstream"),
        ("status = 301\n", "status"),
        ("[[region]]\nname = \"a\"\ncidrs = [\"300.0.0.0/8\"]\n", "region[0].cidrs[0]"),
        ("[[region]]\nname = \"a\"\nfallback = [\"b\"]\n", "region[0].fallback[0]"),
        ("[[region]]\nname = \"a\"\nfallback = [\"a\"]\n", "region[0].fallback"),
        ("[[region]]\nname = \"a\"\n[[region]]\nname = \"a\"\n", "region[1].name"),
        ("[[node]]\nurl = \"http://n\"\nregion = \"nowhere\"\n", "node[0].region"),
        ("[[node]]\nurl = \"http://n?x=1\"\n", "node[0].url"),
        ("[health]\ntimeout = \"5s\"\ninterval = \"1s\"\n", "health.timeout"),
        ("watch = \"10\"\n", "watch"),
        ("watch = \"50ms\"\n", "watch"),
        ("[[artifacts]]\nprefix = \"/v2/x/\"\ndefault = \"https://a\"\n", "artifacts[0].prefix"),
        ("[[region]]\nname = \"a\"\n[[region.ranges]]\nfile = \"/nonexistent.json\"\nformat = \"aws\"\nregions = [\"eu-west-1\"]\n", "region[0].ranges[0]"),
    ];
    for (extra, key) in cases {
        let text = if extra.starts_with("upstream") || extra.is_empty() && key == "upstream" {
            extra.to_owned()
        } else {
            format!("{base}{extra}")
        };
        let e = RedirectConfig::from_toml(&text, "r.toml", None).unwrap_err();
        assert_eq!(e.key, key, "{extra}: {e}");
    }
    // The same prefix in two regions is refused when the table is built.
    let text = format!("{base}[[region]]\nname = \"a\"\ncidrs = [\"192.0.2.0/24\"]\n[[region]]\nname = \"b\"\ncidrs = [\"192.0.2.0/24\"]\n");
    let e = Routing::new(RedirectConfig::from_toml(&text, "r.toml", None).unwrap())
        .err()
        .unwrap();
    assert_eq!(e.key, "region[1].cidrs", "{e}");
}

#[test]
fn provider_range_files_are_filtered_by_region() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ip-ranges.json"),
        r#"{"prefixes":[
            {"ip_prefix":"3.5.140.0/22","region":"eu-west-1","service":"AMAZON"},
            {"ip_prefix":"3.5.140.0/22","region":"eu-west-1","service":"EC2"},
            {"ip_prefix":"52.94.0.0/22","region":"us-east-1","service":"AMAZON"}],
          "ipv6_prefixes":[{"ipv6_prefix":"2a05:d000::/25","region":"eu-west-1","service":"AMAZON"}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cloud.json"),
        r#"{"prefixes":[{"ipv4Prefix":"34.76.0.0/14","service":"Google Cloud","scope":"europe-west1"},
                        {"ipv4Prefix":"34.80.0.0/15","service":"Google Cloud","scope":"asia-east1"}]}"#,
    )
    .unwrap();
    let text = "upstream = \"https://u.example\"\n\
        [[region]]\nname = \"eu\"\n\
        [[region.ranges]]\nfile = \"ip-ranges.json\"\nformat = \"aws\"\nregions = [\"eu-west-1\"]\n\
        [[region.ranges]]\nfile = \"cloud.json\"\nformat = \"gcp\"\nregions = [\"europe-west1\"]\n";
    let c = RedirectConfig::from_toml(text, "r.toml", Some(dir.path())).unwrap();
    // Both range files are watched when `watch` is set.
    assert_eq!(
        c.files,
        [
            dir.path().join("ip-ranges.json"),
            dir.path().join("cloud.json")
        ]
    );
    let r = Routing::new(c).unwrap();
    assert_eq!(r.region_of(ip("3.5.141.1")), Some(0));
    assert_eq!(r.region_of(ip("2a05:d000::1")), Some(0));
    assert_eq!(r.region_of(ip("34.77.0.1")), Some(0));
    assert_eq!(r.region_of(ip("52.94.0.1")), None);
    assert_eq!(r.region_of(ip("34.80.0.1")), None);
}

#[test]
fn the_example_config_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/redirect.toml");
    let c = RedirectConfig::load(&path).unwrap();
    assert_eq!(c.watch, None, "watching is off unless asked for");
    assert_eq!(c.files, std::slice::from_ref(&path));
    let on = "upstream = \"https://u.example\"\nwatch = \"10s\"\n";
    let watched = RedirectConfig::from_toml(on, "r.toml", None).unwrap().watch;
    assert_eq!(watched, Some(std::time::Duration::from_secs(10)));
    let off = "upstream = \"https://u.example\"\nwatch = \"0s\"\n";
    assert_eq!(
        RedirectConfig::from_toml(off, "r.toml", None)
            .unwrap()
            .watch,
        None
    );
    let r = Routing::new(c).unwrap();
    assert_eq!(r.region_of(ip("203.0.113.1")), Some(0));
    assert_eq!(r.region_of(ip("192.0.2.1")), Some(1), "default region");
}
